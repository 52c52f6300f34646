// Names of the Fabric enums, for logs, error messages and test output.
#include "verbs/fabric.h"

#include <unordered_set>

namespace ft::verbs {

const char* OpcodeName(Opcode opcode) {
  switch (opcode) {
    case Opcode::kWrite:
      return "WRITE";
    case Opcode::kRead:
      return "READ";
    case Opcode::kSend:
      return "SEND";
    case Opcode::kRecv:
      return "RECV";
  }
  return "UnknownOpcode";
}

const char* WcStatusName(WcStatus status) {
  switch (status) {
    case WcStatus::kSuccess:
      return "Success";
    case WcStatus::kLocalLengthError:
      return "LocalLengthError";
    case WcStatus::kLocalProtectionError:
      return "LocalProtectionError";
    case WcStatus::kRemoteAccessError:
      return "RemoteAccessError";
    case WcStatus::kRemoteInvalidRequest:
      return "RemoteInvalidRequest";
    case WcStatus::kRetryExceeded:
      return "RetryExceeded";
    case WcStatus::kRnrRetryExceeded:
      return "RnrRetryExceeded";
    case WcStatus::kFlushed:
      return "Flushed";
    case WcStatus::kFatal:
      return "Fatal";
  }
  return "UnknownWcStatus";
}

const char* EventTypeName(EventType type) {
  switch (type) {
    case EventType::kDisconnected:
      return "Disconnected";
    case EventType::kQpError:
      return "QpError";
    case EventType::kDeviceError:
      return "DeviceError";
  }
  return "UnknownEventType";
}

Status ValidateConnectRequests(NodeId self, std::span<const ConnectRequest> requests,
                               const Limits& limits) {
  std::unordered_set<NodeId> seen;
  for (const ConnectRequest& r : requests) {
    if (r.peer == self) {
      return Status::InvalidArgument("Connect: node ", self, " cannot connect to itself");
    }
    if (!seen.insert(r.peer).second) {
      return Status::InvalidArgument("Connect from node ", self, ": peer ", r.peer,
                                     " appears twice in one batch");
    }
    if (r.private_data.size() > limits.max_private_data) {
      return Status::InvalidArgument("Connect from node ", self, " to ", r.peer, ": ",
                                     r.private_data.size(), " bytes of private data exceed ",
                                     limits.max_private_data);
    }
    if (r.receives.size() > static_cast<size_t>(limits.max_recv_wr)) {
      return Status::InvalidArgument("Connect from node ", self, " to ", r.peer, ": ",
                                     r.receives.size(), " receives exceed max_recv_wr ",
                                     limits.max_recv_wr);
    }
  }
  return Status();
}

Status ValidateSendRequest(const SendRequest& r, size_t index, const Limits& limits,
                           uint64_t* bytes) {
  const auto where = [&] { return StrCat("PostSend request ", index, " (wr_id ", r.wr_id, "): "); };
  if (r.opcode != Opcode::kWrite && r.opcode != Opcode::kRead && r.opcode != Opcode::kSend) {
    return Status::InvalidArgument(where(), "opcode ", static_cast<int>(r.opcode),
                                   " is not WRITE, READ or SEND");
  }
  if (r.num_sge < 0 || r.num_sge > kMaxSge) {
    return Status::InvalidArgument(where(), "num_sge = ", r.num_sge, " is outside [0, ", kMaxSge,
                                   "]");
  }
  uint64_t total = 0;
  for (int i = 0; i < r.num_sge; ++i) total += r.sge[i].length;
  if (total > limits.max_message_bytes) {
    return Status::InvalidArgument(where(), "message of ", total,
                                   " bytes exceeds max_message_bytes ", limits.max_message_bytes);
  }
  if (r.inline_data) {
    if (r.opcode == Opcode::kRead) {
      return Status::InvalidArgument(where(), "a READ cannot be inline");
    }
    if (total > limits.max_inline_bytes) {
      return Status::InvalidArgument(where(), "inline payload of ", total,
                                     " bytes exceeds max_inline_bytes ", limits.max_inline_bytes);
    }
  }
  *bytes = total;
  return Status::Ok();
}

}  // namespace ft::verbs
