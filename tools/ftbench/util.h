// What ftbench's subcommands share: the subcommand hook, exit codes, aligned buffers, test
// patterns, timing, medians, size options and perftest-like tables.
#ifndef FT_TOOLS_FTBENCH_UTIL_H_
#define FT_TOOLS_FTBENCH_UTIL_H_

#include <CLI/CLI.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "ftengine/status.h"
#include "verbs/rdma/rdma.h"

namespace ft::ftbench {

// Process exit codes of every subcommand.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the measurement ran but something was wrong
inline constexpr int kExitUsage = 2;    // bad flags or values; nothing was measured
// `checkpoint --kill/--freeze`: more nodes were lost than the code's m for some owner, whose
// image is gone (Recover() returned DataLoss naming the owners).
inline constexpr int kExitDataLoss = 3;

// A registered subcommand. main() parses the command line, then calls run() of the one whose
// app->parsed() is true; run() returns the exit code.
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// Zero-filled heap memory aligned to a 64-byte cache line (ISA-L's preferred alignment). The
// zero fill writes every page, so no page fault lands inside a timed loop.
class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  // `bytes` >= 1; ResourceExhausted when the memory cannot be had.
  static Result<AlignedBuffer> Create(size_t bytes);

  uint8_t* data() { return data_.get(); }
  const uint8_t* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<uint8_t> span() { return {data_.get(), size_}; }

 private:
  struct Free {
    void operator()(uint8_t* p) const;
  };
  std::unique_ptr<uint8_t, Free> data_;
  size_t size_ = 0;
};

// `value` rounded up to a multiple of `multiple` (> 0).
constexpr size_t RoundUp(size_t value, size_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

// Fills `bytes` with a reproducible pseudo-random pattern (splitmix64 of `seed`).
void FillPattern(std::span<uint8_t> bytes, uint64_t seed);

// Keeps the compiler from dropping stores to memory nobody reads afterwards (memcpy targets).
inline void ClobberMemory() { asm volatile("" : : : "memory"); }

// Involuntary context switches of the calling thread so far (getrusage RUSAGE_THREAD): when it
// changes across a timed region, another process ran on our CPU inside it.
int64_t InvoluntaryContextSwitches();

// Seconds that `fn` takes, measured with ft::SteadyClock.
template <typename Fn>
double TimeSeconds(Fn&& fn) {
  const SteadyClock& clock = SteadyClock::Default();
  const Nanos start = clock.Now();
  fn();
  return SecondsBetween(start, clock.Now());
}

// Median of a non-empty set (mean of the two middle values for an even count).
double Median(std::vector<double> values);

// (max - min) / min of a non-empty set of positive values: the run-to-run spread.
double Spread(const std::vector<double>& values);

// 1e9 bytes per second.
double GigabytesPerSecond(double bytes, double seconds);

// `value` with `digits` digits after the point.
std::string FormatFixed(double value, int digits);

// "1 MiB", "64 KiB", "1000 B": the largest binary unit that divides `bytes` exactly.
std::string FormatSize(uint64_t bytes);
// A byte count as a user writes it: a number, fractions allowed, then an optional unit. Binary:
// KiB, MiB, GiB, TiB and the bare K, M, G, T (1024 multiples, as before); decimal as SI says: kB,
// MB, GB, TB (1000 multiples); B. Case-insensitive, except that "kb"/"KB" count as kB. Rounded to
// the nearest byte. Negative numbers, unknown units and values over 2^64 - 1 are refused with
// the reason (an empty error means `*bytes` was set).
std::string ParseSize(const std::string& text, uint64_t* bytes);

// Adds an option taking a size (ParseSize); --help shows its default as FormatSize does.
CLI::Option* AddSizeOption(CLI::App& app, const std::string& name, uint64_t* value,
                           const std::string& description);

// --device and --gid-index of the subcommands that run over rdma. Set, they override FT_DEVICE
// and FT_GID_INDEX (verbs::RdmaOptions reads those only for fields left unset).
struct DeviceFlags {
  std::string device;  // empty: FT_DEVICE, else the device owning the listen address
  int gid_index = -1;  // -1: FT_GID_INDEX, else the RoCE v2 entry of the listen address
};
void AddDeviceOptions(CLI::App& app, DeviceFlags* flags);
// The rdma Fabric's options with these flags (the rest at their defaults).
verbs::RdmaOptions RdmaOptionsOf(const DeviceFlags& flags);

// Check for an integer option: rejects text that is not a whole decimal integer and values
// outside [min, max], with a message that says which ("--k: 0 is outside [1, 63]"); `why`, if
// given, is appended to the range message.
CLI::Validator IntRange(int64_t min, int64_t max, const std::string& why = "");

// A perftest-style text table: a line of dashes, the header, the rows, a line of dashes. Each
// column is as wide as its widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header);
  // `cells` must have one entry per header column.
  void AddRow(std::vector<std::string> cells);
  std::string ToString() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace ft::ftbench

#endif  // FT_TOOLS_FTBENCH_UTIL_H_
