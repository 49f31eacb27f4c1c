/* Sleeps and timeouts on the shared timing wheel: issue 3's behaviour. */
#include "support.h"

#include "../lib/internal.h" /* to check that the wheel is empty after the races */

#include <stdatomic.h>
#include <string.h>

#define MS 1000000ull

typedef struct {
  uint64_t want_ns, woke_ns, deadline_ns;
  atomic_long order;
} sleep_rec_t;
static atomic_long wake_counter;

static void *timed_sleeper(void *arg) {
  sleep_rec_t *r = arg;
  uint64_t start = weft_now_ns();
  r->deadline_ns = start + r->want_ns;
  OK(weft_sleep_until(r->deadline_ns));
  r->woke_ns = weft_now_ns() - start;
  atomic_store(&r->order, atomic_fetch_add(&wake_counter, 1));
  return NULL;
}

static void *random_sleeps_main(void *arg) {
  sleep_rec_t *recs = arg;
  enum { N = 1000 };
  weft_task_t *t[N];
  for (int i = 0; i < N; i++) OK(weft_spawn(&t[i], timed_sleeper, &recs[i]));
  OK(weft_gather(t, N, NULL));
  for (int i = 0; i < N; i++) weft_task_release(t[i]);
  return NULL;
}

/* Never early, through the whole runtime: tasks on two workers. The order they resume in is not
 * checked here: a worker the OS holds back fires a late batch of sleepers at once, and then
 * its own newest-first deque and the other worker's steals decide who runs first (1 400
 * inversions of up to 11 ms in one run on a loaded machine) — the scheduler, not the wheel.
 * The wheel's deadline order is checked exactly on a clock the tests drive (below:
 * wheel_fires_in_deadline_order... and a_late_poll_fires_its_batches_earliest_first). */
Test(timers, random_sleeps_never_return_early, .timeout = 60) {
  enum { N = 1000 };
  static sleep_rec_t recs[N];
  uint64_t seed = test_seed();
  for (int i = 0; i < N; i++) recs[i].want_ns = test_rand(&seed) % (50 * MS + 1);
  atomic_store(&wake_counter, 0);
  run_on(2, random_sleeps_main, recs);
  for (int i = 0; i < N; i++)
    cr_assert_geq(recs[i].woke_ns, recs[i].want_ns, "sleep %d returned early (seed %llu)", i,
                  (unsigned long long)test_seed());
  cr_assert_eq(atomic_load(&wake_counter), N, "every sleeper resumes once");
}

static atomic_long resumed;
static void *sleep_once(void *arg) {
  weft_sleep_ms((uint64_t)PINT(arg));
  atomic_fetch_add(&resumed, 1);
  return NULL;
}
static void *many_sleepers_main(void *arg) {
  long n = PINT(arg);
  weft_task_t **t = malloc(sizeof *t * (size_t)n);
  for (long i = 0; i < n; i++) OK(weft_spawn(&t[i], sleep_once, IPTR(i % 100)));
  OK(weft_gather(t, (size_t)n, NULL));
  for (long i = 0; i < n; i++) weft_task_release(t[i]);
  free(t);
  return NULL;
}
Test(timers, concurrent_sleepers_each_resume_exactly_once, .timeout = 120) {
  long n = SCALE(100000, 3000); /* gcc's TSan allows ~8k live fibers */
  atomic_store(&resumed, 0);
  run_on(2, many_sleepers_main, IPTR(n));
  cr_assert_eq(atomic_load(&resumed), n);
}

static void *far_sleeper(void *arg) {
  weft_sleep_ms(60 * 1000);
  return arg;
}
static void *near_sleeper(void *arg) {
  uint64_t t0 = weft_now_ns();
  weft_sleep_ms(20);
  return IPTR((long)((weft_now_ns() - t0) / MS));
}
/* The near sleep's arm lowers the wheel's next deadline below the far one every parked worker
 * sleeps until, so it makes the wake check (the probe). Its effect is not observable here:
 * the arming worker parks next and fires the timer itself; it matters when that worker stays
 * busy (review B, session 36: the test passed with the wake deleted; timer_model's wake model
 * covers the protocol). */
Test(timers, an_earlier_timer_fires_on_time_beside_workers_parked_on_a_far_deadline) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *far;
  OK(weft_runtime_spawn(rt, &far, far_sleeper, NULL));
  /* Wait until every worker parked (the far sleeper is the only timer). */
  do weft_sleep_ms(1);
  while (atomic_load(&((struct weft_runtime *)rt)->nidle) < 2);
  long lowered = weft__probe_count(WEFT__PROBE_ARM_LOWERED);
  weft_task_t *near;
  OK(weft_runtime_spawn(rt, &near, near_sleeper, NULL));
  void *elapsed;
  OK(weft_join(near, &elapsed));
  cr_assert_gt(weft__probe_count(WEFT__PROBE_ARM_LOWERED), lowered,
               "the near arm did not see that it lowered the next deadline");
  cr_assert_geq(PINT(elapsed), 20);
  cr_assert_lt(PINT(elapsed), 20 + 500, "fired %ld ms after a 20 ms sleep", PINT(elapsed));
  weft_task_release(far);
  OK(weft_runtime_destroy(rt)); /* with a sleeper pending for a minute: returns promptly */
}

static void *finishes_after(void *arg) {
  weft_sleep_ms((uint64_t)PINT(arg));
  return arg;
}
static void *timeout_both_ways(void *arg) {
  (void)arg;
  weft_task_t *slow, *fast;
  OK(weft_spawn(&slow, finishes_after, IPTR(200)));
  OK(weft_spawn(&fast, finishes_after, IPTR(5)));
  void *r = IPTR(-1);
  uint64_t t0 = weft_now_ns();
  cr_assert_eq(weft_await_timeout(slow, 20 * MS, &r), WEFT_ETIMEDOUT);
  cr_assert_geq(weft_now_ns() - t0, 20 * MS, "a timeout fired early");
  cr_assert_eq(PINT(r), -1, "a timed-out await wrote a result");
  cr_assert(!weft_task_done(slow));
  OK(weft_await_timeout(fast, 5000 * MS, &r));
  cr_assert_eq(PINT(r), 5);
  OK(weft_await(slow, &r)); /* still running and awaitable again */
  cr_assert_eq(PINT(r), 200);
  weft_task_release(slow);
  weft_task_release(fast);
  return NULL;
}
Test(timers, await_with_timeout_both_ways) { run_on(2, timeout_both_ways, NULL); }

Test(timers, foreign_thread_await_with_timeout) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *slow;
  OK(weft_runtime_spawn(rt, &slow, finishes_after, IPTR(100)));
  cr_assert_eq(weft_await_timeout(slow, 10 * MS, NULL), WEFT_ETIMEDOUT);
  void *r;
  OK(weft_await_timeout(slow, 10000 * MS, &r));
  cr_assert_eq(PINT(r), 100);
  weft_task_release(slow);
  weft_future_t *f;
  OK(weft_future_create(&f));
  cr_assert_eq(weft_future_await_until(f, weft_now_ns() + 5 * MS, NULL), WEFT_ETIMEDOUT);
  weft_future_destroy(f);
  OK(weft_runtime_destroy(rt));
}

/* Timer and completion racing: deadlines equal to the children's finishing times. */
static void *race_main(void *arg) {
  long rounds = PINT(arg);
  uint64_t seed = test_seed();
  long timeouts = 0, completions = 0;
  for (long i = 0; i < rounds; i++) {
    weft_task_t *t;
    long d = (long)(test_rand(&seed) % 3);
    OK(weft_spawn(&t, finishes_after, IPTR(d)));
    int err = weft_await_timeout(t, (uint64_t)(test_rand(&seed) % 3) * MS, NULL);
    cr_assert(err == 0 || err == WEFT_ETIMEDOUT, "%s", weft_strerror(err));
    if (err) timeouts++;
    else completions++;
    OK(weft_join(t, NULL));
  }
  cr_assert_eq(timeouts + completions, rounds);
  return NULL;
}
Test(timers, timer_and_completion_races_leave_the_wheel_empty, .timeout = 120) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t[4];
  for (int i = 0; i < 4; i++) OK(weft_runtime_spawn(rt, &t[i], race_main, IPTR(SCALE(300, 100))));
  for (int i = 0; i < 4; i++) OK(weft_join(t[i], NULL));
  cr_assert(!weft__timer_pending(((struct weft_runtime *)rt)->timer), "entries left in the wheel");
  OK(weft_runtime_destroy(rt));
}

/* A sleep whose deadline saturates the wheel's clock (within a tick of UINT64_MAX, centuries
 * away) lowers its "none" to that and makes no wake check: no parked worker need wake for it
 * (review B, session 36: each such arm woke one to park again). */
static void *sleep_for_centuries(void *arg) {
  (void)arg;
  return IPTR(weft_sleep_until(UINT64_MAX - 2));
}
Test(timers, a_sleep_past_the_wheels_range_wakes_no_parked_worker) {
  weft_runtime_t *rt = test_runtime(2);
  long lowered = weft__probe_count(WEFT__PROBE_ARM_LOWERED);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, sleep_for_centuries, NULL));
  weft_metrics_t m = WEFT_METRICS_INIT;
  uint64_t until = weft_now_ns() + 30000000000ull; /* a bound on failure, not a wait */
  do {
    cr_assert_lt(weft_now_ns(), until, "the sleep never armed its timer");
    sched_yield();
    OK(weft_runtime_metrics(rt, WEFT_METRICS_ALL, &m));
  } while (m.timers_armed < 1);
  /* Counted as armed at the inbox push, before the arm returns: the probe's place comes after.
   * Both workers parked means the arming one is past it (review D, session 36). */
  while (atomic_load(&((struct weft_runtime *)rt)->nidle) < 2) {
    cr_assert_lt(weft_now_ns(), until, "the workers never parked");
    sched_yield();
  }
  cr_assert_eq(weft__probe_count(WEFT__PROBE_ARM_LOWERED), lowered,
               "an arm centuries away made the wake check");
  OK(weft_cancel(t));
  void *r;
  cr_assert_eq(weft_join(t, &r), WEFT_ECANCELED);
  OK(weft_runtime_destroy(rt));
}

/* A zero or past sleep returns 0 and yields: on one worker, a sibling spawned just before runs
 * during it (review B, session 36: the test ignored the answer and never slept into the past). */
static void *set_flag(void *arg) {
  atomic_store((atomic_int *)arg, 1);
  return NULL;
}
static void *zero_and_past(void *arg) {
  (void)arg;
  atomic_int ran[2] = {0, 0};
  weft_task_t *sib;
  OK(weft_spawn(&sib, set_flag, &ran[0]));
  OK(weft_sleep_ms(0));
  cr_assert(atomic_load(&ran[0]), "a zero sleep did not yield to its sibling");
  OK(weft_join(sib, NULL));
  OK(weft_spawn(&sib, set_flag, &ran[1]));
  OK(weft_sleep_until(weft_now_ns() - 1));
  cr_assert(atomic_load(&ran[1]), "a sleep into the past did not yield to its sibling");
  OK(weft_join(sib, NULL));
  return NULL;
}
Test(timers, zero_and_past_sleeps_yield) {
  run_on(1, zero_and_past, NULL);
  uint64_t t0 = weft_now_ns();
  OK(weft_sleep_ms(2)); /* from a plain thread: a plain sleep */
  cr_assert_geq(weft_now_ns() - t0, 2 * MS);
}

static void *hour_sleeper(void *arg) {
  weft_sleep_ms(3600 * 1000);
  return arg;
}
Test(timers, shutdown_with_sleepers_pending_returns_promptly) {
  weft_runtime_t *rt = test_runtime(2);
  for (int i = 0; i < 100; i++) OK(weft_runtime_spawn(rt, NULL, hour_sleeper, NULL));
  weft_task_t *probe;
  OK(weft_runtime_spawn(rt, &probe, finishes_after, IPTR(10)));
  OK(weft_join(probe, NULL)); /* the sleepers are asleep by now */
  uint64_t t0 = weft_now_ns();
  OK(weft_runtime_destroy(rt));
  cr_assert_lt(weft_now_ns() - t0, 2000 * MS, "destroy took %llu ms",
               (unsigned long long)((weft_now_ns() - t0) / MS));
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0);
#endif
}

/* The wheel alone, on a clock the test drives: deadlines 10-13 s ahead of the real clock (so
 * no entry is due before the test's first poll) are armed, a seventh of them cancelled, then polled
 * in steps of 100 µs, less than a tick. Every entry that was not cancelled fires exactly once,
 * never before its deadline, at most a tick and a step after it, and in deadline order to the
 * tick (deadlines from 10 to 13 s make every entry cascade down from the 1 s level, and the
 * slots' lanes are walked abreast: lib/timer.c). */
enum { WHEEL_N = 20000, STEP = 100000, TICK = 250000 /* lib/timer.c's TICK_NS */ };
static weft__timer_entry_t wheel_entries[WHEEL_N];
static weft__timer_entry_t *wheel_fired[WHEEL_N];
static bool wheel_seen[WHEEL_N];
static long wheel_nfired;
static uint64_t wheel_now;

static void wheel_record(weft__timer_entry_t *e) {
  long i = e - wheel_entries;
  cr_assert(!wheel_seen[i], "entry %ld fired twice", i);
  wheel_seen[i] = true;
  cr_assert_leq(e->deadline_ns, wheel_now, "fired %llu ns early",
                (unsigned long long)(e->deadline_ns - wheel_now));
  cr_assert_lt(wheel_now - e->deadline_ns, TICK + STEP, "fired late");
  wheel_fired[wheel_nfired++] = e;
}

Test(timers, wheel_fires_in_deadline_order_never_early_after_cascades_and_cancels) {
  struct weft__timer *t;
  OK(weft__timer_create(&t, NULL, NULL));
  uint64_t seed = test_seed(), base = weft_now_ns() + 10000 * MS, span = 3000 * MS;
  for (int i = 0; i < WHEEL_N; i++) {
    wheel_entries[i] = (weft__timer_entry_t){.deadline_ns = base + test_rand(&seed) % span,
                                             .fire = wheel_record};
    weft__timer_arm(t, &wheel_entries[i]);
  }
  long cancelled = 0;
  for (int i = 0; i < WHEEL_N; i += 7) cancelled += weft__timer_cancel(t, &wheel_entries[i]);
  cr_assert_eq(cancelled, (WHEEL_N + 6) / 7);
  cr_assert_eq(weft__timer_armed(t), (uint64_t)(WHEEL_N - cancelled));
  for (wheel_now = base - STEP; wheel_now <= base + span + 2 * STEP; wheel_now += STEP) {
    long before = wheel_nfired;
    while (weft__timer_poll(t, wheel_now, NULL) <= wheel_now && wheel_nfired > before)
      before = wheel_nfired; /* a full batch: poll again at the same time */
  }
  cr_assert_eq(wheel_nfired, WHEEL_N - cancelled, "seed %llu", (unsigned long long)test_seed());
  cr_assert_eq(weft__timer_armed(t), 0);
  for (long k = 0; k < wheel_nfired; k++) {
    long i = wheel_fired[k] - wheel_entries;
    cr_assert_neq(i % 7, 0, "a cancelled entry fired");
    if (k > 0) /* the tick each deadline falls in never goes back (+1: ticks count from the
                * wheel's creation, not from base) */
      cr_assert_leq((wheel_fired[k - 1]->deadline_ns - base + TICK - 1) / TICK,
                    (wheel_fired[k]->deadline_ns - base + TICK - 1) / TICK + 1,
                    "out of deadline order at %ld (seed %llu)", k,
                    (unsigned long long)test_seed());
  }
  weft__timer_destroy(t);
}

/* A poll that comes late, with many batches due at once (a worker the OS held back): every
 * entry fires once, and the batches go earliest first, in deadline order to the tick — the due
 * list is FIFO (lib/timer.c). */
enum { LATE_N = 3000 };
static weft__timer_entry_t late_entries[LATE_N];
static weft__timer_entry_t *late_fired[LATE_N];
static long late_nfired;
static void late_record(weft__timer_entry_t *e) {
  cr_assert_lt(late_nfired, LATE_N, "an entry fired twice");
  late_fired[late_nfired++] = e;
}

Test(timers, a_late_poll_fires_its_batches_earliest_first) {
  struct weft__timer *t;
  OK(weft__timer_create(&t, NULL, NULL));
  uint64_t seed = test_seed(), base = weft_now_ns() + 10000 * MS, span = 50 * MS;
  for (int i = 0; i < LATE_N; i++) {
    late_entries[i] = (weft__timer_entry_t){.deadline_ns = base + test_rand(&seed) % span,
                                            .fire = late_record};
    weft__timer_arm(t, &late_entries[i]);
  }
  uint64_t late = base + span + 10 * MS; /* every entry is due: more than ten batches' worth */
  int polls = 0;
  for (long before = -1; late_nfired > before; polls++) {
    before = late_nfired;
    weft__timer_poll(t, late, NULL);
  }
  cr_assert_eq(late_nfired, LATE_N, "seed %llu", (unsigned long long)test_seed());
  cr_assert_gt(polls, 3, "expected several batches, got %d polls", polls);
  cr_assert_eq(weft__timer_armed(t), 0);
  for (long k = 1; k < late_nfired; k++) /* tick order never goes back (+1: see above) */
    cr_assert_leq((late_fired[k - 1]->deadline_ns - base + TICK - 1) / TICK,
                  (late_fired[k]->deadline_ns - base + TICK - 1) / TICK + 1,
                  "out of deadline order at %ld (seed %llu)", k, (unsigned long long)test_seed());
  weft__timer_destroy(t);
}

/* The due queue (lib/timer.c) is a ring of pointers that grows; when it cannot grow, entries
 * queue on an overflow list behind it. Phase 1: the ring grows once and then cannot (the
 * test build's fault countdown), so the due entries split over ring (512) and list; the first
 * poll fires a batch (256), then a fifth of all entries are cancelled — in ring, list and
 * wheel. Every other entry fires once, in tick order (the ring before the list). Phase 2: 6000
 * entries with growth allowed, so the ring grows (and wraps) past the size it keeps, a seventh
 * are cancelled, and it is freed once empty; phase 3 uses it again from nothing. */
enum { SPLIT_N = 6000 };
static weft__timer_entry_t split_entries[SPLIT_N];
static weft__timer_entry_t *split_fired[SPLIT_N];
static long split_nfired;
static bool split_cancelled[SPLIT_N];
static void split_record(weft__timer_entry_t *e) {
  cr_assert_lt(split_nfired, SPLIT_N, "an entry fired twice");
  split_fired[split_nfired++] = e;
}

static void split_round(struct weft__timer *t, uint64_t base, long n, int cancel_every) {
  uint64_t seed = test_seed(), span = 50 * MS;
  split_nfired = 0;
  for (long i = 0; i < n; i++) {
    split_entries[i] = (weft__timer_entry_t){.deadline_ns = base + test_rand(&seed) % span,
                                             .fire = split_record};
    weft__timer_arm(t, &split_entries[i]);
  }
  uint64_t late = base + span + 10 * MS;
  weft__timer_poll(t, base + span / 2, NULL); /* half of them into the due queue... */
  long cancelled = 0, fired_first = split_nfired; /* the first batch fired at once */
  memset(split_cancelled, 0, sizeof split_cancelled);
  for (long i = 0; cancel_every && i < n; i += cancel_every) /* ...some cancelled there */
    cancelled += split_cancelled[i] = weft__timer_cancel(t, &split_entries[i]);
  cr_assert(!cancel_every || cancelled > n / cancel_every / 2, "only %ld cancels won", cancelled);
  cr_assert_gt(fired_first, 0);
  for (long before = -1; split_nfired > before;) {
    before = split_nfired;
    weft__timer_poll(t, late, NULL);
  }
  cr_assert_eq(split_nfired + cancelled, n, "fired %ld, cancelled %ld of %ld", split_nfired,
               cancelled, n);
  cr_assert_eq(weft__timer_armed(t), 0);
  cr_assert_eq(weft__timer_next_deadline(t), UINT64_MAX);
  for (long k = 0; k < split_nfired; k++) {
    long i = split_fired[k] - split_entries;
    cr_assert(!split_cancelled[i], "cancelled entry %ld fired", i);
    if (k > 0) /* tick order never goes back (+1: ticks count from the wheel's creation) */
      cr_assert_leq((split_fired[k - 1]->deadline_ns - base + TICK - 1) / TICK,
                    (split_fired[k]->deadline_ns - base + TICK - 1) / TICK + 1,
                    "out of deadline order at %ld (seed %llu)", k, (unsigned long long)test_seed());
  }
}

Test(timers, the_due_queue_keeps_order_across_its_overflow_list_and_a_freed_ring) {
  struct weft__timer *t;
  OK(weft__timer_create(&t, NULL, NULL));
  uint64_t base = weft_now_ns() + 10000 * MS;
  weft__fault_set(WEFT__FAULT_TIMER_RING, 3); /* rings of 256 and 512 come, the next fails */
  split_round(t, base, 3000, 5);
  weft__fault_set(WEFT__FAULT_TIMER_RING, 0);
  split_round(t, base + 1000 * MS, SPLIT_N, 7);
  split_round(t, base + 2000 * MS, 1000, 3);
  weft__timer_destroy(t);
}

/* Due entries that a cancel took out are no work: once the rest of the due queue fired, the
 * published earliest deadline is the wheel's next entry, not "now" (review, session 13: the
 * ring's emptied slots counted as due, and a worker about to park polled again instead). */
Test(timers, cancelled_due_entries_leave_the_next_deadline_to_the_wheel) {
  struct weft__timer *t;
  OK(weft__timer_create(&t, NULL, NULL));
  enum { DUE = 300 };
  static weft__timer_entry_t due[DUE];
  uint64_t base = weft_now_ns() + 10000 * MS;
  split_nfired = 0;
  for (int i = 0; i < DUE; i++) {
    due[i] = (weft__timer_entry_t){.deadline_ns = base, .fire = split_record};
    weft__timer_arm(t, &due[i]);
  }
  weft__timer_entry_t later = {.deadline_ns = base + 1000 * MS, .fire = split_record};
  weft__timer_arm(t, &later);
  weft__timer_poll(t, base + MS, NULL); /* fires one batch; the rest wait in the due queue */
  cr_assert_lt(split_nfired, DUE, "expected a batch smaller than %d, fired %ld", DUE, split_nfired);
  long won = 0; /* the fired ones' cancels answer false */
  for (int i = 0; i < DUE; i++) won += weft__timer_cancel(t, &due[i]);
  cr_assert_eq(won, DUE - split_nfired);
  cr_assert_eq(weft__timer_armed(t), 1);
  /* later than the poll's time (not before: the wheel's next is where `later` cascades) */
  cr_assert_gt(weft__timer_next_deadline(t), base + MS, "a cancelled due entry counted as work");
  weft__timer_poll(t, base + 2000 * MS, NULL);
  cr_assert_eq(weft__timer_armed(t), 0);
  weft__timer_destroy(t);
}

/* An arm does not take the wheel's lock: its entry waits in an inbox until the next holder of
 * the lock links it (lib/timer_inbox_impl.h). By then the wheel may have passed the entry's
 * tick (a poll whose clock read came after the armer's); the entry must fire at the next poll
 * (lib/timer.c's drain files it as due; a plain link computes a slot behind the wheel's time,
 * which only a cascade's rewind of the wheel's time happened to repair). Driven
 * clock, as above: a first entry's poll moves the wheel 5 s past a deadline that is still
 * 10 s ahead of the real clock, then entries are armed for it. */
static int passed_fired;
static void passed_record(weft__timer_entry_t *e) {
  (void)e;
  passed_fired++;
}

Test(timers, an_entry_armed_for_a_tick_the_wheel_has_passed_fires_at_the_next_poll) {
  struct weft__timer *t;
  OK(weft__timer_create(&t, NULL, NULL));
  uint64_t base = weft_now_ns() + 10000 * MS, later = base + 5000 * MS;
  weft__timer_entry_t first = {.deadline_ns = base + 4000 * MS, .fire = passed_record};
  cr_assert(weft__timer_arm(t, &first), "the first arm lowers the earliest deadline");
  cr_assert_eq(weft__timer_poll(t, later, NULL), UINT64_MAX, "nothing left after the first");
  cr_assert_eq(passed_fired, 1);
  weft__timer_entry_t e = {.deadline_ns = base, .fire = passed_record};
  cr_assert(weft__timer_arm(t, &e), "an arm on an empty wheel lowers the deadline");
  cr_assert_leq(weft__timer_next_deadline(t), base + TICK,
                "a parked worker would sleep past the entry");
  weft__timer_entry_t e2 = {.deadline_ns = base + 1000 * MS, .fire = passed_record};
  cr_assert(!weft__timer_arm(t, &e2), "a later arm does not lower it");
  cr_assert_eq(weft__timer_armed(t), 2);
  weft__timer_poll(t, later, NULL);
  cr_assert_eq(passed_fired, 3, "fired %d of 2 at the next poll", passed_fired - 1);
  cr_assert_eq(weft__timer_armed(t), 0);
  cr_assert_eq(weft__timer_next_deadline(t), UINT64_MAX);
  weft__timer_destroy(t);
}

/* A deadline past the wheel's range (~199 days), or one that falls in the current top-level
 * slot's next turn, waits in a top slot that is still ahead: the published next deadline stays
 * far off (review, session 29: it went into the current top slot, which next_expiration dates
 * in the past, so a cancel published "now" and a parked worker woke and polled for nothing). */
static void never_fires(weft__timer_entry_t *e) {
  (void)e;
  cr_assert_fail("an entry ~199 days off fired");
}

Test(timers, a_deadline_past_the_range_is_not_published_as_due_now) {
  const uint64_t day = 86400 * 1000 * MS;
  /* The second is in range from the wheel's time below (197.5 days on) but in its top slot
   * (3.1 days wide) of the next turn: 199.5 days after the wheel's start. */
  uint64_t far[] = {UINT64_MAX - 1, 199 * day + day / 2};
  for (size_t k = 0; k < sizeof far / sizeof *far; k++) {
    struct weft__timer *t;
    uint64_t base = weft_now_ns(); /* the wheel starts at or after it */
    OK(weft__timer_create(&t, NULL, NULL));
    weft__timer_entry_t first = {.deadline_ns = base + 1 * MS, .fire = passed_record};
    weft__timer_arm(t, &first);
    uint64_t now = base + 2 * day;
    weft__timer_poll(t, now, NULL); /* the wheel's time: two days into its first top slot */
    weft__timer_entry_t e = {.deadline_ns = k ? base + far[k] : far[k], .fire = never_fires};
    weft__timer_entry_t near = {.deadline_ns = now + 500 * MS, .fire = passed_record};
    weft__timer_arm(t, &e);
    weft__timer_arm(t, &near);
    cr_assert(weft__timer_cancel(t, &near)); /* drains the inbox and publishes the next */
    cr_assert_gt(weft__timer_next_deadline(t), now + 100 * day,
                 "case %zu: the far entry published as due %.3f s from now", k,
                 (double)(int64_t)(weft__timer_next_deadline(t) - now) / 1e9);
    cr_assert_gt(weft__timer_poll(t, now + 1 * MS, NULL), now + 100 * day);
    cr_assert(weft__timer_cancel(t, &e));
    weft__timer_destroy(t);
  }
}
