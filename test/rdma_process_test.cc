// Multi-process engine jobs over rdma (ctest label `rdma`): ftrun (FTRUN_PATH) launches 2 to 8
// processes of rdma_node (RDMA_NODE_PATH), one engine each, created from the environment.
//   - checkpoint and verify over several k/m, region layouts and image sizes;
//   - a process SIGKILLed while idle, while being written to, the coordinator, and by ftrun
//     --kill: every survivor's checkpoint fails quickly with an error naming the lost node, and
//     its committed version reads back intact;
//   - bad bootstrap input, rdma_node and ftbench run directly: a quick non-zero exit naming the
//     variable (or FT_COORDINATOR and the timeout when nobody answers there).
// Cases that need an RDMA device skip without one (run them in the soft-RoCE VM:
// ../shared/rxe-vm/rxe-vm -- ctest --test-dir build/release -L rdma -R RdmaProcess); the
// bootstrap errors the engine finds before touching a device run anywhere. The jobs of uneven
// images are in rdma_uneven_test.cc, those with injected faults in rdma_fault_process_test.cc;
// how a job is run and bounded, in rdma_process_util.h.
#include <signal.h>

#include <algorithm>
#include <cstdlib>
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

using ft::test::Contains;
using ft::test::Lines;
using ft::test::ScratchDir;
using rdma_process::ExpectEnginesDestroyedQuickly;
using rdma_process::ExpectEveryRankVerified;
using rdma_process::ExplainFailures;
using rdma_process::Joined;
using rdma_process::NodeFlags;
using rdma_process::Ranks;
using rdma_process::RunJob;
using rdma_process::RunLogged;
using rdma_process::RunResult;

// A survivor's failing checkpoint must end this soon after it started (rxe's RC retry gives a
// dead peer about 0.5 s; a DISCONNECTED event is usually faster).
constexpr double kDetectSeconds = 8;
// A job with a SIGKILLed process must end this soon (plus ftrun's --after for an external kill):
// startup, the first versions, detection, read-back; below startup + the engine timeout
// (kEngineTimeoutMs), so that a process waiting out the engine timeout anywhere fails the case.
constexpr double kSurviveJobSeconds = 20;
// A program refusing its bootstrap environment must exit this soon (no timeout involved).
constexpr double kQuickSeconds = 5;

// ---------------------------------------------------------------------------------------------
// Checkpoint and verify

struct VerifyCase {
  const char* name;
  int n;
  int k;
  int m;
  int cell_bytes;
  const char* regions;  // comma list of region sizes
  int versions;
};

void PrintTo(const VerifyCase& c, std::ostream* out) {
  *out << c.name << " (n " << c.n << ", k " << c.k << ", m " << c.m << ", cell " << c.cell_bytes
       << ", regions " << c.regions << ", versions " << c.versions << ")";
}

class RdmaProcessVerifyTest : public ::testing::TestWithParam<VerifyCase> {};

TEST_P(RdmaProcessVerifyTest, EveryRankReadsBackItsLastVersion) {
  SKIP_WITHOUT_DEVICE();
  const VerifyCase& c = GetParam();
  ScratchDir dir("rdma_process_test");
  ASSERT_FALSE(dir.path().empty());
  const RunResult run = RunJob(
      c.n, {}, NodeFlags("verify", c.k, c.m, c.cell_bytes, c.regions, c.versions, dir.path()));
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  ExpectEveryRankVerified(run, c.n, c.versions);
}

// k + m < n: the smallest world is 3 (k = m = 1); n = 2 admits no k, m >= 1.
INSTANTIATE_TEST_SUITE_P(Layouts, RdmaProcessVerifyTest,
                         ::testing::Values(
                             // A 1-byte image: one stripe of one short cell.
                             VerifyCase{"n3_k1_m1_1B", 3, 1, 1, 4096, "1", 2},
                             // Two stripes of one cell each, the second short; two parities.
                             VerifyCase{"n4_k1_m2_5000B", 4, 1, 2, 4096, "5000", 3},
                             // Three regions of odd sizes, each straddling cells (and stripes).
                             VerifyCase{"n4_k2_m1_3regions", 4, 2, 1, 4096, "4097,12289,777", 2},
                             // Two parities; a region of 3 bytes after one of 64 KiB + 1.
                             VerifyCase{"n6_k3_m2_2regions", 6, 3, 2, 8192, "65537,3", 2},
                             // The widest stripes the world allows with m = 3, several stripes.
                             VerifyCase{"n8_k4_m3_40KiB", 8, 4, 3, 4096, "40960", 2},
                             // About 200 KiB in four regions (one of 1 byte), a short last stripe.
                             VerifyCase{"n8_k5_m2_200KiB", 8, 5, 2, 16384, "100000,1,70001,34802",
                                        2}),
                         [](const ::testing::TestParamInfo<VerifyCase>& param) {
                           return std::string(param.param.name);
                         });

// ---------------------------------------------------------------------------------------------
// Processes that start at different times

// A job's processes rarely start together (here: a rank 5 s late, longer than any RNR retry
// budget: 7 x 491.52 ms at most). The first checkpoint of the ranks that were early must not fail
// for it. No --start-barrier: each rank checkpoints as soon as its engine exists.
TEST(RdmaProcessStartTest, FirstCheckpointOfEarlyRanksSurvivesALateRank) {
  SKIP_WITHOUT_DEVICE();
  ScratchDir dir("rdma_process_test");
  ASSERT_FALSE(dir.path().empty());
  std::vector<std::string> flags = NodeFlags("verify", 2, 1, 4096, "20000", 2, dir.path());
  flags.pop_back();  // --start-barrier
  flags.insert(flags.end(), {"--delay-create-rank", "3", "--delay-create-ms", "5000"});
  const RunResult run = RunJob(4, {}, flags);
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  ExpectEveryRankVerified(run, 4, 2);
}

// ---------------------------------------------------------------------------------------------
// A process SIGKILLed

struct SurviveCase {
  const char* name;
  int n;
  int k;
  int m;
  int victim;
  const char* dies_at;          // idle, writing, external (ftrun --kill)
  const char* kill_after = "";  // external: ftrun --after SECONDS
  int kill_delay_us = 0;        // writing: from CheckpointAsync() to raise(SIGKILL)
  int versions = 2;             // committed before the victim dies
};

void PrintTo(const SurviveCase& c, std::ostream* out) {
  *out << c.name << " (n " << c.n << ", k " << c.k << ", m " << c.m << ", victim " << c.victim
       << " dies at " << c.dies_at << (*c.kill_after != '\0' ? " after " : "") << c.kill_after;
  if (c.kill_delay_us > 0) *out << " +" << c.kill_delay_us << " us";
  *out << ", after " << c.versions << " versions)";
}

constexpr int kSurviveCell = 4096;
constexpr const char* kSurviveRegions = "20000,333";

// Runs the job of case `c` and checks it (the failures are the test's).
void CheckSurvive(const SurviveCase& c) {
  ScratchDir dir("rdma_process_test");
  ASSERT_FALSE(dir.path().empty());
  std::vector<std::string> ftrun_flags;
  const bool external = std::string(c.dies_at) == "external";
  if (external) ftrun_flags = {"--kill", std::to_string(c.victim), "--after", c.kill_after};
  std::vector<std::string> node_flags =
      NodeFlags("survive", c.k, c.m, kSurviveCell, kSurviveRegions, c.versions, dir.path());
  node_flags.insert(node_flags.end(),
                    {"--victim", std::to_string(c.victim), "--victim-dies-at", c.dies_at});
  if (c.kill_delay_us > 0) {
    node_flags.insert(node_flags.end(), {"--kill-delay-us", std::to_string(c.kill_delay_us)});
  }
  if (external) {
    // The survivors checkpoint until ftrun's kill: no bound on the count, only on the time.
    node_flags.insert(node_flags.end(), {"--max-attempts", "0"});
  }
  const RunResult run = RunJob(c.n, ftrun_flags, node_flags);
  std::cout << run.out << std::flush;  // the survivors' lines: detection times, versions
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_LT(run.seconds, kSurviveJobSeconds + (external ? std::stod(c.kill_after) : 0));
  if (external) {
    // ftrun does not count the rank it killed itself: the survivors decide.
    EXPECT_EQ(run.status, 0) << "every survivor exits 0; ftrun --kill's victim does not count";
    EXPECT_PRED2(Contains, run.err,
                 "ftrun: rank " + std::to_string(c.victim) + " was killed by --kill (SIGKILL)");
  } else {
    EXPECT_EQ(run.status, 128 + SIGKILL) << "the victim's death is the job's first failure";
    EXPECT_PRED2(Contains, run.err,
                 "ftrun: rank " + std::to_string(c.victim) + " killed by signal 9 (SIGKILL)");
  }

  const std::regex line_format(
      R"(rank (\d+) lost node (\d+) after ([0-9.]+) s; committed version (\d+) intact \((.*)\))");
  std::vector<std::string> lines = Lines(run.out);
  ExpectEnginesDestroyedQuickly(&lines, Ranks(c.n, c.victim));
  std::map<int, double> detect_seconds;
  for (const std::string& line : lines) {
    std::smatch match;
    if (!std::regex_match(line, match, line_format)) {
      ADD_FAILURE() << "unexpected line: " << line;
      continue;
    }
    const int rank = std::stoi(match[1]);
    EXPECT_NE(rank, c.victim) << line;
    EXPECT_EQ(std::stoi(match[2]), c.victim) << line;
    EXPECT_GE(std::stoull(match[4]), static_cast<uint64_t>(c.versions)) << line;
    EXPECT_TRUE(detect_seconds.emplace(rank, std::stod(match[3])).second) << "twice: " << line;
  }
  for (int rank = 0; rank < c.n; ++rank) {
    if (rank == c.victim) continue;
    if (!detect_seconds.contains(rank)) {
      ADD_FAILURE() << "no line from survivor " << rank;
      continue;
    }
    EXPECT_LT(detect_seconds[rank], kDetectSeconds)
        << "survivor " << rank << "'s failing checkpoint took too long";
  }
}

class RdmaProcessSurviveTest : public ::testing::TestWithParam<SurviveCase> {};

TEST_P(RdmaProcessSurviveTest, SurvivorsFailQuicklyNamingTheLostNodeAndKeepTheirData) {
  SKIP_WITHOUT_DEVICE();
  CheckSurvive(GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Kills, RdmaProcessSurviveTest,
    ::testing::Values(
        // n = 4, k + m = 3: every other process holds fragments of each.
        SurviveCase{"holder_idle", 4, 2, 1, 2, "idle"},
        // Right after its CheckpointAsync (the others get an ABORT, or their WRITEs fail), and
        // 20 ms later (in the VM, mid-round: a survivor's WRITE to it fails Flushed).
        SurviveCase{"holder_writing", 4, 2, 1, 3, "writing"},
        SurviveCase{"holder_writing_20ms", 4, 2, 1, 3, "writing", "", 20'000},
        SurviveCase{"coordinator_idle", 4, 2, 1, 0, "idle"},
        SurviveCase{"coordinator_writing", 4, 2, 1, 0, "writing"},
        // n = 5, k + m = 4 and m = 2: one more column treated as lost at read-back. Every rank
        // checkpoints continuously until ftrun's SIGKILL lands, most likely mid-checkpoint. The
        // kill comes 20 s in: under TCG with a loaded host the ranks took up to 8 s to start, and
        // a kill at 8 s once landed before rank 1 had connected (a start-up failure, not this
        // test's).
        SurviveCase{"external_sigkill", 5, 2, 2, 1, "external", "20"}),
    [](const ::testing::TestParamInfo<SurviveCase>& param) {
      return std::string(param.param.name);
    });

// The victim dies in the very first checkpoint, a few ms after its CheckpointAsync(): the others
// are then waiting for the GO, or connecting to their partners (it among them), or writing.
// Which one depends on the moment, so several moments are tried (in the VM, with 4 ranks, GO
// arrives after a few ms and the connects take tens of ms). Nothing is committed: ReadCommitted
// must say NotFound. The first failing moment ends the test.
TEST(RdmaProcessFirstCheckpointTest, VictimDyingInTheFirstCheckpoint) {
  SKIP_WITHOUT_DEVICE();
  for (const int delay_us : {2'000, 10'000, 40'000, 150'000}) {
    SCOPED_TRACE("victim killed " + std::to_string(delay_us) + " us after its CheckpointAsync()");
    CheckSurvive(SurviveCase{"first_checkpoint", 4, 2, 1, 2, "writing", "", delay_us, 0});
    if (::testing::Test::HasFailure()) break;
  }
}

// ---------------------------------------------------------------------------------------------
// Bad bootstrap input: the programs run directly, without ftrun

struct BadEnvironment {
  std::vector<std::string> environment;
  std::string named;  // the message must contain this
};

const std::vector<BadEnvironment>& BadEnvironments() {
  static const std::vector<BadEnvironment> cases = {
      {{"FT_RANK=0", "FT_COORDINATOR=127.0.0.1:7471"}, "FT_WORLD_SIZE is not set"},
      {{"FT_WORLD_SIZE=3", "FT_COORDINATOR=127.0.0.1:7471"}, "FT_RANK is not set"},
      {{"FT_RANK=x", "FT_WORLD_SIZE=3", "FT_COORDINATOR=127.0.0.1:7471"}, "FT_RANK=\"x\""},
      {{"FT_RANK=3", "FT_WORLD_SIZE=3", "FT_COORDINATOR=127.0.0.1:7471"}, "FT_RANK=3"},
      {{"FT_RANK=0", "FT_WORLD_SIZE=1", "FT_COORDINATOR=127.0.0.1:7471"}, "FT_WORLD_SIZE=1"},
      {{"FT_RANK=1", "FT_WORLD_SIZE=3"}, "FT_COORDINATOR is not set"},
      {{"FT_RANK=1", "FT_WORLD_SIZE=3", "FT_COORDINATOR=bad"}, "FT_COORDINATOR=\"bad\""},
      {{"FT_RANK=1", "FT_WORLD_SIZE=3", "FT_COORDINATOR=127.0.0.1:0"}, "FT_COORDINATOR="},
      {{"FT_RANK=1", "FT_WORLD_SIZE=3", "FT_COORDINATOR=127.0.0.1:7471", "FT_COORDINATOR_RANK=1"},
       "FT_COORDINATOR_RANK=1"},
  };
  return cases;
}

TEST(RdmaProcessBootstrapTest, RdmaNodeRefusesBadEnvironmentNamingTheVariable) {
  for (const BadEnvironment& c : BadEnvironments()) {
    SCOPED_TRACE(Joined(c.environment));
    const RunResult run = RunLogged(
        {RDMA_NODE_PATH, "--scenario", "verify", "--k", "1", "--m", "1", "--timeout-ms", "2000"},
        c.environment, 30);
    const ExplainFailures explain(run);
    ASSERT_FALSE(run.timed_out);
    EXPECT_EQ(run.status, 2) << "InvalidArgument from CreateFromEnvironment\n";
    EXPECT_PRED2(Contains, run.err, c.named);
    EXPECT_LT(run.seconds, kQuickSeconds);
    EXPECT_EQ(run.out, "");
  }
}

TEST(RdmaProcessBootstrapTest, FtbenchCheckpointRdmaRefusesBadEnvironmentWithStatus2) {
  for (const BadEnvironment& c : BadEnvironments()) {
    SCOPED_TRACE(Joined(c.environment));
    const RunResult run =
        RunLogged({FTBENCH_PATH, "checkpoint", "--fabric", "rdma", "--size", "64KiB",
                   "--cell-bytes", "4KiB", "-k", "1", "-m", "1", "--timeout", "2"},
                  c.environment, 30);
    const ExplainFailures explain(run);
    ASSERT_FALSE(run.timed_out);
    EXPECT_EQ(run.status, 2);
    EXPECT_PRED2(Contains, run.err, "ftbench checkpoint: ");
    EXPECT_PRED2(Contains, run.err, c.named);
    EXPECT_LT(run.seconds, kQuickSeconds);
  }
}

// A port of the device's address where nobody listens (this process's own block of ports).
std::string NobodyListens() {
  return rdma_test::TestAddress() + ":" + std::to_string(rdma_test::BasePort(1, 7));
}

TEST(RdmaProcessBootstrapTest, UnreachableCoordinatorFailsWithinTheTimeoutNamingIt) {
  SKIP_WITHOUT_DEVICE();
  const std::string coordinator = NobodyListens();
  const RunResult run = RunLogged(
      {RDMA_NODE_PATH, "--scenario", "verify", "--k", "1", "--m", "1", "--timeout-ms", "2000"},
      {"FT_RANK=1", "FT_WORLD_SIZE=3", "FT_COORDINATOR=" + coordinator}, 30);
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 1);
  EXPECT_PRED2(Contains, run.err, "FT_COORDINATOR=" + coordinator);
  EXPECT_PRED2(Contains, run.err, "2000 ms");
  EXPECT_LT(run.seconds, 2 + kQuickSeconds);
}

TEST(RdmaProcessBootstrapTest, FtbenchUnreachableCoordinatorFailsWithinTheTimeout) {
  SKIP_WITHOUT_DEVICE();
  const std::string coordinator = NobodyListens();
  const RunResult run =
      RunLogged({FTBENCH_PATH, "checkpoint", "--fabric", "rdma", "--size", "64KiB", "--cell-bytes",
                 "4KiB", "-k", "1", "-m", "1", "--timeout", "2"},
                {"FT_RANK=1", "FT_WORLD_SIZE=3", "FT_COORDINATOR=" + coordinator}, 30);
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 1);
  EXPECT_PRED2(Contains, run.err, "FT_COORDINATOR=" + coordinator);
  EXPECT_LT(run.seconds, 2 + kQuickSeconds);
}

// The coordinator (rank 0) must listen at FT_COORDINATOR: an address that is not this machine's
// cannot be bound, and the error says where it tried.
TEST(RdmaProcessBootstrapTest, CoordinatorAddressNotOnThisMachineIsRefused) {
  SKIP_WITHOUT_DEVICE();
  const RunResult run = RunLogged(
      {RDMA_NODE_PATH, "--scenario", "verify", "--k", "1", "--m", "1", "--timeout-ms", "2000"},
      {"FT_RANK=0", "FT_WORLD_SIZE=3", "FT_COORDINATOR=192.0.2.1:7471"}, 30);
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_NE(run.status, 0);
  EXPECT_PRED2(Contains, run.err, "192.0.2.1:7471");
  EXPECT_LT(run.seconds, 2 + kQuickSeconds);
}

}  // namespace
}  // namespace ft::verbs
