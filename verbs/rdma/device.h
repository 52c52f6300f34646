// Device, port and GID selection for the rdma backend, and address parsing.
#ifndef FT_VERBS_RDMA_DEVICE_H_
#define FT_VERBS_RDMA_DEVICE_H_

#include <infiniband/verbs.h>
#include <sys/socket.h>

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ftengine/status.h"
#include "verbs/rdma/handles.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs::rdma {

// A socket address parsed from "host:port".
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;
  std::string text;  // as given

  sockaddr* get() { return reinterpret_cast<sockaddr*>(&storage); }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// Parses "host:port" ("10.0.0.1:7000", "[fe80::1]:7000", "node17:7000"); a host name is resolved
// with getaddrinfo.
Result<SocketAddress> ParseHostPort(std::string_view host_port);
// "host:port" of a socket address.
std::string FormatSocketAddress(const sockaddr* address);

// The network interface holding `address` ("veth0", "ib0"): which of an RDMA device's netdevs a
// Fabric listening there runs over. Empty when no interface of this host holds it.
std::string InterfaceOfAddress(const sockaddr* address);

// A listen address as Fabric::endpoint() bytes: {family u8 (4 or 6), 0 u8, port u16 big-endian,
// address (4 or 16 bytes)}: 8 or 20 bytes, at most Fabric::kMaxEndpointBytes.
std::vector<std::byte> EncodeEndpoint(const SocketAddress& address);
// The inverse; InvalidArgument for bytes that are not an endpoint.
Result<SocketAddress> DecodeEndpoint(std::span<const std::byte> bytes);

// Fills options.device and options.gid_index from FT_DEVICE / FT_GID_INDEX when they are left at
// their defaults and options.read_environment is set. A malformed value is InvalidArgument naming
// the variable.
Status ApplyEnvironment(RdmaOptions& options);

// The RDMA devices of this process's view (ibv_get_device_list.3): a missing kernel module or
// no device at all gives an empty list.
std::vector<std::string> DeviceNames();

// Opens the device called `name`: NotFound naming the devices that exist (or saying that there
// are none) otherwise.
Result<ContextPtr> OpenDevice(const std::string& name);

// The GID chosen for a listen address: `requested` >= 0 is checked against the table; -1 picks
// the entry holding `address` (RoCE v2 over v1), or -1 when no entry holds it (rdmacm decides).
struct GidChoice {
  int index = -1;
  std::string type;  // "RoCE v2", "RoCE v1", "IB", "" when left to rdmacm
};
Result<GidChoice> ChooseGid(ibv_context* context, uint8_t port, const ibv_port_attr& port_attr,
                            const sockaddr* address, int requested);

const char* LinkLayerName(uint8_t link_layer);
uint32_t MtuBytes(ibv_mtu mtu);

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_DEVICE_H_
