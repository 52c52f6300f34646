// Bootstrap: who this process is in the job, from the launcher's environment.
//
// Rank and world size come from the first complete pair found, in this order:
//   FT_RANK, FT_WORLD_SIZE                       (ftrun, or set by hand)
//   SLURM_PROCID, SLURM_NTASKS                   (srun)
//   PMI_RANK, PMI_SIZE                           (PMI launchers: MPICH hydra, ...)
//   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE   (Open MPI's mpirun)
// FT_SPARE=1 marks a spare; with FT_RESPAWN_OF=R, one started to replace rank R.
// The coordinator's address is FT_COORDINATOR=host:port (an IPv4 address, a host name, or
// [IPv6]:port). The engine never depends on MPI: these are only variables a launcher sets.
//
// Every problem is an InvalidArgument that names the variable and its value: a rank without a
// size, a non-number, a rank outside the world, a missing or malformed FT_COORDINATOR.
#ifndef FTENGINE_BOOTSTRAP_H_
#define FTENGINE_BOOTSTRAP_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "ftengine/export.h"
#include "ftengine/status.h"

namespace ft {

struct Bootstrap {
  uint32_t rank = 0;  // for a spare: its spare number, >= size
  uint32_t size = 0;
  std::string coordinator_host;
  uint16_t coordinator_port = 0;
  uint32_t coordinator_rank = 0;  // FT_COORDINATOR_RANK, default 0
  bool spare = false;             // FT_SPARE=1: an idle process waiting to replace a lost rank
  // FT_RESPAWN_OF=R (with FT_SPARE=1): this process was started to replace rank R, which died
  // (ftrun --respawn). It joins the job as rank R at the next recovery.
  std::optional<uint32_t> replaces;
  uint32_t spares = 0;  // FT_SPARES: how many idle spares the job has (numbers size..size+S-1)
  std::string source;   // which launcher's variables gave rank and size
};

// Reads the environment through `getenv` (std::getenv when empty; tests pass a fake).
FT_EXPORT Result<Bootstrap> BootstrapFromEnvironment(
    const std::function<const char*(const char*)>& getenv = {});

// Parses "host:port" or "[v6 address]:port"; InvalidArgument naming `what` otherwise.
FT_EXPORT Result<std::pair<std::string, uint16_t>> ParseHostPort(const std::string& text,
                                                                 const char* what);

}  // namespace ft

#endif  // FTENGINE_BOOTSTRAP_H_
