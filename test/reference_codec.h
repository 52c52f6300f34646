// A slow, obviously-correct Reed-Solomon codec written from the definitions, used only by tests to
// cross-check ft::erasure::Codec (which runs Intel ISA-L). Nothing here calls ISA-L.
//
// Arithmetic is GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d), multiplication by
// shift-and-xor. The generator is the one ISA-L's gf_gen_cauchy1_matrix builds: the k x k identity
// on top, then parity row i (k <= i < k+m), column j holds 1 / (i XOR j). Decoding inverts the
// k x k submatrix of the rows of the cells read by Gauss-Jordan elimination.
//
// Thread-safety: every function may be called concurrently (the only shared state is a product
// table built once, thread-safely, from GfMul).
#ifndef FT_TEST_REFERENCE_CODEC_H_
#define FT_TEST_REFERENCE_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ft::erasure::reference {

// Product in GF(2^8) mod 0x11d, computed bit by bit (no tables).
uint8_t GfMul(uint8_t a, uint8_t b);

// Multiplicative inverse (a^254); 0 for 0, as ISA-L's gf_inv.
uint8_t GfInv(uint8_t a);

// The (k+m) x k Cauchy generator, row-major.
std::vector<uint8_t> CauchyGenerator(int k, int m);

// Inverts the n x n row-major `matrix` by Gauss-Jordan elimination with row pivoting.
// Returns false (and leaves *inverse unspecified) when the matrix is singular.
bool InvertMatrix(std::vector<uint8_t> matrix, int n, std::vector<uint8_t>* inverse);

class ReferenceCodec {
 public:
  ReferenceCodec(int k, int m);

  int k() const { return k_; }
  int m() const { return m_; }
  const std::vector<uint8_t>& generator() const { return generator_; }

  // parity[p][b] = sum over j of generator[k + p][j] * data[j][b]. Sizes: k data, m parity.
  void Encode(std::span<const uint8_t* const> data, std::span<uint8_t* const> parity,
              size_t cell_bytes) const;

  // Rebuilds the cells `wanted` (outputs[i] receives cell wanted[i]) from the first k cells of
  // `present`. Returns false if the inputs are malformed (fewer than k present, index out of
  // range) or the submatrix is singular; outputs are then not written.
  bool Decode(std::span<const int> present, std::span<const uint8_t* const> present_cells,
              std::span<const int> wanted, std::span<uint8_t* const> outputs,
              size_t cell_bytes) const;

 private:
  int k_;
  int m_;
  std::vector<uint8_t> generator_;
};

}  // namespace ft::erasure::reference

#endif  // FT_TEST_REFERENCE_CODEC_H_
