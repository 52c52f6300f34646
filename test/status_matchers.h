// gtest helpers for ft::Status.
#ifndef FT_TEST_STATUS_MATCHERS_H_
#define FT_TEST_STATUS_MATCHERS_H_

#include <gtest/gtest.h>

#include <string_view>

#include "ftengine/status.h"

namespace ft::test {

// EXPECT_TRUE(HasError(status, StatusCode::kInvalidArgument, "k = 0")): the code matches and the
// message names `fragment`.
inline ::testing::AssertionResult HasError(const Status& status, StatusCode code,
                                           std::string_view fragment) {
  if (status.code() != code) {
    return ::testing::AssertionFailure()
           << "expected " << StatusCodeName(code) << ", got " << status.ToString();
  }
  if (status.message().find(fragment) == std::string_view::npos) {
    return ::testing::AssertionFailure()
           << "message of " << status.ToString() << " does not name \"" << fragment << "\"";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace ft::test

#endif  // FT_TEST_STATUS_MATCHERS_H_
