#include "test/run_program.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <string_view>

namespace ft::test {
namespace {

using Clock = std::chrono::steady_clock;

// How long the pipes may stay open after the program has exited (held by something it left
// behind) before the test stops reading them.
constexpr auto kDrainAfterExit = std::chrono::seconds(5);
// One round's poll(): how late an exit, the deadline or a ready output may be noticed.
constexpr int kPollMs = 50;
// Reads of one pipe per round: a program that writes without pause cannot keep the test from
// checking its deadline.
constexpr int kReadsPerRound = 64;

std::string_view Name(std::string_view variable) { return variable.substr(0, variable.find('=')); }

void CloseIfOpen(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

}  // namespace

bool IsLauncherVariable(const std::string& variable) {
  for (const char* prefix : {"FT_", "RXE_VM_IP=", "SLURM_PROCID=", "SLURM_NTASKS=", "PMI_RANK=",
                             "PMI_SIZE=", "OMPI_COMM_WORLD_RANK=", "OMPI_COMM_WORLD_SIZE="}) {
    if (variable.starts_with(prefix)) return true;
  }
  return false;
}

ProgramResult RunProgram(std::vector<std::string> args, const RunOptions& options) {
  ProgramResult result;
  if (args.empty()) return result;
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string variable(*entry);
    if (IsLauncherVariable(variable)) continue;
    bool replaced = false;
    for (const std::string& set : options.set_environment) {
      replaced = replaced || Name(set) == Name(variable);
    }
    if (!replaced) environment.push_back(variable);
  }
  environment.insert(environment.end(), options.set_environment.begin(),
                     options.set_environment.end());
  // Everything the child needs exists before fork(): between fork() and execve() it makes only
  // async-signal-safe calls.
  std::vector<char*> argv;
  for (std::string& argument : args) argv.push_back(argument.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& variable : environment) envp.push_back(variable.data());
  envp.push_back(nullptr);

  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  int in[2] = {-1, -1};
  const auto close_all = [&] {
    for (int* fd : {&out[0], &out[1], &err[0], &err[1], &in[0], &in[1]}) CloseIfOpen(*fd);
  };
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
      (options.stdin_open_pipe && pipe2(in, O_CLOEXEC) != 0)) {
    close_all();
    return result;
  }
  const Clock::time_point start = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    if (options.own_process_group) setpgid(0, 0);
    const int stdin_fd = options.stdin_open_pipe ? in[0] : open("/dev/null", O_RDONLY | O_CLOEXEC);
    dup2(stdin_fd, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  // The child does it too: whichever runs first, the kill at the deadline finds the group.
  if (pid > 0 && options.own_process_group) setpgid(pid, pid);
  CloseIfOpen(out[1]);
  CloseIfOpen(err[1]);
  CloseIfOpen(in[0]);
  if (pid < 0) {
    close_all();
    return result;
  }
  result.started = true;
  std::array<int, 2> fds = {out[0], err[0]};  // owned here from now on
  out[0] = err[0] = -1;
  for (int fd : fds) fcntl(fd, F_SETFL, O_NONBLOCK);  // poll() below bounds every wait
  const std::array<std::string*, 2> sinks = {&result.out, &result.err};
  const Clock::time_point deadline =
      start + std::chrono::duration_cast<Clock::duration>(options.deadline);
  bool exited = false;
  Clock::time_point exit_time;
  while (true) {
    int wait_status = 0;
    if (!exited && waitpid(pid, &wait_status, WNOHANG) == pid) {
      exited = true;
      exit_time = Clock::now();
      result.seconds = std::chrono::duration<double>(exit_time - start).count();
      result.status =
          WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : 128 + WTERMSIG(wait_status);
    }
    const Clock::time_point now = Clock::now();
    if (exited && ((fds[0] < 0 && fds[1] < 0) || now - exit_time > kDrainAfterExit)) {
      break;  // a pipe still open long after the exit: something the program left holds it
    }
    if (!exited && now > deadline) {
      result.timed_out = true;
      kill(options.own_process_group ? -pid : pid, SIGKILL);
      waitpid(pid, &wait_status, 0);
      exited = true;
      exit_time = Clock::now();
      result.seconds = std::chrono::duration<double>(exit_time - start).count();
      continue;  // collect what the pipes still hold, bounded as above
    }
    std::array<pollfd, 2> polled;
    nfds_t count = 0;
    for (int fd : fds) {
      if (fd >= 0) polled[count++] = pollfd{fd, POLLIN, 0};
    }
    poll(polled.data(), count, kPollMs);
    for (size_t i = 0; i < fds.size(); ++i) {
      for (int reads = 0; fds[i] >= 0 && reads < kReadsPerRound; ++reads) {
        char buffer[4096];
        const ssize_t got = read(fds[i], buffer, sizeof(buffer));
        if (got > 0) {
          sinks[i]->append(buffer, static_cast<size_t>(got));
          continue;
        }
        if (got == 0) CloseIfOpen(fds[i]);
        break;  // end of file, or nothing more for now
      }
    }
    // Not once it is reaped: its pid may be reused.
    if (options.signal != 0 && options.ready && !result.signal_sent && !exited &&
        options.ready(result.out)) {
      kill(options.signal_group ? -pid : pid, options.signal);
      result.signal_sent = true;
    }
  }
  for (int& fd : fds) CloseIfOpen(fd);
  close_all();  // the stdin pipe's write end
  return result;
}

}  // namespace ft::test
