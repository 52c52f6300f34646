// An idle spare's link to the coordinator (engine/spare_link.h).
#include "engine/spare_link.h"

#include <chrono>
#include <future>

#include "common/log.h"
#include "engine/work_ids.h"
#include "recovery/connection.h"

namespace ft::internal {

Result<std::unique_ptr<SpareLink>> SpareLink::Connect(verbs::Fabric& fabric,
                                                      recovery::NodeId spare_id, uint32_t priority,
                                                      uint32_t domain, recovery::NodeId coordinator,
                                                      Nanos timeout) {
  auto link = std::make_unique<SpareLink>(PrivateTag{}, fabric);
  link->coordinator_ = coordinator;
  FT_ASSIGN_OR_RETURN(link->buffer_,
                      AlignedBuffer::Allocate(kReceives * recovery::kMaxControlMessageBytes));
  FT_ASSIGN_OR_RETURN(link->mr_, fabric.RegisterMemory(link->buffer_.data(), link->buffer_.size(),
                                                       verbs::kAccessLocalWrite));
  verbs::ConnectRequest request;
  request.peer = coordinator;
  request.private_data =
      recovery::EncodeSpareConnect(spare_id, priority, domain, fabric.endpoint());
  for (uint32_t i = 0; i < kReceives; ++i) request.receives.push_back(link->ReceiveAt(i));
  auto connected = fabric.Connect({&request, 1}, timeout);
  if (!connected.ok()) {
    return connected.status().WithContext(
        StrCat("spare ", spare_id, " connecting to the coordinator (rank ", coordinator, ")"));
  }
  link->qp_ = std::move(connected->front());
  return link;
}

SpareLink::~SpareLink() { qp_.reset(); }

verbs::RecvRequest SpareLink::ReceiveAt(uint32_t index) const {
  verbs::RecvRequest receive;
  receive.wr_id = WorkId{WorkKind::kRecv, 0, index}.Encode();
  receive.sge = {
      reinterpret_cast<uint64_t>(buffer_.data()) + index * recovery::kMaxControlMessageBytes,
      static_cast<uint32_t>(recovery::kMaxControlMessageBytes), mr_->lkey()};
  return receive;
}

Status SpareLink::Repost(uint32_t index) {
  const verbs::RecvRequest receive = ReceiveAt(index);
  return qp_->PostRecv({&receive, 1});
}

void SpareLink::TakeHint(uint64_t bytes) {
  if (bytes <= store_bytes_) return;
  // A larger hint replaces a smaller store (waiting here for the one being zeroed, if any).
  store_bytes_ = bytes;
  FT_LOG(kDebug) << "spare: zeroing a store of " << bytes << " bytes while it waits";
  store_ = std::async(std::launch::async, [bytes] { return AlignedBuffer::Allocate(bytes); });
}

Result<recovery::AssignMessage> SpareLink::WaitForAssignment(Nanos timeout, Clock& clock) {
  const Nanos deadline = clock.Now() + timeout;
  while (true) {
    verbs::Completion completions[8];
    const size_t n = fabric_.PollCompletions(completions);
    for (size_t i = 0; i < n; ++i) {
      const verbs::Completion& c = completions[i];
      if (c.status != verbs::WcStatus::kSuccess) {
        return Status::Unavailable(
            "the coordinator (rank ", coordinator_,
            ") was lost while this spare waited: ", verbs::WcStatusName(c.status));
      }
      const WorkId id = WorkId::Decode(c.wr_id);
      if (id.kind != WorkKind::kRecv || id.index >= kReceives) continue;
      Result<recovery::Message> message = recovery::DecodeMessage(
          {buffer_.data() + id.index * recovery::kMaxControlMessageBytes, c.bytes});
      if (!message.ok()) return message.status();
      if (const auto* assign = std::get_if<recovery::AssignMessage>(&*message)) return *assign;
      if (const auto* hint = std::get_if<recovery::StoreHintMessage>(&*message)) {
        TakeHint(hint->store_bytes);
      }
      if (Status reposted = Repost(id.index); !reposted.ok()) return reposted;
    }
    verbs::Event events[4];
    const size_t e = fabric_.PollEvents(events);
    for (size_t i = 0; i < e; ++i) {
      if (events[i].qp == qp_->id() || events[i].type == verbs::EventType::kDeviceError) {
        return Status::Unavailable(
            "the coordinator (rank ", coordinator_,
            ") was lost while this spare waited: ", verbs::EventTypeName(events[i].type));
      }
    }
    const Nanos now = clock.Now();
    if (now >= deadline) {
      return Status::DeadlineExceeded(
          "no rank was assigned to this spare within ",
          std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(), " ms");
    }
    if (n == 0 && e == 0) {
      fabric_.WaitForActivity(std::min<Nanos>(deadline - now, std::chrono::milliseconds(100)));
    }
  }
}

}  // namespace ft::internal
