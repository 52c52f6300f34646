// The rdma backend on a device that changes under it: a port that is down, and a device removed
// while two Fabrics use it. Both run on a scratch rxe device the test adds in the VM (so rxe0,
// which the other tests share, is never disturbed); the verbs work runs in a child process,
// because librdmacm keeps the devices it saw open for the life of a process.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

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

using rdma_test::RdmaTest;
using rdma_test::WriteOf;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

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
