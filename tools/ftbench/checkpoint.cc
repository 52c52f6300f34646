#include "tools/ftbench/checkpoint.h"

#include <isa-l/crc64.h>
#include <isa-l/erasure_code.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "erasure/codec.h"
#include "erasure/geometry.h"
#include "ftengine/bootstrap.h"
#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"
#include "tools/ftbench/checkpoint_common.h"
#include "tools/ftbench/recovery_run.h"
#include "verbs/rdma/rdma.h"
#include "world/process.h"

namespace ft::ftbench {
namespace {

using Clock = SteadyClock;

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const double rank = p * static_cast<double>(values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (rank - static_cast<double>(low));
}

// CPU seconds (user + system) of the whole process so far.
double ProcessCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

Command RegisterCheckpoint(CLI::App& app) {
  auto options = std::make_shared<CheckpointOptions>();
  CLI::App* sub = app.add_subcommand(
      "checkpoint",
      "N nodes in this process checkpoint their images over the loopback fabric; verifies the "
      "last version by reading it back with one holder's fragments treated as lost");
  CLI::Option* nodes =
      sub->add_option("--nodes", options->nodes,
                      "Nodes (loopback: one thread each; rdma: must match the launcher's world)")
          ->check(CLI::Range(2u, 65536u))
          ->capture_default_str();
  AddSizeOption(*sub, "--size", &options->size,
                "Image bytes per node: 64MiB, 1.5GiB, 500MB (KiB, MiB, GiB: powers of 1024; kB, "
                "MB, GB: of 1000)");
  sub->add_option("-k,--k", options->k, "Data cells per stripe")
      ->check(CLI::Range(1, erasure::kMaxCells - 1))
      ->capture_default_str();
  sub->add_option("-m,--m", options->m, "Parity cells per stripe")
      ->check(CLI::Range(1, erasure::kMaxCells - 1))
      ->capture_default_str();
  AddSizeOption(*sub, "--cell-bytes", &options->cell_bytes, "Bytes per cell");
  sub->add_option("--versions", options->versions, "Checkpoints to take")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  sub->add_option("--domains", options->domains,
                  "Failure domains: rank % D (0: every node its own domain)")
      ->capture_default_str();
  sub->add_option("--pipeline-depth", options->pipeline_depth, "Stripes in flight per node")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  sub->add_option("--fabric", options->fabric,
                  "loopback: N nodes in this process; rdma: this process is one node of a job "
                  "launched by ftrun, srun or mpirun")
      ->check(CLI::IsMember({"loopback", "rdma"}))
      ->capture_default_str();
  CLI::Option* timeout =
      sub->add_option("--timeout", options->timeout_seconds,
                      "rdma: seconds to wait for the coordinator and for each checkpoint; "
                      "loopback with --kill/--freeze: the engines' timeout, which bounds every "
                      "wait (default 60 s; 5 s when --spares leaves a victim without a "
                      "replacement, whose recovery fails after it)")
          ->check(CLI::Range(0.1, 86400.0))
          ->capture_default_str();
  sub->add_option("--hb-interval-ms", options->hb_interval_ms,
                  "Failure detection: every node WRITEs a heartbeat each interval (ms)")
      ->check(CLI::Range(int64_t{1}, int64_t{60'000}))
      ->capture_default_str();
  sub->add_option("--hb-misses", options->hb_misses,
                  "Intervals without a heartbeat before a node is lost (0: 3 over rdma; over "
                  "loopback, where the nodes share this machine's cores, a 1 s bound)")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  AddDeviceOptions(*sub, &options->device);
  sub->add_flag("--json", options->json, "Print one JSON object instead of the table");
  sub->add_flag("-v,--verbose", options->verbose, "Per-phase times and memory use on stderr");
  AddFailureOptions(*sub, options.get());
  return {sub, [options, nodes, timeout] {
            options->nodes_given = nodes->count() > 0;
            options->timeout_given = timeout->count() > 0;
            if (FailureRequested(*options)) return RunRecovery(*options);
            return options->fabric == "rdma" ? RunCheckpointRdma(*options)
                                             : RunCheckpoint(*options);
          }};
}

int HeartbeatMissesFor(const CheckpointOptions& o) {
  if (o.hb_misses > 0) return o.hb_misses;
  if (o.fabric == "rdma") return EngineOptions().heartbeat_misses;
  return static_cast<int>(std::max<int64_t>(3, (1000 + o.hb_interval_ms - 1) / o.hb_interval_ms));
}

void FillImage(std::span<uint8_t> image, uint32_t rank, uint64_t version) {
  FillPattern(image, (static_cast<uint64_t>(rank) << 32) ^ (version * 0x9e3779b97f4a7c15ull));
}

uint64_t RawWork::Run(const uint8_t* image) {
  uint64_t crc_sum = 0;
  uint8_t* data[erasure::kMaxCells];
  uint8_t* parity_cells[erasure::kMaxCells];
  for (int j = 0; j < m; ++j) parity_cells[j] = parity.data() + j * cell;
  const uint64_t stripe_bytes = cell * k;
  for (uint64_t s = 0; s < stripes; ++s) {
    const uint8_t* stripe = image + s * stripe_bytes;
    if ((s + 1) * stripe_bytes > image_bytes) {
      const uint64_t left = image_bytes - s * stripe_bytes;
      std::memcpy(tail.data(), stripe, left);
      std::memset(tail.data() + left, 0, stripe_bytes - left);
      stripe = tail.data();
    }
    for (int c = 0; c < k; ++c) data[c] = const_cast<uint8_t*>(stripe) + c * cell;
    ec_encode_data(static_cast<int>(cell), k, m, tables.data(), data, parity_cells);
    for (int c = 0; c < k + m; ++c) {
      const uint8_t* source = c < k ? data[c] : parity_cells[c - k];
      crc_sum += crc64_ecma_refl(0, source, cell);
      std::memcpy(destination.data() + (static_cast<uint64_t>(c) * stripes + s) * cell, source,
                  cell);
    }
  }
  ClobberMemory();
  return crc_sum;
}

uint64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

int Usage(const std::string& message) {
  std::cerr << StrCat("ftbench checkpoint: ", message, "\n");
  return kExitUsage;
}

namespace {

// The flag checks both fabrics share; an empty string when the flags are fine.
std::string CheckFlags(const CheckpointOptions& o, uint32_t nodes, const char* nodes_name,
                       bool fabric_is_loopback) {
  if (nodes < 2) return StrCat(nodes_name, " ", nodes, ": need at least 2");
  if (static_cast<uint64_t>(o.k) + o.m >= nodes) {
    return StrCat("--k ", o.k, " --m ", o.m, ": k + m = ", o.k + o.m, " needs at least ",
                  o.k + o.m + 1, " nodes; ", nodes_name, " ", nodes,
                  " allows k + m <= ", nodes - 1);
  }
  if (o.size == 0) return "--size 0: an image needs at least one byte";
  if (o.cell_bytes == 0) return "--cell-bytes 0: a cell needs at least one byte";
  if (o.cell_bytes < 512) {
    return StrCat("--cell-bytes ", o.cell_bytes,
                  ": cells under 512 B cost more per WRITE than they carry (the engine refuses "
                  "them; 1 MiB is the default)");
  }
  if (o.cell_bytes > (1u << 30)) return "--cell-bytes above 1 GiB is not supported";
  auto geometry = erasure::StripeGeometry::Create(o.size, o.cell_bytes, o.k, o.m);
  if (!geometry.ok()) return std::string(geometry.status().message());
  // What one node of the run holds: its image, the memcpy and read-back copies, the raw-work
  // reference's (k + m)/k image, its store, and the pipeline and reader cells. A loopback run
  // holds all of its nodes in this process; an rdma rank holds one.
  EngineOptions engine;
  engine.k = o.k;
  engine.m = o.m;
  engine.cell_bytes = o.cell_bytes;
  engine.pipeline_depth = o.pipeline_depth;
  const uint64_t cells = 2ull * static_cast<uint64_t>(o.pipeline_depth) *
                         static_cast<uint64_t>(o.k + o.m) * o.cell_bytes;
  const uint64_t per_node = 3 * o.size +
                            o.size / static_cast<uint64_t>(o.k) * static_cast<uint64_t>(o.k + o.m) +
                            Engine::StoreBytesFor(o.size, engine) + cells;
  const uint64_t in_process = fabric_is_loopback ? per_node * nodes : per_node;
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  const uint64_t memory =
      pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
  if (memory > 0 && in_process > memory / 10 * 9) {
    const auto gib = [](uint64_t bytes) {
      return FormatFixed(static_cast<double>(bytes) / (1ull << 30), 1) + " GiB";
    };
    return StrCat("this run needs about ", gib(in_process), " of memory in this process (",
                  fabric_is_loopback ? StrCat(nodes, " nodes x ") : std::string(), gib(per_node),
                  ": image, copies, store and ", gib(cells), " of cells); this machine has ",
                  gib(memory), ": use a smaller --size, --cell-bytes or --pipeline-depth",
                  fabric_is_loopback ? " or fewer --nodes" : "");
  }
  return "";
}

}  // namespace

std::string CheckLoopbackFlags(const CheckpointOptions& o) {
  if (std::string bad = CheckFlags(o, o.nodes, "--nodes", true); !bad.empty()) return bad;
  if (!o.device.device.empty() || o.device.gid_index >= 0) {
    return "--device and --gid-index choose the RDMA device: they need --fabric rdma";
  }
  return "";
}

LoopbackWorldOptions LoopbackOptionsFor(const CheckpointOptions& o,
                                        std::chrono::milliseconds timeout) {
  LoopbackWorldOptions world_options;
  world_options.nodes = o.nodes;
  world_options.engine.k = o.k;
  world_options.engine.m = o.m;
  world_options.engine.cell_bytes = o.cell_bytes;
  world_options.engine.pipeline_depth = o.pipeline_depth;
  world_options.engine.timeout = timeout;
  world_options.engine.heartbeat_interval = std::chrono::milliseconds(o.hb_interval_ms);
  world_options.engine.heartbeat_misses = HeartbeatMissesFor(o);
  if (o.domains > 0) {
    const uint32_t domains = o.domains;
    world_options.domain_of = [domains](uint32_t rank) { return rank % domains; };
  }
  return world_options;
}

Result<RawWork> MakeRawWork(const CheckpointOptions& o, const erasure::StripeGeometry& g) {
  RawWork w;
  w.k = o.k;
  w.m = o.m;
  w.cell = o.cell_bytes;
  w.stripes = g.stripes();
  w.image_bytes = o.size;
  std::vector<uint8_t> matrix(static_cast<size_t>(o.k + o.m) * o.k);
  gf_gen_cauchy1_matrix(matrix.data(), o.k + o.m, o.k);
  w.tables.resize(32u * o.k * o.m);
  ec_init_tables(o.k, o.m, matrix.data() + o.k * o.k, w.tables.data());
  FT_ASSIGN_OR_RETURN(w.tail, AlignedBuffer::Create(o.cell_bytes * o.k));
  FT_ASSIGN_OR_RETURN(w.parity, AlignedBuffer::Create(o.cell_bytes * o.m));
  FT_ASSIGN_OR_RETURN(w.destination, AlignedBuffer::Create(g.fragment_bytes() * g.width()));
  return w;
}

Status TimeVersion(const CheckpointOptions& o, uint32_t rank, AlignedBuffer& image, RawWork& raw,
                   uint64_t pattern, const std::function<Status()>& checkpoint,
                   const std::function<void()>& step, std::atomic<uint64_t>& sink,
                   VersionSeconds* out) {
  FillImage(image.span(), rank, pattern);
  step();
  Status status;
  out->checkpoint.push_back(TimeSeconds([&] { status = checkpoint(); }));
  if (!status.ok()) return status;
  step();
  out->raw.push_back(TimeSeconds([&] { sink += raw.Run(image.data()); }));
  step();
  out->memcpy.push_back(TimeSeconds([&] {
    std::memcpy(raw.destination.data(), image.data(), o.size);
    ClobberMemory();
  }));
  return Status();
}

Status TimeFirstCheckpoint(uint32_t rank, Engine& engine, AlignedBuffer& image, uint64_t pattern,
                           const std::function<void()>& step, VersionSeconds* out) {
  FillImage(image.span(), rank, pattern);
  step();
  Status first;
  out->first_checkpoint = TimeSeconds([&] { first = engine.Checkpoint().status(); });
  return first;
}

void ShowProgress(uint64_t version, uint64_t of, double seconds) {
  std::cerr << "\rftbench checkpoint: version " << version << "/" << of << " "
            << FormatFixed(seconds, 3) << " s" << std::flush;
}

void AppendSlowest(const std::vector<VersionSeconds>& nodes, VersionSeconds* out) {
  for (const VersionSeconds& node : nodes) {
    out->first_checkpoint = std::max(out->first_checkpoint, node.first_checkpoint);
  }
  const size_t versions = nodes.empty() ? 0 : nodes.front().checkpoint.size();
  for (size_t v = 0; v < versions; ++v) {
    double slowest = 0, slowest_raw = 0, slowest_memcpy = 0;
    for (const VersionSeconds& node : nodes) {
      slowest = std::max(slowest, node.checkpoint[v]);
      slowest_raw = std::max(slowest_raw, node.raw[v]);
      slowest_memcpy = std::max(slowest_memcpy, node.memcpy[v]);
    }
    out->checkpoint.push_back(slowest);
    out->raw.push_back(slowest_raw);
    out->memcpy.push_back(slowest_memcpy);
  }
}

namespace {

// The versions of one node, as both fabrics run them: first an untimed checkpoint that sizes the
// stores (its time is kept apart), then o.versions timed ones (TimeVersion with the pattern of
// (rank, v)). With `progress`, rank 0 shows each version's time on stderr. Stops at the first
// failed checkpoint and returns its status; `out` then holds the versions before it.
Status RunVersions(const CheckpointOptions& o, uint32_t rank, Engine& engine, AlignedBuffer& image,
                   RawWork& raw, bool progress, const std::function<void()>& step,
                   std::atomic<uint64_t>& sink, VersionSeconds* out) {
  out->checkpoint.reserve(static_cast<size_t>(o.versions));
  out->raw.reserve(static_cast<size_t>(o.versions));
  out->memcpy.reserve(static_cast<size_t>(o.versions));
  FT_RETURN_IF_ERROR(TimeFirstCheckpoint(rank, engine, image, 0, step, out));
  const std::function<Status()> checkpoint = [&engine] { return engine.Checkpoint().status(); };
  for (int v = 1; v <= o.versions; ++v) {
    FT_RETURN_IF_ERROR(
        TimeVersion(o, rank, image, raw, static_cast<uint64_t>(v), checkpoint, step, sink, out));
    if (progress && rank == 0) {
      ShowProgress(static_cast<uint64_t>(v), static_cast<uint64_t>(o.versions),
                   out->checkpoint.back());
    }
  }
  return Status();
}

}  // namespace

Result<bool> ReadBackMatches(const CheckpointOptions& o, uint32_t rank, Engine& engine,
                             AlignedBuffer& back, const AlignedBuffer& image) {
  const int lost[] = {static_cast<int>(rank % static_cast<uint32_t>(o.k))};
  FT_RETURN_IF_ERROR(
      engine.ReadCommitted({reinterpret_cast<std::byte*>(back.data()), o.size}, lost));
  return std::memcmp(back.data(), image.data(), o.size) == 0;
}

int Publish(const CheckpointOptions& o, uint32_t n, const Report& report,
            const std::string& verbose_lines, const PublishExtra& extra) {
  const double image = static_cast<double>(o.size);
  const double median = Median(report.seconds.checkpoint);
  const double p99 = Percentile(report.seconds.checkpoint, 0.99);
  const double gbps_per_node = GigabytesPerSecond(image, median);
  const double aggregate = gbps_per_node * n;
  const double raw_gbps = GigabytesPerSecond(image, Median(report.seconds.raw));
  const double memcpy_gbps = GigabytesPerSecond(image, Median(report.seconds.memcpy));
  const double ideal = memcpy_gbps * o.k / (o.k + o.m);

  if (o.json) {
    nlohmann::json out;
    out["nodes"] = n;
    out["k"] = o.k;
    out["m"] = o.m;
    out["cell_bytes"] = o.cell_bytes;
    out["image_bytes"] = o.size;
    out["versions"] = o.versions;
    out["checkpoint_seconds_median"] = median;
    out["checkpoint_seconds_p99"] = p99;
    out["first_checkpoint_seconds"] = report.seconds.first_checkpoint;
    out["checkpoint_gbps_per_node"] = gbps_per_node;
    out["aggregate_gbps"] = aggregate;
    out["raw_work_gbps_per_node"] = raw_gbps;
    out["ratio_to_raw"] = gbps_per_node / raw_gbps;
    out["memcpy_gbps"] = memcpy_gbps;
    out["ratio_to_memcpy_ideal"] = gbps_per_node / ideal;
    out["verified"] = report.verified;
    out["fabric"] = o.fabric;
    out["heartbeat_interval_ms"] = o.hb_interval_ms;
    out["heartbeat_misses"] = HeartbeatMissesFor(o);
    out["longest_heartbeat_gap_ms"] = report.longest_heartbeat_gap_seconds * 1e3;
    if (extra.add_json) extra.add_json(out);
    std::cout << out.dump() << "\n";
  } else {
    Table table({"fabric", "nodes", "k", "m", "cell", "image/node", "versions", "median s", "p99 s",
                 "GB/s/node", "aggregate GB/s"});
    table.AddRow({o.fabric, std::to_string(n), std::to_string(o.k), std::to_string(o.m),
                  FormatSize(o.cell_bytes), FormatSize(o.size), std::to_string(o.versions),
                  FormatFixed(median, 4), FormatFixed(p99, 4), FormatFixed(gbps_per_node, 3),
                  FormatFixed(aggregate, 3)});
    std::cout << table.ToString();
    const std::string who =
        o.fabric == "rdma" ? "rank 0's process" : std::to_string(n) + " threads";
    Table reference({"reference (same run, " + who + ")", "GB/s/node", "checkpoint ratio"});
    reference.AddRow({"raw work: ISA-L encode + CRC64 + memcpy of (k+m)/k x image",
                      FormatFixed(raw_gbps, 3), FormatFixed(gbps_per_node / raw_gbps, 3)});
    reference.AddRow({"memcpy of the image x k/(k+m) (ideal)", FormatFixed(ideal, 3),
                      FormatFixed(gbps_per_node / ideal, 3)});
    std::cout << reference.ToString();
    std::cout << "verified: "
              << (report.verified ? "yes (every node read back, CRCs checked, one holder's "
                                    "fragments decoded, every byte compared)"
                                  : "NO: " + report.verify_error)
              << "\n";
    std::cout << "heartbeat: every " << o.hb_interval_ms << " ms, lost after "
              << HeartbeatMissesFor(o) << " missed; longest gap "
              << FormatFixed(report.longest_heartbeat_gap_seconds * 1e3, 1) << " ms\n";
    std::cout << extra.text;
  }
  if (o.verbose) {
    const EngineMetrics& m = report.metrics0;
    std::cerr << "node 0 last version: prepare " << FormatFixed(m.last_prepare_seconds, 4)
              << " s, encode+crc " << FormatFixed(m.last_encode_seconds, 4) << " s, writes "
              << FormatFixed(m.last_write_seconds, 4) << " s, commit "
              << FormatFixed(m.last_commit_seconds, 4) << " s; store " << FormatSize(m.store_bytes)
              << "; bounce bytes " << m.bounce_bytes << "\n";
    std::cerr << "first checkpoint (sizes and registers the stores; not timed with the "
                 "versions): "
              << FormatFixed(report.seconds.first_checkpoint, 4) << " s\n";
    std::cerr << "per version (slowest node), s:";
    for (double seconds : report.seconds.checkpoint) std::cerr << " " << FormatFixed(seconds, 4);
    std::cerr << "\n" << verbose_lines;
  }
  if (!report.verified) {
    if (o.json)
      std::cerr << "ftbench checkpoint: verification failed: " << report.verify_error << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

Result<std::vector<AlignedBuffer>> AllocateImages(const CheckpointOptions& o, uint32_t n) {
  std::vector<AlignedBuffer> images(n);
  for (uint32_t rank = 0; rank < n; ++rank) {
    FT_ASSIGN_OR_RETURN(images[rank], AlignedBuffer::Create(o.size));
  }
  return images;
}

Result<std::vector<RawWork>> AllocateRawWork(const CheckpointOptions& o,
                                             const erasure::StripeGeometry& g, uint32_t n) {
  std::vector<RawWork> raw(n);
  for (uint32_t rank = 0; rank < n; ++rank) {
    Result<RawWork> w = MakeRawWork(o, g);
    if (!w.ok()) return w.status().WithContext("cannot allocate the reference buffers");
    raw[rank] = std::move(w).value();
  }
  return raw;
}

Status RunTogether(LoopbackWorld& world, const TogetherBody& body) {
  std::barrier sync(static_cast<std::ptrdiff_t>(world.size()));
  const std::function<void()> step = [&sync] { sync.arrive_and_wait(); };
  return world.Run([&](uint32_t rank, Engine& engine) -> Status {
    Status result = body(rank, engine, step);
    // Keep the barrier's count whole when a node stops early: the others must not wait for it.
    if (!result.ok()) sync.arrive_and_drop();
    return result;
  });
}

void CollectEngineFigures(LoopbackWorld& world, Report* report) {
  report->peak_rss_after_checkpoints = PeakRssBytes();
  report->metrics0 = world.engine(0).Metrics();
  for (uint32_t rank = 0; rank < world.size(); ++rank) {
    report->longest_heartbeat_gap_seconds =
        std::max(report->longest_heartbeat_gap_seconds,
                 world.engine(rank).Metrics().longest_heartbeat_gap_seconds);
  }
}

void VerifyReadBack(const CheckpointOptions& o, LoopbackWorld& world,
                    const std::vector<AlignedBuffer>& images, Report* report) {
  std::atomic<int> mismatches{0};
  std::mutex error_mutex;
  const Status status = world.Run([&](uint32_t rank, Engine& engine) -> Status {
    auto back = AlignedBuffer::Create(o.size);
    if (!back.ok()) return back.status();
    FT_ASSIGN_OR_RETURN(const bool same, ReadBackMatches(o, rank, engine, *back, images[rank]));
    if (!same) {
      ++mismatches;
      std::lock_guard lock(error_mutex);
      report->verify_error = StrCat("node ", rank, ": read-back differs from the image");
    }
    return Status();
  });
  report->verified = status.ok() && mismatches == 0;
  if (!status.ok()) report->verify_error = status.ToString();
}

int RunCheckpoint(const CheckpointOptions& o) {
  if (std::string bad = CheckLoopbackFlags(o); !bad.empty()) return Usage(bad);
  auto geometry = erasure::StripeGeometry::Create(o.size, o.cell_bytes, o.k, o.m);
  if (!geometry.ok()) return Usage(std::string(geometry.status().message()));

  auto world = LoopbackWorld::Create(LoopbackOptionsFor(o, std::chrono::minutes(10)));
  if (!world.ok()) {
    std::cerr << "ftbench checkpoint: " << world.status() << "\n";
    return world.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }

  const uint32_t n = o.nodes;
  Result<std::vector<AlignedBuffer>> images = AllocateImages(o, n);
  // The reference's buffers, allocated (and touched) before any timing.
  Result<std::vector<RawWork>> raw = AllocateRawWork(o, *geometry, n);
  for (const Status& status : {images.status(), raw.status()}) {
    if (!status.ok()) {
      std::cerr << "ftbench checkpoint: " << status << "\n";
      return kExitFailure;
    }
  }
  uint64_t reference_bytes = 0;
  for (const RawWork& w : *raw) reference_bytes += w.BufferBytes();

  Report report;
  std::vector<VersionSeconds> node_seconds(n);
  const bool progress = !o.json && isatty(STDERR_FILENO);
  std::atomic<uint64_t> sink{0};

  // 1. The checkpoints, each followed by the reference on the same threads: every node runs the
  // raw work, then memcpy, on the image it just checkpointed, all nodes at once.
  const double cpu_start = ProcessCpuSeconds();
  const Nanos wall_start = Clock::Default().Now();
  Status status = RunTogether(
      **world, [&](uint32_t rank, Engine& engine, const std::function<void()>& step) -> Status {
        FT_RETURN_IF_ERROR(engine.Protect(0, (*images)[rank].data(), o.size));
        return RunVersions(o, rank, engine, (*images)[rank], (*raw)[rank], progress, step, sink,
                           &node_seconds[rank]);
      });
  if (progress) std::cerr << "\r" << std::string(60, ' ') << "\r";
  if (!status.ok()) {
    std::cerr << "ftbench checkpoint: " << status << "\n";
    return kExitFailure;
  }
  const double busy_cores =
      (ProcessCpuSeconds() - cpu_start) / SecondsBetween(wall_start, Clock::Default().Now());
  CollectEngineFigures(**world, &report);
  AppendSlowest(node_seconds, &report.seconds);
  raw->clear();

  // 2. Verification: read back, CRC-check, decode with one holder's data fragments lost.
  VerifyReadBack(o, **world, *images, &report);

  std::ostringstream verbose;
  verbose << "cores busy on average while checkpointing (with fills and references): "
          << FormatFixed(busy_cores, 2) << "\n";
  const double engine_bytes =
      static_cast<double>(report.peak_rss_after_checkpoints) - static_cast<double>(reference_bytes);
  verbose << "peak RSS " << FormatFixed(report.peak_rss_after_checkpoints / 1048576.0, 1)
          << " MiB, less ftbench's reference buffers "
          << FormatFixed(reference_bytes / 1048576.0, 1)
          << " MiB = " << FormatFixed(engine_bytes / 1048576.0 / n, 1)
          << " MiB per node (image, store, pipeline, control); store "
          << FormatFixed(report.metrics0.store_bytes / 1048576.0, 1) << " MiB per node\n";
  return Publish(o, n, report, verbose.str());
}

int RunCheckpointRdma(const CheckpointOptions& o) {
  auto fail = [](uint32_t rank, const Status& status) {
    // One write: std::cerr is unbuffered, and ranks share the terminal with ftrun.
    std::cerr << StrCat("ftbench checkpoint: rank ", rank, ": ", status.ToString(), "\n");
    return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  };
  Result<Bootstrap> bootstrap = BootstrapFromEnvironment();
  if (!bootstrap.ok()) {
    return Usage(StrCat("--fabric rdma runs one process per node under ftrun, srun or mpirun: ",
                        bootstrap.status().message()));
  }
  const uint32_t rank = bootstrap->rank;
  const uint32_t n = bootstrap->size;
  if (bootstrap->spare) {
    // Spares wait to replace a lost rank; without recovery there is nothing for them to do.
    if (o.verbose) std::cerr << "ftbench checkpoint: rank " << rank << " is a spare: idle\n";
    return kExitOk;
  }
  if (o.nodes_given && o.nodes != n) {
    return Usage(StrCat("--nodes ", o.nodes, " but the launcher started ", n, " processes (",
                        bootstrap->source, ")"));
  }
  if (std::string bad = CheckFlags(o, n, "the world size", false); !bad.empty()) {
    return Usage(bad);
  }
  auto geometry = erasure::StripeGeometry::Create(o.size, o.cell_bytes, o.k, o.m);
  if (!geometry.ok()) return Usage(std::string(geometry.status().message()));

  EngineOptions options;
  options.k = o.k;
  options.m = o.m;
  options.cell_bytes = o.cell_bytes;
  options.pipeline_depth = o.pipeline_depth;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.timeout_seconds * 1000));
  options.heartbeat_interval = std::chrono::milliseconds(o.hb_interval_ms);
  options.heartbeat_misses = HeartbeatMissesFor(o);
  if (o.domains > 0) options.failure_domain = rank % o.domains;

  Result<ProcessFabric> process = CreateProcessFabric(*bootstrap, RdmaOptionsOf(o.device));
  if (!process.ok()) return fail(rank, process.status());
  std::ostringstream verbose;
  if (Result<verbs::RdmaDeviceInfo> info = verbs::GetRdmaDeviceInfo(*process->fabric); info.ok()) {
    verbose << "rank 0: rdma device " << info->device << " port " << int{info->port} << ", "
            << info->link_layer << ", " << info->gid_type << " gid " << info->gid_index << ", mtu "
            << info->active_mtu << ", listens on " << info->listen << "\n";
  }
  Result<std::unique_ptr<Engine>> made = CreateProcessEngine(std::move(process).value(), options);
  if (!made.ok()) return fail(rank, made.status());
  Engine& engine = **made;

  Result<AlignedBuffer> image = AlignedBuffer::Create(o.size);
  if (!image.ok()) return fail(rank, image.status());
  Result<RawWork> raw = MakeRawWork(o, *geometry);
  if (!raw.ok()) return fail(rank, raw.status());
  if (Status status = engine.Protect(0, image->data(), o.size); !status.ok()) {
    return fail(rank, status);
  }

  Report report;
  const bool progress = rank == 0 && !o.json && isatty(STDERR_FILENO);
  std::atomic<uint64_t> sink{0};
  Status status = RunVersions(
      o, rank, engine, *image, *raw, progress, [] {}, sink, &report.seconds);
  if (!status.ok()) {
    if (progress) std::cerr << "\n";
    return fail(rank, status);
  }
  if (progress) std::cerr << "\r" << std::string(60, ' ') << "\r";
  report.peak_rss_after_checkpoints = PeakRssBytes();
  report.metrics0 = engine.Metrics();
  report.longest_heartbeat_gap_seconds = report.metrics0.longest_heartbeat_gap_seconds;

  // Verification: this rank's image read back from its holders, one holder's fragments lost.
  Result<AlignedBuffer> back = AlignedBuffer::Create(o.size);
  if (!back.ok()) return fail(rank, back.status());
  Result<bool> same = ReadBackMatches(o, rank, engine, *back, *image);
  report.verified = same.ok() && *same;
  if (!same.ok()) {
    report.verify_error = StrCat("rank ", rank, ": ", same.status().ToString());
  } else if (!report.verified) {
    report.verify_error = StrCat("rank ", rank, ": read-back differs from the image");
  }
  // A barrier before anyone leaves: a rank's holders must keep their stores until it has read
  // back. A checkpoint is collective; it writes the other slot, not the one being read.
  if (Status barrier = engine.Checkpoint().status(); !barrier.ok()) {
    return fail(rank, barrier.WithContext("the closing checkpoint (a barrier)"));
  }
  if (rank != 0) {
    if (!report.verified) {
      std::cerr << "ftbench checkpoint: verification failed: " << report.verify_error << "\n";
      return kExitFailure;
    }
    return kExitOk;
  }
  verbose << "rank 0: numa: " << report.metrics0.numa << "\n";
  verbose << "rank 0: peak RSS " << FormatFixed(report.peak_rss_after_checkpoints / 1048576.0, 1)
          << " MiB (image, "
          << "store, pipeline, control and the reference's buffers); store "
          << FormatFixed(report.metrics0.store_bytes / 1048576.0, 1) << " MiB\n";
  return Publish(o, n, report, verbose.str());
}

}  // namespace ft::ftbench
