// The control channel (engine/control_channel.h): buffers, the send pool, the local inbox.
#include "engine/control_channel.h"

#include "common/check.h"
#include "common/log.h"
#include "engine/datapath.h"
#include "engine/node_memory.h"
#include "engine/work_ids.h"

namespace ft::internal {
namespace {
constexpr int kSendBuffers = 256;
}  // namespace

ControlChannel::ControlChannel(NodeContext& node, PeerTable& peers, Undeliverable undeliverable)
    : node_(node), peers_(peers), undeliverable_(std::move(undeliverable)) {}

Status ControlChannel::Allocate(int links) {
  const bool coordinator = node_.is_coordinator();
  receives_per_link_ = ControlReceivesPerLink(coordinator);
  recv_buffers_ = links * receives_per_link_;
  recv_bytes_ =
      coordinator ? recovery::kMaxUpstreamMessageBytes : recovery::kMaxControlMessageBytes;
  send_bytes_ =
      coordinator ? recovery::kMaxControlMessageBytes : recovery::kMaxUpstreamMessageBytes;
  FT_ASSIGN_OR_RETURN(
      buffer_, AlignedBuffer::Allocate(recv_buffers_ * recv_bytes_ + kSendBuffers * send_bytes_));
  PlaceNearDevice(node_, buffer_);
  FT_ASSIGN_OR_RETURN(
      mr_, node_.fabric->RegisterMemory(buffer_.data(), buffer_.size(), verbs::kAccessLocalWrite));
  recv_peer_.assign(recv_buffers_, verbs::kInvalidNode);
  for (int i = kSendBuffers - 1; i >= 0; --i) free_send_buffers_.push_back(i);
  return Status();
}

verbs::RecvRequest ControlChannel::Receive(uint32_t buffer) const {
  verbs::RecvRequest request;
  request.wr_id = WorkId{WorkKind::kRecv, 0, buffer}.Encode();
  request.sge = {reinterpret_cast<uint64_t>(RecvBuffer(buffer)), static_cast<uint32_t>(recv_bytes_),
                 mr_->lkey()};
  return request;
}

std::vector<verbs::RecvRequest> ControlChannel::ReceivesFor(int link, NodeId peer) {
  std::vector<verbs::RecvRequest> receives;
  for (int j = 0; j < receives_per_link_; ++j) {
    const auto buffer = static_cast<uint32_t>(link * receives_per_link_ + j);
    FT_CHECK(buffer < recv_peer_.size());
    recv_peer_[buffer] = peer;
    receives.push_back(Receive(buffer));
  }
  return receives;
}

void ControlChannel::ReceivesPosted(uint32_t qp_id) {
  peers_.CountPosted(qp_id, receives_per_link_);
}

void ControlChannel::Send(NodeId to, recovery::Message message) {
  if (to == node_.rank()) {
    local_inbox_.push_back(std::move(message));
    return;
  }
  pending_sends_.emplace_back(to, std::move(message));
  Flush();
}

std::optional<recovery::Message> ControlChannel::TakeLocal() {
  if (local_inbox_.empty()) return std::nullopt;
  recovery::Message message = std::move(local_inbox_.front());
  local_inbox_.pop_front();
  return message;
}

void ControlChannel::Flush() {
  while (!pending_sends_.empty() && !free_send_buffers_.empty()) {
    // The callback below may queue more sends: take the message out first.
    const NodeId to = pending_sends_.front().first;
    verbs::QueuePair* qp = peers_.Usable(to, LinkRole::kControl);
    if (qp == nullptr) {
      pending_sends_.pop_front();
      undeliverable_(to, "no control link");
      continue;
    }
    const int buffer = free_send_buffers_.back();
    std::byte* data = SendBuffer(buffer);
    Result<size_t> bytes =
        recovery::EncodeMessage(pending_sends_.front().second, {data, send_bytes_});
    if (!bytes.ok()) {
      FT_LOG(kError) << "node " << node_.rank() << ": cannot encode a message to node " << to
                     << ": " << bytes.status();
      pending_sends_.pop_front();
      continue;
    }
    verbs::SendRequest request;
    request.wr_id = WorkId{WorkKind::kSend, 0, static_cast<uint32_t>(buffer)}.Encode();
    request.opcode = verbs::Opcode::kSend;
    request.sge[0] = {reinterpret_cast<uint64_t>(data), static_cast<uint32_t>(*bytes), mr_->lkey()};
    request.num_sge = 1;
    Status posted = qp->PostSend({&request, 1});
    if (!posted.ok()) {
      if (posted.code() == StatusCode::kResourceExhausted) return;  // retry after completions
      pending_sends_.pop_front();
      undeliverable_(to, posted.message());
      continue;
    }
    peers_.CountPosted(qp->id());
    free_send_buffers_.pop_back();
    ++sends_outstanding_;
    pending_sends_.pop_front();
  }
}

void ControlChannel::OnSendCompleted(uint32_t buffer) {
  FT_CHECK_MSG(sends_outstanding_ > 0, "a SEND completion with no SEND outstanding");
  --sends_outstanding_;
  free_send_buffers_.push_back(static_cast<int>(buffer));
}

std::optional<recovery::Message> ControlChannel::OnReceived(uint32_t buffer, uint32_t bytes,
                                                            NodeId from) {
  FT_CHECK(buffer < recv_peer_.size());
  Result<recovery::Message> message = recovery::DecodeMessage({RecvBuffer(buffer), bytes});
  // Repost on the link the buffer serves (the message is decoded: the buffer is free).
  const NodeId peer = recv_peer_[buffer];
  if (verbs::QueuePair* qp = peers_.Usable(peer, LinkRole::kControl); qp != nullptr) {
    const verbs::RecvRequest request = Receive(buffer);
    if (Status status = qp->PostRecv({&request, 1}); status.ok()) {
      peers_.CountPosted(qp->id());
    } else {
      undeliverable_(peer, status.message());
    }
  }
  if (!message.ok()) {
    FT_LOG(kWarn) << "node " << node_.rank() << ": bad control message from node " << from << ": "
                  << message.status();
    return std::nullopt;
  }
  return std::move(message).value();
}

}  // namespace ft::internal
