// The coordinator's side of recovery (recovery/recovery_coordinator.h).
#include "recovery/recovery_coordinator.h"

#include <algorithm>

#include "common/log.h"
#include "recovery/version_selection.h"

namespace ft::recovery {

uint64_t ReplacementStoreBytes(const PrepareMessage& prepare, const Placement& placement,
                               NodeId node) {
  const uint64_t placed = node < placement.nodes() ? placement.used_bytes(node) : 0;
  return std::max<uint64_t>({prepare.capacity_bytes, placed, 1});
}

uint64_t LargestReplacementStoreBytes(const std::vector<PrepareMessage>& prepares,
                                      const Placement& placement) {
  if (placement.nodes() == 0) return 0;
  uint64_t largest = 0;
  for (NodeId node = 0; node < prepares.size(); ++node) {
    largest = std::max(largest, ReplacementStoreBytes(prepares[node], placement, node));
  }
  return largest;
}

Result<std::unique_ptr<RecoveryCoordinator>> RecoveryCoordinator::Start(Input input,
                                                                        Outbox* outbox) {
  const uint32_t n = static_cast<uint32_t>(input.prepares.size());
  if (input.k < 1 || input.m < 1 || n < 2) {
    return Status::InvalidArgument("recovery of a world of ", n, " nodes with RS(", input.k, ",",
                                   input.m, ")");
  }
  if (input.replaced.empty()) return Status::InvalidArgument("recovery with no replaced rank");
  for (NodeId rank : input.replaced) {
    if (rank >= n) return Status::InvalidArgument("replaced rank ", rank, " is not in the world");
  }
  if (input.version > 0 && input.placement.nodes() != n) {
    return Status::InvalidArgument("the committed placement has ", input.placement.nodes(),
                                   " nodes; the world has ", n);
  }
  auto recovery = std::make_unique<RecoveryCoordinator>(PrivateTag{}, std::move(input));
  const Input& in = recovery->input_;
  for (NodeId node = 0; node < n; ++node) {
    ViewMessage view;
    view.epoch = in.epoch;
    view.version = in.version;
    view.replaced = in.replaced;
    if (in.version > 0 && !recovery->IsReplaced(node)) {
      for (const HostedFragment& hosted : in.placement.HostedBy(node)) {
        view.checks.push_back({hosted.owner, static_cast<uint32_t>(hosted.column),
                               hosted.store_offset,
                               in.placement.footprint_bytes(hosted.owner) / 2});
      }
      if (view.checks.size() > kMaxHostedChecks || view.checks.size() > kMaxReportedChecks) {
        return Status::ResourceExhausted("node ", node, " hosts ", view.checks.size(),
                                         " fragments; a recovery report holds at most ",
                                         std::min(kMaxHostedChecks, kMaxReportedChecks));
      }
    }
    recovery->checks_[node] = view.checks;
    outbox->emplace_back(node, std::move(view));
  }
  return recovery;
}

RecoveryCoordinator::RecoveryCoordinator(PrivateTag, Input input)
    : input_(std::move(input)),
      checks_(input_.prepares.size()),
      answered_(input_.prepares.size(), 0),
      reports_(input_.prepares.size()),
      reprotecting_(input_.prepares.size(), 0) {
  std::sort(input_.replaced.begin(), input_.replaced.end());
  input_.replaced.erase(std::unique(input_.replaced.begin(), input_.replaced.end()),
                        input_.replaced.end());
}

bool RecoveryCoordinator::IsReplaced(NodeId node) const {
  return std::binary_search(input_.replaced.begin(), input_.replaced.end(), node);
}

void RecoveryCoordinator::OnReport(const ReportMessage& report, Outbox* outbox) {
  if (phase_ != Phase::kReports || report.epoch != input_.epoch || report.node >= size() ||
      answered_[report.node] || report.version != input_.version ||
      report.intact.size() != checks_[report.node].size()) {
    return;
  }
  answered_[report.node] = 1;
  reports_[report.node] = report;
  if (++answered_count_ == size()) Select(outbox);
}

void RecoveryCoordinator::Select(Outbox* outbox) {
  if (input_.version == 0) {
    // Nothing was ever committed: every member hears RESTORE(0) (nothing to restore, each starts
    // over) and answers, and nothing is re-protected.
    version_ = 0;
    SendRestores(outbox);
    return;
  }
  std::vector<uint8_t> has_image(size());
  for (NodeId owner = 0; owner < size(); ++owner) {
    has_image[owner] = input_.placement.footprint_bytes(owner) > 0;
  }
  VersionSelection selection(input_.version, input_.older_in_place, input_.k, std::move(has_image));
  for (NodeId node = 0; node < size(); ++node) {
    for (size_t i = 0; i < checks_[node].size(); ++i) {
      selection.Count(checks_[node][i].owner, reports_[node].intact[i]);
    }
  }
  table_ = selection.Table();
  FT_LOG(kInfo) << "recovery in epoch " << input_.epoch << ": " << table_;
  Result<uint64_t> chosen = selection.Choose();
  if (!chosen.ok()) {
    Fail(chosen.status(), outbox);
    return;
  }
  version_ = *chosen;
  written_epoch_ = version_ == input_.version ? input_.written_epoch : input_.older_written_epoch;
  SendRestores(outbox);
}

std::vector<HolderAddress> RecoveryCoordinator::HoldersOf(NodeId owner) const {
  std::vector<HolderAddress> holders;
  for (const FragmentSlot& slot : input_.placement.HoldersOf(owner)) {
    StoreKeys keys{input_.prepares[slot.holder].store_addr,
                   input_.prepares[slot.holder].store_rkey};
    for (const auto& [node, store] : new_stores_) {
      if (node == slot.holder) keys = store;
    }
    holders.push_back(HolderAddress{slot, keys.addr, keys.rkey});
  }
  return holders;
}

void RecoveryCoordinator::SendRestores(Outbox* outbox) {
  phase_ = Phase::kRestoring;
  std::fill(answered_.begin(), answered_.end(), 0);
  answered_count_ = 0;
  for (NodeId node = 0; node < size(); ++node) {
    RestoreMessage restore;
    restore.epoch = input_.epoch;
    restore.version = version_;
    restore.written_epoch = written_epoch_;
    if (version_ == 0) {
      outbox->emplace_back(node, std::move(restore));
      continue;
    }
    restore.image_bytes = version_ != input_.version && node < input_.older_image_bytes.size()
                              ? input_.older_image_bytes[node]
                              : input_.prepares[node].image_bytes;
    restore.slot_bytes = input_.placement.footprint_bytes(node) / 2;
    restore.holders = HoldersOf(node);
    for (const HostedFragment& hosted : input_.placement.HostedBy(node)) {
      if (restore.hosted_owners.empty() || restore.hosted_owners.back() != hosted.owner) {
        restore.hosted_owners.push_back(hosted.owner);
      }
    }
    if (IsReplaced(node)) {
      restore.store_bytes = ReplacementStoreBytes(input_.prepares[node], input_.placement, node);
    }
    outbox->emplace_back(node, std::move(restore));
  }
}

void RecoveryCoordinator::OnRestored(const RestoredMessage& restored, Outbox* outbox) {
  if (phase_ != Phase::kRestoring || restored.epoch != input_.epoch || restored.node >= size() ||
      answered_[restored.node] || restored.version != version_) {
    return;
  }
  if (restored.code != StatusCode::kOk) {
    const Status failed(restored.code, StrCat("node ", restored.node, " could not restore version ",
                                              version_, " (see its log)"));
    if (!AwaitsALoss(failed)) Fail(failed, outbox);
    return;
  }
  answered_[restored.node] = 1;
  if (IsReplaced(restored.node)) {
    new_stores_.emplace_back(restored.node, StoreKeys{restored.store_addr, restored.store_rkey});
  }
  if (++answered_count_ == size()) Reprotect(outbox);
}

void RecoveryCoordinator::Reprotect(Outbox* outbox) {
  phase_ = Phase::kReprotecting;
  if (version_ == 0) {
    Finish(outbox);  // no fragments anywhere
    return;
  }
  for (NodeId owner = 0; owner < size(); ++owner) {
    std::span<const FragmentSlot> slots = input_.placement.HoldersOf(owner);
    uint64_t columns = 0;
    for (size_t c = 0; c < slots.size(); ++c) {
      if (IsReplaced(slots[c].holder)) columns |= uint64_t{1} << c;
    }
    if (columns == 0) continue;
    reprotecting_[owner] = 1;
    ++reprotecting_count_;
    outbox->emplace_back(
        owner, ReprotectMessage{input_.epoch, version_, written_epoch_, columns, HoldersOf(owner)});
  }
  if (reprotecting_count_ == 0) Finish(outbox);
}

void RecoveryCoordinator::OnDone(const DoneMessage& done, Outbox* outbox) {
  if (phase_ != Phase::kReprotecting || done.epoch != input_.epoch || done.node >= size() ||
      !reprotecting_[done.node] || done.version != version_) {
    return;
  }
  if (done.code != StatusCode::kOk) {
    const Status failed(done.code, StrCat("node ", done.node, " could not re-protect version ",
                                          version_, " on the replacements (see its log)"));
    if (!AwaitsALoss(failed)) Fail(failed, outbox);
    return;
  }
  reprotecting_[done.node] = 0;
  if (--reprotecting_count_ == 0) Finish(outbox);
}

// A member that could not reach a partner (Unavailable) saw a loss before this coordinator did:
// the loss will come and restart the recovery in a newer view. If it does not, the deadline ends
// the recovery with this reason.
bool RecoveryCoordinator::AwaitsALoss(const Status& failed) {
  if (failed.code() != StatusCode::kUnavailable) return false;
  if (awaited_loss_.ok()) awaited_loss_ = failed;
  return true;
}

void RecoveryCoordinator::OnNodeLost(NodeId node, std::string_view why, Outbox* outbox) {
  if (finished()) return;
  Fail(Status::Unavailable("node ", node, " was lost during recovery (", why, ")"), outbox);
}

void RecoveryCoordinator::OnDeadline(Outbox* outbox) {
  if (finished()) return;
  std::string silent;
  const char* awaited = "REPORT";
  for (NodeId node = 0; node < size(); ++node) {
    bool waiting = false;
    switch (phase_) {
      case Phase::kReports:
      case Phase::kRestoring:
        waiting = !answered_[node];
        awaited = phase_ == Phase::kReports ? "REPORT" : "RESTORED (did it call Recover()?)";
        break;
      case Phase::kReprotecting:
        waiting = reprotecting_[node] != 0;
        awaited = "DONE of its re-protection";
        break;
      case Phase::kRecovered:
      case Phase::kFailed:
        break;
    }
    if (waiting) silent += StrCat(silent.empty() ? "" : ", ", node);
  }
  if (!awaited_loss_.ok()) {
    Fail(awaited_loss_.WithContext(StrCat("recovery in epoch ", input_.epoch,
                                          " ran out of time waiting for the loss behind it")),
         outbox);
    return;
  }
  Fail(Status::DeadlineExceeded("recovery in epoch ", input_.epoch, " ran out of time: node",
                                silent.find(',') != std::string::npos ? "s " : " ", silent,
                                " sent no ", awaited),
       outbox);
}

void RecoveryCoordinator::Finish(Outbox* outbox) {
  phase_ = Phase::kRecovered;
  for (NodeId node = 0; node < size(); ++node) {
    outbox->emplace_back(node, CommitMessage{input_.epoch, version_});
  }
}

void RecoveryCoordinator::Fail(Status why, Outbox* outbox) {
  phase_ = Phase::kFailed;
  failure_ = std::move(why);
  FT_LOG(kWarn) << "recovery in epoch " << input_.epoch << " failed: " << failure_;
  for (NodeId node = 0; node < size(); ++node) {
    AbortMessage abort;
    abort.epoch = input_.epoch;
    abort.version = kRecoveryVersion;
    abort.code = failure_.code();
    abort.reason = std::string(failure_.message());
    outbox->emplace_back(node, std::move(abort));
  }
}

}  // namespace ft::recovery
