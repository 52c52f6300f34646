// What the application's threads (the API, engine.cc) and the engine's worker thread share, all
// guarded by one mutex: the protected regions, the requests handed to the worker, the metrics and
// the local copy of the committed image. Nothing else crosses the thread boundary.
#ifndef FT_ENGINE_SHARED_STATE_H_
#define FT_ENGINE_SHARED_STATE_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "engine/buffer.h"
#include "ftengine/engine.h"
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

struct SharedState {
  mutable std::mutex mutex;
  std::condition_variable cv;  // ReadRequest::done
  std::map<uint64_t, Region> regions;
  bool in_flight = false;       // a checkpoint was started and has not completed
  bool read_in_flight = false;  // a ReadCommitted is running
  bool stop = false;
  std::shared_ptr<CheckpointHandle::State> pending_checkpoint;  // not yet taken by the worker
  ReadRequest* pending_read = nullptr;
  EngineMetrics metrics;
  AlignedBuffer local_copy;  // the last committed image (keep_local_copy)
  uint64_t local_copy_bytes = 0;
};

}  // namespace internal
}  // namespace ft

#endif  // FT_ENGINE_SHARED_STATE_H_
