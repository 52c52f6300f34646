// `ftbench checkpoint`: N nodes checkpoint their images on the built-in loopback fabric.
//
// Each node (one thread, as one process would be) protects one image of --size bytes, and for
// each of --versions versions fills it with a pattern of (rank, version) and calls Checkpoint();
// all nodes start a version together, and a version's time is the slowest node's. After the last
// version every node reads its fragments back from its holders (one-sided READs), checks every
// CRC, decodes with the data fragments of one holder treated as lost, and compares every byte.
//
// The reference is measured in the same run, interleaved with the versions, on the same threads
// (all nodes at once): after each version every node does the raw work a checkpoint must do
// without the engine (ISA-L encode of its image, CRC64 and memcpy of (k+m)/k x image into
// pre-touched memory), then memcpy of its image alone. Medians over the versions.
//
// --fabric rdma: one process per node, launched by ftrun, srun or mpirun (world/process.h):
// the world size comes from the launcher (--nodes, when given, must match it). Each process
// checkpoints its own image and runs the reference on it; a checkpoint is collective (it ends at
// the commit, after the slowest node), so rank 0's times are the job's. Every rank verifies its
// own image and exits 1 if it differs; rank 0 alone prints the table or --json. A lost rank ends
// every survivor's checkpoint with an error naming it, and ftbench exits 1.
//
// --kill/--freeze RANKS: a loss at a chosen point, recovered onto replacement processes
// (loopback only): tools/ftbench/recovery_run.h.
#ifndef FT_TOOLS_FTBENCH_CHECKPOINT_H_
#define FT_TOOLS_FTBENCH_CHECKPOINT_H_

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

#include "tools/ftbench/util.h"

namespace ft::ftbench {

struct CheckpointOptions {
  uint32_t nodes = 8;
  uint64_t size = 64ull << 20;
  int k = 4;
  int m = 2;
  uint64_t cell_bytes = 1 << 20;
  int versions = 10;
  uint32_t domains = 0;  // 0: every node its own failure domain; D: rank % D
  int pipeline_depth = 4;
  bool json = false;
  bool verbose = false;
  std::string fabric = "loopback";  // or "rdma"
  bool nodes_given = false;
  double timeout_seconds = 60;  // bounds connecting and every checkpoint (rdma)
  int64_t hb_interval_ms = 10;  // failure detection: a heartbeat each interval
  int hb_misses = 0;            // 0: the fabric's default (HeartbeatMissesFor)
  DeviceFlags device;           // rdma
  bool timeout_given = false;   // --timeout was on the command line
  // A failure-injection run (tools/ftbench/recovery_run.h, loopback only): the ranks, each
  // list as given ("3" or "2,5"); the point of the failure ("" is idle); replacements
  // available (-1: one per victim).
  std::string kill;
  std::string freeze;
  std::string kill_at;
  int spares = -1;
  bool respawn = false;  // new processes after the loss instead of idle spares
};

// The heartbeat misses a run uses: --hb-misses, or by default 3 over rdma (a process per node)
// and, over loopback, as many as make a 1 s bound: every node of the world shares this
// machine's cores, and a worker waiting tens of milliseconds for one is no failure.
int HeartbeatMissesFor(const CheckpointOptions& options);

Command RegisterCheckpoint(CLI::App& app);
int RunCheckpoint(const CheckpointOptions& options);
int RunCheckpointRdma(const CheckpointOptions& options);

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_CHECKPOINT_H_
