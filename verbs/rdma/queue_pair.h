// The datapath (internal; see core.h): posting receives, reaping completions from the CQ into
// the backlog, and the QueuePair that posts sends.
#ifndef FT_VERBS_RDMA_QUEUE_PAIR_H_
#define FT_VERBS_RDMA_QUEUE_PAIR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "verbs/rdma/core.h"

namespace ft::verbs::rdma {

// Moves up to `max` completions from the CQ into the backlog. Caller holds cq_mu.
int ReapLocked(Core& core, int max);
// Retires the send requests of `conn` below `position` (their slots may be reused).
void RetireUpTo(Conn& conn, uint64_t position);
// Posts receives on `conn`'s QP (INIT or later), recording each in its slot for the poller.
Status PostReceives(Core& core, Conn& c, std::span<const RecvRequest> requests, size_t* posted);

// The QueuePair of a connected `conn` (Connect hands these out).
std::unique_ptr<QueuePair> MakeQueuePair(std::shared_ptr<Core> core, std::unique_ptr<Conn> conn);

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_QUEUE_PAIR_H_
