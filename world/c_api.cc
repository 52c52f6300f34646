// The C API over ft::Engine and ft::LoopbackWorld. Nothing throws across it: allocation failures
// become FT_RESOURCE_EXHAUSTED, anything else unexpected FT_INTERNAL.
#include "ftengine/ftengine.h"

#include <chrono>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "ftengine/engine.h"
#include "ftengine/loopback_world.h"

struct ft_engine {
  ft::Engine* engine;
  std::unique_ptr<ft::Engine> owned;  // set for ft_engine_create_from_environment's engines
};
struct ft_checkpoint_handle {
  ft::CheckpointHandle handle;
};
struct ft_loopback_world {
  std::unique_ptr<ft::LoopbackWorld> world;
  std::vector<ft_engine> engines;
};

namespace {

// This thread's last failure: the Status (ft_loopback_world_run passes a rank's on to the
// caller's thread) and its text (what ft_last_error returns; it lives until the next call).
thread_local ft::Status last_status;
thread_local std::string last_error;

int Fail(const ft::Status& status) {
  last_status = status;
  last_error = status.ToString();
  return static_cast<int>(status.code());
}

int Report(const ft::Status& status) {
  if (status.ok()) {
    last_status = ft::Status();
    last_error.clear();
    return FT_OK;
  }
  return Fail(status);
}

int NullArgument(const char* call, const char* name) {
  return Fail(ft::Status::InvalidArgument(call, ": ", name, " is NULL"));
}

// Runs `body`, turning any exception into a code (the C API must not throw).
template <typename Body>
int Guard(Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(ft::Status::ResourceExhausted("out of memory"));
  } catch (const std::exception& e) {
    return Fail(ft::Status::Internal("unexpected exception: ", e.what()));
  } catch (...) {
    return Fail(ft::Status::Internal("unexpected exception"));
  }
}

ft::EngineOptions ToEngineOptions(const ft_options& o) {
  ft::EngineOptions options;
  options.k = o.k;
  options.m = o.m;
  options.cell_bytes = o.cell_bytes;
  options.store_capacity = o.store_capacity;
  options.failure_domain = o.failure_domain;
  options.pipeline_depth = o.pipeline_depth;
  options.keep_local_copy = o.keep_local_copy != 0;
  options.timeout = std::chrono::milliseconds(o.timeout_ms);
  options.heartbeat_interval = std::chrono::milliseconds(o.heartbeat_interval_ms);
  options.heartbeat_misses = o.heartbeat_misses;
  options.spare_priority = o.spare_priority;
  options.startup_timeout = std::chrono::milliseconds(o.startup_timeout_ms);
  return options;
}

}  // namespace

extern "C" {

const char* ft_strerror(int code) {
  if (code < 0 || code > FT_INTERNAL) return "Unknown";
  return ft::StatusCodeName(static_cast<ft::StatusCode>(code));
}

const char* ft_last_error(void) { return last_error.c_str(); }

void ft_options_init(ft_options* options) {
  if (options == nullptr) return;
  const ft::EngineOptions defaults;
  options->k = defaults.k;
  options->m = defaults.m;
  options->cell_bytes = defaults.cell_bytes;
  options->store_capacity = defaults.store_capacity;
  options->failure_domain = defaults.failure_domain;
  options->pipeline_depth = defaults.pipeline_depth;
  options->keep_local_copy = defaults.keep_local_copy ? 1 : 0;
  options->timeout_ms = defaults.timeout.count();
  options->heartbeat_interval_ms = defaults.heartbeat_interval.count();
  options->heartbeat_misses = defaults.heartbeat_misses;
  options->spare_priority = defaults.spare_priority;
  options->startup_timeout_ms = defaults.startup_timeout.count();
}

int ft_loopback_world_create(uint32_t nodes, const ft_options* options, ft_loopback_world** world) {
  if (options == nullptr) return NullArgument("ft_loopback_world_create", "options");
  if (world == nullptr) return NullArgument("ft_loopback_world_create", "world");
  return Guard([&] {
    ft::LoopbackWorldOptions world_options;
    world_options.nodes = nodes;
    world_options.engine = ToEngineOptions(*options);
    auto created = ft::LoopbackWorld::Create(world_options);
    if (!created.ok()) return Fail(created.status());
    auto result = std::make_unique<ft_loopback_world>();
    result->world = std::move(created).value();
    for (uint32_t rank = 0; rank < nodes; ++rank) {
      result->engines.push_back(ft_engine{&result->world->engine(rank), nullptr});
    }
    *world = result.release();  // ownership passes to the caller: ft_loopback_world_destroy
    return Report(ft::Status());
  });
}

void ft_loopback_world_destroy(ft_loopback_world* world) {
  std::unique_ptr<ft_loopback_world> owned(world);
}

int ft_loopback_world_engine(ft_loopback_world* world, uint32_t rank, ft_engine** engine) {
  if (world == nullptr) return NullArgument("ft_loopback_world_engine", "world");
  if (engine == nullptr) return NullArgument("ft_loopback_world_engine", "engine");
  if (rank >= world->engines.size()) {
    return Fail(ft::Status::InvalidArgument("rank = ", rank, " is outside the world of ",
                                            world->engines.size()));
  }
  *engine = &world->engines[rank];
  return Report(ft::Status());
}

int ft_loopback_world_run(ft_loopback_world* world, ft_node_fn fn, void* arg) {
  if (world == nullptr) return NullArgument("ft_loopback_world_run", "world");
  if (fn == nullptr) return NullArgument("ft_loopback_world_run", "fn");
  return Guard([&] {
    const uint32_t size = world->world->size();
    std::vector<int> codes(size, FT_OK);
    std::vector<ft::Status> errors(size);
    // Each body runs on its own thread, so what fn's failing calls recorded is that thread's
    // last_status: it is taken there, before the thread ends, and reported here.
    ft::Status joined = world->world->Run([&](uint32_t rank, ft::Engine&) {
      codes[rank] = fn(rank, &world->engines[rank], arg);
      if (codes[rank] != FT_OK) errors[rank] = last_status;
      return ft::Status();
    });
    if (!joined.ok()) return Fail(joined);
    for (uint32_t rank = 0; rank < size; ++rank) {
      const int code = codes[rank];
      if (code == FT_OK) continue;
      if (!errors[rank].ok() && static_cast<int>(errors[rank].code()) == code) {
        Fail(errors[rank].WithContext(ft::StrCat("rank ", rank)));
      } else {
        // fn failed on its own (no failed ftengine call of this code on its thread).
        const ft::StatusCode as_status = code > FT_OK && code <= FT_INTERNAL
                                             ? static_cast<ft::StatusCode>(code)
                                             : ft::StatusCode::kInternal;
        Fail(ft::Status(as_status, ft::StrCat("rank ", rank, ": the node function returned ", code,
                                              " (", ft_strerror(code), ")")));
      }
      return code;
    }
    return Report(ft::Status());
  });
}

int ft_engine_create_from_environment(const ft_options* options, ft_engine** engine) {
  if (options == nullptr) return NullArgument("ft_engine_create_from_environment", "options");
  if (engine == nullptr) return NullArgument("ft_engine_create_from_environment", "engine");
  return Guard([&] {
    auto created = ft::Engine::CreateFromEnvironment(ToEngineOptions(*options));
    if (!created.ok()) return Fail(created.status());
    auto result = std::make_unique<ft_engine>();
    result->owned = std::move(created).value();
    result->engine = result->owned.get();
    *engine = result.release();  // ownership passes to the caller: ft_engine_destroy
    return Report(ft::Status());
  });
}

void ft_engine_destroy(ft_engine* engine) {
  if (engine == nullptr || engine->owned == nullptr) return;  // a world's engine: not ours
  std::unique_ptr<ft_engine> owned(engine);
}

int ft_failure_detected(const ft_engine* engine) {
  return engine != nullptr && engine->engine->FailureDetected() ? 1 : 0;
}

int ft_recover(ft_engine* engine, ft_recovery_report* report) {
  if (engine == nullptr) return NullArgument("ft_recover", "engine");
  return Guard([&] {
    ft::Result<ft::RecoveryReport> recovered = engine->engine->Recover();
    if (!recovered.ok()) return Report(recovered.status());
    if (report != nullptr) {
      const ft::RecoveryReport& r = *recovered;
      *report = ft_recovery_report{};
      report->version = r.version;
      report->epoch = r.epoch;
      report->lost_count = static_cast<uint32_t>(r.lost.size());
      const size_t shown = std::min(r.lost.size(), std::size(report->lost));
      for (size_t i = 0; i < shown; ++i) report->lost[i] = r.lost[i];
      report->replacement = r.replacement ? 1 : 0;
      report->from_local_copy = r.from_local_copy ? 1 : 0;
      report->store_prepared = r.store_prepared ? 1 : 0;
      report->restored_bytes = r.restored_bytes;
      report->wait_seconds = r.wait_seconds;
      report->restore_seconds = r.restore_seconds;
      report->reprotect_seconds = r.reprotect_seconds;
      report->total_seconds = r.total_seconds;
      report->reduced_redundancy_seconds = r.reduced_redundancy_seconds;
    }
    return Report(ft::Status());
  });
}

int ft_engine_is_spare(const ft_engine* engine) {
  return engine != nullptr && engine->engine->IsSpare() ? 1 : 0;
}

int ft_wait_for_assignment(ft_engine* engine, int64_t timeout_ms, uint32_t* rank) {
  if (engine == nullptr) return NullArgument("ft_wait_for_assignment", "engine");
  if (rank == nullptr) return NullArgument("ft_wait_for_assignment", "rank");
  if (timeout_ms < 0) {
    return Fail(ft::Status::InvalidArgument("ft_wait_for_assignment: timeout_ms = ", timeout_ms,
                                            " is negative"));
  }
  return Guard([&] {
    ft::Result<ft::Assignment> assigned =
        engine->engine->WaitForAssignment(std::chrono::milliseconds(timeout_ms));
    if (!assigned.ok()) return Report(assigned.status());
    *rank = assigned->rank;
    return Report(ft::Status());
  });
}

int ft_committed_layout(const ft_engine* engine, uint64_t* ids, uint64_t* sizes, uint32_t capacity,
                        uint32_t* count) {
  if (engine == nullptr) return NullArgument("ft_committed_layout", "engine");
  if (count == nullptr) return NullArgument("ft_committed_layout", "count");
  const bool query = capacity == 0 && ids == nullptr && sizes == nullptr;
  if (!query && ids == nullptr) return NullArgument("ft_committed_layout", "ids");
  if (!query && sizes == nullptr) return NullArgument("ft_committed_layout", "sizes");
  return Guard([&] {
    const std::vector<ft::ProtectedRegion> layout = engine->engine->CommittedLayout();
    *count = static_cast<uint32_t>(layout.size());
    if (query) return Report(ft::Status());
    if (layout.size() > capacity) {
      return Report(ft::Status::ResourceExhausted("ft_committed_layout: the layout has ",
                                                  layout.size(),
                                                  " regions; capacity = ", capacity));
    }
    for (size_t i = 0; i < layout.size(); ++i) {
      ids[i] = layout[i].id;
      sizes[i] = layout[i].bytes;
    }
    return Report(ft::Status());
  });
}

int ft_engine_world(const ft_engine* engine, uint32_t* rank, uint32_t* size) {
  if (engine == nullptr) return NullArgument("ft_engine_world", "engine");
  if (rank == nullptr) return NullArgument("ft_engine_world", "rank");
  if (size == nullptr) return NullArgument("ft_engine_world", "size");
  *rank = engine->engine->world().rank;
  *size = engine->engine->world().size;
  return Report(ft::Status());
}

int ft_protect(ft_engine* engine, uint64_t id, void* ptr, uint64_t bytes) {
  if (engine == nullptr) return NullArgument("ft_protect", "engine");
  return Guard([&] { return Report(engine->engine->Protect(id, ptr, bytes)); });
}

int ft_unprotect(ft_engine* engine, uint64_t id) {
  if (engine == nullptr) return NullArgument("ft_unprotect", "engine");
  return Guard([&] { return Report(engine->engine->Unprotect(id)); });
}

int ft_checkpoint(ft_engine* engine, uint64_t* version) {
  if (engine == nullptr) return NullArgument("ft_checkpoint", "engine");
  return Guard([&] {
    ft::Result<uint64_t> committed = engine->engine->Checkpoint();
    if (!committed.ok()) return Fail(committed.status());
    if (version != nullptr) *version = *committed;
    return Report(ft::Status());
  });
}

int ft_checkpoint_async(ft_engine* engine, ft_checkpoint_handle** checkpoint) {
  if (engine == nullptr) return NullArgument("ft_checkpoint_async", "engine");
  if (checkpoint == nullptr) return NullArgument("ft_checkpoint_async", "checkpoint");
  return Guard([&] {
    ft::Result<ft::CheckpointHandle> handle = engine->engine->CheckpointAsync();
    if (!handle.ok()) return Fail(handle.status());
    auto result = std::make_unique<ft_checkpoint_handle>();
    result->handle = std::move(handle).value();
    *checkpoint = result.release();  // freed by ft_checkpoint_wait
    return Report(ft::Status());
  });
}

int ft_checkpoint_ready(const ft_checkpoint_handle* checkpoint) {
  return checkpoint != nullptr && checkpoint->handle.Ready() ? 1 : 0;
}

int ft_checkpoint_wait(ft_checkpoint_handle* checkpoint, uint64_t* version) {
  if (checkpoint == nullptr) return NullArgument("ft_checkpoint_wait", "checkpoint");
  std::unique_ptr<ft_checkpoint_handle> owned(checkpoint);
  return Guard([&] {
    ft::Result<uint64_t> committed = owned->handle.Wait();
    if (!committed.ok()) return Fail(committed.status());
    if (version != nullptr) *version = *committed;
    return Report(ft::Status());
  });
}

int ft_read_committed(ft_engine* engine, void* out, uint64_t bytes, const int32_t* skip_columns,
                      int32_t skip_count) {
  if (engine == nullptr) return NullArgument("ft_read_committed", "engine");
  if (out == nullptr) return NullArgument("ft_read_committed", "out");
  if (skip_count < 0 || (skip_count > 0 && skip_columns == nullptr)) {
    return Fail(ft::Status::InvalidArgument(
        "ft_read_committed: skip_count = ", skip_count,
        " with skip_columns = ", static_cast<const void*>(skip_columns)));
  }
  return Guard([&] {
    std::vector<int> skip(skip_columns, skip_columns + skip_count);
    return Report(engine->engine->ReadCommitted({static_cast<std::byte*>(out), bytes}, skip));
  });
}

int ft_metrics_get(const ft_engine* engine, ft_metrics* metrics) {
  if (engine == nullptr) return NullArgument("ft_metrics_get", "engine");
  if (metrics == nullptr) return NullArgument("ft_metrics_get", "metrics");
  const ft::EngineMetrics m = engine->engine->Metrics();
  metrics->committed_version = m.committed_version;
  metrics->checkpoints_committed = m.checkpoints_committed;
  metrics->checkpoints_failed = m.checkpoints_failed;
  metrics->image_bytes = m.image_bytes;
  metrics->bytes_written = m.bytes_written;
  metrics->bounce_bytes = m.bounce_bytes;
  metrics->store_bytes = m.store_bytes;
  metrics->last_total_seconds = m.last_total_seconds;
  return Report(ft::Status());
}

}  // extern "C"
