#include "engine/loopback_world.h"

#include <thread>

namespace ft {

LoopbackWorld::LoopbackWorld(PrivateTag, std::unique_ptr<verbs::LoopbackNetwork> network)
    : network_(std::move(network)) {}

LoopbackWorld::~LoopbackWorld() {
  // Engines (and their fabrics, QPs and registrations) must go before the network.
  engines_.clear();
}

Result<std::unique_ptr<LoopbackWorld>> LoopbackWorld::Create(const LoopbackWorldOptions& options) {
  if (options.nodes < 2) {
    return Status::InvalidArgument("nodes = ", options.nodes, ": a world needs at least 2");
  }
  FT_ASSIGN_OR_RETURN(auto network, verbs::LoopbackNetwork::Create(static_cast<int>(options.nodes),
                                                                   options.fabric));
  auto world = std::make_unique<LoopbackWorld>(PrivateTag{}, std::move(network));
  world->engines_.resize(options.nodes);
  std::vector<Status> statuses(options.nodes);
  std::vector<std::thread> threads;
  threads.reserve(options.nodes);
  for (uint32_t rank = 0; rank < options.nodes; ++rank) {
    threads.emplace_back([&, rank] {
      EngineOptions engine_options = options.engine;
      if (options.domain_of) engine_options.failure_domain = options.domain_of(rank);
      if (options.capacity_of) engine_options.store_capacity = options.capacity_of(rank);
      auto fabric = world->network_->CreateFabric(rank);
      if (!fabric.ok()) {
        statuses[rank] = fabric.status();
        return;
      }
      std::unique_ptr<verbs::Fabric> node_fabric = std::move(fabric).value();
      if (options.wrap_fabric) node_fabric = options.wrap_fabric(rank, std::move(node_fabric));
      auto engine =
          Engine::Create(engine_options, WorldInfo{rank, options.nodes, 0}, std::move(node_fabric),
                         options.clock != nullptr ? *options.clock : SteadyClock::Default());
      if (!engine.ok()) {
        statuses[rank] = engine.status();
        return;
      }
      world->engines_[rank] = std::move(engine).value();
    });
  }
  for (auto& thread : threads) thread.join();
  for (uint32_t rank = 0; rank < options.nodes; ++rank) {
    if (!statuses[rank].ok()) return statuses[rank].WithContext(StrCat("rank ", rank));
  }
  return world;
}

Status LoopbackWorld::Run(const std::function<Status(uint32_t, Engine&)>& body) {
  std::vector<uint32_t> ranks(size());
  for (uint32_t rank = 0; rank < size(); ++rank) ranks[rank] = rank;
  return RunOn(ranks, body);
}

Status LoopbackWorld::RunOn(const std::vector<uint32_t>& ranks,
                            const std::function<Status(uint32_t, Engine&)>& body) {
  std::vector<Status> statuses(ranks.size());
  std::vector<std::thread> threads;
  threads.reserve(ranks.size());
  for (size_t i = 0; i < ranks.size(); ++i) {
    threads.emplace_back([&, i] { statuses[i] = body(ranks[i], *engines_.at(ranks[i])); });
  }
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (!statuses[i].ok()) return statuses[i].WithContext(StrCat("rank ", ranks[i]));
  }
  return Status();
}

}  // namespace ft
