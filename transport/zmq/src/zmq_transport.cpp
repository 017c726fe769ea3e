// The ZeroMQ transport: one ROUTER to receive on, one DEALER per peer to send on, acks back on
// the connection a message came in on. See zmq_transport.h and docs/protocol.md ("ZeroMQ").
#include "choreo/transport/zmq_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "choreo/assert.h"
#include "choreo/codec.h"
#include "zap_handler.h"

namespace choreo::zmq_transport {

namespace {

// A receiver refuses a data message with more envelopes than this (senders batch fewer).
constexpr std::size_t pairs_per_message_max = 1024;
constexpr std::size_t acks_per_message_max = 1024;
constexpr std::size_t malformed_bytes_max = 64 * 1024;  // kept of an input that cannot be framed

std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

void put_id(const MessageId& id, std::uint8_t* out) {
    for (int byte = 0; byte < 8; byte++) {
        out[byte] = static_cast<std::uint8_t>(id.high() >> (56 - 8 * byte));
        out[8 + byte] = static_cast<std::uint8_t>(id.low() >> (56 - 8 * byte));
    }
}

MessageId get_id(const zmq::message_t& frame) {
    CHOREO_ASSERT(frame.size() == id_frame_bytes);
    const auto* bytes = static_cast<const std::uint8_t*>(frame.data());
    std::uint64_t high = 0;
    std::uint64_t low = 0;
    for (int byte = 0; byte < 8; byte++) {
        high = (high << 8) | bytes[byte];
        low = (low << 8) | bytes[8 + byte];
    }
    return MessageId{high, low};
}

bool frame_is(const zmq::message_t& frame, std::string_view text) { return frame.to_string_view() == text; }

// A short printable rendering of a frame for error details.
std::string preview(const zmq::message_t& frame) {
    constexpr std::size_t preview_max = 32;
    std::string text;
    for (std::size_t index = 0; index < std::min(frame.size(), preview_max); index++) {
        const char c = static_cast<const char*>(frame.data())[index];
        text += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return frame.size() > preview_max ? text + "..." : text;
}

Bytes bytes_of_frame(const zmq::message_t& frame) {
    const auto* data = static_cast<const std::uint8_t*>(frame.data());
    return Bytes(data, data + frame.size());
}

}  // namespace

class ZmqTransport::Impl {
public:
    explicit Impl(const ZmqOptions& options) : options_(options) {}
    ~Impl();

    Result<std::string> start();
    std::string route(const Address& to);
    Result<std::size_t> send(std::span<const OutgoingMessage> batch);
    Status receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us);
    Status acknowledge(std::span<const DeliveryTag> tags);
    void wake();
    void close();
    ZmqStats stats() const;

private:
    struct Peer {
        std::string address;
        zmq::socket_t dealer;
        std::size_t outstanding = 0;  // sends not acknowledged yet (and not expired)
    };
    struct Outstanding {
        Peer* peer = nullptr;
        std::int64_t sent_ms = 0;
    };
    struct Inbound {
        std::string routing_id;
        MessageId id;  // nil: an input that could not be framed, nothing to acknowledge
    };
    // Consecutive messages of one send call to one peer, handed to ZeroMQ as one message.
    struct Run {
        Peer* peer = nullptr;
        std::size_t end = 0;  // index after its last message in the batch
        std::vector<const OutgoingMessage*> messages;
        std::size_t new_ids = 0;  // messages not outstanding yet
    };

    Peer* peer_for(const std::string& address, std::string& why_not);
    std::string destination(const OutgoingMessage& message, std::string& why_not);
    bool flush(Run& run);
    void refuse(const OutgoingMessage& message, std::string_view reason, std::string detail);
    void expire_outstanding();
    void drain(ReceiveBatch& out, std::size_t deliveries_max);
    void read_inbox(std::size_t deliveries_max, std::size_t taken);
    void read_acks(Peer& peer, ReceiveBatch& out);
    void parse_data(std::vector<zmq::message_t>& frames);
    void add_delivery(const std::string& routing_id, const MessageId& id, Bytes bytes, std::string malformed);
    void add_malformed(const std::string& routing_id, std::span<zmq::message_t> frames, std::string detail);
    void wait(bool want_deliveries, std::int64_t timeout_us);
    void clear_wake();

    const ZmqOptions& options_;
    const MessageLimits limits_{.message_bytes_max = options_.message_bytes_max};
    zmq::context_t context_{1};
    std::unique_ptr<ZapHandler> zap_;
    zmq::socket_t inbox_;
    int wake_fd_ = -1;
    std::atomic<bool> closed_{false};
    std::map<std::string, std::unique_ptr<Peer>, std::less<>> peers_;
    std::unordered_map<MessageId, Outstanding, MessageIdHash> outstanding_;
    std::deque<std::pair<MessageId, std::int64_t>> outstanding_order_;  // for expiry, oldest first
    std::unordered_map<DeliveryTag, Inbound> inbound_;
    std::deque<Delivery> ready_;  // framed, not handed out yet (deliveries_max)
    std::vector<Undeliverable> undeliverable_;
    std::map<std::string, std::size_t, std::less<>> next_instance_;
    DeliveryTag next_tag_ = 1;
    std::vector<zmq::message_t> frames_;  // reused receive buffer
    Address last_to_{};                   // the last unicast address sent to, and its peer
    Peer* last_peer_ = nullptr;
    mutable std::mutex stats_mutex_;
    ZmqStats stats_;
};

// ---- set-up and tear-down --------------------------------------------------------------------

Result<std::string> ZmqTransport::Impl::start() {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return precondition_error("zmq_setup_failed", std::string("eventfd: ") + std::strerror(errno));
    std::string endpoint = options_.bind;
    if (endpoint.empty()) {
        std::optional<Directory::Entry> own = options_.directory->find(options_.self);
        if (!own) return invalid_argument_error("no_route", "the directory lists no endpoint for " + options_.self.to_string());
        endpoint = own->endpoint;
    }
    try {
        if (options_.curve) {
            Result<std::unique_ptr<ZapHandler>> zap = ZapHandler::start(context_, options_.curve->allowed_clients);
            if (!zap.ok()) return zap.status();
            zap_ = std::move(zap).value();
        }
        inbox_ = zmq::socket_t{context_, zmq::socket_type::router};
        inbox_.set(zmq::sockopt::linger, 0);
        inbox_.set(zmq::sockopt::rcvhwm, options_.receive_hwm_messages);
        inbox_.set(zmq::sockopt::sndhwm, options_.receive_hwm_messages);
        // Bounds what one frame may make this process allocate: an envelope plus its framing.
        inbox_.set(zmq::sockopt::maxmsgsize, static_cast<std::int64_t>(options_.message_bytes_max + 1024));
        if (options_.curve) {
            inbox_.set(zmq::sockopt::curve_server, true);
            inbox_.set(zmq::sockopt::curve_secretkey, options_.curve->own.secret_key);
            inbox_.set(zmq::sockopt::zap_domain, "choreo");
        }
        inbox_.bind(endpoint);
        std::string bound = inbox_.get(zmq::sockopt::last_endpoint);
        if (!bound.empty() && bound.back() == '\0') bound.pop_back();
        if (endpoint.find('*') != std::string::npos) {
            Directory::Entry entry{bound, options_.curve ? options_.curve->own.public_key : std::string{}};
            CHOREO_RETURN_IF_ERROR(options_.directory->add(options_.self, std::move(entry)));
        }
        return bound;
    } catch (const zmq::error_t& error) {
        return precondition_error("zmq_bind_failed", "bind " + endpoint + ": " + error.what());
    }
}

ZmqTransport::Impl::~Impl() {
    for (auto& [address, peer] : peers_) peer->dealer.close();
    inbox_.close();
    zap_.reset();  // its socket closes before the context ends
    if (wake_fd_ >= 0) ::close(wake_fd_);
}

void ZmqTransport::Impl::wake() {
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof one);
}

void ZmqTransport::Impl::close() {
    closed_.store(true);
    wake();
}

void ZmqTransport::Impl::clear_wake() {
    std::uint64_t count = 0;
    [[maybe_unused]] const ssize_t read_bytes = ::read(wake_fd_, &count, sizeof count);
}

ZmqStats ZmqTransport::Impl::stats() const {
    std::lock_guard lock{stats_mutex_};
    ZmqStats copy = stats_;
    if (zap_) {
        copy.zap_allowed = zap_->allowed();
        copy.zap_denied = zap_->denied();
    }
    return copy;
}

// ---- sending ---------------------------------------------------------------------------------

ZmqTransport::Impl::Peer* ZmqTransport::Impl::peer_for(const std::string& address, std::string& why_not) {
    if (auto found = peers_.find(address); found != peers_.end()) return found->second.get();
    Result<Address> parsed = Address::parse(address);
    CHOREO_ASSERT(parsed.ok() && parsed->is_unicast());
    std::optional<Directory::Entry> entry = options_.directory->find(*parsed);
    if (!entry) {
        why_not = "the directory lists no endpoint for " + address;
        return nullptr;
    }
    if (options_.curve && entry->public_key.empty()) {
        why_not = "the directory lists no CURVE public key for " + address;
        return nullptr;
    }
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
        why_not = "cannot connect to " + entry->endpoint + " for " + address + ": " + error.what();
        return nullptr;
    }
    Peer* raw = peer.get();
    peers_.emplace(address, std::move(peer));
    return raw;
}

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

void ZmqTransport::Impl::refuse(const OutgoingMessage& message, std::string_view reason, std::string detail) {
    undeliverable_.push_back({message.id, std::string(reason), std::move(detail)});
    std::lock_guard lock{stats_mutex_};
    if (reason == "message_too_large") {
        stats_.refused_too_large++;
    } else {
        stats_.refused_no_route++;
    }
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
}

// Hands one run to ZeroMQ as one message. False when the peer's queue is full (nothing sent).
bool ZmqTransport::Impl::flush(Run& run) {
    CHOREO_ASSERT(run.peer != nullptr && !run.messages.empty());
    zmq::socket_t& dealer = run.peer->dealer;
    try {
        if (!dealer.send(zmq::buffer(version_frame), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
            return false;
        }
        // ZeroMQ takes a multipart message whole once its first frame is in.
        dealer.send(zmq::buffer(data_frame), zmq::send_flags::sndmore);
        std::uint8_t id_bytes[id_frame_bytes];
        for (std::size_t index = 0; index < run.messages.size(); index++) {
            const OutgoingMessage& message = *run.messages[index];
            put_id(message.id, id_bytes);
            dealer.send(zmq::const_buffer(id_bytes, sizeof id_bytes), zmq::send_flags::sndmore);
            const bool last = index + 1 == run.messages.size();
            dealer.send(zmq::const_buffer(message.bytes.data(), message.bytes.size()),
                        last ? zmq::send_flags::none : zmq::send_flags::sndmore);
        }
    } catch (const zmq::error_t& error) {
        CHOREO_ASSERT(false && "a ZeroMQ send failed after its first frame");
    }
    const std::int64_t now_ms = steady_ms();
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
    return true;
}

Result<std::size_t> ZmqTransport::Impl::send(std::span<const OutgoingMessage> batch) {
    if (closed_.load()) return closed_error();
    expire_outstanding();
    std::size_t accepted = 0;  // every message before this index is handed over or refused
    Run run;
    auto flush_run = [&] {
        if (run.peer == nullptr) return true;
        const bool sent = flush(run);
        if (sent) accepted = run.end;
        run = Run{};
        return sent;
    };
    for (std::size_t index = 0; index < batch.size(); index++) {
        const OutgoingMessage& message = batch[index];
        std::string why_not;
        if (message.bytes.size() > options_.message_bytes_max) {
            if (!flush_run()) break;
            refuse(message, "message_too_large",
                   std::to_string(message.bytes.size()) + " bytes, over message_bytes_max " +
                       std::to_string(options_.message_bytes_max));
            accepted = index + 1;
            continue;
        }
        Peer* peer = nullptr;
        if (last_peer_ != nullptr && message.to.is_unicast() && message.to == last_to_) {
            peer = last_peer_;  // a run of sends to one address: skip the lookups
        } else {
            const std::string address = destination(message, why_not);
            peer = address.empty() ? nullptr : peer_for(address, why_not);
            if (peer != nullptr && message.to.is_unicast()) {
                last_to_ = message.to;
                last_peer_ = peer;
            }
        }
        if (peer == nullptr) {
            if (!flush_run()) break;
            refuse(message, "no_route", why_not);
            accepted = index + 1;
            continue;
        }
        if (run.peer != nullptr && (run.peer != peer || run.messages.size() >= options_.pairs_per_frame_max)) {
            if (!flush_run()) break;
        }
        const bool is_new = !outstanding_.contains(message.id);
        if (is_new && peer->outstanding + run.new_ids >= options_.outstanding_per_peer_max) {
            break;  // this peer has enough unacknowledged: backpressure
        }
        run.peer = peer;
        run.messages.push_back(&message);
        run.new_ids += is_new ? 1 : 0;
        run.end = index + 1;
    }
    flush_run();  // a full queue leaves `accepted` at the run's start: the caller offers it again
    if (accepted < batch.size()) {
        std::lock_guard lock{stats_mutex_};
        stats_.backpressure++;
    }
    return accepted;
}

// ---- receiving -------------------------------------------------------------------------------

void ZmqTransport::Impl::add_delivery(const std::string& routing_id, const MessageId& id, Bytes bytes,
                                      std::string malformed) {
    const DeliveryTag tag = next_tag_++;
    inbound_.emplace(tag, Inbound{routing_id, id});
    ready_.push_back(Delivery{tag, std::move(bytes), std::nullopt, std::move(malformed)});
}

void ZmqTransport::Impl::add_malformed(const std::string& routing_id, std::span<zmq::message_t> frames,
                                       std::string detail) {
    Bytes bytes;
    for (const zmq::message_t& frame : frames) {
        const std::size_t room = malformed_bytes_max - bytes.size();
        const auto* data = static_cast<const std::uint8_t*>(frame.data());
        bytes.insert(bytes.end(), data, data + std::min(room, frame.size()));
        if (bytes.size() == malformed_bytes_max) break;
    }
    if (bytes.empty()) bytes = bytes_of("(no frames)");
    add_delivery(routing_id, MessageId{}, std::move(bytes), std::move(detail));
    std::lock_guard lock{stats_mutex_};
    stats_.malformed++;
}

// frames[0] is the routing id the ROUTER added; the protocol's frames follow.
void ZmqTransport::Impl::parse_data(std::vector<zmq::message_t>& frames) {
    CHOREO_ASSERT(!frames.empty());
    const std::string routing_id = frames[0].to_string();
    std::span<zmq::message_t> protocol{frames.data() + 1, frames.size() - 1};
    if (protocol.size() < 2) {
        return add_malformed(routing_id, protocol, "a message needs a version frame and a kind frame");
    }
    if (!frame_is(protocol[0], version_frame)) {
        return add_malformed(routing_id, protocol, "unknown version frame '" + preview(protocol[0]) + "'");
    }
    if (!frame_is(protocol[1], data_frame)) {
        return add_malformed(routing_id, protocol, "unknown kind frame '" + preview(protocol[1]) + "' (want msg)");
    }
    const std::size_t pair_frames = protocol.size() - 2;
    if (pair_frames == 0) return add_malformed(routing_id, protocol, "a msg without envelopes");
    if (pair_frames / 2 > pairs_per_message_max) {
        return add_malformed(routing_id, protocol, "more than " + std::to_string(pairs_per_message_max) +
                                                       " envelopes in one message");
    }
    std::size_t received = 0;
    for (std::size_t index = 2; index + 1 < protocol.size(); index += 2) {
        const zmq::message_t& id_frame = protocol[index];
        if (id_frame.size() != id_frame_bytes) {
            add_malformed(routing_id, protocol.subspan(index, 2),
                          "an id frame of " + std::to_string(id_frame.size()) + " bytes (want 16)");
            continue;
        }
        // The ack names the id frame, so it must be the envelope's own id: otherwise a sender's
        // bug would confirm a message that was never delivered. (An envelope that does not
        // decode is left to the runtime, which dead-letters it with the reason, and is acked.)
        const MessageId framed = get_id(id_frame);
        const ByteView envelope{static_cast<const std::uint8_t*>(protocol[index + 1].data()), protocol[index + 1].size()};
        if (std::optional<MessageId> inside = peek_envelope_id(envelope, limits_); inside && *inside != framed) {
            add_malformed(routing_id, protocol.subspan(index, 2),
                          "the id frame " + framed.to_string() + " is not the envelope's id " + inside->to_string());
            continue;
        }
        add_delivery(routing_id, framed, bytes_of_frame(protocol[index + 1]), {});
        received++;
    }
    if (pair_frames % 2 != 0) {
        add_malformed(routing_id, protocol.subspan(protocol.size() - 1, 1), "an id frame without its envelope");
    }
    std::lock_guard lock{stats_mutex_};
    stats_.envelopes_received += received;
}

void ZmqTransport::Impl::read_inbox(std::size_t deliveries_max, std::size_t taken) {
    for (std::size_t reads = 0; reads < options_.receive_drain_max && taken + ready_.size() < deliveries_max; reads++) {
        frames_.clear();
        std::optional<std::size_t> parts = zmq::recv_multipart(inbox_, std::back_inserter(frames_), zmq::recv_flags::dontwait);
        if (!parts) return;
        parse_data(frames_);
    }
}

void ZmqTransport::Impl::read_acks(Peer& peer, ReceiveBatch& out) {
    std::size_t confirmed = 0;
    for (std::size_t reads = 0; reads < options_.receive_drain_max; reads++) {
        frames_.clear();
        std::optional<std::size_t> parts = zmq::recv_multipart(peer.dealer, std::back_inserter(frames_), zmq::recv_flags::dontwait);
        if (!parts) break;
        const bool well_formed = frames_.size() >= 2 && frame_is(frames_[0], version_frame) && frame_is(frames_[1], ack_frame);
        if (!well_formed) {  // nothing to dead-letter: acks carry no message
            std::lock_guard lock{stats_mutex_};
            stats_.malformed++;
            continue;
        }
        for (std::size_t index = 2; index < frames_.size(); index++) {
            if (frames_[index].size() != id_frame_bytes) continue;
            const MessageId id = get_id(frames_[index]);
            if (auto entry = outstanding_.find(id); entry != outstanding_.end()) {
                entry->second.peer->outstanding--;
                outstanding_.erase(entry);
            }
            out.confirmed.push_back(id);
            confirmed++;
        }
    }
    std::lock_guard lock{stats_mutex_};
    stats_.acks_received += confirmed;
}

void ZmqTransport::Impl::drain(ReceiveBatch& out, std::size_t deliveries_max) {
    std::size_t taken = 0;
    auto take_ready = [&] {
        while (!ready_.empty() && taken < deliveries_max) {
            out.deliveries.push_back(std::move(ready_.front()));
            ready_.pop_front();
            taken++;
        }
    };
    take_ready();
    if (deliveries_max > 0) {
        read_inbox(deliveries_max, taken);
        take_ready();
    }
    for (auto& [address, peer] : peers_) read_acks(*peer, out);
    for (Undeliverable& refused : undeliverable_) out.undeliverable.push_back(std::move(refused));
    undeliverable_.clear();
}

void ZmqTransport::Impl::wait(bool want_deliveries, std::int64_t timeout_us) {
    std::vector<zmq::pollitem_t> items;
    items.reserve(peers_.size() + 2);
    items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
    if (want_deliveries) items.push_back({inbox_.handle(), 0, ZMQ_POLLIN, 0});
    for (auto& [address, peer] : peers_) items.push_back({peer->dealer.handle(), 0, ZMQ_POLLIN, 0});
    const auto timeout = std::chrono::milliseconds{(timeout_us + 999) / 1000};
    try {
        zmq::poll(items, timeout);
    } catch (const zmq::error_t& error) {
        if (error.num() != EINTR) throw;
    }
    if (items[0].revents & ZMQ_POLLIN) clear_wake();
}

Status ZmqTransport::Impl::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    CHOREO_ASSERT(timeout_us >= 0);
    if (closed_.load()) return closed_error();
    const std::size_t deliveries_before = out.deliveries.size();
    const std::size_t confirmed_before = out.confirmed.size();
    auto got_something = [&] {
        return out.deliveries.size() > deliveries_before || out.confirmed.size() > confirmed_before ||
               !out.undeliverable.empty();
    };
    drain(out, deliveries_max);
    if (!got_something() && timeout_us > 0) {
        wait(deliveries_max > 0, timeout_us);
        if (closed_.load()) return closed_error();
        drain(out, deliveries_max);
    }
    return Status{};
}

Status ZmqTransport::Impl::acknowledge(std::span<const DeliveryTag> tags) {
    if (closed_.load()) return closed_error();
    std::map<std::string, std::vector<MessageId>> by_sender;
    for (DeliveryTag tag : tags) {
        auto inbound = inbound_.find(tag);
        if (inbound == inbound_.end()) continue;  // unknown or acknowledged before
        if (!inbound->second.id.is_nil()) by_sender[inbound->second.routing_id].push_back(inbound->second.id);
        inbound_.erase(inbound);
    }
    std::size_t acked = 0;
    std::uint8_t id_bytes[id_frame_bytes];
    for (const auto& [routing_id, ids] : by_sender) {
        for (std::size_t first = 0; first < ids.size(); first += acks_per_message_max) {
            const std::size_t count = std::min(acks_per_message_max, ids.size() - first);
            // A sender that went away (or is at its high-water mark) loses the ack: it retransmits,
            // and the dedup table answers the copy with another ack.
            if (!inbox_.send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) break;
            inbox_.send(zmq::buffer(version_frame), zmq::send_flags::sndmore);
            inbox_.send(zmq::buffer(ack_frame), zmq::send_flags::sndmore);
            for (std::size_t index = 0; index < count; index++) {
                put_id(ids[first + index], id_bytes);
                inbox_.send(zmq::const_buffer(id_bytes, sizeof id_bytes),
                            index + 1 == count ? zmq::send_flags::none : zmq::send_flags::sndmore);
            }
            acked += count;
        }
    }
    std::lock_guard lock{stats_mutex_};
    stats_.acks_sent += acked;
    return Status{};
}

// ---- ZmqTransport ----------------------------------------------------------------------------

Result<std::unique_ptr<ZmqTransport>> ZmqTransport::open(ZmqOptions options) {
    if (!options.self.is_unicast()) return invalid_argument_error("invalid_address", "self must be service/instance");
    if (!options.directory) return invalid_argument_error("invalid_argument", "a directory is required");
    if (options.pairs_per_frame_max == 0 || options.pairs_per_frame_max > pairs_per_message_max) {
        return invalid_argument_error("invalid_argument", "pairs_per_frame_max must be 1.." + std::to_string(pairs_per_message_max));
    }
    if (options.outstanding_per_peer_max == 0 || options.message_bytes_max == 0) {
        return invalid_argument_error("invalid_argument", "outstanding_per_peer_max and message_bytes_max must be positive");
    }
    std::unique_ptr<ZmqTransport> transport{new ZmqTransport(std::move(options), nullptr, {})};
    transport->impl_ = std::make_unique<Impl>(transport->options_);
    Result<std::string> bound = transport->impl_->start();
    if (!bound.ok()) return bound.status();
    transport->bound_endpoint_ = *bound;
    return transport;
}

ZmqTransport::ZmqTransport(ZmqOptions options, std::unique_ptr<Impl> impl, std::string bound_endpoint)
    : options_(std::move(options)), impl_(std::move(impl)), bound_endpoint_(std::move(bound_endpoint)) {}

ZmqTransport::~ZmqTransport() = default;

std::string ZmqTransport::route(const Address& to) { return impl_->route(to); }
Result<std::size_t> ZmqTransport::send(std::span<const OutgoingMessage> batch) { return impl_->send(batch); }
Status ZmqTransport::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    return impl_->receive(out, deliveries_max, timeout_us);
}
Status ZmqTransport::acknowledge(std::span<const DeliveryTag> tags) { return impl_->acknowledge(tags); }
void ZmqTransport::wake() { impl_->wake(); }
void ZmqTransport::close() { impl_->close(); }
ZmqStats ZmqTransport::stats() const { return impl_->stats(); }

}  // namespace choreo::zmq_transport
