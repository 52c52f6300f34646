// Tests of erasure/codec.h: ft::erasure::Codec (ISA-L Reed-Solomon) cross-checked against the slow
// reference codec in test/reference_codec.h: the reference field, Create, exhaustive erasure
// patterns, seeded random trials, tail lengths and unaligned buffers. Bad input is in
// codec_bad_input_test.cc, the decode-table cache in codec_cache_test.cc, Crc64 in crc64_test.cc.
//
// Randomised tests print their seed; replay a failure with FT_TEST_SEED=<seed> and --gtest_filter.
#include <gtest/gtest.h>

#include "test/codec_test_util.h"

namespace ft::erasure::codec_test {
namespace {

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

}  // namespace
}  // namespace ft::erasure::codec_test
