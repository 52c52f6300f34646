// The loopback fabric: an in-process model of reliable-connected verbs (see loopback.h).
//
// Objects. A Net is the whole network. A Node is one Fabric incarnation of a rank (a Revive and
// CreateFabric make a new Node for the same rank; the old one stays dead). An End is one side of a
// queue pair; a Pair holds the two Ends of a connection, so an End's peer pointer is valid while
// either side is referenced. Fabric, QueuePair and MemoryRegion objects hold shared_ptrs to these.
//
// Progress. Work executes only inside PollCompletions of the posting node (Progress): it pops
// the head of each End's send queue, validates it against the registrations of both nodes and
// copies the bytes with memmove. The copy runs under the two nodes' registration locks, taken
// shared, and nothing global: many nodes copy at once.
//
// Lock order (acquire left to right, never the reverse; a lock may be skipped):
//
//   Net::mu  ->  Node::progress_mu  ->  Node::mem (shared, two at most, ordered by lock_rank,
//   i.e. by rank then incarnation)  ->  End::mu (one at a time)  ->  Node::mu (one at a time)
//   ->  Net::faults_mu, Net::rng_mu (leaves)
//
// Node::mem taken exclusively (registration, deregistration, and the "drain" that fencing,
// Kill, Partition and QP destruction do to wait out in-flight copies) is only ever taken with at
// most Net::mu held, never together with another Node::mem, End::mu or Node::mu. RegistrationLock
// prefers writers, so a deregistration is not starved by a stream of copies; that is deadlock-free
// because a thread holding a shared Node::mem never waits for an exclusive one.
//
// Fencing and death use one pattern: set the flag (End::error, Node::dead, a partition), then
// drain the node's registration lock. A copy checks the flags while holding the lock shared, so
// either it started before the drain (and the drain waits for it) or it sees the flag.
#include "verbs/loopback/loopback.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/log.h"

namespace ft::verbs {
namespace {

constexpr int kMaxNodes = 1 << 16;
// One progress step executes at most this many requests, or this many bytes (at least one
// request), so that a PollCompletions call is bounded.
constexpr size_t kStepMaxRequests = 1024;
constexpr uint64_t kStepMaxBytes = uint64_t{64} << 20;
constexpr uint64_t kNoSeq = UINT64_MAX;

using SteadyTime = std::chrono::steady_clock::time_point;

SteadyTime DeadlineAfter(Nanos timeout) {
  constexpr Nanos kLongest = std::chrono::hours(24 * 365);
  return std::chrono::steady_clock::now() + std::clamp(timeout, Nanos(0), kLongest);
}

// A shared mutex that prefers writers: new readers wait while a writer waits. (glibc's
// pthread_rwlock, behind std::shared_mutex, prefers readers, so a deregistration racing a
// stream of WRITEs from many nodes could wait indefinitely.)
class RegistrationLock {
 public:
  void lock_shared() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return writers_ == 0; });
    ++readers_;
  }
  void unlock_shared() {
    std::lock_guard lock(mu_);
    if (--readers_ == 0 && writers_ > 0) cv_.notify_all();
  }
  void lock() {
    std::unique_lock lock(mu_);
    ++writers_;
    cv_.wait(lock, [&] { return readers_ == 0 && !writing_; });
    writing_ = true;
  }
  void unlock() {
    std::lock_guard lock(mu_);
    writing_ = false;
    --writers_;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int readers_ = 0;
  int writers_ = 0;  // waiting or active
  bool writing_ = false;
};

struct MrInfo {
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t access = 0;
};

bool InRange(const MrInfo& mr, uint64_t addr, uint64_t bytes) {
  return addr >= mr.addr && bytes <= mr.length && addr - mr.addr <= mr.length - bytes;
}

// Keys look random (so that a guessed or stale key does not hit by accident) and are unique in
// the network: multiplication by an odd constant is a bijection of uint32_t.
uint32_t MixKey(uint32_t index) { return index * 0x9E3779B1u; }

uint64_t PairKey(NodeId a, NodeId b) {
  if (a > b) std::swap(a, b);
  return (uint64_t{a} << 32) | b;
}

struct Net;
struct Node;
struct End;

// A posted send request, as the send queue holds it.
struct Pending {
  SendRequest req;
  uint64_t seq = 0;         // position in the QP's send queue (for slot accounting)
  uint64_t ready_step = 0;  // first progress step of the poster that may execute it
  uint64_t bytes = 0;       // message length
  int delay = 0;
  int rnr_retries = 0;
  bool inline_bad_lkey = false;    // inline payload whose SGEs failed the lkey check at post time
  std::vector<std::byte> payload;  // inline data, copied at post time
};

struct CqEntry {
  Completion completion;
  End* end = nullptr;     // valid: entries of a destroyed End are purged under Node::mu
  uint64_t seq = kNoSeq;  // send completions: the request's seq, retired when polled
};

struct End {
  std::shared_ptr<Node> node;
  End* peer = nullptr;
  uint32_t id = 0;
  NodeId peer_rank = kInvalidNode;
  std::vector<std::byte> peer_private_data;

  std::atomic<bool> error{false};
  std::atomic<bool> destroyed{false};
  std::atomic<bool> disconnect_notified{false};  // this End's node got its kDisconnected
  std::atomic<int64_t> pending{0};               // requests in sq or being executed
  std::atomic<uint64_t> retired{0};              // seqs below this are retired

  std::mutex mu;
  std::deque<Pending> sq;      // guarded by mu
  uint64_t next_seq = 0;       // guarded by mu
  std::deque<RecvRequest> rq;  // guarded by mu
};

struct Pair {
  End ends[2];
};

struct Node {
  Node(Net* network, NodeId rank, uint32_t incarnation)
      : net(network), id(rank), lock_rank((uint64_t{rank} << 32) | incarnation) {}

  Net* const net;
  const NodeId id;
  const uint64_t lock_rank;  // the order in which two nodes' `mem` locks are taken
  std::atomic<bool> dead{false};
  uint64_t connect_cancels = 0;  // guarded by the network's mu: CancelConnects calls

  RegistrationLock mem;  // shared: a copy touches this node's memory; exclusive: (de)registration
  std::unordered_map<uint32_t, MrInfo> lkeys;  // guarded by mem
  std::unordered_map<uint32_t, MrInfo> rkeys;  // guarded by mem

  std::mutex progress_mu;                       // one executor at a time (keeps per-QP order)
  std::vector<std::shared_ptr<End>> exec_ends;  // guarded by progress_mu: snapshot of `ends`
  uint64_t exec_version = UINT64_MAX;           // guarded by progress_mu
  size_t cursor = 0;                            // guarded by progress_mu: round-robin start
  std::atomic<uint64_t> step{0};                // progress steps so far
  std::atomic<int64_t> queued{0};               // sum of the Ends' `pending`
  std::atomic<bool> flush_pending{false};       // an End went to error: flush its receives
  std::atomic<int> waiters{0};                  // threads in WaitForActivity

  std::mutex mu;
  std::condition_variable cv;                     // WaitForActivity
  std::deque<CqEntry> cq;                         // guarded by mu
  std::deque<Event> events;                       // guarded by mu
  bool interrupted = false;                       // guarded by mu
  bool cq_overrun = false;                        // guarded by mu
  std::map<uint32_t, std::shared_ptr<End>> ends;  // guarded by mu: live (undestroyed) Ends
  uint64_t ends_version = 0;                      // guarded by mu
};

// A pending Connect offer from one node to another, owned by the Connect call.
struct Offer {
  std::shared_ptr<Node> from;
  NodeId to = kInvalidNode;
  std::span<const std::byte> data;
  std::span<const RecvRequest> receives;  // posted on our End when it is made
  std::shared_ptr<End> result;            // our End, once a peer matched the offer
  // The condition variable its Connect call waits on: a match wakes only the two calls involved
  // (a network-wide notify_all woke every waiting Connect: O(N^2) wake-ups for N nodes).
  std::condition_variable* wake = nullptr;
};

struct Net {
  Net(int node_count, const LoopbackOptions& opts)
      : nodes(node_count),
        options(opts),
        rng(opts.seed),
        alive(node_count, true),
        current(node_count) {}

  const int nodes;
  const LoopbackOptions options;
  std::atomic<int64_t> live_objects{0};  // Fabrics, QueuePairs and MemoryRegions
  std::atomic<uint32_t> next_key_index{1};
  std::atomic<uint32_t> next_qp_id{1};
  std::atomic<uint32_t> next_incarnation{1};
  std::atomic<bool> torn_writes{false};
  std::atomic<int> random_delay_max{0};

  // Partitions and fixed delays by PairKey; the counts let the datapath skip the lock.
  mutable std::shared_mutex faults_mu;
  std::unordered_set<uint64_t> partitions;   // guarded by faults_mu
  std::unordered_map<uint64_t, int> delays;  // guarded by faults_mu
  std::atomic<size_t> partition_count{0};
  std::atomic<size_t> delay_count{0};

  std::mutex rng_mu;
  std::mt19937_64 rng;  // guarded by rng_mu

  mutable std::mutex mu;
  std::vector<bool> alive;                             // guarded by mu: per rank
  std::vector<std::shared_ptr<Node>> current;          // guarded by mu: newest Node of each rank
  std::map<std::pair<NodeId, NodeId>, Offer*> offers;  // guarded by mu: (from, to)

  bool Partitioned(NodeId a, NodeId b) const {
    if (partition_count.load(std::memory_order_acquire) == 0) return false;
    std::shared_lock lock(faults_mu);
    return partitions.count(PairKey(a, b)) != 0;
  }

  int DelayFor(NodeId a, NodeId b) {
    int delay = 0;
    if (delay_count.load(std::memory_order_acquire) != 0) {
      std::shared_lock lock(faults_mu);
      auto it = delays.find(PairKey(a, b));
      if (it != delays.end()) delay = it->second;
    }
    const int random_max = random_delay_max.load(std::memory_order_relaxed);
    if (random_max > 0) {
      std::lock_guard lock(rng_mu);
      delay += std::uniform_int_distribution<int>(0, random_max)(rng);
    }
    return delay;
  }
};

// ---------------------------------------------------------------------------------------------
void WakeWaitingConnects(Net& net);

// Helpers on nodes: locks, wake-ups, completions and events.

// Takes two nodes' registration locks shared, in lock order.
class SharedLockPair {
 public:
  SharedLockPair(Node& a, Node& b)
      : first_(a.lock_rank < b.lock_rank ? &a : &b), second_(first_ == &a ? &b : &a) {
    FT_CHECK(first_ != second_);
    first_->mem.lock_shared();
    second_->mem.lock_shared();
  }
  ~SharedLockPair() {
    second_->mem.unlock_shared();
    first_->mem.unlock_shared();
  }
  SharedLockPair(const SharedLockPair&) = delete;
  SharedLockPair& operator=(const SharedLockPair&) = delete;

 private:
  Node* first_;
  Node* second_;
};

// Waits until no copy touches n's memory. Called after setting a flag that stops new copies.
void Drain(Node& n) { std::unique_lock lock(n.mem); }

// Wakes WaitForActivity after a change made without holding n.mu.
void Wake(Node& n) {
  if (n.waiters.load() == 0) return;
  { std::lock_guard lock(n.mu); }
  n.cv.notify_all();
}

void PushEvent(Node& n, Event event) {
  std::lock_guard lock(n.mu);
  n.events.push_back(std::move(event));
  n.cv.notify_all();
}

// Appends a completion to n's CQ. A full CQ overruns: the completion is lost, the node gets one
// kDeviceError event and every QP of the node moves to the error state.
void PushCompletion(Node& n, const Completion& completion, End* end, uint64_t seq) {
  std::lock_guard lock(n.mu);
  if (end != nullptr && end->destroyed.load()) return;  // unpolled completions are discarded
  const int depth = n.net->options.limits.cq_depth;
  if (n.cq.size() >= static_cast<size_t>(depth)) {
    if (!n.cq_overrun) {
      n.cq_overrun = true;
      n.events.push_back(Event{.type = EventType::kDeviceError,
                               .peer = kInvalidNode,
                               .qp = 0,
                               .detail = StrCat("CQ overrun: node ", n.id, " had ", depth,
                                                " unpolled completions (cq_depth)")});
      for (auto& [id, e] : n.ends) e->error.store(true);
      n.flush_pending.store(true);
      FT_LOG(kWarn) << "loopback: CQ overrun on node " << n.id;
    }
    n.cv.notify_all();
    return;
  }
  n.cq.push_back(CqEntry{completion, end, seq});
  if (n.waiters.load() > 0) n.cv.notify_all();
}

void Retire(End& e, uint64_t seq) {
  uint64_t current = e.retired.load();
  while (current < seq + 1 && !e.retired.compare_exchange_weak(current, seq + 1)) {
  }
}

// Gives pe's node a kDisconnected event, once per End.
void NotifyDisconnected(End& pe, NodeId from, std::string detail) {
  if (pe.destroyed.load() || pe.disconnect_notified.exchange(true)) return;
  PushEvent(*pe.node, Event{.type = EventType::kDisconnected,
                            .peer = from,
                            .qp = pe.id,
                            .detail = std::move(detail)});
}

// Moves e to the error state because of a failure; the first time, its node gets kQpError.
void FailEnd(End& e, std::string detail) {
  if (e.error.exchange(true)) return;
  Node& n = *e.node;
  n.flush_pending.store(true);
  PushEvent(n, Event{.type = EventType::kQpError,
                     .peer = e.peer_rank,
                     .qp = e.id,
                     .detail = std::move(detail)});
}

// Destroys one End (idempotent): drops its queues and unpolled completions, tells the peer, and
// waits out copies touching this node's memory.
void DestroyEnd(End& e) {
  Node& n = *e.node;
  {
    std::lock_guard lock(e.mu);
    if (e.destroyed.exchange(true)) return;
    const auto dropped = static_cast<int64_t>(e.sq.size());
    e.pending.fetch_sub(dropped);
    n.queued.fetch_sub(dropped);
    e.sq.clear();
    e.rq.clear();
  }
  {
    std::lock_guard lock(n.mu);
    n.ends.erase(e.id);
    ++n.ends_version;
    std::erase_if(n.cq, [&](const CqEntry& entry) { return entry.end == &e; });
  }
  NotifyDisconnected(*e.peer, n.id, StrCat("node ", n.id, " destroyed its queue pair ", e.id));
  Drain(n);
}

std::vector<std::shared_ptr<End>> SnapshotEnds(Node& n) {
  std::lock_guard lock(n.mu);
  std::vector<std::shared_ptr<End>> ends;
  ends.reserve(n.ends.size());
  for (auto& [id, e] : n.ends) ends.push_back(e);
  return ends;  // sorted by id: `ends` is a std::map
}

// ---------------------------------------------------------------------------------------------
// Memory: key lookups and copies. All callers hold the node's `mem` lock (shared or exclusive).

// Resolves SGEs against n's lkeys. Zero-length SGEs are not checked (as a zero-length DMA).
bool ResolveLocal(const Node& n, const Sge* sges, int count, uint32_t need,
                  std::array<std::byte*, kMaxSge>& out) {
  for (int i = 0; i < count; ++i) {
    const Sge& sge = sges[i];
    out[i] = nullptr;
    if (sge.length == 0) continue;
    auto it = n.lkeys.find(sge.lkey);
    if (it == n.lkeys.end()) return false;
    const MrInfo& mr = it->second;
    if ((mr.access & need) != need || !InRange(mr, sge.addr, sge.length)) return false;
    out[i] = reinterpret_cast<std::byte*>(static_cast<uintptr_t>(sge.addr));
  }
  return true;
}

std::byte* ResolveRemote(const Node& n, uint32_t rkey, uint64_t addr, uint64_t bytes,
                         uint32_t need) {
  auto it = n.rkeys.find(rkey);
  if (it == n.rkeys.end()) return nullptr;
  const MrInfo& mr = it->second;
  if ((mr.access & need) != need || !InRange(mr, addr, bytes)) return nullptr;
  return reinterpret_cast<std::byte*>(static_cast<uintptr_t>(addr));
}

// Copies up to `limit` bytes from the SGEs into dst.
void Gather(std::byte* dst, const Sge* sges, const std::array<std::byte*, kMaxSge>& src, int count,
            uint64_t limit) {
  for (int i = 0; i < count && limit > 0; ++i) {
    const uint64_t n = std::min<uint64_t>(sges[i].length, limit);
    if (n == 0) continue;
    std::memmove(dst, src[i], n);
    dst += n;
    limit -= n;
  }
}

void Scatter(const std::byte* src, const Sge* sges, const std::array<std::byte*, kMaxSge>& dst,
             int count) {
  for (int i = 0; i < count; ++i) {
    if (sges[i].length == 0) continue;
    std::memmove(dst[i], src, sges[i].length);
    src += sges[i].length;
  }
}

// ---------------------------------------------------------------------------------------------
// Execution of one request.

enum class Outcome : uint8_t {
  kDone,     // completed with `status`
  kBlocked,  // the head must wait (RNR): put it back and stop this QP for this step
  kStopped,  // this node died: execute nothing more
};

struct ExecResult {
  Outcome outcome = Outcome::kDone;
  WcStatus status = WcStatus::kSuccess;
};

bool Reachable(const Node& n, const End& pe, const Node& pn) {
  return !pn.dead.load() && !pe.destroyed.load() && !pe.error.load() &&
         !n.net->Partitioned(n.id, pn.id);
}

ExecResult Execute(Node& n, End& e, Pending& p) {
  End& pe = *e.peer;
  Node& pn = *pe.node;
  const SendRequest& r = p.req;
  ExecResult result;
  // The receiver's side of a SEND, applied after the locks are released.
  bool recv_consumed = false;
  RecvRequest recv;
  WcStatus recv_status = WcStatus::kSuccess;
  bool peer_fails = false;  // the responder QP goes to error too (RC responder errors)
  {
    SharedLockPair locks(n, pn);
    if (n.dead.load()) return {Outcome::kStopped, WcStatus::kFatal};
    std::array<std::byte*, kMaxSge> local{};
    const uint32_t local_need = r.opcode == Opcode::kRead ? uint32_t{kAccessLocalWrite} : 0u;
    if (p.inline_bad_lkey ||
        (!r.inline_data && !ResolveLocal(n, r.sge, r.num_sge, local_need, local))) {
      return {Outcome::kDone, WcStatus::kLocalProtectionError};
    }
    if (!Reachable(n, pe, pn)) return {Outcome::kDone, WcStatus::kRetryExceeded};
    switch (r.opcode) {
      case Opcode::kWrite: {
        if (p.bytes == 0) break;  // a zero-length WRITE checks no rkey (IB spec)
        std::byte* dst = ResolveRemote(pn, r.rkey, r.remote_addr, p.bytes, kAccessRemoteWrite);
        if (dst == nullptr) {
          result.status = WcStatus::kRemoteAccessError;
          peer_fails = true;
        } else if (r.inline_data) {
          std::memmove(dst, p.payload.data(), p.bytes);
        } else {
          Gather(dst, r.sge, local, r.num_sge, p.bytes);
        }
        break;
      }
      case Opcode::kRead: {
        if (p.bytes == 0) break;
        std::byte* src = ResolveRemote(pn, r.rkey, r.remote_addr, p.bytes, kAccessRemoteRead);
        if (src == nullptr) {
          result.status = WcStatus::kRemoteAccessError;
          peer_fails = true;
        } else {
          Scatter(src, r.sge, local, r.num_sge);
        }
        break;
      }
      case Opcode::kSend: {
        bool have_recv = false;
        {
          std::lock_guard lock(pe.mu);
          if (!pe.rq.empty()) {
            recv = pe.rq.front();
            pe.rq.pop_front();
            have_recv = true;
          }
        }
        if (!have_recv) {
          if (p.rnr_retries < n.net->options.rnr_retry_steps) {
            ++p.rnr_retries;
            return {Outcome::kBlocked, WcStatus::kSuccess};
          }
          result.status = WcStatus::kRnrRetryExceeded;
          break;
        }
        recv_consumed = true;
        std::array<std::byte*, kMaxSge> target{};
        if (p.bytes > recv.sge.length) {
          recv_status = WcStatus::kLocalLengthError;
        } else if (!ResolveLocal(pn, &recv.sge, 1, kAccessLocalWrite, target)) {
          recv_status = WcStatus::kLocalProtectionError;
        } else if (p.bytes > 0) {
          if (r.inline_data) {
            std::memmove(target[0], p.payload.data(), p.bytes);
          } else {
            Gather(target[0], r.sge, local, r.num_sge, p.bytes);
          }
        }
        if (recv_status != WcStatus::kSuccess) {
          result.status = WcStatus::kRemoteInvalidRequest;
          peer_fails = true;
        }
        break;
      }
      case Opcode::kRecv:
        result.status = WcStatus::kFatal;  // rejected at post time
        break;
    }
  }
  if (recv_consumed) {
    PushCompletion(
        pn,
        Completion{.wr_id = recv.wr_id,
                   .qp = pe.id,
                   .status = recv_status,
                   .opcode = Opcode::kRecv,
                   .bytes = recv_status == WcStatus::kSuccess ? static_cast<uint32_t>(p.bytes) : 0},
        &pe, kNoSeq);
  }
  if (peer_fails) {
    FailEnd(pe, StrCat("responder error on queue pair ", pe.id, " from node ", n.id, ": ",
                       recv_consumed ? WcStatusName(recv_status) : "remote access error", " (",
                       OpcodeName(r.opcode), ")"));
  }
  return result;
}

// Reports a finished request: a completion when signaled or failed, the error state and a
// kQpError event on the first failure.
void Finish(Node& n, End& e, const Pending& p, WcStatus status) {
  if (status != WcStatus::kSuccess || p.req.signaled) {
    PushCompletion(
        n,
        Completion{.wr_id = p.req.wr_id,
                   .qp = e.id,
                   .status = status,
                   .opcode = p.req.opcode,
                   .bytes = status == WcStatus::kSuccess ? static_cast<uint32_t>(p.bytes) : 0},
        &e, p.seq);
  }
  if (status != WcStatus::kSuccess && status != WcStatus::kFlushed) {
    FailEnd(e, StrCat(OpcodeName(p.req.opcode), " wr_id ", p.req.wr_id, " on queue pair ", e.id,
                      " to node ", e.peer_rank, " failed: ", WcStatusName(status)));
  }
  e.pending.fetch_sub(1);
  n.queued.fetch_sub(1);
}

struct StepBudget {
  size_t requests = kStepMaxRequests;
  uint64_t bytes = kStepMaxBytes;
  bool exhausted() const { return requests == 0 || bytes == 0; }
};

// Executes e's queue in order until it is empty, its head must wait, the budget runs out or the
// node dies. Returns false when the node died. Caller holds n.progress_mu.
bool RunEnd(Node& n, End& e, uint64_t step, StepBudget& budget) {
  bool alive = true;
  while (!budget.exhausted()) {
    Pending p;
    bool flush = false;
    {
      std::lock_guard lock(e.mu);
      if (e.destroyed.load() || e.sq.empty()) break;
      flush = e.error.load();
      if (!flush && e.sq.front().ready_step > step) break;  // a delayed head blocks the QP
      p = std::move(e.sq.front());
      e.sq.pop_front();
    }
    --budget.requests;
    if (flush) {
      Finish(n, e, p, WcStatus::kFlushed);
      continue;
    }
    const ExecResult result = Execute(n, e, p);
    if (result.outcome != Outcome::kDone) {
      std::lock_guard lock(e.mu);
      if (e.destroyed.load()) {
        e.pending.fetch_sub(1);
        n.queued.fetch_sub(1);
      } else {
        e.sq.push_front(std::move(p));
      }
      alive = result.outcome != Outcome::kStopped;
      break;
    }
    budget.bytes -= std::min(budget.bytes, p.bytes);
    Finish(n, e, p, result.status);
  }
  if (alive && e.error.load()) {
    std::deque<RecvRequest> flushed;
    {
      std::lock_guard lock(e.mu);
      if (!e.destroyed.load()) flushed.swap(e.rq);
    }
    for (const RecvRequest& recv : flushed) {
      PushCompletion(n,
                     Completion{.wr_id = recv.wr_id,
                                .qp = e.id,
                                .status = WcStatus::kFlushed,
                                .opcode = Opcode::kRecv},
                     &e, kNoSeq);
    }
  }
  return alive;
}

// One progress step of node n.
void Progress(Node& n) {
  std::unique_lock progress(n.progress_mu, std::try_to_lock);
  if (!progress.owns_lock() || n.dead.load()) return;  // another thread is making progress
  const uint64_t step = n.step.fetch_add(1) + 1;
  const bool flush = n.flush_pending.exchange(false);
  if (!flush && n.queued.load() == 0) return;
  {
    std::lock_guard lock(n.mu);
    if (n.exec_version != n.ends_version) {
      n.exec_ends.clear();
      for (auto& [id, e] : n.ends) n.exec_ends.push_back(e);
      n.exec_version = n.ends_version;
    }
  }
  const size_t count = n.exec_ends.size();
  if (count == 0) return;
  const size_t start = n.cursor++ % count;
  StepBudget budget;
  for (size_t i = 0; i < count; ++i) {
    if (budget.exhausted()) {
      if (flush) n.flush_pending.store(true);  // finish flushing on the next step
      break;
    }
    End& e = *n.exec_ends[(start + i) % count];
    if (e.pending.load() == 0 && !(flush && e.error.load())) continue;
    if (!RunEnd(n, e, step, budget)) break;
  }
}

// ---------------------------------------------------------------------------------------------
// The public objects.

class LoopbackMemoryRegion final : public MemoryRegion {
 public:
  LoopbackMemoryRegion(std::shared_ptr<Node> node, void* addr, size_t length, uint32_t lkey,
                       uint32_t rkey)
      : node_(std::move(node)), addr_(addr), length_(length), lkey_(lkey), rkey_(rkey) {
    node_->net->live_objects.fetch_add(1);
  }
  ~LoopbackMemoryRegion() override {
    {
      // Exclusive: waits for every copy into or out of this node's memory (ibv_dereg_mr
      // guarantees no access after it returns).
      std::unique_lock lock(node_->mem);
      node_->lkeys.erase(lkey_);
      node_->rkeys.erase(rkey_);
    }
    node_->net->live_objects.fetch_sub(1);
  }
  LoopbackMemoryRegion(const LoopbackMemoryRegion&) = delete;
  LoopbackMemoryRegion& operator=(const LoopbackMemoryRegion&) = delete;

  void* addr() const override { return addr_; }
  size_t length() const override { return length_; }
  uint32_t lkey() const override { return lkey_; }
  uint32_t rkey() const override { return rkey_; }

 private:
  std::shared_ptr<Node> node_;
  void* addr_;
  size_t length_;
  uint32_t lkey_;
  uint32_t rkey_;
};

class LoopbackQueuePair final : public QueuePair {
 public:
  explicit LoopbackQueuePair(std::shared_ptr<End> end) : end_(std::move(end)) {
    end_->node->net->live_objects.fetch_add(1);
  }
  ~LoopbackQueuePair() override {
    DestroyEnd(*end_);
    end_->node->net->live_objects.fetch_sub(1);
  }
  LoopbackQueuePair(const LoopbackQueuePair&) = delete;
  LoopbackQueuePair& operator=(const LoopbackQueuePair&) = delete;

  uint32_t id() const override { return end_->id; }
  NodeId peer() const override { return end_->peer_rank; }
  std::span<const std::byte> peer_private_data() const override { return end_->peer_private_data; }
  QpState state() const override {
    return end_->error.load() || end_->node->dead.load() ? QpState::kError : QpState::kConnected;
  }

  Status PostSend(std::span<const SendRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    End& e = *end_;
    Node& n = *e.node;
    Net& net = *n.net;
    if (n.dead.load()) {
      return Status::Unavailable("PostSend on queue pair ", e.id, ": node ", n.id,
                                 " is dead (killed, or its Fabric was destroyed)");
    }
    const Limits& limits = net.options.limits;
    // Validate and prepare without End::mu: inline payloads take the registration lock.
    std::vector<Pending> prepared;
    prepared.reserve(requests.size());
    Status invalid;
    for (size_t i = 0; i < requests.size(); ++i) {
      const SendRequest& r = requests[i];
      uint64_t bytes = 0;
      invalid = ValidateSendRequest(r, i, limits, &bytes);
      if (!invalid.ok()) break;
      Pending& p = prepared.emplace_back();
      p.req = r;
      p.bytes = bytes;
      p.delay = net.DelayFor(n.id, e.peer_rank);
      if (r.inline_data) {
        std::shared_lock lock(n.mem);
        std::array<std::byte*, kMaxSge> src{};
        if (ResolveLocal(n, r.sge, r.num_sge, 0, src)) {
          p.payload.resize(bytes);
          Gather(p.payload.data(), r.sge, src, r.num_sge, bytes);
        } else {
          p.inline_bad_lkey = true;
        }
      }
    }
    size_t count = 0;
    Status full;
    {
      std::lock_guard lock(e.mu);
      const auto max_send = static_cast<uint64_t>(limits.max_send_wr);
      const uint64_t step = n.step.load();
      for (Pending& p : prepared) {
        if (e.next_seq - e.retired.load() >= max_send) {
          full = Status::ResourceExhausted(
              "PostSend on queue pair ", e.id, ": send queue full (", max_send,
              " requests outstanding, max_send_wr); poll a signaled completion to free slots");
          break;
        }
        p.seq = e.next_seq++;
        p.ready_step = step + static_cast<uint64_t>(p.delay) + 1;
        e.sq.push_back(std::move(p));
        ++count;
      }
      e.pending.fetch_add(static_cast<int64_t>(count));
      n.queued.fetch_add(static_cast<int64_t>(count));
    }
    if (count > 0) Wake(n);
    if (posted != nullptr) *posted = count;
    if (!full.ok()) return full;
    return invalid;
  }

  Status PostRecv(std::span<const RecvRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    End& e = *end_;
    Node& n = *e.node;
    if (n.dead.load()) {
      return Status::Unavailable("PostRecv on queue pair ", e.id, ": node ", n.id,
                                 " is dead (killed, or its Fabric was destroyed)");
    }
    const auto max_recv = static_cast<size_t>(n.net->options.limits.max_recv_wr);
    size_t count = 0;
    Status full;
    {
      std::lock_guard lock(e.mu);
      for (const RecvRequest& r : requests) {
        if (e.rq.size() >= max_recv) {
          full =
              Status::ResourceExhausted("PostRecv on queue pair ", e.id, ": receive queue full (",
                                        max_recv, " posted receives, max_recv_wr)");
          break;
        }
        e.rq.push_back(r);
        ++count;
      }
    }
    if (posted != nullptr) *posted = count;
    if (count > 0 && e.error.load()) {  // receives posted on a QP in error are flushed
      n.flush_pending.store(true);
      Wake(n);
    }
    return full;
  }

  void ToError() override {
    End& e = *end_;
    Node& n = *e.node;
    e.error.store(true);
    n.flush_pending.store(true);
    Wake(n);
    // The peer's copies into our memory that started before the flag was set finish now; later
    // ones see it and fail kRetryExceeded.
    Drain(n);
  }

 private:
  std::shared_ptr<End> end_;
};

class LoopbackFabric final : public Fabric {
 public:
  explicit LoopbackFabric(std::shared_ptr<Node> node) : node_(std::move(node)) {
    node_->net->live_objects.fetch_add(1);
  }
  LoopbackFabric(const LoopbackFabric&) = delete;
  LoopbackFabric& operator=(const LoopbackFabric&) = delete;

  // The node leaves: like a clean process exit. QueuePairs should be destroyed first; any left
  // are destroyed here (their peers get kDisconnected) and their handles only fail afterwards.
  ~LoopbackFabric() override {
    Node& n = *node_;
    Net& net = *n.net;
    n.dead.store(true);
    const auto ends = SnapshotEnds(n);
    if (!ends.empty()) {
      FT_LOG(kWarn) << "loopback: Fabric of node " << n.id << " destroyed with " << ends.size()
                    << " live queue pairs; destroy QueuePairs before their Fabric";
    }
    for (const auto& e : ends) DestroyEnd(*e);
    {
      std::lock_guard lock(n.progress_mu);
      n.exec_ends.clear();
      n.exec_version = UINT64_MAX;
    }
    Drain(n);
    {
      std::lock_guard lock(net.mu);
      if (net.current[n.id] == node_) net.current[n.id].reset();
      WakeWaitingConnects(net);
    }
    net.live_objects.fetch_sub(1);
  }

  NodeId node() const override { return node_->id; }
  const Limits& limits() const override { return node_->net->options.limits; }
  std::string name() const override { return "loopback"; }

  Result<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                       uint32_t access) override {
    Node& n = *node_;
    if (n.dead.load()) return Status::Unavailable("RegisterMemory: node ", n.id, " is dead");
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
    const uint32_t index = n.net->next_key_index.fetch_add(1);
    const uint32_t lkey = MixKey(2 * index);
    const uint32_t rkey = MixKey(2 * index + 1);
    const MrInfo info{.addr = reinterpret_cast<uintptr_t>(addr), .length = bytes, .access = access};
    {
      std::unique_lock lock(n.mem);
      n.lkeys[lkey] = info;
      n.rkeys[rkey] = info;
    }
    return std::unique_ptr<MemoryRegion>(
        std::make_unique<LoopbackMemoryRegion>(node_, addr, bytes, lkey, rkey));
  }

  Result<std::vector<std::unique_ptr<QueuePair>>> Connect(std::span<const ConnectRequest> requests,
                                                          Nanos timeout) override;

  size_t PollCompletions(std::span<Completion> out) override {
    Node& n = *node_;
    Progress(n);
    std::lock_guard lock(n.mu);
    size_t count = 0;
    while (count < out.size() && !n.cq.empty()) {
      const CqEntry& entry = n.cq.front();
      out[count++] = entry.completion;
      if (entry.seq != kNoSeq) Retire(*entry.end, entry.seq);
      n.cq.pop_front();
    }
    return count;
  }

  size_t PollEvents(std::span<Event> out) override {
    Node& n = *node_;
    std::lock_guard lock(n.mu);
    size_t count = 0;
    while (count < out.size() && !n.events.empty()) {
      out[count++] = std::move(n.events.front());
      n.events.pop_front();
    }
    return count;
  }

  void WaitForActivity(Nanos timeout) override {
    Node& n = *node_;
    const SteadyTime deadline = DeadlineAfter(timeout);
    std::unique_lock lock(n.mu);
    n.waiters.fetch_add(1);
    n.cv.wait_until(lock, deadline, [&] {
      return n.interrupted || !n.cq.empty() || !n.events.empty() ||
             (!n.dead.load() && (n.queued.load() > 0 || n.flush_pending.load()));
    });
    n.waiters.fetch_sub(1);
    n.interrupted = false;
  }

  void Interrupt() override {
    Node& n = *node_;
    std::lock_guard lock(n.mu);
    n.interrupted = true;
    n.cv.notify_all();
  }

  void CancelConnects() override;

 private:
  std::shared_ptr<Node> node_;
};

// Wakes every Connect still waiting (a node died or left: waiters re-check their peers).
// Caller holds Net::mu.
void WakeWaitingConnects(Net& net) {
  for (auto& [key, offer] : net.offers) {
    if (offer->wake != nullptr) offer->wake->notify_one();
  }
}

// Creates the pair for two matched offers and registers its Ends with both nodes.
// Caller holds Net::mu.
void MatchOffers(Net& net, Offer& ours, Offer& theirs) {
  auto pair = std::make_shared<Pair>();
  End& mine = pair->ends[0];
  End& other = pair->ends[1];
  mine.node = ours.from;
  mine.peer = &other;
  mine.id = net.next_qp_id.fetch_add(1);
  mine.peer_rank = theirs.from->id;
  mine.peer_private_data.assign(theirs.data.begin(), theirs.data.end());
  other.node = theirs.from;
  other.peer = &mine;
  other.id = net.next_qp_id.fetch_add(1);
  other.peer_rank = ours.from->id;
  other.peer_private_data.assign(ours.data.begin(), ours.data.end());
  // No other thread sees the Ends yet: their receive queues need no lock.
  mine.rq.assign(ours.receives.begin(), ours.receives.end());
  other.rq.assign(theirs.receives.begin(), theirs.receives.end());
  ours.result = std::shared_ptr<End>(pair, &mine);
  theirs.result = std::shared_ptr<End>(pair, &other);
  if (theirs.wake != nullptr) theirs.wake->notify_one();
  for (Offer* offer : {&ours, &theirs}) {
    Node& n = *offer->from;
    std::lock_guard lock(n.mu);
    n.ends[offer->result->id] = offer->result;
    ++n.ends_version;
  }
}

std::string JoinNodes(const std::vector<NodeId>& nodes) {
  std::string out;
  for (NodeId node : nodes) out += StrCat(out.empty() ? "" : ", ", node);
  return out;
}

void LoopbackFabric::CancelConnects() {
  Node& n = *node_;
  Net& net = *n.net;
  std::lock_guard lock(net.mu);
  ++n.connect_cancels;
  for (auto& [key, offer] : net.offers) {
    if (key.first == n.id && offer->wake != nullptr) offer->wake->notify_one();
  }
}

Result<std::vector<std::unique_ptr<QueuePair>>> LoopbackFabric::Connect(
    std::span<const ConnectRequest> requests, Nanos timeout) {
  Node& n = *node_;
  Net& net = *n.net;
  const SteadyTime deadline = DeadlineAfter(timeout);
  if (n.dead.load()) return Status::Unavailable("Connect: node ", n.id, " is dead");
  for (const ConnectRequest& r : requests) {
    if (r.peer >= static_cast<NodeId>(net.nodes)) {
      return Status::InvalidArgument("Connect from node ", n.id, ": peer ", r.peer,
                                     " is outside [0, ", net.nodes, ")");
    }
  }
  FT_RETURN_IF_ERROR(ValidateConnectRequests(n.id, requests, net.options.limits));
  std::vector<std::unique_ptr<QueuePair>> qps;
  if (requests.empty()) return qps;

  std::vector<Offer> offers(requests.size());
  std::condition_variable wake;  // matches of our offers and deaths of peers notify it
  for (Offer& offer : offers) offer.wake = &wake;
  std::unique_lock lock(net.mu);
  const uint64_t cancels_at_start = n.connect_cancels;
  for (const ConnectRequest& r : requests) {
    if (!net.alive[r.peer]) {
      return Status::Unavailable("Connect from node ", n.id, ": peer ", r.peer, " is dead");
    }
    // An offer left by a killed incarnation of this rank is stale: ours replaces it (its own
    // Connect withdraws it only if it is still its own).
    auto pending = net.offers.find({n.id, r.peer});
    if (pending != net.offers.end() && !pending->second->from->dead.load()) {
      return Status::FailedPrecondition("Connect: a Connect from node ", n.id, " to node ", r.peer,
                                        " is already pending");
    }
  }
  // Register every offer of the batch before waiting for any: batches never deadlock.
  for (size_t i = 0; i < requests.size(); ++i) {
    Offer& offer = offers[i];
    offer.from = node_;
    offer.to = requests[i].peer;
    offer.data = requests[i].private_data;
    offer.receives = requests[i].receives;
    auto it = net.offers.find({offer.to, n.id});
    if (it != net.offers.end() && !it->second->from->dead.load()) {
      MatchOffers(net, offer, *it->second);
      net.offers.erase(it);
    } else {
      net.offers[{n.id, offer.to}] = &offer;
    }
  }

  std::vector<NodeId> missing;
  std::vector<NodeId> dead;
  const auto settled = [&] {
    missing.clear();
    dead.clear();
    for (const Offer& offer : offers) {
      if (offer.result != nullptr) continue;
      missing.push_back(offer.to);
      if (!net.alive[offer.to]) dead.push_back(offer.to);
    }
    return missing.empty() || !dead.empty() || n.dead.load() ||
           n.connect_cancels != cancels_at_start;
  };
  bool timed_out = false;
  while (!settled()) {
    if (wake.wait_until(lock, deadline) == std::cv_status::timeout) {
      timed_out = !settled();
      break;
    }
  }
  if (missing.empty() && !n.dead.load()) {
    lock.unlock();
    qps.reserve(offers.size());
    for (Offer& offer : offers) qps.push_back(std::make_unique<LoopbackQueuePair>(offer.result));
    return qps;
  }
  // Failure: withdraw our remaining offers and drop the QPs already made.
  for (Offer& offer : offers) {
    auto it = net.offers.find({n.id, offer.to});
    if (it != net.offers.end() && it->second == &offer) net.offers.erase(it);
  }
  Status status;
  if (n.dead.load()) {
    status = Status::Unavailable("Connect: node ", n.id, " died while connecting");
  } else if (n.connect_cancels != cancels_at_start) {
    status = Status::Aborted("Connect from node ", n.id, " was cancelled");
  } else if (!dead.empty()) {
    status =
        Status::Unavailable("Connect from node ", n.id, ": peer(s) ", JoinNodes(dead), " died");
  } else {
    FT_CHECK(timed_out);
    status = Status::DeadlineExceeded(
        "Connect from node ", n.id, " timed out after ",
        std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(),
        " ms waiting for node(s) ", JoinNodes(missing));
  }
  lock.unlock();
  for (Offer& offer : offers) {
    if (offer.result != nullptr) DestroyEnd(*offer.result);
  }
  return status;
}

// Torn writes: at Kill time, a seeded random prefix of each WRITE queued to or from the killed
// node lands, if its source and destination are still registered. Caller holds Net::mu.
void LandTornWrites(Net& net, Node& killed, const std::vector<std::shared_ptr<End>>& ends) {
  struct Torn {
    Node* from;
    Node* to;
    Pending p;
    uint64_t prefix = 0;
  };
  std::vector<Torn> writes;
  for (const auto& e : ends) {
    for (End* side : {e.get(), e->peer}) {
      // A WRITE on a QP in error, or across a partition, would not have reached the wire.
      if (side->error.load() || net.Partitioned(side->node->id, side->peer_rank)) continue;
      std::lock_guard lock(side->mu);
      for (const Pending& p : side->sq) {
        if (p.req.opcode == Opcode::kWrite && p.bytes > 0 && !p.inline_bad_lkey) {
          writes.push_back(Torn{side->node.get(), side->peer->node.get(), p});
        }
      }
    }
  }
  {
    std::lock_guard lock(net.rng_mu);
    for (Torn& w : writes)
      w.prefix = std::uniform_int_distribution<uint64_t>(0, w.p.bytes)(net.rng);
  }
  for (Torn& w : writes) {
    if (w.prefix == 0) continue;
    const SendRequest& r = w.p.req;
    SharedLockPair locks(*w.from, *w.to);
    std::array<std::byte*, kMaxSge> src{};
    if (!r.inline_data && !ResolveLocal(*w.from, r.sge, r.num_sge, 0, src)) continue;
    std::byte* dst = ResolveRemote(*w.to, r.rkey, r.remote_addr, w.p.bytes, kAccessRemoteWrite);
    if (dst == nullptr) continue;
    if (r.inline_data) {
      std::memmove(dst, w.p.payload.data(), w.prefix);
    } else {
      Gather(dst, r.sge, src, r.num_sge, w.prefix);
    }
  }
  FT_LOG(kDebug) << "loopback: node " << killed.id << " killed with " << writes.size()
                 << " queued WRITEs torn";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LoopbackNetwork

struct LoopbackNetwork::State {
  std::unique_ptr<Net> net;
};

LoopbackNetwork::LoopbackNetwork(PrivateTag, std::unique_ptr<State> state)
    : state_(std::move(state)) {}

LoopbackNetwork::~LoopbackNetwork() {
  FT_CHECK_MSG(state_->net->live_objects.load() == 0,
               "destroy every Fabric, QueuePair and MemoryRegion before their LoopbackNetwork");
}

Result<std::unique_ptr<LoopbackNetwork>> LoopbackNetwork::Create(int nodes,
                                                                 LoopbackOptions options) {
  if (nodes < 1 || nodes > kMaxNodes) {
    return Status::InvalidArgument("LoopbackNetwork: nodes = ", nodes, " is outside [1, ",
                                   kMaxNodes, "]");
  }
  const Limits& l = options.limits;
  if (l.max_send_wr < 1 || l.max_recv_wr < 1 || l.cq_depth < 1 || l.max_message_bytes < 1) {
    return Status::InvalidArgument(
        "LoopbackNetwork: limits need max_send_wr, max_recv_wr, cq_depth and max_message_bytes "
        ">= 1 (got ",
        l.max_send_wr, ", ", l.max_recv_wr, ", ", l.cq_depth, ", ", l.max_message_bytes, ")");
  }
  if (l.max_inline_bytes > l.max_message_bytes) {
    return Status::InvalidArgument("LoopbackNetwork: max_inline_bytes ", l.max_inline_bytes,
                                   " exceeds max_message_bytes ", l.max_message_bytes);
  }
  if (options.rnr_retry_steps < 0) {
    return Status::InvalidArgument("LoopbackNetwork: rnr_retry_steps = ", options.rnr_retry_steps,
                                   " is negative");
  }
  auto state = std::make_unique<State>();
  state->net = std::make_unique<Net>(nodes, options);
  return std::make_unique<LoopbackNetwork>(PrivateTag{}, std::move(state));
}

int LoopbackNetwork::nodes() const { return state_->net->nodes; }
uint64_t LoopbackNetwork::seed() const { return state_->net->options.seed; }
std::string LoopbackNetwork::seed_description() const {
  return StrCat("loopback seed=", state_->net->options.seed);
}

Result<std::unique_ptr<Fabric>> LoopbackNetwork::CreateFabric(NodeId node) {
  Net& net = *state_->net;
  if (node >= static_cast<NodeId>(net.nodes)) {
    return Status::InvalidArgument("CreateFabric: node ", node, " is outside [0, ", net.nodes, ")");
  }
  std::lock_guard lock(net.mu);
  if (!net.alive[node]) {
    return Status::FailedPrecondition("CreateFabric: node ", node, " was killed; Revive it first");
  }
  if (net.current[node] != nullptr && !net.current[node]->dead.load()) {
    return Status::FailedPrecondition("CreateFabric: node ", node, " already has a live Fabric");
  }
  auto n = std::make_shared<Node>(&net, node, net.next_incarnation.fetch_add(1));
  net.current[node] = n;
  return std::unique_ptr<Fabric>(std::make_unique<LoopbackFabric>(std::move(n)));
}

void LoopbackNetwork::Kill(NodeId node) {
  Net& net = *state_->net;
  FT_CHECK_MSG(node < static_cast<NodeId>(net.nodes), "Kill: node out of range");
  std::lock_guard lock(net.mu);
  net.alive[node] = false;
  WakeWaitingConnects(net);  // Connects waiting for this node fail Unavailable
  const std::shared_ptr<Node> n = net.current[node];
  if (n == nullptr || n->dead.exchange(true)) return;
  Drain(*n);  // copies into or out of its memory that already started finish; no new ones start
  const auto ends = SnapshotEnds(*n);
  if (net.torn_writes.load()) LandTornWrites(net, *n, ends);
  for (const auto& e : ends) {
    NotifyDisconnected(*e->peer, node, StrCat("node ", node, " was killed"));
  }
  PushEvent(*n,
            Event{.type = EventType::kDeviceError, .peer = node, .qp = 0, .detail = "node killed"});
}

void LoopbackNetwork::Revive(NodeId node) {
  Net& net = *state_->net;
  FT_CHECK_MSG(node < static_cast<NodeId>(net.nodes), "Revive: node out of range");
  std::lock_guard lock(net.mu);
  net.alive[node] = true;
}

bool LoopbackNetwork::alive(NodeId node) const {
  const Net& net = *state_->net;
  if (node >= static_cast<NodeId>(net.nodes)) return false;
  std::lock_guard lock(net.mu);
  return net.alive[node];
}

void LoopbackNetwork::Partition(NodeId a, NodeId b) {
  Net& net = *state_->net;
  FT_CHECK_MSG(a < static_cast<NodeId>(net.nodes) && b < static_cast<NodeId>(net.nodes) && a != b,
               "Partition: bad node pair");
  {
    std::unique_lock lock(net.faults_mu);
    net.partitions.insert(PairKey(a, b));
    net.partition_count.store(net.partitions.size(), std::memory_order_release);
  }
  // Copies between them that already started finish before Partition returns.
  std::lock_guard lock(net.mu);
  for (NodeId node : {a, b}) {
    if (net.current[node] != nullptr) Drain(*net.current[node]);
  }
}

void LoopbackNetwork::Heal(NodeId a, NodeId b) {
  Net& net = *state_->net;
  std::unique_lock lock(net.faults_mu);
  net.partitions.erase(PairKey(a, b));
  net.partition_count.store(net.partitions.size(), std::memory_order_release);
}

void LoopbackNetwork::SetTornWrites(bool enabled) { state_->net->torn_writes.store(enabled); }

void LoopbackNetwork::SetDelay(NodeId a, NodeId b, int steps) {
  Net& net = *state_->net;
  FT_CHECK_MSG(steps >= 0, "SetDelay: negative steps");
  std::unique_lock lock(net.faults_mu);
  if (steps == 0) {
    net.delays.erase(PairKey(a, b));
  } else {
    net.delays[PairKey(a, b)] = steps;
  }
  net.delay_count.store(net.delays.size(), std::memory_order_release);
}

void LoopbackNetwork::SetRandomDelays(int max_steps) {
  FT_CHECK_MSG(max_steps >= 0, "SetRandomDelays: negative steps");
  state_->net->random_delay_max.store(max_steps);
}

}  // namespace ft::verbs
