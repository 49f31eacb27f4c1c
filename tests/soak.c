/* weft-stress: the stress matrix of support/stress.c run over and over with fresh seeds, for soak
 * testing (not in CI; see tests/README.md). Prints one line per run and a summary; a broken
 * invariant prints its seed and aborts, a sanitizer report ends the process (halt_on_error). */
#include "stress.h"

#include "weft.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define LEAK_CHECK() __lsan_do_recoverable_leak_check()
#else
#define LEAK_CHECK() 0
#endif

static void usage(void) {
  fprintf(stderr,
          "usage: weft-stress [--minutes M] [--runs N] [--seed S] [--scenario NAME] [--workers W]"
          " [--scale X]\n"
          "  Runs every scenario at 1, 2, 4 and 8 workers (or the one given) with seeds derived\n"
          "  from S (default: from the clock) until M minutes (default 1) or N runs have passed.\n");
  exit(2);
}

int main(int argc, char **argv) {
  double minutes = 1, scale = 1;
  long max_runs = -1;
  uint64_t base = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)clock();
  bool seed_given = false;
  const char *only = NULL;
  int only_workers = 0;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--minutes")) minutes = atof(argv[++i]);
    else if (!strcmp(argv[i], "--runs")) max_runs = atol(argv[++i]);
    else if (!strcmp(argv[i], "--seed")) base = strtoull(argv[++i], NULL, 0), seed_given = true;
    else if (!strcmp(argv[i], "--scenario")) only = argv[++i];
    else if (!strcmp(argv[i], "--workers")) only_workers = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--scale")) scale = atof(argv[++i]);
    else usage();
  }
  bool scenario_known = !only, workers_known = !only_workers;
  for (int s = 0; s < stress_scenario_count; s++)
    if (only && !strcmp(only, stress_scenarios[s].name)) scenario_known = true;
  for (int w = 0; w < stress_worker_count_n; w++)
    if (only_workers == stress_worker_counts[w]) workers_known = true;
  if (!scenario_known || !workers_known) {
    fprintf(stderr, "weft-stress: no such scenario or worker count in the matrix\n");
    usage();
  }
  printf("weft-stress: base seed 0x%llx, %.1f minutes%s\n", (unsigned long long)base, minutes,
         seed_given ? " (the first run uses the seed as given)" : "");
  uint64_t start = weft_now_ns(), end = start + (uint64_t)(minutes * 60e9);
  uint64_t tasks = 0;
  long runs = 0;
  for (uint64_t round = 0; max_runs < 0 || runs < max_runs; round++) {
    for (int s = 0; s < stress_scenario_count; s++) {
      const stress_scenario_t *sc = &stress_scenarios[s];
      if (only && strcmp(only, sc->name)) continue;
      for (int w = 0; w < stress_worker_count_n; w++) {
        int workers = stress_worker_counts[w];
        if (only_workers && workers != only_workers) continue;
        if ((max_runs >= 0 && runs >= max_runs) || (max_runs < 0 && weft_now_ns() >= end)) goto done;
        /* With --seed, the first run replays that seed exactly. */
        uint64_t seed = seed_given && runs == 0 ? base : stress_derive_seed(base, (uint64_t)runs);
        stress_config_t cfg = {workers, seed, scale};
        uint64_t t0 = weft_now_ns();
        uint64_t ran = sc->run(&cfg);
        if (LEAK_CHECK()) {
          fprintf(stderr, "weft-stress: %s workers=%d seed=0x%llx leaked\n", sc->name, workers,
                  (unsigned long long)seed);
          return 1;
        }
        tasks += ran;
        runs++;
        printf("run %ld: %s workers=%d seed=0x%llx tasks=%llu ms=%.0f\n", runs, sc->name, workers,
               (unsigned long long)seed, (unsigned long long)ran, (weft_now_ns() - t0) / 1e6);
        fflush(stdout);
      }
    }
  }
done:
  printf("weft-stress: %ld runs, %llu tasks, %.1f minutes, base seed 0x%llx, failures 0\n", runs,
         (unsigned long long)tasks, (weft_now_ns() - start) / 60e9, (unsigned long long)base);
  return 0;
}
