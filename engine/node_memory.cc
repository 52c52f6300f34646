// Node memory (engine/node_memory.h): allocation, NUMA placement and registration of the store,
// pipeline and header buffers.
#include "engine/node_memory.h"

#include "common/log.h"

namespace ft::internal {

void PlaceNearDevice(const NodeContext& node, AlignedBuffer& buffer) {
  const verbs::DeviceLocality* locality = node.fabric->locality();
  if (locality == nullptr || !locality->binds() || buffer.size() == 0) return;
  if (Status placed = locality->BindMemory(buffer.data(), buffer.size()); !placed.ok()) {
    FT_LOG(kWarn) << "node " << node.rank() << ": " << placed;
  }
}

void NodeMemory::Place(AlignedBuffer& buffer) const { PlaceNearDevice(node_, buffer); }

Status NodeMemory::AllocatePipeline() {
  const EngineOptions& o = node_.options;
  const uint64_t width = static_cast<uint64_t>(o.k + o.m);
  FT_ASSIGN_OR_RETURN(pipeline_, AlignedBuffer::Allocate(o.pipeline_depth * width * o.cell_bytes));
  Place(pipeline_);
  FT_ASSIGN_OR_RETURN(pipeline_mr_, node_.fabric->RegisterMemory(pipeline_.data(), pipeline_.size(),
                                                                 verbs::kAccessLocalWrite));
  return Status();
}

Status NodeMemory::EnsureStore(uint64_t bytes) {
  if (store_.size() > 0 || bytes == 0) return Status();
  FT_ASSIGN_OR_RETURN(store_, AlignedBuffer::Allocate(bytes));
  Place(store_);
  FT_ASSIGN_OR_RETURN(
      store_mr_, node_.fabric->RegisterMemory(store_.data(), store_.size(),
                                              verbs::kAccessLocalWrite | verbs::kAccessRemoteWrite |
                                                  verbs::kAccessRemoteRead));
  return Status();
}

Status NodeMemory::EnsureHeaders(uint64_t bytes) {
  if (headers_.size() >= bytes) return Status();
  headers_mr_.reset();
  FT_ASSIGN_OR_RETURN(headers_, AlignedBuffer::Allocate(bytes));
  FT_ASSIGN_OR_RETURN(headers_mr_, node_.fabric->RegisterMemory(headers_.data(), headers_.size(),
                                                                verbs::kAccessLocalWrite));
  return Status();
}

Status NodeMemory::EnsurePendingCopy(uint64_t bytes) {
  if (pending_copy_.size() >= bytes) return Status();
  FT_ASSIGN_OR_RETURN(pending_copy_, AlignedBuffer::Allocate(bytes));
  return Status();
}

void NodeMemory::Deregister() {
  headers_mr_.reset();
  pipeline_mr_.reset();
  store_mr_.reset();
}

}  // namespace ft::internal
