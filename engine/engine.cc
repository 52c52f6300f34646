// ft::Engine (include/ftengine/engine.h): argument checking and the API calls of application
// threads. Every call that needs the fabric is handed to the worker (engine/worker.h) through the
// shared state (engine/shared_state.h); see docs/architecture.md for the parts and the data flow
// and docs/NOTES.md for the invariants.
#include "ftengine/engine.h"

#include <algorithm>
#include <cstring>

#include "common/clock.h"
#include "engine/node_context.h"
#include "engine/node_memory.h"
#include "engine/shared_state.h"
#include "engine/spare_link.h"
#include "engine/worker.h"
#include "erasure/codec.h"
#include "erasure/fragment.h"
#include "erasure/geometry.h"
#include "recovery/placement.h"
#include "recovery/spare_choice.h"
#include "verbs/fabric.h"

namespace ft {
namespace {

constexpr uint64_t kMinCellBytes = 512;
static_assert(kMaxProtectedRegions == recovery::kMaxLayoutRegions);
// SpareLink hands EngineOptions::spare_priority to the coordinator's choice as it is.
static_assert(EngineOptions::kLaunchOrder == recovery::kLaunchOrderPriority);

}  // namespace

Result<uint64_t> CheckpointHandle::Wait() {
  if (state_ == nullptr) return Status::FailedPrecondition("Wait() on an empty CheckpointHandle");
  std::unique_lock lock(state_->mutex);
  // Every handle is completed: by the worker on success, failure, deadline or abandonment, or by
  // the engine's destruction when the worker never took it.
  state_->cv.wait(lock, [&] { return state_->done; });
  if (!state_->result.ok()) return state_->result;
  return state_->version;
}

bool CheckpointHandle::Ready() const {
  if (state_ == nullptr) return false;
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

class Engine::Impl {
 public:
  Impl(const EngineOptions& options, const WorldInfo& world, Clock& clock,
       std::unique_ptr<verbs::Fabric> fabric, std::unique_ptr<erasure::Codec> codec)
      : node_(options, world, clock, std::move(fabric), std::move(codec)),
        worker_(std::make_unique<internal::Worker>(node_, shared_)) {}
  ~Impl() { Stop(); }

  Status Start() { return worker_->Start(); }
  void set_replacement(bool replacement) {
    node_.replacement = replacement;
    shared_.spare.store(replacement, std::memory_order_release);
  }
  bool IsSpare() const { return shared_.spare.load(std::memory_order_acquire); }
  void Stop();

  // An idle spare: connected to the coordinator by its spare link only (no worker runs).
  Status StartSpare(Engine::FabricFor fabric_for) {
    fabric_for_ = std::move(fabric_for);
    shared_.spare.store(true, std::memory_order_release);
    FT_ASSIGN_OR_RETURN(
        spare_link_,
        internal::SpareLink::Connect(*node_.fabric, node_.rank(), node_.options.spare_priority,
                                     node_.domain, node_.world.coordinator, node_.options.timeout));
    return Status();
  }
  bool idle_spare() const { return spare_link_ != nullptr; }
  Result<recovery::AssignMessage> WaitAssigned(std::chrono::milliseconds timeout) {
    return spare_link_->WaitForAssignment(timeout, node_.clock);
  }
  // The store memory an idle spare zeroed while it waited, for the replacement it becomes.
  std::future<Result<internal::AlignedBuffer>> TakeSpareStore() { return spare_link_->TakeStore(); }
  void AdoptSpareStore(std::future<Result<internal::AlignedBuffer>> store) {
    std::lock_guard lock(shared_.mutex);
    shared_.spare_store = std::move(store);
  }
  // A replacement: waits (until `deadline` on the engine's clock) for the coordinator to send
  // its rank's committed layout, which it does once the replacement joined.
  Result<std::vector<ProtectedRegion>> WaitForLayout(Nanos deadline);
  std::vector<ProtectedRegion> CommittedLayout() const {
    std::lock_guard lock(shared_.mutex);
    return shared_.committed_layout;
  }
  const Engine::FabricFor& fabric_for() const { return fabric_for_; }
  Clock& clock() const { return node_.clock; }

  Status Protect(uint64_t id, void* ptr, size_t bytes);
  Status Unprotect(uint64_t id);
  Result<CheckpointHandle> CheckpointAsync();
  Status ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns);
  Status RestoreLocalCopy();
  Result<RecoveryReport> Recover();
  uint64_t image_bytes() const;
  EngineMetrics Metrics() const {
    std::lock_guard lock(shared_.mutex);
    return shared_.metrics;
  }
  const WorldInfo& world() const { return node_.world; }
  const EngineOptions& options() const { return node_.options; }
  bool FailureDetected() const { return shared_.failure_detected.load(std::memory_order_acquire); }

 private:
  // Declared in this order: the worker uses both, and is destroyed first.
  internal::NodeContext node_;
  internal::SharedState shared_;
  std::unique_ptr<internal::Worker> worker_;
  std::unique_ptr<internal::SpareLink> spare_link_;  // before the fabric in node_ goes
  Engine::FabricFor fabric_for_;
};

void Engine::Impl::Stop() {
  {
    std::lock_guard lock(shared_.mutex);
    if (shared_.stop) return;
    shared_.stop = true;
  }
  worker_->Stop();
  std::lock_guard lock(shared_.mutex);
  for (auto& [id, region] : shared_.regions) region.mr.reset();
}

Status Engine::Impl::Protect(uint64_t id, void* ptr, size_t bytes) {
  if (ptr == nullptr) return Status::InvalidArgument("Protect(id = ", id, "): ptr is null");
  if (bytes == 0) return Status::InvalidArgument("Protect(id = ", id, "): bytes = 0");
  auto* begin = static_cast<std::byte*>(ptr);
  if (reinterpret_cast<uintptr_t>(begin) > UINTPTR_MAX - bytes) {
    return Status::InvalidArgument("Protect(id = ", id, "): [", ptr, ", +", bytes,
                                   ") wraps around the address space");
  }
  // The checks, then the registration outside the lock (pinning gigabytes takes seconds, and the
  // worker takes this lock every turn of its loop: it must keep beating its heartbeat), then the
  // checks again with the region inserted under the lock.
  const auto refused = [&]() -> Status {
    if (shared_.stop) return Status::FailedPrecondition("the engine is shutting down");
    if (shared_.in_flight || shared_.read_in_flight || shared_.recover_in_flight) {
      return Status::FailedPrecondition("Protect(id = ", id,
                                        ") while a checkpoint or recovery is in flight: wait "
                                        "for it first");
    }
    if (shared_.regions.contains(id)) {
      return Status::InvalidArgument("Protect(id = ", id, "): id is already protected");
    }
    if (shared_.regions.size() >= kMaxProtectedRegions) {
      return Status::ResourceExhausted("Protect(id = ", id, "): ", shared_.regions.size(),
                                       " regions are protected, the most a node may");
    }
    for (const auto& [other_id, region] : shared_.regions) {
      if (begin < region.ptr + region.bytes && region.ptr < begin + bytes) {
        return Status::InvalidArgument("Protect(id = ", id, "): [", ptr, ", +", bytes,
                                       ") overlaps region ", other_id, " [",
                                       static_cast<void*>(region.ptr), ", +", region.bytes, ")");
      }
    }
    return Status();
  };
  {
    std::lock_guard lock(shared_.mutex);
    FT_RETURN_IF_ERROR(refused());
  }
  auto mr = node_.fabric->RegisterMemory(ptr, bytes, verbs::kAccessLocalWrite);
  if (!mr.ok()) return mr.status().WithContext(StrCat("Protect(id = ", id, ")"));
  std::unique_ptr<verbs::MemoryRegion> registered = std::move(mr).value();
  std::unique_lock lock(shared_.mutex);
  if (Status status = refused(); !status.ok()) {
    // Changed meanwhile (another thread protected or started a checkpoint): the registration
    // goes, outside the lock.
    lock.unlock();
    registered.reset();
    return status;
  }
  shared_.regions.emplace(id, internal::Region{begin, bytes, std::move(registered)});
  return Status();
}

Status Engine::Impl::Unprotect(uint64_t id) {
  std::unique_ptr<verbs::MemoryRegion> deregister;  // after the lock is released
  std::lock_guard lock(shared_.mutex);
  if (shared_.in_flight || shared_.read_in_flight || shared_.recover_in_flight) {
    return Status::FailedPrecondition("Unprotect(id = ", id,
                                      ") while a checkpoint or recovery is in flight: wait for "
                                      "it first");
  }
  auto it = shared_.regions.find(id);
  if (it == shared_.regions.end()) {
    return Status::NotFound("Unprotect(id = ", id, "): no such region");
  }
  deregister = std::move(it->second.mr);
  shared_.regions.erase(it);
  return Status();
}

uint64_t Engine::Impl::image_bytes() const {
  std::lock_guard lock(shared_.mutex);
  uint64_t total = 0;
  for (const auto& [id, region] : shared_.regions) total += region.bytes;
  return total;
}

Result<CheckpointHandle> Engine::Impl::CheckpointAsync() {
  auto state = std::make_shared<CheckpointHandle::State>();
  {
    std::lock_guard lock(shared_.mutex);
    if (shared_.stop) return Status::FailedPrecondition("the engine is shutting down");
    if (shared_.in_flight || shared_.read_in_flight) {
      return Status::FailedPrecondition("a checkpoint is already in flight on node ", node_.rank(),
                                        ": Wait() for its handle before starting the next one");
    }
    if (shared_.recover_in_flight) {
      return Status::FailedPrecondition("Checkpoint() on node ", node_.rank(),
                                        " while Recover() runs");
    }
    if (shared_.regions.empty()) {
      return Status::FailedPrecondition("node ", node_.rank(),
                                        " has no protected memory: call Protect() first");
    }
    if (Status failure = internal::KnownFailure(shared_, node_.rank()); !failure.ok()) {
      return failure;
    }
    shared_.in_flight = true;
    shared_.pending_checkpoint = state;
  }
  node_.fabric->Interrupt();
  return CheckpointHandle(state);
}

Status Engine::Impl::ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns) {
  internal::ReadRequest request;
  request.out = out;
  request.skip_columns.assign(skip_columns.begin(), skip_columns.end());
  {
    std::lock_guard lock(shared_.mutex);
    if (shared_.stop) return Status::FailedPrecondition("the engine is shutting down");
    if (shared_.in_flight || shared_.read_in_flight || shared_.recover_in_flight) {
      return Status::FailedPrecondition(
          "ReadCommitted while a checkpoint or recovery is in flight");
    }
    shared_.read_in_flight = true;
    shared_.pending_read = &request;
  }
  node_.fabric->Interrupt();
  std::unique_lock lock(shared_.mutex);
  shared_.cv.wait(lock, [&] { return request.done; });
  return request.result;
}

Status Engine::Impl::RestoreLocalCopy() {
  std::lock_guard lock(shared_.mutex);
  if (!node_.options.keep_local_copy) {
    return Status::FailedPrecondition("keep_local_copy is off: there is no local copy");
  }
  if (shared_.in_flight || shared_.read_in_flight) {
    return Status::FailedPrecondition("RestoreLocalCopy while a checkpoint is in flight");
  }
  if (shared_.local_copy_bytes == 0) return Status::NotFound("no version has been committed yet");
  uint64_t total = 0;
  for (const auto& [id, region] : shared_.regions) total += region.bytes;
  if (total != shared_.local_copy_bytes) {
    return Status::FailedPrecondition("the protected regions hold ", total,
                                      " bytes; the committed image has ", shared_.local_copy_bytes);
  }
  uint64_t offset = 0;
  for (auto& [id, region] : shared_.regions) {
    std::memcpy(region.ptr, shared_.local_copy.data() + offset, region.bytes);
    offset += region.bytes;
  }
  return Status();
}

Result<RecoveryReport> Engine::Impl::Recover() {
  internal::RecoverRequest request;
  {
    std::lock_guard lock(shared_.mutex);
    if (shared_.stop) return Status::FailedPrecondition("the engine is shutting down");
    if (!shared_.removed.ok()) return shared_.removed;
    if (shared_.in_flight || shared_.read_in_flight) {
      return Status::FailedPrecondition("Recover() on node ", node_.rank(),
                                        " while a checkpoint is in flight: Wait() for it first");
    }
    if (shared_.recover_in_flight) {
      return Status::FailedPrecondition("Recover() on node ", node_.rank(),
                                        " while another Recover() runs");
    }
    for (const auto& [lost, why] : shared_.lost_nodes) {
      if (lost == node_.world.coordinator) {
        return Status::Unavailable("node ", lost, " (the coordinator) was lost (", why,
                                   "): a job cannot recover without it yet (coordinator "
                                   "failover to a standby is not built)");
      }
    }
    shared_.recover_in_flight = true;
    shared_.pending_recover = &request;
  }
  node_.fabric->Interrupt();
  std::unique_lock lock(shared_.mutex);
  shared_.cv.wait(lock, [&] { return request.done; });
  if (!request.result.ok()) return request.result;
  return request.report;
}

Result<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options, const WorldInfo& world,
                                               std::unique_ptr<verbs::Fabric> fabric) {
  return Create(options, world, std::move(fabric), SteadyClock::Default());
}

Result<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options, const WorldInfo& world,
                                               std::unique_ptr<verbs::Fabric> fabric, Clock& clock,
                                               bool replacement) {
  return CreateAs(options, world, std::move(fabric), clock, replacement, /*spare=*/false, {});
}

Result<std::unique_ptr<Engine>> Engine::CreateSpare(const EngineOptions& options,
                                                    const WorldInfo& world,
                                                    std::unique_ptr<verbs::Fabric> fabric,
                                                    Clock& clock, FabricFor fabric_for) {
  if (world.rank < world.size || world.rank - world.size >= std::max(world.spares, 1u)) {
    return Status::InvalidArgument("spare number ", world.rank, " is not in [", world.size, ", ",
                                   world.size + world.spares, ")");
  }
  if (!fabric_for) return Status::InvalidArgument("Engine::CreateSpare: fabric_for is empty");
  return CreateAs(options, world, std::move(fabric), clock, false, /*spare=*/true,
                  std::move(fabric_for));
}

Result<std::unique_ptr<Engine>> Engine::CreateAs(const EngineOptions& options,
                                                 const WorldInfo& world,
                                                 std::unique_ptr<verbs::Fabric> fabric,
                                                 Clock& clock, bool replacement, bool spare,
                                                 FabricFor fabric_for) {
  if (fabric == nullptr) return Status::InvalidArgument("Engine::Create: fabric is null");
  if (world.size < 2) {
    return Status::InvalidArgument("world size = ", world.size, ": checkpoints need >= 2 nodes");
  }
  if (world.rank >= world.size && !spare) {
    return Status::InvalidArgument("rank = ", world.rank, " is outside the world of ", world.size);
  }
  if (world.coordinator >= world.size) {
    return Status::InvalidArgument("coordinator = ", world.coordinator, " is outside the world of ",
                                   world.size);
  }
  if (fabric->node() != world.rank) {
    return Status::InvalidArgument("the fabric belongs to node ", fabric->node(), ", not rank ",
                                   world.rank);
  }
  if (options.k < 1) return Status::InvalidArgument("k = ", options.k, ": must be >= 1");
  if (options.m < 1) return Status::InvalidArgument("m = ", options.m, ": must be >= 1");
  if (static_cast<uint64_t>(options.k) + options.m >= world.size) {
    return Status::InvalidArgument("k + m = ", options.k + options.m, " (k = ", options.k,
                                   ", m = ", options.m, ") needs at least ",
                                   options.k + options.m + 1, " nodes: a world of ", world.size,
                                   " allows k + m <= ", world.size - 1);
  }
  if (options.cell_bytes < kMinCellBytes) {
    return Status::InvalidArgument(
        "cell_bytes = ", options.cell_bytes, ": cells under ", kMinCellBytes,
        " bytes cost more in per-WRITE work than they carry (use >= ", kMinCellBytes,
        "; the default is 1 MiB)");
  }
  if (options.cell_bytes > fabric->limits().max_message_bytes) {
    return Status::InvalidArgument("cell_bytes = ", options.cell_bytes, " exceeds the fabric's ",
                                   fabric->limits().max_message_bytes, "-byte message limit");
  }
  if (options.pipeline_depth < 1 || options.pipeline_depth > 1024) {
    return Status::InvalidArgument("pipeline_depth = ", options.pipeline_depth,
                                   ": must be in [1, 1024]");
  }
  if (options.timeout.count() <= 0) {
    return Status::InvalidArgument("timeout = ", options.timeout.count(), " ms: must be > 0");
  }
  if (options.startup_timeout.count() <= 0) {
    return Status::InvalidArgument("startup_timeout = ", options.startup_timeout.count(),
                                   " ms: must be > 0");
  }
  if (options.heartbeat_interval.count() < 1 || options.heartbeat_interval > options.timeout) {
    return Status::InvalidArgument("heartbeat_interval = ", options.heartbeat_interval.count(),
                                   " ms: must be in [1 ms, timeout = ", options.timeout.count(),
                                   " ms]");
  }
  if (options.heartbeat_misses < 1 || options.heartbeat_misses > 1'000'000) {
    return Status::InvalidArgument("heartbeat_misses = ", options.heartbeat_misses,
                                   ": must be in [1, 1000000]");
  }
  // The pipeline is allocated and touched at Create: refuse what the machine cannot hold, rather
  // than let the kernel kill the process later.
  const uint64_t pipeline_bytes = static_cast<uint64_t>(options.pipeline_depth) *
                                  static_cast<uint64_t>(options.k + options.m) * options.cell_bytes;
  if (const uint64_t memory = internal::PhysicalMemoryBytes();
      memory > 0 && pipeline_bytes > memory / 2) {
    return Status::ResourceExhausted(
        "pipeline_depth x (k + m) x cell_bytes = ", options.pipeline_depth, " x ",
        options.k + options.m, " x ", options.cell_bytes, " = ", pipeline_bytes,
        " bytes of pipeline memory per node; this machine has ", memory,
        " bytes: use smaller cells or a shallower pipeline");
  }
  FT_ASSIGN_OR_RETURN(auto codec, erasure::Codec::Create(options.k, options.m));
  if (replacement && world.rank == world.coordinator) {
    return Status::FailedPrecondition(
        "rank ", world.rank, " is the coordinator: a lost coordinator cannot be replaced yet");
  }
  auto impl = std::make_unique<Impl>(options, world, clock, std::move(fabric), std::move(codec));
  if (spare) {
    FT_RETURN_IF_ERROR(impl->StartSpare(std::move(fabric_for)));
    return std::make_unique<Engine>(PrivateTag{}, std::move(impl));
  }
  impl->set_replacement(replacement);
  FT_RETURN_IF_ERROR(impl->Start());
  return std::make_unique<Engine>(PrivateTag{}, std::move(impl));
}

Engine::Engine(PrivateTag, std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

namespace {

Status IdleSpare(const char* call, uint32_t spare) {
  return Status::FailedPrecondition(call, " on spare ", spare,
                                    ", which has no rank yet: call WaitForAssignment() first");
}

}  // namespace

Status Engine::Protect(uint64_t id, void* ptr, size_t bytes) {
  if (impl_->idle_spare()) return IdleSpare("Protect", world().rank);
  return impl_->Protect(id, ptr, bytes);
}
Status Engine::Unprotect(uint64_t id) {
  if (impl_->idle_spare()) return IdleSpare("Unprotect", world().rank);
  return impl_->Unprotect(id);
}
Result<uint64_t> Engine::Checkpoint() {
  FT_ASSIGN_OR_RETURN(CheckpointHandle handle, CheckpointAsync());
  return handle.Wait();
}
Result<CheckpointHandle> Engine::CheckpointAsync() {
  if (impl_->idle_spare()) return IdleSpare("Checkpoint", world().rank);
  return impl_->CheckpointAsync();
}
Status Engine::ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns) {
  if (impl_->idle_spare()) return IdleSpare("ReadCommitted", world().rank);
  return impl_->ReadCommitted(out, skip_columns);
}
Status Engine::RestoreLocalCopy() {
  if (impl_->idle_spare()) return IdleSpare("RestoreLocalCopy", world().rank);
  return impl_->RestoreLocalCopy();
}
Result<RecoveryReport> Engine::Recover() {
  if (impl_->idle_spare()) return IdleSpare("Recover", world().rank);
  return impl_->Recover();
}

Result<std::vector<ProtectedRegion>> Engine::Impl::WaitForLayout(Nanos deadline) {
  std::unique_lock lock(shared_.mutex);
  while (!shared_.layout_assigned) {
    if (shared_.stop) return Status::Unavailable("the engine is shutting down");
    if (!shared_.removed.ok()) return shared_.removed;
    const auto coordinator_lost =
        std::any_of(shared_.lost_nodes.begin(), shared_.lost_nodes.end(),
                    [&](const auto& lost) { return lost.first == node_.coordinator(); });
    if (coordinator_lost) {
      return Status::Unavailable("the coordinator (rank ", node_.coordinator(),
                                 ") was lost before it sent rank ", node_.rank(),
                                 "'s committed layout");
    }
    const Nanos now = node_.clock.Now();
    if (now >= deadline) {
      return Status::DeadlineExceeded("the coordinator did not send rank ", node_.rank(),
                                      "'s committed layout in time");
    }
    // Short waits: the engine's clock may be a test's manual one, which notifies no one.
    shared_.cv.wait_for(lock, std::min<Nanos>(deadline - now, std::chrono::milliseconds(10)));
  }
  return shared_.committed_layout;
}

Result<Assignment> Engine::WaitForAssignment(std::chrono::milliseconds timeout) {
  const Nanos deadline = impl_->clock().Now() + timeout;
  if (!impl_->idle_spare()) {
    if (!IsSpare()) {
      return Status::FailedPrecondition("WaitForAssignment on rank ", world().rank,
                                        ", which is not a spare");
    }
    // Started for this rank: its layout comes once it joined.
    FT_ASSIGN_OR_RETURN(std::vector<ProtectedRegion> layout, impl_->WaitForLayout(deadline));
    return Assignment{world().rank, std::move(layout)};
  }
  FT_ASSIGN_OR_RETURN(recovery::AssignMessage assigned, impl_->WaitAssigned(timeout));
  const uint32_t rank = assigned.rank;
  const WorldInfo& spare = world();
  if (rank >= spare.size) {
    return Status::Internal("the coordinator assigned rank ", rank, " outside the world of ",
                            spare.size);
  }
  FT_ASSIGN_OR_RETURN(std::unique_ptr<verbs::Fabric> fabric, impl_->fabric_for()(rank));
  WorldInfo as{rank, spare.size, spare.coordinator, spare.spares};
  std::future<Result<internal::AlignedBuffer>> spare_store = impl_->TakeSpareStore();
  FT_ASSIGN_OR_RETURN(std::unique_ptr<Engine> replacement,
                      Create(options(), as, std::move(fabric), impl_->clock(), true));
  replacement->impl_->AdoptSpareStore(std::move(spare_store));
  impl_ = std::move(replacement->impl_);        // the spare's link and fabric go with the old one
  if (!IsSpare()) return Assignment{rank, {}};  // joined while the job was starting: nothing yet
  // This engine is rank's now: a late ASSIGN must not leave it without its layout (the caller
  // would take the DeadlineExceeded for "not needed" and leave the rank without a process).
  const Nanos layout_deadline = std::max(deadline, impl_->clock().Now() + Nanos(options().timeout));
  FT_ASSIGN_OR_RETURN(std::vector<ProtectedRegion> layout, impl_->WaitForLayout(layout_deadline));
  return Assignment{rank, std::move(layout)};
}
std::vector<ProtectedRegion> Engine::CommittedLayout() const { return impl_->CommittedLayout(); }
uint64_t Engine::image_bytes() const { return impl_->image_bytes(); }
bool Engine::FailureDetected() const { return impl_->FailureDetected(); }
bool Engine::IsSpare() const { return impl_->IsSpare(); }
EngineMetrics Engine::Metrics() const { return impl_->Metrics(); }
const WorldInfo& Engine::world() const { return impl_->world(); }
const EngineOptions& Engine::options() const { return impl_->options(); }

uint64_t Engine::StoreBytesFor(uint64_t image_bytes, const EngineOptions& options) {
  auto geometry = erasure::StripeGeometry::Create(std::max<uint64_t>(image_bytes, 1),
                                                  options.cell_bytes, options.k, options.m);
  if (!geometry.ok()) return 0;
  return static_cast<uint64_t>(options.k + options.m) *
         recovery::ExtentBytesFor(erasure::FootprintBytes(*geometry));
}

}  // namespace ft
