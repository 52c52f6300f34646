#include "tools/ftbench/encode.h"

#include <isa-l/erasure_code.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "erasure/codec.h"

namespace ft::ftbench {
namespace {

constexpr uint64_t kPatternSeed = 0x0f7e5eed;
constexpr int kMaxStripes = 1 << 20;
// Shortest time under one clock reading (clock overhead ~0.01%), and shortest sample. With the
// other core busy, unit times scatter by tens of percent; 0.1 s samples (~100 interleaved unit
// pairs for 1 MiB cells) kept an ISA-L-vs-itself run within 1% of 1.0, where 0.02 s gave +-3%.
constexpr double kMinUnitSeconds = 200e-6;
constexpr double kMinSampleSeconds = 0.1;

// Slots in the arena are this much further apart than the 64-byte-rounded cell size. 320 = 5 *
// 64, and 5 is coprime with 4096 / 64, so up to 64 consecutive slots start at 64 distinct offsets
// within a 4 KiB page. With cells a whole number of pages apart instead (1 MiB cells back to
// back), every source and destination of a stripe shares one page offset: loads then falsely
// depend on earlier stores to other cells (4K aliasing) and crowd the same L1 sets. On this
// machine that made RS(10,4) encode ~25% slower and, worse for a comparison, made it swing by up
// to 40% with where ISA-L's tables happen to sit relative to the cells. The engine's tables sit
// wherever malloc put them, so engine vs raw ISA-L measured placement luck, not the engine. With
// the skew the spread over table placements is ~1-2%.
constexpr size_t kSlotSkew = 320;

// Every buffer the measurement touches, in one arena of equal slots: stripes * (k + m) stripe
// cells (stripe s, cell i at slot s * (k + m) + i; data for i < k, parity after), then
// stripes * m decode outputs, then stripes * k memcpy destinations.
struct Stripes {
  int k = 0;
  int m = 0;
  size_t cell_bytes = 0;
  AlignedBuffer arena;

  // One entry per stripe.
  std::vector<std::vector<uint8_t*>> data;     // cells 0..k-1
  std::vector<std::vector<uint8_t*>> parity;   // cells k..k+m-1
  std::vector<std::vector<uint8_t*>> present;  // decode sources: cells m..k+m-1
  std::vector<std::vector<uint8_t*>> rebuilt;  // decode outputs for the lost cells 0..m-1
  std::vector<std::vector<uint8_t*>> copy_to;  // memcpy destinations of the k data cells

  int count() const { return static_cast<int>(data.size()); }
};

Result<Stripes> MakeStripes(int k, int m, size_t cell_bytes, int count) {
  Stripes s;
  s.k = k;
  s.m = m;
  s.cell_bytes = cell_bytes;
  // Bounds checked by the caller (cell_bytes <= INT_MAX, k + m <= 64, count <= 2^20) keep these
  // products far below 2^64.
  const size_t slot_bytes = RoundUp(cell_bytes, AlignedBuffer::kAlignment) + kSlotSkew;
  const size_t n = static_cast<size_t>(count);
  const size_t stripe_slots = n * (k + m);
  const size_t output_slots = n * m;
  FT_ASSIGN_OR_RETURN(s.arena,
                      AlignedBuffer::Create((stripe_slots + output_slots + n * k) * slot_bytes));
  auto slot = [&](size_t index) { return s.arena.data() + index * slot_bytes; };
  for (size_t stripe = 0; stripe < n; ++stripe) {
    auto cell = [&](int i) { return slot(stripe * (k + m) + i); };
    auto& data = s.data.emplace_back();
    auto& parity = s.parity.emplace_back();
    auto& present = s.present.emplace_back();
    auto& rebuilt = s.rebuilt.emplace_back();
    auto& copy_to = s.copy_to.emplace_back();
    for (int i = 0; i < k; ++i) data.push_back(cell(i));
    for (int i = k; i < k + m; ++i) parity.push_back(cell(i));
    for (int i = m; i < k + m; ++i) present.push_back(cell(i));
    for (int i = 0; i < m; ++i) rebuilt.push_back(slot(stripe_slots + stripe * m + i));
    for (int i = 0; i < k; ++i)
      copy_to.push_back(slot(stripe_slots + output_slots + stripe * k + i));
    // A distinct seed per cell, so that no two cells are equal.
    for (int i = 0; i < k; ++i) {
      FillPattern({data[i], cell_bytes}, kPatternSeed + stripe * erasure::kMaxCells + i);
    }
  }
  return s;
}

// The raw ISA-L side, built here from ISA-L calls only (not from the engine). The tables are
// 64-byte aligned so that no 32-byte table load straddles a cache line: the raw side is ISA-L at
// its best, not wherever malloc happens to put a vector (with page-aligned cells, table alignment
// alone moved RS(10,4) by up to ~5%; with kSlotSkew slots it is within noise).
struct RawTables {
  std::vector<uint8_t> generator;  // (k + m) x k Cauchy matrix
  AlignedBuffer encode_tables;     // of the m parity rows
  AlignedBuffer decode_tables;     // rebuilds cells 0..m-1 from cells m..k+m-1
};

Result<RawTables> MakeRawTables(int k, int m) {
  RawTables raw;
  const size_t ku = static_cast<size_t>(k);
  raw.generator.resize((ku + m) * ku);
  gf_gen_cauchy1_matrix(raw.generator.data(), k + m, k);
  FT_ASSIGN_OR_RETURN(raw.encode_tables, AlignedBuffer::Create(32 * ku * m));
  ec_init_tables(k, m, &raw.generator[ku * ku], raw.encode_tables.data());

  // The generator rows of the k cells read, inverted, map those cells back to the data.
  std::vector<uint8_t> survivors(ku * ku);
  for (size_t r = 0; r < ku; ++r) {
    std::copy_n(&raw.generator[(r + m) * ku], ku, &survivors[r * ku]);
  }
  std::vector<uint8_t> inverse(ku * ku);
  if (gf_invert_matrix(survivors.data(), inverse.data(), k) != 0) {
    return Status::Internal("gf_invert_matrix: the survivor rows are singular");
  }
  // A lost data cell is a row of the inverse; a lost parity cell (only when m > k) is its
  // generator row times the inverse.
  std::vector<uint8_t> rows(static_cast<size_t>(m) * ku);
  for (int lost = 0; lost < m; ++lost) {
    uint8_t* row = &rows[lost * ku];
    if (lost < k) {
      std::copy_n(&inverse[lost * ku], ku, row);
      continue;
    }
    for (size_t c = 0; c < ku; ++c) {
      uint8_t sum = 0;
      for (size_t j = 0; j < ku; ++j)
        sum ^= gf_mul(raw.generator[lost * ku + j], inverse[j * ku + c]);
      row[c] = sum;
    }
  }
  FT_ASSIGN_OR_RETURN(raw.decode_tables, AlignedBuffer::Create(32 * ku * m));
  ec_init_tables(k, m, rows.data(), raw.decode_tables.data());
  return raw;
}

// The five kinds of work, each over stripes [first, first + count). Engine calls return the
// first error.
class Passes {
 public:
  Passes(const erasure::Codec& codec, const RawTables& raw, Stripes& stripes)
      : codec_(codec), raw_(raw), s_(stripes) {
    for (int i = 0; i < s_.m; ++i) wanted_.push_back(i);
    for (int i = s_.m; i < s_.k + s_.m; ++i) present_.push_back(i);
  }

  Status EngineEncode(int first, int count) const {
    Status status;
    for (int i = first; i < first + count; ++i) {
      Status one = codec_.Encode(Const(s_.data[i]), s_.parity[i], s_.cell_bytes);
      if (!one.ok() && status.ok()) status = std::move(one);
    }
    return status;
  }

  void IsalEncode(int first, int count) const {
    for (int i = first; i < first + count; ++i) {
      ec_encode_data(CellInt(), s_.k, s_.m, Mutable(raw_.encode_tables), s_.data[i].data(),
                     s_.parity[i].data());
    }
  }

  Status EngineDecode(int first, int count) const {
    Status status;
    for (int i = first; i < first + count; ++i) {
      Status one =
          codec_.Decode(present_, Const(s_.present[i]), wanted_, s_.rebuilt[i], s_.cell_bytes);
      if (!one.ok() && status.ok()) status = std::move(one);
    }
    return status;
  }

  void IsalDecode(int first, int count) const {
    for (int i = first; i < first + count; ++i) {
      ec_encode_data(CellInt(), s_.k, s_.m, Mutable(raw_.decode_tables), s_.present[i].data(),
                     s_.rebuilt[i].data());
    }
  }

  void Memcpy(int first, int count) const {
    for (int i = first; i < first + count; ++i) {
      for (int j = 0; j < s_.k; ++j) std::memcpy(s_.copy_to[i][j], s_.data[i][j], s_.cell_bytes);
    }
    ClobberMemory();
  }

 private:
  static std::span<const uint8_t* const> Const(const std::vector<uint8_t*>& cells) {
    const uint8_t* const* first = cells.data();  // adds const; no cast needed
    return {first, cells.size()};
  }
  // ISA-L's prototypes are not const-correct; they only read the tables.
  static uint8_t* Mutable(const AlignedBuffer& tables) {
    return const_cast<uint8_t*>(tables.data());
  }
  int CellInt() const { return static_cast<int>(s_.cell_bytes); }

  const erasure::Codec& codec_;
  const RawTables& raw_;
  Stripes& s_;
  std::vector<int> wanted_;
  std::vector<int> present_;
};

// CRC64 of every parity cell, stripe by stripe.
std::vector<uint64_t> ParityCrcs(const Stripes& s) {
  std::vector<uint64_t> crcs;
  for (const auto& parity : s.parity) {
    for (const uint8_t* cell : parity) crcs.push_back(erasure::Crc64(cell, s.cell_bytes));
  }
  return crcs;
}

void ZeroCells(const std::vector<std::vector<uint8_t*>>& cells, size_t bytes) {
  for (const auto& stripe : cells) {
    for (uint8_t* cell : stripe) std::memset(cell, 0, bytes);
  }
}

// Whether every rebuilt cell equals the original cell it stands for (cells 0..m-1 of its stripe;
// for m > k the last m - k of them are parity).
bool RebuiltMatches(const Stripes& s) {
  for (int i = 0; i < s.count(); ++i) {
    for (int lost = 0; lost < s.m; ++lost) {
      const uint8_t* original = lost < s.k ? s.data[i][lost] : s.parity[i][lost - s.k];
      if (std::memcmp(s.rebuilt[i][lost], original, s.cell_bytes) != 0) return false;
    }
  }
  return true;
}

// One untimed pass of everything (page-in, cache and branch warm-up, engine decode-table
// caching) that also checks the two sides compute the same thing. Returns a message on failure.
std::string WarmUpAndVerify(const erasure::Codec& codec, const RawTables& raw, Stripes& s,
                            const Passes& passes) {
  const std::span<const uint8_t> engine_generator = codec.generator();
  if (!std::equal(engine_generator.begin(), engine_generator.end(), raw.generator.begin(),
                  raw.generator.end())) {
    return "the engine's generator matrix differs from gf_gen_cauchy1_matrix's";
  }
  const int all = s.count();
  passes.Memcpy(0, all);
  if (Status status = passes.EngineEncode(0, all); !status.ok()) {
    return "engine encode failed: " + status.ToString();
  }
  const std::vector<uint64_t> engine_parity = ParityCrcs(s);
  ZeroCells(s.parity, s.cell_bytes);
  passes.IsalEncode(0, all);
  if (ParityCrcs(s) != engine_parity) return "engine and ISA-L encode produce different parity";

  if (Status status = passes.EngineDecode(0, all); !status.ok()) {
    return "engine decode failed: " + status.ToString();
  }
  if (!RebuiltMatches(s)) return "engine decode does not reproduce the lost cells";
  ZeroCells(s.rebuilt, s.cell_bytes);
  passes.IsalDecode(0, all);
  if (!RebuiltMatches(s)) return "ISA-L decode does not reproduce the lost cells";
  return "";
}

// How the timed work is cut up. A unit is `stripes_per_unit` consecutive stripes processed
// `repeats_per_unit` times under one clock reading: one stripe when a stripe takes at least
// kMinUnitSeconds (1 MiB cells), more for small cells, and the whole set repeated when even all
// stripes take less. A sample is `passes_per_sample` sweeps over all `units`, together lasting at
// least kMinSampleSeconds.
struct Plan {
  int stripes_per_unit = 1;
  int repeats_per_unit = 1;
  int units = 1;
  int passes_per_sample = 1;
};

Plan MakePlan(int stripes, double one_pass_seconds) {
  auto at_least = [](double seconds, double one) {
    return static_cast<int>(std::clamp(std::ceil(seconds / one), 1.0, 1e6));
  };
  Plan plan;
  plan.stripes_per_unit = std::min(stripes, at_least(kMinUnitSeconds, one_pass_seconds / stripes));
  plan.units = (stripes + plan.stripes_per_unit - 1) / plan.stripes_per_unit;
  if (plan.units == 1) plan.repeats_per_unit = at_least(kMinUnitSeconds, one_pass_seconds);
  plan.passes_per_sample = at_least(kMinSampleSeconds, one_pass_seconds * plan.repeats_per_unit);
  return plan;
}

struct UnitTime {
  double seconds = 0;
  double bytes = 0;        // data bytes processed
  bool preempted = false;  // another process ran on our CPU meanwhile
};

struct Tally {
  void Add(const UnitTime& time) {
    seconds += time.seconds;
    bytes += time.bytes;
  }
  double GigabytesPerSecond() const { return ftbench::GigabytesPerSecond(bytes, seconds); }
  double seconds = 0;
  double bytes = 0;
};

struct Measurement {
  Plan plan;
  int64_t unit_pairs = 0;     // engine/ISA-L unit pairs timed
  int64_t dropped_pairs = 0;  // of which dropped because either was preempted
  std::vector<double> memcpy_gbps;
  std::vector<double> engine_encode_gbps;
  std::vector<double> isal_encode_gbps;
  std::vector<double> engine_decode_gbps;
  std::vector<double> isal_decode_gbps;
};

void PrintHuman(const EncodeOptions& o, const Measurement& r) {
  const double engine_encode = Median(r.engine_encode_gbps);
  const double isal_encode = Median(r.isal_encode_gbps);
  const double engine_decode = Median(r.engine_decode_gbps);
  const double isal_decode = Median(r.isal_decode_gbps);
  auto pct = [](const std::vector<double>& v) { return FormatFixed(100 * Spread(v), 1) + "%"; };

  std::cout << "ftbench encode: RS(" << o.k << "," << o.m << "), " << o.stripes << " stripes of "
            << FormatSize(o.cell_bytes) << " cells; medians of " << o.repetitions
            << " samples; GB/s = 1e9 data bytes/s\n";
  const Plan& plan = r.plan;
  if (plan.units == 1) {
    std::cout << " each sample: " << plan.passes_per_sample << " timed units of all stripes x "
              << plan.repeats_per_unit;
  } else {
    std::cout << " each sample: " << plan.passes_per_sample
              << (plan.passes_per_sample == 1 ? " pass" : " passes") << " over all stripes in "
              << plan.units << " timed units of " << plan.stripes_per_unit
              << (plan.stripes_per_unit == 1 ? " stripe" : " stripes");
  }
  std::cout << "; engine and ISA-L units interleaved\n";
  Table encode(
      {"k", "m", "cell bytes", "stripes", "engine GB/s", "ISA-L GB/s", "memcpy GB/s", "ratio"});
  encode.AddRow({std::to_string(o.k), std::to_string(o.m), std::to_string(o.cell_bytes),
                 std::to_string(o.stripes), FormatFixed(engine_encode, 2),
                 FormatFixed(isal_encode, 2), FormatFixed(Median(r.memcpy_gbps), 2),
                 FormatFixed(engine_encode / isal_encode, 3)});
  std::cout << encode.ToString();
  std::cout << " encode spread (max-min)/min: engine " << pct(r.engine_encode_gbps) << ", ISA-L "
            << pct(r.isal_encode_gbps) << ", memcpy " << pct(r.memcpy_gbps) << "\n\n";

  std::cout << "decode: cells 0.." << o.m - 1 << " lost, rebuilt from cells " << o.m << ".."
            << o.k + o.m - 1 << "\n";
  Table decode({"k", "m", "cell bytes", "stripes", "engine GB/s", "ISA-L GB/s", "ratio"});
  decode.AddRow({std::to_string(o.k), std::to_string(o.m), std::to_string(o.cell_bytes),
                 std::to_string(o.stripes), FormatFixed(engine_decode, 2),
                 FormatFixed(isal_decode, 2), FormatFixed(engine_decode / isal_decode, 3)});
  std::cout << decode.ToString();
  std::cout << " decode spread (max-min)/min: engine " << pct(r.engine_decode_gbps) << ", ISA-L "
            << pct(r.isal_decode_gbps) << "\n";
  if (r.dropped_pairs > 0) {
    std::cout << " " << r.dropped_pairs << " of " << r.unit_pairs
              << " engine/ISA-L unit pairs dropped: another process preempted us during them\n";
  }
}

void PrintJson(const EncodeOptions& o, const Measurement& r) {
  const double engine_encode = Median(r.engine_encode_gbps);
  const double isal_encode = Median(r.isal_encode_gbps);
  const double engine_decode = Median(r.engine_decode_gbps);
  const double isal_decode = Median(r.isal_decode_gbps);
  nlohmann::ordered_json out;
  out["k"] = o.k;
  out["m"] = o.m;
  out["cell_bytes"] = o.cell_bytes;
  out["stripes"] = o.stripes;
  out["engine_encode_gbps"] = engine_encode;
  out["isal_encode_gbps"] = isal_encode;
  out["memcpy_gbps"] = Median(r.memcpy_gbps);
  out["ratio"] = engine_encode / isal_encode;
  out["engine_decode_gbps"] = engine_decode;
  out["isal_decode_gbps"] = isal_decode;
  out["decode_ratio"] = engine_decode / isal_decode;
  std::cout << out.dump() << "\n";
}

}  // namespace

Command RegisterEncode(CLI::App& app) {
  auto options = std::make_shared<EncodeOptions>();
  CLI::App* sub = app.add_subcommand(
      "encode",
      "Erasure encode and decode throughput: ftengine's Codec vs raw ISA-L on the same buffers, "
      "and memcpy of the same data bytes");
  sub->add_option("-k,--k", options->k, "Data cells per stripe")
      ->check(IntRange(1, erasure::kMaxCells - 1))
      ->capture_default_str();
  sub->add_option("-m,--m", options->m, "Parity cells per stripe (k + m <= 64)")
      ->check(IntRange(1, erasure::kMaxCells - 1))
      ->capture_default_str();
  AddSizeOption(*sub, "--cell-bytes", &options->cell_bytes,
                "Bytes per cell: plain bytes, KiB, MiB, GiB (K, M, G too: powers of 1024) or kB, "
                "MB, GB (of 1000)");
  sub->add_option("--stripes", options->stripes, "Stripes encoded per timed pass")
      ->check(IntRange(1, kMaxStripes))
      ->capture_default_str();
  sub->add_option("--repetitions", options->repetitions,
                  "Timed passes of each kind (at least 5); medians are reported")
      ->check(IntRange(kMinRepetitions, 1'000'000,
                       "need at least " + std::to_string(kMinRepetitions) + " for a stable median"))
      ->capture_default_str();
  sub->add_flag("--json", options->json, "Print one JSON object instead of the table");
  return {sub, [options] { return RunEncode(*options); }};
}

int RunEncode(const EncodeOptions& o) {
  auto usage = [](const std::string& message) {
    std::cerr << "ftbench encode: " << message << "\n";
    return kExitUsage;
  };
  // The CLI validators cover these too; RunEncode may also be called directly.
  if (o.cell_bytes == 0) return usage("--cell-bytes 0: a cell must hold at least one byte");
  if (o.cell_bytes > static_cast<uint64_t>(INT_MAX)) {
    return usage("--cell-bytes " + std::to_string(o.cell_bytes) + " exceeds ISA-L's limit of " +
                 std::to_string(INT_MAX) + " bytes");
  }
  if (o.stripes < 1 || o.stripes > kMaxStripes) {
    return usage("--stripes " + std::to_string(o.stripes) + " is outside [1, " +
                 std::to_string(kMaxStripes) + "]");
  }
  if (o.repetitions < kMinRepetitions) {
    return usage("--repetitions " + std::to_string(o.repetitions) + ": need at least " +
                 std::to_string(kMinRepetitions) + " for a median");
  }
  Result<std::unique_ptr<erasure::Codec>> codec = erasure::Codec::Create(o.k, o.m);
  if (!codec.ok()) return usage(codec.status().ToString());
  Result<RawTables> raw = MakeRawTables(o.k, o.m);
  if (!raw.ok()) {
    std::cerr << "ftbench encode: " << raw.status() << "\n";
    return kExitFailure;
  }
  Result<Stripes> stripes = MakeStripes(o.k, o.m, o.cell_bytes, o.stripes);
  if (!stripes.ok()) {
    std::cerr << "ftbench encode: " << stripes.status() << "\n";
    return kExitFailure;
  }

  const Passes passes(**codec, *raw, *stripes);
  if (std::string error = WarmUpAndVerify(**codec, *raw, *stripes, passes); !error.empty()) {
    std::cerr << "ftbench encode: verification failed: " << error << "\n";
    return kExitFailure;
  }

  // Calibrate on the ISA-L encode pass over all stripes (median of three).
  std::vector<double> calibration;
  for (int i = 0; i < 3; ++i) {
    calibration.push_back(TimeSeconds([&] { passes.IsalEncode(0, o.stripes); }));
  }
  Measurement r;
  r.plan = MakePlan(o.stripes, std::max(Median(calibration), 1e-9));
  const Plan& plan = r.plan;
  const double bytes_per_stripe = static_cast<double>(o.k) * o.cell_bytes;

  Status engine_status;  // the first engine error, if any
  // Times `work` (a callable (first, count) -> Status) on one unit.
  auto run_unit = [&](auto work, int unit) {
    const int first = unit * plan.stripes_per_unit;
    const int count = std::min(plan.stripes_per_unit, o.stripes - first);
    Status status;
    const int64_t switches = InvoluntaryContextSwitches();
    UnitTime time;
    time.seconds = TimeSeconds([&] {
      for (int i = 0; i < plan.repeats_per_unit; ++i) {
        Status one = work(first, count);
        if (!one.ok() && status.ok()) status = std::move(one);
      }
    });
    time.preempted = InvoluntaryContextSwitches() != switches;
    time.bytes = bytes_per_stripe * count * plan.repeats_per_unit;
    if (!status.ok() && engine_status.ok()) engine_status = std::move(status);
    return time;
  };
  // One sample of `work` alone (memcpy).
  auto single = [&](auto work, std::vector<double>* gbps) {
    Tally kept;
    Tally every;
    for (int pass = 0; pass < plan.passes_per_sample; ++pass) {
      for (int unit = 0; unit < plan.units; ++unit) {
        const UnitTime time = run_unit(work, unit);
        every.Add(time);
        if (!time.preempted) kept.Add(time);
      }
    }
    gbps->push_back((kept.bytes > 0 ? kept : every).GigabytesPerSecond());
  };
  // One sample each of `a` and `b`, interleaved unit by unit: a's unit u, b's unit u + units/2,
  // a's unit u + 1, ... with the order flipping at every unit (b leads the first when `b_first`).
  // So a and b each sweep all stripes, never touch a stripe the other has just brought into the
  // cache, and share any slowdown from other processes that lasts longer than a unit. A pair
  // during which either was preempted is dropped from both.
  auto paired = [&](auto a, auto b, bool b_first, std::vector<double>* a_gbps,
                    std::vector<double>* b_gbps) {
    Tally a_kept, b_kept, a_every, b_every;
    int step = 0;
    for (int pass = 0; pass < plan.passes_per_sample; ++pass) {
      for (int unit = 0; unit < plan.units; ++unit, ++step) {
        const int b_unit = (unit + plan.units / 2) % plan.units;
        UnitTime a_time;
        UnitTime b_time;
        if ((step % 2 == 1) != b_first) {
          b_time = run_unit(b, b_unit);
          a_time = run_unit(a, unit);
        } else {
          a_time = run_unit(a, unit);
          b_time = run_unit(b, b_unit);
        }
        a_every.Add(a_time);
        b_every.Add(b_time);
        ++r.unit_pairs;
        if (a_time.preempted || b_time.preempted) {
          ++r.dropped_pairs;
          continue;
        }
        a_kept.Add(a_time);
        b_kept.Add(b_time);
      }
    }
    const bool any_kept = a_kept.bytes > 0;
    a_gbps->push_back((any_kept ? a_kept : a_every).GigabytesPerSecond());
    b_gbps->push_back((any_kept ? b_kept : b_every).GigabytesPerSecond());
  };
  auto no_status = [](auto work) {
    return [work](int first, int count) {
      work(first, count);
      return Status();
    };
  };
  const auto engine_encode = [&](int first, int count) {
    return passes.EngineEncode(first, count);
  };
  const auto isal_encode =
      no_status([&](int first, int count) { passes.IsalEncode(first, count); });
  const auto engine_decode = [&](int first, int count) {
    return passes.EngineDecode(first, count);
  };
  const auto isal_decode =
      no_status([&](int first, int count) { passes.IsalDecode(first, count); });
  const auto copy = no_status([&](int first, int count) { passes.Memcpy(first, count); });
  for (int rep = 0; rep < o.repetitions; ++rep) {
    single(copy, &r.memcpy_gbps);
    const bool isal_first = rep % 2 == 1;
    paired(engine_encode, isal_encode, isal_first, &r.engine_encode_gbps, &r.isal_encode_gbps);
    paired(engine_decode, isal_decode, isal_first, &r.engine_decode_gbps, &r.isal_decode_gbps);
  }
  if (!engine_status.ok()) {
    std::cerr << "ftbench encode: engine call failed: " << engine_status << "\n";
    return kExitFailure;
  }

  if (o.json) {
    PrintJson(o, r);
  } else {
    PrintHuman(o, r);
  }
  return kExitOk;
}

}  // namespace ft::ftbench
