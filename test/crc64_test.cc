// Crc64 (erasure/codec.h) against a bitwise CRC-64/XZ reference, at any length and alignment.
#include <gtest/gtest.h>

#include "test/codec_test_util.h"

namespace ft::erasure::codec_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Crc64

// Bitwise CRC-64/XZ (reflected ECMA-182 polynomial, inverted in and out).
uint64_t BitwiseCrc64(const uint8_t* data, size_t bytes, uint64_t seed) {
  uint64_t crc = ~seed;
  for (size_t i = 0; i < bytes; ++i) {
    crc ^= data[i];
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xC96C5795D7870F42ULL & (0 - (crc & 1)));
  }
  return ~crc;
}

TEST(Crc64Test, CheckValue) {
  const char* text = "123456789";
  EXPECT_EQ(Crc64(text, 9), 0x995dc9bbdf1939faULL);
  EXPECT_EQ(BitwiseCrc64(reinterpret_cast<const uint8_t*>(text), 9, 0), 0x995dc9bbdf1939faULL);
}

TEST(Crc64Test, EmptyInput) {
  const uint8_t byte = 0;
  EXPECT_EQ(Crc64(&byte, 0), 0u);
  EXPECT_EQ(Crc64(&byte, 0, 0x1234567890abcdefULL), 0x1234567890abcdefULL);
}

TEST(Crc64Test, SeedContinuesAcrossPieces) {
  const char* text = "123456789";
  for (size_t split = 0; split <= 9; ++split) {
    EXPECT_EQ(Crc64(text + split, 9 - split, Crc64(text, split)), 0x995dc9bbdf1939faULL)
        << "split at " << split;
  }
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> data = RandomBytes(rng, 5000);
  const uint64_t whole = Crc64(data.data(), data.size());
  for (int trial = 0; trial < 50; ++trial) {
    const size_t split = std::uniform_int_distribution<size_t>(0, data.size())(rng);
    const uint64_t first = Crc64(data.data(), split);
    EXPECT_EQ(Crc64(data.data() + split, data.size() - split, first), whole) << "split " << split;
  }
}

TEST(Crc64Test, MatchesBitwiseReferenceAtAnyLengthAndAlignment) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  const std::vector<uint8_t> data = RandomBytes(rng, 4200);
  for (size_t length :
       {size_t{1}, size_t{7}, size_t{8}, size_t{15}, size_t{16}, size_t{17}, size_t{63}, size_t{64},
        size_t{65}, size_t{255}, size_t{256}, size_t{4096}}) {
    for (size_t offset = 0; offset < 8; ++offset) {
      const uint64_t crc_seed = rng();
      EXPECT_EQ(Crc64(data.data() + offset, length, crc_seed),
                BitwiseCrc64(data.data() + offset, length, crc_seed))
          << "length " << length << ", offset " << offset << ", crc seed " << crc_seed;
    }
  }
}

}  // namespace
}  // namespace ft::erasure::codec_test
