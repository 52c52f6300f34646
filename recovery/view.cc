// Views (recovery/view.h): the initial view and the consistency rules of any view.
#include "recovery/view.h"

#include <algorithm>
#include <set>

namespace ft::recovery {

View View::Initial(uint32_t size, NodeId coordinator) {
  View view;
  view.epoch = 1;
  view.coordinator = coordinator;
  view.members.resize(size);
  for (uint32_t rank = 0; rank < size; ++rank) view.members[rank] = rank;
  return view;
}

std::string View::Describe() const {
  return StrCat("epoch ", epoch, ": ", members.size(), " members, coordinator ", coordinator, ", ",
                spares.size(), spares.size() == 1 ? " spare" : " spares");
}

Status ValidateView(const View& view) {
  if (view.epoch == 0) return Status::InvalidArgument("view epoch 0: epochs start at 1");
  if (view.members.empty())
    return Status::InvalidArgument("view of epoch ", view.epoch, " has no members");
  std::set<NodeId> seen;
  for (size_t rank = 0; rank < view.members.size(); ++rank) {
    if (!seen.insert(view.members[rank]).second) {
      return Status::InvalidArgument("view of epoch ", view.epoch, ": node ", view.members[rank],
                                     " serves two ranks (one is rank ", rank, ")");
    }
  }
  for (NodeId spare : view.spares) {
    if (!seen.insert(spare).second) {
      return Status::InvalidArgument("view of epoch ", view.epoch, ": node ", spare,
                                     " is a spare and a member, or a spare twice");
    }
  }
  if (std::find(view.members.begin(), view.members.end(), view.coordinator) == view.members.end()) {
    return Status::InvalidArgument("view of epoch ", view.epoch, ": coordinator ", view.coordinator,
                                   " is not a member");
  }
  return Status();
}

}  // namespace ft::recovery
