// Page-aligned heap buffers for registered memory (stores, pipeline cells, control messages).
#ifndef FT_ENGINE_BUFFER_H_
#define FT_ENGINE_BUFFER_H_

#include <cstddef>
#include <cstdlib>
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
  // Uninitialised memory: the pages are touched only when written (a large store costs nothing
  // until fragments land in it). ResourceExhausted when the allocation fails.
  static Result<AlignedBuffer> Allocate(size_t bytes, size_t alignment = 4096) {
    const size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    auto* p = static_cast<std::byte*>(std::aligned_alloc(alignment, rounded == 0 ? alignment : rounded));
    if (p == nullptr) return Status::ResourceExhausted("cannot allocate ", bytes, " bytes");
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
