/* A user of the installed weft (tests/install_check.sh builds it with pkg-config and with
 * find_package, -Wall -Wextra -Werror: the public header must compile warning-free in a
 * strict user's build, WEFT_OPTIONS_INIT included): the README's fib, every return code
 * checked. */
#include <weft.h>

#include <stdio.h>
#include <stdlib.h>

static void check(int err, const char *what) {
  if (err) {
    fprintf(stderr, "%s: %s\n", what, weft_strerror(err));
    exit(2);
  }
}

static void *fib(void *arg) {
  long n = (long)arg;
  if (n < 2) return arg;
  weft_task_t *t;
  check(weft_spawn(&t, fib, (void *)(n - 1)), "weft_spawn");
  long b = (long)fib((void *)(n - 2));
  void *a;
  check(weft_join(t, &a), "weft_join");
  return (void *)((long)a + b);
}

int main(void) {
  void *r;
  weft_options_t options = WEFT_OPTIONS_INIT;
  options.workers = 2;
  /* The other two initialisers, for -Wextra's missing-initializer check */
  weft_stats_t stats = WEFT_STATS_INIT;
  weft_metrics_t metrics = WEFT_METRICS_INIT;
  (void)stats;
  (void)metrics;
  check(weft_run(&options, fib, (void *)20L, &r), "weft_run");
  printf("fib(20) = %ld\n", (long)r);
  return (long)r == 6765 ? 0 : 1;
}
