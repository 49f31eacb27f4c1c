/*
 * weft.h — asyncio's model in C, on every core.
 *
 * One header, read top to bottom: export macro and version, error codes, handles, the runtime,
 * tasks, gather, futures, sleeping. Every function that can fail returns 0 or a negative
 * errno-style WEFT_E* code; weft_strerror() names it. The error contract: a function that
 * returns int answers a NULL handle or NULL required pointer with WEFT_EINVAL; weft_task_name
 * and weft_task_id, which return no code, and weft_task_set_name abort on one with a sentence
 * naming the function, and weft_task_release(NULL) and weft_future_destroy(NULL) do
 * nothing, like free(NULL). Misuse that no return value can report — awaiting on a worker
 * thread outside any task, a task awaiting itself, destroying a runtime from one of its own
 * tasks, releasing a handle twice (while its descriptor is not reused), destroying a future
 * that is still awaited — aborts the process with one sentence that names the function called
 * and the misuse.
 *
 * Ownership, in one place:
 *   - weft_spawn(&t, ...) gives the caller a handle; the caller releases it exactly once with
 *     weft_task_release() (or weft_join(), which is await + release). weft_spawn(NULL, ...) makes
 *     a detached task: its resources are freed when it ends.
 *   - Awaiting a finished task again returns the same result at once (as in asyncio); using a
 *     handle after releasing it is undefined, as using memory after free() is (only a second
 *     weft_task_release is caught, while the descriptor is still free: it aborts).
 *   - Releasing the handle of a task that still runs detaches it; it runs to completion.
 *   - weft_runtime_destroy() stops the workers after the tasks that are running reach a
 *     suspension point; tasks still queued, sleeping or waiting are discarded without running
 *     further (as asyncio.run cancels what is left): first each is cancelled, and a task that
 *     ends at its cancel answers WEFT_ECANCELED to its awaiters; the tasks still unfinished
 *     after the shutdown's bound are discarded, and threads and other runtimes' tasks that
 *     await one of those wake with WEFT_ESHUTDOWN. Every handle stays valid until it is
 *     released, before or after the destroy: awaiting it answers at once (WEFT_ESHUTDOWN, or
 *     the result of a task that had finished) and weft_task_release() frees it; everything
 *     else is freed by the destroy. Futures that discarded tasks awaited stay usable. Using
 *     the runtime's handles from other threads *while* destroy runs (a release, a new await)
 *     is a race; awaits already blocked when it starts are woken.
 */
#ifndef WEFT_H
#define WEFT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h> /* malloc and free, for the typed task helpers */
#include <sys/socket.h> /* struct sockaddr, socklen_t: the I/O section */
#include <sys/uio.h>    /* struct iovec: the I/O section */

#ifdef __cplusplus
extern "C" {
#endif

/* The library builds with hidden visibility; only this macro makes a symbol public. */
#if defined(__GNUC__)
#define WEFT_EXTERN __attribute__((visibility("default")))
#else
#define WEFT_EXTERN /* nothing */
#endif

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_HEX \
  ((WEFT_VERSION_MAJOR << 16) | (WEFT_VERSION_MINOR << 8) | WEFT_VERSION_PATCH)

WEFT_EXTERN unsigned int weft_version(void);
WEFT_EXTERN const char *weft_version_string(void);

/* ---- Errors ------------------------------------------------------------------------------- */

/* X(name, negative errno value, text). Adding a code means adding its text. */
#define WEFT_ERRNO_MAP(X)                                                                    \
  X(EINVAL, -22, "invalid argument")                                                         \
  X(ENOMEM, -12, "out of memory (or of memory mappings) for a task, stack or thread")        \
  X(EAGAIN, -11, "resource temporarily unavailable")                                         \
  X(ETIMEDOUT, -110, "the deadline passed before the awaited work finished")                 \
  X(ESHUTDOWN, -108, "the runtime is shutting down")                                         \
  X(EALREADY, -114, "the future was already resolved")                                       \
  X(EPERM, -1, "operation not permitted from this thread")                                   \
  X(ERANGE, -34, "value out of range")                                                      \
  X(ECANCELED, -125, "the task was cancelled")                                              \
  X(EBADF, -9, "the socket was closed (or is being closed) by another task or thread")      \
  X(EBUSY, -16, "another task or thread already waits on this socket in this direction")   \
  X(EPIPE, -32, "the peer closed the connection: nothing more can be written")             \
  X(ECONNRESET, -104, "the peer reset the connection")                                      \
  X(ECONNREFUSED, -111, "the peer refused the connection")                                  \
  X(ECLOSED, -4095, "the channel is closed")

typedef enum {
#define WEFT__ERRNO_ENUM(name, value, text) WEFT_##name = (value),
  WEFT_ERRNO_MAP(WEFT__ERRNO_ENUM)
#undef WEFT__ERRNO_ENUM
} weft_errno_t;

/* Text for a code returned by any weft function; "unknown error" for anything else. */
WEFT_EXTERN const char *weft_strerror(int err);
/* The code's name ("WEFT_ETIMEDOUT"). */
WEFT_EXTERN const char *weft_err_name(int err);

/* ---- Handles ------------------------------------------------------------------------------ */

typedef struct weft_runtime weft_runtime_t;
typedef struct weft_task weft_task_t;
typedef struct weft_future weft_future_t;
typedef struct weft_group weft_group_t;

/* A task's body: asyncio's `async def f(arg)`. It may call anything that suspends. */
typedef void *(*weft_fn)(void *arg);

/* ---- Runtime ------------------------------------------------------------------------------ */

/* Options: a size-prefixed struct, so fields can be added without breaking callers.
 * Always start from WEFT_OPTIONS_INIT. More fields may be added at any time (at the end). */
typedef struct weft_options {
  size_t options_size; /* sizeof(weft_options_t) as the caller compiled it */
  /* Worker threads. 0: WEFT_WORKERS from the environment if set (an invalid value makes
   * weft_runtime_create fail with WEFT_EINVAL), else the CPUs this process may run on. */
  int workers;
  /* Usable bytes of each task stack (the guard region is added below it). 0:
   * WEFT_STACK_DEFAULT. Values below WEFT_STACK_MIN (one page) make weft_runtime_create fail
   * with WEFT_EINVAL, values above WEFT_STACK_MAX (4 GiB) with WEFT_ERANGE; anything between
   * is rounded up to a whole number of pages. */
  size_t stack_size;
  /* Bytes of the inaccessible guard region below each stack, which turns an overflow into a
   * one-line report and SIGSEGV. 0: WEFT_GUARD_DEFAULT. Rounded up to a whole number of pages.
   * A frame larger than the guard can jump over it unless its code was built with
   * -fstack-clash-protection (which probes every page of a large frame): such code is only
   * protected by the guard's size. Values above WEFT_STACK_MAX fail with WEFT_ERANGE. */
  size_t guard_size;
  /* How long weft_runtime_destroy lets cancelled tasks unwind before it discards the ones
   * still unfinished (reporting each on stderr), when it runs the shutdown itself (a
   * weft_runtime_shutdown begun earlier keeps its own bound). 0: WEFT_SHUTDOWN_DEFAULT_MS. */
  uint64_t shutdown_timeout_ms;
  /* Diagnostics, in WEFT_TRACE's syntax (see weft_runtime_dump and docs/api.md); NULL: the
   * WEFT_TRACE environment variable, if set. A malformed spec makes weft_runtime_create fail
   * with WEFT_EINVAL. */
  const char *trace;
  /* Schedule perturbation for stress-testing your own code, off (0) in production: with a
   * seed, workers pick among ready tasks at random (either end of their deque, their yield
   * queue, the inject queue) and tasks yield at random at spawns and suspension points, so
   * that an ordering bug shows in a few seeds instead of in production. Reproducible for a
   * seed with one worker and no timers (with more workers, thread timing mixes in). 0: the
   * WEFT_CHAOS environment variable (a number, decimal or 0x hex), if set; an invalid value
   * makes weft_runtime_create fail with WEFT_EINVAL. */
  uint64_t chaos_seed;
  /* The blocking pool (weft_offload): at most this many threads run blocking calls at once
   * (0: WEFT_BLOCKING_THREADS_DEFAULT); calls beyond wait in a FIFO queue. A thread idle for
   * blocking_keepalive_ms exits (0: WEFT_BLOCKING_KEEPALIVE_DEFAULT_MS). */
  int blocking_threads;
  uint64_t blocking_keepalive_ms;
  /* Spawn throttling, off (0) by default: with N > 0, once N tasks are queued on the worker of
   * a task that calls weft_spawn, the spawn runs its child first — the caller goes back to its
   * worker's queue as the next task that worker takes (another worker may take it first) and
   * the child starts at once; at most N callers per worker wait so (beyond, spawns queue as
   * usual: a chain of spawns holds N stacks, not one per link). A spawn storm then runs in
   * constant memory at the cost of a switch pair per spawn (libomp throttles so by default,
   * at 256; asyncio's opt-in eager_task_factory starts a child at once too). With it on,
   * weft_spawn is a point where the caller may pause and resume on another thread (not a
   * cancellation point: it returns 0 once the child was spawned), so a caller must not hold a
   * thread's lock (a pthread mutex) across it. weft_runtime_spawn, weft_group_spawn and chaos
   * mode never throttle. */
  uint32_t spawn_throttle;
} weft_options_t;

#define WEFT_STACK_DEFAULT ((size_t)64 * 1024)
#define WEFT_STACK_MIN ((size_t)4096)
#define WEFT_STACK_MAX ((size_t)1 << 32)
/* 64 KiB: with MADV_GUARD_INSTALL (Linux >= 6.13) as cheap to install as one page and no extra
 * map entry; with the mprotect fallback one range either way (see lib/stack.c). */
#define WEFT_GUARD_DEFAULT ((size_t)64 * 1024)
#define WEFT_WORKERS_MAX 1024
#define WEFT_SHUTDOWN_DEFAULT_MS 1000
/* Every field listed, so that -Wextra's missing-initializer check stays quiet in users' code. */
#define WEFT_OPTIONS_INIT {sizeof(weft_options_t), 0, 0, 0, 0, NULL, 0, 0, 0, 0}

WEFT_EXTERN int weft_runtime_create(weft_runtime_t **rt, const weft_options_t *options);
/* asyncio.run's end, in two steps. weft_runtime_shutdown refuses new spawns (WEFT_ESHUTDOWN),
 * cancels every task that has not ended and waits until they all have, or until timeout_ns
 * passes: 0, or WEFT_ETIMEDOUT with the stragglers counted in weft_stats_t.tasks_abandoned.
 * weft_runtime_destroy runs the shutdown (bounded by the shutdown_timeout_ms option) unless one
 * began already (one still running on another thread is waited for, under its own bound; a
 * shutdown begun after destroy is the caller's race), then stops the workers and frees everything (see the ownership notes above);
 * each task still unfinished is named on stderr and discarded where it waits. Neither may be
 * called from one of the runtime's own tasks (that aborts), nor destroy from a call the
 * runtime's blocking pool runs (weft_offload: aborts too). A task that never suspends holds
 * its worker: destroy waits for it to reach a suspension point. */
WEFT_EXTERN int weft_runtime_shutdown(weft_runtime_t *rt, uint64_t timeout_ns);
WEFT_EXTERN int weft_runtime_destroy(weft_runtime_t *rt);
WEFT_EXTERN int weft_runtime_workers(const weft_runtime_t *rt);

/* asyncio.run(main(arg)): create a runtime, run main as a task, wait for it from this thread,
 * destroy the runtime. *result (if not NULL) receives main's return value. */
WEFT_EXTERN int weft_run(const weft_options_t *options, weft_fn main, void *arg, void **result);

/* Counters for tests and diagnostics. More fields may be added at any time. */
typedef struct weft_stats {
  size_t stats_size;
  uint64_t tasks_spawned;
  uint64_t tasks_inlined;   /* awaited before any worker started them: ran as plain calls */
  uint64_t tasks_stolen;    /* taken from another worker's deque */
  uint64_t parks;           /* times a worker went to sleep */
  uint64_t stacks_mapped;   /* stacks ever mapped */
  /* Tasks that found no stack when a worker started them (memory or map entries ran out: a
   * spawn's check finds a stack free at that moment and reserves none, so at the limit a burst
   * of spawns can pass it and find none at their start): they ended without running and their
   * awaiters got WEFT_ENOMEM. A
   * detached one has no awaiter: this count is where its loss shows. (Also counted: the task
   * that would have run a weft_fork frame elsewhere; that frame is not lost — its sync runs
   * it.) Frames' runner tasks count in tasks_spawned too. */
  uint64_t tasks_unrun;
  /* Tasks weft_runtime_shutdown cancelled that had not ended when its bound passed. */
  uint64_t tasks_abandoned;
} weft_stats_t;
#define WEFT_STATS_INIT {sizeof(weft_stats_t), 0, 0, 0, 0, 0, 0, 0}
WEFT_EXTERN int weft_runtime_stats(weft_runtime_t *rt, weft_stats_t *stats);

/* ---- Diagnostics -------------------------------------------------------------------------- */

/* One snapshot of a runtime's metrics, for one worker or summed over all. Counters only grow;
 * depths are what was seen during the call. Workers keep running while it is read, so fields
 * are each exact but not taken at one instant. Always on (the counters are per worker, written
 * by their owner without locked instructions). Start from WEFT_METRICS_INIT. More fields may
 * be added at any time (at the end). */
typedef struct weft_metrics {
  size_t metrics_size; /* sizeof(weft_metrics_t) as the caller compiled it */
  int worker;          /* the worker asked for, or WEFT_METRICS_ALL */
  int workers;         /* the runtime's worker count */
  uint64_t uptime_ns;  /* since weft_runtime_create */
  /* Monotonic counters (per worker; summed for WEFT_METRICS_ALL). */
  uint64_t tasks_run;      /* tasks that began running on their own stack, or ran inline (counted
                            * once they return: an inline child is live until then) */
  uint64_t tasks_spawned;  /* the sum also counts spawns from threads that are not workers */
  uint64_t tasks_stolen;   /* entries taken from another worker's queues */
  uint64_t steal_attempts; /* victims probed, and steals after one (a thief takes a batch) */
  uint64_t tasks_inlined;  /* awaited before starting: ran as plain calls, counted at their
                            * return (also in tasks_run) */
  uint64_t tasks_unrun;    /* ended unrun for want of a stack (see weft_stats_t) */
  uint64_t parks;          /* times a worker went to sleep */
  uint64_t unparks;        /* times another thread woke a sleeping worker */
  uint64_t timers_fired;   /* timer callbacks run (sleeps ending, deadlines passing) */
  uint64_t injected_taken; /* entries taken from the queue of spawns and wakes from outside */
  uint64_t yields;         /* weft_yield calls that suspended */
  uint64_t busy_ns;        /* uptime not parked (running tasks, or looking for them) */
  uint64_t idle_ns;        /* time parked */
  /* Depths now. deque/yield: the worker's (summed for WEFT_METRICS_ALL); the rest are the
   * runtime's, the same in every view. */
  uint64_t deque_depth;   /* spawned and woken tasks waiting in the worker's deque (and the
                           * spawns it keeps: weft_spawn) */
  uint64_t yield_depth;   /* yielded (and injected-batch) tasks in its yield queue */
  uint64_t inject_depth;  /* spawns and wakes from outside not yet taken */
  uint64_t timers_armed;  /* sleeps and deadlines pending */
  uint64_t tasks_live;    /* spawned and not yet ended */
  uint64_t stacks_mapped; /* task stacks mapped */
  uint64_t stacks_cached; /* of those, not held by a task now */
  /* The worker's queue arrays (summed for WEFT_METRICS_ALL): a queue that fills grows into an
   * array twice as large, and the old one is freed once no thief can be reading it. */
  uint64_t deque_arrays_retired; /* counter: arrays grown out of */
  uint64_t deque_arrays_freed;   /* counter: of those, freed */
  uint64_t deque_bytes;          /* depth: bytes in the queues' arrays, live and retired */
  uint64_t deque_retired_bytes;  /* depth: of those, in retired arrays not yet freed */
  /* Counter: spawns that ran their child first (weft_options_t.spawn_throttle). */
  uint64_t tasks_run_first;
} weft_metrics_t;
#define WEFT_METRICS_ALL (-1)
#define WEFT_METRICS_INIT \
  {sizeof(weft_metrics_t), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
/* worker: 0 .. weft_runtime_workers(rt) - 1, or WEFT_METRICS_ALL. WEFT_EINVAL for a NULL rt or
 * metrics, a metrics_size too small for its first field, or a worker out of range. Safe from
 * any thread, including the runtime's own tasks. */
WEFT_EXTERN int weft_runtime_metrics(weft_runtime_t *rt, int worker, weft_metrics_t *metrics);

/* Writes one line per live task to fd (2 for stderr): id, name, state (queued; running on
 * worker N; sleeping until +T; awaiting task N; awaiting a future; in gather of K; done, the
 * handle not yet released) and age. The wait reason is the one recorded where the task last
 * suspended. Tasks keep running while the dump is taken: each line is one task's state at
 * one moment, not all at the same moment. Safe from any thread; not from a signal handler
 * (WEFT_TRACE=dump:SIG makes weft's monitor thread dump on a signal for you).
 *
 * WEFT_TRACE (or weft_options_t.trace): comma-separated, each item turning one tool on:
 *   schedtrace:MS   one line on stderr every MS milliseconds summarising the runtime
 *                   (Go's schedtrace, adapted; fields in docs/api.md)
 *   dump:SIG        a task dump on stderr when the process gets SIG (USR1, USR2, or a
 *                   number); the handler only counts, the monitor thread dumps
 *   watchdog:MS     names on stderr a task that holds its worker more than MS milliseconds
 *                   without suspending (a blocking call in a task), once per such slice
 *   sites           the dump shows where each task was spawned ("spawned at file+0xOFF",
 *                   for addr2line: the caller of the API call that spawned it); costs a
 *                   spawn one out-of-line call
 * Any of them starts one monitor thread per runtime; without WEFT_TRACE nothing runs. */
WEFT_EXTERN int weft_runtime_dump(weft_runtime_t *rt, int fd);

/* ---- Tasks -------------------------------------------------------------------------------- */

/* asyncio.create_task(fn(arg)) from inside a task: the task is runnable at once, on any worker
 * of the caller's runtime. task == NULL makes it detached. Fails with WEFT_EPERM outside a task
 * (use weft_runtime_spawn there), WEFT_ENOMEM when no descriptor or stack can be had (every
 * running task is unaffected), WEFT_EINVAL for a NULL fn. On failure *task is not written.
 * (The _create functions set their handle to NULL on failure.)
 * Where it runs: while every worker is busy, the caller's worker keeps its newest spawns to
 * itself until another worker asks for work (as Lace's split deque and Tokio's LIFO slot do: a
 * join of the newest child then costs no fence). It answers an ask at the caller's next spawn
 * or fork, at a join out of spawn order, before each child a gather runs inline, and whenever
 * its loop picks a task (the caller suspends or ends): what it does not start then goes where
 * any worker can take it. The first spawn of a worker with nothing queued, and every spawn
 * while a worker is idle, is visible at once. So, as in asyncio, a task — or a child it
 * joins, awaits or gathers, which may run inline on its stack — must not block its thread
 * (spin on memory, a blocking call: weft_offload is for those) waiting for something another
 * of its unstarted children would do: that may wait for ever. Weft's own waits (join, future,
 * channel, mutex, sleep, yield) are safe. With weft_options_t.spawn_throttle on, a spawn onto a
 * worker with that many tasks queued runs its child first and may resume the caller on another
 * thread (see that option). */
WEFT_EXTERN int weft_spawn(weft_task_t **task, weft_fn fn, void *arg);
/* The same from any thread, onto a given runtime. WEFT_ESHUTDOWN once shutdown or destroy has
 * begun; a call from another thread must return before weft_runtime_destroy does. */
WEFT_EXTERN int weft_runtime_spawn(weft_runtime_t *rt, weft_task_t **task, weft_fn fn, void *arg);

/* await task: suspends the calling task (or blocks a thread that is not a worker) until the
 * task ends, then stores its result. A task that no worker has started yet runs inline, as a
 * plain call on the caller's stack. Returns the task's own error: 0, what it failed with
 * (weft_fail), WEFT_ECANCELED (it was cancelled — also what a task cancelled by its runtime's
 * shutdown answers), WEFT_ENOMEM (it found no stack to start on), or WEFT_ESHUTDOWN (its
 * runtime's destroy discarded it, unfinished after the shutdown's bound); WEFT_ECANCELED too
 * if the caller is cancelled while it waits. */
WEFT_EXTERN int weft_await(weft_task_t *task, void **result);
/* The same with an absolute deadline on CLOCK_MONOTONIC in nanoseconds (weft_now_ns());
 * WEFT_ETIMEDOUT leaves the task running and awaitable again. */
WEFT_EXTERN int weft_await_until(weft_task_t *task, uint64_t deadline_ns, void **result);
WEFT_EXTERN int weft_await_timeout(weft_task_t *task, uint64_t timeout_ns, void **result);
/* await + release, the fork-join idiom. All four: WEFT_EINVAL for a NULL task. */
WEFT_EXTERN int weft_join(weft_task_t *task, void **result);
WEFT_EXTERN void weft_task_release(weft_task_t *task);

/* ---- Strict fork-join: frames (Lace's SPAWN/SYNC, Cilk's spawn/sync) ----
 * weft_fork(&f, fn, arg) offers the call fn(arg) to other workers; weft_sync(&f) returns its
 * result, running it right there as a plain call unless a thief took it meanwhile (then it
 * waits, and the worker runs other tasks). An untaken fork+sync costs a few nanoseconds: no
 * descriptor, no stack, no atomic instruction; only a taken frame becomes a task. Rules (API
 * misuse aborts with a sentence): the frame lives in the forking function's own frame (a local
 * variable) and each fork is synced, in reverse order of the forks, before that function
 * returns; the code between a fork and its sync must not wait for something fn does (fn may
 * run only at the sync, as Lace's tasks may); weft_sync takes no error: fn always runs exactly
 * once (as a call at the sync if no one else could run it) and its result is returned.
 * Outside a task the call runs at the sync. Cancellation: fn run at the sync is part of the
 * task and sees its cancel and deadline scopes; fn run elsewhere (by a thief, or because the
 * task suspended between fork and sync) is a task of its own that the forking task's cancel
 * does not reach — it runs to its end, and weft_sync waits for it shielded (fn writes into
 * the frame); the cancel stays pending for the task's next suspension point. A fork left
 * unsynced is caught when its task ends, or when a task run inline by a join, await or
 * gather returns; a plain function's, or one a task suspended with and then left, is
 * undefined (docs/api.md, weft_sync).
 * For everything that is not strictly nested, weft_spawn/weft_join. */
typedef struct weft_frame {
  void *weft__opaque[6];
} weft_frame_t;
#define WEFT__FRAMES_CAP 4096u /* frames a worker's deque holds; deeper forks run at their sync */
#define WEFT__FRAME_QUEUED 1u
#define WEFT__FRAME_SYNCED 4u
/* The complete operations, out of line; weft_fork/weft_sync below are their inline fast paths
 * where the compiler and platform allow (x86-64 ELF, C), else these themselves. */
WEFT_EXTERN void weft__fork(weft_frame_t *frame, weft_fn fn, void *arg);
WEFT_EXTERN void *weft__sync(weft_frame_t *frame);

#if defined(__x86_64__) && defined(__LP64__) && defined(__ELF__) && defined(__GNUC__) && \
    !defined(__cplusplus) && !defined(WEFT_NO_INLINE_FRAMES)
/* Private ABI (part of the SONAME contract, README "Versions and ABI"; do not use): the layout
 * of a frame and of the owner's half of a worker's frame deque (lib/internal.h's
 * weft__frame_t and weft__frames_t, checked there by static asserts), and the thread's deque
 * (libweft's weft__tls_frames, initial-exec TLS). The inline paths below are the owner-only
 * steps of lib/frame_impl.h's push and pop (no atomic read-modify-write, no fence); anything
 * else goes to weft__fork/weft__sync. */
#define WEFT__FRAMES_INLINE 1
struct weft__frame_abi {
  uintptr_t word;
  weft_fn fn;
  void *arg;
  void *result;
  uint32_t where;
  uint32_t unrun;
};
struct weft__frames_abi {
  uint32_t head, osplit;
  void **slot;
  char pad[64 - 16];
  uint64_t ts;
  uint32_t splitreq;
};
/* The thread's frame deque, NULL off a worker. One asm volatile (with a memory clobber), so
 * that a read after a call that switched the task to another thread is a fresh read: a
 * compiler may keep a thread-local address across calls (lib/arch/tls_x86_64_sysv.h). */
static inline struct weft__frames_abi *weft__frames_self(void) {
  struct weft__frames_abi *d;
  __asm__ __volatile__("movq weft__tls_frames@gottpoff(%%rip), %0\n\t"
                       "movq %%fs:(%0), %0"
                       : "=r"(d)
                       :
                       : "memory");
  return d;
}
static inline void weft_fork(weft_frame_t *frame, weft_fn fn, void *arg) {
  struct weft__frame_abi *f = (struct weft__frame_abi *)frame;
  struct weft__frames_abi *d = weft__frames_self();
  uint32_t h;
  /* not the first frame (it may be shared at once), not full, no thief asking. acquire: pairs
   * with an asker's release (frame_impl.h's push has the same load) */
  if (__builtin_expect(d && f && fn && (h = d->head) - 1u < WEFT__FRAMES_CAP - 1u &&
                           !__atomic_load_n(&d->splitreq, __ATOMIC_ACQUIRE),
                       1)) {
    f->fn = fn;
    f->arg = arg;
    f->where = WEFT__FRAME_QUEUED;
    /* relaxed: thieves see the slot only after a share's release (frame_impl.h) */
    __atomic_store_n(&d->slot[h], (void *)f, __ATOMIC_RELAXED);
    d->head = h + 1;
    return;
  }
  weft__fork(frame, fn, arg);
}
static inline void *weft_sync(weft_frame_t *frame) {
  struct weft__frame_abi *f = (struct weft__frame_abi *)frame;
  struct weft__frames_abi *d;
  uint32_t h;
  /* queued here, the newest, and above the split: no thief can have it. relaxed: our own
   * write (a QUEUED frame was forked on this worker: any suspension since would detach it) */
  if (__builtin_expect(f && f->where == WEFT__FRAME_QUEUED && (d = weft__frames_self()) != 0 &&
                           (h = d->head) > d->osplit &&
                           __atomic_load_n(&d->slot[h - 1], __ATOMIC_RELAXED) == (void *)f,
                       1)) {
    d->head = h - 1;
    f->where = WEFT__FRAME_SYNCED;
    return f->fn(f->arg);
  }
  return weft__sync(frame);
}
#else
static inline void weft_fork(weft_frame_t *frame, weft_fn fn, void *arg) {
  weft__fork(frame, fn, arg);
}
static inline void *weft_sync(weft_frame_t *frame) { return weft__sync(frame); }
#endif

/* task.done() and task.result(): result fails with WEFT_EAGAIN while the task runs. Both
 * return WEFT_EINVAL for a NULL task (so test done() == 1, not just non-zero). */
WEFT_EXTERN int weft_task_done(const weft_task_t *task);
WEFT_EXTERN int weft_task_result(const weft_task_t *task, void **result);

/* The running task, or NULL outside tasks. An inlined task is itself here too. */
WEFT_EXTERN weft_task_t *weft_current(void);
/* Names are for diagnostics (stack-overflow reports, dumps). The string is not copied: it must
 * stay valid until the task has ended and its handle is released (detached: until it ends),
 * since dumps print tasks done but not released (a literal, typically; or memory freed after
 * weft_task_release). set_name returns 0, or WEFT_ENOMEM when the name
 * could not be stored (names live in an array allocated for every 511 descriptors on the first
 * name among them, 16 KiB; the task is unaffected and keeps its previous name, if any). Ids
 * start at 1 in each runtime and are unique in it. A NULL task aborts in all three. */
WEFT_EXTERN int weft_task_set_name(weft_task_t *task, const char *name);
WEFT_EXTERN const char *weft_task_name(const weft_task_t *task);
WEFT_EXTERN uint64_t weft_task_id(const weft_task_t *task);

/* await asyncio.sleep(0): let other ready tasks run. Fails with WEFT_EPERM outside a task. */
WEFT_EXTERN int weft_yield(void);

/* ---- Cancellation and task errors ---------------------------------------------------------- */

/* Task.cancel(), from any thread or task: the cancel is delivered at the target's next
 * suspension point — sleep, yield, await (every form), gather, gather_calls, wait_any, a
 * future's await — as WEFT_ECANCELED returned from that call. It is sticky: every later
 * suspension point of the task returns it too (Trio, libdill), so C code that ignores one
 * error still unwinds. A task that never suspends is not interrupted. A task cancelled before
 * it starts ends without running. Cancelling a finished task does nothing; cancelling twice is
 * cancelling once. Awaiting a cancelled task gives WEFT_ECANCELED and a NULL result, unless the
 * task set an error of its own (weft_fail). A thread that is not a task cannot be cancelled;
 * its waits ignore cancellation. WEFT_EINVAL for a NULL task. */
WEFT_EXTERN int weft_cancel(weft_task_t *task);
/* asyncio.shield for cleanup code: between begin and end, the current task's suspension points
 * do not deliver a cancel (it stays pending); nestable. end returns WEFT_ECANCELED if a cancel
 * is pending when the outermost shield ends (that answer delivers it: the task ends cancelled
 * unless it fails otherwise), else 0.
 * WEFT_EPERM outside a task, WEFT_ERANGE beyond 254 nested shields (the 255th level is the
 * runtime's, for its own cleanup waits); an end without a begin aborts. A shield holds back
 * the deadline scopes (weft_deadline_begin) begun outside it as well; a scope begun inside the
 * shield bounds the shielded code's waits (Trio's rule). */
WEFT_EXTERN int weft_shield_begin(void);
WEFT_EXTERN int weft_shield_end(void);
/* Task.cancelling(): 1 if a cancel was requested for the current task (0 outside tasks). */
WEFT_EXTERN int weft_cancelling(void);
/* Ends the current task with an error: `return weft_fail(-EIO);` in a task body. The error
 * (any negative int, a WEFT_E* code or your own) is what await, join, gather and groups report
 * for the task. Aborts outside a task or for err >= 0. Returns NULL (the task's result). */
WEFT_EXTERN void *weft_fail(int err);
/* asyncio.wait_for: await with a timeout that cancels. If the deadline passes, the task is
 * cancelled and awaited until it has unwound; WEFT_ETIMEDOUT then, unless it finished anyway
 * (its own outcome is returned). If the caller is cancelled meanwhile, the task is cancelled and
 * awaited the same way, and WEFT_ECANCELED is returned. The handle stays the caller's. */
WEFT_EXTERN int weft_await_for(weft_task_t *task, uint64_t timeout_ns, void **result);
/* asyncio.wait(..., return_when=FIRST_COMPLETED): waits until one of tasks[0..n) is done (or
 * the absolute deadline passes: UINT64_MAX for none), and stores the lowest index of a done task
 * in *index. 0, WEFT_ETIMEDOUT, WEFT_ECANCELED; WEFT_EINVAL for n == 0 or a NULL handle;
 * WEFT_ENOMEM if n > 64 and its waiter nodes cannot be allocated. Nothing is cancelled. */
WEFT_EXTERN int weft_wait_any(weft_task_t *const *tasks, size_t n, uint64_t deadline_ns,
                              size_t *index);

/* asyncio.timeout: a deadline scope for the current task's own waits. Between begin and end,
 * every wait of the task is bounded by the absolute deadline (CLOCK_MONOTONIC, weft_now_ns)
 * and returns WEFT_ETIMEDOUT once it passes — at once, for every later wait in the scope.
 * Scopes nest (the earliest deadline rules) and must end innermost first (otherwise end
 * aborts); the struct lives on the caller's stack. end returns WEFT_ETIMEDOUT if the deadline
 * passed before the scope ended, else 0. Tasks the task spawns or awaits are not bounded by
 * it (cancel them, or use weft_await_for). WEFT_EPERM outside a task, WEFT_EINVAL for NULL;
 * begin returns WEFT_ENOMEM, and begins nothing, when a task's first scope finds no memory for
 * where scopes are kept (an array for every 511 descriptors, 16 KiB, shared with names). */
typedef struct weft_deadline {
  uint64_t deadline_ns;
  uint64_t effective_ns;      /* weft's: min with the enclosing scopes */
  struct weft_deadline *outer; /* weft's: the enclosing scope */
  uint32_t shield_depth;      /* weft's: the depth of the innermost shield it was begun in */
} weft_deadline_t;
WEFT_EXTERN int weft_deadline_begin(weft_deadline_t *scope, uint64_t deadline_ns);
WEFT_EXTERN int weft_deadline_end(weft_deadline_t *scope);

/* ---- Task groups -------------------------------------------------------------------------- */

/* asyncio.TaskGroup, errgroup, JoinSet. Tasks spawned into a group are awaited together; the
 * first error of one that is not a cancellation cancels all the others and is what the wait
 * returns; no task outlives its group. Usable from tasks and plain threads alike.
 *   weft_group_create: rt NULL means the calling task's runtime (WEFT_EINVAL outside a task).
 *   weft_group_spawn: starts fn(arg) in the group (no handle: results travel through arg);
 *     WEFT_ECANCELED once the group is cancelled or has failed; WEFT_ESHUTDOWN once its
 *     runtime's shutdown or destroy has returned, and from outside the runtime (a plain
 *     thread) once its destroy has begun: destroy waits for such a spawn already inside (the
 *     group outlives the runtime: wait, cancel and destroy still work); spawn's own errors
 *     otherwise. The group lets go of a
 *     task once it has ended: a long-lived group (a server's connections) holds memory for
 *     the tasks alive at once, not for every task it ran. So a group task's handle
 *     (weft_current() inside it) is valid only until the task ends.
 *   weft_group_wait: waits for every task, including ones spawned while it waits; returns 0,
 *     the first non-cancellation error, or WEFT_ECANCELED (the group was cancelled, or the
 *     waiting task was: it then cancels the group's tasks and waits for them to unwind — so
 *     cancelling the task that owns a group cancels its children); WEFT_ETIMEDOUT likewise
 *     when the waiting task's deadline scope passes.
 *   weft_group_cancel: cancels every task of the group; later spawns are refused.
 *   weft_group_destroy: cancels and awaits whatever was not waited for, then frees. */
WEFT_EXTERN int weft_group_create(weft_group_t **group, weft_runtime_t *rt);
/* A group with options (NULL, or all zero: weft_group_create's). WEFT_EINVAL for an unknown
 * flag.
 *   WEFT_GROUP_KEEP_GOING: a task's error is its own (Go's WaitGroup, tokio-util's TaskTracker:
 *     a server's connections): it cancels no other task and refuses no spawn, and the wait
 *     returns 0 once every task ended (WEFT_ECANCELED or WEFT_ETIMEDOUT as below still).
 *   unrun: called once with the arg of each task of the group that ends without running fn
 *     (cancelled before it started, no stack when it was to start, or discarded by its
 *     runtime's destroy before it started), so that what arg owns is freed — what dropping a
 *     never-polled future does in Rust. It runs on a worker outside any task, or, for a task
 *     discarded unstarted, on the thread destroying the runtime (before it closes the
 *     runtime's sockets): it must not wait nor call the group (free memory, close a socket). */
typedef struct weft_group_opts {
  unsigned flags;           /* WEFT_GROUP_KEEP_GOING */
  void (*unrun)(void *arg); /* or NULL */
} weft_group_opts_t;
#define WEFT_GROUP_KEEP_GOING 1u
WEFT_EXTERN int weft_group_create_opts(weft_group_t **group, weft_runtime_t *rt,
                                       const weft_group_opts_t *opts);
WEFT_EXTERN int weft_group_spawn(weft_group_t *group, weft_fn fn, void *arg);
WEFT_EXTERN int weft_group_wait(weft_group_t *group);
WEFT_EXTERN int weft_group_cancel(weft_group_t *group);
WEFT_EXTERN void weft_group_destroy(weft_group_t *group);

/* ---- Gather ------------------------------------------------------------------------------- */

/* asyncio.gather over tasks already spawned: waits for all n, results[i] from tasks[i]
 * (results may be NULL). Handles stay owned by the caller. Returns 0, or the error of the
 * lowest-indexed task that failed (asyncio.gather's default: every result is still filled in).
 * Tasks not yet started that sit newest in the caller's deque run inline, newest first.
 * If the caller is cancelled while it waits, the unfinished tasks are cancelled too (asyncio)
 * and WEFT_ECANCELED returns at once. WEFT_EINVAL if one of its handles is NULL, or tasks is
 * NULL with n > 0 (n = 0: 0 at once). A task that gathers itself aborts (as a join of itself
 * does) when the gather comes to wait for it. */
WEFT_EXTERN int weft_gather(weft_task_t *const *tasks, size_t n, void **results);
/* The same with each task's own status in errors[i] (return_exceptions=True): returns 0 once
 * all are done, whatever they returned; WEFT_ECANCELED, WEFT_EINVAL as weft_gather. */
WEFT_EXTERN int weft_gather_status(weft_task_t *const *tasks, size_t n, void **results,
                                   int *errors);

/* asyncio.gather over work not yet spawned: fns[i](args[i]) for each i, concurrently, results in
 * argument order; returns 0 or the lowest-indexed child's error. Children that nobody has
 * stolen run inline on the caller's stack, in argument order (A, B, C, as asyncio starts
 * them). If the caller is cancelled, its children are cancelled and awaited before it returns
 * WEFT_ECANCELED: none outlives the call. */
typedef struct weft_call {
  weft_fn fn;
  void *arg;
} weft_call_t;
WEFT_EXTERN int weft_gather_calls(const weft_call_t *calls, size_t n, void **results);

/* ---- Futures ------------------------------------------------------------------------------ */

/* asyncio.Future: a one-shot value that tasks (and threads) await and that any thread
 * resolves. The creator destroys it once every await on it has returned — or, once resolved,
 * while awaiters its resolve woke have yet to run (they have the value already; docs/api.md
 * says which awaiters that covers). Every function here that
 * returns int answers a NULL future with WEFT_EINVAL (weft_future_done included). */
WEFT_EXTERN int weft_future_create(weft_future_t **future);
WEFT_EXTERN void weft_future_destroy(weft_future_t *future);
/* WEFT_EALREADY if already resolved (the first value stays). Safe from any thread, including
 * signal-free callbacks and threads the runtime does not know. */
WEFT_EXTERN int weft_future_resolve(weft_future_t *future, void *value);
WEFT_EXTERN int weft_future_done(const weft_future_t *future);
WEFT_EXTERN int weft_future_await(weft_future_t *future, void **value);
WEFT_EXTERN int weft_future_await_until(weft_future_t *future, uint64_t deadline_ns,
                                        void **value);

/* ---- Time --------------------------------------------------------------------------------- */

/* CLOCK_MONOTONIC in nanoseconds. */
WEFT_EXTERN uint64_t weft_now_ns(void);
/* await asyncio.sleep(d): never returns early; 0 yields. */
WEFT_EXTERN int weft_sleep_ns(uint64_t duration_ns);
WEFT_EXTERN int weft_sleep_ms(uint64_t duration_ms);
WEFT_EXTERN int weft_sleep_until(uint64_t deadline_ns);

/* ---- Synchronisation and channels ---------------------------------------------------------- */

/* asyncio's Event, Lock, Semaphore, BoundedSemaphore, Condition and Queue, Go's WaitGroup, chan
 * and select. Each is an opaque handle from its _create (WEFT_EINVAL for a NULL out pointer,
 * WEFT_ENOMEM) that its owner frees with its _destroy (NULL does nothing) once no task or thread
 * waits on it: destroying one that is still awaited aborts. Every function that returns int
 * answers a NULL handle with WEFT_EINVAL.
 *
 * Waiting: every call that can block takes an absolute deadline (CLOCK_MONOTONIC, weft_now_ns;
 * UINT64_MAX: none) and returns WEFT_ETIMEDOUT once it passes, or WEFT_ECANCELED when the
 * calling task is cancelled (and WEFT_ETIMEDOUT when its deadline scope passes) while it waits.
 * A call that completes without waiting does not check for a cancel (asyncio's rule). Called
 * from a task, a wait suspends the task and its worker runs others; called from a plain thread
 * (not a worker), it blocks that thread, which is not cancellable; called on a worker thread
 * outside any task, it aborts. Waiters queue first come, first served (a mutex's woken waiter
 * may still lose to a running locker: see weft_mutex_lock).
 *
 * Cancel-safety: a call that fails (deadline, cancel) had no effect — a send did not deliver
 * its value, a recv took nothing, a lock or permit was not taken. A call that succeeded returns
 * 0 even if a cancel arrived after the hand-off; the cancel is then delivered at the task's
 * next suspension point. */
typedef struct weft_mutex weft_mutex_t;
typedef struct weft_sem weft_sem_t;
typedef struct weft_event weft_event_t;
typedef struct weft_cond weft_cond_t;
typedef struct weft_waitgroup weft_waitgroup_t;
typedef struct weft_chan weft_chan_t;
typedef struct weft_queue weft_queue_t;

/* asyncio.Lock / Go's sync.Mutex, not reentrant. lock: 0, WEFT_ETIMEDOUT, WEFT_ECANCELED;
 * trylock: 0 or WEFT_EAGAIN. Uncontended, lock and unlock are one atomic operation each; a
 * contended lock spins briefly, then (on a runtime of more than one worker, at most once per
 * call) takes its thread off the CPU for a nap of 50 us plus the kernel's timer slack, so the
 * holder's worker runs on with the lock in its cache — this worker's other tasks wait that
 * long too — then queues and suspends only the task. A woken waiter competes with running
 * lockers (no convoy); one that loses after waiting more than WEFT_MUTEX_STARVE_NS goes back
 * to the queue's head marked starving and is handed the lock directly when an unlock reaches
 * it (Go's starvation mode), so no waiter starves. Any task or thread may unlock;
 * unlocking a mutex that is not locked aborts. */
#define WEFT_MUTEX_STARVE_NS 1000000ull
WEFT_EXTERN int weft_mutex_create(weft_mutex_t **mutex);
WEFT_EXTERN void weft_mutex_destroy(weft_mutex_t *mutex);
WEFT_EXTERN int weft_mutex_lock(weft_mutex_t *mutex, uint64_t deadline_ns);
WEFT_EXTERN int weft_mutex_trylock(weft_mutex_t *mutex);
WEFT_EXTERN int weft_mutex_unlock(weft_mutex_t *mutex);

/* asyncio.Semaphore with `value` permits; max > 0 makes it a BoundedSemaphore, whose release
 * beyond max fails with WEFT_ERANGE (create: WEFT_EINVAL if value > max); an unbounded one's
 * release fails with WEFT_ERANGE at SIZE_MAX permits. A release hands its
 * permit to the oldest waiter. acquire: 0, WEFT_ETIMEDOUT, WEFT_ECANCELED; try_acquire: 0 or
 * WEFT_EAGAIN. */
WEFT_EXTERN int weft_sem_create(weft_sem_t **sem, size_t value, size_t max);
WEFT_EXTERN void weft_sem_destroy(weft_sem_t *sem);
WEFT_EXTERN int weft_sem_acquire(weft_sem_t *sem, uint64_t deadline_ns);
WEFT_EXTERN int weft_sem_try_acquire(weft_sem_t *sem);
WEFT_EXTERN int weft_sem_release(weft_sem_t *sem);
WEFT_EXTERN int weft_sem_value(weft_sem_t *sem, size_t *value);

/* asyncio.Event: set wakes every waiter and lets later waits through until clear. is_set: 1 or
 * 0. wait: 0, WEFT_ETIMEDOUT, WEFT_ECANCELED. */
WEFT_EXTERN int weft_event_create(weft_event_t **event);
WEFT_EXTERN void weft_event_destroy(weft_event_t *event);
WEFT_EXTERN int weft_event_set(weft_event_t *event);
WEFT_EXTERN int weft_event_clear(weft_event_t *event);
WEFT_EXTERN int weft_event_is_set(const weft_event_t *event);
WEFT_EXTERN int weft_event_wait(weft_event_t *event, uint64_t deadline_ns);

/* asyncio.Condition over a weft_mutex_t the caller holds: wait unlocks it, waits for a notify,
 * and always returns with it locked again (relocking ignores cancellation and deadlines), with
 * 0 (notified), WEFT_ETIMEDOUT or WEFT_ECANCELED; calling wait without the mutex locked aborts.
 * Wake-ups may be spurious in effect (another task may change the state first): wait in a loop
 * that tests the predicate. notify wakes the `count` oldest waiters, notify_all all of them. */
WEFT_EXTERN int weft_cond_create(weft_cond_t **cond);
WEFT_EXTERN void weft_cond_destroy(weft_cond_t *cond);
WEFT_EXTERN int weft_cond_wait(weft_cond_t *cond, weft_mutex_t *mutex, uint64_t deadline_ns);
WEFT_EXTERN int weft_cond_notify(weft_cond_t *cond, size_t count);
WEFT_EXTERN int weft_cond_notify_all(weft_cond_t *cond);

/* Go's sync.WaitGroup: add(delta) changes the counter (below zero aborts; WEFT_ERANGE, with the
 * counter unchanged, where it would pass LONG_MAX), done is add(-1), wait
 * returns once it is zero: 0, WEFT_ETIMEDOUT, WEFT_ECANCELED. */
WEFT_EXTERN int weft_waitgroup_create(weft_waitgroup_t **group);
WEFT_EXTERN void weft_waitgroup_destroy(weft_waitgroup_t *group);
WEFT_EXTERN int weft_waitgroup_add(weft_waitgroup_t *group, long delta);
WEFT_EXTERN int weft_waitgroup_done(weft_waitgroup_t *group);
WEFT_EXTERN int weft_waitgroup_wait(weft_waitgroup_t *group, uint64_t deadline_ns);

/* Channels: Go's chan of `void *`, multi-producer multi-consumer, FIFO for values and waiters.
 * capacity: 0 for a rendezvous (a send waits for a receiver, Go's unbuffered chan), N for a
 * buffer of N values, WEFT_CHAN_UNBOUNDED for a buffer that grows (send never waits; it fails
 * with WEFT_ENOMEM when memory runs out).
 * Ownership: a value is a pointer the channel never dereferences or frees; a successful send
 * passes it (and whatever it owns) to the receiver that gets it; a failed send leaves it with
 * the sender. Values still buffered when the channel is destroyed are dropped unseen: drain
 * them first (try_recv) if they own memory.
 *   send:  0, WEFT_ECLOSED (closed before or while it waited), WEFT_ETIMEDOUT, WEFT_ECANCELED.
 *   recv:  0 with *value (value may be NULL), WEFT_ECLOSED once closed and drained,
 *          WEFT_ETIMEDOUT, WEFT_ECANCELED.
 *   try_send, try_recv: as send and recv, with WEFT_EAGAIN instead of waiting.
 *   close: later sends and blocked senders fail with WEFT_ECLOSED; receivers drain what is
 *          buffered, then get WEFT_ECLOSED. Closing twice returns WEFT_ECLOSED.
 *   len:   the values buffered now. */
#define WEFT_CHAN_UNBOUNDED SIZE_MAX
WEFT_EXTERN int weft_chan_create(weft_chan_t **chan, size_t capacity);
WEFT_EXTERN void weft_chan_destroy(weft_chan_t *chan);
WEFT_EXTERN int weft_chan_send(weft_chan_t *chan, void *value, uint64_t deadline_ns);
WEFT_EXTERN int weft_chan_try_send(weft_chan_t *chan, void *value);
WEFT_EXTERN int weft_chan_recv(weft_chan_t *chan, void **value, uint64_t deadline_ns);
WEFT_EXTERN int weft_chan_try_recv(weft_chan_t *chan, void **value);
WEFT_EXTERN int weft_chan_close(weft_chan_t *chan);
WEFT_EXTERN int weft_chan_len(weft_chan_t *chan, size_t *len);

/* Go's select over up to 64 send and recv cases: waits until one can proceed, does exactly
 * that one and stores its index in *index (index may be NULL). A recv case's value receives
 * the value; a case with a NULL chan never proceeds (Go's nil channel). Returns 0, or
 * WEFT_ECLOSED with *index naming the case whose channel is closed (a recv case once drained);
 * WEFT_ETIMEDOUT, WEFT_ECANCELED with no case done; deadline_ns 0: do not wait (WEFT_EAGAIN if
 * no case is ready: Go's default case). WEFT_EINVAL for n == 0, n > 64 or a bad op; WEFT_ENOMEM
 * when the case chosen is a send to an unbounded channel that could not grow. Fair: the
 * ready cases are polled in a random order (Go randomises its order too), so under
 * contention each ready case is chosen about equally often; waiting, the first case a peer
 * reaches wins. */
typedef enum { WEFT_CHAN_SEND = 1, WEFT_CHAN_RECV = 2 } weft_chan_dir_t;
typedef struct weft_chan_op {
  weft_chan_t *chan;
  weft_chan_dir_t op;
  void *value; /* send: the value to send; recv: the value received */
} weft_chan_op_t;
WEFT_EXTERN int weft_chan_select(weft_chan_op_t *ops, size_t n, uint64_t deadline_ns,
                                 size_t *index);

/* asyncio.Queue: a channel (capacity as weft_chan_create) that also counts unfinished items.
 * put and get are send and recv (same codes; try_ variants WEFT_EAGAIN); every item put counts
 * as unfinished, from when the queue accepts it (a put still blocked on a full queue has put
 * nothing), until a consumer calls task_done for it (more task_done calls than items aborts);
 * join waits until none is unfinished: 0, WEFT_ETIMEDOUT, WEFT_ECANCELED. close is the
 * channel's. destroy aborts if a task or thread still puts, gets or joins. */
WEFT_EXTERN int weft_queue_create(weft_queue_t **queue, size_t capacity);
WEFT_EXTERN void weft_queue_destroy(weft_queue_t *queue);
WEFT_EXTERN int weft_queue_put(weft_queue_t *queue, void *value, uint64_t deadline_ns);
WEFT_EXTERN int weft_queue_try_put(weft_queue_t *queue, void *value);
WEFT_EXTERN int weft_queue_get(weft_queue_t *queue, void **value, uint64_t deadline_ns);
WEFT_EXTERN int weft_queue_try_get(weft_queue_t *queue, void **value);
WEFT_EXTERN int weft_queue_task_done(weft_queue_t *queue);
WEFT_EXTERN int weft_queue_join(weft_queue_t *queue, uint64_t deadline_ns);
WEFT_EXTERN int weft_queue_close(weft_queue_t *queue);

/* ---- Typed tasks --------------------------------------------------------------------------- */

/* A task with typed arguments and a typed result, no hand-packed struct and no casts:
 *
 *   WEFT_TASK_2(double, scale, double, x, int, times) { return x * times; }
 *   ...
 *   WEFT_HANDLE(scale) h;                        // a typed handle
 *   int err = WEFT_SPAWN(scale)(&h, 1.5, 4);     // asyncio.create_task(scale(1.5, 4))
 *   double r;
 *   err = WEFT_JOIN(scale)(h, &r);               // r == 6.0; the handle is released
 *
 * WEFT_TASK_n(ret, name, type1, arg1, ..., typen, argn), n = 0..4, declares `static ret
 * name(args)` (the body follows the macro; call it directly for a plain call) and generates,
 * all static and all named from `name`: name_weft_frame (the arguments and the result, one
 * malloc per spawn, freed by the join), name_weft_handle, name_weft_entry (names the task
 * #name, then calls name), name_weft_spawn and name_weft_join. WEFT_SPAWN works inside tasks
 * only (weft_spawn's rules and errors, plus WEFT_ENOMEM for the frame); WEFT_JOIN returns
 * weft_join's error and stores the result only when it is 0. ret must not be void (return an
 * int). Each handle is joined exactly once. Locals of the generated code are weft__-prefixed. */
#define WEFT_HANDLE(name) name##_weft_handle
#define WEFT_SPAWN(name) name##_weft_spawn
#define WEFT_JOIN(name) name##_weft_join

#define WEFT__ID(...) __VA_ARGS__
#define WEFT__TASK(ret, name, fields, params, spawn_params, call_args, stores)                 \
  typedef struct name##_weft_frame {                                                         \
    WEFT__ID fields ret weft_ret;                                                            \
  } name##_weft_frame;                                                                       \
  typedef struct name##_weft_handle {                                                        \
    weft_task_t *task;                                                                       \
    name##_weft_frame *frame;                                                                \
  } name##_weft_handle;                                                                      \
  static ret name(WEFT__ID params);                                                          \
  static void *name##_weft_entry(void *weft__p) {                                            \
    name##_weft_frame *weft__f = (name##_weft_frame *)weft__p;                               \
    (void)weft_task_set_name(weft_current(), #name); /* best effort: a label for dumps */   \
    weft__f->weft_ret = name(WEFT__ID call_args);                                            \
    return weft__f;                                                                          \
  }                                                                                          \
  static inline __attribute__((unused)) int name##_weft_spawn(WEFT__ID spawn_params) {       \
    name##_weft_frame *weft__f = (name##_weft_frame *)malloc(sizeof *weft__f);               \
    if (!weft__f) return WEFT_ENOMEM;                                                        \
    WEFT__ID stores;                                                                         \
    int weft__err = weft_spawn(&weft__h->task, name##_weft_entry, weft__f);                  \
    weft__h->frame = weft__err ? NULL : weft__f;                                             \
    if (weft__err) free(weft__f);                                                            \
    return weft__err;                                                                        \
  }                                                                                          \
  static inline __attribute__((unused)) int name##_weft_join(name##_weft_handle weft__h,     \
                                                             ret *weft__out) {               \
    int weft__err = weft_join(weft__h.task, NULL);                                           \
    if (!weft__err && weft__out) *weft__out = weft__h.frame->weft_ret;                       \
    free(weft__h.frame); /* the task has ended (or was discarded): nothing else holds it */  \
    return weft__err;                                                                        \
  }                                                                                          \
  static ret name(WEFT__ID params)

#define WEFT_TASK_0(ret, name)                                                                 \
  WEFT__TASK(ret, name, (), (void), (name##_weft_handle * weft__h), (), ((void)0))
#define WEFT_TASK_1(ret, name, t1, a1)                                                         \
  WEFT__TASK(ret, name, (t1 a1;), (t1 a1), (name##_weft_handle * weft__h, t1 a1),             \
             (weft__f->a1), (weft__f->a1 = a1))
#define WEFT_TASK_2(ret, name, t1, a1, t2, a2)                                                 \
  WEFT__TASK(ret, name, (t1 a1; t2 a2;), (t1 a1, t2 a2),                                      \
             (name##_weft_handle * weft__h, t1 a1, t2 a2), (weft__f->a1, weft__f->a2),        \
             (weft__f->a1 = a1, weft__f->a2 = a2))
#define WEFT_TASK_3(ret, name, t1, a1, t2, a2, t3, a3)                                         \
  WEFT__TASK(ret, name, (t1 a1; t2 a2; t3 a3;), (t1 a1, t2 a2, t3 a3),                        \
             (name##_weft_handle * weft__h, t1 a1, t2 a2, t3 a3),                             \
             (weft__f->a1, weft__f->a2, weft__f->a3),                                         \
             (weft__f->a1 = a1, weft__f->a2 = a2, weft__f->a3 = a3))
#define WEFT_TASK_4(ret, name, t1, a1, t2, a2, t3, a3, t4, a4)                                 \
  WEFT__TASK(ret, name, (t1 a1; t2 a2; t3 a3; t4 a4;), (t1 a1, t2 a2, t3 a3, t4 a4),          \
             (name##_weft_handle * weft__h, t1 a1, t2 a2, t3 a3, t4 a4),                      \
             (weft__f->a1, weft__f->a2, weft__f->a3, weft__f->a4),                            \
             (weft__f->a1 = a1, weft__f->a2 = a2, weft__f->a3 = a3, weft__f->a4 = a4))

/* ---- I/O: sockets that suspend the task, and blocking calls offloaded ------------------------ */

/* A socket (or any fd that supports non-blocking I/O: pipes, eventfds) registered with its
 * runtime's poller. An operation that would block suspends the calling task until the fd is
 * ready, its deadline passes or the task is cancelled; called from a thread that is not one of
 * a runtime's workers, it blocks that thread (poll(2)) instead. Every operation takes an
 * absolute deadline in weft_now_ns() time (UINT64_MAX: none; a weft_deadline_begin scope bounds
 * it too) and returns 0 or a byte count, or a negative code: WEFT_ETIMEDOUT, WEFT_ECANCELED,
 * WEFT_EBADF (the socket was closed by someone else meanwhile: the waiter is woken with it),
 * WEFT_EBUSY (another task already waits in the same direction: one reader and one writer at a
 * time; plain threads each poll, and never get it), WEFT_EINVAL for a NULL handle, or the system's -errno (WEFT_ECONNRESET, WEFT_EPIPE,
 * and others that weft_strerror describes with strerror's text). The handle is valid until
 * weft_sock_close or its runtime's weft_runtime_destroy, which closes every socket still open:
 * a plain thread or another runtime's task inside a call on one then is woken (WEFT_EBADF), and
 * destroy waits for it to return (at most 2 s; beyond that the socket table is kept, not
 * freed, its fds open, and destroy says so on stderr).
 * One accept loop per listener (several listeners: WEFT_LISTEN_REUSEPORT). */
typedef struct weft_sock weft_sock_t;
#define WEFT_IO_READABLE 1u
#define WEFT_IO_WRITABLE 2u
#define WEFT_LISTEN_REUSEPORT 1u /* weft_sock_listen: SO_REUSEPORT (one listener per worker) */

/* Adopts fd (made non-blocking): rt NULL means the calling task's runtime (WEFT_EINVAL
 * outside a task). The socket owns fd from now on; on failure fd stays the caller's. */
WEFT_EXTERN int weft_sock_open(weft_runtime_t *rt, int fd, weft_sock_t **sock);
/* Wakes every task waiting on the socket (they get WEFT_EBADF) and closes the fd once the last
 * operation in progress has left it. 0, or WEFT_EBADF if it was already being closed. */
WEFT_EXTERN int weft_sock_close(weft_sock_t *sock);
WEFT_EXTERN int weft_sock_fd(const weft_sock_t *sock);
/* The local port (listeners bound to port 0 learn theirs), or a negative code. */
WEFT_EXTERN int weft_sock_port(const weft_sock_t *sock);
/* A numeric IPv4 or IPv6 address and a port into *addr (no name lookup: for names, call
 * getaddrinfo through weft_offload). WEFT_EINVAL if host is not numeric. */
WEFT_EXTERN int weft_sock_addr(const char *host, uint16_t port, struct sockaddr_storage *addr,
                               socklen_t *len);
/* Waits until the socket is readable or writable (exactly one of WEFT_IO_*). */
WEFT_EXTERN int weft_sock_wait(weft_sock_t *sock, unsigned events, uint64_t deadline_ns);
/* socket + SO_REUSEADDR (+ SO_REUSEPORT) + bind + listen(backlog; 0: SOMAXCONN) + open. */
WEFT_EXTERN int weft_sock_listen(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t len,
                                 int backlog, unsigned flags, weft_sock_t **listener);
/* The next connection (non-blocking, close-on-exec, registered with the listener's runtime);
 * addr/len may be NULL. Out of fds (EMFILE, ENFILE) it does not spin and does not return the
 * error: it closes the listener's reserve fd, accepts and closes the pending connections with
 * it (their clients see a close, not a hang), reopens the reserve and backs off (5 ms doubling
 * to 1 s, cancellable, bounded by the deadline) before accepting again; closing the listener
 * ends the back-off (WEFT_EBADF). */
WEFT_EXTERN int weft_sock_accept(weft_sock_t *listener, weft_sock_t **conn, struct sockaddr *addr,
                                 socklen_t *len, uint64_t deadline_ns);
/* A stream socket connected to addr, or the error (WEFT_ETIMEDOUT at the deadline). */
WEFT_EXTERN int weft_sock_connect(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t len,
                                  uint64_t deadline_ns, weft_sock_t **conn);
/* Up to len bytes: the count (0: end of stream, or len 0 on TCP: at once), or a negative code.
 * readv: at most IOV_MAX buffers, SSIZE_MAX bytes in all (more: WEFT_EINVAL). */
WEFT_EXTERN ptrdiff_t weft_sock_read(weft_sock_t *sock, void *buf, size_t len,
                                     uint64_t deadline_ns);
WEFT_EXTERN ptrdiff_t weft_sock_readv(weft_sock_t *sock, const struct iovec *iov, int iovcnt,
                                      uint64_t deadline_ns);
/* All len bytes, or an error; *written (may be NULL) says how many went out either way. */
WEFT_EXTERN int weft_sock_write(weft_sock_t *sock, const void *buf, size_t len, size_t *written,
                                uint64_t deadline_ns);
/* The same for iovcnt buffers (at most 64; more: WEFT_EINVAL); iov is not modified. */
WEFT_EXTERN int weft_sock_writev(weft_sock_t *sock, const struct iovec *iov, int iovcnt,
                                 size_t *written, uint64_t deadline_ns);
/* shutdown(2): SHUT_RD, SHUT_WR (a half-close: the peer reads end of stream) or SHUT_RDWR. */
WEFT_EXTERN int weft_sock_shutdown(weft_sock_t *sock, int how);

/* asyncio.to_thread: runs fn(arg) on the runtime's blocking pool and awaits it from the
 * calling task; *result (may be NULL) gets its return value. 0; WEFT_ECANCELED if the task was
 * cancelled while the call was still queued (it is then never run), WEFT_ETIMEDOUT the same
 * for the awaiter's deadline scope; WEFT_ENOMEM / WEFT_EAGAIN (no job or thread). A call that
 * has started cannot be stopped: a cancel (or scope) that comes then waits for its end, and
 * weft_offload returns 0 with its result; the cancel stays pending for the task's next
 * suspension point (Trio's to_thread.run_sync). So arg may live on the caller's stack: fn is
 * done with it when weft_offload returns. Outside a task it calls fn on the calling thread.
 * Bounded by weft_options_t.blocking_threads; calls beyond queue (FIFO). */
WEFT_EXTERN int weft_offload(weft_fn fn, void *arg, void **result);
#define WEFT_BLOCKING_THREADS_DEFAULT 64
#define WEFT_BLOCKING_KEEPALIVE_DEFAULT_MS 10000

#ifdef __cplusplus
}
#endif
#endif /* WEFT_H */
