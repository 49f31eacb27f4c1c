/* The runtime object: worker counts, options, shutdown, exhaustion, stack overflow, fork(). */
#include "support.h"

#include "../lib/internal.h" /* the runtime's stopping flag, the pause points */

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
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
  o.stack_size = WEFT_STACK_MAX + 1;
  cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_ERANGE);
  o = (weft_options_t)WEFT_OPTIONS_INIT;
  o.guard_size = WEFT_STACK_MAX + 1;
  cr_assert_eq(weft_runtime_create(&rt, &o), WEFT_ERANGE);
  o.guard_size = 1; /* rounded up to a page */
  OK(weft_runtime_create(&rt, &o));
  OK(weft_runtime_destroy(rt));
  o = (weft_options_t)WEFT_OPTIONS_INIT;
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
  atomic_store(&((struct weft_runtime *)rt)->closing, 1);
  weft_task_t *t;
  cr_assert_eq(weft_runtime_spawn(rt, &t, one, NULL), WEFT_ESHUTDOWN);
  atomic_store(&((struct weft_runtime *)rt)->closing, 0);
  OK(weft_runtime_destroy(rt));
}

/* ---- stack overflow ---- */

/* Reads fd to its end. */
static char *read_all(int fd, size_t *len) {
  size_t cap = 1 << 16, got = 0;
  char *buf = malloc(cap);
  ssize_t r;
  while ((r = read(fd, buf + got, cap - got - 1)) > 0) {
    got += (size_t)r;
    if (cap - got < 4096) buf = realloc(buf, cap *= 2);
  }
  buf[got] = 0;
  *len = got;
  return buf;
}

/* Runs a child program (fork + exec: TSan forbids threads after a multi-threaded fork) with
 * stderr into a pipe; returns what it wrote and its wait status. */
static char *run_child(const char *path, const char *arg, int *status) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    alarm(60); /* kept across exec (the test's watchdog timer is not): a hung child ends */
    execl(path, path, arg, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  size_t len;
  char *out = read_all(fds[0], &len);
  close(fds[0]);
  waitpid(pid, status, 0);
  return out;
}

Test(stacks, overflow_is_reported_in_one_line_naming_the_task, .timeout = 60) {
#if TEST_ASAN
  cr_skip_test("ASan reports stack overflows itself (its own SEGV handler)");
#else
  int status;
  char *out = run_child(OVERFLOW_CHILD, NULL, &status);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV, "status %d", status);
  /* Every line is either the other workers' noise or the report, each whole. */
  static const char noise[] = "noise from a busy worker: the report must not land inside me";
  long reports = 0, noise_lines = 0;
  for (char *line = out, *nl; *line; line = nl + 1) {
    nl = strchr(line, '\n');
    cr_assert_not_null(nl, "a line without its end: %s", line);
    *nl = 0;
    if (!strcmp(line, noise)) {
      noise_lines++;
      continue;
    }
    unsigned long long id;
    int end = 0;
    cr_assert(sscanf(line, "weft: task 'deep?recursion' (id %llu) overflowed its 65536-byte stack%n",
                     &id, &end) == 1 && line[end] == 0,
              "a garbled line on stderr: '%s'", line);
    reports++;
  }
  cr_assert_eq(reports, 1, "%ld overflow reports", reports);
  cr_assert_gt(noise_lines, 0, "the other workers wrote nothing: the test proves nothing");
  free(out);
#endif
}

/* The overflow reporter's SIGSEGV handler goes with the last runtime, but a handler the program
 * installed after it (a crash reporter) stays: the destroy put back the one from before the
 * runtime over it (review, session 20). */
static void crash_reporter(int sig) { (void)sig; }
static void *returns_arg(void *arg) { return arg; }
static void segv_handler_now(struct sigaction *sa) { cr_assert_eq(sigaction(SIGSEGV, NULL, sa), 0); }

Test(stacks, a_segv_handler_installed_after_the_runtime_survives_its_destroy) {
  struct sigaction before, now, mine = {.sa_handler = crash_reporter};
  segv_handler_now(&before);
  /* A runtime alone: its destroy puts back the handler from before it. */
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, returns_arg, NULL)); /* its worker has started: installed */
  OK(weft_join(t, NULL));
  OK(weft_runtime_destroy(rt));
  segv_handler_now(&now);
  cr_assert(now.sa_handler == before.sa_handler, "the handler from before was not put back");
  /* A handler installed while the runtime lives stays after it. */
  rt = test_runtime(1);
  OK(weft_runtime_spawn(rt, &t, returns_arg, NULL));
  OK(weft_join(t, NULL));
  sigemptyset(&mine.sa_mask);
  cr_assert_eq(sigaction(SIGSEGV, &mine, NULL), 0);
  OK(weft_runtime_destroy(rt));
  segv_handler_now(&now);
  cr_assert(!(now.sa_flags & SA_SIGINFO) && now.sa_handler == crash_reporter,
            "the destroy removed the program's own handler");
}

/* A 96 KiB frame on a 64 KiB stack that writes only its lowest page (tests/overflow_frame.c):
 * the overflow must be reported and kill the process, never corrupt the stack below. */
static void assert_big_frame_reported(const char *child, const char *guard) {
  int status;
  char *out = run_child(child, guard, &status);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
            "status %d (exit %d): the overflow went silent; stderr: '%s'", status,
            WIFEXITED(status) ? WEXITSTATUS(status) : -1, out);
  unsigned long long id;
  int end = 0;
  cr_assert(sscanf(out, "weft: task 'big-frame' (id %llu) overflowed its 65536-byte stack\n%n",
                   &id, &end) == 1 && out[end] == 0,
            "stderr: '%s'", out);
  free(out);
}

Test(stacks, a_frame_larger_than_a_one_page_guard_is_reported_when_built_with_stack_clash_probes,
     .timeout = 60) {
#if TEST_ASAN
  cr_skip_test("ASan reports stack overflows itself (its own SEGV handler)");
#else
  assert_big_frame_reported(OVERFLOW_FRAME_PROBED, "4096");
#endif
}

Test(stacks, a_frame_overshooting_its_stack_by_less_than_the_default_guard_is_reported_without_probes,
     .timeout = 60) {
#if TEST_ASAN
  cr_skip_test("ASan reports stack overflows itself (its own SEGV handler)");
#else
  assert_big_frame_reported(OVERFLOW_FRAME_UNPROBED, "0");
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

/* A gather or a group wait that includes the caller aborts as weft_join does (review, session
 * 30: they hung for good, deadline scopes and cancels too). The timeout turns a hang into a
 * failure. */
static void *gather_self(void *arg) {
  weft_task_t *tasks[2];
  OK(weft_spawn(&tasks[0], one, NULL));
  tasks[1] = weft_current();
  if (arg) weft_gather_status(tasks, 2, NULL, NULL); /* aborts */
  else weft_gather(tasks, 2, NULL);                  /* aborts */
  return NULL;
}
Test(misuse, a_task_gathering_itself_aborts, .signal = SIGABRT, .timeout = 20) {
  run_on(1, gather_self, NULL);
}
Test(misuse, a_task_gathering_itself_with_statuses_aborts, .signal = SIGABRT, .timeout = 20) {
  run_on(1, gather_self, IPTR(1));
}

/* A wait for any one of handles that are all the caller's own aborts (review, session 31: it
 * hung); with another task among them, it waits for that one. */
static void *wait_any_for_self(void *arg) {
  weft_task_t *tasks[2] = {weft_current(), weft_current()};
  size_t index = 9;
  if (arg) {
    OK(weft_spawn(&tasks[1], one, NULL));
    cr_assert_eq(weft_wait_any(tasks, 2, UINT64_MAX, &index), 0);
    cr_assert_eq(index, 1);
    weft_task_release(tasks[1]);
    return NULL;
  }
  weft_wait_any(tasks, 2, UINT64_MAX, &index); /* aborts */
  return NULL;
}
Test(misuse, a_task_waiting_for_any_of_only_itself_aborts, .signal = SIGABRT, .timeout = 20) {
  run_on(1, wait_any_for_self, NULL);
}
Test(misuse, a_wait_for_any_of_itself_and_another_waits_for_the_other, .timeout = 20) {
  run_on(1, wait_any_for_self, IPTR(1));
}

static bool member_destroys; /* else it waits */
static void *member_waits_for_its_group(void *arg) {
  if (member_destroys) weft_group_destroy(arg); /* aborts */
  else weft_group_wait(arg);                     /* aborts */
  return NULL;
}
static void *group_with_a_waiting_member(void *arg) {
  (void)arg;
  weft_group_t *g;
  OK(weft_group_create(&g, NULL));
  OK(weft_group_spawn(g, member_waits_for_its_group, g));
  weft_group_wait(g); /* the member aborts the process first */
  return NULL;
}
Test(misuse, a_group_waited_for_by_its_own_task_aborts, .signal = SIGABRT, .timeout = 20) {
  run_on(2, group_with_a_waiting_member, NULL);
}
Test(misuse, a_group_destroyed_by_its_own_task_aborts, .signal = SIGABRT, .timeout = 20) {
  member_destroys = true;
  run_on(2, group_with_a_waiting_member, NULL);
}

/* The error contract: every function that returns a code answers a NULL handle with
 * WEFT_EINVAL, from a task and from a plain thread alike. */
static void *null_handles(void *arg) {
  (void)arg;
  weft_task_t *none[2] = {NULL, NULL};
  cr_assert_eq(weft_await(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_join(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_await_until(NULL, 0, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_await_timeout(NULL, 1000, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_task_result(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_task_done(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_gather(none, 2, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_future_done(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_future_resolve(NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_future_await(NULL, NULL), WEFT_EINVAL);
  weft_task_release(NULL); /* like free(NULL): nothing to do */
  return IPTR(1);
}
Test(misuse, a_null_handle_is_einval_where_a_code_is_returned) {
  cr_assert_eq(PINT(run_on(1, null_handles, NULL)), 1);
  null_handles(NULL);
}

/* Functions that return no code abort on a NULL handle with a sentence naming themselves. */
static void *name_null(void *arg) {
  (void)arg;
  weft_task_set_name(NULL, "x");
  return NULL;
}
Test(misuse, naming_a_null_handle_aborts, .signal = SIGABRT) { run_on(1, name_null, NULL); }

Test(misuse, task_ids_start_small) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, one, NULL));
  cr_assert_eq(weft_task_id(t), 1, "the first task's id is %llu", (unsigned long long)weft_task_id(t));
  OK(weft_join(t, NULL));
  OK(weft_runtime_destroy(rt));
}

/* ---- misuse that is returned ---- */

static void *sleepy(void *arg) {
  weft_sleep_ms(2);
  return arg;
}

static void *await_twice(void *arg) {
  (void)arg;
  weft_task_t *t;
  OK(weft_spawn(&t, sleepy, IPTR(7)));
  void *r1 = NULL, *r2 = NULL, *r3 = NULL;
  int err = weft_await_timeout(t, 1, &r1); /* too short: the task goes on, awaitable again */
  cr_assert(err == WEFT_ETIMEDOUT || (err == 0 && PINT(r1) == 7), "%s", weft_err_name(err));
  OK(weft_await(t, &r2));
  OK(weft_await(t, &r3)); /* asyncio: awaiting a done task again gives its result again */
  cr_assert(PINT(r2) == 7 && PINT(r3) == 7);
  OK(weft_task_result(t, &r1));
  cr_assert_eq(PINT(r1), 7);
  weft_task_release(t);
  return NULL;
}
Test(misuse, awaiting_a_task_twice_returns_the_same_result) {
  run_on(2, await_twice, NULL);
  /* From a thread that is not a task, too. */
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, sleepy, IPTR(8)));
  void *a, *b;
  OK(weft_await(t, &a));
  OK(weft_await(t, &b));
  cr_assert(PINT(a) == 8 && PINT(b) == 8);
  weft_task_release(t);
  OK(weft_runtime_destroy(rt));
}

Test(misuse, calls_from_a_thread_that_is_not_a_task) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t[3];
  /* What needs a task to suspend is refused... */
  cr_assert_eq(weft_spawn(&t[0], one, NULL), WEFT_EPERM);
  cr_assert_eq(weft_yield(), WEFT_EPERM);
  weft_call_t calls[2] = {{one, IPTR(1)}, {one, IPTR(2)}};
  cr_assert_eq(weft_gather_calls(calls, 2, NULL), WEFT_EPERM);
  cr_assert_null(weft_current());
  /* ...and what can block a plain thread does (asyncio's run_coroutine_threadsafe().result()). */
  for (int i = 0; i < 3; i++) OK(weft_runtime_spawn(rt, &t[i], sleepy, IPTR(i)));
  void *res[3];
  OK(weft_gather(t, 3, res));
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(PINT(res[i]), i);
    weft_task_release(t[i]);
  }
  uint64_t start = weft_now_ns();
  OK(weft_sleep_ms(3)); /* a plain sleep */
  cr_assert_geq(weft_now_ns() - start, 3000000u);
  OK(weft_runtime_destroy(rt));
}

static void *null_functions(void *arg) {
  (void)arg;
  weft_task_t *t = NULL;
  cr_assert_eq(weft_spawn(&t, NULL, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_spawn(NULL, NULL, NULL), WEFT_EINVAL);
  cr_assert_null(t, "a failed spawn wrote a handle");
  weft_call_t calls[2] = {{one, IPTR(1)}, {NULL, NULL}};
  cr_assert_eq(weft_gather_calls(calls, 2, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_gather_calls(NULL, 2, NULL), WEFT_EINVAL);
  return IPTR(1);
}
Test(misuse, a_null_function_is_einval) {
  cr_assert_eq(PINT(run_on(1, null_functions, NULL)), 1);
  cr_assert_eq(weft_run(NULL, NULL, NULL, NULL), WEFT_EINVAL);
}

/* A task spawning without pause while another thread destroys the runtime: its spawns succeed
 * until the shutdown begins and then return WEFT_ESHUTDOWN; destroy waits for it to end. */
static atomic_int spawn_loop_ended_with;
static void *spawn_until_refused_by_shutdown(void *arg) {
  OK(weft_future_resolve(arg, NULL));
  int err;
  while ((err = weft_spawn(NULL, one, NULL)) == 0) {
  }
  atomic_store(&spawn_loop_ended_with, err);
  return NULL;
}
Test(misuse, spawning_while_the_runtime_shuts_down_is_eshutdown) {
  for (int round = 0; round < 5; round++) {
    atomic_store(&spawn_loop_ended_with, 0);
    weft_runtime_t *rt = test_runtime(2);
    weft_future_t *started;
    OK(weft_future_create(&started));
    OK(weft_runtime_spawn(rt, NULL, spawn_until_refused_by_shutdown, started));
    OK(weft_future_await(started, NULL));
    OK(weft_runtime_destroy(rt));
    cr_assert_eq(atomic_load(&spawn_loop_ended_with), WEFT_ESHUTDOWN, "the loop ended with %s",
                 weft_err_name(atomic_load(&spawn_loop_ended_with)));
    weft_future_destroy(started);
  }
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "shutdown mid-spawn leaked");
#endif
}

/* ---- fork() ---- */

/* A child of fork() has only the forking thread: a lock another thread of the parent held at
 * the fork stays held in the child for good unless the library releases it there, and the
 * child's first runtime, socket or offload waits forever (review, session 28). Each test stops
 * a thread of ours at a pause point (a lock just taken, or a poller or pool made and not yet
 * published), forks, and has the child use the whole library; alarm() turns a hang into a
 * failure. */

static sem_t lock_held, may_go_on;
static atomic_bool held_once; /* the pause holds only the first thread that reaches it */

static void hold_the_lock(void) {
  if (atomic_exchange(&held_once, true)) return;
  sem_post(&lock_held);
  while (sem_wait(&may_go_on) != 0) continue; /* EINTR */
}

static void *identity(void *arg) { return arg; }

static void *offload_once(void *arg) {
  void *r = NULL;
  int err = weft_offload(identity, arg, &r);
  return err ? NULL : r;
}

static void *sleep_then_seven(void *arg) {
  (void)arg;
  return weft_sleep_ms(20) ? NULL : (void *)7;
}

/* A runtime (the live list, the SIGSEGV handler), a listening socket (the poller), a task that
 * offloads a call (the blocking pool), a join that must wait (the caller a plain thread),
 * then its destroy (the handler again). 0, or the step that failed. */
static int use_the_library(void) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  weft_runtime_t *rt;
  if (weft_runtime_create(&rt, &o)) return 1;
  struct sockaddr_storage addr;
  socklen_t len;
  weft_sock_t *listener;
  if (weft_sock_addr("127.0.0.1", 0, &addr, &len)) return 2;
  if (weft_sock_listen(rt, (struct sockaddr *)&addr, len, 0, 0, &listener)) return 3;
  if (weft_sock_close(listener)) return 4;
  weft_task_t *t;
  void *r = NULL;
  if (weft_runtime_spawn(rt, &t, offload_once, &addr) || weft_join(t, &r)) return 5;
  if (r != &addr) return 6;
  if (weft_runtime_spawn(rt, &t, sleep_then_seven, NULL) || weft_join(t, &r)) return 7;
  if (r != (void *)7) return 8;
  return weft_runtime_destroy(rt) ? 9 : 0;
}

static void *use_the_library_in_a_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)use_the_library();
}

/* The child's verdict: exited 0, not killed by the alarm. */
static void assert_child_worked(pid_t child) {
  int status;
  cr_assert_eq(waitpid(child, &status, 0), child);
  cr_assert(!WIFSIGNALED(status), "the child was stuck (signal %d)",
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child's step %d failed",
            WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

static void skip_under_sanitizers(void) {
  /* TSan ends a child of a multi-threaded fork that starts a thread ("not supported"), and with
   * die_after_fork=0 it confuses the child's threads with the parent's ("dup thread"). */
  if (TEST_TSAN) cr_skip("TSan does not support threads started after a multi-threaded fork");
  /* gcc 12's ASan does not hold its allocator's locks across fork: a child forked while any
   * thread of ours allocates or frees (an idle worker's scavenger does) can wait forever on
   * ASan's lock (seen: the child in SizeClassAllocator64::GetFromAllocator). glibc's malloc
   * holds its own across fork. */
  if (TEST_ASAN) cr_skip("this ASan's allocator is not fork-safe");
}

/* The application's child handler of fork_while_held's second form: the library used inside
 * fork(), before weft's own child handlers have run. Armed by the test: it runs only then. */
static atomic_bool child_handler_armed;
static int child_handler_result = -1;
static void use_the_library_in_the_child_handler(void) {
  if (!atomic_load(&child_handler_armed)) return;
  alarm(30); /* a child stuck on the inherited lock dies of SIGALRM */
  child_handler_result = use_the_library();
}

/* Our thread is stopped at `point` (a lock just taken, or a poller or pool made and not yet
 * published) while we fork; it goes on once the child is done. The child uses the library
 * after fork() returned, or (in_child_handler) inside it, from a child handler registered
 * before weft's, which therefore runs first (review, session 30: it waited for good on the
 * live runtimes' lock a vanished thread held, which weft's handler had yet to make anew). */
static void fork_while_held_in(int point, bool in_child_handler, int (*child_work)(void)) {
  skip_under_sanitizers();
  if (in_child_handler) { /* no runtime yet in this test's process: ours comes before weft's */
    cr_assert_eq(pthread_atfork(NULL, NULL, use_the_library_in_the_child_handler), 0);
    atomic_store(&child_handler_armed, true);
  }
  sem_init(&lock_held, 0, 0);
  sem_init(&may_go_on, 0, 0);
  atomic_store(&held_once, false);
  weft__pause_set(point, hold_the_lock);
  pthread_t holder;
  cr_assert_eq(pthread_create(&holder, NULL, use_the_library_in_a_thread, NULL), 0);
  while (sem_wait(&lock_held) != 0) continue;
  pid_t child = fork();
  if (child == 0) {
    alarm(30); /* a child stuck on the inherited lock dies of SIGALRM */
    _exit(in_child_handler ? child_handler_result : child_work());
  }
  atomic_store(&child_handler_armed, false);
  cr_assert_gt(child, 0, "fork failed");
  assert_child_worked(child);
  weft__pause_set(point, NULL);
  sem_post(&may_go_on);
  void *holder_result;
  pthread_join(holder, &holder_result);
  cr_assert_eq((intptr_t)holder_result, 0, "the parent's thread failed at step %d",
               (int)(intptr_t)holder_result);
}

static void fork_while_held(int point) { fork_while_held_in(point, false, use_the_library); }

Test(fork, a_child_works_though_the_parent_held_the_live_runtimes_lock) {
  fork_while_held(WEFT__PAUSE_LIVE_LOCKED);
}

Test(fork, a_child_handler_run_before_weft_s_works_though_the_parent_held_the_live_lock) {
  fork_while_held_in(WEFT__PAUSE_LIVE_LOCKED, true, NULL);
}

Test(fork, a_child_handler_run_before_weft_s_works_though_the_parent_held_the_handlers_lock) {
  fork_while_held_in(WEFT__PAUSE_HANDLER_LOCKED, true, NULL);
}

/* A fork while the first worker installs weft's SIGSEGV handler: the child gets the
 * application's own handler back, not a stale or empty one (review, session 30: the install
 * swapped the handler in and saved the old one after, and a fork between the two left the
 * child's fork handler restoring SIG_DFL). Checked before and after the child uses weft. */
static void applications_segv(int sig) { (void)sig; }
static bool segv_is_the_applications(void) {
  struct sigaction now;
  return sigaction(SIGSEGV, NULL, &now) == 0 && !(now.sa_flags & SA_SIGINFO) &&
         now.sa_handler == applications_segv;
}
static int keeps_the_applications_segv_handler(void) {
  if (!segv_is_the_applications()) return 30;
  int step = use_the_library();
  if (step) return step;
  return segv_is_the_applications() ? 0 : 31;
}

Test(fork, a_fork_mid_install_leaves_the_child_the_applications_segv_handler) {
  struct sigaction app;
  memset(&app, 0, sizeof app);
  app.sa_handler = applications_segv;
  sigemptyset(&app.sa_mask);
  cr_assert_eq(sigaction(SIGSEGV, &app, NULL), 0);
  fork_while_held_in(WEFT__PAUSE_HANDLER_INSTALLED, false, keeps_the_applications_segv_handler);
}

Test(fork, a_child_works_though_the_parent_held_the_segv_handlers_lock) {
  fork_while_held(WEFT__PAUSE_HANDLER_LOCKED);
}

Test(fork, a_child_works_though_the_parent_was_making_a_poller) {
  fork_while_held(WEFT__PAUSE_POLLER_MADE);
}

Test(fork, a_child_works_though_the_parent_was_making_a_blocking_pool) {
  fork_while_held(WEFT__PAUSE_OFFLOAD_MADE);
}

/* A fork from a task: the child's thread is a plain thread there (not a worker of the dead
 * runtime: review, session 29, where the child's join parked it in that runtime's loop for
 * good), so it can make a runtime and wait on it; it must end with _exit or exec. */
static void *fork_from_a_task(void *arg) {
  (void)arg;
  pid_t child = fork();
  if (child == 0) {
    alarm(30);
    _exit(weft_current() ? 10 : use_the_library());
  }
  return (void *)(intptr_t)child;
}

Test(fork, a_child_forked_from_a_task_is_a_plain_thread_that_can_use_weft) {
  skip_under_sanitizers();
  pid_t child = (pid_t)(intptr_t)run_on(2, fork_from_a_task, NULL);
  cr_assert_gt(child, 0, "fork failed");
  assert_child_worked(child);
}

/* The same fork from a task, with an application's child handler registered before weft's
 * (so run first) that uses the library: its thread is plain already there (review, session
 * 30: weft's own handler had yet to clear it, and the handler's join parked in the dead
 * runtime's loop until SIGALRM). */
static void *fork_from_a_task_for_the_handler(void *arg) {
  (void)arg;
  pid_t child = fork();
  if (child == 0) _exit(child_handler_result); /* the handler's verdict */
  return (void *)(intptr_t)child;
}

Test(fork, a_child_handler_run_before_weft_s_in_a_child_forked_from_a_task_is_a_plain_thread) {
  skip_under_sanitizers();
  /* no runtime yet in this test's process: ours comes before weft's */
  cr_assert_eq(pthread_atfork(NULL, NULL, use_the_library_in_the_child_handler), 0);
  atomic_store(&child_handler_armed, true);
  pid_t child = (pid_t)(intptr_t)run_on(2, fork_from_a_task_for_the_handler, NULL);
  atomic_store(&child_handler_armed, false);
  cr_assert_gt(child, 0, "fork failed");
  assert_child_worked(child);
}

/* The "quiesce before fork" pattern: the application's prepare handler destroys its runtime
 * and its parent handler makes a new one. Registered before weft's own handlers (no runtime
 * yet), so their prepares run after weft's and their parent handler before weft's: weft must
 * hold nothing across fork() that a runtime's destroy or start waits on (review, session 29:
 * the SIGSEGV handler's lock, held across fork then, left the destroy joining workers that
 * waited on it). alarm() ends a test process that hangs. */
static weft_runtime_t *quiesced_rt;
static void destroy_before_fork(void) {
  if (weft_runtime_destroy(quiesced_rt)) abort();
  quiesced_rt = NULL;
}
static void *twice(void *arg) { return (void *)((intptr_t)arg * 2); }
static void recreate_after_fork(void) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  if (weft_runtime_create(&quiesced_rt, &o)) abort();
  weft_task_t *t;
  void *r;
  if (weft_runtime_spawn(quiesced_rt, &t, twice, (void *)21) || weft_join(t, &r) || r != (void *)42)
    abort();
}

/* In the child: the runtime our child handler made, run before weft's, is still a live one of
 * weft's (review, session 30: weft's handler, run after ours, took it off the live list and
 * zeroed the descriptor cache our spawn into it had bound, and put the pre-weft SIGSEGV
 * handler back under its workers). The handler is still the one a live runtime installs, and
 * a spawn into a third runtime evicts this thread's cache for it back to it. 0, or the step. */
static struct sigaction segv_while_a_runtime_lives; /* read in the parent */
static int the_child_handlers_runtime_is_intact(void) {
  struct sigaction now;
  if (sigaction(SIGSEGV, NULL, &now) || !(now.sa_flags & SA_SIGINFO) ||
      now.sa_sigaction != segv_while_a_runtime_lives.sa_sigaction)
    return 20;
  long returned = weft__probe_count(WEFT__PROBE_CACHE_RETURNED);
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  weft_runtime_t *others[2];
  for (int i = 0; i < 2; i++) { /* the second evicts the older of our two caches: quiesced_rt's */
    weft_task_t *t;
    void *r;
    if (weft_runtime_create(&others[i], &o)) return 21;
    if (weft_runtime_spawn(others[i], &t, twice, (void *)1) || weft_join(t, &r) || r != (void *)2)
      return 22;
  }
  if (weft__probe_count(WEFT__PROBE_CACHE_RETURNED) != returned + 1) return 23;
  for (int i = 0; i < 2; i++)
    if (weft_runtime_destroy(others[i])) return 24;
  return 0;
}

Test(fork, an_applications_fork_handlers_may_destroy_and_make_runtimes) {
  skip_under_sanitizers();
  cr_assert_eq(pthread_atfork(destroy_before_fork, recreate_after_fork, recreate_after_fork), 0);
  recreate_after_fork();
  OK(weft_runtime_destroy(quiesced_rt)); /* weft's handlers get registered: after ours */
  recreate_after_fork();
  cr_assert_eq(sigaction(SIGSEGV, NULL, &segv_while_a_runtime_lives), 0);
  alarm(60);
  for (int i = 0; i < 3; i++) {
    pid_t child = fork();
    if (child == 0) {
      alarm(30);
      int step = the_child_handlers_runtime_is_intact();
      _exit(step ? step : use_the_library() || weft_runtime_destroy(quiesced_rt) ? 1 : 0);
    }
    cr_assert_gt(child, 0, "fork failed");
    assert_child_worked(child);
  }
  alarm(0);
  OK(weft_runtime_destroy(quiesced_rt));
}
