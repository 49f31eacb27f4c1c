/*
 * Completion, awaiting and gather: the join concept — the completion word and join counter
 * (protocol in join_impl.h, instantiated by join.h), waiter nodes and wait records, timed
 * waits with their removal, inline awaits, and the await/join/gather API.
 *
 * Completion. One word per task holds the waiter list, DONE, RELEASED (the handle is gone) and
 * BUSY (delivery or an in-place removal under way). Completion is one CAS that sets DONE and
 * takes the list; the waiters' nodes live on their own (suspended) stacks and point to a join
 * counter. A gather is one join counter for N children; awaiting one task is a gather of one.
 * The waiting task holds one extra count until it is fully switched out (the scheduler drops
 * it after the switch), so the last child cannot make it runnable while it is still running —
 * Go's gopark with an unlock function.
 *
 * Inline awaits. A task that awaits (or gathers) a task whose start entry is the newest in its
 * own worker's deque takes the entry back (Chase–Lev take) and runs the task as a plain call
 * on its own stack — Lace's SYNC, Java ForkJoin's tryUnfork. Extraction from a deque is
 * exactly-once, so the inline path needs no claim CAS and no stale entries exist.
 * Rejected: claiming any unstarted task by a CAS on its state from wherever it sits (inlines
 * more awaits, but costs a CAS per task and leaves stale entries whose owners must then be
 * reference-counted); and "helping" — running other queued tasks while waiting — which can
 * deadlock when the helped task waits for something the helper would do after its await
 * returns.
 *
 * Wait records. While a task is suspended on a join, its timer entry's `fire` is a marker (or
 * the timed callback) and `ctx` the join, whose `nodes` say which words it is linked into:
 * destroy reads them to take a discarded task's nodes out (runtime.c, step 3).
 */
#include "deque.h"
#include "internal.h"
#include "join.h"

#include <sched.h>
#include <stdlib.h>

/* ---- Join counters ------------------------------------------------------------------------ */

void weft__join_release(weft__join_t *j) {
  if (!join_count_release(&j->pending)) return;
  if (j->task) { /* the waiter cannot run before this, so j (on its stack) is still alive */
    weft__schedule(j->task->rt, (uintptr_t)j->task | WEFT__ENTRY_RESUME);
    return;
  }
  join_signal_thread(&j->thread_word);
}

enum { FIRED_BY_COMPLETION = 1, FIRED_BY_TIMER = 2 };

/* True for the first of completion and timer to claim a timed join. */
static bool claim_fired(weft__join_t *j, uint32_t side) {
  uint32_t expected = 0;
  /* acq_rel: the winner's release reaches the waiter through the join's acq_rel count. */
  return atomic_compare_exchange_strong_explicit(&j->fired, &expected, side,
                                                 memory_order_acq_rel, memory_order_acquire);
}

/* A completion arrives. A timed join's completer that loses to the timer does nothing more:
 * its touches of the join end with the word's BUSY, which the waiter waits out. */
void weft__join_arrive(weft__join_t *j) {
  if (WEFT__LIKELY(!j->timed) || claim_fired(j, FIRED_BY_COMPLETION)) weft__join_release(j);
}

static void timed_timer_fire(weft__timer_entry_t *e) {
  weft__join_t *j = e->ctx;
  bool won = claim_fired(j, FIRED_BY_TIMER);
  atomic_store_explicit(&j->timer_done, 1, memory_order_release); /* release: the waiter may go */
  if (won) weft__join_release(j); /* the waiter cannot run before this: j is alive */
}

/* The wait record's marker for an untimed join wait (a timed one is marked by its callback).
 * Never armed: a wait record is not a timer. */
static void join_wait_marker(weft__timer_entry_t *e) {
  (void)e;
  weft__die("weft: internal error: a join wait record was armed as a timer.");
}

/* While a task is suspended on j, destroy can find j (and j's nodes) from the task. */
static void wait_record_begin(struct weft_task *self, weft__join_t *j, bool timed) {
  self->timer.fire = timed ? timed_timer_fire : join_wait_marker;
  self->timer.ctx = j;
}

static void wait_record_end(struct weft_task *self) { self->timer.fire = NULL; }

static weft__join_t *wait_record(struct weft_task *t) {
  bool waiting = t->timer.fire == join_wait_marker || t->timer.fire == timed_timer_fire;
  return waiting ? t->timer.ctx : NULL;
}

void weft__wait_abandon(struct weft_task *t) {
  weft__join_t *j = wait_record(t);
  for (size_t k = 0; j && k < j->nnodes; k++) join_remove_waiter(j->nodes[k].word, &j->nodes[k]);
}
static void wait_flag(_Atomic uint32_t *flag) {
  /* acquire: pairs with the release in timed_timer_fire; the other side is mid-callback, so
   * the wait is short, but it may be preempted: yield the CPU rather than burn it. */
  while (!atomic_load_explicit(flag, memory_order_acquire)) sched_yield();
}

void weft__wake_waiters(weft__waiter_t *node) {
  while (node) {
    weft__waiter_t *next = node->next; /* read first: the node dies once its join is done */
    weft__join_arrive(node->join);
    node = next;
  }
}

/* Blocks the calling thread (not a task) until the join's waker is finished with it. */
static void thread_wait_join(weft__join_t *j) {
  unsigned state;
  while (!join_may_return(state = join_signal_state(&j->thread_word))) {
    if (state == JN_WAITING)
      weft__futex_wait(&j->thread_word, JN_WAITING, UINT64_MAX);
    else
      sched_yield(); /* SIGNALLED: the waker is inside FUTEX_WAKE; WOKEN comes next */
  }
}

/* Waits on a join whose children have been registered: `j->pending` counts them plus one for
 * the waiter itself, dropped here (by the scheduler after the switch, when a task waits). */
static void wait_join(weft__join_t *j) {
  if (j->task) {
    weft__worker_t *w = weft__worker_self(); /* fresh: see try_inline */
    wait_record_begin(j->task, j, false);
    weft__suspend(w, WEFT__AFTER_JOIN, j);
    wait_record_end(j->task);
    return;
  }
  weft__join_release(j);
  thread_wait_join(j);
}

static void join_init(weft__join_t *j, struct weft_task *task, long pending, bool timed) {
  j->task = task;
  atomic_init(&j->pending, pending);
  atomic_init(&j->thread_word, JN_WAITING);
  j->timed = timed;
  atomic_init(&j->fired, 0);
  atomic_init(&j->timer_done, 0);
  j->nodes = NULL;
  j->nnodes = 0;
}

/* A thread's side of a timed wait: the deadline is its own futex timeout. */
static int thread_await_until(weft__join_t *j, weft__waiter_t *node, uint64_t deadline_ns) {
  weft__join_release(j); /* our own count: the completion alone now wakes us */
  for (;;) {
    unsigned state = join_signal_state(&j->thread_word);
    if (join_may_return(state)) return 0;
    if (state != JN_WAITING) {
      sched_yield(); /* SIGNALLED: the waker is inside FUTEX_WAKE; WOKEN comes next */
      continue;
    }
    if (weft_now_ns() >= deadline_ns) {
      if (claim_fired(j, FIRED_BY_TIMER)) {
        join_remove_waiter(node->word, node);
        return WEFT_ETIMEDOUT;
      }
      thread_wait_join(j); /* the completion won the race: its wake is on the way */
      return 0;
    }
    weft__futex_wait(&j->thread_word, JN_WAITING, deadline_ns);
  }
}

/* Waits until a completion word is DONE or the deadline passes (WEFT_ETIMEDOUT). */
int weft__await_word_until(weft__worker_t *w, struct weft_task *self, _Atomic uintptr_t *word,
                            uint64_t deadline_ns) {
  weft__join_t j;
  join_init(&j, self, 2, true); /* the first of completion/timer, and ourselves */
  weft__waiter_t node = {.join = &j, .word = word};
  j.nodes = &node;
  j.nnodes = 1;
  if (!join_add_waiter(word, &node)) return 0;
  if (!self) return thread_await_until(&j, &node, deadline_ns);
  self->timer.deadline_ns = deadline_ns;
  wait_record_begin(self, &j, true);
  weft__suspend(w, WEFT__AFTER_TIMED_JOIN, &j);
  int err = 0;
  /* acquire: pairs with the winner's CAS */
  if (atomic_load_explicit(&j.fired, memory_order_acquire) == FIRED_BY_COMPLETION) {
    if (!weft__timer_cancel(self->rt->timer, &self->timer)) wait_flag(&j.timer_done);
  } else {
    join_remove_waiter(word, &node); /* unlinked, or delivered and let go: we may return */
    err = WEFT_ETIMEDOUT;
  }
  wait_record_end(self);
  return err;
}

/* Waits until a completion word is DONE (one waiter node, a join of one). */
void weft__await_word(struct weft_task *self, _Atomic uintptr_t *word) {
  weft__join_t j;
  join_init(&j, self, 2, false); /* the awaited, and ourselves until we are switched out */
  weft__waiter_t node = {.join = &j, .word = word};
  j.nodes = &node;
  j.nnodes = 1;
  if (join_add_waiter(word, &node)) wait_join(&j);
}

/* ---- Completion --------------------------------------------------------------------------- */

void weft__task_complete(struct weft_task *t, void *result) {
  t->result = result;
  /* The completion edge, before DONE is published: pairs with the acquire in every call that
   * returns a task's result (awaited, gathered, polled). */
  weft__tsan_release(&t->word);
  struct weft_runtime *rt = t->rt; /* read now: once delivered, its owner may free t */
  uintptr_t s = join_complete(&t->word);
  weft__waiter_t *waiters = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS);
  if (!waiters) {
    if (s & WEFT__RELEASED) weft__task_free(rt, weft__worker_self(), t);
    return;
  }
  weft__wake_waiters(waiters);
  if (join_finish_waking(&t->word)) weft__task_free(rt, weft__worker_self(), t);
}

/* ---- Inline awaits ------------------------------------------------------------------------ */

/* Runs t, whose start entry we took back from our own deque, as a plain call. */
static void run_inline(weft__worker_t *w, struct weft_task *t) {
  struct weft_task *awaiter = w->current;
  t->runs_on = awaiter->runs_on;
  w->current = t;
  weft__inline_begin(awaiter, t, w->index);
  weft__stat_bump(&w->n_inlined);
  weft__tsan_acquire(&t->fn); /* the spawn edge (pairs with spawn()); same fiber, kept for form */
  void *result = t->fn(t->arg);
  w = weft__worker_self(); /* t may have suspended and resumed elsewhere */
  w->current = awaiter;
  weft__task_running(awaiter, w->index);
  weft__task_complete(t, result);
}

/* If t is the newest entry of our deque, take it back and run it here. */
static bool try_inline(struct weft_task *t) {
  /* Read here, not passed in: an earlier inline run may have resumed us on another worker,
   * and the deque operations below are for the owner's thread only. */
  weft__worker_t *w = weft__worker_self();
  if (w->rt != t->rt || weft__deque_peek_newest(&w->deque) != (uintptr_t)t) return false;
  /* Only we change the bottom end, so the take returns t, or 0 if a thief took it since. */
  if (weft__deque_take(&w->deque) != (uintptr_t)t) return false;
  run_inline(w, t);
  return true;
}

/* ---- Awaiting ----------------------------------------------------------------------------- */

/* The task running on this thread, NULL on a thread that is not a worker; aborts on a worker
 * thread outside any task (a scheduler callback cannot suspend). */
struct weft_task *weft__awaiting_task(weft__worker_t *w, const char *what) {
  if (!w) return NULL;
  if (!w->current)
    weft__die("weft: %s was called on a worker thread outside any task, where nothing can wait.",
              what);
  return w->current;
}

static bool task_is_done(const weft_task_t *t) {
  /* acquire: a caller that sees DONE may read the result next */
  return (atomic_load_explicit(&((weft_task_t *)t)->word, memory_order_acquire) & WEFT__DONE) != 0;
}

int weft_task_done(const weft_task_t *t) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  if (!task_is_done(t)) return 0;
  weft__tsan_acquire(&((weft_task_t *)t)->word); /* the completion edge (task_complete) */
  return 1;
}

int weft_task_result(const weft_task_t *t, void **result) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  if (!task_is_done(t)) return WEFT_EAGAIN;
  weft__tsan_acquire(&((weft_task_t *)t)->word); /* the completion edge (task_complete) */
  if (result) *result = t->result;
  return t->error;
}

/* weft_await under the name the user called (weft_await or weft_join), for its abort texts. */
static int await_task(weft_task_t *t, void **result, const char *what) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  if (task_is_done(t)) goto done;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__awaiting_task(w, what);
  if (self == t) weft__die("weft: a task awaited itself, which can never finish.");
  if (self && try_inline(t)) goto done;
  weft__wait_reason(self, WEFT__WAIT_TASK, t->id);
  weft__await_word(self, &t->word);
done:
  weft__tsan_acquire(&t->word); /* the completion edge (weft__task_complete) */
  if (result) *result = t->result;
  return t->error;
}

int weft_await(weft_task_t *t, void **result) { return await_task(t, result, "weft_await"); }

static void release_task(weft_task_t *t, const char *what) {
  int r = join_release_handle(&t->word);
  if (WEFT__UNLIKELY(r < 0))
    weft__die("weft: %s was given a task handle that was already released.", what);
  if (r > 0) weft__task_free(t->rt, weft__worker_self(), t);
  /* r == 0: it runs on, detached; its completion frees it */
}

void weft_task_release(weft_task_t *t) {
  if (t) release_task(t, "weft_task_release");
}

int weft_await_until(weft_task_t *t, uint64_t deadline_ns, void **result) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  int err = 0;
  if (!task_is_done(t)) {
    weft__worker_t *w = weft__worker_self();
    struct weft_task *self = weft__awaiting_task(w, "weft_await_until");
    if (self == t) weft__die("weft: a task awaited itself, which can never finish.");
    /* No inline run here: a deadline means the caller wants the task run beside it. */
    weft__wait_reason(self, WEFT__WAIT_TASK, t->id);
    err = weft__await_word_until(w, self, &t->word, deadline_ns);
  }
  if (!err) weft__tsan_acquire(&t->word); /* the completion edge (weft__task_complete) */
  if (!err && result) *result = t->result;
  return err ? err : t->error;
}

int weft_await_timeout(weft_task_t *t, uint64_t timeout_ns, void **result) {
  uint64_t now = weft_now_ns();
  return weft_await_until(t, timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns, result);
}

int weft_join(weft_task_t *t, void **result) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  int err = await_task(t, result, "weft_join");
  release_task(t, "weft_join");
  return err;
}

/* ---- Gather ------------------------------------------------------------------------------- */

enum { GATHER_ON_STACK = 16 }; /* picked: waiter nodes per chunk, 384 bytes of the stack */

/* Waits until every task in tasks[0..n) is done, with one waiter node each from `nodes`. */
static void wait_all(struct weft_task *self, weft_task_t *const *tasks, size_t n,
                     weft__waiter_t *nodes) {
  weft__join_t j;
  join_init(&j, self, 1, false);
  size_t waiting = 0;
  for (size_t i = 0; i < n; i++) {
    if (task_is_done(tasks[i])) continue;
    weft__waiter_t *node = &nodes[waiting];
    node->join = &j;
    node->word = &tasks[i]->word;
    /* Count before linking: the child may finish and arrive the moment it is linked. */
    atomic_fetch_add_explicit(&j.pending, 1, memory_order_relaxed); /* relaxed: we hold +1 */
    if (join_add_waiter(&tasks[i]->word, node))
      waiting++;
    else
      atomic_fetch_sub_explicit(&j.pending, 1, memory_order_relaxed); /* relaxed: as above */
  }
  j.nodes = nodes;
  j.nnodes = waiting; /* every node linked: a completion may arrive at any of them already */
  if (waiting) wait_join(&j);
}

/* Waits in chunks of GATHER_ON_STACK with the nodes on this stack: no allocation, so no
 * out-of-memory path and nothing left on the heap if the runtime discards the waiting task at
 * destroy. Costs at most n/16 suspensions instead of one; chunks whose tasks are all done by
 * then cost none. Rejected: a malloc'd node per task (one wake-up for any n, but a gather could
 * then fail, or leak when discarded). */
int weft_gather(weft_task_t *const *tasks, size_t n, void **results) {
  if (n && !tasks) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!tasks[i]) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = weft__awaiting_task(w, "weft_gather");
  /* Newest first: the children we spawned last are the newest entries of our deque. */
  if (self)
    for (size_t i = n; i-- > 0;)
      if (!task_is_done(tasks[i])) try_inline(tasks[i]);
  weft__waiter_t nodes[GATHER_ON_STACK];
  weft__wait_reason(self, WEFT__WAIT_GATHER, n);
  for (size_t i = 0; i < n; i += GATHER_ON_STACK)
    wait_all(self, tasks + i, n - i < GATHER_ON_STACK ? n - i : GATHER_ON_STACK, nodes);
  if (weft__san_hooks() & WEFT__SAN_TSAN) /* the completion edges (weft__task_complete) */
    for (size_t i = 0; i < n; i++) __tsan_acquire(&tasks[i]->word);
  if (results)
    for (size_t i = 0; i < n; i++) results[i] = tasks[i]->result;
  return 0;
}

int weft_gather_calls(const weft_call_t *calls, size_t n, void **results) {
  if (n && !calls) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!calls[i].fn) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  if (!w || !w->current) return WEFT_EPERM;
  weft_task_t *local[GATHER_ON_STACK];
  weft_task_t **tasks = n <= GATHER_ON_STACK ? local : malloc(n * sizeof *tasks);
  if (!tasks) return WEFT_ENOMEM;
  int err = 0;
  size_t spawned = 0;
  for (; spawned < n; spawned++) {
    err = weft_spawn(&tasks[spawned], calls[spawned].fn, calls[spawned].arg);
    if (err) break;
  }
  /* On a failed spawn the ones already spawned still run to the end before we report it:
   * no task is lost or left running unowned. */
  weft_gather(tasks, spawned, err ? NULL : results);
  for (size_t i = 0; i < spawned; i++) weft_task_release(tasks[i]);
  if (tasks != local) free(tasks);
  return err;
}

