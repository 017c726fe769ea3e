// zap_handler.h — the ZAP (ZeroMQ authentication protocol, RFC 27) handler that admits CURVE
// clients whose public key is on the allow-list. One per ZeroMQ context, on its own thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "choreo/status.h"

namespace choreo::zmq_transport {

class ZapHandler {
public:
    // Binds inproc://zeromq.zap.01 in `context` and starts answering. Fails with invalid_key
    // when an allowed key is not Z85.
    static Result<std::unique_ptr<ZapHandler>> start(zmq::context_t& context,
                                                     const std::vector<std::string>& allowed_z85);
    ~ZapHandler();  // stops the thread and closes its socket
    ZapHandler(const ZapHandler&) = delete;
    ZapHandler& operator=(const ZapHandler&) = delete;

    std::uint64_t allowed() const { return allowed_.load(); }
    std::uint64_t denied() const { return denied_.load(); }
    std::uint64_t errors() const { return errors_.load(); }

private:
    using Key = std::array<std::uint8_t, 32>;
    ZapHandler(zmq::socket_t socket, std::set<Key> allowed_keys);
    void serve();
    void answer(std::vector<zmq::message_t>& request);

    zmq::socket_t socket_;
    std::set<Key> allowed_keys_;
    std::atomic<bool> stopping_{false};
    std::atomic<std::uint64_t> allowed_{0};
    std::atomic<std::uint64_t> denied_{0};
    std::atomic<std::uint64_t> errors_{0};
    std::thread thread_;
};

}  // namespace choreo::zmq_transport
