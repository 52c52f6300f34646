// Loopback-only behaviour of the loopback fabric: when exactly work executes, fault injection
// (kill, revive, partition, delays, torn writes), CQ overrun, concurrency and a throughput sanity
// run. What every backend shares is in fabric_conformance.cc. No test sleeps; every wait has a
// deadline.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/check.h"
#include "common/clock.h"
#include "test/work_requests.h"
#include "verbs/fabric.h"
#include "verbs/loopback/loopback.h"

namespace ft::verbs {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr uint32_t kTargetAccess = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;
constexpr Nanos kDeadline = seconds(10);

bool AllBytes(std::span<const std::byte> a, uint8_t value) {
  return std::all_of(a.begin(), a.end(), [&](std::byte b) { return b == std::byte{value}; });
}

bool Equal(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

void FillPattern(std::span<std::byte> buffer, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::byte& b : buffer) b = static_cast<std::byte>(rng());
}

using test::Send;
using test::SgeOf;
using test::Write;

class LoopbackTest : public ::testing::Test {
 protected:
  void Init(int nodes, LoopbackOptions options = {}) {
    auto network = LoopbackNetwork::Create(nodes, options);
    ASSERT_TRUE(network.ok()) << network.status();
    network_ = std::move(network).value();
  }

  LoopbackNetwork& net() { return *network_; }
  std::string Seed() const { return network_->seed_description(); }

  Fabric& F(NodeId id) {
    auto& fabric = fabrics_[id];
    if (fabric == nullptr) {
      auto created = network_->CreateFabric(id);
      EXPECT_TRUE(created.ok()) << created.status();
      if (!created.ok()) std::abort();
      fabric = std::move(created).value();
    }
    return *fabric;
  }

  // Replaces node id's Fabric (after Revive); the old one lives on until the end of the test.
  Fabric& Recreate(NodeId id) {
    old_fabrics_.push_back(std::move(fabrics_[id]));
    return F(id);
  }

  std::span<std::byte> Buffer(size_t bytes, uint8_t fill = 0) {
    buffers_.emplace_back(bytes, std::byte{fill});
    return buffers_.back();
  }

  MemoryRegion* Reg(NodeId id, std::span<std::byte> buffer, uint32_t access) {
    auto mr = F(id).RegisterMemory(buffer.data(), buffer.size(), access);
    EXPECT_TRUE(mr.ok()) << mr.status();
    if (!mr.ok()) return nullptr;
    regions_.push_back(std::move(mr).value());
    return regions_.back().get();
  }

  std::pair<QueuePair*, QueuePair*> Connect(NodeId a, NodeId b) {
    Fabric& fa = F(a);
    Fabric& fb = F(b);
    Result<std::vector<std::unique_ptr<QueuePair>>> rb = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{a, {}, {}};
      rb = fb.Connect({&request, 1}, kDeadline);
    });
    const ConnectRequest request{b, {}, {}};
    auto ra = fa.Connect({&request, 1}, kDeadline);
    peer.join();
    EXPECT_TRUE(ra.ok() && rb.ok()) << ra.status() << " / " << rb.status();
    if (!ra.ok() || !rb.ok()) return {nullptr, nullptr};
    qps_.push_back(std::move(ra->front()));
    qps_.push_back(std::move(rb->front()));
    return {qps_[qps_.size() - 2].get(), qps_.back().get()};
  }

  // One PollCompletions call; the completion if it returned one.
  std::optional<Completion> PollOnce(NodeId id) {
    Completion c;
    if (F(id).PollCompletions({&c, 1}) == 1) return c;
    return std::nullopt;
  }

  std::optional<Completion> PollOne(NodeId id, Nanos within = kDeadline) {
    const auto deadline = steady_clock::now() + within;
    while (true) {
      if (auto c = PollOnce(id)) return c;
      if (steady_clock::now() >= deadline) return std::nullopt;
      F(id).WaitForActivity(milliseconds(5));
    }
  }

  std::vector<Completion> PollN(NodeId id, size_t count) {
    std::vector<Completion> out;
    while (out.size() < count) {
      auto c = PollOne(id);
      if (!c) break;
      out.push_back(*c);
    }
    return out;
  }

  std::vector<Event> Events(NodeId id) {
    std::vector<Event> out(64);
    out.resize(F(id).PollEvents(out));
    return out;
  }

  std::deque<std::vector<std::byte>> buffers_;
  std::unique_ptr<LoopbackNetwork> network_;
  std::vector<std::unique_ptr<Fabric>> old_fabrics_;
  std::map<NodeId, std::unique_ptr<Fabric>> fabrics_;
  std::vector<std::unique_ptr<MemoryRegion>> regions_;
  std::vector<std::unique_ptr<QueuePair>> qps_;
};

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

// ---------------------------------------------------------------------------------------------
// Faults: kill, revive, partition

TEST_F(LoopbackTest, KillDisconnectsPeersStopsTheNodeAndFailsWorkToIt) {
  Init(3);
  std::span<std::byte> s0 = Buffer(64, 0xA0);
  std::span<std::byte> s1 = Buffer(64, 0xA1);
  std::span<std::byte> d1 = Buffer(64, 0);
  std::span<std::byte> d2 = Buffer(64, 0);
  MemoryRegion* l0 = Reg(0, s0, kAccessLocalWrite);
  MemoryRegion* l1 = Reg(1, s1, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q12, q21] = Connect(1, 2);
  ASSERT_TRUE(l0 && l1 && r1 && r2 && q01 && q10 && q12 && q21);
  const SendRequest to1[] = {Write(1, SgeOf(*l0, 0, 64), *r1, 0, false),
                             Write(2, SgeOf(*l0, 0, 64), *r1, 0, false)};
  ASSERT_TRUE(q01->PostSend(to1).ok());
  const SendRequest from1 = Write(3, SgeOf(*l1, 0, 64), *r2, 0);
  ASSERT_TRUE(q12->PostSend({&from1, 1}).ok());

  net().Kill(1);
  EXPECT_FALSE(net().alive(1));
  // Peers hear at once, without a progress step.
  for (auto [node, qp] : {std::pair{NodeId{0}, q01}, std::pair{NodeId{2}, q21}}) {
    auto events = Events(node);
    ASSERT_EQ(events.size(), 1u) << "node " << node;
    EXPECT_EQ(events[0].type, EventType::kDisconnected);
    EXPECT_EQ(events[0].peer, 1u);
    EXPECT_EQ(events[0].qp, qp->id());
  }
  // The killed node hears kDeviceError, executes nothing more and refuses new work.
  auto own = Events(1);
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].type, EventType::kDeviceError);
  EXPECT_EQ(own[0].detail, "node killed");
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(PollOnce(1).has_value());
  EXPECT_TRUE(AllBytes(d2, 0));
  EXPECT_EQ(q12->PostSend({&from1, 1}).code(), StatusCode::kUnavailable);
  EXPECT_EQ(q12->state(), QpState::kError);
  EXPECT_EQ(F(1).RegisterMemory(d1.data(), d1.size(), kTargetAccess).status().code(),
            StatusCode::kUnavailable);
  // Work queued to it: the first request per QP kRetryExceeded, the rest kFlushed.
  auto c = PollN(0, 2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].wr_id, 1u);
  EXPECT_EQ(c[0].status, WcStatus::kRetryExceeded);
  EXPECT_EQ(c[1].wr_id, 2u);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  EXPECT_TRUE(AllBytes(d1, 0));
  EXPECT_EQ(q01->state(), QpState::kError);
  // Connecting to a dead node fails at once, naming it.
  const ConnectRequest to_dead[] = {{1, {}, {}}};
  auto connect = F(0).Connect(to_dead, kDeadline);
  EXPECT_EQ(connect.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(connect.status().message().find('1'), std::string_view::npos);
  EXPECT_EQ(net().CreateFabric(1).status().code(), StatusCode::kFailedPrecondition);

  // Revive: a replacement process gets a new Fabric; the old QPs stay dead.
  net().Revive(1);
  EXPECT_TRUE(net().alive(1));
  Fabric& reborn = Recreate(1);
  EXPECT_EQ(reborn.node(), 1u);
  std::span<std::byte> fresh = Buffer(64, 0);
  MemoryRegion* fresh_mr = Reg(1, fresh, kTargetAccess);
  auto [n01, n10] = Connect(0, 1);
  ASSERT_TRUE(fresh_mr && n01 && n10);
  const SendRequest again = Write(4, SgeOf(*l0, 0, 64), *fresh_mr, 0);
  ASSERT_TRUE(n01->PostSend({&again, 1}).ok());
  auto ok = PollOnce(0);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, WcStatus::kSuccess);
  EXPECT_TRUE(AllBytes(fresh, 0xA0));
  EXPECT_EQ(q01->state(), QpState::kError);
  EXPECT_EQ(q10->state(), QpState::kError);
}

TEST_F(LoopbackTest, ConnectWaitingForANodeThatDiesFailsUnavailable) {
  Init(3);
  Result<std::vector<std::unique_ptr<QueuePair>>> result = Status::Internal("not run");
  Fabric& f0 = F(0);
  std::thread waiter([&] {
    const ConnectRequest requests[] = {{2, {}, {}}};
    result = f0.Connect(requests, seconds(30));
  });
  net().Kill(2);
  waiter.join();
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status();
}

TEST_F(LoopbackTest, NodeKilledWhileConnectingFailsAndItsReplacementConnects) {
  Init(2);
  Result<std::vector<std::unique_ptr<QueuePair>>> result = Status::Internal("not run");
  Fabric& f1 = F(1);
  std::thread waiter([&] {
    const ConnectRequest requests[] = {{0, {}, {}}};
    result = f1.Connect(requests, seconds(30));
  });
  net().Kill(1);
  waiter.join();
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status();
  net().Revive(1);
  Recreate(1);
  auto [q01, q10] = Connect(0, 1);
  ASSERT_TRUE(q01 && q10);
  EXPECT_EQ(q01->state(), QpState::kConnected);
}

TEST_F(LoopbackTest, DestroyingAFabricWithLiveQpsIsGraceful) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 1);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && qa && qb);
  fabrics_.erase(1);  // leaves with qb still alive (a warning is logged)
  auto events = Events(0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, EventType::kDisconnected);
  EXPECT_EQ(qb->state(), QpState::kError);
  const SendRequest s = Send(1, SgeOf(*local, 0, 8));
  EXPECT_EQ(qb->PostSend({&s, 1}).code(), StatusCode::kUnavailable);
}

TEST_F(LoopbackTest, PartitionFailsWorkBetweenTheTwoUntilHealed) {
  Init(3);
  std::span<std::byte> src = Buffer(64, 0x77);
  std::span<std::byte> d1 = Buffer(64, 0);
  std::span<std::byte> d2 = Buffer(64, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(local && r1 && r2 && q01 && q10 && q02 && q20);
  net().Partition(0, 1);
  const SendRequest w1 = Write(1, SgeOf(*local, 0, 64), *r1, 0);
  const SendRequest w2 = Write(2, SgeOf(*local, 0, 64), *r2, 0);
  ASSERT_TRUE(q01->PostSend({&w1, 1}).ok());
  ASSERT_TRUE(q02->PostSend({&w2, 1}).ok());
  auto c = PollN(0, 2);
  ASSERT_EQ(c.size(), 2u);
  for (const Completion& completion : c) {
    EXPECT_EQ(completion.status,
              completion.wr_id == 1 ? WcStatus::kRetryExceeded : WcStatus::kSuccess);
  }
  EXPECT_TRUE(AllBytes(d1, 0));
  EXPECT_TRUE(Equal(d2, src));
  EXPECT_EQ(q01->state(), QpState::kError);
  // The failed QP stays in error after Heal; a new one works.
  net().Heal(0, 1);
  auto [n01, n10] = Connect(0, 1);
  ASSERT_TRUE(n01 && n10);
  ASSERT_TRUE(n01->PostSend({&w1, 1}).ok());
  auto ok = PollOne(0);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, WcStatus::kSuccess);
  EXPECT_TRUE(Equal(d1, src));
  EXPECT_EQ(q01->state(), QpState::kError);
}

// ---------------------------------------------------------------------------------------------
// Torn writes

struct TornOutcome {
  std::vector<size_t> landed;  // per WRITE: bytes landed
  bool consistent = true;      // every slice = a prefix of its source + untouched rest
};

// Node `poster` queues `count` WRITEs of `bytes` each to node `target`, then `victim` is killed.
TornOutcome RunTornWrites(uint64_t seed, NodeId victim, bool deregister_target, bool torn = true) {
  constexpr NodeId kPoster = 0;
  constexpr NodeId kTarget = 1;
  constexpr int kCount = 8;
  constexpr size_t kBytes = 4096;
  constexpr uint8_t kUntouched = 0xEE;
  LoopbackOptions options;
  options.seed = seed;
  auto network = LoopbackNetwork::Create(2, options);
  FT_CHECK(network.ok());
  std::vector<std::byte> src(kCount * kBytes);
  FillPattern(src, seed);
  std::vector<std::byte> dst(kCount * kBytes, std::byte{kUntouched});
  TornOutcome outcome;
  {
    auto poster = std::move((*network)->CreateFabric(kPoster)).value();
    auto target = std::move((*network)->CreateFabric(kTarget)).value();
    auto local =
        std::move(poster->RegisterMemory(src.data(), src.size(), kAccessLocalWrite)).value();
    auto remote = std::move(target->RegisterMemory(dst.data(), dst.size(), kTargetAccess)).value();
    Result<std::vector<std::unique_ptr<QueuePair>>> rt = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{kPoster, {}, {}};
      rt = target->Connect({&request, 1}, kDeadline);
    });
    const ConnectRequest request{kTarget, {}, {}};
    auto rp = poster->Connect({&request, 1}, kDeadline);
    peer.join();
    FT_CHECK(rp.ok() && rt.ok());
    std::vector<SendRequest> writes;
    for (int i = 0; i < kCount; ++i) {
      writes.push_back(Write(i, SgeOf(*local, i * kBytes, kBytes), *remote, i * kBytes));
    }
    FT_CHECK(rp->front()->PostSend(writes).ok());
    (*network)->SetTornWrites(torn);
    if (deregister_target) remote.reset();
    (*network)->Kill(victim);
    // After the kill nothing more lands, whoever polls.
    const std::vector<std::byte> at_kill = dst;
    Completion c[kCount];
    poster->PollCompletions(c);
    target->PollCompletions(c);
    if (at_kill != dst) outcome.consistent = false;
  }
  for (int i = 0; i < kCount; ++i) {
    std::span<const std::byte> s(src.data() + i * kBytes, kBytes);
    std::span<const std::byte> d(dst.data() + i * kBytes, kBytes);
    size_t prefix = 0;
    while (prefix < kBytes && d[prefix] == s[prefix]) ++prefix;
    if (!AllBytes(d.subspan(prefix), kUntouched)) outcome.consistent = false;
    // The longest matching prefix may overshoot by bytes equal to kUntouched; trim them.
    while (prefix > 0 && s[prefix - 1] == std::byte{kUntouched}) --prefix;
    outcome.landed.push_back(prefix);
  }
  return outcome;
}

TEST(LoopbackTornWritesTest, KillLandsASeededPrefixOfEveryQueuedWrite) {
  int partial = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    for (NodeId victim : {NodeId{0}, NodeId{1}}) {
      SCOPED_TRACE(StrCat("loopback seed=", seed, " victim=", victim));
      const TornOutcome first = RunTornWrites(seed, victim, false);
      EXPECT_TRUE(first.consistent) << "a slice is not (prefix of source + untouched)";
      for (size_t landed : first.landed) partial += landed > 0 && landed < 4096;
      const TornOutcome again = RunTornWrites(seed, victim, false);
      EXPECT_EQ(first.landed, again.landed) << "the same seed must tear the same way";
    }
  }
  EXPECT_GT(partial, 0) << "no WRITE was torn mid-way in 320 tries";
}

TEST(LoopbackTornWritesTest, NothingLandsWithoutTornWritesOrIntoDeregisteredMemory) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(StrCat("loopback seed=", seed));
    const TornOutcome off = RunTornWrites(seed, 0, false, /*torn=*/false);
    EXPECT_TRUE(off.consistent);
    for (size_t landed : off.landed) EXPECT_EQ(landed, 0u);
    const TornOutcome deregistered = RunTornWrites(seed, 1, /*deregister_target=*/true);
    EXPECT_TRUE(deregistered.consistent);
    for (size_t landed : deregistered.landed) EXPECT_EQ(landed, 0u);
  }
}

// ---------------------------------------------------------------------------------------------
// Delays

TEST_F(LoopbackTest, DelayedRequestExecutesAfterThatManyProgressSteps) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 0x42);
  std::span<std::byte> dst = Buffer(64, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  net().SetDelay(0, 1, 3);
  const SendRequest w = Write(1, SgeOf(*local, 0, 64), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  for (int step = 1; step <= 3; ++step) {
    EXPECT_FALSE(PollOnce(0).has_value()) << "step " << step;
    EXPECT_TRUE(AllBytes(dst, 0)) << "step " << step;
  }
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value()) << "not executed after the 4th step";
  EXPECT_TRUE(Equal(dst, src));

  // A delayed head blocks the requests behind it, even undelayed ones.
  net().SetDelay(1, 0, 5);  // the pair is unordered
  const SendRequest first = Write(10, SgeOf(*local, 0, 8), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&first, 1}).ok());
  net().SetDelay(0, 1, 0);
  const SendRequest second = Write(11, SgeOf(*local, 0, 8), *remote, 8);
  ASSERT_TRUE(qa->PostSend({&second, 1}).ok());
  std::vector<uint64_t> order;
  for (int step = 1; step <= 8; ++step) {
    Completion done[4];
    const size_t n = F(0).PollCompletions(done);
    for (size_t i = 0; i < n; ++i) {
      order.push_back(done[i].wr_id);
      EXPECT_EQ(step, 6) << "wr_id " << done[i].wr_id << " ran at the wrong step";
    }
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{10, 11}));
}

TEST_F(LoopbackTest, RandomDelaysKeepPerQpOrder) {
  LoopbackOptions options;
  options.seed = 99;
  Init(3, options);
  SCOPED_TRACE(Seed());
  net().SetRandomDelays(4);
  constexpr int kWrites = 60;
  std::span<std::byte> src = Buffer(kWrites * 8);
  for (int i = 0; i < kWrites; ++i) std::memcpy(src.data() + i * 8, &i, sizeof(i));
  std::span<std::byte> d1 = Buffer(8);
  std::span<std::byte> d2 = Buffer(8);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(local && r1 && r2 && q01 && q10 && q02 && q20);
  for (int i = 0; i < kWrites; ++i) {
    // Every write to a target overwrites the same 8 bytes: the last one must win.
    const SendRequest w1 = Write(i, SgeOf(*local, i * 8, 8), *r1, 0);
    const SendRequest w2 = Write(1000 + i, SgeOf(*local, i * 8, 8), *r2, 0);
    ASSERT_TRUE(q01->PostSend({&w1, 1}).ok());
    ASSERT_TRUE(q02->PostSend({&w2, 1}).ok());
  }
  auto c = PollN(0, 2 * kWrites);
  ASSERT_EQ(c.size(), 2u * kWrites);
  uint64_t next1 = 0;
  uint64_t next2 = 1000;
  for (const Completion& completion : c) {
    EXPECT_EQ(completion.status, WcStatus::kSuccess);
    if (completion.qp == q01->id()) {
      EXPECT_EQ(completion.wr_id, next1++);
    } else {
      EXPECT_EQ(completion.wr_id, next2++);
    }
  }
  int last1 = -1;
  int last2 = -1;
  std::memcpy(&last1, d1.data(), sizeof(last1));
  std::memcpy(&last2, d2.data(), sizeof(last2));
  EXPECT_EQ(last1, kWrites - 1);
  EXPECT_EQ(last2, kWrites - 1);
}

// ---------------------------------------------------------------------------------------------
// Connect at scale, concurrency and throughput

TEST_F(LoopbackTest, FullMeshOfConcurrentBatchesInRandomOrderConnects) {
  constexpr NodeId kNodes = 12;
  Init(kNodes);
  for (NodeId id = 0; id < kNodes; ++id) F(id);
  std::vector<Result<std::vector<std::unique_ptr<QueuePair>>>> results;
  for (NodeId id = 0; id < kNodes; ++id) results.emplace_back(Status::Internal("not run"));
  std::vector<std::thread> threads;
  for (NodeId id = 0; id < kNodes; ++id) {
    threads.emplace_back([&, id] {
      std::vector<ConnectRequest> requests;
      for (NodeId peer = 0; peer < kNodes; ++peer) {
        if (peer != id) requests.push_back({peer, {std::byte{static_cast<uint8_t>(id)}}, {}});
      }
      std::shuffle(requests.begin(), requests.end(), std::mt19937_64(id));
      results[id] = fabrics_[id]->Connect(requests, kDeadline);
    });
  }
  for (auto& t : threads) t.join();
  for (NodeId id = 0; id < kNodes; ++id) {
    ASSERT_TRUE(results[id].ok()) << "node " << id << ": " << results[id].status();
    ASSERT_EQ(results[id]->size(), kNodes - 1);
    for (auto& qp : *results[id]) {
      ASSERT_EQ(qp->peer_private_data().size(), 1u);
      EXPECT_EQ(qp->peer_private_data()[0], std::byte{static_cast<uint8_t>(qp->peer())});
      qps_.push_back(std::move(qp));
    }
  }
}

TEST_F(LoopbackTest, ConcurrentWritersRaceADeregistration) {
  constexpr int kWriters = 8;
  constexpr size_t kSlice = 64 << 10;
  constexpr int kMaxIterations = 3000;
  Init(kWriters + 1);
  std::span<std::byte> steady = Buffer(kWriters * kSlice);
  auto doomed = std::make_unique<std::byte[]>(kWriters * kSlice);
  MemoryRegion* steady_mr = Reg(0, steady, kTargetAccess);
  auto doomed_mr_or = F(0).RegisterMemory(doomed.get(), kWriters * kSlice, kTargetAccess);
  ASSERT_TRUE(steady_mr && doomed_mr_or.ok());
  std::unique_ptr<MemoryRegion> doomed_mr = std::move(doomed_mr_or).value();
  const RemoteRegion doomed_remote{.addr = reinterpret_cast<uintptr_t>(doomed.get()),
                                   .length = kWriters * kSlice,
                                   .rkey = doomed_mr->rkey()};

  // Node 0 connects to all writers in one batch.
  std::vector<QueuePair*> writer_qp(kWriters + 1);
  {
    for (NodeId id = 0; id <= kWriters; ++id) F(id);
    std::vector<std::thread> threads;
    std::vector<Result<std::vector<std::unique_ptr<QueuePair>>>> results;
    for (int i = 0; i <= kWriters; ++i) results.emplace_back(Status::Internal("not run"));
    for (NodeId id = 0; id <= kWriters; ++id) {
      threads.emplace_back([&, id] {
        std::vector<ConnectRequest> requests;
        if (id == 0) {
          for (NodeId w = 1; w <= kWriters; ++w) requests.push_back({w, {}, {}});
        } else {
          requests.push_back({0, {}, {}});
        }
        results[id] = fabrics_[id]->Connect(requests, kDeadline);
      });
    }
    for (auto& t : threads) t.join();
    for (NodeId id = 0; id <= kWriters; ++id) {
      ASSERT_TRUE(results[id].ok()) << results[id].status();
      for (auto& qp : *results[id]) {
        if (id != 0) writer_qp[id] = qp.get();
        qps_.push_back(std::move(qp));
      }
    }
  }
  std::vector<std::vector<std::byte>> sources(kWriters + 1, std::vector<std::byte>(kSlice));
  std::vector<std::unique_ptr<MemoryRegion>> source_mrs(kWriters + 1);
  for (NodeId id = 1; id <= kWriters; ++id) {
    auto mr = F(id).RegisterMemory(sources[id].data(), kSlice, kAccessLocalWrite);
    ASSERT_TRUE(mr.ok());
    source_mrs[id] = std::move(mr).value();
  }

  std::atomic<int> iterations{0};
  std::vector<int> last_iteration(kWriters + 1, -1);
  std::vector<WcStatus> final_status(kWriters + 1, WcStatus::kSuccess);
  std::vector<std::thread> writers;
  for (NodeId id = 1; id <= kWriters; ++id) {
    writers.emplace_back([&, id] {
      Fabric& fabric = *fabrics_[id];
      const size_t offset = (id - 1) * kSlice;
      const auto deadline = steady_clock::now() + seconds(20);
      for (int it = 0; it < kMaxIterations && steady_clock::now() < deadline; ++it) {
        std::fill(sources[id].begin(), sources[id].end(), static_cast<std::byte>(it));
        SendRequest to_steady = Write(2 * it, SgeOf(*source_mrs[id], 0, kSlice), *steady_mr, offset,
                                      /*signaled=*/false);
        SendRequest to_doomed = to_steady;
        to_doomed.wr_id = 2 * it + 1;
        to_doomed.remote_addr = doomed_remote.addr + offset;
        to_doomed.rkey = doomed_remote.rkey;
        to_doomed.signaled = true;
        const SendRequest both[] = {to_steady, to_doomed};
        if (!writer_qp[id]->PostSend(both).ok()) return;
        last_iteration[id] = it;
        Completion c;
        while (fabric.PollCompletions({&c, 1}) == 0) {
          if (steady_clock::now() >= deadline) return;
        }
        iterations.fetch_add(1);
        if (c.status != WcStatus::kSuccess) {
          final_status[id] = c.status;
          return;
        }
      }
    });
  }
  // Deregister while the writers are running.
  const auto deadline = steady_clock::now() + seconds(20);
  while (iterations.load() < kWriters * 20 && steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  doomed_mr.reset();  // must wait out any copy into it
  std::memset(doomed.get(), 0x5A, kWriters * kSlice);
  for (auto& t : writers) t.join();
  EXPECT_TRUE(AllBytes({doomed.get(), kWriters * kSlice}, 0x5A))
      << "a WRITE landed after its region was deregistered";
  int failed = 0;
  for (NodeId id = 1; id <= kWriters; ++id) {
    SCOPED_TRACE(StrCat("writer ", id));
    if (final_status[id] != WcStatus::kSuccess) {
      ++failed;
      EXPECT_EQ(final_status[id], WcStatus::kRemoteAccessError);
    }
    // The unsignaled WRITE before the last signaled one landed in the steady region.
    ASSERT_GE(last_iteration[id], 0);
    EXPECT_TRUE(AllBytes(steady.subspan((id - 1) * kSlice, kSlice),
                         static_cast<uint8_t>(last_iteration[id])));
  }
  EXPECT_GT(failed, 0) << "no writer saw the deregistration";
  std::cout << "[ info     ] " << iterations.load() << " iterations of " << kWriters << " writers; "
            << failed << " saw kRemoteAccessError\n";
}

TEST_F(LoopbackTest, ThroughputSanity) {
  constexpr size_t kBlock = 1 << 20;
  constexpr size_t kBlocks = 64;
  constexpr size_t kTotal = 512 << 20;
  constexpr int kSignalEvery = 16;
  Init(2);
  std::span<std::byte> src = Buffer(kBlocks * kBlock);
  FillPattern(src.first(4096), 7);
  std::span<std::byte> dst = Buffer(kBlocks * kBlock);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const size_t window = std::min<size_t>(F(0).limits().max_send_wr, 256);
  size_t posted = 0;
  size_t completed = 0;  // requests known retired
  const auto start = steady_clock::now();
  const auto deadline = start + seconds(60);
  while (completed < kTotal / kBlock && steady_clock::now() < deadline) {
    while (posted < kTotal / kBlock && posted - completed < window) {
      const size_t block = posted % kBlocks;
      const bool signaled = (posted + 1) % kSignalEvery == 0 || posted + 1 == kTotal / kBlock;
      const SendRequest w =
          Write(posted, SgeOf(*local, block * kBlock, kBlock), *remote, block * kBlock, signaled);
      ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
      ++posted;
    }
    Completion c[16];
    const size_t n = F(0).PollCompletions(c);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(c[i].status, WcStatus::kSuccess);
      completed = c[i].wr_id + 1;
    }
  }
  const double secs = SecondsBetween(Nanos(0), steady_clock::now() - start);
  ASSERT_EQ(completed, kTotal / kBlock);
  EXPECT_TRUE(Equal(dst.first(4096), src.first(4096)));
  std::cout << "[ info     ] loopback WRITE " << kTotal / (1 << 20)
            << " MiB in 1 MiB requests: " << (static_cast<double>(kTotal) / secs / 1e9)
            << " GB/s\n";
}

}  // namespace
}  // namespace ft::verbs
