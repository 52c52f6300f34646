// The loopback fabric: N nodes in one process with reliable-connected (RC) semantics, for unit
// tests, ftbench and examples. It is a model of verbs, not a stub:
// - memory keys: a WRITE/READ checks rkey, range and access rights at the target (failure:
//   kRemoteAccessError, nothing written); SGEs are checked against local lkeys
//   (kLocalProtectionError).
// - work executes only in a progress step: PollCompletions of the posting node runs that node's
//   posted requests, in order per QP, then returns completions. The target's CPU does nothing
//   for WRITE/READ (one-sided); a SEND consumes the target's next posted receive and puts a kRecv
//   completion in the target's CQ.
// - bounded queues: PostSend beyond Limits::max_send_wr outstanding requests, or PostRecv beyond
//   max_recv_wr, fails at once with ResourceExhausted; a CQ that would exceed cq_depth raises
//   kDeviceError and errors the node's QPs (as a CQ overrun does).
// - receive-not-ready: a SEND with no posted receive is retried on the sender's next progress
//   steps, rnr_retry_steps times, then completes kRnrRetryExceeded.
// - faults: Kill (the node's memory is unreachable; work to or from it completes kRetryExceeded
//   then kFlushed; peers get kDisconnected; the killed node's own Fabric gets kDeviceError and
//   stops executing), Freeze (a hung process: SIGSTOP, a long stall; the node's own calls block
//   until Thaw while its memory and QPs stay reachable for peers), Partition (work between two
//   nodes completes kRetryExceeded), torn writes (when a node dies, a seeded random prefix of
//   every WRITE still queued to or from it lands), delays (work waits a number of the poster's
//   progress steps, fixed or seeded random).
// Everything random derives from the seed, printed by seed_description() for failure reports.
//
// Details the Fabric contract leaves open, as this model fixes them:
// - A progress step executes at most 1024 requests or 64 MiB (at least one request). When
//   several threads poll one Fabric at once, one executes and the others only reap completions.
// - RNR: the first attempt and each retry take one progress step of the sender; with
//   rnr_retry_steps = r the SEND fails on the sender's (r + 1)th step without a receive.
// - Delays: a request posted with delay d executes at the earliest on the (d + 1)th progress step
//   of its poster after the post; the head of a QP blocks the requests behind it.
// - An inline request whose SGEs fail the lkey check at post time completes
//   kLocalProtectionError (as a non-inline one would), not an error from PostSend.
// - A zero-length WRITE or READ checks no rkey (IB spec); zero-length SGEs are not checked.
// - CQ overrun is sticky for the Fabric: one kDeviceError event, the overflowing completions are
//   lost, every QP of the node goes to error.
// - Partition affects work, not Connect (the rendezvous is out of band, as exchanging QP numbers
//   over TCP is): a QP may connect across a partition and then fail its first request.
// - Torn writes apply to WRITEs queued on QPs not in error and not partitioned; each lands a
//   prefix drawn uniformly from 0..length, only if its source and destination are still
//   registered. Nothing else lands after Kill returns.
// - Destroying a Fabric is the node leaving cleanly: QueuePairs still alive are destroyed then
//   (with a warning; their handles then only fail with Unavailable), peers get kDisconnected.
// - Deregistration, ToError, Kill, Partition and QueuePair destruction wait for copies in flight
//   into or out of the node's memory, so nothing lands after they return.
// - Freeze acts on the rank's current Fabric (the process); a rank without a live Fabric (none
//   yet, destroyed, killed) has nothing to stop and Freeze is a no-op, as are Freeze of a frozen
//   node and Thaw of a thawed one. A Fabric created after Revive starts thawed.
// - A frozen node's own calls that run, reap or post work, or change its state, block until
//   Thaw: PollCompletions, PollEvents, WaitForActivity, RegisterMemory, Connect (on entry, and
//   again before returning: its offers stay matchable, so a peer's Connect may succeed, as the
//   rendezvous is out of band, but the frozen node's call returns only after Thaw, with whatever
//   outcome it reached, e.g. DeadlineExceeded), PostSend, PostRecv and ToError. WaitForActivity
//   blocks past its timeout; a thread already waiting in it when the node freezes stays blocked
//   through completions, events, Interrupt and its deadline, and after Thaw waits on as an
//   unfrozen one would (returning at once if one of these is pending). Not gated: Interrupt and
//   CancelConnects (like a signal to a stopped process, recorded now and acted on after Thaw),
//   accessors (node, limits, state, ids) and destructors, so a test that forgets to Thaw still
//   tears down.
// - Freeze returns once the node has stopped: a progress step or a poll in flight finishes
//   first; afterwards none of its requests executes and nothing is reaped until Thaw. A post
//   already past its gate completes (it counts as posted before the freeze).
// - A frozen node's QPs stay connected and peers get no event or error from the freeze: their
//   WRITEs and READs into its registered memory execute in their own progress steps; their
//   SENDs consume its posted receives and queue kRecv completions in its CQ (reaped after Thaw;
//   a CQ that fills overruns as usual), or meet RNR when it has none posted (it cannot post).
//   Its own posted requests wait: its progress steps do not run, so delays do not count down.
// - After Thaw the node continues as if it had been slow: what peers did meanwhile (ToError,
//   QueuePair destruction, Kill) shows as it would to any node: its requests fail
//   kRetryExceeded then kFlushed, kDisconnected events are waiting, remote errors are reported.
// - Blocked calls are released, returning as they do for a dead node, by Thaw, by Kill of the
//   node, or by the destruction of its Fabric (for calls on its QueuePairs: like any object, the
//   Fabric must not be destroyed while one of its own calls runs). The network may be destroyed
//   with nodes frozen (its objects first, as always).
#ifndef FT_VERBS_LOOPBACK_LOOPBACK_H_
#define FT_VERBS_LOOPBACK_LOOPBACK_H_

#include <cstdint>
#include <memory>
#include <string>

#include "verbs/fabric.h"

namespace ft::verbs {

struct LoopbackOptions {
  uint64_t seed = 1;
  Limits limits{
      .max_send_wr = 1024,
      .max_recv_wr = 1024,
      .cq_depth = 65536,
      .max_inline_bytes = 256,
      .max_message_bytes = 1u << 30,
      .max_private_data = 56,  // rdma_connect's limit for RC private data
  };
  int rnr_retry_steps = 64;
};

class LoopbackNetwork {
 public:
  // nodes >= 1.
  static Result<std::unique_ptr<LoopbackNetwork>> Create(int nodes, LoopbackOptions options = {});
  ~LoopbackNetwork();
  LoopbackNetwork(const LoopbackNetwork&) = delete;
  LoopbackNetwork& operator=(const LoopbackNetwork&) = delete;

  int nodes() const;
  uint64_t seed() const;
  // "loopback seed=<n>": put it in every failure message so a run can be replayed.
  std::string seed_description() const;

  // The Fabric of `node`. At most one live Fabric per node (FailedPrecondition otherwise); a
  // killed node may get a new Fabric after Revive (a replacement process). The Fabric and all its
  // QueuePairs and MemoryRegions must be destroyed before the network.
  Result<std::unique_ptr<Fabric>> CreateFabric(NodeId node);

  // --- fault injection (any thread) ---
  void Kill(NodeId node);
  void Revive(NodeId node);  // the rank may be reused by a new Fabric; old QPs stay dead
  bool alive(NodeId node) const;
  // A hung process (see the opening comment): the node's calls block until Thaw.
  void Freeze(NodeId node);
  void Thaw(NodeId node);
  bool frozen(NodeId node) const;  // false for a dead rank or one without a Fabric
  void Partition(NodeId a, NodeId b);
  void Heal(NodeId a, NodeId b);
  void SetTornWrites(bool enabled);
  // Work on QPs between a and b waits `steps` progress steps of its poster before executing.
  void SetDelay(NodeId a, NodeId b, int steps);
  // Every request waits a seeded random 0..max_steps progress steps (0 disables).
  void SetRandomDelays(int max_steps);

 private:
  struct State;

 public:
  struct PrivateTag {};
  LoopbackNetwork(PrivateTag, std::unique_ptr<State> state);  // use Create()

 private:
  std::unique_ptr<State> state_;
};

}  // namespace ft::verbs

#endif  // FT_VERBS_LOOPBACK_LOOPBACK_H_
