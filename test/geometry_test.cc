// Tests of erasure/geometry.h: StripeGeometry (how an image is cut into stripes) and ImageLayout
// (which regions a range of the image falls in), checked against hand-computed values and a
// byte-by-byte brute-force mapping.
//
// Randomised tests print their seed; replay a failure with FT_TEST_SEED=<seed> and --gtest_filter.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "erasure/geometry.h"
#include "test/status_matchers.h"

namespace ft::erasure {
namespace {

constexpr uint64_t kMaxU64 = std::numeric_limits<uint64_t>::max();

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

using ft::test::HasError;

void ExpectCell(const StripeGeometry& geometry, uint64_t stripe, int column, uint64_t offset,
                uint64_t image_bytes, uint64_t padding_bytes) {
  SCOPED_TRACE(StrCat("stripe ", stripe, ", column ", column));
  const CellExtent extent = geometry.DataCell(stripe, column);
  EXPECT_EQ(extent.image_offset, offset);
  EXPECT_EQ(extent.image_bytes, image_bytes);
  EXPECT_EQ(extent.padding_bytes, padding_bytes);
}

// ---------------------------------------------------------------------------------------------
// StripeGeometry

TEST(StripeGeometryTest, ImageSmallerThanOneCell) {
  const Result<StripeGeometry> geometry = StripeGeometry::Create(5, 16, 3, 1);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  EXPECT_EQ(geometry->image_bytes(), 5u);
  EXPECT_EQ(geometry->cell_bytes(), 16u);
  EXPECT_EQ(geometry->k(), 3);
  EXPECT_EQ(geometry->m(), 1);
  EXPECT_EQ(geometry->width(), 4);
  EXPECT_EQ(geometry->stripes(), 1u);
  EXPECT_EQ(geometry->stripe_data_bytes(), 48u);
  EXPECT_EQ(geometry->padded_image_bytes(), 48u);
  EXPECT_EQ(geometry->tail_padding_bytes(), 43u);
  EXPECT_EQ(geometry->fragment_bytes(), 16u);
  ExpectCell(*geometry, 0, 0, 0, 5, 11);
  ExpectCell(*geometry, 0, 1, 16, 0, 16);
  ExpectCell(*geometry, 0, 2, 32, 0, 16);
}

TEST(StripeGeometryTest, OneByteImage) {
  const Result<StripeGeometry> geometry = StripeGeometry::Create(1, 1, 1, 1);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  EXPECT_EQ(geometry->stripes(), 1u);
  EXPECT_EQ(geometry->padded_image_bytes(), 1u);
  EXPECT_EQ(geometry->tail_padding_bytes(), 0u);
  EXPECT_EQ(geometry->fragment_bytes(), 1u);
  ExpectCell(*geometry, 0, 0, 0, 1, 0);
}

TEST(StripeGeometryTest, WholeCellOfPaddingInLastStripe) {
  // 100 bytes, 4 x 10-byte data cells per stripe: stripes of 40 bytes, 3 stripes (120 bytes).
  // The last stripe holds image [80, 100) in columns 0 and 1; columns 2 and 3 are all padding.
  const Result<StripeGeometry> geometry = StripeGeometry::Create(100, 10, 4, 2);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  EXPECT_EQ(geometry->width(), 6);
  EXPECT_EQ(geometry->stripes(), 3u);
  EXPECT_EQ(geometry->stripe_data_bytes(), 40u);
  EXPECT_EQ(geometry->padded_image_bytes(), 120u);
  EXPECT_EQ(geometry->tail_padding_bytes(), 20u);
  EXPECT_EQ(geometry->fragment_bytes(), 30u);
  ExpectCell(*geometry, 0, 0, 0, 10, 0);
  ExpectCell(*geometry, 0, 3, 30, 10, 0);
  ExpectCell(*geometry, 1, 0, 40, 10, 0);
  ExpectCell(*geometry, 1, 3, 70, 10, 0);
  ExpectCell(*geometry, 2, 0, 80, 10, 0);
  ExpectCell(*geometry, 2, 1, 90, 10, 0);
  ExpectCell(*geometry, 2, 2, 100, 0, 10);
  ExpectCell(*geometry, 2, 3, 110, 0, 10);
}

TEST(StripeGeometryTest, PartialCellThenPadding) {
  // 95 bytes: the last stripe has one full cell, one 5-byte partial cell, then a padding cell.
  const Result<StripeGeometry> geometry = StripeGeometry::Create(95, 10, 3, 1);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  EXPECT_EQ(geometry->stripes(), 4u);  // 30-byte stripes: 30, 60, 90, then 5 bytes
  EXPECT_EQ(geometry->padded_image_bytes(), 120u);
  EXPECT_EQ(geometry->tail_padding_bytes(), 25u);
  EXPECT_EQ(geometry->fragment_bytes(), 40u);
  ExpectCell(*geometry, 3, 0, 90, 5, 5);
  ExpectCell(*geometry, 3, 1, 100, 0, 10);
  ExpectCell(*geometry, 3, 2, 110, 0, 10);
}

TEST(StripeGeometryTest, ExactMultipleHasNoPadding) {
  const Result<StripeGeometry> geometry = StripeGeometry::Create(3 * 8 * 4096, 4096, 8, 3);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  EXPECT_EQ(geometry->stripes(), 3u);
  EXPECT_EQ(geometry->padded_image_bytes(), 3u * 8 * 4096);
  EXPECT_EQ(geometry->tail_padding_bytes(), 0u);
  EXPECT_EQ(geometry->fragment_bytes(), 3u * 4096);
  for (uint64_t stripe = 0; stripe < 3; ++stripe) {
    for (int column = 0; column < 8; ++column) {
      ExpectCell(*geometry, stripe, column, (stripe * 8 + column) * 4096, 4096, 0);
    }
  }
}

TEST(StripeGeometryTest, LargeImagesKeepExactArithmetic) {
  // 2^61 + 1 bytes in 1 MiB cells, k = 4: 2^39 full stripes and one holding a single byte.
  const uint64_t image = (uint64_t{1} << 61) + 1;
  const Result<StripeGeometry> geometry = StripeGeometry::Create(image, uint64_t{1} << 20, 4, 2);
  ASSERT_TRUE(geometry.ok()) << geometry.status();
  EXPECT_EQ(geometry->stripes(), (uint64_t{1} << 39) + 1);
  EXPECT_EQ(geometry->padded_image_bytes(), (uint64_t{1} << 61) + (uint64_t{1} << 22));
  EXPECT_EQ(geometry->tail_padding_bytes(), (uint64_t{1} << 22) - 1);
  EXPECT_EQ(geometry->fragment_bytes(), ((uint64_t{1} << 39) + 1) << 20);
  ExpectCell(*geometry, uint64_t{1} << 39, 0, uint64_t{1} << 61, 1, (uint64_t{1} << 20) - 1);
  ExpectCell(*geometry, uint64_t{1} << 39, 3, (uint64_t{1} << 61) + 3 * (uint64_t{1} << 20), 0,
             uint64_t{1} << 20);

  // Near the top of the accepted range: 2^62 - 1 bytes, 64 cells of 2^57 - 1 bytes.
  // Stripe data = 32 * (2^57 - 1) = 2^62 - 32, so 2 stripes, padded 2^63 - 64.
  const uint64_t big_cell = (uint64_t{1} << 57) - 1;
  const Result<StripeGeometry> top =
      StripeGeometry::Create((uint64_t{1} << 62) - 1, big_cell, 32, 32);
  ASSERT_TRUE(top.ok()) << top.status();
  EXPECT_EQ(top->stripes(), 2u);
  EXPECT_EQ(top->padded_image_bytes(), (uint64_t{1} << 63) - 64);
  EXPECT_EQ(top->tail_padding_bytes(), (uint64_t{1} << 62) - 63);
  EXPECT_EQ(top->fragment_bytes(), 2 * big_cell);
  ExpectCell(*top, 1, 0, (uint64_t{1} << 62) - 32, 31, big_cell - 31);
  ExpectCell(*top, 1, 31, (uint64_t{1} << 62) - 32 + 31 * big_cell, 0, big_cell);
}

TEST(StripeGeometryTest, RandomShapesTileTheImage) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 300; ++trial) {
    const uint64_t image = std::uniform_int_distribution<uint64_t>(1, 200000)(rng);
    const uint64_t cell = std::uniform_int_distribution<uint64_t>(1, trial % 2 ? 64 : 9000)(rng);
    const int k = std::uniform_int_distribution<int>(1, 32)(rng);
    const int m = std::uniform_int_distribution<int>(1, 64 - k)(rng);
    SCOPED_TRACE(StrCat("trial ", trial, ": image ", image, ", cell ", cell, ", k ", k, ", m ", m));
    const Result<StripeGeometry> geometry = StripeGeometry::Create(image, cell, k, m);
    ASSERT_TRUE(geometry.ok()) << geometry.status();
    const uint64_t stripes = geometry->stripes();
    // The fewest stripes that hold the image.
    ASSERT_GE(stripes * k * cell, image);
    ASSERT_LT((stripes - 1) * k * cell, image);
    ASSERT_EQ(geometry->padded_image_bytes(), stripes * k * cell);
    ASSERT_EQ(geometry->tail_padding_bytes(), stripes * k * cell - image);
    ASSERT_EQ(geometry->fragment_bytes(), stripes * cell);
    ASSERT_EQ(geometry->width(), k + m);
    if (stripes > 2000) continue;  // walking every cell is for the smaller shapes
    // Walk the cells in row-major order with an independent cursor.
    uint64_t cursor = 0;
    uint64_t covered = 0;
    uint64_t padding = 0;
    for (uint64_t s = 0; s < stripes; ++s) {
      for (int c = 0; c < k; ++c) {
        const CellExtent extent = geometry->DataCell(s, c);
        const uint64_t expected_bytes = cursor >= image ? 0 : std::min(cell, image - cursor);
        ASSERT_EQ(extent.image_offset, cursor) << "stripe " << s << ", column " << c;
        ASSERT_EQ(extent.image_bytes, expected_bytes) << "stripe " << s << ", column " << c;
        ASSERT_EQ(extent.padding_bytes, cell - expected_bytes)
            << "stripe " << s << ", column " << c;
        covered += extent.image_bytes;
        padding += extent.padding_bytes;
        cursor += cell;
      }
    }
    ASSERT_EQ(covered, image);
    ASSERT_EQ(padding, geometry->tail_padding_bytes());
  }
}

TEST(StripeGeometryTest, RejectsBadInputNamingTheValue) {
  struct Case {
    uint64_t image;
    uint64_t cell;
    int k;
    int m;
    const char* fragment;
  };
  const Case cases[] = {
      {0, 16, 4, 2, "image_bytes = 0"},
      {100, 0, 4, 2, "cell_bytes = 0"},
      {100, 16, 0, 2, "k = 0"},
      {100, 16, -4, 2, "k = -4"},
      {100, 16, 4, 0, "m = 0"},
      {100, 16, 4, -1, "m = -1"},
      {100, 16, 60, 5, "65"},
      {100, 16, 1, 64, "65"},
      {100, 16, INT_MAX, 1, "k + m = 2147483648"},  // k + m must not overflow int
      {100, 16, 1, INT_MAX, "k + m = 2147483648"},
      {100, 16, INT_MAX, INT_MAX, "k + m = 4294967294"},
      {kMaxU64, 16, 4, 2, "18446744073709551615"},
      {uint64_t{1} << 63, 1, 1, 1, "9223372036854775808"},
      {100, kMaxU64, 4, 2, "18446744073709551615"},
      {100, uint64_t{1} << 62, 4, 2, "4611686018427387904"},
      {100, uint64_t{1} << 58, 32, 32, "288230376151711744"},
  };
  for (const Case& c : cases) {
    const Result<StripeGeometry> geometry = StripeGeometry::Create(c.image, c.cell, c.k, c.m);
    EXPECT_TRUE(HasError(geometry.status(), StatusCode::kInvalidArgument, c.fragment))
        << "Create(" << c.image << ", " << c.cell << ", " << c.k << ", " << c.m << ")";
  }
}

TEST(StripeGeometryDeathTest, DataCellOutsideTheGeometryAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const Result<StripeGeometry> geometry = StripeGeometry::Create(100, 10, 4, 2);
  ASSERT_TRUE(geometry.ok());
  EXPECT_DEATH((void)geometry->DataCell(3, 0), "check failed");
  EXPECT_DEATH((void)geometry->DataCell(0, 4), "check failed");
  EXPECT_DEATH((void)geometry->DataCell(0, -1), "check failed");
}

// ---------------------------------------------------------------------------------------------
// ImageLayout

// Byte-by-byte map of an image made of `regions`: region and offset of every image byte.
struct BruteForceMap {
  explicit BruteForceMap(const std::vector<uint64_t>& regions) {
    for (size_t r = 0; r < regions.size(); ++r) {
      for (uint64_t b = 0; b < regions[r]; ++b) {
        region_of.push_back(r);
        offset_in.push_back(b);
      }
    }
  }

  // The slices of [offset, offset + bytes): maximal runs of consecutive bytes in one region.
  std::vector<RegionSlice> Slices(uint64_t offset, uint64_t bytes) const {
    std::vector<RegionSlice> out;
    for (uint64_t i = offset; i < offset + bytes; ++i) {
      if (!out.empty() && out.back().region == region_of[i] &&
          out.back().region_offset + out.back().bytes == offset_in[i]) {
        ++out.back().bytes;
      } else {
        out.push_back(RegionSlice{region_of[i], offset_in[i], 1});
      }
    }
    return out;
  }

  std::vector<size_t> region_of;
  std::vector<uint64_t> offset_in;
};

std::string Describe(const std::vector<RegionSlice>& slices) {
  std::string text;
  for (const RegionSlice& s : slices) {
    text += StrCat("{region ", s.region, ", offset ", s.region_offset, ", bytes ", s.bytes, "} ");
  }
  return text;
}

TEST(ImageLayoutTest, SingleRegion) {
  const std::vector<uint64_t> regions = {10};
  const Result<ImageLayout> layout = ImageLayout::Create(regions);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->regions(), 1u);
  EXPECT_EQ(layout->image_bytes(), 10u);
  EXPECT_EQ(layout->region_start(0), 0u);
  std::vector<RegionSlice> slices;
  layout->Slices(3, 5, &slices);
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{0, 3, 5}}));
  layout->Slices(0, 10, &slices);
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{0, 0, 10}}));
}

TEST(ImageLayoutTest, HandComputedSlices) {
  const std::vector<uint64_t> regions = {1, 7, 4096, 13};
  const Result<ImageLayout> layout = ImageLayout::Create(regions);
  ASSERT_TRUE(layout.ok()) << layout.status();
  EXPECT_EQ(layout->regions(), 4u);
  EXPECT_EQ(layout->image_bytes(), 4117u);
  EXPECT_EQ(layout->region_start(0), 0u);
  EXPECT_EQ(layout->region_start(1), 1u);
  EXPECT_EQ(layout->region_start(2), 8u);
  EXPECT_EQ(layout->region_start(3), 4104u);
  std::vector<RegionSlice> slices;
  layout->Slices(0, 4117, &slices);
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{0, 0, 1}, {1, 0, 7}, {2, 0, 4096}, {3, 0, 13}}));
  layout->Slices(5, 10, &slices);  // [5, 15): region 1 bytes 4..7, region 2 bytes 0..7
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{1, 4, 3}, {2, 0, 7}}));
  layout->Slices(4100, 10, &slices);  // [4100, 4110): region 2 bytes 4092..4096, region 3 0..6
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{2, 4092, 4}, {3, 0, 6}}));
  layout->Slices(8, 1, &slices);  // exactly the first byte of region 2
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{2, 0, 1}}));
  layout->Slices(7, 1, &slices);  // exactly the last byte of region 1
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{1, 6, 1}}));
}

TEST(ImageLayoutTest, EmptyRangeGivesNoSlices) {
  const std::vector<uint64_t> regions = {3, 4};
  const Result<ImageLayout> layout = ImageLayout::Create(regions);
  ASSERT_TRUE(layout.ok()) << layout.status();
  std::vector<RegionSlice> slices = {{9, 9, 9}};  // replaced, not appended to
  layout->Slices(0, 0, &slices);
  EXPECT_TRUE(slices.empty());
  slices = {{9, 9, 9}};
  layout->Slices(3, 0, &slices);
  EXPECT_TRUE(slices.empty());
  slices = {{9, 9, 9}};
  layout->Slices(7, 0, &slices);  // empty range at the very end of the image
  EXPECT_TRUE(slices.empty());
  slices = {{9, 9, 9}};
  layout->Slices(1, 5, &slices);
  EXPECT_EQ(slices, (std::vector<RegionSlice>{{0, 1, 2}, {1, 0, 3}}));
}

TEST(ImageLayoutTest, EveryCellMatchesBruteForceMapping) {
  const std::vector<uint64_t> regions = {1, 7, 4096, 13, uint64_t{1} << 20};
  const Result<ImageLayout> layout = ImageLayout::Create(regions);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const BruteForceMap map(regions);
  ASSERT_EQ(layout->image_bytes(), map.region_of.size());
  ASSERT_EQ(layout->regions(), regions.size());
  uint64_t start = 0;
  for (size_t r = 0; r < regions.size(); ++r) {
    EXPECT_EQ(layout->region_start(r), start) << "region " << r;
    start += regions[r];
  }

  const struct {
    uint64_t cell;
    int k;
    int m;
  } shapes[] = {{3, 2, 1}, {7, 4, 2}, {4096, 3, 2}, {4099, 6, 3}, {65541, 4, 2}};
  std::vector<RegionSlice> slices;
  for (const auto& shape : shapes) {
    SCOPED_TRACE(StrCat("cell ", shape.cell, ", k ", shape.k));
    const Result<StripeGeometry> geometry =
        StripeGeometry::Create(layout->image_bytes(), shape.cell, shape.k, shape.m);
    ASSERT_TRUE(geometry.ok()) << geometry.status();
    uint64_t straddling = 0;
    uint64_t covered = 0;
    for (uint64_t s = 0; s < geometry->stripes(); ++s) {
      for (int c = 0; c < shape.k; ++c) {
        const CellExtent extent = geometry->DataCell(s, c);
        if (extent.image_bytes == 0) continue;
        layout->Slices(extent.image_offset, extent.image_bytes, &slices);
        const std::vector<RegionSlice> expected =
            map.Slices(extent.image_offset, extent.image_bytes);
        ASSERT_EQ(slices, expected) << "stripe " << s << ", column " << c << ": got "
                                    << Describe(slices) << "expected " << Describe(expected);
        if (slices.size() > 1) ++straddling;
        covered += extent.image_bytes;
      }
    }
    EXPECT_EQ(covered, layout->image_bytes());
    EXPECT_GT(straddling, 0u);  // the test did exercise cells spanning regions
  }
}

TEST(ImageLayoutTest, RandomRangesMatchBruteForceMapping) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> regions;
  for (int r = 0; r < 40; ++r) {
    // Mostly tiny regions so that ranges cross many of them.
    regions.push_back(std::uniform_int_distribution<uint64_t>(1, r % 5 == 0 ? 3000 : 20)(rng));
  }
  const Result<ImageLayout> layout = ImageLayout::Create(regions);
  ASSERT_TRUE(layout.ok()) << layout.status();
  const BruteForceMap map(regions);
  const uint64_t image = layout->image_bytes();
  ASSERT_EQ(image, map.region_of.size());
  std::vector<RegionSlice> slices;
  for (int trial = 0; trial < 500; ++trial) {
    const uint64_t offset = std::uniform_int_distribution<uint64_t>(0, image)(rng);
    const uint64_t bytes = std::uniform_int_distribution<uint64_t>(0, image - offset)(rng);
    layout->Slices(offset, bytes, &slices);
    const std::vector<RegionSlice> expected = map.Slices(offset, bytes);
    ASSERT_EQ(slices, expected) << "Slices(" << offset << ", " << bytes << "): got "
                                << Describe(slices) << "expected " << Describe(expected);
  }
}

TEST(ImageLayoutTest, RejectsEmptyAndZeroSizedRegions) {
  EXPECT_TRUE(HasError(ImageLayout::Create({}).status(), StatusCode::kInvalidArgument, "region"));
  const std::vector<uint64_t> zero_first = {0, 5};
  EXPECT_TRUE(
      HasError(ImageLayout::Create(zero_first).status(), StatusCode::kInvalidArgument, "region 0"));
  const std::vector<uint64_t> zero_middle = {5, 0, 3};
  EXPECT_TRUE(HasError(ImageLayout::Create(zero_middle).status(), StatusCode::kInvalidArgument,
                       "region 1"));
  const std::vector<uint64_t> zero_last = {5, 3, 0};
  EXPECT_TRUE(
      HasError(ImageLayout::Create(zero_last).status(), StatusCode::kInvalidArgument, "region 2"));
}

TEST(ImageLayoutTest, RejectsImagesThatOverflow) {
  const std::vector<std::vector<uint64_t>> cases = {
      {kMaxU64},
      {kMaxU64 / 2 + 1, kMaxU64 / 2 + 1},
      {uint64_t{1} << 63, uint64_t{1} << 63},
      {1, kMaxU64},
  };
  for (const std::vector<uint64_t>& regions : cases) {
    const Result<ImageLayout> layout = ImageLayout::Create(regions);
    EXPECT_EQ(layout.status().code(), StatusCode::kInvalidArgument)
        << regions.size() << " regions, first " << regions[0] << ": " << layout.status();
  }
}

TEST(ImageLayoutDeathTest, SlicesBeyondTheImageAbort) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::vector<uint64_t> regions = {3, 4};
  const Result<ImageLayout> layout = ImageLayout::Create(regions);
  ASSERT_TRUE(layout.ok());
  std::vector<RegionSlice> slices;
  EXPECT_DEATH(layout->Slices(0, 8, &slices), "check failed");
  EXPECT_DEATH(layout->Slices(8, 0, &slices), "check failed");
  EXPECT_DEATH(layout->Slices(5, kMaxU64, &slices), "check failed");
}

}  // namespace
}  // namespace ft::erasure
