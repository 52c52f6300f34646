// ftrun: ftengine's local job launcher. Starts N ranks (and S spares) of one program on this
// machine with the FT_* bootstrap variables set, forwards signals, tags output on request and
// returns the job's status. main() parses and checks the flags; job.cc runs the job.
//
// Exit codes: 0 every rank exited 0 (or --help), 2 bad flags, 124 --timeout, 125 ftrun failed,
// 126 PROGRAM not executable, 127 PROGRAM not found; otherwise the job's first failure (not
// counting the processes --kill signalled).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tools/ftrun/job.h"

namespace {

using ft::ftrun::kExitOk;
using ft::ftrun::kExitUsage;

constexpr const char* kUsage =
    "Usage: ftrun -n N [--spares S] [--tag-output]\n"
    "             [--kill RANK[,RANK...] --after SECONDS [--after-output TEXT]\n"
    "              [--signal KILL|STOP]] [--respawn]\n"
    "             [--port P] [--host H] [--grace SECONDS] [--timeout SECONDS] [--] PROGRAM "
    "[ARGS...]\n"
    "Launches an ftengine job of N processes (and S spares) of PROGRAM on this machine.\n"
    "Everything from PROGRAM on is PROGRAM's (put -- before a PROGRAM starting with '-').\n";

// CLI11's usage line cannot show PROGRAM [ARGS...] (they are not options): ours replaces it,
// description included.
class Formatter : public CLI::Formatter {
 public:
  std::string make_description(const CLI::App*) const override { return ""; }
  std::string make_usage(const CLI::App*, std::string) const override { return kUsage; }
};

constexpr const char* kFooter =
    "Environment of each process: ftrun's own, plus\n"
    "  FT_RANK              0..N-1 for the ranks, N..N+S-1 for the spares, N+S on for the\n"
    "                       processes --respawn starts\n"
    "  FT_WORLD_SIZE        N\n"
    "  FT_SPARE             1 for a spare (it idles until recovery needs it), 0 for a rank\n"
    "  FT_SPARES            S\n"
    "  FT_COORDINATOR       host:port where rank 0, the coordinator, listens: host --host, else\n"
    "                       $RXE_VM_IP when set, else 127.0.0.1; port --port or a TCP port free\n"
    "                       at launch\n"
    "  FT_COORDINATOR_RANK  0\n"
    "  FT_RESPAWN_OF        only in a process --respawn started: the rank it replaces\n"
    "Standard input is /dev/null. Each process runs in its own process group, so a terminal's\n"
    "Ctrl-C reaches ftrun alone; ftrun forwards SIGINT, SIGTERM and SIGHUP to every process\n"
    "(and what it started) and sends SIGKILL to those still running --grace seconds later.\n"
    "A failed rank does not stop the others. Once every rank has exited, the spares get --grace\n"
    "seconds to exit by themselves (one may have taken a lost rank), then SIGTERM, then SIGKILL\n"
    "after --grace seconds.\n"
    "Node loss: --kill RANKS --after SECONDS sends each listed process's group SIGKILL, or with\n"
    "--signal STOP SIGSTOP: frozen, alive but hung. Frozen processes get SIGCONT once every\n"
    "other process has exited (they wake up removed from the job), SIGTERM --grace seconds\n"
    "later if still running, then SIGKILL; a forwarded signal or --timeout continues them too.\n"
    "A frozen rank does not hold back the spares' SIGTERM.\n"
    "--after-output TEXT counts --after from the first output line containing TEXT instead (a\n"
    "loss after the job's first checkpoint, however long its start-up takes).\n"
    "--respawn: a rank that dies (non-zero exit status or a signal, --kill included) while the\n"
    "job is not ending is started again as a new spare: FT_SPARE=1, FT_RANK the next unused\n"
    "number (N+S, N+S+1, ...), FT_RESPAWN_OF the dead rank; it counts as that rank (its exit\n"
    "status too, and the spares wait for it). With --spares, a loss is left to a spare while\n"
    "some are running that no earlier loss was left to. Each rank is respawned at most\n"
    "once (the new process is a spare, never respawned). Not respawned: spares, rank 0 (the\n"
    "coordinator; no failover yet), and any rank once every rank has exited, --timeout expired\n"
    "or a signal was forwarded.\n"
    "Exit status: 0 when every rank exited 0; otherwise the first failure in time: a non-zero\n"
    "exit status, or 128 + signal for a process killed by a signal. Ranks count, and spares that\n"
    "fail on their own (respawned processes included); not those ftrun stops at the end, nor\n"
    "those --kill signalled (a note says how they ended), so a job that recovers from --kill\n"
    "exits 0. ftrun's own: 2 bad flags, 124 --timeout expired, 125 ftrun failed, 126 PROGRAM\n"
    "cannot be executed, 127 PROGRAM not found.";

int UsageError(const std::string& message) {
  std::cerr << "ftrun: " << message << "\nRun with --help for more information.\n";
  return kExitUsage;
}

bool ValidSeconds(double seconds, bool zero_ok) {
  return std::isfinite(seconds) && (zero_ok ? seconds >= 0 : seconds > 0) &&
         seconds <= ft::ftrun::kMaxSeconds;
}

// --kill's RANK[,RANK...] into `ranks`, each in [0, total) and none twice. Empty on success,
// else what is wrong, naming the bad element.
std::string ParseKillList(const std::string& list, int total, std::vector<int>* ranks) {
  const std::string flag = "--kill '" + list + "': ";
  const std::string valid = "ranks are 0.." + std::to_string(total - 1);
  if (list.empty()) return flag + "no rank given";
  size_t start = 0;
  for (int position = 1;; ++position) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string element = list.substr(start, comma - start);
    if (element.empty()) {
      return flag + "element " + std::to_string(position) +
             " is empty (give ranks separated by single commas, e.g. --kill 1,5)";
    }
    int rank = 0;
    const char* end = element.data() + element.size();
    const auto [parsed_to, error] = std::from_chars(element.data(), end, rank);
    if (!std::all_of(element.begin(), element.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        parsed_to != end) {
      return flag + "'" + element + "' is not a rank number";
    }
    if (error != std::errc() || rank >= total) {
      return flag + "there is no rank " + element + ": " + valid;
    }
    if (std::find(ranks->begin(), ranks->end(), rank) != ranks->end()) {
      return flag + "rank " + std::to_string(rank) + " is listed twice";
    }
    ranks->push_back(rank);
    if (comma == list.size()) return "";
    start = comma + 1;
  }
}

// --signal's value: SIGKILL or SIGSTOP, or 0 when it is neither.
int ParseKillSignal(const std::string& name) {
  if (name == "KILL" || name == "SIGKILL") return SIGKILL;
  if (name == "STOP" || name == "SIGSTOP") return SIGSTOP;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  ft::ftrun::JobOptions options;
  std::string kill_list;
  std::string kill_signal = "KILL";
  int port = 0;
  double timeout = 0;

  CLI::App app("", "ftrun");
  app.prefix_command();  // PROGRAM and everything after it land in remaining()
  app.footer(kFooter);
  app.formatter(std::make_shared<Formatter>());
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "ftrun: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  CLI::Option* ranks_option =
      app.add_option("-n,--np", options.ranks, "Number of ranks N >= 1 (FT_RANK 0..N-1)")
          ->type_name("N");
  app.add_option("--spares", options.spares,
                 "Number of spare processes S (FT_RANK N..N+S-1, FT_SPARE=1)")
      ->type_name("S")
      ->capture_default_str();
  app.add_flag(
      "--tag-output", options.tag_output,
      "Prefix each output line with \"[1,RANK]<stdout>: \" (or <stderr>); lines never mix");
  CLI::Option* kill_option =
      app.add_option("--kill", kill_list,
                     "SIGKILL (or --signal STOP: SIGSTOP) these ranks or spares, a comma list of "
                     "numbers in 0..N+S-1, --after SECONDS; their end is not the job's failure")
          ->type_name("RANK[,RANK...]");
  CLI::Option* after_option = app.add_option("--after", options.kill_after_seconds,
                                             "Seconds after launch for --kill (fractions ok)")
                                  ->type_name("SECONDS");
  CLI::Option* after_output_option =
      app.add_option("--after-output", options.kill_after_output,
                     "Count --after from the first line a process writes (stdout or stderr) that "
                     "contains TEXT, not from launch; ftrun then relays every line (untagged "
                     "without --tag-output)")
          ->type_name("TEXT");
  CLI::Option* signal_option =
      app.add_option("--signal", kill_signal,
                     "What --kill sends: KILL, or STOP to freeze them until every other "
                     "process has exited (then SIGCONT); SIGKILL, SIGSTOP are accepted too")
          ->type_name("KILL|STOP")
          ->capture_default_str();
  kill_option->needs(after_option);
  after_option->needs(kill_option);
  signal_option->needs(kill_option);
  after_output_option->needs(kill_option);
  app.add_flag("--respawn", options.respawn,
               "Start a rank that dies (not rank 0) again as a new spare, FT_RANK N+S, N+S+1, "
               "..., with FT_RESPAWN_OF=the dead rank; at most once per rank");
  CLI::Option* port_option =
      app.add_option("--port", port, "Coordinator port (default: a TCP port free at launch)")
          ->type_name("P");
  CLI::Option* host_option =
      app.add_option(
             "--host", options.host,
             "Coordinator address: an IP address (or name) of this machine's RDMA interface "
             "(default: $RXE_VM_IP, else 127.0.0.1); with a name, give --port too")
          ->type_name("H");
  app.add_option("--grace", options.grace_seconds,
                 "Seconds from SIGTERM (or a forwarded signal) to SIGKILL")
      ->type_name("SECONDS")
      ->capture_default_str();
  CLI::Option* timeout_option =
      app.add_option("--timeout", timeout,
                     "Bound on the whole job: SIGTERM everyone after SECONDS, exit 124")
          ->type_name("SECONDS");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Prints the help (to stdout) or the error (to stderr). CLI11's codes are not ours.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  std::vector<std::string> command = app.remaining();
  if (!command.empty() && command.front() == "--") {
    command.erase(command.begin());
  } else if (!command.empty() && command.front().size() > 1 && command.front()[0] == '-') {
    return UsageError("unknown flag " + command.front() +
                      " (a PROGRAM starting with '-' goes after --)");
  }
  if (ranks_option->count() == 0) {
    return UsageError(
        "-n N is required: how many ranks to launch (ftrun's flags go before "
        "PROGRAM)");
  }
  if (options.ranks < 1) {
    return UsageError("-n must be at least 1, not " + std::to_string(options.ranks));
  }
  if (options.spares < 0) {
    return UsageError("--spares must be 0 or more, not " + std::to_string(options.spares));
  }
  if (options.ranks > ft::ftrun::kMaxProcesses - options.spares) {
    return UsageError("-n plus --spares must be at most " +
                      std::to_string(ft::ftrun::kMaxProcesses));
  }
  const int total = options.ranks + options.spares;
  if (kill_option->count() > 0) {
    if (const std::string error = ParseKillList(kill_list, total, &options.kill_ranks);
        !error.empty()) {
      return UsageError(error);
    }
    if (!ValidSeconds(options.kill_after_seconds, /*zero_ok=*/true)) {
      return UsageError("--after must be a number of seconds in [0, 1e6]");
    }
    options.kill_signal = ParseKillSignal(kill_signal);
    if (options.kill_signal == 0) {
      return UsageError("--signal must be KILL or STOP (or SIGKILL, SIGSTOP), not '" + kill_signal +
                        "'");
    }
  }
  if (const std::string& host = options.host; (host_option->count() > 0 && host.empty()) ||
                                              host.find_first_of(" \t\n[]/") != std::string::npos ||
                                              std::count(host.begin(), host.end(), ':') == 1) {
    return UsageError(
        "--host takes an address or host name without a port (give that with "
        "--port), not '" +
        host + "'");
  }
  if (port_option->count() > 0) {
    if (port < 1 || port > 65535) {
      return UsageError("--port must be in [1, 65535], not " + std::to_string(port));
    }
    options.port = static_cast<uint16_t>(port);
  }
  if (!ValidSeconds(options.grace_seconds, /*zero_ok=*/true)) {
    return UsageError("--grace must be a number of seconds in [0, 1e6]");
  }
  if (timeout_option->count() > 0) {
    if (!ValidSeconds(timeout, /*zero_ok=*/false)) {
      return UsageError("--timeout must be a number of seconds in (0, 1e6]");
    }
    options.timeout_seconds = timeout;
  }
  if (command.empty()) return UsageError("no PROGRAM given: what should the ranks run?");
  options.command = std::move(command);

  return ft::ftrun::RunJob(options);
}
