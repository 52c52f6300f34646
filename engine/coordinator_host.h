// The coordinator host: on the coordinator's node, the glue between the pure commit state
// machine (recovery::Coordinator) and the control channel. It feeds the machine PREPAREs, DONEs
// and node losses, and sends what it answers (and a LOST to every member when a node is lost),
// adding to each GO that carries a placement where
// the node's partners listen (the endpoint table, learned from the control connections).
//
// A standby coordinator (a later issue) will instantiate the same class from the serialized
// committed state. Worker-owned.
#ifndef FT_ENGINE_COORDINATOR_HOST_H_
#define FT_ENGINE_COORDINATOR_HOST_H_

#include <cstddef>
#include <map>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "engine/control_channel.h"
#include "engine/node_context.h"
#include "recovery/coordinator.h"
#include "recovery/protocol.h"
#include "recovery/recovery_coordinator.h"
#include "recovery/spare_choice.h"

namespace ft::internal {

class CoordinatorHost {
 public:
  static Result<std::unique_ptr<CoordinatorHost>> Create(NodeContext& node,
                                                         ControlChannel& channel);

  // Where `node` listens (from its control connection's private data; empty on loopback).
  void SetEndpoint(NodeId node, std::span<const std::byte> endpoint);
  // PREPARE and DONE go to the state machine, REPORT and RESTORED (and a re-protecting owner's
  // DONE) to the recovery; other messages are not the coordinator's.
  void OnMessage(const recovery::Message& message);
  // A node is lost: the state machine aborts what is in flight, and every other member is told
  // (LOST) so that it fences its links to that node, once per node. A loss during a recovery
  // restarts it in a newer view once every lost rank has a process (the ranks replaced so far
  // stay replaced).
  void OnNodeLost(NodeId node, std::string_view why);

  // ---- recovery (recovery/recovery_coordinator.h) ----
  // Lost ranks that still need a process to replace them (none while a recovery runs).
  std::vector<NodeId> AwaitingReplacement() const;
  // A replacement of `rank` connected (its control link is in the peer table).
  void OnReplacementConnected(NodeId rank);
  // Every lost rank has its replacement: the worker moves this node to the next epoch (and
  // re-keys its links), then calls StartRecovery.
  bool ReadyToRecover() const;
  void StartRecovery();
  // Fails a recovery whose lost ranks got no replacement within the timeout from the loss, or
  // that did not end within twice the timeout from its start.
  void CheckRecoveryDeadlines(Nanos now);
  // When CheckRecoveryDeadlines must run even if nothing arrives; Nanos::max() when never.
  Nanos next_deadline() const;
  bool recovering() const { return recovery_ != nullptr; }
  // Whom the coordinator dials for a control link: the lost ranks still awaiting a replacement,
  // else the idle spares not connected yet.
  std::vector<NodeId> ControlPeersToDial() const;
  // A rank awaiting its replacement was assigned an idle spare, which is starting its engine.
  bool SpareStarting() const;
  // An idle spare connected, with its priority and failure domain (recovery/spare_choice.h).
  void OnSpareConnected(NodeId spare, uint32_t priority, uint32_t domain);
  void OnSpareLost(NodeId spare);

  const recovery::Coordinator& coordinator() const { return *coordinator_; }

  CoordinatorHost(NodeContext& node, ControlChannel& channel,
                  std::unique_ptr<recovery::Coordinator> coordinator);

 private:
  // Idle spares (numbers world.size ..): which are not connected yet, one connected, one lost.
  std::vector<NodeId> UnconnectedSpares() const;
  void SendAll(recovery::Coordinator::Outbox& outbox);
  void AddEndpoints(recovery::GoMessage& go) const;
  void AddEndpoints(recovery::RestoreMessage& restore) const;
  void AddEndpoints(std::vector<NodeId> partners, std::vector<recovery::PeerEndpoint>* out) const;
  // The recovery ended (recovered or failed): its outcome becomes the coordinator's.
  void AfterRecoveryMessage();
  // Gives each lost rank without a process the best connected spare (ASSIGN): the one whose
  // failure domain keeps the placement's rule best, then by priority and launch order.
  void AssignSpares(recovery::Coordinator::Outbox* outbox);
  // STORE_HINT to the idle spares whose hint is smaller than the committed placement needs.
  void HintSpares(recovery::Coordinator::Outbox* outbox);

  NodeContext& node_;
  ControlChannel& channel_;
  std::unique_ptr<recovery::Coordinator> coordinator_;
  std::vector<std::vector<std::byte>> endpoints_;  // by node
  std::vector<uint8_t> announced_lost_;            // by node: LOST was sent for it
  // Recovery: the lost ranks (sorted), which of them have a replacement connected, since when.
  std::vector<NodeId> lost_;
  std::vector<NodeId> replaced_;
  Nanos first_loss_at_{0};
  Nanos recovery_started_at_{0};
  std::unique_ptr<recovery::RecoveryCoordinator> recovery_;
  std::vector<recovery::SpareCandidate> spares_;  // connected idle spares
  std::vector<NodeId> spares_gone_;               // assigned or lost: never dialled again
  std::vector<NodeId> assigned_ranks_;            // lost ranks a spare was assigned to
  uint64_t restarts_ = 0;                         // recoveries restarted by a loss during them
  struct SpareHint {
    uint64_t bytes = 0;
    int sent = 0;
  };
  static constexpr int kMaxStoreHints = 2;
  std::map<NodeId, SpareHint> spare_hints_;  // STORE_HINTs sent, by spare
  uint64_t hinted_version_ = 0;              // the committed version the hints were made for
};

}  // namespace ft::internal

#endif  // FT_ENGINE_COORDINATOR_HOST_H_
