// `ftbench write-bw` over real verbs, launched as a job of two ranks by ftrun (FTRUN_PATH,
// FTBENCH_PATH). Label `rdma`: it needs an RDMA device (the soft-RoCE VM) and skips without one.
//
// ftrun puts the coordinator at $RXE_VM_IP (else 127.0.0.1): the test passes the address the
// rdma tests listen on (FT_TEST_RDMA_ADDRESS or RXE_VM_IP) as RXE_VM_IP, so that on a machine with
// a real RDMA NIC FT_TEST_RDMA_ADDRESS alone is enough.
#include <chrono>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test/rdma_test_util.h"
#include "test/run_program.h"

namespace {

using ft::test::ProgramResult;
using ft::test::RunProgram;
using ft::verbs::rdma_test::JobEnvironment;
using ft::verbs::rdma_test::SkipReason;

// The emulated VM is slow: generous bounds for ftrun (its --timeout) and for the test.
constexpr int kJobTimeoutSeconds = 150;
constexpr auto kDeadline = std::chrono::seconds(180);

ProgramResult RunJob(const std::vector<std::string>& ftrun_flags,
                     const std::vector<std::string>& ftbench_flags) {
  std::vector<std::string> args = {FTRUN_PATH, "--timeout", std::to_string(kJobTimeoutSeconds)};
  args.insert(args.end(), ftrun_flags.begin(), ftrun_flags.end());
  args.insert(args.end(), {"--", FTBENCH_PATH, "write-bw"});
  args.insert(args.end(), ftbench_flags.begin(), ftbench_flags.end());
  return RunProgram(args, JobEnvironment(), kDeadline);
}

TEST(FtbenchWriteBwRdmaTest, JsonHasExactlyTheFourFields) {
  if (const std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const ProgramResult run = RunJob({"-n", "2"}, {"--size", "4096", "--duration", "1", "--json"});
  ASSERT_TRUE(run.started);
  ASSERT_FALSE(run.timed_out) << "stdout:\n" << run.out << "stderr:\n" << run.err;
  ASSERT_EQ(run.status, 0) << "stdout:\n" << run.out << "stderr:\n" << run.err;

  // One line from rank 0; rank 1 prints nothing.
  ASSERT_FALSE(run.out.empty());
  EXPECT_EQ(run.out.find('\n'), run.out.size() - 1) << run.out;
  const nlohmann::json out = nlohmann::json::parse(run.out, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(out.is_object()) << run.out;
  std::set<std::string> keys;
  for (const auto& [key, value] : out.items()) keys.insert(key);
  EXPECT_EQ(keys, (std::set<std::string>{"size", "iterations", "seconds", "write_gbps"}))
      << run.out;
  ASSERT_TRUE(out["size"].is_number_unsigned()) << run.out;
  ASSERT_TRUE(out["iterations"].is_number_unsigned()) << run.out;
  ASSERT_TRUE(out["seconds"].is_number()) << run.out;
  ASSERT_TRUE(out["write_gbps"].is_number()) << run.out;
  EXPECT_EQ(out["size"].get<uint64_t>(), 4096u);
  const auto iterations = out["iterations"].get<uint64_t>();
  const auto seconds = out["seconds"].get<double>();
  const auto gbps = out["write_gbps"].get<double>();
  EXPECT_GT(iterations, 0u);
  EXPECT_GE(seconds, 1.0);         // posting lasts the duration, then the drain
  EXPECT_LT(seconds, 1.0 + 30.0);  // the drain is bounded
  EXPECT_GT(gbps, 0.0);
  EXPECT_NEAR(gbps, 4096.0 * static_cast<double>(iterations) / seconds / 1e9, gbps * 1e-9);
}

// A target killed mid-run ends the writer with exit 1 and a message naming rank 1, long before
// the --duration it was asked for.
TEST(FtbenchWriteBwRdmaTest, LostTargetEndsTheWriter) {
  if (const std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const ProgramResult run =
      RunJob({"-n", "2", "--kill", "1", "--after", "3"}, {"--duration", "60"});
  ASSERT_TRUE(run.started);
  ASSERT_FALSE(run.timed_out) << "stdout:\n" << run.out << "stderr:\n" << run.err;
  EXPECT_NE(run.status, 0);
  EXPECT_LT(run.seconds, 40.0) << run.err;
  // Rank 0 names the lost target, whichever told it first: the disconnect event ("rank 0: rank
  // 1 (the target) ...") or a failed WRITE ("rank 0: a WRITE to rank 1 (the target) ...").
  EXPECT_NE(run.err.find("ftbench write-bw: rank 0: "), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("rank 1 (the target)"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("rank 0 exited with status 1"), std::string::npos) << run.err;
  EXPECT_TRUE(run.out.empty()) << run.out;
}

// --device names the device to use; one that does not exist is an error naming it and the
// devices that do, from both ranks, quickly.
TEST(FtbenchWriteBwRdmaTest, UnknownDeviceIsNamedWithTheDevicesThatExist) {
  if (const std::string why = SkipReason(); !why.empty()) GTEST_SKIP() << why;
  const ProgramResult run = RunJob({"-n", "2"}, {"--device", "ft_no_such_device"});
  ASSERT_TRUE(run.started);
  ASSERT_FALSE(run.timed_out) << "stdout:\n" << run.out << "stderr:\n" << run.err;
  EXPECT_NE(run.status, 0);
  EXPECT_LT(run.seconds, 30.0) << run.err;
  EXPECT_NE(run.err.find("ft_no_such_device"), std::string::npos) << run.err;
  for (const std::string& device : ft::verbs::ListRdmaDevices()) {
    EXPECT_NE(run.err.find(device), std::string::npos) << device << " not named in:\n" << run.err;
  }
  EXPECT_TRUE(run.out.empty()) << run.out;
}

}  // namespace
