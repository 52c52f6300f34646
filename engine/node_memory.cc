// Node memory (engine/node_memory.h): allocation, NUMA placement and registration of the store,
// pipeline and header buffers.
#include "engine/node_memory.h"

#include <unistd.h>

#include <chrono>
#include <utility>

#include "common/log.h"

namespace ft::internal {

void PlaceNearDevice(const NodeContext& node, AlignedBuffer& buffer) {
  const verbs::DeviceLocality* locality = node.fabric->locality();
  if (locality == nullptr || !locality->binds() || buffer.size() == 0) return;
  if (Status placed = locality->BindMemory(buffer.data(), buffer.size()); !placed.ok()) {
    FT_LOG(kWarn) << "node " << node.rank() << ": " << placed;
  }
}

uint64_t PhysicalMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
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

Result<NodeMemory::Store> NodeMemory::AllocateStore(const NodeContext& node, uint64_t bytes,
                                                    std::future<Result<AlignedBuffer>> prepared) {
  Store store;
  if (prepared.valid()) {
    // Memory a spare zeroed while it waited: used if it came and is large enough.
    Result<AlignedBuffer> ready = prepared.get();
    if (ready.ok() && ready->size() >= bytes) {
      store.buffer = std::move(ready).value();
      store.prepared = true;
    } else {
      FT_LOG(kInfo) << "node " << node.rank() << ": the store this spare prepared ("
                    << (ready.ok() ? StrCat(ready->size(), " bytes") : ready.status().ToString())
                    << ") does not do for " << bytes << " bytes";
    }
  }
  if (store.buffer.size() == 0) {
    FT_ASSIGN_OR_RETURN(store.buffer, AlignedBuffer::Allocate(bytes));
  }
  PlaceNearDevice(node, store.buffer);
  FT_ASSIGN_OR_RETURN(
      store.mr, node.fabric->RegisterMemory(store.buffer.data(), store.buffer.size(),
                                            verbs::kAccessLocalWrite | verbs::kAccessRemoteWrite |
                                                verbs::kAccessRemoteRead));
  return store;
}

Result<NodeMemory::Store> NodeMemory::RegisterStore(uint64_t bytes) {
  FT_ASSIGN_OR_RETURN(Store store, AllocateStore(node_, bytes));
  store.id = ++last_store_id_;
  return store;
}

Status NodeMemory::EnsureStore(uint64_t bytes) {
  if (store_.id != 0 || bytes == 0) return Status();
  FT_ASSIGN_OR_RETURN(store_, RegisterStore(bytes));
  return Status();
}

uint64_t NodeMemory::retired_store_bytes() const {
  uint64_t bytes = 0;
  for (const Store& store : retired_) bytes += store.buffer.size();
  return bytes;
}

Status NodeMemory::StartReplaceStore(uint64_t bytes, uint64_t keep_id,
                                     std::future<Result<AlignedBuffer>> prepared) {
  if (replacing_.valid()) {
    // An earlier round's replacement (it gave up before the store came): take it, whatever it
    // gave, before deciding what this one needs.
    (void)InstallStore(replacing_.get());
  }
  const uint64_t kept = store_.id == keep_id ? store_.buffer.size() : 0;
  uint64_t retired = 0;
  for (const Store& store : retired_) {
    if (store.id == keep_id) retired += store.buffer.size();
  }
  if (const uint64_t memory = PhysicalMemoryBytes();
      memory > 0 && bytes + kept + retired > memory / 10 * 9) {
    return Status::ResourceExhausted(
        "node ", node_.rank(), ": the placement needs a store of ", bytes, " bytes",
        kept + retired > 0
            ? StrCat(" besides the ", kept + retired, " bytes that hold the committed version")
            : std::string(),
        "; this machine has ", memory, " bytes");
  }
  // Holds nothing committed: its memory goes first.
  if (store_.id != keep_id) ReleaseInBackground(std::exchange(store_, Store{}));
  replacing_keep_id_ = keep_id;
  // The worker sleeps until something happens: the allocation ends its wait when it is done.
  replacing_ = std::async(std::launch::async,
                          [&node = node_, bytes, prepared = std::move(prepared)]() mutable {
                            Result<Store> store = AllocateStore(node, bytes, std::move(prepared));
                            node.fabric->Interrupt();
                            return store;
                          });
  return Status();
}

std::optional<Status> NodeMemory::PollReplaceStore() {
  if (!replacing_.valid()) return std::nullopt;
  if (replacing_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return std::nullopt;
  }
  return InstallStore(replacing_.get());
}

Status NodeMemory::InstallStore(Result<Store> grown) {
  if (!grown.ok()) return grown.status();
  grown->id = ++last_store_id_;
  if (store_.id == replacing_keep_id_ && store_.id != 0) retired_.push_back(std::move(store_));
  store_ = std::move(grown).value();
  DropRetiredStores(replacing_keep_id_);
  return Status();
}

void NodeMemory::DropRetiredStores(uint64_t keep_id) {
  for (Store& store : retired_) {
    if (store.id != keep_id) ReleaseInBackground(std::move(store));
  }
  std::erase_if(retired_, [keep_id](const Store& store) { return store.id != keep_id; });
}

void NodeMemory::ReleaseInBackground(Store store) {
  std::erase_if(releasing_, [](const std::future<void>& done) {
    return done.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  });
  if (!store.mr && store.buffer.size() == 0) return;
  auto owned = std::make_shared<Store>(std::move(store));
  releasing_.push_back(std::async(std::launch::async, [owned]() mutable { owned.reset(); }));
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
  if (replacing_.valid()) replacing_.wait();  // its registration goes with the others
  (void)PollReplaceStore();
  for (std::future<void>& release : releasing_) release.wait();
  releasing_.clear();
  headers_mr_.reset();
  pipeline_mr_.reset();
  store_.mr.reset();
  for (Store& store : retired_) store.mr.reset();
}

std::span<const std::byte> NodeMemory::StoreById(uint64_t id) const {
  if (id == 0) return {};
  if (store_.id == id) return {store_.buffer.data(), store_.buffer.size()};
  for (const Store& retired : retired_) {
    if (retired.id == id) return {retired.buffer.data(), retired.buffer.size()};
  }
  return {};
}

}  // namespace ft::internal
