// Runs a program (ftbench, ftrun) as a child process for the tests of the command-line tools:
// collects its stdout and stderr and its exit status, bounded by a deadline.
#ifndef FT_TEST_RUN_PROGRAM_H_
#define FT_TEST_RUN_PROGRAM_H_

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

namespace ft::test {

struct ProgramResult {
  int status = -1;  // exit status, or 128 + signal
  bool timed_out = false;
  bool started = false;
  double seconds = 0;  // start to exit
  std::string out;
  std::string err;
};

// Whether `variable` ("NAME=value") tells a process who it is in a job: FT_*, or the rank and
// size variables of Slurm, PMI and Open MPI. The tests give these explicitly.
inline bool IsLauncherVariable(const std::string& variable) {
  for (const char* prefix : {"FT_", "SLURM_PROCID=", "SLURM_NTASKS=", "PMI_RANK=", "PMI_SIZE=",
                             "OMPI_COMM_WORLD_RANK=", "OMPI_COMM_WORLD_SIZE="}) {
    if (variable.starts_with(prefix)) return true;
  }
  return false;
}

// Runs `args` (args[0] a path) with stdin /dev/null and the test's environment, less the
// launcher variables, plus `set_environment` (NAME=value). The child leads its own process group;
// at `deadline` the whole group is killed and timed_out is set.
inline ProgramResult RunProgram(std::vector<std::string> args,
                                const std::vector<std::string>& set_environment,
                                std::chrono::seconds deadline) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::string> environment;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!IsLauncherVariable(*entry)) environment.emplace_back(*entry);
  }
  environment.insert(environment.end(), set_environment.begin(), set_environment.end());
  std::vector<char*> argv;
  for (std::string& argument : args) argv.push_back(argument.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& variable : environment) envp.push_back(variable.data());
  envp.push_back(nullptr);

  ProgramResult result;
  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return result;
  if (pipe2(err, O_CLOEXEC) != 0) {
    close(out[0]);
    close(out[1]);
    return result;
  }
  const Clock::time_point start = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    const int null = open("/dev/null", O_RDONLY);
    dup2(null, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(out[0]);
    close(err[0]);
    return result;
  }
  result.started = true;
  setpgid(pid, pid);
  int fds[2] = {out[0], err[0]};
  for (int fd : fds) fcntl(fd, F_SETFL, O_NONBLOCK);
  std::string* sinks[2] = {&result.out, &result.err};
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
    if (exited && ((fds[0] < 0 && fds[1] < 0) || now - exit_time > std::chrono::seconds(5))) {
      break;  // a pipe still open 5 s after exit: something the child left behind holds it
    }
    if (!exited && now - start > deadline) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      waitpid(pid, &wait_status, 0);
      break;
    }
    pollfd polled[2];
    nfds_t count = 0;
    for (int fd : fds) {
      if (fd >= 0) polled[count++] = pollfd{fd, POLLIN, 0};
    }
    poll(polled, count, 50);
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0) continue;
      char buffer[4096];
      const ssize_t got = read(fds[i], buffer, sizeof(buffer));
      if (got > 0) {
        sinks[i]->append(buffer, static_cast<size_t>(got));
      } else if (got == 0) {
        close(fds[i]);
        fds[i] = -1;
      }
    }
  }
  for (int fd : fds) {
    if (fd >= 0) close(fd);
  }
  return result;
}

}  // namespace ft::test

#endif  // FT_TEST_RUN_PROGRAM_H_
