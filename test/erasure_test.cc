// Tests of erasure/codec.h: ft::erasure::Codec (ISA-L Reed-Solomon) cross-checked against the slow
// reference codec in test/reference_codec.h, and Crc64 against a bitwise CRC-64/XZ.
//
// Randomised tests print their seed; replay a failure with FT_TEST_SEED=<seed> and --gtest_filter.
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

namespace ft::erasure {
namespace {

using reference::CauchyGenerator;
using reference::GfInv;
using reference::GfMul;
using reference::InvertMatrix;
using reference::ReferenceCodec;

using Cells = std::vector<std::vector<uint8_t>>;

constexpr uint8_t kSentinel = 0xA5;

// FT_TEST_SEED if set (decimal or 0x-hex), else a fresh random seed.
uint64_t TestSeed() {
  const char* text = std::getenv("FT_TEST_SEED");
  if (text != nullptr && *text != '\0') return std::strtoull(text, nullptr, 0);
  std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) ^ device();
}

std::string SeedNote(uint64_t seed) {
  return StrCat("seed ", seed, " (replay with FT_TEST_SEED=", seed, ")");
}

std::string Join(const std::vector<int>& values) {
  std::string text = "{";
  for (size_t i = 0; i < values.size(); ++i) text += StrCat(i ? "," : "", values[i]);
  return text + "}";
}

std::string DescribePattern(const std::vector<int>& present, const std::vector<int>& wanted,
                            size_t cell_bytes) {
  return StrCat("present=", Join(present), " wanted=", Join(wanted), " cell_bytes=", cell_bytes);
}

testing::AssertionResult BytesEqual(const uint8_t* actual, const uint8_t* expected, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) {
    if (actual[i] != expected[i]) {
      return testing::AssertionFailure()
             << "first difference at byte " << i << " of " << bytes << ": got "
             << static_cast<int>(actual[i]) << ", expected " << static_cast<int>(expected[i]);
    }
  }
  return testing::AssertionSuccess();
}

testing::AssertionResult AllBytesAre(const uint8_t* data, size_t bytes, uint8_t value) {
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

std::vector<uint8_t> RandomBytes(std::mt19937_64& rng, size_t bytes) {
  std::vector<uint8_t> out(bytes);
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : out) b = static_cast<uint8_t>(byte(rng));
  return out;
}

// k random data cells followed by m parity cells filled with kSentinel.
Cells RandomStripe(std::mt19937_64& rng, int k, int m, size_t cell_bytes) {
  Cells cells;
  for (int i = 0; i < k; ++i) cells.push_back(RandomBytes(rng, cell_bytes));
  for (int i = 0; i < m; ++i) cells.emplace_back(cell_bytes, kSentinel);
  return cells;
}

std::vector<const uint8_t*> DataPointers(const Cells& cells, int k) {
  std::vector<const uint8_t*> out;
  for (int i = 0; i < k; ++i) out.push_back(cells[i].data());
  return out;
}

std::vector<uint8_t*> ParityPointers(Cells& cells, int k) {
  std::vector<uint8_t*> out;
  for (size_t i = k; i < cells.size(); ++i) out.push_back(cells[i].data());
  return out;
}

// Encodes the parity cells of `cells` in place with the codec under test.
Status LibraryEncode(const Codec& codec, Cells* cells) {
  const size_t bytes = (*cells)[0].size();
  return codec.Encode(DataPointers(*cells, codec.k()), ParityPointers(*cells, codec.k()), bytes);
}

Cells ReferenceParity(const ReferenceCodec& reference, const Cells& cells) {
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

DecodeRun LibraryDecode(const Codec& codec, const Cells& cells, const std::vector<int>& present,
                        const std::vector<int>& wanted) {
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

bool ReferenceDecode(const ReferenceCodec& reference, const Cells& cells,
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
Pattern MakePattern(std::mt19937_64& rng, int k, int m, uint64_t lost_mask) {
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

uint64_t RandomLostMask(std::mt19937_64& rng, int k, int m, int lost) {
  std::vector<int> all(k + m);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  uint64_t mask = 0;
  for (int i = 0; i < lost; ++i) mask |= uint64_t{1} << all[i];
  return mask;
}

std::unique_ptr<Codec> MustCreate(int k, int m) {
  Result<std::unique_ptr<Codec>> codec = Codec::Create(k, m);
  EXPECT_TRUE(codec.ok()) << "Create(" << k << ", " << m << "): " << codec.status();
  return codec.ok() ? std::move(codec).value() : nullptr;
}

// ---------------------------------------------------------------------------------------------
// The reference field itself (so that agreeing with it means something).

TEST(ReferenceFieldTest, KnownProductsAndInverses) {
  // Values worked out by hand / independently for x^8 + x^4 + x^3 + x^2 + 1.
  EXPECT_EQ(GfMul(0x80, 0x02), 0x1d);
  EXPECT_EQ(GfMul(0x02, 0x80), 0x1d);
  EXPECT_EQ(GfMul(0xff, 0xff), 0xe2);
  EXPECT_EQ(GfMul(0x00, 0x37), 0x00);
  EXPECT_EQ(GfMul(0x01, 0x37), 0x37);
  EXPECT_EQ(GfInv(0x02), 0x8e);
  EXPECT_EQ(GfInv(0x03), 0xf4);
  EXPECT_EQ(GfInv(0x53), 0x8c);
  EXPECT_EQ(GfInv(0x01), 0x01);
  EXPECT_EQ(GfInv(0x00), 0x00);
}

TEST(ReferenceFieldTest, FieldAxioms) {
  for (int a = 1; a < 256; ++a) {
    ASSERT_EQ(GfMul(static_cast<uint8_t>(a), GfInv(static_cast<uint8_t>(a))), 1) << "a = " << a;
  }
  // 2 generates the multiplicative group: its powers visit all 255 non-zero elements.
  std::set<uint8_t> powers;
  uint8_t power = 1;
  for (int i = 0; i < 255; ++i) {
    powers.insert(power);
    power = GfMul(power, 2);
  }
  EXPECT_EQ(power, 1);
  EXPECT_EQ(powers.size(), 255u);
  for (int a = 0; a < 256; a += 7) {
    for (int b = 0; b < 256; b += 5) {
      for (int c = 0; c < 256; c += 11) {
        const auto x = static_cast<uint8_t>(a), y = static_cast<uint8_t>(b),
                   z = static_cast<uint8_t>(c);
        ASSERT_EQ(GfMul(x, y), GfMul(y, x));
        ASSERT_EQ(GfMul(GfMul(x, y), z), GfMul(x, GfMul(y, z)));
        ASSERT_EQ(GfMul(x, y ^ z), GfMul(x, y) ^ GfMul(x, z));
      }
    }
  }
}

TEST(ReferenceFieldTest, InvertMatrixRoundTrips) {
  const std::vector<uint8_t> matrix = {2, 3, 1, 1, 1, 4, 7, 0, 9};
  std::vector<uint8_t> inverse;
  ASSERT_TRUE(InvertMatrix(matrix, 3, &inverse));
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 3; ++c) {
      uint8_t sum = 0;
      for (int j = 0; j < 3; ++j) sum ^= GfMul(matrix[r * 3 + j], inverse[j * 3 + c]);
      EXPECT_EQ(sum, r == c ? 1 : 0) << r << "," << c;
    }
  }
  std::vector<uint8_t> singular = {1, 2, 2, 4};  // second row = 2 * first row
  EXPECT_FALSE(InvertMatrix(singular, 2, &inverse));
}

TEST(ReferenceFieldTest, SmallCauchyMatrixByHand) {
  // k = 2, m = 1: identity, then row 2 = [1/(2^0), 1/(2^1)] = [1/2, 1/3].
  EXPECT_EQ(CauchyGenerator(2, 1), (std::vector<uint8_t>{1, 0, 0, 1, 0x8e, 0xf4}));
}

// ---------------------------------------------------------------------------------------------
// Codec::Create

TEST(CodecCreateTest, RejectsBadShapesNamingTheValue) {
  struct Case {
    int k;
    int m;
    const char* fragment;
  };
  const Case cases[] = {
      {0, 1, "k = 0"},
      {1, 0, "m = 0"},
      {0, 0, "k = 0"},
      {-1, 4, "k = -1"},
      {4, -3, "m = -3"},
      {60, 5, "65"},
      {64, 1, "65"},
      {1, 64, "65"},
      {33, 32, "65"},
      {INT_MIN, 1, "k = -2147483648"},
      {INT_MAX, 1, "k + m = 2147483648"},  // k + m must not overflow int
      {1, INT_MAX, "k + m = 2147483648"},
      {INT_MAX, INT_MAX, "k + m = 4294967294"},
  };
  for (const Case& c : cases) {
    const Result<std::unique_ptr<Codec>> codec = Codec::Create(c.k, c.m);
    EXPECT_TRUE(HasError(codec.status(), StatusCode::kInvalidArgument, c.fragment))
        << "Create(" << c.k << ", " << c.m << ")";
  }
}

TEST(CodecCreateTest, AcceptsValidShapes) {
  const std::pair<int, int> shapes[] = {{1, 1}, {32, 32}, {63, 1}, {1, 63}, {10, 4}};
  for (const auto& [k, m] : shapes) {
    const Result<std::unique_ptr<Codec>> codec = Codec::Create(k, m);
    ASSERT_TRUE(codec.ok()) << "Create(" << k << ", " << m << "): " << codec.status();
    EXPECT_EQ((*codec)->k(), k);
    EXPECT_EQ((*codec)->m(), m);
    EXPECT_EQ((*codec)->cached_decode_patterns(), 0u);
  }
}

TEST(CodecCreateTest, GeneratorIsTheCauchyMatrix) {
  const std::pair<int, int> shapes[] = {{1, 1},  {2, 1},  {3, 5},  {4, 2},   {6, 3},  {10, 4},
                                        {16, 4}, {20, 8}, {32, 8}, {32, 32}, {63, 1}, {1, 63}};
  for (const auto& [k, m] : shapes) {
    SCOPED_TRACE(StrCat("RS(", k, ",", m, ")"));
    const std::unique_ptr<Codec> codec = MustCreate(k, m);
    ASSERT_NE(codec, nullptr);
    const std::vector<uint8_t> expected = CauchyGenerator(k, m);
    const std::span<const uint8_t> generator = codec->generator();
    ASSERT_EQ(generator.size(), static_cast<size_t>((k + m) * k));
    EXPECT_TRUE(BytesEqual(generator.data(), expected.data(), expected.size()));
  }
}

// ---------------------------------------------------------------------------------------------
// Exhaustive erasure patterns for k + m <= 8

int Binomial(int n, int r) {
  int result = 1;
  for (int i = 1; i <= r; ++i) result = result * (n - r + i) / i;
  return result;
}

TEST(CodecExhaustiveTest, EveryErasurePatternUpToEightCells) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  constexpr size_t kCellBytes = 37;
  int decoded_patterns = 0;
  int expected_patterns = 0;
  int data_loss_patterns = 0;
  int expected_data_loss_patterns = 0;
  for (int n = 2; n <= 8; ++n) {
    for (int k = 1; k < n; ++k) {
      const int m = n - k;
      SCOPED_TRACE(StrCat("RS(", k, ",", m, ")"));
      const std::unique_ptr<Codec> codec = MustCreate(k, m);
      ASSERT_NE(codec, nullptr);
      const ReferenceCodec reference(k, m);
      for (int lost = 1; lost <= m; ++lost) expected_patterns += Binomial(n, lost);
      expected_data_loss_patterns += Binomial(n, m + 1);

      for (uint64_t lost_mask = 1; lost_mask < (uint64_t{1} << n); ++lost_mask) {
        const int lost = std::popcount(lost_mask);
        if (lost > m + 1) continue;
        Cells cells = RandomStripe(rng, k, m, kCellBytes);
        ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
        const Cells parity = ReferenceParity(reference, cells);
        for (int p = 0; p < m; ++p) {
          ASSERT_TRUE(BytesEqual(cells[k + p].data(), parity[p].data(), kCellBytes))
              << "parity cell " << k + p;
        }

        const Pattern pattern = MakePattern(rng, k, m, lost_mask);
        const std::string where = DescribePattern(pattern.present, pattern.wanted, kCellBytes);
        const DecodeRun run = LibraryDecode(*codec, cells, pattern.present, pattern.wanted);
        if (lost == m + 1) {  // one loss too many: a clean DataLoss, nothing written
          ++data_loss_patterns;
          ASSERT_EQ(run.status.code(), StatusCode::kDataLoss) << where << ": " << run.status;
          for (const auto& output : run.outputs) {
            ASSERT_TRUE(AllBytesAre(output.data(), kCellBytes, kSentinel)) << where;
          }
          continue;
        }
        ++decoded_patterns;
        ASSERT_TRUE(run.status.ok()) << where << ": " << run.status;
        Cells expected;
        ASSERT_TRUE(ReferenceDecode(reference, cells, pattern.present, pattern.wanted, &expected))
            << where;
        for (size_t w = 0; w < pattern.wanted.size(); ++w) {
          const std::vector<uint8_t>& original = cells[pattern.wanted[w]];
          ASSERT_TRUE(BytesEqual(run.outputs[w].data(), original.data(), kCellBytes))
              << where << ", output " << w << " (cell " << pattern.wanted[w] << ")";
          ASSERT_TRUE(BytesEqual(expected[w].data(), original.data(), kCellBytes))
              << "reference codec: " << where << ", cell " << pattern.wanted[w];
        }
      }
    }
  }
  EXPECT_EQ(decoded_patterns, expected_patterns);
  EXPECT_EQ(data_loss_patterns, expected_data_loss_patterns);
  EXPECT_GT(decoded_patterns, 1000);
}

// ---------------------------------------------------------------------------------------------
// Seeded random trials on production-sized shapes

class CodecRandomTest : public testing::TestWithParam<std::pair<int, int>> {};

TEST_P(CodecRandomTest, MatchesReferenceCodec) {
  const auto [k, m] = GetParam();
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  const std::unique_ptr<Codec> codec = MustCreate(k, m);
  ASSERT_NE(codec, nullptr);
  const ReferenceCodec reference(k, m);
  constexpr int kTrials = 40;
  for (int trial = 0; trial < kTrials; ++trial) {
    const size_t cell_bytes = std::uniform_int_distribution<size_t>(1, 2500)(rng);
    Cells cells = RandomStripe(rng, k, m, cell_bytes);
    ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
    const Cells parity = ReferenceParity(reference, cells);
    for (int p = 0; p < m; ++p) {
      ASSERT_TRUE(BytesEqual(cells[k + p].data(), parity[p].data(), cell_bytes))
          << "trial " << trial << ", parity cell " << k + p << ", cell_bytes " << cell_bytes;
    }
    const int lost = std::uniform_int_distribution<int>(1, m)(rng);
    const Pattern pattern = MakePattern(rng, k, m, RandomLostMask(rng, k, m, lost));
    const std::string where =
        StrCat("trial ", trial, ": ", DescribePattern(pattern.present, pattern.wanted, cell_bytes));
    const DecodeRun run = LibraryDecode(*codec, cells, pattern.present, pattern.wanted);
    ASSERT_TRUE(run.status.ok()) << where << ": " << run.status;
    Cells expected;
    ASSERT_TRUE(ReferenceDecode(reference, cells, pattern.present, pattern.wanted, &expected))
        << where;
    for (size_t w = 0; w < pattern.wanted.size(); ++w) {
      ASSERT_TRUE(BytesEqual(run.outputs[w].data(), expected[w].data(), cell_bytes))
          << where << ", cell " << pattern.wanted[w] << " vs reference";
      ASSERT_TRUE(BytesEqual(run.outputs[w].data(), cells[pattern.wanted[w]].data(), cell_bytes))
          << where << ", cell " << pattern.wanted[w] << " vs original";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ProductionShapes, CodecRandomTest,
                         testing::Values(std::pair(10, 4), std::pair(16, 4), std::pair(20, 8),
                                         std::pair(32, 8)),
                         [](const testing::TestParamInfo<std::pair<int, int>>& shape) {
                           return StrCat("k", shape.param.first, "_m", shape.param.second);
                         });

// ---------------------------------------------------------------------------------------------
// Tail lengths and unaligned buffers

// One cell at `offset` (1..7 bytes past a malloc-aligned address) with guard bytes around it.
class GuardedCell {
 public:
  static constexpr size_t kGuard = 16;
  static constexpr uint8_t kGuardByte = 0x5C;

  GuardedCell(size_t bytes, size_t offset)
      : bytes_(bytes), offset_(offset), buffer_(offset + bytes + kGuard, kGuardByte) {}

  uint8_t* data() { return buffer_.data() + offset_; }
  const uint8_t* data() const { return buffer_.data() + offset_; }

  testing::AssertionResult GuardsIntact() const {
    testing::AssertionResult before = AllBytesAre(buffer_.data(), offset_, kGuardByte);
    if (!before) return before << " (guard before the cell)";
    testing::AssertionResult after =
        AllBytesAre(buffer_.data() + offset_ + bytes_, kGuard, kGuardByte);
    if (!after) return after << " (guard after the cell)";
    return testing::AssertionSuccess();
  }

 private:
  size_t bytes_;
  size_t offset_;
  std::vector<uint8_t> buffer_;
};

TEST(CodecLengthTest, TailLengthsAndUnalignedBuffers) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  const size_t kLengths[] = {1, 15, 16, 17, 63, 64, 65, 4095, 4096, (size_t{1} << 20) + 13};
  for (const size_t length : kLengths) {
    const bool large = length > 8192;
    const int k = large ? 4 : 6;
    const int m = large ? 2 : 3;
    SCOPED_TRACE(StrCat("RS(", k, ",", m, "), cell_bytes ", length));
    const std::unique_ptr<Codec> codec = MustCreate(k, m);
    ASSERT_NE(codec, nullptr);
    const ReferenceCodec reference(k, m);
    Cells truth = RandomStripe(rng, k, m, length);
    const Cells reference_parity = ReferenceParity(reference, truth);  // computed once
    for (int p = 0; p < m; ++p) truth[k + p] = reference_parity[p];

    for (int shift = 0; shift < 7; ++shift) {
      SCOPED_TRACE(StrCat("shift ", shift));
      auto offset_of = [shift](int cell) { return static_cast<size_t>(1 + (cell + shift) % 7); };
      std::vector<GuardedCell> stripe;
      for (int i = 0; i < k + m; ++i) {
        stripe.emplace_back(length, offset_of(i));
        if (i < k) {
          std::memcpy(stripe[i].data(), truth[i].data(), length);
        } else {
          std::memset(stripe[i].data(), kSentinel, length);
        }
      }
      std::vector<const uint8_t*> data;
      for (int i = 0; i < k; ++i) data.push_back(stripe[i].data());
      std::vector<uint8_t*> parity;
      for (int i = k; i < k + m; ++i) parity.push_back(stripe[i].data());
      ASSERT_TRUE(codec->Encode(data, parity, length).ok());
      for (int i = 0; i < k + m; ++i) {
        ASSERT_TRUE(BytesEqual(stripe[i].data(), truth[i].data(), length)) << "cell " << i;
        ASSERT_TRUE(stripe[i].GuardsIntact()) << "cell " << i;
      }

      // Lose m cells: at least one data cell and one parity cell.
      std::vector<int> wanted = {shift % k, k + shift % m};
      if (m == 3) wanted.push_back((shift + 1) % k);
      std::vector<int> present;
      for (int i = 0; i < k + m; ++i) {
        const int cell = (i + shift) % (k + m);
        if (std::find(wanted.begin(), wanted.end(), cell) == wanted.end()) present.push_back(cell);
      }
      std::vector<const uint8_t*> present_cells;
      for (int index : present) present_cells.push_back(stripe[index].data());
      std::vector<GuardedCell> outputs;
      std::vector<uint8_t*> output_pointers;
      for (size_t w = 0; w < wanted.size(); ++w) {
        outputs.emplace_back(length, 1 + (w + shift + 3) % 7);
        std::memset(outputs[w].data(), kSentinel, length);
      }
      for (auto& output : outputs) output_pointers.push_back(output.data());
      const Status decoded = codec->Decode(present, present_cells, wanted, output_pointers, length);
      ASSERT_TRUE(decoded.ok()) << DescribePattern(present, wanted, length) << ": " << decoded;
      for (size_t w = 0; w < wanted.size(); ++w) {
        ASSERT_TRUE(BytesEqual(outputs[w].data(), truth[wanted[w]].data(), length))
            << "cell " << wanted[w];
        ASSERT_TRUE(outputs[w].GuardsIntact()) << "cell " << wanted[w];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Bad input: an error, and nothing written

class CodecBadInputTest : public testing::Test {
 protected:
  static constexpr int kK = 4;
  static constexpr int kM = 2;
  static constexpr size_t kBytes = 64;

  void SetUp() override {
    codec_ = MustCreate(kK, kM);
    ASSERT_NE(codec_, nullptr);
    std::mt19937_64 rng(12345);
    cells_ = RandomStripe(rng, kK, kM, kBytes);
    ASSERT_TRUE(LibraryEncode(*codec_, &cells_).ok());
  }

  std::unique_ptr<Codec> codec_;
  Cells cells_;
};

TEST_F(CodecBadInputTest, EncodeRejectsBadInputAndWritesNothing) {
  Cells parity(kM + 1, std::vector<uint8_t>(kBytes, kSentinel));
  std::vector<uint8_t*> parity_pointers;
  for (auto& cell : parity) parity_pointers.push_back(cell.data());
  std::vector<const uint8_t*> data = DataPointers(cells_, kK + 1);  // cells_[4] is a parity cell
  const std::span<const uint8_t* const> all_data(data);
  const std::span<uint8_t* const> all_parity(parity_pointers);

  auto expect_untouched = [&](const char* what) {
    for (size_t p = 0; p < parity.size(); ++p) {
      EXPECT_TRUE(AllBytesAre(parity[p].data(), kBytes, kSentinel)) << what << ", parity " << p;
    }
  };

  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK - 1), all_parity.first(kM), kBytes),
                       StatusCode::kInvalidArgument, "3 data cells"));
  expect_untouched("k - 1 data cells");
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK + 1), all_parity.first(kM), kBytes),
                       StatusCode::kInvalidArgument, "5 data cells"));
  expect_untouched("k + 1 data cells");
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(0), all_parity.first(kM), kBytes),
                       StatusCode::kInvalidArgument, "0 data cells"));
  expect_untouched("no data cells");
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK), all_parity.first(kM - 1), kBytes),
                       StatusCode::kInvalidArgument, "1 parity cells"));
  expect_untouched("m - 1 parity cells");
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK), all_parity.first(kM + 1), kBytes),
                       StatusCode::kInvalidArgument, "3 parity cells"));
  expect_untouched("m + 1 parity cells");
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK), all_parity.first(kM), 0),
                       StatusCode::kInvalidArgument, "cell_bytes = 0"));
  expect_untouched("cell_bytes = 0");
  const size_t too_long = static_cast<size_t>(INT_MAX) + 1;
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK), all_parity.first(kM), too_long),
                       StatusCode::kInvalidArgument, std::to_string(too_long)));
  expect_untouched("cell_bytes > INT_MAX");

  std::vector<const uint8_t*> null_data(data.begin(), data.begin() + kK);
  null_data[2] = nullptr;
  EXPECT_TRUE(HasError(codec_->Encode(null_data, all_parity.first(kM), kBytes),
                       StatusCode::kInvalidArgument, "data[2]"));
  expect_untouched("null data pointer");
  std::vector<uint8_t*> null_parity(parity_pointers.begin(), parity_pointers.begin() + kM);
  null_parity[1] = nullptr;
  EXPECT_TRUE(HasError(codec_->Encode(all_data.first(kK), null_parity, kBytes),
                       StatusCode::kInvalidArgument, "parity[1]"));
  expect_untouched("null parity pointer");

  // And the valid call still works afterwards.
  ASSERT_TRUE(codec_->Encode(all_data.first(kK), all_parity.first(kM), kBytes).ok());
  EXPECT_TRUE(BytesEqual(parity[0].data(), cells_[kK].data(), kBytes));
  EXPECT_TRUE(BytesEqual(parity[1].data(), cells_[kK + 1].data(), kBytes));
}

TEST_F(CodecBadInputTest, DecodeRejectsBadInputAndWritesNothing) {
  // How a case bends the otherwise matching cell arguments.
  enum class Bend {
    kNone,
    kDropPresentCell,  // present_cells has one pointer fewer than present
    kExtraPresentCell,
    kDropOutput,  // outputs has one pointer fewer than wanted
    kExtraOutput,
    kZeroCellBytes,
    kNullPresentCell,  // present_cells[1] = nullptr
    kNullOutput,       // outputs[1] = nullptr
  };
  struct Case {
    const char* name;
    std::vector<int> present;
    std::vector<int> wanted;
    StatusCode code;
    const char* fragment;
    Bend bend = Bend::kNone;
  };
  using enum Bend;
  constexpr StatusCode kInvalid = StatusCode::kInvalidArgument;
  constexpr StatusCode kDataLoss = StatusCode::kDataLoss;
  const std::vector<Case> cases = {
      {"3 erasures (m + 1)", {0, 1, 5}, {2, 3, 4}, kDataLoss, "only 3"},
      {"4 erasures, wanted one", {5, 2}, {0}, kDataLoss, "only 2"},
      {"too few, nothing wanted", {0, 1, 2}, {}, kDataLoss, "only 3"},
      {"nothing present", {}, {0}, kDataLoss, "only 0"},
      {"present index = k + m", {0, 1, 2, 6}, {3}, kInvalid, "= 6"},
      {"present index < 0", {0, -1, 2, 4}, {3}, kInvalid, "= -1"},
      {"present index huge", {0, 1, 2, 1000}, {3}, kInvalid, "= 1000"},
      {"wanted index = k + m", {0, 1, 2, 4}, {3, 6}, kInvalid, "= 6"},
      {"wanted index < 0", {0, 1, 2, 4}, {-2}, kInvalid, "= -2"},
      {"wanted index 64", {0, 1, 2, 4}, {64}, kInvalid, "= 64"},
      {"duplicate present", {0, 1, 1, 2}, {3}, kInvalid, "present[2] = 1"},
      {"duplicate present, far", {4, 0, 1, 2, 4}, {3}, kInvalid, "= 4"},
      {"duplicate wanted", {0, 1, 2, 4}, {3, 3}, kInvalid, "wanted[1] = 3"},
      {"wanted also present", {0, 1, 2, 4}, {3, 4}, kInvalid, "= 4"},
      {"fewer present cells", {0, 1, 2, 4}, {3}, kInvalid, "3 present cells", kDropPresentCell},
      {"more present cells", {0, 1, 2, 4}, {3}, kInvalid, "5 present cells", kExtraPresentCell},
      {"fewer outputs", {0, 1, 2, 4}, {3, 5}, kInvalid, "1 output cells", kDropOutput},
      {"more outputs", {0, 1, 2, 4}, {3}, kInvalid, "2 output cells", kExtraOutput},
      {"cell_bytes = 0", {0, 1, 2, 4}, {3}, kInvalid, "cell_bytes = 0", kZeroCellBytes},
      {"null present cell", {0, 1, 2, 4}, {3}, kInvalid, "present_cells[1]", kNullPresentCell},
      {"null output", {0, 1, 2, 4}, {3, 5}, kInvalid, "outputs[1]", kNullOutput},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::vector<const uint8_t*> present_cells;
    for (int index : c.present) {
      present_cells.push_back(cells_[index >= 0 && index < kK + kM ? index : 0].data());
    }
    // One output buffer more than wanted, for kExtraOutput; all start as kSentinel.
    Cells outputs(c.wanted.size() + 1, std::vector<uint8_t>(kBytes, kSentinel));
    std::vector<uint8_t*> output_pointers;
    for (size_t w = 0; w < c.wanted.size(); ++w) output_pointers.push_back(outputs[w].data());
    size_t cell_bytes = kBytes;
    switch (c.bend) {
      case Bend::kNone:
        break;
      case Bend::kDropPresentCell:
        present_cells.pop_back();
        break;
      case Bend::kExtraPresentCell:
        present_cells.push_back(cells_[3].data());
        break;
      case Bend::kDropOutput:
        output_pointers.pop_back();
        break;
      case Bend::kExtraOutput:
        output_pointers.push_back(outputs.back().data());
        break;
      case Bend::kZeroCellBytes:
        cell_bytes = 0;
        break;
      case Bend::kNullPresentCell:
        present_cells[1] = nullptr;
        break;
      case Bend::kNullOutput:
        output_pointers[1] = nullptr;
        break;
    }

    const Status status =
        codec_->Decode(c.present, present_cells, c.wanted, output_pointers, cell_bytes);
    EXPECT_TRUE(HasError(status, c.code, c.fragment));
    for (size_t w = 0; w < outputs.size(); ++w) {
      EXPECT_TRUE(AllBytesAre(outputs[w].data(), kBytes, kSentinel)) << "output " << w;
    }
  }
  EXPECT_EQ(codec_->cached_decode_patterns(), 0u);
}

TEST_F(CodecBadInputTest, DecodeReadsOnlyTheFirstKPresentCells) {
  // Cells after the first k are not read: give them garbage and expect the right answer.
  const std::vector<uint8_t> garbage(kBytes, 0x3C);
  const std::vector<int> present = {5, 4, 3, 2, 1};
  std::vector<const uint8_t*> present_cells = {cells_[5].data(), cells_[4].data(), cells_[3].data(),
                                               cells_[2].data(), garbage.data()};
  std::vector<uint8_t> output(kBytes, kSentinel);
  std::vector<uint8_t*> outputs = {output.data()};
  const std::vector<int> wanted = {0};
  ASSERT_TRUE(codec_->Decode(present, present_cells, wanted, outputs, kBytes).ok());
  EXPECT_TRUE(BytesEqual(output.data(), cells_[0].data(), kBytes));
}

TEST_F(CodecBadInputTest, DecodeNothingWantedIsOk) {
  const std::vector<int> present = {0, 1, 2, 3};
  const std::vector<const uint8_t*> present_cells = DataPointers(cells_, kK);
  EXPECT_TRUE(codec_->Decode(present, present_cells, {}, {}, kBytes).ok());
}

// ---------------------------------------------------------------------------------------------
// Decode-table cache

TEST(CodecCacheTest, RepeatedPatternReusesTables) {
  const std::unique_ptr<Codec> codec = MustCreate(6, 3);
  ASSERT_NE(codec, nullptr);
  std::mt19937_64 rng(99);
  Cells cells = RandomStripe(rng, 6, 3, 100);
  ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
  EXPECT_EQ(codec->cached_decode_patterns(), 0u);  // Encode does not use the cache

  const std::vector<int> present_a = {8, 1, 2, 3, 4, 5};
  const std::vector<int> wanted_a = {0, 6};
  const std::vector<int> present_b = {0, 1, 2, 6, 7, 8};
  const std::vector<int> wanted_b = {3, 4, 5};
  for (int round = 0; round < 5; ++round) {
    const DecodeRun run = LibraryDecode(*codec, cells, present_a, wanted_a);
    ASSERT_TRUE(run.status.ok()) << run.status;
    EXPECT_TRUE(BytesEqual(run.outputs[0].data(), cells[0].data(), 100));
    EXPECT_TRUE(BytesEqual(run.outputs[1].data(), cells[6].data(), 100));
    EXPECT_EQ(codec->cached_decode_patterns(), 1u) << "round " << round;
  }
  for (int round = 0; round < 3; ++round) {
    const DecodeRun run = LibraryDecode(*codec, cells, present_b, wanted_b);
    ASSERT_TRUE(run.status.ok()) << run.status;
    for (size_t w = 0; w < wanted_b.size(); ++w) {
      EXPECT_TRUE(BytesEqual(run.outputs[w].data(), cells[wanted_b[w]].data(), 100));
    }
    EXPECT_EQ(codec->cached_decode_patterns(), 2u) << "round " << round;
  }
  ASSERT_TRUE(LibraryDecode(*codec, cells, present_a, wanted_a).status.ok());
  EXPECT_EQ(codec->cached_decode_patterns(), 2u);
  // Nothing wanted and failed calls build nothing.
  ASSERT_TRUE(LibraryDecode(*codec, cells, present_a, {}).status.ok());
  EXPECT_EQ(LibraryDecode(*codec, cells, {0, 1}, {2}).status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(codec->cached_decode_patterns(), 2u);
}

// The first `count` k-subsets of [0, n) in lexicographic order (each a distinct present set).
std::vector<std::vector<int>> Subsets(int n, int k, size_t count) {
  std::vector<std::vector<int>> out;
  std::vector<int> subset(k);
  std::iota(subset.begin(), subset.end(), 0);
  while (out.size() < count) {
    out.push_back(subset);
    int i = k - 1;
    while (i >= 0 && subset[i] == n - k + i) --i;
    if (i < 0) break;
    ++subset[i];
    for (int j = i + 1; j < k; ++j) subset[j] = subset[j - 1] + 1;
  }
  return out;
}

std::vector<int> Complement(const std::vector<int>& subset, int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    if (std::find(subset.begin(), subset.end(), i) == subset.end()) out.push_back(i);
  }
  return out;
}

TEST(CodecCacheTest, BoundedByCapacity) {
  constexpr int kK = 10;
  constexpr int kM = 4;
  constexpr size_t kCapacity = Codec::kDecodeCacheCapacity;
  const std::unique_ptr<Codec> codec = MustCreate(kK, kM);
  ASSERT_NE(codec, nullptr);
  std::mt19937_64 rng(7);
  Cells cells = RandomStripe(rng, kK, kM, 24);
  ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
  const std::vector<std::vector<int>> present_sets = Subsets(kK + kM, kK, kCapacity + 64);
  ASSERT_EQ(present_sets.size(), kCapacity + 64);
  for (size_t i = 0; i < present_sets.size(); ++i) {
    const std::vector<int> wanted = Complement(present_sets[i], kK + kM);
    const DecodeRun run = LibraryDecode(*codec, cells, present_sets[i], wanted);
    ASSERT_TRUE(run.status.ok()) << DescribePattern(present_sets[i], wanted, 24) << run.status;
    for (size_t w = 0; w < wanted.size(); ++w) {
      ASSERT_TRUE(BytesEqual(run.outputs[w].data(), cells[wanted[w]].data(), 24))
          << DescribePattern(present_sets[i], wanted, 24);
    }
    ASSERT_EQ(codec->cached_decode_patterns(), std::min(i + 1, kCapacity)) << "pattern " << i;
  }
  // Patterns evicted long ago still decode correctly (tables are rebuilt).
  const std::vector<int> wanted = Complement(present_sets[0], kK + kM);
  const DecodeRun again = LibraryDecode(*codec, cells, present_sets[0], wanted);
  ASSERT_TRUE(again.status.ok());
  EXPECT_TRUE(BytesEqual(again.outputs[0].data(), cells[wanted[0]].data(), 24));
  EXPECT_EQ(codec->cached_decode_patterns(), kCapacity);
}

// Every ordered choice of wanted cells and of the k present cells read, decoded back to back so
// that the cache is warm with near-identical patterns: tables cached for one pattern must never be
// used for another (a cache key that ignores part of the pattern would give wrong cells here).
TEST(CodecCacheTest, NearIdenticalPatternsNeverShareTables) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  constexpr size_t kBytes = 16;
  for (const auto& [k, m] : {std::pair(3, 3), std::pair(4, 2), std::pair(2, 4)}) {
    SCOPED_TRACE(StrCat("RS(", k, ",", m, ")"));
    const int n = k + m;
    const std::unique_ptr<Codec> codec = MustCreate(k, m);
    ASSERT_NE(codec, nullptr);
    Cells cells = RandomStripe(rng, k, m, kBytes);
    ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
    int decodes = 0;
    for (uint64_t lost_mask = 1; lost_mask < (uint64_t{1} << n); ++lost_mask) {
      if (std::popcount(lost_mask) > m) continue;
      std::vector<int> wanted;
      std::vector<int> survivors;
      for (int i = 0; i < n; ++i) {
        (lost_mask & (uint64_t{1} << i) ? wanted : survivors).push_back(i);
      }
      // Every ordering of the wanted cells (bounded: at most m! = 24).
      do {
        // Every ordered k-sequence of survivors: permute, read the first k, skip repeats.
        std::vector<int> order = survivors;
        std::sort(order.begin(), order.end());
        std::set<std::vector<int>> seen;
        do {
          std::vector<int> present(order.begin(), order.begin() + k);
          if (!seen.insert(present).second) continue;
          ++decodes;
          const DecodeRun run = LibraryDecode(*codec, cells, present, wanted);
          ASSERT_TRUE(run.status.ok()) << DescribePattern(present, wanted, kBytes) << run.status;
          for (size_t w = 0; w < wanted.size(); ++w) {
            ASSERT_TRUE(BytesEqual(run.outputs[w].data(), cells[wanted[w]].data(), kBytes))
                << DescribePattern(present, wanted, kBytes) << ", cell " << wanted[w];
          }
        } while (std::next_permutation(order.begin(), order.end()));
      } while (std::next_permutation(wanted.begin(), wanted.end()));
    }
    EXPECT_GT(decodes, 500);
  }
}

TEST(CodecCacheTest, ConcurrentDecodesOnDistinctPatterns) {
  constexpr int kK = 8;
  constexpr int kM = 4;
  constexpr int kThreads = 4;
  constexpr size_t kPatternsPerThread = 80;  // 320 in all: more than the cache holds
  constexpr int kPasses = 2;
  constexpr size_t kBytes = 200;
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  const std::unique_ptr<Codec> codec = MustCreate(kK, kM);
  ASSERT_NE(codec, nullptr);
  Cells cells = RandomStripe(rng, kK, kM, kBytes);
  ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
  const std::vector<std::vector<int>> present_sets =
      Subsets(kK + kM, kK, kThreads * kPatternsPerThread);
  ASSERT_EQ(present_sets.size(), kThreads * kPatternsPerThread);

  std::atomic<int> failures{0};
  std::mutex first_failure_mutex;
  std::string first_failure;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int pass = 0; pass < kPasses; ++pass) {
        for (size_t i = 0; i < kPatternsPerThread; ++i) {
          const std::vector<int>& present = present_sets[t * kPatternsPerThread + i];
          const std::vector<int> wanted = Complement(present, kK + kM);
          const DecodeRun run = LibraryDecode(*codec, cells, present, wanted);
          bool good = run.status.ok();
          for (size_t w = 0; good && w < wanted.size(); ++w) {
            good = std::memcmp(run.outputs[w].data(), cells[wanted[w]].data(), kBytes) == 0;
          }
          if (!good) {
            failures.fetch_add(1);
            std::lock_guard lock(first_failure_mutex);
            if (first_failure.empty()) {
              first_failure = StrCat("thread ", t, ": ", DescribePattern(present, wanted, kBytes),
                                     ": ", run.status.ToString());
            }
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_LE(codec->cached_decode_patterns(), Codec::kDecodeCacheCapacity);
  EXPECT_GT(codec->cached_decode_patterns(), 0u);
}

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
}  // namespace ft::erasure
