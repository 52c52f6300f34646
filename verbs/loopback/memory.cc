// Memory of loopback nodes (model.h): lkey/rkey lookups with access and range checks, and the
// copies of a request's payload. All callers hold the node's `mem` lock (shared or exclusive).
#include "verbs/loopback/model.h"

#include <algorithm>
#include <cstring>

namespace ft::verbs::loopback {

// Resolves SGEs against n's lkeys. Zero-length SGEs are not checked (as a zero-length DMA).
bool ResolveLocal(const Node& n, const Sge* sges, int count, uint32_t need,
                  std::array<std::byte*, kMaxSge>& out) {
  for (int i = 0; i < count; ++i) {
    const Sge& sge = sges[i];
    out[i] = nullptr;
    if (sge.length == 0) continue;
    auto it = n.lkeys.find(sge.lkey);
    if (it == n.lkeys.end()) return false;
    const MrInfo& mr = it->second;
    if ((mr.access & need) != need || !InRange(mr, sge.addr, sge.length)) return false;
    out[i] = reinterpret_cast<std::byte*>(static_cast<uintptr_t>(sge.addr));
  }
  return true;
}

std::byte* ResolveRemote(const Node& n, uint32_t rkey, uint64_t addr, uint64_t bytes,
                         uint32_t need) {
  auto it = n.rkeys.find(rkey);
  if (it == n.rkeys.end()) return nullptr;
  const MrInfo& mr = it->second;
  if ((mr.access & need) != need || !InRange(mr, addr, bytes)) return nullptr;
  return reinterpret_cast<std::byte*>(static_cast<uintptr_t>(addr));
}

// Copies up to `limit` bytes from the SGEs into dst.
void Gather(std::byte* dst, const Sge* sges, const std::array<std::byte*, kMaxSge>& src, int count,
            uint64_t limit) {
  for (int i = 0; i < count && limit > 0; ++i) {
    const uint64_t n = std::min<uint64_t>(sges[i].length, limit);
    if (n == 0) continue;
    std::memmove(dst, src[i], n);
    dst += n;
    limit -= n;
  }
}

void Scatter(const std::byte* src, const Sge* sges, const std::array<std::byte*, kMaxSge>& dst,
             int count) {
  for (int i = 0; i < count; ++i) {
    if (sges[i].length == 0) continue;
    std::memmove(dst[i], src, sges[i].length);
    src += sges[i].length;
  }
}

}  // namespace ft::verbs::loopback
