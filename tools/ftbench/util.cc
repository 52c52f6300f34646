#include "tools/ftbench/util.h"

#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <sstream>
#include <utility>

namespace ft::ftbench {

void AlignedBuffer::Free::operator()(uint8_t* p) const { std::free(p); }

Result<AlignedBuffer> AlignedBuffer::Create(size_t bytes) {
  if (bytes == 0) return Status::InvalidArgument("AlignedBuffer of 0 bytes");
  // aligned_alloc wants a size that is a multiple of the alignment.
  const size_t rounded = RoundUp(bytes, kAlignment);
  if (rounded < bytes) return Status::ResourceExhausted(bytes, " bytes overflow size_t");
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(kAlignment, rounded));
  if (p == nullptr) {
    return Status::ResourceExhausted("cannot allocate ", bytes, " bytes (", FormatSize(bytes), ")");
  }
  std::memset(p, 0, rounded);
  AlignedBuffer buffer;
  buffer.data_.reset(p);
  buffer.size_ = bytes;
  return buffer;
}

void FillPattern(std::span<uint8_t> bytes, uint64_t seed) {
  uint64_t state = seed;
  auto next = [&state] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  };
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    const uint64_t word = next();
    std::memcpy(bytes.data() + i, &word, 8);
  }
  if (i < bytes.size()) {
    const uint64_t word = next();
    std::memcpy(bytes.data() + i, &word, bytes.size() - i);
  }
}

int64_t InvoluntaryContextSwitches() {
  rusage usage{};
  if (getrusage(RUSAGE_THREAD, &usage) != 0) return 0;
  return usage.ru_nivcsw;
}

double Median(std::vector<double> values) {
  const size_t n = values.size();
  std::sort(values.begin(), values.end());
  if (n % 2 == 1) return values[n / 2];
  return (values[n / 2 - 1] + values[n / 2]) / 2;
}

double Spread(const std::vector<double>& values) {
  const auto [min, max] = std::minmax_element(values.begin(), values.end());
  return (*max - *min) / *min;
}

double GigabytesPerSecond(double bytes, double seconds) { return bytes / seconds / 1e9; }

std::string FormatFixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return std::move(out).str();
}

std::string FormatSize(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (unit + 1 < static_cast<int>(std::size(kUnits)) && bytes >= 1024 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return std::to_string(bytes) + " " + kUnits[unit];
}

std::string ParseSize(const std::string& text, uint64_t* bytes) {
  size_t end = 0;
  while (end < text.size() && (std::isdigit(static_cast<unsigned char>(text[end])) != 0 ||
                               text[end] == '.' || text[end] == '-' || text[end] == '+')) {
    ++end;
  }
  const std::string number = text.substr(0, end);
  std::string unit = text.substr(end);
  unit.erase(0, unit.find_first_not_of(' '));
  if (number.find('-') != std::string::npos) return "a size cannot be negative";
  double value = 0;
  const auto [rest, error] = std::from_chars(number.data(), number.data() + number.size(), value);
  if (number.empty() || error != std::errc() || rest != number.data() + number.size()) {
    return "not a size: a number (fractions allowed) and a unit such as KiB, MiB, GiB, kB, MB";
  }
  std::string lower = unit;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},         {"b", 1},      {"k", 0x1p10},   {"kib", 0x1p10}, {"m", 0x1p20},
      {"mib", 0x1p20}, {"g", 0x1p30}, {"gib", 0x1p30}, {"t", 0x1p40},   {"tib", 0x1p40},
      {"kb", 1e3},     {"mb", 1e6},   {"gb", 1e9},     {"tb", 1e12}};
  const auto found = std::find_if(std::begin(kUnits), std::end(kUnits),
                                  [&](const auto& entry) { return lower == entry.first; });
  if (found == std::end(kUnits)) {
    return "unknown unit \"" + unit +
           "\": use B, KiB, MiB, GiB, TiB (K, M, G, T are the same) or " +
           "kB, MB, GB, TB (powers of 1000)";
  }
  const double total = std::round(value * found->second);
  if (!(total < 0x1p64)) return "too large: at most 2^64 - 1 bytes";
  *bytes = static_cast<uint64_t>(total);
  return "";
}

CLI::Option* AddSizeOption(CLI::App& app, const std::string& name, uint64_t* value,
                           const std::string& description) {
  return app.add_option(name, *value, description)
      ->transform(CLI::Validator(
          [](std::string& input) -> std::string {
            uint64_t bytes = 0;
            const std::string error = ParseSize(input, &bytes);
            if (error.empty()) input = std::to_string(bytes);
            return error.empty() ? error : input + ": " + error;
          },
          "", "size"))
      ->type_name("SIZE")
      ->default_str(FormatSize(*value));
}

void AddDeviceOptions(CLI::App& app, DeviceFlags* flags) {
  app.add_option("--device", flags->device,
                 "rdma: the RDMA device (as ibv_devices lists it); overrides FT_DEVICE")
      ->type_name("NAME");
  app.add_option("--gid-index", flags->gid_index,
                 "rdma: the source GID index (show_gids lists them); overrides FT_GID_INDEX")
      ->type_name("N")
      ->check(IntRange(0, 1023));
}

verbs::RdmaOptions RdmaOptionsOf(const DeviceFlags& flags) {
  verbs::RdmaOptions options;
  options.device = flags.device;
  options.gid_index = flags.gid_index;
  return options;
}

CLI::Validator IntRange(int64_t min, int64_t max, const std::string& why) {
  const std::string range = "[" + std::to_string(min) + ", " + std::to_string(max) + "]";
  return CLI::Validator(
      [min, max, range, why](std::string& input) -> std::string {
        int64_t value = 0;
        const char* end = input.data() + input.size();
        const auto [ptr, error] = std::from_chars(input.data(), end, value);
        if (input.empty() || error == std::errc::invalid_argument || ptr != end) {
          return "'" + input + "' is not an integer";
        }
        if (error == std::errc::result_out_of_range || value < min || value > max) {
          return input + " is outside " + range + (why.empty() ? "" : " (" + why + ")");
        }
        return "";
      },
      "in " + range);
}

Table::Table(std::vector<std::string> header) : header_(std::move(header)) {}

void Table::AddRow(std::vector<std::string> cells) {
  cells.resize(header_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::ToString() const {
  std::vector<size_t> widths(header_.size());
  for (size_t c = 0; c < header_.size(); ++c) {
    widths[c] = header_[c].size();
    for (const auto& row : rows_) widths[c] = std::max(widths[c], row[c].size());
  }
  constexpr size_t kGap = 4;
  size_t total = 1;
  for (size_t width : widths) total += width + kGap;
  const std::string dashes(total - kGap, '-');

  std::ostringstream out;
  auto print_row = [&](const std::vector<std::string>& cells) {
    std::string line = " ";
    for (size_t c = 0; c < cells.size(); ++c) {
      line += cells[c];
      if (c + 1 < cells.size()) line += std::string(widths[c] - cells[c].size() + kGap, ' ');
    }
    out << line << "\n";
  };
  out << dashes << "\n";
  print_row(header_);
  for (const auto& row : rows_) print_row(row);
  out << dashes << "\n";
  return std::move(out).str();
}

}  // namespace ft::ftbench
