/*
 * Metrics: one snapshot of a runtime's counters and queue depths (weft_runtime_metrics).
 *
 * Owns nothing but the read side. Every counter is per worker and written only by its owner,
 * as a relaxed load + relaxed store (weft__stat_bump): on x86-64 a plain `add` to a line the
 * worker already owns, no locked instruction, so the counters are always on. A reader sums
 * them with relaxed loads; each value is exact, the set is not taken at one instant (workers
 * run on), which is what a monitoring snapshot needs. Depths are read the same way: the
 * deques' two indices (relaxed loads, so a depth may be momentarily off by the entries moving
 * through), the inject queue's length, and the timer wheel's count under its lock (the only
 * lock taken: a snapshot is not a hot path).
 * Derived, not counted: tasks_run = start entries taken - unrun + inlined; tasks_live =
 * spawned - (ended on their own stack + inlined + unrun); stacks_cached = mapped - held, where
 * held = started - unrun - ended. A task cancelled before it started ends at its first
 * checkpoint and counts as run: as ended on its own stack (never holding one) when a worker
 * took its start entry, as inlined when its awaiter took it back. An inline run counts when
 * it returns, not when it begins: one suspended on its awaiter's stack is live (counted at its
 * start, it was not: review, session 19); tasks_run then lags it by the same. Counting live tasks
 * directly would need a shared counter touched by every spawn and completion (a locked RMW on
 * a contended line: ~5-20 ns each on this VM, against a ~100 ns spawn). Busy time is uptime minus parked time: measuring each
 * task's slice would cost two clock reads per switch (~40 ns on a 2.5 ns switch).
 * Rejected: a seqlock per worker for a consistent per-worker set (a store-store fence pair on
 * every bump), and per-CPU counters summed by the kernel (rseq: not portable, no TSan model).
 */
#include "deque.h"
#include "internal.h"

#include <sched.h>
#include <string.h>

static uint64_t load(_Atomic uint64_t *c) {
  return atomic_load_explicit(c, memory_order_relaxed); /* relaxed: a statistic (see above) */
}

static uint64_t deque_depth(weft__deque_t *d) {
  /* relaxed: a depth for monitoring; top may pass bottom for a moment during a take */
  int64_t b = atomic_load_explicit(&d->bottom, memory_order_relaxed);
  int64_t t = atomic_load_explicit(&d->top, memory_order_relaxed);
  return b > t ? (uint64_t)(b - t) : 0;
}

void weft__worker_depths(weft__worker_t *w, uint64_t *deque, uint64_t *yield) {
  /* relaxed: a hint, as the deque's indices (private spawns: lib/worker.c) */
  *deque = deque_depth(&w->deque) + atomic_load_explicit(&w->npriv, memory_order_relaxed);
  /* relaxed: a snapshot, like the depths */
  *yield = deque_depth(&w->yieldq) + atomic_load_explicit(&w->yring_left, memory_order_relaxed);
}

/* The queue's array counters (owner-written, see deque.h): relaxed, a snapshot like the rest. */
static void add_arrays(weft_metrics_t *m, weft__deque_t *d) {
  m->deque_arrays_retired += load(&d->n_retired);
  m->deque_arrays_freed += load(&d->n_freed);
  /* acquire, then live: pairs with grow's release, so live has outgrown what retired holds */
  uint64_t retired = atomic_load_explicit(&d->bytes_retired, memory_order_acquire);
  m->deque_bytes += load(&d->bytes_live) + retired;
  m->deque_retired_bytes += retired;
}

typedef struct {
  uint64_t started, finished, inlined, unrun, spawned;
} life_t;

/* w's yields (see n_yieldq_extra): bottom - extra never exceeds the yields made, because the
 * extra for a batch is added before its pushes and the bottom is read first; it dips below
 * during a batch (the extra ahead of the pushes, even below zero), which the reported maximum
 * hides. */
static uint64_t worker_yields(weft__worker_t *w) {
  /* acquire: a push's bottom comes with the extra its owner added before it (pairs with the
   * push's release store of bottom) */
  uint64_t bottom = (uint64_t)atomic_load_explicit(&w->yieldq.bottom, memory_order_acquire);
  /* Signed: mid-batch the extra may be ahead of every push made so far, yields included (a
   * reader that wrapped to ~2^64 here would keep it as its maximum: found in review). The
   * subtraction itself stays modular: yields that spilled can take the extra below zero. */
  int64_t diff = (int64_t)(bottom - load(&w->n_yieldq_extra));
  uint64_t yields = diff > 0 ? (uint64_t)diff : 0;
  /* relaxed: a maximum among readers; no other data rides on it */
  uint64_t last = atomic_load_explicit(&w->yields_reported, memory_order_relaxed);
  while (yields > last &&
         !atomic_compare_exchange_weak_explicit(&w->yields_reported, &last, yields,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
  return yields > last ? yields : last;
}

/* The worker's time parked up to now, the park in progress included: so idle_ns grows while it
 * sleeps, and busy_ns (uptime less this) never falls back when a park ends (review, session
 * 20: busy grew at wall-clock rate through a park and dropped by all of it after). The park
 * times' seqlock read (internal.h, park_seq). */
static uint64_t idle_until(weft__worker_t *w, uint64_t *now) {
  for (;;) {
    /* acquire: pairs with the writer's closing release; the fields below are as of it */
    uint64_t seq = atomic_load_explicit(&w->park_seq, memory_order_acquire);
    /* acquire, both: they stay before the re-read below (a seqlock reader's order; no
     * standalone fence, which TSan does not model: gcc warns) */
    uint64_t since = atomic_load_explicit(&w->parked_since, memory_order_acquire);
    uint64_t idle = atomic_load_explicit(&w->idle_ns, memory_order_acquire);
    /* The clock after the fields: with a clock read before them, a park that ended in between
     * was counted to its end, past our clock, and busy time fell (review, session 20). */
    *now = weft_now_ns();
    /* relaxed: ordered after the acquire loads above. After the clock read too, which no
     * C11 order says (a clock read is no memory access): x86 keeps loads in order, and arm64's
     * vDSO orders later loads after its counter read (arch_counter_enforce_ordering). Not
     * model-checked for that reason: relacy has no clock (session 21). */
    if (!(seq & 1) && atomic_load_explicit(&w->park_seq, memory_order_relaxed) == seq)
      return idle + (since && *now > since ? *now - since : 0);
    sched_yield(); /* the owner is between its two bumps: a few stores away */
  }
}

static void add_worker(weft_metrics_t *m, life_t *life, weft__worker_t *w) {
  uint64_t now;
  uint64_t idle = idle_until(w, &now);
  uint64_t uptime = now > w->start_ns ? now - w->start_ns : 0;
  uint64_t started = load(&w->n_started), unrun = load(&w->n_unrun);
  uint64_t inlined = load(&w->n_inlined), finished = load(&w->n_finished);
  m->tasks_run += started + inlined; /* started: never an unrun task (weft__task_start) */
  m->tasks_spawned += load(&w->n_spawned);
  m->tasks_stolen += load(&w->n_stolen);
  m->steal_attempts += load(&w->n_steal_tries);
  m->tasks_inlined += inlined;
  m->tasks_unrun += unrun;
  m->parks += load(&w->n_parks);
  m->unparks += load(&w->n_unparks);
  m->timers_fired += load(&w->n_fired);
  m->injected_taken += load(&w->n_injected);
  m->yields += worker_yields(w);
  m->tasks_run_first += load(&w->n_run_first);
  m->idle_ns += idle;
  m->busy_ns += uptime > idle ? uptime - idle : 0;
  uint64_t deque, yield;
  weft__worker_depths(w, &deque, &yield);
  m->deque_depth += deque;
  m->yield_depth += yield;
  add_arrays(m, &w->deque);
  add_arrays(m, &w->yieldq);
  life->started += started;
  life->finished += finished;
  life->inlined += inlined;
  life->unrun += unrun;
}

int weft_runtime_metrics(weft_runtime_t *rt, int worker, weft_metrics_t *out) {
  if (!rt || !out || out->metrics_size < sizeof(size_t)) return WEFT_EINVAL;
  if (worker != WEFT_METRICS_ALL && (worker < 0 || worker >= rt->nworkers)) return WEFT_EINVAL;
  weft_metrics_t m;
  memset(&m, 0, sizeof m);
  m.metrics_size = sizeof m;
  m.worker = worker;
  m.workers = rt->nworkers;
  uint64_t now = weft_now_ns();
  m.uptime_ns = now - rt->created_ns;
  /* Lifetimes always from every worker: a task spawned on one may end on another. */
  life_t life = {0}, ignored = {0};
  weft_metrics_t all;
  memset(&all, 0, sizeof all);
  for (int i = 0; i < rt->nworkers; i++) {
    weft__worker_t *w = &rt->workers[i];
    add_worker(&all, &life, w);
    if (i == worker) add_worker(&m, &ignored, w);
    life.spawned += load(&w->n_spawned);
  }
  life.spawned += load(&rt->foreign_spawns);
  if (worker == WEFT_METRICS_ALL) {
    all.tasks_spawned += load(&rt->foreign_spawns);
    all.metrics_size = m.metrics_size;
    all.worker = m.worker;
    all.workers = m.workers;
    all.uptime_ns = m.uptime_ns;
    m = all;
  }
  /* relaxed: a depth (a hint the queue keeps beside its lock-free list: lib/worker.c) */
  long injected = atomic_load_explicit(&rt->inject.len, memory_order_relaxed);
  m.inject_depth = injected > 0 ? (uint64_t)injected : 0;
  m.timers_armed = weft__timer_armed(rt->timer);
  uint64_t ended = life.finished + life.inlined + life.unrun;
  m.tasks_live = life.spawned > ended ? life.spawned - ended : 0;
  m.stacks_mapped = weft__stack_pool_mapped(rt->stacks);
  uint64_t held = life.started > life.finished ? life.started - life.finished : 0;
  m.stacks_cached = m.stacks_mapped > held ? m.stacks_mapped - held : 0;
  size_t n = out->metrics_size < sizeof m ? out->metrics_size : sizeof m;
  memcpy((char *)out + sizeof(size_t), (char *)&m + sizeof(size_t), n - sizeof(size_t));
  return 0;
}
