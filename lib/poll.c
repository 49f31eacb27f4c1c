/*
 * The poller: fd readiness folded into the scheduler and the timer wheel (Go's netpoll, Tokio's
 * I/O driver).
 *
 * Shape. One poller per runtime, created on the first socket: one epoll instance, one eventfd
 * to break a blocked epoll_wait, and a table of descriptors (weft__sock_t, poll.h). Each fd is
 * registered once, edge-triggered for both directions (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET);
 * the event's 64-bit data is the descriptor's index and its sequence number, so an event queued
 * for an fd number that was closed and reused is recognised and dropped (Go's pollDesc tag).
 * Who polls:
 *   - an idle worker about to sleep (worker.c's park) that wins the try-lock (`owner`) blocks in
 *     epoll_pwait2 with the timer wheel's next deadline as its timeout (nanoseconds; epoll_wait
 *     with milliseconds rounded up where the kernel lacks epoll_pwait2); the other idle workers
 *     sleep on their futex words as before;
 *   - a busy worker polls with timeout 0 at its fairness tick (every 61st task), if the lock
 *     is free (Tokio's event_interval); an idle one spins only briefly while the poller is
 *     active and does not poll while it spins (worker.c's spin_rounds): it comes here to block;
 *   - an idle worker that finds the lock held by such a non-blocking poll waits for it to end
 *     (one epoll_wait(0)) and then takes it to block, instead of sleeping on its futex: else,
 *     that poll done, nobody would wait in epoll and events would wait for the busy worker's
 *     next tick (found in review). `owner` carries OWNER_BLOCKS to tell the two holders apart.
 * An edge bumps the direction's `edges` count and wakes the task parked in its park word
 * (lib/fdpark_impl.h, issue 12: claim the task out of the word, one CAS on its park state,
 * which cancellation and deadlines race through as for every other wait). Until issue 12 the
 * word was a completion word (join_impl.h), ten locked instructions per message between wait
 * and wake where the fd park takes six. The batch's woken tasks go straight onto the polling
 * worker's FIFO yield queue, in event order (ready_fifo: oldest connection first, as Go queues
 * netpoll's goroutines at a run queue's tail; the empty → non-empty push wakes a sibling if
 * none is looking for work). A close's notify from a task schedules as any wake-up does.
 * Breaking the poller: the poller stays on the idle list while it blocks, so every existing
 * wake-up (new work, an earlier timer, a stop) may pick it; the waker then also writes the
 * eventfd (the woke hook), deduplicated by `break_pending` (Go's netpollBreak). The lost
 * wake-up is closed as for the futex: the poller stores `owner` and then loads its park word
 * and `stopping`; the waker stores the park word (or `stopping`) and then loads `owner`; all
 * seq_cst, so one of the two sees the other.
 * Backends: the table, the edge counts and the worker hooks are generic; what talks to the
 * kernel sits behind weft__poll_backend_t (open, add, del, wait, interrupt). epoll is the only
 * one; io_uring (liburing 2.3 in Debian) can be a second, but container seccomp profiles often
 * block it, so epoll stays the default.
 * Rejected: a poller thread of its own (one more context switch per event, and it competes with
 * the workers for the cores: Go and Tokio both poll from the scheduler); one epoll per worker
 * (Seastar's shard-per-core: a connection would be tied to the worker that accepted it, against
 * weft's stealing; tokio#5771 is the open request for that); level-triggered registration
 * (an epoll_ctl per wait to re-arm, or a storm of events for fds nobody waits on); a per-fd
 * mutex (the edge count and the park word suffice for one waiter per direction). Tried and
 * reverted (session 28): routing each wake-up to the worker its task last parked on, through a
 * per-worker inbox: no gain at 2–8 server cores (bench/README.md), as the worker that polls is
 * mostly the idle one and the home worker is parked; keeping a connection on its core needs
 * the per-worker poller above, which the 16-core sweep now argues for (bare epoll 1.7× weft at
 * 8 cores).
 * Cost: nothing until the first socket (the worker hooks test one pointer); then one
 * epoll_wait(0) syscall (~0.3 µs here) per 61 tasks on busy workers.
 * Known limit: a worker running one task for a long time without suspending polls nothing; if
 * every other worker sleeps on its futex at that moment, events wait for that task (Go has
 * sysmon's 10 ms poll for this; weft has no such thread).
 */
#include "fdpark.h"
#include "poller.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum {
  CHUNK_SHIFT = 10,                 /* picked: 1024 descriptors (~80 KiB) per allocation */
  CHUNK = 1 << CHUNK_SHIFT,
  CHUNKS = 1024,                    /* picked: room for 2^20 open sockets */
  EVENTS_MAX = 128,                 /* picked: events taken per epoll_wait (Go: 128) */
};
#define BREAK_TAG UINT64_MAX /* the eventfd's event data: no descriptor has this index */
#define OWNER_BLOCKS ((uintptr_t)1) /* in `owner`: the holder blocks (workers are aligned) */

typedef struct weft__poll_event {
  uint64_t tag;
  bool in, out; /* in: readable, hung up or failed; out: writable, hung up or failed */
  bool hup;     /* hung up (either way) or failed: EPOLLRDHUP, EPOLLHUP, EPOLLERR */
} weft__poll_event_t;

struct weft__poller;
/* What a kernel interface provides. wait blocks until deadline_ns (absolute CLOCK_MONOTONIC;
 * 0: do not block; UINT64_MAX: no deadline) and returns how many events it stored, or a
 * negative errno; *broke says it drained a break. */
typedef struct weft__poll_backend {
  const char *name;
  int (*open)(struct weft__poller *p);
  void (*close)(struct weft__poller *p);
  int (*add)(struct weft__poller *p, int fd, uint64_t tag);
  void (*del)(struct weft__poller *p, int fd);
  int (*wait)(struct weft__poller *p, uint64_t deadline_ns, weft__poll_event_t *out, int max,
              bool *broke);
  void (*interrupt)(struct weft__poller *p);
} weft__poll_backend_t;

struct weft__poller {
  const weft__poll_backend_t *ops;
  int epfd, evfd;
  _Atomic int pwait2; /* 1: epoll_pwait2 works, 0: it answered ENOSYS (relaxed: a hint) */
  /* The try-lock: the worker polling now (its address, | OWNER_BLOCKS if it is an idle worker
   * that blocks in the wait; a busy worker's poll does not block), 0 when none. */
  _Atomic uintptr_t owner WEFT__ALIGNED;
  _Atomic uint32_t break_pending; /* the eventfd was written and not yet drained */
#ifdef WEFT_FAULTS
  /* weft__poll_test_hold is taking the lock: an idle worker treats it as held by a busy poll
   * (relaxed: a hint; the CAS on `owner` decides). */
  _Atomic bool test_hold_wanted;
#endif
  pthread_mutex_t lock WEFT__ALIGNED; /* the free list and chunk allocation */
  weft__sock_t *free_list;
  uint32_t used; /* descriptors handed out of the chunks so far */
  _Atomic(weft__sock_t *) chunks[CHUNKS];
  /* Socket operations in progress from outside the runtime (plain threads, other runtimes'
   * tasks), which destroy waits out before it frees the table; and destroy's mark, which an
   * outside caller looks at after counting itself (lib/shutdown_impl.h's store-load pair, as a
   * spawn from outside against a shutdown). */
  _Atomic long outside WEFT__ALIGNED;
  _Atomic int closing;
};

/* ---- The epoll backend ---------------------------------------------------------------------- */

static int ep_open(struct weft__poller *p) {
  p->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (p->epfd < 0) return -errno;
  p->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (p->evfd < 0) {
    int err = -errno;
    close(p->epfd);
    return err;
  }
  /* Level-triggered: a break stays visible until it is drained. */
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = BREAK_TAG};
  if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->evfd, &ev) != 0) {
    int err = -errno;
    close(p->evfd);
    close(p->epfd);
    return err;
  }
  atomic_init(&p->pwait2, 1);
  return 0;
}

static void ep_close(struct weft__poller *p) {
  close(p->evfd);
  close(p->epfd);
}

static int ep_add(struct weft__poller *p, int fd, uint64_t tag) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = tag};
  return epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -errno;
}

static void ep_del(struct weft__poller *p, int fd) {
  struct epoll_event ev = {0}; /* ignored, but kernels before 2.6.9 wanted it */
  epoll_ctl(p->epfd, EPOLL_CTL_DEL, fd, &ev);
}

/* Milliseconds for epoll_wait, rounded up (Go does the same: an early wake-up only re-polls). */
static int deadline_ms(uint64_t deadline_ns, uint64_t now) {
  if (deadline_ns == UINT64_MAX) return -1;
  if (deadline_ns <= now) return 0;
  uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
  return ms > 1000000u ? 1000000 : (int)ms;
}

static int ep_wait_raw(struct weft__poller *p, uint64_t deadline_ns, struct epoll_event *evs,
                       int max) {
  uint64_t now = deadline_ns && deadline_ns != UINT64_MAX ? weft_now_ns() : 0;
  /* relaxed: a capability flag; a stale 1 costs one more ENOSYS */
  if (deadline_ns && deadline_ns != UINT64_MAX &&
      atomic_load_explicit(&p->pwait2, memory_order_relaxed)) {
    uint64_t rel = deadline_ns > now ? deadline_ns - now : 0;
    struct timespec ts = {.tv_sec = (time_t)(rel / 1000000000u), .tv_nsec = (long)(rel % 1000000000u)};
    int n = epoll_pwait2(p->epfd, evs, max, &ts, NULL);
    /* ENOSYS: a kernel before 5.11; EPERM: a seccomp profile that does not know the call */
    if (n >= 0 || (errno != ENOSYS && errno != EPERM)) return n < 0 ? -errno : n;
    atomic_store_explicit(&p->pwait2, 0, memory_order_relaxed);
  }
  int n = epoll_wait(p->epfd, evs, max, deadline_ns ? deadline_ms(deadline_ns, now) : 0);
  return n < 0 ? -errno : n;
}

static int ep_wait(struct weft__poller *p, uint64_t deadline_ns, weft__poll_event_t *out, int max,
                   bool *broke) {
  struct epoll_event evs[EVENTS_MAX];
  if (max > EVENTS_MAX) max = EVENTS_MAX;
  int n = ep_wait_raw(p, deadline_ns, evs, max);
  if (n < 0) return n == -EINTR ? 0 : n;
  int k = 0;
  for (int i = 0; i < n; i++) {
    uint32_t e = evs[i].events;
    if (evs[i].data.u64 == BREAK_TAG) {
      uint64_t v;
      while (read(p->evfd, &v, sizeof v) > 0) {
      }
      *broke = true;
      continue;
    }
    out[k].tag = evs[i].data.u64;
    out[k].in = e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    out[k].out = e & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    out[k].hup = e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    k++;
  }
  return k;
}

static void ep_interrupt(struct weft__poller *p) {
  uint64_t one = 1;
  /* EAGAIN (the counter is full) still leaves it readable: the break is delivered */
  ssize_t r = write(p->evfd, &one, sizeof one);
  (void)r;
}

static const weft__poll_backend_t epoll_backend = {
    .name = "epoll",
    .open = ep_open,
    .close = ep_close,
    .add = ep_add,
    .del = ep_del,
    .wait = ep_wait,
    .interrupt = ep_interrupt,
};

/* ---- The poller ----------------------------------------------------------------------------- */

/* rt's poller as published: NULL, WEFT__POLLER_CLOSED or a poller. */
static struct weft__poller *poller_published(struct weft_runtime *rt) {
  /* acquire: pairs with weft__poller_get's publishing CAS; the poller's fields come with it */
  return atomic_load_explicit(&rt->poller, memory_order_acquire);
}

/* rt's poller, or NULL while it has none. */
static struct weft__poller *poller_of(struct weft_runtime *rt) {
  struct weft__poller *p = poller_published(rt);
  return p == WEFT__POLLER_CLOSED ? NULL : p;
}

/* A poller with no socket table left: its epoll and break fds closed, its memory freed. */
static void poller_free(struct weft__poller *p) {
  p->ops->close(p);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

/* A poller, opened, or NULL with *err set. */
static struct weft__poller *poller_make(int *err) {
  struct weft__poller *p = aligned_alloc(WEFT__CACHELINE, sizeof *p);
  if (!p) {
    *err = WEFT_ENOMEM;
    return NULL;
  }
  memset(p, 0, sizeof *p);
  p->ops = &epoll_backend;
  pthread_mutex_init(&p->lock, NULL);
  *err = p->ops->open(p);
  if (!*err) return p;
  pthread_mutex_destroy(&p->lock);
  free(p);
  return NULL;
}

/* The runtime's poller, made at its first use: opened outside any lock and published with a
 * compare-and-swap; the loser of a race closes its own. Rejected: a process-wide creation
 * lock (until session 29). A fork child inherited it held by a thread it does not have, and
 * holding it across fork() instead ordered it against the application's fork handlers: a
 * thread that held an application lock and then made a poller deadlocked with a fork whose
 * prepare handlers took weft's lock, then the application's (review, session 29). */
int weft__poller_get(struct weft_runtime *rt, struct weft__poller **out) {
  struct weft__poller *p = poller_published(rt);
  if (WEFT__LIKELY(p && p != WEFT__POLLER_CLOSED)) {
    *out = p;
    return 0;
  }
  if (p == WEFT__POLLER_CLOSED) return WEFT_EBADF; /* destroy has walked: as closing does */
  int err;
  struct weft__poller *made = poller_make(&err);
  if (!made) { /* out of fds or memory: another thread's may be there by now all the same */
    *out = poller_of(rt);
    return *out ? 0 : poller_published(rt) == WEFT__POLLER_CLOSED ? WEFT_EBADF : err;
  }
  weft__pause(WEFT__PAUSE_POLLER_MADE); /* tests: a fork, or destroy, comes here */
  /* release: publishes the opened poller to poller_of's acquire; acquire on failure: the
   * winner's poller, its fields with it */
  if (atomic_compare_exchange_strong_explicit(&rt->poller, &p, made, memory_order_acq_rel,
                                              memory_order_acquire)) {
    *out = made;
    return 0;
  }
  poller_free(made);
  if (p == WEFT__POLLER_CLOSED) return WEFT_EBADF; /* destroy walked while we made ours */
  *out = p;
  return 0;
}

static weft__sock_t *lookup(struct weft__poller *p, uint32_t index) {
  /* acquire: pairs with the release that published the chunk */
  weft__sock_t *chunk = atomic_load_explicit(&p->chunks[index >> CHUNK_SHIFT], memory_order_acquire);
  return chunk ? &chunk[index & (CHUNK - 1)] : NULL;
}

/* A free descriptor, or NULL: out of memory, or (*closing) its runtime's destroy has begun —
 * a registration then (an outside thread's accept or open racing destroy) would put a socket
 * into a table that is about to be freed. */
static weft__sock_t *desc_alloc(struct weft__poller *p, bool *closing) {
  pthread_mutex_lock(&p->lock);
  /* relaxed: set under this lock (weft__poll_each_open) */
  *closing = atomic_load_explicit(&p->closing, memory_order_relaxed);
  if (*closing) {
    pthread_mutex_unlock(&p->lock);
    return NULL;
  }
  weft__sock_t *s = p->free_list;
  if (s) {
    p->free_list = s->next_free;
  } else if (p->used < (uint32_t)CHUNKS * CHUNK) {
    uint32_t index = p->used;
    /* relaxed: chunks are published under this lock; lookups outside it use acquire */
    weft__sock_t *chunk = atomic_load_explicit(&p->chunks[index >> CHUNK_SHIFT], memory_order_relaxed);
    if (!chunk) {
      chunk = calloc(CHUNK, sizeof *chunk);
      if (chunk) {
        for (uint32_t i = 0; i < CHUNK; i++) {
          chunk[i].index = index + i;
          chunk[i].fd = -1;
          chunk[i].spare_fd = -1;
          atomic_init(&chunk[i].refs, WEFT__SOCK_REFS_FREE); /* as a closed one: destroy's walk skips it */
        }
        /* release: the initialised chunk to lookup's acquire (a stale event may read it) */
        atomic_store_explicit(&p->chunks[index >> CHUNK_SHIFT], chunk, memory_order_release);
      }
    }
    if (chunk) {
      s = &chunk[index & (CHUNK - 1)];
      p->used++;
    }
  }
  pthread_mutex_unlock(&p->lock);
  return s;
}

static void dir_init(weft__poll_dir_t *d) {
  /* relaxed: the descriptor reaches other threads through the registration (epoll_ctl, a
   * system call) or through the handle the caller passes on */
  atomic_store_explicit(&d->edges, 0, memory_order_relaxed);
  atomic_store_explicit(&d->park, FP_EMPTY, memory_order_relaxed);
}

int weft__poll_register(struct weft__poller *p, int fd, weft__sock_t **out) {
  bool closing;
  weft__sock_t *s = desc_alloc(p, &closing);
  if (!s) return closing ? WEFT_EBADF : WEFT_ENOMEM;
  dir_init(&s->rd);
  dir_init(&s->wr);
  /* refs stay WEFT__SOCK_REFS_FREE (closed, to destroy's walk) until weft__poll_publish */
  s->fd = fd;
  s->poller = p;
  atomic_store_explicit(&s->spare_fd, -1, memory_order_relaxed); /* relaxed: as dir_init */
  atomic_store_explicit(&s->rd_drained, 0, memory_order_relaxed); /* relaxed: as dir_init */
  s->listening = false;
  s->tcp = false;
  /* release: a stale event that reads the new seq sees the reset flags (and only notifies) */
  uint32_t seq = atomic_fetch_add_explicit(&s->seq, 1, memory_order_release) + 1;
  weft__pause(WEFT__PAUSE_REGISTER); /* tests: destroy's walk runs here */
  int err = p->ops->add(p, fd, (uint64_t)seq << 32 | s->index);
  if (err) {
    /* Not registered: no del (EEXIST — the fd is another socket's — would take that one's
     * registration away: review, session 19), and the caller's fd stays the caller's. */
    s->fd = -1; /* its refs still say closed, for destroy's walk */
    weft__poll_unregister(p, s, false);
    return err;
  }
  *out = s;
  return 0;
}

/* Makes a registered socket, its fields all set, one that destroy's walk closes: until now its
 * refs said closed, so a walk that came meanwhile skipped it (review, session 26: the walk
 * closed a socket an outside accept was still registering; the accept then added, or closed a
 * second time, a number the application may have reopened). Under the lock the walk begins
 * under: the walk comes after (and sees the whole socket), or it came first and the socket is
 * taken out again: WEFT_EBADF, the fd still the caller's. */
int weft__poll_publish(struct weft__poller *p, weft__sock_t *s) {
  pthread_mutex_lock(&p->lock);
  /* relaxed: set under this lock (weft__poll_each_open) */
  bool closing = atomic_load_explicit(&p->closing, memory_order_relaxed);
  /* relaxed: the lock orders it before the walk. A subtraction, not a store: a late caller's
   * reference on a stale handle to this descriptor stays counted. */
  if (!closing) atomic_fetch_sub_explicit(&s->refs, WEFT__SOCK_REFS_FREE, memory_order_relaxed);
  pthread_mutex_unlock(&p->lock);
  if (!closing) return 0;
  /* The caller keeps what it put in, as it keeps the fd: a listener's reserve too (review,
   * session 32: left here, weft__poller_destroy closed that number again, by then maybe one of
   * the application's files). relaxed: nothing else reads an unpublished descriptor. */
  atomic_store_explicit(&s->spare_fd, -1, memory_order_relaxed);
  weft__poll_unregister(p, s, false);
  return WEFT_EBADF;
}

void weft__poll_unregister(struct weft__poller *p, weft__sock_t *s, bool close_fd) {
  if (s->fd >= 0) p->ops->del(p, s->fd);
  /* Closed before the descriptor is reusable: a new registration of the same number then
   * finds this one gone from epoll (close also drops it from the interest list). */
  if (close_fd && s->fd >= 0) close(s->fd);
  /* release: an event still in flight for this registration carries the old seq */
  atomic_fetch_add_explicit(&s->seq, 1, memory_order_release);
  s->fd = -1;
  pthread_mutex_lock(&p->lock);
  s->next_free = p->free_list;
  p->free_list = s;
  pthread_mutex_unlock(&p->lock);
}

/* The edge's delivery: bumps the count and claims and wakes the task parked in the word.
 * Returns the task's resume entry if the caller is to schedule it (the task was parked, and
 * the caller is a worker of its runtime: the word is free again, and the task runs only once
 * it is scheduled), else 0 (nobody waited, the task's own commit schedules it, or the delivery
 * came from outside the runtime and scheduled it here). */
static uintptr_t dir_deliver(weft__poll_dir_t *d, bool hup) {
  /* relaxed: sequenced before the claim's seq_cst bump, so a waiter's read that sees that
   * bump sees the bit too; the bit goes in first, so a read that sees it unset comes before
   * the bump. See lib/io.c's dir_wait. */
  if (hup && !(atomic_load_explicit(&d->edges, memory_order_relaxed) & WEFT__EDGE_HUP))
    atomic_fetch_or_explicit(&d->edges, WEFT__EDGE_HUP, memory_order_relaxed);
  uintptr_t e = fdpark_deliver_claim(&d->park, &d->edges, WEFT__EDGE);
  if (!e) return 0;
  struct weft_task *t = (struct weft_task *)e;
  /* read first: a task its commit schedules may end at once */
  struct weft_runtime *rt = weft__task_rt(t);
  int won = fdpark_deliver_wake(e);
  weft__worker_t *self = weft__worker_self();
  if (self && self->rt == rt) {
    /* The word is free before the task can run (it runs only once the caller schedules it, or
     * its own commit does), so its next wait finds it EMPTY; the scheduling itself (a queue
     * push, maybe a sibling's futex wake) stays outside the claim. */
    fdpark_deliver_end(&d->park);
    return won == WK_WON_PARKED ? e | WEFT__ENTRY_RESUME : 0;
  }
  /* From outside the task's runtime (a plain thread's close): the inject push touches the
   * runtime, so it comes before the end, which destroy's withdraw waits for (lib/runtime.c). */
  if (won == WK_WON_PARKED) weft__schedule(rt, e | WEFT__ENTRY_RESUME);
  fdpark_deliver_end(&d->park);
  return 0;
}

int weft__poll_dir_notify(weft__poll_dir_t *d, bool hup) {
  uintptr_t e = dir_deliver(d, hup);
  if (!e) return 0;
  /* Parked and not yet scheduled: the task (and its runtime) cannot go away under us. */
  weft__schedule(weft__task_rt((struct weft_task *)(e & ~WEFT__ENTRY_TAGS)), e);
  return 1;
}

/* Starts the batch's cache misses together instead of one after another: with a thousand
 * connections the descriptors and the waiting tasks' descriptors are cold (the profile of the
 * echo server put most of the dispatch's time on loading the waiter, perf annotate). Two
 * passes: the descriptors' read directions, then the tasks parked in them (their park state,
 * which the wake CASes). A prefetch never faults; the word is read atomically. */
static void prefetch_batch(struct weft__poller *p, const weft__poll_event_t *ev, int n) {
  for (int i = 0; i < n; i++) {
    weft__sock_t *s = lookup(p, (uint32_t)ev[i].tag);
    if (s) __builtin_prefetch(&s->rd, 1); /* written: edges and the park word */
  }
  for (int i = 0; i < n; i++) {
    weft__sock_t *s = lookup(p, (uint32_t)ev[i].tag);
    /* relaxed: only an address to prefetch; the claim reads the word for real */
    uintptr_t park = s ? atomic_load_explicit(&s->rd.park, memory_order_relaxed) : FP_EMPTY;
    if (park != FP_EMPTY && park != FP_CLAIMED)
      __builtin_prefetch(&((struct weft_task *)park)->state, 1);
  }
}

/* The tasks a batch woke, in event order, onto w's yield queue (FIFO, stealable, checked every
 * 61 ticks): oldest connection first, as Go queues netpoll's goroutines at a run queue's tail.
 * Not the deque: its owner end is LIFO, and under load a busy worker's tick polls kept stacking
 * new connections on top of older ones, the oldest waiting for a thief (measured: p99 latency
 * under wrk). Until session 8 the batch went onto the deque (weft__schedule) and was then
 * moved (a take, with its fence, and a push per task); now the dispatch collects the entries
 * and pushes them here once (bench/README.md's "Echo, round 4"). As push_local: wake a sibling
 * on the empty → non-empty push, spill to the inject queue if the queue cannot grow. */
static void ready_fifo(weft__worker_t *w, const uintptr_t *batch, int n) {
  weft__stat_add(&w->n_yieldq_extra, n); /* not yields; before the pushes (see n_yieldq_extra) */
  int spilled = 0;
  bool idle = weft__workers_idle(w->rt); /* the last push announced, as push_local's */
  for (int i = 0; i < n; i++) {
    int r = weft__deque_push_as(&w->yieldq, batch[i], idle && i + 1 == n);
    if (r < 0) weft__inject_push(w->rt, batch[i]);
    else if (r > 0) weft__wake_one_if_needed(w->rt);
    spilled += r < 0;
  }
  if (spilled) weft__stat_add(&w->n_yieldq_extra, -spilled);
}

/* Hands the events to their descriptors and the tasks they woke to w's yield queue; returns how
 * many events were for live registrations. */
static int dispatch(struct weft__poller *p, weft__worker_t *w, const weft__poll_event_t *ev,
                    int n) {
  uintptr_t batch[2 * EVENTS_MAX]; /* a batch wakes at most a reader and a writer per event */
  int woken = 0;
  prefetch_batch(p, ev, n);
  int live = 0;
  for (int i = 0; i < n; i++) {
    weft__sock_t *s = lookup(p, (uint32_t)ev[i].tag);
    /* acquire: pairs with register's release (the flags of this registration are reset) */
    if (!s || atomic_load_explicit(&s->seq, memory_order_acquire) != (uint32_t)(ev[i].tag >> 32))
      continue; /* an earlier registration's event: the fd was closed meanwhile */
    uintptr_t e;
    if (ev[i].in && (e = dir_deliver(&s->rd, ev[i].hup))) batch[woken++] = e;
    if (ev[i].out && (e = dir_deliver(&s->wr, ev[i].hup))) batch[woken++] = e;
    live++;
  }
  if (woken) ready_fifo(w, batch, woken);
  return live;
}

static bool try_own(struct weft__poller *p, weft__worker_t *w, uintptr_t blocks) {
  uintptr_t none = 0;
  /* relaxed pre-check: busy workers skip a held lock without a locked instruction */
  if (atomic_load_explicit(&p->owner, memory_order_relaxed)) return false;
  /* seq_cst: the poller's store side of the break hand-off (design comment) */
  return atomic_compare_exchange_strong_explicit(&p->owner, &none, (uintptr_t)w | blocks,
                                                 memory_order_seq_cst, memory_order_relaxed);
}

/* Polls once (deadline 0: without blocking) and dispatches; the caller (worker w, in its
 * scheduler loop) owns the poller, and no longer does when this returns. */
static int poll_once(struct weft__poller *p, weft__worker_t *w, uint64_t deadline_ns) {
  weft__poll_event_t ev[EVENTS_MAX];
  bool broke = false;
  int n = p->ops->wait(p, deadline_ns, ev, EVENTS_MAX, &broke);
  if (broke) /* relaxed: a later break's write is seen by epoll (level-triggered), not by us */
    atomic_store_explicit(&p->break_pending, 0, memory_order_relaxed);
  /* Released before dispatching: the wake-ups dispatch causes may pick this very worker, and
   * it needs no break while it is not blocked. release: orders our reads of the table. */
  atomic_store_explicit(&p->owner, 0, memory_order_release);
  if (n <= 0) return 0;
  return dispatch(p, w, ev, n);
}

/* Takes the poller to block in it: true, or false if another idle worker blocks in it (sleep
 * on the futex then) or w was woken meanwhile (*woken). A busy worker's poll (tick) holds the
 * lock for one epoll_wait(0) only: w waits for it to end rather than sleep, because once that
 * poll is done nobody would wait in epoll, and events would wait for the busy worker's next
 * tick — or, if it then runs one long task, for that task (the review's lost-poller defect). */
#ifdef WEFT_FAULTS
#define TEST_HOLD_WANTED(p) atomic_load_explicit(&(p)->test_hold_wanted, memory_order_relaxed)
#else
#define TEST_HOLD_WANTED(p) false
#endif

static bool own_to_block(struct weft__poller *p, weft__worker_t *w, bool *woken) {
  struct weft_runtime *rt = w->rt;
  while (TEST_HOLD_WANTED(p) || !try_own(p, w, OWNER_BLOCKS)) {
    /* relaxed: which kind of holder; the CAS above and the checks below decide */
    uintptr_t holder = atomic_load_explicit(&p->owner, memory_order_relaxed);
    if (holder & OWNER_BLOCKS) return false;
    /* relaxed: a prompt exit; the seq_cst loads after a won CAS are the ones that count */
    if (atomic_load_explicit(&w->park_word, memory_order_relaxed) ||
        atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
      *woken = true;
      return false;
    }
    /* the holder is in a system call, or the test's hold is coming: let it go on */
    if (holder || TEST_HOLD_WANTED(p)) sched_yield();
  }
  return true;
}

static int poll_park_hook(weft__worker_t *w, uint64_t deadline_ns) {
  struct weft_runtime *rt = w->rt;
  struct weft__poller *p = poller_of(rt);
  bool woken = false;
  if (!p) return -1;
  if (!own_to_block(p, w, &woken)) return woken ? 0 : -1;
  /* seq_cst loads after the owner CAS: the loads of the lost-wake-up argument */
  if (atomic_load_explicit(&w->park_word, memory_order_seq_cst) ||
      atomic_load_explicit(&rt->stopping, memory_order_seq_cst)) {
    atomic_store_explicit(&p->owner, 0, memory_order_release); /* release: as poll_once */
    return 0;
  }
  return poll_once(p, w, deadline_ns == 0 ? 1 : deadline_ns);
}

static void poll_tick_hook(weft__worker_t *w) {
  struct weft__poller *p = poller_of(w->rt);
  if (p && try_own(p, w, 0)) poll_once(p, w, 0);
}

static void poll_break(struct weft__poller *p) {
  /* acq_rel: one write per blocked poll; the drain's store reopens it */
  if (!atomic_exchange_explicit(&p->break_pending, 1, memory_order_acq_rel)) p->ops->interrupt(p);
}

static void poll_woke_hook(struct weft_runtime *rt, weft__worker_t *w) {
  struct weft__poller *p = poller_of(rt);
  /* seq_cst: the waker's load after its seq_cst store of the park word (or of `stopping`) */
  if (!p) return;
  uintptr_t owner = atomic_load_explicit(&p->owner, memory_order_seq_cst);
  /* Only a blocking holder needs the break: a busy worker's poll returns by itself. */
  if ((owner & OWNER_BLOCKS) && (!w || owner == ((uintptr_t)w | OWNER_BLOCKS))) poll_break(p);
}

const weft__poll_hooks_t weft__epoll_hooks = {poll_park_hook, poll_tick_hook, poll_woke_hook};

#ifdef WEFT_FAULTS
/* Test-only (the weft_testing library): takes the poller's try-lock as a busy worker's
 * non-blocking poll holds it (breaking a worker blocked in it, until the lock is won), or
 * lets it go. test_io holds it while an idle worker comes to block in the poller. The wish
 * is announced first: a broken worker re-took the lock at once, and on a shared CPU the hold
 * lost to it for minutes (review, session 35: 79–91 s beside one busy loop). */
void weft__poll_test_hold(struct weft_runtime *rt, bool hold) {
  struct weft__poller *p = poller_of(rt);
  if (!hold) {
    atomic_store_explicit(&p->owner, 0, memory_order_release); /* release: as poll_once */
    atomic_store_explicit(&p->test_hold_wanted, false, memory_order_relaxed);
    return;
  }
  atomic_store_explicit(&p->test_hold_wanted, true, memory_order_relaxed);
  for (;;) {
    uintptr_t holder = 0;
    /* seq_cst: as try_own; (uintptr_t)p: any aligned non-NULL value, without OWNER_BLOCKS */
    if (atomic_compare_exchange_strong_explicit(&p->owner, &holder, (uintptr_t)p,
                                                memory_order_seq_cst, memory_order_relaxed))
      return;
    if (holder & OWNER_BLOCKS) poll_break(p);
    sched_yield();
  }
}
#endif

bool weft__poll_outside_enter(struct weft__poller *p) {
  return weft__shutdown_enter(&p->outside, &p->closing);
}

void weft__poll_outside_leave(struct weft__poller *p) { weft__shutdown_leave(&p->outside); }

/* Destroy's close walk. With no poller yet, it leaves WEFT__POLLER_CLOSED in its place: a plain
 * thread's first socket call that made a poller meanwhile would otherwise publish it after the
 * walk, uncounted and unclosed, and register a socket destroy closes or frees under it
 * (session 29's note; session 31). */
void weft__poll_each_open(struct weft_runtime *rt, void (*fn)(weft__sock_t *s)) {
  struct weft__poller *p = NULL;
  /* acquire on failure: a poller published meanwhile, its fields with it (as poller_of); on
   * success too, as C11 asks of a CAS whose failure order is acquire (the sentinel itself
   * carries no fields) */
  if (atomic_compare_exchange_strong_explicit(&rt->poller, &p, WEFT__POLLER_CLOSED,
                                              memory_order_acquire, memory_order_acquire)) {
    weft__pause(WEFT__PAUSE_CLOSE_WALKED);
    return;
  }
  /* Under the lock: no registration comes after it (desc_alloc), so `used` is final. Before the
   * walk: an outside caller counted after it backs out. fn gets every descriptor ever handed
   * out, closed ones too (their refs say so: WEFT__SOCK_REFS_FREE), and reads nothing an
   * outside caller may be writing (a socket's fd, its free-list link). */
  pthread_mutex_lock(&p->lock);
  weft__shutdown_close(&p->closing);
  uint32_t used = p->used;
  pthread_mutex_unlock(&p->lock);
  for (uint32_t i = 0; i < used; i++) fn(lookup(p, i));
  weft__probe_hit(WEFT__PROBE_CLOSE_WALKED);
  weft__pause(WEFT__PAUSE_CLOSE_WALKED);
}

bool weft__poll_outside_left(struct weft_runtime *rt, uint64_t bound_ns) {
  struct weft__poller *p = poller_of(rt);
  if (!p) return true;
  uint64_t deadline = weft_now_ns() + bound_ns;
  /* the walk's shutdown_close came before (lib/shutdown_impl.h's store-load pair) */
  while (!weft__shutdown_none_inside(&p->outside)) {
    if (weft_now_ns() >= deadline) return false;
    struct timespec ms = {0, 1000000}; /* a poll: a plain thread notices within its slice */
    nanosleep(&ms, NULL);
  }
  return true;
}

void weft__poller_destroy(struct weft_runtime *rt) {
  struct weft__poller *p = poller_of(rt);
  if (!p) return;
  for (uint32_t i = 0; i < p->used; i++) {
    weft__sock_t *s = lookup(p, i);
    if (s->fd >= 0) close(s->fd); /* a socket its owner never closed: destroy closes it */
    int spare = atomic_load_explicit(&s->spare_fd, memory_order_relaxed); /* relaxed: no one runs */
    if (spare >= 0) close(spare);
  }
  /* relaxed: the workers are joined; this thread is the only one left touching the table */
  for (int c = 0; c < CHUNKS; c++) free(atomic_load_explicit(&p->chunks[c], memory_order_relaxed));
  poller_free(p);
  atomic_store_explicit(&rt->poller, NULL, memory_order_relaxed); /* relaxed: destroy's thread */
}
