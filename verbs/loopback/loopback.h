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
//   stops executing), Partition (work between two nodes completes kRetryExceeded), torn writes
//   (when a node dies, a seeded random prefix of every WRITE still queued to or from it lands),
//   delays (work waits a number of the poster's progress steps, fixed or seeded random).
// Everything random derives from the seed, printed by seed_description() for failure reports.
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
  void Partition(NodeId a, NodeId b);
  void Heal(NodeId a, NodeId b);
  void SetTornWrites(bool enabled);
  // Work on QPs between a and b waits `steps` progress steps of its poster before executing.
  void SetDelay(NodeId a, NodeId b, int steps);
  // Every request waits a seeded random 0..max_steps progress steps (0 disables).
  void SetRandomDelays(int max_steps);

 private:
  struct State;
  explicit LoopbackNetwork(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace ft::verbs

#endif  // FT_VERBS_LOOPBACK_LOOPBACK_H_
