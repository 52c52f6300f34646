// Encoding and checking of the FTC1/FTP1 connection private data (recovery/connection.h).
#include "recovery/connection.h"

#include <cstring>

#include "common/check.h"

namespace ft::recovery {
namespace {

std::vector<std::byte> Header(uint32_t magic, NodeId rank, uint64_t epoch, size_t extra_bytes) {
  std::vector<std::byte> data(kConnectHeaderBytes + extra_bytes);
  std::memcpy(data.data(), &magic, 4);
  std::memcpy(data.data() + 4, &rank, 4);
  std::memcpy(data.data() + 8, &epoch, 8);
  return data;
}

// Checks the header of a peer's private data; returns what follows it.
Result<std::span<const std::byte>> CheckHeader(std::span<const std::byte> data,
                                               uint32_t expected_magic, NodeId expected_rank,
                                               uint64_t expected_epoch) {
  const char* kind = expected_magic == kControlConnectMagic ? "control"
                     : expected_magic == kSpareConnectMagic ? "spare"
                                                            : "partner";
  if (data.size() < kConnectHeaderBytes) {
    return Status::Internal("node ", expected_rank, " sent ", data.size(), " bytes of ", kind,
                            " connection private data (the header alone is ", kConnectHeaderBytes,
                            ")");
  }
  uint32_t magic = 0, rank = 0;
  uint64_t epoch = 0;
  std::memcpy(&magic, data.data(), 4);
  std::memcpy(&rank, data.data() + 4, 4);
  std::memcpy(&epoch, data.data() + 8, 8);
  if (magic != expected_magic) {
    return Status::Internal(kind, " connection private data from node ", expected_rank,
                            " is not ours (magic 0x", std::hex, magic, ")");
  }
  if (rank != expected_rank) {
    return Status::Internal(kind, " connection private data from node ", expected_rank,
                            " names rank ", rank);
  }
  if (epoch != expected_epoch) {
    return Status::FailedPrecondition("node ", rank, " connected in epoch ", epoch,
                                      ", this node is in epoch ", expected_epoch);
  }
  return data.subspan(kConnectHeaderBytes);
}

}  // namespace

uint64_t ConnectEpoch(std::span<const std::byte> data) {
  uint64_t epoch = 0;
  if (data.size() >= kConnectHeaderBytes) std::memcpy(&epoch, data.data() + 8, 8);
  return epoch;
}

std::vector<std::byte> EncodeControlConnect(NodeId rank, uint64_t epoch,
                                            std::span<const std::byte> endpoint) {
  FT_CHECK(endpoint.size() <= kMaxConnectEndpointBytes);
  std::vector<std::byte> data = Header(kControlConnectMagic, rank, epoch, endpoint.size());
  if (!endpoint.empty()) {
    std::memcpy(data.data() + kConnectHeaderBytes, endpoint.data(), endpoint.size());
  }
  return data;
}

std::vector<std::byte> EncodePartnerConnect(NodeId rank, uint64_t epoch, StoreKeys store) {
  std::vector<std::byte> data = Header(kPartnerConnectMagic, rank, epoch, 12);
  std::memcpy(data.data() + kConnectHeaderBytes, &store.addr, 8);
  std::memcpy(data.data() + kConnectHeaderBytes + 8, &store.rkey, 4);
  return data;
}

std::vector<std::byte> EncodeSpareConnect(NodeId spare, uint32_t priority, uint32_t domain,
                                          std::span<const std::byte> endpoint) {
  FT_CHECK(endpoint.size() <= kMaxConnectEndpointBytes);
  std::vector<std::byte> data =
      Header(kSpareConnectMagic, spare, kJoiningEpoch, 8 + endpoint.size());
  std::memcpy(data.data() + kConnectHeaderBytes, &priority, 4);
  std::memcpy(data.data() + kConnectHeaderBytes + 4, &domain, 4);
  if (!endpoint.empty()) {
    std::memcpy(data.data() + kConnectHeaderBytes + 8, endpoint.data(), endpoint.size());
  }
  return data;
}

Result<SpareConnect> ParseSpareConnect(std::span<const std::byte> data, NodeId expected_spare) {
  FT_ASSIGN_OR_RETURN(std::span<const std::byte> rest,
                      CheckHeader(data, kSpareConnectMagic, expected_spare, kJoiningEpoch));
  if (rest.size() < 8 || rest.size() - 8 > kMaxConnectEndpointBytes) {
    return Status::Internal("spare ", expected_spare, " sent ", data.size(),
                            " bytes of connection private data, expected ", kConnectHeaderBytes + 8,
                            "..", kMaxSpareConnectBytes);
  }
  SpareConnect spare;
  std::memcpy(&spare.priority, rest.data(), 4);
  std::memcpy(&spare.domain, rest.data() + 4, 4);
  spare.endpoint = rest.subspan(8);
  return spare;
}

Result<std::span<const std::byte>> ParseControlConnect(std::span<const std::byte> data,
                                                       NodeId expected_rank,
                                                       uint64_t expected_epoch) {
  FT_ASSIGN_OR_RETURN(std::span<const std::byte> endpoint,
                      CheckHeader(data, kControlConnectMagic, expected_rank, expected_epoch));
  if (endpoint.size() > kMaxConnectEndpointBytes) {
    return Status::Internal("node ", expected_rank, " sent a ", endpoint.size(),
                            "-byte endpoint (at most ", kMaxConnectEndpointBytes, ")");
  }
  return endpoint;
}

Result<StoreKeys> ParsePartnerConnect(std::span<const std::byte> data, NodeId expected_rank,
                                      uint64_t expected_epoch) {
  FT_ASSIGN_OR_RETURN(std::span<const std::byte> rest,
                      CheckHeader(data, kPartnerConnectMagic, expected_rank, expected_epoch));
  if (rest.size() != kPartnerConnectBytes - kConnectHeaderBytes) {
    return Status::Internal("node ", expected_rank, " sent ", data.size(),
                            " bytes of partner connection private data, expected ",
                            kPartnerConnectBytes);
  }
  StoreKeys keys;
  std::memcpy(&keys.addr, rest.data(), 8);
  std::memcpy(&keys.rkey, rest.data() + 8, 4);
  return keys;
}

}  // namespace ft::recovery
