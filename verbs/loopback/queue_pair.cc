// LoopbackQueuePair (model.h): posting send requests and receives onto an End's queues (limits,
// delays, inline payloads copied at post time) and fencing with ToError. A frozen node's posts
// and fences wait for Thaw (AwaitThaw) before touching anything.
#include "verbs/loopback/model.h"

#include <array>
#include <cstring>
#include <mutex>
#include <shared_mutex>

namespace ft::verbs::loopback {
namespace {

class LoopbackQueuePair final : public QueuePair {
 public:
  explicit LoopbackQueuePair(std::shared_ptr<End> end) : end_(std::move(end)) {
    end_->node->net->live_objects.fetch_add(1);
  }
  ~LoopbackQueuePair() override {
    DestroyEnd(*end_);
    end_->node->net->live_objects.fetch_sub(1);
  }
  LoopbackQueuePair(const LoopbackQueuePair&) = delete;
  LoopbackQueuePair& operator=(const LoopbackQueuePair&) = delete;

  uint32_t id() const override { return end_->id; }
  NodeId peer() const override { return end_->peer_rank; }
  std::span<const std::byte> peer_private_data() const override { return end_->peer_private_data; }
  QpState state() const override {
    return end_->error.load() || end_->node->dead.load() ? QpState::kError : QpState::kConnected;
  }

  Status PostSend(std::span<const SendRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    End& e = *end_;
    Node& n = *e.node;
    Net& net = *n.net;
    AwaitThaw(n);
    if (n.dead.load()) {
      return Status::Unavailable("PostSend on queue pair ", e.id, ": node ", n.id,
                                 " is dead (killed, or its Fabric was destroyed)");
    }
    const Limits& limits = net.options.limits;
    // Validate and prepare without End::mu: inline payloads take the registration lock.
    std::vector<Pending> prepared;
    prepared.reserve(requests.size());
    Status invalid;
    for (size_t i = 0; i < requests.size(); ++i) {
      const SendRequest& r = requests[i];
      uint64_t bytes = 0;
      invalid = ValidateSendRequest(r, i, limits, &bytes);
      if (!invalid.ok()) break;
      Pending& p = prepared.emplace_back();
      p.req = r;
      p.bytes = bytes;
      p.delay = net.DelayFor(n.id, e.peer_rank);
      if (r.inline_data) {
        std::shared_lock lock(n.mem);
        std::array<std::byte*, kMaxSge> src{};
        if (ResolveLocal(n, r.sge, r.num_sge, 0, src)) {
          p.payload.resize(bytes);
          Gather(p.payload.data(), r.sge, src, r.num_sge, bytes);
        } else {
          p.inline_bad_lkey = true;
        }
      }
    }
    size_t count = 0;
    Status full;
    {
      std::lock_guard lock(e.mu);
      const auto max_send = static_cast<uint64_t>(limits.max_send_wr);
      const uint64_t step = n.step.load();
      for (Pending& p : prepared) {
        if (e.next_seq - e.retired.load() >= max_send) {
          full = Status::ResourceExhausted(
              "PostSend on queue pair ", e.id, ": send queue full (", max_send,
              " requests outstanding, max_send_wr); poll a signaled completion to free slots");
          break;
        }
        p.seq = e.next_seq++;
        p.ready_step = step + static_cast<uint64_t>(p.delay) + 1;
        e.sq.push_back(std::move(p));
        ++count;
      }
      e.pending.fetch_add(static_cast<int64_t>(count));
      n.queued.fetch_add(static_cast<int64_t>(count));
    }
    if (count > 0) Wake(n);
    if (posted != nullptr) *posted = count;
    if (!full.ok()) return full;
    return invalid;
  }

  Status PostRecv(std::span<const RecvRequest> requests, size_t* posted) override {
    if (posted != nullptr) *posted = 0;
    End& e = *end_;
    Node& n = *e.node;
    AwaitThaw(n);
    if (n.dead.load()) {
      return Status::Unavailable("PostRecv on queue pair ", e.id, ": node ", n.id,
                                 " is dead (killed, or its Fabric was destroyed)");
    }
    const auto max_recv = static_cast<size_t>(n.net->options.limits.max_recv_wr);
    size_t count = 0;
    Status full;
    {
      std::lock_guard lock(e.mu);
      for (const RecvRequest& r : requests) {
        if (e.rq.size() >= max_recv) {
          full =
              Status::ResourceExhausted("PostRecv on queue pair ", e.id, ": receive queue full (",
                                        max_recv, " posted receives, max_recv_wr)");
          break;
        }
        e.rq.push_back(r);
        ++count;
      }
    }
    if (posted != nullptr) *posted = count;
    if (count > 0 && e.error.load()) {  // receives posted on a QP in error are flushed
      n.flush_pending.store(true);
      Wake(n);
    }
    return full;
  }

  void ToError() override {
    End& e = *end_;
    Node& n = *e.node;
    AwaitThaw(n);  // a stopped process fences nothing
    e.error.store(true);
    n.flush_pending.store(true);
    Wake(n);
    // The peer's copies into our memory that started before the flag was set finish now; later
    // ones see it and fail kRetryExceeded.
    Drain(n);
  }

 private:
  std::shared_ptr<End> end_;
};

}  // namespace

std::unique_ptr<QueuePair> MakeQueuePair(std::shared_ptr<End> end) {
  return std::make_unique<LoopbackQueuePair>(std::move(end));
}

}  // namespace ft::verbs::loopback
