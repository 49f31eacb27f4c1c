/* Private to weft: the structures every file of lib/ shares. Nothing here is API.
 * Ordered by layer, each section naming the file that defines it: the ground floor (sys.h,
 * sanitize.h) and the deque (deque.h) are their own headers; then the context switch, stacks,
 * the timer wheel, the scheduler's entries, tasks and joins, workers, the runtime, and the
 * overflow reporter that sits above them. A file uses only what is above it, except the
 * scheduler and its tasks (worker.c, task.c, join.c), which call each other. */
#ifndef WEFT_INTERNAL_H
#define WEFT_INTERNAL_H

#include "weft.h"
#include "sanitize.h"
#include "sys.h"
#include "deque.h"

#include <ck_md.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define WEFT__CACHELINE CK_MD_CACHELINE
#define WEFT__ALIGNED __attribute__((aligned(WEFT__CACHELINE)))

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

/* What a task holds across a suspension inside weft's own calls that no unwinding would give
 * back if destroy discarded the task where it waits (it is never resumed): weft_gather_calls'
 * children and their handle array, weft_wait_any's heap nodes. A record lives in the frame of
 * the call that holds the thing and is pushed onto its stack's list while it does (LIFO, so
 * an inline child's records sit above its awaiter's); destroy runs a discarded task's records
 * after taking its nodes out of every list (lib/task.c, weft__tasks_discard). Rejected: a
 * pointer in the task descriptor (its 64 bytes are full; and a task run inline shares its
 * awaiter's stack, so one list per stack covers both). */
typedef struct weft__discard_hook {
  struct weft__discard_hook *next;
  void (*fn)(void *ctx);
  void *ctx;
} weft__discard_hook_t;

typedef struct weft__stack {
  struct weft__stack *next; /* cache link */
  struct weft__stack *prev; /* the pool's used list only (doubly linked: trimmed from the tail) */
  uint64_t idle_since;      /* when it entered the pool's used list (weft_now_ns) */
  char *lo;                 /* lowest usable byte; the guard region is just below */
  size_t bytes;             /* usable bytes */
  weft__ctx_t ctx;
  /* Frames forked on this stack, detached (lib/frame.c) and not yet synced: a task that ends
   * with some would leave their runners writing into a dead stack. Owner-only. */
  uint32_t frames_away;
  /* Records to run if destroy discards the task on this stack (weft__discard_hook_t); empty
   * whenever a task ends. Owner-only; destroy reads it after the workers stopped. */
  weft__discard_hook_t *on_discard;
} weft__stack_t;

typedef struct weft__stack_cache {
  weft__stack_t *head; /* LIFO: the most recently used (hottest) stack first */
  size_t count;
} weft__stack_cache_t;

struct weft__stack_pool; /* runtime-wide: slabs and the overflow list */
/* Both sizes are rounded up to pages. */
int weft__stack_pool_create(struct weft__stack_pool **pool, size_t stack_bytes, size_t guard_bytes);
void weft__stack_pool_destroy(struct weft__stack_pool *pool);
/* From the worker's cache, refilling from the pool (which may map a new slab). */
int weft__stack_get(struct weft__stack_pool *pool, weft__stack_cache_t *cache, weft__stack_t **out);
void weft__stack_put(struct weft__stack_pool *pool, weft__stack_cache_t *cache, weft__stack_t *s);
/* 0 if a stack can be had now (cache non-empty, or the pool refills it); the spawn-time check.
 * cache NULL: a thread that is not a worker asks the pool. */
int weft__stack_check(struct weft__stack_pool *pool, weft__stack_cache_t *cache);
/* The same with the common answer inline: the worker's cache has a stack. */
static inline int weft__stack_ready(struct weft__stack_pool *pool, weft__stack_cache_t *cache) {
  /* one countdown step per spawn either way (the test build's fault sweeps count them) */
  if (WEFT__LIKELY(cache && cache->head)) return weft__fault_hit(WEFT__FAULT_STACK) ? WEFT_ENOMEM : 0;
  return weft__stack_check(pool, cache);
}
uint64_t weft__stack_pool_mapped(struct weft__stack_pool *pool);
/* Run by a worker about to park: hands its cache beyond a few stacks to the pool and returns
 * the memory of stacks idle in the pool for a while to the system (a bounded batch). Returns
 * when it should run again (weft_now_ns), UINT64_MAX once nothing is left to return. */
uint64_t weft__stack_scavenge(struct weft__stack_pool *pool, weft__stack_cache_t *cache,
                              uint64_t now_ns);
/* The guard bytes below each of the pool's stacks (read by the overflow reporter). */
size_t weft__stack_pool_guard(struct weft__stack_pool *pool);
/* Test-only: use mprotect guards even where MADV_GUARD_INSTALL works (tests link weft_static). */
void weft__stack_force_mprotect_guards(int force);

/* ---- Timers (lib/timer.c) ------------------------------------------------------------------- */

struct weft__timer; /* lib/timer.c */

typedef struct weft__timer_entry {
  struct weft__timer_entry *next, *prev; /* slot list; in the due ring, prev is its position */
  uint64_t deadline_ns;
  uint32_t level_slot;   /* where it is linked, for O(1) cancel */
  _Atomic uint32_t state; /* see timer.c */
  void (*fire)(struct weft__timer_entry *e);
  void *ctx; /* for fire */
  /* A line fire writes besides its ctx (a waiting task's descriptor, whose state it wakes), or
   * NULL: the poll prefetches both a few entries ahead (#13: the wake's CAS stalled on each
   * miss). */
  const void *touch;
} weft__timer_entry_t;

/* wake (with wake_ctx): the wake check, which the wheel runs after a poll or cancel that may
 * have let a worker park past an entry (lib/timer_inbox_impl.h); NULL: none. */
int weft__timer_create(struct weft__timer **timer, void (*wake)(void *ctx), void *wake_ctx);
void weft__timer_destroy(struct weft__timer *timer);
/* Arms e (one already due fires at the next poll); true if that made the earliest deadline
 * earlier: the caller then wakes a parked worker so it re-arms its sleep (the wheel knows
 * nothing of workers). */
bool weft__timer_arm(struct weft__timer *timer, weft__timer_entry_t *e);
bool weft__timer_cancel(struct weft__timer *timer, weft__timer_entry_t *e);
/* Fire what is due (at most a batch); returns the next deadline or UINT64_MAX. */
/* *fired (if not NULL) is increased by the number of callbacks run. */
uint64_t weft__timer_poll(struct weft__timer *timer, uint64_t now_ns, _Atomic uint64_t *fired);
uint64_t weft__timer_armed(struct weft__timer *timer); /* entries armed now */
uint64_t weft__timer_next_deadline(struct weft__timer *timer);
/* weft__timer_poll at the current time, with no clock read when nothing is armed (a spinning
 * worker's round: #13, session 15, spawn 10^6's thief read the clock twice per stolen task). */
uint64_t weft__timer_poll_if_armed(struct weft__timer *timer, _Atomic uint64_t *fired);
bool weft__timer_pending(struct weft__timer *timer);

/* ---- Scheduler entries ---------------------------------------------------------------------- */

/* Deque entries are task pointers (64-byte aligned) with a tag: a task to start, or a
 * suspended task to resume. 1 is the deque's ABORT value, so the tag uses bit 1. */
#define WEFT__ENTRY_RESUME ((uintptr_t)2)
#define WEFT__ENTRY_TAGS ((uintptr_t)63)

/* ---- Tasks, joins, futures (lib/task.c, lib/join.c, lib/future.c, lib/sleep.c) ------------- */

/* A waiter: lives on the stack of whoever waits (a suspended task's stack, or a blocked
 * thread's), linked into the list of what it waits for; no allocation per wait. */
typedef struct weft__join {
  _Atomic long pending; /* children not yet done, +1 held by the waiter until it sleeps */
  struct weft_task *task; /* the waiting task, or NULL when a thread waits */
  _Atomic uint32_t thread_word; /* a blocked thread's wake word: WAITING, SIGNALLED, WOKEN */
  /* A task waiter is woken through its park state (wake_impl.h); a thread's timed or any-wait
   * is claimed through `fired`. The timer callback sets `timer_done` as its last touch of the
   * join, so that the waiter knows when its frame may go (a deliverer's side is its word's
   * BUSY). `pending`: children not yet arrived, plus the waiter's hold while it links them. */
  bool timed;
  bool any; /* wait for any one child (weft_wait_any), not all */
  _Atomic uint32_t fired;      /* 0, or FIRED_BY_COMPLETION / FIRED_BY_TIMER */
  _Atomic uint32_t timer_done; /* the timer callback is finished with us */
  /* The waiter nodes linked for this join (a task's wait record, read by destroy to take a
   * discarded task's nodes out of the words of what it awaited). */
  struct weft__waiter *nodes;
  size_t nnodes;
  /* A wait published somewhere else than in completion words (lib/io.c's fd park): how
   * destroy takes a discarded task out of it (NULL: nodes only). */
  void (*abandon)(struct weft_task *t, void *ctx);
  void *abandon_ctx;
  /* A task's wait record (weft_task.wait points here while it waits): fire a join-wait
   * marker, or for a timed wait the timer callback with deadline_ns armed; ctx the join. */
  weft__timer_entry_t timer;
} weft__join_t;

/* Where a future's resolver leaves the value for one awaiter, in that awaiter's frame. */
typedef struct weft__delivery {
  void *value;
  bool set; /* the resolver wrote value (else the future was resolved before the wait) */
} weft__delivery_t;

typedef struct weft__waiter {
  struct weft__waiter *next;
  weft__join_t *join;
  _Atomic uintptr_t *word; /* the completion word this node is linked into */
  /* A future's awaiter (weft__await_word_delivered; unset in every other node): the resolver
   * writes the value here before it wakes anyone, so that a woken awaiter never reads the
   * future again — its owner may destroy it as soon as its own await returns (review, session
   * 30: the others, woken and not yet run, read the freed future's value). */
  weft__delivery_t *delivery;
} weft__waiter_t;

/* A completion word (task or future): the waiter list in the upper bits, and
 *   DONE     — the value is set; no waiter may be added any more;
 *   RELEASED — (tasks only) the handle is released: whoever sees DONE|RELEASED last frees it;
 *   BUSY     — the list's nodes are held for a moment: delivered (with DONE) or one unlinked.
 * One word, so that a task's completion is a single CAS. Waiter nodes are 8-aligned. The
 * protocol is join_impl.h's. */
#define WEFT__DONE ((uintptr_t)1)
#define WEFT__RELEASED ((uintptr_t)2)
#define WEFT__BUSY ((uintptr_t)4)
#define WEFT__WORD_FLAGS ((uintptr_t)7)


/* Post-switch actions: what the scheduler does for a task after the task's stack is saved
 * (so that no other worker can resume it while it is still running there). */
typedef enum {
  WEFT__AFTER_NOTHING = 0,
  WEFT__AFTER_FINISHED, /* the task ended on its own stack: recycle the stack */
  WEFT__AFTER_YIELD,    /* requeue behind the other ready tasks */
  WEFT__AFTER_PARK,       /* commit the task's park: if an event came first, it is ready again */
  WEFT__AFTER_PARK_TIMED, /* arm the task's timer (its deadline), then commit the park */
  WEFT__AFTER_PARK_UNLOCK, /* #11: commit the park, then release the waiter queue's spinlock
                            * (w->after_lock) that the task held across its switch */
  WEFT__AFTER_CHILD_FIRST, /* a spawn onto a deep deque (lib/task.c, "Child first"): requeue
                            * the spawner as the deque's newest entry, then start its child
                            * (w->eager) before anything else */
} weft__after_t;

/* A descriptor: 64 bytes, one cache line (#13: 10^6 queued tasks cost 128 B each, plus a
 * 32-byte diagnostics area, when it held its timer entry and runtime). What left the line:
 *  - the runtime: the first word of the descriptor's slab (weft__task_rt), read-shared by the
 *    slab's descriptors and written once;
 *  - the timer entry: it lives in the wait that arms it, on the waiting task's stack (a join,
 *    lib/join.c), and the descriptor holds a pointer to it (`wait`) while the task waits. The
 *    wait clears it only after the timer callback's last touch (join.timer_done);
 *  - fn and arg share their bytes with runs_on and wait: the first two are read once, at the
 *    start, which sets the other two (`started` says which pair is there).
 * Rejected: the timer entry in the diagnostics area (48 more bytes a task, for sleeps only) and
 * an allocation per timed wait (a malloc on every sleep). */
struct weft_task {
  _Atomic uintptr_t word; /* waiters | DONE | RELEASED */
  /* Once DONE: the result (weft__task_result). While the task lives: the detail of its last
   * wait, for a dump (weft__wait_reason). One field because the two never coexist and the
   * descriptor has no other 8 bytes to spare (#14: the dump's bytes beside the hot fields).
   * Atomic (relaxed) only because a dump reads the detail from another thread; the completion
   * word's release/acquire orders the result. */
  _Atomic uintptr_t result_or_detail;
  union {
    struct { /* until the start (weft__task_start, an inline run) reads them */
      weft_fn fn;
      void *arg;
    };
    struct { /* from the start on */
      weft__stack_t *runs_on; /* the stack whose top holds this task's frames */
      /* Its wait record while it waits, else NULL: a timer entry on its stack whose fire
       * says the kind (lib/join.c's joins, lib/sync.c's direct wait) and whose ctx is the
       * wait; destroy takes a discarded task out of its wait through it, and the scheduler
       * arms it after a timed wait's switch (WEFT__AFTER_PARK_TIMED). Owner-only. */
      weft__timer_entry_t *wait;
    };
  };
  int error; /* 0, the task's own error (weft_fail), WEFT_ECANCELED, WEFT_ENOMEM, ... */
  _Atomic uint32_t state; /* park phase, waking event, cancel bits, shield depth: wake_impl.h */
  struct weft_task *next; /* free list, inject queue (a task is in at most one queue) */
  /* The dump's view (#14), here and not in the diagnostics array so that the hot paths store
   * them with no address computation, in a line they touch anyway (the id's). Where a task
   * runs is not here: it is its worker's `current`. Written by whoever runs or suspends the
   * task (relaxed: the scheduler's hand-offs order successive writers), read by a dump from
   * any thread (relaxed: a racy snapshot, said so in its output). Three views of one aligned
   * word, so that each hot path updates what it needs with one plain store: a spawn all of it
   * (diag_word), an inline await state and reason (state_reason), a suspension its state, a
   * wait its reason. Mixed-size atomics on one word are what x86-64 and AArch64 do natively;
   * the layout is little-endian's (asserted below). */
  union {
    _Atomic uint64_t diag_word;
    _Atomic uint16_t state_reason;
    struct {
      _Atomic uint8_t diag_state;  /* see weft__task_waiting */
      _Atomic uint8_t wait_reason; /* WEFT__WAIT_* of the last wait (weft__wait_reason) */
      /* WEFT__STARTED once started: runs_on and wait hold the union's bytes, not fn and arg.
       * 0 from the spawn (the diag word's store), WEFT__STARTED from weft__task_start or an
       * inline run. Read by destroy (after the workers stopped). WEFT__SCOPED too once the
       * task has begun a deadline scope: only then is its diagnostics' `scope` valid (#13,
       * session 9: the spawn's diag-word store forgets a last life's scope, where a store of
       * NULL into the slab-side line cost every spawn 5 instructions and that line). */
      _Atomic uint8_t started;
      /* 1: an orphan (its runtime was destroyed with its handle held; lib/task.c's
       * orphan_held), which weft__task_free gives to its slab. An orphan is never reused, so
       * no spawn's store has to clear it after that. Read and written after the workers
       * stopped (destroy), or by the orphan's releaser, whom destroy's return orders. */
      uint8_t orphan;
      /* When it was spawned, for a dump's age: the spawning worker's last clock read
       * (weft__worker_t.born_word) in units of 2^20 ns (~1 ms), modulo 2^32 (ages up to 52
       * days come out right). */
      _Atomic uint32_t born;
    };
  };
  /* Atomic (relaxed where written) only because a dump reads it from another thread. */
  _Atomic uint64_t id;
} __attribute__((aligned(64)));
_Static_assert(sizeof(struct weft_task) == 64, "one cache line: the rarely used go beside it");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ &&
                   offsetof(struct weft_task, diag_word) % 8 == 0 &&
                   offsetof(struct weft_task, diag_state) == offsetof(struct weft_task, diag_word) &&
                   offsetof(struct weft_task, wait_reason) == offsetof(struct weft_task, diag_word) + 1 &&
                   offsetof(struct weft_task, born) == offsetof(struct weft_task, diag_word) + 4,
               "weft__task_born and weft__inline_begin store the diag fields as one word");

/* A descriptor's rarely used fields (they would grow it: +26 % time and +62 MB on 10^6 live
 * tasks in weft-bench spawn when it went to 192 bytes, bench/README.md). #13, session 15: they
 * are allocated per slab, on first use, as one array beside the slab (its header's `diag`), so
 * that a task nobody names, scopes or traces costs its 64-byte descriptor and nothing more
 * (they were a 32-byte area in every slab: 96 B a task, 341 descriptors a 32 KiB slab; now 511).
 * The first weft_task_set_name, weft_deadline_begin or traced spawn (WEFT_TRACE=sites) among a
 * slab's tasks maps it (16 KiB; a mapping, not malloc: lib/task.c says why); it stays with the
 * slab until the slab's pages go back (the scavenger: all its descriptors free; it frees under
 * rt->task_lock, under which the dump and the watchdog read names) or the runtime is destroyed
 * (an orphan's slab: with its last orphan). Rejected: a per-runtime table keyed by id (a
 * lookup and its lock on every set_name, and the overflow handler, a signal handler, reads
 * names lock-free); names in the descriptor (a second cache line a task). */
typedef struct weft__task_diag {
  /* weft_task_set_name's name, valid only while name_id is the task's id: a reused descriptor
   * needs no store at spawn to forget its last life's name. Relaxed both (a racy snapshot for
   * dumps; the owner's own reads are program-ordered). */
  _Atomic(const char *) name;
  _Atomic uint64_t name_id;
  /* The task's innermost deadline scope (weft_deadline_begin), on its own stack; owner only.
   * Valid only while the task's `started` has WEFT__SCOPED (weft__task_scope). */
  struct weft_deadline *scope;
  /* Where it was spawned (the spawning call's return address), written at every spawn of a
   * runtime with WEFT_TRACE=sites and read only there (relaxed: a dump's racy snapshot). */
  _Atomic(void *) site;
} weft__task_diag_t;
/* lib/task.c's slabs: their size and alignment, the header's size, descriptors per slab. */
#define WEFT__TASK_SLAB_BYTES (32 * 1024)
#define WEFT__TASK_SLAB_HEADER 64
#define WEFT__TASK_SLAB \
  ((WEFT__TASK_SLAB_BYTES - WEFT__TASK_SLAB_HEADER) / sizeof(struct weft_task))
/* The slab header's second word (lib/task.c's task_slab_t): its diagnostics array or NULL. */
#define WEFT__TASK_SLAB_DIAG_OFFSET 8

static inline uintptr_t weft__task_slab_of(const struct weft_task *t) {
  return (uintptr_t)t & ~(uintptr_t)(WEFT__TASK_SLAB_BYTES - 1);
}

/* t's diagnostics, or NULL if no task of its slab has needed any yet (nothing to read then:
 * no name, no scope, no site). acquire: pairs with weft__task_diag_make's publication, so the
 * array's zeroes and fields written before it are seen. Lock-free: the overflow handler (a
 * signal handler) reads names through it. */
static inline weft__task_diag_t *weft__task_diag(const struct weft_task *t) {
  uintptr_t slab = weft__task_slab_of(t);
  weft__task_diag_t *diag = atomic_load_explicit(
      (_Atomic(weft__task_diag_t *) *)(slab + WEFT__TASK_SLAB_DIAG_OFFSET), memory_order_acquire);
  if (!diag) return NULL;
  return diag + ((uintptr_t)t - slab - WEFT__TASK_SLAB_HEADER) / sizeof(struct weft_task);
}
/* lib/task.c: t's diagnostics, allocating its slab's array first if need be; NULL when memory
 * is exhausted. */
weft__task_diag_t *weft__task_diag_make(struct weft_task *t);
/* lib/task.c: diagnostics arrays mapped and not yet unmapped, in the process (for tests). */
long weft__task_diag_arrays(void);

/* A descriptor's runtime: the first word of its slab (lib/task.c's task_slab_t), written when
 * the slab joins the runtime's store and never again (an orphan's slab keeps it, dangling). */
static inline struct weft_runtime *weft__task_rt(const struct weft_task *t) {
  return *(struct weft_runtime *const *)weft__task_slab_of(t);
}


/* Why a task waits: recorded by the suspending call with weft__wait_reason(), one line per
 * suspension point. CHANNEL, LOCK, FD and CANCELLED are for the primitives other issues add;
 * lib/trace.c has each one's text. */
typedef enum {
  WEFT__WAIT_NONE = 0,
  WEFT__WAIT_TASK,      /* detail: the awaited task's id */
  WEFT__WAIT_FUTURE,    /* detail: the future's address */
  WEFT__WAIT_GATHER,    /* detail: how many tasks the gather waits for */
  WEFT__WAIT_SLEEP,     /* detail: the deadline (weft_now_ns) */
  WEFT__WAIT_CHANNEL,   /* detail: the channel's address */
  WEFT__WAIT_LOCK,      /* detail: the lock's address */
  WEFT__WAIT_FD,        /* detail: the file descriptor */
  WEFT__WAIT_CANCELLED, /* detail: how many (a cancelled task gathers, shielded: a group's) */
  WEFT__WAIT_FRAME,     /* detail: the frame's address (weft_sync of a stolen frame) */
  WEFT__WAIT_INLINE,    /* detail: the id of the task it runs inline on its stack (awaits) */
  WEFT__WAIT_KINDS
} weft__wait_t;

/* The dump's and watchdog's per-task stores (issue 14) are always on; WEFT_AB_NO_DIAG (a
 * compiler flag, never in a shipped build) compiles them out, only to measure what they cost
 * (bench/README.md, "always on"). */
#ifdef WEFT_AB_NO_DIAG
#define WEFT__DIAG 0
#else
#define WEFT__DIAG 1
#endif

/* Records why `self` is about to wait (nothing for a plain thread: self NULL). Relaxed: the
 * dump that reads it is a racy snapshot; the task's own later stores come after in program
 * order. The state becomes WAITING in weft__suspend, only if the task really suspends. */
static inline void weft__wait_reason(struct weft_task *self, weft__wait_t reason, uint64_t detail) {
  if (!WEFT__DIAG || !self) return;
  atomic_store_explicit(&self->result_or_detail, (uintptr_t)detail, memory_order_relaxed);
  atomic_store_explicit(&self->wait_reason, (uint8_t)reason, memory_order_relaxed);
}

/* A birth stamp's unit (see weft_task.born). */
#define WEFT__BORN_SHIFT 20

/* A spawn's whole diag_word at time now_ns: state NOTHING (not started, so queued), reason
 * NONE, born at now_ns (weft_task.born's units). */
static inline uint64_t weft__born_word(uint64_t now_ns) {
  return (uint64_t)(uint32_t)(now_ns >> WEFT__BORN_SHIFT) << 32;
}

/* weft_task.started's bits. */
#define WEFT__STARTED 1u
#define WEFT__SCOPED 2u
/* Started by weft_join's inline run (lib/join.c, join_inline), whose frame holds its handle: if
 * destroy discards it there, destroy releases that handle (lib/task.c, run_discard_hooks). Set
 * in the start's own store, so the hot path pays nothing for it. */
#define WEFT__JOINED 4u

/* Spawn's part: the id, and the diag fields (weft__born_word) in one 64-bit store, which also
 * says not started and no deadline scope (relaxed: the spawn edge publishes them to the task's
 * workers; a dump reads them racily). */
static inline void weft__task_born(struct weft_task *t, uint64_t id, uint64_t born_word) {
  atomic_store_explicit(&t->id, id, memory_order_relaxed);
  /* the `started` byte 0 even with the diagnostics compiled out */
  atomic_store_explicit(&t->diag_word, WEFT__DIAG ? born_word : 0, memory_order_relaxed);
}

/* The start's part (weft__task_start, an inline run): fn and arg are read; the union's bytes
 * become where it runs and no wait record. relaxed: read by destroy after the workers stop.
 * No scope yet: only the running task begins one. */
static inline void weft__task_started_as(struct weft_task *t, weft__stack_t *s, uint8_t bits) {
  t->runs_on = s;
  t->wait = NULL;
  atomic_store_explicit(&t->started, bits, memory_order_relaxed);
}
static inline void weft__task_started(struct weft_task *t, weft__stack_t *s) {
  weft__task_started_as(t, s, WEFT__STARTED);
}

/* A record (weft__discard_hook_t) for the running task self while its caller holds what fn
 * gives back; popped in reverse order of pushing, before the caller returns. */
static inline void weft__discard_hook_push(struct weft_task *self, weft__discard_hook_t *h,
                                           void (*fn)(void *ctx), void *ctx) {
  h->fn = fn;
  h->ctx = ctx;
  h->next = self->runs_on->on_discard;
  self->runs_on->on_discard = h;
}
static inline void weft__discard_hook_pop(struct weft_task *self, weft__discard_hook_t *h) {
  WEFT__ASSERT(self->runs_on->on_discard == h);
  self->runs_on->on_discard = h->next;
}

/* The task's innermost deadline scope, or NULL (read by the task itself: relaxed). */
static inline struct weft_deadline *weft__task_scope(struct weft_task *t) {
  /* SCOPED: the array exists (weft_deadline_begin made it) */
  return atomic_load_explicit(&t->started, memory_order_relaxed) & WEFT__SCOPED
             ? weft__task_diag(t)->scope
             : NULL;
}

/* weft__suspend's part: the suspension's `after` itself, one store with no branch (relaxed:
 * see diag_state). */
static inline void weft__task_state(struct weft_task *t, weft__after_t after) {
  if (WEFT__DIAG) atomic_store_explicit(&t->diag_state, (uint8_t)after, memory_order_relaxed);
}

/* A task's state for dumps: diag_state is the weft__after_t of its last suspension, NOTHING
 * from its spawn and from an inline await's start. YIELD or NOTHING: queued (or inline-awaiting
 * with the INLINE reason); PARK*: waiting (woken but not yet resumed too: the wake paths are
 * left alone); running is its worker's `current` (lib/trace.c). */
static inline bool weft__after_waits(uint8_t after) {
  return after == WEFT__AFTER_PARK || after == WEFT__AFTER_PARK_TIMED ||
         after == WEFT__AFTER_PARK_UNLOCK;
}
static inline bool weft__task_waiting(const struct weft_task *t) {
  return weft__after_waits(atomic_load_explicit(&t->diag_state, memory_order_relaxed));
}


/* A finished task's result (relaxed: the completion word's acquire, which the caller has
 * done, orders it). */
static inline void *weft__task_result(const struct weft_task *t) {
  return (void *)atomic_load_explicit(&t->result_or_detail, memory_order_relaxed);
}
/* A task's name (weft_task_set_name), NULL if none was set in this life (relaxed: see
 * weft__task_diag_t). */
static inline const char *weft__task_name(struct weft_task *t) {
  weft__task_diag_t *d = weft__task_diag(t);
  if (!d) return NULL;
  uint64_t id = atomic_load_explicit(&t->id, memory_order_relaxed);
  /* acquire: pairs with set_name's release of the id, so the name read is the one set with
   * it or a later one */
  if (atomic_load_explicit(&d->name_id, memory_order_acquire) != id) return NULL;
  /* acquire, then the id again: a name from a later life's set_name (which zeroes the id
   * before it stores the name, release) comes with that zero, so the check fails */
  const char *name = atomic_load_explicit(&d->name, memory_order_acquire);
  return atomic_load_explicit(&d->name_id, memory_order_relaxed) == id ? name : NULL;
}


/* lib/task.c: weft_runtime_spawn and weft_spawn with the spawn site to record
 * (WEFT_TRACE=sites) given: for the API calls that spawn (groups, weft_gather_calls, weft_run),
 * their caller's. */
int weft__spawn_at(struct weft_task **task, weft_fn fn, void *arg, void *site);
int weft__runtime_spawn_at(struct weft_runtime *rt, struct weft_task **task, weft_fn fn, void *arg,
                           void *site);
/* lib/task.c: starts a task from the scheduler loop on a stack from the worker's cache. */
void weft__task_start(struct weft__worker *w, struct weft_task *t);
/* lib/task.c: back to a free list (or, for an orphan, its slab's count). */
void weft__task_free(struct weft_runtime *rt, struct weft__worker *w, struct weft_task *t);
/* A free descriptor's word (lib/task.c): a release of a handle already released aborts, and
 * destroy tells free descriptors from live ones by it. */
#define WEFT__TASK_WORD_FREE (WEFT__DONE | WEFT__RELEASED)
/* A worker's free list beyond this spills its older half to the runtime (picked; lib/task.c). */
#define WEFT__TASK_CACHE_MAX 1024
/* Spilled free lists the runtime keeps as they came, for a worker to take back whole (picked:
 * 16 of them, ~512 descriptors each; lib/task.c). */
#define WEFT__TASK_BATCHES 16
/* weft__task_free's common case, inline (#13: weft_join's inline run): a worker w of t's
 * runtime puts t, which it ran, on its own free list; a full list goes the long way. */
static inline void weft__task_free_cached(struct weft__worker *w, struct weft_task *t);
/* lib/task.c: a descriptor about to be freed drops its name, under the lock dumps read names
 * under (the name's memory is its owner's once the handle is gone). */
void weft__task_forget_name(struct weft_runtime *rt, struct weft_task *t);
/* lib/task.c's "Threads' caches": a runtime enters the live list when made and leaves it
 * before its descriptors are freed (a thread's cache of them is then dropped, not returned). */
void weft__tasks_live_add(struct weft_runtime *rt);
void weft__tasks_live_remove(struct weft_runtime *rt);
/* lib/task.c: frees the descriptor store (the slabs orphans keep stay mapped). */
void weft__task_slabs_free(struct weft_runtime *rt);
/* lib/task.c: cancels every task that has not ended; returns how many have not. */
size_t weft__tasks_cancel_all(struct weft_runtime *rt);
/* lib/shutdown.c (lib/shutdown_impl.h's protocol): the shutdown's first step, before its
 * first walk; after each walk, whether it is done (two clean walks in a row); a spawn from
 * outside the workers, its descriptor filled and not yet published: whether to cancel it. */
void weft__shutdown_close(_Atomic int *closing);
bool weft__shutdown_walked(int *clean_run, size_t unfinished);
bool weft__shutdown_spawn_sees_closing(_Atomic int *closing);
/* ... and its count of callers from outside (lib/poll.c's socket calls): a caller's way in
 * (false: closing, it touches nothing more) and out; the shutdown's look, after close. */
bool weft__shutdown_enter(_Atomic long *inside, _Atomic int *closing);
void weft__shutdown_leave(_Atomic long *inside);
bool weft__shutdown_none_inside(_Atomic long *inside);
/* ... and the count of shutdowns running that destroy waits for (lib/runtime.c): a shutdown's
 * first step (counted, then closed); destroy's look at `closing`; whether destroy walks once
 * more after the shutdowns, given the last walk's unfinished count. */
void weft__shutdown_begin(_Atomic long *running, _Atomic int *closing);
bool weft__shutdown_begun(_Atomic int *closing);
bool weft__shutdown_walk_again(size_t unfinished);
/* lib/task.c: destroy's step for tasks, once the workers have stopped: see runtime.c's shutdown comment. */
void weft__tasks_discard(struct weft_runtime *rt);
/* lib/task.c: run by a worker about to park: hands its descriptor cache to the runtime and frees the slabs
 * whose descriptors are all free (at most one pass a second). Returns when it should run
 * again, UINT64_MAX if nothing new came back since its last pass. */
uint64_t weft__task_scavenge(struct weft_runtime *rt, struct weft__worker *w, uint64_t now_ns);
/* lib/task.c: for a worker that armed no descriptor pass and has announced its park: now + the
 * pass's quiet time if a plain thread's spill asked for one meanwhile, else UINT64_MAX. */
uint64_t weft__task_nudged_until(struct weft_runtime *rt, uint64_t now_ns);

/* lib/task.c: sets the result, completes the word and delivers to its waiters; frees the
 * descriptor if the handle is gone. */
void weft__task_complete(struct weft_task *t, void *result);
/* lib/task.c: each node's join gets its arrival (read `next` before: the node may die). */
void weft__wake_waiters(weft__waiter_t *node);
/* lib/task.c: a completion arrives at a join (timed joins race it against their timer). */
void weft__join_arrive(weft__join_t *j);
/* lib/task.c, for the scheduler after a task switched out to wait: PARKING → PARKED, or
 * schedules it if an event came first. */
void weft__park_commit(struct weft__worker *w, struct weft_task *t);
/* lib/task.c, for lib/join.c's waits: an event (WK_BY_*) for j's waiter; the first of a timed
 * thread wait's completion and timeout to claim it; j's nodes out of their words; a task's
 * wait record (destroy finds j from the task while it is suspended on j), begun and ended. */
void weft__join_event(weft__join_t *j, uint32_t side);
bool weft__join_claim_fired(weft__join_t *j, uint32_t side);
void weft__join_remove_nodes(weft__join_t *j);
void weft__wait_record_begin(struct weft_task *self, weft__join_t *j, bool timed);
void weft__wait_record_end(struct weft_task *self);
/* lib/join.c: sleeps the task until the deadline or a cancel: 0 or WEFT_ECANCELED. */
int weft__park_until(struct weft_task *self, uint64_t deadline_ns);
/* lib/join.c: WEFT_ETIMEDOUT if the task's deadline scope has passed, else 0. Inline: the
 * common answer (no scope) without a call — yield's hot path (issue 13). */
int weft__scope_check_slow(struct weft_task *self);
/* lib/sync.c: weft_waitgroup_add with the sentence its misuse aborts with. */
int weft__waitgroup_add_as(weft_waitgroup_t *g, long delta, const char *below_zero);
/* lib/join.c: the runtime's own shield level (join.c's "Shield levels"): begin_cleanup's is
 * ended by weft_shield_end (0, or WEFT_EPERM on a plain thread); hold/unhold's delivers
 * nothing at its end (a condition's relock). */
int weft__shield_begin_cleanup(void);
void weft__shield_hold(struct weft_task *self);
void weft__shield_unhold(struct weft_task *self);
static inline int weft__scope_check(struct weft_task *self) {
  return WEFT__LIKELY(!weft__task_scope(self)) ? 0 : weft__scope_check_slow(self);
}
/* lib/task.c: a suspension point that does not park (yield, a task's start): true if a
 * cancel is pending, which it counts as delivered. Inline: the common answer (no request)
 * without a call; the bit is wake_impl.h's WK_CANCEL_REQUESTED (task.c asserts it). */
#define WEFT__CANCEL_REQUESTED (1u << 4)
bool weft__checkpoint_slow(struct weft_task *self);
/* lib/join.c: what a suspension point of self returns when it delivers a cancel:
 * WEFT_ECANCELED; or, once its runtime's destroy is past the shutdown's bound, nothing: the
 * task parks for good there, to be discarded (a task that ignored WEFT_ECANCELED in a loop of
 * suspension points never switched out, and destroy waited for its worker for ever). */
int weft__cancelled(struct weft_task *self);
/* A call that has undone its wait (a socket operation, its count given back) and answers
 * err: a cancel's answer goes through weft__cancelled when a task calls (lib/join.c). */
ptrdiff_t weft__cancelled_answer_slow(void);
static inline ptrdiff_t weft__answer(ptrdiff_t err) {
  return WEFT__UNLIKELY(err == WEFT_ECANCELED) ? weft__cancelled_answer_slow() : err;
}
/* lib/future.c: weft_future_await that answers WEFT_ECANCELED in every case (weft_offload
 * gives its job up before it goes on). */
int weft__future_await_cancellable(weft_future_t *f, void **value);
static inline bool weft__checkpoint(struct weft_task *self) {
  /* acquire, as wake_checkpoint's: the canceller's writes come with its request */
  if (WEFT__LIKELY(!(atomic_load_explicit(&self->state, memory_order_acquire) &
                     WEFT__CANCEL_REQUESTED)))
    return false;
  return weft__checkpoint_slow(self);
}
/* lib/join.c: weft_gather_status without inline runs (task groups): 0, WEFT_ECANCELED or
 * WEFT_ETIMEDOUT (the caller's deadline scope). */
int weft__gather_apart(weft_task_t *const *tasks, size_t n);
/* lib/join.c: the error the current task would end with if it returned now (0 outside tasks). */
int weft__current_error(void);
/* lib/join.c: awaits t with cancellation held back (cleanup that must see t end). */
int weft__await_shielded(weft_task_t *t);
/* lib/task.c, for destroy's discard records (weft__discard_hook_t): releases a handle that a
 * discarded task held, unless its task is unfinished and awaited from outside (a thread, another
 * runtime's task): that one stays held, so that destroy completes it with WEFT_ESHUTDOWN
 * instead of unmapping it under its awaiters (review, session 23); its slab then stays mapped,
 * a leak where the other way would be a fault. */
void weft__task_release_discarded(weft_task_t *t);
/* lib/task.c, for destroy: takes a suspended task's waiter nodes (its wait record's) out of
 * the words they are linked into, waiting out a deliverer that holds one (BUSY); a wait record
 * of another file (its fire neither of task.c's: lib/sync.c's direct wait) is abandoned by
 * calling its fire, which such a record never uses as a timer. */
void weft__wait_abandon(struct weft_task *t);
/* lib/join.c: waits until a completion word is DONE, the deadline passes (UINT64_MAX: none)
 * or, for a task, a cancel arrives: 0, WEFT_ETIMEDOUT or WEFT_ECANCELED (self NULL: a plain
 * thread blocks, and is not cancellable). */
int weft__await_word_until(struct weft_task *self, _Atomic uintptr_t *word, uint64_t deadline_ns);
/* The same for a future's awaiter: a wake delivers the value into *delivery (set true); a word
 * already DONE leaves it unset (read the future then: it was resolved before we came). */
int weft__await_word_delivered(struct weft_task *self, _Atomic uintptr_t *word,
                               uint64_t deadline_ns, weft__delivery_t *delivery);
/* The same for a wait whose word a peer completes after taking the caller's node out of a
 * queue of its own (lib/sync.c's waiter queues, a channel select): abandon(t, ctx) is how
 * destroy takes a discarded task's nodes out of those queues (weft__wait_abandon). */
int weft__await_word_abandonable(struct weft_task *self, _Atomic uintptr_t *word,
                                 uint64_t deadline_ns,
                                 void (*abandon)(struct weft_task *t, void *ctx), void *ctx);
/* lib/join.c: a task waits until the word is DONE, cancels held back and deadline scopes not
 * consulted (the waited-for writes into its stack); a cancel stays pending. */
void weft__await_word_to_end(struct weft_task *self, _Atomic uintptr_t *word);
/* lib/future.c: the running task waits for f that way (lib/offload.c: a started call). */
void weft__future_await_to_end(weft_future_t *f);
/* lib/io.c's fd park (fdpark_impl.h): the task is PARKING (wake_park_begin) and published where
 * its deliverer finds it; suspends until the first event: 0 (the deliverer's wake),
 * WEFT_ETIMEDOUT or WEFT_ECANCELED. deadline_ns is already bounded (weft__wait_deadline);
 * abandon(t, ctx) is destroy's way to take a discarded task out of where it is published. */
int weft__park_published(struct weft_task *self, uint64_t deadline_ns,
                         void (*abandon)(struct weft_task *t, void *ctx), void *ctx);
/* A wait's deadline bounded by the task's innermost deadline scope (self may be NULL). */
uint64_t weft__wait_deadline(struct weft_task *self, uint64_t deadline_ns);
/* lib/join.c: the task running on this thread; NULL on a thread that is not a worker; aborts,
 * naming `what` (the function the user called), on a worker thread outside any task. */
struct weft_task *weft__awaiting_task(struct weft__worker *w, const char *what);

/* ---- Workers (lib/worker.c) ----------------------------------------------------------------- */


/* ---- Fork-join frames (lib/frame.c; the split deque's protocol is lib/frame_impl.h) --------- */

/* A worker's split deque of frames: slots [tail, split) are shared with thieves, [split, head)
 * are the owner's alone. head and osplit (the owner's copy of split) are owner-only; ts
 * (tail | split << 13 | gen << 26: frame_impl.h) and splitreq are the thieves' line. */
/* WEFT__FRAMES_CAP (weft.h, 4096, picked): nesting deeper than this runs forks as calls. */
typedef struct weft__frames {
  uint32_t head, osplit;
  _Atomic(void *) *slot; /* WEFT__FRAMES_CAP slots */
  _Atomic uint64_t ts WEFT__ALIGNED;
  _Atomic uint32_t splitreq;
} weft__frames_t;

/* The frame behind a weft_frame_t, on the forking task's stack. */
typedef struct weft__frame {
  _Atomic uintptr_t word; /* completion word of a frame run elsewhere (join_impl.h) */
  weft_fn fn;
  void *arg;
  void *result;
  uint32_t where; /* owner-only: lib/frame.c's FRAME_* */
  uint32_t unrun; /* set by whoever took it and could not run it: the owner runs it at sync */
} weft__frame_t;
/* Yielded entries a worker takes from its own yield queue at once (lib/worker.c). */
#define WEFT__YRING 32
/* Spawns a worker keeps to itself before it pushes them all onto its deque (see below). */
#define WEFT__PRIV_CAP 64

typedef struct weft__worker {
  /* Hot, owner-only. */
  struct weft_runtime *rt;
  /* The task whose slice this worker runs, or the one it runs inline; NULL in its scheduler
   * loop. Only the owner writes it, always atomically (weft__set_current), because the
   * watchdog and the dump (lib/trace.c) read current_pub from their threads; the owner reads
   * its own stores plainly (weft__current: no race, and the compiler may fold the read into a
   * compare, which an atomic load prevents: +1 instruction per suspension and per wake). */
  union {
    struct weft_task *current;
    _Atomic(struct weft_task *) current_pub;
  };
  weft__ctx_t sched; /* the scheduler loop's context on the thread's own stack */
  weft__after_t after;
  void *after_arg;
  weft__stack_t *after_stack;
  /* Look-for-work count: the fairness tick (lib/worker.c) and, because it moves once a slice,
   * the watchdog's slice count (lib/trace.c). Owner-written (relaxed: a sample for the
   * watchdog). */
  _Atomic uint32_t tick;
  uint32_t rng;
  uint64_t id_next, id_end; /* this worker's block of task ids */
  int index;
  uint32_t stole_at; /* its last steal's tick + 1 + batch, 0 before one (worker.c); here, in
                      * index's padding, so that no hot field moves */
  struct weft_task *free_tasks;
  size_t free_task_count;
  weft__stack_cache_t stacks;
  void *altstack;
  /* #13, session 10: the newest spawns, kept from thieves until one asks (lib/worker.c's
   * "Private spawns"), oldest first: a spawn writes a slot, the join of the newest takes it
   * back, no atomic instruction and no fence (a Chase–Lev take's store→load fence was ~30 % of
   * fib's time). Owner-only; the count is atomic (relaxed) only because metrics read it. */
  _Atomic uint32_t npriv;
  /* Owner-only: how many spawns the fast path keeps private before it asks spawn_place —
   * WEFT__PRIV_CAP, or 1 (every spawn asks) while this worker's deque is deep (lib/task.c,
   * "Child first"). In npriv's padding, so that no field moves. */
  uint32_t priv_limit;
  uintptr_t priv[WEFT__PRIV_CAP];
  /* Shared: thieves touch these. */
  weft__deque_t deque;   /* spawned and woken tasks: owner LIFO, thieves FIFO */
  weft__deque_t yieldq;  /* yielded tasks: everyone takes the oldest (FIFO) */
  weft__frames_t frames; /* forked frames of the task running here (lib/frame.c) */
  _Atomic uint32_t park_word WEFT__ALIGNED; /* futex: 0 sleeping, 1 woken */
  struct weft__worker *next_idle;
  bool idle_listed;
  bool joined; /* destroy's timed join took it (lib/runtime.c's join_workers) */
  pthread_t thread;
  /* Statistics: owner writes, readers tolerate tearing-free relaxed reads. */
  _Atomic uint64_t n_spawned, n_inlined, n_stolen, n_parks, n_unrun;
  /* Metrics (lib/metrics.c), owner-written the same way: tasks started (with a stack, or
   * ended by a cancel before it; never an unrun one), tasks that ended on their own stack, victims probed, futex sleeps that a
   * waker ended, timer callbacks fired, injected entries taken, nanoseconds parked. */
  _Atomic uint64_t n_started, n_finished, n_steal_tries, n_unparks, n_fired, n_injected,
      idle_ns;
  /* The park in progress, for the metrics' idle and busy times (a park's span was added to
   * idle_ns only at its end: busy_ns grew through a park and fell back after it). A seqlock,
   * owner-written: park_seq is odd while the owner updates parked_since (when the park began,
   * 0 when not parked) and idle_ns; a reader retries across an odd or moved park_seq. */
  _Atomic uint64_t park_seq, parked_since;
  /* Yields are not counted on their path (3 of a yield's ~225 instructions): the yield queue
   * has no owner takes, so its bottom index counts every push, and yields = bottom - this, the
   * entries it received that were not yields (injected and fd batches, added before they are
   * pushed) less the yields that spilled to the inject queue. Owner-written like the others;
   * lib/metrics.c reads the pair and keeps the counter monotonic (yields_reported). */
  _Atomic uint64_t n_yieldq_extra;
  _Atomic uint64_t yields_reported; /* the most any snapshot reported (readers only) */
  uint64_t start_ns; /* written before the thread starts */
  /* Spawn times for dumps without a clock read per spawn (6 ns each here: +12 % on fib 35):
   * the clock as the worker last read it — at the fairness tick, whenever it looks for work,
   * and at each new block of 1 024 task ids. Owner-only. */
  uint64_t born_word; /* that read as a spawn's diag_word (weft__worker_clock) */
  uint64_t chaos; /* chaos mode's PRNG state (xorshift64), 0: off. Owner-only. */
  /* weft_spawn's slow path is needed: chaos mode, or WEFT_TRACE=sites (one test on the fast
   * path for both). Set before the thread starts. */
  bool spawn_hooks;
  /* #13: the owner's private run of yielded entries, oldest first: taken from its yield queue
   * in batches (one CAS a batch instead of one per yield; lib/worker.c, take_own_yielded).
   * Owner-written; the count is atomic (relaxed) only because metrics read it. */
  uint32_t yring_next;
  _Atomic uint32_t yring_left;
  uintptr_t yring[WEFT__YRING];
  /* #11: the next slot (lib/worker.c, protocol lib/next_impl.h): the task that the task running
   * here woke last, run next (Go's runnext). Filled by the owner only; emptied by the owner or,
   * once it has sat there NEXT_STEAL_NS, by a thief. On its own line: thieves read it. */
  _Atomic uintptr_t next WEFT__ALIGNED;
  uint32_t next_streak;   /* owner: slot picks in a row (NEXT_BURST bounds them) */
  _Atomic uint32_t next_puts; /* owner-written (relaxed) puts: the slot word's ABA guard
                               * (mod 2^16) and spinners' sign of a slot in use */
  uintptr_t next_seen;    /* as a thief: a victim's slot word at first sight ... */
  uint64_t next_seen_ns;  /* ... and when (weft_now_ns) */
  uint32_t next_sum;      /* as a spinner: every worker's next_puts, summed at its last look */
  _Atomic uint32_t *after_lock; /* WEFT__AFTER_PARK_UNLOCK's spinlock word (lib/waitq.h) */
  /* Spawn throttling (lib/task.c, "Child first"), off the hot lines: */
  uint32_t throttle_depth; /* the runtime's spawn_throttle (0: off) */
  uintptr_t eager;         /* owner: the child a spawn runs first (WEFT__AFTER_CHILD_FIRST) */
  /* Spawners a child-first spawn here suspended and that have not resumed yet: held (owner:
   * up at the spawn, down when the spawner resumes here) less held_out_elsewhere (spawners
   * another worker resumed; relaxed RMW: any thread). An overestimate while a remote release
   * is on its way, which only throttles less. */
  uint64_t held;
  _Atomic uint64_t held_out_elsewhere;
  _Atomic uint64_t n_run_first; /* metrics' tasks_run_first: owner-written, as the counters */
} weft__worker_t;

/* The task running on w (the owner's read of its own store: see current). */
static inline struct weft_task *weft__current(const weft__worker_t *w) { return w->current; }
/* The task running on this thread's worker w, or NULL (w NULL: a plain thread; or w's
 * scheduler loop). */
static inline struct weft_task *weft__running_task(const weft__worker_t *w) {
  return w ? weft__current(w) : NULL;
}
/* t runs on w from now on (release: pairs with the watchdog's and the dump's acquire, so that
 * what made t's descriptor, its slab's mapping and its spawn, happens before they read its id
 * and name; a plain store on x86-64). */
static inline void weft__set_current(weft__worker_t *w, struct weft_task *t) {
  atomic_store_explicit(&w->current_pub, t, memory_order_release);
}


/* An awaiter runs t inline on its own stack: t runs, and the awaiter waits for it (if t
 * suspends, the dump shows both: t with its reason, the awaiter awaiting t). fib's hot path:
 * one 16-bit store of the awaiter's state and reason (NOTHING, INLINE) and one of the detail,
 * t's id (relaxed: see diag_word; an id, not t's address, because a dump that reads the detail
 * just after the awaiter ended would find its result there instead); t becomes the worker's `current` in run_inline anyway,
 * where the dump finds it running. Nothing is cleared when the inline run ends: the awaiter is
 * its worker's `current` again, which the dump checks first, and its next suspension changes
 * its state (a reason is believed only with state NOTHING, lib/trace.c). */
static inline void weft__inline_begin(struct weft_task *awaiter, struct weft_task *t) {
  if (!WEFT__DIAG) return;
  atomic_store_explicit(&awaiter->result_or_detail,
                        (uintptr_t)atomic_load_explicit(&t->id, memory_order_relaxed),
                        memory_order_relaxed);
  atomic_store_explicit(&awaiter->state_reason,
                        (uint16_t)(WEFT__AFTER_NOTHING | (WEFT__WAIT_INLINE << 8)),
                        memory_order_relaxed);
}

/* A #14 metric's bump: weft__stat_bump, compiled out with the rest of the always-on
 * diagnostics by WEFT_AB_NO_DIAG (only to measure what they cost). */
#define weft__metric_bump(counter)          \
  do {                                      \
    if (WEFT__DIAG) weft__stat_bump(counter); \
  } while (0)


/* The worker read the clock: its spawns from now on are born at now_ns. */
static inline void weft__worker_clock(weft__worker_t *w, uint64_t now_ns) {
  w->born_word = weft__born_word(now_ns);
}

/* Owner-written statistic: a plain add (delta may be negative: n_yieldq_extra) made of relaxed atomics, so weft_runtime_stats
 * may read it from another thread (no locked instruction on the hot path). */
static inline void weft__stat_add(_Atomic uint64_t *counter, int64_t delta) {
  atomic_store_explicit(counter,
                        atomic_load_explicit(counter, memory_order_relaxed) + (uint64_t)delta,
                        memory_order_relaxed);
}
static inline void weft__stat_bump(_Atomic uint64_t *counter) { weft__stat_add(counter, 1); }

/* A freed descriptor t (poisoned already, not an orphan) onto the free list of w, a worker of
 * its runtime: both frees' common step. Returns the list's new length. */
static inline size_t weft__task_cache_put(weft__worker_t *w, struct weft_task *t) {
  t->next = w->free_tasks;
  w->free_tasks = t;
  return ++w->free_task_count;
}

static inline void weft__task_free_cached(weft__worker_t *w, struct weft_task *t) {
  /* >= here, > in weft__task_free: a list that is full already goes the long way, which puts
   * t on it and then spills (the same as weft__task_free called directly). No orphan check: t
   * ran on w, a worker of its runtime, which is not destroyed (destroy makes orphans after the
   * workers stopped). */
  if (WEFT__UNLIKELY(w->free_task_count >= WEFT__TASK_CACHE_MAX)) {
    weft__task_free(w->rt, w, t);
    return;
  }
  /* relaxed: as weft__task_free's poison — nobody else may touch a freed descriptor */
  atomic_store_explicit(&t->word, WEFT__TASK_WORD_FREE, memory_order_relaxed);
  weft__task_cache_put(w, t);
}

/* The worker of the calling thread, or NULL. A task can resume on another thread, and a
 * compiler that cached the TLS address across the switch would read the old worker's variable
 * (seen with gcc 12 in the team's field notes, which live outside this repository): on x86-64
 * an asm volatile read (lib/arch/tls_x86_64_sysv.h), elsewhere a noinline getter with a
 * compiler barrier. */
#if defined(__x86_64__) && defined(__LP64__) && defined(__ELF__)
#include "arch/tls_x86_64_sysv.h"
#endif
#ifdef WEFT__TLS_WORKER_INLINE
static inline weft__worker_t *weft__worker_self(void) { return weft__tls_worker_read(); }
#else
weft__worker_t *weft__worker_self(void) __attribute__((noinline));
#endif
void weft__worker_set_self(weft__worker_t *w);
extern __thread weft__frames_t *weft__tls_frames; /* lib/worker.c: weft.h reads it */

void weft__worker_main_loop(weft__worker_t *w);
/* Chaos mode (lib/worker.c): self (the running task, or NULL) yields with probability 1/2 when
 * its runtime has a chaos seed; nothing otherwise. Called after spawns (weft__suspend has its
 * own). The caller must not use a worker pointer it read before: the task may move. */
void weft__chaos_point(struct weft_task *self);
/* A worker counts as spinning from before its thread starts (+1), until its first look for work
 * takes the count over; -1 if its thread did not start, or (the main loop's) if it stopped
 * before its first look (lib/worker.c). */
void weft__worker_count_fresh(struct weft_runtime *rt, int delta);
/* Make a task runnable (start or resume entry): local deque if on a worker, else the inject
 * queue; wakes a parked worker if no one is looking for work. */
void weft__schedule(struct weft_runtime *rt, uintptr_t entry);
/* The same, known to run on worker w of the task's runtime (spawn's fast path). Returns 0,
 * so that a spawn ends in a tail call to it. */
int weft__schedule_local(weft__worker_t *w, uintptr_t entry);
/* The same for a push made because some worker was seen idle: the wake check after any push. */
int weft__schedule_local_announced(weft__worker_t *w, uintptr_t entry);
/* Private spawns (#13, session 10; lib/worker.c): weft__priv_share pushes every private spawn
 * of w onto its deque, oldest first, and answers a thief's ask (the frames' splitreq, which
 * it clears) for frames too: called on an ask or an idle worker at a spawn, a fork or a
 * gather's inline step, when the private run is full, at a join out of LIFO order, and when
 * the scheduler loop picks a task while spawns are kept. Returns 0. */
int weft__priv_share(weft__worker_t *w);
/* A spawn that runs its child first (lib/task.c, "Child first"): the running task is requeued
 * as w's newest deque entry and child starts at once; returns 0 once the spawner runs again. */
int weft__spawn_child_first(weft__worker_t *w, struct weft_task *child);
/* Spawners suspended by child-first spawns on w that have not resumed yet (owner only). */
uint64_t weft__spawners_held(weft__worker_t *w);
/* The newest private spawn, taken back; 0 if there is none. Owner only. */
static inline uintptr_t weft__priv_pop(weft__worker_t *w) {
  uint32_t n = atomic_load_explicit(&w->npriv, memory_order_relaxed); /* relaxed: our own */
  if (!n) return 0;
  atomic_store_explicit(&w->npriv, n - 1, memory_order_relaxed); /* relaxed: metrics' hint */
  return w->priv[n - 1];
}
/* Takes t back if it is w's newest private spawn (a join's inline run); false if it is not
 * (shared since, or never private). Owner only. */
static inline bool weft__priv_take_if(weft__worker_t *w, struct weft_task *t) {
  uint32_t n = atomic_load_explicit(&w->npriv, memory_order_relaxed); /* relaxed: our own */
  if (!n || w->priv[n - 1] != (uintptr_t)t) return false;
  atomic_store_explicit(&w->npriv, n - 1, memory_order_relaxed); /* relaxed: metrics' hint */
  return true;
}
/* #11: a resume entry woken by the task running on w, into w's next slot (lib/worker.c); the
 * deque where the slot does not apply (chaos mode, no task running). */
void weft__schedule_next(weft__worker_t *w, uintptr_t entry);
/* Switch from the running task to the scheduler, which then performs `after`. */
void weft__suspend(weft__worker_t *w, weft__after_t after, void *arg);
void weft__wake_one_if_needed(struct weft_runtime *rt);
/* Linked through the tasks themselves: no allocation per foreign spawn or wake, no lock. Wakes
 * a parked worker if needed, before its last touch of the queue (see the function). */
void weft__inject_push(struct weft_runtime *rt, uintptr_t entry);

/* lib/frame.c: the worker's frame deque, made and freed with the worker. */
int weft__frames_init(weft__frames_t *d);
void weft__frames_fini(weft__frames_t *d);
/* lib/task.c: a frame's runner task (its fn), and its end when it could not start. */
void *weft__frame_run(void *frame);
void weft__frame_unrun(weft__frame_t *f);
/* lib/task.c: hook(arg) is called, on the worker, for a task whose function is fn that ends
 * without running it (cancelled before it started, no stack at its start). lib/group.c's. */
void weft__task_unrun_hook(weft_fn fn, void (*hook)(void *arg));
/* lib/task.c: for a task that ends without running (the frame's or the hook's business). */
void weft__task_unrun(struct weft_task *t);
/* lib/task.c: a detached task made but not scheduled (a frame's runner); NULL if no
 * descriptor could be had. */
struct weft_task *weft__task_make(struct weft_runtime *rt, weft__worker_t *w, weft_fn fn,
                                  void *arg);
/* ---- Inject queue (lib/inject_impl.h, instantiated in lib/worker.c) -------------------------- */

typedef struct weft__inject {
  _Atomic uintptr_t in WEFT__ALIGNED; /* producers' end: the newest entry, or &stub */
  _Atomic long len; /* entries pushed and not yet taken (a hint: fair shares, metrics) */
  _Atomic uintptr_t out WEFT__ALIGNED; /* consumers' end: the oldest entry, or &stub */
  _Atomic uintptr_t taking;           /* the consumers' try-lock */
  struct weft_task stub;              /* never run: only its link is used */
} weft__inject_t;
/* Before the workers start. */
void weft__inject_init(struct weft_runtime *rt);
/* Destroy, after the workers stopped: returns once no outside thread is inside a push. */
void weft__inject_quiesce(struct weft_runtime *rt);

/* ---- Runtime (lib/runtime.c) ---------------------------------------------------------------- */

struct weft_runtime {
  int nworkers;
  weft__worker_t *workers;
  struct weft__stack_pool *stacks;
  struct weft__timer *timer;
  _Atomic int stopping;
  _Atomic int closing;  /* shutdown began: spawns refused, tasks being cancelled */
  _Atomic int discarding; /* destroy is past the shutdown: cancelled tasks park for good */
  _Atomic uint64_t abandoned; /* tasks the shutdown's bound left unfinished */
  _Atomic long shutdowns_running; /* weft_runtime_shutdown calls not yet returned (destroy waits) */
  uint64_t shutdown_ns; /* destroy's bound on the shutdown (option) */
  _Atomic int nspinning WEFT__ALIGNED; /* workers looking for work, Go's rule */
  _Atomic int nidle;                  /* workers parked (on the idle list) */
  pthread_mutex_t idle_lock WEFT__ALIGNED;
  weft__worker_t *idle_list;
  /* Descriptor slabs and the shared overflow free list. */
  pthread_mutex_t task_lock WEFT__ALIGNED;
  struct weft_task *free_tasks;
  size_t free_task_total; /* descriptors in free_tasks and in the batches */
  /* Workers' spilled free lists, each kept as it came (lib/task.c's "Batches"). */
  struct weft__task_batch {
    struct weft_task *head;
    size_t n;
  } free_batches[WEFT__TASK_BATCHES];
  int nfree_batches;
  struct weft__task_store *task_store; /* descriptor slabs and their mappings (lib/task.c) */
  /* lib/task.c's "Threads' caches": this runtime's number among all runtimes ever made (never
   * reused), and its link in the list of live ones; both under task.c's live_lock. */
  uint64_t gen;
  struct weft_runtime *live_next;
  struct weft__thread_cache *thread_caches; /* threads' caches of our descriptors (task_lock) */
  /* The descriptor scavenger's state (task.c), under task_lock like the list. */
  bool task_scavenging;
  size_t task_scavenged_total; /* free_task_total as the last pass looked at it */
  /* Descriptors put into the store, ever, plus one for each plain thread's ask and each cache
   * a pass left in use (task.c): a count that only grows, so that as many taken as given back
   * between two passes still reads as movement. */
  size_t task_returns;
  size_t task_scavenged_returns; /* task_returns as the last pass looked at it */
  size_t task_seen_total;        /* free_task_total and task_returns as a scavenger last ... */
  size_t task_seen_returns;
  uint64_t task_seen_at; /* ... saw them, and since when (weft_now_ns): a pass waits for quiet */
  /* A descriptor pass is armed by a park, or asked for by a plain thread's spill or its first
   * free since its cache was last taken (task.c's ask_for_a_pass): such an ask wakes a parked
   * worker only when it was clear. */
  _Atomic bool task_scavenge_nudged;
  _Atomic uint64_t foreign_spawns; /* spawns from threads that are not workers */
  _Atomic uint64_t next_task_id;   /* the next block of ids: 1 at creation */
  uint64_t created_ns;
  struct weft__trace *trace; /* the monitor thread, NULL when no tracing is on (lib/trace.c) */
  uint64_t chaos_seed;       /* 0: off (lib/worker.c, chaos mode) */
  uint32_t spawn_throttle;   /* weft_options_t's: 0 off (lib/task.c, "Child first") */
  bool spawn_sites;          /* WEFT_TRACE=sites: every spawn records its site (lib/task.c) */
  /* Inject queue (#13): spawns and wake-ups from threads that are not workers (FIFO), a
   * lock-free MPSC list linked through task->next (lib/inject_impl.h, used by lib/worker.c). */
  weft__inject_t inject;
  /* What outlives the runtime for task groups (lib/runtime.c): made at the first group. */
  _Atomic(struct weft__rt_anchor *) anchor;
  /* I/O (lib/poll.c, lib/offload.c): created on first use, freed by destroy (NULL until);
   * the poller WEFT__POLLER_CLOSED once destroy found none (none is made after that). */
  _Atomic(struct weft__poller *) poller;
  const struct weft__poll_hooks *poll_hooks; /* set before the workers start */
  _Atomic(struct weft__offload *) offload;
  int blocking_threads;            /* weft_options_t's, resolved (lib/offload.c) */
  uint64_t blocking_keepalive_ns;
  /* #11: workers parked as the next slots' watcher (0 or 1; lib/worker.c) */
  _Atomic int nwatching WEFT__ALIGNED;
  /* #13: the deques' reclamation domain, one reader per worker (steal rounds; lib/deque.c) */
  weft__epoch_t epoch;
};

/* What a runtime leaves behind for the objects that name it and may outlive it (task groups,
 * lib/group.c): whether it is gone. Counted: the runtime holds a reference, each holder one;
 * the last release frees it. hold: NULL when out of memory. gone: true once destroy has freed
 * the runtime (a caller ordered after that destroy sees it; one racing it races the runtime
 * handle itself, as the header says). */
struct weft__rt_anchor;
struct weft__rt_anchor *weft__runtime_anchor_hold(struct weft_runtime *rt);
void weft__runtime_anchor_release(struct weft__rt_anchor *a);
bool weft__runtime_anchor_gone(struct weft__rt_anchor *a);
/* A spawn from outside the runtime through a group: true if it may go on (then it leaves after
 * its last touch of the runtime), false once the runtime's destroy has begun. */
bool weft__runtime_anchor_enter(struct weft__rt_anchor *a);
void weft__runtime_anchor_leave(struct weft__rt_anchor *a);
/* Whether the runtime's destroy has made its held handles orphans (they may be released). */
bool weft__runtime_anchor_orphaned(struct weft__rt_anchor *a);

/* ---- I/O (lib/poll.c, lib/offload.c) -------------------------------------------------------- */

struct weft__poller;
struct weft__offload;
/* rt->poller after destroy's close walk found no poller: a plain thread's first socket call
 * racing destroy then makes none (lib/poll.c, weft__poller_get). Never dereferenced. */
#define WEFT__POLLER_CLOSED ((struct weft__poller *)(uintptr_t)1)
/* The worker loop's hooks, each skipped (one pointer test) until the runtime's first socket.
 * park: an idle worker blocks in the poller until deadline_ns instead of on its futex, if it
 * wins the poller's try-lock: -1 if it did not (sleep on the futex), else the events
 * dispatched (> 0: tasks may be ready). tick: a busy worker's poll without blocking (at the
 * fairness tick). woke: after a waker set w's park word (w NULL: the runtime stops), break
 * the poller if w is blocked in it. The worker calls them through rt->poll_hooks, which
 * runtime.c points at lib/poll.c's table: the poller schedules through the worker, so a direct
 * call back would tie the two into one link cycle; and a second backend brings its own table. */
typedef struct weft__poll_hooks {
  int (*park)(weft__worker_t *w, uint64_t deadline_ns);
  void (*tick)(weft__worker_t *w);
  void (*woke)(struct weft_runtime *rt, weft__worker_t *w);
} weft__poll_hooks_t;
extern const weft__poll_hooks_t weft__epoll_hooks; /* lib/poll.c */
static inline bool weft__poll_active(struct weft_runtime *rt) {
  /* relaxed: a hint; the hooks load it again with acquire */
  return (uintptr_t)atomic_load_explicit(&rt->poller, memory_order_relaxed) >
         (uintptr_t)WEFT__POLLER_CLOSED;
}
/* Runtime destroy's steps (runtime.c's shutdown comment, step 6): the blocking pool's threads
 * finish their calls and are joined; the poller closes every socket still open. */
void weft__offload_destroy(struct weft_runtime *rt);
/* Whether the calling thread is one of rt's blocking-pool threads (running a weft_offload call). */
bool weft__offload_is_pool_thread(struct weft_runtime *rt);
/* lib/io.c, destroy's step 6: closes every socket still open (no socket is opened on the
 * runtime after it); then waits out the callers from outside the runtime still inside a socket
 * call, at most bound_ns: false if some are (the poller is then kept). */
void weft__io_close_all(struct weft_runtime *rt);
bool weft__io_callers_left(struct weft_runtime *rt, uint64_t bound_ns);
void weft__poller_destroy(struct weft_runtime *rt);

/* ---- Diagnostics (lib/metrics.c, lib/trace.c) ------------------------------------------------ */

/* Whether a WEFT_TRACE spec has the `sites` item (read before the workers start). */
bool weft__trace_wants_sites(const char *spec);
/* Parses WEFT_TRACE (or the option) and starts the monitor thread if anything asks for it. */
int weft__trace_start(struct weft_runtime *rt, const char *spec);
/* Stops and joins the monitor: first thing in destroy, before the workers stop. */
void weft__trace_stop(struct weft_runtime *rt);
/* A running task's id, and its name (or "(unnamed)") copied into name, for a report from
 * another thread (the watchdog, destroy's stop): t is a worker's published `current`, which
 * may end meanwhile (then its successor's fields are read; never freed memory). */
enum { WEFT__SAMPLED_NAME_MAX = 65 };
/* One line to stderr as the monitor writes (lib/stderr.c: a copy of fd 2, looked at, written
 * without blocking where it can be, waited on WEFT__STDERR_LOOK_MS at most for room, never
 * SIGPIPE),
 * dropped if it finds none: for destroy's own report, which a stderr nobody reads must not
 * block. */
bool weft__stderr_try_line(const char *p, size_t n); /* whether it was written whole */
/* lib/stderr.c: how long a line's write waits for room (destroy's lines in all; the monitor's
 * per look at its stop), and one try of a write to fd (fd 2): what it wrote, -1 with errno
 * (EAGAIN: room again, try at once; EBADF: fd closed), or WEFT__STDERR_NO_ROOM at the
 * deadline. */
enum { WEFT__STDERR_LOOK_MS = 50, WEFT__STDERR_NO_ROOM = -2 };
ssize_t weft__stderr_try(int fd, const char *p, size_t n, uint64_t deadline);
/* lib/stderr.c: a task's name as weft's lines show it (control bytes as '?', 64 bytes at most,
 * NULL as "(unnamed)"); async-signal-safe. */
void weft__name_shown(char shown[WEFT__SAMPLED_NAME_MAX], const char *name);
uint64_t weft__task_sample(struct weft_runtime *rt, struct weft_task *t,
                           char name[WEFT__SAMPLED_NAME_MAX]);
/* lib/metrics.c: w's queue depths as weft_metrics_t has them (deque_depth, yield_depth). */
void weft__worker_depths(struct weft__worker *w, uint64_t *deque, uint64_t *yield);
/* lib/task.c: calls fn(t, ctx) for every descriptor not on a free list, under task_lock. */
void weft__tasks_visit(struct weft_runtime *rt, void (*fn)(struct weft_task *t, void *ctx),
                       void *ctx);

/* ---- Overflow reports (lib/overflow.c) ------------------------------------------------------ */

/* Per worker thread: the alternate signal stack and the SIGSEGV handler for overflow reports. */
int weft__overflow_reports_install(void **altstack);
void weft__overflow_reports_remove(void *altstack);
/* In a fork child not yet made anew (an application's child handler ran before weft's), makes
 * the handler's lock and count anew; once per process otherwise. weft_runtime_create calls it. */
void weft__overflow_fork_check(void);

/* Whether some worker of rt is idle: parked or looking for work (Go's spinners). A hint for
 * where a spawn goes (lib/worker.c's "Private spawns"); the two counters share a line that
 * stays clean while every worker is busy. Three loads, so that one worker moving between the
 * counters is seen in one or the other whichever way it moves: a parker adds to nidle before
 * it leaves nspinning, a woken worker adds to nspinning before it leaves nidle (review,
 * session 11: two loads could fall either side of both of a parker's updates and read 0 | 0).
 * acquire (plain loads on x86): a first load that sees a worker's later update orders the
 * next load after its earlier one. */
static inline bool weft__workers_idle(struct weft_runtime *rt) {
  /* separate statements: the operands of | are unsequenced */
  int spinning = atomic_load_explicit(&rt->nspinning, memory_order_acquire);
  int idle = atomic_load_explicit(&rt->nidle, memory_order_acquire);
  /* relaxed: the last load orders nothing after it */
  return spinning | idle | atomic_load_explicit(&rt->nspinning, memory_order_relaxed);
}

/* Whether w keeps spawns that another worker could run now: one is idle, or one asked (the
 * ask's acquire is for the frames' share, which the caller's weft__priv_share then does with
 * its own loads). Owner only. */
static inline bool weft__priv_wanted(weft__worker_t *w) {
  return atomic_load_explicit(&w->npriv, memory_order_relaxed) && /* relaxed: our own */
         (weft__workers_idle(w->rt) ||
          atomic_load_explicit(&w->frames.splitreq, memory_order_acquire));
}

#endif /* WEFT_INTERNAL_H */
