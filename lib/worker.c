/*
 * Workers: the scheduler loop, stealing, spinning and parking.
 *
 * Where a worker looks for its next task, in order:
 *   1. every 61st tick, the inject queue and then its yield queue first (so that tasks that
 *      yielded, or were spawned by other threads, cannot starve behind local work; 61 is
 *      Go's choice, prime so that it does not beat with a program's own periods);
 *   1½. its next slot, at most NEXT_BURST (3) times in a row while its queues hold anything
 *      (see "The next slot" below);
 *   1¾. its private spawns, newest first (see "Private spawns" below: a spawn is kept from
 *      thieves until one asks); whatever this loop picks, the kept spawns it does not start
 *      go onto its deque first;
 *   2. its own deque, newest first (LIFO: the task just spawned or woken shares the cache);
 *   3. its yield queue, oldest first (asyncio's sleep(0) goes behind the ready tasks), taken
 *      in batches of up to half into a private run (take_own_yielded: one CAS a batch);
 *   4. the inject queue (FIFO: spawns and wake-ups from threads that are not workers; a
 *      lock-free MPSC list, lib/inject_impl.h), taken in batches of a fair share whose rest
 *      goes onto the worker's yield queue (still FIFO);
 *   5. due timers;
 *   6. stealing: the oldest entry of a random victim's deque — and, if the thief's last steal
 *      was recent and the deque holds more, up to STEAL_MORE of the next oldest (half at most)
 *      onto the thief's own deque: steal_more — then of its yield queue (a round of tries is a read section of the deques' epoch
 *      domain: lib/deque.c);
 *   7. after a bounded spin, parking (after a scavenger pass: see park()).
 * Guarantee: no ready task starves. A task in a deque runs when its owner drains the LIFO end
 * or a thief takes it (oldest first); yielded and injected tasks are checked every 61 ticks; a
 * private spawn runs when its worker next looks for work, or is pushed where thieves find it
 * (see "Private spawns").
 * The order among ready tasks is otherwise unspecified, as in asyncio.
 *
 * Spinning and parking (Go's rule, proc.go). A worker with nothing to do becomes a spinner
 * and looks for work for a bounded number of rounds before it parks on its own futex word.
 * Making work runnable wakes a parked worker only if no worker is spinning and some worker is
 * parked; a spinner that finds work and was the last spinner wakes another, so that a burst
 * of spawns fans out one worker at a time. Hence the spawn and completion fast paths make no
 * futex call while all workers are busy.
 *   No lost wake-ups: the producer's side is "store the work (seq_cst) → load nspinning and
 *   nidle (seq_cst)", the parker's "increment nidle and decrement nspinning (seq_cst RMWs) →
 *   load every queue (seq_cst)". In the single total order one of the two sees the other.
 *   The two halves are park_impl.h's, model-checked with their planted bugs in tests/model.
 *   A worker moving between the counts joins the new one before it leaves the old (a parker
 *   nidle first, a woken or self-unlisted worker nspinning first), and a worker counts as
 *   spinning from before its thread starts: a spawn's idle check (weft__workers_idle, see
 *   "Private spawns") then never reads both as 0 while a worker is idle (session 11: CI hung
 *   on a runtime whose threads had not yet looked for work).
 *   Which pushes need this: one onto an empty deque (deque_impl.h makes it seq_cst), and any
 *   push made while some worker is idle (spinning or parked; push_fit_as's `announce`). The
 *   second was missing until session 20 (review, with a 3-thread relacy model): a push that
 *   sees the deque non-empty while a spinner steals its last older entry — that spinner not
 *   the last, so it wakes no one — could be missed by another spinner parking just then (its
 *   release store still in the pusher's store buffer, or the pusher's view of top stale), and
 *   every later push found the deque non-empty: the sleeper slept through the storm. With
 *   every worker busy no push pays for it. Every push onto a worker's own queues does this
 *   (push_local, after_yield, poll.c's ready_fifo), not only a spawn's (session 33). One
 *   window is left (review, session 33, a relacy model): the idle check comes before the push,
 *   so a pusher that saw every worker busy and was preempted between its look at top and its
 *   store of bottom can publish after two others went idle, one stealing the older entry and
 *   the other parking: the entry waits for the pusher's worker (it is not lost: the owner
 *   drains its queues before it parks). Closing it would take a second look at top after
 *   every push.
 * Cost measured on this 2-vCPU VM: waking a parked worker ~84 µs round trip (a halted vCPU),
 * so the spin budget is generous (SPIN_ROUNDS rounds, ~20-50 µs) before a futex wait.
 * Rejected: busy-waiting forever (Lace: 100% CPU while idle), one condition variable for all
 * (thundering herd and a mutex on every spawn), ck_ec (its wait/wake live in uninstrumented
 * libck.so: every hand-off would need TSan annotations that the futex word gives for free).
 *
 * The next slot (#11; Go's runnext, Tokio's LIFO slot). A task woken by the task running on
 * worker w (a channel hand-off, an unlock, a completion, a cancel) goes into w's one-entry next
 * slot instead of its deque; an entry it displaces goes to the deque. Two tasks that wake each
 * other (pingpong, a producer and its consumer) so stay on one worker and in its cache: pushed
 * onto the deque, the woken task was stolen at once by the other worker, which spins looking
 * for work, and the pair crossed cores on every hop (pingpong at 2 workers: 2.3× slower than at
 * 1). The protocol is lib/next_impl.h's (model-checked, tests/model/next_model.cpp): the owner
 * fills the slot (a seq_cst exchange) and empties it (an exchange); a thief empties it with a
 * CAS, but only a word it has seen there unchanged for NEXT_STEAL_NS (3 µs, Go's runqgrab
 * delay; the word carries a put counter, so a pair that puts the same two tasks back every
 * other hop is not mistaken for a stuck entry). So a task in the slot of a worker whose running
 * task never gives the worker back (a long computation, a blocking call) is still run: by a
 * spinner within 3 µs, else by the watcher (below) within NEXT_WATCH_NS, and the put itself
 * wakes a parked worker when no watcher looks (the wake check as for a push onto an empty
 * deque: the put's seq_cst exchange is its store side, and parkers look at every slot).
 * Fairness: the slot is taken at most NEXT_BURST times in a row while the worker's deque,
 * yield queue or the inject queue hold anything (Tokio's 3); the 61-tick rule above still
 * applies. Cost: a put and a take are one locked instruction each (a deque push and take of a
 * woken task: two, plus a thief's probe of a busy line).
 * The direct switch: a task that suspends to park while the slot holds an entry that the loop
 * would pick next anyway switches straight to that task's stack (no round trip through the
 * scheduler's stack); the task resumed there performs the suspended one's after-action
 * (weft__suspend's tail), as the loop would have. A yield does the same with the oldest entry
 * of the worker's private run of yielded tasks (#13, direct_yielded), when the slot and the
 * deque are empty and that entry is a suspended task; and when nothing else is ready on the
 * worker at all, the yielding task simply goes on (the loop would queue it and take it straight
 * back; the yields metric counts it in n_yieldq_extra). A park whose slot is empty does the same
 * with that oldest yielded entry (the poller queues the tasks its fds woke there: a connection
 * that waits for its socket switches straight to the next ready one; issue 12's echo, round 4).
 * Outside a fairness tick only, so timers, fds and the inject queue still get their look every
 * FAIRNESS_TICKS slices. Measured (yield,
 * bench/README.md's #13): instructions per yield −21 % at 1 worker, CPU time 3.7× less at 2
 * workers (where a worker holding one task at a time is common). Rejected: the issue's
 * owner-only yield ring published on demand (Lace's split deque): the locked instructions it
 * would save were already one CAS per batch of 32; the cost was in the two switches per yield
 * (each return after a switch lands where the return predictor does not expect it) and the
 * loop's look for work in between.
 * The watcher. While some slot is in use (puts since a spinner's last look), the spinner that
 * finds nothing parks as the runtime's one watcher: a timed park of NEXT_WATCH_NS (1 ms), whose
 * look before sleeping ignores the slots (a busy pair keeps one filled most of the time), after
 * which it looks once (stealing an entry that sat there since its previous look) and parks
 * again, until a whole watch passes without a put. A put that sees a watcher (seq_cst) skips
 * its wake check: otherwise every put into an empty slot — every hop of a pair — found the
 * other worker parked and paid a futex wake (12 000 per 10^6 round trips). The watcher's end
 * (a seq_cst RMW) and its next park's look at the slots make the other half of that check.
 * Rejected: a slot only the owner may empty (Tokio; a task in it waits as long as its waker's
 * worker is busy, and a task that busy-waits for the woken one never ends), spinning while
 * slots are in use (a whole CPU, and on this shared 2-vCPU VM the spinner's time came out of
 * the pair's: 2× slower), and handing the woken task to the waker privately until it suspends
 * (no thief could reach it: the same starvation as Tokio's).
 */
#include "deque.h"
#include "frame.h"
#include "internal.h"
#include "wake.h" /* the direct wait's commit (do_after) */

#define PK_COUNT _Atomic int
#define PK_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define PK_FETCH_ADD(obj, v, mo) atomic_fetch_add_explicit(&(obj), (v), (mo))
#define PK_FETCH_SUB(obj, v, mo) atomic_fetch_sub_explicit(&(obj), (v), (mo))
#define PK_SC memory_order_seq_cst
#define PK_FN(name) park_##name
/* Generates park_wake_needed and park_announce_idle (static inline): the hand-off's two
 * halves, shared with the relacy model. */
#include "park_impl.h"

#define NX_SLOT _Atomic uintptr_t
#define NX_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define NX_XCHG(obj, v, mo) atomic_exchange_explicit(&(obj), (v), (mo))
#define NX_CAS(obj, expected, v, mos, mof) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (v), (mos), (mof))
#define NX_RLX memory_order_relaxed
#define NX_ACQ memory_order_acquire
#define NX_SC memory_order_seq_cst
/* The put counter above the entry: user-space addresses stay below 2^48 on x86-64 and
 * aarch64 (an entry that does not fit goes to the deque: next_fits). */
#define NX_GEN_SHIFT (UINTPTR_MAX > 0xffffffffu ? 48 : 0)
#define NX_FN(name) next_##name
/* Generates next_fits, next_put, next_take, next_peek and next_steal (static inline): the next
 * slot's protocol, shared with the relacy model. */
#include "next_impl.h"

#include <ck_backoff.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <ck_pr.h>

/* Where each value comes from: "Go" copies Go's runtime, "measured" was chosen by a measurement
 * (cited), "picked" was set by hand and never swept — a candidate for the benchmarks. */
enum {
  FAIRNESS_TICKS = 61, /* Go (schedule's 61): prime, so it does not beat with a program's period */
  SPIN_ROUNDS = 64,    /* measured: ~20-50 µs of spinning against an ~84 µs park/wake round trip */
  STEAL_TRIES = 4,     /* picked: victims per spin round */
  INJECT_BATCH = 32,   /* picked: injected entries taken at once (the rest to the yield queue) */
  NEXT_BURST = 3,      /* Tokio (MAX_LIFO_POLLS_PER_TICK): slot picks in a row before a look */
  NEXT_STEAL_NS = 3000, /* Go (runqgrab's usleep(3)): a slot entry is stealable after 3 µs */
  NEXT_WATCH_NS = 1000000, /* picked: a watcher's look at busy slots, once a millisecond */
  SPIN_ROUNDS_IO = 2,  /* measured: while the poller is active (spin_rounds; >= 1, or no steal) */
  RECLAIM_RETRY_NS = 1000000, /* picked: an idle worker's next try at arrays held back (park) */
  STEAL_MORE = 15,     /* picked: extra entries a successful steal takes from the same deque */
  QUICK_STEAL_TICKS = 8, /* picked: a steal this soon after the last one takes a batch */
};

/* Not static: lib/arch/tls_*.h reads it by name. Hidden: not part of the ABI. initial-exec:
 * the model those reads use (see there). */
__attribute__((visibility("hidden"), tls_model("initial-exec"))) __thread weft__worker_t
    *weft__tls_worker;

#ifndef WEFT__TLS_WORKER_INLINE
weft__worker_t *weft__worker_self(void) {
  /* The barrier keeps the compiler from reusing a TLS address computed before a switch. */
  __asm__ __volatile__("" ::: "memory");
  return weft__tls_worker;
}
#endif

/* The thread's frame deque for weft.h (NULL off a worker): exported, initial-exec. */
__attribute__((visibility("default"), tls_model("initial-exec"))) __thread weft__frames_t
    *weft__tls_frames;

void weft__worker_set_self(weft__worker_t *w) {
  weft__tls_worker = w;
  weft__tls_frames = w ? &w->frames : NULL; /* for weft.h's inline forks */
}

/* ---- Frames: the thief's and the suspension's side (fork and sync: lib/frame.c) ----------- */

/* victim's oldest shared frame made into a task to start (an entry), or 0. Out of line, as
 * detach_frames: inlined, they made the hot paths around them save registers (+12
 * instructions a yield). */
static uintptr_t __attribute__((noinline))
steal_frame(weft__worker_t *thief, weft__worker_t *victim) {
  void *x = frames_steal(&victim->frames);
  if (!x || x == FR_ABORT) return 0;
  weft__frame_t *f = x;
  weft__tsan_acquire(&f->fn); /* the fork edge (FR_PREPARE's release) */
  struct weft_task *t = weft__task_make(thief->rt, thief, weft__frame_run, f);
  if (!t) {
    weft__frame_unrun(f); /* no descriptor: the owner's sync runs it */
    return 0;
  }
  return (uintptr_t)t;
}

/* weft__suspend's: the frames in w's deque are the suspending task's (or its inline callers');
 * they leave the deque — queued as tasks, or run by their sync — so that the deque serves the
 * next task, and the suspended one may resume on any worker. */
static void __attribute__((noinline, cold)) detach_frames(weft__worker_t *w) {
  weft__frames_t *d = &w->frames;
  uint32_t stolen = frames_reclaim_all(d); /* [0, stolen) thieves have; the rest is ours */
  /* Every frame here was forked on the running task's stack (its own, or an inline caller's):
   * the AWAY ones are counted there until synced, so that the stack's task cannot end with
   * one outstanding (a runner would write into a dead stack). */
  uint32_t away = d->head;
  for (uint32_t i = 0; i < d->head; i++) {
    /* relaxed: our own writes */
    weft__frame_t *f = atomic_load_explicit(&d->slot[i], memory_order_relaxed);
    f->where = FRAME_AWAY;
    if (i < stolen) continue; /* its thief's runner completes it */
    FR_PREPARE(f); /* ours again: nobody else reads it until the runner is queued */
    struct weft_task *t = weft__task_make(w->rt, w, weft__frame_run, f);
    if (!t) {
      f->where = FRAME_DEFERRED;
      away--;
      continue;
    }
    weft__schedule_local(w, (uintptr_t)t);
  }
  weft__current(w)->runs_on->frames_away += away;
  frames_reset(d);
}

/* ---- Chaos mode ----------------------------------------------------------------------------- */

/* Schedule perturbation (WEFT_CHAOS, weft_options_t.chaos_seed): Go's randomised select and
 * Tokio's shuttle are the models — explore orders the default policy never produces, from a
 * seed. Each worker draws from its own xorshift64 seeded from the runtime's seed and its index,
 * so one worker replays exactly (no timers: their firing depends on the clock). Two knobs:
 * which ready task runs next (chaos_local_work: either end of the deque, the yield queue or the
 * inject queue, in random order), and a random yield after spawns (weft__chaos_point) and
 * before suspensions (weft__suspend): where a task's check and its act get separated by another
 * task's. Rejected: random preemption (cooperative tasks cannot be preempted without signals,
 * which TSan delivers only at interceptors), and perturbing only with random sleeps (timing,
 * not a seed, would decide the order). Off, it costs an untaken branch per local_work, spawn
 * and suspension. */
static uint32_t chaos_next(weft__worker_t *w) {
  uint64_t x = w->chaos; /* xorshift64: never 0 once seeded non-zero */
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  w->chaos = x;
  return (uint32_t)(x >> 32);
}

void weft__chaos_point(struct weft_task *self) {
  if (WEFT__LIKELY(!self || !weft__task_rt(self)->chaos_seed)) return;
  weft__worker_t *w = weft__worker_self();
  /* A plain suspension, not weft_yield: a chaos point must not deliver (and so consume) a
   * pending cancel that no call of the task's would report. */
  if (w && weft__current(w) == self && (chaos_next(w) & 1)) weft__suspend(w, WEFT__AFTER_YIELD, self);
}

static uint32_t next_random(weft__worker_t *w) {
  /* xorshift32: victims need spreading, not quality */
  uint32_t x = w->rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return w->rng = x;
}

/* ---- Inject queue --------------------------------------------------------------------------- */

#define IQ_NODE struct weft_task
#define IQ_QUEUE weft__inject_t
#define IQ_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define IQ_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define IQ_XCHG(obj, v, mo) atomic_exchange_explicit(&(obj), (v), (mo))
#define IQ_CAS(obj, expected, v, mo) \
  atomic_compare_exchange_strong_explicit(&(obj), &(expected), (v), (mo), memory_order_relaxed)
/* task->next is a plain pointer (the free lists use it too): GCC's __atomic builtins make these
 * accesses atomic, and TSan sees them as such. The C11 orders have the same values. */
#define IQ_LINK_LOAD(node, mo) ((uintptr_t)__atomic_load_n(&(node)->next, (mo)))
#define IQ_LINK_STORE(node, v, mo) __atomic_store_n(&(node)->next, (struct weft_task *)(v), (mo))
#define IQ_UNTAG(entry) ((struct weft_task *)((entry) & ~WEFT__ENTRY_TAGS))
#define IQ_RLX memory_order_relaxed
#define IQ_ACQ memory_order_acquire
#define IQ_REL memory_order_release
#define IQ_ACQ_REL memory_order_acq_rel
#define IQ_SC memory_order_seq_cst
#define IQ_FN(name) iq_##name
/* Generates iq_init, iq_push_begin/iq_push_link, iq_try_take/iq_untake, iq_pop, iq_visible
 * and iq_quiescent (static inline), shared with the relacy model. */
#include "inject_impl.h"

void weft__inject_init(struct weft_runtime *rt) {
  iq_init(&rt->inject);
  atomic_init(&rt->inject.len, 0);
}

void weft__inject_push(struct weft_runtime *rt, uintptr_t entry) {
  /* relaxed: a hint (fair shares, metrics); the exchange carries the protocol */
  atomic_fetch_add_explicit(&rt->inject.len, 1, memory_order_relaxed);
  uintptr_t prev = iq_push_begin(&rt->inject, entry);
  /* Before the link: the entry cannot run (and its task end, and its owner destroy the
   * runtime) until we link it, and destroy waits for every link (weft__inject_quiesce), so
   * the link must be our last touch of rt. Rejected: waking after the link (a resolver on
   * another thread read rt->nspinning after the runtime was freed: TSan, test_destroy). */
  weft__wake_one_if_needed(rt);
  iq_push_link(prev, entry);
}

void weft__inject_quiesce(struct weft_runtime *rt) {
  /* The workers have stopped: the try-lock is free, and only outside producers that are
   * between their exchange and their link remain (a few instructions, unless preempted). */
  while (!iq_quiescent(&rt->inject)) sched_yield();
}

/* Queued entries (the length hint counts them from before the producer's exchange) but none
 * to pop: a producer is between its exchange and its link (inject_impl.h's "blocking"), which
 * comes after its wake check. If that producer is on our CPU, preempted by the very worker its
 * wake check woke (us), it links only when we give the CPU up: spinning and parking (which
 * sees the queue visible and does not sleep) kept it off until the scheduler's tick, ~4 ms per
 * foreign wake-up with two workers on one CPU (session 27: bench/wake_latency under
 * `taskset -c 0`, perf trace). A yield lets it finish; on another CPU it links within
 * nanoseconds and the yield costs a system call, only in this window. */
static void producer_gap_yield(void) { sched_yield(); }

/* Takes the oldest injected entries, a fair share of them (Go's globrunqget: len/workers + 1,
 * at most INJECT_BATCH), into out[], oldest first; returns how many. One try-lock round trip
 * then feeds a busy worker many foreign spawns instead of one per fairness tick (a worker
 * whose own task kept yielding polled injected work only every 61st tick, and 10^6 spawns
 * from other threads crawled behind it). A worker that finds another one taking looks
 * elsewhere: the queue still counts as visible work, so nobody parks on it. */
static int inject_pop_batch(struct weft_runtime *rt, uintptr_t out[INJECT_BATCH]) {
  /* relaxed: a hint; a stale 0 is caught by the next look (visible() guards parking) */
  long len = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
  if (len <= 0) return 0;
  long share = len / rt->nworkers + 1;
  if (share > INJECT_BATCH) share = INJECT_BATCH;
  if (!iq_try_take(&rt->inject)) return 0;
  int taken = 0;
  uintptr_t e;
  while (taken < share && (e = iq_pop(&rt->inject))) out[taken++] = e;
  iq_untake(&rt->inject);
  atomic_fetch_sub_explicit(&rt->inject.len, taken, memory_order_relaxed); /* relaxed: a hint */
  if (WEFT__UNLIKELY(taken == 0)) producer_gap_yield();
  return taken;
}

/* ---- Waking ------------------------------------------------------------------------------- */

/* Sets w's park word and, unless w is the calling thread's own worker, wakes its thread (the
 * futex, or the poller if w blocks in it). A worker wakes itself when it dispatches fds from
 * park: it is still on the idle list while it polls, so the wake-up its batch causes may pick
 * it — it is awake and checks its park word before any wait (the futex wait would fail on it,
 * and its poll has released the poller), so the system calls are skipped: with one worker
 * (the pinned echo benchmark) they were 0.07 futex calls per message. */
static void unpark(struct weft_runtime *rt, weft__worker_t *w) {
  /* seq_cst (release would do for the futex): the store side of the poller's break check */
  atomic_store_explicit(&w->park_word, 1, memory_order_seq_cst);
  if (w == weft__worker_self()) return;
  weft__futex_wake(&w->park_word, 1);
  if (weft__poll_active(rt)) rt->poll_hooks->woke(rt, w); /* w may be blocked in the poller */
}

static void wake_one(struct weft_runtime *rt) {
  pthread_mutex_lock(&rt->idle_lock);
  weft__worker_t *w = rt->idle_list;
  if (w) {
    rt->idle_list = w->next_idle;
    w->idle_listed = false;
    /* The woken worker starts out spinning; counting it now keeps concurrent producers from
     * waking a second worker for the same work (Go's wakep). Counted as spinning before it
     * leaves the idle count: a spawn between the two must not see no worker idle (lib/task.c
     * would keep its child private). */
    atomic_fetch_add_explicit(&rt->nspinning, 1, memory_order_seq_cst); /* seq_cst: wake check */
    atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);     /* seq_cst: wake check */
  }
  pthread_mutex_unlock(&rt->idle_lock);
  if (w) unpark(rt, w);
}

void weft__wake_one_if_needed(struct weft_runtime *rt) {
  if (park_wake_needed(&rt->nspinning, &rt->nidle)) wake_one(rt);
}

/* Pushes onto one of w's own queues; an empty→non-empty push, or an announced one (made
 * because a worker was seen idle: deque_impl.h's push_fit_as), may need a parked worker woken.
 * Returns whether entry went onto q (false: it spilled to the inject queue). */
static bool push_local_as(weft__worker_t *w, weft__deque_t *q, uintptr_t entry, bool announce) {
  int r = weft__deque_push_as(q, entry, announce);
  if (WEFT__LIKELY(r == 0)) return true; /* non-empty before, not announced: someone knows */
  if (r < 0) {
    weft__inject_push(w->rt, entry); /* the deque could not grow: spill (it wakes) */
    return false;
  }
  weft__wake_one_if_needed(w->rt);
  return true;
}

/* Announced whenever a worker is idle, as a spawn's (review, session 33: only spawns were, and
 * a yield, a park's commit, a displaced next entry or a batch pushed onto a non-empty queue
 * while a spinner stole its last older entry could leave another spinner parked beside it —
 * session 20's lost wake-up, shown again by a reviewer's relacy model of after_yield built on
 * deque_impl.h and park_impl.h; tests/model/deque_model.cpp's planted "unannounced" push is
 * the same protocol). */
static bool push_local(weft__worker_t *w, weft__deque_t *q, uintptr_t entry) {
  return push_local_as(w, q, entry, weft__workers_idle(w->rt));
}

int weft__schedule_local(weft__worker_t *w, uintptr_t entry) {
  push_local(w, &w->deque, entry);
  return 0;
}

/* A push made because some worker was seen idle (spinning or parked): seq_cst and followed by
 * the wake check even onto a non-empty deque (a spinner emptying it may be the one that parks
 * next). */
int weft__schedule_local_announced(weft__worker_t *w, uintptr_t entry) {
  push_local_as(w, &w->deque, entry, true);
  return 0;
}

/* ---- Private spawns (#13, session 10) ------------------------------------------------------
 * A worker's spawn (lib/task.c, spawn_local) goes into w->priv, a plain array that only the
 * owner touches, and the join of the newest child takes it back from there: no atomic
 * instruction and no fence on fork-join's hot path. A Chase–Lev take needs a store→load fence
 * (deque_impl.h) on every pop, and that fence was ~30 % of fib's time here (measured by
 * removing it: fib 35 98 → 69-84 ms). Private spawns reach thieves the way the frames' do
 * (Lace's split deque, lib/frame_impl.h), and through the same ask (the frames' splitreq): a
 * thief that finds nothing shared asks, as does a worker about to park. The owner answers by
 * pushing every private spawn onto its deque, oldest first (weft__priv_share), at its next
 * spawn or fork, at a join out of LIFO order and before each child a gather runs inline
 * (lib/join.c); and whatever its loop picks while spawns are kept — the newest kept one, the
 * next slot, a yielded or injected task at the fairness tick — the kept ones it does not start
 * are pushed first (the direct switches of weft__suspend leave such a worker to its loop).
 * Pushed at once instead of kept: a spawn that would be the only task queued on its worker,
 * every spawn while some worker is idle (parked or spinning: a parker asked when it parked, but
 * its wake-up takes ~84 µs, and a parent that computes after a burst of spawns would keep them
 * all: review; the idle check's accounting is in "Spinning and parking" above), and a full
 * run (WEFT__PRIV_CAP) as a whole. The kept ones are mostly the deque's newest entries
 * (a frame's runner, an entry displaced from the next slot or a cancelled parker's push can
 * land above them, which changes only the order).
 * The price, which is Lace's and Tokio's LIFO slot's: a kept spawn waits for its worker while
 * the task that spawned it (or a child running inline on its stack) computes without
 * spawning, forking or suspending. A task that waits for a sibling or child by blocking its
 * thread (spinning on memory, a blocking call) instead of a weft wait may wait for ever; with
 * two workers or more it did not before (weft.h, weft_spawn).
 * No protocol changed: the array is owner-only, and the entries reach thieves through the
 * deque's own push; so the relacy models (deque, frames) cover all that is shared.
 * Rejected: a private part inside the Chase–Lev deque (a second split protocol to prove, with
 * a growable array); an asymmetric fence (membarrier) instead of take's fence (an IPI to every
 * CPU of the process per steal, and a steal storm such as spawn 10^6 steals 10^5 times);
 * keeping the newest spawn only (a slot, Tokio's): fib's children are joined after their
 * younger siblings' subtrees, so most would still be on the deque at their join; sharing
 * before every gather (skynet's gathers of ten: +11 % instructions). */
int weft__priv_share(weft__worker_t *w) {
  /* relaxed: a hint, cleared before the pushes (as frames_share does); frames_share below clears
   * it again, which may drop an ask made meanwhile: harmless, the pushes are visible and their
   * wake check follows, and a thief that still finds nothing asks again */
  bool asked = atomic_load_explicit(&w->frames.splitreq, memory_order_relaxed) != 0;
  atomic_store_explicit(&w->frames.splitreq, 0, memory_order_relaxed);
  uint32_t n = atomic_load_explicit(&w->npriv, memory_order_relaxed); /* relaxed: our own */
  atomic_store_explicit(&w->npriv, 0, memory_order_relaxed);          /* relaxed: metrics' */
  /* The last push announced only when a worker asked or is idle: a share on the all-busy path
   * (a join out of LIFO order, the loop picking past kept spawns) pays nothing more (review) */
  bool announce = asked || weft__workers_idle(w->rt);
  bool was_empty = false;
  for (uint32_t i = 0; i < n; i++) {
    /* push_fit inline (a spawn storm pushes every entry here: push_local's call was ~30 of its
     * instructions); a full deque's growth, or spill, is push_local's, wake included. The
     * batch's last push is announced (seq_cst, then the wake check below) when it answers an
     * ask or a worker seen idle: one of them may be parking while the deque empties. */
    bool last_announced = announce && i + 1 == n;
    int r = weft__deque_push_fit_as(&w->deque, w->priv[i], last_announced);
    if (WEFT__UNLIKELY(r == WEFT__DEQUE_FULL)) push_local_as(w, &w->deque, w->priv[i], last_announced);
    else if (r) was_empty = true; /* that push was seq_cst: the wake check's store side */
  }
  if (was_empty) weft__wake_one_if_needed(w->rt);
  if (n) weft__probe_hit(WEFT__PROBE_PRIV_SHARED);
  /* The ask may have been for frames: answer it for them too (lib/frame.c's fork does). */
  if (w->rt->nworkers > 1 && frames_share(&w->frames)) weft__wake_one_if_needed(w->rt);
  return 0;
}

void weft__schedule_next(weft__worker_t *w, uintptr_t entry) {
  /* Chaos mode explores orders: no slot (its pick is chaos_local_work's). */
  if (WEFT__UNLIKELY(w->chaos || !weft__current(w) || !next_fits(entry))) {
    push_local(w, &w->deque, entry);
    return;
  }
  /* relaxed load + store: owner-written, read by spinners as a hint (next_active) */
  uint32_t puts = atomic_load_explicit(&w->next_puts, memory_order_relaxed) + 1;
  atomic_store_explicit(&w->next_puts, puts, memory_order_relaxed);
  uintptr_t old = next_put(&w->next, entry, puts & 0xffff);
  if (old) /* displaced (Go's runqput kicks the old runnext to its queue): the deque's LIFO end */
    push_local(w, &w->deque, old);
  else if (!atomic_load_explicit(&w->rt->nwatching, memory_order_seq_cst) &&
           park_wake_needed(&w->rt->nspinning, &w->rt->nidle))
    /* the slot was empty and no watcher looks: the put was seq_cst, the store side of the
     * wake check (see the top); seq_cst load: the watcher's end is in the same order */
    wake_one(w->rt);
}

void weft__schedule(struct weft_runtime *rt, uintptr_t entry) {
  weft__worker_t *w = weft__worker_self();
  if (WEFT__LIKELY(w && w->rt == rt)) {
    if (entry & WEFT__ENTRY_RESUME)
      weft__schedule_next(w, entry); /* a wake-up by the running task: its worker runs it next */
    else
      weft__schedule_local(w, entry);
    return;
  }
  weft__inject_push(rt, entry);
}

/* ---- Finding work ------------------------------------------------------------------------- */

/* The victim's next slot, if it has held the same put for NEXT_STEAL_NS: its owner is running
 * something long (or blocked), and the woken task should not wait for it. Earlier, the owner
 * will most likely take it itself within a hop, and stealing it would move a pair of tasks that
 * wake each other to another core on every hop (the cause of pingpong's 2-worker slowdown).
 * One word of memory per thief: the last slot word seen and since when. */
static uintptr_t steal_next(weft__worker_t *w, weft__worker_t *victim) {
  uintptr_t seen = next_peek(&victim->next, 0);
  if (!seen) return 0;
  uint64_t now = weft_now_ns();
  if (seen != w->next_seen) {
    w->next_seen = seen;
    w->next_seen_ns = now;
    return 0;
  }
  if (now - w->next_seen_ns < NEXT_STEAL_NS) return 0;
  w->next_seen = 0;
  return next_steal(&victim->next, seen);
}

/* Batch steals (#13, session 16). A thief that comes back for more within QUICK_STEAL_TICKS
 * slices of its last steal (what it stole was short: a spawn storm) takes, after its steal, up
 * to STEAL_MORE more of the victim's oldest entries — half of what the deque holds at most, as
 * Go's runqsteal — onto its own deque (steal_one pushes them after the read section). One at a
 * time, each such task cost the thief a whole look for work: two locked updates of nspinning
 * (which the spawner's idle check reads on every spawn), an epoch entry, a miss on the victim's
 * bottom. Measured (bench/README.md, "Session 16"): spawn 10^6 0.69-0.82x the time. Each extra
 * is the deque's own steal (a CAS apiece), so the Chase-Lev protocol and its relacy model
 * (whose thieves already steal twice in a row) are unchanged.
 * Only quick steals: a thief's first steal, or one after a long task, takes one entry. Taking
 * batches always made fork-join's rare steals take several of the largest subtrees at once
 * (fib's slow rounds), and gave yield 10^7's thief many yielders at once where it held one
 * (+13 %: its yields then switch instead of going on).
 * Rejected: one CAS for several entries (deque_impl.h's steal_batch): take claims the bottom
 * without a CAS, so a multi-entry claim at the top can overlap it; a chain of private spawns
 * pushed as one entry (every consumer of entries would have to understand chains). */
static inline int64_t deque_length_hint(weft__deque_t *d) {
  /* relaxed: a hint; the steal decides */
  return atomic_load_explicit(&d->bottom, memory_order_relaxed) -
         atomic_load_explicit(&d->top, memory_order_relaxed);
}

static int steal_more(weft__worker_t *w, weft__deque_t *d, uintptr_t *more) {
  int64_t half = deque_length_hint(d) / 2;
  int max = half < STEAL_MORE ? (int)half : STEAL_MORE, n = 0;
  while (n < max) {
    if (deque_length_hint(d) < 2) break;
    weft__metric_bump(&w->n_steal_tries); /* each steal is an attempt: stolen <= attempts */
    uintptr_t e = weft__deque_steal(d);
    if (e == 0 || e == WEFT__DEQUE_ABORT) break;
    more[n++] = e;
  }
  return n;
}

/* Whether this steal comes within QUICK_STEAL_TICKS slices of the last one (stole_at: that
 * tick + 1 + the batch it took, whose runs are slices too; 0 before the first): what the
 * thief stole last was short (a spawn storm's tasks), so a steal's own cost is what bounds it.
 * If others took the batch back first, stole_at is ahead of the tick, the difference wraps and
 * the steal counts as slow: a heuristic's miss, nothing more. relaxed: our own tick. */
static inline bool steals_quickly(weft__worker_t *w) {
  uint32_t now = atomic_load_explicit(&w->tick, memory_order_relaxed) + 1;
  bool quick = w->stole_at && now - w->stole_at <= QUICK_STEAL_TICKS;
  w->stole_at = now;
  return quick;
}

static uintptr_t steal_round(weft__worker_t *w, uintptr_t *more, int *nmore) {
  struct weft_runtime *rt = w->rt;
  int n = rt->nworkers;
  for (int i = 0; i < STEAL_TRIES; i++) {
    weft__worker_t *victim = &rt->workers[next_random(w) % (uint32_t)n];
    if (victim == w) continue;
    weft__metric_bump(&w->n_steal_tries);
    uintptr_t e = weft__deque_steal(&victim->deque);
    if (e == WEFT__DEQUE_ABORT) e = 0; /* lost a race: someone is busy there, try elsewhere */
    if (e && steals_quickly(w)) *nmore = steal_more(w, &victim->deque, more);
    if (!e) e = steal_frame(w, victim); /* a fork-join frame, made a task */
    if (!e) {
      e = weft__deque_steal(&victim->yieldq);
      if (e == WEFT__DEQUE_ABORT) e = 0;
    }
    if (!e) e = steal_next(w, victim);
    if (e) {
      weft__stat_bump(&w->n_stolen);
      return e;
    }
  }
  return 0;
}

/* One steal round: a read section of the deques' epoch domain (lib/deque.c), so that no
 * victim frees an array this round may still read. */
static uintptr_t steal_one(weft__worker_t *w) {
  struct weft_runtime *rt = w->rt;
  if (rt->nworkers < 2) return 0;
  weft__epoch_reader_t *me = &rt->epoch.readers[w->index];
  weft__epoch_enter(&rt->epoch.now, me);
  uintptr_t more[STEAL_MORE];
  int nmore = 0;
  uintptr_t e = steal_round(w, more, &nmore);
  weft__epoch_leave(me);
  /* Newest first, so that our LIFO takes run them oldest first, after e */
  for (int i = nmore - 1; i >= 0; i--) push_local(w, &w->deque, more[i]);
  if (nmore) {
    w->stole_at += (uint32_t)nmore; /* their slices do not make the next steal a slow one */
    weft__stat_add(&w->n_stolen, nmore);
    weft__probe_hit(WEFT__PROBE_STEAL_BATCH);
  }
  return e;
}

/* How many entries w's private run holds, refilling it from the yield queue's oldest when it
 * is empty (take_own_yielded's comment below); 0: nothing is yielded here. */
static inline uint32_t yring_fill(weft__worker_t *w) {
  uint32_t left = atomic_load_explicit(&w->yring_left, memory_order_relaxed); /* owner's own */
  if (WEFT__LIKELY(left)) return left;
  int n = weft__deque_steal_batch(&w->yieldq, w->yring, WEFT__YRING);
  if (n <= 0) return 0;
  w->yring_next = 0;
  atomic_store_explicit(&w->yring_left, (uint32_t)n, memory_order_relaxed); /* metrics read it */
  return (uint32_t)n;
}

/* The oldest of w's yielded entries: from its private run, refilled from its yield queue's
 * oldest (FIFO: the run holds entries older than any still queued) up to half of them at once
 * with one CAS (weft__deque_steal_batch), so that a worker whose tasks keep yielding pays a
 * locked instruction per batch, not per yield (it was one CAS per yield: a self-steal).
 * Published on demand: thieves see only the yield queue, where every new yield still goes,
 * and a batch leaves them half of it. The price: the entries of the run (at most
 * WEFT__YRING) wait for their owner's next look even when another worker idles — at most
 * one slice plus the run itself, as the deque's LIFO end does. A yield takes from the same
 * run when it switches straight to the next task (direct_yielded). Rejected: a private ring fed
 * directly by yields, published when a worker spins (see the top: the direct switch). */
static uintptr_t take_own_yielded(weft__worker_t *w) {
  uint32_t left = yring_fill(w);
  if (!left) return 0;
  atomic_store_explicit(&w->yring_left, left - 1, memory_order_relaxed); /* metrics read it */
  return w->yring[w->yring_next++];
}

/* The oldest injected entry; the rest of the batch goes onto w's yield queue: FIFO, checked
 * every 61 ticks and open to thieves, so the batch keeps the inject queue's order and its
 * guarantee (on the LIFO deque, two tasks waking each other could bury it for good). */
static uintptr_t take_injected(weft__worker_t *w) {
  uintptr_t batch[INJECT_BATCH];
  int n = inject_pop_batch(w->rt, batch);
  if (n) weft__stat_add(&w->n_injected, n);
  if (n > 1) weft__stat_add(&w->n_yieldq_extra, n - 1); /* before the pushes: see n_yieldq_extra */
  int spilled = 0;
  /* the last push announced, as ready_fifo's; the check-before-push window (top) spans the
   * batch here */
  bool idle = n > 1 && weft__workers_idle(w->rt);
  for (int i = 1; i < n; i++)
    spilled += !push_local_as(w, &w->yieldq, batch[i], idle && i + 1 == n);
  if (spilled) weft__stat_add(&w->n_yieldq_extra, -spilled);
  return n ? batch[0] : 0;
}

static uintptr_t take_injected(weft__worker_t *w);
static uintptr_t take_own_yielded(weft__worker_t *w);

/* The arrays w's queues grew out of, freed once no steal round can still read them (deque.c):
 * at the fairness tick while w holds any, and when w parks. */
static bool __attribute__((noinline, cold)) reclaim_arrays(weft__worker_t *w) {
  weft__deque_reclaim(&w->deque);
  weft__deque_reclaim(&w->yieldq);
  return w->deque.retired || w->yieldq.retired; /* some still wait for their grace */
}

/* The next look for work (relaxed: owner-written, the watchdog's sample). */
static inline uint32_t tick_next(weft__worker_t *w) {
  uint32_t tick = atomic_load_explicit(&w->tick, memory_order_relaxed) + 1;
  atomic_store_explicit(&w->tick, tick, memory_order_relaxed);
  return tick;
}

/* Chaos mode's pick among the ready: the four local sources in a random order. The draw is
 * consumed only when a task is found: an idle worker polls a timing-dependent number of times,
 * and a seed must not depend on timing. */
static uintptr_t __attribute__((noinline, cold)) chaos_local_work(weft__worker_t *w) {
  if (tick_next(w) % FAIRNESS_TICKS == 0) /* busy workers fire timers too, as in local_work */
    weft__timer_poll(w->rt->timer, weft_now_ns(), &w->n_fired);
  uint32_t r = (uint32_t)(w->chaos >> 32);
  for (int i = 0; i < 4; i++) {
    uintptr_t e = 0;
    switch ((r + (uint32_t)i) % 4) {
    case 0:
      e = weft__priv_pop(w); /* newest (none in chaos mode: its spawns are all pushed) */
      if (!e) e = weft__deque_take(&w->deque);
      break;
    case 1:
      e = weft__deque_steal(&w->deque); /* oldest: stealing from ourselves is allowed */
      if (e == WEFT__DEQUE_ABORT) e = 0;
      break;
    case 2:
      e = take_own_yielded(w);
      break;
    case 3:
      e = take_injected(w);
      break;
    }
    if (e) {
      chaos_next(w);
      return e;
    }
  }
  return 0;
}

static uintptr_t local_work(weft__worker_t *w) {
  uintptr_t e;
  if (WEFT__UNLIKELY(w->chaos)) return chaos_local_work(w);
  if (WEFT__UNLIKELY(tick_next(w) % FAIRNESS_TICKS == 0)) {
    uint64_t now = weft_now_ns(); /* read anyway: it refreshes spawn ages too */
    weft__worker_clock(w, now);
    weft__timer_poll(w->rt->timer, now, &w->n_fired); /* busy workers fire timers too */
    if (weft__poll_active(w->rt)) w->rt->poll_hooks->tick(w); /* and poll fds, without blocking */
    if (WEFT__UNLIKELY(w->deque.retired || w->yieldq.retired)) reclaim_arrays(w);
    if ((e = take_injected(w)) || (e = take_own_yielded(w))) {
      /* What we keep must not wait behind e (see "Private spawns"; relaxed: our own count) */
      if (atomic_load_explicit(&w->npriv, memory_order_relaxed)) weft__priv_share(w);
      return e;
    }
  }
  /* The next slot first, NEXT_BURST times in a row at most: then the queues get a look, so two
   * tasks that keep waking each other cannot starve the rest of this worker's tasks. Kept
   * spawns go onto the deque first (see "Private spawns": nothing we keep waits behind a task
   * we start, which may run for long without a suspension point). */
  if (next_peek(&w->next, 0)) { /* relaxed: the owner's own slot (a thief may empty it) */
    if (w->next_streak < NEXT_BURST && (e = next_take(&w->next))) {
      w->next_streak++;
      /* relaxed: our own count */
      if (atomic_load_explicit(&w->npriv, memory_order_relaxed)) weft__priv_share(w);
      return e;
    }
    w->next_streak = 0; /* the burst is over: the queues' turn */
  }
  /* Then kept spawns, the newest entries; the others go onto the deque before it starts (found
   * by a test: siblings that spin until both have started, one kept behind the other). */
  if ((e = weft__priv_pop(w))) {
    if (atomic_load_explicit(&w->npriv, memory_order_relaxed)) weft__priv_share(w);
    return e;
  }
  if ((e = weft__deque_take(&w->deque))) return e;
  if ((e = take_own_yielded(w))) return e;
  if ((e = take_injected(w))) return e;
  return next_take(&w->next);
}

/* slots: whether next slots count (not for the watcher's timed park: a busy pair keeps one
 * filled most of the time, and the watcher looks again within NEXT_WATCH_NS anyway). */
static bool any_work_visible(struct weft_runtime *rt, bool slots) {
  /* seq_cst loads (here and in seen_nonempty): the parker's load side of the wake check. */
  if (iq_visible(&rt->inject)) return true;
  for (int i = 0; i < rt->nworkers; i++)
    if (weft__deque_seen_nonempty(&rt->workers[i].deque) ||
        weft__deque_seen_nonempty(&rt->workers[i].yieldq) ||
        frames_seen_shared(&rt->workers[i].frames) ||
        (slots && next_peek(&rt->workers[i].next, 1)))
      return true;
  return false;
}

static void stop_spinning(weft__worker_t *w, bool *spinning) {
  if (!*spinning) return;
  *spinning = false;
  /* seq_cst: the last spinner to find work wakes another (the load side is in the call). */
  if (atomic_fetch_sub_explicit(&w->rt->nspinning, 1, memory_order_seq_cst) == 1)
    weft__wake_one_if_needed(w->rt);
}

static bool idle_unlist(weft__worker_t *w) {
  struct weft_runtime *rt = w->rt;
  pthread_mutex_lock(&rt->idle_lock);
  bool was_listed = w->idle_listed;
  if (was_listed) {
    weft__worker_t **p = &rt->idle_list;
    while (*p != w) p = &(*p)->next_idle;
    *p = w->next_idle;
    w->idle_listed = false;
    /* We leave on our own, as a spinner again: counted as one before we leave the idle count
     * (as wake_one's). seq_cst: the wake check's counters. */
    atomic_fetch_add_explicit(&rt->nspinning, 1, memory_order_seq_cst);
    atomic_fetch_sub_explicit(&rt->nidle, 1, memory_order_seq_cst);
  }
  pthread_mutex_unlock(&rt->idle_lock);
  return was_listed;
}

/* The park times' seqlock (internal.h, park_seq), owner-written. At both ends of a park the
 * odd bump goes first, and a store-load fence keeps it before the clock read that stamps that
 * end: a reader reads its own clock after the fields (metrics.c), so one whose clock is past a
 * stamp sees the sequence moved and retries. Otherwise it counted a park's first moments as
 * busy and then as idle, or its last ones as idle up to the reader's clock and then, the end
 * stamped earlier, not at all (review, session 20: busy_ns fell by up to 3 ms, idle_ns too).
 * The fence orders the odd value before the field stores as well, as a seqlock writer needs;
 * release on the even bump: the stores. Returns the stamp. */
static uint64_t park_times_write(weft__worker_t *w, bool parking, uint64_t parked_at) {
  uint64_t seq = atomic_load_explicit(&w->park_seq, memory_order_relaxed); /* relaxed: ours */
  atomic_store_explicit(&w->park_seq, seq + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst); /* the odd value before the clock read and stores */
  uint64_t now = weft_now_ns();
  atomic_store_explicit(&w->parked_since, parking ? now : 0, memory_order_relaxed);
  if (!parking) /* relaxed load + store: owner-written, as weft__stat_bump */
    atomic_store_explicit(&w->idle_ns,
                          atomic_load_explicit(&w->idle_ns, memory_order_relaxed) + (now - parked_at),
                          memory_order_relaxed);
  atomic_store_explicit(&w->park_seq, seq + 2, memory_order_release); /* release: the stores */
  return now;
}

/* Parks until woken, a timer is due, `until` passes (a watcher's look), or the runtime stops.
 * Returns with *spinning set the way the wake left it (a waker counts us as spinning); true if
 * no waker woke us. */
static bool park(weft__worker_t *w, bool *spinning, uint64_t until) {
  struct weft_runtime *rt = w->rt;
  /* Memory first: an idle worker hands its caches back and returns what has sat unused for a
   * while (bounded work); it then sleeps no longer than until the next batch is due, so an
   * idle runtime still gives memory back, and once nothing is left it sleeps as long as it
   * has no work. Done while we still count as spinning: a pass is short (~1 ms at most). */
  uint64_t scavenge_at = UINT64_MAX, tasks_at = UINT64_MAX;
  /* relaxed: a hint; a runtime that stops frees everything anyway, so skip the work */
  if (!atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
    uint64_t now = weft_now_ns();
    scavenge_at = weft__stack_scavenge(rt->stacks, &w->stacks, now);
    tasks_at = weft__task_scavenge(rt, w, now);
    if (tasks_at < scavenge_at) scavenge_at = tasks_at;
    /* Arrays a steal round still held back: look again soon, not at the next wake-up (which
     * may never come to an idle runtime). */
    if (reclaim_arrays(w) && now + RECLAIM_RETRY_NS < scavenge_at)
      scavenge_at = now + RECLAIM_RETRY_NS;
  }
  pthread_mutex_lock(&rt->idle_lock);
  atomic_store_explicit(&w->park_word, 0, memory_order_relaxed); /* relaxed: under the lock */
  w->next_idle = rt->idle_list;
  rt->idle_list = w;
  w->idle_listed = true;
  park_announce_idle(&rt->nidle, &rt->nspinning, *spinning); /* the parker's stores */
  *spinning = false;
  pthread_mutex_unlock(&rt->idle_lock);
  /* Frames are shared only when asked: ask every owner, so its next fork shares and wakes us. */
  for (int i = 0; i < rt->nworkers; i++)
    if (&rt->workers[i] != w) frames_ask(&rt->workers[i].frames);
  /* A plain thread's spill that came before our announcement found us spinning and woke no
   * one: if it asked for a descriptor pass we armed none for, we arm one (lib/task.c's
   * spill_from_thread; after park_announce_idle's seq_cst RMWs). */
  if (tasks_at == UINT64_MAX && !atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
    uint64_t nudged_at = weft__task_nudged_until(rt, weft_now_ns());
    if (nudged_at < scavenge_at) scavenge_at = nudged_at;
  }
  if (until < scavenge_at) scavenge_at = until; /* a wake-up of the same kind: a look */
  uint64_t deadline = weft__timer_next_deadline(rt->timer);
  if (scavenge_at < deadline) deadline = scavenge_at;
  /* seq_cst: ordered after our registration, so a concurrent stop cannot be missed */
  if (!any_work_visible(rt, until == UINT64_MAX) &&
      !atomic_load_explicit(&rt->stopping, memory_order_seq_cst) && deadline > weft_now_ns()) {
    weft__stat_bump(&w->n_parks);
    uint64_t parked_at = park_times_write(w, true, 0); /* two clock reads and fences per park:
                                                          parks are ~84 µs */
    /* acquire: pairs with the waker's release store */
    while (atomic_load_explicit(&w->park_word, memory_order_acquire) == 0 &&
           !atomic_load_explicit(&rt->stopping, memory_order_acquire)) {
      /* The first idle worker to take the poller blocks in it instead (lib/poll.c). */
      int polled = weft__poll_active(rt) ? rt->poll_hooks->park(w, deadline) : -1;
      if (polled < 0) weft__futex_wait(&w->park_word, 0, deadline);
      if (polled > 0) break; /* fds became ready: their tasks are on our yield queue */
      if (deadline != UINT64_MAX && weft_now_ns() >= deadline) break;
      deadline = weft__timer_next_deadline(rt->timer);
      if (scavenge_at < deadline) deadline = scavenge_at;
    }
    park_times_write(w, false, parked_at);
  }
  if (idle_unlist(w)) {
    *spinning = true; /* we left on our own: idle_unlist counted us as a spinner again */
    return true;
  } else {
    /* A waker took us off the list and counted us as spinning; wait for its store so that
     * the next park does not consume a stale wake. acquire: pairs with its release. */
    while (atomic_load_explicit(&w->park_word, memory_order_acquire) == 0) ck_pr_stall();
    *spinning = true;
    weft__metric_bump(&w->n_unparks);
  }
  return false;
}

/* The one watcher (see the top): a worker that parks while slots are in use, waking every
 * NEXT_WATCH_NS to steal an entry that sat there since its last look. seq_cst: the watcher's
 * half of the slot's wake check (a put skips the wake while it sees a watcher; a watcher that
 * ends, and then parks for good, looks at every slot after its end). */
static bool watch_begin(struct weft_runtime *rt) {
  int none = 0;
  return atomic_compare_exchange_strong_explicit(&rt->nwatching, &none, 1, memory_order_seq_cst,
                                                 memory_order_relaxed);
}

static void watch_end(struct weft_runtime *rt) {
  atomic_fetch_sub_explicit(&rt->nwatching, 1, memory_order_seq_cst); /* seq_cst: see above */
}

/* Whether some worker put into its next slot since our last look (a spin period, or a watch,
 * ago): a pair of tasks is waking each other there, each wake a put into an empty slot. A
 * spinner that then parked plainly would be woken by the next such put (its wake check: a
 * futex round trip per spin period — measured 12 000 park/wake cycles per 10^6 pingpong round
 * trips, 2.3× slower than one worker); it parks as the watcher instead (see the top). relaxed:
 * a hint; parking's own look at the slots is the seq_cst one. */
static bool next_active(weft__worker_t *w) {
  struct weft_runtime *rt = w->rt;
  uint32_t sum = 0;
  for (int i = 0; i < rt->nworkers; i++)
    sum += atomic_load_explicit(&rt->workers[i].next_puts, memory_order_relaxed);
  bool changed = sum != w->next_sum;
  w->next_sum = sum;
  return changed;
}

/* How many rounds an idle worker spins before it parks. Without sockets, SPIN_ROUNDS: a futex
 * wake-up costs ~84 µs here, so spinning ~20-50 µs pays. While the poller is active, the work
 * an idle worker waits for mostly arrives through epoll, and the worker that parks first
 * blocks in epoll_wait and takes it there: spinning then only burns CPU that others (on the
 * echo benchmark, the client) need. So SPIN_ROUNDS_IO rounds of local work and stealing,
 * without polling fds, then park, which blocks in epoll_wait (it returns at once if events are
 * pending) or sleeps on the futex if another worker blocks there — Tokio's order (one steal
 * pass, then park in the driver; its epoll_wait(0) comes only at the 61-task maintenance tick,
 * as weft's busy tick). The spin loop used to poll every 8th round: a worker that stole one
 * task at a time then paid an empty epoll_wait(0) per task (measured: 61-92 % of the echo
 * server's epoll_waits returned nothing, ~0.05 per message; without it 0.016, Tokio's rate).
 * Cost: a runtime with sockets and CPU-bound tasks parks idle workers sooner, and waking one
 * from the futex costs ~84 µs. Correctness does not depend on the count: park re-checks every
 * queue. */
static int spin_rounds(weft__worker_t *w) {
  return weft__poll_active(w->rt) ? SPIN_ROUNDS_IO : SPIN_ROUNDS;
}

/* The next entry to run, or 0 once the runtime stops. counted: whether we already count as
 * spinning (a fresh worker: see weft__worker_main_loop). */
static uintptr_t find_work(weft__worker_t *w, bool counted) {
  struct weft_runtime *rt = w->rt;
  uintptr_t e = local_work(w);
  if (WEFT__LIKELY(e)) {
    if (WEFT__UNLIKELY(counted)) stop_spinning(w, &counted);
    return e;
  }
  weft__worker_clock(w, weft__coarse_now_ns()); /* out of local work: ages restart from here */
  bool spinning = counted, quick = false;
  for (;;) {
    if (!spinning) {
      spinning = true;
      atomic_fetch_add_explicit(&rt->nspinning, 1, memory_order_seq_cst); /* seq_cst: wake check */
    }
    ck_backoff_t backoff = CK_BACKOFF_INITIALIZER;
    /* A watcher's look (its watch ended on its own): one round, not a whole spin */
    int rounds = quick ? 1 : spin_rounds(w);
    for (int round = 0; round < rounds; round++) {
      /* relaxed: a prompt exit is all we need; join() orders the rest */
      if (atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
        stop_spinning(w, &spinning);
        return 0;
      }
      weft__timer_poll_if_armed(rt->timer, &w->n_fired);
      /* No fd poll here: while the poller is active, park polls (spin_rounds). */
      if ((e = local_work(w)) || (e = steal_one(w))) {
        stop_spinning(w, &spinning);
        return e;
      }
      if (backoff < 1024) ck_backoff_eb(&backoff);
      else ck_pr_stall();
    }
    bool watch = next_active(w) && watch_begin(rt);
    quick = park(w, &spinning, watch ? weft_now_ns() + NEXT_WATCH_NS : UINT64_MAX) && watch;
    if (watch) watch_end(rt);
  }
}

/* ---- Running ------------------------------------------------------------------------------ */

/* What the scheduler does for the task that just switched out (w->after), on the next stack
 * that runs on this worker: the scheduler loop's, or the task's a direct switch went to. */
static inline __attribute__((always_inline)) void do_after(weft__worker_t *w) {
  weft__after_t after = w->after;
  w->after = WEFT__AFTER_NOTHING;
  switch (after) {
  case WEFT__AFTER_NOTHING:
    break;
  case WEFT__AFTER_FINISHED: {
    weft__stack_t *s = w->after_stack;
    if (WEFT__UNLIKELY(w->frames.head || s->frames_away))
      weft__die("weft: a task returned without weft_sync of a frame it forked with weft_fork.");
    WEFT__ASSERT(!s->on_discard); /* every record is popped before its call returns */
    if (weft__san_hooks() & WEFT__SAN_TSAN) {
      __tsan_destroy_fiber(s->ctx.tsan_fiber);
      s->ctx.tsan_fiber = NULL;
    }
    weft__stack_put(w->rt->stacks, &w->stacks, s);
    weft__metric_bump(&w->n_finished);
    break;
  }
  case WEFT__AFTER_YIELD: /* a parked worker may take it while we run something long */
    if (WEFT__UNLIKELY(!push_local(w, &w->yieldq, (uintptr_t)w->after_arg | WEFT__ENTRY_RESUME)))
      weft__stat_add(&w->n_yieldq_extra, -1); /* a yield the yield queue's bottom did not count */
    break;
  case WEFT__AFTER_PARK:
    weft__park_commit(w, w->after_arg);
    break;
  case WEFT__AFTER_PARK_UNLOCK:
    /* The task's waiter node became findable only now: a peer that dequeues it finds the task
     * PARKED and schedules it into its own worker's next slot, so two tasks that wake each
     * other run on one worker (with the lock released before the commit, a peer on another
     * worker found the task still PARKING, left its scheduling to this commit, and the pair
     * stayed split across two workers, a cross-core hop every time: pingpong at 2 workers). */
    if (wake_park_commit_direct(&((struct weft_task *)w->after_arg)->state)) /* a cancel */
      push_local(w, &w->deque, (uintptr_t)w->after_arg | WEFT__ENTRY_RESUME);
    atomic_store_explicit(w->after_lock, 0, memory_order_release); /* release: wq_unlock's */
    break;
  case WEFT__AFTER_CHILD_FIRST: /* the next entry this worker takes, after w->eager */
    push_local(w, &w->deque, (uintptr_t)w->after_arg | WEFT__ENTRY_RESUME);
    break;
  case WEFT__AFTER_PARK_TIMED: {
    struct weft_task *t = w->after_arg;
    if (weft__timer_arm(w->rt->timer, t->wait)) { /* a parked worker may sleep past it */
      weft__probe_hit(WEFT__PROBE_ARM_LOWERED);
      weft__wake_one_if_needed(w->rt);
    }
    weft__park_commit(w, t); /* after the arm: a resumed task finds its timer armed or fired */
    break;
  }
  }
}

static void after_switch(weft__worker_t *w) {
  weft__set_current(w, NULL);
  do_after(w);
}

/* A yield's after-action when the yield switched straight to the task now running (the most
 * common one in weft__suspend's tail): do_after's, with the push inline (push_local's call and
 * do_after's frame were 30 of a yield's ~200 instructions). Its own function, so that the
 * push's registers cost nothing on the tail of a park. */
static __attribute__((noinline)) void after_yield(weft__worker_t *w) {
  w->after = WEFT__AFTER_NOTHING;
  uintptr_t e = (uintptr_t)w->after_arg | WEFT__ENTRY_RESUME;
  int r = weft__deque_push_as(&w->yieldq, e, weft__workers_idle(w->rt)); /* as push_local */
  if (WEFT__LIKELY(r == 0)) return; /* non-empty before, no one idle: someone already knows */
  if (r > 0) {
    weft__wake_one_if_needed(w->rt); /* push_local's wake check */
    return;
  }
  weft__inject_push(w->rt, e); /* the queue could not grow: spill (it wakes) */
  weft__stat_add(&w->n_yieldq_extra, -1); /* a yield the yield queue's bottom did not count */
}

/* do_after out of line, for weft__suspend's tail (after_switch, the loop's, inlines it). */
static __attribute__((noinline)) void after_direct(weft__worker_t *w) { do_after(w); }

/* Whether w's own queues look empty: hints (weft__deque_looks_empty's), whose misses are
 * caught at the next look, within NEXT_BURST picks. */
static bool local_queues_empty(weft__worker_t *w) {
  /* relaxed: our own count */
  return !atomic_load_explicit(&w->npriv, memory_order_relaxed) &&
         weft__deque_looks_empty(&w->deque) && weft__deque_looks_empty(&w->yieldq) &&
         !atomic_load_explicit(&w->yring_left, memory_order_relaxed) &&
         atomic_load_explicit(&w->rt->inject.len, memory_order_relaxed) <= 0;
}

/* Whether the loop's next look is an ordinary one that a direct switch may stand in for: not
 * chaos mode (its picks are chaos_local_work's), not a fairness tick, not a stop. */
static inline bool direct_allowed(weft__worker_t *w) {
  /* relaxed: owner-written (atomic for the watchdog's sample) */
  return !WEFT__UNLIKELY(w->chaos) &&
         (atomic_load_explicit(&w->tick, memory_order_relaxed) + 1) % FAIRNESS_TICKS != 0 &&
         /* relaxed: a prompt exit is all we need, as the loop's own check */
         !atomic_load_explicit(&w->rt->stopping, memory_order_relaxed);
}

/* The direct switch (see the top): the entry of w's next slot, if a suspending task may switch
 * straight to it — what the scheduler loop would pick next anyway (local_work: the slot, within
 * its burst, outside a fairness tick) —, else 0 (the loop decides). */
static uintptr_t direct_next(weft__worker_t *w) {
  /* relaxed: our own count; the loop shares kept spawns before it takes the slot (local_work) */
  if (!direct_allowed(w) || atomic_load_explicit(&w->npriv, memory_order_relaxed)) return 0;
  if (w->next_streak >= NEXT_BURST) {
    if (!local_queues_empty(w)) return 0; /* their turn: the loop takes the deque first */
    w->next_streak = 0;                   /* nothing else is waiting here: a new burst */
  }
  uintptr_t e = next_take(&w->next);
  if (e) {
    tick_next(w); /* a slice: the fairness tick and the watchdog count it */
    w->next_streak++;
  }
  return e;
}

/* The direct switch of a yield (#13; self: the yielder) or of a park whose slot is empty (self
 * NULL): the oldest yielded entry of w's private run, if the loop would pick it next anyway —
 * the next slot and the deque are empty (they come first in local_work), outside a fairness
 * tick — and it is a suspended task (a resume entry: a start entry needs the loop's
 * task_start), else 0 (the loop decides). Taken before the yielder is
 * queued (its after-action runs on the next task's stack: weft__suspend's tail), so a refill
 * takes half of the queue without it; the order is the loop's (the yielder goes behind every
 * entry already yielded). Why: through the loop, a yield is two switches, and each switch's
 * return lands where the return predictor does not expect it (the scheduler's frames, then the
 * task's); task to task, every yielder resumes through the same frames, and the loop's look
 * for work is skipped. */
static uintptr_t direct_yielded(weft__worker_t *w, struct weft_task *self) {
  if (!direct_allowed(w)) return 0;
  if (next_peek(&w->next, 0) || atomic_load_explicit(&w->npriv, memory_order_relaxed) ||
      !weft__deque_looks_empty(&w->deque)) /* their turn (relaxed: our own count) */
    return 0;
  uint32_t left = yring_fill(w);
  if (!left) { /* nothing else yielded here: the loop would queue the yielder and take it back */
    if (!self) return 0; /* a park: the loop looks elsewhere */
    if (!weft__deque_looks_empty(&w->yieldq)) return 0; /* the batch lost a race: loop decides */
    tick_next(w);
    return (uintptr_t)self | WEFT__ENTRY_RESUME;
  }
  if (!(w->yring[w->yring_next] & WEFT__ENTRY_RESUME)) return 0;
  atomic_store_explicit(&w->yring_left, left - 1, memory_order_relaxed); /* metrics read it */
  tick_next(w); /* a slice: the fairness tick and the watchdog count it */
  return w->yring[w->yring_next++];
}

/* Chaos mode's random yield at a suspension point: nothing is armed or released yet (that
 * happens after weft__suspend's switch), so the wait simply starts a turn later, maybe on
 * another worker. Returns the worker the task is on now. */
static weft__worker_t *__attribute__((noinline, cold)) chaos_before_suspend(weft__worker_t *w,
                                                                          weft__after_t after) {
  /* Not with a spinlock held (PARK_UNLOCK): its holder must not wait for a turn. */
  if (after == WEFT__AFTER_YIELD || after == WEFT__AFTER_PARK_UNLOCK || !(chaos_next(w) & 1))
    return w;
  weft__suspend(w, WEFT__AFTER_YIELD, weft__current(w));
  return weft__worker_self();
}

void weft__suspend(weft__worker_t *w, weft__after_t after, void *arg) {
  if (WEFT__UNLIKELY(w->chaos)) w = chaos_before_suspend(w, after);
  struct weft_task *t = weft__current(w);
  WEFT__ASSERT(t && t->runs_on && w == weft__worker_self());
  w->after = after;
  w->after_arg = arg;
  /* Before the switch: once after_switch makes t runnable, its next slice comes after. */
  weft__task_state(t, after);
  /* Its frames leave the deque (before the switch: t may resume elsewhere, the next task needs
   * it empty). After the stores above, so that nothing but w and t lives across this rare call. */
  if (WEFT__UNLIKELY(w->frames.head)) detach_frames(w);
  /* A yield goes straight to the oldest yielded task, a park to the slot's task or else the
   * oldest yielded one (resume entries all), when the loop would pick them next. */
  uintptr_t e;
  if (after == WEFT__AFTER_YIELD) {
    e = direct_yielded(w, t);
    if (e == ((uintptr_t)t | WEFT__ENTRY_RESUME)) { /* nothing else ready here: t goes on */
      w->after = WEFT__AFTER_NOTHING;
      weft__stat_add(&w->n_yieldq_extra, -1); /* a yield the yield queue's bottom did not count */
      return;
    }
  } else if (WEFT__UNLIKELY(after == WEFT__AFTER_CHILD_FIRST)) {
    e = 0; /* the loop starts the child (a start entry needs its task_start) */
  } else if (!(e = direct_next(w))) {
    /* The slot is empty: the oldest task of the yield queue, where the poller queues the
     * tasks its fds woke (a server's connection that parks on its socket switches straight to
     * the next ready connection, bench/README.md's "Echo, round 4"). */
    e = direct_yielded(w, NULL);
  }
  if (e) { /* straight to its stack */
    struct weft_task *next = (struct weft_task *)(e & ~WEFT__ENTRY_TAGS);
    weft__set_current(w, next);
    weft__ctx_switch(&t->runs_on->ctx, &next->runs_on->ctx, false);
  } else {
    weft__ctx_switch(&t->runs_on->ctx, &w->sched, false);
  }
  /* Resumed, possibly by another worker: callers re-read weft__worker_self(). A task that
   * switched straight to us left its after-action for us to do. */
  w = weft__worker_self();
  if (w->after != WEFT__AFTER_NOTHING) {
    if (w->after == WEFT__AFTER_YIELD) after_yield(w);
    else after_direct(w);
  }
}

static void run_entry(weft__worker_t *w, uintptr_t e) {
  struct weft_task *t = (struct weft_task *)(e & ~WEFT__ENTRY_TAGS);
  if (e & WEFT__ENTRY_RESUME) {
    weft__set_current(w, t);
    weft__ctx_switch(&w->sched, &t->runs_on->ctx, false);
  } else {
    weft__task_start(w, t); /* counts n_started once it is sure to run (or ends cancelled) */
  }
  after_switch(w);
}

int weft__spawn_child_first(weft__worker_t *w, struct weft_task *child) {
  w->eager = (uintptr_t)child;
  w->held++;
  weft__metric_bump(&w->n_run_first);
  weft__suspend(w, WEFT__AFTER_CHILD_FIRST, weft__current(w));
  if (weft__worker_self() == w) w->held--; /* resumed by the worker that held us */
  else atomic_fetch_add_explicit(&w->held_out_elsewhere, 1, memory_order_relaxed); /* a count */
  return 0;
}

uint64_t weft__spawners_held(weft__worker_t *w) {
  /* relaxed: a count; a release not yet seen only makes it larger (less throttling) */
  return w->held - atomic_load_explicit(&w->held_out_elsewhere, memory_order_relaxed);
}

/* The child a spawn runs first (weft__spawn_child_first), as the loop's next pick: a slice. */
static uintptr_t take_eager(weft__worker_t *w) {
  uintptr_t e = w->eager;
  w->eager = 0;
  tick_next(w); /* a slice: the watchdog tells slices apart by the tick (trace.c) */
  return e;
}

void weft__worker_main_loop(weft__worker_t *w) {
  weft__worker_set_self(w);
  uintptr_t e;
  /* The runtime counted us as spinning before our thread started (weft__worker_count_fresh):
   * a spawn made before we first look must not take us for busy and keep its child private. */
  bool counted = true; /* find_work takes the count over (and drops it when it returns) */
  /* relaxed: a prompt exit is all we need; pthread_join orders the rest */
  while (!atomic_load_explicit(&w->rt->stopping, memory_order_relaxed)) {
    e = w->eager ? take_eager(w) : find_work(w, counted);
    counted = false;
    if (!e) return;
    run_entry(w, e);
  }
  if (counted) weft__worker_count_fresh(w->rt, -1); /* stopped before our first look */
}

/* A worker about to start counts as spinning from before its thread exists (fresh: +1), or
 * stops counting if its thread could not start (-1). seq_cst: the wake check's counter. */
void weft__worker_count_fresh(struct weft_runtime *rt, int delta) {
  atomic_fetch_add_explicit(&rt->nspinning, delta, memory_order_seq_cst);
}
