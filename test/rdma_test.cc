// rdma-specific tests (ctest label `rdma`): clear errors for a missing device or bad settings,
// a constructor failing at every step leaks nothing, handles all go when objects go, memlock,
// timing of a dead peer. Cases that need a device skip without one; the error cases run anywhere.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "test/rdma_test_fixture.h"
#include "test/rdma_test_util.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs {
namespace {

using rdma_test::Address;
using rdma_test::RdmaTest;
using rdma_test::ScopedEnv;
using rdma_test::WriteOf;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Errors that name what is missing (these run with or without a device)

TEST_F(RdmaTest, UnknownDeviceNamesTheDevicesThatExist) {
  RdmaOptions options;
  options.device = "ft_no_such_device";
  auto fabric = Create(0, options);
  ASSERT_FALSE(fabric.ok());
  EXPECT_EQ(fabric.status().code(), StatusCode::kNotFound) << fabric.status();
  const std::string message(fabric.status().message());
  const std::vector<std::string> devices = ListRdmaDevices();
  if (devices.empty()) {
    EXPECT_NE(message.find("no RDMA device"), std::string::npos) << message;
    EXPECT_NE(message.find("rdma_rxe"), std::string::npos) << message;
  } else {
    EXPECT_NE(message.find("ft_no_such_device"), std::string::npos) << message;
    for (const std::string& device : devices) {
      EXPECT_NE(message.find(device), std::string::npos) << message;
    }
  }
}

TEST_F(RdmaTest, DeviceFromTheEnvironmentIsUsedAndBadValuesAreNamed) {
  {
    ScopedEnv device("FT_DEVICE", "ft_env_device");
    auto fabric = Create(0);
    ASSERT_FALSE(fabric.ok());
    EXPECT_EQ(fabric.status().code(), StatusCode::kNotFound) << fabric.status();
    if (!ListRdmaDevices().empty()) {
      EXPECT_NE(fabric.status().message().find("ft_env_device"), std::string::npos)
          << fabric.status();
    }
  }
  {
    ScopedEnv gid("FT_GID_INDEX", "two");
    auto fabric = Create(0);
    EXPECT_EQ(fabric.status().code(), StatusCode::kInvalidArgument) << fabric.status();
    EXPECT_NE(fabric.status().message().find("FT_GID_INDEX"), std::string::npos) << fabric.status();
  }
  {
    // Options win over the environment; read_environment = false ignores it.
    ScopedEnv gid("FT_GID_INDEX", "two");
    RdmaOptions options;
    options.read_environment = false;
    options.device = "ft_option_device";
    auto fabric = Create(0, options);
    EXPECT_EQ(fabric.status().code(), StatusCode::kNotFound) << fabric.status();
  }
}

TEST_F(RdmaTest, BadOptionsAndAddressesAreInvalidArguments) {
  {
    RdmaOptions options;
    options.rnr_retry = 7;  // would retry forever
    EXPECT_EQ(Create(0, options).status().code(), StatusCode::kInvalidArgument);
  }
  {
    RdmaOptions options;
    options.max_send_wr = 0;
    EXPECT_EQ(Create(0, options).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(CreateRdmaFabric(kNodes, {}, Book()).status().code(), StatusCode::kInvalidArgument);
  const AddressBook bad = [](NodeId) -> Result<std::string> { return std::string("nohostport"); };
  EXPECT_EQ(CreateRdmaFabric(0, {}, bad).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateRdmaFabric(0, {}, AddressBook()).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RdmaTest, PortRangeAddressBookGivesHostPortPerNode) {
  const AddressBook v4 = PortRangeAddressBook("10.0.0.7", 7000, 3);
  EXPECT_EQ(*v4(0), "10.0.0.7:7000");
  EXPECT_EQ(*v4(2), "10.0.0.7:7002");
  EXPECT_EQ(v4(3).status().code(), StatusCode::kInvalidArgument);
  const AddressBook v6 = PortRangeAddressBook("fe80::1", 7000, 2);
  EXPECT_EQ(*v6(1), "[fe80::1]:7001");
  const AddressBook high = PortRangeAddressBook("10.0.0.7", 65535, 2);
  EXPECT_EQ(high(1).status().code(), StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------------------------
// With a device

TEST_F(RdmaTest, AddressNotOnAnRdmaDeviceIsAClearError) {
  SKIP_WITHOUT_DEVICE();
  const AddressBook loopback = PortRangeAddressBook("127.0.0.1", rdma_test::BasePort(4, 3), 4);
  auto fabric = CreateRdmaFabric(0, {}, loopback);
  ASSERT_FALSE(fabric.ok());
  EXPECT_EQ(fabric.status().code(), StatusCode::kFailedPrecondition) << fabric.status();
  EXPECT_NE(fabric.status().message().find("127.0.0.1"), std::string::npos) << fabric.status();
}

TEST_F(RdmaTest, GidIndexOutsideTheTableIsNamed) {
  SKIP_WITHOUT_DEVICE();
  RdmaOptions options;
  options.gid_index = 250;
  auto fabric = Create(0, options);
  ASSERT_FALSE(fabric.ok());
  EXPECT_EQ(fabric.status().code(), StatusCode::kInvalidArgument) << fabric.status();
  EXPECT_NE(fabric.status().message().find("GID index 250"), std::string::npos) << fabric.status();
}

TEST_F(RdmaTest, DeviceInfoAndLimits) {
  SKIP_WITHOUT_DEVICE();
  auto fabric = Create(0);
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  auto info = GetRdmaDeviceInfo(**fabric);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_FALSE(info->device.empty());
  EXPECT_GE(info->port, 1);
  EXPECT_GT(info->active_mtu, 0u);
  EXPECT_EQ(info->listen, StrCat(Address(), ":", rdma_test::BasePort(kNodes, 2)));
  if (info->link_layer == "Ethernet") {
    EXPECT_EQ(info->gid_type, "RoCE v2") << info->gid_index;
  }
  const Limits& limits = (*fabric)->limits();
  EXPECT_EQ(limits.max_private_data, 44u);
  EXPECT_EQ(limits.max_send_wr, RdmaOptions{}.max_send_wr);
  EXPECT_EQ(limits.max_recv_wr, RdmaOptions{}.max_recv_wr);
  EXPECT_GE(limits.cq_depth, RdmaOptions{}.cq_depth);
  EXPECT_GT(limits.max_inline_bytes, 0u);
  EXPECT_LE(limits.max_inline_bytes, RdmaOptions{}.max_inline_bytes);
  EXPECT_GE(limits.max_message_bytes, 1u << 20);
  EXPECT_EQ((*fabric)->name(), "rdma");
  // A second Fabric on the same address is refused with the address named.
  auto twin = Create(0);
  EXPECT_EQ(twin.status().code(), StatusCode::kFailedPrecondition) << twin.status();
}

TEST_F(RdmaTest, ConstructionFailingAtEveryStepLeaksNothing) {
  SKIP_WITHOUT_DEVICE();
  const RdmaLiveHandles before = GetRdmaLiveHandles();
  int step = 0;
  for (;; ++step) {
    SCOPED_TRACE(step);
    RdmaOptions options;
    options.testing_fail_step = step;
    auto fabric = Create(0, options);
    if (fabric.ok()) break;  // past the last step
    EXPECT_EQ(fabric.status().code(), StatusCode::kInternal) << fabric.status();
    EXPECT_NE(fabric.status().message().find("injected failure"), std::string::npos)
        << fabric.status();
    EXPECT_EQ(GetRdmaLiveHandles(), before)
        << ToString(GetRdmaLiveHandles()) << " vs " << ToString(before);
    ASSERT_LT(step, 100);
  }
  EXPECT_GE(step, 13) << "every creation step was injected";
  EXPECT_EQ(GetRdmaLiveHandles(), before);
}

TEST_F(RdmaTest, EveryHandleGoesWithItsObjects) {
  SKIP_WITHOUT_DEVICE();
  const RdmaLiveHandles before = GetRdmaLiveHandles();
  {
    auto a = Create(0);
    auto b = Create(1);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
    std::vector<std::byte> src(4096, std::byte{7});
    std::vector<std::byte> dst(4096);
    auto src_mr = (*a)->RegisterMemory(src.data(), src.size(), kAccessLocalWrite);
    auto dst_mr =
        (*b)->RegisterMemory(dst.data(), dst.size(), kAccessLocalWrite | kAccessRemoteWrite);
    ASSERT_TRUE(src_mr.ok() && dst_mr.ok());
    auto [qa, qb] = Connect(**a, **b);
    ASSERT_TRUE(qa && qb);
    EXPECT_GT(GetRdmaLiveHandles().qps, before.qps);
    SendRequest w;
    w.wr_id = 1;
    w.opcode = Opcode::kWrite;
    w.sge[0] = {reinterpret_cast<uintptr_t>(src.data()), 4096, (*src_mr)->lkey()};
    w.num_sge = 1;
    w.remote_addr = reinterpret_cast<uintptr_t>(dst.data());
    w.rkey = (*dst_mr)->rkey();
    ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
    auto c = PollOne(**a, std::chrono::seconds(10));
    ASSERT_TRUE(c.has_value());
    EXPECT_EQ(c->status, WcStatus::kSuccess);
    EXPECT_EQ(dst, src);
    // Destroy in the contract's order: QPs, registrations, Fabrics.
    qa.reset();
    qb.reset();
    src_mr->reset();
    dst_mr->reset();
  }
  EXPECT_EQ(GetRdmaLiveHandles(), before) << ToString(GetRdmaLiveHandles());
}

TEST_F(RdmaTest, FabricDestroyedBeforeItsQueuePairsDisconnectsThePeer) {
  SKIP_WITHOUT_DEVICE();
  const RdmaLiveHandles before = GetRdmaLiveHandles();
  {
    auto a = Create(0);
    auto b = Create(1);
    ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
    auto [qa, qb] = Connect(**a, **b);
    ASSERT_TRUE(qa && qb);
    a->reset();  // qa outlives its Fabric
    EXPECT_EQ(qa->state(), QpState::kError);
    const SendRequest send{};
    EXPECT_EQ(qa->PostSend({&send, 1}).code(), StatusCode::kUnavailable);
    const auto deadline = steady_clock::now() + std::chrono::seconds(10);
    std::optional<Event> event;
    while (!event && steady_clock::now() < deadline) {
      Event e;
      if ((*b)->PollEvents({&e, 1}) == 1 && e.type == EventType::kDisconnected) event = e;
      if (!event) (*b)->WaitForActivity(milliseconds(10));
    }
    ASSERT_TRUE(event.has_value());
    EXPECT_EQ(event->peer, 0u);
    EXPECT_EQ(event->qp, qb->id());
  }
  EXPECT_EQ(GetRdmaLiveHandles(), before) << ToString(GetRdmaLiveHandles());
}

TEST_F(RdmaTest, ConnectToANodeThatDoesNotListenTimesOutSayingSo) {
  SKIP_WITHOUT_DEVICE();
  auto fabric = Create(3);  // the higher id: it initiates, and nobody listens for node 1
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  const ConnectRequest request{1, {}, {}};
  const auto start = steady_clock::now();
  auto result = (*fabric)->Connect({&request, 1}, milliseconds(500));
  EXPECT_EQ(result.status().code(), StatusCode::kDeadlineExceeded) << result.status();
  EXPECT_NE(result.status().message().find("node 1"), std::string::npos) << result.status();
  EXPECT_NE(result.status().message().find("no listener"), std::string::npos) << result.status();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(RdmaTest, FencedPeerFailsWithinTheDocumentedBound) {
  SKIP_WITHOUT_DEVICE();
  auto a = Create(0);
  auto b = Create(1);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
  std::vector<std::byte> src(64, std::byte{1});
  std::vector<std::byte> dst(64, std::byte{2});
  auto src_mr = (*a)->RegisterMemory(src.data(), src.size(), kAccessLocalWrite);
  auto dst_mr =
      (*b)->RegisterMemory(dst.data(), dst.size(), kAccessLocalWrite | kAccessRemoteWrite);
  ASSERT_TRUE(src_mr.ok() && dst_mr.ok());
  auto [qa, qb] = Connect(**a, **b);
  ASSERT_TRUE(qa && qb);
  qb->ToError();
  SendRequest w;
  w.wr_id = 5;
  w.opcode = Opcode::kWrite;
  w.sge[0] = {reinterpret_cast<uintptr_t>(src.data()), 64, (*src_mr)->lkey()};
  w.num_sge = 1;
  w.remote_addr = reinterpret_cast<uintptr_t>(dst.data());
  w.rkey = (*dst_mr)->rkey();
  const auto start = steady_clock::now();
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  auto c = PollOne(**a, std::chrono::seconds(30));
  const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->status, WcStatus::kRetryExceeded) << WcStatusName(c->status);
  // 8 tries of 67 ms on hardware; the emulated VM adds its slowness on top.
  EXPECT_LT(took, std::chrono::seconds(10)) << took.count() << " ms";
  std::printf("fenced peer: kRetryExceeded after %lld ms\n", static_cast<long long>(took.count()));
  EXPECT_EQ(dst, std::vector<std::byte>(64, std::byte{2}));
  qa.reset();
  qb.reset();
}

// Receives posted on a QP in error complete kFlushed, as in the loopback model (soft-RoCE flushes
// its receive queue only on a transition to the error state; the backend makes one).
TEST_F(RdmaTest, ReceivesPostedAfterToErrorAreFlushed) {
  SKIP_WITHOUT_DEVICE();
  auto a = Create(0);
  auto b = Create(1);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
  std::vector<std::byte> inbox(64);
  auto inbox_mr = (*b)->RegisterMemory(inbox.data(), inbox.size(), kAccessLocalWrite);
  ASSERT_TRUE(inbox_mr.ok());
  auto [qa, qb] = Connect(**a, **b);
  ASSERT_TRUE(qa && qb);
  qb->ToError();
  const RecvRequest recvs[] = {
      {.wr_id = 41, .sge = {reinterpret_cast<uintptr_t>(inbox.data()), 32, (*inbox_mr)->lkey()}},
      {.wr_id = 42,
       .sge = {reinterpret_cast<uintptr_t>(inbox.data()) + 32, 32, (*inbox_mr)->lkey()}}};
  ASSERT_TRUE(qb->PostRecv(recvs).ok());
  for (uint64_t wr_id : {41u, 42u}) {
    auto c = PollOne(**b, std::chrono::seconds(10));
    ASSERT_TRUE(c.has_value()) << "receive " << wr_id << " was not flushed";
    EXPECT_EQ(c->wr_id, wr_id);
    EXPECT_EQ(c->status, WcStatus::kFlushed) << WcStatusName(c->status);
    EXPECT_EQ(c->qp, qb->id());
  }
}

// A CQ that overruns raises kDeviceError and fails the node's QPs, as in the loopback model. The
// CQ grows as QPs connect, so only a CQ kept small on purpose (testing_fixed_cq) can overrun.
TEST_F(RdmaTest, CqOverrunIsADeviceErrorAndFailsTheQueuePairs) {
  SKIP_WITHOUT_DEVICE();
  RdmaOptions options;
  options.cq_depth = 16;
  options.max_send_wr = 256;
  options.testing_fixed_cq = true;
  auto a = Create(0, options);
  auto b = Create(1, options);
  ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " / " << b.status();
  std::vector<std::byte> src(8, std::byte{1});
  std::vector<std::byte> dst(8);
  auto src_mr = (*a)->RegisterMemory(src.data(), src.size(), kAccessLocalWrite);
  auto dst_mr =
      (*b)->RegisterMemory(dst.data(), dst.size(), kAccessLocalWrite | kAccessRemoteWrite);
  ASSERT_TRUE(src_mr.ok() && dst_mr.ok());
  auto [qa, qb] = Connect(**a, **b);
  ASSERT_TRUE(qa && qb);
  const int depth = (*a)->limits().cq_depth;
  const int count = std::min(4 * depth + 8, (*a)->limits().max_send_wr);
  ASSERT_GT(count, depth + 1);
  std::vector<SendRequest> writes;
  for (int i = 0; i < count; ++i) writes.push_back(WriteOf(i, **src_mr, **dst_mr, 8));
  ASSERT_TRUE(qa->PostSend(writes).ok());
  // Nobody polls the CQ: only events are read (PollCompletions or WaitForActivity would reap).
  std::optional<Event> event;
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  while (!event && steady_clock::now() < deadline) {
    Event e;
    if ((*a)->PollEvents({&e, 1}) == 1 && e.type == EventType::kDeviceError) event = e;
    if (!event) std::this_thread::yield();
  }
  ASSERT_TRUE(event.has_value()) << "no kDeviceError after " << count << " completions into a CQ "
                                 << "of " << depth;
  EXPECT_NE(event->detail.find("CQ overrun"), std::string::npos) << event->detail;
  EXPECT_EQ(qa->state(), QpState::kError);
}

// The CQ grows as QPs connect: node 0, created with a CQ of 16 entries, connects 6 QPs of 16 send
// and 16 receive requests (192 entries at worst) and gets every completion, with no overrun.
// Before node 0 polls anything its peers have seen all their SENDs complete, so at least 96 of
// its receive completions sit in its CQ at once: six times what it was created with.
TEST_F(RdmaTest, CqGrowsAsQueuePairsConnectAndNeverOverruns) {
  SKIP_WITHOUT_DEVICE();
  constexpr int kDepth = 16;
  constexpr int kRounds = 2;  // Connect batches: each gives node 0 one QP per peer
  constexpr NodeId kPeers = kNodes - 1;
  RdmaOptions options;
  options.cq_depth = kDepth;
  options.max_send_wr = 16;
  options.max_recv_wr = 16;
  std::vector<std::unique_ptr<Fabric>> nodes;
  for (NodeId id = 0; id < kNodes; ++id) {
    auto fabric = Create(id, options);
    ASSERT_TRUE(fabric.ok()) << fabric.status();
    nodes.push_back(std::move(fabric).value());
  }
  Fabric& a = *nodes[0];
  const int sends = a.limits().max_send_wr;
  const int receives = a.limits().max_recv_wr;
  const int created = a.limits().cq_depth;
  const int qps = kRounds * static_cast<int>(kPeers);
  ASSERT_GT(qps * receives, 2 * created) << "the test must need more than the CQ it starts with";

  constexpr uint32_t kSlot = 64;
  std::vector<std::byte> src(kSlot, std::byte{7});
  std::vector<std::byte> inbox(static_cast<size_t>(qps * receives) * kSlot);
  auto src_mr = a.RegisterMemory(src.data(), src.size(), kAccessLocalWrite);
  auto inbox_mr = a.RegisterMemory(inbox.data(), inbox.size(), kAccessLocalWrite);
  ASSERT_TRUE(src_mr.ok() && inbox_mr.ok());
  std::vector<std::vector<std::byte>> dst(kNodes, std::vector<std::byte>(kSlot));
  std::vector<std::unique_ptr<MemoryRegion>> dst_mrs(kNodes);
  for (NodeId id = 1; id < kNodes; ++id) {
    auto mr = nodes[id]->RegisterMemory(dst[id].data(), dst[id].size(),
                                        kAccessLocalWrite | kAccessRemoteWrite);
    ASSERT_TRUE(mr.ok()) << mr.status();
    dst_mrs[id] = std::move(mr).value();
  }

  std::vector<std::unique_ptr<QueuePair>> a_qps;
  std::vector<std::vector<std::unique_ptr<QueuePair>>> peer_qps(kNodes);
  for (int round = 0; round < kRounds; ++round) {
    std::vector<ConnectRequest> requests;
    for (NodeId id = 1; id < kNodes; ++id) {
      ConnectRequest request{id, {}, {}};
      for (int i = 0; i < receives; ++i) {
        const size_t slot = a_qps.size() * static_cast<size_t>(receives) +
                            (id - 1) * static_cast<size_t>(receives) + static_cast<size_t>(i);
        request.receives.push_back(
            {.wr_id = 1000 + slot,
             .sge = {reinterpret_cast<uintptr_t>(inbox.data()) + slot * kSlot, kSlot,
                     (*inbox_mr)->lkey()}});
      }
      requests.push_back(std::move(request));
    }
    std::vector<Result<std::vector<std::unique_ptr<QueuePair>>>> results;
    for (NodeId id = 0; id < kNodes; ++id) results.emplace_back(Status::Internal("not run"));
    std::vector<std::thread> threads;
    for (NodeId id = 1; id < kNodes; ++id) {
      threads.emplace_back([&, id] {
        const ConnectRequest request{0, {}, {}};
        results[id] = nodes[id]->Connect({&request, 1}, std::chrono::seconds(20));
      });
    }
    auto connected = a.Connect(requests, std::chrono::seconds(20));
    for (std::thread& t : threads) t.join();
    ASSERT_TRUE(connected.ok()) << "round " << round << ": " << connected.status();
    for (NodeId id = 1; id < kNodes; ++id) {
      ASSERT_TRUE(results[id].ok()) << "node " << id << ": " << results[id].status();
      peer_qps[id].push_back(std::move(results[id]->front()));
    }
    for (auto& qp : *connected) a_qps.push_back(std::move(qp));
  }
  ASSERT_EQ(static_cast<int>(a_qps.size()), qps);

  // Node 0 WRITEs `sends` times on each QP; each peer SENDs `receives` messages on each of its QPs.
  for (size_t q = 0; q < a_qps.size(); ++q) {
    std::vector<SendRequest> writes;
    for (int i = 0; i < sends; ++i) {
      writes.push_back(WriteOf(q * 1000 + static_cast<uint64_t>(i), **src_mr,
                               *dst_mrs[a_qps[q]->peer()], kSlot));
    }
    ASSERT_TRUE(a_qps[q]->PostSend(writes).ok());
  }
  for (NodeId id = 1; id < kNodes; ++id) {
    for (auto& qp : peer_qps[id]) {
      std::vector<SendRequest> messages;
      for (int i = 0; i < receives; ++i) {
        SendRequest m;
        m.wr_id = static_cast<uint64_t>(i);
        m.opcode = Opcode::kSend;
        m.sge[0] = {reinterpret_cast<uintptr_t>(dst[id].data()), 8, dst_mrs[id]->lkey()};
        m.num_sge = 1;
        messages.push_back(m);
      }
      ASSERT_TRUE(qp->PostSend(messages).ok());
    }
  }
  // Each peer's SEND completes only after node 0's receive completion was written to its CQ.
  for (NodeId id = 1; id < kNodes; ++id) {
    for (int n = 0; n < kRounds * receives; ++n) {
      auto c = PollOne(*nodes[id], std::chrono::seconds(30));
      ASSERT_TRUE(c.has_value()) << "node " << id << ": SEND " << n << " did not complete";
      ASSERT_EQ(c->status, WcStatus::kSuccess) << "node " << id << ": " << WcStatusName(c->status);
    }
  }
  // Only now does node 0 poll: every completion arrives, none failed, no event.
  const int expected = qps * (sends + receives);
  int got = 0;
  int receives_got = 0;
  const auto deadline = steady_clock::now() + std::chrono::seconds(30);
  while (got < expected && steady_clock::now() < deadline) {
    Completion batch[32];
    const size_t n = a.PollCompletions(batch);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(batch[i].status, WcStatus::kSuccess)
          << "completion " << got << " (wr_id " << batch[i].wr_id
          << "): " << WcStatusName(batch[i].status);
      if (batch[i].opcode == Opcode::kRecv) ++receives_got;
      ++got;
    }
    if (n == 0) a.WaitForActivity(milliseconds(10));
  }
  EXPECT_EQ(got, expected) << "completions lost: a CQ of " << created << " entries for " << qps
                           << " QPs";
  EXPECT_EQ(receives_got, qps * receives);
  Event event;
  const bool any_event = a.PollEvents({&event, 1}) == 1;
  EXPECT_FALSE(any_event) << EventTypeName(event.type) << ": " << event.detail;
  for (const auto& qp : a_qps) EXPECT_EQ(qp->state(), QpState::kConnected);
  std::printf("CQ created with %d entries: %d QPs, %d completions, all delivered\n", created, qps,
              got);
}

// A QP the CQ cannot take even at the device's max_cqe fails Connect with ResourceExhausted
// naming the depth it needs, on the dialling and on the accepting side, rather than risking an
// overrun. Soft-RoCE allows max_cqe 32767: one QP of 32768 + 32768 requests needs twice that.
// (Not its max_qp_wr of 2^20: the queues of such a QP take a minute to make in the VM.)
TEST_F(RdmaTest, QueuePairBeyondTheDevicesMaxCqeIsResourceExhausted) {
  SKIP_WITHOUT_DEVICE();
  RdmaOptions huge;
  huge.max_send_wr = 1 << 15;  // clamped to the device's max_qp_wr
  huge.max_recv_wr = 1 << 15;
  for (const bool huge_dials : {true, false}) {
    SCOPED_TRACE(huge_dials ? "the dialling node has the huge queues"
                            : "the accepting node has the huge queues");
    // Node 1 dials node 0.
    auto low = Create(0, huge_dials ? RdmaOptions{} : huge);
    auto high = Create(1, huge_dials ? huge : RdmaOptions{});
    ASSERT_TRUE(low.ok() && high.ok()) << low.status() << " / " << high.status();
    Result<std::vector<std::unique_ptr<QueuePair>>> low_result = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{1, {}, {}};
      low_result = (*low)->Connect({&request, 1}, std::chrono::seconds(3));
    });
    const ConnectRequest request{0, {}, {}};
    auto high_result = (*high)->Connect({&request, 1}, std::chrono::seconds(3));
    peer.join();
    const Status& refused = huge_dials ? high_result.status() : low_result.status();
    if (refused.ok()) {
      GTEST_SKIP() << "this device's max_cqe holds a QP of " << (*high)->limits().max_send_wr
                   << " + " << (*high)->limits().max_recv_wr << " requests";
    }
    EXPECT_EQ(refused.code(), StatusCode::kResourceExhausted) << refused;
    EXPECT_NE(refused.message().find("the completion queue needs "), std::string::npos) << refused;
    EXPECT_NE(refused.message().find("max_cqe"), std::string::npos) << refused;
    std::printf("%s\n", refused.ToString().c_str());
  }
}

// An address nobody answers for ends Connect early with Unavailable and the CM's reason.
TEST_F(RdmaTest, ConnectToAnUnreachableAddressIsUnavailable) {
  SKIP_WITHOUT_DEVICE();
  const std::string address = Address();
  const size_t dot = address.rfind('.');
  if (std::getenv("RXE_VM") == nullptr || dot == std::string::npos) {
    GTEST_SKIP() << "needs the rxe-vm's private IPv4 subnet to name an absent host";
  }
  const std::string absent = address.substr(0, dot) + ".213";
  const uint16_t base = rdma_test::BasePort(kNodes, 4);
  const AddressBook book = [&](NodeId id) -> Result<std::string> {
    if (id >= 2) return Status::InvalidArgument("node ", id, " is outside the world");
    return StrCat(id == 0 ? absent : address, ":", base + id);
  };
  RdmaOptions options;
  options.resolve_timeout = milliseconds(500);
  auto fabric = CreateRdmaFabric(1, options, book);
  ASSERT_TRUE(fabric.ok()) << fabric.status();
  const ConnectRequest request{0, {}, {}};
  const auto start = steady_clock::now();
  auto result = (*fabric)->Connect({&request, 1}, std::chrono::seconds(20));
  const auto took = std::chrono::duration_cast<milliseconds>(steady_clock::now() - start);
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status();
  EXPECT_NE(result.status().message().find(absent), std::string::npos) << result.status();
  EXPECT_LT(took, std::chrono::seconds(15)) << result.status();
  std::printf("unreachable peer: %s after %lld ms\n", result.status().ToString().c_str(),
              static_cast<long long>(took.count()));
}

// Registration beyond RLIMIT_MEMLOCK names the limit and the `ulimit -l` it needs. Root may pin
// any amount (CAP_IPC_LOCK), so a child process drops that capability and lowers the limit (the
// verbs and rdma_cm files refuse writes once the process credentials change, so the child makes
// its Fabric after the change and never changes them back). It reports "code|message".
std::string MemlockChild(const AddressBook& book) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[2] = {};
  if (syscall(SYS_capget, &header, caps) != 0) return "skip|capget failed";
  caps[0].effective &= ~(1u << CAP_IPC_LOCK);
  if (syscall(SYS_capset, &header, caps) != 0) return "skip|capset failed";
  rlimit limit{};
  if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "skip|getrlimit failed";
  limit.rlim_cur = 64 * 1024;
  if (setrlimit(RLIMIT_MEMLOCK, &limit) != 0) return "skip|setrlimit failed";
  auto fabric = CreateRdmaFabric(0, {}, book);
  if (!fabric.ok()) return StrCat("fabric|", fabric.status().ToString());
  std::vector<std::byte> big(16 << 20);
  auto mr = (*fabric)->RegisterMemory(big.data(), big.size(), kAccessLocalWrite);
  return StrCat(static_cast<int>(mr.status().code()), "|", mr.status().message());
}

TEST_F(RdmaTest, MemlockTooLowSaysWhichUlimitIsNeeded) {
  SKIP_WITHOUT_DEVICE();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const AddressBook book = Book();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    const std::string report = MemlockChild(book);
    [[maybe_unused]] const ssize_t n = write(fds[1], report.data(), report.size());
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  char buffer[512];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof(buffer))) > 0;) report.append(buffer, n);
  close(fds[0]);
  int wait_status = 0;
  ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
  ASSERT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << wait_status;
  if (report.rfind("skip|", 0) == 0) GTEST_SKIP() << report.substr(5);
  const size_t bar = report.find('|');
  ASSERT_NE(bar, std::string::npos) << report;
  const std::string code = report.substr(0, bar);
  const std::string message = report.substr(bar + 1);
  EXPECT_EQ(code, std::to_string(static_cast<int>(StatusCode::kResourceExhausted))) << report;
  EXPECT_NE(message.find("ulimit -l"), std::string::npos) << message;
  EXPECT_NE(message.find("RLIMIT_MEMLOCK is 64 KiB"), std::string::npos) << message;
  std::printf("memlock message: %s\n", message.c_str());
}

// ---------------------------------------------------------------------------------------------
// A scratch soft-RoCE device of the test's own: its port can be down and it can be removed
// without disturbing the device the other tests use.
//
// The kernel removes an rxe device only once every process that opened it closed it, and
// librdmacm keeps the devices it has seen open for the life of the process. So the verbs work of
// these tests runs in a child process, and this (parent) process, which never opens a device,
// adds, removes and deletes the device.

}  // namespace
}  // namespace ft::verbs
