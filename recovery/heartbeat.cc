// The heartbeat failure detector's rules (recovery/heartbeat.h).
#include "recovery/heartbeat.h"

#include <algorithm>
#include <cstring>

#include "common/check.h"

namespace ft::recovery {

Beat ReadBeat(std::span<const std::byte> slot) {
  FT_CHECK(slot.size() >= kBeatBytes);
  Beat beat;
  // A WRITE may be landing while we read: the two words are compared as read, and a torn reading
  // is just a change (the writer is alive).
  std::memcpy(&beat.epoch, slot.data(), sizeof(beat.epoch));
  std::memcpy(&beat.counter, slot.data() + sizeof(beat.epoch), sizeof(beat.counter));
  return beat;
}

void HeartbeatMonitor::Watch(NodeId node, Nanos now, Nanos first_beat_bound,
                             std::optional<Beat> baseline) {
  auto it = std::find_if(watched_.begin(), watched_.end(),
                         [node](const Watched& w) { return w.node == node; });
  if (it == watched_.end()) {
    watched_.push_back({});
    it = watched_.end() - 1;
  }
  *it = Watched{node,
                true,
                baseline.has_value(),
                false,
                baseline.value_or(Beat{}),
                now,
                std::max(first_beat_bound, timing_.bound())};
}

void HeartbeatMonitor::Unwatch(NodeId node) {
  for (Watched& w : watched_) {
    if (w.node == node) w.active = false;
  }
}

bool HeartbeatMonitor::watching(NodeId node) const {
  return std::any_of(watched_.begin(), watched_.end(),
                     [node](const Watched& w) { return w.node == node && w.active; });
}

void HeartbeatPacer::Start(Nanos now) {
  started_ = true;
  started_at_ = now;
  beat_at_.reset();
}

uint64_t HeartbeatPacer::Beat(Nanos now) {
  FT_CHECK(started_);
  beat_at_ = now;
  return ++counter_;
}

std::optional<Nanos> HeartbeatPacer::StalledPastBound(Nanos now) const {
  if (!started_) return std::nullopt;
  const Nanos since = now - (beat_at_ ? *beat_at_ : started_at_);
  if (since > timing_.bound()) return since;
  return std::nullopt;
}

Nanos HeartbeatPacer::UntilDue(Nanos now) const {
  if (!started_ || !beat_at_) return Nanos(0);
  const Nanos due = *beat_at_ + timing_.interval;
  return due > now ? due - now : Nanos(0);
}

}  // namespace ft::recovery
