// Node memory: the registered buffers of one node's engine, apart from the application's regions
// and the control channel's buffers.
// - the store: remote-writable memory holding the fragments this node hosts for others. Its
//   size is fixed (EngineOptions::store_capacity) or set by the coordinator (GROW). A grown store
//   is a new registration: the one it replaces stays registered while it holds the fragments of
//   the committed version (a *retired* store), so the committed version stays readable and no
//   WRITE of the round under the new placement can reach it;
// - the pipeline: pipeline_depth slots of k + m cells (bounce data cells and parity);
// - the header areas: one per column of this node's own fragments;
// - the pending copy: the image of the round in flight, for keep_local_copy.
// Buffers go to the NIC's NUMA node (Fabric::locality()) before they are registered, since pinned
// pages do not move. Worker-owned after Start; the buffers only grow.
#ifndef FT_ENGINE_NODE_MEMORY_H_
#define FT_ENGINE_NODE_MEMORY_H_

#include <cstdint>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/buffer.h"
#include "engine/node_context.h"
#include "ftengine/status.h"
#include "recovery/connection.h"
#include "verbs/fabric.h"

namespace ft::internal {

// Moves a fresh buffer to the NIC's NUMA node when the fabric's locality says it is worth it
// (before it is registered: pinned pages do not move). A failure costs speed, not correctness:
// logged. Every registered buffer of the engine goes through it.
void PlaceNearDevice(const NodeContext& node, AlignedBuffer& buffer);

// This machine's physical memory (0 when unknown).
uint64_t PhysicalMemoryBytes();

class NodeMemory {
 public:
  explicit NodeMemory(NodeContext& node) : node_(node) {}
  NodeMemory(const NodeMemory&) = delete;
  NodeMemory& operator=(const NodeMemory&) = delete;

  // Allocates (and first-touches) the pipeline: first-touching tens of MiB costs more than a
  // version, so it happens at Create, not in the first checkpoint.
  Status AllocatePipeline();
  // Registers a store of `bytes` if none exists yet (a fixed capacity, at start). ResourceExhausted
  // when the memory cannot be allocated or registered.
  Status EnsureStore(uint64_t bytes);
  // Starts registering a new store of `bytes` to become the current one (the coordinator's
  // GROW), on a thread of its own: allocating, first-touching and pinning gigabytes takes
  // seconds, and the worker must keep beating its heartbeat meanwhile. The store it replaces is
  // kept, retired, when its id is `keep_id` (it holds the committed version's fragments);
  // otherwise it goes at once, with every retired store of another id. ResourceExhausted at once
  // when the stores would exceed 90% of the machine's memory (changing nothing). A replacement
  // still running from an earlier round is waited for first. `prepared`: memory zeroed
  // beforehand (an idle spare's, SharedState::spare_store), registered instead of new memory
  // when it is at least `bytes`.
  Status StartReplaceStore(uint64_t bytes, uint64_t keep_id,
                           std::future<Result<AlignedBuffer>> prepared = {});
  // Not yet: nullopt. Done: OK (the new store is the current one) or why it could not be had
  // (ResourceExhausted; the current store is then none, or the kept one).
  std::optional<Status> PollReplaceStore();
  bool replacing_store() const { return replacing_.valid(); }
  // Drops the retired stores whose id is not `keep_id` (a later version committed).
  void DropRetiredStores(uint64_t keep_id);
  // The memory of the store `id` (current or retired); empty when there is none.
  std::span<const std::byte> StoreById(uint64_t id) const;
  // Ids grow with every store registered; 0: no store.
  uint64_t store_id() const { return store_.id; }
  uint64_t retired_store_bytes() const;
  Status EnsureHeaders(uint64_t bytes);
  Status EnsurePendingCopy(uint64_t bytes);

  // Moves a fresh buffer to the NIC's NUMA node when the fabric's locality says it is worth it.
  // A failure costs speed, not correctness: logged.
  void Place(AlignedBuffer& buffer) const;

  recovery::StoreKeys store_keys() const {
    return {reinterpret_cast<uint64_t>(store_.buffer.data()), store_.mr ? store_.mr->rkey() : 0};
  }
  uint64_t store_bytes() const { return store_.buffer.size(); }
  // The current store's memory was zeroed before it was asked for (StartReplaceStore's
  // `prepared`).
  bool store_prepared() const { return store_.prepared; }
  std::byte* pipeline() const { return pipeline_.data(); }
  uint32_t pipeline_lkey() const { return pipeline_mr_->lkey(); }
  std::byte* headers() const { return headers_.data(); }
  uint32_t headers_lkey() const { return headers_mr_->lkey(); }
  AlignedBuffer& pending_copy() { return pending_copy_; }

  // Drops every registration (QPs that could address them must be gone first: verbs' order).
  void Deregister();

 private:
  struct Store {
    uint64_t id = 0;
    bool prepared = false;  // its memory was zeroed beforehand (a spare's)
    AlignedBuffer buffer;
    std::unique_ptr<verbs::MemoryRegion> mr;
  };
  Result<Store> RegisterStore(uint64_t bytes);
  // Allocates, places and registers a store's memory (any thread: touches nothing of this
  // object but the fabric, which is thread-safe). The caller gives it its id.
  // `prepared`: memory zeroed beforehand (a spare's), used when it is large enough.
  static Result<Store> AllocateStore(const NodeContext& node, uint64_t bytes,
                                     std::future<Result<AlignedBuffer>> prepared = {});
  Status InstallStore(Result<Store> grown);
  // Deregisters and frees a store on a thread of its own: unpinning and unmapping gigabytes
  // takes long enough to stall the worker past the heartbeat's bound.
  void ReleaseInBackground(Store store);

  NodeContext& node_;
  Store store_;
  std::vector<Store> retired_;
  uint64_t last_store_id_ = 0;
  AlignedBuffer pipeline_;
  std::unique_ptr<verbs::MemoryRegion> pipeline_mr_;
  AlignedBuffer headers_;
  std::unique_ptr<verbs::MemoryRegion> headers_mr_;
  AlignedBuffer pending_copy_;
  std::future<Result<Store>> replacing_;  // StartReplaceStore's thread
  uint64_t replacing_keep_id_ = 0;
  std::vector<std::future<void>> releasing_;  // ReleaseInBackground's threads
};

}  // namespace ft::internal

#endif  // FT_ENGINE_NODE_MEMORY_H_
