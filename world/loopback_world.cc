// ft::LoopbackWorld (ftengine/loopback_world.h) and its test hooks (loopback_world_internal.h):
// one loopback network, one engine per rank over its fabric, one thread per rank to run them.
#include "ftengine/loopback_world.h"

#include <thread>

#include "common/check.h"
#include "common/clock.h"
#include "engine/engine_factory.h"
#include "world/loopback_world_internal.h"

namespace ft {

class LoopbackWorld::Impl {
 public:
  explicit Impl(std::unique_ptr<verbs::LoopbackNetwork> network) : network_(std::move(network)) {}
  // Engines (and their fabrics, QPs and registrations) must go before the network.
  ~Impl() {
    spares_.clear();
    engines_.clear();
  }

  // A node's engine over `fabric` (null: a fresh fabric of `rank`, at Create), or replacing a
  // killed process.
  Result<std::unique_ptr<Engine>> MakeEngine(uint32_t rank, bool replacement,
                                             std::unique_ptr<verbs::Fabric> fabric = {}) const;

  // An idle spare's engine on network node `node` (>= the world's size).
  Result<std::unique_ptr<Engine>> MakeSpare(uint32_t node);
  // The fabric of a rank taken over by a new process (a replacement or a spare): the old one is
  // killed if it hangs (one process per rank on this network), then the rank is revived.
  Result<std::unique_ptr<verbs::Fabric>> NewProcessFabric(uint32_t rank);

  internal::LoopbackTestWorldOptions options_;
  std::unique_ptr<verbs::LoopbackNetwork> network_;
  std::vector<std::unique_ptr<Engine>> engines_;
  std::vector<std::unique_ptr<Engine>> spares_;
};

Result<std::unique_ptr<verbs::Fabric>> LoopbackWorld::Impl::NewProcessFabric(uint32_t rank) {
  if (network_->alive(rank) && !network_->frozen(rank)) {
    return Status::FailedPrecondition("rank ", rank,
                                      " is alive: only a killed or frozen rank gets a new process");
  }
  if (network_->frozen(rank)) network_->Kill(rank);
  network_->Revive(rank);
  FT_ASSIGN_OR_RETURN(std::unique_ptr<verbs::Fabric> fabric, network_->CreateFabric(rank));
  if (options_.wrap_fabric) fabric = options_.wrap_fabric(rank, std::move(fabric));
  return fabric;
}

Result<std::unique_ptr<Engine>> LoopbackWorld::Impl::MakeSpare(uint32_t node) {
  FT_ASSIGN_OR_RETURN(std::unique_ptr<verbs::Fabric> fabric, network_->CreateFabric(node));
  const WorldInfo world{node, options_.nodes, 0, options_.spares};
  Clock& clock = options_.clock != nullptr ? *options_.clock : SteadyClock::Default();
  EngineOptions engine_options = options_.engine;
  if (options_.domain_of) engine_options.failure_domain = options_.domain_of(node);
  if (options_.spare_priority_of) {
    engine_options.spare_priority = options_.spare_priority_of(node - options_.nodes);
  }
  return internal::EngineFactory::CreateSpare(
      engine_options, world, std::move(fabric), clock,
      [this](uint32_t rank) -> Result<std::unique_ptr<verbs::Fabric>> {
        // The rank's dead process's engine stays the world's until the spare took its place.
        return NewProcessFabric(rank);
      });
}

Result<std::unique_ptr<Engine>> LoopbackWorld::Impl::MakeEngine(
    uint32_t rank, bool replacement, std::unique_ptr<verbs::Fabric> fabric) const {
  EngineOptions engine_options = options_.engine;
  if (options_.domain_of) engine_options.failure_domain = options_.domain_of(rank);
  if (options_.capacity_of) engine_options.store_capacity = options_.capacity_of(rank);
  if (fabric == nullptr) {
    FT_ASSIGN_OR_RETURN(fabric, network_->CreateFabric(rank));
    if (options_.wrap_fabric) fabric = options_.wrap_fabric(rank, std::move(fabric));
  }
  const WorldInfo world{rank, options_.nodes, 0, options_.spares};
  Clock& clock = options_.clock != nullptr ? *options_.clock : SteadyClock::Default();
  if (replacement) {
    return internal::EngineFactory::CreateReplacement(engine_options, world, std::move(fabric),
                                                      clock);
  }
  return internal::EngineFactory::Create(engine_options, world, std::move(fabric), clock);
}

Status LoopbackWorld::Kill(uint32_t rank) {
  if (rank >= size()) {
    return Status::InvalidArgument("Kill: rank ", rank, " is outside the world of ", size());
  }
  impl_->network_->Kill(rank);
  return Status();
}

Status LoopbackWorld::Freeze(uint32_t rank) {
  if (rank >= size()) {
    return Status::InvalidArgument("Freeze: rank ", rank, " is outside the world of ", size());
  }
  impl_->network_->Freeze(rank);
  return Status();
}

Status LoopbackWorld::Thaw(uint32_t rank) {
  if (rank >= size()) {
    return Status::InvalidArgument("Thaw: rank ", rank, " is outside the world of ", size());
  }
  impl_->network_->Thaw(rank);
  return Status();
}

Result<Engine*> LoopbackWorld::Replace(uint32_t rank) {
  if (rank >= size()) {
    return Status::InvalidArgument("Replace: rank ", rank, " is outside the world of ", size());
  }
  // The new process's fabric first: a hung process is killed then, which releases its worker
  // (destroying its engine before would wait for a thread blocked in the frozen fabric).
  Result<std::unique_ptr<verbs::Fabric>> fabric = impl_->NewProcessFabric(rank);
  if (!fabric.ok()) return fabric.status().WithContext("Replace");
  impl_->engines_[rank].reset();  // the dead process's remains
  for (std::unique_ptr<Engine>& spare : impl_->spares_) {
    // A spare that had taken the rank was that process: engine(rank) is the new one from now on.
    if (spare && spare->world().rank == rank) spare.reset();
  }
  FT_ASSIGN_OR_RETURN(impl_->engines_[rank],
                      impl_->MakeEngine(rank, true, std::move(fabric).value()));
  return impl_->engines_[rank].get();
}

LoopbackWorld::LoopbackWorld(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LoopbackWorld::~LoopbackWorld() = default;

uint32_t LoopbackWorld::size() const { return static_cast<uint32_t>(impl_->engines_.size()); }

Engine& LoopbackWorld::engine(uint32_t rank) {
  FT_CHECK_MSG(rank < size(), "LoopbackWorld::engine: rank outside the world");
  for (const std::unique_ptr<Engine>& spare : impl_->spares_) {
    if (spare && spare->world().rank == rank) return *spare;  // it took the rank
  }
  return *impl_->engines_[rank];
}

Engine& LoopbackWorld::spare(uint32_t index) {
  FT_CHECK_MSG(index < impl_->spares_.size(), "LoopbackWorld::spare: no such spare");
  FT_CHECK_MSG(impl_->spares_[index] != nullptr,
               "LoopbackWorld::spare: this spare took a rank whose process was replaced");
  return *impl_->spares_[index];
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
      threads.emplace_back([&, i] { statuses[i] = body(ranks[i], engine(ranks[i])); });
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
  FT_ASSIGN_OR_RETURN(
      auto network, verbs::LoopbackNetwork::Create(static_cast<int>(options.nodes + options.spares),
                                                   options.fabric));
  auto impl = std::make_unique<LoopbackWorld::Impl>(std::move(network));
  impl->options_ = options;
  impl->engines_.resize(options.nodes);
  std::vector<Status> statuses(options.nodes);
  {
    std::vector<std::jthread> threads;
    threads.reserve(options.nodes);
    for (uint32_t rank = 0; rank < options.nodes; ++rank) {
      threads.emplace_back([&, rank] {
        auto engine = impl->MakeEngine(rank, /*replacement=*/false);
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
  // The spares connect to the running coordinator, which dials them one by one.
  impl->spares_.resize(options.spares);
  std::vector<Status> spare_statuses(options.spares);
  {
    std::vector<std::jthread> threads;
    for (uint32_t i = 0; i < options.spares; ++i) {
      threads.emplace_back([&, i] {
        auto spare = impl->MakeSpare(options.nodes + i);
        if (!spare.ok()) {
          spare_statuses[i] = spare.status();
          return;
        }
        impl->spares_[i] = std::move(spare).value();
      });
    }
  }
  for (uint32_t i = 0; i < options.spares; ++i) {
    if (!spare_statuses[i].ok()) return spare_statuses[i].WithContext(StrCat("spare ", i));
  }
  return std::unique_ptr<LoopbackWorld>(new LoopbackWorld(std::move(impl)));
}

verbs::LoopbackNetwork& LoopbackWorldTesting::network(LoopbackWorld& world) {
  return *world.impl_->network_;
}

}  // namespace internal
}  // namespace ft
