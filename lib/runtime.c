/*
 * The runtime object: options, worker threads, weft_run, shutdown, errors and statistics.
 */

#include "deque.h"
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <unistd.h>
#include <sched.h>
#include <string.h>

enum { DEQUE_INITIAL = 1024 };

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

/* ---- Fault injection (test-only) ---------------------------------------------------------- */

/* relaxed throughout: a test knob; the countdown itself is the only shared state. */
static _Atomic long fault_countdown[WEFT__FAULT_KINDS];

void weft__fault_set(int kind, long nth) {
  if (kind >= 0 && kind < WEFT__FAULT_KINDS)
    atomic_store_explicit(&fault_countdown[kind], nth, memory_order_relaxed);
}

bool weft__fault_hit(int kind) {
  if (WEFT__LIKELY(atomic_load_explicit(&fault_countdown[kind], memory_order_relaxed) <= 0))
    return false;
  return atomic_fetch_sub_explicit(&fault_countdown[kind], 1, memory_order_relaxed) == 1;
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

static int resolve_stack(const weft_options_t *opts, size_t *out) {
  size_t bytes = OPTION(opts, stack_size, 0);
  if (bytes == 0) bytes = WEFT_STACK_DEFAULT;
  if (bytes < WEFT_STACK_MIN) return WEFT_EINVAL;
  if (bytes > ((size_t)1 << 32)) return WEFT_ERANGE;
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
  weft__stack_overflow_guard_install(&w->altstack); /* without it overflows crash unreported */
  weft__worker_main_loop(w);
  weft__stack_overflow_guard_remove(w->altstack);
  w->altstack = NULL;
  weft__worker_set_self(NULL);
  return NULL;
}

static int worker_init(struct weft_runtime *rt, weft__worker_t *w, int index) {
  memset(w, 0, sizeof *w);
  w->rt = rt;
  w->index = index;
  w->rng = 0x9e3779b9u ^ (uint32_t)(index * 2654435761u);
  if (!w->rng) w->rng = 1;
  atomic_init(&w->park_word, 0);
  if (weft__deque_init(&w->deque, DEQUE_INITIAL) != 0) return WEFT_ENOMEM;
  if (weft__deque_init(&w->yieldq, DEQUE_INITIAL) != 0) {
    weft__deque_destroy(&w->deque);
    return WEFT_ENOMEM;
  }
  return 0;
}

static void worker_fini(weft__worker_t *w) {
  weft__deque_destroy(&w->deque);
  weft__deque_destroy(&w->yieldq);
}

static void stop_workers(struct weft_runtime *rt, int started) {
  atomic_store_explicit(&rt->stopping, 1, memory_order_seq_cst); /* seq_cst: see park() */
  pthread_mutex_lock(&rt->idle_lock);
  for (weft__worker_t *w = rt->idle_list; w; w = w->next_idle) {
    atomic_store_explicit(&w->park_word, 1, memory_order_release); /* release: pairs with park */
    weft__futex_wake(&w->park_word, 1);
  }
  pthread_mutex_unlock(&rt->idle_lock);
  for (int i = 0; i < started; i++) pthread_join(rt->workers[i].thread, NULL);
}

static void runtime_free(struct weft_runtime *rt, int initialized_workers) {
  for (int i = 0; i < initialized_workers; i++) worker_fini(&rt->workers[i]);
  free(rt->workers);
  if (rt->timer) weft__timer_destroy(rt->timer);
  weft__stack_pool_destroy(rt->stacks);
  weft__task_slabs_free(rt);
  pthread_mutex_destroy(&rt->idle_lock);
  pthread_mutex_destroy(&rt->inject_lock);
  pthread_mutex_destroy(&rt->task_lock);
  free(rt);
}

int weft_runtime_create(weft_runtime_t **out, const weft_options_t *opts) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (opts && opts->options_size < sizeof(size_t)) return WEFT_EINVAL;
  weft__san_check(); /* a sanitizer runtime weft cannot serve: say so now, not SEGV later */
  int nworkers;
  size_t stack_bytes;
  int err = resolve_workers(opts, &nworkers);
  if (!err) err = resolve_stack(opts, &stack_bytes);
  if (err) return err;

  struct weft_runtime *rt = aligned_alloc(WEFT__CACHELINE, sizeof *rt);
  if (!rt) return WEFT_ENOMEM;
  memset(rt, 0, sizeof *rt);
  rt->nworkers = nworkers;
  rt->stack_bytes = stack_bytes;
  pthread_mutex_init(&rt->idle_lock, NULL);
  pthread_mutex_init(&rt->inject_lock, NULL);
  pthread_mutex_init(&rt->task_lock, NULL);
  rt->workers = aligned_alloc(WEFT__CACHELINE, sizeof(weft__worker_t) * (size_t)nworkers);
  if (!rt->workers || weft__stack_pool_create(&rt->stacks, stack_bytes) != 0 ||
      weft__timer_create(&rt->timer, rt) != 0) {
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
    if (weft__fault_hit(WEFT__FAULT_THREAD) || pthread_create(&w->thread, NULL, worker_thread, w)) {
      stop_workers(rt, started);
      runtime_free(rt, inited);
      return WEFT_EAGAIN;
    }
  }
  *out = rt;
  return 0;
}

int weft_runtime_destroy(weft_runtime_t *rt) {
  if (!rt) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  if (w && w->rt == rt)
    weft__die("weft: weft_runtime_destroy was called from one of the runtime's own tasks, "
              "which would wait for itself.");
  stop_workers(rt, rt->nworkers);
  /* Quiescent now: tasks still queued or suspended are discarded with their slabs (the pool
   * unmaps slabs whole, so the worker caches need no draining). */
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
  s.tasks_spawned += atomic_load_explicit(&rt->foreign_ids, memory_order_relaxed);
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
  err = weft_runtime_spawn(rt, &t, main, arg);
  if (!err) err = weft_join(t, result);
  weft_runtime_destroy(rt);
  return err;
}
