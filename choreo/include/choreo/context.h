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

namespace detail {
// msgpack's output stream concept: appends to a byte vector.
struct BytesWriter {
    Bytes& out;
    void write(const char* data, std::size_t size) { out.insert(out.end(), data, data + size); }
};
// One zone per thread for parsing bodies; unpack() empties it after each value.
inline msgpack::zone& unpack_zone() {
    thread_local msgpack::zone zone;
    return zone;
}
inline bool& unpack_zone_in_use() {
    thread_local bool in_use = false;
    return in_use;
}
}  // namespace detail

// Encodes a value with its msgpack adaptor. Bytes pass through unchanged.
template <typename T>
Bytes pack(const T& value) {
    if constexpr (std::is_same_v<T, Bytes>) {
        return value;
    } else {
        Bytes out;
        out.reserve(64);  // most bodies fit: no growth step by step
        detail::BytesWriter writer{out};  // straight into the result: no 8 KiB staging buffer
        msgpack::pack(writer, value);
        return out;
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
        // The parsed tree lives in this thread's reusable zone, emptied after every value, so a
        // handler call does not allocate (and free) a fresh 8 KiB zone for its body.
        // (An adaptor that itself calls unpack() gets a zone of its own.)
        std::optional<msgpack::zone> nested;
        msgpack::zone& zone = detail::unpack_zone_in_use() ? nested.emplace() : detail::unpack_zone();
        struct ClearZone {
            msgpack::zone& zone;
            bool shared;
            ~ClearZone() {
                if (!shared) return;
                zone.clear();
                detail::unpack_zone_in_use() = false;
            }
        } clear_zone{zone, !nested.has_value()};
        if (!nested) detail::unpack_zone_in_use() = true;
        try {
            std::size_t offset = 0;
            const msgpack::object object = msgpack::unpack(zone, reinterpret_cast<const char*>(bytes.data()),
                                                           bytes.size(), offset, nullptr, nullptr, bounds);
            if (offset != bytes.size()) {
                return invalid_argument_error("body_decode_failed", "trailing bytes after the value");
            }
            return object.as<T>();
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
