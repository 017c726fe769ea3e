// The ZeroMQ transport: one ROUTER to receive on, one DEALER per peer to send on (zmq_send.cpp),
// acks back on the connection a message came in on. See zmq_transport.h and docs/protocol.md
// ("ZeroMQ").
#include "choreo/transport/zmq_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <zmq_addon.hpp>

#include "choreo/assert.h"
#include "choreo/codec.h"
#include "zmq_impl.h"

namespace choreo::zmq_transport {

MessageId get_id(const zmq::message_t& frame) {
    std::optional<MessageId> id = MessageId::from_bytes({static_cast<const std::uint8_t*>(frame.data()), frame.size()});
    CHOREO_ASSERT(id.has_value());  // callers check the frame is 16 bytes
    return *id;
}

namespace {

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

Status zmq_failure(const zmq::error_t& error, const char* what) {
    return precondition_error("zmq_error", std::string(what) + ": " + error.what());
}

}  // namespace

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
        context_.set(zmq::ctxopt::max_sockets, static_cast<int>(options_.peers_max) + 16);
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
    std::uint64_t signals = 0;
    [[maybe_unused]] const ssize_t read_bytes = ::read(wake_fd_, &signals, sizeof signals);
}

ZmqStats ZmqTransport::Impl::stats() const {
    std::lock_guard lock{stats_mutex_};
    ZmqStats copy = stats_;
    if (zap_) {
        copy.zap_allowed = zap_->allowed();
        copy.zap_denied = zap_->denied();
        copy.zmq_errors += zap_->errors();
    }
    return copy;
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
    count(&ZmqStats::malformed);
}

// frames[0] is the routing id the ROUTER added; the protocol's frames follow. `cut`: the
// message had more frames or bytes than a receiver keeps, and the rest was thrown away.
void ZmqTransport::Impl::parse_data(std::vector<zmq::message_t>& frames, bool cut) {
    CHOREO_ASSERT(!frames.empty());
    const std::string routing_id = frames[0].to_string();
    std::span<zmq::message_t> protocol{frames.data() + 1, frames.size() - 1};
    if (cut) {
        return add_malformed(routing_id, protocol, "more than " + std::to_string(pairs_per_message_max) +
                                                       " envelopes or " +
                                                       std::to_string(data_message_bytes_max(options_.message_bytes_max)) +
                                                       " bytes in one message");
    }
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
        if (std::optional<MessageId> inside = peek_envelope_id(envelope, peek_limits_); inside && *inside != framed) {
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
    count(&ZmqStats::envelopes_received, received);
}

// Reads one whole multipart message into frames_, keeping at most frames_max frames and
// bytes_max bytes (the rest is read and dropped, `cut` set). False when none is waiting.
bool ZmqTransport::Impl::read_message(zmq::socket_t& socket, std::size_t frames_max, std::size_t bytes_max,
                                      bool& cut) {
    frames_.clear();
    cut = false;
    std::size_t bytes = 0;
    zmq::message_t frame;
    if (!socket.recv(frame, zmq::recv_flags::dontwait)) return false;
    for (;;) {
        const bool more = frame.more();
        bytes += frame.size();
        if (frames_.size() < frames_max && bytes <= bytes_max) {
            frames_.push_back(std::move(frame));
        } else {
            cut = true;  // keep reading to the end of the message, keep nothing more
        }
        if (!more) return true;
        frame = zmq::message_t{};
        const zmq::recv_result_t got = socket.recv(frame, zmq::recv_flags::none);  // the rest is there
        CHOREO_ASSERT(got.has_value());
    }
}

void ZmqTransport::Impl::read_inbox(std::size_t deliveries_max, std::size_t taken) {
    const std::size_t frames_max = 1 + 2 + 2 * pairs_per_message_max;  // routing id, version, kind, pairs
    const std::size_t bytes_max = data_message_bytes_max(options_.message_bytes_max);
    for (std::size_t reads = 0; reads < options_.receive_drain_max && taken + ready_.size() < deliveries_max; reads++) {
        bool cut = false;
        if (!read_message(inbox_, frames_max, bytes_max, cut)) return;
        parse_data(frames_, cut);
    }
}

// Only ids this endpoint sent to this peer are confirmed: an ack for anything else (a buggy or
// foreign receiver, or one that came after the entry expired) must not settle an outbox row
// that may be waiting for another peer. A late one costs a retransmission, acked again.
void ZmqTransport::Impl::read_acks(Peer& peer, ReceiveBatch& out) {
    std::size_t confirmed = 0;
    std::size_t ignored = 0;
    for (std::size_t reads = 0; reads < options_.receive_drain_max; reads++) {
        bool cut = false;
        if (!read_message(peer.dealer, 2 + acks_per_message_max, (2 + acks_per_message_max) * 64, cut)) break;
        const bool well_formed = !cut && frames_.size() >= 2 && frame_is(frames_[0], version_frame) &&
                                 frame_is(frames_[1], ack_frame);
        if (!well_formed) {  // nothing to dead-letter: acks carry no message
            count(&ZmqStats::malformed);
            continue;
        }
        for (std::size_t index = 2; index < frames_.size(); index++) {
            if (frames_[index].size() != id_frame_bytes) continue;
            const MessageId id = get_id(frames_[index]);
            auto entry = outstanding_.find(id);
            if (entry == outstanding_.end() || entry->second.peer != &peer) {
                ignored++;
                continue;
            }
            peer.outstanding--;
            outstanding_.erase(entry);
            peer.refusing_since_ms = 0;  // it is alive and committing
            out.confirmed.push_back(id);
            confirmed++;
        }
    }
    std::lock_guard lock{stats_mutex_};
    stats_.acks_received += confirmed;
    stats_.acks_ignored += ignored;
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
    try {
        drain(out, deliveries_max);
        if (!got_something() && timeout_us > 0) {
            wait(deliveries_max > 0, timeout_us);
            if (closed_.load()) return closed_error();
            drain(out, deliveries_max);
        }
    } catch (const zmq::error_t& error) {
        count(&ZmqStats::zmq_errors);
        return zmq_failure(error, "receive");
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
    try {
        for (const auto& [routing_id, ids] : by_sender) {
            for (std::size_t first = 0; first < ids.size(); first += acks_per_message_max) {
                const std::size_t in_message = std::min(acks_per_message_max, ids.size() - first);
                // A sender that went away (or is at its high-water mark) loses the ack: it
                // retransmits, and the dedup table answers the copy with another ack.
                if (!inbox_.send(zmq::buffer(routing_id), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) break;
                inbox_.send(zmq::buffer(version_frame), zmq::send_flags::sndmore);
                inbox_.send(zmq::buffer(ack_frame), zmq::send_flags::sndmore);
                for (std::size_t index = 0; index < in_message; index++) {
                    const std::array<std::uint8_t, 16> id_bytes = ids[first + index].to_bytes();
                    inbox_.send(zmq::const_buffer(id_bytes.data(), id_bytes.size()),
                                index + 1 == in_message ? zmq::send_flags::none : zmq::send_flags::sndmore);
                }
                acked += in_message;
            }
        }
    } catch (const zmq::error_t& error) {  // the effects are committed: a lost ack is a retransmission
        count(&ZmqStats::zmq_errors);
        return zmq_failure(error, "acknowledge");
    }
    count(&ZmqStats::acks_sent, acked);
    return Status{};
}

// ---- ZmqTransport ----------------------------------------------------------------------------

Result<std::unique_ptr<ZmqTransport>> ZmqTransport::open(ZmqOptions options) {
    if (!options.self.is_unicast()) return invalid_argument_error("invalid_address", "self must be service/instance");
    if (!options.directory) return invalid_argument_error("invalid_argument", "a directory is required");
    if (options.pairs_per_frame_max == 0 || options.pairs_per_frame_max > pairs_per_message_max) {
        return invalid_argument_error("invalid_argument", "pairs_per_frame_max must be 1.." + std::to_string(pairs_per_message_max));
    }
    if (options.outstanding_per_peer_max == 0 || options.message_bytes_max == 0 || options.peers_max == 0) {
        return invalid_argument_error("invalid_argument",
                                      "outstanding_per_peer_max, message_bytes_max and peers_max must be positive");
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
Result<std::size_t> ZmqTransport::send(std::span<const OutgoingMessage> batch) {
    try {
        return impl_->send(batch);
    } catch (const zmq::error_t& error) {  // after a first frame went in: nothing is lost, the outbox resends
        return zmq_failure(error, "send");
    }
}
Status ZmqTransport::receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) {
    return impl_->receive(out, deliveries_max, timeout_us);
}
Status ZmqTransport::acknowledge(std::span<const DeliveryTag> tags) { return impl_->acknowledge(tags); }
void ZmqTransport::wake() { impl_->wake(); }
void ZmqTransport::close() { impl_->close(); }
ZmqStats ZmqTransport::stats() const { return impl_->stats(); }

}  // namespace choreo::zmq_transport
