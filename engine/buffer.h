// Page-aligned heap buffers for registered memory (stores, pipeline cells, control messages).
#ifndef FT_ENGINE_BUFFER_H_
#define FT_ENGINE_BUFFER_H_

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "ftengine/status.h"

namespace ft::internal {

struct FreeDeleter {
  void operator()(std::byte* p) const { std::free(p); }
};

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  // Zero-filled memory: every page is touched here, as ibv_reg_mr pins it on a real device, so no
  // page fault lands inside a checkpoint, and a store never exposes stale heap bytes.
  // ResourceExhausted when the allocation fails.
  static Result<AlignedBuffer> Allocate(size_t bytes, size_t alignment = 4096) {
    const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    auto* p =
        static_cast<std::byte*>(std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded));
    if (p == nullptr) return Status::ResourceExhausted("cannot allocate ", bytes, " bytes");
    std::memset(p, 0, rounded == 0 ? alignment : rounded);
    AlignedBuffer buffer;
    buffer.data_.reset(p);
    buffer.size_ = bytes;
    return buffer;
  }
  std::byte* data() const { return data_.get(); }
  size_t size() const { return size_; }
  std::span<std::byte> span() const { return {data_.get(), size_}; }

 private:
  std::unique_ptr<std::byte, FreeDeleter> data_;
  size_t size_ = 0;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_BUFFER_H_
