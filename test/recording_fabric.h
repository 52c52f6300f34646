// A Fabric decorator for tests: forwards everything to the wrapped fabric and watches the
// datapath of one node. It checks the header-last rule as the engine posts: when a WRITE whose
// payload starts with a fragment header is posted, no other WRITE of this node may still be
// outstanding (posted and not yet retired by a polled completion). Violations are counted.
#ifndef FT_TEST_RECORDING_FABRIC_H_
#define FT_TEST_RECORDING_FABRIC_H_

#include <atomic>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/work_ids.h"
#include "erasure/fragment.h"
#include "verbs/fabric.h"

namespace ft::test {

struct DatapathRecord {
  std::atomic<int> header_writes{0};
  std::atomic<int> cell_writes{0};
  std::atomic<int> reads{0};
  std::atomic<int> headers_posted_with_cells_outstanding{0};
};

class RecordingFabric final : public verbs::Fabric {
 public:
  // Fault injection: rewrites what a peer sent with its Connect, as this node's QPs report it.
  using PrivateDataRewrite = std::function<void(verbs::NodeId peer, std::vector<std::byte>& data)>;

  RecordingFabric(std::unique_ptr<verbs::Fabric> inner, std::shared_ptr<DatapathRecord> record,
                  PrivateDataRewrite rewrite = {})
      : inner_(std::move(inner)), record_(std::move(record)), rewrite_(std::move(rewrite)) {}

  verbs::NodeId node() const override { return inner_->node(); }
  const verbs::Limits& limits() const override { return inner_->limits(); }
  std::string name() const override { return "recording(" + inner_->name() + ")"; }
  Result<std::unique_ptr<verbs::MemoryRegion>> RegisterMemory(void* addr, size_t bytes,
                                                              uint32_t access) override {
    return inner_->RegisterMemory(addr, bytes, access);
  }
  Result<std::vector<std::unique_ptr<verbs::QueuePair>>> Connect(
      std::span<const verbs::ConnectRequest> requests, Nanos timeout) override {
    FT_ASSIGN_OR_RETURN(auto qps, inner_->Connect(requests, timeout));
    std::vector<std::unique_ptr<verbs::QueuePair>> wrapped;
    for (auto& qp : qps) {
      const std::span<const std::byte> sent = qp->peer_private_data();
      std::vector<std::byte> data(sent.begin(), sent.end());
      if (rewrite_) rewrite_(qp->peer(), data);
      wrapped.push_back(std::make_unique<Qp>(std::move(qp), this, std::move(data)));
    }
    return wrapped;
  }
  size_t PollCompletions(std::span<verbs::Completion> out) override {
    const size_t n = inner_->PollCompletions(out);
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < n; ++i) {
      if (out[i].opcode == verbs::Opcode::kRecv) continue;  // the receive queue is not watched
      // Completions of one QP arrive in post order: a completion retires every earlier
      // (unsignaled) request of its QP and itself.
      auto& posted = outstanding_[out[i].qp];
      while (!posted.empty()) {
        const uint64_t wr_id = posted.front();
        posted.pop_front();
        if (wr_id == out[i].wr_id) break;
      }
    }
    return n;
  }
  size_t PollEvents(std::span<verbs::Event> out) override { return inner_->PollEvents(out); }
  void WaitForActivity(Nanos timeout) override { inner_->WaitForActivity(timeout); }
  void Interrupt() override { inner_->Interrupt(); }
  void CancelConnects() override { inner_->CancelConnects(); }
  std::vector<std::byte> endpoint() const override { return inner_->endpoint(); }
  Status LearnEndpoint(verbs::NodeId peer, std::span<const std::byte> endpoint) override {
    return inner_->LearnEndpoint(peer, endpoint);
  }
  const verbs::DeviceLocality* locality() const override { return inner_->locality(); }

 private:
  class Qp final : public verbs::QueuePair {
   public:
    Qp(std::unique_ptr<verbs::QueuePair> inner, RecordingFabric* owner,
       std::vector<std::byte> peer_private_data)
        : inner_(std::move(inner)),
          owner_(owner),
          peer_private_data_(std::move(peer_private_data)) {}
    uint32_t id() const override { return inner_->id(); }
    verbs::NodeId peer() const override { return inner_->peer(); }
    std::span<const std::byte> peer_private_data() const override { return peer_private_data_; }
    verbs::QpState state() const override { return inner_->state(); }
    Status PostSend(std::span<const verbs::SendRequest> requests, size_t* posted) override {
      owner_->BeforePost(id(), requests);
      return inner_->PostSend(requests, posted);
    }
    Status PostRecv(std::span<const verbs::RecvRequest> requests, size_t* posted) override {
      return inner_->PostRecv(requests, posted);
    }
    void ToError() override { inner_->ToError(); }

   private:
    std::unique_ptr<verbs::QueuePair> inner_;
    RecordingFabric* owner_;
    std::vector<std::byte> peer_private_data_;
  };

  void BeforePost(uint32_t qp, std::span<const verbs::SendRequest> requests) {
    std::lock_guard lock(mutex_);
    for (const verbs::SendRequest& request : requests) {
      if (request.opcode == verbs::Opcode::kRead) ++record_->reads;
      // Heartbeats are WRITEs too, on the control QPs: not the datapath's.
      const bool beat = internal::WorkId::Decode(request.wr_id).kind == internal::WorkKind::kBeat;
      if (request.opcode == verbs::Opcode::kWrite && !beat && request.num_sge > 0 &&
          request.sge[0].length >= sizeof(uint64_t)) {
        uint64_t magic = 0;
        std::memcpy(&magic, reinterpret_cast<const void*>(request.sge[0].addr), sizeof(magic));
        if (magic == erasure::kFragmentMagic) {
          ++record_->header_writes;
          if (CellWritesOutstanding()) ++record_->headers_posted_with_cells_outstanding;
        } else {
          ++record_->cell_writes;
          cell_wr_ids_.insert({request.wr_id, true});
        }
      }
      outstanding_[qp].push_back(request.wr_id);
    }
  }

  bool CellWritesOutstanding() const {
    for (const auto& [qp, posted] : outstanding_) {
      for (uint64_t wr_id : posted) {
        if (cell_wr_ids_.contains(wr_id)) return true;
      }
    }
    return false;
  }

  std::unique_ptr<verbs::Fabric> inner_;
  std::shared_ptr<DatapathRecord> record_;
  PrivateDataRewrite rewrite_;
  std::mutex mutex_;
  std::map<uint32_t, std::deque<uint64_t>> outstanding_;  // per QP, in post order
  std::map<uint64_t, bool> cell_wr_ids_;                  // wr_ids ever used for cell WRITEs
};

}  // namespace ft::test

#endif  // FT_TEST_RECORDING_FABRIC_H_
