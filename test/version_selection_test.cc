// Version selection (recovery/version_selection.h): the common version to roll back to.
#include "recovery/version_selection.h"

#include <gtest/gtest.h>

#include "recovery/protocol.h"
#include "status_matchers.h"

namespace ft::recovery {
namespace {

using test::HasError;

constexpr int kK = 4;

// Four owners with images, each with `newest` intact fragments of V and `older` of V - 1.
VersionSelection Counted(const std::vector<std::pair<int, int>>& counts, bool older_in_place) {
  VersionSelection selection(7, older_in_place, kK, std::vector<uint8_t>(counts.size(), 1));
  for (NodeId owner = 0; owner < counts.size(); ++owner) {
    const auto [newest, older] = counts[owner];
    for (int i = 0; i < std::max(newest, older); ++i) {
      selection.Count(owner, static_cast<uint8_t>((i < newest ? kNewestIntact : 0) |
                                                  (i < older ? kOlderIntact : 0)));
    }
  }
  return selection;
}

TEST(VersionSelectionTest, TheNewestVersionWhenEveryOwnerHasKFragmentsOfIt) {
  Result<uint64_t> chosen = Counted({{6, 6}, {4, 0}, {5, 6}, {4, 4}}, true).Choose();
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(*chosen, 7u);
}

TEST(VersionSelectionTest, TheVersionBeforeWhenOneOwnerLostTooManyOfTheNewest) {
  Result<uint64_t> chosen = Counted({{6, 6}, {3, 5}, {5, 6}, {4, 4}}, true).Choose();
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(*chosen, 6u);
}

TEST(VersionSelectionTest, NoOlderVersionInPlaceMeansDataLossNamingTheOwner) {
  Result<uint64_t> chosen = Counted({{6, 6}, {3, 5}, {5, 6}, {4, 4}}, false).Choose();
  EXPECT_TRUE(HasError(chosen.status(), StatusCode::kDataLoss,
                       "owner 1 has 3 intact fragments of version 7"));
}

TEST(VersionSelectionTest, EveryLostOwnerIsNamed) {
  Result<uint64_t> chosen = Counted({{2, 1}, {6, 6}, {0, 3}, {4, 4}}, true).Choose();
  EXPECT_TRUE(HasError(chosen.status(), StatusCode::kDataLoss, "owner 0 has 2"));
  EXPECT_TRUE(HasError(chosen.status(), StatusCode::kDataLoss, "owner 2 has 0"));
  EXPECT_EQ(chosen.status().message().find("owner 1"), std::string_view::npos);
}

TEST(VersionSelectionTest, OwnersRestorableOnlyAtDifferentVersionsHaveNoCommonOne) {
  // Owner 0 only has V, owner 1 only V - 1: rolling back must be to one version for all.
  Result<uint64_t> chosen = Counted({{6, 2}, {2, 6}}, true).Choose();
  EXPECT_TRUE(HasError(chosen.status(), StatusCode::kDataLoss, "no version every node"));
}

TEST(VersionSelectionTest, OwnersWithoutAnImageAndUnknownOwnersAreIgnored) {
  VersionSelection selection(3, false, 2, {1, 0, 1});
  for (NodeId owner : {0u, 0u, 2u, 2u, 9u}) selection.Count(owner, kNewestIntact);
  Result<uint64_t> chosen = selection.Choose();
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  EXPECT_EQ(*chosen, 3u);
  EXPECT_EQ(selection.newest_count(1), 0);
}

TEST(VersionSelectionTest, TheTableShowsEveryOwnerAndMarksTheLostOnes) {
  const std::string table = Counted({{6, 6}, {3, 2}}, true).Table();
  EXPECT_NE(table.find("owner 0: 6 | 6"), std::string::npos) << table;
  EXPECT_NE(table.find("owner 1: 3 | 2  LOST"), std::string::npos) << table;
}

}  // namespace
}  // namespace ft::recovery
