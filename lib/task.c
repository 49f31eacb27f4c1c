/*
 * Tasks, join counters and futures.
 *
 * A spawned task is a 64-byte-aligned descriptor from the spawning worker's free list (no
 * malloc on the fast path); it gets a stack only when a worker starts it from its scheduler
 * loop, from that worker's LIFO cache (the hottest stack first). Spawn checks that the
 * spawning worker's cache can supply a stack (refilling it maps slabs, which is where
 * exhausted memory or map entries show), so exhaustion is reported by the spawn that meets
 * it. A stack can still run out between a spawn and the start (other tasks took them): that
 * task then ends unrun, its awaiter gets WEFT_ENOMEM and weft_stats_t.tasks_unrun counts it.
 * Rejected: binding a stack to each task at spawn (exact, but 10^6 spawned-and-gathered tasks
 * then map 10^6 stacks: 250 ns of guard install each, and the cache stops being hot).
 *
 * Inline awaits. A task that awaits (or gathers) a task whose start entry is the newest in its
 * own worker's deque takes the entry back (Chase–Lev take) and runs the task as a plain call
 * on its own stack — Lace's SYNC, Java ForkJoin's tryUnfork. Extraction from a deque is
 * exactly-once, so the inline path needs no claim CAS and no stale entries exist.
 * Rejected: claiming any unstarted task by a CAS on its state from wherever it sits (inlines
 * more awaits, but costs a CAS per task and leaves stale entries whose owners must then be
 * reference-counted); and "helping" — running
 * other queued tasks while waiting — which can deadlock when the helped task waits for
 * something the helper would do after its await returns.
 *
 * Completion. One word per task holds the waiter list, DONE and RELEASED (the handle is gone).
 * Completion is one CAS that sets DONE and takes the list; the waiters' nodes live on their own
 * (suspended) stacks and point to a join counter. A gather is one join counter for N
 * children; awaiting one task is a gather of one. The waiting task holds one extra count
 * until it is fully switched out (the scheduler drops it after the switch), so the last child
 * cannot make it runnable while it is still running — Go's gopark with an unlock function.
 */
#include "deque.h"
#include "internal.h"
#include "join.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
  TASK_SLAB = 256,       /* descriptors per slab */
  TASK_CACHE_MAX = 1024, /* a worker's free list beyond this spills half to the runtime */
  TASK_REFILL = 64
};

/* ---- Descriptors -------------------------------------------------------------------------- */

typedef struct task_slab {
  struct task_slab *next;
  struct weft_task tasks[TASK_SLAB];
} task_slab_t;

/* Caller holds rt->task_lock. */
static int task_slab_add(struct weft_runtime *rt) {
  task_slab_t *slab = aligned_alloc(64, sizeof *slab);
  if (!slab) return WEFT_ENOMEM;
  slab->next = rt->task_slabs;
  rt->task_slabs = slab;
  for (int i = TASK_SLAB - 1; i >= 0; i--) {
    slab->tasks[i].next = rt->free_tasks;
    rt->free_tasks = &slab->tasks[i];
  }
  return 0;
}

void weft__task_slabs_free(struct weft_runtime *rt) {
  for (task_slab_t *s = rt->task_slabs, *next; s; s = next) {
    next = s->next;
    free(s);
  }
  rt->task_slabs = NULL;
  rt->free_tasks = NULL;
}

static struct weft_task *task_alloc_shared(struct weft_runtime *rt, weft__worker_t *w) {
  pthread_mutex_lock(&rt->task_lock);
  if (!rt->free_tasks && task_slab_add(rt) != 0) {
    pthread_mutex_unlock(&rt->task_lock);
    return NULL;
  }
  struct weft_task *t = rt->free_tasks;
  rt->free_tasks = t->next;
  for (int i = 0; w && i < TASK_REFILL && rt->free_tasks; i++) { /* refill the worker's list */
    struct weft_task *u = rt->free_tasks;
    rt->free_tasks = u->next;
    u->next = w->free_tasks;
    w->free_tasks = u;
    w->free_task_count++;
  }
  pthread_mutex_unlock(&rt->task_lock);
  return t;
}

static struct weft_task *task_alloc(struct weft_runtime *rt, weft__worker_t *w) {
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_TASK))) return NULL;
  if (WEFT__LIKELY(w && w->free_tasks)) {
    struct weft_task *t = w->free_tasks;
    w->free_tasks = t->next;
    w->free_task_count--;
    return t;
  }
  return task_alloc_shared(rt, w);
}

static void task_cache_spill(struct weft_runtime *rt, weft__worker_t *w) {
  pthread_mutex_lock(&rt->task_lock);
  while (w->free_task_count > TASK_CACHE_MAX / 2) {
    struct weft_task *t = w->free_tasks;
    w->free_tasks = t->next;
    w->free_task_count--;
    t->next = rt->free_tasks;
    rt->free_tasks = t;
  }
  pthread_mutex_unlock(&rt->task_lock);
}

void weft__task_free(struct weft_runtime *rt, weft__worker_t *w, struct weft_task *t) {
  /* Poison: a release of this handle before the descriptor is reused aborts with a sentence.
   * relaxed: nobody else may touch a freed descriptor. */
  atomic_store_explicit(&t->word, WEFT__DONE | WEFT__RELEASED, memory_order_relaxed);
  if (w && w->rt == rt) {
    t->next = w->free_tasks;
    w->free_tasks = t;
    if (WEFT__UNLIKELY(++w->free_task_count > TASK_CACHE_MAX)) task_cache_spill(rt, w);
    return;
  }
  pthread_mutex_lock(&rt->task_lock);
  t->next = rt->free_tasks;
  rt->free_tasks = t;
  pthread_mutex_unlock(&rt->task_lock);
}

/* ---- Join counters ------------------------------------------------------------------------ */

void weft__join_release(weft__join_t *j) {
  if (!join_count_release(&j->pending)) return;
  if (j->task) { /* the waiter cannot run before this, so j (on its stack) is still alive */
    weft__schedule(j->task->rt, (uintptr_t)j->task | WEFT__ENTRY_RESUME);
    return;
  }
  /* release: the thread that sees 1 sees the results too. */
  atomic_store_explicit(&j->thread_word, 1, memory_order_release);
  weft__futex_wake(&j->thread_word, 1);
}

enum { FIRED_BY_COMPLETION = 1, FIRED_BY_TIMER = 2 };

/* True for the first of completion and timer to claim a timed join. */
static bool claim_fired(weft__join_t *j, uint32_t side) {
  uint32_t expected = 0;
  /* acq_rel: the winner's release reaches the waiter through the join's acq_rel count. */
  return atomic_compare_exchange_strong_explicit(&j->fired, &expected, side,
                                                 memory_order_acq_rel, memory_order_acquire);
}

/* One side of a timed wait's race; the loser's last touch of j is its done flag. */
static void timed_race(weft__join_t *j, uint32_t side, _Atomic uint32_t *done_flag) {
  bool won = claim_fired(j, side);
  atomic_store_explicit(done_flag, 1, memory_order_release); /* release: the waiter may go */
  if (won) weft__join_release(j);
}

void weft__join_arrive(weft__join_t *j) {
  if (WEFT__LIKELY(!j->timed))
    weft__join_release(j);
  else
    timed_race(j, FIRED_BY_COMPLETION, &j->node_done);
}

static void timed_timer_fire(weft__timer_entry_t *e) {
  weft__join_t *j = e->ctx;
  timed_race(j, FIRED_BY_TIMER, &j->timer_done);
}

static void wait_flag(_Atomic uint32_t *flag) {
  /* acquire: pairs with the release in timed_race; the other side is mid-callback, so the
   * wait is short, but it may be preempted: yield the CPU rather than burn it. */
  while (!atomic_load_explicit(flag, memory_order_acquire)) sched_yield();
}

static void wake_waiters(weft__waiter_t *node) {
  while (node) {
    weft__waiter_t *next = node->next; /* read first: the node dies once its join is done */
    weft__join_arrive(node->join);
    node = next;
  }
}

/* Blocks the calling thread (not a task) until the join's count reaches zero. */
static void thread_wait_join(weft__join_t *j) {
  /* acquire: pairs with the release store in weft__join_release. */
  while (atomic_load_explicit(&j->thread_word, memory_order_acquire) == 0)
    weft__futex_wait(&j->thread_word, 0, UINT64_MAX);
}

/* Waits on a join whose children have been registered: `j->pending` counts them plus one for
 * the waiter itself, dropped here (by the scheduler after the switch, when a task waits). */
static void wait_join(weft__join_t *j) {
  if (j->task) {
    weft__worker_t *w = weft__worker_self(); /* fresh: see try_inline */
    weft__suspend(w, WEFT__AFTER_JOIN, j);
    return;
  }
  weft__join_release(j);
  thread_wait_join(j);
}

/* After a timeout: take our node out of the completion word's list. The list is a stack that
 * only grows or is taken whole, so removal takes it whole, drops our node and pushes the
 * others back — delivering the completion to them itself if it happened meanwhile. */
static void remove_waiter(_Atomic uintptr_t *word, weft__waiter_t *node, weft__join_t *j) {
  for (;;) {
    uintptr_t s = atomic_load_explicit(word, memory_order_acquire); /* acquire: node links */
    if (s & WEFT__DONE) { /* the completer owns the list now and will touch our node */
      wait_flag(&j->node_done);
      return;
    }
    /* acq_rel: acquire the nodes' links; release our emptying to the next pusher */
    if (!atomic_compare_exchange_weak_explicit(word, &s, s & WEFT__WORD_FLAGS,
                                               memory_order_acq_rel, memory_order_relaxed))
      continue;
    bool found = false;
    for (weft__waiter_t *n = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS), *next; n; n = next) {
      next = n->next;
      if (n == node) {
        found = true;
        continue;
      }
      if (!join_add_waiter(word, n)) weft__join_arrive(n->join);
    }
    if (found) return;
    /* Another remover holds our node for a moment; it pushes it back or delivers it. */
    sched_yield();
  }
}

static void join_init(weft__join_t *j, struct weft_task *task, long pending, bool timed) {
  j->task = task;
  atomic_init(&j->pending, pending);
  atomic_init(&j->thread_word, 0);
  j->timed = timed;
  atomic_init(&j->fired, 0);
  atomic_init(&j->node_done, 0);
  atomic_init(&j->timer_done, 0);
}

/* Waits until a completion word is DONE or the deadline passes (WEFT_ETIMEDOUT). */
static int await_word_until(weft__worker_t *w, struct weft_task *self, _Atomic uintptr_t *word,
                            uint64_t deadline_ns) {
  weft__join_t j;
  join_init(&j, self, 2, true); /* the first of completion/timer, and ourselves */
  weft__waiter_t node = {.join = &j};
  if (!join_add_waiter(word, &node)) return 0;
  if (self) {
    self->timer.deadline_ns = deadline_ns;
    self->timer.fire = timed_timer_fire;
    self->timer.ctx = &j;
    weft__suspend(w, WEFT__AFTER_TIMED_JOIN, &j);
    /* acquire: pairs with the winner's CAS */
    if (atomic_load_explicit(&j.fired, memory_order_acquire) == FIRED_BY_COMPLETION) {
      if (!weft__timer_cancel(self->rt->timer, &self->timer)) wait_flag(&j.timer_done);
      return 0;
    }
    remove_waiter(word, &node, &j);
    return WEFT_ETIMEDOUT;
  }
  weft__join_release(&j); /* a thread waits on its futex word with the deadline itself */
  while (atomic_load_explicit(&j.thread_word, memory_order_acquire) == 0) { /* acquire: results */
    if (weft_now_ns() >= deadline_ns) {
      if (claim_fired(&j, FIRED_BY_TIMER)) {
        remove_waiter(word, &node, &j);
        return WEFT_ETIMEDOUT;
      }
      thread_wait_join(&j); /* the completion won the race: its wake is on the way */
      return 0;
    }
    weft__futex_wait(&j.thread_word, 0, deadline_ns);
  }
  return 0;
}

/* Waits until a completion word is DONE (one waiter node, a join of one). */
static void await_word(struct weft_task *self, _Atomic uintptr_t *word) {
  weft__join_t j;
  join_init(&j, self, 2, false); /* the awaited, and ourselves until we are switched out */
  weft__waiter_t node = {.join = &j};
  if (join_add_waiter(word, &node)) wait_join(&j);
}

/* ---- Starting and finishing tasks --------------------------------------------------------- */

static void task_complete(struct weft_task *t, void *result) {
  t->result = result;
  /* The completion edge, before DONE is published: pairs with the acquire in every call that
   * returns a task's result (awaited, gathered, polled). */
  weft__tsan_release(&t->word);
  uintptr_t s = join_complete(&t->word);
  weft__waiter_t *waiters = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS);
  if (s & WEFT__RELEASED) weft__task_free(t->rt, weft__worker_self(), t);
  wake_waiters(waiters);
}

/* Entry of a task started on its own stack. */
static void task_entry(void *arg) {
  struct weft_task *t = arg;
  weft__stack_t *s = t->runs_on; /* read now: t may be freed by its completion */
  weft__ctx_entered(&s->ctx);
  void *result = t->fn(t->arg);
  task_complete(t, result);
  weft__worker_t *w = weft__worker_self(); /* may differ from the one that started us */
  w->current = NULL;
  w->after = WEFT__AFTER_FINISHED;
  w->after_stack = s;
  weft__ctx_switch(&s->ctx, &w->sched, true);
  __builtin_unreachable();
}

void weft__task_start(weft__worker_t *w, struct weft_task *t) {
  WEFT__ASSERT(t->runs_on == NULL); /* a start entry is taken exactly once */
  weft__stack_t *s;
  if (WEFT__UNLIKELY(weft__stack_get(w->rt->stacks, &w->stacks, &s) != 0)) {
    /* Out of stacks or map entries since the spawn checked: the task ends unrun and its
     * awaiter gets WEFT_ENOMEM; the worker and every other task go on. Counted, so that the
     * loss of a detached one is not silent. */
    weft__stat_bump(&w->n_unrun);
    t->error = WEFT_ENOMEM;
    task_complete(t, NULL);
    return;
  }
  t->runs_on = s;
  WEFT_UNPOISON(s->lo, s->bytes); /* a pooled stack keeps the poison of its last task */
  s->ctx.sp = weft__context_make(s->lo + s->bytes, task_entry, t);
  if (weft__san_hooks() & WEFT__SAN_TSAN) {
    /* The spawn edge: acquired here on the scheduler's fiber, carried into the task's by the
     * switch below (flag 0 syncs). Pairs with the release in spawn(). */
    __tsan_acquire(&t->fn);
    s->ctx.tsan_fiber = __tsan_create_fiber(0);
  }
  w->current = t;
  weft__ctx_switch(&w->sched, &s->ctx, false);
}

/* Runs t, whose start entry we took back from our own deque, as a plain call. */
static void run_inline(weft__worker_t *w, struct weft_task *t) {
  struct weft_task *awaiter = w->current;
  t->runs_on = awaiter->runs_on;
  w->current = t;
  weft__stat_bump(&w->n_inlined);
  weft__tsan_acquire(&t->fn); /* the spawn edge (pairs with spawn()); same fiber, kept for form */
  void *result = t->fn(t->arg);
  w = weft__worker_self(); /* t may have suspended and resumed elsewhere */
  w->current = awaiter;
  task_complete(t, result);
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

/* ---- Spawning ----------------------------------------------------------------------------- */

static int spawn(struct weft_runtime *rt, weft__worker_t *w, weft_task_t **out, weft_fn fn,
                 void *arg) {
  if (WEFT__UNLIKELY(!fn)) return WEFT_EINVAL;
  /* relaxed: a best-effort early answer; destroy discards whatever still slips in */
  if (WEFT__UNLIKELY(atomic_load_explicit(&rt->stopping, memory_order_relaxed)))
    return WEFT_ESHUTDOWN;
  /* Stacks are taken when a worker starts the task, not here; but a spawn that could not
   * get one now fails now, while the caller can still handle it. */
  int err = weft__stack_check(rt->stacks, w ? &w->stacks : NULL);
  if (WEFT__UNLIKELY(err)) return err;
  struct weft_task *t = task_alloc(rt, w);
  if (WEFT__UNLIKELY(!t)) return WEFT_ENOMEM;
  atomic_init(&t->word, out ? 0 : WEFT__RELEASED);
  t->result = NULL;
  t->fn = fn;
  t->arg = arg;
  t->rt = rt;
  t->error = 0;
  t->runs_on = NULL;
  t->name = NULL;
  if (w) {
    t->id = ((uint64_t)w->index << 48) | ++w->ids;
    weft__stat_bump(&w->n_spawned);
  } else {
    t->id = ((uint64_t)0xffff << 48) |
            atomic_fetch_add_explicit(&rt->foreign_ids, 1, memory_order_relaxed); /* unique only */
  }
  if (out) *out = t;
  /* The spawn edge: what the spawner wrote before spawning happens before the task starts
   * (pairs with the acquire in weft__task_start/run_inline). Keyed on &t->fn, not t, which
   * is &t->word, the completion edge's key. */
  weft__tsan_release(&t->fn);
  if (w)
    weft__schedule_local(w, (uintptr_t)t);
  else
    weft__schedule(rt, (uintptr_t)t);
  return 0;
}

static weft__worker_t *worker_of(struct weft_runtime *rt) {
  weft__worker_t *w = weft__worker_self();
  return w && w->rt == rt ? w : NULL;
}

int weft_spawn(weft_task_t **task, weft_fn fn, void *arg) {
  weft__worker_t *w = weft__worker_self();
  if (!w || !w->current) return WEFT_EPERM;
  return spawn(w->rt, w, task, fn, arg);
}

int weft_runtime_spawn(weft_runtime_t *rt, weft_task_t **task, weft_fn fn, void *arg) {
  if (!rt) return WEFT_EINVAL;
  return spawn(rt, worker_of(rt), task, fn, arg);
}

/* ---- Awaiting ----------------------------------------------------------------------------- */

/* The task running on this thread, NULL on a thread that is not a worker; aborts on a worker
 * thread outside any task (a scheduler callback cannot suspend). */
static struct weft_task *awaiting_task(weft__worker_t *w, const char *what) {
  if (!w) return NULL;
  if (!w->current)
    weft__die("weft: %s was called on a worker thread outside any task, where nothing can wait.",
              what);
  return w->current;
}

static void check_handle(const struct weft_task *t, const char *what) {
  if (WEFT__UNLIKELY(!t)) weft__die("weft: %s was given a NULL task handle.", what);
}

int weft_task_done(const weft_task_t *t) {
  check_handle(t, "weft_task_done");
  /* acquire: a caller that sees DONE may read the result next */
  if (!(atomic_load_explicit(&((weft_task_t *)t)->word, memory_order_acquire) & WEFT__DONE))
    return 0;
  weft__tsan_acquire(&((weft_task_t *)t)->word); /* the completion edge (task_complete) */
  return 1;
}

int weft_task_result(const weft_task_t *t, void **result) {
  if (!weft_task_done(t)) return WEFT_EAGAIN;
  if (result) *result = t->result;
  return t->error;
}

int weft_await(weft_task_t *t, void **result) {
  check_handle(t, "weft_await");
  if (atomic_load_explicit(&t->word, memory_order_acquire) & WEFT__DONE) /* acquire: result */
    goto done;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = awaiting_task(w, "weft_await");
  if (self == t) weft__die("weft: a task awaited itself, which can never finish.");
  if (self && try_inline(t)) goto done;
  await_word(self, &t->word);
done:
  weft__tsan_acquire(&t->word); /* the completion edge (task_complete) */
  if (result) *result = t->result;
  return t->error;
}

void weft_task_release(weft_task_t *t) {
  if (!t) return;
  int r = join_release_handle(&t->word);
  if (WEFT__UNLIKELY(r < 0))
    weft__die("weft: a task handle was released twice (or used after weft_task_release).");
  if (r > 0) weft__task_free(t->rt, weft__worker_self(), t);
  /* r == 0: it runs on, detached; its completion frees it */
}

int weft_await_until(weft_task_t *t, uint64_t deadline_ns, void **result) {
  check_handle(t, "weft_await_until");
  int err = 0;
  if (!(atomic_load_explicit(&t->word, memory_order_acquire) & WEFT__DONE)) { /* acquire */
    weft__worker_t *w = weft__worker_self();
    struct weft_task *self = awaiting_task(w, "weft_await_until");
    if (self == t) weft__die("weft: a task awaited itself, which can never finish.");
    /* No inline run here: a deadline means the caller wants the task run beside it. */
    err = await_word_until(w, self, &t->word, deadline_ns);
  }
  if (!err) weft__tsan_acquire(&t->word); /* the completion edge (task_complete) */
  if (!err && result) *result = t->result;
  return err ? err : t->error;
}

int weft_await_timeout(weft_task_t *t, uint64_t timeout_ns, void **result) {
  uint64_t now = weft_now_ns();
  return weft_await_until(t, timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns, result);
}

int weft_join(weft_task_t *t, void **result) {
  int err = weft_await(t, result);
  weft_task_release(t);
  return err;
}

/* ---- Gather ------------------------------------------------------------------------------- */

enum { GATHER_ON_STACK = 16 };

/* Waits until every task in tasks[0..n) is done, with one waiter node each from `nodes`. */
static void wait_all(struct weft_task *self, weft_task_t *const *tasks, size_t n,
                     weft__waiter_t *nodes) {
  weft__join_t j;
  join_init(&j, self, 1, false);
  size_t waiting = 0;
  for (size_t i = 0; i < n; i++) {
    if (weft_task_done(tasks[i])) continue;
    weft__waiter_t *node = &nodes[waiting];
    node->join = &j;
    /* Count before linking: the child may finish and arrive the moment it is linked. */
    atomic_fetch_add_explicit(&j.pending, 1, memory_order_relaxed); /* relaxed: we hold +1 */
    if (join_add_waiter(&tasks[i]->word, node))
      waiting++;
    else
      atomic_fetch_sub_explicit(&j.pending, 1, memory_order_relaxed); /* relaxed: as above */
  }
  if (waiting) wait_join(&j);
}

/* Waits in chunks of GATHER_ON_STACK with the nodes on this stack: no allocation, so no
 * out-of-memory path and nothing left on the heap if the runtime discards the waiting task at
 * destroy. Costs at most n/16 suspensions instead of one; chunks whose tasks are all done by
 * then cost none. Rejected: a malloc'd node per task (one wake-up for any n, but a gather could
 * then fail, or leak when discarded). */
int weft_gather(weft_task_t *const *tasks, size_t n, void **results) {
  if (n && !tasks) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++) check_handle(tasks[i], "weft_gather");
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = awaiting_task(w, "weft_gather");
  /* Newest first: the children we spawned last are the newest entries of our deque. */
  if (self)
    for (size_t i = n; i-- > 0;)
      if (!weft_task_done(tasks[i])) try_inline(tasks[i]);
  weft__waiter_t nodes[GATHER_ON_STACK];
  for (size_t i = 0; i < n; i += GATHER_ON_STACK)
    wait_all(self, tasks + i, n - i < GATHER_ON_STACK ? n - i : GATHER_ON_STACK, nodes);
  if (weft__san_hooks() & WEFT__SAN_TSAN) /* the completion edges (task_complete) */
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

/* ---- Identity ----------------------------------------------------------------------------- */

weft_task_t *weft_current(void) {
  weft__worker_t *w = weft__worker_self();
  return w ? w->current : NULL;
}

void weft_task_set_name(weft_task_t *t, const char *name) {
  check_handle(t, "weft_task_set_name");
  t->name = name;
}

const char *weft_task_name(const weft_task_t *t) {
  check_handle(t, "weft_task_name");
  return t->name;
}

uint64_t weft_task_id(const weft_task_t *t) {
  check_handle(t, "weft_task_id");
  return t->id;
}

/* ---- Sleeping ----------------------------------------------------------------------------- */

static void sleep_fire(weft__timer_entry_t *e) {
  struct weft_task *t = e->ctx;
  weft__schedule(t->rt, (uintptr_t)t | WEFT__ENTRY_RESUME);
}

int weft_sleep_until(uint64_t deadline_ns) {
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = awaiting_task(w, "weft_sleep_until");
  if (!self) { /* a plain thread sleeps the plain way */
    struct timespec ts = {.tv_sec = (time_t)(deadline_ns / 1000000000u),
                          .tv_nsec = (long)(deadline_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
    return 0;
  }
  if (deadline_ns <= weft_now_ns()) return weft_yield();
  self->timer.deadline_ns = deadline_ns;
  self->timer.fire = sleep_fire;
  self->timer.ctx = self;
  weft__suspend(w, WEFT__AFTER_TIMER, &self->timer);
  return 0;
}

int weft_sleep_ns(uint64_t duration_ns) {
  uint64_t now = weft_now_ns();
  return weft_sleep_until(duration_ns > UINT64_MAX - now ? UINT64_MAX - 1 : now + duration_ns);
}

int weft_sleep_ms(uint64_t duration_ms) {
  return weft_sleep_ns(duration_ms > UINT64_MAX / 1000000u ? UINT64_MAX : duration_ms * 1000000u);
}

int weft_yield(void) {
  weft__worker_t *w = weft__worker_self();
  if (!w || !w->current) return WEFT_EPERM;
  weft__suspend(w, WEFT__AFTER_YIELD, w->current);
  return 0;
}

/* ---- Futures ------------------------------------------------------------------------------ */

struct weft_future {
  _Atomic uintptr_t word; /* waiters | DONE | RESOLVING */
  void *value;
};
#define FUTURE_RESOLVING WEFT__RELEASED /* futures have no handle: the bit means "being set" */

int weft_future_create(weft_future_t **out) {
  if (!out) return WEFT_EINVAL;
  weft_future_t *f = malloc(sizeof *f);
  if (!f) return WEFT_ENOMEM;
  atomic_init(&f->word, 0);
  f->value = NULL;
  *out = f;
  return 0;
}

void weft_future_destroy(weft_future_t *f) {
  if (!f) return;
  /* relaxed: only the owner destroys, after every awaiter returned */
  if (atomic_load_explicit(&f->word, memory_order_relaxed) & ~WEFT__WORD_FLAGS)
    weft__die("weft: a future was destroyed while tasks still await it.");
  free(f);
}

int weft_future_resolve(weft_future_t *f, void *value) {
  if (!f) return WEFT_EINVAL;
  /* RESOLVING first, so that of two racing resolvers exactly one writes the value. */
  uintptr_t s = atomic_load_explicit(&f->word, memory_order_relaxed);
  do {
    if (s & (WEFT__DONE | FUTURE_RESOLVING)) return WEFT_EALREADY;
    /* relaxed: the value is published by the exchange below, not by this claim */
  } while (!atomic_compare_exchange_weak_explicit(&f->word, &s, s | FUTURE_RESOLVING,
                                                  memory_order_relaxed, memory_order_relaxed));
  f->value = value;
  /* The resolve edge: pairs with the acquire in weft_future_await*, weft_future_done. */
  weft__tsan_release(&f->word);
  /* acq_rel: release publishes value to whoever sees DONE; acquire reads the waiter nodes. */
  s = atomic_exchange_explicit(&f->word, WEFT__DONE, memory_order_acq_rel);
  wake_waiters((weft__waiter_t *)(s & ~WEFT__WORD_FLAGS));
  return 0;
}

int weft_future_done(const weft_future_t *f) {
  if (!f) return 0;
  /* acquire: a caller that sees DONE may read the value next */
  if (!(atomic_load_explicit(&((weft_future_t *)f)->word, memory_order_acquire) & WEFT__DONE))
    return 0;
  weft__tsan_acquire(&((weft_future_t *)f)->word); /* the resolve edge */
  return 1;
}

int weft_future_await_until(weft_future_t *f, uint64_t deadline_ns, void **value) {
  if (!f) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = awaiting_task(w, "weft_future_await_until");
  int err = await_word_until(w, self, &f->word, deadline_ns);
  if (!err) weft__tsan_acquire(&f->word); /* the resolve edge */
  if (!err && value) *value = f->value;
  return err;
}

int weft_future_await(weft_future_t *f, void **value) {
  if (!f) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  struct weft_task *self = awaiting_task(w, "weft_future_await");
  await_word(self, &f->word);
  weft__tsan_acquire(&f->word); /* the resolve edge */
  if (value) *value = f->value;
  return 0;
}
