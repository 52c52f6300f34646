// Tests of recovery/spare_choice: which idle spare takes a lost rank. The domain rule first
// (the fewest owners whose other fragments share the spare's domain, then the fewest owners in
// it), then FT_SPARE_PRIORITY, then launch order; and the spare's connection private data.
#include "recovery/spare_choice.h"

#include <gtest/gtest.h>

#include <vector>

#include "recovery/connection.h"
#include "recovery/placement.h"

namespace ft::recovery {
namespace {

constexpr uint32_t kNodes = 8;

// 8 nodes, each its own domain, RS(3,2): each owner's 5 holders are 5 of the 7 others.
Placement EightNodes() {
  std::vector<NodeSpec> specs;
  for (uint32_t node = 0; node < kNodes; ++node) specs.push_back({node, 1 << 20, 64 << 10});
  Result<Placement> placement = ComputePlacement(specs, 3, 2);
  EXPECT_TRUE(placement.ok()) << placement.status();
  return *placement;
}

std::vector<uint32_t> OwnDomains() {
  std::vector<uint32_t> domains;
  for (uint32_t node = 0; node < kNodes; ++node) domains.push_back(node);
  return domains;
}

TEST(SpareChoiceTest, NoSparesNoChoice) {
  const Placement placement = EightNodes();
  EXPECT_FALSE(ChooseSpare({}, 5, &placement, OwnDomains()).has_value());
}

TEST(SpareChoiceTest, ADomainOfItsOwnBeatsLaunchOrderAndPriority) {
  const Placement placement = EightNodes();
  // Spare 8 shares rank 2's domain: rank 2 holds fragments of owners that rank 5 hosted too.
  const std::vector<SpareCandidate> spares = {{8, 0, 2}, {9, kLaunchOrderPriority, 109}};
  const auto choice = ChooseSpare(spares, 5, &placement, OwnDomains());
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(spares[choice->index].id, 9u) << choice->Describe(spares[choice->index]);
  EXPECT_EQ(choice->clashes, 0u);
  // The clashes counted for spare 8: every owner rank 5 hosts that also has a fragment on rank 2.
  const auto only_clashing = ChooseSpare({&spares[0], 1}, 5, &placement, OwnDomains());
  uint32_t expected = 0;
  NodeId last = UINT32_MAX;
  for (const HostedFragment& hosted : placement.HostedBy(5)) {
    if (hosted.owner == last) continue;
    last = hosted.owner;
    for (const FragmentSlot& slot : placement.HoldersOf(hosted.owner)) {
      if (slot.holder == 2) ++expected;
    }
  }
  ASSERT_GT(expected, 0u) << "the placement must give the test a clash to find";
  EXPECT_EQ(only_clashing->clashes, expected);
}

TEST(SpareChoiceTest, TheLostRanksOwnDomainClashesWithNothingNew) {
  const Placement placement = EightNodes();
  const std::vector<SpareCandidate> spares = {{8, kLaunchOrderPriority, 3},
                                              {9, kLaunchOrderPriority, 5}};
  const auto choice = ChooseSpare(spares, 5, &placement, OwnDomains());
  ASSERT_TRUE(choice.has_value());
  EXPECT_EQ(spares[choice->index].id, 9u);
}

TEST(SpareChoiceTest, AmongEqualDomainsPriorityThenLaunchOrder) {
  const Placement placement = EightNodes();
  std::vector<SpareCandidate> spares = {
      {8, kLaunchOrderPriority, 100}, {9, 4, 101}, {10, 4, 102}, {11, kLaunchOrderPriority, 103}};
  auto choice = ChooseSpare(spares, 5, &placement, OwnDomains());
  EXPECT_EQ(spares[choice->index].id, 9u);
  spares[1].priority = kLaunchOrderPriority;
  spares[2].priority = kLaunchOrderPriority;
  choice = ChooseSpare(spares, 5, &placement, OwnDomains());
  EXPECT_EQ(spares[choice->index].id, 8u);
  // Nothing committed: no placement to clash with.
  choice = ChooseSpare(spares, 5, nullptr, {});
  EXPECT_EQ(spares[choice->index].id, 8u);
}

TEST(SpareChoiceTest, SpareConnectRoundTripsAndRefusesWhatIsNotOne) {
  const std::vector<std::byte> endpoint(20, std::byte{0xab});
  const std::vector<std::byte> data = EncodeSpareConnect(9, 3, 1234, endpoint);
  EXPECT_LE(data.size(), 44u);
  Result<SpareConnect> parsed = ParseSpareConnect(data, 9);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->priority, 3u);
  EXPECT_EQ(parsed->domain, 1234u);
  EXPECT_EQ(std::vector<std::byte>(parsed->endpoint.begin(), parsed->endpoint.end()), endpoint);
  EXPECT_EQ(ParseSpareConnect(data, 10).status().code(), StatusCode::kInternal);  // another spare
  const std::vector<std::byte> control = EncodeControlConnect(9, kJoiningEpoch, endpoint);
  EXPECT_EQ(ParseSpareConnect(control, 9).status().code(), StatusCode::kInternal);
  const std::vector<std::byte> short_data(data.begin(), data.begin() + 20);
  EXPECT_EQ(ParseSpareConnect(short_data, 9).status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace ft::recovery
