// Node-loss recovery on the loopback fabric: a rank dies, a new process replaces it, Recover()
// restores the selected version into every member's regions, and full redundancy comes back
// (every column of every image readable again) without a checkpoint.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "engine_test_util.h"
#include "status_matchers.h"
#include "world/loopback_world_internal.h"

namespace ft {
namespace {

#define ASSERT_OK(expr)                         \
  do {                                          \
    const ::ft::Status ft_status_ = (expr);     \
    ASSERT_TRUE(ft_status_.ok()) << ft_status_; \
  } while (0)

using test::NodeState;

constexpr uint32_t kNodes = 8;

internal::LoopbackTestWorldOptions RecoveryWorld() {
  internal::LoopbackTestWorldOptions options = test::SmallWorld(kNodes, 4, 2, 16 << 10);
  // Detection within 1 s: a loopback node is lost after ten silent 100 ms intervals.
  options.engine.heartbeat_misses = 10;
  return options;
}

// Every rank a different size, two regions (one cell straddles them).
std::vector<NodeState> States() {
  std::vector<NodeState> states(kNodes);
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    states[rank].regions = {std::vector<std::byte>(100'000 + rank * 7'777),
                            std::vector<std::byte>(50'000 + rank * 3'333)};
  }
  return states;
}

// The layout NodeState::ProtectAll gives: region i has id i.
std::vector<ProtectedRegion> LayoutOf(const NodeState& state) {
  std::vector<ProtectedRegion> layout;
  for (size_t i = 0; i < state.regions.size(); ++i) layout.push_back({i, state.regions[i].size()});
  return layout;
}

// A spare's regions as an application builds them: from the layout it was assigned, filled with
// garbage (ids must be 0, 1, ...: ProtectAll's).
Status AllocateFrom(const std::vector<ProtectedRegion>& layout, NodeState* state) {
  state->regions.clear();
  for (size_t i = 0; i < layout.size(); ++i) {
    if (layout[i].id != i) return Status::Internal("region ", i, " has id ", layout[i].id);
    state->regions.emplace_back(layout[i].bytes, std::byte{0x5a});
  }
  return Status();
}

bool IsVictimOf(const std::vector<uint32_t>& victims, uint32_t rank) {
  return std::find(victims.begin(), victims.end(), rank) != victims.end();
}

bool WaitForFailure(LoopbackWorld& world, uint32_t rank) {
  return test::PollUntil([&] { return world.engine(rank).FailureDetected(); },
                         std::chrono::seconds(20), std::chrono::milliseconds(10));
}

// Reads each owner's committed image back with every choice of m columns treated as lost: all
// k + m columns of every image must be intact, those on the replacement included.
void ExpectFullRedundancy(LoopbackWorld& world, const std::vector<NodeState>& states, int k,
                          int m) {
  const int width = k + m;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    const std::vector<std::byte> expected = states[rank].Image();
    for (int mask = 0; mask < (1 << width); ++mask) {
      if (__builtin_popcount(mask) != m) continue;
      std::vector<int> skip;
      for (int c = 0; c < width; ++c) {
        if (mask & (1 << c)) skip.push_back(c);
      }
      std::vector<std::byte> out(expected.size());
      const Status read = world.engine(rank).ReadCommitted(out, skip);
      ASSERT_TRUE(read.ok()) << "rank " << rank << " mask " << mask << ": " << read;
      ASSERT_TRUE(out == expected) << "rank " << rank << " mask " << mask;
    }
  }
}

class EngineRecovery : public ::testing::Test {
 protected:
  void Start(internal::LoopbackTestWorldOptions options = RecoveryWorld()) {
    options_ = options;
    auto world = internal::LoopbackWorldTesting::Create(options);
    ASSERT_TRUE(world.ok()) << world.status();
    world_ = std::move(world).value();
    states_ = States();
    ASSERT_OK(world_->Run(
        [&](uint32_t rank, Engine& engine) { return states_[rank].ProtectAll(engine); }));
  }

  // Commits versions first..last, each rank's state filled with the version number first.
  Status Commit(uint64_t first, uint64_t last) {
    return world_->Run([&](uint32_t rank, Engine& engine) -> Status {
      for (uint64_t v = first; v <= last; ++v) {
        states_[rank].Fill(rank, v);
        FT_ASSIGN_OR_RETURN(uint64_t version, engine.Checkpoint());
        if (version != v) return Status::Internal("committed ", version, ", expected ", v);
        committed_any_ = true;
      }
      return Status();
    });
  }

  // Kills the victims and waits until every other rank knows.
  void KillAndWait(const std::vector<uint32_t>& victims) {
    for (uint32_t victim : victims) ASSERT_OK(world_->Kill(victim));
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      if (std::find(victims.begin(), victims.end(), rank) == victims.end()) {
        ASSERT_TRUE(WaitForFailure(*world_, rank)) << "rank " << rank;
      }
    }
  }

  bool IsVictim(uint32_t rank) const {
    return std::find(victims_.begin(), victims_.end(), rank) != victims_.end();
  }

  // Every rank calls Recover(); each victim first gets a new process, whose regions (same
  // layout, `replacement_bytes` each smaller when asked) hold garbage.
  std::vector<Result<RecoveryReport>> RecoverAll(const std::vector<uint32_t>& victims,
                                                 size_t shrink_replacement = 0) {
    victims_ = victims;
    std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
    (void)world_->Run([&](uint32_t rank, Engine& engine) -> Status {
      Engine* member = &engine;
      if (IsVictim(rank)) {
        Result<Engine*> replaced = world_->Replace(rank);
        if (!replaced.ok()) {
          reports[rank] = replaced.status();
          return Status();
        }
        member = *replaced;
        if (!member->IsSpare()) reports[rank] = Status::Internal("a replacement is a spare");
        // Started for this rank: the assignment is its rank and the committed layout.
        Result<Assignment> assigned = member->WaitForAssignment(std::chrono::seconds(20));
        if (!assigned.ok() || assigned->rank != rank ||
            assigned->layout !=
                (committed_any_ ? LayoutOf(states_[rank]) : std::vector<ProtectedRegion>{}) ||
            member->CommittedLayout() != assigned->layout) {
          reports[rank] = Status::Internal(
              "rank ", rank, "'s replacement was assigned ",
              assigned.ok() ? "another rank or layout" : assigned.status().ToString());
          return Status();
        }
        for (auto& region : states_[rank].regions) {
          region.resize(region.size() - shrink_replacement);
          std::fill(region.begin(), region.end(), std::byte{0x5a});
        }
        if (Status protect = states_[rank].ProtectAll(*member); !protect.ok()) {
          reports[rank] = protect;
          return Status();
        }
      }
      reports[rank] = member->Recover();
      return Status();
    });
    return reports;
  }

  // Every rank calls Recover(); the victim's thread plays the process of spare `expected` (the
  // one the coordinator must choose), which allocates its regions from the layout it is
  // assigned (*layout).
  std::vector<Result<RecoveryReport>> RecoverOntoSpare(uint32_t victim,
                                                       std::vector<ProtectedRegion>* layout,
                                                       uint32_t expected = 0) {
    victims_ = {victim};
    std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
    std::vector<uint32_t> everyone(kNodes);
    for (uint32_t rank = 0; rank < kNodes; ++rank) everyone[rank] = rank;
    const Status ran = world_->RunOn(everyone, [&](uint32_t rank, Engine& engine) -> Status {
      if (rank != victim) {
        reports[rank] = engine.Recover();
        return Status();
      }
      Engine& spare = world_->spare(expected);
      FT_ASSIGN_OR_RETURN(Assignment assigned, spare.WaitForAssignment(std::chrono::seconds(10)));
      if (assigned.rank != victim) {
        return Status::Internal("spare ", expected, " was assigned rank ", assigned.rank);
      }
      if (spare.world().rank != victim) {
        return Status::Internal("the spare's engine is not rank ", victim, "'s");
      }
      *layout = assigned.layout;
      // The spare knows nothing of the rank but what it was told: it allocates from the layout.
      FT_RETURN_IF_ERROR(AllocateFrom(assigned.layout, &states_[victim]));
      FT_RETURN_IF_ERROR(states_[victim].ProtectAll(spare));
      reports[rank] = spare.Recover();
      return Status();
    });
    EXPECT_TRUE(ran.ok()) << ran;
    return reports;
  }

  // Of two spares the coordinator must give lost rank `victim` to spare 1, not to the first
  // launched: the recovery restores `version` and spare 0 still waits.
  void ExpectLossGoesToSpareOne(uint32_t victim, uint64_t version) {
    KillAndWait({victim});
    std::vector<ProtectedRegion> layout;
    const std::vector<Result<RecoveryReport>> reports = RecoverOntoSpare(victim, &layout, 1);
    ExpectRecovered(reports, version);
    EXPECT_EQ(&world_->engine(victim), &world_->spare(1));
    EXPECT_TRUE(world_->spare(0).IsSpare()) << "the spare passed over still waits";
  }

  void ExpectImages(uint64_t version) {
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      NodeState expected = states_[rank];
      expected.Fill(rank, version);
      EXPECT_TRUE(states_[rank].Image() == expected.Image()) << "rank " << rank;
    }
  }

  void ExpectRecovered(const std::vector<Result<RecoveryReport>>& reports, uint64_t version) {
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      ASSERT_TRUE(reports[rank].ok()) << "rank " << rank << ": " << reports[rank].status();
      EXPECT_EQ(reports[rank]->version, version) << "rank " << rank;
      EXPECT_EQ(reports[rank]->replacement, IsVictim(rank)) << "rank " << rank;
      EXPECT_EQ(reports[rank]->lost, victims_) << "rank " << rank;
      EXPECT_FALSE(world_->engine(rank).FailureDetected()) << "rank " << rank;
      EXPECT_FALSE(world_->engine(rank).IsSpare()) << "rank " << rank;
    }
    ExpectImages(version);
    ExpectFullRedundancy(*world_, states_, options_.engine.k, options_.engine.m);
  }

  internal::LoopbackTestWorldOptions options_;
  std::unique_ptr<LoopbackWorld> world_;
  std::vector<NodeState> states_;
  std::vector<uint32_t> victims_;
  bool committed_any_ = false;
  std::vector<std::byte> uncommitted_region_ = std::vector<std::byte>(4096);
};

TEST_F(EngineRecovery, AKilledRankIsRebuiltOnAReplacementAndEveryoneRollsBack) {
  Start();
  ASSERT_OK(Commit(1, 2));
  // Work after version 2 that no checkpoint saved: recovery rolls it back.
  for (uint32_t rank = 0; rank < kNodes; ++rank) states_[rank].Fill(rank, 3);
  KillAndWait({3});
  // A checkpoint now is refused, naming the lost rank.
  EXPECT_TRUE(
      test::HasError(world_->engine(1).Checkpoint().status(), StatusCode::kUnavailable, "node 3"));
  const std::vector<Result<RecoveryReport>> reports = RecoverAll({3});
  ExpectRecovered(reports, 2);
  EXPECT_FALSE(reports[3]->store_prepared) << "a process started after the loss";
  // The job goes on: the next version commits on every rank, the replacement's too.
  ASSERT_OK(Commit(3, 3));
  ExpectFullRedundancy(*world_, states_, 4, 2);
}

TEST_F(EngineRecovery, AnIdleSpareTakesTheLostRank) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.spares = 2;
  Start(options);
  EXPECT_TRUE(world_->spare(0).IsSpare());
  EXPECT_TRUE(test::HasError(world_->spare(0).Checkpoint().status(),
                             StatusCode::kFailedPrecondition, "WaitForAssignment"));
  ASSERT_OK(Commit(1, 2));
  for (uint32_t rank = 0; rank < kNodes; ++rank) states_[rank].Fill(rank, 3);
  KillAndWait({5});
  std::vector<ProtectedRegion> layout;
  const std::vector<Result<RecoveryReport>> reports = RecoverOntoSpare(5, &layout);
  EXPECT_EQ(layout, LayoutOf(States()[5]));
  ExpectRecovered(reports, 2);
  // The coordinator told the spares how large a store a replacement needs (STORE_HINT): the
  // spare zeroed it before it was given the rank.
  EXPECT_TRUE(reports[5]->store_prepared);
  EXPECT_EQ(&world_->engine(5), &world_->spare(0));  // the world's rank 5 is the spare now
  EXPECT_TRUE(world_->spare(1).IsSpare());           // the other one still waits
  ASSERT_OK(Commit(3, 3));
  ExpectFullRedundancy(*world_, states_, 4, 2);
}

// A layout of many regions goes up in chunks of 5 and down to the spare in chunks of 508; the
// spare gets the layout of the committed version, not what the lost process protected after it.
TEST_F(EngineRecovery, ASpareIsToldTheCommittedLayoutOfManyRegions) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.spares = 1;
  Start(options);
  ASSERT_OK(Commit(1, 1));
  Engine& five = world_->engine(5);
  ASSERT_OK(five.Unprotect(0));
  ASSERT_OK(five.Unprotect(1));
  states_[5].regions.clear();
  for (size_t i = 0; i < 1100; ++i) states_[5].regions.emplace_back(1 + (i * 37) % 300);
  ASSERT_OK(states_[5].ProtectAll(five));
  ASSERT_OK(Commit(2, 2));
  const std::vector<ProtectedRegion> committed = LayoutOf(states_[5]);
  EXPECT_EQ(five.CommittedLayout(), committed);
  ASSERT_OK(five.Protect(5000, uncommitted_region_.data(), uncommitted_region_.size()));
  EXPECT_EQ(five.CommittedLayout(), committed) << "no checkpoint saw region 5000";
  KillAndWait({5});
  std::vector<ProtectedRegion> layout;
  const std::vector<Result<RecoveryReport>> reports = RecoverOntoSpare(5, &layout);
  EXPECT_EQ(layout, committed);
  ExpectRecovered(reports, 2);
  EXPECT_EQ(world_->engine(5).CommittedLayout(), committed);
}

// Every rank its own failure domain; spare 0 sits in rank 2's domain, where other fragments of
// the owners rank 5 hosted live; spare 1 in a domain of its own. Rank 5 goes to spare 1, though
// spare 0 was launched first.
TEST_F(EngineRecovery, TheSpareWhoseDomainKeepsThePlacementRuleIsChosen) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.spares = 2;
  options.domain_of = [](uint32_t node) { return node == kNodes ? 2u : node; };
  Start(options);
  ASSERT_OK(Commit(1, 2));
  ExpectLossGoesToSpareOne(5, 2);
}

// Spares in domains of their own: FT_SPARE_PRIORITY (here 0 for spare 1, unset for spare 0)
// goes before launch order.
TEST_F(EngineRecovery, ASparesPriorityGoesBeforeLaunchOrder) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.spares = 2;
  options.spare_priority_of = [](uint32_t spare) {
    return spare == 1 ? 0u : EngineOptions::kLaunchOrder;
  };
  Start(options);
  ASSERT_OK(Commit(1, 1));
  ExpectLossGoesToSpareOne(4, 1);
}

TEST_F(EngineRecovery, TheCoordinatorsPartnersAndTwoLossesAtOnce) {
  Start();
  ASSERT_OK(Commit(1, 1));
  // m = 2 losses, one of them a neighbour of the coordinator in every placement.
  KillAndWait({1, 6});
  ExpectRecovered(RecoverAll({1, 6}), 1);
  ASSERT_OK(Commit(2, 2));
  ExpectFullRedundancy(*world_, states_, 4, 2);
}

TEST_F(EngineRecovery, SurvivorsRollBackFromTheirLocalCopy) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.engine.keep_local_copy = true;
  Start(options);
  ASSERT_OK(Commit(1, 2));
  for (uint32_t rank = 0; rank < kNodes; ++rank) states_[rank].Fill(rank, 9);
  KillAndWait({5});
  std::vector<Result<RecoveryReport>> reports = RecoverAll({5});
  ExpectRecovered(reports, 2);
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_EQ(reports[rank]->from_local_copy, rank != 5) << "rank " << rank;
  }
  // The replacement has no copy of its own yet; the next commit gives it one.
  ASSERT_OK(Commit(3, 3));
  for (uint32_t rank = 0; rank < kNodes; ++rank) states_[rank].Fill(rank, 10);
  for (uint32_t rank = 0; rank < kNodes; ++rank) ASSERT_OK(world_->engine(rank).RestoreLocalCopy());
  ExpectImages(3);
}

TEST_F(EngineRecovery, ALossDuringACheckpointRollsBackToTheCommittedVersion) {
  Start();
  ASSERT_OK(Commit(1, 1));
  // Every WRITE of the victim waits: version 2 is in flight on every node when it dies.
  verbs::LoopbackNetwork& network = internal::LoopbackWorldTesting::network(*world_);
  constexpr uint32_t kVictim = 4;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (rank != kVictim) network.SetDelay(kVictim, rank, 1'000'000);
  }
  std::vector<CheckpointHandle> handles(kNodes);
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    states_[rank].Fill(rank, 2);
    Result<CheckpointHandle> handle = world_->engine(rank).CheckpointAsync();
    ASSERT_TRUE(handle.ok()) << handle.status();
    handles[rank] = *handle;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  KillAndWait({kVictim});
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (rank == kVictim) continue;
    EXPECT_FALSE(handles[rank].Wait().ok()) << "rank " << rank;
    network.SetDelay(kVictim, rank, 0);  // not for the process that replaces it
  }
  ExpectRecovered(RecoverAll({kVictim}), 1);
  ASSERT_OK(Commit(2, 2));
}

TEST_F(EngineRecovery, AHungRankSeenOnlyByTheHeartbeatIsReplaced) {
  Start();
  ASSERT_OK(Commit(1, 2));
  // Until a node's first beat is seen, the connect timeout is its bound: let a few land.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  // Frozen, its QPs stay up: no disconnect tells anyone, only its silent heartbeat.
  ASSERT_OK(world_->Freeze(6));
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (rank != 6) {
      ASSERT_TRUE(WaitForFailure(*world_, rank)) << "rank " << rank;
    }
  }
  ExpectRecovered(RecoverAll({6}), 2);
  ASSERT_OK(Commit(3, 3));
}

TEST_F(EngineRecovery, ALossBeforeAnyCommitRecoversToNothingAndTheJobStartsOver) {
  Start();
  KillAndWait({2});
  std::vector<Result<RecoveryReport>> reports = RecoverAll({2});
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    ASSERT_TRUE(reports[rank].ok()) << "rank " << rank << ": " << reports[rank].status();
    EXPECT_EQ(reports[rank]->version, 0u);
  }
  ASSERT_OK(Commit(1, 1));
  ExpectFullRedundancy(*world_, states_, 4, 2);
}

TEST_F(EngineRecovery, MoreLossesThanParityIsDataLossNamingTheOwnersOnEveryMember) {
  Start();
  ASSERT_OK(Commit(1, 1));
  KillAndWait({2, 3, 4});
  const auto started = std::chrono::steady_clock::now();
  std::vector<Result<RecoveryReport>> reports = RecoverAll({2, 3, 4});
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_TRUE(test::HasError(reports[rank].status(), StatusCode::kDataLoss, "owner"))
        << "rank " << rank << ": " << reports[rank].status();
  }
}

// The members report and the coordinator decides without the applications: a recovery may fail
// (here DataLoss) before a member's application calls Recover(). That call gets the outcome at
// once; it used to wait for its deadline (twice the timeout) and then name no recovery at all.
TEST_F(EngineRecovery, RecoverCalledAfterTheRecoveryFailedReturnsItsOutcomeAtOnce) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.engine.timeout = std::chrono::seconds(5);
  Start(options);
  ASSERT_OK(Commit(1, 1));
  const std::vector<uint32_t> victims = {2, 3, 4};
  KillAndWait(victims);
  // The replacements join together (their views and reports need no application call) ...
  std::vector<Engine*> replacements(kNodes, nullptr);
  ASSERT_OK(world_->RunOn(victims, [&](uint32_t rank, Engine&) -> Status {
    FT_ASSIGN_OR_RETURN(replacements[rank], world_->Replace(rank));
    return states_[rank].ProtectAll(*replacements[rank]);
  }));
  // ... the survivors' Recover() fails, the replacements' applications call it only then.
  std::vector<uint32_t> survivors;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (!IsVictimOf(victims, rank)) survivors.push_back(rank);
  }
  ASSERT_OK(world_->RunOn(survivors, [&](uint32_t rank, Engine& engine) -> Status {
    EXPECT_TRUE(test::HasError(engine.Recover().status(), StatusCode::kDataLoss, "owner"))
        << "rank " << rank;
    return Status();
  }));
  for (uint32_t rank : victims) {
    const auto started = std::chrono::steady_clock::now();
    const Result<RecoveryReport> late = replacements[rank]->Recover();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2))
        << "rank " << rank;
    EXPECT_TRUE(test::HasError(late.status(), StatusCode::kDataLoss, "owner"))
        << "rank " << rank << ": " << late.status();
  }
}

TEST_F(EngineRecovery, WithoutAReplacementRecoverFailsNamingTheRank) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.engine.timeout = std::chrono::seconds(3);
  Start(options);
  ASSERT_OK(Commit(1, 1));
  KillAndWait({6});
  std::vector<uint32_t> survivors;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (rank != 6) survivors.push_back(rank);
  }
  std::vector<Status> results(kNodes);
  const auto started = std::chrono::steady_clock::now();
  ASSERT_OK(world_->RunOn(survivors, [&](uint32_t rank, Engine& engine) {
    results[rank] = engine.Recover().status();
    return Status();
  }));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  for (uint32_t rank : survivors) {
    EXPECT_TRUE(
        test::HasError(results[rank], StatusCode::kFailedPrecondition, "rank 6 got no replacement"))
        << "rank " << rank << ": " << results[rank];
  }
}

TEST_F(EngineRecovery, AMemberThatNeverCallsRecoverFailsItWithinTwiceTheTimeout) {
  internal::LoopbackTestWorldOptions options = RecoveryWorld();
  options.engine.timeout = std::chrono::seconds(2);
  Start(options);
  ASSERT_OK(Commit(1, 1));
  KillAndWait({4});
  std::vector<Status> results(kNodes);
  const auto started = std::chrono::steady_clock::now();
  // Rank 5's application never calls Recover().
  ASSERT_OK(world_->RunOn({0, 1, 2, 3, 4, 6, 7}, [&](uint32_t rank, Engine& engine) -> Status {
    Engine* member = &engine;
    if (rank == 4) {
      FT_ASSIGN_OR_RETURN(member, world_->Replace(rank));
      FT_RETURN_IF_ERROR(states_[rank].ProtectAll(*member));
    }
    results[rank] = member->Recover().status();
    return Status();
  }));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  for (uint32_t rank : {0u, 1u, 2u, 3u, 4u, 6u, 7u}) {
    EXPECT_EQ(results[rank].code(), StatusCode::kDeadlineExceeded)
        << "rank " << rank << ": " << results[rank];
  }
  // Rank 5 heard of the loss from the view, though no LOST told it: no checkpoint for it either.
  EXPECT_TRUE(world_->engine(5).FailureDetected());
}

TEST_F(EngineRecovery, AReplacementWithTheWrongImageSizeFailsTheRecovery) {
  Start();
  ASSERT_OK(Commit(1, 1));
  KillAndWait({2});
  std::vector<Result<RecoveryReport>> reports = RecoverAll({2}, /*shrink_replacement=*/8);
  EXPECT_TRUE(test::HasError(reports[2].status(), StatusCode::kFailedPrecondition,
                             "Protect regions of the committed sizes"))
      << reports[2].status();
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_FALSE(reports[rank].ok()) << "rank " << rank;
  }
}

// The same total in other pieces would be restored scrambled: refused, naming the layout.
TEST_F(EngineRecovery, AReplacementWithTheRightTotalInOtherPiecesFailsTheRecovery) {
  Start();
  ASSERT_OK(Commit(1, 1));
  KillAndWait({2});
  victims_ = {2};
  std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
  ASSERT_OK(world_->Run([&](uint32_t rank, Engine& engine) -> Status {
    if (rank != 2) {
      reports[rank] = engine.Recover();
      return Status();
    }
    FT_ASSIGN_OR_RETURN(Engine * process, world_->Replace(2));
    FT_RETURN_IF_ERROR(process->WaitForAssignment(std::chrono::seconds(10)).status());
    states_[2].regions[0].resize(states_[2].regions[0].size() - 8);  // 8 bytes move to region 1
    states_[2].regions[1].resize(states_[2].regions[1].size() + 8);
    FT_RETURN_IF_ERROR(states_[2].ProtectAll(*process));
    reports[rank] = process->Recover();
    return Status();
  }));
  EXPECT_TRUE(
      test::HasError(reports[2].status(), StatusCode::kFailedPrecondition, "committed layout has"))
      << reports[2].status();
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_FALSE(reports[rank].ok()) << "rank " << rank;
  }
}

TEST_F(EngineRecovery, ALostCoordinatorEndsRecoverAtOnce) {
  Start();
  ASSERT_OK(Commit(1, 1));
  KillAndWait({0});
  const auto started = std::chrono::steady_clock::now();
  Result<RecoveryReport> report = world_->engine(3).Recover();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  EXPECT_TRUE(test::HasError(report.status(), StatusCode::kUnavailable, "coordinator"))
      << report.status();
}

TEST_F(EngineRecovery, OnlyAKilledOrHungRankGetsANewProcess) {
  Start();
  Result<Engine*> replaced = world_->Replace(3);
  EXPECT_TRUE(test::HasError(replaced.status(), StatusCode::kFailedPrecondition,
                             "rank 3 is alive: only a killed or frozen rank gets a new process"))
      << replaced.status();
  EXPECT_TRUE(test::HasError(world_->Replace(kNodes).status(), StatusCode::kInvalidArgument,
                             "outside the world"));
  ASSERT_OK(Commit(1, 1));  // the world is untouched
}

TEST_F(EngineRecovery, RecoverIsRefusedWhileACheckpointIsInFlight) {
  Start();
  ASSERT_OK(Commit(1, 1));
  Result<CheckpointHandle> handle = world_->engine(2).CheckpointAsync();
  ASSERT_TRUE(handle.ok()) << handle.status();
  EXPECT_TRUE(test::HasError(world_->engine(2).Recover().status(), StatusCode::kFailedPrecondition,
                             "checkpoint is in flight"));
  // The others never join that round: it ends at its deadline or when the world goes.
}

}  // namespace
}  // namespace ft
