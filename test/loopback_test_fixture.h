// The fixture and helpers of the loopback tests (loopback_test.cc, loopback_faults_test.cc,
// loopback_concurrency_test.cc): a network, its nodes' Fabrics created on first use, buffers
// that outlive them, and polls bounded by a deadline.
#ifndef FT_TEST_LOOPBACK_TEST_FIXTURE_H_
#define FT_TEST_LOOPBACK_TEST_FIXTURE_H_

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

namespace ft::verbs::loopback_test {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr uint32_t kTargetAccess = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;
constexpr Nanos kDeadline = seconds(10);

inline bool AllBytes(std::span<const std::byte> a, uint8_t value) {
  return std::all_of(a.begin(), a.end(), [&](std::byte b) { return b == std::byte{value}; });
}

inline bool Equal(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

inline void FillPattern(std::span<std::byte> buffer, uint64_t seed) {
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

}  // namespace ft::verbs::loopback_test

#endif  // FT_TEST_LOOPBACK_TEST_FIXTURE_H_
