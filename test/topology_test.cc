// ft::verbs::Topology: NUMA nodes, the NUMA node of an RDMA device, thread and memory binding.
//
// Synthetic and XML topologies are deterministic but describe another system: hwloc cannot bind
// on them, so binding is tested on this machine's topology (whatever it is) and the locality
// rules on XML topologies with I/O devices placed by hand.
#include "verbs/topology.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "test/status_matchers.h"
#include "verbs/fabric.h"
#include "verbs/rdma/locality.h"

namespace ft::verbs {
namespace {

using test::HasError;

// ---------------------------------------------------------------------------------------------
// XML topologies with I/O devices (hwloc's synthetic format has none).

struct Package {
  std::vector<unsigned> nodes;  // NUMA nodes (OS indices) attached to the package
  std::vector<unsigned> pus;    // its PUs (OS indices), one core each
  std::string io;               // I/O objects under the package (PciDevice(...))
};

std::string Mask(const std::vector<unsigned>& bits) {
  uint32_t mask = 0;
  for (unsigned bit : bits) mask |= uint32_t{1} << bit;
  char text[16];
  std::snprintf(text, sizeof(text), "0x%08x", mask);
  return text;
}

std::string Sets(const std::vector<unsigned>& cpus, const std::vector<unsigned>& nodes) {
  return StrCat(" cpuset=\"", Mask(cpus), "\" complete_cpuset=\"", Mask(cpus), "\" nodeset=\"",
                Mask(nodes), "\" complete_nodeset=\"", Mask(nodes), "\"");
}

std::string OsDevice(const std::string& name, int osdev_type) {
  return StrCat("<object type=\"OSDev\" name=\"", name, "\" osdev_type=\"", osdev_type, "\"/>");
}
std::string OpenFabrics(const std::string& name) { return OsDevice(name, 3); }
std::string Network(const std::string& name) { return OsDevice(name, 2); }

// class "0207": InfiniBand controller, "0200": Ethernet controller.
std::string PciDevice(const std::string& busid, const std::string& pci_class,
                      const std::string& children) {
  return StrCat("<object type=\"PCIDev\" pci_busid=\"", busid, "\" pci_type=\"", pci_class,
                " [15b3:1017] [15b3:0007] 00\">", children, "</object>");
}

std::string MachineXml(const std::vector<Package>& packages, const std::string& machine_io = "") {
  std::vector<unsigned> all_pus;
  std::vector<unsigned> all_nodes;
  for (const Package& p : packages) {
    all_pus.insert(all_pus.end(), p.pus.begin(), p.pus.end());
    all_nodes.insert(all_nodes.end(), p.nodes.begin(), p.nodes.end());
  }
  std::string xml = StrCat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE topology SYSTEM \"hwloc2.dtd\">\n"
      "<topology version=\"2.0\"><object type=\"Machine\" os_index=\"0\"",
      Sets(all_pus, all_nodes), " allowed_cpuset=\"", Mask(all_pus), "\" allowed_nodeset=\"",
      Mask(all_nodes), "\">");
  for (size_t i = 0; i < packages.size(); ++i) {
    const Package& p = packages[i];
    xml += StrCat("<object type=\"Package\" os_index=\"", i, "\"", Sets(p.pus, p.nodes), ">");
    for (unsigned node : p.nodes) {
      xml += StrCat("<object type=\"NUMANode\" os_index=\"", node, "\"", Sets(p.pus, {node}), "/>");
    }
    for (unsigned pu : p.pus) {
      xml +=
          StrCat("<object type=\"Core\" os_index=\"", pu, "\"", Sets({pu}, p.nodes), ">",
                 "<object type=\"PU\" os_index=\"", pu, "\"", Sets({pu}, p.nodes), "/></object>");
    }
    xml += p.io + "</object>";
  }
  return xml + machine_io + "</object></topology>\n";
}

// Two packages, one NUMA node each (CPUs 0-1 and 2-3):
//   package 0: Ethernet NIC eth0;
//   package 1: ConnectX mlx5_0 with its netdev ib0;
//   machine:   mlx5_9 on a PCI device hwloc attaches to the machine (near both nodes), and siw0,
//              an OpenFabrics device without a PCI parent.
Result<Topology> TwoNodesWithDevices() {
  return Topology::LoadXmlText(MachineXml(
      {{{0}, {0, 1}, PciDevice("0000:01:00.0", "0200", Network("eth0"))},
       {{1}, {2, 3}, PciDevice("0000:81:00.0", "0207", OpenFabrics("mlx5_0") + Network("ib0"))}},
      PciDevice("0000:00:05.0", "0207", OpenFabrics("mlx5_9")) + OpenFabrics("siw0")));
}

// ---------------------------------------------------------------------------------------------
// Synthetic topologies

TEST(TopologyTest, SyntheticOneNode) {
  auto topology = Topology::LoadSynthetic("package:1 [numa] core:2 pu:1");
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_EQ(topology->numa_nodes(), 1);
  EXPECT_FALSE(topology->is_this_system());
  EXPECT_EQ(topology->Summary(), "1 NUMA node: 0 (CPUs 0-1)");
}

TEST(TopologyTest, SyntheticTwoNodes) {
  auto topology = Topology::LoadSynthetic("package:2 [numa] core:2 pu:1");
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_EQ(topology->numa_nodes(), 2);
  EXPECT_EQ(topology->Summary(), "2 NUMA nodes: 0 (CPUs 0-1), 1 (CPUs 2-3)");
  // Moving keeps the one hwloc topology alive (ASan: no double destroy, no leak).
  Topology moved = std::move(topology).value();
  EXPECT_EQ(moved.numa_nodes(), 2);
}

TEST(TopologyTest, SyntheticWithoutNumaLevelHasOneNode) {
  auto topology = Topology::LoadSynthetic("core:4 pu:2");
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_EQ(topology->numa_nodes(), 1);
}

TEST(TopologyTest, BadSyntheticDescriptionIsInvalidArgument) {
  auto topology = Topology::LoadSynthetic("package:2 gizmo:3");
  EXPECT_TRUE(HasError(topology.status(), StatusCode::kInvalidArgument, "package:2 gizmo:3"));
}

TEST(TopologyTest, SyntheticTopologyHasNoRdmaDevices) {
  auto topology = Topology::LoadSynthetic("package:2 [numa] core:2 pu:1");
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice("mlx5_0");
  EXPECT_TRUE(HasError(choice.status(), StatusCode::kNotFound, "'mlx5_0'"));
  EXPECT_TRUE(HasError(choice.status(), StatusCode::kNotFound, "it sees: none"));
}

TEST(TopologyTest, BindingOnAnotherSystemIsFailedPrecondition) {
  auto topology = Topology::LoadSynthetic("package:2 [numa] core:2 pu:1");
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_TRUE(HasError(topology->BindCurrentThreadToNuma(1), StatusCode::kFailedPrecondition,
                       "NUMA node 1 (CPUs 2-3): the topology describes another system"));
  std::vector<std::byte> buffer(4096);
  EXPECT_TRUE(HasError(topology->BindMemoryToNuma(buffer.data(), buffer.size(), 0),
                       StatusCode::kFailedPrecondition, "another system"));
}

TEST(TopologyTest, BadNodeIsInvalidArgumentNamingIt) {
  auto topology = Topology::LoadSynthetic("package:2 [numa] core:2 pu:1");
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_TRUE(HasError(topology->BindCurrentThreadToNuma(-1), StatusCode::kInvalidArgument,
                       "NUMA node -1 does not exist (this topology has nodes 0-1)"));
  EXPECT_TRUE(HasError(topology->BindCurrentThreadToNuma(2), StatusCode::kInvalidArgument,
                       "NUMA node 2 does not exist"));
  std::vector<std::byte> buffer(4096);
  EXPECT_TRUE(HasError(topology->BindMemoryToNuma(buffer.data(), buffer.size(), 7),
                       StatusCode::kInvalidArgument, "NUMA node 7 does not exist"));
  EXPECT_TRUE(HasError(topology->BindMemoryToNuma(buffer.data(), buffer.size(), -3),
                       StatusCode::kInvalidArgument, "NUMA node -3 does not exist"));
  EXPECT_TRUE(HasError(topology->BindMemoryToNuma(nullptr, 4096, 0), StatusCode::kInvalidArgument,
                       "null address"));
  EXPECT_TRUE(HasError(topology->BindMemoryToNuma(buffer.data(), 0, 0),
                       StatusCode::kInvalidArgument, "0 bytes"));
}

// ---------------------------------------------------------------------------------------------
// XML topologies: where RDMA devices sit

TEST(TopologyTest, PciDeviceOnSecondNodeIsChosen) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_EQ(topology->numa_nodes(), 2);
  auto choice = topology->NumaNodeOfRdmaDevice("mlx5_0");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_TRUE(choice->bind());
  EXPECT_EQ(choice->numa_node, 1);
  EXPECT_EQ(choice->device_node, 1);
  EXPECT_EQ(choice->cpus, "2-3");
  EXPECT_EQ(choice->reason,
            "mlx5_0 on NUMA node 1 of 2 (CPUs 2-3): store, buffers and progress thread bound "
            "there");
}

TEST(TopologyTest, DeviceNearEveryNodeChoosesNothing) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice("mlx5_9");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_FALSE(choice->bind());
  EXPECT_EQ(choice->device_node, -1);
  EXPECT_EQ(choice->cpus, "");
  EXPECT_EQ(choice->reason, "mlx5_9 is equally near all 2 NUMA nodes: no binding");
}

TEST(TopologyTest, DeviceWithoutPciParentIsVirtual) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice("siw0");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_FALSE(choice->bind());
  EXPECT_EQ(choice->reason, "siw0: virtual device, no NUMA locality; 2 NUMA nodes: no binding");
}

TEST(TopologyTest, VirtualDeviceOverPciNicTakesTheNicsNode) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  // Soft-RoCE over a physical NIC: hwloc does not list rxe0, the caller names its netdev.
  auto over_eth0 = topology->NumaNodeOfRdmaDevice("rxe0", "eth0");
  ASSERT_TRUE(over_eth0.ok()) << over_eth0.status();
  EXPECT_EQ(over_eth0->numa_node, 0);
  EXPECT_EQ(over_eth0->cpus, "0-1");
  EXPECT_EQ(over_eth0->reason,
            "rxe0 over eth0 on NUMA node 0 of 2 (CPUs 0-1): store, buffers and progress thread "
            "bound there");
  auto siw_over_ib0 = topology->NumaNodeOfRdmaDevice("siw0", "ib0");
  ASSERT_TRUE(siw_over_ib0.ok()) << siw_over_ib0.status();
  EXPECT_EQ(siw_over_ib0->numa_node, 1);
}

TEST(TopologyTest, UnknownNetdevIsNotFoundNamingIt) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice("rxe0", "veth0");
  EXPECT_TRUE(HasError(choice.status(), StatusCode::kNotFound,
                       "network interface 'veth0' of RDMA device 'rxe0': hwloc sees no network "
                       "device of that name (it sees: eth0, ib0)"));
}

TEST(TopologyTest, UnknownDeviceIsNotFoundListingTheDevicesSeen) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice("mlx4_7");
  EXPECT_TRUE(HasError(choice.status(), StatusCode::kNotFound,
                       "RDMA device 'mlx4_7': hwloc sees no OpenFabrics device of that name (it "
                       "sees: mlx5_0, mlx5_9, siw0)"));
}

TEST(TopologyTest, BadNamesAreInvalidArgument) {
  auto topology = TwoNodesWithDevices();
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_TRUE(HasError(topology->NumaNodeOfRdmaDevice("").status(), StatusCode::kInvalidArgument,
                       "'' is not an RDMA device name"));
  EXPECT_TRUE(HasError(topology->NumaNodeOfRdmaDevice("../mlx5_0").status(),
                       StatusCode::kInvalidArgument, "'../mlx5_0'"));
  EXPECT_TRUE(HasError(topology->NumaNodeOfRdmaDevice("rxe0", "..").status(),
                       StatusCode::kInvalidArgument, "'..' is not a network interface name"));
}

TEST(TopologyTest, OneNodeMachineReportsTheNodeButBindsNothing) {
  auto topology = Topology::LoadXmlText(
      MachineXml({{{0}, {0, 1, 2, 3}, PciDevice("0000:03:00.0", "0207", OpenFabrics("mlx5_0"))}}));
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_EQ(topology->numa_nodes(), 1);
  auto choice = topology->NumaNodeOfRdmaDevice("mlx5_0");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_FALSE(choice->bind());
  EXPECT_EQ(choice->device_node, 0);
  EXPECT_EQ(choice->reason, "mlx5_0 on NUMA node 0 (CPUs 0-3); 1 NUMA node: no binding");
}

TEST(TopologyTest, DeviceNearSomeNodesChoosesTheLowest) {
  // Two packages of two NUMA nodes each (sub-NUMA clustering); the HCA hangs off package 1.
  auto topology = Topology::LoadXmlText(
      MachineXml({{{0, 1}, {0, 1}, ""},
                  {{2, 3}, {2, 3}, PciDevice("0000:c1:00.0", "0207", OpenFabrics("mlx5_1"))}}));
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_EQ(topology->numa_nodes(), 4);
  auto choice = topology->NumaNodeOfRdmaDevice("mlx5_1");
  ASSERT_TRUE(choice.ok()) << choice.status();
  EXPECT_EQ(choice->numa_node, 2);
  EXPECT_EQ(choice->cpus, "2-3");
  EXPECT_EQ(choice->reason,
            "mlx5_1 near NUMA nodes 2-3 of 4; node 2 (CPUs 2-3) chosen: store, buffers and "
            "progress thread bound there");
}

TEST(TopologyTest, XmlErrorsNameTheSource) {
  auto missing = Topology::LoadXml("/nonexistent/ftengine-topology.xml");
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/nonexistent/ftengine-topology.xml"),
            std::string_view::npos)
      << missing.status();
  auto garbage = Topology::LoadXmlText("this is not XML");
  EXPECT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find("XML topology text"), std::string_view::npos)
      << garbage.status();
}

// ---------------------------------------------------------------------------------------------
// This machine

TEST(TopologyRealTest, LoadsThisMachine) {
  auto topology = Topology::Load();
  ASSERT_TRUE(topology.ok()) << topology.status();
  EXPECT_TRUE(topology->is_this_system());
  EXPECT_GE(topology->numa_nodes(), 1);
  std::cout << "this machine: " << topology->Summary() << "\n";
}

TEST(TopologyRealTest, UnknownDeviceIsNotFoundNamingIt) {
  auto topology = Topology::Load();
  ASSERT_TRUE(topology.ok()) << topology.status();
  auto choice = topology->NumaNodeOfRdmaDevice("ftengine_no_such_hca9");
  EXPECT_TRUE(HasError(choice.status(), StatusCode::kNotFound,
                       "RDMA device 'ftengine_no_such_hca9': hwloc sees no OpenFabrics device of "
                       "that name (it sees: "));
  EXPECT_TRUE(HasError(choice.status(), StatusCode::kNotFound, "/sys/class/infiniband"));
  std::cout << choice.status() << "\n";
}

TEST(TopologyRealTest, BindsMemoryOfARealBufferToNodeZero) {
  auto topology = Topology::Load();
  ASSERT_TRUE(topology.ok()) << topology.status();
  constexpr size_t kPage = 4096;
  constexpr size_t kBytes = 64 * kPage;
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> buffer(
      static_cast<std::byte*>(std::aligned_alloc(kPage, kBytes)));
  ASSERT_NE(buffer, nullptr);
  // Half touched (MIGRATE moves those pages), half not (the policy places them on first touch).
  for (size_t i = 0; i < kBytes / 2; ++i) buffer.get()[i] = static_cast<std::byte>(i * 7);
  // Node 0 exists on every Linux machine hwloc has seen so far; a topology without it would
  // make this InvalidArgument, which is a failure worth seeing.
  Status status = topology->BindMemoryToNuma(buffer.get(), kBytes, 0);
  if (status.code() == StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << "the kernel refuses memory binding here: " << status;
  }
  ASSERT_TRUE(status.ok()) << status;
  for (size_t i = 0; i < kBytes / 2; ++i) {
    ASSERT_EQ(buffer.get()[i], static_cast<std::byte>(i * 7)) << "byte " << i;
  }
  std::memset(buffer.get() + kBytes / 2, 1, kBytes / 2);
}

TEST(TopologyRealTest, BindsAThreadToNodeZero) {
  auto topology = Topology::Load();
  ASSERT_TRUE(topology.ok()) << topology.status();
  cpu_set_t before;
  ASSERT_EQ(sched_getaffinity(0, sizeof(before), &before), 0);
  Status status;
  cpu_set_t after;
  CPU_ZERO(&after);
  // A thread of its own, so the test runner's affinity stays as it was.
  std::thread thread([&] {
    status = topology->BindCurrentThreadToNuma(0);
    if (status.ok() && sched_getaffinity(0, sizeof(after), &after) != 0) {
      status = Status::Internal("sched_getaffinity: ", std::strerror(errno));
    }
  });
  thread.join();
  if (status.code() == StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << "the kernel refuses thread binding here: " << status;
  }
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_GE(CPU_COUNT(&after), 1);
  cpu_set_t outside;
  CPU_AND(&outside, &after, &before);
  EXPECT_TRUE(CPU_EQUAL(&outside, &after)) << "bound to CPUs the process may not use";
}

// ---------------------------------------------------------------------------------------------
// The rdma Fabric's DeviceLocality (verbs/rdma/locality.h): the decision above, kept with the
// topology that binds it; never a failure.

TEST(DeviceLocalityTest, DeviceOnSecondNodeBindsThere) {
  auto locality = rdma::DecideLocality(TwoNodesWithDevices(), "mlx5_0", "");
  ASSERT_NE(locality, nullptr);
  EXPECT_TRUE(locality->binds());
  EXPECT_EQ(locality->Describe(),
            "mlx5_0 on NUMA node 1 of 2 (CPUs 2-3): store, buffers and progress thread bound "
            "there");
  // It binds, but an XML topology is another system: the Topology's own refusal comes through.
  std::vector<std::byte> buffer(4096);
  EXPECT_TRUE(HasError(locality->BindMemory(buffer.data(), buffer.size()),
                       StatusCode::kFailedPrecondition, "describes another system"));
  EXPECT_TRUE(HasError(locality->BindCurrentThread(), StatusCode::kFailedPrecondition,
                       "binding this thread to NUMA node 1 (CPUs 2-3)"));
}

TEST(DeviceLocalityTest, NetdevOfASoftRoceDeviceDecides) {
  auto locality = rdma::DecideLocality(TwoNodesWithDevices(), "rxe0", "eth0");
  EXPECT_TRUE(locality->binds());
  EXPECT_EQ(locality->Describe(),
            "rxe0 over eth0 on NUMA node 0 of 2 (CPUs 0-1): store, buffers and progress thread "
            "bound there");
}

TEST(DeviceLocalityTest, DeviceNearEveryNodeBindsNothing) {
  auto locality = rdma::DecideLocality(TwoNodesWithDevices(), "mlx5_9", "");
  EXPECT_FALSE(locality->binds());
  EXPECT_EQ(locality->Describe(), "mlx5_9 is equally near all 2 NUMA nodes: no binding");
  EXPECT_TRUE(HasError(locality->BindCurrentThread(), StatusCode::kFailedPrecondition,
                       "binding this thread to the RDMA device's NUMA node: mlx5_9 is equally "
                       "near all 2 NUMA nodes: no binding"));
  int word = 0;
  EXPECT_TRUE(HasError(locality->BindMemory(&word, sizeof(word)), StatusCode::kFailedPrecondition,
                       "binding memory to the RDMA device's NUMA node"));
}

TEST(DeviceLocalityTest, OneNodeMachineBindsNothing) {
  auto locality = rdma::DecideLocality(
      Topology::LoadXmlText(MachineXml(
          {{{0}, {0, 1, 2, 3}, PciDevice("0000:03:00.0", "0207", OpenFabrics("mlx5_0"))}})),
      "mlx5_0", "");
  EXPECT_FALSE(locality->binds());
  EXPECT_EQ(locality->Describe(), "mlx5_0 on NUMA node 0 (CPUs 0-3); 1 NUMA node: no binding");
}

TEST(DeviceLocalityTest, UnknownDeviceIsASentenceNotAFailure) {
  auto locality = rdma::DecideLocality(TwoNodesWithDevices(), "mlx4_7", "");
  EXPECT_FALSE(locality->binds());
  EXPECT_EQ(locality->Describe(),
            "RDMA device 'mlx4_7': hwloc sees no OpenFabrics device of that name (it sees: "
            "mlx5_0, mlx5_9, siw0): no binding");
  auto synthetic =
      rdma::DecideLocality(Topology::LoadSynthetic("package:2 [numa] core:2 pu:1"), "rxe0", "");
  EXPECT_FALSE(synthetic->binds());
  EXPECT_TRUE(synthetic->Describe().ends_with(": no binding")) << synthetic->Describe();
}

TEST(DeviceLocalityTest, TopologyLoadFailureIsASentenceNotAFailure) {
  auto locality = rdma::DecideLocality(Topology::LoadXmlText("this is not XML"), "mlx5_0", "");
  EXPECT_FALSE(locality->binds());
  EXPECT_TRUE(locality->Describe().ends_with(": no binding")) << locality->Describe();
  const Status failed = Topology::LoadXmlText("this is not XML").status();
  EXPECT_EQ(locality->Describe(), StrCat(failed.message(), ": no binding"));
  EXPECT_EQ(locality->BindCurrentThread().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace ft::verbs
