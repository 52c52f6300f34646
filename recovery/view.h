// A view: who is in the world during one epoch, and who coordinates it.
//
// Every control message and connection carries the epoch of the view it belongs to; a node or
// coordinator drops what comes from another epoch, so a process that was removed from the world
// (a zombie that wakes up, a stale coordinator) cannot change it. Epochs only grow. Node-loss
// recovery installs a view of epoch + 1 with the lost ranks replaced (docs/NOTES.md, "Epochs").
#ifndef FT_RECOVERY_VIEW_H_
#define FT_RECOVERY_VIEW_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftengine/status.h"
#include "recovery/placement.h"

namespace ft::recovery {

struct View {
  uint64_t epoch = 1;
  NodeId coordinator = 0;
  // members[rank]: the fabric node serving that rank (the rank itself until a spare replaces it).
  std::vector<NodeId> members;
  // Idle nodes waiting to take a lost rank, best first.
  std::vector<NodeId> spares;

  // The first view of a world of `size` ranks: epoch 1, rank r on node r, no spares.
  static View Initial(uint32_t size, NodeId coordinator);
  uint32_t size() const { return static_cast<uint32_t>(members.size()); }
  // "epoch 3: 8 members, coordinator 0, 1 spare".
  std::string Describe() const;
  bool operator==(const View&) const = default;
};

// InvalidArgument naming the problem: epoch 0, no members, a coordinator that is not a member, a
// node serving two ranks or being both a member and a spare.
Status ValidateView(const View& view);

}  // namespace ft::recovery

#endif  // FT_RECOVERY_VIEW_H_
