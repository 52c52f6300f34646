// Execution in loopback (model.h): a progress step of a node runs its queue pairs' posted requests
// in order per QP, checks keys at both ends, copies the bytes and reports completions.
#include "verbs/loopback/model.h"

#include <algorithm>
#include <cstring>

namespace ft::verbs::loopback {
namespace {

enum class Outcome : uint8_t {
  kDone,     // completed with `status`
  kBlocked,  // the head must wait (RNR): put it back and stop this QP for this step
  kStopped,  // this node died: execute nothing more
};

struct ExecResult {
  Outcome outcome = Outcome::kDone;
  WcStatus status = WcStatus::kSuccess;
};

bool Reachable(const Node& n, const End& pe, const Node& pn) {
  return !pn.dead.load() && !pe.destroyed.load() && !pe.error.load() &&
         !n.net->Partitioned(n.id, pn.id);
}

ExecResult Execute(Node& n, End& e, Pending& p) {
  End& pe = *e.peer;
  Node& pn = *pe.node;
  const SendRequest& r = p.req;
  ExecResult result;
  // The receiver's side of a SEND, applied after the locks are released.
  bool recv_consumed = false;
  RecvRequest recv;
  WcStatus recv_status = WcStatus::kSuccess;
  bool peer_fails = false;  // the responder QP goes to error too (RC responder errors)
  {
    SharedLockPair locks(n, pn);
    if (n.dead.load()) return {Outcome::kStopped, WcStatus::kFatal};
    std::array<std::byte*, kMaxSge> local{};
    const uint32_t local_need = r.opcode == Opcode::kRead ? uint32_t{kAccessLocalWrite} : 0u;
    if (p.inline_bad_lkey ||
        (!r.inline_data && !ResolveLocal(n, r.sge, r.num_sge, local_need, local))) {
      return {Outcome::kDone, WcStatus::kLocalProtectionError};
    }
    if (!Reachable(n, pe, pn)) return {Outcome::kDone, WcStatus::kRetryExceeded};
    switch (r.opcode) {
      case Opcode::kWrite: {
        if (p.bytes == 0) break;  // a zero-length WRITE checks no rkey (IB spec)
        std::byte* dst = ResolveRemote(pn, r.rkey, r.remote_addr, p.bytes, kAccessRemoteWrite);
        if (dst == nullptr) {
          result.status = WcStatus::kRemoteAccessError;
          peer_fails = true;
        } else if (r.inline_data) {
          std::memmove(dst, p.payload.data(), p.bytes);
        } else {
          Gather(dst, r.sge, local, r.num_sge, p.bytes);
        }
        break;
      }
      case Opcode::kRead: {
        if (p.bytes == 0) break;
        std::byte* src = ResolveRemote(pn, r.rkey, r.remote_addr, p.bytes, kAccessRemoteRead);
        if (src == nullptr) {
          result.status = WcStatus::kRemoteAccessError;
          peer_fails = true;
        } else {
          Scatter(src, r.sge, local, r.num_sge);
        }
        break;
      }
      case Opcode::kSend: {
        bool have_recv = false;
        {
          std::lock_guard lock(pe.mu);
          if (!pe.rq.empty()) {
            recv = pe.rq.front();
            pe.rq.pop_front();
            have_recv = true;
          }
        }
        if (!have_recv) {
          if (p.rnr_retries < n.net->options.rnr_retry_steps) {
            ++p.rnr_retries;
            return {Outcome::kBlocked, WcStatus::kSuccess};
          }
          result.status = WcStatus::kRnrRetryExceeded;
          break;
        }
        recv_consumed = true;
        std::array<std::byte*, kMaxSge> target{};
        if (p.bytes > recv.sge.length) {
          recv_status = WcStatus::kLocalLengthError;
        } else if (!ResolveLocal(pn, &recv.sge, 1, kAccessLocalWrite, target)) {
          recv_status = WcStatus::kLocalProtectionError;
        } else if (p.bytes > 0) {
          if (r.inline_data) {
            std::memmove(target[0], p.payload.data(), p.bytes);
          } else {
            Gather(target[0], r.sge, local, r.num_sge, p.bytes);
          }
        }
        if (recv_status != WcStatus::kSuccess) {
          result.status = WcStatus::kRemoteInvalidRequest;
          peer_fails = true;
        }
        break;
      }
      case Opcode::kRecv:
        result.status = WcStatus::kFatal;  // rejected at post time
        break;
    }
  }
  if (recv_consumed) {
    PushCompletion(
        pn,
        Completion{.wr_id = recv.wr_id,
                   .qp = pe.id,
                   .status = recv_status,
                   .opcode = Opcode::kRecv,
                   .bytes = recv_status == WcStatus::kSuccess ? static_cast<uint32_t>(p.bytes) : 0},
        &pe, kNoSeq);
  }
  if (peer_fails) {
    FailEnd(pe, StrCat("responder error on queue pair ", pe.id, " from node ", n.id, ": ",
                       recv_consumed ? WcStatusName(recv_status) : "remote access error", " (",
                       OpcodeName(r.opcode), ")"));
  }
  return result;
}

// Reports a finished request: a completion when signaled or failed, the error state and a
// kQpError event on the first failure.
void Finish(Node& n, End& e, const Pending& p, WcStatus status) {
  if (status != WcStatus::kSuccess || p.req.signaled) {
    PushCompletion(
        n,
        Completion{.wr_id = p.req.wr_id,
                   .qp = e.id,
                   .status = status,
                   .opcode = p.req.opcode,
                   .bytes = status == WcStatus::kSuccess ? static_cast<uint32_t>(p.bytes) : 0},
        &e, p.seq);
  }
  if (status != WcStatus::kSuccess && status != WcStatus::kFlushed) {
    FailEnd(e, StrCat(OpcodeName(p.req.opcode), " wr_id ", p.req.wr_id, " on queue pair ", e.id,
                      " to node ", e.peer_rank, " failed: ", WcStatusName(status)));
  }
  e.pending.fetch_sub(1);
  n.queued.fetch_sub(1);
}

struct StepBudget {
  size_t requests = kStepMaxRequests;
  uint64_t bytes = kStepMaxBytes;
  bool exhausted() const { return requests == 0 || bytes == 0; }
};

// Executes e's queue in order until it is empty, its head must wait, the budget runs out or the
// node dies. Returns false when the node died. Caller holds n.progress_mu.
bool RunEnd(Node& n, End& e, uint64_t step, StepBudget& budget) {
  bool alive = true;
  while (!budget.exhausted()) {
    Pending p;
    bool flush = false;
    {
      std::lock_guard lock(e.mu);
      if (e.destroyed.load() || e.sq.empty()) break;
      flush = e.error.load();
      if (!flush && e.sq.front().ready_step > step) break;  // a delayed head blocks the QP
      p = std::move(e.sq.front());
      e.sq.pop_front();
    }
    --budget.requests;
    if (flush) {
      Finish(n, e, p, WcStatus::kFlushed);
      continue;
    }
    const ExecResult result = Execute(n, e, p);
    if (result.outcome != Outcome::kDone) {
      std::lock_guard lock(e.mu);
      if (e.destroyed.load()) {
        e.pending.fetch_sub(1);
        n.queued.fetch_sub(1);
      } else {
        e.sq.push_front(std::move(p));
      }
      alive = result.outcome != Outcome::kStopped;
      break;
    }
    budget.bytes -= std::min(budget.bytes, p.bytes);
    Finish(n, e, p, result.status);
  }
  if (alive && e.error.load()) {
    std::deque<RecvRequest> flushed;
    {
      std::lock_guard lock(e.mu);
      if (!e.destroyed.load()) flushed.swap(e.rq);
    }
    for (const RecvRequest& recv : flushed) {
      PushCompletion(n,
                     Completion{.wr_id = recv.wr_id,
                                .qp = e.id,
                                .status = WcStatus::kFlushed,
                                .opcode = Opcode::kRecv},
                     &e, kNoSeq);
    }
  }
  return alive;
}

}  // namespace

// One progress step of node n.
void Progress(Node& n) {
  std::unique_lock progress(n.progress_mu, std::try_to_lock);
  if (!progress.owns_lock()) return;  // another thread is making progress
  // A frozen node executes nothing; the caller checks again before reaping and waits for Thaw.
  if (n.dead.load() || n.frozen.load()) return;
  const uint64_t step = n.step.fetch_add(1) + 1;
  const bool flush = n.flush_pending.exchange(false);
  if (!flush && n.queued.load() == 0) return;
  {
    std::lock_guard lock(n.mu);
    if (n.exec_version != n.ends_version) {
      n.exec_ends.clear();
      for (auto& [id, e] : n.ends) n.exec_ends.push_back(e);
      n.exec_version = n.ends_version;
    }
  }
  const size_t count = n.exec_ends.size();
  if (count == 0) return;
  const size_t start = n.cursor++ % count;
  StepBudget budget;
  for (size_t i = 0; i < count; ++i) {
    if (budget.exhausted()) {
      if (flush) n.flush_pending.store(true);  // finish flushing on the next step
      break;
    }
    End& e = *n.exec_ends[(start + i) % count];
    if (e.pending.load() == 0 && !(flush && e.error.load())) continue;
    if (!RunEnd(n, e, step, budget)) break;
  }
}

}  // namespace ft::verbs::loopback
