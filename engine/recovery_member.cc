// The recovery member (engine/recovery_member.h).
#include "engine/recovery_member.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/log.h"
#include "engine/datapath.h"
#include "erasure/fragment.h"
#include "erasure/geometry.h"
#include "recovery/connection.h"

namespace ft::internal {

RecoveryMember::RecoveryMember(NodeContext& node, SharedState& shared, PeerTable& peers,
                               ControlChannel& channel, NodeMemory& memory, CheckpointRound& round,
                               FragmentReader& reader, std::function<void()> progress)
    : node_(node),
      shared_(shared),
      peers_(peers),
      channel_(channel),
      memory_(memory),
      round_(round),
      reader_(reader),
      progress_(std::move(progress)) {}

void RecoveryMember::StartAsReplacement(Nanos now) {
  replacement_ = true;
  loss_learned_ = now;
}

void RecoveryMember::OnLossLearned(NodeId node, Nanos now) {
  if (loss_learned_ == Nanos(0)) loss_learned_ = now;
  // A lost coordinator ends the job (the worker ends every call), not just this recovery.
  if (phase_ == Phase::kIdle || phase_ == Phase::kInterrupted || node == node_.coordinator()) {
    return;
  }
  FT_LOG(kInfo) << "node " << node_.rank() << ": node " << node << " was lost during the recovery"
                << " in epoch " << node_.epoch() << "; waiting for the coordinator's next view";
  StopWorkInFlight(StrCat("node ", node, " was lost"));
  Interrupt();
}

void RecoveryMember::Interrupt() {
  phase_ = Phase::kInterrupted;
  restore_.reset();
  // The coordinator waits one timeout for the lost rank's replacement, then recovers anew.
  deadline_ = std::max(deadline_, node_.Now() + 3 * node_.options.timeout);
}

void RecoveryMember::StopWorkInFlight(const std::string& why) {
  if (phase_ == Phase::kReprotecting && round_.active()) {
    round_.Cancel(Status::Aborted("the recovery restarts: ", why));
  }
  // A partner may never answer (it was the one lost): the Connect would hold the connect helper,
  // which the coordinator's node needs to dial the lost rank's next process.
  if (partner_connect_ && peers_.connecting()) peers_.CancelConnecting();
  partner_connect_ = false;
}

// A partner we could not reach (Unavailable) is lost, or about to be declared so: the coordinator
// restarts the recovery in a newer view (or ends it with an ABORT), which we wait for.
bool RecoveryMember::AwaitLoss(const Status& failed) {
  if (failed.code() != StatusCode::kUnavailable) return false;
  Interrupt();
  return true;
}

bool RecoveryMember::Quiet() const { return !reader_.active() && !round_.active(); }

void RecoveryMember::Take(RecoverRequest* request) {
  request_ = request;
  called_ = node_.Now();
  // Waiting for the replacements (the coordinator gives up on them after one timeout), then the
  // restore and the re-protection (one more).
  deadline_ = called_ + 2 * node_.options.timeout;
  report_ = RecoveryReport{};
  report_.replacement = replacement_;
  if (unclaimed_failure_) {
    // The recovery failed before the application called (DataLoss found from the reports, no
    // replacement): this call hears it.
    Finish(*std::exchange(unclaimed_failure_, std::nullopt));
  }
}

bool RecoveryMember::IsReplaced(NodeId node) const {
  return view_ &&
         std::find(view_->replaced.begin(), view_->replaced.end(), node) != view_->replaced.end();
}

bool RecoveryMember::OnControlMessage(NodeId from, const recovery::Message& message) {
  if (from != node_.coordinator()) return false;
  if (const auto* view = std::get_if<recovery::ViewMessage>(&message)) {
    OnView(*view);
    return true;
  }
  if (const auto* restore = std::get_if<recovery::RestoreMessage>(&message)) {
    if (phase_ == Phase::kViewed && restore->epoch == node_.epoch()) restore_ = *restore;
    return true;
  }
  if (const auto* reprotect = std::get_if<recovery::ReprotectMessage>(&message)) {
    if (phase_ == Phase::kRestored && reprotect->epoch == node_.epoch()) {
      phase_ = Phase::kReprotecting;
      reprotect_ = std::make_shared<CheckpointHandle::State>();
      round_.StartReprotect(reprotect_, *reprotect);
    }
    return true;
  }
  if (const auto* commit = std::get_if<recovery::CommitMessage>(&message)) {
    const bool ours = (phase_ == Phase::kRestored || phase_ == Phase::kReprotecting) &&
                      commit->epoch == node_.epoch() && restore_ &&
                      commit->version == restore_->version;
    if (ours) Finish(Status());
    return ours;
  }
  if (const auto* abort = std::get_if<recovery::AbortMessage>(&message)) {
    if (abort->version != recovery::kRecoveryVersion || abort->epoch < node_.epoch() - 1) {
      return false;
    }
    Finish(Status(abort->code, StrCat("recovery failed: ", abort->reason)));
    return true;
  }
  return false;
}

void RecoveryMember::OnView(const recovery::ViewMessage& view) {
  // A view only moves forward, for the node and for its recoveries: a replacement is in its view
  // from its first connection, and the coordinator's node moved to it before it sent it, so the
  // node's epoch may already be the view's; the last view this member took must be older. (The
  // coordinator's own member may take a dropped recovery's VIEW after the loss that dropped it.)
  if (view.epoch < node_.epoch() || (view_ && view.epoch <= view_->epoch)) return;
  if (phase_ != Phase::kIdle && phase_ != Phase::kViewed && phase_ != Phase::kRestored &&
      (phase_ != Phase::kInterrupted || !Quiet())) {
    // A restart whose loss we had not heard of yet, or work of the old view still in flight
    // (READs into our memory, WRITEs from it): the view waits for it to end.
    StopWorkInFlight(StrCat("epoch ", view.epoch, " began"));
    phase_ = Phase::kInterrupted;
    pending_view_ = view;
    return;
  }
  pending_view_.reset();
  read_status_.reset();
  partner_connect_ = false;
  scratch_ = AlignedBuffer();
  if (view.epoch > node_.epoch()) {
    const uint64_t old_epoch = node_.epoch();
    node_.view.epoch = view.epoch;
    peers_.AdoptEpoch(old_epoch);
  }
  view_ = view;
  restore_.reset();
  unclaimed_failure_.reset();
  {
    // A member that had not heard of the loss yet hears of it now: its next Checkpoint() is
    // refused ("recovery is needed") until it recovers with the others.
    std::lock_guard lock(shared_.mutex);
    for (NodeId rank : view.replaced) {
      const bool known = std::any_of(shared_.lost_nodes.begin(), shared_.lost_nodes.end(),
                                     [&](const auto& lost) { return lost.first == rank; });
      if (!known && rank != node_.rank()) {
        shared_.lost_nodes.emplace_back(rank, StrCat("replaced in epoch ", view.epoch));
      }
    }
    if (!shared_.lost_nodes.empty())
      shared_.failure_detected.store(true, std::memory_order_release);
  }
  phase_ = Phase::kViewed;
  FT_LOG(kInfo) << "node " << node_.rank() << ": in epoch " << view.epoch << " ("
                << view.replaced.size() << " rank(s) replaced), committed version " << view.version;

  // What this node hosts, checked in place: the slot of V and the other one (V - 1).
  recovery::ReportMessage report{view.epoch, node_.rank(), view.version, {}};
  const std::span<const std::byte> store = memory_.StoreById(round_.committed().store_id);
  for (const recovery::HostedCheck& check : view.checks) {
    uint8_t intact = 0;
    for (int slot = 0; slot < 2 && view.version > 0; ++slot) {
      const uint64_t expected = slot == 0 ? view.version : view.version - 1;
      if (expected == 0) continue;
      const uint64_t at = check.store_offset + (expected % 2) * check.slot_bytes;
      if (at >= store.size() || store.size() - at < check.slot_bytes) continue;
      Result<erasure::FragmentHeader> header =
          erasure::InspectHeader(store.subspan(at, check.slot_bytes));
      if (header.ok() && header->version == expected && header->owner == check.owner &&
          header->column == check.column && header->k == static_cast<uint32_t>(node_.options.k) &&
          header->m == static_cast<uint32_t>(node_.options.m)) {
        intact |= slot == 0 ? recovery::kNewestIntact : recovery::kOlderIntact;
      }
    }
    report.intact.push_back(intact);
  }
  channel_.Send(node_.coordinator(), std::move(report));
}

Nanos RecoveryMember::next_deadline() const {
  // Re-protection is a checkpoint round: the round's deadline bounds it.
  if (request_ == nullptr || phase_ == Phase::kReprotecting) return Nanos::max();
  return deadline_;
}

bool RecoveryMember::Step() {
  if (phase_ == Phase::kInterrupted) {
    if (!pending_view_ || !Quiet()) {
      if (request_ == nullptr || node_.Now() <= deadline_) return false;
    } else {
      OnView(*std::exchange(pending_view_, std::nullopt));
      return true;
    }
  }
  if (request_ == nullptr && phase_ != Phase::kReprotecting) return false;
  if (request_ != nullptr && node_.Now() > deadline_ && phase_ != Phase::kReprotecting) {
    Finish(Status::DeadlineExceeded(
        "recovery on node ", node_.rank(), " did not finish within ",
        std::chrono::duration_cast<std::chrono::milliseconds>(2 * node_.options.timeout).count(),
        " ms (twice the timeout)", phase_ == Phase::kIdle ? ": no recovery started" : ""));
    return true;
  }
  switch (phase_) {
    case Phase::kIdle:
    case Phase::kRestored:
    case Phase::kInterrupted:
      return false;
    case Phase::kViewed:
      if (!restore_ || request_ == nullptr) return false;
      BeginRestore();
      return true;
    case Phase::kStoring: {
      std::optional<Status> stored = StoreReady();
      if (!stored) return false;
      Restored(stored->ok() ? *read_status_ : *stored);
      return true;
    }
    case Phase::kConnecting: {
      if (!channel_.idle()) return false;  // loopback: our SENDs leave in our own steps
      std::vector<NodeId> partners = restore_->hosted_owners;
      for (const recovery::HolderAddress& holder : restore_->holders) {
        partners.push_back(holder.slot.holder);
      }
      Result<bool> connected = peers_.ConnectPartners(
          partners,
          recovery::EncodePartnerConnect(node_.rank(), node_.epoch(), memory_.store_keys()),
          std::max(Nanos(0), deadline_ - node_.Now()), tag_);
      partner_connect_ = connected.ok() && !*connected;
      if (!connected.ok()) {
        Restored(connected.status().WithContext(
            StrCat("node ", node_.rank(), " connecting to its partners for recovery")));
        return true;
      }
      if (!*connected) return false;
      FT_LOG(kDebug) << "node " << node_.rank() << ": partners connected after "
                     << SecondsBetween(restore_began_, node_.Now()) * 1e3 << " ms";
      StartRead();
      return true;
    }
    case Phase::kRestoring:
      if (!read_status_) {
        (void)StoreReady();  // installs it as soon as it comes
        return false;
      }
      if (read_status_->ok() && scratch_.size() > 0) {
        uint64_t offset = 0;
        for (const RegionRef& region : regions_) {
          CopyInPieces(region.ptr, scratch_.data() + offset, region.bytes, progress_);
          offset += region.bytes;
        }
      }
      image_restored_at_ = node_.Now();
      if (read_status_->ok() && storing_) {
        // RESTORED names our store, which the re-protection writes into: it must be there.
        phase_ = Phase::kStoring;
        return true;
      }
      Restored(read_status_->ok() ? store_failure_ : *read_status_);
      return true;
    case Phase::kReprotecting:
      if (!reprotect_->done) return false;
      if (!reprotect_->result.ok() && !AwaitLoss(reprotect_->result)) {
        Finish(reprotect_->result.WithContext(
            StrCat("node ", node_.rank(), " re-protecting version ", restore_->version)));
      }
      // OK: the COMMIT that completed the round ends the recovery too (OnControlMessage).
      return true;
  }
  return false;
}

void RecoveryMember::BeginRestore() {
  restore_began_ = node_.Now();
  image_restored_at_ = Nanos(0);
  report_.wait_seconds = SecondsBetween(called_, restore_began_);
  report_.version = restore_->version;
  report_.epoch = node_.epoch();
  report_.lost = view_->replaced;
  regions_.clear();
  uint64_t image = 0;
  {
    std::lock_guard lock(shared_.mutex);
    for (const auto& [id, region] : shared_.regions) {
      regions_.push_back({region.ptr, region.bytes, region.mr->lkey()});
      image += region.bytes;
    }
    layout_ = LayoutOf(shared_.regions);
  }
  report_.restored_bytes = image;
  if (restore_->version > 0 && image != restore_->image_bytes) {
    Restored(
        Status::FailedPrecondition("node ", node_.rank(), " protects ", image, " bytes; version ",
                                   restore_->version, " of its image has ", restore_->image_bytes,
                                   ": Protect regions of the committed sizes before Recover()"));
    return;
  }
  if (Status layout = CheckAssignedLayout(); !layout.ok()) {
    Restored(std::move(layout));
    return;
  }
  tag_ = (uint64_t{1} << 40) + node_.epoch();
  // A replacement's store is only written by the re-protection, after RESTORED: registering it
  // (zeroing hundreds of MiB, the longest step of a recovery on a fresh process) runs beside the
  // connects and the read instead of before them. A spare registers the memory it zeroed while
  // it waited (STORE_HINT, SharedState::spare_store).
  store_failure_ = Status();
  storing_ =
      replacement_ && restore_->store_bytes > 0 && memory_.store_bytes() < restore_->store_bytes;
  if (storing_) {
    std::future<Result<AlignedBuffer>> prepared;
    {
      std::lock_guard lock(shared_.mutex);
      prepared = std::move(shared_.spare_store);
    }
    if (Status started = memory_.StartReplaceStore(restore_->store_bytes, 0, std::move(prepared));
        !started.ok()) {
      storing_ = false;
      Restored(started);
      return;
    }
  }
  phase_ = Phase::kConnecting;
  for (const recovery::PeerEndpoint& endpoint : restore_->endpoints) {
    if (Status learned = node_.fabric->LearnEndpoint(endpoint.node, endpoint.bytes);
        !learned.ok()) {
      Restored(learned);
      return;
    }
  }
}

std::optional<Status> RecoveryMember::StoreReady() {
  if (!storing_) return Status();
  std::optional<Status> stored = memory_.PollReplaceStore();
  if (!stored) return std::nullopt;
  storing_ = false;
  if (!stored->ok()) {
    store_failure_ =
        stored->WithContext(StrCat("replacement node ", node_.rank(), " registering a store of ",
                                   restore_->store_bytes, " bytes"));
    return store_failure_;
  }
  report_.store_prepared = memory_.store_prepared();
  FT_LOG(kDebug) << "node " << node_.rank() << ": replacement store of " << memory_.store_bytes()
                 << " bytes ready after " << SecondsBetween(restore_began_, node_.Now()) * 1e3
                 << " ms";
  return Status();
}

// A replacement told its rank's committed layout must have protected regions of those sizes, in
// that order: the same total in other pieces would be filled without an error, scrambled.
Status RecoveryMember::CheckAssignedLayout() const {
  if (!replacement_ || restore_->version == 0) return Status();
  std::lock_guard lock(shared_.mutex);
  if (!shared_.layout_assigned) return Status();
  uint64_t assigned_bytes = 0;
  for (const ProtectedRegion& region : shared_.committed_layout) assigned_bytes += region.bytes;
  if (assigned_bytes != restore_->image_bytes) return Status();  // another version's image
  const auto same = [&] {
    if (layout_.size() != shared_.committed_layout.size()) return false;
    for (size_t i = 0; i < layout_.size(); ++i) {
      if (layout_[i].bytes != shared_.committed_layout[i].bytes) return false;
    }
    return true;
  };
  if (same()) return Status();
  std::string assigned, protected_now;
  for (const ProtectedRegion& region : shared_.committed_layout) {
    assigned += StrCat(assigned.empty() ? "" : ", ", region.bytes);
  }
  for (const recovery::LayoutRegion& region : layout_) {
    protected_now += StrCat(protected_now.empty() ? "" : ", ", region.bytes);
  }
  return Status::FailedPrecondition("node ", node_.rank(), " protects regions of ", protected_now,
                                    " bytes; rank ", node_.rank(), "'s committed layout has ",
                                    assigned, ": Protect the layout WaitForAssignment gave");
}

std::vector<int> RecoveryMember::ReplacedColumns() const {
  std::vector<int> columns;
  for (size_t c = 0; c < restore_->holders.size(); ++c) {
    if (IsReplaced(restore_->holders[c].slot.holder)) columns.push_back(static_cast<int>(c));
  }
  return columns;
}

void RecoveryMember::StartRead() {
  phase_ = Phase::kRestoring;
  read_status_.reset();
  scratch_ = AlignedBuffer();
  const uint64_t version = restore_->version;
  if (version == 0) {
    read_status_ = Status();
    return;
  }
  const EngineOptions& o = node_.options;
  Result<erasure::StripeGeometry> geometry =
      erasure::StripeGeometry::Create(restore_->image_bytes, o.cell_bytes, o.k, o.m);
  if (!geometry.ok()) {
    read_status_ = geometry.status();
    return;
  }
  restoring_ = CommittedVersion{version,
                                restore_->written_epoch,
                                *geometry,
                                restore_->holders,
                                restore_->slot_bytes,
                                replacement_ ? memory_.store_id() : round_.committed().store_id,
                                layout_};
  {
    std::lock_guard lock(shared_.mutex);
    if (!replacement_ && o.keep_local_copy && shared_.local_copy_version == version &&
        shared_.local_copy_bytes == restore_->image_bytes) {
      // Our own copy of v: no network at all. (The mutex guards the copy against the next
      // round's swap; none can start while the application is in Recover().)
      const std::byte* copy = shared_.local_copy.data();
      uint64_t offset = 0;
      for (const RegionRef& region : regions_) {
        std::memcpy(region.ptr, copy + offset, region.bytes);
        offset += region.bytes;
      }
      report_.from_local_copy = true;
      read_status_ = Status();
      return;
    }
  }
  std::span<std::byte> out;
  std::optional<uint32_t> out_lkey;
  if (regions_.size() == 1) {
    out = {regions_[0].ptr, regions_[0].bytes};
    out_lkey = regions_[0].lkey;  // registered: cells are READ straight into it
  } else {
    Result<AlignedBuffer> scratch = AlignedBuffer::Allocate(restore_->image_bytes);
    if (!scratch.ok()) {
      read_status_ = scratch.status();
      return;
    }
    scratch_ = std::move(scratch).value();
    out = {scratch_.data(), restore_->image_bytes};
  }
  const std::vector<int> skip = ReplacedColumns();
  reader_.Start(
      node_.rank(), *restoring_, out, skip,
      [this](Status status) { read_status_ = std::move(status); }, out_lkey);
}

void RecoveryMember::Restored(Status status) {
  // A replacement's wait for its store counts as re-protection (the store holds the columns
  // rewritten): restore_seconds is the image's.
  restored_at_ = image_restored_at_ > restore_began_ ? image_restored_at_ : node_.Now();
  report_.restore_seconds = SecondsBetween(restore_began_, restored_at_);
  recovery::RestoredMessage restored;
  restored.epoch = node_.epoch();
  restored.node = node_.rank();
  restored.version = restore_->version;
  restored.code = status.code();
  const recovery::StoreKeys keys = memory_.store_keys();
  restored.store_addr = keys.addr;
  restored.store_rkey = keys.rkey;
  channel_.Send(node_.coordinator(), restored);
  if (!status.ok()) {
    FT_LOG(kWarn) << "node " << node_.rank() << ": could not restore version " << restore_->version
                  << ": " << status;
    if (AwaitLoss(status)) return;
    Finish(std::move(status));
    return;
  }
  if (restoring_ && replacement_) restoring_->store_id = memory_.store_id();  // ready now
  if (restoring_) round_.AdoptRestored(*restoring_, restore_->holders, restore_->hosted_owners);
  phase_ = Phase::kRestored;
}

void RecoveryMember::Finish(Status status) {
  const Nanos now = node_.Now();
  if (status.ok()) {
    report_.reprotect_seconds = SecondsBetween(restored_at_, now);
    report_.reduced_redundancy_seconds = SecondsBetween(loss_learned_, now);
    loss_learned_ = Nanos(0);
    replacement_ = false;
  }
  report_.total_seconds = SecondsBetween(called_, now);
  phase_ = Phase::kIdle;
  pending_view_.reset();
  // The reader may still be READing into it (a deadline during the read): it goes with the next
  // read or view, once the reader is done.
  if (!reader_.active()) scratch_ = AlignedBuffer();
  if (reprotect_ && !status.ok() && round_.active()) {
    // The recovery ended under a re-protection (an ABORT, our removal): so does the round.
    round_.Cancel(status);
  }
  std::lock_guard lock(shared_.mutex);
  if (status.ok()) {
    shared_.lost_nodes.clear();
    shared_.spare.store(false, std::memory_order_release);
    shared_.failure_detected.store(!shared_.removed.ok(), std::memory_order_release);
    shared_.metrics.committed_version = restore_ ? restore_->version : 0;
    if (restore_ && shared_.local_copy_version != restore_->version) {
      shared_.local_copy_bytes = 0;  // not the restored version: the next commit refills it
      shared_.local_copy_version = 0;
    }
  }
  if (request_ == nullptr) {
    if (!status.ok()) unclaimed_failure_ = std::move(status);
    return;
  }
  {
    request_->result = std::move(status);
    request_->report = report_;
    request_->done = true;
    request_ = nullptr;
    shared_.recover_in_flight = false;
    shared_.cv.notify_all();
  }
}

void RecoveryMember::End(const Status& why) {
  if (!active()) return;
  Finish(why);
}

}  // namespace ft::internal
