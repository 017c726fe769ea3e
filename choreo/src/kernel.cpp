#include "choreo/kernel.h"

#include "kernel_batch.h"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "choreo/codec.h"

namespace choreo {

std::string_view trace_kind_name(TraceKind kind) {
    switch (kind) {
        case TraceKind::applied: return "applied";
        case TraceKind::duplicate: return "duplicate";
        case TraceKind::dead_lettered: return "dead_lettered";
        case TraceKind::retry_scheduled: return "retry_scheduled";
        case TraceKind::originated: return "originated";
        case TraceKind::confirmed: return "confirmed";
        case TraceKind::send_dead_lettered: return "send_dead_lettered";
        case TraceKind::execution_started: return "execution_started";
        case TraceKind::execution_completed: return "execution_completed";
        case TraceKind::execution_failed: return "execution_failed";
        case TraceKind::settle_conflict: return "settle_conflict";
        case TraceKind::timer_fired: return "timer_fired";
        case TraceKind::redriven: return "redriven";
    }
    CHOREO_UNREACHABLE();
}

// ---- StepContext -------------------------------------------------------------------------

std::optional<Bytes> StepContext::load(std::string_view key) {
    if (auto own = writes_.find(key); own != writes_.end()) return own->second;
    if (auto batch = batch_state_.find(key); batch != batch_state_.end()) return batch->second;
    Result<std::optional<Bytes>> stored = store_.load_state(key);
    if (!stored.ok()) {
        store_failure_ = stored.status();
        // Unwinds the handler; the kernel sees store_failure_ even if the handler catches this.
        throw Reject("store_read_failed", stored.status().to_string());
    }
    return std::move(stored).value();
}

void StepContext::save(std::string_view key, Bytes value) {
    writes_.insert_or_assign(std::string(key), std::optional<Bytes>(std::move(value)));
}

void StepContext::erase(std::string_view key) {
    writes_.insert_or_assign(std::string(key), std::optional<Bytes>());
}

void StepContext::send(const Address& to, std::string_view kind, Bytes body,
                       const SendOptions& options) {
    CHOREO_ASSERT(!to.empty());
    Envelope envelope;
    envelope.kind = kind;
    envelope.to = to;
    envelope.correlation = !options.correlation.empty() ? options.correlation
                           : !message_.correlation.empty() ? message_.correlation
                                                           : message_.id.to_string();
    envelope.causation = message_.id.to_string();
    envelope.promise = options.promise;
    envelope.deadline_ms = options.deadline_ms;
    envelope.headers = options.headers;
    envelope.body = std::move(body);
    sends_.push_back(std::move(envelope));
}

void StepContext::reply(std::string_view kind, Bytes body, const SendOptions& options) {
    if (message_.from.empty()) {
        throw Reject(std::string(refusal::no_reply_address), "the input has no 'from' address");
    }
    send(message_.from, kind, std::move(body), options);
}

// ---- Kernel::Batch: the state of one step ---------------------------------------------------

Status Kernel::Batch::run(const StepInputs& inputs) {
    settle_confirmed(inputs.confirmed);
    dead_letter_undeliverable(inputs.undeliverable);
    dead_letter_exhausted_sends();
    for (const Origination& origination : inputs.originated) originate(origination);
    CHOREO_RETURN_IF_ERROR(record_step_results(inputs.step_results));
    for (const std::string& execution_id : inputs.resume_executions) to_replay_.insert(execution_id);
    CHOREO_RETURN_IF_ERROR(fire_due_timers());
    CHOREO_RETURN_IF_ERROR(reject_pending_calls());

    std::vector<Candidate> candidates = gather_candidates(inputs.deliveries, inputs.redrives);
    // One allocation each for the per-input vectors, not a doubling series (bench/zmq_throughput).
    effects.trace.reserve(effects.trace.size() + candidates.size());
    effects.acks.reserve(effects.acks.size() + candidates.size());
    effects.commit.dedup.reserve(effects.commit.dedup.size() + candidates.size());
    effects.commit.state.reserve(effects.commit.state.size() + candidates.size());
    std::vector<MessageId> ids;
    ids.reserve(candidates.size());
    for (const Candidate& candidate : candidates) {
        if (candidate.envelope) ids.push_back(candidate.envelope->id);
    }
    std::vector<bool> found;  // read first: the dedup table, before anything runs
    CHOREO_RETURN_IF_ERROR(store_.find_dedup(ids, found));
    CHOREO_ASSERT(found.size() == ids.size());
    if (kernel_.options_.testing_skip_dedup_read) found.assign(ids.size(), false);
    Result<TimeMs> horizon_ms = store_.dedup_horizon();
    if (!horizon_ms.ok()) return horizon_ms.status();

    std::size_t decoded_index = 0;
    for (Candidate& candidate : candidates) {
        const bool known = candidate.envelope ? static_cast<bool>(found[decoded_index++]) : false;
        CHOREO_RETURN_IF_ERROR(process(candidate, known, *horizon_ms));
    }
    CHOREO_ASSERT(decoded_index == ids.size());
    CHOREO_RETURN_IF_ERROR(replay_marked());
    finish_positions();
    return Status{};
}

void Kernel::Batch::settle_confirmed(const std::vector<MessageId>& confirmed) {
    std::unordered_set<MessageId, MessageIdHash> settled;
    for (const MessageId& id : confirmed) {
        if (!kernel_.unsettled_.contains(id) || !settled.insert(id).second) continue;
        effects.commit.outbox_settled.push_back({id, effects.now_ms, OutboxOutcome::delivered});
        effects.trace.push_back({TraceKind::confirmed, id, {}, {}});
    }
}

void Kernel::Batch::dead_letter_exhausted_sends() {
    std::unordered_set<MessageId, MessageIdHash> settled;
    for (const OutboxSettle& settle : effects.commit.outbox_settled) settled.insert(settle.id);
    std::vector<MessageId> exhausted;
    for (const auto& [id, pending] : kernel_.unsettled_) {
        if (pending.attempts < kernel_.options_.send_attempts_max) continue;
        if (pending.next_attempt_ms > effects.now_ms || settled.contains(id)) continue;
        exhausted.push_back(id);
    }
    for (const MessageId& id : exhausted) {
        const PendingSend& pending = kernel_.unsettled_.at(id);
        dead_letter_send(id, refusal::send_attempts_exhausted,
                         "no confirmation from " + pending.row.to.to_string() + " after " +
                             std::to_string(pending.attempts) + " attempts");
    }
}

// The transport refused these sends for good: dead-letter each unsettled row once.
void Kernel::Batch::dead_letter_undeliverable(const std::vector<Undeliverable>& undeliverable) {
    std::unordered_set<MessageId, MessageIdHash> settled;
    for (const OutboxSettle& settle : effects.commit.outbox_settled) settled.insert(settle.id);
    for (const Undeliverable& refused : undeliverable) {
        if (!kernel_.unsettled_.contains(refused.id) || !settled.insert(refused.id).second) continue;
        dead_letter_send(refused.id, refused.reason, refused.detail);
    }
}

// An outbox row that will never be confirmed: settled as dead-lettered, its bytes kept.
void Kernel::Batch::dead_letter_send(const MessageId& id, std::string_view reason, std::string detail) {
    const PendingSend& pending = kernel_.unsettled_.at(id);
    DeadLetter letter;
    letter.key = id.to_string();
    letter.reason = std::string(reason);
    letter.detail = std::move(detail);
    letter.raw = pending.row.bytes;
    letter.raw_size = pending.row.bytes.size();
    letter.first_seen_ms = letter.last_seen_ms = effects.now_ms;
    effects.commit.dead_letters.push_back(std::move(letter));
    effects.commit.outbox_settled.push_back({id, effects.now_ms, OutboxOutcome::dead_lettered});
    effects.trace.push_back({TraceKind::send_dead_lettered, id, {}, std::string(reason)});
    reject_undeliverable_call(pending.row, reason);
}

void Kernel::Batch::originate(const Origination& origination) {
    Envelope envelope;
    envelope.id = kernel_.ids_.next();
    envelope.kind = origination.kind;
    envelope.to = origination.to;
    envelope.correlation = origination.options.correlation.empty() ? envelope.id.to_string()
                                                                    : origination.options.correlation;
    envelope.promise = origination.options.promise;
    envelope.deadline_ms = origination.options.deadline_ms;
    envelope.headers = origination.options.headers;
    envelope.body = origination.body;
    const MessageId id = envelope.id;
    const std::string kind = envelope.kind;
    if (origination.promise) {  // a start(): the promise it will await, in the same commit
        PromiseRow promise = *origination.promise;
        promise.created_at_ms = effects.now_ms;
        promises_.insert_or_assign(promise.id, promise);
        effects.commit.promises_created.push_back(std::move(promise));
    }
    Status added = add_outbox_row(std::move(envelope));
    if (added.ok()) {
        effects.trace.push_back({TraceKind::originated, id, kind, {}});
    } else {
        // The application asked to send something unsendable: keep it as a dead letter.
        DeadLetter letter{id.to_string(), added.reason(), added.message(), {}, 0, effects.now_ms, effects.now_ms, 1};
        effects.commit.dead_letters.push_back(std::move(letter));
        effects.trace.push_back({TraceKind::dead_lettered, id, kind, added.reason()});
    }
}

namespace {

std::vector<StreamPosition> positions_of(const Delivery& delivery) {
    if (!delivery.position) return {};
    return {*delivery.position};
}

}  // namespace

std::vector<Candidate> Kernel::Batch::gather_candidates(const std::vector<Delivery>& deliveries,
                                                       const std::vector<Redrive>& redrives) {
    std::vector<Candidate> candidates;
    candidates.reserve(kernel_.retries_.size() + deliveries.size() + redrives.size());  // one allocation
    std::unordered_map<MessageId, std::size_t, MessageIdHash> index_of;
    index_of.reserve(candidates.capacity());
    std::unordered_map<MessageId, std::size_t, MessageIdHash> renewed_index;
    for (const auto& [id, retry] : kernel_.retries_) {
        if (retry.due_ms > effects.now_ms) continue;
        Candidate candidate{retry.tags, retry.bytes, retry.positions, retry.attempts, {}, {}, retry.redrive_key};
        index_of.emplace(id, candidates.size());
        candidates.push_back(std::move(candidate));
    }
    for (Candidate& candidate : candidates) {  // retries decoded once before: decode again
        Result<Envelope> decoded = decode_envelope(candidate.bytes, kernel_.options_.limits);
        CHOREO_ASSERT(decoded.ok());
        candidate.envelope = std::move(decoded).value();
    }
    for (const Delivery& delivery : deliveries) {
        if (!delivery.malformed.empty()) {  // the transport could not frame it: never an envelope
            candidates.push_back(Candidate{{delivery.tag}, delivery.bytes, positions_of(delivery), 0, {},
                                           invalid_argument_error(std::string(refusal::malformed_frame),
                                                                  delivery.malformed)});
            continue;
        }
        Result<Envelope> decoded = decode_envelope(delivery.bytes, kernel_.options_.limits);
        if (decoded.ok()) {
            const MessageId id = decoded->id;
            if (auto seen = index_of.find(id); seen != index_of.end()) {
                candidates[seen->second].tags.push_back(delivery.tag);  // same id: one attempt
                if (delivery.position) candidates[seen->second].positions.push_back(*delivery.position);
                continue;
            }
            if (auto waiting = kernel_.retries_.find(id); waiting != kernel_.retries_.end()) {
                // Not due yet: the waiting retry keeps this delivery's tag too.
                auto [renewed, first] = renewed_index.emplace(id, effects.retries.size());
                if (first) effects.retries.push_back(waiting->second);
                effects.retries[renewed->second].tags.push_back(delivery.tag);
                if (delivery.position) effects.retries[renewed->second].positions.push_back(*delivery.position);
                continue;
            }
            index_of.emplace(id, candidates.size());
        }
        // Built in place: an Envelope is a dozen fields, and this runs for every input.
        Candidate& candidate = candidates.emplace_back();
        candidate.tags.push_back(delivery.tag);
        candidate.bytes = delivery.bytes;
        candidate.positions = positions_of(delivery);
        if (decoded.ok()) {
            candidate.envelope.emplace(std::move(decoded).value());
        } else {
            candidate.decode_status = decoded.status();
        }
    }
    for (const Redrive& redrive : redrives) add_redrive(redrive, candidates, index_of);
    return candidates;
}

// A redriven message joins the batch like a delivery without a transport tag (nothing to ack).
// The same id delivered in this batch is one candidate; an id waiting for a handler retry is
// left to that retry (its row stays: redrive it again once the retry resolved).
void Kernel::Batch::add_redrive(const Redrive& redrive, std::vector<Candidate>& candidates,
                                std::unordered_map<MessageId, std::size_t, MessageIdHash>& index_of) {
    CHOREO_ASSERT(!redrive.key.empty());
    Result<Envelope> decoded = decode_envelope(redrive.bytes, kernel_.options_.limits);
    if (decoded.ok()) {
        const MessageId id = decoded->id;
        if (auto seen = index_of.find(id); seen != index_of.end()) {
            candidates[seen->second].redrive_key = redrive.key;
            return;
        }
        if (kernel_.retries_.contains(id)) return;
        index_of.emplace(id, candidates.size());
    }
    Candidate candidate{{}, redrive.bytes, {}, 0, {}, decoded.status(), redrive.key};
    if (decoded.ok()) candidate.envelope = std::move(decoded).value();
    candidates.push_back(std::move(candidate));
}

Status Kernel::Batch::process(Candidate& candidate, bool known, TimeMs horizon_ms) {
    if (!candidate.envelope) {
        dead_letter(candidate, candidate.decode_status.reason(), candidate.decode_status.message());
        return Status{};
    }
    const Envelope& envelope = *candidate.envelope;
    const Address& self = kernel_.options_.self;
    if (!envelope.to.reaches(self)) {
        dead_letter(candidate, refusal::misaddressed, "addressed to " + envelope.to.to_string());
        return Status{};
    }
    if (known || applied_.contains(envelope.id)) {
        resolve(candidate, TraceKind::duplicate, {});  // replay of an applied id: a no-op
        return Status{};
    }
    if (envelope.sent_at_ms < horizon_ms) {
        // The dedup table may have forgotten this id: refuse rather than risk a second apply.
        dead_letter(candidate, refusal::beyond_dedup_horizon,
                    "sent_at " + std::to_string(envelope.sent_at_ms) + " < horizon " +
                        std::to_string(horizon_ms));
        return Status{};
    }
    if (envelope.deadline_ms != 0 && envelope.deadline_ms < effects.now_ms) {
        dead_letter(candidate, refusal::deadline_exceeded, "deadline " + std::to_string(envelope.deadline_ms));
        return Status{};
    }
    if (envelope.kind == invoke_kind) return handle_invoke(candidate);
    if (envelope.kind == resume_kind) return handle_resume(candidate);
    auto handler = kernel_.handlers_.find(envelope.kind);
    if (handler == kernel_.handlers_.end()) {
        dead_letter(candidate, refusal::unknown_kind, "no handler for '" + envelope.kind + "'");
        return Status{};
    }
    CHOREO_ASSERT(effects.commit.outbox_settled.size() <= kernel_.unsettled_.size());
    const std::size_t unsettled =
        kernel_.unsettled_.size() - effects.commit.outbox_settled.size() + outbox_ids_.size();
    if (unsettled + kernel_.options_.sends_per_step_max > kernel_.options_.outbox_unconfirmed_max) {
        // Backpressure: too many sends await confirmation. The input waits, unacknowledged.
        for (std::size_t index = 0; index < candidate.tags.size(); index++) {
            // Each tag with its own delivery's position (they pair up whenever positions exist).
            std::optional<StreamPosition> position;
            if (!candidate.positions.empty()) {
                position = candidate.positions[std::min(index, candidate.positions.size() - 1)];
            }
            effects.deferred.push_back(
                {candidate.tags[index], Bytes(candidate.bytes.begin(), candidate.bytes.end()), std::move(position)});
        }
        if (!candidate.redrive_key.empty()) {
            effects.redrives_deferred.push_back({candidate.redrive_key, Bytes(candidate.bytes.begin(), candidate.bytes.end())});
        }
        for (const StreamPosition& position : candidate.positions) hold_position(position);
        return Status{};
    }
    std::string reason;
    std::string detail;
    switch (run_handler(candidate, handler->second, reason, detail)) {
        case HandlerOutcome::applied: resolve_applied(candidate); return Status{};
        case HandlerOutcome::rejected: dead_letter(candidate, reason, detail); return Status{};
        case HandlerOutcome::failed: schedule_retry(candidate, detail); return Status{};
        case HandlerOutcome::store_failed: return aborted_error("store_read_failed", detail);
    }
    CHOREO_UNREACHABLE();
}

HandlerOutcome Kernel::Batch::run_handler(Candidate& candidate, const Handler& handler,
                                          std::string& reason, std::string& detail) {
    StepContext context{*candidate.envelope, effects.now_ms, kernel_.options_.self, store_, state_};
    try {
        handler(context);
    } catch (const Reject& rejection) {
        reason = rejection.reason().empty() ? std::string(refusal::rejected) : rejection.reason();
        detail = rejection.detail();
        if (!context.store_failure_.ok()) return HandlerOutcome::store_failed;
        return HandlerOutcome::rejected;
    } catch (const std::exception& error) {
        detail = error.what();
        if (!context.store_failure_.ok()) return HandlerOutcome::store_failed;
        return HandlerOutcome::failed;
    } catch (...) {
        detail = "a non-standard exception";
        if (!context.store_failure_.ok()) return HandlerOutcome::store_failed;
        return HandlerOutcome::failed;
    }
    if (!context.store_failure_.ok()) {  // the handler swallowed the failed read
        detail = context.store_failure_.to_string();
        return HandlerOutcome::store_failed;
    }
    if (!merge_step(context, *candidate.envelope, reason, detail)) return HandlerOutcome::rejected;
    return HandlerOutcome::applied;
}

// Moves one successful handler's writes and sends into the batch, or refuses the input when they
// break a limit (leaving the batch as it was).
bool Kernel::Batch::merge_step(StepContext& context, const Envelope& input, std::string& reason,
                               std::string& detail) {
    const KernelOptions& options = kernel_.options_;
    if (context.sends_.size() > options.sends_per_step_max) {
        reason = refusal::too_many_sends;
        detail = std::to_string(context.sends_.size()) + " sends, limit " + std::to_string(options.sends_per_step_max);
        return false;
    }
    for (const auto& [key, value] : context.writes_) {
        if (value && value->size() > options.state_value_bytes_max) {
            reason = refusal::state_too_large;
            detail = "state '" + key + "' of " + std::to_string(value->size()) + " bytes";
            return false;
        }
    }
    std::vector<OutboxRow> rows;  // all encoded before any is added: the step is all or nothing
    for (std::size_t position = 0; position < context.sends_.size(); position++) {
        Envelope& envelope = context.sends_[position];
        envelope.id = derive_id(input.id, position);
        if (on_its_way(envelope.id)) continue;  // a replayed step re-derives the same ids
        Result<OutboxRow> row = make_outbox_row(std::move(envelope));
        if (!row.ok()) {
            reason = row.status().reason();
            detail = row.status().message();
            return false;
        }
        rows.push_back(std::move(row).value());
    }
    for (auto& [key, value] : context.writes_) {
        effects.commit.state.push_back({key, value});
        state_.insert_or_assign(key, std::move(value));
    }
    for (OutboxRow& row : rows) push_outbox_row(std::move(row));
    return true;
}

bool Kernel::Batch::on_its_way(const MessageId& id) const {
    return kernel_.unsettled_.contains(id) || outbox_ids_.contains(id);
}

// Stamps `from` and `sent_at` (once: every retransmission resends these bytes, design §4.1),
// encodes, and pins an anycast send to an instance before its first send (design §4.6).
Result<OutboxRow> Kernel::Batch::make_outbox_row(Envelope envelope) {
    envelope.from = kernel_.options_.self;
    envelope.sent_at_ms = effects.now_ms;
    Result<Bytes> encoded = encode_envelope(envelope, kernel_.options_.limits);
    if (!encoded.ok()) {
        return invalid_argument_error(std::string(refusal::outgoing_invalid), encoded.status().to_string());
    }
    const std::string route = envelope.to.is_unicast() ? std::string{} : kernel_.router_.route(envelope.to);
    return OutboxRow{envelope.id, envelope.to, route, envelope.correlation, std::move(encoded).value(),
                     effects.now_ms, false, 0};
}

// The first row for an id is the one that stays: an id already on its way is never given a
// second row with a fresh sent_at (design §4.3).
void Kernel::Batch::push_outbox_row(OutboxRow row) {
    if (on_its_way(row.id)) return;
    outbox_ids_.insert(row.id);
    effects.commit.outbox.push_back(std::move(row));
}

Status Kernel::Batch::add_outbox_row(Envelope envelope) {
    if (on_its_way(envelope.id)) return Status{};
    Result<OutboxRow> row = make_outbox_row(std::move(envelope));
    if (!row.ok()) return row.status();
    push_outbox_row(std::move(row).value());
    return Status{};
}

void Kernel::Batch::resolve_applied(Candidate& candidate) {
    const Envelope& envelope = *candidate.envelope;
    applied_.insert(envelope.id);
    effects.commit.dedup.push_back({envelope.id, envelope.sent_at_ms});
    resolve(candidate, TraceKind::applied, {});
}

void Kernel::Batch::resolve(Candidate& candidate, TraceKind kind, std::string reason) {
    const MessageId id = candidate.envelope ? candidate.envelope->id : MessageId{};
    const std::string message_kind = candidate.envelope ? candidate.envelope->kind : std::string{};
    effects.acks.insert(effects.acks.end(), candidate.tags.begin(), candidate.tags.end());
    if (candidate.envelope && kernel_.retries_.contains(id)) effects.retries_done.push_back(id);
    for (const StreamPosition& position : candidate.positions) {
        std::int64_t& next = position_resolved_[position.stream];
        next = std::max(next, position.offset + 1);
    }
    const bool done = kind == TraceKind::applied || kind == TraceKind::duplicate;
    effects.trace.push_back({kind, id, message_kind, std::move(reason)});
    if (done && !candidate.redrive_key.empty()) {
        effects.commit.dead_letters_deleted.push_back(candidate.redrive_key);
        effects.trace.push_back({TraceKind::redriven, id, message_kind, {}, candidate.redrive_key});
    }
}

void Kernel::Batch::dead_letter(Candidate& candidate, std::string_view reason, std::string detail) {
    CHOREO_ASSERT(!reason.empty());
    const std::size_t raw_bytes_max = kernel_.options_.dead_letter_raw_bytes_max;
    DeadLetter letter;
    letter.key = candidate.envelope ? candidate.envelope->id.to_string()
                                    : content_id(candidate.bytes).to_string();
    letter.reason = reason;
    letter.detail = std::move(detail);
    letter.raw_size = candidate.bytes.size();
    const std::size_t kept = std::min(candidate.bytes.size(), raw_bytes_max);
    letter.raw.assign(candidate.bytes.begin(), candidate.bytes.begin() + static_cast<std::ptrdiff_t>(kept));
    letter.first_seen_ms = letter.last_seen_ms = effects.now_ms;
    letter.attempts = 1;
    if (candidate.envelope && candidate.envelope->kind == invoke_kind) {
        answer_refused_invoke(*candidate.envelope, reason, letter.detail);  // the caller must not wait forever
    }
    effects.commit.dead_letters.push_back(std::move(letter));
    resolve(candidate, TraceKind::dead_lettered, std::string(reason));
}

void Kernel::Batch::schedule_retry(Candidate& candidate, std::string error) {
    const std::uint32_t attempts = candidate.attempts_before + 1;
    if (attempts >= kernel_.options_.handler_attempts_max) {
        dead_letter(candidate, refusal::handler_failed,
                    error + " (after " + std::to_string(attempts) + " attempts)");
        return;
    }
    const bool already_waiting = kernel_.retries_.contains(candidate.envelope->id);
    if (!already_waiting && kernel_.retries_.size() >= kernel_.options_.handler_retries_pending_max) {
        dead_letter(candidate, refusal::handler_failed, error + " (retry queue full)");
        return;
    }
    HandlerRetry retry;
    retry.id = candidate.envelope->id;
    retry.tags = candidate.tags;
    retry.bytes.assign(candidate.bytes.begin(), candidate.bytes.end());
    retry.positions = candidate.positions;
    retry.attempts = attempts;
    retry.due_ms = effects.now_ms + kernel_.backoff_ms(attempts, kernel_.options_.handler_retry_delay_ms_min,
                                                       kernel_.options_.handler_retry_delay_ms_max);
    retry.last_error = error;
    retry.redrive_key = candidate.redrive_key;
    for (const StreamPosition& position : retry.positions) hold_position(position);
    effects.trace.push_back({TraceKind::retry_scheduled, retry.id, candidate.envelope->kind, error});
    effects.retries.push_back(std::move(retry));
}

void Kernel::Batch::hold_position(const StreamPosition& position) {
    auto [slot, inserted] = position_unresolved_.emplace(position.stream, position.offset);
    if (!inserted) slot->second = std::min(slot->second, position.offset);
}

// A stream's stored position never passes an input that is still waiting (a retry, deferred):
// after a restart the transport resumes from there and that input is not skipped.
void Kernel::Batch::finish_positions() {
    for (const auto& [id, retry] : kernel_.retries_) {
        for (const StreamPosition& position : retry.positions) hold_position(position);
    }
    for (const auto& [stream, next_offset] : position_resolved_) {
        std::int64_t position = next_offset;
        if (auto pending = position_unresolved_.find(stream); pending != position_unresolved_.end()) {
            position = std::min(position, pending->second);
        }
        effects.commit.positions.push_back({stream, position});
    }
}

// ---- Kernel ------------------------------------------------------------------------------

Kernel::Kernel(KernelOptions options, const HandlerTable& handlers, const FunctionTable& functions,
               const Clock& clock, Random& random, Router& router)
    : options_(std::move(options)),
      handlers_(handlers),
      functions_(functions),
      clock_(clock),
      random_(random),
      router_(router),
      ids_(clock, random) {
    CHOREO_ASSERT(options_.self.is_unicast());
    CHOREO_ASSERT(options_.handler_attempts_max >= 1);
    CHOREO_ASSERT(options_.send_attempts_max >= 1);
    CHOREO_ASSERT(options_.handler_retry_delay_ms_min > 0);
    CHOREO_ASSERT(options_.handler_retry_delay_ms_min <= options_.handler_retry_delay_ms_max);
    CHOREO_ASSERT(options_.send_retry_delay_ms_min > 0);
    CHOREO_ASSERT(options_.send_retry_delay_ms_min <= options_.send_retry_delay_ms_max);
    CHOREO_ASSERT(options_.sends_per_step_max < options_.outbox_unconfirmed_max);
}

Result<BatchEffects> Kernel::step(const StepInputs& inputs, StoreReader& store) {
    Batch batch{*this, store, clock_.now_ms()};
    CHOREO_RETURN_IF_ERROR(batch.run(inputs));
    // Every applied input is acknowledged (after the commit) with at least one tag, or is a
    // redriven dead letter (no transport delivery) whose row the commit deletes.
    CHOREO_ASSERT(batch.effects.acks.size() + batch.effects.commit.dead_letters_deleted.size() >=
                  batch.effects.commit.dedup.size());
    return std::move(batch.effects);
}

void Kernel::committed(BatchEffects& effects) {
    for (const auto& timer : effects.timers_done) timers_.erase(timer);
    for (const auto& timer : effects.timers_added) timers_.insert(timer);
    for (const std::string& execution_id : effects.steps_finished) steps_in_flight_.erase(execution_id);
    for (ParkedFrame& frame : effects.parked) {
        const std::string execution_id = frame.run->execution().id;
        CHOREO_ASSERT(!steps_in_flight_.contains(execution_id));  // one step at a time
        steps_in_flight_.emplace(execution_id, std::move(frame));
    }
    effects.parked.clear();
    for (ParkedFrame& frame : effects.cached) {
        const std::string execution_id = frame.run->execution().id;
        if (steps_in_flight_.contains(execution_id)) continue;  // replayed and parked on a step meanwhile
        cached_frames_.insert_or_assign(execution_id, std::make_pair(std::move(frame), ++cache_clock_));
    }
    effects.cached.clear();
    while (cached_frames_.size() > options_.executions_cached_max) {  // evict the least recently used
        auto oldest = std::min_element(cached_frames_.begin(), cached_frames_.end(),
                                       [](const auto& a, const auto& b) { return a.second.second < b.second.second; });
        cached_frames_.erase(oldest);
    }
    for (const OutboxSettle& settle : effects.commit.outbox_settled) unsettled_.erase(settle.id);
    for (const OutboxRow& row : effects.commit.outbox) {
        CHOREO_ASSERT(!row.settled);
        unsettled_.insert_or_assign(row.id, PendingSend{row, 0, effects.now_ms});
    }
    for (const MessageId& id : effects.retries_done) retries_.erase(id);
    for (const HandlerRetry& retry : effects.retries) retries_.insert_or_assign(retry.id, retry);
    CHOREO_ASSERT(retries_.size() <= options_.handler_retries_pending_max);
}

void Kernel::restore_timers(const std::vector<PromiseRow>& rows) {
    for (const PromiseRow& row : rows) {
        CHOREO_ASSERT(row.state == PromiseState::pending);
        CHOREO_ASSERT(row.deadline_ms > 0);
        timers_.emplace(row.deadline_ms, row.id);
    }
}

void Kernel::restore_unsettled(std::vector<OutboxRow> rows) {
    const TimeMs now_ms = clock_.now_ms();
    for (OutboxRow& row : rows) {
        CHOREO_ASSERT(!row.settled);
        const MessageId id = row.id;
        unsettled_.insert_or_assign(id, PendingSend{std::move(row), 0, now_ms});
    }
}

std::vector<MessageId> Kernel::take_sends_due(std::size_t limit) {
    const TimeMs now_ms = clock_.now_ms();
    std::vector<MessageId> due;
    for (auto& [id, pending] : unsettled_) {
        if (due.size() >= limit) break;
        if (pending.next_attempt_ms > now_ms || pending.attempts >= options_.send_attempts_max) continue;
        pending.attempts++;
        pending.next_attempt_ms =
            now_ms + backoff_ms(pending.attempts, options_.send_retry_delay_ms_min, options_.send_retry_delay_ms_max);
        due.push_back(id);
    }
    return due;
}

void Kernel::send_refused(std::span<const MessageId> ids) {
    const TimeMs now_ms = clock_.now_ms();
    for (const MessageId& id : ids) {
        auto pending = unsettled_.find(id);
        if (pending == unsettled_.end()) continue;
        CHOREO_ASSERT(pending->second.attempts > 0);
        pending->second.attempts--;
        pending->second.next_attempt_ms = now_ms + options_.send_retry_delay_ms_min;
    }
}

OutgoingMessage Kernel::outgoing(const MessageId& id) const {
    auto pending = unsettled_.find(id);
    CHOREO_ASSERT(pending != unsettled_.end());
    const OutboxRow& row = pending->second.row;
    return OutgoingMessage{row.id, row.to, row.route, row.key, row.bytes};
}

bool Kernel::has_due_work() const {
    const TimeMs now_ms = clock_.now_ms();
    for (const auto& [id, retry] : retries_) {
        if (retry.due_ms <= now_ms) return true;
    }
    if (!timers_.empty() && timers_.begin()->first <= now_ms) return true;
    for (const auto& [id, pending] : unsettled_) {
        if (pending.attempts >= options_.send_attempts_max && pending.next_attempt_ms <= now_ms) return true;
    }
    return false;
}

TimeMs Kernel::next_due_ms() const {
    TimeMs earliest = std::numeric_limits<TimeMs>::max();
    for (const auto& [id, retry] : retries_) earliest = std::min(earliest, retry.due_ms);
    for (const auto& [id, pending] : unsettled_) earliest = std::min(earliest, pending.next_attempt_ms);
    if (!timers_.empty()) earliest = std::min(earliest, timers_.begin()->first);
    return earliest;
}

TimeMs Kernel::backoff_ms(std::uint32_t attempts, TimeMs min_ms, TimeMs max_ms) {
    CHOREO_ASSERT(attempts >= 1);
    TimeMs delay_ms = min_ms;
    for (std::uint32_t doubling = 1; doubling < attempts && delay_ms < max_ms; doubling++) delay_ms *= 2;
    delay_ms = std::min(delay_ms, max_ms);
    // Equal jitter: half fixed, half random, so retries of many senders spread out.
    const TimeMs jittered = delay_ms / 2 + static_cast<TimeMs>(random_.below(static_cast<std::uint64_t>(delay_ms / 2) + 1));
    CHOREO_ASSERT(jittered >= 0 && jittered <= max_ms);
    return jittered;
}

}  // namespace choreo
