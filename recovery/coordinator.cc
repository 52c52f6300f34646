#include "recovery/coordinator.h"

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "common/log.h"

namespace ft::recovery {

Result<std::unique_ptr<Coordinator>> Coordinator::Create(const Options& options) {
  if (options.world_size < 2) {
    return Status::InvalidArgument("world_size = ", options.world_size,
                                   ": a checkpoint needs at least 2 nodes");
  }
  if (options.k < 1 || options.m < 1) {
    return Status::InvalidArgument("k = ", options.k, ", m = ", options.m, ": both must be >= 1");
  }
  const int64_t width = int64_t{options.k} + options.m;  // int + int may overflow
  if (static_cast<uint64_t>(width) >= options.world_size) {
    return Status::InvalidArgument("k + m = ", width, " needs at least ", width + 1, " nodes; ",
                                   options.world_size,
                                   " nodes allow k + m <= ", options.world_size - 1);
  }
  if (width > kMaxStripeWidth) {
    return Status::InvalidArgument("k + m = ", width, " exceeds the limit of ", kMaxStripeWidth,
                                   " fragments per owner");
  }
  return std::make_unique<Coordinator>(PrivateTag{}, options);
}

Coordinator::Coordinator(PrivateTag, const Options& options)
    : options_(options),
      prepares_(options.world_size),
      layouts_(options.world_size),
      prepared_(options.world_size, 0),
      grow_bytes_(options.world_size, 0),
      done_(options.world_size, 0),
      lost_(options.world_size, 0),
      early_prepares_(options.world_size) {}

void Coordinator::OnPrepare(const PrepareMessage& message, Outbox* outbox) {
  if (message.epoch == options_.epoch && message.node < options_.world_size &&
      phase_ == Phase::kCollectingDone && done_[message.node] && !early_prepares_[message.node]) {
    // This node reported DONE, gave up waiting for the COMMIT (its deadline) and tries again:
    // its PREPARE is for the round after this one. Kept, and taken when this round ends; dropped,
    // the next round would wait for it until every node's deadline.
    early_prepares_[message.node] = message;
    return;
  }
  if (message.epoch != options_.epoch || message.node >= options_.world_size ||
      phase_ != Phase::kCollectingPrepare || prepared_[message.node]) {
    ++ignored_messages_;
    return;
  }
  if (lost_count_ > 0) {
    // The round cannot complete without the lost node: tell this node at once, not at its deadline.
    outbox->emplace_back(message.node,
                         MakeAbort(first_lost_, StatusCode::kUnavailable, lost_reason_));
    return;
  }
  if (std::optional<LayoutRequestMessage> pull = layouts_.PullUnlessKnown(message)) {
    outbox->emplace_back(message.node, *pull);
    return;
  }
  AcceptPrepare(message, outbox);
}

void Coordinator::OnLayout(const LayoutMessage& message, Outbox* outbox) {
  if (message.epoch != options_.epoch || phase_ != Phase::kCollectingPrepare) {
    ++ignored_messages_;
    return;
  }
  LayoutBook::Chunk chunk = layouts_.OnLayout(message);
  if (!chunk.accepted) {
    ++ignored_messages_;
    return;
  }
  if (chunk.next) outbox->emplace_back(message.node, *chunk.next);
  if (chunk.complete) AcceptPrepare(*chunk.complete, outbox);
}

void Coordinator::AcceptPrepare(const PrepareMessage& message, Outbox* outbox) {
  prepared_[message.node] = 1;
  prepares_[message.node] = message;
  if (++prepared_count_ == options_.world_size) StartRound(outbox);
}

namespace {
// Distinct failure domains among an owner and its holders, for each owner.
std::vector<size_t> DomainsPerOwner(const Placement& placement,
                                    const std::vector<PrepareMessage>& prepares) {
  std::vector<size_t> counts(placement.nodes());
  std::vector<uint32_t> domains;
  for (NodeId owner = 0; owner < placement.nodes(); ++owner) {
    domains.assign(1, prepares[owner].domain);
    for (const FragmentSlot& slot : placement.HoldersOf(owner)) {
      domains.push_back(prepares[slot.holder].domain);
    }
    std::sort(domains.begin(), domains.end());
    counts[owner] =
        static_cast<size_t>(std::unique(domains.begin(), domains.end()) - domains.begin());
  }
  return counts;
}
}  // namespace

bool Coordinator::SpreadKept(const Placement& placement, const std::vector<PrepareMessage>& before,
                             const std::vector<PrepareMessage>& now) {
  const std::vector<size_t> old_counts = DomainsPerOwner(placement, before);
  const std::vector<size_t> new_counts = DomainsPerOwner(placement, now);
  for (size_t owner = 0; owner < old_counts.size(); ++owner) {
    if (new_counts[owner] < old_counts[owner]) return false;
  }
  return true;
}

void Coordinator::StartRound(Outbox* outbox) {
  const uint64_t version = committed_version_ + 1;
  const uint32_t n = options_.world_size;

  // Each owner keeps its extent while its image still fits (the extents have slack): a slightly
  // grown image needs no new placement.
  // A placement is recomputed when an extent, a capacity or how a store is sized changed, or a
  // failure domain did and the spread got worse; new store keys alone (a replacement's store)
  // only send it again. Recomputing after a recovery would move every fragment to new extents
  // beside the committed ones: every store would grow.
  std::vector<uint64_t> extents(n);
  bool changed = !placement_.has_value();
  bool resend = std::exchange(resend_placement_, false);
  bool domains_changed = false;
  for (NodeId node = 0; node < n; ++node) {
    const PrepareMessage& p = prepares_[node];
    const uint64_t placed = placement_ ? placement_->footprint_bytes(node) : 0;
    const bool keep =
        placement_.has_value() &&
        (p.footprint_bytes == 0 ? placed == 0 : ExtentStillFits(placed, p.footprint_bytes));
    extents[node] = keep ? placed : ExtentBytesFor(p.footprint_bytes);
    if (changed) continue;
    const PrepareMessage& old_prepare = placed_prepares_[node];
    changed = extents[node] != placed || old_prepare.capacity_bytes != p.capacity_bytes ||
              old_prepare.store_sized_by_coordinator != p.store_sized_by_coordinator;
    domains_changed = domains_changed || old_prepare.domain != p.domain;
    resend =
        resend || old_prepare.store_addr != p.store_addr || old_prepare.store_rkey != p.store_rkey;
  }
  if (!changed && domains_changed) changed = !SpreadKept(*placement_, placed_prepares_, prepares_);
  if (!changed && resend) {
    placed_prepares_ = prepares_;  // the same slots, at the stores' new addresses
  }
  if (changed) {
    Result<PlacementPlan> plan = PlanPlacement(extents);
    if (!plan.ok()) {
      Abort(UINT32_MAX, plan.status().code(), std::string(plan.status().message()), outbox);
      return;
    }
    if (!plan->grows.empty() && grow_cycles_ >= kMaxGrowCycles) {
      Abort(UINT32_MAX, StatusCode::kInternal,
            StrCat("the placement still needed larger stores after ", grow_cycles_,
                   " GROWs of version ", version),
            outbox);
      return;
    }
    if (!plan->grows.empty()) {
      // The round starts when the grown nodes PREPARE again with their new stores; the others
      // stay prepared.
      ++grow_cycles_;
      for (const auto& [node, bytes] : plan->grows) {
        prepared_[node] = 0;
        --prepared_count_;
        grow_bytes_[node] = bytes;
        outbox->emplace_back(node, GrowMessage{options_.epoch, bytes});
      }
      ++grow_requests_;
      return;
    }
    Placement& placement = *plan->placement;
    // A GO names the owners a node hosts; it must fit one control message.
    for (NodeId node = 0; node < n; ++node) {
      size_t owners = 0;
      NodeId last = UINT32_MAX;
      for (const HostedFragment& hosted : placement.HostedBy(node)) {
        if (hosted.owner != last) ++owners;
        last = hosted.owner;
      }
      if (owners > kMaxHostedOwners) {
        Abort(node, StatusCode::kResourceExhausted,
              StrCat("the placement puts fragments of ", owners, " owners on node ", node,
                     "; at most ", kMaxHostedOwners,
                     " fit one control message: give the other nodes more store capacity"),
              outbox);
        return;
      }
    }
    placement_ = std::move(placement);
    placed_prepares_ = prepares_;
    placement_id_ = ++last_placement_id_;
  }

  std::fill(prepared_.begin(), prepared_.end(), 0);
  prepared_count_ = 0;
  std::fill(grow_bytes_.begin(), grow_bytes_.end(), 0);
  grow_cycles_ = 0;
  version_in_flight_ = version;
  phase_ = Phase::kCollectingDone;
  std::fill(done_.begin(), done_.end(), 0);
  done_count_ = 0;
  for (NodeId node = 0; node < n; ++node) {
    GoMessage go;
    go.epoch = options_.epoch;
    go.version = version;
    go.placement_id = placement_id_;
    go.has_placement = changed || resend;
    if (go.has_placement) {
      go.slot_bytes = placement_->footprint_bytes(node) / 2;
      for (const FragmentSlot& slot : placement_->HoldersOf(node)) {
        go.holders.push_back(HolderAddress{slot, prepares_[slot.holder].store_addr,
                                           prepares_[slot.holder].store_rkey});
      }
      for (const HostedFragment& hosted : placement_->HostedBy(node)) {
        if (go.hosted_owners.empty() || go.hosted_owners.back() != hosted.owner) {
          go.hosted_owners.push_back(hosted.owner);
        }
      }
    }
    outbox->emplace_back(node, std::move(go));
  }
}

void Coordinator::OnDone(const DoneMessage& message, Outbox* outbox) {
  if (message.version == kWithdrawVersion && message.code != StatusCode::kOk &&
      message.epoch == options_.epoch && message.node < options_.world_size) {
    OnWithdraw(message, outbox);
    return;
  }
  if (message.epoch != options_.epoch || message.node >= options_.world_size ||
      phase_ != Phase::kCollectingDone || message.version != version_in_flight_ ||
      done_[message.node]) {
    ++ignored_messages_;
    return;
  }
  if (message.code != StatusCode::kOk) {
    std::string reason = StrCat("node ", message.node, " could not place its fragments of version ",
                                message.version);
    // Name the peer as a node: with separate control and data links, a node's failed WRITEs to a
    // dead peer may reach the coordinator before the loss of that peer's control link does.
    if (message.failed_peer != UINT32_MAX) {
      reason += StrCat(" (its work with node ", message.failed_peer, " failed)");
    }
    Abort(message.failed_peer != UINT32_MAX ? message.failed_peer : message.node, message.code,
          std::move(reason), outbox);
    return;
  }
  done_[message.node] = 1;
  if (++done_count_ < options_.world_size) return;
  // The version before keeps its fragments in the other slots when both used one placement.
  older_in_place_ = committed_version_ > 0 && committed_placement_id_ == placement_id_;
  older_epoch_ = committed_epoch_;
  older_image_bytes_.clear();
  for (const PrepareMessage& older : committed_prepares_) {
    older_image_bytes_.push_back(older.image_bytes);
  }
  committed_version_ = version_in_flight_;
  committed_epoch_ = options_.epoch;
  committed_placement_ = placement_;
  // This round's PREPAREs, not the placement's inputs: a kept placement has the same stores,
  // domains and capacities, but the images may have changed size within their extents.
  committed_prepares_ = prepares_;
  committed_placement_id_ = placement_id_;
  layouts_.Commit();
  version_in_flight_ = 0;  // an ABORT before the next GO names committed + 1, not this version
  phase_ = Phase::kCollectingPrepare;
  for (NodeId node = 0; node < options_.world_size; ++node) {
    outbox->emplace_back(node, CommitMessage{options_.epoch, committed_version_});
  }
  TakeEarlyPrepares(outbox);
}

void Coordinator::TakeEarlyPrepares(Outbox* outbox) {
  for (NodeId node = 0; node < options_.world_size; ++node) {
    if (std::optional<PrepareMessage> early = std::exchange(early_prepares_[node], std::nullopt)) {
      OnPrepare(*early, outbox);
    }
  }
}

void Coordinator::OnNodeLost(NodeId node, std::string_view reason, Outbox* outbox) {
  if (node >= options_.world_size || lost_[node]) return;
  lost_[node] = 1;
  if (lost_count_++ == 0) {
    first_lost_ = node;
    lost_reason_ = StrCat("node ", node, " was lost: ", reason);
  }
  if (phase_ == Phase::kCollectingDone) {
    Abort(node, StatusCode::kUnavailable, lost_reason_, outbox);
    return;
  }
  // Nodes that already prepared wait for a GO that cannot come: release them now (a node that is
  // growing its store hears it when it PREPAREs again).
  for (NodeId prepared = 0; prepared < options_.world_size; ++prepared) {
    if (prepared_[prepared] && !lost_[prepared]) {
      outbox->emplace_back(prepared, MakeAbort(node, StatusCode::kUnavailable, lost_reason_));
    }
  }
  for (NodeId pulled : layouts_.Pulling()) {
    if (!lost_[pulled]) {
      outbox->emplace_back(pulled, MakeAbort(node, StatusCode::kUnavailable, lost_reason_));
    }
  }
  layouts_.CancelAll();
  std::fill(prepared_.begin(), prepared_.end(), 0);
  prepared_count_ = 0;
  std::fill(grow_bytes_.begin(), grow_bytes_.end(), 0);
  grow_cycles_ = 0;
}

// The placement inputs as the stores are now. With `reserve`, each holder's committed extents are
// kept out of reach while they still live in the store the holder offers now (a holder whose
// store was replaced by a GROW keeps the old one registered until a later version commits).
std::vector<NodeSpec> Coordinator::SpecsOf(const std::vector<uint64_t>& extents,
                                           bool reserve) const {
  const uint32_t n = options_.world_size;
  std::vector<NodeSpec> specs(n);
  for (NodeId node = 0; node < n; ++node) {
    specs[node] = NodeSpec{prepares_[node].domain, prepares_[node].capacity_bytes, extents[node]};
  }
  if (!reserve || !committed_placement_.has_value()) return specs;
  for (NodeId holder = 0; holder < n && holder < committed_placement_->nodes(); ++holder) {
    const PrepareMessage& committed = committed_prepares_[holder];
    if (committed.store_addr != prepares_[holder].store_addr ||
        committed.store_rkey != prepares_[holder].store_rkey) {
      continue;  // the committed version lives in a store this node no longer offers
    }
    uint64_t begin = UINT64_MAX, end = 0;
    for (const HostedFragment& hosted : committed_placement_->HostedBy(holder)) {
      begin = std::min(begin, hosted.store_offset);
      end =
          std::max(end, hosted.store_offset + committed_placement_->footprint_bytes(hosted.owner));
    }
    if (end > 0) {
      specs[holder].reserved_begin = begin;
      specs[holder].reserved_end = end;
    }
  }
  return specs;
}

// The stores the coordinator sizes that are too small for the placement the world wants: that
// placement is computed with those stores unlimited and empty (a grown store is a new one), and
// a node is asked to grow when its extents there do not fit its store as it is (around its
// committed extents). Stores of fixed capacity stay as they are.
//
// After the GROWs, the placement as the stores are must make the same choices. It does when
// every node's room is at least what it receives, except for one input: which nodes can host at
// all (they share a domain's fair share). So a sized node that receives nothing keeps its real
// store in the computation, and it is repeated until no more such nodes appear.
Result<std::vector<std::pair<NodeId, uint64_t>>> Coordinator::GrowsFor(
    const std::vector<NodeSpec>& specs) const {
  // Large enough for any placement, small enough that sums of it cannot overflow.
  constexpr uint64_t kUnlimited = uint64_t{1} << 60;
  const size_t n = specs.size();
  std::vector<uint8_t> unlimited(n, 0);
  for (NodeId node = 0; node < n; ++node)
    unlimited[node] = prepares_[node].store_sized_by_coordinator;
  std::vector<std::pair<NodeId, uint64_t>> grows;
  for (size_t attempt = 0; attempt <= n; ++attempt) {
    std::vector<NodeSpec> wanted_specs = specs;
    for (NodeId node = 0; node < n; ++node) {
      if (!unlimited[node]) continue;
      wanted_specs[node].capacity_bytes = kUnlimited;
      wanted_specs[node].reserved_begin = wanted_specs[node].reserved_end = 0;
    }
    FT_ASSIGN_OR_RETURN(Placement wanted, ComputePlacement(wanted_specs, options_.k, options_.m));
    bool pinned = false;
    for (NodeId node = 0; node < n; ++node) {
      if (unlimited[node] && wanted.HostedBy(node).empty()) {
        unlimited[node] = 0;
        pinned = true;
      }
    }
    if (pinned) continue;
    for (NodeId node = 0; node < n; ++node) {
      if (!unlimited[node]) continue;
      const uint64_t need = wanted.used_bytes(node) - FreeSpanOf(wanted_specs[node]).base;
      if (need > FreeSpanOf(specs[node]).room) grows.emplace_back(node, need);
    }
    break;
  }
  return grows;
}

// A changed placement must not WRITE where the committed version lives: if the new round aborts,
// that version is all there is. In order:
// 1. the placement as the stores are, around each holder's committed extents;
// 2. else GROW the stores the coordinator sizes (into new stores: the committed version stays
//    in the old ones), after which 1. succeeds;
// 3. else (stores of fixed capacity lack the room around the committed version) the placement
//    over the committed extents, as the stores are or after a GROW, counted in
//    unprotected_placements(): the committed version may be damaged on some holders if that
//    round aborts (detected at read-back, never restored silently).
Result<Coordinator::PlacementPlan> Coordinator::PlanPlacement(
    const std::vector<uint64_t>& extents) {
  const std::vector<NodeSpec> reserved = SpecsOf(extents, true);
  Result<Placement> placed = ComputePlacement(reserved, options_.k, options_.m);
  if (placed.ok()) return PlacementPlan{std::move(placed).value(), {}};
  if (auto grows = GrowsFor(reserved); grows.ok() && !grows->empty()) {
    return PlacementPlan{std::nullopt, std::move(grows).value()};
  }
  const std::vector<NodeSpec> unreserved = SpecsOf(extents, false);
  placed = ComputePlacement(unreserved, options_.k, options_.m);
  if (!placed.ok()) {
    auto grows = GrowsFor(unreserved);
    if (!grows.ok() || grows->empty()) return placed.status();
    return PlacementPlan{std::nullopt, std::move(grows).value()};
  }
  if (committed_placement_.has_value()) {
    ++unprotected_placements_;
    FT_LOG(kWarn) << "coordinator: the stores lack room to place version " << committed_version_ + 1
                  << " around committed version " << committed_version_
                  << "; placing over it: if this round aborts, version " << committed_version_
                  << " may be damaged on some holders (give the nodes of fixed store capacity "
                     "more, or let the coordinator size their stores)";
  }
  return PlacementPlan{std::move(placed).value(), {}};
}

// A node gave up waiting for its GO (its deadline passed): its PREPARE no longer stands. Before
// the round started it is taken back, so a later round waits for the node's next PREPARE instead
// of starting without it; once the round started (the GO is on its way), the round aborts.
void Coordinator::OnWithdraw(const DoneMessage& message, Outbox* outbox) {
  if (early_prepares_[message.node]) {
    // It takes back the PREPARE it sent for the round after this one: this round is not its
    // business (it reported DONE in it).
    early_prepares_[message.node].reset();
    return;
  }
  if (phase_ == Phase::kCollectingPrepare && grow_bytes_[message.node] > 0) {
    // It could not grow its store (or gave up meanwhile): the round cannot start, and the nodes
    // that prepared would wait for it until their deadline.
    Abort(message.node, message.code,
          StrCat("node ", message.node, " could not register the store of ",
                 grow_bytes_[message.node], " bytes the placement needs (",
                 StatusCodeName(message.code), ")"),
          outbox);
    return;
  }
  if (phase_ == Phase::kCollectingPrepare) {
    layouts_.Cancel(message.node);
    if (prepared_[message.node]) {
      prepared_[message.node] = 0;
      --prepared_count_;
    }
    return;
  }
  Abort(message.node, message.code,
        StrCat("node ", message.node, " gave up waiting for the round to start (",
               StatusCodeName(message.code), ")"),
        outbox);
}

void Coordinator::AdoptRecovery(uint64_t version, uint64_t written_epoch,
                                std::span<const std::pair<NodeId, StoreKeys>> new_stores) {
  if (version != committed_version_) {
    // Rolled back to the version before: the newest one is not restorable, and its slots are
    // the next round's to overwrite. The images and layouts are that version's again.
    older_in_place_ = false;
    for (NodeId node = 0; node < committed_prepares_.size() && node < older_image_bytes_.size();
         ++node) {
      committed_prepares_[node].image_bytes = older_image_bytes_[node];
    }
    layouts_.RollBack();
  }
  committed_version_ = version;
  committed_epoch_ = written_epoch;
  for (const auto& [node, keys] : new_stores) {
    if (node >= committed_prepares_.size()) continue;
    committed_prepares_[node].store_addr = keys.addr;
    committed_prepares_[node].store_rkey = keys.rkey;
  }
}

Status Coordinator::InstallView(const View& view, Outbox* outbox) {
  FT_RETURN_IF_ERROR(ValidateView(view));
  if (view.epoch <= options_.epoch) {
    return Status::FailedPrecondition("view of epoch ", view.epoch,
                                      " is not newer than the coordinator's epoch ",
                                      options_.epoch);
  }
  if (view.size() != options_.world_size) {
    return Status::InvalidArgument("view of epoch ", view.epoch, " has ", view.size(),
                                   " members; the world has ", options_.world_size);
  }
  // Whoever prepared or is in a round hears of it in the epoch it knows; a node whose PREPARE
  // for the next round came early hears twice: the first ABORT ends the round it gave up on, the
  // second the one it waits to start.
  const std::string reason = StrCat("a new view was installed (", view.Describe(), ")");
  for (NodeId node = 0; node < options_.world_size; ++node) {
    const bool waits = prepared_[node] || layouts_.pulling(node);
    if (!lost_[node] && (phase_ == Phase::kCollectingDone || waits)) {
      outbox->emplace_back(node, MakeAbort(UINT32_MAX, StatusCode::kAborted, reason));
    }
    if (!lost_[node] && early_prepares_[node]) {
      outbox->emplace_back(node, MakeAbort(UINT32_MAX, StatusCode::kAborted, reason));
    }
  }
  options_.epoch = view.epoch;
  phase_ = Phase::kCollectingPrepare;
  version_in_flight_ = 0;
  std::fill(prepared_.begin(), prepared_.end(), 0);
  prepared_count_ = 0;
  std::fill(grow_bytes_.begin(), grow_bytes_.end(), 0);
  grow_cycles_ = 0;
  std::fill(done_.begin(), done_.end(), 0);
  done_count_ = 0;
  std::fill(lost_.begin(), lost_.end(), 0);
  lost_count_ = 0;
  first_lost_ = UINT32_MAX;
  lost_reason_.clear();
  std::fill(early_prepares_.begin(), early_prepares_.end(), std::nullopt);  // of the old epoch
  layouts_.CancelAll();
  // The committed placement stays: the new view has the same ranks, and a replacement takes its
  // rank's slots (in a store of its own, whose keys its PREPARE brings). The next GO carries the
  // placement again, which every member then holds with the new keys.
  placement_ = committed_placement_;
  placed_prepares_ = committed_prepares_;
  placement_id_ = committed_placement_id_;
  resend_placement_ = placement_.has_value();
  return Status();
}

CoordinatorState Coordinator::state() const {
  CoordinatorState state;
  state.epoch = options_.epoch;
  state.committed_version = committed_version_;
  state.committed_epoch = committed_epoch_;
  state.placement_id = committed_placement_id_;
  if (committed_version_ > 0) {
    state.prepares = committed_prepares_;
    state.layouts = layouts_.committed_layouts();
  }
  return state;
}

AbortMessage Coordinator::MakeAbort(NodeId failed_node, StatusCode code,
                                    const std::string& reason) const {
  AbortMessage abort;
  abort.epoch = options_.epoch;
  abort.version = version_in_flight_ != 0 ? version_in_flight_ : committed_version_ + 1;
  abort.failed_node = failed_node;
  abort.code = code;
  abort.reason = reason;
  return abort;
}

void Coordinator::Abort(NodeId failed_node, StatusCode code, std::string reason, Outbox* outbox) {
  phase_ = Phase::kCollectingPrepare;
  layouts_.CancelAll();  // every node hears the ABORT below
  std::fill(prepared_.begin(), prepared_.end(), 0);
  prepared_count_ = 0;
  std::fill(grow_bytes_.begin(), grow_bytes_.end(), 0);
  grow_cycles_ = 0;
  for (NodeId node = 0; node < options_.world_size; ++node) {
    if (!lost_[node]) outbox->emplace_back(node, MakeAbort(failed_node, code, reason));
  }
  version_in_flight_ = 0;
  // After the ABORT, on the same link: the node takes that ABORT as the end of the round it gave
  // up on, and this PREPARE opens the next one.
  TakeEarlyPrepares(outbox);
}

}  // namespace ft::recovery
