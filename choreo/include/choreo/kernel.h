// choreo/kernel.h — the pure step function: inputs in, effects out (design §1, §4).
//
// One step takes a batch of inputs (messages received, sends confirmed, messages originated by
// the application) plus whatever timers are due (handler retries, retransmissions), reads the
// dedup table first, runs handlers, and returns the effects: one CommitBatch, the deliveries to
// acknowledge after it commits, and the sends that follow. The kernel does no I/O: it reads
// through StoreReader, takes time from a Clock and randomness from a Random, and chooses anycast
// pins through a Router. The runtime (choreo/service.h) does the I/O around it:
//
//   Result<BatchEffects> effects = kernel.step(inputs, store);
//   store.commit(effects->commit);        // write last
//   kernel.committed(*effects);           // only now does the kernel's memory move on
//   transport.acknowledge(effects->acks); // acks only after the commit
//   for (MessageId id : kernel.take_sends_due(limit)) transport.send(...kernel.outgoing(id));
//
// step() never changes the kernel (beyond drawing ids for originated messages and taking frames
// out of the frame cache, which is lossy), so a batch whose commit fails can simply be stepped
// again.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <set>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/clock.h"
#include "choreo/durable.h"
#include "choreo/envelope.h"
#include "choreo/ids.h"
#include "choreo/limits.h"
#include "choreo/random.h"
#include "choreo/status.h"
#include "choreo/store.h"
#include "choreo/transport.h"

namespace choreo {

// Reasons the kernel gives to dead letters, besides the decode_error names of choreo/codec.h.
namespace refusal {
inline constexpr std::string_view beyond_dedup_horizon = "beyond_dedup_horizon";
inline constexpr std::string_view unknown_kind = "unknown_kind";
inline constexpr std::string_view misaddressed = "misaddressed";
inline constexpr std::string_view deadline_exceeded = "deadline_exceeded";
inline constexpr std::string_view handler_failed = "handler_failed";
inline constexpr std::string_view rejected = "rejected";  // Reject with no reason of its own
inline constexpr std::string_view state_decode_failed = "state_decode_failed";
inline constexpr std::string_view invalid_send_address = "invalid_send_address";
inline constexpr std::string_view body_decode_failed = "body_decode_failed";
inline constexpr std::string_view outgoing_invalid = "outgoing_invalid";
inline constexpr std::string_view too_many_sends = "too_many_sends";
inline constexpr std::string_view state_too_large = "state_too_large";
inline constexpr std::string_view no_reply_address = "no_reply_address";
inline constexpr std::string_view send_attempts_exhausted = "send_attempts_exhausted";
inline constexpr std::string_view malformed_frame = "malformed_frame";  // Delivery::malformed
}  // namespace refusal

// Thrown by a handler (or by choreo's typed adaptors) to refuse its input for good: the step
// rolls back and the input is dead-lettered with `reason` at once, without retries.
class Reject : public std::exception {
public:
    Reject(std::string reason, std::string detail) : reason_(std::move(reason)), detail_(std::move(detail)) {}
    const char* what() const noexcept override { return detail_.c_str(); }
    const std::string& reason() const { return reason_; }
    const std::string& detail() const { return detail_; }

private:
    std::string reason_;
    std::string detail_;
};

struct KernelOptions {
    Address self{};  // this instance's unicast address, `service/instance`
    MessageLimits limits{};
    std::uint32_t handler_attempts_max = 5;        // then the input is dead-lettered
    TimeMs handler_retry_delay_ms_min = 100;
    TimeMs handler_retry_delay_ms_max = 10'000;
    std::size_t handler_retries_pending_max = 1024;
    std::uint32_t send_attempts_max = 500;         // then the outbox row is dead-lettered
    TimeMs send_retry_delay_ms_min = 200;
    TimeMs send_retry_delay_ms_max = 30'000;
    std::size_t outbox_unconfirmed_max = 65'536;   // backpressure: input waits above this
    std::size_t sends_per_step_max = 1024;
    std::size_t state_value_bytes_max = 1024 * 1024;
    std::size_t dead_letter_raw_bytes_max = 1024 * 1024;
    // TEST ONLY: breaks "read first" on purpose (every input looks new), so the simulator can show
    // it catches the double apply that follows. Never set it in a service.
    bool testing_skip_dedup_read = false;
    ExecutionLimits executions{};
    std::size_t timers_per_step_max = 1024;        // due timers fired in one step
    std::size_t replays_per_step_max = 4096;       // executions replayed in one step
    std::size_t steps_in_flight_max = 1024;        // durable function steps running on workers
    std::size_t executions_cached_max = 1024;      // blocked frames kept in memory; 0: always replay
};

struct SendOptions {
    std::string correlation{};  // default: the input's correlation, or its id
    std::string promise{};
    TimeMs deadline_ms = 0;
    Headers headers{};
};

// What a handler sees and does during one step. Writes are buffered and committed with the
// input's dedup row, or rolled back together. Valid only during the handler call.
class StepContext {
public:
    const Envelope& message() const { return message_; }
    TimeMs now_ms() const { return now_ms_; }
    const Address& self() const { return self_; }

    // Reads state as of this step: this step's own writes first, then the store.
    std::optional<Bytes> load(std::string_view key);
    void save(std::string_view key, Bytes value);
    void erase(std::string_view key);
    // Sends after the step commits. The id is derived from the input id and the send's position.
    void send(const Address& to, std::string_view kind, Bytes body, const SendOptions& options = {});
    // Sends to the input's sender; rejects the input when it has no `from`.
    void reply(std::string_view kind, Bytes body, const SendOptions& options = {});

private:
    friend class Kernel;
    StepContext(const Envelope& message, TimeMs now_ms, const Address& self, StoreReader& store,
                const std::map<std::string, std::optional<Bytes>, std::less<>>& batch_state)
        : message_(message), now_ms_(now_ms), self_(self), store_(store), batch_state_(batch_state) {}

    const Envelope& message_;
    TimeMs now_ms_;
    const Address& self_;
    StoreReader& store_;
    const std::map<std::string, std::optional<Bytes>, std::less<>>& batch_state_;
    std::map<std::string, std::optional<Bytes>, std::less<>> writes_;  // this step's
    std::vector<Envelope> sends_;  // ids, from and sent_at are set when the step merges
    Status store_failure_;  // a failed read: the whole batch is retried, not this input refused
};

using Handler = std::function<void(StepContext&)>;
using HandlerTable = std::map<std::string, Handler, std::less<>>;

// Chooses anycast pins (design §4.6); the runtime forwards to Transport::route.
class Router {
public:
    virtual ~Router() = default;
    virtual std::string route(const Address& to) = 0;
};

// A message the application starts from outside any handler (Service::post).
struct Origination {
    Address to;
    std::string kind;
    Bytes body;
    SendOptions options;
    std::optional<PromiseRow> promise{};  // created in the same commit (a Client's start)
};

// A dead letter's message sent through the handlers again (Service::redrive). Its row is deleted
// in the commit that applies the message (or finds it already applied); if it is refused again,
// the row stays and counts one more attempt.
struct Redrive {
    std::string key;  // the dead letter's key: the message id
    Bytes bytes;      // the raw bytes, complete
};

struct StepInputs {
    std::vector<Delivery> deliveries;
    std::vector<MessageId> confirmed;
    std::vector<Origination> originated;
    std::vector<StepResult> step_results{};         // durable function steps back from workers
    std::vector<std::string> resume_executions{};   // replay these (running ones, at start-up)
    std::vector<Redrive> redrives{};
    std::vector<Undeliverable> undeliverable{};     // sends the transport refused for good
    bool empty() const {
        return deliveries.empty() && confirmed.empty() && originated.empty() && step_results.empty() &&
               resume_executions.empty() && redrives.empty() && undeliverable.empty();
    }
};

enum class TraceKind {
    applied,          // a handler ran and its effects commit with the dedup row
    duplicate,        // the dedup table knew the id: acknowledged, nothing run
    dead_lettered,    // refused with a reason
    retry_scheduled,  // the handler threw; the input waits for another attempt
    originated,       // a message posted by the application
    confirmed,        // an outbox row's send was confirmed
    send_dead_lettered,
    execution_started,
    execution_completed,   // its promise resolved
    execution_failed,      // its promise rejected (reason: the error, or nondeterminism)
    settle_conflict,       // a settle that came after a different one: reported, not applied
    timer_fired,
    redriven,              // a redriven dead letter's message was applied (or already was): row deleted
};
std::string_view trace_kind_name(TraceKind kind);

struct TraceEvent {
    TraceKind kind;
    MessageId id;          // the input's id (nil for undecodable input), or the sent id
    std::string message_kind;
    std::string reason;    // for dead letters and retries
    std::string subject{}; // the execution or promise id, for durable function events
    friend bool operator==(const TraceEvent&, const TraceEvent&) = default;
};

// A handler that threw waits here (not acknowledged) until its next attempt is due.
struct HandlerRetry {
    MessageId id;
    std::vector<DeliveryTag> tags;  // every delivery of this id seen so far
    Bytes bytes;
    std::vector<StreamPosition> positions;  // of those deliveries (transports with offsets)
    std::uint32_t attempts = 0;  // attempts made so far
    TimeMs due_ms = 0;
    std::string last_error;
    std::string redrive_key{};  // set when the input is a redriven dead letter
};

struct BatchEffects {
    TimeMs now_ms = 0;
    CommitBatch commit;
    std::vector<DeliveryTag> acks;         // only after the commit succeeds
    std::vector<Delivery> deferred;        // not taken this step (backpressure): offer again
    std::vector<Redrive> redrives_deferred{};  // likewise, for redriven dead letters
    std::vector<HandlerRetry> retries;     // new or renewed handler retries
    std::vector<MessageId> retries_done;   // ids whose pending retry is settled this step
    std::vector<TraceEvent> trace;
    // Durable functions: steps to run after the commit, the frames they need alive, timers.
    std::vector<StepDispatch> dispatches;
    std::vector<ParkedFrame> parked;
    std::vector<ParkedFrame> cached;                     // blocked frames for the frame cache
    std::vector<std::string> steps_finished;            // executions whose in-flight step returned
    std::vector<std::pair<TimeMs, std::string>> timers_added;
    std::vector<std::pair<TimeMs, std::string>> timers_done;  // fired or settled otherwise
    std::vector<std::string> replays_deferred;          // over a bound: replay in a later step
};

class Kernel {
public:
    Kernel(KernelOptions options, const HandlerTable& handlers, const FunctionTable& functions, const Clock& clock,
           Random& random, Router& router);

    // Runs one batch. Fails only when a store read fails (the batch may be stepped again).
    // Does not change the kernel: call committed() once the commit succeeded.
    Result<BatchEffects> step(const StepInputs& inputs, StoreReader& store);
    // The effects are durable: move the kernel's memory on (outbox, retries, timers, frames).
    void committed(BatchEffects& effects);

    // Unsettled outbox rows found at start-up; they are retransmitted as if just committed.
    void restore_unsettled(std::vector<OutboxRow> rows);
    // Pending promises with deadlines found at start-up: their timers are armed again.
    void restore_timers(const std::vector<PromiseRow>& rows);
    std::size_t timers_pending() const { return timers_.size(); }
    std::size_t steps_in_flight() const { return steps_in_flight_.size(); }
    std::size_t frames_cached() const { return cached_frames_.size(); }
    // Ids whose send is due now, oldest first, at most `limit`; each counts as an attempt.
    std::vector<MessageId> take_sends_due(std::size_t limit);
    // The transport did not accept these: try again soon, without counting the attempt.
    void send_refused(std::span<const MessageId> ids);
    // The message to hand to the transport for an unsettled outbox id.
    OutgoingMessage outgoing(const MessageId& id) const;

    // Whether a step would find due work (retries, exhausted sends) with no new input.
    bool has_due_work() const;
    // Earliest time a retry or retransmission falls due; INT64_MAX when none.
    TimeMs next_due_ms() const;
    std::size_t unsettled_count() const { return unsettled_.size(); }
    std::size_t retries_pending() const { return retries_.size(); }
    const KernelOptions& options() const { return options_; }

private:
    struct PendingSend {
        OutboxRow row;
        std::uint32_t attempts = 0;
        TimeMs next_attempt_ms = 0;
    };
    class Batch;
    friend class Batch;

    TimeMs backoff_ms(std::uint32_t attempts, TimeMs min_ms, TimeMs max_ms);

    KernelOptions options_;
    const HandlerTable& handlers_;
    const FunctionTable& functions_;
    const Clock& clock_;
    Random& random_;
    Router& router_;
    IdGenerator ids_;
    std::map<MessageId, PendingSend> unsettled_;
    std::map<MessageId, HandlerRetry> retries_;
    std::set<std::pair<TimeMs, std::string>> timers_;       // (due, promise id)
    std::map<std::string, ParkedFrame, std::less<>> steps_in_flight_;  // by execution id
    // The frame cache: blocked frames by execution id, with when each was last used. Lossy by
    // design: step() takes the frames it resumes out of it, and a batch whose commit fails drops
    // them; a missing frame is replayed from its history.
    std::map<std::string, std::pair<ParkedFrame, std::uint64_t>, std::less<>> cached_frames_;
    std::uint64_t cache_clock_ = 0;
};

}  // namespace choreo
