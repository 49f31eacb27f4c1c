/*
 * Tasks: descriptors, spawning, starting, identity, and destroy's step for tasks.
 * Owns the descriptor slabs and free lists, spawn (ids, the stack check), a task's start on its
 * own stack, and what happens to descriptors at destroy (orphans); and completion, the join
 * counter's delivering side (the last section). Awaiting and gather are lib/join.c's; futures
 * lib/future.c's; sleep and yield lib/sleep.c's.
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
#include "frame.h"
#include "internal.h"
#include "join.h"
#include "wake.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NG_FLAG _Atomic bool
#define NG_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define NG_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define NG_XCHG(obj, v, mo) atomic_exchange_explicit(&(obj), (v), (mo))
#define NG_SC memory_order_seq_cst
#define NG_FN(name) nudge_##name
/* Generates nudge_ask, nudge_arm and nudge_armed (static inline): the descriptor pass's nudge
 * flag, shared with the relacy model. */
#include "nudge_impl.h"

enum {
  TASK_SLAB_BYTES = WEFT__TASK_SLAB_BYTES, /* picked (internal.h): a descriptor finds its slab by masking */
  TASK_REGION_SLABS = 64, /* picked: slabs per mapping (2 MiB) */
  TASK_REFILL = 64, /* picked: descriptors a worker takes from the plain shared list at once, and
                       the shortest list kept whole as a batch */
  /* picked (a sleep's frames measured on x86-64: the saved registers 152 bytes below its
   * join, the stack's top 224 above; AArch64 saves more registers): lines prefetched below
   * and from a timer-woken task's join */
  FRAMES_BELOW = 3,
  FRAMES_ABOVE = 3
};
/* A slab pass walks the whole shared list: it waits until that list has not changed for this
 * long (the runtime is quiet), so busy phases and short-lived runtimes never pay for it. A
 * plain thread spawning and joining from its own cache changes no list: the runtime reads as
 * quiet, and a pass (which takes that cache, refilled at the thread's next spawn) comes about
 * once a second while it works (review, session 35: 4–5 in 5 s; cost small in every case
 * measured). Rejected: counting the caches' frees as movement (a thread spawning every 200 ms
 * then kept a worker burst's free slabs resident for as long as it ran, and every park walked
 * every cache under the lock); skipping a cache used since the last look (the cache of a
 * thread gone idle then goes back after two passes, not one). */
#define TASK_QUIET_NS ((uint64_t)1000000000)

/* ---- Descriptors -------------------------------------------------------------------------- */

/* Slabs are carved from aligned mappings of TASK_REGION_SLABS slabs, so that a descriptor finds
 * its slab by masking its address. A slab whose descriptors are all free has its pages given
 * back (MADV_DONTNEED) and waits, empty, to be reused first; mappings go at destroy.
 * Rejected: aligned_alloc per slab (glibc's memalign splits a twice-as-large chunk: +20 % RSS
 * at 10^6 live tasks) and free + malloc_trim (the heap keeps what fragmentation pins). */
typedef struct task_slab {
  struct weft_runtime *rt; /* its descriptors' runtime (weft__task_rt); first, as that reads it */
  /* Its descriptors' diagnostics (internal.h's weft__task_diag_t), NULL until one needs them;
   * written once per life of the slab (weft__task_diag_make), freed with its pages. */
  _Atomic(weft__task_diag_t *) diag;
  struct task_slab *next; /* the slabs holding descriptors */
  size_t idle; /* the scavenger's count of this slab's descriptors in the shared list */
  /* After destroy: descriptors whose handles are still held; the last release unmaps it. */
  _Atomic long orphans;
  struct weft_task tasks[]; /* 64-aligned: the header takes one cache line */
} task_slab_t;
/* Descriptors per slab (511); their diagnostics, when any, are an array beside it. */
#define TASK_SLAB WEFT__TASK_SLAB
_Static_assert(sizeof(task_slab_t) == WEFT__TASK_SLAB_HEADER, "weft__task_diag assumes this header");
_Static_assert(offsetof(task_slab_t, rt) == 0, "weft__task_rt reads the slab's first word");
_Static_assert(offsetof(task_slab_t, diag) == WEFT__TASK_SLAB_DIAG_OFFSET,
               "weft__task_diag reads the slab's second word");
_Static_assert(WEFT__TASK_SLAB_HEADER + WEFT__TASK_SLAB * sizeof(struct weft_task) <=
                   WEFT__TASK_SLAB_BYTES,
               "the descriptors fit in a slab");

static task_slab_t *slab_of(struct weft_task *t) { return (task_slab_t *)weft__task_slab_of(t); }

/* The arrays are mappings of their own (16 352 bytes: four pages), not malloc'd: their only
 * pointer is in a slab's header, which is mapped memory that LeakSanitizer does not scan, so a
 * malloc'd array read as leaked to any leak check while its runtime lived (an ASan program that
 * exits without destroying its runtime, with this library's ordinary build too: review).
 * A mapping per 511 tasks that are named, scoped or traced; the count is for tests. */
static _Atomic long diag_arrays_live;
enum { DIAG_ARRAY_BYTES = TASK_SLAB * sizeof(weft__task_diag_t) };

long weft__task_diag_arrays(void) {
  return atomic_load_explicit(&diag_arrays_live, memory_order_relaxed); /* relaxed: a count */
}

static void diag_array_unmap(weft__task_diag_t *diag) {
  munmap(diag, DIAG_ARRAY_BYTES);
  atomic_fetch_sub_explicit(&diag_arrays_live, 1, memory_order_relaxed); /* relaxed: a count */
}

/* Frees a slab's diagnostics. Its descriptors are all free and it is out of the slab list (the
 * scavenger, under rt->task_lock: the dump and the watchdog read names under that lock), or
 * its runtime is gone and no handle of it is held (destroy, an orphan's last release). */
static void slab_diag_free(task_slab_t *slab) {
  /* relaxed: see above; nobody reads the field without the lock or a handle now */
  weft__task_diag_t *diag = atomic_exchange_explicit(&slab->diag, NULL, memory_order_relaxed);
  if (diag) diag_array_unmap(diag);
}

weft__task_diag_t *weft__task_diag_make(struct weft_task *t) {
  weft__task_diag_t *d = weft__task_diag(t);
  if (WEFT__LIKELY(d)) return d;
  if (weft__fault_hit(WEFT__FAULT_DIAG)) return NULL;
  /* zero-filled, as a fresh array must be (no name, no scope, no site) */
  weft__task_diag_t *fresh =
      mmap(NULL, DIAG_ARRAY_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (fresh == MAP_FAILED) return NULL;
  atomic_fetch_add_explicit(&diag_arrays_live, 1, memory_order_relaxed); /* relaxed: a count */
  task_slab_t *slab = slab_of(t);
  weft__task_diag_t *expected = NULL;
  /* release: the array's zeroes before its address (weft__task_diag's acquire); acquire on
   * failure: another task of the slab published one first, and we use theirs */
  if (!atomic_compare_exchange_strong_explicit(&slab->diag, &expected, fresh,
                                               memory_order_acq_rel, memory_order_acquire))
    diag_array_unmap(fresh);
  return weft__task_diag(t);
}

typedef struct task_region {
  struct task_region *next;
  char *base;
  uint64_t orphan_slabs; /* at destroy: bit k set if slab k outlives it (handles still held) */
} task_region_t;

/* rt->task_store: the runtime's descriptor store, under rt->task_lock. */
typedef struct weft__task_store {
  task_region_t *regions;
  char *carve, *carve_end; /* the newest mapping's slabs not yet used */
  task_slab_t *slabs;      /* slabs holding descriptors */
  task_slab_t **empty;     /* slabs whose pages went back; room for every slab carved */
  size_t nempty, nslabs;
} task_store_t;


/* Maps an aligned region of slabs. Caller holds rt->task_lock.
 * #13: a region is one transparent huge page's span (2 MiB), aligned to it, and every region
 * after a runtime's first asks for huge pages (MADV_HUGEPAGE; the system's default "madvise"
 * mode grants them on the first touch). A store that outgrows its first 2 MiB is holding
 * thousands of tasks: one fault then maps 2 MiB where 512 page faults did, and a page fault
 * cost ~1-3 us on this VM (spawn 10^6: a quarter of its CPU samples). The first region keeps
 * small pages, so that a small runtime's RSS grows 4 KiB at a time. A slab given back
 * (MADV_DONTNEED) splits its huge page, and its region leaves huge pages for good
 * (region_stays_small: khugepaged would merge it back). No huge pages (a kernel without THP, or
 * "never"): the madvise fails or is ignored and pages fault in one by one, as before. */
static int task_region_add(task_store_t *st) {
  size_t len = (size_t)TASK_SLAB_BYTES * TASK_REGION_SLABS;
  task_slab_t **empty = realloc(st->empty, sizeof *empty * (st->nslabs + TASK_REGION_SLABS));
  task_region_t *r = malloc(sizeof *r);
  if (empty) st->empty = empty;
  char *map = MAP_FAILED;
  if (empty && r)
    map = mmap(NULL, 2 * len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) {
    free(r);
    return WEFT_ENOMEM;
  }
  char *base = (char *)(((uintptr_t)map + len - 1) & ~(uintptr_t)(len - 1));
  if (base > map) munmap(map, (size_t)(base - map));
  if (base < map + len) munmap(base + len, (size_t)(map + len - base));
  if (st->regions) (void)madvise(base, len, MADV_HUGEPAGE); /* a hint: failure changes nothing */
  *r = (task_region_t){.next = st->regions, .base = base, .orphan_slabs = 0};
  st->regions = r;
  st->carve = base;
  st->carve_end = base + len;
  st->nslabs += TASK_REGION_SLABS;
  return 0;
}

/* Caller holds rt->task_lock. */
static int task_slab_add(struct weft_runtime *rt) {
  task_store_t *st = rt->task_store;
  if (!st && !(st = rt->task_store = calloc(1, sizeof *st))) return WEFT_ENOMEM;
  task_slab_t *slab;
  if (st->nempty) {
    slab = st->empty[--st->nempty];
  } else {
    if (st->carve == st->carve_end && task_region_add(st) != 0) return WEFT_ENOMEM;
    slab = (task_slab_t *)st->carve;
    st->carve += TASK_SLAB_BYTES;
  }
  slab->rt = rt;
  atomic_init(&slab->diag, NULL); /* a reused slab's was freed with its pages (scavenge) */
  slab->next = st->slabs;
  slab->idle = 0;
  atomic_init(&slab->orphans, 0);
  st->slabs = slab;
  for (size_t i = TASK_SLAB; i-- > 0;) {
    atomic_init(&slab->tasks[i].word, WEFT__TASK_WORD_FREE); /* internal.h */
    slab->tasks[i].next = rt->free_tasks;
    rt->free_tasks = &slab->tasks[i];
  }
  rt->free_task_total += TASK_SLAB;
  return 0;
}

/* Unmaps a region except the slabs that orphans keep (each goes with its last orphan), and
 * frees the diagnostics of the `carved` slabs it unmaps (the others never had any). */
static void task_region_unmap(task_region_t *r, int carved) {
  for (int k = 0; k < carved; k++)
    if (!(r->orphan_slabs >> k & 1)) slab_diag_free((task_slab_t *)(r->base + (size_t)k * TASK_SLAB_BYTES));
  for (int k = 0; k < TASK_REGION_SLABS;) {
    if (r->orphan_slabs >> k & 1) {
      k++;
      continue;
    }
    int run = k;
    while (run < TASK_REGION_SLABS && !(r->orphan_slabs >> run & 1)) run++;
    munmap(r->base + (size_t)k * TASK_SLAB_BYTES, (size_t)(run - k) * TASK_SLAB_BYTES);
    k = run;
  }
}

void weft__task_slabs_free(struct weft_runtime *rt) {
  task_store_t *st = rt->task_store;
  if (st) {
    for (task_region_t *r = st->regions, *next; r; r = next) {
      next = r->next;
      /* the newest region (the list's head) is carved up to st->carve; the others wholly */
      int carved = r == st->regions ? (int)((st->carve - r->base) / TASK_SLAB_BYTES)
                                     : TASK_REGION_SLABS;
      task_region_unmap(r, carved);
      free(r);
    }
    free(st->empty);
    free(st);
  }
  rt->task_store = NULL;
  rt->free_tasks = NULL;
  rt->nfree_batches = 0;
}

/* A chain of free descriptors (linked through `next`) spliced in front of list; returns the
 * new head. Walks the chain to its tail. */
static struct weft_task *chain_in_front(struct weft_task *chain, struct weft_task *list) {
  struct weft_task *tail = chain;
  while (tail->next) tail = tail->next;
  tail->next = list;
  return chain;
}

static bool thread_caches_reclaim(struct weft_runtime *rt); /* "Threads' caches" below */

/* A slab about to be given back first takes its region off huge pages (MADV_NOHUGEPAGE):
 * khugepaged merges a region that still has one page in use back into a whole 2 MiB page, so
 * the slabs given back became resident again within ~20 s, and, filed as empty, were never
 * given back again (review, session 34: RSS 7.4 → 29.9 MB after the joins). The region then
 * faults 4 KiB at a time when its slabs are reused: only regions the scavenger has touched.
 * Regions are aligned to their size (task_region_add); `last` is the previous call's region,
 * so a pass marks each region once per run of its slabs. A hint: failure changes nothing. */
static char *region_stays_small(task_slab_t *slab, char *last) {
  size_t len = (size_t)TASK_SLAB_BYTES * TASK_REGION_SLABS;
  char *base = (char *)((uintptr_t)slab & ~(uintptr_t)(len - 1));
  if (base != last) (void)madvise(base, len, MADV_NOHUGEPAGE);
  return base;
}

/* Caller holds task_lock: whether a pass could find slabs to give back that the last one did
 * not. The store's total alone missed as many descriptors taken as given back between two
 * passes (review, session 34): the count of returns, which only grows, sees them. A pass
 * needs a slab's worth free, in the store or in threads' caches it takes. */
static bool descriptors_moved_since_the_last_pass(const struct weft_runtime *rt) {
  bool moved = rt->free_task_total != rt->task_scavenged_total ||
               rt->task_returns != rt->task_scavenged_returns;
  return moved && (rt->free_task_total >= TASK_SLAB || rt->thread_caches);
}

/* Slabs whose every descriptor sits in the shared free list give their pages back. The list
 * is detached under the lock and counted outside it: a descriptor freed meanwhile lands in
 * the new list, so its slab is not whole and stays. */
static void task_slabs_scavenge(struct weft_runtime *rt, uint64_t now) {
  pthread_mutex_lock(&rt->task_lock);
  if (rt->free_task_total != rt->task_seen_total ||
      rt->task_returns != rt->task_seen_returns) { /* still moving: wait for quiet */
    rt->task_seen_total = rt->free_task_total;
    rt->task_seen_returns = rt->task_returns;
    rt->task_seen_at = now;
  }
  /* now may be earlier than task_seen_at: another worker's later clock read stored it while we
   * trimmed stacks (review, session 34: the difference wrapped and counted as quiet; session
   * 20's stack scavenger had the same). */
  if (rt->task_scavenging || now < rt->task_seen_at || now - rt->task_seen_at < TASK_QUIET_NS ||
      !descriptors_moved_since_the_last_pass(rt)) {
    pthread_mutex_unlock(&rt->task_lock);
    return;
  }
  rt->task_scavenging = true; /* one scavenger at a time: the slabs' idle counts are its own */
  /* threads' caches pin slabs too: into the list counted below */
  bool skipped_a_cache = thread_caches_reclaim(rt);
  weft__probe_hit(WEFT__PROBE_TASK_SCAVENGE);
  rt->task_scavenged_returns = rt->task_returns;
  /* A cache its owner was using stays where it is: counted as a return still to look at, so
   * that the next park arms another pass for it (review, session 34: nothing did, and the
   * owner's later frees into it changed no count). */
  if (skipped_a_cache) rt->task_returns++;
  struct weft_task *list = rt->free_tasks;
  size_t total = rt->free_task_total;
  struct weft__task_batch batches[WEFT__TASK_BATCHES];
  int nbatches = rt->nfree_batches;
  memcpy(batches, rt->free_batches, sizeof batches[0] * (size_t)nbatches);
  rt->free_tasks = NULL;
  rt->free_task_total = 0;
  rt->nfree_batches = 0;
  pthread_mutex_unlock(&rt->task_lock);
  for (int i = 0; i < nbatches; i++) /* one list of them all (the newest batch first) */
    list = chain_in_front(batches[i].head, list);

  for (struct weft_task *t = list; t; t = t->next) slab_of(t)->idle++;
  struct weft_task *keep = NULL, **tail = &keep; /* the survivors, in their order */
  for (struct weft_task *t = list; t; t = t->next)
    if (slab_of(t)->idle != TASK_SLAB) {
      *tail = t;
      tail = &t->next;
    } else {
      total--;
    }
  *tail = NULL;

  task_slab_t *dead = NULL;
  pthread_mutex_lock(&rt->task_lock);
  task_store_t *st = rt->task_store;
  for (task_slab_t **link = &st->slabs, *s; (s = *link);) {
    if (s->idle == TASK_SLAB) {
      *link = s->next;
      s->next = dead;
      dead = s;
      slab_diag_free(s); /* under the lock: see slab_diag_free */
    } else {
      s->idle = 0;
      link = &s->next;
    }
  }
  *tail = rt->free_tasks;
  rt->free_tasks = keep;
  rt->free_task_total += total;
  pthread_mutex_unlock(&rt->task_lock);
  /* The dead slabs are ours alone now (nothing links to them): their pages go back outside
   * the lock, each link read before its page is dropped, and each is filed as empty only
   * then, so that no spawn reuses a slab while its pages are being discarded. */
  char *unhuged = NULL;
  for (task_slab_t *next; dead; dead = next) {
    next = dead->next;
    unhuged = region_stays_small(dead, unhuged);
    madvise(dead, TASK_SLAB_BYTES, MADV_DONTNEED);
    weft__probe_hit(WEFT__PROBE_TASK_SLAB_FREED);
    pthread_mutex_lock(&rt->task_lock);
    st->empty[st->nempty++] = dead; /* room for every slab carved: cannot overflow */
    pthread_mutex_unlock(&rt->task_lock);
  }
  pthread_mutex_lock(&rt->task_lock);
  /* What this pass looked at, not the live total: descriptors freed during it leave the two
   * apart, so the next park arms another pass (review of session 34's nudge: they were
   * counted as looked at, the spills that returned them found a pass armed and woke no one,
   * and the slabs they completed stayed for good) — after a quiet time counted from now: the
   * list moved during the pass (review: the stale stamp let a second pass run at once). */
  rt->task_scavenged_total = total;
  if (rt->free_task_total != total || rt->task_returns != rt->task_scavenged_returns)
    rt->task_seen_at = weft_now_ns();
  rt->task_seen_total = rt->free_task_total;
  rt->task_seen_returns = rt->task_returns;
  rt->task_scavenging = false;
  pthread_mutex_unlock(&rt->task_lock);
}

/* ---- Batches -------------------------------------------------------------------------------
 * A worker whose free list overflows (it frees what others spawned: a thief running a
 * spawner's children) hands its older half to the runtime as one batch, in O(1) under the
 * lock; a worker whose list is empty takes the newest batch back whole, also in O(1). The
 * descriptors then move between workers ~500 at a time without anyone walking them
 * under the lock — a walk that missed the cache on every descriptor, one miss at a time (each
 * link is known only once the line holding it arrives): spawn-detached 10^6 spent 5–18 % of
 * its samples there, holding the lock, its spills and refills napping on the futex.
 * The taker still misses on each descriptor as it spawns into it (a prefetch of the next one
 * in spawn_local was in the first version; not measured apart from the rest, so left out).
 * Rejected: spilling the whole list (a worker that took a batch spilled again at its next
 * free: review); batches linked through their first descriptors (unbounded, and the scavenger
 * must find them all anyway; a full array splices the rest onto the plain list instead); a
 * lock-free stack of batches (ABA on the pop, for an operation that happens once per ~500
 * spawns). */

/* Caller holds task_lock. A chain of n descriptors onto the shared store, whole. */
static void shared_put_chain(struct weft_runtime *rt, struct weft_task *head, size_t n) {
  if (n >= TASK_REFILL && rt->nfree_batches < WEFT__TASK_BATCHES) {
    rt->free_batches[rt->nfree_batches++] = (struct weft__task_batch){head, n};
    weft__probe_hit(WEFT__PROBE_TASK_BATCH_PUT);
  } else { /* small or no room: onto the plain list (a walk, but of the spiller's hot lines) */
    rt->free_tasks = chain_in_front(head, rt->free_tasks);
  }
  rt->free_task_total += n;
  rt->task_returns += n;
}

/* Caller holds task_lock and has checked nfree_batches. The newest batch (its lines the most
 * likely still cached): all of it to worker w's empty list, or one descriptor for a thread
 * that is not a worker. Returns the descriptor to use now. */
static struct weft_task *shared_take_batch(struct weft_runtime *rt, weft__worker_t *w) {
  struct weft__task_batch *b = &rt->free_batches[rt->nfree_batches - 1];
  struct weft_task *t = b->head;
  weft__probe_hit(w ? WEFT__PROBE_TASK_BATCH_TAKE : WEFT__PROBE_TASK_BATCH_ONE);
  if (w) {
    w->free_tasks = t->next;
    w->free_task_count = b->n - 1;
    rt->free_task_total -= b->n;
    rt->nfree_batches--;
  } else {
    b->head = t->next;
    rt->free_task_total--;
    if (--b->n == 0) rt->nfree_batches--;
  }
  return t;
}

static struct weft_task *task_alloc_shared(struct weft_runtime *rt, weft__worker_t *w) {
  pthread_mutex_lock(&rt->task_lock);
  if (rt->nfree_batches) { /* w's list is empty (task_alloc) */
    struct weft_task *t = shared_take_batch(rt, w);
    pthread_mutex_unlock(&rt->task_lock);
    return t;
  }
  if (!rt->free_tasks && task_slab_add(rt) != 0) {
    pthread_mutex_unlock(&rt->task_lock);
    return NULL;
  }
  struct weft_task *t = rt->free_tasks;
  rt->free_tasks = t->next;
  rt->free_task_total--;
  for (int i = 0; w && i < TASK_REFILL && rt->free_tasks; i++) { /* refill the worker's list */
    struct weft_task *u = rt->free_tasks;
    rt->free_tasks = u->next;
    rt->free_task_total--;
    u->next = w->free_tasks;
    w->free_tasks = u;
    w->free_task_count++;
  }
  pthread_mutex_unlock(&rt->task_lock);
  return t;
}

/* A free list (a worker's or a thread's cache) but its `keep` newest to the shared store, as
 * one chain. The cut is found outside the lock by walking the kept part: the spiller's own
 * lines, hot (the cold walk was the taker's, which a batch spares). */
static bool list_spill_nudging(struct weft_runtime *rt, struct weft_task **head, size_t *count,
                               size_t keep, bool nudge);

static void list_spill(struct weft_runtime *rt, struct weft_task **head, size_t *count,
                       size_t keep) {
  list_spill_nudging(rt, head, count, keep, false);
}

/* nudge: a plain thread's spill also asks for a descriptor pass (spill_from_thread), under the
 * same lock; true if it was the one to ask. */
static bool list_spill_nudging(struct weft_runtime *rt, struct weft_task **head, size_t *count,
                               size_t keep, bool nudge) {
  if (*count <= keep) return false;
  struct weft_task *rest = *head;
  if (keep) {
    struct weft_task *cut = *head;
    for (size_t i = 1; i < keep; i++) cut = cut->next;
    rest = cut->next;
    cut->next = NULL;
  } else {
    *head = NULL;
  }
  pthread_mutex_lock(&rt->task_lock);
  shared_put_chain(rt, rest, *count - keep);
  bool asked = nudge && nudge_ask(&rt->task_scavenge_nudged); /* see the caller */
  pthread_mutex_unlock(&rt->task_lock);
  *count = keep;
  return asked;
}

/* One descriptor onto the shared store's plain list (no walk: shared_put_chain's would find
 * its stale link). */
static void shared_put_one(struct weft_runtime *rt, struct weft_task *t) {
  pthread_mutex_lock(&rt->task_lock);
  t->next = rt->free_tasks;
  rt->free_tasks = t;
  rt->free_task_total++;
  rt->task_returns++;
  pthread_mutex_unlock(&rt->task_lock);
}

/* ---- Threads' caches ------------------------------------------------------------------------
 * A thread that is not a worker (an application thread spawning with weft_runtime_spawn and
 * joining what it spawned: weft-bench inject's eight threads) took every descriptor from the
 * shared store, and gave every one back, under task_lock: eight such threads queued on it, and
 * on the 16-core machine inject 10^5 took 58–61 ms at every worker count (Go: 16 at 16). Now
 * such a thread keeps a small cache of a runtime's descriptors, as a worker does: refilled
 * THREAD_REFILL at a time under the lock, fed by its own frees, spilling half beyond
 * THREAD_CACHE_MAX (measured there: 17–31 ms; bench/README.md, session 28). Two such caches
 * per thread (THREAD_SLOTS, below).
 * Lifetime. The cache names its runtime by address and by `gen`, a number never reused, so a
 * cache whose runtime was destroyed (its descriptors unmapped) is never read, even if a new
 * runtime got the same address. A cache for a runtime that is still live goes back to it when
 * its thread turns to a third runtime or exits (a key destructor), under live_lock, which
 * destroy takes to leave the live list before it frees descriptors: the return comes first,
 * or finds the runtime gone and drops the cache.
 * The scavenger. A slab gives its pages back only when all its descriptors are in the shared
 * store, so a cache would pin its slabs for as long as its thread lives. The runtime keeps its
 * threads' caches in a list (under task_lock), and the scavenger takes each cache whose owner
 * is not using it at that moment: `busy`, a flag the owner takes with an exchange around each
 * use (its own line: ~20 cycles, no sharing) and the scavenger with a CAS it does not retry;
 * a cache it leaves counts as a return still to look at, so the next park arms another pass.
 * An owner's frees into its cache change no count of the store's, so its first free since the
 * scavenger last took the cache asks for a pass (ask_for_a_pass: a lock, once per pass).
 * Destroy's "every descriptor free" check takes the caches the same way before it counts.
 * Rejected: a lock-free shared list (its pop has the ABA problem the batches' comment
 * describes); a lock per thread-hash shard (the scavenger and the batches walk one store). */
enum { THREAD_REFILL = 32, THREAD_CACHE_MAX = 128 }; /* picked: inject's threads spawn in runs */

typedef struct weft__thread_cache {
  /* 1 while the owner or the scavenger uses head and count. acquire on taking it, release on
   * letting it go: the list's links pass between the two with it. */
  _Atomic int busy;
  struct weft_runtime *rt; /* owner-only: which runtime, and which life of that address */
  uint64_t gen;
  struct weft_task *head;
  size_t count;
  /* The owner has freed into the cache since the scavenger last took it, and so asked for a
   * pass (ask_for_a_pass); with head and count, under busy. */
  bool asked;
  struct weft__thread_cache *next; /* the runtime's list of caches, under its task_lock */
} thread_cache_t;

/* Two per thread, for two runtimes: a thread that spawns into two in turn (a dispatcher)
 * would otherwise give one cache back and fill the other at every spawn (review: 3× slower
 * than the lock). `thread_cache_last`: the slot used last; a third runtime evicts the other. */
enum { THREAD_SLOTS = 2 };
static __thread thread_cache_t thread_caches[THREAD_SLOTS];
static __thread int thread_cache_last;
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER; /* before any task_lock */
static struct weft_runtime *live_list;
static uint64_t live_gen;
/* The key whose destructor returns an exiting thread's caches; deleted when the library is
 * unloaded (a dlclose'd library's destructor would run at a later thread exit: review). */
static pthread_key_t cache_key;
/* pthread_key_create succeeded and the library is not being unloaded: else threads do not
 * cache. relaxed: pthread_once orders the first store; the unload's is a late hint. */
static _Atomic bool cache_key_ok;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;

/* A child of fork has only the forking thread, and none of the parent's runtimes works in it
 * (their workers are gone): it starts with no live runtime and no caches, and a live_lock
 * that no vanished thread holds (review, session 28: a fork while another thread made a
 * runtime left the child's first weft_runtime_create waiting forever). Made anew there, not
 * held across the fork: runtime creation takes it on the application's threads, which may
 * hold locks that the application's own fork handlers take (review, session 29). Made anew
 * by the first of weft's child handler and a weft_runtime_create in the child, once
 * (lib/sys.c's weft__forked_claim): an application's child handler registered before weft's
 * runs first and may create a runtime, which weft's handler must then leave alone (review,
 * session 30: it dropped that runtime from the list and zeroed the cache the handler's spawns
 * had bound, which the runtime still linked — its scavenger then took another runtime's
 * descriptors — and a live_lock a vanished thread held hung the application's handler).
 * Rejected: registering from a library constructor (the order between constructors, and an
 * application's handlers registered in one, is not ours to fix). */
static void live_make_anew_if_forked(void) {
  if (!weft__forked_claim(WEFT__FORKED_LIVE)) return;
  pthread_mutex_init(&live_lock, NULL);
  live_list = NULL;
  weft__forked_done(WEFT__FORKED_LIVE);
}

/* Caller holds live_lock: whether rt, in the life gen, is live. */
static bool live_has(const struct weft_runtime *rt, uint64_t gen) {
  for (const struct weft_runtime *r = live_list; r; r = r->live_next)
    if (r == rt && r->gen == gen) return true;
  return false;
}

/* Caller holds live_lock. The calling thread's own thread-locals that name runtimes no longer
 * live are forgotten: the caches it had bound to them, and the worker it was if it forked from
 * a task (review, session 29: it went on as one of the dead runtime's, and a join there parked
 * it in that runtime's loop; it runs on the task's stack as a plain thread: docs/api.md,
 * "fork()"). What names a live runtime (one an application's child handler made) stays. Done by
 * weft's child handler and at every runtime creation, so that a child handler that runs before
 * weft's finds its thread plain (review, session 30); in a parent it only drops caches named
 * after runtimes destroyed since, whose descriptors went with them. */
static void forget_the_parents_runtimes_here(void) {
  for (int i = 0; i < THREAD_SLOTS; i++)
    if (thread_caches[i].rt && !live_has(thread_caches[i].rt, thread_caches[i].gen))
      thread_caches[i] = (thread_cache_t){0};
  weft__worker_t *w = weft__worker_self();
  if (w && !live_has(w->rt, w->rt->gen)) weft__worker_set_self(NULL);
}

static void live_after_fork_in_child(void) {
  live_make_anew_if_forked();
  pthread_mutex_lock(&live_lock);
  forget_the_parents_runtimes_here();
  pthread_mutex_unlock(&live_lock);
}
static pthread_once_t live_fork_once = PTHREAD_ONCE_INIT;
static void live_fork_register(void) { (void)pthread_atfork(NULL, NULL, live_after_fork_in_child); }

void weft__tasks_live_add(struct weft_runtime *rt) {
  pthread_once(&live_fork_once, live_fork_register);
  live_make_anew_if_forked(); /* in a child whose fork handler has not run yet */
  pthread_mutex_lock(&live_lock);
  weft__pause(WEFT__PAUSE_LIVE_LOCKED);
  forget_the_parents_runtimes_here();
  rt->gen = ++live_gen;
  rt->live_next = live_list;
  live_list = rt;
  pthread_mutex_unlock(&live_lock);
}

void weft__tasks_live_remove(struct weft_runtime *rt) {
  pthread_mutex_lock(&live_lock);
  struct weft_runtime **p = &live_list;
  while (*p && *p != rt) p = &(*p)->live_next;
  if (*p) *p = rt->live_next;
  pthread_mutex_unlock(&live_lock);
  /* The destroyer's own cache may name rt: forget it (its descriptors go with the slabs). */
  for (int i = 0; i < THREAD_SLOTS; i++)
    if (thread_caches[i].rt == rt) thread_caches[i] = (thread_cache_t){0};
}

static void cache_hold(thread_cache_t *c) {
  /* acquire: the scavenger's changes to the list, if it took it last */
  while (atomic_exchange_explicit(&c->busy, 1, memory_order_acquire)) sched_yield();
}

static void cache_let_go(thread_cache_t *c) {
  atomic_store_explicit(&c->busy, 0, memory_order_release); /* release: our list changes */
}

/* Caller holds rt->task_lock: every cache of rt's threads not in use now, into the store.
 * Returns whether it left one that was in use. */
static bool thread_caches_reclaim(struct weft_runtime *rt) {
  bool skipped = false;
  for (thread_cache_t *c = rt->thread_caches; c; c = c->next) {
    int free_flag = 0;
    /* acquire/release: as cache_hold and cache_let_go; never waits for an owner */
    if (!atomic_compare_exchange_strong_explicit(&c->busy, &free_flag, 1, memory_order_acquire,
                                                 memory_order_relaxed)) {
      weft__probe_hit(WEFT__PROBE_CACHE_SKIPPED);
      skipped = true;
      continue;
    }
    if (c->head) {
      shared_put_chain(rt, c->head, c->count);
      weft__probe_hit(WEFT__PROBE_CACHE_RECLAIMED);
    }
    c->head = NULL;
    c->count = 0;
    c->asked = false; /* the owner's next free asks for the pass that takes it again */
    cache_let_go(c);
  }
  return skipped;
}

/* The cache back to its runtime if that is still live, else dropped; its owner calls (or the
 * owner's exit), so nothing uses it meanwhile but a scavenger, which task_lock keeps out. */
static void thread_cache_return(thread_cache_t *c) {
  if (!c->rt) return;
  pthread_mutex_lock(&live_lock);
  struct weft_runtime *rt = live_list;
  while (rt && !(rt == c->rt && rt->gen == c->gen)) rt = rt->live_next;
  if (rt) {
    pthread_mutex_lock(&rt->task_lock);
    thread_cache_t **p = &rt->thread_caches;
    while (*p && *p != c) p = &(*p)->next;
    if (*p) *p = c->next;
    if (c->head) {
      shared_put_chain(rt, c->head, c->count);
      weft__probe_hit(WEFT__PROBE_CACHE_RETURNED);
    }
    pthread_mutex_unlock(&rt->task_lock);
  }
  pthread_mutex_unlock(&live_lock);
  c->rt = NULL;
  c->head = NULL;
  c->count = 0;
}

static void thread_exit_return(void *caches) {
  for (int i = 0; i < THREAD_SLOTS; i++) thread_cache_return(&((thread_cache_t *)caches)[i]);
}
static void cache_key_make(void) {
  atomic_store_explicit(&cache_key_ok, pthread_key_create(&cache_key, thread_exit_return) == 0,
                        memory_order_relaxed);
}
/* At unload, or at exit for a static link: no thread binds a cache after this (a key number
 * reused by another library would hand it our array). A thread still running then keeps its
 * caches listed; at exit that is moot, and a dlclose with threads spawning through the library
 * is the application's race. */
__attribute__((destructor)) static void cache_key_unload(void) {
  if (!atomic_exchange_explicit(&cache_key_ok, false, memory_order_relaxed)) return;
  pthread_key_delete(cache_key);
}

static thread_cache_t *cache_bind(thread_cache_t *c, struct weft_runtime *rt) {
  thread_cache_return(c);
  pthread_once(&cache_key_once, cache_key_make);
  /* No destructor, no cache: an exited thread's listed cache would be freed memory. */
  if (!atomic_load_explicit(&cache_key_ok, memory_order_relaxed) ||
      pthread_setspecific(cache_key, thread_caches) != 0)
    return NULL;
  c->rt = rt;
  c->gen = rt->gen;
  c->asked = false;
  pthread_mutex_lock(&rt->task_lock);
  c->next = rt->thread_caches;
  rt->thread_caches = c;
  pthread_mutex_unlock(&rt->task_lock);
  return c;
}

/* The calling thread's cache for rt (live: the caller's contract), held (cache_hold); NULL if
 * the thread cannot have one (the key could not be made or set): the caller takes the lock. */
static thread_cache_t *thread_cache_for(struct weft_runtime *rt) {
  int i = thread_cache_last;
  thread_cache_t *c = &thread_caches[i];
  if (WEFT__UNLIKELY(c->rt != rt || c->gen != rt->gen)) {
    i = 1 - i;
    c = &thread_caches[i];
    if (c->rt != rt || c->gen != rt->gen) c = cache_bind(c, rt); /* evicts the one not last */
    if (!c) return NULL;
    thread_cache_last = i;
  }
  cache_hold(c);
  return c;
}

/* Caller holds task_lock: up to n free descriptors from the shared store onto c. */
static void thread_cache_refill(struct weft_runtime *rt, thread_cache_t *c, size_t n) {
  for (size_t i = 0; i < n; i++) {
    struct weft_task *t;
    if (rt->nfree_batches) {
      t = shared_take_batch(rt, NULL);
    } else {
      if (!rt->free_tasks && task_slab_add(rt) != 0) return;
      t = rt->free_tasks;
      rt->free_tasks = t->next;
      rt->free_task_total--;
    }
    t->next = c->head;
    c->head = t;
    c->count++;
  }
}

static struct weft_task *thread_alloc(struct weft_runtime *rt) {
  thread_cache_t *c = thread_cache_for(rt);
  if (WEFT__UNLIKELY(!c)) return task_alloc_shared(rt, NULL);
  if (!c->head) { /* holding the cache: a scavenger that takes task_lock skips it */
    pthread_mutex_lock(&rt->task_lock);
    thread_cache_refill(rt, c, THREAD_REFILL);
    pthread_mutex_unlock(&rt->task_lock);
  }
  struct weft_task *t = c->head;
  if (t) {
    c->head = t->next;
    c->count--;
  }
  cache_let_go(c);
  return t;
}

/* Half of a thread's cache to the shared store. The descriptor scavenger runs only as a worker
 * parks, so descriptors a plain thread gives back after every worker parked (its joins of what
 * it spawned) stayed until some unrelated task woke one, perhaps never (review, session 34: 18
 * MB kept by an idle runtime). `task_scavenge_nudged` is set while a pass is armed (by the
 * parks, weft__task_scavenge) or asked for (here): the first spill with none armed wakes a
 * parked worker, which parks again with the pass armed; later spills wake no one (the review
 * of the first version counted ~2 000 wasted wake-ups in 10^6 joins, each park clearing it).
 * The protocol and its argument are nudge_impl.h's (model-checked in tests/model/nudge_model.cpp
 * with its planted bugs): the ask is made under task_lock with the spill, as a park's arm is
 * with its look at the totals (weft__task_scavenge), so one comes wholly first (review: an arm
 * after the look erased a spill's ask between them); and a worker still counted as spinning
 * when the spill checked arms the pass itself (weft__task_nudged_until; review: that spill
 * woke no one, the worker parked for good). Not at a thread's exit (thread_cache_return: at most one cache's worth, and the runtime may be gone). */
static void spill_from_thread(struct weft_runtime *rt, thread_cache_t *c) {
  if (list_spill_nudging(rt, &c->head, &c->count, THREAD_CACHE_MAX / 2, true))
    weft__wake_one_if_needed(rt);
}

/* A plain thread's first free into its cache since the scavenger last took it: the cache
 * pins slabs that no count in the store shows (review, session 34: a thread that only reused
 * its own cache's descriptors, or whose cache a pass skipped as in use, asked for no pass,
 * and its cache stayed for good — docs/api.md promises it goes back after a second idle).
 * Counted as a return, and a nudge as a spill's (spill_from_thread): once per pass at most. */
static void ask_for_a_pass(struct weft_runtime *rt) {
  pthread_mutex_lock(&rt->task_lock);
  rt->task_returns++;
  bool asked = nudge_ask(&rt->task_scavenge_nudged); /* see spill_from_thread */
  pthread_mutex_unlock(&rt->task_lock);
  if (asked) weft__wake_one_if_needed(rt);
}

uint64_t weft__task_nudged_until(struct weft_runtime *rt, uint64_t now) {
  /* after the parker's announcement (see spill_from_thread) */
  return nudge_armed(&rt->task_scavenge_nudged) ? now + TASK_QUIET_NS : UINT64_MAX;
}

static void thread_free(struct weft_runtime *rt, struct weft_task *t) {
  thread_cache_t *c = thread_cache_for(rt);
  if (WEFT__UNLIKELY(!c)) {
    shared_put_one(rt, t);
    return;
  }
  t->next = c->head;
  c->head = t;
  if (++c->count > THREAD_CACHE_MAX) spill_from_thread(rt, c);
  if (WEFT__UNLIKELY(!c->asked)) {
    c->asked = true;
    ask_for_a_pass(rt); /* holding the cache: the scavenger's CAS skips it, never waits */
  }
  weft__pause(WEFT__PAUSE_THREAD_FREED);
  cache_let_go(c);
}

static struct weft_task *task_alloc(struct weft_runtime *rt, weft__worker_t *w) {
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_TASK))) return NULL;
  if (WEFT__LIKELY(w && w->free_tasks)) {
    struct weft_task *t = w->free_tasks;
    w->free_tasks = t->next;
    w->free_task_count--;
    return t;
  }
  return w ? task_alloc_shared(rt, w) : thread_alloc(rt);
}

/* Worker w's free list but its `keep` newest to the shared store (list_spill). Keeping half
 * leaves a worker that took a batch (a full list's worth less the half kept) room for as many
 * frees again before its next spill: a whole-list spill made a worker that had just taken one
 * spill at its next free (review). */
static void task_cache_spill(struct weft_runtime *rt, weft__worker_t *w, size_t keep) {
  list_spill(rt, &w->free_tasks, &w->free_task_count, keep);
}

uint64_t weft__task_scavenge(struct weft_runtime *rt, weft__worker_t *w, uint64_t now) {
  task_cache_spill(rt, w, 0); /* a parked worker keeps none: each could pin a slab */
  task_slabs_scavenge(rt, now);
  pthread_mutex_lock(&rt->task_lock);
  /* Another pass is worth a wake-up only if descriptors came back since the last one. */
  uint64_t next =
      descriptors_moved_since_the_last_pass(rt) ? rt->task_seen_at + TASK_QUIET_NS : UINT64_MAX;
  /* armed or not (spill_from_thread), under the lock as a spill's request is: a spill comes
   * before this look (and `next` counts it) or after this store (its exchange reads it). */
  nudge_arm(&rt->task_scavenge_nudged, next != UINT64_MAX);
  pthread_mutex_unlock(&rt->task_lock);
  return next;
}

/* The last handle of a descriptor that outlived its runtime's destroy: its slab goes with the
 * last of its orphans. */
static void orphan_free(struct weft_task *t) {
  task_slab_t *slab = slab_of(t);
  /* acq_rel: the one that unmaps the slab sees every other orphan's last touch */
  if (atomic_fetch_sub_explicit(&slab->orphans, 1, memory_order_acq_rel) == 1) {
    slab_diag_free(slab);
    munmap(slab, TASK_SLAB_BYTES);
  }
}

/* A named task's descriptor forgets its name under task_lock, before the call that freed it
 * (a handle's release, a join) returns: weft.h lets the user free the string then, and the
 * dump and the watchdog read names under that lock (review, session 25: a dump formatted a
 * name freed after weft_join; ASan). An unnamed task pays a load from its slab's header,
 * whose line weft__task_rt has just read. */
void weft__task_forget_name(struct weft_runtime *rt, struct weft_task *t) {
  weft__task_diag_t *d = weft__task_diag(t);
  /* relaxed: the owner's own name (set by whoever holds the handle, which is being freed) */
  if (WEFT__LIKELY(!d) || atomic_load_explicit(&d->name_id, memory_order_relaxed) !=
                              atomic_load_explicit(&t->id, memory_order_relaxed))
    return;
  pthread_mutex_lock(&rt->task_lock);
  atomic_store_explicit(&d->name_id, 0, memory_order_relaxed); /* relaxed: under the lock */
  pthread_mutex_unlock(&rt->task_lock);
}

void weft__task_free(struct weft_runtime *rt, weft__worker_t *w, struct weft_task *t) {
  /* Before the poison: a descriptor that reads free may have its slab's names array
   * unmapped by the scavenger. An orphan's runtime is gone, and with it every dump. */
  if (WEFT__LIKELY(!t->orphan)) weft__task_forget_name(rt, t);
  /* Poison: a release of this handle before the descriptor is reused aborts with a sentence.
   * relaxed: nobody else may touch a freed descriptor. */
  atomic_store_explicit(&t->word, WEFT__TASK_WORD_FREE, memory_order_relaxed);
  if (WEFT__UNLIKELY(t->orphan)) { /* its runtime was destroyed, the handle held */
    orphan_free(t);
    return;
  }
  if (w && w->rt == rt) { /* a list beyond WEFT__TASK_CACHE_MAX (internal.h) spills half */
    if (WEFT__UNLIKELY(weft__task_cache_put(w, t) > WEFT__TASK_CACHE_MAX))
      task_cache_spill(rt, w, WEFT__TASK_CACHE_MAX / 2);
    return;
  }
  thread_free(rt, t);
}

/* ---- Destroy's step for tasks -------------------------------------------------------------- */

static bool task_is_free(struct weft_task *t) {
  /* relaxed: the workers have stopped and pthread_join ordered their writes before ours;
   * others may still CAS a live word (a thread starting an await), never a free one. */
  return atomic_load_explicit(&t->word, memory_order_relaxed) == WEFT__TASK_WORD_FREE;
}

size_t weft__tasks_cancel_all(struct weft_runtime *rt) {
  size_t unfinished = 0;
  /* The lock keeps the slab list still (the scavenger moves slabs under it); descriptors end
   * and are freed meanwhile, which the cancel tolerates (it touches only the state word). */
  pthread_mutex_lock(&rt->task_lock);
  task_store_t *st = rt->task_store;
  for (task_slab_t *slab = st ? st->slabs : NULL; slab; slab = slab->next)
    for (size_t i = 0; i < TASK_SLAB; i++) {
      struct weft_task *t = &slab->tasks[i];
      /* acquire: a DONE we see comes with the end of the task's touches */
      if (atomic_load_explicit(&t->word, memory_order_acquire) & WEFT__DONE) continue;
      unfinished++;
      weft_cancel(t);
    }
  pthread_mutex_unlock(&rt->task_lock);
  return unfinished;
}

enum { UNFINISHED_NAMED_MAX = 1000 }; /* picked: a line each, then one line for the rest */

/* Names, on stderr, each task the shutdown could not end (the workers have stopped), the first
 * UNFINISHED_NAMED_MAX of them, then says how many more (a line costs ~5 system calls: review
 * P, 10^6 of them were seconds). Written as destroy's line about a held worker is
 * (weft__stderr_try_line: a stderr nobody reads cannot block destroy, review N, session 38);
 * once a line is dropped the rest are too. */
static void report_unfinished(struct weft_runtime *rt) {
  task_store_t *st = rt->task_store;
  bool heard = true;
  size_t named = 0, more = 0;
  for (task_slab_t *slab = st ? st->slabs : NULL; heard && slab; slab = slab->next)
    for (size_t i = 0; heard && i < TASK_SLAB; i++) {
      struct weft_task *t = &slab->tasks[i];
      if (atomic_load_explicit(&t->word, memory_order_relaxed) & WEFT__DONE) continue;
      if (named == UNFINISHED_NAMED_MAX) {
        more++;
        continue;
      }
      named++;
      char line[256], name[WEFT__SAMPLED_NAME_MAX];
      /* the name read once: a rename on another thread may clear it between two reads */
      weft__name_shown(name, weft__task_name(t));
      /* A task that never started was still queued when the workers stopped (its cancel
       * ends it only when a worker takes it). relaxed: the workers have stopped. */
      bool started = atomic_load_explicit(&t->started, memory_order_relaxed) & WEFT__STARTED;
      int n = snprintf(line, sizeof line,
                       "weft: weft_runtime_destroy: task '%s' (id %llu) %s\n", name,
                       (unsigned long long)t->id,
                       started ? "did not end after its cancel; discarded where it waits"
                               : "never started (queued when the workers stopped); discarded");
      size_t len = n < 0 ? 0 : n < (int)sizeof line ? (size_t)n : sizeof line - 1;
      heard = weft__stderr_try_line(line, len);
    }
  if (heard && more) {
    char line[128];
    int n = snprintf(line, sizeof line,
                     "weft: weft_runtime_destroy: and %zu more tasks discarded, not named\n", more);
    if (n > 0 && n < (int)sizeof line) weft__stderr_try_line(line, (size_t)n);
  }
}

/* Step 1: a discarded task's waiter nodes (on its stack, unmapped soon) leave the words of
 * what it awaited — futures, tasks of other runtimes — waiting out a concurrent deliverer. */
static void unlink_discarded_waiters(struct weft_runtime *rt) {
  task_store_t *st = rt->task_store;
  for (task_slab_t *slab = st ? st->slabs : NULL; slab; slab = slab->next)
    for (size_t i = 0; i < TASK_SLAB; i++)
      if (!task_is_free(&slab->tasks[i])) weft__wait_abandon(&slab->tasks[i]);
}

/* Step 3's second half: what weft's own calls held on a discarded task's stack (its records,
 * weft__discard_hook_t: handles, heap arrays) is given back, once every discarded task's
 * nodes have left every list (a record may free nodes: weft_wait_any's). Before orphan_held:
 * the handles they release make no orphans. A task run inline shares its awaiter's stack: the
 * list is emptied as it runs, so each record runs once. */
/* The runtime whose discarded tasks run_discard_hooks is visiting on this thread. */
static __thread struct weft_runtime *discarding_rt;

void weft__task_release_discarded(weft_task_t *t) {
  /* Another runtime's task (a straggler joined it) stays held, as before session 23: that
   * runtime may be in its own destroy on another thread, whose lock and lists this one must
   * not touch (review, session 23). */
  if (!t || weft__task_rt(t) != discarding_rt) return;
  uintptr_t s = atomic_load_explicit(&t->word, memory_order_relaxed); /* relaxed: as task_is_free */
  /* Every discarded task's nodes have left every word by now: nodes left are outside ones; so
   * is BUSY while not done, an outside awaiter between its unlink's two steps (join_impl.h,
   * join_remove_waiter: review, session 23 reproduced the fault). */
  if (!(s & WEFT__DONE) && (s & ~(uintptr_t)(WEFT__DONE | WEFT__RELEASED))) {
    weft__probe_hit(WEFT__PROBE_DISCARD_KEPT);
    return;
  }
  /* weft_task_release's own steps (lib/join.c), kept here so that task.c does not call back
   * into join.c; a discarded task's handles were never released, so r >= 0 */
  int r = join_release_handle(&t->word);
  WEFT__ASSERT(r >= 0);
  if (r > 0) weft__task_free(weft__task_rt(t), NULL, t);
}

/* Step 3's second half: what weft's own calls held on a discarded task's stack (its records,
 * weft__discard_hook_t: handles, heap arrays) is given back, once every discarded task's
 * nodes have left every list (a record may free nodes: weft_wait_any's), and so is the handle
 * of a task that weft_join ran inline (WEFT__JOINED: the join's frame held it). Before
 * orphan_held: the handles they release make no orphans. A task run inline shares its
 * awaiter's stack: the list is emptied as it runs, so each record runs once. */
static void run_discard_hooks(struct weft_runtime *rt) {
  discarding_rt = rt;
  task_store_t *st = rt->task_store;
  for (task_slab_t *slab = st ? st->slabs : NULL; slab; slab = slab->next)
    for (size_t i = 0; i < TASK_SLAB; i++) {
      struct weft_task *t = &slab->tasks[i];
      /* relaxed: the workers have stopped (task_is_free). Done: its stack went back. */
      uint8_t started = atomic_load_explicit(&t->started, memory_order_relaxed);
      if (task_is_free(t) || !started ||
          (atomic_load_explicit(&t->word, memory_order_relaxed) & WEFT__DONE))
        continue;
      for (weft__discard_hook_t *h; (h = t->runs_on->on_discard);) {
        t->runs_on->on_discard = h->next;
        weft__probe_hit(WEFT__PROBE_DISCARD_HOOK);
        h->fn(h->ctx); /* may free descriptors: a freed one reads as free above */
      }
      if (started & WEFT__JOINED) weft__task_release_discarded(t); /* unfinished: not freed */
    }
  discarding_rt = NULL;
}

static void mark_orphan_slab(task_store_t *st, task_slab_t *slab) {
  for (task_region_t *r = st->regions; r; r = r->next)
    if ((char *)slab >= r->base && (char *)slab < r->base + (size_t)TASK_SLAB_BYTES * TASK_REGION_SLABS)
      r->orphan_slabs |= UINT64_C(1) << (((char *)slab - r->base) / TASK_SLAB_BYTES);
}

/* A discarded task is never resumed: its park state leaves PARKING/PARKED for good, so that a
 * weft_cancel of its handle after destroy (the owner's, or a group's) only requests, where
 * winning the park scheduled it on the freed runtime (review, session 32: a spawn that slipped
 * past a bounded shutdown's last walk left a parked task no walk had cancelled; ASan). A CAS:
 * a thread may cancel it at this moment (relaxed: a canceller's CAS adds only its request). */
static void park_state_discarded(struct weft_task *t) {
  uint32_t s = atomic_load_explicit(&t->state, memory_order_relaxed);
  while (!atomic_compare_exchange_weak_explicit(
      &t->state, &s, (s & ~(WK_PHASE | WK_SIDE)) | WK_WOKEN | (WK_BY_COMPLETION << WK_SIDE_SHIFT),
      memory_order_relaxed, memory_order_relaxed)) {
  }
}

/* Step 2: every descriptor whose handle is still held becomes an orphan that its release
 * frees; returns the unfinished ones,
 * linked through result_or_detail (their result is NULL, stored by the completion that ends
 * the list's use of it), to be completed. */
static struct weft_task *orphan_held(struct weft_runtime *rt) {
  struct weft_task *unfinished = NULL;
  task_store_t *st = rt->task_store;
  for (task_slab_t **link = st ? &st->slabs : NULL, *slab; link && (slab = *link);) {
    long orphans = 0;
    for (size_t i = 0; i < TASK_SLAB; i++) {
      struct weft_task *t = &slab->tasks[i];
      uintptr_t s = atomic_load_explicit(&t->word, memory_order_relaxed); /* relaxed: above */
      if (s & WEFT__RELEASED) continue; /* free, or detached: it goes with the slab */
      t->orphan = 1;
      orphans++;
      if (!(s & WEFT__DONE)) {
        park_state_discarded(t);
        t->error = WEFT_ESHUTDOWN;
        /* relaxed: the workers have stopped; step 3 reads it on this thread */
        atomic_store_explicit(&t->result_or_detail, (uintptr_t)unfinished, memory_order_relaxed);
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
    mark_orphan_slab(st, slab);
    *link = slab->next; /* out of the runtime's list: its orphans own it now */
  }
  return unfinished;
}

/* Whether every descriptor is free (the workers have stopped, so the counts are still): the
 * free lists' lengths against the slabs'. Then destroy's walks below have nothing to find,
 * and a runtime that ran 10^6 tasks skips two passes over their 64 MB (~8 ms, session 16). */
static bool tasks_all_free(struct weft_runtime *rt) {
  task_store_t *st = rt->task_store;
  /* Under the lock: a plain thread may return its cache meanwhile (a turn, an exit); the
   * threads' caches count too, taken into the store (one held by a thread at this moment
   * keeps the answer false: the walks then find its descriptors free). */
  pthread_mutex_lock(&rt->task_lock);
  thread_caches_reclaim(rt);
  size_t slabs = 0, free = rt->free_task_total;
  pthread_mutex_unlock(&rt->task_lock);
  for (task_slab_t *slab = st ? st->slabs : NULL; slab; slab = slab->next) slabs++;
  for (int i = 0; i < rt->nworkers; i++) free += rt->workers[i].free_task_count;
  return free == slabs * TASK_SLAB;
}

static void task_unrun_hooked(struct weft_task *t); /* "Starting" below */

/* The unfinished tasks (orphan_held's list) that never started: each one's unrun hook (a
 * group's) gets its arg now, on this thread, while the runtime's sockets are still open
 * (destroy closes them after this step: review of session 34's change, a close called later
 * read the freed socket table). After the walk, not inside it: the user's unrun may release a
 * handle, and a release in the walk decremented a slab's orphan count before the walk stored
 * it (review: the slab stayed mapped for good). relaxed: the workers have stopped, as
 * run_discard_hooks reads it. */
static void unrun_discarded(struct weft_task *t) {
  for (; t; t = (struct weft_task *)atomic_load_explicit(&t->result_or_detail,
                                                          memory_order_relaxed))
    if (!atomic_load_explicit(&t->started, memory_order_relaxed)) task_unrun_hooked(t);
}

void weft__tasks_discard(struct weft_runtime *rt) {
  if (atomic_load_explicit(&rt->abandoned, memory_order_relaxed)) report_unfinished(rt);
  if (tasks_all_free(rt)) return;
  unlink_discarded_waiters(rt);
  run_discard_hooks(rt);
  struct weft_task *t = orphan_held(rt);
  unrun_discarded(t);
  while (t) { /* step 3: threads and other runtimes' tasks that await them get ESHUTDOWN */
    /* read first: a woken awaiter may release t (relaxed: this thread's store) */
    struct weft_task *next =
        (struct weft_task *)atomic_load_explicit(&t->result_or_detail, memory_order_relaxed);
    weft__task_complete(t, NULL);
    t = next;
  }
}

/* For dumps (lib/trace.c): every descriptor whose word is not the free mark. A descriptor may
 * be freed or reused while fn reads it: fn reads only atomics, and says the view is racy. */
void weft__tasks_visit(struct weft_runtime *rt, void (*fn)(struct weft_task *t, void *ctx),
                       void *ctx) {
  pthread_mutex_lock(&rt->task_lock);
  task_store_t *st = rt->task_store;
  for (task_slab_t *slab = st ? st->slabs : NULL; slab; slab = slab->next)
    for (size_t i = 0; i < TASK_SLAB; i++)
      if (!task_is_free(&slab->tasks[i])) fn(&slab->tasks[i], ctx);
  pthread_mutex_unlock(&rt->task_lock);
}

/* ---- Starting ---------------------------------------------------------------------------- */

/* Entry of a task started on its own stack s: the task is its worker's current
 * (weft__task_start). fn and arg are read before weft__task_started puts runs_on and the
 * wait record in their bytes. */
static void task_entry(void *arg) {
  weft__stack_t *s = arg; /* kept here: t may be freed by its completion */
  weft__ctx_entered(&s->ctx);
  struct weft_task *t = weft__current(weft__worker_self());
  weft_fn fn = t->fn;
  void *fn_arg = t->arg;
  weft__task_started(t, s);
  void *result = fn(fn_arg);
  weft__task_complete(t, result);
  weft__worker_t *w = weft__worker_self(); /* may differ from the one that started us */
  weft__set_current(w, NULL);
  w->after = WEFT__AFTER_FINISHED;
  w->after_stack = s;
  weft__ctx_switch(&s->ctx, &w->sched, true);
  __builtin_unreachable();
}

/* The one owner of a hook for tasks that end without running their function (lib/group.c's
 * trampoline and its options' unrun): every registration stores the same pair, fn published
 * after the hook (release/acquire: an older group's task, with the same fn, may be started
 * while a newer group registers). A table of one, not a call into group.c, which would close a
 * cycle in lib/'s link graph. */
static _Atomic(weft_fn) unrun_fn;
static void (*_Atomic unrun_hook)(void *arg);

void weft__task_unrun_hook(weft_fn fn, void (*hook)(void *arg)) {
  /* relaxed: the hook is published by the release below */
  atomic_store_explicit(&unrun_hook, hook, memory_order_relaxed);
  /* release: a thread that sees fn sees the hook (review of this change: an older group's
   * task, fn the same trampoline, could read the new fn and a NULL hook) */
  atomic_store_explicit(&unrun_fn, fn, memory_order_release);
}

/* A task that ends without running, not a frame's: the hook's, if fn is its. */
static void task_unrun_hooked(struct weft_task *t) {
  /* acquire: pairs with the registration's release (the hook comes with fn) */
  if (t->fn == atomic_load_explicit(&unrun_fn, memory_order_acquire))
    atomic_load_explicit(&unrun_hook, memory_order_relaxed)(t->arg);
}

/* A task that ends without running: what its function's caller must still be told. Also
 * lib/join.c's inline run of a task cancelled before it started. */
void weft__task_unrun(struct weft_task *t) {
  if (t->fn == weft__frame_run)
    weft__frame_unrun(t->arg); /* its frame's sync runs it */
  else
    task_unrun_hooked(t);
}

void weft__task_start(weft__worker_t *w, struct weft_task *t) {
  /* a start entry is taken exactly once (relaxed: ours) */
  WEFT__ASSERT(!atomic_load_explicit(&t->started, memory_order_relaxed));
  if (WEFT__UNLIKELY(weft__checkpoint(t))) { /* cancelled before it started: it never runs */
    weft__task_unrun(t);
    /* Counted as run and ended (metrics.c: tasks_run counts it, as the docs say; without the
     * end it stayed live, holding a stack it never had) */
    weft__metric_bump(&w->n_started);
    weft__metric_bump(&w->n_finished);
    weft__task_complete(t, NULL);
    return;
  }
  weft__stack_t *s;
  if (WEFT__UNLIKELY(weft__stack_get(w->rt->stacks, &w->stacks, &s) != 0)) {
    /* Out of stacks or map entries since the spawn checked: the task ends unrun and its
     * awaiter gets WEFT_ENOMEM; the worker and every other task go on. Counted, so that the
     * loss of a detached one is not silent. */
    weft__stat_bump(&w->n_unrun);
    weft__task_unrun(t);
    t->error = WEFT_ENOMEM;
    weft__task_complete(t, NULL);
    return;
  }
  /* Counted only now, not when its entry was taken: a task that ends unrun was never counted
   * as run, so tasks_run never goes down between two snapshots (review, session 19). */
  weft__metric_bump(&w->n_started);
  WEFT_UNPOISON(s->lo, s->bytes); /* a pooled stack keeps the poison of its last task */
  s->ctx.sp = weft__context_make(s->lo + s->bytes, task_entry, s);
  if (weft__san_hooks() & WEFT__SAN_TSAN) {
    /* The spawn edge: acquired here on the scheduler's fiber, carried into the task's by the
     * switch below (flag 0 syncs). Pairs with the release in spawn(). */
    __tsan_acquire(&t->fn);
    s->ctx.tsan_fiber = __tsan_create_fiber(0);
  }
  weft__set_current(w, t);
  weft__ctx_switch(&w->sched, &s->ctx, false);
}

/* ---- Spawning ----------------------------------------------------------------------------- */

/* Ids users see (task dumps, overflow reports) start at 1 and stay small: a worker takes them
 * in blocks from the runtime's counter, so that a spawn costs no shared atomic; a thread that
 * is not a worker takes one at a time. Unique per runtime; in spawn order per worker. */
enum { TASK_ID_BLOCK = 1024 }; /* picked: one shared RMW per 1024 spawns, ids stay dense */

/* A new block, and a clock read for the spawn times (a task that spawns without ever
 * suspending would otherwise stamp its children with the time its slice began). */
static void __attribute__((noinline)) id_block_take(struct weft_runtime *rt, weft__worker_t *w) {
  /* relaxed: uniqueness comes from the RMW itself; ids order nothing */
  w->id_next = atomic_fetch_add_explicit(&rt->next_task_id, TASK_ID_BLOCK, memory_order_relaxed);
  w->id_end = w->id_next + TASK_ID_BLOCK;
  weft__worker_clock(w, weft__coarse_now_ns());
}

static uint64_t next_task_id(struct weft_runtime *rt, weft__worker_t *w) {
  /* relaxed: as above */
  if (!w) return atomic_fetch_add_explicit(&rt->next_task_id, 1, memory_order_relaxed);
  if (WEFT__UNLIKELY(w->id_next == w->id_end)) id_block_take(rt, w);
  return w->id_next++;
}

/* A fresh descriptor's stores (handle held or released), given its id and diag word. */
/* always_inline: spawn's hot path (a call here cost 10 % of fib's instructions) */
static inline __attribute__((always_inline)) void task_fill(struct weft_task *t, weft_fn fn,
                                                            void *arg, bool held, uint64_t id,
                                                            uint64_t born_word) {
  /* relaxed, but atomic: a shutdown's cancel walk reads words of descriptors being reused;
   * the push that schedules the task publishes it. */
  atomic_store_explicit(&t->word, held ? 0 : WEFT__RELEASED, memory_order_relaxed);
  /* result_or_detail: set by the task's first wait or its completion; read by no one before */
  t->fn = fn;
  t->arg = arg;
  t->error = 0;
  /* runs_on and the wait record come at the start (weft__task_started); not started is the
   * diag word's, stored by weft__task_born */
  /* RUNNING (not waiting), no cancel, no shield. relaxed, and atomic: a shutdown's cancel
   * walk may touch a descriptor as it is reused. */
  atomic_store_explicit(&t->state, 0, memory_order_relaxed);
  weft__task_born(t, id, born_word);
}

/* Fills a fresh descriptor (handle held or released). */
static inline __attribute__((always_inline)) void task_init(struct weft_runtime *rt,
                                                            weft__worker_t *w, struct weft_task *t,
                                                            weft_fn fn, void *arg, bool held) {
  uint64_t id = next_task_id(rt, w); /* first: it may refresh w's clock */
  uint64_t born_word;
  if (w) {
    weft__stat_bump(&w->n_spawned);
    born_word = w->born_word;
  } else { /* relaxed: a statistic */
    atomic_fetch_add_explicit(&rt->foreign_spawns, 1, memory_order_relaxed);
    born_word = weft__born_word(weft__coarse_now_ns());
  }
  task_fill(t, fn, arg, held, id, born_word);
  /* The spawn edge: what the spawner wrote before spawning happens before the task starts
   * (pairs with the acquire in weft__task_start/run_inline). Keyed on &t->fn, not t, which
   * is &t->word, the completion edge's key. */
  weft__tsan_release(&t->fn);
}

/* WEFT_TRACE=sites: where t was spawned (relaxed: a dump's racy snapshot). */
static void __attribute__((noinline, cold)) record_site(struct weft_task *t, void *site) {
  /* No site (a frame's runner): no array is made to hold it; one that exists forgets the last
   * life's. Out of memory: no site for this task (the slab has no array, so a dump prints
   * none); the spawn itself succeeded, and tracing is best effort. */
  weft__task_diag_t *d = site ? weft__task_diag_make(t) : weft__task_diag(t);
  if (d) atomic_store_explicit(&d->site, site, memory_order_relaxed);
}

struct weft_task *weft__task_make(struct weft_runtime *rt, weft__worker_t *w, weft_fn fn,
                                  void *arg) {
  struct weft_task *t = task_alloc(rt, w);
  if (t) task_init(rt, w, t, fn, arg, false);
  if (t && WEFT__UNLIKELY(rt->spawn_sites)) record_site(t, NULL); /* a frame's runner: none */
  return t;
}

/* A spawn's first half: checks, a descriptor, its fields; nothing published yet. */
static inline int spawn_make(struct weft_runtime *rt, weft__worker_t *w, weft_fn fn, void *arg,
                             bool held, struct weft_task **made) {
  if (WEFT__UNLIKELY(!fn)) return WEFT_EINVAL;
  /* relaxed: a best-effort early answer; the shutdown cancels whatever still slips in */
  if (WEFT__UNLIKELY(atomic_load_explicit(&rt->closing, memory_order_relaxed)))
    return WEFT_ESHUTDOWN;
  /* Stacks are taken when a worker starts the task, not here; but a spawn that could not
   * get one now fails now, while the caller can still handle it. */
  int err = weft__stack_ready(rt->stacks, w ? &w->stacks : NULL);
  if (WEFT__UNLIKELY(err)) return err;
  struct weft_task *t = task_alloc(rt, w);
  if (WEFT__UNLIKELY(!t)) return WEFT_ENOMEM;
  task_init(rt, w, t, fn, arg, held);
  *made = t;
  return 0;
}

/* The second half: the push that publishes it. */
static int spawn_place(weft__worker_t *w, struct weft_task *t, bool may_run_first);

/* may_run_first: weft_spawn's (not weft_runtime_spawn's: weft_group_spawn's, under its lock) */
static inline void spawn_publish(struct weft_runtime *rt, weft__worker_t *w, struct weft_task *t,
                                 bool may_run_first) {
  if (w && !w->chaos) /* as the fast path's (chaos mode explores steals: every spawn pushed) */
    spawn_place(w, t, may_run_first);
  else if (w)
    weft__schedule_local(w, (uintptr_t)t);
  else
    weft__schedule(rt, (uintptr_t)t);
}

/* A spawn from outside the runtime's workers (a plain thread, another runtime's task) that may
 * have raced a shutdown past spawn_make's early look: we filled our descriptor and now look at
 * `closing` (lib/shutdown_impl.h: either we see it and cancel our task before anyone can run
 * it, or the shutdown's walk sees the descriptor live and cancels it). A spawn by one of the
 * runtime's tasks needs no fence (the two clean walks cover it). Cost: a fence per foreign
 * spawn, a path that already takes a locked instruction to publish. */
static void __attribute__((noinline)) cancel_if_closing(struct weft_runtime *rt,
                                                        struct weft_task *t) {
  if (weft__shutdown_spawn_sees_closing(&rt->closing)) weft_cancel(t);
}

/* noinline: inlined into weft_spawn, its calls made the fast path save five registers */
static int __attribute__((noinline)) spawn(struct weft_runtime *rt, weft__worker_t *w,
                                           weft_task_t **out, weft_fn fn, void *arg,
                                           bool may_run_first) {
  struct weft_task *t;
  int err = spawn_make(rt, w, fn, arg, out != NULL, &t);
  if (WEFT__UNLIKELY(err)) return err;
  if (!w) cancel_if_closing(rt, t);
  if (out) *out = t;
  spawn_publish(rt, w, t, may_run_first);
  return 0;
}

/* spawn, and the site recorded before the push publishes the task (WEFT_TRACE=sites). */
static int __attribute__((noinline, cold)) spawn_at(struct weft_runtime *rt, weft__worker_t *w,
                                                    weft_task_t **out, weft_fn fn, void *arg,
                                                    void *site, bool may_run_first) {
  struct weft_task *t;
  int err = spawn_make(rt, w, fn, arg, out != NULL, &t);
  if (err) return err;
  if (!w) cancel_if_closing(rt, t);
  record_site(t, site);
  if (out) *out = t;
  spawn_publish(rt, w, t, may_run_first);
  return 0;
}

/* ---- Child first ----------------------------------------------------------------------------
 * A spawn storm — a task spawning far faster than its children run — queues every child: 10^6
 * spawns hold 10^6 descriptors (64 MB, most of spawn 10^6's time the kernel zeroing their
 * pages, bench/README.md) while the one or two workers that could run them fall behind. Once
 * this worker's deque holds spawn_throttle entries (weft_options_t; no ready task there would
 * start soon anyway), a spawn runs its child first: the spawner goes back onto its own deque
 * as the newest entry — stealable, and the next one this worker takes — and the child starts
 * at once on this worker (weft__spawn_child_first, lib/worker.c). An empty child then ends
 * before the next spawn, so its descriptor and stack go back to the worker's caches still
 * warm, and the storm runs in constant memory; at most spawn_throttle spawners per worker wait
 * so (see child_first_wanted: a chain of spawns would otherwise hold a stack per link). This
 * is libomp's task throttling (a thread whose deque holds 256 tasks runs its next task at
 * once) and Cilk's work-first order, with one difference that a coroutine runtime needs: the spawner waits in a queue, not under its child's frames, so a
 * child that waits for its spawner (a channel, a future the spawner resolves later) cannot
 * deadlock it — the spawner is the next task this worker runs. Rejected: running the child
 * inline on the spawner's stack (weft_join's inline run): no switches, but a child that
 * blocks would block its spawner with it; and a user-level throttle (a weft_yield every k
 * spawns, session 19's experiment): at 2 workers the yielded spawner was stolen back and
 * forth, 170–950 ms. The deque's depth is a hint: a thief's stale top only makes it look
 * deeper, and the next spawn looks again.
 * Off by default, an option (weft.h): it makes weft_spawn a point where the caller pauses and
 * may resume on another thread, which code that holds a pthread mutex across a spawn — as
 * weft_group_spawn does — cannot survive (the child, on the same thread, would take the same
 * mutex). So only weft_spawn's own paths (may_run_first) throttle, never weft_runtime_spawn's
 * (the group's), chaos mode's (its spawns take spawn()'s path, which explores steals), nor a
 * spawn outside a task. */

/* Whether t's spawn should run it first: the deque and the private run (n) hold the throttle's
 * depth (may: weft_spawn's, not a spawn under a lock such as weft_group_spawn's), and fewer
 * than that many spawners wait here for children run first. While the queues are deep,
 * priv_limit 1 sends every spawn of the fast path here to be asked. The cap on held spawners:
 * a chain (each task spawns the next and returns) finds the deque deep at every link, and
 * without it each link stayed suspended, its stack held, until the chain's end — O(n) stacks
 * where the chain needs O(1) unthrottled (review, session 21: 10^5 links, 420 MB). */
static inline bool child_first_wanted(weft__worker_t *w, uint32_t n, bool may) {
  if (WEFT__LIKELY(!w->throttle_depth)) return false;
  bool deep = weft__deque_looks_deeper_than(&w->deque, (int64_t)w->throttle_depth - n);
  w->priv_limit = deep ? 1 : WEFT__PRIV_CAP;
  return deep && may && weft__current(w) && weft__spawners_held(w) < w->throttle_depth;
}

/* The child first: what is kept private goes onto the deque before it (nothing kept waits
 * behind a task we start, as in the loop's local_work). */
static int __attribute__((noinline)) spawn_run_first(weft__worker_t *w, struct weft_task *t,
                                                     uint32_t n) {
  if (n) weft__priv_share(w);
  return weft__spawn_child_first(w, t);
}

/* Where a spawn goes that spawn_local did not keep private at once (lib/worker.c's "Private
 * spawns"): private, unless a thief or a parker asked, the private run is full, a worker is
 * idle (see spawn_local), or it would be the only task queued here — that one is pushed at
 * once, so that a parent that spawns one child and then computes for long without a
 * suspension point does not keep it from idle workers. What an ask or a full run finds private
 * is pushed first, oldest first. */
static int __attribute__((noinline)) spawn_place(weft__worker_t *w, struct weft_task *t,
                                                  bool may_run_first) {
  uint32_t n = atomic_load_explicit(&w->npriv, memory_order_relaxed); /* relaxed: our own */
  bool idle = weft__workers_idle(w->rt); /* as spawn_local's */
  /* acquire: as spawn_local's */
  if (n == WEFT__PRIV_CAP || (idle && n) ||
      atomic_load_explicit(&w->frames.splitreq, memory_order_acquire)) {
    weft__priv_share(w);
    n = 0;
  }
  if (WEFT__UNLIKELY(child_first_wanted(w, n, may_run_first))) return spawn_run_first(w, t, n);
  /* A stale top (it only grows) can only make the deque look fuller: the spawn then stays
   * private, which an ask corrects. */
  if (idle) return weft__schedule_local_announced(w, (uintptr_t)t);
  if (n == 0 && weft__deque_looks_empty(&w->deque)) return weft__schedule_local(w, (uintptr_t)t);
  w->priv[n] = (uintptr_t)t;
  atomic_store_explicit(&w->npriv, n + 1, memory_order_relaxed); /* relaxed: metrics' hint */
  return 0;
}

/* spawn_local's push, announced because a worker was seen idle (r 1: wake an idle worker if no
 * one looks; deque_impl.h's push_fit_as says why even a push onto a non-empty deque must), or
 * full (WD_FULL: nothing pushed yet; weft__schedule_local_announced grows it, or spills to the
 * inject queue). */
static int __attribute__((noinline)) spawn_pushed_rare(weft__worker_t *w, struct weft_task *t,
                                                       int r) {
  if (r == WEFT__DEQUE_FULL) return weft__schedule_local_announced(w, (uintptr_t)t);
  weft__wake_one_if_needed(w->rt);
  return 0;
}

/* spawn_local's end under TSan: the spawn edge, then the placement. */
static int __attribute__((noinline, cold)) spawn_push_tsan(weft__worker_t *w, struct weft_task *t) {
  weft__tsan_release(&t->fn); /* as task_init's */
  return spawn_place(w, t, true);
}

/* A worker's spawn (#13). The common case — a descriptor and a stack in the worker's caches,
 * an id left in its block, the runtime open — calls nothing: the task goes into the worker's
 * private spawns (session 10; a deque push before), and what is rare after it is a tail call:
 * no registers to save, no frame (spawn() kept them all live across its possible calls).
 * Everything else is spawn()'s, which checks and counts (the test build's
 * fault countdowns) in the same order: this path runs each countdown only where spawn()
 * would, after the same checks. */
static inline int spawn_local(weft__worker_t *w, weft_task_t **out, weft_fn fn, void *arg) {
  struct weft_runtime *rt = w->rt;
  struct weft_task *t = w->free_tasks;
  /* relaxed (closing): as spawn_make's */
  if (WEFT__UNLIKELY(!fn || !t || !w->stacks.head || w->id_next == w->id_end ||
                     atomic_load_explicit(&rt->closing, memory_order_relaxed)))
    return spawn(rt, w, out, fn, arg, true);
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_STACK))) return WEFT_ENOMEM; /* stack_ready's */
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_TASK))) return WEFT_ENOMEM;  /* task_alloc's */
  w->free_tasks = t->next;
  w->free_task_count--;
  weft__stat_bump(&w->n_spawned);
  task_fill(t, fn, arg, out != NULL, w->id_next++, w->born_word);
  if (out) *out = t;
  if (WEFT__UNLIKELY(weft__san_hooks() & WEFT__SAN_TSAN)) return spawn_push_tsan(w, t);
  /* Private (session 10): a slot and a count, no atomic instruction — unless this is the first
   * entry (the placement decides), the run is full, someone asked (acquire: as the frames'
   * push, frame_impl.h: pairs with a parker's release, so that the wake check after our
   * share sees it counted as idle; a plain load on x86), or a worker is idle: a parked one
   * asked when it parked, but a burst of spawns is over before its wake-up (~84 µs) lets it
   * ask again, and a parent that then computes would keep all but its first child (review:
   * fan-out ran serially); a spinner would find nothing until our next spawn. fib's steady
   * state has every worker busy. */
  uint32_t n = atomic_load_explicit(&w->npriv, memory_order_relaxed); /* relaxed: our own */
  if (WEFT__LIKELY(!atomic_load_explicit(&w->frames.splitreq, memory_order_acquire))) {
    bool idle = weft__workers_idle(rt);
    if (WEFT__LIKELY(!idle && n - 1 < w->priv_limit - 1)) {
      w->priv[n] = (uintptr_t)t;
      atomic_store_explicit(&w->npriv, n + 1, memory_order_relaxed); /* relaxed: metrics' */
      return 0;
    }
    if (idle && n == 0 && WEFT__LIKELY(w->priv_limit != 1)) {
      /* Nothing kept and a worker idle (a spawn storm beside a thief): the plain push inline,
       * without the growth call (push_fit: the registers that call needs saved would cost
       * every spawn), its other outcomes out of line (through spawn_place: +13 % on spawn
       * 10^6). */
      int r = weft__deque_push_fit_as(&w->deque, (uintptr_t)t, true); /* announced: below */
      return spawn_pushed_rare(w, t, r);
    }
  }
  return spawn_place(w, t, true);
}

static weft__worker_t *worker_of(struct weft_runtime *rt) {
  weft__worker_t *w = weft__worker_self();
  return w && w->rt == rt ? w : NULL;
}

/* weft_spawn's slow path (chaos mode, spawn sites): out of line, so that weft_spawn stays a
 * tail call. */
static int __attribute__((noinline, cold)) spawn_hooked(weft__worker_t *w, weft_task_t **task,
                                                       weft_fn fn, void *arg, void *site) {
  int err = w->rt->spawn_sites ? spawn_at(w->rt, w, task, fn, arg, site, true)
                                : spawn(w->rt, w, task, fn, arg, true);
  w = weft__worker_self(); /* a spawn that ran its child first may resume elsewhere */
  if (w->chaos) weft__chaos_point(weft__current(w)); /* may yield: w is not used after it */
  return err;
}

int weft_spawn(weft_task_t **task, weft_fn fn, void *arg) {
  weft__worker_t *w = weft__worker_self();
  if (!w || !weft__current(w)) return WEFT_EPERM;
  if (WEFT__UNLIKELY(w->spawn_hooks))
    return spawn_hooked(w, task, fn, arg, __builtin_return_address(0));
  return spawn_local(w, task, fn, arg);
}

int weft__spawn_at(weft_task_t **task, weft_fn fn, void *arg, void *site) {
  weft__worker_t *w = weft__worker_self();
  if (!w || !weft__current(w)) return WEFT_EPERM;
  if (WEFT__UNLIKELY(w->spawn_hooks)) return spawn_hooked(w, task, fn, arg, site);
  return spawn_local(w, task, fn, arg);
}

int weft__runtime_spawn_at(weft_runtime_t *rt, weft_task_t **task, weft_fn fn, void *arg,
                           void *site) {
  if (!rt) return WEFT_EINVAL;
  if (WEFT__UNLIKELY(rt->spawn_sites))
    return spawn_at(rt, worker_of(rt), task, fn, arg, site, false);
  return spawn(rt, worker_of(rt), task, fn, arg, false);
}

int weft_runtime_spawn(weft_runtime_t *rt, weft_task_t **task, weft_fn fn, void *arg) {
  return weft__runtime_spawn_at(rt, task, fn, arg, __builtin_return_address(0));
}

/* ---- Identity ----------------------------------------------------------------------------- */

/* For the functions that return no code: a NULL handle aborts, naming the function called. */
static void check_handle(const struct weft_task *t, const char *what) {
  if (WEFT__UNLIKELY(!t)) weft__die("weft: %s was given a NULL task handle.", what);
}


weft_task_t *weft_current(void) {
  weft__worker_t *w = weft__worker_self();
  return weft__running_task(w);
}

int weft_task_set_name(weft_task_t *t, const char *name) {
  check_handle(t, "weft_task_set_name");
  weft__task_diag_t *d = weft__task_diag_make(t);
  if (!d) return WEFT_ENOMEM;
  /* relaxed: names order nothing; a dump that sees the id before the name shows a stale or
   * no name, as racy snapshots may */
  /* The order weft__task_name's checks rely on: no name (no id is 0), the name (release:
   * after the 0), then the id (release: after the name). */
  atomic_store_explicit(&d->name_id, 0, memory_order_relaxed);
  atomic_store_explicit(&d->name, name, memory_order_release);
  atomic_store_explicit(&d->name_id, atomic_load_explicit(&t->id, memory_order_relaxed),
                        memory_order_release);
  /* relaxed: read by weft_join's inline path on the joining thread, after the run that named
   * the task or after the holder's own call (lib/join.c, join_inline) */
  atomic_fetch_or_explicit(&t->state, WK_NAMED, memory_order_relaxed);
  return 0;
}

const char *weft_task_name(const weft_task_t *t) {
  check_handle(t, "weft_task_name");
  return weft__task_name((struct weft_task *)t);
}

uint64_t weft_task_id(const weft_task_t *t) {
  check_handle(t, "weft_task_id");
  return t->id;
}

/* ---- Completion: the join counter's delivering side ------------------------------------------
 * What a task's end, a cancel, a timer and destroy do to the tasks and threads that wait on it:
 * the completion word's delivery (protocol in join_impl.h), the join counter's arrivals, the
 * park hand-off's commit, and the wait records destroy reads. The waiting side — awaits,
 * gather, timed and thread waits — is lib/join.c's, which calls these; the worker and this
 * file call them at a task's end and at a suspension, so they live here, below the API. */

/* True for the first of completion and timeout to claim a thread's timed join. */
bool weft__join_claim_fired(weft__join_t *j, uint32_t side) {
  uint32_t expected = 0;
  /* acq_rel: the winner's release reaches the thread through its wake word's release */
  return atomic_compare_exchange_strong_explicit(&j->fired, &expected, side,
                                                 memory_order_acq_rel, memory_order_acquire);
}

/* ---- Events and the park hand-off ----------------------------------------------------------- */

/* An event for a join's waiter: a task is woken through its park state (wake_impl.h); a thread
 * through its wake word, after a timed wait's claim (the thread times out by itself). */
void weft__join_event(weft__join_t *j, uint32_t side) {
  struct weft_task *t = j->task; /* read first: once woken, the waiter (and j) may go on */
  if (t) {
    if (wake_wake(&t->state, side) == WK_WON_PARKED)
      weft__schedule(weft__task_rt(t), (uintptr_t)t | WEFT__ENTRY_RESUME);
    return;
  }
  if ((j->timed || j->any) && !weft__join_claim_fired(j, side)) return; /* one wake per thread wait */
  join_signal_thread(&j->thread_word);
}

/* A completion arrives: the last child of a gather (or any child of an any-wait) wakes the
 * waiter. A deliverer's later touches of the join end with its word's BUSY, which a waiter
 * that leaves without all arrivals waits out (join_remove_waiter). */
void weft__join_arrive(weft__join_t *j) {
  if (j->any || join_count_release(&j->pending)) weft__join_event(j, WK_BY_COMPLETION);
}

void weft__park_commit(weft__worker_t *w, struct weft_task *t) {
  if (wake_park_commit(&t->state)) weft__schedule_local(w, (uintptr_t)t | WEFT__ENTRY_RESUME);
}

/* A timer woke t, which will resume where it suspended (#13, session 14): its stack record
 * (the saved sp) and the frames around its join — the switch's saved registers below it, the
 * callers' frames above — are cold by then (10^4 sleepers' frames do not stay in cache across
 * a 1 ms sleep), and the resume's pops and returns took their misses one at a time (gather
 * 10^4: a fifth of the samples). Prefetched here, a batch of fires (timer.c) before the first
 * of them resumes: the lines from 192 bytes below the join to 191 above it. A window of lines,
 * not the exact frames: their bounds are in the stack record, itself a miss. Prefetches are
 * hints that never fault (x86-64 PREFETCHh, AArch64 PRFM), so a line past the top of a
 * shallower wait's stack (the next stack's guard) is harmless.
 * Rejected: prefetching at the resume (too late: the switch is the next instruction). */
static inline void prefetch_frames(struct weft_task *t, weft__join_t *j) {
  const char *at = (const char *)j;
  for (int k = -FRAMES_BELOW; k < FRAMES_ABOVE; k++) __builtin_prefetch(at + 64 * k, 1);
  __builtin_prefetch(&t->runs_on->ctx, 0);
}

/* A task's timer (a sleep, a deadline) fired. timer_done is the last touch of the join unless
 * we won a parked task, which cannot run before we schedule it. */
static void park_timer_fire(weft__timer_entry_t *e) {
  weft__join_t *j = e->ctx;
  struct weft_task *t = j->task;
  int won = wake_wake(&t->state, WK_BY_TIMER);
  atomic_store_explicit(&j->timer_done, 1, memory_order_release); /* release: the waiter may go */
  if (won == WK_WON_PARKED) {
    prefetch_frames(t, j);
    weft__schedule(weft__task_rt(t), (uintptr_t)t | WEFT__ENTRY_RESUME);
  }
}

/* The wait record's marker for an untimed wait (a timed one is marked by its callback). Never
 * armed: a wait record is not a timer. */
static void join_wait_marker(weft__timer_entry_t *e) {
  (void)e;
  weft__die("weft: internal error: a join wait record was armed as a timer.");
}

/* While a task is suspended on j, destroy can find j (and j's nodes) from the task. */
void weft__wait_record_begin(struct weft_task *self, weft__join_t *j, bool timed) {
  j->timer.fire = timed ? park_timer_fire : join_wait_marker;
  j->timer.ctx = j;
  j->timer.touch = self;
  atomic_init(&j->timer.state, 0); /* idle (timer.c's TIMER_IDLE): not armed yet */
  self->wait = &j->timer;
}

void weft__wait_record_end(struct weft_task *self) { self->wait = NULL; }

/* t's join while it waits on one; NULL if it waits on another file's record or not at all. */
static weft__join_t *wait_record(struct weft_task *t) {
  weft__timer_entry_t *e = t->wait;
  bool waiting = e && (e->fire == join_wait_marker || e->fire == park_timer_fire);
  return waiting ? e->ctx : NULL;
}

void weft__join_remove_nodes(weft__join_t *j) {
  for (size_t k = 0; k < j->nnodes; k++) join_remove_waiter(j->nodes[k].word, &j->nodes[k]);
}

void weft__wait_abandon(struct weft_task *t) {
  /* relaxed: destroy reads it after the workers stopped. Not started: no wait record (the
   * union holds fn and arg). */
  if (!atomic_load_explicit(&t->started, memory_order_relaxed)) return;
  weft__join_t *j = wait_record(t);
  if (j) {
    weft__join_remove_nodes(j);
    if (j->abandon) j->abandon(t, j->abandon_ctx);
    return;
  }
  /* Another file's wait record (lib/sync.c's direct wait on a waiter queue): never armed as
   * a timer, its fire is its abandon. */
  if (t->wait) t->wait->fire(t->wait);
}

/* Out of line: inlined into weft__task_complete, it made every completion (most have no
 * waiter) save five registers: +6 instructions a task (callgrind, skynet). */
void __attribute__((noinline)) weft__wake_waiters(weft__waiter_t *node) {
  while (node) {
    weft__waiter_t *next = node->next; /* read first: the node dies once its join is done */
    weft__join_arrive(node->join);
    node = next;
  }
}

/* ---- Completion --------------------------------------------------------------------------- */

void weft__task_complete(struct weft_task *t, void *result) {
  /* A task that a cancel reached (a suspension point returned WEFT_ECANCELED to it, or it was
   * cancelled before it started) ends cancelled unless it set an error of its own: exactly
   * one outcome, and no result beside WEFT_ECANCELED. relaxed: the task's own bits. */
  if ((atomic_load_explicit(&t->state, memory_order_relaxed) & WK_CANCEL_DELIVERED) && !t->error)
    t->error = WEFT_ECANCELED;
  /* relaxed: the completion word's release below publishes it */
  atomic_store_explicit(&t->result_or_detail, (uintptr_t)(t->error == WEFT_ECANCELED ? NULL : result),
                        memory_order_relaxed);
  /* The completion edge, before DONE is published: pairs with the acquire in every call that
   * returns a task's result (awaited, gathered, polled). */
  weft__tsan_release(&t->word);
  struct weft_runtime *rt = weft__task_rt(t); /* read now: once delivered, its owner may free t */
  uintptr_t s = join_complete(&t->word);
  weft__waiter_t *waiters = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS);
  if (!waiters) {
    if (s & WEFT__RELEASED) weft__task_free(rt, weft__worker_self(), t);
    return;
  }
  weft__wake_waiters(waiters);
  if (join_finish_waking(&t->word)) weft__task_free(rt, weft__worker_self(), t);
}

_Static_assert(WEFT__CANCEL_REQUESTED == WK_CANCEL_REQUESTED, "internal.h's inline checkpoint");
bool weft__checkpoint_slow(struct weft_task *self) { return wake_checkpoint(&self->state); }

int weft_cancel(weft_task_t *t) {
  if (WEFT__UNLIKELY(!t)) return WEFT_EINVAL;
  if (wake_cancel(&t->state) == WK_WON_PARKED)
    weft__schedule(weft__task_rt(t), (uintptr_t)t | WEFT__ENTRY_RESUME);
  return 0;
}

/* A fork-join frame's runner (lib/frame.c): its end is a completion too. */
static void frame_complete(weft__frame_t *f) {
  /* The frame edge: the result (or unrun) happens before the owner's read (frame_wait). */
  weft__tsan_release(&f->word);
  uintptr_t s = join_complete(&f->word);
  weft__waiter_t *waiters = (weft__waiter_t *)(s & ~WEFT__WORD_FLAGS);
  if (!waiters) return; /* the owner had not waited yet: f may be gone from here on */
  weft__wake_waiters(waiters);
  join_finish_waking(&f->word); /* its answer is about handles: frames have none */
}

void *weft__frame_run(void *frame) {
  weft__frame_t *f = frame;
  f->result = f->fn(f->arg);
  frame_complete(f);
  return NULL;
}

void weft__frame_unrun(weft__frame_t *f) {
  f->unrun = 1;
  frame_complete(f);
}
