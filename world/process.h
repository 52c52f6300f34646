// One process per node: the rdma Fabric of a process launched by ftrun, srun or mpirun.
//
// Addresses. The coordinator listens with rdmacm at FT_COORDINATOR (host:port). Every other
// process listens at FT_LISTEN when set ("host" or "host:port"), else on the local address that
// routes toward the coordinator, on a port the system picks. A process knows only two addresses
// at start, its own and the coordinator's; it sends its own to the coordinator when it connects,
// and the coordinator's GO tells it where its partners listen (the holders and hosted owners of
// the placement), so no process needs the whole world's address list.
//
// Connect dials from the higher rank to the lower one, so the coordinator must be rank 0 (it is
// the one every process can dial): FT_COORDINATOR_RANK other than 0 is refused.
#ifndef FT_WORLD_PROCESS_H_
#define FT_WORLD_PROCESS_H_

#include <functional>
#include <memory>
#include <string>

#include "ftengine/bootstrap.h"
#include "ftengine/engine.h"
#include "ftengine/status.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"

namespace ft {

using Getenv = std::function<const char*(const char*)>;

// Where this process listens, as "host:port" (port 0: the system picks). InvalidArgument naming
// FT_LISTEN when it is malformed; Unavailable when no local address routes to the coordinator.
Result<std::string> ListenAddress(const Bootstrap& bootstrap, const Getenv& getenv = {});

// The address book a process starts with: itself at `listen`, the coordinator at
// FT_COORDINATOR; every other node NotFound until the coordinator's GO names it.
verbs::AddressBook ProcessAddressBook(const Bootstrap& bootstrap, std::string listen);

struct ProcessFabric {
  Bootstrap bootstrap;
  WorldInfo world;
  std::unique_ptr<verbs::Fabric> fabric;
  verbs::RdmaOptions rdma;  // what it was made with (an idle spare makes its rank's fabric so)
};

// Bootstraps from the environment and creates this process's rdma Fabric. Errors name the
// variable or the device that is missing.
Result<ProcessFabric> CreateProcessFabric(const verbs::RdmaOptions& rdma = {},
                                          const Getenv& getenv = {});
Result<ProcessFabric> CreateProcessFabric(const Bootstrap& bootstrap,
                                          const verbs::RdmaOptions& rdma,
                                          const Getenv& getenv = {});

// `options` with the launcher's overrides applied: FT_HEARTBEAT_INTERVAL_MS,
// FT_HEARTBEAT_MISSES and FT_STARTUP_TIMEOUT_MS (positive integers), so that a job can be tuned
// to its machine (an emulated or oversubscribed one needs a longer bound) without rebuilding the
// application; and FT_SPARE_PRIORITY.
// InvalidArgument naming the variable when one is malformed.
Result<EngineOptions> OptionsFromEnvironment(const EngineOptions& options,
                                             const Getenv& getenv = {});

// Engine::Create on a process's fabric, with `options` as the environment overrides them
// (OptionsFromEnvironment); a coordinator that does not answer in time gets an error
// naming FT_COORDINATOR and the timeout.
Result<std::unique_ptr<Engine>> CreateProcessEngine(ProcessFabric process,
                                                    const EngineOptions& options);

}  // namespace ft

#endif  // FT_WORLD_PROCESS_H_
