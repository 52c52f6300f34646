// Work-request builders shared by the verbs tests (conformance suite, loopback tests).
#ifndef FT_TEST_WORK_REQUESTS_H_
#define FT_TEST_WORK_REQUESTS_H_

#include <cstddef>
#include <cstdint>

#include "verbs/fabric.h"

namespace ft::verbs::test {

// One SGE over [offset, offset + length) of a registration.
inline Sge SgeOf(const MemoryRegion& mr, size_t offset, size_t length) {
  return Sge{.addr = reinterpret_cast<uintptr_t>(mr.addr()) + offset,
             .length = static_cast<uint32_t>(length),
             .lkey = mr.lkey()};
}

inline SendRequest Write(uint64_t wr_id, Sge local, const MemoryRegion& remote,
                         size_t remote_offset, bool signaled = true) {
  SendRequest r;
  r.wr_id = wr_id;
  r.opcode = Opcode::kWrite;
  r.sge[0] = local;
  r.num_sge = 1;
  r.remote_addr = reinterpret_cast<uintptr_t>(remote.addr()) + remote_offset;
  r.rkey = remote.rkey();
  r.signaled = signaled;
  return r;
}

inline SendRequest Read(uint64_t wr_id, Sge local, const MemoryRegion& remote,
                        size_t remote_offset) {
  SendRequest r = Write(wr_id, local, remote, remote_offset);
  r.opcode = Opcode::kRead;
  return r;
}

inline SendRequest Send(uint64_t wr_id, Sge local, bool signaled = true) {
  SendRequest r;
  r.wr_id = wr_id;
  r.opcode = Opcode::kSend;
  r.sge[0] = local;
  r.num_sge = 1;
  r.signaled = signaled;
  return r;
}

inline RecvRequest Recv(uint64_t wr_id, Sge local) {
  return RecvRequest{.wr_id = wr_id, .sge = local};
}

}  // namespace ft::verbs::test

#endif  // FT_TEST_WORK_REQUESTS_H_
