// The fragment header: what a holder's store slot says about the fragment in it.
//
// A store slot is [header area | cells of stripes 0..S-1]. The header area holds this fixed
// header followed by one CRC64 per stripe (the CRC of this column's cell in that stripe), then
// padding to kHeaderAlignment. The owner WRITEs the header LAST, after every cell WRITE completed,
// so a header with the right version, a valid header CRC and matching cell CRCs proves the whole
// fragment landed; a torn or stale fragment fails one of those checks.
#ifndef FT_ERASURE_FRAGMENT_H_
#define FT_ERASURE_FRAGMENT_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "erasure/geometry.h"
#include "ftengine/status.h"

namespace ft::erasure {

inline constexpr uint64_t kFragmentMagic = 0x3130474152465446ull;  // "FTFRAG01"
inline constexpr uint64_t kHeaderAlignment = 64;

struct FragmentHeader {
  uint64_t magic = kFragmentMagic;
  uint64_t version = 0;
  uint64_t epoch = 0;
  uint32_t owner = 0;
  uint32_t column = 0;
  uint32_t k = 0;
  uint32_t m = 0;
  uint64_t cell_bytes = 0;
  uint64_t image_bytes = 0;
  uint64_t stripes = 0;
  uint64_t header_crc = 0;  // CRC64 of this struct (with header_crc = 0) and the cell CRCs
};
static_assert(sizeof(FragmentHeader) == 72);

// Bytes of the header area for `stripes` stripes (header + CRCs, aligned).
inline uint64_t HeaderAreaBytes(uint64_t stripes) {
  const uint64_t raw = sizeof(FragmentHeader) + stripes * sizeof(uint64_t);
  return (raw + kHeaderAlignment - 1) / kHeaderAlignment * kHeaderAlignment;
}
// Bytes of one slot (header area + one column's cells), and of the two slots an owner's fragment
// needs on each holder.
inline uint64_t SlotBytes(const StripeGeometry& geometry) {
  return HeaderAreaBytes(geometry.stripes()) + geometry.fragment_bytes();
}
inline uint64_t FootprintBytes(const StripeGeometry& geometry) { return 2 * SlotBytes(geometry); }

// Fills header_crc over `header` and the cell CRCs that follow it in `area`.
// area: at least HeaderAreaBytes(header.stripes) bytes, starting with the header.
void SealHeader(std::span<std::byte> area);

// Checks a header area read back from a holder: magic, header CRC, and that it describes
// `expected` (owner, column, version, the epoch it was written in, geometry). DataLoss naming the
// first mismatch.
Status CheckHeader(std::span<const std::byte> area, const FragmentHeader& expected);

// Reads the header at the start of a slot of `slot_bytes` in place (a holder checking what it
// hosts, before it knows which version to expect): the header, when its magic and CRC check and
// its stripes fit the slot; DataLoss saying what is wrong otherwise. `area` may be shorter than
// the slot (it is the mapped part); it must hold the header area the header claims.
Result<FragmentHeader> InspectHeader(std::span<const std::byte> area);
// The cell CRCs that follow the header.
inline uint64_t* CellCrcs(std::span<std::byte> area) {
  return reinterpret_cast<uint64_t*>(area.data() + sizeof(FragmentHeader));
}
inline const uint64_t* CellCrcs(std::span<const std::byte> area) {
  return reinterpret_cast<const uint64_t*>(area.data() + sizeof(FragmentHeader));
}

}  // namespace ft::erasure

#endif  // FT_ERASURE_FRAGMENT_H_
