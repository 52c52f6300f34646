// The coordinator's side of node-loss recovery as a pure state machine: messages in, messages
// out (recovery/protocol.h has the exchange; docs/architecture.md, "Node-loss recovery").
//
//   Start: VIEW(e') to every member ─► REPORTs ─► VersionSelection ─► RESTORE(v) to every member
//   ─► RESTOREDs (the replacements' new store keys) ─► REPROTECT to each owner with a column on
//   a replacement ─► DONEs ─► COMMIT(e', v) to every member: recovered, full redundancy.
//   DataLoss, a failed member or another loss: ABORT(e', v) to every member, and it is over.
//
// It starts once every replaced rank has a process connected in the new epoch, from the
// committed state of the commit protocol (recovery::Coordinator), which it does not change: the
// owner applies the outcome (Coordinator::AdoptRecovery).
//
// Thread-safety: none; the coordinator node's worker owns it.
#ifndef FT_RECOVERY_RECOVERY_COORDINATOR_H_
#define FT_RECOVERY_RECOVERY_COORDINATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ftengine/status.h"
#include "recovery/connection.h"
#include "recovery/placement.h"
#include "recovery/protocol.h"

namespace ft::recovery {

// The store a process replacing `node` registers (RESTORE's store_bytes): the node's capacity, or
// what the placement puts there if that is more.
uint64_t ReplacementStoreBytes(const PrepareMessage& prepare, const Placement& placement,
                               NodeId node);
// The largest of these over the placement's nodes (an idle spare's STORE_HINT); 0 without one.
uint64_t LargestReplacementStoreBytes(const std::vector<PrepareMessage>& prepares,
                                      const Placement& placement);

class RecoveryCoordinator {
 public:
  using Outbox = std::vector<std::pair<NodeId, Message>>;
  struct Input {
    int k = 0;
    int m = 0;
    uint64_t epoch = 0;  // the new view's
    std::vector<NodeId> replaced;
    uint64_t version = 0;        // V, the newest committed version (0: none)
    uint64_t written_epoch = 0;  // the epoch V was written in
    // V - 1 was written with V's placement (into the other slots), in older_written_epoch.
    bool older_in_place = false;
    uint64_t older_written_epoch = 0;
    std::vector<uint64_t> older_image_bytes;  // V - 1's image sizes, by node (empty: V's)
    Placement placement;                      // V's (empty when V = 0)
    std::vector<PrepareMessage> prepares;     // its inputs, by node (the world's size)
  };

  // Checks the input (InvalidArgument naming the problem) and sends the VIEWs.
  static Result<std::unique_ptr<RecoveryCoordinator>> Start(Input input, Outbox* outbox);

  void OnReport(const ReportMessage& report, Outbox* outbox);
  // A member's RESTORED, or a reprotecting owner's DONE (its columns are rewritten). A failure
  // ends the recovery, except Unavailable: a member that could not reach a partner saw a loss
  // this coordinator will see too (the engine then restarts the recovery in a newer view).
  void OnRestored(const RestoredMessage& restored, Outbox* outbox);
  void OnDone(const DoneMessage& done, Outbox* outbox);
  // A member was lost meanwhile: the recovery fails (Unavailable), every member hears ABORT.
  // (The engine's coordinator restarts the recovery in a newer view instead.)
  void OnNodeLost(NodeId node, std::string_view why, Outbox* outbox);
  // The recovery's time ran out: it fails (DeadlineExceeded) naming the members that have not
  // answered the phase it is in (an application that never called Recover(), a hung member).
  void OnDeadline(Outbox* outbox);

  enum class Phase { kReports, kRestoring, kReprotecting, kRecovered, kFailed };
  Phase phase() const { return phase_; }
  bool finished() const { return phase_ == Phase::kRecovered || phase_ == Phase::kFailed; }
  // Why it failed (kFailed).
  const Status& failure() const { return failure_; }
  uint64_t epoch() const { return input_.epoch; }
  // The version chosen (valid from kRestoring), and the epoch it was written in.
  uint64_t version() const { return version_; }
  uint64_t written_epoch() const { return written_epoch_; }
  const std::vector<NodeId>& replaced() const { return input_.replaced; }
  // The replacements' stores, as their RESTOREDs gave them.
  const std::vector<std::pair<NodeId, StoreKeys>>& new_stores() const { return new_stores_; }
  // The selection's table (empty before the REPORTs are in).
  const std::string& table() const { return table_; }

  struct PrivateTag {};
  RecoveryCoordinator(PrivateTag, Input input);

 private:
  bool IsReplaced(NodeId node) const;
  uint32_t size() const { return static_cast<uint32_t>(input_.prepares.size()); }
  void Select(Outbox* outbox);
  void SendRestores(Outbox* outbox);
  void Reprotect(Outbox* outbox);
  void Finish(Outbox* outbox);
  void Fail(Status why, Outbox* outbox);
  bool AwaitsALoss(const Status& failed);
  std::vector<HolderAddress> HoldersOf(NodeId owner) const;

  Input input_;
  Phase phase_ = Phase::kReports;
  std::vector<std::vector<HostedCheck>> checks_;  // by node: what its VIEW asked it to check
  std::vector<uint8_t> answered_;                 // by node, per phase
  uint32_t answered_count_ = 0;
  std::vector<ReportMessage> reports_;
  uint64_t version_ = 0;
  uint64_t written_epoch_ = 0;
  std::vector<std::pair<NodeId, StoreKeys>> new_stores_;
  std::vector<uint8_t> reprotecting_;  // by owner: REPROTECT sent, DONE awaited
  uint32_t reprotecting_count_ = 0;
  Status failure_;
  Status awaited_loss_;  // an Unavailable from a member, waiting for the loss behind it
  std::string table_;
};

}  // namespace ft::recovery

#endif  // FT_RECOVERY_RECOVERY_COORDINATOR_H_
