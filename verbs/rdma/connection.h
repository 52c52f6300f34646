// A connection's QP (internal; see core.h): the QP state machine, creating a QP (the CQ grows
// first, so that it can never overrun) and releasing a connection.
#ifndef FT_VERBS_RDMA_CONNECTION_H_
#define FT_VERBS_RDMA_CONNECTION_H_

#include <rdma/rdma_cma.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "verbs/rdma/core.h"

namespace ft::verbs::rdma {

// QP transitions after INIT (rc_pingpong.c's order, attributes from rdma_init_qp_attr.3).
// responder_resources / initiator_depth: the passive side's accepted values (0: what the CM
// negotiated).
Status ToRtr(Conn& conn, uint8_t responder_resources);
Status ToRts(Conn& conn, uint8_t initiator_depth);
// Fencing: nothing the peer posts lands after this returns, our work flushes.
void ToError(ibv_qp* qp);

// Creates the QP of `conn` (growing the CQ first when it could not hold one more QP's worst
// case: ResourceExhausted when it cannot grow), registers it for completions, moves it to INIT
// and posts `receives` there, before the peer can know the QP. Caller holds mu.
Status CreateQpLocked(Core& core, Conn& conn, std::span<const RecvRequest> receives);
// Destroys a connection: its QP (dropping its unpolled completions) and its cm id. Caller holds
// mu. `disconnect`: tell the peer first (DREQ).
void ReleaseConnLocked(Core& core, std::unique_ptr<Conn> conn, bool disconnect);
std::unique_ptr<Conn> NewConn(Core& core, NodeId peer);
// rdma_connect / rdma_accept parameters carrying `data`; `data` must outlive the call.
rdma_conn_param ConnParam(const Core& core, const std::vector<std::byte>& data, uint32_t qp_num,
                          uint8_t responder_resources, uint8_t initiator_depth);

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_CONNECTION_H_
