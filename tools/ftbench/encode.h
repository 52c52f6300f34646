// `ftbench encode`: the engine's erasure encode and decode against raw ISA-L on the same buffers.
//
// It allocates S stripes of k data and m parity cells (64-byte aligned, skewed so that no two
// cells share a page offset; see kSlotSkew in encode.cc), fills the data with a seeded pattern
// and checks once, untimed, that engine and ISA-L encode give the same parity and that both
// decodes give back the lost cells. Then, for R repetitions, it takes one sample of each of:
// memcpy of the data bytes, ft::erasure::Codec::Encode, raw ec_encode_data with tables built
// here, Codec::Decode of cells 0..m-1 from cells m..k+m-1, and the raw ISA-L decode of the same
// cells. A sample sweeps all S stripes (several times, >= 0.1 s in all) in timed units of one
// stripe (more for small cells); engine and ISA-L units alternate, on different stripes, so that
// whatever else the machine does slows both alike, and unit pairs during which another process
// preempted us are dropped. The order flips every repetition. The report gives medians in GB/s
// of data bytes (k * cell_bytes per stripe processed, 1 GB = 1e9 bytes).
#ifndef FT_TOOLS_FTBENCH_ENCODE_H_
#define FT_TOOLS_FTBENCH_ENCODE_H_

#include <CLI/CLI.hpp>

#include <cstdint>

#include "tools/ftbench/util.h"

namespace ft::ftbench {

struct EncodeOptions {
  int k = 8;
  int m = 2;
  uint64_t cell_bytes = 1 << 20;
  // 16 stripes of RS(8,2) at 1 MiB are 160 MiB per pass: far past the 32 MiB last-level cache,
  // so 1 MiB cells are measured streaming from memory rather than from cache.
  int stripes = 16;
  int repetitions = 9;
  bool json = false;
};

// Fewer repetitions give no usable median.
inline constexpr int kMinRepetitions = 5;

// Adds the `encode` subcommand to `app`.
Command RegisterEncode(CLI::App& app);

// Runs the measurement and prints the report; returns the exit code (kExitUsage for values
// the codec rejects, kExitFailure when a decode does not reproduce the data).
int RunEncode(const EncodeOptions& options);

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_ENCODE_H_
