// Stripe geometry: how a node's image (its protected regions concatenated in id order) is cut
// into stripes of k data cells + m parity cells.
//
// Cells are laid out row-major: data cell (stripe s, column c) covers image bytes
// [(s*k + c) * cell_bytes, +cell_bytes). The image is zero-padded up to a whole number of stripes,
// so the last stripe may hold partial cells and whole cells of padding. Column j of every stripe
// forms fragment j, which goes to one holder.
#ifndef FT_ERASURE_GEOMETRY_H_
#define FT_ERASURE_GEOMETRY_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ftengine/status.h"

namespace ft::erasure {

// The part of one data cell that lies inside the image; the rest of the cell is zero padding.
struct CellExtent {
  uint64_t image_offset = 0;   // where the cell starts in the image
  uint64_t image_bytes = 0;    // bytes of image in the cell, 0..cell_bytes
  uint64_t padding_bytes = 0;  // cell_bytes - image_bytes
};

class StripeGeometry {
 public:
  // image_bytes >= 1, cell_bytes >= 1, k >= 1, m >= 1, k + m <= 64.
  static Result<StripeGeometry> Create(uint64_t image_bytes, uint64_t cell_bytes, int k, int m);

  uint64_t image_bytes() const { return image_bytes_; }
  uint64_t cell_bytes() const { return cell_bytes_; }
  int k() const { return k_; }
  int m() const { return m_; }
  int width() const { return k_ + m_; }

  uint64_t stripes() const { return stripes_; }
  uint64_t stripe_data_bytes() const { return cell_bytes_ * static_cast<uint64_t>(k_); }
  uint64_t padded_image_bytes() const { return stripes_ * stripe_data_bytes(); }
  uint64_t tail_padding_bytes() const { return padded_image_bytes() - image_bytes_; }
  // Bytes of one fragment (one column over all stripes): what one holder stores for this owner.
  uint64_t fragment_bytes() const { return stripes_ * cell_bytes_; }

  // Requires stripe < stripes() and 0 <= column < k (FT_CHECK).
  CellExtent DataCell(uint64_t stripe, int column) const;

 private:
  StripeGeometry(uint64_t image_bytes, uint64_t cell_bytes, int k, int m);
  uint64_t image_bytes_;
  uint64_t cell_bytes_;
  int k_;
  int m_;
  uint64_t stripes_;
};

// A piece of the image that lies in one region.
struct RegionSlice {
  size_t region = 0;           // index into the region list given to ImageLayout
  uint64_t region_offset = 0;  // offset inside that region
  uint64_t bytes = 0;
  bool operator==(const RegionSlice&) const = default;
};

// The image as the concatenation of regions of the given sizes (in the order given).
class ImageLayout {
 public:
  // Every region must be >= 1 byte; at least one region.
  static Result<ImageLayout> Create(std::span<const uint64_t> region_bytes);

  uint64_t image_bytes() const { return starts_.back(); }
  size_t regions() const { return starts_.size() - 1; }
  uint64_t region_start(size_t region) const { return starts_[region]; }

  // Replaces *out with the slices covering image bytes [offset, offset + bytes), in image order.
  // Requires offset + bytes <= image_bytes() (FT_CHECK). O(log regions + slices).
  void Slices(uint64_t offset, uint64_t bytes, std::vector<RegionSlice>* out) const;

 private:
  explicit ImageLayout(std::vector<uint64_t> starts) : starts_(std::move(starts)) {}
  std::vector<uint64_t> starts_;  // starts_[i] = image offset of region i; back() = image size
};

}  // namespace ft::erasure

#endif  // FT_ERASURE_GEOMETRY_H_
