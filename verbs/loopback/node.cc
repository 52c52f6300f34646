// Helpers on loopback nodes (model.h): draining, freezing and waking a node, its completion queue
// (with CQ overrun) and events, and the failure and destruction of queue pair ends.
#include "verbs/loopback/model.h"

#include "common/log.h"

namespace ft::verbs::loopback {

// Waits until no copy touches n's memory. Called after setting a flag that stops new copies.
void Drain(Node& n) { std::unique_lock lock(n.mem); }

// Blocks while n is frozen (Freeze), returning when it is thawed or dies. Callers hold no lock:
// a frozen node must not stop its peers' access to its memory and queues.
void AwaitThaw(Node& n) {
  if (!n.frozen.load()) return;
  std::unique_lock lock(n.freeze_mu);
  n.thaw_cv.wait(lock, [&] { return !n.frozen.load() || n.dead.load(); });
}

// Sets or clears n's frozen flag; clearing it (Thaw, or death after `dead` was set) releases
// every call waiting in AwaitThaw.
void SetFrozen(Node& n, bool frozen) {
  {
    std::lock_guard lock(n.freeze_mu);
    n.frozen.store(frozen);
  }
  if (!frozen) n.thaw_cv.notify_all();
}

// Wakes WaitForActivity after a change made without holding n.mu.
void Wake(Node& n) {
  if (n.waiters.load() == 0) return;
  { std::lock_guard lock(n.mu); }
  n.cv.notify_all();
}

void PushEvent(Node& n, Event event) {
  std::lock_guard lock(n.mu);
  n.events.push_back(std::move(event));
  n.cv.notify_all();
}

// Appends a completion to n's CQ. A full CQ overruns: the completion is lost, the node gets one
// kDeviceError event and every QP of the node moves to the error state.
void PushCompletion(Node& n, const Completion& completion, End* end, uint64_t seq) {
  std::lock_guard lock(n.mu);
  if (end != nullptr && end->destroyed.load()) return;  // unpolled completions are discarded
  const int depth = n.net->options.limits.cq_depth;
  if (n.cq.size() >= static_cast<size_t>(depth)) {
    if (!n.cq_overrun) {
      n.cq_overrun = true;
      n.events.push_back(Event{.type = EventType::kDeviceError,
                               .peer = kInvalidNode,
                               .qp = 0,
                               .detail = StrCat("CQ overrun: node ", n.id, " had ", depth,
                                                " unpolled completions (cq_depth)")});
      for (auto& [id, e] : n.ends) e->error.store(true);
      n.flush_pending.store(true);
      FT_LOG(kWarn) << "loopback: CQ overrun on node " << n.id;
    }
    n.cv.notify_all();
    return;
  }
  n.cq.push_back(CqEntry{completion, end, seq});
  if (n.waiters.load() > 0) n.cv.notify_all();
}

void Retire(End& e, uint64_t seq) {
  uint64_t current = e.retired.load();
  while (current < seq + 1 && !e.retired.compare_exchange_weak(current, seq + 1)) {
  }
}

// Gives pe's node a kDisconnected event, once per End.
void NotifyDisconnected(End& pe, NodeId from, std::string detail) {
  if (pe.destroyed.load() || pe.disconnect_notified.exchange(true)) return;
  PushEvent(*pe.node, Event{.type = EventType::kDisconnected,
                            .peer = from,
                            .qp = pe.id,
                            .detail = std::move(detail)});
}

// Moves e to the error state because of a failure; the first time, its node gets kQpError.
void FailEnd(End& e, std::string detail) {
  if (e.error.exchange(true)) return;
  Node& n = *e.node;
  n.flush_pending.store(true);
  PushEvent(n, Event{.type = EventType::kQpError,
                     .peer = e.peer_rank,
                     .qp = e.id,
                     .detail = std::move(detail)});
}

// Destroys one End (idempotent): drops its queues and unpolled completions, tells the peer, and
// waits out copies touching this node's memory.
void DestroyEnd(End& e) {
  Node& n = *e.node;
  {
    std::lock_guard lock(e.mu);
    if (e.destroyed.exchange(true)) return;
    const auto dropped = static_cast<int64_t>(e.sq.size());
    e.pending.fetch_sub(dropped);
    n.queued.fetch_sub(dropped);
    e.sq.clear();
    e.rq.clear();
  }
  {
    std::lock_guard lock(n.mu);
    n.ends.erase(e.id);
    ++n.ends_version;
    std::erase_if(n.cq, [&](const CqEntry& entry) { return entry.end == &e; });
  }
  NotifyDisconnected(*e.peer, n.id, StrCat("node ", n.id, " destroyed its queue pair ", e.id));
  Drain(n);
}

std::vector<std::shared_ptr<End>> SnapshotEnds(Node& n) {
  std::lock_guard lock(n.mu);
  std::vector<std::shared_ptr<End>> ends;
  ends.reserve(n.ends.size());
  for (auto& [id, e] : n.ends) ends.push_back(e);
  return ends;  // sorted by id: `ends` is a std::map
}

}  // namespace ft::verbs::loopback
