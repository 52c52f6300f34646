// The machine's NUMA layout (hwloc) and where an RDMA device sits in it: which NUMA node the
// engine's store, buffers and progress thread belong on, and the calls that put them there.
//
// hwloc does the discovery (libhwloc-dev, hwloc 2.x); this file only asks it questions. The one
// thing read from sysfs directly is what hwloc does not report: whether an RDMA device it does not
// list is a virtual one (soft-RoCE rxe0 lives under /sys/devices/virtual) and which network
// interface it runs over (ports/*/gid_attrs/ndevs), whose locality hwloc does know when it is a
// PCI NIC.
//
// Thread-safety: a loaded Topology is read-only; its const methods may be called concurrently from
// any threads (hwloc allows concurrent read-only use of a loaded topology).
#ifndef FT_VERBS_TOPOLOGY_H_
#define FT_VERBS_TOPOLOGY_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "ftengine/status.h"

struct hwloc_topology;  // hwloc.h's hwloc_topology_t points to it

namespace ft::verbs {

// Where an RDMA device is and what to do about it.
struct NumaChoice {
  // The NUMA node (OS index, as numactl and /sys/devices/system/node count) to put the store,
  // buffers and progress thread on; -1: bind nothing (one NUMA node, or locality unknown).
  int numa_node = -1;
  // The node nearest the device when hwloc knows it (also on a one-node machine); -1 otherwise.
  int device_node = -1;
  // The CPUs of numa_node as a list ("16-31,48-63"); empty when numa_node is -1.
  std::string cpus;
  // One sentence for `ftbench --verbose`: "mlx5_0 on NUMA node 1 of 2 (CPUs 16-31): store,
  // buffers and progress thread bound there", "rxe0: virtual device over veth0, no NUMA
  // locality; 1 NUMA node: no binding".
  std::string reason;

  bool bind() const { return numa_node >= 0; }
};

class Topology {
 public:
  // This machine, with I/O discovery (PCI devices and their OS devices: OpenFabrics, network).
  // Internal naming hwloc's errno text when hwloc cannot load it (ResourceExhausted when it cannot
  // allocate the topology).
  static Result<Topology> Load();
  // A synthetic topology ("package:2 [numa] core:2 pu:1", see hwloc's synthetic format): no I/O
  // devices, not this system (binding calls fail with FailedPrecondition). For tests.
  // InvalidArgument naming the description when hwloc rejects it.
  static Result<Topology> LoadSynthetic(std::string_view description);
  // A topology exported by `lstopo foo.xml` or hwloc_topology_export_xml (with its I/O devices),
  // from a file or from the XML text itself. Not this system. For tests and post-mortems.
  static Result<Topology> LoadXml(const std::string& path);
  static Result<Topology> LoadXmlText(std::string_view xml);

  Topology(Topology&&) noexcept = default;
  Topology& operator=(Topology&&) noexcept = default;
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;
  ~Topology() = default;

  // Whether this describes the machine the process runs on (Load()) rather than a synthetic or
  // XML description; binding needs it.
  bool is_this_system() const;
  // NUMA nodes (hwloc always reports at least one).
  int numa_nodes() const;
  // "2 NUMA nodes: 0 (CPUs 0-15), 1 (CPUs 16-31)".
  std::string Summary() const;

  // The NUMA node nearest the RDMA device `device_name` ("mlx5_0", "rxe0") and the decision rule:
  // bind only when the machine has several NUMA nodes and the device's node is known.
  //   - A PCI device: the nodeset of its first non-I/O ancestor (a package, group or the machine).
  //     A nodeset covering every node means no locality; covering several but not all, the lowest
  //     is chosen and the sentence says so.
  //   - A device without a PCI parent (soft-RoCE): the network interface it runs over, `netdev`
  //     when given, else the ones sysfs lists for it on this system; a PCI NIC gives its node,
  //     a virtual one (veth0) means no locality.
  // A device neither hwloc nor (on this system) sysfs knows is NotFound, naming it and the
  // OpenFabrics devices hwloc saw. InvalidArgument for an empty name.
  Result<NumaChoice> NumaNodeOfRdmaDevice(std::string_view device_name,
                                          std::string_view netdev = {}) const;

  // Binds the calling thread to the CPUs of NUMA node `numa_node` (OS index). InvalidArgument
  // naming the value when no such node exists; FailedPrecondition when the topology is not this
  // system or the node has no CPUs; FailedPrecondition or Internal with hwloc's errno text when
  // the kernel refuses. On failure the thread's binding is unchanged.
  Status BindCurrentThreadToNuma(int numa_node) const;

  // Binds [addr, addr + bytes) to NUMA node `numa_node` and migrates the pages already touched
  // there (mbind MPOL_BIND with MPOL_MF_MOVE). Call it on memory that is not registered yet:
  // pages pinned by ibv_reg_mr do not move. The kernel binds whole pages, so `addr` should be
  // page-aligned and the range should not share pages with unrelated data. InvalidArgument for
  // a null or empty range or a node that does not exist (naming it); FailedPrecondition when the
  // topology is not this system or the kernel cannot bind memory; Internal with hwloc's errno text
  // otherwise.
  Status BindMemoryToNuma(void* addr, size_t bytes, int numa_node) const;

 private:
  struct Destroy {
    void operator()(hwloc_topology* topology) const;
  };
  using Handle = std::unique_ptr<hwloc_topology, Destroy>;
  explicit Topology(Handle handle) : handle_(std::move(handle)) {}
  // hwloc_topology_init with I/O discovery on; the caller picks the source, then calls Finish.
  static Result<Handle> Init();
  // hwloc_topology_load; `source` names what was loaded in the error.
  static Result<Topology> Finish(Handle handle, std::string_view source);

  Handle handle_;
};

}  // namespace ft::verbs

#endif  // FT_VERBS_TOPOLOGY_H_
