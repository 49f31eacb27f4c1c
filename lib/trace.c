/*
 * Tracing: the task dump, schedtrace, the blocked-worker watchdog and the monitor thread
 * that runs the last two (and the dump on a signal).
 *
 * Owns: WEFT_TRACE's parsing, one monitor thread per runtime that asks for any tool, the
 * signal handler for dump:SIG, and the text of every line these tools print.
 *
 * The dump walks the descriptor slabs under rt->task_lock (lib/task.c's weft__tasks_visit):
 * spawns from a worker's own free list take no lock, so descriptors change under it. It reads
 * only atomic fields, all relaxed (a racy snapshot, TSan-clean): a task's id, name, word (done
 * or not), state, wait reason and detail (the descriptor's diag_* fields and its
 * result_or_detail, see internal.h), and its birth stamp. A line may mix two moments of one task (a reason from one wait, the
 * state from the next); the header says so. Why a task waits is recorded where it suspends,
 * one store pair per suspension point (Go's gopark reason), never reconstructed from wait
 * records: those live on the task's stack and are not atomic.
 *
 * Which task runs is not stored per task (#14: no store per slice): each worker's `current`
 * (the scheduler's own field, published for this) names its slice's task, or the task it runs
 * inline, and the dump reads them all once at its start. So a task is, in this order: done
 * (its word); running on worker N (N's `current`); awaiting the task it runs inline (state
 * NOTHING with the INLINE reason: weft__inline_begin stores the pair, the awaiter's next
 * suspension changes the state, and nothing is cleared at the run's end because the awaiter is
 * `current` again); waiting (its last suspension parked it); else queued. Rejected: a state
 * and worker stored per slice and per inline await (session 4: +9 % instructions on fib and
 * skynet, #14's "always on" missed); a `running` field beside `current` (session 5: two
 * stores per slice and per inline await; +2-3.5 %); now +0.9-1.6 % (bench/README.md).
 *
 * The watchdog samples each worker's (tick, current) pair every threshold/4: the tick moves
 * once per slice (each look for work), so a worker whose tick has not moved while a task runs
 * on it has been in that one slice since the first sample that saw it; past the threshold it
 * is named (the task running at that moment: a slice's task or one it runs inline), once per
 * slice. Detection comes
 * between threshold and 1.25 x threshold after the slice began. Rejected: stamping each slice
 * with the clock (two clock reads per switch on a 2.5 ns switch) and a signal to the worker
 * to print its own task (TSan delivers signals only at interceptors; a task spinning in user
 * code would never see it).
 *
 * dump:SIG's handler only increments a counter (a lock-free atomic, async-signal-safe); the
 * monitor, which polls it every DUMP_POLL_MS, does the dump (walking slabs under a mutex is not
 * async-signal-safe). Every runtime that asks for the same signal dumps on it. The handler is
 * not removed when a runtime goes (another may still want it): once installed, the signal no
 * longer ends the process, until the library is unloaded (dump_signals_unload).
 * Rejected: a signalfd (the signal would have to be blocked in every thread, the user's too).
 *
 * Every line is written with one write(2) to fd 2, so lines of two runtimes cannot interleave
 * (a line over PIPE_BUF bytes, a schedtrace line of ~90 workers or more, goes in pieces). The
 * monitor's writes wait in poll while stderr takes nothing, looking for destroy's stop, and
 * block beyond that only in the cases docs/api.md lists (lib/stderr.c: by what fd 2 is,
 * on a copy of it taken for each try): a plain write blocked for good on a stderr pipe or
 * terminal nobody read (a supervisor gone, a stalled terminal), and destroy, which joins the
 * monitor, blocked with it (session 36; the terminal from review D; a pipe another writer
 * fills, review I). What is left unwritten at the stop is dropped. A reader gone gives EPIPE,
 * never SIGPIPE (review I). destroy's own line about a held worker goes out the same way, in
 * OUTPUT_LOOK_MS at most (weft__stderr_try_line). The pieces are of at most PIPE_BUF bytes,
 * cut at a line's end (monitor_piece), which a pipe with room takes whole. A weft_runtime_dump call
 * writes to its caller's fd as the caller's own writes would.
 */
#include "deque.h"
#include "internal.h"

#include <link.h> /* dl_iterate_phdr (WEFT_TRACE=sites) */
#include <errno.h>
#include <inttypes.h>
#include <limits.h> /* PIPE_BUF */
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

enum {
  DUMP_POLL_MS = 50, /* picked: a signal's dump comes within 50 ms; one futex timeout each */
  OUTPUT_LOOK_MS = WEFT__STDERR_LOOK_MS, /* a monitor waiting on its output looks for the stop this often */
  LINE_MAX_BYTES = 512,
  SIGNALS_MAX = 64, /* what a dump:SIG spec may name (parse_signal), and a uint64_t's bits */
};

struct weft__trace {
  struct weft_runtime *rt;
  pthread_t thread;
  _Atomic uint32_t stop; /* futex word: 1 once destroy asks the monitor to leave */
  uint64_t sched_ns, watch_ns; /* periods; 0: off */
  int dump_signal;             /* 0: off */
  unsigned seen_dumps;
  struct watch {
    uint64_t slices;
    struct weft_task *task;
    uint64_t since;
    bool reported;
  } *watch; /* one per worker, the monitor's own */
};

/* Bumped by the handler, one counter per signal: a runtime dumps on its own signal only
 * (review, session 31: one counter for all made a dump:USR1 runtime dump on SIGUSR2 too).
 * Lock-free on every target. */
static _Atomic unsigned dump_requests[SIGNALS_MAX + 1];

/* ---- Output ------------------------------------------------------------------------------- */

typedef struct {
  char buf[LINE_MAX_BYTES];
  size_t n;
} line_t;

static void put(line_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(line_t *l, const char *fmt, ...) {
  if (l->n >= sizeof l->buf) return;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(l->buf + l->n, sizeof l->buf - l->n, fmt, ap);
  va_end(ap);
  if (k > 0) l->n = l->n + (size_t)k < sizeof l->buf ? l->n + (size_t)k : sizeof l->buf - 1;
}

/* Where lines go: a fd, and for the monitor the word destroy sets to stop it (NULL for a
 * weft_runtime_dump call, which writes as its caller's own writes would). */
typedef struct {
  int fd;
  _Atomic uint32_t *stop;
} sink_t;

/* One write of the monitor's, which destroy's stop can always end: what it took, or -1 with
 * errno (ECANCELED once stopped). Each try (weft__stderr_try) waits OUTPUT_LOOK_MS at most, then
 * looks at the stop. */
static ssize_t monitor_write(const sink_t *s, const char *p, size_t n) {
  for (;;) {
    /* acquire: as monitor()'s look at the same word */
    if (atomic_load_explicit(s->stop, memory_order_acquire)) {
      errno = ECANCELED;
      return -1;
    }
    ssize_t k = weft__stderr_try(s->fd, p, n, weft_now_ns() + OUTPUT_LOOK_MS * 1000000ull);
    int e = errno; /* EBADF: fd 2 closed, as a write would say */
    if (k == WEFT__STDERR_NO_ROOM) {
      weft__probe_hit(WEFT__PROBE_MONITOR_WAITED);
      continue;
    }
    if (k < 0 && (e == EAGAIN || e == EWOULDBLOCK)) continue;
    errno = e;
    return k;
  }
}

/* A piece of the monitor's output: PIPE_BUF bytes at most, which a pipe takes whole or not at
 * all (never a part of a line beside another writer's). Whole lines where they fit. */
static size_t monitor_piece(const char *p, size_t left) {
  if (left <= PIPE_BUF) return left;
  const char *nl = memrchr(p, '\n', PIPE_BUF);
  return nl ? (size_t)(nl - p) + 1 : PIPE_BUF;
}

/* 0, or the write's -errno (-EIO for a write that took nothing; -ECANCELED: the monitor was
 * stopped, the rest dropped). */
static int write_all(const sink_t *s, const char *p, size_t left) {
  while (left) {
    ssize_t k = s->stop ? monitor_write(s, p, monitor_piece(p, left)) : write(s->fd, p, left);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    if (k == 0) return -EIO;
    p += k;
    left -= (size_t)k;
  }
  return 0;
}

static int emit(const sink_t *s, line_t *l) {
  if (l->n >= sizeof l->buf) l->n = sizeof l->buf - 1;
  l->buf[l->n++] = '\n';
  int err = write_all(s, l->buf, l->n);
  l->n = 0;
  return err;
}

static double ms(uint64_t ns) { return (double)ns / 1e6; }

/* ---- The task dump ------------------------------------------------------------------------ */

static void put_name(line_t *l, const char *name) {
  char shown[WEFT__SAMPLED_NAME_MAX];
  weft__name_shown(shown, name);
  put(l, " \"%s\"", shown);
}

static const char *const wait_text[WEFT__WAIT_KINDS] = {
    [WEFT__WAIT_NONE] = "waiting",
    [WEFT__WAIT_TASK] = "awaiting task",
    [WEFT__WAIT_FUTURE] = "awaiting a future",
    [WEFT__WAIT_GATHER] = "in gather of",
    [WEFT__WAIT_SLEEP] = "sleeping until",
    [WEFT__WAIT_CHANNEL] = "waiting on a channel",
    [WEFT__WAIT_LOCK] = "waiting for a lock",
    [WEFT__WAIT_FD] = "waiting on fd",
    [WEFT__WAIT_CANCELLED] = "cancelled, in its cleanup gather of",
    [WEFT__WAIT_FRAME] = "in weft_sync, waiting for a stolen frame",
    [WEFT__WAIT_INLINE] = "awaiting task",
};

/* WEFT_TRACE=sites: the loaded objects, read before the dump takes task_lock (the loader's
 * lock must not nest inside it: a dlopen'ed constructor that spawns would take them in the
 * other order), so that each site is found without a call into the loader. */
enum { SITE_OBJECTS = 64 };
typedef struct {
  uintptr_t lo, hi, base; /* the object's PT_LOAD span, and its load bias (addr2line's base) */
  char name[64];
} site_object_t;
typedef struct {
  site_object_t obj[SITE_OBJECTS];
  int n;
} site_objects_t;

static int collect_object(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  site_objects_t *objs = arg;
  if (objs->n == SITE_OBJECTS) return 1;
  site_object_t *o = &objs->obj[objs->n];
  o->lo = UINTPTR_MAX;
  o->hi = 0;
  o->base = info->dlpi_addr;
  for (int k = 0; k < info->dlpi_phnum; k++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[k];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
    if (lo < o->lo) o->lo = lo;
    if (lo + ph->p_memsz > o->hi) o->hi = lo + ph->p_memsz;
  }
  const char *path = info->dlpi_name;
  char exe[256];
  if (!path || !*path) { /* the program itself */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    path = n > 0 ? exe : "the program";
  }
  const char *slash = strrchr(path, '/');
  snprintf(o->name, sizeof o->name, "%.63s", slash ? slash + 1 : path); /* cut: a dump's text */
  if (o->lo < o->hi) objs->n++;
  return 0;
}

typedef struct {
  struct weft_runtime *rt;
  uint64_t now, coarse_now;
  size_t count;
  struct weft_task **running; /* each worker's `current`, read once at the dump's start */
  const site_objects_t *objects; /* WEFT_TRACE=sites: the loaded objects, else NULL */
  /* The task lines, written to the fd only once task_lock is released: a write that blocks
   * (a full pipe, a paused terminal) held the lock, and with it every parking worker's
   * scavenge, every foreign spawn and the timers (review, session 20: 2 s stalls). */
  char *out;
  size_t out_len, out_cap;
  bool out_of_memory; /* a line did not fit and the buffer could not grow: the dump is cut */
} dump_ctx_t;

/* Appends l (and its newline) to the dump's buffer, doubling it as needed. */
static void buffer_line(dump_ctx_t *d, line_t *l) {
  if (l->n >= sizeof l->buf) l->n = sizeof l->buf - 1;
  l->buf[l->n++] = '\n';
  if (d->out_of_memory) return;
  if (d->out_len + l->n > d->out_cap) {
    size_t cap = d->out_cap ? d->out_cap * 2 : 64 * 1024;
    while (cap < d->out_len + l->n) cap *= 2;
    char *grown = realloc(d->out, cap);
    if (!grown) {
      d->out_of_memory = true;
      return;
    }
    d->out = grown;
    d->out_cap = cap;
  }
  memcpy(d->out + d->out_len, l->buf, l->n);
  d->out_len += l->n;
  l->n = 0;
}

/* ", spawned at file+0xOFF" (addr2line -e file 0xOFF names the line). */
static void put_site(line_t *l, const site_objects_t *objs, void *site) {
  uintptr_t a = (uintptr_t)site;
  if (!site) {
    put(l, ", spawned by weft (a stolen frame's task)");
    return;
  }
  for (int k = 0; objs && k < objs->n; k++)
    if (a >= objs->obj[k].lo && a < objs->obj[k].hi) {
      put(l, ", spawned at %s+%#" PRIxPTR, objs->obj[k].name, a - objs->obj[k].base);
      return;
    }
  put(l, ", spawned at %p", site);
}

/* The worker whose slice is t's in the dump's snapshot, or -1. */
static int slice_worker(const dump_ctx_t *d, const struct weft_task *t) {
  for (int i = 0; i < d->rt->nworkers; i++)
    if (d->running[i] == t) return i;
  return -1;
}

static void dump_task(struct weft_task *t, void *arg) {
  dump_ctx_t *d = arg;
  /* relaxed, every load here: a racy snapshot (see the design comment) */
  uint64_t id = atomic_load_explicit(&t->id, memory_order_relaxed);
  const char *name = weft__task_name(t);
  uintptr_t word = atomic_load_explicit(&t->word, memory_order_relaxed);
  /* one load of the pair that weft__inline_begin stores as one (little-endian: state low) */
  uint16_t state_reason = atomic_load_explicit(&t->state_reason, memory_order_relaxed);
  uint8_t after = (uint8_t)state_reason;
  uint32_t why = state_reason >> 8;
  uint64_t detail = atomic_load_explicit(&t->result_or_detail, memory_order_relaxed);
  uint32_t born = atomic_load_explicit(&t->born, memory_order_relaxed);
  /* An INLINE reason counts only with state NOTHING: weft__inline_begin stores both, and the
   * awaiter's next suspension changes the state (nothing clears the reason at the run's end) */
  bool inline_await = why == WEFT__WAIT_INLINE && after == WEFT__AFTER_NOTHING;
  line_t l = {.n = 0};
  put(&l, "  task %" PRIu64, id);
  if (name) put_name(&l, name);
  put(&l, ": ");
  if (word & WEFT__DONE) {
    put(&l, "done, handle not released");
  } else if (slice_worker(d, t) >= 0) {
    put(&l, "running on worker %d", slice_worker(d, t)); /* whatever its last state said */
  } else if (inline_await || (why != WEFT__WAIT_INLINE && weft__after_waits(after))) {
    put(&l, "%s", wait_text[why < WEFT__WAIT_KINDS ? why : WEFT__WAIT_NONE]);
    switch (why) {
    case WEFT__WAIT_TASK:
    case WEFT__WAIT_INLINE:
      put(&l, " %" PRIu64, detail);
      break;
    case WEFT__WAIT_GATHER:
      put(&l, " %" PRIu64, detail);
      break;
    case WEFT__WAIT_CANCELLED:
      put(&l, " %" PRIu64, detail);
      break;
    case WEFT__WAIT_SLEEP:
      if (detail > d->now) put(&l, " +%.3f ms", ms(detail - d->now));
      else put(&l, " now (due)");
      break;
    case WEFT__WAIT_FD:
      put(&l, " %" PRIu64, detail);
      break;
    case WEFT__WAIT_FUTURE:
    case WEFT__WAIT_CHANNEL:
    case WEFT__WAIT_LOCK:
      put(&l, " (%#" PRIx64 ")", detail);
      break;
    default:
      break;
    }
  } else {
    put(&l, "queued");
  }
  weft__task_diag_t *diag = d->rt->spawn_sites ? weft__task_diag(t) : NULL;
  if (diag) put_site(&l, d->objects, atomic_load_explicit(&diag->site, memory_order_relaxed));
  /* modulo 2^32 units: right for ages up to 52 days */
  uint32_t age = (uint32_t)(d->coarse_now >> WEFT__BORN_SHIFT) - born;
  put(&l, ", age %.0f ms", ms((uint64_t)(age > UINT32_MAX / 2 ? 0 : age) << WEFT__BORN_SHIFT));
  buffer_line(d, &l);
  d->count++;
}

static int dump_to(weft_runtime_t *rt, const sink_t *out) {
  /* On the heap: a task may call this on its 64 KiB stack. */
  struct weft_task **running = malloc(sizeof *running * (size_t)rt->nworkers);
  site_objects_t *objects = rt->spawn_sites ? malloc(sizeof *objects) : NULL;
  if (!running || (rt->spawn_sites && !objects)) {
    free(running);
    free(objects);
    return WEFT_ENOMEM;
  }
  /* acquire: pairs with weft__set_current's release (the descriptor's making happens before) */
  for (int i = 0; i < rt->nworkers; i++)
    running[i] = atomic_load_explicit(&rt->workers[i].current_pub, memory_order_acquire);
  if (objects) {
    objects->n = 0;
    dl_iterate_phdr(collect_object, objects); /* before task_lock: see site_objects_t */
  }
  dump_ctx_t d = {.rt = rt, .now = weft_now_ns(), .coarse_now = weft__coarse_now_ns(),
                  .running = running, .objects = objects};
  line_t l = {.n = 0};
  put(&l, "weft dump: %d workers, uptime %.3f ms (tasks run on while it is taken)", rt->nworkers,
      ms(d.now - rt->created_ns));
  /* A failed write ends the dump with its error (review, session 31: they were ignored, and
   * a dump to a closed or read-only fd answered 0) */
  int err = emit(out, &l);
  if (!err) {
    weft__tasks_visit(rt, dump_task, &d); /* under task_lock: only into the buffer */
    err = write_all(out, d.out, d.out_len);
  }
  if (!err) {
    if (d.out_of_memory)
      put(&l, "weft dump cut short: no memory for more lines (%zu tasks seen)", d.count);
    else
      put(&l, "weft dump end: %zu tasks", d.count);
    err = emit(out, &l);
  }
  free(d.out);
  free(running);
  free(objects);
  return err ? err : d.out_of_memory ? WEFT_ENOMEM : 0;
}

int weft_runtime_dump(weft_runtime_t *rt, int fd) {
  if (!rt || fd < 0) return WEFT_EINVAL;
  return dump_to(rt, &(sink_t){.fd = fd, .stop = NULL});
}

/* ---- schedtrace --------------------------------------------------------------------------- */

static void schedtrace(struct weft_runtime *rt, const sink_t *out) {
  weft_metrics_t m = WEFT_METRICS_INIT;
  weft_runtime_metrics(rt, WEFT_METRICS_ALL, &m);
  line_t l = {.n = 0};
  /* relaxed: counts for display */
  put(&l,
      "SCHED %" PRIu64 "ms: workers=%d idleworkers=%d spinning=%d injectq=%" PRIu64
      " timers=%" PRIu64 " live=%" PRIu64 " run=%" PRIu64 " spawned=%" PRIu64 " stolen=%" PRIu64
      " parks=%" PRIu64 " runq=[",
      m.uptime_ns / 1000000, m.workers, atomic_load_explicit(&rt->nidle, memory_order_relaxed),
      atomic_load_explicit(&rt->nspinning, memory_order_relaxed), m.inject_depth, m.timers_armed,
      m.tasks_live, m.tasks_run, m.tasks_spawned, m.tasks_stolen, m.parks);
  /* One entry per worker, each at most 42 bytes ("D/Y ", two 20-digit counts): past ~100
   * workers they outgrow the line, so the line goes into a buffer sized for them, written in
   * one write (review, session 31: the line was cut at 512 bytes, its `]` with it). One pass
   * over the workers (a weft_runtime_metrics call per worker walked them all: O(workers^2) a
   * line). */
  size_t cap = l.n + (size_t)rt->nworkers * 42 + 3;
  char *line = malloc(cap);
  if (!line) { /* out of memory: the line says so rather than show a part */
    put(&l, "?]");
    emit(out, &l);
    return;
  }
  memcpy(line, l.buf, l.n);
  size_t n = l.n;
  for (int i = 0; i < rt->nworkers; i++) {
    uint64_t deque, yield;
    weft__worker_depths(&rt->workers[i], &deque, &yield);
    n += (size_t)snprintf(line + n, cap - n, "%s%" PRIu64 "/%" PRIu64, i ? " " : "", deque, yield);
  }
  n += (size_t)snprintf(line + n, cap - n, "]\n");
  write_all(out, line, n);
  free(line);
}

/* ---- The watchdog ------------------------------------------------------------------------- */

uint64_t weft__task_sample(struct weft_runtime *rt, struct weft_task *t,
                           char name[WEFT__SAMPLED_NAME_MAX]) {
  /* The descriptor stays mapped while the runtime lives; if the task ended just now these
   * read its successor's fields: relaxed atomics, like the dump's. The id is read again after
   * the name: a descriptor that changed tasks in between is read once more, so that the pair
   * is one task's (review H), three times at most (a sample, not a snapshot). */
  uint64_t id = atomic_load_explicit(&t->id, memory_order_relaxed);
  for (int tries = 0; tries < 3; tries++) {
    /* The name's bytes copied at once, under the lock that keeps its slab's names array (the
     * scavenger frees it under task_lock): a task that ends and is released just now may have
     * its name freed (weft.h allows it), and this copy is the only read that can race that,
     * not the line's formatting as well. */
    pthread_mutex_lock(&rt->task_lock);
    const char *named = weft__task_name(t);
    weft__name_shown(name, named ? named : "(unnamed)");
    pthread_mutex_unlock(&rt->task_lock);
    /* acquire fence: the name's loads before the id's second load (a weakly ordered CPU
     * could take the second load first: review I) */
    atomic_thread_fence(memory_order_acquire);
    uint64_t again = atomic_load_explicit(&t->id, memory_order_relaxed);
    if (again == id) break;
    id = again;
  }
  return id;
}

static void watchdog(struct weft__trace *tr, const sink_t *out, uint64_t now) {
  struct weft_runtime *rt = tr->rt;
  for (int i = 0; i < rt->nworkers; i++) {
    weft__worker_t *w = &rt->workers[i];
    struct watch *s = &tr->watch[i];
    /* relaxed: a sample; a stale one delays a report by one check */
    uint64_t slices = atomic_load_explicit(&w->tick, memory_order_relaxed); /* moves per slice */
    /* acquire: pairs with weft__set_current's release (the descriptor's making happens before) */
    struct weft_task *t = atomic_load_explicit(&w->current_pub, memory_order_acquire);
    /* Only the slice count resets: `current` also moves between a task and what it runs
     * inline, which is still one slice that has not suspended (the report names the task
     * running inline at the moment). */
    if (!t || slices != s->slices) {
      *s = (struct watch){.slices = slices, .task = t, .since = now, .reported = false};
      continue;
    }
    if (s->reported || now - s->since < tr->watch_ns) continue;
    s->reported = true;
    char name[WEFT__SAMPLED_NAME_MAX];
    uint64_t id = weft__task_sample(rt, t, name);
    line_t l = {.n = 0};
    put(&l, "weft watchdog: worker %d has run one slice for %.0f ms without suspending, now in "
            "task %" PRIu64 " \"%s\" (a blocking call in a task?)",
        i, ms(now - s->since), id, name);
    /* relaxed: a sample (lib/worker.c's "Private spawns": what a blocked worker keeps) */
    uint32_t kept = atomic_load_explicit(&w->npriv, memory_order_relaxed);
    if (kept)
      put(&l, "; it keeps %" PRIu32 " spawn%s that no other worker can take until it suspends",
          kept, kept == 1 ? "" : "s");
    emit(out, &l);
  }
}

/* ---- The monitor thread ------------------------------------------------------------------- */

static void on_dump_signal(int sig) {
  if (sig > 0 && sig <= SIGNALS_MAX) /* relaxed: a counter */
    atomic_fetch_add_explicit(&dump_requests[sig], 1, memory_order_relaxed);
}

/* The signals whose handler weft put in (bit sig - 1), and what each had before: the library's
 * unload puts that back, since the handler's code goes with the library (review, session 30:
 * a signal after a dlclose jumped to unmapped code). Each entry is written once, by the first
 * install that replaced a handler not ours, before its bit in `ours` is set. */
static _Atomic uint64_t dump_signals_ours, dump_signals_claimed;
static struct sigaction dump_signals_before[SIGNALS_MAX + 1];

static bool is_dump_handler(const struct sigaction *sa) {
  return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == on_dump_signal;
}

static int dump_signal_install(int sig) {
  struct sigaction sa, before;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_dump_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(sig, &sa, &before) != 0) return WEFT_EINVAL;
  uint64_t bit = UINT64_C(1) << (sig - 1);
  /* The first install only (sigaction swaps, and the claim settles a program that put its own
   * back in between): one writer per entry. relaxed: the claim only picks that writer. */
  if (!is_dump_handler(&before) &&
      !(atomic_fetch_or_explicit(&dump_signals_claimed, bit, memory_order_relaxed) & bit)) {
    dump_signals_before[sig] = before;
    /* release: the saved handler above, for the unload's acquire */
    atomic_fetch_or_explicit(&dump_signals_ours, bit, memory_order_release);
  }
  return 0;
}

/* At unload (or exit): each signal whose handler is still ours gets its earlier one back. */
__attribute__((destructor)) static void dump_signals_unload(void) {
  /* acquire: pairs with the installs' release; their saved handlers come with it */
  uint64_t ours = atomic_load_explicit(&dump_signals_ours, memory_order_acquire);
  for (int sig = 1; sig <= SIGNALS_MAX; sig++) {
    struct sigaction now;
    if ((ours >> (sig - 1) & 1) && sigaction(sig, NULL, &now) == 0 && is_dump_handler(&now))
      sigaction(sig, &dump_signals_before[sig], NULL);
  }
}

static void *monitor(void *arg) {
  struct weft__trace *tr = arg;
  uint64_t now = weft_now_ns();
  uint64_t next_sched = tr->sched_ns ? now + tr->sched_ns : UINT64_MAX;
  uint64_t watch_every = tr->watch_ns / 4 ? tr->watch_ns / 4 : 1;
  uint64_t next_watch = tr->watch_ns ? now + watch_every : UINT64_MAX;
  uint64_t dump_look = (uint64_t)DUMP_POLL_MS * 1000000;
  const sink_t out = {.fd = STDERR_FILENO, .stop = &tr->stop};
  for (;;) {
    uint64_t deadline = next_sched < next_watch ? next_sched : next_watch;
    if (tr->dump_signal && deadline > now + dump_look) deadline = now + dump_look;
    /* acquire: pairs with trace_stop's release; nothing is handed over, it only ends us */
    if (atomic_load_explicit(&tr->stop, memory_order_acquire)) break;
    weft__futex_wait(&tr->stop, 0, deadline);
    if (atomic_load_explicit(&tr->stop, memory_order_acquire)) break;
    now = weft_now_ns();
    if (now >= next_sched) {
      schedtrace(tr->rt, &out);
      while (next_sched <= now) next_sched += tr->sched_ns; /* no burst after a stall */
    }
    if (now >= next_watch) {
      watchdog(tr, &out, now);
      next_watch = now + watch_every;
    }
    if (tr->dump_signal) {
      /* relaxed: the counter itself is all we read */
      unsigned d = atomic_load_explicit(&dump_requests[tr->dump_signal], memory_order_relaxed);
      if (d != tr->seen_dumps) {
        tr->seen_dumps = d;
        dump_to(tr->rt, &out);
      }
    }
  }
  return NULL;
}

/* ---- WEFT_TRACE --------------------------------------------------------------------------- */

static int parse_ms(const char *s, size_t len, uint64_t *out) {
  uint64_t v = 0;
  if (len == 0 || len > 9) return WEFT_EINVAL;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return WEFT_EINVAL;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  if (v == 0) return WEFT_EINVAL;
  *out = v * 1000000;
  return 0;
}

static int parse_signal(const char *s, size_t len, int *out) {
  static const struct {
    const char *name;
    int sig;
  } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"SIGUSR1", SIGUSR1}, {"SIGUSR2", SIGUSR2},
               {"QUIT", SIGQUIT}, {"SIGQUIT", SIGQUIT}, {"HUP", SIGHUP},   {"SIGHUP", SIGHUP}};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strlen(names[i].name) == len && memcmp(names[i].name, s, len) == 0) {
      *out = names[i].sig;
      return 0;
    }
  uint64_t v = 0;
  if (len == 0 || len > 2) return WEFT_EINVAL;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return WEFT_EINVAL;
    v = v * 10 + (uint64_t)(s[i] - '0');
  }
  /* Signals the process cannot catch are refused, and the synchronous fault signals: a handler
   * that returns from one makes the faulting instruction run again, so a real fault became an
   * endless loop of dumps (review, session 20: dump:8 and a division by zero). */
  if (v < 1 || v > SIGNALS_MAX || v == SIGKILL || v == SIGSTOP || v == SIGSEGV || v == SIGBUS ||
      v == SIGFPE || v == SIGILL || v == SIGTRAP || v == SIGSYS)
    return WEFT_EINVAL;
  *out = (int)v;
  return 0;
}

static int parse(struct weft__trace *tr, const char *spec) {
  const char *p = spec;
  while (*p) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(end - p));
    if (end - p == 5 && memcmp(p, "sites", 5) == 0) { /* read by weft__trace_wants_sites */
      if (*end && !end[1]) return WEFT_EINVAL;          /* a trailing comma */
      p = *end ? end + 1 : end;
      continue;
    }
    if (!colon) return WEFT_EINVAL;
    size_t klen = (size_t)(colon - p), vlen = (size_t)(end - colon - 1);
    int err;
    /* An item given twice is refused: which one would count is not obvious (review, session
     * 31: `dump:USR1,dump:USR2` kept the last) */
    if (klen == 10 && memcmp(p, "schedtrace", 10) == 0)
      err = tr->sched_ns ? WEFT_EINVAL : parse_ms(colon + 1, vlen, &tr->sched_ns);
    else if (klen == 8 && memcmp(p, "watchdog", 8) == 0)
      err = tr->watch_ns ? WEFT_EINVAL : parse_ms(colon + 1, vlen, &tr->watch_ns);
    else if (klen == 4 && memcmp(p, "dump", 4) == 0)
      err = tr->dump_signal ? WEFT_EINVAL : parse_signal(colon + 1, vlen, &tr->dump_signal);
    else
      err = WEFT_EINVAL;
    if (err) return err;
    if (*end && !end[1]) return WEFT_EINVAL; /* a trailing comma */
    p = *end ? end + 1 : end;
  }
  return 0;
}

bool weft__trace_wants_sites(const char *spec) {
  for (const char *p = spec; p && *p;) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    if (end - p == 5 && memcmp(p, "sites", 5) == 0) return true;
    p = *end ? end + 1 : end;
  }
  return false;
}

int weft__trace_start(struct weft_runtime *rt, const char *spec) {
  rt->trace = NULL;
  if (!spec || !*spec) return 0;
  struct weft__trace *tr = calloc(1, sizeof *tr);
  if (!tr) return WEFT_ENOMEM;
  tr->rt = rt;
  int err = parse(tr, spec);
  if (!err && !(tr->watch = calloc((size_t)rt->nworkers, sizeof *tr->watch))) err = WEFT_ENOMEM;
  if (!err && tr->dump_signal) {
    err = dump_signal_install(tr->dump_signal);
    /* relaxed: only this monitor reads its own copy */
    tr->seen_dumps = atomic_load_explicit(&dump_requests[tr->dump_signal], memory_order_relaxed);
  }
  atomic_init(&tr->stop, 0);
  if (!err && !tr->sched_ns && !tr->watch_ns && !tr->dump_signal) { /* `sites` alone: no thread */
    free(tr->watch);
    free(tr);
    return 0;
  }
  if (!err && pthread_create(&tr->thread, NULL, monitor, tr) != 0) err = WEFT_EAGAIN;
  if (err) {
    free(tr->watch);
    free(tr);
    return err;
  }
  rt->trace = tr;
  return 0;
}

void weft__trace_stop(struct weft_runtime *rt) {
  struct weft__trace *tr = rt->trace;
  if (!tr) return;
  atomic_store_explicit(&tr->stop, 1, memory_order_release); /* release: see monitor() */
  weft__futex_wake(&tr->stop, 1);
  pthread_join(tr->thread, NULL);
  free(tr->watch);
  free(tr);
  rt->trace = NULL;
}
