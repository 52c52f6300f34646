// FaultController (see faulty.h): the rules of a test, how a request is matched against them
// (selectors, occurrences, the seeded generator), the counters, and held Connects.
#include "verbs/faulty/faulty.h"

#include <algorithm>
#include <chrono>
#include <mutex>

#include "common/check.h"

namespace ft::verbs {

const char* FaultActionName(FaultAction action) {
  switch (action) {
    case FaultAction::kFail:
      return "fail";
    case FaultAction::kDelay:
      return "delay";
    case FaultAction::kCorrupt:
      return "corrupt";
    case FaultAction::kDrop:
      return "drop";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// FaultController

FaultController::FaultController(uint64_t seed) : seed_(seed), rng_(seed) {}

std::string FaultController::seed_description() const { return StrCat("faulty seed=", seed_); }

namespace {

void CheckOccurrence(const Occurrence& occurrence) {
  FT_CHECK_MSG(occurrence.kind != Occurrence::Kind::kNth || occurrence.n >= 1,
               "Occurrence::Nth counts from 1");
  FT_CHECK_MSG(occurrence.kind != Occurrence::Kind::kProbability ||
                   (occurrence.probability >= 0 && occurrence.probability <= 1),
               "Occurrence::WithProbability needs a probability in [0, 1]");
}

}  // namespace

FaultRuleId FaultController::Add(FaultRule rule) {
  CheckOccurrence(rule.occurrence);
  FT_CHECK_MSG(rule.action != FaultAction::kFail || rule.status != WcStatus::kSuccess,
               "a kFail rule needs an error status");
  FT_CHECK_MSG(rule.action != FaultAction::kDelay || rule.delay_steps >= 0,
               "a kDelay rule needs delay_steps >= 0");
  FT_CHECK_MSG(rule.action != FaultAction::kCorrupt || rule.flip_mask != 0,
               "a kCorrupt rule needs a nonzero flip_mask");
  std::lock_guard lock(mu_);
  const FaultRuleId id = next_id_++;
  rules_.push_back(RuleEntry{.id = id, .rule = std::move(rule)});
  return id;
}

FaultRuleId FaultController::AddConnectFault(ConnectFault fault) {
  CheckOccurrence(fault.occurrence);
  std::lock_guard lock(mu_);
  const FaultRuleId id = next_id_++;
  connect_faults_.push_back(ConnectEntry{.id = id, .fault = std::move(fault)});
  return id;
}

void FaultController::Remove(FaultRuleId id) {
  std::lock_guard lock(mu_);
  std::erase_if(rules_, [&](const RuleEntry& e) { return e.id == id; });
  std::erase_if(connect_faults_, [&](const ConnectEntry& e) { return e.id == id; });
}

void FaultController::Clear() {
  std::lock_guard lock(mu_);
  rules_.clear();
  connect_faults_.clear();
}

uint64_t FaultController::fired(FaultRuleId id) const {
  std::lock_guard lock(mu_);
  for (const RuleEntry& e : rules_) {
    if (e.id == id) return e.fired;
  }
  for (const ConnectEntry& e : connect_faults_) {
    if (e.id == id) return e.fired;
  }
  return 0;
}

FaultCounters FaultController::counters() const {
  std::lock_guard lock(mu_);
  return counters_;
}

void FaultController::ReleaseHeldConnects() {
  {
    std::lock_guard lock(mu_);
    ++release_generation_;
  }
  connect_cv_.notify_all();
}

size_t FaultController::held_connects() const {
  std::lock_guard lock(mu_);
  return held_connects_;
}

bool FaultController::Fires(Occurrence occurrence, uint64_t seen) {
  switch (occurrence.kind) {
    case Occurrence::Kind::kNth:
      return seen == occurrence.n;
    case Occurrence::Kind::kEvery:
      return true;
    case Occurrence::Kind::kProbability:
      return std::bernoulli_distribution(occurrence.probability)(rng_);
  }
  return false;
}

std::optional<FaultRule> FaultController::Match(NodeId node, NodeId peer, Opcode opcode,
                                                uint64_t wr_id) {
  std::lock_guard lock(mu_);
  for (RuleEntry& e : rules_) {
    const FaultRule& r = e.rule;
    if ((r.opcode && *r.opcode != opcode) || (r.node && *r.node != node) ||
        (r.peer && *r.peer != peer) || (r.wr_ids && !r.wr_ids(wr_id))) {
      continue;
    }
    if (!Fires(r.occurrence, ++e.seen)) continue;
    ++e.fired;
    return r;
  }
  return std::nullopt;
}

void FaultController::Record(FaultAction action) {
  std::lock_guard lock(mu_);
  switch (action) {
    case FaultAction::kFail:
      ++counters_.failed;
      break;
    case FaultAction::kDelay:
      ++counters_.delayed;
      break;
    case FaultAction::kCorrupt:
      ++counters_.corrupted;
      break;
    case FaultAction::kDrop:
      ++counters_.dropped;
      break;
  }
}

std::optional<ConnectFaultAction> FaultController::MatchConnect(NodeId node,
                                                                std::span<const NodeId> peers) {
  std::lock_guard lock(mu_);
  for (ConnectEntry& e : connect_faults_) {
    const ConnectFault& f = e.fault;
    if (f.node && *f.node != node) continue;
    const bool named = f.peers.empty() || std::any_of(peers.begin(), peers.end(), [&](NodeId p) {
                         return std::find(f.peers.begin(), f.peers.end(), p) != f.peers.end();
                       });
    if (!named || !Fires(f.occurrence, ++e.seen)) continue;
    ++e.fired;
    if (f.action == ConnectFaultAction::kFail) {
      ++counters_.connects_failed;
    } else {
      ++counters_.connects_held;
    }
    return f.action;
  }
  return std::nullopt;
}

bool FaultController::HoldConnect(std::chrono::steady_clock::time_point deadline,
                                  const std::function<bool()>& cancelled) {
  std::unique_lock lock(mu_);
  const uint64_t generation = release_generation_;
  ++held_connects_;
  const bool released = connect_cv_.wait_until(
      lock, deadline, [&] { return release_generation_ != generation || cancelled(); });
  --held_connects_;
  return released && release_generation_ != generation;
}

void FaultController::WakeHeldConnects() {
  { std::lock_guard lock(mu_); }
  connect_cv_.notify_all();
}

}  // namespace ft::verbs
