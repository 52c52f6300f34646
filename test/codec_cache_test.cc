// The Codec's decode-table cache (erasure/codec.h): reuse, capacity bound, no sharing between
// near-identical patterns, concurrent decodes.
#include <gtest/gtest.h>

#include "test/codec_test_util.h"

namespace ft::erasure::codec_test {
namespace {

// ---------------------------------------------------------------------------------------------
// Decode-table cache

TEST(CodecCacheTest, RepeatedPatternReusesTables) {
  const std::unique_ptr<Codec> codec = MustCreate(6, 3);
  ASSERT_NE(codec, nullptr);
  std::mt19937_64 rng(99);
  Cells cells = RandomStripe(rng, 6, 3, 100);
  ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
  EXPECT_EQ(codec->cached_decode_patterns(), 0u);  // Encode does not use the cache

  const std::vector<int> present_a = {8, 1, 2, 3, 4, 5};
  const std::vector<int> wanted_a = {0, 6};
  const std::vector<int> present_b = {0, 1, 2, 6, 7, 8};
  const std::vector<int> wanted_b = {3, 4, 5};
  for (int round = 0; round < 5; ++round) {
    const DecodeRun run = LibraryDecode(*codec, cells, present_a, wanted_a);
    ASSERT_TRUE(run.status.ok()) << run.status;
    EXPECT_TRUE(BytesEqual(run.outputs[0].data(), cells[0].data(), 100));
    EXPECT_TRUE(BytesEqual(run.outputs[1].data(), cells[6].data(), 100));
    EXPECT_EQ(codec->cached_decode_patterns(), 1u) << "round " << round;
  }
  for (int round = 0; round < 3; ++round) {
    const DecodeRun run = LibraryDecode(*codec, cells, present_b, wanted_b);
    ASSERT_TRUE(run.status.ok()) << run.status;
    for (size_t w = 0; w < wanted_b.size(); ++w) {
      EXPECT_TRUE(BytesEqual(run.outputs[w].data(), cells[wanted_b[w]].data(), 100));
    }
    EXPECT_EQ(codec->cached_decode_patterns(), 2u) << "round " << round;
  }
  ASSERT_TRUE(LibraryDecode(*codec, cells, present_a, wanted_a).status.ok());
  EXPECT_EQ(codec->cached_decode_patterns(), 2u);
  // Nothing wanted and failed calls build nothing.
  ASSERT_TRUE(LibraryDecode(*codec, cells, present_a, {}).status.ok());
  EXPECT_EQ(LibraryDecode(*codec, cells, {0, 1}, {2}).status.code(), StatusCode::kDataLoss);
  EXPECT_EQ(codec->cached_decode_patterns(), 2u);
}

// The first `count` k-subsets of [0, n) in lexicographic order (each a distinct present set).
std::vector<std::vector<int>> Subsets(int n, int k, size_t count) {
  std::vector<std::vector<int>> out;
  std::vector<int> subset(k);
  std::iota(subset.begin(), subset.end(), 0);
  while (out.size() < count) {
    out.push_back(subset);
    int i = k - 1;
    while (i >= 0 && subset[i] == n - k + i) --i;
    if (i < 0) break;
    ++subset[i];
    for (int j = i + 1; j < k; ++j) subset[j] = subset[j - 1] + 1;
  }
  return out;
}

std::vector<int> Complement(const std::vector<int>& subset, int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) {
    if (std::find(subset.begin(), subset.end(), i) == subset.end()) out.push_back(i);
  }
  return out;
}

TEST(CodecCacheTest, BoundedByCapacity) {
  constexpr int kK = 10;
  constexpr int kM = 4;
  constexpr size_t kCapacity = Codec::kDecodeCacheCapacity;
  const std::unique_ptr<Codec> codec = MustCreate(kK, kM);
  ASSERT_NE(codec, nullptr);
  std::mt19937_64 rng(7);
  Cells cells = RandomStripe(rng, kK, kM, 24);
  ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
  const std::vector<std::vector<int>> present_sets = Subsets(kK + kM, kK, kCapacity + 64);
  ASSERT_EQ(present_sets.size(), kCapacity + 64);
  for (size_t i = 0; i < present_sets.size(); ++i) {
    const std::vector<int> wanted = Complement(present_sets[i], kK + kM);
    const DecodeRun run = LibraryDecode(*codec, cells, present_sets[i], wanted);
    ASSERT_TRUE(run.status.ok()) << DescribePattern(present_sets[i], wanted, 24) << run.status;
    for (size_t w = 0; w < wanted.size(); ++w) {
      ASSERT_TRUE(BytesEqual(run.outputs[w].data(), cells[wanted[w]].data(), 24))
          << DescribePattern(present_sets[i], wanted, 24);
    }
    ASSERT_EQ(codec->cached_decode_patterns(), std::min(i + 1, kCapacity)) << "pattern " << i;
  }
  // Patterns evicted long ago still decode correctly (tables are rebuilt).
  const std::vector<int> wanted = Complement(present_sets[0], kK + kM);
  const DecodeRun again = LibraryDecode(*codec, cells, present_sets[0], wanted);
  ASSERT_TRUE(again.status.ok());
  EXPECT_TRUE(BytesEqual(again.outputs[0].data(), cells[wanted[0]].data(), 24));
  EXPECT_EQ(codec->cached_decode_patterns(), kCapacity);
}

// Every ordered choice of wanted cells and of the k present cells read, decoded back to back so
// that the cache is warm with near-identical patterns: tables cached for one pattern must never be
// used for another (a cache key that ignores part of the pattern would give wrong cells here).
TEST(CodecCacheTest, NearIdenticalPatternsNeverShareTables) {
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  constexpr size_t kBytes = 16;
  for (const auto& [k, m] : {std::pair(3, 3), std::pair(4, 2), std::pair(2, 4)}) {
    SCOPED_TRACE(StrCat("RS(", k, ",", m, ")"));
    const int n = k + m;
    const std::unique_ptr<Codec> codec = MustCreate(k, m);
    ASSERT_NE(codec, nullptr);
    Cells cells = RandomStripe(rng, k, m, kBytes);
    ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
    int decodes = 0;
    for (uint64_t lost_mask = 1; lost_mask < (uint64_t{1} << n); ++lost_mask) {
      if (std::popcount(lost_mask) > m) continue;
      std::vector<int> wanted;
      std::vector<int> survivors;
      for (int i = 0; i < n; ++i) {
        (lost_mask & (uint64_t{1} << i) ? wanted : survivors).push_back(i);
      }
      // Every ordering of the wanted cells (bounded: at most m! = 24).
      do {
        // Every ordered k-sequence of survivors: permute, read the first k, skip repeats.
        std::vector<int> order = survivors;
        std::sort(order.begin(), order.end());
        std::set<std::vector<int>> seen;
        do {
          std::vector<int> present(order.begin(), order.begin() + k);
          if (!seen.insert(present).second) continue;
          ++decodes;
          const DecodeRun run = LibraryDecode(*codec, cells, present, wanted);
          ASSERT_TRUE(run.status.ok()) << DescribePattern(present, wanted, kBytes) << run.status;
          for (size_t w = 0; w < wanted.size(); ++w) {
            ASSERT_TRUE(BytesEqual(run.outputs[w].data(), cells[wanted[w]].data(), kBytes))
                << DescribePattern(present, wanted, kBytes) << ", cell " << wanted[w];
          }
        } while (std::next_permutation(order.begin(), order.end()));
      } while (std::next_permutation(wanted.begin(), wanted.end()));
    }
    EXPECT_GT(decodes, 500);
  }
}

TEST(CodecCacheTest, ConcurrentDecodesOnDistinctPatterns) {
  constexpr int kK = 8;
  constexpr int kM = 4;
  constexpr int kThreads = 4;
  constexpr size_t kPatternsPerThread = 80;  // 320 in all: more than the cache holds
  constexpr int kPasses = 2;
  constexpr size_t kBytes = 200;
  const uint64_t seed = TestSeed();
  SCOPED_TRACE(SeedNote(seed));
  std::mt19937_64 rng(seed);
  const std::unique_ptr<Codec> codec = MustCreate(kK, kM);
  ASSERT_NE(codec, nullptr);
  Cells cells = RandomStripe(rng, kK, kM, kBytes);
  ASSERT_TRUE(LibraryEncode(*codec, &cells).ok());
  const std::vector<std::vector<int>> present_sets =
      Subsets(kK + kM, kK, kThreads * kPatternsPerThread);
  ASSERT_EQ(present_sets.size(), kThreads * kPatternsPerThread);

  std::atomic<int> failures{0};
  std::mutex first_failure_mutex;
  std::string first_failure;
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      start.arrive_and_wait();
      for (int pass = 0; pass < kPasses; ++pass) {
        for (size_t i = 0; i < kPatternsPerThread; ++i) {
          const std::vector<int>& present = present_sets[t * kPatternsPerThread + i];
          const std::vector<int> wanted = Complement(present, kK + kM);
          const DecodeRun run = LibraryDecode(*codec, cells, present, wanted);
          bool good = run.status.ok();
          for (size_t w = 0; good && w < wanted.size(); ++w) {
            good = std::memcmp(run.outputs[w].data(), cells[wanted[w]].data(), kBytes) == 0;
          }
          if (!good) {
            failures.fetch_add(1);
            std::lock_guard lock(first_failure_mutex);
            if (first_failure.empty()) {
              first_failure = StrCat("thread ", t, ": ", DescribePattern(present, wanted, kBytes),
                                     ": ", run.status.ToString());
            }
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_LE(codec->cached_decode_patterns(), Codec::kDecodeCacheCapacity);
  EXPECT_GT(codec->cached_decode_patterns(), 0u);
}

}  // namespace
}  // namespace ft::erasure::codec_test
