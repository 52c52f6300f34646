// Node memory: the registered buffers of one node's engine, apart from the application's regions
// and the control channel's buffers.
// - the store: remote-writable memory holding the fragments this node hosts for others;
// - the pipeline: pipeline_depth slots of k + m cells (bounce data cells and parity);
// - the header areas: one per column of this node's own fragments;
// - the pending copy: the image of the round in flight, for keep_local_copy.
// Buffers go to the NIC's NUMA node (Fabric::locality()) before they are registered, since pinned
// pages do not move. Worker-owned after Start; the buffers only grow.
#ifndef FT_ENGINE_NODE_MEMORY_H_
#define FT_ENGINE_NODE_MEMORY_H_

#include <cstdint>
#include <memory>

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

class NodeMemory {
 public:
  explicit NodeMemory(NodeContext& node) : node_(node) {}
  NodeMemory(const NodeMemory&) = delete;
  NodeMemory& operator=(const NodeMemory&) = delete;

  // Allocates (and first-touches) the pipeline: first-touching tens of MiB costs more than a
  // version, so it happens at Create, not in the first checkpoint.
  Status AllocatePipeline();
  // Registers a store of `bytes` if none exists yet (its size only grows: a later call asking for
  // less is a no-op). ResourceExhausted when the memory cannot be allocated or registered.
  Status EnsureStore(uint64_t bytes);
  Status EnsureHeaders(uint64_t bytes);
  Status EnsurePendingCopy(uint64_t bytes);

  // Moves a fresh buffer to the NIC's NUMA node when the fabric's locality says it is worth it.
  // A failure costs speed, not correctness: logged.
  void Place(AlignedBuffer& buffer) const;

  recovery::StoreKeys store_keys() const {
    return {reinterpret_cast<uint64_t>(store_.data()), store_mr_ ? store_mr_->rkey() : 0};
  }
  uint64_t store_bytes() const { return store_.size(); }
  std::byte* pipeline() const { return pipeline_.data(); }
  uint32_t pipeline_lkey() const { return pipeline_mr_->lkey(); }
  std::byte* headers() const { return headers_.data(); }
  uint32_t headers_lkey() const { return headers_mr_->lkey(); }
  AlignedBuffer& pending_copy() { return pending_copy_; }

  // Drops every registration (QPs that could address them must be gone first: verbs' order).
  void Deregister();

 private:
  NodeContext& node_;
  AlignedBuffer store_;
  std::unique_ptr<verbs::MemoryRegion> store_mr_;
  AlignedBuffer pipeline_;
  std::unique_ptr<verbs::MemoryRegion> pipeline_mr_;
  AlignedBuffer headers_;
  std::unique_ptr<verbs::MemoryRegion> headers_mr_;
  AlignedBuffer pending_copy_;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_NODE_MEMORY_H_
