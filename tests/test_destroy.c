/* What outlives weft_runtime_destroy: awaiters on plain threads and in other runtimes, task
 * handles, futures that discarded tasks awaited — and the timed-wait wake that must never land
 * in a frame that has returned. Destroy first cancels every task and lets it unwind (its
 * awaiters get WEFT_ECANCELED); a "stubborn" task, which shields its wait, outlasts the
 * shutdown's bound and is discarded where it waits (its awaiters get WEFT_ESHUTDOWN). Each
 * test holds in every build; LeakSanitizer checks the ends. */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "support.h"
#include "waits.h"
#include "loopback.h"

#include "../lib/internal.h" /* test-only: probes, names arrays, rt->stopping */
#include "../lib/wake.h" /* a discarded task's park state */

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static atomic_int asleep_started;
static void *asleep_for_an_hour(void *arg) {
  atomic_fetch_add(&asleep_started, 1);
  weft_sleep_ms(3600 * 1000);
  return arg;
}

/* Ignores cancellation: the shutdown's bound passes and destroy discards it. */
static atomic_int stubborn_started;
static void *stubborn(void *arg) {
  weft_shield_begin();
  atomic_fetch_add(&stubborn_started, 1);
  weft_sleep_ms(3600 * 1000);
  weft_shield_end();
  return arg;
}

/* Memcheck (the valgrind_destroy test) runs one thread at a time and 20-50x slower: a cancelled
 * task there missed the 20 ms bound before a worker had even started it (seen once in a
 * full ctest -j2: "never started (queued when the workers stopped)", WEFT_ESHUTDOWN). */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
/* tests/valgrind_check.sh also says so in the environment, for where the header is missing */
static bool under_valgrind(void) {
  return RUNNING_ON_VALGRIND || getenv("WEFT_TEST_UNDER_VALGRIND") != NULL;
}

static weft_runtime_t *runtime_with_short_shutdown(int workers) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = workers;
  /* Stubborn tasks are abandoned after this; every other task must unwind within it, which
   * took more than 20 ms under gcc's TSan on the loaded 2-vCPU VM once (a cancelled sleeper
   * counted as abandoned), and in the Release build at a load of ~20 (flake hunt, session 22:
   * 5 runs in 825). Only the stubborn cases wait the bound out (a few per suite). */
  o.shutdown_timeout_ms = under_valgrind() ? 1000 : SCALE(250, 500);
  weft_runtime_t *rt = NULL;
  OK(weft_runtime_create(&rt, &o));
  return rt;
}

static void *identity(void *arg) { return arg; }

static void assert_no_leak(void) {
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked across destroy");
#endif
}

/* ---- awaiters on plain threads ---- */

typedef struct {
  weft_task_t *task;
  uint64_t deadline_ns; /* 0: no deadline */
  atomic_int started;
  int err;
  void *result;
} thread_await_t;

static void *await_from_thread(void *arg) {
  thread_await_t *a = arg;
  atomic_store(&a->started, 1);
  a->err = a->deadline_ns ? weft_await_until(a->task, a->deadline_ns, &a->result)
                          : weft_await(a->task, &a->result);
  return NULL;
}

/* Destroys rt while `n` threads await its sleeping task, then checks each got the task's end:
 * WEFT_ECANCELED (destroy cancelled it and it unwound) or, for a stubborn one, WEFT_ESHUTDOWN
 * (discarded). The threads announce themselves before awaiting; whether destroy meets one
 * still blocked or just about to await, the answer must be the same. */
static void destroy_under_thread_awaiters(uint64_t deadline_ns, bool stubborn_task) {
  enum { N = 4 };
  int expected = stubborn_task ? WEFT_ESHUTDOWN : WEFT_ECANCELED;
  weft_runtime_t *rt = runtime_with_short_shutdown(2);
  weft_task_t *t;
  atomic_store(&stubborn_started, 0);
  atomic_store(&asleep_started, 0);
  OK(weft_runtime_spawn(rt, &t, stubborn_task ? stubborn : asleep_for_an_hour, NULL));
  /* A stubborn task must be in its shield before the cancel, or it never starts at all; a
   * sleeper must have started, or destroy may stop the workers before one runs it (then it is
   * discarded unstarted: WEFT_ESHUTDOWN, a different case). */
  while (!atomic_load(stubborn_task ? &stubborn_started : &asleep_started)) sched_yield();
  thread_await_t a[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    memset(&a[i], 0, sizeof a[i]);
    a[i].task = t;
    a[i].deadline_ns = deadline_ns;
    cr_assert_eq(pthread_create(&th[i], NULL, await_from_thread, &a[i]), 0);
  }
  for (int i = 0; i < N; i++)
    while (!atomic_load(&a[i].started)) sched_yield();
  OK(weft_runtime_destroy(rt));
  for (int i = 0; i < N; i++) {
    pthread_join(th[i], NULL);
    cr_assert_eq(a[i].err, expected, "awaiter %d got %s, not %s", i, weft_err_name(a[i].err),
                 weft_err_name(expected));
  }
  cr_assert(weft_task_done(t), "a discarded task reads as done after destroy");
  cr_assert_eq(weft_task_result(t, NULL), expected);
  cr_assert_eq(weft_await(t, NULL), expected, "an await after destroy answers at once");
  weft_task_release(t);
}

Test(destroy, threads_awaiting_a_task_that_destroy_cancels_get_ecanceled) {
  for (int round = 0; round < 20; round++) destroy_under_thread_awaiters(0, false);
  for (int round = 0; round < 10; round++)
    destroy_under_thread_awaiters(weft_now_ns() + 3600ull * 1000000000u, false);
  assert_no_leak();
}

Test(destroy, threads_awaiting_a_discarded_task_get_eshutdown) {
  for (int round = 0; round < 10; round++) destroy_under_thread_awaiters(0, true);
  for (int round = 0; round < 5; round++)
    destroy_under_thread_awaiters(weft_now_ns() + 3600ull * 1000000000u, true);
  assert_no_leak();
}

/* Ignores cancellation in an untimed channel receive (a task's direct wait on the channel's
 * queue, lib/sync.c): destroy discards it and must take its node, on the discarded stack, out
 * of the queue — weft_chan_destroy aborts on a queued waiter, and ASan sees a stale one. */
static atomic_int stubborn_receiving;
static void *stubborn_receiver(void *chan) {
  weft_shield_begin();
  atomic_fetch_add(&stubborn_receiving, 1);
  void *v;
  int err = weft_chan_recv(chan, &v, UINT64_MAX);
  weft_shield_end();
  return IPTR(err);
}

/* Spawns fn(arg), which shields itself and bumps *started before its wait, and destroys rt:
 * its bound passes, and the task is discarded where it waits (its handle says so). */
static void discard_in_wait(weft_runtime_t *rt, void *(*fn)(void *), void *arg,
                            atomic_int *started) {
  weft_task_t *t;
  atomic_store(started, 0);
  OK(weft_runtime_spawn(rt, &t, fn, arg));
  while (!atomic_load(started)) sched_yield(); /* shielded before the cancel */
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
}

Test(destroy, a_task_discarded_in_a_channel_wait_leaves_the_channel_queue) {
  weft_runtime_t *rt = runtime_with_short_shutdown(2);
  weft_chan_t *ch;
  OK(weft_chan_create(&ch, 0));
  discard_in_wait(rt, stubborn_receiver, ch, &stubborn_receiving);
  weft_chan_destroy(ch); /* aborts if the discarded receiver's node were still queued */
  assert_no_leak();
}

/* A reader shielded in a socket read (the fd park, lib/fdpark_impl.h): destroy discards it where
 * it waits — its wait record takes it out of the direction's park word — and closes the socket. */
/* The same for the waits that go through the completion word, with their nodes still in a
 * queue (review, session 24): a receive with a deadline, a select, a semaphore acquire with a
 * deadline. Destroy must take the nodes out: after it a send finds no receiver (before the
 * fix: a fault in wq_pop on the unmapped stack), a release raises the count, and the
 * channel's destroy does not abort on a waiter that is gone. */
enum { TIMED_RECV, SELECT_RECV, TIMED_ACQUIRE };
typedef struct {
  weft_chan_t *ch;
  weft_sem_t *sem;
  int how;
} word_wait_t;

static void *stubborn_word_waiter(void *arg) {
  word_wait_t *a = arg;
  weft_shield_begin();
  atomic_fetch_add(&stubborn_receiving, 1);
  uint64_t in_an_hour = weft_now_ns() + 3600ull * 1000000000u;
  void *v;
  weft_chan_op_t op = {a->ch, WEFT_CHAN_RECV, NULL};
  int err = a->how == TIMED_RECV    ? weft_chan_recv(a->ch, &v, in_an_hour)
            : a->how == SELECT_RECV ? weft_chan_select(&op, 1, UINT64_MAX, NULL)
                                    : weft_sem_acquire(a->sem, in_an_hour);
  weft_shield_end();
  return IPTR(err);
}

Test(destroy, a_task_discarded_in_a_timed_wait_or_a_select_leaves_the_queue) {
  static const char *const names[] = {"timed receive", "select", "timed acquire"};
  for (int how = TIMED_RECV; how <= TIMED_ACQUIRE; how++) {
    word_wait_t a = {.how = how};
    OK(weft_chan_create(&a.ch, 0));
    OK(weft_sem_create(&a.sem, 0, 0));
    discard_in_wait(runtime_with_short_shutdown(2), stubborn_word_waiter, &a, &stubborn_receiving);
    if (how == TIMED_ACQUIRE) {
      OK(weft_sem_release(a.sem));
      size_t value = 0;
      OK(weft_sem_value(a.sem, &value));
      cr_assert_eq(value, 1, "%s: the release went to the discarded waiter", names[how]);
    } else {
      cr_assert_eq(weft_chan_try_send(a.ch, IPTR(1)), WEFT_EAGAIN,
                   "%s: a send found the discarded receiver", names[how]);
    }
    weft_chan_destroy(a.ch); /* aborts if a discarded node were still queued */
    weft_sem_destroy(a.sem);
  }
  assert_no_leak();
}

/* A waiter a peer already woke (a set, a release), whose object its owner then destroyed (it was
 * unused: nothing queued), discarded before it ran again: destroy must not touch the object
 * (review, session 24: its abandon took the freed object's lock, which ASan reported and the
 * plain build spun on). One worker, held by a task that spins until destroy stops the workers,
 * so the woken waiter never runs. The direct wait (an untimed event wait) and the word's (a
 * timed acquire). What the peer handed it (here nothing; a permit, a lock, a channel value) is
 * lost with it: the object may be gone, so weft cannot give it back. */
static weft_runtime_t *held_rt;
static atomic_int holder_spinning;
static void *hold_the_worker(void *arg) {
  weft_shield_begin();
  atomic_store(&holder_spinning, 1);
  while (!atomic_load(&((struct weft_runtime *)held_rt)->stopping)) sched_yield();
  weft_sleep_ms(3600 * 1000); /* a suspension point: the worker stops */
  weft_shield_end();
  return arg;
}

static void *stubborn_event_waiter(void *e) {
  weft_task_set_name(weft_current(), "discarded waiter");
  weft_shield_begin();
  int err = weft_event_wait(e, UINT64_MAX);
  weft_shield_end();
  return IPTR(err);
}

static void *stubborn_acquirer(void *s) {
  weft_task_set_name(weft_current(), "discarded waiter");
  weft_shield_begin();
  int err = weft_sem_acquire(s, weft_now_ns() + 3600ull * 1000000000u);
  weft_shield_end();
  return IPTR(err);
}

/* One worker and a 20 ms shutdown bound: a shielded waiter is discarded at once. */
static weft_runtime_t *one_worker_runtime(void) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.shutdown_timeout_ms = 20;
  weft_runtime_t *rt;
  OK(weft_runtime_create(&rt, &o));
  return rt;
}

/* held_rt's one worker held by hold_the_worker from now until destroy stops it. */
static void hold_held_rt(void) {
  atomic_store(&holder_spinning, 0);
  OK(weft_runtime_spawn(held_rt, NULL, hold_the_worker, NULL));
  while (!atomic_load(&holder_spinning)) sched_yield();
}

/* held_rt's one worker held once `waiter` (spawned first) waits. */
static void hold_after(weft_fn waiter, void *obj, const char *what) {
  held_rt = one_worker_runtime();
  OK(weft_runtime_spawn(held_rt, NULL, waiter, obj));
  await_blocked(held_rt, "discarded waiter", what);
  hold_held_rt();
}

Test(destroy, a_woken_waiter_discarded_after_its_event_was_destroyed_leaves_it_alone,
     .timeout = 30) {
  weft_event_t *e;
  OK(weft_event_create(&e));
  hold_after(stubborn_event_waiter, e, "waiting for a lock");
  OK(weft_event_set(e)); /* wakes the waiter, which cannot run */
  weft_event_destroy(e); /* nothing waits on it any more */
  OK(weft_runtime_destroy(held_rt));
}

Test(destroy, a_woken_waiter_discarded_after_its_semaphore_was_destroyed_leaves_it_alone,
     .timeout = 30) {
  weft_sem_t *s;
  OK(weft_sem_create(&s, 0, 0));
  hold_after(stubborn_acquirer, s, "waiting for a lock");
  OK(weft_sem_release(s)); /* hands the permit to the waiter, which cannot run */
  weft_sem_destroy(s);
  OK(weft_runtime_destroy(held_rt));
}

/* The same race with the peer inside its call (session 25, found by tests/model/abandon_model):
 * a plain thread sets the event (or releases the semaphore) just after destroy looked and found
 * the discarded waiter undelivered, and destroys the object once its call returns. Before the
 * fix destroy then took the freed object's lock (ASan: a use after free; the plain build: the
 * peer never waited). Now the peer's call waits, inside it, until destroy is done with the lock:
 * the direct wait by the handshake of lib/abandon_impl.h, the word's by destroy's hold on the
 * word (join_impl.h). A pause point holds destroy after its look until the peer waits (or, the
 * bug back, has returned). */
typedef struct {
  weft_event_t *event;
  weft_sem_t *sem;
  atomic_int go, returned;
  int err;
} window_peer_t;
static window_peer_t *the_window_peer;
static pthread_t _Atomic abandon_thread;
static long held_before;
static int held_probe;

static void *peer_in_the_window(void *arg) {
  window_peer_t *p = arg;
  while (!atomic_load(&p->go)) sched_yield();
  if (p->event) {
    p->err = weft_event_set(p->event);
    weft_event_destroy(p->event); /* legal: its one waiter was woken, by this call */
  } else {
    p->err = weft_sem_release(p->sem);
    weft_sem_destroy(p->sem);
  }
  atomic_store(&p->returned, 1);
  return NULL;
}

static void let_the_peer_in(void) {
  if (!pthread_equal(pthread_self(), atomic_load(&abandon_thread))) return;
  window_peer_t *p = the_window_peer;
  atomic_store(&p->go, 1);
  uint64_t give_up = weft_now_ns() + 10ull * 1000000000u; /* then the test fails, not hangs */
  while (weft__probe_count(held_probe) == held_before && !atomic_load(&p->returned) &&
         weft_now_ns() < give_up)
    sched_yield();
}

static void destroy_with_a_peer_in_the_window(weft_fn waiter, window_peer_t *p, int probe) {
  weft_runtime_t *rt = one_worker_runtime();
  OK(weft_runtime_spawn(rt, NULL, waiter, p->event ? (void *)p->event : (void *)p->sem));
  await_blocked(rt, "discarded waiter", "waiting for a lock");
  the_window_peer = p;
  held_probe = probe;
  held_before = weft__probe_count(probe);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, peer_in_the_window, p), 0);
  atomic_store(&abandon_thread, pthread_self());
  weft__pause_set(WEFT__PAUSE_ABANDON_LOOKED, let_the_peer_in);
  OK(weft_runtime_destroy(rt));
  weft__pause_set(WEFT__PAUSE_ABANDON_LOOKED, NULL);
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&p->go), 1, "destroy never looked at the discarded wait");
  cr_assert_gt(weft__probe_count(probe), held_before,
               "the peer returned while destroy was about to take the object's lock");
  cr_assert_eq(p->err, 0);
}

Test(destroy, a_peer_waking_a_discarded_direct_waiter_during_destroy_waits_for_its_look,
     .timeout = 30) {
  window_peer_t p = {0};
  OK(weft_event_create(&p.event));
  destroy_with_a_peer_in_the_window(stubborn_event_waiter, &p, WEFT__PROBE_PEER_HELD);
}

Test(destroy, a_peer_releasing_to_a_discarded_timed_waiter_during_destroy_waits_for_its_look,
     .timeout = 30) {
  window_peer_t p = {0};
  OK(weft_sem_create(&p.sem, 0, 0));
  destroy_with_a_peer_in_the_window(stubborn_acquirer, &p, WEFT__PROBE_COMPLETE_HELD);
}

/* The peer first, its wake lost to a cancel (review, session 25, which broke the first version
 * of the fix): the receiver, not shielded, is cancelled while the one worker is held, so it is
 * woken but never runs; a plain thread's send dequeues it (its wake loses, and writes nothing
 * to the task) and is held before its `done` until destroy has looked. The fenced version
 * looked at the task, found it undelivered, and was held at its lock until the sender had
 * returned and destroyed the channel (ASan: a use after free). Now the sender's mark in the
 * wait tells destroy that the node is gone, and it never takes the lock. */
static atomic_int tail_reached, destroy_looked, sender_returned;
static long marked_before;
static weft_chan_t *tail_chan;
static pthread_t _Atomic sender_thread;

static void hold_the_sender(void) {
  if (!pthread_equal(pthread_self(), atomic_load(&sender_thread))) return;
  atomic_store(&tail_reached, 1);
  uint64_t give_up = weft_now_ns() + 10ull * 1000000000u;
  while (!atomic_load(&destroy_looked) &&
         weft__probe_count(WEFT__PROBE_PEER_MARKED) == marked_before && weft_now_ns() < give_up)
    sched_yield();
}

static void hold_the_look(void) {
  if (pthread_equal(pthread_self(), atomic_load(&sender_thread))) return;
  atomic_store(&destroy_looked, 1);
  uint64_t give_up = weft_now_ns() + 10ull * 1000000000u;
  while (!atomic_load(&sender_returned) && weft_now_ns() < give_up) sched_yield();
}

static void *send_and_destroy(void *arg) {
  atomic_store(&sender_thread, pthread_self());
  int *err = arg;
  *err = weft_chan_send(tail_chan, IPTR(7), weft_now_ns() + 10ull * 1000000000u);
  weft_chan_destroy(tail_chan); /* legal: its one receiver was handed the value */
  atomic_store(&sender_returned, 1);
  return NULL;
}

static void *cancellable_receiver(void *ch) {
  weft_task_set_name(weft_current(), "discarded waiter");
  void *v;
  return IPTR(weft_chan_recv(ch, &v, UINT64_MAX));
}

Test(destroy, a_peer_whose_wake_lost_to_a_cancel_is_seen_by_destroy_before_its_look,
     .timeout = 60) {
  OK(weft_chan_create(&tail_chan, 0));
  held_rt = one_worker_runtime();
  weft_task_t *r;
  OK(weft_runtime_spawn(held_rt, &r, cancellable_receiver, tail_chan));
  await_blocked(held_rt, "discarded waiter", "waiting on a channel");
  hold_held_rt();
  OK(weft_cancel(r)); /* woken by the cancel; it cannot run */
  atomic_store(&tail_reached, 0);
  atomic_store(&destroy_looked, 0);
  atomic_store(&sender_returned, 0);
  atomic_store(&sender_thread, (pthread_t)0);
  marked_before = weft__probe_count(WEFT__PROBE_PEER_MARKED);
  weft__pause_set(WEFT__PAUSE_PEER_TAIL, hold_the_sender);
  weft__pause_set(WEFT__PAUSE_ABANDON_LOOKED, hold_the_look);
  int send_err = 1;
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, send_and_destroy, &send_err), 0);
  while (!atomic_load(&tail_reached)) sched_yield(); /* its wake lost; before its `done` */
  OK(weft_runtime_destroy(held_rt));
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_PEER_TAIL, NULL);
  weft__pause_set(WEFT__PAUSE_ABANDON_LOOKED, NULL);
  cr_assert_eq(send_err, 0, "the send handed its value over");
  cr_assert_gt(weft__probe_count(WEFT__PROBE_PEER_MARKED), marked_before,
               "destroy did not see the sender's mark");
  cr_assert_eq(atomic_load(&destroy_looked), 0, "destroy looked under the channel's lock");
  cr_assert_eq(weft_await(r, NULL), WEFT_ESHUTDOWN);
  weft_task_release(r);
}

/* What a peer handed a discarded mutex waiter is given back (session 25): here the wake-up to
 * compete. Main holds the mutex; a task (shielded) and then a plain thread queue on it; the
 * one worker is held, so the task, which main's unlock wakes to compete (it is the oldest),
 * never runs. Destroy discards it: before, its wake-up was lost and the thread slept until its
 * deadline; now destroy passes the wake-up on, as a waiter that gives up does, and the thread
 * takes the lock. */
static void *stubborn_locker(void *m) {
  weft_task_set_name(weft_current(), "discarded waiter");
  weft_shield_begin();
  int err = weft_mutex_lock(m, UINT64_MAX);
  weft_shield_end();
  return IPTR(err);
}

/* The same through the completion word's wait (a deadline): destroy's other abandon. */
static void *stubborn_timed_locker(void *m) {
  weft_task_set_name(weft_current(), "discarded waiter");
  weft_shield_begin();
  int err = weft_mutex_lock(m, weft_now_ns() + 3600ull * 1000000000u);
  weft_shield_end();
  return IPTR(err);
}

typedef struct {
  weft_mutex_t *m;
  int err;
} thread_lock_t;

static void *lock_from_thread(void *arg) {
  thread_lock_t *a = arg;
  a->err = weft_mutex_lock(a->m, weft_now_ns() + 20ull * 1000000000u);
  return NULL;
}

static void pass_on_a_discarded_waiters_wake_up(weft_fn locker) {
  weft_mutex_t *m;
  OK(weft_mutex_create(&m));
  OK(weft_mutex_lock(m, UINT64_MAX)); /* main holds it */
  hold_after(locker, m, "waiting for a lock");
  long queued = weft__probe_count(WEFT__PROBE_MUTEX_QUEUED);
  thread_lock_t a = {.m = m, .err = 1};
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, lock_from_thread, &a), 0);
  while (weft__probe_count(WEFT__PROBE_MUTEX_QUEUED) == queued) sched_yield(); /* behind it */
  OK(weft_mutex_unlock(m)); /* wakes the task to compete; it cannot run */
  OK(weft_runtime_destroy(held_rt));
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 40;
  cr_assert_eq(pthread_timedjoin_np(th, NULL, &until), 0);
  cr_assert_eq(a.err, 0, "the thread behind the discarded waiter never got the lock (%d)", a.err);
  OK(weft_mutex_unlock(m));
  weft_mutex_destroy(m);
}

Test(destroy, a_discarded_mutex_waiters_wake_up_is_passed_on_to_the_next, .timeout = 60) {
  pass_on_a_discarded_waiters_wake_up(stubborn_locker);
}

Test(destroy, a_discarded_timed_mutex_waiters_wake_up_is_passed_on_to_the_next, .timeout = 60) {
  pass_on_a_discarded_waiters_wake_up(stubborn_timed_locker);
}

/* The same for a lock handed over: a starving waiter (it lost a wake-up to compete to a locker
 * that barged in, a pause point's, more than WEFT_MUTEX_STARVE_NS after it first queued) at
 * the head is handed the lock by main's unlock, and cannot run (the worker is held). Destroy
 * discards it: before, the mutex stayed locked for ever; now destroy unlocks it. */
static weft_mutex_t *barged_mutex;
static atomic_int barged;
static void barge_in(void) {
  if (weft_mutex_trylock(barged_mutex) == 0) atomic_store(&barged, 1);
}

Test(destroy, a_lock_handed_to_a_discarded_mutex_waiter_is_unlocked, .timeout = 60) {
  weft_mutex_t *m;
  OK(weft_mutex_create(&m));
  OK(weft_mutex_lock(m, UINT64_MAX)); /* main holds it */
  held_rt = one_worker_runtime();
  long queued = weft__probe_count(WEFT__PROBE_MUTEX_QUEUED);
  OK(weft_runtime_spawn(held_rt, NULL, stubborn_locker, m));
  while (weft__probe_count(WEFT__PROBE_MUTEX_QUEUED) == queued) sched_yield();
  uint64_t starving_from = weft_now_ns() + 2 * WEFT_MUTEX_STARVE_NS;
  while (weft_now_ns() < starving_from) sched_yield(); /* the waiter's wait passes the bar */
  barged_mutex = m;
  atomic_store(&barged, 0);
  weft__pause_set(WEFT__PAUSE_MUTEX_RETRY, barge_in);
  OK(weft_mutex_unlock(m)); /* wakes it to compete; the pause point locks first */
  while (weft__probe_count(WEFT__PROBE_MUTEX_QUEUED) < queued + 2) sched_yield(); /* requeued */
  weft__pause_set(WEFT__PAUSE_MUTEX_RETRY, NULL);
  cr_assert_eq(atomic_load(&barged), 1, "the barging lock did not take the mutex");
  hold_held_rt();
  OK(weft_mutex_unlock(m)); /* hands the lock to the starving waiter, which cannot run */
  cr_assert_eq(weft_mutex_trylock(m), WEFT_EAGAIN, "the lock was not handed over");
  OK(weft_runtime_destroy(held_rt));
  cr_assert_eq(weft_mutex_trylock(m), 0, "the lock handed to the discarded waiter stayed held");
  OK(weft_mutex_unlock(m));
  weft_mutex_destroy(m);
}

static atomic_int stubborn_reading;
static void *stubborn_reader(void *sock) {
  weft_shield_begin();
  atomic_fetch_add(&stubborn_reading, 1);
  char buf[8];
  ptrdiff_t n = weft_sock_read(sock, buf, sizeof buf, UINT64_MAX);
  weft_shield_end();
  return IPTR(n);
}

Test(destroy, a_task_discarded_in_a_socket_read_is_taken_apart_and_its_socket_closed) {
  weft_runtime_t *rt = runtime_with_short_shutdown(2);
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  weft_sock_t *s;
  OK(weft_sock_open(rt, sv[0], &s));
  discard_in_wait(rt, stubborn_reader, s, &stubborn_reading);
  char c;
  cr_assert_eq(read(sv[1], &c, 1), 0, "destroy closed the discarded reader's socket");
  close(sv[1]);
  assert_no_leak();
}

/* What weft's own calls hold on a discarded task's stack (lib/internal.h, weft__discard_hook_t):
 * weft_gather_calls' children's handles and, beyond 16 calls, its handle array; weft_wait_any's
 * nodes beyond 64 tasks; the handle weft_join was given. Nothing unwinds a discarded task, so
 * destroy gives them back. A handle left held keeps its descriptor's slab mapped as an orphan:
 * the children name themselves, which gives their slab a names array that
 * weft__task_diag_arrays counts (lib/task.c), so a kept slab shows in every build. */
enum { CALLS = 20, ANY_OF = 65 }; /* beyond gather_calls' 16 and wait_any's 64 on the stack */

static atomic_int stubborn_calls_started;
static void *stubborn_named_call(void *arg) {
  (void)weft_task_set_name(weft_current(), "stubborn call");
  weft_shield_begin();
  atomic_fetch_add(&stubborn_calls_started, 1);
  weft_sleep_ms(3600 * 1000);
  weft_shield_end();
  return arg;
}

static void *stubborn_gatherer(void *arg) {
  weft_shield_begin();
  weft_call_t calls[CALLS];
  for (int i = 0; i < CALLS; i++) calls[i] = (weft_call_t){stubborn_named_call, arg};
  int err = weft_gather_calls(calls, CALLS, NULL);
  weft_shield_end();
  return IPTR(err);
}

/* Every slab given back: no handle a discarded task's weft call held outlived destroy. */
static void assert_no_slab_kept(void) {
  cr_assert_eq(weft__task_diag_arrays(), 0, "a discarded task's child's slab outlived destroy");
  assert_no_leak();
}

Test(destroy, a_discarded_gather_calls_gives_back_its_childrens_handles_and_array) {
  weft_runtime_t *rt = runtime_with_short_shutdown(2);
  /* its first call runs inline and is shielded before the cancel; the rest may not start */
  discard_in_wait(rt, stubborn_gatherer, NULL, &stubborn_calls_started);
  assert_no_slab_kept(); /* and the array of 20 handles (LeakSanitizer) */
}

/* Discarded inside a spawn: spawn_throttle runs the child first and requeues the gatherer,
 * with the child's handle already stored (review, session 23: that one was never released).
 * One worker, so the gatherer stays queued: the child holds it, spinning without a suspension
 * point until destroy stops the workers, then sleeps, where the worker leaves. */
static weft_runtime_t *throttled_rt;
static atomic_int first_call_taken;
static void *spin_until_stopping_call(void *arg) {
  if (atomic_exchange(&first_call_taken, 1)) return stubborn_named_call(arg);
  (void)weft_task_set_name(weft_current(), "spinning call");
  weft_shield_begin();
  struct weft_runtime *rt = (struct weft_runtime *)throttled_rt;
  while (!atomic_load(&rt->stopping)) sched_yield();
  atomic_fetch_add(&stubborn_calls_started, 1);
  weft_sleep_ms(3600 * 1000);
  weft_shield_end();
  return arg;
}

static void *throttled_gatherer(void *arg) {
  weft_shield_begin();
  /* beyond the 64 spawns a worker keeps private, which the throttle does not count */
  enum { THROTTLED_CALLS = 100 };
  weft_call_t calls[THROTTLED_CALLS];
  for (int i = 0; i < THROTTLED_CALLS; i++) calls[i] = (weft_call_t){spin_until_stopping_call, arg};
  int err = weft_gather_calls(calls, THROTTLED_CALLS, NULL);
  weft_shield_end();
  return IPTR(err);
}

Test(destroy, a_gather_calls_discarded_inside_a_throttled_spawn_gives_back_that_childs_handle) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.spawn_throttle = 2;
  o.shutdown_timeout_ms = 20; /* the spinning child outlasts any bound: it waits for the stop */
  OK(weft_runtime_create(&throttled_rt, &o));
  atomic_store(&first_call_taken, 0);
  atomic_store(&stubborn_calls_started, 0);
  weft_task_t *t;
  OK(weft_runtime_spawn(throttled_rt, &t, throttled_gatherer, NULL));
  while (!atomic_load(&first_call_taken)) sched_yield(); /* the gatherer is requeued by then */
  weft_metrics_t m = WEFT_METRICS_INIT;
  OK(weft_runtime_metrics(throttled_rt, WEFT_METRICS_ALL, &m));
  cr_assert_geq(m.tasks_run_first, 1, "the spinning child was a throttled spawn's, run first");
  OK(weft_runtime_destroy(throttled_rt));
  cr_assert_eq(atomic_load(&stubborn_calls_started), 1, "the spinning child saw the stop");
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
  assert_no_slab_kept();
}

/* weft_join holds the handle it was given: discarded while its child runs inline on its stack
 * (join_inline: WEFT__JOINED), or while it waits for a child running elsewhere (a record). */
static void *stubborn_joiner(void *wait_for_start) {
  weft_shield_begin();
  weft_task_t *child;
  if (weft_spawn(&child, stubborn_named_call, NULL)) return IPTR(-1);
  if (wait_for_start) /* not inline: the child runs (and sleeps) at our yield */
    while (!atomic_load(&stubborn_calls_started)) weft_yield();
  int err = weft_join(child, NULL);
  weft_shield_end();
  return IPTR(err);
}

Test(destroy, a_join_discarded_with_its_child_inline_gives_back_the_childs_handle) {
  weft_runtime_t *rt = runtime_with_short_shutdown(1); /* no thief: the join runs it inline */
  discard_in_wait(rt, stubborn_joiner, NULL, &stubborn_calls_started);
  assert_no_slab_kept();
}

Test(destroy, a_join_discarded_while_it_waits_gives_back_the_childs_handle) {
  weft_runtime_t *rt = runtime_with_short_shutdown(1); /* the child runs at the joiner's yield */
  long records = weft__probe_count(WEFT__PROBE_DISCARD_HOOK);
  discard_in_wait(rt, stubborn_joiner, (void *)1, &stubborn_calls_started);
  cr_assert_gt(weft__probe_count(WEFT__PROBE_DISCARD_HOOK), records, "the join's record ran");
  assert_no_slab_kept();
}

typedef struct {
  weft_task_t *children[ANY_OF];
  atomic_int children_started;
  atomic_int waiting;
} any_of_stubborn_t;

static void *stubborn_sleeper(void *arg) {
  any_of_stubborn_t *a = arg;
  weft_shield_begin();
  atomic_fetch_add(&a->children_started, 1);
  weft_sleep_ms(3600 * 1000);
  weft_shield_end();
  return NULL;
}

/* Waits for any of ANY_OF children that all shield themselves: none ends before destroy. */
static void *stubborn_wait_any(void *arg) {
  any_of_stubborn_t *a = arg;
  weft_shield_begin();
  for (int i = 0; i < ANY_OF; i++)
    if (weft_spawn(&a->children[i], stubborn_sleeper, a)) {
      atomic_store(&a->waiting, -1); /* the test fails rather than waits */
      return IPTR(-1);
    }
  /* each child in its shield before the shutdown's cancel (an unstarted one would end) */
  while (atomic_load(&a->children_started) < ANY_OF) weft_yield();
  atomic_store(&a->waiting, 1);
  size_t index;
  int err = weft_wait_any(a->children, ANY_OF, UINT64_MAX, &index);
  weft_shield_end();
  return IPTR(err);
}

Test(destroy, a_discarded_wait_any_of_many_frees_its_nodes) {
  weft_runtime_t *rt = runtime_with_short_shutdown(2);
  static any_of_stubborn_t a;
  long records = weft__probe_count(WEFT__PROBE_DISCARD_HOOK);
  discard_in_wait(rt, stubborn_wait_any, &a, &a.waiting);
  cr_assert_eq(atomic_load(&a.waiting), 1, "every child spawned");
  cr_assert_eq(atomic_load(&a.children_started), ANY_OF);
  /* with LeakSanitizer the freeing itself is checked too: 65 nodes on the heap */
  cr_assert_gt(weft__probe_count(WEFT__PROBE_DISCARD_HOOK), records, "the wait's record ran");
  for (int i = 0; i < ANY_OF; i++) {
    cr_assert_eq(weft_await(a.children[i], NULL), WEFT_ESHUTDOWN, "child %d discarded", i);
    weft_task_release(a.children[i]);
  }
  assert_no_leak();
}

/* An unfinished child that a discarded gather_calls held, and that a plain thread awaits
 * through a borrowed handle: destroy keeps the handle (so the child is completed with
 * WEFT_ESHUTDOWN, its awaiter woken) rather than release it and unmap it under the awaiter
 * (review, session 23: the thread's timed await faulted in its unlink). */
static weft_task_t *_Atomic watched_child;
static void *publishing_call(void *arg) {
  weft_shield_begin();
  atomic_store(&watched_child, weft_current()); /* shielded before the cancel */
  weft_sleep_ms(3600 * 1000);
  weft_shield_end();
  return arg;
}

static void *gatherer_of_a_watched_child(void *arg) {
  weft_shield_begin();
  weft_call_t calls[2] = {{publishing_call, arg}, {stubborn_named_call, arg}};
  int err = weft_gather_calls(calls, 2, NULL);
  weft_shield_end();
  return IPTR(err);
}

static void *watch_child(void *arg) {
  thread_await_t *a = arg;
  atomic_store(&a->started, 1);
  a->err = weft_await_until(a->task, weft_now_ns() + a->deadline_ns, NULL);
  return NULL;
}

/* Spawns holder (which publishes its shielded child in watched_child), has a plain thread
 * await that child through the borrowed handle until its node is in the child's word, then
 * destroys rt: the thread must get the child's end, not a fault or a timeout. */
static void destroy_under_a_childs_outside_awaiter(weft_runtime_t *rt, void *(*holder)(void *),
                                                   bool joined) {
  atomic_store(&watched_child, NULL);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, holder, NULL));
  while (!atomic_load(&watched_child)) sched_yield(); /* published in its shield */
  thread_await_t a = {.task = atomic_load(&watched_child), .deadline_ns = 10ull * 1000000000u};
  cr_assert_not_null(a.task);
  if (joined) cr_assert(atomic_load(&a.task->started) & WEFT__JOINED, "the join ran it inline");
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, watch_child, &a), 0);
  /* linked before destroy: the thread waits in the await's word while the task's first call
   * is asleep for an hour, so its start is enough only with a look at the word */
  while (!atomic_load(&a.started) ||
         !(atomic_load(&a.task->word) & ~(uintptr_t)WEFT__WORD_FLAGS))
    sched_yield();
  OK(weft_runtime_destroy(rt));
  pthread_join(th, NULL);
  cr_assert_eq(a.err, WEFT_ESHUTDOWN, "the outside awaiter got the child's end");
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
}

Test(destroy, a_child_awaited_from_outside_is_completed_not_freed_when_its_gatherer_is_discarded) {
  destroy_under_a_childs_outside_awaiter(runtime_with_short_shutdown(2),
                                         gatherer_of_a_watched_child, false);
}

/* The same through weft_join's inline run (WEFT__JOINED, no record): one worker, so the
 * joiner runs its child on its own stack, and a plain thread awaits that child through a
 * borrowed handle. Destroy keeps the handle; the thread gets the child's end. */
static void *joiner_of_a_watched_child(void *arg) {
  weft_shield_begin();
  weft_task_t *child;
  int err = weft_spawn(&child, publishing_call, arg);
  if (!err) err = weft_join(child, NULL); /* inline: the newest entry of the only worker */
  weft_shield_end();
  return IPTR(err);
}

Test(destroy, a_joined_child_awaited_from_outside_is_completed_not_freed_when_its_joiner_is_discarded) {
  destroy_under_a_childs_outside_awaiter(runtime_with_short_shutdown(1), joiner_of_a_watched_child,
                                         true);
}

/* An outside awaiter between its unlink's two steps (join_impl.h's remove_waiter: its node
 * gone from the word, BUSY still set) when destroy gives back a discarded joiner's child: the
 * awaiter's next touch is that word, so destroy must keep the handle, not release it and unmap
 * the slab under the awaiter (review, session 23: the fault, reproduced with a planted delay).
 * The awaiter's deadline passes before destroy; a pause point holds it in the window until
 * destroy has decided. */
static pthread_t _Atomic window_thread;
static atomic_int window_held;
static long window_kept_before;
static void hold_in_unlink_window(void) {
  if (!pthread_equal(pthread_self(), atomic_load(&window_thread))) return;
  atomic_store(&window_held, 1);
  uint64_t give_up = weft_now_ns() + 10ull * 1000000000u; /* then the test fails, not hangs */
  while (weft__probe_count(WEFT__PROBE_DISCARD_KEPT) == window_kept_before &&
         weft_now_ns() < give_up)
    sched_yield();
}

static void *watch_child_from_the_window(void *arg) {
  atomic_store(&window_thread, pthread_self());
  return watch_child(arg);
}

Test(destroy, an_outside_awaiter_mid_unlink_keeps_a_discarded_joiners_child) {
  weft_runtime_t *rt = runtime_with_short_shutdown(1);
  atomic_store(&watched_child, NULL);
  atomic_store(&window_held, 0);
  window_kept_before = weft__probe_count(WEFT__PROBE_DISCARD_KEPT);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, joiner_of_a_watched_child, NULL));
  while (!atomic_load(&watched_child)) sched_yield();
  thread_await_t a = {.task = atomic_load(&watched_child), .deadline_ns = 20ull * 1000000u};
  weft__pause_set(WEFT__PAUSE_JOIN_UNLINKED, hold_in_unlink_window);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, watch_child_from_the_window, &a), 0);
  while (!atomic_load(&window_held)) sched_yield(); /* its deadline passed: in the window */
  OK(weft_runtime_destroy(rt));
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_JOIN_UNLINKED, NULL);
  cr_assert_gt(weft__probe_count(WEFT__PROBE_DISCARD_KEPT), window_kept_before,
               "destroy kept the handle of a child whose word was BUSY");
  cr_assert_eq(a.err, WEFT_ETIMEDOUT, "the awaiter left on its deadline, before destroy");
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
}

/* Discarded in weft_gather_calls' error path: a spawn failed (an injected descriptor
 * failure), and the call waits, shielded, for the children it had already spawned. Its record
 * still holds their handles. One worker: the child runs inline on the gatherer's stack. */
static void *gatherer_whose_second_spawn_fails(void *arg) {
  weft_shield_begin();
  weft_call_t calls[3] = {{identity, arg}, {identity, arg}, {stubborn_named_call, arg}};
  /* spawned in reverse: calls[2] gets the first descriptor, calls[1] the failing second */
  weft__fault_set(WEFT__FAULT_TASK, 2);
  int err = weft_gather_calls(calls, 3, NULL);
  weft__fault_set(WEFT__FAULT_TASK, 0);
  weft_shield_end();
  return IPTR(err);
}

Test(destroy, a_gather_calls_discarded_after_a_failed_spawn_gives_back_the_spawned_childs_handle) {
  weft_runtime_t *rt = runtime_with_short_shutdown(1);
  long records = weft__probe_count(WEFT__PROBE_DISCARD_HOOK);
  discard_in_wait(rt, gatherer_whose_second_spawn_fails, NULL, &stubborn_calls_started);
  weft__fault_set(WEFT__FAULT_TASK, 0); /* the gatherer never got back to its own reset */
  cr_assert_gt(weft__probe_count(WEFT__PROBE_DISCARD_HOOK), records, "the gather's record ran");
  assert_no_slab_kept();
}

Test(destroy, a_shutdown_reports_the_tasks_it_could_not_end) {
  weft_runtime_t *rt = test_runtime(2);
  weft_task_t *t, *u;
  atomic_store(&stubborn_started, 0);
  atomic_store(&asleep_started, 0);
  OK(weft_runtime_spawn(rt, &t, stubborn, NULL));
  OK(weft_runtime_spawn(rt, &u, asleep_for_an_hour, NULL));
  /* shielded before the cancel; the other started (an unstarted one is discarded instead) */
  while (!atomic_load(&stubborn_started) || !atomic_load(&asleep_started)) sched_yield();
  /* The bound must outlast the cancellable task's unwinding: 20 ms did not under gcc's TSan on
   * a loaded 2-vCPU CI machine (2 abandoned). Only the stubborn task makes the test wait it out. */
  cr_assert_eq(weft_runtime_shutdown(rt, 1000 * 1000000u), WEFT_ETIMEDOUT);
  weft_stats_t st = WEFT_STATS_INIT;
  OK(weft_runtime_stats(rt, &st));
  cr_assert_eq(st.tasks_abandoned, 1, "%llu abandoned", (unsigned long long)st.tasks_abandoned);
  cr_assert_eq(weft_await(u, NULL), WEFT_ECANCELED, "the cancellable one unwound");
  weft_task_t *late;
  cr_assert_eq(weft_runtime_spawn(rt, &late, identity, NULL), WEFT_ESHUTDOWN);
  OK(weft_runtime_destroy(rt)); /* names the stubborn one on stderr, discards it */
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
  weft_task_release(u);
  assert_no_leak();
}

/* A task that ignores its cancel in a loop of suspension points (each answers WEFT_ECANCELED
 * at once: the cancel is sticky) is discarded by destroy after the shutdown's bound, at its
 * next suspension point (review, session 31: destroy never returned, the task spinning). One
 * loop per kind of point (a socket read, a timed await of another such task, a connect); the
 * waits that queue a node (a condition, a timed wait, a select) must leave nothing queued:
 * after the destroy the test uses each object, which would hand a stale node on an unmapped
 * stack its value (the review of the fix crashed so, five ways).
 * (A loop with no suspension point at all still holds its worker: nothing preempts it.) */
enum { IGNORE_KINDS = 13 };
typedef struct {
  int how;
  int fd; /* kind 9's: one end of a socket pair nobody writes to */
  struct sockaddr_in to; /* kind 11's: a listener whose accept queue is full */
  weft_task_t *child; /* kind 10's: a task that ignores its cancel too (kind 0) */
  weft_chan_t *chan;
  weft_future_t *future;
  weft_mutex_t *mutex;
  weft_cond_t *cond;
  weft_sem_t *sem;
  atomic_long cancels; /* this ignorer's (kind 10's child counts its own: review H) */
} ignorer_t;
static atomic_int ignorer_started;
static void *ignores_its_cancel(void *arg) {
  ignorer_t *g = arg;
  uint64_t far = weft_now_ns() + 3600ull * 1000000000u; /* timed: the queued path */
  if (g->how == 4) OK(weft_mutex_lock(g->mutex, UINT64_MAX));
  weft_sock_t *sock = NULL;
  if (g->how == 9) OK(weft_sock_open(NULL, g->fd, &sock)); /* destroy closes it */
  if (g->how == 10) {
    static ignorer_t sleeper; /* kind 0 */
    OK(weft_spawn(&g->child, ignores_its_cancel, &sleeper));
  }
  weft_deadline_t passed; /* kind 12: sleeps in a passed scope (review, session 32: they
                           * answered WEFT_ETIMEDOUT, never the cancel, and never parked) */
  if (g->how == 12) OK(weft_deadline_begin(&passed, 1));
  atomic_fetch_add(&ignorer_started, 1);
  for (;;) {
    void *v;
    weft_chan_op_t op = {g->chan, WEFT_CHAN_RECV, NULL};
    size_t index;
    int err;
    switch (g->how) {
    case 0: err = weft_sleep_ms(10); break;
    case 1: err = weft_yield(); break;
    case 2: err = weft_chan_recv(g->chan, &v, UINT64_MAX); break;
    case 3: err = weft_future_await(g->future, &v); break;
    case 4: err = weft_cond_wait(g->cond, g->mutex, UINT64_MAX); break;
    case 5: err = weft_sem_acquire(g->sem, far); break;
    case 6: err = weft_chan_recv(g->chan, &v, far); break;
    case 7: err = weft_chan_select(&op, 1, UINT64_MAX, &index); break;
    case 8: err = weft_mutex_lock(g->mutex, far); break; /* the test thread holds it */
    case 9: err = (int)weft_sock_read(sock, &v, sizeof v, UINT64_MAX); break;
    case 10: err = weft_await_until(g->child, far, NULL); break;
    case 12: err = weft_sleep_ms(10); break;
    default: /* "retry until connected" (review, session 32: connect never parked) */
      if (!(err = weft_sock_connect(NULL, (struct sockaddr *)&g->to, sizeof g->to, UINT64_MAX,
                                    (weft_sock_t **)&v)))
        weft_sock_close(v);
      break;
    }
    if (err == WEFT_ECANCELED) atomic_fetch_add(&g->cancels, 1);
  }
  return NULL;
}

Test(destroy, a_task_that_ignores_its_cancel_is_discarded_after_the_bound, .timeout = 120) {
  for (int how = 0; how < IGNORE_KINDS; how++) {
    ignorer_t g = {.how = how};
    OK(weft_chan_create(&g.chan, 1));
    OK(weft_future_create(&g.future));
    OK(weft_mutex_create(&g.mutex));
    OK(weft_cond_create(&g.cond));
    OK(weft_sem_create(&g.sem, 0, 0));
    if (how == 8) OK(weft_mutex_lock(g.mutex, UINT64_MAX));
    int sv[2] = {-1, -1};
    if (how == 9) {
      cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
      g.fd = sv[0];
    }
    int queued[FULL_QUEUED], full = how == 11 ? full_listener(&g.to, queued) : -1;
    atomic_store(&ignorer_started, 0);
    weft_runtime_t *rt = runtime_with_short_shutdown(2);
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, ignores_its_cancel, &g));
    /* Unstarted, it would not run. Kind 10 waits for its child's start too: a child the
     * destroy found unstarted ends cancelled at once, and an await of a finished task returns
     * without suspending (docs/api.md, weft_cancel), so its awaiter spun on an answer that
     * never parks and held its worker, and destroy with it (gcc TSan CI, session 36). */
    while (atomic_load(&ignorer_started) < (how == 10 ? 2 : 1)) sched_yield();
    OK(weft_runtime_destroy(rt)); /* cancels it, waits the bound out, discards it */
    cr_assert_gt(atomic_load(&g.cancels), 0, "kind %d: the task never saw its cancel", how);
    /* A cancel after the destroy only requests (review: it woke the park and scheduled the
     * task on the freed runtime; ASan) */
    OK(weft_cancel(t));
    cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN, "kind %d", how);
    weft_task_release(t);
    if (how == 10) weft_task_release(g.child);
    /* Each object is used again: nothing of the discarded task may be queued on it. */
    OK(weft_chan_try_send(g.chan, IPTR(1)));
    OK(weft_cond_notify_all(g.cond));
    OK(weft_sem_release(g.sem));
    if (how != 8) OK(weft_mutex_lock(g.mutex, UINT64_MAX)); /* kind 4 parked with it unlocked */
    OK(weft_mutex_unlock(g.mutex));
    weft_chan_destroy(g.chan);
    weft_future_destroy(g.future);
    weft_mutex_destroy(g.mutex);
    weft_cond_destroy(g.cond);
    weft_sem_destroy(g.sem);
    if (how == 9) close(sv[1]); /* sv[0] was the socket's, closed by the destroy */
    if (how == 11) full_listener_close(full, queued);
  }
  assert_no_leak();
}

/* ---- awaiters in another runtime ---- */

typedef struct {
  weft_task_t *task;
  atomic_int started;
} cross_await_t;

static void *await_other_runtimes_task(void *arg) {
  cross_await_t *c = arg;
  atomic_store(&c->started, 1);
  return IPTR(weft_await(c->task, NULL));
}

Test(destroy, a_task_of_another_runtime_awaiting_a_destroyed_runtimes_task_gets_its_end) {
  for (int round = 0; round < 10; round++) {
    bool stubborn_task = round % 2;
    int expected = stubborn_task ? WEFT_ESHUTDOWN : WEFT_ECANCELED;
    weft_runtime_t *doomed = runtime_with_short_shutdown(1), *other = test_runtime(2);
    cross_await_t c = {.started = 0};
    atomic_store(&stubborn_started, 0);
    atomic_store(&asleep_started, 0);
    OK(weft_runtime_spawn(doomed, &c.task, stubborn_task ? stubborn : asleep_for_an_hour, NULL));
    /* started, as in destroy_under_thread_awaiters: an unstarted task is discarded instead */
    while (!atomic_load(stubborn_task ? &stubborn_started : &asleep_started)) sched_yield();
    weft_task_t *awaiter;
    OK(weft_runtime_spawn(other, &awaiter, await_other_runtimes_task, &c));
    while (!atomic_load(&c.started)) sched_yield();
    OK(weft_runtime_destroy(doomed));
    void *err = NULL;
    OK(weft_join(awaiter, &err));
    cr_assert_eq(PINT(err), expected, "the other runtime's task got %s",
                 weft_err_name((int)PINT(err)));
    weft_task_release(c.task);
    OK(weft_runtime_destroy(other));
  }
  assert_no_leak();
}

/* ---- handles after destroy ---- */

/* ---- a spawn that slips past a bounded shutdown's last walk (review, session 32) ----
 * A task that looked at `closing` before weft_runtime_shutdown(rt, 0) and publishes its child
 * after the walk leaves a child nobody cancelled; destroy discards it where it parks. A
 * weft_cancel of its handle after destroy, or a group's destroy, then won the park and
 * scheduled it onto the freed runtime (ASan). The spawner is held in the spawn's stack-slab
 * map (4 MiB stacks: a fresh slab per stack). */
static atomic_int late_in_spawn, late_shutdown_done, late_child_parked;
static weft_task_t *late_child;
static weft_group_t *late_group;
static void hold_the_spawn(void) {
  if (atomic_exchange(&late_in_spawn, 1)) return;
  uint64_t until = weft_now_ns() + 10ull * 1000000000u;
  while (!atomic_load(&late_shutdown_done) && weft_now_ns() < until) sched_yield();
}
static void *late_child_fn(void *arg) {
  (void)arg;
  atomic_store(&late_child_parked, 1);
  weft_sleep_ms(3600 * 1000); /* uncancelled: parks until destroy discards it */
  return NULL;
}
static void *late_spawner(void *arg) {
  bool grouped = arg != NULL;
  weft__pause_set(WEFT__PAUSE_SLAB_MAP, hold_the_spawn);
  int err = grouped ? weft_group_spawn(late_group, late_child_fn, NULL)
                    : weft_spawn(&late_child, late_child_fn, NULL);
  weft__pause_set(WEFT__PAUSE_SLAB_MAP, NULL);
  return IPTR(err);
}

/* A cancel of the late child from inside destroy's discard (standing in for another thread's
 * weft_cancel, an await_for's timeout or a group's cancel at that moment): it must not win a
 * park and push the task onto the runtime being freed (review of the fix: it did, after the
 * inject queue's quiescence). The pause is destroy's look at a discarded waiter's wait: a
 * shielded task waiting on an event gives it one. */
static weft_runtime_t *late_rt;
static weft_event_t *late_event;
static atomic_int late_waiter_in;
static long late_pushes = -1;
static void cancel_inside_destroy(void) {
  if (late_pushes >= 0) return;
  long before = (long)atomic_load(&late_rt->inject.len);
  OK(weft_cancel(late_child));
  late_pushes = (long)atomic_load(&late_rt->inject.len) - before;
}
static void *shielded_event_waiter(void *arg) {
  (void)arg;
  OK(weft_shield_begin());
  atomic_store(&late_waiter_in, 1);
  weft_event_wait(late_event, UINT64_MAX); /* discarded here */
  return NULL;
}

static void a_late_spawn_is_safe_after_destroy(bool grouped) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.stack_size = (size_t)4 << 20;
  weft_runtime_t *rt = runtime_with(&o);
  atomic_store(&late_in_spawn, 0);
  atomic_store(&late_shutdown_done, 0);
  atomic_store(&late_child_parked, 0);
  late_child = NULL;
  if (grouped) OK(weft_group_create(&late_group, rt));
  late_rt = rt;
  late_pushes = -1;
  atomic_store(&late_waiter_in, 0);
  weft_task_t *waiter = NULL;
  if (!grouped) {
    OK(weft_event_create(&late_event));
    OK(weft_runtime_spawn(rt, &waiter, shielded_event_waiter, NULL));
    while (!atomic_load(&late_waiter_in)) sched_yield();
  }
  weft_task_t *spawner;
  OK(weft_runtime_spawn(rt, &spawner, late_spawner, grouped ? IPTR(1) : NULL));
  while (!atomic_load(&late_in_spawn)) sched_yield();
  cr_assert_eq(weft_runtime_shutdown(rt, 0), WEFT_ETIMEDOUT); /* the spawner is inside */
  atomic_store(&late_shutdown_done, 1);
  while (!atomic_load(&late_child_parked)) sched_yield();
  weft_task_t *child = grouped ? NULL : late_child;
  if (child) /* the gap this test is about: no walk cancelled it (review of the test) */
    cr_assert(!(atomic_load(&child->state) & WK_CANCEL_REQUESTED), "the shutdown saw the spawn");
  OK(weft_join(spawner, NULL));
  if (!grouped) weft__pause_set(WEFT__PAUSE_ABANDON_LOOKED, cancel_inside_destroy);
  OK(weft_runtime_destroy(rt)); /* discards the child where it sleeps */
  weft__pause_set(WEFT__PAUSE_ABANDON_LOOKED, NULL);
  if (grouped) {
    cr_assert_eq(weft_group_wait(late_group), WEFT_ESHUTDOWN);
    weft_group_destroy(late_group); /* cancels what it holds */
    return;
  }
  cr_assert_neq(atomic_load(&late_child->state) & WK_PHASE, WK_PARKED,
                "a discarded task is left parked, for a later cancel to wake");
  cr_assert_eq(late_pushes, 0, "a cancel inside destroy scheduled the discarded task");
  OK(weft_cancel(late_child)); /* only requests */
  cr_assert_eq(weft_await(late_child, NULL), WEFT_ESHUTDOWN);
  weft_task_release(late_child);
  weft_task_release(waiter);
  weft_event_destroy(late_event);
}

Test(destroy, a_spawn_past_a_bounded_shutdown_leaves_a_handle_safe_to_cancel_after_destroy) {
  a_late_spawn_is_safe_after_destroy(false);
}

Test(destroy, a_spawn_past_a_bounded_shutdown_leaves_a_group_safe_to_destroy_after_destroy) {
  a_late_spawn_is_safe_after_destroy(true);
}

/* A destroy while another thread's weft_runtime_shutdown still runs waits for it to return
 * (review, session 32: it took the shutdown for finished, discarded a task still unwinding
 * within the bound, and freed the runtime under the shutdown's next walk; ASan). */
static atomic_int slow_cleanup_started, slow_cleanup_done;
static void *cleans_up_slowly(void *arg) {
  (void)arg;
  if (weft_sleep_ms(3600 * 1000) != WEFT_ECANCELED) return NULL;
  OK(weft_shield_begin());
  atomic_store(&slow_cleanup_started, 1);
  weft_sleep_ms(300); /* the cleanup's own work, well within the shutdown's bound */
  atomic_store(&slow_cleanup_done, 1);
  weft_shield_end();
  return NULL;
}
static int other_threads_shutdown = 1;
static void *shut_down_on_a_thread(void *rt) {
  other_threads_shutdown = weft_runtime_shutdown(rt, 30ull * 1000000000u);
  return NULL;
}

Test(destroy, waits_for_a_shutdown_still_running_on_another_thread) {
  weft_runtime_t *rt = test_runtime(1);
  atomic_store(&slow_cleanup_started, 0);
  atomic_store(&slow_cleanup_done, 0);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, cleans_up_slowly, NULL));
  while (!weft__task_waiting(t)) sched_yield();
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, shut_down_on_a_thread, rt), 0);
  uint64_t until = weft_now_ns() + 30ull * 1000000000u;
  while (!atomic_load(&slow_cleanup_started) && weft_now_ns() < until) sched_yield();
  cr_assert(atomic_load(&slow_cleanup_started), "the shutdown did not cancel the task");
  OK(weft_runtime_destroy(rt));
  cr_assert_eq(atomic_load(&slow_cleanup_done), 1, "destroy discarded a task still unwinding");
  pthread_join(th, NULL);
  OK(other_threads_shutdown);
  cr_assert_eq(weft_join(t, NULL), WEFT_ECANCELED); /* and releases it */
}

Test(destroy, handles_stay_valid_until_released) {
  weft_runtime_t *rt = runtime_with_short_shutdown(1);
  enum { FINISHED = 40, ASLEEP = 40, QUEUED = 300 };
  weft_task_t *finished[FINISHED], *asleep[ASLEEP], *queued[QUEUED];
  /* Odd sleepers are stubborn: discarded (ESHUTDOWN); even ones cancelled (ECANCELED). */
  for (int i = 0; i < FINISHED; i++) {
    OK(weft_runtime_spawn(rt, &finished[i], identity, IPTR(i + 1)));
    OK(weft_await(finished[i], NULL)); /* done, handle still held */
  }
  atomic_store(&stubborn_started, 0);
  atomic_store(&asleep_started, 0);
  for (int i = 0; i < ASLEEP; i++)
    OK(weft_runtime_spawn(rt, &asleep[i], i % 2 ? stubborn : asleep_for_an_hour, NULL));
  /* all stubborn ones in their shields, all others asleep (an unstarted one is discarded) */
  while (atomic_load(&stubborn_started) < ASLEEP / 2 || atomic_load(&asleep_started) < ASLEEP / 2)
    sched_yield();
  for (int i = 0; i < QUEUED; i++) OK(weft_runtime_spawn(rt, &queued[i], identity, IPTR(i)));
  OK(weft_runtime_destroy(rt)); /* some of `queued` may have run: either answer is allowed */
  for (int i = 0; i < FINISHED; i++) {
    void *r = NULL;
    cr_assert_eq(weft_task_result(finished[i], &r), 0);
    cr_assert_eq(PINT(r), i + 1, "a finished task's result survives destroy");
  }
  for (int i = 0; i < ASLEEP; i++)
    cr_assert_eq(weft_await(asleep[i], NULL), i % 2 ? WEFT_ESHUTDOWN : WEFT_ECANCELED);
  for (int i = 0; i < QUEUED; i++) {
    void *r = NULL;
    int err = weft_join(queued[i], &r);
    cr_assert(err == WEFT_ECANCELED || (err == 0 && PINT(r) == i),
              "queued task %d: %s, result %ld", i, weft_err_name(err), PINT(r));
  }
  for (int i = 0; i < ASLEEP; i++) weft_task_release(asleep[i]);
  for (int i = FINISHED - 1; i >= 0; i--) weft_task_release(finished[i]);
  assert_no_leak();
}

/* ---- futures that discarded tasks awaited ---- */

static atomic_int future_awaiters;
static void *await_future(void *arg) {
  atomic_fetch_add(&future_awaiters, 1);
  void *v = NULL;
  weft_future_await(arg, &v);
  return v;
}

static void *await_future_briefly(void *arg) {
  atomic_fetch_add(&future_awaiters, 1);
  void *v = NULL;
  weft_future_await_until(arg, weft_now_ns() + 3600ull * 1000000000u, &v);
  return v;
}

/* Shielded: outlasts the shutdown, so destroy discards it and unlinks its node itself. */
static void *await_future_stubbornly(void *arg) {
  weft_shield_begin();
  void *v = PINT(arg) & 1 ? await_future_briefly((void *)(PINT(arg) & ~1L))
                          : await_future(arg);
  weft_shield_end();
  return v;
}

Test(destroy, a_future_that_discarded_tasks_awaited_stays_usable) {
  for (int round = 0; round < 10; round++) {
    weft_future_t *f;
    OK(weft_future_create(&f));
    atomic_store(&future_awaiters, 0);
    weft_runtime_t *rt = runtime_with_short_shutdown(2);
    for (int i = 0; i < 8; i++) {
      weft_fn fn = i % 2 ? await_future : await_future_briefly;
      OK(weft_runtime_spawn(rt, NULL, fn, f)); /* cancelled: they unlink their own nodes */
      OK(weft_runtime_spawn(rt, NULL, await_future_stubbornly, IPTR((intptr_t)f | (i % 2))));
    }
    while (atomic_load(&future_awaiters) < 16) sched_yield();
    OK(weft_runtime_destroy(rt));
    /* The stubborn ones' nodes lived on discarded stacks: destroy took them out of the list. */
    cr_assert_eq(weft_future_done(f), 0);
    OK(weft_future_resolve(f, IPTR(5)));
    void *v = NULL;
    OK(weft_future_await(f, &v)); /* a plain thread, after destroy */
    cr_assert_eq(PINT(v), 5);
    weft_future_destroy(f); /* would abort if a discarded node were still linked */
  }
  assert_no_leak();
}

/* A thread resolves the future while destroy takes the discarded tasks' nodes out: whichever
 * comes first, no node is touched after its stack is gone (ASan, valgrind) and both end. */
static void *resolve_now(void *arg) {
  weft_future_resolve(arg, IPTR(9));
  return NULL;
}

Test(destroy, resolving_a_future_while_destroy_discards_its_awaiters) {
  for (int round = 0; round < 20; round++) {
    weft_future_t *f;
    OK(weft_future_create(&f));
    atomic_store(&future_awaiters, 0);
    weft_runtime_t *rt = runtime_with_short_shutdown(2);
    for (int i = 0; i < 8; i++) OK(weft_runtime_spawn(rt, NULL, await_future_stubbornly, f));
    while (atomic_load(&future_awaiters) < 8) sched_yield();
    pthread_t resolver;
    cr_assert_eq(pthread_create(&resolver, NULL, resolve_now, f), 0);
    OK(weft_runtime_destroy(rt));
    pthread_join(resolver, NULL);
    cr_assert(weft_future_done(f));
    weft_future_destroy(f);
  }
  assert_no_leak();
}

/* ---- the stale wake ---- */

static void on_alarm(int sig) { (void)sig; }

static void *finish_after(void *arg) {
  uint64_t spin_until = weft_now_ns() + (uint64_t)PINT(arg);
  while (weft_now_ns() < spin_until) {
  }
  return arg;
}

/* A thread awaits with deadlines that race the completion, while SIGALRM interrupts every
 * futex wait each 100 µs (the storm that made a completer's FUTEX_WAKE land on a returned
 * waiter's frame: valgrind reported it, here under valgrind_destroy). Each await ends exactly
 * once: with the result, or timed out and then awaited to its result. */
Test(destroy, timed_awaits_racing_completions_under_a_signal_storm, .timeout = 300) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_alarm; /* no SA_RESTART: every blocking call returns EINTR */
  sigaction(SIGALRM, &sa, NULL);
  struct itimerval storm = {{0, 100}, {0, 100}};
  setitimer(ITIMER_REAL, &storm, NULL);
  weft_runtime_t *rt = test_runtime(2);
  uint64_t seed = test_seed();
  int rounds = SCALE(3000, 600), timed_out = 0;
  for (int i = 0; i < rounds; i++) {
    long work_ns = (long)(test_rand(&seed) % 200000);
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, finish_after, IPTR(work_ns)));
    void *r = NULL;
    int err = weft_await_timeout(t, test_rand(&seed) % 100000, &r);
    if (err == WEFT_ETIMEDOUT) {
      timed_out++;
      err = weft_await(t, &r);
    }
    cr_assert_eq(err, 0, "round %d: %s", i, weft_err_name(err));
    cr_assert_eq(PINT(r), work_ns, "round %d: wrong result", i);
    weft_task_release(t);
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  OK(weft_runtime_destroy(rt));
  cr_log_info("%d of %d awaits timed out", timed_out, rounds);
}
