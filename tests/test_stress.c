/* The stress matrix in CI: every scenario of support/stress.c at 1, 2, 4 and 8 workers, with the
 * seed from WEFT_TEST_SEED (a fixed default otherwise, so a CI failure replays as it ran).
 * Fresh seeds and longer runs: the soak driver, weft-stress (tests/README.md). */
#include "support.h"
#include "stress.h"

#include <criterion/parameterized.h>
#include <stdio.h>

typedef struct matrix_cell {
  int scenario;
  int workers;
} matrix_cell_t;

ParameterizedTestParameters(stress, matrix) {
  static matrix_cell_t cells[8 * 4]; /* up to 8 scenarios at the 4 worker counts */
  size_t n = 0;
  cr_assert(stress_scenario_count * stress_worker_count_n <= (int)(sizeof cells / sizeof *cells));
  for (int s = 0; s < stress_scenario_count; s++)
    for (int w = 0; w < stress_worker_count_n; w++)
      cells[n++] = (matrix_cell_t){s, stress_worker_counts[w]};
  return cr_make_param_array(matrix_cell_t, cells, n);
}

ParameterizedTest(matrix_cell_t *cell, stress, matrix, .timeout = 600) {
  const stress_scenario_t *sc = &stress_scenarios[cell->scenario];
  stress_config_t cfg = {cell->workers, test_seed(), 1.0};
  uint64_t ran = sc->run(&cfg);
  cr_assert_gt(ran, 0, "%s ran no task", sc->name);
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "%s with %d workers leaked", sc->name,
               cell->workers);
#endif
}
