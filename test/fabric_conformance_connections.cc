// Fabric conformance (see fabric_conformance.h): errors and fencing, peers going away, Connect,
// and WaitForActivity / Interrupt.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "test/fabric_conformance.h"
#include "test/fabric_conformance_checks.h"

namespace ft::verbs::conformance {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Errors, fencing and peers going away

TEST_P(FabricConformanceTest, FailureMovesTheQpToErrorWithAnEvent) {
  std::span<std::byte> src = PatternBuffer(64, 17);
  std::span<std::byte> dst = Buffer(64);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  SendRequest bad = Write(1, SgeOf(*local, 0, 64), *remote, 0, /*signaled=*/false);
  bad.rkey ^= 0x1234u;
  const SendRequest later[] = {Write(2, SgeOf(*local, 0, 64), *remote, 0, false),
                               Write(3, SgeOf(*local, 0, 64), *remote, 0, true)};
  ASSERT_TRUE(qa->PostSend({&bad, 1}).ok());
  ASSERT_TRUE(qa->PostSend(later).ok());
  // Failures always complete, signaled or not; everything after reports kFlushed.
  auto c = PollN(0, 3);
  ASSERT_EQ(c.size(), 3u);
  EXPECT_EQ(c[0].wr_id, 1u);
  EXPECT_EQ(c[0].status, WcStatus::kRemoteAccessError);
  EXPECT_EQ(c[1].wr_id, 2u);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  EXPECT_EQ(c[2].wr_id, 3u);
  EXPECT_EQ(c[2].status, WcStatus::kFlushed);
  EXPECT_TRUE(WaitEvent(0, EventType::kQpError, qa->id()).has_value());
  // Posting on a QP in error is allowed and completes flushed.
  ASSERT_TRUE(qa->PostSend({&later[1], 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kFlushed);
  EXPECT_TRUE(AllBytes(dst, 0));
}

TEST_P(FabricConformanceTest, ToErrorFencesThePeer) {
  std::span<std::byte> src = PatternBuffer(4096, 18);
  std::span<std::byte> dst = Buffer(4096, 0x22);
  std::span<std::byte> inbox = Buffer(64);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  MemoryRegion* inbox_mr = Register(1, inbox, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && inbox_mr && qa && qb);
  const RecvRequest recv = Recv(77, SgeOf(*inbox_mr, 0, 64));
  ASSERT_TRUE(qb->PostRecv({&recv, 1}).ok());
  qb->ToError();
  EXPECT_EQ(qb->state(), QpState::kError);
  // Our posted receive is flushed.
  auto flushed = PollOne(1);
  EXPECT_WC(flushed, WcStatus::kFlushed);
  EXPECT_EQ(flushed->wr_id, 77u);
  // The peer's WRITE does not land; it fails for want of an answer.
  const SendRequest w = Write(1, SgeOf(*local, 0, 4096), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  auto c = PollOne(0, backend().SlowDeadline());
  EXPECT_WC(c, WcStatus::kRetryExceeded);
  EXPECT_TRUE(AllBytes(dst, 0x22));
  // Our own later work is flushed.
  const SendRequest mine = Write(2, SgeOf(*remote, 0, 8), *remote, 0);  // never executes
  ASSERT_TRUE(qb->PostSend({&mine, 1}).ok());
  EXPECT_WC(PollOne(1), WcStatus::kFlushed);
}

TEST_P(FabricConformanceTest, PeerDestroyingItsQpDisconnectsUs) {
  std::span<std::byte> src = PatternBuffer(64, 19);
  std::span<std::byte> dst = Buffer(64, 0x33);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  Handles(1).qps.clear();  // destroys qb
  auto event = WaitEvent(0, EventType::kDisconnected, qa->id());
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->peer, 1u);
  const SendRequest w[] = {Write(1, SgeOf(*local, 0, 64), *remote, 0),
                           Write(2, SgeOf(*local, 0, 64), *remote, 0)};
  ASSERT_TRUE(qa->PostSend(w).ok());
  auto c = PollN(0, 2, backend().SlowDeadline());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_TRUE(c[0].status == WcStatus::kRetryExceeded || c[0].status == WcStatus::kFlushed)
      << WcStatusName(c[0].status);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  EXPECT_EQ(qa->state(), QpState::kError);
  EXPECT_TRUE(AllBytes(dst, 0x33));
}

TEST_P(FabricConformanceTest, PeerKilledDisconnectsUsAndFailsOurWork) {
  std::span<std::byte> src = PatternBuffer(64, 20);
  std::span<std::byte> dst = Buffer(64, 0x44);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  auto [qa2, qc] = Connect(0, 2);
  ASSERT_TRUE(local && remote && qa && qb && qa2 && qc);
  // Built before the kill: the backend may destroy the killed node's objects.
  const SendRequest both[] = {Write(1, SgeOf(*local, 0, 64), *remote, 0),
                              Write(2, SgeOf(*local, 0, 64), *remote, 0)};
  Kill(1);
  auto event = WaitEvent(0, EventType::kDisconnected, qa->id());
  ASSERT_TRUE(event.has_value());
  EXPECT_EQ(event->peer, 1u);
  ASSERT_TRUE(qa->PostSend(both).ok());
  auto c = PollN(0, 2, backend().SlowDeadline());
  ASSERT_EQ(c.size(), 2u);
  EXPECT_TRUE(c[0].status == WcStatus::kRetryExceeded || c[0].status == WcStatus::kFlushed)
      << WcStatusName(c[0].status);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  EXPECT_TRUE(AllBytes(dst, 0x44));
  // The other peer is unaffected.
  std::span<std::byte> other = Buffer(64);
  MemoryRegion* other_mr = Register(2, other, kTargetAccess);
  ASSERT_NE(other_mr, nullptr);
  const SendRequest ok = Write(3, SgeOf(*local, 0, 64), *other_mr, 0);
  ASSERT_TRUE(qa2->PostSend({&ok, 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kSuccess);
  EXPECT_TRUE(Equal(other, src));
}

// ---------------------------------------------------------------------------------------------
// Connect

TEST_P(FabricConformanceTest, ConnectTimesOutNamingTheAbsentPeer) {
  const ConnectRequest requests[] = {{2, {}, {}}};
  auto result = Node(0).Connect(requests, milliseconds(200));
  EXPECT_EQ(result.status().code(), StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_NE(result.status().message().find('2'), std::string_view::npos) << result.status();
  // Nothing of the failed attempt lingers: a later Connect with a present peer works.
  auto [qa, qc] = Connect(0, 2, Bytes("fresh"), Bytes("also fresh"));
  ASSERT_TRUE(qa && qc);
  EXPECT_TRUE(Equal(qa->peer_private_data(), Bytes("also fresh")));
}

TEST_P(FabricConformanceTest, ConnectRejectsBadInput) {
  Fabric& fabric = Node(0);
  {
    const ConnectRequest self[] = {{0, {}, {}}};
    EXPECT_EQ(fabric.Connect(self, milliseconds(100)).status().code(),
              StatusCode::kInvalidArgument);
  }
  {
    const ConnectRequest far[] = {{static_cast<NodeId>(backend().nodes() + 5), {}, {}}};
    EXPECT_EQ(fabric.Connect(far, milliseconds(100)).status().code(), StatusCode::kInvalidArgument);
  }
  {
    const ConnectRequest big[] = {
        {1, std::vector<std::byte>(fabric.limits().max_private_data + 1), {}}};
    EXPECT_EQ(fabric.Connect(big, milliseconds(100)).status().code(), StatusCode::kInvalidArgument);
  }
  {
    std::span<std::byte> inbox = Buffer(16);
    MemoryRegion* inbox_mr = Register(0, inbox, kAccessLocalWrite);
    ASSERT_NE(inbox_mr, nullptr);
    const size_t too_many = static_cast<size_t>(fabric.limits().max_recv_wr) + 1;
    const ConnectRequest many[] = {
        {1, {}, std::vector<RecvRequest>(too_many, Recv(9, SgeOf(*inbox_mr, 0, 16)))}};
    const Status status = fabric.Connect(many, milliseconds(100)).status();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find("max_recv_wr"), std::string_view::npos) << status;
  }
  auto empty = fabric.Connect({}, milliseconds(100));
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE(empty->empty());
}

TEST_P(FabricConformanceTest, BatchesInAnyOrderConnectAndCarryPrivateData) {
  constexpr NodeId kNodes = 3;
  const size_t max_data = Node(0).limits().max_private_data;
  const auto data_for = [&](NodeId from, NodeId to) {
    std::vector<std::byte> data =
        Bytes("from " + std::to_string(from) + " to " + std::to_string(to));
    data.resize(std::min(max_data, data.size() + to * 8), std::byte{static_cast<uint8_t>(from)});
    return data;
  };
  for (NodeId id = 0; id < kNodes; ++id) Node(id);
  std::vector<Result<std::vector<std::unique_ptr<QueuePair>>>> results;
  for (NodeId id = 0; id < kNodes; ++id) results.emplace_back(Status::Internal("not run"));
  std::vector<std::thread> threads;
  for (NodeId id = 0; id < kNodes; ++id) {
    threads.emplace_back([&, id] {
      // Each node lists its peers in a different order.
      std::vector<ConnectRequest> requests;
      for (NodeId k = 1; k < kNodes; ++k) {
        const NodeId peer = (id + (id % 2 == 0 ? k : kNodes - k)) % kNodes;
        requests.push_back({peer, data_for(id, peer), {}});
      }
      results[id] = Handles(id).fabric->Connect(requests, kConnectTimeout);
    });
  }
  for (auto& t : threads) t.join();
  for (NodeId id = 0; id < kNodes; ++id) {
    SCOPED_TRACE(id);
    ASSERT_TRUE(results[id].ok()) << results[id].status();
    ASSERT_EQ(results[id]->size(), kNodes - 1);
    for (auto& qp : *results[id]) {
      EXPECT_NE(qp->peer(), id);
      EXPECT_EQ(qp->state(), QpState::kConnected);
      EXPECT_TRUE(Equal(qp->peer_private_data(), data_for(qp->peer(), id)));
      Handles(id).qps.push_back(std::move(qp));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// WaitForActivity / Interrupt

TEST_P(FabricConformanceTest, InterruptWakesWaitForActivity) {
  Fabric& fabric = Node(0);
  constexpr Nanos kLong = std::chrono::seconds(60);
  // Before the wait: the next wait returns early.
  fabric.Interrupt();
  auto start = steady_clock::now();
  fabric.WaitForActivity(kLong);
  EXPECT_LT(steady_clock::now() - start, kLong / 2);
  // During the wait, from another thread.
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    fabric.WaitForActivity(kLong);
    returned.store(true);
  });
  const auto deadline = steady_clock::now() + kDeadline;
  while (!returned.load() && steady_clock::now() < deadline) fabric.Interrupt();
  waiter.join();
  EXPECT_TRUE(returned.load());
  EXPECT_LT(steady_clock::now() - start, kLong / 2);
  // A short timeout with nothing to do returns.
  fabric.WaitForActivity(milliseconds(20));
}

TEST_P(FabricConformanceTest, ArrivingReceiveWakesWaitForActivity) {
  std::span<std::byte> src = PatternBuffer(32, 21);
  std::span<std::byte> inbox = Buffer(32);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* inbox_mr = Register(1, inbox, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && inbox_mr && qa && qb);
  const RecvRequest recv = Recv(1, SgeOf(*inbox_mr, 0, 32));
  ASSERT_TRUE(qb->PostRecv({&recv, 1}).ok());
  Fabric& receiver = Node(1);
  std::optional<Completion> got;
  std::thread waiter([&] {
    const auto deadline = steady_clock::now() + kDeadline;
    while (steady_clock::now() < deadline) {
      Completion c;
      if (receiver.PollCompletions({&c, 1}) == 1) {
        got = c;
        return;
      }
      receiver.WaitForActivity(std::chrono::seconds(30));
    }
  });
  const SendRequest send = Send(2, SgeOf(*local, 0, 32));
  ASSERT_TRUE(qa->PostSend({&send, 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kSuccess);
  waiter.join();
  EXPECT_WC(got, WcStatus::kSuccess);
  EXPECT_EQ(got->bytes, 32u);
  EXPECT_TRUE(Equal(inbox, src));
}

}  // namespace
}  // namespace ft::verbs::conformance
