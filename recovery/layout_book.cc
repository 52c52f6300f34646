// The coordinator's book of region layouts (recovery/layout_book.h).
#include "recovery/layout_book.h"

#include <algorithm>

namespace ft::recovery {
namespace {

const RegionLayout& EmptyLayout() {
  static const RegionLayout empty;
  return empty;
}

}  // namespace

LayoutBook::LayoutBook(uint32_t nodes)
    : known_(nodes), committed_(nodes), older_(nodes), pulls_(nodes) {}

std::optional<LayoutRequestMessage> LayoutBook::PullUnlessKnown(const PrepareMessage& prepare) {
  const NodeId node = prepare.node;
  if (node >= known_.size()) return std::nullopt;
  pulls_[node].reset();
  if (prepare.layout_regions == 0) {
    if (!known_[node] || !known_[node]->regions.empty()) {
      known_[node] = std::make_shared<const RegionLayout>(RegionLayout{prepare.layout_digest, {}});
    }
    return std::nullopt;
  }
  const std::shared_ptr<const RegionLayout>& known = known_[node];
  if (known && known->digest == prepare.layout_digest &&
      known->regions.size() == prepare.layout_regions) {
    return std::nullopt;
  }
  pulls_[node] = Pull{prepare, {}};
  return LayoutRequestMessage{prepare.epoch, node, prepare.layout_digest, 0};
}

LayoutBook::Chunk LayoutBook::OnLayout(const LayoutMessage& chunk) {
  Chunk out;
  if (chunk.node >= pulls_.size() || !pulls_[chunk.node]) return out;
  Pull& pull = *pulls_[chunk.node];
  if (chunk.epoch != pull.prepare.epoch || chunk.digest != pull.prepare.layout_digest ||
      chunk.total != pull.prepare.layout_regions || chunk.first != pull.received.size() ||
      chunk.regions.empty() || chunk.regions.size() > chunk.total - chunk.first) {
    return out;
  }
  out.accepted = true;
  pull.received.insert(pull.received.end(), chunk.regions.begin(), chunk.regions.end());
  if (pull.received.size() < chunk.total) {
    out.next = LayoutRequestMessage{chunk.epoch, chunk.node, chunk.digest,
                                    static_cast<uint32_t>(pull.received.size())};
    return out;
  }
  known_[chunk.node] =
      std::make_shared<const RegionLayout>(RegionLayout{chunk.digest, std::move(pull.received)});
  out.complete = pull.prepare;
  pulls_[chunk.node].reset();
  return out;
}

std::vector<NodeId> LayoutBook::Pulling() const {
  std::vector<NodeId> nodes;
  for (NodeId node = 0; node < pulls_.size(); ++node) {
    if (pulls_[node]) nodes.push_back(node);
  }
  return nodes;
}

void LayoutBook::Cancel(NodeId node) {
  if (node < pulls_.size()) pulls_[node].reset();
}

void LayoutBook::CancelAll() { std::fill(pulls_.begin(), pulls_.end(), std::nullopt); }

void LayoutBook::Commit() {
  older_ = committed_;
  committed_ = known_;
}

void LayoutBook::RollBack() { committed_ = older_; }

const RegionLayout& LayoutBook::committed(NodeId node) const {
  if (node >= committed_.size() || !committed_[node]) return EmptyLayout();
  return *committed_[node];
}

std::vector<RegionLayout> LayoutBook::committed_layouts() const {
  std::vector<RegionLayout> layouts;
  layouts.reserve(committed_.size());
  for (NodeId node = 0; node < committed_.size(); ++node) layouts.push_back(committed(node));
  return layouts;
}

}  // namespace ft::recovery
