// ftbench: ftengine's performance tool. One subcommand per measurement; each lives in its own
// file (encode.cc, ...) and registers itself here.
//
// Exit codes: 0 success or --help, 1 the measurement failed, 2 bad flags or values, 3 (checkpoint
// --kill/--freeze) more nodes lost than the code survives.
#include <CLI/CLI.hpp>

#include <vector>

#include "tools/ftbench/checkpoint.h"
#include "tools/ftbench/encode.h"
#include "tools/ftbench/util.h"
#include "tools/ftbench/write_bw.h"

int main(int argc, char** argv) {
  using ft::ftbench::Command;
  CLI::App app("ftbench: ftengine performance measurements", "ftbench");
  app.require_subcommand(1);
  std::vector<Command> commands = {
      ft::ftbench::RegisterEncode(app),
      ft::ftbench::RegisterCheckpoint(app),
      ft::ftbench::RegisterWriteBw(app),
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Prints the help (to stdout) or the error (to stderr). CLI11's codes are not ours.
    const int code = app.exit(e);
    return code == 0 ? ft::ftbench::kExitOk : ft::ftbench::kExitUsage;
  }
  for (const Command& command : commands) {
    if (command.app->parsed()) return command.run();
  }
  return ft::ftbench::kExitUsage;  // unreachable: require_subcommand(1)
}
