// Handle counting and the fd wrapper (see handles.h).
#include "verbs/rdma/handles.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>

#include "common/log.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs::rdma {
namespace internal {
namespace {

constexpr size_t kKinds = static_cast<size_t>(HandleKind::kCount);

std::array<std::atomic<int64_t>, kKinds>& Counters() {
  static std::array<std::atomic<int64_t>, kKinds> counters{};
  return counters;
}

const char* KindName(HandleKind kind) {
  switch (kind) {
    case HandleKind::kDeviceList:
      return "ibv_device list";
    case HandleKind::kEventChannel:
      return "rdma_event_channel";
    case HandleKind::kCmId:
      return "rdma_cm_id";
    case HandleKind::kContext:
      return "ibv_context";
    case HandleKind::kPd:
      return "ibv_pd";
    case HandleKind::kCompChannel:
      return "ibv_comp_channel";
    case HandleKind::kCq:
      return "ibv_cq";
    case HandleKind::kQp:
      return "ibv_qp";
    case HandleKind::kMr:
      return "ibv_mr";
    case HandleKind::kFd:
      return "file descriptor";
    case HandleKind::kCount:
      break;
  }
  return "handle";
}

}  // namespace

void CountCreated(HandleKind kind) {
  Counters()[static_cast<size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
}

void CountDestroyed(HandleKind kind) {
  Counters()[static_cast<size_t>(kind)].fetch_sub(1, std::memory_order_relaxed);
}

int64_t LiveCount(HandleKind kind) {
  return Counters()[static_cast<size_t>(kind)].load(std::memory_order_relaxed);
}

void LogDestroyFailure(HandleKind kind, int error) {
  FT_LOG(kError) << "rdma: destroying an " << KindName(kind) << " failed: " << std::strerror(error)
                 << " (errno " << error << ")";
}

}  // namespace internal

UniqueFd::UniqueFd(int fd) : fd_(fd) {
  if (fd_ >= 0) internal::CountCreated(HandleKind::kFd);
}

void UniqueFd::Reset() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  internal::CountDestroyed(HandleKind::kFd);
}

}  // namespace ft::verbs::rdma

namespace ft::verbs {

RdmaLiveHandles GetRdmaLiveHandles() {
  using rdma::HandleKind;
  using rdma::internal::LiveCount;
  return RdmaLiveHandles{
      .event_channels = LiveCount(HandleKind::kEventChannel),
      .cm_ids = LiveCount(HandleKind::kCmId),
      .contexts = LiveCount(HandleKind::kContext),
      .pds = LiveCount(HandleKind::kPd),
      .comp_channels = LiveCount(HandleKind::kCompChannel),
      .cqs = LiveCount(HandleKind::kCq),
      .qps = LiveCount(HandleKind::kQp),
      .mrs = LiveCount(HandleKind::kMr),
      .fds = LiveCount(HandleKind::kFd),
      .device_lists = LiveCount(HandleKind::kDeviceList),
  };
}

std::string ToString(const RdmaLiveHandles& h) {
  return StrCat("event_channels=", h.event_channels, " cm_ids=", h.cm_ids, " contexts=", h.contexts,
                " pds=", h.pds, " comp_channels=", h.comp_channels, " cqs=", h.cqs, " qps=", h.qps,
                " mrs=", h.mrs, " fds=", h.fds, " device_lists=", h.device_lists);
}

}  // namespace ft::verbs
