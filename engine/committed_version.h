// What a node knows of its last committed version: the number, the epoch it was written in,
// the geometry and where its fragments are (the placement of the round that committed it, which
// a later round's GO does not change until that round commits). Written by the checkpoint round
// at COMMIT, read by the fragment reader.
#ifndef FT_ENGINE_COMMITTED_VERSION_H_
#define FT_ENGINE_COMMITTED_VERSION_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "erasure/geometry.h"
#include "recovery/protocol.h"

namespace ft::internal {

struct CommittedVersion {
  uint64_t version = 0;  // 0: none yet
  uint64_t epoch = 0;
  std::optional<erasure::StripeGeometry> geometry;
  std::vector<recovery::HolderAddress> holders;  // by column
  uint64_t slot_bytes = 0;  // of each of the two slots of this node's extents (the GO's)
  uint64_t store_id = 0;    // this node's store that hosts others' fragments of this version
  std::vector<recovery::LayoutRegion> layout;  // the image's regions (ids, sizes)
};

}  // namespace ft::internal

#endif  // FT_ENGINE_COMMITTED_VERSION_H_
