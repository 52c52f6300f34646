// FaultyFabric on the loopback backend: every action (fail, delay, corrupt, drop, connect
// faults), rule selection and occurrences, run-time rule changes while other threads post and
// poll, and the forwarding a decorator must not forget (locality). That faulty(loopback) with no
// rules is transparent is shown by the conformance suite (fabric_conformance_test.cc). Loopback
// executes work only in the poster's progress step, so "N steps" here are N PollCompletions
// calls; nothing sleeps, every wait is bounded.
#include "verbs/faulty/faulty.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test/status_matchers.h"
#include "test/work_requests.h"
#include "verbs/loopback/loopback.h"

namespace ft::verbs {
namespace {

using std::chrono::seconds;
using test::Read;
using test::Recv;
using test::Send;
using test::SgeOf;
using test::Write;

constexpr uint32_t kAccess = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;
constexpr int kMaxSteps = 1000;  // bound of every polling loop
constexpr size_t kBytes = 64;

std::string StatusName(WcStatus status) { return WcStatusName(status); }

class FaultyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto network = LoopbackNetwork::Create(3);
    ASSERT_TRUE(network.ok()) << network.status();
    network_ = std::move(network).value();
    faults_ = std::make_shared<FaultController>(/*seed=*/42);
    trace_ = std::make_unique<::testing::ScopedTrace>(
        __FILE__, __LINE__, network_->seed_description() + " " + faults_->seed_description());
    for (NodeId id = 0; id < 3; ++id) {
      auto inner = network_->CreateFabric(id);
      ASSERT_TRUE(inner.ok()) << inner.status();
      fabrics_[id] = std::make_unique<FaultyFabric>(std::move(inner).value(), faults_);
    }
  }
  void TearDown() override {
    qps_.clear();
    regions_.clear();
    for (auto& fabric : fabrics_) fabric.reset();
  }

  Fabric& F(NodeId id) { return *fabrics_[id]; }

  // A registered buffer of `bytes` filled with `fill`.
  std::pair<std::span<std::byte>, MemoryRegion*> Buffer(NodeId id, uint8_t fill,
                                                        size_t bytes = kBytes) {
    buffers_.emplace_back(bytes, std::byte{fill});
    std::span<std::byte> buffer = buffers_.back();
    auto mr = F(id).RegisterMemory(buffer.data(), buffer.size(), kAccess);
    EXPECT_TRUE(mr.ok()) << mr.status();
    if (!mr.ok()) std::abort();
    regions_.push_back(std::move(mr).value());
    return {buffer, regions_.back().get()};
  }

  std::pair<QueuePair*, QueuePair*> Connect(NodeId a, NodeId b,
                                            std::vector<RecvRequest> receives_b = {}) {
    Result<std::vector<std::unique_ptr<QueuePair>>> rb = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{.peer = a, .private_data = {}, .receives = receives_b};
      rb = F(b).Connect({&request, 1}, seconds(10));
    });
    ConnectRequest request;
    request.peer = b;
    auto ra = F(a).Connect({&request, 1}, seconds(10));
    peer.join();
    EXPECT_TRUE(ra.ok() && rb.ok()) << ra.status() << " / " << rb.status();
    if (!ra.ok() || !rb.ok()) std::abort();
    qps_.push_back(std::move(ra->front()));
    qps_.push_back(std::move(rb->front()));
    return {qps_[qps_.size() - 2].get(), qps_.back().get()};
  }

  // Polls `id` once (one progress step).
  std::vector<Completion> Step(NodeId id) {
    std::array<Completion, 16> out;
    const size_t n = F(id).PollCompletions(out);
    return {out.begin(), out.begin() + n};
  }
  // Polls until `count` completions arrived (at most kMaxSteps steps).
  std::vector<Completion> PollN(NodeId id, size_t count) {
    std::vector<Completion> all;
    for (int i = 0; i < kMaxSteps && all.size() < count; ++i) {
      for (const Completion& c : Step(id)) all.push_back(c);
    }
    return all;
  }
  std::vector<Event> Events(NodeId id) {
    std::array<Event, 16> out;
    const size_t n = F(id).PollEvents(out);
    return {std::make_move_iterator(out.begin()), std::make_move_iterator(out.begin() + n)};
  }

  std::unique_ptr<LoopbackNetwork> network_;
  std::shared_ptr<FaultController> faults_;
  std::unique_ptr<::testing::ScopedTrace> trace_;
  std::deque<std::vector<std::byte>> buffers_;
  std::array<std::unique_ptr<Fabric>, 3> fabrics_;
  std::vector<std::unique_ptr<MemoryRegion>> regions_;
  std::vector<std::unique_ptr<QueuePair>> qps_;
};

bool AllBytes(std::span<const std::byte> a, uint8_t value) {
  return std::all_of(a.begin(), a.end(), [&](std::byte b) { return b == std::byte{value}; });
}

// ---------------------------------------------------------------------------------------------
// Forwarding

TEST_F(FaultyTest, NamesItselfAndForwardsWhatTheInnerFabricSays) {
  EXPECT_EQ(F(0).name(), "faulty(loopback)");
  EXPECT_EQ(F(1).node(), 1u);
  EXPECT_EQ(F(0).limits().max_send_wr, LoopbackOptions{}.limits.max_send_wr);
  EXPECT_EQ(F(0).locality(), nullptr);  // loopback has no device
  EXPECT_TRUE(F(0).endpoint().empty());
  EXPECT_TRUE(F(0).LearnEndpoint(1, {}).ok());
}

// A Fabric with a device locality, to see that the decorator forwards it (placement silently
// stops otherwise).
class LocatedFabric final : public Fabric {
 public:
  class Here final : public DeviceLocality {
   public:
    std::string Describe() const override { return "test device on NUMA node 1 of 2"; }
    bool binds() const override { return true; }
    Status BindMemory(void*, size_t) const override { return Status(); }
    Status BindCurrentThread() const override { return Status(); }
  };
  explicit LocatedFabric(std::unique_ptr<Fabric> inner) : inner_(std::move(inner)) {}
  NodeId node() const override { return inner_->node(); }
  const Limits& limits() const override { return inner_->limits(); }
  std::string name() const override { return "located"; }
  Result<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                       uint32_t access) override {
    return inner_->RegisterMemory(addr, bytes, access);
  }
  Result<std::vector<std::unique_ptr<QueuePair>>> Connect(std::span<const ConnectRequest> requests,
                                                          Nanos timeout) override {
    return inner_->Connect(requests, timeout);
  }
  size_t PollCompletions(std::span<Completion> out) override {
    return inner_->PollCompletions(out);
  }
  size_t PollEvents(std::span<Event> out) override { return inner_->PollEvents(out); }
  void WaitForActivity(Nanos timeout) override { inner_->WaitForActivity(timeout); }
  void Interrupt() override { inner_->Interrupt(); }
  const DeviceLocality* locality() const override { return &here_; }

 private:
  std::unique_ptr<Fabric> inner_;
  Here here_;
};

TEST(FaultyForwardingTest, ForwardsTheDeviceLocality) {
  auto network = LoopbackNetwork::Create(1);
  ASSERT_TRUE(network.ok());
  auto inner = (*network)->CreateFabric(0);
  ASSERT_TRUE(inner.ok());
  auto located = std::make_unique<LocatedFabric>(std::move(inner).value());
  const DeviceLocality* expected = located->locality();
  FaultyFabric faulty(std::move(located), std::make_shared<FaultController>());
  ASSERT_NE(expected, nullptr);
  EXPECT_EQ(faulty.locality(), expected);
}

// ---------------------------------------------------------------------------------------------
// fail

TEST_F(FaultyTest, FailCompletesWithTheStatusAfterEarlierWorkAndFlushesLaterWork) {
  auto [src, src_mr] = Buffer(0, 0xAB, 3 * kBytes);
  auto [dst, dst_mr] = Buffer(1, 0x00, 3 * kBytes);
  auto [rbuf, rbuf_mr] = Buffer(0, 0x00);
  auto [qp, peer_qp] = Connect(0, 1);
  ASSERT_TRUE(qp->PostRecv(std::vector{Recv(100, SgeOf(*rbuf_mr, 0, kBytes))}).ok());
  faults_->Add(FaultRule::Fail(WcStatus::kRetryExceeded).For(Opcode::kWrite).Nth(2));
  const std::vector requests{
      Write(1, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0, /*signaled=*/false),
      Write(2, SgeOf(*src_mr, kBytes, kBytes), *dst_mr, kBytes, /*signaled=*/false),
      Write(3, SgeOf(*src_mr, 2 * kBytes, kBytes), *dst_mr, 2 * kBytes)};
  size_t posted = 0;
  ASSERT_TRUE(qp->PostSend(requests, &posted).ok());
  EXPECT_EQ(posted, 3u);

  // Errors always complete (the unsignaled 2 too); the receive and 3 are flushed.
  const std::vector<Completion> got = PollN(0, 3);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].wr_id, 2u);
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kRetryExceeded));
  EXPECT_EQ(got[0].qp, qp->id());
  EXPECT_EQ(got[0].bytes, 0u);  // an error carries only wr_id, qp and status
  std::vector<uint64_t> flushed;
  for (size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(StatusName(got[i].status), StatusName(WcStatus::kFlushed)) << got[i].wr_id;
    flushed.push_back(got[i].wr_id);
  }
  std::sort(flushed.begin(), flushed.end());
  EXPECT_EQ(flushed, (std::vector<uint64_t>{3, 100}));
  // 1 executed before the failure; 2 and 3 landed nothing.
  EXPECT_TRUE(AllBytes(dst.subspan(0, kBytes), 0xAB));
  EXPECT_TRUE(AllBytes(dst.subspan(kBytes), 0x00));
  EXPECT_EQ(qp->state(), QpState::kError);
  const std::vector<Event> events = Events(0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, EventType::kQpError);
  EXPECT_EQ(events[0].qp, qp->id());
  EXPECT_NE(events[0].detail.find("faulty seed=42"), std::string::npos) << events[0].detail;
  // Later posts flush too.
  ASSERT_TRUE(qp->PostSend(std::vector{Write(4, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0)}).ok());
  const std::vector<Completion> later = PollN(0, 1);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(StatusName(later[0].status), StatusName(WcStatus::kFlushed));
  EXPECT_EQ(faults_->counters().failed, 1u);
  EXPECT_EQ(peer_qp->state(), QpState::kConnected);  // the peer is not told
}

TEST_F(FaultyTest, FailSelectsByPeerAndNode) {
  auto [src, src_mr] = Buffer(0, 0x11);
  auto [dst1, dst1_mr] = Buffer(1, 0x00);
  auto [dst2, dst2_mr] = Buffer(2, 0x00);
  auto [to1, from0_at1] = Connect(0, 1);
  auto [to2, from0_at2] = Connect(0, 2);
  faults_->Add(
      {.node = 0, .peer = 2, .action = FaultAction::kFail, .status = WcStatus::kRemoteAccessError});
  ASSERT_TRUE(to1->PostSend(std::vector{Write(1, SgeOf(*src_mr, 0, kBytes), *dst1_mr, 0)}).ok());
  ASSERT_TRUE(to2->PostSend(std::vector{Write(2, SgeOf(*src_mr, 0, kBytes), *dst2_mr, 0)}).ok());
  std::vector<Completion> got = PollN(0, 2);
  ASSERT_EQ(got.size(), 2u);
  std::sort(got.begin(), got.end(), [](auto& a, auto& b) { return a.wr_id < b.wr_id; });
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kSuccess));
  EXPECT_EQ(StatusName(got[1].status), StatusName(WcStatus::kRemoteAccessError));
  EXPECT_TRUE(AllBytes(dst1, 0x11));
  EXPECT_TRUE(AllBytes(dst2, 0x00));
  EXPECT_EQ(to1->state(), QpState::kConnected);
  EXPECT_EQ(to2->state(), QpState::kError);
}

// A rule narrowed to some wr_ids leaves the other requests of its opcode on the same QP alone,
// and counts only the ones it matches (Nth(1) is the first matching one, not the first posted).
TEST_F(FaultyTest, RuleSelectsByWrId) {
  auto [src, src_mr] = Buffer(0, 0x33);
  auto [dst, dst_mr] = Buffer(1, 0x00);
  auto [to1, from0] = Connect(0, 1);
  faults_->Add(FaultRule::Fail(WcStatus::kRemoteAccessError)
                   .For(Opcode::kWrite)
                   .ForWrIds([](uint64_t wr_id) { return wr_id >= 100; })
                   .Nth(1));
  ASSERT_TRUE(to1->PostSend(std::vector{Write(7, SgeOf(*src_mr, 0, kBytes / 2), *dst_mr, 0)}).ok());
  ASSERT_TRUE(to1->PostSend(std::vector{Write(100, SgeOf(*src_mr, kBytes / 2, kBytes / 2), *dst_mr,
                                              kBytes / 2)})
                  .ok());
  std::vector<Completion> got = PollN(0, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].wr_id, 7u);
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kSuccess));
  EXPECT_EQ(got[1].wr_id, 100u);
  EXPECT_EQ(StatusName(got[1].status), StatusName(WcStatus::kRemoteAccessError));
  EXPECT_TRUE(AllBytes(dst.subspan(0, kBytes / 2), 0x33));
  EXPECT_TRUE(AllBytes(dst.subspan(kBytes / 2), 0x00));
  EXPECT_EQ(faults_->counters().failed, 1u);
}

TEST_F(FaultyTest, FailedReceiveCompletesWithTheStatusAndFlushesTheNextReceive) {
  auto [src, src_mr] = Buffer(0, 0x22);
  auto [rbuf, rbuf_mr] = Buffer(1, 0x00, 2 * kBytes);
  auto [qp, peer_qp] = Connect(
      0, 1, {Recv(10, SgeOf(*rbuf_mr, 0, kBytes)), Recv(11, SgeOf(*rbuf_mr, kBytes, kBytes))});
  faults_->Add({.opcode = Opcode::kRecv,
                .node = 1,
                .action = FaultAction::kFail,
                .status = WcStatus::kLocalLengthError});
  ASSERT_TRUE(qp->PostSend(std::vector{Send(1, SgeOf(*src_mr, 0, kBytes))}).ok());
  ASSERT_EQ(PollN(0, 1).size(), 1u);
  const std::vector<Completion> got = PollN(1, 2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].wr_id, 10u);
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kLocalLengthError));
  EXPECT_EQ(got[1].wr_id, 11u);
  EXPECT_EQ(StatusName(got[1].status), StatusName(WcStatus::kFlushed));
  EXPECT_EQ(peer_qp->state(), QpState::kError);
}

// ---------------------------------------------------------------------------------------------
// delay

TEST_F(FaultyTest, DelayHoldsForThatManyStepsAndLaterRequestsWaitBehind) {
  auto [src, src_mr] = Buffer(0, 0x33, 2 * kBytes);
  auto [dst, dst_mr] = Buffer(1, 0x00, 2 * kBytes);
  auto [qp, peer_qp] = Connect(0, 1);
  faults_->Add(FaultRule::Delay(3).For(Opcode::kWrite).Nth(1));
  ASSERT_TRUE(qp->PostSend(std::vector{Write(1, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0)}).ok());
  ASSERT_TRUE(
      qp->PostSend(std::vector{Write(2, SgeOf(*src_mr, kBytes, kBytes), *dst_mr, kBytes)}).ok());
  for (int step = 1; step <= 3; ++step) {
    EXPECT_TRUE(Step(0).empty()) << "step " << step;
    EXPECT_TRUE(AllBytes(dst, 0x00)) << "step " << step;  // 2 waits behind 1
  }
  const std::vector<Completion> got = Step(0);  // the 4th step hands both on
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].wr_id, 1u);
  EXPECT_EQ(got[1].wr_id, 2u);
  EXPECT_TRUE(AllBytes(dst, 0x33));
  EXPECT_EQ(faults_->counters().delayed, 1u);
}

TEST_F(FaultyTest, DelayedInlineRequestSendsThePayloadOfPostTime) {
  auto [src, src_mr] = Buffer(0, 0x44, 16);
  auto [dst, dst_mr] = Buffer(1, 0x00, 16);
  auto [qp, peer_qp] = Connect(0, 1);
  faults_->Add({.action = FaultAction::kDelay, .delay_steps = 2});
  SendRequest w = Write(1, SgeOf(*src_mr, 0, 16), *dst_mr, 0);
  w.inline_data = true;
  ASSERT_TRUE(qp->PostSend(std::vector{w}).ok());
  std::fill(src.begin(), src.end(), std::byte{0x55});  // inline: reusable at once
  const std::vector<Completion> got = PollN(0, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kSuccess));
  EXPECT_TRUE(AllBytes(dst, 0x44));
}

TEST_F(FaultyTest, DelayedReceiveCompletionAppearsThatManyStepsLater) {
  auto [src, src_mr] = Buffer(0, 0x66);
  auto [rbuf, rbuf_mr] = Buffer(1, 0x00, 2 * kBytes);
  auto [qp, peer_qp] = Connect(
      0, 1, {Recv(10, SgeOf(*rbuf_mr, 0, kBytes)), Recv(11, SgeOf(*rbuf_mr, kBytes, kBytes))});
  faults_->Add({.opcode = Opcode::kRecv,
                .occurrence = Occurrence::Nth(1),
                .action = FaultAction::kDelay,
                .delay_steps = 2});
  ASSERT_TRUE(qp->PostSend(std::vector{Send(1, SgeOf(*src_mr, 0, kBytes)),
                                       Send(2, SgeOf(*src_mr, 0, kBytes))})
                  .ok());
  ASSERT_EQ(PollN(0, 2).size(), 2u);
  EXPECT_TRUE(Step(1).empty());  // both arrived; 10 is held, 11 waits behind it
  EXPECT_TRUE(Step(1).empty());
  const std::vector<Completion> got = Step(1);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].wr_id, 10u);
  EXPECT_EQ(got[1].wr_id, 11u);
}

// ---------------------------------------------------------------------------------------------
// corrupt

TEST_F(FaultyTest, CorruptWriteLandsWithTheChosenBytesFlippedAndSucceeds) {
  auto [src, src_mr] = Buffer(0, 0x0F);
  auto [dst, dst_mr] = Buffer(1, 0x00);
  auto [qp, peer_qp] = Connect(0, 1);
  faults_->Add({.opcode = Opcode::kWrite,
                .action = FaultAction::kCorrupt,
                .flip_offsets = {0, 5, kBytes + 7},  // the last is past the payload: ignored
                .flip_mask = 0x80});
  ASSERT_TRUE(qp->PostSend(std::vector{Write(1, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0)}).ok());
  const std::vector<Completion> got = PollN(0, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kSuccess));
  EXPECT_EQ(got[0].bytes, kBytes);
  for (size_t i = 0; i < kBytes; ++i) {
    const auto expected = std::byte{(i == 0 || i == 5) ? uint8_t{0x8F} : uint8_t{0x0F}};
    EXPECT_EQ(dst[i], expected) << "byte " << i;
  }
  EXPECT_TRUE(AllBytes(src, 0x0F));  // the caller's buffer is left alone
  EXPECT_EQ(faults_->counters().corrupted, 1u);
}

TEST_F(FaultyTest, CorruptSendReadAndReceiveFlipTheLandedBytes) {
  auto [src, src_mr] = Buffer(0, 0x01);
  auto [local, local_mr] = Buffer(0, 0x00);
  auto [remote, remote_mr] = Buffer(1, 0x02);
  auto [rbuf, rbuf_mr] = Buffer(1, 0x00, 2 * kBytes);
  auto [qp, peer_qp] = Connect(
      0, 1, {Recv(10, SgeOf(*rbuf_mr, 0, kBytes)), Recv(11, SgeOf(*rbuf_mr, kBytes, kBytes))});
  faults_->Add({.opcode = Opcode::kSend, .action = FaultAction::kCorrupt, .flip_offsets = {1}});
  faults_->Add({.opcode = Opcode::kRead, .action = FaultAction::kCorrupt, .flip_offsets = {2}});
  const FaultRuleId recv_rule = faults_->Add({.opcode = Opcode::kRecv,
                                              .occurrence = Occurrence::Nth(2),
                                              .action = FaultAction::kCorrupt,
                                              .flip_offsets = {3}});
  ASSERT_TRUE(qp->PostSend(std::vector{Send(1, SgeOf(*src_mr, 0, kBytes)),
                                       Send(2, SgeOf(*src_mr, 0, kBytes)),
                                       Read(3, SgeOf(*local_mr, 0, kBytes), *remote_mr, 0)})
                  .ok());
  ASSERT_EQ(PollN(0, 3).size(), 3u);
  ASSERT_EQ(PollN(1, 2).size(), 2u);
  const auto only = [](std::span<const std::byte> bytes, uint8_t fill,
                       std::vector<std::pair<size_t, uint8_t>> flips) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      uint8_t expected = fill;
      for (auto [at, value] : flips) {
        if (at == i) expected = value;
      }
      if (bytes[i] != std::byte{expected}) return false;
    }
    return true;
  };
  EXPECT_TRUE(only(rbuf.subspan(0, kBytes), 0x01, {{1, 0x00}}));          // SEND flip
  EXPECT_TRUE(only(rbuf.subspan(kBytes), 0x01, {{1, 0x00}, {3, 0x00}}));  // + RECV flip
  EXPECT_TRUE(only(local, 0x02, {{2, 0x03}}));                            // READ flip
  EXPECT_EQ(faults_->counters().corrupted, 4u);
  EXPECT_EQ(faults_->fired(recv_rule), 1u);
}

// ---------------------------------------------------------------------------------------------
// drop

TEST_F(FaultyTest, DroppedWriteReportsSuccessButNothingLands) {
  auto [src, src_mr] = Buffer(0, 0x77, 2 * kBytes);
  auto [dst, dst_mr] = Buffer(1, 0x00, 2 * kBytes);
  auto [qp, peer_qp] = Connect(0, 1);
  faults_->Add(
      {.opcode = Opcode::kWrite, .occurrence = Occurrence::Nth(1), .action = FaultAction::kDrop});
  ASSERT_TRUE(qp->PostSend(std::vector{Write(1, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0),
                                       Write(2, SgeOf(*src_mr, kBytes, kBytes), *dst_mr, kBytes)})
                  .ok());
  const std::vector<Completion> got = PollN(0, 2);
  ASSERT_EQ(got.size(), 2u);
  for (const Completion& c : got) {
    EXPECT_EQ(StatusName(c.status), StatusName(WcStatus::kSuccess)) << c.wr_id;
    EXPECT_EQ(c.opcode, Opcode::kWrite);
    EXPECT_EQ(c.bytes, kBytes);
  }
  EXPECT_EQ(got[0].wr_id, 1u);
  EXPECT_TRUE(AllBytes(dst.subspan(0, kBytes), 0x00));  // the lie
  EXPECT_TRUE(AllBytes(dst.subspan(kBytes), 0x77));
  EXPECT_EQ(faults_->counters().dropped, 1u);
}

TEST_F(FaultyTest, DroppedSendReachesNoReceiveAndAnUnsignaledDropReportsNothing) {
  auto [src, src_mr] = Buffer(0, 0x12);
  auto [rbuf, rbuf_mr] = Buffer(1, 0x00);
  auto [qp, peer_qp] = Connect(0, 1, {Recv(10, SgeOf(*rbuf_mr, 0, kBytes))});
  faults_->Add(
      {.opcode = Opcode::kSend, .occurrence = Occurrence::Nth(1), .action = FaultAction::kDrop});
  ASSERT_TRUE(qp->PostSend(std::vector{Send(1, SgeOf(*src_mr, 0, kBytes), /*signaled=*/false),
                                       Send(2, SgeOf(*src_mr, 0, 8))})
                  .ok());
  const std::vector<Completion> got = PollN(0, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].wr_id, 2u);
  // The posted receive took the second SEND (8 bytes): the first never arrived.
  const std::vector<Completion> at_peer = PollN(1, 1);
  ASSERT_EQ(at_peer.size(), 1u);
  EXPECT_EQ(at_peer[0].wr_id, 10u);
  EXPECT_EQ(at_peer[0].bytes, 8u);
}

TEST_F(FaultyTest, DroppedWriteToADeadPeerStillFails) {
  auto [src, src_mr] = Buffer(0, 0x77);
  auto [dst, dst_mr] = Buffer(1, 0x00);
  auto [qp, peer_qp] = Connect(0, 1);
  faults_->Add({.action = FaultAction::kDrop});
  network_->Kill(1);
  ASSERT_TRUE(qp->PostSend(std::vector{Write(1, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0)}).ok());
  const std::vector<Completion> got = PollN(0, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(StatusName(got[0].status), StatusName(WcStatus::kRetryExceeded));
}

// ---------------------------------------------------------------------------------------------
// Occurrences and rule changes

TEST_F(FaultyTest, OccurrencesNthEveryAndSeededProbability) {
  auto [src, src_mr] = Buffer(0, 0x01);
  auto [dst, dst_mr] = Buffer(1, 0x00);
  auto [qp, peer_qp] = Connect(0, 1);
  const FaultRuleId third =
      faults_->Add({.occurrence = Occurrence::Nth(3), .action = FaultAction::kDrop});
  const FaultRuleId half = faults_->Add(
      {.occurrence = Occurrence::WithProbability(0.5), .action = FaultAction::kCorrupt});
  constexpr int kRequests = 200;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(qp->PostSend(std::vector{Write(i, SgeOf(*src_mr, 0, 8), *dst_mr, 0)}).ok());
    ASSERT_EQ(PollN(0, 1).size(), 1u);
  }
  EXPECT_EQ(faults_->fired(third), 1u);
  // The third request was dropped, so the probability rule saw one fewer.
  const uint64_t corrupted = faults_->fired(half);
  EXPECT_GT(corrupted, 60u);
  EXPECT_LT(corrupted, 140u);
  // The same seed replays the same choices.
  FaultController replay(faults_->seed());
  replay.Add({.occurrence = Occurrence::Nth(3), .action = FaultAction::kDrop});
  const FaultRuleId replay_half =
      replay.Add({.occurrence = Occurrence::WithProbability(0.5), .action = FaultAction::kCorrupt});
  for (int i = 0; i < kRequests; ++i) (void)replay.Match(0, 1, Opcode::kWrite, 0);
  EXPECT_EQ(replay.fired(replay_half), corrupted);
  // Every: each one.
  faults_->Clear();
  const FaultRuleId every = faults_->Add({.action = FaultAction::kDrop});
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(qp->PostSend(std::vector{Write(i, SgeOf(*src_mr, 0, 8), *dst_mr, 0)}).ok());
  }
  ASSERT_EQ(PollN(0, 5).size(), 5u);
  EXPECT_EQ(faults_->fired(every), 5u);
}

TEST_F(FaultyTest, RemovedRuleStopsActing) {
  auto [src, src_mr] = Buffer(0, 0x09);
  auto [dst, dst_mr] = Buffer(1, 0x00);
  auto [qp, peer_qp] = Connect(0, 1);
  const FaultRuleId drop = faults_->Add({.action = FaultAction::kDrop});
  ASSERT_TRUE(qp->PostSend(std::vector{Write(1, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0)}).ok());
  ASSERT_EQ(PollN(0, 1).size(), 1u);
  EXPECT_TRUE(AllBytes(dst, 0x00));
  faults_->Remove(drop);
  ASSERT_TRUE(qp->PostSend(std::vector{Write(2, SgeOf(*src_mr, 0, kBytes), *dst_mr, 0)}).ok());
  ASSERT_EQ(PollN(0, 1).size(), 1u);
  EXPECT_TRUE(AllBytes(dst, 0x09));
  EXPECT_EQ(faults_->counters().dropped, 1u);
}

// Rules come and go on one thread while another posts and polls: every request completes once,
// and each one's fate is one of the rules' (TSan/ASan builds check the locking).
TEST_F(FaultyTest, RulesChangeWhileAnotherThreadPostsAndPolls) {
  auto [src, src_mr] = Buffer(0, 0x5A, 4096);
  auto [dst, dst_mr] = Buffer(1, 0x00, 4096);
  auto [qp, peer_qp] = Connect(0, 1);
  constexpr uint64_t kRequests = 2000;
  // Present from the start, so that faults certainly happen during the run.
  faults_->Add(FaultRule::Delay(1).Nth(1));
  std::atomic<bool> done{false};
  std::vector<uint64_t> completed;
  std::thread worker([&, qp = qp, src_mr = src_mr, dst_mr = dst_mr] {
    uint64_t next = 0;
    for (int step = 0; step < 100 * kMaxSteps && completed.size() < kRequests; ++step) {
      if (next < kRequests && next - completed.size() < 64) {
        if (qp->PostSend(std::vector{Write(next, SgeOf(*src_mr, 0, 4096), *dst_mr, 0)}).ok()) {
          ++next;
        }
      }
      for (const Completion& c : Step(0)) {
        EXPECT_EQ(StatusName(c.status), StatusName(WcStatus::kSuccess)) << c.wr_id;
        completed.push_back(c.wr_id);
      }
    }
    done = true;
  });
  for (int round = 0; !done.load() && round < 100000; ++round) {
    const FaultRuleId delay = faults_->Add({.action = FaultAction::kDelay, .delay_steps = 2});
    const FaultRuleId corrupt = faults_->Add(
        {.occurrence = Occurrence::WithProbability(0.3), .action = FaultAction::kCorrupt});
    const FaultRuleId drop =
        faults_->Add({.occurrence = Occurrence::Nth(2), .action = FaultAction::kDrop});
    std::this_thread::yield();
    faults_->Remove(delay);
    faults_->Remove(corrupt);
    faults_->Remove(drop);
  }
  worker.join();
  ASSERT_EQ(completed.size(), kRequests);
  EXPECT_GE(faults_->counters().delayed, 1u);
  for (uint64_t i = 0; i < kRequests; ++i) EXPECT_EQ(completed[i], i);  // RC order held
}

// ---------------------------------------------------------------------------------------------
// Connect faults

TEST_F(FaultyTest, ConnectNamingAChosenPeerFailsUnavailable) {
  faults_->AddConnectFault(ConnectFault::Fail({2}).OnNode(0));
  std::vector<ConnectRequest> requests(2);
  requests[0].peer = 1;
  requests[1].peer = 2;
  auto result = F(0).Connect(requests, seconds(1));
  EXPECT_TRUE(ft::test::HasError(result.status(), StatusCode::kUnavailable, "1, 2"));
  EXPECT_TRUE(ft::test::HasError(result.status(), StatusCode::kUnavailable, "faulty seed=42"));
  EXPECT_EQ(faults_->counters().connects_failed, 1u);
  Connect(0, 1);  // a Connect not naming 2 is untouched
  EXPECT_EQ(faults_->counters().connects_failed, 1u);
}

// Waits (bounded, without sleeping) until a Connect is held.
bool WaitHeld(const FaultController& faults) {
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (faults.held_connects() == 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

TEST_F(FaultyTest, HeldConnectProceedsWhenReleased) {
  faults_->AddConnectFault(ConnectFault::Hold({}).OnNode(0));
  Result<std::vector<std::unique_ptr<QueuePair>>> held = Status::Internal("not run");
  std::thread connecting([&] {
    ConnectRequest request;
    request.peer = 1;
    held = F(0).Connect({&request, 1}, seconds(10));
  });
  ASSERT_TRUE(WaitHeld(*faults_));
  Result<std::vector<std::unique_ptr<QueuePair>>> peer = Status::Internal("not run");
  std::thread accepting([&] {
    ConnectRequest request;
    request.peer = 0;
    peer = F(1).Connect({&request, 1}, seconds(10));
  });
  faults_->ReleaseHeldConnects();
  connecting.join();
  accepting.join();
  ASSERT_TRUE(held.ok()) << held.status();
  ASSERT_TRUE(peer.ok()) << peer.status();
  EXPECT_EQ(faults_->counters().connects_held, 1u);
  for (auto& qp : *held) qps_.push_back(std::move(qp));
  for (auto& qp : *peer) qps_.push_back(std::move(qp));
}

TEST_F(FaultyTest, HeldConnectTimesOutOrIsCancelled) {
  faults_->AddConnectFault(ConnectFault::Hold({1}).OnNode(0));
  ConnectRequest request;
  request.peer = 1;
  auto timed_out = F(0).Connect({&request, 1}, std::chrono::milliseconds(20));
  EXPECT_TRUE(ft::test::HasError(timed_out.status(), StatusCode::kDeadlineExceeded, "node(s) 1"));
  Result<std::vector<std::unique_ptr<QueuePair>>> cancelled = Status::Internal("not run");
  std::thread connecting([&] { cancelled = F(0).Connect({&request, 1}, seconds(10)); });
  ASSERT_TRUE(WaitHeld(*faults_));
  F(0).CancelConnects();
  connecting.join();
  EXPECT_TRUE(ft::test::HasError(cancelled.status(), StatusCode::kAborted, "cancelled"));
}

}  // namespace
}  // namespace ft::verbs
