// Engine tests on the loopback fabric: the checkpoint path end to end, read back and compared
// byte for byte with what the application held at the checkpoint.
#include "ftengine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <numeric>
#include <random>
#include <thread>
#include <tuple>

#include "engine/engine_factory.h"
#include "erasure/fragment.h"
#include "test/engine_test_util.h"
#include "test/recording_fabric.h"
#include "test/status_matchers.h"
#include "verbs/faulty/faulty.h"
#include "verbs/loopback/loopback.h"
#include "world/loopback_world_internal.h"

namespace ft {
namespace {

using namespace std::chrono_literals;
using test::FillPattern;
using test::MakeStates;
using test::NodeState;
using test::SmallWorld;
using test::VerifyAll;

struct Shape {
  uint32_t nodes;
  int k;
  int m;
  std::vector<size_t> regions;
  uint64_t cell_bytes;
};

class CheckpointShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(CheckpointShapes, CommitsAndReadsBackEveryVersion) {
  const Shape& shape = GetParam();
  auto world = internal::LoopbackWorldTesting::Create(
      SmallWorld(shape.nodes, shape.k, shape.m, shape.cell_bytes));
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(shape.nodes, shape.regions);
  ASSERT_TRUE(
      (*world)->Run([&](uint32_t rank, Engine& e) { return states[rank].ProtectAll(e); }).ok());

  std::vector<std::vector<int>> losses = {{}, {0}};
  if (shape.m >= 2) losses.push_back({0, shape.k});  // a data and a parity fragment
  std::vector<int> all_data_lost;
  for (int c = 0; c < std::min(shape.k, shape.m); ++c) all_data_lost.push_back(c);
  losses.push_back(all_data_lost);

  for (uint64_t version = 1; version <= 3; ++version) {
    Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
      states[rank].Fill(rank, version);
      FT_ASSIGN_OR_RETURN(uint64_t committed, engine.Checkpoint());
      if (committed != version) {
        return Status::Internal("committed version ", committed, ", expected ", version);
      }
      return Status();
    });
    ASSERT_TRUE(status.ok()) << status;
    status = VerifyAll(**world, states, losses);
    ASSERT_TRUE(status.ok()) << "version " << version << ": " << status;
  }
  const EngineMetrics metrics = (*world)->engine(0).Metrics();
  EXPECT_EQ(metrics.committed_version, 3u);
  EXPECT_EQ(metrics.checkpoints_committed, 3u);
  uint64_t image = 0;
  for (size_t size : shape.regions) image += size;
  EXPECT_EQ(metrics.image_bytes, image);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, CheckpointShapes,
    ::testing::Values(Shape{3, 1, 1, {5000}, 4096},       // smallest world: RS(1,1)
                      Shape{4, 2, 1, {100}, 4096},        // image smaller than one cell
                      Shape{8, 4, 2, {64 * 1024}, 4096},  // exact multiple of a stripe
                      Shape{8, 4, 2, {50'001}, 4096},     // padded tail stripe
                      Shape{7, 3, 3, {1, 7, 4096, 13, 20'000}, 1024},  // regions straddling cells
                      Shape{9, 6, 2, {3 * 4096 + 5, 4096}, 4096}, Shape{12, 8, 3, {200'000}, 8192},
                      Shape{6, 2, 3, {777, 777}, 512}),
    [](const ::testing::TestParamInfo<Shape>& param_info) {
      const Shape& s = param_info.param;
      return StrCat("N", s.nodes, "_RS", s.k, "_", s.m, "_regions", s.regions.size(), "_",
                    param_info.index);
    });

TEST(Engine, ZeroCopyOnlyBouncesStraddlingAndTailCells) {
  auto world = internal::LoopbackWorldTesting::Create(SmallWorld(6, 2, 2, 4096));
  ASSERT_TRUE(world.ok()) << world.status();
  // One region of 3 full stripes + 100 bytes: only the tail cell is bounced.
  auto states = MakeStates(6, {3 * 2 * 4096 + 100});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ((*world)->engine(3).Metrics().bounce_bytes, 100u);
}

TEST(Engine, AsyncCheckpointOverlapsCompute) {
  auto world = internal::LoopbackWorldTesting::Create(SmallWorld(5, 2, 2, 4096));
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(5, {60'000});
  std::vector<uint64_t> computed(5, 0);
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    for (uint64_t version = 1; version <= 4; ++version) {
      states[rank].Fill(rank, version);
      FT_ASSIGN_OR_RETURN(CheckpointHandle handle, engine.CheckpointAsync());
      // Compute meanwhile: read protected memory (allowed), write elsewhere.
      uint64_t sum = 0;
      for (std::byte b : states[rank].regions[0]) sum += static_cast<uint8_t>(b);
      computed[rank] += sum;
      FT_ASSIGN_OR_RETURN(uint64_t committed, handle.Wait());
      if (committed != version || !handle.Ready()) return Status::Internal("bad version");
    }
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status;
  status = VerifyAll(**world, states, {{1}});
  EXPECT_TRUE(status.ok()) << status;
}

TEST(Engine, LocalCopyRestoresTheCommittedImage) {
  auto options = SmallWorld(4, 2, 1);
  options.engine.keep_local_copy = true;
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(4, {10'000, 333});
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    if (engine.RestoreLocalCopy().code() != StatusCode::kNotFound) {
      return Status::Internal("RestoreLocalCopy before any commit should be NotFound");
    }
    states[rank].Fill(rank, 1);
    FT_RETURN_IF_ERROR(engine.Checkpoint().status());
    const std::vector<std::byte> committed = states[rank].Image();
    states[rank].Fill(rank, 99);  // the application moves on, then must roll back
    FT_RETURN_IF_ERROR(engine.RestoreLocalCopy());
    if (states[rank].Image() != committed) return Status::DataLoss("local copy differs");
    return Status();
  });
  EXPECT_TRUE(status.ok()) << status;
}

TEST(Engine, BadInputIsRefusedAndChangesNothing) {
  auto world = internal::LoopbackWorldTesting::Create(SmallWorld(4, 2, 1));
  ASSERT_TRUE(world.ok()) << world.status();
  Engine& engine = (*world)->engine(1);
  std::vector<std::byte> a(1000), b(1000);

  EXPECT_EQ(engine.Protect(1, nullptr, 10).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Protect(1, a.data(), 0).code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(engine.Protect(1, a.data(), a.size()).ok());
  Status duplicate = engine.Protect(1, b.data(), b.size());
  EXPECT_EQ(duplicate.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(duplicate.message().find("already protected"), std::string_view::npos) << duplicate;
  Status overlap = engine.Protect(2, a.data() + 500, 1000);
  EXPECT_EQ(overlap.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(overlap.message().find("overlaps region 1"), std::string_view::npos) << overlap;
  EXPECT_EQ(engine.Protect(3, a.data() + 999, 1).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.image_bytes(), 1000u);  // nothing changed
  EXPECT_EQ(engine.Unprotect(7).code(), StatusCode::kNotFound);
  ASSERT_TRUE(engine.Unprotect(1).ok());
  EXPECT_EQ(engine.image_bytes(), 0u);
  EXPECT_EQ(engine.Checkpoint().status().code(), StatusCode::kFailedPrecondition);
  std::vector<std::byte> out(10);
  EXPECT_EQ(engine.ReadCommitted(out).code(), StatusCode::kNotFound);
}

TEST(Engine, CreateRejectsBadOptions) {
  auto network = verbs::LoopbackNetwork::Create(4);
  ASSERT_TRUE(network.ok());
  auto make = [&](EngineOptions options, WorldInfo world) {
    auto fabric = (*network)->CreateFabric(world.rank < 4 ? world.rank : 0);
    EXPECT_TRUE(fabric.ok()) << fabric.status();
    return internal::EngineFactory::Create(options, world, std::move(fabric).value()).status();
  };
  EngineOptions options;
  options.k = 3;
  options.m = 1;
  Status too_wide = make(options, {0, 4, 0});
  EXPECT_EQ(too_wide.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_wide.message().find("allows k + m <= 3"), std::string_view::npos) << too_wide;
  options.k = 0;
  EXPECT_EQ(make(options, {0, 4, 0}).code(), StatusCode::kInvalidArgument);
  options.k = 2;
  options.m = 0;
  EXPECT_EQ(make(options, {0, 4, 0}).code(), StatusCode::kInvalidArgument);
  options.m = 1;
  options.cell_bytes = 0;
  EXPECT_EQ(make(options, {0, 4, 0}).code(), StatusCode::kInvalidArgument);
  options.cell_bytes = 3;  // ran for minutes at 9 GB before it was refused
  Status tiny = make(options, {0, 4, 0});
  EXPECT_EQ(tiny.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(tiny.message().find("cell_bytes = 3: cells under 512 bytes"), std::string_view::npos)
      << tiny;
  // 1 GiB cells 1024 deep: 3 TiB of pipeline, more than any machine has.
  options.cell_bytes = 1ull << 30;
  options.pipeline_depth = 1024;
  Status huge = make(options, {0, 4, 0});
  EXPECT_EQ(huge.code(), StatusCode::kResourceExhausted) << huge;
  EXPECT_NE(huge.message().find("3298534883328 bytes of pipeline memory"), std::string_view::npos)
      << huge;
  options.cell_bytes = 4096;
  options.pipeline_depth = 0;
  EXPECT_EQ(make(options, {0, 4, 0}).code(), StatusCode::kInvalidArgument);
  options.pipeline_depth = 2;
  // Heartbeat timing: an interval under 1 ms or over the timeout, misses outside [1, 10^6].
  for (const auto& [interval, misses, named] :
       {std::tuple{std::chrono::milliseconds(0), 3, "heartbeat_interval = 0 ms"},
        std::tuple{options.timeout + std::chrono::milliseconds(1), 3, "heartbeat_interval = "},
        std::tuple{std::chrono::milliseconds(10), 0, "heartbeat_misses = 0"},
        std::tuple{std::chrono::milliseconds(10), 1'000'001, "heartbeat_misses = 1000001"}}) {
    EngineOptions bad = options;
    bad.heartbeat_interval = interval;
    bad.heartbeat_misses = misses;
    const Status refused = make(bad, {0, 4, 0});
    EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << refused;
    EXPECT_NE(refused.message().find(named), std::string_view::npos) << refused;
  }
  {
    EngineOptions bad = options;
    bad.startup_timeout = std::chrono::milliseconds(0);
    const Status refused = make(bad, {0, 4, 0});
    EXPECT_TRUE(test::HasError(refused, StatusCode::kInvalidArgument, "startup_timeout = 0 ms"))
        << refused;
  }
  EXPECT_EQ(make(options, {5, 4, 0}).code(), StatusCode::kInvalidArgument);  // rank outside
  EXPECT_EQ(make(options, {0, 1, 0}).code(), StatusCode::kInvalidArgument);  // world of 1
  {
    auto fabric_of_0 = (*network)->CreateFabric(0);
    ASSERT_TRUE(fabric_of_0.ok());
    Status wrong_node =
        internal::EngineFactory::Create(options, {1, 4, 0}, std::move(fabric_of_0).value())
            .status();
    EXPECT_EQ(wrong_node.code(), StatusCode::kInvalidArgument) << wrong_node;
  }
  EXPECT_EQ(internal::EngineFactory::Create(options, {0, 4, 0}, nullptr).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(Engine, ProtectDuringACheckpointInFlightIsRefused) {
  auto options = SmallWorld(4, 2, 1);
  options.engine.timeout = 300ms;  // the others never join: this round can only time out
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  Engine& engine = (*world)->engine(2);
  std::vector<std::byte> a(5000), b(100);
  ASSERT_TRUE(engine.Protect(0, a.data(), a.size()).ok());
  auto handle = engine.CheckpointAsync();
  ASSERT_TRUE(handle.ok()) << handle.status();
  Status refused = engine.Protect(1, b.data(), b.size());
  EXPECT_EQ(refused.code(), StatusCode::kFailedPrecondition) << refused;
  auto second = engine.CheckpointAsync();  // one version in flight at a time
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition) << second.status();
  EXPECT_FALSE(handle->Ready());
  EXPECT_EQ(engine.Unprotect(0).code(), StatusCode::kFailedPrecondition);
  auto result = handle->Wait();
  EXPECT_EQ(result.status().code(), StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_EQ(engine.image_bytes(), 5000u);
}

TEST(Engine, WorldTooSmallSaysHowManyBytesAreMissing) {
  auto options = SmallWorld(6, 2, 2);
  options.capacity_of = [](uint32_t) -> uint64_t { return 4096; };  // far too small
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(6, {100'000});
  std::vector<Status> results(6);
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    results[rank] = engine.Checkpoint().status();
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status;
  for (const Status& result : results) {
    EXPECT_EQ(result.code(), StatusCode::kResourceExhausted) << result;
    EXPECT_NE(result.message().find("the world lacks"), std::string_view::npos) << result;
  }
}

TEST(Engine, NodeWithoutStoreBorrowsFromOthers) {
  auto options = SmallWorld(8, 2, 2);
  const uint64_t image = 40'000;
  const uint64_t fair = Engine::StoreBytesFor(image, options.engine);
  options.capacity_of = [&](uint32_t rank) -> uint64_t { return rank == 3 ? 4096 : 2 * fair; };
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(8, {image});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  status = VerifyAll(**world, states, {{}, {1, 2}});
  EXPECT_TRUE(status.ok()) << status;
}

// A whole rack (failure domain) is lost at once: with 4 racks of 2 nodes and RS(2,1), each owner
// has at most one fragment per rack, so every survivor still reads its image back exactly. A
// placement that ignored domains (holders r+1, r+2, r+3) would put two fragments of some owner
// in one rack, and that owner's read would fail with DataLoss.
TEST(Engine, AWholeFailureDomainLostAtOnceLosesNoImage) {
  for (uint32_t rack = 1; rack < 4; ++rack) {
    SCOPED_TRACE(testing::Message() << "rack " << rack << " down");
    auto options = SmallWorld(8, 2, 1);
    options.domain_of = [](uint32_t rank) { return rank / 2; };  // racks {0,1} {2,3} {4,5} {6,7}
    auto world = internal::LoopbackWorldTesting::Create(options);
    ASSERT_TRUE(world.ok()) << world.status();
    auto states = MakeStates(8, {9000});
    Status status = test::ProtectFillAndCheckpoint(**world, states);
    ASSERT_TRUE(status.ok()) << status;
    // Rack `rack` is down (its nodes partitioned from everyone): every other node reads back.
    // (A partitioned node is lost for good, as its heartbeats fail: a world per rack.)
    std::vector<uint32_t> survivors;
    for (uint32_t rank = 0; rank < 8; ++rank) {
      if (rank / 2 != rack) survivors.push_back(rank);
    }
    for (uint32_t down : {2 * rack, 2 * rack + 1}) {
      for (uint32_t rank = 0; rank < 8; ++rank) {
        if (rank != down) internal::LoopbackWorldTesting::network(**world).Partition(down, rank);
      }
    }
    status = (*world)->RunOn(survivors, [&](uint32_t rank, Engine& engine) -> Status {
      const std::vector<std::byte> expected = states[rank].Image();
      std::vector<std::byte> back(expected.size());
      FT_RETURN_IF_ERROR(engine.ReadCommitted(back));
      if (back != expected) return Status::DataLoss("read-back differs");
      return Status();
    });
    EXPECT_TRUE(status.ok()) << status;
  }
}

// m + 1 holders of one owner lost: its image cannot be rebuilt, and the read says so (DataLoss
// naming the owner, the version and the stripe) instead of returning anything.
TEST(Engine, MorePlusOneLostHoldersOfAnOwnerIsDataLossNamingIt) {
  auto world = internal::LoopbackWorldTesting::Create(SmallWorld(6, 2, 1));
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(6, {9000});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  // Holders of owner 1 are 2, 3, 4 (every node its own domain): two of them die.
  internal::LoopbackWorldTesting::network(**world).Kill(2);
  internal::LoopbackWorldTesting::network(**world).Kill(3);
  std::vector<std::byte> back(9000);
  Status read = (*world)->engine(1).ReadCommitted(back);
  EXPECT_EQ(read.code(), StatusCode::kDataLoss) << read;
  EXPECT_NE(read.message().find("node 1 version 1 stripe 0: only 1 of the 2 fragments"),
            std::string_view::npos)
      << read;
  // Owner 0 (holders 1, 2, 3) lost two too; owner 5 (holders 0, 1, 2) lost one and reads back.
  EXPECT_EQ((*world)->engine(0).ReadCommitted(back).code(), StatusCode::kDataLoss);
  ASSERT_TRUE((*world)->engine(5).ReadCommitted(back).ok());
  EXPECT_EQ(back, states[5].Image());
}

// A holder dies while version 2 is being written: version 2 fails on every node, version 1 stays
// readable (slot alternation: v never touches v - 1's slot).
TEST(Engine, CommittedVersionSurvivesAFailedNextVersion) {
  auto options = SmallWorld(6, 2, 2, 4096);
  options.engine.timeout = 10s;
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(6, {64 * 1024});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::vector<std::byte>> committed;
  for (auto& state : states) committed.push_back(state.Image());

  const uint32_t victim = 4;
  std::vector<Status> results(6);
  std::vector<uint32_t> survivors = {0, 1, 2, 3, 5};
  status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    states[rank].Fill(rank, 2);
    if (rank == victim) {
      internal::LoopbackWorldTesting::network(**world).Kill(victim);  // dies as version 2 starts
    }
    results[rank] = engine.Checkpoint().status();
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status;
  for (uint32_t rank : survivors) {
    EXPECT_FALSE(results[rank].ok()) << "rank " << rank;
    EXPECT_NE(results[rank].message().find("node 4"), std::string_view::npos) << results[rank];
  }
  // Every survivor reads version 1 back, even with a fragment on the dead node missing.
  status = (*world)->RunOn(survivors, [&](uint32_t rank, Engine& engine) -> Status {
    std::vector<std::byte> back(committed[rank].size());
    FT_RETURN_IF_ERROR(engine.ReadCommitted(back));
    if (back != committed[rank]) return Status::DataLoss("version 1 was damaged");
    if (engine.Metrics().committed_version != 1) return Status::Internal("committed != 1");
    return Status();
  });
  EXPECT_TRUE(status.ok()) << status << " "
                           << internal::LoopbackWorldTesting::network(**world).seed_description();
}

// The header-last rule, observed on the datapath: a fragment header is posted only when none of
// the node's cell WRITEs is still outstanding. Random delays keep WRITEs in flight longer, so an
// early header would be caught.
TEST(Engine, HeadersArePostedOnlyAfterEveryCellCompleted) {
  constexpr uint32_t kNodes = 6;
  constexpr int kK = 3, kM = 2;
  constexpr uint64_t kCell = 1024, kImage = 20'000;  // 7 stripes, a padded tail
  auto options = SmallWorld(kNodes, kK, kM, kCell);
  options.engine.pipeline_depth = 3;
  std::vector<std::shared_ptr<test::DatapathRecord>> records(kNodes);
  for (auto& record : records) record = std::make_shared<test::DatapathRecord>();
  options.wrap_fabric = [&](uint32_t rank, std::unique_ptr<verbs::Fabric> inner) {
    return std::unique_ptr<verbs::Fabric>(
        std::make_unique<test::RecordingFabric>(std::move(inner), records[rank]));
  };
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  internal::LoopbackWorldTesting::network(**world).SetRandomDelays(4);
  auto states = MakeStates(kNodes, {kImage});
  constexpr int kVersions = 3;
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    for (int v = 1; v <= kVersions; ++v) {
      states[rank].Fill(rank, v);
      FT_RETURN_IF_ERROR(engine.Checkpoint().status());
    }
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status << " "
                           << internal::LoopbackWorldTesting::network(**world).seed_description();
  const uint64_t stripes = (kImage + kK * kCell - 1) / (kK * kCell);
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_EQ(records[rank]->header_writes.load(), kVersions * (kK + kM)) << "rank " << rank;
    EXPECT_EQ(records[rank]->cell_writes.load(), static_cast<int>(kVersions * stripes * (kK + kM)))
        << "rank " << rank;
    EXPECT_EQ(records[rank]->headers_posted_with_cells_outstanding.load(), 0) << "rank " << rank;
  }
  EXPECT_TRUE(VerifyAll(**world, states, {{0, 4}}).ok());
}

// A holder whose connection carries other store keys than the GO names for it (one of the two is
// stale, say a restarted process): the owner writes nothing there, its checkpoint fails naming
// the holder, and no node hangs or commits.
TEST(Engine, HolderConnectingWithOtherStoreKeysThanTheGoIsRefused) {
  constexpr uint32_t kNodes = 4;
  auto options = SmallWorld(kNodes, 2, 1);
  options.engine.timeout = 10s;
  std::atomic<int> rewritten{0};
  options.wrap_fabric = [&](uint32_t rank, std::unique_ptr<verbs::Fabric> inner) {
    test::RecordingFabric::PrivateDataRewrite rewrite;
    if (rank == 2) {
      // Partner connection data: {"FTP1", rank, epoch, store address, store rkey}.
      rewrite = [&](verbs::NodeId, std::vector<std::byte>& data) {
        if (data.size() == 28 && std::memcmp(data.data(), "1PTF", 4) == 0) {
          data[24] ^= std::byte{0x5a};  // the rkey
          ++rewritten;
        }
      };
    }
    return std::unique_ptr<verbs::Fabric>(std::make_unique<test::RecordingFabric>(
        std::move(inner), std::make_shared<test::DatapathRecord>(), std::move(rewrite)));
  };
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(kNodes, {10'000});
  std::vector<Status> results(kNodes, Status::Internal("not run"));
  const auto started = std::chrono::steady_clock::now();
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    states[rank].Fill(rank, 1);
    results[rank] = engine.Checkpoint().status();
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 8s) << "a node waited for its deadline";
  EXPECT_GT(rewritten.load(), 0) << "node 2 has holders: some partner data must have been seen";
  EXPECT_EQ(results[2].code(), StatusCode::kFailedPrecondition) << results[2];
  EXPECT_NE(results[2].message().find("stale"), std::string_view::npos) << results[2];
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT_FALSE(results[rank].ok()) << "rank " << rank << " committed";
  }
  status = (*world)->Run([&](uint32_t, Engine& engine) -> Status {
    if (engine.Metrics().committed_version != 0) return Status::Internal("a version committed");
    return Status();
  });
  EXPECT_TRUE(status.ok()) << status;
}

// Kills, with torn writes: an idle node, a node with its round queued, a node whose cells are
// going out, and the coordinator. Every survivor's checkpoint ends (no hang) with either the new
// version committed or Unavailable naming the lost node, and its committed image reads back
// exactly: version v or v + 1, never a mix.
enum class KillAt { kIdle, kQueued, kMidWrite };

struct KillCase {
  const char* name;
  uint32_t victim;
  KillAt at;
};

class KillDuringCheckpoint : public ::testing::TestWithParam<KillCase> {};

TEST_P(KillDuringCheckpoint, SurvivorsEndWithIntactCommittedData) {
  const KillCase& kill = GetParam();
  constexpr uint32_t kNodes = 7;
  auto options = SmallWorld(kNodes, 3, 2, 2048);
  options.engine.timeout = 10s;
  std::vector<std::shared_ptr<test::DatapathRecord>> records(kNodes);
  for (auto& record : records) record = std::make_shared<test::DatapathRecord>();
  auto faults = std::make_shared<verbs::FaultController>();
  options.wrap_fabric = [&](uint32_t rank, std::unique_ptr<verbs::Fabric> inner) {
    return std::unique_ptr<verbs::Fabric>(std::make_unique<test::RecordingFabric>(
        std::make_unique<verbs::FaultyFabric>(std::move(inner), faults), records[rank]));
  };
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  verbs::LoopbackNetwork& network = internal::LoopbackWorldTesting::network(**world);
  network.SetRandomDelays(3);
  // A node that dies lands a seeded prefix of every WRITE it had queued, to and from it: a torn
  // cell or header of the round in flight must never reach the committed version's slot.
  network.SetTornWrites(true);
  auto states = MakeStates(kNodes, {40'000, 123});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  std::vector<std::vector<std::byte>> version1, version2;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    version1.push_back(states[rank].Image());
    states[rank].Fill(rank, 2);
    version2.push_back(states[rank].Image());
  }
  if (kill.at == KillAt::kIdle) network.Kill(kill.victim);
  // Mid-write, the victim's WRITEs to its next rank are stuck (so that version 2 cannot commit),
  // while every other request goes out (its control messages too).
  if (kill.at == KillAt::kMidWrite) {
    faults->Add(verbs::FaultRule::Delay(1 << 30)
                    .For(verbs::Opcode::kWrite)
                    .ForWrIds(test::IsDataWrite)
                    .OnNode(kill.victim)
                    .ToPeer((kill.victim + 1) % kNodes));
  }

  std::vector<Result<uint64_t>> results(kNodes, Status::Internal("not run"));
  std::vector<uint32_t> survivors;
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    if (rank != kill.victim) survivors.push_back(rank);
  }
  std::vector<int> cells_before;
  for (const auto& record : records) cells_before.push_back(record->cell_writes.load());
  const auto every_node_posted_cells = [&] {
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      if (records[rank]->cell_writes.load() == cells_before[rank]) return false;
    }
    return true;
  };
  const auto started = std::chrono::steady_clock::now();
  status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    if (rank == kill.victim && kill.at == KillAt::kIdle) return Status();
    // A survivor that already knows of the loss (its heartbeat or link to the victim failed, or
    // the coordinator said so) refuses to start: that is its answer.
    Result<CheckpointHandle> checkpoint = engine.CheckpointAsync();
    if (!checkpoint.ok()) {
      results[rank] = checkpoint.status();
      return Status();
    }
    CheckpointHandle& handle = *checkpoint;
    if (rank == kill.victim) {
      if (kill.at == KillAt::kMidWrite) {
        // Dies once every node has posted cells of version 2: the others' cells are landing
        // in their holders' stores when the round ends.
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (!every_node_posted_cells()) {
          if (std::chrono::steady_clock::now() > until || handle.Ready()) {
            std::string counts;
            for (uint32_t r = 0; r < kNodes; ++r) {
              counts += StrCat(" ", records[r]->cell_writes.load() - cells_before[r]);
            }
            return Status::Internal("not every node posted a cell of version 2 in time:", counts);
          }
          std::this_thread::yield();
        }
      }
      network.Kill(kill.victim);
    }
    results[rank] = handle.Wait();
    return Status();
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s) << "a survivor waited too long";

  const std::string victim_name = StrCat("node ", kill.victim);
  for (uint32_t rank : survivors) {
    if (results[rank].ok()) {
      EXPECT_EQ(*results[rank], 2u);
    } else {
      EXPECT_EQ(results[rank].status().code(), StatusCode::kUnavailable) << results[rank].status();
      EXPECT_NE(results[rank].status().message().find(victim_name), std::string_view::npos)
          << results[rank].status();
    }
  }
  status = (*world)->RunOn(survivors, [&](uint32_t rank, Engine& engine) -> Status {
    std::vector<std::byte> back(version1[rank].size());
    FT_RETURN_IF_ERROR(engine.ReadCommitted(back));
    const uint64_t committed = engine.Metrics().committed_version;
    const auto& expected = committed == 2 ? version2[rank] : version1[rank];
    if (back != expected) return Status::DataLoss("committed version ", committed, " damaged");
    return Status();
  });
  EXPECT_TRUE(status.ok()) << status << " " << network.seed_description();
}

INSTANTIATE_TEST_SUITE_P(Kills, KillDuringCheckpoint,
                         ::testing::Values(KillCase{"IdleNode", 3, KillAt::kIdle},
                                           KillCase{"NodeQueued", 5, KillAt::kQueued},
                                           KillCase{"NodeMidWrite", 4, KillAt::kMidWrite},
                                           KillCase{"IdleCoordinator", 0, KillAt::kIdle},
                                           KillCase{"CoordinatorQueued", 0, KillAt::kQueued},
                                           KillCase{"CoordinatorMidWrite", 0, KillAt::kMidWrite}),
                         [](const ::testing::TestParamInfo<KillCase>& param_info) {
                           return std::string(param_info.param.name);
                         });

// Cells over kCpuPieceBytes (4 MiB) are encoded, checksummed, decoded and copied in pieces with a
// heartbeat between them: a cell of 9 MiB + 123 B (pieces of 4, 4 and 1 MiB + 123 B) over an
// image whose last stripe is partly padding reads back exactly with each column lost, and
// with none.
TEST(Engine, LargeCellsGoInPiecesAndReadBackExactly) {
  constexpr uint32_t kNodes = 4;
  constexpr uint64_t kCell = (9u << 20) + 123;
  auto options = SmallWorld(kNodes, 2, 1, kCell);
  options.engine.pipeline_depth = 1;
  auto world = internal::LoopbackWorldTesting::Create(options);
  ASSERT_TRUE(world.ok()) << world.status();
  auto states = MakeStates(kNodes, {(20u << 20) + 7, 4097});
  Status status = test::ProtectFillAndCheckpoint(**world, states);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_TRUE(VerifyAll(**world, states, {{}, {0}, {1}, {2}}).ok());
}

}  // namespace
}  // namespace ft
