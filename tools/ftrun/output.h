// ftrun's output: its own two streams (Sink), its notes, and the relay of a child's stream to
// one of them under --tag-output, whole lines with a prefix (LineRelay).
#ifndef FT_TOOLS_FTRUN_OUTPUT_H_
#define FT_TOOLS_FTRUN_OUTPUT_H_

#include <functional>
#include <string>
#include <string_view>
#include <utility>

#include "tools/ftrun/common.h"

namespace ft::ftrun {

// One of ftrun's own output streams (stdout or stderr). Each Write is whole lines and completes
// before the next starts (ftrun is single-threaded), so lines from different ranks never mix.
// After EPIPE, or kWriteStall without progress on a non-blocking descriptor, the rest is dropped.
class Sink {
 public:
  explicit Sink(int fd) : fd_(fd) {}

  void Write(std::string_view data);

 private:
  int fd_;
  bool broken_ = false;
};

// ftrun's notes on stderr: "ftrun: <text>\n" in one write.
void Note(Sink& err, const std::string& text);

// Reads one child stream (a non-blocking pipe) and writes each of its lines to `sink` as
// `prefix` + line + "\n". A partial last line is completed at EOF or Close(). A line longer than
// kMaxLine (64 KiB) is written in pieces of that size, each with the prefix. `sink` must outlive
// the relay.
class LineRelay {
 public:
  LineRelay(UniqueFd fd, std::string prefix, Sink* sink)
      : fd_(std::move(fd)), prefix_(std::move(prefix)), sink_(sink) {}

  int fd() const { return fd_.get(); }
  bool open() const { return fd_.valid(); }

  // One read of what the pipe holds. False when nothing was read (empty, EOF or error; the last
  // two close the relay).
  bool ReadOnce();

  // Reads what is already in the pipe (bounded: kMaxDrainReads reads).
  void Drain();

  // Writes a partial last line and stops reading.
  void Close();

  // Called with each line (without prefix or newline) once it is written.
  void OnLine(std::function<void(std::string_view)> watcher) { watcher_ = std::move(watcher); }

 private:
  void Emit(bool flush_partial);

  UniqueFd fd_;
  std::string prefix_;
  Sink* sink_;
  std::string pending_;  // bytes after the last complete line
  std::function<void(std::string_view)> watcher_;
};

}  // namespace ft::ftrun

#endif  // FT_TOOLS_FTRUN_OUTPUT_H_
