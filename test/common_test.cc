// Tests of common/: Status, Result<T>, the error macros, FT_CHECK, clocks and logging.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/clock.h"
#include "common/log.h"
#include "ftengine/status.h"

namespace ft {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// ---------------------------------------------------------------------------------------------
// Status

TEST(StatusTest, DefaultIsOkAndCostsOnePointer) {
  const Status status;
  EXPECT_TRUE(status.ok());
  EXPECT_EQ(status.code(), StatusCode::kOk);
  EXPECT_TRUE(status.message().empty());
  EXPECT_EQ(status.ToString(), "OK");
  EXPECT_EQ(sizeof(Status), sizeof(void*));
  EXPECT_TRUE(std::is_nothrow_default_constructible_v<Status>);
  EXPECT_TRUE(std::is_nothrow_move_constructible_v<Status>);
  EXPECT_TRUE(std::is_nothrow_move_assignable_v<Status>);
  EXPECT_TRUE(Status::Ok().ok());
}

TEST(StatusTest, OkCodeWithMessageIsStillPlainOk) {
  const Status status(StatusCode::kOk, "ignored");
  EXPECT_TRUE(status.ok());
  EXPECT_TRUE(status.message().empty());
  EXPECT_EQ(status, Status());
}

TEST(StatusTest, FactoriesSetCodeAndConcatenatedMessage) {
  struct Case {
    Status status;
    StatusCode code;
    const char* name;
  };
  const int k = 70;
  const std::vector<Case> cases = {
      {Status::InvalidArgument("k = ", k, " is too large"), StatusCode::kInvalidArgument,
       "InvalidArgument"},
      {Status::NotFound("k = ", k, " is too large"), StatusCode::kNotFound, "NotFound"},
      {Status::FailedPrecondition("k = ", k, " is too large"), StatusCode::kFailedPrecondition,
       "FailedPrecondition"},
      {Status::ResourceExhausted("k = ", k, " is too large"), StatusCode::kResourceExhausted,
       "ResourceExhausted"},
      {Status::Unavailable("k = ", k, " is too large"), StatusCode::kUnavailable, "Unavailable"},
      {Status::DeadlineExceeded("k = ", k, " is too large"), StatusCode::kDeadlineExceeded,
       "DeadlineExceeded"},
      {Status::Aborted("k = ", k, " is too large"), StatusCode::kAborted, "Aborted"},
      {Status::DataLoss("k = ", k, " is too large"), StatusCode::kDataLoss, "DataLoss"},
      {Status::Internal("k = ", k, " is too large"), StatusCode::kInternal, "Internal"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_FALSE(c.status.ok());
    EXPECT_EQ(c.status.code(), c.code);
    EXPECT_EQ(c.status.message(), "k = 70 is too large");
    EXPECT_EQ(c.status.ToString(), std::string(c.name) + ": k = 70 is too large");
    EXPECT_STREQ(StatusCodeName(c.code), c.name);
  }
}

TEST(StatusTest, CodeNames) {
  EXPECT_STREQ(StatusCodeName(StatusCode::kOk), "OK");
  EXPECT_STREQ(StatusCodeName(static_cast<StatusCode>(42)), "Unknown");
  EXPECT_STREQ(StatusCodeName(static_cast<StatusCode>(-1)), "Unknown");
}

TEST(StatusTest, StrCatStreamsEveryArgument) {
  EXPECT_EQ(StrCat("a", 1, '-', 2.5, std::string("x"), std::string_view("y")), "a1-2.5xy");
}

TEST(StatusTest, EmptyMessageError) {
  const Status status(StatusCode::kAborted, "");
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(status.ToString(), "Aborted: ");
}

TEST(StatusTest, StreamOperatorPrintsToString) {
  std::ostringstream out;
  out << Status::DataLoss("crc mismatch") << "|" << Status();
  EXPECT_EQ(out.str(), "DataLoss: crc mismatch|OK");
}

TEST(StatusTest, CopyIsDeepAndEqual) {
  Status original = Status::NotFound("region 7");
  const Status copy(original);
  EXPECT_EQ(copy, original);
  EXPECT_EQ(copy.code(), StatusCode::kNotFound);
  EXPECT_EQ(copy.message(), "region 7");
  // The copy owns its own message: replacing the original leaves the copy intact.
  original = Status::Internal("something else");
  EXPECT_EQ(copy.message(), "region 7");
  EXPECT_EQ(original.message(), "something else");

  Status assigned;
  assigned = copy;
  EXPECT_EQ(assigned, copy);
  assigned = Status();
  EXPECT_TRUE(assigned.ok());

  Status self = Status::Aborted("epoch 3");
  const Status& alias = self;
  self = alias;
  EXPECT_EQ(self.ToString(), "Aborted: epoch 3");

  const Status ok_copy(Status{});
  EXPECT_TRUE(ok_copy.ok());
}

TEST(StatusTest, MoveTransfersState) {
  Status source = Status::Unavailable("peer 3 down");
  const Status moved(std::move(source));
  EXPECT_EQ(moved.code(), StatusCode::kUnavailable);
  EXPECT_EQ(moved.message(), "peer 3 down");

  Status target;
  target = Status::DeadlineExceeded("waited 5 ms");
  EXPECT_EQ(target.ToString(), "DeadlineExceeded: waited 5 ms");
  Status other = Status::DataLoss("x");
  target = std::move(other);
  EXPECT_EQ(target.ToString(), "DataLoss: x");
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  const Status base = Status::DataLoss("crc mismatch in cell 3");
  const Status wrapped = base.WithContext("recovering node 2");
  EXPECT_EQ(wrapped.code(), StatusCode::kDataLoss);
  EXPECT_EQ(wrapped.message(), "recovering node 2: crc mismatch in cell 3");
  EXPECT_EQ(wrapped.ToString(), "DataLoss: recovering node 2: crc mismatch in cell 3");
  EXPECT_EQ(base.message(), "crc mismatch in cell 3");  // the original is unchanged
  EXPECT_EQ(wrapped.WithContext("outer").message(),
            "outer: recovering node 2: crc mismatch in cell 3");

  const Status ok = Status().WithContext("context");
  EXPECT_TRUE(ok.ok());
  EXPECT_TRUE(ok.message().empty());
}

TEST(StatusTest, EqualityComparesCodeAndMessage) {
  EXPECT_TRUE(Status() == Status());
  EXPECT_TRUE(Status::NotFound("a") == Status::NotFound("a"));
  EXPECT_FALSE(Status::NotFound("a") == Status::NotFound("b"));
  EXPECT_FALSE(Status::NotFound("a") == Status::Internal("a"));
  EXPECT_FALSE(Status() == Status::Internal(""));
  EXPECT_FALSE(Status::Internal("") == Status());
  EXPECT_TRUE(Status::Internal("") == Status(StatusCode::kInternal, ""));
  EXPECT_TRUE(Status::Aborted("x") != Status::Aborted("y"));
}

// ---------------------------------------------------------------------------------------------
// Result<T>

TEST(ResultTest, HoldsValue) {
  Result<int> result = 42;
  ASSERT_TRUE(result.ok());
  EXPECT_TRUE(result.status().ok());
  EXPECT_EQ(result.value(), 42);
  EXPECT_EQ(*result, 42);
  result.value() = 7;
  EXPECT_EQ(*result, 7);

  const Result<std::string> text = std::string("hello");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->size(), 5u);
  EXPECT_EQ(*text, "hello");
}

TEST(ResultTest, HoldsError) {
  const Result<int> result = Status::NotFound("version ", 9);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(result.status().message(), "version 9");
}

TEST(ResultTest, OkStatusWithoutValueBecomesInternal) {
  const Result<int> result = Status();
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kInternal);
  EXPECT_FALSE(result.status().message().empty());
  const Result<std::string> other = Status::Ok();
  EXPECT_EQ(other.status().code(), StatusCode::kInternal);
}

TEST(ResultTest, MoveOnlyValue) {
  Result<std::unique_ptr<int>> result = std::make_unique<int>(5);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(**result, 5);
  EXPECT_EQ(*result.value(), 5);
  std::unique_ptr<int> taken = std::move(result).value();
  ASSERT_NE(taken, nullptr);
  EXPECT_EQ(*taken, 5);

  Result<std::unique_ptr<int>> moved_result(std::make_unique<int>(8));
  Result<std::unique_ptr<int>> destination(std::move(moved_result));
  ASSERT_TRUE(destination.ok());
  std::unique_ptr<int> from_star = *std::move(destination);
  EXPECT_EQ(*from_star, 8);

  Result<std::unique_ptr<int>> error = Status::ResourceExhausted("no memory");
  EXPECT_FALSE(error.ok());
  EXPECT_EQ(error.status().code(), StatusCode::kResourceExhausted);
}

TEST(ResultTest, CopyOfResultCopiesValueOrError) {
  const Result<std::vector<int>> a = std::vector<int>{1, 2, 3};
  const Result<std::vector<int>> b = a;  // NOLINT(performance-unnecessary-copy-initialization)
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, (std::vector<int>{1, 2, 3}));
  const Result<std::vector<int>> e = Status::Aborted("epoch moved");
  const Result<std::vector<int>> f = e;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(f.status(), Status::Aborted("epoch moved"));
}

// ---------------------------------------------------------------------------------------------
// FT_RETURN_IF_ERROR / FT_ASSIGN_OR_RETURN

Status CountedStatus(int* calls, Status status) {
  ++*calls;
  return status;
}

Status ReturnIfError(int* calls, int* reached_end, Status first) {
  FT_RETURN_IF_ERROR(CountedStatus(calls, std::move(first)));
  ++*reached_end;
  return Status::Internal("reached the end");
}

TEST(MacroTest, ReturnIfErrorPassesOkThroughAndReturnsErrors) {
  int calls = 0;
  int reached_end = 0;
  const Status ok_path = ReturnIfError(&calls, &reached_end, Status());
  EXPECT_EQ(calls, 1);  // the expression is evaluated exactly once
  EXPECT_EQ(reached_end, 1);
  EXPECT_EQ(ok_path, Status::Internal("reached the end"));

  calls = 0;
  reached_end = 0;
  const Status error_path = ReturnIfError(&calls, &reached_end, Status::Unavailable("peer 4"));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(reached_end, 0);
  EXPECT_EQ(error_path, Status::Unavailable("peer 4"));
}

Result<int> Half(int value) {
  if (value % 2 != 0) return Status::InvalidArgument("value = ", value, " is odd");
  return value / 2;
}

Result<std::unique_ptr<int>> MakeBox(int value) {
  if (value < 0) return Status::InvalidArgument("value = ", value, " is negative");
  return std::make_unique<int>(value);
}

// Two uses in one function (distinct temporaries), one declaring and one assigning.
Result<int> Quarter(int value, int* steps) {
  FT_ASSIGN_OR_RETURN(const int half, Half(value));
  ++*steps;
  int quarter = 0;
  FT_ASSIGN_OR_RETURN(quarter, Half(half));
  ++*steps;
  return quarter;
}

Status BoxAndCheck(int value, int* seen) {
  FT_ASSIGN_OR_RETURN(std::unique_ptr<int> box, MakeBox(value));
  *seen = *box;
  return Status();
}

TEST(MacroTest, AssignOrReturn) {
  int steps = 0;
  Result<int> result = Quarter(12, &steps);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(*result, 3);
  EXPECT_EQ(steps, 2);

  steps = 0;
  result = Quarter(6, &steps);  // 6 -> 3, then 3 is odd
  EXPECT_EQ(result.status(), Status::InvalidArgument("value = 3 is odd"));
  EXPECT_EQ(steps, 1);

  steps = 0;
  result = Quarter(5, &steps);
  EXPECT_EQ(result.status(), Status::InvalidArgument("value = 5 is odd"));
  EXPECT_EQ(steps, 0);
}

TEST(MacroTest, AssignOrReturnMoveOnly) {
  int seen = -1;
  EXPECT_TRUE(BoxAndCheck(11, &seen).ok());
  EXPECT_EQ(seen, 11);
  seen = -1;
  EXPECT_EQ(BoxAndCheck(-2, &seen), Status::InvalidArgument("value = -2 is negative"));
  EXPECT_EQ(seen, -1);
}

// ---------------------------------------------------------------------------------------------
// Death tests (FT_CHECK and Result::value() on an error abort the process).

TEST(CheckDeathTest, FailedCheckAbortsWithConditionAndLocation) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  volatile int three = 3;
  EXPECT_DEATH(FT_CHECK(three == 4), "check failed: three == 4");
  EXPECT_DEATH(FT_CHECK(three == 4), "common_test\\.cc");
  EXPECT_DEATH(FT_CHECK_MSG(three < 2, "queue overflow"),
               "check failed: three < 2: queue overflow");
}

TEST(CheckDeathTest, PassingCheckDoesNothing) {
  int evaluations = 0;
  FT_CHECK(++evaluations == 1);
  FT_CHECK_MSG(++evaluations == 2, "not reached");
  EXPECT_EQ(evaluations, 2);  // the condition is evaluated exactly once
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Result<int> error = Status::NotFound("region 12");
  EXPECT_DEATH((void)error.value(), "Result::value\\(\\) called on an error: NotFound: region 12");
  const Result<int>& const_error = error;
  EXPECT_DEATH((void)*const_error, "NotFound: region 12");
  Result<std::unique_ptr<int>> move_only = Status::Aborted("epoch 9");
  EXPECT_DEATH((void)std::move(move_only).value(), "Aborted: epoch 9");
  Result<std::string> text = Status::Internal("boom");
  EXPECT_DEATH((void)text->size(), "Internal: boom");
}

// ---------------------------------------------------------------------------------------------
// Clocks

TEST(ClockTest, ManualClockMovesOnlyWhenTold) {
  ManualClock clock;
  EXPECT_EQ(clock.Now(), Nanos(0));
  EXPECT_EQ(clock.Now(), Nanos(0));
  clock.Advance(milliseconds(5));
  EXPECT_EQ(clock.Now(), Nanos(5'000'000));
  clock.Advance(Nanos(1));
  EXPECT_EQ(clock.Now(), Nanos(5'000'001));
  clock.Set(seconds(100));
  EXPECT_EQ(clock.Now(), Nanos(100'000'000'000));
  clock.Advance(Nanos(0));
  EXPECT_EQ(clock.Now(), seconds(100));

  const ManualClock started(seconds(7));
  EXPECT_EQ(started.Now(), seconds(7));

  const Clock& as_interface = clock;
  EXPECT_EQ(as_interface.Now(), seconds(100));
}

TEST(ClockTest, ManualClockConcurrentAdvancesAllCount) {
  ManualClock clock(Nanos(10));
  constexpr int kThreads = 4;
  constexpr int kAdvances = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&clock] {
      for (int i = 0; i < kAdvances; ++i) {
        clock.Advance(Nanos(3));
        (void)clock.Now();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(clock.Now(), Nanos(10 + 3 * kThreads * kAdvances));
}

TEST(ClockTest, SteadyClockIsMonotonic) {
  const SteadyClock clock;
  Nanos previous = clock.Now();
  for (int i = 0; i < 10000; ++i) {
    const Nanos now = clock.Now();
    ASSERT_GE(now, previous) << "reading " << i;
    previous = now;
  }
  SteadyClock& a = SteadyClock::Default();
  SteadyClock& b = SteadyClock::Default();
  EXPECT_EQ(&a, &b);
  const Nanos first = a.Now();
  EXPECT_GE(a.Now(), first);
}

TEST(ClockTest, SecondsBetween) {
  EXPECT_DOUBLE_EQ(SecondsBetween(Nanos(0), Nanos(1'500'000'000)), 1.5);
  EXPECT_DOUBLE_EQ(SecondsBetween(seconds(3), seconds(1)), -2.0);
  EXPECT_DOUBLE_EQ(SecondsBetween(Nanos(7), Nanos(7)), 0.0);
}

// ---------------------------------------------------------------------------------------------
// Logging

// Restores the process-wide log level when a test ends.
class LogLevelRestorer {
 public:
  LogLevelRestorer() : saved_(GetLogLevel()) {}
  ~LogLevelRestorer() { SetLogLevel(saved_); }
  LogLevelRestorer(const LogLevelRestorer&) = delete;
  LogLevelRestorer& operator=(const LogLevelRestorer&) = delete;

 private:
  LogLevel saved_;
};

TEST(LogTest, ParseLogLevel) {
  struct Case {
    const char* text;
    LogLevel level;
  };
  const Case cases[] = {
      {"error", LogLevel::kError}, {"ERROR", LogLevel::kError},  {"warn", LogLevel::kWarn},
      {"Warn", LogLevel::kWarn},   {"warning", LogLevel::kWarn}, {"info", LogLevel::kInfo},
      {"iNfO", LogLevel::kInfo},   {"debug", LogLevel::kDebug},  {"DEBUG", LogLevel::kDebug},
  };
  for (const Case& c : cases) {
    LogLevel parsed = c.level == LogLevel::kError ? LogLevel::kDebug : LogLevel::kError;
    EXPECT_TRUE(ParseLogLevel(c.text, &parsed)) << c.text;
    EXPECT_EQ(parsed, c.level) << c.text;
  }
  for (const char* bad : {"", "verbose", "err", "debug ", " info", "2", "errors", "trace"}) {
    LogLevel parsed = LogLevel::kInfo;
    EXPECT_FALSE(ParseLogLevel(bad, &parsed)) << '"' << bad << '"';
  }
}

TEST(LogTest, SetAndGetLevel) {
  LogLevelRestorer restore;
  for (LogLevel level : {LogLevel::kError, LogLevel::kWarn, LogLevel::kInfo, LogLevel::kDebug}) {
    SetLogLevel(level);
    EXPECT_EQ(GetLogLevel(), level);
  }
}

TEST(LogTest, DisabledLevelDoesNotEvaluateItsArguments) {
  LogLevelRestorer restore;
  int evaluations = 0;
  auto expensive = [&evaluations] {
    ++evaluations;
    return std::string("expensive");
  };
  SetLogLevel(LogLevel::kError);
  FT_LOG(kWarn) << expensive();
  FT_LOG(kInfo) << expensive();
  FT_LOG(kDebug) << expensive() << expensive();
  EXPECT_EQ(evaluations, 0);

  SetLogLevel(LogLevel::kInfo);
  FT_LOG(kDebug) << expensive();
  EXPECT_EQ(evaluations, 0);

  testing::internal::CaptureStderr();
  FT_LOG(kInfo) << "value is " << expensive();
  FT_LOG(kError) << "second " << 17;
  const std::string written = testing::internal::GetCapturedStderr();
  EXPECT_EQ(evaluations, 1);
  EXPECT_NE(written.find("value is expensive\n"), std::string::npos) << written;
  EXPECT_NE(written.find("second 17\n"), std::string::npos) << written;
  EXPECT_NE(written.find("common_test.cc:"), std::string::npos) << written;
  EXPECT_NE(written.find("[ftengine I "), std::string::npos) << written;
  EXPECT_NE(written.find("[ftengine E "), std::string::npos) << written;
}

TEST(LogTest, EnabledFollowsLevelOrder) {
  LogLevelRestorer restore;
  SetLogLevel(LogLevel::kWarn);
  EXPECT_TRUE(internal::LogEnabled(LogLevel::kError));
  EXPECT_TRUE(internal::LogEnabled(LogLevel::kWarn));
  EXPECT_FALSE(internal::LogEnabled(LogLevel::kInfo));
  EXPECT_FALSE(internal::LogEnabled(LogLevel::kDebug));
  SetLogLevel(LogLevel::kDebug);
  EXPECT_TRUE(internal::LogEnabled(LogLevel::kDebug));
  SetLogLevel(LogLevel::kError);
  EXPECT_TRUE(internal::LogEnabled(LogLevel::kError));
  EXPECT_FALSE(internal::LogEnabled(LogLevel::kWarn));
}

}  // namespace
}  // namespace ft
