#include "erasure/geometry.h"

#include <algorithm>
#include <limits>

#include "common/check.h"
#include "erasure/codec.h"

namespace ft::erasure {

StripeGeometry::StripeGeometry(uint64_t image_bytes, uint64_t cell_bytes, int k, int m)
    : image_bytes_(image_bytes),
      cell_bytes_(cell_bytes),
      k_(k),
      m_(m),
      stripes_((image_bytes + cell_bytes * k - 1) / (cell_bytes * k)) {}

Result<StripeGeometry> StripeGeometry::Create(uint64_t image_bytes, uint64_t cell_bytes, int k,
                                              int m) {
  if (k < 1) return Status::InvalidArgument("k = ", k, ": need at least one data cell per stripe");
  if (m < 1)
    return Status::InvalidArgument("m = ", m, ": need at least one parity cell per stripe");
  if (k > kMaxCells - m) {  // not k + m > kMaxCells: that overflows int for huge k or m
    return Status::InvalidArgument("k + m = ", int64_t{k} + m, " exceeds the limit of ", kMaxCells);
  }
  if (image_bytes == 0) return Status::InvalidArgument("image_bytes = 0: nothing to protect");
  if (cell_bytes == 0) return Status::InvalidArgument("cell_bytes = 0: cells must hold bytes");
  // Keep every product below 2^64: stripe bytes and the padded image must be representable.
  constexpr uint64_t kLimit = std::numeric_limits<uint64_t>::max() / 2;
  if (cell_bytes > kLimit / static_cast<uint64_t>(k + m) || image_bytes > kLimit / 2) {
    return Status::InvalidArgument("image_bytes = ", image_bytes, " with cell_bytes = ", cell_bytes,
                                   " overflows 64-bit offsets");
  }
  return StripeGeometry(image_bytes, cell_bytes, k, m);
}

CellExtent StripeGeometry::DataCell(uint64_t stripe, int column) const {
  FT_CHECK(stripe < stripes_);
  FT_CHECK(column >= 0 && column < k_);
  CellExtent extent;
  extent.image_offset = (stripe * k_ + static_cast<uint64_t>(column)) * cell_bytes_;
  if (extent.image_offset < image_bytes_) {
    extent.image_bytes = std::min(cell_bytes_, image_bytes_ - extent.image_offset);
  }
  extent.padding_bytes = cell_bytes_ - extent.image_bytes;
  return extent;
}

Result<ImageLayout> ImageLayout::Create(std::span<const uint64_t> region_bytes) {
  if (region_bytes.empty()) return Status::InvalidArgument("an image needs at least one region");
  std::vector<uint64_t> starts;
  starts.reserve(region_bytes.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < region_bytes.size(); ++i) {
    if (region_bytes[i] == 0) {
      return Status::InvalidArgument("region ", i, " has 0 bytes");
    }
    if (region_bytes[i] > std::numeric_limits<uint64_t>::max() / 4 - total) {
      return Status::InvalidArgument("region ", i, " of ", region_bytes[i],
                                     " bytes overflows the image size");
    }
    starts.push_back(total);
    total += region_bytes[i];
  }
  starts.push_back(total);
  return ImageLayout(std::move(starts));
}

void ImageLayout::Slices(uint64_t offset, uint64_t bytes, std::vector<RegionSlice>* out) const {
  out->clear();
  FT_CHECK(offset <= image_bytes() && bytes <= image_bytes() - offset);
  if (bytes == 0) return;
  // The region holding `offset`: the last start <= offset.
  auto it = std::upper_bound(starts_.begin(), starts_.end() - 1, offset);
  size_t region = static_cast<size_t>(it - starts_.begin()) - 1;
  uint64_t position = offset;
  const uint64_t end = offset + bytes;
  while (position < end) {
    const uint64_t region_end = starts_[region + 1];
    const uint64_t take = std::min(end, region_end) - position;
    out->push_back(RegionSlice{region, position - starts_[region], take});
    position += take;
    ++region;
  }
}

}  // namespace ft::erasure
