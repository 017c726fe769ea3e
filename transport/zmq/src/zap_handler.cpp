#include "zap_handler.h"

#include <chrono>
#include <cstring>
#include <zmq_addon.hpp>

namespace choreo::zmq_transport {

namespace {
constexpr std::chrono::milliseconds stop_check_interval{50};
constexpr std::size_t zap_request_frames = 7;  // version, id, domain, address, identity, mechanism, key
}  // namespace

Result<std::unique_ptr<ZapHandler>> ZapHandler::start(zmq::context_t& context,
                                                     const std::vector<std::string>& allowed_z85) {
    std::set<Key> keys;
    for (const std::string& text : allowed_z85) {
        Key key{};
        if (text.size() != 40 || zmq_z85_decode(key.data(), text.c_str()) == nullptr) {
            return invalid_argument_error("invalid_key", "allow-list entry is not a 40-character Z85 key: " + text);
        }
        keys.insert(key);
    }
    zmq::socket_t socket{context, zmq::socket_type::rep};
    socket.set(zmq::sockopt::linger, 0);
    try {
        socket.bind("inproc://zeromq.zap.01");
    } catch (const zmq::error_t& error) {
        return precondition_error("zmq_setup_failed", std::string("ZAP handler: ") + error.what());
    }
    return std::unique_ptr<ZapHandler>{new ZapHandler(std::move(socket), std::move(keys))};
}

ZapHandler::ZapHandler(zmq::socket_t socket, std::set<Key> allowed_keys)
    : socket_(std::move(socket)), allowed_keys_(std::move(allowed_keys)) {
    thread_ = std::thread{[this] { serve(); }};
}

ZapHandler::~ZapHandler() {
    stopping_.store(true);
    thread_.join();
    socket_.close();
}

void ZapHandler::serve() {
    std::vector<zmq::message_t> request;
    while (!stopping_.load()) {
        zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
        try {
            zmq::poll(&item, 1, stop_check_interval);
            if ((item.revents & ZMQ_POLLIN) == 0) continue;
            request.clear();
            if (!zmq::recv_multipart(socket_, std::back_inserter(request), zmq::recv_flags::dontwait)) continue;
            answer(request);
        } catch (const zmq::error_t& error) {
            // Never let the handler thread end the process: a request it could not answer fails
            // that client's handshake, and the client connects again.
            if (error.num() == ETERM) return;
            errors_.fetch_add(1);
        }
    }
}

// RFC 27: reply version, request id, status code, status text, user id, metadata.
void ZapHandler::answer(std::vector<zmq::message_t>& request) {
    bool allow = false;
    std::string user_id;
    if (request.size() >= 2 && request.size() == zap_request_frames && request[5].to_string_view() == "CURVE" &&
        request[6].size() == 32) {
        Key key{};
        std::memcpy(key.data(), request[6].data(), key.size());
        allow = allowed_keys_.contains(key);
        char z85[41] = {};
        zmq_z85_encode(z85, key.data(), key.size());
        user_id = z85;
    }
    (allow ? allowed_ : denied_).fetch_add(1);
    const std::string version = request.empty() ? "1.0" : request[0].to_string();
    const std::string request_id = request.size() >= 2 ? request[1].to_string() : std::string{};
    std::array<zmq::const_buffer, 6> reply = {zmq::buffer(version), zmq::buffer(request_id),
                                              zmq::str_buffer(allow ? "200" : "400"),
                                              allow ? zmq::str_buffer("OK") : zmq::str_buffer("key not allowed"),
                                              zmq::buffer(user_id), zmq::const_buffer{}};
    zmq::send_multipart(socket_, reply);
}

}  // namespace choreo::zmq_transport
