// The loopback fabric's model (see loopback.h): the objects that its source files share. Not a
// public header: only verbs/loopback/*.cc include it.
//
// Files. model.h: the objects and their locks. node.cc: helpers on nodes (wake-ups, completions,
// events, queue pair destruction). memory.cc: key lookups and copies. execute.cc: progress steps
// (executing posted requests). queue_pair.cc: LoopbackQueuePair (posting, fencing).
// loopback_fabric.cc: LoopbackFabric and LoopbackMemoryRegion (registration, polling, waiting).
// connect.cc: Connect (matching offers). network.cc: LoopbackNetwork (creation and faults).
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
//   ->  Net::faults_mu, Net::rng_mu, Node::freeze_mu (leaves)
//
// Node::mem taken exclusively (registration, deregistration, and the "drain" that fencing,
// Kill, Partition and QP destruction do to wait out in-flight copies) is only ever taken with at
// most Net::mu held, never together with another Node::mem, End::mu or Node::mu. RegistrationLock
// prefers writers, so a deregistration is not starved by a stream of copies; that is deadlock-free
// because a thread holding a shared Node::mem never waits for an exclusive one.
//
// Freezing. A frozen node's own calls wait for Thaw in AwaitThaw, on Node::freeze_mu, holding no
// other lock: peers' copies into its memory, SENDs into its receive queues and pushes onto its CQ
// and event queue never wait for a frozen node. Freeze sets Node::frozen, then takes and releases
// progress_mu and Node::mu: a progress step or a reap that began before the flag finishes before
// Freeze returns, and later ones see the flag (Progress checks it under progress_mu, the reaps
// under Node::mu) and go back to AwaitThaw.
//
// Fencing and death use one pattern: set the flag (End::error, Node::dead, a partition), then
// drain the node's registration lock. A copy checks the flags while holding the lock shared, so
// either it started before the drain (and the drain waits for it) or it sees the flag.
#ifndef FT_VERBS_LOOPBACK_MODEL_H_
#define FT_VERBS_LOOPBACK_MODEL_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/check.h"
#include "verbs/loopback/loopback.h"

namespace ft::verbs::loopback {

constexpr int kMaxNodes = 1 << 16;
// One progress step executes at most this many requests, or this many bytes (at least one
// request), so that a PollCompletions call is bounded.
constexpr size_t kStepMaxRequests = 1024;
constexpr uint64_t kStepMaxBytes = uint64_t{64} << 20;
constexpr uint64_t kNoSeq = UINT64_MAX;

using SteadyTime = std::chrono::steady_clock::time_point;

inline SteadyTime DeadlineAfter(Nanos timeout) {
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

inline bool InRange(const MrInfo& mr, uint64_t addr, uint64_t bytes) {
  return addr >= mr.addr && bytes <= mr.length && addr - mr.addr <= mr.length - bytes;
}

// Keys look random (so that a guessed or stale key does not hit by accident) and are unique in
// the network: multiplication by an odd constant is a bijection of uint32_t.
inline uint32_t MixKey(uint32_t index) { return index * 0x9E3779B1u; }

inline uint64_t PairKey(NodeId a, NodeId b) {
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
  std::atomic<bool> frozen{false};  // set and cleared under freeze_mu (and the network's mu)
  uint64_t connect_cancels = 0;     // guarded by the network's mu: CancelConnects calls

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

  std::mutex freeze_mu;
  std::condition_variable thaw_cv;  // AwaitThaw: frozen cleared or dead set
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
// Shared operations, by file.

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

// node.cc
void Drain(Node& n);
void AwaitThaw(Node& n);
void SetFrozen(Node& n, bool frozen);
void Wake(Node& n);
void PushEvent(Node& n, Event event);
void PushCompletion(Node& n, const Completion& completion, End* end, uint64_t seq);
void Retire(End& e, uint64_t seq);
void NotifyDisconnected(End& pe, NodeId from, std::string detail);
void FailEnd(End& e, std::string detail);
void DestroyEnd(End& e);
std::vector<std::shared_ptr<End>> SnapshotEnds(Node& n);

// memory.cc (callers hold the node's `mem` lock)
bool ResolveLocal(const Node& n, const Sge* sges, int count, uint32_t need,
                  std::array<std::byte*, kMaxSge>& out);
std::byte* ResolveRemote(const Node& n, uint32_t rkey, uint64_t addr, uint64_t bytes,
                         uint32_t need);
void Gather(std::byte* dst, const Sge* sges, const std::array<std::byte*, kMaxSge>& src, int count,
            uint64_t limit);
void Scatter(const std::byte* src, const Sge* sges, const std::array<std::byte*, kMaxSge>& dst,
             int count);

// execute.cc: one progress step of node n.
void Progress(Node& n);

// queue_pair.cc and loopback_fabric.cc: the public objects.
std::unique_ptr<QueuePair> MakeQueuePair(std::shared_ptr<End> end);
std::unique_ptr<Fabric> MakeFabric(std::shared_ptr<Node> node);

// connect.cc
void WakeWaitingConnects(Net& net);  // caller holds Net::mu
Result<std::vector<std::unique_ptr<QueuePair>>> ConnectNode(
    const std::shared_ptr<Node>& self, std::span<const ConnectRequest> requests, Nanos timeout);
void CancelNodeConnects(Node& n);

}  // namespace ft::verbs::loopback

#endif  // FT_VERBS_LOOPBACK_MODEL_H_
