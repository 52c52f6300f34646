// Who this process is in its job (ftengine/bootstrap.h), read from the launcher's variables.
#include "ftengine/bootstrap.h"

#include <charconv>
#include <cstdlib>
#include <optional>

namespace ft {
namespace {

struct Launcher {
  const char* name;
  const char* rank;
  const char* size;
};
constexpr Launcher kLaunchers[] = {
    {"ftrun (FT_RANK/FT_WORLD_SIZE)", "FT_RANK", "FT_WORLD_SIZE"},
    {"Slurm (SLURM_PROCID/SLURM_NTASKS)", "SLURM_PROCID", "SLURM_NTASKS"},
    {"PMI (PMI_RANK/PMI_SIZE)", "PMI_RANK", "PMI_SIZE"},
    {"Open MPI (OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE)", "OMPI_COMM_WORLD_RANK",
     "OMPI_COMM_WORLD_SIZE"},
};

Result<uint64_t> ParseUnsigned(const char* variable, const char* text, uint64_t max) {
  const std::string_view view(text);
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (view.empty() || error != std::errc() || end != view.data() + view.size()) {
    return Status::InvalidArgument(variable, "=\"", view, "\" is not a non-negative integer");
  }
  if (value > max) {
    return Status::InvalidArgument(variable, "=", value, " is larger than ", max);
  }
  return value;
}

}  // namespace

Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text, const char* what) {
  std::string host;
  std::string port_text;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Status::InvalidArgument(what, "=\"", text, "\" is not [IPv6 address]:port");
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      return Status::InvalidArgument(what, "=\"", text, "\" is not host:port (e.g. 10.0.0.1:7471)");
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  }
  if (host.empty()) return Status::InvalidArgument(what, "=\"", text, "\" names no host");
  auto port = ParseUnsigned(what, port_text.c_str(), 65535);
  if (!port.ok() || *port == 0) {
    return Status::InvalidArgument(what, "=\"", text, "\": port \"", port_text,
                                   "\" is not in [1, 65535]");
  }
  return std::make_pair(host, static_cast<uint16_t>(*port));
}

Result<Bootstrap> BootstrapFromEnvironment(
    const std::function<const char*(const char*)>& getenv_fn) {
  const auto get = [&](const char* name) -> const char* {
    const char* value = getenv_fn ? getenv_fn(name) : std::getenv(name);
    return value != nullptr && *value != '\0' ? value : nullptr;
  };
  Bootstrap bootstrap;
  if (const char* spare = get("FT_SPARE")) {
    const std::string_view text(spare);
    if (text != "0" && text != "1") {
      return Status::InvalidArgument("FT_SPARE=\"", text, "\" is not 0 or 1");
    }
    bootstrap.spare = text == "1";
  }
  const Launcher* found = nullptr;
  for (const Launcher& launcher : kLaunchers) {
    const char* rank = get(launcher.rank);
    const char* size = get(launcher.size);
    if (rank == nullptr && size == nullptr) continue;
    if (rank == nullptr || size == nullptr) {
      return Status::InvalidArgument(
          rank == nullptr ? launcher.rank : launcher.size, " is not set, but ",
          rank == nullptr ? launcher.size : launcher.rank, " is: set both");
    }
    FT_ASSIGN_OR_RETURN(const uint64_t size_value, ParseUnsigned(launcher.size, size, UINT32_MAX));
    FT_ASSIGN_OR_RETURN(const uint64_t rank_value, ParseUnsigned(launcher.rank, rank, UINT32_MAX));
    if (size_value < 2) {
      return Status::InvalidArgument(launcher.size, "=", size_value,
                                     ": a checkpointed job needs at least 2 processes");
    }
    // A spare waits to take over a lost rank: its own number lies past the world (ftrun gives
    // spares N, N+1, ...).
    if (rank_value >= size_value && !bootstrap.spare) {
      return Status::InvalidArgument(launcher.rank, "=", rank_value, " is outside the world of ",
                                     launcher.size, "=", size_value);
    }
    bootstrap.rank = static_cast<uint32_t>(rank_value);
    bootstrap.size = static_cast<uint32_t>(size_value);
    bootstrap.source = launcher.name;
    found = &launcher;
    break;
  }
  if (found == nullptr) {
    return Status::InvalidArgument(
        "no rank in the environment: set FT_RANK and FT_WORLD_SIZE, or launch with ftrun, srun "
        "(SLURM_PROCID), a PMI launcher (PMI_RANK) or mpirun (OMPI_COMM_WORLD_RANK)");
  }
  if (const char* spares = get("FT_SPARES")) {
    FT_ASSIGN_OR_RETURN(const uint64_t count, ParseUnsigned("FT_SPARES", spares, 65536));
    bootstrap.spares = static_cast<uint32_t>(count);
  }
  if (bootstrap.spare && !bootstrap.replaces &&
      bootstrap.rank >= bootstrap.size + bootstrap.spares && get("FT_RESPAWN_OF") == nullptr) {
    return Status::InvalidArgument("spare number ", bootstrap.rank, " is not in [", bootstrap.size,
                                   ", ", bootstrap.size + bootstrap.spares,
                                   ") (FT_SPARES=", bootstrap.spares, ")");
  }
  if (const char* respawn_of = get("FT_RESPAWN_OF")) {
    FT_ASSIGN_OR_RETURN(const uint64_t rank,
                        ParseUnsigned("FT_RESPAWN_OF", respawn_of, UINT32_MAX));
    if (rank >= bootstrap.size) {
      return Status::InvalidArgument("FT_RESPAWN_OF=", rank, " is outside the world of ",
                                     bootstrap.size);
    }
    if (!bootstrap.spare) {
      return Status::InvalidArgument("FT_RESPAWN_OF=", rank,
                                     " is for a process started as a spare (FT_SPARE=1)");
    }
    bootstrap.replaces = static_cast<uint32_t>(rank);
  }
  const char* coordinator = get("FT_COORDINATOR");
  if (coordinator == nullptr) {
    return Status::InvalidArgument(
        "FT_COORDINATOR is not set: give the coordinator's host:port (e.g. 10.0.0.1:7471)");
  }
  FT_ASSIGN_OR_RETURN(auto address, ParseHostPort(coordinator, "FT_COORDINATOR"));
  bootstrap.coordinator_host = address.first;
  bootstrap.coordinator_port = address.second;
  if (const char* coordinator_rank = get("FT_COORDINATOR_RANK")) {
    FT_ASSIGN_OR_RETURN(const uint64_t value,
                        ParseUnsigned("FT_COORDINATOR_RANK", coordinator_rank, UINT32_MAX));
    if (value >= bootstrap.size) {
      return Status::InvalidArgument("FT_COORDINATOR_RANK=", value, " is outside the world of ",
                                     bootstrap.size);
    }
    bootstrap.coordinator_rank = static_cast<uint32_t>(value);
  }
  return bootstrap;
}

}  // namespace ft
