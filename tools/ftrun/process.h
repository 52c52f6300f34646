// ftrun's children: how one is started (fork, its own process group, exec, the exec's outcome
// reported through a pipe), the handle that owns it (Process), and the signal set-up ftrun runs
// under while it has children (SignalRouting).
#ifndef FT_TOOLS_FTRUN_PROCESS_H_
#define FT_TOOLS_FTRUN_PROCESS_H_

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <utility>

#include "tools/ftrun/common.h"

namespace ft::ftrun {

// SIGKILL to giving up on a process (stuck in the kernel).
inline constexpr auto kReapAfterKill = std::chrono::seconds(5);

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

// A close-on-exec pipe; nullopt with errno set on failure.
std::optional<Pipe> MakePipe();

// A forked child, leader of its own process group. Owning: destroying one that was not reaped
// SIGKILLs its group and reaps it (bounded by kReapAfterKill), so an early return leaves nothing
// running.
class Process {
 public:
  Process() = default;
  explicit Process(pid_t pid) : pid_(pid) {}
  Process(Process&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  Process& operator=(Process&& other) noexcept {
    if (this != &other) {
      KillAndReap();
      pid_ = std::exchange(other.pid_, -1);
    }
    return *this;
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process() { KillAndReap(); }

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // Sends `signal` to the process group; false when there was no one to send it to.
  bool Signal(int signal) const { return pid_ > 0 && kill(-pid_, signal) == 0; }

  // The process was reaped (waitpid), or is given up on: forget it.
  void Release() { pid_ = -1; }

 private:
  void KillAndReap();

  pid_t pid_ = -1;
};

// While alive: SIGCHLD and the forwarded signals are blocked and readable from fd(), SIGCHLD has
// its default disposition (waitpid works) and SIGPIPE is ignored (a closed stdout is an EPIPE,
// not our death). The destructor restores all of it; children restore it before exec.
class SignalRouting {
 public:
  SignalRouting() = default;
  SignalRouting(const SignalRouting&) = delete;
  SignalRouting& operator=(const SignalRouting&) = delete;
  ~SignalRouting();

  // False with errno set on failure.
  bool Install();

  int fd() const { return fd_.get(); }
  const sigset_t& original_mask() const { return original_mask_; }
  const struct sigaction& original_sigpipe() const { return original_sigpipe_; }
  const struct sigaction& original_sigchld() const { return original_sigchld_; }

 private:
  bool installed_ = false;
  sigset_t original_mask_{};
  struct sigaction original_sigpipe_ {};
  struct sigaction original_sigchld_ {};
  UniqueFd fd_;
};

// A child's standard streams: descriptors of the caller's, each >= 3 (EnsureStandardDescriptors),
// dup'ed onto 0, 1 and 2 in the child. -1 for out or err: ftrun's own.
struct ChildStdio {
  int in = -1;
  int out = -1;
  int err = -1;
};

// What StartProcess did.
struct Started {
  enum class Failure {
    kNone,      // `process` runs argv[0]
    kPipe,      // no pipe for the exec report; `error` is errno
    kFork,      // fork() failed; `error` is errno
    kExec,      // exec failed in the child; `error` is its errno
    kNoReport,  // the child neither exec'd nor said why within kExecReportWait
  };
  Process process;
  Failure failure = Failure::kNone;
  int error = 0;
};

// Forks a child that leads a process group of its own, asks for SIGKILL when ftrun dies, takes
// `stdio`, restores the signal set-up `signals` changed, and execs argv (searching PATH) with
// envp. Waits (at most kExecReportWait) until the exec happened or failed. Everything the child
// needs is prepared before fork: between fork and exec it allocates nothing. On a failure the
// child (if any) is reaped before this returns.
Started StartProcess(char* const* argv, char* const* envp, const ChildStdio& stdio,
                     const SignalRouting& signals);

// Opens /dev/null on any of descriptors 0, 1 and 2 that is closed, so that no descriptor ftrun
// opens later is one of them.
void EnsureStandardDescriptors();

}  // namespace ft::ftrun

#endif  // FT_TOOLS_FTRUN_PROCESS_H_
