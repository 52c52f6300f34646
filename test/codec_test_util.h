// Helpers of the codec tests (erasure_test.cc, codec_bad_input_test.cc, codec_cache_test.cc):
// seeds, random stripes, the codec under test and the reference codec side by side, and byte
// comparisons that say where they differ.
#ifndef FT_TEST_CODEC_TEST_UTIL_H_
#define FT_TEST_CODEC_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "erasure/codec.h"
#include "test/reference_codec.h"
#include "test/status_matchers.h"

namespace ft::erasure::codec_test {

using reference::CauchyGenerator;
using reference::GfInv;
using reference::GfMul;
using reference::InvertMatrix;
using reference::ReferenceCodec;

using Cells = std::vector<std::vector<uint8_t>>;

constexpr uint8_t kSentinel = 0xA5;

// FT_TEST_SEED if set (decimal or 0x-hex), else a fresh random seed.
inline uint64_t TestSeed() {
  const char* text = std::getenv("FT_TEST_SEED");
  if (text != nullptr && *text != '\0') return std::strtoull(text, nullptr, 0);
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

inline std::string SeedNote(uint64_t seed) {
  return StrCat("seed ", seed, " (replay with FT_TEST_SEED=", seed, ")");
}

inline std::string Join(const std::vector<int>& values) {
  std::string text = "{";
  for (size_t i = 0; i < values.size(); ++i) text += StrCat(i ? "," : "", values[i]);
  return text + "}";
}

inline std::string DescribePattern(const std::vector<int>& present, const std::vector<int>& wanted,
                                   size_t cell_bytes) {
  return StrCat("present=", Join(present), " wanted=", Join(wanted), " cell_bytes=", cell_bytes);
}

inline testing::AssertionResult BytesEqual(const uint8_t* actual, const uint8_t* expected,
                                           size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) {
    if (actual[i] != expected[i]) {
      return testing::AssertionFailure()
             << "first difference at byte " << i << " of " << bytes << ": got "
             << static_cast<int>(actual[i]) << ", expected " << static_cast<int>(expected[i]);
    }
  }
  return testing::AssertionSuccess();
}

inline testing::AssertionResult AllBytesAre(const uint8_t* data, size_t bytes, uint8_t value) {
  for (size_t i = 0; i < bytes; ++i) {
    if (data[i] != value) {
      return testing::AssertionFailure()
             << "byte " << i << " of " << bytes << " is " << static_cast<int>(data[i]) << ", not "
             << static_cast<int>(value);
    }
  }
  return testing::AssertionSuccess();
}

using ft::test::HasError;

inline std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t bytes) {
  std::vector<uint8_t> out(bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : out) b = static_cast<uint8_t>(byte(rng));
  return out;
}

// k random data cells followed by m parity cells filled with kSentinel.
inline Cells RandomStripe(std::mt19937_64& rng, int k, int m, size_t cell_bytes) {
  Cells cells;
  for (int i = 0; i < k; ++i) cells.push_back(RandomBytes(rng, cell_bytes));
  for (int i = 0; i < m; ++i) cells.emplace_back(cell_bytes, kSentinel);
  return cells;
}

inline std::vector<const uint8_t*> DataPointers(const Cells& cells, int k) {
  std::vector<const uint8_t*> out;
  for (int i = 0; i < k; ++i) out.push_back(cells[i].data());
  return out;
}

inline std::vector<uint8_t*> ParityPointers(Cells& cells, int k) {
  std::vector<uint8_t*> out;
  for (size_t i = k; i < cells.size(); ++i) out.push_back(cells[i].data());
  return out;
}

// Encodes the parity cells of `cells` in place with the codec under test.
inline Status LibraryEncode(const Codec& codec, Cells* cells) {
  const size_t bytes = (*cells)[0].size();
  return codec.Encode(DataPointers(*cells, codec.k()), ParityPointers(*cells, codec.k()), bytes);
}

inline Cells ReferenceParity(const ReferenceCodec& reference, const Cells& cells) {
  const size_t bytes = cells[0].size();
  Cells parity(reference.m(), std::vector<uint8_t>(bytes, 0));
  std::vector<uint8_t*> out;
  for (auto& cell : parity) out.push_back(cell.data());
  reference.Encode(DataPointers(cells, reference.k()), out, bytes);
  return parity;
}

struct DecodeRun {
  Status status;
  Cells outputs;  // one per wanted index, pre-filled with kSentinel
};

inline DecodeRun LibraryDecode(const Codec& codec, const Cells& cells,
                               const std::vector<int>& present, const std::vector<int>& wanted) {
  const size_t bytes = cells[0].size();
  std::vector<const uint8_t*> in;
  for (int index : present) in.push_back(cells[index].data());
  DecodeRun run;
  run.outputs.assign(wanted.size(), std::vector<uint8_t>(bytes, kSentinel));
  std::vector<uint8_t*> out;
  for (auto& cell : run.outputs) out.push_back(cell.data());
  run.status = codec.Decode(present, in, wanted, out, bytes);
  return run;
}

inline bool ReferenceDecode(const ReferenceCodec& reference, const Cells& cells,
                            const std::vector<int>& present, const std::vector<int>& wanted,
                            Cells* outputs) {
  const size_t bytes = cells[0].size();
  std::vector<const uint8_t*> in;
  for (int index : present) in.push_back(cells[index].data());
  outputs->assign(wanted.size(), std::vector<uint8_t>(bytes, 0));
  std::vector<uint8_t*> out;
  for (auto& cell : *outputs) out.push_back(cell.data());
  return reference.Decode(present, in, wanted, out, bytes);
}

struct Pattern {
  std::vector<int> present;  // shuffled, at least k of the survivors
  std::vector<int> wanted;   // the lost cells, shuffled
};

// Loses the cells in `lost_mask`; reads a random subset (>= k, random order) of the others.
inline Pattern MakePattern(std::mt19937_64& rng, int k, int m, uint64_t lost_mask) {
  Pattern pattern;
  std::vector<int> survivors;
  for (int i = 0; i < k + m; ++i) {
    if (lost_mask & (uint64_t{1} << i)) {
      pattern.wanted.push_back(i);
    } else {
      survivors.push_back(i);
    }
  }
  std::shuffle(survivors.begin(), survivors.end(), rng);
  std::shuffle(pattern.wanted.begin(), pattern.wanted.end(), rng);
  const size_t keep = std::uniform_int_distribution<size_t>(std::min<size_t>(k, survivors.size()),
                                                            survivors.size())(rng);
  survivors.resize(keep);
  pattern.present = std::move(survivors);
  return pattern;
}

inline uint64_t RandomLostMask(std::mt19937_64& rng, int k, int m, int lost) {
  std::vector<int> all(k + m);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  uint64_t mask = 0;
  for (int i = 0; i < lost; ++i) mask |= uint64_t{1} << all[i];
  return mask;
}

inline std::unique_ptr<Codec> MustCreate(int k, int m) {
  Result<std::unique_ptr<Codec>> codec = Codec::Create(k, m);
  EXPECT_TRUE(codec.ok()) << "Create(" << k << ", " << m << "): " << codec.status();
  return codec.ok() ? std::move(codec).value() : nullptr;
}

}  // namespace ft::erasure::codec_test

#endif  // FT_TEST_CODEC_TEST_UTIL_H_
