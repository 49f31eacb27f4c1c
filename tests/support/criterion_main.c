/* The test binaries' main: Criterion's own (its documented custom main), except that the
 * runner process ends with _exit. Criterion 2.4.1's runner sometimes leaves one 48-byte calloc
 * of its own unfreed at exit (its stack is all libcriterion, without symbols), which
 * LeakSanitizer reported at the runner's exit in the ASan build. It was suppressed with
 * `leak:libcriterion.so`, but a suppression matches any frame of a leak's stack, and every
 * allocation a test body makes has Criterion's frames below it: the tests' own leak checks
 * (__lsan_do_recoverable_leak_check) saw nothing allocated on a test's thread (review, session
 * 33). The runner runs no weft code (the tests run in forked workers), so skipping its exit
 * check loses nothing, and no suppression is left. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Criterion 2.4.1's per-test timeouts (BoxFort's killer thread, in the runner) did not fire: a
 * test that spun under gcc's TSan ran on past its `.timeout = 120` and the binary's --timeout
 * 900 to ctest's 1 200 s limit, which names no test (session 36's CI; in the reproduction the
 * runner had no killer thread left). So each test's worker process (one per test, exec'd by
 * BoxFort, which sets BXFI_MAP) arms a timer of its own: at WEFT_TEST_WATCHDOG_S seconds
 * (default 600, under ctest's limit) the kernel sends SIGVTALRM, whose default action ends the
 * process (without a core, which SIGXCPU's would write: review H), and Criterion reports that
 * test as crashed. No handler: TSan defers a handled signal to the thread's next interceptor,
 * which a spinning thread never reaches. The runner arms nothing (its own wait is the sum of
 * its tests'). A POSIX timer is not inherited by fork nor kept by exec: a test's child
 * processes bound themselves (alarm). */
__attribute__((constructor)) static void arm_test_watchdog(void) {
  if (!getenv("BXFI_MAP")) return; /* the runner, or a binary run outside Criterion's sandbox */
  const char *env = getenv("WEFT_TEST_WATCHDOG_S");
  long seconds = env ? strtol(env, NULL, 10) : 600;
  if (seconds <= 0) return; /* 0: no watchdog (a debugger session) */
  struct sigevent ev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGVTALRM};
  timer_t timer;
  struct itimerspec at = {.it_value = {.tv_sec = seconds}};
  if (timer_create(CLOCK_MONOTONIC, &ev, &timer) != 0 || timer_settime(timer, 0, &at, NULL) != 0)
    perror("weft tests: the watchdog timer"); /* the test runs on without one */
}

/* Tests that ran (neither filtered out nor skipped), counted in the runner: a run that ran
 * none fails, so that a --filter left behind by a renamed suite (valgrind_faults' is one)
 * cannot pass in silence (review, session 33). --list and --help run nothing and stay 0. */
static size_t tests_ran;

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  tests_ran = stats->nb_tests - stats->tests_skipped;
}

/* default visibility (the tests build with -fvisibility=hidden): Criterion's sandbox finds main
 * by its symbol to start a worker, and re-entered it as a runner when it was hidden */
__attribute__((visibility("default"))) int main(int argc, char *argv[]) {
  struct criterion_test_set *tests = criterion_initialize();
  int result = 0;
  if (criterion_handle_args(argc, argv, true)) {
    result = !criterion_run_all_tests(tests);
    if (!tests_ran) {
      fprintf(stderr, "%s: no test ran (a --filter that matches nothing?)\n", argv[0]);
      result = 1;
    }
  }
  criterion_finalize(tests);
  fflush(NULL);
  _exit(result);
}
