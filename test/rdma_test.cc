// rdma-specific tests (ctest label `rdma`): clear errors for a missing device or bad settings,
// a constructor failing at every step leaks nothing, handles all go when objects go, memlock,
// timing of a dead peer. Cases that need a device skip without one; the error cases run anywhere.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
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

// A CQ that overruns raises kDeviceError and fails the node's QPs, as in the loopback model.
TEST_F(RdmaTest, CqOverrunIsADeviceErrorAndFailsTheQueuePairs) {
  SKIP_WITHOUT_DEVICE();
  RdmaOptions options;
  options.cq_depth = 16;
  options.max_send_wr = 256;
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

}  // namespace
}  // namespace ft::verbs
