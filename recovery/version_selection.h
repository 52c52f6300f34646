// Version selection: the common state to roll back to after a loss.
//
// Every surviving holder reports, for each fragment the committed placement puts on it, whether
// the slot of the newest committed version V holds an intact header of V for that owner and
// column, and whether the other slot holds one of V - 1 (recovery/protocol.h, REPORT). A version
// is restorable when every owner with an image has at least k intact fragments of it; the newest
// restorable of V and V - 1 is chosen (V - 1 only when it was written with V's placement: else its
// fragments are elsewhere or gone). None: DataLoss naming every owner whose image is lost.
//
// Headers only: a cell whose CRC fails is found while the bytes are read, and decoded around.
#ifndef FT_RECOVERY_VERSION_SELECTION_H_
#define FT_RECOVERY_VERSION_SELECTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "ftengine/status.h"
#include "recovery/placement.h"

namespace ft::recovery {

class VersionSelection {
 public:
  // newest: V >= 1. has_image[owner]: the owner has fragments (footprint > 0).
  VersionSelection(uint64_t newest, bool older_in_place, int k, std::vector<uint8_t> has_image);

  // One reported fragment of `owner` (bits: kNewestIntact, kOlderIntact). Unknown owners and
  // owners without an image are ignored.
  void Count(NodeId owner, uint8_t intact);

  // The version every owner can restore, or DataLoss naming each owner that cannot.
  Result<uint64_t> Choose() const;

  // The decision as a table for the log: one line per owner, "owner 3: 6 of v7, 6 of v6".
  std::string Table() const;

  int newest_count(NodeId owner) const { return newest_[owner]; }
  int older_count(NodeId owner) const { return older_[owner]; }

 private:
  uint64_t newest_version_;
  bool older_in_place_;
  int k_;
  std::vector<uint8_t> has_image_;
  std::vector<int> newest_;  // by owner: intact fragments of V
  std::vector<int> older_;   // by owner: intact fragments of V - 1
};

}  // namespace ft::recovery

#endif  // FT_RECOVERY_VERSION_SELECTION_H_
