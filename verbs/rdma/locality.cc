// The rdma backend's DeviceLocality: a NumaChoice and the Topology that binds it (locality.h).
#include "verbs/rdma/locality.h"

#include <string>
#include <utility>

namespace ft::verbs::rdma {
namespace {

class TopologyLocality final : public DeviceLocality {
 public:
  // `topology` is kept only when `choice` binds: nothing else would use it.
  TopologyLocality(std::shared_ptr<const Topology> topology, NumaChoice choice)
      : topology_(std::move(topology)), choice_(std::move(choice)) {}

  std::string Describe() const override { return choice_.reason; }
  bool binds() const override { return topology_ != nullptr && choice_.bind(); }

  Status BindMemory(void* addr, size_t bytes) const override {
    if (!binds()) return NotBinding("binding memory");
    return topology_->BindMemoryToNuma(addr, bytes, choice_.numa_node);
  }

  Status BindCurrentThread() const override {
    if (!binds()) return NotBinding("binding this thread");
    return topology_->BindCurrentThreadToNuma(choice_.numa_node);
  }

 private:
  Status NotBinding(const char* what) const {
    return Status::FailedPrecondition(what, " to the RDMA device's NUMA node: ", choice_.reason);
  }

  const std::shared_ptr<const Topology> topology_;  // null when nothing binds
  const NumaChoice choice_;
};

}  // namespace

std::unique_ptr<DeviceLocality> DecideLocality(Result<std::shared_ptr<const Topology>> topology,
                                               std::string_view device, std::string_view netdev) {
  // The same rule and sentences as the engine applied before the Fabric owned the decision.
  if (!topology.ok()) {
    NumaChoice none;
    none.reason = StrCat(topology.status().message(), ": no binding");
    return std::make_unique<TopologyLocality>(nullptr, std::move(none));
  }
  Result<NumaChoice> choice = (*topology)->NumaNodeOfRdmaDevice(device, netdev);
  if (!choice.ok()) {
    NumaChoice none;
    none.reason = StrCat(choice.status().message(), ": no binding");
    return std::make_unique<TopologyLocality>(nullptr, std::move(none));
  }
  std::shared_ptr<const Topology> kept;
  if (choice->bind()) kept = std::move(topology).value();
  return std::make_unique<TopologyLocality>(std::move(kept), std::move(choice).value());
}

std::unique_ptr<DeviceLocality> DecideLocality(Result<Topology> topology, std::string_view device,
                                               std::string_view netdev) {
  if (!topology.ok()) {
    return DecideLocality(Result<std::shared_ptr<const Topology>>(topology.status()), device,
                          netdev);
  }
  return DecideLocality(std::make_shared<const Topology>(std::move(topology).value()), device,
                        netdev);
}

Result<std::shared_ptr<const Topology>> MachineTopology() {
  static const Result<std::shared_ptr<const Topology>> machine =
      []() -> Result<std::shared_ptr<const Topology>> {
    FT_ASSIGN_OR_RETURN(Topology topology, Topology::Load());
    return std::make_shared<const Topology>(std::move(topology));
  }();
  return machine;
}

}  // namespace ft::verbs::rdma
