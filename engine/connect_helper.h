// A thread that runs one blocking Fabric::Connect at a time for the worker, so that the worker
// keeps polling while partners connect. Made once per engine: creating a thread per round costs
// too much in a 1024-node process (thread creation serialises there, worst under sanitizers).
#ifndef FT_ENGINE_CONNECT_HELPER_H_
#define FT_ENGINE_CONNECT_HELPER_H_

#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "verbs/fabric.h"

namespace ft::internal {

class ConnectHelper {
 public:
  using Outcome = Result<std::vector<std::unique_ptr<verbs::QueuePair>>>;

  explicit ConnectHelper(verbs::Fabric* fabric);
  ~ConnectHelper();  // a Connect in progress ends by its own timeout or CancelConnects
  ConnectHelper(const ConnectHelper&) = delete;
  ConnectHelper& operator=(const ConnectHelper&) = delete;

  // Starts a Connect; the previous one must have been collected (its future was ready). The
  // helper calls fabric->Interrupt() when it returns, to wake the worker.
  std::future<Outcome> Submit(std::vector<verbs::ConnectRequest> requests, Nanos timeout);

 private:
  struct Task {
    std::vector<verbs::ConnectRequest> requests;
    Nanos timeout;
    std::promise<Outcome> promise;
  };
  void Run();

  verbs::Fabric* fabric_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::optional<Task> task_;
  std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace ft::internal

#endif  // FT_ENGINE_CONNECT_HELPER_H_
