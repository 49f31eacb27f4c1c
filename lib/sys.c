/*
 * The ground floor: process-level helpers every file of lib/ may use, using nothing of weft
 * above them — the abort with one sentence, the test-only fault knobs, the futex, batched
 * madvise, the clock.
 * Kept apart so that the concept files above (stacks, timer wheel, tasks, workers, runtime)
 * do not import one another for plumbing (they once formed one five-file import circle).
 */
#include "sys.h"
#include "weft.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

_Noreturn void weft__die(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
  (void)ignored;
  abort();
}

/* ---- Fault injection and probes (test-only) ----------------------------------------------- */

/* relaxed throughout: a test knob; the countdown itself is the only shared state. */
#ifdef WEFT_FAULTS
static _Atomic long fault_countdown[WEFT__FAULT_KINDS];

void weft__fault_set(int kind, long nth) {
  if (kind >= 0 && kind < WEFT__FAULT_KINDS)
    atomic_store_explicit(&fault_countdown[kind], nth, memory_order_relaxed);
}

bool weft__fault_hit(int kind) {
  long left = atomic_load_explicit(&fault_countdown[kind], memory_order_relaxed);
  if (WEFT__LIKELY(left <= 0)) return false;
  if (left == WEFT__FAULT_ALWAYS) return true; /* never counted down: set it before the calls */
  return atomic_fetch_sub_explicit(&fault_countdown[kind], 1, memory_order_relaxed) == 1;
}

static _Atomic long probe_hits[WEFT__PROBES];

void weft__probe_hit(int probe) { atomic_fetch_add_explicit(&probe_hits[probe], 1, memory_order_relaxed); }

long weft__probe_count(int probe) {
  return atomic_load_explicit(&probe_hits[probe], memory_order_relaxed);
}

static void (*_Atomic pause_hooks[WEFT__PAUSES])(void);

void weft__pause_set(int point, void (*fn)(void)) {
  if (point >= 0 && point < WEFT__PAUSES)
    atomic_store_explicit(&pause_hooks[point], fn, memory_order_relaxed);
}

void weft__pause(int point) {
  void (*fn)(void) = atomic_load_explicit(&pause_hooks[point], memory_order_relaxed);
  if (fn) fn();
}
#endif

/* ---- Futex -------------------------------------------------------------------------------- */

void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns) {
  struct timespec ts, *tsp = NULL;
  if (deadline_ns != UINT64_MAX) {
    ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
    ts.tv_nsec = (long)(deadline_ns % 1000000000u);
    tsp = &ts;
  }
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT a relative one). */
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp, NULL,
          FUTEX_BITSET_MATCH_ANY);
}

void weft__futex_wake(_Atomic uint32_t *word, int n) {
  syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n, NULL, NULL, 0);
}

/* ---- Batched madvise ----------------------------------------------------------------------- */

/* Why batch: on this VM (a paravirtualised guest) every syscall and every TLB flush is a trip
 * through the hypervisor, so per-range madvise made a fresh slab of 16 stacks 32 syscalls and
 * a scavenger pass of 512 trims 512 syscalls each with a cross-CPU flush (bench/README.md, #13
 * "Sleep floor"). process_madvise(2) takes a vector of ranges; since Linux 6.13 it accepts any
 * advice for the calling process, addressed as PIDFD_SELF (6.15) — no pidfd to open and keep.
 * Older kernels answer EINVAL, EBADF, EPERM or ENOSYS: learned once per advice, then
 * per-range madvise as before (a range's own failure is then reported the way madvise reports
 * it, so callers need no second error path). */
#ifndef SYS_process_madvise
#define SYS_process_madvise 440 /* the same number on every architecture (after 424) */
#endif
#define WEFT_PIDFD_SELF (-10000) /* uapi's PIDFD_SELF (= PIDFD_SELF_THREAD): our own mm */

static _Atomic unsigned char batch_off[128]; /* per advice value: the kernel said no */

/* How many leading ranges `bytes` advised bytes cover in full. */
static size_t ranges_covered(const struct iovec *r, size_t n, size_t bytes) {
  size_t k = 0;
  while (k < n && r[k].iov_len <= bytes) bytes -= r[k++].iov_len;
  return k;
}

enum { IOV_LIMIT = 1024 }; /* the kernel's UIO_MAXIOV: ranges one call takes at most */

/* One process_madvise per IOV_LIMIT ranges; returns the ranges done, which may be fewer than n
 * (the rest, from the first one not done, are the caller's to retry one by one). */
static size_t madvise_batched(struct iovec *ranges, size_t n, int advice) {
  size_t done = 0;
  while (done < n) {
    size_t k = n - done < IOV_LIMIT ? n - done : IOV_LIMIT;
    long got = syscall(SYS_process_madvise, WEFT_PIDFD_SELF, ranges + done, k, advice, 0u);
    if (got < 0) {
      /* relaxed: an independent flag; a racing caller may still try the batch once */
      if (errno == EINVAL || errno == EBADF || errno == EPERM || errno == ENOSYS)
        atomic_store_explicit(&batch_off[advice], 1, memory_order_relaxed);
      return done;
    }
    size_t full = ranges_covered(ranges + done, k, (size_t)got);
    done += full;
    if (full < k) return done; /* stopped inside a range: retry from it one by one */
  }
  return done;
}

size_t weft__madvise_ranges(struct iovec *ranges, size_t n, int advice) {
  size_t done = 0;
  bool batch = advice >= 0 && advice < (int)sizeof batch_off &&
               !atomic_load_explicit(&batch_off[advice], memory_order_relaxed); /* relaxed: flag */
  if (batch) done = madvise_batched(ranges, n, advice);
  for (; done < n; done++)
    if (madvise(ranges[done].iov_base, ranges[done].iov_len, advice) != 0) break;
  return done;
}

/* ---- fork() ------------------------------------------------------------------------------- */

/* Which process a kind's state belongs to. A page the kernel zeroes in a child
 * (MADV_WIPEONFORK, Linux 4.14; as BoringSSL's RNG tells a fork) holds a word per kind:
 * CURRENT in the process that made the state, 0 in a child until a claimer has made it anew.
 * Where the kernel refuses the advice, the word is the owner's pid, which a child does not
 * share — except a child of a pid-1 process in a new pid namespace, which is pid 1 too (review,
 * session 30: why the page comes first). The claim is a CAS, so that an application thread
 * making a runtime in the child while weft's own fork handler runs makes it anew once
 * (review, session 30). Rejected: the pid alone (above); a counter bumped by a fork handler
 * (an application's child handler registered before weft's runs first, and is what needs to
 * know). */
enum { FORKED_CURRENT = -1, FORKED_BUSY = -2 };
static _Atomic int *forked_words; /* the page's words, or forked_pids */
static _Atomic int forked_pids[WEFT__FORKED_KINDS];
static bool forked_by_page;
static pthread_once_t forked_once = PTHREAD_ONCE_INIT;

/* The word's value in the process that made the state, and while one of its threads makes
 * it anew (a pid mark is negative then: a child of that moment can tell it is not its own).
 * The claim itself is lib/forked_impl.h's, model-checked by tests/model/forked_model.cpp. */
static int forked_current(void) { return forked_by_page ? FORKED_CURRENT : (int)getpid(); }
static int forked_busy(void) { return forked_by_page ? FORKED_BUSY : -(int)getpid(); }

static void forked_init(void) {
  long page = sysconf(_SC_PAGESIZE);
  void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
#ifdef MADV_WIPEONFORK
  forked_by_page = p != MAP_FAILED && madvise(p, (size_t)page, MADV_WIPEONFORK) == 0;
#endif
  if (p != MAP_FAILED && !forked_by_page) munmap(p, (size_t)page);
  forked_words = forked_by_page ? p : forked_pids;
  for (int k = 0; k < WEFT__FORKED_KINDS; k++) /* relaxed: pthread_once publishes them */
    atomic_store_explicit(&forked_words[k], forked_current(), memory_order_relaxed);
}

#define FK_WORD _Atomic int
#define FK_LOAD(obj, mo) atomic_load_explicit((obj), (mo))
#define FK_STORE(obj, v, mo) atomic_store_explicit((obj), (v), (mo))
#define FK_CAS(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_strong_explicit((obj), &(expected), (desired), (mos), (mof))
#define FK_RLX memory_order_relaxed
#define FK_ACQ memory_order_acquire
#define FK_REL memory_order_release
#define FK_YIELD() sched_yield()
#define FK_FN(name) forked_##name
void weft__sigpipe_hold(weft__sigpipe_hold_t *h) {
  sigset_t only_pipe, pending;
  sigemptyset(&only_pipe);
  sigaddset(&only_pipe, SIGPIPE);
  h->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &only_pipe, &h->old);
}

void weft__sigpipe_release(weft__sigpipe_hold_t *h, long n, int err) {
  if (n < 0 && err == EPIPE && !h->was_pending) {
    sigset_t only_pipe;
    sigemptyset(&only_pipe);
    sigaddset(&only_pipe, SIGPIPE);
    struct timespec zero = {0, 0};
    while (sigtimedwait(&only_pipe, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &h->old, NULL);
  errno = err;
}

#include "forked_impl.h"

bool weft__forked_claim(int kind) {
  pthread_once(&forked_once, forked_init);
  return forked_claim(&forked_words[kind], forked_current(), forked_busy());
}

void weft__forked_done(int kind) { forked_done(&forked_words[kind], forked_current()); }

/* ---- Clock -------------------------------------------------------------------------------- */

uint64_t weft_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}


uint64_t weft__coarse_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
