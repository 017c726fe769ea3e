// choreo/durable.h — replaying one durable function execution (the kernel's side).
//
// An ExecutionRun is what a durable function talks to while it runs inside one kernel step.
// Every await the function makes takes the next position n in its history:
//   - a recorded answer at n is returned at once (skip-when-done);
//   - a new step is recorded as started and handed to the step workers after the commit;
//   - a new call creates the child promise `<execution>.<n>` and sends an invoke;
//   - a new sleep creates a timer promise `<execution>.<n>`;
//   - a send is recorded so that a replay does not send it again.
// An await whose answer is not there yet blocks the execution: the function's frame is dropped
// and the next resumption replays it from the top. A replay that asks for something else at a
// recorded position is nondeterminism: the execution fails (design §4.4).
//
// The typed layer users see is choreo/functions.h (DurableContext). Runtime thread only.
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "choreo/address.h"
#include "choreo/bytes.h"
#include "choreo/clock.h"
#include "choreo/envelope.h"
#include "choreo/execution.h"
#include "choreo/promise.h"
#include "choreo/status.h"
#include "choreo/task.h"

namespace choreo {

// Reasons a durable function sees in DurableError (and its rejected promise carries).
namespace durable_error {
inline constexpr std::string_view timed_out = "timed_out";
inline constexpr std::string_view rejected = "rejected";
inline constexpr std::string_view canceled = "canceled";
inline constexpr std::string_view step_failed = "step_failed";
inline constexpr std::string_view step_outcome_unknown = "step_outcome_unknown";
inline constexpr std::string_view call_depth_exceeded = "call_depth_exceeded";
inline constexpr std::string_view nondeterminism = "nondeterminism";
inline constexpr std::string_view invalid_arguments = "invalid_arguments";
inline constexpr std::string_view invalid_result = "invalid_result";
inline constexpr std::string_view unknown_function = "unknown_function";
inline constexpr std::string_view history_too_long = "history_too_long";
inline constexpr std::string_view promise_id_too_long = "promise_id_too_long";  // calls nested too deep
inline constexpr std::string_view steps_not_awaited = "steps_not_awaited";      // a step made before the last was awaited
inline constexpr std::string_view invalid_address = "invalid_address";
inline constexpr std::string_view store_read_failed = "store_read_failed";      // the batch runs again
}  // namespace durable_error

// Thrown into a durable function where an await fails; uncaught, it rejects the execution.
class DurableError : public std::exception {
public:
    DurableError(std::string reason, std::string detail)
        : reason_(std::move(reason)), detail_(std::move(detail)), what_(reason_ + ": " + detail_) {}
    const char* what() const noexcept override { return what_.c_str(); }
    const std::string& reason() const { return reason_; }
    const std::string& detail() const { return detail_; }

private:
    std::string reason_;
    std::string detail_;
    std::string what_;
};

// The outcome of a step's callable, computed on a step worker.
struct StepOutcome {
    bool ok = true;
    Bytes value;        // msgpack of the result when ok
    std::string error;  // the exception text when not
};
using StepCallable = std::function<StepOutcome()>;

struct StepOptions {
    // The callable is never started twice: if a start is recorded but no result, the function
    // gets DurableError(step_outcome_unknown) instead, and decides.
    bool at_most_once = false;
};

struct CallOptions {
    TimeMs timeout_ms = 0;  // 0 = none; else the call's promise times out after this long
};

// A step the kernel asks the runtime to run after the commit.
struct StepDispatch {
    std::string execution_id;
    std::uint32_t position = 0;
    std::string name;
    StepCallable callable;
};

// A send the execution made, for the kernel to commit to the outbox.
struct ExecutionSend {
    MessageId id;
    Address to;
    std::string kind;
    std::string promise;
    Bytes body;
    TimeMs deadline_ms = 0;
};

struct ExecutionLimits {
    std::uint32_t call_depth_max = 128;
    std::uint32_t history_records_max = 100'000;
};

class ExecutionRun {
public:
    // Reads a promise as of this batch (batch writes first, then the store).
    using PromiseReader = std::function<Result<std::optional<PromiseRow>>(std::string_view id)>;

    ExecutionRun(ExecutionRow execution, std::map<std::uint32_t, HistoryRecord> history, TimeMs now_ms,
                 ExecutionLimits limits, PromiseReader promises);

    const ExecutionRow& execution() const { return execution_; }
    std::uint32_t next_position() const { return next_position_; }
    TimeMs now_ms() const { return now_ms_; }

    // A step at the next position: the recorded value, or nullopt (blocked: it runs after the
    // commit). Throws DurableError for a recorded failure or an unknown outcome.
    std::optional<Bytes> step(std::string_view name, const StepOptions& options, StepCallable callable);
    // A call at the next position: returns its child promise id (created and invoked if new).
    std::string call(const Address& to, std::string_view function, Bytes args, const CallOptions& options);
    // A timer at the next position: returns its promise id (created if new, due at `due_ms`).
    std::string sleep_until(TimeMs due_ms);
    // A fire-and-forget send at the next position (skipped on replay).
    void send(const Address& to, std::string_view kind, Bytes body);

    // The promise's settled row as of now (timeouts and timers count at their deadline), or
    // nullopt while it is pending.
    std::optional<PromiseRow> settled(std::string_view promise_id);
    // Marks the execution blocked: an await could not be answered.
    void block() { blocked_ = true; }
    // The frame cache: an await that blocked leaves its coroutine and a check of whether it can
    // go on now. A later step rebinds the run and resumes the frame there, instead of replaying.
    void park(std::coroutine_handle<> handle, std::function<bool()> ready) {
        CHOREO_ASSERT(blocked_);
        parked_handle_ = handle;
        parked_ready_ = std::move(ready);
    }
    bool resumable() const { return parked_handle_ && !dispatch.has_value(); }
    // For a cached frame in a new step: the step's time, reads and history; nothing new yet.
    void rebind(TimeMs now_ms, PromiseReader promises, std::map<std::uint32_t, HistoryRecord> history);
    // Whether the parked await can go on now (reads promises; may record a store failure).
    bool parked_ready();
    // Resumes the parked await; runs until the function completes or blocks again.
    void resume_parked();
    // Throws DurableError for a promise that did not resolve.
    static void throw_unless_resolved(const PromiseRow& row);

    bool blocked() const { return blocked_; }
    // A store read failed during the run: the batch must fail (and run again), whatever the
    // function did with the error it was thrown.
    const Status& store_failure() const { return store_failure_; }
    bool nondeterministic() const { return !nondeterminism_.empty(); }
    const std::string& nondeterminism_detail() const { return nondeterminism_; }

    // What this run added, for the kernel to commit.
    std::vector<HistoryRecord> new_records;
    std::vector<PromiseRow> new_promises;
    std::vector<ExecutionSend> sends;
    std::optional<StepDispatch> dispatch;

private:
    const HistoryRecord* expect(HistoryKind kind, std::string_view name);  // the record at the next position
    HistoryRecord& record_new(HistoryKind kind, std::string_view name);
    std::string child_id(std::uint32_t position) const;  // throws promise_id_too_long
    [[noreturn]] void fail_nondeterministic(std::string detail);

    ExecutionRow execution_;
    std::map<std::uint32_t, HistoryRecord> history_;
    TimeMs now_ms_;
    ExecutionLimits limits_;
    PromiseReader promises_;
    std::uint32_t next_position_ = 0;
    bool blocked_ = false;
    std::string nondeterminism_;
    Status store_failure_;
    std::coroutine_handle<> parked_handle_;
    std::function<bool()> parked_ready_;
};

// The type-erased form the kernel runs (choreo/functions.h makes one): args in, result out.
using DurableFunction = std::function<Task<Bytes>(ExecutionRun& run, Bytes args)>;
using FunctionTable = std::map<std::string, DurableFunction, std::less<>>;

// A blocked function whose step runs on a worker: its frame must live until the step returns,
// since the step's callable may refer to it. Destroyed (root first) on the runtime thread.
struct ParkedFrame {
    std::unique_ptr<ExecutionRun> run;
    std::optional<Task<Bytes>> root;
};

// The result of a dispatched step, back from its worker.
struct StepResult {
    std::string execution_id;
    std::uint32_t position = 0;
    StepOutcome outcome;
};

// The id of the message an execution sends at `position` (an invoke or a send), and of the
// settlement it sends when it finishes: the same on every replay, so receivers drop repeats.
MessageId execution_message_id(std::string_view execution_id, std::uint64_t position);
MessageId settlement_message_id(std::string_view execution_id);

// The bodies of the two messages durable functions travel in (msgpack maps, docs/protocol.md).
inline constexpr std::string_view invoke_kind = "choreo.invoke";
inline constexpr std::string_view resume_kind = "choreo.resume";
struct InvokeBody {
    std::string function;
    Bytes args;
    std::uint32_t depth = 0;
};
struct ResumeBody {
    PromiseState state = PromiseState::resolved;
    Bytes value;
};
Bytes encode_invoke(const InvokeBody& body);
Result<InvokeBody> decode_invoke(ByteView bytes);
Bytes encode_resume(const ResumeBody& body);
Result<ResumeBody> decode_resume(ByteView bytes);

}  // namespace choreo
