// The Fabric conformance suite on the rdma backend (ctest label `rdma`): every node is an rdma
// Fabric in this one process, listening on the test address with its own port. Without an RDMA
// device every case is skipped, saying why.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "test/fabric_conformance.h"
#include "test/rdma_test_util.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs::conformance {
namespace {

constexpr int kNodes = 4;

class RdmaBackend final : public FabricBackend {
 public:
  RdmaBackend(RdmaOptions options, std::string address, uint16_t base_port)
      : options_(std::move(options)),
        address_(std::move(address)),
        base_port_(base_port),
        book_(PortRangeAddressBook(address_, base_port_, kNodes)) {}

  int nodes() const override { return kNodes; }
  Result<std::unique_ptr<Fabric>> CreateNode(NodeId node) override {
    auto fabric = CreateRdmaFabric(node, options_, book_);
    if (fabric.ok() && device_.empty()) {
      if (auto info = GetRdmaDeviceInfo(**fabric); info.ok()) {
        device_ = StrCat(info->device, " port ", int{info->port}, " gid ", info->gid_index, " (",
                         info->gid_type, "), mtu ", info->active_mtu);
      }
    }
    return fabric;
  }
  // As a process exit: the node's QPs, registrations and device resources are destroyed without
  // a word to anyone (the kernel's CM still tells the peers, as it does for a killed process).
  void KillNode(NodeId /*node*/, NodeHandles& handles) override { handles.Reset(); }
  std::string Describe() const override {
    return StrCat("rdma on ", address_, " ports ", base_port_, "+node, ",
                  device_.empty() ? "device not opened yet" : device_, ", send/recv ",
                  options_.max_send_wr, "/", options_.max_recv_wr, ", inline ",
                  options_.max_inline_bytes);
  }
  // The VM emulates its CPUs: retry budgets take a few times longer than on hardware.
  Nanos SlowDeadline() const override { return std::chrono::seconds(30); }

 private:
  const RdmaOptions options_;
  const std::string address_;
  const uint16_t base_port_;
  const AddressBook book_;
  std::string device_;
};

// Stands in when the tests cannot run: the test is marked skipped before its body runs.
class SkippedBackend final : public FabricBackend {
 public:
  int nodes() const override { return 3; }
  Result<std::unique_ptr<Fabric>> CreateNode(NodeId) override {
    return Status::FailedPrecondition("rdma tests skipped");
  }
  void KillNode(NodeId, NodeHandles&) override {}
  std::string Describe() const override { return "rdma (skipped)"; }
};

void Skip(const std::string& reason) { GTEST_SKIP() << reason; }

std::unique_ptr<FabricBackend> Make(RdmaOptions options, int block) {
  if (const std::string reason = rdma_test::SkipReason(); !reason.empty()) {
    Skip(reason);
    return std::make_unique<SkippedBackend>();
  }
  return std::make_unique<RdmaBackend>(std::move(options), rdma_test::TestAddress(),
                                       rdma_test::BasePort(kNodes, block));
}

std::unique_ptr<FabricBackend> MakeRdma() { return Make(RdmaOptions{}, 0); }

// Small queues: the same contract at the edges.
std::unique_ptr<FabricBackend> MakeSmallRdma() {
  RdmaOptions options;
  options.max_send_wr = 8;
  options.max_recv_wr = 8;
  options.cq_depth = 256;
  options.max_inline_bytes = 16;
  return Make(options, 1);
}

INSTANTIATE_TEST_SUITE_P(Rdma, FabricConformanceTest,
                         ::testing::Values(BackendParam{"rdma", &MakeRdma},
                                           BackendParam{"rdma_small", &MakeSmallRdma}),
                         BackendParamName);

}  // namespace
}  // namespace ft::verbs::conformance
