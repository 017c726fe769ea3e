// choreo/transport/zmq_transport.h — the Transport interface over ZeroMQ, brokerless.
//
// Each endpoint binds one ROUTER socket (tcp or ipc) where it receives, and opens one DEALER
// socket per peer it sends to. A Directory says where every `service/instance` listens. The
// framing (docs/protocol.md, "ZeroMQ"): a data message is [version]["msg"] followed by pairs
// [16-byte id][envelope]; the receiver answers on the same connection with [version]["ack"]
// followed by 16-byte ids, and only for deliveries its runtime acknowledged, i.e. committed.
// The runtime's outbox retransmits what is not confirmed (bounded backoff), so the transport
// keeps nothing durable itself: a lost message or a lost ack costs a retransmission, which the
// receiver's dedup table turns into a no-op.
//
//   auto directory = choreo::zmq_transport::Directory::load("directory.conf").value();
//   choreo::zmq_transport::ZmqTransport transport{{.self = choreo::Address::unicast("orders", "1"),
//                                                  .directory = directory}};
//   choreo::Service svc{{.name = "orders", .instance = "1"}, transport, store};
//
// Anycast: route() picks an instance round robin, skipping instances with outstanding_per_peer_max
// unacknowledged messages, and the runtime pins every retransmission to it (design §4.6). A
// service the directory marks `shared_store` is not pinned: each send picks the next instance.
//
// Security: with `curve` set, the ROUTER is a CURVE server that admits only the client public
// keys on its allow-list (checked by a ZAP handler), and every DEALER is a CURVE client that
// authenticates the peer with the public key the directory lists for it.
//
// Threading: as choreo/transport.h says — one runtime thread calls send/receive/acknowledge/
// route; wake() and close() may come from any thread. The Directory is thread-safe and shared.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "choreo/transport.h"

namespace choreo::zmq_transport {

// The version frame that starts every ZeroMQ message of the protocol.
inline constexpr std::string_view version_frame = "choreo/zmq/1";
inline constexpr std::string_view data_frame = "msg";
inline constexpr std::string_view ack_frame = "ack";
inline constexpr std::size_t id_frame_bytes = 16;

// ---- CURVE keys ------------------------------------------------------------------------------

// A CURVE key pair in Z85 text (40 characters each), as zmq_curve_keypair makes them.
struct CurveKeyPair {
    std::string public_key;
    std::string secret_key;
};

// A fresh key pair (needs libzmq built with CURVE, as Debian's is).
Result<CurveKeyPair> generate_keypair();
// Reads one Z85 key from a file: the first line that is not empty or a `#` comment.
// Errors: key_file_unreadable, invalid_key (not 40 Z85 characters).
Result<std::string> load_key(const std::string& path);
// Reads a key pair from `<base>.pub` and `<base>.key` (choreo-zmq-keygen writes them).
Result<CurveKeyPair> load_keypair(const std::string& base);
// Writes `<base>.pub` and `<base>.key`; the secret file gets mode 0600.
Status write_keypair(const CurveKeyPair& pair, const std::string& base);
// Reads an allow-list: one Z85 public key per line; blank lines and `#` comments are skipped.
Result<std::vector<std::string>> load_allow_list(const std::string& path);

struct CurveOptions {
    CurveKeyPair own;                          // this endpoint's keys (server and client side)
    std::vector<std::string> allowed_clients;  // Z85 public keys admitted to the ROUTER
};

// ---- Directory -------------------------------------------------------------------------------

// Where each instance listens. Thread-safe; shared by every endpoint of a process.
//
// Text form (Directory::parse / load), one entry per line. A `#` at the start of a line or
// after white space starts a comment (Z85 keys may contain `#` themselves):
//   orders/1   tcp://10.0.0.5:7001   [key=<Z85 public key> | key-file=<path>]
//   orders/2   ipc:///run/choreo/orders-2
//   orders     shared_store          # instances of `orders` share one store: no pinning
class Directory {
public:
    struct Entry {
        std::string endpoint;    // as zmq_connect takes it
        std::string public_key;  // Z85 CURVE server key, or empty (plain)
    };
    // Consulted for a unicast address with no entry; a found entry is remembered.
    using Resolver = std::function<std::optional<Entry>(const Address& unicast)>;

    Directory() = default;
    Directory(const Directory&) = delete;
    Directory& operator=(const Directory&) = delete;

    static Result<std::shared_ptr<Directory>> parse(std::string_view text);
    static Result<std::shared_ptr<Directory>> load(const std::string& path);

    // Adds or replaces the entry of a unicast address.
    Status add(const Address& unicast, Entry entry);
    void set_shared_store(std::string_view service, bool shared = true);
    void set_resolver(Resolver resolver);

    std::optional<Entry> find(const Address& unicast);  // may ask the resolver
    // The instances listed for `service`, in the order they were added.
    std::vector<std::string> instances(std::string_view service) const;
    bool shares_store(std::string_view service) const;

private:
    mutable std::mutex mutex_;
    std::map<std::string, Entry> entries_;                         // by `service/instance`
    std::map<std::string, std::vector<std::string>, std::less<>> instances_;  // by service
    std::set<std::string, std::less<>> shared_;
    Resolver resolver_;
};

// ---- Transport -------------------------------------------------------------------------------

struct ZmqOptions {
    Address self{};                          // this endpoint's unicast address
    std::shared_ptr<Directory> directory{};  // required
    // Where to bind; empty: the directory's endpoint for `self`. A tcp port `*` binds any free
    // port; the endpoint actually bound is then added to the directory (bound_endpoint()).
    std::string bind{};
    std::size_t message_bytes_max = 1 << 20;         // envelope bytes; larger sends are refused
    std::size_t outstanding_per_peer_max = 16'384;   // unacknowledged sends per peer: backpressure
    std::int64_t outstanding_expiry_ms = 30'000;     // an unacknowledged send stops counting after this
    std::size_t pairs_per_frame_max = 256;           // envelopes batched into one ZeroMQ message
    int send_hwm_messages = 1000;                    // ZeroMQ messages queued per peer
    int receive_hwm_messages = 100;                  // each up to data_message_bytes_max
    int reconnect_interval_ms = 100;                 // first reconnect delay, doubled up to the max
    int reconnect_interval_ms_max = 2000;
    std::size_t receive_drain_max = 64;              // ZeroMQ messages read per receive call
    // A peer that refused every send and acknowledged nothing for this long gets a fresh socket
    // (the directory is read again; what it held is retransmitted from the outbox). ZeroMQ does
    // not reconnect after a failed handshake, e.g. a key the peer did not allow yet.
    std::int64_t peer_reset_after_ms = 5'000;
    std::size_t peers_max = 512;                     // sockets to peers; idle ones are closed first
    std::optional<CurveOptions> curve{};
};

struct ZmqStats {
    std::uint64_t frames_sent = 0;        // ZeroMQ data messages (each carries 1+ envelopes)
    std::uint64_t envelopes_sent = 0;
    std::uint64_t envelopes_received = 0;
    std::uint64_t acks_sent = 0;          // ids acknowledged to senders
    std::uint64_t acks_received = 0;      // ids confirmed to this endpoint
    std::uint64_t malformed = 0;          // inputs that could not be framed
    std::uint64_t refused_too_large = 0;
    std::uint64_t refused_no_route = 0;
    std::uint64_t backpressure = 0;       // send calls that stopped short
    std::uint64_t acks_ignored = 0;       // acked ids this endpoint had not sent to that peer
    std::uint64_t peer_resets = 0;        // peers given a fresh socket (see peer_reset_after_ms)
    std::uint64_t zmq_errors = 0;         // unexpected ZeroMQ errors, turned into refusals
    std::uint64_t zap_denied = 0;         // CURVE clients turned away
    std::uint64_t zap_allowed = 0;
};

class ZmqTransport final : public Transport {
public:
    // Binds at once; fails with a clear status through open() instead of asserting.
    static Result<std::unique_ptr<ZmqTransport>> open(ZmqOptions options);
    ~ZmqTransport() override;
    ZmqTransport(const ZmqTransport&) = delete;
    ZmqTransport& operator=(const ZmqTransport&) = delete;

    Features features() const override {
        // Messages to a listed peer queue in ZeroMQ until it binds (persistence while this process
        // runs); a receiver that restarts gets nothing back from the transport: the sender's
        // runtime retransmits (no redelivery). One DEALER per peer keeps one sender's order.
        return {.ordering = true, .persistence = true, .consumer_groups = false, .redelivery = false};
    }
    Address local_address() const override { return options_.self; }
    std::string route(const Address& to) override;
    Result<std::size_t> send(std::span<const OutgoingMessage> batch) override;
    Status receive(ReceiveBatch& out, std::size_t deliveries_max, std::int64_t timeout_us) override;
    Status acknowledge(std::span<const DeliveryTag> tags) override;
    void wake() override;
    void close() override;

    const std::string& bound_endpoint() const { return bound_endpoint_; }
    ZmqStats stats() const;

    class Impl;

private:
    ZmqTransport(ZmqOptions options, std::unique_ptr<Impl> impl, std::string bound_endpoint);

    ZmqOptions options_;
    std::unique_ptr<Impl> impl_;
    std::string bound_endpoint_;
};

}  // namespace choreo::zmq_transport
