// The kernel's side of durable functions: invoke and resume messages, timers, step results,
// and replaying executions until they block (choreo/durable.h).
#include "kernel_batch.h"

#include "choreo/codec.h"

namespace choreo {
namespace {

std::string describe(const std::exception_ptr& failure) {
    try {
        std::rethrow_exception(failure);
    } catch (const std::exception& error) {
        return error.what();
    } catch (...) {
        return "a non-standard exception";
    }
}

}  // namespace

// ---- reads and writes as of this batch ---------------------------------------------------

Result<std::optional<PromiseRow>> Kernel::Batch::load_promise(std::string_view id) {
    if (auto known = promises_.find(id); known != promises_.end()) return known->second;
    Result<std::optional<PromiseRow>> row = store_.find_promise(id);
    if (!row.ok()) return row.status();
    promises_.emplace(std::string(id), *row);
    return *row;
}

Result<std::optional<ExecutionRow>> Kernel::Batch::load_execution(std::string_view id) {
    if (auto known = executions_.find(id); known != executions_.end()) return known->second;
    Result<std::optional<ExecutionRow>> row = store_.find_execution(id);
    if (!row.ok()) return row.status();
    executions_.emplace(std::string(id), *row);
    return *row;
}

Status Kernel::Batch::load_history(const std::string& execution_id) {
    if (histories_.contains(execution_id)) return Status{};
    const std::size_t limit = kernel_.options_.executions.history_records_max + 1;
    Result<std::vector<HistoryRecord>> records = store_.load_history(execution_id, limit);
    if (!records.ok()) return records.status();
    std::map<std::uint32_t, HistoryRecord>& history = histories_[execution_id];
    for (HistoryRecord& record : *records) {
        CHOREO_ASSERT(record.execution_id == execution_id);
        history.emplace(record.position, std::move(record));
    }
    return Status{};
}

void Kernel::Batch::put_execution(ExecutionRow execution) {
    effects.commit.executions.push_back(execution);
    executions_.insert_or_assign(execution.id, std::move(execution));
}

void Kernel::Batch::settle_promise(PromiseRow row, const PromiseSettle& settle) {
    apply_settle(row, settle);
    effects.commit.promises_settled.push_back(settle);
    if (row.deadline_ms != 0) effects.timers_done.emplace_back(row.deadline_ms, row.id);
    promises_.insert_or_assign(row.id, std::move(row));
}

// A settled child promise resumes the execution that awaits it.
void Kernel::Batch::mark_replay(std::string_view promise_id) {
    if (std::optional<std::string_view> parent = parent_execution_id(promise_id)) to_replay_.emplace(*parent);
}

// ---- inputs ------------------------------------------------------------------------------

Status Kernel::Batch::handle_invoke(Candidate& candidate) {
    const Envelope& envelope = *candidate.envelope;
    Result<InvokeBody> body = decode_invoke(envelope.body);
    if (!body.ok() || !valid_promise_id(envelope.promise)) {
        dead_letter(candidate, "invalid_invoke", body.ok() ? "no valid promise id" : body.status().message());
        return Status{};
    }
    Result<std::optional<ExecutionRow>> existing = load_execution(envelope.promise);
    if (!existing.ok()) return existing.status();
    if (existing->has_value()) {
        // A repeated request never starts a second execution; a finished one answers again.
        const ExecutionRow& execution = **existing;
        Result<std::optional<PromiseRow>> own = load_promise(execution.id);
        if (!own.ok()) return own.status();
        if (execution.state != ExecutionState::running && own->has_value() &&
            (*own)->state != PromiseState::pending) {
            // A new answer to a new request: its id derives from the request's, so it is never a
            // second outbox row under the first answer's id with a fresh sent_at (rule 3).
            send_settlement(execution, (*own)->state, (*own)->value, derive_id(envelope.id, 0));
        }
        resolve_applied(candidate);
        return Status{};
    }
    ExecutionRow execution{envelope.promise, body->function, body->args, envelope.from, body->depth,
                           ExecutionState::running, effects.now_ms, 0};
    Result<std::optional<PromiseRow>> own = load_promise(execution.id);
    if (!own.ok()) return own.status();
    if (!own->has_value()) {  // a Client on this service may have created it: create once
        PromiseRow row = make_pending_promise(execution.id, effects.now_ms, 0);
        effects.commit.promises_created.push_back(row);
        promises_.insert_or_assign(row.id, std::move(row));
    }
    effects.trace.push_back({TraceKind::execution_started, envelope.id, body->function, {}, execution.id});
    to_replay_.insert(execution.id);
    put_execution(std::move(execution));
    resolve_applied(candidate);
    return Status{};
}

Status Kernel::Batch::handle_resume(Candidate& candidate) {
    const Envelope& envelope = *candidate.envelope;
    Result<ResumeBody> body = decode_resume(envelope.body);
    if (!body.ok()) {
        dead_letter(candidate, "invalid_resume", body.status().message());
        return Status{};
    }
    Result<std::optional<PromiseRow>> found = load_promise(envelope.promise);
    if (!found.ok()) return found.status();
    if (!found->has_value()) {
        dead_letter(candidate, "unknown_promise", "no promise '" + envelope.promise + "'");
        return Status{};
    }
    PromiseRow promise = **found;
    if (promise.state == PromiseState::pending && effective_state(promise, effects.now_ms) != PromiseState::pending) {
        settle_promise(promise, timeout_settle(promise));  // the deadline came first: that is what happened
        promise = *promises_.at(promise.id);
        mark_replay(promise.id);
    }
    const PromiseSettle settle{promise.id, body->state, body->value, effects.now_ms};
    switch (decide_settle(promise, settle, effects.now_ms)) {
        case SettleDecision::apply:
            settle_promise(promise, settle);
            mark_replay(promise.id);
            break;
        case SettleDecision::already_same: break;
        case SettleDecision::already_settled:
            effects.trace.push_back({TraceKind::settle_conflict, envelope.id, envelope.kind, "already_settled", promise.id});
            break;
    }
    resolve_applied(candidate);
    return Status{};
}

Status Kernel::Batch::fire_due_timers() {
    std::size_t fired = 0;
    for (const auto& [due_ms, promise_id] : kernel_.timers_) {
        if (due_ms > effects.now_ms || fired == kernel_.options_.timers_per_step_max) break;
        fired++;
        effects.timers_done.emplace_back(due_ms, promise_id);
        Result<std::optional<PromiseRow>> row = load_promise(promise_id);
        if (!row.ok()) return row.status();
        if (!row->has_value() || (*row)->state != PromiseState::pending) continue;  // settled another way
        const PromiseSettle settle = timeout_settle(**row);
        effects.trace.push_back({TraceKind::timer_fired, {}, {}, std::string(promise_state_name(settle.state)), promise_id});
        settle_promise(**row, settle);
        mark_replay(promise_id);
    }
    return Status{};
}

Status Kernel::Batch::record_step_results(const std::vector<StepResult>& results) {
    for (const StepResult& result : results) {
        CHOREO_RETURN_IF_ERROR(load_history(result.execution_id));
        auto in_flight = kernel_.steps_in_flight_.find(result.execution_id);
        if (in_flight != kernel_.steps_in_flight_.end() && in_flight->second.run->dispatch &&
            in_flight->second.run->dispatch->position == result.position) {
            effects.steps_finished.push_back(result.execution_id);  // only the step its frame waits for
        }
        std::map<std::uint32_t, HistoryRecord>& history = histories_[result.execution_id];
        auto record = history.find(result.position);
        if (record == history.end() || record->second.kind != HistoryKind::step ||
            record->second.status != HistoryStatus::started) {
            continue;  // stale: the execution was purged, or this result is recorded already
        }
        record->second.status = result.outcome.ok ? HistoryStatus::completed : HistoryStatus::failed;
        record->second.payload = result.outcome.ok ? result.outcome.value : bytes_of(result.outcome.error);
        effects.commit.history.push_back(record->second);
        to_replay_.insert(result.execution_id);
    }
    return Status{};
}

// ---- replay ------------------------------------------------------------------------------

// A worklist: replaying one execution can settle a promise that another one awaits (a child
// finishing in this store), which marks that one for replay in the same step.
Status Kernel::Batch::replay_marked() {
    std::size_t replayed = 0;
    while (!to_replay_.empty()) {
        const std::string execution_id = *to_replay_.begin();
        to_replay_.erase(to_replay_.begin());
        const bool step_returned = std::find(effects.steps_finished.begin(), effects.steps_finished.end(),
                                             execution_id) != effects.steps_finished.end();
        const bool parked_now = std::any_of(effects.parked.begin(), effects.parked.end(), [&](const ParkedFrame& frame) {
            return frame.run->execution().id == execution_id;
        });
        if ((kernel_.steps_in_flight_.contains(execution_id) && !step_returned) || parked_now) continue;  // its step resumes it
        const bool full = kernel_.steps_in_flight_.size() + effects.parked.size() >= kernel_.options_.steps_in_flight_max;
        if (replayed == kernel_.options_.replays_per_step_max || full) {
            effects.replays_deferred.push_back(execution_id);
            continue;
        }
        replayed++;
        CHOREO_RETURN_IF_ERROR(replay(execution_id));
    }
    return Status{};
}

// Runs the function from the top against its history until it completes or blocks.
Status Kernel::Batch::replay(const std::string& execution_id) {
    Result<std::optional<ExecutionRow>> found = load_execution(execution_id);
    if (!found.ok()) return found.status();
    if (!found->has_value() || (*found)->state != ExecutionState::running) return Status{};
    const ExecutionRow execution = **found;
    auto function = kernel_.functions_.find(execution.function);
    if (function == kernel_.functions_.end()) {
        return finish_execution(execution, PromiseState::rejected,
                                bytes_of(std::string(durable_error::unknown_function) + ": " + execution.function));
    }
    if (execution.depth > kernel_.options_.executions.call_depth_max) {
        return finish_execution(execution, PromiseState::rejected,
                                bytes_of(std::string(durable_error::call_depth_exceeded) + ": depth " +
                                         std::to_string(execution.depth)));
    }
    CHOREO_RETURN_IF_ERROR(load_history(execution_id));
    ExecutionRun::PromiseReader reader = [this](std::string_view id) { return load_promise(id); };
    std::unique_ptr<ExecutionRun> run;
    std::optional<Task<Bytes>> cached_root;
    if (auto cached = kernel_.cached_frames_.find(execution_id); cached != kernel_.cached_frames_.end()) {
        ParkedFrame frame = std::move(cached->second.first);
        kernel_.cached_frames_.erase(cached);
        run = std::move(frame.run);
        cached_root = std::move(frame.root);
        run->rebind(effects.now_ms, reader, histories_[execution_id]);
        const bool ready = run->parked_ready();
        if (!run->store_failure().ok()) return run->store_failure();
        if (!ready) {  // still waiting: nothing to do, and no replay needed
            effects.cached.push_back(ParkedFrame{std::move(run), std::move(cached_root)});
            return Status{};
        }
        run->resume_parked();  // the frame goes on from its await, with nothing replayed
    } else {
        run = std::make_unique<ExecutionRun>(execution, histories_[execution_id], effects.now_ms,
                                             kernel_.options_.executions, reader);
        cached_root = function->second(*run, execution.args);
        cached_root->resume();
    }
    Task<Bytes>& root = *cached_root;
    if (!run->store_failure().ok()) return run->store_failure();
    if (run->nondeterministic()) {
        return finish_execution(execution, PromiseState::rejected,
                                bytes_of(std::string(durable_error::nondeterminism) + ": " + run->nondeterminism_detail()));
    }
    if (!merge_run(*run)) {
        return finish_execution(execution, PromiseState::rejected,
                                bytes_of(std::string(refusal::outgoing_invalid) + ": a call or send is unsendable"));
    }
    if (root.done()) {
        if (root.failed()) return finish_execution(execution, PromiseState::rejected, bytes_of(describe(root.exception())));
        return finish_execution(execution, PromiseState::resolved, root.take_result());
    }
    CHOREO_ASSERT(run->blocked());  // only an unanswered await suspends a durable function
    if (run->dispatch) {
        effects.dispatches.push_back(*run->dispatch);
        effects.parked.push_back(ParkedFrame{std::move(run), std::move(cached_root)});
    } else if (kernel_.options_.executions_cached_max > 0 && run->resumable()) {
        effects.cached.push_back(ParkedFrame{std::move(run), std::move(cached_root)});
    }
    return Status{};
}

bool Kernel::Batch::merge_run(ExecutionRun& run) {
    const std::string& execution_id = run.execution().id;
    for (const HistoryRecord& record : run.new_records) {
        histories_[execution_id].insert_or_assign(record.position, record);
        effects.commit.history.push_back(record);
    }
    for (const PromiseRow& promise : run.new_promises) {
        promises_.insert_or_assign(promise.id, promise);
        effects.commit.promises_created.push_back(promise);
        if (promise.deadline_ms != 0) effects.timers_added.emplace_back(promise.deadline_ms, promise.id);
    }
    for (const ExecutionSend& send : run.sends) {
        if (!add_execution_send(run.execution(), send)) return false;
    }
    return true;
}

bool Kernel::Batch::add_execution_send(const ExecutionRow& execution, const ExecutionSend& send) {
    Envelope envelope;
    envelope.id = send.id;
    envelope.kind = send.kind;
    envelope.to = send.to;
    envelope.correlation = execution.id;
    envelope.causation = execution.id;
    envelope.promise = send.promise;
    envelope.deadline_ms = send.deadline_ms;
    envelope.body = send.body;
    return add_outbox_row(std::move(envelope)).ok();
}

Status Kernel::Batch::finish_execution(ExecutionRow execution, PromiseState state, Bytes value) {
    CHOREO_ASSERT(state == PromiseState::resolved || state == PromiseState::rejected);
    execution.state = state == PromiseState::resolved ? ExecutionState::completed : ExecutionState::failed;
    execution.finished_at_ms = effects.now_ms;
    Result<std::optional<PromiseRow>> own = load_promise(execution.id);
    if (!own.ok()) return own.status();
    PromiseRow final_row = own->value_or(make_pending_promise(execution.id, effects.now_ms, 0));
    if (!own->has_value()) effects.commit.promises_created.push_back(final_row);
    if (final_row.state == PromiseState::pending && effective_state(final_row, effects.now_ms) != PromiseState::pending) {
        settle_promise(final_row, timeout_settle(final_row));  // its deadline came first (rule 5)
        final_row = *promises_.at(execution.id);
        mark_replay(execution.id);
    }
    if (final_row.state == PromiseState::pending) {
        settle_promise(final_row, {execution.id, state, value, effects.now_ms});
        final_row = *promises_.at(execution.id);
    }
    const TraceKind kind = state == PromiseState::resolved ? TraceKind::execution_completed : TraceKind::execution_failed;
    effects.trace.push_back({kind, {}, execution.function,
                             state == PromiseState::resolved ? std::string{} : std::string(text_of(value)), execution.id});
    if (!execution.reply_to.empty()) {
        send_settlement(execution, final_row.state, final_row.value, settlement_message_id(execution.id));
    }
    mark_replay(execution.id);  // a caller in this same store resumes at once
    put_execution(std::move(execution));
    return Status{};
}

// A refused invoke is answered with a rejection, so the execution that called does not wait
// for an answer that will never come.
void Kernel::Batch::answer_refused_invoke(const Envelope& invoke, std::string_view reason, const std::string& detail) {
    if (invoke.from.empty() || !valid_promise_id(invoke.promise)) return;  // nobody to tell
    Envelope answer;
    answer.id = derive_id(invoke.id, 0);
    // Refused before (a redelivery, a redrive): that answer's row was committed with its own
    // sent_at, and first row wins (design §4.1, §4.3). Answering again would send a second
    // `sent_at` under the same id. A failed read answers anyway: better twice than never.
    if (on_its_way(answer.id)) return;
    Result<std::optional<OutboxRow>> answered = store_.find_outbox(answer.id);
    if (answered.ok() && answered->has_value()) return;
    answer.kind = resume_kind;
    answer.to = invoke.from;
    answer.correlation = invoke.correlation;
    answer.causation = invoke.id.to_string();
    answer.promise = invoke.promise;
    answer.body = encode_resume({PromiseState::rejected, bytes_of(std::string(reason) + ": " + detail)});
    add_outbox_row(std::move(answer)).ignore();  // a rejection with a short text always encodes
}

// An invoke this service could not deliver (send attempts exhausted, refused by the transport)
// rejects the call's promise.
void Kernel::Batch::reject_undeliverable_call(const OutboxRow& row, std::string_view reason) {
    Result<Envelope> sent = decode_envelope(row.bytes, kernel_.options_.limits);
    CHOREO_ASSERT(sent.ok());  // this service encoded it
    if (sent->kind != invoke_kind || !valid_promise_id(sent->promise)) return;
    pending_call_rejections_.emplace_back(sent->promise, std::string(reason));
}

Status Kernel::Batch::reject_pending_calls() {
    for (const auto& [promise_id, reason] : pending_call_rejections_) {
        Result<std::optional<PromiseRow>> row = load_promise(promise_id);
        if (!row.ok()) return row.status();
        if (!row->has_value() || (*row)->state != PromiseState::pending) continue;
        settle_promise(**row, {promise_id, PromiseState::rejected,
                               bytes_of(reason + ": the invoke was not delivered"),
                               effects.now_ms});
        mark_replay(promise_id);
    }
    return Status{};
}

void Kernel::Batch::send_settlement(const ExecutionRow& execution, PromiseState state, const Bytes& value,
                                    const MessageId& id) {
    Envelope envelope;
    envelope.id = id;
    envelope.kind = resume_kind;
    envelope.to = execution.reply_to;
    envelope.correlation = execution.id;
    envelope.causation = execution.id;
    envelope.promise = execution.id;
    envelope.body = encode_resume({state, value});
    Status added = add_outbox_row(envelope);
    if (added.ok()) return;
    // The result does not fit in a message: the caller learns that instead of waiting forever.
    envelope.body = encode_resume({PromiseState::rejected, bytes_of(added.to_string())});
    const Status rejected = add_outbox_row(std::move(envelope));
    CHOREO_ASSERT(rejected.ok());
}

}  // namespace choreo
