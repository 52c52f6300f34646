// FT_CHECK: programmer errors abort with the failed condition and its location. They are not
// Statuses: a caller cannot handle a broken invariant, only fix the code.
#ifndef FT_COMMON_CHECK_H_
#define FT_COMMON_CHECK_H_

namespace ft::internal {
[[noreturn]] void CheckFailed(const char* file, int line, const char* condition,
                              const char* detail);
}  // namespace ft::internal

#define FT_CHECK(condition)                                                 \
  do {                                                                      \
    if (!(condition)) [[unlikely]]                                          \
      ::ft::internal::CheckFailed(__FILE__, __LINE__, #condition, nullptr); \
  } while (0)

// FT_CHECK with a fixed explanation: FT_CHECK_MSG(n <= cap, "queue overflow").
#define FT_CHECK_MSG(condition, detail)                                      \
  do {                                                                       \
    if (!(condition)) [[unlikely]]                                           \
      ::ft::internal::CheckFailed(__FILE__, __LINE__, #condition, (detail)); \
  } while (0)

#endif  // FT_COMMON_CHECK_H_
