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
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/loopback_world.h"
#include "erasure/codec.h"
#include "erasure/geometry.h"
#include "ftengine/engine.h"

namespace ft::ftbench {
namespace {

using Clock = SteadyClock;

// The image of (rank, version): 64-bit words of a splitmix sequence, cheap to fill at GB/s.
void FillImage(std::span<uint8_t> image, uint32_t rank, uint64_t version) {
  FillPattern(image, (static_cast<uint64_t>(rank) << 32) ^ (version * 0x9e3779b97f4a7c15ull));
}

double Percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  const double rank = p * static_cast<double>(values.size() - 1);
  const size_t low = static_cast<size_t>(std::floor(rank));
  const size_t high = std::min(low + 1, values.size() - 1);
  return values[low] + (values[high] - values[low]) * (rank - static_cast<double>(low));
}

uint64_t PeakRssBytes() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<uint64_t>(usage.ru_maxrss) * 1024;
}

// The raw work of one node's checkpoint without the engine: per stripe, ISA-L encode, CRC64 of
// the k + m cells, memcpy of the k + m cells to where holders would keep them.
struct RawWork {
  int k = 0;
  int m = 0;
  uint64_t cell = 0;
  uint64_t stripes = 0;
  std::vector<uint8_t> tables;
  AlignedBuffer padded_image;  // the image, zero-padded to whole stripes
  AlignedBuffer parity;        // m cells
  AlignedBuffer destination;   // (k + m) x stripes cells: the "stores"

  uint64_t Run() {
    uint64_t crc_sum = 0;
    uint8_t* data[erasure::kMaxCells];
    uint8_t* parity_cells[erasure::kMaxCells];
    for (int j = 0; j < m; ++j) parity_cells[j] = parity.data() + j * cell;
    for (uint64_t s = 0; s < stripes; ++s) {
      for (int c = 0; c < k; ++c) data[c] = padded_image.data() + (s * k + c) * cell;
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
};

struct Report {
  std::vector<double> version_seconds;
  double raw_seconds = 0;
  double memcpy_seconds = 0;
  bool verified = false;
  std::string verify_error;
  uint64_t peak_rss_after_checkpoints = 0;
  EngineMetrics metrics0;
};

}  // namespace

Command RegisterCheckpoint(CLI::App& app) {
  auto options = std::make_shared<CheckpointOptions>();
  CLI::App* sub = app.add_subcommand(
      "checkpoint",
      "N nodes in this process checkpoint their images over the loopback fabric; verifies the "
      "last version by reading it back with one holder's fragments treated as lost");
  sub->add_option("--nodes", options->nodes, "Nodes (one thread each)")
      ->check(CLI::Range(2u, 65536u))
      ->capture_default_str();
  AddSizeOption(*sub, "--size", &options->size, "Image bytes per node (KiB/MiB/GiB suffixes)");
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
  sub->add_option("--reference-repetitions", options->reference_repetitions,
                  "Timed passes of the raw-work and memcpy references (medians)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  sub->add_flag("--json", options->json, "Print one JSON object instead of the table");
  sub->add_flag("-v,--verbose", options->verbose, "Per-phase times and memory use on stderr");
  return {sub, [options] { return RunCheckpoint(*options); }};
}

int RunCheckpoint(const CheckpointOptions& o) {
  auto usage = [](const std::string& message) {
    std::cerr << "ftbench checkpoint: " << message << "\n";
    return kExitUsage;
  };
  if (o.nodes < 2) return usage("--nodes " + std::to_string(o.nodes) + ": need at least 2");
  if (static_cast<uint64_t>(o.k) + o.m >= o.nodes) {
    return usage("--k " + std::to_string(o.k) + " --m " + std::to_string(o.m) +
                 ": k + m = " + std::to_string(o.k + o.m) + " needs at least " +
                 std::to_string(o.k + o.m + 1) + " nodes; --nodes " + std::to_string(o.nodes) +
                 " allows k + m <= " + std::to_string(o.nodes - 1));
  }
  if (o.size == 0) return usage("--size 0: an image needs at least one byte");
  if (o.cell_bytes == 0) return usage("--cell-bytes 0: a cell needs at least one byte");
  if (o.cell_bytes > (1u << 30)) return usage("--cell-bytes above 1 GiB is not supported");
  auto geometry = erasure::StripeGeometry::Create(o.size, o.cell_bytes, o.k, o.m);
  if (!geometry.ok()) return usage(std::string(geometry.status().message()));

  LoopbackWorldOptions world_options;
  world_options.nodes = o.nodes;
  world_options.engine.k = o.k;
  world_options.engine.m = o.m;
  world_options.engine.cell_bytes = o.cell_bytes;
  world_options.engine.pipeline_depth = o.pipeline_depth;
  world_options.engine.timeout = std::chrono::minutes(10);
  // Sized (and registered) at creation, so that no version pays for it.
  world_options.engine.store_capacity = Engine::StoreBytesFor(o.size, world_options.engine);
  if (o.domains > 0) {
    const uint32_t domains = o.domains;
    world_options.domain_of = [domains](uint32_t rank) { return rank % domains; };
  }
  auto world = LoopbackWorld::Create(world_options);
  if (!world.ok()) {
    std::cerr << "ftbench checkpoint: " << world.status() << "\n";
    return world.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }

  const uint32_t n = o.nodes;
  std::vector<AlignedBuffer> images(n);
  for (uint32_t rank = 0; rank < n; ++rank) {
    auto image = AlignedBuffer::Create(o.size);
    if (!image.ok()) {
      std::cerr << "ftbench checkpoint: " << image.status() << "\n";
      return kExitFailure;
    }
    images[rank] = std::move(image).value();
  }

  Report report;
  std::vector<std::vector<double>> node_seconds(n, std::vector<double>(o.versions));
  std::barrier sync(static_cast<std::ptrdiff_t>(n));
  const bool progress = !o.json && isatty(STDERR_FILENO);
  std::mutex progress_mutex;

  // 1. The checkpoints.
  Status status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    Status result = engine.Protect(0, images[rank].data(), o.size);
    for (int v = 1; v <= o.versions; ++v) {
      FillImage(images[rank].span(), rank, static_cast<uint64_t>(v));
      sync.arrive_and_wait();  // every node starts the version together
      const Nanos start = Clock::Default().Now();
      if (result.ok()) result = engine.Checkpoint().status();
      node_seconds[rank][v - 1] = SecondsBetween(start, Clock::Default().Now());
      sync.arrive_and_wait();
      if (progress && rank == 0) {
        std::lock_guard lock(progress_mutex);
        std::cerr << "\rftbench checkpoint: version " << v << "/" << o.versions << " "
                  << FormatFixed(node_seconds[0][v - 1], 3) << " s" << std::flush;
      }
    }
    return result;
  });
  if (progress) std::cerr << "\r" << std::string(60, ' ') << "\r";
  if (!status.ok()) {
    std::cerr << "ftbench checkpoint: " << status << "\n";
    return kExitFailure;
  }
  report.peak_rss_after_checkpoints = PeakRssBytes();
  report.metrics0 = (*world)->engine(0).Metrics();
  for (int v = 0; v < o.versions; ++v) {
    double slowest = 0;
    for (uint32_t rank = 0; rank < n; ++rank) slowest = std::max(slowest, node_seconds[rank][v]);
    report.version_seconds.push_back(slowest);
  }

  // 2. Verification: read back, CRC-check, decode with one holder's data fragments lost.
  std::atomic<int> mismatches{0};
  std::mutex error_mutex;
  status = (*world)->Run([&](uint32_t rank, Engine& engine) -> Status {
    auto back = AlignedBuffer::Create(o.size);
    if (!back.ok()) return back.status();
    const int lost[] = {static_cast<int>(rank % static_cast<uint32_t>(o.k))};
    Status read = engine.ReadCommitted({reinterpret_cast<std::byte*>(back->data()), o.size}, lost);
    if (!read.ok()) return read;
    if (std::memcmp(back->data(), images[rank].data(), o.size) != 0) {
      ++mismatches;
      std::lock_guard lock(error_mutex);
      report.verify_error = StrCat("node ", rank, ": read-back differs from the image");
    }
    return Status();
  });
  report.verified = status.ok() && mismatches == 0;
  if (!status.ok()) report.verify_error = status.ToString();

  // 3. The reference on as many threads at once: raw work, and memcpy of the image.
  const erasure::StripeGeometry& g = *geometry;
  std::vector<RawWork> raw(n);
  for (uint32_t rank = 0; rank < n; ++rank) {
    RawWork& w = raw[rank];
    w.k = o.k;
    w.m = o.m;
    w.cell = o.cell_bytes;
    w.stripes = g.stripes();
    std::vector<uint8_t> matrix(static_cast<size_t>(o.k + o.m) * o.k);
    gf_gen_cauchy1_matrix(matrix.data(), o.k + o.m, o.k);
    w.tables.resize(32u * o.k * o.m);
    ec_init_tables(o.k, o.m, matrix.data() + o.k * o.k, w.tables.data());
    auto padded = AlignedBuffer::Create(g.padded_image_bytes());
    auto parity = AlignedBuffer::Create(o.cell_bytes * o.m);
    auto destination = AlignedBuffer::Create(g.fragment_bytes() * g.width());
    if (!padded.ok() || !parity.ok() || !destination.ok()) {
      std::cerr << "ftbench checkpoint: cannot allocate the reference buffers\n";
      return kExitFailure;
    }
    w.padded_image = std::move(padded).value();
    w.parity = std::move(parity).value();
    w.destination = std::move(destination).value();
    std::memcpy(w.padded_image.data(), images[rank].data(), o.size);
  }
  images.clear();  // the reference works on its own copies
  std::vector<std::vector<double>> raw_seconds(n), memcpy_seconds(n);
  std::atomic<uint64_t> sink{0};
  status = (*world)->Run([&](uint32_t rank, Engine&) -> Status {
    RawWork& w = raw[rank];
    for (int rep = 0; rep < o.reference_repetitions; ++rep) {
      sync.arrive_and_wait();
      double seconds = TimeSeconds([&] { sink += w.Run(); });
      raw_seconds[rank].push_back(seconds);
      sync.arrive_and_wait();
      seconds = TimeSeconds([&] {
        std::memcpy(w.destination.data(), w.padded_image.data(), o.size);
        ClobberMemory();
      });
      memcpy_seconds[rank].push_back(seconds);
    }
    return Status();
  });
  std::vector<double> raw_slowest, memcpy_slowest;
  for (int rep = 0; rep < o.reference_repetitions; ++rep) {
    double slowest_raw = 0, slowest_memcpy = 0;
    for (uint32_t rank = 0; rank < n; ++rank) {
      slowest_raw = std::max(slowest_raw, raw_seconds[rank][rep]);
      slowest_memcpy = std::max(slowest_memcpy, memcpy_seconds[rank][rep]);
    }
    raw_slowest.push_back(slowest_raw);
    memcpy_slowest.push_back(slowest_memcpy);
  }
  report.raw_seconds = Median(raw_slowest);
  report.memcpy_seconds = Median(memcpy_slowest);

  const double image = static_cast<double>(o.size);
  const double median = Median(report.version_seconds);
  const double p99 = Percentile(report.version_seconds, 0.99);
  const double gbps_per_node = GigabytesPerSecond(image, median);
  const double aggregate = gbps_per_node * n;
  const double raw_gbps = GigabytesPerSecond(image, report.raw_seconds);
  const double memcpy_gbps = GigabytesPerSecond(image, report.memcpy_seconds);
  const double ideal = memcpy_gbps * o.k / (o.k + o.m);

  if (o.json) {
    nlohmann::json out;
    out["nodes"] = o.nodes;
    out["k"] = o.k;
    out["m"] = o.m;
    out["cell_bytes"] = o.cell_bytes;
    out["image_bytes"] = o.size;
    out["versions"] = o.versions;
    out["checkpoint_seconds_median"] = median;
    out["checkpoint_seconds_p99"] = p99;
    out["checkpoint_gbps_per_node"] = gbps_per_node;
    out["aggregate_gbps"] = aggregate;
    out["raw_work_gbps_per_node"] = raw_gbps;
    out["ratio_to_raw"] = gbps_per_node / raw_gbps;
    out["memcpy_gbps"] = memcpy_gbps;
    out["ratio_to_memcpy_ideal"] = gbps_per_node / ideal;
    out["verified"] = report.verified;
    std::cout << out.dump() << "\n";
  } else {
    Table table({"nodes", "k", "m", "cell", "image/node", "versions", "median s", "p99 s",
                 "GB/s/node", "aggregate GB/s"});
    table.AddRow({std::to_string(o.nodes), std::to_string(o.k), std::to_string(o.m),
                  FormatSize(o.cell_bytes), FormatSize(o.size), std::to_string(o.versions),
                  FormatFixed(median, 4), FormatFixed(p99, 4), FormatFixed(gbps_per_node, 3),
                  FormatFixed(aggregate, 3)});
    std::cout << table.ToString();
    Table reference({"reference (same run, " + std::to_string(n) + " threads)", "GB/s/node",
                     "checkpoint ratio"});
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
  }
  if (o.verbose) {
    const EngineMetrics& m = report.metrics0;
    std::cerr << "node 0 last version: prepare " << FormatFixed(m.last_prepare_seconds, 4)
              << " s, encode+crc " << FormatFixed(m.last_encode_seconds, 4) << " s, writes "
              << FormatFixed(m.last_write_seconds, 4) << " s, commit "
              << FormatFixed(m.last_commit_seconds, 4) << " s; store " << FormatSize(m.store_bytes)
              << "; bounce bytes " << m.bounce_bytes << "\n";
    std::cerr << "peak RSS after the checkpoints: "
              << FormatFixed(report.peak_rss_after_checkpoints / 1048576.0, 1) << " MiB for " << n
              << " nodes = " << FormatFixed(report.peak_rss_after_checkpoints / 1048576.0 / n, 1)
              << " MiB per node\n";
  }
  if (!report.verified) {
    if (o.json)
      std::cerr << "ftbench checkpoint: verification failed: " << report.verify_error << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace ft::ftbench
