/*
 * The runtime object: options, worker threads, weft_run, shutdown, errors and statistics.
 *
 * Shutdown (weft_runtime_destroy), in order; each step says what it guarantees and the race
 * it closes. The model is asyncio.run's end and Tokio's multi_thread shutdown.
 *   0. Unwinding (weft_runtime_shutdown, bounded by shutdown_timeout_ms): `closing` is set
 *      (seq_cst), so spawns answer WEFT_ESHUTDOWN; then every task not yet done is cancelled,
 *      every millisecond until none is left or the bound passes (a spawn that slipped past
 *      the flag is caught by the next round). Cancelled tasks run their cleanup and end: their
 *      waits took their own nodes out of every list, their gather_calls freed their arrays.
 *      What is still unfinished after the bound (a shielded or stubborn task) goes through
 *      the steps below, which were the whole of destroy before cancellation existed.
 *   1. `stopping` is set (seq_cst, the store side of park's check) and every parked worker is
 *      woken. From here the workers leave their loops.
 *   2. The worker threads are joined. Each finishes the slice it is running — up to the task's
 *      next suspension point — and leaves its loop (one still in its slice a second later is
 *      named on stderr: join_workers). Afterwards nothing of this runtime runs;
 *      pthread_join orders every worker write before the steps below. Then destroy waits
 *      until the inject queue has no missing link: an outside thread that made a task
 *      runnable wakes workers before it links its entry, its last touch of the runtime
 *      (lib/inject_impl.h), so none is still reading the runtime (a task it woke may have ended,
 *      and so be in no wait record that step 3 could wait on). Only outside parties
 *      still touch the runtime's memory: threads and other runtimes' tasks awaiting its
 *      tasks, and whoever resolves a future or completes a task that its tasks await.
 *   3. Discarded tasks leave the lists of what they await (lib/task.c, from each task's wait
 *      record): their waiter nodes live on stacks that step 6 unmaps. A deliverer that took
 *      such a list holds the word's BUSY until its last touch, and the removal waits it out,
 *      so no outside completion touches a discarded node, join or this runtime afterwards.
 *      Then what weft's own calls held on each discarded stack (weft__discard_hook_t: handles
 *      of gather_calls' children, heap arrays) is given back, before step 4 counts handles.
 *   4. Unfinished tasks are named on stderr. Descriptors whose handles are still held become
 *      orphans (their slabs stay mapped and go with the last release); unfinished ones get
 *      WEFT_ESHUTDOWN. This happens
 *      before step 5 because the awaiters woken there may release at once.
 *   5. The unfinished orphans complete: threads and other runtimes' tasks that await them wake
 *      with WEFT_ESHUTDOWN. Their nodes are on their own stacks; nothing here is freed yet.
 *   6. I/O first (lib/io.c, lib/offload.c, lib/poll.c): every socket still open is closed as
 *      by weft_sock_close (no socket is opened on the runtime after that), which wakes a plain
 *      thread, a pool thread or another runtime's task inside a call on it (WEFT_EBADF; a
 *      task of another runtime discarded there gives its hold back through its record). The
 *      blocking pool's threads finish the calls they run (a blocking call cannot be
 *      interrupted; its awaiters were cancelled in step 0 or discarded in step 3, so its
 *      completion wakes no one) and are joined, and calls still queued are dropped. Then
 *      destroy waits, at most IO_QUIESCE_NS, until no caller from outside is inside a socket
 *      call, and the poller closes the fds of the sockets discarded tasks held, its epoll
 *      instance and eventfd (no worker polls any more since step 2) and frees the table; a
 *      caller still inside after the bound keeps it (leaked, fds open, said on stderr).
 *      Everything else is freed: deques, the timer wheel, every stack (the slabs are unmapped
 *      whole, so worker caches need no draining), the other descriptor slabs, the runtime.
 * Not covered: a thread that starts using one of the runtime's handles (an await, a release)
 * while steps 4–5 run — a race on an object being destroyed, as for any C object.
 */

#include "deque.h"
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <unistd.h>
#include <sched.h>
#include <string.h>
#include <time.h>

enum { DEQUE_INITIAL = 1024 }; /* picked: entries before a deque first grows */
/* picked: how long destroy waits for callers from outside the runtime to leave its sockets (a
 * plain thread notices the close within lib/io.c's 50 ms poll slice) */
#define IO_QUIESCE_NS (UINT64_C(2) * 1000000000u)

unsigned int weft_version(void) { return WEFT_VERSION_HEX; }

const char *weft_version_string(void) {
#define WEFT__STR2(x) #x
#define WEFT__STR(x) WEFT__STR2(x)
  return WEFT__STR(WEFT_VERSION_MAJOR) "." WEFT__STR(WEFT_VERSION_MINOR) "." WEFT__STR(
      WEFT_VERSION_PATCH);
}

const char *weft_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define WEFT__ERRNO_TEXT(name, value, text) \
  case WEFT_##name:                         \
    return text;
    WEFT_ERRNO_MAP(WEFT__ERRNO_TEXT)
#undef WEFT__ERRNO_TEXT
  }
  /* Socket calls pass the system's other failures through as -errno (lib/io.c). */
  if (err < 0 && err > -4096) return strerror(-err);
  return "unknown error";
}

const char *weft_err_name(int err) {
  switch (err) {
  case 0:
    return "0";
#define WEFT__ERRNO_NAME(name, value, text) \
  case WEFT_##name:                         \
    return "WEFT_" #name;
    WEFT_ERRNO_MAP(WEFT__ERRNO_NAME)
#undef WEFT__ERRNO_NAME
  }
  return "WEFT_UNKNOWN";
}

/* ---- Options ------------------------------------------------------------------------------ */

/* A field is read only if the caller's struct is large enough to have it. */
#define OPTION(opts, field, fallback)                                                      \
  ((opts) && (opts)->options_size >= offsetof(weft_options_t, field) + sizeof((opts)->field) \
       ? (opts)->field                                                                   \
       : (fallback))

static int parse_workers_env(const char *s, int *out) {
  if (!*s) return WEFT_EINVAL;
  long v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return WEFT_EINVAL;
    v = v * 10 + (*p - '0');
    if (v > WEFT_WORKERS_MAX) return WEFT_EINVAL;
  }
  if (v < 1) return WEFT_EINVAL;
  *out = (int)v;
  return 0;
}

static int resolve_workers(const weft_options_t *opts, int *out) {
  int n = OPTION(opts, workers, 0);
  if (n < 0 || n > WEFT_WORKERS_MAX) return WEFT_EINVAL;
  if (n > 0) {
    *out = n;
    return 0;
  }
  const char *env = getenv("WEFT_WORKERS");
  if (env) return parse_workers_env(env, out);
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
    *out = CPU_COUNT(&set);
    return 0;
  }
  *out = 1;
  return 0;
}

/* "123" or "0x7b", nothing else: strtoull alone also took leading blanks and signs, and read a
 * leading 0 as octal ("09" refused, "010" as 8; review, session 33). */
static int parse_chaos_env(const char *s, uint64_t *out) {
  bool hex = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  const char *digits = hex ? s + 2 : s;
  if (!*digits) return WEFT_EINVAL;
  for (const char *p = digits; *p; p++)
    if (hex ? !isxdigit((unsigned char)*p) : !isdigit((unsigned char)*p)) return WEFT_EINVAL;
  errno = 0;
  unsigned long long v = strtoull(digits, NULL, hex ? 16 : 10);
  if (errno) return WEFT_EINVAL; /* ERANGE: more than 64 bits */
  *out = v;
  return 0;
}

static int resolve_chaos(const weft_options_t *opts, uint64_t *out) {
  *out = OPTION(opts, chaos_seed, 0);
  const char *env = getenv("WEFT_CHAOS");
  if (*out || !env) return 0;
  return parse_chaos_env(env, out);
}

static int resolve_stack(const weft_options_t *opts, size_t *out) {
  size_t bytes = OPTION(opts, stack_size, 0);
  if (bytes == 0) bytes = WEFT_STACK_DEFAULT;
  if (bytes < WEFT_STACK_MIN) return WEFT_EINVAL;
  if (bytes > WEFT_STACK_MAX) return WEFT_ERANGE;
  *out = bytes;
  return 0;
}

static int resolve_guard(const weft_options_t *opts, size_t *out) {
  size_t bytes = OPTION(opts, guard_size, 0);
  if (bytes == 0) bytes = WEFT_GUARD_DEFAULT;
  if (bytes > WEFT_STACK_MAX) return WEFT_ERANGE;
  *out = bytes;
  return 0;
}

/* ---- Worker threads ----------------------------------------------------------------------- */

static void worker_capture_thread_stack(weft__worker_t *w) {
  if (weft__san_hooks() & WEFT__SAN_TSAN) w->sched.tsan_fiber = __tsan_get_current_fiber();
  if (!(weft__san_hooks() & WEFT__SAN_ASAN)) return;
  pthread_attr_t attr;
  void *lo = NULL;
  size_t bytes = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &lo, &bytes);
    pthread_attr_destroy(&attr);
  }
  w->sched.stack_lo = lo;
  w->sched.stack_bytes = bytes;
}

static void *worker_thread(void *arg) {
  weft__worker_t *w = arg;
  worker_capture_thread_stack(w);
  weft__overflow_reports_install(&w->altstack); /* without it overflows crash unreported */
  weft__worker_main_loop(w);
  weft__overflow_reports_remove(w->altstack);
  w->altstack = NULL;
  weft__worker_set_self(NULL);
  return NULL;
}

static int worker_init(struct weft_runtime *rt, weft__worker_t *w, int index) {
  memset(w, 0, sizeof *w);
  w->rt = rt;
  w->index = index;
  w->start_ns = weft_now_ns();
  weft__worker_clock(w, weft__coarse_now_ns());
  if (rt->chaos_seed) { /* splitmix64 of seed and index: never 0, distinct per worker */
    uint64_t z = rt->chaos_seed + 0x9e3779b97f4a7c15ull * (uint64_t)(index + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    w->chaos = (z ^ (z >> 31)) | 1;
  }
  w->priv_limit = WEFT__PRIV_CAP;
  w->throttle_depth = rt->spawn_throttle;
  w->rng = 0x9e3779b9u ^ (uint32_t)(index * 2654435761u);
  if (!w->rng) w->rng = 1;
  if (w->chaos) w->rng = (uint32_t)(w->chaos >> 32) | 1; /* random victims from the seed too */
  w->spawn_hooks = w->chaos || rt->spawn_sites;
  atomic_init(&w->park_word, 0);
  if (weft__deque_init(&w->deque, DEQUE_INITIAL, &rt->epoch) != 0) return WEFT_ENOMEM;
  if (weft__deque_init(&w->yieldq, DEQUE_INITIAL, &rt->epoch) != 0) {
    weft__deque_destroy(&w->deque);
    return WEFT_ENOMEM;
  }
  if (weft__frames_init(&w->frames) != 0) {
    weft__deque_destroy(&w->deque);
    weft__deque_destroy(&w->yieldq);
    return WEFT_ENOMEM;
  }
  return 0;
}

static void worker_fini(weft__worker_t *w) {
  weft__deque_destroy(&w->deque);
  weft__deque_destroy(&w->yieldq);
  weft__frames_fini(&w->frames);
}

/* A worker still running a slice this long after the stop is named on stderr (once), and then
 * waited for as before: nothing preempts a stackful task, so a task that never reaches a
 * suspension point — a loop without one (one that only awaits finished tasks is one), or a
 * blocking call — holds its worker, and destroy with it. The line makes that hang
 * diagnosable (session 37: a test's destroy waited on such a loop in silence until ctest's
 * limit). One deadline for all the workers, so that every worker held at it is named (review
 * H: a deadline per worker, taken after the join of the one before, named only the first).
 * The line is written as the monitor's are, so that a stderr nobody reads cannot block destroy
 * (review H). Rejected: giving up on the worker (its task's stack and the runtime under it
 * would be freed while it runs). CLOCK_REALTIME: pthread_timedjoin_np's, and the one TSan
 * intercepts (a clock step moves the line, never the join). */
#define STOP_REPORT_S 1

static void report_held_worker(struct weft_runtime *rt, int i) {
  /* acquire: pairs with weft__set_current's release, as the watchdog's read */
  struct weft_task *t = atomic_load_explicit(&rt->workers[i].current_pub, memory_order_acquire);
  char line[320]; /* the longest: a 64-byte name and a 20-digit id */
  int n;
  if (t) {
    char name[WEFT__SAMPLED_NAME_MAX];
    uint64_t id = weft__task_sample(rt, t, name);
    n = snprintf(line, sizeof line,
                 "weft: weft_runtime_destroy: task '%s' (id %" PRIu64 ") has held worker %d for "
                 "%d s since the stop without reaching a suspension point (a loop without one, "
                 "or a blocking call); destroy waits for it\n",
                 name, id, i, STOP_REPORT_S);
  } else { /* between slices, or its task ended just now */
    n = snprintf(line, sizeof line,
                 "weft: weft_runtime_destroy: worker %d has not stopped %d s after the stop; "
                 "destroy waits for it\n",
                 i, STOP_REPORT_S);
  }
  size_t len = n < 0 ? 0 : (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  weft__probe_hit(WEFT__PROBE_HELD_NAMED);
  weft__stderr_try_line(line, len);
}

/* Joins the first `started` workers; destroy's (name_held) first joins each by one deadline,
 * naming every worker still held at it, and only then waits for those (a wait for one before
 * the look at the next let the next end unnamed). */
static void join_workers(struct weft_runtime *rt, int started, bool name_held) {
  if (name_held) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STOP_REPORT_S;
    for (int i = 0; i < started; i++) {
      rt->workers[i].joined = pthread_timedjoin_np(rt->workers[i].thread, NULL, &until) == 0;
      if (!rt->workers[i].joined) report_held_worker(rt, i);
    }
  }
  for (int i = 0; i < started; i++)
    if (!name_held || !rt->workers[i].joined) pthread_join(rt->workers[i].thread, NULL);
}

/* name_held: destroy's stop (a runtime_create that failed starts no task). */
static void stop_workers(struct weft_runtime *rt, int started, bool name_held) {
  atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst); /* seq_cst: see park() */
  pthread_mutex_lock(&rt->idle_lock);
  for (weft__worker_t *w = rt->idle_list; w; w = w->next_idle) {
    atomic_store_explicit(&w->park_word, 1, memory_order_release); /* release: pairs with park */
    weft__futex_wake(&w->park_word, 1);
  }
  pthread_mutex_unlock(&rt->idle_lock);
  rt->poll_hooks->woke(rt, NULL); /* a worker blocked in the poller: break it too */
  join_workers(rt, started, name_held);
}

/* ---- The anchor (internal.h) ------------------------------------------------------------ */

struct weft__rt_anchor {
  _Atomic long refs;
  _Atomic bool gone;
  /* A group's spawn from outside the runtime (a plain thread, another runtime's task) counts
   * itself in; destroy, from its start, refuses new ones and waits for those inside before it
   * tears anything down (review, session 32: a spawn that passed `gone` before destroy began
   * read the stack pool destroy freed under it; ASan). lib/shutdown_impl.h's store-load pair,
   * as the socket table's callers from outside. */
  _Atomic int refusing;
  _Atomic long inside;
  /* Set by destroy once its tasks' held handles are orphans (weft__tasks_discard): from then on
   * a release from outside frees an orphan, which no longer races the walk that made it one
   * (lib/group.c's release_right; review, session 34). */
  _Atomic bool orphaned;
};

struct weft__rt_anchor *weft__runtime_anchor_hold(struct weft_runtime *rt) {
  /* acquire: pairs with the publishing CAS below (the anchor's fields come with it) */
  struct weft__rt_anchor *a = atomic_load_explicit(&rt->anchor, memory_order_acquire);
  if (!a) {
    struct weft__rt_anchor *made = malloc(sizeof *made);
    if (!made) return NULL;
    atomic_init(&made->refs, 1); /* the runtime's */
    atomic_init(&made->gone, false);
    atomic_init(&made->refusing, 0);
    atomic_init(&made->inside, 0);
    atomic_init(&made->orphaned, false);
    /* release: publishes the anchor's fields; acquire on failure: the winner's */
    if (atomic_compare_exchange_strong_explicit(&rt->anchor, &a, made, memory_order_acq_rel,
                                                memory_order_acquire))
      a = made;
    else
      free(made);
  }
  /* relaxed: a new reference from one the caller's runtime already holds */
  atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
  return a;
}

void weft__runtime_anchor_release(struct weft__rt_anchor *a) {
  /* acq_rel: the last release frees; every other holder's reads come before it */
  if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) free(a);
}

bool weft__runtime_anchor_gone(struct weft__rt_anchor *a) {
  /* acquire: pairs with runtime_free's release (no field of the runtime is read after it) */
  return atomic_load_explicit(&a->gone, memory_order_acquire);
}

bool weft__runtime_anchor_enter(struct weft__rt_anchor *a) {
  return weft__shutdown_enter(&a->inside, &a->refusing);
}

void weft__runtime_anchor_leave(struct weft__rt_anchor *a) { weft__shutdown_leave(&a->inside); }

bool weft__runtime_anchor_orphaned(struct weft__rt_anchor *a) {
  /* acquire: pairs with anchor_orphaned's release (the orphan marks come with it) */
  return atomic_load_explicit(&a->orphaned, memory_order_acquire);
}

/* Destroy, after weft__tasks_discard: held handles are orphans now (see the anchor). */
static void anchor_orphaned(struct weft_runtime *rt) {
  /* relaxed: made by weft_runtime_create (anchor_refuse) */
  struct weft__rt_anchor *a = atomic_load_explicit(&rt->anchor, memory_order_relaxed);
  /* release: the orphan marks and step 3's completions, for a releaser's acquire */
  atomic_store_explicit(&a->orphaned, true, memory_order_release);
}

/* The runtime's own anchor, made with it (groups then only hold it). */
static bool anchor_made(struct weft_runtime *rt) {
  struct weft__rt_anchor *a = weft__runtime_anchor_hold(rt);
  if (a) weft__runtime_anchor_release(a); /* the runtime's own reference keeps it */
  return a != NULL;
}

/* Destroy's first step: group spawns from outside are refused from now on, and those inside
 * have left (they do not suspend: spawn_throttle and chaos yields are for a runtime's own
 * workers). */
static void anchor_refuse(struct weft_runtime *rt) {
  /* Made by weft_runtime_create, so that a group made after destroy began (by one of our tasks,
   * during the shutdown) shares this refusing anchor (review of the fix: a fresh anchor let
   * its spawns from outside in, uncounted by this wait; an anchor made here could fail).
   * relaxed: stored before any other thread had the runtime. */
  struct weft__rt_anchor *a = atomic_load_explicit(&rt->anchor, memory_order_relaxed);
  weft__shutdown_close(&a->refusing);
  if (!weft__shutdown_none_inside(&a->inside)) weft__probe_hit(WEFT__PROBE_ANCHOR_WAITED);
  while (!weft__shutdown_none_inside(&a->inside)) sched_yield();
}

/* The anchor's holders learn the runtime is gone; the runtime's reference goes. */
static void anchor_let_go(struct weft_runtime *rt) {
  /* Made by weft_runtime_create: NULL only on create's failure paths that came before it.
   * acquire: pairs with the publishing CAS, as every load of it */
  struct weft__rt_anchor *a = atomic_load_explicit(&rt->anchor, memory_order_acquire);
  if (!a) return;
  atomic_store_explicit(&a->gone, true, memory_order_release); /* release: see _gone */
  weft__runtime_anchor_release(a);
}

static void runtime_free(struct weft_runtime *rt, int initialized_workers) {
  anchor_let_go(rt);
  for (int i = 0; i < initialized_workers; i++) worker_fini(&rt->workers[i]);
  free(rt->workers);
  weft__epoch_fini(&rt->epoch); /* after the deques: their last frees need no grace */
  if (rt->timer) weft__timer_destroy(rt->timer);
  weft__stack_pool_destroy(rt->stacks);
  weft__tasks_live_remove(rt); /* threads' caches of our descriptors are dropped from now on */
  weft__task_slabs_free(rt);
  pthread_mutex_destroy(&rt->idle_lock);
  pthread_mutex_destroy(&rt->task_lock);
  free(rt);
}

/* The wheel's wake check (lib/timer_inbox_impl.h): it knows nothing of workers. */
static void timer_wake_check(void *rt) { weft__wake_one_if_needed(rt); }

int weft_runtime_create(weft_runtime_t **out, const weft_options_t *opts) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (opts && opts->options_size < sizeof(size_t)) return WEFT_EINVAL;
  weft__san_check(); /* a sanitizer runtime weft cannot serve: say so now, not SEGV later */
  int nworkers;
  size_t stack_bytes, guard_bytes;
  int err = resolve_workers(opts, &nworkers);
  if (!err) err = resolve_stack(opts, &stack_bytes);
  if (!err) err = resolve_guard(opts, &guard_bytes);
  uint64_t chaos_seed = 0;
  if (!err) err = resolve_chaos(opts, &chaos_seed);
  if (err) return err;

  struct weft_runtime *rt = aligned_alloc(WEFT__CACHELINE, sizeof *rt);
  if (!rt) return WEFT_ENOMEM;
  memset(rt, 0, sizeof *rt);
  rt->nworkers = nworkers;
  rt->created_ns = weft_now_ns();
  rt->chaos_seed = chaos_seed;
  rt->spawn_throttle = chaos_seed ? 0 : OPTION(opts, spawn_throttle, 0); /* chaos: every push */
  const char *trace = OPTION(opts, trace, NULL);
  if (!trace) trace = getenv("WEFT_TRACE");
  rt->spawn_sites = weft__trace_wants_sites(trace);
  atomic_init(&rt->next_task_id, 1);
  rt->poll_hooks = &weft__epoll_hooks; /* the one backend today (lib/poll.c) */
  uint64_t shutdown_ms = OPTION(opts, shutdown_timeout_ms, 0);
  if (!shutdown_ms) shutdown_ms = WEFT_SHUTDOWN_DEFAULT_MS;
  rt->shutdown_ns = shutdown_ms > UINT64_MAX / 1000000u ? UINT64_MAX : shutdown_ms * 1000000u;
  /* The blocking pool's bounds (lib/offload.c); negative thread counts mean the default. */
  rt->blocking_threads = OPTION(opts, blocking_threads, 0);
  if (rt->blocking_threads <= 0) rt->blocking_threads = WEFT_BLOCKING_THREADS_DEFAULT;
  uint64_t keepalive_ms = OPTION(opts, blocking_keepalive_ms, 0);
  if (!keepalive_ms) keepalive_ms = WEFT_BLOCKING_KEEPALIVE_DEFAULT_MS;
  rt->blocking_keepalive_ns =
      keepalive_ms > UINT64_MAX / 1000000u ? UINT64_MAX : keepalive_ms * 1000000u;
  pthread_mutex_init(&rt->idle_lock, NULL);
  weft__inject_init(rt);
  pthread_mutex_init(&rt->task_lock, NULL);
  weft__tasks_live_add(rt);
  weft__overflow_fork_check(); /* before the workers, which install the SIGSEGV handler */
  rt->workers = aligned_alloc(WEFT__CACHELINE, sizeof(weft__worker_t) * (size_t)nworkers);
  if (!rt->workers || weft__epoch_init(&rt->epoch, nworkers) != 0 ||
      weft__stack_pool_create(&rt->stacks, stack_bytes, guard_bytes) != 0 ||
      weft__timer_create(&rt->timer, timer_wake_check, rt) != 0 || !anchor_made(rt)) {
    runtime_free(rt, 0);
    return WEFT_ENOMEM;
  }
  int inited = 0;
  for (; inited < nworkers; inited++)
    if (worker_init(rt, &rt->workers[inited], inited) != 0) {
      runtime_free(rt, inited);
      return WEFT_ENOMEM;
    }
  int started = 0;
  for (; started < nworkers; started++) {
    weft__worker_t *w = &rt->workers[started];
    weft__worker_count_fresh(rt, 1); /* it looks for work as soon as it runs */
    if (weft__fault_hit(WEFT__FAULT_THREAD) || pthread_create(&w->thread, NULL, worker_thread, w)) {
      weft__worker_count_fresh(rt, -1);
      stop_workers(rt, started, false);
      runtime_free(rt, inited);
      return WEFT_EAGAIN;
    }
  }
  /* The monitor reads the workers: started after them, stopped before them. */
  if ((err = weft__trace_start(rt, trace)) != 0) {
    stop_workers(rt, started, false);
    runtime_free(rt, inited);
    return err;
  }
  *out = rt;
  return 0;
}

static void refuse_own_task(struct weft_runtime *rt, const char *what) {
  weft__worker_t *w = weft__worker_self();
  if (w && w->rt == rt)
    weft__die("weft: %s was called from one of the runtime's own tasks, which would wait for "
              "itself.",
              what);
}

/* Cancels every task and waits for them to end: `closing`, then walks until two clean ones in
 * a row (lib/shutdown_impl.h says why; review, session 19). */
static int shutdown_walks(struct weft_runtime *rt, uint64_t timeout_ns);
static int shutdown_tasks(struct weft_runtime *rt, uint64_t timeout_ns) {
  /* Counted running before `closing` (lib/shutdown_impl.h): a destroy that reads this
   * shutdown's store sees it running and waits for it; a shutdown that begins after destroy
   * did is the caller's race (docs/api.md). Review, session 32: a destroy while another
   * thread's shutdown ran took it for finished, discarded tasks still unwinding within its
   * bound, and freed the runtime under its walk. */
  weft__shutdown_begin(&rt->shutdowns_running, &rt->closing);
  int err = shutdown_walks(rt, timeout_ns);
  /* our walks' touches and `abandoned` before destroy's look at the count */
  weft__shutdown_leave(&rt->shutdowns_running);
  return err;
}

/* A destroy that found a shutdown begun (by another thread, maybe still running): waits for
 * every shutdown to return, so that `abandoned` is the last walk's and no walk outlives the
 * free. A poll: as the walks' own. */
static void await_running_shutdowns(struct weft_runtime *rt) {
  while (!weft__shutdown_none_inside(&rt->shutdowns_running)) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

static int shutdown_walks(struct weft_runtime *rt, uint64_t timeout_ns) {
  uint64_t now = weft_now_ns();
  uint64_t deadline = timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns;
  int clean_run = 0;
  for (;;) {
    size_t unfinished = weft__tasks_cancel_all(rt);
    /* relaxed: read by destroy and stats on this thread or after this call returned */
    atomic_store_explicit(&rt->abandoned, unfinished, memory_order_relaxed);
    if (weft__shutdown_walked(&clean_run, unfinished)) return 0;
    if (!unfinished) continue; /* the next walk at once */
    if (weft_now_ns() >= deadline) return WEFT_ETIMEDOUT;
    /* A poll, not an event: a shutdown is rare, and its cost is this 1 ms at most. */
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
}

int weft_runtime_shutdown(weft_runtime_t *rt, uint64_t timeout_ns) {
  if (!rt) return WEFT_EINVAL;
  refuse_own_task(rt, "weft_runtime_shutdown");
  return shutdown_tasks(rt, timeout_ns);
}

/* Kept rather than freed under a caller (destroy's step 6): said once, on stderr. */
static void report_kept_poller(void) {
  weft__probe_hit(WEFT__PROBE_POLLER_KEPT);
  static const char line[] = "weft: weft_runtime_destroy: a socket call from outside the "
                             "runtime did not return; its socket table is kept, not freed\n";
  weft__stderr_try_line(line, sizeof line - 1); /* as the held worker's (above) */
}

int weft_runtime_destroy(weft_runtime_t *rt) {
  if (!rt) return WEFT_EINVAL;
  refuse_own_task(rt, "weft_runtime_destroy");
  if (weft__offload_is_pool_thread(rt))
    weft__die("weft: weft_runtime_destroy was called from a weft_offload call of the same "
              "runtime, whose pool thread it would wait for.");
  anchor_refuse(rt);
  /* A shutdown begun on another thread is counted before its `closing` (see shutdown_tasks);
   * ours, or one that returned, is waited out at once */
  if (!weft__shutdown_begun(&rt->closing)) shutdown_tasks(rt, rt->shutdown_ns);
  await_running_shutdowns(rt);
  /* relaxed: a flag (lib/join.c's weft__cancelled); the workers' stop that follows wakes them */
  atomic_store_explicit(&rt->discarding, 1, memory_order_relaxed);
  weft__trace_stop(rt);
  stop_workers(rt, rt->nworkers, true);
  /* A shutdown that timed out may have missed a child one of its tasks was still spawning at
   * its last walk (docs/api.md, weft_runtime_shutdown). With the workers stopped every spawn
   * is published, so one more walk cancels it — and from then on every unfinished task has
   * its cancel requested and is out of any unshielded park, so a weft_cancel racing the rest
   * of destroy (an await_for's timeout, a group's cancel, on another runtime) can no longer
   * win a park and schedule a task onto this runtime after its quiescence (review, session
   * 32). Only then: a shutdown that ended had two clean walks, and a walk of 10^6 descriptors
   * costs ~5 ms. relaxed: the shutdown's own count, on this thread or before it returned. */
  if (weft__shutdown_walk_again(atomic_load_explicit(&rt->abandoned, memory_order_relaxed)))
    weft__tasks_cancel_all(rt);
  /* A thread that made one of our tasks runnable may still be inside inject_push (waking a
   * worker); its link is its last touch, and we wait for every link before we free. */
  weft__inject_quiesce(rt);
  weft__pause(WEFT__PAUSE_DISCARDING); /* tests: an outside release must wait here */
  weft__tasks_discard(rt);
  anchor_orphaned(rt);
  weft__io_close_all(rt); /* step 6's I/O part: first, so that it wakes a pool thread's call */
  weft__offload_destroy(rt);
  if (weft__io_callers_left(rt, IO_QUIESCE_NS))
    weft__poller_destroy(rt);
  else /* a caller outside the runtime is still in a socket call: its memory stays */
    report_kept_poller();
  runtime_free(rt, rt->nworkers);
  return 0;
}

int weft_runtime_workers(const weft_runtime_t *rt) { return rt ? rt->nworkers : WEFT_EINVAL; }

int weft_runtime_stats(weft_runtime_t *rt, weft_stats_t *st) {
  if (!rt || !st || st->stats_size < sizeof(size_t)) return WEFT_EINVAL;
  weft_stats_t s = WEFT_STATS_INIT;
  for (int i = 0; i < rt->nworkers; i++) {
    weft__worker_t *w = &rt->workers[i];
    /* relaxed: statistics, read while workers run */
    s.tasks_spawned += atomic_load_explicit(&w->n_spawned, memory_order_relaxed);
    s.tasks_inlined += atomic_load_explicit(&w->n_inlined, memory_order_relaxed);
    s.tasks_stolen += atomic_load_explicit(&w->n_stolen, memory_order_relaxed);
    s.parks += atomic_load_explicit(&w->n_parks, memory_order_relaxed);
    s.tasks_unrun += atomic_load_explicit(&w->n_unrun, memory_order_relaxed);
  }
  s.tasks_abandoned = atomic_load_explicit(&rt->abandoned, memory_order_relaxed);
  s.tasks_spawned += atomic_load_explicit(&rt->foreign_spawns, memory_order_relaxed);
  s.stacks_mapped = weft__stack_pool_mapped(rt->stacks);
  size_t n = st->stats_size < sizeof s ? st->stats_size : sizeof s;
  memcpy((char *)st + sizeof(size_t), (char *)&s + sizeof(size_t), n - sizeof(size_t));
  return 0;
}

int weft_run(const weft_options_t *opts, weft_fn main, void *arg, void **result) {
  if (!main) return WEFT_EINVAL;
  weft_runtime_t *rt;
  int err = weft_runtime_create(&rt, opts);
  if (err) return err;
  weft_task_t *t;
  err = weft__runtime_spawn_at(rt, &t, main, arg, __builtin_return_address(0));
  if (!err) err = weft_join(t, result);
  weft_runtime_destroy(rt);
  return err;
}
