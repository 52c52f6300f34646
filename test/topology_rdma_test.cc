// ft::verbs::Topology on the RDMA device of the environment (label rdma: it runs where a device
// is, e.g. rxe0 in ../shared/rxe-vm): the NUMA choice ftbench --verbose reports for it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

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

}  // namespace
}  // namespace ft::verbs
