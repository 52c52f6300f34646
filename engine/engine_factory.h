// How the composition layer (world/) and the engine's own tests make an engine over a Fabric
// they built. Engine::Create(options, world, fabric) is private in the installed engine.h: an
// application has no Fabric to give (no verbs header is installed), so it gets its engines from
// Engine::CreateFromEnvironment or ft::LoopbackWorld instead.
#ifndef FT_ENGINE_ENGINE_FACTORY_H_
#define FT_ENGINE_ENGINE_FACTORY_H_

#include <memory>
#include <utility>

#include "ftengine/engine.h"
#include "ftengine/status.h"
#include "verbs/fabric.h"

namespace ft::internal {

struct EngineFactory {
  // Creates the engine of node world.rank and connects it to the coordinator (blocks until the
  // coordinator's engine exists too, bounded by options.timeout). Takes ownership of the fabric.
  // Bad options: InvalidArgument naming the value (k + m >= world.size says the largest k + m
  // the world allows); a null fabric: InvalidArgument.
  static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                const WorldInfo& world,
                                                std::unique_ptr<verbs::Fabric> fabric) {
    return Engine::Create(options, world, std::move(fabric));
  }
  // The same on an injected clock (common/clock.h), which must outlive the engine.
  static Result<std::unique_ptr<Engine>> Create(const EngineOptions& options,
                                                const WorldInfo& world,
                                                std::unique_ptr<verbs::Fabric> fabric,
                                                Clock& clock) {
    return Engine::Create(options, world, std::move(fabric), clock);
  }
  // A process replacing the lost rank world.rank: it connects to the coordinator, which admits
  // it into the next view; the application Protects its regions and calls Recover().
  static Result<std::unique_ptr<Engine>> CreateReplacement(const EngineOptions& options,
                                                           const WorldInfo& world,
                                                           std::unique_ptr<verbs::Fabric> fabric,
                                                           Clock& clock) {
    return Engine::Create(options, world, std::move(fabric), clock, /*replacement=*/true);
  }
  // An idle spare (world.rank: its spare number, >= world.size) connected to the coordinator over
  // `fabric`; once assigned a rank it rebuilds itself over fabric_for(rank).
  static Result<std::unique_ptr<Engine>> CreateSpare(const EngineOptions& options,
                                                     const WorldInfo& world,
                                                     std::unique_ptr<verbs::Fabric> fabric,
                                                     Clock& clock, Engine::FabricFor fabric_for) {
    return Engine::CreateSpare(options, world, std::move(fabric), clock, std::move(fabric_for));
  }
};

}  // namespace ft::internal

#endif  // FT_ENGINE_ENGINE_FACTORY_H_
