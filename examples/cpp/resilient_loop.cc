// A resilient compute loop: each rank evolves a deterministic state, checkpoints it every few
// steps, and when a rank is lost recovers (the survivors roll back, a new process takes the lost
// rank's place) and carries on. At the end every rank checks that its state equals a
// failure-free run's. Public API only.
//
//   resilient_loop                  8 ranks in this process (loopback); rank 3 dies at step 60
//   ftrun -n 8 --spares 1 --kill 3 --after 1 --after-output "committed version 3"
//         -- resilient_loop --rdma
//                                   one process per rank over RDMA and an idle spare; ftrun
//                                   kills rank 3 1 s after version 3 committed, and the spare
//                                   takes its place
//   ftrun -n 8 --respawn --kill 3 --after 1 --after-output "committed version 3" -- ...
//                                   the same with a new process for rank 3 (FT_RESPAWN_OF=3)
//
// Exits 0 when the final state matches, 1 otherwise (saying why).
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"

namespace {

constexpr uint64_t kSteps = 160;
constexpr uint64_t kCheckpointEvery = 10;
constexpr size_t kWords = 1 << 17;  // 1 MiB of state per rank

// What the engine protects: the step counter next to the state, so both roll back together.
struct State {
  uint64_t step = 0;
  std::vector<uint64_t> words = std::vector<uint64_t>(kWords);
};

void Initialize(State& s, uint32_t rank) {
  s.step = 0;
  for (size_t i = 0; i < kWords; ++i) s.words[i] = (rank + 1) * 0x9e3779b97f4a7c15ull + i;
}

void Advance(State& s) {
  for (uint64_t& w : s.words) w = (w ^ (w >> 29)) * 0xbf58476d1ce4e5b9ull + s.step;
  ++s.step;
}

ft::Status ProtectState(ft::Engine& engine, State& s) {
  FT_RETURN_IF_ERROR(engine.Protect(0, &s.step, sizeof(s.step)));
  return engine.Protect(1, s.words.data(), s.words.size() * sizeof(uint64_t));
}

// Rolls the state back to the version every rank can restore (the step counter with it); none
// committed yet: back to the start.
ft::Status Recover(ft::Engine& engine, State& s, uint32_t rank, int* recoveries) {
  FT_ASSIGN_OR_RETURN(ft::RecoveryReport report, engine.Recover());
  if (report.version == 0) Initialize(s, rank);
  // One write per line: the ranks of a loopback run share stderr.
  std::cerr << ft::StrCat("rank ", rank, report.replacement ? " (a new process)" : "",
                          ": recovered version ", report.version, ", step ", s.step,
                          ", after losing rank ", report.lost.front(), "\n");
  ++*recoveries;
  return ft::Status();
}

// A new process for a lost rank knows nothing of the old one's memory: the engine tells it the
// regions (ids, sizes) of the rank's committed image, it allocates and protects them, and
// Recover() fills them from the other ranks' fragments. (This program's regions always have the
// same shape; one whose state varies in size sizes its buffers from the layout in the same way.)
ft::Status TakeOver(ft::Engine& engine, State& s, uint32_t rank, int* recoveries) {
  FT_ASSIGN_OR_RETURN(ft::Assignment assigned, engine.WaitForAssignment(std::chrono::minutes(1)));
  const std::vector<ft::ProtectedRegion>& layout = assigned.layout;
  if (!layout.empty()) {  // empty: nothing was committed, the job starts over
    if (layout.size() != 2 || layout[0].id != 0 || layout[0].bytes != sizeof(s.step) ||
        layout[1].id != 1 || layout[1].bytes % sizeof(uint64_t) != 0) {
      return ft::Status::FailedPrecondition("rank ", rank,
                                            "'s committed regions are not this program's");
    }
    s.words.resize(layout[1].bytes / sizeof(uint64_t));
  }
  FT_RETURN_IF_ERROR(ProtectState(engine, s));
  return Recover(engine, s, rank, recoveries);
}

// One rank's job. `die_at`: the step at which this process "dies" (loopback only; 0: never),
// after which `replace` gives the engine of the process that takes its place.
ft::Status RunRank(uint32_t rank, ft::Engine* engine, uint64_t die_at,
                   const std::function<ft::Result<ft::Engine*>()>& replace, uint64_t step_us) {
  auto state = std::make_unique<State>();
  int recoveries = 0;
  int failed_in_a_row = 0;
  if (engine->IsSpare()) {
    FT_RETURN_IF_ERROR(TakeOver(*engine, *state, rank, &recoveries));
  } else {
    Initialize(*state, rank);
    FT_RETURN_IF_ERROR(ProtectState(*engine, *state));
    // Step 0: something to roll back to. A loss now fails it; the loop below recovers.
    if (ft::Status first = engine->Checkpoint().status();
        !first.ok() && !engine->FailureDetected()) {
      return first;
    }
  }
  while (state->step < kSteps) {
    if (die_at != 0 && state->step == die_at) {
      die_at = 0;
      FT_ASSIGN_OR_RETURN(engine, replace());  // this process dies; a new one takes over
      state = std::make_unique<State>();
      FT_RETURN_IF_ERROR(TakeOver(*engine, *state, rank, &recoveries));
      continue;
    }
    if (engine->FailureDetected()) {  // cheap: polled every step
      FT_RETURN_IF_ERROR(Recover(*engine, *state, rank, &recoveries));
      continue;
    }
    Advance(*state);
    if (step_us > 0) std::this_thread::sleep_for(std::chrono::microseconds(step_us));
    if (state->step % kCheckpointEvery == 0) {
      // A failed checkpoint loses nothing (the last committed version stays): carry on. A lost
      // rank shows in FailureDetected() within the heartbeat bound, and the loop recovers.
      ft::Result<uint64_t> version = engine->Checkpoint();
      failed_in_a_row = version.ok() ? 0 : failed_in_a_row + 1;
      if (version.ok() && rank == 0) {
        // Progress, from one rank (a commit is every rank's): ftrun --after-output can time a
        // loss from it.
        std::cout << ft::StrCat("rank 0: committed version ", *version, " at step ", state->step,
                                "\n")
                  << std::flush;
      }
      if (failed_in_a_row == 3) return version.status();
    }
  }
  State expected;
  Initialize(expected, rank);
  while (expected.step < kSteps) Advance(expected);
  if (expected.words != state->words) {
    return ft::Status::DataLoss("rank ", rank, ": the final state differs from a failure-free run");
  }
  std::cout << ft::StrCat("rank ", rank, ": final state matches a failure-free run after ",
                          recoveries, " recovery(ies)\n");
  return ft::Status();
}

}  // namespace

int main(int argc, char** argv) {
  const bool rdma = argc > 1 && std::string(argv[1]) == "--rdma";
  // --rdma [STEP_MS]: the time one step takes (20 ms: the run lasts a few seconds).
  const uint64_t step_us = argc > 2 ? std::stoull(argv[2]) * 1000 : 20'000;
  if (rdma) {
    ft::EngineOptions options;
    options.k = 2;
    options.m = 1;
    options.cell_bytes = 64 << 10;
    auto engine = ft::Engine::CreateFromEnvironment(options);
    if (!engine.ok()) {
      std::cerr << engine.status() << "\n";
      return 1;
    }
    uint32_t rank = (*engine)->world().rank;
    if ((*engine)->IsSpare()) {
      // An idle spare (ftrun --spares) waits for a lost rank to take; a process started for a
      // dead rank (ftrun --respawn) has its rank already.
      ft::Result<ft::Assignment> assigned = (*engine)->WaitForAssignment(std::chrono::minutes(10));
      if (!assigned.ok()) {
        std::cout << ft::StrCat("spare ", rank, " was not needed (", assigned.status(), ")\n");
        return 0;
      }
      rank = assigned->rank;
    }
    ft::Status s = RunRank(rank, engine->get(), 0, nullptr, step_us);
    if (!s.ok())
      std::cerr << ft::StrCat("rank ", rank, ": ", s, "\n");  // one write: ranks share stderr
    return s.ok() ? 0 : 1;
  }
  ft::LoopbackWorldOptions options;  // 8 ranks, k = 4, m = 2
  options.engine.cell_bytes = 64 << 10;
  auto world = ft::LoopbackWorld::Create(options);
  if (!world.ok()) {
    std::cerr << world.status() << "\n";
    return 1;
  }
  constexpr uint32_t kVictim = 3;
  ft::Status s = (*world)->Run([&](uint32_t rank, ft::Engine& engine) -> ft::Status {
    const auto replace = [&]() -> ft::Result<ft::Engine*> {
      FT_RETURN_IF_ERROR((*world)->Kill(rank));
      return (*world)->Replace(rank);
    };
    return RunRank(rank, &engine, rank == kVictim ? 65 : 0, replace, /*step_us=*/0);
  });
  if (!s.ok()) {
    std::cerr << s << "\n";
    return 1;
  }
  std::cout << (*world)->size()
            << " ranks recovered from a lost rank and match a failure-free run\n";
  return 0;
}
