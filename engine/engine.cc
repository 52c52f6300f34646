// The checkpoint engine: API calls on application threads, one progress thread ("worker") that
// owns the fabric's datapath, the checkpoint state machine and, on the coordinator rank, the
// coordinator. See docs/architecture.md for the data flow and docs/NOTES.md for the invariants.
#include "ftengine/engine.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "common/check.h"
#include "common/clock.h"
#include "common/log.h"
#include "engine/buffer.h"
#include "engine/datapath.h"
#include "erasure/codec.h"
#include "erasure/fragment.h"
#include "erasure/geometry.h"
#include "recovery/coordinator.h"
#include "recovery/protocol.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"
#include "verbs/topology.h"

namespace ft {

using recovery::NodeId;
using verbs::Completion;
using verbs::WcStatus;

// ---------------------------------------------------------------------------------------------
// CheckpointHandle

struct CheckpointHandle::State {
  void Complete(Status status, uint64_t committed) {
    {
      std::lock_guard lock(mutex);
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

Result<uint64_t> CheckpointHandle::Wait() {
  if (state_ == nullptr) return Status::FailedPrecondition("Wait() on an empty CheckpointHandle");
  std::unique_lock lock(state_->mutex);
  // The worker always completes a handle: on success, failure, deadline or engine destruction.
  state_->cv.wait(lock, [&] { return state_->done; });
  if (!state_->result.ok()) return state_->result;
  return state_->version;
}

bool CheckpointHandle::Ready() const {
  if (state_ == nullptr) return false;
  std::lock_guard lock(state_->mutex);
  return state_->done;
}

namespace {

// Work request ids: [kind:8][a:24][b:32].
enum class WrKind : uint8_t { kCell = 1, kHeader = 2, kSend = 3, kRecv = 4, kRead = 5 };
constexpr uint64_t MakeWrId(WrKind kind, uint32_t a, uint32_t b) {
  return (static_cast<uint64_t>(kind) << 56) | (static_cast<uint64_t>(a & 0xffffff) << 32) | b;
}
constexpr WrKind KindOf(uint64_t wr_id) { return static_cast<WrKind>(wr_id >> 56); }
constexpr uint32_t FieldA(uint64_t wr_id) { return static_cast<uint32_t>(wr_id >> 32) & 0xffffff; }
constexpr uint32_t FieldB(uint64_t wr_id) { return static_cast<uint32_t>(wr_id); }

static_assert(recovery::kMaxEndpointBytes == verbs::Fabric::kMaxEndpointBytes);
constexpr int kRecvPerPeer = internal::kControlReceivesPerPeer;
constexpr int kSendBuffers = 256;
using internal::kPollBatch;
// Connection private data, a 16-byte header {magic, rank, epoch} and then:
// - control connections (a node and the coordinator), magic "FTC1": the sender's endpoint (where
//   its fabric listens; empty on loopback), so that the coordinator can tell each node where its
//   partners are;
// - partner connections (an owner and a holder), magic "FTP1": the sender's store address and
//   rkey as registered now. An owner checks its holders' against the GO it connects for: a
//   mismatch means one of the two is stale (say a restarted process), and nothing is written.
constexpr uint32_t kControlConnectMagic = 0x46544331;  // "FTC1"
constexpr uint32_t kPartnerConnectMagic = 0x46545031;  // "FTP1"
constexpr size_t kConnectHeaderBytes = 16;
constexpr size_t kPartnerConnectBytes = kConnectHeaderBytes + 12;
static_assert(kConnectHeaderBytes + verbs::Fabric::kMaxEndpointBytes <= 44 &&
                  kPartnerConnectBytes <= 44,
              "connection private data must fit RC's 44 user bytes (verbs/rdma)");

std::vector<std::byte> ConnectHeader(uint32_t magic, uint32_t rank, uint64_t epoch,
                                     size_t extra_bytes) {
  std::vector<std::byte> data(kConnectHeaderBytes + extra_bytes);
  std::memcpy(data.data(), &magic, 4);
  std::memcpy(data.data() + 4, &rank, 4);
  std::memcpy(data.data() + 8, &epoch, 8);
  return data;
}

std::vector<std::byte> ControlConnectData(uint32_t rank, uint64_t epoch,
                                          std::span<const std::byte> endpoint = {}) {
  std::vector<std::byte> data = ConnectHeader(kControlConnectMagic, rank, epoch, endpoint.size());
  if (!endpoint.empty()) {
    std::memcpy(data.data() + kConnectHeaderBytes, endpoint.data(), endpoint.size());
  }
  return data;
}

// Where a node's store is, as holders' owners WRITE to it (PREPARE, partner connections).
struct StoreKeys {
  uint64_t addr = 0;
  uint32_t rkey = 0;
};

std::vector<std::byte> PartnerConnectData(uint32_t rank, uint64_t epoch, StoreKeys store) {
  std::vector<std::byte> data = ConnectHeader(kPartnerConnectMagic, rank, epoch, 12);
  std::memcpy(data.data() + kConnectHeaderBytes, &store.addr, 8);
  std::memcpy(data.data() + kConnectHeaderBytes + 8, &store.rkey, 4);
  return data;
}

// Checks the header of a peer's private data; returns what follows it.
Result<std::span<const std::byte>> CheckConnectHeader(std::span<const std::byte> data,
                                                      uint32_t expected_magic, NodeId expected_rank,
                                                      uint64_t expected_epoch) {
  const char* kind = expected_magic == kControlConnectMagic ? "control" : "partner";
  if (data.size() < kConnectHeaderBytes) {
    return Status::Internal("node ", expected_rank, " sent ", data.size(), " bytes of ", kind,
                            " connection private data");
  }
  uint32_t magic = 0, rank = 0;
  uint64_t epoch = 0;
  std::memcpy(&magic, data.data(), 4);
  std::memcpy(&rank, data.data() + 4, 4);
  std::memcpy(&epoch, data.data() + 8, 8);
  if (magic != expected_magic || rank != expected_rank) {
    return Status::Internal(
        kind, " connection private data from node ", expected_rank,
        magic != expected_magic ? " is not ours (bad magic)" : StrCat(" names rank ", rank));
  }
  if (epoch != expected_epoch) {
    return Status::FailedPrecondition("node ", rank, " connected in epoch ", epoch,
                                      ", this node is in epoch ", expected_epoch);
  }
  return data.subspan(kConnectHeaderBytes);
}

// The coordinator learns a node's endpoint from its control connection.
Result<std::span<const std::byte>> CheckControlConnectData(std::span<const std::byte> data,
                                                           NodeId expected_rank,
                                                           uint64_t expected_epoch) {
  FT_ASSIGN_OR_RETURN(
      std::span<const std::byte> endpoint,
      CheckConnectHeader(data, kControlConnectMagic, expected_rank, expected_epoch));
  if (endpoint.size() > verbs::Fabric::kMaxEndpointBytes) {
    return Status::Internal("node ", expected_rank, " sent a ", endpoint.size(),
                            "-byte endpoint (at most ", verbs::Fabric::kMaxEndpointBytes, ")");
  }
  return endpoint;
}

Result<StoreKeys> CheckPartnerConnectData(std::span<const std::byte> data, NodeId expected_rank,
                                          uint64_t expected_epoch) {
  FT_ASSIGN_OR_RETURN(
      std::span<const std::byte> rest,
      CheckConnectHeader(data, kPartnerConnectMagic, expected_rank, expected_epoch));
  if (rest.size() != kPartnerConnectBytes - kConnectHeaderBytes) {
    return Status::Internal("node ", expected_rank, " sent ", data.size(),
                            " bytes of partner connection private data, expected ",
                            kPartnerConnectBytes);
  }
  StoreKeys keys;
  std::memcpy(&keys.addr, rest.data(), 8);
  std::memcpy(&keys.rkey, rest.data() + 8, 4);
  return keys;
}

struct RegionRef {
  std::byte* ptr = nullptr;
  uint64_t bytes = 0;
  uint32_t lkey = 0;
};

// A thread that runs one blocking Fabric::Connect at a time for the worker, so that the worker
// keeps polling while partners connect. Made once per engine: creating a thread per round costs
// too much in a 1024-node process (thread creation serialises there, worst under sanitizers).
class ConnectHelper {
 public:
  using Outcome = Result<std::vector<std::unique_ptr<verbs::QueuePair>>>;

  explicit ConnectHelper(verbs::Fabric* fabric) : fabric_(fabric), thread_([this] { Run(); }) {}
  ~ConnectHelper() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();  // a Connect in progress ends by its own timeout
  }
  ConnectHelper(const ConnectHelper&) = delete;
  ConnectHelper& operator=(const ConnectHelper&) = delete;

  // Starts a Connect; the previous one must have been collected (its future was ready).
  std::future<Outcome> Submit(std::vector<verbs::ConnectRequest> requests, Nanos timeout) {
    std::promise<Outcome> promise;
    std::future<Outcome> future = promise.get_future();
    {
      std::lock_guard lock(mutex_);
      task_ = Task{std::move(requests), timeout, std::move(promise)};
    }
    cv_.notify_one();
    return future;
  }

 private:
  struct Task {
    std::vector<verbs::ConnectRequest> requests;
    Nanos timeout;
    std::promise<Outcome> promise;
  };

  void Run() {
    while (true) {
      std::optional<Task> task;
      {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || task_.has_value(); });
        if (!task_.has_value()) return;  // stopping, nothing to do
        task = std::move(task_);
        task_.reset();
      }
      task->promise.set_value(fabric_->Connect(task->requests, task->timeout));
      fabric_->Interrupt();  // wake the worker to harvest
    }
  }

  verbs::Fabric* fabric_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::optional<Task> task_;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Engine::Impl

class Engine::Impl {
 public:
  Impl(const EngineOptions& options, const WorldInfo& world, std::unique_ptr<verbs::Fabric> fabric,
       std::unique_ptr<erasure::Codec> codec)
      : options_(options), world_(world), fabric_(std::move(fabric)), codec_(std::move(codec)) {
    domain_ = options_.failure_domain == EngineOptions::kOwnDomain ? world_.rank
                                                                   : options_.failure_domain;
  }
  ~Impl() { Stop(); }

  Status Start();
  void Stop();

  Status Protect(uint64_t id, void* ptr, size_t bytes);
  Status Unprotect(uint64_t id);
  Result<CheckpointHandle> CheckpointAsync();
  Status ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns);
  Status RestoreLocalCopy();
  uint64_t image_bytes() const;
  EngineMetrics Metrics() const {
    std::lock_guard lock(mutex_);
    return metrics_;
  }
  const WorldInfo& world() const { return world_; }
  const EngineOptions& options() const { return options_; }

 private:
  struct Region {
    std::byte* ptr = nullptr;
    size_t bytes = 0;
    std::unique_ptr<verbs::MemoryRegion> mr;
  };
  struct Peer {
    std::unique_ptr<verbs::QueuePair> qp;
    bool lost = false;
  };
  enum class Phase { kIdle, kAwaitGo, kConnecting, kWriting, kHeaders, kDraining, kAwaitCommit };

  // Checkpoint round state: owned by the worker thread.
  struct Round {
    std::shared_ptr<CheckpointHandle::State> handle;
    Phase phase = Phase::kIdle;
    uint64_t version = 0;
    std::optional<erasure::StripeGeometry> geometry;
    std::optional<erasure::ImageLayout> layout;
    std::vector<RegionRef> regions;
    uint64_t next_stripe = 0;
    int outstanding = 0;  // data WRITEs posted and not yet completed
    Status failure;
    NodeId failed_peer = UINT32_MAX;
    std::optional<recovery::AbortMessage> abort;
    std::optional<recovery::GoMessage> go;
    Nanos started{0}, deadline{0}, writing_at{0}, done_sent_at{0};
    Nanos encode_time{0};
  };
  // A synchronous read-back request from an application thread.
  struct ReadRequest {
    std::span<std::byte> out;
    std::vector<int> skip_columns;
    Status result;
    bool done = false;
  };

  // ---- worker ----
  void WorkerLoop();
  bool PollOnce();
  void OnCompletion(const Completion& completion);
  void OnEvent(const verbs::Event& event);
  void OnControlMessage(NodeId from, recovery::Message message);
  void OnPeerLost(NodeId peer, std::string_view why);
  void SendControl(NodeId to, recovery::Message message);
  void AddEndpoints(recovery::GoMessage& go) const;
  void FlushPendingSends();
  verbs::RecvRequest ControlReceive(uint32_t buffer);
  // This node's store as its PREPARE and its partner connections announce it.
  StoreKeys OwnStoreKeys() const {
    return {reinterpret_cast<uint64_t>(store_.data()), store_mr_ ? store_mr_->rkey() : 0};
  }
  void RepostRecv(uint32_t buffer);
  NodeId PeerOfQp(uint32_t qp) const {
    auto it = qp_peer_.find(qp);
    return it == qp_peer_.end() ? UINT32_MAX : it->second;
  }

  void StartRound(std::shared_ptr<CheckpointHandle::State> handle);
  void StepRound();
  Status PrepareBuffers();
  Result<bool> ConnectPeers(const std::vector<NodeId>& wanted);
  void HarvestConnect();
  Status IssueStripe(uint64_t stripe, int slot);
  int FreePipelineSlot() const;
  void PostHeaders();
  void FailRound(Status status, NodeId peer);
  void FinishRound(Status status);
  Status PostWrite(NodeId holder_column_peer, uint64_t wr_id, const void* local, uint32_t lkey,
                   uint64_t bytes, uint64_t remote_addr, uint32_t rkey);
  uint64_t RemoteSlotAddr(int column) const;

  Status DoReadCommitted(ReadRequest& request);
  Status WaitReads(int* outstanding, Nanos deadline);

  Nanos Now() const { return clock_.Now(); }

  // ---- immutable after Start ----
  const EngineOptions options_;
  const WorldInfo world_;
  uint32_t domain_ = 0;
  uint64_t epoch_ = 1;
  Clock& clock_ = SteadyClock::Default();
  std::unique_ptr<verbs::Fabric> fabric_;
  std::unique_ptr<erasure::Codec> codec_;

  // ---- shared with application threads, guarded by mutex_ ----
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<uint64_t, Region> regions_;
  bool in_flight_ = false;
  bool stop_ = false;
  std::shared_ptr<CheckpointHandle::State> pending_checkpoint_;
  ReadRequest* pending_read_ = nullptr;
  bool read_in_flight_ = false;
  EngineMetrics metrics_;
  internal::AlignedBuffer local_copy_;  // the last committed image (keep_local_copy)
  uint64_t local_copy_bytes_ = 0;

  // ---- worker-owned ----
  std::thread worker_;
  std::unique_ptr<recovery::Coordinator> coordinator_;
  std::map<NodeId, Peer> peers_;
  std::unordered_map<uint32_t, NodeId> qp_peer_;
  internal::AlignedBuffer control_buffer_;
  std::unique_ptr<verbs::MemoryRegion> control_mr_;
  int recv_buffers_ = 0;
  // The coordinator receives only small upstream messages and sends GOs; nodes the reverse.
  size_t recv_bytes_ = 0;
  size_t send_bytes_ = 0;
  std::byte* RecvBuffer(uint32_t index) { return control_buffer_.data() + index * recv_bytes_; }
  std::byte* SendBuffer(int index) {
    return control_buffer_.data() + recv_buffers_ * recv_bytes_ + index * send_bytes_;
  }
  // Coordinator only: where each node's fabric listens (empty on loopback), for GO.
  std::vector<std::vector<std::byte>> endpoints_;
  std::vector<NodeId> recv_peer_;  // control receive buffer -> the peer whose QP it is posted on
  std::vector<int> free_send_buffers_;
  std::deque<std::pair<NodeId, recovery::Message>> pending_sends_;
  std::deque<recovery::Message> local_inbox_;  // messages this node sent to itself
  int sends_outstanding_ = 0;

  internal::AlignedBuffer store_;
  std::unique_ptr<verbs::MemoryRegion> store_mr_;
  internal::AlignedBuffer pipeline_;  // depth x (k + m) cells: bounce data cells and parity
  std::unique_ptr<verbs::MemoryRegion> pipeline_mr_;
  int pipeline_slots_ = 0;
  std::vector<int> slot_outstanding_;
  internal::AlignedBuffer headers_;  // (k + m) header areas
  std::unique_ptr<verbs::MemoryRegion> headers_mr_;
  uint64_t header_area_bytes_ = 0;
  internal::AlignedBuffer pending_copy_;

  std::vector<recovery::HolderAddress> holders_;  // by column
  std::vector<NodeId> hosted_owners_;
  uint64_t committed_version_ = 0;
  std::optional<erasure::StripeGeometry> committed_geometry_;
  // Where the committed version lives: the placement of the round that committed it (a later
  // round may have received a new placement and aborted).
  std::vector<recovery::HolderAddress> committed_holders_;
  Round round_;
  std::vector<erasure::RegionSlice> slices_;  // scratch
  int reads_outstanding_ = 0;
  Status read_failure_;               // the first failed READ of a ReadCommitted
  std::vector<uint8_t> read_failed_;  // by column: a READ of it failed
  bool self_killed_ = false;
  std::unique_ptr<ConnectHelper> connect_helper_;
  // NUMA: the node nearest the RDMA device, when the machine has several (verbs/topology.h).
  std::optional<verbs::Topology> topology_;
  verbs::NumaChoice numa_;
  void ChooseNuma();
  // Moves a fresh buffer to the NIC's node before it is registered (pinned pages do not move).
  // A failure costs speed, not correctness: logged.
  void PlaceOnNuma(internal::AlignedBuffer& buffer) {
    if (!topology_ || !numa_.bind() || buffer.size() == 0) return;
    if (Status placed = topology_->BindMemoryToNuma(buffer.data(), buffer.size(), numa_.numa_node);
        !placed.ok()) {
      FT_LOG(kWarn) << "node " << world_.rank << ": " << placed;
    }
  }
  std::future<ConnectHelper::Outcome> connect_in_flight_;
  std::optional<Status> connect_failure_;  // of a background Connect, for the round that waits
  Nanos connect_started_for_{-1};          // Round::started of the round that launched it
};

// ---------------------------------------------------------------------------------------------
// Start / stop

void Engine::Impl::ChooseNuma() {
  Result<verbs::RdmaDeviceInfo> device = verbs::GetRdmaDeviceInfo(*fabric_);
  if (!device.ok()) return;  // not an rdma fabric: nothing to place
  Result<verbs::Topology> topology = verbs::Topology::Load();
  if (!topology.ok()) {
    numa_.reason = StrCat(topology.status().message(), ": no binding");
  } else if (Result<verbs::NumaChoice> choice = topology->NumaNodeOfRdmaDevice(device->device);
             !choice.ok()) {
    numa_.reason = StrCat(choice.status().message(), ": no binding");
  } else {
    numa_ = std::move(choice).value();
    topology_ = std::move(topology).value();
  }
  metrics_.numa = numa_.reason;
}

Status Engine::Impl::Start() {
  ChooseNuma();
  const bool is_coordinator = world_.rank == world_.coordinator;
  const int control_peers = is_coordinator ? static_cast<int>(world_.size) - 1 : 1;
  recv_buffers_ = control_peers * kRecvPerPeer;
  recv_bytes_ =
      is_coordinator ? recovery::kMaxUpstreamMessageBytes : recovery::kMaxControlMessageBytes;
  send_bytes_ =
      is_coordinator ? recovery::kMaxControlMessageBytes : recovery::kMaxUpstreamMessageBytes;
  FT_ASSIGN_OR_RETURN(
      control_buffer_,
      internal::AlignedBuffer::Allocate(recv_buffers_ * recv_bytes_ + kSendBuffers * send_bytes_));
  PlaceOnNuma(control_buffer_);
  FT_ASSIGN_OR_RETURN(control_mr_,
                      fabric_->RegisterMemory(control_buffer_.data(), control_buffer_.size(),
                                              verbs::kAccessLocalWrite));
  for (int i = kSendBuffers - 1; i >= 0; --i) free_send_buffers_.push_back(i);

  if (store_.size() == 0 && options_.store_capacity > 0) {
    FT_ASSIGN_OR_RETURN(store_, internal::AlignedBuffer::Allocate(options_.store_capacity));
    PlaceOnNuma(store_);
    FT_ASSIGN_OR_RETURN(
        store_mr_, fabric_->RegisterMemory(store_.data(), store_.size(),
                                           verbs::kAccessLocalWrite | verbs::kAccessRemoteWrite |
                                               verbs::kAccessRemoteRead));
  }

  std::vector<verbs::ConnectRequest> requests;
  const std::vector<std::byte> endpoint = fabric_->endpoint();
  if (is_coordinator) {
    for (NodeId node = 0; node < world_.size; ++node) {
      if (node != world_.rank) {
        requests.push_back({node, ControlConnectData(world_.rank, epoch_), {}});
      }
    }
    FT_ASSIGN_OR_RETURN(
        coordinator_, recovery::Coordinator::Create({world_.size, options_.k, options_.m, epoch_}));
    endpoints_.resize(world_.size);
    endpoints_[world_.rank] = endpoint;
  } else {
    requests.push_back({world_.coordinator, ControlConnectData(world_.rank, epoch_, endpoint), {}});
  }
  // The control receives go up with the QPs: a peer's first message (a PREPARE sent the moment
  // its own Connect returned) must never find an empty receive queue.
  for (size_t i = 0; i < requests.size(); ++i) {
    for (int j = 0; j < kRecvPerPeer; ++j) {
      const auto buffer = static_cast<uint32_t>(i * kRecvPerPeer + j);
      recv_peer_.push_back(requests[i].peer);
      requests[i].receives.push_back(ControlReceive(buffer));
    }
  }
  auto connected = fabric_->Connect(requests, options_.timeout);
  if (!connected.ok()) {
    return connected.status().WithContext(StrCat(
        "node ", world_.rank, " connecting to the ",
        is_coordinator ? "other nodes" : StrCat("coordinator (rank ", world_.coordinator, ")")));
  }
  for (auto& qp : *connected) {
    const NodeId peer = qp->peer();
    FT_ASSIGN_OR_RETURN(std::span<const std::byte> peer_endpoint,
                        CheckControlConnectData(qp->peer_private_data(), peer, epoch_));
    if (is_coordinator) endpoints_[peer].assign(peer_endpoint.begin(), peer_endpoint.end());
    qp_peer_[qp->id()] = peer;
    peers_[peer].qp = std::move(qp);
  }
  // Pipeline cells (bounce data cells and parity): pipeline_depth stripes of k + m cells. Made
  // here, not at the first checkpoint: first-touching tens of MiB costs more than a version.
  const uint64_t width = static_cast<uint64_t>(options_.k + options_.m);
  FT_ASSIGN_OR_RETURN(pipeline_, internal::AlignedBuffer::Allocate(options_.pipeline_depth * width *
                                                                   options_.cell_bytes));
  PlaceOnNuma(pipeline_);
  FT_ASSIGN_OR_RETURN(pipeline_mr_, fabric_->RegisterMemory(pipeline_.data(), pipeline_.size(),
                                                            verbs::kAccessLocalWrite));
  metrics_.store_bytes = store_.size();
  connect_helper_ = std::make_unique<ConnectHelper>(fabric_.get());
  worker_ = std::thread([this] {
    if (topology_ && numa_.bind()) {
      if (Status bound = topology_->BindCurrentThreadToNuma(numa_.numa_node); !bound.ok()) {
        FT_LOG(kWarn) << "node " << world_.rank << ": " << bound;
      }
    }
    WorkerLoop();
  });
  return Status();
}

void Engine::Impl::Stop() {
  {
    std::lock_guard lock(mutex_);
    if (stop_) return;
    stop_ = true;
  }
  fabric_->Interrupt();
  if (worker_.joinable()) worker_.join();
  // A background Connect would run to the round's deadline (a partner may be dead): cancel it.
  // Again and again, as the helper may not have entered Connect yet when the first cancel lands.
  while (connect_in_flight_.valid() &&
         connect_in_flight_.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    fabric_->CancelConnects();
    connect_in_flight_.wait_for(std::chrono::milliseconds(10));
  }
  HarvestConnect();
  connect_helper_.reset();
  // Destruction order: QPs before memory regions before the fabric (verbs' order).
  peers_.clear();
  qp_peer_.clear();
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, region] : regions_) region.mr.reset();
  }
  headers_mr_.reset();
  pipeline_mr_.reset();
  store_mr_.reset();
  control_mr_.reset();
}

// ---------------------------------------------------------------------------------------------
// API

Status Engine::Impl::Protect(uint64_t id, void* ptr, size_t bytes) {
  if (ptr == nullptr) return Status::InvalidArgument("Protect(id = ", id, "): ptr is null");
  if (bytes == 0) return Status::InvalidArgument("Protect(id = ", id, "): bytes = 0");
  auto* begin = static_cast<std::byte*>(ptr);
  if (reinterpret_cast<uintptr_t>(begin) > UINTPTR_MAX - bytes) {
    return Status::InvalidArgument("Protect(id = ", id, "): [", ptr, ", +", bytes,
                                   ") wraps around the address space");
  }
  std::lock_guard lock(mutex_);
  if (in_flight_ || read_in_flight_) {
    return Status::FailedPrecondition("Protect(id = ", id,
                                      ") while a checkpoint is in flight: wait for it first");
  }
  if (regions_.contains(id)) {
    return Status::InvalidArgument("Protect(id = ", id, "): id is already protected");
  }
  for (const auto& [other_id, region] : regions_) {
    if (begin < region.ptr + region.bytes && region.ptr < begin + bytes) {
      return Status::InvalidArgument("Protect(id = ", id, "): [", ptr, ", +", bytes,
                                     ") overlaps region ", other_id, " [",
                                     static_cast<void*>(region.ptr), ", +", region.bytes, ")");
    }
  }
  auto mr = fabric_->RegisterMemory(ptr, bytes, verbs::kAccessLocalWrite);
  if (!mr.ok()) return mr.status().WithContext(StrCat("Protect(id = ", id, ")"));
  regions_.emplace(id, Region{begin, bytes, std::move(mr).value()});
  return Status();
}

Status Engine::Impl::Unprotect(uint64_t id) {
  std::lock_guard lock(mutex_);
  if (in_flight_ || read_in_flight_) {
    return Status::FailedPrecondition("Unprotect(id = ", id,
                                      ") while a checkpoint is in flight: wait for it first");
  }
  auto it = regions_.find(id);
  if (it == regions_.end()) return Status::NotFound("Unprotect(id = ", id, "): no such region");
  regions_.erase(it);
  return Status();
}

uint64_t Engine::Impl::image_bytes() const {
  std::lock_guard lock(mutex_);
  uint64_t total = 0;
  for (const auto& [id, region] : regions_) total += region.bytes;
  return total;
}

Result<CheckpointHandle> Engine::Impl::CheckpointAsync() {
  auto state = std::make_shared<CheckpointHandle::State>();
  {
    std::lock_guard lock(mutex_);
    if (stop_) return Status::FailedPrecondition("the engine is shutting down");
    if (in_flight_ || read_in_flight_) {
      return Status::FailedPrecondition("a checkpoint is already in flight on node ", world_.rank,
                                        ": Wait() for its handle before starting the next one");
    }
    if (regions_.empty()) {
      return Status::FailedPrecondition("node ", world_.rank,
                                        " has no protected memory: call Protect() first");
    }
    in_flight_ = true;
    pending_checkpoint_ = state;
  }
  fabric_->Interrupt();
  return CheckpointHandle(state);
}

Status Engine::Impl::ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns) {
  ReadRequest request;
  request.out = out;
  request.skip_columns.assign(skip_columns.begin(), skip_columns.end());
  {
    std::unique_lock lock(mutex_);
    if (in_flight_ || read_in_flight_) {
      return Status::FailedPrecondition("ReadCommitted while a checkpoint is in flight");
    }
    if (stop_) return Status::FailedPrecondition("the engine is shutting down");
    read_in_flight_ = true;
    pending_read_ = &request;
  }
  fabric_->Interrupt();
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return request.done; });
  return request.result;
}

Status Engine::Impl::RestoreLocalCopy() {
  std::lock_guard lock(mutex_);
  if (!options_.keep_local_copy) {
    return Status::FailedPrecondition("keep_local_copy is off: there is no local copy");
  }
  if (in_flight_ || read_in_flight_) {
    return Status::FailedPrecondition("RestoreLocalCopy while a checkpoint is in flight");
  }
  if (local_copy_bytes_ == 0) return Status::NotFound("no version has been committed yet");
  uint64_t total = 0;
  for (const auto& [id, region] : regions_) total += region.bytes;
  if (total != local_copy_bytes_) {
    return Status::FailedPrecondition("the protected regions hold ", total,
                                      " bytes; the committed image has ", local_copy_bytes_);
  }
  uint64_t offset = 0;
  for (auto& [id, region] : regions_) {
    std::memcpy(region.ptr, local_copy_.data() + offset, region.bytes);
    offset += region.bytes;
  }
  return Status();
}

// ---------------------------------------------------------------------------------------------
// Worker: progress

void Engine::Impl::WorkerLoop() {
  while (true) {
    std::shared_ptr<CheckpointHandle::State> new_checkpoint;
    ReadRequest* new_read = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (stop_) break;
      new_checkpoint = std::move(pending_checkpoint_);
      pending_checkpoint_.reset();
      new_read = pending_read_;
      pending_read_ = nullptr;
    }
    bool progressed = PollOnce();
    if (new_checkpoint) {
      StartRound(std::move(new_checkpoint));
      progressed = true;
    }
    if (new_read != nullptr) {
      Status status = DoReadCommitted(*new_read);
      std::lock_guard lock(mutex_);
      new_read->result = std::move(status);
      new_read->done = true;
      read_in_flight_ = false;
      cv_.notify_all();
      progressed = true;
    }
    if (round_.phase != Phase::kIdle) {
      const Phase before = round_.phase;
      const uint64_t stripe_before = round_.next_stripe;
      StepRound();
      progressed |= round_.phase != before || round_.next_stripe != stripe_before;
    }
    // Completions, events and Interrupt() end the wait early; the timeout only paces deadline
    // checks, so an idle engine sleeps long (a 1024-node world has 1024 of these threads).
    if (!progressed) {
      // Waiting for a background Connect: the helper's Interrupt() ends the wait when it returns.
      const bool waiting_long = round_.phase == Phase::kIdle || connect_in_flight_.valid();
      fabric_->WaitForActivity(waiting_long ? std::chrono::milliseconds(500)
                                            : std::chrono::milliseconds(20));
    }
  }
  // Shutting down: fence every QP so nothing more lands, let the in-flight round fail.
  if (round_.phase != Phase::kIdle) {
    for (auto& [peer, entry] : peers_) entry.qp->ToError();
    const Nanos deadline = Now() + options_.timeout;
    while (round_.outstanding > 0 && Now() < deadline) {
      if (!PollOnce()) fabric_->WaitForActivity(std::chrono::milliseconds(1));
    }
    FinishRound(Status::Aborted("the engine of node ", world_.rank, " was destroyed"));
  }
}

bool Engine::Impl::PollOnce() {
  HarvestConnect();
  Completion completions[kPollBatch];
  const size_t n = fabric_->PollCompletions(completions);
  for (size_t i = 0; i < n; ++i) OnCompletion(completions[i]);
  verbs::Event events[8];
  const size_t e = fabric_->PollEvents(events);
  for (size_t i = 0; i < e; ++i) OnEvent(events[i]);
  bool local = false;
  while (!local_inbox_.empty()) {
    recovery::Message message = std::move(local_inbox_.front());
    local_inbox_.pop_front();
    OnControlMessage(world_.rank, std::move(message));
    local = true;
  }
  FlushPendingSends();
  return n > 0 || e > 0 || local;
}

void Engine::Impl::OnCompletion(const Completion& completion) {
  const NodeId peer = PeerOfQp(completion.qp);
  const bool ok = completion.status == WcStatus::kSuccess;
  switch (KindOf(completion.wr_id)) {
    case WrKind::kCell:
    case WrKind::kHeader: {
      // A round that gave up on an unflushed fabric may leave late completions behind.
      if (round_.outstanding > 0) --round_.outstanding;
      const uint32_t slot = FieldA(completion.wr_id);
      if (KindOf(completion.wr_id) == WrKind::kCell && slot < slot_outstanding_.size() &&
          slot_outstanding_[slot] > 0) {
        --slot_outstanding_[slot];
      }
      if (!ok) {
        FailRound(Status::Unavailable("WRITE of fragment ", FieldB(completion.wr_id), " to node ",
                                      peer, " failed: ", verbs::WcStatusName(completion.status)),
                  peer);
      }
      return;
    }
    case WrKind::kRead:
      if (reads_outstanding_ > 0) --reads_outstanding_;
      if (!ok) {
        // The column is unusable for this read (its QP is in error now); the others may still
        // decode the image.
        if (const uint32_t column = FieldB(completion.wr_id); column < read_failed_.size()) {
          read_failed_[column] = 1;
        }
        if (read_failure_.ok()) {
          read_failure_ = Status::Unavailable("READ from node ", peer,
                                              " failed: ", verbs::WcStatusName(completion.status));
        }
      }
      return;
    case WrKind::kSend:
      --sends_outstanding_;
      free_send_buffers_.push_back(static_cast<int>(FieldB(completion.wr_id)));
      if (!ok) OnPeerLost(peer, verbs::WcStatusName(completion.status));
      return;
    case WrKind::kRecv: {
      const uint32_t buffer = FieldB(completion.wr_id);
      if (!ok) {
        if (completion.status != WcStatus::kFlushed) {
          OnPeerLost(peer, verbs::WcStatusName(completion.status));
        }
        return;
      }
      const std::byte* data = RecvBuffer(buffer);
      Result<recovery::Message> message = recovery::DecodeMessage({data, completion.bytes});
      RepostRecv(buffer);
      if (!message.ok()) {
        FT_LOG(kWarn) << "node " << world_.rank << ": bad control message from node " << peer
                      << ": " << message.status();
        return;
      }
      OnControlMessage(peer, std::move(message).value());
      return;
    }
  }
  FT_LOG(kError) << "node " << world_.rank << ": completion with unknown wr_id "
                 << completion.wr_id;
}

void Engine::Impl::OnEvent(const verbs::Event& event) {
  if (event.type == verbs::EventType::kDeviceError) {
    self_killed_ = true;
    FT_LOG(kInfo) << "node " << world_.rank << ": device error: " << event.detail;
    for (auto& [peer, entry] : peers_) entry.lost = true;
    FailRound(Status::Unavailable("node ", world_.rank, " lost its fabric: ", event.detail),
              world_.rank);
    return;
  }
  OnPeerLost(event.peer, StrCat(verbs::EventTypeName(event.type), event.detail.empty() ? "" : ": ",
                                event.detail));
}

void Engine::Impl::OnPeerLost(NodeId peer, std::string_view why) {
  auto it = peers_.find(peer);
  if (it == peers_.end() || it->second.lost) return;
  it->second.lost = true;
  FT_LOG(kInfo) << "node " << world_.rank << ": lost node " << peer << " (" << why << ")";
  if (coordinator_) {
    recovery::Coordinator::Outbox outbox;
    coordinator_->OnNodeLost(peer, why, &outbox);
    for (auto& [to, message] : outbox) SendControl(to, std::move(message));
  }
  // A lost holder spoils the round while our cells are going out; once DONE was sent, the
  // coordinator decides (it commits if every DONE arrived first: m losses are survivable).
  bool involved = peer == world_.coordinator;
  const bool writing = round_.phase == Phase::kConnecting || round_.phase == Phase::kWriting ||
                       round_.phase == Phase::kHeaders;
  for (const auto& holder : holders_) involved |= writing && holder.slot.holder == peer;
  if (round_.phase != Phase::kIdle && involved) {
    FailRound(
        Status::Unavailable("node ", peer, peer == world_.coordinator ? " (the coordinator)" : "",
                            " was lost during checkpoint version ", round_.version, " (", why, ")"),
        peer);
  }
}

void Engine::Impl::SendControl(NodeId to, recovery::Message message) {
  if (auto* go = std::get_if<recovery::GoMessage>(&message); go != nullptr && go->has_placement) {
    AddEndpoints(*go);
  }
  if (to == world_.rank) {
    local_inbox_.push_back(std::move(message));
    return;
  }
  pending_sends_.emplace_back(to, std::move(message));
  FlushPendingSends();
}

// A new placement names partners the node may never have met: on a networked fabric, the GO
// says where they listen (the coordinator learned every node's endpoint when it connected).
void Engine::Impl::AddEndpoints(recovery::GoMessage& go) const {
  std::vector<NodeId> partners;
  for (const recovery::HolderAddress& holder : go.holders) partners.push_back(holder.slot.holder);
  partners.insert(partners.end(), go.hosted_owners.begin(), go.hosted_owners.end());
  std::sort(partners.begin(), partners.end());
  partners.erase(std::unique(partners.begin(), partners.end()), partners.end());
  for (NodeId partner : partners) {
    if (partner < endpoints_.size() && !endpoints_[partner].empty()) {
      go.endpoints.push_back({partner, endpoints_[partner]});
    }
  }
}

void Engine::Impl::FlushPendingSends() {
  while (!pending_sends_.empty() && !free_send_buffers_.empty()) {
    // A copy, not a reference: the handlers below may pop or push pending_sends_.
    const NodeId to = pending_sends_.front().first;
    const recovery::Message& message = pending_sends_.front().second;
    auto it = peers_.find(to);
    if (it == peers_.end() || it->second.lost) {
      // The peer is gone and its loss was handled; a round waiting on the coordinator must not
      // wait for a reply that cannot come.
      pending_sends_.pop_front();
      if (to == world_.coordinator) {
        FailRound(Status::Unavailable("node ", to, " (the coordinator) was lost"), to);
      }
      continue;
    }
    const int buffer = free_send_buffers_.back();
    std::byte* data = SendBuffer(buffer);
    Result<size_t> bytes = recovery::EncodeMessage(message, {data, send_bytes_});
    if (!bytes.ok()) {
      FT_LOG(kError) << "node " << world_.rank << ": cannot encode a message to node " << to << ": "
                     << bytes.status();
      pending_sends_.pop_front();
      continue;
    }
    verbs::SendRequest request;
    request.wr_id = MakeWrId(WrKind::kSend, 0, static_cast<uint32_t>(buffer));
    request.opcode = verbs::Opcode::kSend;
    request.sge[0] = {reinterpret_cast<uint64_t>(data), static_cast<uint32_t>(*bytes),
                      control_mr_->lkey()};
    request.num_sge = 1;
    Status posted = it->second.qp->PostSend({&request, 1});
    if (!posted.ok()) {
      if (posted.code() == StatusCode::kResourceExhausted) return;  // retry after completions
      pending_sends_.pop_front();  // `message` dangles from here on
      OnPeerLost(to, posted.message());
      continue;
    }
    free_send_buffers_.pop_back();
    ++sends_outstanding_;
    pending_sends_.pop_front();
  }
}

verbs::RecvRequest Engine::Impl::ControlReceive(uint32_t buffer) {
  verbs::RecvRequest request;
  request.wr_id = MakeWrId(WrKind::kRecv, 0, buffer);
  request.sge = {reinterpret_cast<uint64_t>(RecvBuffer(buffer)), static_cast<uint32_t>(recv_bytes_),
                 control_mr_->lkey()};
  return request;
}

void Engine::Impl::RepostRecv(uint32_t buffer) {
  const verbs::RecvRequest request = ControlReceive(buffer);
  const NodeId node = recv_peer_[buffer];
  Peer& entry = peers_[node];
  if (entry.lost) return;
  Status status = entry.qp->PostRecv({&request, 1});
  if (!status.ok()) OnPeerLost(node, status.message());
}

void Engine::Impl::OnControlMessage(NodeId from, recovery::Message message) {
  recovery::Coordinator::Outbox outbox;
  if (auto* prepare = std::get_if<recovery::PrepareMessage>(&message)) {
    if (coordinator_) coordinator_->OnPrepare(*prepare, &outbox);
  } else if (auto* done = std::get_if<recovery::DoneMessage>(&message)) {
    if (coordinator_) coordinator_->OnDone(*done, &outbox);
  } else if (auto* go = std::get_if<recovery::GoMessage>(&message)) {
    if (from == world_.coordinator && round_.phase == Phase::kAwaitGo) {
      round_.version = go->version;
      round_.go = std::move(*go);
      round_.phase = Phase::kConnecting;
    }
  } else if (auto* commit = std::get_if<recovery::CommitMessage>(&message)) {
    if (from == world_.coordinator && round_.phase == Phase::kAwaitCommit &&
        commit->version == round_.version) {
      committed_version_ = commit->version;
      committed_geometry_ = round_.geometry;
      committed_holders_ = holders_;
      FinishRound(Status());
    }
  } else if (auto* abort = std::get_if<recovery::AbortMessage>(&message)) {
    if (from == world_.coordinator && round_.phase != Phase::kIdle &&
        (abort->version == round_.version || round_.phase == Phase::kAwaitGo)) {
      round_.abort = *abort;
      Status aborted(abort->code,
                     StrCat("checkpoint version ", abort->version, " aborted: ", abort->reason));
      if (round_.phase == Phase::kAwaitGo || round_.phase == Phase::kAwaitCommit) {
        // A node that failed the round itself (it sent DONE(failed)) reports its own reason,
        // which says more than the coordinator's summary.
        FinishRound(round_.failure.ok() ? std::move(aborted) : round_.failure);
      } else {
        FailRound(std::move(aborted), abort->failed_node);
      }
    }
  }
  for (auto& [to, reply] : outbox) SendControl(to, std::move(reply));
}

// ---------------------------------------------------------------------------------------------
// Worker: the checkpoint round

void Engine::Impl::StartRound(std::shared_ptr<CheckpointHandle::State> handle) {
  round_ = Round();
  round_.handle = std::move(handle);
  round_.started = Now();
  round_.deadline = round_.started + options_.timeout;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, region] : regions_) {
      round_.regions.push_back({region.ptr, region.bytes, region.mr->lkey()});
    }
  }
  std::vector<uint64_t> sizes;
  uint64_t image = 0;
  for (const RegionRef& r : round_.regions) {
    sizes.push_back(r.bytes);
    image += r.bytes;
  }
  auto geometry =
      erasure::StripeGeometry::Create(image, options_.cell_bytes, options_.k, options_.m);
  auto layout = erasure::ImageLayout::Create(sizes);
  if (!geometry.ok() || !layout.ok()) {
    round_.phase = Phase::kAwaitGo;  // so FinishRound completes it
    FinishRound(!geometry.ok() ? geometry.status() : layout.status());
    return;
  }
  round_.geometry = *geometry;
  round_.layout = std::move(layout).value();
  if (self_killed_) {
    round_.phase = Phase::kAwaitGo;
    FinishRound(Status::Unavailable("node ", world_.rank, " lost its fabric"));
    return;
  }
  if (Status status = PrepareBuffers(); !status.ok()) {
    round_.phase = Phase::kAwaitGo;
    FinishRound(status.WithContext(StrCat("node ", world_.rank)));
    return;
  }
  recovery::PrepareMessage prepare;
  prepare.epoch = epoch_;
  prepare.node = world_.rank;
  prepare.image_bytes = image;
  prepare.footprint_bytes = erasure::FootprintBytes(*round_.geometry);
  prepare.capacity_bytes = store_.size();
  prepare.domain = domain_;
  const StoreKeys store = OwnStoreKeys();
  prepare.store_addr = store.addr;
  prepare.store_rkey = store.rkey;
  round_.phase = Phase::kAwaitGo;
  if (auto it = peers_.find(world_.coordinator); it != peers_.end() && it->second.lost) {
    // No GO can come: fail now, not at the deadline.
    FailRound(Status::Unavailable("node ", world_.coordinator,
                                  " (the coordinator) was lost before checkpoint of node ",
                                  world_.rank, " could start"),
              world_.coordinator);
    return;
  }
  SendControl(world_.coordinator, prepare);
}

// Sizes the store (first checkpoint with store_capacity = 0), the pipeline cells and the header
// areas for this round's geometry. Buffers only grow.
Status Engine::Impl::PrepareBuffers() {
  const erasure::StripeGeometry& g = *round_.geometry;
  if (store_.size() == 0) {
    const uint64_t capacity = Engine::StoreBytesFor(g.image_bytes(), options_);
    FT_ASSIGN_OR_RETURN(store_, internal::AlignedBuffer::Allocate(capacity));
    PlaceOnNuma(store_);
    FT_ASSIGN_OR_RETURN(
        store_mr_, fabric_->RegisterMemory(store_.data(), store_.size(),
                                           verbs::kAccessLocalWrite | verbs::kAccessRemoteWrite |
                                               verbs::kAccessRemoteRead));
    std::lock_guard lock(mutex_);
    metrics_.store_bytes = store_.size();
  }
  // The pipeline's cells were allocated (and touched) at Start(); a short image uses fewer slots.
  pipeline_slots_ = static_cast<int>(
      std::min<uint64_t>(static_cast<uint64_t>(options_.pipeline_depth), g.stripes()));
  slot_outstanding_.assign(pipeline_slots_, 0);
  header_area_bytes_ = erasure::HeaderAreaBytes(g.stripes());
  const uint64_t header_bytes = header_area_bytes_ * g.width();
  if (headers_.size() < header_bytes) {
    headers_mr_.reset();
    FT_ASSIGN_OR_RETURN(headers_, internal::AlignedBuffer::Allocate(header_bytes));
    FT_ASSIGN_OR_RETURN(headers_mr_, fabric_->RegisterMemory(headers_.data(), headers_.size(),
                                                             verbs::kAccessLocalWrite));
  }
  if (options_.keep_local_copy && pending_copy_.size() < g.image_bytes()) {
    FT_ASSIGN_OR_RETURN(pending_copy_, internal::AlignedBuffer::Allocate(g.image_bytes()));
  }
  return Status();
}

// Connects to every partner we have no QP with yet. The batch Connect blocks until all pairs
// are up, so it runs on a helper thread while the worker keeps polling: if the round fails
// meanwhile (say the coordinator died after sending only some GOs, so a partner never comes),
// the round ends at once instead of at its deadline, and the Connect still in progress is
// harvested later (its QPs are kept: the partners hold the other ends). Returns true when every
// partner is connected, false while a Connect is in flight.
Result<bool> Engine::Impl::ConnectPeers(const std::vector<NodeId>& wanted) {
  HarvestConnect();
  if (connect_in_flight_.valid()) return false;
  std::vector<NodeId> peers = wanted;
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  std::vector<verbs::ConnectRequest> requests;
  for (NodeId peer : peers) {
    if (peer == world_.rank) continue;
    auto it = peers_.find(peer);
    if (it != peers_.end()) {
      if (it->second.lost) return Status::Unavailable("node ", peer, " is lost");
      continue;
    }
    requests.push_back({peer, PartnerConnectData(world_.rank, epoch_, OwnStoreKeys()), {}});
  }
  if (requests.empty()) return true;
  if (connect_failure_.has_value()) {
    // A failure of this round's Connect ends the round; one left by an earlier round does not.
    Status failure = std::move(*connect_failure_);
    connect_failure_.reset();
    if (connect_started_for_ == round_.started) return failure;
  }
  // Our control SENDs must have left before we wait in Connect: on the loopback fabric they
  // execute only in our own progress steps, and a peer waits for them (its GO) to connect to us.
  if (sends_outstanding_ > 0 || !pending_sends_.empty()) return false;
  const Nanos timeout = std::max(Nanos(0), round_.deadline - Now());
  connect_started_for_ = round_.started;
  connect_in_flight_ = connect_helper_->Submit(std::move(requests), timeout);
  return false;
}

// Takes the QPs of a finished background Connect (of this round or an earlier one).
void Engine::Impl::HarvestConnect() {
  if (!connect_in_flight_.valid() ||
      connect_in_flight_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return;
  }
  auto connected = connect_in_flight_.get();
  if (!connected.ok()) {
    connect_failure_ = connected.status();
    return;
  }
  // While the GO this Connect was made for is still the round's, its holders' keys must be the
  // ones the holders sent (a Connect of an earlier round may predate a re-registration).
  const bool same_round = connect_started_for_ == round_.started;
  for (auto& qp : *connected) {
    const NodeId peer = qp->peer();
    Result<StoreKeys> keys = CheckPartnerConnectData(qp->peer_private_data(), peer, epoch_);
    if (!keys.ok()) {
      connect_failure_ = keys.status();
      continue;
    }
    bool stale = false;
    for (const recovery::HolderAddress& holder : holders_) {
      if (same_round && holder.slot.holder == peer &&
          (holder.store_addr != keys->addr || holder.store_rkey != keys->rkey)) {
        stale = true;
        connect_failure_ = Status::FailedPrecondition(
            "node ", peer, " connected with store address ", keys->addr, " and rkey ", keys->rkey,
            ", the GO says ", holder.store_addr, " and ", holder.store_rkey,
            " (one of them is stale): nothing is written there");
      }
    }
    if (stale) continue;
    qp_peer_[qp->id()] = peer;
    peers_[peer].qp = std::move(qp);
  }
}

void Engine::Impl::StepRound() {
  Round& r = round_;
  if (r.phase != Phase::kIdle && r.phase != Phase::kDraining && Now() > r.deadline) {
    const Status late = Status::DeadlineExceeded(
        "checkpoint on node ", world_.rank, " did not finish within ",
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.timeout).count(), " ms");
    if (r.outstanding > 0) {
      // Fence: flushes our outstanding WRITEs at once, so the pipeline buffers are ours again.
      for (auto& [peer, entry] : peers_) entry.qp->ToError();
      FailRound(late, UINT32_MAX);
    } else {
      FinishRound(late);
      return;
    }
  }
  switch (r.phase) {
    case Phase::kIdle:
    case Phase::kAwaitGo:
    case Phase::kAwaitCommit:
      return;
    case Phase::kConnecting: {
      recovery::GoMessage& go = *r.go;
      if (go.has_placement) {
        if (go.holders.size() != static_cast<size_t>(options_.k + options_.m)) {
          FailRound(Status::Internal("GO names ", go.holders.size(), " holders"), UINT32_MAX);
          return;
        }
        for (const recovery::PeerEndpoint& endpoint : go.endpoints) {
          if (Status learned = fabric_->LearnEndpoint(endpoint.node, endpoint.bytes);
              !learned.ok()) {
            FailRound(learned, UINT32_MAX);
            return;
          }
        }
        holders_ = go.holders;
        hosted_owners_ = go.hosted_owners;
        go.has_placement = false;  // applied; later steps of this phase only connect
      } else if (holders_.empty()) {
        FailRound(Status::Internal("GO without a placement before any placement"), UINT32_MAX);
        return;
      }
      std::vector<NodeId> wanted;
      for (const auto& holder : holders_) wanted.push_back(holder.slot.holder);
      wanted.insert(wanted.end(), hosted_owners_.begin(), hosted_owners_.end());
      Result<bool> connected = ConnectPeers(wanted);
      if (!connected.ok()) {
        FailRound(connected.status().WithContext(
                      StrCat("node ", world_.rank, " connecting to its partners")),
                  UINT32_MAX);
        return;
      }
      if (!*connected) return;  // still connecting: poll meanwhile
      for (const auto& holder : holders_) {
        if (peers_[holder.slot.holder].lost) {
          FailRound(Status::Unavailable("holder node ", holder.slot.holder, " is lost"),
                    holder.slot.holder);
          return;
        }
      }
      r.writing_at = Now();
      r.phase = Phase::kWriting;
      [[fallthrough]];
    }
    case Phase::kWriting: {
      const erasure::StripeGeometry& g = *r.geometry;
      // Issue one stripe per step, then return to poll: its WRITEs get going while its cells are
      // still in cache (on the loopback fabric the poll is where they are copied), and earlier
      // stripes' completions free their slots. The pipeline depth bounds how far encoding runs
      // ahead of the WRITEs.
      const int slot = FreePipelineSlot();
      if (r.next_stripe < g.stripes() && r.failure.ok() && slot >= 0) {
        const Nanos t0 = Now();
        if (Status status = IssueStripe(r.next_stripe, slot); !status.ok()) {
          FailRound(status, UINT32_MAX);
          return;
        }
        r.encode_time += Now() - t0;
        ++r.next_stripe;
      }
      if (r.phase != Phase::kWriting) return;
      if (r.next_stripe == g.stripes() && r.outstanding == 0) {
        PostHeaders();
      }
      return;
    }
    case Phase::kHeaders:
      if (r.outstanding == 0) {
        if (options_.keep_local_copy) {
          uint64_t offset = 0;
          for (const RegionRef& region : r.regions) {
            std::memcpy(pending_copy_.data() + offset, region.ptr, region.bytes);
            offset += region.bytes;
          }
        }
        recovery::DoneMessage done;
        done.epoch = epoch_;
        done.version = r.version;
        done.node = world_.rank;
        r.done_sent_at = Now();
        r.phase = Phase::kAwaitCommit;
        SendControl(world_.coordinator, done);
      }
      return;
    case Phase::kDraining:
      // Our own fabric is gone (device error, or a killed loopback node): nothing will complete,
      // and nothing more will be read from or written to our memory by it.
      if (r.outstanding > 0 && self_killed_) {
        FinishRound(r.failure);
        return;
      }
      if (r.outstanding > 0) {
        if (Now() > r.deadline + options_.timeout) {
          FinishRound(r.failure);  // the fabric never flushed: give up on the buffers too
        }
        return;
      }
      if (r.abort.has_value() || self_killed_ || peers_[world_.coordinator].lost) {
        FinishRound(r.failure);
        return;
      }
      {
        recovery::DoneMessage done;
        done.epoch = epoch_;
        done.version = r.version;
        done.node = world_.rank;
        done.code = r.failure.code();
        done.failed_peer = r.failed_peer;
        r.phase = Phase::kAwaitCommit;
        SendControl(world_.coordinator, done);
      }
      return;
  }
}

uint64_t Engine::Impl::RemoteSlotAddr(int column) const {
  const recovery::HolderAddress& holder = holders_[column];
  const uint64_t slot_bytes = erasure::SlotBytes(*round_.geometry);
  return holder.store_addr + holder.slot.store_offset + (round_.version % 2) * slot_bytes;
}

Status Engine::Impl::PostWrite(NodeId peer, uint64_t wr_id, const void* local, uint32_t lkey,
                               uint64_t bytes, uint64_t remote_addr, uint32_t rkey) {
  verbs::SendRequest request;
  request.wr_id = wr_id;
  request.opcode = verbs::Opcode::kWrite;
  request.sge[0] = {reinterpret_cast<uint64_t>(local), static_cast<uint32_t>(bytes), lkey};
  request.num_sge = 1;
  request.remote_addr = remote_addr;
  request.rkey = rkey;
  Status status = peers_[peer].qp->PostSend({&request, 1});
  if (!status.ok()) return status.WithContext(StrCat("posting a WRITE to node ", peer));
  ++round_.outstanding;
  return Status();
}

// The lowest-numbered free slot, or -1. Lowest, not round-robin: when WRITEs complete quickly the
// same slot is reused while its cells are still in cache, and more slots come into use only when
// WRITEs lag behind encoding.
int Engine::Impl::FreePipelineSlot() const {
  for (int slot = 0; slot < pipeline_slots_; ++slot) {
    if (slot_outstanding_[slot] == 0) return slot;
  }
  return -1;
}

Status Engine::Impl::IssueStripe(uint64_t stripe, int slot) {
  const erasure::StripeGeometry& g = *round_.geometry;
  const int k = g.k();
  const int width = g.width();
  const uint64_t cell = g.cell_bytes();
  std::byte* slot_cells = pipeline_.data() + static_cast<uint64_t>(slot) * width * cell;
  const uint8_t* cells[erasure::kMaxCells];
  uint32_t lkeys[erasure::kMaxCells];
  uint64_t bounced = 0;

  for (int c = 0; c < k; ++c) {
    const erasure::CellExtent extent = g.DataCell(stripe, c);
    slices_.clear();
    if (extent.image_bytes > 0)
      round_.layout->Slices(extent.image_offset, extent.image_bytes, &slices_);
    if (extent.padding_bytes == 0 && slices_.size() == 1) {
      // Zero-copy: the cell is one piece of application memory.
      const RegionRef& region = round_.regions[slices_[0].region];
      cells[c] = reinterpret_cast<const uint8_t*>(region.ptr + slices_[0].region_offset);
      lkeys[c] = region.lkey;
    } else {
      // The cell straddles regions or holds the zero-padded tail: gather it into a bounce cell.
      std::byte* bounce = slot_cells + static_cast<uint64_t>(c) * cell;
      uint64_t at = 0;
      for (const erasure::RegionSlice& slice : slices_) {
        std::memcpy(bounce + at, round_.regions[slice.region].ptr + slice.region_offset,
                    slice.bytes);
        at += slice.bytes;
      }
      std::memset(bounce + at, 0, cell - at);
      bounced += extent.image_bytes;
      cells[c] = reinterpret_cast<const uint8_t*>(bounce);
      lkeys[c] = pipeline_mr_->lkey();
    }
  }
  uint8_t* parity[erasure::kMaxCells];
  for (int j = 0; j < g.m(); ++j) {
    parity[j] = reinterpret_cast<uint8_t*>(slot_cells + static_cast<uint64_t>(k + j) * cell);
    cells[k + j] = parity[j];
    lkeys[k + j] = pipeline_mr_->lkey();
  }
  // Per cell: CRC, WRITE, progress. The progress step right after each post reaps completions
  // early and, on the loopback fabric (where the poster's progress step does the copy), moves
  // the cell while the CRC pass has just brought it into cache.
  FT_RETURN_IF_ERROR(
      codec_->Encode({cells, static_cast<size_t>(k)}, {parity, static_cast<size_t>(g.m())}, cell));
  const uint64_t cell_offset = header_area_bytes_ + stripe * cell;
  for (int c = 0; c < width; ++c) {
    std::span<std::byte> area{headers_.data() + static_cast<uint64_t>(c) * header_area_bytes_,
                              header_area_bytes_};
    erasure::CellCrcs(area)[stripe] = erasure::Crc64(cells[c], cell);
    FT_RETURN_IF_ERROR(PostWrite(
        holders_[c].slot.holder, MakeWrId(WrKind::kCell, static_cast<uint32_t>(slot), c), cells[c],
        lkeys[c], cell, RemoteSlotAddr(c) + cell_offset, holders_[c].store_rkey));
    ++slot_outstanding_[slot];
    PollOnce();
    if (round_.phase != Phase::kWriting) return Status();  // failed meanwhile: drain
  }
  if (bounced > 0) {
    std::lock_guard lock(mutex_);
    metrics_.bounce_bytes += bounced;
  }
  return Status();
}

void Engine::Impl::PostHeaders() {
  const erasure::StripeGeometry& g = *round_.geometry;
  for (int c = 0; c < g.width(); ++c) {
    std::span<std::byte> area{headers_.data() + static_cast<uint64_t>(c) * header_area_bytes_,
                              header_area_bytes_};
    erasure::FragmentHeader header;
    header.version = round_.version;
    header.epoch = epoch_;
    header.owner = world_.rank;
    header.column = static_cast<uint32_t>(c);
    header.k = static_cast<uint32_t>(g.k());
    header.m = static_cast<uint32_t>(g.m());
    header.cell_bytes = g.cell_bytes();
    header.image_bytes = g.image_bytes();
    header.stripes = g.stripes();
    std::memcpy(area.data(), &header, sizeof(header));
    erasure::SealHeader(area);
    Status status = PostWrite(holders_[c].slot.holder, MakeWrId(WrKind::kHeader, 0, c), area.data(),
                              headers_mr_->lkey(), header_area_bytes_, RemoteSlotAddr(c),
                              holders_[c].store_rkey);
    if (!status.ok()) {
      FailRound(status, holders_[c].slot.holder);
      return;
    }
  }
  round_.phase = Phase::kHeaders;
}

void Engine::Impl::FailRound(Status status, NodeId peer) {
  Round& r = round_;
  if (r.phase == Phase::kIdle) return;
  if (r.failure.ok()) {
    FT_LOG(kInfo) << "node " << world_.rank << ": checkpoint version " << r.version
                  << " failed: " << status;
    r.failure = std::move(status);
    r.failed_peer = peer;
  }
  // Waiting on the coordinator with nothing in flight: only its loss or ours gets here, and no
  // ABORT will come. Otherwise drain our WRITEs, then report DONE(failed) so every node aborts.
  if ((r.phase == Phase::kAwaitGo || r.phase == Phase::kAwaitCommit) && r.outstanding == 0) {
    FinishRound(r.failure);
    return;
  }
  r.phase = Phase::kDraining;
}

void Engine::Impl::FinishRound(Status status) {
  Round& r = round_;
  if (r.phase == Phase::kIdle) return;
  const Nanos now = Now();
  {
    std::lock_guard lock(mutex_);
    if (status.ok()) {
      ++metrics_.checkpoints_committed;
      metrics_.committed_version = r.version;
      metrics_.image_bytes = r.geometry->image_bytes();
      metrics_.bytes_written += static_cast<uint64_t>(r.geometry->width()) *
                                (r.geometry->fragment_bytes() + header_area_bytes_);
      const auto seconds = [](Nanos d) { return std::chrono::duration<double>(d).count(); };
      metrics_.last_prepare_seconds = seconds(r.writing_at - r.started);
      metrics_.last_encode_seconds = seconds(r.encode_time);
      metrics_.last_write_seconds = seconds(r.done_sent_at - r.writing_at) - seconds(r.encode_time);
      metrics_.last_commit_seconds = seconds(now - r.done_sent_at);
      metrics_.last_total_seconds = seconds(now - r.started);
      if (options_.keep_local_copy) {
        std::swap(local_copy_, pending_copy_);
        local_copy_bytes_ = r.geometry->image_bytes();
      }
    } else {
      ++metrics_.checkpoints_failed;
    }
    in_flight_ = false;
  }
  auto handle = std::move(r.handle);
  const uint64_t version = r.version;
  r = Round();
  if (handle) handle->Complete(std::move(status), version);
}

// ---------------------------------------------------------------------------------------------
// Read-back of the committed version (verification now, rebuild later)

Status Engine::Impl::WaitReads(int* outstanding, Nanos deadline) {
  while (*outstanding > 0) {
    if (Now() > deadline) {
      for (auto& [peer, entry] : peers_) entry.qp->ToError();
      const Nanos flush_deadline = Now() + options_.timeout;
      while (*outstanding > 0 && Now() < flush_deadline) {
        if (!PollOnce()) fabric_->WaitForActivity(std::chrono::milliseconds(1));
      }
      return Status::DeadlineExceeded("reading fragments back timed out");
    }
    if (!PollOnce()) fabric_->WaitForActivity(std::chrono::milliseconds(1));
  }
  return Status();
}

Status Engine::Impl::DoReadCommitted(ReadRequest& request) {
  if (committed_version_ == 0 || !committed_geometry_) {
    return Status::NotFound("node ", world_.rank, " has no committed version to read");
  }
  const erasure::StripeGeometry& g = *committed_geometry_;
  if (request.out.size() != g.image_bytes()) {
    return Status::InvalidArgument("ReadCommitted: out has ", request.out.size(),
                                   " bytes; the committed image has ", g.image_bytes());
  }
  const int width = g.width();
  const int k = g.k();
  const uint64_t cell = g.cell_bytes();
  std::vector<uint8_t> skip(width, 0);
  for (int column : request.skip_columns) {
    if (column < 0 || column >= width) {
      return Status::InvalidArgument("skip column ", column, " is outside [0, ", width, ")");
    }
    skip[column] = 1;
  }
  const uint64_t slot_bytes = erasure::SlotBytes(g);
  const uint64_t area = erasure::HeaderAreaBytes(g.stripes());
  auto slot_addr = [&](int c) {
    return committed_holders_[c].store_addr + committed_holders_[c].slot.store_offset +
           (committed_version_ % 2) * slot_bytes;
  };
  // Buffers: header areas for every column, then k cells per stripe being read.
  FT_ASSIGN_OR_RETURN(auto buffer, internal::AlignedBuffer::Allocate(area * width + cell * width));
  FT_ASSIGN_OR_RETURN(
      auto mr, fabric_->RegisterMemory(buffer.data(), buffer.size(), verbs::kAccessLocalWrite));
  const Nanos deadline = Now() + options_.timeout;
  auto post_read = [&](int c, std::byte* local, uint64_t bytes, uint64_t remote) -> Status {
    const NodeId holder = committed_holders_[c].slot.holder;
    auto it = peers_.find(holder);
    if (it == peers_.end() || it->second.lost)
      return Status::Unavailable("holder ", holder, " is lost");
    verbs::SendRequest read;
    read.wr_id = MakeWrId(WrKind::kRead, 0, c);
    read.opcode = verbs::Opcode::kRead;
    read.sge[0] = {reinterpret_cast<uint64_t>(local), static_cast<uint32_t>(bytes), mr->lkey()};
    read.num_sge = 1;
    read.remote_addr = remote;
    read.rkey = committed_holders_[c].store_rkey;
    FT_RETURN_IF_ERROR(it->second.qp->PostSend({&read, 1}));
    ++reads_outstanding_;
    return Status();
  };

  read_failure_ = Status();
  read_failed_.assign(width, 0);
  std::vector<uint8_t> usable(width, 0);
  for (int c = 0; c < width; ++c) {
    if (skip[c]) continue;
    if (post_read(c, buffer.data() + c * area, area, slot_addr(c)).ok()) usable[c] = 1;
  }
  FT_RETURN_IF_ERROR(WaitReads(&reads_outstanding_, deadline));
  erasure::FragmentHeader expected;
  expected.version = committed_version_;
  expected.owner = world_.rank;
  expected.k = static_cast<uint32_t>(k);
  expected.m = static_cast<uint32_t>(g.m());
  expected.cell_bytes = cell;
  expected.image_bytes = g.image_bytes();
  expected.stripes = g.stripes();
  Status first_problem = read_failure_;
  for (int c = 0; c < width; ++c) {
    if (read_failed_[c]) usable[c] = 0;
    if (!usable[c]) continue;
    expected.column = static_cast<uint32_t>(c);
    Status status = erasure::CheckHeader({buffer.data() + c * area, area}, expected);
    if (!status.ok()) {
      usable[c] = 0;
      if (first_problem.ok()) first_problem = status;
    }
  }

  std::byte* cells = buffer.data() + area * width;
  for (uint64_t s = 0; s < g.stripes(); ++s) {
    // Read every usable column's cell of this stripe; keep the ones whose CRC matches.
    std::vector<int> columns;
    for (int c = 0; c < width; ++c) {
      if (!usable[c]) continue;
      if (Status posted = post_read(c, cells + c * cell, cell, slot_addr(c) + area + s * cell);
          !posted.ok()) {
        usable[c] = 0;
        if (first_problem.ok()) first_problem = posted;
        continue;
      }
      columns.push_back(c);
    }
    FT_RETURN_IF_ERROR(WaitReads(&reads_outstanding_, deadline));
    std::vector<int> present;
    std::vector<const uint8_t*> present_cells;
    for (int c : columns) {
      if (read_failed_[c]) {
        usable[c] = 0;
        if (first_problem.ok()) first_problem = read_failure_;
        continue;
      }
      const uint64_t crc = erasure::Crc64(cells + c * cell, cell);
      if (crc != erasure::CellCrcs(std::span<const std::byte>(buffer.data() + c * area, area))[s]) {
        if (first_problem.ok()) {
          first_problem = Status::DataLoss("fragment ", c, " stripe ", s, ": cell CRC mismatch");
        }
        continue;
      }
      present.push_back(c);
      present_cells.push_back(reinterpret_cast<const uint8_t*>(cells + c * cell));
    }
    if (present.size() < static_cast<size_t>(k)) {
      return Status::DataLoss("node ", world_.rank, " version ", committed_version_, " stripe ", s,
                              ": only ", present.size(), " of the ", k,
                              " fragments needed are intact", first_problem.ok() ? "" : " (",
                              first_problem.message(), first_problem.ok() ? "" : ")");
    }
    std::vector<int> wanted;
    std::vector<uint8_t*> outputs;
    for (int c = 0; c < k; ++c) {
      if (std::find(present.begin(), present.end(), c) == present.end()) {
        wanted.push_back(c);
        outputs.push_back(reinterpret_cast<uint8_t*>(cells + c * cell));
      }
    }
    if (!wanted.empty()) {
      FT_RETURN_IF_ERROR(codec_->Decode(present, present_cells, wanted, outputs, cell));
    }
    for (int c = 0; c < k; ++c) {
      const erasure::CellExtent extent = g.DataCell(s, c);
      if (extent.image_bytes > 0) {
        std::memcpy(request.out.data() + extent.image_offset, cells + c * cell, extent.image_bytes);
      }
    }
  }
  return Status();
}

// ---------------------------------------------------------------------------------------------
// Engine

Result<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options, const WorldInfo& world,
                                               std::unique_ptr<verbs::Fabric> fabric) {
  if (fabric == nullptr) return Status::InvalidArgument("Engine::Create: fabric is null");
  if (world.size < 2) {
    return Status::InvalidArgument("world size = ", world.size, ": checkpoints need >= 2 nodes");
  }
  if (world.rank >= world.size) {
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
  if (options.cell_bytes == 0) return Status::InvalidArgument("cell_bytes = 0");
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
  FT_ASSIGN_OR_RETURN(auto codec, erasure::Codec::Create(options.k, options.m));
  auto impl = std::make_unique<Impl>(options, world, std::move(fabric), std::move(codec));
  FT_RETURN_IF_ERROR(impl->Start());
  return std::make_unique<Engine>(PrivateTag{}, std::move(impl));
}

Engine::Engine(PrivateTag, std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Status Engine::Protect(uint64_t id, void* ptr, size_t bytes) {
  return impl_->Protect(id, ptr, bytes);
}
Status Engine::Unprotect(uint64_t id) { return impl_->Unprotect(id); }
Result<uint64_t> Engine::Checkpoint() {
  FT_ASSIGN_OR_RETURN(CheckpointHandle handle, impl_->CheckpointAsync());
  return handle.Wait();
}
Result<CheckpointHandle> Engine::CheckpointAsync() { return impl_->CheckpointAsync(); }
Status Engine::ReadCommitted(std::span<std::byte> out, std::span<const int> skip_columns) {
  return impl_->ReadCommitted(out, skip_columns);
}
Status Engine::RestoreLocalCopy() { return impl_->RestoreLocalCopy(); }
uint64_t Engine::image_bytes() const { return impl_->image_bytes(); }
EngineMetrics Engine::Metrics() const { return impl_->Metrics(); }
const WorldInfo& Engine::world() const { return impl_->world(); }
const EngineOptions& Engine::options() const { return impl_->options(); }

uint64_t Engine::StoreBytesFor(uint64_t image_bytes, const EngineOptions& options) {
  auto geometry = erasure::StripeGeometry::Create(std::max<uint64_t>(image_bytes, 1),
                                                  options.cell_bytes, options.k, options.m);
  if (!geometry.ok()) return 0;
  return static_cast<uint64_t>(options.k + options.m) * erasure::FootprintBytes(*geometry);
}

}  // namespace ft
