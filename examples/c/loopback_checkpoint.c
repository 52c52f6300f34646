/* The README's C example: 8 engines in one process over the loopback fabric, each node
 * checkpointing its state and reading it back. Exits 0 when every node's committed image equals
 * its state, 1 otherwise (the message says which rank failed and why). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ftengine/ftengine.h"

enum { kNodes = 8, kBytes = 100000 };

struct app {
  unsigned char* state[kNodes];
};

/* One node: runs on its own thread, as it would in its own process. */
static int Node(uint32_t rank, ft_engine* engine, void* arg) {
  struct app* app = arg;
  unsigned char* state = app->state[rank];
  for (size_t i = 0; i < kBytes; ++i) state[i] = (unsigned char)(i * 7 + rank);
  int rc = ft_protect(engine, 0, state, kBytes);
  if (rc != FT_OK) return rc;
  uint64_t version;
  rc = ft_checkpoint(engine, &version); /* collective: every node calls it */
  if (rc != FT_OK) return rc;

  unsigned char* back = malloc(kBytes);
  if (back == NULL) return FT_RESOURCE_EXHAUSTED;
  rc = ft_read_committed(engine, back, kBytes, NULL, 0);
  if (rc == FT_OK && memcmp(back, state, kBytes) != 0) rc = FT_DATA_LOSS;
  free(back);
  return rc;
}

int main(void) {
  struct app app;
  for (int rank = 0; rank < kNodes; ++rank) {
    app.state[rank] = malloc(kBytes);
    if (app.state[rank] == NULL) return 1;
  }

  ft_options options;
  ft_options_init(&options);
  options.cell_bytes = 64 * 1024; /* k = 4, m = 2 by default */
  ft_loopback_world* world;
  if (ft_loopback_world_create(kNodes, &options, &world) != FT_OK) {
    printf("%s\n", ft_last_error());
    return 1;
  }
  int rc = ft_loopback_world_run(world, Node, &app); /* Node on every rank at once */
  if (rc != FT_OK) printf("%s\n", ft_last_error());  /* e.g. "DataLoss: rank 3: ..." */
  ft_loopback_world_destroy(world);

  for (int rank = 0; rank < kNodes; ++rank) free(app.state[rank]);
  if (rc == FT_OK) printf("%d nodes checkpointed and read back\n", kNodes);
  return rc == FT_OK ? 0 : 1;
}
