#include "erasure/fragment.h"

#include <cstring>

#include "common/check.h"
#include "erasure/codec.h"

namespace ft::erasure {
namespace {

uint64_t ComputeHeaderCrc(std::span<const std::byte> area, const FragmentHeader& header) {
  FragmentHeader zeroed = header;
  zeroed.header_crc = 0;
  const uint64_t crc = Crc64(&zeroed, sizeof(zeroed));
  return Crc64(area.data() + sizeof(FragmentHeader), header.stripes * sizeof(uint64_t), crc);
}

}  // namespace

void SealHeader(std::span<std::byte> area) {
  FragmentHeader header;
  FT_CHECK(area.size() >= sizeof(header));
  std::memcpy(&header, area.data(), sizeof(header));
  FT_CHECK(area.size() >= HeaderAreaBytes(header.stripes));
  header.header_crc = ComputeHeaderCrc(area, header);
  std::memcpy(area.data(), &header, sizeof(header));
}

Status CheckHeader(std::span<const std::byte> area, const FragmentHeader& expected) {
  FragmentHeader header;
  if (area.size() < sizeof(header)) return Status::DataLoss("header area too short");
  std::memcpy(&header, area.data(), sizeof(header));
  if (header.magic != kFragmentMagic) {
    return Status::DataLoss("fragment ", expected.column, " of owner ", expected.owner,
                            ": no header (magic 0x", std::hex, header.magic, ")");
  }
  if (header.stripes != expected.stripes || area.size() < HeaderAreaBytes(header.stripes)) {
    return Status::DataLoss("fragment ", expected.column, " of owner ", expected.owner, ": ",
                            header.stripes, " stripes, expected ", expected.stripes);
  }
  if (header.header_crc != ComputeHeaderCrc(area, header)) {
    return Status::DataLoss("fragment ", expected.column, " of owner ", expected.owner,
                            ": header CRC mismatch (torn or overwritten header)");
  }
  if (header.version != expected.version) {
    return Status::DataLoss("fragment ", expected.column, " of owner ", expected.owner,
                            " holds version ", header.version, ", expected ", expected.version);
  }
  if (header.epoch != expected.epoch) {
    // Written by a process of another view (a zombie, or before a view change the reader does
    // not know of): not the fragment the reader's committed version describes.
    return Status::DataLoss("fragment ", expected.column, " of owner ", expected.owner,
                            " was written in epoch ", header.epoch, ", expected ", expected.epoch);
  }
  if (header.owner != expected.owner || header.column != expected.column ||
      header.k != expected.k || header.m != expected.m ||
      header.cell_bytes != expected.cell_bytes || header.image_bytes != expected.image_bytes) {
    return Status::DataLoss("fragment ", expected.column, " of owner ", expected.owner,
                            ": header describes owner ", header.owner, " column ", header.column,
                            " RS(", header.k, ",", header.m, ") cell ", header.cell_bytes,
                            " image ", header.image_bytes);
  }
  return Status();
}

Result<FragmentHeader> InspectHeader(std::span<const std::byte> area) {
  FragmentHeader header;
  if (area.size() < sizeof(header)) return Status::DataLoss("slot too short for a header");
  std::memcpy(&header, area.data(), sizeof(header));
  if (header.magic != kFragmentMagic) {
    return Status::DataLoss("no header (magic 0x", std::hex, header.magic, ")");
  }
  if (header.stripes > (area.size() - sizeof(header)) / sizeof(uint64_t)) {
    return Status::DataLoss("header claims ", header.stripes, " stripes, more than its slot holds");
  }
  if (header.header_crc != ComputeHeaderCrc(area, header)) {
    return Status::DataLoss("header CRC mismatch (torn or overwritten header)");
  }
  return header;
}

}  // namespace ft::erasure
