// How ftrun runs a job: the supervision of its processes. Starting one is process.cc's, relaying
// their output under --tag-output is output.cc's.
//
// Process model. Every process (rank or spare) is forked, put in its own process group
// (pgid == pid) and exec'd with execvpe; its stdin is /dev/null. Signals and kills go to the
// whole group, so what a process started (`sh -c` children) goes with it. Because the processes
// are not in ftrun's group, a Ctrl-C at a terminal (SIGINT to the foreground group) reaches ftrun
// alone, which forwards it once: no process sees it twice. Each child also asks for SIGKILL when
// ftrun dies (PR_SET_PDEATHSIG), so a killed launcher leaves no ranks behind.
//
// Event loop. SIGINT, SIGTERM, SIGHUP (those not ignored when ftrun started) and SIGCHLD are
// blocked and read from a signalfd; one poll() waits on it, on the output pipes (--tag-output,
// --after-output) and on the nearest deadline, never longer than kMaxPollWait. Deadlines: --kill
// (from launch, or from the line --after-output waits for), --timeout, SIGTERM to the spares
// --grace after the last rank exited, SIGTERM to the processes --kill froze, --grace after their
// SIGCONT; SIGKILL after --grace; giving up kReapAfterKill after a SIGKILL; the output drain.
//
// End of the job. Once every rank has exited (those --kill froze aside), the spares get --grace
// seconds to exit by themselves (one may have taken a lost rank and be finishing it), then
// SIGTERM. A process --respawn started is that rank's: it counts as a rank.
// Once every process has exited but those --kill froze (--signal STOP), these get SIGCONT, and
// SIGTERM if they are still there --grace later. A frozen process that gets any other signal
// (a forwarded one, --timeout's SIGTERM) gets SIGCONT right after it: stopped, it would act on
// nothing but SIGKILL.
//
// Respawn (--respawn). A rank (not a spare, not rank 0) that dies while the job is not ending, and
// with no idle spare left to take it (each loss left to a spare uses one up), is started again as a
// spare with the next unused FT_RANK and FT_RESPAWN_OF (FT_SPARE=1: the engine joins as that rank's
// replacement); it is never respawned itself: each rank at most once. Ending: every rank (those
// --kill froze aside) has exited, --timeout expired, or a signal was forwarded.
//
// Status. The first failure in time (reaping order) of a rank, or of a spare that failed on its
// own, decides the exit status: its exit status, or 128 + signal. Spares that ftrun stops at the
// end of the job (SIGTERM, then SIGKILL) do not count, nor do the processes --kill signalled
// (a note says how they ended).
#include "tools/ftrun/job.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tools/ftrun/common.h"
#include "tools/ftrun/output.h"
#include "tools/ftrun/process.h"

namespace ft::ftrun {
namespace {

constexpr auto kMaxPollWait = std::chrono::milliseconds(500);
constexpr auto kDrainAfterExit = std::chrono::seconds(1);  // last exit to closing the pipes
constexpr int kCoordinatorRank = 0;                        // FT_COORDINATOR_RANK

// The variables ftrun sets; inherited values of the same names are dropped.
constexpr const char* kOwnVariables[] = {"FT_RANK",      "FT_WORLD_SIZE",  "FT_SPARE",
                                         "FT_SPARES",    "FT_COORDINATOR", "FT_COORDINATOR_RANK",
                                         "FT_RESPAWN_OF"};

// A TCP port free on `host` right now (bind port 0, read it back, close), or 0.
uint16_t FreePort(const std::string& host) {
  sockaddr_storage address{};
  socklen_t length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&address);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&address);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    length = sizeof(*v4);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    length = sizeof(*v6);
  } else {
    return 0;
  }
  UniqueFd socket_fd(socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket_fd.valid()) return 0;
  if (bind(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) return 0;
  if (getsockname(socket_fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  return ntohs(address.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
}

struct Child {
  int rank = 0;
  bool spare = false;             // FT_SPARE=1: a spare, or a process --respawn started
  std::optional<int> respawn_of;  // the rank a process --respawn started replaces
  Process process;
  bool stopping = false;  // a spare that ftrun stops at the end of the job: its exit does not count
  bool kill_target = false;  // --kill signalled it: its exit does not count
  bool frozen = false;       // --kill SIGSTOPped it and it has not been continued since
  bool continued = false;    // continued once every other process had exited
  int last_signal = 0;       // the last signal ftrun sent it, for the SIGKILL note
  std::optional<LineRelay> out;
  std::optional<LineRelay> err;

  // A rank's process: launched as one, or --respawn's for a dead rank (FT_SPARE=1 for the engine,
  // which then takes that rank at once). Idle spares are not.
  bool IsRank() const { return !spare || respawn_of.has_value(); }

  std::string Name() const {
    if (respawn_of) {
      return "rank " + std::to_string(rank) + " (spare, respawn of rank " +
             std::to_string(*respawn_of) + ")";
    }
    return "rank " + std::to_string(rank) + (spare ? " (spare)" : "");
  }
};

class Job {
 public:
  explicit Job(const JobOptions& options) : options_(options) {}
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  int Run() {
    EnsureStandardDescriptors();
    if (!signals_.Install()) {
      Note(err_sink_, std::string("cannot set up signal handling: ") + std::strerror(errno));
      return kExitLaunchFailed;
    }
    if (!ChooseCoordinator()) return kExitLaunchFailed;
    dev_null_ = UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!dev_null_.valid()) {
      Note(err_sink_, std::string("cannot open /dev/null: ") + std::strerror(errno));
      return kExitLaunchFailed;
    }
    KeepInheritedEnvironment();
    const int total = options_.ranks + options_.spares;
    children_.reserve(static_cast<size_t>(total + (options_.respawn ? options_.ranks : 0)));
    for (int rank = 0; rank < total; ++rank) {
      if (const int failure = Spawn(rank); failure != kExitOk) return failure;
    }
    next_rank_ = total;
    start_ = Clock::now();
    ranks_running_ = options_.ranks;
    if (!options_.kill_ranks.empty() && options_.kill_after_output.empty()) {
      kill_at_ = start_ + Seconds(options_.kill_after_seconds);
    }
    if (options_.timeout_seconds) timeout_at_ = start_ + Seconds(*options_.timeout_seconds);
    Supervise();
    if (!options_.kill_after_output.empty() && !kill_armed_) {
      Note(err_sink_, "--after-output: no process wrote a line containing \"" +
                          options_.kill_after_output + "\"; --kill signalled nothing");
    }
    if (timed_out_) return kExitTimeout;
    return first_failure_.value_or(kExitOk);
  }

 private:
  bool ChooseCoordinator() {
    const char* vm_ip = std::getenv("RXE_VM_IP");
    const std::string host = !options_.host.empty()               ? options_.host
                             : vm_ip != nullptr && *vm_ip != '\0' ? vm_ip
                                                                  : "127.0.0.1";
    uint16_t port = options_.port.value_or(0);
    // A port free on the coordinator's address; if that address is not ours to bind here,
    // one free on loopback. Someone else may take it before rank 0 listens: --port avoids that.
    if (port == 0) port = FreePort(host);
    if (port == 0) port = FreePort("127.0.0.1");
    if (port == 0) {
      Note(err_sink_, std::string("cannot find a free TCP port for the coordinator: ") +
                          std::strerror(errno) + " (give one with --port)");
      return false;
    }
    const bool ipv6 = host.find(':') != std::string::npos;
    coordinator_ = (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
    return true;
  }

  static std::string CannotMakePipe(int rank, int error) {
    return "cannot create a pipe for rank " + std::to_string(rank) + ": " + std::strerror(error) +
           (error == EMFILE ? " (see ulimit -n)" : "");
  }

  void KeepInheritedEnvironment() {
    for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
      const std::string_view variable(*entry);
      const std::string_view name = variable.substr(0, variable.find('='));
      if (std::find(std::begin(kOwnVariables), std::end(kOwnVariables), name) ==
          std::end(kOwnVariables)) {
        environment_.emplace_back(variable);
      }
    }
  }

  // Forks and execs one process (with respawn_of: the one replacing that rank); kExitOk, or
  // ftrun's exit status after a note.
  int Spawn(int rank, std::optional<int> respawn_of = std::nullopt) {
    const bool spare = rank >= options_.ranks;
    std::vector<std::string> environment = environment_;
    environment.push_back("FT_RANK=" + std::to_string(rank));
    environment.push_back("FT_WORLD_SIZE=" + std::to_string(options_.ranks));
    environment.push_back(std::string("FT_SPARE=") + (spare ? "1" : "0"));
    environment.push_back("FT_SPARES=" + std::to_string(options_.spares));
    environment.push_back("FT_COORDINATOR=" + coordinator_);
    environment.push_back("FT_COORDINATOR_RANK=" + std::to_string(kCoordinatorRank));
    if (respawn_of) environment.push_back("FT_RESPAWN_OF=" + std::to_string(*respawn_of));
    std::vector<char*> envp;
    for (std::string& variable : environment) envp.push_back(variable.data());
    envp.push_back(nullptr);
    std::vector<std::string> command = options_.command;
    std::vector<char*> argv;
    for (std::string& argument : command) argv.push_back(argument.data());
    argv.push_back(nullptr);

    std::optional<Pipe> out;
    std::optional<Pipe> err;
    if (Relayed()) {
      out = MakePipe();
      if (out) err = MakePipe();
    }
    if (Relayed() && (!out || !err)) {
      Note(err_sink_, CannotMakePipe(rank, errno));
      return kExitLaunchFailed;
    }
    Started started = StartProcess(argv.data(), envp.data(),
                                   ChildStdio{.in = dev_null_.get(),
                                              .out = out ? out->write.get() : -1,
                                              .err = err ? err->write.get() : -1},
                                   signals_);
    if (out) out->write.Reset();
    if (err) err->write.Reset();
    const std::string& program = options_.command.front();
    switch (started.failure) {
      case Started::Failure::kNone:
        break;
      case Started::Failure::kPipe:
        Note(err_sink_, CannotMakePipe(rank, started.error));
        return kExitLaunchFailed;
      case Started::Failure::kFork:
        Note(err_sink_,
             "cannot fork rank " + std::to_string(rank) + ": " + std::strerror(started.error));
        return kExitLaunchFailed;
      case Started::Failure::kExec: {
        const bool not_found = started.error == ENOENT || started.error == ENOTDIR;
        const bool searched = program.find('/') == std::string::npos;
        Note(err_sink_,
             program + ": " +
                 (not_found && searched ? "command not found" : std::strerror(started.error)));
        return not_found ? kExitNotFound : kExitCannotExecute;
      }
      case Started::Failure::kNoReport:
        Note(err_sink_, "rank " + std::to_string(rank) + " did not start " + program);
        return kExitLaunchFailed;
    }
    const pid_t pid = started.process.pid();

    Child& child = children_.emplace_back();
    child.rank = rank;
    child.spare = spare;
    child.respawn_of = respawn_of;
    child.process = std::move(started.process);
    by_pid_[pid] = children_.size() - 1;
    if (Relayed()) {
      for (Pipe* pipe : {&*out, &*err}) {
        fcntl(pipe->read.get(), F_SETFL, fcntl(pipe->read.get(), F_GETFL) | O_NONBLOCK);
      }
      const std::string tag = "[1," + std::to_string(rank) + "]";
      child.out.emplace(std::move(out->read), options_.tag_output ? tag + "<stdout>: " : "",
                        &out_sink_);
      child.err.emplace(std::move(err->read), options_.tag_output ? tag + "<stderr>: " : "",
                        &err_sink_);
      if (!options_.kill_after_output.empty()) {
        const std::string name = child.Name();
        for (std::optional<LineRelay>* relay : {&child.out, &child.err}) {
          (*relay)->OnLine([this, name](std::string_view line) { ArmKill(name, line); });
        }
      }
    }
    ++running_;
    return kExitOk;
  }

  void Supervise() {
    std::optional<TimePoint> drain_until;
    std::vector<pollfd> polled;
    std::vector<LineRelay*> relays;  // relays[i] is read through polled[i + 1]
    while (true) {
      Reap();
      RespawnDeadRanks();
      const TimePoint now = Clock::now();
      HandleDeadlines(now);
      StopSparesWhenRanksAreDone(now);
      ContinueFrozenWhenTheOthersAreDone(now);
      if (running_ == 0) {
        if (!drain_until) drain_until = now + kDrainAfterExit;
        if (!AnyRelayOpen()) return;
        if (now >= *drain_until) {
          AbandonRelays();
          return;
        }
      } else if (give_up_at_ && now >= *give_up_at_) {
        GiveUp();
        return;
      }

      TimePoint wake = now + kMaxPollWait;
      for (const std::optional<TimePoint>& deadline :
           {kill_at_, timeout_at_, continued_term_at_, sigkill_at_, give_up_at_, drain_until,
            spares_term_at_}) {
        if (deadline) wake = std::min(wake, *deadline);
      }
      polled.assign(1, pollfd{signals_.fd(), POLLIN, 0});
      relays.clear();
      for (Child& child : children_) {
        for (std::optional<LineRelay>* relay : {&child.out, &child.err}) {
          if (*relay && (*relay)->open()) {
            polled.push_back(pollfd{(*relay)->fd(), POLLIN, 0});
            relays.push_back(&**relay);
          }
        }
      }
      const int ready = poll(polled.data(), polled.size(), PollMillis(wake - Clock::now()));
      if (ready <= 0) continue;  // timeout, or EINTR (nothing interrupts: all is blocked)
      if (polled[0].revents != 0) ReadSignals();
      for (size_t i = 0; i < relays.size(); ++i) {
        if (polled[i + 1].revents != 0) relays[i]->ReadOnce();
      }
    }
  }

  void ReadSignals() {
    signalfd_siginfo info;
    while (read(signals_.fd(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
      const int signal = static_cast<int>(info.ssi_signo);
      if (signal != SIGCHLD) Forward(signal);  // SIGCHLD: Reap() runs on every turn
    }
  }

  // Sends `signal` to every running process; SIGKILL follows after --grace.
  void Forward(int signal) {
    ending_ = true;
    const int sent = SignalEveryone(signal);
    Note(err_sink_, "got " + SignalName(signal) + "; forwarded it to " + std::to_string(sent) +
                        (sent == 1 ? " process" : " processes"));
  }

  // Sends `signal` to every running process and arms the SIGKILL deadline. Returns how many
  // processes got it.
  int SignalEveryone(int signal) {
    int sent = 0;
    for (Child& child : children_) {
      if (SignalChild(child, signal)) ++sent;
    }
    if (sent > 0) ArmSigkill();
    return sent;
  }

  // Sends `signal` to `child`'s process group, then SIGCONT if --kill froze it (a stopped
  // process acts on nothing but SIGKILL until continued). False when it was not running.
  bool SignalChild(Child& child, int signal) {
    if (!child.process.Signal(signal)) return false;
    child.last_signal = signal;
    if (child.frozen) Thaw(child);
    return true;
  }

  void Thaw(Child& child) {
    child.process.Signal(SIGCONT);
    Unfreeze(child);
  }

  void Unfreeze(Child& child) {
    if (!child.frozen) return;
    child.frozen = false;
    --frozen_;
    if (child.IsRank()) --frozen_ranks_;
  }

  // SIGKILL to whoever is still running --grace from now (or earlier, when armed already).
  void ArmSigkill() {
    const TimePoint kill_at = Clock::now() + Seconds(options_.grace_seconds);
    sigkill_at_ = sigkill_at_ ? std::min(*sigkill_at_, kill_at) : kill_at;
  }

  // Spares idle until recovery needs them: once no rank is left, nothing will. A rank --kill
  // froze is left out: it does nothing until ContinueFrozenWhenTheOthersAreDone.
  // Every rank has exited: the spares get --grace seconds to exit by themselves (an idle ftengine
  // spare does once the coordinator has gone; one that took a lost rank finishes that rank's
  // work), then SIGTERM.
  void StopSparesWhenRanksAreDone(TimePoint now) {
    if (ranks_running_ > frozen_ranks_ || spares_stopped_) return;
    if (!spares_term_at_) spares_term_at_ = now + Seconds(options_.grace_seconds);
    if (now < *spares_term_at_) return;
    spares_term_at_.reset();
    spares_stopped_ = true;
    int sent = 0;
    for (Child& child : children_) {
      if (!child.process.running() || child.IsRank() || child.frozen) continue;
      child.stopping = true;
      if (SignalChild(child, SIGTERM)) ++sent;
    }
    if (sent > 0) ArmSigkill();
  }

  // The processes --kill froze find, once continued, that the job went on without them: only
  // when every other process has exited, so that they cannot disturb it.
  void ContinueFrozenWhenTheOthersAreDone(TimePoint now) {
    if (frozen_ == 0 || running_ > frozen_) return;
    for (Child& child : children_) {
      if (!child.frozen) continue;
      Thaw(child);
      child.continued = true;
      Note(err_sink_, "every other process has exited; sent SIGCONT to " + child.Name() +
                          " (stopped by --kill)");
    }
    continued_term_at_ = now + Seconds(options_.grace_seconds);
  }

  void HandleDeadlines(TimePoint now) {
    if (kill_at_ && now >= *kill_at_) {
      kill_at_.reset();
      KillAsAsked();
    }
    if (timeout_at_ && now >= *timeout_at_) {
      timeout_at_.reset();
      timed_out_ = true;
      ending_ = true;
      const int sent = SignalEveryone(SIGTERM);
      Note(err_sink_, "the job reached --timeout " + FormatSeconds(*options_.timeout_seconds) +
                          " s; sent SIGTERM to " + std::to_string(sent) +
                          (sent == 1 ? " process" : " processes"));
    }
    if (continued_term_at_ && now >= *continued_term_at_) {
      continued_term_at_.reset();
      int sent = 0;
      for (Child& child : children_) {
        if (!child.continued || !child.process.running()) continue;
        if (!SignalChild(child, SIGTERM)) continue;
        ++sent;
        Note(err_sink_, child.Name() + " still running " + FormatSeconds(options_.grace_seconds) +
                            " s after SIGCONT; sent SIGTERM");
      }
      if (sent > 0) ArmSigkill();
    }
    if (sigkill_at_ && now >= *sigkill_at_) {
      sigkill_at_.reset();
      for (Child& child : children_) {
        if (!child.process.running()) continue;
        child.process.Signal(SIGKILL);
        Unfreeze(child);
        Note(err_sink_, child.Name() + " still running " + FormatSeconds(options_.grace_seconds) +
                            " s after " + SignalName(child.last_signal) + "; sent SIGKILL");
      }
      give_up_at_ = now + kReapAfterKill;
    }
  }

  // Output goes through ftrun: --tag-output, or --after-output watching it.
  bool Relayed() const { return options_.tag_output || !options_.kill_after_output.empty(); }

  // --after-output: the first line that contains the text starts the --after clock.
  void ArmKill(const std::string& name, std::string_view line) {
    if (kill_armed_ || line.find(options_.kill_after_output) == std::string_view::npos) return;
    kill_armed_ = true;
    kill_at_ = Clock::now() + Seconds(options_.kill_after_seconds);
    Note(err_sink_, "\"" + options_.kill_after_output + "\" seen in " + name +
                        "'s output; --kill in " + FormatSeconds(options_.kill_after_seconds) +
                        " s");
  }

  // --kill RANKS at --after: SIGKILL or SIGSTOP (--signal) to each listed process's group.
  void KillAsAsked() {
    const bool stop = options_.kill_signal == SIGSTOP;
    const std::string signal = SignalName(options_.kill_signal);
    for (const int rank : options_.kill_ranks) {
      Child& target = children_[static_cast<size_t>(rank)];
      if (!target.process.Signal(options_.kill_signal)) {
        Note(err_sink_, "--kill: rank " + std::to_string(rank) + " had already exited; " +
                            (stop ? "stopped" : "killed") + " nothing");
        continue;
      }
      target.kill_target = true;
      if (stop && !target.frozen) {
        target.frozen = true;
        ++frozen_;
        if (target.IsRank()) ++frozen_ranks_;
      }
      Note(err_sink_, std::string(stop ? "stopped" : "killed") + " rank " + std::to_string(rank) +
                          " (" + signal + ") after " + FormatSeconds(options_.kill_after_seconds) +
                          " s" + (options_.kill_after_output.empty() ? "" : " (--after-output)"));
    }
  }

  void Reap() {
    while (true) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid < 0 && errno == EINTR) continue;
      if (pid <= 0) return;  // none exited (0) or no children left (ECHILD)
      const auto found = by_pid_.find(pid);
      if (found == by_pid_.end()) continue;
      OnExit(children_[found->second], status);
    }
  }

  void OnExit(Child& child, int status) {
    child.process.Release();
    Unfreeze(child);
    --running_;
    if (child.IsRank()) --ranks_running_;
    // What it wrote before exiting is in the pipes: relay it before saying how it ended.
    if (child.out) child.out->Drain();
    if (child.err) child.err->Drain();
    int code = 0;
    std::string how;
    if (WIFSIGNALED(status)) {
      const int signal = WTERMSIG(status);
      code = 128 + signal;
      how = "killed by signal " + std::to_string(signal) + " (" + SignalName(signal) + ")";
    } else {
      code = WEXITSTATUS(status);
      how = "exited with status " + std::to_string(code);
    }
    if (child.kill_target) {
      // Signalled by --kill: as asked, whatever came of it; not the job's failure.
      const bool stop = options_.kill_signal == SIGSTOP;
      const std::string asked = std::string(stop ? "stopped" : "killed") + " by --kill (" +
                                SignalName(options_.kill_signal) + ") as asked";
      if (!stop && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
        Note(err_sink_, child.Name() + " was " + asked);
      } else {
        Note(err_sink_, child.Name() + " was " + asked + "; it " +
                            (WIFSIGNALED(status) ? "was then " : "then ") + how);
      }
    } else if (child.stopping) {
      return;  // a spare we stopped: neither reported nor counted
    } else if (code != 0) {
      Note(err_sink_, child.Name() + " " + how);
      if (!first_failure_) first_failure_ = code;
    }
    if (code != 0 && options_.respawn && !child.spare) respawn_queue_.push_back(child.rank);
  }

  // --respawn: the ranks that died since the last turn, started again as spares while the job
  // is not ending (see the top of this file).
  void RespawnDeadRanks() {
    for (const int dead : std::exchange(respawn_queue_, {})) {
      if (ending_ || spares_stopped_ || ranks_running_ == frozen_ranks_) {
        Note(err_sink_, "rank " + std::to_string(dead) + " is not respawned: the job is ending");
        continue;
      }
      if (dead == kCoordinatorRank) {
        Note(err_sink_, "rank " + std::to_string(dead) +
                            " (the coordinator) is not respawned: coordinator failover is not "
                            "supported yet");
        continue;
      }
      if (IdleSparesLeft() > 0) {
        // The coordinator gives the rank to a spare; a new process would find it taken.
        ++left_to_spares_;
        Note(err_sink_, "rank " + std::to_string(dead) + " is left to a spare (--spares)");
        continue;
      }
      const int rank = next_rank_++;
      if (const int failure = Spawn(rank, dead); failure != kExitOk) {
        Note(err_sink_, "could not respawn rank " + std::to_string(dead));
        if (!first_failure_) first_failure_ = failure;
        continue;
      }
      ++ranks_running_;  // it is that rank's process now
      Note(err_sink_, "respawned rank " + std::to_string(dead) + " as rank " +
                          std::to_string(rank) +
                          " (FT_SPARE=1, FT_RESPAWN_OF=" + std::to_string(dead) + ")");
    }
  }

  // Spares still running that no earlier loss was left to (each loss takes one).
  int IdleSparesLeft() const {
    const int running =
        static_cast<int>(std::count_if(children_.begin(), children_.end(), [](const Child& child) {
          return child.spare && !child.respawn_of && child.process.running() && !child.frozen;
        }));
    return running - left_to_spares_;
  }

  bool AnyRelayOpen() const {
    return std::any_of(children_.begin(), children_.end(), [](const Child& child) {
      return (child.out && child.out->open()) || (child.err && child.err->open());
    });
  }

  // Every process exited, but someone (a background process they started) still holds a pipe.
  void AbandonRelays() {
    for (Child& child : children_) {
      for (std::optional<LineRelay>* relay : {&child.out, &child.err}) {
        if (!*relay || !(*relay)->open()) continue;
        (*relay)->Drain();
        if (!(*relay)->open()) continue;
        (*relay)->Close();
        Note(err_sink_, child.Name() + "'s " + (relay == &child.out ? "stdout" : "stderr") +
                            " is still open after it exited (held by a process it started); "
                            "no longer reading it");
      }
    }
  }

  // Processes still there kReapAfterKill after SIGKILL (stuck in the kernel): leave them.
  void GiveUp() {
    for (Child& child : children_) {
      if (!child.process.running()) continue;
      Note(err_sink_, child.Name() + " did not exit " +
                          std::to_string(std::chrono::seconds(kReapAfterKill).count()) +
                          " s after SIGKILL; leaving it behind");
      child.process.Release();
      if (!child.stopping && !child.kill_target && !first_failure_) {
        first_failure_ = 128 + SIGKILL;
      }
    }
    for (Child& child : children_) {
      if (child.out && child.out->open()) child.out->Close();
      if (child.err && child.err->open()) child.err->Close();
    }
  }

  const JobOptions& options_;
  Sink out_sink_{STDOUT_FILENO};
  Sink err_sink_{STDERR_FILENO};
  SignalRouting signals_;
  UniqueFd dev_null_;
  std::string coordinator_;               // host:port
  std::vector<std::string> environment_;  // inherited, minus kOwnVariables
  std::vector<Child> children_;           // index == rank (FT_RANK)
  std::unordered_map<pid_t, size_t> by_pid_;
  int next_rank_ = 0;               // FT_RANK of the next process --respawn starts
  int running_ = 0;                 // processes not yet reaped
  int ranks_running_ = 0;           // of them, ranks (not spares)
  int frozen_ = 0;                  // of them, frozen by --kill (SIGSTOP) and not continued
  int frozen_ranks_ = 0;            // of those, ranks
  std::vector<int> respawn_queue_;  // ranks that died, for RespawnDeadRanks
  bool spares_stopped_ = false;
  int left_to_spares_ = 0;                   // --respawn: dead ranks left to a spare instead
  std::optional<TimePoint> spares_term_at_;  // every rank exited: SIGTERM the spares then
  bool ending_ = false;                      // --timeout expired or a signal was forwarded
  bool timed_out_ = false;
  std::optional<int> first_failure_;  // exit status or 128 + signal
  TimePoint start_;
  std::optional<TimePoint> kill_at_;
  bool kill_armed_ = false;  // --after-output saw its text (once is enough)
  std::optional<TimePoint> timeout_at_;
  std::optional<TimePoint> continued_term_at_;  // SIGTERM the continued ones still running
  std::optional<TimePoint> sigkill_at_;         // SIGKILL whoever is still running
  std::optional<TimePoint> give_up_at_;
};

}  // namespace

int RunJob(const JobOptions& options) {
  Job job(options);
  return job.Run();
}

}  // namespace ft::ftrun
