// The coordinator's commit protocol as a pure state machine: messages in, messages out. The
// engine of the coordinator node feeds it what arrives and sends what it returns; tests and
// benchmarks drive it directly.
//
// Rounds: collect PREPARE from every node (a PREPARE from a node that reported DONE in the round
// in flight, gave up at its deadline and tried again, is kept for the next round); (re)compute the
// placement when any node's footprint outgrew its extent (extents have slack: ExtentBytesFor), or
// its capacity, domain or store registration changed; GROW the stores the coordinator sizes when
// the placement needs more of them (those nodes PREPARE again with new stores); send GO(v) with v =
// last committed + 1; collect DONE(v); COMMIT(v) when every node reported success, ABORT(v) as soon
// as one failed or a node was lost. An aborted version number is reused by the next round: slot v %
// 2 was dirtied, slot (v-1) % 2 still holds the committed version, and v + 1 would overwrite it.
//
// Views: the coordinator works in one epoch at a time (Options::epoch, then InstallView). A view
// of a newer epoch aborts whatever was prepared or in flight, forgets the lost marks of the old
// view and makes the next round recompute the placement; messages of any other epoch are ignored.
//
// What a standby needs to take over (a later issue) is state(): the committed version, its epoch
// and the inputs of its placement (every node's PREPARE, so the placement can be recomputed
// exactly, with the store keys the owners WRITE with), serializable with EncodeState. It is kept
// apart from the round in flight: a round that aborts never changes it.
//
// Thread-safety: none; one thread (the coordinator node's worker) owns it.
#ifndef FT_RECOVERY_COORDINATOR_H_
#define FT_RECOVERY_COORDINATOR_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ftengine/status.h"
#include "recovery/connection.h"
#include "recovery/layout_book.h"
#include "recovery/placement.h"
#include "recovery/protocol.h"
#include "recovery/view.h"

namespace ft::recovery {

// The committed round as a standby would receive it.
struct CoordinatorState {
  uint64_t epoch = 0;              // the epoch the coordinator is in
  uint64_t committed_version = 0;  // 0: none yet
  uint64_t committed_epoch = 0;    // the epoch the committed version was written in
  uint64_t placement_id = 0;       // of the committed version's placement
  // The committed version's placement inputs, by node (empty when nothing is committed).
  std::vector<PrepareMessage> prepares;
  // The committed version's region layouts, by node (empty when nothing is committed): what a
  // process replacing a lost rank Protects.
  std::vector<RegionLayout> layouts;
  bool operator==(const CoordinatorState&) const = default;
};
// Wire format: {magic "FTS1", epoch, committed version, committed epoch, placement id, count,
// PREPAREs as in recovery/protocol, then per node: digest, region count, (id, bytes) pairs}. Decode
// refuses anything truncated or inconsistent (InvalidArgument).
std::vector<std::byte> EncodeState(const CoordinatorState& state);
Result<CoordinatorState> DecodeState(std::span<const std::byte> bytes);

class Coordinator {
 public:
  struct Options {
    uint32_t world_size = 0;
    int k = 0;
    int m = 0;
    uint64_t epoch = 1;
  };
  using Outbox = std::vector<std::pair<NodeId, Message>>;

  static Result<std::unique_ptr<Coordinator>> Create(const Options& options);

  // Appends the messages to send to *outbox. Messages of another epoch, from unknown nodes or
  // for a version not in flight are ignored (and counted in ignored_messages()).
  // A PREPARE naming a region layout the coordinator does not know counts once the layout was
  // pulled (LAYOUT_REQUEST, answered by LAYOUT chunks: OnLayout).
  void OnPrepare(const PrepareMessage& message, Outbox* outbox);
  void OnLayout(const LayoutMessage& message, Outbox* outbox);
  // A failed DONE with version kWithdrawVersion withdraws the node's PREPARE (it gave up waiting
  // for a GO): taken back before the round starts, an ABORT of the round after.
  void OnDone(const DoneMessage& message, Outbox* outbox);
  // A node is gone (disconnect, error completion, missed heartbeats): aborts the round in flight,
  // releases nodes waiting for a GO, and answers every later PREPARE with ABORT naming the lost
  // node (until recovery installs a new view).
  void OnNodeLost(NodeId node, std::string_view reason, Outbox* outbox);
  // Moves to a newer view: ABORT (in the old epoch) to every node that prepared or is in a round,
  // then messages are taken only in view.epoch. FailedPrecondition for an epoch that is not newer;
  // InvalidArgument for an invalid view or one of another size (rank replacement keeps the size).
  Status InstallView(const View& view, Outbox* outbox);
  // A recovery (recovery/recovery_coordinator.h) in the current view restored `version`
  // (written in `written_epoch`): it is the committed one now, and the replaced ranks' fragments
  // live in their new stores.
  void AdoptRecovery(uint64_t version, uint64_t written_epoch,
                     std::span<const std::pair<NodeId, StoreKeys>> new_stores);

  // The committed round (see above); the placement of the round in flight may differ.
  CoordinatorState state() const;
  const Placement* committed_placement() const {
    return committed_placement_ ? &*committed_placement_ : nullptr;
  }

  uint64_t committed_version() const { return committed_version_; }
  uint64_t committed_epoch() const { return committed_epoch_; }
  // The committed version's predecessor is still in the other slots of its placement (both
  // were written with one placement), written in older_epoch().
  bool older_in_place() const { return older_in_place_; }
  uint64_t older_epoch() const { return older_epoch_; }
  // ... and each node's image size in it (by node).
  const std::vector<uint64_t>& older_image_bytes() const { return older_image_bytes_; }
  const std::vector<PrepareMessage>& committed_prepares() const { return committed_prepares_; }
  // The region layout of `node`'s committed image (empty when nothing is committed).
  const RegionLayout& committed_layout(NodeId node) const { return layouts_.committed(node); }
  bool round_in_flight() const { return phase_ == Phase::kCollectingDone; }
  const Placement* placement() const { return placement_ ? &*placement_ : nullptr; }
  uint64_t placement_id() const { return placement_id_; }
  uint64_t ignored_messages() const { return ignored_messages_; }
  // Placements that had to be made over the committed version's extents (stores of fixed
  // capacity lacked the room to place around them).
  uint64_t unprotected_placements() const { return unprotected_placements_; }
  // Rounds that asked some nodes to GROW their stores before they could start.
  uint64_t grow_requests() const { return grow_requests_; }
  uint64_t epoch() const { return options_.epoch; }

  struct PrivateTag {};
  Coordinator(PrivateTag, const Options& options);

 private:
  enum class Phase { kCollectingPrepare, kCollectingDone };
  void AcceptPrepare(const PrepareMessage& message, Outbox* outbox);
  void StartRound(Outbox* outbox);
  // No owner has its fragments in fewer failure domains with the domains of `now` than with
  // those of `before` (a replacement in another domain): the placement may stay.
  static bool SpreadKept(const Placement& placement, const std::vector<PrepareMessage>& before,
                         const std::vector<PrepareMessage>& now);
  void OnWithdraw(const DoneMessage& message, Outbox* outbox);
  struct PlacementPlan {
    std::optional<Placement> placement;              // to send in the GO, or
    std::vector<std::pair<NodeId, uint64_t>> grows;  // the stores to GROW first (node, bytes)
  };
  Result<PlacementPlan> PlanPlacement(const std::vector<uint64_t>& extents);
  std::vector<NodeSpec> SpecsOf(const std::vector<uint64_t>& extents, bool reserve) const;
  Result<std::vector<std::pair<NodeId, uint64_t>>> GrowsFor(
      const std::vector<NodeSpec>& specs) const;
  void Abort(NodeId failed_node, StatusCode code, std::string reason, Outbox* outbox);
  // The round ended: the PREPAREs that came early (early_prepares_) are taken now.
  void TakeEarlyPrepares(Outbox* outbox);
  AbortMessage MakeAbort(NodeId failed_node, StatusCode code, const std::string& reason) const;

  Options options_;
  Phase phase_ = Phase::kCollectingPrepare;
  uint64_t committed_version_ = 0;
  uint64_t version_in_flight_ = 0;
  std::vector<PrepareMessage> prepares_;
  LayoutBook layouts_;
  std::vector<uint8_t> prepared_;
  uint32_t prepared_count_ = 0;
  std::vector<uint64_t> grow_bytes_;  // per node: the store it was asked to GROW to (0: none)
  // GROWs sent for the round being prepared: one suffices (GrowsFor), a second covers a node that
  // PREPAREd a smaller store than it was asked for; more means the planning does not converge.
  static constexpr int kMaxGrowCycles = 2;
  int grow_cycles_ = 0;
  std::vector<uint8_t> done_;
  uint32_t done_count_ = 0;
  std::vector<PrepareMessage> placed_prepares_;  // the input of the placement last sent in a GO
  bool resend_placement_ = false;       // the next GO carries the placement (a view kept it)
  uint64_t last_placement_id_ = 0;      // placement ids are never reused
  std::optional<Placement> placement_;  // ... which the nodes hold now
  uint64_t placement_id_ = 0;
  // The committed version's placement and its inputs: changed only by a COMMIT.
  std::optional<Placement> committed_placement_;
  std::vector<PrepareMessage> committed_prepares_;
  uint64_t committed_placement_id_ = 0;
  uint64_t committed_epoch_ = 0;
  bool older_in_place_ = false;
  uint64_t older_epoch_ = 0;
  std::vector<uint64_t> older_image_bytes_;
  std::vector<uint8_t> lost_;
  uint32_t lost_count_ = 0;
  // PREPAREs of nodes that reported DONE in the round in flight and gave up waiting for its end
  // (a deadline): kept for the next round.
  std::vector<std::optional<PrepareMessage>> early_prepares_;
  NodeId first_lost_ = UINT32_MAX;
  std::string lost_reason_;  // names the first lost node
  uint64_t ignored_messages_ = 0;
  uint64_t unprotected_placements_ = 0;
  uint64_t grow_requests_ = 0;
};

}  // namespace ft::recovery

#endif  // FT_RECOVERY_COORDINATOR_H_
