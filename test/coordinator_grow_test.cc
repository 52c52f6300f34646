// Tests of the coordinator sizing the stores (recovery/coordinator.h: GROW before GO): the first
// round grows every store it sizes to exactly what the placement puts there, uneven images
// included; an image that grows within its extent's slack keeps the placement, one that outgrows
// it is placed into new stores without touching the committed extents; a node that cannot grow
// aborts the round for everyone at once; stores of fixed capacity are never grown; a node lost
// while others grow ends the round.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "recovery/coordinator.h"
#include "recovery/placement.h"
#include "recovery/protocol.h"

namespace ft::recovery {
namespace {

using Outbox = Coordinator::Outbox;

constexpr uint64_t kEpoch = 3;
constexpr uint32_t kNodes = 8;
constexpr int kK = 4;
constexpr int kM = 2;
constexpr uint64_t kFootprint = 10'000'000;

template <typename T>
std::vector<std::pair<NodeId, T>> Only(const Outbox& outbox) {
  std::vector<std::pair<NodeId, T>> out;
  for (const auto& [to, message] : outbox) {
    if (const T* m = std::get_if<T>(&message)) out.emplace_back(to, *m);
  }
  return out;
}

class CoordinatorGrowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = Coordinator::Create({kNodes, kK, kM, kEpoch});
    ASSERT_TRUE(made.ok()) << made.status();
    coordinator_ = std::move(made).value();
    for (NodeId node = 0; node < kNodes; ++node) {
      PrepareMessage p;
      p.epoch = kEpoch;
      p.node = node;
      p.footprint_bytes = kFootprint + 1000 * node;
      p.image_bytes = p.footprint_bytes;
      p.domain = node;
      p.store_sized_by_coordinator = true;
      prepares_.push_back(p);
    }
  }

  Outbox PrepareAll() {
    Outbox outbox;
    for (const PrepareMessage& p : prepares_) coordinator_->OnPrepare(p, &outbox);
    return outbox;
  }

  // What a node does on GROW: a new store of that size (new keys), and PREPARE again.
  Outbox AnswerGrows(const Outbox& grows) {
    Outbox outbox;
    for (const auto& [node, grow] : Only<GrowMessage>(grows)) {
      EXPECT_EQ(grow.epoch, kEpoch);
      PrepareMessage& p = prepares_[node];
      p.capacity_bytes = grow.store_bytes;
      p.store_addr = 0x100000000ull * (node + 1) + 0x1000000 * ++stores_made_;
      p.store_rkey = static_cast<uint32_t>(1000 * (node + 1) + stores_made_);
      coordinator_->OnPrepare(p, &outbox);
    }
    return outbox;
  }

  Outbox DoneAll(uint64_t version) {
    Outbox outbox;
    for (NodeId node = 0; node < kNodes; ++node) {
      coordinator_->OnDone(DoneMessage{kEpoch, version, node}, &outbox);
    }
    return outbox;
  }

  // Every GO's holders lie inside the store each holder offered, with slots of half the owner's
  // extent, and every extent holds its owner's footprint.
  void ExpectGosFitTheStores(const Outbox& outbox) {
    const auto gos = Only<GoMessage>(outbox);
    ASSERT_EQ(gos.size(), kNodes);
    for (const auto& [owner, go] : gos) {
      ASSERT_TRUE(go.has_placement);
      const uint64_t extent = 2 * go.slot_bytes;
      EXPECT_GE(extent, prepares_[owner].footprint_bytes) << "owner " << owner;
      EXPECT_EQ(extent, coordinator_->placement()->footprint_bytes(owner));
      for (const HolderAddress& holder : go.holders) {
        const PrepareMessage& h = prepares_[holder.slot.holder];
        EXPECT_EQ(holder.store_addr, h.store_addr);
        EXPECT_LE(holder.slot.store_offset + extent, h.capacity_bytes)
            << "owner " << owner << " on holder " << holder.slot.holder;
      }
    }
  }

  std::unique_ptr<Coordinator> coordinator_;
  std::vector<PrepareMessage> prepares_;
  uint32_t stores_made_ = 0;
};

// With no store yet, every node is asked to grow to exactly the extents it will host (rank 5's
// image is 10x the others': its holders' stores are larger), and the GO follows the PREPAREs of
// the grown stores, not before.
TEST_F(CoordinatorGrowTest, TheFirstRoundGrowsEveryStoreToItsExtents) {
  prepares_[5].footprint_bytes *= 10;
  Outbox first = PrepareAll();
  const auto grows = Only<GrowMessage>(first);
  ASSERT_EQ(grows.size(), kNodes) << "every node hosts fragments";
  EXPECT_EQ(grows.size(), first.size()) << "nothing but GROWs before the stores exist";
  uint64_t total = 0, extents = 0;
  for (const auto& [node, grow] : grows) total += grow.store_bytes;
  for (const PrepareMessage& p : prepares_)
    extents += (kK + kM) * ExtentBytesFor(p.footprint_bytes);
  EXPECT_EQ(total, extents) << "the stores hold the placement, nothing more";
  EXPECT_EQ(coordinator_->grow_requests(), 1u);
  EXPECT_FALSE(coordinator_->round_in_flight());

  Outbox go = AnswerGrows(first);
  ExpectGosFitTheStores(go);
  EXPECT_TRUE(coordinator_->round_in_flight());
  ASSERT_EQ(Only<CommitMessage>(DoneAll(1)).size(), kNodes);
  EXPECT_EQ(coordinator_->unprotected_placements(), 0u);
}

// An image that grows by 5% keeps its extent: the GO carries no placement. One that doubles is
// placed anew into new stores: every grown node's extents start at 0 of its new store, no
// extent of a node that kept its store overlaps its committed ones, and the committed state
// keeps the old stores' keys until the new version commits.
TEST_F(CoordinatorGrowTest, GrowingWithinTheSlackKeepsThePlacementBeyondItGrowsNewStores) {
  ExpectGosFitTheStores(AnswerGrows(PrepareAll()));
  ASSERT_EQ(Only<CommitMessage>(DoneAll(1)).size(), kNodes);
  const Placement committed = *coordinator_->committed_placement();
  const CoordinatorState state1 = coordinator_->state();

  prepares_[2].footprint_bytes = prepares_[2].footprint_bytes / 100 * 105;
  Outbox within = PrepareAll();
  auto gos = Only<GoMessage>(within);
  ASSERT_EQ(gos.size(), kNodes) << "no GROW within the slack";
  for (const auto& [node, go] : gos) EXPECT_FALSE(go.has_placement) << node;
  ASSERT_EQ(Only<CommitMessage>(DoneAll(2)).size(), kNodes);

  const std::vector<PrepareMessage> before = prepares_;
  for (PrepareMessage& p : prepares_) p.footprint_bytes *= 2;
  Outbox grows = PrepareAll();
  ASSERT_FALSE(Only<GrowMessage>(grows).empty());
  EXPECT_TRUE(Only<GoMessage>(grows).empty());
  std::map<NodeId, bool> grown;
  for (const auto& [node, grow] : Only<GrowMessage>(grows)) grown[node] = true;
  Outbox go = AnswerGrows(grows);
  ExpectGosFitTheStores(go);
  const Placement& next = *coordinator_->placement();
  for (NodeId holder = 0; holder < kNodes; ++holder) {
    for (const HostedFragment& fresh : next.HostedBy(holder)) {
      if (grown[holder]) continue;  // a new store: nothing committed in it
      const uint64_t fresh_end = fresh.store_offset + next.footprint_bytes(fresh.owner);
      for (const HostedFragment& old : committed.HostedBy(holder)) {
        const uint64_t old_end = old.store_offset + committed.footprint_bytes(old.owner);
        EXPECT_TRUE(fresh_end <= old.store_offset || old_end <= fresh.store_offset)
            << "holder " << holder << " owner " << fresh.owner;
      }
    }
  }
  EXPECT_EQ(coordinator_->state().prepares[0].store_addr, before[0].store_addr)
      << "until version 3 commits, version 2 is the committed one, in the old stores";
  EXPECT_EQ(coordinator_->state().committed_version, 2u);
  ASSERT_EQ(Only<CommitMessage>(DoneAll(3)).size(), kNodes);
  EXPECT_EQ(coordinator_->state().prepares[0].store_addr, prepares_[0].store_addr);
  EXPECT_NE(coordinator_->state(), state1);
  EXPECT_EQ(coordinator_->unprotected_placements(), 0u);
}

// A node that cannot register the store it was asked for withdraws: the round ends for every
// node at once (they would otherwise wait for it until their deadline), naming it and the bytes.
TEST_F(CoordinatorGrowTest, ANodeThatCannotGrowAbortsTheRoundForEveryone) {
  Outbox grows = PrepareAll();
  const auto requested = Only<GrowMessage>(grows);
  ASSERT_EQ(requested.size(), kNodes);
  Outbox outbox;
  coordinator_->OnDone(DoneMessage{kEpoch, kWithdrawVersion, 3, StatusCode::kResourceExhausted},
                       &outbox);
  const auto aborts = Only<AbortMessage>(outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  EXPECT_EQ(aborts[0].second.failed_node, 3u);
  EXPECT_EQ(aborts[0].second.code, StatusCode::kResourceExhausted);
  const std::string bytes = std::to_string(requested[3].second.store_bytes);
  EXPECT_NE(aborts[0].second.reason.find("node 3 could not register the store of " + bytes),
            std::string::npos)
      << aborts[0].second.reason;
  // The next attempt starts over and commits.
  ExpectGosFitTheStores(AnswerGrows(PrepareAll()));
  EXPECT_EQ(Only<CommitMessage>(DoneAll(1)).size(), kNodes);
}

// Only the stores the coordinator sizes are grown: fixed ones (odd ranks, with room for what
// they get) never hear a GROW, and the placement fits them as they are.
TEST_F(CoordinatorGrowTest, StoresOfFixedCapacityAreNeverGrown) {
  for (PrepareMessage& p : prepares_) {
    if (p.node % 2 == 1) {
      p.store_sized_by_coordinator = false;
      p.capacity_bytes = 2 * (kK + kM) * ExtentBytesFor(kFootprint + 10'000);
      p.store_addr = 0x9000000000ull * p.node;
      p.store_rkey = 7 + p.node;
    }
  }
  Outbox grows = PrepareAll();
  for (const auto& [node, grow] : Only<GrowMessage>(grows)) {
    EXPECT_EQ(node % 2, 0u) << "node " << node << " has a fixed store";
  }
  ExpectGosFitTheStores(AnswerGrows(grows));
}

// A node lost while others grow: the grown nodes' PREPAREs are answered with ABORT naming it.
TEST_F(CoordinatorGrowTest, ANodeLostWhileOthersGrowEndsTheRound) {
  Outbox grows = PrepareAll();
  ASSERT_EQ(Only<GrowMessage>(grows).size(), kNodes);
  Outbox lost;
  coordinator_->OnNodeLost(2, "heartbeat", &lost);
  Outbox answers = AnswerGrows(grows);
  EXPECT_TRUE(Only<GoMessage>(answers).empty());
  const auto aborts = Only<AbortMessage>(answers);
  ASSERT_EQ(aborts.size(), kNodes);
  for (const auto& [node, abort] : aborts) EXPECT_EQ(abort.failed_node, 2u);
}

}  // namespace
}  // namespace ft::recovery
