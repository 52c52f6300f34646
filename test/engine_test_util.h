// Helpers of the engine tests on the loopback fabric: deterministic application state, small
// worlds, and the byte-exact read-back check every engine test ends with.
#ifndef FT_TEST_ENGINE_TEST_UTIL_H_
#define FT_TEST_ENGINE_TEST_UTIL_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "engine/engine_factory.h"
#include "engine/work_ids.h"
#include "ftengine/engine.h"
#include "verbs/faulty/faulty.h"
#include "world/loopback_world_internal.h"

namespace ft::test {

// Deterministic bytes that depend on (rank, version, region, offset).
inline void FillPattern(std::span<std::byte> bytes, uint32_t rank, uint64_t version,
                        uint64_t region) {
  uint64_t x = (rank + 1) * 0x9e3779b97f4a7c15ull ^ (version + 1) * 0xbf58476d1ce4e5b9ull ^
               (region + 1) * 0x94d049bb133111ebull;
  for (size_t i = 0; i < bytes.size(); ++i) {
    x ^= x >> 31;
    x *= 0xd6e8feb86659fd39ull;
    bytes[i] = static_cast<std::byte>(x >> 56);
  }
}

inline internal::LoopbackTestWorldOptions SmallWorld(uint32_t nodes, int k, int m,
                                                     uint64_t cell_bytes = 4096) {
  internal::LoopbackTestWorldOptions options;
  options.nodes = nodes;
  options.engine.k = k;
  options.engine.m = m;
  options.engine.cell_bytes = cell_bytes;
  options.engine.timeout = std::chrono::seconds(20);
  // A 2 s heartbeat bound: these worlds run a thread or two per node on a loaded 2-core CI
  // machine (sanitizers, parallel tests), where a 30 ms stall is common and would be a loss.
  // The heartbeat's own tests set the timing they test, on a manual clock.
  options.engine.heartbeat_interval = std::chrono::milliseconds(100);
  options.engine.heartbeat_misses = 20;
  options.fabric.seed = 42;
  return options;
}

// The WRITEs of the checkpoint datapath (cells and headers), not heartbeats: for FaultRule's
// ForWrIds, so that a rule meant for a round's WRITEs never hits a heartbeat on a control QP.
inline bool IsDataWrite(uint64_t wr_id) {
  const internal::WorkKind kind = internal::WorkId::Decode(wr_id).kind;
  return kind == internal::WorkKind::kCell || kind == internal::WorkKind::kHeader;
}

// Every fabric of the world (the replacements' too) goes through a FaultyFabric of `faults`.
inline void OverFaultyFabric(internal::LoopbackTestWorldOptions& options,
                             std::shared_ptr<verbs::FaultController> faults) {
  options.wrap_fabric = [faults = std::move(faults)](uint32_t,
                                                     std::unique_ptr<verbs::Fabric> inner) {
    return std::unique_ptr<verbs::Fabric>(
        std::make_unique<verbs::FaultyFabric>(std::move(inner), faults));
  };
}

// For tests that drive a manual clock in large steps (deadlines) while the workers run at their
// own pace: a jump of the clock between two turns of a worker is a stall past any bound the
// heartbeat could keep, so its bound is made longer than any such test can reach.
inline void WithoutHeartbeatLosses(internal::LoopbackTestWorldOptions& options) {
  options.engine.heartbeat_interval = options.engine.timeout;
  options.engine.heartbeat_misses = 1'000'000;
}

// The application state of one node: several regions of given sizes.
struct NodeState {
  std::vector<std::vector<std::byte>> regions;

  Status ProtectAll(Engine& engine) {
    for (size_t i = 0; i < regions.size(); ++i) {
      FT_RETURN_IF_ERROR(engine.Protect(i, regions[i].data(), regions[i].size()));
    }
    return Status();
  }
  void Fill(uint32_t rank, uint64_t version) {
    for (size_t i = 0; i < regions.size(); ++i) FillPattern(regions[i], rank, version, i);
  }
  std::vector<std::byte> Image() const {
    std::vector<std::byte> image;
    for (const auto& region : regions) image.insert(image.end(), region.begin(), region.end());
    return image;
  }
};

inline std::vector<NodeState> MakeStates(uint32_t nodes, const std::vector<size_t>& sizes) {
  std::vector<NodeState> states(nodes);
  for (auto& state : states) {
    for (size_t size : sizes) state.regions.emplace_back(size);
  }
  return states;
}

// Checks that every node's committed image equals its current state, with each choice of up to
// m lost columns given.
inline Status VerifyAll(LoopbackWorld& world, std::vector<NodeState>& states,
                        const std::vector<std::vector<int>>& losses) {
  return world.Run([&](uint32_t rank, Engine& engine) -> Status {
    const std::vector<std::byte> expected = states[rank].Image();
    for (const auto& lost : losses) {
      std::vector<std::byte> back(expected.size());
      FT_RETURN_IF_ERROR(engine.ReadCommitted(back, lost));
      if (back != expected) {
        return Status::DataLoss("read-back differs from the checkpointed image (", lost.size(),
                                " columns lost)");
      }
    }
    return Status();
  });
}

// Every node protects its regions, fills them as version `version` and checkpoints (a
// collective): OK, or the first failure.
inline Status ProtectFillAndCheckpoint(LoopbackWorld& world, std::vector<NodeState>& states,
                                       uint64_t version = 1) {
  return world.Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(states[rank].ProtectAll(engine));
    states[rank].Fill(rank, version);
    return engine.Checkpoint().status();
  });
}

// Every node swaps its region 0 for the regions of `next` (a new image: say, a grown one), fills
// them as `version` and checkpoints; each node's result, or the first failure of the swap.
inline Result<std::vector<Status>> SwapImagesAndCheckpoint(LoopbackWorld& world,
                                                           std::vector<NodeState>& next,
                                                           uint64_t version) {
  std::vector<Status> results(world.size());
  Status swapped = world.Run([&](uint32_t rank, Engine& engine) -> Status {
    FT_RETURN_IF_ERROR(engine.Unprotect(0));
    FT_RETURN_IF_ERROR(next[rank].ProtectAll(engine));
    next[rank].Fill(rank, version);
    results[rank] = engine.Checkpoint().status();
    return Status();
  });
  if (!swapped.ok()) return swapped;
  return results;
}

// Polls `done` every `interval` until it holds (true) or `limit` passed (false).
inline bool PollUntil(const std::function<bool()>& done, std::chrono::milliseconds limit,
                      std::chrono::milliseconds interval) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(interval);
  }
  return true;
}

}  // namespace ft::test

#endif  // FT_TEST_ENGINE_TEST_UTIL_H_
