// The fixture of the rdma backend's own tests (rdma_test.cc, rdma_device_test.cc): nodes of
// one test in this process on distinct ports of the test address, a Connect of two fabrics, a
// bounded poll, and the skip when no RDMA device exists. In a named namespace: gtest requires one
// fixture type per test suite across the binary's files.
#ifndef FT_TEST_RDMA_TEST_FIXTURE_H_
#define FT_TEST_RDMA_TEST_FIXTURE_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test/rdma_test_util.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"

namespace ft::verbs::rdma_test {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

#define SKIP_WITHOUT_DEVICE()                                                             \
  do {                                                                                    \
    if (const std::string reason = ::ft::verbs::rdma_test::SkipReason(); !reason.empty()) \
      GTEST_SKIP() << reason;                                                             \
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

inline std::string Address() {
  const std::string address = TestAddress();
  return address.empty() ? "127.0.0.1" : address;
}

class RdmaTest : public ::testing::Test {
 protected:
  static constexpr NodeId kNodes = 4;

  AddressBook Book(int block = 2) {
    return PortRangeAddressBook(Address(), BasePort(kNodes, block), kNodes);
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

// A WRITE of `bytes` from the start of `local` to the start of `remote`.
inline SendRequest WriteOf(uint64_t wr_id, const MemoryRegion& local, const MemoryRegion& remote,
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

}  // namespace ft::verbs::rdma_test

#endif  // FT_TEST_RDMA_TEST_FIXTURE_H_
