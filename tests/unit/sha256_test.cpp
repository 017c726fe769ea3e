// SHA-256 (choreo/detail/sha256.h) against the FIPS 180-2 / NIST example vectors, and against
// `sha256sum` for messages whose padding lands on a block edge.
#include "choreo/detail/sha256.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <string_view>

namespace choreo::detail {
namespace {

std::string hex_of(const Sha256::Digest& digest) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string text;
    for (std::uint8_t byte : digest) {
        text.push_back(digits[byte >> 4]);
        text.push_back(digits[byte & 0xF]);
    }
    return text;
}

std::string sha256_hex(std::string_view text) { return hex_of(sha256(bytes_of(text))); }

// Hashes `message` fed to update() in pieces of the given sizes, cycled until it is used up.
std::string sha256_hex_in_chunks(ByteView message, std::span<const std::size_t> chunk_sizes) {
    Sha256 hash;
    std::size_t chunk = 0;
    while (!message.empty()) {
        const std::size_t size = std::min(chunk_sizes[chunk % chunk_sizes.size()], message.size());
        hash.update(message.first(size));
        message = message.subspan(size);
        chunk++;
    }
    return hex_of(hash.finish());
}

// --- FIPS 180-2 appendix B and the NIST example vectors -----------------------------------------

TEST(Sha256Test, EmptyMessage) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(hex_of(Sha256{}.finish()), sha256_hex(""));
}

TEST(Sha256Test, OneBlockMessage) {
    EXPECT_EQ(sha256_hex("abc"),
              "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, FourHundredFortyEightBitMessage) {
    // 56 bytes: the length field no longer fits, so padding takes a second block.
    EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Sha256Test, EightHundredNinetySixBitMessage) {
    EXPECT_EQ(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                         "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(Sha256Test, OneMillionAs) {
    const Bytes message(1'000'000, 'a');
    const std::string expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    EXPECT_EQ(hex_of(sha256(message)), expected);
    // Uneven pieces: some fill a partial block, some cross one or several block edges.
    const std::size_t chunk_sizes[] = {1, 7, 63, 64, 65, 3, 127, 128, 1000, 55, 9, 4096};
    EXPECT_EQ(sha256_hex_in_chunks(message, chunk_sizes), expected);
}

// --- padding edges (expected digests computed with sha256sum) -----------------------------------

// 66 distinct-looking bytes; the tests hash its prefixes.
constexpr std::string_view pattern =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123";

TEST(Sha256Test, FiftyFiveBytesFillOneBlockExactly) {  // 55 + 1 padding byte + 8 length bytes
    EXPECT_EQ(sha256_hex(pattern.substr(0, 55)),
              "5886e8a0141eca7afb5c3e2c0fa0e0f11a82a0c705877e28f9be51bd0dc161c0");
}

TEST(Sha256Test, FiftySixBytesSpillIntoASecondBlock) {
    EXPECT_EQ(sha256_hex(pattern.substr(0, 56)),
              "f1523fc3c675ae278fab2e86dc03a43e5b1bb14c66575cc5f2b8d6ed811f1907");
}

TEST(Sha256Test, SixtyThreeBytesLeaveRoomOnlyForThePaddingBit) {
    EXPECT_EQ(sha256_hex(pattern.substr(0, 63)),
              "7df85152c97353fddef1319270bb07fb4f021ef23c15c1cf647d3cb4d5244a66");
}

TEST(Sha256Test, SixtyFourBytesAreOneWholeBlock) {
    EXPECT_EQ(sha256_hex(pattern.substr(0, 64)),
              "751e40d12d17aa2f3bc14a0dff77e199f277a640ac7197e8d37256717cd86cc0");
}

TEST(Sha256Test, SixtyFiveBytesStartASecondBlock) {
    EXPECT_EQ(sha256_hex(pattern.substr(0, 65)),
              "da3794742688b398d482efc0a8ad48b589e2c5fafc8e52f601a8d278e9195161");
}

TEST(Sha256Test, EveryByteValue) {  // bytes above 0x7F must not be sign-extended
    Bytes message(256);
    for (std::size_t index = 0; index < message.size(); index++) {
        message[index] = static_cast<std::uint8_t>(index);
    }
    EXPECT_EQ(hex_of(sha256(message)),
              "40aff2e9d2d8922e47afd4648e6967497158785fbd1da870e7110266bf944880");
}

// --- update() ------------------------------------------------------------------------------------

TEST(Sha256Test, EverySplitInTwoMatchesTheOneShotDigest) {
    Bytes message(200);
    for (std::size_t index = 0; index < message.size(); index++) {
        message[index] = static_cast<std::uint8_t>(index * 37 + 11);
    }
    const ByteView view{message};
    for (std::size_t length = 0; length <= message.size(); length++) {
        const std::string expected = hex_of(sha256(view.first(length)));
        for (std::size_t split = 0; split <= length; split++) {
            Sha256 hash;
            hash.update(view.first(split));
            hash.update(view.subspan(split, length - split));
            ASSERT_EQ(hex_of(hash.finish()), expected) << "length " << length << " split " << split;
        }
    }
}

TEST(Sha256Test, ByteAtATimeMatchesTheOneShotDigest) {
    const std::size_t one[] = {1};
    EXPECT_EQ(sha256_hex_in_chunks(bytes_of(pattern), one), sha256_hex(pattern));
}

TEST(Sha256Test, EmptyUpdatesChangeNothing) {
    Sha256 hash;
    hash.update(ByteView{});
    hash.update(bytes_of("ab"));
    hash.update(ByteView{});
    hash.update(bytes_of("c"));
    EXPECT_EQ(hex_of(hash.finish()), sha256_hex("abc"));
}

TEST(Sha256DeathTest, UpdateAfterFinishAsserts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    Sha256 hash;
    (void)hash.finish();
    EXPECT_DEATH(hash.update(bytes_of("abc")), "assertion failed: !finished_");
}

TEST(Sha256DeathTest, SecondFinishAsserts) {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    Sha256 hash;
    (void)hash.finish();
    EXPECT_DEATH((void)hash.finish(), "assertion failed: !finished_");
}

}  // namespace
}  // namespace choreo::detail
