// The rdma backend of the Fabric interface: rdma-core (libibverbs + librdmacm), RC queue pairs.
//
// One Fabric is one node: it listens with rdmacm on the address its AddressBook gives for its own
// NodeId, and owns a device context, a protection domain, one completion queue (with a
// completion channel) shared by all its queue pairs, and a thread that turns rdmacm and ibv async
// events into Fabric Events. Nothing is global: several Fabrics (nodes) may live in one process,
// which is how the tests run both ends of a connection.
//
// Connect is symmetric, as the Fabric contract wants: for each pair, the node with the higher
// NodeId resolves the lower one's address and sends the connection request; the lower one
// accepts it once its own Connect names that peer (a request that arrives earlier waits; the CM
// keeps the requester waiting with an MRA). The request and the reply carry a 12-byte header
// (magic, version, from, to, length) and the caller's bytes: 56 bytes of RC connect private data
// (rdma_connect.3) minus the header leave Limits::max_private_data = 44.
//
// How real verbs differ from the loopback model (both pass fabric_conformance):
// - A peer that is not listening (not started yet, or dead) cannot be told apart: Connect retries
//   until its deadline and returns DeadlineExceeded naming the peer and why (no listener, no
//   answer), where loopback says Unavailable for a killed node. A host that does not answer
//   address resolution, or a CM request that gets no answer, is Unavailable at once.
// - Work executes on the device, not in PollCompletions; PollCompletions only reaps.
// - Inline payloads are copied at post time without any lkey check (loopback reports a bad lkey
//   of an inline request as kLocalProtectionError).
// - kQpError is raised when the first error completion of a QP is reaped from the CQ (by
//   PollCompletions or WaitForActivity), or when the device reports an async QP error; not when
//   the failure happens on the wire.
// - A DISCONNECTED event moves our QP to the error state at once: later work completes kFlushed
//   rather than kRetryExceeded.
// - Soft-RoCE words some errors differently from the IB spec and treats retry_count 7 as
//   "forever": errors.h maps its codes back, RdmaOptions caps retry_count at 6.
//
// locality(): decided by its first call (then fixed for the Fabric's life), from this machine's
// hwloc topology (loaded once per process) and the device and network interface of the listen
// address, by
// Topology::NumaNodeOfRdmaDevice (verbs/topology.h). Never null; a topology hwloc cannot load or
// a device it cannot place gives a locality that binds nothing and says why (": no binding").
//
// Thread-safety: as the Fabric contract. Lifetime: QueuePairs and MemoryRegions should be
// destroyed before their Fabric; those still alive keep the device resources (PD, CQ) alive, the
// QueuePairs fail with Unavailable, and their peers are disconnected when the Fabric goes.
#ifndef FT_VERBS_RDMA_RDMA_H_
#define FT_VERBS_RDMA_RDMA_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "ftengine/status.h"
#include "verbs/fabric.h"
#include "verbs/rdma/queue.h"

namespace ft::verbs {

// Where node `id` listens, as "host:port" (IPv4 literal, [IPv6] literal or a host name). The
// host must be an address of the RDMA device's network interface (RoCE) or IPoIB (InfiniBand).
// A NodeId outside the world must give InvalidArgument (Connect refuses it); NotFound means "not
// known yet" (a dialling Connect fails on it, an accepting one does not need the address).
using AddressBook = std::function<Result<std::string>(NodeId id)>;

// Nodes [0, nodes) listen on host:(base_port + id): several nodes of one host, or one node per
// host when each process is given its own host.
AddressBook PortRangeAddressBook(std::string host, uint16_t base_port, NodeId nodes);

struct RdmaOptions {
  // The device ("mlx5_0", "rxe0"): empty means the FT_DEVICE environment variable, and when that
  // is unset too, the device that owns the listen address. A device that does not own the listen
  // address is an error.
  std::string device;
  // The source GID index: -1 means FT_GID_INDEX, and when that is unset, auto: the RoCE v2 entry
  // holding the listen address (v2 preferred over v1), else whatever rdmacm resolves.
  int gid_index = -1;
  // Environment variables FT_DEVICE / FT_GID_INDEX are read only for fields left at default.
  bool read_environment = true;

  // Queue depths, requested of the device (clamped to its limits; Fabric::limits() reports what
  // was granted). cq_depth is where the CQ starts: it grows as QPs are created so that it never
  // overruns, up to the device's max_cqe (beyond, Connect fails ResourceExhausted); limits()
  // reports the depth at creation. See queue.h for the arithmetic and the CQ sizing rule.
  int max_send_wr = rdma::kDefaultMaxSendWr;
  int max_recv_wr = rdma::kDefaultMaxRecvWr;
  int cq_depth = rdma::kDefaultCqDepth;
  uint32_t max_inline_bytes = rdma::kDefaultMaxInlineBytes;

  // RC transport timers (ibv_modify_qp.3). The defaults bound how long a dead or fenced peer
  // takes to fail our work:
  //   ack timeout = 4.096 us * 2^ack_timeout = 67 ms for 14; retry_count 6 gives 1 + 6 attempts:
  //   a WRITE to a silent peer completes kRetryExceeded after about 7 * 67 ms = 0.47 s (HCAs may
  //   round the timer up to their own minimum, typically within 2x: about 1 s worst case).
  //   retry_count is at most 6: soft-RoCE (rdma_rxe) treats 7 as "retry forever", as the IB spec
  //   does only for rnr_retry.
  //   rnr_retry 6 (7 would mean "forever"), min_rnr_timer 18 = 5.12 ms: a SEND that finds no
  //   receive completes kRnrRetryExceeded after about 7 * 5.12 ms = 36 ms plus round trips.
  uint8_t ack_timeout = 14;
  uint8_t retry_count = 6;
  uint8_t rnr_retry = 6;
  uint8_t min_rnr_timer = 18;
  // rdma_resolve_addr / rdma_resolve_route timeouts (further bounded by Connect's timeout).
  Nanos resolve_timeout = std::chrono::seconds(2);

  // Tests only: make creation step `testing_fail_step` (0, 1, ...) fail as if the library call
  // had failed, to prove a half-built Fabric releases everything. -1: off.
  int testing_fail_step = -1;
  // Tests only: keep the CQ at cq_depth however many QPs it serves (no growth, no check), so
  // that a test can overrun it and prove the overrun is still reported.
  bool testing_fixed_cq = false;
};

// Creates node `node`'s Fabric: opens the device, listens on addresses(node). Errors name what is
// missing: no RDMA device at all, an unknown FT_DEVICE, a listen address that is not on an RDMA
// device, a port that is not active, a GID index outside the table.
Result<std::unique_ptr<Fabric>> CreateRdmaFabric(NodeId node, const RdmaOptions& options,
                                                 AddressBook addresses);

// What a Fabric chose: for logs, `ftbench --verbose` and test reports.
struct RdmaDeviceInfo {
  std::string device;       // "rxe0"
  uint8_t port = 0;         // 1-based
  int gid_index = -1;       // -1: left to rdmacm
  std::string gid_type;     // "RoCE v2", "RoCE v1", "IB"
  std::string link_layer;   // "Ethernet", "InfiniBand"
  uint32_t active_mtu = 0;  // bytes
  std::string listen;       // "10.77.0.1:7471"
};
// The choice of an rdma Fabric; NotFound for a Fabric of another backend.
Result<RdmaDeviceInfo> GetRdmaDeviceInfo(const Fabric& fabric);

// Names of the RDMA devices the process can see (ibv_get_device_list): empty when none, e.g. on a
// kernel without RDMA support.
std::vector<std::string> ListRdmaDevices();

// Verbs and rdmacm handles alive in this process that were made by this backend, by kind: a
// diagnostic for tests (a failed or destroyed Fabric must bring every count back).
struct RdmaLiveHandles {
  int64_t event_channels = 0;
  int64_t cm_ids = 0;
  int64_t contexts = 0;
  int64_t pds = 0;
  int64_t comp_channels = 0;
  int64_t cqs = 0;
  int64_t qps = 0;
  int64_t mrs = 0;
  int64_t fds = 0;
  int64_t device_lists = 0;
  bool operator==(const RdmaLiveHandles&) const = default;
};
RdmaLiveHandles GetRdmaLiveHandles();
std::string ToString(const RdmaLiveHandles& handles);

}  // namespace ft::verbs

#endif  // FT_VERBS_RDMA_RDMA_H_
