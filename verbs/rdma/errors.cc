// Verbs and rdmacm outcomes -> ours (see errors.h).
#include "verbs/rdma/errors.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace ft::verbs::rdma {

WcStatus WcStatusFromIbv(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS:
      return WcStatus::kSuccess;
    case IBV_WC_LOC_LEN_ERR:
      return WcStatus::kLocalLengthError;
    case IBV_WC_LOC_PROT_ERR:
      return WcStatus::kLocalProtectionError;
    case IBV_WC_REM_ACCESS_ERR:
      return WcStatus::kRemoteAccessError;
    case IBV_WC_REM_INV_REQ_ERR:
      return WcStatus::kRemoteInvalidRequest;
    case IBV_WC_RETRY_EXC_ERR:
      return WcStatus::kRetryExceeded;
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return WcStatus::kRnrRetryExceeded;
    case IBV_WC_WR_FLUSH_ERR:
      return WcStatus::kFlushed;
    default:
      return WcStatus::kFatal;
  }
}

WcStatus WcStatusFromIbv(ibv_wc_status status, WcDialect dialect, const WcContext& context) {
  if (dialect == WcDialect::kSoftRoce) {
    if (status == IBV_WC_LOC_QP_OP_ERR) {
      if (!context.receive) return WcStatus::kLocalProtectionError;
      return context.receive_buffer_registered ? WcStatus::kLocalLengthError
                                               : WcStatus::kLocalProtectionError;
    }
    if (status == IBV_WC_REM_OP_ERR && !context.receive && context.opcode == Opcode::kSend) {
      return WcStatus::kRemoteInvalidRequest;
    }
  }
  return WcStatusFromIbv(status);
}

Status ErrnoStatus(int error, std::string_view what) {
  const std::string text = StrCat(what, ": ", std::strerror(error), " (errno ", error, ")");
  switch (error) {
    case ENOMEM:
    case ENOSPC:
      return Status::ResourceExhausted(text);
    case EINVAL:
    case EOPNOTSUPP:
      return Status::InvalidArgument(text);
    case ENODEV:
    case ENOENT:
    case ENXIO:
      return Status::NotFound(text);
    case EPERM:
    case EACCES:
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case EBUSY:
      return Status::FailedPrecondition(text);
    case ETIMEDOUT:
      return Status::DeadlineExceeded(text);
    case ECONNREFUSED:
    case ECONNRESET:
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
      return Status::Unavailable(text);
    default:
      return Status::Internal(text);
  }
}

std::string RejectReasonText(int reason) {
  // IB CM REJ reasons (IBTA vol. 1, table 112), as the kernel's ib_cm_rej_reason.
  switch (reason) {
    case 1:
      return "no QP available";
    case 3:
      return "no resources";
    case 4:
      return "timeout";
    case 5:
      return "unsupported request";
    case 6:
      return "invalid communication id";
    case 7:
      return "invalid communication instance";
    case kRejectNoListener:
      return "no listener at that address";
    case 9:
      return "invalid transport type";
    case 10:
      return "stale connection";
    case 12:
      return "invalid GID";
    case 26:
      return "invalid MTU";
    case 27:
      return "insufficient responder resources";
    case kRejectConsumer:
      return "rejected by the peer";
    case 29:
      return "invalid RNR retry";
    case 30:
      return "duplicate local communication id";
    default:
      return StrCat("reject reason ", reason);
  }
}

std::string CmFailureText(rdma_cm_event_type type, int status) {
  const auto errno_text = [&] {
    const int error = status < 0 ? -status : status;
    return error == 0 ? std::string("no status") : StrCat(std::strerror(error), " (", error, ")");
  };
  switch (type) {
    case RDMA_CM_EVENT_ADDR_ERROR:
      return StrCat("address resolution failed: ", errno_text());
    case RDMA_CM_EVENT_ROUTE_ERROR:
      return StrCat("route resolution failed: ", errno_text());
    case RDMA_CM_EVENT_UNREACHABLE:
      return StrCat("unreachable (the connection request got no answer): ", errno_text());
    case RDMA_CM_EVENT_CONNECT_ERROR:
      return StrCat("connection error: ", errno_text());
    case RDMA_CM_EVENT_REJECTED:
      return StrCat("rejected: ", RejectReasonText(status));
    case RDMA_CM_EVENT_DISCONNECTED:
      return "disconnected while connecting";
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      return "the RDMA device was removed";
    default:
      return StrCat(rdma_event_str(type), " (status ", status, ")");
  }
}

Status CmFailureStatus(rdma_cm_event_type type, int status, std::string_view context) {
  const std::string text = StrCat(context, ": ", CmFailureText(type, status));
  if (type == RDMA_CM_EVENT_DEVICE_REMOVAL) return Status::FailedPrecondition(text);
  return Status::Unavailable(text);
}

std::optional<EventType> EventFromCm(rdma_cm_event_type type) {
  switch (type) {
    case RDMA_CM_EVENT_DISCONNECTED:
      return EventType::kDisconnected;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      return EventType::kDeviceError;
    default:
      return std::nullopt;
  }
}

std::optional<EventType> EventFromAsync(ibv_event_type type) {
  switch (type) {
    case IBV_EVENT_QP_FATAL:
    case IBV_EVENT_QP_REQ_ERR:
    case IBV_EVENT_QP_ACCESS_ERR:
      return EventType::kQpError;
    case IBV_EVENT_CQ_ERR:
    case IBV_EVENT_DEVICE_FATAL:
    case IBV_EVENT_PORT_ERR:
      return EventType::kDeviceError;
    default:
      return std::nullopt;
  }
}

std::string MemlockAdvice(size_t bytes) {
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "RLIMIT_MEMLOCK could not be read";
  if (limit.rlim_cur == RLIM_INFINITY) {
    return "RLIMIT_MEMLOCK is unlimited (ulimit -l unlimited), so memlock is not the cause";
  }
  constexpr size_t kKiB = 1024;
  const size_t need_kib = (bytes + kKiB - 1) / kKiB;
  return StrCat("RLIMIT_MEMLOCK is ", limit.rlim_cur / kKiB, " KiB (ulimit -l ",
                limit.rlim_cur / kKiB,
                ") and registered memory is pinned against it: raise it to at least ", need_kib,
                " KiB (`ulimit -l ", need_kib,
                "` or `ulimit -l unlimited`; memlock in /etc/security/limits.conf or "
                "LimitMEMLOCK= for services; containers need --ulimit memlock=-1)");
}

Status CqGrowthFailure(int error, int64_t needed, int current, int max_cqe) {
  const std::string what =
      StrCat("the completion queue needs ", needed, " entries for one more queue pair (it has ",
             current, ", the device allows ", max_cqe, ")");
  if (error == 0) {
    return Status::ResourceExhausted(
        what,
        ": beyond the device's max_cqe; use fewer queue pairs or smaller queues "
        "(RdmaOptions max_send_wr / max_recv_wr)");
  }
  if (error == EOPNOTSUPP || error == ENOSYS) {
    return Status::ResourceExhausted(
        what, ": the device cannot resize a CQ (ibv_resize_cq: ", std::strerror(error), ", errno ",
        error, "); create the Fabric with RdmaOptions::cq_depth >= ", needed);
  }
  return Status::ResourceExhausted(what, ": ibv_resize_cq failed: ", std::strerror(error),
                                   " (errno ", error, ")");
}

Status RegistrationFailure(int error, size_t bytes, size_t registered) {
  const std::string what =
      StrCat("ibv_reg_mr of ", bytes, " bytes (", registered, " bytes already registered)");
  if (error == ENOMEM || error == EPERM || error == EAGAIN) {
    return Status::ResourceExhausted(what, " failed: ", std::strerror(error), " (errno ", error,
                                     "). ", MemlockAdvice(bytes + registered));
  }
  return ErrnoStatus(error, what);
}

}  // namespace ft::verbs::rdma
