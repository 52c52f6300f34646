// Engine tests of what happens around failures, on the loopback fabric with a manual clock: a
// checkpoint deadline with WRITEs in flight fences only the links they are stuck on and the next
// checkpoint commits; destroying an engine completes every handle; the reader reads only what it
// needs. Every test ends with the committed bytes read back and compared with the application's.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "engine/engine_factory.h"
#include "ftengine/engine.h"
#include "test/engine_test_util.h"
#include "test/recording_fabric.h"
#include "test/status_matchers.h"
#include "verbs/loopback/loopback.h"
#include "world/loopback_world_internal.h"

namespace ft {
namespace {

using namespace std::chrono_literals;
using test::MakeStates;
using test::SmallWorld;
using test::VerifyAll;

// Waits (bounded in real time, polling, no sleep of fixed length) until `done` holds.
template <typename Predicate>
bool WaitUntil(Predicate done, std::chrono::seconds bound = 20s) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

// Wraps every node's fabric in a RecordingFabric; the records are made here, one per node.
std::vector<std::shared_ptr<test::DatapathRecord>> RecordEveryNode(
    internal::LoopbackTestWorldOptions& options) {
  std::vector<std::shared_ptr<test::DatapathRecord>> records(options.nodes);
  for (auto& record : records) record = std::make_shared<test::DatapathRecord>();
  options.wrap_fabric = [records](uint32_t rank, std::unique_ptr<verbs::Fabric> fabric) {
    return std::unique_ptr<verbs::Fabric>(
        std::make_unique<test::RecordingFabric>(std::move(fabric), records[rank]));
  };
  return records;
}

// Version 2 meets a deadline while ranks 1 and 3 have WRITEs stuck on their data link (a delay of
// a billion progress steps each way). The deadline fences that link only: the coordinator keeps
// every control link, nobody is declared lost, and once the link is healthy again the retried
// version 2 commits on every node (its Connect replaced the fenced link) and reads back exactly.
TEST(EngineFaults, DeadlineWithWritesInFlightFencesOnlyThoseLinks) {
  constexpr uint32_t kNodes = 5;
  ManualClock clock(Nanos(1'000'000'000));
  auto options = SmallWorld(kNodes, 2, 1, 4096);
  options.engine.timeout = 5s;
  options.clock = &clock;
  test::WithoutHeartbeatLosses(options);
  const std::vector<std::shared_ptr<test::DatapathRecord>> records = RecordEveryNode(options);
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(kNodes, {40'000});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;

  // Holders of r are r+1, r+2, r+3 (mod 5): 1 writes to 3 and 3 writes to 1.
  internal::LoopbackWorldTesting::network(**world).SetDelay(1, 3, 1'000'000'000);
  const int writes_before = records[1]->cell_writes.load();
  std::vector<Result<CheckpointHandle>> handles;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    states[rank].Fill(rank, 2);
    handles.push_back((*world)->engine(rank).CheckpointAsync());
    ASSERT_TRUE(handles.back().ok()) << handles.back().status();
  }
  // Rank 1's cells are going out (the ones to 3 are stuck): now the deadline passes.
  ASSERT_TRUE(WaitUntil([&] { return records[1]->cell_writes.load() > writes_before; }));
  // Time passes (a node may only now take its request: its deadline is later) until every
  // round ended.
  ASSERT_TRUE(WaitUntil([&] {
    clock.Advance(1s);
    for (auto& handle : handles) {
      if (!handle->Ready()) return false;
    }
    return true;
  }));
  std::vector<Status> results;
  for (auto& handle : handles) results.push_back(handle->Wait().status());
  // 1 and 3 WRITE to each other: the first to meet its deadline fences the link, and the other
  // meets its own deadline or first sees the link dropped.
  for (auto [rank, other] : {std::pair{1u, 3u}, std::pair{3u, 1u}}) {
    EXPECT_TRUE(results[rank].code() == StatusCode::kDeadlineExceeded ||
                results[rank].message().find(StrCat("the connection to node ", other,
                                                    " was lost")) != std::string_view::npos)
        << rank << ": " << results[rank];
  }
  EXPECT_TRUE(results[1].code() == StatusCode::kDeadlineExceeded ||
              results[3].code() == StatusCode::kDeadlineExceeded);
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_FALSE(results[rank].ok()) << rank;
    EXPECT_EQ(results[rank].message().find("coordinator"), std::string_view::npos)
        << rank << ": the control path must survive: " << results[rank];
  }

  internal::LoopbackWorldTesting::network(**world).SetDelay(1, 3, 0);
  status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_ASSIGN_OR_RETURN(uint64_t version, engine.Checkpoint());
    if (version != 2) {
      return Status::Internal("rank ", rank, " committed version ", version, ", expected 2");
    }
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status << " "
                           << internal::LoopbackWorldTesting::network(**world).seed_description();
  EXPECT_TRUE(VerifyAll(**world, states, {{}, {0}, {1}, {2}}).ok());
}

// A node whose peers never call Checkpoint meets its deadline with nothing in flight: it reports
// DeadlineExceeded at once, and a later collective checkpoint commits.
TEST(EngineFaults, DeadlineWaitingForTheCoordinatorLeavesTheEngineUsable) {
  ManualClock clock;
  auto options = SmallWorld(4, 2, 1);
  options.engine.timeout = 2s;
  options.clock = &clock;
  test::WithoutHeartbeatLosses(options);
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(4, {10'000});
  for (uint32_t rank = 0; rank < 4; ++rank) {
    ASSERT_TRUE(states[rank].ProtectAll((*world)->engine(rank)).ok());
    states[rank].Fill(rank, 1);
  }
  Result<CheckpointHandle> lonely = (*world)->engine(2).CheckpointAsync();
  ASSERT_TRUE(lonely.ok()) << lonely.status();
  ASSERT_TRUE(WaitUntil([&] {
    clock.Advance(100ms);
    return lonely->Ready();
  }));
  EXPECT_EQ(lonely->Wait().status().code(), StatusCode::kDeadlineExceeded);
  // Rank 2 withdrew its PREPARE when it gave up: the next collective checkpoint waits for all
  // four and commits at the first attempt (a PREPARE left standing would start a round without
  // rank 2 waiting for it).
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    Result<uint64_t> version = engine.Checkpoint();
    if (!version.ok()) return version.status().WithContext(StrCat("rank ", rank));
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(VerifyAll(**world, states, {{}, {2}}).ok());
}

// The engine of node world.rank of `network` (its fabric made here).
Result<std::unique_ptr<Engine>> EngineOnNode(verbs::LoopbackNetwork& network,
                                             const EngineOptions& options, const WorldInfo& world) {
  FT_ASSIGN_OR_RETURN(std::unique_ptr<verbs::Fabric> fabric, network.CreateFabric(world.rank));
  return internal::EngineFactory::Create(options, world, std::move(fabric));
}

// Rank 3 of 4 is never started (it died before it connected): the start ends on every node
// within the start-up timeout, not the 20 s engine timeout, and the coordinator names rank 3.
TEST(EngineFaults, ARankThatNeverConnectsEndsTheStartWithinTheStartupTimeout) {
  auto network = verbs::LoopbackNetwork::Create(4);
  ASSERT_TRUE(network.ok()) << network.status();
  EngineOptions options = SmallWorld(4, 2, 1).engine;  // a 20 s timeout
  options.startup_timeout = 1s;
  std::vector<Status> outcome(3);
  const auto started = std::chrono::steady_clock::now();
  {
    std::vector<std::jthread> threads;
    for (uint32_t rank = 0; rank < 3; ++rank) {
      threads.emplace_back([&, rank] {
        auto engine = EngineOnNode(**network, options, {rank, 4, 0});
        if (!engine.ok()) {
          outcome[rank] = engine.status();
          return;
        }
        // Connected to a coordinator that then gave up: its first collective call fails.
        std::vector<std::byte> memory(8192);
        Status status = (*engine)->Protect(0, memory.data(), memory.size());
        if (status.ok()) status = (*engine)->Checkpoint().status();
        outcome[rank] =
            status.ok() ? Status::Internal("a version committed without rank 3") : status;
      });
    }
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(test::HasError(outcome[0], StatusCode::kDeadlineExceeded, "3")) << outcome[0];
  EXPECT_NE(outcome[0].message().find("at start"), std::string_view::npos) << outcome[0];
  for (uint32_t rank = 1; rank < 3; ++rank) {
    EXPECT_FALSE(outcome[rank].ok()) << "rank " << rank;
  }
  EXPECT_LT(elapsed, 10s) << "the start waited for the engine timeout";
}

// Destroying an engine completes every handle: one queued and perhaps not taken yet by the
// worker, and one in flight (waiting for a GO that cannot come: the others never checkpoint).
// Before the fix the first could block Wait() forever when Stop won the race.
TEST(EngineFaults, DestroyingAnEngineCompletesEveryHandle) {
  for (int trial = 0; trial < 20; ++trial) {
    auto network = verbs::LoopbackNetwork::Create(3);
    ASSERT_TRUE(network.ok()) << network.status();
    EngineOptions engine_options;
    engine_options.k = 1;
    engine_options.m = 1;
    engine_options.cell_bytes = 4096;
    // A tolerant heartbeat (as SmallWorld's): three engines on a loaded CI machine.
    engine_options.heartbeat_interval = 100ms;
    engine_options.heartbeat_misses = 20;
    std::vector<std::unique_ptr<Engine>> engines(3);
    std::vector<std::thread> threads;
    std::vector<Status> created(3);
    for (uint32_t rank = 0; rank < 3; ++rank) {
      threads.emplace_back([&, rank] {
        auto engine = EngineOnNode(**network, engine_options, {rank, 3, 0});
        if (engine.ok()) {
          engines[rank] = std::move(engine).value();
        } else {
          created[rank] = engine.status();
        }
      });
    }
    for (auto& thread : threads) thread.join();
    for (const Status& s : created) ASSERT_TRUE(s.ok()) << s;
    std::vector<std::byte> memory(8192);
    ASSERT_TRUE(engines[1]->Protect(0, memory.data(), memory.size()).ok());
    ASSERT_TRUE(engines[2]->Protect(0, memory.data(), memory.size()).ok());
    // Both are started before either engine goes: a node that already knows of a lost peer
    // refuses to start one.
    Result<CheckpointHandle> in_flight = engines[2]->CheckpointAsync();
    ASSERT_TRUE(in_flight.ok()) << in_flight.status();
    Result<CheckpointHandle> queued = engines[1]->CheckpointAsync();
    ASSERT_TRUE(queued.ok()) << queued.status();
    engines[1].reset();  // right away: the worker may not have taken it yet
    engines[2].reset();
    ASSERT_TRUE(WaitUntil([&] { return queued->Ready() && in_flight->Ready(); }, 30s))
        << "trial " << trial << ": a handle was never completed";
    EXPECT_EQ(queued->Wait().status().code(), StatusCode::kAborted) << queued->Wait().status();
    EXPECT_FALSE(in_flight->Wait().ok());
    engines.clear();
  }
}

// With every fragment intact the reader READs k cells per stripe (data columns: nothing to
// decode) and every header; with a column treated as lost it still READs k cells per stripe.
TEST(EngineFaults, ReadCommittedReadsOnlyKColumnsWhenKAreIntact) {
  constexpr uint32_t kNodes = 6;
  constexpr int kK = 3, kM = 2;
  constexpr uint64_t kCell = 1024, kImage = 20'000;  // 7 stripes
  auto options = SmallWorld(kNodes, kK, kM, kCell);
  const std::vector<std::shared_ptr<test::DatapathRecord>> records = RecordEveryNode(options);
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(kNodes, {kImage});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  constexpr int kStripes = (kImage + kK * kCell - 1) / (kK * kCell);
  const std::vector<std::byte> expected = states[4].Image();
  for (const std::vector<int>& lost : {std::vector<int>{}, {0}, {1, 4}}) {
    const int before = records[4]->reads.load();
    std::vector<std::byte> back(expected.size());
    ASSERT_TRUE((*world)->engine(4).ReadCommitted(back, lost).ok());
    EXPECT_EQ(back, expected);
    EXPECT_EQ(records[4]->reads.load() - before,
              (kK + kM - static_cast<int>(lost.size())) + kStripes * kK)
        << lost.size() << " columns lost";
  }
}

}  // namespace
}  // namespace ft

namespace ft {
namespace {

// The placement-change gap: every image grows, so version 2 is placed anew, and version 2 aborts
// (ranks 1 and 3 cannot reach each other, while the others WRITE all of their cells and headers).
// Version 1 must come back byte for byte with any one column lost: the new placement went around
// its extents. (Placed over them, as before, the others' version-2 WRITEs damage version 1 on
// some holders and this read fails with DataLoss.)
TEST(EngineFaults, AnAbortedRoundUnderANewPlacementLeavesTheCommittedVersion) {
  constexpr uint32_t kNodes = 6;
  auto options = SmallWorld(kNodes, 2, 1, 4096);
  options.engine.timeout = 10s;
  // Room for the committed extents and a new placement of the grown images.
  options.engine.store_capacity = 3 * Engine::StoreBytesFor(60'000, options.engine);
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(kNodes, {40'000});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::vector<std::byte>> committed;
  for (const auto& state : states) committed.push_back(state.Image());

  auto grown = MakeStates(kNodes, {60'000});
  internal::LoopbackWorldTesting::network(**world).Partition(1, 3);
  Result<std::vector<Status>> results = test::SwapImagesAndCheckpoint(**world, grown, 2);
  ASSERT_TRUE(results.ok()) << results.status();
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    ASSERT_FALSE((*results)[rank].ok()) << "rank " << rank << ": version 2 was meant to abort";
  }
  internal::LoopbackWorldTesting::network(**world).Heal(1, 3);
  status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    for (const std::vector<int>& lost : {std::vector<int>{}, {0}, {1}, {2}}) {
      // Rank 1's link to its column-1 holder (rank 3) was fenced by the partition and comes back
      // only with the next round: for rank 1 that column is lost already.
      if (rank == 1 && !lost.empty() && lost[0] != 1) continue;
      std::vector<std::byte> back(committed[rank].size());
      Status read = engine.ReadCommitted(back, lost);
      if (!read.ok()) return read.WithContext(StrCat(lost.size(), " columns lost"));
      if (back != committed[rank]) return Status::DataLoss("version 1 differs");
    }
    return Status();
  });
  EXPECT_TRUE(status.ok()) << status << " "
                           << internal::LoopbackWorldTesting::network(**world).seed_description();
  // The next checkpoint of the grown images commits (the fenced links are replaced).
  status = (*world)->Run(
      [&](uint32_t, Engine& engine) -> Status { return engine.Checkpoint().status(); });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(VerifyAll(**world, grown, {{}, {0}, {2}}).ok());
}

}  // namespace
}  // namespace ft
