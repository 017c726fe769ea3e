#include "choreo/promise.h"

namespace choreo {

std::string_view promise_state_name(PromiseState state) {
    switch (state) {
        case PromiseState::pending: return "pending";
        case PromiseState::resolved: return "resolved";
        case PromiseState::rejected: return "rejected";
        case PromiseState::canceled: return "canceled";
        case PromiseState::timed_out: return "timed_out";
    }
    CHOREO_UNREACHABLE();
}

bool valid_promise_id(std::string_view id) {
    if (id.empty() || id.size() > promise_id_bytes_max) return false;
    for (char c : id) {
        if (c <= ' ' || c > '~') return false;
    }
    return true;
}

std::string child_promise_id(std::string_view execution, std::uint64_t position) {
    CHOREO_ASSERT(valid_promise_id(execution));
    std::string id{execution};
    id += '.';
    id += std::to_string(position);
    return id;
}

std::optional<std::string_view> parent_execution_id(std::string_view promise_id) {
    const std::size_t dot = promise_id.rfind('.');
    if (dot == std::string_view::npos || dot == 0 || dot + 1 == promise_id.size()) return std::nullopt;
    for (char c : promise_id.substr(dot + 1)) {
        if (c < '0' || c > '9') return std::nullopt;  // "a.b" with a non-numeric tail is a root id
    }
    return promise_id.substr(0, dot);
}

PromiseRow make_pending_promise(std::string id, TimeMs now_ms, TimeMs deadline_ms) {
    CHOREO_ASSERT(valid_promise_id(id));
    CHOREO_ASSERT(deadline_ms >= 0);
    PromiseRow row;
    row.id = std::move(id);
    row.created_at_ms = now_ms;
    row.deadline_ms = deadline_ms;
    return row;
}

PromiseRow make_timer_promise(std::string id, TimeMs now_ms, TimeMs due_ms) {
    CHOREO_ASSERT(due_ms > 0);
    PromiseRow row = make_pending_promise(std::move(id), now_ms, due_ms);
    row.timer = true;
    return row;
}

PromiseState effective_state(const PromiseRow& row, TimeMs now_ms) {
    if (row.state != PromiseState::pending) return row.state;
    if (row.deadline_ms != 0 && now_ms >= row.deadline_ms) {
        return row.timer ? PromiseState::resolved : PromiseState::timed_out;
    }
    return PromiseState::pending;
}

PromiseSettle timeout_settle(const PromiseRow& row) {
    CHOREO_ASSERT(row.state == PromiseState::pending);
    CHOREO_ASSERT(row.deadline_ms > 0);
    const PromiseState state = row.timer ? PromiseState::resolved : PromiseState::timed_out;
    return PromiseSettle{row.id, state, {}, row.deadline_ms};
}

SettleDecision decide_settle(const PromiseRow& row, const PromiseSettle& settle, TimeMs now_ms) {
    CHOREO_ASSERT(settle.id == row.id);
    CHOREO_ASSERT(settle.state != PromiseState::pending);
    const PromiseState state = effective_state(row, now_ms);
    if (state == PromiseState::pending) return SettleDecision::apply;
    // A pending promise past its deadline has no stored value yet: its timeout carries none.
    const bool same_value = row.state == PromiseState::pending ? settle.value.empty() : row.value == settle.value;
    if (state == settle.state && same_value) return SettleDecision::already_same;
    return SettleDecision::already_settled;
}

void apply_settle(PromiseRow& row, const PromiseSettle& settle) {
    CHOREO_ASSERT(row.state == PromiseState::pending);
    CHOREO_ASSERT(settle.state != PromiseState::pending);
    CHOREO_ASSERT(settle.id == row.id);
    row.state = settle.state;
    row.value = settle.value;
    row.settled_at_ms = settle.settled_at_ms;
}

}  // namespace choreo
