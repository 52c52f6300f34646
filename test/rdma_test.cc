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

#include "test/rdma_test_util.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

#define SKIP_WITHOUT_DEVICE()                                                \
  do {                                                                       \
    if (const std::string reason = rdma_test::SkipReason(); !reason.empty()) \
      GTEST_SKIP() << reason;                                                \
  } while (0)

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value == nullptr) {
      unsetenv(name);
    } else {
      setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string Address() {
  const std::string address = rdma_test::TestAddress();
  return address.empty() ? "127.0.0.1" : address;
}

class RdmaTest : public ::testing::Test {
 protected:
  static constexpr NodeId kNodes = 4;

  AddressBook Book(int block = 2) {
    return PortRangeAddressBook(Address(), rdma_test::BasePort(kNodes, block), kNodes);
  }

  Result<std::unique_ptr<Fabric>> Create(NodeId node, RdmaOptions options = {}) {
    return CreateRdmaFabric(node, options, Book());
  }

  // Connects a and b (a here, b on another thread).
  static std::pair<std::unique_ptr<QueuePair>, std::unique_ptr<QueuePair>> Connect(Fabric& a,
                                                                                   Fabric& b) {
    Result<std::vector<std::unique_ptr<QueuePair>>> rb = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{a.node(), {}, {}};
      rb = b.Connect({&request, 1}, std::chrono::seconds(10));
    });
    const ConnectRequest request{b.node(), {}, {}};
    auto ra = a.Connect({&request, 1}, std::chrono::seconds(10));
    peer.join();
    if (!ra.ok() || !rb.ok()) {
      ADD_FAILURE() << "Connect: " << ra.status() << " / " << rb.status();
      return {};
    }
    return {std::move(ra->front()), std::move(rb->front())};
  }

  static std::optional<Completion> PollOne(Fabric& fabric, std::chrono::nanoseconds within) {
    const auto deadline = steady_clock::now() + within;
    while (true) {
      Completion c;
      if (fabric.PollCompletions({&c, 1}) == 1) return c;
      const auto now = steady_clock::now();
      if (now >= deadline) return std::nullopt;
      fabric.WaitForActivity(std::min<Nanos>(deadline - now, milliseconds(10)));
    }
  }
};

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

SendRequest WriteOf(uint64_t wr_id, const MemoryRegion& local, const MemoryRegion& remote,
                    uint32_t bytes, bool signaled = true) {
  SendRequest w;
  w.wr_id = wr_id;
  w.opcode = Opcode::kWrite;
  w.sge[0] = {reinterpret_cast<uintptr_t>(local.addr()), bytes, local.lkey()};
  w.num_sge = 1;
  w.remote_addr = reinterpret_cast<uintptr_t>(remote.addr());
  w.rkey = remote.rkey();
  w.signaled = signaled;
  return w;
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

// Starts a shell command bounded in time, without waiting for it.
pid_t StartShell(const std::string& command) {
  const std::string line = StrCat("exec timeout 30 ", command, " >/dev/null 2>&1");
  const pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// Waits up to `within` for `pid`; its exit status, or -1 (still running: a removal blocked in
// the kernel cannot be killed), -2 (killed by a signal), -3 (no such child).
int WaitChild(pid_t pid, Nanos within) {
  for (const auto deadline = steady_clock::now() + within;;) {
    int status = 0;
    const pid_t done = waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    if (done < 0) return -3;  // not our child (or already reaped)
    if (steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

int Shell(const std::string& command) {
  const pid_t pid = StartShell(command);
  return pid < 0 ? -1 : WaitChild(pid, std::chrono::seconds(35));
}

// A veth pair and an rdma_rxe device on one end, named after this process; the link starts down.
// Only inside the project's own VM (RXE_VM=1, root): it changes the machine's network.
class ScratchRxeDevice {
 public:
  ScratchRxeDevice() {
    const char* in_vm = std::getenv("RXE_VM");
    if (in_vm == nullptr || std::string(in_vm) != "1" || geteuid() != 0) {
      skip_ =
          "needs root inside the soft-RoCE VM (RXE_VM=1): it adds a veth pair and an rxe device";
      return;
    }
    const int pid = getpid();
    netdev_ = StrCat("ftva", pid % 100000);
    peer_netdev_ = StrCat("ftvb", pid % 100000);
    device_ = StrCat("ftrxe", pid % 100000);
    address_ = StrCat("10.", 100 + pid % 100, ".", pid / 100 % 250, ".1");
    if (Shell(StrCat("ip link add ", netdev_, " type veth peer name ", peer_netdev_)) != 0 ||
        Shell(StrCat("ip addr add ", address_, "/24 dev ", netdev_)) != 0 ||
        Shell(StrCat("rdma link add ", device_, " type rxe netdev ", netdev_)) != 0) {
      skip_ = StrCat("could not make the scratch device ", device_, " on ", netdev_,
                     " (ip / rdma link add failed)");
    }
  }
  // Deleting the netdev unregisters the rxe device in the background (it never blocks here).
  ~ScratchRxeDevice() {
    if (!netdev_.empty()) Shell(StrCat("ip link del ", netdev_));
  }
  ScratchRxeDevice(const ScratchRxeDevice&) = delete;
  ScratchRxeDevice& operator=(const ScratchRxeDevice&) = delete;

  const std::string& skip() const { return skip_; }
  const std::string& device() const { return device_; }
  const std::string& address() const { return address_; }
  bool SetLink(bool up) {
    const char* state = up ? "up" : "down";
    return Shell(StrCat("ip link set ", netdev_, " ", state)) == 0 &&
           Shell(StrCat("ip link set ", peer_netdev_, " ", state)) == 0;
  }
  // `rdma link delete`, started: it returns once every process closed the device.
  pid_t StartRemoval() const { return StartShell(StrCat("rdma link delete ", device_)); }

 private:
  std::string skip_;
  std::string netdev_;
  std::string peer_netdev_;
  std::string device_;
  std::string address_;
};

// Runs `body` in a child process that writes its findings to `out` (a pipe); returns what it
// wrote, read until it exits (bounded: the body's own waits are bounded, and so is this read).
std::string RunChild(const std::function<void(int out)>& body, Nanos within,
                     const std::function<void(const std::string&)>& on_line = {}) {
  int fds[2];
  if (pipe(fds) != 0) return "FAIL: pipe\n";
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return "FAIL: fork\n";
  }
  if (pid == 0) {
    close(fds[0]);
    body(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string report;
  size_t handled = 0;
  const auto deadline = steady_clock::now() + within;
  while (steady_clock::now() < deadline) {
    pollfd p{.fd = fds[0], .events = POLLIN, .revents = 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buffer[512];
    const ssize_t n = read(fds[0], buffer, sizeof(buffer));
    if (n <= 0) break;
    report.append(buffer, static_cast<size_t>(n));
    for (size_t end; on_line && (end = report.find('\n', handled)) != std::string::npos;) {
      on_line(report.substr(handled, end - handled));
      handled = end + 1;
    }
  }
  close(fds[0]);
  if (const int status = WaitChild(pid, std::chrono::seconds(5)); status != 0) {
    if (status == -1) kill(pid, SIGKILL);
    WaitChild(pid, std::chrono::seconds(5));
    report += StrCat("FAIL: the child ", status == -1 ? "did not finish in time" : "failed", " (",
                     status, ")\n");
  }
  return report;
}

void Say(int out, const std::string& line) {
  const std::string text = line + "\n";
  [[maybe_unused]] const ssize_t n = write(out, text.data(), text.size());
}

TEST_F(RdmaTest, PortThatIsNotActiveIsAClearErrorNamingIt) {
  SKIP_WITHOUT_DEVICE();
  ScratchRxeDevice scratch;
  if (!scratch.skip().empty()) GTEST_SKIP() << scratch.skip();
  const AddressBook book = PortRangeAddressBook(scratch.address(), rdma_test::BasePort(2, 5), 2);
  const std::string report = RunChild(
      [&](int out) {
        auto fabric = CreateRdmaFabric(0, {}, book);
        Say(out, fabric.ok() ? "created" : fabric.status().ToString());
      },
      std::chrono::seconds(30));
  EXPECT_NE(report.find("FailedPrecondition"), std::string::npos) << report;
  EXPECT_NE(report.find(StrCat("RDMA device ", scratch.device(), " is not active (down)")),
            std::string::npos)
      << report;
  EXPECT_NE(report.find("ip link set"), std::string::npos) << report;
}

// The device goes away under two connected Fabrics: each reports kDeviceError, the queue pair
// fails and its work cannot succeed; once the Fabrics are gone the removal finishes.
TEST_F(RdmaTest, DeviceRemovalIsADeviceErrorAndFailsTheQueuePairs) {
  SKIP_WITHOUT_DEVICE();
  ScratchRxeDevice scratch;
  if (!scratch.skip().empty()) GTEST_SKIP() << scratch.skip();
  ASSERT_TRUE(scratch.SetLink(true));
  const AddressBook book = PortRangeAddressBook(scratch.address(), rdma_test::BasePort(2, 6), 2);
  const std::string device = scratch.device();
  pid_t removal = -1;
  const std::string report = RunChild(
      [&](int out) {
        RdmaOptions options;
        options.device = device;
        // The port turns active a moment after the link is up.
        Result<std::unique_ptr<Fabric>> a = Status::Internal("not created");
        for (const auto deadline = steady_clock::now() + std::chrono::seconds(10);
             steady_clock::now() < deadline; std::this_thread::sleep_for(milliseconds(50))) {
          a = CreateRdmaFabric(0, options, book);
          if (a.ok() || a.status().message().find("is not active") == std::string_view::npos) {
            break;
          }
        }
        auto b = CreateRdmaFabric(1, options, book);
        if (!a.ok() || !b.ok()) return Say(out, StrCat("FAIL: ", a.status(), " / ", b.status()));
        std::vector<std::byte> src(64, std::byte{7});
        std::vector<std::byte> dst(64);
        auto src_mr = (*a)->RegisterMemory(src.data(), src.size(), kAccessLocalWrite);
        auto dst_mr =
            (*b)->RegisterMemory(dst.data(), dst.size(), kAccessLocalWrite | kAccessRemoteWrite);
        if (!src_mr.ok() || !dst_mr.ok()) return Say(out, "FAIL: RegisterMemory");
        auto [qa, qb] = Connect(**a, **b);
        if (!qa || !qb) return Say(out, "FAIL: Connect");
        Say(out, "ready");
        // Both nodes learn of the removal from an event; nobody polls completions meanwhile.
        bool a_told = false;
        bool b_told = false;
        for (const auto deadline = steady_clock::now() + std::chrono::seconds(20);
             !(a_told && b_told) && steady_clock::now() < deadline;) {
          for (auto [fabric, told] : {std::pair{a->get(), &a_told}, std::pair{b->get(), &b_told}}) {
            Event e;
            while (fabric->PollEvents({&e, 1}) == 1) {
              Say(out, StrCat("event ", EventTypeName(e.type), ": ", e.detail));
              if (e.type == EventType::kDeviceError) *told = true;
            }
          }
          std::this_thread::sleep_for(milliseconds(5));
        }
        if (!a_told || !b_told) Say(out, "FAIL: no kDeviceError on both nodes within 20 s");
        // The listen id's event may come before the connection's: wait for the QP, bounded.
        for (const auto deadline = steady_clock::now() + std::chrono::seconds(10);
             qa->state() != QpState::kError && steady_clock::now() < deadline;) {
          std::this_thread::sleep_for(milliseconds(5));
        }
        if (qa->state() != QpState::kError) Say(out, "FAIL: the queue pair is not in error");
        const SendRequest write = WriteOf(1, **src_mr, **dst_mr, 64);
        if (Status posted = qa->PostSend({&write, 1}); posted.ok()) {
          const std::optional<Completion> c = PollOne(**a, std::chrono::seconds(10));
          if (!c) Say(out, "FAIL: a WRITE posted after the removal never completed");
          if (c && c->status == WcStatus::kSuccess) Say(out, "FAIL: a WRITE succeeded");
        }
        Say(out, "done");
      },
      std::chrono::seconds(60),
      [&](const std::string& line) {
        if (line == "ready") removal = scratch.StartRemoval();
      });
  EXPECT_NE(report.find("done"), std::string::npos) << report;
  EXPECT_EQ(report.find("FAIL"), std::string::npos) << report;
  EXPECT_NE(report.find("the RDMA device was removed"), std::string::npos) << report;
  ASSERT_GT(removal, 0) << report;
  EXPECT_EQ(WaitChild(removal, std::chrono::seconds(30)), 0)
      << "rdma link delete " << device << " did not finish once the Fabrics were gone";
  const std::vector<std::string> devices = ListRdmaDevices();
  EXPECT_EQ(std::count(devices.begin(), devices.end(), device), 0);
  std::printf("%s", report.c_str());
}

}  // namespace
}  // namespace ft::verbs
