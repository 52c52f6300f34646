// ftrun's job: N ranks and S spares of one program launched on this machine, supervised until the
// job's status is known. main.cc turns the command line into JobOptions; RunJob does the rest.
#ifndef FT_TOOLS_FTRUN_JOB_H_
#define FT_TOOLS_FTRUN_JOB_H_

#include <signal.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ft::ftrun {

// ftrun's own exit statuses. Any other status is the job's: the first failure of a process (its
// exit status, or 128 + the signal that killed it), not counting the processes ftrun signalled
// itself (--kill, and the spares it stops at the end).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;            // bad flags; nothing was launched
inline constexpr int kExitTimeout = 124;        // --timeout expired (as timeout(1))
inline constexpr int kExitLaunchFailed = 125;   // ftrun itself failed (fork, pipe, ...)
inline constexpr int kExitCannotExecute = 126;  // PROGRAM exists but cannot be executed
inline constexpr int kExitNotFound = 127;       // PROGRAM not found (as a shell)

// Upper bounds that keep the arithmetic (process counts, deadlines) far from overflow.
inline constexpr int kMaxProcesses = 65536;
inline constexpr double kMaxSeconds = 1e6;

// What the command line asked for; main.cc has validated every field.
struct JobOptions {
  int ranks = 0;   // N >= 1: FT_RANK 0..N-1
  int spares = 0;  // S >= 0: FT_RANK N..N+S-1, FT_SPARE=1
  bool tag_output = false;
  std::vector<int> kill_ranks;            // each in [0, N+S), no two alike: signalled with
                                          // kill_signal kill_after_seconds after launch
  int kill_signal = SIGKILL;              // SIGKILL or SIGSTOP
  double kill_after_seconds = 0;          // in [0, kMaxSeconds]
  std::string kill_after_output;          // not empty: --after counts from the first output
                                          // line of any process that contains it
  bool respawn = false;                   // start a rank that dies again, as a spare
  std::optional<uint16_t> port;           // coordinator port; a free one when unset
  std::string host;                       // coordinator address; empty: $RXE_VM_IP or 127.0.0.1
  double grace_seconds = 5;               // SIGTERM (or a forwarded signal) to SIGKILL
  std::optional<double> timeout_seconds;  // whole-job bound, in (0, kMaxSeconds]
  std::vector<std::string> command;       // PROGRAM ARGS...; not empty
};

// Launches the job, waits for it (every wait bounded: see job.cc) and returns ftrun's exit
// status. Writes ftrun's notes ("ftrun: ...") on stderr and, under tag_output, the processes'
// tagged lines on stdout and stderr. Call once per process: it blocks SIGINT, SIGTERM, SIGHUP
// and SIGCHLD while it runs and reaps every child of the calling process.
int RunJob(const JobOptions& options);

}  // namespace ft::ftrun

#endif  // FT_TOOLS_FTRUN_JOB_H_
