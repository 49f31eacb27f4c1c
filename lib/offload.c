/*
 * The blocking pool: asyncio.to_thread, Tokio's spawn_blocking. A task hands a call that would
 * block its worker (getaddrinfo, file I/O, a library without a non-blocking mode) to a pool
 * thread and awaits its future; the worker runs other tasks meanwhile.
 *
 * Shape. One pool per runtime, created on the first weft_offload: a FIFO queue of jobs under a
 * mutex, at most blocking_threads threads (started on demand when no thread is idle), each
 * leaving after blocking_keepalive idle (Tokio: 512 threads, 10 s; asyncio's default executor:
 * min(32, CPUs + 4) threads, kept for the loop's life). A job is a future plus the call; the
 * awaiter and the pool hold one reference each, the last one frees it.
 * Cancellation (and a deadline scope's expiry): a job still queued when its awaiter gives up is
 * abandoned — never run — and the awaiter returns WEFT_ECANCELED (WEFT_ETIMEDOUT) at once
 * (concurrent.futures' cancel of a pending future). A call already running cannot be stopped (a
 * thread cannot be interrupted safely), so the awaiter waits for its end, shielded, and returns
 * its result with 0; the cancel stays pending for its next suspension point (Trio's
 * to_thread.run_sync, not cancellable). The job's state word decides which, by one CAS on each
 * side: QUEUED → RUNNING by the pool thread, QUEUED → ABANDONED by the awaiter.
 * Rejected: returning at once and letting the call run on (asyncio's to_thread; until session
 * 20): arg is typically on the awaiter's stack or freed by it after the return, and the call
 * wrote into whatever task got that stack next (review, session 20: reproduced); dropping the
 * result of a call waited for (a result that owns memory would leak).
 * Destroy (runtime.c, step 6): the threads finish the calls they run and leave, and every
 * thread the pool had is joined (see pool_thread_t); jobs still queued are dropped; every job
 * left (its awaiter discarded) is freed from the pool's list.
 * Rejected: a thread per call (unbounded threads under load: the bound is the point), running
 * the call on a worker with the worker marked "blocked" and replaced (Go's handoff: needs a
 * sysmon and worker threads beyond nworkers; the pool gives the same with less machinery).
 */
#include "internal.h"
#include "waitq.h" /* weft__wq_state, weft__wq_undeliver */

#include <errno.h>
#include <string.h>
#include <time.h>

/* The job's state and references (lib/offload_impl.h, the protocol; model-checked by
 * tests/model/offload_model.cpp). States: OJ_QUEUED (not started: the awaiter may still
 * abandon it), OJ_RUNNING (a pool thread took it: it runs to its end, and its awaiter waits for
 * that), OJ_ABANDONED (its awaiter gave up first: the pool thread skips the call). */
#define OJ_WORD _Atomic int
#define OJ_CAS(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_strong_explicit((obj), &(expected), (desired), (mos), (mof))
#define OJ_FETCH_SUB(obj, v, mo) atomic_fetch_sub_explicit((obj), (v), (mo))
#define OJ_RLX memory_order_relaxed
#define OJ_ACQ_REL memory_order_acq_rel
#define OJ_FN(name) job_##name
#include "offload_impl.h"

typedef struct job {
  weft_fn fn;
  void *arg;
  void *result;
  weft_future_t *done;
  _Atomic int refs;  /* awaiter + pool */
  _Atomic int state; /* OJ_QUEUED, OJ_RUNNING or OJ_ABANDONED */
  struct weft__offload *pool;
  struct job *next;            /* queue */
  struct job *all_prev, *all_next; /* every job alive, for destroy */
} job_t;

/* A pool thread, joinable: one that left is joined by the next to leave, the next thread
 * start or destroy (whichever comes first), so that no pool thread still runs the library's
 * code (its return from pool_thread) once destroy has returned — a dlclose may unmap it then
 * (review, session 30: detached threads, counted out just before their last instructions,
 * crashed a dlopen/destroy/dlclose loop). Rejected: a fixed array of ids (blocking_threads is
 * the user's, possibly huge). */
typedef struct pool_thread_rec {
  pthread_t id;
  struct weft__offload *pool;
  struct pool_thread_rec *next; /* pool->left's link (one entry at most), under its lock */
} pool_thread_t;

struct weft__offload {
  pthread_mutex_t lock;
  pthread_cond_t work;   /* a job was queued, or the pool stops */
  pthread_cond_t gone;   /* a thread left */
  job_t *head, *tail;
  job_t *all;
  pool_thread_t *left; /* the thread that left last, not joined yet (or NULL) */
  int threads, idle, max;
  int queued;
  uint64_t keepalive_ns;
  bool stopping;
};

/* The pool this thread serves (NULL: not a pool thread), so that a destroy called from a call it
 * runs dies with a sentence instead of waiting for its own thread to leave (review, session
 * 20: `weft_offload(destroy_it, rt)` hung for good). */
static __thread struct weft__offload *pool_of_thread;

static void job_release(job_t *j) {
  if (!job_unref(&j->refs)) return;
  struct weft__offload *pool = j->pool;
  pthread_mutex_lock(&pool->lock);
  if (j->all_prev) j->all_prev->all_next = j->all_next;
  else pool->all = j->all_next;
  if (j->all_next) j->all_next->all_prev = j->all_prev;
  pthread_mutex_unlock(&pool->lock);
  weft_future_destroy(j->done);
  free(j);
}

static void run_job(job_t *j) {
  if (job_start(&j->state)) j->result = j->fn(j->arg);
  weft_future_resolve(j->done, NULL); /* publishes j->result (release) */
  job_release(j);
}

/* The keep-alive's end on CLOCK_MONOTONIC (the work condition's clock: a wall-clock step
 * must not end or stretch an idle thread's wait). */
static struct timespec abs_monotonic(uint64_t after_ns) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t ns = (uint64_t)ts.tv_nsec + after_ns % 1000000000u;
  ts.tv_sec += (time_t)(after_ns / 1000000000u + ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  return ts;
}

/* Joins the threads of a list taken from pool->left (outside the lock: each is at most a
 * return, and its thread-exit destructors, away from its end) and frees their records. */
static void threads_join(pool_thread_t *left) {
  while (left) {
    pool_thread_t *next = left->next;
    pthread_join(left->id, NULL);
    free(left);
    left = next;
  }
}

static void *pool_thread(void *arg) {
  pool_thread_t *self = arg;
  struct weft__offload *pool = self->pool;
  pool_of_thread = pool;
  pthread_mutex_lock(&pool->lock);
  for (;;) {
    bool timed_out = false;
    while (!pool->head && !pool->stopping && !timed_out) {
      pool->idle++;
      struct timespec until = abs_monotonic(pool->keepalive_ns);
      timed_out = pthread_cond_timedwait(&pool->work, &pool->lock, &until) == ETIMEDOUT;
      pool->idle--;
    }
    if (pool->stopping || !pool->head) break; /* stopping, or idle past the keep-alive */
    job_t *j = pool->head;
    pool->head = j->next;
    pool->queued--;
    if (!pool->head) pool->tail = NULL;
    pthread_mutex_unlock(&pool->lock);
    run_job(j);
    pthread_mutex_lock(&pool->lock);
  }
  pool->threads--;
  /* We join the thread that left before us, and are joined by the next to leave, the next
   * thread start or destroy: at most one thread that left is unjoined (its stack mapped). */
  pool_thread_t *before = pool->left;
  self->next = NULL;
  pool->left = self;
  pthread_cond_broadcast(&pool->gone);
  pthread_mutex_unlock(&pool->lock); /* our last touch of the pool */
  threads_join(before);
  weft__pause(WEFT__PAUSE_POOL_THREAD_LEFT); /* tests: destroy must wait for what follows */
  return NULL;
}

static struct weft__offload *pool_make(const struct weft_runtime *rt) {
  struct weft__offload *pool = calloc(1, sizeof *pool);
  if (!pool) return NULL;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_condattr_t monotonic;
  pthread_condattr_init(&monotonic);
  pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
  pthread_cond_init(&pool->work, &monotonic);
  pthread_condattr_destroy(&monotonic);
  pthread_cond_init(&pool->gone, NULL);
  pool->max = rt->blocking_threads;
  pool->keepalive_ns = rt->blocking_keepalive_ns;
  return pool;
}

/* A pool with no thread and no job. */
static void pool_free(struct weft__offload *pool) {
  pthread_cond_destroy(&pool->work);
  pthread_cond_destroy(&pool->gone);
  pthread_mutex_destroy(&pool->lock);
  free(pool);
}

/* The runtime's pool, made at the first weft_offload and published with a compare-and-swap
 * (the loser of a race frees its own); no process-wide lock, for the reasons lib/poll.c's
 * weft__poller_get gives (fork). */
static struct weft__offload *pool_get(struct weft_runtime *rt) {
  /* acquire: pairs with the publishing CAS below; the pool's fields come with it */
  struct weft__offload *pool = atomic_load_explicit(&rt->offload, memory_order_acquire);
  if (pool) return pool;
  struct weft__offload *made = pool_make(rt);
  if (!made) /* acquire: as above (another thread's may be there by now all the same) */
    return atomic_load_explicit(&rt->offload, memory_order_acquire);
  weft__pause(WEFT__PAUSE_OFFLOAD_MADE); /* tests: a fork comes here */
  /* release: publishes the made pool to the acquire above; acquire on failure: the winner's */
  if (atomic_compare_exchange_strong_explicit(&rt->offload, &pool, made, memory_order_acq_rel,
                                              memory_order_acquire))
    return made;
  pool_free(made);
  return pool;
}

/* Starts a pool thread; the caller holds the pool's lock. 0, or WEFT_EAGAIN. */
static int thread_start(struct weft__offload *pool) {
  pool_thread_t *rec = malloc(sizeof *rec);
  if (!rec) return WEFT_EAGAIN;
  rec->pool = pool;
  if (pthread_create(&rec->id, NULL, pool_thread, rec) != 0) {
    free(rec);
    return WEFT_EAGAIN;
  }
  pool->threads++;
  return 0;
}

/* Queues j and makes sure a thread will take it; WEFT_EAGAIN if no thread exists or can. */
static int pool_submit(struct weft__offload *pool, job_t *j) {
  int err = 0;
  pool_thread_t *reap = NULL;
  pthread_mutex_lock(&pool->lock);
  j->next = NULL;
  if (pool->tail) pool->tail->next = j;
  else pool->head = j;
  pool->tail = j;
  pool->queued++;
  j->all_prev = NULL;
  j->all_next = pool->all;
  if (pool->all) pool->all->all_prev = j;
  pool->all = j;
  if (pool->idle > 0) pthread_cond_signal(&pool->work);
  if (pool->queued > pool->idle && pool->threads < pool->max) {
    /* Threads that left are joined before one starts: at most `max` exist, joined or not. */
    reap = pool->left;
    pool->left = NULL;
    if (thread_start(pool) != 0 && pool->threads == 0)
      err = WEFT_EAGAIN; /* no thread would ever take it */
  }
  if (err) { /* no thread runs, so the queue held nothing before j (threads leave only idle) */
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    pool->all = j->all_next;
    if (pool->all) pool->all->all_prev = NULL;
  }
  pthread_mutex_unlock(&pool->lock);
  threads_join(reap);
  return err;
}

/* The awaiter gave up on a call a pool thread has started: it may write into arg (on our stack,
 * or freed once we return) until it ends, so we wait for that, cancellation held back and
 * deadline scopes ignored. 0: the result is there. */
static int await_started_call(job_t *j) {
  weft__future_await_to_end(j->done);
  return 0;
}

int weft_offload(weft_fn fn, void *arg, void **result) {
  if (!fn) return WEFT_EINVAL;
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), "weft_offload");
  if (!self) { /* a plain thread may block: call it here */
    void *r = fn(arg);
    if (result) *result = r;
    return 0;
  }
  struct weft__offload *pool = pool_get(weft__task_rt(self));
  job_t *j = pool ? malloc(sizeof *j) : NULL;
  if (!j) return WEFT_ENOMEM;
  if (weft_future_create(&j->done) != 0) {
    free(j);
    return WEFT_ENOMEM;
  }
  j->fn = fn;
  j->arg = arg;
  j->result = NULL;
  j->pool = pool;
  atomic_init(&j->refs, 2);
  atomic_init(&j->state, OJ_QUEUED);
  int err = pool_submit(pool, j);
  if (err) {
    weft_future_destroy(j->done);
    free(j);
    return err;
  }
  uint32_t before = weft__wq_state(self);
  err = weft__future_await_cancellable(j->done, NULL); /* ECANCELED: we give the job up */
  if (err && !job_abandon(&j->state)) {
    err = await_started_call(j);
    /* The call ran to its end and answers 0: the cancel stays pending, undelivered (review,
     * session 32: the task then ended WEFT_ECANCELED though no call had answered it) */
    if (err == 0) weft__wq_undeliver(self, before);
  }
  if (!err && result) *result = j->result; /* the resolve's release, acquired by the await */
  job_release(j);
  /* The job given up or ended: past destroy's shutdown a cancelled caller parks here (a loop
   * of offloads ignoring WEFT_ECANCELED kept destroy waiting while the pool was busy) */
  return (int)weft__answer(err);
}

bool weft__offload_is_pool_thread(struct weft_runtime *rt) {
  /* relaxed: if this thread is rt's pool's, it read the pool's address before it started */
  struct weft__offload *pool = atomic_load_explicit(&rt->offload, memory_order_relaxed);
  return pool && pool == pool_of_thread;
}

void weft__offload_destroy(struct weft_runtime *rt) {
  /* acquire: the pool's creation, on whichever worker made it, before we tear it down */
  struct weft__offload *pool = atomic_load_explicit(&rt->offload, memory_order_acquire);
  if (!pool) return;
  pthread_mutex_lock(&pool->lock);
  pool->stopping = true;
  pthread_cond_broadcast(&pool->work);
  while (pool->threads > 0) pthread_cond_wait(&pool->gone, &pool->lock);
  pool_thread_t *threads = pool->left; /* every thread it had: each recorded itself leaving */
  pool->left = NULL;
  job_t *left = pool->all; /* queued, or finished with a discarded awaiter */
  pool->all = NULL;
  pthread_mutex_unlock(&pool->lock);
  threads_join(threads);
  while (left) {
    job_t *next = left->all_next;
    weft_future_destroy(left->done);
    free(left);
    left = next;
  }
  pool_free(pool);
  atomic_store_explicit(&rt->offload, NULL, memory_order_relaxed); /* relaxed: destroy's thread */
}
