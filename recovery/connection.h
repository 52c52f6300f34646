// The private data a node passes with Fabric::Connect: who is dialling, in which epoch, and what
// the peer needs from it. A small wire format of its own, next to the control messages
// (recovery/protocol.h), because it travels in the connection handshake, not on a QP.
//
// Every connection starts with a 16-byte header {magic u32, rank u32, epoch u64}, little-endian:
// - control connections (a node and the coordinator), magic "FTC1": then the sender's endpoint
//   (where its fabric listens: 0..20 opaque bytes; empty on loopback), so that the coordinator can
//   tell each node where its partners are;
// - an idle spare's connection to the coordinator, magic "FTS1" (epoch kJoiningEpoch): then its
//   priority (u32: lower goes first) and failure domain (u32), then its endpoint as above;
// - partner connections (an owner and a holder), magic "FTP1": then the sender's store address
//   (u64) and rkey (u32) as registered now. An owner checks its holders' keys against the GO it
//   connects for: a mismatch means one of the two is stale (a restarted process, a re-registered
//   store), and nothing is written there.
// Both fit RC's 44 bytes of user private data (verbs/rdma adds its own 12-byte header to 56).
//
// Parsing checks the magic, the rank and the length against what the caller expects, and the
// epoch against the caller's: a peer of another epoch is a stale process (FailedPrecondition).
#ifndef FT_RECOVERY_CONNECTION_H_
#define FT_RECOVERY_CONNECTION_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ftengine/status.h"
#include "recovery/placement.h"

namespace ft::recovery {

inline constexpr uint32_t kControlConnectMagic = 0x46544331;  // "FTC1" read as little-endian u32
inline constexpr uint32_t kPartnerConnectMagic = 0x46545031;  // "FTP1"
inline constexpr uint32_t kSpareConnectMagic = 0x31535446;    // "FTS1"
inline constexpr size_t kConnectHeaderBytes = 16;
inline constexpr size_t kMaxConnectEndpointBytes = 20;
inline constexpr size_t kPartnerConnectBytes = kConnectHeaderBytes + 12;
inline constexpr size_t kMaxConnectBytes = kConnectHeaderBytes + kMaxConnectEndpointBytes;
inline constexpr size_t kMaxSpareConnectBytes = kMaxConnectBytes + 8;
static_assert(kMaxSpareConnectBytes <= 44 && kPartnerConnectBytes <= 44,
              "connection private data must fit RC's 44 user bytes (verbs/rdma)");

// Where a node's store is, as its owners WRITE to it (PREPARE, partner connections).
struct StoreKeys {
  uint64_t addr = 0;
  uint32_t rkey = 0;
  bool operator==(const StoreKeys&) const = default;
};

// The epoch a replacement process dials the coordinator with: it learns the view's epoch from the
// coordinator's answer (ConnectEpoch).
inline constexpr uint64_t kJoiningEpoch = 0;
// The epoch field of a peer's private data (0 when it is too short to have one).
uint64_t ConnectEpoch(std::span<const std::byte> data);

// Encoders. `endpoint` must be at most kMaxConnectEndpointBytes (FT_CHECK: the caller's own
// fabric produced it).
std::vector<std::byte> EncodeControlConnect(NodeId rank, uint64_t epoch,
                                            std::span<const std::byte> endpoint = {});
std::vector<std::byte> EncodePartnerConnect(NodeId rank, uint64_t epoch, StoreKeys store);
std::vector<std::byte> EncodeSpareConnect(NodeId spare, uint32_t priority, uint32_t domain,
                                          std::span<const std::byte> endpoint = {});

// What an idle spare tells the coordinator when it connects.
struct SpareConnect {
  uint32_t priority = 0;
  uint32_t domain = 0;
  std::span<const std::byte> endpoint;  // a view into the data
};

// Parsers of what `expected_rank` sent. Internal for data that is not ours (bad magic, another
// rank, a bad length: a bug or a foreign process); FailedPrecondition when the epoch differs
// (a stale process). The control parser returns the endpoint bytes (a view into `data`).
Result<std::span<const std::byte>> ParseControlConnect(std::span<const std::byte> data,
                                                       NodeId expected_rank,
                                                       uint64_t expected_epoch);
Result<StoreKeys> ParsePartnerConnect(std::span<const std::byte> data, NodeId expected_rank,
                                      uint64_t expected_epoch);
Result<SpareConnect> ParseSpareConnect(std::span<const std::byte> data, NodeId expected_spare);

}  // namespace ft::recovery

#endif  // FT_RECOVERY_CONNECTION_H_
