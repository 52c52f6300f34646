// The heartbeat (engine/heartbeat.h): slots, beats over the control QPs, scans.
#include "engine/heartbeat.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "engine/work_ids.h"

namespace ft::internal {

Heartbeat::Heartbeat(NodeContext& node, PeerTable& peers)
    : node_(node),
      peers_(peers),
      timing_{node.options.heartbeat_interval, node.options.heartbeat_misses},
      pacer_(timing_),
      monitor_(timing_),
      targets_(node.world.size) {}

std::byte* Heartbeat::SlotOf(NodeId writer) const {
  // The coordinator's table has a slot per rank; a node has one, for the coordinator.
  return slots_.data() + (node_.is_coordinator() ? writer * recovery::kBeatBytes : 0);
}

Status Heartbeat::Register() {
  const size_t slots = node_.is_coordinator() ? node_.world.size : 1;
  FT_ASSIGN_OR_RETURN(slots_, AlignedBuffer::Allocate(slots * recovery::kBeatBytes));
  FT_ASSIGN_OR_RETURN(source_, AlignedBuffer::Allocate(node_.world.size * recovery::kBeatBytes));
  FT_ASSIGN_OR_RETURN(slots_mr_, node_.fabric->RegisterMemory(
                                     slots_.data(), slots_.size(),
                                     verbs::kAccessLocalWrite | verbs::kAccessRemoteWrite));
  FT_ASSIGN_OR_RETURN(source_mr_, node_.fabric->RegisterMemory(source_.data(), source_.size(),
                                                               verbs::kAccessLocalWrite));
  return Status();
}

std::vector<std::pair<NodeId, recovery::BeatTargetMessage>> Heartbeat::Targets() const {
  std::vector<std::pair<NodeId, recovery::BeatTargetMessage>> out;
  for (NodeId peer = 0; peer < node_.world.size; ++peer) {
    const bool reads_peer =
        node_.is_coordinator() ? peer != node_.rank() : peer == node_.coordinator();
    if (!reads_peer) continue;
    out.emplace_back(peer, recovery::BeatTargetMessage{node_.epoch(), node_.rank(),
                                                       reinterpret_cast<uint64_t>(SlotOf(peer)),
                                                       slots_mr_->rkey()});
  }
  return out;
}

void Heartbeat::Start(Nanos now) {
  pacer_.Start(now);
  // Until a peer's first beat lands it may still be starting: the coordinator beats only once
  // every process has connected, which may take up to the connect timeout.
  const Nanos first_beat_bound = node_.options.timeout;
  // No writer knows its slot yet (Targets() go out after this): what they hold now is no beat.
  for (const auto& [peer, message] : Targets()) {
    monitor_.Watch(peer, now, first_beat_bound, ReadSlot(peer));
  }
}

void Heartbeat::OnTarget(NodeId from, const recovery::BeatTargetMessage& message) {
  // A replacement announces its slot in the view being installed, which may be ahead of ours.
  if (message.epoch < node_.epoch() || from >= targets_.size() || message.node != from) return;
  Target& target = targets_[from];
  target.known = true;
  target.addr = message.slot_addr;
  target.rkey = message.slot_rkey;
  target.posted_at.reset();  // a new slot: its first beat goes at once
}

void Heartbeat::OnWriteCompleted(uint32_t index) {
  FT_CHECK_MSG(index < targets_.size() && targets_[index].in_flight,
               "a heartbeat completion with no beat in flight to that node");
  targets_[index].in_flight = false;
}

void Heartbeat::Forget(NodeId node) {
  if (node < targets_.size()) targets_[node].known = false;
  monitor_.Unwatch(node);
}

recovery::BeatTargetMessage Heartbeat::Rejoin(NodeId node, Nanos now, uint64_t epoch) {
  targets_[node] = Target{};
  // The lost writer's links are fenced: its last beat stays as it is until the replacement's
  // first one, which this message lets it send.
  monitor_.Watch(node, now, node_.options.timeout, ReadSlot(node));
  return recovery::BeatTargetMessage{epoch, node_.rank(), reinterpret_cast<uint64_t>(SlotOf(node)),
                                     slots_mr_->rkey()};
}

bool Heartbeat::CheckStall(Nanos now) {
  if (!stalled_) stalled_ = pacer_.StalledPastBound(now);
  return stalled_.has_value();
}

bool Heartbeat::NeverBeatToAKnownTarget() const {
  return std::any_of(targets_.begin(), targets_.end(), [](const Target& target) {
    return target.known && !target.in_flight && !target.posted_at;
  });
}

void Heartbeat::BeatIfDue(Nanos now) {
  // A target just learnt gets its first beat at once: until a first change of its slot, the
  // reader allows a node the whole start-up (the connect timeout), so a node that hung right
  // after a quick start would otherwise go unnoticed that long.
  if (stalled_ || (!pacer_.Due(now) && !NeverBeatToAKnownTarget()) || CheckStall(now)) return;
  const uint64_t counter = pacer_.Beat(now);
  for (NodeId peer = 0; peer < targets_.size(); ++peer) {
    Target& target = targets_[peer];
    if (!target.known || target.in_flight) continue;
    verbs::QueuePair* qp = peers_.Usable(peer, LinkRole::kControl);
    if (qp == nullptr) continue;
    std::byte* source = source_.data() + peer * recovery::kBeatBytes;
    const recovery::Beat beat{node_.epoch(), counter};
    std::memcpy(source, &beat.epoch, sizeof(beat.epoch));
    std::memcpy(source + sizeof(beat.epoch), &beat.counter, sizeof(beat.counter));
    verbs::SendRequest request;
    request.wr_id = WorkId{WorkKind::kBeat, 0, peer}.Encode();
    request.opcode = verbs::Opcode::kWrite;
    request.sge[0] = {reinterpret_cast<uint64_t>(source),
                      static_cast<uint32_t>(recovery::kBeatBytes), source_mr_->lkey()};
    request.num_sge = 1;
    request.remote_addr = target.addr;
    request.rkey = target.rkey;
    // A refused post (a full send queue) skips this beat; a broken QP shows up as its error
    // completions and events, which fence the link.
    if (qp->PostSend({&request, 1}).ok()) {
      peers_.CountPosted(qp->id());
      target.in_flight = true;
      if (target.posted_at) longest_gap_ = std::max(longest_gap_, now - *target.posted_at);
      target.posted_at = now;
    }
  }
}

std::vector<recovery::HeartbeatMonitor::Silence> Heartbeat::Scan(Nanos now) {
  return monitor_.Scan(now, [this](NodeId writer) { return ReadSlot(writer); });
}

recovery::Beat Heartbeat::ReadSlot(NodeId writer) const {
  return recovery::ReadBeat({SlotOf(writer), recovery::kBeatBytes});
}

Nanos Heartbeat::UntilDue(Nanos now) const { return pacer_.UntilDue(now); }

void Heartbeat::Deregister() {
  slots_mr_.reset();
  source_mr_.reset();
}

}  // namespace ft::internal
