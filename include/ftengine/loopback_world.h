// ft::LoopbackWorld: N engines in one process over the built-in loopback fabric, for trying the
// engine, examples, benchmarks and tests without a network.
//
//   ft::LoopbackWorldOptions options;  // nodes = 8, engine options, failure domains, capacities
//   auto world = ft::LoopbackWorld::Create(options);
//   ft::Status s = (*world)->Run([&](uint32_t rank, ft::Engine& engine) -> ft::Status {
//     FT_RETURN_IF_ERROR(engine.Protect(0, state[rank].data(), state[rank].size()));
//     return engine.Checkpoint().status();
//   });
//
// A checkpoint is collective: every node must call Checkpoint() at once, as each would in its own
// process. Run gives each node its own thread for that; calling one engine's Checkpoint() from a
// single thread waits for the others until EngineOptions::timeout.
//
// Thread-safety: Run/RunOn may be called from one thread at a time; inside a body, a node's
// engine is that thread's. size() and engine() may be called from any thread.
// Lifetime: the world owns its engines; an Engine& is valid until the world is destroyed.
#ifndef FTENGINE_LOOPBACK_WORLD_H_
#define FTENGINE_LOOPBACK_WORLD_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/export.h"
#include "ftengine/status.h"

namespace ft {

namespace internal {
struct LoopbackWorldTesting;
}  // namespace internal

// The shortest heartbeat bound (interval x misses) of a loopback world's engines: its nodes share
// this machine's cores, where a worker may wait tens of milliseconds for one; Create raises
// engine.heartbeat_misses to reach it.
inline constexpr std::chrono::milliseconds kLoopbackHeartbeatBound{1000};

struct LoopbackWorldOptions {
  uint32_t nodes = 8;  // at least 2; rank 0 coordinates
  EngineOptions engine;
  // Failure domain of each rank (rack, switch), and of each spare by its number (nodes, nodes +
  // 1, ...); empty: engine.failure_domain for all (by default every node its own domain).
  std::function<uint32_t(uint32_t rank)> domain_of;
  // Store capacity of each rank; empty: engine.store_capacity for all.
  std::function<uint64_t(uint32_t rank)> capacity_of;
  // Idle spares: engines that wait (Engine::WaitForAssignment) to replace a lost rank.
  uint32_t spares = 0;
  // Each spare's EngineOptions::spare_priority, by spare index; empty: engine.spare_priority.
  std::function<uint32_t(uint32_t spare)> spare_priority_of;
};

class FT_EXPORT LoopbackWorld {
 public:
  using Body = std::function<Status(uint32_t rank, Engine& engine)>;

  // Creates the network and the N engines (concurrently: each connects to the coordinator).
  // InvalidArgument naming the value for fewer than 2 nodes or bad engine options; any failure
  // leaves nothing behind.
  static Result<std::unique_ptr<LoopbackWorld>> Create(const LoopbackWorldOptions& options);
  ~LoopbackWorld();  // destroys the engines, then the network
  LoopbackWorld(const LoopbackWorld&) = delete;
  LoopbackWorld& operator=(const LoopbackWorld&) = delete;

  uint32_t size() const;
  // The engine of `rank` (a spare's, once it took the rank); rank >= size() is a programmer
  // error and aborts.
  Engine& engine(uint32_t rank);
  // Idle spare number `index` (< options.spares; programmer error otherwise): it waits in
  // WaitForAssignment() until a rank is lost, then is that rank's engine (until Replace gives
  // the rank a new process: then the spare is gone and calling this is a programmer error).
  Engine& spare(uint32_t index);

  // Runs body(rank, engine) on one thread per node, all at once, and joins them. Returns OK or
  // the error of the lowest rank that failed, prefixed with the rank ("rank 3: ..."). The body
  // must not throw.
  Status Run(const Body& body);

  // Like Run, on the given ranks only (each < size()).
  Status RunOn(const std::vector<uint32_t>& ranks, const Body& body);

  // Faults and recovery without a network (Engine::Recover):
  // Kill: the rank's process dies at once, as under SIGKILL (its engine object stays; its calls
  // fail). The others detect it within the heartbeat bound. InvalidArgument for a bad rank.
  Status Kill(uint32_t rank);
  // Freeze: the rank's process hangs (as under SIGSTOP: its QPs stay up); only the heartbeat
  // tells the others. Thaw: it wakes, finds itself removed, and its calls fail with Aborted.
  Status Freeze(uint32_t rank);
  Status Thaw(uint32_t rank);
  // A new process for a rank that was killed (or frozen: that one is killed first, as one
  // process per rank fits this network): its old engine is destroyed and a replacement
  // engine (engine(rank) from now on) joins the job once the coordinator has noticed the loss
  // (blocks until then, bounded by the engine timeout). Its application then Protects regions
  // of the committed sizes and calls Recover() with the others. Call it while no body uses the
  // rank's old engine (e.g. from that rank's own body, using only the engine returned).
  Result<Engine*> Replace(uint32_t rank);

 private:
  friend struct internal::LoopbackWorldTesting;
  class FT_HIDDEN Impl;
  FT_HIDDEN explicit LoopbackWorld(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ft

#endif  // FTENGINE_LOOPBACK_WORLD_H_
