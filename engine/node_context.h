// What every part of one node's engine needs to know and nothing else: the options, the world,
// the current view (epoch, coordinator), the clock, the fabric and the codec. One NodeContext per
// engine, owned by Engine::Impl; the parts hold a reference. Owned by the worker thread after
// Start, except the immutable fields (options, world, clock, fabric and codec pointers).
#ifndef FT_ENGINE_NODE_CONTEXT_H_
#define FT_ENGINE_NODE_CONTEXT_H_

#include <cstdint>
#include <memory>

#include "common/clock.h"
#include "erasure/codec.h"
#include "ftengine/engine.h"
#include "recovery/view.h"
#include "verbs/fabric.h"

namespace ft::internal {

using recovery::NodeId;

struct NodeContext {
  NodeContext(const EngineOptions& engine_options, const WorldInfo& world_info, Clock& node_clock,
              std::unique_ptr<verbs::Fabric> node_fabric,
              std::unique_ptr<erasure::Codec> node_codec)
      : options(engine_options),
        world(world_info),
        view(recovery::View::Initial(world_info.size, world_info.coordinator)),
        clock(node_clock),
        fabric(std::move(node_fabric)),
        codec(std::move(node_codec)) {
    domain =
        options.failure_domain == EngineOptions::kOwnDomain ? world.rank : options.failure_domain;
  }

  Nanos Now() const { return clock.Now(); }
  NodeId rank() const { return world.rank; }
  uint64_t epoch() const { return view.epoch; }
  NodeId coordinator() const { return view.coordinator; }
  bool is_coordinator() const { return world.rank == view.coordinator; }

  const EngineOptions options;
  const WorldInfo world;
  recovery::View view;  // worker-owned
  Clock& clock;
  const std::unique_ptr<verbs::Fabric> fabric;
  const std::unique_ptr<erasure::Codec> codec;
  uint32_t domain = 0;
  // A process started to replace a lost rank: it joins the view the coordinator is installing.
  bool replacement = false;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_NODE_CONTEXT_H_
