// Shared by the multi-process rdma tests (rdma_process_test.cc, rdma_uneven_test.cc,
// rdma_fault_process_test.cc): running a job of rdma_node under ftrun, bounded, and checking
// what its ranks printed (test/rdma_node.cc describes the lines).
//
// Every run is bounded: ftrun's own --timeout, and behind it the test's deadline, which
// SIGKILLs ftrun's process group (the nodes die with their parent: PR_SET_PDEATHSIG) and fails.
// Each failure message carries the run's command, status, duration and whole output.
#ifndef FT_TEST_RDMA_PROCESS_UTIL_H_
#define FT_TEST_RDMA_PROCESS_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test/rdma_test_util.h"
#include "test/run_program.h"

namespace ft::verbs::rdma_process {

#define SKIP_WITHOUT_DEVICE()                                                \
  do {                                                                       \
    if (const std::string reason = rdma_test::SkipReason(); !reason.empty()) \
      GTEST_SKIP() << reason;                                                \
  } while (0)

// Engine timeout of the jobs: far above what any case needs, so that a case that fails by
// reaching it shows up as slow, not as a pass.
constexpr int kEngineTimeoutMs = 20'000;
// Bound on one ftrun job (its --timeout); the test's own deadline is a little later.
constexpr double kJobSeconds = 90;
// Destroying an engine, whatever happened to the job, must take no longer than this (an engine
// that waits out kEngineTimeoutMs somewhere keeps its process, and the job, alive that long).
constexpr double kDestroySeconds = 5;

// A run (test/run_program.h) and the command that made it, for the failure messages.
struct RunResult : ft::test::ProgramResult {
  std::string command;
};

std::string Describe(const RunResult& run);

// Once per run: when the checks on a run failed, its command and whole output follow them.
class ExplainFailures {
 public:
  explicit ExplainFailures(const RunResult& run) : run_(run), before_(Parts()) {}
  ~ExplainFailures() {
    if (Parts() > before_)
      ADD_FAILURE() << "the run behind the failures above:\n" << Describe(run_);
  }
  ExplainFailures(const ExplainFailures&) = delete;
  ExplainFailures& operator=(const ExplainFailures&) = delete;

 private:
  static int Parts() {
    return ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
  }
  const RunResult& run_;
  const int before_;
};

std::string Joined(const std::vector<std::string>& words);

// Runs `args` (test/run_program.h) with the test's environment less the launcher variables
// (FT_*, RXE_VM_IP, Slurm's, PMI's, Open MPI's), plus `set_environment`, collecting stdout and
// stderr. Past `deadline_seconds` the test SIGKILLs the program's process group and marks the run
// timed out. Each run is logged as a "[ run      ]" line.
RunResult RunLogged(std::vector<std::string> args, const std::vector<std::string>& set_environment,
                    double deadline_seconds);

// ftrun -n N [ftrun_flags] -- rdma_node node_flags, bounded by kJobSeconds. ftrun names
// FT_COORDINATOR at $RXE_VM_IP, which must be the RDMA device's address (rxe-vm sets it;
// elsewhere FT_TEST_RDMA_ADDRESS gives it).
RunResult RunJob(int n, const std::vector<std::string>& ftrun_flags,
                 const std::vector<std::string>& node_flags);

// rdma_node's flags for a job: the layout, the engine timeout, and the start barrier.
//
// --start-barrier: no rank takes its first checkpoint before every rank's engine exists, so that
// the cases time what they test, not the start-up. A rank whose engine is up may send its first
// PREPARE while the coordinator still waits in Engine::Create for slower ranks; the
// coordinator's control receives went up with its QPs, so that SEND must land however late the
// others are. RdmaProcessStartTest covers that on its own, without the barrier.
std::vector<std::string> NodeFlags(const std::string& scenario, int k, int m, int cell_bytes,
                                   const std::string& regions, int versions,
                                   const std::string& sync_dir);

// Each of `ranks` printed "rank R destroyed its engine in S s" once, with S < kDestroySeconds;
// those lines are taken out of `lines`.
void ExpectEnginesDestroyedQuickly(std::vector<std::string>* lines, const std::vector<int>& ranks);

// 0 .. n-1 without `except`.
std::vector<int> Ranks(int n, int except = -1);

// Every rank printed "rank R verified version V" once, destroyed its engine quickly, and
// printed nothing else but the lines `other` matches (an ECMAScript regex).
void ExpectEveryRankVerified(const RunResult& run, int n, int versions,
                             const std::string& other = "");

// The store reports of a run ("rank R <when> image I store S extents E", rdma_node
// --report-stores), by <when> and rank.
struct StoreReport {
  uint64_t image = 0;
  uint64_t store = 0;    // Metrics().store_bytes
  uint64_t extents = 0;  // Engine::StoreBytesFor(image)
};
using StoreReports = std::map<std::string, std::map<int, StoreReport>>;
StoreReports ParseStoreReports(const std::string& out);
// The world's sums of one <when>: a failure when not every one of n ranks reported it once.
StoreReport WorldSum(const StoreReports& reports, const std::string& when, int n);

}  // namespace ft::verbs::rdma_process

#endif  // FT_TEST_RDMA_PROCESS_UTIL_H_
