// Which idle spare takes a lost rank. The replacement takes the lost rank's place in the
// committed placement: it hosts the fragments the lost node hosted. The best spare keeps the
// placement's rule that no two fragments of one owner share a failure domain: the one whose
// domain clashes with the fewest other holders of those owners, then with the fewest of those
// owners themselves (the placement uses an owner's own domain last), then the lowest priority
// (FT_SPARE_PRIORITY; unset: after every set one), then launch order (the lowest number).
#ifndef FT_RECOVERY_SPARE_CHOICE_H_
#define FT_RECOVERY_SPARE_CHOICE_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "recovery/placement.h"

namespace ft::recovery {

// Unset FT_SPARE_PRIORITY: after every spare with one.
inline constexpr uint32_t kLaunchOrderPriority = UINT32_MAX;

struct SpareCandidate {
  NodeId id = 0;  // its spare number (world size + launch index)
  uint32_t priority = kLaunchOrderPriority;
  uint32_t domain = 0;
};

struct SpareChoice {
  size_t index = 0;            // into the candidates
  uint32_t clashes = 0;        // owners with another fragment in the spare's domain
  uint32_t owner_clashes = 0;  // owners in the spare's domain
  std::string Describe(const SpareCandidate& spare) const;
};

// The best of `spares` to replace `lost`, given the committed placement (empty: nothing to
// clash with) and every node's failure domain (by node). nullopt when there are no spares.
std::optional<SpareChoice> ChooseSpare(std::span<const SpareCandidate> spares, NodeId lost,
                                       const Placement* placement,
                                       std::span<const uint32_t> domains);

}  // namespace ft::recovery

#endif  // FT_RECOVERY_SPARE_CHOICE_H_
