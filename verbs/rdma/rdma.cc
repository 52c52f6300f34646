// The rdma backend's Fabric (see rdma.h): registration (RdmaMemoryRegion), Connect (it starts
// the attempts and waits while the CM thread moves them on: cm.h), polling and waiting, and the
// public functions of rdma.h. What the Fabric is built from is in core.h.
#include "verbs/rdma/rdma.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/log.h"
#include "verbs/rdma/cm.h"
#include "verbs/rdma/connection.h"
#include "verbs/rdma/core.h"
#include "verbs/rdma/locality.h"
#include "verbs/rdma/queue.h"
#include "verbs/rdma/queue_pair.h"

namespace ft::verbs {
namespace rdma {
namespace {

class RdmaMemoryRegion final : public MemoryRegion {
 public:
  RdmaMemoryRegion(std::shared_ptr<Core> core, MrPtr mr, size_t length)
      : core_(std::move(core)), mr_(std::move(mr)), length_(length) {}
  ~RdmaMemoryRegion() override {
    {
      std::lock_guard lock(core_->mrs_mu);
      core_->mrs.erase(mr_->lkey);
    }
    core_->registered_bytes.fetch_sub(length_);
  }
  RdmaMemoryRegion(const RdmaMemoryRegion&) = delete;
  RdmaMemoryRegion& operator=(const RdmaMemoryRegion&) = delete;

  void* addr() const override { return mr_->addr; }
  size_t length() const override { return length_; }
  uint32_t lkey() const override { return mr_->lkey; }
  uint32_t rkey() const override { return mr_->rkey; }

 private:
  std::shared_ptr<Core> core_;  // the PD outlives the MR
  MrPtr mr_;
  size_t length_;
};

class RdmaFabric final : public Fabric {
 public:
  RdmaFabric(std::shared_ptr<Core> core, AddressBook addresses)
      : core_(std::move(core)), addresses_(std::move(addresses)) {}
  Status Start() { return cm_thread_.Start(*core_); }

  // The node leaves: peers of QPs still alive are disconnected, pending requests rejected.
  ~RdmaFabric() override {
    cm_thread_.Stop();
    Core& core = *core_;
    core.dead.store(true);
    std::lock_guard lock(core.mu);
    if (!core.live.empty()) {
      FT_LOG(kWarn) << "rdma: Fabric of node " << core.node << " destroyed with "
                    << core.live.size() << " live queue pairs; destroy QueuePairs first";
    }
    for (Conn* conn : core.live) {
      conn->SetCause(Cause::kLeft);
      if (conn->qp != nullptr) ToError(conn->qp.get());
      if (conn->cm_id != nullptr) rdma_disconnect(conn->cm_id.get());
    }
    for (auto& [peer, queue] : core.pending) {
      for (PendingRequest& request : queue) {
        RejectLocked(request.id.get(), RejectCode::kLeaving, core.node);
      }
    }
    core.pending.clear();
    core.listen_id.reset();
  }
  RdmaFabric(const RdmaFabric&) = delete;
  RdmaFabric& operator=(const RdmaFabric&) = delete;

  NodeId node() const override { return core_->node; }
  const Limits& limits() const override { return core_->limits; }
  std::string name() const override { return "rdma"; }
  const RdmaDeviceInfo& info() const { return core_->info; }
  // Decided by the first call, not at creation: hwloc's discovery costs up to a second per
  // process in the emulated VM, which start-up (every rank at once) should not pay for a Fabric
  // nobody asks (ftbench write-bw, tests). MachineTopology() loads it once per process.
  const DeviceLocality* locality() const override {
    std::call_once(locality_once_, [this] {
      locality_ = DecideLocality(MachineTopology(), core_->info.device,
                                 InterfaceOfAddress(core_->listen.get()));
      FT_LOG(kInfo) << "rdma: node " << core_->node << ": " << locality_->Describe();
    });
    return locality_.get();
  }

  Result<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                       uint32_t access) override {
    Core& core = *core_;
    if (addr == nullptr || bytes == 0) {
      return Status::InvalidArgument("RegisterMemory: empty range (addr ", addr, ", ", bytes,
                                     " bytes)");
    }
    constexpr uint32_t kKnown = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;
    if ((access & ~kKnown) != 0) {
      return Status::InvalidArgument("RegisterMemory: unknown access bits 0x", std::hex,
                                     access & ~kKnown);
    }
    if ((access & kAccessRemoteWrite) != 0 && (access & kAccessLocalWrite) == 0) {
      return Status::InvalidArgument(
          "RegisterMemory: kAccessRemoteWrite requires kAccessLocalWrite (as ibv_reg_mr)");
    }
    int flags = 0;
    if ((access & kAccessLocalWrite) != 0) flags |= IBV_ACCESS_LOCAL_WRITE;
    if ((access & kAccessRemoteWrite) != 0) flags |= IBV_ACCESS_REMOTE_WRITE;
    if ((access & kAccessRemoteRead) != 0) flags |= IBV_ACCESS_REMOTE_READ;
    MrPtr mr = Own<&ibv_dereg_mr>(ibv_reg_mr(core.pd.get(), addr, bytes, flags));
    if (mr == nullptr) {
      return RegistrationFailure(errno, bytes, core.registered_bytes.load())
          .WithContext(StrCat("RegisterMemory on node ", core.node));
    }
    core.registered_bytes.fetch_add(bytes);
    {
      std::lock_guard lock(core.mrs_mu);
      core.mrs[mr->lkey] =
          MrInfo{.addr = reinterpret_cast<uintptr_t>(addr), .length = bytes, .access = flags};
    }
    return std::unique_ptr<MemoryRegion>(
        std::make_unique<RdmaMemoryRegion>(core_, std::move(mr), bytes));
  }

  Result<std::vector<std::unique_ptr<QueuePair>>> Connect(std::span<const ConnectRequest> requests,
                                                          Nanos timeout) override;

  size_t PollCompletions(std::span<Completion> out) override {
    Core& core = *core_;
    std::lock_guard lock(core.cq_mu);
    if (core.backlog.size() < out.size()) {
      ReapLocked(core, static_cast<int>(std::min<size_t>(out.size() - core.backlog.size(),
                                                         static_cast<size_t>(INT_MAX))));
    }
    size_t count = 0;
    while (count < out.size() && !core.backlog.empty()) {
      const Reaped& reaped = core.backlog.front();
      out[count++] = reaped.completion;
      if (reaped.retire != 0) RetireUpTo(*reaped.conn, reaped.retire);
      core.backlog.pop_front();
    }
    return count;
  }

  size_t PollEvents(std::span<Event> out) override {
    Core& core = *core_;
    std::lock_guard lock(core.events_mu);
    size_t count = 0;
    while (count < out.size() && !core.events.empty()) {
      out[count++] = std::move(core.events.front());
      core.events.pop_front();
    }
    return count;
  }

  // Arms the CQ, then looks once more: a completion that arrived before the arming raises no
  // channel event, so without the second look the wait could sleep on it (ibv_get_cq_event.3).
  void WaitForActivity(Nanos timeout) override {
    Core& core = *core_;
    if (core.HasEvents()) return;
    {
      // Under cq_mu, as every call on the CQ: none may overlap an ibv_resize_cq.
      std::lock_guard lock(core.cq_mu);
      if (const int rc = ibv_req_notify_cq(core.cq.get(), /*solicited_only=*/0); rc != 0) {
        FT_LOG(kError) << "rdma: ibv_req_notify_cq failed: " << std::strerror(rc);
      }
      if (!core.backlog.empty() || ReapLocked(core, kPollBatch) > 0) return;
    }
    pollfd fds[2] = {{core.comp_channel->fd, POLLIN, 0}, {core.wake_fd.get(), POLLIN, 0}};
    const int n = ::poll(fds, 2, CeilMs(timeout));
    if (n <= 0) return;
    if ((fds[0].revents & POLLIN) != 0) {
      ibv_cq* cq = nullptr;
      void* context = nullptr;
      while (ibv_get_cq_event(core.comp_channel.get(), &cq, &context) == 0) {
        ibv_ack_cq_events(cq, 1);
      }
    }
    if ((fds[1].revents & POLLIN) != 0) DrainEventFd(core.wake_fd.get());
  }

  void Interrupt() override { WriteEventFd(core_->wake_fd.get()); }

  void CancelConnects() override {
    std::lock_guard lock(core_->mu);
    ++core_->connect_cancels;
    core_->cv.notify_all();
  }

  std::vector<std::byte> endpoint() const override { return EncodeEndpoint(core_->listen); }

  Status LearnEndpoint(NodeId peer, std::span<const std::byte> endpoint) override {
    Result<SocketAddress> address = DecodeEndpoint(endpoint);
    if (!address.ok()) {
      return address.status().WithContext(
          StrCat("node ", core_->node, " learning node ", peer, "'s endpoint"));
    }
    std::lock_guard lock(learned_mu_);
    learned_[peer] = std::move(address).value();
    return Status::Ok();
  }

 private:
  // Where `peer` listens: a learned endpoint first, else the address book.
  Result<SocketAddress> PeerAddress(NodeId peer) const {
    {
      std::lock_guard lock(learned_mu_);
      if (auto it = learned_.find(peer); it != learned_.end()) return it->second;
    }
    FT_ASSIGN_OR_RETURN(std::string text, addresses_(peer));
    return ParseHostPort(text);
  }

  std::shared_ptr<Core> core_;
  const AddressBook addresses_;
  mutable std::once_flag locality_once_;
  mutable std::unique_ptr<DeviceLocality> locality_;  // set once by locality(), then never null
  mutable std::mutex learned_mu_;
  std::unordered_map<NodeId, SocketAddress> learned_;
  CmThread cm_thread_;  // after core_: stopped before the Core can go
};

Result<std::vector<std::unique_ptr<QueuePair>>> RdmaFabric::Connect(
    std::span<const ConnectRequest> requests, Nanos timeout) {
  Core& core = *core_;
  const SteadyTime deadline = DeadlineAfter(timeout);
  uint64_t cancels_at_start = 0;
  {
    std::lock_guard lock(core.mu);
    cancels_at_start = core.connect_cancels;
  }
  FT_RETURN_IF_ERROR(ValidateConnectRequests(core.node, requests, core.limits));
  std::vector<Attempt> attempts(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    const ConnectRequest& r = requests[i];
    Attempt& a = attempts[i];
    a.peer = r.peer;
    a.active = core.node > r.peer;
    a.user_data = r.private_data;
    a.receives = r.receives;
    if (a.active) {
      // Only the dialling side needs the peer's address; the accepting side learns it from the
      // request.
      Result<SocketAddress> address = PeerAddress(r.peer);
      if (!address.ok()) {
        return Status::InvalidArgument("Connect from node ", core.node, " to node ", r.peer,
                                       ": no address: ", address.status().message());
      }
      a.address = std::move(address).value();
    } else if (Result<std::string> address = addresses_(r.peer);
               !address.ok() && address.status().code() == StatusCode::kInvalidArgument) {
      // The accepting side needs no address, but a node outside the world is a caller's error.
      return Status::InvalidArgument("Connect from node ", core.node, " to node ", r.peer, ": ",
                                     address.status().message());
    }
  }
  std::vector<std::unique_ptr<QueuePair>> qps;
  if (requests.empty()) return qps;

  using State = Attempt::State;
  std::unique_lock lock(core.mu);
  for (const Attempt& a : attempts) {
    if (core.attempts.count(a.peer) != 0) {
      return Status::FailedPrecondition("Connect: a Connect from node ", core.node, " to node ",
                                        a.peer, " is already pending");
    }
  }
  for (Attempt& a : attempts) {
    core.attempts[a.peer] = &a;
    if (a.active) {
      StartActiveLocked(core, a, deadline);
    } else if (auto it = core.pending.find(a.peer);
               it != core.pending.end() && !it->second.empty()) {
      PendingRequest request = std::move(it->second.back());
      core.pending.erase(it);
      AcceptLocked(core, a, std::move(request));
    }
  }
  bool timed_out = false;
  bool cancelled = false;
  while (true) {
    if (core.connect_cancels != cancels_at_start) {
      cancelled = true;
      break;
    }
    const SteadyTime now = std::chrono::steady_clock::now();
    SteadyTime wake = deadline;
    bool all_done = true;
    bool any_failed = false;
    for (Attempt& a : attempts) {
      if (a.state == State::kBackoff && a.retry_at <= now && now < deadline) {
        StartActiveLocked(core, a, deadline);
      }
      if (a.state == State::kBackoff) wake = std::min(wake, a.retry_at);
      all_done = all_done && a.state == State::kDone;
      any_failed = any_failed || a.state == State::kFailed;
    }
    if (all_done || any_failed) break;
    if (now >= deadline) {
      timed_out = true;
      break;
    }
    core.cv.wait_until(lock, wake);
  }

  Status status;
  std::vector<NodeId> missing;
  std::string reasons;
  for (Attempt& a : attempts) {
    if (a.state == State::kFailed && status.ok()) status = a.failure;
    if (a.state != State::kDone) {
      missing.push_back(a.peer);
      std::string why = a.last_reason;
      if (why.empty()) {
        why = a.active ? StrCat("no answer from ", a.address.text)
                       : "no connection request from it arrived";
      }
      reasons +=
          StrCat("; node ", a.peer, ": ", why, a.tries > 1 ? StrCat(" (", a.tries, " tries)") : "");
    }
  }
  if (cancelled && status.ok()) {
    status = Status::Aborted("Connect from node ", core.node, " was cancelled");
  }
  if (timed_out && status.ok()) {
    status = Status::DeadlineExceeded("Connect from node ", core.node, " timed out after ",
                                      ToMs(timeout), " ms waiting for node(s) ", JoinNodes(missing),
                                      reasons);
  }
  for (Attempt& a : attempts) core.attempts.erase(a.peer);
  if (!status.ok()) {
    for (Attempt& a : attempts) ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/true);
    return status;
  }
  qps.reserve(attempts.size());
  for (Attempt& a : attempts) {
    a.conn->attempt = nullptr;
    core.live.insert(a.conn.get());
    qps.push_back(MakeQueuePair(core_, std::move(a.conn)));
  }
  return qps;
}

}  // namespace
}  // namespace rdma

// ---------------------------------------------------------------------------------------------
// Public functions

AddressBook PortRangeAddressBook(std::string host, uint16_t base_port, NodeId nodes) {
  return [host = std::move(host), base_port, nodes](NodeId id) -> Result<std::string> {
    if (id >= nodes) {
      return Status::InvalidArgument("node ", id, " is outside the world [0, ", nodes, ")");
    }
    const uint32_t port = uint32_t{base_port} + id;
    if (port > 65535) {
      return Status::InvalidArgument("node ", id, ": port ", base_port, " + ", id,
                                     " exceeds 65535");
    }
    const bool ipv6 = host.find(':') != std::string::npos;
    return ipv6 ? StrCat("[", host, "]:", port) : StrCat(host, ":", port);
  };
}

Result<std::unique_ptr<Fabric>> CreateRdmaFabric(NodeId node, const RdmaOptions& options_in,
                                                 AddressBook addresses) {
  RdmaOptions options = options_in;
  FT_RETURN_IF_ERROR(rdma::ApplyEnvironment(options));
  if (options.max_send_wr < 1 || options.max_recv_wr < 1 || options.cq_depth < 1) {
    return Status::InvalidArgument(
        "CreateRdmaFabric: max_send_wr, max_recv_wr and cq_depth must "
        "be >= 1 (got ",
        options.max_send_wr, ", ", options.max_recv_wr, ", ", options.cq_depth, ")");
  }
  if (options.ack_timeout > 31 || options.retry_count > 6 || options.rnr_retry > 6 ||
      options.min_rnr_timer > 31) {
    return Status::InvalidArgument(
        "CreateRdmaFabric: need ack_timeout <= 31, retry_count <= 6 and rnr_retry <= 6 (7 means "
        "forever), min_rnr_timer <= 31 (got ",
        int{options.ack_timeout}, ", ", int{options.retry_count}, ", ", int{options.rnr_retry},
        ", ", int{options.min_rnr_timer}, ")");
  }
  if (!addresses) return Status::InvalidArgument("CreateRdmaFabric: no address book");
  Result<std::string> own = addresses(node);
  if (!own.ok()) {
    return Status::InvalidArgument("CreateRdmaFabric: node ", node,
                                   " has no listen address: ", own.status().message());
  }
  FT_ASSIGN_OR_RETURN(rdma::SocketAddress listen, rdma::ParseHostPort(*own));
  auto core = std::make_shared<rdma::Core>(node, options, std::move(listen));
  FT_RETURN_IF_ERROR(core->Open());
  auto fabric = std::make_unique<rdma::RdmaFabric>(std::move(core), std::move(addresses));
  FT_RETURN_IF_ERROR(fabric->Start());
  return std::unique_ptr<Fabric>(std::move(fabric));
}

Result<RdmaDeviceInfo> GetRdmaDeviceInfo(const Fabric& fabric) {
  const auto* rdma_fabric = dynamic_cast<const rdma::RdmaFabric*>(&fabric);
  if (rdma_fabric == nullptr) {
    return Status::NotFound("GetRdmaDeviceInfo: a '", fabric.name(), "' Fabric is not rdma");
  }
  return rdma_fabric->info();
}

std::vector<std::string> ListRdmaDevices() { return rdma::DeviceNames(); }

}  // namespace ft::verbs
