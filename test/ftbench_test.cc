// ftbench run as a program (FTBENCH_PATH): the refusals that need no RDMA device. write-bw's
// bad flags and worlds of other than two ranks exit 2 with a message, before any fabric exists.
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "test/run_program.h"

namespace {

using ft::test::ProgramResult;
using ft::test::RunProgram;

constexpr auto kDeadline = std::chrono::seconds(30);
constexpr const char* kTwoRanks = "write-bw needs exactly 2 ranks (ftrun -n 2)";

ProgramResult WriteBw(const std::vector<std::string>& flags,
                      const std::vector<std::string>& environment = {}) {
  std::vector<std::string> args = {FTBENCH_PATH, "write-bw"};
  args.insert(args.end(), flags.begin(), flags.end());
  return RunProgram(args, environment, kDeadline);
}

// A world of two whose coordinator nobody could reach: only flag checks may end the run in time.
const std::vector<std::string> kTwoRankWorld = {"FT_RANK=0", "FT_WORLD_SIZE=2",
                                                "FT_COORDINATOR=127.0.0.1:1"};

TEST(FtbenchWriteBwTest, HelpNamesTheFlags) {
  const ProgramResult run = WriteBw({"--help"});
  ASSERT_TRUE(run.started);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  for (const char* flag :
       {"--size", "--duration", "--pipeline-depth", "--device", "--gid-index", "--json"}) {
    EXPECT_NE(run.out.find(flag), std::string::npos) << flag << " missing from:\n" << run.out;
  }
}

TEST(FtbenchWriteBwTest, BadFlagsExit2) {
  const std::vector<std::vector<std::string>> cases = {
      {"--size", "0"},
      {"--size", "1x"},
      {"--duration", "0"},
      {"--duration", "-1"},
      {"--duration", "abc"},
      {"--duration", "inf"},
      {"--duration", "nan"},
      {"--pipeline-depth", "0"},
      {"--pipeline-depth", "1025"},
      {"--pipeline-depth", "x"},
      {"--gid-index", "-1"},
      {"--gid-index", "x"},
      {"--device"},
      {"--bogus"},
      {"--size"},
  };
  for (const auto& flags : cases) {
    std::string shown;
    for (const std::string& flag : flags) shown += flag + " ";
    const ProgramResult run = WriteBw(flags, kTwoRankWorld);
    ASSERT_TRUE(run.started);
    ASSERT_FALSE(run.timed_out) << shown;
    EXPECT_EQ(run.status, 2) << shown << "\nstderr: " << run.err;
    EXPECT_FALSE(run.err.empty()) << shown;
    EXPECT_TRUE(run.out.empty()) << shown << "\nstdout: " << run.out;
  }
}

TEST(FtbenchWriteBwTest, FlagErrorsNameTheFlag) {
  const ProgramResult duration = WriteBw({"--duration", "0"}, kTwoRankWorld);
  EXPECT_NE(duration.err.find("--duration"), std::string::npos) << duration.err;
  const ProgramResult depth = WriteBw({"--pipeline-depth", "0"}, kTwoRankWorld);
  EXPECT_NE(depth.err.find("--pipeline-depth"), std::string::npos) << depth.err;
}

TEST(FtbenchWriteBwTest, WorldOfOtherThanTwoRanksExits2) {
  for (const char* size : {"1", "3", "4"}) {
    const ProgramResult run =
        WriteBw({"--duration", "1"},
                {"FT_RANK=0", std::string("FT_WORLD_SIZE=") + size, "FT_COORDINATOR=127.0.0.1:1"});
    ASSERT_FALSE(run.timed_out);
    EXPECT_EQ(run.status, 2) << "world of " << size << ": " << run.err;
    EXPECT_NE(run.err.find(kTwoRanks), std::string::npos) << run.err;
  }
}

TEST(FtbenchWriteBwTest, NoLauncherExits2) {
  const ProgramResult run = WriteBw({"--duration", "1"});
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find(kTwoRanks), std::string::npos) << run.err;
}

TEST(FtbenchWriteBwTest, SpareExits2) {
  const ProgramResult run =
      WriteBw({}, {"FT_RANK=2", "FT_WORLD_SIZE=2", "FT_SPARE=1", "FT_COORDINATOR=127.0.0.1:1"});
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_NE(run.err.find(kTwoRanks), std::string::npos) << run.err;
}

// The device flags belong to the rdma fabric: on loopback they are refused, not ignored.
TEST(FtbenchCheckpointTest, DeviceFlagsNeedTheRdmaFabric) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--device", "rxe0"}, {"--gid-index", "1"}}) {
    std::vector<std::string> args = {FTBENCH_PATH, "checkpoint", "--nodes", "4",      "-k",
                                     "2",          "-m",         "1",       "--size", "64KiB"};
    args.insert(args.end(), flags.begin(), flags.end());
    const ProgramResult run = RunProgram(args, {}, kDeadline);
    ASSERT_TRUE(run.started);
    ASSERT_FALSE(run.timed_out) << flags[0];
    EXPECT_EQ(run.status, 2) << flags[0] << "\nstderr: " << run.err;
    EXPECT_NE(run.err.find("--fabric rdma"), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
}

}  // namespace

// Runs that cannot work well are refused at once (exit 2) with what they would need: cells of a
// few bytes (ran for minutes at 9 GB), and a run whose memory exceeds the machine's (1 GiB cells
// were killed by the kernel at 24 GB with no message).
TEST(FtbenchCheckpointTest, RunsThatCannotWorkAreRefusedSayingWhy) {
  const struct {
    std::vector<std::string> flags;
    const char* says;
  } cases[] = {
      {{"--cell-bytes", "3"}, "--cell-bytes 3: cells under 512 B"},
      {{"--cell-bytes", "1GiB", "--size", "16MiB"}, "of memory in this process (8 nodes x"},
      {{"--nodes", "64", "--size", "1GiB"}, "this machine has"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {FTBENCH_PATH, "checkpoint"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const ProgramResult run = RunProgram(args, {}, kDeadline);
    ASSERT_TRUE(run.started);
    ASSERT_FALSE(run.timed_out) << c.flags[0];
    EXPECT_EQ(run.status, 2) << c.flags[0] << "\nstderr: " << run.err;
    EXPECT_NE(run.err.find(c.says), std::string::npos) << run.err;
  }
}

// Uneven racks need uneven stores: `--domains 3` (and 6, 7) on 8 nodes failed with
// ResourceExhausted while every store had its fair share. Now the coordinator sizes them: each
// run commits, reads back verified, and reports the untimed first checkpoint apart.
TEST(FtbenchCheckpointTest, UnevenDomainsCommitAndVerify) {
  for (const char* domains : {"3", "6", "7"}) {
    const ProgramResult run =
        RunProgram({FTBENCH_PATH, "checkpoint", "--nodes", "8", "--size", "1MiB", "--cell-bytes",
                    "64KiB", "--versions", "2", "--domains", domains, "--json"},
                   {}, kDeadline);
    ASSERT_TRUE(run.started);
    ASSERT_FALSE(run.timed_out) << domains;
    EXPECT_EQ(run.status, 0) << "--domains " << domains << "\nstderr: " << run.err;
    EXPECT_NE(run.out.find("\"verified\":true"), std::string::npos) << run.out;
    EXPECT_NE(run.out.find("\"first_checkpoint_seconds\":"), std::string::npos) << run.out;
  }
}
