// Multi-process engine jobs over rdma with uneven images, under default options (store_capacity
// 0: the coordinator sizes every store from the placement): the rdma variants of
// engine_uneven_test.cc. Every rank a different size, one rank 10x the others, images that grow
// between checkpoints (within the extents' slack, beyond it, and back), and failure domains on 8
// nodes. rdma_node's verify reads every version of every rank back byte for byte, with and
// without columns treated as lost; each rank reports its store after each version, and the
// world's sum must be the images' extents (Engine::StoreBytesFor): the stores hold the placement
// and nothing more (no fair share, no store left behind by an earlier placement).
//
// Needs an RDMA device (the soft-RoCE VM: ../shared/rxe-vm/rxe-vm -- ctest --test-dir
// build/release -L rdma -R RdmaUneven); skips without one.
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test/rdma_process_util.h"
#include "test/rdma_test_util.h"
#include "test/run_program.h"

namespace ft::verbs {
namespace {

using ft::test::ScratchDir;
using rdma_process::ExpectEveryRankVerified;
using rdma_process::ExplainFailures;
using rdma_process::NodeFlags;
using rdma_process::ParseStoreReports;
using rdma_process::RunJob;
using rdma_process::RunResult;
using rdma_process::StoreReport;
using rdma_process::StoreReports;
using rdma_process::WorldSum;

// The store report lines (rdma_node --report-stores), which ExpectEveryRankVerified lets by.
constexpr const char* kStoreLine = R"(rank \d+ .+ image \d+ store \d+ extents \d+)";

// The pieces appended in order (a chain of operator+ over std::to_string draws a false -Wrestrict
// from GCC 12).
std::string Cat(std::initializer_list<std::string> pieces) {
  std::string text;
  for (const std::string& piece : pieces) text += piece;
  return text;
}

// rdma_node's verify flags with rank r's regions from regions_of(r), and store reports.
std::vector<std::string> UnevenFlags(int n, int k, int m, int cell_bytes, int versions,
                                     const std::function<std::string(int)>& regions_of,
                                     const std::string& sync_dir) {
  std::vector<std::string> flags =
      NodeFlags("verify", k, m, cell_bytes, regions_of(0), versions, sync_dir);
  for (int rank = 1; rank < n; ++rank) {
    flags.insert(flags.end(),
                 {"--rank-regions", Cat({std::to_string(rank), "=", regions_of(rank)})});
  }
  flags.push_back("--report-stores");
  return flags;
}

// The job succeeded, every rank verified its last version, and after each version the world's
// stores were exactly the extents of its images. Returns the reports for more checks.
StoreReports ExpectVerifiedWithStoresAsPlaced(const RunResult& run, int n, int versions) {
  EXPECT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  ExpectEveryRankVerified(run, n, versions, kStoreLine);
  StoreReports reports = ParseStoreReports(run.out);
  for (int version = 1; version <= versions; ++version) {
    const StoreReport world = WorldSum(reports, "version " + std::to_string(version), n);
    EXPECT_EQ(world.store, world.extents)
        << "version " << version << ": the world's stores against its images' extents";
  }
  return reports;
}

// 8 nodes of RS(4,2), every image different: four 1% apart, four far apart (7 KB to 140 KB);
// each has a second region of a few hundred bytes (cells straddle regions). Under fair-share
// stores images 0.6% apart failed their first checkpoint with ResourceExhausted.
TEST(RdmaUnevenTest, EveryRankADifferentSize) {
  SKIP_WITHOUT_DEVICE();
  constexpr int kNodes = 8;
  ScratchDir dir("rdma_uneven_test");
  ASSERT_FALSE(dir.path().empty());
  const auto regions_of = [](int rank) {
    static constexpr int kFirst[kNodes] = {60'000, 60'600,  61'200, 61'800,
                                           7'001,  140'003, 23'456, 99'999};
    return Cat({std::to_string(kFirst[rank]), ",", std::to_string(333 + rank)});
  };
  const RunResult run =
      RunJob(kNodes, {}, UnevenFlags(kNodes, 4, 2, 1024, 2, regions_of, dir.path()));
  const ExplainFailures explain(run);
  ExpectVerifiedWithStoresAsPlaced(run, kNodes, 2);
}

// One rank's image is 10x the others': its holders' stores grow for it, nobody else's, and its
// own store (it hosts only small owners' fragments) is the smallest of all.
TEST(RdmaUnevenTest, OneRankTenTimesTheOthers) {
  SKIP_WITHOUT_DEVICE();
  constexpr int kNodes = 8;
  constexpr int kLarge = 5;
  ScratchDir dir("rdma_uneven_test");
  ASSERT_FALSE(dir.path().empty());
  const auto regions_of = [](int rank) {
    return std::string(rank == kLarge ? "200000,30010" : "20000,3001");
  };
  const RunResult run =
      RunJob(kNodes, {}, UnevenFlags(kNodes, 4, 2, 1024, 2, regions_of, dir.path()));
  const ExplainFailures explain(run);
  const StoreReports reports = ExpectVerifiedWithStoresAsPlaced(run, kNodes, 2);
  const auto last = reports.find("version 2");
  ASSERT_NE(last, reports.end());
  ASSERT_TRUE(last->second.contains(kLarge));
  for (const auto& [rank, report] : last->second) {
    EXPECT_LE(last->second.at(kLarge).store, report.store) << "rank " << rank;
  }
}

// Images grow between checkpoints: by 8% (within the extents' slack: the stores stay as they
// are), by 3x (new stores; once version 3 committed the old ones are gone), then shrink to half
// their first size. Each rank's regions are re-allocated and protected again before each
// change (rdma_node --resize).
TEST(RdmaUnevenTest, AnImageThatGrowsBetweenCheckpoints) {
  SKIP_WITHOUT_DEVICE();
  constexpr int kNodes = 6;
  ScratchDir dir("rdma_uneven_test");
  ASSERT_FALSE(dir.path().empty());
  const auto regions_of = [](int rank) {
    return Cat({std::to_string(30'000 + 1'000 * rank), ",", std::to_string(5'001 + 7 * rank)});
  };
  std::vector<std::string> flags = UnevenFlags(kNodes, 3, 2, 512, 4, regions_of, dir.path());
  flags.insert(flags.end(), {"--resize", "2=1.08", "--resize", "3=3", "--resize", "4=0.5"});
  const RunResult run = RunJob(kNodes, {}, flags);
  const ExplainFailures explain(run);
  EXPECT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  ExpectEveryRankVerified(run, kNodes, 4, kStoreLine);
  const StoreReports reports = ParseStoreReports(run.out);
  const StoreReport first = WorldSum(reports, "version 1", kNodes);
  EXPECT_EQ(first.store, first.extents);
  const StoreReport grown = WorldSum(reports, "version 2", kNodes);
  EXPECT_GT(grown.image, first.image);
  EXPECT_EQ(grown.store, first.store) << "8% fits the slack: nothing re-placed";
  const StoreReport tripled = WorldSum(reports, "version 3", kNodes);
  EXPECT_EQ(tripled.store, tripled.extents) << "the stores of version 2 went once version 3 "
                                               "committed";
  const StoreReport shrunk = WorldSum(reports, "version 4", kNodes);
  EXPECT_LT(shrunk.image, first.image);
  EXPECT_GE(shrunk.store, shrunk.extents);
}

// Failure domains (EngineOptions::failure_domain = rank % D) on 8 nodes of RS(4,2), images
// uneven (20 to 75 KB): `ftbench checkpoint --domains 3` on 8 nodes failed with ResourceExhausted
// under fair-share stores (uneven racks make uneven stores). D = 1 (one rack: spread is impossible,
// the placement still balances) to 8 (a node per domain), every count between them (2: two racks
// of 4 for 6 fragments; 3, 5, 6, 7: uneven racks), one job each (about 7 s each in the VM,
// starting 8 processes under TCG), as engine_uneven_test.cc's EngineDomains on loopback.
TEST(RdmaUnevenTest, FailureDomainCountsOnEightNodes) {
  SKIP_WITHOUT_DEVICE();
  constexpr int kNodes = 8;
  // Far enough apart that their extents differ (slots are 4 KiB-aligned): a store sized for
  // the wrong owners shows in the sums whatever the racks.
  const auto regions_of = [](int rank) { return std::to_string(20'000 + 7'919 * rank); };
  for (int domains = 1; domains <= kNodes; ++domains) {
    SCOPED_TRACE(std::to_string(domains) + " failure domains");
    ScratchDir dir("rdma_uneven_test");
    ASSERT_FALSE(dir.path().empty());
    std::vector<std::string> flags = UnevenFlags(kNodes, 4, 2, 1024, 2, regions_of, dir.path());
    flags.insert(flags.end(), {"--domains", std::to_string(domains)});
    const RunResult run = RunJob(kNodes, {}, flags);
    const ExplainFailures explain(run);
    ExpectVerifiedWithStoresAsPlaced(run, kNodes, 2);
  }
}

}  // namespace
}  // namespace ft::verbs
