// A world of 1024 engines in one process (a worker thread each): two versions and a read-back.
// Its own binary, run alone (SERIAL): 1024 threads on two cores starve any test beside it for
// seconds, and that test's heartbeat with it.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "ftengine/engine.h"
#include "test/engine_test_util.h"
#include "world/loopback_world_internal.h"

namespace ft {
namespace {

using namespace std::chrono_literals;
using test::MakeStates;
using test::SmallWorld;

TEST(Engine, ThousandNodesCheckpointAndVerify) {
  constexpr uint32_t kNodes = 1024;
  auto options = SmallWorld(kNodes, 4, 2, 1024);
  options.engine.timeout = 50s;
  options.engine.startup_timeout = 50s;  // 1024 threads start on 2 cores
  // 1024 worker threads on a 2-core machine (under ASan, next to other tests): a worker was seen
  // to wait more than 10 s for its turn. This test is about the checkpoint path at scale; the
  // heartbeat has its own tests.
  test::WithoutHeartbeatLosses(options);
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(kNodes, {3000});
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    for (uint64_t version = 1; version <= 2; ++version) {
      states[rank].Fill(rank, version);
      FT_ASSIGN_OR_RETURN(uint64_t committed, engine.Checkpoint());
      if (committed != version) return Status::Internal("committed ", committed);
    }
    std::vector<std::byte> back(3000);
    const int lost[] = {static_cast<int>(rank % 6)};
    FT_RETURN_IF_ERROR(engine.ReadCommitted(back, lost));
    if (back != states[rank].Image()) return Status::DataLoss("mismatch");
    return Status();
  });
  EXPECT_TRUE(status.ok()) << status;
}

}  // namespace
}  // namespace ft
