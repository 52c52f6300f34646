// The Fabric conformance suite on the loopback backend, bare and wrapped in a FaultyFabric with
// no rules (which must be transparent).
#include <memory>
#include <string>

#include "common/check.h"
#include "test/fabric_conformance.h"
#include "verbs/faulty/faulty.h"
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
LoopbackOptions SmallOptions() {
  LoopbackOptions options;
  options.seed = 7;
  options.limits.max_send_wr = 8;
  options.limits.max_recv_wr = 8;
  options.limits.max_inline_bytes = 16;
  options.limits.max_message_bytes = 1 << 20;
  options.limits.max_private_data = 32;
  options.rnr_retry_steps = 3;
  return options;
}

std::unique_ptr<FabricBackend> MakeSmallLoopback() {
  return std::make_unique<LoopbackBackend>(SmallOptions());
}

// faulty(loopback) with a controller that has no rules: every call is forwarded.
class FaultyLoopbackBackend final : public FabricBackend {
 public:
  explicit FaultyLoopbackBackend(LoopbackOptions options)
      : inner_(options), controller_(std::make_shared<FaultController>(options.seed)) {}

  int nodes() const override { return inner_.nodes(); }
  Result<std::unique_ptr<Fabric>> CreateNode(NodeId node) override {
    FT_ASSIGN_OR_RETURN(auto fabric, inner_.CreateNode(node));
    return std::unique_ptr<Fabric>(std::make_unique<FaultyFabric>(std::move(fabric), controller_));
  }
  void KillNode(NodeId node, NodeHandles& handles) override { inner_.KillNode(node, handles); }
  std::string Describe() const override {
    return inner_.Describe() + " " + controller_->seed_description();
  }
  Nanos SlowDeadline() const override { return inner_.SlowDeadline(); }

 private:
  LoopbackBackend inner_;
  std::shared_ptr<FaultController> controller_;
};

std::unique_ptr<FabricBackend> MakeFaultyLoopback() {
  return std::make_unique<FaultyLoopbackBackend>(LoopbackOptions{});
}

std::unique_ptr<FabricBackend> MakeFaultySmallLoopback() {
  return std::make_unique<FaultyLoopbackBackend>(SmallOptions());
}

INSTANTIATE_TEST_SUITE_P(Loopback, FabricConformanceTest,
                         ::testing::Values(BackendParam{"loopback", &MakeLoopback},
                                           BackendParam{"loopback_small", &MakeSmallLoopback}),
                         BackendParamName);

INSTANTIATE_TEST_SUITE_P(FaultyLoopback, FabricConformanceTest,
                         ::testing::Values(BackendParam{"faulty_loopback", &MakeFaultyLoopback},
                                           BackendParam{"faulty_loopback_small",
                                                        &MakeFaultySmallLoopback}),
                         BackendParamName);

}  // namespace
}  // namespace ft::verbs::conformance
