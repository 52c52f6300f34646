// FaultyFabric (see faulty.h): the decorator, and the bookkeeping that injects faults while keeping
// RC order. The rules and their matching are in controller.cc.
//
// How faults keep RC order. Every request handed to the wrapped QP is recorded, in post order,
// in its QP's `inflight` list; a polled completion of the QP retires the entries up to the one
// it reports (completions of one QP arrive in post order; an unsignaled success reports none).
// A failed or dropped request is handed to the wrapped QP as a zero-length WRITE "marker" with
// the request's wr_id (a zero-length WRITE checks no rkey, IB spec): its completion proves that
// everything before it executed, and is then reported as the injected outcome. While a failing
// marker is in flight, later requests of its QP are held here, so none of them executes before
// the QP is fenced (ToError); afterwards they are handed on and the wrapped QP flushes them.
#include "verbs/faulty/faulty.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <unordered_map>
#include <utility>

#include "common/check.h"
#include "common/log.h"

namespace ft::verbs {

// ---------------------------------------------------------------------------------------------
// FaultyFabric state

namespace {

// A private copy of a payload, registered with the wrapped fabric. Members in creation order:
// the registration goes before the memory under it.
struct Bounce {
  std::vector<std::byte> bytes;
  std::unique_ptr<MemoryRegion> mr;
};

enum class Kind : uint8_t {
  kPlain,       // the request as posted (perhaps from a bounce copy)
  kFailMarker,  // a failed request's marker: on success report fail_status and fence the QP
  kDropMarker,  // a dropped request's marker: report the request's success
  kReadFlip,    // a READ whose landed bytes are flipped when it succeeds
};

// A request handed to the wrapped QP, until a completion retires it.
struct InFlight {
  uint64_t wr_id = 0;
  bool inner_signaled = true;  // as handed on (markers of kFail and kReadFlip are always signaled)
  Kind kind = Kind::kPlain;
  bool user_signaled = true;
  Opcode user_opcode = Opcode::kWrite;
  uint32_t user_bytes = 0;
  WcStatus fail_status = WcStatus::kSuccess;
  std::vector<Sge> read_sges;  // kReadFlip
  std::vector<uint64_t> flip_offsets;
  uint8_t flip_mask = 0;
  std::unique_ptr<Bounce> bounce;  // freed when retired
};

struct Prepared {
  SendRequest request;  // what the wrapped QP gets
  InFlight entry;
};

// A request held here (delayed, or behind a held or failing one).
struct HeldSend {
  SendRequest request;
  uint64_t bytes = 0;
  uint64_t ready_step = 0;           // first progress step that may hand it on
  std::optional<FaultRule> rule;     // a non-delay action to apply when handed on
  std::unique_ptr<Bounce> payload;   // inline payload copied at post time
  std::optional<Prepared> prepared;  // kept when the wrapped send queue was full
};

struct HeldRecv {
  Completion completion;
  uint64_t ready_step = 0;
};

struct QpCore {
  uint32_t id = 0;
  NodeId peer = kInvalidNode;
  QueuePair* inner = nullptr;  // owned by the FaultyQueuePair; valid while in Core::qps
  std::deque<HeldSend> held;
  bool blocked = false;  // a kFail marker is in flight: `held` waits for its completion
  std::deque<InFlight> inflight;
  std::deque<RecvRequest> recvs;  // posted receives, in post order (they complete in order)
  std::deque<HeldRecv> held_recvs;
};

struct MrRange {
  uint64_t addr = 0;
  uint64_t length = 0;
};

}  // namespace

struct FaultyFabric::Core {
  std::shared_ptr<FaultController> controller;
  NodeId node = kInvalidNode;
  Limits limits;
  std::atomic<uint64_t> connect_cancels{0};

  std::mutex mu;
  Fabric* inner = nullptr;  // guarded by mu: nullptr once the FaultyFabric is destroyed
  uint64_t step = 0;        // guarded by mu: progress steps (PollCompletions calls) so far
  std::map<uint32_t, std::unique_ptr<QpCore>> qps;  // guarded by mu: live QPs by id
  std::unordered_map<uint32_t, MrRange> mrs;        // guarded by mu: registrations by lkey
  std::deque<Completion> ready;                     // guarded by mu: to report next
  std::deque<Event> events;                         // guarded by mu: injected kQpError events
};

namespace {

using Core = FaultyFabric::Core;

void Flip(std::byte* at, uint64_t offset, uint8_t mask) { at[offset] ^= std::byte{mask}; }

// The SGEs lie in registrations made through this fabric (so the CPU may read them).
bool Readable(const Core& core, const Sge* sges, int count) {
  for (int i = 0; i < count; ++i) {
    if (sges[i].length == 0) continue;
    auto it = core.mrs.find(sges[i].lkey);
    if (it == core.mrs.end()) return false;
    const MrRange& mr = it->second;
    if (sges[i].addr < mr.addr || sges[i].length > mr.length ||
        sges[i].addr - mr.addr > mr.length - sges[i].length) {
      return false;
    }
  }
  return true;
}

// A registered copy of the request's payload, or nullptr when its SGEs are not readable (the
// wrapped QP then reports their error) or registration failed.
std::unique_ptr<Bounce> CopyPayload(Core& core, const SendRequest& r, uint64_t bytes) {
  if (core.inner == nullptr || !Readable(core, r.sge, r.num_sge)) return nullptr;
  auto bounce = std::make_unique<Bounce>();
  bounce->bytes.resize(std::max<uint64_t>(bytes, 1));  // registrations are never empty
  std::byte* at = bounce->bytes.data();
  for (int i = 0; i < r.num_sge; ++i) {
    if (r.sge[i].length == 0) continue;
    std::memcpy(at, reinterpret_cast<const void*>(static_cast<uintptr_t>(r.sge[i].addr)),
                r.sge[i].length);
    at += r.sge[i].length;
  }
  auto mr = core.inner->RegisterMemory(bounce->bytes.data(), bounce->bytes.size(), 0);
  if (!mr.ok()) {
    FT_LOG(kWarn) << "faulty: cannot register a payload copy: " << mr.status();
    return nullptr;
  }
  bounce->mr = std::move(mr).value();
  return bounce;
}

// Points the request at the bounce copy (one SGE over its payload).
void UseBounce(SendRequest& r, const Bounce& bounce, uint64_t bytes) {
  r.sge[0] = Sge{.addr = reinterpret_cast<uintptr_t>(bounce.bytes.data()),
                 .length = static_cast<uint32_t>(bytes),
                 .lkey = bounce.mr->lkey()};
  r.num_sge = bytes == 0 ? 0 : 1;
}

SendRequest Marker(const SendRequest& r, bool signaled) {
  SendRequest marker;
  marker.wr_id = r.wr_id;
  marker.opcode = Opcode::kWrite;
  marker.num_sge = 0;
  marker.signaled = signaled;
  return marker;
}

// What the wrapped QP gets for request r (with its action, if a rule fired) and how its
// completion is to be reported. `payload` is an inline request's copy taken at post time.
Prepared Prepare(Core& core, const SendRequest& r, uint64_t bytes,
                 const std::optional<FaultRule>& rule, std::unique_ptr<Bounce> payload) {
  Prepared p;
  p.request = r;
  InFlight& e = p.entry;
  e.wr_id = r.wr_id;
  e.inner_signaled = r.signaled;
  e.user_signaled = r.signaled;
  e.user_opcode = r.opcode;
  e.user_bytes = static_cast<uint32_t>(bytes);
  if (payload != nullptr) UseBounce(p.request, *payload, bytes);
  e.bounce = std::move(payload);
  if (!rule) return p;
  switch (rule->action) {
    case FaultAction::kFail:
      p.request = Marker(r, /*signaled=*/true);
      e.inner_signaled = true;
      e.kind = Kind::kFailMarker;
      e.fail_status = rule->status;
      break;
    case FaultAction::kDrop:
      p.request = Marker(r, r.signaled);
      e.kind = Kind::kDropMarker;
      break;
    case FaultAction::kCorrupt:
      e.flip_offsets = rule->flip_offsets;
      e.flip_mask = rule->flip_mask;
      if (r.opcode == Opcode::kRead) {
        // Its completion is needed to flip the landed bytes, even when the caller's is not.
        p.request.signaled = true;
        e.inner_signaled = true;
        e.kind = Kind::kReadFlip;
        e.read_sges.assign(r.sge, r.sge + r.num_sge);
        break;
      }
      if (e.bounce == nullptr) e.bounce = CopyPayload(core, r, bytes);
      if (e.bounce == nullptr) {
        FT_LOG(kWarn) << "faulty: wr_id " << r.wr_id << " not corrupted: its SGEs are not in a "
                      << "registration of node " << core.node;
        return p;
      }
      for (uint64_t offset : e.flip_offsets) {
        if (offset < bytes) Flip(e.bounce->bytes.data(), offset, e.flip_mask);
      }
      UseBounce(p.request, *e.bounce, bytes);
      break;
    case FaultAction::kDelay:
      return p;  // a delay of 0 steps, or one already served
  }
  core.controller->Record(rule->action);
  return p;
}

// Hands the held requests of qp that are due to the wrapped QP, in order. Caller holds core.mu.
void ReleaseHeld(Core& core, QpCore& qp) {
  while (!qp.blocked && !qp.held.empty() && qp.held.front().ready_step <= core.step) {
    HeldSend& h = qp.held.front();
    if (!h.prepared) {
      h.prepared = Prepare(core, h.request, h.bytes, h.rule, std::move(h.payload));
    }
    size_t posted = 0;
    const Status status = qp.inner->PostSend({&h.prepared->request, 1}, &posted);
    if (posted == 0) {
      if (status.code() == StatusCode::kResourceExhausted) return;  // retry on the next step
      // The wrapped QP refuses it for good (its node is dead): report it flushed, as the QP
      // would have.
      FT_LOG(kDebug) << "faulty: held wr_id " << h.request.wr_id << " refused: " << status;
      core.ready.push_back(
          Completion{.wr_id = h.request.wr_id, .qp = qp.id, .status = WcStatus::kFlushed});
    } else {
      if (h.prepared->entry.kind == Kind::kFailMarker) qp.blocked = true;
      qp.inflight.push_back(std::move(h.prepared->entry));
    }
    qp.held.pop_front();
  }
}

// Fences qp after an injected failure, as the first failure on an RC QP does.
void FailQp(Core& core, QpCore& qp, std::string detail) {
  qp.inner->ToError();
  core.events.push_back(Event{
      .type = EventType::kQpError, .peer = qp.peer, .qp = qp.id, .detail = std::move(detail)});
}

// Turns a completion of qp's send queue into what the caller sees; false: report nothing.
bool TranslateSend(Core& core, QpCore& qp, Completion& c) {
  const bool success = c.status == WcStatus::kSuccess;
  auto it = std::find_if(qp.inflight.begin(), qp.inflight.end(), [&](const InFlight& e) {
    return e.wr_id == c.wr_id && (!success || e.inner_signaled);
  });
  if (it == qp.inflight.end()) return true;  // not ours to translate
  InFlight e = std::move(*it);
  qp.inflight.erase(qp.inflight.begin(), it + 1);  // it retires the unsignaled ones before it
  const Completion error{.wr_id = c.wr_id, .qp = c.qp, .status = c.status};
  switch (e.kind) {
    case Kind::kPlain:
      return true;
    case Kind::kFailMarker:
      qp.blocked = false;
      if (!success) {
        c = error;  // the QP failed before the injected fault took effect
        return true;
      }
      c = Completion{.wr_id = e.wr_id, .qp = qp.id, .status = e.fail_status};
      FailQp(core, qp,
             StrCat("faulty: injected ", WcStatusName(e.fail_status), " for ",
                    OpcodeName(e.user_opcode), " wr_id ", e.wr_id, " on queue pair ", qp.id,
                    " to node ", qp.peer, " (", core.controller->seed_description(), ")"));
      return true;
    case Kind::kDropMarker:
      if (!success) {
        c = error;
        return true;
      }
      c.opcode = e.user_opcode;
      c.bytes = e.user_bytes;
      return e.user_signaled;
    case Kind::kReadFlip: {
      if (!success) return true;
      // Flip the landed bytes at payload offsets, across the SGEs.
      for (uint64_t offset : e.flip_offsets) {
        uint64_t base = 0;
        for (const Sge& sge : e.read_sges) {
          if (offset >= base && offset - base < sge.length) {
            Flip(reinterpret_cast<std::byte*>(static_cast<uintptr_t>(sge.addr)), offset - base,
                 e.flip_mask);
            break;
          }
          base += sge.length;
        }
      }
      return e.user_signaled;
    }
  }
  return true;
}

// Applies receive rules to a successful receive completion; false: report nothing (dropped or
// held, in which case it is queued in qp.held_recvs).
bool TranslateRecv(Core& core, QpCore& qp, Completion& c) {
  std::optional<RecvRequest> recv;
  auto it = std::find_if(qp.recvs.begin(), qp.recvs.end(),
                         [&](const RecvRequest& r) { return r.wr_id == c.wr_id; });
  if (it != qp.recvs.end()) {
    recv = *it;
    qp.recvs.erase(qp.recvs.begin(), it + 1);
  }
  uint64_t ready_step = 0;
  if (c.status == WcStatus::kSuccess) {
    const std::optional<FaultRule> rule =
        core.controller->Match(core.node, qp.peer, Opcode::kRecv, c.wr_id);
    if (rule) {
      switch (rule->action) {
        case FaultAction::kFail:
          c = Completion{.wr_id = c.wr_id, .qp = c.qp, .status = rule->status};
          FailQp(core, qp,
                 StrCat("faulty: injected ", WcStatusName(rule->status), " for RECV wr_id ",
                        c.wr_id, " on queue pair ", qp.id, " from node ", qp.peer, " (",
                        core.controller->seed_description(), ")"));
          break;
        case FaultAction::kDrop:
          core.controller->Record(rule->action);
          return false;
        case FaultAction::kCorrupt:
          if (!recv) break;  // posted before this fabric saw it (during Connect)
          for (uint64_t offset : rule->flip_offsets) {
            if (offset < c.bytes) {
              Flip(reinterpret_cast<std::byte*>(static_cast<uintptr_t>(recv->sge.addr)), offset,
                   rule->flip_mask);
            }
          }
          break;
        case FaultAction::kDelay:
          ready_step = core.step + static_cast<uint64_t>(rule->delay_steps);
          break;
      }
      if (rule->action != FaultAction::kCorrupt || recv) core.controller->Record(rule->action);
    }
  }
  if (ready_step > core.step || !qp.held_recvs.empty()) {
    qp.held_recvs.push_back(HeldRecv{c, ready_step});
    return false;
  }
  return true;
}

bool HasWork(const Core& core) {
  if (!core.ready.empty() || !core.events.empty()) return true;
  for (const auto& [id, qp] : core.qps) {
    if ((!qp->blocked && !qp->held.empty()) || !qp->held_recvs.empty()) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// The wrapped objects.

class FaultyMemoryRegion final : public MemoryRegion {
 public:
  FaultyMemoryRegion(std::unique_ptr<MemoryRegion> inner, std::shared_ptr<Core> core)
      : inner_(std::move(inner)), core_(std::move(core)) {
    std::lock_guard lock(core_->mu);
    core_->mrs[inner_->lkey()] =
        MrRange{.addr = reinterpret_cast<uintptr_t>(inner_->addr()), .length = inner_->length()};
  }
  ~FaultyMemoryRegion() override {
    {
      std::lock_guard lock(core_->mu);
      core_->mrs.erase(inner_->lkey());
    }
    inner_.reset();
  }
  FaultyMemoryRegion(const FaultyMemoryRegion&) = delete;
  FaultyMemoryRegion& operator=(const FaultyMemoryRegion&) = delete;

  void* addr() const override { return inner_->addr(); }
  size_t length() const override { return inner_->length(); }
  uint32_t lkey() const override { return inner_->lkey(); }
  uint32_t rkey() const override { return inner_->rkey(); }

 private:
  std::unique_ptr<MemoryRegion> inner_;
  std::shared_ptr<Core> core_;
};

class FaultyQueuePair final : public QueuePair {
 public:
  FaultyQueuePair(std::unique_ptr<QueuePair> inner, std::shared_ptr<Core> core,
                  std::span<const RecvRequest> receives)
      : inner_(std::move(inner)), core_(std::move(core)), id_(inner_->id()) {
    auto qp = std::make_unique<QpCore>();
    qp->id = id_;
    qp->peer = inner_->peer();
    qp->inner = inner_.get();
    qp->recvs.assign(receives.begin(), receives.end());
    std::lock_guard lock(core_->mu);
    core_->qps[id_] = std::move(qp);
  }
  ~FaultyQueuePair() override {
    std::unique_ptr<QpCore> qp;
    {
      std::lock_guard lock(core_->mu);
      auto it = core_->qps.find(id_);
      qp = std::move(it->second);
      core_->qps.erase(it);
      std::erase_if(core_->ready, [&](const Completion& c) { return c.qp == id_; });
    }
    inner_.reset();  // before the bounce copies in `qp`: nothing reads them afterwards
  }
  FaultyQueuePair(const FaultyQueuePair&) = delete;
  FaultyQueuePair& operator=(const FaultyQueuePair&) = delete;

  uint32_t id() const override { return id_; }
  NodeId peer() const override { return inner_->peer(); }
  std::span<const std::byte> peer_private_data() const override {
    return inner_->peer_private_data();
  }
  QpState state() const override { return inner_->state(); }

  Status PostSend(std::span<const SendRequest> requests, size_t* posted) override;

  Status PostRecv(std::span<const RecvRequest> requests, size_t* posted) override {
    std::lock_guard lock(core_->mu);
    size_t count = 0;
    const Status status = inner_->PostRecv(requests, &count);
    QpCore& qp = *core_->qps.at(id_);
    qp.recvs.insert(qp.recvs.end(), requests.begin(), requests.begin() + count);
    if (posted != nullptr) *posted = count;
    return status;
  }

  void ToError() override {
    std::lock_guard lock(core_->mu);
    inner_->ToError();
    // Held requests are handed on at the next step, where the wrapped QP flushes them.
    QpCore& qp = *core_->qps.at(id_);
    qp.blocked = false;
    for (HeldSend& h : qp.held) h.ready_step = 0;
  }

 private:
  std::unique_ptr<QueuePair> inner_;
  std::shared_ptr<Core> core_;
  const uint32_t id_;
};

Status FaultyQueuePair::PostSend(std::span<const SendRequest> requests, size_t* posted) {
  if (posted != nullptr) *posted = 0;
  Core& core = *core_;
  std::lock_guard lock(core.mu);
  QpCore& qp = *core.qps.at(id_);
  // The requests form [handed on now | held here]: once one is held, all after it are.
  std::vector<SendRequest> batch;
  std::vector<InFlight> entries;
  std::vector<HeldSend> held;
  bool holding = qp.blocked || !qp.held.empty();
  Status status;
  for (size_t i = 0; i < requests.size(); ++i) {
    const SendRequest& r = requests[i];
    uint64_t bytes = 0;
    status = ValidateSendRequest(r, i, core.limits, &bytes);
    if (!status.ok()) break;
    if (holding && qp.held.size() + held.size() >= static_cast<size_t>(core.limits.max_send_wr)) {
      status = Status::ResourceExhausted("PostSend on queue pair ", id_, ": ",
                                         qp.held.size() + held.size(),
                                         " requests held by fault injection (max_send_wr)");
      break;
    }
    std::optional<FaultRule> rule = core.controller->Match(core.node, qp.peer, r.opcode, r.wr_id);
    const bool delayed = rule && rule->action == FaultAction::kDelay && rule->delay_steps > 0;
    if (delayed || holding) {
      HeldSend h;
      h.request = r;
      h.bytes = bytes;
      h.ready_step = core.step + 1 + (delayed ? static_cast<uint64_t>(rule->delay_steps) : 0);
      if (delayed) {
        core.controller->Record(FaultAction::kDelay);
      } else {
        h.rule = std::move(rule);
      }
      if (r.inline_data) {  // verbs copies an inline payload at post time
        h.payload = CopyPayload(core, r, bytes);
        if (h.payload != nullptr) UseBounce(h.request, *h.payload, bytes);
      }
      held.push_back(std::move(h));
      holding = true;
      continue;
    }
    Prepared p = Prepare(core, r, bytes, rule, nullptr);
    holding = p.entry.kind == Kind::kFailMarker;  // later requests wait for the fence
    batch.push_back(p.request);
    entries.push_back(std::move(p.entry));
  }
  if (!batch.empty()) {
    size_t count = 0;
    const Status inner_status = qp.inner->PostSend(batch, &count);
    for (size_t i = 0; i < count; ++i) {
      if (entries[i].kind == Kind::kFailMarker) qp.blocked = true;
      qp.inflight.push_back(std::move(entries[i]));
    }
    if (count < batch.size()) {
      if (posted != nullptr) *posted = count;
      return inner_status;
    }
  }
  const size_t handled = batch.size() + held.size();
  for (HeldSend& h : held) qp.held.push_back(std::move(h));
  if (!held.empty() && core.inner != nullptr) core.inner->Interrupt();  // a waiter has work now
  if (posted != nullptr) *posted = handled;
  return status;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// FaultyFabric

FaultyFabric::FaultyFabric(std::unique_ptr<Fabric> inner,
                           std::shared_ptr<FaultController> controller)
    : controller_(std::move(controller)),
      core_(std::make_shared<Core>()),
      inner_(std::move(inner)) {
  FT_CHECK(inner_ != nullptr && controller_ != nullptr);
  core_->controller = controller_;
  core_->node = inner_->node();
  core_->limits = inner_->limits();
  core_->inner = inner_.get();
}

FaultyFabric::~FaultyFabric() {
  std::lock_guard lock(core_->mu);
  if (!core_->qps.empty()) {
    FT_LOG(kWarn) << "faulty: Fabric of node " << core_->node << " destroyed with "
                  << core_->qps.size() << " live queue pairs; destroy QueuePairs first";
  }
  core_->inner = nullptr;
}

Result<std::unique_ptr<MemoryRegion>> FaultyFabric::RegisterMemory(void* addr, size_t bytes,
                                                                   uint32_t access) {
  FT_ASSIGN_OR_RETURN(auto mr, inner_->RegisterMemory(addr, bytes, access));
  return std::unique_ptr<MemoryRegion>(std::make_unique<FaultyMemoryRegion>(std::move(mr), core_));
}

Result<std::vector<std::unique_ptr<QueuePair>>> FaultyFabric::Connect(
    std::span<const ConnectRequest> requests, Nanos timeout) {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::clamp(timeout, Nanos(0), Nanos(std::chrono::hours(24 * 365)));
  std::vector<NodeId> peers;
  for (const ConnectRequest& r : requests) peers.push_back(r.peer);
  std::string names;
  for (NodeId peer : peers) names += StrCat(names.empty() ? "" : ", ", peer);
  const uint64_t cancels_at_start = core_->connect_cancels.load();
  const std::optional<ConnectFaultAction> fault = controller_->MatchConnect(node(), peers);
  if (fault == ConnectFaultAction::kFail) {
    return Status::Unavailable("Connect from node ", node(), " to node(s) ", names,
                               ": unreachable (injected, ", controller_->seed_description(), ")");
  }
  if (fault == ConnectFaultAction::kHold) {
    const bool released = controller_->HoldConnect(
        deadline, [&] { return core_->connect_cancels.load() != cancels_at_start; });
    if (core_->connect_cancels.load() != cancels_at_start) {
      return Status::Aborted("Connect from node ", node(), " was cancelled (held by injection)");
    }
    if (!released) {
      return Status::DeadlineExceeded(
          "Connect from node ", node(), " timed out after ",
          std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(),
          " ms waiting for node(s) ", names, " (held by injection, ",
          controller_->seed_description(), ")");
    }
  }
  const Nanos remaining = std::max<Nanos>(Nanos(0), deadline - std::chrono::steady_clock::now());
  FT_ASSIGN_OR_RETURN(auto qps, inner_->Connect(requests, remaining));
  std::vector<std::unique_ptr<QueuePair>> wrapped;
  wrapped.reserve(qps.size());
  for (size_t i = 0; i < qps.size(); ++i) {
    // Backends return the QPs in request order; look the request up by peer all the same.
    std::span<const RecvRequest> receives;
    for (const ConnectRequest& r : requests) {
      if (r.peer == qps[i]->peer()) receives = r.receives;
    }
    wrapped.push_back(std::make_unique<FaultyQueuePair>(std::move(qps[i]), core_, receives));
  }
  return wrapped;
}

size_t FaultyFabric::PollCompletions(std::span<Completion> out) {
  Core& core = *core_;
  // The lock covers the wrapped fabric's step too: completions must be matched to `inflight` in
  // the order the wrapped CQ gave them, even when several threads poll. (Nothing the wrapped
  // step waits for needs this lock.)
  std::lock_guard lock(core.mu);
  ++core.step;
  for (auto& [id, qp] : core.qps) {
    ReleaseHeld(core, *qp);
    while (!qp->held_recvs.empty() && qp->held_recvs.front().ready_step <= core.step) {
      core.ready.push_back(qp->held_recvs.front().completion);
      qp->held_recvs.pop_front();
    }
  }
  size_t count = 0;
  while (count < out.size() && !core.ready.empty()) {
    out[count++] = core.ready.front();
    core.ready.pop_front();
  }
  if (count == out.size()) return count;
  const size_t polled = inner_->PollCompletions(out.subspan(count));
  // Each polled completion yields at most one, so the translation can compact in place.
  const size_t base = count;
  for (size_t i = base; i < base + polled; ++i) {
    Completion c = out[i];
    auto it = core.qps.find(c.qp);
    bool report = true;
    if (it != core.qps.end()) {  // else a QP of a Connect still in progress
      QpCore& qp = *it->second;
      report = c.opcode == Opcode::kRecv ? TranslateRecv(core, qp, c) : TranslateSend(core, qp, c);
    }
    if (report) out[count++] = c;
  }
  return count;
}

size_t FaultyFabric::PollEvents(std::span<Event> out) {
  size_t count = 0;
  {
    std::lock_guard lock(core_->mu);
    while (count < out.size() && !core_->events.empty()) {
      out[count++] = std::move(core_->events.front());
      core_->events.pop_front();
    }
  }
  return count + inner_->PollEvents(out.subspan(count));
}

void FaultyFabric::WaitForActivity(Nanos timeout) {
  {
    std::lock_guard lock(core_->mu);
    if (HasWork(*core_)) return;  // the caller's next poll makes progress
  }
  inner_->WaitForActivity(timeout);
}

void FaultyFabric::CancelConnects() {
  core_->connect_cancels.fetch_add(1);
  controller_->WakeHeldConnects();
  inner_->CancelConnects();
}

}  // namespace ft::verbs
