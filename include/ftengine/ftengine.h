/* ftengine C API: the same calls as ft::Engine (include/ftengine/engine.h) with error codes.
 *
 * Usable from C and from Fortran through bind(C): every argument is a pointer, an integer of a
 * fixed width or a struct of them; no call throws or aborts on bad input. Each failing call
 * returns a non-zero ft_code and records a message that names the bad value, readable with
 * ft_last_error() on the same thread until its next ftengine call.
 *
 * Thread-safety and memory contracts are those of ft::Engine: notably, between
 * ft_checkpoint_async() and the completion of its handle the application must not write
 * protected memory.
 */
#ifndef FTENGINE_FTENGINE_H_
#define FTENGINE_FTENGINE_H_

#include <stddef.h>
#include <stdint.h>

#include "ftengine/export.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Same values as ft::StatusCode. */
typedef enum ft_code {
  FT_OK = 0,
  FT_INVALID_ARGUMENT = 1,
  FT_NOT_FOUND = 2,
  FT_FAILED_PRECONDITION = 3,
  FT_RESOURCE_EXHAUSTED = 4,
  FT_UNAVAILABLE = 5,
  FT_DEADLINE_EXCEEDED = 6,
  FT_ABORTED = 7,
  FT_DATA_LOSS = 8,
  FT_INTERNAL = 9
} ft_code;

typedef struct ft_options {
  int32_t k;
  int32_t m;
  uint64_t cell_bytes;
  uint64_t store_capacity; /* 0: sized by the coordinator from the placement */
  uint32_t failure_domain; /* UINT32_MAX: every node its own domain */
  int32_t pipeline_depth;
  int32_t keep_local_copy; /* 0 or 1 */
  int64_t timeout_ms;
  int64_t heartbeat_interval_ms; /* failure detection: a heartbeat each interval (default 10) */
  int32_t heartbeat_misses;      /* intervals without one before a peer is lost (default 3) */
  uint32_t spare_priority;    /* an idle spare's: lower goes first; UINT32_MAX (default): unset */
  int64_t startup_timeout_ms; /* the job's start: every rank connected within it (default 30000) */
} ft_options;

typedef struct ft_metrics {
  uint64_t committed_version;
  uint64_t checkpoints_committed;
  uint64_t checkpoints_failed;
  uint64_t image_bytes;
  uint64_t bytes_written;
  uint64_t bounce_bytes;
  uint64_t store_bytes;
  double last_total_seconds;
} ft_metrics;

/* What ft_recover did (ft::RecoveryReport). `lost` holds the first min(lost_count, 16) lost
 * ranks. Times in seconds, measured on this node. */
typedef struct ft_recovery_report {
  uint64_t version; /* the version every member's protected regions hold now (0: none yet) */
  uint64_t epoch;   /* the view the job runs in from now on */
  uint32_t lost_count;
  uint32_t lost[16];
  int32_t replacement;     /* 1: this process replaced a lost rank (its image was rebuilt) */
  int32_t from_local_copy; /* 1: rolled back from the local copy */
  int32_t store_prepared;  /* 1: a spare's store memory was zeroed while it waited */
  uint64_t restored_bytes;
  double wait_seconds;
  double restore_seconds;
  double reprotect_seconds;
  double total_seconds;
  double reduced_redundancy_seconds;
} ft_recovery_report;

typedef struct ft_engine ft_engine;                       /* one node's engine */
typedef struct ft_checkpoint_handle ft_checkpoint_handle; /* an asynchronous checkpoint */
typedef struct ft_loopback_world ft_loopback_world;       /* N engines in this process */

/* "InvalidArgument", "DataLoss", ... for a code. Never NULL. */
FT_EXPORT const char* ft_strerror(int code);
/* The message of this thread's last failed call ("" when none). Never NULL. */
FT_EXPORT const char* ft_last_error(void);

/* Fills *options with the defaults (k = 4, m = 2, 1 MiB cells, ...). */
FT_EXPORT void ft_options_init(ft_options* options);

/* A world of `nodes` engines over the in-process loopback fabric (rank 0 coordinates). */
FT_EXPORT int ft_loopback_world_create(uint32_t nodes, const ft_options* options,
                                       ft_loopback_world** world);
/* Destroys the world and its engines. NULL is ignored. */
FT_EXPORT void ft_loopback_world_destroy(ft_loopback_world* world);
/* The engine of `rank`, owned by the world. */
FT_EXPORT int ft_loopback_world_engine(ft_loopback_world* world, uint32_t rank, ft_engine** engine);

/* What one node of a loopback world runs: fn(rank, engine, arg), returning FT_OK or an ft_code. */
typedef int (*ft_node_fn)(uint32_t rank, ft_engine* engine, void* arg);
/* Runs fn(rank, engine of rank, arg) for every rank of the world at once, each on its own thread,
 * and returns when all have returned. A checkpoint is collective, so a world's nodes must call
 * ft_checkpoint together: from one thread, a single node's ft_checkpoint waits for the others
 * until the timeout. This gives C what ft::LoopbackWorld::Run gives C++.
 *
 * Returns FT_OK when every fn returned FT_OK. Otherwise returns what fn returned for the lowest
 * rank that failed, and ft_last_error() on the calling thread reads "<code name>: rank R: <the
 * message of that rank's last failed ftengine call>" (or says that fn returned the code itself).
 * FT_INVALID_ARGUMENT, running nothing, for a NULL world or fn.
 *
 * `arg` is passed as is to every thread: what fn writes through it must be per rank (or
 * synchronised). fn must not throw or longjmp out, and must not destroy the world. One
 * ft_loopback_world_run per world at a time. */
FT_EXPORT int ft_loopback_world_run(ft_loopback_world* world, ft_node_fn fn, void* arg);

/* This process's engine in a job launched by ftrun, srun or mpirun, over rdma: rank, world size
 * and the coordinator's address come from the environment (FT_RANK/FT_WORLD_SIZE or the
 * launcher's variables, FT_COORDINATOR=host:port). Collective: every process of the job calls
 * it. Release it with ft_engine_destroy. */
FT_EXPORT int ft_engine_create_from_environment(const ft_options* options, ft_engine** engine);
/* Destroys an engine made by ft_engine_create_from_environment. NULL, and a loopback world's
 * engines (the world owns them), are ignored. */
FT_EXPORT void ft_engine_destroy(ft_engine* engine);
/* This engine's rank and the world's size. */
FT_EXPORT int ft_engine_world(const ft_engine* engine, uint32_t* rank, uint32_t* size);

FT_EXPORT int ft_protect(ft_engine* engine, uint64_t id, void* ptr, uint64_t bytes);
FT_EXPORT int ft_unprotect(ft_engine* engine, uint64_t id);
/* Collective. On success *version is the committed version. */
FT_EXPORT int ft_checkpoint(ft_engine* engine, uint64_t* version);
/* Starts a checkpoint; *checkpoint must be waited for and freed with ft_checkpoint_wait. */
FT_EXPORT int ft_checkpoint_async(ft_engine* engine, ft_checkpoint_handle** checkpoint);
/* 1 when ft_checkpoint_wait would not block, else 0. */
FT_EXPORT int ft_checkpoint_ready(const ft_checkpoint_handle* checkpoint);
/* Waits, stores the committed version, and frees the handle (even when the checkpoint failed). */
FT_EXPORT int ft_checkpoint_wait(ft_checkpoint_handle* checkpoint, uint64_t* version);
/* Reads this node's last committed image back into out[0, bytes), treating the fragments of
 * skip_columns[0, skip_count) as lost. */
FT_EXPORT int ft_read_committed(ft_engine* engine, void* out, uint64_t bytes,
                                const int32_t* skip_columns, int32_t skip_count);
FT_EXPORT int ft_metrics_get(const ft_engine* engine, ft_metrics* metrics);
/* 1 once this engine knows of a lost node (or that it was itself removed), else 0; 0 for NULL.
 * Cheap: for polling inside a compute loop. From then on ft_checkpoint fails (FT_UNAVAILABLE
 * naming the lost nodes; FT_ABORTED on a removed node). */
FT_EXPORT int ft_failure_detected(const ft_engine* engine);
/* Collective after a loss (the survivors and the processes replacing the lost ranks): every
 * member's protected regions get the newest version all of them can restore, and full
 * redundancy is back when it returns (ft::Engine::Recover). `report` may be NULL. FT_DATA_LOSS
 * naming the owners when more than m fragments of an image are gone; FT_FAILED_PRECONDITION
 * naming the rank when a lost rank gets no replacement in time. */
FT_EXPORT int ft_recover(ft_engine* engine, ft_recovery_report* report);
/* 1 for a process started to replace a lost rank (ftrun --respawn) until its first successful
 * ft_recover: it protects regions of the rank's committed sizes and calls ft_recover first;
 * 0 otherwise and for NULL. */
FT_EXPORT int ft_engine_is_spare(const ft_engine* engine);
/* A spare waits until the coordinator assigns it a lost rank (at once for a process started for
 * a given rank) and stores it in *rank; the engine is that rank's from then on.
 * FT_DEADLINE_EXCEEDED after timeout_ms; FT_UNAVAILABLE when the coordinator was lost or the job
 * ended; FT_FAILED_PRECONDITION on an engine that is not a spare. */
FT_EXPORT int ft_wait_for_assignment(ft_engine* engine, int64_t timeout_ms, uint32_t* rank);
/* The region layout of this rank's committed image (ft::Engine::CommittedLayout): on a spare,
 * once ft_wait_for_assignment returned, the lost rank's, so that it can protect regions of the
 * same ids and sizes before ft_recover. *count receives the number of regions (0: nothing
 * committed); ids[i] and sizes[i] the regions in id order. With capacity 0 and ids and sizes
 * NULL the call only counts; otherwise FT_RESOURCE_EXHAUSTED, writing nothing, when the regions
 * are more than capacity (a node protects at most 4096). */
FT_EXPORT int ft_committed_layout(const ft_engine* engine, uint64_t* ids, uint64_t* sizes,
                                  uint32_t capacity, uint32_t* count);

#ifdef __cplusplus
}
#endif

#endif /* FTENGINE_FTENGINE_H_ */
