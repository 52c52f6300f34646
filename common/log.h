// Minimal leveled logging to stderr. The level comes from FT_LOG=error|warn|info|debug (default
// warn), read once; SetLogLevel overrides it (tests, tools' --verbose).
//
//   FT_LOG(kInfo) << "committed version " << v;
//
// A disabled level costs one relaxed atomic load; its stream arguments are not evaluated.
#ifndef FT_COMMON_LOG_H_
#define FT_COMMON_LOG_H_

#include <sstream>
#include <string_view>

namespace ft {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

LogLevel GetLogLevel();
void SetLogLevel(LogLevel level);
// Parses "error|warn|info|debug" (case-insensitive); false for anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);

namespace internal {

bool LogEnabled(LogLevel level);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();  // writes the line, whole, to stderr
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace internal
}  // namespace ft

#define FT_LOG(level)                                       \
  if (!::ft::internal::LogEnabled(::ft::LogLevel::level)) { \
  } else                                                    \
    ::ft::internal::LogMessage(::ft::LogLevel::level, __FILE__, __LINE__).stream()

#endif  // FT_COMMON_LOG_H_
