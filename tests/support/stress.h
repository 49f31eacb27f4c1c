/* The stress matrix: scenarios shared by the Criterion suite (tests/test_stress.c, fixed seeds,
 * sized for CI) and the soak driver (tests/soak.c, fresh seeds for as long as it is told).
 *
 * Each scenario builds its own runtime of cfg->workers, runs, checks every invariant it can
 * (each task ran exactly once, results match a sequential computation, shutdown leaves no task
 * running twice), and returns the number of tasks that ran. A broken invariant prints one line
 * naming the scenario, the worker count and the seed (so the run can be replayed with
 * WEFT_TEST_SEED) and aborts the process. */
#ifndef WEFT_TEST_STRESS_H
#define WEFT_TEST_STRESS_H

#include <stdint.h>

typedef struct stress_config {
  int workers;
  uint64_t seed;
  double scale; /* 1.0: the CI size of the scenario; the soak may run larger rounds */
} stress_config_t;

typedef uint64_t (*stress_scenario_fn)(const stress_config_t *cfg);

typedef struct stress_scenario {
  const char *name;
  stress_scenario_fn run;
} stress_scenario_t;

/* 10^6 tasks (at scale 1, in release builds) spawned by 8 threads that are not workers, while a
 * task on the workers spawns and gathers so that workers steal; each task counted exactly once. */
uint64_t stress_foreign_flood(const stress_config_t *cfg);
/* Random gather trees (spawn+gather, gather_calls, await one by one, awaits with timeouts),
 * each tree's size checked against the same tree computed by plain recursion. */
uint64_t stress_gather_trees(const stress_config_t *cfg);
/* Actors that sleep, yield, spawn (awaited and detached) and await with deadlines at random. */
uint64_t stress_chaos(const stress_config_t *cfg);
/* The chaos of the above plus foreign spawners, destroyed at a random point mid-flight. */
uint64_t stress_cancel(const stress_config_t *cfg);
uint64_t stress_shutdown_mid_flight(const stress_config_t *cfg);
/* Channel chains (issue 11): producers (tasks and foreign threads) -> rendezvous channel ->
 * relay tasks (a mutex-guarded count) -> buffered channel -> sinks (tasks and a foreign thread),
 * with deadlines racing the hand-offs; every value delivered exactly once. */
uint64_t stress_channels(const stress_config_t *cfg);
/* Loopback echo clients (round trips checked byte for byte, abrupt closes, read deadlines,
 * cancels) against an accept loop with a task per connection (issue 12). */
uint64_t stress_sockets(const stress_config_t *cfg);

extern const stress_scenario_t stress_scenarios[];
extern const int stress_scenario_count;

/* The worker counts of the matrix. */
extern const int stress_worker_counts[];
extern const int stress_worker_count_n;

/* A seed for round `round` of a run started from `base` (splitmix of both). */
uint64_t stress_derive_seed(uint64_t base, uint64_t round);

#endif
