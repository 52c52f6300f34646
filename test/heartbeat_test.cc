// The heartbeat detector's rules (recovery/heartbeat.h) on a table of slots in plain memory and a
// hand-driven time: when a watched writer is lost, that a late reader never declares one, and
// when a writer must know that it stalled past the bound.
#include "recovery/heartbeat.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <vector>

namespace ft::recovery {
namespace {

using namespace std::chrono_literals;

constexpr HeartbeatTiming kTiming{10ms, 3};  // bound 30 ms

// A table of 8 slots, written as a writer's WRITE would land.
struct Table {
  std::array<std::byte, 8 * kBeatBytes> bytes{};
  void Write(NodeId node, Beat beat) {
    std::memcpy(bytes.data() + node * kBeatBytes, &beat.epoch, 8);
    std::memcpy(bytes.data() + node * kBeatBytes + 8, &beat.counter, 8);
  }
  Beat Read(NodeId node) const { return ReadBeat({bytes.data() + node * kBeatBytes, kBeatBytes}); }
};

std::vector<NodeId> Nodes(const std::vector<HeartbeatMonitor::Silence>& silent) {
  std::vector<NodeId> nodes;
  for (const auto& s : silent) nodes.push_back(s.node);
  return nodes;
}

TEST(HeartbeatMonitor, AWriterThatStopsIsLostAfterTheBoundAndReportedOnce) {
  Table table;
  HeartbeatMonitor monitor(kTiming);
  monitor.Watch(1, Nanos(0), 30ms);
  monitor.Watch(2, Nanos(0), 30ms);
  const auto scan = [&](Nanos now) {
    return Nodes(monitor.Scan(now, [&](NodeId n) { return table.Read(n); }));
  };
  uint64_t counter = 0;
  for (Nanos now = 0ms; now <= 100ms; now += 10ms) {
    ++counter;
    table.Write(1, {1, counter});
    if (now <= 40ms) table.Write(2, {1, counter});  // node 2 stops after 40 ms
    const std::vector<NodeId> lost = scan(now);
    if (now <= 70ms) {
      // Last change seen at 40 ms: silent for 30 ms at 70 ms, which is not past the bound.
      EXPECT_TRUE(lost.empty()) << now.count();
    } else if (now == 80ms) {
      EXPECT_EQ(lost, std::vector<NodeId>{2});
    } else {
      EXPECT_TRUE(lost.empty()) << "reported once: " << now.count();
    }
  }
  EXPECT_TRUE(monitor.watching(1));
  EXPECT_FALSE(monitor.watching(2));
}

// The reader was itself late (a scan 200 ms after the last one): every writer that kept beating
// changed its slot meanwhile and is alive; only a writer that did not is lost.
TEST(HeartbeatMonitor, ALateReaderDeclaresOnlyWritersThatWereReallySilent) {
  Table table;
  HeartbeatMonitor monitor(kTiming);
  for (NodeId n : {1u, 2u, 3u}) monitor.Watch(n, Nanos(0), 30ms);
  const auto read = [&](NodeId n) { return table.Read(n); };
  for (NodeId n : {1u, 2u, 3u}) table.Write(n, {1, 1});
  EXPECT_TRUE(monitor.Scan(0ms, read).empty());
  table.Write(1, {1, 2});
  table.Write(3, {1, 7});
  EXPECT_EQ(Nodes(monitor.Scan(200ms, read)), std::vector<NodeId>{2});
  // The survivors' window restarts at the late scan: alive until 230 ms without a change.
  EXPECT_TRUE(monitor.Scan(230ms, read).empty());
  EXPECT_EQ(Nodes(monitor.Scan(231ms, read)), (std::vector<NodeId>{1, 3}));
}

// A writer may take long to start beating (a coordinator waits in its Create for the slowest
// process): until its slot first changes, the first-beat bound applies, not the bound. The first
// reading is only a baseline: a slot that holds a beat from before (or nothing) and never
// changes is lost when the first-beat bound passes, and the silence says it never beat.
TEST(HeartbeatMonitor, AWriterThatNeverBeatsIsLostAfterTheFirstBeatBound) {
  Table table;
  HeartbeatMonitor monitor(kTiming);
  table.Write(4, {1, 77});  // left by an earlier writer
  monitor.Watch(3, 5ms, 100ms);
  monitor.Watch(4, 5ms, 100ms);
  monitor.Watch(5, 5ms, 100ms);
  const auto read = [&](NodeId n) { return table.Read(n); };
  EXPECT_TRUE(monitor.Scan(10ms, read).empty());
  EXPECT_TRUE(monitor.Scan(90ms, read).empty()) << "no loss within the first-beat bound";
  table.Write(5, {1, 1});  // node 5 starts beating late, within the first-beat bound
  EXPECT_TRUE(monitor.Scan(100ms, read).empty());
  const std::vector<HeartbeatMonitor::Silence> lost = monitor.Scan(106ms, read);
  ASSERT_EQ(lost.size(), 2u);
  EXPECT_EQ(lost[0].node, 3u);
  EXPECT_EQ(lost[0].silent_for, 101ms);
  EXPECT_EQ(lost[0].last, (Beat{0, 0}));
  EXPECT_FALSE(lost[0].ever_beat);
  EXPECT_EQ(lost[1].node, 4u);
  EXPECT_EQ(lost[1].last, (Beat{1, 77}));
  // Node 5 beat once: from then on the ordinary bound.
  EXPECT_TRUE(monitor.Scan(130ms, read).empty());
  const std::vector<HeartbeatMonitor::Silence> later = monitor.Scan(131ms, read);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].node, 5u);
  EXPECT_TRUE(later[0].ever_beat);
}

// With the slot's content known at Watch (cleared, or read then), the first beat that lands before
// the first scan counts: a writer that beat once and hung is lost after the bound, not after the
// first-beat bound. A slot still holding its baseline is a writer that never beat.
TEST(HeartbeatMonitor, AKnownBaselineMakesTheFirstBeatCountEvenBeforeTheFirstScan) {
  Table table;
  HeartbeatMonitor monitor(kTiming);
  table.Write(2, {1, 77});  // left by a lost writer: the baseline of its replacement
  monitor.Watch(1, 0ms, 1000ms, Beat{});
  monitor.Watch(2, 0ms, 1000ms, Beat{1, 77});
  monitor.Watch(3, 0ms, 1000ms, Beat{});
  const auto read = [&](NodeId n) { return table.Read(n); };
  table.Write(1, {1, 1});  // one beat, then a hang
  table.Write(2, {2, 1});  // the replacement's first beat, then a hang
  EXPECT_TRUE(monitor.Scan(5ms, read).empty());
  EXPECT_TRUE(monitor.Scan(35ms, read).empty());
  EXPECT_EQ(Nodes(monitor.Scan(36ms, read)), (std::vector<NodeId>{1, 2}));
  // Node 3 never beat: the first-beat bound.
  EXPECT_TRUE(monitor.Scan(1000ms, read).empty());
  const std::vector<HeartbeatMonitor::Silence> never = monitor.Scan(1001ms, read);
  ASSERT_EQ(never.size(), 1u);
  EXPECT_EQ(never[0].node, 3u);
  EXPECT_FALSE(never[0].ever_beat);
}

// A first-beat bound shorter than the bound is the bound.
TEST(HeartbeatMonitor, TheFirstBeatBoundIsNeverShorterThanTheBound) {
  Table table;
  HeartbeatMonitor monitor(kTiming);
  monitor.Watch(1, 0ms, 1ms);
  const auto read = [&](NodeId n) { return table.Read(n); };
  EXPECT_TRUE(monitor.Scan(0ms, read).empty());
  EXPECT_TRUE(monitor.Scan(30ms, read).empty());
  EXPECT_EQ(Nodes(monitor.Scan(31ms, read)), std::vector<NodeId>{1});
}

// Any change is a beat, the epoch included; Unwatch stops reporting; Watch restarts a window.
TEST(HeartbeatMonitor, UnwatchAndWatchAgain) {
  Table table;
  HeartbeatMonitor monitor(kTiming);
  const auto read = [&](NodeId n) { return table.Read(n); };
  monitor.Watch(1, 0ms, 30ms);
  EXPECT_TRUE(monitor.Scan(0ms, read).empty());
  table.Write(1, {2, 0});  // a new epoch, counter restarted
  EXPECT_TRUE(monitor.Scan(35ms, read).empty());
  monitor.Unwatch(1);
  EXPECT_TRUE(monitor.Scan(500ms, read).empty());
  monitor.Watch(1, 500ms, 30ms);
  EXPECT_TRUE(monitor.Scan(510ms, read).empty());
  EXPECT_EQ(Nodes(monitor.Scan(541ms, read)), std::vector<NodeId>{1});
}

TEST(HeartbeatPacer, BeatsEachIntervalAndKnowsWhenItStalledPastTheBound) {
  HeartbeatPacer pacer(kTiming);
  EXPECT_FALSE(pacer.Due(0ms)) << "not started";
  pacer.Start(100ms);
  EXPECT_TRUE(pacer.Due(100ms));
  EXPECT_EQ(pacer.UntilDue(100ms), 0ms);
  EXPECT_EQ(pacer.Beat(100ms), 1u);
  EXPECT_FALSE(pacer.Due(109ms));
  EXPECT_EQ(pacer.UntilDue(104ms), 6ms);
  EXPECT_TRUE(pacer.Due(110ms));
  EXPECT_FALSE(pacer.StalledPastBound(130ms));
  EXPECT_EQ(pacer.Beat(130ms), 2u);
  // 30 ms without a beat is within the bound; 31 ms is past it (the reader's rule).
  EXPECT_FALSE(pacer.StalledPastBound(160ms));
  EXPECT_EQ(pacer.StalledPastBound(161ms), std::optional<Nanos>(31ms));
}

TEST(HeartbeatPacer, AStallBeforeTheFirstBeatCountsFromTheStart) {
  HeartbeatPacer pacer(kTiming);
  pacer.Start(0ms);
  EXPECT_FALSE(pacer.StalledPastBound(30ms));
  EXPECT_EQ(pacer.StalledPastBound(45ms), std::optional<Nanos>(45ms));
}

}  // namespace
}  // namespace ft::recovery
