// rdma_node's parts (test/rdma_node*.cc): its flags, the application's regions and their
// patterns, and the read-back, meeting points and output its scenarios share. rdma_node is a
// test program (one node of a job under ftrun); see test/rdma_node.cc for what it does.
#ifndef FT_TEST_RDMA_NODE_H_
#define FT_TEST_RDMA_NODE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/status.h"

namespace ft::verbs {
class FaultController;
}  // namespace ft::verbs

namespace ft::rdma_node {

using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Flags {
  int k = 2;
  int m = 1;
  uint64_t cell_bytes = 4096;
  std::string regions = "65536";
  // "R=a,b,c": rank R's regions instead of --regions (uneven images).
  std::vector<std::string> rank_regions;
  // --resize V=F (verify): before the checkpoint of version V, every region is re-allocated at
  // F times its original size and protected again.
  std::map<int, double> resize;
  // > 0: EngineOptions::failure_domain = rank % domains.
  uint32_t domains = 0;
  // After each committed version: "rank R version V image I store S extents E".
  bool report_stores = false;
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
  // deadline, aborted-grow: the two ranks whose WRITEs to each other the fault catches.
  std::vector<int> pair = {1, 3};
  // aborted-grow: how much every region grows for version 2.
  double grow_factor = 3;
};

// The sizes of `rank`'s regions from --regions and --rank-regions; nullopt (after saying why
// on stderr) when any of those lists is malformed.
std::optional<std::vector<uint64_t>> RegionSizes(const Flags& flags, uint32_t rank);

extern std::string g_who;  // "rdma_node rank R" once the rank is known

// Prints `message` on stderr as this node's, and returns kExitFailure.
int Fail(const std::string& message);

std::string Seconds(double seconds);
double SecondsSince(Clock::time_point start);

// The application's memory: each region allocated on its own, at an odd offset (no alignment is
// promised to the engine), filled with the pattern of (rank, version, region).
class Regions {
 public:
  explicit Regions(std::vector<uint64_t> sizes);
  size_t count() const { return sizes_.size(); }
  std::byte* start(size_t r) const { return starts_[r]; }
  uint64_t size(size_t r) const { return sizes_[r]; }
  const std::vector<uint64_t>& sizes() const { return sizes_; }
  uint64_t image_bytes() const;
  void Fill(uint32_t rank, uint64_t version);

 private:
  std::vector<uint64_t> sizes_;
  std::vector<std::unique_ptr<std::byte[]>> storage_;
  std::vector<std::byte*> starts_;
};

// Protects every region of `regions` under its index.
Status ProtectAll(Engine& engine, const Regions& regions);
// Unprotects the regions, re-allocates them at `sizes` (new memory: the engine must not keep
// anything of the old) and protects them again.
Status Reallocate(Engine& engine, Regions& regions, std::vector<uint64_t> sizes);

// Fills the regions with the pattern of the version this checkpoint should commit (committed
// + 1: the coordinator numbers versions consecutively) and takes it.
Result<uint64_t> CheckpointNext(Engine& engine, Regions& regions, uint32_t rank);

// Reads the committed image back (treating `skip` as lost) and compares it with the pattern of
// `rank` at the committed version over regions of `sizes`. Empty when intact.
std::string ReadBack(Engine& engine, const std::vector<uint64_t>& sizes, uint32_t rank,
                     const std::vector<int>& skip);
// ReadBack with each of `lost`; the first problem, or empty.
std::string ReadBackEach(Engine& engine, const std::vector<uint64_t>& sizes, uint32_t rank,
                         const std::vector<std::vector<int>>& lost);
// The column sets a read-back treats as lost, within m: none, one data column (rank % k: a
// decode), and with m >= 2 a data and a parity column.
std::vector<std::vector<int>> LostColumns(int k, int m, uint32_t rank);

// "rank R <when> image I store S extents E": Metrics().store_bytes against StoreBytesFor of the
// protected image, for the tests to sum over the world.
void ReportStores(Engine& engine, const std::string& when);

// Creates DIR/<name>-<rank>, then waits (bounded) until every rank but `except` has created
// its own. Empty when they all did.
std::string Meet(const Flags& flags, const std::string& name, uint32_t rank, uint32_t size,
                 int except);

// Whether `message` names "node <node>" (not a longer number).
bool NamesNode(std::string_view message, int node);

// The scenarios (--scenario): each returns the exit status.
int Verify(const Flags& flags, Engine& engine, Regions& regions);
int Survive(const Flags& flags, Engine& engine, Regions& regions);
int Deadline(const Flags& flags, Engine& engine, Regions& regions, verbs::FaultController& faults);
int AbortedGrow(const Flags& flags, Engine& engine, Regions& regions,
                verbs::FaultController& faults);
int Hang(const Flags& flags, Engine& engine, Regions& regions);

}  // namespace ft::rdma_node

#endif  // FT_TEST_RDMA_NODE_H_
