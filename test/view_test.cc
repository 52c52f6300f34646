// Tests of views and epochs in the coordinator (recovery/view.h, Coordinator::InstallView) and of
// the committed state a standby will receive (CoordinatorState, EncodeState/DecodeState):
// - ValidateView refuses every inconsistent view, naming the problem;
// - a newer view aborts what was prepared or in flight (in the old epoch), after which messages
//   of the old epoch are ignored and the next round, in the new epoch, commits;
// - the committed state changes only at COMMIT: a round under a new placement that aborts leaves
//   it (and committed_placement()) as they were; it round trips and every truncation is refused.
#include <gtest/gtest.h>

#include <memory>
#include <string_view>
#include <variant>
#include <vector>

#include "recovery/coordinator.h"
#include "recovery/view.h"
#include "test/status_matchers.h"

namespace ft::recovery {
namespace {

constexpr uint32_t kNodes = 6;
constexpr int kK = 2;
constexpr int kM = 1;

PrepareMessage PrepareOf(NodeId node, uint64_t epoch, uint64_t footprint = 1 << 20) {
  PrepareMessage p;
  p.epoch = epoch;
  p.node = node;
  p.image_bytes = footprint;
  p.footprint_bytes = footprint;
  p.capacity_bytes = 9 << 20;  // fixed: images change, stores do not
  p.domain = node;
  p.store_addr = 0x10000000ull * (node + 1);
  p.store_rkey = 100 + node;
  return p;
}

template <typename T>
std::vector<std::pair<NodeId, T>> Only(const Coordinator::Outbox& outbox) {
  std::vector<std::pair<NodeId, T>> out;
  for (const auto& [to, message] : outbox) {
    if (const T* m = std::get_if<T>(&message)) out.emplace_back(to, *m);
  }
  return out;
}

// Every node prepares in `epoch`; returns the GOs.
Coordinator::Outbox PrepareAll(Coordinator& c, uint64_t epoch, uint64_t footprint = 1 << 20) {
  Coordinator::Outbox outbox;
  for (NodeId node = 0; node < kNodes; ++node)
    c.OnPrepare(PrepareOf(node, epoch, footprint), &outbox);
  return outbox;
}

Coordinator::Outbox DoneAll(Coordinator& c, uint64_t epoch, uint64_t version) {
  Coordinator::Outbox outbox;
  for (NodeId node = 0; node < kNodes; ++node) c.OnDone(DoneMessage{epoch, version, node}, &outbox);
  return outbox;
}

// A coordinator in epoch 1 that committed version 1 (every node prepared and was done); null,
// with a test failure, if it did not.
std::unique_ptr<Coordinator> CommittedVersionOne() {
  Result<std::unique_ptr<Coordinator>> made = Coordinator::Create({kNodes, kK, kM, 1});
  EXPECT_TRUE(made.ok()) << made.status();
  if (!made.ok()) return nullptr;
  PrepareAll(**made, 1);
  DoneAll(**made, 1, 1);
  EXPECT_EQ((*made)->committed_version(), 1u);
  if ((*made)->committed_version() != 1) return nullptr;
  return std::move(made).value();
}

TEST(ViewTest, InitialViewAndDescribe) {
  const View view = View::Initial(4, 0);
  EXPECT_EQ(view.epoch, 1u);
  EXPECT_EQ(view.members, (std::vector<NodeId>{0, 1, 2, 3}));
  EXPECT_TRUE(ValidateView(view).ok());
  EXPECT_EQ(view.Describe(), "epoch 1: 4 members, coordinator 0, 0 spares");
}

TEST(ViewTest, InconsistentViewsAreRefusedNamingTheProblem) {
  View view = View::Initial(4, 0);
  view.epoch = 0;
  EXPECT_TRUE(test::HasError(ValidateView(view), StatusCode::kInvalidArgument, "epoch 0"));
  view = View::Initial(4, 0);
  view.members[2] = 1;
  EXPECT_TRUE(
      test::HasError(ValidateView(view), StatusCode::kInvalidArgument, "node 1 serves two ranks"));
  view = View::Initial(4, 0);
  view.spares = {3};
  EXPECT_TRUE(test::HasError(ValidateView(view), StatusCode::kInvalidArgument,
                             "node 3 is a spare and a member"));
  view = View::Initial(4, 0);
  view.coordinator = 9;
  EXPECT_TRUE(test::HasError(ValidateView(view), StatusCode::kInvalidArgument,
                             "coordinator 9 is not a member"));
  EXPECT_TRUE(test::HasError(ValidateView(View{}), StatusCode::kInvalidArgument, "no members"));
}

TEST(CoordinatorViewTest, NewerViewAbortsTheRoundInFlightAndOldEpochsAreIgnored) {
  auto made = Coordinator::Create({kNodes, kK, kM, 1});
  ASSERT_TRUE(made.ok());
  Coordinator& c = **made;
  ASSERT_EQ(Only<GoMessage>(PrepareAll(c, 1)).size(), kNodes);
  ASSERT_TRUE(c.round_in_flight());

  View next = View::Initial(kNodes, 0);
  next.epoch = 2;
  Coordinator::Outbox outbox;
  ASSERT_TRUE(c.InstallView(next, &outbox).ok());
  const auto aborts = Only<AbortMessage>(outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  for (const auto& [to, abort] : aborts) {
    EXPECT_EQ(abort.epoch, 1u) << "the old view's nodes must accept it";
    EXPECT_EQ(abort.version, 1u);
    EXPECT_NE(abort.reason.find("epoch 2"), std::string::npos) << abort.reason;
  }
  EXPECT_FALSE(c.round_in_flight());
  EXPECT_EQ(c.epoch(), 2u);

  // The old epoch's DONEs and PREPAREs change nothing now.
  const uint64_t ignored = c.ignored_messages();
  EXPECT_TRUE(DoneAll(c, 1, 1).empty());
  EXPECT_TRUE(PrepareAll(c, 1).empty());
  EXPECT_EQ(c.ignored_messages(), ignored + 2 * kNodes);
  // In the new epoch: a GO carrying a placement (recomputed for the new view), then a commit.
  const auto gos = Only<GoMessage>(PrepareAll(c, 2));
  ASSERT_EQ(gos.size(), kNodes);
  for (const auto& [to, go] : gos) {
    EXPECT_EQ(go.epoch, 2u);
    EXPECT_TRUE(go.has_placement);
  }
  EXPECT_EQ(Only<CommitMessage>(DoneAll(c, 2, 1)).size(), kNodes);
  EXPECT_EQ(c.committed_version(), 1u);
  EXPECT_EQ(c.state().committed_epoch, 2u);
}

TEST(CoordinatorViewTest, OnlyNewerValidViewsOfTheSameSizeAreInstalled) {
  auto made = Coordinator::Create({kNodes, kK, kM, 3});
  ASSERT_TRUE(made.ok());
  Coordinator::Outbox outbox;
  View same = View::Initial(kNodes, 0);
  same.epoch = 3;
  EXPECT_TRUE(test::HasError((*made)->InstallView(same, &outbox), StatusCode::kFailedPrecondition,
                             "not newer"));
  View smaller = View::Initial(kNodes - 1, 0);
  smaller.epoch = 4;
  EXPECT_TRUE(test::HasError((*made)->InstallView(smaller, &outbox), StatusCode::kInvalidArgument,
                             "5 members; the world has 6"));
  View broken = View::Initial(kNodes, 0);
  broken.epoch = 4;
  broken.coordinator = 77;
  EXPECT_EQ((*made)->InstallView(broken, &outbox).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(outbox.empty());
  EXPECT_EQ((*made)->epoch(), 3u);
}

// A recovery keeps the committed placement: a replacement takes its rank's slots in a store of
// its own, so the next round sends the same placement (same id, same slots) with the new store's
// keys, and grows no store. Recomputing would place every fragment beside the committed extents.
TEST(CoordinatorViewTest, ANewViewKeepsTheCommittedPlacementWithTheReplacementsKeys) {
  const std::unique_ptr<Coordinator> made = CommittedVersionOne();
  ASSERT_NE(made, nullptr);
  Coordinator& c = *made;
  const Placement committed = *c.committed_placement();
  const uint64_t committed_id = c.placement_id();
  // A round under a new placement (every image grew) is in flight when node 4 is lost.
  ASSERT_TRUE(Only<GoMessage>(PrepareAll(c, 1, 3 << 19))[0].second.has_placement);
  ASSERT_NE(*c.placement(), committed);
  Coordinator::Outbox outbox;
  c.OnNodeLost(4, "killed", &outbox);
  View next = View::Initial(kNodes, 0);
  next.epoch = 2;
  outbox.clear();
  ASSERT_TRUE(c.InstallView(next, &outbox).ok());
  c.AdoptRecovery(1, 1, {});
  const auto prepare_all = [&] {
    Coordinator::Outbox sent;
    for (NodeId node = 0; node < kNodes; ++node) {
      PrepareMessage p = PrepareOf(node, 2);
      if (node == 4) {
        p.store_addr = 0x7700000000ull;  // the replacement's store
        p.store_rkey = 4444;
      }
      c.OnPrepare(p, &sent);
    }
    return sent;
  };
  outbox = prepare_all();
  EXPECT_TRUE(Only<GrowMessage>(outbox).empty());
  const auto gos = Only<GoMessage>(outbox);
  ASSERT_EQ(gos.size(), kNodes);
  EXPECT_EQ(*c.placement(), committed) << "the committed placement, not the aborted round's";
  size_t holders_on_4 = 0;
  for (const auto& [to, go] : gos) {
    EXPECT_TRUE(go.has_placement) << "every member learns the replacement's keys";
    EXPECT_EQ(go.placement_id, committed_id);
    for (const HolderAddress& holder : go.holders) {
      if (holder.slot.holder != 4) continue;
      ++holders_on_4;
      EXPECT_EQ(holder.store_addr, 0x7700000000ull);
      EXPECT_EQ(holder.store_rkey, 4444u);
    }
  }
  EXPECT_GT(holders_on_4, 0u);
  EXPECT_EQ(Only<CommitMessage>(DoneAll(c, 2, 2)).size(), kNodes);
  // Unchanged after that: the short GO again.
  const auto later = Only<GoMessage>(prepare_all());
  ASSERT_EQ(later.size(), kNodes);
  for (const auto& [to, go] : later) EXPECT_FALSE(go.has_placement) << "node " << to;
}

TEST(CoordinatorViewTest, LostMarksOfTheOldViewAreForgotten) {
  auto made = Coordinator::Create({kNodes, kK, kM, 1});
  ASSERT_TRUE(made.ok());
  Coordinator& c = **made;
  Coordinator::Outbox outbox;
  c.OnNodeLost(4, "killed", &outbox);
  // While node 4 is lost every PREPARE is answered with ABORT naming it.
  EXPECT_EQ(Only<AbortMessage>(PrepareAll(c, 1)).size(), kNodes);
  View next = View::Initial(kNodes, 0);  // rank 4 replaced (same node id in this model)
  next.epoch = 2;
  outbox.clear();
  ASSERT_TRUE(c.InstallView(next, &outbox).ok());
  EXPECT_EQ(Only<GoMessage>(PrepareAll(c, 2)).size(), kNodes);
}

// The committed state moves only at COMMIT: version 2 under a new placement (every image grew)
// aborts, and the state still describes version 1's placement.
TEST(CoordinatorStateTest, AnAbortedRoundUnderANewPlacementLeavesTheCommittedState) {
  auto made = Coordinator::Create({kNodes, kK, kM, 1});
  ASSERT_TRUE(made.ok());
  Coordinator& c = **made;
  EXPECT_EQ(c.state(), (CoordinatorState{1, 0, 0, 0, {}, {}}));
  PrepareAll(c, 1);
  DoneAll(c, 1, 1);
  const CoordinatorState committed = c.state();
  ASSERT_EQ(committed.committed_version, 1u);
  ASSERT_EQ(committed.prepares.size(), kNodes);
  const Placement placement = *c.committed_placement();

  const auto gos = Only<GoMessage>(PrepareAll(c, 1, 2 << 20));
  ASSERT_EQ(gos.size(), kNodes);
  ASSERT_TRUE(gos[0].second.has_placement) << "bigger images: a new placement";
  Coordinator::Outbox outbox;
  c.OnDone(DoneMessage{1, 2, 3, StatusCode::kUnavailable, 5}, &outbox);
  ASSERT_EQ(Only<AbortMessage>(outbox).size(), kNodes);
  EXPECT_EQ(c.state(), committed);
  EXPECT_EQ(*c.committed_placement(), placement);
  EXPECT_NE(*c.placement(), placement) << "the nodes hold the new one";
}

// A changed placement goes around the committed version's extents on every holder when the
// stores have the room (PrepareOf offers 9 MiB of fixed store: 8 extents of a 1 MiB footprint),
// and over them, counted, when not.
TEST(CoordinatorStateTest, AChangedPlacementAvoidsTheCommittedExtents) {
  const std::unique_ptr<Coordinator> made = CommittedVersionOne();
  ASSERT_NE(made, nullptr);
  Coordinator& c = *made;
  const Placement committed = *c.committed_placement();
  const auto gos = Only<GoMessage>(PrepareAll(c, 1, 3 << 19));  // every image 1.5x
  ASSERT_EQ(gos.size(), kNodes);
  const Placement& next = *c.placement();
  for (NodeId holder = 0; holder < kNodes; ++holder) {
    for (const HostedFragment& old_extent : committed.HostedBy(holder)) {
      const uint64_t old_end =
          old_extent.store_offset + committed.footprint_bytes(old_extent.owner);
      for (const HostedFragment& new_extent : next.HostedBy(holder)) {
        const uint64_t new_end = new_extent.store_offset + next.footprint_bytes(new_extent.owner);
        EXPECT_TRUE(new_end <= old_extent.store_offset || old_end <= new_extent.store_offset)
            << "holder " << holder << ": owner " << new_extent.owner << "'s new extent ["
            << new_extent.store_offset << ", " << new_end << ") overlaps owner " << old_extent.owner
            << "'s committed [" << old_extent.store_offset << ", " << old_end << ")";
      }
    }
  }
  EXPECT_EQ(c.unprotected_placements(), 0u);
  // Version 2 commits; images grow to 2.5x: 3 extents of 2.8 MiB do not fit 9 MiB beside the
  // 5.1 MiB committed, so the placement goes over them (and says so).
  DoneAll(c, 1, 2);
  ASSERT_EQ(c.committed_version(), 2u);
  ASSERT_EQ(Only<GoMessage>(PrepareAll(c, 1, 5 << 19)).size(), kNodes);
  EXPECT_EQ(c.unprotected_placements(), 1u);
}

// A node that gave up waiting for its GO withdraws its PREPARE: before the round starts it is
// taken back (the round waits for its next one); after, the round aborts naming it.
TEST(CoordinatorViewTest, AWithdrawnPrepareIsTakenBackOrAbortsTheRound) {
  auto made = Coordinator::Create({kNodes, kK, kM, 1});
  ASSERT_TRUE(made.ok());
  Coordinator& c = **made;
  Coordinator::Outbox outbox;
  c.OnPrepare(PrepareOf(2, 1), &outbox);
  c.OnDone(DoneMessage{1, kWithdrawVersion, 2, StatusCode::kDeadlineExceeded}, &outbox);
  for (NodeId node = 0; node < kNodes; ++node) {
    if (node != 2) c.OnPrepare(PrepareOf(node, 1), &outbox);
  }
  EXPECT_TRUE(outbox.empty()) << "no round may start without node 2";
  c.OnPrepare(PrepareOf(2, 1), &outbox);
  ASSERT_EQ(Only<GoMessage>(outbox).size(), kNodes);
  outbox.clear();
  c.OnDone(DoneMessage{1, kWithdrawVersion, 4, StatusCode::kDeadlineExceeded}, &outbox);
  const auto aborts = Only<AbortMessage>(outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  EXPECT_EQ(aborts[0].second.failed_node, 4u);
  EXPECT_NE(aborts[0].second.reason.find("node 4 gave up waiting"), std::string::npos);
  EXPECT_FALSE(c.round_in_flight());
}

TEST(CoordinatorStateTest, RoundTripsAndRefusesEveryTruncation) {
  CoordinatorState state{4, 9, 3, 2, {}, {}};
  for (NodeId node = 0; node < 5; ++node) {
    state.prepares.push_back(PrepareOf(node, 3));
    RegionLayout layout{0xabc0 + node, {}};
    for (uint64_t r = 0; r < node; ++r) layout.regions.push_back({r * 7, (r + 1) << 20});
    state.layouts.push_back(std::move(layout));
  }
  const std::vector<std::byte> bytes = EncodeState(state);
  Result<CoordinatorState> back = DecodeState(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, state);
  for (size_t length = 0; length < bytes.size(); ++length) {
    EXPECT_EQ(DecodeState({bytes.data(), length}).status().code(), StatusCode::kInvalidArgument)
        << length;
  }
  std::vector<std::byte> longer = bytes;
  longer.push_back(std::byte{0});
  EXPECT_TRUE(
      test::HasError(DecodeState(longer).status(), StatusCode::kInvalidArgument, "past its end"));
  std::vector<std::byte> foreign = bytes;
  foreign[0] = std::byte{'X'};
  EXPECT_TRUE(test::HasError(DecodeState(foreign).status(), StatusCode::kInvalidArgument,
                             "not a coordinator state"));
}

}  // namespace
}  // namespace ft::recovery
