#include "tools/ftbench/recovery_run.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/work_ids.h"
#include "erasure/geometry.h"
#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"
#include "tools/ftbench/checkpoint_common.h"
#include "tools/ftbench/failure_plan.h"
#include "verbs/faulty/faulty.h"
#include "world/loopback_world_internal.h"

namespace ft::ftbench {
namespace {

using Clock = SteadyClock;
using std::chrono::milliseconds;

// A delay no run reaches: the request stays held until its fabric is destroyed.
constexpr int kHoldSteps = 1 << 30;

Nanos Now() { return Clock::Default().Now(); }
double Milliseconds(Nanos from, Nanos to) { return SecondsBetween(from, to) * 1e3; }

// Polls `done` every `every` until it holds (true) or `limit` has passed (false).
bool PollUntil(const std::function<bool()>& done, Nanos limit, std::chrono::microseconds every) {
  const Nanos deadline = Now() + limit;
  while (!done()) {
    if (Now() > deadline) return false;
    std::this_thread::sleep_for(every);
  }
  return true;
}

// One rank's Recover(): what it returned, when it was called and when it returned.
struct MemberRecovery {
  bool took_part = false;
  Result<RecoveryReport> report = Status::Internal("Recover() was not called");
  Nanos called{0}, returned{0};
};

// The figures of a recovery that every member finished.
struct RecoveryFigures {
  uint64_t restored_version = 0;
  std::vector<uint32_t> lost;
  double detect_ms = 0;
  double recovery_ms = 0;  // slowest member's Recover() call
  double wait_ms = 0, restore_ms = 0, reprotect_ms = 0;
  double reduced_redundancy_ms = 0;         // injection to the last Recover() return
  double engine_reduced_redundancy_ms = 0;  // RecoveryReport.reduced_redundancy_seconds, max
  double rebuild_gbps = 0;
  uint64_t rebuilt_bytes = 0;
  bool store_prepared = true;  // every replacement's store was zeroed while it waited
  double first_after_recovery_seconds = 0;
  uint64_t held_requests = 0;  // requests the rules held when the victims failed
  std::vector<uint64_t> timed_versions;
  std::string not_timed;  // which versions are not among the timed ones, and why
};

class FailureRun {
 public:
  FailureRun(const CheckpointOptions& o, FailurePlan plan)
      : o_(o), plan_(std::move(plan)), progress_(!o.json && isatty(STDERR_FILENO)) {}
  ~FailureRun();
  FailureRun(const FailureRun&) = delete;
  FailureRun& operator=(const FailureRun&) = delete;

  int Run(const erasure::StripeGeometry& g);

 private:
  bool IsVictim(uint32_t rank) const {
    return std::binary_search(plan_.victims.begin(), plan_.victims.end(), rank);
  }
  bool IsReplaced(uint32_t rank) const {
    return std::find(plan_.replaced.begin(), plan_.replaced.end(), rank) != plan_.replaced.end();
  }
  std::vector<uint32_t> Survivors() const;
  std::vector<uint32_t> AllRanks() const;
  std::chrono::nanoseconds HeartbeatBound() const {
    return milliseconds(o_.hb_interval_ms) * heartbeat_misses_;
  }

  Status CreateWorld();
  // Versions first..last of one node, each timed (TimeVersion), each checked to commit as itself.
  Status TimeVersions(uint32_t rank, Engine& engine, uint64_t first, uint64_t last,
                      const std::function<void()>& step, VersionSeconds* out);
  Status CheckpointBeforeFailure(std::vector<VersionSeconds>* seconds);
  // The failure: what leads up to it, the kill or freeze, detection, and the end of the
  // checkpoint it hit.
  Status PrepareFailure();
  Status StartCheckpoints(const std::vector<uint32_t>& ranks, uint64_t version);
  // Waits until each probe's rule held its count of requests.
  Status WaitForHeldRequests(const char* what);
  Status Fail();
  Status WaitForDetection();
  Status SettleFailure();
  void RemoveRules();
  // Every member's Recover() (a replacement first Protects its fresh image); `recoveries` gets
  // each rank's outcome.
  Status RecoverAll();
  void StartSpares();
  void StopSpares();
  // A replacement's part once it runs for `rank`: `first` is its Recover(); at `recovery`, a
  // second process takes the rank when the first was killed.
  void RecoverReplacement(uint32_t rank, const std::function<Result<RecoveryReport>()>& first);
  // A new process for `rank` protecting `image` (the committed size), then its Recover().
  Result<RecoveryReport> ReplaceAndRecover(uint32_t rank, AlignedBuffer& image);
  // Idle spare `spare`'s WaitForAssignment, until it is given a rank (OK), the recovery ends
  // without it (NotFound) or the run's timeout.
  Result<uint32_t> WaitForSpareAssignment(uint32_t spare);
  // Checks that every member recovered the same version with the right losses and that every
  // image holds that version's bytes; fills the figures. Its error is the run's (exit 1).
  Status CheckRecovery(const std::vector<MemberRecovery>& recoveries, RecoveryFigures* figures);
  Status CheckpointAfterRecovery(uint64_t restored, std::vector<VersionSeconds>* seconds);
  PublishExtra Extra(const RecoveryFigures& figures) const;
  std::string VerboseLines(const std::vector<MemberRecovery>& recoveries) const;

  const CheckpointOptions& o_;
  const FailurePlan plan_;
  const bool progress_;
  int heartbeat_misses_ = 0;
  std::shared_ptr<verbs::FaultController> faults_;  // the points that hold requests
  std::vector<verbs::FaultRuleId> rules_;
  std::vector<std::pair<verbs::FaultRuleId, uint64_t>> probes_;  // rule, requests it must hold
  uint64_t held_requests_ = 0;
  std::atomic<bool> second_loss_{false};  // `recovery`: the replacements were killed
  std::atomic<uint64_t> sink_{0};
  // Buffers outlive the world: its engines hold registrations of them until it is destroyed.
  std::vector<AlignedBuffer> images_;
  std::vector<AlignedBuffer> retired_;  // the lost processes' images
  std::vector<RawWork> raw_;
  std::unique_ptr<LoopbackWorld> world_;
  Nanos created_at_{0}, injected_at_{0}, detected_at_{0};
  std::vector<CheckpointHandle> handles_;  // by rank: the checkpoint the failure hit
  std::vector<uint8_t> replaced_;          // by rank: runs a replacement process now
  // Idle spares (no --respawn): each has a thread from the world's creation on, waiting in
  // WaitForAssignment as a spare process would (and zeroing the store the coordinator hints).
  // Once given a rank, it protects that rank's fresh image and, at the go, recovers.
  std::vector<AlignedBuffer> fresh_;        // by rank: a replacement's image (victims only)
  std::vector<MemberRecovery> recoveries_;  // by rank
  std::vector<Status> spare_failures_;      // by spare
  std::atomic<bool> recover_go_{false};     // every member may call Recover() now
  std::atomic<bool> spares_stop_{false};    // the recovery is over, or the run
  std::mutex killed_mutex_;
  std::vector<AlignedBuffer> killed_images_;  // `recovery`: the first replacements' images
  std::vector<std::jthread> spare_threads_;
  uint64_t expected_version_ = 0;  // what the recovery must restore
  bool committed_across_ = false;  // `commit`: version F + 1 committed before the loss
};

std::vector<uint32_t> FailureRun::Survivors() const {
  std::vector<uint32_t> survivors;
  for (uint32_t rank = 0; rank < o_.nodes; ++rank) {
    if (!IsVictim(rank)) survivors.push_back(rank);
  }
  return survivors;
}

std::vector<uint32_t> FailureRun::AllRanks() const {
  std::vector<uint32_t> ranks(o_.nodes);
  for (uint32_t rank = 0; rank < o_.nodes; ++rank) ranks[rank] = rank;
  return ranks;
}

FailureRun::~FailureRun() {
  StopSpares();
  if (world_ == nullptr) return;
  // A victim's first process may still be hung (frozen, with no replacement) or, when the run
  // ended before the failure, still holding requests the rules keep: kill it, so that the
  // world's teardown waits for none of them.
  for (uint32_t victim : plan_.victims) {
    if (!replaced_[victim]) (void)world_->Kill(victim);
  }
}

Status FailureRun::CreateWorld() {
  internal::LoopbackTestWorldOptions options;
  static_cast<LoopbackWorldOptions&>(options) = LoopbackOptionsFor(o_, plan_.timeout);
  // As LoopbackWorld::Create does: the heartbeat's bound is at least kLoopbackHeartbeatBound.
  const milliseconds interval(o_.hb_interval_ms);
  heartbeat_misses_ = std::max<int>(
      options.engine.heartbeat_misses,
      static_cast<int>((kLoopbackHeartbeatBound + interval - milliseconds(1)) / interval));
  options.engine.heartbeat_misses = heartbeat_misses_;
  if (plan_.at == FailAt::kWrite || plan_.at == FailAt::kHeaders || plan_.at == FailAt::kCommit ||
      plan_.at == FailAt::kRecovery) {
    faults_ = std::make_shared<verbs::FaultController>();
    options.wrap_fabric = [faults = faults_](uint32_t, std::unique_ptr<verbs::Fabric> inner) {
      return std::make_unique<verbs::FaultyFabric>(std::move(inner), faults);
    };
  }
  options.spares = plan_.respawn ? 0 : plan_.spares;
  FT_ASSIGN_OR_RETURN(world_, internal::LoopbackWorldTesting::Create(options));
  created_at_ = Now();
  handles_.resize(o_.nodes);
  replaced_.assign(o_.nodes, 0);
  // A replacement's image: fresh memory of the committed size, holding garbage until Recover().
  fresh_.resize(o_.nodes);
  for (uint32_t victim : plan_.victims) {
    FT_ASSIGN_OR_RETURN(fresh_[victim], AlignedBuffer::Create(o_.size));
    std::memset(fresh_[victim].data(), 0x5a, o_.size);
  }
  StartSpares();
  return Status();
}

Status FailureRun::TimeVersions(uint32_t rank, Engine& engine, uint64_t first, uint64_t last,
                                const std::function<void()>& step, VersionSeconds* out) {
  for (uint64_t version = first; version <= last; ++version) {
    const auto checkpoint = [&engine, version]() -> Status {
      FT_ASSIGN_OR_RETURN(const uint64_t committed, engine.Checkpoint());
      if (committed != version) {
        return Status::Internal("committed version ", committed, ", expected ", version);
      }
      return Status();
    };
    FT_RETURN_IF_ERROR(
        TimeVersion(o_, rank, images_[rank], raw_[rank], version, checkpoint, step, sink_, out));
    if (progress_ && rank == 0) ShowProgress(version, plan_.last_version, out->checkpoint.back());
  }
  return Status();
}

Status FailureRun::CheckpointBeforeFailure(std::vector<VersionSeconds>* seconds) {
  return RunTogether(
      *world_, [&](uint32_t rank, Engine& engine, const std::function<void()>& step) -> Status {
        FT_RETURN_IF_ERROR(engine.Protect(0, images_[rank].data(), o_.size));
        // Version 1, untimed: it sizes and registers the stores.
        FT_RETURN_IF_ERROR(
            TimeFirstCheckpoint(rank, engine, images_[rank], 1, step, &(*seconds)[rank]));
        return TimeVersions(rank, engine, 2, plan_.version, step, &(*seconds)[rank]);
      });
}

Status FailureRun::StartCheckpoints(const std::vector<uint32_t>& ranks, uint64_t version) {
  for (uint32_t rank : ranks) {
    FillImage(images_[rank].span(), rank, version);
    Result<CheckpointHandle> handle = world_->engine(rank).CheckpointAsync();
    if (!handle.ok()) {
      return handle.status().WithContext(StrCat("rank ", rank, ": version ", version));
    }
    handles_[rank] = *handle;
  }
  return Status();
}

Status FailureRun::WaitForHeldRequests(const char* what) {
  const bool held = PollUntil(
      [&] {
        return std::all_of(probes_.begin(), probes_.end(), [&](const auto& probe) {
          return faults_->fired(probe.first) >= probe.second;
        });
      },
      plan_.timeout, std::chrono::microseconds(200));
  if (held) return Status();
  return Status::DeadlineExceeded("placing the failure at --kill-at ", plan_.at_name(), ": ", what,
                                  " of rank(s) ", JoinRanks(plan_.victims), " was not held within ",
                                  plan_.timeout.count(), " ms");
}

Status FailureRun::PrepareFailure() {
  const uint64_t next = plan_.version + 1;
  if (plan_.freeze) {
    // Until a node's first heartbeat is seen, its silence is bounded by the engines' timeout,
    // not by the heartbeat: let a few land before anyone hangs.
    const Nanos settle = std::max<Nanos>(milliseconds(200), 10 * milliseconds(o_.hb_interval_ms));
    std::this_thread::sleep_for(created_at_ + settle - Now());
  }
  using verbs::FaultRule;
  using verbs::Opcode;
  const auto of_kind = [](internal::WorkKind kind) {
    return [kind](uint64_t wr_id) { return internal::WorkId::Decode(wr_id).kind == kind; };
  };
  switch (plan_.at) {
    case FailAt::kIdle:
    case FailAt::kRecovery:
      // Work after version F that no checkpoint saved: the recovery rolls it back.
      for (uint32_t rank : Survivors()) FillImage(images_[rank].span(), rank, next);
      return Status();
    case FailAt::kPrepare:
      return StartCheckpoints(Survivors(), next);
    case FailAt::kWrite:
    case FailAt::kHeaders: {
      const bool cells = plan_.at == FailAt::kWrite;
      for (uint32_t victim : plan_.victims) {
        rules_.push_back(faults_->Add(FaultRule::Delay(kHoldSteps)
                                          .For(Opcode::kWrite)
                                          .OnNode(victim)
                                          .ForWrIds(of_kind(cells ? internal::WorkKind::kCell
                                                                  : internal::WorkKind::kHeader))));
        // write: its first cell WRITE is held; headers: all k + m, posted once every cell landed.
        probes_.emplace_back(rules_.back(), cells ? 1 : static_cast<uint64_t>(o_.k + o_.m));
      }
      FT_RETURN_IF_ERROR(StartCheckpoints(AllRanks(), next));
      return WaitForHeldRequests(cells ? "a cell WRITE" : "every header WRITE");
    }
    case FailAt::kCommit: {
      for (uint32_t victim : plan_.victims) {
        // The victim's first receive from the coordinator (the GO of F + 1) passes; the next
        // (the COMMIT or ABORT that answers its DONE) is held, unseen.
        rules_.push_back(
            faults_->Add(FaultRule::Delay(0).For(Opcode::kRecv).OnNode(victim).ToPeer(0).Nth(1)));
        rules_.push_back(
            faults_->Add(FaultRule::Delay(kHoldSteps).For(Opcode::kRecv).OnNode(victim).ToPeer(0)));
        probes_.emplace_back(rules_.back(), 1);
      }
      FT_RETURN_IF_ERROR(StartCheckpoints(AllRanks(), next));
      // Every DONE is in when the survivors' checkpoints end: the coordinator has decided.
      std::vector<Result<uint64_t>> outcomes;
      for (uint32_t rank : Survivors()) outcomes.push_back(handles_[rank].Wait());
      committed_across_ = outcomes[0].ok();
      for (size_t i = 1; i < outcomes.size(); ++i) {
        if (outcomes[i].ok() != committed_across_ ||
            (committed_across_ && *outcomes[i] != *outcomes[0])) {
          return Status::Internal(
              "version ", next, ": rank ", Survivors()[i], " ended with ",
              outcomes[i].ok() ? StrCat("commit ", *outcomes[i]) : outcomes[i].status().ToString(),
              ", the coordinator with ",
              committed_across_ ? StrCat("commit ", *outcomes[0])
                                : outcomes[0].status().ToString());
        }
      }
      if (committed_across_ && *outcomes[0] != next) {
        return Status::Internal("version ", next, " committed as ", *outcomes[0]);
      }
      // The survivors work on after the commit; none of it is saved.
      for (uint32_t rank : Survivors()) FillImage(images_[rank].span(), rank, next + 1);
      return WaitForHeldRequests("the coordinator's answer to the DONE");
    }
  }
  return Status();
}

Status FailureRun::Fail() {
  for (const auto& [rule, count] : probes_) held_requests_ += faults_->fired(rule);
  injected_at_ = Now();
  for (uint32_t victim : plan_.victims) {
    FT_RETURN_IF_ERROR(plan_.freeze ? world_->Freeze(victim) : world_->Kill(victim));
  }
  return Status();
}

Status FailureRun::WaitForDetection() {
  const std::vector<uint32_t> survivors = Survivors();
  const Nanos limit = plan_.timeout + 4 * HeartbeatBound();
  const bool detected = PollUntil(
      [&] {
        return std::all_of(survivors.begin(), survivors.end(),
                           [&](uint32_t rank) { return world_->engine(rank).FailureDetected(); });
      },
      limit, std::chrono::microseconds(100));
  detected_at_ = Now();
  if (detected) return Status();
  std::string late;
  for (uint32_t rank : survivors) {
    if (!world_->engine(rank).FailureDetected()) late += StrCat(late.empty() ? "" : ",", rank);
  }
  return Status::DeadlineExceeded("rank(s) ", late, " did not detect the loss of ",
                                  JoinRanks(plan_.victims), " within ",
                                  std::chrono::duration_cast<milliseconds>(limit).count(), " ms");
}

void FailureRun::RemoveRules() {
  for (verbs::FaultRuleId id : rules_) faults_->Remove(id);
  rules_.clear();
}

Status FailureRun::SettleFailure() {
  // The held requests stay with the dead processes; a replacement must find no rule.
  RemoveRules();
  const uint64_t next = plan_.version + 1;
  switch (plan_.at) {
    case FailAt::kIdle:
    case FailAt::kRecovery:
      expected_version_ = plan_.version;
      return Status();
    case FailAt::kCommit:
      expected_version_ = committed_across_ ? next : plan_.version;
      return Status();
    case FailAt::kPrepare:
    case FailAt::kWrite:
    case FailAt::kHeaders:
      break;
  }
  // Version F + 1 cannot commit without the victims' DONE: every survivor's attempt fails.
  expected_version_ = plan_.version;
  for (uint32_t rank : Survivors()) {
    Result<uint64_t> outcome = handles_[rank].Wait();
    if (outcome.ok()) {
      return Status::Internal("rank ", rank, " committed version ", *outcome, " although rank(s) ",
                              JoinRanks(plan_.victims), " failed before their part of it ended");
    }
  }
  return Status();
}

Result<RecoveryReport> FailureRun::ReplaceAndRecover(uint32_t rank, AlignedBuffer& image) {
  Result<Engine*> replaced = world_->Replace(rank);
  if (!replaced.ok()) return replaced.status().WithContext("Replace");
  if (Status protect = (*replaced)->Protect(0, image.data(), o_.size); !protect.ok()) {
    return protect.WithContext("the replacement's Protect");
  }
  return (*replaced)->Recover();
}

Result<uint32_t> FailureRun::WaitForSpareAssignment(uint32_t spare) {
  Engine& engine = world_->spare(spare);
  // In slices: a spare no rank needs stops waiting when the run is over.
  while (!spares_stop_.load()) {
    Result<Assignment> assigned = engine.WaitForAssignment(milliseconds(50));
    if (assigned.ok()) return assigned->rank;
    if (assigned.status().code() != StatusCode::kDeadlineExceeded) {
      return assigned.status().WithContext(StrCat("spare ", spare, "'s WaitForAssignment"));
    }
  }
  return Status::NotFound("no rank was assigned to spare ", spare);
}

void FailureRun::StartSpares() {
  recoveries_.assign(o_.nodes, MemberRecovery{});
  spare_failures_.assign(plan_.respawn ? 0 : plan_.spares, Status());
  for (uint32_t spare = 0; spare < spare_failures_.size(); ++spare) {
    spare_threads_.emplace_back([this, spare] {
      Result<uint32_t> rank = WaitForSpareAssignment(spare);
      if (!rank.ok()) {
        if (rank.status().code() != StatusCode::kNotFound) spare_failures_[spare] = rank.status();
        return;
      }
      if (*rank >= o_.nodes || !IsVictim(*rank) || fresh_[*rank].size() == 0) {
        spare_failures_[spare] =
            Status::Internal("spare ", spare, " was assigned rank ", *rank, ", not a victim");
        return;
      }
      // Recover() with the others: its time is measured from the same start.
      if (!PollUntil([&] { return recover_go_.load() || spares_stop_.load(); },
                     plan_.timeout + 4 * HeartbeatBound(), std::chrono::microseconds(200)) ||
          !recover_go_.load()) {
        spare_failures_[spare] = Status::DeadlineExceeded(
            "spare ", spare, " took rank ", *rank, " but the survivors never called Recover()");
        return;
      }
      RecoverReplacement(*rank, [&]() -> Result<RecoveryReport> {
        Engine& engine = world_->engine(*rank);
        FT_RETURN_IF_ERROR(
            engine.Protect(0, fresh_[*rank].data(), o_.size).WithContext("the spare's Protect"));
        return engine.Recover();
      });
    });
  }
}

void FailureRun::StopSpares() {
  spares_stop_ = true;
  spare_threads_.clear();  // joined
}

void FailureRun::RecoverReplacement(uint32_t rank,
                                    const std::function<Result<RecoveryReport>()>& first) {
  MemberRecovery& member = recoveries_[rank];
  replaced_[rank] = 1;
  member.took_part = true;
  member.called = Now();
  member.report = first();
  if (!member.report.ok() && second_loss_) {
    // `recovery`: this replacement was killed in Recover(); the recovery restarts once a
    // second new process takes the rank, with fresh memory again.
    Result<AlignedBuffer> again = AlignedBuffer::Create(o_.size);
    if (!again.ok()) {
      member.report = again.status();
      return;
    }
    std::lock_guard lock(killed_mutex_);
    killed_images_.push_back(std::exchange(fresh_[rank], std::move(again).value()));
    std::memset(fresh_[rank].data(), 0x5a, o_.size);
    member.report = ReplaceAndRecover(rank, fresh_[rank]);
  }
  member.returned = Now();
}

Status FailureRun::RecoverAll() {
  std::vector<verbs::FaultRuleId> read_rules;
  if (plan_.at == FailAt::kRecovery) {
    for (uint32_t victim : plan_.replaced) {
      read_rules.push_back(faults_->Add(
          verbs::FaultRule::Delay(kHoldSteps).For(verbs::Opcode::kRead).OnNode(victim)));
    }
  }
  std::atomic<bool> recovered{false};
  {
    // `recovery`: once every replacement is restoring (a READ of its image held), they die.
    std::jthread second_loss;
    if (!read_rules.empty()) {
      second_loss = std::jthread([&] {
        const bool restoring = PollUntil(
            [&] {
              return recovered.load() ||
                     std::all_of(read_rules.begin(), read_rules.end(),
                                 [&](verbs::FaultRuleId id) { return faults_->fired(id) > 0; });
            },
            plan_.timeout, std::chrono::microseconds(200));
        if (!restoring || recovered.load()) return;
        // First: a victim's thread that sees its Recover() fail checks the flag, and its second
        // process must read freely (the held READs die with the first).
        second_loss_ = true;
        for (verbs::FaultRuleId id : read_rules) faults_->Remove(id);
        for (uint32_t victim : plan_.replaced) (void)world_->Kill(victim);
      });
    }
    recover_go_ = true;  // the spares' threads given a rank recover now too
    (void)world_->Run([&](uint32_t rank, Engine& engine) -> Status {
      MemberRecovery& member = recoveries_[rank];
      if (!IsVictim(rank)) {
        member.took_part = true;
        member.called = Now();
        member.report = engine.Recover();
        member.returned = Now();
        return Status();
      }
      // --respawn: a new process for each victim; otherwise the spares' threads take part.
      if (plan_.respawn && IsReplaced(rank)) {
        RecoverReplacement(rank, [&] { return ReplaceAndRecover(rank, fresh_[rank]); });
      }
      return Status();
    });
    recovered = true;
    StopSpares();
    for (const Status& failed : spare_failures_) FT_RETURN_IF_ERROR(failed);
  }
  for (verbs::FaultRuleId id : read_rules) faults_->Remove(id);
  for (AlignedBuffer& image : killed_images_) retired_.push_back(std::move(image));
  killed_images_.clear();
  for (uint32_t victim : plan_.victims) {
    if (!replaced_[victim]) continue;
    retired_.push_back(std::move(images_[victim]));
    images_[victim] = std::move(fresh_[victim]);
  }
  return Status();
}

Status FailureRun::CheckRecovery(const std::vector<MemberRecovery>& recoveries,
                                 RecoveryFigures* figures) {
  const RecoveryReport& first = *recoveries[0].report;
  figures->restored_version = first.version;
  figures->lost = first.lost;
  if (first.version != expected_version_) {
    return Status::Internal("rank 0 restored version ", first.version,
                            "; the failure at --kill-at ", plan_.at_name(), " leaves version ",
                            expected_version_, " committed");
  }
  Nanos last_return = recoveries[0].returned;
  double rebuild_seconds = 0;
  for (uint32_t rank = 0; rank < o_.nodes; ++rank) {
    const MemberRecovery& member = recoveries[rank];
    const RecoveryReport& report = *member.report;
    if (report.version != first.version || report.lost != plan_.victims ||
        report.replacement != IsVictim(rank)) {
      return Status::Internal("rank ", rank, " recovered version ", report.version, " (lost ",
                              JoinRanks(report.lost), ", replacement ", report.replacement,
                              "); expected version ", first.version, ", lost ",
                              JoinRanks(plan_.victims));
    }
    last_return = std::max(last_return, member.returned);
    figures->recovery_ms =
        std::max(figures->recovery_ms, Milliseconds(member.called, member.returned));
    figures->wait_ms = std::max(figures->wait_ms, report.wait_seconds * 1e3);
    figures->restore_ms = std::max(figures->restore_ms, report.restore_seconds * 1e3);
    figures->reprotect_ms = std::max(figures->reprotect_ms, report.reprotect_seconds * 1e3);
    figures->engine_reduced_redundancy_ms =
        std::max(figures->engine_reduced_redundancy_ms, report.reduced_redundancy_seconds * 1e3);
    if (report.replacement) {
      figures->rebuilt_bytes += report.restored_bytes;
      figures->store_prepared = figures->store_prepared && report.store_prepared;
      rebuild_seconds = std::max(rebuild_seconds, report.restore_seconds);
    }
  }
  figures->detect_ms = Milliseconds(injected_at_, detected_at_);
  figures->reduced_redundancy_ms = Milliseconds(injected_at_, last_return);
  if (rebuild_seconds > 0) {
    figures->rebuild_gbps =
        GigabytesPerSecond(static_cast<double>(figures->rebuilt_bytes), rebuild_seconds);
  }
  // Every image, the replacements' included, holds the restored version's bytes.
  FT_ASSIGN_OR_RETURN(AlignedBuffer expected, AlignedBuffer::Create(o_.size));
  for (uint32_t rank = 0; rank < o_.nodes; ++rank) {
    FillImage(expected.span(), rank, first.version);
    if (std::memcmp(expected.data(), images_[rank].data(), o_.size) != 0) {
      return Status::DataLoss("rank ", rank, "'s image after Recover() differs from version ",
                              first.version, "'s bytes");
    }
  }
  return Status();
}

Status FailureRun::CheckpointAfterRecovery(uint64_t restored,
                                           std::vector<VersionSeconds>* seconds) {
  return RunTogether(
      *world_, [&](uint32_t rank, Engine& engine, const std::function<void()>& step) -> Status {
        return TimeVersions(rank, engine, restored + 1, plan_.last_version, step,
                            &(*seconds)[rank]);
      });
}

PublishExtra FailureRun::Extra(const RecoveryFigures& f) const {
  PublishExtra extra;
  extra.add_json = [this, f](nlohmann::json& out) {
    out["lost"] = f.lost;
    out["detect_ms"] = f.detect_ms;
    out["recovery_ms"] = f.recovery_ms;
    out["reprotect_ms"] = f.reprotect_ms;
    out["reduced_redundancy_ms"] = f.reduced_redundancy_ms;
    out["restored_version"] = f.restored_version;
    out["rebuild_gbps"] = f.rebuild_gbps;
    out["failure"] = plan_.freeze ? "freeze" : "kill";
    out["kill_at"] = plan_.at_name();
    out["failed_after_version"] = plan_.version;
    out["spares"] = plan_.respawn ? 0 : plan_.spares;
    out["respawn"] = plan_.respawn;
    out["wait_ms"] = f.wait_ms;
    out["restore_ms"] = f.restore_ms;
    out["reduced_redundancy_engine_ms"] = f.engine_reduced_redundancy_ms;
    out["rebuilt_bytes"] = f.rebuilt_bytes;
    out["replacement_store_prepared"] = f.rebuilt_bytes > 0 && f.store_prepared;
    out["held_requests"] = f.held_requests;
    out["timeout_ms"] = plan_.timeout.count();
    out["timed_versions"] = f.timed_versions;
    out["first_checkpoint_after_recovery_seconds"] = f.first_after_recovery_seconds;
  };
  std::ostringstream text;
  const auto ms = [](double value) { return FormatFixed(value, 1) + " ms"; };
  text << "recovery: rank" << (plan_.victims.size() > 1 ? "s " : " ") << JoinRanks(plan_.victims)
       << " " << plan_.verb() << " at " << plan_.at_name() << " (version " << plan_.version
       << " committed); "
       << (plan_.respawn
               ? StrCat(plan_.replaced.size(), " new process",
                        plan_.replaced.size() == 1 ? "" : "es", " after the loss (--respawn)")
               : StrCat(plan_.spares, " idle spare", plan_.spares == 1 ? "" : "s"))
       << "\n";
  text << "  detected by every survivor in " << ms(f.detect_ms) << "; Recover() took "
       << ms(f.recovery_ms) << " on the slowest rank (waiting " << ms(f.wait_ms) << ", restore "
       << ms(f.restore_ms) << ", re-protection " << ms(f.reprotect_ms) << ")\n";
  text << "  restored version " << f.restored_version << " on every rank (every image equal to "
       << "that version's bytes); replacement images rebuilt at " << FormatFixed(f.rebuild_gbps, 3)
       << " GB/s\n";
  text << "  reduced redundancy for " << ms(f.reduced_redundancy_ms) << " (from the "
       << (plan_.freeze ? "freeze" : "kill") << " to the end of re-protection)\n";
  text << "  timed versions:";
  for (uint64_t version : f.timed_versions) text << " " << version;
  text << "; not timed: " << f.not_timed << "\n";
  extra.text = text.str();
  return extra;
}

std::string FailureRun::VerboseLines(const std::vector<MemberRecovery>& recoveries) const {
  std::ostringstream out;
  for (uint32_t rank = 0; rank < o_.nodes; ++rank) {
    const MemberRecovery& member = recoveries[rank];
    if (!member.took_part || !member.report.ok()) continue;
    const RecoveryReport& r = *member.report;
    out << "rank " << rank << (r.replacement ? " (replacement)" : "") << ": Recover() "
        << FormatFixed(Milliseconds(member.called, member.returned), 1) << " ms: waiting "
        << FormatFixed(r.wait_seconds * 1e3, 1) << ", restore "
        << FormatFixed(r.restore_seconds * 1e3, 1) << ", re-protection "
        << FormatFixed(r.reprotect_seconds * 1e3, 1) << " ms; reduced redundancy "
        << FormatFixed(r.reduced_redundancy_seconds * 1e3, 1) << " ms\n";
  }
  return out.str();
}

int Failed(const Status& status) {
  std::cerr << StrCat("ftbench checkpoint: ", status.ToString(), "\n");
  return kExitFailure;
}

int FailureRun::Run(const erasure::StripeGeometry& g) {
  const uint32_t n = o_.nodes;
  Result<std::vector<AlignedBuffer>> images = AllocateImages(o_, n);
  if (!images.ok()) return Failed(images.status());
  images_ = std::move(images).value();
  Result<std::vector<RawWork>> raw = AllocateRawWork(o_, g, n);
  if (!raw.ok()) return Failed(raw.status());
  raw_ = std::move(raw).value();
  if (Status created = CreateWorld(); !created.ok()) {
    std::cerr << "ftbench checkpoint: " << created << "\n";
    return created.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }

  // 1. Versions 1..F, then the failure.
  std::vector<VersionSeconds> before(n);
  Status status = CheckpointBeforeFailure(&before);
  if (progress_) std::cerr << "\r" << std::string(60, ' ') << "\r";
  if (!status.ok()) return Failed(status);
  status = PrepareFailure();
  if (status.ok()) status = Fail();
  if (status.ok()) status = WaitForDetection();
  if (status.ok()) status = SettleFailure();
  if (!status.ok()) return Failed(status);

  // 2. The recovery.
  if (status = RecoverAll(); !status.ok()) return Failed(status);
  const std::vector<MemberRecovery>& recoveries = recoveries_;
  const MemberRecovery* data_loss = nullptr;
  const MemberRecovery* failed = nullptr;
  uint32_t failed_rank = 0;
  for (uint32_t rank = 0; rank < n; ++rank) {
    const MemberRecovery& member = recoveries[rank];
    if (!member.took_part && !IsReplaced(rank)) continue;  // a victim without a spare
    if (member.report.ok()) continue;
    if (member.report.status().code() == StatusCode::kDataLoss && data_loss == nullptr) {
      data_loss = &member;
    }
    if (failed == nullptr) {
      failed = &member;
      failed_rank = rank;
    }
  }
  if (data_loss != nullptr) {
    std::cerr << "ftbench checkpoint: " << plan_.victims.size() << " rank(s) lost with m = " << o_.m
              << ": " << data_loss->report.status() << "\n";
    return kExitDataLoss;
  }
  if (failed != nullptr) {
    std::string why;
    if (plan_.at == FailAt::kRecovery && second_loss_) {
      why = StrCat(" (after the replacement", plan_.replaced.size() > 1 ? "s" : "", " of rank",
                   plan_.replaced.size() > 1 ? "s " : " ", JoinRanks(plan_.replaced),
                   " were killed while Recover() ran)");
    } else if (plan_.replaced.size() < plan_.victims.size()) {
      why = StrCat(" (--spares ", plan_.spares, " for ", plan_.victims.size(), " victims)");
    }
    std::cerr << "ftbench checkpoint: recovery failed" << why << ": rank " << failed_rank << ": "
              << failed->report.status() << "\n";
    return kExitFailure;
  }
  if (plan_.at == FailAt::kRecovery && !second_loss_) {
    return Failed(
        Status::Internal("--kill-at recovery: the recovery ended before the second loss "
                         "could be placed in it"));
  }
  RecoveryFigures figures;
  figures.held_requests = held_requests_;
  if (status = CheckRecovery(recoveries, &figures); !status.ok()) return Failed(status);

  // 3. Versions after the recovery, up to V + 1; the last one verified as checkpoint.h does.
  std::vector<VersionSeconds> after(n);
  status = CheckpointAfterRecovery(figures.restored_version, &after);
  if (progress_) std::cerr << "\r" << std::string(60, ' ') << "\r";
  if (!status.ok()) return Failed(status.WithContext("after the recovery"));
  Report report;
  AppendSlowest(before, &report.seconds);
  VersionSeconds after_slowest;
  AppendSlowest(after, &after_slowest);
  for (uint64_t version = 2; version <= plan_.version; ++version) {
    figures.timed_versions.push_back(version);
  }
  figures.first_after_recovery_seconds = after_slowest.checkpoint.front();
  for (size_t i = 1; i < after_slowest.checkpoint.size(); ++i) {
    report.seconds.checkpoint.push_back(after_slowest.checkpoint[i]);
    report.seconds.raw.push_back(after_slowest.raw[i]);
    report.seconds.memcpy.push_back(after_slowest.memcpy[i]);
    figures.timed_versions.push_back(figures.restored_version + 1 + i);
  }
  const uint64_t next = plan_.version + 1;
  figures.not_timed = "1 (sizes the stores), ";
  if (plan_.at == FailAt::kCommit && committed_across_) {
    figures.not_timed += StrCat(next, " (committed as the failure hit), ");
  } else if (plan_.at != FailAt::kIdle && plan_.at != FailAt::kRecovery) {
    figures.not_timed += StrCat("the attempt at ", next, " that the failure aborted, ");
  }
  figures.not_timed += StrCat(figures.restored_version + 1, " (the first after the recovery: ",
                              FormatFixed(figures.first_after_recovery_seconds, 4), " s)");

  CollectEngineFigures(*world_, &report);
  VerifyReadBack(o_, *world_, images_, &report);
  return Publish(o_, n, report, VerboseLines(recoveries), Extra(figures));
}

}  // namespace

int RunRecovery(const CheckpointOptions& o) {
  if (o.fabric == "rdma") {
    return Usage("recovery runs over rdma go through ftrun --kill (not yet supported by ftbench)");
  }
  if (std::string bad = CheckLoopbackFlags(o); !bad.empty()) return Usage(bad);
  Result<FailurePlan> plan = PlanOf(o);
  if (!plan.ok()) return Usage(std::string(plan.status().message()));
  auto geometry = erasure::StripeGeometry::Create(o.size, o.cell_bytes, o.k, o.m);
  if (!geometry.ok()) return Usage(std::string(geometry.status().message()));
  FailureRun run(o, std::move(plan).value());
  return run.Run(*geometry);
}

}  // namespace ft::ftbench
