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
  w.Put(static_cast<uint32_t>(m.holders.size()));
  w.Put(static_cast<uint32_t>(m.hosted_owners.size()));
  w.Put(static_cast<uint32_t>(m.endpoints.size()));
  for (const HolderAddress& holder : m.holders) {
    w.Put(holder.slot.holder);
    w.Put(holder.store_rkey);
    w.Put(holder.slot.store_offset);
    w.Put(holder.store_addr);
  }
  for (NodeId owner : m.hosted_owners) w.Put(owner);
  for (const PeerEndpoint& endpoint : m.endpoints) {
    w.Put(endpoint.node);
    w.Put(static_cast<uint8_t>(endpoint.bytes.size()));
    w.PutBytes(endpoint.bytes.data(), endpoint.bytes.size());
  }
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

bool ValidCode(int32_t code) {
  return code >= static_cast<int32_t>(StatusCode::kOk) &&
         code <= static_cast<int32_t>(StatusCode::kInternal);
}

Status Truncated(const char* what) {
  return Status::InvalidArgument("control message ", what, " is truncated or malformed");
}

}  // namespace

Result<size_t> EncodeMessage(const Message& message, std::span<std::byte> out) {
  if (const auto* go = std::get_if<GoMessage>(&message)) {
    for (const PeerEndpoint& endpoint : go->endpoints) {
      if (endpoint.bytes.size() > kMaxEndpointBytes) {
        return Status::InvalidArgument("GO: node ", endpoint.node, "'s endpoint has ",
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
          !r.Get(&m.store_rkey) || !r.Get(&sized) || sized > 1) {
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
      uint32_t has_placement = 0, holders = 0, hosted = 0, endpoints = 0;
      if (!r.Get(&m.version) || !r.Get(&m.placement_id) || !r.Get(&m.slot_bytes) ||
          !r.Get(&has_placement) || !r.Get(&holders) || !r.Get(&hosted) || !r.Get(&endpoints) ||
          has_placement > 1 || (has_placement == 1 && holders > 0 && m.slot_bytes == 0)) {
        return Truncated("GO");
      }
      if (holders > static_cast<uint32_t>(kMaxStripeWidth) ||
          static_cast<size_t>(hosted) * 4 + static_cast<size_t>(holders) * 24 > r.remaining()) {
        return Truncated("GO");
      }
      m.has_placement = has_placement != 0;
      m.holders.resize(holders);
      for (HolderAddress& holder : m.holders) {
        if (!r.Get(&holder.slot.holder) || !r.Get(&holder.store_rkey) ||
            !r.Get(&holder.slot.store_offset) || !r.Get(&holder.store_addr)) {
          return Truncated("GO");
        }
      }
      m.hosted_owners.resize(hosted);
      for (NodeId& owner : m.hosted_owners) {
        if (!r.Get(&owner)) return Truncated("GO");
      }
      if (static_cast<size_t>(endpoints) * 5 > r.remaining()) return Truncated("GO");
      m.endpoints.resize(endpoints);
      for (PeerEndpoint& endpoint : m.endpoints) {
        uint8_t length = 0;
        if (!r.Get(&endpoint.node) || !r.Get(&length) || length > kMaxEndpointBytes) {
          return Truncated("GO");
        }
        endpoint.bytes.resize(length);
        if (!r.GetBytes(endpoint.bytes.data(), length)) return Truncated("GO");
      }
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
  }
  return Status::InvalidArgument("control message type ", static_cast<int>(type), " is unknown");
}

}  // namespace ft::recovery
