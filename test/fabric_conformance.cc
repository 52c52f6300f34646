// The Fabric conformance suite (see fabric_conformance.h): its fixture. The tests are in
// fabric_conformance_datapath.cc, _messaging.cc and _connections.cc. Every wait is bounded by a
// deadline; nothing sleeps.
#include "test/fabric_conformance.h"
#include "test/work_requests.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

namespace ft::verbs::conformance {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

void PrintTo(const BackendParam& param, std::ostream* out) { *out << param.name; }

std::string BackendParamName(const ::testing::TestParamInfo<BackendParam>& info) {
  return info.param.name;
}

// ---------------------------------------------------------------------------------------------
// Fixture

void FabricConformanceTest::SetUp() {
  backend_ = GetParam().make();
  ASSERT_NE(backend_, nullptr);
  ASSERT_GE(backend_->nodes(), 3);
  trace_ = std::make_unique<::testing::ScopedTrace>(__FILE__, __LINE__, backend_->Describe());
}

void FabricConformanceTest::TearDown() {
  for (auto& [id, handles] : nodes_) handles.qps.clear();
  for (auto& [id, handles] : nodes_) handles.Reset();
  nodes_.clear();
  backend_.reset();
  trace_.reset();
}

Fabric& FabricConformanceTest::Node(NodeId id) {
  NodeHandles& handles = nodes_[id];
  if (handles.fabric == nullptr) {
    auto fabric = backend_->CreateNode(id);
    if (!fabric.ok()) {
      ADD_FAILURE() << "CreateNode(" << id << "): " << fabric.status();
      std::abort();  // a test cannot go on without its node
    }
    handles.fabric = std::move(fabric).value();
  }
  return *handles.fabric;
}

NodeHandles& FabricConformanceTest::Handles(NodeId id) {
  Node(id);
  return nodes_[id];
}

void FabricConformanceTest::Kill(NodeId id) { backend_->KillNode(id, Handles(id)); }

std::span<std::byte> FabricConformanceTest::Buffer(size_t bytes, uint8_t fill) {
  buffers_.emplace_back(bytes, std::byte{fill});
  return buffers_.back();
}

std::span<std::byte> FabricConformanceTest::PatternBuffer(size_t bytes, uint32_t seed) {
  std::span<std::byte> buffer = Buffer(bytes);
  uint32_t x = seed * 2654435761u + 1;
  for (std::byte& b : buffer) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<std::byte>(x >> 24);
  }
  return buffer;
}

MemoryRegion* FabricConformanceTest::Register(NodeId id, std::span<std::byte> buffer,
                                              uint32_t access) {
  auto mr = Node(id).RegisterMemory(buffer.data(), buffer.size(), access);
  if (!mr.ok()) {
    ADD_FAILURE() << "RegisterMemory on node " << id << ": " << mr.status();
    return nullptr;
  }
  NodeHandles& handles = Handles(id);
  handles.regions.push_back(std::move(mr).value());
  return handles.regions.back().get();
}

std::pair<QueuePair*, QueuePair*> FabricConformanceTest::Connect(NodeId a, NodeId b,
                                                                 std::vector<std::byte> data_a,
                                                                 std::vector<std::byte> data_b) {
  Fabric& fa = Node(a);
  Fabric& fb = Node(b);
  Result<std::vector<std::unique_ptr<QueuePair>>> rb = Status::Internal("not run");
  std::thread peer([&] {
    const ConnectRequest request{a, std::move(data_b), {}};
    rb = fb.Connect({&request, 1}, kConnectTimeout);
  });
  const ConnectRequest request{b, std::move(data_a), {}};
  auto ra = fa.Connect({&request, 1}, kConnectTimeout);
  peer.join();
  if (!ra.ok() || !rb.ok()) {
    ADD_FAILURE() << "Connect " << a << " <-> " << b << ": " << ra.status() << " / " << rb.status();
    return {nullptr, nullptr};
  }
  EXPECT_EQ(ra->size(), 1u);
  EXPECT_EQ(rb->size(), 1u);
  Handles(a).qps.push_back(std::move(ra->front()));
  Handles(b).qps.push_back(std::move(rb->front()));
  return {Handles(a).qps.back().get(), Handles(b).qps.back().get()};
}

std::optional<Completion> FabricConformanceTest::PollOne(NodeId id, Nanos within) {
  auto& stash = stashed_[id];
  if (!stash.empty()) {
    const Completion c = stash.front();
    stash.pop_front();
    return c;
  }
  Fabric& fabric = Node(id);
  const auto deadline = steady_clock::now() + within;
  while (true) {
    Completion c;
    if (fabric.PollCompletions({&c, 1}) == 1) return c;
    const auto now = steady_clock::now();
    if (now >= deadline) return std::nullopt;
    fabric.WaitForActivity(std::min<Nanos>(deadline - now, milliseconds(10)));
  }
}

std::vector<Completion> FabricConformanceTest::PollN(NodeId id, size_t count, Nanos within) {
  std::vector<Completion> out;
  const auto deadline = steady_clock::now() + within;
  while (out.size() < count) {
    const auto now = steady_clock::now();
    if (now >= deadline) break;
    auto c = PollOne(id, deadline - now);
    if (!c) break;
    out.push_back(*c);
  }
  return out;
}

std::optional<Event> FabricConformanceTest::WaitEvent(NodeId id, EventType type, uint32_t qp,
                                                      Nanos within) {
  Fabric& fabric = Node(id);
  const auto deadline = steady_clock::now() + within;
  while (true) {
    Event event;
    while (fabric.PollEvents({&event, 1}) == 1) {
      if (event.type == type && event.qp == qp) return event;
    }
    Completion c;
    while (fabric.PollCompletions({&c, 1}) == 1) stashed_[id].push_back(c);
    const auto now = steady_clock::now();
    if (now >= deadline) return std::nullopt;
    fabric.WaitForActivity(std::min<Nanos>(deadline - now, milliseconds(10)));
  }
}

Sge FabricConformanceTest::SgeOf(const MemoryRegion& mr, size_t offset, size_t length) {
  return test::SgeOf(mr, offset, length);
}
SendRequest FabricConformanceTest::Write(uint64_t wr_id, Sge local, const MemoryRegion& remote,
                                         size_t remote_offset, bool signaled) {
  return test::Write(wr_id, local, remote, remote_offset, signaled);
}
SendRequest FabricConformanceTest::Read(uint64_t wr_id, Sge local, const MemoryRegion& remote,
                                        size_t remote_offset) {
  return test::Read(wr_id, local, remote, remote_offset);
}
SendRequest FabricConformanceTest::Send(uint64_t wr_id, Sge local, bool signaled) {
  return test::Send(wr_id, local, signaled);
}
RecvRequest FabricConformanceTest::Recv(uint64_t wr_id, Sge local) {
  return test::Recv(wr_id, local);
}

}  // namespace ft::verbs::conformance
