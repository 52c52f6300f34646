// The peer table: every queue pair of one node, by (rank, epoch, role), with its fence and its
// replacement.
//
// A node has two kinds of links (docs/architecture.md, "Links"):
// - control: to the coordinator (on the coordinator: to every node), made at Create; SEND/RECV
//   of the commit protocol. Losing it means losing that node: only the coordinator decides what
//   follows (a new view, in the recovery issue).
// - data: to a partner (a holder of this node's fragments, or an owner it hosts), made when a GO
//   names the partner; WRITEs and READs. Never the control QP, even when the coordinator is a
//   partner: fencing a data link (a checkpoint deadline with WRITEs in flight) must never cut the
//   control path.
// Fencing a link moves its QP to error (nothing the peer posts lands in our memory after that, and
// our posted work flushes) and retires it: a retired QP lives until every request posted on it was
// reaped, so no completion a round or a reader counts on is ever discarded; then it is destroyed
// (the peer sees kDisconnected and fences its end). A data link can then be replaced by a new
// connection (the next round's Connect); a link of an older epoch is never usable again.
//
// Worker-owned (single thread), except that the connect helper runs Fabric::Connect on its own
// thread and hands the QPs back through a future.
#ifndef FT_ENGINE_PEER_TABLE_H_
#define FT_ENGINE_PEER_TABLE_H_

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "engine/connect_helper.h"
#include "engine/node_context.h"
#include "verbs/fabric.h"

namespace ft::internal {

enum class LinkRole : uint8_t { kControl, kData };
const char* LinkRoleName(LinkRole role);

class PeerTable {
 public:
  explicit PeerTable(NodeContext& node);
  ~PeerTable();
  PeerTable(const PeerTable&) = delete;
  PeerTable& operator=(const PeerTable&) = delete;

  // A connected QP becomes rank's `role` link in the current epoch (replacing a fenced one).
  void Add(NodeId rank, LinkRole role, std::unique_ptr<verbs::QueuePair> qp);
  // The QP of rank's usable `role` link in the current epoch; nullptr when there is none (never
  // connected, fenced, or of an older epoch).
  verbs::QueuePair* Usable(NodeId rank, LinkRole role) const;

  struct LinkInfo {
    NodeId rank = 0;
    LinkRole role = LinkRole::kControl;
    uint64_t epoch = 0;
    bool usable = false;
  };
  // The link a completion or event names by QP id (usable or retired); nullopt for a QP this
  // table never had (a failed Connect's, or one already destroyed).
  std::optional<LinkInfo> Find(uint32_t qp_id) const;

  // Fences the link of that QP and retires it. Returns its info when it was usable (the first
  // fence of a link), nullopt otherwise: callers act on a loss once.
  std::optional<LinkInfo> FenceQp(uint32_t qp_id);
  std::optional<LinkInfo> Fence(NodeId rank, LinkRole role);
  // Fences every usable link (this node's own fabric died, or the engine stops).
  void FenceAll();

  // Accounting of posted work per QP, so that a retired QP is destroyed only when nothing of it
  // is left to reap. Every posted request that will complete (signaled sends, every receive) is
  // counted once and completed once.
  void CountPosted(uint32_t qp_id, int requests = 1);
  void CountCompleted(uint32_t qp_id);

  // ---- partner (data) connections, on the connect helper ----
  // Starts one background Connect to every rank of `wanted` (deduplicated, self skipped) without a
  // usable data link. Returns true when all of them have one, false while a Connect runs (call
  // again after Harvest). `tag` names the caller's operation: a failure of the Connect started
  // for another tag is dropped, not reported to this one.
  Result<bool> ConnectPartners(std::span<const NodeId> wanted,
                               const std::vector<std::byte>& private_data, Nanos timeout,
                               uint64_t tag);
  // Takes the QPs of a finished background Connect: `accept(rank, peer_private_data, tag)`
  // decides for each QP (an error drops it and is kept as the Connect's failure).
  // For a control Connect (ConnectControl) the callback takes the QP itself (`qp` is set and
  // must be moved from when accepted); for a partner Connect `qp` is null and the table adds it.
  using AcceptPartner =
      std::function<Status(NodeId rank, LinkRole role, std::span<const std::byte> private_data,
                           uint64_t tag, std::unique_ptr<verbs::QueuePair>* qp)>;
  void Harvest(const AcceptPartner& accept);
  bool connecting() const { return connect_in_flight_.valid(); }
  // A partner Connect made with `tag` is in flight.
  bool ConnectingPartners(uint64_t tag) const {
    return connect_in_flight_.valid() && connect_role_ == LinkRole::kData && connect_tag_ == tag;
  }
  // Cancels a background Connect and waits for it (its QPs are dropped); the helper stays for
  // the next one.
  void CancelConnecting();
  // The same, and the helper goes (the engine stops).
  void StopConnecting();

  // The node moved to a newer view (node.view.epoch is the new epoch now): its usable links of
  // `old_epoch` become links of the new one (the lost peers' links were fenced before).
  void AdoptEpoch(uint64_t old_epoch);

  // ---- a replacement's control link, on the coordinator (the same background helper) ----
  // Starts one background Connect of the given control requests (their receives included).
  // False while any background Connect runs: call again after Harvest.
  bool ConnectControl(std::vector<verbs::ConnectRequest> requests, Nanos timeout, uint64_t tag);

  // Destroys every link (Stop: QPs before memory regions before the fabric).
  void Clear();

 private:
  struct Link {
    std::unique_ptr<verbs::QueuePair> qp;
    LinkInfo info;
    int outstanding = 0;
  };
  using Key = std::tuple<NodeId, uint64_t, LinkRole>;
  void DestroyIfDrained(uint32_t qp_id);

  NodeContext& node_;
  std::unordered_map<uint32_t, Link> links_;  // by QP id, usable and retired
  std::map<Key, uint32_t> usable_;            // (rank, epoch, role) -> QP id
  std::unique_ptr<ConnectHelper> connect_helper_;
  std::future<ConnectHelper::Outcome> connect_in_flight_;
  uint64_t connect_tag_ = 0;
  LinkRole connect_role_ = LinkRole::kData;
  std::optional<Status> connect_failure_;
  uint64_t connect_failure_tag_ = 0;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_PEER_TABLE_H_
