// Connect in loopback (model.h): a batch registers one offer per peer with the network, matches
// the peers' offers for it into queue pairs, and waits (bounded) for the rest, a death or a
// cancel.
#include "verbs/loopback/model.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace ft::verbs::loopback {
namespace {

// Creates the pair for two matched offers and registers its Ends with both nodes.
// Caller holds Net::mu.
void MatchOffers(Net& net, Offer& ours, Offer& theirs) {
  auto pair = std::make_shared<Pair>();
  End& mine = pair->ends[0];
  End& other = pair->ends[1];
  mine.node = ours.from;
  mine.peer = &other;
  mine.id = net.next_qp_id.fetch_add(1);
  mine.peer_rank = theirs.from->id;
  mine.peer_private_data.assign(theirs.data.begin(), theirs.data.end());
  other.node = theirs.from;
  other.peer = &mine;
  other.id = net.next_qp_id.fetch_add(1);
  other.peer_rank = ours.from->id;
  other.peer_private_data.assign(ours.data.begin(), ours.data.end());
  // No other thread sees the Ends yet: their receive queues need no lock.
  mine.rq.assign(ours.receives.begin(), ours.receives.end());
  other.rq.assign(theirs.receives.begin(), theirs.receives.end());
  ours.result = std::shared_ptr<End>(pair, &mine);
  theirs.result = std::shared_ptr<End>(pair, &other);
  if (theirs.wake != nullptr) theirs.wake->notify_one();
  for (Offer* offer : {&ours, &theirs}) {
    Node& n = *offer->from;
    std::lock_guard lock(n.mu);
    n.ends[offer->result->id] = offer->result;
    ++n.ends_version;
  }
}

std::string JoinNodes(const std::vector<NodeId>& nodes) {
  std::string out;
  for (NodeId node : nodes) out += StrCat(out.empty() ? "" : ", ", "node ", node);
  return out;
}

}  // namespace

// Wakes every Connect still waiting (a node died or left: waiters re-check their peers).
// Caller holds Net::mu.
void WakeWaitingConnects(Net& net) {
  for (auto& [key, offer] : net.offers) {
    if (offer->wake != nullptr) offer->wake->notify_one();
  }
}

void CancelNodeConnects(Node& n) {
  Net& net = *n.net;
  std::lock_guard lock(net.mu);
  ++n.connect_cancels;
  for (auto& [key, offer] : net.offers) {
    if (key.first == n.id && offer->wake != nullptr) offer->wake->notify_one();
  }
}

Result<std::vector<std::unique_ptr<QueuePair>>> ConnectNode(
    const std::shared_ptr<Node>& self, std::span<const ConnectRequest> requests, Nanos timeout) {
  Node& n = *self;
  Net& net = *n.net;
  const SteadyTime deadline = DeadlineAfter(timeout);
  if (n.dead.load()) return Status::Unavailable("Connect: node ", n.id, " is dead");
  for (const ConnectRequest& r : requests) {
    if (r.peer >= static_cast<NodeId>(net.nodes)) {
      return Status::InvalidArgument("Connect from node ", n.id, ": peer ", r.peer,
                                     " is outside [0, ", net.nodes, ")");
    }
  }
  FT_RETURN_IF_ERROR(ValidateConnectRequests(n.id, requests, net.options.limits));
  std::vector<std::unique_ptr<QueuePair>> qps;
  if (requests.empty()) return qps;

  std::vector<Offer> offers(requests.size());
  std::condition_variable wake;  // matches of our offers and deaths of peers notify it
  for (Offer& offer : offers) offer.wake = &wake;
  std::unique_lock lock(net.mu);
  const uint64_t cancels_at_start = n.connect_cancels;
  for (const ConnectRequest& r : requests) {
    if (!net.alive[r.peer]) {
      return Status::Unavailable("Connect from node ", n.id, ": peer node ", r.peer, " is dead");
    }
    // An offer left by a killed incarnation of this rank is stale: ours replaces it (its own
    // Connect withdraws it only if it is still its own).
    auto pending = net.offers.find({n.id, r.peer});
    if (pending != net.offers.end() && !pending->second->from->dead.load()) {
      return Status::FailedPrecondition("Connect: a Connect from node ", n.id, " to node ", r.peer,
                                        " is already pending");
    }
  }
  // Register every offer of the batch before waiting for any: batches never deadlock.
  for (size_t i = 0; i < requests.size(); ++i) {
    Offer& offer = offers[i];
    offer.from = self;
    offer.to = requests[i].peer;
    offer.data = requests[i].private_data;
    offer.receives = requests[i].receives;
    auto it = net.offers.find({offer.to, n.id});
    if (it != net.offers.end() && !it->second->from->dead.load()) {
      MatchOffers(net, offer, *it->second);
      net.offers.erase(it);
    } else {
      net.offers[{n.id, offer.to}] = &offer;
    }
  }

  std::vector<NodeId> missing;
  std::vector<NodeId> dead;
  const auto settled = [&] {
    missing.clear();
    dead.clear();
    for (const Offer& offer : offers) {
      if (offer.result != nullptr) continue;
      missing.push_back(offer.to);
      if (!net.alive[offer.to]) dead.push_back(offer.to);
    }
    return missing.empty() || !dead.empty() || n.dead.load() ||
           n.connect_cancels != cancels_at_start;
  };
  bool timed_out = false;
  while (!settled()) {
    if (wake.wait_until(lock, deadline) == std::cv_status::timeout) {
      timed_out = !settled();
      break;
    }
  }
  if (missing.empty() && !n.dead.load()) {
    lock.unlock();
    qps.reserve(offers.size());
    for (Offer& offer : offers) qps.push_back(MakeQueuePair(offer.result));
    return qps;
  }
  // Failure: withdraw our remaining offers and drop the QPs already made.
  for (Offer& offer : offers) {
    auto it = net.offers.find({n.id, offer.to});
    if (it != net.offers.end() && it->second == &offer) net.offers.erase(it);
  }
  Status status;
  if (n.dead.load()) {
    status = Status::Unavailable("Connect: node ", n.id, " died while connecting");
  } else if (n.connect_cancels != cancels_at_start) {
    status = Status::Aborted("Connect from node ", n.id, " was cancelled");
  } else if (!dead.empty()) {
    status = Status::Unavailable("Connect from node ", n.id, ": ", JoinNodes(dead), " died");
  } else {
    FT_CHECK(timed_out);
    status = Status::DeadlineExceeded(
        "Connect from node ", n.id, " timed out after ",
        std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(), " ms waiting for ",
        JoinNodes(missing));
  }
  lock.unlock();
  for (Offer& offer : offers) {
    if (offer.result != nullptr) DestroyEnd(*offer.result);
  }
  return status;
}

}  // namespace ft::verbs::loopback
