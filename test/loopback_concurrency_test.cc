// Loopback under concurrency and volume: a full mesh of concurrent Connect batches, writers
// racing a deregistration, and selective signaling over many large WRITEs.
#include <gtest/gtest.h>

#include <iostream>

#include "test/loopback_test_fixture.h"

namespace ft::verbs::loopback_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Connect at scale, concurrency and throughput

TEST_F(LoopbackTest, FullMeshOfConcurrentBatchesInRandomOrderConnects) {
  constexpr NodeId kNodes = 12;
  Init(kNodes);
  for (NodeId id = 0; id < kNodes; ++id) F(id);
  std::vector<Result<std::vector<std::unique_ptr<QueuePair>>>> results;
  for (NodeId id = 0; id < kNodes; ++id) results.emplace_back(Status::Internal("not run"));
  std::vector<std::thread> threads;
  for (NodeId id = 0; id < kNodes; ++id) {
    threads.emplace_back([&, id] {
      std::vector<ConnectRequest> requests;
      for (NodeId peer = 0; peer < kNodes; ++peer) {
        if (peer != id) requests.push_back({peer, {std::byte{static_cast<uint8_t>(id)}}, {}});
      }
      std::shuffle(requests.begin(), requests.end(), std::mt19937_64(id));
      results[id] = fabrics_[id]->Connect(requests, kDeadline);
    });
  }
  for (auto& t : threads) t.join();
  for (NodeId id = 0; id < kNodes; ++id) {
    ASSERT_TRUE(results[id].ok()) << "node " << id << ": " << results[id].status();
    ASSERT_EQ(results[id]->size(), kNodes - 1);
    for (auto& qp : *results[id]) {
      ASSERT_EQ(qp->peer_private_data().size(), 1u);
      EXPECT_EQ(qp->peer_private_data()[0], std::byte{static_cast<uint8_t>(qp->peer())});
      qps_.push_back(std::move(qp));
    }
  }
}

TEST_F(LoopbackTest, ConcurrentWritersRaceADeregistration) {
  constexpr int kWriters = 8;
  constexpr size_t kSlice = 64 << 10;
  constexpr int kMaxIterations = 3000;
  Init(kWriters + 1);
  std::span<std::byte> steady = Buffer(kWriters * kSlice);
  auto doomed = std::make_unique<std::byte[]>(kWriters * kSlice);
  MemoryRegion* steady_mr = Reg(0, steady, kTargetAccess);
  auto doomed_mr_or = F(0).RegisterMemory(doomed.get(), kWriters * kSlice, kTargetAccess);
  ASSERT_TRUE(steady_mr && doomed_mr_or.ok());
  std::unique_ptr<MemoryRegion> doomed_mr = std::move(doomed_mr_or).value();
  const RemoteRegion doomed_remote{.addr = reinterpret_cast<uintptr_t>(doomed.get()),
                                   .length = kWriters * kSlice,
                                   .rkey = doomed_mr->rkey()};

  // Node 0 connects to all writers in one batch.
  std::vector<QueuePair*> writer_qp(kWriters + 1);
  {
    for (NodeId id = 0; id <= kWriters; ++id) F(id);
    std::vector<std::thread> threads;
    std::vector<Result<std::vector<std::unique_ptr<QueuePair>>>> results;
    for (int i = 0; i <= kWriters; ++i) results.emplace_back(Status::Internal("not run"));
    for (NodeId id = 0; id <= kWriters; ++id) {
      threads.emplace_back([&, id] {
        std::vector<ConnectRequest> requests;
        if (id == 0) {
          for (NodeId w = 1; w <= kWriters; ++w) requests.push_back({w, {}, {}});
        } else {
          requests.push_back({0, {}, {}});
        }
        results[id] = fabrics_[id]->Connect(requests, kDeadline);
      });
    }
    for (auto& t : threads) t.join();
    for (NodeId id = 0; id <= kWriters; ++id) {
      ASSERT_TRUE(results[id].ok()) << results[id].status();
      for (auto& qp : *results[id]) {
        if (id != 0) writer_qp[id] = qp.get();
        qps_.push_back(std::move(qp));
      }
    }
  }
  std::vector<std::vector<std::byte>> sources(kWriters + 1, std::vector<std::byte>(kSlice));
  std::vector<std::unique_ptr<MemoryRegion>> source_mrs(kWriters + 1);
  for (NodeId id = 1; id <= kWriters; ++id) {
    auto mr = F(id).RegisterMemory(sources[id].data(), kSlice, kAccessLocalWrite);
    ASSERT_TRUE(mr.ok());
    source_mrs[id] = std::move(mr).value();
  }

  std::atomic<int> iterations{0};
  std::vector<int> last_iteration(kWriters + 1, -1);
  std::vector<WcStatus> final_status(kWriters + 1, WcStatus::kSuccess);
  std::vector<std::thread> writers;
  for (NodeId id = 1; id <= kWriters; ++id) {
    writers.emplace_back([&, id] {
      Fabric& fabric = *fabrics_[id];
      const size_t offset = (id - 1) * kSlice;
      const auto deadline = steady_clock::now() + seconds(20);
      for (int it = 0; it < kMaxIterations && steady_clock::now() < deadline; ++it) {
        std::fill(sources[id].begin(), sources[id].end(), static_cast<std::byte>(it));
        SendRequest to_steady = Write(2 * it, SgeOf(*source_mrs[id], 0, kSlice), *steady_mr, offset,
                                      /*signaled=*/false);
        SendRequest to_doomed = to_steady;
        to_doomed.wr_id = 2 * it + 1;
        to_doomed.remote_addr = doomed_remote.addr + offset;
        to_doomed.rkey = doomed_remote.rkey;
        to_doomed.signaled = true;
        const SendRequest both[] = {to_steady, to_doomed};
        if (!writer_qp[id]->PostSend(both).ok()) return;
        last_iteration[id] = it;
        Completion c;
        while (fabric.PollCompletions({&c, 1}) == 0) {
          if (steady_clock::now() >= deadline) return;
        }
        iterations.fetch_add(1);
        if (c.status != WcStatus::kSuccess) {
          final_status[id] = c.status;
          return;
        }
      }
    });
  }
  // Deregister while the writers are running.
  const auto deadline = steady_clock::now() + seconds(20);
  while (iterations.load() < kWriters * 20 && steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  doomed_mr.reset();  // must wait out any copy into it
  std::memset(doomed.get(), 0x5A, kWriters * kSlice);
  for (auto& t : writers) t.join();
  EXPECT_TRUE(AllBytes({doomed.get(), kWriters * kSlice}, 0x5A))
      << "a WRITE landed after its region was deregistered";
  int failed = 0;
  for (NodeId id = 1; id <= kWriters; ++id) {
    SCOPED_TRACE(StrCat("writer ", id));
    if (final_status[id] != WcStatus::kSuccess) {
      ++failed;
      EXPECT_EQ(final_status[id], WcStatus::kRemoteAccessError);
    }
    // The unsignaled WRITE before the last signaled one landed in the steady region.
    ASSERT_GE(last_iteration[id], 0);
    EXPECT_TRUE(AllBytes(steady.subspan((id - 1) * kSlice, kSlice),
                         static_cast<uint8_t>(last_iteration[id])));
  }
  EXPECT_GT(failed, 0) << "no writer saw the deregistration";
  std::cout << "[ info     ] " << iterations.load() << " iterations of " << kWriters << " writers; "
            << failed << " saw kRemoteAccessError\n";
}

// Selective signaling at volume: many large WRITEs, one in 16 signaled, within a window of the
// send queue. Each signaled completion retires the unsignaled WRITEs before it, so the window
// never overflows (every post succeeds), completions arrive in post order, and every byte lands.
TEST_F(LoopbackTest, UnsignaledWritesRetireWithTheirSignaledSuccessorAndAllLand) {
  constexpr size_t kBlock = 64 << 10;
  constexpr size_t kBlocks = 32;
  constexpr size_t kWrites = 4 * kBlocks;  // each block is written four times
  constexpr size_t kSignalEvery = 16;
  LoopbackOptions options;
  options.limits.max_send_wr = 2 * kSignalEvery;  // the window must turn over four times
  Init(2, options);
  std::span<std::byte> src = Buffer(kBlocks * kBlock);
  FillPattern(src, 7);
  std::span<std::byte> dst = Buffer(kBlocks * kBlock);
  MemoryRegion* local = Reg(0, src, kAccessLocalWrite);
  MemoryRegion* remote = Reg(1, dst, kTargetAccess);
  auto [qa, qb] = Connect(0, 1);
  ASSERT_TRUE(local && remote && qa && qb);
  const size_t window = static_cast<size_t>(F(0).limits().max_send_wr);
  ASSERT_GE(window, 2 * kSignalEvery);
  size_t posted = 0;
  size_t retired = 0;  // WRITEs a polled signaled completion retired
  std::vector<uint64_t> signaled_ids;
  const auto deadline = steady_clock::now() + kDeadline;
  while (retired < kWrites && steady_clock::now() < deadline) {
    while (posted < kWrites && posted - retired < window) {
      const size_t block = posted % kBlocks;
      const bool signaled = (posted + 1) % kSignalEvery == 0;
      const SendRequest w =
          Write(posted, SgeOf(*local, block * kBlock, kBlock), *remote, block * kBlock, signaled);
      ASSERT_TRUE(qa->PostSend({&w, 1}).ok()) << "WRITE " << posted << " with " << posted - retired
                                              << " outstanding in a window of " << window;
      ++posted;
    }
    for (const Completion& c : PollN(0, 1)) {
      ASSERT_EQ(c.status, WcStatus::kSuccess) << c.wr_id;
      signaled_ids.push_back(c.wr_id);
      retired = c.wr_id + 1;
    }
  }
  ASSERT_EQ(retired, kWrites);
  std::vector<uint64_t> expected;
  for (uint64_t id = kSignalEvery - 1; id < kWrites; id += kSignalEvery) expected.push_back(id);
  EXPECT_EQ(signaled_ids, expected);  // only the signaled ones, in post order
  EXPECT_TRUE(Equal(dst, src));
}

}  // namespace
}  // namespace ft::verbs::loopback_test
