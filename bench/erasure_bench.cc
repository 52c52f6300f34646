// Erasure coding micro-benchmarks: ft::erasure::Codec against raw ISA-L on the same buffers.
//
// For each (k, m, cell_bytes) the benchmarks run in this order on one shared set of buffers:
//   EngineEncode  Codec::Encode of one stripe
//   IsalEncode    ec_encode_data with tables built here (gf_gen_cauchy1_matrix + ec_init_tables)
//   Memcpy        memcpy of the stripe's k data cells (the memory-bandwidth yardstick)
//   EngineDecode  Codec::Decode of data cells 0..m-1 from cells m..k+m-1
//   IsalDecode    the same with gf_invert_matrix + ec_init_tables done once here, then
//                 ec_encode_data
// One stripe is reused every iteration (warm cache; `ftbench encode` measures the streaming
// case). bytes_per_second counts data bytes: k * cell_bytes per iteration.
#include <benchmark/benchmark.h>
#include <isa-l/erasure_code.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "erasure/codec.h"

namespace {

using ft::erasure::Codec;

constexpr size_t kAlignment = 64;

struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
using AlignedBytes = std::unique_ptr<uint8_t, FreeDeleter>;

// Zero-filled (so every page is touched), 64-byte aligned.
AlignedBytes AllocateAligned(size_t bytes) {
  const size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  AlignedBytes p(static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded)));
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p.get(), 0, rounded);
  return p;
}

// One stripe's buffers and both sides' tables for one (k, m, cell_bytes), shared by all five
// benchmarks of that configuration.
struct Fixture {
  Fixture(int k_in, int m_in, size_t cell_bytes_in) : k(k_in), m(m_in), cell_bytes(cell_bytes_in) {
    auto created = Codec::Create(k, m);
    if (!created.ok()) {
      error = created.status().ToString();
      return;
    }
    codec = std::move(created).value();

    // Slots 320 bytes (5 cache lines) further apart than the rounded cell size, so that no two
    // cells share a page offset (see kSlotSkew in tools/ftbench/encode.cc: cells a whole number
    // of pages apart cost ISA-L up to 25% and make the result depend on where its tables sit).
    const size_t slot_bytes = (cell_bytes + kAlignment - 1) / kAlignment * kAlignment + 320;
    const size_t ku = static_cast<size_t>(k);
    // Slots: k data, m parity, m decode outputs, k memcpy destinations.
    arena = AllocateAligned((2 * ku + 2 * m) * slot_bytes);
    auto slot = [&](size_t index) { return arena.get() + index * slot_bytes; };
    for (int i = 0; i < k + m; ++i) {
      uint8_t* cell = slot(i);
      (i < k ? data : parity).push_back(cell);
      if (i >= m) present.push_back(cell);
    }
    for (int i = 0; i < m; ++i) rebuilt.push_back(slot(ku + m + i));
    for (int i = 0; i < k; ++i) copy_to.push_back(slot(ku + 2 * m + i));
    for (int i = m; i < k + m; ++i) present_indices.push_back(i);
    for (int i = 0; i < m; ++i) wanted_indices.push_back(i);

    uint64_t state = 0x0f7e5eed;
    for (uint8_t* cell : data) {
      for (size_t b = 0; b < cell_bytes; ++b) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        cell[b] = static_cast<uint8_t>(state >> 56);
      }
    }

    // Raw ISA-L tables, from ISA-L calls only.
    generator.resize((ku + m) * ku);
    gf_gen_cauchy1_matrix(generator.data(), k + m, k);
    encode_tables = AllocateAligned(32 * ku * m);
    ec_init_tables(k, m, &generator[ku * ku], encode_tables.get());
    std::vector<uint8_t> survivors(ku * ku);
    for (size_t r = 0; r < ku; ++r) {
      std::copy_n(&generator[(r + m) * ku], ku, &survivors[r * ku]);
    }
    std::vector<uint8_t> inverse(ku * ku);
    if (gf_invert_matrix(survivors.data(), inverse.data(), k) != 0) {
      error = "gf_invert_matrix: survivor rows are singular";
      return;
    }
    std::vector<uint8_t> rows(static_cast<size_t>(m) * ku);
    for (int lost = 0; lost < m; ++lost) {
      uint8_t* row = &rows[lost * ku];
      if (lost < k) {
        std::copy_n(&inverse[lost * ku], ku, row);
        continue;
      }
      for (size_t c = 0; c < ku; ++c) {  // a lost parity cell (m > k): generator row x inverse
        uint8_t sum = 0;
        for (size_t j = 0; j < ku; ++j)
          sum ^= gf_mul(generator[lost * ku + j], inverse[j * ku + c]);
        row[c] = sum;
      }
    }
    decode_tables = AllocateAligned(32 * ku * m);
    ec_init_tables(k, m, rows.data(), decode_tables.get());

    error = Verify();
  }

  // Both encodes give the same parity and both decodes give back the lost cells. Also warms the
  // engine's decode-table cache. Returns "" when all is well.
  std::string Verify() {
    if (ft::Status s = EngineEncode(); !s.ok()) return "engine encode: " + s.ToString();
    std::vector<std::vector<uint8_t>> engine_parity;
    for (uint8_t* cell : parity) engine_parity.emplace_back(cell, cell + cell_bytes);
    for (uint8_t* cell : parity) std::memset(cell, 0, cell_bytes);
    IsalEncode();
    for (int i = 0; i < m; ++i) {
      if (std::memcmp(parity[i], engine_parity[i].data(), cell_bytes) != 0) {
        return "engine and ISA-L parity differ";
      }
    }
    auto rebuilt_ok = [&] {
      for (int lost = 0; lost < m; ++lost) {
        const uint8_t* original = lost < k ? data[lost] : parity[lost - k];
        if (std::memcmp(rebuilt[lost], original, cell_bytes) != 0) return false;
      }
      return true;
    };
    if (ft::Status s = EngineDecode(); !s.ok()) return "engine decode: " + s.ToString();
    if (!rebuilt_ok()) return "engine decode does not reproduce the lost cells";
    for (uint8_t* cell : rebuilt) std::memset(cell, 0, cell_bytes);
    IsalDecode();
    if (!rebuilt_ok()) return "ISA-L decode does not reproduce the lost cells";
    return "";
  }

  ft::Status EngineEncode() {
    const std::span<const uint8_t* const> sources(data.data(), data.size());
    return codec->Encode(sources, parity, cell_bytes);
  }
  void IsalEncode() {
    ec_encode_data(static_cast<int>(cell_bytes), k, m, encode_tables.get(), data.data(),
                   parity.data());
  }
  ft::Status EngineDecode() {
    const std::span<const uint8_t* const> sources(present.data(), present.size());
    return codec->Decode(present_indices, sources, wanted_indices, rebuilt, cell_bytes);
  }
  void IsalDecode() {
    ec_encode_data(static_cast<int>(cell_bytes), k, m, decode_tables.get(), present.data(),
                   rebuilt.data());
  }
  void Memcpy() {
    for (int i = 0; i < k; ++i) std::memcpy(copy_to[i], data[i], cell_bytes);
    benchmark::ClobberMemory();
  }

  int k;
  int m;
  size_t cell_bytes;
  std::string error;  // non-empty: setup or verification failed
  std::unique_ptr<Codec> codec;
  AlignedBytes arena;  // all the cells below
  std::vector<uint8_t*> data, parity, present, rebuilt, copy_to;
  std::vector<int> present_indices, wanted_indices;
  std::vector<uint8_t> generator;
  // 64-byte aligned: ISA-L runs a few percent slower on tables that straddle cache lines, and the
  // raw side should be ISA-L at its best.
  AlignedBytes encode_tables, decode_tables;
};

Fixture& GetFixture(const benchmark::State& state) {
  static std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<Fixture>> fixtures;
  const auto key = std::make_tuple(state.range(0), state.range(1), state.range(2));
  std::unique_ptr<Fixture>& fixture = fixtures[key];
  if (fixture == nullptr) {
    fixture = std::make_unique<Fixture>(static_cast<int>(state.range(0)),
                                        static_cast<int>(state.range(1)),
                                        static_cast<size_t>(state.range(2)));
  }
  return *fixture;
}

template <typename Body>
void Run(benchmark::State& state, Body body) {
  Fixture& f = GetFixture(state);
  if (!f.error.empty()) {
    state.SkipWithError(f.error.c_str());
    return;
  }
  for (auto _ : state) {
    if (!body(f)) {
      state.SkipWithError("engine call failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * f.k *
                          static_cast<int64_t>(f.cell_bytes));
}

void BM_EngineEncode(benchmark::State& state) {
  Run(state, [](Fixture& f) { return f.EngineEncode().ok(); });
}
void BM_IsalEncode(benchmark::State& state) {
  Run(state, [](Fixture& f) {
    f.IsalEncode();
    return true;
  });
}
void BM_Memcpy(benchmark::State& state) {
  Run(state, [](Fixture& f) {
    f.Memcpy();
    return true;
  });
}
void BM_EngineDecode(benchmark::State& state) {
  Run(state, [](Fixture& f) { return f.EngineDecode().ok(); });
}
void BM_IsalDecode(benchmark::State& state) {
  Run(state, [](Fixture& f) {
    f.IsalDecode();
    return true;
  });
}

// Registered configuration by configuration so that engine and ISA-L runs sit side by side.
[[maybe_unused]] const bool kRegistered = [] {
  constexpr int64_t kKiB = 1024;
  constexpr int64_t kMiB = 1024 * kKiB;
  const std::vector<std::vector<int64_t>> configs = {
      {4, 2, kMiB},      {8, 2, kMiB},      {10, 4, kMiB},
      {4, 2, 64 * kKiB}, {8, 2, 64 * kKiB}, {10, 4, 64 * kKiB},
  };
  const std::vector<std::pair<const char*, void (*)(benchmark::State&)>> kinds = {
      {"BM_EngineEncode", BM_EngineEncode},
      {"BM_IsalEncode", BM_IsalEncode},
      {"BM_Memcpy", BM_Memcpy},
      {"BM_EngineDecode", BM_EngineDecode},
      {"BM_IsalDecode", BM_IsalDecode},
  };
  for (const auto& config : configs) {
    for (const auto& [name, fn] : kinds) {
      benchmark::RegisterBenchmark(name, fn)
          ->Args(config)
          ->ArgNames({"k", "m", "cell_bytes"})
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace
