// The region layouts of the nodes' images as the coordinator knows them: the layout each node's
// last PREPARE named (pulled in chunks when the coordinator did not know it), and the layouts of
// the committed version, which a process replacing a lost rank receives (so that it can Protect
// the same regions before its image is rebuilt) and which a standby coordinator inherits.
//
// A PREPARE names its layout by region count and digest (recovery/protocol.h). A known layout is
// one with that digest and count; an empty layout is always known. While a node's layout is being
// pulled its PREPARE waits here, and the round does not count it.
//
// Thread-safety: none; the coordinator owns it.
#ifndef FT_RECOVERY_LAYOUT_BOOK_H_
#define FT_RECOVERY_LAYOUT_BOOK_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "recovery/placement.h"
#include "recovery/protocol.h"

namespace ft::recovery {

struct RegionLayout {
  uint64_t digest = 0;
  std::vector<LayoutRegion> regions;
  bool operator==(const RegionLayout&) const = default;
};

class LayoutBook {
 public:
  explicit LayoutBook(uint32_t nodes);

  // Whether `prepare` names a layout known for its node. When not, the pull starts: the
  // PREPARE is kept, and the request to send is returned.
  std::optional<LayoutRequestMessage> PullUnlessKnown(const PrepareMessage& prepare);

  struct Chunk {
    bool accepted = false;  // false: not a chunk of a pull in progress (ignore it)
    std::optional<LayoutRequestMessage> next;  // the request for the next chunk, or
    std::optional<PrepareMessage> complete;    // the PREPARE whose layout is known now
  };
  Chunk OnLayout(const LayoutMessage& chunk);

  // Nodes whose PREPARE waits for its layout.
  std::vector<NodeId> Pulling() const;
  bool pulling(NodeId node) const { return node < pulls_.size() && pulls_[node].has_value(); }
  void Cancel(NodeId node);  // its PREPARE was withdrawn
  void CancelAll();          // the round in preparation ended (an ABORT, a new view)

  // The round every node prepared with its known layout committed: those are the committed ones
  // (the ones before are kept for a rollback).
  void Commit();
  // A recovery rolled back to the version before the committed one: its layouts are again.
  void RollBack();
  const RegionLayout& committed(NodeId node) const;
  std::vector<RegionLayout> committed_layouts() const;

 private:
  struct Pull {
    PrepareMessage prepare;
    std::vector<LayoutRegion> received;
  };
  std::vector<std::shared_ptr<const RegionLayout>> known_;      // by node; null: none yet
  std::vector<std::shared_ptr<const RegionLayout>> committed_;  // by node; null: empty
  std::vector<std::shared_ptr<const RegionLayout>> older_;      // the version before's
  std::vector<std::optional<Pull>> pulls_;
};

}  // namespace ft::recovery

#endif  // FT_RECOVERY_LAYOUT_BOOK_H_
