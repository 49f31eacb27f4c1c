/*
 * bench/wake_latency.c - how long a wake-up takes to reach a parked side, as a distribution
 * (the means that weft-bench prints hide rare long waits):
 *   thread<->task  a plain thread and a task pass a token back and forth through two
 *                  semaphores: one round is a foreign wake of a task (its worker may be
 *                  parked) plus a task's wake of a blocked plain thread;
 *   offload        a task's weft_offload of an empty call: a pool thread's wake and the
 *                  task's wake back.
 * usage: wake_latency [workers] [rounds]   (default 1 worker, 3000 rounds)
 * prints per part: p50, p99 and max of a round in µs, and how many rounds took over 1 ms.
 */
#include <weft.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static weft_sem_t *to_task, *to_thread;
static long rounds;
static double *lat_us;

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void check(int rc, const char *what) {
  if (rc == 0) return;
  fprintf(stderr, "wake_latency: %s: %s\n", what, weft_strerror(rc));
  exit(1);
}

static void *echo_task(void *arg) {
  (void)arg;
  for (long i = 0; i < rounds; i++) {
    check(weft_sem_acquire(to_task, UINT64_MAX), "task's acquire");
    check(weft_sem_release(to_thread), "task's release");
  }
  return NULL;
}

static void *empty_call(void *arg) { return arg; }

static void *offload_task(void *arg) {
  (void)arg;
  for (long i = 0; i < rounds; i++) {
    void *r;
    double t0 = now_us();
    check(weft_offload(empty_call, NULL, &r), "offload");
    lat_us[i] = now_us() - t0;
  }
  return NULL;
}

static int by_value(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return a < b ? -1 : a > b;
}

static void report(const char *part, int workers) {
  qsort(lat_us, (size_t)rounds, sizeof *lat_us, by_value);
  long over = 0;
  for (long i = 0; i < rounds; i++) over += lat_us[i] > 1000;
  printf("%s w=%d: p50 %.1f us p99 %.1f us max %.0f us, over 1 ms: %ld of %ld\n", part,
         workers, lat_us[rounds / 2], lat_us[rounds * 99 / 100], lat_us[rounds - 1], over,
         rounds);
}

int main(int argc, char **argv) {
  int workers = argc > 1 ? atoi(argv[1]) : 1;
  rounds = argc > 2 ? atol(argv[2]) : 3000;
  if (workers < 1 || rounds < 1) {
    fprintf(stderr, "usage: %s [workers] [rounds]\n", argv[0]);
    return 2;
  }
  lat_us = malloc(sizeof *lat_us * (size_t)rounds);
  if (!lat_us) check(WEFT_ENOMEM, "rounds");
  weft_options_t opts = WEFT_OPTIONS_INIT;
  opts.workers = workers;
  weft_runtime_t *rt;
  check(weft_runtime_create(&rt, &opts), "runtime");
  check(weft_sem_create(&to_task, 0, 0), "semaphore");
  check(weft_sem_create(&to_thread, 0, 0), "semaphore");
  weft_task_t *t;
  check(weft_runtime_spawn(rt, &t, echo_task, NULL), "spawn");
  for (long i = 0; i < rounds; i++) {
    double t0 = now_us();
    check(weft_sem_release(to_task), "thread's release");
    check(weft_sem_acquire(to_thread, UINT64_MAX), "thread's acquire");
    lat_us[i] = now_us() - t0;
  }
  check(weft_join(t, NULL), "join");
  report("thread<->task", workers);
  check(weft_runtime_spawn(rt, &t, offload_task, NULL), "spawn");
  check(weft_join(t, NULL), "join");
  report("offload", workers);
  weft_sem_destroy(to_task);
  weft_sem_destroy(to_thread);
  check(weft_runtime_destroy(rt), "destroy");
  free(lat_us);
  return 0;
}
