// The choice of a spare for a lost rank (recovery/spare_choice.h).
#include "recovery/spare_choice.h"

#include <tuple>

#include "ftengine/status.h"

namespace ft::recovery {

std::string SpareChoice::Describe(const SpareCandidate& spare) const {
  return StrCat(
      "spare ", spare.id, " (domain ", spare.domain, ", priority ",
      spare.priority == kLaunchOrderPriority ? std::string("unset") : StrCat(spare.priority),
      "; its domain holds other fragments of ", clashes, " owner(s) the lost rank hosted, and ",
      owner_clashes, " of those owners)");
}

std::optional<SpareChoice> ChooseSpare(std::span<const SpareCandidate> spares, NodeId lost,
                                       const Placement* placement,
                                       std::span<const uint32_t> domains) {
  std::optional<SpareChoice> best;
  const auto key = [&](const SpareChoice& choice) {
    const SpareCandidate& spare = spares[choice.index];
    return std::make_tuple(choice.clashes, choice.owner_clashes, spare.priority, spare.id);
  };
  for (size_t i = 0; i < spares.size(); ++i) {
    SpareChoice choice{i, 0, 0};
    if (placement != nullptr && lost < placement->nodes()) {
      NodeId last_owner = UINT32_MAX;
      for (const HostedFragment& hosted : placement->HostedBy(lost)) {
        if (hosted.owner == last_owner) continue;  // one owner counts once
        last_owner = hosted.owner;
        bool clash = false;
        for (const FragmentSlot& slot : placement->HoldersOf(hosted.owner)) {
          clash |= slot.holder != lost && slot.holder < domains.size() &&
                   domains[slot.holder] == spares[i].domain;
        }
        choice.clashes += clash ? 1 : 0;
        if (hosted.owner < domains.size() && domains[hosted.owner] == spares[i].domain) {
          ++choice.owner_clashes;
        }
      }
    }
    if (!best || key(choice) < key(*best)) best = choice;
  }
  return best;
}

}  // namespace ft::recovery
