// LoopbackWorld: N engines in one process over the loopback fabric, for ftbench, tests and
// examples. Each node's application code runs on its own thread (Run), as it would in its own
// process; threads are cheap enough for 1024 nodes with small images.
#ifndef FT_ENGINE_LOOPBACK_WORLD_H_
#define FT_ENGINE_LOOPBACK_WORLD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "ftengine/engine.h"
#include "verbs/loopback/loopback.h"

namespace ft {

struct LoopbackWorldOptions {
  uint32_t nodes = 8;
  EngineOptions engine;
  // Failure domain of each rank (rack, switch); empty: every node is its own domain.
  std::function<uint32_t(uint32_t rank)> domain_of;
  // Store capacity of each rank; empty: engine.store_capacity for all.
  std::function<uint64_t(uint32_t rank)> capacity_of;
  verbs::LoopbackOptions fabric;
  // The engines' clock (tests: a ManualClock drives deadlines); null: the steady clock. Must
  // outlive the world.
  Clock* clock = nullptr;
  // Optional decorator of each node's fabric (fault injection, tracing in tests).
  std::function<std::unique_ptr<verbs::Fabric>(uint32_t rank, std::unique_ptr<verbs::Fabric>)>
      wrap_fabric;
};

class LoopbackWorld {
 public:
  // Creates the network and the N engines (concurrently: each connects to the coordinator).
  static Result<std::unique_ptr<LoopbackWorld>> Create(const LoopbackWorldOptions& options);
  ~LoopbackWorld();  // destroys the engines, then the network

  uint32_t size() const { return static_cast<uint32_t>(engines_.size()); }
  Engine& engine(uint32_t rank) { return *engines_.at(rank); }
  verbs::LoopbackNetwork& network() { return *network_; }

  // Runs body(rank, engine) on one thread per node, all at once, and joins them. Returns OK or
  // the error of the lowest rank that failed, prefixed with the rank.
  Status Run(const std::function<Status(uint32_t rank, Engine& engine)>& body);

  // Like Run, on the given ranks only (e.g. the survivors after a Kill).
  Status RunOn(const std::vector<uint32_t>& ranks,
               const std::function<Status(uint32_t rank, Engine& engine)>& body);

  struct PrivateTag {};
  LoopbackWorld(PrivateTag, std::unique_ptr<verbs::LoopbackNetwork> network);

 private:
  std::unique_ptr<verbs::LoopbackNetwork> network_;
  std::vector<std::unique_ptr<Engine>> engines_;
};

}  // namespace ft

#endif  // FT_ENGINE_LOOPBACK_WORLD_H_
