#include "tools/ftrun/output.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ft::ftrun {
namespace {

constexpr size_t kReadChunk = 64 * 1024;  // one read() of a child's pipe
constexpr size_t kMaxLine = 64 * 1024;    // a longer line is tagged in pieces of this size
constexpr int kMaxDrainReads = 16;        // bound on reading a dead child's pipe at once
constexpr auto kWriteStall = std::chrono::seconds(10);  // our stdout/stderr not draining

std::string& ReadBuffer() {
  static std::string buffer(kReadChunk, '\0');
  return buffer;
}

}  // namespace

void Sink::Write(std::string_view data) {
  const TimePoint deadline = Clock::now() + kWriteStall;
  while (!data.empty() && !broken_) {
    const ssize_t written = write(fd_, data.data(), data.size());
    if (written > 0) {
      data.remove_prefix(static_cast<size_t>(written));
      continue;
    }
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && Clock::now() < deadline) {
      pollfd ready{fd_, POLLOUT, 0};
      poll(&ready, 1, PollMillis(deadline - Clock::now()));
      continue;
    }
    broken_ = true;
  }
}

void Note(Sink& err, const std::string& text) { err.Write("ftrun: " + text + "\n"); }

bool LineRelay::ReadOnce() {
  if (!fd_.valid()) return false;
  std::string& buffer = ReadBuffer();
  ssize_t got;
  do {
    got = read(fd_.get(), buffer.data(), buffer.size());
  } while (got < 0 && errno == EINTR);
  if (got > 0) {
    pending_.append(buffer.data(), static_cast<size_t>(got));
    Emit(/*flush_partial=*/false);
    return true;
  }
  if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
  Close();
  return false;
}

void LineRelay::Drain() {
  for (int i = 0; i < kMaxDrainReads && ReadOnce(); ++i) {
  }
}

void LineRelay::Close() {
  Emit(/*flush_partial=*/true);
  fd_.Reset();
}

void LineRelay::Emit(bool flush_partial) {
  std::string out;
  std::vector<std::pair<size_t, size_t>> lines;  // offset and length in pending_, for watcher_
  size_t start = 0;
  while (start < pending_.size()) {
    const size_t newline = pending_.find('\n', start);
    size_t end;
    size_t next;
    if (newline != std::string::npos && newline - start <= kMaxLine) {
      end = newline;
      next = newline + 1;
    } else if (pending_.size() - start >= kMaxLine) {
      end = start + kMaxLine;
      next = end;
    } else if (flush_partial) {
      end = pending_.size();
      next = end;
    } else {
      break;
    }
    if (watcher_) lines.emplace_back(start, end - start);
    out += prefix_;
    out.append(pending_, start, end - start);
    out += '\n';
    start = next;
  }
  if (!out.empty()) sink_->Write(out);
  for (const auto& [offset, length] : lines)
    watcher_(std::string_view(pending_).substr(offset, length));
  pending_.erase(0, start);
}

}  // namespace ft::ftrun
