// The datapath (queue_pair.h): posting sends (RdmaQueuePair) and receives, and reaping
// completions, turning each back into the caller's wr_id and our WcStatus.
#include "verbs/rdma/queue_pair.h"

#include <algorithm>
#include <cerrno>
#include <utility>

#include "common/log.h"
#include "verbs/rdma/connection.h"
#include "verbs/rdma/queue.h"

namespace ft::verbs::rdma {

int ReapLocked(Core& core, int max) {
  ibv_wc wc[kPollBatch];
  int total = 0;
  while (total < max) {
    const int want = std::min(kPollBatch, max - total);
    const int n = ibv_poll_cq(core.cq.get(), want, wc);
    if (n < 0) {
      if (!core.cq_failed) {
        core.cq_failed = true;
        core.PushEvent(Event{.type = EventType::kDeviceError,
                             .peer = kInvalidNode,
                             .qp = 0,
                             .detail = StrCat("ibv_poll_cq failed on node ", core.node)});
      }
      return total;
    }
    for (int i = 0; i < n; ++i) {
      auto it = core.by_qp_num.find(wc[i].qp_num);
      if (it == core.by_qp_num.end()) continue;  // a destroyed QP's completion: discarded
      Conn& conn = *it->second;
      Reaped reaped;
      reaped.conn = &conn;
      Completion& c = reaped.completion;
      c.qp = conn.id;
      if ((wc[i].wr_id & kRecvTag) != 0) {
        const uint64_t position = wc[i].wr_id & ~kRecvTag;
        const RecvSlot& slot = conn.recv_slots[position % conn.recv_capacity];
        c.wr_id = slot.wr_id.load(std::memory_order_relaxed);
        c.opcode = Opcode::kRecv;
        WcContext context{.receive = true, .opcode = Opcode::kRecv};
        if (core.dialect == WcDialect::kSoftRoce && wc[i].status == IBV_WC_LOC_QP_OP_ERR) {
          context.receive_buffer_registered =
              core.LocallyWritable(slot.addr.load(std::memory_order_relaxed),
                                   slot.length.load(std::memory_order_relaxed),
                                   slot.lkey.load(std::memory_order_relaxed));
        }
        c.status = WcStatusFromIbv(wc[i].status, core.dialect, context);
        c.bytes = c.status == WcStatus::kSuccess ? wc[i].byte_len : 0;
        conn.recv_done.fetch_add(1, std::memory_order_release);
      } else {
        const uint64_t position = wc[i].wr_id;
        const SendSlot& slot = conn.send_slots[position % conn.send_capacity];
        c.wr_id = slot.wr_id.load(std::memory_order_relaxed);
        c.opcode = static_cast<Opcode>(slot.opcode.load(std::memory_order_relaxed));
        c.status = WcStatusFromIbv(wc[i].status, core.dialect, WcContext{.opcode = c.opcode});
        c.bytes = c.status == WcStatus::kSuccess ? slot.bytes.load(std::memory_order_relaxed) : 0;
        reaped.retire = position + 1;
      }
      if (c.status != WcStatus::kSuccess) {
        FT_LOG(kDebug) << "rdma: node " << core.node << " queue pair " << conn.id << " "
                       << OpcodeName(c.opcode) << " wr_id " << c.wr_id << ": "
                       << ibv_wc_status_str(wc[i].status) << " (vendor error " << wc[i].vendor_err
                       << ")";
      }
      if (c.status != WcStatus::kSuccess && conn.SetCause(Cause::kFailed)) {
        core.PushEvent(Event{
            .type = EventType::kQpError,
            .peer = conn.peer,
            .qp = conn.id,
            .detail = StrCat(OpcodeName(c.opcode), " wr_id ", c.wr_id, " on queue pair ", conn.id,
                             " (node ", core.node, " to node ", conn.peer, ") failed: ",
                             WcStatusName(c.status), " (", ibv_wc_status_str(wc[i].status), ")")});
      }
      core.backlog.push_back(reaped);
    }
    total += n;
    if (n < want) break;  // the CQ is empty
  }
  return total;
}

void RetireUpTo(Conn& conn, uint64_t position) {
  uint64_t current = conn.retired.load(std::memory_order_relaxed);
  while (current < position &&
         !conn.retired.compare_exchange_weak(current, position, std::memory_order_release)) {
  }
}

Status PostReceives(Core& core, Conn& c, std::span<const RecvRequest> requests, size_t* posted) {
  if (posted != nullptr) *posted = 0;
  const auto max_recv = static_cast<uint64_t>(core.limits.max_recv_wr);
  std::lock_guard lock(c.recv_mu);
  size_t done = 0;
  Status status;
  while (done < requests.size() && status.ok()) {
    ibv_recv_wr wrs[kPostChunk];
    ibv_sge sges[kPostChunk];
    int n = 0;
    const uint64_t outstanding = c.next_recv - c.recv_done.load(std::memory_order_acquire);
    for (; n < kPostChunk && done + static_cast<size_t>(n) < requests.size(); ++n) {
      if (outstanding + static_cast<uint64_t>(n) >= max_recv) {
        status =
            Status::ResourceExhausted("PostRecv on queue pair ", c.id, ": receive queue full (",
                                      max_recv, " posted receives, max_recv_wr)");
        break;
      }
      const RecvRequest& r = requests[done + static_cast<size_t>(n)];
      const uint64_t position = c.next_recv + static_cast<uint64_t>(n);
      RecvSlot& slot = c.recv_slots[position % c.recv_capacity];
      slot.wr_id.store(r.wr_id, std::memory_order_relaxed);
      slot.addr.store(r.sge.addr, std::memory_order_relaxed);
      slot.length.store(r.sge.length, std::memory_order_relaxed);
      slot.lkey.store(r.sge.lkey, std::memory_order_relaxed);
      ibv_recv_wr& wr = wrs[n];
      wr = ibv_recv_wr{};
      wr.wr_id = kRecvTag | position;
      if (r.sge.length > 0) {
        sges[n] = ibv_sge{.addr = r.sge.addr, .length = r.sge.length, .lkey = r.sge.lkey};
        wr.sg_list = &sges[n];
        wr.num_sge = 1;
      }
      if (n > 0) wrs[n - 1].next = &wr;
    }
    if (n == 0) break;
    ibv_recv_wr* bad = nullptr;
    if (const int rc = ibv_post_recv(c.qp.get(), wrs, &bad); rc != 0) {
      const int accepted = bad != nullptr ? static_cast<int>(bad - wrs) : 0;
      status = ErrnoStatus(rc, StrCat("ibv_post_recv on queue pair ", c.id));
      n = std::clamp(accepted, 0, n);
    }
    c.next_recv += static_cast<uint64_t>(n);
    done += static_cast<size_t>(n);
  }
  if (posted != nullptr) *posted = done;
  // Receives posted on a QP in error complete kFlushed. soft-RoCE flushes its receive queue
  // only on a transition to the error state: make one.
  if (done > 0 && c.cause.load() != Cause::kNone) rdma::ToError(c.qp.get());
  return status;
}

namespace {

ibv_wr_opcode IbvOpcode(Opcode opcode) {
  switch (opcode) {
    case Opcode::kWrite:
      return IBV_WR_RDMA_WRITE;
    case Opcode::kRead:
      return IBV_WR_RDMA_READ;
    default:
      return IBV_WR_SEND;
  }
}

class RdmaQueuePair final : public QueuePair {
 public:
  RdmaQueuePair(std::shared_ptr<Core> core, std::unique_ptr<Conn> conn)
      : core_(std::move(core)), conn_(std::move(conn)) {}
  ~RdmaQueuePair() override {
    std::lock_guard lock(core_->mu);
    ReleaseConnLocked(*core_, std::move(conn_), /*disconnect=*/true);
  }
  RdmaQueuePair(const RdmaQueuePair&) = delete;
  RdmaQueuePair& operator=(const RdmaQueuePair&) = delete;

  uint32_t id() const override { return conn_->id; }
  NodeId peer() const override { return conn_->peer; }
  std::span<const std::byte> peer_private_data() const override { return conn_->peer_data; }
  QpState state() const override {
    return conn_->cause.load() != Cause::kNone || core_->dead.load() ? QpState::kError
                                                                     : QpState::kConnected;
  }

  Status PostSend(std::span<const SendRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    Conn& c = *conn_;
    if (core_->dead.load()) {
      return Status::Unavailable("PostSend on queue pair ", c.id, ": node ", core_->node,
                                 " is gone (its Fabric was destroyed)");
    }
    const Limits& limits = core_->limits;
    std::lock_guard lock(c.send_mu);
    size_t done = 0;
    Status status;
    while (done < requests.size() && status.ok()) {
      ibv_send_wr wrs[kPostChunk];
      ibv_sge sges[kPostChunkSges];
      int n = 0;
      int used_sges = 0;
      const uint64_t outstanding = c.next_send - c.retired.load(std::memory_order_acquire);
      for (; n < kPostChunk && done + static_cast<size_t>(n) < requests.size(); ++n) {
        const size_t index = done + static_cast<size_t>(n);
        const SendRequest& r = requests[index];
        uint64_t bytes = 0;
        status = ValidateSendRequest(r, index, limits, &bytes);
        if (!status.ok()) break;
        if (outstanding + static_cast<uint64_t>(n) >= static_cast<uint64_t>(limits.max_send_wr)) {
          status = Status::ResourceExhausted(
              "PostSend on queue pair ", c.id, ": send queue full (", limits.max_send_wr,
              " requests outstanding, max_send_wr); poll a signaled completion to free slots");
          break;
        }
        const uint64_t position = c.next_send + static_cast<uint64_t>(n);
        SendSlot& slot = c.send_slots[position % c.send_capacity];
        slot.wr_id.store(r.wr_id, std::memory_order_relaxed);
        slot.bytes.store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
        slot.opcode.store(static_cast<uint8_t>(r.opcode), std::memory_order_relaxed);
        ibv_send_wr& wr = wrs[n];
        wr = ibv_send_wr{};
        wr.wr_id = position;
        wr.opcode = IbvOpcode(r.opcode);
        wr.sg_list = &sges[used_sges];
        for (int i = 0; i < r.num_sge; ++i) {
          if (r.sge[i].length == 0) continue;  // some HCAs read a zero length as 2 GiB
          sges[used_sges++] =
              ibv_sge{.addr = r.sge[i].addr, .length = r.sge[i].length, .lkey = r.sge[i].lkey};
          ++wr.num_sge;
        }
        if (wr.num_sge == 0) wr.sg_list = nullptr;
        if (r.signaled) wr.send_flags |= IBV_SEND_SIGNALED;
        if (r.inline_data) wr.send_flags |= IBV_SEND_INLINE;
        if (r.opcode != Opcode::kSend) {
          wr.wr.rdma.remote_addr = r.remote_addr;
          wr.wr.rdma.rkey = r.rkey;
        }
        wr.next = nullptr;
        if (n > 0) wrs[n - 1].next = &wr;
      }
      if (n == 0) break;
      ibv_send_wr* bad = nullptr;
      if (const int rc = ibv_post_send(c.qp.get(), wrs, &bad); rc != 0) {
        const int accepted = bad != nullptr ? static_cast<int>(bad - wrs) : 0;
        status = rc == ENOMEM ? Status::ResourceExhausted("PostSend on queue pair ", c.id,
                                                          ": the device's send queue is full")
                              : ErrnoStatus(rc, StrCat("ibv_post_send on queue pair ", c.id));
        n = std::clamp(accepted, 0, n);
      }
      c.next_send += static_cast<uint64_t>(n);
      done += static_cast<size_t>(n);
    }
    if (posted != nullptr) *posted = done;
    return status;
  }

  Status PostRecv(std::span<const RecvRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    if (core_->dead.load()) {
      return Status::Unavailable("PostRecv on queue pair ", conn_->id, ": node ", core_->node,
                                 " is gone (its Fabric was destroyed)");
    }
    return PostReceives(*core_, *conn_, requests, posted);
  }

  void ToError() override {
    conn_->SetCause(Cause::kFenced);
    rdma::ToError(conn_->qp.get());
  }

 private:
  std::shared_ptr<Core> core_;
  std::unique_ptr<Conn> conn_;
};

}  // namespace

std::unique_ptr<QueuePair> MakeQueuePair(std::shared_ptr<Core> core, std::unique_ptr<Conn> conn) {
  return std::make_unique<RdmaQueuePair>(std::move(core), std::move(conn));
}

}  // namespace ft::verbs::rdma
