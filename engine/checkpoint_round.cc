// The checkpoint round (engine/checkpoint_round.h): its state machine and its datapath.
#include "engine/checkpoint_round.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "common/check.h"
#include "common/log.h"
#include "engine/datapath.h"
#include "erasure/codec.h"
#include "erasure/fragment.h"
#include "recovery/connection.h"

namespace ft::internal {

CheckpointRound::CheckpointRound(NodeContext& node, NodeMemory& memory, PeerTable& peers,
                                 ControlChannel& channel, SharedState& shared,
                                 std::function<void()> progress)
    : node_(node),
      memory_(memory),
      peers_(peers),
      channel_(channel),
      shared_(shared),
      progress_(std::move(progress)) {}

void CheckpointRound::Start(std::shared_ptr<CheckpointHandle::State> handle) {
  if (!Setup(std::move(handle), /*reprotect=*/false)) return;
  if (memory_.replacing_store()) {
    // A store asked for by an earlier round (which ended before it came) is still being
    // registered: PREPARE once it is in place, with its keys, not with the store it replaces.
    waiting_for_store_ = true;
    return;
  }
  SendPrepare();
}

void CheckpointRound::StartReprotect(std::shared_ptr<CheckpointHandle::State> handle,
                                     const recovery::ReprotectMessage& reprotect) {
  if (!Setup(std::move(handle), /*reprotect=*/true)) return;
  if (reprotect.holders.size() != static_cast<size_t>(geometry_->width()) ||
      reprotect.version != committed_.version) {
    FailBeforeStart(Status::Internal("REPROTECT of version ", reprotect.version, " with ",
                                     reprotect.holders.size(), " holders; node ", node_.rank(),
                                     " restored version ", committed_.version, " of width ",
                                     geometry_->width()));
    return;
  }
  version_ = reprotect.version;
  header_epoch_ = reprotect.written_epoch;
  write_columns_ = reprotect.columns;
  holders_ = reprotect.holders;
  slot_bytes_ = committed_.slot_bytes;
  store_id_ = committed_.store_id;
  go_ = recovery::GoMessage{};
  go_->epoch = node_.epoch();
  go_->version = version_;
  phase_ = Phase::kConnecting;
}

void CheckpointRound::AdoptRestored(const CommittedVersion& restored,
                                    std::vector<recovery::HolderAddress> holders,
                                    std::vector<NodeId> hosted_owners) {
  committed_ = restored;
  PublishCommittedLayout();
  holders_ = std::move(holders);
  slot_bytes_ = restored.slot_bytes;
  hosted_owners_ = std::move(hosted_owners);
  done_unanswered_.reset();
}

bool CheckpointRound::Setup(std::shared_ptr<CheckpointHandle::State> handle, bool reprotect) {
  FT_CHECK_MSG(phase_ == Phase::kIdle, "a round started while another is in flight");
  reprotect_ = reprotect;
  write_columns_ = ~uint64_t{0};
  header_epoch_ = node_.epoch();
  generation_ = NextGeneration(generation_);
  handle_ = std::move(handle);
  started_ = node_.Now();
  deadline_ = started_ + node_.options.timeout;
  writing_at_ = done_sent_at_ = encode_time_ = Nanos(0);
  version_ = 0;
  next_stripe_ = 0;
  outstanding_ = 0;
  bounced_ = 0;
  failure_ = Status();
  failed_peer_ = verbs::kInvalidNode;
  aborted_ = false;
  go_.reset();
  regions_.clear();
  {
    std::lock_guard lock(shared_.mutex);
    for (const auto& [id, region] : shared_.regions) {
      regions_.push_back({region.ptr, region.bytes, region.mr->lkey()});
    }
    region_layout_ = LayoutOf(shared_.regions);
  }
  region_layout_digest_ =
      erasure::Crc64(region_layout_.data(), region_layout_.size() * sizeof(recovery::LayoutRegion));
  std::vector<uint64_t> sizes;
  uint64_t image = 0;
  for (const RegionRef& r : regions_) {
    sizes.push_back(r.bytes);
    image += r.bytes;
  }
  const EngineOptions& o = node_.options;
  auto geometry = erasure::StripeGeometry::Create(image, o.cell_bytes, o.k, o.m);
  auto layout = erasure::ImageLayout::Create(sizes);
  if (!geometry.ok() || !layout.ok()) {
    FailBeforeStart(!geometry.ok() ? geometry.status() : layout.status());
    return false;
  }
  geometry_ = *geometry;
  layout_ = std::move(layout).value();
  if (own_fabric_lost_) {
    FailBeforeStart(Status::Unavailable("node ", node_.rank(), " lost its fabric"));
    return false;
  }
  if (Status status = PrepareBuffers(); !status.ok()) {
    FailBeforeStart(status.WithContext(StrCat("node ", node_.rank())));
    return false;
  }
  if (!node_.is_coordinator() &&
      peers_.Usable(node_.coordinator(), LinkRole::kControl) == nullptr) {
    // No GO can come: fail now, not at the deadline.
    FailBeforeStart(Status::Unavailable("node ", node_.coordinator(),
                                        " (the coordinator) was lost before checkpoint of node ",
                                        node_.rank(), " could start"));
    return false;
  }
  phase_ = Phase::kAwaitGo;
  grow_asked_ = false;
  queued_grow_ = 0;
  waiting_for_store_ = false;
  return true;
}

// PREPARE with the store as it is now (again after a GROW): the GO that answers it places this
// node's hosted fragments in that store.
void CheckpointRound::SendPrepare() {
  recovery::PrepareMessage prepare;
  prepare.epoch = node_.epoch();
  prepare.node = node_.rank();
  prepare.image_bytes = geometry_->image_bytes();
  prepare.footprint_bytes = erasure::FootprintBytes(*geometry_);
  prepare.capacity_bytes = memory_.store_bytes();
  prepare.domain = node_.domain;
  const recovery::StoreKeys store = memory_.store_keys();
  prepare.store_addr = store.addr;
  prepare.store_rkey = store.rkey;
  prepare.store_sized_by_coordinator = node_.options.store_capacity == 0;
  prepare.layout_regions = static_cast<uint32_t>(region_layout_.size());
  prepare.layout_digest = region_layout_digest_;
  store_id_ = memory_.store_id();
  channel_.Send(node_.coordinator(), prepare);
}

// The coordinator sizes our store: register the one it asks for, keeping the store that holds
// the committed version's fragments, and PREPARE again.
void CheckpointRound::OnGrow(const recovery::GrowMessage& grow) {
  if (phase_ != Phase::kAwaitGo) return;
  if (memory_.replacing_store()) {
    // An earlier round's replacement is still being registered: this GROW waits for it.
    queued_grow_ = std::max(queued_grow_, grow.store_bytes);
    waiting_for_store_ = true;
    return;
  }
  StartGrow(grow.store_bytes);
}

void CheckpointRound::StartGrow(uint64_t bytes) {
  if (Status started = memory_.StartReplaceStore(bytes, committed_.store_id); !started.ok()) {
    PublishStoreBytes();
    TellCoordinatorWeGaveUp(started.code());
    FinishRound(std::move(started));
    return;
  }
  grow_asked_ = true;
  waiting_for_store_ = true;
}

// The store being registered is in place (or could not be had): PREPARE with its keys, once no
// GROW waits for another one.
bool CheckpointRound::StepGrow() {
  std::optional<Status> grown = memory_.PollReplaceStore();
  if (!grown) return false;
  PublishStoreBytes();
  const bool asked_for = std::exchange(grow_asked_, false);
  if (!grown->ok() && asked_for) {
    TellCoordinatorWeGaveUp(grown->code());
    FinishRound(std::move(*grown));
    return true;
  }
  if (queued_grow_ > memory_.store_bytes()) {
    StartGrow(std::exchange(queued_grow_, 0));
    return true;
  }
  queued_grow_ = 0;
  waiting_for_store_ = false;
  FT_LOG(kDebug) << "node " << node_.rank() << ": store of " << memory_.store_bytes()
                 << " bytes in place";
  SendPrepare();
  return true;
}

// The coordinator does not know the layout our PREPARE named: the regions it asks for.
void CheckpointRound::OnLayoutRequest(const recovery::LayoutRequestMessage& request) {
  if (phase_ != Phase::kAwaitGo || request.digest != region_layout_digest_ ||
      request.first >= region_layout_.size()) {
    return;  // a request for a PREPARE we no longer stand by
  }
  channel_.Send(
      node_.coordinator(),
      recovery::LayoutChunk(node_.epoch(), node_.rank(), region_layout_digest_, region_layout_,
                            request.first, recovery::kLayoutRegionsUpstream));
}

void CheckpointRound::PublishCommittedLayout() {
  std::vector<ProtectedRegion> layout = ProtectedRegionsOf(committed_.layout);
  std::lock_guard lock(shared_.mutex);
  shared_.committed_layout = std::move(layout);
}

void CheckpointRound::PublishStoreBytes() {
  std::lock_guard lock(shared_.mutex);
  shared_.metrics.store_bytes = memory_.store_bytes() + memory_.retired_store_bytes();
}

void CheckpointRound::FailBeforeStart(Status status) {
  phase_ = Phase::kAwaitGo;  // so that FinishRound completes it
  FinishRound(std::move(status));
}

// Sizes the pipeline slots in use and the header areas for this round's geometry (the store is
// fixed, or sized by the coordinator: OnGrow). Buffers only grow.
Status CheckpointRound::PrepareBuffers() {
  const erasure::StripeGeometry& g = *geometry_;
  // The pipeline's cells were allocated (and touched) at Create; a short image uses fewer slots.
  pipeline_slots_ = static_cast<int>(
      std::min<uint64_t>(static_cast<uint64_t>(node_.options.pipeline_depth), g.stripes()));
  slot_outstanding_.assign(pipeline_slots_, 0);
  column_outstanding_.assign(g.width(), 0);
  header_area_bytes_ = erasure::HeaderAreaBytes(g.stripes());
  FT_RETURN_IF_ERROR(memory_.EnsureHeaders(header_area_bytes_ * g.width()));
  if (node_.options.keep_local_copy && !reprotect_) {
    FT_RETURN_IF_ERROR(memory_.EnsurePendingCopy(g.image_bytes()));
  }
  return Status();
}

Nanos CheckpointRound::next_deadline() const {
  if (phase_ == Phase::kIdle) return Nanos::max();
  // Draining: the fabric gets one more timeout to flush what is in flight.
  return phase_ == Phase::kDraining ? deadline_ + node_.options.timeout : deadline_;
}

bool CheckpointRound::Step() {
  if (phase_ == Phase::kIdle) return false;
  const Phase before = phase_;
  const uint64_t stripe_before = next_stripe_;
  if (phase_ != Phase::kDraining && node_.Now() > deadline_) {
    const Status late = Status::DeadlineExceeded(
        "checkpoint on node ", node_.rank(), " did not finish within ",
        std::chrono::duration_cast<std::chrono::milliseconds>(node_.options.timeout).count(),
        " ms");
    if (outstanding_ > 0) {
      // Fence the links our WRITEs are stuck on: they flush at once, so the pipeline and the
      // application's memory are ours again, and nothing more of this round lands.
      FenceOutstandingColumns();
      FailRound(late, verbs::kInvalidNode);
    } else {
      TellCoordinatorWeGaveUp(StatusCode::kDeadlineExceeded);
      FinishRound(late);
      return true;
    }
  }
  bool grew = false;
  switch (phase_) {
    case Phase::kAwaitGo:
      if (waiting_for_store_) grew = StepGrow();
      break;
    case Phase::kIdle:
    case Phase::kAwaitCommit:
      break;
    case Phase::kConnecting:
      StepConnecting();
      break;
    case Phase::kWriting:
      StepWriting();
      break;
    case Phase::kHeaders:
      if (outstanding_ == 0) {
        if (node_.options.keep_local_copy && !reprotect_) {
          uint64_t offset = 0;
          for (const RegionRef& region : regions_) {
            CopyInPieces(memory_.pending_copy().data() + offset, region.ptr, region.bytes,
                         progress_);
            offset += region.bytes;
          }
        }
        done_sent_at_ = node_.Now();
        if (!reprotect_) {
          done_unanswered_ = CommittedVersion{version_,    header_epoch_, geometry_,     holders_,
                                              slot_bytes_, store_id_,     region_layout_};
        }
        SendDone(StatusCode::kOk, verbs::kInvalidNode);
      }
      break;
    case Phase::kDraining:
      if (outstanding_ > 0) {
        // Our own fabric is gone (device error, a killed loopback node): nothing will complete,
        // and nothing more will be read from or written to our memory by it. Or the fabric did
        // not flush within a whole extra timeout: give up on the buffers too.
        if (own_fabric_lost_ || node_.Now() > deadline_ + node_.options.timeout) {
          TellCoordinatorWeGaveUp(failure_.code());
          FinishRound(failure_);
        }
        break;
      }
      if (aborted_ || own_fabric_lost_ ||
          (!node_.is_coordinator() &&
           peers_.Usable(node_.coordinator(), LinkRole::kControl) == nullptr)) {
        FinishRound(failure_);  // no ABORT is coming, or it came already
        break;
      }
      SendDone(failure_.code(), failed_peer_);
      break;
  }
  return grew || phase_ != before || next_stripe_ != stripe_before;
}

// A round this node ends on its own (a deadline, a drain it gives up on) must still answer the
// coordinator, which otherwise waits for it forever: a PREPARE that stands is withdrawn, a GO
// gets a failed DONE. After our DONE (kAwaitCommit) the coordinator decides without us.
void CheckpointRound::TellCoordinatorWeGaveUp(StatusCode code) {
  if (own_fabric_lost_) return;
  switch (phase_) {
    case Phase::kAwaitGo:
      channel_.Send(
          node_.coordinator(),
          recovery::DoneMessage{node_.epoch(), recovery::kWithdrawVersion, node_.rank(), code});
      return;
    case Phase::kConnecting:
    case Phase::kWriting:
    case Phase::kHeaders:
    case Phase::kDraining:
      if (!aborted_) {
        channel_.Send(node_.coordinator(), recovery::DoneMessage{node_.epoch(), version_,
                                                                 node_.rank(), code, failed_peer_});
      }
      return;
    case Phase::kIdle:
    case Phase::kAwaitCommit:
      return;
  }
}

void CheckpointRound::SendDone(StatusCode code, NodeId failed_peer) {
  recovery::DoneMessage done;
  done.epoch = node_.epoch();
  done.version = version_;
  done.node = node_.rank();
  done.code = code;
  done.failed_peer = failed_peer;
  phase_ = Phase::kAwaitCommit;
  channel_.Send(node_.coordinator(), done);
}

void CheckpointRound::StepConnecting() {
  recovery::GoMessage& go = *go_;
  const EngineOptions& o = node_.options;
  if (holders_.size() != static_cast<size_t>(o.k + o.m)) {
    FailRound(Status::Internal("the placement of node ", node_.rank(), " names ", holders_.size(),
                               " holders (a GO without a placement before any placement, or a "
                               "malformed one)"),
              verbs::kInvalidNode);
    return;
  }
  if (go.has_placement) {
    for (const recovery::PeerEndpoint& endpoint : go.endpoints) {
      if (Status learned = node_.fabric->LearnEndpoint(endpoint.node, endpoint.bytes);
          !learned.ok()) {
        FailRound(learned, verbs::kInvalidNode);
        return;
      }
    }
    go.has_placement = false;  // learned; later steps of this phase only connect
  }
  if (slot_bytes_ < erasure::SlotBytes(*geometry_)) {
    FailRound(
        Status::Internal("the placement gives slots of ", slot_bytes_, " bytes; version ", version_,
                         " of node ", node_.rank(), " needs ", erasure::SlotBytes(*geometry_)),
        verbs::kInvalidNode);
    return;
  }
  // On the loopback fabric our SENDs execute only in our own progress steps, and a partner
  // waits for its GO to connect to us: let them leave before a Connect is started.
  if (!channel_.idle()) return;
  std::vector<NodeId> wanted;
  for (size_t c = 0; c < holders_.size(); ++c) {
    if (Writes(static_cast<int>(c))) wanted.push_back(holders_[c].slot.holder);
  }
  if (!reprotect_) wanted.insert(wanted.end(), hosted_owners_.begin(), hosted_owners_.end());
  const Nanos timeout = std::max(Nanos(0), deadline_ - node_.Now());
  Result<bool> connected = peers_.ConnectPartners(
      wanted, recovery::EncodePartnerConnect(node_.rank(), node_.epoch(), memory_.store_keys()),
      timeout, generation_);
  if (!connected.ok()) {
    FailRound(connected.status().WithContext(
                  StrCat("node ", node_.rank(), " connecting to its partners")),
              verbs::kInvalidNode);
    return;
  }
  if (!*connected) return;  // a background Connect runs: poll meanwhile
  for (size_t c = 0; c < holders_.size(); ++c) {
    const NodeId holder = holders_[c].slot.holder;
    if (Writes(static_cast<int>(c)) && peers_.Usable(holder, LinkRole::kData) == nullptr) {
      FailRound(Status::Unavailable("holder node ", holder, " is lost"), holder);
      return;
    }
  }
  writing_at_ = node_.Now();
  phase_ = Phase::kWriting;
  StepWriting();
}

Status CheckpointRound::AcceptPartner(NodeId peer, std::span<const std::byte> private_data,
                                      uint64_t tag) {
  FT_ASSIGN_OR_RETURN(recovery::StoreKeys keys,
                      recovery::ParsePartnerConnect(private_data, peer, node_.epoch()));
  if (!active() || tag != generation_) return Status();  // made for a GO that is gone
  for (const recovery::HolderAddress& holder : holders_) {
    if (holder.slot.holder == peer &&
        (holder.store_addr != keys.addr || holder.store_rkey != keys.rkey)) {
      Status stale = Status::FailedPrecondition(
          "node ", peer, " connected with store address ", keys.addr, " and rkey ", keys.rkey,
          ", the GO says ", holder.store_addr, " and ", holder.store_rkey,
          " (one of them is stale): nothing is written there");
      // Fail now: dropping the QP tells the holder, and an ABORT it causes must not arrive
      // before this node's own reason is recorded.
      FailRound(stale, peer);
      return stale;
    }
  }
  return Status();
}

void CheckpointRound::StepWriting() {
  const erasure::StripeGeometry& g = *geometry_;
  // Issue one stripe per step, then return to poll: its WRITEs get going while its cells are still
  // in cache (on the loopback fabric the poll is where they are copied), and earlier stripes'
  // completions free their slots. The pipeline depth bounds how far encoding runs ahead.
  const int slot = FreePipelineSlot();
  if (next_stripe_ < g.stripes() && failure_.ok() && slot >= 0) {
    const Nanos t0 = node_.Now();
    if (Status status = IssueStripe(next_stripe_, slot); !status.ok()) {
      FailRound(status, verbs::kInvalidNode);
      return;
    }
    encode_time_ += node_.Now() - t0;
    ++next_stripe_;
  }
  if (phase_ != Phase::kWriting) return;
  if (next_stripe_ == g.stripes() && outstanding_ == 0) PostHeaders();
}

uint64_t CheckpointRound::RemoteSlotAddr(int column) const {
  const recovery::HolderAddress& holder = holders_[column];
  return holder.store_addr + holder.slot.store_offset + (version_ % 2) * slot_bytes_;
}

std::span<std::byte> CheckpointRound::HeaderArea(int column) const {
  return {memory_.headers() + static_cast<uint64_t>(column) * header_area_bytes_,
          header_area_bytes_};
}

Status CheckpointRound::PostWrite(int column, WorkId id, const void* local, uint32_t lkey,
                                  uint64_t bytes, uint64_t remote_addr) {
  const NodeId holder = holders_[column].slot.holder;
  verbs::QueuePair* qp = peers_.Usable(holder, LinkRole::kData);
  if (qp == nullptr) return Status::Unavailable("no data link to holder node ", holder);
  verbs::SendRequest request;
  request.wr_id = id.Encode();
  request.opcode = verbs::Opcode::kWrite;
  request.sge[0] = {reinterpret_cast<uint64_t>(local), static_cast<uint32_t>(bytes), lkey};
  request.num_sge = 1;
  request.remote_addr = remote_addr;
  request.rkey = holders_[column].store_rkey;
  Status status = qp->PostSend({&request, 1});
  if (!status.ok()) return status.WithContext(StrCat("posting a WRITE to node ", holder));
  peers_.CountPosted(qp->id());
  ++outstanding_;
  ++column_outstanding_[column];
  return Status();
}

// The lowest-numbered free slot, or -1. Lowest, not round-robin: when WRITEs complete quickly the
// same slot is reused while its cells are still in cache, and more slots come into use only when
// WRITEs lag behind encoding.
int CheckpointRound::FreePipelineSlot() const {
  for (int slot = 0; slot < pipeline_slots_; ++slot) {
    if (slot_outstanding_[slot] == 0) return slot;
  }
  return -1;
}

Status CheckpointRound::IssueStripe(uint64_t stripe, int slot) {
  const erasure::StripeGeometry& g = *geometry_;
  const int k = g.k();
  const int width = g.width();
  const uint64_t cell = g.cell_bytes();
  std::byte* slot_cells = memory_.pipeline() + static_cast<uint64_t>(slot) * width * cell;
  const uint8_t* cells[erasure::kMaxCells];
  uint32_t lkeys[erasure::kMaxCells];

  for (int c = 0; c < k; ++c) {
    const erasure::CellExtent extent = g.DataCell(stripe, c);
    slices_.clear();
    if (extent.image_bytes > 0) layout_->Slices(extent.image_offset, extent.image_bytes, &slices_);
    if (extent.padding_bytes == 0 && slices_.size() == 1) {
      // Zero-copy: the cell is one piece of application memory.
      const RegionRef& region = regions_[slices_[0].region];
      cells[c] = reinterpret_cast<const uint8_t*>(region.ptr + slices_[0].region_offset);
      lkeys[c] = region.lkey;
    } else {
      // The cell straddles regions or holds the zero-padded tail: gather it into a bounce cell.
      std::byte* bounce = slot_cells + static_cast<uint64_t>(c) * cell;
      uint64_t at = 0;
      for (const erasure::RegionSlice& slice : slices_) {
        std::memcpy(bounce + at, regions_[slice.region].ptr + slice.region_offset, slice.bytes);
        at += slice.bytes;
      }
      std::memset(bounce + at, 0, cell - at);
      bounced_ += extent.image_bytes;
      cells[c] = reinterpret_cast<const uint8_t*>(bounce);
      lkeys[c] = memory_.pipeline_lkey();
    }
  }
  uint8_t* parity[erasure::kMaxCells];
  for (int j = 0; j < g.m(); ++j) {
    parity[j] = reinterpret_cast<uint8_t*>(slot_cells + static_cast<uint64_t>(k + j) * cell);
    cells[k + j] = parity[j];
    lkeys[k + j] = memory_.pipeline_lkey();
  }
  // Large cells are encoded and checksummed in pieces (kCpuPieceBytes), with a progress step,
  // and so a heartbeat, between them.
  FT_RETURN_IF_ERROR(InPieces(
      cell,
      [&](uint64_t at, uint64_t bytes) {
        const uint8_t* data_piece[erasure::kMaxCells];
        uint8_t* parity_piece[erasure::kMaxCells];
        for (int c = 0; c < k; ++c) data_piece[c] = cells[c] + at;
        for (int j = 0; j < g.m(); ++j) parity_piece[j] = parity[j] + at;
        return node_.codec->Encode({data_piece, static_cast<size_t>(k)},
                                   {parity_piece, static_cast<size_t>(g.m())}, bytes);
      },
      progress_));
  // Per cell: CRC, WRITE, progress. The progress step right after each post reaps completions
  // early and, on the loopback fabric (where the poster's progress step does the copy), moves
  // the cell while the CRC pass has just brought it into cache.
  const uint64_t cell_offset = header_area_bytes_ + stripe * cell;
  for (int c = 0; c < width; ++c) {
    if (!Writes(c)) continue;  // re-protection: this column's holder has it
    uint64_t crc = 0;
    (void)InPieces(
        cell,
        [&](uint64_t at, uint64_t bytes) {
          crc = erasure::Crc64(cells[c] + at, bytes, crc);
          return Status();
        },
        progress_);
    erasure::CellCrcs(HeaderArea(c))[stripe] = crc;
    const WorkId id{WorkKind::kCell, generation_,
                    CellIndex(static_cast<uint32_t>(slot), static_cast<uint32_t>(c))};
    FT_RETURN_IF_ERROR(PostWrite(c, id, cells[c], lkeys[c], cell, RemoteSlotAddr(c) + cell_offset));
    ++slot_outstanding_[slot];
    progress_();
    if (phase_ != Phase::kWriting) return Status();  // failed meanwhile: drain
  }
  return Status();
}

void CheckpointRound::PostHeaders() {
  const erasure::StripeGeometry& g = *geometry_;
  for (int c = 0; c < g.width(); ++c) {
    if (!Writes(c)) continue;
    std::span<std::byte> area = HeaderArea(c);
    erasure::FragmentHeader header;
    header.version = version_;
    // The epoch the version was written in: a re-protected fragment is that version's.
    header.epoch = header_epoch_;
    header.owner = node_.rank();
    header.column = static_cast<uint32_t>(c);
    header.k = static_cast<uint32_t>(g.k());
    header.m = static_cast<uint32_t>(g.m());
    header.cell_bytes = g.cell_bytes();
    header.image_bytes = g.image_bytes();
    header.stripes = g.stripes();
    std::memcpy(area.data(), &header, sizeof(header));
    erasure::SealHeader(area);
    Status status =
        PostWrite(c, WorkId{WorkKind::kHeader, generation_, static_cast<uint32_t>(c)}, area.data(),
                  memory_.headers_lkey(), header_area_bytes_, RemoteSlotAddr(c));
    if (!status.ok()) {
      FailRound(status, holders_[c].slot.holder);
      return;
    }
  }
  phase_ = Phase::kHeaders;
}

void CheckpointRound::OnWriteCompleted(WorkId id, verbs::WcStatus status, NodeId peer) {
  if (phase_ == Phase::kIdle || id.generation != generation_) {
    // A round that gave up on an unflushed fabric left it behind: not ours to count.
    FT_LOG(kDebug) << "node " << node_.rank() << ": late WRITE completion of round generation "
                   << id.generation << " ignored";
    return;
  }
  FT_CHECK_MSG(outstanding_ > 0, "a WRITE completion with no WRITE outstanding");
  --outstanding_;
  const uint32_t column =
      id.kind == WorkKind::kCell ? ColumnOfCell(id.index) : static_cast<uint32_t>(id.index);
  FT_CHECK(column < column_outstanding_.size() && column_outstanding_[column] > 0);
  --column_outstanding_[column];
  if (id.kind == WorkKind::kCell) {
    const uint32_t slot = SlotOfCell(id.index);
    FT_CHECK(slot < slot_outstanding_.size() && slot_outstanding_[slot] > 0);
    --slot_outstanding_[slot];
  }
  if (status != verbs::WcStatus::kSuccess) {
    FailRound(Status::Unavailable("WRITE of fragment ", column, " to node ", peer,
                                  " failed: ", verbs::WcStatusName(status)),
              peer);
  }
}

void CheckpointRound::FenceOutstandingColumns() {
  for (size_t c = 0; c < column_outstanding_.size(); ++c) {
    if (column_outstanding_[c] > 0) peers_.Fence(holders_[c].slot.holder, LinkRole::kData);
  }
}

void CheckpointRound::OnControlMessage(NodeId from, const recovery::Message& message) {
  // Only the coordinator of our view, in our epoch, steers a round: a stale coordinator or a
  // message of another epoch changes nothing.
  const uint64_t epoch = std::visit([](const auto& m) { return m.epoch; }, message);
  if (from != node_.coordinator() || epoch != node_.epoch()) {
    FT_LOG(kInfo) << "node " << node_.rank() << ": ignored a control message from node " << from
                  << " of epoch " << epoch << " (view: coordinator " << node_.coordinator()
                  << ", epoch " << node_.epoch() << ")";
    return;
  }
  if (const auto* grow = std::get_if<recovery::GrowMessage>(&message)) {
    OnGrow(*grow);
  } else if (const auto* request = std::get_if<recovery::LayoutRequestMessage>(&message)) {
    OnLayoutRequest(*request);
  } else if (const auto* go = std::get_if<recovery::GoMessage>(&message)) {
    if (phase_ == Phase::kAwaitGo) {
      version_ = go->version;
      go_ = *go;
      if (go->has_placement) {
        // The placement is ours from now on, even if an ABORT overtakes this round's first step:
        // the coordinator sends later GOs without it.
        holders_ = go->holders;
        slot_bytes_ = go->slot_bytes;
        hosted_owners_ = go->hosted_owners;
      }
      phase_ = Phase::kConnecting;
    }
  } else if (const auto* commit = std::get_if<recovery::CommitMessage>(&message)) {
    if (phase_ == Phase::kAwaitCommit && commit->version == version_) {
      committed_ = CommittedVersion{version_,    header_epoch_, geometry_,     holders_,
                                    slot_bytes_, store_id_,     region_layout_};
      PublishCommittedLayout();
      memory_.DropRetiredStores(committed_.store_id);
      PublishStoreBytes();
      FinishRound(Status());
    } else if ((phase_ == Phase::kIdle || phase_ == Phase::kAwaitGo) &&
               done_unanswered_.has_value() && commit->version == done_unanswered_->version) {
      // We gave up waiting after our DONE, but the version did commit: it is the committed one
      // (the next round writes the other slot), even though our call reported the deadline.
      committed_ = *std::move(done_unanswered_);
      PublishCommittedLayout();
      memory_.DropRetiredStores(committed_.store_id);
      PublishStoreBytes();
      std::lock_guard lock(shared_.mutex);
      shared_.metrics.committed_version = committed_.version;
    }
    done_unanswered_.reset();
  } else if (const auto* abort = std::get_if<recovery::AbortMessage>(&message)) {
    // The first COMMIT or ABORT after we gave up waiting past our DONE ends that round, not the
    // one we may have started since (the coordinator sends one of them to every node that
    // reported DONE, before anything of the next round).
    const bool ends_the_round_we_gave_up = phase_ == Phase::kAwaitGo &&
                                           done_unanswered_.has_value() &&
                                           abort->version == done_unanswered_->version;
    done_unanswered_.reset();
    if (ends_the_round_we_gave_up) return;
    if (phase_ != Phase::kIdle && (abort->version == version_ || phase_ == Phase::kAwaitGo)) {
      aborted_ = true;
      Status aborted(abort->code,
                     StrCat("checkpoint version ", abort->version, " aborted: ", abort->reason));
      if (phase_ == Phase::kAwaitGo || phase_ == Phase::kAwaitCommit) {
        // A node that failed the round itself (it sent DONE(failed)) reports its own reason,
        // which says more than the coordinator's summary.
        FinishRound(failure_.ok() ? std::move(aborted) : failure_);
      } else {
        FailRound(std::move(aborted), abort->failed_node);
      }
    }
  }
}

void CheckpointRound::OnDataLinkLost(NodeId peer, std::string_view why) {
  // A lost holder spoils the round while our cells are going out; once DONE was sent, the
  // coordinator decides (it commits if every DONE arrived first: m losses are survivable).
  const bool writing =
      phase_ == Phase::kConnecting || phase_ == Phase::kWriting || phase_ == Phase::kHeaders;
  if (!writing) return;
  for (const auto& holder : holders_) {
    if (holder.slot.holder == peer) {
      FailRound(
          Status::Unavailable("the connection to node ", peer,
                              " was lost during checkpoint version ", version_, " (", why, ")"),
          peer);
      return;
    }
  }
}

void CheckpointRound::OnCoordinatorLost(std::string_view why) {
  if (phase_ == Phase::kIdle) return;
  FailRound(Status::Unavailable("node ", node_.coordinator(),
                                " (the coordinator) was lost during checkpoint version ", version_,
                                " (", why, ")"),
            node_.coordinator());
}

void CheckpointRound::Cancel(Status why) {
  if (phase_ == Phase::kIdle) return;
  aborted_ = true;
  FailRound(std::move(why), verbs::kInvalidNode);
}

void CheckpointRound::OnOwnFabricLost(std::string_view detail) {
  own_fabric_lost_ = true;
  FailRound(Status::Unavailable("node ", node_.rank(), " lost its fabric: ", detail), node_.rank());
}

void CheckpointRound::OnRemoved(const Status& why) {
  if (phase_ == Phase::kIdle) return;
  own_fabric_lost_ = true;
  // The removal is what the application must hear, whatever this round saw fail first (a woken
  // node reaps the disconnects of its fenced links before it finds out it stalled).
  failure_ = Status();
  FailRound(why, node_.rank());
}

void CheckpointRound::Abandon(const std::function<bool()>& poll) {
  if (phase_ == Phase::kIdle) return;
  FenceOutstandingColumns();
  // Bounded in real time too: an engine on a manual clock (tests) must still be destroyed.
  const Nanos deadline = node_.Now() + node_.options.timeout;
  const auto real_deadline = std::chrono::steady_clock::now() + node_.options.timeout;
  while (outstanding_ > 0 && !own_fabric_lost_ && node_.Now() < deadline &&
         std::chrono::steady_clock::now() < real_deadline) {
    if (!poll()) node_.fabric->WaitForActivity(std::chrono::milliseconds(1));
  }
  FinishRound(Status::Aborted("the engine of node ", node_.rank(), " was destroyed"));
}

void CheckpointRound::FailRound(Status status, NodeId peer) {
  if (phase_ == Phase::kIdle) return;
  if (failure_.ok()) {
    FT_LOG(kInfo) << "node " << node_.rank() << ": checkpoint version " << version_
                  << " failed: " << status;
    failure_ = std::move(status);
    failed_peer_ = peer;
  }
  // Waiting on the coordinator with nothing in flight: only its loss or ours gets here, and no
  // ABORT will come. Otherwise drain our WRITEs, then report DONE(failed) so every node aborts.
  if ((phase_ == Phase::kAwaitGo || phase_ == Phase::kAwaitCommit) && outstanding_ == 0) {
    FinishRound(failure_);
    return;
  }
  phase_ = Phase::kDraining;
}

void CheckpointRound::FinishRound(Status status) {
  if (phase_ == Phase::kIdle) return;
  // A store still being registered belongs to no round now: the next one waits for it.
  waiting_for_store_ = false;
  grow_asked_ = false;
  queued_grow_ = 0;
  const Nanos now = node_.Now();
  if (!reprotect_) {
    std::lock_guard lock(shared_.mutex);
    EngineMetrics& metrics = shared_.metrics;
    metrics.bounce_bytes += bounced_;
    if (status.ok()) {
      ++metrics.checkpoints_committed;
      metrics.committed_version = version_;
      metrics.image_bytes = geometry_->image_bytes();
      metrics.bytes_written += static_cast<uint64_t>(geometry_->width()) *
                               (geometry_->fragment_bytes() + header_area_bytes_);
      metrics.last_prepare_seconds = SecondsBetween(started_, writing_at_);
      metrics.last_encode_seconds = SecondsBetween(Nanos(0), encode_time_);
      metrics.last_write_seconds =
          SecondsBetween(writing_at_, done_sent_at_) - SecondsBetween(Nanos(0), encode_time_);
      metrics.last_commit_seconds = SecondsBetween(done_sent_at_, now);
      metrics.last_total_seconds = SecondsBetween(started_, now);
      if (node_.options.keep_local_copy) {
        std::swap(shared_.local_copy, memory_.pending_copy());
        shared_.local_copy_bytes = geometry_->image_bytes();
        shared_.local_copy_version = version_;
      }
    } else {
      ++metrics.checkpoints_failed;
    }
    shared_.in_flight = false;
  }
  bounced_ = 0;
  if (!status.ok() && peers_.ConnectingPartners(generation_)) {
    // Our partner Connect must not outlive the round. A round whose link to a partner broke as
    // the partner died reconnects to it; the helper may run that Connect only after a new
    // process took the rank, and it would then meet the new process's recovery Connect with
    // this epoch's data: refused there, failing the recovery (seen under ftbench --kill-at
    // write, once in tens of runs). It would also hold the helper until its deadline.
    peers_.CancelConnecting();
  }
  phase_ = Phase::kIdle;
  go_.reset();
  std::shared_ptr<CheckpointHandle::State> handle = std::move(handle_);
  handle_.reset();
  if (handle) handle->Complete(std::move(status), version_);
}

}  // namespace ft::internal
