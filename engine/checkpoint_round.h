// The checkpoint round: one node's part of one version, as a state machine the worker steps.
//
//   Start ─ PREPARE ─► kAwaitGo ─ GO ─► kConnecting ─► kWriting ─► kHeaders ─ DONE ─► kAwaitCommit
//                      │  ▲                                              COMMIT/ABORT ─► (finished)
//                      GROW: a new store, PREPARE again
//   any failure ─► kDraining (wait for our WRITEs) ─ DONE(failed) ─► kAwaitCommit ─ ABORT ─► ...
//
// The datapath (docs/architecture.md, "Where a byte goes"): stripe s takes the lowest free
// pipeline slot, its data cells go zero-copy from application memory (or through the slot's
// bounce cell), parity is encoded into the slot, and each cell is CRC'd and WRITTEN, followed by
// one call of the progress hook. The hook is the worker's datapath poll: it reaps completions and
// applies only WRITE completions to this round (counters, and a failure moves the round to
// kDraining); everything else it defers to the worker's next turn, so nothing re-enters the round
// from inside IssueStripe but its own completions.
//
// Every WRITE carries the round's generation (engine/work_ids.h); the round counts them per
// column and per pipeline slot, and ends only when none is outstanding, except when its own
// fabric died or the fabric did not flush within a whole extra timeout (then a later completion
// of this round is recognised by its generation and ignored).
//
// A deadline with WRITEs in flight fences only the data links of the columns that still have
// WRITEs outstanding (their work flushes at once, nothing more lands), never a control link:
// the engine stays usable for the next attempt, whose Connect replaces the fenced links.
#ifndef FT_ENGINE_CHECKPOINT_ROUND_H_
#define FT_ENGINE_CHECKPOINT_ROUND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/committed_version.h"
#include "engine/control_channel.h"
#include "engine/node_context.h"
#include "engine/node_memory.h"
#include "engine/peer_table.h"
#include "engine/shared_state.h"
#include "engine/work_ids.h"
#include "erasure/geometry.h"
#include "recovery/protocol.h"

namespace ft::internal {

class CheckpointRound {
 public:
  CheckpointRound(NodeContext& node, NodeMemory& memory, PeerTable& peers, ControlChannel& channel,
                  SharedState& shared, std::function<void()> progress);
  CheckpointRound(const CheckpointRound&) = delete;
  CheckpointRound& operator=(const CheckpointRound&) = delete;

  bool active() const { return phase_ != Phase::kIdle; }

  // Starts a round for `handle` (the previous one finished).
  void Start(std::shared_ptr<CheckpointHandle::State> handle);
  // Recovery's re-protection: rewrites the columns `reprotect.columns` of the committed version
  // (restored in the protected regions) into their holders (replacements with new stores),
  // headed with the epoch the version was written in; then DONE, and COMMIT or ABORT as a round.
  // No PREPARE, no metrics: `handle` completes with the outcome.
  void StartReprotect(std::shared_ptr<CheckpointHandle::State> handle,
                      const recovery::ReprotectMessage& reprotect);
  // Recovery restored `restored` into this node's regions: it is the committed version, with
  // these holders and hosted owners (until the next GO with a placement).
  void AdoptRestored(const CommittedVersion& restored, std::vector<recovery::HolderAddress> holders,
                     std::vector<NodeId> hosted_owners);
  // One step: the deadline, the partner Connect, one stripe, the headers, DONE. Returns true when
  // it got anywhere.
  bool Step();
  // When Step must run even if nothing arrives (its deadline); Nanos::max() when idle.
  Nanos next_deadline() const;

  // A cell or header WRITE of generation `id.generation` completed.
  void OnWriteCompleted(WorkId id, verbs::WcStatus status, NodeId peer);
  // GROW, LAYOUT_REQUEST, GO, COMMIT and ABORT from the coordinator (others are ignored).
  void OnControlMessage(NodeId from, const recovery::Message& message);
  // A data link to `peer` was fenced because it failed (or its peer fenced it).
  void OnDataLinkLost(NodeId peer, std::string_view why);
  void OnCoordinatorLost(std::string_view why);
  // This node found itself removed from the job (it stalled past the heartbeat bound): the
  // round ends with `why`, whatever it was waiting for.
  void OnRemoved(const Status& why);
  // Ends the round with `why` (no ABORT will come for it): its WRITEs drain first.
  void Cancel(Status why);
  // This node's own fabric is gone: nothing will complete any more.
  void OnOwnFabricLost(std::string_view detail);
  // The engine is being destroyed: fences this round's data links, waits (bounded) for its
  // WRITEs to flush using `poll`, and completes the handle with Aborted.
  void Abandon(const std::function<bool()>& poll);

  // Decides on a partner QP a background Connect returned (PeerTable::AcceptPartner): its
  // private data must be of our epoch, and while the GO it was made for is still this round's,
  // a holder's store keys must be the GO's (else one of the two is stale: nothing is written,
  // and the round fails at once with that reason).
  Status AcceptPartner(NodeId peer, std::span<const std::byte> private_data, uint64_t tag);

  const CommittedVersion& committed() const { return committed_; }

 private:
  enum class Phase { kIdle, kAwaitGo, kConnecting, kWriting, kHeaders, kDraining, kAwaitCommit };

  // The common start of a round and a re-protection; false when it already ended.
  bool Setup(std::shared_ptr<CheckpointHandle::State> handle, bool reprotect);
  bool Writes(int column) const { return (write_columns_ >> column) & 1; }
  void StepConnecting();
  void StepWriting();
  void SendPrepare();
  void OnGrow(const recovery::GrowMessage& grow);
  void StartGrow(uint64_t bytes);
  bool StepGrow();
  void PublishStoreBytes();
  void OnLayoutRequest(const recovery::LayoutRequestMessage& request);
  // committed_'s layout becomes the one Engine::CommittedLayout reports.
  void PublishCommittedLayout();
  void SendDone(StatusCode code, NodeId failed_peer);
  void TellCoordinatorWeGaveUp(StatusCode code);
  Status PrepareBuffers();
  Status IssueStripe(uint64_t stripe, int slot);
  void PostHeaders();
  Status PostWrite(int column, WorkId id, const void* local, uint32_t lkey, uint64_t bytes,
                   uint64_t remote_addr);
  uint64_t RemoteSlotAddr(int column) const;
  int FreePipelineSlot() const;
  std::span<std::byte> HeaderArea(int column) const;
  void FailRound(Status status, NodeId peer);
  void FinishRound(Status status);
  // Ends a round that never posted anything (bad geometry, buffers, a lost coordinator).
  void FailBeforeStart(Status status);
  void FenceOutstandingColumns();

  NodeContext& node_;
  NodeMemory& memory_;
  PeerTable& peers_;
  ControlChannel& channel_;
  SharedState& shared_;
  std::function<void()> progress_;

  // The placement this node holds now (the last GO that carried one) and its committed version.
  std::vector<recovery::HolderAddress> holders_;  // by column
  uint64_t slot_bytes_ = 0;                       // of each slot of our extents
  std::vector<NodeId> hosted_owners_;
  CommittedVersion committed_;
  // The version of our last successful DONE until COMMIT or ABORT answers it, so that a COMMIT
  // arriving after our own deadline still records what committed.
  std::optional<CommittedVersion> done_unanswered_;

  // The round in flight.
  Phase phase_ = Phase::kIdle;
  uint32_t generation_ = 0;
  std::shared_ptr<CheckpointHandle::State> handle_;
  uint64_t version_ = 0;
  uint64_t store_id_ = 0;  // of the store our last PREPARE offered
  // Stores being registered (on NodeMemory's thread): grow_asked_, this round's GROW asked for
  // one; queued_grow_ is a GROW that came while an earlier round's replacement was still
  // running; while waiting_for_store_ this round sends no PREPARE (its store is changing).
  bool grow_asked_ = false;
  uint64_t queued_grow_ = 0;
  bool waiting_for_store_ = false;
  std::optional<erasure::StripeGeometry> geometry_;
  std::optional<erasure::ImageLayout> layout_;
  std::vector<RegionRef> regions_;
  // The regions' ids and sizes as this round snapshotted them, and their CRC64 (the PREPARE
  // names the layout by it; the coordinator pulls a layout it does not know).
  std::vector<recovery::LayoutRegion> region_layout_;
  uint64_t region_layout_digest_ = 0;
  uint64_t header_area_bytes_ = 0;
  int pipeline_slots_ = 0;
  uint64_t next_stripe_ = 0;
  int outstanding_ = 0;                  // WRITEs posted and not yet completed
  std::vector<int> slot_outstanding_;    // cell WRITEs per pipeline slot
  std::vector<int> column_outstanding_;  // WRITEs per column (= per holder)
  Status failure_;
  NodeId failed_peer_ = verbs::kInvalidNode;
  bool aborted_ = false;  // the coordinator said ABORT
  std::optional<recovery::GoMessage> go_;
  bool reprotect_ = false;
  uint64_t write_columns_ = ~uint64_t{0};  // bit c: column c is written
  uint64_t header_epoch_ = 0;              // the epoch the headers name
  Nanos started_{0}, deadline_{0}, writing_at_{0}, done_sent_at_{0}, encode_time_{0};
  uint64_t bounced_ = 0;
  bool own_fabric_lost_ = false;
  std::vector<erasure::RegionSlice> slices_;  // scratch
};

}  // namespace ft::internal

#endif  // FT_ENGINE_CHECKPOINT_ROUND_H_
