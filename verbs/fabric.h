// The Fabric seam: a small runtime interface shaped like verbs, with two backends (loopback:
// N nodes in one process; rdma: rdma-core). Code above verbs/ sees only this header.
//
// One Fabric object is one node's view of the network, like an ibv_context + PD + CQ: it
// registers memory, connects reliable queue pairs to peers, and reports completions and events.
//
// The datapath follows verbs (ibv_post_send.3, ibv_poll_cq.3):
// - Post* returns only local, immediate failures (a full send queue, too many SGEs, a QP that was
//   never connected, Unavailable once this node is dead). Everything that depends on the remote
//   side, and bad lkeys, arrive later as a Completion.
// - A completion never appears inside the post call; it appears after a progress step
//   (PollCompletions) of the posting node.
// - Work requests on one queue pair execute in post order (RC); a WRITE posted before a SEND on the
//   same QP has landed when the SEND's receive completes.
// - An unsignaled request produces no completion when it succeeds; every failure produces one.
//   Its send-queue slot is freed when a later signaled request of the same QP is polled.
// - The first failure on a QP moves it to the error state: the failed request reports why, every
//   request after it reports kFlushed (like IBV_WC_WR_FLUSH_ERR), its posted receives too, and
//   its node gets a kQpError event. Errors the responder detects (bad rkey/range/access, a receive
//   too small or with a bad lkey) move the responder's QP to the error state as well (RC).
// - An error Completion carries only wr_id, qp and status; bytes are meaningful only on success.
//
// Thread-safety: a Fabric and its QueuePairs may be used from several threads at once; posting
// on one QP from two threads at once is allowed but their relative order is unspecified.
// Memory: registered memory must outlive its MemoryRegion; memory named by an SGE or a remote
// address must stay valid until the request's completion (or a later signaled one) is polled.
#ifndef FT_VERBS_FABRIC_H_
#define FT_VERBS_FABRIC_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "ftengine/status.h"

namespace ft::verbs {

using NodeId = uint32_t;
inline constexpr NodeId kInvalidNode = UINT32_MAX;

// Access rights of a registration (bit set, as IBV_ACCESS_*). Local read is always allowed.
// As with ibv_reg_mr, kAccessRemoteWrite requires kAccessLocalWrite (else InvalidArgument).
enum Access : uint32_t {
  kAccessLocalWrite = 1u << 0,
  kAccessRemoteWrite = 1u << 1,
  kAccessRemoteRead = 1u << 2,
};

// A registration. Destroying it deregisters the memory (ibv_dereg_mr); later remote access with
// its rkey fails with kRemoteAccessError.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  virtual void* addr() const = 0;
  virtual size_t length() const = 0;
  virtual uint32_t lkey() const = 0;
  virtual uint32_t rkey() const = 0;
  // True when [p, p + bytes) lies inside this region.
  bool Contains(const void* p, size_t bytes) const {
    const auto* begin = static_cast<const std::byte*>(addr());
    const auto* at = static_cast<const std::byte*>(p);
    return at >= begin && bytes <= length() && static_cast<size_t>(at - begin) <= length() - bytes;
  }
};

// What a peer needs to address our memory: published in connection private data.
struct RemoteRegion {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t rkey = 0;
};

// One scatter-gather element of local, registered memory.
struct Sge {
  uint64_t addr = 0;
  uint32_t length = 0;
  uint32_t lkey = 0;
};

inline constexpr int kMaxSge = 4;  // per work request, on every backend

enum class Opcode : uint8_t { kWrite, kRead, kSend, kRecv };
const char* OpcodeName(Opcode opcode);

// Outcome of a work request (IBV_WC_* in verbs/rdma/errors.cc maps onto these).
enum class WcStatus : uint8_t {
  kSuccess,
  kLocalLengthError,      // a received message was longer than the posted buffer
  kLocalProtectionError,  // an SGE named memory outside the region of its lkey
  kRemoteAccessError,     // bad rkey, range, or access rights at the target; nothing written
  kRemoteInvalidRequest,  // the peer's receive buffer was too small for our SEND
  kRetryExceeded,         // the peer did not answer (dead, partitioned or fenced)
  kRnrRetryExceeded,      // SEND found no posted receive at the peer, retries ran out
  kFlushed,               // the QP was already in the error state
  kFatal,                 // anything else (a bug or a device error)
};
const char* WcStatusName(WcStatus status);

struct Completion {
  uint64_t wr_id = 0;
  uint32_t qp = 0;  // QueuePair::id() of the queue pair it was posted on
  WcStatus status = WcStatus::kSuccess;
  Opcode opcode = Opcode::kWrite;  // valid on success only (as ibv_wc.opcode)
  uint32_t bytes = 0;              // received bytes for kRecv; valid on success only
};

// A WRITE, READ or SEND. WRITE/READ name remote memory; SEND goes to the peer's next posted
// receive. inline_data copies the payload at post time (bytes <= Limits::max_inline_bytes), after
// which the SGE memory may be reused at once.
struct SendRequest {
  uint64_t wr_id = 0;
  Opcode opcode = Opcode::kWrite;
  Sge sge[kMaxSge] = {};
  int num_sge = 0;
  uint64_t remote_addr = 0;  // WRITE/READ only
  uint32_t rkey = 0;         // WRITE/READ only
  bool signaled = true;
  bool inline_data = false;
};

struct RecvRequest {
  uint64_t wr_id = 0;
  Sge sge{};
};

enum class QpState : uint8_t { kConnected, kError };

class QueuePair {
 public:
  // Destroys the QP; unpolled completions of it are discarded, the peer gets kDisconnected.
  virtual ~QueuePair() = default;
  virtual uint32_t id() const = 0;  // unique among this Fabric's QPs (like qp_num)
  virtual NodeId peer() const = 0;
  // What the peer passed to Connect (≤ Limits::max_private_data bytes).
  virtual std::span<const std::byte> peer_private_data() const = 0;
  virtual QpState state() const = 0;

  // Posts requests in order. On an immediate failure (InvalidArgument, ResourceExhausted when the
  // send queue would overflow, FailedPrecondition), requests before the failing one are posted
  // and *posted is their count; nothing after is.
  virtual Status PostSend(std::span<const SendRequest> requests, size_t* posted = nullptr) = 0;
  virtual Status PostRecv(std::span<const RecvRequest> requests, size_t* posted = nullptr) = 0;

  // Fencing: moves the QP to the error state. Our outstanding requests and posted receives
  // complete kFlushed; nothing the peer posts on its end lands in our memory after ToError
  // returns (its requests fail kRetryExceeded). No event on either side: the peer learns of the
  // fence only through its failing requests.
  virtual void ToError() = 0;
};

// Asynchronous events (rdma_cm events and ibv async events map onto these).
enum class EventType : uint8_t {
  kDisconnected,  // the peer closed, died or became unreachable
  kQpError,       // a QP entered the error state because of a failed request
  kDeviceError,   // the device is gone (DEVICE_REMOVAL) or a CQ overran
};
const char* EventTypeName(EventType type);

struct Event {
  EventType type = EventType::kDisconnected;
  NodeId peer = kInvalidNode;
  uint32_t qp = 0;
  std::string detail;
};

struct Limits {
  int max_send_wr = 0;  // outstanding send requests per QP
  int max_recv_wr = 0;  // posted receives per QP
  int cq_depth = 0;     // completions the node's CQ holds before it overruns (at creation:
                        // rdma grows it as QPs connect, so that it never overruns)
  uint32_t max_inline_bytes = 0;
  uint32_t max_message_bytes = 0;  // largest single WRITE/READ/SEND
  size_t max_private_data = 0;
};

struct ConnectRequest {
  NodeId peer = kInvalidNode;
  std::vector<std::byte> private_data;  // ≤ Limits::max_private_data
  // Receives posted on the QP as it is created, before the peer can send (≤ Limits::max_recv_wr).
  // A receive posted after Connect returns races the peer's first SEND, which on rdma meets RNR
  // NAKs (and fails kRnrRetryExceeded if the gap outlasts the RNR retries); these cannot lose
  // that race. They complete on the returned QP as if posted by PostRecv, possibly before
  // Connect returns (a caller polling meanwhile sees a QP id it was not given yet). When the
  // batch fails they are dropped with its QPs, without flushes: their buffers are free once
  // Connect returned. (A receive that a peer's SEND already filled before the failure may still be
  // reported to a caller polling during Connect, under a QP id it is never given.)
  std::vector<RecvRequest> receives;
};

// Where a fabric's device sits in the machine (rdma: the NIC's NUMA node, from hwloc), so that
// the engine can put its registered buffers and progress thread next to it without knowing the
// backend. Owned by the Fabric; valid for its life. Thread-safe (read-only after creation).
class DeviceLocality {
 public:
  virtual ~DeviceLocality() = default;
  // One sentence for reports (EngineMetrics::numa, `ftbench --verbose`): where the device is and
  // what is bound there ("mlx5_0 on NUMA node 1 of 2 ...: bound there", "1 NUMA node: no binding").
  virtual std::string Describe() const = 0;
  // True when binding is worth doing: several NUMA nodes and the device's node is known.
  virtual bool binds() const = 0;
  // Moves [addr, addr + bytes) to the device's NUMA node; call before the memory is registered
  // (pinned pages do not move). FailedPrecondition when binds() is false.
  virtual Status BindMemory(void* addr, size_t bytes) const = 0;
  // Binds the calling thread to the CPUs of the device's NUMA node. FailedPrecondition when
  // binds() is false.
  virtual Status BindCurrentThread() const = 0;
};

class Fabric {
 public:
  virtual ~Fabric() = default;

  virtual NodeId node() const = 0;
  virtual const Limits& limits() const = 0;
  // "loopback", "rdma", ...
  virtual std::string name() const = 0;

  // Registers [addr, addr + bytes) with the given access (a bit set of Access).
  virtual Result<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                               uint32_t access) = 0;

  // Connects one RC queue pair to each requested peer (each peer must call Connect for us too,
  // in any order; a batch never deadlocks against another batch). Blocks until every QP is
  // connected or `timeout` ran out (DeadlineExceeded naming the missing peers); a dead peer gives
  // Unavailable. On failure no QP of the batch is returned.
  virtual Result<std::vector<std::unique_ptr<QueuePair>>> Connect(
      std::span<const ConnectRequest> requests, Nanos timeout) = 0;

  // A progress step: executes work this node posted, as far as the backend models it, then moves
  // up to out.size() completions into `out`. Returns how many.
  virtual size_t PollCompletions(std::span<Completion> out) = 0;
  // Moves up to out.size() pending events into `out`. Returns how many.
  virtual size_t PollEvents(std::span<Event> out) = 0;

  // Blocks until a completion or event may be ready, Interrupt() was called, or `timeout` ran out.
  // Spurious returns are allowed: callers poll and wait again.
  virtual void WaitForActivity(Nanos timeout) = 0;
  // Makes a current or the next WaitForActivity return early. Callable from any thread.
  virtual void Interrupt() = 0;
  // Makes every Connect of this node in progress return Aborted at once (its partial QPs are
  // released, as on any failure). Callable from any thread; later Connects are not affected.
  virtual void CancelConnects() {}

  // Address exchange, for backends whose nodes find each other on a network (rdma: a node's
  // rdmacm listen address). endpoint() is this node's address as opaque bytes (at most
  // kMaxEndpointBytes) for the caller to hand to its peers; LearnEndpoint tells this node where
  // `peer` listens, ahead of a Connect that needs it (it takes precedence over what the backend
  // was configured with). An in-process backend has no endpoint (empty) and accepts any.
  static constexpr size_t kMaxEndpointBytes = 20;
  virtual std::vector<std::byte> endpoint() const { return {}; }
  virtual Status LearnEndpoint(NodeId /*peer*/, std::span<const std::byte> /*endpoint*/) {
    return Status();
  }

  // Where the device is, for NUMA placement; nullptr when the backend has no device (loopback).
  // A wrapping Fabric (fault injection, tracing) must forward it, or placement silently stops.
  virtual const DeviceLocality* locality() const { return nullptr; }
};

// The local checks every backend's Connect makes on a batch of node `self`: no request for
// itself, no peer twice, private data and receives within `limits`. InvalidArgument naming the
// bad request.
Status ValidateConnectRequests(NodeId self, std::span<const ConnectRequest> requests,
                               const Limits& limits);

// The local checks every backend's PostSend makes on request `index` of a batch: opcode, SGE
// count, message size against limits.max_message_bytes, inline rules. On success *bytes is the
// request's total length.
Status ValidateSendRequest(const SendRequest& request, size_t index, const Limits& limits,
                           uint64_t* bytes);

}  // namespace ft::verbs

#endif  // FT_VERBS_FABRIC_H_
