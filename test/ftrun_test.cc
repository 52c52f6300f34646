// ftrun, the local launcher, run as a program (FTRUN_PATH) on /bin/sh scripts: the environment
// of each rank and spare, tagged output, the exit status, --kill (lists, --signal STOP),
// --respawn, signal forwarding, the bounds on the job and the refusal of bad flags. Every run is
// bounded by RunFtrun's deadline; the test itself never sleeps (the scripts it launches may).
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "test/run_program.h"

namespace {

using ft::test::Contains;
using ft::test::Lines;
using ft::test::RunOptions;
using ft::test::ScratchDir;
using RunResult = ft::test::ProgramResult;

// How long any one ftrun run may take before the test kills it and fails.
constexpr auto kRunDeadline = std::chrono::seconds(30);
// A job that ends "quickly": far below the `sleep 30` its processes would otherwise do.
constexpr double kQuickSeconds = 10;

// The options of every ftrun run: bounded by kRunDeadline; ftrun stays in the test's process
// group (only a test that says so gives it one of its own), stdin /dev/null.
RunOptions FtrunOptions() {
  RunOptions options;
  options.deadline = kRunDeadline;
  options.own_process_group = false;
  return options;
}

size_t Count(const std::vector<std::string>& lines, const std::string& line) {
  return static_cast<size_t>(std::count(lines.begin(), lines.end(), line));
}

// ftrun's own notes in its stderr, without what the processes wrote there (a shell may say
// "Terminated" when the SIGTERM that ends a spare kills its `sleep`).
std::string Notes(const std::string& err) {
  std::string notes;
  for (const std::string& line : Lines(err)) {
    if (line.starts_with("ftrun: ")) notes += line + "\n";
  }
  return notes;
}

// Runs ftrun with `args` (test/run_program.h: its stdout and stderr, its status, the deadline).
// The environment is the test's less the launcher variables (FT_*, RXE_VM_IP, Slurm's, PMI's,
// Open MPI's: the test behaves the same inside the soft-RoCE VM or under a launcher), plus
// options.set_environment.
RunResult RunFtrun(const std::vector<std::string>& args,
                   const RunOptions& options = FtrunOptions()) {
  std::vector<std::string> arguments = {FTRUN_PATH};
  arguments.insert(arguments.end(), args.begin(), args.end());
  RunResult result = ft::test::RunProgram(std::move(arguments), options);
  if (!result.started) ADD_FAILURE() << "could not start " << FTRUN_PATH;
  return result;
}

RunOptions WithEnvironment(const std::string& variable) {
  RunOptions options = FtrunOptions();
  options.set_environment.push_back(variable);
  return options;
}

std::vector<std::string> Sh(const std::string& script) { return {"/bin/sh", "-c", script}; }

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(FtrunTest, EveryRankGetsItsEnvironment) {
  const RunResult run =
      RunFtrun(Concat({"-n", "3", "--"},
                      Sh("echo \"$FT_RANK $FT_WORLD_SIZE $FT_COORDINATOR $FT_COORDINATOR_RANK "
                         "$FT_SPARES $FT_SPARE $INHERITED_BY_RANKS\"")),
               WithEnvironment("INHERITED_BY_RANKS=yes"));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.err, "");
  const std::vector<std::string> lines = Lines(run.out);
  ASSERT_EQ(lines.size(), 3u) << run.out;
  std::set<std::string> ranks;
  std::set<std::string> coordinators;
  for (const std::string& line : lines) {
    std::istringstream fields(line);
    std::string rank, world, coordinator, coordinator_rank, spares, spare, inherited;
    fields >> rank >> world >> coordinator >> coordinator_rank >> spares >> spare >> inherited;
    ranks.insert(rank);
    coordinators.insert(coordinator);
    EXPECT_EQ(world, "3") << line;
    EXPECT_EQ(coordinator_rank, "0") << line;
    EXPECT_EQ(spares, "0") << line;
    EXPECT_EQ(spare, "0") << line;
    EXPECT_EQ(inherited, "yes") << line;
  }
  EXPECT_EQ(ranks, (std::set<std::string>{"0", "1", "2"}));
  ASSERT_EQ(coordinators.size(), 1u) << "every rank must name the same coordinator";
  const std::string coordinator = *coordinators.begin();
  ASSERT_TRUE(coordinator.starts_with("127.0.0.1:")) << coordinator;
  const int port = std::atoi(coordinator.substr(10).c_str());
  EXPECT_GE(port, 1);
  EXPECT_LE(port, 65535);
}

TEST(FtrunTest, PortFlagAndTheSoftRoceVmAddress) {
  const std::vector<std::string> print = Sh("echo $FT_COORDINATOR");
  RunResult run = RunFtrun(Concat({"-n", "2", "--port", "7471", "--"}, print));
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "127.0.0.1:7471\n127.0.0.1:7471\n");

  run = RunFtrun(Concat({"-n", "2", "--port", "7471", "--"}, print),
                 WithEnvironment("RXE_VM_IP=10.77.0.1"));
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "10.77.0.1:7471\n10.77.0.1:7471\n");

  // --host wins over RXE_VM_IP; an IPv6 address is bracketed.
  run = RunFtrun(Concat({"-n", "2", "--host", "10.9.8.7", "--port", "7471", "--"}, print),
                 WithEnvironment("RXE_VM_IP=10.77.0.1"));
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "10.9.8.7:7471\n10.9.8.7:7471\n");
  run = RunFtrun(Concat({"-n", "1", "--host", "fe80::1", "--port", "7471", "--"}, print));
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "[fe80::1]:7471\n");
}

TEST(FtrunTest, SparesGetFtSpareAndAreStoppedWhenTheRanksAreDone) {
  ScratchDir dir("ftrun_test");
  ASSERT_FALSE(dir.path().empty());
  // Spares say they are ready (their TERM trap set) and idle; ranks wait for both, then exit.
  const std::string script =
      "echo \"$FT_RANK $FT_WORLD_SIZE $FT_SPARES $FT_SPARE\"\n"
      "if [ \"$FT_SPARE\" = 1 ]; then\n"
      "  trap 'echo stopped; exit 0' TERM\n"
      "  touch " +
      dir.path() +
      "/ready.$FT_RANK\n"
      "  while :; do sleep 1; done\n"
      "fi\n"
      "while [ ! -e " +
      dir.path() + "/ready.2 ] || [ ! -e " + dir.path() +
      "/ready.3 ]; do\n"
      "  sleep 0.05\n"
      "done\n";
  const RunResult run = RunFtrun(
      Concat({"-n", "2", "--spares", "2", "--grace", "0.5", "--tag-output", "--"}, Sh(script)));
  ASSERT_FALSE(run.timed_out);
  EXPECT_GE(run.seconds, 0.5) << "the spares' --grace before SIGTERM";
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_FALSE(Contains(run.err, "ftrun: ")) << "no failure, no SIGKILL: " << run.err;
  const std::vector<std::string> lines = Lines(run.out);
  EXPECT_EQ(Count(lines, "[1,0]<stdout>: 0 2 2 0"), 1u) << run.out;
  EXPECT_EQ(Count(lines, "[1,1]<stdout>: 1 2 2 0"), 1u) << run.out;
  EXPECT_EQ(Count(lines, "[1,2]<stdout>: 2 2 2 1"), 1u) << run.out;
  EXPECT_EQ(Count(lines, "[1,3]<stdout>: 3 2 2 1"), 1u) << run.out;
  EXPECT_EQ(Count(lines, "[1,2]<stdout>: stopped"), 1u) << run.out;
  EXPECT_EQ(Count(lines, "[1,3]<stdout>: stopped"), 1u) << run.out;
  EXPECT_EQ(lines.size(), 6u) << run.out;
}

// A spare that took a lost rank finishes it after the other ranks have exited: within --grace it
// exits by itself, and gets no SIGTERM.
TEST(FtrunTest, SparesGetTheGraceToExitByThemselvesAfterTheRanks) {
  const RunResult run =
      RunFtrun(Concat({"-n", "1", "--spares", "1", "--grace", "3", "--"},
                      Sh("if [ \"$FT_SPARE\" = 1 ]; then trap 'echo stopped; exit 0' TERM; "
                         "sleep 1; echo finished; fi")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, 2.5);
  EXPECT_EQ(run.out, "finished\n");
  EXPECT_EQ(run.err, "");
}

TEST(FtrunTest, SpareIgnoringSigtermGetsSigkillAfterTheGrace) {
  ScratchDir dir("ftrun_test");
  ASSERT_FALSE(dir.path().empty());
  const std::string script = "if [ \"$FT_SPARE\" = 1 ]; then trap '' TERM; touch " + dir.path() +
                             "/ready; exec sleep 30; fi\n"
                             "while [ ! -e " +
                             dir.path() + "/ready ]; do sleep 0.05; done\n";
  const RunResult run =
      RunFtrun(Concat({"-n", "1", "--spares", "1", "--grace", "0.3", "--"}, Sh(script)));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << "a spare ftrun stops does not count: " << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_EQ(run.err, "ftrun: rank 1 (spare) still running 0.3 s after SIGTERM; sent SIGKILL\n");
}

TEST(FtrunTest, TagOutputPrefixesWholeLines) {
  // Each line is written in three pieces; four ranks write at once.
  const std::string script =
      "i=0\n"
      "while [ $i -lt 200 ]; do\n"
      "  printf \"a$FT_RANK\"; printf \"b$FT_RANK\"; printf \"c$FT_RANK\\n\"\n"
      "  printf \"e$FT_RANK\\n\" >&2\n"
      "  i=$((i + 1))\n"
      "done\n"
      "printf \"tail$FT_RANK\"\n";
  const RunResult run = RunFtrun(Concat({"-n", "4", "--tag-output", "--"}, Sh(script)));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  const std::vector<std::string> out = Lines(run.out);
  const std::vector<std::string> err = Lines(run.err);
  EXPECT_EQ(out.size(), 4u * 201u);
  EXPECT_EQ(err.size(), 4u * 200u);
  for (int rank = 0; rank < 4; ++rank) {
    const std::string r = std::to_string(rank);
    const std::string tag = "[1," + r + "]";
    EXPECT_EQ(Count(out, tag + "<stdout>: a" + r + "b" + r + "c" + r), 200u) << "rank " << r;
    EXPECT_EQ(Count(out, tag + "<stdout>: tail" + r), 1u) << "partial last line, rank " << r;
    EXPECT_EQ(Count(err, tag + "<stderr>: e" + r), 200u) << "rank " << r;
  }
}

TEST(FtrunTest, WithoutTagOutputProcessesShareFtrunsStreams) {
  const RunResult run =
      RunFtrun(Concat({"-n", "2", "--"}, Sh("echo out$FT_RANK; echo err$FT_RANK >&2")));
  EXPECT_EQ(run.status, 0) << run.err;
  const std::vector<std::string> out = Lines(run.out);
  const std::vector<std::string> err = Lines(run.err);
  EXPECT_EQ(std::set<std::string>(out.begin(), out.end()), (std::set<std::string>{"out0", "out1"}));
  EXPECT_EQ(std::set<std::string>(err.begin(), err.end()), (std::set<std::string>{"err0", "err1"}));
}

TEST(FtrunTest, ProgramsStdinIsDevNull) {
  // `cat` on an inherited stdin would wait for the test's pipe forever.
  RunOptions options = FtrunOptions();
  options.stdin_open_pipe = true;
  const RunResult run = RunFtrun({"-n", "2", "--", "cat"}, options);
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "");
}

TEST(FtrunTest, EverythingAfterProgramIsItsOwn) {
  RunResult run = RunFtrun({"-n", "1", "/bin/echo", "--kill", "3", "-n", "5", "--", "x"});
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "--kill 3 -n 5 -- x\n");
  run = RunFtrun({"-n", "1", "--tag-output", "--", "/bin/echo", "--tag-output"});
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "[1,0]<stdout>: --tag-output\n");
}

TEST(FtrunTest, ExitStatusIsTheFirstFailure) {
  const RunResult run = RunFtrun(
      Concat({"-n", "3", "--"}, Sh("case $FT_RANK in 1) exit 3;; 2) sleep 1; exit 4;; esac")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 3) << run.err;
  EXPECT_EQ(run.err, "ftrun: rank 1 exited with status 3\nftrun: rank 2 exited with status 4\n");
}

TEST(FtrunTest, SignalDeathIs128PlusTheSignal) {
  const RunResult run = RunFtrun(Concat({"-n", "2", "--"}, Sh("kill -USR1 $$")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 128 + SIGUSR1) << run.err;
  EXPECT_PRED2(Contains, run.err, "killed by signal " + std::to_string(SIGUSR1) + " (SIGUSR1)");
}

TEST(FtrunTest, KillSigkillsTheRankAfterTheDelayAndTheJobEndsQuickly) {
  // Rank 1 and the spare would sleep 30 s; rank 0 is done at once. The rank ftrun killed as
  // asked is not the job's failure: every other rank exited 0.
  const RunResult run =
      RunFtrun(Concat({"-n", "2", "--spares", "1", "--kill", "1", "--after", "0.2", "--"},
                      Sh("if [ \"$FT_RANK\" != 0 ]; then sleep 30; fi")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_GE(run.seconds, 0.2);
  EXPECT_EQ(run.err,
            "ftrun: killed rank 1 (SIGKILL) after 0.2 s\n"
            "ftrun: rank 1 was killed by --kill (SIGKILL) as asked\n");
}

TEST(FtrunTest, KillTakesACommaListAndTheJobExits0WhenTheOthersDo) {
  // Ranks 1 and 3 would sleep 30 s; 0 and 2 exit 0 at once.
  const RunResult run = RunFtrun(Concat({"-n", "4", "--kill", "3,1", "--after", "0.2", "--"},
                                        Sh("case $FT_RANK in 1|3) sleep 30;; esac")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_GE(run.seconds, 0.2);
  const std::vector<std::string> err = Lines(run.err);
  EXPECT_EQ(err.size(), 4u) << run.err;
  for (const std::string rank : {"1", "3"}) {
    EXPECT_EQ(Count(err, "ftrun: killed rank " + rank + " (SIGKILL) after 0.2 s"), 1u) << run.err;
    EXPECT_EQ(Count(err, "ftrun: rank " + rank + " was killed by --kill (SIGKILL) as asked"), 1u)
        << run.err;
  }
}

// --after-output: the clock starts at the first line (stdout or stderr, any process, relayed
// untagged) that contains the text, not at launch: rank 2 says so 0.5 s in, rank 1 dies 0.2 s
// later. A second line with the text does not arm it again.
TEST(FtrunTest, AfterOutputCountsFromTheFirstLineThatContainsTheText) {
  const RunResult run = RunFtrun(
      Concat({"-n", "3", "--kill", "1", "--after", "0.2", "--after-output", "version 2", "--"},
             Sh("case $FT_RANK in 1) echo starting; sleep 30;; "
                "2) sleep 0.5; echo 'committed version 2' >&2; sleep 0.1; echo 'committed version "
                "2 again';; "
                "esac")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_GE(run.seconds, 0.7);
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_EQ(run.out, "starting\ncommitted version 2 again\n");
  EXPECT_EQ(run.err,
            "committed version 2\n"
            "ftrun: \"version 2\" seen in rank 2's output; --kill in 0.2 s\n"
            "ftrun: killed rank 1 (SIGKILL) after 0.2 s (--after-output)\n"
            "ftrun: rank 1 was killed by --kill (SIGKILL) as asked\n");
}

// Text that never comes: nothing is signalled, the job ends as it would have, and ftrun says so.
TEST(FtrunTest, AfterOutputThatNeverComesKillsNothing) {
  const RunResult run =
      RunFtrun(Concat({"-n", "2", "--kill", "1", "--after", "0", "--after-output", "never", "--"},
                      Sh("echo hello")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "hello\nhello\n");
  EXPECT_EQ(run.err,
            "ftrun: --after-output: no process wrote a line containing \"never\"; --kill "
            "signalled nothing\n");
  const RunResult without_kill = RunFtrun({"-n", "1", "--after-output", "x", "--", "true"});
  EXPECT_EQ(without_kill.status, 2) << without_kill.err;
  EXPECT_NE(without_kill.err.find("--after-output requires --kill"), std::string::npos)
      << without_kill.err;
}

TEST(FtrunTest, AKilledRankDoesNotHideTheFailureOfAnother) {
  // Rank 1 is killed at 0.1 s, first; rank 2 fails on its own later, and decides the status.
  const RunResult run =
      RunFtrun(Concat({"-n", "3", "--kill", "1", "--after", "0.1", "--"},
                      Sh("case $FT_RANK in 1) sleep 30;; 2) sleep 0.5; exit 4;; esac")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 4) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_EQ(run.err,
            "ftrun: killed rank 1 (SIGKILL) after 0.1 s\n"
            "ftrun: rank 1 was killed by --kill (SIGKILL) as asked\n"
            "ftrun: rank 2 exited with status 4\n");
}

TEST(FtrunTest, BadKillListsAndSignalsExit2NamingTheBadElement) {
  const std::vector<std::string> launched = Sh("echo launched");
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--kill", "1,x"}, "'x' is not a rank number"},
      {{"--kill", "1,,2"}, "element 2 is empty"},
      {{"--kill", ",1"}, "element 1 is empty"},
      {{"--kill", "1,"}, "element 2 is empty"},
      {{"--kill", "9"}, "no rank 9: ranks are 0..3"},
      {{"--kill", "0,4"}, "no rank 4: ranks are 0..3"},
      {{"--kill", "99999999999"}, "no rank 99999999999"},
      {{"--kill", "2,1,2"}, "rank 2 is listed twice"},
      {{"--kill", "+1"}, "'+1' is not a rank number"},
      {{"--kill", "1", "--signal", "TERM"}, "not 'TERM'"},
      {{"--kill", "1", "--signal", "stop"}, "not 'stop'"},
  };
  for (const auto& [flags, message] : cases) {
    std::vector<std::string> args = {"-n", "2", "--spares", "2"};
    args.insert(args.end(), flags.begin(), flags.end());
    args = Concat(Concat(args, {"--after", "0", "--"}), launched);
    std::string joined;
    for (const std::string& arg : args) joined += " " + arg;
    const RunResult run = RunFtrun(args);
    EXPECT_EQ(run.status, 2) << "ftrun" << joined << "\n" << run.err;
    EXPECT_PRED2(Contains, run.err, message) << "ftrun" << joined;
    EXPECT_TRUE(run.err.starts_with("ftrun: --")) << "ftrun" << joined << "\n" << run.err;
    EXPECT_EQ(run.out, "") << "ftrun" << joined;
  }
}

TEST(FtrunTest, SignalStopFreezesTheRankUntilEveryOtherProcessHasExited) {
  ScratchDir dir("ftrun_test");
  ASSERT_FALSE(dir.path().empty());
  const std::string d = dir.path();
  // Rank 1 waits for a file rank 0 makes at 1 s, then checks that nobody else still runs. Frozen
  // at 0.1 s, it sees the file only when ftrun continues it, after the others exited: rank 0
  // and 2 linger 0.3 s after the file, the spare 0.3 s after its SIGTERM at the end of the ranks.
  const std::string script =
      "echo $$ > " + d +
      "/pid.$FT_RANK\n"
      "case $FT_RANK in\n"
      "1) while [ ! -e " +
      d +
      "/others_done ]; do sleep 0.02; done\n"
      "   for pid in $(cat " +
      d + "/pid.0 " + d + "/pid.2 " + d +
      "/pid.3); do\n"
      "     if kill -0 $pid 2>/dev/null; then echo \"woke while $pid runs\"; exit 5; fi\n"
      "   done\n"
      "   touch " +
      d +
      "/woke; echo woke; exit 3;;\n"
      "0) sleep 1; touch " +
      d +
      "/others_done; sleep 0.3;;\n"
      "2) sleep 1.3;;\n"
      "3) trap 'sleep 0.3; exit 0' TERM; while :; do sleep 0.05; done;;\n"
      "esac\n";
  const RunResult run = RunFtrun(Concat({"-n", "3", "--spares", "1", "--tag-output", "--kill", "1",
                                         "--signal", "STOP", "--after", "0.1", "--"},
                                        Sh(script)));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_GE(run.seconds, 1.3);
  EXPECT_TRUE(std::filesystem::exists(d + "/woke")) << run.out << run.err;
  EXPECT_EQ(run.out, "[1,1]<stdout>: woke\n");
  EXPECT_EQ(Notes(run.err),
            "ftrun: stopped rank 1 (SIGSTOP) after 0.1 s\n"
            "ftrun: every other process has exited; sent SIGCONT to rank 1 (stopped by --kill)\n"
            "ftrun: rank 1 was stopped by --kill (SIGSTOP) as asked; it then exited with status "
            "3\n");
}

TEST(FtrunTest, SignalStopOnARankThatWouldHangStillEndsBoundedByTheGrace) {
  // Once continued, rank 1 ignores SIGTERM and sleeps on: SIGTERM --grace after SIGCONT, then
  // SIGKILL --grace after that.
  const RunResult run = RunFtrun(Concat(
      {"-n", "2", "--grace", "0.3", "--kill", "1", "--signal", "SIGSTOP", "--after", "0.1", "--"},
      Sh("case $FT_RANK in 0) sleep 0.3;; 1) trap '' TERM; exec sleep 30;; esac")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_GE(run.seconds, 0.3 + 2 * 0.3);
  EXPECT_EQ(run.err,
            "ftrun: stopped rank 1 (SIGSTOP) after 0.1 s\n"
            "ftrun: every other process has exited; sent SIGCONT to rank 1 (stopped by --kill)\n"
            "ftrun: rank 1 still running 0.3 s after SIGCONT; sent SIGTERM\n"
            "ftrun: rank 1 still running 0.3 s after SIGTERM; sent SIGKILL\n"
            "ftrun: rank 1 was stopped by --kill (SIGSTOP) as asked; it was then killed by signal "
            "9 (SIGKILL)\n");
}

// The script of the --respawn tests: every process prints its environment; rank 0 waits (at
// most 4 s) for a respawned process to say it started, then 0.3 s more (for that one to run
// `respawned`); rank 1 runs `rank_1`; a respawned process runs `respawned` and exits (it is the
// rank's); spares idle until SIGTERM.
std::string RespawnScript(const std::string& dir, const std::string& rank_1,
                          const std::string& respawned) {
  return "echo \"env $FT_RANK $FT_WORLD_SIZE $FT_SPARES $FT_SPARE ${FT_RESPAWN_OF-unset}\"\n"
         "if [ -n \"$FT_RESPAWN_OF\" ]; then touch " +
         dir + "/respawned; " + respawned +
         "; exit 0; fi\n"
         "case $FT_RANK in\n"
         "0) i=0; while [ ! -e " +
         dir +
         "/respawned ] && [ $i -lt 200 ]; do sleep 0.02; i=$((i + 1)); done; sleep 0.3;;\n"
         "1) " +
         rank_1 +
         ";;\n"
         "*) trap 'exit 0' TERM; while :; do sleep 0.05; done;;\n"
         "esac\n";
}

TEST(FtrunTest, RespawnStartsADeadRankAgainAsASpareOnce) {
  ScratchDir dir("ftrun_test");
  ASSERT_FALSE(dir.path().empty());
  // Rank 1 exits 1; its respawn, rank 2 (N + S), exits 7: it is never respawned itself.
  const RunResult run = RunFtrun(Concat({"-n", "2", "--respawn", "--tag-output", "--"},
                                        Sh(RespawnScript(dir.path(), "exit 1", "exit 7"))));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 1) << "rank 1's failure still counts: " << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  const std::vector<std::string> out = Lines(run.out);
  EXPECT_EQ(Count(out, "[1,0]<stdout>: env 0 2 0 0 unset"), 1u) << run.out;
  EXPECT_EQ(Count(out, "[1,1]<stdout>: env 1 2 0 0 unset"), 1u) << run.out;
  EXPECT_EQ(Count(out, "[1,2]<stdout>: env 2 2 0 1 1"), 1u) << run.out;
  EXPECT_EQ(out.size(), 3u) << run.out;
  EXPECT_EQ(Notes(run.err),
            "ftrun: rank 1 exited with status 1\n"
            "ftrun: respawned rank 1 as rank 2 (FT_SPARE=1, FT_RESPAWN_OF=1)\n"
            "ftrun: rank 2 (spare, respawn of rank 1) exited with status 7\n");
}

// With --spares too, a loss is left to an idle spare (the coordinator gives it the rank; a new
// process would find the rank taken); once no idle spare is left, the next one is respawned.
TEST(FtrunTest, RespawnLeavesALossToAnIdleSpareFirst) {
  ScratchDir dir("ftrun_test");
  ASSERT_FALSE(dir.path().empty());
  const RunResult run = RunFtrun(Concat({"-n", "3", "--spares", "1", "--respawn", "--grace", "0.2",
                                         "--kill", "1,2", "--after", "0.2", "--tag-output", "--"},
                                        Sh(RespawnScript(dir.path(), "sleep 30", "true"))));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  const std::string notes = Notes(run.err);
  const size_t left = notes.find("is left to a spare (--spares)");
  const size_t respawned = notes.find("(FT_SPARE=1, FT_RESPAWN_OF=");
  EXPECT_NE(left, std::string::npos) << notes;
  EXPECT_NE(respawned, std::string::npos) << notes;
  EXPECT_EQ(notes.find("is left to a spare", left + 1), std::string::npos)
      << "one spare: " << notes;
  EXPECT_EQ(Count(Lines(run.out), "[1,4]<stdout>: env 4 3 1 1 1") +
                Count(Lines(run.out), "[1,4]<stdout>: env 4 3 1 1 2"),
            1u)
      << run.out;
}

TEST(FtrunTest, RespawnOfAKilledRankAndTheJobExits0) {
  ScratchDir dir("ftrun_test");
  ASSERT_FALSE(dir.path().empty());
  // Rank 1 is killed by --kill; its respawn, rank 2, is rank 1's process: it runs to its end
  // (0.5 s after rank 0's), not to a spare's SIGTERM.
  const RunResult run = RunFtrun(
      Concat({"-n", "2", "--respawn", "--grace", "0.2", "--kill", "1", "--after", "0.1", "--"},
             Sh(RespawnScript(dir.path(), "sleep 30", "sleep 0.8; echo rank 1 done"))));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  const std::vector<std::string> out = Lines(run.out);
  EXPECT_EQ(std::set<std::string>(out.begin(), out.end()),
            (std::set<std::string>{"env 0 2 0 0 unset", "env 1 2 0 0 unset", "env 2 2 0 1 1",
                                   "rank 1 done"}))
      << run.out;
  EXPECT_EQ(out.size(), 4u) << run.out;
  EXPECT_EQ(Notes(run.err),
            "ftrun: killed rank 1 (SIGKILL) after 0.1 s\n"
            "ftrun: rank 1 was killed by --kill (SIGKILL) as asked\n"
            "ftrun: respawned rank 1 as rank 2 (FT_SPARE=1, FT_RESPAWN_OF=1)\n");
}

TEST(FtrunTest, RespawnSkipsTheCoordinatorRanksThatExit0AndTheEndOfTheJob) {
  // Rank 0 (the coordinator) fails and rank 1 exits 0 at once; rank 2 fails last, when the job
  // is ending. Nobody is respawned.
  const RunResult run = RunFtrun(
      Concat({"-n", "3", "--respawn", "--"},
             Sh("echo $FT_RANK; case $FT_RANK in 0) exit 2;; 2) sleep 0.5; exit 3;; esac")));
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 2) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  const std::vector<std::string> out = Lines(run.out);
  EXPECT_EQ(std::set<std::string>(out.begin(), out.end()), (std::set<std::string>{"0", "1", "2"}))
      << run.out;
  EXPECT_EQ(run.err,
            "ftrun: rank 0 exited with status 2\n"
            "ftrun: rank 0 (the coordinator) is not respawned: coordinator failover is not "
            "supported yet\n"
            "ftrun: rank 2 exited with status 3\n"
            "ftrun: rank 2 is not respawned: the job is ending\n");
}

TEST(FtrunTest, AnInheritedFtRespawnOfIsDropped) {
  const RunResult run = RunFtrun(Concat({"-n", "1", "--"}, Sh("echo ${FT_RESPAWN_OF-unset}")),
                                 WithEnvironment("FT_RESPAWN_OF=9"));
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "unset\n");
}

// Ranks that trap `signal`, say they are ready, and idle until it comes.
std::vector<std::string> TrappingRanks(const std::string& signal, int exit_status) {
  return Sh("trap 'echo got " + signal + " $FT_RANK; exit " + std::to_string(exit_status) + "' " +
            signal + "\necho ready $FT_RANK\nwhile :; do sleep 1; done");
}

bool AllReady(const std::string& out, int ranks) {
  for (int rank = 0; rank < ranks; ++rank) {
    if (!Contains(out, "ready " + std::to_string(rank) + "\n")) return false;
  }
  return true;
}

// Options that send `signal` to ftrun once ranks 0..ranks-1 have said "ready".
RunOptions SignalWhenReady(int ranks, int signal) {
  RunOptions options = FtrunOptions();
  options.ready = [ranks](const std::string& out) { return AllReady(out, ranks); };
  options.signal = signal;
  return options;
}

TEST(FtrunTest, SigtermIsForwardedToEveryRank) {
  const RunResult run =
      RunFtrun(Concat({"-n", "2", "--"}, TrappingRanks("TERM", 5)), SignalWhenReady(2, SIGTERM));
  ASSERT_FALSE(run.timed_out);
  ASSERT_TRUE(run.signal_sent) << run.out << run.err;
  EXPECT_EQ(run.status, 5) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  const std::vector<std::string> lines = Lines(run.out);
  EXPECT_EQ(Count(lines, "got TERM 0"), 1u) << run.out;
  EXPECT_EQ(Count(lines, "got TERM 1"), 1u) << run.out;
  EXPECT_PRED2(Contains, run.err, "ftrun: got SIGTERM; forwarded it to 2 processes\n");
}

TEST(FtrunTest, CtrlCToFtrunsGroupReachesEachRankOnce) {
  // As a terminal's Ctrl-C: SIGINT to ftrun's whole process group. The ranks are in groups of
  // their own, so only ftrun's forwarding reaches them.
  RunOptions options = SignalWhenReady(3, SIGINT);
  options.own_process_group = true;
  options.signal_group = true;
  const RunResult run =
      RunFtrun(Concat({"-n", "3", "--tag-output", "--"}, TrappingRanks("INT", 6)), options);
  ASSERT_FALSE(run.timed_out);
  ASSERT_TRUE(run.signal_sent) << run.out << run.err;
  EXPECT_EQ(run.status, 6) << run.err;
  const std::vector<std::string> lines = Lines(run.out);
  for (int rank = 0; rank < 3; ++rank) {
    const std::string r = std::to_string(rank);
    EXPECT_EQ(Count(lines, "[1," + r + "]<stdout>: got INT " + r), 1u) << run.out;
  }
}

TEST(FtrunTest, RanksIgnoringAForwardedSignalGetSigkillAfterTheGrace) {
  const RunResult run = RunFtrun(
      Concat({"-n", "1", "--grace", "0.3", "--"}, Sh("trap '' TERM; echo ready 0; exec sleep 30")),
      SignalWhenReady(1, SIGTERM));
  ASSERT_FALSE(run.timed_out);
  ASSERT_TRUE(run.signal_sent);
  EXPECT_EQ(run.status, 128 + SIGKILL) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_PRED2(Contains, run.err, "ftrun: rank 0 still running 0.3 s after SIGTERM; sent SIGKILL");
}

TEST(FtrunTest, AForwardedSignalContinuesAFrozenRank) {
  // Rank 1 is frozen at 0.1 s; rank 0 says it is ready at 0.5 s and the test sends SIGTERM to
  // ftrun. Rank 1 must act on it at once, not when rank 0 (1 s later) has exited, nor at the
  // SIGKILL 5 s (--grace) later.
  const std::string script =
      "if [ $FT_RANK = 0 ]; then\n"
      "  trap 'sleep 1; echo got TERM 0; exit 5' TERM; sleep 0.5; echo ready 0\n"
      "else\n"
      "  trap 'echo got TERM 1; exit 6' TERM\n"
      "fi\n"
      "while :; do sleep 0.05; done\n";
  const RunResult run = RunFtrun(
      Concat({"-n", "2", "--grace", "5", "--kill", "1", "--signal", "STOP", "--after", "0.1", "--"},
             Sh(script)),
      SignalWhenReady(1, SIGTERM));
  ASSERT_FALSE(run.timed_out);
  ASSERT_TRUE(run.signal_sent) << run.out << run.err;
  EXPECT_EQ(run.status, 5) << "rank 0's status; rank 1's does not count: " << run.err;
  EXPECT_LT(run.seconds, 4) << run.err;
  EXPECT_EQ(run.out, "ready 0\ngot TERM 1\ngot TERM 0\n");
  EXPECT_EQ(Notes(run.err),
            "ftrun: stopped rank 1 (SIGSTOP) after 0.1 s\n"
            "ftrun: got SIGTERM; forwarded it to 2 processes\n"
            "ftrun: rank 1 was stopped by --kill (SIGSTOP) as asked; it then exited with status "
            "6\n"
            "ftrun: rank 0 exited with status 5\n");
}

TEST(FtrunTest, TimeoutEndsTheJobWith124) {
  const RunResult run = RunFtrun({"-n", "2", "--timeout", "0.3", "--", "sleep", "30"});
  ASSERT_FALSE(run.timed_out);
  EXPECT_EQ(run.status, 124) << run.err;
  EXPECT_LT(run.seconds, kQuickSeconds);
  EXPECT_PRED2(Contains, run.err, "--timeout 0.3 s");
}

TEST(FtrunTest, BadFlagsExit2WithAMessageAndLaunchNothing) {
  const std::vector<std::string> launched = Sh("echo launched");
  const std::vector<std::vector<std::string>> cases = {
      {},
      Concat({}, launched),                                          // no -n
      Concat({"-n", "0", "--"}, launched),                           // N < 1
      Concat({"-n", "-2", "--"}, launched),                          // N < 1
      Concat({"-n", "two", "--"}, launched),                         // not a number
      Concat({"-n", "2", "--spares", "-1", "--"}, launched),         // S < 0
      Concat({"-n", "2", "--after", "1", "--"}, launched),           // --after without --kill
      Concat({"-n", "2", "--kill", "1", "--"}, launched),            // --kill without --after
      Concat({"-n", "2", "--kill", "2", "--after", "1"}, launched),  // no rank 2
      Concat({"-n", "2", "--kill", "0", "--after", "-1"}, launched),
      Concat({"-n", "2", "--kill", "1,x", "--after", "1", "--"}, launched),
      Concat({"-n", "2", "--kill", "1,,0", "--after", "1", "--"}, launched),
      Concat({"-n", "2", "--kill", "1,1", "--after", "1", "--"}, launched),
      Concat({"-n", "2", "--signal", "STOP", "--"}, launched),  // --signal without --kill
      Concat({"-n", "2", "--kill", "1", "--after", "1", "--signal", "INT", "--"}, launched),
      Concat({"-n", "2", "--port", "0", "--"}, launched),
      Concat({"-n", "2", "--port", "65536", "--"}, launched),
      Concat({"-n", "2", "--host", "10.0.0.1:7471", "--"}, launched),  // a port in --host
      Concat({"-n", "2", "--host", "[fe80::1]", "--"}, launched),
      Concat({"-n", "2", "--host", "", "--"}, launched),
      Concat({"-n", "2", "--grace", "-1", "--"}, launched),
      Concat({"-n", "2", "--timeout", "0", "--"}, launched),
      Concat({"-n", "2", "--bogus"}, launched),  // unknown flag
      Concat({"-n", "2", "-x"}, launched),       // unknown flag
      {"-n", "2"},                               // no PROGRAM
      {"-n", "2", "--"},                         // no PROGRAM
  };
  for (const std::vector<std::string>& args : cases) {
    std::string joined;
    for (const std::string& arg : args) joined += " " + arg;
    const RunResult run = RunFtrun(args);
    EXPECT_EQ(run.status, 2) << "ftrun" << joined << "\n" << run.err;
    EXPECT_TRUE(run.err.starts_with("ftrun: ")) << "ftrun" << joined << "\n" << run.err;
    EXPECT_EQ(run.out, "") << "ftrun" << joined;
  }
}

TEST(FtrunTest, MissingProgramExits127NamingIt) {
  RunResult run = RunFtrun({"-n", "2", "--", "ftrun-test-no-such-command"});
  EXPECT_EQ(run.status, 127);
  EXPECT_EQ(run.err, "ftrun: ftrun-test-no-such-command: command not found\n");

  run = RunFtrun({"-n", "2", "/nonexistent/ftrun-test-program"});
  EXPECT_EQ(run.status, 127);
  EXPECT_PRED2(Contains, run.err, "/nonexistent/ftrun-test-program");

  run = RunFtrun({"-n", "2", "/dev/null"});  // exists, cannot be executed
  EXPECT_EQ(run.status, 126);
  EXPECT_PRED2(Contains, run.err, "/dev/null");
}

TEST(FtrunTest, HelpListsEveryFlag) {
  const RunResult run = RunFtrun({"--help"});
  EXPECT_EQ(run.status, 0);
  for (const char* flag : {"-n",
                           "--spares",
                           "--tag-output",
                           "--kill",
                           "RANK[,RANK...]",
                           "--after",
                           "--signal",
                           "KILL|STOP",
                           "--respawn",
                           "--port",
                           "--host",
                           "--grace",
                           "--timeout",
                           "PROGRAM",
                           "FT_RANK",
                           "FT_WORLD_SIZE",
                           "FT_COORDINATOR",
                           "FT_SPARE",
                           "FT_RESPAWN_OF",
                           "RXE_VM_IP",
                           "127"}) {
    EXPECT_PRED2(Contains, run.out, flag);
  }
}

}  // namespace
