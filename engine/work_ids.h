// Work request ids: what a completion belongs to, so the worker can route it to the part that
// posted it (engine/worker.cc) and that part can tell a completion of its current operation from a
// late one of an operation it already gave up on.
//
// Layout of the 64-bit wr_id: [kind:8][generation:24][index:32].
// - kind: which part posted it and what it is (a cell or header WRITE of the checkpoint round, a
//   READ of the fragment reader, a control SEND or RECV, a heartbeat WRITE);
// - generation: the round (or read) that posted it, modulo 2^24. A round that ends before all of
//   its completions were polled (its fabric died, or it gave up after a whole extra timeout)
//   leaves completions behind; the next round has another generation, so they cannot touch its
//   counters. Control SEND/RECV and heartbeats use generation 0: their buffers outlive rounds.
// - index: the part's own detail (a cell WRITE: pipeline slot << 8 | column; a header WRITE or a
//   READ: the column; SEND/RECV: the control buffer; a heartbeat: the rank it is WRITTEN to).
#ifndef FT_ENGINE_WORK_IDS_H_
#define FT_ENGINE_WORK_IDS_H_

#include <cstdint>

namespace ft::internal {

enum class WorkKind : uint8_t {
  kCell = 1,
  kHeader = 2,
  kSend = 3,
  kRecv = 4,
  kRead = 5,
  kBeat = 6
};

inline constexpr uint32_t kGenerationMask = 0xffffff;

struct WorkId {
  WorkKind kind = WorkKind::kCell;
  uint32_t generation = 0;  // 24 bits
  uint32_t index = 0;

  constexpr uint64_t Encode() const {
    return (static_cast<uint64_t>(kind) << 56) |
           (static_cast<uint64_t>(generation & kGenerationMask) << 32) | index;
  }
  static constexpr WorkId Decode(uint64_t wr_id) {
    return WorkId{static_cast<WorkKind>(wr_id >> 56),
                  static_cast<uint32_t>(wr_id >> 32) & kGenerationMask,
                  static_cast<uint32_t>(wr_id)};
  }
};

// The index of a cell WRITE: its pipeline slot (< 2^24: pipeline_depth <= 1024) and column (< 256:
// k + m <= 64).
constexpr uint32_t CellIndex(uint32_t slot, uint32_t column) { return (slot << 8) | column; }
constexpr uint32_t SlotOfCell(uint32_t index) { return index >> 8; }
constexpr uint32_t ColumnOfCell(uint32_t index) { return index & 0xff; }

// The next generation after `generation`, never 0 (0 marks control work).
constexpr uint32_t NextGeneration(uint32_t generation) {
  const uint32_t next = (generation + 1) & kGenerationMask;
  return next == 0 ? 1 : next;
}

static_assert(WorkId::Decode(WorkId{WorkKind::kRead, 0xabcdef, 0x12345678}.Encode()).generation ==
              0xabcdef);
static_assert(SlotOfCell(CellIndex(1023, 63)) == 1023 && ColumnOfCell(CellIndex(1023, 63)) == 63);

}  // namespace ft::internal

#endif  // FT_ENGINE_WORK_IDS_H_
