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

bool WaitForFailure(LoopbackWorld& world, uint32_t rank) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!world.engine(rank).FailureDetected()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
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

TEST(EngineRecovery, AKilledRankIsRebuiltOnAReplacementAndEveryoneRollsBack) {
  auto world = internal::LoopbackWorldTesting::Create(RecoveryWorld());
  ASSERT_TRUE(world.ok()) << world.status();
  std::vector<NodeState> states = States();
  ASSERT_OK((*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    states[rank].Fill(rank, 1);
    FT_RETURN_IF_ERROR(engine.Checkpoint().status());
    states[rank].Fill(rank, 2);
    return engine.Checkpoint().status();
  }));
  // Work after version 2 that no checkpoint saved: recovery rolls it back.
  for (uint32_t rank = 0; rank < kNodes; ++rank) states[rank].Fill(rank, 3);

  constexpr uint32_t kVictim = 3;
  ASSERT_OK((*world)->Kill(kVictim));
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (rank != kVictim) {
      ASSERT_TRUE(WaitForFailure(**world, rank)) << "rank " << rank;
    }
  }
  // A checkpoint now is refused, naming the lost rank.
  Result<uint64_t> refused = (*world)->engine(1).Checkpoint();
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);

  std::vector<RecoveryReport> reports(kNodes);
  ASSERT_OK((*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    Engine* member = &engine;
    if (rank == kVictim) {
      // The new process starts from nothing: same layout, garbage inside.
      FT_ASSIGN_OR_RETURN(member, (*world)->Replace(rank));
      for (auto& region : states[rank].regions)
        std::fill(region.begin(), region.end(), std::byte{0x5a});
      FT_RETURN_IF_ERROR(states[rank].ProtectAll(*member));
    }
    FT_ASSIGN_OR_RETURN(reports[rank], member->Recover());
    return Status();
  }));
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    NodeState expected = states[rank];
    expected.Fill(rank, 2);
    EXPECT_TRUE(states[rank].Image() == expected.Image()) << "rank " << rank;
    EXPECT_EQ(reports[rank].version, 2u) << "rank " << rank;
    EXPECT_EQ(reports[rank].replacement, rank == kVictim) << "rank " << rank;
    EXPECT_EQ(reports[rank].lost, std::vector<uint32_t>{kVictim}) << "rank " << rank;
    EXPECT_FALSE((*world)->engine(rank).FailureDetected()) << "rank " << rank;
  }
  ExpectFullRedundancy(**world, states, 4, 2);

  // The job goes on: the next version commits on every rank, the replacement's too.
  ASSERT_OK((*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    states[rank].Fill(rank, 4);
    FT_ASSIGN_OR_RETURN(uint64_t version, engine.Checkpoint());
    if (version != 3) return Status::Internal("committed version ", version, ", expected 3");
    return Status();
  }));
  ExpectFullRedundancy(**world, states, 4, 2);
}

}  // namespace
}  // namespace ft
