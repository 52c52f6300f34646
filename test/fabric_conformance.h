// The Fabric conformance suite: one set of TEST_Ps that every backend must pass (loopback and
// faulty(loopback) now; rdma on soft-RoCE under the ctest label `rdma`), so that the loopback model
// cannot drift from real RC verbs. The tests use only what a real device also does: no test here
// may depend on when exactly a completion appears (only that it does, within a bounded time) or on
// loopback's fault injection. Loopback-only behaviour lives in loopback_*test.cc.
//
// A backend plugs in with a FabricBackend and one line:
//
//   INSTANTIATE_TEST_SUITE_P(Rdma, FabricConformanceTest,
//                            ::testing::Values(BackendParam{"rdma", &MakeRdmaBackend}),
//                            BackendParamName);
#ifndef FT_TEST_FABRIC_CONFORMANCE_H_
#define FT_TEST_FABRIC_CONFORMANCE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ftengine/status.h"
#include "verbs/fabric.h"

namespace ft::verbs::conformance {

// Everything a test node owns, declared in creation order so that destruction runs in verbs'
// order (QPs, then memory regions, then the device).
struct NodeHandles {
  std::unique_ptr<Fabric> fabric;
  std::vector<std::unique_ptr<MemoryRegion>> regions;
  std::vector<std::unique_ptr<QueuePair>> qps;

  void Reset() {
    qps.clear();
    regions.clear();
    fabric.reset();
  }
};

// One backend under test: makes the nodes of one test. A new FabricBackend is made for every
// test and destroyed after all of its nodes.
class FabricBackend {
 public:
  virtual ~FabricBackend() = default;

  // Node ids CreateNode accepts are [0, nodes()); the suite needs at least 3.
  virtual int nodes() const = 0;
  // The Fabric of `node` (each id is created at most once per test, except after KillNode).
  virtual Result<std::unique_ptr<Fabric>> CreateNode(NodeId node) = 0;
  // Makes `node` disappear abruptly, as a crash would. `handles` are that node's objects: the
  // backend may destroy them (rdma: the way a process exit does) or leave them to the test,
  // which afterwards only destroys them.
  virtual void KillNode(NodeId node, NodeHandles& handles) = 0;
  // Printed with every failure (seed, device name, ...).
  virtual std::string Describe() const = 0;
  // A bound for completions that wait for a retry budget to run out (kRetryExceeded,
  // kRnrRetryExceeded): seconds on a real device.
  virtual Nanos SlowDeadline() const { return std::chrono::seconds(20); }
};

struct BackendParam {
  std::string name;
  std::function<std::unique_ptr<FabricBackend>()> make;
};
void PrintTo(const BackendParam& param, std::ostream* out);
std::string BackendParamName(const ::testing::TestParamInfo<BackendParam>& info);

class FabricConformanceTest : public ::testing::TestWithParam<BackendParam> {
 protected:
  static constexpr Nanos kDeadline = std::chrono::seconds(10);  // for anything not slow
  static constexpr Nanos kConnectTimeout = std::chrono::seconds(10);

  void SetUp() override;
  void TearDown() override;

  FabricBackend& backend() { return *backend_; }
  // The node's Fabric, created on first use.
  Fabric& Node(NodeId id);
  NodeHandles& Handles(NodeId id);
  void Kill(NodeId id);

  // A buffer that outlives every node of the test, filled with `fill`.
  std::span<std::byte> Buffer(size_t bytes, uint8_t fill = 0);
  // A buffer filled with a pattern derived from `seed`.
  std::span<std::byte> PatternBuffer(size_t bytes, uint32_t seed);
  MemoryRegion* Register(NodeId id, std::span<std::byte> buffer, uint32_t access);

  // Connects a QP pair between a and b (a's Connect here, b's on another thread).
  std::pair<QueuePair*, QueuePair*> Connect(NodeId a, NodeId b, std::vector<std::byte> data_a = {},
                                            std::vector<std::byte> data_b = {});

  // The next completion of `id` within `within`, or nullopt.
  std::optional<Completion> PollOne(NodeId id, Nanos within = kDeadline);
  // Polls until `count` completions arrived or `within` ran out.
  std::vector<Completion> PollN(NodeId id, size_t count, Nanos within = kDeadline);
  // Polls events (and completions, kept for PollOne) until one of `type` for `qp` arrives.
  std::optional<Event> WaitEvent(NodeId id, EventType type, uint32_t qp, Nanos within = kDeadline);

  // Request builders.
  static Sge SgeOf(const MemoryRegion& mr, size_t offset, size_t length);
  static SendRequest Write(uint64_t wr_id, Sge local, const MemoryRegion& remote,
                           size_t remote_offset, bool signaled = true);
  static SendRequest Read(uint64_t wr_id, Sge local, const MemoryRegion& remote,
                          size_t remote_offset);
  static SendRequest Send(uint64_t wr_id, Sge local, bool signaled = true);
  static RecvRequest Recv(uint64_t wr_id, Sge local);

 private:
  std::unique_ptr<FabricBackend> backend_;
  std::deque<std::vector<std::byte>> buffers_;  // outlive nodes_
  std::map<NodeId, NodeHandles> nodes_;
  std::map<NodeId, std::deque<Completion>> stashed_;  // completions seen while waiting for events
  std::unique_ptr<::testing::ScopedTrace> trace_;
};

}  // namespace ft::verbs::conformance

#endif  // FT_TEST_FABRIC_CONFORMANCE_H_
