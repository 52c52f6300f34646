#include "tools/ftrun/process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "tools/ftrun/job.h"

namespace ft::ftrun {
namespace {

constexpr auto kExecReportWait = std::chrono::seconds(10);  // fork to exec (or its failure)

// Everything a child needs between fork and exec, prepared before fork, so that the child
// allocates nothing and makes only system calls (and execvpe, which searches PATH on the stack).
struct ChildSetup {
  pid_t parent;
  ChildStdio stdio;
  int report_fd;  // close-on-exec pipe: the exec errno is written here when exec fails
  const SignalRouting* signals;
  char* const* argv;
  char* const* envp;
};

[[noreturn]] void RunChild(const ChildSetup& setup) {
  setpgid(0, 0);
  // SIGKILL when ftrun dies; if it already died, the parent is no longer ours.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != setup.parent) _exit(kExitLaunchFailed);
  // Every source descriptor is >= 3 (EnsureStandardDescriptors), so dup2 clobbers none of them.
  if (dup2(setup.stdio.in, STDIN_FILENO) < 0) _exit(kExitLaunchFailed);
  if (setup.stdio.out >= 0 && dup2(setup.stdio.out, STDOUT_FILENO) < 0) _exit(kExitLaunchFailed);
  if (setup.stdio.err >= 0 && dup2(setup.stdio.err, STDERR_FILENO) < 0) _exit(kExitLaunchFailed);
  sigaction(SIGPIPE, &setup.signals->original_sigpipe(), nullptr);
  sigaction(SIGCHLD, &setup.signals->original_sigchld(), nullptr);
  sigprocmask(SIG_SETMASK, &setup.signals->original_mask(), nullptr);
  execvpe(setup.argv[0], setup.argv, setup.envp);
  const int error = errno;
  ssize_t ignored = write(setup.report_fd, &error, sizeof(error));
  (void)ignored;
  _exit(error == ENOENT || error == ENOTDIR ? kExitNotFound : kExitCannotExecute);
}

}  // namespace

std::optional<Pipe> MakePipe() {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return std::nullopt;
  return Pipe{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

void Process::KillAndReap() {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  const TimePoint deadline = Clock::now() + kReapAfterKill;
  while (waitpid(pid_, nullptr, WNOHANG) == 0 && Clock::now() < deadline) {
    const timespec pause{0, 10'000'000};
    nanosleep(&pause, nullptr);
  }
  pid_ = -1;
}

SignalRouting::~SignalRouting() {
  if (!installed_) return;
  fd_.Reset();
  sigaction(SIGPIPE, &original_sigpipe_, nullptr);
  sigaction(SIGCHLD, &original_sigchld_, nullptr);
  sigprocmask(SIG_SETMASK, &original_mask_, nullptr);
}

bool SignalRouting::Install() {
  sigset_t handled;
  sigemptyset(&handled);
  sigaddset(&handled, SIGCHLD);
  // A signal ignored when we started (nohup, a background job of a non-interactive shell)
  // stays ignored: we neither act on it nor forward it, and the children inherit SIG_IGN.
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction current {};
    if (sigaction(signal, nullptr, &current) != 0) return false;
    if (current.sa_handler != SIG_IGN) sigaddset(&handled, signal);
  }
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  struct sigaction ignore_action = default_action;
  ignore_action.sa_handler = SIG_IGN;
  if (sigaction(SIGCHLD, &default_action, &original_sigchld_) != 0) return false;
  if (sigaction(SIGPIPE, &ignore_action, &original_sigpipe_) != 0) {
    sigaction(SIGCHLD, &original_sigchld_, nullptr);
    return false;
  }
  sigprocmask(SIG_BLOCK, &handled, &original_mask_);
  installed_ = true;  // from here on the destructor undoes it all
  fd_ = UniqueFd(signalfd(-1, &handled, SFD_CLOEXEC | SFD_NONBLOCK));
  return fd_.valid();
}

Started StartProcess(char* const* argv, char* const* envp, const ChildStdio& stdio,
                     const SignalRouting& signals) {
  Started started;
  std::optional<Pipe> report = MakePipe();
  if (!report) {
    started.failure = Started::Failure::kPipe;
    started.error = errno;
    return started;
  }
  const ChildSetup setup{.parent = getpid(),
                         .stdio = stdio,
                         .report_fd = report->write.get(),
                         .signals = &signals,
                         .argv = argv,
                         .envp = envp};
  const pid_t pid = fork();
  if (pid < 0) {
    started.failure = Started::Failure::kFork;
    started.error = errno;
    return started;
  }
  if (pid == 0) RunChild(setup);
  setpgid(pid, pid);  // the child does it too: whichever runs first, signals find the group
  Process process(pid);
  report->write.Reset();

  // EOF: exec succeeded (the close-on-exec pipe closed). An int: exec's errno.
  pollfd ready{report->read.get(), POLLIN, 0};
  int error = 0;
  ssize_t got = -1;
  if (poll(&ready, 1, PollMillis(kExecReportWait)) == 1) {
    do {
      got = read(report->read.get(), &error, sizeof(error));
    } while (got < 0 && errno == EINTR);
  }
  if (got == 0) {
    started.process = std::move(process);
  } else if (got == static_cast<ssize_t>(sizeof(error))) {
    started.failure = Started::Failure::kExec;
    started.error = error;
  } else {
    started.failure = Started::Failure::kNoReport;
  }
  return started;  // on a failure, `process` is SIGKILLed and reaped here
}

void EnsureStandardDescriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
      // Takes the lowest free number, `fd`, and stays open for the life of ftrun on purpose.
      open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
    }
  }
}

}  // namespace ft::ftrun
