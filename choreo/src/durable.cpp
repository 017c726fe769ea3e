#include "choreo/durable.h"

#include "choreo/detail/msgpack_wire.h"

namespace choreo {

ExecutionRun::ExecutionRun(ExecutionRow execution, std::map<std::uint32_t, HistoryRecord> history, TimeMs now_ms,
                           ExecutionLimits limits, PromiseReader promises)
    : execution_(std::move(execution)),
      history_(std::move(history)),
      now_ms_(now_ms),
      limits_(limits),
      promises_(std::move(promises)) {
    CHOREO_ASSERT(valid_promise_id(execution_.id));
    CHOREO_ASSERT(execution_.state == ExecutionState::running);
}

std::string ExecutionRun::child_id(std::uint32_t position) const {
    std::string id = execution_.id + "." + std::to_string(position);
    if (!valid_promise_id(id)) {  // every level of nesting adds ".<n>" to the id
        throw DurableError(std::string(durable_error::promise_id_too_long),
                           "child promise id of " + std::to_string(id.size()) + " bytes");
    }
    return id;
}

void ExecutionRun::rebind(TimeMs now_ms, PromiseReader promises, std::map<std::uint32_t, HistoryRecord> history) {
    CHOREO_ASSERT(resumable());
    CHOREO_ASSERT(now_ms >= now_ms_);
    now_ms_ = now_ms;
    promises_ = std::move(promises);
    history_ = std::move(history);
    new_records.clear();
    new_promises.clear();
    sends.clear();
    store_failure_ = Status{};
}

bool ExecutionRun::parked_ready() {
    CHOREO_ASSERT(resumable());
    try {
        return parked_ready_();
    } catch (const DurableError&) {
        return false;  // a failed store read: store_failure() tells the kernel
    }
}

void ExecutionRun::resume_parked() {
    CHOREO_ASSERT(resumable());
    std::coroutine_handle<> handle = std::exchange(parked_handle_, {});
    parked_ready_ = nullptr;
    blocked_ = false;
    handle.resume();
}

void ExecutionRun::fail_nondeterministic(std::string detail) {
    nondeterminism_ = std::move(detail);
    throw DurableError(std::string(durable_error::nondeterminism), nondeterminism_);
}

const HistoryRecord* ExecutionRun::expect(HistoryKind kind, std::string_view name) {
    if (next_position_ >= limits_.history_records_max) {
        throw DurableError(std::string(durable_error::history_too_long),
                           std::to_string(next_position_) + " records");
    }
    auto recorded = history_.find(next_position_);
    if (recorded == history_.end()) return nullptr;
    const HistoryRecord& record = recorded->second;
    CHOREO_ASSERT(record.position == next_position_);
    if (record.kind != kind || record.name != name) {
        fail_nondeterministic("position " + std::to_string(next_position_) + " recorded " +
                              std::string(history_kind_name(record.kind)) + " '" + record.name + "', replay asked " +
                              std::string(history_kind_name(kind)) + " '" + std::string(name) + "'");
    }
    next_position_++;
    return &record;
}

HistoryRecord& ExecutionRun::record_new(HistoryKind kind, std::string_view name) {
    CHOREO_ASSERT(!history_.contains(next_position_));
    HistoryRecord record{execution_.id, next_position_, kind, std::string(name), HistoryStatus::started, {}};
    next_position_++;
    auto [slot, inserted] = history_.emplace(record.position, record);
    CHOREO_ASSERT(inserted);
    new_records.push_back(std::move(record));
    return slot->second;
}

std::optional<Bytes> ExecutionRun::step(std::string_view name, const StepOptions& options, StepCallable callable) {
    if (dispatch.has_value()) {  // one step runs at a time: the function awaits each before the next
        throw DurableError(std::string(durable_error::steps_not_awaited),
                           "step '" + std::string(name) + "' was asked for before step '" + dispatch->name +
                               "' was awaited");
    }
    const std::uint32_t position = next_position_;
    if (const HistoryRecord* record = expect(HistoryKind::step, name)) {
        if (record->status == HistoryStatus::completed) return record->payload;
        if (record->status == HistoryStatus::failed) {
            throw DurableError(std::string(durable_error::step_failed), std::string(text_of(record->payload)));
        }
        if (options.at_most_once) {  // started before, no result: it may or may not have happened
            throw DurableError(std::string(durable_error::step_outcome_unknown),
                               "step '" + std::string(name) + "' started and recorded no result");
        }
    } else {
        record_new(HistoryKind::step, name);  // the start is committed before the callable runs
    }
    dispatch = StepDispatch{execution_.id, position, std::string(name), std::move(callable)};
    blocked_ = true;
    return std::nullopt;
}

std::string ExecutionRun::call(const Address& to, std::string_view function, Bytes args, const CallOptions& options) {
    CHOREO_ASSERT(options.timeout_ms >= 0);
    const std::string name = to.to_string() + " " + std::string(function);
    const std::uint32_t position = next_position_;
    const std::string promise_id = child_id(position);
    if (expect(HistoryKind::call, name) != nullptr) return promise_id;
    if (execution_.depth + 1 > limits_.call_depth_max) {
        throw DurableError(std::string(durable_error::call_depth_exceeded),
                           "depth " + std::to_string(execution_.depth + 1) + " over " +
                               std::to_string(limits_.call_depth_max));
    }
    record_new(HistoryKind::call, name);
    const TimeMs deadline_ms = options.timeout_ms > 0 ? now_ms_ + options.timeout_ms : 0;
    new_promises.push_back(make_pending_promise(promise_id, now_ms_, deadline_ms));
    sends.push_back({execution_message_id(execution_.id, position), to, std::string(invoke_kind), promise_id,
                     encode_invoke({std::string(function), std::move(args), execution_.depth + 1}), deadline_ms});
    return promise_id;
}

std::string ExecutionRun::sleep_until(TimeMs due_ms) {
    const std::uint32_t position = next_position_;
    const std::string promise_id = child_id(position);
    if (expect(HistoryKind::sleep, "sleep") != nullptr) return promise_id;  // due as first recorded
    record_new(HistoryKind::sleep, "sleep");
    new_promises.push_back(make_timer_promise(promise_id, now_ms_, std::max<TimeMs>(due_ms, 1)));
    return promise_id;
}

void ExecutionRun::send(const Address& to, std::string_view kind, Bytes body) {
    const std::uint32_t position = next_position_;
    if (expect(HistoryKind::send, kind) != nullptr) return;  // sent before: not again (design §4.3)
    record_new(HistoryKind::send, kind);
    sends.push_back({execution_message_id(execution_.id, position), to, std::string(kind), {}, std::move(body), 0});
}

std::optional<PromiseRow> ExecutionRun::settled(std::string_view promise_id) {
    Result<std::optional<PromiseRow>> row = promises_(promise_id);
    if (!row.ok()) {
        store_failure_ = row.status();
        throw DurableError(std::string(durable_error::store_read_failed), row.status().to_string());
    }
    if (!row->has_value()) {
        for (const PromiseRow& created : new_promises) {
            if (created.id == promise_id) row = std::optional<PromiseRow>(created);
        }
    }
    CHOREO_ASSERT(row->has_value());  // an awaited promise was created by its call or sleep
    PromiseRow promise = std::move(**row);
    if (promise.state == PromiseState::pending) {
        if (effective_state(promise, now_ms_) == PromiseState::pending) return std::nullopt;
        apply_settle(promise, timeout_settle(promise));  // its deadline passed: the kernel settles it too
    }
    return promise;
}

void ExecutionRun::throw_unless_resolved(const PromiseRow& row) {
    switch (row.state) {
        case PromiseState::resolved: return;
        case PromiseState::rejected:
            throw DurableError(std::string(durable_error::rejected), std::string(text_of(row.value)));
        case PromiseState::canceled: throw DurableError(std::string(durable_error::canceled), row.id);
        case PromiseState::timed_out: throw DurableError(std::string(durable_error::timed_out), row.id);
        case PromiseState::pending: break;
    }
    CHOREO_UNREACHABLE();
}

MessageId execution_message_id(std::string_view execution_id, std::uint64_t position) {
    return derive_id(content_id(bytes_of(std::string("choreo.execution:") + std::string(execution_id))), position);
}

MessageId settlement_message_id(std::string_view execution_id) {
    return derive_id(content_id(bytes_of(std::string("choreo.settlement:") + std::string(execution_id))), 0);
}

// ---- message bodies ---------------------------------------------------------------------

namespace {
using detail::MsgpackReader;
using detail::MsgpackWriter;

Status bad_body(std::string detail) { return invalid_argument_error("invalid_body", std::move(detail)); }

std::optional<PromiseState> state_named(std::string_view name) {
    for (PromiseState state : {PromiseState::resolved, PromiseState::rejected, PromiseState::canceled,
                               PromiseState::timed_out}) {
        if (promise_state_name(state) == name) return state;
    }
    return std::nullopt;
}
}  // namespace

Bytes encode_invoke(const InvokeBody& body) {
    Bytes out;
    MsgpackWriter writer{out};
    writer.map_header(3);
    writer.string("function");
    writer.string(body.function);
    writer.string("args");
    writer.binary(body.args);
    writer.string("depth");
    writer.unsigned_integer(body.depth);
    return out;
}

Result<InvokeBody> decode_invoke(ByteView bytes) {
    MsgpackReader reader{bytes};
    Result<std::uint32_t> count = reader.map_header();
    if (!count.ok()) return count.status();
    InvokeBody body;
    bool has_function = false;
    for (std::uint32_t entry = 0; entry < *count; entry++) {
        Result<std::string_view> key = reader.string();
        if (!key.ok()) return key.status();
        if (*key == "function") {
            Result<std::string_view> function = reader.string();
            if (!function.ok()) return function.status();
            body.function = *function;
            has_function = true;
        } else if (*key == "args") {
            Result<ByteView> args = reader.binary();
            if (!args.ok()) return args.status();
            body.args.assign(args->begin(), args->end());
        } else if (*key == "depth") {
            Result<std::int64_t> depth = reader.integer();
            if (!depth.ok()) return depth.status();
            if (*depth < 0 || *depth > 1'000'000) return bad_body("depth out of range");
            body.depth = static_cast<std::uint32_t>(*depth);
        } else {
            CHOREO_RETURN_IF_ERROR(reader.skip(16));
        }
    }
    if (!reader.at_end()) return bad_body("trailing bytes");
    if (!has_function || body.function.empty()) return bad_body("no function");
    return body;
}

Bytes encode_resume(const ResumeBody& body) {
    CHOREO_ASSERT(body.state != PromiseState::pending);
    Bytes out;
    MsgpackWriter writer{out};
    writer.map_header(2);
    writer.string("state");
    writer.string(promise_state_name(body.state));
    writer.string("value");
    writer.binary(body.value);
    return out;
}

Result<ResumeBody> decode_resume(ByteView bytes) {
    MsgpackReader reader{bytes};
    Result<std::uint32_t> count = reader.map_header();
    if (!count.ok()) return count.status();
    ResumeBody body;
    bool has_state = false;
    for (std::uint32_t entry = 0; entry < *count; entry++) {
        Result<std::string_view> key = reader.string();
        if (!key.ok()) return key.status();
        if (*key == "state") {
            Result<std::string_view> name = reader.string();
            if (!name.ok()) return name.status();
            std::optional<PromiseState> state = state_named(*name);
            if (!state) return bad_body("unknown state '" + std::string(*name) + "'");
            body.state = *state;
            has_state = true;
        } else if (*key == "value") {
            Result<ByteView> value = reader.binary();
            if (!value.ok()) return value.status();
            body.value.assign(value->begin(), value->end());
        } else {
            CHOREO_RETURN_IF_ERROR(reader.skip(16));
        }
    }
    if (!reader.at_end()) return bad_body("trailing bytes");
    if (!has_state) return bad_body("no state");
    return body;
}

}  // namespace choreo
