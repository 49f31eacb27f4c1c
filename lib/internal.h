/* Private to weft: the structures every file of lib/ shares. Nothing here is API. */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include "weft.h"
#include "sanitize.h"

#include <ck_md.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WEFT__CACHELINE CK_MD_CACHELINE
#define WEFT__ALIGNED __attribute__((aligned(WEFT__CACHELINE)))
#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Misuse that cannot be returned: one sentence, then abort. */
_Noreturn void weft__die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Debug-build invariant checks, in the spirit of SQLite's ALWAYS(). */
#ifdef WEFT_DEBUG
#define WEFT__ASSERT(cond) \
  ((cond) ? (void)0 : weft__die("weft: internal invariant failed: %s (%s:%d)", #cond, __FILE__, __LINE__))
#else
#define WEFT__ASSERT(cond) ((void)0)
#endif

struct weft__worker;
struct weft_runtime;

/* ---- Context switch (lib/context.c, lib/arch/) ---------------------------------------------- */

/* One execution context: a task stack, or a worker's own thread stack (its scheduler loop). */
typedef struct weft__ctx {
  void *sp; /* saved stack pointer while suspended */
  /* Used only when a sanitizer runtime is in the process (sanitize.h); kept in every build so
   * that one compiled library serves programs with and without one. */
  void *tsan_fiber;
  void *asan_fake_stack;
  const void *stack_lo; /* lowest usable address, for ASan's switch annotations */
  size_t stack_bytes;
} weft__ctx_t;

void weft__context_switch(void **save_sp, void *load_sp);
void *weft__context_make(void *stack_top, void (*entry)(void *), void *arg);
/* Switch with the sanitizer annotations; `from_ends` says that `from` will never be resumed. */
void weft__ctx_switch(weft__ctx_t *from, weft__ctx_t *to, bool from_ends);
/* Call first thing on a fresh stack (ASan's finish-switch for a new fiber). */
void weft__ctx_entered(weft__ctx_t *self);

/* ---- Stacks (lib/stack.c) ------------------------------------------------------------------- */

typedef struct weft__stack {
  struct weft__stack *next; /* cache link */
  char *lo;                 /* lowest usable byte; the guard page is just below */
  size_t bytes;             /* usable bytes */
  weft__ctx_t ctx;
} weft__stack_t;

typedef struct weft__stack_cache {
  weft__stack_t *head; /* LIFO: the most recently used (hottest) stack first */
  size_t count;
} weft__stack_cache_t;

struct weft__stack_pool; /* runtime-wide: slabs and the overflow list */
int weft__stack_pool_create(struct weft__stack_pool **pool, size_t stack_bytes);
void weft__stack_pool_destroy(struct weft__stack_pool *pool);
/* From the worker's cache, refilling from the pool (which may map a new slab). */
int weft__stack_get(struct weft__stack_pool *pool, weft__stack_cache_t *cache, weft__stack_t **out);
void weft__stack_put(struct weft__stack_pool *pool, weft__stack_cache_t *cache, weft__stack_t *s);
/* 0 if a stack can be had now (cache non-empty, or the pool refills it); the spawn-time check.
 * cache NULL: a thread that is not a worker asks the pool. */
int weft__stack_check(struct weft__stack_pool *pool, weft__stack_cache_t *cache);
uint64_t weft__stack_pool_mapped(struct weft__stack_pool *pool);
/* Per worker thread: the alternate signal stack and the SIGSEGV handler for overflow reports. */
int weft__stack_overflow_guard_install(void **altstack);
void weft__stack_overflow_guard_remove(void *altstack);

/* ---- Deque (lib/deque.c) -------------------------------------------------------------------- */

typedef struct weft__deque_array {
  int64_t mask;
  struct weft__deque_array *retired; /* older arrays, kept until the deque is destroyed */
  _Atomic uintptr_t slot[];
} weft__deque_array_t;

typedef struct weft__deque {
  _Atomic int64_t top WEFT__ALIGNED;    /* thieves' end */
  _Atomic int64_t bottom WEFT__ALIGNED; /* owner's end */
  _Atomic(weft__deque_array_t *) array;
} weft__deque_t;

int weft__deque_init(weft__deque_t *d, size_t capacity_pow2);
void weft__deque_destroy(weft__deque_t *d);
/* push/take/steal/size_hint/peek_newest: static inline in deque.h. */

/* Deque entries are task pointers (64-byte aligned) with a tag: a task to start, or a
 * suspended task to resume. 1 is the deque's ABORT value, so the tag uses bit 1. */
#define WEFT__ENTRY_RESUME ((uintptr_t)2)
#define WEFT__ENTRY_TAGS ((uintptr_t)63)

/* ---- Tasks, join counters, futures (lib/task.c) ------------------------------------------- */

/* A waiter: lives on the stack of whoever waits (a suspended task's stack, or a blocked
 * thread's), linked into the list of what it waits for; no allocation per wait. */
typedef struct weft__join {
  _Atomic long pending; /* children not yet done, +1 held by the waiter until it sleeps */
  struct weft_task *task; /* the waiting task, or NULL when a thread waits */
  _Atomic uint32_t thread_word; /* futex word when a thread waits */
  /* Timed waits only: the completion and the timer race; the first to flip `fired` wins and
   * arrives. Each side then sets its `*_done` flag as its last touch of the join, so that the
   * waiter knows when its stack frame may go. */
  bool timed;
  _Atomic uint32_t fired;      /* 0, or FIRED_BY_COMPLETION / FIRED_BY_TIMER */
  _Atomic uint32_t node_done;  /* the completer is finished with our waiter node */
  _Atomic uint32_t timer_done; /* the timer callback is finished with us */
} weft__join_t;

typedef struct weft__waiter {
  struct weft__waiter *next;
  weft__join_t *join;
} weft__waiter_t;

/* A completion word (task or future): the waiter list in the upper bits, and
 *   DONE     — the value is set; no waiter may be added any more;
 *   RELEASED — (tasks only) the handle is released: whoever sees DONE|RELEASED last frees it.
 * One word, so that a task's completion is a single CAS. Waiter nodes are 8-aligned. */
#define WEFT__DONE ((uintptr_t)1)
#define WEFT__RELEASED ((uintptr_t)2)
#define WEFT__WORD_FLAGS ((uintptr_t)3)

struct weft__timer; /* lib/timer.c */

typedef struct weft__timer_entry {
  struct weft__timer_entry *next, *prev; /* slot list */
  uint64_t deadline_ns;
  uint32_t level_slot;   /* where it is linked, for O(1) cancel */
  _Atomic uint32_t state; /* see timer.c */
  void (*fire)(struct weft__timer_entry *e);
  void *ctx; /* for fire */
} weft__timer_entry_t;

struct weft_task {
  _Atomic uintptr_t word; /* waiters | DONE | RELEASED */
  void *result;
  weft_fn fn;
  void *arg;
  struct weft_runtime *rt;
  int error; /* WEFT_ENOMEM if it could not be started */
  weft__stack_t *runs_on; /* the stack whose top holds this task's frames */
  struct weft_task *next; /* free list, inject queue (a task is in at most one queue) */
  const char *name;
  uint64_t id;
  /* What the task waits on, for diagnostics and for the timeout path. */
  weft__timer_entry_t timer;
} __attribute__((aligned(64)));

/* Starts a task from the scheduler loop, on the stack reserved for it at spawn. */
void weft__task_start(struct weft__worker *w, struct weft_task *t);
void weft__task_free(struct weft_runtime *rt, struct weft__worker *w, struct weft_task *t);
/* A completion arrives at a join (timed joins race it against their timer). */
void weft__join_arrive(weft__join_t *j);
/* Drops one count; the last wakes the waiter. */
void weft__join_release(weft__join_t *j);

/* ---- Workers (lib/worker.c) ----------------------------------------------------------------- */

/* Post-switch actions: what the scheduler does for a task after the task's stack is saved
 * (so that no other worker can resume it while it is still running there). */
typedef enum {
  WEFT__AFTER_NOTHING = 0,
  WEFT__AFTER_FINISHED, /* the task ended on its own stack: recycle the stack */
  WEFT__AFTER_YIELD,    /* requeue behind the other ready tasks */
  WEFT__AFTER_JOIN,     /* release the waiter's +1 on a join: if last, it is ready again */
  WEFT__AFTER_TIMER,    /* arm the task's timer (sleep) */
  WEFT__AFTER_TIMED_JOIN, /* arm the task's timer, then release the join (await with deadline) */
} weft__after_t;

typedef struct weft__worker {
  /* Hot, owner-only. */
  struct weft_runtime *rt;
  struct weft_task *current;
  weft__ctx_t sched; /* the scheduler loop's context on the thread's own stack */
  weft__after_t after;
  void *after_arg;
  weft__stack_t *after_stack;
  uint32_t tick;
  uint32_t rng;
  uint64_t ids;
  int index;
  struct weft_task *free_tasks;
  size_t free_task_count;
  weft__stack_cache_t stacks;
  void *altstack;
  /* Shared: thieves touch these. */
  weft__deque_t deque;   /* spawned and woken tasks: owner LIFO, thieves FIFO */
  weft__deque_t yieldq;  /* yielded tasks: everyone takes the oldest (FIFO) */
  _Atomic uint32_t park_word WEFT__ALIGNED; /* futex: 0 sleeping, 1 woken */
  struct weft__worker *next_idle;
  bool idle_listed;
  pthread_t thread;
  /* Statistics: owner writes, readers tolerate tearing-free relaxed reads. */
  _Atomic uint64_t n_spawned, n_inlined, n_stolen, n_parks, n_unrun;
} weft__worker_t;

/* Owner-written statistic: a plain increment made of relaxed atomics, so weft_runtime_stats
 * may read it from another thread (no locked instruction on the hot path). */
static inline void weft__stat_bump(_Atomic uint64_t *counter) {
  atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

/* The worker of the calling thread, or NULL. noinline + barrier: a task can resume on another
 * thread, and a compiler that cached the TLS address across the switch would read the old
 * worker's variable (seen with gcc 12; see shared/field-notes.md). */
weft__worker_t *weft__worker_self(void) __attribute__((noinline));
void weft__worker_set_self(weft__worker_t *w);

void weft__worker_main_loop(weft__worker_t *w);
/* Make a task runnable (start or resume entry): local deque if on a worker, else the inject
 * queue; wakes a parked worker if no one is looking for work. */
void weft__schedule(struct weft_runtime *rt, uintptr_t entry);
/* The same, known to run on worker w of the task's runtime (spawn's fast path). */
void weft__schedule_local(weft__worker_t *w, uintptr_t entry);
/* Switch from the running task to the scheduler, which then performs `after`. */
void weft__suspend(weft__worker_t *w, weft__after_t after, void *arg);
void weft__wake_one_if_needed(struct weft_runtime *rt);

/* ---- Runtime (lib/runtime.c) ---------------------------------------------------------------- */

struct weft_runtime {
  int nworkers;
  size_t stack_bytes;
  weft__worker_t *workers;
  struct weft__stack_pool *stacks;
  struct weft__timer *timer;
  _Atomic int stopping;
  _Atomic int nspinning WEFT__ALIGNED; /* workers looking for work, Go's rule */
  _Atomic int nidle;                  /* workers parked (on the idle list) */
  pthread_mutex_t idle_lock WEFT__ALIGNED;
  weft__worker_t *idle_list;
  /* Inject queue: spawns and wake-ups from threads that are not workers (FIFO). */
  pthread_mutex_t inject_lock WEFT__ALIGNED;
  uintptr_t inject_head, inject_tail; /* entries; linked through task->next */
  _Atomic long inject_len;
  /* Descriptor slabs and the shared overflow free list. */
  pthread_mutex_t task_lock WEFT__ALIGNED;
  struct weft_task *free_tasks;
  void *task_slabs;
  _Atomic uint64_t foreign_ids;
};

/* Linked through the tasks themselves: no allocation per foreign spawn or wake. */
void weft__inject_push(struct weft_runtime *rt, uintptr_t entry);

void weft__task_slabs_free(struct weft_runtime *rt);

/* Test-only fault injection: make the n-th allocation of a kind fail (0 disables).
 * STACK: a spawn's stack check; STACK_START: taking the stack when a worker starts a task;
 * TASK: a spawn's descriptor; THREAD: a worker thread's creation. */
enum {
  WEFT__FAULT_STACK,
  WEFT__FAULT_STACK_START,
  WEFT__FAULT_TASK,
  WEFT__FAULT_THREAD,
  WEFT__FAULT_KINDS
};
bool weft__fault_hit(int kind);
void weft__fault_set(int kind, long nth);            /* tests link weft_static */
void weft__stack_force_mprotect_guards(int force);

/* ---- Timers (lib/timer.c) ------------------------------------------------------------------- */

int weft__timer_create(struct weft__timer **timer, struct weft_runtime *rt);
void weft__timer_destroy(struct weft__timer *timer);
void weft__timer_arm(struct weft__timer *timer, weft__timer_entry_t *e);
bool weft__timer_cancel(struct weft__timer *timer, weft__timer_entry_t *e);
/* Fire what is due (at most a batch); returns the next deadline or UINT64_MAX. */
uint64_t weft__timer_poll(struct weft__timer *timer, uint64_t now_ns);
uint64_t weft__timer_next_deadline(struct weft__timer *timer);
bool weft__timer_pending(struct weft__timer *timer);
/* Called by the wheel when an insert made the earliest deadline earlier (worker.c). */
void weft__timer_deadline_moved(struct weft_runtime *rt);

/* ---- Futex -------------------------------------------------------------------------------- */
void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns);
void weft__futex_wake(_Atomic uint32_t *word, int n);

#endif /* WEFT_INTERNAL_H */
