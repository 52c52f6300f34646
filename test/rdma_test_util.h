// Shared by the rdma tests: where the test nodes listen, and the skip when no device exists.
//
// All nodes of a test live in this one process and listen on one address of the RDMA device
// (RXE_VM_IP in the rxe-vm, or FT_TEST_RDMA_ADDRESS) on distinct ports. The ports come from the
// process id, so that tests run in parallel (ctest -j) do not collide.
#ifndef FT_TEST_RDMA_TEST_UTIL_H_
#define FT_TEST_RDMA_TEST_UTIL_H_

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "verbs/rdma/rdma.h"

namespace ft::verbs::rdma_test {

// The address the test nodes listen on: FT_TEST_RDMA_ADDRESS, else RXE_VM_IP, else empty.
inline std::string TestAddress() {
  for (const char* name : {"FT_TEST_RDMA_ADDRESS", "RXE_VM_IP"}) {
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0') return value;
  }
  return "";
}

// The heartbeat of the tests' jobs: every 100 ms, lost after 10 missed. The VM emulates its CPUs
// (TCG) and runs up to 8 processes of a job on 2 of them: a process waits hundreds of
// milliseconds for a CPU at times, which under the default 30 ms bound would be a lost node. A
// 1 s bound keeps detection within the tests' time while a stall is never taken for a loss.
inline std::vector<std::string> HeartbeatEnvironment() {
  return {"FT_HEARTBEAT_INTERVAL_MS=100", "FT_HEARTBEAT_MISSES=10"};
}

// The environment of a job the tests launch under ftrun: the VM's heartbeat timing, and
// RXE_VM_IP set to the address the nodes listen on (ftrun names FT_COORDINATOR there).
inline std::vector<std::string> JobEnvironment() {
  std::vector<std::string> env = HeartbeatEnvironment();
  env.push_back("RXE_VM_IP=" + TestAddress());
  return env;
}

// Why rdma tests cannot run here, or empty when they can.
inline std::string SkipReason() {
  if (ListRdmaDevices().empty()) {
    return "no RDMA device on this machine (ibv_get_device_list found none): the rdma tests run "
           "in the soft-RoCE VM, `../shared/rxe-vm/rxe-vm -- ctest --test-dir <build> -L rdma`";
  }
  if (TestAddress().empty()) {
    return "no listen address for the test nodes: set FT_TEST_RDMA_ADDRESS to an IP address of "
           "the RDMA device's interface (rxe-vm sets RXE_VM_IP)";
  }
  return "";
}

// A block of `count` ports for this process: 20000..59999, spread by process id.
inline uint16_t BasePort(int count, int block = 0) {
  const auto pid = static_cast<uint32_t>(getpid());
  return static_cast<uint16_t>(20000 + ((pid * 7919u + static_cast<uint32_t>(block) * 104729u) %
                                        static_cast<uint32_t>(40000 / count)) *
                                           static_cast<uint32_t>(count));
}

}  // namespace ft::verbs::rdma_test

#endif  // FT_TEST_RDMA_TEST_UTIL_H_
