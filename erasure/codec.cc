#include "erasure/codec.h"

#include <isa-l/crc64.h>
#include <isa-l/erasure_code.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/check.h"

namespace ft::erasure {
namespace {

// ISA-L takes lengths as int.
constexpr size_t kMaxCellBytes = static_cast<size_t>(INT_MAX);

Status CheckCellBytes(size_t cell_bytes) {
  if (cell_bytes == 0)
    return Status::InvalidArgument("cell_bytes = 0: cells must hold at least one byte");
  if (cell_bytes > kMaxCellBytes) {
    return Status::InvalidArgument("cell_bytes = ", cell_bytes, " exceeds ISA-L's limit of ",
                                   kMaxCellBytes);
  }
  return Status();
}

template <typename Pointer>
Status CheckPointers(std::span<Pointer const> cells, const char* what) {
  for (size_t i = 0; i < cells.size(); ++i) {
    if (cells[i] == nullptr) return Status::InvalidArgument(what, "[", i, "] is a null pointer");
  }
  return Status();
}

// Checks that every index is in [0, total) and appears once; marks them in `seen`.
Status CheckIndices(std::span<const int> indices, int total, const char* what, uint64_t* seen) {
  for (size_t i = 0; i < indices.size(); ++i) {
    const int index = indices[i];
    if (index < 0 || index >= total) {
      return Status::InvalidArgument(what, "[", i, "] = ", index, " is outside [0, ", total, ")");
    }
    const uint64_t bit = uint64_t{1} << index;
    if (*seen & bit) {
      return Status::InvalidArgument(what, "[", i, "] = ", index, " appears twice");
    }
    *seen |= bit;
  }
  return Status();
}

}  // namespace

struct Codec::AlignedTables {
  struct Free {
    void operator()(uint8_t* p) const { std::free(p); }
  };
  explicit AlignedTables(size_t bytes)
      : data(static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64))) {
    FT_CHECK_MSG(data != nullptr, "out of memory for erasure tables");
  }
  std::unique_ptr<uint8_t, Free> data;
};

// Decode tables keyed by (the k present cells read, the wanted cells), both in call order.
struct Codec::DecodeCache {
  using Tables = AlignedTables;
  struct Entry {
    std::shared_ptr<const Tables> tables;
    std::list<std::string>::iterator lru_position;
  };

  std::shared_ptr<const Tables> Find(const std::string& key) {
    std::lock_guard lock(mutex);
    auto it = entries.find(key);
    if (it == entries.end()) return nullptr;
    lru.splice(lru.begin(), lru, it->second.lru_position);
    return it->second.tables;
  }

  void Insert(const std::string& key, std::shared_ptr<const Tables> tables) {
    std::lock_guard lock(mutex);
    if (entries.contains(key)) return;  // another thread built the same pattern
    if (entries.size() >= kDecodeCacheCapacity) {
      entries.erase(lru.back());
      lru.pop_back();
    }
    lru.push_front(key);
    entries.emplace(key, Entry{std::move(tables), lru.begin()});
  }

  size_t size() const {
    std::lock_guard lock(mutex);
    return entries.size();
  }

  mutable std::mutex mutex;
  std::list<std::string> lru;  // most recently used first
  std::unordered_map<std::string, Entry> entries;
};

Codec::Codec(PrivateTag, int k, int m)
    : k_(k), m_(m), decode_cache_(std::make_unique<DecodeCache>()) {}
Codec::~Codec() = default;

Result<std::unique_ptr<Codec>> Codec::Create(int k, int m) {
  if (k < 1) return Status::InvalidArgument("k = ", k, ": need at least one data cell per stripe");
  if (m < 1)
    return Status::InvalidArgument("m = ", m, ": need at least one parity cell per stripe");
  if (k > kMaxCells - m) {  // not k + m > kMaxCells: that overflows int for huge k or m
    return Status::InvalidArgument("k + m = ", int64_t{k} + m, " (k = ", k, ", m = ", m,
                                   ") exceeds the limit of ", kMaxCells, " cells per stripe");
  }
  auto codec = std::make_unique<Codec>(PrivateTag{}, k, m);
  const int rows = k + m;
  codec->generator_.resize(static_cast<size_t>(rows) * k);
  gf_gen_cauchy1_matrix(codec->generator_.data(), rows, k);
  auto tables = std::make_shared<AlignedTables>(32u * k * m);
  ec_init_tables(k, m, codec->generator_.data() + static_cast<size_t>(k) * k, tables->data.get());
  codec->encode_tables_ = std::move(tables);
  return codec;
}

Status Codec::Encode(std::span<const uint8_t* const> data, std::span<uint8_t* const> parity,
                     size_t cell_bytes) const {
  if (data.size() != static_cast<size_t>(k_)) {
    return Status::InvalidArgument("Encode got ", data.size(),
                                   " data cells; this codec has k = ", k_);
  }
  if (parity.size() != static_cast<size_t>(m_)) {
    return Status::InvalidArgument("Encode got ", parity.size(),
                                   " parity cells; this codec has m = ", m_);
  }
  FT_RETURN_IF_ERROR(CheckCellBytes(cell_bytes));
  FT_RETURN_IF_ERROR(CheckPointers(data, "data"));
  FT_RETURN_IF_ERROR(CheckPointers(parity, "parity"));

  // ISA-L's prototype is not const-correct; it only reads the sources.
  std::array<uint8_t*, kMaxCells> sources;
  for (int i = 0; i < k_; ++i) sources[i] = const_cast<uint8_t*>(data[i]);
  std::array<uint8_t*, kMaxCells> destinations;
  for (int i = 0; i < m_; ++i) destinations[i] = parity[i];
  ec_encode_data(static_cast<int>(cell_bytes), k_, m_, encode_tables_->data.get(), sources.data(),
                 destinations.data());
  return Status();
}

Status Codec::Decode(std::span<const int> present, std::span<const uint8_t* const> present_cells,
                     std::span<const int> wanted, std::span<uint8_t* const> outputs,
                     size_t cell_bytes) const {
  const int total = k_ + m_;
  if (present.size() != present_cells.size()) {
    return Status::InvalidArgument("Decode got ", present.size(), " present indices but ",
                                   present_cells.size(), " present cells");
  }
  if (wanted.size() != outputs.size()) {
    return Status::InvalidArgument("Decode got ", wanted.size(), " wanted indices but ",
                                   outputs.size(), " output cells");
  }
  FT_RETURN_IF_ERROR(CheckCellBytes(cell_bytes));
  uint64_t present_mask = 0;
  FT_RETURN_IF_ERROR(CheckIndices(present, total, "present", &present_mask));
  uint64_t wanted_mask = 0;
  FT_RETURN_IF_ERROR(CheckIndices(wanted, total, "wanted", &wanted_mask));
  if (present_mask & wanted_mask) {
    for (size_t i = 0; i < wanted.size(); ++i) {
      if (present_mask & (uint64_t{1} << wanted[i])) {
        return Status::InvalidArgument("wanted[", i, "] = ", wanted[i],
                                       " is also listed as present");
      }
    }
  }
  FT_RETURN_IF_ERROR(CheckPointers(present_cells, "present_cells"));
  FT_RETURN_IF_ERROR(CheckPointers(outputs, "outputs"));
  if (present.size() < static_cast<size_t>(k_)) {
    return Status::DataLoss("only ", present.size(), " of the ", k_,
                            " cells needed to decode are present (", total - present.size(), " of ",
                            total, " lost; RS(", k_, ",", m_, ") survives at most ", m_, ")");
  }
  if (wanted.empty()) return Status();

  std::string key;
  key.reserve(static_cast<size_t>(k_) + 1 + wanted.size());
  for (int i = 0; i < k_; ++i) key.push_back(static_cast<char>(present[i]));
  key.push_back(static_cast<char>(0xff));
  for (int index : wanted) key.push_back(static_cast<char>(index));

  std::shared_ptr<const DecodeCache::Tables> tables = decode_cache_->Find(key);
  if (tables == nullptr) {
    // Rows of the generator for the k cells we read, inverted: maps those cells back to data.
    std::vector<uint8_t> survivors(static_cast<size_t>(k_) * k_);
    for (int r = 0; r < k_; ++r) {
      std::copy_n(&generator_[static_cast<size_t>(present[r]) * k_], k_, &survivors[r * k_]);
    }
    std::vector<uint8_t> inverse(static_cast<size_t>(k_) * k_);
    if (gf_invert_matrix(survivors.data(), inverse.data(), k_) != 0) {
      // Cannot happen with a Cauchy generator; report instead of decoding garbage.
      return Status::Internal("generator submatrix for the present cells is singular");
    }
    // A wanted data cell is a row of the inverse; a wanted parity cell is its generator row
    // applied to the recovered data, i.e. generator_row x inverse.
    std::vector<uint8_t> rows(wanted.size() * k_);
    for (size_t w = 0; w < wanted.size(); ++w) {
      uint8_t* row = &rows[w * k_];
      if (wanted[w] < k_) {
        std::copy_n(&inverse[static_cast<size_t>(wanted[w]) * k_], k_, row);
        continue;
      }
      const uint8_t* generator_row = &generator_[static_cast<size_t>(wanted[w]) * k_];
      for (int c = 0; c < k_; ++c) {
        uint8_t sum = 0;
        for (int j = 0; j < k_; ++j) sum ^= gf_mul(generator_row[j], inverse[j * k_ + c]);
        row[c] = sum;
      }
    }
    auto built = std::make_shared<AlignedTables>(32u * k_ * wanted.size());
    ec_init_tables(k_, static_cast<int>(wanted.size()), rows.data(), built->data.get());
    decode_cache_->Insert(key, built);
    tables = std::move(built);
  }

  std::array<uint8_t*, kMaxCells> sources;
  for (int i = 0; i < k_; ++i) sources[i] = const_cast<uint8_t*>(present_cells[i]);
  std::array<uint8_t*, kMaxCells> destinations;
  for (size_t i = 0; i < wanted.size(); ++i) destinations[i] = outputs[i];
  ec_encode_data(static_cast<int>(cell_bytes), k_, static_cast<int>(wanted.size()),
                 tables->data.get(), sources.data(), destinations.data());
  return Status();
}

size_t Codec::cached_decode_patterns() const { return decode_cache_->size(); }

uint64_t Crc64(const void* data, size_t bytes, uint64_t seed) {
  return crc64_ecma_refl(seed, static_cast<const unsigned char*>(data), bytes);
}

}  // namespace ft::erasure
