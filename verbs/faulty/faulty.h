// FaultyFabric: a Fabric decorator that injects faults into any backend, for tests of the code
// above verbs/ (the engine's checkpoint and recovery paths) that must survive a misbehaving
// network or device. It wraps one node's Fabric and its QueuePairs; with no rules it forwards
// everything unchanged (the conformance suite runs against faulty(loopback) to prove it).
//
// Faults are described by rules held in a FaultController that tests share with the fabrics
// (one controller may serve every node of a LoopbackWorld through `wrap_fabric`), and add or
// remove at run time while other threads post and poll:
//
//   auto faults = std::make_shared<verbs::FaultController>(/*seed=*/42);
//   options.wrap_fabric = [&](uint32_t, std::unique_ptr<verbs::Fabric> inner) {
//     return std::make_unique<verbs::FaultyFabric>(std::move(inner), faults);
//   };
//   faults->Add(verbs::FaultRule::Corrupt({0}).For(verbs::Opcode::kWrite).OnNode(0).ToPeer(2).Nth(3));
//   ... SCOPED_TRACE(faults->seed_description()); EXPECT_EQ(faults->counters().corrupted, 1u);
//
// Each action follows RC verbs semantics (ibv_post_send.3, ibv_poll_cq.3):
// - kFail: the request does not execute; once every request posted before it on its QP has
//   executed, it completes with `status` (an error Completion: wr_id, qp, status only), the QP
//   moves to the error state (requests and receives after it complete kFlushed) and the node
//   gets a kQpError event. The peer is not told, as with a lost connection.
// - kDelay: the request reaches the wrapped QP only on the (delay_steps + 1)th progress step
//   (PollCompletions call) of this Fabric after its post; later requests of its QP wait behind
//   it (RC order). An inline request's payload is copied at post time, as verbs does.
// - kCorrupt: WRITE/SEND are posted from a private registered copy of the payload with the bytes
//   at `flip_offsets` XORed with `flip_mask`, and succeed; a READ's landed bytes are flipped
//   before its completion is returned; a receive's bytes are flipped before its completion is
//   returned.
// - kDrop: a lying device: the request completes successfully (with its length) but nothing
//   lands at the peer (it is replaced by a zero-length WRITE, which keeps RC order and still
//   fails if the peer is unreachable); a dropped receive completion is never reported.
//   CRCs above must catch it.
// - Connect faults: a Connect naming a chosen peer fails Unavailable without reaching the
//   wrapped fabric, or is held until ReleaseHeldConnects(), its timeout (DeadlineExceeded) or
//   CancelConnects (Aborted), then proceeds.
//
// Matching: a request is matched against the rules in the order they were added; every rule
// whose selectors match counts it, and the first rule whose occurrence fires acts (the rules
// after it do not see that request). WRITE, READ and SEND are matched when posted, receives
// (opcode kRecv) when their successful completion is polled.
//
// Limits of the model: requests held by the decorator (delayed, or waiting behind a failing
// request) count against max_send_wr only among themselves; a kFail of a responder-side error
// (kRemoteAccessError ...) does not move the peer's QP to the error state; wr_ids reused among
// the outstanding requests of one QP may make a fault report under the wrong one of them.
//
// Thread-safety: FaultController, FaultyFabric and its QueuePairs may be used from any threads
// at once. One mutex per FaultyFabric is held around posts and around a whole PollCompletions
// (so that polled completions are matched to requests in CQ order), never while the wrapped
// fabric waits or connects; a post therefore waits for a progress step in flight. The
// controller's mutex nests inside it. Ownership: a FaultyFabric owns the wrapped Fabric; its
// QueuePairs and MemoryRegions must be destroyed before it, as the wrapped backend demands.
#ifndef FT_VERBS_FAULTY_FAULTY_H_
#define FT_VERBS_FAULTY_FAULTY_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "verbs/fabric.h"

namespace ft::verbs {

// Which of the requests a rule's selectors match it acts on.
struct Occurrence {
  enum class Kind : uint8_t { kNth, kEvery, kProbability };
  Kind kind = Kind::kEvery;
  uint64_t n = 0;          // kNth: 1 is the first match
  double probability = 0;  // kProbability: each match independently, from the seeded generator

  static Occurrence Nth(uint64_t n) { return {Kind::kNth, n, 0}; }
  static Occurrence Every() { return {Kind::kEvery, 0, 0}; }
  static Occurrence WithProbability(double p) { return {Kind::kProbability, 0, p}; }
};

enum class FaultAction : uint8_t { kFail, kDelay, kCorrupt, kDrop };
const char* FaultActionName(FaultAction action);

// A rule, built from an action and narrowed by selectors (unset ones match anything):
//   FaultRule::Fail(WcStatus::kRetryExceeded).For(Opcode::kWrite).OnNode(0).ToPeer(2).Nth(3)
struct FaultRule {
  std::optional<Opcode> opcode{};
  std::optional<NodeId> node{};  // the node whose Fabric posts the request (receives: polls it)
  std::optional<NodeId> peer{};  // the other end of the QP
  // The requests' wr_ids this rule matches (unset: any): how a test tells apart requests of one
  // opcode on one QP that its caller posts for different purposes.
  std::function<bool(uint64_t wr_id)> wr_ids{};
  Occurrence occurrence{};
  FaultAction action = FaultAction::kFail;
  WcStatus status = WcStatus::kRetryExceeded;  // kFail: any error status
  int delay_steps = 1;                         // kDelay: >= 0
  // kCorrupt: payload offsets XORed with flip_mask (!= 0); offsets past the payload are ignored.
  std::vector<uint64_t> flip_offsets{0};
  uint8_t flip_mask = 0x01;

  static FaultRule Fail(WcStatus status = WcStatus::kRetryExceeded) {
    FaultRule r;
    r.action = FaultAction::kFail;
    r.status = status;
    return r;
  }
  static FaultRule Delay(int steps) {
    FaultRule r;
    r.action = FaultAction::kDelay;
    r.delay_steps = steps;
    return r;
  }
  static FaultRule Corrupt(std::vector<uint64_t> offsets = {0}, uint8_t mask = 0x01) {
    FaultRule r;
    r.action = FaultAction::kCorrupt;
    r.flip_offsets = std::move(offsets);
    r.flip_mask = mask;
    return r;
  }
  static FaultRule Drop() {
    FaultRule r;
    r.action = FaultAction::kDrop;
    return r;
  }
  FaultRule For(Opcode op) const {
    return With([&](FaultRule& r) { r.opcode = op; });
  }
  FaultRule OnNode(NodeId id) const {
    return With([&](FaultRule& r) { r.node = id; });
  }
  FaultRule ToPeer(NodeId id) const {
    return With([&](FaultRule& r) { r.peer = id; });
  }
  FaultRule ForWrIds(std::function<bool(uint64_t wr_id)> filter) const {
    return With([&](FaultRule& r) { r.wr_ids = filter; });
  }
  FaultRule Nth(uint64_t n) const {
    return With([&](FaultRule& r) { r.occurrence = Occurrence::Nth(n); });
  }
  FaultRule WithProbability(double p) const {
    return With([&](FaultRule& r) { r.occurrence = Occurrence::WithProbability(p); });
  }

 private:
  template <typename F>
  FaultRule With(F change) const {
    FaultRule r = *this;
    change(r);
    return r;
  }
};

enum class ConnectFaultAction : uint8_t { kFail, kHold };

// A fault of Connect calls naming any of `peers` (empty: every Connect):
//   ConnectFault::Fail({2}).OnNode(0)      ConnectFault::Hold({}).Nth(1)
struct ConnectFault {
  std::optional<NodeId> node{};  // the connecting node; unset: any
  std::vector<NodeId> peers{};
  Occurrence occurrence{};
  ConnectFaultAction action = ConnectFaultAction::kFail;

  static ConnectFault Fail(std::vector<NodeId> peers) {
    ConnectFault f;
    f.peers = std::move(peers);
    return f;
  }
  static ConnectFault Hold(std::vector<NodeId> peers) {
    ConnectFault f = Fail(std::move(peers));
    f.action = ConnectFaultAction::kHold;
    return f;
  }
  ConnectFault OnNode(NodeId id) const {
    ConnectFault f = *this;
    f.node = id;
    return f;
  }
  ConnectFault Nth(uint64_t n) const {
    ConnectFault f = *this;
    f.occurrence = Occurrence::Nth(n);
    return f;
  }
};

// Faults injected so far, per action.
struct FaultCounters {
  uint64_t failed = 0;
  uint64_t delayed = 0;
  uint64_t corrupted = 0;
  uint64_t dropped = 0;
  uint64_t connects_failed = 0;
  uint64_t connects_held = 0;
};

using FaultRuleId = uint64_t;

// The rules of one test, shared by the FaultyFabrics of its nodes. Thread-safe.
class FaultController {
 public:
  explicit FaultController(uint64_t seed = 1);
  FaultController(const FaultController&) = delete;
  FaultController& operator=(const FaultController&) = delete;

  uint64_t seed() const { return seed_; }
  // "faulty seed=<n>": put it in failure messages so that a probabilistic run can be replayed.
  std::string seed_description() const;

  // Adds a rule (a malformed one is a programmer error: FT_CHECK). Returns its id.
  FaultRuleId Add(FaultRule rule);
  FaultRuleId AddConnectFault(ConnectFault fault);
  // Removes a rule or connect fault (unknown ids are ignored). Requests it already acted on keep
  // their fault.
  void Remove(FaultRuleId id);
  void Clear();

  // How often the rule acted so far (0 for unknown or removed ids).
  uint64_t fired(FaultRuleId id) const;
  FaultCounters counters() const;

  // Lets every Connect currently held by a kHold connect fault proceed.
  void ReleaseHeldConnects();
  // Connect calls held right now (a test waits for this to become > 0 before releasing).
  size_t held_connects() const;

  // The decorator's side: FaultyFabric calls these (tests need not). Each takes mu_.
  // Match counts the request for every rule it selects; the first rule that fires is returned.
  std::optional<FaultRule> Match(NodeId node, NodeId peer, Opcode opcode, uint64_t wr_id);
  void Record(FaultAction action);
  std::optional<ConnectFaultAction> MatchConnect(NodeId node, std::span<const NodeId> peers);
  // Waits until ReleaseHeldConnects, `deadline` or cancelled() (checked on every wake-up).
  // Returns true when released.
  bool HoldConnect(std::chrono::steady_clock::time_point deadline,
                   const std::function<bool()>& cancelled);
  void WakeHeldConnects();

 private:
  struct RuleEntry {
    FaultRuleId id = 0;
    FaultRule rule;
    uint64_t seen = 0;
    uint64_t fired = 0;
  };
  struct ConnectEntry {
    FaultRuleId id = 0;
    ConnectFault fault;
    uint64_t seen = 0;
    uint64_t fired = 0;
  };

  bool Fires(Occurrence occurrence, uint64_t seen);  // caller holds mu_

  const uint64_t seed_;
  mutable std::mutex mu_;
  std::condition_variable connect_cv_;
  std::mt19937_64 rng_;                       // guarded by mu_
  FaultRuleId next_id_ = 1;                   // guarded by mu_
  std::vector<RuleEntry> rules_;              // guarded by mu_
  std::vector<ConnectEntry> connect_faults_;  // guarded by mu_
  FaultCounters counters_;                    // guarded by mu_
  uint64_t release_generation_ = 0;           // guarded by mu_
  size_t held_connects_ = 0;                  // guarded by mu_
};

// The decorator. See the file comment for what each fault does.
class FaultyFabric final : public Fabric {
 public:
  FaultyFabric(std::unique_ptr<Fabric> inner, std::shared_ptr<FaultController> controller);
  ~FaultyFabric() override;
  FaultyFabric(const FaultyFabric&) = delete;
  FaultyFabric& operator=(const FaultyFabric&) = delete;

  FaultController& controller() const { return *controller_; }

  NodeId node() const override { return inner_->node(); }
  const Limits& limits() const override { return inner_->limits(); }
  std::string name() const override { return "faulty(" + inner_->name() + ")"; }
  Result<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                       uint32_t access) override;
  Result<std::vector<std::unique_ptr<QueuePair>>> Connect(std::span<const ConnectRequest> requests,
                                                          Nanos timeout) override;
  size_t PollCompletions(std::span<Completion> out) override;
  size_t PollEvents(std::span<Event> out) override;
  void WaitForActivity(Nanos timeout) override;
  void Interrupt() override { inner_->Interrupt(); }
  void CancelConnects() override;
  std::vector<std::byte> endpoint() const override { return inner_->endpoint(); }
  Status LearnEndpoint(NodeId peer, std::span<const std::byte> endpoint) override {
    return inner_->LearnEndpoint(peer, endpoint);
  }
  const DeviceLocality* locality() const override { return inner_->locality(); }

  struct Core;  // the state shared with this fabric's QueuePairs and MemoryRegions (faulty.cc)

 private:
  std::shared_ptr<FaultController> controller_;
  std::shared_ptr<Core> core_;
  std::unique_ptr<Fabric> inner_;
};

}  // namespace ft::verbs

#endif  // FT_VERBS_FAULTY_FAULTY_H_
