// The coordinator's side of recovery (recovery/recovery_coordinator.h), driven message by
// message: VIEW, REPORT, the choice, RESTORE, RESTORED, REPROTECT, DONE, COMMIT or ABORT.
#include "recovery/recovery_coordinator.h"

#include <gtest/gtest.h>

#include "status_matchers.h"

namespace ft::recovery {
namespace {

constexpr uint32_t kNodes = 8;
constexpr int kK = 4;
constexpr int kM = 2;
constexpr NodeId kLost = 3;

RecoveryCoordinator::Input SampleInput() {
  std::vector<NodeSpec> specs(kNodes);
  RecoveryCoordinator::Input input;
  input.k = kK;
  input.m = kM;
  input.epoch = 2;
  input.replaced = {kLost};
  input.version = 5;
  input.written_epoch = 1;
  input.older_in_place = true;
  input.older_written_epoch = 1;
  for (NodeId node = 0; node < kNodes; ++node) {
    specs[node] = {node, 1 << 20, 64 << 10};
    PrepareMessage prepare;
    prepare.epoch = 1;
    prepare.node = node;
    prepare.image_bytes = 100'000 + node;
    prepare.footprint_bytes = 64 << 10;
    prepare.capacity_bytes = 1 << 20;
    prepare.store_addr = 0x10000000ull * (node + 1);
    prepare.store_rkey = 100 + node;
    input.prepares.push_back(prepare);
  }
  Result<Placement> placement = ComputePlacement(specs, kK, kM);
  EXPECT_TRUE(placement.ok()) << placement.status();
  input.placement = *placement;
  return input;
}

template <typename T>
std::vector<std::pair<NodeId, T>> Take(RecoveryCoordinator::Outbox& outbox) {
  std::vector<std::pair<NodeId, T>> taken;
  for (auto& [to, message] : outbox) {
    if (auto* typed = std::get_if<T>(&message)) taken.emplace_back(to, *typed);
  }
  outbox.clear();
  return taken;
}

struct Recovery {
  RecoveryCoordinator::Input input = SampleInput();
  std::unique_ptr<RecoveryCoordinator> recovery;
  std::vector<std::pair<NodeId, ViewMessage>> views;
  RecoveryCoordinator::Outbox outbox;

  Recovery() {
    auto started = RecoveryCoordinator::Start(input, &outbox);
    EXPECT_TRUE(started.ok()) << started.status();
    recovery = std::move(started).value();
    views = Take<ViewMessage>(outbox);
  }
  // Every member reports; `intact(owner, column)` says what its holder finds.
  void Report(const std::function<uint8_t(NodeId owner, uint32_t column)>& intact) {
    for (const auto& [node, view] : views) {
      ReportMessage report{view.epoch, node, view.version, {}};
      for (const HostedCheck& check : view.checks) {
        report.intact.push_back(intact(check.owner, check.column));
      }
      recovery->OnReport(report, &outbox);
    }
  }
};

TEST(RecoveryCoordinatorTest, AViewToEveryMemberListsWhatItHosts) {
  Recovery run;
  ASSERT_EQ(run.views.size(), kNodes);
  for (const auto& [node, view] : run.views) {
    EXPECT_EQ(view.epoch, 2u);
    EXPECT_EQ(view.version, 5u);
    EXPECT_EQ(view.replaced, std::vector<NodeId>{kLost});
    if (node == kLost) {
      EXPECT_TRUE(view.checks.empty());  // the replacement hosts nothing yet
      continue;
    }
    const auto hosted = run.input.placement.HostedBy(node);
    ASSERT_EQ(view.checks.size(), hosted.size()) << node;
    for (size_t i = 0; i < hosted.size(); ++i) {
      EXPECT_EQ(view.checks[i].owner, hosted[i].owner);
      EXPECT_EQ(view.checks[i].store_offset, hosted[i].store_offset);
      EXPECT_EQ(view.checks[i].slot_bytes,
                run.input.placement.footprint_bytes(hosted[i].owner) / 2);
    }
  }
}

TEST(RecoveryCoordinatorTest, IntactReportsLeadToRestoreReprotectAndCommit) {
  Recovery run;
  run.Report([](NodeId, uint32_t) { return kNewestIntact | kOlderIntact; });
  auto restores = Take<RestoreMessage>(run.outbox);
  ASSERT_EQ(restores.size(), kNodes);
  for (const auto& [node, restore] : restores) {
    EXPECT_EQ(restore.version, 5u);
    EXPECT_EQ(restore.written_epoch, 1u);
    EXPECT_EQ(restore.image_bytes, 100'000u + node);
    EXPECT_EQ(restore.holders.size(), static_cast<size_t>(kK + kM));
    // Only the replacement registers a store, as large as the lost one.
    EXPECT_EQ(restore.store_bytes, node == kLost ? uint64_t{1} << 20 : 0u) << node;
  }
  for (NodeId node = 0; node < kNodes; ++node) {
    run.recovery->OnRestored(
        {2, node, 5, StatusCode::kOk, node == kLost ? 0xabc000ull : 0x10000000ull * (node + 1),
         node == kLost ? 999u : 100 + node},
        &run.outbox);
  }
  auto reprotects = Take<ReprotectMessage>(run.outbox);
  // Exactly the owners with a column on the lost node, each for that column, at the new store.
  size_t expected = 0;
  for (NodeId owner = 0; owner < kNodes; ++owner) {
    const auto slots = run.input.placement.HoldersOf(owner);
    uint64_t columns = 0;
    for (size_t c = 0; c < slots.size(); ++c) {
      if (slots[c].holder == kLost) columns |= uint64_t{1} << c;
    }
    if (columns == 0) continue;
    ++expected;
    auto it = std::find_if(reprotects.begin(), reprotects.end(),
                           [&](const auto& sent) { return sent.first == owner; });
    ASSERT_NE(it, reprotects.end()) << "owner " << owner;
    EXPECT_EQ(it->second.columns, columns);
    for (const HolderAddress& holder : it->second.holders) {
      if (holder.slot.holder == kLost) {
        EXPECT_EQ(holder.store_addr, 0xabc000u);
        EXPECT_EQ(holder.store_rkey, 999u);
      }
    }
  }
  ASSERT_EQ(reprotects.size(), expected);
  ASSERT_GT(expected, 0u);
  for (size_t i = 0; i < reprotects.size(); ++i) {
    EXPECT_FALSE(run.recovery->finished());
    run.recovery->OnDone({2, 5, reprotects[i].first, StatusCode::kOk}, &run.outbox);
  }
  auto commits = Take<CommitMessage>(run.outbox);
  EXPECT_EQ(commits.size(), kNodes);
  EXPECT_EQ(run.recovery->phase(), RecoveryCoordinator::Phase::kRecovered);
  EXPECT_EQ(run.recovery->new_stores().size(), 1u);
}

TEST(RecoveryCoordinatorTest, TheVersionBeforeWhenTheNewestIsTornOnTooManyHolders) {
  Recovery run;
  // Owner 6's newest fragments survive on one holder only (the round tore them); V - 1 is whole.
  run.Report([](NodeId owner, uint32_t column) -> uint8_t {
    return (owner == 6 && column > 0 ? 0 : kNewestIntact) | kOlderIntact;
  });
  auto restores = Take<RestoreMessage>(run.outbox);
  ASSERT_EQ(restores.size(), kNodes);
  EXPECT_EQ(restores[0].second.version, 4u);
  EXPECT_EQ(run.recovery->version(), 4u);
  EXPECT_NE(run.recovery->table().find("owner 6: 1 | 5"), std::string::npos)
      << run.recovery->table();
}

// V - 1 is restored with its own image sizes (images may change size within their extents).
TEST(RecoveryCoordinatorTest, TheVersionBeforeIsRestoredWithItsOwnImageSizes) {
  Recovery run;
  // A second run whose input knows V - 1's sizes.
  RecoveryCoordinator::Input input = SampleInput();
  for (NodeId node = 0; node < kNodes; ++node) input.older_image_bytes.push_back(90'000 + node);
  RecoveryCoordinator::Outbox outbox;
  auto started = RecoveryCoordinator::Start(input, &outbox);
  ASSERT_TRUE(started.ok()) << started.status();
  outbox.clear();
  for (const auto& [node, view] : run.views) {
    ReportMessage report{2, node, 5, {}};
    for (const HostedCheck& check : view.checks) {
      report.intact.push_back((check.owner == 6 && check.column > 0 ? 0 : kNewestIntact) |
                              kOlderIntact);
    }
    (*started)->OnReport(report, &outbox);
  }
  const auto restores = Take<RestoreMessage>(outbox);
  ASSERT_EQ(restores.size(), kNodes);
  for (const auto& [node, restore] : restores) {
    EXPECT_EQ(restore.version, 4u);
    EXPECT_EQ(restore.image_bytes, 90'000u + node);
  }
}

// A member that could not reach a partner (Unavailable) saw a loss first: the recovery waits for
// it (the engine restarts the recovery); any other failure ends it at once.
TEST(RecoveryCoordinatorTest, AnUnavailableMemberWaitsForTheLossOtherFailuresEndIt) {
  Recovery run;
  run.Report([](NodeId, uint32_t) { return kNewestIntact | kOlderIntact; });
  Take<RestoreMessage>(run.outbox);
  run.recovery->OnRestored({2, 4, 5, StatusCode::kUnavailable, 0, 0}, &run.outbox);
  EXPECT_TRUE(run.outbox.empty());
  EXPECT_EQ(run.recovery->phase(), RecoveryCoordinator::Phase::kRestoring);
  // No loss came: the deadline ends it with the member's reason.
  run.recovery->OnDeadline(&run.outbox);
  auto aborts = Take<AbortMessage>(run.outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  EXPECT_EQ(aborts[0].second.code, StatusCode::kUnavailable);
  EXPECT_NE(aborts[0].second.reason.find("node 4 could not restore"), std::string::npos)
      << aborts[0].second.reason;

  Recovery other;
  other.Report([](NodeId, uint32_t) { return kNewestIntact | kOlderIntact; });
  Take<RestoreMessage>(other.outbox);
  other.recovery->OnRestored({2, 4, 5, StatusCode::kFailedPrecondition, 0, 0}, &other.outbox);
  EXPECT_EQ(Take<AbortMessage>(other.outbox).size(), kNodes);
  EXPECT_EQ(other.recovery->phase(), RecoveryCoordinator::Phase::kFailed);
}

TEST(RecoveryCoordinatorTest, TooFewFragmentsIsDataLossOnEveryMember) {
  Recovery run;
  run.Report([](NodeId owner, uint32_t) -> uint8_t { return owner == 5 ? 0 : kNewestIntact; });
  auto aborts = Take<AbortMessage>(run.outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  for (const auto& [node, abort] : aborts) {
    EXPECT_EQ(abort.version, kRecoveryVersion);
    EXPECT_EQ(abort.code, StatusCode::kDataLoss);
    EXPECT_NE(abort.reason.find("owner 5"), std::string::npos) << abort.reason;
  }
  EXPECT_EQ(run.recovery->phase(), RecoveryCoordinator::Phase::kFailed);
}

TEST(RecoveryCoordinatorTest, ALossDuringRecoveryFailsItAndStaleMessagesAreIgnored) {
  Recovery run;
  // A REPORT of another epoch, and one with the wrong number of checks, change nothing.
  run.recovery->OnReport({1, 0, 5, {}}, &run.outbox);
  run.recovery->OnReport({2, 0, 5, {1}}, &run.outbox);
  EXPECT_TRUE(run.outbox.empty());
  run.recovery->OnNodeLost(6, "no heartbeat", &run.outbox);
  auto aborts = Take<AbortMessage>(run.outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  EXPECT_EQ(aborts[0].second.code, StatusCode::kUnavailable);
  EXPECT_NE(aborts[0].second.reason.find("node 6 was lost during recovery"), std::string::npos);
}

TEST(RecoveryCoordinatorTest, NothingCommittedYetRestoresVersionZeroEverywhere) {
  RecoveryCoordinator::Input input = SampleInput();
  input.version = 0;
  input.placement = Placement();
  RecoveryCoordinator::Outbox outbox;
  auto started = RecoveryCoordinator::Start(input, &outbox);
  ASSERT_TRUE(started.ok()) << started.status();
  auto views = Take<ViewMessage>(outbox);
  ASSERT_EQ(views.size(), kNodes);
  for (const auto& [node, view] : views) {
    EXPECT_TRUE(view.checks.empty());
    (*started)->OnReport({2, node, 0, {}}, &outbox);
  }
  auto restores = Take<RestoreMessage>(outbox);
  ASSERT_EQ(restores.size(), kNodes);  // every member must hear it: its Recover() waits
  for (const auto& [node, restore] : restores) {
    EXPECT_EQ(restore.version, 0u);
    EXPECT_TRUE(restore.holders.empty());
    (*started)->OnRestored({2, node, 0, StatusCode::kOk, 0, 0}, &outbox);
  }
  EXPECT_EQ(Take<CommitMessage>(outbox).size(), kNodes);
  EXPECT_EQ((*started)->phase(), RecoveryCoordinator::Phase::kRecovered);
}

TEST(RecoveryCoordinatorTest, TheDeadlineNamesTheMembersThatDidNotAnswer) {
  Recovery run;
  run.Report([](NodeId, uint32_t) { return kNewestIntact; });
  Take<RestoreMessage>(run.outbox);
  for (NodeId node = 0; node < kNodes; ++node) {
    if (node == 2 || node == 6) continue;  // their applications never called Recover()
    run.recovery->OnRestored({2, node, 5, StatusCode::kOk, 0x10000000ull * (node + 1), 100 + node},
                             &run.outbox);
  }
  EXPECT_TRUE(run.outbox.empty());
  run.recovery->OnDeadline(&run.outbox);
  auto aborts = Take<AbortMessage>(run.outbox);
  ASSERT_EQ(aborts.size(), kNodes);
  EXPECT_EQ(aborts[0].second.code, StatusCode::kDeadlineExceeded);
  EXPECT_NE(aborts[0].second.reason.find("nodes 2, 6 sent no RESTORED"), std::string::npos)
      << aborts[0].second.reason;
  EXPECT_EQ(run.recovery->phase(), RecoveryCoordinator::Phase::kFailed);
}

TEST(RecoveryCoordinatorTest, BadInputIsInvalidArgument) {
  RecoveryCoordinator::Outbox outbox;
  RecoveryCoordinator::Input input = SampleInput();
  input.replaced = {};
  EXPECT_EQ(RecoveryCoordinator::Start(input, &outbox).status().code(),
            StatusCode::kInvalidArgument);
  input.replaced = {kNodes};
  EXPECT_TRUE(test::HasError(RecoveryCoordinator::Start(input, &outbox).status(),
                             StatusCode::kInvalidArgument, "replaced rank 8"));
  EXPECT_TRUE(outbox.empty());
}

}  // namespace
}  // namespace ft::recovery
