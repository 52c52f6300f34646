// Control messages between nodes and the coordinator, and their wire format.
//
// Every message starts with {type u8, pad, epoch u64}; integers are little-endian (all supported
// hosts are). A message is at most kMaxControlMessageBytes, the size of the posted receive
// buffers. Decode checks every length against the buffer and rejects anything malformed.
//
// One checkpoint round (version v, epoch e):
//   node -> coordinator   PREPARE(e, node, image bytes, footprint, capacity, domain, store keys)
//   coordinator -> node   GROW(e, store bytes)     when the placement needs a larger store on
//                                                  a node whose store it sizes; the node
//                                                  registers one and PREPAREs again
//   coordinator -> node   GO(e, v, placement if it changed: this node's holders, slot bytes,
//                            hosted owners)
//   node -> coordinator   DONE(e, v, node, status)     after all its WRITEs completed
//   coordinator -> node   COMMIT(e, v)                 when every node reported DONE(v) OK
//                         ABORT(e, v, node, reason)    when one failed; v-1 stays committed
//
// Failure detection (recovery/heartbeat.h), outside rounds:
//   both ways, at start   BEAT_TARGET(e, sender, slot addr, rkey)   "WRITE your beats here"
//   coordinator -> node   LOST(e, node, reason)        a node was declared lost: fence every link
//                                                      to it, recovery is needed
//
// Recovery (docs/architecture.md, "Node-loss recovery"), in the new view's epoch e':
//   coordinator -> member VIEW(e', V, replaced ranks, the fragments it hosts for V's placement)
//   member -> coordinator REPORT(e', node, V, per fragment: slot of V intact, slot of V-1 intact)
//   coordinator -> member RESTORE(e', v, epoch v was written in, image bytes, store bytes to
//                            register (a replacement), its placement for v)
//   member -> coordinator RESTORED(e', node, v, status, store keys)     v is in its memory
//   coordinator -> owner  REPROTECT(e', v, epoch v was written in, holders, columns to rewrite)
//   owner -> coordinator  DONE(e', v, node, status)    its columns on the replacements are back
//   coordinator -> member COMMIT(e', v): recovered, full redundancy    ABORT(e', v): it failed
//   coordinator -> spare  ASSIGN(e', rank)     an idle spare becomes the lost rank's process
//   coordinator -> replacement  LAYOUT(e', rank, committed layout)   once its join is accepted:
//                         the regions (ids, sizes) the application Protects before Recover()
//
// Region layouts: a PREPARE names its node's layout by region count and digest. When the
// coordinator does not know that layout, it pulls it before the PREPARE counts:
//   coordinator -> node   LAYOUT_REQUEST(e, node, digest, first)
//   node -> coordinator   LAYOUT(e, node, digest, total, first, regions[first, first + 5))
// one chunk at a time (an upstream message holds 5 regions; the coordinator's receive queues
// are short). The committed version's layouts are part of the coordinator's state.
#ifndef FT_RECOVERY_PROTOCOL_H_
#define FT_RECOVERY_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "ftengine/status.h"
#include "recovery/placement.h"

namespace ft::recovery {

// Coordinator -> node messages (GO is the large one) fit kMaxControlMessageBytes; node ->
// coordinator messages (PREPARE, DONE) fit kMaxUpstreamMessageBytes, which keeps the
// coordinator's posted receive buffers small when it has thousands of peers.
inline constexpr size_t kMaxControlMessageBytes = 8192;
inline constexpr size_t kMaxUpstreamMessageBytes = 128;
inline constexpr size_t kMaxReasonBytes = 256;
inline constexpr int kMaxStripeWidth = 64;  // k + m, as erasure::kMaxCells
// A peer's network endpoint (verbs::Fabric::endpoint()): opaque bytes, at most this many.
inline constexpr size_t kMaxEndpointBytes = 20;
// Header (16) + GO fields (40) + 64 holders (24 each) with their endpoints (4 + 1 + 20 each)
// leave room for this many hosted owners (4 bytes each, plus an endpoint).
inline constexpr size_t kMaxHostedOwners =
    (kMaxControlMessageBytes - 56 - 64 * 24 - 64 * (5 + kMaxEndpointBytes)) /
    (4 + 5 + kMaxEndpointBytes);
static_assert(kMaxHostedOwners >= 2 * kMaxStripeWidth, "a balanced placement must always fit");

enum class MessageType : uint8_t {
  kPrepare = 1,
  kGo = 2,
  kDone = 3,
  kCommit = 4,
  kAbort = 5,
  kGrow = 6,
  kBeatTarget = 7,
  kLost = 8,
  kView = 9,
  kReport = 10,
  kRestore = 11,
  kRestored = 12,
  kReprotect = 13,
  kAssign = 14,
  kLayoutRequest = 15,
  kLayout = 16,
  kStoreHint = 17,
};

// One protected region of a node's image (the image is its regions concatenated in id order).
struct LayoutRegion {
  uint64_t id = 0;
  uint64_t bytes = 0;
  bool operator==(const LayoutRegion&) const = default;
};
// Regions a node may protect: a replacement gets its rank's whole layout in one burst of LAYOUT
// messages, which its posted control receives must hold (9 of its 16).
inline constexpr uint32_t kMaxLayoutRegions = 4096;
// Regions per LAYOUT: header (16) + node, total, first, count (16) + digest (8) + 16 per region.
inline constexpr size_t kLayoutRegionsUpstream = (kMaxUpstreamMessageBytes - 40) / 16;
inline constexpr size_t kLayoutRegionsDownstream = (kMaxControlMessageBytes - 40) / 16;
static_assert((kMaxLayoutRegions + kLayoutRegionsDownstream - 1) / kLayoutRegionsDownstream <= 9,
              "a layout must fit the receives a replacement posts");

struct PrepareMessage {
  uint64_t epoch = 0;
  NodeId node = 0;
  uint64_t image_bytes = 0;
  uint64_t footprint_bytes = 0;  // store bytes each holder needs for this node's fragment
  uint64_t capacity_bytes = 0;   // store bytes this node offers
  uint32_t domain = 0;
  uint64_t store_addr = 0;  // this node's store: where holders' fragments are WRITTEN
  uint32_t store_rkey = 0;
  // The coordinator sizes this node's store (EngineOptions::store_capacity = 0): it may answer
  // GROW. Otherwise capacity_bytes is all the node will ever offer.
  bool store_sized_by_coordinator = false;
  // The image's region layout: its region count and a digest of its (id, bytes) pairs. The
  // coordinator pulls a layout it does not know (LAYOUT_REQUEST) before the PREPARE counts.
  uint32_t layout_regions = 0;
  uint64_t layout_digest = 0;
  bool operator==(const PrepareMessage&) const = default;
};

// "Register a store of at least store_bytes, then PREPARE again with its keys." The store that
// holds the committed version's fragments stays registered until a later version commits.
struct GrowMessage {
  uint64_t epoch = 0;
  uint64_t store_bytes = 0;
  bool operator==(const GrowMessage&) const = default;
};

// A holder as an owner needs it: where its fragment extent starts, and the key to WRITE there.
struct HolderAddress {
  FragmentSlot slot;
  uint64_t store_addr = 0;
  uint32_t store_rkey = 0;
  bool operator==(const HolderAddress&) const = default;
};

// Where a peer listens, for fabrics whose nodes find each other on a network (rdma).
struct PeerEndpoint {
  NodeId node = 0;
  std::vector<std::byte> bytes;  // at most kMaxEndpointBytes
  bool operator==(const PeerEndpoint&) const = default;
};

struct GoMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;
  uint64_t placement_id = 0;           // increases whenever the placement changes
  bool has_placement = false;          // when false the node keeps the placement it has
  std::vector<HolderAddress> holders;  // this node's k + m holders, by column
  // With a placement: the bytes of each of the two slots of this node's extents (half of its
  // extent, ExtentBytesFor its footprint): version v goes to slot v % 2 at store_offset + (v %
  // 2) x slot_bytes, whatever the image size of v, so a grown image never reaches the other slot.
  uint64_t slot_bytes = 0;
  std::vector<NodeId> hosted_owners;  // owners whose fragments this node hosts (to connect)
  // With a placement, on a networked fabric: where the holders and hosted owners listen.
  std::vector<PeerEndpoint> endpoints;
  bool operator==(const GoMessage&) const = default;
};

// DONE with this version and a failed code: "I gave up before my GO came" (no version known).
inline constexpr uint64_t kWithdrawVersion = 0;

struct DoneMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;
  NodeId node = 0;
  StatusCode code = StatusCode::kOk;  // not OK: this node could not place its fragments
  NodeId failed_peer = UINT32_MAX;    // the peer that failed it, when known
  bool operator==(const DoneMessage&) const = default;
};

struct CommitMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;
  bool operator==(const CommitMessage&) const = default;
};

// An ABORT of this version ends a recovery that could not be done (no replacement for a lost
// rank, data loss, another loss), not a checkpoint round.
inline constexpr uint64_t kRecoveryVersion = UINT64_MAX;

struct AbortMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;
  NodeId failed_node = UINT32_MAX;
  StatusCode code = StatusCode::kAborted;
  std::string reason;  // truncated to kMaxReasonBytes
  bool operator==(const AbortMessage&) const = default;
};

// Where the receiver WRITEs its heartbeats for the sender: a kBeatBytes slot registered for
// remote write on the sender.
struct BeatTargetMessage {
  uint64_t epoch = 0;
  NodeId node = 0;  // the sender (the reader of the slot)
  uint64_t slot_addr = 0;
  uint32_t slot_rkey = 0;
  bool operator==(const BeatTargetMessage&) const = default;
};

// The coordinator declared `node` lost (missed heartbeats, a broken link): every member fences
// its links to it, so nothing that node posts lands anywhere, even if it was only hung.
struct LostMessage {
  uint64_t epoch = 0;
  NodeId node = 0;
  std::string reason;  // truncated to kMaxReasonBytes
  bool operator==(const LostMessage&) const = default;
};

// A fragment the coordinator's committed placement puts on the receiver of a VIEW: where its two
// slots are in the receiver's store.
struct HostedCheck {
  NodeId owner = 0;
  uint32_t column = 0;
  uint64_t store_offset = 0;
  uint64_t slot_bytes = 0;
  bool operator==(const HostedCheck&) const = default;
};
inline constexpr size_t kMaxHostedChecks = (kMaxControlMessageBytes - 64) / 24;
// REPORT carries 2 bits per check.
inline constexpr size_t kMaxReportedChecks = (kMaxUpstreamMessageBytes - 40) * 4;

// "Epoch e' begins without the replaced ranks' old processes: check the slots of these
// fragments for versions V and V - 1 and REPORT." Replacements get an empty list.
struct ViewMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;  // V: the newest committed version (0: none)
  std::vector<NodeId> replaced;
  std::vector<HostedCheck> checks;
  bool operator==(const ViewMessage&) const = default;
};

// Per check of the VIEW, in its order: kNewestIntact when the slot of V holds an intact header of
// V for that owner and column, kOlderIntact the same for V - 1 in the other slot.
inline constexpr uint8_t kNewestIntact = 1;
inline constexpr uint8_t kOlderIntact = 2;
struct ReportMessage {
  uint64_t epoch = 0;
  NodeId node = 0;
  uint64_t version = 0;
  std::vector<uint8_t> intact;  // at most kMaxReportedChecks
  bool operator==(const ReportMessage&) const = default;
};

// "Restore version v into your protected regions": from the local copy or the node's own
// fragments (a survivor), or rebuilt from the holders (a replacement, which first registers a
// store of store_bytes for the fragments it hosts). The placement is the member's for v.
struct RestoreMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;
  uint64_t written_epoch = 0;  // the epoch v was written in (its fragment headers say so)
  uint64_t image_bytes = 0;
  uint64_t store_bytes = 0;  // > 0 for a replacement
  uint64_t slot_bytes = 0;
  std::vector<HolderAddress> holders;  // by column
  std::vector<NodeId> hosted_owners;
  std::vector<PeerEndpoint> endpoints;
  bool operator==(const RestoreMessage&) const = default;
};

struct RestoredMessage {
  uint64_t epoch = 0;
  NodeId node = 0;
  uint64_t version = 0;
  StatusCode code = StatusCode::kOk;
  uint64_t store_addr = 0;  // the member's store as registered now (a replacement's is new)
  uint32_t store_rkey = 0;
  bool operator==(const RestoredMessage&) const = default;
};

// "Rewrite these columns of version v (from your restored memory) into their holders, which
// replaced lost nodes": full redundancy without a checkpoint. Answered with DONE(e', v).
struct ReprotectMessage {
  uint64_t epoch = 0;
  uint64_t version = 0;
  uint64_t written_epoch = 0;
  uint64_t columns = 0;                // bit c: rewrite column c
  std::vector<HolderAddress> holders;  // by column, with the replacements' new stores
  bool operator==(const ReprotectMessage&) const = default;
};

// coordinator -> spare: "take rank `rank`": an idle spare (connected to the coordinator before
// any loss) becomes the replacement of that lost rank and joins the view being installed.
struct AssignMessage {
  uint64_t epoch = 0;  // the view the spare joins
  NodeId rank = 0;
  bool operator==(const AssignMessage&) const = default;
};

// coordinator -> idle spare: "a replacement would need a store of store_bytes": the largest any
// rank would be given (ReplacementStoreBytes), sent when it grows. The spare zeroes that much
// memory while it waits, so that taking a rank does not start with it (the longest step of a
// recovery on a fresh process). A hint: what the spare is later told in RESTORE decides.
struct StoreHintMessage {
  uint64_t epoch = 0;
  uint64_t store_bytes = 0;
  bool operator==(const StoreHintMessage&) const = default;
};

// coordinator -> node: "send the regions of your layout `digest` from index `first` on".
struct LayoutRequestMessage {
  uint64_t epoch = 0;
  NodeId node = 0;  // whose layout (the receiver)
  uint64_t digest = 0;
  uint32_t first = 0;
  bool operator==(const LayoutRequestMessage&) const = default;
};

// Regions [first, first + regions.size()) of `node`'s layout of `total` regions: a node's answer
// to LAYOUT_REQUEST (at most kLayoutRegionsUpstream), or the coordinator telling a replacement
// the committed layout of its rank (at most kLayoutRegionsDownstream each; total 0: no regions,
// nothing was committed).
struct LayoutMessage {
  uint64_t epoch = 0;
  NodeId node = 0;
  uint64_t digest = 0;
  uint32_t total = 0;
  uint32_t first = 0;
  std::vector<LayoutRegion> regions;
  bool operator==(const LayoutMessage&) const = default;
};

using Message = std::variant<PrepareMessage, GoMessage, DoneMessage, CommitMessage, AbortMessage,
                             GrowMessage, BeatTargetMessage, LostMessage, ViewMessage,
                             ReportMessage, RestoreMessage, RestoredMessage, ReprotectMessage,
                             AssignMessage, LayoutRequestMessage, LayoutMessage, StoreHintMessage>;

// The LAYOUT carrying regions [first, first + at most max_regions) of `node`'s layout `regions`
// (a node answering LAYOUT_REQUEST: kLayoutRegionsUpstream; the coordinator telling a replacement:
// kLayoutRegionsDownstream). `first` <= regions.size().
LayoutMessage LayoutChunk(uint64_t epoch, NodeId node, uint64_t digest,
                          std::span<const LayoutRegion> regions, uint32_t first,
                          size_t max_regions);

// Writes `message` into `out`; returns the bytes used, or ResourceExhausted when it does not fit.
Result<size_t> EncodeMessage(const Message& message, std::span<std::byte> out);
// Parses one message; InvalidArgument for anything truncated, unknown or inconsistent.
Result<Message> DecodeMessage(std::span<const std::byte> in);

}  // namespace ft::recovery

#endif  // FT_RECOVERY_PROTOCOL_H_
