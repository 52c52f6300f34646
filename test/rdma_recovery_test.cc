// Node-loss recovery over real verbs: the README's example application (examples/cpp/
// resilient_loop.cc) under ftrun, with a rank SIGKILLed or SIGSTOPped mid-run and a new process
// started in its place (--respawn). Every rank must end with the state of a failure-free run.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test/rdma_process_util.h"

namespace ft::verbs::rdma_process {
namespace {

RunResult RunLoop(int ranks, const std::vector<std::string>& ftrun_flags) {
  std::vector<std::string> args = {
      FTRUN_PATH, "-n", std::to_string(ranks), "--timeout", "120", "--grace", "2", "--respawn"};
  args.insert(args.end(), ftrun_flags.begin(), ftrun_flags.end());
  // 60 ms a step: the loop runs ~10 s, past the kill, after a start-up of a few seconds in the
  // VM's emulated CPUs.
  args.insert(args.end(), {"--", EXAMPLE_RESILIENT_LOOP_PATH, "--rdma", "60"});
  std::vector<std::string> env = rdma_test::JobEnvironment();
  env.push_back("FT_LOG=info");
  return RunLogged(args, env, 150);
}

void ExpectEveryRankMatches(const RunResult& run, int ranks, int recoveries) {
  ExplainFailures explain(run);
  EXPECT_EQ(run.status, 0);
  for (int rank = 0; rank < ranks; ++rank) {
    EXPECT_NE(run.out.find(StrCat("rank ", rank, ": final state matches a failure-free run after ",
                                  recoveries, " recovery")),
              std::string::npos)
        << "rank " << rank;
  }
}

TEST(RdmaRecoveryTest, AKilledRankIsReplacedAndTheLoopEndsAsIfNothingHappened) {
  SKIP_WITHOUT_DEVICE();
  // In the middle of the loop: a second after version 3 committed, however long the start-up took
  // (seconds in the VM's emulated CPUs, more on a busy host).
  const RunResult run = RunLoop(
      8, {"--respawn", "--kill", "3", "--after", "1", "--after-output", "committed version 3"});
  ExpectEveryRankMatches(run, 8, 1);
  EXPECT_NE(run.err.find("rank 3 (a new process): recovered version"), std::string::npos);
  EXPECT_EQ(run.err.find("recovered version 0,"), std::string::npos) << "rebuilt nothing";
}

// The issue's own command: an idle spare, started with the job, takes the place of rank 3 when it
// is killed (the second one is not needed; ftrun stops it at the end).
TEST(RdmaRecoveryTest, AnIdleSpareTakesTheKilledRank) {
  SKIP_WITHOUT_DEVICE();
  const RunResult run = RunLoop(
      8, {"--spares", "2", "--kill", "3", "--after", "1", "--after-output", "committed version 3"});
  ExpectEveryRankMatches(run, 8, 1);
  EXPECT_NE(run.err.find("rank 3 (a new process): recovered version"), std::string::npos);
  EXPECT_EQ(run.err.find("recovered version 0,"), std::string::npos) << "rebuilt nothing";
}

// Killed at launch, before it connected: the new process is simply rank 2's, nothing is
// recovered, and the job runs as if the first process had never existed.
TEST(RdmaRecoveryTest, ARankThatDiesAtStartUpIsReplacedByItsNewProcess) {
  SKIP_WITHOUT_DEVICE();
  const RunResult run = RunLoop(4, {"--respawn", "--kill", "2", "--after", "0"});
  ExpectEveryRankMatches(run, 4, 0);
}

// RS(2,1) over 4 ranks: every owner's 3 fragments are on the 3 others, so two lost ranks take
// 2 of every surviving owner's 3. Every survivor must hear DataLoss naming the owners, quickly,
// and no rank may hang. The loss comes after version 3 committed: a loss before the first commit
// is no data loss (everyone starts over), which a start-up slower than a fixed delay once gave.
TEST(RdmaRecoveryTest, TwoLossesWithOneParityAreDataLossOnEverySurvivor) {
  SKIP_WITHOUT_DEVICE();
  const RunResult run = RunLoop(
      4, {"--respawn", "--kill", "1,2", "--after", "1", "--after-output", "committed version 3"});
  ExplainFailures explain(run);
  EXPECT_NE(run.status, 0);
  EXPECT_FALSE(run.timed_out);
  for (int rank : {0, 3}) {
    EXPECT_NE(
        run.err.find("rank " + std::to_string(rank) + ": DataLoss: recovery failed: images lost"),
        std::string::npos)
        << "rank " << rank;
  }
}

}  // namespace
}  // namespace ft::verbs::rdma_process
