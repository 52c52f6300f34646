#include "verbs/topology.h"

#include <hwloc.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace ft::verbs {
namespace {

struct FreeChars {
  void operator()(char* text) const { std::free(text); }
};

// hwloc discovery components never needed to place an RDMA device (see Topology::Init).
constexpr const char* kUnusedComponents[] = {"pci",  "opencl", "gl",       "cuda",
                                             "nvml", "rsmi",   "levelzero"};

std::string ErrnoText(int error) { return StrCat(std::strerror(error), " (errno ", error, ")"); }

// "0-3,8" for a cpuset or nodeset; "" for an empty or null one.
std::string ListText(hwloc_const_bitmap_t bitmap) {
  if (bitmap == nullptr || hwloc_bitmap_iszero(bitmap)) return "";
  char* raw = nullptr;
  if (hwloc_bitmap_list_asprintf(&raw, bitmap) < 0 || raw == nullptr) return "?";
  std::unique_ptr<char, FreeChars> text(raw);
  return text.get();
}

std::string Nodes(int count) { return StrCat(count, count == 1 ? " NUMA node" : " NUMA nodes"); }

// Status for a failed hwloc binding call: the system cannot (ENOSYS, EXDEV: the binding is not
// supported or cannot be enforced; EPERM) or something else went wrong.
Status BindFailure(std::string_view what, int error) {
  const std::string text = StrCat(what, ": ", ErrnoText(error));
  switch (error) {
    case ENOSYS:
    case EXDEV:
    case EPERM:
      return Status::FailedPrecondition(text);
    case ENOMEM:
      return Status::ResourceExhausted(text);
    default:
      return Status::Internal(text);
  }
}

// The OS device of `type` called `name`, or nullptr.
hwloc_obj_t FindOsDevice(hwloc_topology_t topology, hwloc_obj_osdev_type_t type,
                         std::string_view name) {
  for (hwloc_obj_t obj = hwloc_get_next_osdev(topology, nullptr); obj != nullptr;
       obj = hwloc_get_next_osdev(topology, obj)) {
    if (obj->attr->osdev.type == type && obj->name != nullptr && name == obj->name) return obj;
  }
  return nullptr;
}

std::string OsDeviceNames(hwloc_topology_t topology, hwloc_obj_osdev_type_t type) {
  std::string names;
  for (hwloc_obj_t obj = hwloc_get_next_osdev(topology, nullptr); obj != nullptr;
       obj = hwloc_get_next_osdev(topology, obj)) {
    if (obj->attr->osdev.type != type || obj->name == nullptr) continue;
    names += StrCat(names.empty() ? "" : ", ", obj->name);
  }
  return names.empty() ? "none" : names;
}

// Where an OS device sits: the nodeset of its first non-I/O ancestor, and whether a PCI device
// lies between them (a virtual device hangs off the machine directly, if hwloc lists it at all).
struct Placement {
  hwloc_const_nodeset_t nodeset = nullptr;
  bool via_pci = false;
};

Placement PlacementOf(hwloc_topology_t topology, hwloc_obj_t osdev) {
  Placement placement;
  for (hwloc_obj_t obj = osdev->parent; obj != nullptr && hwloc_obj_type_is_io(obj->type);
       obj = obj->parent) {
    if (obj->type == HWLOC_OBJ_PCI_DEVICE) placement.via_pci = true;
  }
  hwloc_obj_t ancestor = hwloc_get_non_io_ancestor_obj(topology, osdev);
  if (ancestor != nullptr) placement.nodeset = ancestor->nodeset;
  // Attached to the root without a PCI device in between: hwloc knows nothing of its locality.
  if (!placement.via_pci && (ancestor == nullptr || ancestor->parent == nullptr)) {
    placement.nodeset = nullptr;
  }
  return placement;
}

// What sysfs says of an RDMA device hwloc does not place: whether it exists, whether it is
// virtual (soft-RoCE: /sys/devices/virtual/infiniband/rxe0) and the network interfaces its GIDs
// belong to (ports/<p>/gid_attrs/ndevs/<i>). Only consulted for a topology of this system.
struct SysfsRdmaDevice {
  bool exists = false;
  bool is_virtual = false;
  std::vector<std::string> netdevs;
};

SysfsRdmaDevice ReadSysfsRdmaDevice(const std::string& name) {
  namespace fs = std::filesystem;
  SysfsRdmaDevice device;
  std::error_code error;
  const fs::path path = fs::path("/sys/class/infiniband") / name;
  if (!fs::exists(path, error)) return device;
  device.exists = true;
  const fs::path real = fs::canonical(path, error);
  device.is_virtual = !error && real.string().starts_with("/sys/devices/virtual/");
  for (fs::directory_iterator port(path / "ports", error), end; !error && port != end;
       port.increment(error)) {
    std::error_code ndev_error;
    for (fs::directory_iterator ndev(port->path() / "gid_attrs" / "ndevs", ndev_error);
         !ndev_error && ndev != fs::directory_iterator(); ndev.increment(ndev_error)) {
      std::ifstream in(ndev->path());  // unused GID entries fail to read (EINVAL): skipped
      std::string netdev;
      if (!std::getline(in, netdev) || netdev.empty()) continue;
      if (std::find(device.netdevs.begin(), device.netdevs.end(), netdev) == device.netdevs.end()) {
        device.netdevs.push_back(netdev);
      }
    }
  }
  return device;
}

bool NetdevInSysfs(const std::string& name) {
  std::error_code error;
  return std::filesystem::exists(std::filesystem::path("/sys/class/net") / name, error);
}

// A name that can be a path component of /sys/class/<class>/.
bool IsPlainName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos;
}

// The NUMA node with OS index `numa_node`; InvalidArgument naming it otherwise.
Result<hwloc_obj_t> FindNode(hwloc_topology_t topology, int numa_node, std::string_view what) {
  hwloc_obj_t node = numa_node < 0 ? nullptr
                                   : hwloc_get_numanode_obj_by_os_index(
                                         topology, static_cast<unsigned>(numa_node));
  if (node == nullptr) {
    return Status::InvalidArgument(what, ": NUMA node ", numa_node,
                                   " does not exist (this topology has nodes ",
                                   ListText(hwloc_topology_get_topology_nodeset(topology)), ")");
  }
  return node;
}

}  // namespace

void Topology::Destroy::operator()(hwloc_topology* topology) const {
  hwloc_topology_destroy(topology);
}

Result<Topology::Handle> Topology::Init() {
  hwloc_topology_t raw = nullptr;
  if (hwloc_topology_init(&raw) != 0) {
    return Status::ResourceExhausted("hwloc_topology_init: ", ErrnoText(errno));
  }
  Handle handle(raw);
  // PCI devices and bridges that matter, and their OS devices (OpenFabrics "mlx5_0", network
  // "eth0"): off by default in hwloc 2.x.
  if (hwloc_topology_set_io_types_filter(raw, HWLOC_TYPE_FILTER_KEEP_IMPORTANT) != 0) {
    return Status::Internal("hwloc_topology_set_io_types_filter: ", ErrnoText(errno));
  }
  // Components that only cost here: "pci" (libpciaccess) finds the same PCI devices as the
  // linux component's sysfs walk, adds vendor names we never read, and leaks its pci.ids tables
  // (open-mpi/hwloc#636: 600 KiB per load under ASan) and is not thread-safe; the rest look for
  // GPUs and may start their vendors' runtimes. Blacklisting a component hwloc does not have is
  // harmless, so the result is not checked.
  for (const char* component : kUnusedComponents) {
    (void)hwloc_topology_set_components(raw, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, component);
  }
  return handle;
}

Result<Topology> Topology::Finish(Handle handle, std::string_view source) {
  if (hwloc_topology_load(handle.get()) != 0) {
    return Status::Internal("loading the hwloc topology of ", source, ": ", ErrnoText(errno));
  }
  return Topology(std::move(handle));
}

Result<Topology> Topology::Load() {
  FT_ASSIGN_OR_RETURN(Handle handle, Init());
  return Finish(std::move(handle), "this machine");
}

Result<Topology> Topology::LoadSynthetic(std::string_view description) {
  FT_ASSIGN_OR_RETURN(Handle handle, Init());
  const std::string text(description);
  if (hwloc_topology_set_synthetic(handle.get(), text.c_str()) != 0) {
    return Status::InvalidArgument("hwloc rejects the synthetic topology \"", text,
                                   "\": ", ErrnoText(errno));
  }
  return Finish(std::move(handle), StrCat("the synthetic topology \"", text, "\""));
}

Result<Topology> Topology::LoadXml(const std::string& path) {
  FT_ASSIGN_OR_RETURN(Handle handle, Init());
  if (hwloc_topology_set_xml(handle.get(), path.c_str()) != 0) {
    const int error = errno;
    const std::string text =
        StrCat("hwloc cannot read the XML topology ", path, ": ", ErrnoText(error));
    return error == ENOENT ? Status::NotFound(text) : Status::InvalidArgument(text);
  }
  return Finish(std::move(handle), StrCat("the XML topology ", path));
}

Result<Topology> Topology::LoadXmlText(std::string_view xml) {
  FT_ASSIGN_OR_RETURN(Handle handle, Init());
  const std::string text(xml);  // hwloc wants the terminating NUL counted in the length
  if (hwloc_topology_set_xmlbuffer(handle.get(), text.c_str(), static_cast<int>(text.size() + 1)) !=
      0) {
    return Status::InvalidArgument("hwloc rejects the XML topology text (", text.size(),
                                   " bytes): ", ErrnoText(errno));
  }
  return Finish(std::move(handle), StrCat("an XML topology text (", text.size(), " bytes)"));
}

bool Topology::is_this_system() const { return hwloc_topology_is_thissystem(handle_.get()) != 0; }

int Topology::numa_nodes() const {
  return hwloc_get_nbobjs_by_type(handle_.get(), HWLOC_OBJ_NUMANODE);
}

std::string Topology::Summary() const {
  std::string text = Nodes(numa_nodes()) + ":";
  const char* separator = " ";
  for (hwloc_obj_t node = hwloc_get_next_obj_by_type(handle_.get(), HWLOC_OBJ_NUMANODE, nullptr);
       node != nullptr;
       node = hwloc_get_next_obj_by_type(handle_.get(), HWLOC_OBJ_NUMANODE, node)) {
    const std::string cpus = ListText(node->cpuset);
    text += StrCat(separator, node->os_index, " (", cpus.empty() ? "no CPUs" : "CPUs " + cpus, ")");
    separator = ", ";
  }
  return text;
}

Result<NumaChoice> Topology::NumaNodeOfRdmaDevice(std::string_view device_name,
                                                  std::string_view netdev) const {
  hwloc_topology_t topology = handle_.get();
  if (!IsPlainName(device_name)) {
    return Status::InvalidArgument("'", device_name, "' is not an RDMA device name");
  }
  if (!netdev.empty() && !IsPlainName(netdev)) {
    return Status::InvalidArgument(
        "'", netdev, "' is not a network interface name (for RDMA device ", device_name, ")");
  }
  const std::string device(device_name);
  const int nodes = numa_nodes();

  // The decision for a device placed under `nodeset` (reached through network interface `via`
  // when not empty).
  auto decide = [&](hwloc_const_nodeset_t nodeset, const std::string& via) {
    const std::string where = via.empty() ? device : StrCat(device, " over ", via);
    NumaChoice choice;
    const int first = hwloc_bitmap_first(nodeset);
    const int weight = hwloc_bitmap_weight(nodeset);
    if (first < 0 || weight <= 0) {
      choice.reason =
          StrCat(where, ": hwloc gives it no NUMA node; ", Nodes(nodes), ": no binding");
      return choice;
    }
    choice.device_node = first;
    hwloc_obj_t node = hwloc_get_numanode_obj_by_os_index(topology, static_cast<unsigned>(first));
    const std::string cpus = node == nullptr ? "" : ListText(node->cpuset);
    const std::string cpus_text = cpus.empty() ? "no CPUs" : "CPUs " + cpus;
    if (nodes <= 1) {
      choice.reason = StrCat(where, " on NUMA node ", first, " (", cpus_text, "); ", Nodes(nodes),
                             ": no binding");
    } else if (hwloc_bitmap_isincluded(hwloc_topology_get_topology_nodeset(topology), nodeset)) {
      choice.device_node = -1;
      choice.reason = StrCat(where, " is equally near all ", Nodes(nodes), ": no binding");
    } else {
      choice.numa_node = first;
      choice.cpus = cpus;
      choice.reason = weight == 1
                          ? StrCat(where, " on NUMA node ", first, " of ", nodes, " (", cpus_text,
                                   "): store, buffers and progress thread bound there")
                          : StrCat(where, " near NUMA nodes ", ListText(nodeset), " of ", nodes,
                                   "; node ", first, " (", cpus_text,
                                   ") chosen: store, buffers and progress thread bound there");
    }
    return choice;
  };

  // 1. hwloc's OpenFabrics OS device, under its PCI device.
  hwloc_obj_t osdev = FindOsDevice(topology, HWLOC_OBJ_OSDEV_OPENFABRICS, device);
  if (osdev != nullptr) {
    const Placement placement = PlacementOf(topology, osdev);
    if (placement.nodeset != nullptr) return decide(placement.nodeset, "");
  }

  // 2. A device hwloc does not place (soft-RoCE: not listed, or listed without a PCI parent):
  // the network interfaces it runs over.
  bool known = osdev != nullptr || !netdev.empty();
  bool is_virtual = osdev != nullptr;
  std::vector<std::string> netdevs;
  if (!netdev.empty()) netdevs.emplace_back(netdev);
  if (is_this_system()) {
    SysfsRdmaDevice sysfs = ReadSysfsRdmaDevice(device);
    known = known || sysfs.exists;
    is_virtual = is_virtual || sysfs.is_virtual;
    if (netdev.empty()) netdevs = std::move(sysfs.netdevs);
  }
  if (!known) {
    return Status::NotFound("RDMA device '", device,
                            "': hwloc sees no OpenFabrics device of that name (it sees: ",
                            OsDeviceNames(topology, HWLOC_OBJ_OSDEV_OPENFABRICS), ")",
                            is_this_system() ? " and /sys/class/infiniband has no such entry" : "");
  }
  for (const std::string& name : netdevs) {
    hwloc_obj_t net = FindOsDevice(topology, HWLOC_OBJ_OSDEV_NETWORK, name);
    if (net != nullptr) {
      const Placement placement = PlacementOf(topology, net);
      if (placement.nodeset != nullptr) return decide(placement.nodeset, name);
    } else if (name == netdev && !(is_this_system() && NetdevInSysfs(name))) {
      return Status::NotFound("network interface '", name, "' of RDMA device '", device,
                              "': hwloc sees no network device of that name (it sees: ",
                              OsDeviceNames(topology, HWLOC_OBJ_OSDEV_NETWORK), ")");
    }
  }
  std::string over;
  for (const std::string& name : netdevs) over += StrCat(over.empty() ? " over " : ", ", name);
  NumaChoice choice;
  if (is_virtual) {
    // "rxe0: virtual device over veth0 (not a PCI device either), no NUMA locality; ..."
    const char* either = netdevs.empty()       ? ""
                         : netdevs.size() == 1 ? " (not a PCI device either)"
                                               : " (none a PCI device)";
    choice.reason = StrCat(device, ": virtual device", over, either, ", no NUMA locality; ",
                           Nodes(nodes), ": no binding");
  } else {
    // "rxe9 over lo: hwloc knows no PCI device under it, no NUMA locality; ..."
    choice.reason = StrCat(device, over, ": hwloc knows no PCI device under it, no NUMA locality; ",
                           Nodes(nodes), ": no binding");
  }
  return choice;
}

Status Topology::BindCurrentThreadToNuma(int numa_node) const {
  hwloc_topology_t topology = handle_.get();
  FT_ASSIGN_OR_RETURN(hwloc_obj_t node,
                      FindNode(topology, numa_node, "binding this thread to a NUMA node"));
  const std::string cpus = ListText(node->cpuset);
  const std::string what = StrCat("binding this thread to NUMA node ", numa_node, " (CPUs ",
                                  cpus.empty() ? "none" : cpus, ")");
  if (!is_this_system()) {
    return Status::FailedPrecondition(what,
                                      ": the topology describes another system (synthetic "
                                      "or XML), not this one");
  }
  if (cpus.empty()) return Status::FailedPrecondition(what, ": the node has no CPUs");
  if (!hwloc_topology_get_support(topology)->cpubind->set_thread_cpubind) {
    return Status::FailedPrecondition(what, ": hwloc cannot bind threads on this system");
  }
  if (hwloc_set_cpubind(topology, node->cpuset, HWLOC_CPUBIND_THREAD) != 0) {
    return BindFailure(what, errno);
  }
  return Status();
}

Status Topology::BindMemoryToNuma(void* addr, size_t bytes, int numa_node) const {
  hwloc_topology_t topology = handle_.get();
  if (addr == nullptr) {
    return Status::InvalidArgument("binding memory to NUMA node ", numa_node, ": null address");
  }
  if (bytes == 0) {
    return Status::InvalidArgument("binding memory at ", addr, " to NUMA node ", numa_node,
                                   ": 0 bytes");
  }
  const std::string what =
      StrCat("binding ", bytes, " bytes at ", addr, " to NUMA node ", numa_node);
  FT_ASSIGN_OR_RETURN(hwloc_obj_t node, FindNode(topology, numa_node, what));
  if (!is_this_system()) {
    return Status::FailedPrecondition(what,
                                      ": the topology describes another system (synthetic "
                                      "or XML), not this one");
  }
  const hwloc_topology_support* support = hwloc_topology_get_support(topology);
  if (!support->membind->set_area_membind || !support->membind->bind_membind) {
    return Status::FailedPrecondition(what, ": hwloc cannot bind memory on this system");
  }
  if (hwloc_set_area_membind(topology, addr, bytes, node->nodeset, HWLOC_MEMBIND_BIND,
                             HWLOC_MEMBIND_BYNODESET | HWLOC_MEMBIND_MIGRATE) != 0) {
    return BindFailure(what, errno);
  }
  return Status();
}

}  // namespace ft::verbs
