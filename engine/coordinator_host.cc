// The coordinator host (engine/coordinator_host.h).
#include "engine/coordinator_host.h"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <string>

#include "common/log.h"

namespace ft::internal {

Result<std::unique_ptr<CoordinatorHost>> CoordinatorHost::Create(NodeContext& node,
                                                                 ControlChannel& channel) {
  FT_ASSIGN_OR_RETURN(auto coordinator,
                      recovery::Coordinator::Create(
                          {node.world.size, node.options.k, node.options.m, node.epoch()}));
  return std::make_unique<CoordinatorHost>(node, channel, std::move(coordinator));
}

CoordinatorHost::CoordinatorHost(NodeContext& node, ControlChannel& channel,
                                 std::unique_ptr<recovery::Coordinator> coordinator)
    : node_(node),
      channel_(channel),
      coordinator_(std::move(coordinator)),
      endpoints_(node.world.size),
      announced_lost_(node.world.size, 0) {
  const std::vector<std::byte> own = node.fabric->endpoint();
  endpoints_[node.rank()] = own;
}

void CoordinatorHost::SetEndpoint(NodeId node, std::span<const std::byte> endpoint) {
  if (node < endpoints_.size()) endpoints_[node].assign(endpoint.begin(), endpoint.end());
}

void CoordinatorHost::OnMessage(const recovery::Message& message) {
  recovery::Coordinator::Outbox outbox;
  if (const auto* prepare = std::get_if<recovery::PrepareMessage>(&message)) {
    coordinator_->OnPrepare(*prepare, &outbox);
  } else if (const auto* done = std::get_if<recovery::DoneMessage>(&message)) {
    if (recovery_ && done->epoch == recovery_->epoch()) {
      recovery_->OnDone(*done, &outbox);
    } else {
      coordinator_->OnDone(*done, &outbox);
    }
  } else if (const auto* report = std::get_if<recovery::ReportMessage>(&message)) {
    if (recovery_) recovery_->OnReport(*report, &outbox);
  } else if (const auto* restored = std::get_if<recovery::RestoredMessage>(&message)) {
    if (recovery_) recovery_->OnRestored(*restored, &outbox);
  } else if (const auto* layout = std::get_if<recovery::LayoutMessage>(&message)) {
    coordinator_->OnLayout(*layout, &outbox);
  }
  if (coordinator_->committed_version() != hinted_version_) HintSpares(&outbox);
  SendAll(outbox);
  AfterRecoveryMessage();
}

void CoordinatorHost::HintSpares(recovery::Coordinator::Outbox* outbox) {
  hinted_version_ = coordinator_->committed_version();
  const recovery::Placement* placement = coordinator_->committed_placement();
  if (spares_.empty() || placement == nullptr) return;
  const uint64_t bytes =
      recovery::LargestReplacementStoreBytes(coordinator_->committed_prepares(), *placement);
  for (const recovery::SpareCandidate& spare : spares_) {
    SpareHint& hint = spare_hints_[spare.id];
    // A spare keeps one receive for its ASSIGN: it hears at most kMaxStoreHints of these.
    if (bytes <= hint.bytes || hint.sent >= kMaxStoreHints) continue;
    hint = {bytes, hint.sent + 1};
    outbox->emplace_back(spare.id, recovery::StoreHintMessage{node_.epoch(), bytes});
  }
}

std::vector<NodeId> CoordinatorHost::UnconnectedSpares() const {
  std::vector<NodeId> out;
  for (NodeId spare = node_.world.size; spare < node_.world.size + node_.world.spares; ++spare) {
    const bool known =
        std::any_of(spares_.begin(), spares_.end(),
                    [&](const recovery::SpareCandidate& s) { return s.id == spare; }) ||
        std::find(spares_gone_.begin(), spares_gone_.end(), spare) != spares_gone_.end();
    if (!known) out.push_back(spare);
  }
  return out;
}

std::vector<NodeId> CoordinatorHost::ControlPeersToDial() const {
  std::vector<NodeId> awaiting = AwaitingReplacement();
  return awaiting.empty() ? UnconnectedSpares() : awaiting;
}

bool CoordinatorHost::SpareStarting() const {
  const std::vector<NodeId> awaiting = AwaitingReplacement();
  return std::any_of(awaiting.begin(), awaiting.end(), [&](NodeId rank) {
    return std::find(assigned_ranks_.begin(), assigned_ranks_.end(), rank) != assigned_ranks_.end();
  });
}

void CoordinatorHost::OnSpareConnected(NodeId spare, uint32_t priority, uint32_t domain) {
  spares_.push_back({spare, priority, domain});
  FT_LOG(kInfo) << "coordinator: spare " << spare << " is ready (domain " << domain << ", priority "
                << (priority == recovery::kLaunchOrderPriority ? std::string("unset")
                                                               : StrCat(priority))
                << ")";
  recovery::Coordinator::Outbox outbox;
  AssignSpares(&outbox);  // a loss may be waiting for it
  HintSpares(&outbox);    // or it waits: with the store it would need
  SendAll(outbox);
}

void CoordinatorHost::OnSpareLost(NodeId spare) {
  std::erase_if(spares_, [&](const recovery::SpareCandidate& s) { return s.id == spare; });
  if (std::find(spares_gone_.begin(), spares_gone_.end(), spare) == spares_gone_.end()) {
    spares_gone_.push_back(spare);
  }
}

void CoordinatorHost::AssignSpares(recovery::Coordinator::Outbox* outbox) {
  std::vector<uint32_t> domains;  // by node, as the committed placement saw them
  for (const recovery::PrepareMessage& prepare : coordinator_->committed_prepares()) {
    domains.push_back(prepare.domain);
  }
  for (NodeId rank : AwaitingReplacement()) {
    if (spares_.empty()) return;
    if (std::find(assigned_ranks_.begin(), assigned_ranks_.end(), rank) != assigned_ranks_.end()) {
      continue;
    }
    const std::optional<recovery::SpareChoice> choice =
        recovery::ChooseSpare(spares_, rank, coordinator_->committed_placement(), domains);
    const recovery::SpareCandidate chosen = spares_[choice->index];
    const NodeId spare = chosen.id;
    spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(choice->index));
    spares_gone_.push_back(spare);
    assigned_ranks_.push_back(rank);
    FT_LOG(kInfo) << "coordinator: rank " << rank << " goes to " << choice->Describe(chosen);
    outbox->emplace_back(spare, recovery::AssignMessage{node_.epoch() + 1, rank});
  }
}

std::vector<NodeId> CoordinatorHost::AwaitingReplacement() const {
  std::vector<NodeId> awaiting;
  if (recovery_) return awaiting;
  for (NodeId rank : lost_) {
    if (std::find(replaced_.begin(), replaced_.end(), rank) == replaced_.end()) {
      awaiting.push_back(rank);
    }
  }
  return awaiting;
}

void CoordinatorHost::OnReplacementConnected(NodeId rank) {
  if (std::find(replaced_.begin(), replaced_.end(), rank) == replaced_.end()) {
    replaced_.push_back(rank);
  }
  announced_lost_[rank] = 0;  // the new process may be lost too
  FT_LOG(kInfo) << "coordinator: a replacement for rank " << rank << " connected";
  // What it must Protect before Recover(): its rank's committed layout, in chunks that its
  // posted receives hold (kMaxLayoutRegions bounds their number).
  const recovery::RegionLayout& layout = coordinator_->committed_layout(rank);
  uint32_t first = 0;
  do {
    recovery::LayoutMessage chunk =
        recovery::LayoutChunk(node_.epoch() + 1, rank, layout.digest, layout.regions, first,
                              recovery::kLayoutRegionsDownstream);
    first += static_cast<uint32_t>(chunk.regions.size());
    channel_.Send(rank, std::move(chunk));
  } while (first < layout.regions.size());
}

bool CoordinatorHost::ReadyToRecover() const {
  return !recovery_ && !lost_.empty() && AwaitingReplacement().empty();
}

void CoordinatorHost::StartRecovery() {
  recovery::Coordinator::Outbox outbox;
  recovery::View view = node_.view;  // the worker moved it to the new epoch already
  if (Status installed = coordinator_->InstallView(view, &outbox); !installed.ok()) {
    FT_LOG(kError) << "coordinator: cannot install " << view.Describe() << ": " << installed;
    return;
  }
  recovery::RecoveryCoordinator::Input input;
  input.k = node_.options.k;
  input.m = node_.options.m;
  input.epoch = view.epoch;
  input.replaced = lost_;
  input.version = coordinator_->committed_version();
  input.written_epoch = coordinator_->committed_epoch();
  input.older_in_place = coordinator_->older_in_place();
  input.older_written_epoch = coordinator_->older_epoch();
  input.older_image_bytes = coordinator_->older_image_bytes();
  if (const recovery::Placement* placement = coordinator_->committed_placement()) {
    input.placement = *placement;
  }
  input.prepares = coordinator_->committed_prepares();
  if (input.prepares.size() != node_.world.size) input.prepares.resize(node_.world.size);
  auto started = recovery::RecoveryCoordinator::Start(std::move(input), &outbox);
  if (!started.ok()) {
    FT_LOG(kError) << "coordinator: recovery cannot start: " << started.status();
    for (NodeId member = 0; member < node_.world.size; ++member) {
      recovery::AbortMessage abort{view.epoch, recovery::kRecoveryVersion, UINT32_MAX,
                                   started.status().code(),
                                   std::string(started.status().message())};
      outbox.emplace_back(member, std::move(abort));
    }
    lost_.clear();
    replaced_.clear();
    assigned_ranks_.clear();
    restarts_ = 0;
    SendAll(outbox);
    return;
  }
  recovery_ = std::move(started).value();
  recovery_started_at_ = node_.Now();
  FT_LOG(kInfo) << "coordinator: recovery of " << lost_.size() << " rank(s) in epoch " << view.epoch
                << ", committed version " << coordinator_->committed_version()
                << (restarts_ > 0 ? StrCat(" (restarted ", restarts_, " time(s) by a loss)") : "");
  SendAll(outbox);
  AfterRecoveryMessage();
}

Nanos CoordinatorHost::next_deadline() const {
  if (recovery_) return recovery_started_at_ + 2 * node_.options.timeout;
  if (!lost_.empty()) return first_loss_at_ + node_.options.timeout;
  return Nanos::max();
}

void CoordinatorHost::CheckRecoveryDeadlines(Nanos now) {
  if (recovery_) {
    if (now - recovery_started_at_ > 2 * node_.options.timeout) {
      recovery::Coordinator::Outbox outbox;
      recovery_->OnDeadline(&outbox);
      SendAll(outbox);
      AfterRecoveryMessage();
    }
    return;
  }
  if (lost_.empty() || now - first_loss_at_ <= node_.options.timeout) return;
  const std::vector<NodeId> awaiting = AwaitingReplacement();
  if (awaiting.empty()) return;
  std::string ranks;
  for (NodeId rank : awaiting) ranks += StrCat(ranks.empty() ? "" : ", ", rank);
  const std::string reason = StrCat(
      "rank", awaiting.size() > 1 ? "s " : " ", ranks, " got no replacement within ",
      std::chrono::duration_cast<std::chrono::milliseconds>(node_.options.timeout).count(),
      " ms of the loss: start a spare (ftrun --spares, --respawn) or a new process of the rank");
  FT_LOG(kWarn) << "coordinator: " << reason;
  recovery::Coordinator::Outbox outbox;
  for (NodeId member = 0; member < node_.world.size; ++member) {
    if (std::find(lost_.begin(), lost_.end(), member) != lost_.end()) continue;
    outbox.emplace_back(
        member, recovery::AbortMessage{node_.epoch(), recovery::kRecoveryVersion, awaiting.front(),
                                       StatusCode::kFailedPrecondition, reason});
  }
  // The loss stays (checkpoints stay refused); a later replacement starts a recovery anew.
  first_loss_at_ = now;
  SendAll(outbox);
}

void CoordinatorHost::AfterRecoveryMessage() {
  if (!recovery_ || !recovery_->finished()) return;
  if (recovery_->phase() == recovery::RecoveryCoordinator::Phase::kRecovered) {
    coordinator_->AdoptRecovery(recovery_->version(), recovery_->written_epoch(),
                                recovery_->new_stores());
    for (NodeId rank : lost_) announced_lost_[rank] = 0;  // its replacement may be lost too
    FT_LOG(kInfo) << "coordinator: recovered version " << recovery_->version() << " in epoch "
                  << recovery_->epoch();
  }
  lost_.clear();
  replaced_.clear();
  assigned_ranks_.clear();
  restarts_ = 0;
  recovery_.reset();
}

void CoordinatorHost::OnNodeLost(NodeId node, std::string_view why) {
  recovery::Coordinator::Outbox outbox;
  coordinator_->OnNodeLost(node, why, &outbox);
  if (recovery_) {
    // A loss during recovery: it starts over in a newer view once the lost rank has a process
    // again (its members hear LOST below and wait for that VIEW). Every rank replaced so far
    // stays replaced: its image and the fragments it hosts may be half rebuilt. Whether the
    // losses still leave every image k fragments is the new selection's to say (else DataLoss).
    FT_LOG(kWarn) << "coordinator: node " << node << " was lost during the recovery in epoch "
                  << recovery_->epoch() << " (" << why << "); it restarts in a newer view";
    recovery_.reset();
    ++restarts_;
    replaced_.erase(std::remove(replaced_.begin(), replaced_.end(), node), replaced_.end());
    assigned_ranks_.erase(std::remove(assigned_ranks_.begin(), assigned_ranks_.end(), node),
                          assigned_ranks_.end());
    first_loss_at_ = node_.Now();
  }
  if (std::find(lost_.begin(), lost_.end(), node) == lost_.end()) {
    if (lost_.empty()) first_loss_at_ = node_.Now();
    lost_.push_back(node);
    std::sort(lost_.begin(), lost_.end());
  }
  AssignSpares(&outbox);
  if (node < announced_lost_.size() && !announced_lost_[node]) {
    announced_lost_[node] = 1;
    // LOST first: a member whose round the ABORTs below end then knows of the loss
    // (FailureDetected) by the time its Checkpoint() returns.
    recovery::Coordinator::Outbox lost;
    for (NodeId member = 0; member < node_.world.size; ++member) {
      if (member == node || member == node_.rank()) continue;
      lost.emplace_back(member, recovery::LostMessage{node_.epoch(), node, std::string(why)});
    }
    outbox.insert(outbox.begin(), std::make_move_iterator(lost.begin()),
                  std::make_move_iterator(lost.end()));
  }
  SendAll(outbox);
  AfterRecoveryMessage();
}

void CoordinatorHost::SendAll(recovery::Coordinator::Outbox& outbox) {
  for (auto& [to, message] : outbox) {
    if (auto* go = std::get_if<recovery::GoMessage>(&message); go != nullptr && go->has_placement) {
      AddEndpoints(*go);
    }
    if (auto* restore = std::get_if<recovery::RestoreMessage>(&message)) AddEndpoints(*restore);
    channel_.Send(to, std::move(message));
  }
}

// A new placement names partners the node may never have met: on a networked fabric, the GO
// says where they listen.
void CoordinatorHost::AddEndpoints(recovery::GoMessage& go) const {
  std::vector<NodeId> partners;
  for (const recovery::HolderAddress& holder : go.holders) partners.push_back(holder.slot.holder);
  partners.insert(partners.end(), go.hosted_owners.begin(), go.hosted_owners.end());
  AddEndpoints(std::move(partners), &go.endpoints);
}

void CoordinatorHost::AddEndpoints(recovery::RestoreMessage& restore) const {
  std::vector<NodeId> partners;
  for (const recovery::HolderAddress& holder : restore.holders) {
    partners.push_back(holder.slot.holder);
  }
  partners.insert(partners.end(), restore.hosted_owners.begin(), restore.hosted_owners.end());
  AddEndpoints(std::move(partners), &restore.endpoints);
}

void CoordinatorHost::AddEndpoints(std::vector<NodeId> partners,
                                   std::vector<recovery::PeerEndpoint>* out) const {
  std::sort(partners.begin(), partners.end());
  partners.erase(std::unique(partners.begin(), partners.end()), partners.end());
  for (NodeId partner : partners) {
    if (partner < endpoints_.size() && !endpoints_[partner].empty()) {
      out->push_back({partner, endpoints_[partner]});
    }
  }
}

}  // namespace ft::internal
