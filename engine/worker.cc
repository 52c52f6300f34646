// The worker (engine/worker.h): start-up, the progress loop and the routing of completions and
// events to the parts.
#include "engine/worker.h"

#include <algorithm>
#include <string>
#include <thread>

#include "common/check.h"
#include "common/log.h"
#include "engine/datapath.h"
#include "recovery/connection.h"

namespace ft::internal {

Worker::Worker(NodeContext& node, SharedState& shared)
    : node_(node),
      shared_(shared),
      peers_(node),
      channel_(node, peers_, [this](NodeId to, std::string_view why) { OnUndeliverable(to, why); }),
      memory_(node),
      round_(node, memory_, peers_, channel_, shared, [this] { PollDatapath(); }),
      reader_(node, peers_, memory_, [this] { PollInside(Inside::kReader); }),
      recovery_(node, shared, peers_, channel_, memory_, round_, reader_,
                [this] { PollInside(Inside::kReader); }),
      heartbeat_(node, peers_) {}

Worker::~Worker() { Stop(); }

Status Worker::Start() {
  const bool is_coordinator = node_.is_coordinator();
  const uint32_t size = node_.world.size;
  FT_RETURN_IF_ERROR(channel_.Allocate(is_coordinator ? static_cast<int>(size) - 1 : 1));
  FT_RETURN_IF_ERROR(heartbeat_.Register());
  if (node_.options.store_capacity > 0) {
    FT_RETURN_IF_ERROR(memory_.EnsureStore(node_.options.store_capacity));
  }
  std::vector<verbs::ConnectRequest> requests;
  if (is_coordinator) {
    for (NodeId peer = 0; peer < size; ++peer) {
      if (peer != node_.rank()) {
        requests.push_back({peer, recovery::EncodeControlConnect(node_.rank(), node_.epoch()), {}});
      }
    }
    FT_ASSIGN_OR_RETURN(coordinator_, CoordinatorHost::Create(node_, channel_));
  } else {
    requests.push_back(
        {node_.coordinator(),
         recovery::EncodeControlConnect(node_.rank(),
                                        node_.replacement ? recovery::kJoiningEpoch : node_.epoch(),
                                        node_.fabric->endpoint()),
         {}});
  }
  // The control receives go up with the QPs: a peer's first message (a PREPARE sent the moment
  // its own Connect returned) must never find an empty receive queue.
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].receives = channel_.ReceivesFor(static_cast<int>(i), requests[i].peer);
  }
  // The job's start has a bound of its own: a rank that never comes ends it on every node
  // within startup_timeout, named by the Connect's error.
  const Nanos startup = std::min<Nanos>(node_.options.startup_timeout, node_.options.timeout);
  auto connected = node_.replacement ? JoinAsReplacement(std::move(requests))
                                     : node_.fabric->Connect(requests, startup);
  if (!connected.ok()) {
    const bool timed_out = connected.status().code() == StatusCode::kDeadlineExceeded;
    return connected.status().WithContext(StrCat(
        "node ", node_.rank(), " connecting to the ",
        is_coordinator ? "other nodes" : StrCat("coordinator (rank ", node_.coordinator(), ")"),
        timed_out && !node_.replacement
            ? StrCat(" at start (within ",
                     std::chrono::duration_cast<std::chrono::milliseconds>(startup).count(),
                     " ms: startup_timeout, FT_STARTUP_TIMEOUT_MS; a rank that died before it "
                     "connected, or was never started)")
            : std::string()));
  }
  for (auto& qp : *connected) {
    const NodeId peer = qp->peer();
    // A rank whose first process died before it connected may be here already replaced
    // (ftrun --respawn): at start the new process is simply that rank's.
    const bool joining = is_coordinator &&
                         recovery::ConnectEpoch(qp->peer_private_data()) == recovery::kJoiningEpoch;
    if (joining) {
      FT_LOG(kInfo) << "node " << node_.rank() << ": rank " << peer
                    << " connected as a replacement at start: it is that rank's process";
    }
    FT_ASSIGN_OR_RETURN(
        std::span<const std::byte> endpoint,
        recovery::ParseControlConnect(qp->peer_private_data(), peer,
                                      joining ? recovery::kJoiningEpoch : node_.epoch()));
    if (coordinator_) coordinator_->SetEndpoint(peer, endpoint);
    const uint32_t id = qp->id();
    peers_.Add(peer, LinkRole::kControl, std::move(qp));
    channel_.ReceivesPosted(id);
  }
  FT_RETURN_IF_ERROR(memory_.AllocatePipeline());
  // Heartbeats start with the control links: each reader tells its writers where to WRITE.
  // Watching starts first: no writer beats before it knows where.
  heartbeat_.Start(node_.Now());
  for (auto& [to, target] : heartbeat_.Targets()) channel_.Send(to, target);
  if (node_.replacement) recovery_.StartAsReplacement(node_.Now());
  const verbs::DeviceLocality* locality = node_.fabric->locality();
  {
    std::lock_guard lock(shared_.mutex);
    shared_.metrics.store_bytes = memory_.store_bytes();
    shared_.metrics.numa = locality != nullptr ? locality->Describe() : "";
  }
  thread_ = std::thread([this, locality] {
    if (locality != nullptr && locality->binds()) {
      if (Status bound = locality->BindCurrentThread(); !bound.ok()) {
        FT_LOG(kWarn) << "node " << node_.rank() << ": " << bound;
      }
    }
    Loop();
  });
  return Status();
}

void Worker::Stop() {
  node_.fabric->Interrupt();
  if (thread_.joinable()) thread_.join();
  peers_.StopConnecting();
  {
    // Requests the worker never took still get an answer: nobody may wait forever.
    std::lock_guard lock(shared_.mutex);
    EndUnstarted(shared_.pending_checkpoint, shared_.pending_read, shared_.pending_recover,
                 Status::Aborted("the engine of node ", node_.rank(), " was destroyed"));
  }
  // Verbs' order: QPs before the memory they could address.
  peers_.Clear();
  memory_.Deregister();
  channel_.Deregister();
  heartbeat_.Deregister();
}

void Worker::Loop() {
  while (true) {
    std::shared_ptr<CheckpointHandle::State> new_checkpoint;
    ReadRequest* new_read = nullptr;
    RecoverRequest* new_recover = nullptr;
    {
      std::lock_guard lock(shared_.mutex);
      if (shared_.stop) break;
      new_checkpoint = std::move(shared_.pending_checkpoint);
      shared_.pending_checkpoint.reset();
      new_read = shared_.pending_read;
      shared_.pending_read = nullptr;
      new_recover = shared_.pending_recover;
      shared_.pending_recover = nullptr;
    }
    // First of all: a node that was stopped past the heartbeat bound is no longer a member, and
    // must not act on anything it finds on waking (a stale coordinator would declare every node
    // that dropped it lost).
    if (StalledAndRemoved()) {
      // A removed node starts nothing: the requests just taken end with the removal.
      std::lock_guard lock(shared_.mutex);
      EndUnstarted(new_checkpoint, new_read, new_recover, shared_.removed);
    }
    bool progressed = PollOnce();
    if (new_checkpoint) {
      round_.Start(std::move(new_checkpoint));
      progressed = true;
    }
    if (new_read != nullptr) {
      StartRead(new_read);
      progressed = true;
    }
    if (new_recover != nullptr) {
      recovery_.Take(new_recover);
      progressed = true;
    }
    if (reader_.active()) progressed |= reader_.Step();
    if (round_.active()) progressed |= round_.Step();
    if (recovery_.active()) progressed |= recovery_.Step();
    if (coordinator_) progressed |= CoordinatorRecoveryTurn();
    progressed |= HeartbeatTurn();
    // Completions, events and Interrupt() end the wait early (everything done off this thread
    // interrupts it when done); otherwise it lasts until the next deadline or heartbeat. No
    // polling: a thousand workers sharing two cores leave each other the CPU.
    if (!progressed) {
      const Nanos now = node_.Now();
      Nanos wait = std::chrono::milliseconds(500);
      if (const Nanos due = NextDeadline(); due != Nanos::max()) {
        // Deadlines fire once passed (now > deadline): wake just after.
        wait = std::min(wait, due - now + std::chrono::milliseconds(1));
      }
      if (!heartbeat_.stalled()) wait = std::min(wait, heartbeat_.UntilDue(now));
      if (wait > Nanos(0)) node_.fabric->WaitForActivity(wait);
    }
  }
  // Shutting down: fence what is in flight so nothing more lands, and end it.
  round_.Abandon([this] { return PollOnce(); });
  reader_.Abandon([this] { return PollOnce(); });
  recovery_.End(Status::Aborted("the engine of node ", node_.rank(), " was destroyed"));
}

void Worker::StartRead(ReadRequest* request) {
  reader_.Start(node_.rank(), round_.committed(), request->out, request->skip_columns,
                [this, request](Status status) {
                  std::lock_guard lock(shared_.mutex);
                  request->result = std::move(status);
                  request->done = true;
                  shared_.read_in_flight = false;
                  shared_.cv.notify_all();
                });
}

bool Worker::PollOnce() {
  peers_.Harvest([this](NodeId peer, LinkRole role, std::span<const std::byte> data, uint64_t tag,
                        std::unique_ptr<verbs::QueuePair>* qp) {
    if (role == LinkRole::kControl) return AcceptReplacement(peer, data, qp);
    return round_.AcceptPartner(peer, data, tag);
  });
  const bool had_deferred = !deferred_.empty();
  std::vector<verbs::Completion> deferred;
  deferred.swap(deferred_);
  for (const verbs::Completion& completion : deferred) Dispatch(completion, Inside::kLoop);
  verbs::Completion completions[kPollBatch];
  const size_t n = node_.fabric->PollCompletions(completions);
  for (size_t i = 0; i < n; ++i) Dispatch(completions[i], Inside::kLoop);
  verbs::Event events[8];
  const size_t e = node_.fabric->PollEvents(events);
  for (size_t i = 0; i < e; ++i) OnEvent(events[i]);
  bool local = false;
  while (std::optional<recovery::Message> message = channel_.TakeLocal()) {
    OnControlMessage(node_.rank(), *message);
    local = true;
  }
  channel_.Flush();
  return had_deferred || n > 0 || e > 0 || local;
}

void Worker::PollDatapath() { PollInside(Inside::kRoundDatapath); }

void Worker::PollInside(Inside inside) {
  // Encoding or reading at full speed must not look like a hung node: beat from inside too, and
  // reap what landed (on loopback the poll is also where a posted beat is carried out).
  heartbeat_.BeatIfDue(node_.Now());
  verbs::Completion completions[kPollBatch];
  const size_t n = node_.fabric->PollCompletions(completions);
  for (size_t i = 0; i < n; ++i) Dispatch(completions[i], inside);
}

void Worker::Dispatch(const verbs::Completion& completion, Inside inside) {
  const WorkId id = WorkId::Decode(completion.wr_id);
  const bool write = id.kind == WorkKind::kCell || id.kind == WorkKind::kHeader;
  // A heartbeat that landed only frees its target for the next beat: taken at once, wherever we
  // are, or no second beat could go out during a long stripe or read. A failed one fences a
  // control link, which only the loop may do.
  const bool beat_landed =
      id.kind == WorkKind::kBeat && completion.status == verbs::WcStatus::kSuccess;
  const bool now =
      inside == Inside::kLoop || beat_landed || (inside == Inside::kRoundDatapath && write);
  if (!now) {
    deferred_.push_back(completion);
    return;
  }
  const std::optional<PeerTable::LinkInfo> link = peers_.Find(completion.qp);
  if (!link && id.kind == WorkKind::kRecv && peers_.connecting()) {
    // A replacement's first message, on a control link whose Connect has not been harvested
    // yet: it is taken once the link is in the table.
    deferred_.push_back(completion);
    return;
  }
  const NodeId peer = link ? link->rank : verbs::kInvalidNode;
  const bool ok = completion.status == verbs::WcStatus::kSuccess;
  if (!ok) {
    // The QP is in error now (verbs): fence and retire it, once, whatever the request was.
    if (std::optional<PeerTable::LinkInfo> fenced = peers_.FenceQp(completion.qp)) {
      OnLinkFenced(*fenced, verbs::WcStatusName(completion.status));
    }
  }
  peers_.CountCompleted(completion.qp);
  switch (id.kind) {
    case WorkKind::kCell:
    case WorkKind::kHeader:
      round_.OnWriteCompleted(id, completion.status, peer);
      return;
    case WorkKind::kRead:
      reader_.OnReadCompleted(id, completion.status, peer);
      return;
    case WorkKind::kSend:
      channel_.OnSendCompleted(id.index);
      return;
    case WorkKind::kBeat:
      heartbeat_.OnWriteCompleted(id.index);
      return;
    case WorkKind::kRecv:
      if (ok) {
        if (std::optional<recovery::Message> message =
                channel_.OnReceived(id.index, completion.bytes, peer)) {
          OnControlMessage(peer, *message);
        }
      }
      return;
  }
  FT_LOG(kError) << "node " << node_.rank() << ": completion with unknown wr_id "
                 << completion.wr_id;
}

void Worker::OnEvent(const verbs::Event& event) {
  if (event.type == verbs::EventType::kDeviceError) {
    FT_LOG(kInfo) << "node " << node_.rank() << ": device error: " << event.detail;
    peers_.FenceAll();
    round_.OnOwnFabricLost(event.detail);
    reader_.OnOwnFabricLost(event.detail);
    recovery_.End(Status::Unavailable("node ", node_.rank(), " lost its fabric: ", event.detail));
    return;
  }
  if (std::optional<PeerTable::LinkInfo> fenced = peers_.FenceQp(event.qp)) {
    OnLinkFenced(*fenced, StrCat(verbs::EventTypeName(event.type), event.detail.empty() ? "" : ": ",
                                 event.detail));
  }
}

void Worker::OnLinkFenced(const PeerTable::LinkInfo& link, std::string_view why) {
  // A node that stalled past the bound acts on nothing it finds when it wakes, even when the
  // stall ended in the middle of a turn of the loop (the check at its top came before it).
  if (StalledAndRemoved()) return;
  if (link.role == LinkRole::kControl && link.rank >= node_.world.size) {
    // An idle spare went away (or took a rank: it now dials as that rank).
    if (coordinator_) coordinator_->OnSpareLost(link.rank);
    return;
  }
  if (link.role == LinkRole::kControl) {
    FT_LOG(kInfo) << "node " << node_.rank() << ": lost node " << link.rank << " (" << why << ")";
    if (coordinator_) {
      coordinator_->OnNodeLost(link.rank, why);
    } else {
      round_.OnCoordinatorLost(why);
    }
    OnNodeLost(link.rank, why);
    return;
  }
  FT_LOG(kInfo) << "node " << node_.rank() << ": data link to node " << link.rank << " fenced ("
                << why << ")";
  round_.OnDataLinkLost(link.rank, why);
}

void Worker::OnUndeliverable(NodeId to, std::string_view why) {
  if (std::optional<PeerTable::LinkInfo> fenced = peers_.Fence(to, LinkRole::kControl)) {
    OnLinkFenced(*fenced, why);
  } else if (to == node_.coordinator()) {
    round_.OnCoordinatorLost(why);  // its loss was handled; a round waiting on it must not wait
  }
}

bool Worker::StalledAndRemoved() {
  if (!heartbeat_.CheckStall(node_.Now())) return false;
  OnRemoved(*heartbeat_.stalled());
  return true;
}

void Worker::OnControlMessage(NodeId from, const recovery::Message& message) {
  if (StalledAndRemoved()) return;
  if (const auto* target = std::get_if<recovery::BeatTargetMessage>(&message)) {
    heartbeat_.OnTarget(from, *target);
    return;
  }
  if (const auto* lost = std::get_if<recovery::LostMessage>(&message)) {
    // Only the coordinator of this epoch declares losses.
    if (from != node_.coordinator() || lost->epoch != node_.epoch()) return;
    if (lost->node == node_.rank()) {
      OnRemoved(Nanos(0));
    } else {
      OnNodeLost(lost->node, StrCat("the coordinator declared it lost: ", lost->reason));
    }
    return;
  }
  if (const auto* layout = std::get_if<recovery::LayoutMessage>(&message);
      layout && !coordinator_) {
    OnAssignedLayout(from, *layout);
    return;
  }
  const bool upstream = std::holds_alternative<recovery::PrepareMessage>(message) ||
                        std::holds_alternative<recovery::DoneMessage>(message) ||
                        std::holds_alternative<recovery::ReportMessage>(message) ||
                        std::holds_alternative<recovery::RestoredMessage>(message) ||
                        std::holds_alternative<recovery::LayoutMessage>(message);
  if (upstream) {
    if (coordinator_) coordinator_->OnMessage(message);
    return;
  }
  if (std::holds_alternative<recovery::LayoutRequestMessage>(message)) {
    round_.OnControlMessage(from, message);
    return;
  }
  const bool recovery_only = std::holds_alternative<recovery::ViewMessage>(message) ||
                             std::holds_alternative<recovery::RestoreMessage>(message) ||
                             std::holds_alternative<recovery::ReprotectMessage>(message);
  if (recovery_only) {
    recovery_.OnControlMessage(from, message);
    return;
  }
  // COMMIT and ABORT: the round's first (a re-protection's COMMIT completes it), then the
  // recovery's (the same COMMIT ends the recovery).
  const auto* abort = std::get_if<recovery::AbortMessage>(&message);
  if (abort == nullptr || abort->version != recovery::kRecoveryVersion) {
    round_.OnControlMessage(from, message);
  }
  recovery_.OnControlMessage(from, message);
}

// The coordinator tells a replacement the committed layout of its rank, in chunks, once it
// joined: WaitForAssignment returns it when the last chunk is in.
void Worker::OnAssignedLayout(NodeId from, const recovery::LayoutMessage& chunk) {
  if (from != node_.coordinator() || chunk.node != node_.rank() || !node_.replacement ||
      chunk.first != assigned_layout_.size()) {
    FT_LOG(kWarn) << "node " << node_.rank() << ": ignored a LAYOUT of node " << chunk.node
                  << " from " << chunk.first << " (from node " << from << ", "
                  << assigned_layout_.size() << " regions received)";
    return;
  }
  assigned_layout_.insert(assigned_layout_.end(), chunk.regions.begin(), chunk.regions.end());
  if (assigned_layout_.size() < chunk.total) return;
  std::vector<ProtectedRegion> layout = ProtectedRegionsOf(std::exchange(assigned_layout_, {}));
  {
    std::lock_guard lock(shared_.mutex);
    shared_.committed_layout = std::move(layout);
    shared_.layout_assigned = true;
  }
  shared_.cv.notify_all();
}

Result<std::vector<std::unique_ptr<verbs::QueuePair>>> Worker::JoinAsReplacement(
    std::vector<verbs::ConnectRequest> requests) {
  // The coordinator dials the ranks it awaits in short turns, one at a time: a connection it
  // gives up on half-way fails ours (rdma: the CM handshake of a withdrawn attempt). Dial again
  // until the timeout; only the timeout, a dead coordinator or our own death end the wait.
  const auto real_deadline = std::chrono::steady_clock::now() + node_.options.timeout;
  Result<std::vector<std::unique_ptr<verbs::QueuePair>>> attempt = Status::Internal("unset");
  while (true) {
    const auto left =
        std::chrono::duration_cast<Nanos>(real_deadline - std::chrono::steady_clock::now());
    attempt = node_.fabric->Connect(requests, std::max(left, Nanos(0)));
    const StatusCode code = attempt.status().code();
    if (attempt.ok() || code == StatusCode::kDeadlineExceeded || code == StatusCode::kUnavailable ||
        code == StatusCode::kAborted || std::chrono::steady_clock::now() >= real_deadline) {
      break;
    }
    FT_LOG(kInfo) << "node " << node_.rank() << ": joining failed (" << attempt.status()
                  << "); dialling the coordinator again";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FT_ASSIGN_OR_RETURN(auto connected, std::move(attempt));
  for (const auto& qp : connected) {
    // The coordinator answers in the epoch of the view it installs for us.
    const uint64_t epoch = recovery::ConnectEpoch(qp->peer_private_data());
    if (epoch == recovery::kJoiningEpoch) {
      return Status::Internal("the coordinator answered a replacement without an epoch");
    }
    node_.view.epoch = epoch;
  }
  if (node_.epoch() == recovery::View::Initial(node_.world.size, node_.coordinator()).epoch) {
    // The coordinator was still starting the job: this process is simply the rank's, with
    // nothing to recover.
    FT_LOG(kInfo) << "node " << node_.rank() << ": replaced a process that died at start-up";
    node_.replacement = false;
    shared_.spare.store(false, std::memory_order_release);
    return connected;
  }
  FT_LOG(kInfo) << "node " << node_.rank() << ": joined as a replacement in epoch "
                << node_.epoch();
  return connected;
}

Nanos Worker::NextControlDial() const {
  // A spare told to take a rank is starting its engine now: dial it again soon (also when the
  // last dial, to the dead process, came before the spare was assigned).
  return last_control_dial_ + (coordinator_->SpareStarting() ? std::chrono::milliseconds(2)
                                                             : std::chrono::milliseconds(100));
}

Nanos Worker::NextDeadline() const {
  Nanos due =
      std::min({round_.next_deadline(), reader_.next_deadline(), recovery_.next_deadline()});
  if (coordinator_) {
    due = std::min(due, coordinator_->next_deadline());
    // A rank or spare still to dial: the next turn.
    if (!peers_.connecting() && !coordinator_->ControlPeersToDial().empty()) {
      due = std::min(due, NextControlDial());
    }
  }
  return due;
}

bool Worker::CoordinatorRecoveryTurn() {
  const Nanos now = node_.Now();
  coordinator_->CheckRecoveryDeadlines(now);
  if (coordinator_->ReadyToRecover()) {
    // Every lost rank has a process again: the next view, with every survivor's links kept.
    const uint64_t old_epoch = node_.epoch();
    node_.view.epoch = old_epoch + 1;
    peers_.AdoptEpoch(old_epoch);
    coordinator_->StartRecovery();
    return true;
  }
  // Replacements of lost ranks first, idle spares when none is awaited. One peer per Connect
  // (a batch succeeds only whole, and they come one by one), in turn, each briefly: they may come
  // at any time. A peer that is not there at all (dead) fails at once: not again for 100 ms
  // (2 ms when a spare was assigned the rank: it comes within milliseconds).
  if (peers_.connecting() || now < NextControlDial()) return false;
  const std::vector<NodeId> candidates = coordinator_->ControlPeersToDial();
  if (candidates.empty()) return false;
  const NodeId peer = candidates[next_awaited_++ % candidates.size()];
  last_control_dial_ = now;
  verbs::ConnectRequest request{
      peer,
      recovery::EncodeControlConnect(node_.rank(), node_.epoch() + 1, node_.fabric->endpoint()),
      {}};
  if (peer < node_.world.size) {
    // The receive buffers of the rank's control link are the ones it had at start. A spare
    // never sends: its link needs none.
    const int link = static_cast<int>(peer) - (peer > node_.rank() ? 1 : 0);
    request.receives = channel_.ReceivesFor(link, peer);
  }
  std::vector<verbs::ConnectRequest> requests;
  requests.push_back(std::move(request));
  peers_.ConnectControl(std::move(requests), std::chrono::milliseconds(200), 0);
  return false;
}

Status Worker::AcceptReplacement(NodeId rank, std::span<const std::byte> private_data,
                                 std::unique_ptr<verbs::QueuePair>* qp) {
  if (rank >= node_.world.size) {
    // An idle spare: a control link to send it ASSIGN on, nothing else.
    FT_ASSIGN_OR_RETURN(const recovery::SpareConnect spare,
                        recovery::ParseSpareConnect(private_data, rank));
    peers_.Add(rank, LinkRole::kControl, std::move(*qp));
    coordinator_->OnSpareConnected(rank, spare.priority, spare.domain);
    return Status();
  }
  const std::vector<NodeId> awaiting = coordinator_->AwaitingReplacement();
  if (std::find(awaiting.begin(), awaiting.end(), rank) == awaiting.end()) {
    return Status::FailedPrecondition("rank ", rank, " is not waiting for a replacement");
  }
  FT_ASSIGN_OR_RETURN(std::span<const std::byte> endpoint,
                      recovery::ParseControlConnect(private_data, rank, recovery::kJoiningEpoch));
  coordinator_->SetEndpoint(rank, endpoint);
  const uint32_t id = (*qp)->id();
  peers_.Add(rank, LinkRole::kControl, std::move(*qp));
  channel_.ReceivesPosted(id);
  channel_.Send(rank, heartbeat_.Rejoin(rank, node_.Now(), node_.epoch() + 1));
  coordinator_->OnReplacementConnected(rank);
  return Status();
}

bool Worker::HeartbeatTurn() {
  const Nanos now = node_.Now();
  heartbeat_.BeatIfDue(now);
  if (heartbeat_.longest_gap() > published_gap_) {
    published_gap_ = heartbeat_.longest_gap();
    std::lock_guard lock(shared_.mutex);
    shared_.metrics.longest_heartbeat_gap_seconds = SecondsBetween(Nanos(0), published_gap_);
  }
  if (heartbeat_.stalled()) return OnRemoved(*heartbeat_.stalled());
  bool acted = false;
  for (const recovery::HeartbeatMonitor::Silence& silence : heartbeat_.Scan(now)) {
    const std::string why =
        silence.ever_beat
            ? StrCat("no heartbeat for ", silence.silent_for.count() / 1'000'000, " ms, bound ",
                     heartbeat_.timing().bound().count() / 1'000'000, " ms")
            : StrCat("no heartbeat at all ", silence.silent_for.count() / 1'000'000,
                     " ms after it connected (it never started beating)");
    if (std::optional<PeerTable::LinkInfo> fenced =
            peers_.Fence(silence.node, LinkRole::kControl)) {
      OnLinkFenced(*fenced, why);
    }
    acted = true;
  }
  return acted;
}

void Worker::OnNodeLost(NodeId node, std::string_view why) {
  heartbeat_.Forget(node);
  recovery_.OnLossLearned(node, node_.Now());
  if (std::optional<PeerTable::LinkInfo> fenced = peers_.Fence(node, LinkRole::kData)) {
    OnLinkFenced(*fenced, why);
  }
  std::lock_guard lock(shared_.mutex);
  for (const auto& [known, reason] : shared_.lost_nodes) {
    if (known == node) return;
  }
  shared_.lost_nodes.emplace_back(node, std::string(why));
  shared_.failure_detected.store(true, std::memory_order_release);
}

void Worker::EndUnstarted(std::shared_ptr<CheckpointHandle::State>& checkpoint, ReadRequest*& read,
                          RecoverRequest*& recover, const Status& why) {
  if (recover != nullptr) {
    recover->result = why;
    recover->done = true;
    recover = nullptr;
    shared_.recover_in_flight = false;
    shared_.cv.notify_all();
  }
  if (checkpoint) {
    checkpoint->Complete(why, 0);
    checkpoint.reset();
    shared_.in_flight = false;
  }
  if (read != nullptr) {
    read->result = why;
    read->done = true;
    read = nullptr;
    shared_.read_in_flight = false;
    shared_.cv.notify_all();
  }
}

bool Worker::OnRemoved(Nanos stalled_for) {
  Status removed = Status::Aborted(
      "node ", node_.rank(), " was removed from the job in epoch ", node_.epoch(),
      stalled_for > Nanos(0) ? StrCat(": it made no progress for ", stalled_for.count() / 1'000'000,
                                      " ms, longer than the heartbeat bound of ",
                                      heartbeat_.timing().bound().count() / 1'000'000,
                                      " ms, so its peers have declared it lost")
                             : std::string(": the coordinator declared it lost"));
  {
    std::lock_guard lock(shared_.mutex);
    if (!shared_.removed.ok()) return false;
    shared_.removed = removed;
    shared_.failure_detected.store(true, std::memory_order_release);
  }
  FT_LOG(kWarn) << removed;
  // Nothing more from this node may land anywhere: every link goes to error now.
  peers_.FenceAll();
  round_.OnRemoved(removed);
  reader_.OnOwnFabricLost(removed.message());
  recovery_.End(removed);
  return true;
}

}  // namespace ft::internal
