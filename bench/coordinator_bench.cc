// The coordinator's cost per committed version: N = 256, 1024, 4096 nodes in racks of 16,
// k + m = 4 + 2, 64 MiB footprints. One iteration is one version: N PREPAREs (which send N GOs),
// N DONEs (which send N COMMITs), and the outbox cleared. The time per iteration is the time per
// committed version; the goal is < 1 ms at 4096 nodes.
// - BM_CoordinatorVersion: unchanged inputs after a warm-up round, so the placement is reused and
//   every GO is the short form (has_placement false).
// - BM_CoordinatorVersionReplaced: one node's footprint changes every round, so every round
//   recomputes the placement and every GO carries holders and hosted owners.
// - BM_CoordinatorVersionEncoded: as BM_CoordinatorVersion, plus encoding every message sent (what
//   the coordinator node does before posting them).
#include <benchmark/benchmark.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ftengine/status.h"
#include "recovery/coordinator.h"
#include "recovery/protocol.h"

namespace ft::recovery {
namespace {

constexpr int kK = 4;
constexpr int kM = 2;
constexpr uint64_t kFootprint = uint64_t{64} << 20;
constexpr uint32_t kRackSize = 16;
constexpr uint64_t kEpoch = 1;

std::vector<PrepareMessage> World(uint32_t n) {
  std::vector<PrepareMessage> prepares(n);
  for (NodeId node = 0; node < n; ++node) {
    PrepareMessage& p = prepares[node];
    p.epoch = kEpoch;
    p.node = node;
    p.image_bytes = kFootprint * kK;
    p.footprint_bytes = kFootprint;
    p.capacity_bytes = kFootprint * (kK + kM + 2);
    p.domain = node / kRackSize;
    p.store_addr = 0x7f0000000000 + uint64_t{node} * 0x100000000;
    p.store_rkey = 0x1000 + node;
  }
  return prepares;
}

// One version: every PREPARE, then every DONE. False (and an error on `state`) unless it ended in
// N COMMITs of the next version.
bool CommitOneVersion(benchmark::State& state, Coordinator& coordinator,
                      const std::vector<PrepareMessage>& prepares, Coordinator::Outbox& outbox) {
  const uint64_t version = coordinator.committed_version() + 1;
  for (const PrepareMessage& p : prepares) coordinator.OnPrepare(p, &outbox);
  if (!coordinator.round_in_flight()) {
    state.SkipWithError("the round did not start (a PREPARE was ignored or aborted)");
    return false;
  }
  for (const PrepareMessage& p : prepares) {
    coordinator.OnDone(DoneMessage{kEpoch, version, p.node, StatusCode::kOk, UINT32_MAX}, &outbox);
  }
  if (coordinator.committed_version() != version || outbox.size() != 2 * prepares.size()) {
    state.SkipWithError("the round did not commit");
    return false;
  }
  return true;
}

std::unique_ptr<Coordinator> MakeCoordinator(benchmark::State& state, uint32_t n) {
  Result<std::unique_ptr<Coordinator>> made =
      Coordinator::Create(Coordinator::Options{n, kK, kM, kEpoch});
  if (!made.ok()) {
    state.SkipWithError(made.status().ToString().c_str());
    return nullptr;
  }
  return std::move(made).value();
}

void Report(benchmark::State& state, const Coordinator& coordinator, uint32_t n) {
  state.counters["nodes"] = n;
  state.counters["placements"] = static_cast<double>(coordinator.placement_id());
  // Messages handled per version: N PREPARE + N DONE in, N GO + N COMMIT out.
  state.SetItemsProcessed(state.iterations() * 4 * static_cast<int64_t>(n));
}

void BM_CoordinatorVersion(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  std::unique_ptr<Coordinator> coordinator = MakeCoordinator(state, n);
  if (!coordinator) return;
  const std::vector<PrepareMessage> prepares = World(n);
  Coordinator::Outbox outbox;
  // Warm-up: the first round computes the placement.
  if (!CommitOneVersion(state, *coordinator, prepares, outbox)) return;
  outbox.clear();
  for (auto _ : state) {
    if (!CommitOneVersion(state, *coordinator, prepares, outbox)) return;
    benchmark::DoNotOptimize(outbox.data());
    outbox.clear();
  }
  Report(state, *coordinator, n);
}

void BM_CoordinatorVersionReplaced(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  std::unique_ptr<Coordinator> coordinator = MakeCoordinator(state, n);
  if (!coordinator) return;
  std::vector<PrepareMessage> prepares = World(n);
  Coordinator::Outbox outbox;
  if (!CommitOneVersion(state, *coordinator, prepares, outbox)) return;
  outbox.clear();
  uint64_t round = 0;
  for (auto _ : state) {
    // One node's footprint grows or shrinks by a page: the placement is recomputed.
    PrepareMessage& changed = prepares[round % n];
    changed.footprint_bytes = kFootprint + ((round / n) % 2 == 0 ? 4096 : 0);
    ++round;
    if (!CommitOneVersion(state, *coordinator, prepares, outbox)) return;
    benchmark::DoNotOptimize(outbox.data());
    outbox.clear();
  }
  if (coordinator->placement_id() != round + 1) {
    state.SkipWithError("the placement was not recomputed every round");
    return;
  }
  Report(state, *coordinator, n);
}

void BM_CoordinatorVersionEncoded(benchmark::State& state) {
  const auto n = static_cast<uint32_t>(state.range(0));
  std::unique_ptr<Coordinator> coordinator = MakeCoordinator(state, n);
  if (!coordinator) return;
  const std::vector<PrepareMessage> prepares = World(n);
  Coordinator::Outbox outbox;
  if (!CommitOneVersion(state, *coordinator, prepares, outbox)) return;
  outbox.clear();
  std::array<std::byte, kMaxControlMessageBytes> buffer{};
  uint64_t bytes = 0;
  for (auto _ : state) {
    if (!CommitOneVersion(state, *coordinator, prepares, outbox)) return;
    for (const auto& [node, message] : outbox) {
      Result<size_t> used = EncodeMessage(message, buffer);
      if (!used.ok()) {
        state.SkipWithError(used.status().ToString().c_str());
        return;
      }
      bytes += *used;
    }
    benchmark::DoNotOptimize(buffer.data());
    outbox.clear();
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  Report(state, *coordinator, n);
}

void Worlds(benchmark::internal::Benchmark* bench) {
  bench->ArgName("nodes");
  for (const int64_t n : {256, 1024, 4096}) bench->Arg(n);
  bench->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_CoordinatorVersion)->Apply(Worlds);
BENCHMARK(BM_CoordinatorVersionReplaced)->Apply(Worlds);
BENCHMARK(BM_CoordinatorVersionEncoded)->Apply(Worlds);

}  // namespace
}  // namespace ft::recovery
