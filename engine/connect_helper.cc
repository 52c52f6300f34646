// The connect helper thread (engine/connect_helper.h).
#include "engine/connect_helper.h"

namespace ft::internal {

ConnectHelper::ConnectHelper(verbs::Fabric* fabric) : fabric_(fabric), thread_([this] { Run(); }) {}

ConnectHelper::~ConnectHelper() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

std::future<ConnectHelper::Outcome> ConnectHelper::Submit(
    std::vector<verbs::ConnectRequest> requests, Nanos timeout) {
  std::promise<Outcome> promise;
  std::future<Outcome> future = promise.get_future();
  {
    std::lock_guard lock(mutex_);
    task_ = Task{std::move(requests), timeout, std::move(promise)};
  }
  cv_.notify_one();
  return future;
}

void ConnectHelper::Run() {
  while (true) {
    std::optional<Task> task;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || task_.has_value(); });
      if (!task_.has_value()) return;  // stopping, nothing to do
      task = std::move(task_);
      task_.reset();
    }
    task->promise.set_value(fabric_->Connect(task->requests, task->timeout));
    fabric_->Interrupt();  // wake the worker to harvest
  }
}

}  // namespace ft::internal
