// A connection's QP (connection.h): the state machine (rc_pingpong.c's order, attributes from
// rdma_init_qp_attr.3), creating a QP after growing the CQ (queue.h, "CQ sizing"), releasing one.
#include "verbs/rdma/connection.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "verbs/rdma/queue.h"
#include "verbs/rdma/queue_pair.h"

namespace ft::verbs::rdma {
namespace {

Status ModifyQp(ibv_qp* qp, ibv_qp_attr& attr, int mask, const char* state) {
  if (const int rc = ibv_modify_qp(qp, &attr, mask); rc != 0) {
    return ErrnoStatus(rc, StrCat("ibv_modify_qp(", state, ")"));
  }
  return Status::Ok();
}

Status InitAttr(rdma_cm_id* id, ibv_qp_state state, ibv_qp_attr& attr, int& mask,
                const char* name) {
  attr = ibv_qp_attr{};
  attr.qp_state = state;
  if (rdma_init_qp_attr(id, &attr, &mask) != 0) {
    return ErrnoStatus(errno, StrCat("rdma_init_qp_attr(", name, ")"));
  }
  return Status::Ok();
}

Status ToInit(Conn& conn) {
  ibv_qp_attr attr;
  int mask = 0;
  FT_RETURN_IF_ERROR(InitAttr(conn.cm_id.get(), IBV_QPS_INIT, attr, mask, "INIT"));
  attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  return ModifyQp(conn.qp.get(), attr, mask | IBV_QP_ACCESS_FLAGS, "INIT");
}

// Makes the CQ deep enough for `qps` QPs (queue.h, "CQ sizing"). Caller holds mu and cq_mu.
Status GrowCqLocked(Core& core, int64_t qps) {
  const int current = core.cq->cqe;
  const int64_t needed = CqEntriesFor(qps, core.limits.max_send_wr, core.limits.max_recv_wr);
  if (needed <= current || core.options.testing_fixed_cq) return Status::Ok();
  const int max_cqe = core.device_attr.max_cqe;
  const int depth = GrownCqDepth(current, needed, max_cqe);
  if (depth == 0) {
    return CqGrowthFailure(0, needed, current, max_cqe)
        .WithContext(StrCat("node ", core.node, " (", core.info.device, ")"));
  }
  if (const int rc = ibv_resize_cq(core.cq.get(), depth); rc != 0) {
    return CqGrowthFailure(rc, needed, current, max_cqe)
        .WithContext(StrCat("node ", core.node, " (", core.info.device, ")"));
  }
  FT_LOG(kInfo) << "rdma: node " << core.node << " CQ grown from " << current << " to "
                << core.cq->cqe << " entries for " << qps << " queue pairs";
  return Status::Ok();
}

}  // namespace

// responder_resources: the passive side's accepted value (0: what the CM negotiated).
Status ToRtr(Conn& conn, uint8_t responder_resources) {
  const Core& core = conn.core;
  ibv_qp_attr attr;
  int mask = 0;
  FT_RETURN_IF_ERROR(InitAttr(conn.cm_id.get(), IBV_QPS_RTR, attr, mask, "RTR"));
  // rdma_ucm reports RoCE-only mask bits (21-24) on InfiniBand too (librdmacm's workaround).
  if (core.port_attr.link_layer == IBV_LINK_LAYER_INFINIBAND) mask &= ~0xe00000;
  attr.min_rnr_timer = core.options.min_rnr_timer;
  mask |= IBV_QP_MIN_RNR_TIMER;
  if (responder_resources != 0) attr.max_dest_rd_atomic = responder_resources;
  attr.path_mtu = std::min(attr.path_mtu, core.port_attr.active_mtu);
  if (core.gid.index >= 0 && attr.ah_attr.is_global) {
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(core.gid.index);
  }
  return ModifyQp(conn.qp.get(), attr, mask, "RTR");
}

// initiator_depth: the passive side's accepted value (0: what the CM negotiated).
Status ToRts(Conn& conn, uint8_t initiator_depth) {
  const RdmaOptions& options = conn.core.options;
  ibv_qp_attr attr;
  int mask = 0;
  FT_RETURN_IF_ERROR(InitAttr(conn.cm_id.get(), IBV_QPS_RTS, attr, mask, "RTS"));
  attr.timeout = options.ack_timeout;
  attr.retry_cnt = options.retry_count;
  attr.rnr_retry = options.rnr_retry;
  mask |= IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY;
  if (initiator_depth != 0) attr.max_rd_atomic = initiator_depth;
  return ModifyQp(conn.qp.get(), attr, mask, "RTS");
}

// Fencing: nothing the peer posts lands after this returns, our work flushes.
void ToError(ibv_qp* qp) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (const int rc = ibv_modify_qp(qp, &attr, IBV_QP_STATE); rc != 0) {
    FT_LOG(kError) << "rdma: ibv_modify_qp(ERR) failed: " << std::strerror(rc);
  }
}

// Creates the QP of `conn`, registers it for completions, moves it to INIT and posts the
// attempt's receives there, before the peer can know the QP. Caller holds mu.
Status CreateQpLocked(Core& core, Conn& conn, std::span<const RecvRequest> receives) {
  // The CQ grows before the QP exists, so that no completion of it can find the CQ full; under
  // cq_mu, so that no ibv_poll_cq or ibv_req_notify_cq runs during ibv_resize_cq (the man page
  // promises nothing about concurrent use; every call on the CQ is made under cq_mu). Under mu
  // too, so no other QP is created or destroyed meanwhile: by_qp_num counts them all.
  std::unique_lock cq_lock(core.cq_mu);
  FT_RETURN_IF_ERROR(GrowCqLocked(core, static_cast<int64_t>(core.by_qp_num.size()) + 1));
  ibv_qp_init_attr init{};
  init.send_cq = core.cq.get();
  init.recv_cq = core.cq.get();
  init.qp_type = IBV_QPT_RC;
  init.sq_sig_all = 0;
  init.cap.max_send_wr = static_cast<uint32_t>(core.limits.max_send_wr);
  init.cap.max_recv_wr = static_cast<uint32_t>(core.limits.max_recv_wr);
  init.cap.max_send_sge = kMaxSge;
  init.cap.max_recv_sge = 1;
  init.cap.max_inline_data = core.limits.max_inline_bytes;
  conn.qp = Own<&ibv_destroy_qp>(ibv_create_qp(core.pd.get(), &init));
  if (conn.qp == nullptr) {
    return ErrnoStatus(errno, StrCat("ibv_create_qp for node ", core.node, " to node ", conn.peer));
  }
  conn.qp_num = conn.qp->qp_num;
  core.by_qp_num[conn.qp_num] = &conn;
  cq_lock.unlock();
  FT_RETURN_IF_ERROR(ToInit(conn));
  return PostReceives(core, conn, receives, nullptr);
}

// Destroys a connection: its QP (dropping its unpolled completions) and its cm id. Caller holds
// mu. `disconnect`: tell the peer first (DREQ).
void ReleaseConnLocked(Core& core, std::unique_ptr<Conn> conn, bool disconnect) {
  if (conn == nullptr) return;
  if (conn->qp != nullptr) {
    // Forgotten before it is fenced: the flushes of its requests (say the receives a failed
    // Connect posted) are discarded by whichever thread reaps them.
    {
      std::lock_guard lock(core.cq_mu);
      core.by_qp_num.erase(conn->qp_num);
    }
    ToError(conn->qp.get());
  }
  if (disconnect && conn->established && conn->cm_id != nullptr) {
    rdma_disconnect(conn->cm_id.get());
  }
  if (conn->cm_id != nullptr) core.conns.erase(conn->cm_id.get());
  core.live.erase(conn.get());
  if (conn->qp != nullptr) {
    std::lock_guard lock(core.cq_mu);
    conn->qp.reset();
    // The CQ may still hold completions of the destroyed QP, and its qp_num may be reused:
    // move what the CQ holds to the backlog now (the QP's own entries are dropped), and forget
    // the backlog entries of this QP.
    for (int i = 0; i <= core.cq->cqe / kPollBatch; ++i) {
      if (ReapLocked(core, kPollBatch) < kPollBatch) break;
    }
    std::erase_if(core.backlog, [&](const Reaped& r) { return r.conn == conn.get(); });
  }
  conn->cm_id.reset();
}

std::unique_ptr<Conn> NewConn(Core& core, NodeId peer) {
  return std::make_unique<Conn>(core, peer, core.next_qp_id.fetch_add(1), core.limits.max_send_wr,
                                core.limits.max_recv_wr);
}

rdma_conn_param ConnParam(const Core& core, const std::vector<std::byte>& data, uint32_t qp_num,
                          uint8_t responder_resources, uint8_t initiator_depth) {
  rdma_conn_param param{};
  param.private_data = data.data();
  param.private_data_len = static_cast<uint8_t>(data.size());
  param.responder_resources = responder_resources;
  param.initiator_depth = initiator_depth;
  param.retry_count = core.options.retry_count;
  param.rnr_retry_count = core.options.rnr_retry;
  param.qp_num = qp_num;
  return param;
}

}  // namespace ft::verbs::rdma
