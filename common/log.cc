#include "common/log.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

namespace ft {
namespace {

LogLevel LevelFromEnvironment() {
  const char* text = std::getenv("FT_LOG");
  LogLevel level = LogLevel::kWarn;
  if (text != nullptr && *text != '\0' && !ParseLogLevel(text, &level)) {
    std::fprintf(stderr, "ftengine: FT_LOG=%s is not one of error|warn|info|debug; using warn\n",
                 text);
  }
  return level;
}

std::atomic<int>& LevelStorage() {
  static std::atomic<int> level(static_cast<int>(LevelFromEnvironment()));
  return level;
}

const char* LevelLetter(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "E";
    case LogLevel::kWarn:
      return "W";
    case LogLevel::kInfo:
      return "I";
    case LogLevel::kDebug:
      return "D";
  }
  return "?";
}

}  // namespace

LogLevel GetLogLevel() {
  return static_cast<LogLevel>(LevelStorage().load(std::memory_order_relaxed));
}

void SetLogLevel(LogLevel level) {
  LevelStorage().store(static_cast<int>(level), std::memory_order_relaxed);
}

bool ParseLogLevel(std::string_view text, LogLevel* level) {
  std::string lower;
  for (char c : text)
    lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  if (lower == "error") {
    *level = LogLevel::kError;
  } else if (lower == "warn" || lower == "warning") {
    *level = LogLevel::kWarn;
  } else if (lower == "info") {
    *level = LogLevel::kInfo;
  } else if (lower == "debug") {
    *level = LogLevel::kDebug;
  } else {
    return false;
  }
  return true;
}

namespace internal {

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) <= LevelStorage().load(std::memory_order_relaxed);
}

LogMessage::LogMessage(LogLevel level, const char* file, int line) {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const auto millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &utc);
  const char* base = std::strrchr(file, '/');
  stream_ << "[ftengine " << LevelLetter(level) << ' ' << stamp << '.' << (millis / 100)
          << (millis / 10 % 10) << (millis % 10) << ' ' << (base ? base + 1 : file) << ':' << line
          << "] ";
}

LogMessage::~LogMessage() {
  stream_ << '\n';
  const std::string line = std::move(stream_).str();
  std::fwrite(line.data(), 1, line.size(), stderr);  // one write: lines from threads do not mix
}

}  // namespace internal
}  // namespace ft
