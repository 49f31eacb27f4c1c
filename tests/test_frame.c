/* Strict fork-join frames (issue 13): weft_fork / weft_sync — results at 1-8 workers, a frame
 * taken by a thief (the owner's sync waits for it), frames of a task that suspends (they become
 * tasks), frame functions that suspend, nesting deeper than the deque, plain threads, a runner
 * that cannot be made (the sync runs the frame), a cancel during a sync, and the misuse aborts. */
#define _GNU_SOURCE /* memmem */
#include "support.h"

#include "../lib/internal.h" /* test-only fault injection hooks */

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *ffib(void *arg) {
  long n = (long)(intptr_t)arg;
  if (n < 2) return (void *)(intptr_t)n;
  weft_frame_t f;
  weft_fork(&f, ffib, (void *)(intptr_t)(n - 1));
  long b = (long)(intptr_t)ffib((void *)(intptr_t)(n - 2));
  long a = (long)(intptr_t)weft_sync(&f);
  return (void *)(intptr_t)(a + b);
}

static long fib_plain(long n) { return n < 2 ? n : fib_plain(n - 1) + fib_plain(n - 2); }

Test(frames, fib_is_right_at_1_2_4_8_workers) {
  long n = SCALE(25, 18);
  for (int workers = 1; workers <= 8; workers *= 2) {
    long r = (long)(intptr_t)run_on(workers, ffib, (void *)(intptr_t)n);
    cr_assert_eq(r, fib_plain(n), "fib(%ld) at %d workers: %ld", n, workers, r);
  }
}

/* ---- a thief takes the frame; the owner's sync waits for the thief's runner ---- */

static _Atomic int stolen_started, owner_released;

static void *slow_seven(void *arg) {
  (void)arg;
  atomic_store(&stolen_started, 1);
  while (!atomic_load(&owner_released)) weft_yield(); /* the owner is about to sync */
  cr_assert_eq(weft_sleep_ms(5), 0);                    /* still running when it syncs */
  return (void *)(intptr_t)7;
}

static void *steal_owner(void *arg) {
  (void)arg;
  atomic_store(&stolen_started, 0);
  atomic_store(&owner_released, 0);
  weft_task_t *self = weft_current();
  weft_frame_t f;
  weft_fork(&f, slow_seven, NULL);
  /* Busy without suspending (a suspension would detach the frame): only a thief can start it.
   * The other worker is parked, so the fork woke it and shared the frame. */
  uint64_t give_up = weft_now_ns() + 10ull * 1000 * 1000 * 1000;
  while (!atomic_load(&stolen_started) && weft_now_ns() < give_up) {
  }
  cr_assert(atomic_load(&stolen_started), "no other worker took the frame in 10 s");
  cr_assert_eq(weft_current(), self);
  atomic_store(&owner_released, 1);
  cr_assert_eq((intptr_t)weft_sync(&f), 7);
  return NULL;
}

Test(frames, a_frame_taken_by_a_thief_is_waited_for_at_its_sync) {
  for (int i = 0; i < SCALE(20, 5); i++) run_on(2, steal_owner, NULL);
}

/* ---- the owner suspends with frames forked: they become tasks ---- */

static void *times_ten(void *arg) { return (void *)((intptr_t)arg * 10); }

static void *suspend_with_frames(void *arg) {
  int how = (int)(intptr_t)arg;
  weft_frame_t f[5];
  for (int i = 0; i < 5; i++) weft_fork(&f[i], times_ten, (void *)(intptr_t)(i + 1));
  if (how == 0) cr_assert_eq(weft_sleep_ms(2), 0);
  else cr_assert_eq(weft_yield(), 0);
  long sum = 0;
  for (int i = 4; i >= 0; i--) sum += (long)(intptr_t)weft_sync(&f[i]);
  return (void *)(intptr_t)sum;
}

Test(frames, frames_of_a_task_that_sleeps_or_yields_before_syncing_still_return) {
  for (int workers = 1; workers <= 4; workers *= 2)
    for (int how = 0; how < 2; how++)
      cr_assert_eq((intptr_t)run_on(workers, suspend_with_frames, (void *)(intptr_t)how), 150);
}

/* A runner that cannot be made (no descriptor) leaves its frame to its sync. */
Test(frames, a_frame_whose_runner_cannot_be_made_runs_at_its_sync) {
  weft_runtime_t *rt = test_runtime(1);
  weft__fault_set(WEFT__FAULT_TASK, 2); /* the second descriptor: the first frame's runner */
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, suspend_with_frames, (void *)(intptr_t)1));
  void *r;
  OK(weft_join(t, &r));
  weft__fault_set(WEFT__FAULT_TASK, 0);
  cr_assert_eq((intptr_t)r, 150);
  OK(weft_runtime_destroy(rt));
}

/* ---- frame functions that suspend (sleep, yield, await) ---- */

static void *sleepy_tree(void *arg) {
  long depth = (long)(intptr_t)arg;
  if (depth == 0) {
    cr_assert_eq(weft_sleep_ns(20000), 0);
    return (void *)(intptr_t)1;
  }
  weft_frame_t a, b;
  weft_fork(&a, sleepy_tree, (void *)(intptr_t)(depth - 1));
  weft_fork(&b, sleepy_tree, (void *)(intptr_t)(depth - 1));
  if (depth % 3 == 0) cr_assert_eq(weft_yield(), 0);
  long rb = (long)(intptr_t)weft_sync(&b);
  long ra = (long)(intptr_t)weft_sync(&a);
  return (void *)(intptr_t)(ra + rb);
}

Test(frames, frame_functions_that_sleep_and_yield_count_every_leaf_once) {
  long depth = SCALE(10, 7);
  for (int workers = 1; workers <= 8; workers *= 2)
    cr_assert_eq((long)(intptr_t)run_on(workers, sleepy_tree, (void *)(intptr_t)depth),
                 1L << depth, "at %d workers", workers);
}

/* ---- nesting deeper than the deque: the extra forks run as calls at their syncs ---- */

static void *chain(void *arg) {
  long n = (long)(intptr_t)arg;
  if (n == 0) return (void *)(intptr_t)0;
  weft_frame_t f;
  weft_fork(&f, chain, (void *)(intptr_t)(n - 1));
  return (void *)(intptr_t)((long)(intptr_t)weft_sync(&f) + 1);
}

static void *deep_chain(void *arg) {
  (void)arg;
  weft_frame_t f[8]; /* fork a few first, so the chain's frames sit above them */
  for (int i = 0; i < 8; i++) weft_fork(&f[i], times_ten, (void *)(intptr_t)i);
  long depth = (long)(intptr_t)chain((void *)(intptr_t)(WEFT__FRAMES_CAP + 500));
  long sum = 0;
  for (int i = 7; i >= 0; i--) sum += (long)(intptr_t)weft_sync(&f[i]);
  return (void *)(intptr_t)(depth * 1000 + sum);
}

Test(frames, nesting_deeper_than_the_deque_runs_the_rest_as_calls) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  o.stack_size = 8u << 20; /* ~4600 nested calls of ~200 bytes each, sanitizers' frames bigger */
  void *r;
  OK(weft_run(&o, deep_chain, NULL, &r));
  cr_assert_eq((long)(intptr_t)r, (WEFT__FRAMES_CAP + 500L) * 1000 + 280);
}

/* ---- a plain thread: the fork is recorded, the sync runs it ---- */

Test(frames, on_a_plain_thread_the_sync_runs_the_call) {
  cr_assert_eq((long)(intptr_t)ffib((void *)(intptr_t)15), 610);
  weft_frame_t f;
  weft_fork(&f, times_ten, (void *)(intptr_t)4);
  cr_assert_eq((intptr_t)weft_sync(&f), 40);
}

/* ---- a cancel that arrives while the task waits in a sync ---- */

static void *cancel_in_sync(void *arg) {
  (void)arg;
  atomic_store(&stolen_started, 0);
  atomic_store(&owner_released, 0);
  weft_frame_t f;
  weft_fork(&f, slow_seven, NULL);
  uint64_t give_up = weft_now_ns() + 10ull * 1000 * 1000 * 1000;
  while (!atomic_load(&stolen_started) && weft_now_ns() < give_up) {
  }
  cr_assert(atomic_load(&stolen_started), "no other worker took the frame in 10 s");
  weft_cancel(weft_current()); /* pending: the sync must still wait and return the result */
  atomic_store(&owner_released, 1);
  cr_assert_eq((intptr_t)weft_sync(&f), 7);
  cr_assert_eq(weft_cancelling(), 1);
  cr_assert_eq(weft_yield(), WEFT_ECANCELED); /* the next suspension point delivers it */
  return NULL;
}

Test(frames, a_cancel_during_a_sync_is_delivered_at_the_next_suspension_point) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, cancel_in_sync, NULL));
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED);
  OK(weft_runtime_destroy(rt));
}

/* ---- a mix of spawns and frames at more workers than cores ---- */

static void *mixed(void *arg) {
  long n = (long)(intptr_t)arg;
  if (n < 2) return (void *)(intptr_t)n;
  if (n % 2) {
    weft_task_t *t;
    OK(weft_spawn(&t, mixed, (void *)(intptr_t)(n - 1)));
    long b = (long)(intptr_t)mixed((void *)(intptr_t)(n - 2));
    void *a;
    OK(weft_join(t, &a));
    return (void *)(intptr_t)((long)(intptr_t)a + b);
  }
  weft_frame_t f;
  weft_fork(&f, mixed, (void *)(intptr_t)(n - 1));
  long b = (long)(intptr_t)mixed((void *)(intptr_t)(n - 2));
  return (void *)(intptr_t)((long)(intptr_t)weft_sync(&f) + b);
}

Test(frames, spawns_and_frames_mixed_at_8_workers) {
  long n = SCALE(23, 16);
  for (int round = 0; round < 3; round++)
    cr_assert_eq((long)(intptr_t)run_on(8, mixed, (void *)(intptr_t)n), fib_plain(n));
}

/* ---- a frame synced at the API's full shield depth, with a cancel pending ---- */

static void *full_shield_sync(void *arg) {
  (void)arg;
  weft_frame_t f;
  weft_fork(&f, times_ten, (void *)(intptr_t)3);
  cr_assert_eq(weft_yield(), 0); /* detached: the sync waits on its word */
  int depth = 0;
  while (weft_shield_begin() == 0) depth++;
  cr_assert_eq(depth, 254);
  weft_cancel(weft_current());
  cr_assert_eq((intptr_t)weft_sync(&f), 30); /* no depth overflow, no early end */
  while (depth--) weft_shield_end();
  return NULL;
}

Test(frames, a_sync_at_the_full_shield_depth_with_a_cancel_pending_still_waits) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, full_shield_sync, NULL));
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED); /* delivered by the last shield_end */
  OK(weft_runtime_destroy(rt));
}

/* ---- a frame synced in a time-limited cleanup (a scope begun inside a shield) ---- */

/* Such a scope bounds the cleanup's waits, but not a sync: the frame's runner writes into our
 * stack, and weft_sync has no error to give (review, session 20: it aborted with "a shielded
 * frame wait ended early (-110)"). */
static void *napper(void *arg) {
  weft_sleep_ms(200); /* well past the cleanup's 50 ms, even with the parent preempted */
  return arg;
}

static void *sync_in_a_time_limited_cleanup(void *arg) {
  (void)arg;
  OK(weft_shield_begin());
  weft_deadline_t cleanup;
  /* 50 ms: the yield below checks the scope first, so a longer preemption before it failed
   * the test (review, session 35: 5 ms) */
  OK(weft_deadline_begin(&cleanup, weft_now_ns() + 50 * 1000000ull));
  weft_frame_t f;
  weft_fork(&f, napper, (void *)(intptr_t)42);
  cr_assert_eq(weft_yield(), 0); /* detached: its runner starts and sleeps */
  cr_assert_eq((intptr_t)weft_sync(&f), 42);
  cr_assert_eq(weft_sleep_ms(1000), WEFT_ETIMEDOUT, "the scope no longer bounds other waits");
  weft_deadline_end(&cleanup);
  OK(weft_shield_end());
  return NULL;
}

Test(frames, a_sync_in_a_shielded_cleanup_outlives_the_cleanups_deadline_scope) {
  run_on(1, sync_in_a_time_limited_cleanup, NULL);
}

/* ---- misuse: one sentence, then abort ---- */

static void *sync_out_of_order(void *arg) {
  (void)arg;
  weft_frame_t a, b;
  weft_fork(&a, times_ten, NULL);
  weft_fork(&b, times_ten, NULL);
  weft_sync(&a); /* aborts: b is the newest */
  weft_sync(&b);
  return NULL;
}

Test(frames_misuse, syncing_out_of_order_aborts, .signal = SIGABRT) {
  run_on(1, sync_out_of_order, NULL);
}

static void *sync_twice(void *arg) {
  (void)arg;
  weft_frame_t a;
  weft_fork(&a, times_ten, NULL);
  weft_sync(&a);
  weft_sync(&a); /* aborts */
  return NULL;
}

Test(frames_misuse, syncing_twice_aborts, .signal = SIGABRT) { run_on(1, sync_twice, NULL); }

static void *forget_sync(void *arg) {
  (void)arg;
  static weft_frame_t a; /* static: the abort must come from the check, not a dead frame */
  weft_fork(&a, times_ten, NULL);
  return NULL; /* aborts: returned without syncing */
}

Test(frames_misuse, returning_without_a_sync_aborts, .signal = SIGABRT) {
  run_on(1, forget_sync, NULL);
}

static void *forget_sync_after_a_yield(void *arg) {
  (void)arg;
  static weft_frame_t a; /* static: the abort must come from the check, not a dead frame */
  weft_fork(&a, times_ten, NULL);
  cr_assert_eq(weft_yield(), 0); /* detached: a runner has it */
  return NULL;                   /* aborts: returned with a detached frame unsynced */
}

Test(frames_misuse, returning_without_a_sync_after_a_suspension_aborts, .signal = SIGABRT) {
  run_on(1, forget_sync_after_a_yield, NULL);
}

Test(frames_misuse, syncing_a_deferred_frame_twice_aborts, .signal = SIGABRT) {
  weft_frame_t a; /* a plain thread: the frame is deferred to its sync */
  weft_fork(&a, times_ten, NULL);
  weft_sync(&a);
  weft_sync(&a); /* aborts */
}

/* ---- misuse by a child run inline (review, session 31): its own frame left unsynced ---- */

/* Set by the root task once the misuse is behind it: the abort must come before. */
static atomic_int past_the_misuse;
static void say_past_the_misuse(void) { atomic_store(&past_the_misuse, 1); }

/* The abort's check (async-signal-safe: read, memmem, _exit): the process exits 42 if the abort
 * came before the root task went past the misuse and stderr (a file here) holds `sentence`. A
 * forked child would be simpler, but TSan refuses threads after a fork of Criterion's
 * multi-threaded test process. */
static int stderr_file = -1;
static const char *abort_sentence;
static void check_the_abort(int sig) {
  (void)sig;
  static char out[8192];
  ssize_t got = pread(stderr_file, out, sizeof out, 0);
  bool said = got > 0 && memmem(out, (size_t)got, abort_sentence, strlen(abort_sentence));
  _exit(said && !atomic_load(&past_the_misuse) ? 42 : 1);
}

/* Runs fn as the root task of a 1-worker runtime; the test expects exit code 42 (see
 * check_the_abort). */
static void aborts_saying(weft_fn fn, const char *sentence) {
  char path[] = "/tmp/weft-test-frame-XXXXXX";
  stderr_file = mkstemp(path);
  cr_assert_geq(stderr_file, 0);
  unlink(path);
  abort_sentence = sentence;
  cr_assert_neq(dup2(stderr_file, 2), -1);
  signal(SIGABRT, check_the_abort);
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  weft_run(&o, fn, NULL, NULL);
  _exit(2); /* no abort at all */
}

static const char unsynced[] = "a task returned without weft_sync of a frame it forked";

/* Forks a frame on its own stack and returns without syncing it. (A child that suspends with
 * the frame out, which detaches it, is caught only when its awaiter's task ends: docs/api.md,
 * weft_fork.) */
static void *leave_a_frame(void *arg) {
  (void)arg;
  weft_frame_t f; /* on this stack: dead once we return, which is the misuse */
  weft_fork(&f, times_ten, NULL);
  return NULL;
}

static void *join_a_child_that_leaves_a_frame(void *arg) {
  (void)arg;
  weft_task_t *c;
  OK(weft_spawn(&c, leave_a_frame, NULL));
  weft_join(c, NULL); /* runs c inline: the newest entry of our deque */
  say_past_the_misuse();
  cr_assert_eq(weft_yield(), 0); /* without the check, the dead frame is detached here */
  return NULL;
}

static void *await_a_child_that_leaves_a_frame(void *arg) {
  (void)arg;
  weft_task_t *c;
  OK(weft_spawn(&c, leave_a_frame, NULL));
  weft_await(c, NULL); /* run_inline: the generic inline path */
  say_past_the_misuse();
  cr_assert_eq(weft_yield(), 0);
  weft_task_release(c);
  return NULL;
}

static void *gather_a_child_that_leaves_a_frame(void *arg) {
  (void)arg;
  weft_task_t *c;
  OK(weft_spawn(&c, leave_a_frame, NULL));
  weft_gather(&c, 1, NULL); /* gather's inline pass */
  say_past_the_misuse();
  cr_assert_eq(weft_yield(), 0);
  weft_task_release(c);
  return NULL;
}

Test(frames_misuse, a_child_joined_inline_that_returns_without_a_sync_aborts, .exit_code = 42) {
  aborts_saying(join_a_child_that_leaves_a_frame, unsynced);
}
Test(frames_misuse, a_child_awaited_inline_that_returns_without_a_sync_aborts, .exit_code = 42) {
  aborts_saying(await_a_child_that_leaves_a_frame, unsynced);
}
Test(frames_misuse, a_child_gathered_inline_that_returns_without_a_sync_aborts, .exit_code = 42) {
  aborts_saying(gather_a_child_that_leaves_a_frame, unsynced);
}

/* A detached frame synced from a plain thread aborts with a sentence (review, session 31: it
 * read a NULL current task, a SIGSEGV). */
static weft_frame_t *_Atomic handed_over;
static void *fork_detach_and_hand_over(void *arg) {
  (void)arg;
  weft_frame_t f;
  weft_fork(&f, times_ten, NULL);
  cr_assert_eq(weft_yield(), 0); /* detached: a runner has it */
  atomic_store(&handed_over, &f);
  weft_sleep_ms(60000); /* the process aborts meanwhile */
  weft_sync(&f);
  return NULL;
}
Test(frames_misuse, syncing_a_detached_frame_from_a_plain_thread_aborts, .signal = SIGABRT) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, fork_detach_and_hand_over, NULL));
  weft_frame_t *f;
  while (!(f = atomic_load(&handed_over))) sched_yield();
  weft_sync(f); /* aborts */
}
