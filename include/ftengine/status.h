// ft::Status and ft::Result<T>: how every fallible ftengine call reports failure.
//
// A Status is OK or carries a code and a message that names the bad value. An OK Status costs
// one null pointer (as leveldb's Status). Result<T> holds either a T or a non-OK Status, with
// absl::StatusOr semantics: value() on an error is a programmer error and aborts.
//
// Thread-safety: distinct objects may be used from distinct threads; const methods of one
// object may be called concurrently.
#ifndef FTENGINE_STATUS_H_
#define FTENGINE_STATUS_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "ftengine/export.h"

namespace ft {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument = 1,     // the caller passed a bad value; nothing changed
  kNotFound = 2,            // a named thing (region id, version) does not exist
  kFailedPrecondition = 3,  // the call is not allowed in the current state
  kResourceExhausted = 4,   // memory, store space or queue depth ran out
  kUnavailable = 5,         // a peer is down or unreachable
  kDeadlineExceeded = 6,    // a bounded wait ran out
  kAborted = 7,             // the epoch changed under the operation
  kDataLoss = 8,            // CRC mismatch or too few fragments to decode
  kInternal = 9,            // a bug or an unexpected library failure
};

// "InvalidArgument", "DataLoss", ... ("Unknown" for values outside the enum).
FT_EXPORT const char* StatusCodeName(StatusCode code);

// Concatenates the streamed form of each argument: StrCat("k = ", k, " is too large").
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return std::move(out).str();
}

class [[nodiscard]] FT_EXPORT Status {
 public:
  Status() noexcept = default;  // OK
  Status(StatusCode code, std::string_view message);
  Status(const Status& other)
      : state_(other.state_ ? std::make_unique<State>(*other.state_) : nullptr) {}
  Status& operator=(const Status& other) {
    if (this != &other) state_ = other.state_ ? std::make_unique<State>(*other.state_) : nullptr;
    return *this;
  }
  Status(Status&&) noexcept = default;
  Status& operator=(Status&&) noexcept = default;

  static Status Ok() { return Status(); }
  template <typename... Args>
  static Status InvalidArgument(const Args&... args) {
    return Status(StatusCode::kInvalidArgument, StrCat(args...));
  }
  template <typename... Args>
  static Status NotFound(const Args&... args) {
    return Status(StatusCode::kNotFound, StrCat(args...));
  }
  template <typename... Args>
  static Status FailedPrecondition(const Args&... args) {
    return Status(StatusCode::kFailedPrecondition, StrCat(args...));
  }
  template <typename... Args>
  static Status ResourceExhausted(const Args&... args) {
    return Status(StatusCode::kResourceExhausted, StrCat(args...));
  }
  template <typename... Args>
  static Status Unavailable(const Args&... args) {
    return Status(StatusCode::kUnavailable, StrCat(args...));
  }
  template <typename... Args>
  static Status DeadlineExceeded(const Args&... args) {
    return Status(StatusCode::kDeadlineExceeded, StrCat(args...));
  }
  template <typename... Args>
  static Status Aborted(const Args&... args) {
    return Status(StatusCode::kAborted, StrCat(args...));
  }
  template <typename... Args>
  static Status DataLoss(const Args&... args) {
    return Status(StatusCode::kDataLoss, StrCat(args...));
  }
  template <typename... Args>
  static Status Internal(const Args&... args) {
    return Status(StatusCode::kInternal, StrCat(args...));
  }

  bool ok() const { return state_ == nullptr; }
  StatusCode code() const { return state_ ? state_->code : StatusCode::kOk; }
  // Empty for OK.
  std::string_view message() const { return state_ ? std::string_view(state_->message) : ""; }
  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is "<context>: <message>" (OK stays OK).
  Status WithContext(std::string_view context) const;

  // Consumes an error on purpose (documents why a Status is dropped).
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct State {
    StatusCode code;
    std::string message;
  };
  std::unique_ptr<State> state_;
};

FT_EXPORT std::ostream& operator<<(std::ostream& out, const Status& status);

namespace internal {
[[noreturn]] FT_EXPORT void DieBecauseResultHasNoValue(const Status& status);
}  // namespace internal

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  // Implicit on purpose: `return value;` and `return Status::InvalidArgument(...)` both work.
  Result(const T& value) : data_(value) {}            // NOLINT(google-explicit-constructor)
  Result(T&& value) : data_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Status status) : data_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(data_).ok()) {
      data_ = Status(StatusCode::kInternal, "Result constructed from an OK Status without a value");
    }
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  Status status() const { return ok() ? Status() : std::get<Status>(data_); }

  const T& value() const& {
    CheckHasValue();
    return std::get<T>(data_);
  }
  T& value() & {
    CheckHasValue();
    return std::get<T>(data_);
  }
  T&& value() && {
    CheckHasValue();
    return std::get<T>(std::move(data_));
  }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  void CheckHasValue() const {
    if (!ok()) internal::DieBecauseResultHasNoValue(std::get<Status>(data_));
  }
  std::variant<Status, T> data_;
};

}  // namespace ft

// Returns the Status of `expr` from the enclosing function when it is not OK.
#define FT_RETURN_IF_ERROR(expr)                     \
  do {                                               \
    ::ft::Status ft_status_tmp_ = (expr);            \
    if (!ft_status_tmp_.ok()) return ft_status_tmp_; \
  } while (0)

#define FT_CONCAT_INNER_(a, b) a##b
#define FT_CONCAT_(a, b) FT_CONCAT_INNER_(a, b)
// `FT_ASSIGN_OR_RETURN(auto x, MakeX());`: declares/assigns x or returns the error.
#define FT_ASSIGN_OR_RETURN(lhs, rexpr) \
  FT_ASSIGN_OR_RETURN_IMPL_(FT_CONCAT_(ft_result_tmp_, __LINE__), lhs, rexpr)
#define FT_ASSIGN_OR_RETURN_IMPL_(result, lhs, rexpr) \
  auto result = (rexpr);                              \
  if (!result.ok()) return result.status();           \
  lhs = std::move(result).value()

#endif  // FTENGINE_STATUS_H_
