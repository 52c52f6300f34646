// rdma_node's scenarios with injected faults (test/rdma_node.h): the process's rdma fabric is
// wrapped in a FaultyFabric (verbs/faulty/faulty.h) whose rules this process holds alone, so a
// rule catches only this rank's own requests; its peers are named by rank. The rules go between
// the two ranks of --pair, A and B, and only for one version: the engine must then carry on.
//
// deadline: version 1 commits and reads back. For version 2, A and B delay every WRITE to each
//   other by INT_MAX progress steps (for ever, as far as the round goes): their cells to each
//   other are in flight when the engine's deadline passes. Version 2 must fail on every rank, and
//   no failure may name the coordinator (the deadline fences the data links the WRITEs are stuck
//   on, never the control path); on A and B it is DeadlineExceeded or "the connection to node
//   <the other> was lost", and their rule must have held a WRITE (else nothing was stuck). Once
//   every rank's version 2 has failed (they meet in --sync-dir), the rule goes and version 2 is
//   taken again: it must commit and read back exactly. Prints
//     "rank R version 2 failed after S s (N WRITEs held): <status>",
//     "rank R version 2 committed after S s" and "rank R verified version 2".
// aborted-grow: version 1 commits with the --regions sizes and reads back. Every region then
//   grows --grow-factor times (re-allocated, protected again): version 2 gets a new placement in
//   new stores (the coordinator GROWs every store). A and B fail every WRITE to each other
//   (FaultRule::Fail: the QP breaks, as on a lost link), so version 2 aborts on every rank while
//   the others WRITE into the new stores. Version 1 must then read back exactly from the stores
//   it was written to, which stay registered until a later version commits: without a lost
//   column, with each column lost and, when m >= 2, each two neighbouring columns lost; on A and
//   B one column fewer, since their link to each other stays fenced until the next round (the
//   column the other holds is lost already). With the rule gone, version 2 is taken again: it
//   must commit and read back exactly. Prints, besides the store reports "rank R <when> image I
//   store S extents E" (when: "version 1", "aborted version 2", "version 2"),
//     "rank R version 2 failed (N WRITEs failed by the fault): <status>",
//     "rank R version 1 intact after the abort" and "rank R verified version 2".
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "engine/work_ids.h"
#include "test/rdma_node.h"
#include "verbs/faulty/faulty.h"

namespace ft::rdma_node {
namespace {

// The other rank of --pair when `rank` is one of them, else nullopt.
std::optional<int> PairPeer(const Flags& flags, uint32_t rank) {
  if (static_cast<int>(rank) == flags.pair[0]) return flags.pair[1];
  if (static_cast<int>(rank) == flags.pair[1]) return flags.pair[0];
  return std::nullopt;
}

// Version 1, read back. Empty when it committed and is intact.
std::string FirstVersion(const Flags& flags, Engine& engine, Regions& regions) {
  const uint32_t rank = engine.world().rank;
  Result<uint64_t> first = CheckpointNext(engine, regions, rank);
  if (!first.ok()) return "version 1: " + first.status().ToString();
  return ReadBackEach(engine, regions.sizes(), rank, LostColumns(flags.k, flags.m, rank));
}

// The retried version 2 commits and reads back; then the closing barrier (no store goes while
// another rank still reads). Prints "rank R verified version 2".
int RetryAndVerify(const Flags& flags, Engine& engine, Regions& regions, const std::string& note) {
  const uint32_t rank = engine.world().rank;
  const auto start = Clock::now();
  Result<uint64_t> retried = CheckpointNext(engine, regions, rank);
  if (!retried.ok()) {
    return Fail("the retried version 2 (" + note + "): " + retried.status().ToString());
  }
  std::cout << "rank " << rank << " version 2 committed after " << Seconds(SecondsSince(start))
            << " s" << std::endl;
  ReportStores(engine, "version 2");
  std::string problem =
      ReadBackEach(engine, regions.sizes(), rank, LostColumns(flags.k, flags.m, rank));
  if (Result<uint64_t> barrier = engine.Checkpoint(); !barrier.ok()) {
    if (!problem.empty()) Fail(problem);
    return Fail("the closing checkpoint (a barrier): " + barrier.status().ToString());
  }
  if (!problem.empty()) return Fail(problem);
  std::cout << "rank " << rank << " verified version 2" << std::endl;
  return kExitOk;
}

}  // namespace

// The checkpoint's own WRITEs (cells, headers), never a heartbeat on the control QP.
bool IsDataWrite(uint64_t wr_id) {
  const internal::WorkKind kind = internal::WorkId::Decode(wr_id).kind;
  return kind == internal::WorkKind::kCell || kind == internal::WorkKind::kHeader;
}

int Deadline(const Flags& flags, Engine& engine, Regions& regions, verbs::FaultController& faults) {
  const uint32_t rank = engine.world().rank;
  const uint32_t size = engine.world().size;
  const std::optional<int> other = PairPeer(flags, rank);
  if (std::string problem = FirstVersion(flags, engine, regions); !problem.empty()) {
    return Fail(problem);
  }

  std::optional<verbs::FaultRuleId> rule;
  if (other) {
    rule = faults.Add(verbs::FaultRule::Delay(std::numeric_limits<int>::max())
                          .For(verbs::Opcode::kWrite)
                          .ForWrIds(IsDataWrite)
                          .ToPeer(static_cast<verbs::NodeId>(*other)));
  }
  const auto start = Clock::now();
  Result<uint64_t> stuck = CheckpointNext(engine, regions, rank);
  const double failed_after = SecondsSince(start);
  const uint64_t held = rule ? faults.fired(*rule) : 0;
  if (rule) faults.Remove(*rule);

  std::string problem;
  if (stuck.ok()) {
    problem = "version 2 committed, with WRITEs between ranks " + std::to_string(flags.pair[0]) +
              " and " + std::to_string(flags.pair[1]) + " stuck";
  } else {
    const Status& failure = stuck.status();
    std::cout << "rank " << rank << " version 2 failed after " << Seconds(failed_after) << " s ("
              << held << " WRITEs held): " << failure.ToString() << std::endl;
    const std::string lost =
        other ? "the connection to node " + std::to_string(*other) + " was lost" : std::string();
    if (failure.message().find("coordinator") != std::string_view::npos) {
      problem =
          "version 2's failure names the coordinator (the control path must survive a "
          "deadline): " +
          failure.ToString();
    } else if (other && failure.code() != StatusCode::kDeadlineExceeded &&
               failure.message().find(lost) == std::string_view::npos) {
      problem = "version 2 failed with neither DeadlineExceeded nor \"" + lost +
                "\": " + failure.ToString();
    } else if (other && held == 0) {
      problem = "no WRITE to node " + std::to_string(*other) +
                " was posted in version 2: nothing was stuck (" + failure.ToString() + ")";
    }
  }
  // Nobody retries before every rank's version 2 has ended: a rank that met its deadline while
  // waiting for the COMMIT (nothing in flight) may be done before the coordinator has aborted
  // the round; a PREPARE that reaches the coordinator meanwhile is ignored, and the round's
  // ABORT then fails the retry. Meeting narrows that window to the flight of the last DONE (a
  // rank of the pair returns right after sending it); it does not close it.
  const std::string met = Meet(flags, "failed", rank, size, -1);
  if (!problem.empty()) return Fail(problem);
  if (!met.empty()) return Fail(met);
  return RetryAndVerify(flags, engine, regions, "no fault");
}

int AbortedGrow(const Flags& flags, Engine& engine, Regions& regions,
                verbs::FaultController& faults) {
  const uint32_t rank = engine.world().rank;
  const std::optional<int> other = PairPeer(flags, rank);
  if (std::string problem = FirstVersion(flags, engine, regions); !problem.empty()) {
    return Fail(problem);
  }
  ReportStores(engine, "version 1");
  const std::vector<uint64_t> first_sizes = regions.sizes();

  std::vector<uint64_t> grown;
  for (uint64_t bytes : first_sizes) {
    grown.push_back(static_cast<uint64_t>(static_cast<double>(bytes) * flags.grow_factor));
  }
  if (Status status = Reallocate(engine, regions, std::move(grown)); !status.ok()) {
    return Fail("growing the regions: " + status.ToString());
  }
  std::optional<verbs::FaultRuleId> rule;
  if (other) {
    rule = faults.Add(verbs::FaultRule::Fail(verbs::WcStatus::kRetryExceeded)
                          .For(verbs::Opcode::kWrite)
                          .ForWrIds(IsDataWrite)
                          .ToPeer(static_cast<verbs::NodeId>(*other)));
  }
  Result<uint64_t> aborted = CheckpointNext(engine, regions, rank);
  const uint64_t failed_writes = rule ? faults.fired(*rule) : 0;
  if (rule) faults.Remove(*rule);
  if (aborted.ok()) {
    return Fail("version 2 committed, with every WRITE between ranks " +
                std::to_string(flags.pair[0]) + " and " + std::to_string(flags.pair[1]) +
                " failing");
  }
  std::cout << "rank " << rank << " version 2 failed (" << failed_writes
            << " WRITEs failed by the fault): " << aborted.status().ToString() << std::endl;
  ReportStores(engine, "aborted version 2");

  // Version 1, from the stores it lives in, with as many columns lost as m allows.
  const int width = flags.k + flags.m;
  const int budget = flags.m - (other ? 1 : 0);
  std::vector<std::vector<int>> lost = {{}};
  for (int column = 0; column < width && budget >= 1; ++column) lost.push_back({column});
  for (int column = 0; column < width && budget >= 2; ++column) {
    lost.push_back({column, (column + 1) % width});
  }
  if (std::string problem = ReadBackEach(engine, first_sizes, rank, lost); !problem.empty()) {
    // The retry still runs (as a barrier): the others' reads of version 1 must not fail because
    // this rank went.
    (void)engine.Checkpoint();
    return Fail("after the aborted version 2: " + problem);
  }
  std::cout << "rank " << rank << " version 1 intact after the abort" << std::endl;
  return RetryAndVerify(flags, engine, regions, "the fault removed");
}

}  // namespace ft::rdma_node
