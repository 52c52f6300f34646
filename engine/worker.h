// The worker: one node's progress thread. It owns the fabric's datapath and every part that
// touches it (peer table, control channel, node memory, the coordinator host on the coordinator,
// the checkpoint round, the fragment reader), takes the requests the API threads leave in the
// shared state, and routes each completion and event to the part it belongs to:
//
//   completion ─ WorkKind ─► kCell/kHeader: CheckpointRound   kRead: FragmentReader
//                            kSend/kRecv: ControlChannel ─► message ─► CoordinatorHost (PREPARE,
//                                                                      DONE) or CheckpointRound
//                            kBeat: Heartbeat
//   failed completion, event,
//   a heartbeat slot silent  ─► PeerTable fences the link ─► control link: node lost (the
//                               coordinator tells every member, which fence their links to it) /
//                               the coordinator lost (the round fails); data link: the round and
//                               the reader stop using it
//   this node stalled past the heartbeat bound ─► it fences itself: removed (a zombie)
//
// Inside the round's datapath (its progress hook) the worker reaps completions but applies only
// the round's own WRITE completions and landed heartbeats; the others wait in a deferred list
// for the next turn of the loop, so no other part runs in the middle of a stripe. The reader's
// hook (between pieces of work on large cells) applies landed heartbeats only.
#ifndef FT_ENGINE_WORKER_H_
#define FT_ENGINE_WORKER_H_

#include <memory>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/checkpoint_round.h"
#include "engine/control_channel.h"
#include "engine/coordinator_host.h"
#include "engine/fragment_reader.h"
#include "engine/heartbeat.h"
#include "engine/node_context.h"
#include "engine/node_memory.h"
#include "engine/peer_table.h"
#include "engine/recovery_member.h"
#include "engine/shared_state.h"

namespace ft::internal {

class Worker {
 public:
  Worker(NodeContext& node, SharedState& shared);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Connects the control links (blocks until the coordinator's engine exists too, bounded by the
  // timeout), allocates the pipeline and starts the thread.
  Status Start();
  // Joins the thread (the caller set shared.stop), completes every request it did not finish with
  // Aborted, and releases QPs before memory registrations.
  void Stop();

 private:
  void Loop();
  bool PollOnce();
  // Where a completion is being reaped: in the loop (anything is handled), inside the round's
  // datapath (its own WRITEs and landed heartbeats; the rest waits in deferred_) or inside the
  // reader's CPU work (landed heartbeats only).
  enum class Inside { kLoop, kRoundDatapath, kReader };
  void PollDatapath();
  void PollInside(Inside inside);
  void Dispatch(const verbs::Completion& completion, Inside inside);
  void OnEvent(const verbs::Event& event);
  void OnLinkFenced(const PeerTable::LinkInfo& link, std::string_view why);
  void OnUndeliverable(NodeId to, std::string_view why);
  void OnControlMessage(NodeId from, const recovery::Message& message);
  void OnAssignedLayout(NodeId from, const recovery::LayoutMessage& chunk);
  // Beats, scans the heartbeat slots and acts on what they say. True when something happened.
  bool HeartbeatTurn();
  // `node` is lost (its control link fenced, or the coordinator said so): fence every link to it
  // and remember it for the API.
  void OnNodeLost(NodeId node, std::string_view why);
  // This node stalled past the heartbeat bound (0: the coordinator said so): its peers have
  // declared it lost. True the first time (it fenced itself now).
  bool OnRemoved(Nanos stalled_for);
  // This node stalled past the bound (it is removed now, if it was not yet).
  bool StalledAndRemoved();
  // Ends requests the worker will not run (taken by a removed node, or never taken by a
  // stopping one) with `why`. The caller holds shared_.mutex.
  void EndUnstarted(std::shared_ptr<CheckpointHandle::State>& checkpoint, ReadRequest*& read,
                    RecoverRequest*& recover, const Status& why);
  // On the coordinator: connects the processes that replace lost ranks, and starts the recovery
  // once every lost rank has one. True when something happened.
  bool CoordinatorRecoveryTurn();
  // The earliest time a step must run even if nothing arrives (a deadline, the next dial).
  Nanos NextDeadline() const;
  // When the coordinator dials a rank or spare it awaits next.
  Nanos NextControlDial() const;
  Status AcceptReplacement(NodeId rank, std::span<const std::byte> private_data,
                           std::unique_ptr<verbs::QueuePair>* qp);
  // This process replaces a lost rank: its control link to the coordinator, in the epoch the
  // coordinator is installing.
  Result<std::vector<std::unique_ptr<verbs::QueuePair>>> JoinAsReplacement(
      std::vector<verbs::ConnectRequest> requests);
  void StartRead(ReadRequest* request);

  NodeContext& node_;
  SharedState& shared_;
  PeerTable peers_;
  ControlChannel channel_;
  NodeMemory memory_;
  std::unique_ptr<CoordinatorHost> coordinator_;
  CheckpointRound round_;
  FragmentReader reader_;
  RecoveryMember recovery_;
  Heartbeat heartbeat_;
  Nanos published_gap_{0};  // the longest heartbeat gap the metrics show
  std::vector<verbs::Completion> deferred_;
  size_t next_awaited_ = 0;  // the lost rank (or spare) the coordinator dials next
  Nanos last_control_dial_{-std::chrono::hours(1)};      // none yet: the first is due at once
  std::vector<recovery::LayoutRegion> assigned_layout_;  // a replacement's layout, chunks so far
  std::thread thread_;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_WORKER_H_
