// The read-back path on its own: Engine::ReadCommitted, the fragment reader a recovery restores
// with (READ k columns per stripe, check every cell CRC, decode what is missing, copy into the
// image), on a loopback world of 8 nodes x 64 MiB, RS(4,2), 1 MiB cells: the configuration of
// issue 14's recovery targets. One committed version is written once; each iteration reads it.
// - BM_ReadAll: all 8 nodes read their images back at once (what a rollback does).
// - BM_ReadAllDecoding: the same with data column 0 treated as lost, so every stripe is decoded
//   (what a replacement does for the column the lost node held).
// - BM_ReadOne: node 3 alone.
// - BM_MemcpyAll: the reference, 8 threads each copying 64 MiB between two touched buffers.
// bytes_per_second counts image bytes; compare BM_ReadAll with BM_MemcpyAll of the same run.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"
#include "ftengine/status.h"

namespace ft {
namespace {

constexpr uint32_t kNodes = 8;
constexpr uint64_t kImageBytes = uint64_t{64} << 20;

// The world and its committed version, made once for every benchmark of the binary.
struct World {
  std::unique_ptr<LoopbackWorld> world;
  std::vector<std::vector<std::byte>> images;
  std::vector<std::vector<std::byte>> read_back;
  Status status;
};

World& SharedWorld() {
  static World* shared = [] {
    auto* w = new World;  // lives for the process: the benchmarks share it
    LoopbackWorldOptions options;
    options.nodes = kNodes;
    options.engine.k = 4;
    options.engine.m = 2;
    options.engine.cell_bytes = 1 << 20;
    Result<std::unique_ptr<LoopbackWorld>> world = LoopbackWorld::Create(options);
    if (!world.ok()) {
      w->status = world.status();
      return w;
    }
    w->world = std::move(world).value();
    w->images.assign(kNodes, std::vector<std::byte>(kImageBytes));
    w->read_back.assign(kNodes, std::vector<std::byte>(kImageBytes));
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      for (uint64_t i = 0; i < kImageBytes; i += 64) {
        w->images[rank][i] = static_cast<std::byte>((i >> 6) * 31 + rank);
      }
    }
    w->status = w->world->Run([&](uint32_t rank, Engine& engine) -> Status {
      FT_RETURN_IF_ERROR(engine.Protect(0, w->images[rank].data(), kImageBytes));
      return engine.Checkpoint().status();
    });
    return w;
  }();
  return *shared;
}

void ReadBack(benchmark::State& state, const std::vector<uint32_t>& ranks, std::vector<int> skip) {
  World& w = SharedWorld();
  if (!w.status.ok()) {
    state.SkipWithError(w.status.ToString().c_str());
    return;
  }
  for (auto _ : state) {
    Status status = w.world->RunOn(ranks, [&](uint32_t rank, Engine& engine) {
      return engine.ReadCommitted(w.read_back[rank], skip);
    });
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
  }
  for (uint32_t rank : ranks) {
    if (w.read_back[rank] != w.images[rank]) {
      state.SkipWithError("an image read back differs from the one checkpointed");
      return;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * ranks.size() * kImageBytes));
}

std::vector<uint32_t> AllRanks() {
  std::vector<uint32_t> ranks(kNodes);
  for (uint32_t rank = 0; rank < kNodes; ++rank) ranks[rank] = rank;
  return ranks;
}

void BM_ReadAll(benchmark::State& state) { ReadBack(state, AllRanks(), {}); }
void BM_ReadAllDecoding(benchmark::State& state) { ReadBack(state, AllRanks(), {0}); }
void BM_ReadOne(benchmark::State& state) { ReadBack(state, {3}, {}); }

void BM_MemcpyAll(benchmark::State& state) {
  std::vector<std::vector<std::byte>> from(kNodes,
                                           std::vector<std::byte>(kImageBytes, std::byte{1}));
  std::vector<std::vector<std::byte>> to(kNodes, std::vector<std::byte>(kImageBytes));
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (uint32_t rank = 0; rank < kNodes; ++rank) {
      threads.emplace_back(
          [&, rank] { std::memcpy(to[rank].data(), from[rank].data(), kImageBytes); });
    }
    for (std::thread& thread : threads) thread.join();
    benchmark::DoNotOptimize(to[0].data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kNodes * kImageBytes));
}

BENCHMARK(BM_MemcpyAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadAll)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadAllDecoding)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ReadOne)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace ft
