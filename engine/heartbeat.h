// The heartbeat: one node's side of the verbs-level failure detector (recovery/heartbeat.h has
// the rules). Worker-owned.
//
// - Every node registers slots its readers' beats land in: the coordinator one per node (a
//   table indexed by rank), a node one for the coordinator. BEAT_TARGET messages, sent over the
//   control links at start, tell each writer where its slot is.
// - Beating: every interval the worker WRITEs {epoch, counter} one-sidedly into each of its
//   targets, over the control QP (no receive, no CPU on the reader). One beat per target is in
//   flight at a time: a beat stuck behind a slow QP is not queued again. Beats are posted from
//   the round's datapath too, so a node encoding at full speed keeps beating.
// - Watching: the coordinator watches every node, a node watches the coordinator; a slot that
//   does not change for interval x misses makes that peer lost.
// - A node whose own worker stalled longer than that (SIGSTOP, a frozen loopback node, a long
//   stall) stops beating for good: its readers may have declared it lost already, and it must
//   not look alive to them again. The worker then fences itself (a zombie of its view).
#ifndef FT_ENGINE_HEARTBEAT_H_
#define FT_ENGINE_HEARTBEAT_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "engine/buffer.h"
#include "engine/node_context.h"
#include "engine/peer_table.h"
#include "recovery/heartbeat.h"
#include "recovery/protocol.h"
#include "verbs/fabric.h"

namespace ft::internal {

class Heartbeat {
 public:
  Heartbeat(NodeContext& node, PeerTable& peers);
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // Registers the slots this node reads and the buffer its beats are WRITTEN from.
  Status Register();
  // The BEAT_TARGET messages to send once the control links are up.
  std::vector<std::pair<NodeId, recovery::BeatTargetMessage>> Targets() const;
  // Starts beating and watching (the control links are up).
  void Start(Nanos now);
  // `from` told this node where to WRITE its beats for it.
  void OnTarget(NodeId from, const recovery::BeatTargetMessage& message);
  void OnWriteCompleted(uint32_t index);
  // Stops beating to and watching `node` (it was lost).
  void Forget(NodeId node);
  // A replacement process serves `node` now (its control link is new): watch it from `now` as
  // at start, and beat to it once its BEAT_TARGET says where. Returns the BEAT_TARGET to send it.
  // `epoch` is the view the replacement joined in.
  recovery::BeatTargetMessage Rejoin(NodeId node, Nanos now, uint64_t epoch);

  // Looks at the time since this node's last beat: past the bound, this node stalled (it was
  // stopped, or starved) and is remembered as such (stalled()). True when it is.
  bool CheckStall(Nanos now);
  // Posts the beats that are due. Safe inside the round's datapath: it only posts. A stall past
  // the bound is remembered (stalled()), and no beat is sent from then on.
  void BeatIfDue(Nanos now);
  // Scans the watched slots: the peers silent past the bound, each once.
  std::vector<recovery::HeartbeatMonitor::Silence> Scan(Nanos now);
  // Set once this node's worker went longer than the bound without a chance to beat.
  std::optional<Nanos> stalled() const { return stalled_; }
  // How long the worker may wait before it must beat again.
  Nanos UntilDue(Nanos now) const;
  const recovery::HeartbeatTiming& timing() const { return timing_; }
  // The longest time between two beats this node sent to one target (from the target's first
  // beat on): how close it came to the bound.
  Nanos longest_gap() const { return longest_gap_; }

  // Deregisters (Stop: after the QPs that could address the slots are gone).
  void Deregister();

 private:
  bool NeverBeatToAKnownTarget() const;
  recovery::Beat ReadSlot(NodeId writer) const;
  struct Target {
    bool known = false;
    bool in_flight = false;
    uint64_t addr = 0;
    uint32_t rkey = 0;
    std::optional<Nanos> posted_at;  // the last beat posted to it
  };
  std::byte* SlotOf(NodeId writer) const;

  NodeContext& node_;
  PeerTable& peers_;
  recovery::HeartbeatTiming timing_;
  recovery::HeartbeatPacer pacer_;
  recovery::HeartbeatMonitor monitor_;
  AlignedBuffer slots_;   // beats WRITTEN here by others
  AlignedBuffer source_;  // our beats, one per target, WRITTEN from here
  std::unique_ptr<verbs::MemoryRegion> slots_mr_;
  std::unique_ptr<verbs::MemoryRegion> source_mr_;
  std::vector<Target> targets_;  // by peer rank
  std::optional<Nanos> stalled_;
  Nanos longest_gap_{0};
};

}  // namespace ft::internal

#endif  // FT_ENGINE_HEARTBEAT_H_
