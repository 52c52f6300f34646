// The coordinator host (engine/coordinator_host.h).
#include "engine/coordinator_host.h"

#include <algorithm>

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
    coordinator_->OnDone(*done, &outbox);
  }
  SendAll(outbox);
}

void CoordinatorHost::OnNodeLost(NodeId node, std::string_view why) {
  recovery::Coordinator::Outbox outbox;
  coordinator_->OnNodeLost(node, why, &outbox);
  if (node < announced_lost_.size() && !announced_lost_[node]) {
    announced_lost_[node] = 1;
    for (NodeId member = 0; member < node_.world.size; ++member) {
      if (member == node || member == node_.rank()) continue;
      outbox.emplace_back(member, recovery::LostMessage{node_.epoch(), node, std::string(why)});
    }
  }
  SendAll(outbox);
}

void CoordinatorHost::SendAll(recovery::Coordinator::Outbox& outbox) {
  for (auto& [to, message] : outbox) {
    if (auto* go = std::get_if<recovery::GoMessage>(&message); go != nullptr && go->has_placement) {
      AddEndpoints(*go);
    }
    channel_.Send(to, std::move(message));
  }
}

// A new placement names partners the node may never have met: on a networked fabric, the GO
// says where they listen.
void CoordinatorHost::AddEndpoints(recovery::GoMessage& go) const {
  std::vector<NodeId> partners;
  for (const recovery::HolderAddress& holder : go.holders) partners.push_back(holder.slot.holder);
  partners.insert(partners.end(), go.hosted_owners.begin(), go.hosted_owners.end());
  std::sort(partners.begin(), partners.end());
  partners.erase(std::unique(partners.begin(), partners.end()), partners.end());
  for (NodeId partner : partners) {
    if (partner < endpoints_.size() && !endpoints_[partner].empty()) {
      go.endpoints.push_back({partner, endpoints_[partner]});
    }
  }
}

}  // namespace ft::internal
