/* Private to weft: the ground floor — process-level helpers that every other file of lib/ may
 * use and that use nothing of weft above them (libuv's src/unix/core.c is the model): the
 * abort with one sentence, the test-only fault knobs, the futex, batched madvise, the clock.
 * Defined in lib/sys.c. */
#ifndef WEFT_SYS_H
#define WEFT_SYS_H

#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT__LIKELY(x) __builtin_expect(!!(x), 1)
#define WEFT__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Misuse that cannot be returned: one sentence, then abort. */
_Noreturn void weft__die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Debug-build invariant checks, in the spirit of SQLite's ALWAYS(). */
#ifdef WEFT_DEBUG
#define WEFT__ASSERT(cond)                                                                     \
  ((cond) ? (void)0                                                                           \
          : weft__die("weft: internal invariant failed: %s (%s:%d)", #cond, __FILE__, __LINE__))
#else
#define WEFT__ASSERT(cond) ((void)0)
#endif

/* Test-only fault injection: make the n-th allocation of a kind fail (0 disables), or every
 * one while the countdown is WEFT__FAULT_ALWAYS.
 * STACK: a spawn's stack check; STACK_START: taking the stack when a worker starts a task;
 * TASK: a spawn's descriptor; THREAD: a worker thread's creation; TIMER_RING: the timer
 * wheel's due ring growing (its overflow list takes the entries). */
enum {
  WEFT__FAULT_STACK,
  WEFT__FAULT_STACK_START,
  WEFT__FAULT_TASK,
  WEFT__FAULT_THREAD,
  WEFT__FAULT_TIMER_RING,
  WEFT__FAULT_DIAG, /* a slab's diagnostics array (lib/task.c, weft__task_diag_make) */
  WEFT__FAULT_RESERVE, /* a listener's reserve fd, opened for the EMFILE answer (lib/io.c) */
  WEFT__FAULT_ACCEPT,  /* an accept answers EMFILE, as out of fds (lib/io.c) */
  WEFT__FAULT_ACCEPT_NET, /* an accept answers EPROTO, a connection's pending error (lib/io.c) */
  WEFT__FAULT_ACCEPT_NOMEM, /* an accept answers ENOBUFS, the kernel short of memory (lib/io.c) */
  WEFT__FAULT_SLAB_MAP, /* a stack slab's mapping, after its pause point (lib/stack.c) */
  WEFT__FAULT_KINDS
};
#define WEFT__FAULT_ALWAYS LONG_MAX
#ifdef WEFT_FAULTS
/* Only in the test build of the library (CMake target weft_testing, which the tests link): the
 * Release library has no countdown on its hot paths (issue 13). */
bool weft__fault_hit(int kind);
void weft__fault_set(int kind, long nth);
#else
static inline bool weft__fault_hit(int kind) {
  (void)kind;
  return false;
}
#endif

/* Test-only probes: how often a fast path that leaves no other trace was taken, so that a test
 * can assert that it exercised it (review of session 8: the inline join's tests passed whether
 * or not weft_join took its shortcut). Compiled out of the Release library. */
enum {
  WEFT__PROBE_JOIN_INLINE, /* weft_join ran its child inline and freed it without a completion */
  WEFT__PROBE_GROUP_RELEASED, /* a group let go of a task that ended, before its destroy */
  WEFT__PROBE_GROUP_CHUNK,    /* a group allocated a chunk of slots */
  WEFT__PROBE_GROUP_WAIT,     /* a group wait (or destroy's) began */
  WEFT__PROBE_PRIV_SHARED,    /* a worker pushed its private spawns onto its deque (worker.c) */
  WEFT__PROBE_STEAL_BATCH,    /* a thief took more than one entry from a deque (worker.c) */
  WEFT__PROBE_TASK_BATCH_PUT, /* a worker's spilled free list went to the runtime whole (task.c) */
  WEFT__PROBE_TASK_BATCH_TAKE, /* a worker took a batch of descriptors whole (task.c) */
  WEFT__PROBE_TASK_BATCH_ONE,  /* a thread that is not a worker took one from a batch (task.c) */
  WEFT__PROBE_TASK_SCAVENGE,   /* the descriptor scavenger began a pass (task.c) */
  WEFT__PROBE_TASK_SLAB_FREED, /* a slab of idle descriptors gave its pages back (task.c) */
  WEFT__PROBE_STACK_TRIMMED,   /* an idle stack gave its pages back (stack.c) */
  WEFT__PROBE_MUTEX_QUEUED,    /* a mutex lock queued its waiter (sync.c) */
  WEFT__PROBE_ACCEPT_BACKOFF,  /* an accept out of fds began a backoff (io.c) */
  WEFT__PROBE_DISCARD_HOOK,    /* destroy ran a discarded task's record (task.c) */
  WEFT__PROBE_DISCARD_KEPT,    /* ... and kept a handle an outside awaiter still touches (task.c) */
  WEFT__PROBE_SOCK_OUTSIDE,    /* a socket call from outside its runtime counted itself in (io.c) */
  WEFT__PROBE_POLLER_KEPT,     /* destroy kept a socket table a caller from outside was still in */
  WEFT__PROBE_ANCHOR_WAITED,   /* destroy waited for a group's spawn from outside (runtime.c) */
  WEFT__PROBE_PEER_HELD,       /* an outside peer's hand-off waited for destroy's look (sync.c) */
  WEFT__PROBE_PEER_MARKED,     /* destroy found an outside peer's hand-off ending (sync.c) */
  WEFT__PROBE_COMPLETE_HELD,   /* a completion waited out a remover's BUSY, or destroy's hold */
  WEFT__PROBE_CLOSE_WALKED,    /* destroy's walk closed every socket it found open (poll.c) */
  WEFT__PROBE_CACHE_RETURNED,  /* a thread's descriptor cache went back to its runtime (task.c) */
  WEFT__PROBE_CACHE_RECLAIMED, /* the scavenger took a thread's descriptor cache (task.c) */
  WEFT__PROBE_CACHE_SKIPPED,   /* the scavenger left a cache its owner was using (task.c) */
  WEFT__PROBE_MONITOR_WAITED,  /* the monitor waited OUTPUT_LOOK_MS on an fd that took nothing */
  WEFT__PROBE_MUTEX_HANDED,    /* an unlock handed the lock to a starving waiter (sync.c) */
  WEFT__PROBE_ARM_LOWERED,     /* a task's timed park lowered the wheel's next deadline (worker.c) */
  WEFT__PROBE_HELD_NAMED,      /* destroy named a worker still held after the stop (runtime.c) */
  WEFT__PROBE_OUTPUT_EINTR,    /* a wait for room on stderr was interrupted by a signal (stderr.c) */
  WEFT__PROBE_STACKS_AWAITED,  /* a failed slab map waited for stacks on their way (stack.c) */
  WEFT__PROBES
};
#ifdef WEFT_FAULTS
void weft__probe_hit(int probe);
long weft__probe_count(int probe);
/* Test-only: destroy's line about a held worker waits `ms` for room on stderr (0: the default,
 * 50), so that a test can act inside that wait on a loaded machine (lib/stderr.c). */
void weft__stderr_budget_set(unsigned ms);
#else
static inline void weft__probe_hit(int probe) { (void)probe; }
#endif

/* Test-only pause points: where the library calls weft__pause(point), a test's callback runs
 * on that thread, so that a test can hold one thread at a chosen step while another passes it
 * (two workers mapping stack slabs at once). Compiled out of the Release library. */
enum {
  WEFT__PAUSE_SLAB_MAP, /* a stack slab is about to be mapped, outside the pool's lock */
  WEFT__PAUSE_JOIN_UNLINKED, /* a remover unlinked its node from a word, BUSY still set (join_impl.h) */
  WEFT__PAUSE_ABANDON_LOOKED, /* destroy found a discarded waiter's wait undelivered (sync.c) */
  WEFT__PAUSE_MUTEX_RETRY, /* a mutex waiter woken to compete, before it competes (sync.c) */
  WEFT__PAUSE_PEER_TAIL, /* an outside peer's direct hand-off, before its `done` (waitq.h) */
  WEFT__PAUSE_REGISTER, /* a registration has its descriptor, before its epoll add (poll.c) */
  WEFT__PAUSE_LIVE_LOCKED,    /* the live runtimes' list's lock was just taken (task.c) */
  WEFT__PAUSE_HANDLER_LOCKED, /* the SIGSEGV handler's lock was just taken (overflow.c) */
  WEFT__PAUSE_HANDLER_INSTALLED, /* the first install put weft's SIGSEGV handler in (overflow.c) */
  WEFT__PAUSE_POLLER_MADE,    /* a runtime's first poller is open, not yet published (poll.c) */
  WEFT__PAUSE_OFFLOAD_MADE,   /* a runtime's blocking pool is made, not yet published */
  WEFT__PAUSE_POOL_THREAD_LEFT, /* a blocking pool thread counted itself out, before it returns */
  WEFT__PAUSE_CLOSE_WALKED,   /* destroy's socket walk is done, with or without a poller (poll.c) */
  WEFT__PAUSE_ADOPTED,        /* a socket is registered and published, its call not returned (io.c) */
  WEFT__PAUSE_FUTURE_CLAIMED, /* a resolve claimed its future, not yet completed it (future.c) */
  WEFT__PAUSE_DISCARDING,     /* destroy stopped the workers, before its discard walk (runtime.c) */
  WEFT__PAUSE_THREAD_FREED,   /* a plain thread freed into its cache, still holding it (task.c) */
  WEFT__PAUSE_TRIMMING,       /* a scavenger's batch of stacks is out, before its madvise (stack.c) */
  WEFT__PAUSES
};
#ifdef WEFT_FAULTS
void weft__pause_set(int point, void (*fn)(void));
void weft__pause(int point);
#else
static inline void weft__pause(int point) { (void)point; }
#endif

/* Private futex on a 32-bit word; the deadline is absolute CLOCK_MONOTONIC (UINT64_MAX: none). */
void weft__futex_wait(_Atomic uint32_t *word, uint32_t expected, uint64_t deadline_ns);
void weft__futex_wake(_Atomic uint32_t *word, int n);

/* madvise over n ranges, batched: one process_madvise(2) on this process for up to 1024 ranges
 * (one syscall and, for advice that zaps pages, one TLB flush for all of them), else one
 * madvise(2) per range. Returns how many leading ranges were advised: n, or the index of the
 * first range that failed, with errno set as madvise(2) set it for that range. */
struct iovec;
size_t weft__madvise_ranges(struct iovec *ranges, size_t n, int advice);

/* weft_now_ns (CLOCK_MONOTONIC) is public and lives in lib/sys.c too. This one reads
 * CLOCK_MONOTONIC_COARSE (the vDSO's last tick: no TSC read, 1-4 ms resolution): for ages in
 * dumps, stamped on every spawn, never for deadlines. */
uint64_t weft__coarse_now_ns(void);

/* A write to a pipe whose reader is gone raises SIGPIPE, which kills the process by default;
 * sockets have MSG_NOSIGNAL, pipes nothing like it. So a write that may reach a pipe holds
 * SIGPIPE blocked on its thread for the call (weft__sigpipe_hold), and an EPIPE's signal
 * (raised for this thread) is taken back with a zero-timeout sigtimedwait before the mask is
 * restored (weft__sigpipe_release: n and err are the write's result and errno). A SIGPIPE
 * already pending before the call is left alone (standard signals do not queue: the call's
 * merged with it, and it was not ours to take) — left: sigpending() merges the process's
 * pending set with the thread's, so a process-wide SIGPIPE pending (a `kill -PIPE` while the
 * thread blocks it) leaves the write's own, raised for the thread, in place (review K).
 * Three system calls more per write. Rejected:
 * ignoring SIGPIPE process-wide (the application's choice, not a library's) and blocking it in
 * weft's threads for good (a plain thread's write would still die, and a user's handler would
 * never run on a worker again). lib/io.c (review, session 19) and lib/stderr.c use it. */
typedef struct {
  sigset_t old;
  bool was_pending;
} weft__sigpipe_hold_t;
void weft__sigpipe_hold(weft__sigpipe_hold_t *h);
void weft__sigpipe_release(weft__sigpipe_hold_t *h, long n, int err);

/* fork(): process-wide state that a child must make anew (lib/task.c's live runtimes, lib/
 * overflow.c's SIGSEGV handler count), one kind each. weft__forked_claim answers true to the
 * one caller that must make `kind` anew in this process — its state came from a parent — and
 * false once it is current; a caller that comes while another makes it anew waits for that
 * (weft__forked_done). The first call in a process marks it current: there is nothing to make
 * anew before any state exists. */
enum { WEFT__FORKED_LIVE, WEFT__FORKED_HANDLER, WEFT__FORKED_KINDS };
bool weft__forked_claim(int kind);
void weft__forked_done(int kind);

#endif /* WEFT_SYS_H */
