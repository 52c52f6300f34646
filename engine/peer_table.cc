// The peer table (engine/peer_table.h): links by QP id and by (rank, epoch, role), fencing and
// retirement, and the background partner Connect.
#include "engine/peer_table.h"

#include <algorithm>

#include "common/check.h"
#include "common/log.h"

namespace ft::internal {

const char* LinkRoleName(LinkRole role) { return role == LinkRole::kControl ? "control" : "data"; }

PeerTable::PeerTable(NodeContext& node)
    : node_(node), connect_helper_(std::make_unique<ConnectHelper>(node.fabric.get())) {}

PeerTable::~PeerTable() {
  StopConnecting();
  Clear();
}

void PeerTable::Add(NodeId rank, LinkRole role, std::unique_ptr<verbs::QueuePair> qp) {
  const uint32_t id = qp->id();
  const Key key{rank, node_.epoch(), role};
  if (auto it = usable_.find(key); it != usable_.end()) {
    // A usable link is replaced only by mistake: fence the old one rather than leak its peer.
    FT_LOG(kWarn) << "node " << node_.rank() << ": replacing a usable " << LinkRoleName(role)
                  << " link to node " << rank;
    FenceQp(it->second);
  }
  Link link;
  link.qp = std::move(qp);
  link.info = LinkInfo{rank, role, node_.epoch(), true};
  links_.emplace(id, std::move(link));
  usable_[key] = id;
}

verbs::QueuePair* PeerTable::Usable(NodeId rank, LinkRole role) const {
  auto it = usable_.find(Key{rank, node_.epoch(), role});
  if (it == usable_.end()) return nullptr;
  return links_.at(it->second).qp.get();
}

std::optional<PeerTable::LinkInfo> PeerTable::Find(uint32_t qp_id) const {
  auto it = links_.find(qp_id);
  if (it == links_.end()) return std::nullopt;
  return it->second.info;
}

std::optional<PeerTable::LinkInfo> PeerTable::FenceQp(uint32_t qp_id) {
  auto it = links_.find(qp_id);
  if (it == links_.end() || !it->second.info.usable) return std::nullopt;
  Link& link = it->second;
  link.info.usable = false;
  usable_.erase(Key{link.info.rank, link.info.epoch, link.info.role});
  link.qp->ToError();  // our posted work flushes; nothing the peer posts lands here any more
  const LinkInfo info = link.info;
  DestroyIfDrained(qp_id);
  return info;
}

std::optional<PeerTable::LinkInfo> PeerTable::Fence(NodeId rank, LinkRole role) {
  auto it = usable_.find(Key{rank, node_.epoch(), role});
  if (it == usable_.end()) return std::nullopt;
  return FenceQp(it->second);
}

void PeerTable::FenceAll() {
  std::vector<uint32_t> ids;
  for (const auto& [key, id] : usable_) ids.push_back(id);
  for (uint32_t id : ids) FenceQp(id);
}

void PeerTable::CountPosted(uint32_t qp_id, int requests) {
  auto it = links_.find(qp_id);
  FT_CHECK_MSG(it != links_.end(), "work posted on a QP the peer table does not have");
  it->second.outstanding += requests;
}

void PeerTable::CountCompleted(uint32_t qp_id) {
  auto it = links_.find(qp_id);
  if (it == links_.end()) return;  // a QP of a failed Connect batch, never ours
  FT_CHECK_MSG(it->second.outstanding > 0, "a completion for a QP with nothing outstanding");
  --it->second.outstanding;
  DestroyIfDrained(qp_id);
}

void PeerTable::DestroyIfDrained(uint32_t qp_id) {
  auto it = links_.find(qp_id);
  if (it != links_.end() && !it->second.info.usable && it->second.outstanding == 0) {
    links_.erase(it);  // destroying the QP tells the peer (kDisconnected)
  }
}

Result<bool> PeerTable::ConnectPartners(std::span<const NodeId> wanted,
                                        const std::vector<std::byte>& private_data, Nanos timeout,
                                        uint64_t tag) {
  if (connect_in_flight_.valid()) return false;
  std::vector<NodeId> peers(wanted.begin(), wanted.end());
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  std::vector<verbs::ConnectRequest> requests;
  for (NodeId peer : peers) {
    if (peer == node_.rank() || Usable(peer, LinkRole::kData) != nullptr) continue;
    requests.push_back({peer, private_data, {}});
  }
  if (requests.empty()) return true;
  if (connect_failure_.has_value()) {
    // A failure of this operation's Connect ends it; one left by an earlier operation does not.
    Status failure = std::move(*connect_failure_);
    connect_failure_.reset();
    if (connect_failure_tag_ == tag) return failure;
  }
  connect_tag_ = tag;
  connect_role_ = LinkRole::kData;
  if (internal::LogEnabled(LogLevel::kDebug)) {
    std::string names;
    for (const verbs::ConnectRequest& r : requests)
      names += StrCat(names.empty() ? "" : ",", r.peer);
    FT_LOG(kDebug) << "node " << node_.rank() << ": partner Connect to " << names << " in epoch "
                   << node_.epoch() << " (tag " << tag << ")";
  }
  connect_in_flight_ = connect_helper_->Submit(std::move(requests), timeout);
  return false;
}

bool PeerTable::ConnectControl(std::vector<verbs::ConnectRequest> requests, Nanos timeout,
                               uint64_t tag) {
  if (connect_in_flight_.valid()) return false;
  connect_failure_.reset();
  connect_tag_ = tag;
  connect_role_ = LinkRole::kControl;
  connect_in_flight_ = connect_helper_->Submit(std::move(requests), timeout);
  return true;
}

void PeerTable::AdoptEpoch(uint64_t old_epoch) {
  std::map<Key, uint32_t> rekeyed;
  for (const auto& [key, id] : usable_) {
    const auto& [rank, epoch, role] = key;
    if (epoch != old_epoch) continue;
    links_.at(id).info.epoch = node_.epoch();
    rekeyed[Key{rank, node_.epoch(), role}] = id;
  }
  for (auto it = usable_.begin(); it != usable_.end();) {
    it = std::get<1>(it->first) == old_epoch ? usable_.erase(it) : std::next(it);
  }
  usable_.merge(rekeyed);
}

void PeerTable::Harvest(const AcceptPartner& accept) {
  if (!connect_in_flight_.valid() ||
      connect_in_flight_.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    return;
  }
  auto connected = connect_in_flight_.get();
  if (!connected.ok()) {
    if (connect_role_ == LinkRole::kControl) {
      // Waiting for a replacement: its owner tries again while its own deadline allows.
      FT_LOG(kDebug) << "node " << node_.rank()
                     << ": no replacement connected yet: " << connected.status();
      return;
    }
    connect_failure_ = connected.status();
    connect_failure_tag_ = connect_tag_;
    return;
  }
  for (auto& qp : *connected) {
    const NodeId peer = qp->peer();
    if (connect_role_ == LinkRole::kControl) {
      // The callback adds it (its receives went up with it) or drops it.
      if (Status accepted =
              accept(peer, LinkRole::kControl, qp->peer_private_data(), connect_tag_, &qp);
          !accepted.ok()) {
        FT_LOG(kWarn) << "node " << node_.rank() << ": refused a control link from node " << peer
                      << ": " << accepted;
      }
      continue;
    }
    if (Status accepted =
            accept(peer, LinkRole::kData, qp->peer_private_data(), connect_tag_, nullptr);
        !accepted.ok()) {
      connect_failure_ = std::move(accepted);
      connect_failure_tag_ = connect_tag_;
      continue;  // dropped: the peer sees it as a disconnect of that link
    }
    Add(peer, LinkRole::kData, std::move(qp));
  }
}

void PeerTable::StopConnecting() {
  CancelConnecting();
  connect_helper_.reset();
}

void PeerTable::CancelConnecting() {
  // A background Connect would run to its deadline (a partner may be dead): cancel it, again and
  // again, as the helper may not have entered Connect yet when the first cancel lands.
  while (connect_in_flight_.valid() &&
         connect_in_flight_.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready) {
    node_.fabric->CancelConnects();
    connect_in_flight_.wait_for(std::chrono::milliseconds(10));
  }
  if (connect_in_flight_.valid()) {
    ConnectHelper::Outcome dropped = connect_in_flight_.get();  // its QPs go with it
  }
}

void PeerTable::Clear() {
  usable_.clear();
  links_.clear();
}

}  // namespace ft::internal
