// The README's C++ example: 8 engines in one process over the loopback fabric, each node
// checkpointing its state and reading it back. Exits 0 when every node's committed image equals
// its state, 1 otherwise (the message says which rank failed and why).
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"

int main() {
  constexpr size_t kBytes = 100'000;
  std::vector<std::vector<std::byte>> state(8, std::vector<std::byte>(kBytes));

  ft::LoopbackWorldOptions options;      // nodes = 8, engine options, failure domains, capacities
  options.engine.cell_bytes = 64 << 10;  // k = 4, m = 2 by default
  auto world = ft::LoopbackWorld::Create(options);
  if (!world.ok()) {
    std::cerr << world.status() << "\n";
    return 1;
  }
  ft::Status s = (*world)->Run([&](uint32_t rank, ft::Engine& engine) -> ft::Status {
    for (size_t i = 0; i < kBytes; ++i) state[rank][i] = std::byte(i * 7 + rank);
    FT_RETURN_IF_ERROR(engine.Protect(0, state[rank].data(), state[rank].size()));
    FT_RETURN_IF_ERROR(engine.Checkpoint().status());  // collective: every node calls it

    std::vector<std::byte> back(kBytes);
    FT_RETURN_IF_ERROR(engine.ReadCommitted(back));
    if (back != state[rank]) return ft::Status::DataLoss("the image read back differs");
    return ft::Status();
  });
  if (!s.ok()) {
    std::cerr << s << "\n";  // e.g. "DataLoss: rank 3: ..."
    return 1;
  }
  std::cout << (*world)->size() << " nodes checkpointed and read back\n";
  return 0;
}
