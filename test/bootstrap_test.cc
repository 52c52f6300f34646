#include "ftengine/bootstrap.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "test/status_matchers.h"
#include "world/process.h"

namespace ft {
namespace {

using test::HasError;
using Env = std::map<std::string, std::string>;

Result<Bootstrap> From(const Env& env) {
  return BootstrapFromEnvironment([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

TEST(Bootstrap, FtVariables) {
  auto b = From({{"FT_RANK", "3"}, {"FT_WORLD_SIZE", "8"}, {"FT_COORDINATOR", "10.0.0.1:7471"}});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->rank, 3u);
  EXPECT_EQ(b->size, 8u);
  EXPECT_EQ(b->coordinator_host, "10.0.0.1");
  EXPECT_EQ(b->coordinator_port, 7471);
  EXPECT_EQ(b->coordinator_rank, 0u);
  EXPECT_FALSE(b->spare);
  EXPECT_NE(b->source.find("FT_RANK"), std::string::npos);
}

TEST(Bootstrap, EachLauncherInOrder) {
  const Env coordinator = {{"FT_COORDINATOR", "head:9000"}};
  struct Case {
    Env env;
    uint32_t rank, size;
    const char* source;
  };
  const Case cases[] = {
      {{{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "16"}}, 5, 16, "Slurm"},
      {{{"PMI_RANK", "1"}, {"PMI_SIZE", "4"}}, 1, 4, "PMI"},
      {{{"OMPI_COMM_WORLD_RANK", "0"}, {"OMPI_COMM_WORLD_SIZE", "2"}}, 0, 2, "Open MPI"},
      // FT_ wins over Slurm when both are set (ftrun inside an allocation).
      {{{"FT_RANK", "2"}, {"FT_WORLD_SIZE", "3"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}},
       2,
       3,
       "ftrun"},
  };
  for (const Case& c : cases) {
    Env env = c.env;
    env.insert(coordinator.begin(), coordinator.end());
    auto b = From(env);
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_EQ(b->rank, c.rank);
    EXPECT_EQ(b->size, c.size);
    EXPECT_NE(b->source.find(c.source), std::string::npos) << b->source;
    EXPECT_EQ(b->coordinator_host, "head");
  }
}

TEST(Bootstrap, BadValuesNameTheVariable) {
  const std::string c = "h:1";
  EXPECT_TRUE(HasError(From({{"FT_COORDINATOR", c}}).status(), StatusCode::kInvalidArgument,
                       "no rank in the environment"));
  EXPECT_TRUE(HasError(From({{"FT_RANK", "1"}, {"FT_COORDINATOR", c}}).status(),
                       StatusCode::kInvalidArgument, "FT_WORLD_SIZE is not set"));
  EXPECT_TRUE(
      HasError(From({{"FT_RANK", "x1"}, {"FT_WORLD_SIZE", "4"}, {"FT_COORDINATOR", c}}).status(),
               StatusCode::kInvalidArgument, "FT_RANK=\"x1\""));
  EXPECT_TRUE(
      HasError(From({{"FT_RANK", "-1"}, {"FT_WORLD_SIZE", "4"}, {"FT_COORDINATOR", c}}).status(),
               StatusCode::kInvalidArgument, "FT_RANK=\"-1\""));
  EXPECT_TRUE(
      HasError(From({{"FT_RANK", "4"}, {"FT_WORLD_SIZE", "4"}, {"FT_COORDINATOR", c}}).status(),
               StatusCode::kInvalidArgument, "FT_RANK=4 is outside the world"));
  EXPECT_TRUE(
      HasError(From({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"FT_COORDINATOR", c}}).status(),
               StatusCode::kInvalidArgument, "SLURM_NTASKS=1"));
  EXPECT_TRUE(HasError(
      From({{"PMI_RANK", "0"}, {"PMI_SIZE", "99999999999"}, {"FT_COORDINATOR", c}}).status(),
      StatusCode::kInvalidArgument, "PMI_SIZE=99999999999"));
  EXPECT_TRUE(HasError(From({{"FT_RANK", "0"}, {"FT_WORLD_SIZE", "2"}}).status(),
                       StatusCode::kInvalidArgument, "FT_COORDINATOR is not set"));
  for (const char* bad : {"nohostport", "host:", ":7471", "host:0", "host:65536", "host:12x",
                          "a:b:c", "[::1]7471", "[::1"}) {
    EXPECT_TRUE(
        HasError(From({{"FT_RANK", "0"}, {"FT_WORLD_SIZE", "2"}, {"FT_COORDINATOR", bad}}).status(),
                 StatusCode::kInvalidArgument, "FT_COORDINATOR"))
        << bad;
  }
  EXPECT_TRUE(HasError(From({{"FT_RANK", "0"},
                             {"FT_WORLD_SIZE", "2"},
                             {"FT_COORDINATOR", c},
                             {"FT_COORDINATOR_RANK", "2"}})
                           .status(),
                       StatusCode::kInvalidArgument, "FT_COORDINATOR_RANK=2"));
  EXPECT_TRUE(HasError(
      From({{"FT_RANK", "0"}, {"FT_WORLD_SIZE", "2"}, {"FT_COORDINATOR", c}, {"FT_SPARE", "yes"}})
          .status(),
      StatusCode::kInvalidArgument, "FT_SPARE=\"yes\""));
}

TEST(Bootstrap, Ipv6AndSpares) {
  auto b = From({{"FT_RANK", "9"},
                 {"FT_WORLD_SIZE", "8"},
                 {"FT_SPARE", "1"},
                 {"FT_SPARES", "2"},
                 {"FT_COORDINATOR", "[fe80::1]:7000"},
                 {"FT_COORDINATOR_RANK", "7"}});
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->spare);
  EXPECT_EQ(b->rank, 9u);  // a spare's number lies past the world
  EXPECT_EQ(b->spares, 2u);
  EXPECT_FALSE(b->replaces.has_value());
  EXPECT_EQ(b->coordinator_host, "fe80::1");
  EXPECT_EQ(b->coordinator_port, 7000);
  EXPECT_EQ(b->coordinator_rank, 7u);
}

// A spare's number must be one the coordinator dials (FT_SPARES of them); a process started for a
// dead rank names a rank of the world, and only as a spare.
TEST(Bootstrap, SpareNumbersAndRespawnsAreChecked) {
  const Env base = {{"FT_WORLD_SIZE", "8"}, {"FT_SPARE", "1"}, {"FT_COORDINATOR", "h:1"}};
  Env env = base;
  env["FT_RANK"] = "9";
  EXPECT_TRUE(test::HasError(From(env).status(), StatusCode::kInvalidArgument,
                             "spare number 9 is not in [8, 8) (FT_SPARES=0)"));
  env["FT_SPARES"] = "x";
  EXPECT_TRUE(test::HasError(From(env).status(), StatusCode::kInvalidArgument, "FT_SPARES"));
  env = base;
  env["FT_RANK"] = "10";
  env["FT_RESPAWN_OF"] = "3";
  auto respawned = From(env);
  ASSERT_TRUE(respawned.ok()) << respawned.status();
  EXPECT_EQ(respawned->replaces, std::optional<uint32_t>(3));
  env["FT_RESPAWN_OF"] = "8";
  EXPECT_TRUE(test::HasError(From(env).status(), StatusCode::kInvalidArgument,
                             "FT_RESPAWN_OF=8 is outside the world of 8"));
  env["FT_RESPAWN_OF"] = "3";
  env["FT_SPARE"] = "0";
  env["FT_RANK"] = "2";
  EXPECT_TRUE(test::HasError(From(env).status(), StatusCode::kInvalidArgument,
                             "FT_RESPAWN_OF=3 is for a process started as a spare"));
}

// The launcher can tune the failure detector without a rebuild: FT_HEARTBEAT_INTERVAL_MS and
// FT_HEARTBEAT_MISSES override the application's options; a bad value is named.
TEST(Bootstrap, HeartbeatOverridesFromTheEnvironment) {
  const auto with = [](const Env& env) {
    EngineOptions options;
    options.k = 3;
    return OptionsFromEnvironment(options, [&env](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  Result<EngineOptions> untouched = with({});
  ASSERT_TRUE(untouched.ok()) << untouched.status();
  EXPECT_EQ(untouched->heartbeat_interval, EngineOptions().heartbeat_interval);
  EXPECT_EQ(untouched->heartbeat_misses, EngineOptions().heartbeat_misses);
  EXPECT_EQ(untouched->k, 3);
  EXPECT_EQ(untouched->startup_timeout, EngineOptions().startup_timeout);
  Result<EngineOptions> tuned = with({{"FT_HEARTBEAT_INTERVAL_MS", "100"},
                                      {"FT_HEARTBEAT_MISSES", "5"},
                                      {"FT_STARTUP_TIMEOUT_MS", "120000"}});
  ASSERT_TRUE(tuned.ok()) << tuned.status();
  EXPECT_EQ(tuned->heartbeat_interval, std::chrono::milliseconds(100));
  EXPECT_EQ(tuned->heartbeat_misses, 5);
  EXPECT_EQ(tuned->startup_timeout, std::chrono::milliseconds(120000));
  EXPECT_EQ(tuned->k, 3);
  for (const auto& [name, value] :
       std::vector<std::pair<std::string, std::string>>{{"FT_HEARTBEAT_INTERVAL_MS", "0"},
                                                        {"FT_HEARTBEAT_INTERVAL_MS", "10ms"},
                                                        {"FT_HEARTBEAT_INTERVAL_MS", "-5"},
                                                        {"FT_HEARTBEAT_MISSES", "1000001"},
                                                        {"FT_HEARTBEAT_MISSES", "x"},
                                                        {"FT_STARTUP_TIMEOUT_MS", "0"},
                                                        {"FT_STARTUP_TIMEOUT_MS", "30s"}}) {
    Result<EngineOptions> bad = with({{name, value}});
    EXPECT_TRUE(HasError(bad.status(), StatusCode::kInvalidArgument, name + "=\"" + value + "\""));
  }
}

// A spare's priority: FT_SPARE_PRIORITY, 0 and up; unset keeps launch order.
TEST(Bootstrap, SparePriorityFromTheEnvironment) {
  const auto with = [](const Env& env) {
    return OptionsFromEnvironment(EngineOptions(), [&env](const char* name) -> const char* {
      auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  EXPECT_EQ(with({})->spare_priority, EngineOptions::kLaunchOrder);
  EXPECT_EQ(with({{"FT_SPARE_PRIORITY", "0"}})->spare_priority, 0u);
  EXPECT_EQ(with({{"FT_SPARE_PRIORITY", "7"}})->spare_priority, 7u);
  for (const char* value : {"-1", "4294967295", "first"}) {
    EXPECT_TRUE(HasError(with({{"FT_SPARE_PRIORITY", value}}).status(),
                         StatusCode::kInvalidArgument,
                         std::string("FT_SPARE_PRIORITY=\"") + value + "\""));
  }
}

}  // namespace
}  // namespace ft
