// Names of the Fabric enums, for logs, error messages and test output.
#include "verbs/fabric.h"

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

}  // namespace ft::verbs
