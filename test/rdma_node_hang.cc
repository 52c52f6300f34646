// rdma_node --scenario hang: a hung process over rdma (test/rdma_hang_process_test.cc runs it).
//
// Every rank commits --versions versions; then the victim stops itself (SIGSTOP: its QPs and
// memory stay up in the kernel, nothing it owns breaks, only its heartbeats stop). The survivors
// must learn of it from the heartbeat alone within a few bounds, refuse their next checkpoint
// naming it and "no heartbeat", and read their committed version back exactly with a column
// more lost. Once every survivor knows, the lowest survivor wakes the victim (SIGCONT, its pid
// from --sync-dir): a zombie of epoch 1, its next checkpoint must end Aborted saying it was
// removed. Survivors print
//   "rank S found hung node R after X s; committed version C intact (<its refusal>)"
// and the victim "rank R woke removed: <its Aborted>".
#include <signal.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include "test/rdma_node.h"

namespace ft::rdma_node {
namespace {

std::filesystem::path PidFile(const Flags& flags) {
  return std::filesystem::path(flags.sync_dir) / ("pid-" + std::to_string(flags.victim));
}

int HangAndWake(const Flags& flags, Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  std::ofstream(PidFile(flags)) << getpid() << "\n";
  raise(SIGSTOP);
  // Woken (SIGCONT) seconds later: removed from the job.
  Result<uint64_t> next = CheckpointNext(engine, regions, rank);
  if (next.ok()) return Fail("the woken victim committed version " + std::to_string(*next));
  const Status& why = next.status();
  if (why.code() != StatusCode::kAborted ||
      why.message().find("was removed from the job in epoch 1") == std::string_view::npos) {
    return Fail("the woken victim's checkpoint returned " + why.ToString() +
                ", not Aborted saying it was removed in epoch 1");
  }
  if (!engine.FailureDetected()) return Fail("the woken victim's FailureDetected() is false");
  std::cout << "rank " << rank << " woke removed: " << why.ToString() << std::endl;
  return kExitOk;
}

int FindTheHungNode(const Flags& flags, Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  const uint32_t size = engine.world().size;
  const auto start = Clock::now();
  while (!engine.FailureDetected()) {
    if (SecondsSince(start) > flags.give_up_seconds) {
      return Fail("no failure detected " + Seconds(SecondsSince(start)) + " s after node " +
                  std::to_string(flags.victim) + " stopped");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double detected_after = SecondsSince(start);
  std::string problem;
  Result<uint64_t> next = CheckpointNext(engine, regions, rank);
  if (next.ok()) {
    problem = "a checkpoint committed version " + std::to_string(*next) + " after the loss";
  } else if (next.status().code() != StatusCode::kUnavailable ||
             !NamesNode(next.status().message(), flags.victim) ||
             next.status().message().find("no heartbeat") == std::string_view::npos) {
    problem = "the checkpoint after the loss returned " + next.status().ToString() +
              ", not Unavailable naming node " + std::to_string(flags.victim) +
              " and \"no heartbeat\"";
  }
  const uint64_t committed = engine.Metrics().committed_version;
  if (problem.empty() && committed < static_cast<uint64_t>(flags.versions)) {
    problem = "committed version " + std::to_string(committed) + " after " +
              std::to_string(flags.versions) + " checkpoints";
  }
  if (problem.empty()) {
    problem = ReadBackEach(engine, regions.sizes(), rank,
                           {{}, {static_cast<int>(rank % static_cast<uint32_t>(flags.k))}});
  }
  // Every survivor knows: the lowest one wakes the victim.
  if (std::string met = Meet(flags, "detected", rank, size, flags.victim); !met.empty()) {
    return Fail(met);
  }
  const uint32_t lowest = flags.victim == 0 ? 1 : 0;
  if (rank == lowest) {
    pid_t pid = 0;
    std::ifstream(PidFile(flags)) >> pid;
    if (pid <= 0 || kill(pid, SIGCONT) != 0) return Fail("cannot wake the victim (its pid file)");
  }
  if (!problem.empty()) return Fail(problem);
  std::cout << "rank " << rank << " found hung node " << flags.victim << " after "
            << Seconds(detected_after) << " s; committed version " << committed << " intact ("
            << next.status().ToString() << ")" << std::endl;
  return kExitOk;
}

}  // namespace

int Hang(const Flags& flags, Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  const uint32_t size = engine.world().size;
  for (int i = 1; i <= flags.versions; ++i) {
    if (Result<uint64_t> version = CheckpointNext(engine, regions, rank); !version.ok()) {
      return Fail("checkpoint " + std::to_string(i) + ": " + version.status().ToString());
    }
  }
  // The victim stops only once every rank committed: no round is in flight.
  if (std::string met = Meet(flags, "committed", rank, size, -1); !met.empty()) return Fail(met);
  return static_cast<int>(rank) == flags.victim ? HangAndWake(flags, engine, regions)
                                                : FindTheHungNode(flags, engine, regions);
}

}  // namespace ft::rdma_node
