// LoopbackNetwork (loopback.h): creating the network and its nodes' Fabrics, and fault
// injection: kill (with torn writes), revive, freeze, partitions, delays.
#include "verbs/loopback/model.h"

#include <cstring>
#include <mutex>
#include <random>
#include <shared_mutex>

#include "common/log.h"

namespace ft::verbs {
namespace {

using loopback::Drain;
using loopback::End;
using loopback::Gather;
using loopback::kMaxNodes;
using loopback::Net;
using loopback::Node;
using loopback::NotifyDisconnected;
using loopback::PairKey;
using loopback::Pending;
using loopback::PushEvent;
using loopback::ResolveLocal;
using loopback::ResolveRemote;
using loopback::SetFrozen;
using loopback::SharedLockPair;
using loopback::SnapshotEnds;
using loopback::WakeWaitingConnects;

// Torn writes: at Kill time, a seeded random prefix of each WRITE queued to or from the killed
// node lands, if its source and destination are still registered. Caller holds Net::mu.
void LandTornWrites(Net& net, Node& killed, const std::vector<std::shared_ptr<End>>& ends) {
  struct Torn {
    Node* from;
    Node* to;
    Pending p;
    uint64_t prefix = 0;
  };
  std::vector<Torn> writes;
  for (const auto& e : ends) {
    for (End* side : {e.get(), e->peer}) {
      // A WRITE on a QP in error, or across a partition, would not have reached the wire.
      if (side->error.load() || net.Partitioned(side->node->id, side->peer_rank)) continue;
      std::lock_guard lock(side->mu);
      for (const Pending& p : side->sq) {
        if (p.req.opcode == Opcode::kWrite && p.bytes > 0 && !p.inline_bad_lkey) {
          writes.push_back(Torn{side->node.get(), side->peer->node.get(), p});
        }
      }
    }
  }
  {
    std::lock_guard lock(net.rng_mu);
    for (Torn& w : writes)
      w.prefix = std::uniform_int_distribution<uint64_t>(0, w.p.bytes)(net.rng);
  }
  for (Torn& w : writes) {
    if (w.prefix == 0) continue;
    const SendRequest& r = w.p.req;
    SharedLockPair locks(*w.from, *w.to);
    std::array<std::byte*, kMaxSge> src{};
    if (!r.inline_data && !ResolveLocal(*w.from, r.sge, r.num_sge, 0, src)) continue;
    std::byte* dst = ResolveRemote(*w.to, r.rkey, r.remote_addr, w.p.bytes, kAccessRemoteWrite);
    if (dst == nullptr) continue;
    if (r.inline_data) {
      std::memmove(dst, w.p.payload.data(), w.prefix);
    } else {
      Gather(dst, r.sge, src, r.num_sge, w.prefix);
    }
  }
  FT_LOG(kDebug) << "loopback: node " << killed.id << " killed with " << writes.size()
                 << " queued WRITEs torn";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// LoopbackNetwork

struct LoopbackNetwork::State {
  std::unique_ptr<loopback::Net> net;
};

LoopbackNetwork::LoopbackNetwork(PrivateTag, std::unique_ptr<State> state)
    : state_(std::move(state)) {}

LoopbackNetwork::~LoopbackNetwork() {
  FT_CHECK_MSG(state_->net->live_objects.load() == 0,
               "destroy every Fabric, QueuePair and MemoryRegion before their LoopbackNetwork");
}

Result<std::unique_ptr<LoopbackNetwork>> LoopbackNetwork::Create(int nodes,
                                                                 LoopbackOptions options) {
  if (nodes < 1 || nodes > kMaxNodes) {
    return Status::InvalidArgument("LoopbackNetwork: nodes = ", nodes, " is outside [1, ",
                                   kMaxNodes, "]");
  }
  const Limits& l = options.limits;
  if (l.max_send_wr < 1 || l.max_recv_wr < 1 || l.cq_depth < 1 || l.max_message_bytes < 1) {
    return Status::InvalidArgument(
        "LoopbackNetwork: limits need max_send_wr, max_recv_wr, cq_depth and max_message_bytes "
        ">= 1 (got ",
        l.max_send_wr, ", ", l.max_recv_wr, ", ", l.cq_depth, ", ", l.max_message_bytes, ")");
  }
  if (l.max_inline_bytes > l.max_message_bytes) {
    return Status::InvalidArgument("LoopbackNetwork: max_inline_bytes ", l.max_inline_bytes,
                                   " exceeds max_message_bytes ", l.max_message_bytes);
  }
  if (options.rnr_retry_steps < 0) {
    return Status::InvalidArgument("LoopbackNetwork: rnr_retry_steps = ", options.rnr_retry_steps,
                                   " is negative");
  }
  auto state = std::make_unique<State>();
  state->net = std::make_unique<loopback::Net>(nodes, options);
  return std::make_unique<LoopbackNetwork>(PrivateTag{}, std::move(state));
}

int LoopbackNetwork::nodes() const { return state_->net->nodes; }
uint64_t LoopbackNetwork::seed() const { return state_->net->options.seed; }
std::string LoopbackNetwork::seed_description() const {
  return StrCat("loopback seed=", state_->net->options.seed);
}

Result<std::unique_ptr<Fabric>> LoopbackNetwork::CreateFabric(NodeId node) {
  Net& net = *state_->net;
  if (node >= static_cast<NodeId>(net.nodes)) {
    return Status::InvalidArgument("CreateFabric: node ", node, " is outside [0, ", net.nodes, ")");
  }
  std::lock_guard lock(net.mu);
  if (!net.alive[node]) {
    return Status::FailedPrecondition("CreateFabric: node ", node, " was killed; Revive it first");
  }
  if (net.current[node] != nullptr && !net.current[node]->dead.load()) {
    return Status::FailedPrecondition("CreateFabric: node ", node, " already has a live Fabric");
  }
  auto n = std::make_shared<loopback::Node>(&net, node, net.next_incarnation.fetch_add(1));
  net.current[node] = n;
  return loopback::MakeFabric(std::move(n));
}

void LoopbackNetwork::Kill(NodeId node) {
  Net& net = *state_->net;
  FT_CHECK_MSG(node < static_cast<NodeId>(net.nodes), "Kill: node out of range");
  std::lock_guard lock(net.mu);
  net.alive[node] = false;
  WakeWaitingConnects(net);  // Connects waiting for this node fail Unavailable
  const std::shared_ptr<Node> n = net.current[node];
  if (n == nullptr || n->dead.exchange(true)) return;
  SetFrozen(*n, false);  // its calls blocked by a Freeze return, as a dead node's do
  Drain(*n);  // copies into or out of its memory that already started finish; no new ones start
  const auto ends = SnapshotEnds(*n);
  if (net.torn_writes.load()) LandTornWrites(net, *n, ends);
  for (const auto& e : ends) {
    NotifyDisconnected(*e->peer, node, StrCat("node ", node, " was killed"));
  }
  PushEvent(*n,
            Event{.type = EventType::kDeviceError, .peer = node, .qp = 0, .detail = "node killed"});
}

void LoopbackNetwork::Revive(NodeId node) {
  Net& net = *state_->net;
  FT_CHECK_MSG(node < static_cast<NodeId>(net.nodes), "Revive: node out of range");
  std::lock_guard lock(net.mu);
  net.alive[node] = true;
}

bool LoopbackNetwork::alive(NodeId node) const {
  const Net& net = *state_->net;
  if (node >= static_cast<NodeId>(net.nodes)) return false;
  std::lock_guard lock(net.mu);
  return net.alive[node];
}

void LoopbackNetwork::Freeze(NodeId node) {
  Net& net = *state_->net;
  FT_CHECK_MSG(node < static_cast<NodeId>(net.nodes), "Freeze: node out of range");
  std::shared_ptr<Node> n;
  {
    // Under the network's mu: Kill, Thaw and Fabric creation cannot interleave with the checks.
    std::lock_guard lock(net.mu);
    n = net.current[node];
    if (!net.alive[node] || n == nullptr || n->dead.load()) return;  // no process to stop
    SetFrozen(*n, true);
  }
  // A progress step or a reap that started before the flag finishes now; later ones see it. Not
  // under the network's mu: a step may copy up to 64 MiB.
  { std::lock_guard progress(n->progress_mu); }
  { std::lock_guard reap(n->mu); }
}

void LoopbackNetwork::Thaw(NodeId node) {
  Net& net = *state_->net;
  FT_CHECK_MSG(node < static_cast<NodeId>(net.nodes), "Thaw: node out of range");
  std::lock_guard lock(net.mu);
  if (net.current[node] != nullptr) SetFrozen(*net.current[node], false);
}

bool LoopbackNetwork::frozen(NodeId node) const {
  const Net& net = *state_->net;
  if (node >= static_cast<NodeId>(net.nodes)) return false;
  std::lock_guard lock(net.mu);
  const std::shared_ptr<Node>& n = net.current[node];
  return n != nullptr && n->frozen.load() && !n->dead.load();
}

void LoopbackNetwork::Partition(NodeId a, NodeId b) {
  Net& net = *state_->net;
  FT_CHECK_MSG(a < static_cast<NodeId>(net.nodes) && b < static_cast<NodeId>(net.nodes) && a != b,
               "Partition: bad node pair");
  {
    std::unique_lock lock(net.faults_mu);
    net.partitions.insert(PairKey(a, b));
    net.partition_count.store(net.partitions.size(), std::memory_order_release);
  }
  // Copies between them that already started finish before Partition returns.
  std::lock_guard lock(net.mu);
  for (NodeId node : {a, b}) {
    if (net.current[node] != nullptr) Drain(*net.current[node]);
  }
}

void LoopbackNetwork::Heal(NodeId a, NodeId b) {
  Net& net = *state_->net;
  std::unique_lock lock(net.faults_mu);
  net.partitions.erase(PairKey(a, b));
  net.partition_count.store(net.partitions.size(), std::memory_order_release);
}

void LoopbackNetwork::SetTornWrites(bool enabled) { state_->net->torn_writes.store(enabled); }

void LoopbackNetwork::SetDelay(NodeId a, NodeId b, int steps) {
  Net& net = *state_->net;
  FT_CHECK_MSG(steps >= 0, "SetDelay: negative steps");
  std::unique_lock lock(net.faults_mu);
  if (steps == 0) {
    net.delays.erase(PairKey(a, b));
  } else {
    net.delays[PairKey(a, b)] = steps;
  }
  net.delay_count.store(net.delays.size(), std::memory_order_release);
}

void LoopbackNetwork::SetRandomDelays(int max_steps) {
  FT_CHECK_MSG(max_steps >= 0, "SetRandomDelays: negative steps");
  state_->net->random_delay_max.store(max_steps);
}

}  // namespace ft::verbs
