// A node's device resources (core.h): the helpers every file shares, and Core::Open, which opens
// the device, listens, and makes the PD, the completion channel and the CQ, in creation order.
#include "verbs/rdma/core.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "common/log.h"
#include "verbs/rdma/queue.h"

namespace ft::verbs::rdma {

SteadyTime DeadlineAfter(Nanos timeout) {
  constexpr Nanos kLongest = std::chrono::hours(24 * 365);
  return std::chrono::steady_clock::now() + std::clamp(timeout, Nanos(0), kLongest);
}

int CeilMs(Nanos timeout, int floor) {
  const int64_t ms = (std::max<int64_t>(timeout.count(), 0) + 999'999) / 1'000'000;
  return static_cast<int>(std::clamp<int64_t>(ms, floor, INT_MAX));
}

int64_t ToMs(Nanos timeout) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
}

Status SetNonBlocking(int fd, const char* what) {
  const int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoStatus(errno, StrCat("fcntl(O_NONBLOCK) on the ", what));
  }
  return Status::Ok();
}

void WriteEventFd(int fd) {
  const uint64_t one = 1;
  // EAGAIN only when the counter is near overflow: the fd is readable then anyway.
  [[maybe_unused]] const ssize_t n = ::write(fd, &one, sizeof(one));
}

void DrainEventFd(int fd) {
  uint64_t value = 0;
  [[maybe_unused]] const ssize_t n = ::read(fd, &value, sizeof(value));
}

std::string JoinNodes(const std::vector<NodeId>& nodes) {
  std::string out;
  for (NodeId node : nodes) out += StrCat(out.empty() ? "" : ", ", node);
  return out;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += StrCat(out.empty() ? "" : ", ", name);
  return out;
}

Status Step(const RdmaOptions& options, int step, const char* what) {
  if (options.testing_fail_step == step) {
    return Status::Internal("injected failure at creation step ", step, " (", what, ")");
  }
  return Status::Ok();
}

Status Core::Open() {
  // 0: is there any device at all?
  FT_RETURN_IF_ERROR(Step(options, 0, "device list"));
  const std::vector<std::string> devices = DeviceNames();
  if (devices.empty() || (!options.device.empty() && std::find(devices.begin(), devices.end(),
                                                               options.device) == devices.end())) {
    // NotFound: "no RDMA device", or the device asked for with the list of those that exist.
    Result<ContextPtr> missing = OpenDevice(options.device);
    if (!missing.ok()) return missing.status();
  }

  // 1-3: the listening id, bound to our address; binding tells the device and port.
  FT_RETURN_IF_ERROR(Step(options, 1, "rdma_create_event_channel"));
  channel = Own<&rdma_destroy_event_channel>(rdma_create_event_channel());
  if (channel == nullptr) return ErrnoStatus(errno, "rdma_create_event_channel");
  FT_RETURN_IF_ERROR(Step(options, 2, "rdma_create_id"));
  rdma_cm_id* raw_id = nullptr;
  if (rdma_create_id(channel.get(), &raw_id, nullptr, RDMA_PS_TCP) != 0) {
    return ErrnoStatus(errno, "rdma_create_id (listen)");
  }
  listen_id = Own<&rdma_destroy_id>(raw_id);
  FT_RETURN_IF_ERROR(Step(options, 3, "rdma_bind_addr"));
  if (rdma_bind_addr(listen_id.get(), const_cast<sockaddr*>(listen.get())) != 0) {
    const int error = errno;
    if (error == EADDRINUSE) {
      return Status::FailedPrecondition("node ", node, ": listen address ", listen.text,
                                        " is in use (another Fabric or process listens there)");
    }
    if (error == EADDRNOTAVAIL || error == ENODEV) {
      return Status::FailedPrecondition("node ", node, ": listen address ", listen.text,
                                        " is not an address of an RDMA device on this host "
                                        "(RDMA devices: ",
                                        JoinNames(devices), ")");
    }
    return ErrnoStatus(error, StrCat("rdma_bind_addr(", listen.text, ")"));
  }
  if (const sockaddr* bound = rdma_get_local_addr(listen_id.get()); bound != nullptr) {
    // Port 0 asks the system for a free port: peers must be told the one it chose.
    const socklen_t length =
        bound->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    std::memcpy(&listen.storage, bound, length);
    listen.length = length;
    listen.text = FormatSocketAddress(bound);
  }
  if (listen_id->verbs == nullptr) {
    return Status::FailedPrecondition(
        "node ", node, ": listen address ", listen.text,
        " is not on an RDMA device's network interface (RoCE netdev or IPoIB); give the "
        "address of the interface rdma_rxe / the HCA is bound to");
  }
  const std::string device_name = ibv_get_device_name(listen_id->verbs->device);
  port = listen_id->port_num;
  if (!options.device.empty() && options.device != device_name) {
    return Status::FailedPrecondition("node ", node, ": listen address ", listen.text,
                                      " belongs to RDMA device ", device_name, ", not to ",
                                      options.device,
                                      " (FT_DEVICE / RdmaOptions::device): pick the address of "
                                      "that device's interface, or leave the device unset");
  }

  // 4-5: our own context on that device; its port and GID.
  FT_RETURN_IF_ERROR(Step(options, 4, "ibv_open_device"));
  FT_ASSIGN_OR_RETURN(context, OpenDevice(device_name));
  FT_RETURN_IF_ERROR(Step(options, 5, "ibv_query_device"));
  if (const int rc = ibv_query_device(context.get(), &device_attr); rc != 0) {
    return ErrnoStatus(rc, StrCat("ibv_query_device(", device_name, ")"));
  }
  if (const int rc = ibv_query_port(context.get(), port, &port_attr); rc != 0) {
    return ErrnoStatus(rc, StrCat("ibv_query_port(", device_name, ", ", int{port}, ")"));
  }
  if (port_attr.state != IBV_PORT_ACTIVE) {
    return Status::FailedPrecondition("port ", int{port}, " of RDMA device ", device_name,
                                      " is not active (", ibv_port_state_str(port_attr.state),
                                      "): bring its link up (`rdma link` / `ip link set <if> up`)");
  }
  if (device_attr.max_sge < kMaxSge) {
    return Status::FailedPrecondition("RDMA device ", device_name, " allows ", device_attr.max_sge,
                                      " SGEs per request; the Fabric needs kMaxSge = ", kMaxSge);
  }
  gid_forced = options.gid_index >= 0;
  FT_ASSIGN_OR_RETURN(gid,
                      ChooseGid(context.get(), port, port_attr, listen.get(), options.gid_index));
  responder_resources = static_cast<uint8_t>(std::clamp(device_attr.max_qp_rd_atom, 1, 16));
  if (device_attr.vendor_id == kSoftRoceVendorId) dialect = WcDialect::kSoftRoce;
  initiator_depth = static_cast<uint8_t>(std::clamp(device_attr.max_qp_init_rd_atom, 1, 16));

  // 6-8: PD, completion channel, CQ.
  FT_RETURN_IF_ERROR(Step(options, 6, "ibv_alloc_pd"));
  pd = Own<&ibv_dealloc_pd>(ibv_alloc_pd(context.get()));
  if (pd == nullptr) return ErrnoStatus(errno, StrCat("ibv_alloc_pd(", device_name, ")"));
  FT_RETURN_IF_ERROR(Step(options, 7, "ibv_create_comp_channel"));
  comp_channel = Own<&ibv_destroy_comp_channel>(ibv_create_comp_channel(context.get()));
  if (comp_channel == nullptr) return ErrnoStatus(errno, "ibv_create_comp_channel");
  FT_RETURN_IF_ERROR(SetNonBlocking(comp_channel->fd, "completion channel"));
  FT_RETURN_IF_ERROR(Step(options, 8, "ibv_create_cq"));
  const int cq_depth = std::min(options.cq_depth, device_attr.max_cqe);
  cq = Own<&ibv_destroy_cq>(
      ibv_create_cq(context.get(), cq_depth, nullptr, comp_channel.get(), /*comp_vector=*/0));
  if (cq == nullptr) {
    return ErrnoStatus(errno, StrCat("ibv_create_cq(", cq_depth, " entries)"));
  }

  // 9: a probe QP tells the inline size the device grants (halving what was asked until a QP
  // can be made).
  FT_RETURN_IF_ERROR(Step(options, 9, "probe ibv_create_qp"));
  const int max_send = std::min(options.max_send_wr, device_attr.max_qp_wr);
  const int max_recv = std::min(options.max_recv_wr, device_attr.max_qp_wr);
  uint32_t inline_bytes = options.max_inline_bytes;
  while (true) {
    ibv_qp_init_attr init{};
    init.send_cq = cq.get();
    init.recv_cq = cq.get();
    init.qp_type = IBV_QPT_RC;
    init.sq_sig_all = 0;
    init.cap.max_send_wr = static_cast<uint32_t>(max_send);
    init.cap.max_recv_wr = static_cast<uint32_t>(max_recv);
    init.cap.max_send_sge = kMaxSge;
    init.cap.max_recv_sge = 1;
    init.cap.max_inline_data = inline_bytes;
    QpPtr probe = Own<&ibv_destroy_qp>(ibv_create_qp(pd.get(), &init));
    if (probe != nullptr) break;
    const int error = errno;
    if (inline_bytes == 0) {
      return ErrnoStatus(error, StrCat("ibv_create_qp (RC, ", max_send, " send / ", max_recv,
                                       " receive requests, ", kMaxSge, " SGEs)"));
    }
    inline_bytes /= 2;
  }
  limits = Limits{
      .max_send_wr = max_send,
      .max_recv_wr = max_recv,
      .cq_depth = cq->cqe,
      .max_inline_bytes = inline_bytes,
      .max_message_bytes = std::min<uint32_t>(port_attr.max_msg_sz, 1u << 30),
      .max_private_data = kMaxUserPrivateData,
  };

  // 10-11: listen, and the wake-up eventfd.
  FT_RETURN_IF_ERROR(Step(options, 10, "rdma_listen"));
  if (rdma_listen(listen_id.get(), /*backlog=*/128) != 0) {
    return ErrnoStatus(errno, StrCat("rdma_listen(", listen.text, ")"));
  }
  FT_RETURN_IF_ERROR(Step(options, 11, "eventfd"));
  wake_fd = UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd.valid()) return ErrnoStatus(errno, "eventfd");
  FT_RETURN_IF_ERROR(SetNonBlocking(channel->fd, "rdma_cm event channel"));
  FT_RETURN_IF_ERROR(SetNonBlocking(context->async_fd, "async event fd"));

  info = RdmaDeviceInfo{
      .device = device_name,
      .port = port,
      .gid_index = gid.index,
      .gid_type = gid.type,
      .link_layer = LinkLayerName(port_attr.link_layer),
      .active_mtu = MtuBytes(port_attr.active_mtu),
      .listen = listen.text,
  };
  FT_LOG(kInfo) << "rdma: node " << node << " listens on " << listen.text << " (" << device_name
                << " port " << int{port} << ", gid " << gid.index << " " << gid.type << ", mtu "
                << info.active_mtu << ", " << info.link_layer << "); send/recv/cq "
                << limits.max_send_wr << "/" << limits.max_recv_wr << "/" << limits.cq_depth
                << ", inline " << limits.max_inline_bytes;
  return Status::Ok();
}

}  // namespace ft::verbs::rdma
