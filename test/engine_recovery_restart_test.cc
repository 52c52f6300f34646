// A loss during recovery restarts it in a newer view (loopback): a survivor that dies while the
// replacement of the first loss is being rebuilt, the replacement itself dying while it reads its
// image back, an owner dying while it re-protects, and more losses than parity, found by the
// restarted selection. Every case checks the images every rank holds afterwards, and that every
// fragment is readable again.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "status_matchers.h"
#include "verbs/faulty/faulty.h"
#include "world/loopback_world_internal.h"

namespace ft {
namespace {

using test::NodeState;

constexpr uint32_t kNodes = 8;
constexpr uint64_t kCommitted = 2;
// The epoch of the first recovery's view (the job starts in epoch 1), and of its restart.
constexpr uint64_t kFirstRecoveryEpoch = 2;
constexpr uint64_t kRestartEpoch = 3;
// A delay no test reaches: the request stays held until its fabric goes.
constexpr int kHoldSteps = 1 << 30;

bool PollFor(const std::function<bool()>& done, std::chrono::seconds limit) {
  return test::PollUntil(done, limit, std::chrono::milliseconds(1));
}

class RecoveryRestart : public ::testing::Test {
 protected:
  void SetUp() override {
    faults_ = std::make_shared<verbs::FaultController>();
    internal::LoopbackTestWorldOptions options = test::SmallWorld(kNodes, 4, 2, 16 << 10);
    options.engine.heartbeat_misses = 10;  // a loss is seen within 1 s (100 ms intervals)
    test::OverFaultyFabric(options, faults_);
    auto world = internal::LoopbackWorldTesting::Create(options);
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::move(world).value();
    states_.resize(kNodes);
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      states_[rank].regions = {std::vector<std::byte>(60'000 + rank * 4'321),
                               std::vector<std::byte>(20'000 + rank * 999)};
    }
    const Status committed = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
      FT_RETURN_IF_ERROR(states_[rank].ProtectAll(engine));
      for (uint64_t v = 1; v <= kCommitted; ++v) {
        states_[rank].Fill(rank, v);
        FT_RETURN_IF_ERROR(engine.Checkpoint().status());
      }
      states_[rank].Fill(rank, kCommitted + 1);  // work no checkpoint saved: rolled back
      return Status();
    });
    ASSERT_TRUE(committed.ok()) << committed;
  }

  // A new process for `rank`: fresh regions of the committed layout it is told, then Recover().
  Result<RecoveryReport> ReplaceAndRecover(uint32_t rank) {
    FT_ASSIGN_OR_RETURN(Engine * process, world_->Replace(rank));
    FT_ASSIGN_OR_RETURN(Assignment assigned, process->WaitForAssignment(std::chrono::seconds(20)));
    NodeState fresh;
    for (const ProtectedRegion& region : assigned.layout) {
      fresh.regions.emplace_back(region.bytes, std::byte{0x5a});
    }
    states_[rank] = std::move(fresh);  // the old process's memory is gone with it
    FT_RETURN_IF_ERROR(states_[rank].ProtectAll(*process));
    return process->Recover();
  }

  void KillAndWaitForDetection(uint32_t victim) {
    ASSERT_TRUE(world_->Kill(victim).ok());
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      if (rank == victim || rank == replaced_first_) continue;
      ASSERT_TRUE(
          PollFor([&] { return world_->engine(rank).FailureDetected(); }, std::chrono::seconds(20)))
          << "rank " << rank;
    }
  }

  // Every rank's report is the restart's: version kCommitted in epoch kRestartEpoch, the lost
  // ranks replaced; every image is version kCommitted and every column of it readable.
  void ExpectRecoveredInTheRestart(const std::vector<Result<RecoveryReport>>& reports,
                                   const std::vector<uint32_t>& lost) {
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      ASSERT_TRUE(reports[rank].ok()) << "rank " << rank << ": " << reports[rank].status();
      EXPECT_EQ(reports[rank]->version, kCommitted) << "rank " << rank;
      EXPECT_EQ(reports[rank]->epoch, kRestartEpoch) << "rank " << rank;
      EXPECT_EQ(reports[rank]->lost, lost) << "rank " << rank;
      const bool replaced = std::find(lost.begin(), lost.end(), rank) != lost.end();
      EXPECT_EQ(reports[rank]->replacement, replaced) << "rank " << rank;
      NodeState expected = states_[rank];
      expected.Fill(rank, kCommitted);
      EXPECT_TRUE(states_[rank].Image() == expected.Image()) << "rank " << rank;
    }
    // Full redundancy: every image reads back with any m columns left out.
    const Status verified = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
      const std::vector<std::byte> image = states_[rank].Image();
      for (int first = 0; first < 6; ++first) {
        for (int second = first + 1; second < 6; ++second) {
          std::vector<std::byte> back(image.size());
          const std::vector<int> skip = {first, second};
          FT_RETURN_IF_ERROR(engine.ReadCommitted(back, skip));
          if (back != image) return Status::DataLoss("columns ", first, ", ", second);
        }
      }
      return Status();
    });
    EXPECT_TRUE(verified.ok()) << verified;
    // And the job goes on.
    const Status next = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
      states_[rank].Fill(rank, kCommitted + 1);
      FT_ASSIGN_OR_RETURN(uint64_t version, engine.Checkpoint());
      if (version != kCommitted + 1) return Status::Internal("committed ", version);
      return Status();
    });
    EXPECT_TRUE(next.ok()) << next;
  }

  std::shared_ptr<verbs::FaultController> faults_;
  std::unique_ptr<LoopbackWorld> world_;
  std::vector<NodeState> states_;
  uint32_t replaced_first_ = UINT32_MAX;
};

// Rank 3 dies; once the recovery runs (rank 6 sent its REPORT, the only message it sends the
// coordinator after its last checkpoint: the VIEW came), rank 6, which has not called Recover(),
// dies too. The recovery restarts in a newer view with both replaced; rank 6's thread plays its
// new process.
TEST_F(RecoveryRestart, ASurvivorLostDuringTheRecoveryRestartsItWithBothReplaced) {
  const verbs::FaultRuleId reported =
      faults_->Add(verbs::FaultRule::Delay(0).For(verbs::Opcode::kSend).OnNode(6).ToPeer(0));
  KillAndWaitForDetection(3);
  replaced_first_ = 3;
  std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
  const Status ran = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
    if (rank == 3) {
      reports[rank] = ReplaceAndRecover(3);
    } else if (rank == 6) {
      if (!PollFor([&] { return faults_->fired(reported) > 0; }, std::chrono::seconds(30))) {
        return Status::DeadlineExceeded("rank 6 never reported in the recovery");
      }
      FT_RETURN_IF_ERROR(world_->Kill(6));
      reports[rank] = ReplaceAndRecover(6);
    } else {
      reports[rank] = engine.Recover();
    }
    return Status();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  ExpectRecoveredInTheRestart(reports, {3, 6});
}

// The replacement of rank 3 dies while it reads its image back (its READs held): the recovery
// restarts once a second new process for rank 3 joins; the survivors' Recover() goes on.
TEST_F(RecoveryRestart, AReplacementLostWhileItReadsIsReplacedAgain) {
  KillAndWaitForDetection(3);
  replaced_first_ = 3;
  const verbs::FaultRuleId held =
      faults_->Add(verbs::FaultRule::Delay(kHoldSteps).For(verbs::Opcode::kRead).OnNode(3));
  std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
  const Status ran = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
    if (rank != 3) {
      reports[rank] = engine.Recover();
      return Status();
    }
    std::jthread killer([&] {
      if (PollFor([&] { return faults_->fired(held) > 0; }, std::chrono::seconds(30))) {
        (void)world_->Kill(3);
      }
    });
    Result<RecoveryReport> first = ReplaceAndRecover(3);
    killer.join();
    if (first.ok()) return Status::Internal("the first replacement recovered although killed");
    faults_->Remove(held);  // the second process reads freely
    reports[rank] = ReplaceAndRecover(3);
    return Status();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  ExpectRecoveredInTheRestart(reports, {3});
}

// Rank 3 dies; rank 5, an owner with a column on rank 3 (holders of r are r+1 .. r+6), dies while
// it re-protects: its WRITEs of that column to rank 3's replacement are held. Rank 3's store then
// holds half-rewritten columns without their headers (written last), which the restarted
// selection counts as lost; the recovery restarts with both replaced and rebuilds every column.
TEST_F(RecoveryRestart, AnOwnerLostWhileItReprotectsRestartsTheRecovery) {
  KillAndWaitForDetection(3);
  replaced_first_ = 3;
  const verbs::FaultRuleId held = faults_->Add(verbs::FaultRule::Delay(kHoldSteps)
                                                   .For(verbs::Opcode::kWrite)
                                                   .ForWrIds(test::IsDataWrite)
                                                   .OnNode(5)
                                                   .ToPeer(3));
  std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
  const auto started = std::chrono::steady_clock::now();
  const Status ran = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
    if (rank == 3) {
      reports[rank] = ReplaceAndRecover(3);
    } else if (rank == 5) {
      std::jthread killer([&] {
        if (PollFor([&] { return faults_->fired(held) > 0; }, std::chrono::seconds(30))) {
          (void)world_->Kill(5);
        }
      });
      Result<RecoveryReport> first = engine.Recover();
      killer.join();
      if (first.ok()) return Status::Internal("rank 5 recovered although killed re-protecting");
      faults_->Remove(held);  // its new process writes freely
      reports[rank] = ReplaceAndRecover(5);
    } else {
      reports[rank] = engine.Recover();
    }
    return Status();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  // The other owners' re-protection rounds were cancelled at the loss, not left to their
  // deadline (the engines' 20 s timeout).
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  ExpectRecoveredInTheRestart(reports, {3, 5});
}

// With m = 2, ranks 2 and 3 are lost and recovery starts; rank 4 dies during it (after its
// REPORT, before it called Recover()). Some image had fragments on all three: the restarted
// selection finds it, and every member's Recover() fails with DataLoss naming the owners, quickly.
TEST_F(RecoveryRestart, ALossDuringRecoveryBeyondParityIsDataLossOnEveryMember) {
  const verbs::FaultRuleId reported =
      faults_->Add(verbs::FaultRule::Delay(0).For(verbs::Opcode::kSend).OnNode(4).ToPeer(0));
  ASSERT_TRUE(world_->Kill(3).ok());
  replaced_first_ = 3;  // dead: it detects nothing
  KillAndWaitForDetection(2);
  std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
  const auto started = std::chrono::steady_clock::now();
  const Status ran = world_->Run([&](uint32_t rank, Engine& engine) -> Status {
    if (rank == 2 || rank == 3) {
      reports[rank] = ReplaceAndRecover(rank);
    } else if (rank == 4) {
      if (!PollFor([&] { return faults_->fired(reported) > 0; }, std::chrono::seconds(30))) {
        return Status::DeadlineExceeded("rank 4 never reported in the recovery");
      }
      FT_RETURN_IF_ERROR(world_->Kill(4));
      reports[rank] = ReplaceAndRecover(4);
    } else {
      reports[rank] = engine.Recover();
    }
    return Status();
  });
  ASSERT_TRUE(ran.ok()) << ran;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_TRUE(test::HasError(reports[rank].status(), StatusCode::kDataLoss, "owner"))
        << "rank " << rank << ": " << reports[rank].status();
  }
  // Not a timeout: the selection says so as soon as the reports are in.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
}

}  // namespace
}  // namespace ft
