// An idle spare's only link: a control QP to the coordinator, made when the spare starts, on
// which it waits for ASSIGN (recovery/protocol.h). A spare holds no registered store, beats no
// heartbeat and has no rank until assigned one (it may zero the memory of the store it would need,
// STORE_HINT); then the engine is rebuilt as that rank's replacement
// (Engine::WaitForAssignment). Used by one thread at a time (the application's).
#ifndef FT_ENGINE_SPARE_LINK_H_
#define FT_ENGINE_SPARE_LINK_H_

#include <future>
#include <memory>

#include "common/clock.h"
#include "engine/buffer.h"
#include "ftengine/status.h"
#include "recovery/protocol.h"
#include "verbs/fabric.h"

namespace ft::internal {

class SpareLink {
 public:
  // Connects spare `spare_id` to the coordinator (bounded by `timeout`), telling it the spare's
  // priority and failure domain (recovery/spare_choice.h).
  static Result<std::unique_ptr<SpareLink>> Connect(verbs::Fabric& fabric,
                                                    recovery::NodeId spare_id, uint32_t priority,
                                                    uint32_t domain, recovery::NodeId coordinator,
                                                    Nanos timeout);
  ~SpareLink();  // the QP before the memory it could address
  SpareLink(const SpareLink&) = delete;
  SpareLink& operator=(const SpareLink&) = delete;

  // Waits for the coordinator's ASSIGN. DeadlineExceeded after `timeout`; Unavailable when the
  // coordinator's link breaks (it was lost, or the job ended). A STORE_HINT on the way starts
  // zeroing a store's memory on a thread of its own.
  Result<recovery::AssignMessage> WaitForAssignment(Nanos timeout, Clock& clock);
  // The store memory the hints asked for (zeroed, not registered: the rank's fabric registers
  // it), or an invalid future when none came. The link is done with it.
  std::future<Result<AlignedBuffer>> TakeStore() { return std::move(store_); }

  struct PrivateTag {};
  SpareLink(PrivateTag, verbs::Fabric& fabric) : fabric_(fabric) {}

 private:
  // Receive `index` of the kReceives, into its slot of buffer_.
  verbs::RecvRequest ReceiveAt(uint32_t index) const;
  Status Repost(uint32_t index);
  void TakeHint(uint64_t bytes);

  static constexpr int kReceives = 4;
  verbs::Fabric& fabric_;
  recovery::NodeId coordinator_ = 0;
  AlignedBuffer buffer_;
  std::unique_ptr<verbs::MemoryRegion> mr_;
  std::unique_ptr<verbs::QueuePair> qp_;
  std::future<Result<AlignedBuffer>> store_;
  uint64_t store_bytes_ = 0;  // what store_ holds or will
};

}  // namespace ft::internal

#endif  // FT_ENGINE_SPARE_LINK_H_
