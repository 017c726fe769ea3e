// choreo/context.h — what a typed handler sees: msgpack bodies and state for user structs.
//
// User types travel as msgpack through msgpack-c's adaptors (MSGPACK_DEFINE_MAP and friends):
//
//   struct ShipOrder { std::string order_id; MSGPACK_DEFINE_MAP(order_id); };
//   svc.on("payment-completed", [](choreo::Context& ctx, const PaymentCompleted& paid) {
//       auto order = ctx.load<Order>("order/" + paid.order_id);      // std::optional<Order>
//       ctx.save("order/" + paid.order_id, Order{...});
//       ctx.send("shipping", "ship-order", ShipOrder{paid.order_id}); // committed with the step
//   });
//
// Everything a handler writes or sends commits atomically with the input's dedup row, or not
// at all. A Context is valid only during the handler call, on the runtime thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <msgpack.hpp>

#include "choreo/kernel.h"
#include "choreo/status.h"

namespace choreo {

// Encodes a value with its msgpack adaptor. Bytes pass through unchanged.
template <typename T>
Bytes pack(const T& value) {
    if constexpr (std::is_same_v<T, Bytes>) {
        return value;
    } else {
        msgpack::sbuffer buffer;
        msgpack::pack(buffer, value);
        const auto* data = reinterpret_cast<const std::uint8_t*>(buffer.data());
        return Bytes(data, data + buffer.size());
    }
}

// Decodes untrusted bytes into T; fails with invalid_argument/body_decode_failed, never throws.
template <typename T>
Result<T> unpack(ByteView bytes, const MessageLimits& limits = {}) {
    if constexpr (std::is_same_v<T, Bytes>) {
        return Bytes(bytes.begin(), bytes.end());
    } else {
        const msgpack::unpack_limit bounds{limits.message_bytes_max, limits.message_bytes_max,
                                           limits.message_bytes_max, limits.message_bytes_max,
                                           limits.message_bytes_max, limits.nesting_depth_max};
        try {
            std::size_t offset = 0;
            msgpack::object_handle handle =
                msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), bytes.size(), offset,
                                nullptr, nullptr, bounds);
            if (offset != bytes.size()) {
                return invalid_argument_error("body_decode_failed", "trailing bytes after the value");
            }
            return handle.get().as<T>();
        } catch (const std::exception& error) {
            return invalid_argument_error("body_decode_failed", error.what());
        }
    }
}

class Context {
public:
    explicit Context(StepContext& step) : step_(step) {}

    const Envelope& message() const { return step_.message(); }
    TimeMs now_ms() const { return step_.now_ms(); }
    const Address& self() const { return step_.self(); }

    // The value saved under `key`, as of this step; nullopt when there is none. A stored value
    // that does not decode as T rejects the input (state_decode_failed).
    template <typename T>
    std::optional<T> load(std::string_view key) {
        std::optional<Bytes> stored = step_.load(key);
        if (!stored) return std::nullopt;
        Result<T> value = unpack<T>(*stored);
        if (!value.ok()) {
            throw Reject(std::string(refusal::state_decode_failed), "state '" + std::string(key) + "': " + value.status().message());
        }
        return std::move(value).value();
    }
    template <typename T>
    void save(std::string_view key, const T& value) {
        step_.save(key, pack(value));
    }
    void erase(std::string_view key) { step_.erase(key); }

    // `to` is "service" or "service/instance"; an invalid address rejects the input.
    template <typename T>
    void send(std::string_view to, std::string_view kind, const T& body, const SendOptions& options = {}) {
        step_.send(parse_address(to), kind, pack(body), options);
    }
    template <typename T>
    void send(const Address& to, std::string_view kind, const T& body, const SendOptions& options = {}) {
        step_.send(to, kind, pack(body), options);
    }
    template <typename T>
    void reply(std::string_view kind, const T& body, const SendOptions& options = {}) {
        step_.reply(kind, pack(body), options);
    }
    // Refuses the input for good: the step rolls back and the input is dead-lettered.
    [[noreturn]] void reject(std::string reason, std::string detail) {
        throw Reject(std::move(reason), std::move(detail));
    }

    StepContext& step() { return step_; }

private:
    static Address parse_address(std::string_view text) {
        Result<Address> address = Address::parse(text);
        if (!address.ok()) throw Reject(std::string(refusal::invalid_send_address), address.status().message());
        return std::move(address).value();
    }

    StepContext& step_;
};

}  // namespace choreo
