// Device, port and GID selection (see device.h).
#include "verbs/rdma/device.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "verbs/rdma/errors.h"

namespace ft::verbs::rdma {
namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += StrCat(out.empty() ? "" : ", ", name);
  return out;
}

// The raw GID that holds an IP address: the address itself for IPv6, ::ffff:a.b.c.d for IPv4.
bool GidOfAddress(const sockaddr* address, ibv_gid* gid) {
  std::memset(gid, 0, sizeof(*gid));
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    gid->raw[10] = 0xff;
    gid->raw[11] = 0xff;
    std::memcpy(&gid->raw[12], &in->sin_addr, 4);
    return true;
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    std::memcpy(gid->raw, &in6->sin6_addr, 16);
    return true;
  }
  return false;
}

const char* GidTypeName(uint32_t type) {
  switch (type) {
    case IBV_GID_TYPE_IB:
      return "IB";
    case IBV_GID_TYPE_ROCE_V1:
      return "RoCE v1";
    case IBV_GID_TYPE_ROCE_V2:
      return "RoCE v2";
    default:
      return "unknown";
  }
}

}  // namespace

Result<SocketAddress> ParseHostPort(std::string_view host_port) {
  std::string host;
  std::string port;
  if (!host_port.empty() && host_port.front() == '[') {
    const size_t close = host_port.find(']');
    if (close == std::string_view::npos || close + 1 >= host_port.size() ||
        host_port[close + 1] != ':') {
      return Status::InvalidArgument("address '", host_port, "' is not [IPv6]:port");
    }
    host = std::string(host_port.substr(1, close - 1));
    port = std::string(host_port.substr(close + 2));
  } else {
    const size_t colon = host_port.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == host_port.size()) {
      return Status::InvalidArgument("address '", host_port, "' is not host:port");
    }
    host = std::string(host_port.substr(0, colon));
    port = std::string(host_port.substr(colon + 1));
  }
  int port_number = -1;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (ec != std::errc() || end != port.data() + port.size() || port_number < 0 ||
      port_number > 65535) {
    return Status::InvalidArgument("address '", host_port, "': port '", port,
                                   "' is not a number in [0, 65535]");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return Status::InvalidArgument("address '", host_port, "': host '", host,
                                   "' does not resolve: ", gai_strerror(rc));
  }
  SocketAddress out;
  std::memcpy(&out.storage, found->ai_addr, found->ai_addrlen);
  out.length = found->ai_addrlen;
  out.text = std::string(host_port);
  freeaddrinfo(found);
  return out;
}

std::string FormatSocketAddress(const sockaddr* address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    return StrCat(text, ":", ntohs(in->sin_port));
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    return StrCat("[", text, "]:", ntohs(in6->sin6_port));
  }
  return StrCat("(address family ", address->sa_family, ")");
}

std::string InterfaceOfAddress(const sockaddr* address) {
  ifaddrs* raw = nullptr;
  if (getifaddrs(&raw) != 0) return "";
  const std::unique_ptr<ifaddrs, decltype(&freeifaddrs)> list(raw, &freeifaddrs);
  for (const ifaddrs* entry = raw; entry != nullptr; entry = entry->ifa_next) {
    const sockaddr* own = entry->ifa_addr;
    if (own == nullptr || own->sa_family != address->sa_family) continue;
    const bool same =
        own->sa_family == AF_INET
            ? std::memcmp(&reinterpret_cast<const sockaddr_in*>(own)->sin_addr,
                          &reinterpret_cast<const sockaddr_in*>(address)->sin_addr,
                          sizeof(in_addr)) == 0
            : own->sa_family == AF_INET6 &&
                  std::memcmp(&reinterpret_cast<const sockaddr_in6*>(own)->sin6_addr,
                              &reinterpret_cast<const sockaddr_in6*>(address)->sin6_addr,
                              sizeof(in6_addr)) == 0;
    if (same) return entry->ifa_name;
  }
  return "";
}

std::vector<std::byte> EncodeEndpoint(const SocketAddress& address) {
  const sockaddr* sa = address.get();
  std::vector<std::byte> out(4);
  uint16_t port_be = 0;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    out[0] = std::byte{4};
    port_be = in->sin_port;
    out.resize(8);
    std::memcpy(out.data() + 4, &in->sin_addr, 4);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    out[0] = std::byte{6};
    port_be = in6->sin6_port;
    out.resize(20);
    std::memcpy(out.data() + 4, &in6->sin6_addr, 16);
  } else {
    return {};
  }
  std::memcpy(out.data() + 2, &port_be, 2);
  return out;
}

Result<SocketAddress> DecodeEndpoint(std::span<const std::byte> bytes) {
  SocketAddress out;
  const bool v4 = bytes.size() == 8 && bytes[0] == std::byte{4};
  const bool v6 = bytes.size() == 20 && bytes[0] == std::byte{6};
  if (!v4 && !v6) {
    return Status::InvalidArgument("an endpoint of ", bytes.size(),
                                   " bytes is not an rdma listen address (want 8 or 20)");
  }
  uint16_t port_be = 0;
  std::memcpy(&port_be, bytes.data() + 2, 2);
  if (v4) {
    auto* in = reinterpret_cast<sockaddr_in*>(&out.storage);
    in->sin_family = AF_INET;
    in->sin_port = port_be;
    std::memcpy(&in->sin_addr, bytes.data() + 4, 4);
    out.length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = port_be;
    std::memcpy(&in6->sin6_addr, bytes.data() + 4, 16);
    out.length = sizeof(sockaddr_in6);
  }
  out.text = FormatSocketAddress(out.get());
  return out;
}

Status ApplyEnvironment(RdmaOptions& options) {
  if (!options.read_environment) return Status::Ok();
  if (options.device.empty()) {
    if (const char* device = std::getenv("FT_DEVICE"); device != nullptr && *device != '\0') {
      options.device = device;
    }
  }
  if (options.gid_index < 0) {
    if (const char* text = std::getenv("FT_GID_INDEX"); text != nullptr && *text != '\0') {
      const std::string_view value(text);
      int index = -1;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), index);
      if (ec != std::errc() || end != value.data() + value.size() || index < 0) {
        return Status::InvalidArgument("FT_GID_INDEX='", value,
                                       "' is not a GID index (a number >= 0; `show_gids` or "
                                       "`ibv_devinfo -v` lists them)");
      }
      options.gid_index = index;
    }
  }
  return Status::Ok();
}

std::vector<std::string> DeviceNames() {
  int count = 0;
  DeviceListPtr list = Own<&ibv_free_device_list>(ibv_get_device_list(&count));
  std::vector<std::string> names;
  if (list == nullptr) return names;
  for (int i = 0; i < count; ++i) names.emplace_back(ibv_get_device_name(list.get()[i]));
  return names;
}

Result<ContextPtr> OpenDevice(const std::string& name) {
  int count = 0;
  errno = 0;
  DeviceListPtr list = Own<&ibv_free_device_list>(ibv_get_device_list(&count));
  const int list_error = errno;
  std::vector<std::string> names;
  for (int i = 0; list != nullptr && i < count; ++i) {
    ibv_device* device = list.get()[i];
    if (name == ibv_get_device_name(device)) {
      ContextPtr context = Own<&ibv_close_device>(ibv_open_device(device));
      if (context == nullptr) return ErrnoStatus(errno, StrCat("ibv_open_device(", name, ")"));
      return context;
    }
    names.emplace_back(ibv_get_device_name(device));
  }
  if (names.empty()) {
    return Status::NotFound(
        "no RDMA device: ibv_get_device_list found none",
        list == nullptr ? StrCat(" (", std::strerror(list_error), ")") : std::string(),
        "; load the driver of the HCA, or soft-RoCE: `modprobe rdma_rxe && rdma link add rxe0 "
        "type rxe netdev <interface>`");
  }
  return Status::NotFound("RDMA device '", name, "' not found; the devices are: ", JoinNames(names),
                          " (FT_DEVICE or RdmaOptions::device names one)");
}

Result<GidChoice> ChooseGid(ibv_context* context, uint8_t port, const ibv_port_attr& port_attr,
                            const sockaddr* address, int requested) {
  const char* device = ibv_get_device_name(context->device);
  const int table = port_attr.gid_tbl_len;
  if (requested >= 0) {
    if (requested >= table) {
      return Status::InvalidArgument("GID index ", requested, " (FT_GID_INDEX or gid_index) is ",
                                     "outside the GID table of ", device, " port ", int{port}, " (",
                                     table, " entries)");
    }
    ibv_gid_entry entry{};
    if (const int rc = ibv_query_gid_ex(context, port, requested, &entry, 0); rc != 0) {
      return Status::InvalidArgument("GID index ", requested, " of ", device, " port ", int{port},
                                     " is empty or unreadable: ", std::strerror(rc));
    }
    return GidChoice{.index = requested, .type = GidTypeName(entry.gid_type)};
  }
  ibv_gid wanted{};
  if (!GidOfAddress(address, &wanted)) return GidChoice{};
  GidChoice best;
  for (int i = 0; i < table; ++i) {
    ibv_gid_entry entry{};
    if (ibv_query_gid_ex(context, port, i, &entry, 0) != 0) continue;
    if (std::memcmp(entry.gid.raw, wanted.raw, sizeof(wanted.raw)) != 0) continue;
    if (entry.gid_type == IBV_GID_TYPE_ROCE_V2) return GidChoice{.index = i, .type = "RoCE v2"};
    if (best.index < 0) best = GidChoice{.index = i, .type = GidTypeName(entry.gid_type)};
  }
  return best;
}

const char* LinkLayerName(uint8_t link_layer) {
  switch (link_layer) {
    case IBV_LINK_LAYER_INFINIBAND:
      return "InfiniBand";
    case IBV_LINK_LAYER_ETHERNET:
      return "Ethernet";
    default:
      return "unspecified";
  }
}

uint32_t MtuBytes(ibv_mtu mtu) {
  switch (mtu) {
    case IBV_MTU_256:
      return 256;
    case IBV_MTU_512:
      return 512;
    case IBV_MTU_1024:
      return 1024;
    case IBV_MTU_2048:
      return 2048;
    case IBV_MTU_4096:
      return 4096;
  }
  return 0;
}

}  // namespace ft::verbs::rdma
