// The wire format of the coordinator's committed state (recovery/coordinator.h: EncodeState,
// DecodeState), for the standby coordinator that will receive it. Little-endian, like the
// control messages; every PREPARE is encoded as recovery/protocol encodes it, behind its length.
#include <cstring>

#include "recovery/coordinator.h"

namespace ft::recovery {
namespace {

constexpr uint32_t kStateMagic = 0x31535446;  // "FTS1"
constexpr size_t kStateFixedBytes = 4 + 4 + 8 + 8 + 8 + 8;

template <typename T>
void Append(std::vector<std::byte>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

template <typename T>
bool Take(std::span<const std::byte>& in, T* value) {
  if (in.size() < sizeof(T)) return false;
  std::memcpy(value, in.data(), sizeof(T));
  in = in.subspan(sizeof(T));
  return true;
}

}  // namespace

std::vector<std::byte> EncodeState(const CoordinatorState& state) {
  std::vector<std::byte> out;
  Append(out, kStateMagic);
  Append(out, static_cast<uint32_t>(state.prepares.size()));
  Append(out, state.epoch);
  Append(out, state.committed_version);
  Append(out, state.committed_epoch);
  Append(out, state.placement_id);
  std::byte message[kMaxUpstreamMessageBytes];
  for (const PrepareMessage& prepare : state.prepares) {
    Result<size_t> bytes = EncodeMessage(prepare, message);
    // A PREPARE always fits an upstream buffer (recovery/protocol_test checks the bound).
    const size_t length = bytes.ok() ? *bytes : 0;
    Append(out, static_cast<uint16_t>(length));
    out.insert(out.end(), message, message + length);
  }
  Append(out, static_cast<uint32_t>(state.layouts.size()));
  for (const RegionLayout& layout : state.layouts) {
    Append(out, layout.digest);
    Append(out, static_cast<uint32_t>(layout.regions.size()));
    for (const LayoutRegion& region : layout.regions) {
      Append(out, region.id);
      Append(out, region.bytes);
    }
  }
  return out;
}

Result<CoordinatorState> DecodeState(std::span<const std::byte> bytes) {
  CoordinatorState state;
  uint32_t magic = 0, count = 0;
  if (bytes.size() < kStateFixedBytes) {
    return Status::InvalidArgument("coordinator state of ", bytes.size(), " bytes: shorter than ",
                                   kStateFixedBytes);
  }
  std::span<const std::byte> in = bytes;
  (void)Take(in, &magic);
  (void)Take(in, &count);
  (void)Take(in, &state.epoch);
  (void)Take(in, &state.committed_version);
  (void)Take(in, &state.committed_epoch);
  (void)Take(in, &state.placement_id);
  if (magic != kStateMagic) {
    return Status::InvalidArgument("not a coordinator state (magic 0x", std::hex, magic, ")");
  }
  if (count > in.size() / 2) {
    return Status::InvalidArgument("coordinator state names ", count, " nodes in ", in.size(),
                                   " bytes");
  }
  for (uint32_t node = 0; node < count; ++node) {
    uint16_t length = 0;
    if (!Take(in, &length) || length > in.size()) {
      return Status::InvalidArgument("coordinator state truncated in node ", node);
    }
    FT_ASSIGN_OR_RETURN(Message message, DecodeMessage(in.first(length)));
    const auto* prepare = std::get_if<PrepareMessage>(&message);
    if (prepare == nullptr) {
      return Status::InvalidArgument("coordinator state: entry ", node, " is not a PREPARE");
    }
    state.prepares.push_back(*prepare);
    in = in.subspan(length);
  }
  uint32_t layouts = 0;
  if (!Take(in, &layouts) || (layouts != 0 && layouts != count)) {
    return Status::InvalidArgument("coordinator state: ", layouts, " region layouts for ", count,
                                   " nodes");
  }
  for (uint32_t node = 0; node < layouts; ++node) {
    RegionLayout layout;
    uint32_t regions = 0;
    if (!Take(in, &layout.digest) || !Take(in, &regions) || regions > kMaxLayoutRegions ||
        regions > in.size() / 16) {
      return Status::InvalidArgument("coordinator state: the region layout of node ", node,
                                     " is truncated or names too many regions");
    }
    layout.regions.resize(regions);
    for (LayoutRegion& region : layout.regions) {
      (void)Take(in, &region.id);
      (void)Take(in, &region.bytes);
      if (region.bytes == 0) {
        return Status::InvalidArgument("coordinator state: node ", node,
                                       " has a region of 0 bytes (id ", region.id, ")");
      }
    }
    state.layouts.push_back(std::move(layout));
  }
  if (!in.empty()) {
    return Status::InvalidArgument("coordinator state has ", in.size(), " bytes past its end");
  }
  return state;
}

}  // namespace ft::recovery
