// Queue arithmetic of the rdma backend, in constexprs checked by static_asserts.
//
// Send-queue slots. A QP holds at most max_send_wr outstanding send requests: posted and not yet
// retired. A request retires when a completion of the same QP at its position or later is
// *polled* (RC completes in order, so a completion retires every request before it: that is how
// an unsignaled request, which produces no completion when it succeeds, gets its slot back).
// PostSend refuses with ResourceExhausted what would go beyond, before the device sees it, so the
// hardware queue (created with max_send_wr slots) can never overflow.
//
// Selective signaling, a worked example with max_send_wr = 256 and a signal every
// SignalInterval(256) = 64 requests:
//   post r0..r63, r63 signaled                  outstanding  64
//   post r64..r255, r127 r191 r255 signaled     outstanding 256: full; one more PostSend fails
//                                               ResourceExhausted however fast the device is
//   poll the completion of r63                  retires r0..r63: outstanding 192, 64 slots free
//   post r256..r319, r319 signaled              outstanding 256 again
// At any time at most max_send_wr / interval = 4 signaled completions of the QP sit in the CQ,
// and the poster never stalls as long as it polls before it has posted three more intervals.
// Unsignaled requests alone never free their slots: signal at least every max_send_wr-th one.
//
// CQ sizing. One CQ serves all QPs of a node. A QP can have max_send_wr + max_recv_wr
// completions in it at once (every request failing or flushing completes, signaled or not; a
// send slot is reused only after a completion at or after it was polled, so no more than that),
// so the CQ cannot overrun while it has CqEntriesFor(QPs) entries. The CQ starts at cq_depth and
// grows (ibv_resize_cq) before a QP is created that would pass its depth: by GrownCqDepth, at
// least doubling so that N QPs cost O(log N) resizes, never beyond the device's max_cqe. A QP
// that would need more fails its Connect with ResourceExhausted instead of risking an overrun.
// An overrun (a device bug now) still raises kDeviceError (IBV_EVENT_CQ_ERR), as loopback does.
#ifndef FT_VERBS_RDMA_QUEUE_H_
#define FT_VERBS_RDMA_QUEUE_H_

#include <algorithm>
#include <cstdint>

#include "verbs/fabric.h"

namespace ft::verbs::rdma {

inline constexpr int kDefaultMaxSendWr = 256;
inline constexpr int kDefaultMaxRecvWr = 256;
inline constexpr int kDefaultCqDepth = 16384;
inline constexpr uint32_t kDefaultMaxInlineBytes = 256;

// How often a poller that streams requests should signal: a quarter of the queue.
constexpr int SignalInterval(int max_send_wr) { return max_send_wr >= 4 ? max_send_wr / 4 : 1; }
// QPs a CQ of cq_depth can serve with every request of every QP completing at once.
constexpr int QpsWithoutCqOverrun(int cq_depth, int max_send_wr, int max_recv_wr) {
  return cq_depth / (max_send_wr + max_recv_wr);
}
// CQ entries that `qps` QPs need so that the CQ can never overrun.
constexpr int64_t CqEntriesFor(int64_t qps, int max_send_wr, int max_recv_wr) {
  return qps * (int64_t{max_send_wr} + max_recv_wr);
}
// The depth to resize a CQ of `current` entries to when `needed` are needed: at least double,
// at most max_cqe; 0 when even max_cqe is too small (the QP must not be created).
constexpr int GrownCqDepth(int current, int64_t needed, int max_cqe) {
  if (needed <= current) return current;
  if (needed > max_cqe) return 0;
  const int64_t doubled = int64_t{current} * 2;
  return static_cast<int>(std::min<int64_t>(std::max(needed, doubled), max_cqe));
}

static_assert(SignalInterval(kDefaultMaxSendWr) * 4 == kDefaultMaxSendWr);
static_assert(kDefaultMaxSendWr / SignalInterval(kDefaultMaxSendWr) == 4,
              "four signaled completions per QP in flight at most");
static_assert(QpsWithoutCqOverrun(kDefaultCqDepth, kDefaultMaxSendWr, kDefaultMaxRecvWr) == 32,
              "the default CQ holds 32 QPs before its first resize");
static_assert(SignalInterval(1) == 1 && SignalInterval(8) == 2);
static_assert(CqEntriesFor(13, kDefaultMaxSendWr, kDefaultMaxRecvWr) <= kDefaultCqDepth,
              "an ordinary node's 13 QPs (k + m at defaults) never resize the default CQ");
static_assert(GrownCqDepth(16, 16, 4096) == 16, "enough: unchanged");
static_assert(GrownCqDepth(16, 20, 4096) == 32, "a little more: doubled");
static_assert(GrownCqDepth(16, 100, 4096) == 100, "much more: what is needed");
static_assert(GrownCqDepth(3000, 3001, 4096) == 4096, "never beyond max_cqe");
static_assert(GrownCqDepth(4096, 4097, 4096) == 0, "beyond max_cqe: refused");

// Requests chained into one ibv_post_send call, and completions reaped per ibv_poll_cq call:
// bounded stack arrays on the datapath.
inline constexpr int kPostChunk = 32;
inline constexpr int kPollBatch = 32;
static_assert(kPostChunk >= 1 && kPollBatch >= 1);
// SGE storage of one chunk lives on the stack too.
inline constexpr int kPostChunkSges = kPostChunk * kMaxSge;
static_assert(kPostChunkSges * 16 + kPostChunk * 128 <= 16 * 1024, "a chunk fits 16 KiB of stack");

// ibv wr_id of our requests: the position in the send queue, or kRecvTag | position in the
// receive queue. The caller's wr_id lives in a ring slot indexed by position % depth; a slot is
// reused only after its request retired (send) or completed (receive), since at most depth
// requests are outstanding.
inline constexpr uint64_t kRecvTag = uint64_t{1} << 63;

// RC connect private data (rdma_connect.3: 56 bytes for RDMA_PS_TCP) minus our header.
inline constexpr size_t kCmPrivateDataBytes = 56;
inline constexpr size_t kConnectHeaderBytes = 12;  // magic u16, version u8, length u8, from, to
inline constexpr size_t kMaxUserPrivateData = kCmPrivateDataBytes - kConnectHeaderBytes;
static_assert(kMaxUserPrivateData == 44);
static_assert(kMaxUserPrivateData <= 255, "the header's length field is one byte");

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_QUEUE_H_
