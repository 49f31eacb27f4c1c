/* The runtime object: worker counts, options, shutdown, exhaustion, stack overflow. */
#include "support.h"

#include "../lib/internal.h" /* the runtime's stopping flag */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

Test(runtime, worker_count_from_options) {
  for (int w = 1; w <= 8; w *= 2) {
    weft_runtime_t *rt = test_runtime(w);
    cr_assert_eq(weft_runtime_workers(rt), w);
    OK(weft_runtime_destroy(rt));
  }
}

Test(runtime, worker_count_from_environment) {
  setenv("WEFT_WORKERS", "3", 1);
  weft_runtime_t *rt;
  OK(weft_runtime_create(&rt, NULL));
  cr_assert_eq(weft_runtime_workers(rt), 3);
  OK(weft_runtime_destroy(rt));
  const char *bad[] = {"", "0", "-2", "two", "3x", " 3", "99999999999"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    setenv("WEFT_WORKERS", bad[i], 1);
    cr_assert_eq(weft_runtime_create(&rt, NULL), WEFT_EINVAL, "WEFT_WORKERS='%s' accepted", bad[i]);
  }
  unsetenv("WEFT_WORKERS");
  OK(weft_runtime_create(&rt, NULL)); /* the CPUs of our affinity mask */
  cr_assert_gt(weft_runtime_workers(rt), 0);
  OK(weft_runtime_destroy(rt));
}

Test(runtime, bad_options_rejected) {
  weft_runtime_t *rt;
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = -1;
  cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_EINVAL);
  o.workers = WEFT_WORKERS_MAX + 1;
  cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_EINVAL);
  o = (weft_options_t)WEFT_OPTIONS_INIT;
  o.stack_size = 100;
  cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_EINVAL);
  o.options_size = 0;
  cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_EINVAL);
  cr_assert_eq(weft_runtime_create(NULL, NULL), WEFT_EINVAL);
  /* An older caller's smaller struct: the fields it lacks take their defaults. */
  o = (weft_options_t)WEFT_OPTIONS_INIT;
  o.options_size = sizeof(size_t) + sizeof(int);
  o.workers = 2;
  o.stack_size = 1; /* beyond the caller's size: ignored */
  OK(weft_runtime_create(&rt, &o));
  cr_assert_eq(weft_runtime_workers(rt), 2);
  OK(weft_runtime_destroy(rt));
}

static void *one(void *arg) { return arg; }
static void *forever_asleep(void *arg) {
  weft_sleep_ms(3600 * 1000);
  return arg;
}
Test(runtime, shutdown_frees_everything) {
  for (int round = 0; round < 3; round++) {
    weft_runtime_t *rt = test_runtime(2);
    weft_task_t *t[200];
    for (int i = 0; i < 200; i++) OK(weft_runtime_spawn(rt, &t[i], one, NULL));
    for (int i = 0; i < 200; i += 2) OK(weft_join(t[i], NULL));
    for (int i = 1; i < 200; i += 2) weft_task_release(t[i]); /* detached mid-flight */
    for (int i = 0; i < 50; i++) OK(weft_runtime_spawn(rt, NULL, forever_asleep, NULL));
    OK(weft_runtime_destroy(rt));
  }
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "shutdown leaked memory");
#endif
}

Test(runtime, spawn_after_shutdown_began_is_refused) {
  /* The flag is visible to spawns racing with destroy; after destroy the handle is gone, so
   * check the code through a runtime that is stopping. */
  weft_runtime_t *rt = test_runtime(1);
  atomic_store(&((struct weft_runtime *)rt)->stopping, 1);
  weft_task_t *t;
  cr_assert_eq(weft_runtime_spawn(rt, &t, one, NULL), WEFT_ESHUTDOWN);
  atomic_store(&((struct weft_runtime *)rt)->stopping, 0);
  OK(weft_runtime_destroy(rt));
}

/* ---- stack overflow ---- */

Test(stacks, overflow_is_reported_in_one_line_naming_the_task) {
#if TEST_ASAN
  cr_skip_test("ASan reports stack overflows itself (its own SEGV handler)");
#else
  /* fork + exec of a separate program: TSan forbids threads after a multi-threaded fork. */
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    execl(OVERFLOW_CHILD, OVERFLOW_CHILD, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char buf[4096] = {0};
  size_t got = 0;
  ssize_t r;
  while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0)
    got += (size_t)r;
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %d, stderr: %s", status, buf);
  cr_assert(strstr(buf, "weft: task 'deep-recursion' (id ") != NULL, "stderr was: %s", buf);
  cr_assert(strstr(buf, ") overflowed its 65536-byte stack\n") != NULL, "stderr was: %s", buf);
#endif
}

/* ---- misuse that cannot be returned: one sentence, then abort ---- */

static void *destroy_own_runtime(void *arg) {
  weft_runtime_destroy(arg); /* aborts: it would wait for itself */
  return NULL;
}
Test(misuse, destroying_the_runtime_from_its_own_task_aborts, .signal = SIGABRT) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, destroy_own_runtime, rt));
  weft_join(t, NULL);
}

static void *release_twice(void *arg) {
  (void)arg;
  weft_task_t *t;
  OK(weft_spawn(&t, one, NULL));
  OK(weft_await(t, NULL));
  weft_task_release(t);
  weft_task_release(t); /* aborts: the handle was already released */
  return NULL;
}
Test(misuse, releasing_a_handle_twice_aborts, .signal = SIGABRT) { run_on(1, release_twice, NULL); }

static void *await_self(void *arg) {
  (void)arg;
  weft_await(weft_current(), NULL); /* aborts: it could never finish */
  return NULL;
}
Test(misuse, a_task_awaiting_itself_aborts, .signal = SIGABRT) { run_on(1, await_self, NULL); }
