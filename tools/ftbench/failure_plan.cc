// The flags of a failure run, and the plan they make (tools/ftbench/failure_plan.h).
#include "tools/ftbench/failure_plan.h"

#include <algorithm>
#include <charconv>
#include <sstream>

namespace ft::ftbench {
namespace {

using std::chrono::milliseconds;

// The syntax of a rank list: decimal integers separated by commas.
std::string RankListSyntax(const std::string& list) {
  if (list.empty()) return "an empty list: name the ranks, e.g. 3 or 2,5";
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string item = list.substr(start, comma - start);
    uint32_t rank = 0;
    const auto [end, error] = std::from_chars(item.data(), item.data() + item.size(), rank);
    if (item.empty() || error != std::errc() || end != item.data() + item.size()) {
      return "'" + item + "' is not a rank (a comma list of ranks, e.g. 3 or 2,5)";
    }
    start = comma + 1;
  }
  return "";
}

// The ranks of a list whose syntax RankListSyntax accepted, sorted; InvalidArgument naming the
// flag for rank 0, a rank outside the world or one listed twice.
Result<std::vector<uint32_t>> ParseRanks(const char* flag, const std::string& list,
                                         uint32_t nodes) {
  std::vector<uint32_t> ranks;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    uint32_t rank = 0;
    std::from_chars(item.data(), item.data() + item.size(), rank);
    if (rank == 0) {
      return Status::InvalidArgument(flag, " ", list,
                                     ": rank 0 is the coordinator, which cannot be replaced yet "
                                     "(coordinator failover is not built)");
    }
    if (rank >= nodes) {
      return Status::InvalidArgument(flag, " ", list, ": rank ", rank, " is outside the world of ",
                                     nodes, " nodes (--nodes)");
    }
    if (std::find(ranks.begin(), ranks.end(), rank) != ranks.end()) {
      return Status::InvalidArgument(flag, " ", list, ": rank ", rank, " is listed twice");
    }
    ranks.push_back(rank);
  }
  std::sort(ranks.begin(), ranks.end());
  return ranks;
}

}  // namespace

std::string JoinRanks(const std::vector<uint32_t>& ranks) {
  std::string out;
  for (uint32_t rank : ranks) out += StrCat(out.empty() ? "" : ",", rank);
  return out;
}

Result<FailurePlan> PlanOf(const CheckpointOptions& o) {
  const bool kill = !o.kill.empty();
  const bool freeze = !o.freeze.empty();
  if (kill && freeze) {
    return Status::InvalidArgument(
        "--kill and --freeze are exclusive: a run injects one kind of failure");
  }
  if (!kill && !freeze) {
    return Status::InvalidArgument(o.kill_at.empty() ? "--spares" : "--kill-at",
                                   " needs the victims: --kill RANKS or --freeze RANKS");
  }
  FailurePlan plan;
  plan.freeze = freeze;
  if (o.versions < 3) {
    return Status::InvalidArgument("--versions ", o.versions, ": a run with ", plan.flag(),
                                   " needs at least 3 (timed versions before the failure and "
                                   "after the recovery)");
  }
  FT_ASSIGN_OR_RETURN(plan.victims, ParseRanks(plan.flag(), freeze ? o.freeze : o.kill, o.nodes));
  const std::string at = o.kill_at.empty() ? "idle" : o.kill_at;
  const auto named = std::find(kFailAtNames.begin(), kFailAtNames.end(), at);
  if (named == kFailAtNames.end()) {
    return Status::InvalidArgument("--kill-at ", at, ": not a failure point");
  }
  plan.at = static_cast<FailAt>(named - kFailAtNames.begin());
  if (o.respawn && o.spares >= 0) {
    return Status::InvalidArgument(
        "--respawn and --spares are exclusive: with --respawn every victim gets a new process "
        "after the loss; --spares starts idle spares with the world");
  }
  plan.respawn = o.respawn;
  plan.spares =
      o.spares < 0 ? static_cast<uint32_t>(plan.victims.size()) : static_cast<uint32_t>(o.spares);
  const size_t replaced = std::min<size_t>(plan.spares, plan.victims.size());
  plan.replaced.assign(plan.victims.begin(), plan.victims.begin() + replaced);
  plan.version = static_cast<uint64_t>(o.versions + 1) / 2;
  plan.last_version = static_cast<uint64_t>(o.versions) + 1;
  if (o.timeout_given) {
    plan.timeout = milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  } else if (plan.replaced.size() < plan.victims.size()) {
    // The survivors' Recover() fails only after the engines' timeout: keep that short.
    plan.timeout = milliseconds(5'000);
  }
  return plan;
}

void AddFailureOptions(CLI::App& checkpoint, CheckpointOptions* options) {
  checkpoint.footer(
      "Failure runs (--kill or --freeze RANKS; loopback). Versions are the engine's: 1 is the "
      "untimed first, V + 1 the last (V = --versions >= 3). After version F = ceil(V/2) commits, "
      "the ranks fail at --kill-at:\n"
      "  idle      before F+1 starts; restores F\n"
      "  prepare   the others called CheckpointAsync for F+1, the victims not; restores F\n"
      "  write     the victims' cell WRITEs of F+1 held in flight (a FaultyFabric rule); "
      "restores F\n"
      "  headers   the victims' cells of F+1 landed, their k+m header WRITEs held; restores F\n"
      "  commit    every DONE of F+1 in, the coordinator's answer held from the victims; "
      "restores what the coordinator decided (F+1 when it committed)\n"
      "  recovery  as idle, then the replacements die while their images are read back: the "
      "recovery restarts in a newer view once second new processes take the ranks\n"
      "--kill: the processes die (broken links); --freeze: they hang, only the heartbeat tells "
      "(about 1 s). --spares S idle spares (default one per victim) start with the world and "
      "wait in WaitForAssignment; the coordinator gives each a lost rank (with --respawn, a new "
      "process starts for each victim after the loss instead, as under ftrun --respawn). A "
      "replacement protects a fresh image; every member calls Recover(); every image must "
      "equal the restored version; the run "
      "checkpoints on to V+1 and verifies it. Timed: every version but the first, the one the "
      "failure hit and the first after the recovery. --json adds lost, detect_ms, recovery_ms, "
      "reprotect_ms, reduced_redundancy_ms, restored_version, rebuild_gbps and more (README).\n"
      "Exit codes: 0 verified; 1 failed (a recovery, a version or an image); 2 bad flags; 3 "
      "more ranks lost than m for some owner (DataLoss naming the owners).");
  const CLI::Validator ranks(RankListSyntax, "RANKS");
  checkpoint
      .add_option("--kill", options->kill,
                  "Loopback: kill these ranks (a comma list, not 0) after version ceil(V/2), "
                  "recover onto replacements and checkpoint on (tools/ftbench/recovery_run.h)")
      ->check(ranks);
  checkpoint
      .add_option("--freeze", options->freeze,
                  "Like --kill, but the ranks hang (SIGSTOP-like): only the heartbeat tells")
      ->check(ranks);
  checkpoint
      .add_option(
          "--kill-at", options->kill_at,
          "When the ranks fail (default idle): idle (between versions), prepare (the others "
          "called CheckpointAsync), write (their cell WRITEs in flight), headers (cells landed, "
          "header WRITEs held), commit (every DONE sent, the COMMIT held from them), recovery "
          "(a second loss: the replacements die while Recover() runs; new processes take the "
          "ranks and the recovery restarts)")
      ->check(CLI::IsMember(kFailAtNames));
  checkpoint
      .add_option("--spares", options->spares,
                  "Idle spares started with the world (default: one per failed rank); they wait "
                  "to be assigned a lost rank. A failed rank without one makes the recovery "
                  "fail after --timeout")
      ->check(CLI::Range(0, 65536));
  checkpoint.add_flag("--respawn", options->respawn,
                      "No idle spares: a new process starts for each failed rank after the "
                      "loss (LoopbackWorld::Replace, as ftrun --respawn)");
}

bool FailureRequested(const CheckpointOptions& o) {
  return !o.kill.empty() || !o.freeze.empty() || !o.kill_at.empty() || o.spares >= 0 || o.respawn;
}

}  // namespace ft::ftbench
