// The rdma backend (see rdma.h): Fabric, QueuePair and MemoryRegion over libibverbs + librdmacm.
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
#include "verbs/rdma/rdma.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <span>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/log.h"
#include "verbs/rdma/device.h"
#include "verbs/rdma/errors.h"
#include "verbs/rdma/handles.h"
#include "verbs/rdma/locality.h"
#include "verbs/rdma/queue.h"

namespace ft::verbs {
namespace rdma {
namespace {

using SteadyTime = std::chrono::steady_clock::time_point;
using std::chrono::milliseconds;

SteadyTime DeadlineAfter(Nanos timeout) {
  constexpr Nanos kLongest = std::chrono::hours(24 * 365);
  return std::chrono::steady_clock::now() + std::clamp(timeout, Nanos(0), kLongest);
}

// Milliseconds for poll() and rdma_resolve_*: rounded up, at least `floor`, at most INT_MAX.
int CeilMs(Nanos timeout, int floor = 0) {
  const int64_t ms = (std::max<int64_t>(timeout.count(), 0) + 999'999) / 1'000'000;
  return static_cast<int>(std::clamp<int64_t>(ms, floor, INT_MAX));
}

int64_t ToMs(Nanos timeout) { return std::chrono::duration_cast<milliseconds>(timeout).count(); }

Status SetNonBlocking(int fd, const char* what) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoStatus(errno, StrCat("fcntl(O_NONBLOCK) on the ", what));
  }
  return Status::Ok();
}

void WriteEventFd(int fd) {
  const uint64_t one = 1;
  // EAGAIN only when the counter is near overflow: the fd is readable then anyway.
  [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof(one));
}

void DrainEventFd(int fd) {
  uint64_t value = 0;
  [[maybe_unused]] const ssize_t n = ::read(fd, &value, sizeof(value));
}

std::string JoinNodes(const std::vector<NodeId>& nodes) {
  std::string out;
  for (NodeId node : nodes) out += StrCat(out.empty() ? "" : ", ", node);
  return out;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += StrCat(out.empty() ? "" : ", ", name);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Connection private data: a 12-byte header, then the caller's bytes. Little-endian.

constexpr uint16_t kMagic = 0x4654;  // "FT"
constexpr uint8_t kVersion = 1;

void PutU16(std::byte* at, uint16_t v) {
  at[0] = std::byte(v & 0xff);
  at[1] = std::byte(v >> 8);
}
void PutU32(std::byte* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = std::byte((v >> (8 * i)) & 0xff);
}
uint16_t GetU16(const std::byte* at) {
  return static_cast<uint16_t>(std::to_integer<uint16_t>(at[0]) |
                               (std::to_integer<uint16_t>(at[1]) << 8));
}
uint32_t GetU32(const std::byte* at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<uint32_t>(at[i]) << (8 * i);
  return v;
}

std::vector<std::byte> EncodeConnectData(NodeId from, NodeId to, std::span<const std::byte> user) {
  FT_CHECK(user.size() <= kMaxUserPrivateData);
  std::vector<std::byte> out(kConnectHeaderBytes + user.size());
  PutU16(&out[0], kMagic);
  out[2] = std::byte{kVersion};
  out[3] = std::byte(static_cast<uint8_t>(user.size()));
  PutU32(&out[4], from);
  PutU32(&out[8], to);
  std::copy(user.begin(), user.end(), out.begin() + kConnectHeaderBytes);
  return out;
}

struct ConnectData {
  NodeId from = kInvalidNode;
  NodeId to = kInvalidNode;
  std::vector<std::byte> user;
};

// The transport may deliver more bytes than were sent (zero padding): the length field counts.
bool DecodeConnectData(std::span<const std::byte> data, ConnectData* out) {
  if (data.size() < kConnectHeaderBytes || GetU16(&data[0]) != kMagic ||
      std::to_integer<uint8_t>(data[2]) != kVersion) {
    return false;
  }
  const size_t length = std::to_integer<uint8_t>(data[3]);
  if (length > kMaxUserPrivateData || kConnectHeaderBytes + length > data.size()) return false;
  out->from = GetU32(&data[4]);
  out->to = GetU32(&data[8]);
  out->user.assign(data.begin() + kConnectHeaderBytes,
                   data.begin() + static_cast<ptrdiff_t>(kConnectHeaderBytes + length));
  return true;
}

// Our consumer-defined rejects carry a code: retryable ones make the initiator try again.
enum class RejectCode : uint8_t {
  kMalformed = 1,   // not our protocol, or a lower node initiating: permanent
  kWrongNode = 2,   // the request was meant for another node: permanent (address book mismatch)
  kSuperseded = 3,  // a newer request of the same peer replaced it: retry
  kLeaving = 4,     // this node's Fabric is being destroyed: retry (a new one may come)
};

std::vector<std::byte> EncodeReject(RejectCode code, NodeId from) {
  std::vector<std::byte> out(8);
  PutU16(&out[0], kMagic);
  out[2] = std::byte{kVersion};
  out[3] = std::byte(static_cast<uint8_t>(code));
  PutU32(&out[4], from);
  return out;
}

// The code of one of our rejects; nullopt for anything else.
std::optional<RejectCode> DecodeReject(std::span<const std::byte> data) {
  if (data.size() < 8 || GetU16(&data[0]) != kMagic ||
      std::to_integer<uint8_t>(data[2]) != kVersion) {
    return std::nullopt;
  }
  return static_cast<RejectCode>(std::to_integer<uint8_t>(data[3]));
}

const char* RejectCodeText(RejectCode code) {
  switch (code) {
    case RejectCode::kMalformed:
      return "the peer did not understand our request (protocol or role mismatch)";
    case RejectCode::kWrongNode:
      return "the peer at that address is another node (address book mismatch)";
    case RejectCode::kSuperseded:
      return "superseded by a newer request";
    case RejectCode::kLeaving:
      return "the peer's Fabric is shutting down";
  }
  return "unknown reject code";
}

// ---------------------------------------------------------------------------------------------
// Objects

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
  Nanos backoff = milliseconds(2);
  int tries = 0;
  std::string last_reason;
  Status failure;
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

// ---------------------------------------------------------------------------------------------
// Creation

// Fails creation step `step` when the test hook asks for it.
Status Step(const RdmaOptions& options, int step, const char* what) {
  if (options.testing_fail_step == step) {
    return Status::Internal("injected failure at creation step ", step, " (", what, ")");
  }
  return Status::Ok();
}

Status Core::Open() {
  // 0: is there any device at all?
  FT_RETURN_IF_ERROR(Step(options, 0, "device list"));
  const std::vector<std::string> devices = DeviceNames();
  if (devices.empty() || (!options.device.empty() && std::find(devices.begin(), devices.end(),
                                                               options.device) == devices.end())) {
    // NotFound: "no RDMA device", or the device asked for with the list of those that exist.
    Result<ContextPtr> missing = OpenDevice(options.device);
    if (!missing.ok()) return missing.status();
  }

  // 1-3: the listening id, bound to our address; binding tells the device and port.
  FT_RETURN_IF_ERROR(Step(options, 1, "rdma_create_event_channel"));
  channel = Own<&rdma_destroy_event_channel>(rdma_create_event_channel());
  if (channel == nullptr) return ErrnoStatus(errno, "rdma_create_event_channel");
  FT_RETURN_IF_ERROR(Step(options, 2, "rdma_create_id"));
  rdma_cm_id* raw_id = nullptr;
  if (rdma_create_id(channel.get(), &raw_id, nullptr, RDMA_PS_TCP) != 0) {
    return ErrnoStatus(errno, "rdma_create_id (listen)");
  }
  listen_id = Own<&rdma_destroy_id>(raw_id);
  FT_RETURN_IF_ERROR(Step(options, 3, "rdma_bind_addr"));
  if (rdma_bind_addr(listen_id.get(), const_cast<sockaddr*>(listen.get())) != 0) {
    const int error = errno;
    if (error == EADDRINUSE) {
      return Status::FailedPrecondition("node ", node, ": listen address ", listen.text,
                                        " is in use (another Fabric or process listens there)");
    }
    if (error == EADDRNOTAVAIL || error == ENODEV) {
      return Status::FailedPrecondition("node ", node, ": listen address ", listen.text,
                                        " is not an address of an RDMA device on this host "
                                        "(RDMA devices: ",
                                        JoinNames(devices), ")");
    }
    return ErrnoStatus(error, StrCat("rdma_bind_addr(", listen.text, ")"));
  }
  if (const sockaddr* bound = rdma_get_local_addr(listen_id.get()); bound != nullptr) {
    // Port 0 asks the system for a free port: peers must be told the one it chose.
    const socklen_t length =
        bound->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    std::memcpy(&listen.storage, bound, length);
    listen.length = length;
    listen.text = FormatSocketAddress(bound);
  }
  if (listen_id->verbs == nullptr) {
    return Status::FailedPrecondition(
        "node ", node, ": listen address ", listen.text,
        " is not on an RDMA device's network interface (RoCE netdev or IPoIB); give the "
        "address of the interface rdma_rxe / the HCA is bound to");
  }
  const std::string device_name = ibv_get_device_name(listen_id->verbs->device);
  port = listen_id->port_num;
  if (!options.device.empty() && options.device != device_name) {
    return Status::FailedPrecondition("node ", node, ": listen address ", listen.text,
                                      " belongs to RDMA device ", device_name, ", not to ",
                                      options.device,
                                      " (FT_DEVICE / RdmaOptions::device): pick the address of "
                                      "that device's interface, or leave the device unset");
  }

  // 4-5: our own context on that device; its port and GID.
  FT_RETURN_IF_ERROR(Step(options, 4, "ibv_open_device"));
  FT_ASSIGN_OR_RETURN(context, OpenDevice(device_name));
  FT_RETURN_IF_ERROR(Step(options, 5, "ibv_query_device"));
  if (const int rc = ibv_query_device(context.get(), &device_attr); rc != 0) {
    return ErrnoStatus(rc, StrCat("ibv_query_device(", device_name, ")"));
  }
  if (const int rc = ibv_query_port(context.get(), port, &port_attr); rc != 0) {
    return ErrnoStatus(rc, StrCat("ibv_query_port(", device_name, ", ", int{port}, ")"));
  }
  if (port_attr.state != IBV_PORT_ACTIVE) {
    return Status::FailedPrecondition("port ", int{port}, " of RDMA device ", device_name,
                                      " is not active (", ibv_port_state_str(port_attr.state),
                                      "): bring its link up (`rdma link` / `ip link set <if> up`)");
  }
  if (device_attr.max_sge < kMaxSge) {
    return Status::FailedPrecondition("RDMA device ", device_name, " allows ", device_attr.max_sge,
                                      " SGEs per request; the Fabric needs kMaxSge = ", kMaxSge);
  }
  gid_forced = options.gid_index >= 0;
  FT_ASSIGN_OR_RETURN(gid,
                      ChooseGid(context.get(), port, port_attr, listen.get(), options.gid_index));
  responder_resources = static_cast<uint8_t>(std::clamp(device_attr.max_qp_rd_atom, 1, 16));
  if (device_attr.vendor_id == kSoftRoceVendorId) dialect = WcDialect::kSoftRoce;
  initiator_depth = static_cast<uint8_t>(std::clamp(device_attr.max_qp_init_rd_atom, 1, 16));

  // 6-8: PD, completion channel, CQ.
  FT_RETURN_IF_ERROR(Step(options, 6, "ibv_alloc_pd"));
  pd = Own<&ibv_dealloc_pd>(ibv_alloc_pd(context.get()));
  if (pd == nullptr) return ErrnoStatus(errno, StrCat("ibv_alloc_pd(", device_name, ")"));
  FT_RETURN_IF_ERROR(Step(options, 7, "ibv_create_comp_channel"));
  comp_channel = Own<&ibv_destroy_comp_channel>(ibv_create_comp_channel(context.get()));
  if (comp_channel == nullptr) return ErrnoStatus(errno, "ibv_create_comp_channel");
  FT_RETURN_IF_ERROR(SetNonBlocking(comp_channel->fd, "completion channel"));
  FT_RETURN_IF_ERROR(Step(options, 8, "ibv_create_cq"));
  const int cq_depth = std::min(options.cq_depth, device_attr.max_cqe);
  cq = Own<&ibv_destroy_cq>(
      ibv_create_cq(context.get(), cq_depth, nullptr, comp_channel.get(), /*comp_vector=*/0));
  if (cq == nullptr) {
    return ErrnoStatus(errno, StrCat("ibv_create_cq(", cq_depth, " entries)"));
  }

  // 9: a probe QP tells the inline size the device grants (halving what was asked until a QP
  // can be made).
  FT_RETURN_IF_ERROR(Step(options, 9, "probe ibv_create_qp"));
  const int max_send = std::min(options.max_send_wr, device_attr.max_qp_wr);
  const int max_recv = std::min(options.max_recv_wr, device_attr.max_qp_wr);
  uint32_t inline_bytes = options.max_inline_bytes;
  while (true) {
    ibv_qp_init_attr init{};
    init.send_cq = cq.get();
    init.recv_cq = cq.get();
    init.qp_type = IBV_QPT_RC;
    init.sq_sig_all = 0;
    init.cap.max_send_wr = static_cast<uint32_t>(max_send);
    init.cap.max_recv_wr = static_cast<uint32_t>(max_recv);
    init.cap.max_send_sge = kMaxSge;
    init.cap.max_recv_sge = 1;
    init.cap.max_inline_data = inline_bytes;
    QpPtr probe = Own<&ibv_destroy_qp>(ibv_create_qp(pd.get(), &init));
    if (probe != nullptr) break;
    const int error = errno;
    if (inline_bytes == 0) {
      return ErrnoStatus(error, StrCat("ibv_create_qp (RC, ", max_send, " send / ", max_recv,
                                       " receive requests, ", kMaxSge, " SGEs)"));
    }
    inline_bytes /= 2;
  }
  limits = Limits{
      .max_send_wr = max_send,
      .max_recv_wr = max_recv,
      .cq_depth = cq->cqe,
      .max_inline_bytes = inline_bytes,
      .max_message_bytes = std::min<uint32_t>(port_attr.max_msg_sz, 1u << 30),
      .max_private_data = kMaxUserPrivateData,
  };

  // 10-11: listen, and the wake-up eventfd.
  FT_RETURN_IF_ERROR(Step(options, 10, "rdma_listen"));
  if (rdma_listen(listen_id.get(), /*backlog=*/128) != 0) {
    return ErrnoStatus(errno, StrCat("rdma_listen(", listen.text, ")"));
  }
  FT_RETURN_IF_ERROR(Step(options, 11, "eventfd"));
  wake_fd = UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd.valid()) return ErrnoStatus(errno, "eventfd");
  FT_RETURN_IF_ERROR(SetNonBlocking(channel->fd, "rdma_cm event channel"));
  FT_RETURN_IF_ERROR(SetNonBlocking(context->async_fd, "async event fd"));

  info = RdmaDeviceInfo{
      .device = device_name,
      .port = port,
      .gid_index = gid.index,
      .gid_type = gid.type,
      .link_layer = LinkLayerName(port_attr.link_layer),
      .active_mtu = MtuBytes(port_attr.active_mtu),
      .listen = listen.text,
  };
  FT_LOG(kInfo) << "rdma: node " << node << " listens on " << listen.text << " (" << device_name
                << " port " << int{port} << ", gid " << gid.index << " " << gid.type << ", mtu "
                << info.active_mtu << ", " << info.link_layer << "); send/recv/cq "
                << limits.max_send_wr << "/" << limits.max_recv_wr << "/" << limits.cq_depth
                << ", inline " << limits.max_inline_bytes;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// The QP state machine (rc_pingpong.c's order, attributes from rdma_init_qp_attr.3).

Status ModifyQp(ibv_qp* qp, ibv_qp_attr& attr, int mask, const char* state) {
  if (const int rc = ibv_modify_qp(qp, &attr, mask); rc != 0) {
    return ErrnoStatus(rc, StrCat("ibv_modify_qp(", state, ")"));
  }
  return Status::Ok();
}

Status InitAttr(rdma_cm_id* id, ibv_qp_state state, ibv_qp_attr& attr, int& mask,
                const char* name) {
  attr = ibv_qp_attr{};
  attr.qp_state = state;
  if (rdma_init_qp_attr(id, &attr, &mask) != 0) {
    return ErrnoStatus(errno, StrCat("rdma_init_qp_attr(", name, ")"));
  }
  return Status::Ok();
}

Status ToInit(Conn& conn) {
  ibv_qp_attr attr;
  int mask = 0;
  FT_RETURN_IF_ERROR(InitAttr(conn.cm_id.get(), IBV_QPS_INIT, attr, mask, "INIT"));
  attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  return ModifyQp(conn.qp.get(), attr, mask | IBV_QP_ACCESS_FLAGS, "INIT");
}

// responder_resources: the passive side's accepted value (0: what the CM negotiated).
Status ToRtr(Conn& conn, uint8_t responder_resources) {
  const Core& core = conn.core;
  ibv_qp_attr attr;
  int mask = 0;
  FT_RETURN_IF_ERROR(InitAttr(conn.cm_id.get(), IBV_QPS_RTR, attr, mask, "RTR"));
  // rdma_ucm reports RoCE-only mask bits (21-24) on InfiniBand too (librdmacm's workaround).
  if (core.port_attr.link_layer == IBV_LINK_LAYER_INFINIBAND) mask &= ~0xe00000;
  attr.min_rnr_timer = core.options.min_rnr_timer;
  mask |= IBV_QP_MIN_RNR_TIMER;
  if (responder_resources != 0) attr.max_dest_rd_atomic = responder_resources;
  attr.path_mtu = std::min(attr.path_mtu, core.port_attr.active_mtu);
  if (core.gid.index >= 0 && attr.ah_attr.is_global) {
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(core.gid.index);
  }
  return ModifyQp(conn.qp.get(), attr, mask, "RTR");
}

// initiator_depth: the passive side's accepted value (0: what the CM negotiated).
Status ToRts(Conn& conn, uint8_t initiator_depth) {
  const RdmaOptions& options = conn.core.options;
  ibv_qp_attr attr;
  int mask = 0;
  FT_RETURN_IF_ERROR(InitAttr(conn.cm_id.get(), IBV_QPS_RTS, attr, mask, "RTS"));
  attr.timeout = options.ack_timeout;
  attr.retry_cnt = options.retry_count;
  attr.rnr_retry = options.rnr_retry;
  mask |= IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY;
  if (initiator_depth != 0) attr.max_rd_atomic = initiator_depth;
  return ModifyQp(conn.qp.get(), attr, mask, "RTS");
}

// Fencing: nothing the peer posts lands after this returns, our work flushes.
void ToError(ibv_qp* qp) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (const int rc = ibv_modify_qp(qp, &attr, IBV_QP_STATE); rc != 0) {
    FT_LOG(kError) << "rdma: ibv_modify_qp(ERR) failed: " << std::strerror(rc);
  }
}

// ---------------------------------------------------------------------------------------------
// Completions

// Moves up to `max` completions from the CQ into the backlog. Caller holds cq_mu.
int ReapLocked(Core& core, int max) {
  ibv_wc wc[kPollBatch];
  int total = 0;
  while (total < max) {
    const int want = std::min(kPollBatch, max - total);
    const int n = ibv_poll_cq(core.cq.get(), want, wc);
    if (n < 0) {
      if (!core.cq_failed) {
        core.cq_failed = true;
        core.PushEvent(Event{.type = EventType::kDeviceError,
                             .peer = kInvalidNode,
                             .qp = 0,
                             .detail = StrCat("ibv_poll_cq failed on node ", core.node)});
      }
      return total;
    }
    for (int i = 0; i < n; ++i) {
      auto it = core.by_qp_num.find(wc[i].qp_num);
      if (it == core.by_qp_num.end()) continue;  // a destroyed QP's completion: discarded
      Conn& conn = *it->second;
      Reaped reaped;
      reaped.conn = &conn;
      Completion& c = reaped.completion;
      c.qp = conn.id;
      if ((wc[i].wr_id & kRecvTag) != 0) {
        const uint64_t position = wc[i].wr_id & ~kRecvTag;
        const RecvSlot& slot = conn.recv_slots[position % conn.recv_capacity];
        c.wr_id = slot.wr_id.load(std::memory_order_relaxed);
        c.opcode = Opcode::kRecv;
        WcContext context{.receive = true, .opcode = Opcode::kRecv};
        if (core.dialect == WcDialect::kSoftRoce && wc[i].status == IBV_WC_LOC_QP_OP_ERR) {
          context.receive_buffer_registered =
              core.LocallyWritable(slot.addr.load(std::memory_order_relaxed),
                                   slot.length.load(std::memory_order_relaxed),
                                   slot.lkey.load(std::memory_order_relaxed));
        }
        c.status = WcStatusFromIbv(wc[i].status, core.dialect, context);
        c.bytes = c.status == WcStatus::kSuccess ? wc[i].byte_len : 0;
        conn.recv_done.fetch_add(1, std::memory_order_release);
      } else {
        const uint64_t position = wc[i].wr_id;
        const SendSlot& slot = conn.send_slots[position % conn.send_capacity];
        c.wr_id = slot.wr_id.load(std::memory_order_relaxed);
        c.opcode = static_cast<Opcode>(slot.opcode.load(std::memory_order_relaxed));
        c.status = WcStatusFromIbv(wc[i].status, core.dialect, WcContext{.opcode = c.opcode});
        c.bytes = c.status == WcStatus::kSuccess ? slot.bytes.load(std::memory_order_relaxed) : 0;
        reaped.retire = position + 1;
      }
      if (c.status != WcStatus::kSuccess) {
        FT_LOG(kDebug) << "rdma: node " << core.node << " queue pair " << conn.id << " "
                       << OpcodeName(c.opcode) << " wr_id " << c.wr_id << ": "
                       << ibv_wc_status_str(wc[i].status) << " (vendor error " << wc[i].vendor_err
                       << ")";
      }
      if (c.status != WcStatus::kSuccess && conn.SetCause(Cause::kFailed)) {
        core.PushEvent(Event{
            .type = EventType::kQpError,
            .peer = conn.peer,
            .qp = conn.id,
            .detail = StrCat(OpcodeName(c.opcode), " wr_id ", c.wr_id, " on queue pair ", conn.id,
                             " (node ", core.node, " to node ", conn.peer, ") failed: ",
                             WcStatusName(c.status), " (", ibv_wc_status_str(wc[i].status), ")")});
      }
      core.backlog.push_back(reaped);
    }
    total += n;
    if (n < want) break;  // the CQ is empty
  }
  return total;
}

void RetireUpTo(Conn& conn, uint64_t position) {
  uint64_t current = conn.retired.load(std::memory_order_relaxed);
  while (current < position &&
         !conn.retired.compare_exchange_weak(current, position, std::memory_order_release)) {
  }
}

// Posts receives on `conn`'s QP (INIT or later), recording each in its slot for the poller.
Status PostReceives(Core& core, Conn& c, std::span<const RecvRequest> requests, size_t* posted) {
  if (posted != nullptr) *posted = 0;
  const auto max_recv = static_cast<uint64_t>(core.limits.max_recv_wr);
  std::lock_guard lock(c.recv_mu);
  size_t done = 0;
  Status status;
  while (done < requests.size() && status.ok()) {
    ibv_recv_wr wrs[kPostChunk];
    ibv_sge sges[kPostChunk];
    int n = 0;
    const uint64_t outstanding = c.next_recv - c.recv_done.load(std::memory_order_acquire);
    for (; n < kPostChunk && done + static_cast<size_t>(n) < requests.size(); ++n) {
      if (outstanding + static_cast<uint64_t>(n) >= max_recv) {
        status =
            Status::ResourceExhausted("PostRecv on queue pair ", c.id, ": receive queue full (",
                                      max_recv, " posted receives, max_recv_wr)");
        break;
      }
      const RecvRequest& r = requests[done + static_cast<size_t>(n)];
      const uint64_t position = c.next_recv + static_cast<uint64_t>(n);
      RecvSlot& slot = c.recv_slots[position % c.recv_capacity];
      slot.wr_id.store(r.wr_id, std::memory_order_relaxed);
      slot.addr.store(r.sge.addr, std::memory_order_relaxed);
      slot.length.store(r.sge.length, std::memory_order_relaxed);
      slot.lkey.store(r.sge.lkey, std::memory_order_relaxed);
      ibv_recv_wr& wr = wrs[n];
      wr = ibv_recv_wr{};
      wr.wr_id = kRecvTag | position;
      if (r.sge.length > 0) {
        sges[n] = ibv_sge{.addr = r.sge.addr, .length = r.sge.length, .lkey = r.sge.lkey};
        wr.sg_list = &sges[n];
        wr.num_sge = 1;
      }
      if (n > 0) wrs[n - 1].next = &wr;
    }
    if (n == 0) break;
    ibv_recv_wr* bad = nullptr;
    if (const int rc = ibv_post_recv(c.qp.get(), wrs, &bad); rc != 0) {
      const int accepted = bad != nullptr ? static_cast<int>(bad - wrs) : 0;
      status = ErrnoStatus(rc, StrCat("ibv_post_recv on queue pair ", c.id));
      n = std::clamp(accepted, 0, n);
    }
    c.next_recv += static_cast<uint64_t>(n);
    done += static_cast<size_t>(n);
  }
  if (posted != nullptr) *posted = done;
  // Receives posted on a QP in error complete kFlushed. soft-RoCE flushes its receive queue
  // only on a transition to the error state: make one.
  if (done > 0 && c.cause.load() != Cause::kNone) rdma::ToError(c.qp.get());
  return status;
}

// ---------------------------------------------------------------------------------------------
// Connection records

// Makes the CQ deep enough for `qps` QPs (queue.h, "CQ sizing"). Caller holds mu and cq_mu.
Status GrowCqLocked(Core& core, int64_t qps) {
  const int current = core.cq->cqe;
  const int64_t needed = CqEntriesFor(qps, core.limits.max_send_wr, core.limits.max_recv_wr);
  if (needed <= current || core.options.testing_fixed_cq) return Status::Ok();
  const int max_cqe = core.device_attr.max_cqe;
  const int depth = GrownCqDepth(current, needed, max_cqe);
  if (depth == 0) {
    return CqGrowthFailure(0, needed, current, max_cqe)
        .WithContext(StrCat("node ", core.node, " (", core.info.device, ")"));
  }
  if (const int rc = ibv_resize_cq(core.cq.get(), depth); rc != 0) {
    return CqGrowthFailure(rc, needed, current, max_cqe)
        .WithContext(StrCat("node ", core.node, " (", core.info.device, ")"));
  }
  FT_LOG(kInfo) << "rdma: node " << core.node << " CQ grown from " << current << " to "
                << core.cq->cqe << " entries for " << qps << " queue pairs";
  return Status::Ok();
}

// Creates the QP of `conn`, registers it for completions, moves it to INIT and posts the
// attempt's receives there, before the peer can know the QP. Caller holds mu.
Status CreateQpLocked(Core& core, Conn& conn, std::span<const RecvRequest> receives) {
  // The CQ grows before the QP exists, so that no completion of it can find the CQ full; under
  // cq_mu, so that no ibv_poll_cq or ibv_req_notify_cq runs during ibv_resize_cq (the man page
  // promises nothing about concurrent use; every call on the CQ is made under cq_mu). Under mu
  // too, so no other QP is created or destroyed meanwhile: by_qp_num counts them all.
  std::unique_lock cq_lock(core.cq_mu);
  FT_RETURN_IF_ERROR(GrowCqLocked(core, static_cast<int64_t>(core.by_qp_num.size()) + 1));
  ibv_qp_init_attr init{};
  init.send_cq = core.cq.get();
  init.recv_cq = core.cq.get();
  init.qp_type = IBV_QPT_RC;
  init.sq_sig_all = 0;
  init.cap.max_send_wr = static_cast<uint32_t>(core.limits.max_send_wr);
  init.cap.max_recv_wr = static_cast<uint32_t>(core.limits.max_recv_wr);
  init.cap.max_send_sge = kMaxSge;
  init.cap.max_recv_sge = 1;
  init.cap.max_inline_data = core.limits.max_inline_bytes;
  conn.qp = Own<&ibv_destroy_qp>(ibv_create_qp(core.pd.get(), &init));
  if (conn.qp == nullptr) {
    return ErrnoStatus(errno, StrCat("ibv_create_qp for node ", core.node, " to node ", conn.peer));
  }
  conn.qp_num = conn.qp->qp_num;
  core.by_qp_num[conn.qp_num] = &conn;
  cq_lock.unlock();
  FT_RETURN_IF_ERROR(ToInit(conn));
  return PostReceives(core, conn, receives, nullptr);
}

// Destroys a connection: its QP (dropping its unpolled completions) and its cm id. Caller holds
// mu. `disconnect`: tell the peer first (DREQ).
void ReleaseConnLocked(Core& core, std::unique_ptr<Conn> conn, bool disconnect) {
  if (conn == nullptr) return;
  if (conn->qp != nullptr) {
    // Forgotten before it is fenced: the flushes of its requests (say the receives a failed
    // Connect posted) are discarded by whichever thread reaps them.
    {
      std::lock_guard lock(core.cq_mu);
      core.by_qp_num.erase(conn->qp_num);
    }
    ToError(conn->qp.get());
  }
  if (disconnect && conn->established && conn->cm_id != nullptr) {
    rdma_disconnect(conn->cm_id.get());
  }
  if (conn->cm_id != nullptr) core.conns.erase(conn->cm_id.get());
  core.live.erase(conn.get());
  if (conn->qp != nullptr) {
    std::lock_guard lock(core.cq_mu);
    conn->qp.reset();
    // The CQ may still hold completions of the destroyed QP, and its qp_num may be reused:
    // move what the CQ holds to the backlog now (the QP's own entries are dropped), and forget
    // the backlog entries of this QP.
    for (int i = 0; i <= core.cq->cqe / kPollBatch; ++i) {
      if (ReapLocked(core, kPollBatch) < kPollBatch) break;
    }
    std::erase_if(core.backlog, [&](const Reaped& r) { return r.conn == conn.get(); });
  }
  conn->cm_id.reset();
}

std::unique_ptr<Conn> NewConn(Core& core, NodeId peer) {
  return std::make_unique<Conn>(core, peer, core.next_qp_id.fetch_add(1), core.limits.max_send_wr,
                                core.limits.max_recv_wr);
}

rdma_conn_param ConnParam(const Core& core, const std::vector<std::byte>& data, uint32_t qp_num,
                          uint8_t responder_resources, uint8_t initiator_depth) {
  rdma_conn_param param{};
  param.private_data = data.data();
  param.private_data_len = static_cast<uint8_t>(data.size());
  param.responder_resources = responder_resources;
  param.initiator_depth = initiator_depth;
  param.retry_count = core.options.retry_count;
  param.rnr_retry_count = core.options.rnr_retry;
  param.qp_num = qp_num;
  return param;
}

// ---------------------------------------------------------------------------------------------
// Connect attempts. All of these run under Core::mu.

void NotePending(Core& core, NodeId from, PendingRequest request);

void FailLocked(Core& core, Attempt& a, Status status) {
  ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/true);
  a.state = Attempt::State::kFailed;
  a.failure = std::move(status);
}

// Active side: try again later (the peer is not listening yet, or asked us to).
void BackoffLocked(Core& core, Attempt& a, std::string reason) {
  ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/false);
  a.last_reason = std::move(reason);
  a.state = Attempt::State::kBackoff;
  a.retry_at = std::chrono::steady_clock::now() + a.backoff;
  a.backoff = std::min<Nanos>(a.backoff * 2, milliseconds(100));
}

void StartActiveLocked(Core& core, Attempt& a, SteadyTime deadline) {
  ++a.tries;
  a.conn = NewConn(core, a.peer);
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(core.channel.get(), &raw, nullptr, RDMA_PS_TCP) != 0) {
    FailLocked(core, a, ErrnoStatus(errno, "rdma_create_id"));
    return;
  }
  a.conn->cm_id = Own<&rdma_destroy_id>(raw);
  a.conn->attempt = &a;
  core.conns[raw] = a.conn.get();
  SocketAddress source = core.listen;  // our device's address, any port
  if (source.get()->sa_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(source.get())->sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6*>(source.get())->sin6_port = 0;
  }
  const Nanos left = deadline - std::chrono::steady_clock::now();
  const int timeout_ms = CeilMs(std::min(left, core.options.resolve_timeout), 1);
  if (rdma_resolve_addr(raw, source.get(), a.address.get(), timeout_ms) != 0) {
    FailLocked(
        core, a,
        ErrnoStatus(errno, StrCat("rdma_resolve_addr(", a.address.text, ") for node ", a.peer)));
    return;
  }
  a.state = Attempt::State::kResolving;
}

// Passive side: accept `request` for attempt `a`.
void AcceptLocked(Core& core, Attempt& a, PendingRequest request) {
  a.conn = NewConn(core, a.peer);
  Conn& conn = *a.conn;
  conn.cm_id = std::move(request.id);
  conn.attempt = &a;
  conn.peer_data = std::move(request.data.user);
  core.conns[conn.cm_id.get()] = &conn;
  const uint8_t responder = std::min(core.responder_resources, request.responder_resources);
  const uint8_t initiator = std::min(core.initiator_depth, request.initiator_depth);
  Status status = CreateQpLocked(core, conn, a.receives);
  if (status.ok()) status = ToRtr(conn, std::max<uint8_t>(responder, 1));
  if (status.ok()) status = ToRts(conn, std::max<uint8_t>(initiator, 1));
  if (status.ok()) {
    const std::vector<std::byte> data = EncodeConnectData(core.node, a.peer, a.user_data);
    rdma_conn_param param = ConnParam(core, data, conn.qp_num, std::max<uint8_t>(responder, 1),
                                      std::max<uint8_t>(initiator, 1));
    if (rdma_accept(conn.cm_id.get(), &param) != 0) {
      status = ErrnoStatus(errno, StrCat("rdma_accept from node ", a.peer));
    }
  }
  if (!status.ok()) {
    FailLocked(core, a, status.WithContext(StrCat("node ", core.node, " accepting node ", a.peer)));
    return;
  }
  a.state = Attempt::State::kAccepting;
}

// Passive side: the accepted connection fell through (the initiator gave up): wait for its next
// request, or take one that is already queued.
void RewaitLocked(Core& core, Attempt& a, std::string reason) {
  ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/false);
  a.last_reason = std::move(reason);
  a.state = Attempt::State::kWaiting;
  auto it = core.pending.find(a.peer);
  if (it != core.pending.end() && !it->second.empty()) {
    PendingRequest next = std::move(it->second.back());
    core.pending.erase(it);
    AcceptLocked(core, a, std::move(next));
  }
}

void RejectLocked(rdma_cm_id* id, RejectCode code, NodeId self) {
  const std::vector<std::byte> data = EncodeReject(code, self);
  rdma_reject(id, data.data(), static_cast<uint8_t>(data.size()));
}

// A connection request arrived on our listening id.
void HandleRequestLocked(Core& core, const CmEventInfo& event) {
  CmIdPtr id = Own<&rdma_destroy_id>(event.id);
  ConnectData data;
  if (!DecodeConnectData(event.private_data, &data)) {
    FT_LOG(kWarn) << "rdma: node " << core.node << " rejects a connection request that is not "
                  << "ours (" << event.private_data.size() << " bytes of private data)";
    RejectLocked(id.get(), RejectCode::kMalformed, core.node);
    return;
  }
  if (data.to != core.node) {
    FT_LOG(kWarn) << "rdma: node " << core.node << " rejects a request from node " << data.from
                  << " meant for node " << data.to << " (address book mismatch)";
    RejectLocked(id.get(), RejectCode::kWrongNode, core.node);
    return;
  }
  if (data.from <= core.node || core.dead.load()) {
    RejectLocked(id.get(), core.dead.load() ? RejectCode::kLeaving : RejectCode::kMalformed,
                 core.node);
    return;
  }
  PendingRequest request{.id = std::move(id),
                         .data = std::move(data),
                         .responder_resources = event.responder_resources,
                         .initiator_depth = event.initiator_depth};
  const NodeId from = request.data.from;
  auto it = core.attempts.find(from);
  if (it != core.attempts.end() && !it->second->active &&
      it->second->state == Attempt::State::kWaiting) {
    AcceptLocked(core, *it->second, std::move(request));
    return;
  }
  NotePending(core, from, std::move(request));
}

// Keeps the newest request of a peer; an older one was abandoned by its initiator.
void NotePending(Core& core, NodeId from, PendingRequest request) {
  auto& queue = core.pending[from];
  for (PendingRequest& old : queue) {
    RejectLocked(old.id.get(), RejectCode::kSuperseded, core.node);
  }
  queue.clear();
  queue.push_back(std::move(request));
}

// An event on one of our connection ids while its Connect attempt runs.
void AdvanceAttemptLocked(Core& core, Attempt& a, Conn& conn, const CmEventInfo& event) {
  using State = Attempt::State;
  const std::string where = StrCat("Connect from node ", core.node, " to node ", a.peer,
                                   a.active ? StrCat(" at ", a.address.text) : std::string());
  switch (event.type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED: {
      const int timeout_ms = CeilMs(core.options.resolve_timeout, 1);
      if (rdma_resolve_route(conn.cm_id.get(), timeout_ms) != 0) {
        FailLocked(core, a, ErrnoStatus(errno, StrCat(where, ": rdma_resolve_route")));
      }
      return;
    }
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
      Status status = CreateQpLocked(core, conn, a.receives);
      if (status.ok()) {
        const std::vector<std::byte> data = EncodeConnectData(core.node, a.peer, a.user_data);
        rdma_conn_param param =
            ConnParam(core, data, conn.qp_num, core.responder_resources, core.initiator_depth);
        if (rdma_connect(conn.cm_id.get(), &param) != 0) {
          status = ErrnoStatus(errno, "rdma_connect");
        }
      }
      if (!status.ok()) {
        FailLocked(core, a, status.WithContext(where));
        return;
      }
      a.state = State::kConnecting;
      return;
    }
    case RDMA_CM_EVENT_CONNECT_RESPONSE: {
      ConnectData data;
      if (!DecodeConnectData(event.private_data, &data) || data.from != a.peer ||
          data.to != core.node) {
        FailLocked(core, a,
                   Status::FailedPrecondition(where,
                                              ": the peer answered with private data that "
                                              "does not name it (address book mismatch?)"));
        return;
      }
      conn.peer_data = std::move(data.user);
      Status status = ToRtr(conn, 0);
      if (status.ok()) status = ToRts(conn, 0);
      if (status.ok() && rdma_establish(conn.cm_id.get()) != 0) {
        status = ErrnoStatus(errno, "rdma_establish");
      }
      if (!status.ok()) {
        FailLocked(core, a, status.WithContext(where));
        return;
      }
      conn.established = true;
      a.state = State::kDone;
      return;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
      if (!a.active && a.state == State::kAccepting) {
        conn.established = true;
        a.state = State::kDone;
      }
      return;
    case RDMA_CM_EVENT_REJECTED: {
      std::string reason = CmFailureText(event.type, event.status);
      if (event.status == kRejectConsumer) {
        if (const auto code = DecodeReject(event.private_data)) {
          reason = StrCat("rejected: ", RejectCodeText(*code));
          if (a.active && (*code == RejectCode::kMalformed || *code == RejectCode::kWrongNode)) {
            FailLocked(core, a, Status::FailedPrecondition(where, ": ", reason));
            return;
          }
        }
      }
      if (a.active) {
        BackoffLocked(core, a, std::move(reason));
      } else {
        RewaitLocked(core, a, std::move(reason));
      }
      return;
    }
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
      if (a.active) {
        FailLocked(core, a, CmFailureStatus(event.type, event.status, where));
      } else {
        RewaitLocked(core, a, CmFailureText(event.type, event.status));
      }
      return;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      FailLocked(core, a, CmFailureStatus(event.type, event.status, where));
      return;
    default:
      return;
  }
}

// An event on a connection that Connect already handed out (or is about to).
void HandleLiveEventLocked(Core& core, Conn& conn, const CmEventInfo& event) {
  const std::optional<EventType> type = EventFromCm(event.type);
  if (!type) return;
  if (*type == EventType::kDisconnected) {
    conn.SetCause(Cause::kDisconnected);
    // As librdmacm does for the QPs it manages: flush what is outstanding at once.
    if (conn.qp != nullptr) ToError(conn.qp.get());
    if (!std::exchange(conn.disconnect_notified, true)) {
      core.PushEvent(Event{.type = EventType::kDisconnected,
                           .peer = conn.peer,
                           .qp = conn.id,
                           .detail = StrCat("node ", conn.peer, " disconnected queue pair ",
                                            conn.id, " of node ", core.node)});
    }
    return;
  }
  conn.SetCause(Cause::kFailed);
  if (conn.qp != nullptr) ToError(conn.qp.get());
  core.PushEvent(
      Event{.type = *type,
            .peer = conn.peer,
            .qp = conn.id,
            .detail = StrCat("node ", core.node, ": ", CmFailureText(event.type, event.status))});
}

void HandleCmEventLocked(Core& core, const CmEventInfo& event) {
  if (event.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
    HandleRequestLocked(core, event);
    return;
  }
  if (event.type == RDMA_CM_EVENT_DEVICE_REMOVAL && core.listen_id != nullptr &&
      event.id == core.listen_id.get()) {
    core.PushEvent(Event{.type = EventType::kDeviceError,
                         .peer = kInvalidNode,
                         .qp = 0,
                         .detail = StrCat("node ", core.node, ": the RDMA device was removed")});
    return;
  }
  auto it = core.conns.find(event.id);
  if (it == core.conns.end()) {
    // A request still waiting for our Connect: its initiator gave up.
    for (auto pending = core.pending.begin(); pending != core.pending.end(); ++pending) {
      auto& queue = pending->second;
      const auto match = std::find_if(queue.begin(), queue.end(), [&](const PendingRequest& r) {
        return r.id.get() == event.id;
      });
      if (match != queue.end() &&
          (event.type == RDMA_CM_EVENT_REJECTED || event.type == RDMA_CM_EVENT_DISCONNECTED ||
           event.type == RDMA_CM_EVENT_CONNECT_ERROR || event.type == RDMA_CM_EVENT_UNREACHABLE)) {
        queue.erase(match);
        if (queue.empty()) core.pending.erase(pending);
        break;
      }
    }
    return;
  }
  Conn& conn = *it->second;
  if (conn.attempt != nullptr && !conn.established) {
    AdvanceAttemptLocked(core, *conn.attempt, conn, event);
  } else {
    HandleLiveEventLocked(core, conn, event);
  }
}

void HandleAsyncEventLocked(Core& core, const ibv_async_event& event) {
  Conn* conn = nullptr;
  if (event.event_type == IBV_EVENT_COMM_EST || event.event_type == IBV_EVENT_QP_FATAL ||
      event.event_type == IBV_EVENT_QP_REQ_ERR || event.event_type == IBV_EVENT_QP_ACCESS_ERR) {
    std::lock_guard lock(core.cq_mu);
    auto it = core.by_qp_num.find(event.element.qp->qp_num);
    if (it != core.by_qp_num.end()) conn = it->second;
  }
  if (event.event_type == IBV_EVENT_COMM_EST) {
    // Data arrived before the CM's RTU: tell the CM the connection is up (rdma_notify.3).
    if (conn != nullptr && conn->cm_id != nullptr) rdma_notify(conn->cm_id.get(), event.event_type);
    return;
  }
  const std::optional<EventType> type = EventFromAsync(event.event_type);
  if (!type) return;
  if (*type == EventType::kQpError) {
    if (conn == nullptr || !conn->SetCause(Cause::kFailed)) return;
    core.PushEvent(Event{.type = EventType::kQpError,
                         .peer = conn->peer,
                         .qp = conn->id,
                         .detail = StrCat("queue pair ", conn->id, " of node ", core.node, ": ",
                                          ibv_event_type_str(event.event_type))});
    return;
  }
  std::string detail = StrCat("node ", core.node, " (", core.info.device,
                              "): ", ibv_event_type_str(event.event_type));
  if (event.event_type == IBV_EVENT_CQ_ERR) {
    // An overrun CQ lost completions: the QPs feeding it are no longer trustworthy (the IB spec
    // moves them to the error state; the loopback model does the same).
    int depth = 0;
    {
      std::lock_guard lock(core.cq_mu);
      depth = core.cq->cqe;
    }
    detail += StrCat(": CQ overrun, more than ", depth,
                     " unpolled completions (cq_depth); every queue pair of the node fails");
    for (auto& [id, each] : core.conns) {
      if (each->qp == nullptr) continue;
      each->SetCause(Cause::kFailed);
      ToError(each->qp.get());
    }
  }
  core.PushEvent(Event{.type = *type, .peer = kInvalidNode, .qp = 0, .detail = std::move(detail)});
}

// Retrieves, acknowledges and handles every pending rdma_cm and async event. Caller holds mu.
void ProcessEventsLocked(Core& core) {
  rdma_cm_event* raw = nullptr;
  while (rdma_get_cm_event(core.channel.get(), &raw) == 0) {
    CmEventInfo event;
    event.type = raw->event;
    event.status = raw->status;
    event.id = raw->id;
    const rdma_conn_param& conn = raw->param.conn;
    if (conn.private_data != nullptr && conn.private_data_len > 0) {
      const auto* bytes = static_cast<const std::byte*>(conn.private_data);
      event.private_data.assign(bytes, bytes + conn.private_data_len);
    }
    event.responder_resources = conn.responder_resources;
    event.initiator_depth = conn.initiator_depth;
    rdma_ack_cm_event(raw);
    FT_LOG(kDebug) << "rdma: node " << core.node << " " << rdma_event_str(event.type) << " status "
                   << event.status;
    HandleCmEventLocked(core, event);
  }
  ibv_async_event async{};
  while (ibv_get_async_event(core.context.get(), &async) == 0) {
    HandleAsyncEventLocked(core, async);
    ibv_ack_async_event(&async);
  }
}

// ---------------------------------------------------------------------------------------------
// The CM thread

class CmThread {
 public:
  CmThread() = default;
  ~CmThread() { Stop(); }
  CmThread(const CmThread&) = delete;
  CmThread& operator=(const CmThread&) = delete;

  Status Start(Core& core) {
    FT_RETURN_IF_ERROR(Step(core.options, 12, "eventfd (CM thread stop)"));
    stop_ = UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!stop_.valid()) return ErrnoStatus(errno, "eventfd");
    FT_RETURN_IF_ERROR(Step(core.options, 13, "CM thread"));
    thread_ = std::thread([this, &core] { Run(core); });
    return Status::Ok();
  }

  void Stop() {
    if (!thread_.joinable()) return;
    WriteEventFd(stop_.get());
    thread_.join();
  }

 private:
  void Run(Core& core) {
    pollfd fds[3] = {{core.channel->fd, POLLIN, 0},
                     {core.context->async_fd, POLLIN, 0},
                     {stop_.get(), POLLIN, 0}};
    while (true) {
      const int n = ::poll(fds, 3, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        FT_LOG(kError) << "rdma: CM thread of node " << core.node
                       << ": poll failed: " << std::strerror(errno);
        return;
      }
      if ((fds[2].revents & POLLIN) != 0) return;
      {
        std::lock_guard lock(core.mu);
        ProcessEventsLocked(core);
      }
      core.cv.notify_all();
    }
  }

  UniqueFd stop_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// The public objects

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

ibv_wr_opcode IbvOpcode(Opcode opcode) {
  switch (opcode) {
    case Opcode::kWrite:
      return IBV_WR_RDMA_WRITE;
    case Opcode::kRead:
      return IBV_WR_RDMA_READ;
    default:
      return IBV_WR_SEND;
  }
}

class RdmaQueuePair final : public QueuePair {
 public:
  RdmaQueuePair(std::shared_ptr<Core> core, std::unique_ptr<Conn> conn)
      : core_(std::move(core)), conn_(std::move(conn)) {}
  ~RdmaQueuePair() override {
    std::lock_guard lock(core_->mu);
    ReleaseConnLocked(*core_, std::move(conn_), /*disconnect=*/true);
  }
  RdmaQueuePair(const RdmaQueuePair&) = delete;
  RdmaQueuePair& operator=(const RdmaQueuePair&) = delete;

  uint32_t id() const override { return conn_->id; }
  NodeId peer() const override { return conn_->peer; }
  std::span<const std::byte> peer_private_data() const override { return conn_->peer_data; }
  QpState state() const override {
    return conn_->cause.load() != Cause::kNone || core_->dead.load() ? QpState::kError
                                                                     : QpState::kConnected;
  }

  Status PostSend(std::span<const SendRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    Conn& c = *conn_;
    if (core_->dead.load()) {
      return Status::Unavailable("PostSend on queue pair ", c.id, ": node ", core_->node,
                                 " is gone (its Fabric was destroyed)");
    }
    const Limits& limits = core_->limits;
    std::lock_guard lock(c.send_mu);
    size_t done = 0;
    Status status;
    while (done < requests.size() && status.ok()) {
      ibv_send_wr wrs[kPostChunk];
      ibv_sge sges[kPostChunkSges];
      int n = 0;
      int used_sges = 0;
      const uint64_t outstanding = c.next_send - c.retired.load(std::memory_order_acquire);
      for (; n < kPostChunk && done + static_cast<size_t>(n) < requests.size(); ++n) {
        const size_t index = done + static_cast<size_t>(n);
        const SendRequest& r = requests[index];
        uint64_t bytes = 0;
        status = ValidateSendRequest(r, index, limits, &bytes);
        if (!status.ok()) break;
        if (outstanding + static_cast<uint64_t>(n) >= static_cast<uint64_t>(limits.max_send_wr)) {
          status = Status::ResourceExhausted(
              "PostSend on queue pair ", c.id, ": send queue full (", limits.max_send_wr,
              " requests outstanding, max_send_wr); poll a signaled completion to free slots");
          break;
        }
        const uint64_t position = c.next_send + static_cast<uint64_t>(n);
        SendSlot& slot = c.send_slots[position % c.send_capacity];
        slot.wr_id.store(r.wr_id, std::memory_order_relaxed);
        slot.bytes.store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
        slot.opcode.store(static_cast<uint8_t>(r.opcode), std::memory_order_relaxed);
        ibv_send_wr& wr = wrs[n];
        wr = ibv_send_wr{};
        wr.wr_id = position;
        wr.opcode = IbvOpcode(r.opcode);
        wr.sg_list = &sges[used_sges];
        for (int i = 0; i < r.num_sge; ++i) {
          if (r.sge[i].length == 0) continue;  // some HCAs read a zero length as 2 GiB
          sges[used_sges++] =
              ibv_sge{.addr = r.sge[i].addr, .length = r.sge[i].length, .lkey = r.sge[i].lkey};
          ++wr.num_sge;
        }
        if (wr.num_sge == 0) wr.sg_list = nullptr;
        if (r.signaled) wr.send_flags |= IBV_SEND_SIGNALED;
        if (r.inline_data) wr.send_flags |= IBV_SEND_INLINE;
        if (r.opcode != Opcode::kSend) {
          wr.wr.rdma.remote_addr = r.remote_addr;
          wr.wr.rdma.rkey = r.rkey;
        }
        wr.next = nullptr;
        if (n > 0) wrs[n - 1].next = &wr;
      }
      if (n == 0) break;
      ibv_send_wr* bad = nullptr;
      if (const int rc = ibv_post_send(c.qp.get(), wrs, &bad); rc != 0) {
        const int accepted = bad != nullptr ? static_cast<int>(bad - wrs) : 0;
        status = rc == ENOMEM ? Status::ResourceExhausted("PostSend on queue pair ", c.id,
                                                          ": the device's send queue is full")
                              : ErrnoStatus(rc, StrCat("ibv_post_send on queue pair ", c.id));
        n = std::clamp(accepted, 0, n);
      }
      c.next_send += static_cast<uint64_t>(n);
      done += static_cast<size_t>(n);
    }
    if (posted != nullptr) *posted = done;
    return status;
  }

  Status PostRecv(std::span<const RecvRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    if (core_->dead.load()) {
      return Status::Unavailable("PostRecv on queue pair ", conn_->id, ": node ", core_->node,
                                 " is gone (its Fabric was destroyed)");
    }
    return PostReceives(*core_, *conn_, requests, posted);
  }

  void ToError() override {
    conn_->SetCause(Cause::kFenced);
    rdma::ToError(conn_->qp.get());
  }

 private:
  std::shared_ptr<Core> core_;
  std::unique_ptr<Conn> conn_;
};

class RdmaFabric final : public Fabric {
 public:
  RdmaFabric(std::shared_ptr<Core> core, AddressBook addresses,
             std::unique_ptr<DeviceLocality> locality)
      : core_(std::move(core)), addresses_(std::move(addresses)), locality_(std::move(locality)) {}
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
  const DeviceLocality* locality() const override { return locality_.get(); }

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
  const std::unique_ptr<DeviceLocality> locality_;  // never null
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
    qps.push_back(std::make_unique<RdmaQueuePair>(core_, std::move(a.conn)));
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
  // Decided once, here, so that every user of the Fabric (engine, ftbench) sees the same
  // sentence; a topology hwloc cannot load costs placement, never the Fabric.
  std::unique_ptr<DeviceLocality> locality = rdma::DecideLocality(
      rdma::MachineTopology(), core->info.device, rdma::InterfaceOfAddress(core->listen.get()));
  FT_LOG(kInfo) << "rdma: node " << node << ": " << locality->Describe();
  auto fabric = std::make_unique<rdma::RdmaFabric>(std::move(core), std::move(addresses),
                                                   std::move(locality));
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
