// Engine tests over FaultyFabric: faults the loopback model does not make. A device that reports
// success for a WRITE it landed corrupted, or dropped, commits a version with one bad cell or a
// stale fragment; the fragment CRCs and headers must catch it at read-back, where the reader
// treats that column as lost and decodes around it while at most m columns are bad, and fails
// with DataLoss saying what it found beyond that.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "engine/engine_factory.h"
#include "ftengine/engine.h"
#include "test/engine_test_util.h"
#include "verbs/faulty/faulty.h"
#include "world/loopback_world_internal.h"

namespace ft {
namespace {

using namespace std::chrono_literals;
using test::MakeStates;
using test::SmallWorld;

// A world of 6 nodes, RS(2,2), 4 KiB cells, over FaultyFabric; each node one region of 40'000
// bytes (the last cell partial).
constexpr uint32_t kNodes = 6;
constexpr int kK = 2, kM = 2;
constexpr uint64_t kImage = 40'000;
struct LyingDeviceWorld {
  std::shared_ptr<verbs::FaultController> faults =
      std::make_shared<verbs::FaultController>(/*seed=*/7);
  std::unique_ptr<LoopbackWorld> world;
  std::vector<test::NodeState> states = MakeStates(kNodes, {kImage});
};

// Creates `w`'s world and commits versions 1..last, `rule` installed just before the last one: a
// device that lies reports every WRITE done, so each version commits.
Status CommitWithRuleBeforeTheLast(LyingDeviceWorld& w, const verbs::FaultRule& rule,
                                   uint64_t last) {
  auto options = SmallWorld(kNodes, kK, kM, 4096);
  test::OverFaultyFabric(options, w.faults);
  FT_ASSIGN_OR_RETURN(w.world, internal::LoopbackWorldTesting::Create(options));
  for (uint64_t version = 1; version <= last; ++version) {
    if (version == last) w.faults->Add(rule);
    const Status status = w.world->Run([&](uint32_t rank, Engine& engine) -> Status {
      if (version == 1) FT_RETURN_IF_ERROR(w.states[rank].ProtectAll(engine));
      w.states[rank].Fill(rank, version);
      return engine.Checkpoint().status();
    });
    if (!status.ok()) return status.WithContext(StrCat("version ", version));
  }
  return Status();
}

// Checkpoints `versions` versions with `rule` installed before the last one, then reads rank 1's
// image back with every choice of one and of two lost columns: the one bad column is decoded
// around while it and the lost ones are at most m, and beyond that the read fails DataLoss with
// a message containing `why` (what the reader found wrong).
void CheckBadColumnIsCaught(verbs::FaultRule rule, uint64_t versions, std::string_view why) {
  LyingDeviceWorld w;
  SCOPED_TRACE(w.faults->seed_description());
  const Status committed = CommitWithRuleBeforeTheLast(w, rule, versions);
  ASSERT_TRUE(committed.ok()) << committed;
  const verbs::FaultCounters counters = w.faults->counters();
  ASSERT_GE(counters.corrupted + counters.dropped, 1u);

  const std::vector<std::byte> expected = w.states[1].Image();
  // One lost column besides the bad one is within m: exact.
  for (int lost = 0; lost < kK + kM; ++lost) {
    std::vector<std::byte> back(expected.size());
    const std::vector<int> columns{lost};
    const Status read = w.world->engine(1).ReadCommitted(back, columns);
    ASSERT_TRUE(read.ok()) << "column " << lost << " lost: " << read;
    EXPECT_EQ(back, expected) << "column " << lost << " lost";
  }
  // Two lost: exact when the bad column is one of them, DataLoss saying why otherwise (the three
  // pairs without it leave one good column of the k = 2 needed).
  int failed = 0;
  for (int a = 0; a < kK + kM; ++a) {
    for (int b = a + 1; b < kK + kM; ++b) {
      std::vector<std::byte> back(expected.size());
      const std::vector<int> columns{a, b};
      const Status read = w.world->engine(1).ReadCommitted(back, columns);
      if (read.ok()) {
        EXPECT_EQ(back, expected) << "columns " << a << ", " << b << " lost";
        continue;
      }
      ++failed;
      EXPECT_EQ(read.code(), StatusCode::kDataLoss) << read;
      EXPECT_NE(read.message().find(why), std::string_view::npos) << read;
    }
  }
  EXPECT_EQ(failed, 3);
}

// The first WRITE rank 1 posts is a cell (its headers go last, after every cell completed).
TEST(EngineWithFaultyFabric, CorruptedCellIsCaughtByItsCrcAndDecodedAround) {
  CheckBadColumnIsCaught(verbs::FaultRule::Corrupt({0, 17}, 0x40)
                             .For(verbs::Opcode::kWrite)
                             .ForWrIds(test::IsDataWrite)
                             .OnNode(1)
                             .Nth(1),
                         1, "cell CRC mismatch");
}

TEST(EngineWithFaultyFabric, DroppedCellIsCaughtByItsCrcAndDecodedAround) {
  CheckBadColumnIsCaught(verbs::FaultRule::Drop()
                             .For(verbs::Opcode::kWrite)
                             .ForWrIds(test::IsDataWrite)
                             .OnNode(1)
                             .Nth(1),
                         1, "cell CRC mismatch");
}

// A rollback READs a survivor's intact data cells straight into its protected region (one
// region: registered memory) and checks them there. Rank 1's first data cell of version 2 is
// corrupted on its holder; after rank 4 is lost, rank 1 rolls back to version 2 from its own
// fragments: that cell fails its CRC in place and is decoded around into the region, and the
// last, partial cell (40'000 is not a multiple of 4096) goes through the reader's buffer.
TEST(EngineWithFaultyFabric, ARollbackReadsInPlaceAndDecodesAroundACorruptedCell) {
  LyingDeviceWorld w;
  SCOPED_TRACE(w.faults->seed_description());
  const Status committed = CommitWithRuleBeforeTheLast(w,
                                                       verbs::FaultRule::Corrupt({0, 17}, 0x40)
                                                           .For(verbs::Opcode::kWrite)
                                                           .ForWrIds(test::IsDataWrite)
                                                           .OnNode(1)
                                                           .Nth(1),
                                                       2);
  ASSERT_TRUE(committed.ok()) << committed;
  ASSERT_EQ(w.faults->counters().corrupted, 1u);
  for (uint32_t rank = 0; rank < kNodes; ++rank) w.states[rank].Fill(rank, 3);  // not saved
  ASSERT_TRUE(w.world->Kill(4).ok());
  ASSERT_TRUE(test::PollUntil([&] { return w.world->engine(1).FailureDetected(); }, 20s,
                              std::chrono::milliseconds(5)));
  std::vector<Result<RecoveryReport>> reports(kNodes, Status::Internal("not run"));
  (void)w.world->Run([&](uint32_t rank, Engine& engine) -> Status {
    Engine* member = &engine;
    if (rank == 4) {
      Result<Engine*> replaced = w.world->Replace(4);
      if (!replaced.ok()) {
        reports[rank] = replaced.status();
        return Status();
      }
      member = *replaced;
      if (Status protect = w.states[4].ProtectAll(*member); !protect.ok()) {
        reports[rank] = protect;
        return Status();
      }
    }
    reports[rank] = member->Recover();
    return Status();
  });
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    ASSERT_TRUE(reports[rank].ok()) << "rank " << rank << ": " << reports[rank].status();
    EXPECT_EQ(reports[rank]->version, 2u) << "rank " << rank;
    auto expected = w.states[rank];
    expected.Fill(rank, 2);
    EXPECT_TRUE(w.states[rank].Image() == expected.Image()) << "rank " << rank;
  }
}

// A stale header: every WRITE of version 3 from rank 1 to rank 2 (one of its holders) is
// dropped, so that fragment's slot, the one version 1 was written to (versions alternate
// between two slots), still holds version 1's cells under version 1's intact header. Its CRCs
// all check: only the version in the header tells it is not version 3's.
TEST(EngineWithFaultyFabric, StaleHeaderIsDetectedAndDecodedAround) {
  CheckBadColumnIsCaught(verbs::FaultRule::Drop().For(verbs::Opcode::kWrite).OnNode(1).ToPeer(2), 3,
                         "holds version 1, expected 3");
}

// A COMMIT of another epoch is not obeyed: the coordinator's COMMIT to rank 2 arrives with its
// epoch changed (1 -> 3), as from a coordinator of another view. Rank 2 ignores it and ends at
// its deadline with nothing committed, while the others commit version 1. (Obeying it, rank 2
// would report version 1 committed.)
TEST(EngineFaulty, ACommitOfAnotherEpochIsIgnored) {
  ManualClock clock;
  auto faults = std::make_shared<verbs::FaultController>(/*seed=*/11);
  SCOPED_TRACE(faults->seed_description());
  auto options = SmallWorld(4, 2, 1, 4096);
  options.engine.timeout = 5s;
  options.clock = &clock;
  test::WithoutHeartbeatLosses(options);
  test::OverFaultyFabric(options, faults);
  // The coordinator's SENDs to rank 2: BEAT_TARGET (at start), LAYOUT_REQUEST (its region layout
  // is new), GROW (the coordinator sizes its store), GO, then COMMIT. Byte 8 is the low byte of
  // the epoch.
  faults->Add(
      verbs::FaultRule::Corrupt({8}, 0x02).For(verbs::Opcode::kSend).OnNode(0).ToPeer(2).Nth(5));
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(4, {10'000});
  std::vector<Result<CheckpointHandle>> handles;
  for (uint32_t rank = 0; rank < 4; ++rank) {
    ASSERT_TRUE(states[rank].ProtectAll((*world)->engine(rank)).ok());
    states[rank].Fill(rank, 1);
    handles.push_back((*world)->engine(rank).CheckpointAsync());
    ASSERT_TRUE(handles.back().ok());
  }
  for (uint32_t rank : {0u, 1u, 3u}) {
    Result<uint64_t> version = handles[rank]->Wait();
    ASSERT_TRUE(version.ok()) << rank << ": " << version.status();
    EXPECT_EQ(*version, 1u);
  }
  ASSERT_EQ(faults->counters().corrupted, 1u);
  // Time passes until rank 2 gives up on the COMMIT it never took.
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!handles[2]->Ready() && std::chrono::steady_clock::now() < until) clock.Advance(100ms);
  ASSERT_TRUE(handles[2]->Ready());
  EXPECT_EQ(handles[2]->Wait().status().code(), StatusCode::kDeadlineExceeded)
      << handles[2]->Wait().status();
  EXPECT_EQ((*world)->engine(2).Metrics().committed_version, 0u);
}

}  // namespace
}  // namespace ft
