/*
 * Task stacks: mapped in slabs, guarded, cached per worker, reported on overflow.
 *
 * What it costs. A stack is virtual memory until touched; a touched 4 KiB page costs ~1.2 µs
 * of kernel time on this VM and stays resident. So the design keeps stacks hot and few:
 *   - Slabs: one mmap holds many stacks (as many as fit in ~2 MiB, at least one), so mapping
 *     is not a syscall per task. MAP_NORESERVE: untouched pages cost nothing.
 *   - Guards: each stack has one guard page below it. With MADV_GUARD_INSTALL (Linux ≥ 6.13)
 *     a guard costs ~250 ns and no map entry. Without it, mprotect splits the mapping: two map
 *     entries per stack, and vm.max_map_count (65530) ends at ~32k stacks — then mprotect
 *     fails with ENOMEM and we report WEFT_ENOMEM from the spawn, so the process keeps the map
 *     entries it needs for threads and for the tasks already running.
 *   - Caches: each worker keeps a LIFO cache of free stacks (the most recently used, hottest
 *     one first), bounded; the surplus goes to the pool's shared list under a mutex.
 *     Rejected: munmap on free (a syscall and fresh page faults per task), one global lock-free
 *     stack (ABA, and the line bounces between workers on every spawn).
 *   - Slabs are returned to the system only when the runtime is destroyed. Rejected for now:
 *     MADV_FREE of cold cached stacks (a later reuse faults the pages in again); a long-lived
 *     server whose peak load passed keeps its peak's stacks resident — a documented cost.
 * Overflow: the guard page traps; a SIGSEGV handler on a per-thread alternate signal stack
 * checks whether the address lies in the running stack's guard and, if so, writes one line
 * naming the task and the stack size, then lets the default action kill the process. Builds
 * use -fstack-clash-protection so a large frame cannot jump over the guard.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 uapi; older kernels answer EINVAL */
#endif

enum {
  SLAB_TARGET_BYTES = 2 << 20,
  CACHE_MAX = 64,   /* stacks a worker keeps before handing surplus back */
  CACHE_REFILL = 16 /* stacks taken from the pool at once */
};

typedef struct slab {
  struct slab *next;
  char *base;
  size_t len;
  weft__stack_t *stacks; /* descriptors, one per stack in the slab */
} slab_t;

struct weft__stack_pool {
  pthread_mutex_t lock;
  size_t bytes;      /* usable bytes per stack */
  size_t page;
  slab_t *slabs;
  weft__stack_t *free_list;
  _Atomic uint64_t mapped;
};

static atomic_int force_mprotect_guards;
static size_t guard_bytes = 4096; /* one page; set from sysconf when a pool is made */
static atomic_int guard_install_unsupported; /* learned once: the kernel said EINVAL */

/* relaxed, here and in install_guard: independent flags; a racing slab map may use either
 * guard kind, and both are correct. */
void weft__stack_force_mprotect_guards(int force) {
  atomic_store_explicit(&force_mprotect_guards, force, memory_order_relaxed);
}

int weft__stack_pool_create(struct weft__stack_pool **out, size_t stack_bytes) {
  struct weft__stack_pool *p = calloc(1, sizeof *p);
  if (!p) return WEFT_ENOMEM;
  pthread_mutex_init(&p->lock, NULL);
  p->page = (size_t)sysconf(_SC_PAGESIZE);
  guard_bytes = p->page;
  p->bytes = (stack_bytes + p->page - 1) & ~(p->page - 1);
  *out = p;
  return 0;
}

void weft__stack_pool_destroy(struct weft__stack_pool *p) {
  if (!p) return;
  for (slab_t *s = p->slabs, *next; s; s = next) {
    next = s->next;
    size_t count = s->len / (p->bytes + p->page);
    for (size_t i = 0; i < count; i++) { /* stacks of tasks discarded by shutdown */
      if ((weft__san_hooks() & WEFT__SAN_TSAN) && s->stacks[i].ctx.tsan_fiber)
        __tsan_destroy_fiber(s->stacks[i].ctx.tsan_fiber);
      WEFT_UNPOISON(s->stacks[i].lo, s->stacks[i].bytes);
    }
    munmap(s->base, s->len);
    free(s->stacks);
    free(s);
  }
  pthread_mutex_destroy(&p->lock);
  free(p);
}

uint64_t weft__stack_pool_mapped(struct weft__stack_pool *p) {
  return atomic_load_explicit(&p->mapped, memory_order_relaxed); /* relaxed: a statistic */
}

static int install_guard(char *guard, size_t page) {
  if (!atomic_load_explicit(&force_mprotect_guards, memory_order_relaxed) &&
      !atomic_load_explicit(&guard_install_unsupported, memory_order_relaxed)) {
    if (madvise(guard, page, MADV_GUARD_INSTALL) == 0) return 0;
    if (errno != EINVAL) return WEFT_ENOMEM;
    atomic_store_explicit(&guard_install_unsupported, 1, memory_order_relaxed);
  }
  return mprotect(guard, page, PROT_NONE) == 0 ? 0 : WEFT_ENOMEM;
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

/* Maps a slab and links its guarded stacks onto the pool's free list. Caller holds the lock. */
static int slab_map(struct weft__stack_pool *p) {
  size_t one = p->bytes + p->page;
  size_t count = SLAB_TARGET_BYTES / one;
  if (count == 0) count = 1;
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
  size_t guarded = 0;
  while (guarded < count && install_guard(base + guarded * one, p->page) == 0) guarded++;
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
  *slab = (slab_t){.next = p->slabs, .base = base, .len = len, .stacks = stacks};
  p->slabs = slab;
  for (size_t i = 0; i < guarded; i++) {
    weft__stack_t *s = &stacks[i];
    s->lo = base + i * one + p->page;
    s->bytes = p->bytes;
    stack_register(s);
    s->next = p->free_list;
    p->free_list = s;
  }
  atomic_fetch_add_explicit(&p->mapped, guarded, memory_order_relaxed); /* relaxed: statistic */
  return 0;
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

static int cache_refill(struct weft__stack_pool *p, weft__stack_cache_t *c) {
  int err = 0;
  pthread_mutex_lock(&p->lock);
  if (!p->free_list) err = slab_map(p);
  for (int i = 0; i < CACHE_REFILL && p->free_list; i++) {
    weft__stack_t *s = p->free_list;
    p->free_list = s->next;
    cache_push_hot(c, s);
  }
  pthread_mutex_unlock(&p->lock);
  return c->head ? 0 : (err ? err : WEFT_ENOMEM);
}

int weft__stack_check(struct weft__stack_pool *p, weft__stack_cache_t *c) {
  if (WEFT__UNLIKELY(weft__fault_hit(WEFT__FAULT_STACK))) return WEFT_ENOMEM;
  if (WEFT__LIKELY(c && c->head)) return 0;
  pthread_mutex_lock(&p->lock);
  int err = p->free_list ? 0 : slab_map(p);
  pthread_mutex_unlock(&p->lock);
  return err;
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

static void cache_spill(struct weft__stack_pool *p, weft__stack_cache_t *c, size_t keep) {
  pthread_mutex_lock(&p->lock);
  while (c->count > keep) {
    weft__stack_t *s = cache_pop_hot(c);
    s->next = p->free_list;
    p->free_list = s;
  }
  pthread_mutex_unlock(&p->lock);
}

void weft__stack_put(struct weft__stack_pool *p, weft__stack_cache_t *c, weft__stack_t *s) {
  cache_push_hot(c, s);
  if (WEFT__UNLIKELY(c->count > CACHE_MAX)) cache_spill(p, c, CACHE_MAX / 2);
}


/* ---- Overflow reports ------------------------------------------------------------------- */

static struct sigaction previous_segv;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static int handler_users;

/* Async-signal-safe formatting: snprintf is not on the list. */
static size_t put_str(char *buf, size_t at, size_t cap, const char *s) {
  while (*s && at + 1 < cap) buf[at++] = *s++;
  return at;
}

static size_t put_u64(char *buf, size_t at, size_t cap, uint64_t v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n && at + 1 < cap) buf[at++] = digits[--n];
  return at;
}

static void on_segv(int sig, siginfo_t *info, void *uctx) {
  weft__worker_t *w = weft__worker_self();
  weft_task_t *t = w ? w->current : NULL;
  weft__stack_t *s = t ? t->runs_on : NULL;
  char *addr = info->si_addr;
  if (s && addr >= s->lo - guard_bytes && addr < s->lo) {
    char line[256];
    size_t n = put_str(line, 0, sizeof line, "weft: task '");
    n = put_str(line, n, sizeof line, t->name ? t->name : "(unnamed)");
    n = put_str(line, n, sizeof line, "' (id ");
    n = put_u64(line, n, sizeof line, t->id);
    n = put_str(line, n, sizeof line, ") overflowed its ");
    n = put_u64(line, n, sizeof line, s->bytes);
    n = put_str(line, n, sizeof line, "-byte stack\n");
    /* One write: lines from two workers cannot interleave (pipes keep writes ≤ PIPE_BUF whole). */
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
    signal(SIGSEGV, SIG_DFL);
    return; /* the faulting access repeats and the default action ends the process */
  }
  /* Not ours: hand the fault to whoever handled it before us. */
  if (previous_segv.sa_flags & SA_SIGINFO && previous_segv.sa_sigaction) {
    previous_segv.sa_sigaction(sig, info, uctx);
  } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN &&
             previous_segv.sa_handler) {
    previous_segv.sa_handler(sig);
  } else {
    signal(SIGSEGV, SIG_DFL);
  }
}

int weft__stack_overflow_guard_install(void **altstack) {
  size_t size = 64 * 1024; /* above SIGSTKSZ and MINSIGSTKSZ on both arches */
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return WEFT_ENOMEM;
  stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) {
    munmap(mem, size);
    return WEFT_ENOMEM;
  }
  *altstack = mem;
  pthread_mutex_lock(&handler_lock);
  if (handler_users++ == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
  }
  pthread_mutex_unlock(&handler_lock);
  return 0;
}

void weft__stack_overflow_guard_remove(void *altstack) {
  if (!altstack) return;
  stack_t ss = {.ss_flags = SS_DISABLE};
  sigaltstack(&ss, NULL);
  munmap(altstack, 64 * 1024);
  pthread_mutex_lock(&handler_lock);
  if (--handler_users == 0) sigaction(SIGSEGV, &previous_segv, NULL);
  pthread_mutex_unlock(&handler_lock);
}
