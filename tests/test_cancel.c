/* Cancellation (Tokio's matrix): a target task is cancelled in each state it can be in — not
 * started, running, sleeping, awaiting a task, awaiting a future, inside gather, inside an
 * inlined gather_calls child, yielding, shielded, finished — from a task, from a plain thread,
 * and racing the event that would finish it. Every cell must end with exactly one outcome:
 * the result (42) or WEFT_ECANCELED with a NULL result. Then: stickiness, shields, task
 * errors, wait_for, wait_any, argument order, and a storm of cancelled sleepers. */
#include "support.h"
#include "../lib/internal.h" /* the timer wheel's count, for the storm */

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HOUR_NS (3600ull * 1000000000u)
#define SEC_NS 1000000000ull

typedef enum {
  NOT_STARTED,
  RUNNING,
  SLEEPING,
  AWAITING_TASK,
  AWAITING_FUTURE,
  IN_GATHER,
  IN_GATHER_CALLS_INLINE,
  YIELDING,
  SHIELDED,
  FINISHED,
  STATES
} state_t;

static const char *state_name[STATES] = {
    "not started", "running",  "sleeping", "awaiting a task", "awaiting a future",
    "in gather",   "in an inlined gather_calls child", "yielding", "shielded", "finished"};

typedef struct {
  state_t state;
  atomic_int reached;  /* the target is at (or about to enter) the state */
  atomic_int go;       /* RUNNING: leave the busy loop */
  atomic_int body_ran; /* NOT_STARTED: the body must never run */
  atomic_int child_started; /* AWAITING_TASK: the child runs on a stack of its own */
  weft_future_t *release; /* what the blocked states wait for, resolved by the test at the end */
  int shield_end;      /* SHIELDED: what weft_shield_end answered */
  int shielded_wait;   /* SHIELDED: what the wait inside the shield answered */
} cell_t;

static void *await_release(void *arg) {
  cell_t *c = arg;
  atomic_store(&c->child_started, 1);
  if (c->state != AWAITING_TASK) atomic_store(&c->reached, 1);
  void *v = NULL;
  int err = weft_future_await(c->release, &v);
  return err ? weft_fail(err) : IPTR(7);
}

static void *target(void *arg) {
  cell_t *c = arg;
  int err = 0;
  switch (c->state) {
  case NOT_STARTED:
    atomic_store(&c->body_ran, 1);
    break;
  case RUNNING:
    atomic_store(&c->reached, 1);
    while (!atomic_load(&c->go)) {
    }
    err = weft_yield(); /* the next suspension point delivers it */
    break;
  case SLEEPING:
    atomic_store(&c->reached, 1);
    err = weft_sleep_ns(HOUR_NS);
    break;
  case AWAITING_TASK: {
    weft_task_t *child;
    OK(weft_spawn(&child, await_release, c));
    /* Let it start on its own stack (else the join would run it inline, as part of us). */
    while (!atomic_load(&c->child_started)) weft_yield();
    atomic_store(&c->reached, 1);
    err = weft_join(child, NULL); /* a cancelled join cancels and awaits its child */
    break;
  }
  case AWAITING_FUTURE:
    atomic_store(&c->reached, 1);
    err = weft_future_await(c->release, NULL);
    break;
  case IN_GATHER: {
    weft_task_t *kids[2];
    OK(weft_spawn(&kids[0], await_release, c));
    OK(weft_spawn(&kids[1], await_release, c));
    err = weft_gather(kids, 2, NULL);
    for (int i = 0; i < 2; i++) {
      int kid_err = weft_join(kids[i], NULL);
      cr_assert(kid_err == 0 || kid_err == WEFT_ECANCELED, "a gathered child: %s",
                weft_err_name(kid_err));
    }
    break;
  }
  case IN_GATHER_CALLS_INLINE: {
    weft_call_t calls[2] = {{await_release, c}, {await_release, c}};
    err = weft_gather_calls(calls, 2, NULL);
    break;
  }
  case YIELDING:
    atomic_store(&c->reached, 1);
    while (!(err = weft_yield())) {
    }
    break;
  case SHIELDED:
    OK(weft_shield_begin());
    atomic_store(&c->reached, 1);
    c->shielded_wait = weft_future_await(c->release, NULL);
    c->shield_end = weft_shield_end();
    err = weft_yield();
    break;
  case FINISHED:
  case STATES:
    break;
  }
  return err ? weft_fail(err) : IPTR(42);
}

typedef enum { FROM_TASK, FROM_THREAD, RACING } source_t;

/* A task on the same runtime that holds the only worker, without suspending (a suspension
 * would free the worker to start the target), until released (NOT_STARTED). */
typedef struct {
  atomic_int running, release;
} hold_t;

static void *hold_worker(void *arg) {
  hold_t *h = arg;
  atomic_store(&h->running, 1);
  while (!atomic_load(&h->release)) {
  }
  return NULL;
}

static void wait_reached(cell_t *c) {
  while (!atomic_load(&c->reached)) sched_yield(); /* an event from the target itself */
}

/* Cancels the target as the source would, then lets every blocked state finish. */
static void cancel_cell(cell_t *c, weft_task_t *t, source_t source, uint64_t *seed) {
  if (c->state == FINISHED) {
    while (!weft_task_done(t)) sched_yield();
  } else if (c->state != NOT_STARTED && source != RACING) {
    wait_reached(c);
  }
  if (source == RACING) { /* the finishing event and the cancel, in a random order */
    if (c->state == RUNNING) wait_reached(c);
    bool first = test_rand(seed) & 1;
    if (first) OK(weft_cancel(t));
    atomic_store(&c->go, 1);
    weft_future_resolve(c->release, NULL);
    if (!first) OK(weft_cancel(t));
  } else {
    OK(weft_cancel(t));
    atomic_store(&c->go, 1);
    weft_future_resolve(c->release, NULL); /* EALREADY is fine: resolved by a racing source */
  }
}

static void check_outcome(cell_t *c, int err, void *result, source_t source) {
  const char *where = state_name[c->state];
  cr_assert(err == 0 || err == WEFT_ECANCELED, "%s: %s", where, weft_err_name(err));
  if (err == 0) {
    cr_assert_eq(PINT(result), 42, "%s: a result of %ld", where, PINT(result));
  } else {
    cr_assert_null(result, "%s: WEFT_ECANCELED with a result beside it", where);
  }
  bool must_cancel = source != RACING && c->state != FINISHED;
  bool may_cancel = c->state != FINISHED;
  if (must_cancel) cr_assert_eq(err, WEFT_ECANCELED, "%s: the cancel was lost", where);
  if (!may_cancel) cr_assert_eq(err, 0, "%s: a finished task reads as cancelled", where);
  if (c->state == NOT_STARTED && source != RACING)
    cr_assert_eq(atomic_load(&c->body_ran), 0, "a task cancelled before it started ran");
  if (c->state == SHIELDED && source != RACING) {
    cr_assert_eq(c->shielded_wait, 0, "a shielded wait was interrupted");
    cr_assert_eq(c->shield_end, WEFT_ECANCELED, "the shield's end did not report the cancel");
  }
}

typedef struct {
  state_t state;
  source_t source;
  uint64_t seed;
} cell_run_t;

/* One cell, run by the canceller: a task (FROM_TASK) or the test's thread. */
static void *run_cell(void *arg) {
  cell_run_t *r = arg;
  cell_t c;
  memset(&c, 0, sizeof c);
  c.state = r->state;
  OK(weft_future_create(&c.release));
  hold_t hold = {0, 0};
  bool held = false;
  bool on_worker = weft_current() != NULL;
  weft_runtime_t *rt = NULL;
  if (!on_worker) rt = test_runtime(c.state == NOT_STARTED ? 1 : 2);
  weft_task_t *blocker = NULL, *t;
  if (c.state == NOT_STARTED && !on_worker) { /* the only worker is busy: t stays queued */
    OK(weft_runtime_spawn(rt, &blocker, hold_worker, &hold));
    while (!atomic_load(&hold.running)) sched_yield();
    held = true;
  }
  /* From a task, a spawn lands in our own deque; we are running, so it is not started. */
  OK(on_worker ? weft_spawn(&t, target, &c) : weft_runtime_spawn(rt, &t, target, &c));
  cancel_cell(&c, t, r->source, &r->seed);
  if (held) {
    atomic_store(&hold.release, 1);
    OK(weft_join(blocker, NULL));
  }
  void *result = IPTR(-1);
  int err = weft_join(t, &result);
  check_outcome(&c, err, result, r->source);
  if (rt) OK(weft_runtime_destroy(rt));
  weft_future_destroy(c.release);
  return NULL;
}

static void run_matrix(source_t source, int rounds) {
  uint64_t seed = test_seed();
  for (int round = 0; round < rounds; round++)
    for (state_t s = 0; s < STATES; s++) {
      cell_run_t r = {s, source, test_rand(&seed)};
      if (source == FROM_TASK && s != NOT_STARTED)
        run_on(3, run_cell, &r); /* we spin on one worker while the target runs on another */
      else if (source == FROM_TASK)
        run_on(1, run_cell, &r); /* one worker, and we hold it: the target cannot start */
      else
        run_cell(&r);
    }
}

Test(cancel, every_state_cancelled_from_a_plain_thread_has_exactly_one_outcome, .timeout = 300) {
  run_matrix(FROM_THREAD, SCALE(5, 2));
}

Test(cancel, every_state_cancelled_from_a_task_has_exactly_one_outcome, .timeout = 300) {
  run_matrix(FROM_TASK, SCALE(5, 2));
}

Test(cancel, every_state_cancelled_while_it_completes_has_exactly_one_outcome, .timeout = 600) {
  run_matrix(RACING, SCALE(40, 5));
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "the matrix leaked");
#endif
}

/* ---- semantics ---- */

static void *sticky(void *arg) {
  (void)arg;
  atomic_int *reached = arg;
  atomic_store(reached, 1);
  int first = weft_sleep_ns(HOUR_NS);
  int second = weft_sleep_ns(HOUR_NS); /* returns at once: the cancel is sticky */
  int third = weft_yield();
  cr_assert_eq(first, WEFT_ECANCELED);
  cr_assert_eq(second, WEFT_ECANCELED);
  cr_assert_eq(third, WEFT_ECANCELED);
  cr_assert_eq(weft_cancelling(), 1);
  return IPTR(1);
}

Test(cancel, a_cancel_is_sticky_at_every_later_suspension_point) {
  weft_runtime_t *rt = test_runtime(2);
  atomic_int reached = 0;
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, sticky, &reached));
  while (!atomic_load(&reached)) sched_yield();
  OK(weft_cancel(t));
  OK(weft_cancel(t)); /* twice is once */
  void *r = IPTR(5);
  cr_assert_eq(weft_join(t, &r), WEFT_ECANCELED);
  cr_assert_null(r);
  OK(weft_runtime_destroy(rt));
}

static void *nested_shields(void *arg) {
  atomic_int *reached = arg;
  OK(weft_shield_begin());
  OK(weft_shield_begin());
  atomic_store(reached, 1);
  while (!weft_cancelling()) weft_yield(); /* shielded: yields do not deliver it */
  cr_assert_eq(weft_sleep_ns(1000000), 0, "a shielded sleep was interrupted");
  cr_assert_eq(weft_shield_end(), 0, "an inner shield's end is not the outermost");
  cr_assert_eq(weft_shield_end(), WEFT_ECANCELED);
  cr_assert_eq(weft_sleep_ns(HOUR_NS), WEFT_ECANCELED, "delivered after the shield");
  return IPTR(1);
}

Test(cancel, shields_nest_and_deliver_the_cancel_when_the_outermost_ends) {
  weft_runtime_t *rt = test_runtime(2);
  atomic_int reached = 0;
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, nested_shields, &reached));
  while (!atomic_load(&reached)) sched_yield();
  OK(weft_cancel(t));
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED);
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(weft_shield_begin(), WEFT_EPERM, "a plain thread has no shield");
}

/* ---- task errors ---- */

static void *fail_with(void *arg) { return PINT(arg) < 0 ? weft_fail((int)PINT(arg)) : arg; }

static void *gather_errors(void *arg) {
  (void)arg;
  weft_task_t *t[4];
  long codes[4] = {1, -5, 3, -7};
  for (int i = 0; i < 4; i++) OK(weft_spawn(&t[i], fail_with, IPTR(codes[i])));
  void *results[4];
  cr_assert_eq(weft_gather(t, 4, results), -5, "gather reports the first error in order");
  cr_assert_eq(PINT(results[0]), 1, "and still fills the other results");
  cr_assert_eq(PINT(results[2]), 3);
  int errors[4];
  OK(weft_gather_status(t, 4, results, errors));
  cr_assert(errors[0] == 0 && errors[1] == -5 && errors[2] == 0 && errors[3] == -7);
  for (int i = 0; i < 4; i++) cr_assert_eq(weft_join(t[i], NULL), codes[i] < 0 ? codes[i] : 0);
  weft_call_t calls[3] = {{fail_with, IPTR(1)}, {fail_with, IPTR(-9)}, {fail_with, IPTR(-4)}};
  cr_assert_eq(weft_gather_calls(calls, 3, results), -9);
  return NULL;
}

Test(errors, tasks_end_with_their_own_errors_and_gather_reports_the_first) {
  run_on(2, gather_errors, NULL);
}

/* ---- wait_for, wait_any ---- */

static atomic_int saw_cancel;
static void *slow(void *arg) {
  int err = weft_sleep_ns(PINT(arg) ? (uint64_t)PINT(arg) : HOUR_NS);
  if (err == WEFT_ECANCELED) atomic_store(&saw_cancel, 1);
  return err ? weft_fail(err) : IPTR(42);
}

static void *wait_for_cases(void *arg) {
  (void)arg;
  weft_task_t *t;
  OK(weft_spawn(&t, slow, NULL));
  uint64_t t0 = weft_now_ns();
  cr_assert_eq(weft_await_for(t, 20 * 1000000u, NULL), WEFT_ETIMEDOUT);
  cr_assert_geq(weft_now_ns() - t0, 20 * 1000000u, "wait_for timed out early");
  cr_assert(weft_task_done(t) == 1, "wait_for returned before the task unwound");
  cr_assert_eq(atomic_load(&saw_cancel), 1, "the task saw no cancel");
  weft_task_release(t);
  OK(weft_spawn(&t, slow, IPTR(1000000)));
  void *r = NULL;
  OK(weft_await_for(t, HOUR_NS, &r));
  cr_assert_eq(PINT(r), 42);
  weft_task_release(t);
  return NULL;
}

Test(cancel, wait_for_cancels_on_its_deadline_and_waits_for_the_unwinding) {
  run_on(2, wait_for_cases, NULL);
}

static void *wait_any_cases(void *arg) {
  (void)arg;
  weft_task_t *t[3];
  OK(weft_spawn(&t[0], slow, NULL));
  OK(weft_spawn(&t[1], slow, IPTR(2000000)));
  OK(weft_spawn(&t[2], slow, NULL));
  size_t index = 99;
  OK(weft_wait_any(t, 3, UINT64_MAX, &index));
  cr_assert_eq(index, 1, "the first to finish is t[1], not t[%zu]", index);
  weft_task_t *rest[2] = {t[0], t[2]};
  cr_assert_eq(weft_wait_any(rest, 2, weft_now_ns() + 5000000, &index), WEFT_ETIMEDOUT);
  for (int i = 0; i < 3; i++) weft_cancel(t[i]);
  for (int i = 0; i < 3; i++) weft_join(t[i], NULL);
  return NULL;
}

Test(cancel, wait_any_returns_the_first_done_and_honours_its_deadline) {
  run_on(2, wait_any_cases, NULL);
  weft_runtime_t *rt = test_runtime(2); /* and from a plain thread */
  weft_task_t *t[2];
  OK(weft_runtime_spawn(rt, &t[0], slow, NULL));
  OK(weft_runtime_spawn(rt, &t[1], slow, IPTR(1000000)));
  size_t index = 99;
  OK(weft_wait_any(t, 2, UINT64_MAX, &index));
  cr_assert_eq(index, 1);
  weft_cancel(t[0]);
  weft_join(t[0], NULL);
  weft_join(t[1], NULL);
  OK(weft_runtime_destroy(rt));
}

/* ---- deadline scopes (asyncio.timeout) ---- */

static void *scoped(void *arg) {
  (void)arg;
  weft_deadline_t outer, inner;
  weft_task_t *t;
  OK(weft_spawn(&t, slow, NULL));
  OK(weft_yield()); /* t starts on a stack of its own (an await would otherwise run it inline) */
  uint64_t t0 = weft_now_ns();
  OK(weft_deadline_begin(&outer, t0 + HOUR_NS));
  OK(weft_deadline_begin(&inner, t0 + 20 * 1000000u));
  cr_assert_eq(weft_sleep_ns(HOUR_NS), WEFT_ETIMEDOUT, "the scope bounds a sleep");
  cr_assert_geq(weft_now_ns() - t0, 20 * 1000000u, "the scope's deadline came early");
  cr_assert_eq(weft_await(t, NULL), WEFT_ETIMEDOUT, "every later wait in it times out at once");
  cr_assert_eq(weft_yield(), WEFT_ETIMEDOUT);
  cr_assert_eq(weft_deadline_end(&inner), WEFT_ETIMEDOUT);
  OK(weft_sleep_ns(1000000)); /* the outer scope's deadline is an hour away */
  OK(weft_deadline_end(&outer));
  weft_cancel(t);
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED, "the awaited task was not bounded by it");
  return NULL;
}

/* A scope begun again before its end (a retry loop that skips weft_deadline_end) would link to
 * itself, and the next shielded wait's walk of the scopes would never end (review, session
 * 25): it aborts with a sentence instead, here with another scope in between. */
static void *scope_begun_twice(void *arg) {
  (void)arg;
  weft_deadline_t a, b;
  OK(weft_deadline_begin(&a, weft_now_ns() + HOUR_NS));
  OK(weft_deadline_begin(&b, weft_now_ns() + HOUR_NS));
  weft_deadline_begin(&a, weft_now_ns() + HOUR_NS);
  return NULL;
}

Test(cancel, a_scope_begun_again_before_its_end_aborts, .signal = SIGABRT) {
  run_on(1, scope_begun_twice, NULL);
}

Test(cancel, a_deadline_scope_bounds_every_wait_of_its_task_and_nests) {
  run_on(2, scoped, NULL);
  weft_deadline_t s;
  cr_assert_eq(weft_deadline_begin(&s, 0), WEFT_EPERM, "a plain thread has no scope");
}

/* A shield holds back the scopes begun outside it, and only those: a scope begun inside the
 * shield bounds the shielded waits, and once the shield ends the outer scope applies again
 * (review, session 19: a scope begun in a shield was ignored there, and its effective deadline
 * forgot the outer scope's for good). */
static void *scopes_and_shields(void *arg) {
  (void)arg;
  weft_deadline_t outer, inner;
  uint64_t t0 = weft_now_ns();
  OK(weft_deadline_begin(&outer, t0 + 20 * 1000000u));
  OK(weft_shield_begin());
  OK(weft_sleep_ns(40 * 1000000u)); /* the outer scope is held back: a full sleep */
  OK(weft_deadline_begin(&inner, weft_now_ns() + 20 * 1000000u));
  /* 2 s, not an hour: a wrong answer should fail the test, not hang it */
  cr_assert_eq(weft_sleep_ns(2 * SEC_NS), WEFT_ETIMEDOUT, "a scope begun in the shield bounds it");
  OK(weft_shield_end()); /* no cancel pending */
  /* Unshielded, both scopes apply: the outer one (passed long ago) times the next wait out. */
  cr_assert_eq(weft_sleep_ns(2 * SEC_NS), WEFT_ETIMEDOUT, "the outer scope was forgotten");
  cr_assert_eq(weft_deadline_end(&inner), WEFT_ETIMEDOUT);
  cr_assert_eq(weft_deadline_end(&outer), WEFT_ETIMEDOUT);
  /* A shield begun inside a scope whose deadline lies far off, with a near one begun inside
   * the shield, then the shield ended: the near inner deadline still rules. */
  OK(weft_deadline_begin(&outer, weft_now_ns() + HOUR_NS));
  OK(weft_shield_begin());
  OK(weft_deadline_begin(&inner, weft_now_ns() + 20 * 1000000u));
  OK(weft_shield_end());
  cr_assert_eq(weft_sleep_ns(2 * SEC_NS), WEFT_ETIMEDOUT);
  /* A later shield at the same depth holds that scope back: it was begun outside this one
   * (review of session 19's first version: the depth alone took it for this shield's). */
  OK(weft_shield_begin());
  OK(weft_sleep_ns(40 * 1000000u));
  OK(weft_shield_end());
  cr_assert_eq(weft_deadline_end(&inner), WEFT_ETIMEDOUT);
  OK(weft_deadline_end(&outer));
  return NULL;
}

Test(cancel, a_shield_holds_back_only_the_scopes_begun_outside_it) {
  run_on(2, scopes_and_shields, NULL);
}

/* A wait whose deadline has passed (0: a poll, or an expired scope) still reports what is done
 * already, from a task as from a plain thread (review, session 19: a task got WEFT_ETIMEDOUT). */
static void *poll_done(void *arg) {
  (void)arg;
  weft_task_t *t[2];
  OK(weft_spawn(&t[0], slow, NULL));
  OK(weft_spawn(&t[1], slow, IPTR(1000000)));
  OK(weft_await(t[1], NULL)); /* done */
  size_t index = 99;
  OK(weft_wait_any(t, 2, 0, &index));
  cr_assert_eq(index, 1);
  cr_assert_eq(weft_wait_any(t, 1, 0, &index), WEFT_ETIMEDOUT, "t[0] is not done");
  weft_future_t *f;
  OK(weft_future_create(&f));
  cr_assert_eq(weft_future_await_until(f, 0, NULL), WEFT_ETIMEDOUT);
  OK(weft_future_resolve(f, IPTR(7)));
  void *v = NULL;
  OK(weft_future_await_until(f, 0, &v));
  cr_assert_eq(PINT(v), 7);
  weft_deadline_t scope;
  OK(weft_deadline_begin(&scope, 0)); /* expired */
  OK(weft_gather(&t[1], 1, NULL));
  cr_assert_eq(weft_gather(t, 2, NULL), WEFT_ETIMEDOUT);
  cr_assert_eq(weft_deadline_end(&scope), WEFT_ETIMEDOUT);
  weft_future_destroy(f);
  weft_cancel(t[0]);
  cr_assert_eq(weft_join(t[0], NULL), WEFT_ECANCELED);
  OK(weft_join(t[1], NULL));
  return NULL;
}

Test(cancel, a_passed_deadline_still_reports_what_is_done) { run_on(2, poll_done, NULL); }

/* A cancel pending wins over a passed deadline scope at every suspension point, as at
 * weft_yield (review, session 32: they answered WEFT_ETIMEDOUT, so the cancel was never
 * delivered there, and a loop ignoring it never parked past destroy's shutdown). */
static void *cancelled_in_a_passed_scope(void *arg) {
  (void)arg;
  weft_task_t *child;
  OK(weft_spawn(&child, slow, NULL)); /* an hour */
  weft_chan_t *ch;
  OK(weft_chan_create(&ch, 1));
  weft_future_t *f;
  OK(weft_future_create(&f));
  weft_sem_t *sem;
  OK(weft_sem_create(&sem, 0, 0));
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  weft_sock_t *sock;
  OK(weft_sock_open(NULL, sv[0], &sock));
  weft_deadline_t scope;
  OK(weft_deadline_begin(&scope, 1)); /* long passed */
  OK(weft_cancel(weft_current()));
  void *v;
  size_t index;
  cr_expect_eq(weft_sleep_ms(10), WEFT_ECANCELED, "sleep");
  cr_expect_eq(weft_await_until(child, UINT64_MAX, NULL), WEFT_ECANCELED, "await_until");
  cr_expect_eq(weft_wait_any(&child, 1, UINT64_MAX, &index), WEFT_ECANCELED, "wait_any");
  cr_expect_eq(weft_chan_recv(ch, &v, UINT64_MAX), WEFT_ECANCELED, "chan_recv");
  cr_expect_eq(weft_future_await(f, &v), WEFT_ECANCELED, "future_await");
  cr_expect_eq(weft_sem_acquire(sem, UINT64_MAX), WEFT_ECANCELED, "sem_acquire");
  cr_expect_eq(weft_sock_read(sock, &v, sizeof v, UINT64_MAX), WEFT_ECANCELED, "sock_read");
  cr_expect_eq(weft_yield(), WEFT_ECANCELED, "yield");
  cr_expect_eq(weft_gather(NULL, 0, NULL), 0, "an empty gather waits for nothing");
  cr_expect_eq(weft_deadline_end(&scope), WEFT_ETIMEDOUT);
  OK(weft_cancel(child));
  OK(weft_shield_begin());
  cr_expect_eq(weft_join(child, NULL), WEFT_ECANCELED);
  weft_shield_end();
  OK(weft_sock_close(sock));
  close(sv[1]);
  weft_sem_destroy(sem);
  weft_future_destroy(f);
  weft_chan_destroy(ch);
  return NULL;
}

Test(cancel, a_cancel_pending_wins_over_a_passed_scope_at_every_suspension_point) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, cancelled_in_a_passed_scope, NULL));
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED, "it ends cancelled");
  OK(weft_runtime_destroy(rt));
}

/* A gatherer cancelled while it runs its children inline starts no more of them: those not yet
 * started end unrun (review, session 19: the inline pass ran every one). One worker: the
 * children run inline one after another; the first cancels its gatherer. */
typedef struct {
  weft_task_t *gatherer;
  atomic_int ran;
} inline_cancel_t;

static inline_cancel_t inline_cancel;

static void *count_and_cancel_gatherer(void *arg) {
  if (atomic_fetch_add(&inline_cancel.ran, 1) == 0) OK(weft_cancel(inline_cancel.gatherer));
  return arg;
}

static void *gather_inline_then_cancelled(void *arg) {
  (void)arg;
  inline_cancel.gatherer = weft_current();
  weft_call_t calls[5];
  for (int i = 0; i < 5; i++) calls[i] = (weft_call_t){count_and_cancel_gatherer, IPTR(i)};
  cr_assert_eq(weft_gather_calls(calls, 5, NULL), WEFT_ECANCELED);
  cr_assert_eq(atomic_load(&inline_cancel.ran), 1, "%d children started after the cancel",
               atomic_load(&inline_cancel.ran) - 1);
  return NULL;
}

Test(cancel, a_cancelled_gatherer_starts_no_more_children_inline) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, gather_inline_then_cancelled, NULL));
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED);
  OK(weft_runtime_destroy(rt)); /* the four cancelled children end (unrun) by now */
  cr_assert_eq(atomic_load(&inline_cancel.ran), 1, "a child cancelled before it started ran");
}

/* ---- argument order ---- */

static atomic_int order_next;
static int started[3];
static void *record_start(void *arg) {
  started[atomic_fetch_add(&order_next, 1)] = (int)PINT(arg);
  return arg;
}

static void *gather_calls_in_order(void *arg) {
  (void)arg;
  weft_call_t calls[3] = {{record_start, IPTR(0)}, {record_start, IPTR(1)}, {record_start, IPTR(2)}};
  void *r[3];
  OK(weft_gather_calls(calls, 3, r));
  cr_assert(started[0] == 0 && started[1] == 1 && started[2] == 2,
            "started %d, %d, %d: not A, B, C", started[0], started[1], started[2]);
  return NULL;
}

Test(cancel, gather_calls_starts_its_children_in_argument_order_on_one_worker) {
  run_on(1, gather_calls_in_order, NULL);
}

/* ---- a storm of cancelled sleepers ---- */

static void *storm(void *arg) {
  long n = PINT(arg);
  weft_task_t **t = malloc((size_t)n * sizeof *t);
  cr_assert_not_null(t);
  for (long i = 0; i < n; i++) OK(weft_spawn(&t[i], slow, NULL));
  for (long i = 0; i < n; i++) weft_cancel(t[i]);
  for (long i = 0; i < n; i++) cr_assert_eq(weft_join(t[i], NULL), WEFT_ECANCELED);
  free(t);
  return NULL;
}

Test(cancel, a_storm_of_cancelled_sleepers_leaves_the_wheel_empty, .timeout = 600) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, storm, IPTR(SCALE(200000, 2000))));
  OK(weft_join(t, NULL));
  cr_assert(!weft__timer_pending(((struct weft_runtime *)rt)->timer),
            "cancelled sleepers left entries in the timer wheel");
  OK(weft_runtime_destroy(rt));
}

/* weft_await_for's cleanup holds its wait to the child's end even at the API's full 254 shield
 * levels: it takes the runtime's own 255th, which holds back a deadline scope begun at the
 * API's last (that scope once cut it short, and it read an unfinished child's outcome). */
static void *stubborn(void *arg) { /* ends only once cancelled, some time after it */
  for (;;) {
    OK(weft_shield_begin());
    weft_sleep_ms(1);
    if (weft_shield_end() == WEFT_ECANCELED) return arg; /* the cancel, delivered here */
  }
}

static void *await_for_at_full_shield_depth(void *arg) {
  (void)arg;
  weft_task_t *t;
  OK(weft_spawn(&t, stubborn, IPTR(7)));
  OK(weft_yield()); /* it starts, and sleeps shielded */
  int depth = 0;
  while (weft_shield_begin() == 0) depth++;
  cr_assert_eq(depth, 254);
  weft_deadline_t cleanup; /* begun at depth 254: it bounds the waits below */
  OK(weft_deadline_begin(&cleanup, weft_now_ns() + 5 * 1000000ull));
  void *r = NULL;
  int err = weft_await_for(t, 1000 * 1000000ull, &r);
  cr_assert_eq(weft_task_done(t), 1, "weft_await_for returned before its cancelled child ended");
  /* its shield's end took the cancel: it ended cancelled, and the wait timed out */
  cr_assert_eq(err, WEFT_ETIMEDOUT, "%s", weft_strerror(err));
  cr_assert_null(r);
  weft_deadline_end(&cleanup);
  while (depth--) weft_shield_end();
  weft_task_release(t);
  return NULL;
}

Test(cancel, await_for_waits_for_its_child_at_the_full_shield_depth) {
  run_on(1, await_for_at_full_shield_depth, NULL);
}

/* ---- a deadline scope bounds an await, join or gather of a child not yet started ----
 * (review, session 26: the child was run inline, which no deadline can cut short). Each child
 * notes whether its parent's wait had already returned when it ran: one run inline by the wait
 * says no. */
static atomic_int wait_returned, ran_before_return;
static void *notes_whether_the_wait_returned(void *arg) {
  if (!atomic_load(&wait_returned)) atomic_fetch_add(&ran_before_return, 1);
  return arg;
}

typedef enum { BY_AWAIT, BY_JOIN, BY_GATHER } scoped_wait_t;

static void *wait_in_a_passed_scope(void *arg) {
  scoped_wait_t how = (scoped_wait_t)(intptr_t)arg;
  atomic_store(&wait_returned, 0);
  atomic_store(&ran_before_return, 0);
  weft_task_t *t[3];
  size_t n = how == BY_GATHER ? 3 : 1;
  for (size_t i = 0; i < n; i++) OK(weft_spawn(&t[i], notes_whether_the_wait_returned, IPTR(7)));
  weft_deadline_t scope;
  OK(weft_deadline_begin(&scope, weft_now_ns())); /* passed at once */
  void *r = NULL;
  int err = how == BY_AWAIT ? weft_await(t[0], &r)
            : how == BY_JOIN ? weft_join(t[0], &r)
                             : weft_gather(t, n, NULL);
  atomic_store(&wait_returned, 1);
  weft_deadline_end(&scope);
  cr_assert_eq(err, WEFT_ETIMEDOUT, "a wait in a passed scope answered %s", weft_strerror(err));
  cr_assert_eq(atomic_load(&ran_before_return), 0, "a child ran inline inside the scoped wait");
  if (how == BY_AWAIT) OK(weft_join(t[0], NULL)); /* it runs now, unscoped */
  for (size_t i = 0; how == BY_GATHER && i < n; i++) /* the failed gather cancelled them */
    cr_assert_eq(weft_join(t[i], NULL), WEFT_ECANCELED);
  return NULL;
}

Test(cancel, an_await_in_a_passed_scope_does_not_run_its_unstarted_child_inline) {
  run_on(1, wait_in_a_passed_scope, IPTR(BY_AWAIT));
}
Test(cancel, a_join_in_a_passed_scope_does_not_run_its_unstarted_child_inline) {
  run_on(1, wait_in_a_passed_scope, IPTR(BY_JOIN));
}
Test(cancel, a_gather_in_a_passed_scope_does_not_run_its_unstarted_children_inline) {
  run_on(1, wait_in_a_passed_scope, IPTR(BY_GATHER));
}

/* ---- a cancel that comes while weft_await_for waits out its timed-out child is reported
 * (review, session 26: the cleanup's shield end delivered it and the call said ETIMEDOUT, so
 * the task ended cancelled though no call had told it) ---- */
static weft_task_t *cleanup_waiter;
static atomic_int await_for_answer;
static void *await_for_whose_cleanup_is_cancelled(void *arg) {
  (void)arg;
  weft_task_t *c;
  OK(weft_spawn(&c, cancel_the_awaiter_once_cancelled, &cleanup_waiter));
  atomic_store(&await_for_answer, weft_await_for(c, 5 * 1000000ull, NULL));
  weft_task_release(c);
  return IPTR(42);
}
static void *cancel_during_await_for_cleanup(void *arg) {
  (void)arg;
  atomic_store(&await_for_answer, 1);
  OK(weft_spawn(&cleanup_waiter, await_for_whose_cleanup_is_cancelled, NULL));
  void *r = NULL;
  int outcome = weft_await(cleanup_waiter, &r);
  int answer = atomic_load(&await_for_answer);
  /* delivered by await_for, the cancel is the task's outcome too */
  cr_assert_eq(answer, WEFT_ECANCELED, "await_for answered %s", weft_strerror(answer));
  cr_assert_eq(outcome, WEFT_ECANCELED, "the task ended %s", weft_strerror(outcome));
  cr_assert_null(r);
  weft_task_release(cleanup_waiter);
  return NULL;
}

Test(cancel, a_cancel_during_await_for_cleanup_is_what_await_for_returns) {
  run_on(1, cancel_during_await_for_cleanup, NULL);
  run_on(2, cancel_during_await_for_cleanup, NULL);
}
