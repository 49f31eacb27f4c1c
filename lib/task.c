/*
 * Tasks: descriptors, spawning, starting, identity, and destroy's step for tasks.
 * Owns the descriptor slabs and free lists, spawn (ids, the stack check), a task's start on its
 * own stack, and what happens to descriptors at destroy (orphans). Completion, awaiting and
 * gather are lib/join.c's; futures lib/future.c's; sleep and yield lib/sleep.c's.
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
 */
#include "deque.h"
#include "internal.h"

#include <string.h>

enum {
  TASK_SLAB = 256,       /* descriptors per slab */
  TASK_CACHE_MAX = 1024, /* a worker's free list beyond this spills half to the runtime */
  TASK_REFILL = 64
};

/* ---- Descriptors -------------------------------------------------------------------------- */

typedef struct weft__task_slab {
  struct weft__task_slab *next;
  /* After destroy: descriptors whose handles are still held; the last release frees the slab. */
  _Atomic long orphans;
  struct weft_task tasks[TASK_SLAB];
} task_slab_t;

/* A descriptor on a free list (or never used) carries this word: a release of a handle that
 * was already released (or never given) aborts with a sentence, and destroy tells free
 * descriptors from live ones by it. */
#define TASK_WORD_FREE (WEFT__DONE | WEFT__RELEASED)

/* Caller holds rt->task_lock. */
static int task_slab_add(struct weft_runtime *rt) {
  task_slab_t *slab = aligned_alloc(64, sizeof *slab);
  if (!slab) return WEFT_ENOMEM;
  slab->next = rt->task_slabs;
  atomic_init(&slab->orphans, 0);
  rt->task_slabs = slab;
  for (int i = TASK_SLAB - 1; i >= 0; i--) {
    atomic_init(&slab->tasks[i].word, TASK_WORD_FREE);
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

/* The last handle of a descriptor that outlived its runtime's destroy: its slab goes with the
 * last of its orphans. */
static void orphan_free(struct weft_task *t) {
  task_slab_t *slab = (task_slab_t *)(void *)t->next;
  /* acq_rel: the one that frees the slab sees every other orphan's last touch */
  if (atomic_fetch_sub_explicit(&slab->orphans, 1, memory_order_acq_rel) == 1) free(slab);
}

void weft__task_free(struct weft_runtime *rt, weft__worker_t *w, struct weft_task *t) {
  /* Poison: a release of this handle before the descriptor is reused aborts with a sentence.
   * relaxed: nobody else may touch a freed descriptor. */
  atomic_store_explicit(&t->word, TASK_WORD_FREE, memory_order_relaxed);
  if (WEFT__UNLIKELY(!t->fn)) { /* an orphan: its runtime was destroyed, the handle held */
    orphan_free(t);
    return;
  }
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

/* ---- Destroy's step for tasks -------------------------------------------------------------- */

static bool task_is_free(struct weft_task *t) {
  /* relaxed: the workers have stopped and pthread_join ordered their writes before ours;
   * others may still CAS a live word (a thread starting an await), never a free one. */
  return atomic_load_explicit(&t->word, memory_order_relaxed) == TASK_WORD_FREE;
}

/* Step 1: a discarded task's waiter nodes (on its stack, unmapped soon) leave the words of
 * what it awaited — futures, tasks of other runtimes — waiting out a concurrent deliverer. */
static void unlink_discarded_waiters(struct weft_runtime *rt) {
  for (task_slab_t *slab = rt->task_slabs; slab; slab = slab->next)
    for (int i = 0; i < TASK_SLAB; i++)
      if (!task_is_free(&slab->tasks[i])) weft__wait_abandon(&slab->tasks[i]);
}

/* Step 2: every descriptor whose handle is still held becomes an orphan that its release
 * frees; returns the unfinished ones, linked through timer.ctx, to be completed. */
static struct weft_task *orphan_held(struct weft_runtime *rt) {
  struct weft_task *unfinished = NULL;
  for (task_slab_t **link = &rt->task_slabs, *slab; (slab = *link);) {
    long orphans = 0;
    for (int i = 0; i < TASK_SLAB; i++) {
      struct weft_task *t = &slab->tasks[i];
      uintptr_t s = atomic_load_explicit(&t->word, memory_order_relaxed); /* relaxed: above */
      if (s & WEFT__RELEASED) continue; /* free, or detached: it goes with the slab */
      /* The orphan mark: fn, which nothing outside reads (t->rt is read by awaiters that
       * compare runtimes, so it keeps its now dangling value). */
      t->fn = NULL;
      t->next = (struct weft_task *)(void *)slab;
      orphans++;
      if (!(s & WEFT__DONE)) {
        t->error = WEFT_ESHUTDOWN;
        t->result = NULL;
        t->timer.ctx = unfinished;
        unfinished = t;
      }
    }
    if (!orphans) {
      link = &slab->next;
      continue;
    }
    /* relaxed: published to the releasers by the completions' acq_rel (or, for finished
     * tasks, by destroy returning before the owner may release) */
    atomic_store_explicit(&slab->orphans, orphans, memory_order_relaxed);
    *link = slab->next; /* out of the runtime's list: its orphans own it now */
  }
  return unfinished;
}

void weft__tasks_discard(struct weft_runtime *rt) {
  unlink_discarded_waiters(rt);
  struct weft_task *t = orphan_held(rt);
  while (t) { /* step 3: threads and other runtimes' tasks that await them get ESHUTDOWN */
    struct weft_task *next = t->timer.ctx; /* read first: a woken awaiter may release t */
    weft__task_complete(t, NULL);
    t = next;
  }
}

/* ---- Starting ---------------------------------------------------------------------------- */

/* Entry of a task started on its own stack. */
static void task_entry(void *arg) {
  struct weft_task *t = arg;
  weft__stack_t *s = t->runs_on; /* read now: t may be freed by its completion */
  weft__ctx_entered(&s->ctx);
  void *result = t->fn(t->arg);
  weft__task_complete(t, result);
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
    weft__task_complete(t, NULL);
    return;
  }
  t->runs_on = s;
  WEFT_UNPOISON(s->lo, s->bytes); /* a pooled stack keeps the poison of its last task */
  s->ctx.sp = weft__context_make(s->lo + s->bytes, task_entry, t);
#if WEFT_TSAN
  s->ctx.tsan_fiber = __tsan_create_fiber(0);
#endif
  w->current = t;
  weft__ctx_switch(&w->sched, &s->ctx, false);
}

/* ---- Spawning ----------------------------------------------------------------------------- */

/* Ids users see (task dumps, overflow reports) start at 1 and stay small: a worker takes them
 * in blocks from the runtime's counter, so that a spawn costs no shared atomic; a thread that
 * is not a worker takes one at a time. Unique per runtime; in spawn order per worker. */
enum { TASK_ID_BLOCK = 1024 }; /* picked: one shared RMW per 1024 spawns, ids stay dense */

static uint64_t next_task_id(struct weft_runtime *rt, weft__worker_t *w) {
  /* relaxed: uniqueness comes from the RMW itself; ids order nothing */
  if (!w) return atomic_fetch_add_explicit(&rt->next_task_id, 1, memory_order_relaxed);
  if (WEFT__UNLIKELY(w->id_next == w->id_end)) {
    w->id_next = atomic_fetch_add_explicit(&rt->next_task_id, TASK_ID_BLOCK, memory_order_relaxed);
    w->id_end = w->id_next + TASK_ID_BLOCK;
  }
  return w->id_next++;
}

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
  t->timer.fire = NULL; /* no wait record */
  t->id = next_task_id(rt, w);
  if (w)
    weft__stat_bump(&w->n_spawned);
  else /* relaxed: a statistic */
    atomic_fetch_add_explicit(&rt->foreign_spawns, 1, memory_order_relaxed);
  if (out) *out = t;
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

/* ---- Identity ----------------------------------------------------------------------------- */

/* For the functions that return no code: a NULL handle aborts, naming the function called. */
static void check_handle(const struct weft_task *t, const char *what) {
  if (WEFT__UNLIKELY(!t)) weft__die("weft: %s was given a NULL task handle.", what);
}


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

