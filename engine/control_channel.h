// The control channel: the commit protocol's messages (recovery/protocol.h) between this node and
// the coordinator, over SEND/RECV on the control links of the peer table.
//
// It owns the control buffers (posted receives per control link, and a pool of send buffers),
// queues sends while the pool or a send queue is full, and delivers messages this node sends to
// itself (the coordinator is a node too) through a local inbox, never through the fabric.
// Buffers by direction: the coordinator receives only small upstream messages (PREPARE, DONE:
// kMaxUpstreamMessageBytes) and sends GOs (up to kMaxControlMessageBytes); nodes the reverse.
//
// Worker-owned.
#ifndef FT_ENGINE_CONTROL_CHANNEL_H_
#define FT_ENGINE_CONTROL_CHANNEL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/buffer.h"
#include "engine/node_context.h"
#include "engine/peer_table.h"
#include "recovery/protocol.h"
#include "verbs/fabric.h"

namespace ft::internal {

class ControlChannel {
 public:
  // Called when a message to `to` cannot go out: no usable control link, or posting failed
  // (`why`). The message is dropped.
  using Undeliverable = std::function<void(NodeId to, std::string_view why)>;

  ControlChannel(NodeContext& node, PeerTable& peers, Undeliverable undeliverable);
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Allocates and registers the buffers for `links` control links.
  Status Allocate(int links);
  // The receives to go up with control link number `link` (to `peer`) as it is created:
  // a peer's first message must never find an empty receive queue.
  std::vector<verbs::RecvRequest> ReceivesFor(int link, NodeId peer);
  // Counts the receives that went up with the link's QP (once it is in the peer table).
  void ReceivesPosted(uint32_t qp_id);

  void Send(NodeId to, recovery::Message message);
  // Posts queued sends while buffers and send queues allow.
  void Flush();
  // The next message this node sent to itself, if any.
  std::optional<recovery::Message> TakeLocal();

  // Completions of control work (the worker routes kSend and kRecv here). A successful receive
  // yields the message (a malformed one is logged and dropped); its buffer is reposted.
  void OnSendCompleted(uint32_t buffer);
  std::optional<recovery::Message> OnReceived(uint32_t buffer, uint32_t bytes, NodeId from);
  // (A failed receive is not reposted: its link is fenced.)

  // No send queued or in flight: on the loopback fabric a SEND executes only in its poster's
  // progress steps, so the worker lets its sends leave before it blocks in a Connect.
  bool idle() const { return sends_outstanding_ == 0 && pending_sends_.empty(); }

  void Deregister() { mr_.reset(); }

 private:
  std::byte* RecvBuffer(uint32_t index) const { return buffer_.data() + index * recv_bytes_; }
  std::byte* SendBuffer(int index) const {
    return buffer_.data() + static_cast<size_t>(recv_buffers_) * recv_bytes_ +
           static_cast<size_t>(index) * send_bytes_;
  }
  verbs::RecvRequest Receive(uint32_t buffer) const;

  NodeContext& node_;
  PeerTable& peers_;
  Undeliverable undeliverable_;
  AlignedBuffer buffer_;
  std::unique_ptr<verbs::MemoryRegion> mr_;
  int recv_buffers_ = 0;
  int receives_per_link_ = 0;  // ControlReceivesPerLink
  size_t recv_bytes_ = 0;
  size_t send_bytes_ = 0;
  std::vector<NodeId> recv_peer_;  // receive buffer -> the peer whose control link it serves
  std::vector<int> free_send_buffers_;
  std::deque<std::pair<NodeId, recovery::Message>> pending_sends_;
  std::deque<recovery::Message> local_inbox_;
  int sends_outstanding_ = 0;
};

}  // namespace ft::internal

#endif  // FT_ENGINE_CONTROL_CHANNEL_H_
