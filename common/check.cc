#include "common/check.h"

#include <cstdio>
#include <cstdlib>

namespace ft::internal {

void CheckFailed(const char* file, int line, const char* condition, const char* detail) {
  std::fprintf(stderr, "ftengine: FATAL: %s:%d: check failed: %s%s%s\n", file, line, condition,
               detail ? ": " : "", detail ? detail : "");
  std::fflush(stderr);
  std::abort();
}

}  // namespace ft::internal
