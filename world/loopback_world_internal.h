// The test-only side of ft::LoopbackWorld: what the public ftengine/loopback_world.h cannot
// offer because it speaks verbs (the loopback network's options and its Kill/Partition/delay
// controls, a decorator of each node's fabric). Tests and tools of this repository only; never
// installed.
#ifndef FT_WORLD_LOOPBACK_WORLD_INTERNAL_H_
#define FT_WORLD_LOOPBACK_WORLD_INTERNAL_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "common/clock.h"
#include "ftengine/loopback_world.h"
#include "verbs/fabric.h"
#include "verbs/loopback/loopback.h"

namespace ft::internal {

struct LoopbackTestWorldOptions : LoopbackWorldOptions {
  verbs::LoopbackOptions fabric;
  // The engines' clock (a ManualClock drives deadlines without sleeps); null: the steady clock.
  // Must outlive the world.
  Clock* clock = nullptr;
  // Optional decorator of each node's fabric (fault injection, tracing).
  std::function<std::unique_ptr<verbs::Fabric>(uint32_t rank, std::unique_ptr<verbs::Fabric>)>
      wrap_fabric;
};

struct LoopbackWorldTesting {
  // LoopbackWorld::Create with the hooks. A distinct name on purpose: passing test options to
  // LoopbackWorld::Create would silently drop them.
  static Result<std::unique_ptr<LoopbackWorld>> Create(const LoopbackTestWorldOptions& options);
  // The world's network: Kill, Partition, SetRandomDelays, seed_description.
  static verbs::LoopbackNetwork& network(LoopbackWorld& world);
};

}  // namespace ft::internal

#endif  // FT_WORLD_LOOPBACK_WORLD_INTERNAL_H_
