/*
 * Task stacks: mapped in slabs, guarded, cached per worker, trimmed when idle, reported on
 * overflow.
 *
 * What it costs. A stack is virtual memory until touched; a touched 4 KiB page costs ~1.2 µs
 * of kernel time on this VM and stays resident until given back. So the design keeps a small
 * working set hot and gives the rest back once it has sat unused:
 *   - Slabs: one mmap holds many stacks (as many as fit in ~2 MiB, at least one), so mapping
 *     is not a syscall per task. MAP_NORESERVE: untouched pages cost nothing.
 *   - Guards: below each stack, a guard region of weft_options_t.guard_size (64 KiB default).
 *     With MADV_GUARD_INSTALL (Linux ≥ 6.13) a guard costs no map entry, and its size barely
 *     matters: measured per stack (20 000 stacks of 64 KiB): 1 page 0.40–0.58 µs, 16 pages
 *     0.49–0.58 µs, 64 pages 0.83–0.87 µs; page tables 135 / 253 / 628 B per touched stack;
 *     munmap at destroy ~0.1 µs per stack with 1 page, 0.3–0.47 µs with 16 (the markers are
 *     zapped page by page) — paid once per stack ever mapped, not per task.
 *     So 16 pages: a frame that overshoots its stack by up to 64 KiB traps even in code built
 *     without -fstack-clash-protection, for no extra install cost. Without GUARD_INSTALL,
 *     mprotect (1.4–2.1 µs, any size) splits the mapping: two map entries per stack whatever
 *     the guard's size, and vm.max_map_count (65530) ends at ~32k stacks — then mprotect fails
 *     with ENOMEM and we report WEFT_ENOMEM from the spawn, so the process keeps the map
 *     entries it needs for threads and for the tasks already running.
 *   - Caches: each worker keeps a LIFO cache of free stacks (the most recently used, hottest
 *     one first), bounded; the surplus goes to the pool under a mutex, onto its used list
 *     (newest first, stamped with the time). Refills take used stacks first, then clean ones
 *     (below), then map a slab — outside the lock, which is never held across a syscall on the
 *     spawn or start paths (slab_map).
 *     Rejected: munmap on free (a syscall and fresh page faults per task), one global lock-free
 *     stack (ABA, and the line bounces between workers on every spawn).
 *   - Trimming (weft__stack_scavenge, run by a worker about to park): the worker hands its
 *     cache beyond IDLE_CACHE_KEEP to the pool; then stacks that sat on the used list for
 *     ≥ TRIM_AGE_NS, beyond its HOT_KEEP newest, are taken from its tail (oldest first) in
 *     batches of TRIM_BATCH, given back with MADV_DONTNEED outside the lock, and filed on the
 *     clean list. The list a stack is on is its dirty bit: a clean stack is never madvised
 *     again, and the spawn and finish paths do not change at all. The worker parks no longer
 *     than until the next batch is due, so an idle runtime gives its memory back too; once
 *     nothing is left it parks without a deadline, as before. Measured: after 10^5 sleepers,
 *     RSS fell from ~420 MB to 28 MB 1 s after they ended, 16 MB (8 MB before the burst)
 *     once the descriptor slabs went too (task.c).
 *     The cost: a task given a trimmed stack faults its pages in again (~1.2 µs each), which a
 *     one-second age keeps off steady workloads; and a runtime that never idles never trims.
 *     Rejected: MADV_FREE (pages stay counted in RSS until the kernel is short of memory, so
 *     nobody can tell the memory came back); trimming on the finish path (a syscall per task);
 *     unmapping whole slabs (a slab is only free when all its stacks are, which one long-lived
 *     task in it prevents; and a remap pays the guard installs again).
 * Overflow: the guard traps, and lib/overflow.c reports it. A frame larger than the guard
 * jumps it unless its code probes each page (-fstack-clash-protection, which weft's own
 * sources use and its package passes to users): that case stays unprotected by the guard
 * alone (README).
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 uapi; older kernels answer EINVAL */
#endif

/* "picked": set by hand, never swept; "measured": chosen by the measurement cited. */
enum {
  SLAB_TARGET_BYTES = 2 << 20, /* picked: one mmap per ~2 MiB of stacks */
  CACHE_MAX = 64,      /* picked: stacks a worker keeps before handing surplus back */
  CACHE_REFILL = 16,   /* picked: stacks taken from the pool at once */
  IDLE_CACHE_KEEP = 4, /* picked: stacks a worker keeps in its cache while it parks */
  HOT_KEEP = CACHE_REFILL, /* picked: the newest used stacks of the pool are never trimmed */
  TRIM_BATCH = 512,    /* measured (bench/README): stacks trimmed per pass: ~1 ms of madvise, then look for work again */
  /* picked: madvise ranges gathered per call (sys.c). SLAB_RANGES is small because slab_map
   * can run on a spawning task's stack (WEFT_STACK_MIN is one page): 256 B of iovecs, a slab
   * of 16 default stacks in one call; TRIM_RANGES runs on a worker's own thread stack. */
  SLAB_RANGES = 16,
  TRIM_RANGES = 128
};
#define TRIM_AGE_NS ((uint64_t)1000000000) /* picked: idle this long in the pool: trimmed */

typedef struct slab {
  struct slab *next;
  char *base;
  size_t len;
  weft__stack_t *stacks; /* descriptors, one per stack in the slab */
  size_t count;          /* stacks in the slab */
} slab_t;

struct weft__stack_pool {
  pthread_mutex_t lock;
  size_t bytes;      /* usable bytes per stack */
  size_t page;
  size_t guard;      /* guard bytes below each stack (whole pages); read by on_segv */
  slab_t *slabs;
  /* Free stacks in two lists. used: touched since their last trim, newest first (LIFO, so
   * sorted by idle_since), doubly linked so that the scavenger takes the oldest from the
   * tail. clean: trimmed or never touched (no resident pages), singly linked. Refills take
   * used stacks first (hot), then clean ones, then map a slab. */
  weft__stack_t *used_head, *used_tail;
  size_t used_count;
  weft__stack_t *clean;
  /* Whether either list holds a stack, stored under the lock at each change and read without
   * it (relaxed: a hint, which is all a spawn's check can have: the answer may change before
   * the task starts). A spawn from a thread that is not a worker took the lock to read the two
   * heads: 7 % of weft-bench inject's samples, its eight threads queueing on it. */
  _Atomic bool has_free;
  _Atomic uint64_t mapped;
  /* Stacks out for trimming (a scavenger's batch, madvised outside the lock and filed after),
   * under the lock, and the condition a taker whose slab map failed waits on until they (and
   * other slabs being mapped) are filed (await_filed): at the limit of memory or map entries
   * they may be the only free stacks (review M, session 38: 451 starts answered WEFT_ENOMEM
   * while 512 free stacks were being trimmed). */
  size_t trimming;
  size_t mapping; /* slabs being mapped outside the lock (slab_map_counted), not yet filed */
  pthread_cond_t filed;
};

static atomic_int force_mprotect_guards;
static atomic_int guard_install_unsupported; /* learned once: the kernel said EINVAL */

/* relaxed, here and in install_guards: independent flags; a racing slab map may use either
 * guard kind, and both are correct. */
void weft__stack_force_mprotect_guards(int force) {
  atomic_store_explicit(&force_mprotect_guards, force, memory_order_relaxed);
}

int weft__stack_pool_create(struct weft__stack_pool **out, size_t stack_bytes,
                            size_t guard_bytes) {
  struct weft__stack_pool *p = calloc(1, sizeof *p);
  if (!p) return WEFT_ENOMEM;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->filed, NULL);
  p->page = (size_t)sysconf(_SC_PAGESIZE);
  p->bytes = (stack_bytes + p->page - 1) & ~(p->page - 1);
  p->guard = (guard_bytes + p->page - 1) & ~(p->page - 1);
  *out = p;
  return 0;
}

static int slab_cmp(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)(*(slab_t *const *)a)->base, y = (uintptr_t)(*(slab_t *const *)b)->base;
  return (x > y) - (x < y);
}

/* Unmaps every slab. Slabs mapped one after another mostly lie side by side (the kernel
 * places each new mapping just below the last), so sorted by address they unmap in a few
 * calls, each one TLB flush, where one munmap per slab paid a flush per 2 MiB: sleep 10^6
 * maps ~10^4 slabs (bench/README.md, #13 "Sleep floor"). Without memory for the sort, one by
 * one. */
static void slabs_unmap(slab_t *list, size_t nslabs) {
  slab_t **v = nslabs ? malloc(nslabs * sizeof *v) : NULL;
  if (!v) {
    for (slab_t *s = list; s; s = s->next) munmap(s->base, s->len);
    return;
  }
  size_t n = 0;
  for (slab_t *s = list; s; s = s->next) v[n++] = s;
  qsort(v, n, sizeof *v, slab_cmp);
  for (size_t i = 0; i < n;) {
    char *lo = v[i]->base, *hi = lo + v[i]->len;
    for (i++; i < n && v[i]->base == hi; i++) hi += v[i]->len;
    munmap(lo, (size_t)(hi - lo));
  }
  free(v);
}

void weft__stack_pool_destroy(struct weft__stack_pool *p) {
  if (!p) return;
  size_t nslabs = 0;
  for (slab_t *s = p->slabs; s; s = s->next, nslabs++) {
    size_t count = s->len / (p->bytes + p->guard);
    for (size_t i = 0; i < count; i++) { /* stacks of tasks discarded by shutdown */
      if ((weft__san_hooks() & WEFT__SAN_TSAN) && s->stacks[i].ctx.tsan_fiber)
        __tsan_destroy_fiber(s->stacks[i].ctx.tsan_fiber);
      WEFT_UNPOISON(s->stacks[i].lo, s->stacks[i].bytes);
    }
  }
  slabs_unmap(p->slabs, nslabs);
  for (slab_t *s = p->slabs, *next; s; s = next) {
    next = s->next;
    free(s->stacks);
    free(s);
  }
  pthread_cond_destroy(&p->filed);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

uint64_t weft__stack_pool_mapped(struct weft__stack_pool *p) {
  return atomic_load_explicit(&p->mapped, memory_order_relaxed); /* relaxed: a statistic */
}

/* Guards below the first `count` stacks of a slab at `base` (one stack every `one` bytes);
 * returns how many, from the first, are guarded. MADV_GUARD_INSTALL in batches (sys.c), else
 * mprotect one by one. */
static size_t install_guards(struct weft__stack_pool *p, char *base, size_t count, size_t one) {
  size_t done = 0;
  if (!atomic_load_explicit(&force_mprotect_guards, memory_order_relaxed) &&
      !atomic_load_explicit(&guard_install_unsupported, memory_order_relaxed)) {
    struct iovec r[SLAB_RANGES];
    while (done < count) {
      size_t k = count - done < SLAB_RANGES ? count - done : SLAB_RANGES;
      for (size_t i = 0; i < k; i++) r[i] = (struct iovec){base + (done + i) * one, p->guard};
      size_t got = weft__madvise_ranges(r, k, MADV_GUARD_INSTALL);
      done += got;
      if (got < k) break;
    }
    if (done == count || errno != EINVAL) return done; /* all, or a real failure (ENOMEM) */
    atomic_store_explicit(&guard_install_unsupported, 1, memory_order_relaxed);
  }
  while (done < count && mprotect(base + done * one, p->guard, PROT_NONE) == 0) done++;
  return done;
}

static void stack_register(weft__stack_t *s) {
#if WEFT_VALGRIND
  /* Without it valgrind takes each switch for a huge stack change and reports
   * thousands of uninitialised reads. The id is not kept: the slab lives until destroy. */
  (void)VALGRIND_STACK_REGISTER(s->lo, s->lo + s->bytes);
#endif
  s->ctx.tsan_fiber = NULL;
  s->ctx.stack_lo = s->lo;
  s->ctx.stack_bytes = s->bytes;
  s->ctx.asan_fake_stack = NULL;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 uapi; older kernels answer EINVAL */
#endif
static atomic_int populate_unsupported; /* learned once: the kernel said EINVAL */

/* #13: the top page of each new stack — the one its first frame writes — made resident now,
 * in batches of madvise ranges (sys.c: one syscall for a slab's 16 default stacks), instead
 * of by a page fault when a worker first switches to it (sleep 10^6 starts up to a million
 * fresh stacks). A failure is harmless: the page then faults in as before. */
static void populate_tops(struct weft__stack_pool *p, char *base, size_t count) {
  /* relaxed: an independent flag, as guard_install_unsupported */
  if (atomic_load_explicit(&populate_unsupported, memory_order_relaxed)) return;
  size_t one = p->bytes + p->guard;
  struct iovec r[SLAB_RANGES];
  for (size_t done = 0; done < count;) {
    size_t k = count - done < SLAB_RANGES ? count - done : SLAB_RANGES;
    for (size_t i = 0; i < k; i++)
      r[i] = (struct iovec){base + (done + i + 1) * one - p->page, p->page};
    if (weft__madvise_ranges(r, k, MADV_POPULATE_WRITE) < k) {
      if (errno == EINVAL) atomic_store_explicit(&populate_unsupported, 1, memory_order_relaxed);
      return;
    }
    done += k;
  }
}

/* Maps a slab and guards and registers its stacks, linked through `next` from the first;
 * touches nothing shared but the statistic, so the caller holds no lock. Until session 22 the
 * mmap and the two batched madvise calls (~70 µs a slab on this VM) ran under the pool's lock,
 * and a worker that wanted a stack slept on the lock through another's syscalls: in sleep 10^6
 * each worker sat idle for 15-45 % of the phase that starts the sleepers (bench/README.md,
 * session 22). Two workers may now map a slab each at once; the spare goes to the pool.
 * slab_link then files the slab under the lock. */
static int slab_map(struct weft__stack_pool *p, slab_t **out) {
  size_t one = p->bytes + p->guard;
  size_t count = SLAB_TARGET_BYTES / one;
  if (count == 0) count = 1;
  weft__pause(WEFT__PAUSE_SLAB_MAP); /* tests: two maps at once (test_memory) */
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_SLAB_MAP))) return WEFT_ENOMEM;
  slab_t *slab = calloc(1, sizeof *slab);
  weft__stack_t *stacks = calloc(count, sizeof *stacks);
  if (!slab || !stacks) {
    free(slab);
    free(stacks);
    return WEFT_ENOMEM;
  }
  size_t len = count * one;
  char *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
  if (base == MAP_FAILED) {
    free(slab);
    free(stacks);
    return WEFT_ENOMEM;
  }
  size_t guarded = install_guards(p, base, count, one);
  if (guarded == 0) {
    munmap(base, len);
    free(slab);
    free(stacks);
    return WEFT_ENOMEM;
  }
  if (guarded < count) { /* the mapping limit bit midway: keep what is guarded */
    munmap(base + guarded * one, len - guarded * one);
    len = guarded * one;
  }
  populate_tops(p, base, guarded);
  *slab = (slab_t){.base = base, .len = len, .stacks = stacks, .count = guarded};
  for (size_t i = 0; i < guarded; i++) {
    weft__stack_t *s = &stacks[i];
    s->lo = base + i * one + p->guard;
    s->bytes = p->bytes;
    stack_register(s);
    s->next = i + 1 < guarded ? &stacks[i + 1] : NULL;
  }
  atomic_fetch_add_explicit(&p->mapped, guarded, memory_order_relaxed); /* relaxed: statistic */
  *out = slab;
  return 0;
}

/* Caller holds the lock, after a change to the lists. relaxed: see has_free. */
static void free_hint_update(struct weft__stack_pool *p) {
  atomic_store_explicit(&p->has_free, p->used_head || p->clean, memory_order_relaxed);
}

/* Files a mapped slab: onto the pool's slab list (for destroy), and its stacks from the
 * `keep`-th on onto the clean list; returns the first `keep` (fewer if the slab is smaller),
 * still linked. Caller holds the lock. */
static weft__stack_t *slab_link(struct weft__stack_pool *p, slab_t *slab, size_t keep) {
  slab->next = p->slabs;
  p->slabs = slab;
  if (keep >= slab->count) return slab->stacks;
  weft__stack_t *rest = &slab->stacks[keep];
  slab->stacks[slab->count - 1].next = p->clean;
  p->clean = rest;
  free_hint_update(p);
  if (keep == 0) return NULL;
  slab->stacks[keep - 1].next = NULL;
  return slab->stacks;
}

static void cache_push_hot(weft__stack_cache_t *c, weft__stack_t *s) {
  s->next = c->head;
  c->head = s;
  c->count++;
}

static weft__stack_t *cache_pop_hot(weft__stack_cache_t *c) {
  weft__stack_t *s = c->head;
  c->head = s->next;
  c->count--;
  return s;
}

/* The pool's lists; the caller holds the lock. */
static void used_push(struct weft__stack_pool *p, weft__stack_t *s, uint64_t now) {
  s->idle_since = now;
  s->prev = NULL;
  s->next = p->used_head;
  if (p->used_head) p->used_head->prev = s;
  else p->used_tail = s;
  p->used_head = s;
  p->used_count++;
  free_hint_update(p);
}

static weft__stack_t *used_pop_tail(struct weft__stack_pool *p) {
  weft__stack_t *s = p->used_tail;
  p->used_tail = s->prev;
  if (p->used_tail) p->used_tail->next = NULL;
  else p->used_head = NULL;
  p->used_count--;
  free_hint_update(p);
  return s;
}

static weft__stack_t *pool_pop(struct weft__stack_pool *p) {
  weft__stack_t *s = p->used_head;
  if (s) {
    p->used_head = s->next;
    if (p->used_head) p->used_head->prev = NULL;
    else p->used_tail = NULL;
    p->used_count--;
  } else if ((s = p->clean)) {
    p->clean = s->next;
  }
  free_hint_update(p);
  return s;
}

/* Caller holds the lock. */
static void pool_take_locked(struct weft__stack_pool *p, weft__stack_cache_t *c) {
  weft__stack_t *s;
  for (int i = 0; i < CACHE_REFILL && (s = pool_pop(p)); i++) cache_push_hot(c, s);
}

static void pool_take(struct weft__stack_pool *p, weft__stack_cache_t *c) {
  pthread_mutex_lock(&p->lock);
  pool_take_locked(p, c);
  pthread_mutex_unlock(&p->lock);
}

/* After a failed slab map, with both lists empty: waits (releasing the lock) until the stacks
 * on their way to the pool are filed, if any are: a scavenger's batch out for trimming, or the
 * spare stacks of a slab another thread is mapping (review O, session 38: a map that took the
 * last of memory while ours failed filed 154 spare stacks just after we answered ENOMEM).
 * Both end by themselves (madvise calls; an mmap with its guards and populate, ~70 µs), so
 * this waits that long, and only at the limit of memory or map entries. Caller holds the
 * lock. */
static void await_filed(struct weft__stack_pool *p) {
  bool coming = p->trimming || p->mapping;
  if (coming && !p->used_head && !p->clean) weft__probe_hit(WEFT__PROBE_STACKS_AWAITED);
  while ((p->trimming || p->mapping) && !p->used_head && !p->clean)
    pthread_cond_wait(&p->filed, &p->lock);
}

/* slab_map (outside the lock: see there), counted in flight (p->mapping, for await_filed).
 * The caller takes the count back with slab_settle. */
static int slab_map_counted(struct weft__stack_pool *p, slab_t **out) {
  pthread_mutex_lock(&p->lock);
  p->mapping++;
  pthread_mutex_unlock(&p->lock);
  return slab_map(p, out);
}

/* Caller holds the lock, after slab_map_counted: the map is no longer in flight, its slab (if
 * it was made) filed, keeping `keep` stacks for the caller, whom they are returned to; a
 * failed map waits for what others bring (await_filed). Wakes the takers that waited on it. */
static weft__stack_t *slab_settle(struct weft__stack_pool *p, int err, slab_t *slab, size_t keep) {
  p->mapping--;
  weft__stack_t *mine = err ? NULL : slab_link(p, slab, keep);
  pthread_cond_broadcast(&p->filed); /* before our own wait: another may wait on our map */
  if (err) await_filed(p);
  return mine;
}

static int cache_refill(struct weft__stack_pool *p, weft__stack_cache_t *c) {
  pool_take(p, c);
  if (c->head) return 0;
  slab_t *slab = NULL;
  int err = slab_map_counted(p, &slab);
  pthread_mutex_lock(&p->lock);
  weft__stack_t *mine = slab_settle(p, err, slab, CACHE_REFILL);
  /* a failed map: another worker's slab, mapped meanwhile, may have taken the last of memory
   * or map entries and filed its spare stacks: take those (review, session 22) */
  if (err) pool_take_locked(p, c);
  pthread_mutex_unlock(&p->lock);
  if (err) return c->head ? 0 : err;
  for (weft__stack_t *next; mine; mine = next) {
    next = mine->next;
    cache_push_hot(c, mine);
  }
  return 0;
}

static bool pool_empty(struct weft__stack_pool *p) {
  return !atomic_load_explicit(&p->has_free, memory_order_relaxed); /* relaxed: see has_free */
}

int weft__stack_check(struct weft__stack_pool *p, weft__stack_cache_t *c) {
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_STACK))) return WEFT_ENOMEM;
  if (WEFT__LIKELY(c && c->head)) return 0;
  if (!pool_empty(p)) return 0;
  slab_t *slab = NULL;
  int err = slab_map_counted(p, &slab);
  pthread_mutex_lock(&p->lock);
  slab_settle(p, err, slab, 0);
  /* as cache_refill: what others filed will do (asked under the lock: not a hint) */
  bool empty = !p->used_head && !p->clean;
  pthread_mutex_unlock(&p->lock);
  return err && empty ? err : 0;
}

int weft__stack_get(struct weft__stack_pool *p, weft__stack_cache_t *c, weft__stack_t **out) {
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_STACK_START))) return WEFT_ENOMEM;
  if (WEFT__UNLIKELY(!c->head)) {
    int err = cache_refill(p, c);
    if (err) return err;
  }
  *out = cache_pop_hot(c);
  return 0;
}

/* The coldest of the cache go first (deepest in its LIFO); the pool's used list then gets
 * them as its newest, stamped now: one clock read per spill, not per stack. */
static void cache_spill(struct weft__stack_pool *p, weft__stack_cache_t *c, size_t keep,
                        uint64_t now) {
  weft__stack_t **link = &c->head;
  for (size_t i = 0; i < keep; i++) link = &(*link)->next;
  weft__stack_t *s = *link;
  *link = NULL;
  c->count = keep;
  pthread_mutex_lock(&p->lock);
  for (weft__stack_t *next; s; s = next) {
    next = s->next;
    used_push(p, s, now);
  }
  pthread_mutex_unlock(&p->lock);
}

void weft__stack_put(struct weft__stack_pool *p, weft__stack_cache_t *c, weft__stack_t *s) {
  cache_push_hot(c, s);
  if (WEFT__UNLIKELY(c->count > CACHE_MAX)) cache_spill(p, c, CACHE_MAX / 2, weft_now_ns());
}

/* Gives a detached batch's pages back; returns its last stack. MADV_DONTNEED: the pages go
 * back at once and read as zeros on reuse. Rejected: MADV_FREE, which keeps them counted in RSS
 * until the kernel is short of memory. The guard below lo is not touched (its markers survive
 * either way). In batches of ranges (sys.c): one syscall and one TLB flush for up to
 * TRIM_RANGES stacks, where a madvise per stack paid a cross-CPU flush each. */
static weft__stack_t *trim(weft__stack_t *batch) {
  struct iovec r[TRIM_RANGES];
  size_t k = 0;
  weft__stack_t *last = batch;
  for (weft__stack_t *s = batch; s; s = s->next) {
    r[k++] = (struct iovec){s->lo, s->bytes};
    last = s;
    weft__probe_hit(WEFT__PROBE_STACK_TRIMMED);
    if (k == TRIM_RANGES || !s->next) {
      weft__madvise_ranges(r, k, MADV_DONTNEED); /* a failure leaves pages resident: harmless */
      k = 0;
    }
  }
  return last;
}

uint64_t weft__stack_scavenge(struct weft__stack_pool *p, weft__stack_cache_t *c, uint64_t now) {
  if (c->count > IDLE_CACHE_KEEP) cache_spill(p, c, IDLE_CACHE_KEEP, now);
  /* Detach a batch of the oldest used stacks under the lock; madvise them outside it (the
   * batch is ours alone: no other thread can reach it), then file them as clean. */
  weft__stack_t *batch = NULL;
  size_t n = 0;
  uint64_t next = UINT64_MAX;
  pthread_mutex_lock(&p->lock);
  /* idle_since <= now first: another worker may have spilled stacks stamped after our clock
   * read, and the unsigned age wrapped to ~2^64: all were trimmed at once (review, session 20) */
  while (n < TRIM_BATCH && p->used_count > HOT_KEEP && p->used_tail->idle_since <= now &&
         now - p->used_tail->idle_since >= TRIM_AGE_NS) {
    weft__stack_t *s = used_pop_tail(p);
    s->next = batch;
    batch = s;
    n++;
  }
  if (p->used_count > HOT_KEEP) /* more to trim: now if the batch was full, else once it ages */
    next = n == TRIM_BATCH ? now : p->used_tail->idle_since + TRIM_AGE_NS;
  p->trimming += n;
  pthread_mutex_unlock(&p->lock);
  if (!batch) return next;
  weft__pause(WEFT__PAUSE_TRIMMING);
  weft__stack_t *last = trim(batch);
  pthread_mutex_lock(&p->lock);
  last->next = p->clean;
  p->clean = batch;
  p->trimming -= n;
  free_hint_update(p);
  pthread_cond_broadcast(&p->filed); /* takers at the limit of memory (await_filed) */
  pthread_mutex_unlock(&p->lock);
  return next;
}

size_t weft__stack_pool_guard(struct weft__stack_pool *p) { return p->guard; }
