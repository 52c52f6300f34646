// rdma_node: one node of a multi-process engine job, for the `rdma` tests (rdma_process_test runs
// it under ftrun, one process per node, in the soft-RoCE VM). Not a gtest: a program whose
// stdout line and exit status the test checks.
//
//   rdma_node --k K --m M --cell-bytes B --regions 4097,12289,777 --versions V
//             --scenario verify|survive [--victim R --victim-dies-at idle|writing|external]
//             [--sync-dir DIR] [--timeout-ms T]
//
// Each region of --regions is allocated on its own (at an odd offset: no alignment is promised
// to the engine) and protected under its index. Before each checkpoint every region is refilled
// with a pattern of (rank, version, region), the version being the one the checkpoint is
// expected to commit (committed + 1: the coordinator numbers versions consecutively).
//
// verify:  V checkpoints; ReadCommitted with column rank % k treated as lost (forces a decode)
//          and without, each compared byte for byte against the pattern of version V; a closing
//          Checkpoint() as a barrier (no store goes away while another rank still reads).
//          Prints "rank R verified version V".
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

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/status.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Flags {
  int k = 2;
  int m = 1;
  uint64_t cell_bytes = 4096;
  std::string regions = "65536";
  int versions = 2;
  std::string scenario = "verify";
  int victim = -1;
  std::string dies_at = "idle";
  int64_t kill_delay_us = 0;
  std::string sync_dir;
  int64_t timeout_ms = 20'000;
  // Startup: --delay-create-rank R sleeps --delay-create-ms before creating its engine (a
  // process that starts late); --start-barrier makes every rank wait, after creating its engine,
  // until every rank has one (files in --sync-dir), before its first checkpoint.
  int delay_create_rank = -1;
  int64_t delay_create_ms = 0;
  bool start_barrier = false;
  // survive: bounds on the survivors' loop of checkpoints after the first V.
  int max_attempts = 50;  // external: 0 = no bound on the count (the time bound stays)
  double give_up_seconds = 30;
};

std::string g_who = "rdma_node";  // "rdma_node rank R" once the rank is known

int Fail(const std::string& message) {
  std::cerr << g_who << ": " << message << std::endl;
  return kExitFailure;
}

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The bytes of `region` of `rank` at `version`.
void FillPattern(std::byte* out, size_t bytes, uint32_t rank, uint64_t version, uint32_t region) {
  const uint64_t seed = Mix((uint64_t{rank} << 48) ^ (version << 16) ^ region);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t word = Mix(seed + i / 8);
    std::memcpy(out + i, &word, std::min<size_t>(8, bytes - i));
  }
}

class Regions {
 public:
  explicit Regions(std::vector<uint64_t> sizes) : sizes_(std::move(sizes)) {
    for (size_t r = 0; r < sizes_.size(); ++r) {
      // Odd start offsets: registered memory need not be aligned.
      storage_.emplace_back(new std::byte[sizes_[r] + 8]);
      starts_.push_back(storage_.back().get() + (r * 3) % 8);
    }
  }
  size_t count() const { return sizes_.size(); }
  std::byte* start(size_t r) const { return starts_[r]; }
  uint64_t size(size_t r) const { return sizes_[r]; }
  uint64_t image_bytes() const {
    uint64_t total = 0;
    for (uint64_t s : sizes_) total += s;
    return total;
  }
  void Fill(uint32_t rank, uint64_t version) {
    for (size_t r = 0; r < sizes_.size(); ++r) {
      FillPattern(starts_[r], sizes_[r], rank, version, static_cast<uint32_t>(r));
    }
  }
  // The image (regions concatenated in id order) of `rank` at `version`.
  std::vector<std::byte> Expected(uint32_t rank, uint64_t version) const {
    std::vector<std::byte> image(image_bytes());
    uint64_t offset = 0;
    for (size_t r = 0; r < sizes_.size(); ++r) {
      FillPattern(image.data() + offset, sizes_[r], rank, version, static_cast<uint32_t>(r));
      offset += sizes_[r];
    }
    return image;
  }
  // Empty when equal; else where the first difference lies and how many bytes differ.
  std::string Compare(const std::vector<std::byte>& got, const std::vector<std::byte>& want) const {
    if (got.size() != want.size()) {
      return "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
    }
    if (std::memcmp(got.data(), want.data(), got.size()) == 0) return "";
    size_t first = 0;
    while (got[first] == want[first]) ++first;
    size_t differing = 0;
    for (size_t i = 0; i < got.size(); ++i) differing += got[i] != want[i] ? 1 : 0;
    uint64_t offset = first;
    size_t region = 0;
    while (region + 1 < sizes_.size() && offset >= sizes_[region]) offset -= sizes_[region++];
    std::ostringstream out;
    out << differing << " of " << got.size() << " bytes differ; the first at image offset " << first
        << " (region " << region << " offset " << offset << "): got 0x" << std::hex
        << std::to_integer<int>(got[first]) << ", want 0x" << std::to_integer<int>(want[first]);
    return out.str();
  }

 private:
  std::vector<uint64_t> sizes_;
  std::vector<std::unique_ptr<std::byte[]>> storage_;
  std::vector<std::byte*> starts_;
};

// Fills the regions with the pattern of the version this checkpoint should commit and takes it.
ft::Result<uint64_t> CheckpointNext(ft::Engine& engine, Regions& regions, uint32_t rank) {
  const uint64_t next = engine.Metrics().committed_version + 1;
  regions.Fill(rank, next);
  ft::Result<uint64_t> version = engine.Checkpoint();
  if (version.ok() && *version != next) {
    return ft::Status::Internal("Checkpoint() committed version ", *version, ", expected ", next,
                                " (the committed version + 1)");
  }
  return version;
}

// Reads the committed image back (treating `skip` as lost) and compares it with the pattern of
// the committed version. Empty when intact.
std::string ReadBack(ft::Engine& engine, const Regions& regions, uint32_t rank,
                     std::vector<int> skip) {
  const uint64_t committed = engine.Metrics().committed_version;
  std::vector<std::byte> back(regions.image_bytes(), std::byte{0xa5});
  std::string what = "ReadCommitted of version " + std::to_string(committed);
  if (!skip.empty()) what += " with column " + std::to_string(skip[0]) + " treated as lost";
  if (ft::Status read = engine.ReadCommitted(back, skip); !read.ok()) {
    return what + ": " + read.ToString();
  }
  if (std::string bad = regions.Compare(back, regions.Expected(rank, committed)); !bad.empty()) {
    return what + ": " + bad;
  }
  return "";
}

std::string Seconds(double seconds) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << seconds;
  return out.str();
}

// Creates DIR/<name>-<rank>, then waits (bounded) until every rank but `except` has created
// its own. Empty when they all did.
std::string Meet(const Flags& flags, const std::string& name, uint32_t rank, uint32_t size,
                 int except) {
  namespace fs = std::filesystem;
  const fs::path dir(flags.sync_dir);
  std::ofstream(dir / (name + "-" + std::to_string(rank))).put('\n');
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (true) {
    std::string missing;
    for (uint32_t r = 0; r < size; ++r) {
      if (static_cast<int>(r) == except) continue;
      if (!fs::exists(dir / (name + "-" + std::to_string(r)))) missing += " " + std::to_string(r);
    }
    if (missing.empty()) return "";
    if (Clock::now() > deadline)
      return "still no " + name + " file after 30 s from ranks" + missing;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int Verify(const Flags& flags, ft::Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  for (int i = 1; i <= flags.versions; ++i) {
    ft::Result<uint64_t> version = CheckpointNext(engine, regions, rank);
    if (!version.ok()) {
      return Fail("checkpoint " + std::to_string(i) + " of " + std::to_string(flags.versions) +
                  ": " + version.status().ToString());
    }
  }
  std::string problem;
  const ft::EngineMetrics metrics = engine.Metrics();
  if (metrics.committed_version != static_cast<uint64_t>(flags.versions)) {
    problem = "Metrics().committed_version is " + std::to_string(metrics.committed_version) +
              " after " + std::to_string(flags.versions) + " checkpoints";
  } else if (metrics.image_bytes != regions.image_bytes()) {
    problem = "Metrics().image_bytes is " + std::to_string(metrics.image_bytes) + ", protected " +
              std::to_string(regions.image_bytes());
  }
  if (problem.empty())
    problem = ReadBack(engine, regions, rank, {static_cast<int>(rank) % flags.k});
  if (problem.empty()) problem = ReadBack(engine, regions, rank, {});
  // The barrier: every rank has read back before any store goes away. It runs even after a
  // failed read-back, so that the other ranks' reads do not fail for our sake.
  if (ft::Result<uint64_t> barrier = engine.Checkpoint(); !barrier.ok()) {
    if (!problem.empty()) Fail(problem);
    return Fail("the closing checkpoint (a barrier): " + barrier.status().ToString());
  }
  if (!problem.empty()) return Fail(problem);
  std::cout << "rank " << rank << " verified version " << flags.versions << std::endl;
  return kExitOk;
}

bool NamesNode(std::string_view message, int node) {
  const std::string name = "node " + std::to_string(node);
  for (size_t at = message.find(name); at != std::string_view::npos;
       at = message.find(name, at + 1)) {
    const size_t end = at + name.size();
    if (end == message.size() || !std::isdigit(static_cast<unsigned char>(message[end]))) {
      return true;
    }
  }
  return false;
}

int Survive(const Flags& flags, ft::Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  const uint32_t size = engine.world().size;
  const bool victim = static_cast<int>(rank) == flags.victim;
  const bool external = flags.dies_at == "external";

  // 1. The first versions: everyone, the victim too (an external kill should come later).
  for (int i = 1; i <= flags.versions; ++i) {
    ft::Result<uint64_t> version = CheckpointNext(engine, regions, rank);
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
    ft::Result<ft::CheckpointHandle> handle = engine.CheckpointAsync();
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
  ft::Status failure;
  double failed_after = 0;
  int attempts = 0;
  while (failure.ok()) {
    if (Clock::now() > give_up ||
        (flags.max_attempts > 0 && attempts >= flags.max_attempts && !external)) {
      return Fail(std::string(victim ? "the victim was not killed" : "no checkpoint failed") +
                  " in " + std::to_string(attempts) + " attempts / " +
                  Seconds(std::chrono::duration<double>(Clock::now() - loop_start).count()) +
                  " s after version " + std::to_string(first_committed));
    }
    ++attempts;
    const auto start = Clock::now();
    ft::Result<uint64_t> version = CheckpointNext(engine, regions, rank);
    if (!version.ok()) {
      failure = version.status();
      failed_after = std::chrono::duration<double>(Clock::now() - start).count();
    }
  }
  if (victim) return Fail("the victim's checkpoint failed: " + failure.ToString());

  // 4. The failure must say which node was lost; the committed version must be intact.
  std::string problem;
  if (failure.code() != ft::StatusCode::kUnavailable &&
      failure.code() != ft::StatusCode::kAborted) {
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
    if (ft::Status read = engine.ReadCommitted(back); read.code() != ft::StatusCode::kNotFound) {
      problem =
          "ReadCommitted with nothing committed returned " + read.ToString() + ", not NotFound";
    }
  }
  if (problem.empty() && committed > 0) problem = ReadBack(engine, regions, rank, {});
  if (problem.empty() && committed > 0 && flags.m >= 2) {
    // One column more treated as lost: the victim's and this one are at most m.
    problem = ReadBack(engine, regions, rank, {static_cast<int>(rank) % flags.k});
  }
  const std::string met = Meet(flags, "done", rank, size, flags.victim);
  if (!problem.empty()) return Fail(problem + " (failing call: " + failure.ToString() + ")");
  if (!met.empty()) return Fail(met);
  std::cout << "rank " << rank << " lost node " << flags.victim << " after "
            << Seconds(failed_after) << " s; committed version " << committed << " intact ("
            << failure.ToString() << ")" << std::endl;
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Whatever happens to the launcher (a test's deadline SIGKILLs it), no node outlives it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);

  Flags flags;
  CLI::App app("One node of a multi-process ftengine job (rdma tests)", "rdma_node");
  app.add_option("--k", flags.k)->check(CLI::Range(1, 63));
  app.add_option("--m", flags.m)->check(CLI::Range(1, 63));
  app.add_option("--cell-bytes", flags.cell_bytes)->check(CLI::Range(1u, 1u << 30));
  app.add_option("--regions", flags.regions, "Comma list of region sizes in bytes");
  app.add_option("--versions", flags.versions)->check(CLI::Range(0, 1000));
  app.add_option("--scenario", flags.scenario)->check(CLI::IsMember({"verify", "survive"}));
  app.add_option("--victim", flags.victim);
  app.add_option("--victim-dies-at", flags.dies_at)
      ->check(CLI::IsMember({"idle", "writing", "external"}));
  app.add_option("--kill-delay-us", flags.kill_delay_us)->check(CLI::Range(0, 10'000'000));
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
  std::vector<uint64_t> sizes;
  {
    std::istringstream list(flags.regions);
    for (std::string item; std::getline(list, item, ',');) {
      char* end = nullptr;
      const unsigned long long value = std::strtoull(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || value == 0) {
        std::cerr << "rdma_node: --regions \"" << flags.regions
                  << "\": each item must be a positive byte count\n";
        return kExitUsage;
      }
      sizes.push_back(value);
    }
  }
  if (sizes.empty()) {
    std::cerr << "rdma_node: --regions is empty\n";
    return kExitUsage;
  }
  if (flags.scenario == "survive" && (flags.victim < 0 || flags.sync_dir.empty())) {
    std::cerr << "rdma_node: --scenario survive needs --victim and --sync-dir\n";
    return kExitUsage;
  }
  if (flags.scenario == "verify" && flags.versions < 1) {
    std::cerr << "rdma_node: --scenario verify needs --versions 1 or more\n";
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

  ft::EngineOptions options;
  options.k = flags.k;
  options.m = flags.m;
  options.cell_bytes = flags.cell_bytes;
  options.timeout = std::chrono::milliseconds(flags.timeout_ms);
  const auto create_start = Clock::now();
  ft::Result<std::unique_ptr<ft::Engine>> engine = ft::Engine::CreateFromEnvironment(options);
  if (!engine.ok()) {
    const char* rank = std::getenv("FT_RANK");
    std::cerr << "rdma_node" << (rank != nullptr ? std::string(" FT_RANK=") + rank : "")
              << ": CreateFromEnvironment failed after "
              << Seconds(std::chrono::duration<double>(Clock::now() - create_start).count())
              << " s: " << engine.status() << std::endl;
    return engine.status().code() == ft::StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  const uint32_t rank = (*engine)->world().rank;
  const uint32_t size = (*engine)->world().size;
  g_who = "rdma_node rank " + std::to_string(rank);
  if (flags.scenario == "survive" && flags.victim >= static_cast<int>(size)) {
    std::cerr << g_who << ": --victim " << flags.victim << " is outside the world of " << size
              << "\n";
    return kExitUsage;
  }

  if (flags.start_barrier) {
    if (std::string met = Meet(flags, "started", rank, size, -1); !met.empty()) {
      return Fail("--start-barrier: " + met);
    }
  }

  Regions regions(std::move(sizes));
  for (size_t r = 0; r < regions.count(); ++r) {
    if (ft::Status status = (*engine)->Protect(r, regions.start(r), regions.size(r));
        !status.ok()) {
      return Fail("Protect(" + std::to_string(r) + "): " + status.ToString());
    }
  }
  const int status = flags.scenario == "verify" ? Verify(flags, **engine, regions)
                                                : Survive(flags, **engine, regions);
  // The engine goes before the regions it protects. How long that takes is part of the result:
  // a process must be able to leave quickly, whatever happened to its job.
  const auto destroy_start = Clock::now();
  engine->reset();
  std::cout << "rank " << rank << " destroyed its engine in "
            << Seconds(std::chrono::duration<double>(Clock::now() - destroy_start).count()) << " s"
            << std::endl;
  return status;
}
