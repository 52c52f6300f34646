// Loopback-only behaviour of the loopback fabric: construction and when exactly work executes
// (progress steps, fencing, responder errors, RNR, queue limits, CQ overrun). Faults are in
// loopback_faults_test.cc, concurrency in loopback_concurrency_test.cc; what every backend shares
// is in the conformance suite. No test sleeps; every wait has a deadline.
#include <gtest/gtest.h>

#include "test/loopback_test_fixture.h"

namespace ft::verbs::loopback_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Construction

TEST_F(LoopbackTest, CreateValidatesItsArguments) {
  EXPECT_EQ(LoopbackNetwork::Create(0).status().code(), StatusCode::kInvalidArgument);
  LoopbackOptions options;
  options.limits.max_send_wr = 0;
  EXPECT_EQ(LoopbackNetwork::Create(2, options).status().code(), StatusCode::kInvalidArgument);
  options = {};
  options.rnr_retry_steps = -1;
  EXPECT_EQ(LoopbackNetwork::Create(2, options).status().code(), StatusCode::kInvalidArgument);
  options = {};
  options.seed = 12345;
  Init(3, options);
  EXPECT_EQ(net().nodes(), 3);
  EXPECT_EQ(net().seed(), 12345u);
  EXPECT_EQ(net().seed_description(), "loopback seed=12345");
  EXPECT_EQ(F(0).name(), "loopback");
  EXPECT_EQ(F(2).node(), 2u);
}

TEST_F(LoopbackTest, AtMostOneLiveFabricPerNode) {
  Init(2);
  F(0);
  EXPECT_EQ(net().CreateFabric(0).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(net().CreateFabric(2).status().code(), StatusCode::kInvalidArgument);
  fabrics_.erase(0);  // the node leaves cleanly; the rank may come back
  EXPECT_TRUE(net().CreateFabric(0).ok());
}

// ---------------------------------------------------------------------------------------------
// When work executes

TEST_F(LoopbackTest, WorkExecutesOnlyInThePostersProgressStep) {
  Init(2);
  std::span<std::byte> src = Buffer(4096, 0x5C);
  std::span<std::byte> dst = Buffer(4096, 0x00);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const SendRequest w = Write(1, SgeOf(*local, 0, 4096), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  EXPECT_TRUE(AllBytes(dst, 0)) << "the WRITE executed inside PostSend";
  // The target's progress does not execute the poster's work (one-sided).
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(PollOnce(1).has_value());
  EXPECT_TRUE(AllBytes(dst, 0));
  // Queued work makes WaitForActivity return at once.
  const auto start = steady_clock::now();
  F(0).WaitForActivity(seconds(60));
  EXPECT_LT(steady_clock::now() - start, seconds(30));
  // One poll of the poster executes it and returns its completion.
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kSuccess);
  EXPECT_TRUE(AllBytes(dst, 0x5C));
}

TEST_F(LoopbackTest, QueuedRequestsBeforeToErrorAreFlushedAndNothingLands) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 0x5C);
  std::span<std::byte> dst = Buffer(64, 0x00);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const SendRequest w = Write(1, SgeOf(*local, 0, 64), *remote, 0, /*signaled=*/false);
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  qa->ToError();
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kFlushed);  // unsignaled, but flushes always complete
  EXPECT_TRUE(AllBytes(dst, 0));
  EXPECT_EQ(Events(0).size(), 0u) << "ToError is deliberate: no kQpError event";
  EXPECT_EQ(Events(1).size(), 0u) << "the peer learns of a fence only by its failing work";
}

TEST_F(LoopbackTest, RemoteAccessErrorAlsoErrorsTheResponderQp) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 0x5C);
  std::span<std::byte> dst = Buffer(64, 0x00);
  std::span<std::byte> inbox = Buffer(64);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  MemoryRegion* inbox_mr = Reg(1, inbox, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && inbox_mr && qa && qb);
  const RecvRequest recv{.wr_id = 9, .sge = SgeOf(*inbox_mr, 0, 64)};
  ASSERT_TRUE(qb->PostRecv({&recv, 1}).ok());
  SendRequest w = Write(1, SgeOf(*local, 0, 64), *remote, 0);
  w.rkey += 1;
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kRemoteAccessError);
  EXPECT_EQ(qa->state(), QpState::kError);
  EXPECT_EQ(qb->state(), QpState::kError);
  auto ea = Events(0);
  ASSERT_EQ(ea.size(), 1u);
  EXPECT_EQ(ea[0].type, EventType::kQpError);
  EXPECT_EQ(ea[0].qp, qa->id());
  EXPECT_EQ(ea[0].peer, 1u);
  auto eb = Events(1);
  ASSERT_EQ(eb.size(), 1u);
  EXPECT_EQ(eb[0].type, EventType::kQpError);
  EXPECT_EQ(eb[0].qp, qb->id());
  auto flushed = PollOnce(1);
  ASSERT_TRUE(flushed.has_value());
  EXPECT_EQ(flushed->status, WcStatus::kFlushed);
  EXPECT_EQ(flushed->wr_id, 9u);
}

TEST_F(LoopbackTest, InlineWithABadLkeyCompletesWithProtectionError) {
  Init(2);
  std::span<std::byte> src = Buffer(32, 0x5C);
  std::span<std::byte> dst = Buffer(32, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  SendRequest w = Write(1, SgeOf(*local, 0, 32), *remote, 0);
  w.inline_data = true;
  w.sge[0].lkey ^= 0xFFFFu;
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kLocalProtectionError);
  EXPECT_TRUE(AllBytes(dst, 0));
}

TEST_F(LoopbackTest, RnrRetriesAreProgressStepsAndFindALateReceive) {
  LoopbackOptions options;
  options.rnr_retry_steps = 3;
  Init(2, options);
  std::span<std::byte> src = Buffer(16, 0x5C);
  std::span<std::byte> inbox = Buffer(16);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* inbox_mr = Reg(1, inbox, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && inbox_mr && qa && qb);
  // No receive: the first attempt and 3 retries are 4 progress steps, then kRnrRetryExceeded.
  const SendRequest s = Send(1, SgeOf(*local, 0, 16));
  ASSERT_TRUE(qa->PostSend({&s, 1}).ok());
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(PollOnce(0).has_value()) << "step " << i;
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kRnrRetryExceeded);

  // A receive posted while the sender retries is found.
  auto [qa2, qb2] = Connect(0, 1);
  ASSERT_TRUE(qa2 && qb2);
  ASSERT_TRUE(qa2->PostSend({&s, 1}).ok());
  EXPECT_FALSE(PollOnce(0).has_value());
  EXPECT_FALSE(PollOnce(0).has_value());
  const RecvRequest recv{.wr_id = 5, .sge = SgeOf(*inbox_mr, 0, 16)};
  ASSERT_TRUE(qb2->PostRecv({&recv, 1}).ok());
  c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kSuccess);
  auto r = PollOnce(1);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->wr_id, 5u);
  EXPECT_EQ(r->bytes, 16u);
  EXPECT_TRUE(Equal(inbox, src));
}

TEST_F(LoopbackTest, PostRecvBeyondTheQueueIsResourceExhausted) {
  LoopbackOptions options;
  options.limits.max_recv_wr = 4;
  Init(2, options);
  std::span<std::byte> inbox = Buffer(64);
  MemoryRegion* inbox_mr = Reg(1, inbox, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(inbox_mr && qa && qb);
  std::vector<RecvRequest> recvs(6, RecvRequest{.wr_id = 0, .sge = SgeOf(*inbox_mr, 0, 64)});
  size_t posted = 0;
  EXPECT_EQ(qb->PostRecv(recvs, &posted).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(posted, 4u);
}

TEST_F(LoopbackTest, DestroyingAQpDiscardsItsUnpolledCompletions) {
  Init(3);
  std::span<std::byte> src = Buffer(64, 1);
  std::span<std::byte> d1 = Buffer(64);
  std::span<std::byte> d2 = Buffer(64);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(local && r1 && r2 && q01 && q10 && q02 && q20);
  const SendRequest w1 = Write(1, SgeOf(*local, 0, 64), *r1, 0);
  const SendRequest w2 = Write(2, SgeOf(*local, 0, 64), *r2, 0);
  ASSERT_TRUE(q01->PostSend({&w1, 1}).ok());
  ASSERT_TRUE(q02->PostSend({&w2, 1}).ok());
  EXPECT_EQ(F(0).PollCompletions({}), 0u);  // a progress step that returns nothing
  EXPECT_TRUE(Equal(d1, src));
  EXPECT_TRUE(Equal(d2, src));
  const uint32_t q02_id = q02->id();
  qps_.erase(qps_.begin());  // q01
  auto c = PollN(0, 1);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].wr_id, 2u);
  EXPECT_EQ(c[0].qp, q02_id);
  EXPECT_FALSE(PollOnce(0).has_value());
  auto events = Events(1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, EventType::kDisconnected);
  EXPECT_EQ(events[0].qp, q10->id());
}

TEST_F(LoopbackTest, CqOverrunRaisesDeviceErrorAndErrorsEveryQp) {
  LoopbackOptions options;
  options.limits.cq_depth = 4;
  Init(3, options);
  std::span<std::byte> src = Buffer(64, 1);
  std::span<std::byte> dst = Buffer(64);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  auto [qc, qd] = Connect(0, 2);
  ASSERT_TRUE(local && remote && qa && qb && qc && qd);
  std::vector<SendRequest> writes(6, Write(0, SgeOf(*local, 0, 64), *remote, 0));
  for (size_t i = 0; i < writes.size(); ++i) writes[i].wr_id = i;
  ASSERT_TRUE(qa->PostSend(writes).ok());
  EXPECT_EQ(F(0).PollCompletions({}), 0u);  // executes all six into a CQ of four
  auto events = Events(0);
  ASSERT_EQ(events.size(), 1u) << "one kDeviceError per overrun";
  EXPECT_EQ(events[0].type, EventType::kDeviceError);
  EXPECT_NE(events[0].detail.find("overrun"), std::string::npos) << events[0].detail;
  EXPECT_EQ(qa->state(), QpState::kError);
  EXPECT_EQ(qc->state(), QpState::kError);
  std::vector<Completion> out(16);
  EXPECT_EQ(F(0).PollCompletions(out), 4u);
}

}  // namespace
}  // namespace ft::verbs::loopback_test
