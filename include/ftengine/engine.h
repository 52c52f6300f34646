// ft::Engine: one node's checkpoint engine.
//
// An application registers the memory that holds its state with Protect() and calls Checkpoint()
// on every node (a collective). Each checkpoint cuts the node's image (its protected regions
// concatenated in id order) into stripes of k data cells + m parity cells (Reed-Solomon, ISA-L),
// and WRITEs every cell one-sidedly into registered memory of k + m partner nodes. A version is
// committed when every node's fragments are in place; the committed version is never overwritten
// by the one in flight (two slots per fragment, version v uses slot v % 2).
//
//   auto engine = ft::Engine::CreateFromEnvironment(options);  // one process per node, rdma
//   FT_RETURN_IF_ERROR((*engine)->Protect(0, state.data(), state.size()));
//   ft::Result<uint64_t> version = (*engine)->Checkpoint();
//
// Thread-safety: all methods may be called from any thread; one background progress thread per
// engine drives the fabric. Protect/Unprotect/Checkpoint* from several threads at once are
// serialised; the calls are meant for the application's main thread.
//
// Errors: bad input returns InvalidArgument/FailedPrecondition and changes nothing. A failed
// checkpoint (a lost peer: Unavailable; the world cannot fit the images: ResourceExhausted; a
// deadline: DeadlineExceeded; the coordinator aborted it: Aborted) leaves the last committed
// version intact and the engine usable for the next attempt.
//
// Where engines come from: CreateFromEnvironment (a job launched by ftrun, srun or mpirun) or
// ft::LoopbackWorld (ftengine/loopback_world.h: N engines in one process).
#ifndef FTENGINE_ENGINE_H_
#define FTENGINE_ENGINE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ftengine/export.h"
#include "ftengine/status.h"

namespace ft {

namespace verbs {
class Fabric;
}  // namespace verbs
class Clock;  // common/clock.h: an injected time source (tests advance a manual clock)
namespace internal {
struct EngineFactory;
}  // namespace internal

struct EngineOptions {
  int k = 4;  // data cells per stripe
  int m = 2;  // parity cells per stripe: up to m lost holders per owner are survivable
  // Bytes per cell, >= 512 (smaller cells cost more per WRITE than they carry).
  uint64_t cell_bytes = 1 << 20;
  // Store bytes this node offers for others' fragments. 0 (the default): the coordinator sizes
  // every such store from the world's placement (every node's image and failure domain), at
  // the first checkpoint and again when an image outgrows its extents' slack (1/8); the store
  // holding the committed version stays registered until the next version commits. > 0: a
  // fixed store of that size (StoreBytesFor gives a node's fair share).
  uint64_t store_capacity = 0;
  // Failure domain (rack, switch, chassis). kOwnDomain: every node is its own domain.
  static constexpr uint32_t kOwnDomain = UINT32_MAX;
  uint32_t failure_domain = kOwnDomain;
  // Stripes encoded and in flight at once: bounds the pipeline's memory to
  // pipeline_depth x (k + m) x cell_bytes, whatever the image size (allocated at Create, which
  // refuses with ResourceExhausted a pipeline over half of the machine's memory).
  int pipeline_depth = 4;
  // Keep the last committed image in local memory too (fast rollback of a process that did not
  // lose its node). Costs one image of memory and one memcpy per checkpoint.
  bool keep_local_copy = false;
  // Bound on every collective wait (connecting, waiting for the coordinator, a checkpoint).
  std::chrono::milliseconds timeout{60'000};
  // Bound on the job's start (the smaller of this and `timeout`): the coordinator waits this long
  // for every rank to connect, a rank this long for the coordinator. A rank that died before it
  // connected (or was never started) ends the start on every node within it, named, instead of
  // after `timeout`. Raise it where the launcher starts ranks far apart. FT_STARTUP_TIMEOUT_MS
  // overrides it (Engine::CreateFromEnvironment).
  std::chrono::milliseconds startup_timeout{30'000};
  // Failure detection: every node WRITEs a heartbeat into the coordinator's memory (and the
  // coordinator into every node's) each interval; a peer whose heartbeat has not advanced for
  // heartbeat_misses intervals is lost. A node whose own progress stalled that long (a SIGSTOP,
  // a long stall) knows it was removed and fences itself. Raise the interval where processes
  // are starved of CPU (emulated or oversubscribed machines): a stall past the bound is a loss.
  // The launcher's FT_HEARTBEAT_INTERVAL_MS and FT_HEARTBEAT_MISSES override these
  // (Engine::CreateFromEnvironment).
  std::chrono::milliseconds heartbeat_interval{10};
  int heartbeat_misses = 3;
  // An idle spare's priority: when a rank is lost, the coordinator gives it to the spare whose
  // failure domain keeps the placement's rule (no two fragments of one owner in one domain),
  // and among those to the lowest priority, then the first launched. kLaunchOrder: after every
  // spare with a priority. FT_SPARE_PRIORITY overrides it (Engine::CreateFromEnvironment).
  static constexpr uint32_t kLaunchOrder = UINT32_MAX;
  uint32_t spare_priority = kLaunchOrder;
};

struct WorldInfo {
  uint32_t rank = 0;  // an idle spare: its spare number, size..size + spares - 1
  uint32_t size = 0;
  uint32_t coordinator = 0;  // the rank that commits versions
  uint32_t spares = 0;       // idle processes that wait to replace a lost rank (ftrun --spares)
};

struct EngineMetrics {
  uint64_t committed_version = 0;  // 0: none yet
  uint64_t checkpoints_committed = 0;
  uint64_t checkpoints_failed = 0;
  uint64_t image_bytes = 0;    // of the last checkpoint
  uint64_t bytes_written = 0;  // cells + headers WRITTEN to holders, all checkpoints
  uint64_t bounce_bytes = 0;   // data bytes copied because a cell straddled regions / tail
  uint64_t store_bytes = 0;    // registered store memory on this node
  // The last checkpoint, in seconds: from the call to GO (coordinator round trip + connects),
  // encoding + CRC, WRITEs in flight after the last stripe was encoded, commit wait, total.
  double last_prepare_seconds = 0;
  double last_encode_seconds = 0;
  double last_write_seconds = 0;
  double last_commit_seconds = 0;
  double last_total_seconds = 0;
  // The longest time this node's worker went between two heartbeats, in seconds: how close it
  // came to the failure detector's bound (heartbeat_interval x heartbeat_misses).
  double longest_heartbeat_gap_seconds = 0;
  // Where the store, buffers and progress thread were put (rdma: the NIC's NUMA node when the
  // machine has several), as one sentence; empty on the loopback fabric.
  std::string numa;
};

// What Recover() did, as this node saw it.
struct RecoveryReport {
  uint64_t version = 0;  // the version every member's protected regions hold now (0: none yet)
  uint64_t epoch = 0;    // the view the job runs in from now on
  std::vector<uint32_t> lost;    // the ranks that were lost, each served by a new process now
  bool replacement = false;      // this node is one of those processes: its image was rebuilt
  bool from_local_copy = false;  // rolled back from the local copy (keep_local_copy)
  // A replacement that was an idle spare: its store's memory was zeroed while it waited (the
  // coordinator's STORE_HINT), so the recovery did not wait for that.
  bool store_prepared = false;
  uint64_t restored_bytes = 0;  // this node's image
  // Seconds, measured on this node: from the Recover() call until the version was chosen and
  // every lost rank had a replacement (waiting), restoring the image, re-protecting (every owner
  // rewriting its fragments that lived on the lost nodes; on a replacement it includes waiting
  // for its store to be registered, which overlaps the restore), and the whole call. Reduced
  // redundancy: from this node learning of the loss (a replacement: its start) to full redundancy.
  double wait_seconds = 0;
  double restore_seconds = 0;
  double reprotect_seconds = 0;
  double total_seconds = 0;
  double reduced_redundancy_seconds = 0;
};

// One protected region of a node's image: its id and size.
struct ProtectedRegion {
  uint64_t id = 0;
  uint64_t bytes = 0;
  bool operator==(const ProtectedRegion&) const = default;
};
// A node protects at most this many regions at once (Protect refuses more).
inline constexpr uint32_t kMaxProtectedRegions = 4096;

// What a spare learns when it is given a lost rank (Engine::WaitForAssignment).
struct Assignment {
  uint32_t rank = 0;
  // The regions of that rank's committed image, by id (empty when nothing was committed): the
  // spare Protects regions of these ids and sizes, then calls Recover().
  std::vector<ProtectedRegion> layout;
};

class Engine;

// The outcome of CheckpointAsync. Wait() may be called once or several times (same answer).
class FT_EXPORT CheckpointHandle {
 public:
  CheckpointHandle() = default;
  // The committed version, or why the checkpoint failed.
  Result<uint64_t> Wait();
  // True when Wait() would not block.
  bool Ready() const;
  bool valid() const { return state_ != nullptr; }

  struct FT_HIDDEN State;  // internal

 private:
  friend class Engine;
  explicit CheckpointHandle(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

class FT_EXPORT Engine {
 public:
  // The engine of this process in a job launched by ftrun, srun or mpirun, over rdma: rank,
  // world size and the coordinator's address from the environment (ftengine/bootstrap.h), the
  // RDMA device that holds the address toward the coordinator (FT_DEVICE, FT_GID_INDEX and
  // FT_LISTEN override). Every process of the job calls it; the coordinator (rank 0) listens at
  // FT_COORDINATOR. Errors name the variable, device or address at fault; a coordinator that
  // does not answer within options.timeout gives DeadlineExceeded naming FT_COORDINATOR.
  static Result<std::unique_ptr<Engine>> CreateFromEnvironment(const EngineOptions& options);
  ~Engine();  // waits for a checkpoint in flight to end (bounded by options.timeout)
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Adds [ptr, ptr + bytes) to this node's image under `id` (regions are ordered by id). The
  // memory must stay valid until Unprotect(id) or the engine's destruction. Fails, changing
  // nothing, on a null pointer, 0 bytes, a duplicate id, an overlap with another region, while
  // a checkpoint is in flight (FailedPrecondition), or beyond kMaxProtectedRegions regions
  // (ResourceExhausted).
  Status Protect(uint64_t id, void* ptr, size_t bytes);
  Status Unprotect(uint64_t id);

  // Collective: every node calls it. Returns the committed version.
  Result<uint64_t> Checkpoint();
  // Starts a checkpoint and returns at once. CONTRACT: the application must not write its
  // protected memory until the handle is Ready() (cells are sent zero-copy from it); reading is
  // fine. Only one checkpoint may be in flight (FailedPrecondition otherwise).
  Result<CheckpointHandle> CheckpointAsync();

  // Reads this node's image of the last committed version back from its holders (one-sided
  // READs), checks every header and cell CRC, treats the fragments of `skip_columns` as lost and
  // rebuilds them by decoding (at most m), and writes the image into `out` (exactly image bytes).
  // DataLoss when CRCs fail on too many fragments. Not collective; no checkpoint may be in flight.
  Status ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns = {});

  // Copies the last committed image from the local copy back into the protected regions
  // (keep_local_copy only; the regions must have the committed sizes). Not collective.
  Status RestoreLocalCopy();

  // Collective over the job's members after a loss (the survivors and the processes that replace
  // the lost ranks): the coordinator installs a new view, picks the newest version every member
  // can restore, and each member's protected regions get that version (a survivor: from its
  // local copy or its own fragments; a replacement: rebuilt from its holders, decoding what is
  // lost); then every fragment that lived on a lost node is rewritten to its replacement, and
  // the call returns with full redundancy back. The regions must have the committed image's
  // size (a replacement Protects the same regions first). DataLoss naming the owners when more
  // than m fragments of some image are gone; FailedPrecondition naming the rank when a lost rank
  // gets no replacement within options.timeout; Aborted on a node that was itself removed.
  Result<RecoveryReport> Recover();

  // True for a spare: an idle process started to replace a lost rank (ftrun --spares), or one
  // started for a rank that died (ftrun --respawn: FT_RESPAWN_OF; LoopbackWorld::Replace), until
  // its first Recover() succeeds. A spare calls WaitForAssignment, Protects regions of the lost
  // rank's committed sizes and calls Recover() before anything else.
  bool IsSpare() const;
  // Blocks until the coordinator assigns this spare a lost rank (a process started for a given
  // rank has its rank already) and tells it the rank's committed region layout; from then on
  // this engine is that rank's (world().rank). DeadlineExceeded after `timeout`; Unavailable
  // when the coordinator was lost or the job ended; FailedPrecondition on an engine that is not
  // a spare. Once assigned, it returns the same assignment at once (until Recover()).
  Result<Assignment> WaitForAssignment(std::chrono::milliseconds timeout);
  // The region layout (ids and sizes) of this rank's committed image: the last committed
  // checkpoint's, the restored one after Recover(), or on a spare the lost rank's once
  // WaitForAssignment returned. Empty when nothing was committed.
  std::vector<ProtectedRegion> CommittedLayout() const;

  // Bytes of the image as protected now.
  uint64_t image_bytes() const;
  // True once this node knows of a lost node (a missed heartbeat, a broken link, the
  // coordinator's word) or knows it was itself removed: cheap, for polling inside a compute loop.
  // From then on Checkpoint() fails (Unavailable naming the lost nodes, or Aborted on a removed
  // node) until recovery.
  bool FailureDetected() const;
  EngineMetrics Metrics() const;
  const WorldInfo& world() const;
  const EngineOptions& options() const;

  // The store capacity a node needs to host k + m fragments of an image of `image_bytes` (two
  // slots each, with the extents' slack of 1/8): its fair share when every image has that size.
  static uint64_t StoreBytesFor(uint64_t image_bytes, const EngineOptions& options);

  struct PrivateTag {};
  class FT_HIDDEN Impl;
  // How an idle spare gets the fabric of the rank it is assigned (composition layer only).
  using FabricFor = std::function<Result<std::unique_ptr<verbs::Fabric>>(uint32_t rank)>;
  FT_HIDDEN Engine(PrivateTag, std::unique_ptr<Impl> impl);

 private:
  friend struct internal::EngineFactory;
  // The engine of node world.rank over a fabric the caller built (the loopback world, the rdma
  // fabric of a process): no verbs header is installed, so only this repository's composition
  // layer calls it, through internal::EngineFactory (engine/engine_factory.h).
  FT_HIDDEN static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                          const WorldInfo& world,
                                                          std::unique_ptr<verbs::Fabric> fabric);
  // The same, with every deadline and metric measured on `clock` (which must outlive the engine)
  // instead of the steady clock: tests drive deadlines with a manual clock, no sleeps.
  // `replacement`: the process replaces a lost rank; it joins the job at the coordinator's next
  // view and gets its image back in Recover().
  FT_HIDDEN static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                          const WorldInfo& world,
                                                          std::unique_ptr<verbs::Fabric> fabric,
                                                          Clock& clock, bool replacement = false);
  // An idle spare (world.rank >= world.size) over `fabric`; `fabric_for(rank)` gives the fabric
  // of the rank it is assigned (WaitForAssignment).
  FT_HIDDEN static Result<std::unique_ptr<Engine>> CreateSpare(
      const EngineOptions& options, const WorldInfo& world, std::unique_ptr<verbs::Fabric> fabric,
      Clock& clock, FabricFor fabric_for);

  FT_HIDDEN static Result<std::unique_ptr<Engine>> CreateAs(const EngineOptions& options,
                                                            const WorldInfo& world,
                                                            std::unique_ptr<verbs::Fabric> fabric,
                                                            Clock& clock, bool replacement,
                                                            bool spare, FabricFor fabric_for);

  std::unique_ptr<Impl> impl_;
};

}  // namespace ft

#endif  // FTENGINE_ENGINE_H_
