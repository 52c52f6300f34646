// Tests of erasure/fragment.h: SealHeader and CheckHeader, the checks that let a reader trust a
// fragment it read back from a holder (a header with the right identity, geometry and version
// and a valid CRC over itself and the cell CRCs), and refuse a torn, stale or foreign one.
#include "erasure/fragment.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "test/status_matchers.h"

namespace ft::erasure {
namespace {

using ft::test::HasError;

constexpr uint64_t kStripes = 5;

FragmentHeader Expected() {
  FragmentHeader h;
  h.version = 12;
  h.epoch = 3;
  h.owner = 7;
  h.column = 2;
  h.k = 4;
  h.m = 2;
  h.cell_bytes = 4096;
  h.image_bytes = 70000;
  h.stripes = kStripes;
  return h;
}

// A header area as an owner writes it: `header`, then one CRC per stripe, sealed.
std::vector<std::byte> SealedArea(const FragmentHeader& header) {
  std::vector<std::byte> area(HeaderAreaBytes(header.stripes), std::byte{0});
  std::memcpy(area.data(), &header, sizeof(header));
  uint64_t* crcs = CellCrcs(std::span<std::byte>(area));
  for (uint64_t s = 0; s < header.stripes; ++s) crcs[s] = 0x0123456789ABCDEFull * (s + 1);
  SealHeader(area);
  return area;
}

TEST(FragmentHeaderTest, SealedHeaderChecksOk) {
  const std::vector<std::byte> area = SealedArea(Expected());
  EXPECT_TRUE(CheckHeader(area, Expected()).ok()) << CheckHeader(area, Expected());
  FragmentHeader sealed;
  std::memcpy(&sealed, area.data(), sizeof(sealed));
  EXPECT_NE(sealed.header_crc, 0u);
}

TEST(FragmentHeaderTest, AreaSizeCoversHeaderAndCellCrcsAligned) {
  EXPECT_EQ(HeaderAreaBytes(0), 128u);  // 72 header bytes, aligned to 64
  EXPECT_EQ(HeaderAreaBytes(kStripes), 128u);
  EXPECT_EQ(HeaderAreaBytes(8), 192u);  // 72 + 64 = 136
  EXPECT_EQ(HeaderAreaBytes(100) % kHeaderAlignment, 0u);
}

TEST(FragmentHeaderTest, WrongMagicIsNoHeader) {
  FragmentHeader header = Expected();
  header.magic = 0x1122334455667788ull;
  const std::vector<std::byte> area = SealedArea(header);
  EXPECT_TRUE(HasError(CheckHeader(area, Expected()), StatusCode::kDataLoss,
                       "no header (magic 0x1122334455667788)"));
}

// Each field of a sealed header that differs from `expected` is DataLoss naming it (magic is
// checked against kFragmentMagic, above).
TEST(FragmentHeaderTest, EachFieldDifferingFromExpectedIsDataLossNamingIt) {
  struct Case {
    const char* field;
    std::function<void(FragmentHeader&)> change;  // applied to `expected`
    std::string names;                            // what the message must say
  };
  const std::vector<Case> cases{
      {"version", [](FragmentHeader& h) { h.version = 13; }, "holds version 12, expected 13"},
      {"epoch", [](FragmentHeader& h) { h.epoch = 4; }, "written in epoch 3, expected 4"},
      {"owner", [](FragmentHeader& h) { h.owner = 8; }, "describes owner 7 "},
      {"column", [](FragmentHeader& h) { h.column = 3; }, "column 2 "},
      {"k", [](FragmentHeader& h) { h.k = 5; }, "RS(4,2)"},
      {"m", [](FragmentHeader& h) { h.m = 3; }, "RS(4,2)"},
      {"cell_bytes", [](FragmentHeader& h) { h.cell_bytes = 8192; }, "cell 4096 "},
      {"image_bytes", [](FragmentHeader& h) { h.image_bytes = 69999; }, "image 70000"},
      {"stripes", [](FragmentHeader& h) { h.stripes = 4; }, "5 stripes, expected 4"},
  };
  const std::vector<std::byte> area = SealedArea(Expected());
  for (const Case& c : cases) {
    FragmentHeader expected = Expected();
    c.change(expected);
    EXPECT_TRUE(HasError(CheckHeader(area, expected), StatusCode::kDataLoss, c.names)) << c.field;
    // The message says whose fragment it is (the expected one).
    EXPECT_TRUE(HasError(CheckHeader(area, expected), StatusCode::kDataLoss,
                         StrCat("fragment ", expected.column, " of owner ", expected.owner)))
        << c.field;
  }
}

// Any one bit flipped in the sealed header (past the magic and stripe count, which are checked
// first) is a header CRC mismatch: a torn or overwritten header.
TEST(FragmentHeaderTest, FlippedHeaderBitIsCrcMismatch) {
  const std::vector<std::byte> sealed = SealedArea(Expected());
  const size_t stripes_at = offsetof(FragmentHeader, stripes);
  int flips = 0;
  for (size_t byte = sizeof(uint64_t); byte < sizeof(FragmentHeader); ++byte) {
    if (byte >= stripes_at && byte < stripes_at + sizeof(uint64_t)) continue;
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<std::byte> area = sealed;
      area[byte] ^= std::byte{static_cast<uint8_t>(1u << bit)};
      EXPECT_TRUE(
          HasError(CheckHeader(area, Expected()), StatusCode::kDataLoss, "header CRC mismatch"))
          << "byte " << byte << " bit " << bit;
      ++flips;
    }
  }
  EXPECT_EQ(flips, 8 * (72 - 16));
}

TEST(FragmentHeaderTest, FlippedCellCrcBitIsHeaderCrcMismatch) {
  const std::vector<std::byte> sealed = SealedArea(Expected());
  for (uint64_t stripe = 0; stripe < kStripes; ++stripe) {
    for (int bit : {0, 31, 63}) {
      std::vector<std::byte> area = sealed;
      CellCrcs(std::span<std::byte>(area))[stripe] ^= uint64_t{1} << bit;
      EXPECT_TRUE(
          HasError(CheckHeader(area, Expected()), StatusCode::kDataLoss, "header CRC mismatch"))
          << "stripe " << stripe << " bit " << bit;
    }
  }
}

TEST(FragmentHeaderTest, TooShortAreaIsRefused) {
  const std::vector<std::byte> sealed = SealedArea(Expected());
  // Shorter than the fixed header.
  const std::span<const std::byte> stub(sealed.data(), sizeof(FragmentHeader) - 1);
  EXPECT_TRUE(HasError(CheckHeader(stub, Expected()), StatusCode::kDataLoss, "too short"));
  EXPECT_TRUE(HasError(CheckHeader({}, Expected()), StatusCode::kDataLoss, "too short"));
  // The header, but not all of its stripes' cell CRCs.
  const size_t crcs_end = sizeof(FragmentHeader) + kStripes * sizeof(uint64_t);
  const std::span<const std::byte> cut(sealed.data(), crcs_end - 1);
  EXPECT_TRUE(HasError(CheckHeader(cut, Expected()), StatusCode::kDataLoss, "5 stripes"));
}

TEST(FragmentHeaderDeathTest, SealingAnAreaTooShortForItsStripesIsAProgrammerError) {
  std::vector<std::byte> area = SealedArea(Expected());
  area.resize(sizeof(FragmentHeader) + 8);  // room for one cell CRC of five
  EXPECT_DEATH(SealHeader(area), "");
}

}  // namespace
}  // namespace ft::erasure
