// Tests of recovery/placement: validation, determinism, the structural invariants of every
// placement (distinct holders, HostedBy == HoldersOf, packed extents within capacity), spreading
// over failure domains, balance, borrowing, and the errors of a world that is too small.
#include "recovery/placement.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ftengine/status.h"

namespace ft::recovery {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;

// n nodes with equal footprints; capacity fits `fragments_each` fragments; domain(rank).
std::vector<NodeSpec> World(size_t n, uint64_t footprint, uint64_t fragments_each,
                            const std::function<uint32_t(size_t)>& domain) {
  std::vector<NodeSpec> nodes(n);
  for (size_t r = 0; r < n; ++r) {
    nodes[r] = NodeSpec{domain(r), footprint * fragments_each, footprint};
  }
  return nodes;
}

uint32_t OnePerNode(size_t rank) { return static_cast<uint32_t>(rank); }

std::function<uint32_t(size_t)> RoundRobin(size_t domains) {
  return [domains](size_t rank) { return static_cast<uint32_t>(rank % domains); };
}

std::function<uint32_t(size_t)> Racks(size_t rack_size) {
  return [rack_size](size_t rank) { return static_cast<uint32_t>(rank / rack_size); };
}

// Contiguous racks of the given sizes (ranks 0..sizes[0]-1 in rack 0, ...).
std::function<uint32_t(size_t)> UnevenRacks(std::vector<size_t> sizes) {
  std::vector<uint32_t> rack_of;
  for (size_t rack = 0; rack < sizes.size(); ++rack) {
    rack_of.insert(rack_of.end(), sizes[rack], static_cast<uint32_t>(rack));
  }
  return [rack_of](size_t rank) { return rack_of[rank]; };
}

Placement MustPlace(const std::vector<NodeSpec>& nodes, int k, int m) {
  Result<Placement> placement = ComputePlacement(nodes, k, m);
  EXPECT_TRUE(placement.ok()) << placement.status();
  if (!placement.ok()) return Placement();
  return std::move(placement).value();
}

// Every structural promise of placement.h.
::testing::AssertionResult IsValid(const std::vector<NodeSpec>& nodes, const Placement& p) {
  const size_t n = nodes.size();
  const auto w = static_cast<size_t>(p.width());
  if (p.nodes() != n) return ::testing::AssertionFailure() << "nodes() = " << p.nodes();
  size_t expected_hosted = 0;
  for (NodeId owner = 0; owner < n; ++owner) {
    const auto holders = p.HoldersOf(owner);
    if (p.footprint_bytes(owner) != nodes[owner].footprint_bytes) {
      return ::testing::AssertionFailure() << "footprint of owner " << owner;
    }
    if (nodes[owner].footprint_bytes == 0) {
      if (!holders.empty() || p.borrowed_bytes(owner) != 0) {
        return ::testing::AssertionFailure() << "owner " << owner << " without footprint placed";
      }
      continue;
    }
    expected_hosted += w;
    if (holders.size() != w) return ::testing::AssertionFailure() << "owner " << owner;
    std::set<NodeId> distinct;
    for (const FragmentSlot& slot : holders) {
      if (slot.holder >= n || slot.holder == owner) {
        return ::testing::AssertionFailure() << "owner " << owner << " holder " << slot.holder;
      }
      distinct.insert(slot.holder);
    }
    if (distinct.size() != w) {
      return ::testing::AssertionFailure() << "owner " << owner << " repeats a holder";
    }
  }
  size_t hosted_total = 0;
  for (NodeId holder = 0; holder < n; ++holder) {
    uint64_t packed = 0;
    const HostedFragment* previous = nullptr;
    for (const HostedFragment& hosted : p.HostedBy(holder)) {
      ++hosted_total;
      if (previous != nullptr &&
          std::pair(previous->owner, previous->column) >= std::pair(hosted.owner, hosted.column)) {
        return ::testing::AssertionFailure() << "holder " << holder << " not in (owner, column)";
      }
      previous = &hosted;
      const auto holders = p.HoldersOf(hosted.owner);
      if (hosted.column < 0 || static_cast<size_t>(hosted.column) >= holders.size() ||
          holders[hosted.column] != FragmentSlot{holder, hosted.store_offset}) {
        return ::testing::AssertionFailure()
               << "holder " << holder << " lists owner " << hosted.owner << " column "
               << hosted.column << " that HoldersOf does not give it";
      }
      // Packed in allocation order: each extent starts where the previous one ended, so the
      // extents never overlap.
      if (hosted.store_offset != packed) {
        return ::testing::AssertionFailure() << "holder " << holder << " extent not packed";
      }
      packed += nodes[hosted.owner].footprint_bytes;
    }
    if (packed > nodes[holder].capacity_bytes) {
      return ::testing::AssertionFailure()
             << "holder " << holder << " uses " << packed << " of " << nodes[holder].capacity_bytes;
    }
    if (p.used_bytes(holder) != packed) {
      return ::testing::AssertionFailure()
             << "used_bytes(" << holder << ") = " << p.used_bytes(holder) << ", extents add to "
             << packed;
    }
  }
  if (hosted_total != expected_hosted) {
    return ::testing::AssertionFailure()
           << hosted_total << " hosted, " << expected_hosted << " expected";
  }
  return ::testing::AssertionSuccess();
}

// Spread (when capacity never forces borrowing): per owner, with c(x) the owner's holders in
// domain x and "open" domains those with a usable node left (c < size, c < size - 1 for the
// owner's own domain): every domain has at most one more holder than any open domain (no repeat
// while a domain is unused; reuse as even as sizes allow), and the own domain has no more than
// any open other domain (it comes last).
::testing::AssertionResult IsSpread(const std::vector<NodeSpec>& nodes, const Placement& p) {
  std::map<uint32_t, size_t> index;  // domain id -> dense index
  for (const NodeSpec& node : nodes) index.try_emplace(node.domain, index.size());
  std::vector<size_t> size(index.size(), 0);
  for (const NodeSpec& node : nodes) ++size[index[node.domain]];
  std::vector<size_t> count(index.size());
  for (NodeId owner = 0; owner < nodes.size(); ++owner) {
    if (nodes[owner].footprint_bytes == 0) continue;
    const size_t own = index[nodes[owner].domain];
    std::fill(count.begin(), count.end(), 0);
    for (const FragmentSlot& slot : p.HoldersOf(owner)) ++count[index[nodes[slot.holder].domain]];
    size_t most = 0;
    size_t fewest_open = std::numeric_limits<size_t>::max();        // any open domain
    size_t fewest_open_other = std::numeric_limits<size_t>::max();  // open, not the own one
    for (size_t x = 0; x < count.size(); ++x) {
      most = std::max(most, count[x]);
      if (count[x] >= size[x] - (x == own ? 1 : 0)) continue;  // not open
      fewest_open = std::min(fewest_open, count[x]);
      if (x != own) fewest_open_other = std::min(fewest_open_other, count[x]);
    }
    if (fewest_open != std::numeric_limits<size_t>::max() && most > fewest_open + 1) {
      return ::testing::AssertionFailure()
             << "owner " << owner << " has " << most << " holders in one domain but " << fewest_open
             << " in an open one";
    }
    if (fewest_open_other != std::numeric_limits<size_t>::max() && count[own] > fewest_open_other) {
      return ::testing::AssertionFailure()
             << "owner " << owner << " has " << count[own] << " holders in its own domain but "
             << fewest_open_other << " in an open other one";
    }
  }
  return ::testing::AssertionSuccess();
}

std::vector<size_t> HostedCounts(const Placement& p) {
  std::vector<size_t> counts(p.nodes());
  for (NodeId node = 0; node < p.nodes(); ++node) counts[node] = p.HostedBy(node).size();
  return counts;
}

// Largest difference of hosted fragments between two nodes of one domain.
size_t WorstSpreadInsideDomains(const std::vector<NodeSpec>& nodes, const Placement& p) {
  std::map<uint32_t, std::pair<size_t, size_t>> min_max;
  for (NodeId node = 0; node < nodes.size(); ++node) {
    const size_t hosted = p.HostedBy(node).size();
    auto [it, inserted] = min_max.try_emplace(nodes[node].domain, hosted, hosted);
    it->second.first = std::min(it->second.first, hosted);
    it->second.second = std::max(it->second.second, hosted);
  }
  size_t worst = 0;
  for (const auto& [domain, mm] : min_max) worst = std::max(worst, mm.second - mm.first);
  return worst;
}

struct Shape {
  int k;
  int m;
};
constexpr Shape kShapes[] = {{1, 1}, {2, 1}, {4, 2}, {6, 3}, {10, 4}};

// ---------------------------------------------------------------------------------------------
// Validation

TEST(PlacementValidationTest, RejectsKAndMBelowOne) {
  const auto nodes = World(8, kMiB, 8, OnePerNode);
  Result<Placement> result = ComputePlacement(nodes, 0, 2);
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(), "k = 0: need k >= 1 data fragments");
  result = ComputePlacement(nodes, -3, 2);
  EXPECT_EQ(result.status().message(), "k = -3: need k >= 1 data fragments");
  result = ComputePlacement(nodes, 4, 0);
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(), "m = 0: need m >= 1 parity fragments");
}

TEST(PlacementValidationTest, RejectsMoreThan64Fragments) {
  const auto nodes = World(100, kMiB, 100, OnePerNode);
  EXPECT_TRUE(ComputePlacement(nodes, 60, 4).ok());
  const Result<Placement> result = ComputePlacement(nodes, 60, 5);
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(), "k + m = 65 exceeds the limit of 64 fragments per stripe");
  const int huge = std::numeric_limits<int>::max();
  EXPECT_EQ(ComputePlacement(nodes, huge, huge).status().code(), StatusCode::kInvalidArgument);
}

TEST(PlacementValidationTest, RejectsTooFewNodesNamingTheLimit) {
  const auto four = World(4, kMiB, 8, OnePerNode);
  Result<Placement> result = ComputePlacement(four, 4, 2);
  EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(result.status().message(),
            "k + m = 6 needs at least 7 nodes; 4 nodes allow k + m <= 3");
  result = ComputePlacement(four, 2, 2);  // k + m == N: the owner itself is not a holder
  EXPECT_EQ(result.status().message(),
            "k + m = 4 needs at least 5 nodes; 4 nodes allow k + m <= 3");
  EXPECT_TRUE(ComputePlacement(four, 2, 1).ok());

  for (size_t n = 0; n < 3; ++n) {
    const auto tiny = World(n, kMiB, 8, OnePerNode);
    result = ComputePlacement(tiny, 1, 1);
    EXPECT_EQ(result.status().code(), StatusCode::kInvalidArgument) << n;
    EXPECT_NE(result.status().message().find("k + m = 2 needs at least 3 nodes"), std::string::npos)
        << result.status();
  }
}

// ---------------------------------------------------------------------------------------------
// Structure and determinism

TEST(PlacementTest, SameInputGivesTheSamePlacement) {
  std::mt19937_64 rng(42);
  std::vector<NodeSpec> nodes(300);
  for (NodeSpec& node : nodes) {
    node.domain = static_cast<uint32_t>(rng() % 23) * 7;
    node.footprint_bytes = (rng() % 4) * kMiB;
    node.capacity_bytes = (8 + rng() % 8) * 4 * kMiB;
  }
  const Placement first = MustPlace(nodes, 6, 3);
  const Placement second = MustPlace(nodes, 6, 3);
  const std::vector<NodeSpec> copy = nodes;
  EXPECT_EQ(first, second);
  EXPECT_EQ(first, MustPlace(copy, 6, 3));
  EXPECT_EQ(first.Describe(), second.Describe());
  EXPECT_TRUE(IsValid(nodes, first));
}

TEST(PlacementTest, OnlyTheOrderOfDomainIdsMatters) {
  const auto nodes = World(64, kMiB, 16, RoundRobin(8));
  auto renamed = nodes;
  for (NodeSpec& node : renamed) node.domain = node.domain * 1000 + 17;
  EXPECT_EQ(MustPlace(nodes, 4, 2), MustPlace(renamed, 4, 2));
}

TEST(PlacementTest, InvariantsHoldForManyLayouts) {
  for (const size_t n : {5, 7, 16, 33, 100, 257}) {
    for (const Shape shape : kShapes) {
      if (static_cast<size_t>(shape.k + shape.m) >= n) continue;
      const std::vector<std::function<uint32_t(size_t)>> layouts = {
          OnePerNode, RoundRobin(3), RoundRobin(5), Racks(4), Racks(7), [](size_t) { return 9u; }};
      for (size_t layout = 0; layout < layouts.size(); ++layout) {
        SCOPED_TRACE(::testing::Message()
                     << "n " << n << " k " << shape.k << " m " << shape.m << " layout " << layout);
        const auto nodes = World(n, 3 * kMiB, n, layouts[layout]);
        const Placement p = MustPlace(nodes, shape.k, shape.m);
        EXPECT_TRUE(IsValid(nodes, p));
        EXPECT_TRUE(IsSpread(nodes, p));
        EXPECT_EQ(p.k(), shape.k);
        EXPECT_EQ(p.m(), shape.m);
        for (NodeId owner = 0; owner < n; ++owner) EXPECT_EQ(p.borrowed_bytes(owner), 0u);
      }
    }
  }
}

TEST(PlacementTest, ExtentsArePackedInAllocationOrder) {
  // Footprints differ per owner; each holder's extents follow each other without gaps.
  std::vector<NodeSpec> nodes(20);
  for (size_t r = 0; r < nodes.size(); ++r) {
    nodes[r] = NodeSpec{static_cast<uint32_t>(r % 5), 64 * kMiB, (r + 1) * 4096};
  }
  const Placement p = MustPlace(nodes, 3, 2);
  ASSERT_TRUE(IsValid(nodes, p));
  for (NodeId holder = 0; holder < nodes.size(); ++holder) {
    const auto hosted = p.HostedBy(holder);
    ASSERT_FALSE(hosted.empty());
    EXPECT_EQ(hosted.front().store_offset, 0u);
    const HostedFragment& last = hosted.back();
    EXPECT_EQ(p.used_bytes(holder), last.store_offset + nodes[last.owner].footprint_bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// Balance

TEST(PlacementBalanceTest, OneDomainPerNodeHostsExactlyKPlusMEach) {
  for (const size_t n : {3, 7, 16, 100, 1000}) {
    for (const Shape shape : kShapes) {
      const int w = shape.k + shape.m;
      if (static_cast<size_t>(w) >= n) continue;
      SCOPED_TRACE(::testing::Message() << "n " << n << " k+m " << w);
      // Capacity exactly k + m fragments: nothing may be off by one.
      const auto nodes = World(n, kMiB, static_cast<uint64_t>(w), OnePerNode);
      const Placement p = MustPlace(nodes, shape.k, shape.m);
      ASSERT_TRUE(IsValid(nodes, p));
      for (const size_t hosted : HostedCounts(p)) EXPECT_EQ(hosted, static_cast<size_t>(w));
      EXPECT_TRUE(IsSpread(nodes, p));
    }
  }
}

TEST(PlacementBalanceTest, EqualDomainsHostExactlyKPlusMEach) {
  struct Case {
    size_t n;
    std::function<uint32_t(size_t)> domain;
    const char* name;
  };
  const std::vector<Case> cases = {{64, RoundRobin(8), "round-robin 8"},
                                   {60, RoundRobin(3), "round-robin 3"},
                                   {48, RoundRobin(2), "round-robin 2"},
                                   {256, RoundRobin(16), "round-robin 16"},
                                   {64, Racks(8), "racks of 8"},
                                   {60, Racks(20), "racks of 20"},
                                   {1024, Racks(16), "racks of 16"},
                                   {30, [](size_t) { return 5u; }, "one domain"},
                                   {35, RoundRobin(35), "round-robin = 1/node"}};
  for (const Case& c : cases) {
    for (const Shape shape : kShapes) {
      const int w = shape.k + shape.m;
      SCOPED_TRACE(::testing::Message() << c.name << " n " << c.n << " k+m " << w);
      const auto nodes = World(c.n, kMiB, static_cast<uint64_t>(w), c.domain);
      const Placement p = MustPlace(nodes, shape.k, shape.m);
      ASSERT_TRUE(IsValid(nodes, p));
      EXPECT_TRUE(IsSpread(nodes, p));
      for (const size_t hosted : HostedCounts(p)) ASSERT_EQ(hosted, static_cast<size_t>(w));
      EXPECT_NE(p.Describe().find(StrCat("fragments per node min ", w, " max ", w)),
                std::string::npos)
          << p.Describe();
    }
  }
}

TEST(PlacementBalanceTest, UnevenDomainsSpreadAndStayEvenInsideEachDomain) {
  struct Case {
    size_t n;
    std::function<uint32_t(size_t)> domain;
    const char* name;
  };
  const std::vector<Case> cases = {{10, RoundRobin(4), "round-robin 4 of 10"},
                                   {100, RoundRobin(7), "round-robin 7 of 100"},
                                   {1000, RoundRobin(64), "round-robin 64 of 1000"},
                                   {18, UnevenRacks({4, 3, 8, 1, 2}), "racks 4 3 8 1 2"},
                                   {40, UnevenRacks({20, 10, 5, 5}), "racks 20 10 5 5"},
                                   {33, UnevenRacks({30, 1, 2}), "racks 30 1 2"},
                                   {100, UnevenRacks({1, 1, 1, 1, 1, 95}), "racks 1 1 1 1 1 95"},
                                   {50, Racks(16), "racks of 16 with a tail of 2"}};
  for (const Case& c : cases) {
    for (const Shape shape : kShapes) {
      const int w = shape.k + shape.m;
      if (static_cast<size_t>(w) >= c.n) continue;
      SCOPED_TRACE(::testing::Message() << c.name << " k+m " << w);
      const auto nodes = World(c.n, kMiB, c.n, c.domain);  // capacity never interferes
      const Placement p = MustPlace(nodes, shape.k, shape.m);
      ASSERT_TRUE(IsValid(nodes, p));
      EXPECT_TRUE(IsSpread(nodes, p));
      EXPECT_LE(WorstSpreadInsideDomains(nodes, p), 1u) << p.Describe();
    }
  }
}

TEST(PlacementBalanceTest, RandomDomainLayoutsSpread) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 40; ++trial) {
    const size_t n = 8 + rng() % 300;
    const size_t domains = 1 + rng() % 40;
    const Shape shape = kShapes[rng() % std::size(kShapes)];
    const int w = shape.k + shape.m;
    if (static_cast<size_t>(w) >= n) continue;
    std::vector<NodeSpec> nodes(n);
    for (NodeSpec& node : nodes) {
      node = NodeSpec{static_cast<uint32_t>(rng() % domains), n * kMiB, kMiB};
    }
    SCOPED_TRACE(::testing::Message() << "trial " << trial << " n " << n << " k+m " << w);
    const Placement p = MustPlace(nodes, shape.k, shape.m);
    ASSERT_TRUE(IsValid(nodes, p));
    EXPECT_TRUE(IsSpread(nodes, p));
    EXPECT_LE(WorstSpreadInsideDomains(nodes, p), 1u) << p.Describe();
  }
}

// ---------------------------------------------------------------------------------------------
// Failure domains

TEST(PlacementSpreadTest, NoDomainRepeatsWhileEnoughDomains) {
  // 12 racks of 4: k + m <= 11 gives every holder its own rack, never the owner's.
  const auto nodes = World(48, kMiB, 16, Racks(4));
  for (const Shape shape : kShapes) {
    if (shape.k + shape.m > 11) continue;
    const Placement p = MustPlace(nodes, shape.k, shape.m);
    for (NodeId owner = 0; owner < nodes.size(); ++owner) {
      std::set<uint32_t> domains;
      for (const FragmentSlot& slot : p.HoldersOf(owner)) {
        EXPECT_NE(nodes[slot.holder].domain, nodes[owner].domain) << "owner " << owner;
        domains.insert(nodes[slot.holder].domain);
      }
      EXPECT_EQ(domains.size(), static_cast<size_t>(shape.k + shape.m)) << "owner " << owner;
    }
    EXPECT_NE(p.Describe().find(StrCat("distinct domains per owner min ", shape.k + shape.m)),
              std::string::npos)
        << p.Describe();
  }
}

TEST(PlacementSpreadTest, OwnDomainIsUsedLast) {
  // 3 racks of 8. k + m = 2: the own rack is never used. k + m = 6: two holders in every rack.
  // k + m = 5: two in each other rack, one in the own rack (it comes last in every round).
  const auto nodes = World(24, kMiB, 24, Racks(8));
  const Placement narrow = MustPlace(nodes, 1, 1);
  const Placement wide = MustPlace(nodes, 4, 2);
  const Placement wider = MustPlace(nodes, 3, 2);
  for (NodeId owner = 0; owner < nodes.size(); ++owner) {
    std::map<uint32_t, int> narrow_count;
    std::map<uint32_t, int> wide_count;
    std::map<uint32_t, int> wider_count;
    for (const FragmentSlot& slot : narrow.HoldersOf(owner)) ++narrow_count[slot.holder / 8];
    for (const FragmentSlot& slot : wide.HoldersOf(owner)) ++wide_count[slot.holder / 8];
    for (const FragmentSlot& slot : wider.HoldersOf(owner)) ++wider_count[slot.holder / 8];
    const uint32_t own = owner / 8;
    EXPECT_EQ(narrow_count.count(own), 0u) << owner;
    EXPECT_EQ(narrow_count.size(), 2u) << owner;
    for (uint32_t rack = 0; rack < 3; ++rack) EXPECT_EQ(wide_count[rack], 2) << owner;
    for (uint32_t rack = 0; rack < 3; ++rack) {
      EXPECT_EQ(wider_count[rack], rack == own ? 1 : 2) << owner;
    }
  }
  EXPECT_TRUE(IsSpread(nodes, wider));
}

TEST(PlacementSpreadTest, SmallDomainsAreExhaustedThenTheRestReused) {
  // Racks of 1, 1 and 10 with k + m = 5: one holder in each small rack, then the big rack.
  const auto nodes = World(12, kMiB, 12, UnevenRacks({1, 1, 10}));
  const Placement p = MustPlace(nodes, 3, 2);
  ASSERT_TRUE(IsValid(nodes, p));
  EXPECT_TRUE(IsSpread(nodes, p));
  for (NodeId owner = 2; owner < 12; ++owner) {
    int in_small = 0;
    for (const FragmentSlot& slot : p.HoldersOf(owner)) in_small += slot.holder < 2 ? 1 : 0;
    EXPECT_EQ(in_small, 2) << owner;
  }
}

// ---------------------------------------------------------------------------------------------
// Capacity and borrowing

TEST(PlacementCapacityTest, NodeWithoutRoomLendsNothingAndOthersTakeItsShare) {
  for (const uint64_t small : {uint64_t{0}, kMiB / 2}) {
    SCOPED_TRACE(::testing::Message() << "capacity of node 5: " << small);
    auto nodes = World(16, kMiB, 7, OnePerNode);  // room for k + m = 6 plus one spare
    nodes[5].capacity_bytes = small;
    const Placement p = MustPlace(nodes, 4, 2);
    ASSERT_TRUE(IsValid(nodes, p));
    EXPECT_TRUE(p.HostedBy(5).empty());
    EXPECT_EQ(p.used_bytes(5), 0u);
    uint64_t borrowed = 0;
    int borrowers = 0;
    for (NodeId owner = 0; owner < nodes.size(); ++owner) {
      borrowed += p.borrowed_bytes(owner);
      borrowers += p.borrowed_bytes(owner) > 0 ? 1 : 0;
      EXPECT_LE(p.borrowed_bytes(owner), kMiB) << owner;
    }
    // The six owners that would have used node 5 each moved one fragment.
    EXPECT_EQ(borrowed, 6 * kMiB);
    EXPECT_EQ(borrowers, 6);
    EXPECT_NE(p.Describe().find("borrowed 6291456 bytes by 6 owners"), std::string::npos)
        << p.Describe();
    // The spread is kept: six distinct domains per owner (there are 15 with room).
    EXPECT_TRUE(IsSpread(nodes, p));
  }
}

TEST(PlacementCapacityTest, FullNodeInsideARackBorrowsFromItsRackmates) {
  auto nodes = World(32, kMiB, 9, Racks(4));  // 8 racks; room for the share of node 9
  nodes[9].capacity_bytes = 0;
  const Placement p = MustPlace(nodes, 4, 2);
  ASSERT_TRUE(IsValid(nodes, p));
  EXPECT_TRUE(p.HostedBy(9).empty());
  EXPECT_TRUE(IsSpread(nodes, p));  // the rack still has room: no domain is repeated
  uint64_t borrowed = 0;
  for (NodeId owner = 0; owner < nodes.size(); ++owner) borrowed += p.borrowed_bytes(owner);
  EXPECT_EQ(borrowed, 6 * kMiB);
}

TEST(PlacementCapacityTest, WholeFullRackIsSkipped) {
  auto nodes = World(32, kMiB, 8, Racks(4));  // 8 racks
  for (NodeId r = 4; r < 8; ++r) nodes[r].capacity_bytes = 0;
  const Placement p = MustPlace(nodes, 4, 2);
  ASSERT_TRUE(IsValid(nodes, p));
  for (NodeId owner = 0; owner < nodes.size(); ++owner) {
    std::set<uint32_t> racks;
    for (const FragmentSlot& slot : p.HoldersOf(owner)) racks.insert(slot.holder / 4);
    EXPECT_EQ(racks.size(), 6u) << owner;  // 6 of the 7 racks with room (own excluded)
    EXPECT_EQ(racks.count(1), 0u) << owner;
  }
}

TEST(PlacementCapacityTest, UnevenCapacitiesFit) {
  std::mt19937_64 rng(99);
  for (int trial = 0; trial < 30; ++trial) {
    const size_t n = 10 + rng() % 200;
    std::vector<NodeSpec> nodes(n);
    uint64_t need = 0;
    for (NodeSpec& node : nodes) {
      node.domain = static_cast<uint32_t>(rng() % 9);
      node.footprint_bytes = (rng() % 5) * 4096;
      need += node.footprint_bytes * 6;
    }
    // Capacity: twice the total need, split unevenly (some nodes get nothing).
    for (NodeSpec& node : nodes) {
      node.capacity_bytes = rng() % 3 == 0 ? 0 : (rng() % (4 * need / n + 1)) + 4 * 4096 * 6;
    }
    SCOPED_TRACE(::testing::Message() << "trial " << trial);
    const Result<Placement> p = ComputePlacement(nodes, 4, 2);
    if (p.ok()) {
      EXPECT_TRUE(IsValid(nodes, *p));
    } else {
      EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted) << p.status();
    }
  }
}

TEST(PlacementCapacityTest, WorldTooSmallNamesTheMissingBytes) {
  // 8 nodes, k + m = 3, footprint 1 MiB: 24 MiB needed, 8 x 2.5 MiB = 20 MiB offered.
  const auto nodes = World(8, kMiB, 0, OnePerNode);
  auto small = nodes;
  for (NodeSpec& node : small) node.capacity_bytes = 5 * kMiB / 2;
  const Result<Placement> result = ComputePlacement(small, 2, 1);
  ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted) << result.status();
  const std::string message(result.status().message());
  EXPECT_NE(message.find("the world lacks 4194304 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("all fragments need 25165824, stores offer 20971520"), std::string::npos)
      << message;
  EXPECT_NE(message.find("owner "), std::string::npos) << message;
  EXPECT_NE(message.find("(footprint 1048576 bytes)"), std::string::npos) << message;
  EXPECT_NE(message.find("still needs"), std::string::npos) << message;

  auto empty = nodes;  // no store at all: owner 0 fails with all its holders missing
  const Result<Placement> none = ComputePlacement(empty, 2, 1);
  ASSERT_EQ(none.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(none.status().message(),
            "owner 0 (footprint 1048576 bytes) still needs 3 of 3 holders, but no node it may use "
            "has 1048576 free bytes; the world lacks 25165824 bytes (all fragments need 25165824, "
            "stores offer 0)");
}

TEST(PlacementCapacityTest, EnoughBytesInTheWrongPlaceNamesTheOwnersShortfall) {
  // Only node 0 has a store: large enough for everything, but owner 0 may not use it.
  auto nodes = World(4, 10 * kMiB, 0, OnePerNode);
  nodes[0].capacity_bytes = 1000 * kMiB;
  const Result<Placement> result = ComputePlacement(nodes, 1, 1);
  ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(result.status().message(),
            "owner 0 (footprint 10485760 bytes) still needs 2 of 2 holders, but no node it may "
            "use has 10485760 free bytes; stores offer 1048576000 bytes, enough for all "
            "fragments (83886080), but not where this owner can use them: 20971520 bytes missing "
            "for owner 0");
}

TEST(PlacementCapacityTest, HugeCapacitiesDoNotOverflow) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  auto nodes = World(10, kMiB, 0, OnePerNode);
  for (NodeSpec& node : nodes) node.capacity_bytes = max;
  const Placement p = MustPlace(nodes, 4, 2);
  EXPECT_TRUE(IsValid(nodes, p));
  // Footprints so large that the world's total overflows: the message still says what is short.
  for (NodeSpec& node : nodes) node.footprint_bytes = max / 2;
  const Result<Placement> result = ComputePlacement(nodes, 4, 2);
  ASSERT_EQ(result.status().code(), StatusCode::kResourceExhausted);
  // 60 fragments of 2^63 - 1 bytes need 553402322211286548420 bytes; stores offer 10 x (2^64 - 1).
  EXPECT_NE(result.status().message().find("the world lacks 368934881474191032270 bytes"),
            std::string::npos)
      << result.status();
}

TEST(PlacementCapacityTest, OwnersWithoutFootprintGetNothing) {
  auto nodes = World(20, kMiB, 8, RoundRobin(4));
  for (NodeId r = 0; r < nodes.size(); r += 3) nodes[r].footprint_bytes = 0;
  const Placement p = MustPlace(nodes, 3, 2);
  ASSERT_TRUE(IsValid(nodes, p));
  EXPECT_TRUE(IsSpread(nodes, p));
  for (NodeId owner = 0; owner < nodes.size(); ++owner) {
    if (nodes[owner].footprint_bytes != 0) continue;
    EXPECT_TRUE(p.HoldersOf(owner).empty()) << owner;
    EXPECT_EQ(p.borrowed_bytes(owner), 0u) << owner;
    for (NodeId holder = 0; holder < nodes.size(); ++holder) {
      for (const HostedFragment& hosted : p.HostedBy(holder)) EXPECT_NE(hosted.owner, owner);
    }
  }
  // Owners without fragments leave gaps in their domain's own-domain rotation: within two.
  EXPECT_LE(WorstSpreadInsideDomains(nodes, p), 2u) << p.Describe();

  auto idle = nodes;  // nobody has anything: an empty placement, not an error
  for (NodeSpec& node : idle) node = NodeSpec{node.domain, 0, 0};
  const Placement empty = MustPlace(idle, 3, 2);
  EXPECT_TRUE(IsValid(idle, empty));
  for (NodeId node = 0; node < idle.size(); ++node) EXPECT_TRUE(empty.HostedBy(node).empty());
  EXPECT_NE(empty.Describe().find("0 with fragments"), std::string::npos) << empty.Describe();
}

// ---------------------------------------------------------------------------------------------
// Scale

TEST(PlacementScaleTest, FourThousandNodesPlaceQuickly) {
  const auto nodes = World(4096, 64 * kMiB, 16, Racks(16));
  const auto start = std::chrono::steady_clock::now();
  const Placement p = MustPlace(nodes, 10, 4);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(IsValid(nodes, p));
  EXPECT_TRUE(IsSpread(nodes, p));
  for (const size_t hosted : HostedCounts(p)) ASSERT_EQ(hosted, 14u);
  // Generous bound (sanitizer builds are slow); the benchmark measures it properly.
  EXPECT_LT(elapsed, std::chrono::milliseconds(500)) << p.Describe();
}

TEST(PlacementScaleTest, FourThousandNodesWithBorrowing) {
  auto nodes = World(4096, 64 * kMiB, 7, OnePerNode);
  for (NodeId r = 0; r < nodes.size(); r += 97) nodes[r].capacity_bytes = 0;
  const Placement p = MustPlace(nodes, 4, 2);
  ASSERT_TRUE(IsValid(nodes, p));
  uint64_t borrowed = 0;
  for (NodeId owner = 0; owner < nodes.size(); ++owner) borrowed += p.borrowed_bytes(owner);
  EXPECT_EQ(borrowed, 43 * 6 * 64 * kMiB);  // 43 empty nodes, six fragments each
}

}  // namespace
}  // namespace ft::recovery
