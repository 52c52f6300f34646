// `ftbench write-bw`: one-sided WRITE bandwidth between two processes over the rdma Fabric, driven
// the way the engine drives its checkpoint WRITEs (engine/datapath.h), to set against perftest's
// ib_write_bw on the same link (scripts/bench-rdma.sh does both).
//
// Run it as a job of exactly two ranks: `ftrun -n 2 -- ftbench write-bw`, or srun/mpirun with two
// tasks and FT_COORDINATOR set. Each process creates its rdma Fabric (ft::CreateProcessFabric);
// rank 1 dials rank 0 (which listens at FT_COORDINATOR), with a bound of kWriteBwTimeoutSeconds.
//
// Rank 1, the target, registers one buffer of --size bytes for remote WRITE and sends its address
// and rkey to rank 0 in the Connect private data. Rank 0, the writer, registers one source buffer
// per in-flight slot (filled with a fixed pattern; a buffer is reused only after its WRITE
// completed) and, for --duration seconds, WRITEs --size-byte messages to that one remote buffer as
// the engine's worker does: one signaled WRITE per message, one request per PostSend, a progress
// step (PollCompletions of up to internal::kPollBatch) after each post, at most
// internal::WritesInFlightPerQp(--pipeline-depth) WRITEs in flight, busy polling while the window
// is full. Then it drains, and the timed loop ends with the last completion: iterations is the
// number of completed WRITEs, seconds the loop's wall time, write_gbps = size x iterations /
// seconds / 1e9.
//
// The two ranks end together: after the drain rank 0 SENDs a "done" message (behind every WRITE
// on the same RC queue pair) and prints only once it completed; rank 1 waits for it, then checks
// that its buffer holds rank 0's pattern and exits. Every wait is bounded: a lost peer, an error
// completion or a stall ends either rank with exit 1 and a message naming the peer and the status.
// Rank 1 prints nothing on success.
//
// Output (rank 0): a table, or with --json one object with the fields size, iterations, seconds,
// write_gbps. Exit codes as util.h: 2 for bad flags, a world that is not exactly two ranks, or a
// --size / --pipeline-depth beyond the device's limits.
#ifndef FT_TOOLS_FTBENCH_WRITE_BW_H_
#define FT_TOOLS_FTBENCH_WRITE_BW_H_

#include <CLI/CLI.hpp>

#include <cstdint>

#include "ftengine/engine.h"
#include "tools/ftbench/util.h"

namespace ft::ftbench {

struct WriteBwOptions {
  uint64_t size = 65536;
  double duration_seconds = 5;
  int pipeline_depth = EngineOptions{}.pipeline_depth;
  bool json = false;
  DeviceFlags device;
};

// Bound on connecting, on the drain, on the "done" handshake and on any stretch without a
// completion while WRITEs are in flight.
inline constexpr double kWriteBwTimeoutSeconds = 30;
// Longest --duration accepted.
inline constexpr double kWriteBwMaxDurationSeconds = 86400;

// Adds the `write-bw` subcommand to `app`.
Command RegisterWriteBw(CLI::App& app);

// Runs this process's rank of the measurement; returns the exit code.
int RunWriteBw(const WriteBwOptions& options);

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_WRITE_BW_H_
