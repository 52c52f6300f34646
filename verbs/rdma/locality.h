// The rdma backend's DeviceLocality (fabric.h): where the Fabric's device sits in the machine,
// decided once when the Fabric is created, from the hwloc Topology (verbs/topology.h).
//
// The decision never fails a Fabric: a topology hwloc cannot load, or a device it cannot place,
// is a locality that binds nothing and whose Describe() says why, ending ": no binding".
#ifndef FT_VERBS_RDMA_LOCALITY_H_
#define FT_VERBS_RDMA_LOCALITY_H_

#include <memory>
#include <string_view>

#include "ftengine/status.h"
#include "verbs/fabric.h"
#include "verbs/topology.h"

namespace ft::verbs::rdma {

// The locality of RDMA device `device` in `topology` (Topology::NumaNodeOfRdmaDevice(device,
// netdev): `netdev` is the network interface the Fabric listens on, empty when unknown). Takes
// the topology (or its load failure) and keeps it for binding when the decision binds. Never null.
// Binding calls on a topology that is not this system (synthetic, XML) fail FailedPrecondition,
// as Topology's do.
std::unique_ptr<DeviceLocality> DecideLocality(Result<std::shared_ptr<const Topology>> topology,
                                               std::string_view device, std::string_view netdev);
std::unique_ptr<DeviceLocality> DecideLocality(Result<Topology> topology, std::string_view device,
                                               std::string_view netdev);

// This machine's topology (Topology::Load), loaded by the first call and shared by every later
// one: the machine does not change while the process runs, and hwloc's I/O discovery costs
// 10 ms on a server to 400 ms in the emulated soft-RoCE VM, too much for every Fabric (the tests
// create hundreds). A load failure is kept too. Thread-safe.
Result<std::shared_ptr<const Topology>> MachineTopology();

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_LOCALITY_H_
