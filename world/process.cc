// One process per node (world/process.h): its listen address, address book and rdma Fabric, and
// Engine::CreateFromEnvironment, which composes them with the engine.
#include "world/process.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include "common/clock.h"
#include "common/log.h"
#include "engine/engine_factory.h"

namespace ft {
namespace {

const char* Get(const Getenv& getenv, const char* name) {
  const char* value = getenv ? getenv(name) : std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

std::string JoinHostPort(const std::string& host, uint16_t port) {
  const bool v6 = host.find(':') != std::string::npos;
  return v6 ? StrCat("[", host, "]:", port) : StrCat(host, ":", port);
}

// The local address the kernel would send from toward host:port: a connected UDP socket sends
// nothing, but getsockname then names the interface that routes there (IPoIB or the RoCE netdev
// when the coordinator's address is on the RDMA network).
Result<std::string> SourceAddressToward(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
      rc != 0 || found == nullptr) {
    return Status::InvalidArgument("FT_COORDINATOR host \"", host,
                                   "\" does not resolve: ", gai_strerror(rc));
  }
  Status last = Status::Unavailable("no address of FT_COORDINATOR host \"", host, "\"");
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    const bool ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
                    getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
    const int error = errno;
    close(fd);
    if (!ok) {
      last = Status::Unavailable("no local address routes to the coordinator at ",
                                 JoinHostPort(host, port), ": ", std::strerror(error));
      continue;
    }
    char text[INET6_ADDRSTRLEN] = {};
    const void* address =
        local.ss_family == AF_INET6
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
    inet_ntop(local.ss_family, address, text, sizeof(text));
    freeaddrinfo(found);
    return std::string(text);
  }
  freeaddrinfo(found);
  return last;
}

}  // namespace

Result<std::string> ListenAddress(const Bootstrap& bootstrap, const Getenv& getenv) {
  if (!bootstrap.spare && bootstrap.rank == bootstrap.coordinator_rank) {
    return JoinHostPort(bootstrap.coordinator_host, bootstrap.coordinator_port);
  }
  if (const char* listen = Get(getenv, "FT_LISTEN")) {
    const std::string text(listen);
    const bool bracketed = text.front() == '[';
    const size_t colons = std::count(text.begin(), text.end(), ':');
    const bool has_port = bracketed ? text.find("]:") != std::string::npos : colons == 1;
    if (!has_port) {
      if (bracketed) {
        if (text.back() != ']') {
          return Status::InvalidArgument("FT_LISTEN=\"", text,
                                         "\" is not host, host:port, [v6] or [v6]:port");
        }
        return StrCat(text, ":0");
      }
      return JoinHostPort(text, 0);
    }
    FT_ASSIGN_OR_RETURN(auto host_port, ParseHostPort(text, "FT_LISTEN"));
    return JoinHostPort(host_port.first, host_port.second);
  }
  FT_ASSIGN_OR_RETURN(std::string host,
                      SourceAddressToward(bootstrap.coordinator_host, bootstrap.coordinator_port));
  return JoinHostPort(host, 0);
}

verbs::AddressBook ProcessAddressBook(const Bootstrap& bootstrap, std::string listen) {
  return
      [self = bootstrap.rank, coordinator = bootstrap.coordinator_rank, size = bootstrap.size,
       spares = bootstrap.spares, listen = std::move(listen),
       coordinator_address = JoinHostPort(bootstrap.coordinator_host, bootstrap.coordinator_port)](
          verbs::NodeId id) -> Result<std::string> {
        if (id == self) return listen;
        if (id == coordinator) return coordinator_address;
        if (id >= size + spares) {
          return Status::InvalidArgument("node ", id, " is outside the world of ", size, " and ",
                                         spares, " spares");
        }
        return Status::NotFound("node ", id,
                                "'s address is not known yet (the coordinator's GO gives it)");
      };
}

Result<ProcessFabric> CreateProcessFabric(const Bootstrap& bootstrap,
                                          const verbs::RdmaOptions& rdma, const Getenv& getenv) {
  if (bootstrap.coordinator_rank != 0) {
    return Status::InvalidArgument("FT_COORDINATOR_RANK=", bootstrap.coordinator_rank,
                                   ": over rdma the coordinator must be rank 0 (every process "
                                   "dials lower ranks, and only the coordinator's address is "
                                   "known to all)");
  }
  if (bootstrap.replaces && *bootstrap.replaces == bootstrap.coordinator_rank) {
    return Status::FailedPrecondition("FT_RESPAWN_OF=", *bootstrap.replaces,
                                      ": the coordinator cannot be replaced yet");
  }
  // A replacement is the rank it replaces, listening where it runs (its peers learn the address
  // from the coordinator).
  Bootstrap as = bootstrap;
  if (bootstrap.replaces) as.rank = *bootstrap.replaces;
  FT_ASSIGN_OR_RETURN(std::string listen, ListenAddress(as, getenv));
  // No CQ sizing here: the rdma Fabric grows its CQ as QPs connect (verbs/rdma/queue.h), so the
  // coordinator's QP to every node cannot overrun it.
  ProcessFabric out;
  out.bootstrap = bootstrap;
  out.rdma = rdma;
  out.world = WorldInfo{as.rank, as.size, as.coordinator_rank, as.spares};
  Result<std::unique_ptr<verbs::Fabric>> fabric =
      verbs::CreateRdmaFabric(as.rank, rdma, ProcessAddressBook(as, listen));
  if (!fabric.ok()) {
    return fabric.status().WithContext(StrCat("rank ", as.rank, " of ", as.size, " (",
                                              bootstrap.source, ") listening on ", listen));
  }
  out.fabric = std::move(fabric).value();
  return out;
}

Result<ProcessFabric> CreateProcessFabric(const verbs::RdmaOptions& rdma, const Getenv& getenv) {
  FT_ASSIGN_OR_RETURN(Bootstrap bootstrap, BootstrapFromEnvironment(getenv));
  return CreateProcessFabric(bootstrap, rdma, getenv);
}

Result<std::unique_ptr<Engine>> CreateProcessEngine(ProcessFabric process,
                                                    const EngineOptions& program_options) {
  FT_ASSIGN_OR_RETURN(const EngineOptions options, OptionsFromEnvironment(program_options));
  const Bootstrap& boot = process.bootstrap;
  Result<std::unique_ptr<Engine>> engine = Status::Internal("unset");
  if (boot.spare && !boot.replaces) {
    // An idle spare: once assigned rank r, it becomes r's process over a fabric of node r.
    Engine::FabricFor fabric_for =
        [boot, rdma = process.rdma](uint32_t rank) -> Result<std::unique_ptr<verbs::Fabric>> {
      Bootstrap as = boot;
      as.replaces = rank;
      FT_ASSIGN_OR_RETURN(ProcessFabric assigned, CreateProcessFabric(as, rdma));
      return std::move(assigned.fabric);
    };
    engine = internal::EngineFactory::CreateSpare(options, process.world, std::move(process.fabric),
                                                  SteadyClock::Default(), std::move(fabric_for));
  } else if (boot.replaces) {
    engine = internal::EngineFactory::CreateReplacement(
        options, process.world, std::move(process.fabric), SteadyClock::Default());
  } else {
    engine = internal::EngineFactory::Create(options, process.world, std::move(process.fabric));
  }
  if (!engine.ok() && boot.rank != boot.coordinator_rank &&
      (engine.status().code() == StatusCode::kDeadlineExceeded ||
       engine.status().code() == StatusCode::kUnavailable)) {
    return engine.status().WithContext(StrCat(
        "rank ", boot.rank, ": the coordinator at FT_COORDINATOR=",
        JoinHostPort(boot.coordinator_host, boot.coordinator_port), " did not answer within ",
        std::chrono::duration_cast<std::chrono::milliseconds>(options.timeout).count(),
        " ms (EngineOptions::timeout)"));
  }
  return engine;
}

Result<EngineOptions> OptionsFromEnvironment(const EngineOptions& options, const Getenv& getenv) {
  EngineOptions out = options;
  const auto in_range = [&](const char* name, int64_t min,
                            int64_t max) -> Result<std::optional<int64_t>> {
    const char* text = Get(getenv, name);
    if (text == nullptr || *text == '\0') return std::optional<int64_t>();
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(text, &end, 10);
    if (*end != '\0' || errno != 0 || value < min || value > max) {
      return Status::InvalidArgument(name, "=\"", text, "\" is not an integer in [", min, ", ", max,
                                     "]");
    }
    return std::optional<int64_t>(value);
  };
  const auto positive = [&](const char* name, int64_t max) { return in_range(name, 1, max); };
  FT_ASSIGN_OR_RETURN(std::optional<int64_t> interval,
                      positive("FT_HEARTBEAT_INTERVAL_MS", 3'600'000));
  FT_ASSIGN_OR_RETURN(std::optional<int64_t> misses, positive("FT_HEARTBEAT_MISSES", 1'000'000));
  if (interval) out.heartbeat_interval = std::chrono::milliseconds(*interval);
  if (misses) out.heartbeat_misses = static_cast<int>(*misses);
  FT_ASSIGN_OR_RETURN(std::optional<int64_t> startup,
                      positive("FT_STARTUP_TIMEOUT_MS", 24 * 3'600'000));
  if (startup) out.startup_timeout = std::chrono::milliseconds(*startup);
  FT_ASSIGN_OR_RETURN(std::optional<int64_t> priority,
                      in_range("FT_SPARE_PRIORITY", 0, EngineOptions::kLaunchOrder - 1));
  if (priority) out.spare_priority = static_cast<uint32_t>(*priority);
  return out;
}

Result<std::unique_ptr<Engine>> Engine::CreateFromEnvironment(const EngineOptions& options) {
  FT_RETURN_IF_ERROR(OptionsFromEnvironment(options).status());  // a bad value before anything
  FT_ASSIGN_OR_RETURN(ProcessFabric process, CreateProcessFabric());
  return CreateProcessEngine(std::move(process), options);
}

}  // namespace ft
