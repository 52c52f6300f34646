// rdma_node: one node of a multi-process engine job, for the `rdma` tests (rdma_process_test runs
// it under ftrun, one process per node, in the soft-RoCE VM). Not a gtest: a program whose
// stdout lines and exit status the test checks. Its parts: test/rdma_node.h.
//
//   rdma_node --k K --m M --cell-bytes B --regions 4097,12289,777 --versions V
//             --scenario verify|survive|deadline|aborted-grow|hang
//             [--victim R --victim-dies-at idle|writing|external] [--pair A B]
//             [--rank-regions R=a,b ...] [--resize V=F ...] [--domains D] [--report-stores]
//             [--sync-dir DIR] [--timeout-ms T]
//
// Each region of --regions (rank R: of --rank-regions R=..., when given) is allocated on its own
// (at an odd offset: no alignment is promised to the engine) and protected under its index.
// Before each checkpoint every region is refilled with a pattern of (rank, version, region), the
// version being the one the checkpoint is expected to commit (committed + 1: the coordinator
// numbers versions consecutively). --domains D: EngineOptions::failure_domain = rank % D. Store
// capacity is the default: the coordinator sizes the stores.
//
// verify:  V checkpoints; after each, ReadCommitted without a lost column, with column rank % k
//          treated as lost (forces a decode) and, when m >= 2, with a data and a parity column
//          lost, each compared byte for byte against the pattern of that version; a closing
//          Checkpoint() as a barrier (no store goes away while another rank still reads).
//          --resize V=F: before version V the regions are re-allocated at F times their
//          original sizes and protected again. --report-stores: after each version
//          "rank R version V image I store S extents E" (Metrics().store_bytes; E is
//          Engine::StoreBytesFor the image). Prints "rank R verified version V".
// survive: V versions are committed first. Then the victim dies by SIGKILL:
//            idle      right after its last commit; the survivors sleep 300 ms, then checkpoint
//            writing   right after CheckpointAsync() of the next version (--kill-delay-us later),
//                      while the survivors start the same version
//            external  the victim keeps checkpointing like everyone else until the launcher
//                      kills it (ftrun --kill R --after S)
//          Survivors checkpoint version after version until one fails; that failure must be
//          Unavailable or Aborted naming "node R", and the committed version (whatever it is by
//          then, at least V) must read back intact (the victim's fragments decoded around).
//          Survivors then meet through files in --sync-dir before exiting. Prints
//          "rank R lost node X after S s; committed version C intact (<the failure>)".
//          --versions 0: the victim dies in the first checkpoint (writing) and nothing is
//          committed (C = 0: ReadCommitted must say NotFound).
// deadline, aborted-grow: faults between the two ranks of --pair, injected by a FaultyFabric
//          around the process's rdma fabric (test/rdma_node_faults.cc says what each checks).
// hang:    V versions, then the victim SIGSTOPs itself; the survivors find it by the heartbeat
//          alone, and it wakes removed (test/rdma_node_hang.cc says what is checked).
// Every rank that gets as far as creating its engine destroys it before exiting (before its
// regions go) and prints "rank R destroyed its engine in S s".
//
// --start-barrier: after creating its engine every rank waits until all have one, before its
// first checkpoint (so no PREPARE reaches the coordinator before its Create has returned);
// --delay-create-rank R --delay-create-ms T: rank R starts T ms late.
//
// Exit status: 0 success; 1 a failure (stderr says what); 2 bad flags or a bootstrap
// environment the engine refuses as InvalidArgument.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ftengine/bootstrap.h"
#include "ftengine/engine.h"
#include "ftengine/status.h"
#include "test/rdma_node.h"
#include "verbs/faulty/faulty.h"
#include "world/process.h"

namespace ft::rdma_node {

int Verify(const Flags& flags, Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  const std::vector<uint64_t> original = regions.sizes();
  std::string problem;
  for (int i = 1; i <= flags.versions && problem.empty(); ++i) {
    if (auto resize = flags.resize.find(i); resize != flags.resize.end()) {
      std::vector<uint64_t> sizes;
      for (uint64_t size : original) {
        sizes.push_back(std::max<uint64_t>(
            1, static_cast<uint64_t>(std::llround(static_cast<double>(size) * resize->second))));
      }
      if (Status status = Reallocate(engine, regions, std::move(sizes)); !status.ok()) {
        return Fail("resizing the regions before version " + std::to_string(i) + ": " +
                    status.ToString());
      }
    }
    Result<uint64_t> version = CheckpointNext(engine, regions, rank);
    if (!version.ok()) {
      return Fail("checkpoint " + std::to_string(i) + " of " + std::to_string(flags.versions) +
                  ": " + version.status().ToString());
    }
    if (flags.report_stores) ReportStores(engine, "version " + std::to_string(*version));
    // Reading before the next Checkpoint() is safe: no round (nor a store it replaces) starts
    // before every rank has prepared it.
    problem = ReadBackEach(engine, regions.sizes(), rank, LostColumns(flags.k, flags.m, rank));
  }
  const EngineMetrics metrics = engine.Metrics();
  if (!problem.empty()) {
    // The read failed: said below, after the barrier.
  } else if (metrics.committed_version != static_cast<uint64_t>(flags.versions)) {
    problem = "Metrics().committed_version is " + std::to_string(metrics.committed_version) +
              " after " + std::to_string(flags.versions) + " checkpoints";
  } else if (metrics.image_bytes != regions.image_bytes()) {
    problem = "Metrics().image_bytes is " + std::to_string(metrics.image_bytes) + ", protected " +
              std::to_string(regions.image_bytes());
  }
  // The barrier: every rank has read back before any store goes away. It runs even after a
  // failed read-back, so that the other ranks' reads do not fail for our sake.
  if (Result<uint64_t> barrier = engine.Checkpoint(); !barrier.ok()) {
    if (!problem.empty()) Fail(problem);
    return Fail("the closing checkpoint (a barrier): " + barrier.status().ToString());
  }
  if (!problem.empty()) return Fail(problem);
  std::cout << "rank " << rank << " verified version " << flags.versions << std::endl;
  return kExitOk;
}

int Survive(const Flags& flags, Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  const uint32_t size = engine.world().size;
  const bool victim = static_cast<int>(rank) == flags.victim;
  const bool external = flags.dies_at == "external";

  // 1. The first versions: everyone, the victim too (an external kill should come later).
  for (int i = 1; i <= flags.versions; ++i) {
    Result<uint64_t> version = CheckpointNext(engine, regions, rank);
    if (!version.ok()) {
      return Fail("checkpoint " + std::to_string(i) + " of the first " +
                  std::to_string(flags.versions) + " failed" +
                  (external ? " (was the victim killed too early? raise ftrun --after)" : "") +
                  ": " + version.status().ToString());
    }
  }
  const uint64_t first_committed = engine.Metrics().committed_version;

  // 2. The victim dies.
  if (victim && flags.dies_at == "idle") raise(SIGKILL);
  if (victim && flags.dies_at == "writing") {
    regions.Fill(rank, first_committed + 1);
    Result<CheckpointHandle> handle = engine.CheckpointAsync();
    if (!handle.ok()) return Fail("CheckpointAsync: " + handle.status().ToString());
    if (flags.kill_delay_us > 0) {
      std::this_thread::sleep_for(std::chrono::microseconds(flags.kill_delay_us));
    }
    raise(SIGKILL);
  }
  if (!victim && flags.dies_at == "idle") {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }

  // 3. Checkpoint until one fails (the victim, external: until it is killed).
  const auto loop_start = Clock::now();
  const auto give_up = loop_start + std::chrono::duration<double>(flags.give_up_seconds);
  Status failure;
  double failed_after = 0;
  int attempts = 0;
  while (failure.ok()) {
    if (Clock::now() > give_up ||
        (flags.max_attempts > 0 && attempts >= flags.max_attempts && !external)) {
      return Fail(std::string(victim ? "the victim was not killed" : "no checkpoint failed") +
                  " in " + std::to_string(attempts) + " attempts / " +
                  Seconds(SecondsSince(loop_start)) + " s after version " +
                  std::to_string(first_committed));
    }
    ++attempts;
    const auto start = Clock::now();
    Result<uint64_t> version = CheckpointNext(engine, regions, rank);
    if (!version.ok()) {
      failure = version.status();
      failed_after = SecondsSince(start);
    }
  }
  if (victim) return Fail("the victim's checkpoint failed: " + failure.ToString());

  // 4. The failure must say which node was lost; the committed version must be intact.
  std::string problem;
  if (failure.code() != StatusCode::kUnavailable && failure.code() != StatusCode::kAborted) {
    problem =
        "the failing checkpoint returned " + failure.ToString() + ", not Unavailable or Aborted";
  } else if (!NamesNode(failure.message(), flags.victim)) {
    problem = "the failing checkpoint does not name node " + std::to_string(flags.victim) + ": " +
              failure.ToString();
  }
  const uint64_t committed = engine.Metrics().committed_version;
  if (problem.empty() && committed < first_committed) {
    problem = "Metrics().committed_version went back from " + std::to_string(first_committed) +
              " to " + std::to_string(committed);
  }
  // Nothing committed yet (--versions 0, the victim died in the first checkpoint): nothing to
  // read back, and ReadCommitted must say so.
  if (problem.empty() && committed == 0) {
    std::vector<std::byte> back(regions.image_bytes());
    if (Status read = engine.ReadCommitted(back); read.code() != StatusCode::kNotFound) {
      problem =
          "ReadCommitted with nothing committed returned " + read.ToString() + ", not NotFound";
    }
  }
  if (problem.empty() && committed > 0) problem = ReadBack(engine, regions.sizes(), rank, {});
  if (problem.empty() && committed > 0 && flags.m >= 2) {
    // One column more treated as lost: the victim's and this one are at most m.
    problem = ReadBack(engine, regions.sizes(), rank, {static_cast<int>(rank) % flags.k});
  }
  const std::string met = Meet(flags, "done", rank, size, flags.victim);
  if (!problem.empty()) return Fail(problem + " (failing call: " + failure.ToString() + ")");
  if (!met.empty()) return Fail(met);
  std::cout << "rank " << rank << " lost node " << flags.victim << " after "
            << Seconds(failed_after) << " s; committed version " << committed << " intact ("
            << failure.ToString() << ")" << std::endl;
  return kExitOk;
}

namespace {

// The engine of this process as world/ makes it (Engine::CreateFromEnvironment), its fabric
// wrapped in a FaultyFabric whose rules `faults` holds (the decorator's node ids are ranks).
Result<std::unique_ptr<Engine>> CreateFaultyEngine(const EngineOptions& options,
                                                   std::shared_ptr<verbs::FaultController> faults) {
  FT_ASSIGN_OR_RETURN(ProcessFabric process, CreateProcessFabric());
  process.fabric =
      std::make_unique<verbs::FaultyFabric>(std::move(process.fabric), std::move(faults));
  return CreateProcessEngine(std::move(process), options);
}

// --resize V=F, each into flags->resize. False (after saying why) when malformed.
bool ParseResize(const std::vector<std::string>& items, Flags* flags) {
  for (const std::string& item : items) {
    const size_t equals = item.find('=');
    char* end = nullptr;
    const long version = equals == std::string::npos ? 0 : std::strtol(item.c_str(), &end, 10);
    const bool version_ok = version >= 1 && end == item.c_str() + equals;
    const double factor = version_ok ? std::strtod(item.c_str() + equals + 1, &end) : 0;
    if (!version_ok || *end != '\0' || !(factor > 0 && factor <= 1000)) {
      std::cerr << "rdma_node: --resize \"" << item
                << "\" is not V=F (a version >= 1, a factor in (0, 1000])\n";
      return false;
    }
    flags->resize[static_cast<int>(version)] = factor;
  }
  return true;
}

int Main(int argc, char** argv) {
  // Whatever happens to the launcher (a test's deadline SIGKILLs it), no node outlives it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);

  Flags flags;
  std::vector<std::string> resize;
  CLI::App app("One node of a multi-process ftengine job (rdma tests)", "rdma_node");
  app.add_option("--k", flags.k)->check(CLI::Range(1, 63));
  app.add_option("--m", flags.m)->check(CLI::Range(1, 63));
  app.add_option("--cell-bytes", flags.cell_bytes)->check(CLI::Range(1u, 1u << 30));
  app.add_option("--regions", flags.regions, "Comma list of region sizes in bytes");
  app.add_option("--rank-regions", flags.rank_regions, "R=list: rank R's regions")
      ->allow_extra_args(false);
  app.add_option("--resize", resize, "V=F: regions at F times their size from version V")
      ->allow_extra_args(false);
  app.add_option("--domains", flags.domains)->check(CLI::Range(1u, 1u << 20));
  app.add_flag("--report-stores", flags.report_stores);
  app.add_option("--versions", flags.versions)->check(CLI::Range(0, 1000));
  app.add_option("--scenario", flags.scenario)
      ->check(CLI::IsMember({"verify", "survive", "deadline", "aborted-grow", "hang"}));
  app.add_option("--victim", flags.victim);
  app.add_option("--victim-dies-at", flags.dies_at)
      ->check(CLI::IsMember({"idle", "writing", "external"}));
  app.add_option("--kill-delay-us", flags.kill_delay_us)->check(CLI::Range(0, 10'000'000));
  app.add_option("--pair", flags.pair)->expected(2)->check(CLI::Range(0, 1 << 20));
  app.add_option("--grow-factor", flags.grow_factor)->check(CLI::Range(1.2, 100.0));
  app.add_option("--sync-dir", flags.sync_dir);
  app.add_option("--timeout-ms", flags.timeout_ms)->check(CLI::Range(1, 3'600'000));
  app.add_option("--delay-create-rank", flags.delay_create_rank);
  app.add_option("--delay-create-ms", flags.delay_create_ms)->check(CLI::Range(0, 600'000));
  app.add_flag("--start-barrier", flags.start_barrier);
  app.add_option("--max-attempts", flags.max_attempts)->check(CLI::Range(0, 1'000'000));
  app.add_option("--give-up-seconds", flags.give_up_seconds)->check(CLI::Range(0.1, 3600.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  // Every list is checked now, before any engine exists (the rank is known only later).
  if (!RegionSizes(flags, 0) || !ParseResize(resize, &flags)) return kExitUsage;
  const bool faulty = flags.scenario == "deadline" || flags.scenario == "aborted-grow";
  const bool victimized = flags.scenario == "survive" || flags.scenario == "hang";
  if ((victimized || faulty) && flags.sync_dir.empty()) {
    std::cerr << "rdma_node: --scenario " << flags.scenario << " needs --sync-dir\n";
    return kExitUsage;
  }
  if (victimized && flags.victim < 0) {
    std::cerr << "rdma_node: --scenario " << flags.scenario << " needs --victim\n";
    return kExitUsage;
  }
  if (flags.scenario == "verify" && flags.versions < 1) {
    std::cerr << "rdma_node: --scenario verify needs --versions 1 or more\n";
    return kExitUsage;
  }
  if (faulty && flags.pair[0] == flags.pair[1]) {
    std::cerr << "rdma_node: --pair needs two different ranks\n";
    return kExitUsage;
  }
  if (flags.start_barrier && flags.sync_dir.empty()) {
    std::cerr << "rdma_node: --start-barrier needs --sync-dir\n";
    return kExitUsage;
  }
  if (const char* rank = std::getenv("FT_RANK"); rank != nullptr && flags.delay_create_rank >= 0 &&
                                                 std::to_string(flags.delay_create_rank) == rank) {
    std::this_thread::sleep_for(std::chrono::milliseconds(flags.delay_create_ms));
  }

  EngineOptions options;
  options.k = flags.k;
  options.m = flags.m;
  options.cell_bytes = flags.cell_bytes;
  options.timeout = std::chrono::milliseconds(flags.timeout_ms);
  if (flags.domains > 0) {
    // The engine needs its domain before it exists: the rank from the launcher's environment
    // (when that is malformed, Create fails below and says so).
    if (Result<Bootstrap> boot = BootstrapFromEnvironment(); boot.ok()) {
      options.failure_domain = boot->rank % flags.domains;
    }
  }
  const auto faults = std::make_shared<verbs::FaultController>(/*seed=*/1);
  const auto create_start = Clock::now();
  Result<std::unique_ptr<Engine>> engine =
      faulty ? CreateFaultyEngine(options, faults) : Engine::CreateFromEnvironment(options);
  if (!engine.ok()) {
    const char* rank = std::getenv("FT_RANK");
    std::cerr << "rdma_node" << (rank != nullptr ? std::string(" FT_RANK=") + rank : "") << ": "
              << (faulty ? "creating the engine over a FaultyFabric" : "CreateFromEnvironment")
              << " failed after " << Seconds(SecondsSince(create_start))
              << " s: " << engine.status() << std::endl;
    return engine.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  const uint32_t rank = (*engine)->world().rank;
  const uint32_t size = (*engine)->world().size;
  g_who = "rdma_node rank " + std::to_string(rank);
  if (victimized && flags.victim >= static_cast<int>(size)) {
    std::cerr << g_who << ": --victim " << flags.victim << " is outside the world of " << size
              << "\n";
    return kExitUsage;
  }
  if (faulty && std::max(flags.pair[0], flags.pair[1]) >= static_cast<int>(size)) {
    std::cerr << g_who << ": --pair " << flags.pair[0] << " " << flags.pair[1]
              << " is outside the world of " << size << "\n";
    return kExitUsage;
  }

  if (flags.start_barrier) {
    if (std::string met = Meet(flags, "started", rank, size, -1); !met.empty()) {
      return Fail("--start-barrier: " + met);
    }
  }

  Regions regions(*RegionSizes(flags, rank));
  int status = kExitOk;
  if (Status protect = ProtectAll(**engine, regions); !protect.ok()) {
    status = Fail(protect.ToString());
  } else if (flags.scenario == "verify") {
    status = Verify(flags, **engine, regions);
  } else if (flags.scenario == "survive") {
    status = Survive(flags, **engine, regions);
  } else if (flags.scenario == "hang") {
    status = Hang(flags, **engine, regions);
  } else if (flags.scenario == "deadline") {
    status = Deadline(flags, **engine, regions, *faults);
  } else {
    status = AbortedGrow(flags, **engine, regions, *faults);
  }
  // The engine goes before the regions it protects. How long that takes is part of the result:
  // a process must be able to leave quickly, whatever happened to its job.
  const auto destroy_start = Clock::now();
  engine->reset();
  std::cout << "rank " << rank << " destroyed its engine in "
            << Seconds(SecondsSince(destroy_start)) << " s" << std::endl;
  return status;
}

}  // namespace
}  // namespace ft::rdma_node

int main(int argc, char** argv) { return ft::rdma_node::Main(argc, argv); }
