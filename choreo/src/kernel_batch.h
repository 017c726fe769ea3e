// kernel_batch.h — the state of one kernel step (private to the kernel's sources).
#pragma once

#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "choreo/durable.h"
#include "choreo/kernel.h"

namespace choreo {

namespace detail {

// One input offered to handlers: a new delivery, or a handler retry that fell due.
struct Candidate {
    std::vector<DeliveryTag> tags;
    ByteView bytes;  // into the step's inputs or the kernel's retry queue: both outlive the step
    // Every delivery's position (transports with offsets), copies of the same id included: all of
    // them are resolved or held with the candidate, so a copy never leaves its offset behind.
    std::vector<StreamPosition> positions;
    std::uint32_t attempts_before = 0;
    std::optional<Envelope> envelope;  // set when the bytes decoded
    Status decode_status;
    std::string redrive_key{};  // a redriven dead letter: its row goes when the input resolves
};

enum class HandlerOutcome { applied, rejected, failed, store_failed };

}  // namespace detail

using detail::Candidate;
using detail::HandlerOutcome;

class Kernel::Batch {
public:
    Batch(Kernel& kernel, StoreReader& store, TimeMs now_ms) : kernel_(kernel), store_(store) {
        effects.now_ms = now_ms;
    }
    Status run(const StepInputs& inputs);
    BatchEffects effects;

private:
    void settle_confirmed(const std::vector<MessageId>& confirmed);
    void dead_letter_exhausted_sends();
    void dead_letter_undeliverable(const std::vector<Undeliverable>& undeliverable);
    void dead_letter_send(const MessageId& id, std::string_view reason, std::string detail);
    void originate(const Origination& origination);
    std::vector<Candidate> gather_candidates(const std::vector<Delivery>& deliveries,
                                             const std::vector<Redrive>& redrives);
    void add_redrive(const Redrive& redrive, std::vector<Candidate>& candidates,
                     std::unordered_map<MessageId, std::size_t, MessageIdHash>& index_of);
    Status process(Candidate& candidate, bool known, TimeMs horizon_ms);
    void resolve_applied(Candidate& candidate);
    // Durable functions (kernel_durable.cpp).
    Status handle_invoke(Candidate& candidate);
    Status handle_resume(Candidate& candidate);
    Status fire_due_timers();
    Status record_step_results(const std::vector<StepResult>& results);
    Status replay_marked();
    Status replay(const std::string& execution_id);
    bool merge_run(ExecutionRun& run);
    Status finish_execution(ExecutionRow execution, PromiseState state, Bytes value);
    void send_settlement(const ExecutionRow& execution, PromiseState state, const Bytes& value, const MessageId& id);
    void answer_refused_invoke(const Envelope& invoke, std::string_view reason, const std::string& detail);
    void reject_undeliverable_call(const OutboxRow& row, std::string_view reason);
    Status reject_pending_calls();
    void settle_promise(PromiseRow row, const PromiseSettle& settle);
    void mark_replay(std::string_view promise_or_execution_id);
    Result<std::optional<PromiseRow>> load_promise(std::string_view id);
    Result<std::optional<ExecutionRow>> load_execution(std::string_view id);
    Status load_history(const std::string& execution_id);
    void put_execution(ExecutionRow execution);
    bool add_execution_send(const ExecutionRow& execution, const ExecutionSend& send);
    HandlerOutcome run_handler(Candidate& candidate, const Handler& handler, std::string& reason,
                               std::string& detail);
    bool merge_step(StepContext& context, const Envelope& input, std::string& reason,
                    std::string& detail);
    void resolve(Candidate& candidate, TraceKind kind, std::string reason);
    void dead_letter(Candidate& candidate, std::string_view reason, std::string detail);
    void schedule_retry(Candidate& candidate, std::string error);
    bool on_its_way(const MessageId& id) const;
    Result<OutboxRow> make_outbox_row(Envelope envelope);
    void push_outbox_row(OutboxRow row);
    Status add_outbox_row(Envelope envelope);  // outgoing_invalid when it cannot be encoded
    void hold_position(const StreamPosition& position);
    void finish_positions();

    Kernel& kernel_;
    StoreReader& store_;
    std::map<std::string, std::optional<Bytes>, std::less<>> state_;  // this batch's writes
    std::unordered_set<MessageId, MessageIdHash> applied_;
    std::unordered_set<MessageId, MessageIdHash> outbox_ids_;
    std::map<std::string, std::int64_t> position_resolved_;   // stream -> next offset
    std::map<std::string, std::int64_t> position_unresolved_; // stream -> lowest pending offset
    // Durable state as of this batch: what it read and what it wrote.
    std::map<std::string, std::optional<PromiseRow>, std::less<>> promises_;
    std::map<std::string, std::optional<ExecutionRow>, std::less<>> executions_;
    std::map<std::string, std::map<std::uint32_t, HistoryRecord>, std::less<>> histories_;
    std::set<std::string, std::less<>> to_replay_;
    // Calls whose invoke could not be delivered: the promise and why.
    std::vector<std::pair<std::string, std::string>> pending_call_rejections_;
};


}  // namespace choreo
