// What `ftbench checkpoint --kill RANKS | --freeze RANKS [--kill-at POINT] [--spares S]` asks
// for (tools/ftbench/recovery_run.h describes the run): the flags, and the failure plan they
// make, checked.
#ifndef FT_TOOLS_FTBENCH_FAILURE_PLAN_H_
#define FT_TOOLS_FTBENCH_FAILURE_PLAN_H_

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "ftengine/status.h"
#include "tools/ftbench/checkpoint.h"

namespace ft::ftbench {

enum class FailAt { kIdle, kPrepare, kWrite, kHeaders, kCommit, kRecovery };
inline const std::vector<std::string> kFailAtNames = {"idle",    "prepare", "write",
                                                      "headers", "commit",  "recovery"};

// What the flags ask for, checked.
struct FailurePlan {
  FailAt at = FailAt::kIdle;
  bool freeze = false;
  std::vector<uint32_t> victims;   // sorted
  std::vector<uint32_t> replaced;  // the victims that get a replacement: the first `spares`
  uint32_t spares = 0;        // idle spares started with the world, or with respawn new processes
  bool respawn = false;       // the replacements are new processes started after the loss
  uint64_t version = 0;       // F: the last version committed before the failure
  uint64_t last_version = 0;  // V + 1: the run checkpoints up to it
  std::chrono::milliseconds timeout{60'000};

  const std::string& at_name() const { return kFailAtNames[static_cast<size_t>(at)]; }
  const char* flag() const { return freeze ? "--freeze" : "--kill"; }
  const char* verb() const { return freeze ? "frozen" : "killed"; }
};

// The plan of the flags; InvalidArgument naming the flag at fault (rank 0, a rank outside the
// world or listed twice, --kill with --freeze, --kill-at or --spares without victims, fewer
// than 3 --versions).
Result<FailurePlan> PlanOf(const CheckpointOptions& o);

// "2,5".
std::string JoinRanks(const std::vector<uint32_t>& ranks);

// Adds --kill, --freeze, --kill-at and --spares to the checkpoint subcommand.
void AddFailureOptions(CLI::App& checkpoint, CheckpointOptions* options);
// Whether any of those flags was given: the run is RunRecovery's.
bool FailureRequested(const CheckpointOptions& options);

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_FAILURE_PLAN_H_
