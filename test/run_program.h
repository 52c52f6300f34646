// Runs a program (ftrun, ftbench, rdma_node) as a child process for the tests of the
// command-line tools: collects its stdout and stderr and its exit status, bounded by a deadline.
// The one runner of the tests; RunOptions holds what only some of them need (a stdin pipe, no
// process group of its own, a signal once the output says the program is ready).
#ifndef FT_TEST_RUN_PROGRAM_H_
#define FT_TEST_RUN_PROGRAM_H_

#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace ft::test {

struct RunOptions {
  // NAME=value, added to the test's environment; each replaces an inherited variable of that
  // name. The launcher variables (IsLauncherVariable) are never inherited, only given here.
  std::vector<std::string> set_environment;
  // From the start: past it the program (its process group with own_process_group) gets
  // SIGKILL and the run is timed out. The pipes are then still read for up to 5 s.
  std::chrono::duration<double> deadline = std::chrono::seconds(30);
  // The program leads a process group of its own (as a terminal's job would), so that the kill
  // at the deadline reaches whatever it started in that group. Else it stays in the test's group
  // and only it is killed.
  bool own_process_group = true;
  // The program's stdin: a pipe the test holds open and never writes to (a program that reads
  // it would wait until the deadline), else /dev/null.
  bool stdin_open_pipe = false;
  // When `signal` is not 0: once ready(stdout so far) holds while the program runs, `signal` is
  // sent to it (to its process group with signal_group), once. `ready` is called after each
  // read of the pipes, on the test's thread.
  std::function<bool(const std::string& out)> ready;
  int signal = 0;
  bool signal_group = false;
};

struct ProgramResult {
  int status = -1;       // exit status, or 128 + signal; -1 when timed out or not started
  bool started = false;  // false: pipe2() or fork() failed, nothing ran
  bool timed_out = false;
  bool signal_sent = false;  // RunOptions::signal went out
  double seconds = 0;        // start to exit (to the kill, when timed out)
  std::string out;
  std::string err;
};

// Whether `variable` ("NAME=value") tells a process who it is in a job or where its coordinator
// is: FT_*, RXE_VM_IP (ftrun's coordinator address), or the rank and size variables of Slurm,
// PMI and Open MPI. The tests give these explicitly, so that they behave the same inside the
// soft-RoCE VM or under a launcher.
bool IsLauncherVariable(const std::string& variable);

// Runs `args` (args[0] a path, not searched in PATH) with the test's environment less the
// launcher variables, plus options.set_environment; returns when the program has exited and its
// pipes are closed (or 5 s after its exit, when something it left behind holds them), or at
// options.deadline. Every wait is bounded by the deadline; the test's thread polls every 50 ms.
ProgramResult RunProgram(std::vector<std::string> args, const RunOptions& options);

// The common case: only an environment and a deadline.
inline ProgramResult RunProgram(std::vector<std::string> args,
                                const std::vector<std::string>& set_environment,
                                std::chrono::duration<double> deadline) {
  RunOptions options;
  options.set_environment = set_environment;
  options.deadline = deadline;
  return RunProgram(std::move(args), options);
}

// A program's output as lines (without their newlines), and a substring test for EXPECT_PRED2.
inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream stream(text);
  for (std::string line; std::getline(stream, line);) lines.push_back(line);
  return lines;
}
inline bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A fresh directory under the system's temporary directory, removed with its contents at scope
// end: for programs under test that meet or leave results through files. path() is empty when it
// could not be made.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix) {
    std::string name = std::filesystem::temp_directory_path() / (prefix + ".XXXXXX");
    path_ = mkdtemp(name.data()) != nullptr ? name : "";
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace ft::test

#endif  // FT_TEST_RUN_PROGRAM_H_
