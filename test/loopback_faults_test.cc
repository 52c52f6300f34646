// Loopback's fault injection: kill, revive, partition, torn writes and delays.
#include <gtest/gtest.h>

#include "test/loopback_test_fixture.h"

namespace ft::verbs::loopback_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Faults: kill, revive, partition

TEST_F(LoopbackTest, KillDisconnectsPeersStopsTheNodeAndFailsWorkToIt) {
  Init(3);
  std::span<std::byte> s0 = Buffer(64, 0xA0);
  std::span<std::byte> s1 = Buffer(64, 0xA1);
  std::span<std::byte> d1 = Buffer(64, 0);
  std::span<std::byte> d2 = Buffer(64, 0);
  MemoryRegion* l0 = Reg(0, s0, kAccessLocalWrite);
  MemoryRegion* l1 = Reg(1, s1, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q12, q21] = Connect(1, 2);
  ASSERT_TRUE(l0 && l1 && r1 && r2 && q01 && q10 && q12 && q21);
  const SendRequest to1[] = {Write(1, SgeOf(*l0, 0, 64), *r1, 0, false),
                             Write(2, SgeOf(*l0, 0, 64), *r1, 0, false)};
  ASSERT_TRUE(q01->PostSend(to1).ok());
  const SendRequest from1 = Write(3, SgeOf(*l1, 0, 64), *r2, 0);
  ASSERT_TRUE(q12->PostSend({&from1, 1}).ok());

  net().Kill(1);
  EXPECT_FALSE(net().alive(1));
  // Peers hear at once, without a progress step.
  for (auto [node, qp] : {std::pair{NodeId{0}, q01}, std::pair{NodeId{2}, q21}}) {
    auto events = Events(node);
    ASSERT_EQ(events.size(), 1u) << "node " << node;
    EXPECT_EQ(events[0].type, EventType::kDisconnected);
    EXPECT_EQ(events[0].peer, 1u);
    EXPECT_EQ(events[0].qp, qp->id());
  }
  // The killed node hears kDeviceError, executes nothing more and refuses new work.
  auto own = Events(1);
  ASSERT_EQ(own.size(), 1u);
  EXPECT_EQ(own[0].type, EventType::kDeviceError);
  EXPECT_EQ(own[0].detail, "node killed");
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(PollOnce(1).has_value());
  EXPECT_TRUE(AllBytes(d2, 0));
  EXPECT_EQ(q12->PostSend({&from1, 1}).code(), StatusCode::kUnavailable);
  EXPECT_EQ(q12->state(), QpState::kError);
  EXPECT_EQ(F(1).RegisterMemory(d1.data(), d1.size(), kTargetAccess).status().code(),
            StatusCode::kUnavailable);
  // Work queued to it: the first request per QP kRetryExceeded, the rest kFlushed.
  auto c = PollN(0, 2);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].wr_id, 1u);
  EXPECT_EQ(c[0].status, WcStatus::kRetryExceeded);
  EXPECT_EQ(c[1].wr_id, 2u);
  EXPECT_EQ(c[1].status, WcStatus::kFlushed);
  EXPECT_TRUE(AllBytes(d1, 0));
  EXPECT_EQ(q01->state(), QpState::kError);
  // Connecting to a dead node fails at once, naming it.
  const ConnectRequest to_dead[] = {{1, {}, {}}};
  auto connect = F(0).Connect(to_dead, kDeadline);
  EXPECT_EQ(connect.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(connect.status().message().find('1'), std::string_view::npos);
  EXPECT_EQ(net().CreateFabric(1).status().code(), StatusCode::kFailedPrecondition);

  // Revive: a replacement process gets a new Fabric; the old QPs stay dead.
  net().Revive(1);
  EXPECT_TRUE(net().alive(1));
  Fabric& reborn = Recreate(1);
  EXPECT_EQ(reborn.node(), 1u);
  std::span<std::byte> fresh = Buffer(64, 0);
  MemoryRegion* fresh_mr = Reg(1, fresh, kTargetAccess);
  auto [n01, n10] = Connect(0, 1);
  ASSERT_TRUE(fresh_mr && n01 && n10);
  const SendRequest again = Write(4, SgeOf(*l0, 0, 64), *fresh_mr, 0);
  ASSERT_TRUE(n01->PostSend({&again, 1}).ok());
  auto ok = PollOnce(0);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, WcStatus::kSuccess);
  EXPECT_TRUE(AllBytes(fresh, 0xA0));
  EXPECT_EQ(q01->state(), QpState::kError);
  EXPECT_EQ(q10->state(), QpState::kError);
}

TEST_F(LoopbackTest, ConnectWaitingForANodeThatDiesFailsUnavailable) {
  Init(3);
  Result<std::vector<std::unique_ptr<QueuePair>>> result = Status::Internal("not run");
  Fabric& f0 = F(0);
  std::thread waiter([&] {
    const ConnectRequest requests[] = {{2, {}, {}}};
    result = f0.Connect(requests, seconds(30));
  });
  net().Kill(2);
  waiter.join();
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status();
}

TEST_F(LoopbackTest, NodeKilledWhileConnectingFailsAndItsReplacementConnects) {
  Init(2);
  Result<std::vector<std::unique_ptr<QueuePair>>> result = Status::Internal("not run");
  Fabric& f1 = F(1);
  std::thread waiter([&] {
    const ConnectRequest requests[] = {{0, {}, {}}};
    result = f1.Connect(requests, seconds(30));
  });
  net().Kill(1);
  waiter.join();
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status();
  net().Revive(1);
  Recreate(1);
  auto [q01, q10] = Connect(0, 1);
  ASSERT_TRUE(q01 && q10);
  EXPECT_EQ(q01->state(), QpState::kConnected);
}

TEST_F(LoopbackTest, DestroyingAFabricWithLiveQpsIsGraceful) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 1);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && qa && qb);
  fabrics_.erase(1);  // leaves with qb still alive (a warning is logged)
  auto events = Events(0);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, EventType::kDisconnected);
  EXPECT_EQ(qb->state(), QpState::kError);
  const SendRequest s = Send(1, SgeOf(*local, 0, 8));
  EXPECT_EQ(qb->PostSend({&s, 1}).code(), StatusCode::kUnavailable);
}

TEST_F(LoopbackTest, PartitionFailsWorkBetweenTheTwoUntilHealed) {
  Init(3);
  std::span<std::byte> src = Buffer(64, 0x77);
  std::span<std::byte> d1 = Buffer(64, 0);
  std::span<std::byte> d2 = Buffer(64, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(local && r1 && r2 && q01 && q10 && q02 && q20);
  net().Partition(0, 1);
  const SendRequest w1 = Write(1, SgeOf(*local, 0, 64), *r1, 0);
  const SendRequest w2 = Write(2, SgeOf(*local, 0, 64), *r2, 0);
  ASSERT_TRUE(q01->PostSend({&w1, 1}).ok());
  ASSERT_TRUE(q02->PostSend({&w2, 1}).ok());
  auto c = PollN(0, 2);
  ASSERT_EQ(c.size(), 2u);
  for (const Completion& completion : c) {
    EXPECT_EQ(completion.status,
              completion.wr_id == 1 ? WcStatus::kRetryExceeded : WcStatus::kSuccess);
  }
  EXPECT_TRUE(AllBytes(d1, 0));
  EXPECT_TRUE(Equal(d2, src));
  EXPECT_EQ(q01->state(), QpState::kError);
  // The failed QP stays in error after Heal; a new one works.
  net().Heal(0, 1);
  auto [n01, n10] = Connect(0, 1);
  ASSERT_TRUE(n01 && n10);
  ASSERT_TRUE(n01->PostSend({&w1, 1}).ok());
  auto ok = PollOne(0);
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->status, WcStatus::kSuccess);
  EXPECT_TRUE(Equal(d1, src));
  EXPECT_EQ(q01->state(), QpState::kError);
}

// ---------------------------------------------------------------------------------------------
// Torn writes

struct TornOutcome {
  std::vector<size_t> landed;  // per WRITE: bytes landed
  bool consistent = true;      // every slice = a prefix of its source + untouched rest
};

// Node `poster` queues `count` WRITEs of `bytes` each to node `target`, then `victim` is killed.
TornOutcome RunTornWrites(uint64_t seed, NodeId victim, bool deregister_target, bool torn = true) {
  constexpr NodeId kPoster = 0;
  constexpr NodeId kTarget = 1;
  constexpr int kCount = 8;
  constexpr size_t kBytes = 4096;
  constexpr uint8_t kUntouched = 0xEE;
  LoopbackOptions options;
  options.seed = seed;
  auto network = LoopbackNetwork::Create(2, options);
  FT_CHECK(network.ok());
  std::vector<std::byte> src(kCount * kBytes);
  FillPattern(src, seed);
  std::vector<std::byte> dst(kCount * kBytes, std::byte{kUntouched});
  TornOutcome outcome;
  {
    auto poster = std::move((*network)->CreateFabric(kPoster)).value();
    auto target = std::move((*network)->CreateFabric(kTarget)).value();
    auto local =
        std::move(poster->RegisterMemory(src.data(), src.size(), kAccessLocalWrite)).value();
    auto remote = std::move(target->RegisterMemory(dst.data(), dst.size(), kTargetAccess)).value();
    Result<std::vector<std::unique_ptr<QueuePair>>> rt = Status::Internal("not run");
    std::thread peer([&] {
      const ConnectRequest request{kPoster, {}, {}};
      rt = target->Connect({&request, 1}, kDeadline);
    });
    const ConnectRequest request{kTarget, {}, {}};
    auto rp = poster->Connect({&request, 1}, kDeadline);
    peer.join();
    FT_CHECK(rp.ok() && rt.ok());
    std::vector<SendRequest> writes;
    for (int i = 0; i < kCount; ++i) {
      writes.push_back(Write(i, SgeOf(*local, i * kBytes, kBytes), *remote, i * kBytes));
    }
    FT_CHECK(rp->front()->PostSend(writes).ok());
    (*network)->SetTornWrites(torn);
    if (deregister_target) remote.reset();
    (*network)->Kill(victim);
    // After the kill nothing more lands, whoever polls.
    const std::vector<std::byte> at_kill = dst;
    Completion c[kCount];
    poster->PollCompletions(c);
    target->PollCompletions(c);
    if (at_kill != dst) outcome.consistent = false;
  }
  for (int i = 0; i < kCount; ++i) {
    std::span<const std::byte> s(src.data() + i * kBytes, kBytes);
    std::span<const std::byte> d(dst.data() + i * kBytes, kBytes);
    size_t prefix = 0;
    while (prefix < kBytes && d[prefix] == s[prefix]) ++prefix;
    if (!AllBytes(d.subspan(prefix), kUntouched)) outcome.consistent = false;
    // The longest matching prefix may overshoot by bytes equal to kUntouched; trim them.
    while (prefix > 0 && s[prefix - 1] == std::byte{kUntouched}) --prefix;
    outcome.landed.push_back(prefix);
  }
  return outcome;
}

TEST(LoopbackTornWritesTest, KillLandsASeededPrefixOfEveryQueuedWrite) {
  int partial = 0;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    for (NodeId victim : {NodeId{0}, NodeId{1}}) {
      SCOPED_TRACE(StrCat("loopback seed=", seed, " victim=", victim));
      const TornOutcome first = RunTornWrites(seed, victim, false);
      EXPECT_TRUE(first.consistent) << "a slice is not (prefix of source + untouched)";
      for (size_t landed : first.landed) partial += landed > 0 && landed < 4096;
      const TornOutcome again = RunTornWrites(seed, victim, false);
      EXPECT_EQ(first.landed, again.landed) << "the same seed must tear the same way";
    }
  }
  EXPECT_GT(partial, 0) << "no WRITE was torn mid-way in 320 tries";
}

TEST(LoopbackTornWritesTest, NothingLandsWithoutTornWritesOrIntoDeregisteredMemory) {
  for (uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(StrCat("loopback seed=", seed));
    const TornOutcome off = RunTornWrites(seed, 0, false, /*torn=*/false);
    EXPECT_TRUE(off.consistent);
    for (size_t landed : off.landed) EXPECT_EQ(landed, 0u);
    const TornOutcome deregistered = RunTornWrites(seed, 1, /*deregister_target=*/true);
    EXPECT_TRUE(deregistered.consistent);
    for (size_t landed : deregistered.landed) EXPECT_EQ(landed, 0u);
  }
}

// ---------------------------------------------------------------------------------------------
// Delays

TEST_F(LoopbackTest, DelayedRequestExecutesAfterThatManyProgressSteps) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 0x42);
  std::span<std::byte> dst = Buffer(64, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  net().SetDelay(0, 1, 3);
  const SendRequest w = Write(1, SgeOf(*local, 0, 64), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&w, 1}).ok());
  for (int step = 1; step <= 3; ++step) {
    EXPECT_FALSE(PollOnce(0).has_value()) << "step " << step;
    EXPECT_TRUE(AllBytes(dst, 0)) << "step " << step;
  }
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value()) << "not executed after the 4th step";
  EXPECT_TRUE(Equal(dst, src));

  // A delayed head blocks the requests behind it, even undelayed ones.
  net().SetDelay(1, 0, 5);  // the pair is unordered
  const SendRequest first = Write(10, SgeOf(*local, 0, 8), *remote, 0);
  ASSERT_TRUE(qa->PostSend({&first, 1}).ok());
  net().SetDelay(0, 1, 0);
  const SendRequest second = Write(11, SgeOf(*local, 0, 8), *remote, 8);
  ASSERT_TRUE(qa->PostSend({&second, 1}).ok());
  std::vector<uint64_t> order;
  for (int step = 1; step <= 8; ++step) {
    Completion done[4];
    const size_t n = F(0).PollCompletions(done);
    for (size_t i = 0; i < n; ++i) {
      order.push_back(done[i].wr_id);
      EXPECT_EQ(step, 6) << "wr_id " << done[i].wr_id << " ran at the wrong step";
    }
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{10, 11}));
}

TEST_F(LoopbackTest, RandomDelaysKeepPerQpOrder) {
  LoopbackOptions options;
  options.seed = 99;
  Init(3, options);
  SCOPED_TRACE(Seed());
  net().SetRandomDelays(4);
  constexpr int kWrites = 60;
  std::span<std::byte> src = Buffer(kWrites * 8);
  for (int i = 0; i < kWrites; ++i) std::memcpy(src.data() + i * 8, &i, sizeof(i));
  std::span<std::byte> d1 = Buffer(8);
  std::span<std::byte> d2 = Buffer(8);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(local && r1 && r2 && q01 && q10 && q02 && q20);
  for (int i = 0; i < kWrites; ++i) {
    // Every write to a target overwrites the same 8 bytes: the last one must win.
    const SendRequest w1 = Write(i, SgeOf(*local, i * 8, 8), *r1, 0);
    const SendRequest w2 = Write(1000 + i, SgeOf(*local, i * 8, 8), *r2, 0);
    ASSERT_TRUE(q01->PostSend({&w1, 1}).ok());
    ASSERT_TRUE(q02->PostSend({&w2, 1}).ok());
  }
  auto c = PollN(0, 2 * kWrites);
  ASSERT_EQ(c.size(), 2u * kWrites);
  uint64_t next1 = 0;
  uint64_t next2 = 1000;
  for (const Completion& completion : c) {
    EXPECT_EQ(completion.status, WcStatus::kSuccess);
    if (completion.qp == q01->id()) {
      EXPECT_EQ(completion.wr_id, next1++);
    } else {
      EXPECT_EQ(completion.wr_id, next2++);
    }
  }
  int last1 = -1;
  int last2 = -1;
  std::memcpy(&last1, d1.data(), sizeof(last1));
  std::memcpy(&last2, d2.data(), sizeof(last2));
  EXPECT_EQ(last1, kWrites - 1);
  EXPECT_EQ(last2, kWrites - 1);
}

}  // namespace
}  // namespace ft::verbs::loopback_test
