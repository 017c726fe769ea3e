#include "choreo/service.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "choreo/codec.h"

namespace choreo {
namespace {

ServiceOptions with_self(ServiceOptions options) {
    CHOREO_ASSERT(Address::valid_name(options.name));
    CHOREO_ASSERT(Address::valid_name(options.instance));
    options.kernel.self = Address::unicast(options.name, options.instance);
    return options;
}

}  // namespace

Service::Service(ServiceOptions options, Transport& transport, Store& store)
    : Service(std::move(options), transport, store, std::make_unique<SystemClock>(),
              std::make_unique<SystemRandom>()) {}

Service::Service(ServiceOptions options, Transport& transport, Store& store, const Clock& clock, Random& random)
    : options_(with_self(std::move(options))),
      self_(options_.kernel.self),
      transport_(transport),
      store_(store),
      clock_(clock),
      random_(random),
      router_(transport),
      kernel_(options_.kernel, handlers_, functions_, clock_, random_, router_),
      workers_(std::make_unique<StepWorkers>(options_.step_workers_max, [this](StepResult result) {
          {
              std::lock_guard lock{mutex_};
              step_results_.push_back(std::move(result));
          }
          transport_.wake();
      })) {
    CHOREO_ASSERT(options_.batch_size_max >= 1);
    CHOREO_ASSERT(options_.batch_delay_us_max >= 0);
    CHOREO_ASSERT(options_.idle_wait_us_max >= 0);
    CHOREO_ASSERT(options_.commit_attempts_max >= 1);
    CHOREO_ASSERT(options_.retention.purge_rows_max >= 1);
}

Service::Service(ServiceOptions options, Transport& transport, Store& store, std::unique_ptr<SystemClock> clock,
                 std::unique_ptr<SystemRandom> random)
    : Service(std::move(options), transport, store, *clock, *random) {
    own_clock_ = std::move(clock);
    own_random_ = std::move(random);
}

Service::~Service() {
    workers_.reset();  // join the step threads while what they report into (mutex_, step_results_) lives
}

void Service::on_step(std::string_view kind, Handler handler) {
    CHOREO_ASSERT(!started_);  // handlers are registered before the service runs
    CHOREO_ASSERT(!kind.empty() && kind.size() <= options_.kernel.limits.kind_bytes_max);
    const bool inserted = handlers_.emplace(std::string(kind), std::move(handler)).second;
    CHOREO_ASSERT(inserted);  // one handler per kind
}

void Service::register_function(std::string_view name, DurableFunction function) {
    CHOREO_ASSERT(!started_);
    CHOREO_ASSERT(Address::valid_name(name));
    const bool inserted = functions_.emplace(std::string(name), std::move(function)).second;
    CHOREO_ASSERT(inserted);  // one function per name
}

Result<std::optional<PromiseRow>> Service::result(std::string_view id) { return store_.find_promise(id); }

void Service::set_observer(std::function<void(const TraceEvent&)> observer) {
    CHOREO_ASSERT(!started_);
    observer_ = std::move(observer);
}

Status Service::redrive(std::string_view key) {
    if (stopping_.load()) return closed_error("stopped", "the service is stopping");
    Result<std::optional<DeadLetter>> found = store_.find_dead_letter(key);
    if (!found.ok()) return found.status();
    if (!found->has_value()) return not_found_error("no_dead_letter", std::string(key));
    const DeadLetter& letter = **found;
    CHOREO_RETURN_IF_ERROR(check_redrivable(letter));
    {
        std::lock_guard lock{mutex_};
        if (redrives_in_flight_.contains(letter.key)) return Status{};  // already on its way
        if (redrives_in_flight_.size() >= options_.posted_max) {
            return transient_error("redrive_backlog_full",
                                   std::to_string(redrives_in_flight_.size()) + " redrives wait");
        }
        redrives_in_flight_.insert(letter.key);
        redrives_.push_back({letter.key, letter.raw});
    }
    transport_.wake();
    return Status{};
}

// The batch with these redrives committed: those not carried to the next batch are done (applied,
// refused again, or left to a waiting handler retry), and the same key may be redriven again.
void Service::redrives_committed(const StepInputs& inputs) {
    std::set<std::string_view> carried;
    for (const Redrive& redrive : carried_.redrives) carried.insert(redrive.key);
    std::lock_guard lock{mutex_};
    for (const Redrive& redrive : inputs.redrives) {
        if (!carried.contains(redrive.key)) redrives_in_flight_.erase(redrive.key);
    }
}

// Only inbound messages that decode, were kept whole and are still inside the dedup horizon can
// go through the handlers again; anything else would be refused again, or worse.
Status Service::check_redrivable(const DeadLetter& letter) {
    auto refuse = [](std::string why) { return precondition_error("not_redrivable", std::move(why)); };
    if (letter.reason == refusal::send_attempts_exhausted) {
        return refuse("an outbound send that was never confirmed, not an input");
    }
    if (letter.raw_size == 0 || letter.raw.size() != letter.raw_size) {
        return refuse("only " + std::to_string(letter.raw.size()) + " of " + std::to_string(letter.raw_size) +
                      " bytes were kept");
    }
    Result<Envelope> decoded = decode_envelope(letter.raw, options_.kernel.limits);
    if (!decoded.ok()) return refuse("the bytes do not decode: " + decoded.status().to_string());
    // Outbound sends a transport refused for good (message_too_large, no_route, ...) are
    // addressed elsewhere; so are misaddressed inputs, which would be refused again.
    if (!decoded->to.reaches(self_)) return refuse("addressed to " + decoded->to.to_string() + ", not to this service");
    if (decoded->kind == invoke_kind) {
        return refuse("a refused durable function call; its caller was answered with a rejection");
    }
    Result<TimeMs> horizon_ms = store_.dedup_horizon();
    if (!horizon_ms.ok()) return horizon_ms.status();
    if (decoded->sent_at_ms < *horizon_ms) {
        return refuse("sent before the dedup horizon: it may have been applied and forgotten");
    }
    return Status{};
}

Status Service::post(Address to, std::string kind, Bytes body, SendOptions options) {
    if (to.empty()) return invalid_argument_error("invalid_address", "post needs an address");
    if (kind.empty() || kind.size() > options_.kernel.limits.kind_bytes_max) {
        return invalid_argument_error("invalid_kind", "kind is empty or too long");
    }
    return post_origination({std::move(to), std::move(kind), std::move(body), std::move(options)});
}

Status Service::post_origination(Origination origination) {
    if (stopping_.load()) return closed_error("stopped", "the service was stopped");
    {
        std::lock_guard lock{mutex_};
        if (posted_.size() >= options_.posted_max) {
            return transient_error("post_backlog_full", std::to_string(posted_.size()) + " posts wait for a batch");
        }
        posted_.push_back(std::move(origination));
    }
    transport_.wake();
    return Status{};
}

void Service::stop() {
    stopping_.store(true);
    transport_.wake();
}

ServiceStats Service::stats() const {
    std::lock_guard lock{mutex_};
    return stats_;
}

Status Service::run() {
    while (!stopping_.load()) {
        Result<bool> worked = run_once(options_.idle_wait_us_max);
        if (!worked.ok()) {
            if (worked.status().code() == StatusCode::closed && stopping_.load()) break;
            return worked.status();
        }
    }
    return Status{};
}

// Checks the wiring and restores the unsettled outbox, which is retransmitted from here on.
Status Service::start() {
    const Address transport_address = transport_.local_address();
    if (transport_address != self_) {
        return precondition_error("address_mismatch", "the transport receives on " +
                                                          transport_address.to_string() + ", the service is " +
                                                          self_.to_string());
    }
    MessageId after;
    for (;;) {
        Result<std::vector<OutboxRow>> page = store_.unsettled_outbox(after, options_.outbox_restore_page_max);
        if (!page.ok()) return page.status();
        if (page->empty()) break;
        after = page->back().id;
        const std::size_t count = page->size();
        kernel_.restore_unsettled(std::move(page).value());
        if (count < options_.outbox_restore_page_max) break;
    }
    CHOREO_RETURN_IF_ERROR(restore_timers());
    CHOREO_RETURN_IF_ERROR(restore_executions());
    started_ = true;
    return Status{};
}

namespace {

// Reads a store listing page by page (`read(after, limit)`, in id order) and hands each page to
// `use`, until a short page.
template <typename Read, typename Use>
Status for_each_page(std::size_t page_max, Read read, Use use) {
    std::string after;
    for (;;) {
        auto page = read(after, page_max);
        if (!page.ok()) return page.status();
        if (page->empty()) return Status{};
        after = page->back().id;
        use(*page);
        if (page->size() < page_max) return Status{};
    }
}

}  // namespace

// A timer outlives a crash: pending promises with deadlines are armed again.
Status Service::restore_timers() {
    return for_each_page(
        options_.restore_page_max,
        [&](const std::string& after, std::size_t limit) { return store_.pending_promises_with_deadline(after, limit); },
        [&](const std::vector<PromiseRow>& page) { kernel_.restore_timers(page); });
}

// A crash and a sleep are the same interruption: every running execution is replayed, and runs
// on until it blocks again (a step started before the crash runs again, or, at most once, reports
// step_outcome_unknown).
Status Service::restore_executions() {
    return for_each_page(
        options_.restore_page_max,
        [&](const std::string& after, std::size_t limit) { return store_.running_executions(after, limit); },
        [&](const std::vector<ExecutionRow>& page) {
            for (const ExecutionRow& execution : page) carried_.resume_executions.push_back(execution.id);
        });
}

Result<bool> Service::run_once(std::int64_t wait_us) {
    if (!fatal_.ok()) return fatal_;
    if (!started_) {
        Status started = start();
        if (!started.ok()) {
            fatal_ = started;
            return started;
        }
    }
    StepInputs inputs = std::move(carried_);
    carried_ = StepInputs{};
    inputs.deliveries.reserve(options_.batch_size_max);
    {
        std::lock_guard lock{mutex_};
        for (Origination& origination : posted_) inputs.originated.push_back(std::move(origination));
        posted_.clear();
        for (Redrive& redrive : redrives_) inputs.redrives.push_back(std::move(redrive));
        redrives_.clear();
        for (StepResult& result : step_results_) inputs.step_results.push_back(std::move(result));
        step_results_.clear();
    }
    Status gathered = gather(inputs, wait_us);
    if (!gathered.ok()) {
        keep_for_retry(inputs);
        return gathered;
    }
    bool worked = false;
    if (ready_to_step(inputs)) {
        Result<BatchEffects> effects = kernel_.step(inputs, store_);
        Status outcome = effects.ok() ? commit(*effects) : effects.status();
        if (!outcome.ok()) return retry_later(std::move(outcome), inputs);
        if (!inputs.redrives.empty()) redrives_committed(inputs);
        worked = true;
    } else {
        keep_for_retry(inputs);  // backing off, or input waiting for room: not run now
    }
    Result<std::size_t> sent = send_due();
    if (!sent.ok()) return sent.status();
    CHOREO_RETURN_IF_ERROR(purge_if_due());
    return worked || *sent > 0;
}

bool Service::has_room() const {
    const KernelOptions& kernel = options_.kernel;
    return kernel_.unsettled_count() + kernel.sends_per_step_max <= kernel.outbox_unconfirmed_max;
}

bool Service::backing_off() const { return commit_retry_at_ms_ > clock_.now_ms(); }

// Whether a step now would do anything. Deliveries held back by backpressure do not count
// until confirmations make room, so a service under backpressure waits instead of spinning.
bool Service::ready_to_step(const StepInputs& inputs) const {
    if (backing_off()) return false;
    if (!inputs.confirmed.empty() || !inputs.originated.empty() || !inputs.step_results.empty() ||
        !inputs.undeliverable.empty()) {
        return true;
    }
    if (!inputs.redrives.empty() && has_room()) return true;
    // Replays held back because every step slot is taken wait for a step to return.
    const bool step_room = kernel_.steps_in_flight() < options_.kernel.steps_in_flight_max;
    if (!inputs.resume_executions.empty() && step_room) return true;
    return (!inputs.deliveries.empty() && has_room()) || kernel_.has_due_work();
}

std::int64_t Service::idle_wait_us(std::int64_t wait_us) const {
    const TimeMs now_ms = clock_.now_ms();
    TimeMs due_ms = kernel_.next_due_ms();
    if (commit_retry_at_ms_ > now_ms) due_ms = std::min(due_ms, commit_retry_at_ms_);
    if (due_ms <= now_ms) return 0;
    if (due_ms == std::numeric_limits<TimeMs>::max()) return wait_us;
    return std::min(wait_us, (due_ms - now_ms) * 1000);
}

// Fills a batch: waits for the first input (unless work is already waiting), then up to
// batch_delay_us_max more for the rest, then takes whatever is ready, never more than
// batch_size_max deliveries.
Status Service::gather(StepInputs& inputs, std::int64_t wait_us) {
    auto count = [&] { return inputs.deliveries.size() + inputs.confirmed.size(); };
    const std::size_t before = count();
    CHOREO_RETURN_IF_ERROR(receive_into(inputs, ready_to_step(inputs) ? 0 : idle_wait_us(wait_us)));
    // A full batch does not wait for more: it could take in nothing but confirmations, and the
    // next batch takes those.
    const bool batch_full = inputs.deliveries.size() >= options_.batch_size_max;
    if (count() > before && options_.batch_delay_us_max > 0 && !batch_full) {
        CHOREO_RETURN_IF_ERROR(receive_into(inputs, options_.batch_delay_us_max));
    }
    for (std::size_t round = 0; round < options_.batch_size_max; round++) {
        const std::size_t round_before = count();
        CHOREO_RETURN_IF_ERROR(receive_into(inputs, 0));
        if (count() == round_before) break;
    }
    return Status{};
}

// Takes deliveries only while the batch and the outbox have room; with none it still waits for
// confirmations (deliveries_max 0), which are what make room.
Status Service::receive_into(StepInputs& inputs, std::int64_t timeout_us) {
    receive_buffer_.clear();
    const bool take_deliveries =
        has_room() && !backing_off() && inputs.deliveries.size() < options_.batch_size_max;
    const std::size_t room = take_deliveries ? options_.batch_size_max - inputs.deliveries.size() : 0;
    CHOREO_RETURN_IF_ERROR(transport_.receive(receive_buffer_, room, timeout_us));
    CHOREO_ASSERT(receive_buffer_.deliveries.size() <= room);
    for (Delivery& delivery : receive_buffer_.deliveries) inputs.deliveries.push_back(std::move(delivery));
    for (const MessageId& id : receive_buffer_.confirmed) inputs.confirmed.push_back(id);
    for (Undeliverable& refused : receive_buffer_.undeliverable) inputs.undeliverable.push_back(std::move(refused));
    return Status{};
}

// Write last: the batch's effects become durable, and only then are deliveries acknowledged.
Status Service::commit(BatchEffects& effects) {
    if (options_.testing_ack_before_commit && !effects.acks.empty()) {
        transport_.acknowledge(effects.acks).ignore();
        effects.acks.clear();
    }
    if (!effects.commit.empty()) {
        CHOREO_RETURN_IF_ERROR(store_.commit(effects.commit));
    }
    commit_failures_in_row_ = 0;
    commit_retry_at_ms_ = 0;
    kernel_.committed(effects);
    for (Delivery& delivery : effects.deferred) carried_.deliveries.push_back(std::move(delivery));
    for (Redrive& redrive : effects.redrives_deferred) carried_.redrives.push_back(std::move(redrive));
    for (std::string& execution_id : effects.replays_deferred) carried_.resume_executions.push_back(std::move(execution_id));
    dispatch_steps(effects);
    if (!effects.acks.empty()) {
        // The batch is committed: whatever the ack does, its inputs must not run again here. An
        // ack that fails only causes a redelivery, which the dedup table drops.
        Status acked = transport_.acknowledge(effects.acks);
        if (!acked.ok()) {
            std::lock_guard lock{mutex_};
            stats_.ack_failures++;
        }
    }
    record(effects);
    return Status{};
}

// A batch that could not be read or committed leaves no trace: its inputs run again after a
// backoff, unless the store says it cannot go on (then the service stops; unacknowledged input
// is redelivered to whoever runs next).
Result<bool> Service::retry_later(Status failure, StepInputs& inputs) {
    {
        std::lock_guard lock{mutex_};
        stats_.commit_failures++;
    }
    const bool retryable = failure.code() == StatusCode::transient || failure.code() == StatusCode::aborted;
    if (!retryable || ++commit_failures_in_row_ >= options_.commit_attempts_max) {
        fatal_ = failure;
        return failure;
    }
    keep_for_retry(inputs);
    const TimeMs delay_ms = std::min<TimeMs>(options_.commit_retry_delay_ms_max,
                                             TimeMs{10} << std::min<std::uint32_t>(commit_failures_in_row_, 10));
    commit_retry_at_ms_ = clock_.now_ms() + delay_ms;
    return true;
}

// After the commit, so a step's start is durable before its callable runs.
void Service::dispatch_steps(BatchEffects& effects) {
    for (StepDispatch& dispatch : effects.dispatches) workers_->submit(std::move(dispatch));
    effects.dispatches.clear();
}

void Service::keep_for_retry(StepInputs& inputs) {
    for (Delivery& delivery : inputs.deliveries) carried_.deliveries.push_back(std::move(delivery));
    for (const MessageId& id : inputs.confirmed) carried_.confirmed.push_back(id);
    for (Origination& origination : inputs.originated) carried_.originated.push_back(std::move(origination));
    for (StepResult& result : inputs.step_results) carried_.step_results.push_back(std::move(result));
    for (std::string& execution_id : inputs.resume_executions) carried_.resume_executions.push_back(std::move(execution_id));
    for (Redrive& redrive : inputs.redrives) carried_.redrives.push_back(std::move(redrive));
    for (Undeliverable& refused : inputs.undeliverable) carried_.undeliverable.push_back(std::move(refused));
}

// Hands the due sends to the transport, one send() per destination (address and pinned
// instance), so a destination that holds back (a full or absent peer) does not hold back the
// others. Within a destination the order is kept; what a destination refuses is offered again.
Result<std::size_t> Service::send_due() {
    std::vector<MessageId> due = kernel_.take_sends_due(options_.sends_per_batch_max);
    if (due.empty()) return std::size_t{0};
    std::vector<OutgoingMessage> messages;
    messages.reserve(due.size());
    for (const MessageId& id : due) messages.push_back(kernel_.outgoing(id));
    auto destination_less = [](const OutgoingMessage& a, const OutgoingMessage& b) {
        return std::tie(a.to, a.route) < std::tie(b.to, b.route);
    };
    if (!std::is_sorted(messages.begin(), messages.end(), destination_less)) {  // mostly one destination
        std::stable_sort(messages.begin(), messages.end(), destination_less);
    }
    std::size_t sent = 0;
    std::vector<MessageId> refused;
    Status closed;
    for (std::size_t first = 0; first < messages.size();) {
        std::size_t last = first + 1;
        while (last < messages.size() && !destination_less(messages[first], messages[last])) last++;
        const std::span<const OutgoingMessage> group{messages.data() + first, last - first};
        Result<std::size_t> accepted = closed.ok() ? transport_.send(group) : Result<std::size_t>{std::size_t{0}};
        if (!accepted.ok() && accepted.status().code() == StatusCode::closed) closed = accepted.status();
        const std::size_t count = accepted.ok() ? *accepted : 0;
        CHOREO_ASSERT(count <= group.size());
        for (const OutgoingMessage& message : group.subspan(count)) refused.push_back(message.id);
        sent += count;
        first = last;
    }
    if (!refused.empty()) kernel_.send_refused(refused);
    {
        std::lock_guard lock{mutex_};
        stats_.sends += sent;
    }
    if (!closed.ok()) return closed;
    return sent;
}

Status Service::purge_if_due() {
    const TimeMs now_ms = clock_.now_ms();
    if (now_ms < next_purge_at_ms_) return Status{};
    const RetentionOptions& retention = options_.retention;
    PurgeRequest request;
    request.dedup_sent_before_ms = std::max<TimeMs>(0, now_ms - retention.dedup_retention_ms);
    request.outbox_settled_before_ms = std::max<TimeMs>(0, now_ms - retention.outbox_retention_ms);
    request.promise_settled_before_ms = std::max<TimeMs>(0, now_ms - retention.promise_retention_ms);
    request.execution_finished_before_ms = std::max<TimeMs>(0, now_ms - retention.execution_retention_ms);
    request.rows_max = retention.purge_rows_max;
    Result<PurgeResult> purged = store_.purge(request);
    if (!purged.ok()) {
        if (purged.status().code() == StatusCode::transient) return Status{};  // next pass
        fatal_ = purged.status();
        return purged.status();
    }
    // More to purge: continue on the next loop, between batches, so no pass stalls input long.
    next_purge_at_ms_ = purged->more ? now_ms : now_ms + retention.purge_interval_ms;
    return Status{};
}

void Service::record(const BatchEffects& effects) {
    {
        std::lock_guard lock{mutex_};
        stats_.batches++;
        if (!effects.commit.empty()) stats_.commits++;
        for (const TraceEvent& event : effects.trace) {
            switch (event.kind) {
                case TraceKind::applied: stats_.applied++; break;
                case TraceKind::duplicate: stats_.duplicates++; break;
                case TraceKind::dead_lettered:
                case TraceKind::send_dead_lettered: stats_.dead_lettered++; break;
                case TraceKind::retry_scheduled: stats_.retries++; break;
                case TraceKind::confirmed: stats_.confirmed++; break;
                case TraceKind::originated: break;
                case TraceKind::execution_started: stats_.executions_started++; break;
                case TraceKind::execution_completed: stats_.executions_completed++; break;
                case TraceKind::execution_failed: stats_.executions_failed++; break;
                case TraceKind::settle_conflict: stats_.settle_conflicts++; break;
                case TraceKind::timer_fired: stats_.timers_fired++; break;
                case TraceKind::redriven: stats_.redriven++; break;
            }
        }
    }
    if (observer_) {
        for (const TraceEvent& event : effects.trace) observer_(event);
    }
}

}  // namespace choreo
