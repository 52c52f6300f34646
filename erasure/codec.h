// Reed-Solomon erasure coding over GF(2^8) with Intel ISA-L.
//
// A stripe is k data cells followed by m parity cells, all `cell_bytes` long; cell index i in
// [0, k) is data, [k, k+m) is parity. The generator is ISA-L's Cauchy matrix
// (gf_gen_cauchy1_matrix): the identity on top, parity row i (k <= i < k+m) has entries
// 1 / (i XOR j) in GF(2^8) with polynomial 0x11d. Every k x k submatrix of it is invertible, so
// any k cells of a stripe reconstruct all the others.
//
// Thread-safety: a Codec is immutable after Create() except for its decode-table cache, which is
// guarded; Encode and Decode may be called concurrently from any number of threads.
// Buffers: the codec never keeps a pointer past the call; inputs may alias nothing it writes.
#ifndef FT_ERASURE_CODEC_H_
#define FT_ERASURE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ftengine/status.h"

namespace ft::erasure {

// ISA-L's tables and our cell masks are sized for k + m <= 64.
inline constexpr int kMaxCells = 64;

class Codec {
 public:
  // k >= 1 data cells, m >= 1 parity cells, k + m <= kMaxCells. Builds the encode tables once.
  static Result<std::unique_ptr<Codec>> Create(int k, int m);
  ~Codec();
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;

  int k() const { return k_; }
  int m() const { return m_; }

  // Computes the m parity cells of one stripe from its k data cells.
  // data: exactly k pointers, parity: exactly m pointers, each to `cell_bytes` (>= 1) bytes at
  // any alignment. On error nothing is written.
  Status Encode(std::span<const uint8_t* const> data, std::span<uint8_t* const> parity,
                size_t cell_bytes) const;

  // Reconstructs the cells listed in `wanted` from the cells listed in `present`.
  // present: indices of the available cells (distinct, each in [0, k+m)); present_cells[i] holds
  //   cell present[i]. At least k are needed; only the first k are read.
  // wanted: indices to rebuild (distinct, none of them in `present`); outputs[i] receives cell
  //   wanted[i]. Data and parity cells may both be wanted.
  // Fewer than k present cells is DataLoss (naming how many are missing); any other bad input is
  // InvalidArgument. On error nothing is written. The tables for one (present, wanted) pattern are
  // built once and cached (bounded, least recently used pattern evicted first).
  Status Decode(std::span<const int> present, std::span<const uint8_t* const> present_cells,
                std::span<const int> wanted, std::span<uint8_t* const> outputs,
                size_t cell_bytes) const;

  // The (k+m) x k generator matrix, row-major (for tests and tools that cross-check).
  std::span<const uint8_t> generator() const { return generator_; }

  // How many decode patterns are cached now (for tests).
  size_t cached_decode_patterns() const;

  // Upper bound of cached decode patterns.
  static constexpr size_t kDecodeCacheCapacity = 256;

 private:
  struct DecodeCache;
  struct PrivateTag {};

 public:
  Codec(PrivateTag, int k, int m);  // use Create()

 private:
  int k_;
  int m_;
  std::vector<uint8_t> generator_;  // (k+m) x k
  // ec_init_tables of the m parity rows: 32 * k * m bytes. Cache-line aligned, as ISA-L's own
  // tests allocate them: the kernels load 32-byte table rows, which must not split cache lines.
  struct AlignedTables;
  std::shared_ptr<const AlignedTables> encode_tables_;
  std::unique_ptr<DecodeCache> decode_cache_;
};

// CRC64 of a cell: ISA-L's crc64_ecma_refl (ECMA-182 polynomial, reflected, ~seed in and ~ out;
// with seed 0 this is CRC-64/XZ: "123456789" -> 0x995dc9bbdf1939fa). Pass the previous result as
// `seed` to continue a CRC over several pieces.
uint64_t Crc64(const void* data, size_t bytes, uint64_t seed = 0);

}  // namespace ft::erasure

#endif  // FT_ERASURE_CODEC_H_
