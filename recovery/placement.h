// Placement: which nodes hold which owner's fragments, and where in their stores.
//
// A deterministic function of (the nodes' failure domains, store capacities and footprints, k, m):
// every node computing it from the same input gets the same answer. For each owner it picks
// k + m distinct holders, never the owner itself:
// - spread: no two holders of one owner share a failure domain while there are enough domains
//   (other than the owner's own, which is used last); when domains run short they are reused as
//   evenly as possible;
// - balance: with equal footprints and capacities every node hosts k + m fragments;
// - capacity: a holder gives each hosted fragment a contiguous extent of its store of `footprint`
//   bytes (the owner's two slots); a node whose store is full is skipped and the fragment goes to
//   the next node with room ("borrowing" checkpoint memory from others). When the world cannot fit
//   an owner, the error says how many bytes are missing.
#ifndef FT_RECOVERY_PLACEMENT_H_
#define FT_RECOVERY_PLACEMENT_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ftengine/status.h"

namespace ft::recovery {

using NodeId = uint32_t;

struct NodeSpec {
  uint32_t domain = 0;           // failure domain (rack, switch); any numbering
  uint64_t capacity_bytes = 0;   // store bytes this node offers to others
  uint64_t footprint_bytes = 0;  // store bytes each holder needs for this node's fragment (0: none)
  // Store bytes [reserved_begin, reserved_end) hold a committed version's fragments and must not
  // be given out: extents go to the larger free span, below or above it (so placements that
  // follow each other alternate between the two ends of the store).
  uint64_t reserved_begin = 0;
  uint64_t reserved_end = 0;
};

// Where a node's extents go: from `base`, at most `room` bytes (the larger free span of its store
// outside its reserved interval).
struct FreeSpan {
  uint64_t base = 0;
  uint64_t room = 0;
};
FreeSpan FreeSpanOf(const NodeSpec& node);

struct FragmentSlot {
  NodeId holder = 0;
  uint64_t store_offset = 0;  // extent [store_offset, store_offset + owner's footprint)
  bool operator==(const FragmentSlot&) const = default;
};

struct HostedFragment {
  NodeId owner = 0;
  int column = 0;
  uint64_t store_offset = 0;
  bool operator==(const HostedFragment&) const = default;
};

class Placement {
 public:
  int k() const { return k_; }
  int m() const { return m_; }
  int width() const { return k_ + m_; }
  size_t nodes() const { return used_bytes_.size(); }

  // holders(owner)[column]: column j of the owner's stripes goes to that slot. Empty for an owner
  // whose footprint is 0: it has no fragments, so nobody holds anything for it.
  std::span<const FragmentSlot> HoldersOf(NodeId owner) const {
    if (footprint_bytes_[owner] == 0) return {};
    return {&slots_[static_cast<size_t>(owner) * width()], static_cast<size_t>(width())};
  }
  // The owner's footprint as given: the length of each of its extents (0: no fragments).
  uint64_t footprint_bytes(NodeId owner) const { return footprint_bytes_[owner]; }
  // Fragments a node hosts, in (owner, column) order. O(hosted).
  std::span<const HostedFragment> HostedBy(NodeId holder) const {
    return {hosted_.data() + hosted_begin_[holder],
            hosted_begin_[holder + 1] - hosted_begin_[holder]};
  }
  // The end of the holder's last extent (its extents fill [FreeSpanOf(spec).base, used_bytes)).
  uint64_t used_bytes(NodeId holder) const { return used_bytes_[holder]; }
  // Bytes of this owner's fragments that went to a later candidate because a preferred holder's
  // store was full: what the owner borrows from nodes that have room.
  uint64_t borrowed_bytes(NodeId owner) const { return borrowed_bytes_[owner]; }
  // One line of counts: fragments per node (min/max), fewest distinct domains among one owner's
  // holders, borrowed bytes.
  std::string Describe() const;

  bool operator==(const Placement&) const = default;

 private:
  friend Result<Placement> ComputePlacement(std::span<const NodeSpec>, int, int);
  int k_ = 0;
  int m_ = 0;
  std::vector<FragmentSlot> slots_;        // nodes x width
  std::vector<HostedFragment> hosted_;     // grouped by holder
  std::vector<size_t> hosted_begin_;       // nodes + 1 offsets into hosted_
  std::vector<uint64_t> used_bytes_;       // per holder
  std::vector<uint64_t> borrowed_bytes_;   // per owner
  std::vector<uint64_t> footprint_bytes_;  // per owner, copied from the input
  int min_owner_domains_ = 0;              // fewest distinct domains among one owner's holders
};

// The extent a holder gives an owner whose fragment needs `footprint_bytes` (its two slots):
// an eighth more, each slot rounded up to 4 KiB, so that an image may grow by that much
// without a new placement (a new placement must go around the committed version, which costs
// store room or a new store). 0 for 0.
uint64_t ExtentBytesFor(uint64_t footprint_bytes);
// Whether an owner placed with `extent_bytes` keeps its extent for a new footprint: it still
// fits, and the image has not shrunk to less than half of what the extent was made for.
bool ExtentStillFits(uint64_t extent_bytes, uint64_t footprint_bytes);

// k >= 1, m >= 1, k + m < nodes.size() (else InvalidArgument naming the largest k + m allowed).
// Fails with ResourceExhausted naming the owner that does not fit and the missing bytes.
Result<Placement> ComputePlacement(std::span<const NodeSpec> nodes, int k, int m);

}  // namespace ft::recovery

#endif  // FT_RECOVERY_PLACEMENT_H_
