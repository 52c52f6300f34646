#include "recovery/protocol.h"

#include <algorithm>
#include <cstring>
#include <type_traits>

namespace ft::recovery {
namespace {

class Writer {
 public:
  explicit Writer(std::span<std::byte> out) : out_(out) {}
  template <typename T>
  void Put(T value) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (overflow_ || out_.size() - used_ < sizeof(T)) {
      overflow_ = true;
      return;
    }
    std::memcpy(out_.data() + used_, &value, sizeof(T));
    used_ += sizeof(T);
  }
  void PutBytes(const void* data, size_t bytes) {
    if (bytes == 0) return;  // data may be null (an empty vector's)
    if (overflow_ || out_.size() - used_ < bytes) {
      overflow_ = true;
      return;
    }
    std::memcpy(out_.data() + used_, data, bytes);
    used_ += bytes;
  }
  bool overflow() const { return overflow_; }
  size_t used() const { return used_; }

 private:
  std::span<std::byte> out_;
  size_t used_ = 0;
  bool overflow_ = false;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> in) : in_(in) {}
  template <typename T>
  bool Get(T* value) {
    if (in_.size() - used_ < sizeof(T)) return false;
    std::memcpy(value, in_.data() + used_, sizeof(T));
    used_ += sizeof(T);
    return true;
  }
  bool GetBytes(void* data, size_t bytes) {
    if (bytes == 0) return true;  // data may be null (an empty vector's)
    if (in_.size() - used_ < bytes) return false;
    std::memcpy(data, in_.data() + used_, bytes);
    used_ += bytes;
    return true;
  }
  size_t remaining() const { return in_.size() - used_; }

 private:
  std::span<const std::byte> in_;
  size_t used_ = 0;
};

void PutHeader(Writer& w, MessageType type, uint64_t epoch) {
  w.Put(static_cast<uint8_t>(type));
  w.Put(uint8_t{0});
  w.Put(uint16_t{0});
  w.Put(uint32_t{0});
  w.Put(epoch);
}

void PutHolders(Writer& w, const std::vector<HolderAddress>& holders) {
  for (const HolderAddress& holder : holders) {
    w.Put(holder.slot.holder);
    w.Put(holder.store_rkey);
    w.Put(holder.slot.store_offset);
    w.Put(holder.store_addr);
  }
}

// What a GO and a RESTORE end with: the three counts, then the holders, the hosted owners and
// the partners' endpoints.
void PutPartners(Writer& w, const std::vector<HolderAddress>& holders,
                 const std::vector<NodeId>& hosted_owners,
                 const std::vector<PeerEndpoint>& endpoints) {
  w.Put(static_cast<uint32_t>(holders.size()));
  w.Put(static_cast<uint32_t>(hosted_owners.size()));
  w.Put(static_cast<uint32_t>(endpoints.size()));
  PutHolders(w, holders);
  for (NodeId owner : hosted_owners) w.Put(owner);
  for (const PeerEndpoint& endpoint : endpoints) {
    w.Put(endpoint.node);
    w.Put(static_cast<uint8_t>(endpoint.bytes.size()));
    w.PutBytes(endpoint.bytes.data(), endpoint.bytes.size());
  }
}

void Write(Writer& w, const PrepareMessage& m) {
  PutHeader(w, MessageType::kPrepare, m.epoch);
  w.Put(m.node);
  w.Put(m.domain);
  w.Put(m.image_bytes);
  w.Put(m.footprint_bytes);
  w.Put(m.capacity_bytes);
  w.Put(m.store_addr);
  w.Put(m.store_rkey);
  w.Put(static_cast<uint32_t>(m.store_sized_by_coordinator));
  w.Put(m.layout_regions);
  w.Put(m.layout_digest);
}

void Write(Writer& w, const GrowMessage& m) {
  PutHeader(w, MessageType::kGrow, m.epoch);
  w.Put(m.store_bytes);
}

void Write(Writer& w, const GoMessage& m) {
  PutHeader(w, MessageType::kGo, m.epoch);
  w.Put(m.version);
  w.Put(m.placement_id);
  w.Put(m.slot_bytes);
  w.Put(static_cast<uint32_t>(m.has_placement));
  PutPartners(w, m.holders, m.hosted_owners, m.endpoints);
}

void Write(Writer& w, const DoneMessage& m) {
  PutHeader(w, MessageType::kDone, m.epoch);
  w.Put(m.version);
  w.Put(m.node);
  w.Put(static_cast<int32_t>(m.code));
  w.Put(m.failed_peer);
}

void Write(Writer& w, const CommitMessage& m) {
  PutHeader(w, MessageType::kCommit, m.epoch);
  w.Put(m.version);
}

void Write(Writer& w, const AbortMessage& m) {
  PutHeader(w, MessageType::kAbort, m.epoch);
  w.Put(m.version);
  w.Put(m.failed_node);
  w.Put(static_cast<int32_t>(m.code));
  const size_t reason_bytes = std::min(m.reason.size(), kMaxReasonBytes);
  w.Put(static_cast<uint32_t>(reason_bytes));
  w.PutBytes(m.reason.data(), reason_bytes);
}

void Write(Writer& w, const BeatTargetMessage& m) {
  PutHeader(w, MessageType::kBeatTarget, m.epoch);
  w.Put(m.node);
  w.Put(m.slot_rkey);
  w.Put(m.slot_addr);
}

void Write(Writer& w, const LostMessage& m) {
  PutHeader(w, MessageType::kLost, m.epoch);
  w.Put(m.node);
  const size_t reason_bytes = std::min(m.reason.size(), kMaxReasonBytes);
  w.Put(static_cast<uint32_t>(reason_bytes));
  w.PutBytes(m.reason.data(), reason_bytes);
}

void Write(Writer& w, const ViewMessage& m) {
  PutHeader(w, MessageType::kView, m.epoch);
  w.Put(m.version);
  w.Put(static_cast<uint32_t>(m.replaced.size()));
  w.Put(static_cast<uint32_t>(m.checks.size()));
  for (NodeId rank : m.replaced) w.Put(rank);
  for (const HostedCheck& check : m.checks) {
    w.Put(check.owner);
    w.Put(check.column);
    w.Put(check.store_offset);
    w.Put(check.slot_bytes);
  }
}

void Write(Writer& w, const ReportMessage& m) {
  PutHeader(w, MessageType::kReport, m.epoch);
  w.Put(m.version);
  w.Put(m.node);
  w.Put(static_cast<uint32_t>(m.intact.size()));
  for (size_t i = 0; i < m.intact.size(); i += 4) {
    uint8_t packed = 0;
    for (size_t j = i; j < std::min(i + 4, m.intact.size()); ++j) {
      packed |= static_cast<uint8_t>((m.intact[j] & 3) << (2 * (j - i)));
    }
    w.Put(packed);
  }
}

void Write(Writer& w, const RestoreMessage& m) {
  PutHeader(w, MessageType::kRestore, m.epoch);
  w.Put(m.version);
  w.Put(m.written_epoch);
  w.Put(m.image_bytes);
  w.Put(m.store_bytes);
  w.Put(m.slot_bytes);
  PutPartners(w, m.holders, m.hosted_owners, m.endpoints);
}

void Write(Writer& w, const RestoredMessage& m) {
  PutHeader(w, MessageType::kRestored, m.epoch);
  w.Put(m.version);
  w.Put(m.node);
  w.Put(static_cast<int32_t>(m.code));
  w.Put(m.store_addr);
  w.Put(m.store_rkey);
}

void Write(Writer& w, const ReprotectMessage& m) {
  PutHeader(w, MessageType::kReprotect, m.epoch);
  w.Put(m.version);
  w.Put(m.written_epoch);
  w.Put(m.columns);
  w.Put(static_cast<uint32_t>(m.holders.size()));
  PutHolders(w, m.holders);
}

void Write(Writer& w, const AssignMessage& m) {
  PutHeader(w, MessageType::kAssign, m.epoch);
  w.Put(m.rank);
}

void Write(Writer& w, const StoreHintMessage& m) {
  PutHeader(w, MessageType::kStoreHint, m.epoch);
  w.Put(m.store_bytes);
}

void Write(Writer& w, const LayoutRequestMessage& m) {
  PutHeader(w, MessageType::kLayoutRequest, m.epoch);
  w.Put(m.node);
  w.Put(m.first);
  w.Put(m.digest);
}

void Write(Writer& w, const LayoutMessage& m) {
  PutHeader(w, MessageType::kLayout, m.epoch);
  w.Put(m.node);
  w.Put(m.total);
  w.Put(m.first);
  w.Put(static_cast<uint32_t>(m.regions.size()));
  w.Put(m.digest);
  for (const LayoutRegion& region : m.regions) {
    w.Put(region.id);
    w.Put(region.bytes);
  }
}

bool ValidCode(int32_t code) {
  return code >= static_cast<int32_t>(StatusCode::kOk) &&
         code <= static_cast<int32_t>(StatusCode::kInternal);
}

Status Truncated(const char* what) {
  return Status::InvalidArgument("control message ", what, " is truncated or malformed");
}

bool GetHolders(Reader& r, uint32_t count, std::vector<HolderAddress>* holders) {
  if (count > static_cast<uint32_t>(kMaxStripeWidth) ||
      static_cast<size_t>(count) * 24 > r.remaining()) {
    return false;
  }
  holders->resize(count);
  for (HolderAddress& holder : *holders) {
    if (!r.Get(&holder.slot.holder) || !r.Get(&holder.store_rkey) ||
        !r.Get(&holder.slot.store_offset) || !r.Get(&holder.store_addr)) {
      return false;
    }
  }
  return true;
}

bool GetNodes(Reader& r, uint32_t count, std::vector<NodeId>* nodes) {
  if (static_cast<size_t>(count) * 4 > r.remaining()) return false;
  nodes->resize(count);
  for (NodeId& node : *nodes) {
    if (!r.Get(&node)) return false;
  }
  return true;
}

bool GetEndpoints(Reader& r, uint32_t count, std::vector<PeerEndpoint>* endpoints) {
  if (static_cast<size_t>(count) * 5 > r.remaining()) return false;
  endpoints->resize(count);
  for (PeerEndpoint& endpoint : *endpoints) {
    uint8_t length = 0;
    if (!r.Get(&endpoint.node) || !r.Get(&length) || length > kMaxEndpointBytes) return false;
    endpoint.bytes.resize(length);
    if (!r.GetBytes(endpoint.bytes.data(), length)) return false;
  }
  return true;
}

// PutPartners' counterpart: the counts, then the lists, each checked against what is left.
bool GetPartners(Reader& r, std::vector<HolderAddress>* holders, std::vector<NodeId>* hosted_owners,
                 std::vector<PeerEndpoint>* endpoints) {
  uint32_t holder_count = 0, hosted_count = 0, endpoint_count = 0;
  return r.Get(&holder_count) && r.Get(&hosted_count) && r.Get(&endpoint_count) &&
         GetHolders(r, holder_count, holders) && GetNodes(r, hosted_count, hosted_owners) &&
         GetEndpoints(r, endpoint_count, endpoints);
}

Result<Message> DecodeRecoveryMessage(MessageType type, uint64_t epoch, Reader& r) {
  switch (type) {
    case MessageType::kView: {
      ViewMessage m;
      m.epoch = epoch;
      uint32_t replaced = 0, checks = 0;
      if (!r.Get(&m.version) || !r.Get(&replaced) || !r.Get(&checks) || checks > kMaxHostedChecks ||
          !GetNodes(r, replaced, &m.replaced) || static_cast<size_t>(checks) * 24 > r.remaining()) {
        return Truncated("VIEW");
      }
      m.checks.resize(checks);
      for (HostedCheck& check : m.checks) {
        if (!r.Get(&check.owner) || !r.Get(&check.column) || !r.Get(&check.store_offset) ||
            !r.Get(&check.slot_bytes) || check.column >= static_cast<uint32_t>(kMaxStripeWidth)) {
          return Truncated("VIEW");
        }
      }
      return Message(std::move(m));
    }
    case MessageType::kReport: {
      ReportMessage m;
      m.epoch = epoch;
      uint32_t count = 0;
      if (!r.Get(&m.version) || !r.Get(&m.node) || !r.Get(&count) || count > kMaxReportedChecks ||
          (static_cast<size_t>(count) + 3) / 4 > r.remaining()) {
        return Truncated("REPORT");
      }
      m.intact.resize(count);
      for (size_t i = 0; i < count; i += 4) {
        uint8_t packed = 0;
        if (!r.Get(&packed)) return Truncated("REPORT");
        for (size_t j = i; j < std::min<size_t>(i + 4, count); ++j) {
          m.intact[j] = static_cast<uint8_t>((packed >> (2 * (j - i))) & 3);
        }
      }
      return Message(std::move(m));
    }
    case MessageType::kRestore: {
      RestoreMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.version) || !r.Get(&m.written_epoch) || !r.Get(&m.image_bytes) ||
          !r.Get(&m.store_bytes) || !r.Get(&m.slot_bytes) ||
          !GetPartners(r, &m.holders, &m.hosted_owners, &m.endpoints)) {
        return Truncated("RESTORE");
      }
      return Message(std::move(m));
    }
    case MessageType::kRestored: {
      RestoredMessage m;
      m.epoch = epoch;
      int32_t code = 0;
      if (!r.Get(&m.version) || !r.Get(&m.node) || !r.Get(&code) || !ValidCode(code) ||
          !r.Get(&m.store_addr) || !r.Get(&m.store_rkey)) {
        return Truncated("RESTORED");
      }
      m.code = static_cast<StatusCode>(code);
      return Message(m);
    }
    case MessageType::kReprotect: {
      ReprotectMessage m;
      m.epoch = epoch;
      uint32_t holders = 0;
      if (!r.Get(&m.version) || !r.Get(&m.written_epoch) || !r.Get(&m.columns) ||
          !r.Get(&holders) || !GetHolders(r, holders, &m.holders)) {
        return Truncated("REPROTECT");
      }
      return Message(std::move(m));
    }
    case MessageType::kAssign: {
      AssignMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.rank)) return Truncated("ASSIGN");
      return Message(m);
    }
    case MessageType::kStoreHint: {
      StoreHintMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.store_bytes) || m.store_bytes == 0) return Truncated("STORE_HINT");
      return Message(m);
    }
    case MessageType::kLayoutRequest: {
      LayoutRequestMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.node) || !r.Get(&m.first) || !r.Get(&m.digest) ||
          m.first >= kMaxLayoutRegions) {
        return Truncated("LAYOUT_REQUEST");
      }
      return Message(m);
    }
    case MessageType::kLayout: {
      LayoutMessage m;
      m.epoch = epoch;
      uint32_t count = 0;
      if (!r.Get(&m.node) || !r.Get(&m.total) || !r.Get(&m.first) || !r.Get(&count) ||
          !r.Get(&m.digest) || m.total > kMaxLayoutRegions || m.first > m.total ||
          count > m.total - m.first || static_cast<size_t>(count) * 16 != r.remaining()) {
        return Truncated("LAYOUT");
      }
      m.regions.resize(count);
      for (LayoutRegion& region : m.regions) {
        if (!r.Get(&region.id) || !r.Get(&region.bytes) || region.bytes == 0) {
          return Truncated("LAYOUT");
        }
      }
      return Message(std::move(m));
    }
    default:
      break;
  }
  return Status::InvalidArgument("control message type ", static_cast<int>(type), " is unknown");
}

}  // namespace

LayoutMessage LayoutChunk(uint64_t epoch, NodeId node, uint64_t digest,
                          std::span<const LayoutRegion> regions, uint32_t first,
                          size_t max_regions) {
  const std::span<const LayoutRegion> rest = regions.subspan(first);
  const std::span<const LayoutRegion> chunk = rest.first(std::min(rest.size(), max_regions));
  return LayoutMessage{epoch,  node,
                       digest, static_cast<uint32_t>(regions.size()),
                       first,  std::vector<LayoutRegion>(chunk.begin(), chunk.end())};
}

Result<size_t> EncodeMessage(const Message& message, std::span<std::byte> out) {
  const std::vector<PeerEndpoint>* endpoints = nullptr;
  if (const auto* go = std::get_if<GoMessage>(&message)) endpoints = &go->endpoints;
  if (const auto* restore = std::get_if<RestoreMessage>(&message)) endpoints = &restore->endpoints;
  if (endpoints != nullptr) {
    for (const PeerEndpoint& endpoint : *endpoints) {
      if (endpoint.bytes.size() > kMaxEndpointBytes) {
        return Status::InvalidArgument("node ", endpoint.node, "'s endpoint has ",
                                       endpoint.bytes.size(), " bytes, more than ",
                                       kMaxEndpointBytes);
      }
    }
  }
  Writer writer(out);
  std::visit([&](const auto& m) { Write(writer, m); }, message);
  if (writer.overflow()) {
    return Status::ResourceExhausted("control message does not fit in ", out.size(), " bytes");
  }
  return writer.used();
}

Result<Message> DecodeMessage(std::span<const std::byte> in) {
  Reader r(in);
  uint8_t type = 0, pad8 = 0;
  uint16_t pad16 = 0;
  uint32_t pad32 = 0;
  uint64_t epoch = 0;
  if (!r.Get(&type) || !r.Get(&pad8) || !r.Get(&pad16) || !r.Get(&pad32) || !r.Get(&epoch)) {
    return Truncated("header");
  }
  switch (static_cast<MessageType>(type)) {
    case MessageType::kPrepare: {
      PrepareMessage m;
      m.epoch = epoch;
      uint32_t sized = 0;
      if (!r.Get(&m.node) || !r.Get(&m.domain) || !r.Get(&m.image_bytes) ||
          !r.Get(&m.footprint_bytes) || !r.Get(&m.capacity_bytes) || !r.Get(&m.store_addr) ||
          !r.Get(&m.store_rkey) || !r.Get(&sized) || sized > 1 || !r.Get(&m.layout_regions) ||
          !r.Get(&m.layout_digest) || m.layout_regions > kMaxLayoutRegions) {
        return Truncated("PREPARE");
      }
      m.store_sized_by_coordinator = sized != 0;
      return Message(m);
    }
    case MessageType::kGrow: {
      GrowMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.store_bytes) || m.store_bytes == 0) return Truncated("GROW");
      return Message(m);
    }
    case MessageType::kGo: {
      GoMessage m;
      m.epoch = epoch;
      uint32_t has_placement = 0;
      if (!r.Get(&m.version) || !r.Get(&m.placement_id) || !r.Get(&m.slot_bytes) ||
          !r.Get(&has_placement) || has_placement > 1 ||
          !GetPartners(r, &m.holders, &m.hosted_owners, &m.endpoints) ||
          (has_placement == 1 && !m.holders.empty() && m.slot_bytes == 0)) {
        return Truncated("GO");
      }
      m.has_placement = has_placement != 0;
      return Message(std::move(m));
    }
    case MessageType::kDone: {
      DoneMessage m;
      m.epoch = epoch;
      int32_t code = 0;
      if (!r.Get(&m.version) || !r.Get(&m.node) || !r.Get(&code) || !r.Get(&m.failed_peer) ||
          !ValidCode(code)) {
        return Truncated("DONE");
      }
      m.code = static_cast<StatusCode>(code);
      return Message(m);
    }
    case MessageType::kCommit: {
      CommitMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.version)) return Truncated("COMMIT");
      return Message(m);
    }
    case MessageType::kAbort: {
      AbortMessage m;
      m.epoch = epoch;
      int32_t code = 0;
      uint32_t reason_bytes = 0;
      if (!r.Get(&m.version) || !r.Get(&m.failed_node) || !r.Get(&code) || !ValidCode(code) ||
          code == static_cast<int32_t>(StatusCode::kOk) || !r.Get(&reason_bytes) ||
          reason_bytes > kMaxReasonBytes || reason_bytes > r.remaining()) {
        return Truncated("ABORT");
      }
      m.code = static_cast<StatusCode>(code);
      m.reason.resize(reason_bytes);
      if (!r.GetBytes(m.reason.data(), reason_bytes)) return Truncated("ABORT");
      return Message(std::move(m));
    }
    case MessageType::kBeatTarget: {
      BeatTargetMessage m;
      m.epoch = epoch;
      if (!r.Get(&m.node) || !r.Get(&m.slot_rkey) || !r.Get(&m.slot_addr) || m.slot_addr == 0) {
        return Truncated("BEAT_TARGET");
      }
      return Message(m);
    }
    case MessageType::kLost: {
      LostMessage m;
      m.epoch = epoch;
      uint32_t reason_bytes = 0;
      if (!r.Get(&m.node) || !r.Get(&reason_bytes) || reason_bytes > kMaxReasonBytes ||
          reason_bytes > r.remaining()) {
        return Truncated("LOST");
      }
      m.reason.resize(reason_bytes);
      if (!r.GetBytes(m.reason.data(), reason_bytes)) return Truncated("LOST");
      return Message(std::move(m));
    }
    case MessageType::kView:
    case MessageType::kReport:
    case MessageType::kRestore:
    case MessageType::kRestored:
    case MessageType::kReprotect:
    case MessageType::kAssign:
    case MessageType::kLayoutRequest:
    case MessageType::kLayout:
    case MessageType::kStoreHint:
      return DecodeRecoveryMessage(static_cast<MessageType>(type), epoch, r);
  }
  return Status::InvalidArgument("control message type ", static_cast<int>(type), " is unknown");
}

}  // namespace ft::recovery
