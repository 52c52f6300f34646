// ft::LoopbackWorld (ftengine/loopback_world.h) and its test hooks (loopback_world_internal.h):
// one loopback network, one engine per rank over its fabric, one thread per rank to run them.
#include "ftengine/loopback_world.h"

#include <thread>

#include "common/check.h"
#include "engine/engine_factory.h"
#include "world/loopback_world_internal.h"

namespace ft {

class LoopbackWorld::Impl {
 public:
  explicit Impl(std::unique_ptr<verbs::LoopbackNetwork> network) : network_(std::move(network)) {}
  // Engines (and their fabrics, QPs and registrations) must go before the network.
  ~Impl() { engines_.clear(); }

  std::unique_ptr<verbs::LoopbackNetwork> network_;
  std::vector<std::unique_ptr<Engine>> engines_;
};

LoopbackWorld::LoopbackWorld(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LoopbackWorld::~LoopbackWorld() = default;

uint32_t LoopbackWorld::size() const { return static_cast<uint32_t>(impl_->engines_.size()); }

Engine& LoopbackWorld::engine(uint32_t rank) {
  FT_CHECK_MSG(rank < size(), "LoopbackWorld::engine: rank outside the world");
  return *impl_->engines_[rank];
}

Result<std::unique_ptr<LoopbackWorld>> LoopbackWorld::Create(const LoopbackWorldOptions& options) {
  internal::LoopbackTestWorldOptions plain;
  static_cast<LoopbackWorldOptions&>(plain) = options;
  // Every node of this world shares this machine's cores: a worker waiting tens of milliseconds
  // for one is no failure, so the heartbeat's bound is at least kLoopbackHeartbeatBound.
  EngineOptions& engine = plain.engine;
  if (engine.heartbeat_interval.count() > 0 &&
      engine.heartbeat_interval * engine.heartbeat_misses < kLoopbackHeartbeatBound) {
    engine.heartbeat_misses = static_cast<int>(
        (kLoopbackHeartbeatBound + engine.heartbeat_interval - std::chrono::milliseconds(1)) /
        engine.heartbeat_interval);
  }
  return internal::LoopbackWorldTesting::Create(plain);
}

Status LoopbackWorld::Run(const Body& body) {
  std::vector<uint32_t> ranks(size());
  for (uint32_t rank = 0; rank < size(); ++rank) ranks[rank] = rank;
  return RunOn(ranks, body);
}

Status LoopbackWorld::RunOn(const std::vector<uint32_t>& ranks, const Body& body) {
  for (uint32_t rank : ranks) {
    if (rank >= size()) {
      return Status::InvalidArgument("RunOn: rank ", rank, " is outside the world of ", size());
    }
  }
  std::vector<Status> statuses(ranks.size());
  {
    // jthreads join on destruction: if starting one fails, those already running are joined
    // before the exception leaves (a joinable std::thread would terminate the program).
    std::vector<std::jthread> threads;
    threads.reserve(ranks.size());
    for (size_t i = 0; i < ranks.size(); ++i) {
      threads.emplace_back([&, i] { statuses[i] = body(ranks[i], *impl_->engines_[ranks[i]]); });
    }
  }
  for (size_t i = 0; i < ranks.size(); ++i) {
    if (!statuses[i].ok()) return statuses[i].WithContext(StrCat("rank ", ranks[i]));
  }
  return Status();
}

namespace internal {

Result<std::unique_ptr<LoopbackWorld>> LoopbackWorldTesting::Create(
    const LoopbackTestWorldOptions& options) {
  if (options.nodes < 2) {
    return Status::InvalidArgument("nodes = ", options.nodes, ": a world needs at least 2");
  }
  FT_ASSIGN_OR_RETURN(auto network, verbs::LoopbackNetwork::Create(static_cast<int>(options.nodes),
                                                                   options.fabric));
  auto impl = std::make_unique<LoopbackWorld::Impl>(std::move(network));
  impl->engines_.resize(options.nodes);
  std::vector<Status> statuses(options.nodes);
  {
    std::vector<std::jthread> threads;
    threads.reserve(options.nodes);
    for (uint32_t rank = 0; rank < options.nodes; ++rank) {
      threads.emplace_back([&, rank] {
        EngineOptions engine_options = options.engine;
        if (options.domain_of) engine_options.failure_domain = options.domain_of(rank);
        if (options.capacity_of) engine_options.store_capacity = options.capacity_of(rank);
        auto fabric = impl->network_->CreateFabric(rank);
        if (!fabric.ok()) {
          statuses[rank] = fabric.status();
          return;
        }
        std::unique_ptr<verbs::Fabric> node_fabric = std::move(fabric).value();
        if (options.wrap_fabric) node_fabric = options.wrap_fabric(rank, std::move(node_fabric));
        const WorldInfo world{rank, options.nodes, 0};
        auto engine = options.clock != nullptr
                          ? EngineFactory::Create(engine_options, world, std::move(node_fabric),
                                                  *options.clock)
                          : EngineFactory::Create(engine_options, world, std::move(node_fabric));
        if (!engine.ok()) {
          statuses[rank] = engine.status();
          return;
        }
        impl->engines_[rank] = std::move(engine).value();
      });
    }
  }
  for (uint32_t rank = 0; rank < options.nodes; ++rank) {
    if (!statuses[rank].ok()) return statuses[rank].WithContext(StrCat("rank ", rank));
  }
  return std::unique_ptr<LoopbackWorld>(new LoopbackWorld(std::move(impl)));
}

verbs::LoopbackNetwork& LoopbackWorldTesting::network(LoopbackWorld& world) {
  return *world.impl_->network_;
}

}  // namespace internal
}  // namespace ft
