// choreo/service.h — the runtime: one service instance on one thread, over any Transport and
// any Store.
//
// The loop: receive a batch → the kernel reads the dedup table and runs handlers → one atomic
// commit for the whole batch (group commit, bounded by batch_size_max and batch_delay_us_max)
// → acknowledge the deliveries → send the outbox, retransmitting what is unconfirmed with
// bounded exponential backoff.
//
//   choreo::MemoryNetwork network;
//   choreo::MemoryTransport transport{network, choreo::Address::unicast("orders", "1")};
//   choreo::MemoryStore store;
//   choreo::Service svc{{.name = "orders", .instance = "1"}, transport, store};
//   svc.on("payment-completed", [](choreo::Context& ctx, const PaymentCompleted& paid) {
//       ctx.send("shipping", "ship-order", ShipOrder{paid.order_id});
//   });
//   std::thread runner{[&] { choreo::Status end = svc.run(); }};
//   ...
//   svc.stop();   // finishes the batch in flight, then run() returns
//   runner.join();
//
// Threading: run(), run_once() and the handlers run on one thread (the runtime thread).
// stop(), post() and stats() may be called from any thread. The Transport and the Store must
// outlive the Service; handlers must not block for long (they hold up the whole batch).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "choreo/context.h"
#include "choreo/functions.h"
#include "choreo/step_workers.h"
#include "choreo/kernel.h"
#include "choreo/store.h"
#include "choreo/system.h"
#include "choreo/transport.h"

namespace choreo {

struct RetentionOptions {
    TimeMs dedup_retention_ms = 7LL * 24 * 3600 * 1000;  // ids remembered this long (by sent_at)
    TimeMs outbox_retention_ms = 24LL * 3600 * 1000;     // settled outbox rows kept this long
    TimeMs promise_retention_ms = 7LL * 24 * 3600 * 1000; // settled promises kept this long
    TimeMs execution_retention_ms = 7LL * 24 * 3600 * 1000; // finished executions (and history)
    TimeMs purge_interval_ms = 1000;
    std::size_t purge_rows_max = 250;  // per purge pass: about one commit's time on SQLite (bench/sqlite_purge)
};

struct ServiceOptions {
    std::string name{};            // the service: its anycast address
    std::string instance = "1";    // this instance: `name/instance` is its unicast address
    std::size_t batch_size_max = 256;         // deliveries per batch (one commit)
    std::int64_t batch_delay_us_max = 500;    // extra wait to fill a batch once input arrived
    std::int64_t idle_wait_us_max = 50'000;   // longest single wait in receive when idle
    std::size_t sends_per_batch_max = 4096;   // outbox sends handed to the transport per loop
    std::uint32_t commit_attempts_max = 10;   // transient commit failures in a row, then stop
    TimeMs commit_retry_delay_ms_max = 1000;
    std::size_t outbox_restore_page_max = 1000;
    std::size_t posted_max = 10'000;          // post() calls waiting for the next batch
    std::size_t step_workers_max = 4;         // threads for durable function steps; 0: inline
    // TEST ONLY: acknowledges a batch's deliveries before its commit ("write last" broken on
    // purpose), so the simulator can show it catches the loss that follows. Never set it.
    bool testing_ack_before_commit = false;
    std::size_t restore_page_max = 1000;      // timers and executions read per page at start
    KernelOptions kernel{};        // `kernel.self` is set from name and instance
    RetentionOptions retention{};
};

struct ServiceStats {
    std::uint64_t batches = 0;
    std::uint64_t commits = 0;
    std::uint64_t applied = 0;
    std::uint64_t duplicates = 0;
    std::uint64_t dead_lettered = 0;
    std::uint64_t retries = 0;
    std::uint64_t sends = 0;           // transport sends, retransmissions included
    std::uint64_t confirmed = 0;
    std::uint64_t commit_failures = 0;
    std::uint64_t ack_failures = 0;    // committed, but the transport refused the ack (redelivered)
    std::uint64_t executions_started = 0;
    std::uint64_t executions_completed = 0;
    std::uint64_t executions_failed = 0;
    std::uint64_t settle_conflicts = 0;
    std::uint64_t timers_fired = 0;
    std::uint64_t redriven = 0;        // dead letters whose message was redriven and applied
};

namespace detail {
template <typename F>
struct HandlerSignature : HandlerSignature<decltype(&F::operator())> {};
template <typename C, typename R, typename... A>
struct HandlerSignature<R (C::*)(A...) const> {
    static constexpr std::size_t arity = sizeof...(A);
    using Arguments = std::tuple<std::decay_t<A>...>;
};
template <typename C, typename R, typename... A>
struct HandlerSignature<R (C::*)(A...)> : HandlerSignature<R (C::*)(A...) const> {};
template <typename R, typename... A>
struct HandlerSignature<R (*)(A...)> {
    static constexpr std::size_t arity = sizeof...(A);
    using Arguments = std::tuple<std::decay_t<A>...>;
};
}  // namespace detail

class Service {
public:
    // Uses the system clock and randomness seeded from the operating system.
    Service(ServiceOptions options, Transport& transport, Store& store);
    // Uses the given clock and randomness (tests, simulation). Both must outlive the Service.
    Service(ServiceOptions options, Transport& transport, Store& store, const Clock& clock, Random& random);
    ~Service();
    Service(const Service&) = delete;
    Service& operator=(const Service&) = delete;

    // Registers the handler for messages of `kind`, before the service runs. The handler takes
    // (Context&) or (Context&, const T&) where T has a msgpack adaptor; a body that does not
    // decode as T is dead-lettered as body_decode_failed.
    template <typename F>
    void on(std::string_view kind, F handler);
    void on_step(std::string_view kind, Handler handler);

    // Registers a durable function, before the service runs: `fn(DurableContext&, Args)`
    // returning choreo::Task<R> (choreo/functions.h). Callers reach it with ctx.call or start().
    template <typename F>
    void function(std::string_view name, F fn) {
        register_function(name, make_durable_function(std::move(fn)));
    }
    void register_function(std::string_view name, DurableFunction function);

    // Starts durable function `function` on service `to` as execution `id` (the same id twice is
    // the same execution), from outside any function. Its settlement comes back to this service,
    // where result() reads it. Any thread.
    template <typename Args>
    Status start(std::string_view to, std::string_view function, std::string id, const Args& args);
    // The promise of an execution started from here (or run here): pending until it settles.
    // Any thread, if the store allows concurrent readers (the memory store does).
    Result<std::optional<PromiseRow>> result(std::string_view id);

    // Runs batches until stop() or a fatal error (the store or transport cannot go on).
    Status run();
    // Runs at most one batch, waiting up to wait_us for input. True when it did any work (ran a
    // batch or handed messages to the transport).
    Result<bool> run_once(std::int64_t wait_us);
    // Asks run() to return after the batch in flight. Any thread.
    void stop();

    // Sends a message from outside any handler: it is committed to the outbox in the next batch
    // (then sent and retransmitted like any other) with a fresh time-ordered id. It is durable
    // once that batch commits. Fails with invalid_argument for a bad address, transient when
    // posted_max posts already wait, closed after stop(). Any thread.
    Status post(Address to, std::string kind, Bytes body, SendOptions options = {});
    template <typename T>
    Status post(std::string_view to, std::string kind, const T& body, SendOptions options = {});

    // Sends dead letter `key` (Store::dead_letters lists them) through this service's handlers
    // again, e.g. once the bug that made its handler fail is fixed. The row is deleted in the
    // commit that applies the message; refused again, it stays with one more attempt and the new
    // reason. Fails at once with not_found (no such dead letter); failed_precondition
    // "not_redrivable" when it would be refused again or cannot be an input: only part of the
    // bytes was kept, they do not decode, it was sent before the dedup horizon, it is an outbound
    // send that was never confirmed, or a durable function call (its caller already got a
    // rejection); transient when posted_max redrives already wait; closed after stop().
    // Redriving a key already on its way is a no-op. The message keeps its id, so if it was
    // applied meanwhile the redrive only removes the row. If a handler retry of the same message
    // is waiting, the retry runs it and the row stays (redrive again later).
    // Any thread, if the store allows concurrent readers (memory, SQLite do).
    Status redrive(std::string_view key);

    // Called on the runtime thread for every trace event, after its batch committed.
    void set_observer(std::function<void(const TraceEvent&)> observer);

    const Address& address() const { return self_; }
    ServiceStats stats() const;
    // Inputs waiting for a handler retry and sends waiting for confirmation (runtime thread).
    std::size_t retries_pending() const { return kernel_.retries_pending(); }
    std::size_t unsettled_sends() const { return kernel_.unsettled_count(); }

private:
    class TransportRouter final : public Router {
    public:
        explicit TransportRouter(Transport& transport) : transport_(transport) {}
        std::string route(const Address& to) override { return transport_.route(to); }

    private:
        Transport& transport_;
    };

    Service(ServiceOptions options, Transport& transport, Store& store, std::unique_ptr<SystemClock> clock,
            std::unique_ptr<SystemRandom> random);
    Status start();
    Status restore_timers();
    Status restore_executions();
    Status post_origination(Origination origination);
    Status check_redrivable(const DeadLetter& letter);
    void redrives_committed(const StepInputs& inputs);
    void dispatch_steps(BatchEffects& effects);
    Status gather(StepInputs& inputs, std::int64_t wait_us);
    Status receive_into(StepInputs& inputs, std::int64_t timeout_us);
    std::int64_t idle_wait_us(std::int64_t wait_us) const;
    bool has_room() const;
    bool backing_off() const;
    bool ready_to_step(const StepInputs& inputs) const;
    Status commit(BatchEffects& effects);
    Result<bool> retry_later(Status failure, StepInputs& inputs);
    void keep_for_retry(StepInputs& inputs);
    Result<std::size_t> send_due();  // how many the transport took
    Status purge_if_due();
    void record(const BatchEffects& effects);

    ServiceOptions options_;
    Address self_;
    Transport& transport_;
    Store& store_;
    std::unique_ptr<SystemClock> own_clock_;
    std::unique_ptr<SystemRandom> own_random_;
    const Clock& clock_;
    Random& random_;
    TransportRouter router_;
    HandlerTable handlers_;
    FunctionTable functions_;
    Kernel kernel_;
    std::unique_ptr<StepWorkers> workers_;  // after kernel_: joined before parked frames go

    bool started_ = false;
    Status fatal_;
    StepInputs carried_;              // inputs of a batch to run again (failed commit, deferred)
    std::uint32_t commit_failures_in_row_ = 0;
    TimeMs commit_retry_at_ms_ = 0;
    TimeMs next_purge_at_ms_ = 0;
    ReceiveBatch receive_buffer_;
    std::function<void(const TraceEvent&)> observer_;

    std::atomic<bool> stopping_{false};
    mutable std::mutex mutex_;              // guards posted_ and stats_
    std::vector<Origination> posted_;
    std::vector<Redrive> redrives_;
    std::set<std::string, std::less<>> redrives_in_flight_;  // keys queued or carried, until committed
    std::vector<StepResult> step_results_;   // from step workers
    ServiceStats stats_;
};

template <typename F>
void Service::on(std::string_view kind, F handler) {
    using Signature = detail::HandlerSignature<std::decay_t<F>>;
    if constexpr (Signature::arity == 1) {
        on_step(kind, [handler = std::move(handler)](StepContext& step) {
            Context context{step};
            handler(context);
        });
    } else {
        static_assert(Signature::arity == 2, "a handler takes (Context&) or (Context&, const T&)");
        using Body = std::tuple_element_t<1, typename Signature::Arguments>;
        on_step(kind, [handler = std::move(handler), limits = options_.kernel.limits](StepContext& step) {
            Result<Body> body = unpack<Body>(step.message().body, limits);
            if (!body.ok()) throw Reject(std::string(refusal::body_decode_failed), body.status().message());
            Context context{step};
            handler(context, body.value());
        });
    }
}

template <typename Args>
Status Service::start(std::string_view to, std::string_view function, std::string id, const Args& args) {
    Result<Address> address = Address::parse(to);
    if (!address.ok()) return address.status();
    if (!valid_promise_id(id)) return invalid_argument_error("invalid_promise_id", "bad execution id");
    Origination origination;
    origination.to = std::move(address).value();
    origination.kind = invoke_kind;
    origination.body = encode_invoke({std::string(function), pack(args), 0});
    origination.options.promise = id;
    origination.options.correlation = id;
    origination.promise = make_pending_promise(std::move(id), 0, 0);
    return post_origination(std::move(origination));
}

template <typename T>
Status Service::post(std::string_view to, std::string kind, const T& body, SendOptions options) {
    Result<Address> address = Address::parse(to);
    if (!address.ok()) return address.status();
    return post(std::move(address).value(), std::move(kind), pack(body), std::move(options));
}

}  // namespace choreo
