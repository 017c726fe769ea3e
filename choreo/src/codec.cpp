#include "choreo/codec.h"

#include <array>

#include "choreo/detail/msgpack_wire.h"

namespace choreo {
namespace {

using detail::MsgpackReader;
using detail::MsgpackWriter;

Status decode_failure(std::string_view reason, std::string message) {
    return invalid_argument_error(std::string(reason), std::move(message));
}

// The keys of the envelope map, in the order the encoder writes them.
enum class Key { v, id, kind, from, to, corr, cause, promise, sent_at, deadline, headers, body };
constexpr std::array<std::string_view, 12> key_names = {
    "v", "id", "kind", "from", "to", "corr", "cause", "promise", "sent_at", "deadline",
    "headers", "body"};
constexpr std::array<bool, 12> key_required = {true,  true,  true,  false, true,  false,
                                               false, false, true,  false, false, true};

int key_index(std::string_view name) {
    for (std::size_t index = 0; index < key_names.size(); index++) {
        if (key_names[index] == name) return static_cast<int>(index);
    }
    return -1;
}

Status check_field_lengths(const Envelope& envelope, const MessageLimits& limits) {
    if (envelope.kind.empty()) return decode_failure(decode_error::invalid_value, "empty kind");
    if (envelope.kind.size() > limits.kind_bytes_max) {
        return decode_failure(decode_error::field_too_long, "kind too long");
    }
    // The receiver refuses negative times; refuse them here, with the receiver's reason.
    if (envelope.sent_at_ms < 0 || envelope.deadline_ms < 0) {
        return decode_failure(decode_error::invalid_value, "negative time");
    }
    for (const std::string* field : {&envelope.correlation, &envelope.causation,
                                     &envelope.promise}) {
        if (field->size() > limits.field_bytes_max) {
            return decode_failure(decode_error::field_too_long, "corr, cause or promise too long");
        }
    }
    if (envelope.headers.size() > limits.headers_count_max) {
        return decode_failure(decode_error::too_many_keys, "too many headers");
    }
    for (const auto& [key, value] : envelope.headers) {
        if (key.size() > limits.header_bytes_max || value.size() > limits.header_bytes_max) {
            return decode_failure(decode_error::field_too_long, "header too long");
        }
    }
    return Status{};
}

// Decoding state for one envelope: which keys were seen, into which fields.
class EnvelopeDecoder {
public:
    EnvelopeDecoder(ByteView bytes, const MessageLimits& limits) : reader_(bytes), limits_(limits) {}
    Result<Envelope> decode();

private:
    Status decode_key(Key key);
    Status read_bounded_string(std::string& out, std::size_t bytes_max, const char* what);
    Status read_address(Address& out, bool allow_empty);
    Status read_time(TimeMs& out);
    Status read_headers();

    MsgpackReader reader_;
    const MessageLimits& limits_;
    Envelope envelope_;
    std::array<bool, key_names.size()> seen_{};
};

Result<Envelope> EnvelopeDecoder::decode() {
    Result<std::uint32_t> count = reader_.map_header();
    if (!count.ok()) return count.status();
    if (*count > limits_.keys_count_max) {
        return decode_failure(decode_error::too_many_keys, std::to_string(*count) + " keys");
    }
    for (std::uint32_t entry = 0; entry < *count; entry++) {
        Result<std::string_view> name = reader_.string();
        if (!name.ok()) return name.status();
        const int index = key_index(*name);
        if (index < 0) {  // unknown keys are ignored, within the nesting bound
            CHOREO_RETURN_IF_ERROR(reader_.skip(limits_.nesting_depth_max));
            continue;
        }
        if (seen_[static_cast<std::size_t>(index)]) {
            return decode_failure(decode_error::duplicate_key, "key '" + std::string(*name) + "'");
        }
        seen_[static_cast<std::size_t>(index)] = true;
        CHOREO_RETURN_IF_ERROR(decode_key(static_cast<Key>(index)));
    }
    if (!reader_.at_end()) {
        return decode_failure(decode_error::trailing_bytes,
                              std::to_string(reader_.remaining()) + " bytes after the map");
    }
    for (std::size_t index = 0; index < key_names.size(); index++) {
        if (key_required[index] && !seen_[index]) {
            return decode_failure(decode_error::missing_key,
                                  "no key '" + std::string(key_names[index]) + "'");
        }
    }
    return std::move(envelope_);
}

Status EnvelopeDecoder::read_bounded_string(std::string& out, std::size_t bytes_max,
                                            const char* what) {
    Result<std::string_view> text = reader_.string();
    if (!text.ok()) return text.status();
    if (text->size() > bytes_max) {
        return decode_failure(decode_error::field_too_long, std::string(what) + " too long");
    }
    out.assign(text->data(), text->size());
    return Status{};
}

Status EnvelopeDecoder::read_address(Address& out, bool allow_empty) {
    Result<std::string_view> text = reader_.string();
    if (!text.ok()) return text.status();
    if (text->empty() && allow_empty) return Status{};
    Result<Address> address = Address::parse(*text);
    if (!address.ok()) return decode_failure(decode_error::invalid_address, address.status().message());
    out = std::move(address).value();
    return Status{};
}

Status EnvelopeDecoder::read_time(TimeMs& out) {
    Result<std::int64_t> value = reader_.integer();
    if (!value.ok()) return value.status();
    if (*value < 0) return decode_failure(decode_error::invalid_value, "negative time");
    out = *value;
    return Status{};
}

Status EnvelopeDecoder::read_headers() {
    Result<std::uint32_t> count = reader_.map_header();
    if (!count.ok()) return count.status();
    if (*count > limits_.headers_count_max) {
        return decode_failure(decode_error::too_many_keys, "too many headers");
    }
    for (std::uint32_t entry = 0; entry < *count; entry++) {
        std::string key;
        std::string value;
        CHOREO_RETURN_IF_ERROR(read_bounded_string(key, limits_.header_bytes_max, "header key"));
        CHOREO_RETURN_IF_ERROR(read_bounded_string(value, limits_.header_bytes_max, "header value"));
        if (!envelope_.headers.emplace(std::move(key), std::move(value)).second) {
            return decode_failure(decode_error::duplicate_key, "repeated header");
        }
    }
    return Status{};
}

Status EnvelopeDecoder::decode_key(Key key) {
    switch (key) {
        case Key::v: {
            Result<std::int64_t> version = reader_.integer();
            if (!version.ok()) return version.status();
            if (*version != Envelope::format_version) {
                return decode_failure(decode_error::unsupported_version,
                                      "version " + std::to_string(*version));
            }
            return Status{};
        }
        case Key::id: {
            Result<std::string_view> text = reader_.string();
            if (!text.ok()) return text.status();
            Result<MessageId> id = MessageId::parse(*text);
            if (!id.ok()) return decode_failure(decode_error::invalid_id, id.status().message());
            envelope_.id = *id;
            return Status{};
        }
        case Key::kind: {
            CHOREO_RETURN_IF_ERROR(read_bounded_string(envelope_.kind, limits_.kind_bytes_max, "kind"));
            if (envelope_.kind.empty()) return decode_failure(decode_error::invalid_value, "empty kind");
            return Status{};
        }
        case Key::from: return read_address(envelope_.from, true);
        case Key::to: return read_address(envelope_.to, false);
        case Key::corr: return read_bounded_string(envelope_.correlation, limits_.field_bytes_max, "corr");
        case Key::cause: return read_bounded_string(envelope_.causation, limits_.field_bytes_max, "cause");
        case Key::promise: return read_bounded_string(envelope_.promise, limits_.field_bytes_max, "promise");
        case Key::sent_at: return read_time(envelope_.sent_at_ms);
        case Key::deadline: return read_time(envelope_.deadline_ms);
        case Key::headers: return read_headers();
        case Key::body: {
            Result<ByteView> body = reader_.binary();
            if (!body.ok()) return body.status();
            envelope_.body.assign(body->begin(), body->end());
            return Status{};
        }
    }
    CHOREO_UNREACHABLE();
}

}  // namespace

Result<Bytes> encode_envelope(const Envelope& envelope, const MessageLimits& limits) {
    CHOREO_ASSERT(!envelope.id.is_nil());
    CHOREO_ASSERT(!envelope.to.empty());
    CHOREO_RETURN_IF_ERROR(check_field_lengths(envelope, limits));
    if (envelope.body.size() > limits.message_bytes_max) {
        return decode_failure(decode_error::too_large, "body of " +
                                                           std::to_string(envelope.body.size()) + " bytes");
    }
    Bytes out;
    out.reserve(160 + envelope.kind.size() + envelope.body.size());
    MsgpackWriter writer{out};
    writer.map_header(static_cast<std::uint32_t>(key_names.size()));
    writer.string("v");
    writer.unsigned_integer(Envelope::format_version);
    writer.string("id");
    writer.string(envelope.id.to_string());
    writer.string("kind");
    writer.string(envelope.kind);
    writer.string("from");
    writer.string(envelope.from.empty() ? std::string{} : envelope.from.to_string());
    writer.string("to");
    writer.string(envelope.to.to_string());
    writer.string("corr");
    writer.string(envelope.correlation);
    writer.string("cause");
    writer.string(envelope.causation);
    writer.string("promise");
    writer.string(envelope.promise);
    writer.string("sent_at");
    writer.signed_integer(envelope.sent_at_ms);
    writer.string("deadline");
    writer.signed_integer(envelope.deadline_ms);
    writer.string("headers");
    writer.map_header(static_cast<std::uint32_t>(envelope.headers.size()));
    for (const auto& [key, value] : envelope.headers) {
        writer.string(key);
        writer.string(value);
    }
    writer.string("body");
    writer.binary(envelope.body);
    if (out.size() > limits.message_bytes_max) {
        return decode_failure(decode_error::too_large,
                              std::to_string(out.size()) + " bytes encoded, limit " +
                                  std::to_string(limits.message_bytes_max));
    }
    return out;
}

Result<Envelope> decode_envelope(ByteView bytes, const MessageLimits& limits) {
    if (bytes.size() > limits.message_bytes_max) {
        return decode_failure(decode_error::too_large,
                              std::to_string(bytes.size()) + " bytes, limit " +
                                  std::to_string(limits.message_bytes_max));
    }
    EnvelopeDecoder decoder{bytes, limits};
    return decoder.decode();
}

std::optional<MessageId> peek_envelope_id(ByteView bytes, const MessageLimits& limits) {
    if (bytes.size() > limits.message_bytes_max) return std::nullopt;
    detail::MsgpackReader reader{bytes};
    Result<std::uint32_t> keys = reader.map_header();
    if (!keys.ok() || *keys > limits.keys_count_max) return std::nullopt;
    for (std::uint32_t index = 0; index < *keys; index++) {
        Result<std::string_view> key = reader.string();
        if (!key.ok()) return std::nullopt;
        if (*key != "id") {
            if (!reader.skip(limits.nesting_depth_max).ok()) return std::nullopt;
            continue;
        }
        Result<std::string_view> text = reader.string();
        if (!text.ok()) return std::nullopt;
        Result<MessageId> id = MessageId::parse(*text);
        return id.ok() ? std::optional<MessageId>{*id} : std::nullopt;
    }
    return std::nullopt;
}

}  // namespace choreo
