// ftbench run as a program (FTBENCH_PATH): the refusals that need no RDMA device (write-bw's bad
// flags and worlds of other than two ranks exit 2 with a message, before any fabric exists), and
// checkpoint's loopback runs, failure injection and recovery among them.
#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

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

// Sizes as a user writes them: binary units (and the bare K, M, G as before), SI's decimal ones,
// fractions; a negative size or an unknown unit is refused naming the flag and why (a negative
// size was once taken as 2^64 - 1 and reported as an overflow).
TEST(FtbenchCheckpointTest, SizesTakeBinaryAndDecimalUnitsAndFractions) {
  const struct {
    const char* size;
    const char* image_bytes;
  } good[] = {{"1.5KiB", "\"image_bytes\":1536"},
              {"2kB", "\"image_bytes\":2000"},
              {"3MB", "\"image_bytes\":3000000"},
              {"64K", "\"image_bytes\":65536"},
              {"0.25 MiB", "\"image_bytes\":262144"}};
  for (const auto& c : good) {
    const ProgramResult run =
        RunProgram({FTBENCH_PATH, "checkpoint", "--nodes", "4", "-k", "2", "-m", "1", "--size",
                    c.size, "--cell-bytes", "4KiB", "--versions", "1", "--json"},
                   {}, kDeadline);
    ASSERT_TRUE(run.started);
    EXPECT_EQ(run.status, 0) << c.size << ": " << run.err;
    EXPECT_NE(run.out.find(c.image_bytes), std::string::npos) << c.size << ": " << run.out;
  }
  const struct {
    const char* size;
    const char* says;
  } bad[] = {{"-1", "--size: -1: a size cannot be negative"},
             {"7x", "--size: 7x: unknown unit \"x\""},
             {"MiB", "--size: MiB: not a size"},
             {"20000000TB", "--size: 20000000TB: too large"}};
  for (const auto& c : bad) {
    const ProgramResult run =
        RunProgram({FTBENCH_PATH, "checkpoint", "--size", c.size}, {}, kDeadline);
    ASSERT_TRUE(run.started);
    EXPECT_EQ(run.status, 2) << c.size << ": " << run.err;
    EXPECT_NE(run.err.find(c.says), std::string::npos) << c.size << ": " << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
  const ProgramResult help = RunProgram({FTBENCH_PATH, "checkpoint", "--help"}, {}, kDeadline);
  EXPECT_NE(help.out.find("--size SIZE=64 MiB"), std::string::npos) << help.out;
}

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

// `ftbench checkpoint --kill/--freeze`: a loss at a chosen point of version F + 1 (F = ceil(V/2)
// = 2 here), recovered onto replacement processes on the loopback fabric, then checkpointed on
// to version V + 1 = 5 and verified. Small images: each run takes a fraction of a second (a
// freeze: the 1 s heartbeat bound more).
namespace {

using nlohmann::json;

const std::vector<std::string> kSmallRun = {"--nodes",      "8",     "--size",     "256KiB",
                                            "--cell-bytes", "16KiB", "--versions", "4"};

ProgramResult Checkpoint(const std::vector<std::string>& flags) {
  std::vector<std::string> args = {FTBENCH_PATH, "checkpoint"};
  args.insert(args.end(), kSmallRun.begin(), kSmallRun.end());
  args.insert(args.end(), flags.begin(), flags.end());
  return RunProgram(args, {}, kDeadline);
}

std::string Shown(const std::vector<std::string>& flags) {
  std::string shown;
  for (const std::string& flag : flags) shown += flag + " ";
  return shown;
}

// Runs with --json, expects exit 0 and one JSON object, and checks what every recovered run
// must say: the victims lost, the version restored, every image verified, figures that are
// measured (not left at zero).
json RecoveredRun(const std::vector<std::string>& flags, const std::vector<uint32_t>& lost,
                  uint64_t restored) {
  std::vector<std::string> with_json = flags;
  with_json.push_back("--json");
  const ProgramResult run = Checkpoint(with_json);
  EXPECT_TRUE(run.started);
  EXPECT_FALSE(run.timed_out) << Shown(flags);
  EXPECT_EQ(run.status, 0) << Shown(flags) << "\nstderr: " << run.err;
  const json out = json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_TRUE(out.is_object()) << Shown(flags) << "\nstdout: " << run.out;
  if (!out.is_object()) return out;
  EXPECT_EQ(out.value("lost", json()), json(lost)) << run.out;
  EXPECT_EQ(out.value("restored_version", json()), json(restored)) << run.out;
  EXPECT_EQ(out.value("verified", false), true) << run.out;
  for (const char* field : {"detect_ms", "recovery_ms", "reprotect_ms", "reduced_redundancy_ms",
                            "rebuild_gbps", "restore_ms"}) {
    EXPECT_GT(out.value(field, -1.0), 0.0) << field << ": " << run.out;
  }
  EXPECT_GE(out.value("reduced_redundancy_ms", 0.0), out.value("detect_ms", 1.0)) << run.out;
  // The fields of a run without a failure are all still there.
  for (const char* field :
       {"checkpoint_seconds_median", "checkpoint_seconds_p99", "first_checkpoint_seconds",
        "aggregate_gbps", "ratio_to_raw", "heartbeat_misses", "longest_heartbeat_gap_ms"}) {
    EXPECT_TRUE(out.contains(field)) << field << ": " << run.out;
  }
  return out;
}

TEST(FtbenchRecoveryTest, AKillBetweenVersionsIsRecoveredAndReported) {
  const json out = RecoveredRun({"--kill", "3"}, {3}, 2);
  EXPECT_EQ(out.value("kill_at", ""), "idle") << out;
  EXPECT_EQ(out.value("failure", ""), "kill") << out;
  EXPECT_EQ(out.value("spares", -1), 1) << out;
  EXPECT_EQ(out.value("respawn", true), false) << out;
  EXPECT_EQ(out.value("rebuilt_bytes", 0), 256 * 1024) << out;
  // The idle spare zeroed the store a replacement needs while it waited (STORE_HINT).
  EXPECT_EQ(out.value("replacement_store_prepared", false), true) << out;
  // A killed process breaks its links: far below the 1 s heartbeat bound.
  EXPECT_LT(out.value("detect_ms", 1e9), 500.0) << out;
  // Timed: 2 before the failure, 4 and 5 after it (3 is the first after the recovery).
  EXPECT_EQ(out.value("timed_versions", json()), json({2, 4, 5})) << out;
}

TEST(FtbenchRecoveryTest, RespawnRecoversOntoANewProcessStartedAfterTheLoss) {
  const json out = RecoveredRun({"--kill", "3", "--respawn"}, {3}, 2);
  EXPECT_EQ(out.value("respawn", false), true) << out;
  EXPECT_EQ(out.value("spares", -1), 0) << out;
  EXPECT_EQ(out.value("rebuilt_bytes", 0), 256 * 1024) << out;
  EXPECT_EQ(out.value("replacement_store_prepared", true), false) << out;
}

TEST(FtbenchRecoveryTest, TheTextReportHasARecoverySection) {
  const ProgramResult run = Checkpoint({"--kill", "5"});
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  for (const char* says :
       {"recovery: rank 5 killed at idle", "detected by every survivor in",
        "restored version 2 on every rank", "reduced redundancy for", "verified: yes"}) {
    EXPECT_NE(run.out.find(says), std::string::npos) << says << " missing from:\n" << run.out;
  }
}

// Within version 3: before the victims prepare it, with their cell WRITEs in flight, with their
// cells landed and headers held: version 3 cannot commit, so version 2 comes back.
TEST(FtbenchRecoveryTest, ALossWithinAVersionRestoresTheOneBefore) {
  const json prepare = RecoveredRun({"--kill", "4", "--kill-at", "prepare"}, {4}, 2);
  EXPECT_EQ(prepare.value("kill_at", ""), "prepare") << prepare;
  const json write = RecoveredRun({"--kill", "5", "--kill-at", "write"}, {5}, 2);
  EXPECT_GE(write.value("held_requests", 0), 1) << write;
  // Each victim's k + m = 6 header WRITEs, posted once all its cells had landed.
  const json headers = RecoveredRun({"--kill", "2,6", "--kill-at", "headers"}, {2, 6}, 2);
  EXPECT_EQ(headers.value("held_requests", 0), 12) << headers;
  EXPECT_EQ(headers.value("rebuilt_bytes", 0), 2 * 256 * 1024) << headers;
}

// Every DONE of version 3 was in, so the coordinator committed it; the victims never saw the
// COMMIT. Version 3 is what every rank must get back, and the timed versions skip it.
TEST(FtbenchRecoveryTest, ALossAfterTheLastDoneRestoresWhatTheCoordinatorCommitted) {
  const json out = RecoveredRun({"--kill", "7", "--kill-at", "commit"}, {7}, 3);
  EXPECT_EQ(out.value("held_requests", 0), 1) << out;
  EXPECT_EQ(out.value("timed_versions", json()), json({2, 5})) << out;
}

// A hung rank is seen by the heartbeat only: detection takes about its 1 s bound.
TEST(FtbenchRecoveryTest, AFrozenRankIsDetectedByTheHeartbeatAndReplaced) {
  const json out = RecoveredRun({"--freeze", "6"}, {6}, 2);
  EXPECT_EQ(out.value("failure", ""), "freeze") << out;
  EXPECT_GT(out.value("detect_ms", 0.0), 500.0) << out;
}

// A second loss while Recover() runs (the replacement, while it reads its image back) restarts
// the recovery in a newer view, once a second new process takes the rank: verified, exit 0.
TEST(FtbenchRecoveryTest, ALossDuringRecoveryRestartsItAndTheRunIsVerified) {
  const json out = RecoveredRun({"--kill", "3", "--kill-at", "recovery"}, {3}, 2);
  EXPECT_EQ(out.value("kill_at", ""), "recovery") << out;
}

// m + 1 = 3 victims: some owner lost more than m fragments. Exit 3 with Recover()'s message,
// which names the owners.
TEST(FtbenchRecoveryTest, MoreLossesThanParityExit3NamingTheOwners) {
  for (const char* at : {"idle", "write"}) {
    const ProgramResult run = Checkpoint({"--kill", "2,3,4", "--kill-at", at, "--json"});
    ASSERT_FALSE(run.timed_out) << at;
    EXPECT_EQ(run.status, 3) << at << "\nstderr: " << run.err;
    EXPECT_NE(run.err.find("DataLoss"), std::string::npos) << run.err;
    EXPECT_NE(run.err.find("owner "), std::string::npos) << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
}

// No replacement: the recovery fails after the engines' timeout, naming the rank.
TEST(FtbenchRecoveryTest, AVictimWithoutASpareFailsAfterTheTimeout) {
  const ProgramResult run = Checkpoint({"--kill", "3", "--spares", "0", "--timeout", "2"});
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 1) << run.err;
  EXPECT_NE(run.err.find("rank 3 got no replacement"), std::string::npos) << run.err;
  EXPECT_LT(run.seconds, 15);
}

TEST(FtbenchRecoveryTest, BadFailureFlagsExit2SayingWhy) {
  const struct {
    std::vector<std::string> flags;
    const char* says;
  } cases[] = {
      {{"--kill", "0"}, "rank 0 is the coordinator"},
      {{"--freeze", "2,0"}, "rank 0 is the coordinator"},
      {{"--kill", "8"}, "rank 8 is outside the world of 8 nodes"},
      {{"--kill", "3,3"}, "rank 3 is listed twice"},
      {{"--kill", "3", "--freeze", "4"}, "--kill and --freeze are exclusive"},
      {{"--kill", "3", "--kill-at", "lunch"}, "--kill-at"},
      {{"--kill-at", "write"}, "--kill-at needs the victims"},
      {{"--spares", "1"}, "--spares needs the victims"},
      {{"--kill", "x"}, "'x' is not a rank"},
      {{"--kill", "3,"}, "'' is not a rank"},
      {{"--kill", "3", "--spares", "-1"}, "--spares"},
      {{"--kill", "3", "--respawn", "--spares", "1"}, "--respawn and --spares are exclusive"},
      {{"--kill", "3", "--versions", "2"}, "needs at least 3"},
      {{"--kill", "3", "--fabric", "rdma"}, "recovery runs over rdma go through ftrun --kill"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {FTBENCH_PATH, "checkpoint", "--nodes",
                                     "8",          "--size",     "256KiB"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    const ProgramResult run = RunProgram(args, {}, kDeadline);
    ASSERT_TRUE(run.started);
    ASSERT_FALSE(run.timed_out) << Shown(c.flags);
    EXPECT_EQ(run.status, 2) << Shown(c.flags) << "\nstderr: " << run.err;
    EXPECT_NE(run.err.find(c.says), std::string::npos) << Shown(c.flags) << "\n" << run.err;
    EXPECT_TRUE(run.out.empty()) << run.out;
  }
}

TEST(FtbenchRecoveryTest, HelpNamesTheFailureFlags) {
  const ProgramResult run = RunProgram({FTBENCH_PATH, "checkpoint", "--help"}, {}, kDeadline);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0);
  for (const char* says : {"--kill", "--freeze", "--kill-at", "--spares", "--respawn", "prepare",
                           "headers", "commit", "recovery"}) {
    EXPECT_NE(run.out.find(says), std::string::npos) << says << " missing from:\n" << run.out;
  }
}

}  // namespace
