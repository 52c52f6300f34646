// The heartbeat failure detector's rules, apart from any fabric: what a beat is, when a watched
// node counts as lost, and when a beater must assume that it was itself declared lost.
//
// Every node WRITEs a beat {epoch, counter} one-sidedly into its own slot of a table the
// coordinator registered, every interval; the coordinator WRITEs its own beat into one slot each
// node registered. The reader (HeartbeatMonitor) never needs the writer's CPU: it compares what
// each slot holds with what it held at the previous scan. A slot that has not changed for longer
// than bound() = interval x misses means that writer is lost.
//
// Why no false positive comes from the reader: a slot's "last change" is the time the reader
// *saw* it change, so a reader that was itself late (descheduled, busy) only detects later; it
// never declares a writer whose beats it merely did not look at. A writer that stalls longer than
// the bound is lost by definition, and HeartbeatPacer tells that writer so when it runs again: it
// must fence itself (a zombie of the old view), because the reader may already have removed it.
#ifndef FT_RECOVERY_HEARTBEAT_H_
#define FT_RECOVERY_HEARTBEAT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/clock.h"
#include "recovery/placement.h"

namespace ft::recovery {

// One slot of a heartbeat table, as WRITTEN (16 bytes, little-endian).
struct Beat {
  uint64_t epoch = 0;
  uint64_t counter = 0;
  bool operator==(const Beat&) const = default;
};
inline constexpr size_t kBeatBytes = 16;
static_assert(sizeof(Beat) == kBeatBytes);

// Reads the beat in `slot` (kBeatBytes) as it is now.
Beat ReadBeat(std::span<const std::byte> slot);

struct HeartbeatTiming {
  Nanos interval{10'000'000};  // between two beats of one writer
  int misses = 3;              // intervals without a change before the writer is lost
  Nanos bound() const { return interval * misses; }
};

class HeartbeatMonitor {
 public:
  explicit HeartbeatMonitor(HeartbeatTiming timing) : timing_(timing) {}

  // Watches `node` from `now` on. Until its slot is first seen to change, the writer may still
  // be starting (a coordinator waits in its Create for the slowest process before it beats at
  // all): it is lost only when `first_beat_bound` passes without a change; after that, whenever
  // its slot stays unchanged past bound(). Watching a node again restarts all of it (a
  // replacement in a new view). `baseline` is what the slot holds now, when the caller knows it
  // (a slot just cleared, or read at Watch): any other value is a beat, even the first one read,
  // so a writer that beat once and hung is lost after bound(). Without it, the first reading is
  // the baseline: a beat that landed before it proves nothing.
  void Watch(NodeId node, Nanos now, Nanos first_beat_bound,
             std::optional<Beat> baseline = std::nullopt);
  void Unwatch(NodeId node);
  bool watching(NodeId node) const;

  struct Silence {
    NodeId node = 0;
    Nanos silent_for{0};  // since its slot was last seen to change (or since Watch)
    Beat last;            // what the slot held all that time
    bool ever_beat = false;
  };
  // Looks at every watched slot (`read(node)` gives what it holds now). Returns the nodes silent
  // for longer than their bound, each once: they are no longer watched.
  template <typename ReadSlot>
  std::vector<Silence> Scan(Nanos now, ReadSlot&& read) {
    std::vector<Silence> silent;
    for (Watched& w : watched_) {
      if (!w.active) continue;
      const Beat beat = read(w.node);
      if (!w.read_once) {
        // The first reading is the baseline (what the slot held before the writer's first beat
        // landed, or a beat already landed: either way, only a change proves a live writer).
        w.read_once = true;
        w.last = beat;
        continue;
      }
      if (beat != w.last) {
        w.beating = true;
        w.last = beat;
        w.changed_at = now;
        continue;
      }
      const Nanos bound = w.beating ? timing_.bound() : w.first_beat_bound;
      if (now - w.changed_at > bound) {
        w.active = false;
        silent.push_back({w.node, now - w.changed_at, w.last, w.beating});
      }
    }
    return silent;
  }

  const HeartbeatTiming& timing() const { return timing_; }

 private:
  struct Watched {
    NodeId node = 0;
    bool active = false;
    bool read_once = false;  // `last` holds a reading
    bool beating = false;    // the slot was seen to change at least once
    Beat last;
    Nanos changed_at{0};  // when it was last seen to change (Watch, until it first does)
    Nanos first_beat_bound{0};
  };
  HeartbeatTiming timing_;
  std::vector<Watched> watched_;
};

// The writer's side: when the next beat is due, and whether this writer stalled for so long that
// its readers have declared it lost.
class HeartbeatPacer {
 public:
  explicit HeartbeatPacer(HeartbeatTiming timing) : timing_(timing) {}

  // Starts the pacing at `now` (the first beat is due at once).
  void Start(Nanos now);
  // Due when at least one interval passed since the last beat (or none was sent yet).
  bool Due(Nanos now) const {
    return started_ && (!beat_at_ || now - *beat_at_ >= timing_.interval);
  }
  // Records a beat sent at `now` and returns the counter to send (1, 2, ...).
  uint64_t Beat(Nanos now);
  // How long this writer went without a chance to beat, when longer than the bound: it was
  // stalled past what its readers tolerate. Call before Beat (the gap ends at `now`).
  std::optional<Nanos> StalledPastBound(Nanos now) const;
  // The time until the next beat is due (0 when due), to bound a wait.
  Nanos UntilDue(Nanos now) const;

 private:
  HeartbeatTiming timing_;
  bool started_ = false;
  Nanos started_at_{0};
  std::optional<Nanos> beat_at_;
  uint64_t counter_ = 0;
};

}  // namespace ft::recovery

#endif  // FT_RECOVERY_HEARTBEAT_H_
