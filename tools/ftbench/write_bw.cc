#include "tools/ftbench/write_bw.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "engine/datapath.h"
#include "ftengine/bootstrap.h"
#include "verbs/fabric.h"
#include "verbs/rdma/rdma.h"
#include "world/process.h"

namespace ft::ftbench {
namespace {

using verbs::Completion;
using verbs::Fabric;
using verbs::MemoryRegion;
using verbs::QueuePair;
using verbs::WcStatus;

constexpr const char* kTwoRanks = "write-bw needs exactly 2 ranks (ftrun -n 2)";
constexpr uint32_t kWriter = 0;  // rank 0 WRITEs
constexpr uint32_t kTarget = 1;  // into rank 1's buffer
constexpr int kMaxPipelineDepth = 1024;

// Connect private data (≤ Limits::max_private_data = 44 bytes) and the done message, each
// starting with a magic that tells a write-bw peer from anything else listening there.
constexpr uint32_t kTargetMagic = 0x46545754;  // "FTWT": rank 1's buffer, to rank 0
constexpr uint32_t kWriterMagic = 0x46545757;  // "FTWW": rank 0's flags, to rank 1
constexpr uint32_t kDoneMagic = 0x46545744;    // "FTWD": rank 0's SEND after the last WRITE
constexpr uint64_t kDoneWrId = UINT64_MAX;     // WRITEs use their slot number
constexpr size_t kControlBytes = 64;
constexpr uint64_t kPatternSeed = 0x77726974652d6277;  // "write-bw"

struct TargetInfo {  // rank 1 -> rank 0
  uint64_t addr = 0;
  uint64_t length = 0;
  uint32_t rkey = 0;
};
struct WriterInfo {  // rank 0 -> rank 1
  uint64_t size = 0;
  double duration_seconds = 0;
};
struct DoneInfo {  // rank 0's SEND
  uint64_t iterations = 0;
};

// Fixed-layout encoding in host byte order: both ranks run the same binary on the same machine
// type (a mixed-endian job is not supported).
class Writer {
 public:
  template <typename T>
  Writer& Put(const T& value) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
    return *this;
  }
  std::vector<std::byte> Take() { return std::move(bytes_); }

 private:
  std::vector<std::byte> bytes_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> bytes) : bytes_(bytes) {}
  template <typename T>
  bool Get(T* value) {
    if (bytes_.size() - at_ < sizeof(T)) return false;
    std::memcpy(value, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }

 private:
  std::span<const std::byte> bytes_;
  size_t at_ = 0;
};

bool Decode(std::span<const std::byte> bytes, TargetInfo* out) {
  Reader in(bytes);
  uint32_t magic = 0;
  return in.Get(&magic) && magic == kTargetMagic && in.Get(&out->addr) && in.Get(&out->length) &&
         in.Get(&out->rkey);
}

bool Decode(std::span<const std::byte> bytes, WriterInfo* out) {
  Reader in(bytes);
  uint32_t magic = 0;
  return in.Get(&magic) && magic == kWriterMagic && in.Get(&out->size) &&
         in.Get(&out->duration_seconds);
}

bool Decode(std::span<const std::byte> bytes, DoneInfo* out) {
  Reader in(bytes);
  uint32_t magic = 0;
  return in.Get(&magic) && magic == kDoneMagic && in.Get(&out->iterations);
}

Nanos ToNanos(double seconds) {
  return std::chrono::duration_cast<Nanos>(std::chrono::duration<double>(seconds));
}

Nanos Now() { return SteadyClock::Default().Now(); }

int Usage(const std::string& message) {
  // One write: std::cerr is unbuffered, and ranks share the terminal with ftrun.
  std::cerr << StrCat("ftbench write-bw: ", message, "\n");
  return kExitUsage;
}

int Fail(uint32_t rank, const std::string& message) {
  std::cerr << StrCat("ftbench write-bw: rank ", rank, ": ", message, "\n");
  return kExitFailure;
}

std::string RankName(uint32_t rank) {
  return rank == kWriter ? "rank 0 (the writer)" : "rank 1 (the target)";
}

// An error message for the first event that means the peer or the device is gone, or "".
std::string LostPeer(Fabric& fabric, uint32_t peer) {
  verbs::Event events[8];
  const size_t n = fabric.PollEvents(events);
  for (size_t i = 0; i < n; ++i) {
    const verbs::Event& e = events[i];
    const std::string detail = e.detail.empty() ? "" : ": " + e.detail;
    switch (e.type) {
      case verbs::EventType::kDisconnected:
        return StrCat(RankName(peer), " disconnected (event ", verbs::EventTypeName(e.type), detail,
                      ")");
      case verbs::EventType::kQpError:
        return StrCat("the queue pair to ", RankName(peer), " failed (event ",
                      verbs::EventTypeName(e.type), detail, ")");
      case verbs::EventType::kDeviceError:
        return StrCat("the RDMA device failed (event ", verbs::EventTypeName(e.type), detail,
                      ") while connected to ", RankName(peer));
    }
  }
  return "";
}

Result<std::unique_ptr<QueuePair>> ConnectTo(Fabric& fabric, uint32_t peer,
                                             std::vector<std::byte> private_data) {
  verbs::ConnectRequest request;
  request.peer = peer;
  request.private_data = std::move(private_data);
  FT_ASSIGN_OR_RETURN(auto qps, fabric.Connect({&request, 1}, ToNanos(kWriteBwTimeoutSeconds)));
  return std::move(qps.front());
}

std::string ConnectError(uint32_t self, uint32_t peer, const Status& status) {
  std::string where;
  if (self == kTarget) {
    const char* coordinator = std::getenv("FT_COORDINATOR");
    where = StrCat(" at FT_COORDINATOR=", coordinator != nullptr ? coordinator : "(unset)");
  }
  return StrCat("cannot connect to ", RankName(peer), where, " within ", kWriteBwTimeoutSeconds,
                " s: ", status.ToString());
}

struct Measurement {
  uint64_t iterations = 0;  // completed WRITEs
  double seconds = 0;       // first post to last completion
};

void Print(const WriteBwOptions& o, int window, const Fabric& fabric, const Measurement& m) {
  const double gbps = GigabytesPerSecond(static_cast<double>(o.size) * m.iterations, m.seconds);
  if (o.json) {
    nlohmann::ordered_json out;
    out["size"] = o.size;
    out["iterations"] = m.iterations;
    out["seconds"] = m.seconds;
    out["write_gbps"] = gbps;
    std::cout << out.dump() << "\n";
    return;
  }
  std::string link = fabric.name();
  if (Result<verbs::RdmaDeviceInfo> info = verbs::GetRdmaDeviceInfo(fabric); info.ok()) {
    link = StrCat(info->device, " port ", static_cast<int>(info->port), " (", info->gid_type,
                  ", MTU ", info->active_mtu, ")");
  }
  std::cout << "ftbench write-bw: rank 0 -> rank 1 over " << link
            << "; one signaled WRITE per message, at most " << window
            << " in flight (--pipeline-depth " << o.pipeline_depth
            << "), as the engine; GB/s = 1e9 bytes/s\n";
  Table table({"bytes", "iterations", "seconds", "in flight", "GB/s", "MiB/s"});
  table.AddRow({std::to_string(o.size), std::to_string(m.iterations), FormatFixed(m.seconds, 3),
                std::to_string(window), FormatFixed(gbps, 3),
                FormatFixed(gbps * 1e9 / (1 << 20), 2)});
  std::cout << table.ToString();
}

// Rank 0: WRITEs for the duration, drains, sends "done", prints.
int RunWriter(const WriteBwOptions& o, Fabric& fabric, int window) {
  constexpr uint32_t self = kWriter;
  constexpr uint32_t peer = kTarget;
  // One source buffer per in-flight slot, all holding the same pattern (rank 1 checks it).
  std::vector<AlignedBuffer> sources;
  std::vector<std::unique_ptr<MemoryRegion>> source_mrs;
  for (int slot = 0; slot < window; ++slot) {
    Result<AlignedBuffer> buffer = AlignedBuffer::Create(o.size);
    if (!buffer.ok()) return Fail(self, StrCat("source buffer: ", buffer.status().ToString()));
    FillPattern(buffer->span(), kPatternSeed);
    sources.push_back(std::move(buffer).value());
  }
  Result<AlignedBuffer> control = AlignedBuffer::Create(kControlBytes);
  if (!control.ok()) return Fail(self, control.status().ToString());
  for (AlignedBuffer& source : sources) {
    auto mr = fabric.RegisterMemory(source.data(), source.size(), /*access=*/0);
    if (!mr.ok())
      return Fail(self, StrCat("registering a source buffer: ", mr.status().ToString()));
    source_mrs.push_back(std::move(mr).value());
  }
  auto control_mr = fabric.RegisterMemory(control->data(), control->size(), 0);
  if (!control_mr.ok()) return Fail(self, control_mr.status().ToString());

  Result<std::unique_ptr<QueuePair>> connected = ConnectTo(
      fabric, peer, Writer().Put(kWriterMagic).Put(o.size).Put(o.duration_seconds).Take());
  if (!connected.ok()) return Fail(self, ConnectError(self, peer, connected.status()));
  QueuePair& qp = **connected;
  TargetInfo target;
  if (!Decode(qp.peer_private_data(), &target)) {
    return Fail(self, StrCat(RankName(peer),
                             " sent no buffer in its connect data: is it ftbench write-bw?"));
  }
  if (target.length < o.size) {
    return Fail(self,
                StrCat(RankName(peer), " registered ", target.length, " bytes, fewer than --size ",
                       o.size, ": run both ranks with the same flags"));
  }

  verbs::SendRequest write;
  write.opcode = verbs::Opcode::kWrite;
  write.num_sge = 1;
  write.remote_addr = target.addr;
  write.rkey = target.rkey;
  write.signaled = true;

  std::vector<int> free_slots;
  for (int slot = window - 1; slot >= 0; --slot) free_slots.push_back(slot);
  Completion completions[internal::kPollBatch];
  const Nanos stall_limit = ToNanos(kWriteBwTimeoutSeconds);
  Measurement m;
  uint64_t posted = 0;
  int in_flight = 0;
  std::string failure;

  // The timed loop: post while the duration lasts and a slot is free, one progress step after
  // every post (and in place of a post while the window is full), until the last completion.
  // A full window is busy-polled, as the engine's worker does while it writes: sleeping in
  // Fabric::WaitForActivity(1 ms) there instead cost 1-2% of the bandwidth on soft-RoCE.
  const Nanos start = Now();
  const Nanos stop_posting = start + ToNanos(o.duration_seconds);
  Nanos last_progress = start;
  bool posting = true;
  while (posting || in_flight > 0) {
    if (posting && in_flight < window) {
      const int slot = free_slots.back();
      write.wr_id = static_cast<uint64_t>(slot);
      write.sge[0] = {reinterpret_cast<uint64_t>(sources[slot].data()),
                      static_cast<uint32_t>(o.size), source_mrs[slot]->lkey()};
      if (Status status = qp.PostSend({&write, 1}); !status.ok()) {
        failure = StrCat("posting WRITE ", posted + 1, " to ", RankName(peer),
                         " failed: ", status.ToString());
        break;
      }
      free_slots.pop_back();
      ++in_flight;
      ++posted;
    }
    const size_t n = fabric.PollCompletions(completions);
    for (size_t i = 0; i < n; ++i) {
      const Completion& c = completions[i];
      if (c.status != WcStatus::kSuccess) {
        failure = StrCat("a WRITE to ", RankName(peer), " completed with ",
                         verbs::WcStatusName(c.status), " after ", m.iterations,
                         " successful WRITEs (the peer died, or its buffer went away)");
        break;
      }
      free_slots.push_back(static_cast<int>(c.wr_id));
      --in_flight;
      ++m.iterations;
    }
    if (!failure.empty()) break;
    const Nanos now = Now();
    if (n > 0) {
      last_progress = now;
    } else if (in_flight == window || !posting) {
      // Nothing to do but wait for the device: look for a lost peer, bound the wait.
      if (std::string lost = LostPeer(fabric, peer); !lost.empty()) {
        failure = lost;
        break;
      }
      if (now - last_progress > stall_limit) {
        failure = StrCat("no WRITE to ", RankName(peer), " completed for ", kWriteBwTimeoutSeconds,
                         " s (", in_flight, " in flight)");
        break;
      }
    }
    if (posting && now >= stop_posting) posting = false;
  }
  m.seconds = SecondsBetween(start, Now());
  if (!failure.empty()) return Fail(self, failure);
  if (std::string lost = LostPeer(fabric, peer); !lost.empty()) return Fail(self, lost);

  // "done": a SEND behind every WRITE on the same QP, so rank 1 may exit once it arrives.
  std::vector<std::byte> done = Writer().Put(kDoneMagic).Put(m.iterations).Take();
  std::memcpy(control->data(), done.data(), done.size());
  verbs::SendRequest send;
  send.wr_id = kDoneWrId;
  send.opcode = verbs::Opcode::kSend;
  send.sge[0] = {reinterpret_cast<uint64_t>(control->data()), static_cast<uint32_t>(done.size()),
                 (*control_mr)->lkey()};
  send.num_sge = 1;
  if (Status status = qp.PostSend({&send, 1}); !status.ok()) {
    return Fail(
        self, StrCat("posting the done SEND to ", RankName(peer), " failed: ", status.ToString()));
  }
  const Nanos deadline = Now() + stall_limit;
  bool sent = false;
  while (!sent) {
    const size_t n = fabric.PollCompletions(completions);
    for (size_t i = 0; i < n; ++i) {
      if (completions[i].wr_id != kDoneWrId) continue;
      if (completions[i].status != WcStatus::kSuccess) {
        return Fail(self, StrCat("the done SEND to ", RankName(peer), " completed with ",
                                 verbs::WcStatusName(completions[i].status)));
      }
      sent = true;
    }
    if (sent) break;
    if (std::string lost = LostPeer(fabric, peer); !lost.empty()) return Fail(self, lost);
    if (Now() > deadline) {
      return Fail(self, StrCat(RankName(peer), " did not take the done message within ",
                               kWriteBwTimeoutSeconds, " s"));
    }
    fabric.WaitForActivity(std::chrono::milliseconds(10));
  }
  Print(o, window, fabric, m);
  return kExitOk;
}

// Rank 1: offers its buffer, waits for "done", checks the bytes. Prints nothing on success.
int RunTarget(const WriteBwOptions& o, Fabric& fabric) {
  constexpr uint32_t self = kTarget;
  constexpr uint32_t peer = kWriter;
  Result<AlignedBuffer> buffer = AlignedBuffer::Create(o.size);
  if (!buffer.ok()) return Fail(self, StrCat("target buffer: ", buffer.status().ToString()));
  Result<AlignedBuffer> control = AlignedBuffer::Create(kControlBytes);
  if (!control.ok()) return Fail(self, control.status().ToString());
  auto mr = fabric.RegisterMemory(buffer->data(), buffer->size(),
                                  verbs::kAccessLocalWrite | verbs::kAccessRemoteWrite);
  if (!mr.ok()) {
    return Fail(self, StrCat("registering the target buffer: ", mr.status().ToString()));
  }
  auto control_mr =
      fabric.RegisterMemory(control->data(), control->size(), verbs::kAccessLocalWrite);
  if (!control_mr.ok()) return Fail(self, control_mr.status().ToString());

  Result<std::unique_ptr<QueuePair>> connected =
      ConnectTo(fabric, peer,
                Writer()
                    .Put(kTargetMagic)
                    .Put(reinterpret_cast<uint64_t>(buffer->data()))
                    .Put(static_cast<uint64_t>(buffer->size()))
                    .Put((*mr)->rkey())
                    .Take());
  if (!connected.ok()) return Fail(self, ConnectError(self, peer, connected.status()));
  QueuePair& qp = **connected;
  WriterInfo writer;
  if (!Decode(qp.peer_private_data(), &writer)) {
    return Fail(self, StrCat(RankName(peer),
                             " sent no flags in its connect data: is it ftbench write-bw?"));
  }
  verbs::RecvRequest recv;
  recv.wr_id = kDoneWrId;
  recv.sge = {reinterpret_cast<uint64_t>(control->data()), static_cast<uint32_t>(control->size()),
              (*control_mr)->lkey()};
  if (Status status = qp.PostRecv({&recv, 1}); !status.ok()) {
    return Fail(self,
                StrCat("posting the receive for the done message failed: ", status.ToString()));
  }

  // Rank 0 writes for its duration, then drains and sends within its own bounds.
  const double wait_seconds = writer.duration_seconds + 3 * kWriteBwTimeoutSeconds;
  const Nanos deadline = Now() + ToNanos(wait_seconds);
  Completion completions[internal::kPollBatch];
  uint32_t received = 0;
  bool done = false;
  bool peer_gone = false;
  std::string lost;
  while (!done) {
    const size_t n = fabric.PollCompletions(completions);
    for (size_t i = 0; i < n; ++i) {
      if (completions[i].wr_id != kDoneWrId) continue;
      if (completions[i].status != WcStatus::kSuccess) {
        return Fail(self, StrCat(RankName(peer), " is lost: the receive for its done message ",
                                 "completed with ", verbs::WcStatusName(completions[i].status)));
      }
      received = completions[i].bytes;
      done = true;
    }
    if (done) break;
    // A disconnect may overtake the done message's completion: look once more, then fail.
    if (peer_gone) return Fail(self, lost + " before it sent its done message");
    lost = LostPeer(fabric, peer);
    if (!lost.empty()) {
      peer_gone = true;
      continue;
    }
    if (Now() > deadline) {
      return Fail(self, StrCat("no done message from ", RankName(peer), " within ",
                               FormatFixed(wait_seconds, 1), " s"));
    }
    fabric.WaitForActivity(std::chrono::milliseconds(100));
  }
  DoneInfo info;
  if (!Decode({reinterpret_cast<const std::byte*>(control->data()), received}, &info)) {
    return Fail(self,
                StrCat(RankName(peer), " sent a malformed done message (", received, " bytes)"));
  }
  if (info.iterations > 0) {
    // Every WRITE landed before the SEND behind it: the buffer holds rank 0's pattern.
    const uint64_t bytes = std::min<uint64_t>(writer.size, o.size);
    Result<AlignedBuffer> expected = AlignedBuffer::Create(bytes);
    if (!expected.ok()) return Fail(self, expected.status().ToString());
    FillPattern(expected->span(), kPatternSeed);
    const auto [at, _] = std::mismatch(expected->data(), expected->data() + bytes, buffer->data());
    if (at != expected->data() + bytes) {
      return Fail(self, StrCat("the bytes ", RankName(peer), " wrote differ from its pattern at",
                               " offset ", at - expected->data(), " of ", bytes));
    }
  }
  return kExitOk;
}

// Check for a duration: a number of seconds in (0, max].
CLI::Validator PositiveSeconds(double max) {
  const std::string range = StrCat("(0, ", max, "]");
  return CLI::Validator(
      [max, range](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value)) return "'" + input + "' is not a number";
        if (!std::isfinite(value) || value <= 0 || value > max) {
          return input + " is outside " + range + " seconds";
        }
        return "";
      },
      "in " + range);
}

}  // namespace

Command RegisterWriteBw(CLI::App& app) {
  auto options = std::make_shared<WriteBwOptions>();
  CLI::App* sub = app.add_subcommand(
      "write-bw",
      "RDMA WRITE bandwidth from rank 0 to rank 1 as the engine drives its WRITEs; run it as a "
      "job of 2 ranks (ftrun -n 2, srun, mpirun)");
  AddSizeOption(*sub, "--size", &options->size,
                "Bytes per WRITE (KiB, MiB: powers of 1024; kB, MB: of 1000), at most the device's "
                "message size");
  sub->add_option("--duration", options->duration_seconds, "Seconds of WRITEs (fractions ok)")
      ->check(PositiveSeconds(kWriteBwMaxDurationSeconds))
      ->capture_default_str();
  sub->add_option("--pipeline-depth", options->pipeline_depth,
                  "The engine's pipeline depth: WRITEs in flight on the QP")
      ->check(IntRange(1, kMaxPipelineDepth))
      ->capture_default_str();
  AddDeviceOptions(*sub, &options->device);
  sub->add_flag("--json", options->json,
                "Print one JSON object (size, iterations, seconds, write_gbps) instead of the "
                "table");
  return {sub, [options] { return RunWriteBw(*options); }};
}

int RunWriteBw(const WriteBwOptions& o) {
  // The CLI validators cover most of these; RunWriteBw may also be called directly.
  if (o.size == 0) return Usage("--size 0: a WRITE needs at least one byte");
  if (o.size > UINT32_MAX) {
    return Usage(StrCat("--size ", o.size, " exceeds the largest WRITE (", UINT32_MAX, " bytes)"));
  }
  if (!std::isfinite(o.duration_seconds) || o.duration_seconds <= 0 ||
      o.duration_seconds > kWriteBwMaxDurationSeconds) {
    return Usage(StrCat("--duration ", o.duration_seconds, " is outside (0, ",
                        kWriteBwMaxDurationSeconds, "] seconds"));
  }
  if (o.pipeline_depth < 1 || o.pipeline_depth > kMaxPipelineDepth) {
    return Usage(
        StrCat("--pipeline-depth ", o.pipeline_depth, " is outside [1, ", kMaxPipelineDepth, "]"));
  }

  Result<Bootstrap> bootstrap = BootstrapFromEnvironment();
  if (!bootstrap.ok()) return Usage(StrCat(kTwoRanks, ": ", bootstrap.status().message()));
  if (bootstrap->spare) {
    return Usage(StrCat(kTwoRanks, " and no spares; this process is spare ", bootstrap->rank,
                        " (FT_SPARE=1)"));
  }
  if (bootstrap->size != 2) {
    return Usage(
        StrCat(kTwoRanks, "; this job has ", bootstrap->size, " according to ", bootstrap->source));
  }
  const uint32_t rank = bootstrap->rank;
  Result<ProcessFabric> process = CreateProcessFabric(*bootstrap, RdmaOptionsOf(o.device));
  if (!process.ok()) {
    std::cerr << StrCat("ftbench write-bw: rank ", rank, ": ", process.status().ToString(), "\n");
    return process.status().code() == StatusCode::kInvalidArgument ? kExitUsage : kExitFailure;
  }
  Fabric& fabric = *process->fabric;
  const verbs::Limits& limits = fabric.limits();
  if (o.size > limits.max_message_bytes) {
    return Usage(StrCat("--size ", o.size, " exceeds the largest message of the ", fabric.name(),
                        " fabric (", limits.max_message_bytes, " bytes)"));
  }
  const int window = internal::WritesInFlightPerQp(o.pipeline_depth);
  const int most = std::min(limits.max_send_wr, limits.cq_depth - 1);
  if (window > most) {
    return Usage(StrCat("--pipeline-depth ", o.pipeline_depth, " puts ", window,
                        " WRITEs in flight; the queue pair holds at most ", most));
  }
  return rank == kWriter ? RunWriter(o, fabric, window) : RunTarget(o, fabric);
}

}  // namespace ft::ftbench
