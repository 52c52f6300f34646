// The CM thread and Connect attempts (cm.h). Connection private data carries a 12-byte header
// (magic, version, length, from, to) and the caller's bytes; our rejects carry a code. The
// attempts and event handlers run under Core::mu: the CM thread holds it while it handles events,
// Connect while it starts attempts and waits.
#include "verbs/rdma/cm.h"

#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "common/check.h"
#include "common/log.h"
#include "verbs/rdma/connection.h"
#include "verbs/rdma/queue.h"

namespace ft::verbs::rdma {
namespace {

using std::chrono::milliseconds;

// ---------------------------------------------------------------------------------------------
// Connection private data: a 12-byte header, then the caller's bytes. Little-endian.

constexpr uint16_t kMagic = 0x4654;  // "FT"
constexpr uint8_t kVersion = 1;

void PutU16(std::byte* at, uint16_t v) {
  at[0] = std::byte(v & 0xff);
  at[1] = std::byte(v >> 8);
}
void PutU32(std::byte* at, uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = std::byte((v >> (8 * i)) & 0xff);
}
uint16_t GetU16(const std::byte* at) {
  return static_cast<uint16_t>(std::to_integer<uint16_t>(at[0]) |
                               (std::to_integer<uint16_t>(at[1]) << 8));
}
uint32_t GetU32(const std::byte* at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::to_integer<uint32_t>(at[i]) << (8 * i);
  return v;
}

std::vector<std::byte> EncodeConnectData(NodeId from, NodeId to, std::span<const std::byte> user) {
  FT_CHECK(user.size() <= kMaxUserPrivateData);
  std::vector<std::byte> out(kConnectHeaderBytes + user.size());
  PutU16(&out[0], kMagic);
  out[2] = std::byte{kVersion};
  out[3] = std::byte(static_cast<uint8_t>(user.size()));
  PutU32(&out[4], from);
  PutU32(&out[8], to);
  std::copy(user.begin(), user.end(), out.begin() + kConnectHeaderBytes);
  return out;
}

// The transport may deliver more bytes than were sent (zero padding): the length field counts.
bool DecodeConnectData(std::span<const std::byte> data, ConnectData* out) {
  if (data.size() < kConnectHeaderBytes || GetU16(&data[0]) != kMagic ||
      std::to_integer<uint8_t>(data[2]) != kVersion) {
    return false;
  }
  const size_t length = std::to_integer<uint8_t>(data[3]);
  if (length > kMaxUserPrivateData || kConnectHeaderBytes + length > data.size()) return false;
  out->from = GetU32(&data[4]);
  out->to = GetU32(&data[8]);
  out->user.assign(data.begin() + kConnectHeaderBytes,
                   data.begin() + static_cast<ptrdiff_t>(kConnectHeaderBytes + length));
  return true;
}

std::vector<std::byte> EncodeReject(RejectCode code, NodeId from) {
  std::vector<std::byte> out(8);
  PutU16(&out[0], kMagic);
  out[2] = std::byte{kVersion};
  out[3] = std::byte(static_cast<uint8_t>(code));
  PutU32(&out[4], from);
  return out;
}

// The code of one of our rejects; nullopt for anything else.
std::optional<RejectCode> DecodeReject(std::span<const std::byte> data) {
  if (data.size() < 8 || GetU16(&data[0]) != kMagic ||
      std::to_integer<uint8_t>(data[2]) != kVersion) {
    return std::nullopt;
  }
  return static_cast<RejectCode>(std::to_integer<uint8_t>(data[3]));
}

const char* RejectCodeText(RejectCode code) {
  switch (code) {
    case RejectCode::kMalformed:
      return "the peer did not understand our request (protocol or role mismatch)";
    case RejectCode::kWrongNode:
      return "the peer at that address is another node (address book mismatch)";
    case RejectCode::kSuperseded:
      return "superseded by a newer request";
    case RejectCode::kLeaving:
      return "the peer's Fabric is shutting down";
  }
  return "unknown reject code";
}

// ---------------------------------------------------------------------------------------------
// Connect attempts. All of these run under Core::mu.

void NotePending(Core& core, NodeId from, PendingRequest request);

void FailLocked(Core& core, Attempt& a, Status status) {
  ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/true);
  a.state = Attempt::State::kFailed;
  a.failure = std::move(status);
}

// Active side: try again later (the peer is not listening yet, or asked us to).
void BackoffLocked(Core& core, Attempt& a, std::string reason) {
  ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/false);
  a.last_reason = std::move(reason);
  a.state = Attempt::State::kBackoff;
  a.retry_at = std::chrono::steady_clock::now() + a.backoff;
  a.backoff = std::min<Nanos>(a.backoff * 2, milliseconds(100));
}

}  // namespace

void StartActiveLocked(Core& core, Attempt& a, SteadyTime deadline) {
  ++a.tries;
  a.conn = NewConn(core, a.peer);
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(core.channel.get(), &raw, nullptr, RDMA_PS_TCP) != 0) {
    FailLocked(core, a, ErrnoStatus(errno, "rdma_create_id"));
    return;
  }
  a.conn->cm_id = Own<&rdma_destroy_id>(raw);
  a.conn->attempt = &a;
  core.conns[raw] = a.conn.get();
  SocketAddress source = core.listen;  // our device's address, any port
  if (source.get()->sa_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(source.get())->sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6*>(source.get())->sin6_port = 0;
  }
  const Nanos left = deadline - std::chrono::steady_clock::now();
  const int timeout_ms = CeilMs(std::min(left, core.options.resolve_timeout), 1);
  if (rdma_resolve_addr(raw, source.get(), a.address.get(), timeout_ms) != 0) {
    FailLocked(
        core, a,
        ErrnoStatus(errno, StrCat("rdma_resolve_addr(", a.address.text, ") for node ", a.peer)));
    return;
  }
  a.state = Attempt::State::kResolving;
}

namespace {
void RewaitLocked(Core& core, Attempt& a, std::string reason);
}  // namespace

void AcceptLocked(Core& core, Attempt& a, PendingRequest request) {
  a.conn = NewConn(core, a.peer);
  Conn& conn = *a.conn;
  conn.cm_id = std::move(request.id);
  conn.attempt = &a;
  conn.peer_data = std::move(request.data.user);
  core.conns[conn.cm_id.get()] = &conn;
  const uint8_t responder = std::min(core.responder_resources, request.responder_resources);
  const uint8_t initiator = std::min(core.initiator_depth, request.initiator_depth);
  Status status = CreateQpLocked(core, conn, a.receives);
  if (status.ok()) status = ToRtr(conn, std::max<uint8_t>(responder, 1));
  if (status.ok()) status = ToRts(conn, std::max<uint8_t>(initiator, 1));
  if (status.code() == StatusCode::kInvalidArgument) {
    // rdma_init_qp_attr fails EINVAL for a request whose initiator has gone meanwhile (it died,
    // or withdrew to dial again): wait for its next request, as when an accepted connection
    // falls through. A lasting fault ends the attempt at its deadline, with this reason.
    FT_LOG(kInfo) << "rdma: node " << core.node << " could not accept node " << a.peer
                  << "'s request (" << status << "); waiting for another";
    RewaitLocked(
        core, a,
        StrCat("the last request of node ", a.peer, " could not be accepted: ", status.message()));
    return;
  }
  if (status.ok()) {
    const std::vector<std::byte> data = EncodeConnectData(core.node, a.peer, a.user_data);
    rdma_conn_param param = ConnParam(core, data, conn.qp_num, std::max<uint8_t>(responder, 1),
                                      std::max<uint8_t>(initiator, 1));
    if (rdma_accept(conn.cm_id.get(), &param) != 0) {
      status = ErrnoStatus(errno, StrCat("rdma_accept from node ", a.peer));
    }
  }
  if (!status.ok()) {
    FailLocked(core, a, status.WithContext(StrCat("node ", core.node, " accepting node ", a.peer)));
    return;
  }
  a.state = Attempt::State::kAccepting;
}

namespace {

// Passive side: the accepted connection fell through (the initiator gave up): wait for its next
// request, or take one that is already queued.
void RewaitLocked(Core& core, Attempt& a, std::string reason) {
  ReleaseConnLocked(core, std::move(a.conn), /*disconnect=*/false);
  a.last_reason = std::move(reason);
  a.state = Attempt::State::kWaiting;
  auto it = core.pending.find(a.peer);
  if (it != core.pending.end() && !it->second.empty()) {
    PendingRequest next = std::move(it->second.back());
    core.pending.erase(it);
    AcceptLocked(core, a, std::move(next));
  }
}

}  // namespace

void RejectLocked(rdma_cm_id* id, RejectCode code, NodeId self) {
  const std::vector<std::byte> data = EncodeReject(code, self);
  rdma_reject(id, data.data(), static_cast<uint8_t>(data.size()));
}

namespace {

// A connection request arrived on our listening id.
void HandleRequestLocked(Core& core, const CmEventInfo& event) {
  CmIdPtr id = Own<&rdma_destroy_id>(event.id);
  ConnectData data;
  if (!DecodeConnectData(event.private_data, &data)) {
    FT_LOG(kWarn) << "rdma: node " << core.node << " rejects a connection request that is not "
                  << "ours (" << event.private_data.size() << " bytes of private data)";
    RejectLocked(id.get(), RejectCode::kMalformed, core.node);
    return;
  }
  if (data.to != core.node) {
    FT_LOG(kWarn) << "rdma: node " << core.node << " rejects a request from node " << data.from
                  << " meant for node " << data.to << " (address book mismatch)";
    RejectLocked(id.get(), RejectCode::kWrongNode, core.node);
    return;
  }
  if (data.from <= core.node || core.dead.load()) {
    RejectLocked(id.get(), core.dead.load() ? RejectCode::kLeaving : RejectCode::kMalformed,
                 core.node);
    return;
  }
  PendingRequest request{.id = std::move(id),
                         .data = std::move(data),
                         .responder_resources = event.responder_resources,
                         .initiator_depth = event.initiator_depth};
  const NodeId from = request.data.from;
  auto it = core.attempts.find(from);
  if (it != core.attempts.end() && !it->second->active &&
      it->second->state == Attempt::State::kWaiting) {
    AcceptLocked(core, *it->second, std::move(request));
    return;
  }
  NotePending(core, from, std::move(request));
}

// Keeps the newest request of a peer; an older one was abandoned by its initiator.
void NotePending(Core& core, NodeId from, PendingRequest request) {
  auto& queue = core.pending[from];
  for (PendingRequest& old : queue) {
    RejectLocked(old.id.get(), RejectCode::kSuperseded, core.node);
  }
  queue.clear();
  queue.push_back(std::move(request));
}

// An event on one of our connection ids while its Connect attempt runs.
void AdvanceAttemptLocked(Core& core, Attempt& a, Conn& conn, const CmEventInfo& event) {
  using State = Attempt::State;
  const std::string where = StrCat("Connect from node ", core.node, " to node ", a.peer,
                                   a.active ? StrCat(" at ", a.address.text) : std::string());
  switch (event.type) {
    case RDMA_CM_EVENT_ADDR_RESOLVED: {
      const int timeout_ms = CeilMs(core.options.resolve_timeout, 1);
      if (rdma_resolve_route(conn.cm_id.get(), timeout_ms) != 0) {
        FailLocked(core, a, ErrnoStatus(errno, StrCat(where, ": rdma_resolve_route")));
      }
      return;
    }
    case RDMA_CM_EVENT_ROUTE_RESOLVED: {
      Status status = CreateQpLocked(core, conn, a.receives);
      if (status.ok()) {
        const std::vector<std::byte> data = EncodeConnectData(core.node, a.peer, a.user_data);
        rdma_conn_param param =
            ConnParam(core, data, conn.qp_num, core.responder_resources, core.initiator_depth);
        if (rdma_connect(conn.cm_id.get(), &param) != 0) {
          status = ErrnoStatus(errno, "rdma_connect");
        }
      }
      if (!status.ok()) {
        FailLocked(core, a, status.WithContext(where));
        return;
      }
      a.state = State::kConnecting;
      return;
    }
    case RDMA_CM_EVENT_CONNECT_RESPONSE: {
      ConnectData data;
      if (!DecodeConnectData(event.private_data, &data) || data.from != a.peer ||
          data.to != core.node) {
        FailLocked(core, a,
                   Status::FailedPrecondition(where,
                                              ": the peer answered with private data that "
                                              "does not name it (address book mismatch?)"));
        return;
      }
      conn.peer_data = std::move(data.user);
      Status status = ToRtr(conn, 0);
      if (status.ok()) status = ToRts(conn, 0);
      if (status.ok() && rdma_establish(conn.cm_id.get()) != 0) {
        status = ErrnoStatus(errno, "rdma_establish");
      }
      if (!status.ok()) {
        FailLocked(core, a, status.WithContext(where));
        return;
      }
      conn.established = true;
      a.state = State::kDone;
      return;
    }
    case RDMA_CM_EVENT_ESTABLISHED:
      if (!a.active && a.state == State::kAccepting) {
        conn.established = true;
        a.state = State::kDone;
      }
      return;
    case RDMA_CM_EVENT_REJECTED: {
      std::string reason = CmFailureText(event.type, event.status);
      if (event.status == kRejectConsumer) {
        if (const auto code = DecodeReject(event.private_data)) {
          reason = StrCat("rejected: ", RejectCodeText(*code));
          if (a.active && (*code == RejectCode::kMalformed || *code == RejectCode::kWrongNode)) {
            FailLocked(core, a, Status::FailedPrecondition(where, ": ", reason));
            return;
          }
        }
      }
      if (a.active) {
        BackoffLocked(core, a, std::move(reason));
      } else {
        RewaitLocked(core, a, std::move(reason));
      }
      return;
    }
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_ADDR_ERROR:
    case RDMA_CM_EVENT_ROUTE_ERROR:
      if (a.active) {
        FailLocked(core, a, CmFailureStatus(event.type, event.status, where));
      } else {
        RewaitLocked(core, a, CmFailureText(event.type, event.status));
      }
      return;
    case RDMA_CM_EVENT_DEVICE_REMOVAL:
      FailLocked(core, a, CmFailureStatus(event.type, event.status, where));
      return;
    default:
      return;
  }
}

// An event on a connection that Connect already handed out (or is about to).
void HandleLiveEventLocked(Core& core, Conn& conn, const CmEventInfo& event) {
  const std::optional<EventType> type = EventFromCm(event.type);
  if (!type) return;
  if (*type == EventType::kDisconnected) {
    conn.SetCause(Cause::kDisconnected);
    // As librdmacm does for the QPs it manages: flush what is outstanding at once.
    if (conn.qp != nullptr) ToError(conn.qp.get());
    if (!std::exchange(conn.disconnect_notified, true)) {
      core.PushEvent(Event{.type = EventType::kDisconnected,
                           .peer = conn.peer,
                           .qp = conn.id,
                           .detail = StrCat("node ", conn.peer, " disconnected queue pair ",
                                            conn.id, " of node ", core.node)});
    }
    return;
  }
  conn.SetCause(Cause::kFailed);
  if (conn.qp != nullptr) ToError(conn.qp.get());
  core.PushEvent(
      Event{.type = *type,
            .peer = conn.peer,
            .qp = conn.id,
            .detail = StrCat("node ", core.node, ": ", CmFailureText(event.type, event.status))});
}

void HandleCmEventLocked(Core& core, const CmEventInfo& event) {
  if (event.type == RDMA_CM_EVENT_CONNECT_REQUEST) {
    HandleRequestLocked(core, event);
    return;
  }
  if (event.type == RDMA_CM_EVENT_DEVICE_REMOVAL && core.listen_id != nullptr &&
      event.id == core.listen_id.get()) {
    core.PushEvent(Event{.type = EventType::kDeviceError,
                         .peer = kInvalidNode,
                         .qp = 0,
                         .detail = StrCat("node ", core.node, ": the RDMA device was removed")});
    return;
  }
  auto it = core.conns.find(event.id);
  if (it == core.conns.end()) {
    // A request still waiting for our Connect: its initiator gave up.
    for (auto pending = core.pending.begin(); pending != core.pending.end(); ++pending) {
      auto& queue = pending->second;
      const auto match = std::find_if(queue.begin(), queue.end(), [&](const PendingRequest& r) {
        return r.id.get() == event.id;
      });
      if (match != queue.end() &&
          (event.type == RDMA_CM_EVENT_REJECTED || event.type == RDMA_CM_EVENT_DISCONNECTED ||
           event.type == RDMA_CM_EVENT_CONNECT_ERROR || event.type == RDMA_CM_EVENT_UNREACHABLE)) {
        queue.erase(match);
        if (queue.empty()) core.pending.erase(pending);
        break;
      }
    }
    return;
  }
  Conn& conn = *it->second;
  if (conn.attempt != nullptr && !conn.established) {
    AdvanceAttemptLocked(core, *conn.attempt, conn, event);
  } else {
    HandleLiveEventLocked(core, conn, event);
  }
}

void HandleAsyncEventLocked(Core& core, const ibv_async_event& event) {
  Conn* conn = nullptr;
  if (event.event_type == IBV_EVENT_COMM_EST || event.event_type == IBV_EVENT_QP_FATAL ||
      event.event_type == IBV_EVENT_QP_REQ_ERR || event.event_type == IBV_EVENT_QP_ACCESS_ERR) {
    std::lock_guard lock(core.cq_mu);
    auto it = core.by_qp_num.find(event.element.qp->qp_num);
    if (it != core.by_qp_num.end()) conn = it->second;
  }
  if (event.event_type == IBV_EVENT_COMM_EST) {
    // Data arrived before the CM's RTU: tell the CM the connection is up (rdma_notify.3).
    if (conn != nullptr && conn->cm_id != nullptr) rdma_notify(conn->cm_id.get(), event.event_type);
    return;
  }
  const std::optional<EventType> type = EventFromAsync(event.event_type);
  if (!type) return;
  if (*type == EventType::kQpError) {
    if (conn == nullptr || !conn->SetCause(Cause::kFailed)) return;
    core.PushEvent(Event{.type = EventType::kQpError,
                         .peer = conn->peer,
                         .qp = conn->id,
                         .detail = StrCat("queue pair ", conn->id, " of node ", core.node, ": ",
                                          ibv_event_type_str(event.event_type))});
    return;
  }
  std::string detail = StrCat("node ", core.node, " (", core.info.device,
                              "): ", ibv_event_type_str(event.event_type));
  if (event.event_type == IBV_EVENT_CQ_ERR) {
    // An overrun CQ lost completions: the QPs feeding it are no longer trustworthy (the IB spec
    // moves them to the error state; the loopback model does the same).
    int depth = 0;
    {
      std::lock_guard lock(core.cq_mu);
      depth = core.cq->cqe;
    }
    detail += StrCat(": CQ overrun, more than ", depth,
                     " unpolled completions (cq_depth); every queue pair of the node fails");
    for (auto& [id, each] : core.conns) {
      if (each->qp == nullptr) continue;
      each->SetCause(Cause::kFailed);
      ToError(each->qp.get());
    }
  }
  core.PushEvent(Event{.type = *type, .peer = kInvalidNode, .qp = 0, .detail = std::move(detail)});
}

// Retrieves, acknowledges and handles every pending rdma_cm and async event. Caller holds mu.
void ProcessEventsLocked(Core& core) {
  rdma_cm_event* raw = nullptr;
  while (rdma_get_cm_event(core.channel.get(), &raw) == 0) {
    CmEventInfo event;
    event.type = raw->event;
    event.status = raw->status;
    event.id = raw->id;
    const rdma_conn_param& conn = raw->param.conn;
    if (conn.private_data != nullptr && conn.private_data_len > 0) {
      const auto* bytes = static_cast<const std::byte*>(conn.private_data);
      event.private_data.assign(bytes, bytes + conn.private_data_len);
    }
    event.responder_resources = conn.responder_resources;
    event.initiator_depth = conn.initiator_depth;
    rdma_ack_cm_event(raw);
    FT_LOG(kDebug) << "rdma: node " << core.node << " " << rdma_event_str(event.type) << " status "
                   << event.status;
    HandleCmEventLocked(core, event);
  }
  ibv_async_event async{};
  while (ibv_get_async_event(core.context.get(), &async) == 0) {
    HandleAsyncEventLocked(core, async);
    ibv_ack_async_event(&async);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The CM thread

Status CmThread::Start(Core& core) {
  FT_RETURN_IF_ERROR(Step(core.options, 12, "eventfd (CM thread stop)"));
  stop_ = UniqueFd(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!stop_.valid()) return ErrnoStatus(errno, "eventfd");
  FT_RETURN_IF_ERROR(Step(core.options, 13, "CM thread"));
  thread_ = std::thread([this, &core] { Run(core); });
  return Status::Ok();
}

void CmThread::Stop() {
  if (!thread_.joinable()) return;
  WriteEventFd(stop_.get());
  thread_.join();
}

void CmThread::Run(Core& core) {
  pollfd fds[3] = {
      {core.channel->fd, POLLIN, 0}, {core.context->async_fd, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
  while (true) {
    const int n = ::poll(fds, 3, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      FT_LOG(kError) << "rdma: CM thread of node " << core.node
                     << ": poll failed: " << std::strerror(errno);
      return;
    }
    if ((fds[2].revents & POLLIN) != 0) return;
    {
      std::lock_guard lock(core.mu);
      ProcessEventsLocked(core);
    }
    core.cv.notify_all();
  }
}

}  // namespace ft::verbs::rdma
