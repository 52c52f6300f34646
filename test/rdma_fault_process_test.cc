// Multi-process engine jobs over rdma with faults injected between two ranks (rdma_node wraps
// its rdma fabric in a FaultyFabric; test/rdma_node_faults.cc): the rdma variants of
// engine_fault_test.cc and engine_uneven_test.cc's rounds that fail.
//   - a checkpoint deadline with WRITEs stuck between ranks 1 and 3: the version fails on every
//     rank without touching the control path, and the retried version commits;
//   - every image grows 3x (a new placement into new stores) and that round aborts (every WRITE
//     between ranks 1 and 3 fails): the committed version reads back from the stores it lives
//     in, and the retried version commits into the new ones.
//
// Needs an RDMA device (the soft-RoCE VM: ../shared/rxe-vm/rxe-vm -- ctest --test-dir
// build/release -L rdma -R RdmaProcessFault); skips without one.
#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test/rdma_process_util.h"
#include "test/rdma_test_util.h"
#include "test/run_program.h"

namespace ft::verbs {
namespace {

using ft::test::Lines;
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

// The ranks whose WRITEs to each other the faults catch.
constexpr int kA = 1;
constexpr int kB = 3;

// Engine timeout of the deadline job: the stuck version waits it out once, so it is short; yet
// every process must create its engine within it (under TCG 4 processes take up to ~3 s).
constexpr int kDeadlineMs = 8'000;

// rdma_node's flags for `scenario` with the fault between kA and kB, the engine timeout
// `timeout_ms`.
std::vector<std::string> FaultFlags(const std::string& scenario, int k, int m,
                                    const std::string& regions, int timeout_ms,
                                    const std::string& sync_dir) {
  std::vector<std::string> flags = NodeFlags(scenario, k, m, 4096, regions, 2, sync_dir);
  const auto timeout = std::find(flags.begin(), flags.end(), "--timeout-ms");
  timeout[1] = std::to_string(timeout_ms);
  flags.insert(flags.end(), {"--pair", std::to_string(kA), std::to_string(kB)});
  return flags;
}

// The lines of `run` that match `format`, by rank (its first group); a failure for a rank that
// printed two, or none.
std::map<int, std::smatch> LineOfEachRank(const std::vector<std::string>& lines,
                                          const std::regex& format, int n,
                                          const std::string& what) {
  std::map<int, std::smatch> found;
  for (const std::string& line : lines) {
    std::smatch match;
    if (std::regex_match(line, match, format)) {
      EXPECT_TRUE(found.emplace(std::stoi(match[1]), match).second) << "twice: " << line;
    }
  }
  for (int rank = 0; rank < n; ++rank) {
    EXPECT_TRUE(found.contains(rank)) << "rank " << rank << " printed no \"" << what << "\" line";
  }
  return found;
}

// Version 2 meets the engine's deadline while ranks 1 and 3 have WRITEs stuck to each other
// (held by their FaultyFabric): it fails on every rank, on 1 and 3 with DeadlineExceeded or the
// link between them lost, and no failure names the coordinator. With the fault gone, the retried
// version 2 commits on every rank (its Connect replaces the fenced link) without waiting out a
// deadline, and reads back exactly.
TEST(RdmaProcessFaultTest, DeadlineWithWritesInFlightThenTheRetriedVersionCommits) {
  SKIP_WITHOUT_DEVICE();
  // n = 4, k + m = 3: every other rank holds a fragment of each, so 1 and 3 WRITE to each other.
  constexpr int kNodes = 4;
  ScratchDir dir("rdma_fault_process_test");
  ASSERT_FALSE(dir.path().empty());
  const RunResult run =
      RunJob(kNodes, {}, FaultFlags("deadline", 2, 1, "40000", kDeadlineMs, dir.path()));
  std::cout << run.out << std::flush;  // the failures and their times
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  const std::string failed =
      R"(rank (\d+) version 2 failed after ([0-9.]+) s \((\d+) WRITEs held\): (.*))";
  const std::string committed = R"(rank (\d+) version 2 committed after ([0-9.]+) s)";
  ExpectEveryRankVerified(run, kNodes, 2,
                          failed + "|" + committed + R"(|rank \d+ version 2 image \d+ .*)");

  const std::vector<std::string> lines = Lines(run.out);
  bool deadline_met = false;
  for (const auto& [rank, match] : LineOfEachRank(lines, std::regex(failed), kNodes, "failed")) {
    const std::string status = match[4];
    // rdma_node checked the message: no coordinator named; DeadlineExceeded or the lost link
    // on 1 and 3, whose rule held WRITEs.
    EXPECT_LT(std::stod(match[2]), kDeadlineMs / 1000.0 + 5)
        << "rank " << rank << " waited out more than its deadline: " << match[0];
    if (rank == kA || rank == kB) {
      EXPECT_GT(std::stoull(match[3]), 0u) << match[0];
      deadline_met |= status.starts_with("DeadlineExceeded");
    }
  }
  EXPECT_TRUE(deadline_met) << "neither rank " << kA << " nor " << kB
                            << " met its deadline with its WRITEs stuck";
  for (const auto& [rank, match] :
       LineOfEachRank(lines, std::regex(committed), kNodes, "committed")) {
    EXPECT_LT(std::stod(match[2]), kDeadlineMs / 1000.0)
        << "the retried version waited out a deadline on rank " << rank;
  }
}

// The placement-change gap with coordinator-sized stores: every image grows 3x, so version 2 is
// placed into new stores (a GROW on every node), and version 2 aborts (every WRITE between
// ranks 1 and 3 fails, while the others WRITE all their cells into the new stores). Version 1
// lives on in the stores it was written to, registered until a later version commits: it reads
// back exactly on every rank with each column (two on ranks other than 1 and 3) treated as lost.
// (If a GROW dropped the old store, every read of version 1 would fail.) With the fault gone the
// retried version 2 commits into the new stores, and the old ones go.
TEST(RdmaProcessFaultTest, AnAbortedRoundIntoNewStoresLeavesTheCommittedVersion) {
  SKIP_WITHOUT_DEVICE();
  // n = 5, k + m = 4: every other rank holds a fragment of each (1 and 3 WRITE to each other);
  // m = 2: ranks 1 and 3, whose link to each other stays fenced, read with one more column lost.
  constexpr int kNodes = 5;
  ScratchDir dir("rdma_fault_process_test");
  ASSERT_FALSE(dir.path().empty());
  const RunResult run = RunJob(
      kNodes, {},
      FaultFlags("aborted-grow", 2, 2, "30001,9000", rdma_process::kEngineTimeoutMs, dir.path()));
  std::cout << run.out << std::flush;
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  EXPECT_LT(run.seconds, rdma_process::kEngineTimeoutMs / 1000.0)
      << "nothing may wait out the engine timeout: the round aborts at once";
  const std::string failed =
      R"(rank (\d+) version 2 failed \((\d+) WRITEs failed by the fault\): (.*))";
  const std::string intact = R"(rank (\d+) version 1 intact after the abort)";
  ExpectEveryRankVerified(
      run, kNodes, 2,
      failed + "|" + intact +
          R"(|rank \d+ version 2 committed after .*|rank \d+ .+ image \d+ store \d+ extents \d+)");

  const std::vector<std::string> lines = Lines(run.out);
  uint64_t failed_writes = 0;
  for (const auto& [rank, match] : LineOfEachRank(lines, std::regex(failed), kNodes, "failed")) {
    if (rank == kA || rank == kB) failed_writes += std::stoull(match[2]);
  }
  EXPECT_GT(failed_writes, 0u) << "no WRITE between ranks " << kA << " and " << kB << " failed";
  LineOfEachRank(lines, std::regex(intact), kNodes, "intact");

  const StoreReports reports = ParseStoreReports(run.out);
  const StoreReport first = WorldSum(reports, "version 1", kNodes);
  EXPECT_EQ(first.store, first.extents);
  const StoreReport aborted = WorldSum(reports, "aborted version 2", kNodes);
  EXPECT_GT(aborted.store, first.store + aborted.extents / 2)
      << "the new stores and the committed version's are registered together";
  const StoreReport second = WorldSum(reports, "version 2", kNodes);
  EXPECT_EQ(second.store, second.extents) << "once version 2 committed, the old stores went";
}

}  // namespace
}  // namespace ft::verbs
