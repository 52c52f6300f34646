// RAII over the C handles of libibverbs and librdmacm: std::unique_ptr<T, Destroy<&fn>> with one
// stateless deleter per destroy function. Aggregates declare these members in creation order, so
// that destruction runs in the order verbs demands (QP before CQ, everything before the PD, the PD
// before the context, rdma_cm_ids before their event channel).
//
// Every handle made through Own<&fn>() is counted until its deleter runs (GetRdmaLiveHandles in
// rdma.h): tests prove with it that a constructor failing half way leaks nothing.
#ifndef FT_VERBS_RDMA_HANDLES_H_
#define FT_VERBS_RDMA_HANDLES_H_

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cerrno>
#include <memory>
#include <type_traits>
#include <utility>

namespace ft::verbs::rdma {

enum class HandleKind : int {
  kDeviceList,
  kEventChannel,
  kCmId,
  kContext,
  kPd,
  kCompChannel,
  kCq,
  kQp,
  kMr,
  kFd,
  kCount,
};

namespace internal {

void CountCreated(HandleKind kind);
void CountDestroyed(HandleKind kind);
int64_t LiveCount(HandleKind kind);
// Logs a destroy function's failure (nothing else can be done about it in a destructor).
void LogDestroyFailure(HandleKind kind, int error);

template <auto fn>
struct HandleTraits;
template <>
struct HandleTraits<&ibv_free_device_list> {
  static constexpr HandleKind kKind = HandleKind::kDeviceList;
};
template <>
struct HandleTraits<&rdma_destroy_event_channel> {
  static constexpr HandleKind kKind = HandleKind::kEventChannel;
};
template <>
struct HandleTraits<&rdma_destroy_id> {
  static constexpr HandleKind kKind = HandleKind::kCmId;
};
template <>
struct HandleTraits<&ibv_close_device> {
  static constexpr HandleKind kKind = HandleKind::kContext;
};
template <>
struct HandleTraits<&ibv_dealloc_pd> {
  static constexpr HandleKind kKind = HandleKind::kPd;
};
template <>
struct HandleTraits<&ibv_destroy_comp_channel> {
  static constexpr HandleKind kKind = HandleKind::kCompChannel;
};
template <>
struct HandleTraits<&ibv_destroy_cq> {
  static constexpr HandleKind kKind = HandleKind::kCq;
};
template <>
struct HandleTraits<&ibv_destroy_qp> {
  static constexpr HandleKind kKind = HandleKind::kQp;
};
template <>
struct HandleTraits<&ibv_dereg_mr> {
  static constexpr HandleKind kKind = HandleKind::kMr;
};

}  // namespace internal

// The deleter of a handle destroyed by `fn`. libibverbs' destroy functions return 0 or an errno
// value; librdmacm's return -1 and set errno.
template <auto fn>
struct Destroy {
  template <typename T>
  void operator()(T* handle) const {
    constexpr HandleKind kKind = internal::HandleTraits<fn>::kKind;
    if constexpr (std::is_void_v<std::invoke_result_t<decltype(fn), T*>>) {
      fn(handle);
    } else {
      const int rc = fn(handle);
      if (rc != 0) internal::LogDestroyFailure(kKind, rc > 0 ? rc : errno);
    }
    internal::CountDestroyed(kKind);
  }
};

using DeviceListPtr = std::unique_ptr<ibv_device*, Destroy<&ibv_free_device_list>>;
using EventChannelPtr = std::unique_ptr<rdma_event_channel, Destroy<&rdma_destroy_event_channel>>;
using CmIdPtr = std::unique_ptr<rdma_cm_id, Destroy<&rdma_destroy_id>>;
using ContextPtr = std::unique_ptr<ibv_context, Destroy<&ibv_close_device>>;
using PdPtr = std::unique_ptr<ibv_pd, Destroy<&ibv_dealloc_pd>>;
using CompChannelPtr = std::unique_ptr<ibv_comp_channel, Destroy<&ibv_destroy_comp_channel>>;
using CqPtr = std::unique_ptr<ibv_cq, Destroy<&ibv_destroy_cq>>;
using QpPtr = std::unique_ptr<ibv_qp, Destroy<&ibv_destroy_qp>>;
using MrPtr = std::unique_ptr<ibv_mr, Destroy<&ibv_dereg_mr>>;

// Takes ownership of a handle a C call returned (nullptr stays empty and is not counted).
template <auto fn, typename T>
std::unique_ptr<T, Destroy<fn>> Own(T* raw) {
  if (raw != nullptr) internal::CountCreated(internal::HandleTraits<fn>::kKind);
  return std::unique_ptr<T, Destroy<fn>>(raw);
}

// A file descriptor (eventfd), closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd);
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset();

 private:
  int fd_ = -1;
};

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_HANDLES_H_
