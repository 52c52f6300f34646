// LoopbackFabric and LoopbackMemoryRegion (model.h): one node's Fabric (registration, polling
// completions and events, waiting for activity, leaving the network) and its registrations.
#include "verbs/loopback/model.h"

#include "common/log.h"

namespace ft::verbs::loopback {
namespace {

class LoopbackMemoryRegion final : public MemoryRegion {
 public:
  LoopbackMemoryRegion(std::shared_ptr<Node> node, void* addr, size_t length, uint32_t lkey,
                       uint32_t rkey)
      : node_(std::move(node)), addr_(addr), length_(length), lkey_(lkey), rkey_(rkey) {
    node_->net->live_objects.fetch_add(1);
  }
  ~LoopbackMemoryRegion() override {
    {
      // Exclusive: waits for every copy into or out of this node's memory (ibv_dereg_mr
      // guarantees no access after it returns).
      std::unique_lock lock(node_->mem);
      node_->lkeys.erase(lkey_);
      node_->rkeys.erase(rkey_);
    }
    node_->net->live_objects.fetch_sub(1);
  }
  LoopbackMemoryRegion(const LoopbackMemoryRegion&) = delete;
  LoopbackMemoryRegion& operator=(const LoopbackMemoryRegion&) = delete;

  void* addr() const override { return addr_; }
  size_t length() const override { return length_; }
  uint32_t lkey() const override { return lkey_; }
  uint32_t rkey() const override { return rkey_; }

 private:
  std::shared_ptr<Node> node_;
  void* addr_;
  size_t length_;
  uint32_t lkey_;
  uint32_t rkey_;
};

class LoopbackFabric final : public Fabric {
 public:
  explicit LoopbackFabric(std::shared_ptr<Node> node) : node_(std::move(node)) {
    node_->net->live_objects.fetch_add(1);
  }
  LoopbackFabric(const LoopbackFabric&) = delete;
  LoopbackFabric& operator=(const LoopbackFabric&) = delete;

  // The node leaves: like a clean process exit. QueuePairs should be destroyed first; any left
  // are destroyed here (their peers get kDisconnected) and their handles only fail afterwards.
  ~LoopbackFabric() override {
    Node& n = *node_;
    Net& net = *n.net;
    n.dead.store(true);
    SetFrozen(n, false);  // calls blocked on its QueuePairs by a Freeze return, as for a dead node
    const auto ends = SnapshotEnds(n);
    if (!ends.empty()) {
      FT_LOG(kWarn) << "loopback: Fabric of node " << n.id << " destroyed with " << ends.size()
                    << " live queue pairs; destroy QueuePairs before their Fabric";
    }
    for (const auto& e : ends) DestroyEnd(*e);
    {
      std::lock_guard lock(n.progress_mu);
      n.exec_ends.clear();
      n.exec_version = UINT64_MAX;
    }
    Drain(n);
    {
      std::lock_guard lock(net.mu);
      if (net.current[n.id] == node_) net.current[n.id].reset();
      WakeWaitingConnects(net);
    }
    net.live_objects.fetch_sub(1);
  }

  NodeId node() const override { return node_->id; }
  const Limits& limits() const override { return node_->net->options.limits; }
  std::string name() const override { return "loopback"; }

  Result<std::unique_ptr<MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                       uint32_t access) override {
    Node& n = *node_;
    AwaitThaw(n);
    if (n.dead.load()) return Status::Unavailable("RegisterMemory: node ", n.id, " is dead");
    if (addr == nullptr || bytes == 0) {
      return Status::InvalidArgument("RegisterMemory: empty range (addr ", addr, ", ", bytes,
                                     " bytes)");
    }
    constexpr uint32_t kKnown = kAccessLocalWrite | kAccessRemoteWrite | kAccessRemoteRead;
    if ((access & ~kKnown) != 0) {
      return Status::InvalidArgument("RegisterMemory: unknown access bits 0x", std::hex,
                                     access & ~kKnown);
    }
    if ((access & kAccessRemoteWrite) != 0 && (access & kAccessLocalWrite) == 0) {
      return Status::InvalidArgument(
          "RegisterMemory: kAccessRemoteWrite requires kAccessLocalWrite (as ibv_reg_mr)");
    }
    const uint32_t index = n.net->next_key_index.fetch_add(1);
    const uint32_t lkey = MixKey(2 * index);
    const uint32_t rkey = MixKey(2 * index + 1);
    const MrInfo info{.addr = reinterpret_cast<uintptr_t>(addr), .length = bytes, .access = access};
    {
      std::unique_lock lock(n.mem);
      n.lkeys[lkey] = info;
      n.rkeys[rkey] = info;
    }
    return std::unique_ptr<MemoryRegion>(
        std::make_unique<LoopbackMemoryRegion>(node_, addr, bytes, lkey, rkey));
  }

  Result<std::vector<std::unique_ptr<QueuePair>>> Connect(std::span<const ConnectRequest> requests,
                                                          Nanos timeout) override {
    AwaitThaw(*node_);
    auto result = ConnectNode(node_, requests, timeout);
    // Frozen meanwhile: the offers stay matchable by peers (the rendezvous is out of band), but
    // the call returns only after Thaw, whatever its outcome.
    AwaitThaw(*node_);
    return result;
  }

  size_t PollCompletions(std::span<Completion> out) override {
    Node& n = *node_;
    std::unique_lock lock(n.mu, std::defer_lock);
    while (true) {
      AwaitThaw(n);
      Progress(n);
      lock.lock();
      if (!Frozen(n)) break;
      lock.unlock();  // frozen after the gate: reap nothing (Freeze synchronises on n.mu)
    }
    size_t count = 0;
    while (count < out.size() && !n.cq.empty()) {
      const CqEntry& entry = n.cq.front();
      out[count++] = entry.completion;
      if (entry.seq != kNoSeq) Retire(*entry.end, entry.seq);
      n.cq.pop_front();
    }
    return count;
  }

  size_t PollEvents(std::span<Event> out) override {
    Node& n = *node_;
    std::unique_lock lock(n.mu, std::defer_lock);
    while (true) {
      AwaitThaw(n);
      lock.lock();
      if (!Frozen(n)) break;
      lock.unlock();
    }
    size_t count = 0;
    while (count < out.size() && !n.events.empty()) {
      out[count++] = std::move(n.events.front());
      n.events.pop_front();
    }
    return count;
  }

  void WaitForActivity(Nanos timeout) override {
    Node& n = *node_;
    const SteadyTime deadline = DeadlineAfter(timeout);
    AwaitThaw(n);
    std::unique_lock lock(n.mu);
    n.waiters.fetch_add(1);
    while (true) {
      n.cv.wait_until(lock, deadline, [&] {
        return n.interrupted || !n.cq.empty() || !n.events.empty() ||
               (!n.dead.load() && (n.queued.load() > 0 || n.flush_pending.load()));
      });
      if (!Frozen(n)) break;
      // Woken (by activity, Interrupt or the deadline) while frozen: a stopped thread does not
      // run. After Thaw it waits on to its deadline, or returns at once if something is pending.
      lock.unlock();
      AwaitThaw(n);
      lock.lock();
    }
    n.waiters.fetch_sub(1);
    n.interrupted = false;
  }

  // Not gated by Freeze: like a signal sent to a stopped process, it is recorded at once and takes
  // effect when the node runs again.
  void Interrupt() override {
    Node& n = *node_;
    std::lock_guard lock(n.mu);
    n.interrupted = true;
    n.cv.notify_all();
  }

  // Not gated either: a Connect of a frozen node returns Aborted after Thaw.
  void CancelConnects() override { CancelNodeConnects(*node_); }

 private:
  // Frozen and not dead (a dead node's calls return as they do without Freeze).
  static bool Frozen(const Node& n) { return n.frozen.load() && !n.dead.load(); }

  std::shared_ptr<Node> node_;
};

}  // namespace

std::unique_ptr<Fabric> MakeFabric(std::shared_ptr<Node> node) {
  return std::make_unique<LoopbackFabric>(std::move(node));
}

}  // namespace ft::verbs::loopback
