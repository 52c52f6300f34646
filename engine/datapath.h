// How the engine drives its WRITEs: shared by the checkpoint path (engine.cc) and
// `ftbench write-bw`, so that the benchmark measures the same batching, signaling and depth.
//
// - One cell, one WRITE, one PostSend call; every data WRITE is signaled (its completion frees
//   the cell's pipeline slot, and a cell is large: 1 MiB by default, so completions are few).
// - A WRITE is followed by one progress step that reaps up to kPollBatch completions.
// - In flight: a stripe slot is reused only when all of its k + m WRITEs completed, so each
//   holder's QP carries at most pipeline_depth WRITEs (one per slot) and the node at most
//   pipeline_depth x (k + m).
#ifndef FT_ENGINE_DATAPATH_H_
#define FT_ENGINE_DATAPATH_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "ftengine/status.h"

namespace ft::internal {

inline constexpr int kPollBatch = 64;

// CPU work on a cell (encode, CRC, decode, copy) between two chances to beat the heartbeat: a
// stripe of 4 x 1 GiB cells takes about a second to encode, far past the failure detector's
// bound, so larger cells are worked on in pieces of this many bytes, with a beat between them.
// Reed-Solomon works byte by byte and a CRC continues from the one before, so pieces give the
// same bytes as the whole.
inline constexpr uint64_t kCpuPieceBytes = 4ull << 20;

// Runs work(offset, bytes) over [0, total) in pieces of at most kCpuPieceBytes, and between()
// after each piece when there are several. Stops at the first piece whose work fails.
template <typename Work, typename Between>
Status InPieces(uint64_t total, Work&& work, Between&& between) {
  for (uint64_t at = 0; at < total; at += kCpuPieceBytes) {
    const uint64_t bytes = std::min(kCpuPieceBytes, total - at);
    FT_RETURN_IF_ERROR(work(at, bytes));
    if (bytes < total) between();
  }
  return Status();
}

// Copies [from, from + bytes) to `to` in pieces of kCopyPieceBytes, calling between() after each:
// an image of gigabytes takes a second to copy, and the heartbeat must keep flowing meanwhile.
inline constexpr uint64_t kCopyPieceBytes = 64ull << 20;
template <typename Between>
void CopyInPieces(std::byte* to, const std::byte* from, uint64_t bytes, Between&& between) {
  for (uint64_t done = 0; done < bytes; done += kCopyPieceBytes) {
    std::memcpy(to + done, from + done, std::min(kCopyPieceBytes, bytes - done));
    between();
  }
}

// Posted receives per control QP. The coordinator hears at most one request at a time from a
// node (BEAT_TARGET at start, then PREPARE or DONE, plus a withdrawal): 4. A node hears the
// round's messages (GROW, GO, COMMIT or ABORT) and, when nodes are lost, a LOST for each, back to
// back: a whole failure domain of up to 12 nodes lost at once must not run a busy node's
// receives dry (the next SEND would meet receive-not-ready and fail).
constexpr int ControlReceivesPerLink(bool coordinator) { return coordinator ? 4 : 16; }

// WRITEs one holder QP has in flight at most, for a given EngineOptions::pipeline_depth.
constexpr int WritesInFlightPerQp(int pipeline_depth) { return pipeline_depth; }

}  // namespace ft::internal

#endif  // FT_ENGINE_DATAPATH_H_
