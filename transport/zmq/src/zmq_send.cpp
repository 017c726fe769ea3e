// The sending side of the ZeroMQ transport: one DEALER per peer, anycast routing and pinning,
// the outstanding bound, stuck peers, refusals for good.
#include <algorithm>

#include "choreo/assert.h"
#include "zmq_impl.h"

namespace choreo::zmq_transport {

void ZmqTransport::Impl::count(std::uint64_t ZmqStats::*counter, std::uint64_t amount) {
    std::lock_guard lock{stats_mutex_};
    stats_.*counter += amount;
}

// ---- peers -----------------------------------------------------------------------------------

// The peer at a unicast address, connecting a DEALER on first use. No entry (or no CURVE key)
// in the directory is for good: no_route. A socket that cannot be made now (too many, an error)
// is "not now": the caller holds the message back.
ZmqTransport::Impl::Target ZmqTransport::Impl::peer_for(const std::string& address) {
    if (auto found = peers_.find(address); found != peers_.end()) return {found->second.get()};
    Result<Address> parsed = Address::parse(address);
    CHOREO_ASSERT(parsed.ok() && parsed->is_unicast());
    std::optional<Directory::Entry> entry = options_.directory->find(*parsed);
    if (!entry) return {nullptr, true, "the directory lists no endpoint for " + address};
    if (options_.curve && entry->public_key.empty()) {
        return {nullptr, true, "the directory lists no CURVE public key for " + address};
    }
    if (peers_.size() >= options_.peers_max && !make_room_for_a_peer()) return {nullptr, false, "too many peers"};
    auto peer = std::make_unique<Peer>();
    peer->address = address;
    try {
        peer->dealer = zmq::socket_t{context_, zmq::socket_type::dealer};
        peer->dealer.set(zmq::sockopt::linger, 0);
        peer->dealer.set(zmq::sockopt::sndhwm, options_.send_hwm_messages);
        peer->dealer.set(zmq::sockopt::rcvhwm, options_.send_hwm_messages);
        peer->dealer.set(zmq::sockopt::reconnect_ivl, options_.reconnect_interval_ms);
        peer->dealer.set(zmq::sockopt::reconnect_ivl_max, options_.reconnect_interval_ms_max);
        peer->dealer.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(acks_per_message_max * 64));
        if (options_.curve) {
            peer->dealer.set(zmq::sockopt::curve_serverkey, entry->public_key);
            peer->dealer.set(zmq::sockopt::curve_publickey, options_.curve->own.public_key);
            peer->dealer.set(zmq::sockopt::curve_secretkey, options_.curve->own.secret_key);
        }
        peer->dealer.connect(entry->endpoint);
    } catch (const zmq::error_t& error) {
        // A bad endpoint text is the directory's fault and will not get better; anything else
        // (no file descriptors, no memory) may.
        const bool for_good = error.num() == EINVAL || error.num() == EPROTONOSUPPORT;
        count(&ZmqStats::zmq_errors);
        return {nullptr, for_good, "cannot connect to " + entry->endpoint + " for " + address + ": " + error.what()};
    }
    peer->last_used_ms = steady_ms();
    Peer* raw = peer.get();
    peers_.emplace(address, std::move(peer));
    return {raw};
}

// Closes the least recently used peer with nothing outstanding; false when every peer is busy.
bool ZmqTransport::Impl::make_room_for_a_peer() {
    auto idle = peers_.end();
    for (auto peer = peers_.begin(); peer != peers_.end(); ++peer) {
        if (peer->second->outstanding != 0) continue;
        if (idle == peers_.end() || peer->second->last_used_ms < idle->second->last_used_ms) idle = peer;
    }
    if (idle == peers_.end()) return false;
    forget_peer(idle->first);
    return true;
}

// Drops a peer and what was outstanding to it; the next send opens a fresh socket from the
// directory. What its queue held is lost to ZeroMQ, never to the toolkit: the outbox resends it.
void ZmqTransport::Impl::forget_peer(const std::string& address) {
    auto found = peers_.find(address);
    CHOREO_ASSERT(found != peers_.end());
    Peer* peer = found->second.get();
    if (peer->outstanding > 0) {
        std::erase_if(outstanding_, [peer](const auto& entry) { return entry.second.peer == peer; });
    }
    if (last_peer_ == peer) last_peer_ = nullptr;
    peer->dealer.close();
    peers_.erase(found);
}

// A peer refused (queue full, or at its outstanding bound) and has not acknowledged anything
// since: after peer_reset_after_ms it is considered stuck. ZeroMQ gives up on a connection for
// good after a failed handshake, and a peer that is gone keeps its queue full; a fresh socket
// gets both going again, and lets the runtime's retransmissions count (and end in a dead letter).
void ZmqTransport::Impl::refused_by(Peer& peer) {
    if (peer.refusing_since_ms == 0) peer.refusing_since_ms = steady_ms();
}

void ZmqTransport::Impl::reset_stuck_peers() {
    const std::int64_t now_ms = steady_ms();
    std::vector<std::string> stuck;
    for (const auto& [address, peer] : peers_) {
        if (peer->refusing_since_ms != 0 && now_ms - peer->refusing_since_ms >= options_.peer_reset_after_ms) {
            stuck.push_back(address);
        }
    }
    for (const std::string& address : stuck) forget_peer(address);
    if (!stuck.empty()) count(&ZmqStats::peer_resets, stuck.size());
}

// ---- routing ---------------------------------------------------------------------------------

// The unicast address a message goes to, or empty with the reason in `why_not`.
std::string ZmqTransport::Impl::destination(const OutgoingMessage& message, std::string& why_not) {
    if (message.to.is_unicast()) return message.to.to_string();
    const std::string& service = message.to.service();
    if (!message.route.empty()) return service + "/" + message.route;
    const std::vector<std::string> instances = options_.directory->instances(service);
    if (instances.empty()) {
        why_not = "the directory lists no instance of " + service;
        return {};
    }
    if (options_.directory->shares_store(service)) {  // any instance will do: spread them
        std::size_t& next = next_instance_[service];
        return service + "/" + instances[next++ % instances.size()];
    }
    // Unpinned (routed before any instance was known): the first instance, so that every copy
    // of this message meets the same dedup table (design §4.6).
    return service + "/" + instances.front();
}

ZmqTransport::Impl::Target ZmqTransport::Impl::target_of(const OutgoingMessage& message) {
    if (last_peer_ != nullptr && message.to.is_unicast() && message.to == last_to_) {
        return {last_peer_};  // a run of sends to one address: skip the lookups
    }
    Target target;
    const std::string address = destination(message, target.why_not);
    if (address.empty()) {
        target.no_route = true;
        return target;
    }
    target = peer_for(address);
    if (target.peer != nullptr && message.to.is_unicast()) {
        last_to_ = message.to;
        last_peer_ = target.peer;
    }
    return target;
}

std::string ZmqTransport::Impl::route(const Address& to) {
    CHOREO_ASSERT(!to.is_unicast());
    if (options_.directory->shares_store(to.service())) return {};
    const std::vector<std::string> instances = options_.directory->instances(to.service());
    if (instances.empty()) return {};
    std::size_t& next = next_instance_[to.service()];
    for (std::size_t tried = 0; tried < instances.size(); tried++) {
        const std::string& candidate = instances[(next + tried) % instances.size()];
        auto peer = peers_.find(to.service() + "/" + candidate);
        if (peer == peers_.end() || peer->second->outstanding < options_.outstanding_per_peer_max) {
            next += tried + 1;
            return candidate;
        }
    }
    return instances[next++ % instances.size()];  // all at their bound: send() applies backpressure
}

// ---- sending ---------------------------------------------------------------------------------

void ZmqTransport::Impl::refuse(const OutgoingMessage& message, std::string_view reason, std::string detail) {
    undeliverable_.push_back({message.id, std::string(reason), std::move(detail)});
    count(reason == "message_too_large" ? &ZmqStats::refused_too_large : &ZmqStats::refused_no_route);
}

void ZmqTransport::Impl::expire_outstanding() {
    const std::int64_t now_ms = steady_ms();
    while (!outstanding_order_.empty()) {
        const auto& [id, sent_ms] = outstanding_order_.front();
        auto entry = outstanding_.find(id);
        const bool current = entry != outstanding_.end() && entry->second.sent_ms == sent_ms;
        if (current && now_ms - sent_ms < options_.outstanding_expiry_ms) break;
        if (current) {  // never acknowledged: the runtime retransmits it if it still matters
            entry->second.peer->outstanding--;
            outstanding_.erase(entry);
        }
        outstanding_order_.pop_front();
    }
    // Entries behind a long-lived one pile up (acknowledged, or sent again): rebuild the order
    // from what is outstanding when it holds more than twice that.
    if (outstanding_order_.size() > 2 * outstanding_.size() + 4096) {
        outstanding_order_.clear();
        for (const auto& [id, entry] : outstanding_) outstanding_order_.emplace_back(id, entry.sent_ms);
        std::sort(outstanding_order_.begin(), outstanding_order_.end(),
                  [](const auto& a, const auto& b) { return a.second < b.second; });
    }
}

// Hands one run to ZeroMQ as one message. False when the peer's queue is full (nothing sent).
bool ZmqTransport::Impl::flush(Run& run) {
    CHOREO_ASSERT(run.peer != nullptr && !run.messages.empty());
    zmq::socket_t& dealer = run.peer->dealer;
    try {
        if (!dealer.send(zmq::buffer(version_frame), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
            return false;
        }
    } catch (const zmq::error_t&) {  // not EAGAIN: count it, and treat it as a full queue
        count(&ZmqStats::zmq_errors);
        return false;
    }
    // ZeroMQ takes a multipart message whole once its first frame is in.
    dealer.send(zmq::buffer(data_frame), zmq::send_flags::sndmore);
    for (std::size_t index = 0; index < run.messages.size(); index++) {
        const OutgoingMessage& message = *run.messages[index];
        const std::array<std::uint8_t, 16> id_bytes = message.id.to_bytes();
        dealer.send(zmq::const_buffer(id_bytes.data(), id_bytes.size()), zmq::send_flags::sndmore);
        const bool last = index + 1 == run.messages.size();
        dealer.send(zmq::const_buffer(message.bytes.data(), message.bytes.size()),
                    last ? zmq::send_flags::none : zmq::send_flags::sndmore);
    }
    remember_sent(run);
    return true;
}

void ZmqTransport::Impl::remember_sent(const Run& run) {
    const std::int64_t now_ms = steady_ms();
    run.peer->last_used_ms = now_ms;
    for (const OutgoingMessage* message : run.messages) {
        auto [entry, inserted] = outstanding_.try_emplace(message->id, Outstanding{run.peer, now_ms});
        if (inserted) {
            run.peer->outstanding++;
        } else if (entry->second.peer != run.peer) {  // re-routed (shared store): count it there
            entry->second.peer->outstanding--;
            run.peer->outstanding++;
            entry->second.peer = run.peer;
        }
        entry->second.sent_ms = now_ms;
        outstanding_order_.emplace_back(message->id, now_ms);
    }
    std::lock_guard lock{stats_mutex_};
    stats_.frames_sent++;
    stats_.envelopes_sent += run.messages.size();
}

Result<std::size_t> ZmqTransport::Impl::send(std::span<const OutgoingMessage> batch) {
    if (closed_.load()) return closed_error();
    reset_stuck_peers();
    expire_outstanding();
    const std::size_t run_bytes_max = data_message_bytes_max(options_.message_bytes_max) / 2;
    std::size_t accepted = 0;  // every message before this index is handed over or refused
    Run run;
    auto flush_run = [&] {
        if (run.peer == nullptr) return true;
        const bool sent = flush(run);
        if (sent) {
            accepted = run.end;
        } else {
            refused_by(*run.peer);
        }
        run = Run{};
        return sent;
    };
    for (std::size_t index = 0; index < batch.size(); index++) {
        const OutgoingMessage& message = batch[index];
        if (message.bytes.size() > options_.message_bytes_max) {
            if (!flush_run()) break;
            refuse(message, "message_too_large",
                   std::to_string(message.bytes.size()) + " bytes, over message_bytes_max " +
                       std::to_string(options_.message_bytes_max));
            accepted = index + 1;
            continue;
        }
        Target target = target_of(message);
        if (target.peer == nullptr) {
            if (!flush_run()) break;
            // A copy already went to a peer (a retransmission re-routed, or a peer the directory
            // lost since): it may have been applied, so it is never refused for good now.
            if (!target.no_route || outstanding_.contains(message.id)) break;
            refuse(message, "no_route", target.why_not);
            accepted = index + 1;
            continue;
        }
        Peer* peer = target.peer;
        const bool run_full = run.messages.size() >= options_.pairs_per_frame_max ||
                              run.bytes + message.bytes.size() > run_bytes_max;
        if (run.peer != nullptr && (run.peer != peer || run_full)) {
            if (!flush_run()) break;
        }
        const bool is_new = !outstanding_.contains(message.id);
        if (is_new && peer->outstanding + run.new_ids >= options_.outstanding_per_peer_max) {
            refused_by(*peer);
            break;  // this peer has enough unacknowledged: backpressure
        }
        run.peer = peer;
        run.messages.push_back(&message);
        run.new_ids += is_new ? 1 : 0;
        run.bytes += message.bytes.size();
        run.end = index + 1;
    }
    flush_run();  // a full queue leaves `accepted` at the run's start: the caller offers it again
    if (accepted < batch.size()) count(&ZmqStats::backpressure);
    return accepted;
}

}  // namespace choreo::zmq_transport
