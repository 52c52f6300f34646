// What rdma_node's scenarios share (test/rdma_node.h): region sizes from the flags, the regions
// and their patterns, read-back, store reports and meeting points.
#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "test/rdma_node.h"

namespace ft::rdma_node {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The bytes of `region` of `rank` at `version`.
void FillPattern(std::byte* out, size_t bytes, uint32_t rank, uint64_t version, uint32_t region) {
  const uint64_t seed = Mix((uint64_t{rank} << 48) ^ (version << 16) ^ region);
  for (size_t i = 0; i < bytes; i += 8) {
    const uint64_t word = Mix(seed + i / 8);
    std::memcpy(out + i, &word, std::min<size_t>(8, bytes - i));
  }
}

// The image (regions of `sizes` concatenated in id order) of `rank` at `version`.
std::vector<std::byte> Expected(const std::vector<uint64_t>& sizes, uint32_t rank,
                                uint64_t version) {
  uint64_t total = 0;
  for (uint64_t s : sizes) total += s;
  std::vector<std::byte> image(total);
  uint64_t offset = 0;
  for (size_t r = 0; r < sizes.size(); ++r) {
    FillPattern(image.data() + offset, sizes[r], rank, version, static_cast<uint32_t>(r));
    offset += sizes[r];
  }
  return image;
}

// Empty when equal; else where the first difference lies and how many bytes differ.
std::string Compare(const std::vector<uint64_t>& sizes, const std::vector<std::byte>& got,
                    const std::vector<std::byte>& want) {
  if (got.size() != want.size()) {
    return "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
  }
  if (std::memcmp(got.data(), want.data(), got.size()) == 0) return "";
  size_t first = 0;
  while (got[first] == want[first]) ++first;
  size_t differing = 0;
  for (size_t i = 0; i < got.size(); ++i) differing += got[i] != want[i] ? 1 : 0;
  uint64_t offset = first;
  size_t region = 0;
  while (region + 1 < sizes.size() && offset >= sizes[region]) offset -= sizes[region++];
  std::ostringstream out;
  out << differing << " of " << got.size() << " bytes differ; the first at image offset " << first
      << " (region " << region << " offset " << offset << "): got 0x" << std::hex
      << std::to_integer<int>(got[first]) << ", want 0x" << std::to_integer<int>(want[first]);
  return out.str();
}

std::optional<std::vector<uint64_t>> ParseSizes(const std::string& flag, const std::string& list) {
  std::vector<uint64_t> sizes;
  std::istringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    char* end = nullptr;
    const unsigned long long value = std::strtoull(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || value == 0) {
      std::cerr << "rdma_node: " << flag << " \"" << list
                << "\": each item must be a positive byte count\n";
      return std::nullopt;
    }
    sizes.push_back(value);
  }
  if (sizes.empty()) {
    std::cerr << "rdma_node: " << flag << " is empty\n";
    return std::nullopt;
  }
  return sizes;
}

}  // namespace

std::string g_who = "rdma_node";

std::optional<std::vector<uint64_t>> RegionSizes(const Flags& flags, uint32_t rank) {
  std::optional<std::vector<uint64_t>> sizes = ParseSizes("--regions", flags.regions);
  if (!sizes) return std::nullopt;
  for (const std::string& item : flags.rank_regions) {
    const size_t equals = item.find('=');
    if (equals == std::string::npos || equals == 0 ||
        item.find_first_not_of("0123456789") != equals) {
      std::cerr << "rdma_node: --rank-regions \"" << item << "\" is not R=a,b,...\n";
      return std::nullopt;
    }
    std::optional<std::vector<uint64_t>> own =
        ParseSizes("--rank-regions " + item.substr(0, equals), item.substr(equals + 1));
    if (!own) return std::nullopt;
    if (std::to_string(rank) == item.substr(0, equals)) sizes = std::move(own);
  }
  return sizes;
}

int Fail(const std::string& message) {
  std::cerr << g_who << ": " << message << std::endl;
  return kExitFailure;
}

std::string Seconds(double seconds) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(3) << seconds;
  return out.str();
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

Regions::Regions(std::vector<uint64_t> sizes) : sizes_(std::move(sizes)) {
  for (size_t r = 0; r < sizes_.size(); ++r) {
    // Odd start offsets: registered memory need not be aligned.
    storage_.emplace_back(new std::byte[sizes_[r] + 8]);
    starts_.push_back(storage_.back().get() + (r * 3) % 8);
  }
}

uint64_t Regions::image_bytes() const {
  uint64_t total = 0;
  for (uint64_t s : sizes_) total += s;
  return total;
}

void Regions::Fill(uint32_t rank, uint64_t version) {
  for (size_t r = 0; r < sizes_.size(); ++r) {
    FillPattern(starts_[r], sizes_[r], rank, version, static_cast<uint32_t>(r));
  }
}

Status ProtectAll(Engine& engine, const Regions& regions) {
  for (size_t r = 0; r < regions.count(); ++r) {
    if (Status status = engine.Protect(r, regions.start(r), regions.size(r)); !status.ok()) {
      return status.WithContext("Protect(" + std::to_string(r) + ")");
    }
  }
  return Status();
}

Status Reallocate(Engine& engine, Regions& regions, std::vector<uint64_t> sizes) {
  for (size_t r = 0; r < regions.count(); ++r) {
    if (Status status = engine.Unprotect(r); !status.ok()) {
      return status.WithContext("Unprotect(" + std::to_string(r) + ")");
    }
  }
  // The old memory goes only now, unprotected (the engine's registration of it went first).
  regions = Regions(std::move(sizes));
  return ProtectAll(engine, regions);
}

Result<uint64_t> CheckpointNext(Engine& engine, Regions& regions, uint32_t rank) {
  const uint64_t next = engine.Metrics().committed_version + 1;
  regions.Fill(rank, next);
  Result<uint64_t> version = engine.Checkpoint();
  if (version.ok() && *version != next) {
    return Status::Internal("Checkpoint() committed version ", *version, ", expected ", next,
                            " (the committed version + 1)");
  }
  return version;
}

std::string ReadBack(Engine& engine, const std::vector<uint64_t>& sizes, uint32_t rank,
                     const std::vector<int>& skip) {
  const uint64_t committed = engine.Metrics().committed_version;
  const std::vector<std::byte> want = Expected(sizes, rank, committed);
  std::vector<std::byte> back(want.size(), std::byte{0xa5});
  std::string what = "ReadCommitted of version " + std::to_string(committed);
  if (!skip.empty()) {
    what += " with column";
    // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on " " + std::to_string here.
    for (int column : skip) {
      what += ' ';
      what += std::to_string(column);
    }
    what += " treated as lost";
  }
  if (Status read = engine.ReadCommitted(back, skip); !read.ok()) {
    return what + ": " + read.ToString();
  }
  if (std::string bad = Compare(sizes, back, want); !bad.empty()) return what + ": " + bad;
  return "";
}

std::string ReadBackEach(Engine& engine, const std::vector<uint64_t>& sizes, uint32_t rank,
                         const std::vector<std::vector<int>>& lost) {
  for (const std::vector<int>& skip : lost) {
    if (std::string problem = ReadBack(engine, sizes, rank, skip); !problem.empty()) {
      return problem;
    }
  }
  return "";
}

std::vector<std::vector<int>> LostColumns(int k, int m, uint32_t rank) {
  std::vector<std::vector<int>> lost = {{}, {static_cast<int>(rank) % k}};
  if (m >= 2) lost.push_back({static_cast<int>(rank + 1) % k, k + static_cast<int>(rank) % m});
  return lost;
}

void ReportStores(Engine& engine, const std::string& when) {
  const EngineMetrics metrics = engine.Metrics();
  std::cout << "rank " << engine.world().rank << " " << when << " image " << engine.image_bytes()
            << " store " << metrics.store_bytes << " extents "
            << Engine::StoreBytesFor(engine.image_bytes(), engine.options()) << std::endl;
}

std::string Meet(const Flags& flags, const std::string& name, uint32_t rank, uint32_t size,
                 int except) {
  namespace fs = std::filesystem;
  const fs::path dir(flags.sync_dir);
  std::ofstream(dir / (name + "-" + std::to_string(rank))).put('\n');
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (true) {
    std::string missing;
    for (uint32_t r = 0; r < size; ++r) {
      if (static_cast<int>(r) == except) continue;
      if (!fs::exists(dir / (name + "-" + std::to_string(r)))) {
        missing += ' ';
        missing += std::to_string(r);
      }
    }
    if (missing.empty()) return "";
    if (Clock::now() > deadline)
      return "still no " + name + " file after 30 s from ranks" + missing;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool NamesNode(std::string_view message, int node) {
  const std::string name = "node " + std::to_string(node);
  for (size_t at = message.find(name); at != std::string_view::npos;
       at = message.find(name, at + 1)) {
    const size_t end = at + name.size();
    if (end == message.size() || !std::isdigit(static_cast<unsigned char>(message[end]))) {
      return true;
    }
  }
  return false;
}

}  // namespace ft::rdma_node
