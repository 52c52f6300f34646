// What the two runs of `ftbench checkpoint` share: the measurement (checkpoint.cc) and the
// failure-injection run (recovery_run.cc). The image pattern, the raw-work reference, one timed
// version, the flag checks, the loopback world's options, the read-back verification and the
// report (table or --json).
#ifndef FT_TOOLS_FTBENCH_CHECKPOINT_COMMON_H_
#define FT_TOOLS_FTBENCH_CHECKPOINT_COMMON_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <vector>

#include "erasure/geometry.h"
#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"
#include "tools/ftbench/checkpoint.h"
#include "tools/ftbench/util.h"

namespace ft::ftbench {

// The image of (rank, version): 64-bit words of a splitmix sequence, cheap to fill at GB/s.
void FillImage(std::span<uint8_t> image, uint32_t rank, uint64_t version);

// The raw work of one node's checkpoint without the engine, on the same image: per stripe, ISA-L
// encode, CRC64 of the k + m cells and memcpy of them to where holders would keep them; the last
// partial stripe is gathered into zero-padded cells first, as the engine's bounce cells are.
struct RawWork {
  int k = 0;
  int m = 0;
  uint64_t cell = 0;
  uint64_t stripes = 0;
  uint64_t image_bytes = 0;
  std::vector<uint8_t> tables;
  AlignedBuffer tail;         // k cells: the last stripe, zero-padded
  AlignedBuffer parity;       // m cells
  AlignedBuffer destination;  // (k + m) x stripes cells: the "stores"

  uint64_t BufferBytes() const { return tail.size() + parity.size() + destination.size(); }
  // The work on `image`; returns a sum of the CRCs (keep it, or the compiler may drop the work).
  uint64_t Run(const uint8_t* image);
};

// The reference's buffers for one node, allocated (and touched) before any timing.
Result<RawWork> MakeRawWork(const CheckpointOptions& o, const erasure::StripeGeometry& g);

// Seconds per version, one entry per timed version.
struct VersionSeconds {
  // The untimed first checkpoint: it also sizes and registers every store (the coordinator's
  // GROW), a one-time cost kept out of the versions' figures.
  double first_checkpoint = 0;
  std::vector<double> checkpoint;
  std::vector<double> raw;     // the raw-work reference on the image just checkpointed
  std::vector<double> memcpy;  // memcpy of that image
};

// Appends, for each version the nodes timed (each node the same count), the slowest node's
// seconds to `out`, and raises out->first_checkpoint to the slowest node's.
void AppendSlowest(const std::vector<VersionSeconds>& nodes, VersionSeconds* out);

// One timed version of one node, as every run takes it: fills the image with the pattern of
// (rank, pattern), times checkpoint(), then, on the image just checkpointed, the raw work and
// memcpy of the image. Interleaving puts each checkpoint and its reference under the same
// machine conditions. `step` runs before each of the three timed steps (loopback: a barrier of
// every node's thread, so that all nodes start each step together; rdma: nothing, a checkpoint
// is collective). Appends the times to `out`; a failed checkpoint() ends it early with its
// status (its time appended, no reference).
Status TimeVersion(const CheckpointOptions& o, uint32_t rank, AlignedBuffer& image, RawWork& raw,
                   uint64_t pattern, const std::function<Status()>& checkpoint,
                   const std::function<void()>& step, std::atomic<uint64_t>& sink,
                   VersionSeconds* out);

// The untimed first checkpoint of one node (it sizes and registers the stores): fills the image
// with the pattern of (rank, pattern), step, and times engine.Checkpoint() into
// out->first_checkpoint. Its status.
Status TimeFirstCheckpoint(uint32_t rank, Engine& engine, AlignedBuffer& image, uint64_t pattern,
                           const std::function<void()>& step, VersionSeconds* out);

// "\rftbench checkpoint: version v/of 0.123 s" on stderr (the progress line of a terminal).
void ShowProgress(uint64_t version, uint64_t of, double seconds);

struct Report {
  VersionSeconds
      seconds;  // loopback: the slowest node's of each version; rdma: rank 0's (the job's)
  bool verified = false;
  std::string verify_error;
  uint64_t peak_rss_after_checkpoints = 0;
  EngineMetrics metrics0;
  // The longest time a worker went without a heartbeat (loopback: over every node; rdma: rank
  // 0's): how close the run came to the failure detector's bound.
  double longest_heartbeat_gap_seconds = 0;
};

// "ftbench checkpoint: <message>" on stderr; kExitUsage.
int Usage(const std::string& message);

// The flag checks of a loopback run (both fabrics' checks with --nodes, and the rdma-only flags
// refused); an empty string when the flags are fine.
std::string CheckLoopbackFlags(const CheckpointOptions& o);

// The loopback world of a run: o's nodes, code, cells, pipeline, heartbeat and domains, with
// every collective wait bounded by `timeout`.
LoopbackWorldOptions LoopbackOptionsFor(const CheckpointOptions& o,
                                        std::chrono::milliseconds timeout);

// Verification of one node's last committed version: reads it back from its holders into `back`
// (o.size bytes), CRCs checked, with the data fragments of one holder (column rank % k) treated
// as lost so that decoding runs, and compares every byte with `image`. The read's error, or
// whether the bytes match.
Result<bool> ReadBackMatches(const CheckpointOptions& o, uint32_t rank, Engine& engine,
                             AlignedBuffer& back, const AlignedBuffer& image);

uint64_t PeakRssBytes();

// Every node's image (o.size bytes, zeroed), and every node's reference buffers.
Result<std::vector<AlignedBuffer>> AllocateImages(const CheckpointOptions& o, uint32_t n);
Result<std::vector<RawWork>> AllocateRawWork(const CheckpointOptions& o,
                                             const erasure::StripeGeometry& g, uint32_t n);

// Runs body(rank, engine, step) on every node of `world` at once (LoopbackWorld::Run), where
// step() is a barrier of all the nodes' threads; a node whose body fails leaves the barrier, so
// that the others never wait for it.
using TogetherBody =
    std::function<Status(uint32_t rank, Engine& engine, const std::function<void()>& step)>;
Status RunTogether(LoopbackWorld& world, const TogetherBody& body);

// The report's figures taken from the engines after the checkpoints: peak RSS, node 0's
// metrics, the longest heartbeat gap of any node.
void CollectEngineFigures(LoopbackWorld& world, Report* report);

// Every node's ReadBackMatches against images[rank], at once: report->verified and
// verify_error.
void VerifyReadBack(const CheckpointOptions& o, LoopbackWorld& world,
                    const std::vector<AlignedBuffer>& images, Report* report);

// What a run adds to the report: more --json fields, and lines printed after the table.
struct PublishExtra {
  std::function<void(nlohmann::json&)> add_json;
  std::string text;
};

// Prints the table (and `extra.text`) or the JSON object; the exit code (kExitFailure when the
// report is not verified).
int Publish(const CheckpointOptions& o, uint32_t n, const Report& report,
            const std::string& verbose_lines, const PublishExtra& extra = {});

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_CHECKPOINT_COMMON_H_
