// Running rdma_node jobs and checking their output (test/rdma_process_util.h).
#include "test/rdma_process_util.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <regex>
#include <sstream>
#include <utility>

namespace ft::verbs::rdma_process {

using ft::test::Lines;

std::string Describe(const RunResult& run) {
  std::ostringstream text;
  text << "$ " << run.command << "\n"
       << (run.timed_out ? "TIMED OUT (killed by the test) after "
                         : "exit status " + std::to_string(run.status) + " after ")
       << run.seconds << " s\n--- stdout ---\n"
       << run.out << "--- stderr ---\n"
       << run.err << "--------------";
  return text.str();
}

std::string Joined(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& word : words) text += (text.empty() ? "" : " ") + word;
  return text;
}

RunResult RunLogged(std::vector<std::string> args, const std::vector<std::string>& set_environment,
                    double deadline_seconds) {
  std::string command;
  for (const std::string& variable : set_environment) command = variable + " " + command;
  command += Joined(args);
  RunResult result = {ft::test::RunProgram(std::move(args), set_environment,
                                           std::chrono::duration<double>(deadline_seconds)),
                      command};
  if (!result.started) ADD_FAILURE() << "could not start " << result.command;
  std::cout << "[ run      ] " << (result.timed_out ? "TIMED OUT " : "") << result.seconds
            << " s, status " << result.status << ": " << result.command << std::endl;
  return result;
}

RunResult RunJob(int n, const std::vector<std::string>& ftrun_flags,
                 const std::vector<std::string>& node_flags) {
  std::vector<std::string> args = {FTRUN_PATH,
                                   "-n",
                                   std::to_string(n),
                                   "--timeout",
                                   std::to_string(static_cast<int>(kJobSeconds)),
                                   "--grace",
                                   "1"};
  args.insert(args.end(), ftrun_flags.begin(), ftrun_flags.end());
  args.push_back("--");
  args.push_back(RDMA_NODE_PATH);
  args.insert(args.end(), node_flags.begin(), node_flags.end());
  std::vector<std::string> env = rdma_test::JobEnvironment();
  env.push_back("FT_LOG=info");
  return RunLogged(args, env, kJobSeconds + 15);
}

std::vector<std::string> NodeFlags(const std::string& scenario, int k, int m, int cell_bytes,
                                   const std::string& regions, int versions,
                                   const std::string& sync_dir) {
  return {"--scenario",
          scenario,
          "--k",
          std::to_string(k),
          "--m",
          std::to_string(m),
          "--cell-bytes",
          std::to_string(cell_bytes),
          "--regions",
          regions,
          "--versions",
          std::to_string(versions),
          "--timeout-ms",
          std::to_string(kEngineTimeoutMs),
          "--sync-dir",
          sync_dir,
          "--start-barrier"};
}

void ExpectEnginesDestroyedQuickly(std::vector<std::string>* lines, const std::vector<int>& ranks) {
  const std::regex format(R"(rank (\d+) destroyed its engine in ([0-9.]+) s)");
  std::map<int, double> seconds;
  std::vector<std::string> rest;
  for (const std::string& line : *lines) {
    std::smatch match;
    if (!std::regex_match(line, match, format)) {
      rest.push_back(line);
      continue;
    }
    EXPECT_TRUE(seconds.emplace(std::stoi(match[1]), std::stod(match[2])).second)
        << "twice: " << line;
  }
  *lines = std::move(rest);
  for (int rank : ranks) {
    if (!seconds.contains(rank)) {
      ADD_FAILURE() << "rank " << rank << " did not say it destroyed its engine";
      continue;
    }
    EXPECT_LT(seconds[rank], kDestroySeconds) << "rank " << rank << " took that long to destroy "
                                              << "its engine";
  }
}

std::vector<int> Ranks(int n, int except) {
  std::vector<int> ranks;
  for (int rank = 0; rank < n; ++rank) {
    if (rank != except) ranks.push_back(rank);
  }
  return ranks;
}

void ExpectEveryRankVerified(const RunResult& run, int n, int versions, const std::string& other) {
  std::vector<std::string> lines = Lines(run.out);
  ExpectEnginesDestroyedQuickly(&lines, Ranks(n));
  if (!other.empty()) {
    const std::regex format(other);
    std::erase_if(lines, [&](const std::string& line) { return std::regex_match(line, format); });
  }
  std::string missing;
  for (int rank = 0; rank < n; ++rank) {
    const std::string line =
        "rank " + std::to_string(rank) + " verified version " + std::to_string(versions);
    if (std::count(lines.begin(), lines.end(), line) != 1) {
      missing += ' ';
      missing += std::to_string(rank);
    }
  }
  EXPECT_EQ(missing, "") << "ranks without their one \"rank R verified version " << versions
                         << "\" line";
  EXPECT_EQ(lines.size(), static_cast<size_t>(n)) << "lines besides those expected";
}

StoreReports ParseStoreReports(const std::string& out) {
  const std::regex format(R"(rank (\d+) (.+) image (\d+) store (\d+) extents (\d+))");
  StoreReports reports;
  for (const std::string& line : Lines(out)) {
    std::smatch match;
    if (!std::regex_match(line, match, format)) continue;
    const StoreReport report{std::stoull(match[3]), std::stoull(match[4]), std::stoull(match[5])};
    EXPECT_TRUE(reports[match[2]].emplace(std::stoi(match[1]), report).second) << "twice: " << line;
  }
  return reports;
}

StoreReport WorldSum(const StoreReports& reports, const std::string& when, int n) {
  StoreReport sum;
  const auto it = reports.find(when);
  for (int rank = 0; rank < n; ++rank) {
    if (it == reports.end() || !it->second.contains(rank)) {
      ADD_FAILURE() << "rank " << rank << " did not report its store at \"" << when << "\"";
      continue;
    }
    const StoreReport& report = it->second.at(rank);
    sum.image += report.image;
    sum.store += report.store;
    sum.extents += report.extents;
  }
  return sum;
}

}  // namespace ft::verbs::rdma_process
