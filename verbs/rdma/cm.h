// The CM thread and Connect attempts (internal; see core.h): rdma_cm and ibv async events, the
// active and passive sides of an attempt, and how an incoming request is matched to the Connect
// that names its peer (or kept until one does).
#ifndef FT_VERBS_RDMA_CM_H_
#define FT_VERBS_RDMA_CM_H_

#include <rdma/rdma_cma.h>

#include <cstdint>
#include <thread>

#include "verbs/rdma/core.h"

namespace ft::verbs::rdma {

// Our consumer-defined rejects carry a code: retryable ones make the initiator try again.
enum class RejectCode : uint8_t {
  kMalformed = 1,   // not our protocol, or a lower node initiating: permanent
  kWrongNode = 2,   // the request was meant for another node: permanent (address book mismatch)
  kSuperseded = 3,  // a newer request of the same peer replaced it: retry
  kLeaving = 4,     // this node's Fabric is being destroyed: retry (a new one may come)
};

// Rejects a connection request with one of our codes. Caller holds mu.
void RejectLocked(rdma_cm_id* id, RejectCode code, NodeId self);

// Active side (the higher NodeId): starts resolving the peer's address. Caller holds mu.
void StartActiveLocked(Core& core, Attempt& a, SteadyTime deadline);
// Passive side: accepts `request` for attempt `a`. Caller holds mu.
void AcceptLocked(Core& core, Attempt& a, PendingRequest request);

// The thread that waits on the event channel and the async fd and handles every event under
// Core::mu, then wakes the Connects waiting on Core::cv.
class CmThread {
 public:
  CmThread() = default;
  ~CmThread() { Stop(); }
  CmThread(const CmThread&) = delete;
  CmThread& operator=(const CmThread&) = delete;

  // `core` must outlive the thread (Stop() or destruction).
  Status Start(Core& core);
  void Stop();

 private:
  void Run(Core& core);

  UniqueFd stop_;
  std::thread thread_;
};

}  // namespace ft::verbs::rdma

#endif  // FT_VERBS_RDMA_CM_H_
