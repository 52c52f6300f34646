// The Fabric conformance suite on the loopback backend.
#include <memory>
#include <string>

#include "common/check.h"
#include "test/fabric_conformance.h"
#include "verbs/loopback/loopback.h"

namespace ft::verbs::conformance {
namespace {

class LoopbackBackend final : public FabricBackend {
 public:
  explicit LoopbackBackend(LoopbackOptions options) {
    auto network = LoopbackNetwork::Create(4, options);
    FT_CHECK_MSG(network.ok(), "LoopbackNetwork::Create failed");
    network_ = std::move(network).value();
  }

  int nodes() const override { return network_->nodes(); }
  Result<std::unique_ptr<Fabric>> CreateNode(NodeId node) override {
    return network_->CreateFabric(node);
  }
  // Loopback kills in place; the test destroys the dead node's handles later.
  void KillNode(NodeId node, NodeHandles& /*handles*/) override { network_->Kill(node); }
  std::string Describe() const override { return network_->seed_description(); }
  Nanos SlowDeadline() const override { return std::chrono::seconds(10); }

 private:
  std::unique_ptr<LoopbackNetwork> network_;
};

std::unique_ptr<FabricBackend> MakeLoopback() {
  return std::make_unique<LoopbackBackend>(LoopbackOptions{});
}

// Small queues and CQ: the same contract at the edges.
std::unique_ptr<FabricBackend> MakeSmallLoopback() {
  LoopbackOptions options;
  options.seed = 7;
  options.limits.max_send_wr = 8;
  options.limits.max_recv_wr = 8;
  options.limits.max_inline_bytes = 16;
  options.limits.max_message_bytes = 1 << 20;
  options.limits.max_private_data = 32;
  options.rnr_retry_steps = 3;
  return std::make_unique<LoopbackBackend>(options);
}

INSTANTIATE_TEST_SUITE_P(Loopback, FabricConformanceTest,
                         ::testing::Values(BackendParam{"loopback", &MakeLoopback},
                                           BackendParam{"loopback_small", &MakeSmallLoopback}),
                         BackendParamName);

}  // namespace
}  // namespace ft::verbs::conformance
