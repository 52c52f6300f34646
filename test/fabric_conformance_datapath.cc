// Fabric conformance (see fabric_conformance.h): registration, WRITE and READ, post-time
// validation and send-queue accounting.
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

}  // namespace
}  // namespace ft::verbs::conformance
