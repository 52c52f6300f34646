// The fragment reader (engine/fragment_reader.h).
#include "engine/fragment_reader.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "engine/datapath.h"
#include "erasure/codec.h"
#include "erasure/fragment.h"

namespace ft::internal {
namespace {
// Header READs use window index 0; a window's cells use index window + 1.
constexpr uint32_t kHeaderWindow = 0;
}  // namespace

FragmentReader::FragmentReader(NodeContext& node, PeerTable& peers, NodeMemory& memory,
                               std::function<void()> beat)
    : node_(node), peers_(peers), memory_(memory), beat_(std::move(beat)) {}

std::byte* FragmentReader::CellOf(size_t slot, int column) const {
  const erasure::StripeGeometry& g = *committed_.geometry;
  return memory_.pipeline() + (slot * g.width() + static_cast<size_t>(column)) * g.cell_bytes();
}

std::byte* FragmentReader::DirectCell(uint64_t stripe, int column) const {
  const erasure::StripeGeometry& g = *committed_.geometry;
  if (!out_lkey_ || column >= g.k()) return nullptr;
  const erasure::CellExtent extent = g.DataCell(stripe, column);
  if (extent.image_bytes != g.cell_bytes()) return nullptr;  // the image ends inside it
  return out_.data() + extent.image_offset;
}

uint64_t FragmentReader::SlotAddr(int column) const {
  const recovery::HolderAddress& holder = committed_.holders[column];
  return holder.store_addr + holder.slot.store_offset +
         (committed_.version % 2) * committed_.slot_bytes;
}

void FragmentReader::Start(NodeId owner, const CommittedVersion& committed,
                           std::span<std::byte> out, std::span<const int> skip, Done done,
                           std::optional<uint32_t> out_lkey) {
  FT_CHECK_MSG(phase_ == Phase::kIdle, "a read started while another is in flight");
  generation_ = NextGeneration(generation_);
  owner_ = owner;
  committed_ = committed;
  out_ = out;
  out_lkey_ = out_lkey;
  done_ = std::move(done);
  first_problem_ = Status();
  result_.reset();
  outstanding_ = 0;
  next_stripe_ = emitted_ = 0;
  phase_ = Phase::kHeaders;  // so that Finish reports
  if (committed_.version == 0 || !committed_.geometry) {
    Finish(Status::NotFound("node ", owner_, " has no committed version to read"));
    return;
  }
  const erasure::StripeGeometry& g = *committed_.geometry;
  if (out.size() != g.image_bytes()) {
    Finish(Status::InvalidArgument("ReadCommitted: out has ", out.size(),
                                   " bytes; the committed image has ", g.image_bytes()));
    return;
  }
  const int width = g.width();
  usable_.assign(width, 1);
  for (int column : skip) {
    if (column < 0 || column >= width) {
      Finish(Status::InvalidArgument("skip column ", column, " is outside [0, ", width, ")"));
      return;
    }
    usable_[column] = 0;
  }
  header_area_bytes_ = erasure::HeaderAreaBytes(g.stripes());
  // As many windows as the pipeline has stripes of cells (the memory is the checkpoint's).
  const size_t windows = static_cast<size_t>(
      std::min<uint64_t>(static_cast<uint64_t>(node_.options.pipeline_depth), g.stripes()));
  if (Status headers = memory_.EnsureHeaders(header_area_bytes_ * width); !headers.ok()) {
    Finish(headers);
    return;
  }
  windows_.assign(windows, Window{});
  column_outstanding_.assign(width, 0);
  deadline_ = node_.Now() + node_.options.timeout;
  // Every column's header, all holders in parallel.
  for (int c = 0; c < width; ++c) {
    if (!usable_[c]) continue;
    if (Status posted =
            PostRead(c, c, HeaderOf(c), memory_.headers_lkey(), header_area_bytes_, SlotAddr(c));
        !posted.ok()) {
      usable_[c] = 0;
      Note(posted);
    }
  }
}

Status FragmentReader::PostRead(int column, uint32_t index, std::byte* local, uint32_t lkey,
                                uint64_t bytes, uint64_t remote) {
  const NodeId holder = committed_.holders[column].slot.holder;
  verbs::QueuePair* qp = peers_.Usable(holder, LinkRole::kData);
  if (qp == nullptr) return Status::Unavailable("holder node ", holder, " is unreachable");
  verbs::SendRequest read;
  read.wr_id = WorkId{WorkKind::kRead, generation_, index}.Encode();
  read.opcode = verbs::Opcode::kRead;
  read.sge[0] = {reinterpret_cast<uint64_t>(local), static_cast<uint32_t>(bytes), lkey};
  read.num_sge = 1;
  read.remote_addr = remote;
  read.rkey = committed_.holders[column].store_rkey;
  FT_RETURN_IF_ERROR(qp->PostSend({&read, 1}));
  peers_.CountPosted(qp->id());
  ++outstanding_;
  ++column_outstanding_[column];
  return Status();
}

void FragmentReader::Note(Status problem) {
  if (first_problem_.ok()) first_problem_ = std::move(problem);
}

void FragmentReader::OnReadCompleted(WorkId id, verbs::WcStatus status, NodeId peer) {
  if (phase_ == Phase::kIdle || id.generation != generation_) return;  // a read that gave up
  FT_CHECK_MSG(outstanding_ > 0, "a READ completion with no READ outstanding");
  --outstanding_;
  const uint32_t window = id.index >> 8;
  const int column = static_cast<int>(id.index & 0xff);
  FT_CHECK(column < static_cast<int>(column_outstanding_.size()));
  --column_outstanding_[column];
  const bool ok = status == verbs::WcStatus::kSuccess;
  if (!ok) {
    // Its link is in error now: the column is unusable for the rest of this read.
    usable_[column] = 0;
    Note(Status::Unavailable("READ from node ", peer, " failed: ", verbs::WcStatusName(status)));
  }
  if (window == kHeaderWindow) return;
  Window& w = windows_.at(window - 1);
  FT_CHECK(w.cells[column] == Cell::kReading);
  --w.reading;
  if (!ok) {
    w.cells[column] = Cell::kBad;
    return;
  }
  const erasure::StripeGeometry& g = *committed_.geometry;
  uint64_t crc = 0;
  (void)InPieces(
      g.cell_bytes(),
      [&](uint64_t at, uint64_t bytes) {
        crc = erasure::Crc64(Landing(w, window - 1, column) + at, bytes, crc);
        return Status();
      },
      beat_);
  const uint64_t expected =
      erasure::CellCrcs(std::span<const std::byte>(HeaderOf(column), header_area_bytes_))[w.stripe];
  if (crc != expected) {
    w.cells[column] = Cell::kBad;
    Note(Status::DataLoss("fragment ", column, " stripe ", w.stripe, ": cell CRC mismatch"));
    return;
  }
  w.cells[column] = Cell::kGood;
}

void FragmentReader::CheckHeaders() {
  const erasure::StripeGeometry& g = *committed_.geometry;
  erasure::FragmentHeader expected;
  expected.version = committed_.version;
  expected.epoch = committed_.epoch;
  expected.owner = owner_;
  expected.k = static_cast<uint32_t>(g.k());
  expected.m = static_cast<uint32_t>(g.m());
  expected.cell_bytes = g.cell_bytes();
  expected.image_bytes = g.image_bytes();
  expected.stripes = g.stripes();
  order_.clear();
  for (int c = 0; c < g.width(); ++c) {
    if (!usable_[c]) continue;
    expected.column = static_cast<uint32_t>(c);
    if (Status status = erasure::CheckHeader({HeaderOf(c), header_area_bytes_}, expected);
        !status.ok()) {
      usable_[c] = 0;
      Note(status);
      continue;
    }
    order_.push_back(c);  // data columns come first: intact, they need no decoding
  }
}

bool FragmentReader::Plan(Window& window, size_t slot) {
  const int k = committed_.geometry->k();
  int have = window.reading;
  for (Cell cell : window.cells) have += cell == Cell::kGood ? 1 : 0;
  for (int c : order_) {
    if (have >= k) break;
    if (!usable_[c] || window.cells[c] != Cell::kNone) continue;
    const erasure::StripeGeometry& g = *committed_.geometry;
    const uint64_t remote = SlotAddr(c) + header_area_bytes_ + window.stripe * g.cell_bytes();
    const uint32_t index = (static_cast<uint32_t>(slot + 1) << 8) | static_cast<uint32_t>(c);
    std::byte* direct = DirectCell(window.stripe, c);
    std::byte* landing = direct != nullptr ? direct : CellOf(slot, c);
    const uint32_t lkey = direct != nullptr ? *out_lkey_ : memory_.pipeline_lkey();
    if (Status posted = PostRead(c, index, landing, lkey, g.cell_bytes(), remote); !posted.ok()) {
      usable_[c] = 0;
      Note(posted);
      continue;
    }
    window.cells[c] = Cell::kReading;
    ++window.reading;
    ++have;
  }
  return have >= k;
}

Status FragmentReader::Emit(const Window& window, size_t slot) {
  const erasure::StripeGeometry& g = *committed_.geometry;
  const int k = g.k();
  std::vector<int> present;
  std::vector<const uint8_t*> present_cells;
  for (int c = 0; c < g.width() && static_cast<int>(present.size()) < k; ++c) {
    if (window.cells[c] != Cell::kGood) continue;
    present.push_back(c);
    present_cells.push_back(reinterpret_cast<const uint8_t*>(Landing(window, slot, c)));
  }
  std::vector<int> wanted;
  std::vector<uint8_t*> outputs;
  for (int c = 0; c < k; ++c) {
    if (window.cells[c] != Cell::kGood) {
      wanted.push_back(c);
      outputs.push_back(reinterpret_cast<uint8_t*>(Landing(window, slot, c)));
    }
  }
  // In pieces, with a heartbeat between them (kCpuPieceBytes).
  if (!wanted.empty()) {
    FT_RETURN_IF_ERROR(InPieces(
        g.cell_bytes(),
        [&](uint64_t at, uint64_t bytes) {
          std::vector<const uint8_t*> present_pieces(present_cells);
          std::vector<uint8_t*> output_pieces(outputs);
          for (const uint8_t*& piece : present_pieces) piece += at;
          for (uint8_t*& piece : output_pieces) piece += at;
          return node_.codec->Decode(present, present_pieces, wanted, output_pieces, bytes);
        },
        beat_));
  }
  for (int c = 0; c < k; ++c) {
    if (DirectCell(window.stripe, c) != nullptr) continue;  // read or decoded in place
    const erasure::CellExtent extent = g.DataCell(window.stripe, c);
    (void)InPieces(
        extent.image_bytes,
        [&](uint64_t at, uint64_t bytes) {
          std::memcpy(out_.data() + extent.image_offset + at, CellOf(slot, c) + at, bytes);
          return Status();
        },
        beat_);
  }
  return Status();
}

bool FragmentReader::Step() {
  if (phase_ == Phase::kIdle) return false;
  if (node_.Now() > deadline_) {
    // Fence the links our READs are stuck on: they flush, and the buffer is ours again.
    FenceOutstanding();
    if (!result_.has_value())
      result_ = Status::DeadlineExceeded("reading fragments back timed out");
  }
  if (result_.has_value()) {
    if (outstanding_ > 0) return false;
    Finish(*std::move(result_));
    return true;
  }
  if (phase_ == Phase::kHeaders) {
    if (outstanding_ > 0) return false;
    CheckHeaders();
    phase_ = Phase::kCells;
  }
  const erasure::StripeGeometry& g = *committed_.geometry;
  bool progressed = false;
  for (size_t slot = 0; slot < windows_.size(); ++slot) {
    Window& w = windows_[slot];
    if (!w.busy) {
      if (next_stripe_ == g.stripes()) continue;
      w = Window{true, next_stripe_++, std::vector<Cell>(g.width(), Cell::kNone), 0};
      progressed = true;
    }
    if (w.reading > 0) continue;
    int good = 0;
    for (Cell cell : w.cells) good += cell == Cell::kGood ? 1 : 0;
    if (good >= g.k()) {
      if (Status emitted = Emit(w, slot); !emitted.ok()) {
        Finish(emitted);
        return true;
      }
      w.busy = false;
      ++emitted_;
      progressed = true;
      continue;
    }
    if (!Plan(w, slot) && w.reading == 0) {
      Finish(
          Status::DataLoss("node ", owner_, " version ", committed_.version, " stripe ", w.stripe,
                           ": only ", good, " of the ", g.k(), " fragments needed are intact",
                           first_problem_.ok() ? "" : StrCat(" (", first_problem_.message(), ")")));
      return true;
    }
    progressed = true;
  }
  if (emitted_ == g.stripes()) Finish(Status());
  return progressed;
}

void FragmentReader::Finish(Status status) {
  if (outstanding_ > 0) {
    // READs still land in our buffer: the read ends when they completed (Step), bounded by its
    // deadline, which fences their links.
    if (!result_.has_value()) result_ = std::move(status);
    return;
  }
  phase_ = Phase::kIdle;
  result_.reset();
  Done done = std::move(done_);
  done_ = nullptr;
  if (done) done(std::move(status));
}

void FragmentReader::FenceOutstanding() {
  for (size_t c = 0; c < column_outstanding_.size(); ++c) {
    if (column_outstanding_[c] > 0) {
      peers_.Fence(committed_.holders[c].slot.holder, LinkRole::kData);
    }
  }
}

void FragmentReader::OnOwnFabricLost(std::string_view detail) {
  if (phase_ == Phase::kIdle) return;
  outstanding_ = 0;
  result_.reset();
  Finish(Status::Unavailable("node ", node_.rank(), " lost its fabric: ", detail));
}

void FragmentReader::Abandon(const std::function<bool()>& poll) {
  if (phase_ == Phase::kIdle) return;
  FenceOutstanding();
  // Bounded in real time too: an engine on a manual clock (tests) must still be destroyed.
  const Nanos deadline = node_.Now() + node_.options.timeout;
  const auto real_deadline = std::chrono::steady_clock::now() + node_.options.timeout;
  while (outstanding_ > 0 && node_.Now() < deadline &&
         std::chrono::steady_clock::now() < real_deadline) {
    if (!poll()) node_.fabric->WaitForActivity(std::chrono::milliseconds(1));
  }
  outstanding_ = 0;  // fenced and destroyed with the peer table: nothing lands after Stop
  result_.reset();
  Finish(Status::Aborted("the engine of node ", node_.rank(), " was destroyed"));
}

}  // namespace ft::internal
