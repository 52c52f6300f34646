// ComputePlacement cost vs world size: N = 256, 1024, 4096 nodes in racks of 16 (N / 16 failure
// domains), k + m = 4 + 2 and 10 + 4, 64 MiB footprints, stores with room for k + m + 2 fragments.
// BM_ComputePlacementTight gives every store room for exactly k + m fragments and empties one
// node in 64, so the borrowing path runs too.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "recovery/placement.h"

namespace ft::recovery {
namespace {

constexpr uint64_t kFootprint = uint64_t{64} << 20;
constexpr uint32_t kRackSize = 16;

std::vector<NodeSpec> Racks(int64_t n, uint64_t fragments_each) {
  std::vector<NodeSpec> nodes(static_cast<size_t>(n));
  for (size_t r = 0; r < nodes.size(); ++r) {
    nodes[r] =
        NodeSpec{static_cast<uint32_t>(r / kRackSize), kFootprint * fragments_each, kFootprint};
  }
  return nodes;
}

void Run(benchmark::State& state, const std::vector<NodeSpec>& nodes, int k, int m) {
  for (auto _ : state) {
    Result<Placement> placement = ComputePlacement(nodes, k, m);
    if (!placement.ok()) {
      state.SkipWithError(placement.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(placement);
  }
  const Result<Placement> placement = ComputePlacement(nodes, k, m);
  state.SetLabel(placement.ok() ? placement->Describe() : placement.status().ToString());
  state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(nodes.size()) * (k + m));
}

void BM_ComputePlacement(benchmark::State& state) {
  const int k = static_cast<int>(state.range(1));
  const int m = static_cast<int>(state.range(2));
  Run(state, Racks(state.range(0), static_cast<uint64_t>(k + m + 2)), k, m);
}

void BM_ComputePlacementTight(benchmark::State& state) {
  const int k = static_cast<int>(state.range(1));
  const int m = static_cast<int>(state.range(2));
  std::vector<NodeSpec> nodes = Racks(state.range(0), static_cast<uint64_t>(k + m + 1));
  for (size_t r = 0; r < nodes.size(); r += 64) nodes[r].capacity_bytes = 0;
  Run(state, nodes, k, m);
}

void Shapes(benchmark::internal::Benchmark* bench) {
  bench->ArgNames({"nodes", "k", "m"});
  for (const int64_t n : {256, 1024, 4096}) {
    bench->Args({n, 4, 2});
    bench->Args({n, 10, 4});
  }
  bench->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_ComputePlacement)->Apply(Shapes);
BENCHMARK(BM_ComputePlacementTight)->Apply(Shapes);

}  // namespace
}  // namespace ft::recovery
