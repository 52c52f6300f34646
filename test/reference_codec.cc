#include "test/reference_codec.h"

#include <array>
#include <cstring>
#include <utility>

namespace ft::erasure::reference {
namespace {

constexpr unsigned kPolynomial = 0x11d;

// Full 256 x 256 product table, every entry computed by GfMul. Only a speed-up for the bulk loops:
// the arithmetic is still the bitwise definition.
using ProductTable = std::array<std::array<uint8_t, 256>, 256>;

const ProductTable& Products() {
  static const ProductTable* const table = [] {
    auto* t = new ProductTable;
    for (int a = 0; a < 256; ++a) {
      for (int b = 0; b < 256; ++b) {
        (*t)[a][b] = GfMul(static_cast<uint8_t>(a), static_cast<uint8_t>(b));
      }
    }
    return t;
  }();
  return *table;
}

// out[i] ^= coefficient * in[i] for i in [0, bytes).
void MultiplyAccumulate(uint8_t coefficient, const uint8_t* in, uint8_t* out, size_t bytes) {
  if (coefficient == 0) return;
  const std::array<uint8_t, 256>& row = Products()[coefficient];
  for (size_t i = 0; i < bytes; ++i) out[i] ^= row[in[i]];
}

}  // namespace

uint8_t GfMul(uint8_t a, uint8_t b) {
  unsigned x = a;
  unsigned product = 0;
  for (int bit = 0; bit < 8; ++bit) {
    if (b & (1u << bit)) product ^= x;
    x <<= 1;
    if (x & 0x100u) x ^= kPolynomial;
  }
  return static_cast<uint8_t>(product);
}

uint8_t GfInv(uint8_t a) {
  // a^254 = a^-1 in GF(2^8)* (order 255), by square-and-multiply; 0^254 = 0.
  uint8_t result = 1;
  uint8_t base = a;
  for (unsigned exponent = 254; exponent != 0; exponent >>= 1) {
    if (exponent & 1u) result = GfMul(result, base);
    base = GfMul(base, base);
  }
  return a == 0 ? 0 : result;
}

std::vector<uint8_t> CauchyGenerator(int k, int m) {
  const int rows = k + m;
  std::vector<uint8_t> matrix(static_cast<size_t>(rows) * k, 0);
  for (int i = 0; i < k; ++i) matrix[static_cast<size_t>(i) * k + i] = 1;
  for (int i = k; i < rows; ++i) {
    for (int j = 0; j < k; ++j) {
      matrix[static_cast<size_t>(i) * k + j] = GfInv(static_cast<uint8_t>(i ^ j));
    }
  }
  return matrix;
}

bool InvertMatrix(std::vector<uint8_t> matrix, int n, std::vector<uint8_t>* inverse) {
  const size_t size = static_cast<size_t>(n);
  inverse->assign(size * size, 0);
  for (size_t i = 0; i < size; ++i) (*inverse)[i * size + i] = 1;
  auto at = [size](std::vector<uint8_t>& m, size_t r, size_t c) -> uint8_t& {
    return m[r * size + c];
  };
  for (size_t column = 0; column < size; ++column) {
    size_t pivot = column;
    while (pivot < size && at(matrix, pivot, column) == 0) ++pivot;
    if (pivot == size) return false;
    if (pivot != column) {
      for (size_t c = 0; c < size; ++c) {
        std::swap(at(matrix, pivot, c), at(matrix, column, c));
        std::swap(at(*inverse, pivot, c), at(*inverse, column, c));
      }
    }
    const uint8_t scale = GfInv(at(matrix, column, column));
    for (size_t c = 0; c < size; ++c) {
      at(matrix, column, c) = GfMul(at(matrix, column, c), scale);
      at(*inverse, column, c) = GfMul(at(*inverse, column, c), scale);
    }
    for (size_t r = 0; r < size; ++r) {
      const uint8_t factor = at(matrix, r, column);
      if (r == column || factor == 0) continue;
      for (size_t c = 0; c < size; ++c) {
        at(matrix, r, c) ^= GfMul(factor, at(matrix, column, c));
        at(*inverse, r, c) ^= GfMul(factor, at(*inverse, column, c));
      }
    }
  }
  return true;
}

ReferenceCodec::ReferenceCodec(int k, int m) : k_(k), m_(m), generator_(CauchyGenerator(k, m)) {}

void ReferenceCodec::Encode(std::span<const uint8_t* const> data, std::span<uint8_t* const> parity,
                            size_t cell_bytes) const {
  for (int p = 0; p < m_; ++p) {
    std::memset(parity[p], 0, cell_bytes);
    const uint8_t* row = &generator_[static_cast<size_t>(k_ + p) * k_];
    for (int j = 0; j < k_; ++j) MultiplyAccumulate(row[j], data[j], parity[p], cell_bytes);
  }
}

bool ReferenceCodec::Decode(std::span<const int> present,
                            std::span<const uint8_t* const> present_cells,
                            std::span<const int> wanted, std::span<uint8_t* const> outputs,
                            size_t cell_bytes) const {
  const int total = k_ + m_;
  if (present.size() < static_cast<size_t>(k_) || present_cells.size() < present.size() ||
      outputs.size() != wanted.size()) {
    return false;
  }
  for (int index : present) {
    if (index < 0 || index >= total) return false;
  }
  for (int index : wanted) {
    if (index < 0 || index >= total) return false;
  }
  // survivors * data = present cells, so data = survivors^-1 * present cells.
  std::vector<uint8_t> survivors(static_cast<size_t>(k_) * k_);
  for (int r = 0; r < k_; ++r) {
    for (int c = 0; c < k_; ++c) {
      survivors[static_cast<size_t>(r) * k_ + c] =
          generator_[static_cast<size_t>(present[r]) * k_ + c];
    }
  }
  std::vector<uint8_t> inverse;
  if (!InvertMatrix(std::move(survivors), k_, &inverse)) return false;

  std::vector<std::vector<uint8_t>> data(k_, std::vector<uint8_t>(cell_bytes, 0));
  for (int d = 0; d < k_; ++d) {
    for (int r = 0; r < k_; ++r) {
      MultiplyAccumulate(inverse[static_cast<size_t>(d) * k_ + r], present_cells[r], data[d].data(),
                         cell_bytes);
    }
  }
  for (size_t w = 0; w < wanted.size(); ++w) {
    if (wanted[w] < k_) {
      std::memcpy(outputs[w], data[wanted[w]].data(), cell_bytes);
      continue;
    }
    std::vector<uint8_t> cell(cell_bytes, 0);
    const uint8_t* row = &generator_[static_cast<size_t>(wanted[w]) * k_];
    for (int j = 0; j < k_; ++j)
      MultiplyAccumulate(row[j], data[j].data(), cell.data(), cell_bytes);
    std::memcpy(outputs[w], cell.data(), cell_bytes);
  }
  return true;
}

}  // namespace ft::erasure::reference
