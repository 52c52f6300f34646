// A hung process over rdma (SIGSTOP): the heartbeat alone finds it, every survivor refuses its
// next checkpoint naming it and reads its committed version back exactly, and the process,
// woken, is a zombie of epoch 1 whose next call ends Aborted saying it was removed. An ordinary
// node and the coordinator. rdma_node --scenario hang (test/rdma_node_hang.cc) is each process.
//
// The jobs run with a 100 ms heartbeat and 10 misses (rdma_test::HeartbeatEnvironment: the VM
// emulates its CPUs), so every survivor must know within about a second of the stop; the bound
// checked here is generous for the emulated machine.
//
// Needs an RDMA device (the soft-RoCE VM: ../shared/rxe-vm/rxe-vm -- ctest --test-dir
// build/release -L rdma -R RdmaHang); skips without one.
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
using rdma_process::ExpectEnginesDestroyedQuickly;
using rdma_process::ExplainFailures;
using rdma_process::NodeFlags;
using rdma_process::Ranks;
using rdma_process::RunJob;
using rdma_process::RunResult;

constexpr int kNodes = 5;
// A survivor must know of the stopped process within this many seconds: the 1 s bound, the
// stop itself and the emulated machine's scheduling.
constexpr double kDetectSeconds = 8;

class RdmaHangTest : public ::testing::TestWithParam<int> {};

TEST_P(RdmaHangTest, HungProcessIsFoundByTheHeartbeatAndWakesRemoved) {
  SKIP_WITHOUT_DEVICE();
  const int victim = GetParam();
  ScratchDir dir("rdma_hang_process_test");
  ASSERT_FALSE(dir.path().empty());
  std::vector<std::string> flags = NodeFlags("hang", 2, 2, 4096, "30000,777", 2, dir.path());
  flags.insert(flags.end(), {"--victim", std::to_string(victim), "--give-up-seconds", "20"});
  const RunResult run = RunJob(kNodes, {}, flags);
  std::cout << run.out << std::flush;  // the detection times
  const ExplainFailures explain(run);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);

  std::vector<std::string> lines = Lines(run.out);
  ExpectEnginesDestroyedQuickly(&lines, Ranks(kNodes));
  const std::regex found(
      R"(rank (\d+) found hung node (\d+) after ([0-9.]+) s; committed version (\d+) intact )"
      R"(\(Unavailable: .*no heartbeat.*recovery is needed.*\))");
  const std::regex woke(
      R"(rank (\d+) woke removed: Aborted: node (\d+) was removed from the job in epoch 1: .*)");
  std::map<int, double> detected;
  int woken = 0;
  for (const std::string& line : lines) {
    std::smatch match;
    if (std::regex_match(line, match, found)) {
      EXPECT_EQ(std::stoi(match[2]), victim) << line;
      EXPECT_GE(std::stoi(match[4]), 2) << line;
      EXPECT_TRUE(detected.emplace(std::stoi(match[1]), std::stod(match[3])).second) << line;
    } else if (std::regex_match(line, match, woke)) {
      EXPECT_EQ(std::stoi(match[1]), victim) << line;
      EXPECT_EQ(std::stoi(match[2]), victim) << line;
      ++woken;
    } else {
      ADD_FAILURE() << "unexpected line: " << line;
    }
  }
  EXPECT_EQ(woken, 1) << "the victim did not say it woke removed";
  for (int rank : Ranks(kNodes, victim)) {
    ASSERT_TRUE(detected.contains(rank)) << "rank " << rank << " did not find the hung node";
    EXPECT_LT(detected[rank], kDetectSeconds) << "rank " << rank;
  }
}

INSTANTIATE_TEST_SUITE_P(Victims, RdmaHangTest, ::testing::Values(3, 0),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return param_info.param == 0 ? std::string("Coordinator")
                                                        : std::string("Node");
                         });

}  // namespace
}  // namespace ft::verbs
