// The envelope codec (choreo/codec.h, design §5), the msgpack reader under it, and addresses.
//
// Decoding reads untrusted bytes, so besides round trips this file checks that every malformed
// input is refused with its own named reason, that nothing a mutation loop or random garbage can
// produce crashes it, and that maps written by other msgpack writers (other key orders, integer
// widths, extra keys) are accepted.
#include "choreo/codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <initializer_list>
#include <limits>
#include <map>
#include <msgpack.hpp>
#include <string>
#include <vector>

#include "choreo/detail/msgpack_wire.h"
#include "choreo/random.h"

namespace choreo {
namespace {

using detail::MsgpackWriter;

const MessageLimits limits;  // the defaults, as both sides of a choreography use them
constexpr std::string_view id_text = "0190c2a4-1234-7abc-8def-0123456789ab";
constexpr TimeMs sent_at = 1'700'000'000'000;

// --- envelopes ----------------------------------------------------------------------------------

Envelope minimal_envelope() {
    Envelope envelope;
    envelope.id = MessageId::parse(id_text).value();
    envelope.kind = "ping";
    envelope.to = Address::anycast("pong");
    return envelope;
}

Envelope full_envelope() {
    Envelope envelope = minimal_envelope();
    envelope.kind = "payment-completed";
    envelope.from = Address::unicast("payments", "instance-7");
    envelope.to = Address::unicast("orders", "2");
    envelope.correlation = "saga-42";
    envelope.causation = "0190c2a4-0000-7000-8000-000000000001";
    envelope.promise = "execution-9.3";
    envelope.sent_at_ms = sent_at;
    envelope.deadline_ms = sent_at + 60'000;
    envelope.headers = {
        {"trace", "abc"}, {"empty", ""}, {"", "empty key"}, {"unicode", "gr\xc3\xbc\xc3\x9f"}};
    envelope.body = {0, 1, 0, 0xFF, 0, 0xC1, 0};  // zero bytes, and a byte msgpack never uses
    return envelope;
}

Bytes encode(const Envelope& envelope) { return encode_envelope(envelope, limits).value(); }

Bytes pattern_bytes(std::size_t size) {
    Bytes bytes(size);
    for (std::size_t index = 0; index < size; index++) {
        bytes[index] = static_cast<std::uint8_t>(index % 7 == 0 ? 0 : index * 31);
    }
    return bytes;
}

// --- msgpack values, built by hand ---------------------------------------------------------------

Bytes raw(std::initializer_list<std::uint8_t> bytes) { return Bytes(bytes); }

Bytes operator+(Bytes first, const Bytes& second) {
    first.insert(first.end(), second.begin(), second.end());
    return first;
}

// A head byte followed by `value` in `width` big-endian bytes: any integer, length or count.
Bytes wide(std::uint8_t head, std::uint64_t value, int width) {
    Bytes out{head};
    for (int index = width - 1; index >= 0; index--) {
        out.push_back(static_cast<std::uint8_t>(value >> (8 * index)));
    }
    return out;
}

Bytes str(std::string_view text) {
    Bytes out;
    MsgpackWriter{out}.string(text);
    return out;
}

Bytes bin(ByteView bytes) {
    Bytes out;
    MsgpackWriter{out}.binary(bytes);
    return out;
}

Bytes integer(std::int64_t value) {
    Bytes out;
    MsgpackWriter{out}.signed_integer(value);
    return out;
}

Bytes nil() { return raw({0xc0}); }

Bytes array(const std::vector<Bytes>& items) {
    Bytes out;
    MsgpackWriter{out}.array_header(static_cast<std::uint32_t>(items.size()));
    for (const Bytes& item : items) out = out + item;
    return out;
}

// `depth` arrays, each holding the next; the innermost holds nil.
Bytes nested_arrays(std::size_t depth) {
    Bytes out(depth, 0x91);
    out.push_back(0xc0);
    return out;
}

// --- envelope maps, built by hand ----------------------------------------------------------------

struct Entry {
    Bytes key;  // packed, so a test can use a key that is not a string
    Bytes value;
};
using Entries = std::vector<Entry>;

// The six required keys, in an order the encoder never uses.
Entries required_entries() {
    return {{str("body"), bin(bytes_of("hi"))}, {str("sent_at"), integer(sent_at)},
            {str("to"), str("pong")},           {str("kind"), str("ping")},
            {str("id"), str(id_text)},          {str("v"), integer(1)}};
}

Envelope required_entries_envelope() {
    Envelope envelope = minimal_envelope();
    envelope.sent_at_ms = sent_at;
    envelope.body = bytes_of("hi");
    return envelope;
}

// Replaces the value of `key`, or appends the key when absent.
Entries with(Entries entries, std::string_view key, Bytes value) {
    for (Entry& entry : entries) {
        if (entry.key == str(key)) {
            entry.value = std::move(value);
            return entries;
        }
    }
    entries.push_back({str(key), std::move(value)});
    return entries;
}

Entries without(Entries entries, std::string_view key) {
    std::erase_if(entries, [&](const Entry& entry) { return entry.key == str(key); });
    return entries;
}

Bytes map_body(const Entries& entries) {
    Bytes out;
    for (const Entry& entry : entries) out = out + entry.key + entry.value;
    return out;
}

Bytes map_of(const Entries& entries) {
    Bytes out;
    MsgpackWriter{out}.map_header(static_cast<std::uint32_t>(entries.size()));
    return out + map_body(entries);
}

// The required entries with `key` set to `value`, as a map.
Bytes envelope_with(std::string_view key, Bytes value) {
    return map_of(with(required_entries(), key, std::move(value)));
}

Bytes headers_of(const std::vector<std::pair<std::string, Bytes>>& headers) {
    Entries entries;
    for (const auto& [key, value] : headers) entries.push_back({str(key), value});
    return map_of(entries);
}

// --- outcomes ------------------------------------------------------------------------------------

// clang-format off
constexpr std::array<std::string_view, 14> all_reasons = {
    decode_error::too_large,      decode_error::truncated,     decode_error::wrong_type,
    decode_error::missing_key,    decode_error::too_deep,      decode_error::invalid_msgpack,
    decode_error::trailing_bytes, decode_error::duplicate_key, decode_error::too_many_keys,
    decode_error::field_too_long, decode_error::invalid_id,    decode_error::invalid_address,
    decode_error::invalid_value,  decode_error::unsupported_version};
// clang-format on

::testing::AssertionResult failed_with(const Status& status, std::string_view reason) {
    if (status.ok()) return ::testing::AssertionFailure() << "succeeded, expected " << reason;
    if (status.code() != StatusCode::invalid_argument || status.reason() != reason ||
        status.message().empty()) {
        return ::testing::AssertionFailure() << status.to_string() << ", expected " << reason;
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult refused(ByteView bytes, std::string_view reason,
                                   const MessageLimits& bounds = limits) {
    return failed_with(decode_envelope(bytes, bounds).status(), reason);
}

::testing::AssertionResult decodes_to(ByteView bytes, const Envelope& expected) {
    const Result<Envelope> decoded = decode_envelope(bytes, limits);
    if (!decoded.ok()) return ::testing::AssertionFailure() << decoded.status().to_string();
    if (*decoded != expected) {
        return ::testing::AssertionFailure() << "decoded a different envelope";
    }
    return ::testing::AssertionSuccess();
}

::testing::AssertionResult accepted(ByteView bytes) {
    const Result<Envelope> decoded = decode_envelope(bytes, limits);
    if (!decoded.ok()) return ::testing::AssertionFailure() << decoded.status().to_string();
    return ::testing::AssertionSuccess();
}

// =================================================================================================
// Round trips

TEST(CodecRoundTripTest, FullEnvelope) {
    const Envelope envelope = full_envelope();
    EXPECT_TRUE(decodes_to(encode(envelope), envelope));
}

TEST(CodecRoundTripTest, MinimalEnvelope) {
    const Envelope envelope = minimal_envelope();
    const Result<Envelope> decoded = decode_envelope(encode(envelope), limits);
    ASSERT_TRUE(decoded.ok()) << decoded.status().to_string();
    EXPECT_EQ(*decoded, envelope);
    EXPECT_TRUE(decoded->from.empty());
    EXPECT_TRUE(decoded->headers.empty());
    EXPECT_TRUE(decoded->body.empty());
}

TEST(CodecRoundTripTest, BodyOfEveryBinaryWidth) {
    for (std::size_t size : {0u, 1u, 255u, 256u, 65'535u, 65'536u, 300'000u}) {
        Envelope envelope = full_envelope();
        envelope.body = pattern_bytes(size);
        EXPECT_TRUE(decodes_to(encode(envelope), envelope)) << size << " bytes";
    }
}

TEST(CodecRoundTripTest, FieldsAtTheirLimits) {
    Envelope envelope = full_envelope();
    envelope.kind = std::string(limits.kind_bytes_max, 'k');
    envelope.correlation = std::string(limits.field_bytes_max, 'c');
    envelope.causation = std::string(limits.field_bytes_max, 'a');
    envelope.promise = std::string(limits.field_bytes_max, 'p');
    envelope.headers.clear();
    for (std::size_t index = 0; index < limits.headers_count_max; index++) {
        const std::string key = std::to_string(1000 + index);  // 4 bytes, padded to the limit
        envelope.headers[std::string(limits.header_bytes_max - 4, 'h') + key] =
            std::string(limits.header_bytes_max, 'v');
    }
    EXPECT_TRUE(decodes_to(encode(envelope), envelope));
}

TEST(CodecRoundTripTest, BodyFillingTheLimitExactly) {
    Envelope envelope = full_envelope();
    envelope.body.clear();
    const std::size_t without_body = encode(envelope).size() - 2;                // minus "c4 00"
    envelope.body = pattern_bytes(limits.message_bytes_max - without_body - 5);  // bin32 head
    const Result<Bytes> encoded = encode_envelope(envelope, limits);
    ASSERT_TRUE(encoded.ok()) << encoded.status().to_string();
    EXPECT_EQ(encoded->size(), limits.message_bytes_max);
    EXPECT_TRUE(decodes_to(*encoded, envelope));
}

TEST(CodecRoundTripTest, LargestTimes) {
    Envelope envelope = full_envelope();
    envelope.sent_at_ms = std::numeric_limits<TimeMs>::max();
    envelope.deadline_ms = std::numeric_limits<TimeMs>::max() - 1;
    EXPECT_TRUE(decodes_to(encode(envelope), envelope));
}

TEST(CodecEncodeTest, Deterministic) {
    EXPECT_EQ(encode(full_envelope()), encode(full_envelope()));
    Envelope reordered = full_envelope();
    reordered.headers.clear();
    for (const char* key : {"unicode", "", "trace", "empty"}) {
        reordered.headers[key] = full_envelope().headers.at(key);
    }
    EXPECT_EQ(encode(reordered), encode(full_envelope()));
}

Bytes fixstr(std::string_view text) {
    return raw({static_cast<std::uint8_t>(0xa0 | text.size())}) + bytes_of(text);
}

// The exact bytes, written by hand from design §5: a 12-key map, smallest encodings.
TEST(CodecEncodeTest, EncodesTheDocumentedLayout) {
    // clang-format off
    const Bytes expected = raw({0x8c}) +
        fixstr("v") + raw({0x01}) +
        fixstr("id") + raw({0xd9, 36}) + bytes_of(id_text) +
        fixstr("kind") + fixstr("ping") +
        fixstr("from") + fixstr("") +
        fixstr("to") + fixstr("pong") +
        fixstr("corr") + fixstr("") +
        fixstr("cause") + fixstr("") +
        fixstr("promise") + fixstr("") +
        fixstr("sent_at") + raw({0x00}) +
        fixstr("deadline") + raw({0x00}) +
        fixstr("headers") + raw({0x80}) +
        fixstr("body") + raw({0xc4, 0x00});
    // clang-format on
    EXPECT_EQ(encode(minimal_envelope()), expected);
}

// =================================================================================================
// Interop: maps other writers produce

TEST(CodecInteropTest, RequiredKeysInAnotherOrder) {
    EXPECT_TRUE(decodes_to(map_of(required_entries()), required_entries_envelope()));
    Entries reversed = required_entries();
    std::reverse(reversed.begin(), reversed.end());
    EXPECT_TRUE(decodes_to(map_of(reversed), required_entries_envelope()));
}

TEST(CodecInteropTest, AllKeysInAnotherOrder) {
    const Envelope envelope = full_envelope();
    Entries entries = required_entries();
    entries = with(entries, "body", bin(envelope.body));
    entries = with(entries, "sent_at", integer(envelope.sent_at_ms));
    entries = with(entries, "kind", str(envelope.kind));
    entries = with(entries, "to", str("orders/2"));
    entries.insert(entries.begin(),
                   {str("headers"), headers_of({{"trace", str("abc")},
                                                {"empty", str("")},
                                                {"", str("empty key")},
                                                {"unicode", str("gr\xc3\xbc\xc3\x9f")}})});
    entries.insert(entries.begin() + 2, {str("deadline"), integer(envelope.deadline_ms)});
    entries.push_back({str("promise"), str(envelope.promise)});
    entries.push_back({str("from"), str("payments/instance-7")});
    entries.push_back({str("cause"), str(envelope.causation)});
    entries.push_back({str("corr"), str(envelope.correlation)});
    EXPECT_TRUE(decodes_to(map_of(entries), envelope));
}

TEST(CodecInteropTest, SentAtInEveryIntegerWidth) {
    const std::vector<std::pair<Bytes, TimeMs>> cases = {
        {raw({0x2a}), 42},                              // positive fixint
        {wide(0xcc, 200, 1), 200},                      // uint8
        {wide(0xcd, 60'000, 2), 60'000},                // uint16
        {wide(0xce, 4'000'000'000, 4), 4'000'000'000},  // uint32
        {wide(0xcf, sent_at, 8), sent_at},              // uint64
        {wide(0xd0, 100, 1), 100},                      // int8
        {wide(0xd1, 30'000, 2), 30'000},                // int16
        {wide(0xd2, 2'000'000'000, 4), 2'000'000'000},  // int32
        {wide(0xd3, sent_at, 8), sent_at},              // int64
        {wide(0xcf, 0, 8), 0},                          // zero, widely
    };
    for (const auto& [packed, expected] : cases) {
        Envelope envelope = required_entries_envelope();
        envelope.sent_at_ms = expected;
        EXPECT_TRUE(decodes_to(envelope_with("sent_at", packed), envelope))
            << "head byte " << int{packed[0]};
    }
}

TEST(CodecInteropTest, VersionInEveryIntegerWidth) {
    for (std::uint8_t head : {0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3}) {
        const int width = 1 << ((head - 0xcc) % 4);
        const Bytes bytes = envelope_with("v", wide(head, 1, width));
        EXPECT_TRUE(decodes_to(bytes, required_entries_envelope())) << "head byte " << int{head};
    }
}

TEST(CodecInteropTest, StringsBinariesAndMapsInWiderForms) {
    Entries entries = required_entries();
    entries = with(entries, "kind", wide(0xd9, 4, 1) + bytes_of("ping"));      // str8
    entries = with(entries, "to", wide(0xda, 4, 2) + bytes_of("pong"));        // str16
    entries = with(entries, "id", wide(0xdb, 36, 4) + bytes_of(id_text));      // str32
    entries = with(entries, "body", wide(0xc6, 2, 4) + bytes_of("hi"));        // bin32
    entries = with(entries, "headers", wide(0xde, 0, 2));                      // map16
    EXPECT_TRUE(decodes_to(wide(0xdf, entries.size(), 4) + map_body(entries),  // map32
                           required_entries_envelope()));
}

TEST(CodecInteropTest, UppercaseIdAccepted) {
    std::string upper{id_text};
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](char c) { return static_cast<char>(std::toupper(c)); });
    EXPECT_TRUE(decodes_to(envelope_with("id", str(upper)), required_entries_envelope()));
}

// An array holding one value of every msgpack type, containers included.
Bytes every_kind_of_value() {
    const std::vector<Bytes> scalars = {
        nil(),
        raw({0xc2}),
        raw({0xc3}),
        raw({0x7f}),
        raw({0xe0}),
        wide(0xcf, ~0ULL, 8),
        wide(0xd3, 1ULL << 63, 8),
        wide(0xcc, 255, 1),
        wide(0xd1, 0x8000, 2),
        raw({0xca, 0x3f, 0xc0, 0x00, 0x00}),   // float32 1.5
        wide(0xcb, 0x400921FB54442D18ULL, 8),  // float64 pi
    };
    const std::vector<Bytes> extensions = {
        raw({0xd4, 0x01, 0xaa}),           raw({0xd5, 0x02, 1, 2}),
        raw({0xd6, 0xff, 1, 2, 3, 4}),     raw({0xd7, 0xff}) + Bytes(8, 0xc1),
        raw({0xd8, 0x05}) + Bytes(16, 0),  wide(0xc7, 3, 1) + raw({0x07, 1, 2, 3}),
        wide(0xc8, 1, 2) + raw({0x07, 0}), wide(0xc9, 0, 4) + raw({0x07}),
    };
    const std::vector<Bytes> strings = {str("text"), wide(0xdb, 1, 4) + bytes_of("x"),
                                        bin(Bytes{0xc1, 0})};
    const std::vector<Bytes> containers = {
        map_of({{str("nested"), array({integer(1), map_of({})})}, {integer(7), nil()}}),
        wide(0xdc, 1, 2) + nil(),
        wide(0xdd, 0, 4),
        wide(0xde, 1, 2) + nil() + nil(),
        nested_arrays(10),
    };
    return array({array(scalars), array(extensions), array(strings), array(containers)});
}

TEST(CodecInteropTest, UnknownKeysOfEveryTypeIgnored) {
    Entries entries = required_entries();
    entries.insert(entries.begin(), {str("x-everything"), every_kind_of_value()});
    entries.insert(entries.begin() + 3, {str("x-huge-unsigned"), wide(0xcf, ~0ULL, 8)});
    entries.push_back({str("x-float"), wide(0xcb, 0x3FF8000000000000ULL, 8)});
    entries.push_back({str("x-ext"), raw({0xd6, 0xff, 0, 0, 0, 1})});  // a msgpack timestamp
    entries.push_back({str("x-map"), map_of({{str("a"), array({nil(), str("b")})}})});
    entries.push_back({str(""), nil()});
    EXPECT_TRUE(decodes_to(map_of(entries), required_entries_envelope()));
}

TEST(CodecInteropTest, UnknownUnsigned64Ignored) {
    // Any msgpack integer is a valid value under a key this version does not know.
    const Bytes bytes = envelope_with("x-count", wide(0xcf, ~0ULL, 8));
    EXPECT_TRUE(decodes_to(bytes, required_entries_envelope()));
}

TEST(CodecInteropTest, UnknownValueNestedToTheLimit) {
    const Bytes bytes = envelope_with("x-deep", nested_arrays(limits.nesting_depth_max));
    EXPECT_TRUE(decodes_to(bytes, required_entries_envelope()));
}

TEST(CodecInteropTest, OptionalKeysMayBeAbsentOrEmpty) {
    EXPECT_TRUE(accepted(envelope_with("from", str(""))));
    EXPECT_TRUE(accepted(envelope_with("headers", map_of({}))));
    EXPECT_TRUE(accepted(envelope_with("deadline", integer(0))));
    EXPECT_TRUE(accepted(envelope_with("body", bin(Bytes{}))));
}

// msgpack-c is an independent implementation: it must read what we write...
TEST(CodecInteropTest, MsgpackCReadsOurEncoding) {
    const Bytes bytes = encode(full_envelope());
    const msgpack::object_handle handle =
        msgpack::unpack(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    const msgpack::object& root = handle.get();
    ASSERT_EQ(root.type, msgpack::type::MAP);
    std::map<std::string, msgpack::object> fields;
    for (std::uint32_t index = 0; index < root.via.map.size; index++) {
        const msgpack::object_kv& entry = root.via.map.ptr[index];
        fields[entry.key.as<std::string>()] = entry.val;
    }
    EXPECT_EQ(fields.size(), 12u);
    EXPECT_EQ(fields.at("v").as<int>(), 1);
    EXPECT_EQ(fields.at("id").as<std::string>(), id_text);
    EXPECT_EQ(fields.at("to").as<std::string>(), "orders/2");
    EXPECT_EQ(fields.at("from").as<std::string>(), "payments/instance-7");
    EXPECT_EQ(fields.at("sent_at").as<std::int64_t>(), sent_at);
    EXPECT_EQ((fields.at("headers").as<std::map<std::string, std::string>>()),
              full_envelope().headers);
    ASSERT_EQ(fields.at("body").type, msgpack::type::BIN);
    const auto body = fields.at("body").as<std::vector<char>>();
    EXPECT_EQ(Bytes(body.begin(), body.end()), full_envelope().body);
}

// ...and we must read what it writes, extra keys and forced widths included.
TEST(CodecInteropTest, WeReadMsgpackCEncoding) {
    msgpack::sbuffer buffer;
    msgpack::packer<msgpack::sbuffer> packer{buffer};
    packer.pack_map(8);
    packer.pack(std::string("body")).pack_bin(3).pack_bin_body("\0\1\0", 3);
    packer.pack(std::string("x-floats")).pack(std::vector<double>{1.5, -2.25});
    packer.pack(std::string("sent_at")).pack_fix_uint32(4'000'000'000u);
    packer.pack(std::string("headers")).pack(std::map<std::string, std::string>{{"k", "v"}});
    packer.pack(std::string("v")).pack_fix_uint8(1);
    packer.pack(std::string("to")).pack(std::string("pong/1"));
    packer.pack(std::string("kind")).pack(std::string("ping"));
    packer.pack(std::string("id")).pack(std::string(id_text));
    Envelope expected = minimal_envelope();
    expected.to = Address::unicast("pong", "1");
    expected.sent_at_ms = 4'000'000'000;
    expected.headers = {{"k", "v"}};
    expected.body = {0, 1, 0};
    const ByteView bytes{reinterpret_cast<const std::uint8_t*>(buffer.data()), buffer.size()};
    EXPECT_TRUE(decodes_to(bytes, expected));
}

// =================================================================================================
// Every malformed class has its own reason

TEST(CodecRefuseTest, TooLargeInput) {
    const Bytes bytes = encode(minimal_envelope());
    MessageLimits small = limits;
    small.message_bytes_max = bytes.size() - 1;
    EXPECT_TRUE(refused(bytes, decode_error::too_large, small));
    small.message_bytes_max = bytes.size();
    EXPECT_TRUE(refused(bytes + raw({0xc0}), decode_error::too_large, small));
    EXPECT_TRUE(refused(Bytes(limits.message_bytes_max + 1, 0xc1), decode_error::too_large));
}

TEST(CodecRefuseTest, TooLargeToEncode) {
    Envelope envelope = minimal_envelope();
    envelope.body.assign(limits.message_bytes_max + 1, 0);  // the body alone is over
    EXPECT_TRUE(failed_with(encode_envelope(envelope, limits).status(), decode_error::too_large));
    envelope.body.assign(limits.message_bytes_max, 0);  // the body fits, the envelope not
    EXPECT_TRUE(failed_with(encode_envelope(envelope, limits).status(), decode_error::too_large));
}

TEST(CodecRefuseTest, OneByteOverTheLimitToEncode) {
    Envelope envelope = full_envelope();
    envelope.body.clear();
    const std::size_t without_body = encode(envelope).size() - 2;
    envelope.body = pattern_bytes(limits.message_bytes_max - without_body - 5 + 1);
    EXPECT_TRUE(failed_with(encode_envelope(envelope, limits).status(), decode_error::too_large));
}

void expect_every_prefix_truncated(const Bytes& bytes) {
    for (std::size_t length = 0; length < bytes.size(); length++) {
        ASSERT_TRUE(refused(ByteView(bytes).first(length), decode_error::truncated))
            << "prefix of " << length << " of " << bytes.size() << " bytes";
    }
}

TEST(CodecRefuseTest, EveryPrefixOfAFullEnvelopeTruncated) {
    Envelope envelope = full_envelope();
    envelope.body = pattern_bytes(300);  // a bin16 body
    expect_every_prefix_truncated(encode(envelope));
}

TEST(CodecRefuseTest, EveryPrefixOfAMinimalEnvelopeTruncated) {
    expect_every_prefix_truncated(encode(minimal_envelope()));
}

TEST(CodecRefuseTest, EveryPrefixOfAMapWithUnknownKeysTruncated) {
    expect_every_prefix_truncated(envelope_with("x", every_kind_of_value()));
}

TEST(CodecRefuseTest, WrongTypeOfAKnownKey) {
    const std::vector<std::pair<std::string_view, Bytes>> cases = {
        {"id", integer(5)},
        {"body", str("hi")},
        {"headers", array({})},
        {"kind", nil()},
        {"to", integer(1)},
        {"from", raw({0xc3})},
        {"corr", array({})},
        {"cause", bin(Bytes{})},
        {"promise", integer(0)},
        {"sent_at", str("now")},
        {"sent_at", wide(0xcb, 0, 8)},
        {"deadline", nil()},
        {"v", str("1")},
        {"v", raw({0xc2})},
        {"id", bin(bytes_of(id_text))},
    };
    for (const auto& [key, value] : cases) {
        EXPECT_TRUE(refused(envelope_with(key, value), decode_error::wrong_type)) << key;
    }
}

TEST(CodecRefuseTest, WrongTypeInsideHeaders) {
    for (const Bytes& headers : {map_of({{str("k"), integer(1)}}), map_of({{integer(1), str("v")}}),
                                 map_of({{str("k"), map_of({})}})}) {
        EXPECT_TRUE(refused(envelope_with("headers", headers), decode_error::wrong_type));
    }
}

TEST(CodecRefuseTest, WrongTypeAtTheTop) {
    std::vector<Bytes> pairs;
    for (const Entry& entry : required_entries()) pairs.push_back(array({entry.key, entry.value}));
    EXPECT_TRUE(refused(array(pairs), decode_error::wrong_type));
    EXPECT_TRUE(refused(nil(), decode_error::wrong_type));
    EXPECT_TRUE(refused(str("v"), decode_error::wrong_type));
    EXPECT_TRUE(refused(integer(1), decode_error::wrong_type));
}

TEST(CodecRefuseTest, KeyThatIsNotAString) {
    Entries entries = required_entries();
    entries.push_back({integer(1), integer(1)});
    EXPECT_TRUE(refused(map_of(entries), decode_error::wrong_type));
    entries.back() = {bin(bytes_of("v")), integer(1)};
    EXPECT_TRUE(refused(map_of(entries), decode_error::wrong_type));
}

TEST(CodecRefuseTest, IntegerTooBigForInt64) {
    const Bytes bytes = envelope_with("sent_at", wide(0xcf, 1ULL << 63, 8));
    EXPECT_TRUE(refused(bytes, decode_error::wrong_type));
}

TEST(CodecRefuseTest, EachRequiredKeyMissing) {
    for (std::string_view key : {"v", "id", "kind", "to", "sent_at", "body"}) {
        const Result<Envelope> decoded =
            decode_envelope(map_of(without(required_entries(), key)), limits);
        EXPECT_TRUE(failed_with(decoded.status(), decode_error::missing_key)) << key;
        EXPECT_NE(decoded.status().message().find("'" + std::string(key) + "'"), std::string::npos)
            << decoded.status().message();
    }
    EXPECT_TRUE(refused(map_of({}), decode_error::missing_key));
}

TEST(CodecRefuseTest, UnknownValueTooDeep) {
    const Bytes arrays = nested_arrays(limits.nesting_depth_max + 1);
    EXPECT_TRUE(refused(envelope_with("x", arrays), decode_error::too_deep));
    Bytes maps;
    for (std::size_t level = 0; level <= limits.nesting_depth_max; level++) {
        maps = maps + raw({0x81, 0xa1, 'k'});  // {"k": ...}
    }
    EXPECT_TRUE(refused(envelope_with("x", maps + nil()), decode_error::too_deep));
}

TEST(CodecRefuseTest, TooDeepFollowsTheLimit) {
    MessageLimits flat = limits;
    flat.nesting_depth_max = 0;
    EXPECT_TRUE(refused(envelope_with("x", array({})), decode_error::too_deep, flat));
    EXPECT_TRUE(refused(envelope_with("x", map_of({})), decode_error::too_deep, flat));
    EXPECT_TRUE(decode_envelope(envelope_with("x", str("flat")), flat).ok());
}

TEST(CodecRefuseTest, InvalidMsgpackByte) {
    EXPECT_TRUE(refused(envelope_with("x", raw({0xc1})), decode_error::invalid_msgpack));
    EXPECT_TRUE(refused(envelope_with("x", array({integer(1), raw({0xc1})})),
                        decode_error::invalid_msgpack));
    EXPECT_TRUE(refused(envelope_with("x", raw({0x93, 0x91, 0x91, 0xc1, 0xc0, 0xc0})),
                        decode_error::invalid_msgpack));
}

TEST(CodecRefuseTest, TrailingBytes) {
    const Bytes bytes = encode(minimal_envelope());
    EXPECT_TRUE(refused(bytes + raw({0xc0}), decode_error::trailing_bytes));
    EXPECT_TRUE(refused(bytes + raw({0x00}), decode_error::trailing_bytes));
    EXPECT_TRUE(refused(bytes + bytes, decode_error::trailing_bytes));
}

TEST(CodecRefuseTest, DuplicateKey) {
    for (const Entry& repeated : required_entries()) {
        Entries entries = required_entries();
        entries.push_back(repeated);
        EXPECT_TRUE(refused(map_of(entries), decode_error::duplicate_key));
    }
    Entries with_from = with(required_entries(), "from", str(""));
    with_from.push_back({str("from"), str("")});
    EXPECT_TRUE(refused(map_of(with_from), decode_error::duplicate_key));
}

TEST(CodecRefuseTest, DuplicateHeader) {
    const Bytes headers = headers_of({{"trace", str("1")}, {"trace", str("2")}});
    EXPECT_TRUE(refused(envelope_with("headers", headers), decode_error::duplicate_key));
}

Entries with_unknown_keys(std::size_t keys_count) {
    Entries entries = required_entries();
    for (std::size_t index = 0; entries.size() < keys_count; index++) {
        entries.push_back({str("x" + std::to_string(index)), nil()});
    }
    return entries;
}

TEST(CodecRefuseTest, TooManyKeys) {
    EXPECT_TRUE(accepted(map_of(with_unknown_keys(limits.keys_count_max))));
    EXPECT_TRUE(
        refused(map_of(with_unknown_keys(limits.keys_count_max + 1)), decode_error::too_many_keys));
}

TEST(CodecRefuseTest, FieldTooLong) {
    const std::string long_field(limits.field_bytes_max + 1, 'f');
    const Bytes long_header =
        headers_of({{std::string(limits.header_bytes_max + 1, 'k'), str("v")}});
    const Bytes long_value =
        headers_of({{"k", str(std::string(limits.header_bytes_max + 1, 'v'))}});
    EXPECT_TRUE(refused(envelope_with("kind", str(std::string(limits.kind_bytes_max + 1, 'k'))),
                        decode_error::field_too_long));
    for (std::string_view key : {"corr", "cause", "promise"}) {
        EXPECT_TRUE(refused(envelope_with(key, str(long_field)), decode_error::field_too_long))
            << key;
    }
    EXPECT_TRUE(refused(envelope_with("headers", long_header), decode_error::field_too_long));
    EXPECT_TRUE(refused(envelope_with("headers", long_value), decode_error::field_too_long));
}

TEST(CodecRefuseTest, TooManyHeaders) {
    std::vector<std::pair<std::string, Bytes>> headers;
    for (std::size_t index = 0; index <= limits.headers_count_max; index++) {
        headers.emplace_back("h" + std::to_string(index), str(""));
    }
    EXPECT_TRUE(
        refused(envelope_with("headers", headers_of(headers)), decode_error::too_many_keys));
    headers.pop_back();
    EXPECT_TRUE(accepted(envelope_with("headers", headers_of(headers))));
}

TEST(CodecRefuseTest, FieldTooLongToEncode) {
    const auto refused_to_encode = [](void (*change)(Envelope&)) {
        Envelope envelope = full_envelope();
        change(envelope);
        return failed_with(encode_envelope(envelope, limits).status(),
                           decode_error::field_too_long);
    };
    EXPECT_TRUE(
        refused_to_encode([](Envelope& e) { e.kind.assign(limits.kind_bytes_max + 1, 'k'); }));
    EXPECT_TRUE(refused_to_encode(
        [](Envelope& e) { e.correlation.assign(limits.field_bytes_max + 1, 'c'); }));
    EXPECT_TRUE(refused_to_encode(
        [](Envelope& e) { e.causation.assign(limits.field_bytes_max + 1, 'c'); }));
    EXPECT_TRUE(
        refused_to_encode([](Envelope& e) { e.promise.assign(limits.field_bytes_max + 1, 'p'); }));
    EXPECT_TRUE(refused_to_encode(
        [](Envelope& e) { e.headers["k"].assign(limits.header_bytes_max + 1, 'v'); }));
    EXPECT_TRUE(refused_to_encode(
        [](Envelope& e) { e.headers[std::string(limits.header_bytes_max + 1, 'k')]; }));
}

TEST(CodecRefuseTest, TooManyHeadersToEncode) {
    Envelope envelope = full_envelope();
    for (std::size_t index = 0; envelope.headers.size() <= limits.headers_count_max; index++) {
        envelope.headers["h" + std::to_string(index)] = "v";
    }
    EXPECT_TRUE(
        failed_with(encode_envelope(envelope, limits).status(), decode_error::too_many_keys));
    envelope.headers.erase(envelope.headers.begin());
    EXPECT_TRUE(encode_envelope(envelope, limits).ok());
}

TEST(CodecRefuseTest, UnsupportedVersion) {
    for (const Bytes& version :
         {integer(2), integer(0), integer(-1), wide(0xcc, 255, 1), wide(0xd3, 1ULL << 40, 8)}) {
        EXPECT_TRUE(refused(envelope_with("v", version), decode_error::unsupported_version));
    }
}

TEST(CodecRefuseTest, InvalidId) {
    for (std::string_view id :
         {"not-a-uuid", "00000000-0000-0000-0000-000000000000", "",
          "0190c2a4-1234-7abc-8def-0123456789ax", "0190c2a4+1234-7abc-8def-0123456789ab",
          "0190c2a4-1234-7abc-8def-0123456789ab "}) {
        EXPECT_TRUE(refused(envelope_with("id", str(id)), decode_error::invalid_id)) << id;
    }
}

TEST(CodecRefuseTest, InvalidToAddress) {
    const std::string long_name(Address::name_bytes_max + 1, 'a');
    for (const std::string& to : {std::string("bad name!"), std::string("a/b/c"), std::string(""),
                                  std::string("a/"), std::string("/b"), std::string("/"), long_name,
                                  "orders/" + long_name, std::string("caf\xc3\xa9")}) {
        EXPECT_TRUE(refused(envelope_with("to", str(to)), decode_error::invalid_address)) << to;
    }
}

TEST(CodecRefuseTest, InvalidFromAddress) {
    for (std::string_view from : {"bad name!", "a/b/c", "a/", "/"}) {
        EXPECT_TRUE(refused(envelope_with("from", str(from)), decode_error::invalid_address))
            << from;
    }
}

TEST(CodecRefuseTest, InvalidValue) {
    EXPECT_TRUE(refused(envelope_with("sent_at", integer(-1)), decode_error::invalid_value));
    EXPECT_TRUE(
        refused(envelope_with("sent_at", wide(0xd3, 1ULL << 63, 8)), decode_error::invalid_value));
    EXPECT_TRUE(
        refused(envelope_with("sent_at", wide(0xd0, 0x80, 1)), decode_error::invalid_value));
    EXPECT_TRUE(refused(envelope_with("deadline", integer(-5)), decode_error::invalid_value));
    EXPECT_TRUE(refused(envelope_with("kind", str("")), decode_error::invalid_value));
}

TEST(CodecRefuseTest, InvalidValueToEncode) {
    // The encoder refuses what the receiver would refuse, with the receiver's reason.
    Envelope envelope = full_envelope();
    envelope.kind.clear();
    EXPECT_TRUE(
        failed_with(encode_envelope(envelope, limits).status(), decode_error::invalid_value));
    envelope = full_envelope();
    envelope.sent_at_ms = -1;
    EXPECT_TRUE(
        failed_with(encode_envelope(envelope, limits).status(), decode_error::invalid_value));
    envelope = full_envelope();
    envelope.deadline_ms = -1;
    EXPECT_TRUE(
        failed_with(encode_envelope(envelope, limits).status(), decode_error::invalid_value));
}

// =================================================================================================
// Lying lengths fail fast: no allocation, no loop over the claimed size

TEST(CodecLyingLengthTest, UnderAnUnknownKey) {
    for (const Bytes& lie :
         {wide(0xdb, 0xFFFFFFFF, 4), wide(0xc6, 0xFFFFFFFF, 4), wide(0xdd, 0xFFFFFFFF, 4),
          wide(0xdf, 0xFFFFFFFF, 4), wide(0xc9, 0xFFFFFFFF, 4) + raw({0x01}), wide(0xdc, 0xFFFF, 2),
          wide(0xde, 0xFFFF, 2)}) {
        EXPECT_TRUE(refused(envelope_with("x", lie), decode_error::truncated))
            << "head byte " << int{lie[0]};
    }
}

TEST(CodecLyingLengthTest, InKnownFields) {
    const Bytes str32 = wide(0xdb, 0xFFFFFFFF, 4) + bytes_of("short");
    for (std::string_view key : {"id", "kind", "to", "from", "corr"}) {
        EXPECT_TRUE(refused(envelope_with(key, str32), decode_error::truncated)) << key;
    }
    const Bytes bin32 = wide(0xc6, 0xFFFFFFFF, 4) + bytes_of("short");
    EXPECT_TRUE(refused(envelope_with("body", bin32), decode_error::truncated));
}

TEST(CodecLyingLengthTest, MapCountsMeetTheirLimitsFirst) {
    const Bytes top = wide(0xdf, 0xFFFFFFFF, 4) + map_body(required_entries());
    EXPECT_TRUE(refused(top, decode_error::too_many_keys));
    const Bytes headers = wide(0xdf, 0xFFFFFFFF, 4) + str("k") + str("v");
    EXPECT_TRUE(refused(envelope_with("headers", headers), decode_error::too_many_keys));
}

TEST(CodecLyingLengthTest, MapCountsWithoutLimitsAreTruncated) {
    MessageLimits unbounded = limits;
    unbounded.keys_count_max = std::numeric_limits<std::size_t>::max();
    unbounded.headers_count_max = std::numeric_limits<std::size_t>::max();
    const Bytes top = wide(0xdf, 0xFFFFFFFF, 4) + map_body(required_entries());
    EXPECT_TRUE(refused(top, decode_error::truncated, unbounded));
    const Bytes headers = wide(0xdf, 0xFFFFFFFF, 4) + str("k") + str("v");
    EXPECT_TRUE(refused(envelope_with("headers", headers), decode_error::truncated, unbounded));
}

// =================================================================================================
// Robustness: mutations and garbage never crash and always say why

// Empty when the outcome is acceptable: refused with a known reason, or accepted and stable
// under re-encoding. Otherwise a description of what went wrong.
std::string check_outcome(ByteView bytes, std::map<std::string, int>& reasons) {
    const Result<Envelope> decoded = decode_envelope(bytes, limits);
    if (!decoded.ok()) {
        const Status& status = decoded.status();
        reasons[status.reason()]++;
        const bool known =
            std::find(all_reasons.begin(), all_reasons.end(), status.reason()) != all_reasons.end();
        if (status.code() != StatusCode::invalid_argument || !known) {
            return "refused with " + status.to_string();
        }
        return {};
    }
    reasons["ok"]++;
    const Result<Bytes> again = encode_envelope(*decoded, limits);
    if (!again.ok()) return "accepted but not re-encodable: " + again.status().to_string();
    const Result<Envelope> back = decode_envelope(*again, limits);
    if (!back.ok() || *back != *decoded) return "re-encoding changed the envelope";
    return {};
}

constexpr std::array<std::uint8_t, 20> interesting_bytes = {
    0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0xa0, 0xbf, 0xc0, 0xc1,
    0xc4, 0xc6, 0xc9, 0xcf, 0xd3, 0xd9, 0xdb, 0xdd, 0xdf, 0xff};

std::uint8_t random_byte(Random& random) {
    if (random.chance(1, 2)) return interesting_bytes[random.below(interesting_bytes.size())];
    return static_cast<std::uint8_t>(random.next_u64());
}

void mutate_once(Bytes& bytes, Random& random) {
    const auto at = [&](std::size_t position) {
        return bytes.begin() + static_cast<std::ptrdiff_t>(position);
    };
    const std::size_t position = bytes.empty() ? 0 : random.below(bytes.size());
    switch (bytes.empty() ? 2 : random.below(5)) {
        case 0:
            bytes[position] ^= static_cast<std::uint8_t>(1u << random.below(8));
            break;
        case 1:
            bytes[position] = random_byte(random);
            break;
        case 2:
            bytes.insert(at(random.below(bytes.size() + 1)), random_byte(random));
            break;
        case 3:
            bytes.erase(at(position));
            break;
        default: {  // copy a short run of bytes to another place
            const std::size_t length =
                std::min<std::size_t>(1 + random.below(8), bytes.size() - position);
            const Bytes run(at(position), at(position + length));
            bytes.insert(at(random.below(bytes.size() + 1)), run.begin(), run.end());
        }
    }
}

std::vector<Bytes> mutation_seeds() {
    Envelope with_body = full_envelope();
    with_body.body = pattern_bytes(40);
    return {encode(full_envelope()), encode(minimal_envelope()), encode(with_body),
            envelope_with("x", every_kind_of_value()), map_of(required_entries())};
}

struct LoopOutcome {
    std::map<std::string, int> reasons;
    int bad = 0;
    std::string first_bad;
};

void run_mutations(std::uint64_t seed, int iterations, LoopOutcome& outcome) {
    const std::vector<Bytes> seeds = mutation_seeds();
    SeededRandom random{seed};
    for (int iteration = 0; iteration < iterations; iteration++) {
        Bytes bytes = seeds[random.below(seeds.size())];
        const std::uint64_t mutations = 1 + random.below(4);
        for (std::uint64_t index = 0; index < mutations; index++) mutate_once(bytes, random);
        const std::string problem = check_outcome(bytes, outcome.reasons);
        if (!problem.empty() && outcome.bad++ == 0) {
            outcome.first_bad = problem + " (reproduce: --seed " + std::to_string(seed) +
                                ", iteration " + std::to_string(iteration) + ")";
        }
    }
}

TEST(CodecRobustnessTest, MutatedEncodings) {
    LoopOutcome outcome;
    for (std::uint64_t seed : {1, 2, 3, 4}) run_mutations(seed, 50'000, outcome);  // 200,000 in all
    EXPECT_EQ(outcome.bad, 0) << outcome.first_bad;
    EXPECT_GT(outcome.reasons["ok"], 1'000);  // the loop also reaches the accepting paths
    for (std::string_view reason :
         {decode_error::truncated, decode_error::wrong_type, decode_error::invalid_id,
          decode_error::trailing_bytes, decode_error::invalid_address,
          decode_error::invalid_msgpack, decode_error::missing_key}) {
        EXPECT_GT(outcome.reasons[std::string(reason)], 0) << reason << " never reached";
    }
}

TEST(CodecRobustnessTest, RandomGarbage) {
    LoopOutcome outcome;
    SeededRandom random{2024};
    for (int iteration = 0; iteration < 50'000; iteration++) {
        Bytes bytes(random.below(300));
        for (std::uint8_t& byte : bytes) byte = random_byte(random);
        if (iteration % 2 == 0 && !bytes.empty()) {  // half of them look like a small map
            bytes[0] = static_cast<std::uint8_t>(0x80 | random.below(16));
        }
        const std::string problem = check_outcome(bytes, outcome.reasons);
        if (!problem.empty() && outcome.bad++ == 0) {
            outcome.first_bad = problem + " at " + std::to_string(iteration);
        }
    }
    EXPECT_EQ(outcome.bad, 0) << outcome.first_bad;
    EXPECT_GT(outcome.reasons[std::string(decode_error::truncated)], 0);
    EXPECT_GT(outcome.reasons[std::string(decode_error::wrong_type)], 0);
}

// =================================================================================================
// Addresses

TEST(AddressTest, ValidNames) {
    for (std::string_view name : {"orders", "a", "Z", "0", "order-service_v2.1", "...", "-_-"}) {
        EXPECT_TRUE(Address::valid_name(name)) << name;
    }
    EXPECT_TRUE(Address::valid_name(std::string(Address::name_bytes_max, 'n')));
}

TEST(AddressTest, InvalidNames) {
    for (std::string_view name :
         {"", "a b", "a/b", "a@b", "a:b", "a!", "caf\xc3\xa9", "tab\t", "*"}) {
        EXPECT_FALSE(Address::valid_name(name)) << name;
    }
    EXPECT_FALSE(Address::valid_name(std::string(Address::name_bytes_max + 1, 'n')));
    EXPECT_FALSE(Address::valid_name(std::string_view("a\0b", 3)));
}

TEST(AddressTest, ParseAnycast) {
    const Result<Address> address = Address::parse("orders");
    ASSERT_TRUE(address.ok());
    EXPECT_EQ(address->service(), "orders");
    EXPECT_TRUE(address->instance().empty());
    EXPECT_FALSE(address->is_unicast());
    EXPECT_FALSE(address->empty());
    EXPECT_EQ(address->to_string(), "orders");
    EXPECT_EQ(*address, Address::anycast("orders"));
}

TEST(AddressTest, ParseUnicast) {
    const Result<Address> address = Address::parse("orders/2");
    ASSERT_TRUE(address.ok());
    EXPECT_EQ(address->service(), "orders");
    EXPECT_EQ(address->instance(), "2");
    EXPECT_TRUE(address->is_unicast());
    EXPECT_EQ(address->to_string(), "orders/2");
    EXPECT_EQ(*address, Address::unicast("orders", "2"));
    EXPECT_EQ(address->service_address(), Address::anycast("orders"));
}

TEST(AddressTest, ParseRejects) {
    const std::string long_name(Address::name_bytes_max + 1, 'x');
    for (const std::string& text :
         {std::string(""), std::string("/"), std::string("a/"), std::string("/b"),
          std::string("a/b/c"), std::string("a//b"), std::string("bad name"), std::string("a/b c"),
          long_name, "a/" + long_name, long_name + "/a"}) {
        const Result<Address> address = Address::parse(text);
        EXPECT_TRUE(failed_with(address.status(), decode_error::invalid_address)) << text;
    }
}

TEST(AddressTest, NamesOfExactlyTheLimit) {
    const std::string name(Address::name_bytes_max, 'x');
    const Result<Address> address = Address::parse(name + "/" + name);
    ASSERT_TRUE(address.ok());
    EXPECT_EQ(address->to_string().size(), 2 * Address::name_bytes_max + 1);
}

TEST(AddressTest, TextRoundTrip) {
    for (const Address& address :
         {Address::anycast("a"), Address::unicast("svc", "i-1"), Address::anycast("x.y")}) {
        const Result<Address> parsed = Address::parse(address.to_string());
        ASSERT_TRUE(parsed.ok());
        EXPECT_EQ(*parsed, address);
    }
}

TEST(PeekEnvelopeIdTest, FindsTheIdWithoutDecodingTheRest) {
    const Envelope envelope = full_envelope();
    EXPECT_EQ(peek_envelope_id(encode(envelope), limits), envelope.id);
    // Any key order: the id last, after values of every shape.
    Bytes out;
    MsgpackWriter writer{out};
    writer.map_header(3);
    writer.string("headers");
    writer.map_header(1);
    writer.string("a");
    writer.string("b");
    writer.string("unknown");
    writer.array_header(2);
    writer.unsigned_integer(1);
    writer.string("x");
    writer.string("id");
    writer.string(id_text);
    EXPECT_EQ(peek_envelope_id(out, limits), MessageId::parse(id_text).value());
}

TEST(PeekEnvelopeIdTest, NothingForBytesWithoutAValidId) {
    EXPECT_FALSE(peek_envelope_id(raw({}), limits).has_value());
    EXPECT_FALSE(peek_envelope_id(raw({0xc1, 0x00}), limits).has_value());
    EXPECT_FALSE(peek_envelope_id(raw({0x80}), limits).has_value());  // an empty map
    Bytes out;
    MsgpackWriter writer{out};
    writer.map_header(1);
    writer.string("id");
    writer.string("not-a-uuid");
    EXPECT_FALSE(peek_envelope_id(out, limits).has_value());
    const Bytes whole = encode(full_envelope());
    EXPECT_FALSE(peek_envelope_id(ByteView(whole).first(10), limits).has_value()) << "cut inside the id";
}

TEST(AddressTest, DefaultIsEmpty) {
    const Address address;
    EXPECT_TRUE(address.empty());
    EXPECT_FALSE(address.is_unicast());
    EXPECT_EQ(address.to_string(), "");
}

TEST(AddressTest, OrderingIsByServiceThenInstance) {
    EXPECT_LT(Address::anycast("a"), Address::anycast("b"));
    EXPECT_LT(Address::anycast("a"), Address::unicast("a", "1"));
    EXPECT_LT(Address::unicast("a", "1"), Address::unicast("a", "2"));
}

TEST(AddressDeathTest, FactoriesAssertValidNames) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_DEATH((void)Address::anycast("bad name"), "assertion failed: valid_name\\(service\\)");
    EXPECT_DEATH((void)Address::unicast("ok", "a/b"), "assertion failed: valid_name\\(instance\\)");
}

}  // namespace
}  // namespace choreo
