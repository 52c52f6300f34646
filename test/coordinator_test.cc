// Tests of recovery/coordinator: the commit state machine driven message by message. Create
// validation; a full round (PREPARE -> GO with the placement -> DONE -> COMMIT); rounds that reuse
// the placement and rounds that recompute it; aborts from a failed DONE, a lost node and a
// placement that does not fit; the messages it ignores; committed_version and round_in_flight.
#include "recovery/coordinator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "ftengine/status.h"
#include "recovery/placement.h"
#include "recovery/protocol.h"

namespace ft::recovery {
namespace {

using Outbox = Coordinator::Outbox;

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kEpoch = 7;
constexpr uint32_t kNodes = 10;
constexpr int kK = 3;
constexpr int kM = 2;
constexpr uint64_t kFootprint = 4 * kMiB;
// What a holder gives each owner of kFootprint (its slack included).
const uint64_t kExtent = ExtentBytesFor(kFootprint);

bool Contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

Result<std::unique_ptr<Coordinator>> Make(uint32_t world_size, int k, int m) {
  return Coordinator::Create(Coordinator::Options{world_size, k, m, kEpoch});
}

// Distinct store registrations per node, so that a GO naming the wrong holder's is caught.
PrepareMessage PrepareOf(NodeId node) {
  PrepareMessage p;
  p.epoch = kEpoch;
  p.node = node;
  p.image_bytes = 3 * kFootprint;
  p.footprint_bytes = kFootprint;
  p.capacity_bytes = (kK + kM + 1) * kExtent;
  p.domain = node % 4;
  p.store_addr = 0x7f0000000000 + uint64_t{node} * 0x10000000;
  p.store_rkey = 0x1000 + node;
  return p;
}

std::vector<PrepareMessage> World(uint32_t n = kNodes) {
  std::vector<PrepareMessage> prepares;
  for (NodeId node = 0; node < n; ++node) prepares.push_back(PrepareOf(node));
  return prepares;
}

DoneMessage DoneOf(NodeId node, uint64_t version, StatusCode code = StatusCode::kOk,
                   NodeId failed_peer = UINT32_MAX) {
  return DoneMessage{kEpoch, version, node, code, failed_peer};
}

// The messages of type T in the outbox, with their destinations.
template <typename T>
std::vector<std::pair<NodeId, T>> OfType(const Outbox& outbox) {
  std::vector<std::pair<NodeId, T>> out;
  for (const auto& [node, message] : outbox) {
    if (const T* m = std::get_if<T>(&message)) out.emplace_back(node, *m);
  }
  return out;
}

// Destinations of the outbox, checked to hold only messages of type T.
template <typename T>
std::vector<NodeId> Destinations(const Outbox& outbox) {
  std::vector<NodeId> nodes;
  for (const auto& [node, message] : outbox) {
    EXPECT_TRUE(std::holds_alternative<T>(message)) << "to node " << node;
    nodes.push_back(node);
  }
  return nodes;
}

std::vector<NodeId> AllBut(uint32_t n, std::set<NodeId> excluded) {
  std::vector<NodeId> nodes;
  for (NodeId node = 0; node < n; ++node) {
    if (!excluded.count(node)) nodes.push_back(node);
  }
  return nodes;
}

std::vector<NodeId> All(uint32_t n = kNodes) { return AllBut(n, {}); }

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::unique_ptr<Coordinator>> made = Make(kNodes, kK, kM);
    ASSERT_TRUE(made.ok()) << made.status();
    coordinator_ = std::move(made).value();
    prepares_ = World();
  }

  // Feeds every PREPARE; returns the outbox (GO, or ABORT on a placement failure).
  Outbox PrepareAll() {
    Outbox outbox;
    for (const PrepareMessage& p : prepares_) coordinator_->OnPrepare(p, &outbox);
    return outbox;
  }

  Outbox DoneAll(uint64_t version) {
    Outbox outbox;
    for (NodeId node = 0; node < prepares_.size(); ++node) {
      coordinator_->OnDone(DoneOf(node, version), &outbox);
    }
    return outbox;
  }

  // PREPARE from all, checks the GOs, DONE from all, checks the COMMITs. Returns the GOs.
  std::vector<GoMessage> Round(uint64_t version) {
    const Outbox go_outbox = PrepareAll();
    EXPECT_EQ(Destinations<GoMessage>(go_outbox), All(static_cast<uint32_t>(prepares_.size())));
    std::vector<GoMessage> gos;
    for (const auto& [node, go] : OfType<GoMessage>(go_outbox)) {
      EXPECT_EQ(go.epoch, kEpoch);
      EXPECT_EQ(go.version, version);
      EXPECT_EQ(go.placement_id, coordinator_->placement_id());
      gos.push_back(go);
    }
    EXPECT_TRUE(coordinator_->round_in_flight());
    EXPECT_EQ(coordinator_->committed_version(), version - 1);
    const Outbox commit_outbox = DoneAll(version);
    EXPECT_EQ(Destinations<CommitMessage>(commit_outbox),
              All(static_cast<uint32_t>(prepares_.size())));
    for (const auto& [node, commit] : OfType<CommitMessage>(commit_outbox)) {
      EXPECT_EQ(commit, (CommitMessage{kEpoch, version}));
    }
    EXPECT_FALSE(coordinator_->round_in_flight());
    EXPECT_EQ(coordinator_->committed_version(), version);
    return gos;
  }

  // Every GO carries what its node needs from the current placement: its k + m holders with the
  // store registration each holder sent in ITS PREPARE, and the owners it hosts.
  void ExpectPlacementInGos(const std::vector<GoMessage>& gos) {
    const Placement* placement = coordinator_->placement();
    ASSERT_NE(placement, nullptr);
    ASSERT_EQ(gos.size(), prepares_.size());
    std::vector<std::set<NodeId>> hosted(prepares_.size());
    for (NodeId owner = 0; owner < gos.size(); ++owner) {
      const GoMessage& go = gos[owner];
      EXPECT_TRUE(go.has_placement);
      const auto slots = placement->HoldersOf(owner);
      const size_t expected_holders =
          prepares_[owner].footprint_bytes == 0 ? 0 : static_cast<size_t>(kK + kM);
      ASSERT_EQ(go.holders.size(), expected_holders) << "owner " << owner;
      ASSERT_EQ(slots.size(), expected_holders);
      std::set<NodeId> distinct;
      for (size_t column = 0; column < go.holders.size(); ++column) {
        const HolderAddress& holder = go.holders[column];
        EXPECT_EQ(holder.slot, slots[column]);
        ASSERT_LT(holder.slot.holder, prepares_.size());
        EXPECT_NE(holder.slot.holder, owner);
        EXPECT_EQ(holder.store_addr, prepares_[holder.slot.holder].store_addr);
        EXPECT_EQ(holder.store_rkey, prepares_[holder.slot.holder].store_rkey);
        distinct.insert(holder.slot.holder);
        hosted[holder.slot.holder].insert(owner);
      }
      EXPECT_EQ(distinct.size(), go.holders.size()) << "owner " << owner;
      // It fits a receive buffer.
      std::vector<std::byte> buffer(kMaxControlMessageBytes);
      EXPECT_TRUE(EncodeMessage(go, buffer).ok());
    }
    for (NodeId node = 0; node < gos.size(); ++node) {
      const std::vector<NodeId> expected(hosted[node].begin(), hosted[node].end());
      EXPECT_EQ(gos[node].hosted_owners, expected) << "node " << node;
      std::vector<NodeId> from_placement;
      for (const HostedFragment& fragment : placement->HostedBy(node)) {
        from_placement.push_back(fragment.owner);
      }
      EXPECT_EQ(gos[node].hosted_owners, from_placement) << "node " << node;
    }
  }

  std::unique_ptr<Coordinator> coordinator_;
  std::vector<PrepareMessage> prepares_;
};

TEST(CoordinatorCreateTest, RejectsTooFewNodes) {
  for (const uint32_t n : {0u, 1u}) {
    Result<std::unique_ptr<Coordinator>> made = Make(n, 1, 1);
    ASSERT_FALSE(made.ok());
    EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(made.status().message(), "at least 2 nodes")) << made.status();
  }
}

TEST(CoordinatorCreateTest, RejectsKOrMBelowOne) {
  const std::pair<int, int> shapes[] = {{0, 1}, {1, 0}, {0, 0}, {-1, 2}, {2, -5}};
  for (const auto& [k, m] : shapes) {
    Result<std::unique_ptr<Coordinator>> made = Make(16, k, m);
    ASSERT_FALSE(made.ok()) << k << "+" << m;
    EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument);
    EXPECT_TRUE(Contains(made.status().message(), "must be >= 1")) << made.status();
  }
}

TEST(CoordinatorCreateTest, RejectsKPlusMNotBelowWorldSize) {
  Result<std::unique_ptr<Coordinator>> made = Make(6, 4, 2);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(made.status().message(), "needs at least 7 nodes")) << made.status();
  EXPECT_TRUE(Contains(made.status().message(), "allow k + m <= 5")) << made.status();

  made = Make(2, 1, 1);
  ASSERT_FALSE(made.ok());
  EXPECT_TRUE(Contains(made.status().message(), "allow k + m <= 1")) << made.status();

  made = Make(6, 10, 10);
  ASSERT_FALSE(made.ok());
  EXPECT_TRUE(Contains(made.status().message(), "k + m = 20")) << made.status();

  // The largest k and m: the message arithmetic must not overflow int.
  const int max = std::numeric_limits<int>::max();
  made = Make(100, max, max);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(made.status().message(), "k + m = 4294967294")) << made.status();
  EXPECT_TRUE(Contains(made.status().message(), "allow k + m <= 99")) << made.status();
}

TEST(CoordinatorCreateTest, AcceptsTheSmallestWorlds) {
  EXPECT_TRUE(Make(3, 1, 1).ok());
  EXPECT_TRUE(Make(7, 4, 2).ok());
  Result<std::unique_ptr<Coordinator>> made = Make(4096, 4, 2);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ((*made)->committed_version(), 0u);
  EXPECT_FALSE((*made)->round_in_flight());
  EXPECT_EQ((*made)->placement(), nullptr);
  EXPECT_EQ((*made)->placement_id(), 0u);
  EXPECT_EQ((*made)->ignored_messages(), 0u);
  EXPECT_EQ((*made)->epoch(), kEpoch);
}

TEST_F(CoordinatorTest, FullRound) {
  EXPECT_EQ(coordinator_->committed_version(), 0u);
  EXPECT_FALSE(coordinator_->round_in_flight());

  // Nothing is sent until the last PREPARE arrives, in any order.
  Outbox outbox;
  for (NodeId node = kNodes; node-- > 1;) {
    coordinator_->OnPrepare(prepares_[node], &outbox);
    EXPECT_TRUE(outbox.empty());
    EXPECT_FALSE(coordinator_->round_in_flight());
  }
  coordinator_->OnPrepare(prepares_[0], &outbox);
  EXPECT_EQ(Destinations<GoMessage>(outbox), All());
  EXPECT_TRUE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 0u);
  EXPECT_EQ(coordinator_->placement_id(), 1u);
  std::vector<GoMessage> gos;
  for (const auto& [node, go] : OfType<GoMessage>(outbox)) {
    EXPECT_EQ(go.epoch, kEpoch);
    EXPECT_EQ(go.version, 1u);
    EXPECT_EQ(go.placement_id, 1u);
    gos.push_back(go);
  }
  ExpectPlacementInGos(gos);

  // Nothing is sent until the last DONE arrives.
  outbox.clear();
  for (NodeId node = 0; node + 1 < kNodes; ++node) {
    coordinator_->OnDone(DoneOf(node, 1), &outbox);
    EXPECT_TRUE(outbox.empty());
    EXPECT_TRUE(coordinator_->round_in_flight());
    EXPECT_EQ(coordinator_->committed_version(), 0u);
  }
  coordinator_->OnDone(DoneOf(kNodes - 1, 1), &outbox);
  EXPECT_EQ(Destinations<CommitMessage>(outbox), All());
  for (const auto& [node, commit] : OfType<CommitMessage>(outbox)) {
    EXPECT_EQ(commit, (CommitMessage{kEpoch, 1}));
  }
  EXPECT_EQ(coordinator_->committed_version(), 1u);
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->ignored_messages(), 0u);
}

TEST_F(CoordinatorTest, UnchangedInputsReuseThePlacement) {
  ExpectPlacementInGos(Round(1));
  const Placement first = *coordinator_->placement();
  // image_bytes is not an input of the placement.
  for (PrepareMessage& p : prepares_) p.image_bytes += 12345;
  for (uint64_t version = 2; version <= 10; ++version) {
    for (const GoMessage& go : Round(version)) {
      EXPECT_FALSE(go.has_placement);
      EXPECT_EQ(go.placement_id, 1u);
      EXPECT_TRUE(go.holders.empty());
      EXPECT_TRUE(go.hosted_owners.empty());
    }
  }
  EXPECT_EQ(coordinator_->placement_id(), 1u);
  EXPECT_EQ(*coordinator_->placement(), first);
  EXPECT_EQ(coordinator_->ignored_messages(), 0u);
}

// The committed state holds each node's PREPARE of the committed round, even when that round kept
// the placement of an earlier one: a recovery restores images of the committed size.
TEST_F(CoordinatorTest, TheCommittedPreparesAreTheCommittedRoundsWhenThePlacementIsKept) {
  Round(1);
  prepares_[3].image_bytes -= 4096;
  prepares_[3].footprint_bytes -= 1024;  // still fits its extent: the placement is kept
  for (const GoMessage& go : Round(2)) EXPECT_FALSE(go.has_placement);
  EXPECT_EQ(coordinator_->committed_prepares()[3], prepares_[3]);
  EXPECT_EQ(coordinator_->state().prepares[3].image_bytes, prepares_[3].image_bytes);
}

TEST_F(CoordinatorTest, ChangedInputsRecomputeThePlacement) {
  ExpectPlacementInGos(Round(1));
  struct Change {
    const char* field;
    void (*apply)(PrepareMessage&);
  };
  const Change changes[] = {
      {"footprint", [](PrepareMessage& p) { p.footprint_bytes += kMiB; }},
      {"capacity", [](PrepareMessage& p) { p.capacity_bytes += 2 * kFootprint; }},
      // Node 3 (domain 3) into domain 0, with other holders of the owners it hosts for: the
      // spread gets worse.
      {"domain", [](PrepareMessage& p) { p.domain = 0; }},
  };
  uint64_t version = 2;
  uint64_t placement_id = 1;
  for (const Change& change : changes) {
    SCOPED_TRACE(change.field);
    change.apply(prepares_[3]);
    const std::vector<GoMessage> gos = Round(version++);
    ++placement_id;
    EXPECT_EQ(coordinator_->placement_id(), placement_id);
    for (const GoMessage& go : gos) EXPECT_EQ(go.placement_id, placement_id);
    ExpectPlacementInGos(gos);
    // Unchanged again: no placement in the next GO.
    for (const GoMessage& go : Round(version++)) {
      EXPECT_FALSE(go.has_placement);
      EXPECT_EQ(go.placement_id, placement_id);
    }
  }
}

// A new store (a replacement's) moves no fragment: the same placement goes out again with the
// new keys; a domain of its own for a node spreads no owner less, and changes nothing.
TEST_F(CoordinatorTest, NewStoreKeysResendThePlacementWithoutRecomputingIt) {
  ExpectPlacementInGos(Round(1));
  const std::optional<Placement> placed = *coordinator_->committed_placement();
  struct Change {
    const char* field;
    void (*apply)(PrepareMessage&);
    bool resent;
  };
  const Change changes[] = {
      {"store_rkey", [](PrepareMessage& p) { p.store_rkey += 0x100; }, true},
      {"store_addr", [](PrepareMessage& p) { p.store_addr += 0x1000; }, true},
      {"a domain of its own", [](PrepareMessage& p) { p.domain = 1000; }, false},
  };
  uint64_t version = 2;
  for (const Change& change : changes) {
    SCOPED_TRACE(change.field);
    change.apply(prepares_[3]);
    const std::vector<GoMessage> gos = Round(version++);
    EXPECT_EQ(coordinator_->placement_id(), 1u);
    for (const GoMessage& go : gos) {
      EXPECT_EQ(go.placement_id, 1u);
      EXPECT_EQ(go.has_placement, change.resent);
    }
    if (change.resent) ExpectPlacementInGos(gos);
    EXPECT_TRUE(*coordinator_->committed_placement() == *placed) << "no fragment moved";
  }
}

TEST_F(CoordinatorTest, ChangedRkeyReachesTheOwnersOfTheHolder) {
  Round(1);
  prepares_[5].store_rkey = 0xfeedf00d;
  const std::vector<GoMessage> gos = Round(2);
  ExpectPlacementInGos(gos);
  int owners_told = 0;
  for (const GoMessage& go : gos) {
    for (const HolderAddress& holder : go.holders) {
      if (holder.slot.holder == 5) {
        EXPECT_EQ(holder.store_rkey, 0xfeedf00du);
        ++owners_told;
      }
    }
  }
  EXPECT_EQ(static_cast<size_t>(owners_told), gos[5].hosted_owners.size());
  EXPECT_GT(owners_told, 0);
}

TEST_F(CoordinatorTest, NodeWithoutFootprintHasNoHolders) {
  prepares_[2].footprint_bytes = 0;
  const std::vector<GoMessage> gos = Round(1);
  ExpectPlacementInGos(gos);
  EXPECT_TRUE(gos[2].holders.empty());
  for (const GoMessage& go : gos) {
    EXPECT_EQ(std::count(go.hosted_owners.begin(), go.hosted_owners.end(), NodeId{2}), 0);
  }
}

TEST_F(CoordinatorTest, FailedDoneAbortsAndTheVersionIsReused) {
  Round(1);
  PrepareAll();
  ASSERT_TRUE(coordinator_->round_in_flight());
  Outbox outbox;
  for (NodeId node = 0; node < 4; ++node) coordinator_->OnDone(DoneOf(node, 2), &outbox);
  ASSERT_TRUE(outbox.empty());
  coordinator_->OnDone(DoneOf(6, 2, StatusCode::kDeadlineExceeded), &outbox);
  EXPECT_EQ(Destinations<AbortMessage>(outbox), All());
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.epoch, kEpoch);
    EXPECT_EQ(abort.version, 2u);
    EXPECT_EQ(abort.failed_node, 6u);
    EXPECT_EQ(abort.code, StatusCode::kDeadlineExceeded);
    EXPECT_TRUE(Contains(abort.reason, "node 6")) << abort.reason;
    EXPECT_TRUE(Contains(abort.reason, "version 2")) << abort.reason;
  }
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 1u);

  // DONEs of the aborted round arriving late are ignored.
  outbox.clear();
  const uint64_t ignored = coordinator_->ignored_messages();
  coordinator_->OnDone(DoneOf(7, 2), &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), ignored + 1);

  // The next round reuses version 2, with the same placement.
  for (const GoMessage& go : Round(2)) {
    EXPECT_FALSE(go.has_placement);
    EXPECT_EQ(go.placement_id, 1u);
  }
  Round(3);
}

// A node that reported DONE and gave up waiting for the COMMIT (its deadline) PREPAREs again
// while the round is still collecting DONEs. Its PREPARE is kept, not dropped: when the round
// commits (or aborts), it counts for the next round, which starts with the others' PREPAREs
// alone. A second early PREPARE from the same node, or one from a node that has not reported
// DONE, is ignored. (Dropped, the next round waited for that node until every deadline.)
TEST_F(CoordinatorTest, APrepareThatComesBeforeTheRoundEndsCountsForTheNextRound) {
  for (const bool commits : {true, false}) {
    SCOPED_TRACE(commits ? "the round commits" : "the round aborts");
    SetUp();
    Round(1);
    PrepareAll();
    Outbox outbox;
    coordinator_->OnDone(DoneOf(2, 2), &outbox);
    const uint64_t ignored = coordinator_->ignored_messages();
    coordinator_->OnPrepare(prepares_[2], &outbox);  // kept
    coordinator_->OnPrepare(prepares_[2], &outbox);  // once
    coordinator_->OnPrepare(prepares_[5], &outbox);  // 5 has not reported DONE
    EXPECT_TRUE(outbox.empty());
    EXPECT_EQ(coordinator_->ignored_messages(), ignored + 2);
    for (NodeId node = 0; node < kNodes; ++node) {
      if (node == 2) continue;
      const StatusCode code = !commits && node == 6 ? StatusCode::kUnavailable : StatusCode::kOk;
      coordinator_->OnDone(DoneOf(node, 2, code), &outbox);
      if (!commits && node == 6) break;
    }
    // The end of version 2 went to every node, node 2 included.
    if (commits) {
      EXPECT_EQ(Destinations<CommitMessage>(outbox), All());
      EXPECT_EQ(coordinator_->committed_version(), 2u);
    } else {
      EXPECT_EQ(Destinations<AbortMessage>(outbox), All());
      EXPECT_EQ(coordinator_->committed_version(), 1u);
    }
    EXPECT_FALSE(coordinator_->round_in_flight());
    // The next round starts once every node but 2 has prepared.
    outbox.clear();
    for (NodeId node = 0; node < kNodes; ++node) {
      if (node != 2) coordinator_->OnPrepare(prepares_[node], &outbox);
    }
    EXPECT_EQ(Destinations<GoMessage>(outbox), All());
    for (const auto& [node, go] : OfType<GoMessage>(outbox)) {
      EXPECT_EQ(go.version, commits ? 3u : 2u);
    }
  }
}

// An early PREPARE taken back (the node gave up waiting for its GO while the round it reported
// DONE in was still open) is forgotten: that round is not aborted, and does not count the node
// as prepared for the next one.
TEST_F(CoordinatorTest, AnEarlyPrepareWithdrawnIsForgottenAndAbortsNothing) {
  Round(1);
  PrepareAll();
  Outbox outbox;
  coordinator_->OnDone(DoneOf(2, 2), &outbox);
  coordinator_->OnPrepare(prepares_[2], &outbox);
  coordinator_->OnDone(DoneMessage{kEpoch, kWithdrawVersion, 2, StatusCode::kDeadlineExceeded},
                       &outbox);
  EXPECT_TRUE(outbox.empty()) << "the round in flight was aborted";
  EXPECT_TRUE(coordinator_->round_in_flight());
  for (NodeId node = 0; node < kNodes; ++node) {
    if (node != 2) coordinator_->OnDone(DoneOf(node, 2), &outbox);
  }
  EXPECT_EQ(Destinations<CommitMessage>(outbox), All());
  outbox.clear();
  for (NodeId node = 0; node < kNodes; ++node) {
    if (node != 2) coordinator_->OnPrepare(prepares_[node], &outbox);
  }
  EXPECT_TRUE(outbox.empty()) << "node 2's withdrawn PREPARE was counted";
  coordinator_->OnPrepare(prepares_[2], &outbox);
  EXPECT_EQ(Destinations<GoMessage>(outbox), All());
}

TEST_F(CoordinatorTest, FailedDoneNamingAPeerBlamesThePeer) {
  PrepareAll();
  Outbox outbox;
  coordinator_->OnDone(DoneOf(3, 1, StatusCode::kUnavailable, 8), &outbox);
  EXPECT_EQ(Destinations<AbortMessage>(outbox), All());
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.version, 1u);
    EXPECT_EQ(abort.failed_node, 8u);
    EXPECT_EQ(abort.code, StatusCode::kUnavailable);
    EXPECT_TRUE(Contains(abort.reason, "node 3")) << abort.reason;
    EXPECT_TRUE(Contains(abort.reason, "its work with node 8 failed")) << abort.reason;
  }
  EXPECT_EQ(coordinator_->committed_version(), 0u);
  EXPECT_FALSE(coordinator_->round_in_flight());
  Round(1);
}

TEST_F(CoordinatorTest, IgnoredPrepares) {
  Outbox outbox;
  coordinator_->OnPrepare(prepares_[0], &outbox);
  coordinator_->OnPrepare(prepares_[0], &outbox);  // duplicate
  PrepareMessage wrong_epoch = prepares_[1];
  wrong_epoch.epoch = kEpoch + 1;
  coordinator_->OnPrepare(wrong_epoch, &outbox);
  wrong_epoch.epoch = kEpoch - 1;
  coordinator_->OnPrepare(wrong_epoch, &outbox);
  PrepareMessage unknown = prepares_[1];
  unknown.node = kNodes;
  coordinator_->OnPrepare(unknown, &outbox);
  unknown.node = UINT32_MAX;
  coordinator_->OnPrepare(unknown, &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), 5u);

  // None of them counted: the round starts with the last of the N distinct PREPAREs.
  for (NodeId node = 1; node + 1 < kNodes; ++node)
    coordinator_->OnPrepare(prepares_[node], &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_FALSE(coordinator_->round_in_flight());
  coordinator_->OnPrepare(prepares_[kNodes - 1], &outbox);
  EXPECT_EQ(Destinations<GoMessage>(outbox), All());

  // A PREPARE while DONEs are collected is ignored too.
  outbox.clear();
  coordinator_->OnPrepare(prepares_[4], &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), 6u);
  EXPECT_TRUE(coordinator_->round_in_flight());
}

TEST_F(CoordinatorTest, IgnoredDones) {
  Outbox outbox;
  // No round in flight.
  coordinator_->OnDone(DoneOf(0, 1), &outbox);
  coordinator_->OnDone(DoneOf(0, 1, StatusCode::kInternal), &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), 2u);

  PrepareAll();
  coordinator_->OnDone(DoneOf(0, 1), &outbox);
  coordinator_->OnDone(DoneOf(0, 1), &outbox);                            // duplicate
  coordinator_->OnDone(DoneOf(0, 1, StatusCode::kUnavailable), &outbox);  // duplicate, failed
  coordinator_->OnDone(DoneOf(1, 0), &outbox);                            // wrong version
  coordinator_->OnDone(DoneOf(1, 2), &outbox);
  coordinator_->OnDone(DoneOf(1, 2, StatusCode::kDataLoss), &outbox);
  DoneMessage wrong_epoch = DoneOf(1, 1);
  wrong_epoch.epoch = kEpoch + 1;
  coordinator_->OnDone(wrong_epoch, &outbox);
  wrong_epoch.code = StatusCode::kUnavailable;
  coordinator_->OnDone(wrong_epoch, &outbox);
  coordinator_->OnDone(DoneOf(kNodes, 1), &outbox);  // unknown node
  coordinator_->OnDone(DoneOf(UINT32_MAX, 1, StatusCode::kUnavailable), &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), 11u);
  EXPECT_TRUE(coordinator_->round_in_flight());

  // The duplicates did not count: the COMMIT needs a DONE from every other node.
  for (NodeId node = 1; node + 1 < kNodes; ++node) coordinator_->OnDone(DoneOf(node, 1), &outbox);
  EXPECT_TRUE(outbox.empty());
  coordinator_->OnDone(DoneOf(kNodes - 1, 1), &outbox);
  EXPECT_EQ(Destinations<CommitMessage>(outbox), All());
  EXPECT_EQ(coordinator_->committed_version(), 1u);

  // After the COMMIT, DONEs of the committed version are ignored.
  outbox.clear();
  coordinator_->OnDone(DoneOf(3, 1), &outbox);
  coordinator_->OnDone(DoneOf(3, 1, StatusCode::kUnavailable), &outbox);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), 13u);
  EXPECT_EQ(coordinator_->committed_version(), 1u);
}

TEST_F(CoordinatorTest, NodeLostWhileCollectingDonesAbortsTheSurvivors) {
  Round(1);
  PrepareAll();
  Outbox outbox;
  coordinator_->OnDone(DoneOf(0, 2), &outbox);
  coordinator_->OnNodeLost(4, "missed 3 heartbeats", &outbox);
  EXPECT_EQ(Destinations<AbortMessage>(outbox), AllBut(kNodes, {4}));
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.epoch, kEpoch);
    EXPECT_EQ(abort.version, 2u);
    EXPECT_EQ(abort.failed_node, 4u);
    EXPECT_EQ(abort.code, StatusCode::kUnavailable);
    EXPECT_TRUE(Contains(abort.reason, "node 4")) << abort.reason;
    EXPECT_TRUE(Contains(abort.reason, "missed 3 heartbeats")) << abort.reason;
  }
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 1u);

  // Losing it again, or a node that does not exist, sends nothing.
  outbox.clear();
  coordinator_->OnNodeLost(4, "again", &outbox);
  coordinator_->OnNodeLost(kNodes, "no such node", &outbox);
  EXPECT_TRUE(outbox.empty());

  // Late DONEs are ignored; every later PREPARE is answered at once with an ABORT naming node 4.
  coordinator_->OnDone(DoneOf(1, 2), &outbox);
  EXPECT_TRUE(outbox.empty());
  for (NodeId node : AllBut(kNodes, {4})) {
    outbox.clear();
    coordinator_->OnPrepare(prepares_[node], &outbox);
    ASSERT_EQ(Destinations<AbortMessage>(outbox), std::vector<NodeId>{node});
    const AbortMessage& abort = std::get<AbortMessage>(outbox[0].second);
    EXPECT_EQ(abort.failed_node, 4u);
    EXPECT_EQ(abort.code, StatusCode::kUnavailable);
    EXPECT_EQ(abort.version, 2u);
    EXPECT_TRUE(Contains(abort.reason, "node 4")) << abort.reason;
  }
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 1u);
}

TEST_F(CoordinatorTest, NodeLostWhilePreparingReleasesThePreparedNodes) {
  Outbox outbox;
  for (const NodeId node : {0u, 2u, 5u, 6u}) coordinator_->OnPrepare(prepares_[node], &outbox);
  ASSERT_TRUE(outbox.empty());
  // Node 6 prepared and is lost: the other prepared nodes get ABORT, the lost one does not.
  coordinator_->OnNodeLost(6, "connection reset", &outbox);
  EXPECT_EQ(Destinations<AbortMessage>(outbox), (std::vector<NodeId>{0, 2, 5}));
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.version, 1u);
    EXPECT_EQ(abort.failed_node, 6u);
    EXPECT_EQ(abort.code, StatusCode::kUnavailable);
    EXPECT_TRUE(Contains(abort.reason, "node 6 was lost: connection reset")) << abort.reason;
  }
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 0u);

  // A second loss: nobody is waiting any more, so nothing is sent.
  outbox.clear();
  coordinator_->OnNodeLost(1, "gone", &outbox);
  EXPECT_TRUE(outbox.empty());
  // Later PREPAREs keep naming the first lost node.
  coordinator_->OnPrepare(prepares_[0], &outbox);
  ASSERT_EQ(Destinations<AbortMessage>(outbox), std::vector<NodeId>{0});
  EXPECT_EQ(std::get<AbortMessage>(outbox[0].second).failed_node, 6u);
}

// After a COMMIT the ABORT of a loss before the next round names the next version, never the
// committed one (ABORT(v) tells a node that v - 1 stays committed).
TEST_F(CoordinatorTest, NodeLostAfterACommitAbortsTheNextVersion) {
  Round(1);
  Round(2);
  Outbox outbox;
  for (const NodeId node : {1u, 3u}) coordinator_->OnPrepare(prepares_[node], &outbox);
  coordinator_->OnNodeLost(9, "link down", &outbox);
  EXPECT_EQ(Destinations<AbortMessage>(outbox), (std::vector<NodeId>{1, 3}));
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.version, 3u);
    EXPECT_EQ(abort.failed_node, 9u);
  }
  outbox.clear();
  coordinator_->OnPrepare(prepares_[0], &outbox);
  ASSERT_EQ(Destinations<AbortMessage>(outbox), std::vector<NodeId>{0});
  EXPECT_EQ(std::get<AbortMessage>(outbox[0].second).version, 3u);
  EXPECT_EQ(coordinator_->committed_version(), 2u);
}

TEST_F(CoordinatorTest, PrepareAfterALossIsAbortedAtOnce) {
  Outbox outbox;
  coordinator_->OnNodeLost(2, "killed", &outbox);
  EXPECT_TRUE(outbox.empty());  // nobody was waiting
  for (NodeId node : AllBut(kNodes, {2})) {
    outbox.clear();
    coordinator_->OnPrepare(prepares_[node], &outbox);
    ASSERT_EQ(Destinations<AbortMessage>(outbox), std::vector<NodeId>{node});
    const AbortMessage& abort = std::get<AbortMessage>(outbox[0].second);
    EXPECT_EQ(abort.epoch, kEpoch);
    EXPECT_EQ(abort.version, 1u);
    EXPECT_EQ(abort.failed_node, 2u);
    EXPECT_EQ(abort.code, StatusCode::kUnavailable);
    EXPECT_TRUE(Contains(abort.reason, "node 2 was lost: killed")) << abort.reason;
  }
  // The round never starts.
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 0u);
  EXPECT_EQ(coordinator_->placement(), nullptr);
}

TEST_F(CoordinatorTest, PlacementFailureAbortsEveryNode) {
  // Room for one fragment per node, but every owner needs k + m = 5.
  for (PrepareMessage& p : prepares_) p.capacity_bytes = kExtent;
  Outbox outbox = PrepareAll();
  EXPECT_EQ(Destinations<AbortMessage>(outbox), All());
  const uint64_t missing = kNodes * (kK + kM) * kExtent - kNodes * kExtent;
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.epoch, kEpoch);
    EXPECT_EQ(abort.version, 1u);
    EXPECT_EQ(abort.failed_node, UINT32_MAX);
    EXPECT_EQ(abort.code, StatusCode::kResourceExhausted);
    EXPECT_TRUE(Contains(abort.reason, "lacks " + std::to_string(missing) + " bytes"))
        << abort.reason;
  }
  EXPECT_FALSE(coordinator_->round_in_flight());
  EXPECT_EQ(coordinator_->committed_version(), 0u);
  EXPECT_EQ(coordinator_->placement(), nullptr);
  EXPECT_EQ(coordinator_->placement_id(), 0u);

  // With room, the next round places and commits version 1.
  prepares_ = World();
  ExpectPlacementInGos(Round(1));
  EXPECT_EQ(coordinator_->placement_id(), 1u);
}

TEST_F(CoordinatorTest, PlacementFailureKeepsTheCommittedPlacement) {
  ExpectPlacementInGos(Round(1));
  const Placement first = *coordinator_->placement();
  const std::vector<PrepareMessage> good = prepares_;
  prepares_[0].footprint_bytes = 1000 * kFootprint;  // no node has room for it
  Outbox outbox = PrepareAll();
  EXPECT_EQ(Destinations<AbortMessage>(outbox), All());
  for (const auto& [node, abort] : OfType<AbortMessage>(outbox)) {
    EXPECT_EQ(abort.version, 2u);
    EXPECT_EQ(abort.code, StatusCode::kResourceExhausted);
    EXPECT_TRUE(Contains(abort.reason, "owner 0")) << abort.reason;
  }
  EXPECT_EQ(coordinator_->committed_version(), 1u);
  EXPECT_EQ(coordinator_->placement_id(), 1u);
  EXPECT_EQ(*coordinator_->placement(), first);

  // Back to the placed inputs: version 2 reuses the placement the nodes have.
  prepares_ = good;
  for (const GoMessage& go : Round(2)) {
    EXPECT_FALSE(go.has_placement);
    EXPECT_EQ(go.placement_id, 1u);
  }
}

TEST(CoordinatorSmallWorldTest, ThreeNodesOneAndOne) {
  Result<std::unique_ptr<Coordinator>> made = Make(3, 1, 1);
  ASSERT_TRUE(made.ok()) << made.status();
  Coordinator& coordinator = **made;
  for (uint64_t version = 1; version <= 3; ++version) {
    Outbox outbox;
    for (NodeId node = 0; node < 3; ++node) {
      PrepareMessage p = PrepareOf(node);
      p.capacity_bytes = 2 * kExtent;
      coordinator.OnPrepare(p, &outbox);
    }
    ASSERT_EQ(Destinations<GoMessage>(outbox), All(3));
    for (const auto& [node, go] : OfType<GoMessage>(outbox)) {
      EXPECT_EQ(go.version, version);
      EXPECT_EQ(go.has_placement, version == 1);
      if (version == 1) {
        ASSERT_EQ(go.holders.size(), 2u);
        // The two holders are the other two nodes, and each hosts the other two owners.
        EXPECT_EQ(go.hosted_owners.size(), 2u);
      }
    }
    outbox.clear();
    for (NodeId node = 0; node < 3; ++node) coordinator.OnDone(DoneOf(node, version), &outbox);
    ASSERT_EQ(Destinations<CommitMessage>(outbox), All(3));
    EXPECT_EQ(coordinator.committed_version(), version);
  }
}

// When three nodes hold everyone's fragments, their GO could not name all the owners they host:
// the round is aborted with a reason instead of sending a message that cannot be encoded.
TEST(CoordinatorSmallWorldTest, TooManyHostedOwnersForOneMessageAborts) {
  constexpr NodeId kWorld = 1000;  // 3 rich nodes host ~667 owners each
  Result<std::unique_ptr<Coordinator>> made = Make(kWorld, 1, 1);
  ASSERT_TRUE(made.ok()) << made.status();
  Outbox outbox;
  for (NodeId node = 0; node < kWorld; ++node) {
    PrepareMessage p = PrepareOf(node);
    p.capacity_bytes = node < 3 ? kWorld * kExtent : 0;
    (*made)->OnPrepare(p, &outbox);
  }
  const auto aborts = OfType<AbortMessage>(outbox);
  ASSERT_EQ(aborts.size(), kWorld);
  EXPECT_EQ(aborts[0].second.code, StatusCode::kResourceExhausted);
  EXPECT_TRUE(Contains(aborts[0].second.reason, "fit one control message"))
      << aborts[0].second.reason;
  EXPECT_TRUE(OfType<GoMessage>(outbox).empty());
}

}  // namespace
}  // namespace ft::recovery
