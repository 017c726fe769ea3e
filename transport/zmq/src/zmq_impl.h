// zmq_impl.h — the inside of ZmqTransport, shared by its source files: zmq_transport.cpp (set-up,
// receiving, acknowledging) and zmq_send.cpp (peers, routing, sending).
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "choreo/limits.h"
#include "choreo/transport/zmq_transport.h"
#include "zap_handler.h"

namespace choreo::zmq_transport {

// A receiver refuses a data message with more envelopes than this (senders batch fewer).
inline constexpr std::size_t pairs_per_message_max = 1024;
inline constexpr std::size_t acks_per_message_max = 1024;
inline constexpr std::size_t malformed_bytes_max = 64 * 1024;  // kept of an input that cannot be framed

// The most one data message may carry in all, so that one message cannot make a receiver hold
// more than this (frames beyond it are read and thrown away); senders stay under it.
inline std::size_t data_message_bytes_max(std::size_t message_bytes_max) {
    return std::max<std::size_t>(16u << 20, 2 * message_bytes_max + 64 * 1024);
}

inline std::int64_t steady_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

MessageId get_id(const zmq::message_t& frame);  // of a 16-byte id frame

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
        std::size_t outstanding = 0;         // sends not acknowledged yet (and not expired)
        std::int64_t refusing_since_ms = 0;  // 0: taking sends; else the first refusal since progress
        std::int64_t last_used_ms = 0;
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
        std::size_t bytes = 0;
    };
    // Where a message can go: a peer; or nowhere for good (no_route, with why); or not now.
    struct Target {
        Peer* peer = nullptr;
        bool no_route = false;
        std::string why_not{};
    };

    // zmq_send.cpp
    Target target_of(const OutgoingMessage& message);
    std::string destination(const OutgoingMessage& message, std::string& why_not);
    Target peer_for(const std::string& address);
    bool make_room_for_a_peer();
    void reset_stuck_peers();
    void forget_peer(const std::string& address);
    void refused_by(Peer& peer);
    bool flush(Run& run);
    void remember_sent(const Run& run);
    void refuse(const OutgoingMessage& message, std::string_view reason, std::string detail);
    void expire_outstanding();
    void count(std::uint64_t ZmqStats::*counter, std::uint64_t amount = 1);

    // zmq_transport.cpp
    void drain(ReceiveBatch& out, std::size_t deliveries_max);
    void read_inbox(std::size_t deliveries_max, std::size_t taken);
    bool read_message(zmq::socket_t& socket, std::size_t frames_max, std::size_t bytes_max, bool& cut);
    void read_acks(Peer& peer, ReceiveBatch& out);
    void parse_data(std::vector<zmq::message_t>& frames, bool cut);
    void add_delivery(const std::string& routing_id, const MessageId& id, Bytes bytes, std::string malformed);
    void add_malformed(const std::string& routing_id, std::span<zmq::message_t> frames, std::string detail);
    void wait(bool want_deliveries, std::int64_t timeout_us);
    void clear_wake();

    const ZmqOptions& options_;
    // Only to check an id frame against the envelope: no limit of its own but the size.
    const MessageLimits peek_limits_{.message_bytes_max = options_.message_bytes_max + 1024,
                                     .nesting_depth_max = 64,
                                     .keys_count_max = 1u << 16};
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

}  // namespace choreo::zmq_transport
