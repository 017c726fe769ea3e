// choreo/promise.h — durable promises: a value that settles once (design §4.5).
//
// A promise is pending until it settles as resolved, rejected, canceled or timed_out. The first
// settle wins; the same settle again is a no-op; a conflicting one is reported
// (already_settled) and never applied. A promise with a deadline that is still pending at the
// deadline is timed_out from then on: a settle that arrives before the deadline still wins.
// Child promises of execution `e` have ids `e.<n>`, so replaying an execution re-creates the
// same ids.
//
//   PromiseRow row = make_pending_promise("order-7", now_ms, /*deadline_ms=*/now_ms + 30'000);
//   SettleDecision decision = decide_settle(row, {row.id, PromiseState::resolved, value, now_ms});
//   if (decision == SettleDecision::apply) batch.promises_settled.push_back(...);
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "choreo/bytes.h"
#include "choreo/clock.h"
#include "choreo/status.h"

namespace choreo {

enum class PromiseState { pending, resolved, rejected, canceled, timed_out };
std::string_view promise_state_name(PromiseState state);

struct PromiseRow {
    std::string id;
    PromiseState state = PromiseState::pending;
    Bytes value;                // the resolution, or the rejection's reason, as bytes
    TimeMs created_at_ms = 0;
    TimeMs deadline_ms = 0;     // 0 = none
    TimeMs settled_at_ms = 0;   // 0 while pending
    bool timer = false;         // a durable timer (sleep): resolves at its deadline, not timed_out
    friend bool operator==(const PromiseRow&, const PromiseRow&) = default;
};

struct PromiseSettle {
    std::string id;
    PromiseState state = PromiseState::resolved;  // never pending
    Bytes value;
    TimeMs settled_at_ms = 0;
    friend bool operator==(const PromiseSettle&, const PromiseSettle&) = default;
};

enum class SettleDecision {
    apply,            // the promise was pending: this settle wins
    already_same,     // it already settled exactly so: a no-op
    already_settled,  // it settled differently first: report, never apply
};

inline constexpr std::size_t promise_id_bytes_max = 256;

// Promise ids: non-empty, at most promise_id_bytes_max bytes, printable ASCII without spaces.
bool valid_promise_id(std::string_view id);

// The id of the n-th child promise of execution `execution`: "<execution>.<n>".
std::string child_promise_id(std::string_view execution, std::uint64_t position);
// The execution that owns a child promise id ("a.b.3" -> "a.b"); nullopt for a root id.
std::optional<std::string_view> parent_execution_id(std::string_view promise_id);

PromiseRow make_pending_promise(std::string id, TimeMs now_ms, TimeMs deadline_ms);
// A durable timer: a promise that resolves (empty value) at `due_ms`.
PromiseRow make_timer_promise(std::string id, TimeMs now_ms, TimeMs due_ms);

// The state a promise has at `now_ms`: a pending promise past its deadline counts as timed_out
// (resolved, for a timer).
PromiseState effective_state(const PromiseRow& row, TimeMs now_ms);
// The settle that a deadline makes (timed_out, or resolved for a timer); asserts the promise
// has a deadline and is pending.
PromiseSettle timeout_settle(const PromiseRow& row);

// What a settle does to `row` at `now_ms` (design §4.5). Pure.
SettleDecision decide_settle(const PromiseRow& row, const PromiseSettle& settle, TimeMs now_ms);
// Applies a settle that decide_settle allowed.
void apply_settle(PromiseRow& row, const PromiseSettle& settle);

}  // namespace choreo
