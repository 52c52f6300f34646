// Tests of the region layouts the coordinator learns (recovery/layout_book.h through
// recovery/coordinator.h): a PREPARE naming an unknown layout counts only once the layout was
// pulled, chunk by chunk; a known layout is not pulled again; the committed layouts are those of
// the committed round and go into the coordinator's state; a pull in progress ends with the round
// (a lost node, a withdrawal, a new view), and stray chunks are ignored.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <variant>
#include <vector>

#include "recovery/coordinator.h"
#include "recovery/protocol.h"
#include "recovery/view.h"

namespace ft::recovery {
namespace {

using Outbox = Coordinator::Outbox;

constexpr uint64_t kEpoch = 3;
constexpr uint32_t kNodes = 6;
constexpr uint64_t kMiB = uint64_t{1} << 20;

std::vector<LayoutRegion> RegionsOf(NodeId node, uint32_t count) {
  std::vector<LayoutRegion> regions;
  for (uint32_t r = 0; r < count; ++r)
    regions.push_back({uint64_t{node} * 1000 + r, (r + 1) * 4096});
  return regions;
}

// Node n protects n + 1 regions by default (node 4: 5, one chunk; node 5: 6, two chunks).
PrepareMessage PrepareOf(NodeId node, uint32_t regions, uint64_t digest) {
  PrepareMessage p;
  p.epoch = kEpoch;
  p.node = node;
  p.image_bytes = 4 * kMiB;
  p.footprint_bytes = 2 * kMiB;
  p.capacity_bytes = 64 * kMiB;
  p.domain = node;
  p.store_addr = 0x10000 * (node + 1);
  p.store_rkey = node + 1;
  p.layout_regions = regions;
  p.layout_digest = digest;
  return p;
}

template <typename T>
std::vector<std::pair<NodeId, T>> OfType(const Outbox& outbox) {
  std::vector<std::pair<NodeId, T>> out;
  for (const auto& [node, message] : outbox) {
    if (const T* m = std::get_if<T>(&message)) out.emplace_back(node, *m);
  }
  return out;
}

// Answers every LAYOUT_REQUEST in `outbox` as the node would, with `regions`, until the pulls
// end; returns the messages the coordinator sent besides the requests.
Outbox AnswerPulls(Coordinator& c, Outbox outbox,
                   const std::vector<std::vector<LayoutRegion>>& regions,
                   const std::vector<uint64_t>& digests, int* requests = nullptr) {
  Outbox others;
  while (!outbox.empty()) {
    Outbox next;
    for (auto& [to, message] : outbox) {
      const auto* request = std::get_if<LayoutRequestMessage>(&message);
      if (request == nullptr) {
        others.emplace_back(to, std::move(message));
        continue;
      }
      if (requests) ++*requests;
      EXPECT_EQ(request->node, to);
      EXPECT_EQ(request->digest, digests[to]);
      const std::vector<LayoutRegion>& all = regions[to];
      LayoutMessage chunk{request->epoch, to, request->digest, static_cast<uint32_t>(all.size()),
                          request->first, {}};
      for (size_t i = request->first;
           i < all.size() && chunk.regions.size() < kLayoutRegionsUpstream; ++i) {
        chunk.regions.push_back(all[i]);
      }
      c.OnLayout(chunk, &next);
    }
    outbox = std::move(next);
  }
  return others;
}

class CoordinatorLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = Coordinator::Create({kNodes, 3, 2, kEpoch});
    ASSERT_TRUE(made.ok()) << made.status();
    coordinator_ = std::move(made).value();
    for (NodeId node = 0; node < kNodes; ++node) {
      regions_.push_back(RegionsOf(node, node + 1));
      digests_.push_back(0xd1600000 + node);
    }
  }
  // Every node PREPAREs; the pulls are answered; returns what the coordinator sent otherwise.
  Outbox PrepareAll(int* requests = nullptr) {
    Outbox outbox;
    for (NodeId node = 0; node < kNodes; ++node) {
      coordinator_->OnPrepare(
          PrepareOf(node, static_cast<uint32_t>(regions_[node].size()), digests_[node]), &outbox);
    }
    return AnswerPulls(*coordinator_, std::move(outbox), regions_, digests_, requests);
  }
  void CommitVersion(uint64_t version) {
    Outbox outbox;
    for (NodeId node = 0; node < kNodes; ++node) {
      coordinator_->OnDone(DoneMessage{kEpoch, version, node, StatusCode::kOk}, &outbox);
    }
    ASSERT_EQ(OfType<CommitMessage>(outbox).size(), kNodes);
  }

  std::unique_ptr<Coordinator> coordinator_;
  std::vector<std::vector<LayoutRegion>> regions_;
  std::vector<uint64_t> digests_;
};

TEST_F(CoordinatorLayoutTest, UnknownLayoutsArePulledInChunksBeforeTheRoundStarts) {
  Outbox outbox;
  for (NodeId node = 0; node < kNodes; ++node) {
    coordinator_->OnPrepare(PrepareOf(node, node + 1, digests_[node]), &outbox);
  }
  // Every PREPARE waits for its layout: no GO yet, one request per node from region 0.
  const auto requests = OfType<LayoutRequestMessage>(outbox);
  ASSERT_EQ(requests.size(), kNodes);
  EXPECT_TRUE(OfType<GoMessage>(outbox).empty());
  for (const auto& [to, request] : requests) EXPECT_EQ(request.first, 0u);
  int answered = 0;
  Outbox rest = AnswerPulls(*coordinator_, std::move(outbox), regions_, digests_, &answered);
  // Nodes 0..4 fit one chunk of 5; node 5's 6 regions take two.
  EXPECT_EQ(answered, static_cast<int>(kNodes) + 1);
  EXPECT_EQ(OfType<GoMessage>(rest).size(), kNodes);
  CommitVersion(1);
  for (NodeId node = 0; node < kNodes; ++node) {
    EXPECT_EQ(coordinator_->committed_layout(node).regions, regions_[node]) << node;
    EXPECT_EQ(coordinator_->committed_layout(node).digest, digests_[node]) << node;
  }
  const CoordinatorState state = coordinator_->state();
  ASSERT_EQ(state.layouts.size(), kNodes);
  EXPECT_EQ(state.layouts[5].regions, regions_[5]);
}

TEST_F(CoordinatorLayoutTest, AKnownLayoutIsNotPulledAgainAndAChangedOneIs) {
  PrepareAll();
  CommitVersion(1);
  int requests = 0;
  EXPECT_EQ(OfType<GoMessage>(PrepareAll(&requests)).size(), kNodes);
  EXPECT_EQ(requests, 0) << "the same layouts must not be pulled again";
  CommitVersion(2);
  // Node 2 protects one region more: only its layout is pulled; the committed layouts change
  // only when the round commits.
  regions_[2] = RegionsOf(2, 4);
  digests_[2] = 0xbeef;
  EXPECT_EQ(OfType<GoMessage>(PrepareAll(&requests)).size(), kNodes);
  EXPECT_EQ(requests, 1);
  EXPECT_EQ(coordinator_->committed_layout(2).regions, RegionsOf(2, 3));
  CommitVersion(3);
  EXPECT_EQ(coordinator_->committed_layout(2).regions, RegionsOf(2, 4));
}

// A recovery that rolls back to the version before the committed one makes that version's
// layouts and image sizes the committed ones again.
TEST_F(CoordinatorLayoutTest, ARollbackRestoresTheLayoutsOfTheVersionBefore) {
  PrepareAll();
  CommitVersion(1);
  regions_[2] = RegionsOf(2, 4);
  digests_[2] = 0xbeef;
  PrepareAll();
  CommitVersion(2);
  ASSERT_EQ(coordinator_->committed_layout(2).regions, RegionsOf(2, 4));
  coordinator_->AdoptRecovery(1, kEpoch, {});
  EXPECT_EQ(coordinator_->committed_version(), 1u);
  EXPECT_EQ(coordinator_->committed_layout(2).regions, RegionsOf(2, 3));
  EXPECT_EQ(coordinator_->committed_layout(2).digest, 0xd1600002u);
}

TEST_F(CoordinatorLayoutTest, AnEmptyLayoutIsNeverPulled) {
  Outbox outbox;
  for (NodeId node = 0; node < kNodes; ++node) {
    coordinator_->OnPrepare(PrepareOf(node, 0, 0), &outbox);
  }
  EXPECT_TRUE(OfType<LayoutRequestMessage>(outbox).empty());
  EXPECT_EQ(OfType<GoMessage>(outbox).size(), kNodes);
  CommitVersion(1);
  EXPECT_TRUE(coordinator_->committed_layout(3).regions.empty());
}

TEST_F(CoordinatorLayoutTest, StrayChunksAreIgnoredAndThePullGoesOn) {
  Outbox outbox;
  coordinator_->OnPrepare(PrepareOf(5, 6, digests_[5]), &outbox);
  ASSERT_EQ(OfType<LayoutRequestMessage>(outbox).size(), 1u);
  const uint64_t ignored = coordinator_->ignored_messages();
  Outbox none;
  const std::vector<LayoutRegion> first5(regions_[5].begin(), regions_[5].begin() + 5);
  // Another digest, another count, a chunk out of order, another epoch, a node not pulled.
  coordinator_->OnLayout({kEpoch, 5, 0x1234, 6, 0, first5}, &none);
  coordinator_->OnLayout({kEpoch, 5, digests_[5], 7, 0, first5}, &none);
  coordinator_->OnLayout({kEpoch, 5, digests_[5], 6, 1, first5}, &none);
  coordinator_->OnLayout({kEpoch + 1, 5, digests_[5], 6, 0, first5}, &none);
  coordinator_->OnLayout({kEpoch, 4, digests_[4], 5, 0, RegionsOf(4, 5)}, &none);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), ignored + 5);
  coordinator_->OnLayout({kEpoch, 5, digests_[5], 6, 0, first5}, &none);
  const auto next = OfType<LayoutRequestMessage>(none);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].second.first, 5u);
}

// A node whose PREPARE waits for its layout waits for a GO: when the round cannot start (a
// lost node, a new view) it hears so at once; a withdrawal ends its pull.
TEST_F(CoordinatorLayoutTest, APullInProgressEndsWithTheRound) {
  Outbox outbox;
  coordinator_->OnPrepare(PrepareOf(5, 6, digests_[5]), &outbox);
  coordinator_->OnPrepare(PrepareOf(0, 0, 0), &outbox);
  outbox.clear();
  coordinator_->OnNodeLost(3, "test", &outbox);
  const auto aborts = OfType<AbortMessage>(outbox);
  ASSERT_EQ(aborts.size(), 2u);
  EXPECT_EQ(aborts[0].first, 0u);
  EXPECT_EQ(aborts[1].first, 5u);
  // The pull is over: its next chunk is a stray.
  const uint64_t ignored = coordinator_->ignored_messages();
  Outbox none;
  coordinator_->OnLayout({kEpoch, 5, digests_[5], 6, 0, RegionsOf(5, 5)}, &none);
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(coordinator_->ignored_messages(), ignored + 1);

  View view = View::Initial(kNodes, 0);
  view.epoch = kEpoch + 1;
  outbox.clear();
  ASSERT_TRUE(coordinator_->InstallView(view, &outbox).ok());
  Outbox in_new;
  PrepareMessage prepare = PrepareOf(5, 6, digests_[5]);
  prepare.epoch = kEpoch + 1;
  coordinator_->OnPrepare(prepare, &in_new);
  ASSERT_EQ(OfType<LayoutRequestMessage>(in_new).size(), 1u);
  outbox.clear();
  view.epoch = kEpoch + 2;
  ASSERT_TRUE(coordinator_->InstallView(view, &outbox).ok());
  const auto view_aborts = OfType<AbortMessage>(outbox);
  ASSERT_EQ(view_aborts.size(), 1u) << "the node whose layout was being pulled waits for a GO";
  EXPECT_EQ(view_aborts[0].first, 5u);
}

TEST_F(CoordinatorLayoutTest, AWithdrawnPrepareEndsItsPull) {
  Outbox outbox;
  coordinator_->OnPrepare(PrepareOf(5, 6, digests_[5]), &outbox);
  coordinator_->OnDone(DoneMessage{kEpoch, kWithdrawVersion, 5, StatusCode::kDeadlineExceeded},
                       &outbox);
  outbox.clear();
  coordinator_->OnLayout({kEpoch, 5, digests_[5], 6, 0, RegionsOf(5, 5)}, &outbox);
  EXPECT_TRUE(outbox.empty());
}

}  // namespace
}  // namespace ft::recovery
