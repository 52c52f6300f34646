/* Proves the C API from C: a 4-node loopback world, two checkpoints from the program's own
 * threads and a third through ft_loopback_world_run, read-back with a lost fragment, failing
 * node functions, and bad input. Prints "N passed, M failed" and exits non-zero on any failure. */
/* setenv, unsetenv */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftengine/ftengine.h"

enum { kNodes = 4, kBytes = 10007 };

static int passed = 0;
static int failed = 0;

#define EXPECT(condition)                                                                     \
  do {                                                                                        \
    if (condition) {                                                                          \
      ++passed;                                                                               \
    } else {                                                                                  \
      ++failed;                                                                               \
      fprintf(stderr, "%s:%d: FAILED: %s (last error: %s)\n", __FILE__, __LINE__, #condition, \
              ft_last_error());                                                               \
    }                                                                                         \
  } while (0)

struct NodeRun {
  ft_engine* engine;
  uint32_t rank;
  int ok;
};

static void Fill(unsigned char* bytes, uint32_t rank, uint64_t version) {
  for (size_t i = 0; i < kBytes; ++i)
    bytes[i] = (unsigned char)(i * 31u + rank * 7u + version * 13u);
}

static void* RunNode(void* argument) {
  struct NodeRun* run = (struct NodeRun*)argument;
  unsigned char* state = malloc(kBytes);
  unsigned char* back = malloc(kBytes);
  run->ok = 0;
  if (state == NULL || back == NULL) goto out;
  if (ft_protect(run->engine, 7, state, kBytes) != FT_OK) goto out;
  for (uint64_t v = 1; v <= 2; ++v) {
    Fill(state, run->rank, v);
    uint64_t version = 0;
    if (v == 1) {
      if (ft_checkpoint(run->engine, &version) != FT_OK || version != v) goto out;
    } else {
      ft_checkpoint_handle* handle = NULL;
      if (ft_checkpoint_async(run->engine, &handle) != FT_OK) goto out;
      if (ft_checkpoint_wait(handle, &version) != FT_OK || version != v) goto out;
    }
  }
  int32_t lost = 0;
  if (ft_read_committed(run->engine, back, kBytes, &lost, 1) != FT_OK) goto out;
  run->ok = memcmp(back, state, kBytes) == 0;
out:
  free(state);
  free(back);
  return NULL;
}

/* Node functions for ft_loopback_world_run. */
struct RunRecord {
  int ran[kNodes];
  uint32_t engine_rank[kNodes];
  unsigned char state[kNodes][kBytes];
};

static int RecordAndCheckpoint(uint32_t rank, ft_engine* engine, void* argument) {
  struct RunRecord* record = (struct RunRecord*)argument;
  record->ran[rank] += 1;
  uint32_t size = 0;
  int rc = ft_engine_world(engine, &record->engine_rank[rank], &size);
  if (rc != FT_OK) return rc;
  /* RunNode's region is freed: protect this run's own. */
  rc = ft_unprotect(engine, 7);
  if (rc != FT_OK) return rc;
  Fill(record->state[rank], rank, 3);
  rc = ft_protect(engine, 7, record->state[rank], kBytes);
  if (rc != FT_OK) return rc;
  uint64_t version = 0;
  rc = ft_checkpoint(engine, &version);
  if (rc == FT_OK && version != 3) return FT_INTERNAL;
  return rc;
}

/* Rank 2 fails an ftengine call and returns its code; rank 3 fails on its own. */
static int FailOnRanksTwoAndThree(uint32_t rank, ft_engine* engine, void* argument) {
  (void)argument;
  if (rank == 2) return ft_unprotect(engine, 99); /* FT_NOT_FOUND */
  if (rank == 3) return FT_ABORTED;
  return FT_OK;
}

static int FailOnRankOneWithItsOwnCode(uint32_t rank, ft_engine* engine, void* argument) {
  (void)engine;
  (void)argument;
  return rank == 1 ? 42 : FT_OK;
}

int main(void) {
  ft_options options;
  ft_options_init(&options);
  options.k = 2;
  options.m = 1;
  options.cell_bytes = 4096;
  options.timeout_ms = 30000;
  EXPECT(options.heartbeat_interval_ms == 10);
  EXPECT(options.heartbeat_misses == 3);
  EXPECT(options.spare_priority == UINT32_MAX);
  EXPECT(options.startup_timeout_ms == 30000);

  ft_loopback_world* world = NULL;
  EXPECT(ft_loopback_world_create(1, &options, &world) == FT_INVALID_ARGUMENT);
  EXPECT(strlen(ft_last_error()) > 0);
  EXPECT(ft_loopback_world_create(kNodes, NULL, &world) == FT_INVALID_ARGUMENT);
  EXPECT(ft_loopback_world_create(kNodes, &options, &world) == FT_OK);
  if (world == NULL) {
    printf("%d passed, %d failed\n", passed, failed + 1);
    return 1;
  }

  ft_engine* engine = NULL;
  EXPECT(ft_loopback_world_engine(world, kNodes, &engine) == FT_INVALID_ARGUMENT);
  EXPECT(ft_loopback_world_engine(world, 0, &engine) == FT_OK);
  EXPECT(ft_protect(engine, 1, NULL, 10) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "null") != NULL);
  EXPECT(ft_protect(NULL, 1, &options, 10) == FT_INVALID_ARGUMENT);
  EXPECT(ft_unprotect(engine, 99) == FT_NOT_FOUND);
  EXPECT(ft_checkpoint(engine, NULL) == FT_FAILED_PRECONDITION); /* nothing protected */
  EXPECT(ft_read_committed(engine, &options, sizeof(options), NULL, 0) == FT_NOT_FOUND);
  uint32_t rank0 = 99, size = 0;
  EXPECT(ft_engine_world(engine, &rank0, &size) == FT_OK);
  EXPECT(rank0 == 0 && size == kNodes);
  EXPECT(ft_engine_world(engine, NULL, &size) == FT_INVALID_ARGUMENT);
  ft_engine_destroy(engine); /* a world's engine: ignored, the world owns it */
  ft_engine_destroy(NULL);

  /* One process per node, with no launcher's variables: an error naming them, nothing made. */
  unsetenv("FT_RANK");
  unsetenv("SLURM_PROCID");
  unsetenv("PMI_RANK");
  unsetenv("OMPI_COMM_WORLD_RANK");
  unsetenv("FT_WORLD_SIZE");
  unsetenv("SLURM_NTASKS");
  unsetenv("PMI_SIZE");
  unsetenv("OMPI_COMM_WORLD_SIZE");
  ft_engine* process_engine = NULL;
  EXPECT(ft_engine_create_from_environment(&options, &process_engine) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "FT_RANK") != NULL);
  EXPECT(process_engine == NULL);
  EXPECT(ft_engine_create_from_environment(NULL, &process_engine) == FT_INVALID_ARGUMENT);
  setenv("FT_RANK", "1", 1);
  setenv("FT_WORLD_SIZE", "x", 1);
  EXPECT(ft_engine_create_from_environment(&options, &process_engine) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "FT_WORLD_SIZE") != NULL);
  unsetenv("FT_RANK");
  unsetenv("FT_WORLD_SIZE");

  EXPECT(strcmp(ft_strerror(FT_DATA_LOSS), "DataLoss") == 0);
  EXPECT(strcmp(ft_strerror(1234), "Unknown") == 0);

  pthread_t threads[kNodes];
  struct NodeRun runs[kNodes];
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    runs[rank].rank = rank;
    EXPECT(ft_loopback_world_engine(world, rank, &runs[rank].engine) == FT_OK);
    EXPECT(pthread_create(&threads[rank], NULL, RunNode, &runs[rank]) == 0);
  }
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    pthread_join(threads[rank], NULL);
    EXPECT(runs[rank].ok == 1);
  }
  ft_metrics metrics;
  EXPECT(ft_metrics_get(runs[0].engine, &metrics) == FT_OK);
  EXPECT(metrics.committed_version == 2);
  EXPECT(metrics.image_bytes == kBytes);
  /* No node was lost: no failure to report (and none for a null engine). */
  EXPECT(ft_failure_detected(runs[0].engine) == 0);
  EXPECT(ft_failure_detected(NULL) == 0);
  /* Not a replacement process; recovery refuses a null engine, naming it. */
  EXPECT(ft_engine_is_spare(runs[0].engine) == 0);
  EXPECT(ft_engine_is_spare(NULL) == 0);
  EXPECT(ft_recover(NULL, NULL) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "engine") != NULL);
  uint32_t assigned = 99;
  EXPECT(ft_wait_for_assignment(NULL, 10, &assigned) == FT_INVALID_ARGUMENT);
  EXPECT(ft_wait_for_assignment(runs[0].engine, 10, NULL) == FT_INVALID_ARGUMENT);
  EXPECT(ft_wait_for_assignment(runs[0].engine, -1, &assigned) == FT_INVALID_ARGUMENT);
  EXPECT(ft_wait_for_assignment(runs[0].engine, 10, &assigned) == FT_FAILED_PRECONDITION);
  EXPECT(strstr(ft_last_error(), "not a spare") != NULL);
  EXPECT(assigned == 99);

  /* The committed layout: region 7 of kBytes (RunNode's). Count first, then fetch. */
  uint32_t count = 99;
  uint64_t ids[2] = {0, 0}, sizes[2] = {0, 0};
  EXPECT(ft_committed_layout(runs[0].engine, NULL, NULL, 0, &count) == FT_OK);
  EXPECT(count == 1);
  EXPECT(ft_committed_layout(runs[0].engine, ids, sizes, 2, &count) == FT_OK);
  EXPECT(count == 1 && ids[0] == 7 && sizes[0] == kBytes && ids[1] == 0);
  EXPECT(ft_committed_layout(runs[0].engine, ids, sizes, 0, &count) == FT_RESOURCE_EXHAUSTED);
  EXPECT(strstr(ft_last_error(), "capacity = 0") != NULL);
  EXPECT(ft_committed_layout(runs[0].engine, NULL, sizes, 2, &count) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "ids") != NULL);
  EXPECT(ft_committed_layout(runs[0].engine, ids, NULL, 2, &count) == FT_INVALID_ARGUMENT);
  EXPECT(ft_committed_layout(runs[0].engine, ids, sizes, 2, NULL) == FT_INVALID_ARGUMENT);
  EXPECT(ft_committed_layout(NULL, ids, sizes, 2, &count) == FT_INVALID_ARGUMENT);

  /* ft_loopback_world_run: every rank once, on its own thread (a collective checkpoint from a
   * single thread would wait until the timeout). */
  EXPECT(ft_loopback_world_run(NULL, RecordAndCheckpoint, NULL) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "world") != NULL);
  EXPECT(ft_loopback_world_run(world, NULL, NULL) == FT_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "fn") != NULL);
  static struct RunRecord record; /* the engines keep its state protected until the end */
  EXPECT(ft_loopback_world_run(world, RecordAndCheckpoint, &record) == FT_OK);
  EXPECT(strcmp(ft_last_error(), "") == 0);
  for (uint32_t rank = 0; rank < kNodes; ++rank) {
    EXPECT(record.ran[rank] == 1);
    EXPECT(record.engine_rank[rank] == rank);
  }
  EXPECT(ft_metrics_get(runs[0].engine, &metrics) == FT_OK);
  EXPECT(metrics.committed_version == 3);

  /* The lowest failing rank's code, and its message on this thread, naming the rank. */
  EXPECT(ft_loopback_world_run(world, FailOnRanksTwoAndThree, NULL) == FT_NOT_FOUND);
  EXPECT(strncmp(ft_last_error(), "NotFound: rank 2: ", 18) == 0);
  EXPECT(strstr(ft_last_error(), "99") != NULL);
  EXPECT(ft_loopback_world_run(world, FailOnRankOneWithItsOwnCode, NULL) == 42);
  EXPECT(strstr(ft_last_error(), "rank 1: the node function returned 42") != NULL);
  ft_loopback_world_destroy(world);
  ft_loopback_world_destroy(NULL);

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
