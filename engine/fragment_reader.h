// The fragment reader: reads one owner's committed image back from its holders with one-sided
// READs, as an asynchronous state machine the worker steps (ReadCommitted uses it today; the
// replacement node's rebuild in the recovery issue will use it too).
//
//   Start(owner, version, holders, geometry) ─► headers (every column not skipped, all holders in
//   parallel) ─► check each header ─► cells, a window of stripes at a time: per stripe READ k
//   intact columns (data columns first, so that nothing needs decoding when they are intact),
//   check each cell's CRC, READ another column for each bad or failed one, decode what is missing
//   ─► the sink (the caller's buffer).
//
// A holder whose READ fails (its link is fenced or lost) is unusable for the rest of the read; a
// cell whose CRC does not match is replaced by another column's for that stripe. Fewer than k
// intact cells in a stripe is DataLoss naming the owner, the version and the stripe, and what was
// wrong with the others. Every READ carries the read's generation (engine/work_ids.h).
// Worker-owned; the result goes to the ReadRequest of the application thread that asked.
#ifndef FT_ENGINE_FRAGMENT_READER_H_
#define FT_ENGINE_FRAGMENT_READER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "engine/committed_version.h"
#include "engine/node_context.h"
#include "engine/node_memory.h"
#include "engine/peer_table.h"
#include "engine/work_ids.h"
#include "verbs/fabric.h"

namespace ft::internal {

class FragmentReader {
 public:
  // Called once when the read ends (OK, or why not); `out` was filled on success.
  using Done = std::function<void(Status)>;

  // `beat` is called between pieces of the CPU work on large cells (engine/datapath.h,
  // kCpuPieceBytes): the worker beats its heartbeat there. It must only post.
  // The reader borrows the checkpoint's registered buffers from `memory`: its cells land in the
  // pipeline (pipeline_depth x (k + m) cells, as a window of stripes needs), its headers in the
  // header buffer. A read and a checkpoint round never run at once (ReadCommitted refuses while
  // one is in flight; a recovery restores before it re-protects), and a node keeps no memory of
  // its own for reading, none to touch for the first time in a recovery.
  FragmentReader(NodeContext& node, PeerTable& peers, NodeMemory& memory,
                 std::function<void()> beat);
  FragmentReader(const FragmentReader&) = delete;
  FragmentReader& operator=(const FragmentReader&) = delete;

  bool active() const { return phase_ != Phase::kIdle; }

  // Starts reading `owner`'s version `committed` into `out` (exactly the image bytes), treating
  // the columns of `skip` as lost. Bad input ends the read at once through `done`. `out_lkey`:
  // `out` is registered memory (a protected region): intact data cells are then READ straight
  // into it, checked there, and never copied (a restore's largest saving); otherwise every cell
  // lands in the reader's buffer first.
  void Start(NodeId owner, const CommittedVersion& committed, std::span<std::byte> out,
             std::span<const int> skip, Done done, std::optional<uint32_t> out_lkey = std::nullopt);
  // Posts what can be posted, checks what arrived. Returns true when it got anywhere.
  bool Step();
  // When Step must run even if nothing arrives (its deadline); Nanos::max() when idle.
  Nanos next_deadline() const { return active() ? deadline_ : Nanos::max(); }
  void OnReadCompleted(WorkId id, verbs::WcStatus status, NodeId peer);
  // This node's fabric is gone: no READ will complete, nothing more lands; the read ends.
  void OnOwnFabricLost(std::string_view detail);
  // The engine is being destroyed: fences the links with READs in flight, waits (bounded) for
  // them with `poll`, and ends the read with Aborted.
  void Abandon(const std::function<bool()>& poll);

 private:
  enum class Phase { kIdle, kHeaders, kCells };
  enum class Cell : uint8_t { kNone, kReading, kGood, kBad };
  struct Window {
    bool busy = false;
    uint64_t stripe = 0;
    std::vector<Cell> cells;  // by column
    int reading = 0;
  };

  Status PostRead(int column, uint32_t index, std::byte* local, uint32_t lkey, uint64_t bytes,
                  uint64_t remote);
  void CheckHeaders();
  // Asks for more columns of the window's stripe until k are good or being read; false when no
  // usable column is left (the stripe cannot be restored).
  bool Plan(Window& window, size_t slot);
  Status Emit(const Window& window, size_t slot);
  // Ends the read with `status`, once no READ of it is outstanding.
  void Finish(Status status);
  void FenceOutstanding();
  void Note(Status problem);
  std::byte* HeaderOf(int column) const { return memory_.headers() + column * header_area_bytes_; }
  std::byte* CellOf(size_t slot, int column) const;
  // Where a data cell of `stripe` lands directly in `out` (out_lkey given, and the cell whole
  // inside the image), or nullptr: then it lands in CellOf.
  std::byte* DirectCell(uint64_t stripe, int column) const;
  std::byte* Landing(const Window& window, size_t slot, int column) const {
    std::byte* direct = DirectCell(window.stripe, column);
    return direct != nullptr ? direct : CellOf(slot, column);
  }
  uint64_t SlotAddr(int column) const;

  NodeContext& node_;
  PeerTable& peers_;
  NodeMemory& memory_;
  std::function<void()> beat_;
  Phase phase_ = Phase::kIdle;
  uint32_t generation_ = 0;
  NodeId owner_ = 0;
  CommittedVersion committed_;
  std::span<std::byte> out_;
  std::optional<uint32_t> out_lkey_;
  Done done_;
  Nanos deadline_{0};
  uint64_t header_area_bytes_ = 0;
  std::vector<uint8_t> usable_;  // by column: header intact and link alive
  std::vector<int> order_;       // columns to read, preferred first
  std::vector<Window> windows_;
  uint64_t next_stripe_ = 0;
  uint64_t emitted_ = 0;
  int outstanding_ = 0;
  std::vector<int> column_outstanding_;
  Status first_problem_;
  std::optional<Status> result_;  // decided, waiting for outstanding READs
};

}  // namespace ft::internal

#endif  // FT_ENGINE_FRAGMENT_READER_H_
