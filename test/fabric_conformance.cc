// The Fabric conformance suite (see fabric_conformance.h). Every wait is bounded by a deadline;
// nothing sleeps.
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

namespace {

constexpr uint32_t kTargetAccess = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;

bool Equal(std::span<const std::byte> a, std::span<const std::byte> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

bool AllBytes(std::span<const std::byte> a, uint8_t value) {
  return std::all_of(a.begin(), a.end(), [&](std::byte b) { return b == std::byte{value}; });
}

std::vector<std::byte> Bytes(const std::string& text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

// Status helpers for readable expectations.
#define EXPECT_WC(completion, expected_status)                                       \
  do {                                                                               \
    const auto& wc_ = (completion);                                                  \
    ASSERT_TRUE(wc_.has_value()) << "no completion within the deadline";             \
    EXPECT_EQ(WcStatusName(wc_->status), std::string(WcStatusName(expected_status))) \
        << "wr_id " << wc_->wr_id;                                                   \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Registration

TEST_P(FabricConformanceTest, RegistrationReportsRangeAndDistinctKeys) {
  std::span<std::byte> a = Buffer(4096);
  std::span<std::byte> b = Buffer(100);
  MemoryRegion* ma = Register(0, a, kTargetAccess);
  MemoryRegion* mb = Register(0, b, kAccessLocalWrite);
  MemoryRegion* mc = Register(0, a.subspan(1000, 8), kAccessLocalWrite);
  ASSERT_TRUE(ma && mb && mc);
  EXPECT_EQ(ma->addr(), a.data());
  EXPECT_EQ(ma->length(), a.size());
  EXPECT_NE(ma->lkey(), mb->lkey());
  EXPECT_NE(ma->lkey(), mc->lkey());
  EXPECT_NE(ma->rkey(), mb->rkey());
  EXPECT_NE(ma->rkey(), mc->rkey());
  EXPECT_TRUE(ma->Contains(a.data(), a.size()));
  EXPECT_TRUE(ma->Contains(a.data() + 4095, 1));
  EXPECT_FALSE(ma->Contains(a.data() + 4095, 2));
  EXPECT_FALSE(mc->Contains(a.data(), 1));
}

TEST_P(FabricConformanceTest, RemoteWriteAccessRequiresLocalWrite) {
  std::span<std::byte> a = Buffer(64);
  auto mr = Node(0).RegisterMemory(a.data(), a.size(), kAccessRemoteWrite);
  EXPECT_EQ(mr.status().code(), StatusCode::kInvalidArgument) << mr.status();
}

// ---------------------------------------------------------------------------------------------
// WRITE and READ

TEST_P(FabricConformanceTest, WriteLandsAndCompletes) {
  std::span<std::byte> src = PatternBuffer(64 << 10, 1);
  std::span<std::byte> dst = Buffer(64 << 10);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const SendRequest w = Write(7, SgeOf(*local, 0, src.size()), *remote, 0);
  size_t posted = 99;
  ASSERT_TRUE(qa->PostSend({&w, 1}, &posted).ok());
  EXPECT_EQ(posted, 1u);
  auto c = PollOne(0);
  EXPECT_WC(c, WcStatus::kSuccess);
  EXPECT_EQ(c->wr_id, 7u);
  EXPECT_EQ(c->qp, qa->id());
  EXPECT_EQ(c->opcode, Opcode::kWrite);
  EXPECT_TRUE(Equal(src, dst));
  EXPECT_EQ(qa->state(), QpState::kConnected);
  EXPECT_EQ(qa->peer(), 1u);
  EXPECT_EQ(qb->peer(), 0u);
}

TEST_P(FabricConformanceTest, BadRemoteKeyRangeOrAccessFailsAndWritesNothing) {
  std::span<std::byte> src = PatternBuffer(256, 2);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  std::span<std::byte> dst = Buffer(256, 0xAB);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  std::span<std::byte> readonly = Buffer(256, 0xAB);
  MemoryRegion* remote_ro = Register(1, readonly, kAccessLocalWrite | kAccessRemoteRead);
  ASSERT_TRUE(local && remote && remote_ro);
  struct Case {
    const char* name;
    SendRequest request;
  };
  std::vector<Case> cases;
  {
    SendRequest r = Write(1, SgeOf(*local, 0, 64), *remote, 0);
    r.rkey = remote->rkey() ^ 0x5A5A5A5Au;
    cases.push_back({"bad rkey", r});
  }
  {
    SendRequest r = Write(2, SgeOf(*local, 0, 64), *remote, 0);
    r.rkey = local->rkey();  // a key of the wrong node
    cases.push_back({"rkey of another node", r});
  }
  cases.push_back({"range past the end", Write(3, SgeOf(*local, 0, 64), *remote, 256 - 32)});
  {
    SendRequest r = Write(4, SgeOf(*local, 0, 64), *remote, 0);
    r.remote_addr -= 16;
    cases.push_back({"range before the start", r});
  }
  cases.push_back({"no remote write access", Write(5, SgeOf(*local, 0, 64), *remote_ro, 0)});
  for (const Case& test : cases) {
    SCOPED_TRACE(test.name);
    auto [qa, qb] = Connect(0, 1);
    ASSERT_TRUE(qa && qb);
    const SendRequest after = Write(100, SgeOf(*local, 0, 8), *remote, 0);
    ASSERT_TRUE(qa->PostSend({&test.request, 1}).ok());
    ASSERT_TRUE(qa->PostSend({&after, 1}).ok());
    auto c = PollOne(0);
    EXPECT_WC(c, WcStatus::kRemoteAccessError);
    EXPECT_EQ(c->wr_id, test.request.wr_id);
    EXPECT_EQ(c->qp, qa->id());
    auto flushed = PollOne(0);
    EXPECT_WC(flushed, WcStatus::kFlushed);
    EXPECT_EQ(flushed->wr_id, 100u);
    EXPECT_EQ(qa->state(), QpState::kError);
    EXPECT_TRUE(AllBytes(dst, 0xAB));
    EXPECT_TRUE(AllBytes(readonly, 0xAB));
  }
}

TEST_P(FabricConformanceTest, ReadFetchesRemoteBytes) {
  std::span<std::byte> remote_bytes = PatternBuffer(10000, 3);
  std::span<std::byte> local_bytes = Buffer(10000);
  MemoryRegion* remote = Register(1, remote_bytes, kAccessLocalWrite | kAccessRemoteRead);
  MemoryRegion* local = Register(0, local_bytes, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(remote && local && qa && qb);
  const SendRequest r = Read(9, SgeOf(*local, 0, 9000), *remote, 1000);
  ASSERT_TRUE(qa->PostSend({&r, 1}).ok());
  auto c = PollOne(0);
  EXPECT_WC(c, WcStatus::kSuccess);
  EXPECT_EQ(c->opcode, Opcode::kRead);
  EXPECT_TRUE(Equal(local_bytes.first(9000), remote_bytes.subspan(1000, 9000)));
  EXPECT_TRUE(AllBytes(local_bytes.subspan(9000), 0));
}

TEST_P(FabricConformanceTest, ReadNeedsRemoteReadAccess) {
  std::span<std::byte> remote_bytes = PatternBuffer(512, 4);
  std::span<std::byte> local_bytes = Buffer(512, 0xCD);
  MemoryRegion* remote = Register(1, remote_bytes, kAccessLocalWrite | kAccessRemoteWrite);
  MemoryRegion* local = Register(0, local_bytes, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(remote && local && qa && qb);
  const SendRequest r = Read(1, SgeOf(*local, 0, 512), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&r, 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kRemoteAccessError);
  EXPECT_TRUE(AllBytes(local_bytes, 0xCD));
}

TEST_P(FabricConformanceTest, ReadIntoMemoryWithoutLocalWriteIsProtectionError) {
  std::span<std::byte> remote_bytes = PatternBuffer(512, 5);
  std::span<std::byte> local_bytes = Buffer(512, 0xCD);
  MemoryRegion* remote = Register(1, remote_bytes, kTargetAccess);
  MemoryRegion* local = Register(0, local_bytes, 0);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(remote && local && qa && qb);
  const SendRequest r = Read(1, SgeOf(*local, 0, 512), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&r, 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kLocalProtectionError);
  EXPECT_TRUE(AllBytes(local_bytes, 0xCD));
}

TEST_P(FabricConformanceTest, LocalSgeOutsideItsRegionIsProtectionError) {
  std::span<std::byte> src = PatternBuffer(1024, 6);
  std::span<std::byte> dst = Buffer(4096, 0xEE);
  MemoryRegion* local = Register(0, src.first(512), kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  ASSERT_TRUE(local && remote);
  std::vector<SendRequest> cases;
  cases.push_back(Write(1, SgeOf(*local, 256, 512), *remote, 0));  // runs past the region
  {
    SendRequest r = Write(2, SgeOf(*local, 0, 64), *remote, 0);
    r.sge[0].lkey ^= 0x77777777u;  // unknown lkey
    cases.push_back(r);
  }
  for (const SendRequest& r : cases) {
    SCOPED_TRACE(r.wr_id);
    auto [qa, qb] = Connect(0, 1);
    ASSERT_TRUE(qa && qb);
    ASSERT_TRUE(qa->PostSend({&r, 1}).ok());
    auto c = PollOne(0);
    EXPECT_WC(c, WcStatus::kLocalProtectionError);
    EXPECT_EQ(c->wr_id, r.wr_id);
    EXPECT_TRUE(AllBytes(dst, 0xEE));
  }
}

TEST_P(FabricConformanceTest, MultiSgeGatherWriteAndScatterRead) {
  std::span<std::byte> src = PatternBuffer(3000, 7);
  std::span<std::byte> src2 = PatternBuffer(500, 8);
  std::span<std::byte> dst = Buffer(4096);
  MemoryRegion* l1 = Register(0, src, kAccessLocalWrite);
  MemoryRegion* l2 = Register(0, src2, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(l1 && l2 && remote && qa && qb);
  SendRequest w = Write(1, SgeOf(*l1, 100, 1000), *remote, 10);
  w.sge[1] = SgeOf(*l2, 0, 500);
  w.sge[2] = SgeOf(*l1, 2000, 1000);
  w.num_sge = 3;
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kSuccess);
  EXPECT_TRUE(Equal(dst.subspan(10, 1000), src.subspan(100, 1000)));
  EXPECT_TRUE(Equal(dst.subspan(1010, 500), src2));
  EXPECT_TRUE(Equal(dst.subspan(1510, 1000), src.subspan(2000, 1000)));
  EXPECT_TRUE(AllBytes(dst.first(10), 0));
  EXPECT_TRUE(AllBytes(dst.subspan(2510), 0));

  std::span<std::byte> back = Buffer(2500);
  MemoryRegion* lb = Register(0, back, kAccessLocalWrite);
  ASSERT_NE(lb, nullptr);
  SendRequest r = Read(2, SgeOf(*lb, 2000, 500), *remote, 10);
  r.sge[1] = SgeOf(*lb, 0, 1000);
  r.sge[2] = SgeOf(*lb, 1000, 600);
  r.sge[3] = SgeOf(*lb, 1600, 400);
  r.num_sge = kMaxSge;
  ASSERT_TRUE(qa->PostSend({&r, 1}).ok());
  EXPECT_WC(PollOne(0), WcStatus::kSuccess);
  EXPECT_TRUE(Equal(back.subspan(2000, 500), dst.subspan(10, 500)));
  EXPECT_TRUE(Equal(back.first(2000), dst.subspan(510, 2000)));
}

TEST_P(FabricConformanceTest, InlineWriteCopiesThePayloadAtPostTime) {
  const uint32_t inline_bytes = std::min<uint32_t>(Node(0).limits().max_inline_bytes, 64);
  if (inline_bytes == 0) GTEST_SKIP() << "backend has no inline data";
  std::span<std::byte> src = PatternBuffer(inline_bytes, 9);
  const std::vector<std::byte> original(src.begin(), src.end());
  std::span<std::byte> dst = Buffer(inline_bytes);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  SendRequest w = Write(1, SgeOf(*local, 0, inline_bytes), *remote, 0);
  w.inline_data = true;
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  std::fill(src.begin(), src.end(), std::byte{0xFF});  // reuse at once
  EXPECT_WC(PollOne(0), WcStatus::kSuccess);
  EXPECT_TRUE(Equal(dst, original));
}

// ---------------------------------------------------------------------------------------------
// Post-time validation and send-queue accounting

TEST_P(FabricConformanceTest, PostSendRejectsMalformedRequests) {
  std::span<std::byte> src = PatternBuffer(64, 10);
  std::span<std::byte> dst = Buffer(64);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const Limits& limits = Node(0).limits();
  const SendRequest good = Write(1, SgeOf(*local, 0, 8), *remote, 0);
  std::vector<std::pair<const char*, SendRequest>> bad;
  {
    SendRequest r = good;
    r.num_sge = kMaxSge + 1;
    bad.emplace_back("too many SGEs", r);
    r.num_sge = -1;
    bad.emplace_back("negative num_sge", r);
  }
  {
    SendRequest r = good;
    r.sge[0].length = limits.max_message_bytes / 2 + 1;
    r.sge[1] = r.sge[0];
    r.num_sge = 2;
    bad.emplace_back("message too large", r);
  }
  {
    SendRequest r = good;
    r.inline_data = true;
    r.sge[0].length = limits.max_inline_bytes + 1;
    bad.emplace_back("inline too large", r);
  }
  {
    SendRequest r = good;
    r.opcode = Opcode::kRecv;
    bad.emplace_back("RECV opcode", r);
  }
  for (const auto& [name, r] : bad) {
    SCOPED_TRACE(name);
    size_t posted = 99;
    const Status status = qa->PostSend({&r, 1}, &posted);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(posted, 0u);
  }
  // In a batch, the requests before the bad one are posted and complete; none after it is.
  std::vector<SendRequest> batch = {good, bad[0].second, good};
  batch[0].wr_id = 10;
  batch[2].wr_id = 12;
  size_t posted = 99;
  EXPECT_EQ(qa->PostSend(batch, &posted).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(posted, 1u);
  auto c = PollOne(0);
  EXPECT_WC(c, WcStatus::kSuccess);
  EXPECT_EQ(c->wr_id, 10u);
  EXPECT_FALSE(PollOne(0, milliseconds(50)).has_value());
  EXPECT_EQ(qa->state(), QpState::kConnected);
}

TEST_P(FabricConformanceTest, SendQueueOverflowIsResourceExhausted) {
  std::span<std::byte> src = PatternBuffer(8, 11);
  std::span<std::byte> dst = Buffer(8);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const size_t depth = static_cast<size_t>(Node(0).limits().max_send_wr);
  // A batch larger than the queue: the first `depth` are posted, the rest refused at once.
  std::vector<SendRequest> batch(depth + 3, Write(0, SgeOf(*local, 0, 8), *remote, 0, false));
  for (size_t i = 0; i < batch.size(); ++i) batch[i].wr_id = i;
  batch[depth - 1].signaled = true;
  size_t posted = 0;
  const Status status = qa->PostSend(batch, &posted);
  EXPECT_EQ(status.code(), StatusCode::kResourceExhausted) << status;
  EXPECT_EQ(posted, depth);
  // Still full until the signaled completion is polled, however long the device takes.
  EXPECT_EQ(qa->PostSend({&batch[0], 1}).code(), StatusCode::kResourceExhausted);
  auto c = PollOne(0);
  EXPECT_WC(c, WcStatus::kSuccess);
  EXPECT_EQ(c->wr_id, depth - 1);
  // Polling it freed every slot (the unsignaled ones before it included).
  posted = 0;
  EXPECT_TRUE(qa->PostSend(std::span(batch).first(depth), &posted).ok());
  EXPECT_EQ(posted, depth);
  c = PollOne(0);
  EXPECT_WC(c, WcStatus::kSuccess);
  EXPECT_EQ(c->wr_id, depth - 1);
}

TEST_P(FabricConformanceTest, SelectiveSignalingProducesOnlySignaledCompletions) {
  std::span<std::byte> src = PatternBuffer(1024, 12);
  std::span<std::byte> dst = Buffer(1024);
  MemoryRegion* local = Register(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Register(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const size_t depth = static_cast<size_t>(Node(0).limits().max_send_wr);
  const size_t count = std::min<size_t>(16, depth);  // one batch of `count`, signaled twice
  std::vector<SendRequest> batch;
  for (size_t i = 0; i < count; ++i) {
    const bool signaled = i == count / 2 - 1 || i == count - 1;
    batch.push_back(Write(i, SgeOf(*local, i * 64, 64), *remote, i * 64, signaled));
  }
  ASSERT_TRUE(qa->PostSend(batch).ok());
  auto c = PollN(0, 2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].wr_id, count / 2 - 1);
  EXPECT_EQ(c[1].wr_id, count - 1);
  EXPECT_EQ(c[0].status, WcStatus::kSuccess);
  EXPECT_EQ(c[1].status, WcStatus::kSuccess);
  EXPECT_TRUE(Equal(src.first(count * 64), dst.first(count * 64)));
  EXPECT_FALSE(PollOne(0, milliseconds(50)).has_value());

  // Only unsignaled requests: their slots are never freed (the queue stays full).
  std::vector<SendRequest> unsignaled(depth, Write(0, SgeOf(*local, 0, 8), *remote, 0, false));
  ASSERT_TRUE(qa->PostSend(unsignaled).ok());
  EXPECT_FALSE(PollOne(0, milliseconds(50)).has_value());
  EXPECT_EQ(qa->PostSend({&unsignaled[0], 1}).code(), StatusCode::kResourceExhausted);
}

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
