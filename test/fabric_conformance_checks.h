// Checks shared by the files of the Fabric conformance suite (fabric_conformance_*.cc).
#ifndef FT_TEST_FABRIC_CONFORMANCE_CHECKS_H_
#define FT_TEST_FABRIC_CONFORMANCE_CHECKS_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "verbs/fabric.h"

namespace ft::verbs::conformance {

constexpr uint32_t kTargetAccess = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;

inline bool Equal(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

inline bool AllBytes(std::span<const std::byte> a, uint8_t value) {
  return std::all_of(a.begin(), a.end(), [&](std::byte b) { return b == std::byte{value}; });
}

inline std::vector<std::byte> Bytes(const std::string& text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

// Status helpers for readable expectations.
#define EXPECT_WC(completion, expected_status)                                       \
  do {                                                                               \
    const auto& wc_ = (completion);                                                  \
    ASSERT_TRUE(wc_.has_value()) << "no completion within the deadline";             \
    EXPECT_EQ(WcStatusName(wc_->status), std::string(WcStatusName(expected_status))) \
        << "wr_id " << wc_->wr_id;                                                   \
  } while (0)

}  // namespace ft::verbs::conformance

#endif  // FT_TEST_FABRIC_CONFORMANCE_CHECKS_H_
