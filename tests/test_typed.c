/* Typed task helpers (issue 14): WEFT_TASK_n, WEFT_SPAWN, WEFT_JOIN — arguments and results of
 * any type without packing or casts, the task named after its function, no leak on any path. */
#include "support.h"

#include <string.h>

WEFT_TASK_2(long, tfib, long, n, int, depth) {
  if (n < 2) return n;
  WEFT_HANDLE(tfib) h;
  OK(WEFT_SPAWN(tfib)(&h, n - 1, depth + 1));
  long b = tfib(n - 2, depth + 1); /* a plain call */
  long a = 0;
  OK(WEFT_JOIN(tfib)(h, &a));
  return a + b;
}

WEFT_TASK_0(int, answer) { return 42; }

WEFT_TASK_1(double, half, double, x) { return x / 2; }

typedef struct {
  int lo, hi;
} range_t;

WEFT_TASK_3(range_t, widen, range_t, r, int, by, const char *, why) {
  cr_assert_str_eq(why, "test");
  cr_assert_str_eq(weft_task_name(weft_current()), "widen"); /* named after its function */
  return (range_t){r.lo - by, r.hi + by};
}

WEFT_TASK_4(unsigned char, sum4, unsigned char, a, short, b, long long, c, float, d) {
  return (unsigned char)(a + b + c + (long long)d);
}

static void *typed_main(void *arg) {
  (void)arg;
  long f = 0;
  WEFT_HANDLE(tfib) fh;
  OK(WEFT_SPAWN(tfib)(&fh, 20, 0));
  OK(WEFT_JOIN(tfib)(fh, &f));
  cr_assert_eq(f, 6765);

  WEFT_HANDLE(answer) ah;
  OK(WEFT_SPAWN(answer)(&ah));
  int x = 0;
  OK(WEFT_JOIN(answer)(ah, &x));
  cr_assert_eq(x, 42);

  WEFT_HANDLE(half) hh;
  OK(WEFT_SPAWN(half)(&hh, 3.0));
  double d = 0;
  OK(WEFT_JOIN(half)(hh, &d));
  cr_assert_float_eq(d, 1.5, 1e-12);

  WEFT_HANDLE(widen) wh;
  OK(WEFT_SPAWN(widen)(&wh, (range_t){10, 20}, 5, "test"));
  range_t r;
  OK(WEFT_JOIN(widen)(wh, &r));
  cr_assert(r.lo == 5 && r.hi == 25);

  WEFT_HANDLE(sum4) sh;
  OK(WEFT_SPAWN(sum4)(&sh, 1, 2, 3, 4.0f));
  unsigned char s = 0;
  OK(WEFT_JOIN(sum4)(sh, NULL)); /* a NULL result pointer is allowed */
  OK(WEFT_SPAWN(sum4)(&sh, 1, 2, 3, 4.0f));
  OK(WEFT_JOIN(sum4)(sh, &s));
  cr_assert_eq(s, 10);
  return NULL;
}

Test(typed, tasks_take_typed_arguments_and_return_typed_results) {
  run_on(2, typed_main, NULL);
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "a frame leaked");
#endif
}

Test(typed, a_spawn_outside_a_task_fails_with_eperm_and_frees_its_frame) {
  WEFT_HANDLE(answer) h;
  memset(&h, 0, sizeof h);
  cr_assert_eq(WEFT_SPAWN(answer)(&h), WEFT_EPERM);
  cr_assert_null(h.frame);
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "the frame leaked");
#endif
}
