// Loopback's fault injection: kill, revive, partition, torn writes, delays, freeze and thaw.
#include <gtest/gtest.h>

#include <functional>

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

// ---------------------------------------------------------------------------------------------
// Freeze and Thaw

// How long a call must stay blocked to count as blocked: long enough for an unblocked call (a
// poll, a post, a 1 ms wait) to have returned many times over.
constexpr auto kShowBlocked = milliseconds(50);

// One call made by a thread of a node (the process), run on its own thread to see whether it
// blocks. If a failing test leaves it blocked, the destructor thaws the node so that the test
// fails instead of hanging.
class Caller {
 public:
  Caller(LoopbackNetwork& network, NodeId node, std::function<void()> call)
      : network_(network), node_(node), thread_([this, call = std::move(call)] {
          call();
          returned_.store(true);
        }) {}
  ~Caller() {
    if (!Returned(kDeadline)) {
      network_.Thaw(node_);
      FT_CHECK_MSG(Returned(kDeadline), "a call of a frozen node is still blocked after Thaw");
    }
    thread_.join();
  }
  Caller(const Caller&) = delete;
  Caller& operator=(const Caller&) = delete;

  bool returned() const { return returned_.load(); }
  // Whether the call returns within `within`.
  bool Returned(Nanos within) const {
    const auto deadline = steady_clock::now() + within;
    while (!returned_.load()) {
      if (steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(milliseconds(1));
    }
    return true;
  }

 private:
  LoopbackNetwork& network_;
  NodeId node_;
  std::atomic<bool> returned_{false};
  std::thread thread_;  // last: it starts once the members it uses exist
};

TEST_F(LoopbackTest, AFrozenNodesCallsBlockUntilThaw) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 0x5A);
  std::span<std::byte> dst = Buffer(64, 0);
  std::span<std::byte> spare = Buffer(64, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  ASSERT_TRUE(local && remote && q01 && q10);
  Fabric& f0 = F(0);
  // Posted before the freeze, not executed: node 0 has not polled.
  const SendRequest before = Write(1, SgeOf(*local, 0, 32), *remote, 0);
  ASSERT_TRUE(q01->PostSend({&before, 1}).ok());
  net().Freeze(0);
  EXPECT_TRUE(net().frozen(0));
  EXPECT_FALSE(net().frozen(1));

  std::vector<Completion> polled(4);
  size_t polled_count = 0;
  Status posted = Status::Internal("not run");
  Status received = Status::Internal("not run");
  Result<std::unique_ptr<MemoryRegion>> registered = Status::Internal("not run");
  Event event;
  size_t event_count = 99;
  Caller poll(net(), 0, [&] { polled_count = f0.PollCompletions(polled); });
  Caller wait(net(), 0, [&] { f0.WaitForActivity(milliseconds(1)); });
  Caller post(net(), 0, [&] {
    const SendRequest after = Write(2, SgeOf(*local, 32, 32), *remote, 32);
    posted = q01->PostSend({&after, 1});
  });
  Caller recv(net(), 0, [&] {
    const RecvRequest r = test::Recv(3, SgeOf(*local, 0, 8));
    received = q01->PostRecv({&r, 1});
  });
  Caller events(net(), 0, [&] { event_count = f0.PollEvents({&event, 1}); });
  Caller reg(net(), 0,
             [&] { registered = f0.RegisterMemory(spare.data(), spare.size(), kTargetAccess); });
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(poll.returned()) << "PollCompletions";
  EXPECT_FALSE(wait.returned()) << "WaitForActivity (1 ms timeout)";
  EXPECT_FALSE(post.returned()) << "PostSend";
  EXPECT_FALSE(recv.returned()) << "PostRecv";
  EXPECT_FALSE(events.returned()) << "PollEvents";
  EXPECT_FALSE(reg.returned()) << "RegisterMemory";
  EXPECT_TRUE(AllBytes(dst, 0)) << "a frozen node executed its request";
  // Its peer is not affected.
  EXPECT_FALSE(PollOnce(1).has_value());
  EXPECT_TRUE(Events(1).empty());
  EXPECT_EQ(q10->state(), QpState::kConnected);

  net().Thaw(0);
  EXPECT_FALSE(net().frozen(0));
  for (const Caller* caller : {&poll, &wait, &post, &recv, &events, &reg}) {
    EXPECT_TRUE(caller->Returned(kDeadline));
  }
  EXPECT_TRUE(posted.ok()) << posted;
  EXPECT_TRUE(received.ok()) << received;
  EXPECT_TRUE(registered.ok()) << registered.status();
  EXPECT_EQ(event_count, 0u);
  // Both WRITEs execute after Thaw, the first in the step of the released poll.
  std::vector<Completion> done(polled.begin(), polled.begin() + polled_count);
  while (done.size() < 2) {
    auto c = PollOne(0);
    ASSERT_TRUE(c.has_value()) << "a WRITE did not complete after Thaw";
    done.push_back(*c);
  }
  EXPECT_EQ(done[0].wr_id, 1u);
  EXPECT_EQ(done[1].wr_id, 2u);
  for (const Completion& c : done) EXPECT_EQ(c.status, WcStatus::kSuccess);
  EXPECT_TRUE(Equal(dst, src));
}

TEST_F(LoopbackTest, WaitForActivityStaysBlockedThroughInterruptWhileFrozen) {
  Init(2);
  std::span<std::byte> src = Buffer(16, 0x61);
  std::span<std::byte> dst = Buffer(16, 0);
  MemoryRegion* local = Reg(1, src, kAccessLocalWrite);
  MemoryRegion* target = Reg(0, dst, kAccessLocalWrite);
  auto [q01, q10] = Connect(0, 1);
  ASSERT_TRUE(local && target && q01 && q10);
  const RecvRequest r = test::Recv(5, SgeOf(*target, 0, 16));
  ASSERT_TRUE(q01->PostRecv({&r, 1}).ok());
  Fabric& f0 = F(0);
  // Waiting already (most likely: the outcome is the same if the freeze comes first).
  Caller wait(net(), 0, [&] { f0.WaitForActivity(seconds(60)); });
  std::this_thread::sleep_for(milliseconds(10));
  net().Freeze(0);
  // Activity and an Interrupt, each of which ends the wait of a running node.
  const SendRequest s = Send(6, SgeOf(*local, 0, 16));
  ASSERT_TRUE(q10->PostSend({&s, 1}).ok());
  auto sent = PollOne(1);
  ASSERT_TRUE(sent.has_value());
  EXPECT_EQ(sent->status, WcStatus::kSuccess);
  f0.Interrupt();  // does not block: a signal to a stopped process
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(wait.returned()) << "a frozen node's thread ran";
  net().Thaw(0);
  // Long before its 60 s timeout: the Interrupt and the kRecv completion are pending.
  EXPECT_TRUE(wait.Returned(seconds(5)));
  auto c = PollOnce(0);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->opcode, Opcode::kRecv);
  EXPECT_EQ(c->wr_id, 5u);
}

TEST_F(LoopbackTest, ConnectOfAFrozenNodeWaitsForThaw) {
  Init(2);
  Fabric& f0 = F(0);
  Fabric& f1 = F(1);
  net().Freeze(0);
  Result<std::vector<std::unique_ptr<QueuePair>>> r0 = Status::Internal("not run");
  Result<std::vector<std::unique_ptr<QueuePair>>> r1 = Status::Internal("not run");
  Caller c0(net(), 0, [&] {
    const ConnectRequest request{1, {}, {}};
    r0 = f0.Connect({&request, 1}, kDeadline);
  });
  Caller c1(net(), 1, [&] {
    const ConnectRequest request{0, {}, {}};
    r1 = f1.Connect({&request, 1}, kDeadline);
  });
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(c0.returned()) << "a frozen node connected";
  EXPECT_FALSE(c1.returned()) << "its peer connected without it";
  net().Thaw(0);
  ASSERT_TRUE(c0.Returned(kDeadline) && c1.Returned(kDeadline));
  ASSERT_TRUE(r0.ok() && r1.ok()) << r0.status() << " / " << r1.status();
  EXPECT_EQ(r0->front()->peer(), 1u);
}

TEST_F(LoopbackTest, PeersReachAFrozenNodesMemoryAndReceives) {
  Init(2);
  std::span<std::byte> src = Buffer(64, 0x11);
  std::span<std::byte> read_into = Buffer(64, 0);
  std::span<std::byte> written = Buffer(64, 0);
  std::span<std::byte> readable = Buffer(64, 0x22);
  std::span<std::byte> inbox = Buffer(64, 0);
  MemoryRegion* l0 = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* l0_read = Reg(0, read_into, kAccessLocalWrite);
  MemoryRegion* r1_write = Reg(1, written, kTargetAccess);
  MemoryRegion* r1_read = Reg(1, readable, kTargetAccess);
  MemoryRegion* l1_inbox = Reg(1, inbox, kAccessLocalWrite);
  auto [q01, q10] = Connect(0, 1);
  ASSERT_TRUE(l0 && l0_read && r1_write && r1_read && l1_inbox && q01 && q10);
  const RecvRequest r = test::Recv(7, SgeOf(*l1_inbox, 0, 64));
  ASSERT_TRUE(q10->PostRecv({&r, 1}).ok());
  Fabric& f1 = F(1);
  net().Freeze(1);

  // One-sided work and a SEND execute in node 0's steps, with no error or event.
  const SendRequest work[] = {Write(1, SgeOf(*l0, 0, 64), *r1_write, 0),
                              test::Read(2, SgeOf(*l0_read, 0, 64), *r1_read, 0),
                              Send(3, SgeOf(*l0, 0, 16))};
  ASSERT_TRUE(q01->PostSend(work).ok());
  auto c = PollN(0, 3);
  ASSERT_EQ(c.size(), 3u);
  for (const Completion& completion : c) {
    EXPECT_EQ(completion.status, WcStatus::kSuccess) << "wr_id " << completion.wr_id;
  }
  EXPECT_TRUE(Equal(written, src));
  EXPECT_TRUE(Equal(read_into, readable));
  EXPECT_TRUE(Equal(inbox.subspan(0, 16), src.subspan(0, 16)));
  EXPECT_TRUE(AllBytes(inbox.subspan(16), 0));
  EXPECT_TRUE(Events(0).empty());
  EXPECT_EQ(q01->state(), QpState::kConnected);

  // The kRecv completion waits in node 1's CQ until it is thawed.
  Completion received;
  size_t count = 0;
  Caller poll(net(), 1, [&] { count = f1.PollCompletions({&received, 1}); });
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(poll.returned()) << "a frozen node reaped a completion";
  net().Thaw(1);
  ASSERT_TRUE(poll.Returned(kDeadline));
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(received.opcode, Opcode::kRecv);
  EXPECT_EQ(received.wr_id, 7u);
  EXPECT_EQ(received.status, WcStatus::kSuccess);
  EXPECT_EQ(received.bytes, 16u);
  EXPECT_EQ(received.qp, q10->id());
  EXPECT_TRUE(Events(1).empty());
}

TEST_F(LoopbackTest, ThawedNodeSeesWhatItsPeersDidMeanwhile) {
  Init(3);
  std::span<std::byte> src = Buffer(64, 0x33);
  std::span<std::byte> d1 = Buffer(64, 0);
  std::span<std::byte> d2 = Buffer(64, 0);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* r1 = Reg(1, d1, kTargetAccess);
  MemoryRegion* r2 = Reg(2, d2, kTargetAccess);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(local && r1 && r2 && q01 && q10 && q02 && q20);
  const SendRequest queued = Write(1, SgeOf(*local, 0, 64), *r1, 0);
  ASSERT_TRUE(q01->PostSend({&queued, 1}).ok());
  Fabric& f0 = F(0);
  net().Freeze(0);
  // A thread of node 0 polls throughout: frozen, it must not execute the queued WRITE, which
  // would land now, before the peers act.
  std::vector<Completion> polled(4);
  size_t polled_count = 0;
  Caller poll(net(), 0, [&] { polled_count = f0.PollCompletions(polled); });
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(poll.returned());
  EXPECT_TRUE(AllBytes(d1, 0)) << "a frozen node executed its queued WRITE";
  q10->ToError();                                                        // node 1 fences node 0
  std::erase_if(qps_, [&](const auto& qp) { return qp.get() == q20; });  // node 2 leaves it
  EXPECT_FALSE(poll.returned());
  net().Thaw(0);
  ASSERT_TRUE(poll.Returned(kDeadline));

  // The queued WRITE fails against the fence; the next ones do not land either.
  const SendRequest next1 = Write(2, SgeOf(*local, 0, 64), *r1, 0);
  const SendRequest next2 = Write(3, SgeOf(*local, 0, 64), *r2, 0);
  ASSERT_TRUE(q01->PostSend({&next1, 1}).ok());
  ASSERT_TRUE(q02->PostSend({&next2, 1}).ok());
  std::map<uint64_t, WcStatus> status;
  for (size_t i = 0; i < polled_count; ++i) status[polled[i].wr_id] = polled[i].status;
  for (const Completion& c : PollN(0, 3 - polled_count)) status[c.wr_id] = c.status;
  EXPECT_EQ(status, (std::map<uint64_t, WcStatus>{{1, WcStatus::kRetryExceeded},
                                                  {2, WcStatus::kFlushed},
                                                  {3, WcStatus::kRetryExceeded}}));
  EXPECT_TRUE(AllBytes(d1, 0));
  EXPECT_TRUE(AllBytes(d2, 0));
  // Node 2's leaving was announced during the freeze; it is there after Thaw.
  const auto events = Events(0);
  const bool disconnected = std::any_of(events.begin(), events.end(), [&](const Event& e) {
    return e.type == EventType::kDisconnected && e.peer == 2 && e.qp == q02->id();
  });
  EXPECT_TRUE(disconnected);
}

TEST_F(LoopbackTest, KillOrFabricDestructionReleasesAFrozenNodesCalls) {
  Init(3);
  std::span<std::byte> src = Buffer(64, 1);
  MemoryRegion* l1 = Reg(1, src, kAccessLocalWrite);
  MemoryRegion* l2 = Reg(2, src, kAccessLocalWrite);
  auto [q01, q10] = Connect(0, 1);
  auto [q02, q20] = Connect(0, 2);
  ASSERT_TRUE(l1 && l2 && q01 && q10 && q02 && q20);
  Fabric& f1 = F(1);

  // Kill: every blocked call returns as it does on a dead node.
  net().Freeze(1);
  Completion c;
  Event event;
  size_t event_count = 0;
  Status posted1 = Status::Internal("not run");
  Caller poll(net(), 1, [&] { f1.PollCompletions({&c, 1}); });
  Caller wait(net(), 1, [&] { f1.WaitForActivity(milliseconds(1)); });
  Caller events(net(), 1, [&] { event_count = f1.PollEvents({&event, 1}); });
  Caller post1(net(), 1, [&] {
    const SendRequest s = Send(1, SgeOf(*l1, 0, 8));
    posted1 = q10->PostSend({&s, 1});
  });
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(poll.returned() || wait.returned() || events.returned() || post1.returned());
  net().Kill(1);
  EXPECT_FALSE(net().frozen(1));
  for (const Caller* caller : {&poll, &wait, &events, &post1}) {
    EXPECT_TRUE(caller->Returned(seconds(5)));
  }
  EXPECT_EQ(posted1.code(), StatusCode::kUnavailable) << posted1;

  // Destroying the Fabric: a call blocked on one of its QueuePairs fails Unavailable.
  net().Freeze(2);
  Status posted2 = Status::Internal("not run");
  Caller post2(net(), 2, [&] {
    const SendRequest s = Send(2, SgeOf(*l2, 0, 8));
    posted2 = q20->PostSend({&s, 1});
  });
  std::this_thread::sleep_for(kShowBlocked);
  EXPECT_FALSE(post2.returned());
  fabrics_.erase(2);  // leaves with q20 alive (a warning is logged)
  EXPECT_TRUE(post2.Returned(seconds(5)));
  EXPECT_EQ(posted2.code(), StatusCode::kUnavailable) << posted2;

  // Node 0 stays frozen: the fixture's teardown (QueuePairs, Fabrics, network) must not hang.
  net().Freeze(0);
  EXPECT_TRUE(net().frozen(0));
}

TEST_F(LoopbackTest, FreezeAndThawAreIdempotentAndSkipNodesWithoutAProcess) {
  Init(3);
  Fabric& f0 = F(0);
  F(1);
  net().Freeze(0);
  net().Freeze(0);
  EXPECT_TRUE(net().frozen(0));
  net().Thaw(0);  // one Thaw undoes any number of Freezes
  EXPECT_FALSE(net().frozen(0));
  net().Thaw(0);
  EXPECT_FALSE(net().frozen(0));
  {
    Caller poll(net(), 0, [&] { f0.PollCompletions({}); });
    EXPECT_TRUE(poll.Returned(seconds(5)));
  }
  // A dead node, and a rank without a Fabric yet, have no process to stop.
  net().Kill(1);
  net().Freeze(1);
  EXPECT_FALSE(net().frozen(1));
  net().Freeze(2);
  EXPECT_FALSE(net().frozen(2));
  EXPECT_FALSE(net().frozen(99));
  net().Revive(1);
  Fabric& reborn = Recreate(1);
  Fabric& f2 = F(2);
  EXPECT_FALSE(net().frozen(1));
  EXPECT_FALSE(net().frozen(2));
  Caller poll1(net(), 1, [&] { reborn.PollCompletions({}); });
  Caller poll2(net(), 2, [&] { f2.PollCompletions({}); });
  EXPECT_TRUE(poll1.Returned(seconds(5)));
  EXPECT_TRUE(poll2.Returned(seconds(5)));
}

}  // namespace
}  // namespace ft::verbs::loopback_test
