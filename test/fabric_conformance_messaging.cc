// Fabric conformance (see fabric_conformance.h): SEND and RECV (order, sizes, RNR, receives
// posted with Connect).
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
// SEND / RECV

TEST_P(FabricConformanceTest, SendRecvDeliversMessagesInOrderWithSizes) {
  const std::vector<size_t> sizes = {0, 1, 100, 4096, 65536};
  std::span<std::byte> src = PatternBuffer(65536, 13);
  std::span<std::byte> dst = Buffer(65536 * sizes.size());
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* recv_mr = Register(1, dst, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && recv_mr && qa && qb);
  std::vector<RecvRequest> recvs;
  for (size_t i = 0; i < sizes.size(); ++i) {
    recvs.push_back(Recv(100 + i, SgeOf(*recv_mr, i * 65536, 65536)));
  }
  ASSERT_TRUE(qb->PostRecv(recvs).ok());
  std::vector<SendRequest> sends;
  for (size_t i = 0; i < sizes.size(); ++i) sends.push_back(Send(i, SgeOf(*local, 0, sizes[i])));
  ASSERT_TRUE(qa->PostSend(sends).ok());
  auto sent = PollN(0, sizes.size());
  ASSERT_EQ(sent.size(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(sent[i].status, WcStatus::kSuccess);
    EXPECT_EQ(sent[i].opcode, Opcode::kSend);
    EXPECT_EQ(sent[i].wr_id, i);
  }
  auto received = PollN(1, sizes.size());
  ASSERT_EQ(received.size(), sizes.size());
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE(sizes[i]);
    EXPECT_EQ(received[i].status, WcStatus::kSuccess);
    EXPECT_EQ(received[i].opcode, Opcode::kRecv);
    EXPECT_EQ(received[i].wr_id, 100 + i);
    EXPECT_EQ(received[i].qp, qb->id());
    EXPECT_EQ(received[i].bytes, sizes[i]);
    EXPECT_TRUE(Equal(dst.subspan(i * 65536, sizes[i]), src.first(sizes[i])));
  }
}

TEST_P(FabricConformanceTest, WriteBeforeSendHasLandedWhenTheRecvCompletes) {
  constexpr size_t kBytes = 1 << 20;
  std::span<std::byte> src = PatternBuffer(kBytes, 14);
  std::span<std::byte> dst = Buffer(kBytes);
  std::span<std::byte> note = Buffer(16);
  std::span<std::byte> inbox = Buffer(16);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* note_mr = Register(0, note, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  MemoryRegion* inbox_mr = Register(1, inbox, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && note_mr && remote && inbox_mr && qa && qb);
  for (int round = 0; round < 4; ++round) {
    SCOPED_TRACE(round);
    const RecvRequest recv = Recv(round, SgeOf(*inbox_mr, 0, 16));
    ASSERT_TRUE(qb->PostRecv({&recv, 1}).ok());
    const uint8_t stamp = static_cast<uint8_t>(0x10 + round);
    std::fill(src.begin(), src.end(), std::byte{stamp});
    const SendRequest requests[] = {Write(1, SgeOf(*local, 0, kBytes), *remote, 0, false),
                                    Send(2, SgeOf(*note_mr, 0, 16))};
    ASSERT_TRUE(qa->PostSend(requests).ok());
    // The target learns of the WRITE only through the RECV; it does not poll 0 for it.
    std::optional<Completion> got;
    std::optional<Completion> sent;
    const auto deadline = steady_clock::now() + kDeadline;
    while (!got && steady_clock::now() < deadline) {
      Completion c;
      if (!sent && Node(0).PollCompletions({&c, 1}) == 1) sent = c;  // the sender's progress
      if (Node(1).PollCompletions({&c, 1}) == 1) got = c;
    }
    EXPECT_WC(got, WcStatus::kSuccess);
    EXPECT_EQ(got->opcode, Opcode::kRecv);
    EXPECT_TRUE(AllBytes(dst, stamp)) << "the WRITE had not fully landed when the RECV completed";
    if (!sent) sent = PollOne(0);
    EXPECT_WC(sent, WcStatus::kSuccess);
    EXPECT_EQ(sent->wr_id, 2u);
  }
}

TEST_P(FabricConformanceTest, ReceiveBufferTooSmallIsALengthError) {
  std::span<std::byte> src = PatternBuffer(64, 15);
  std::span<std::byte> dst = Buffer(64, 0x11);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* recv_mr = Register(1, dst, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && recv_mr && qa && qb);
  const RecvRequest recv = Recv(55, SgeOf(*recv_mr, 0, 16));
  ASSERT_TRUE(qb->PostRecv({&recv, 1}).ok());
  const SendRequest send = Send(5, SgeOf(*local, 0, 32));
  ASSERT_TRUE(qa->PostSend({&send, 1}).ok());
  auto sender = PollOne(0);
  EXPECT_WC(sender, WcStatus::kRemoteInvalidRequest);
  EXPECT_EQ(sender->wr_id, 5u);
  auto receiver = PollOne(1);
  EXPECT_WC(receiver, WcStatus::kLocalLengthError);
  EXPECT_EQ(receiver->wr_id, 55u);
  EXPECT_EQ(receiver->qp, qb->id());
}

TEST_P(FabricConformanceTest, SendWithoutReceiveRunsOutOfRnrRetries) {
  std::span<std::byte> src = PatternBuffer(64, 16);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && qa && qb);
  const SendRequest send = Send(3, SgeOf(*local, 0, 64));
  ASSERT_TRUE(qa->PostSend({&send, 1}).ok());
  auto c = PollOne(0, backend().SlowDeadline());
  EXPECT_WC(c, WcStatus::kRnrRetryExceeded);
  EXPECT_EQ(c->wr_id, 3u);
  EXPECT_EQ(qa->state(), QpState::kError);
}

// The peer may SEND the moment its Connect returns, before ours has returned: receives that go up
// with the QP are there for it (no RNR), and complete on the QP Connect hands out. Both ways: on
// rdma the higher node dials, so the receiver is once the dialling side (1 from 0) and once the
// accepting side (0 from 2, as the coordinator, rank 0, receives from every node).
TEST_P(FabricConformanceTest, ReceivesPostedWithConnectCatchTheFirstSend) {
  for (const auto& [sender, receiver] : {std::pair<NodeId, NodeId>{0, 1}, {2, 0}}) {
    SCOPED_TRACE(StrCat("node ", sender, " sends to node ", receiver));
    std::span<std::byte> src = PatternBuffer(96, 17 + sender);
    std::span<std::byte> inbox = Buffer(128, 0x5a);
    MemoryRegion* local = Register(sender, src, kAccessLocalWrite);
    MemoryRegion* inbox_mr = Register(receiver, inbox, kAccessLocalWrite);
    ASSERT_TRUE(local && inbox_mr);
    Result<std::vector<std::unique_ptr<QueuePair>>> received_on = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{
          sender, {}, {Recv(77, SgeOf(*inbox_mr, 0, 64)), Recv(78, SgeOf(*inbox_mr, 64, 64))}};
      received_on = Node(receiver).Connect({&request, 1}, kConnectTimeout);
    });
    const ConnectRequest request{receiver, {}, {}};
    auto sent_on = Node(sender).Connect({&request, 1}, kConnectTimeout);
    // Nobody ever calls PostRecv on the receiver: only the receives of its Connect can take these.
    Status posted = Status::Internal("not posted");
    if (sent_on.ok() && sent_on->size() == 1) {
      const SendRequest sends[] = {Send(1, SgeOf(*local, 0, 64)), Send(2, SgeOf(*local, 64, 32))};
      posted = sent_on->front()->PostSend(sends);
    }
    peer.join();
    ASSERT_TRUE(sent_on.ok()) << sent_on.status();
    ASSERT_TRUE(received_on.ok()) << received_on.status();
    ASSERT_EQ(received_on->size(), 1u);
    ASSERT_TRUE(posted.ok()) << posted;
    const uint32_t receiver_qp = received_on->front()->id();
    Handles(sender).qps.push_back(std::move(sent_on->front()));
    Handles(receiver).qps.push_back(std::move(received_on->front()));
    auto sent = PollN(sender, 2);
    ASSERT_EQ(sent.size(), 2u);
    for (const Completion& c : sent) EXPECT_EQ(c.status, WcStatus::kSuccess) << c.wr_id;
    auto received = PollN(receiver, 2);
    ASSERT_EQ(received.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
      SCOPED_TRACE(i);
      EXPECT_EQ(received[i].status, WcStatus::kSuccess);
      EXPECT_EQ(received[i].opcode, Opcode::kRecv);
      EXPECT_EQ(received[i].wr_id, 77 + i);
      EXPECT_EQ(received[i].qp, receiver_qp);
    }
    EXPECT_EQ(received[0].bytes, 64u);
    EXPECT_EQ(received[1].bytes, 32u);
    EXPECT_TRUE(Equal(inbox.first(64), src.first(64)));
    EXPECT_TRUE(Equal(inbox.subspan(64, 32), src.subspan(64, 32)));
    EXPECT_TRUE(AllBytes(inbox.subspan(96), 0x5a));
  }
}

// A batch that fails drops the receives of its QPs, also of one that was connected (node 1, here)
// and of the QPs an rdma dialler makes for each try at an absent peer (node 2): none of them
// ever completes, not even as a flush.
TEST_P(FabricConformanceTest, FailedBatchDropsItsReceives) {
  std::span<std::byte> inbox = Buffer(64);
  MemoryRegion* inbox_mr = Register(3, inbox, kAccessLocalWrite);
  ASSERT_NE(inbox_mr, nullptr);
  Node(1);
  Result<std::vector<std::unique_ptr<QueuePair>>> present = Status::Internal("not run");
  std::thread peer([&] {
    const ConnectRequest request{3, {}, {}};
    present = Node(1).Connect({&request, 1}, kConnectTimeout);
  });
  // Node 3 polls while its Connect runs, as the engine's worker does during a partner Connect.
  std::atomic<bool> connecting{true};
  std::vector<Completion> polled;
  std::thread poller([&] {
    Completion c;
    while (connecting.load()) {
      if (Node(3).PollCompletions({&c, 1}) == 1) polled.push_back(c);
    }
  });
  const ConnectRequest requests[] = {{1, {}, {Recv(41, SgeOf(*inbox_mr, 0, 32))}},
                                     {2, {}, {Recv(42, SgeOf(*inbox_mr, 32, 32))}}};
  auto failed = Node(3).Connect(requests, milliseconds(500));
  connecting = false;
  poller.join();
  peer.join();
  for (const Completion& c : polled) {
    ADD_FAILURE() << "completion during the failed Connect: wr_id " << c.wr_id << " status "
                  << WcStatusName(c.status);
  }
  EXPECT_FALSE(failed.ok()) << "node 2 never came";
  // Node 1's side connected (its batch named only node 3) and then lost its peer.
  ASSERT_TRUE(present.ok()) << present.status();
  ASSERT_EQ(present->size(), 1u);
  Handles(1).qps.push_back(std::move(present->front()));
  const std::optional<Completion> stray = PollOne(3, milliseconds(200));
  EXPECT_FALSE(stray.has_value()) << "wr_id " << stray->wr_id << " status "
                                  << WcStatusName(stray->status);
}

}  // namespace
}  // namespace ft::verbs::conformance
