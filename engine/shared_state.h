// What the application's threads (the API, engine.cc) and the engine's worker thread share, all
// guarded by one mutex: the protected regions, the requests handed to the worker, the metrics and
// the local copy of the committed image. Nothing else crosses the thread boundary.
#ifndef FT_ENGINE_SHARED_STATE_H_
#define FT_ENGINE_SHARED_STATE_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/buffer.h"
#include "ftengine/engine.h"
#include "recovery/protocol.h"
#include "verbs/fabric.h"

namespace ft {

// The outcome of one checkpoint, completed exactly once by the worker (or, when the engine is
// destroyed before the worker took the request, by the destructor).
struct CheckpointHandle::State {
  void Complete(Status status, uint64_t committed) {
    {
      std::lock_guard lock(mutex);
      if (done) return;
      result = std::move(status);
      version = committed;
      done = true;
    }
    cv.notify_all();
  }
  mutable std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  Status result;
  uint64_t version = 0;
};

namespace internal {

struct Region {
  std::byte* ptr = nullptr;
  size_t bytes = 0;
  std::unique_ptr<verbs::MemoryRegion> mr;
};

// A region as a round uses it: snapshotted when the round starts (Protect/Unprotect are refused
// until it ends, so the pointers and keys stay valid).
struct RegionRef {
  std::byte* ptr = nullptr;
  uint64_t bytes = 0;
  uint32_t lkey = 0;
};

// A synchronous ReadCommitted from an application thread.
struct ReadRequest {
  std::span<std::byte> out;
  std::vector<int> skip_columns;
  Status result;
  bool done = false;
};

// A Recover() from an application thread: the worker answers it when the coordinator's recovery
// ended (COMMIT or ABORT of the new view), or at its deadline.
struct RecoverRequest {
  Status result;
  RecoveryReport report;
  bool done = false;
};

struct SharedState {
  mutable std::mutex mutex;
  std::condition_variable cv;  // ReadRequest::done
  std::map<uint64_t, Region> regions;
  bool in_flight = false;       // a checkpoint was started and has not completed
  bool read_in_flight = false;  // a ReadCommitted is running
  bool stop = false;
  std::shared_ptr<CheckpointHandle::State> pending_checkpoint;  // not yet taken by the worker
  ReadRequest* pending_read = nullptr;
  bool recover_in_flight = false;
  RecoverRequest* pending_recover = nullptr;
  EngineMetrics metrics;
  AlignedBuffer local_copy;  // the last committed image (keep_local_copy)
  uint64_t local_copy_bytes = 0;
  uint64_t local_copy_version = 0;
  // Failures this node knows of: the nodes lost (in the order learnt, each once, with why) and,
  // on a node that found itself removed (it stalled past the heartbeat bound), why. Checkpoints
  // are refused from then on; failure_detected mirrors "any of these" for a lock-free poll.
  std::vector<std::pair<uint32_t, std::string>> lost_nodes;
  Status removed;
  std::atomic<bool> failure_detected{false};
  // A replacement process that has not recovered yet (Engine::IsSpare).
  std::atomic<bool> spare{false};
  // The region layout of this rank's committed image (Engine::CommittedLayout): the last
  // committed round's, or on a replacement the lost rank's, as the coordinator sent it once the
  // replacement joined (layout_assigned; cv is notified).
  std::vector<ProtectedRegion> committed_layout;
  bool layout_assigned = false;
  // A spare's store memory, zeroed while it waited (STORE_HINT): the replacement registers it
  // instead of allocating its store in the recovery. Invalid when there is none.
  std::future<Result<AlignedBuffer>> spare_store;
};

// A layout as the public API gives it.
inline std::vector<ProtectedRegion> ProtectedRegionsOf(
    std::span<const recovery::LayoutRegion> layout) {
  std::vector<ProtectedRegion> regions;
  regions.reserve(layout.size());
  for (const recovery::LayoutRegion& region : layout) regions.push_back({region.id, region.bytes});
  return regions;
}

// The layout of the regions (the caller holds the mutex).
inline std::vector<recovery::LayoutRegion> LayoutOf(const std::map<uint64_t, Region>& regions) {
  std::vector<recovery::LayoutRegion> layout;
  layout.reserve(regions.size());
  for (const auto& [id, region] : regions) layout.push_back({id, region.bytes});
  return layout;
}

// What a failure this node knows of means for its next checkpoint (the caller holds the mutex):
// OK when none; the removal (Aborted) on a removed node; else Unavailable naming every lost node.
inline Status KnownFailure(const SharedState& shared, uint32_t rank) {
  if (!shared.removed.ok()) return shared.removed;
  if (shared.lost_nodes.empty()) return Status();
  std::string names;
  for (const auto& [node, why] : shared.lost_nodes) {
    names += StrCat(names.empty() ? "" : ", ", "node ", node, " (", why, ")");
  }
  return Status::Unavailable("node ", rank, " knows of lost nodes: ", names,
                             "; recovery is needed before the next checkpoint");
}

}  // namespace internal
}  // namespace ft

#endif  // FT_ENGINE_SHARED_STATE_H_
