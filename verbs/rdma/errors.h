// The one place where verbs and rdmacm outcomes become ours: ibv_wc_status -> WcStatus, errno ->
// Status, rdma_cm events and ibv async events -> Status / EventType, and the memlock diagnosis of
// a failing ibv_reg_mr.
#ifndef FT_VERBS_RDMA_ERRORS_H_
#define FT_VERBS_RDMA_ERRORS_H_

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ftengine/status.h"
#include "verbs/fabric.h"

namespace ft::verbs::rdma {

// IBV_WC_* -> WcStatus (ibv_poll_cq.3):
//   SUCCESS -> kSuccess, LOC_LEN_ERR -> kLocalLengthError, LOC_PROT_ERR -> kLocalProtectionError,
//   REM_ACCESS_ERR -> kRemoteAccessError, REM_INV_REQ_ERR -> kRemoteInvalidRequest,
//   RETRY_EXC_ERR -> kRetryExceeded, RNR_RETRY_EXC_ERR -> kRnrRetryExceeded,
//   WR_FLUSH_ERR -> kFlushed, everything else (LOC_QP_OP_ERR, MW_BIND_ERR, BAD_RESP_ERR,
//   REM_OP_ERR, FATAL_ERR, GENERAL_ERR, ...) -> kFatal.
WcStatus WcStatusFromIbv(ibv_wc_status status);

// How a device words its errors. Soft-RoCE (rdma_rxe, vendor id 0xFFFFFF; seen on Linux 6.1)
// reports three spec-defined errors under other codes:
//   - a send request whose SGE names an unknown lkey: LOC_QP_OP_ERR (spec: LOC_PROT_ERR);
//   - a receive whose buffer is too small or has a bad lkey ("malformed WQE"): LOC_QP_OP_ERR at
//     the receiver (spec: LOC_LEN_ERR, resp. LOC_PROT_ERR) and REM_OP_ERR at the sender of the
//     SEND (spec: REM_INV_REQ_ERR).
// The kSoftRoce dialect maps them back; `receive_buffer_registered` (is the receive's SGE inside
// a registration of ours with local write?) tells a length error from a protection error.
enum class WcDialect : uint8_t { kSpec, kSoftRoce };
struct WcContext {
  bool receive = false;
  Opcode opcode = Opcode::kWrite;
  bool receive_buffer_registered = true;
};
WcStatus WcStatusFromIbv(ibv_wc_status status, WcDialect dialect, const WcContext& context);
inline constexpr uint32_t kSoftRoceVendorId = 0xFFFFFF;  // RXE_VENDOR_ID

// errno -> Status, "<what>: <strerror> (errno N)": ENOMEM/ENOSPC -> ResourceExhausted,
// EINVAL/EOPNOTSUPP -> InvalidArgument, ENODEV/ENOENT/ENXIO -> NotFound,
// EPERM/EACCES/EADDRINUSE/EADDRNOTAVAIL/EBUSY -> FailedPrecondition, ETIMEDOUT -> DeadlineExceeded,
// ECONNREFUSED/ECONNRESET/ENETUNREACH/EHOSTUNREACH/ENETDOWN/EHOSTDOWN -> Unavailable,
// others -> Internal.
Status ErrnoStatus(int error, std::string_view what);

// An IB CM reject reason (the status of RDMA_CM_EVENT_REJECTED) in words.
std::string RejectReasonText(int reason);
inline constexpr int kRejectNoListener = 8;  // IB_CM_REJ_INVALID_SERVICE_ID: nobody listens there
inline constexpr int kRejectConsumer = 28;   // IB_CM_REJ_CONSUMER_DEFINED: the peer rejected us

// What an rdma_cm event that ends a connection attempt means, for the Status that names the peer:
// "rejected (no listener)", "unreachable (the CM request timed out)", ...
std::string CmFailureText(rdma_cm_event_type type, int status);
// The Status of a connection attempt that ended with `type`: ADDR_ERROR, ROUTE_ERROR,
// UNREACHABLE, CONNECT_ERROR, REJECTED, DISCONNECTED -> Unavailable; DEVICE_REMOVAL ->
// FailedPrecondition.
Status CmFailureStatus(rdma_cm_event_type type, int status, std::string_view context);

// The Fabric event an rdma_cm event becomes once a QP is connected: DISCONNECTED ->
// kDisconnected, DEVICE_REMOVAL -> kDeviceError; nullopt for events that mean nothing then
// (TIMEWAIT_EXIT, ESTABLISHED, ADDR_CHANGE).
std::optional<EventType> EventFromCm(rdma_cm_event_type type);
// The Fabric event an ibv async event becomes: QP_FATAL, QP_REQ_ERR, QP_ACCESS_ERR -> kQpError;
// CQ_ERR, DEVICE_FATAL, PORT_ERR -> kDeviceError; nullopt for the rest (COMM_EST, PORT_ACTIVE,
// LID/PKEY/GID changes, SQ_DRAINED, LAST_WQE_REACHED, ...).
std::optional<EventType> EventFromAsync(ibv_event_type type);

// Why ibv_reg_mr of `bytes` failed with `error`, naming RLIMIT_MEMLOCK and the `ulimit -l` value
// (KiB) this registration needs on top of the `registered` bytes already pinned by the node.
Status RegistrationFailure(int error, size_t bytes, size_t registered);
// Why the CQ could not take one more QP: `needed` entries (the QPs so far and the new one, each
// max_send_wr + max_recv_wr) against a CQ of `current` and a device maximum of `max_cqe`.
// `error` is ibv_resize_cq's errno value (EOPNOTSUPP: the device cannot resize), or 0 when
// `needed` exceeds max_cqe. Always ResourceExhausted: whatever the cause, the Connect cannot
// proceed without risking an overrun, and fewer or smaller queue pairs would fit.
Status CqGrowthFailure(int error, int64_t needed, int current, int max_cqe);

// "ulimit -l <KiB>" needed to pin `bytes`; "unlimited" text when the limit is already infinite.
std::string MemlockAdvice(size_t bytes);

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_ERRORS_H_
