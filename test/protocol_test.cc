// Tests of recovery/protocol: the wire format of the control messages. Every message type round
// trips; encoding into a buffer that is too small fails with ResourceExhausted and never writes
// past it; decoding rejects every truncation, unknown types, inconsistent counts and codes with
// InvalidArgument; and seeded random and mutated inputs never crash the decoder (run it under
// ASan/UBSan: every decoded buffer is an exactly sized heap block).
#include "recovery/protocol.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ftengine/status.h"
#include "recovery/placement.h"

#include "test/status_matchers.h"

namespace ft::recovery {
namespace {

// Wire sizes, from the layout in protocol.cc: a 16-byte header {type, pad, pad, pad, epoch}.
constexpr size_t kHeaderBytes = 16;
constexpr size_t kPrepareBytes = kHeaderBytes + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 4 + 4 + 8;
constexpr size_t kGoFixedBytes = kHeaderBytes + 8 + 8 + 8 + 4 + 4 + 4 + 4;
constexpr size_t kGoHolderBytes = 4 + 4 + 8 + 8;
constexpr size_t kDoneBytes = kHeaderBytes + 8 + 4 + 4 + 4;
constexpr size_t kCommitBytes = kHeaderBytes + 8;
constexpr size_t kGrowBytes = kHeaderBytes + 8;
constexpr size_t kAbortFixedBytes = kHeaderBytes + 8 + 4 + 4 + 4;
constexpr size_t kBeatTargetBytes = kHeaderBytes + 4 + 4 + 8;
constexpr size_t kLostFixedBytes = kHeaderBytes + 4 + 4;

// Field offsets used to corrupt encoded messages.
constexpr size_t kPrepareSizedOffset = kHeaderBytes + 44;
constexpr size_t kGoSlotBytesOffset = kHeaderBytes + 16;
constexpr size_t kGoHasPlacementOffset = kHeaderBytes + 24;
constexpr size_t kGoHoldersOffset = kHeaderBytes + 28;
constexpr size_t kGoHostedOffset = kHeaderBytes + 32;
constexpr size_t kDoneCodeOffset = kHeaderBytes + 12;
constexpr size_t kAbortCodeOffset = kHeaderBytes + 12;
constexpr size_t kAbortReasonBytesOffset = kHeaderBytes + 16;

std::vector<std::byte> Encode(const Message& message, size_t buffer_bytes) {
  std::vector<std::byte> buffer(buffer_bytes);
  Result<size_t> used = EncodeMessage(message, buffer);
  EXPECT_TRUE(used.ok()) << used.status();
  if (!used.ok()) return {};
  buffer.resize(*used);
  return buffer;
}

std::vector<std::byte> Encode(const Message& message) {
  return Encode(message, kMaxControlMessageBytes);
}

// Decodes from a heap block of exactly in.size() bytes, so that ASan sees any over-read.
Result<Message> DecodeExact(std::span<const std::byte> in) {
  const std::vector<std::byte> exact(in.begin(), in.end());
  return DecodeMessage(exact);
}

template <typename T>
void Patch(std::vector<std::byte>& bytes, size_t offset, T value) {
  ASSERT_LE(offset + sizeof(T), bytes.size());
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

void ExpectRoundTrip(const Message& message, size_t expected_bytes,
                     size_t buffer_bytes = kMaxControlMessageBytes) {
  const std::vector<std::byte> bytes = Encode(message, buffer_bytes);
  EXPECT_EQ(bytes.size(), expected_bytes);
  Result<Message> decoded = DecodeExact(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(*decoded == message) << "message index " << message.index();
}

PrepareMessage SamplePrepare() {
  PrepareMessage m;
  m.epoch = 0x0102030405060708;
  m.node = 4095;
  m.image_bytes = (uint64_t{3} << 40) + 17;
  m.footprint_bytes = (uint64_t{1} << 33) + 5;
  m.capacity_bytes = std::numeric_limits<uint64_t>::max();
  m.domain = 0xdeadbeef;
  m.store_addr = 0x00007f1234567000;
  m.store_rkey = 0xcafe0001;
  m.store_sized_by_coordinator = true;
  m.layout_regions = 3;
  m.layout_digest = 0x995dc9bbdf1939fa;
  return m;
}

LayoutMessage SampleLayout(uint32_t total, uint32_t first, size_t count) {
  LayoutMessage m{5, 7, 0xfeedfacecafebeef, total, first, {}};
  for (size_t i = 0; i < count; ++i) m.regions.push_back({first + i * 3, (i + 1) << 20});
  return m;
}

GoMessage SampleGo(size_t holders, size_t hosted) {
  GoMessage m;
  m.epoch = 9;
  m.version = (uint64_t{1} << 40) + 3;
  m.placement_id = 77;
  m.slot_bytes = (uint64_t{1} << 35) + 4096;
  m.has_placement = true;
  for (size_t j = 0; j < holders; ++j) {
    const auto id = static_cast<uint32_t>(j);
    m.holders.push_back(HolderAddress{FragmentSlot{1000 + id, (uint64_t{1} << 36) * j + 64},
                                      0x7f0000000000 + 0x1000 * j, 0xabc00000 + id});
  }
  for (size_t i = 0; i < hosted; ++i) m.hosted_owners.push_back(static_cast<NodeId>(i * 3 + 1));
  return m;
}

// A GO on a networked fabric: every holder and hosted owner with its endpoint (IPv4 and IPv6
// shapes alternate).
GoMessage SampleGoWithEndpoints(size_t holders, size_t hosted) {
  GoMessage m = SampleGo(holders, hosted);
  for (size_t i = 0; i < holders + hosted; ++i) {
    PeerEndpoint endpoint;
    endpoint.node = static_cast<NodeId>(1000 + i);
    endpoint.bytes.resize(i % 2 == 0 ? 8 : kMaxEndpointBytes);
    for (size_t b = 0; b < endpoint.bytes.size(); ++b) {
      endpoint.bytes[b] = static_cast<std::byte>(i * 7 + b);
    }
    m.endpoints.push_back(std::move(endpoint));
  }
  return m;
}

DoneMessage SampleDone(StatusCode code, NodeId failed_peer) {
  DoneMessage m;
  m.epoch = 3;
  m.version = 12;
  m.node = 17;
  m.code = code;
  m.failed_peer = failed_peer;
  return m;
}

AbortMessage SampleAbort(std::string reason) {
  AbortMessage m;
  m.epoch = 5;
  m.version = 6;
  m.failed_node = 42;
  m.code = StatusCode::kUnavailable;
  m.reason = std::move(reason);
  return m;
}

// One of every shape: the messages the truncation and fuzz tests start from.
ViewMessage SampleView(size_t checks) {
  ViewMessage m{5, 12, {3, 7}, {}};
  for (size_t i = 0; i < checks; ++i) {
    m.checks.push_back({static_cast<NodeId>(i * 3), static_cast<uint32_t>(i % 6),
                        (uint64_t{1} << 34) * i + 4096, (uint64_t{1} << 30) + i});
  }
  return m;
}

RestoreMessage SampleRestore(size_t holders, size_t hosted) {
  const GoMessage go = SampleGoWithEndpoints(holders, hosted);
  return RestoreMessage{5,
                        12,
                        4,
                        (uint64_t{7} << 30) + 3,
                        uint64_t{1} << 33,
                        go.slot_bytes,
                        go.holders,
                        go.hosted_owners,
                        go.endpoints};
}

std::vector<Message> SampleRecoveryMessages() {
  std::vector<Message> messages;
  messages.emplace_back(SampleView(0));
  messages.emplace_back(SampleView(13));
  messages.emplace_back(ReportMessage{5, 2, 12, {}});
  messages.emplace_back(ReportMessage{5, 2, 12, {0, 1, 2, 3, 3, 2, 1}});
  messages.emplace_back(SampleRestore(6, 6));
  messages.emplace_back(SampleRestore(0, 0));
  messages.emplace_back(RestoredMessage{5, 2, 12, StatusCode::kOk, 0x7f0000010000, 77});
  messages.emplace_back(RestoredMessage{5, 2, 12, StatusCode::kDataLoss, 0, 0});
  messages.emplace_back(ReprotectMessage{5, 12, 4, 0b100100, SampleGo(6, 0).holders});
  messages.emplace_back(AssignMessage{5, 3});
  messages.emplace_back(StoreHintMessage{5, uint64_t{226541568}});
  messages.emplace_back(LayoutRequestMessage{5, 7, 0xfeedfacecafebeef, 10});
  messages.emplace_back(SampleLayout(0, 0, 0));
  messages.emplace_back(SampleLayout(12, 10, 2));
  messages.emplace_back(SampleLayout(kMaxLayoutRegions, 0, kLayoutRegionsDownstream));
  return messages;
}

std::vector<Message> SampleMessages() {
  std::vector<Message> messages;
  messages.emplace_back(SamplePrepare());
  messages.emplace_back(GoMessage{1, 2, 3, false, {}, 0, {}, {}});
  messages.emplace_back(SampleGoWithEndpoints(6, 6));
  messages.emplace_back(SampleGo(6, 0));
  messages.emplace_back(SampleGo(14, 40));
  messages.emplace_back(SampleGo(0, 5));
  messages.emplace_back(SampleDone(StatusCode::kOk, UINT32_MAX));
  messages.emplace_back(SampleDone(StatusCode::kUnavailable, 8));
  messages.emplace_back(CommitMessage{1, 2});
  messages.emplace_back(SampleAbort(""));
  messages.emplace_back(SampleAbort("node 3 was lost: heartbeat"));
  messages.emplace_back(SampleAbort(std::string(kMaxReasonBytes, 'r')));
  messages.emplace_back(BeatTargetMessage{3, 4095, 0x00007f0000001000, 0xfeed});
  messages.emplace_back(LostMessage{3, 7, ""});
  messages.emplace_back(LostMessage{3, 7, "no heartbeat for 31 ms, bound 30 ms"});
  for (const Message& message : SampleRecoveryMessages()) messages.push_back(message);
  return messages;
}

TEST(ProtocolTest, RecoveryMessagesRoundTrip) {
  for (const Message& message : SampleRecoveryMessages()) {
    const std::vector<std::byte> bytes = Encode(message);
    Result<Message> decoded = DecodeExact(bytes);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_TRUE(*decoded == message) << "message index " << message.index();
  }
}

// A survivor's REPORT and RESTORED go upstream, into the coordinator's small receive buffers;
// VIEW and RESTORE come down, the worst of them as large as the worst GO.
TEST(ProtocolTest, RecoveryMessagesFitTheirBuffers) {
  ReportMessage report{5, 2, 12, std::vector<uint8_t>(kMaxReportedChecks, 3)};
  EXPECT_LE(Encode(report, kMaxUpstreamMessageBytes).size(), kMaxUpstreamMessageBytes);
  EXPECT_LE(Encode(RestoredMessage{}, kMaxUpstreamMessageBytes).size(), kMaxUpstreamMessageBytes);
  EXPECT_LE(Encode(SampleView(kMaxHostedChecks)).size(), kMaxControlMessageBytes);
  RestoreMessage restore = SampleRestore(kMaxStripeWidth, kMaxHostedOwners);
  restore.endpoints.clear();
  for (NodeId i = 0; i < kMaxStripeWidth + kMaxHostedOwners; ++i) {
    restore.endpoints.push_back({i, std::vector<std::byte>(kMaxEndpointBytes, std::byte{0xee})});
  }
  std::vector<std::byte> buffer(kMaxControlMessageBytes);
  Result<size_t> used = EncodeMessage(restore, buffer);
  ASSERT_TRUE(used.ok()) << used.status();
  ExpectRoundTrip(restore, *used);
}

// A node's LAYOUT answer goes into the coordinator's small buffers; the coordinator's LAYOUTs to a
// replacement fill a control buffer, and a whole layout takes at most 9 of them.
TEST(ProtocolTest, LayoutChunksFitTheirBuffers) {
  EXPECT_EQ(kLayoutRegionsUpstream, 5u);
  EXPECT_EQ(Encode(SampleLayout(100, 0, kLayoutRegionsUpstream), kMaxUpstreamMessageBytes).size(),
            40 + 16 * kLayoutRegionsUpstream);
  std::vector<std::byte> small(kMaxUpstreamMessageBytes);
  EXPECT_EQ(EncodeMessage(SampleLayout(100, 0, kLayoutRegionsUpstream + 1), small).status().code(),
            StatusCode::kResourceExhausted);
  EXPECT_LE(Encode(SampleLayout(kMaxLayoutRegions, 0, kLayoutRegionsDownstream)).size(),
            kMaxControlMessageBytes);
  std::vector<std::byte> large(kMaxControlMessageBytes);
  EXPECT_EQ(EncodeMessage(SampleLayout(kMaxLayoutRegions, 0, kLayoutRegionsDownstream + 1), large)
                .status()
                .code(),
            StatusCode::kResourceExhausted);
}

// Counts must agree with each other and with the bytes; a region is never empty.
TEST(ProtocolTest, InconsistentLayoutsAreInvalidArgument) {
  const std::vector<std::byte> good = Encode(SampleLayout(12, 10, 2));
  auto decode_patched = [&](size_t offset, auto value) {
    std::vector<std::byte> bytes = good;
    Patch(bytes, offset, value);
    return DecodeExact(bytes).status().code();
  };
  // Offsets: node 16, total 20, first 24, count 28, digest 32, regions from 40.
  EXPECT_EQ(decode_patched(20, uint32_t{11}), StatusCode::kInvalidArgument);  // first + 2 > total
  EXPECT_EQ(decode_patched(20, kMaxLayoutRegions + 1), StatusCode::kInvalidArgument);
  EXPECT_EQ(decode_patched(24, uint32_t{13}), StatusCode::kInvalidArgument);  // first > total
  EXPECT_EQ(decode_patched(28, uint32_t{3}), StatusCode::kInvalidArgument);   // more than sent
  EXPECT_EQ(decode_patched(28, uint32_t{1}), StatusCode::kInvalidArgument);   // bytes left over
  EXPECT_EQ(decode_patched(48, uint64_t{0}), StatusCode::kInvalidArgument);   // an empty region
  EXPECT_EQ(DecodeExact(good).status().code(), StatusCode::kOk);
  std::vector<std::byte> prepare = Encode(SamplePrepare());
  Patch(prepare, kPrepareBytes - 12, kMaxLayoutRegions + 1);
  EXPECT_EQ(DecodeExact(prepare).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtocolTest, ReportWithMoreChecksThanItsBufferHoldsIsInvalidArgument) {
  std::vector<std::byte> bytes = Encode(ReportMessage{5, 2, 12, {1, 2}});
  Patch(bytes, 28, static_cast<uint32_t>(kMaxReportedChecks + 1));
  EXPECT_EQ(DecodeExact(bytes).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtocolTest, PrepareRoundTrips) {
  ExpectRoundTrip(SamplePrepare(), kPrepareBytes);
  ExpectRoundTrip(PrepareMessage{}, kPrepareBytes);
  // The flag is a 0/1 word: anything else is malformed.
  std::vector<std::byte> bytes = Encode(SamplePrepare());
  Patch(bytes, kPrepareSizedOffset, uint32_t{2});
  EXPECT_EQ(DecodeExact(bytes).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtocolTest, GrowRoundTripsAndRefusesZeroBytes) {
  ExpectRoundTrip(GrowMessage{3, 1}, kGrowBytes);
  ExpectRoundTrip(GrowMessage{std::numeric_limits<uint64_t>::max(), uint64_t{1} << 50}, kGrowBytes);
  EXPECT_EQ(DecodeExact(Encode(GrowMessage{3, 0})).status().code(), StatusCode::kInvalidArgument);
}

// A GO that places holders must say how large their slots are: without it an owner would not
// know where slot 1 starts.
TEST(ProtocolTest, GoWithHoldersAndNoSlotBytesIsInvalidArgument) {
  std::vector<std::byte> bytes = Encode(SampleGo(6, 2));
  Patch(bytes, kGoSlotBytesOffset, uint64_t{0});
  EXPECT_EQ(DecodeExact(bytes).status().code(), StatusCode::kInvalidArgument);
  GoMessage hosting_only = SampleGo(0, 3);  // footprint 0: no holders, no slots
  hosting_only.slot_bytes = 0;
  ExpectRoundTrip(hosting_only, kGoFixedBytes + 3 * 4);
}

TEST(ProtocolTest, GoWithoutPlacementRoundTrips) {
  GoMessage go;
  go.epoch = 2;
  go.version = 5;
  go.placement_id = 4;
  go.has_placement = false;
  ExpectRoundTrip(go, kGoFixedBytes);
}

TEST(ProtocolTest, GoWithPlacementRoundTrips) {
  ExpectRoundTrip(SampleGo(6, 6), kGoFixedBytes + 6 * kGoHolderBytes + 6 * 4);
  ExpectRoundTrip(SampleGo(14, 0), kGoFixedBytes + 14 * kGoHolderBytes);
  ExpectRoundTrip(SampleGo(64, 0), kGoFixedBytes + 64 * kGoHolderBytes);
  // A node that has no fragments (footprint 0) but hosts others'.
  ExpectRoundTrip(SampleGo(0, 9), kGoFixedBytes + 9 * 4);
}

// 14 holders and 2100 hosted owners need 8792 bytes: more than kMaxControlMessageBytes (8192),
// the size of a posted receive buffer. The format carries it; a receive buffer does not.
TEST(ProtocolTest, GoWithFourteenHoldersAndTwoThousandHostedOwners) {
  const GoMessage go = SampleGo(14, 2100);
  const size_t bytes = kGoFixedBytes + 14 * kGoHolderBytes + 2100 * 4;
  EXPECT_GT(bytes, kMaxControlMessageBytes);
  ExpectRoundTrip(go, bytes, bytes);

  std::vector<std::byte> small(kMaxControlMessageBytes);
  Result<size_t> used = EncodeMessage(go, small);
  ASSERT_FALSE(used.ok());
  EXPECT_EQ(used.status().code(), StatusCode::kResourceExhausted) << used.status();

  // The most hosted owners that fit next to 14 holders.
  const size_t fit = (kMaxControlMessageBytes - kGoFixedBytes - 14 * kGoHolderBytes) / 4;
  ExpectRoundTrip(SampleGo(14, fit), kGoFixedBytes + 14 * kGoHolderBytes + fit * 4);
  EXPECT_FALSE(EncodeMessage(SampleGo(14, fit + 1), small).ok());
}

TEST(ProtocolTest, GoWithEndpointsRoundTrips) {
  // 8-byte (IPv4) and 20-byte (IPv6) endpoints alternate, each after a 4-byte node and a length.
  const size_t endpoints_bytes = 6 * 5 + 3 * 8 + 3 * kMaxEndpointBytes;
  ExpectRoundTrip(SampleGoWithEndpoints(6, 0),
                  kGoFixedBytes + 6 * kGoHolderBytes + endpoints_bytes);
}

// The worst GO the coordinator may send: the widest stripe, as many hosted owners as the
// coordinator allows, and a 20-byte endpoint for each of them.
TEST(ProtocolTest, WorstCaseGoWithEndpointsFitsAReceiveBuffer) {
  GoMessage go = SampleGo(kMaxStripeWidth, kMaxHostedOwners);
  for (NodeId i = 0; i < kMaxStripeWidth + kMaxHostedOwners; ++i) {
    go.endpoints.push_back({i, std::vector<std::byte>(kMaxEndpointBytes, std::byte{0xee})});
  }
  std::vector<std::byte> buffer(kMaxControlMessageBytes);
  Result<size_t> used = EncodeMessage(go, buffer);
  ASSERT_TRUE(used.ok()) << used.status();
  ExpectRoundTrip(go, *used);
}

TEST(ProtocolTest, GoWithOversizedEndpointIsRejected) {
  GoMessage go = SampleGo(2, 0);
  go.endpoints.push_back({5, std::vector<std::byte>(kMaxEndpointBytes + 1)});
  std::vector<std::byte> buffer(kMaxControlMessageBytes);
  EXPECT_TRUE(ft::test::HasError(EncodeMessage(go, buffer).status(), StatusCode::kInvalidArgument,
                                 "node 5's endpoint has 21 bytes"));
}

// Nodes send the coordinator only PREPARE and DONE, into receive buffers of
// kMaxUpstreamMessageBytes.
TEST(ProtocolTest, UpstreamMessagesFitTheCoordinatorsReceiveBuffers) {
  EXPECT_LE(kPrepareBytes, kMaxUpstreamMessageBytes);
  EXPECT_LE(kDoneBytes, kMaxUpstreamMessageBytes);
}

TEST(ProtocolTest, DoneRoundTripsEveryCode) {
  for (int code = static_cast<int>(StatusCode::kOk);
       code <= static_cast<int>(StatusCode::kInternal); ++code) {
    SCOPED_TRACE(code);
    ExpectRoundTrip(SampleDone(static_cast<StatusCode>(code), UINT32_MAX), kDoneBytes);
    ExpectRoundTrip(SampleDone(static_cast<StatusCode>(code), 0), kDoneBytes);
    ExpectRoundTrip(SampleDone(static_cast<StatusCode>(code), 4095), kDoneBytes);
  }
}

TEST(ProtocolTest, CommitRoundTrips) {
  ExpectRoundTrip(CommitMessage{1, 1}, kCommitBytes);
  ExpectRoundTrip(CommitMessage{std::numeric_limits<uint64_t>::max(), uint64_t{1} << 63},
                  kCommitBytes);
}

TEST(ProtocolTest, AbortRoundTrips) {
  ExpectRoundTrip(SampleAbort(""), kAbortFixedBytes);
  ExpectRoundTrip(SampleAbort("node 7 was lost: connection reset"), kAbortFixedBytes + 33);
  ExpectRoundTrip(SampleAbort(std::string(kMaxReasonBytes, 'x')),
                  kAbortFixedBytes + kMaxReasonBytes);
  std::string binary = "a";
  binary.push_back('\0');
  binary += "\xff\x01 end";
  ExpectRoundTrip(SampleAbort(binary), kAbortFixedBytes + binary.size());
  for (int code = static_cast<int>(StatusCode::kInvalidArgument);
       code <= static_cast<int>(StatusCode::kInternal); ++code) {
    AbortMessage abort = SampleAbort("why");
    abort.code = static_cast<StatusCode>(code);
    ExpectRoundTrip(abort, kAbortFixedBytes + 3);
  }
  // An ABORT that says OK is a contradiction: rejected.
  AbortMessage ok_abort = SampleAbort("why");
  ok_abort.code = StatusCode::kOk;
  EXPECT_EQ(DecodeExact(Encode(ok_abort)).status().code(), StatusCode::kInvalidArgument);
}

// Heartbeat targets: every field survives, and a slot at address 0 is refused (nothing is ever
// registered there: a zeroed or foreign message).
TEST(ProtocolTest, BeatTargetRoundTripsAndRefusesAddressZero) {
  ExpectRoundTrip(BeatTargetMessage{1, 0, 1, 0}, kBeatTargetBytes);
  ExpectRoundTrip(BeatTargetMessage{std::numeric_limits<uint64_t>::max(), UINT32_MAX,
                                    std::numeric_limits<uint64_t>::max(), UINT32_MAX},
                  kBeatTargetBytes);
  EXPECT_EQ(DecodeExact(Encode(BeatTargetMessage{1, 2, 0, 3})).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(ProtocolTest, LostRoundTripsWithItsReasonTruncated) {
  ExpectRoundTrip(LostMessage{2, 5, ""}, kLostFixedBytes);
  ExpectRoundTrip(LostMessage{2, 5, "RetryExceeded"}, kLostFixedBytes + 13);
  const std::vector<std::byte> bytes = Encode(LostMessage{2, 5, std::string(1000, 'q')});
  EXPECT_EQ(bytes.size(), kLostFixedBytes + kMaxReasonBytes);
  Result<Message> decoded = DecodeExact(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(std::get<LostMessage>(*decoded).reason, std::string(kMaxReasonBytes, 'q'));
  // A reason longer than the message is refused.
  std::vector<std::byte> lying = Encode(LostMessage{2, 5, "abc"});
  Patch(lying, kHeaderBytes + 4, uint32_t{4});
  EXPECT_EQ(DecodeExact(lying).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtocolTest, AbortReasonIsTruncatedToMaxReasonBytes) {
  std::string reason;
  for (int i = 0; i < 1000; ++i) reason.push_back(static_cast<char>('a' + i % 26));
  const AbortMessage abort = SampleAbort(reason);
  const std::vector<std::byte> bytes = Encode(abort);
  EXPECT_EQ(bytes.size(), kAbortFixedBytes + kMaxReasonBytes);
  Result<Message> decoded = DecodeExact(bytes);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  const auto* got = std::get_if<AbortMessage>(&*decoded);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->reason, reason.substr(0, kMaxReasonBytes));
  EXPECT_EQ(got->epoch, abort.epoch);
  EXPECT_EQ(got->version, abort.version);
  EXPECT_EQ(got->failed_node, abort.failed_node);
  EXPECT_EQ(got->code, abort.code);

  // One byte over the limit is cut too.
  const std::vector<std::byte> over = Encode(SampleAbort(std::string(kMaxReasonBytes + 1, 'y')));
  EXPECT_EQ(over.size(), kAbortFixedBytes + kMaxReasonBytes);
}

// The bytes of the format, pinned: little-endian integers after {type, 7 pad bytes, epoch}.
TEST(ProtocolTest, CommitWireBytes) {
  const std::vector<std::byte> bytes =
      Encode(CommitMessage{0x0807060504030201, 0x1122334455667788});
  const std::vector<uint8_t> expected = {4,    0,    0,    0,    0,    0,    0,    0,
                                         0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                         0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11};
  ASSERT_EQ(bytes.size(), expected.size());
  for (size_t i = 0; i < bytes.size(); ++i) {
    EXPECT_EQ(static_cast<uint8_t>(bytes[i]), expected[i]) << "byte " << i;
  }
}

TEST(ProtocolTest, EncodeIntoTooSmallBufferIsResourceExhausted) {
  for (const Message& message : SampleMessages()) {
    const size_t size = Encode(message).size();
    ASSERT_GT(size, 0u);
    for (size_t bytes = 0; bytes < size; ++bytes) {
      SCOPED_TRACE(testing::Message() << "message " << message.index() << ", buffer " << bytes);
      // Exactly sized heap block: ASan reports a write past it.
      std::vector<std::byte> buffer(bytes);
      Result<size_t> used = EncodeMessage(message, buffer);
      ASSERT_FALSE(used.ok());
      EXPECT_EQ(used.status().code(), StatusCode::kResourceExhausted) << used.status();
    }
    std::vector<std::byte> exact(size);
    Result<size_t> used = EncodeMessage(message, exact);
    ASSERT_TRUE(used.ok()) << used.status();
    EXPECT_EQ(*used, size);
  }
}

TEST(ProtocolTest, EveryTruncationIsInvalidArgument) {
  for (const Message& message : SampleMessages()) {
    const std::vector<std::byte> bytes = Encode(message);
    for (size_t length = 0; length < bytes.size(); ++length) {
      SCOPED_TRACE(testing::Message() << "message " << message.index() << ", length " << length);
      Result<Message> decoded = DecodeExact(std::span(bytes).first(length));
      ASSERT_FALSE(decoded.ok());
      EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument) << decoded.status();
    }
  }
}

TEST(ProtocolTest, UnknownTypeIsInvalidArgument) {
  for (const int type : {0, 18, 19, 127, 255}) {
    std::vector<std::byte> bytes = Encode(SamplePrepare());
    bytes[0] = static_cast<std::byte>(type);
    Result<Message> decoded = DecodeExact(bytes);
    ASSERT_FALSE(decoded.ok()) << type;
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(decoded.status().message().find("unknown"), std::string_view::npos)
        << decoded.status();
  }
}

TEST(ProtocolTest, GoWithMoreThan64HoldersIsInvalidArgument) {
  // Encoding does not limit the count; decoding does.
  const std::vector<std::byte> bytes = Encode(SampleGo(65, 0), kMaxControlMessageBytes * 2);
  Result<Message> decoded = DecodeExact(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);

  // A count field of 65 or more with enough bytes behind it.
  std::vector<std::byte> patched = Encode(SampleGo(64, 50));
  for (const uint32_t holders : {65u, 100u, 0xffffffffu}) {
    Patch(patched, kGoHoldersOffset, holders);
    decoded = DecodeExact(patched);
    ASSERT_FALSE(decoded.ok()) << holders;
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ProtocolTest, GoCountsLargerThanTheBufferAreInvalidArgument) {
  const std::vector<std::byte> good = Encode(SampleGo(14, 1000), kMaxControlMessageBytes * 2);
  for (const uint32_t hosted : {1001u, 1u << 20, 0x40000000u, 0x7fffffffu, 0xffffffffu}) {
    std::vector<std::byte> bytes = good;
    Patch(bytes, kGoHostedOffset, hosted);
    Result<Message> decoded = DecodeExact(bytes);
    ASSERT_FALSE(decoded.ok()) << hosted;
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  }
  // Holders that fit the limit but not the buffer.
  std::vector<std::byte> bytes = Encode(SampleGo(3, 0));
  Patch(bytes, kGoHoldersOffset, uint32_t{4});
  Result<Message> decoded = DecodeExact(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  // has_placement is a boolean.
  bytes = Encode(SampleGo(3, 0));
  Patch(bytes, kGoHasPlacementOffset, uint32_t{2});
  decoded = DecodeExact(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtocolTest, InvalidStatusCodesAreInvalidArgument) {
  const int32_t bad_codes[] = {-1, static_cast<int32_t>(StatusCode::kInternal) + 1, 100,
                               std::numeric_limits<int32_t>::min(),
                               std::numeric_limits<int32_t>::max()};
  for (const int32_t code : bad_codes) {
    SCOPED_TRACE(code);
    // Encoded as given, rejected by the decoder.
    std::vector<std::byte> done = Encode(SampleDone(static_cast<StatusCode>(code), UINT32_MAX));
    Result<Message> decoded = DecodeExact(done);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);

    done = Encode(SampleDone(StatusCode::kOk, UINT32_MAX));
    Patch(done, kDoneCodeOffset, code);
    decoded = DecodeExact(done);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);

    std::vector<std::byte> abort = Encode(SampleAbort("reason"));
    Patch(abort, kAbortCodeOffset, code);
    decoded = DecodeExact(abort);
    ASSERT_FALSE(decoded.ok());
    EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(ProtocolTest, AbortReasonLengthOverTheLimitIsInvalidArgument) {
  // The bytes are there, but the length exceeds kMaxReasonBytes.
  std::vector<std::byte> bytes = Encode(SampleAbort(std::string(kMaxReasonBytes, 'z')));
  bytes.resize(bytes.size() + 64, std::byte{'z'});
  Patch(bytes, kAbortReasonBytesOffset, static_cast<uint32_t>(kMaxReasonBytes + 1));
  Result<Message> decoded = DecodeExact(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
  // A length beyond the buffer.
  bytes = Encode(SampleAbort("short"));
  Patch(bytes, kAbortReasonBytesOffset, uint32_t{6});
  decoded = DecodeExact(bytes);
  ASSERT_FALSE(decoded.ok());
  EXPECT_EQ(decoded.status().code(), StatusCode::kInvalidArgument);
}

uint64_t FuzzSeed() {
  // FT_PROTOCOL_FUZZ_SEED=<n> replays a run; the default is fixed so the suite is deterministic.
  if (const char* env = std::getenv("FT_PROTOCOL_FUZZ_SEED")) return std::strtoull(env, nullptr, 0);
  return 0x5eed0f7e;
}

// What the decoder promises for any input: InvalidArgument, or a message that survives another
// encode/decode unchanged.
void CheckDecodes(std::span<const std::byte> in) {
  Result<Message> decoded = DecodeExact(in);
  if (!decoded.ok()) {
    ASSERT_EQ(decoded.status().code(), StatusCode::kInvalidArgument) << decoded.status();
    return;
  }
  // Re-encoded it is never longer than the input (padding and trailing bytes are dropped).
  std::vector<std::byte> again(in.size());
  Result<size_t> used = EncodeMessage(*decoded, again);
  ASSERT_TRUE(used.ok()) << used.status();
  again.resize(*used);
  Result<Message> twice = DecodeExact(again);
  ASSERT_TRUE(twice.ok()) << twice.status();
  ASSERT_TRUE(*twice == *decoded);
}

TEST(ProtocolTest, RandomBytesNeverCrashTheDecoder) {
  const uint64_t seed = FuzzSeed();
  std::printf("ProtocolTest fuzz seed: %llu (set FT_PROTOCOL_FUZZ_SEED to replay)\n",
              static_cast<unsigned long long>(seed));
  RecordProperty("fuzz_seed", std::to_string(seed));
  SCOPED_TRACE(testing::Message() << "FT_PROTOCOL_FUZZ_SEED=" << seed);
  std::mt19937_64 rng(seed);
  constexpr int kInputs = 20000;
  size_t accepted = 0;
  for (int i = 0; i < kInputs; ++i) {
    const size_t length = std::uniform_int_distribution<size_t>(0, 512)(rng);
    std::vector<std::byte> bytes(length);
    for (std::byte& b : bytes) b = static_cast<std::byte>(rng());
    // Mostly valid types, so that the per-type parsers see the input.
    if (length > 0 && rng() % 8 != 0) bytes[0] = static_cast<std::byte>(1 + rng() % 5);
    ASSERT_NO_FATAL_FAILURE(CheckDecodes(bytes)) << "input " << i;
    accepted += DecodeExact(bytes).ok() ? 1 : 0;
  }
  std::printf("random inputs: %zu of %d decoded\n", accepted, kInputs);
}

TEST(ProtocolTest, MutatedMessagesNeverCrashTheDecoder) {
  const uint64_t seed = FuzzSeed() + 1;
  std::printf("ProtocolTest mutation seed: %llu\n", static_cast<unsigned long long>(seed));
  RecordProperty("mutation_seed", std::to_string(seed));
  SCOPED_TRACE(testing::Message() << "mutation seed " << seed);
  std::mt19937_64 rng(seed);
  const std::vector<Message> samples = SampleMessages();
  std::vector<std::vector<std::byte>> encoded;
  for (const Message& message : samples) encoded.push_back(Encode(message));
  constexpr int kMutations = 20000;
  for (int i = 0; i < kMutations; ++i) {
    std::vector<std::byte> bytes = encoded[rng() % encoded.size()];
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:  // flip a byte
          bytes[rng() % bytes.size()] = static_cast<std::byte>(rng());
          break;
        case 1:  // a large value in a 32-bit field (counts, lengths, codes)
          if (bytes.size() >= 4) {
            const size_t at = (rng() % (bytes.size() / 4)) * 4;
            const uint32_t value = static_cast<uint32_t>(rng()) | 0x80000000u >> (rng() % 32);
            std::memcpy(bytes.data() + at, &value, sizeof(value));
          }
          break;
        case 2:  // cut
          bytes.resize(rng() % (bytes.size() + 1));
          break;
        default:  // append
          bytes.resize(bytes.size() + rng() % 64, static_cast<std::byte>(rng()));
          break;
      }
      if (bytes.empty()) bytes.push_back(std::byte{2});
    }
    ASSERT_NO_FATAL_FAILURE(CheckDecodes(bytes)) << "mutation " << i;
  }
}

}  // namespace
}  // namespace ft::recovery
