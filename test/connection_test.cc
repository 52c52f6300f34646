// Tests of recovery/connection: the FTC1/FTP1 private data of control and partner connections.
// Both kinds round trip at their exact wire sizes; every header field that differs from what
// the receiver expects is refused with the code that says who is at fault (Internal: not our
// data; FailedPrecondition: a stale epoch); every truncation and extension is refused; and
// every single-byte mutation of a valid message is either refused or parses to a value that
// differs only where the byte was changed (no mutation is silently ignored).
#include "recovery/connection.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "test/status_matchers.h"

namespace ft::recovery {
namespace {

std::vector<std::byte> Endpoint(size_t bytes) {
  std::vector<std::byte> endpoint(bytes);
  for (size_t i = 0; i < bytes; ++i) endpoint[i] = static_cast<std::byte>(0xa0 + i);
  return endpoint;
}

TEST(ConnectionTest, ControlConnectRoundTripsEveryEndpointLength) {
  for (size_t length = 0; length <= kMaxConnectEndpointBytes; ++length) {
    const std::vector<std::byte> endpoint = Endpoint(length);
    const std::vector<std::byte> data = EncodeControlConnect(7, 3, endpoint);
    ASSERT_EQ(data.size(), kConnectHeaderBytes + length);
    Result<std::span<const std::byte>> parsed = ParseControlConnect(data, 7, 3);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(std::vector<std::byte>(parsed->begin(), parsed->end()), endpoint);
  }
}

TEST(ConnectionTest, HeaderLayoutIsMagicRankEpochLittleEndian) {
  const std::vector<std::byte> data = EncodePartnerConnect(0x01020304, 0x1122334455667788, {});
  ASSERT_EQ(data.size(), kPartnerConnectBytes);
  const unsigned char expected[16] = {'1',  'P',  'T',  'F',  0x04, 0x03, 0x02, 0x01,
                                      0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  EXPECT_EQ(std::memcmp(data.data(), expected, 16), 0);
  const std::vector<std::byte> control = EncodeControlConnect(1, 1);
  EXPECT_EQ(std::memcmp(control.data(), "1CTF", 4), 0);
}

TEST(ConnectionTest, PartnerConnectRoundTripsTheStoreKeys) {
  const StoreKeys keys{0xfedcba9876543210ull, 0xdeadbeef};
  const std::vector<std::byte> data = EncodePartnerConnect(12, 5, keys);
  Result<StoreKeys> parsed = ParsePartnerConnect(data, 12, 5);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(*parsed, keys);
}

TEST(ConnectionTest, AnotherEpochIsAStaleProcess) {
  const std::vector<std::byte> control = EncodeControlConnect(4, 2);
  EXPECT_TRUE(test::HasError(ParseControlConnect(control, 4, 3).status(),
                             StatusCode::kFailedPrecondition,
                             "node 4 connected in epoch 2, this node "
                             "is in epoch 3"));
  const std::vector<std::byte> partner = EncodePartnerConnect(4, 9, {1, 2});
  EXPECT_TRUE(test::HasError(ParsePartnerConnect(partner, 4, 8).status(),
                             StatusCode::kFailedPrecondition, "epoch 9"));
}

TEST(ConnectionTest, AnotherRankOrMagicIsNotOurs) {
  const std::vector<std::byte> control = EncodeControlConnect(4, 1);
  EXPECT_TRUE(test::HasError(ParseControlConnect(control, 5, 1).status(), StatusCode::kInternal,
                             "from node 5 names rank 4"));
  // A partner connection offered where a control connection is expected, and the reverse.
  EXPECT_TRUE(test::HasError(ParseControlConnect(EncodePartnerConnect(4, 1, {}), 4, 1).status(),
                             StatusCode::kInternal, "is not ours"));
  EXPECT_TRUE(test::HasError(ParsePartnerConnect(control, 4, 1).status(), StatusCode::kInternal,
                             "is not ours"));
}

TEST(ConnectionTest, EveryTruncationAndExtensionIsRefused) {
  const std::vector<std::byte> partner = EncodePartnerConnect(2, 1, {0x1000, 77});
  for (size_t length = 0; length < partner.size(); ++length) {
    EXPECT_EQ(ParsePartnerConnect({partner.data(), length}, 2, 1).status().code(),
              StatusCode::kInternal)
        << length << " bytes";
  }
  std::vector<std::byte> longer = partner;
  longer.push_back(std::byte{0});
  EXPECT_TRUE(test::HasError(ParsePartnerConnect(longer, 2, 1).status(), StatusCode::kInternal,
                             "expected 28"));
  for (size_t length = 0; length < kConnectHeaderBytes; ++length) {
    EXPECT_TRUE(test::HasError(ParseControlConnect({partner.data(), length}, 2, 1).status(),
                               StatusCode::kInternal, "bytes of control connection private data"));
  }
  std::vector<std::byte> oversized = EncodeControlConnect(2, 1, Endpoint(20));
  oversized.push_back(std::byte{0});
  EXPECT_TRUE(test::HasError(ParseControlConnect(oversized, 2, 1).status(), StatusCode::kInternal,
                             "21-byte endpoint"));
}

// A flipped byte in the header is always refused; one in the keys parses to the changed keys.
TEST(ConnectionTest, EveryByteFlipIsRefusedOrChangesOnlyThatField) {
  const StoreKeys keys{0x0123456789abcdefull, 0x55aa55aa};
  const std::vector<std::byte> valid = EncodePartnerConnect(3, 6, keys);
  for (size_t at = 0; at < valid.size(); ++at) {
    std::vector<std::byte> mutated = valid;
    mutated[at] ^= std::byte{0x10};
    Result<StoreKeys> parsed = ParsePartnerConnect(mutated, 3, 6);
    if (at < kConnectHeaderBytes) {
      EXPECT_FALSE(parsed.ok()) << "flip at byte " << at << " was accepted";
    } else {
      ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
      EXPECT_NE(*parsed, keys) << "flip at byte " << at << " was ignored";
    }
  }
}

}  // namespace
}  // namespace ft::recovery
