// The NUMA locality of the RDMA device of the environment (label rdma: it runs where a device
// is, e.g. rxe0 in ../shared/rxe-vm): what an rdma Fabric's locality() says about it, which is
// what the engine reports in EngineMetrics::numa and ftbench --verbose.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "test/rdma_test_util.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"
#include "verbs/topology.h"

namespace ft::verbs {
namespace {

TEST(TopologyRdmaTest, NumaChoiceForTheDeviceOfTheEnvironment) {
  const char* named = std::getenv("FT_DEVICE");
  if (named == nullptr || *named == '\0') named = std::getenv("RXE_VM_DEV");
  std::string device = named != nullptr ? named : "";
  if (device.empty()) {
    const std::vector<std::string> devices = ListRdmaDevices();
    if (devices.empty()) GTEST_SKIP() << "no RDMA device here (FT_DEVICE, RXE_VM_DEV, or any)";
    device = devices.front();
  }
  auto topology = Topology::Load();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice(device);
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_FALSE(choice->reason.empty());
  EXPECT_NE(choice->reason.find(device), std::string::npos) << choice->reason;
  std::cout << topology->Summary() << "\n" << choice->reason << "\n";
  if (topology->numa_nodes() == 1) {
    EXPECT_FALSE(choice->bind()) << "one NUMA node: nothing to bind";
  }
}

// The Fabric decides once, at creation, with the rule the engine used to apply itself
// (NumaNodeOfRdmaDevice of the Fabric's device): same decision, same sentence.
TEST(TopologyRdmaTest, FabricLocalityIsTheDevicesNumaChoice) {
  if (const std::string reason = rdma_test::SkipReason(); !reason.empty()) GTEST_SKIP() << reason;
  auto fabric = CreateRdmaFabric(
      0, RdmaOptions{},
      PortRangeAddressBook(rdma_test::TestAddress(), rdma_test::BasePort(1, 3), 1));
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  const DeviceLocality* locality = (*fabric)->locality();
  ASSERT_NE(locality, nullptr) << "an rdma Fabric always has a locality";
  auto info = GetRdmaDeviceInfo(**fabric);
  ASSERT_TRUE(info.ok()) << info.status();
  auto topology = Topology::Load();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice(info->device);
  ASSERT_TRUE(choice.ok()) << choice.status();
  std::cout << locality->Describe() << "\n";
  EXPECT_EQ(locality->Describe(), choice->reason);
  EXPECT_EQ(locality->binds(), choice->bind());
  const char* vm_device = std::getenv("RXE_VM_DEV");
  const char* vm_netdev = std::getenv("RXE_VM_NETDEV");
  if (std::getenv("RXE_VM") != nullptr && vm_device != nullptr && vm_netdev != nullptr) {
    // The soft-RoCE VM (rxe0 over veth0, one NUMA node): the sentence docs/architecture.md quotes.
    EXPECT_EQ(locality->Describe(),
              StrCat(vm_device, ": virtual device over ", vm_netdev,
                     " (not a PCI device either), no NUMA locality; 1 NUMA node: no binding"));
    EXPECT_FALSE(locality->binds());
  }
  if (!locality->binds()) {
    EXPECT_EQ(locality->BindCurrentThread().code(), StatusCode::kFailedPrecondition);
    int word = 0;
    EXPECT_EQ(locality->BindMemory(&word, sizeof(word)).code(), StatusCode::kFailedPrecondition);
  }
}

}  // namespace
}  // namespace ft::verbs
