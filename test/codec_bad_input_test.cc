// Codec (erasure/codec.h) given bad input: an error naming the bad value, and nothing written.
#include <gtest/gtest.h>

#include "test/codec_test_util.h"

namespace ft::erasure::codec_test {
namespace {

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

}  // namespace
}  // namespace ft::erasure::codec_test
