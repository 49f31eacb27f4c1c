/* A four-stage pipeline over channels: parse -> transform -> aggregate -> sink, the shape of a
 * log or ETL job (Go's pipelines, asyncio's producer/consumer queues).
 *
 *   cc pipeline.c $(pkg-config --cflags --libs weft)
 *   ./a.out [items] [workers]       # default 1000000 items, the CPUs as workers
 *
 *   parse      one task: turns text lines "user=<u> bytes=<b>" into records (malloc'd)
 *   transform  four tasks: weigh each record (bytes to KiB, rounded up), fanning out
 *   aggregate  one task: sums KiB per user; every 1000 records it sends a batch total on
 *   sink       one task: adds the batches up and owns the final numbers
 *
 * Ownership follows the values: a record is malloc'd by parse, passed by each successful send
 * to whoever receives it, and freed by aggregate. Each stage closes its output channel when its
 * input is closed and drained (the transforms close theirs when the last of them is done: a
 * wait group counts them), so the pipeline ends from the front without any sentinel values.
 * Bounded channels (capacity 256) give back-pressure: a fast stage waits for a slow one. The
 * program checks its totals against a direct computation and exits 1 if they differ. */
#include <weft.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { USERS = 64, TRANSFORMS = 4, CAPACITY = 256, BATCH = 1000 };

typedef struct {
  long user;
  long bytes;
  long kib;
} record_t;

typedef struct {
  long items;
  weft_chan_t *parsed, *weighed, *batches;
  weft_waitgroup_t *transforms_left;
  long per_user[USERS]; /* aggregate's */
  long total_kib;       /* sink's */
  long batches_seen;    /* sink's */
} pipeline_t;

static long bytes_of(long i) { return (i * 7919) % 100000; }

static void *parse(void *arg) {
  pipeline_t *p = arg;
  char line[64];
  for (long i = 0; i < p->items; i++) {
    snprintf(line, sizeof line, "user=%ld bytes=%ld", i % USERS, bytes_of(i)); /* "reading" */
    record_t *r = malloc(sizeof *r);
    if (!r || sscanf(line, "user=%ld bytes=%ld", &r->user, &r->bytes) != 2) {
      free(r);
      break;
    }
    if (weft_chan_send(p->parsed, r, UINT64_MAX) != 0) { /* closed downstream: stop */
      free(r);
      break;
    }
  }
  weft_chan_close(p->parsed);
  return NULL;
}

static void *transform(void *arg) {
  pipeline_t *p = arg;
  void *v;
  while (weft_chan_recv(p->parsed, &v, UINT64_MAX) == 0) { /* WEFT_ECLOSED ends the loop */
    record_t *r = v;
    r->kib = (r->bytes + 1023) / 1024;
    if (weft_chan_send(p->weighed, r, UINT64_MAX) != 0) free(r);
  }
  weft_waitgroup_done(p->transforms_left);
  return NULL;
}

/* Closes `weighed` once every transform is done. */
static void *close_after_transforms(void *arg) {
  pipeline_t *p = arg;
  weft_waitgroup_wait(p->transforms_left, UINT64_MAX);
  weft_chan_close(p->weighed);
  return NULL;
}

static void *aggregate(void *arg) {
  pipeline_t *p = arg;
  void *v;
  long batch = 0, count = 0;
  while (weft_chan_recv(p->weighed, &v, UINT64_MAX) == 0) {
    record_t *r = v;
    p->per_user[r->user] += r->kib;
    batch += r->kib;
    free(r); /* the record ends here */
    if (++count % BATCH == 0) {
      weft_chan_send(p->batches, (void *)(intptr_t)batch, UINT64_MAX);
      batch = 0;
    }
  }
  if (count % BATCH) weft_chan_send(p->batches, (void *)(intptr_t)batch, UINT64_MAX);
  weft_chan_close(p->batches);
  return NULL;
}

static void *sink(void *arg) {
  pipeline_t *p = arg;
  void *v;
  while (weft_chan_recv(p->batches, &v, UINT64_MAX) == 0) {
    p->total_kib += (long)(intptr_t)v;
    p->batches_seen++;
  }
  return NULL;
}

static void *run_pipeline(void *arg) {
  pipeline_t *p = arg;
  weft_task_t *t[TRANSFORMS + 4];
  int n = 0, err = 0;
  err = err ? err : weft_spawn(&t[n++], sink, p);
  err = err ? err : weft_spawn(&t[n++], aggregate, p);
  err = err ? err : weft_spawn(&t[n++], close_after_transforms, p);
  for (int i = 0; i < TRANSFORMS && !err; i++) err = weft_spawn(&t[n++], transform, p);
  err = err ? err : weft_spawn(&t[n++], parse, p);
  if (err) { /* the failed spawn made no handle, and the stages spawned would wait for it */
    n--;
    for (int i = 0; i < n; i++) weft_cancel(t[i]); /* their waits return WEFT_ECANCELED */
  }
  for (int i = 0; i < n; i++) weft_join(t[i], NULL);
  return (void *)(intptr_t)err;
}

int main(int argc, char **argv) {
  pipeline_t p;
  memset(&p, 0, sizeof p);
  p.items = argc > 1 ? atol(argv[1]) : 1000000;
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = argc > 2 ? atoi(argv[2]) : 0;
  if (weft_chan_create(&p.parsed, CAPACITY) || weft_chan_create(&p.weighed, CAPACITY) ||
      weft_chan_create(&p.batches, CAPACITY) || weft_waitgroup_create(&p.transforms_left) ||
      weft_waitgroup_add(p.transforms_left, TRANSFORMS)) {
    fprintf(stderr, "pipeline: out of memory\n");
    return 1;
  }
  uint64_t t0 = weft_now_ns();
  void *r = NULL;
  int err = weft_run(&o, run_pipeline, &p, &r);
  double ms = (double)(weft_now_ns() - t0) / 1e6;
  if (!err) err = (int)(intptr_t)r;
  long want = 0;
  for (long i = 0; i < p.items; i++) want += (bytes_of(i) + 1023) / 1024;
  long sum_users = 0;
  for (int u = 0; u < USERS; u++) sum_users += p.per_user[u];
  printf("pipeline: %ld items, %ld batches, %ld KiB in %.1f ms (%s)\n", p.items, p.batches_seen,
         p.total_kib, ms, err ? weft_strerror(err) : "ok");
  weft_chan_destroy(p.parsed);
  weft_chan_destroy(p.weighed);
  weft_chan_destroy(p.batches);
  weft_waitgroup_destroy(p.transforms_left);
  if (err || p.total_kib != want || sum_users != want) {
    fprintf(stderr, "pipeline: wrong totals (%ld and %ld, want %ld)\n", p.total_kib, sum_users,
            want);
    return 1;
  }
  return 0;
}
