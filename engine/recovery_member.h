// The recovery member: one node's part of node-loss recovery (recovery/protocol.h has the
// exchange, recovery/recovery_coordinator.h the coordinator's side), as a state machine the
// worker steps.
//
//   VIEW(e') ─► adopt e', re-key the links, check the hosted slots in place ─► REPORT
//   RESTORE(v) + the application's Recover() ─► (a replacement: register its store) ─► connect
//   the partners ─► the image of v into the protected regions: from the local copy, or read from
//   the holders (FragmentReader: data columns directly, CRC-checked, decoded around what is
//   lost) ─► RESTORED ─► REPROTECT: the round rewrites our columns that lived on a lost node
//   ─► COMMIT(e', v): Recover() returns; ABORT(e', kRecoveryVersion): it fails with the reason.
//
// Another member lost before the COMMIT restarts the recovery: what is in flight (the reader's
// READs, a re-protection's WRITEs, a partner Connect) is let end or cancelled, and the member
// waits for the coordinator's VIEW of a newer epoch (kInterrupted), then starts over from it.
//
// The protected memory is touched only while the application is inside Recover(): a RESTORE
// that comes before the call waits for it. Worker-owned.
#ifndef FT_ENGINE_RECOVERY_MEMBER_H_
#define FT_ENGINE_RECOVERY_MEMBER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/buffer.h"
#include "engine/checkpoint_round.h"
#include "engine/control_channel.h"
#include "engine/fragment_reader.h"
#include "engine/node_context.h"
#include "engine/node_memory.h"
#include "engine/peer_table.h"
#include "engine/shared_state.h"
#include "recovery/protocol.h"

namespace ft::internal {

class RecoveryMember {
 public:
  // `progress` is called between pieces of a long copy: the worker beats there.
  RecoveryMember(NodeContext& node, SharedState& shared, PeerTable& peers, ControlChannel& channel,
                 NodeMemory& memory, CheckpointRound& round, FragmentReader& reader,
                 std::function<void()> progress);
  RecoveryMember(const RecoveryMember&) = delete;
  RecoveryMember& operator=(const RecoveryMember&) = delete;

  // This node is a replacement process (its image is to be rebuilt), started at `now`.
  void StartAsReplacement(Nanos now);
  // This node learnt of the loss of `node` (the start of its time at reduced redundancy); during
  // a recovery, the recovery starts over in the coordinator's next view.
  void OnLossLearned(NodeId node, Nanos now);
  // The application called Recover().
  void Take(RecoverRequest* request);
  bool active() const { return request_ != nullptr || phase_ != Phase::kIdle; }

  // VIEW, RESTORE, REPROTECT, and the COMMIT/ABORT that end a recovery. Returns true when the
  // message was recovery's (the worker then routes COMMIT to the round too).
  bool OnControlMessage(NodeId from, const recovery::Message& message);
  // One step: the deadline, the store, the partners, the restore. True when it got anywhere.
  bool Step();
  // When Step must run even if nothing arrives (its deadline); Nanos::max() when there is none.
  Nanos next_deadline() const;
  // This node was removed, lost its fabric or is being destroyed: the request ends with `why`.
  void End(const Status& why);

 private:
  enum class Phase {
    kIdle,          // no recovery under way
    kViewed,        // in the new view, reported; waiting for RESTORE and the application's call
    kConnecting,    // connecting the partners of the restored placement
    kRestoring,     // copying or reading the image (a replacement registers its store meanwhile)
    kStoring,       // read: a replacement waiting for its store
    kRestored,      // RESTORED sent: waiting for REPROTECT or COMMIT
    kReprotecting,  // the round rewrites our columns on the replacements
    kInterrupted    // a member was lost: what is in flight ends, then the next VIEW starts over
  };

  void OnView(const recovery::ViewMessage& view);
  // Waits for the coordinator's next VIEW (or its ABORT), for up to the time a restart takes.
  void Interrupt();
  // Cancels the re-protection round and our partner Connect of an interrupted recovery.
  void StopWorkInFlight(const std::string& why);
  // Nothing of the interrupted recovery is in flight any more: a new VIEW may be taken.
  bool Quiet() const;
  // A failure that a partner's loss explains (Unavailable): wait for the restart. False otherwise.
  bool AwaitLoss(const Status& failed);
  void BeginRestore();
  void StartRead();
  // A replacement's store: OK once it is registered (at once when none was needed), nullopt
  // while it is being registered, or why it could not be (kept in store_failure_).
  std::optional<Status> StoreReady();
  void Restored(Status status);
  void Finish(Status status);
  std::vector<int> ReplacedColumns() const;
  Status CheckAssignedLayout() const;
  bool IsReplaced(NodeId node) const;

  NodeContext& node_;
  SharedState& shared_;
  PeerTable& peers_;
  ControlChannel& channel_;
  NodeMemory& memory_;
  CheckpointRound& round_;
  FragmentReader& reader_;
  std::function<void()> progress_;

  bool replacement_ = false;
  Phase phase_ = Phase::kIdle;
  RecoverRequest* request_ = nullptr;
  std::optional<recovery::ViewMessage> view_;
  std::optional<recovery::ViewMessage> pending_view_;  // came while kInterrupted was not quiet
  std::optional<recovery::RestoreMessage> restore_;
  std::optional<CommittedVersion> restoring_;
  std::optional<Status> read_status_;
  bool storing_ = false;  // a replacement's store is being registered
  Status store_failure_;  // ... and why it could not be
  // A recovery that failed while the application was not in Recover(): its next call hears it.
  std::optional<Status> unclaimed_failure_;
  AlignedBuffer scratch_;  // a multi-region image read whole, then scattered
  std::vector<RegionRef> regions_;
  std::vector<recovery::LayoutRegion> layout_;  // the regions' ids and sizes
  std::shared_ptr<CheckpointHandle::State> reprotect_;
  uint64_t tag_ = 0;              // of our partner Connects: distinct from the round's generations
  bool partner_connect_ = false;  // ours may be the Connect in flight
  Nanos loss_learned_{0}, called_{0}, deadline_{0}, restore_began_{0}, restored_at_{0};
  Nanos image_restored_at_{0};  // the read (or copy) into the regions ended
  RecoveryReport report_;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_RECOVERY_MEMBER_H_
