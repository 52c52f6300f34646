// The objects every part of the rdma backend shares (internal: rdma.h is the interface). The
// backend's files, one job each:
//   core.h/.cc        these objects, and opening a node's device resources (Core::Open);
//   connection.h/.cc  a connection's QP: its state machine, creation (growing the CQ first) and
//                     release;
//   queue_pair.h/.cc  the datapath: posting sends and receives, reaping completions (QueuePair);
//   cm.h/.cc          the CM thread, rdma_cm and async events, Connect attempts and how a
//                     request is matched to the Connect that names its peer;
//   rdma.cc           the Fabric itself (and MemoryRegion), and rdma.h's functions.
//
// Objects. A Core holds a node's device resources, in creation order: the rdma_cm event channel,
// the listening rdma_cm_id, the device context, the PD, the completion channel and the CQ. The
// RdmaFabric, every RdmaQueuePair and every RdmaMemoryRegion hold a shared_ptr to it, so the
// PD and CQ outlive every QP and MR made from them. A Conn is one connection: its rdma_cm_id and
// its QP (declared in that order, so the QP is destroyed first), the send and receive rings.
//
// Threads. The CM thread of an RdmaFabric waits on the event channel and the context's async fd
// and handles every rdma_cm and ibv async event under Core::mu, acknowledging each before
// acting on it. Connect runs on the caller's thread: it starts the active attempts, accepts
// requests that already arrived, and waits on Core::cv while the CM thread moves the attempts
// on. Datapath calls take only the QP's send or receive mutex (post) or Core::cq_mu (poll).
// Every call on the CQ (ibv_poll_cq, ibv_req_notify_cq, ibv_resize_cq when a QP is created)
// is made under Core::cq_mu: ibv_resize_cq.3 promises nothing about concurrent use.
//
// Lock order: Core::mu -> Core::cq_mu -> Core::events_mu. Conn::send_mu and Conn::recv_mu are
// leaves. rdma_destroy_id blocks until the events of that id that were retrieved are acked, and
// ibv_destroy_qp until its async events are acked; both are called only under Core::mu, which
// the CM thread holds from retrieving an event to acking it, so neither ever waits.
#ifndef FT_VERBS_RDMA_CORE_H_
#define FT_VERBS_RDMA_CORE_H_

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.h"
#include "ftengine/status.h"
#include "verbs/fabric.h"
#include "verbs/rdma/device.h"
#include "verbs/rdma/errors.h"
#include "verbs/rdma/handles.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs::rdma {

using SteadyTime = std::chrono::steady_clock::time_point;

SteadyTime DeadlineAfter(Nanos timeout);
// Milliseconds for poll() and rdma_resolve_*: rounded up, at least `floor`, at most INT_MAX.
int CeilMs(Nanos timeout, int floor = 0);
int64_t ToMs(Nanos timeout);
Status SetNonBlocking(int fd, const char* what);
void WriteEventFd(int fd);
void DrainEventFd(int fd);
std::string JoinNodes(const std::vector<NodeId>& nodes);
std::string JoinNames(const std::vector<std::string>& names);

struct Core;
struct Attempt;

// The caller's side of a posted request, read back when its completion is reaped. Atomics: the
// poster writes a slot before ibv_post_send, the poller reads it after ibv_poll_cq, on another
// thread, with only the device in between.
struct SendSlot {
  std::atomic<uint64_t> wr_id{0};
  std::atomic<uint32_t> bytes{0};
  std::atomic<uint8_t> opcode{0};
};
struct RecvSlot {
  std::atomic<uint64_t> wr_id{0};
  std::atomic<uint64_t> addr{0};
  std::atomic<uint32_t> length{0};
  std::atomic<uint32_t> lkey{0};
};

// A registration, as the error path needs it (is an SGE inside one of ours?).
struct MrInfo {
  uint64_t addr = 0;
  uint64_t length = 0;
  int access = 0;
};

// Why a QP is in the error state; the first cause wins.
enum class Cause : uint8_t {
  kNone,
  kFailed,        // a request failed (or the device said so): kQpError
  kFenced,        // ToError: no event
  kDisconnected,  // the peer went away: kDisconnected
  kLeft,          // our Fabric was destroyed
};

struct Conn {
  Conn(Core& owner, NodeId peer_node, uint32_t qp_id, int send_depth, int recv_depth)
      : core(owner),
        peer(peer_node),
        id(qp_id),
        send_slots(std::make_unique<SendSlot[]>(static_cast<size_t>(send_depth))),
        send_capacity(static_cast<uint64_t>(send_depth)),
        recv_slots(std::make_unique<RecvSlot[]>(static_cast<size_t>(recv_depth))),
        recv_capacity(static_cast<uint64_t>(recv_depth)) {}

  Core& core;
  const NodeId peer;
  const uint32_t id;  // our QueuePair::id(), unique in the Fabric

  // Creation order: the cm id, then the QP (destroyed first).
  CmIdPtr cm_id;
  QpPtr qp;
  uint32_t qp_num = 0;

  std::vector<std::byte> peer_data;  // guarded by Core::mu until handed out, then immutable
  Attempt* attempt = nullptr;        // guarded by Core::mu: the Connect attempt owning us
  bool established = false;          // guarded by Core::mu
  bool disconnect_notified = false;  // guarded by Core::mu

  std::atomic<Cause> cause{Cause::kNone};

  // Send queue: positions [retired, next_send) are outstanding.
  std::mutex send_mu;
  uint64_t next_send = 0;  // guarded by send_mu
  std::atomic<uint64_t> retired{0};
  std::unique_ptr<SendSlot[]> send_slots;
  const uint64_t send_capacity;

  // Receive queue: positions [recv_done, next_recv) are posted and not yet completed.
  std::mutex recv_mu;
  uint64_t next_recv = 0;  // guarded by recv_mu
  std::atomic<uint64_t> recv_done{0};
  std::unique_ptr<RecvSlot[]> recv_slots;
  const uint64_t recv_capacity;

  // Sets the first cause; true when it was ours.
  bool SetCause(Cause c) {
    Cause expected = Cause::kNone;
    return cause.compare_exchange_strong(expected, c);
  }
};

// One peer of a Connect call.
struct Attempt {
  enum class State : uint8_t {
    kWaiting,     // passive: no request from the peer yet
    kAccepting,   // passive: accepted, waiting for ESTABLISHED
    kResolving,   // active: address / route resolution
    kConnecting,  // active: request sent
    kBackoff,     // active: rejected for now, retry at retry_at
    kDone,        // connected
    kFailed,      // gave up: `failure`
  };

  NodeId peer = kInvalidNode;
  bool active = false;
  std::span<const std::byte> user_data;
  std::span<const RecvRequest> receives;  // posted on every QP made for this attempt
  SocketAddress address;                  // the peer's listen address (active only)
  State state = State::kWaiting;
  std::unique_ptr<Conn> conn;
  SteadyTime retry_at{};
  Nanos backoff = std::chrono::milliseconds(2);
  int tries = 0;
  std::string last_reason;
  Status failure;
};

// Connection private data, decoded (cm.cc has the wire format).
struct ConnectData {
  NodeId from = kInvalidNode;
  NodeId to = kInvalidNode;
  std::vector<std::byte> user;
};

// A connection request that arrived before our Connect named its peer.
struct PendingRequest {
  CmIdPtr id;
  ConnectData data;
  uint8_t responder_resources = 0;
  uint8_t initiator_depth = 0;
};

// A completion taken from the CQ, not yet handed to the caller.
struct Reaped {
  Completion completion;
  Conn* conn = nullptr;
  uint64_t retire = 0;  // send completions: positions below retire once handed out
};

// What the CM thread keeps of an rdma_cm event after acknowledging it.
struct CmEventInfo {
  rdma_cm_event_type type = RDMA_CM_EVENT_ADDR_RESOLVED;
  int status = 0;
  rdma_cm_id* id = nullptr;
  std::vector<std::byte> private_data;
  uint8_t responder_resources = 0;
  uint8_t initiator_depth = 0;
};

struct Core {
  Core(NodeId id, const RdmaOptions& opts, SocketAddress listen_address)
      : node(id), options(opts), listen(std::move(listen_address)) {}

  Status Open();

  // --- set at creation, then immutable ---
  const NodeId node;
  const RdmaOptions options;
  SocketAddress listen;  // port 0 asked for: Open() puts the port the system chose in here
  // Device resources, in creation order.
  EventChannelPtr channel;
  CmIdPtr listen_id;  // guarded by mu after creation (reset when the Fabric goes)
  ContextPtr context;
  PdPtr pd;
  CompChannelPtr comp_channel;
  CqPtr cq;
  UniqueFd wake_fd;  // eventfd: Interrupt() and new events wake WaitForActivity
  // What was chosen and granted.
  ibv_device_attr device_attr{};
  ibv_port_attr port_attr{};
  uint8_t port = 0;
  GidChoice gid;
  bool gid_forced = false;  // FT_GID_INDEX / gid_index given: RTR uses it
  uint8_t responder_resources = 0;
  uint8_t initiator_depth = 0;
  WcDialect dialect = WcDialect::kSpec;
  Limits limits;
  RdmaDeviceInfo info;

  std::atomic<bool> dead{false};
  std::atomic<uint32_t> next_qp_id{1};
  std::atomic<uint64_t> registered_bytes{0};

  // --- registrations, by lkey ---
  std::mutex mrs_mu;
  std::unordered_map<uint32_t, MrInfo> mrs;  // guarded by mrs_mu

  // True when [addr, addr + length) lies in a registration of lkey with local write access.
  bool LocallyWritable(uint64_t addr, uint32_t length, uint32_t lkey) {
    if (length == 0) return true;
    std::lock_guard lock(mrs_mu);
    auto it = mrs.find(lkey);
    if (it == mrs.end()) return false;
    const MrInfo& mr = it->second;
    return (mr.access & IBV_ACCESS_LOCAL_WRITE) != 0 && addr >= mr.addr && length <= mr.length &&
           addr - mr.addr <= mr.length - length;
  }

  // --- connection management ---
  std::mutex mu;
  std::condition_variable cv;                            // an Attempt changed
  uint64_t connect_cancels = 0;                          // guarded by mu: CancelConnects calls
  std::unordered_map<rdma_cm_id*, Conn*> conns;          // guarded by mu
  std::unordered_set<Conn*> live;                        // guarded by mu: handed out
  std::map<NodeId, Attempt*> attempts;                   // guarded by mu
  std::map<NodeId, std::deque<PendingRequest>> pending;  // guarded by mu

  // --- completions ---
  std::mutex cq_mu;
  std::unordered_map<uint32_t, Conn*> by_qp_num;  // guarded by cq_mu
  std::deque<Reaped> backlog;                     // guarded by cq_mu
  bool cq_failed = false;                         // guarded by cq_mu

  // --- events ---
  std::mutex events_mu;
  std::deque<Event> events;  // guarded by events_mu

  void PushEvent(Event event) {
    {
      std::lock_guard lock(events_mu);
      events.push_back(std::move(event));
    }
    WriteEventFd(wake_fd.get());
  }
  bool HasEvents() {
    std::lock_guard lock(events_mu);
    return !events.empty();
  }
};

// Fails creation step `step` when the test hook asks for it.
Status Step(const RdmaOptions& options, int step, const char* what);

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_CORE_H_
