/* Synchronisation primitives and channels (issue 11): the matrix of every blocking operation
 * x {its deadline passes, its task is cancelled, its channel is closed}, each checked to have
 * had no effect; the same waits from plain threads; then mutex, semaphore, event, condition
 * and wait group on their own (counts exact under contention at 2, 4 and 8 workers with
 * foreign threads, bounds held, wake-ups not lost), and the task dump's wait reasons. */
#include "support.h"
#include "waits.h"
#include "probes.h"

#include "../lib/internal.h" /* test-only probes (weft__probe_count) */

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>

#define MS (1000000ull)

/* ---- The matrix ---- */

typedef enum {
  OP_SEND_FULL,       /* a send on a full buffered channel */
  OP_SEND_RENDEZVOUS, /* a send on a capacity-0 channel with no receiver */
  OP_RECV,            /* a recv on an empty channel */
  OP_SELECT,          /* a select of a recv on the empty channel and a send on the full one */
  OP_QUEUE_PUT,       /* a put on a full queue */
  OP_QUEUE_GET,       /* a get on an empty queue */
  OP_QUEUE_JOIN,      /* a join on a queue with an unfinished item */
  OP_LOCK,            /* a lock of a held mutex */
  OP_SEM,             /* an acquire of a semaphore with no permit */
  OP_EVENT,           /* a wait on an unset event */
  OP_COND,            /* a wait on a condition nobody notifies */
  OP_WAITGROUP,       /* a wait on a wait group at 1 */
  OPS
} op_t;

static const char *op_name[OPS] = {"send (full)", "send (rendezvous)", "recv", "select",
                                   "queue put", "queue get", "queue join", "mutex lock",
                                   "semaphore acquire", "event wait", "condition wait",
                                   "wait group wait"};

typedef struct {
  weft_chan_t *full, *rendezvous, *empty;
  weft_queue_t *qfull, *qempty;
  weft_mutex_t *held, *cond_mutex;
  weft_sem_t *sem;
  weft_event_t *event;
  weft_cond_t *cond;
  weft_waitgroup_t *wg;
} prims_t;

static void prims_create(prims_t *p) {
  OK(weft_chan_create(&p->full, 1));
  OK(weft_chan_try_send(p->full, IPTR(11)));
  OK(weft_chan_create(&p->rendezvous, 0));
  OK(weft_chan_create(&p->empty, 4));
  OK(weft_queue_create(&p->qfull, 1));
  OK(weft_queue_try_put(p->qfull, IPTR(12)));
  OK(weft_queue_create(&p->qempty, 1));
  OK(weft_mutex_create(&p->held));
  OK(weft_mutex_trylock(p->held));
  OK(weft_mutex_create(&p->cond_mutex));
  OK(weft_sem_create(&p->sem, 0, 1));
  OK(weft_event_create(&p->event));
  OK(weft_cond_create(&p->cond));
  OK(weft_waitgroup_create(&p->wg));
  OK(weft_waitgroup_add(p->wg, 1));
}

/* Checks that the failed operation left everything as it was, then frees it all. */
static void prims_check_and_destroy(prims_t *p, op_t op) {
  void *v = NULL;
  cr_assert_eq(weft_chan_try_recv(p->full, &v), 0, "%s: the full channel lost its value", op_name[op]);
  cr_assert_eq(PINT(v), 11, "%s: the full channel's value changed", op_name[op]);
  cr_assert_eq(weft_chan_try_recv(p->full, &v), WEFT_EAGAIN, "%s: a value was delivered", op_name[op]);
  cr_assert_eq(weft_chan_try_recv(p->rendezvous, &v), WEFT_EAGAIN, "%s: half-delivered", op_name[op]);
  size_t len = 9;
  OK(weft_chan_len(p->empty, &len));
  cr_assert_eq(len, 0, "%s: a value appeared in the empty channel", op_name[op]);
  cr_assert_eq(weft_queue_try_get(p->qfull, &v), 0);
  cr_assert_eq(PINT(v), 12);
  cr_assert_eq(weft_queue_try_get(p->qfull, &v), WEFT_EAGAIN, "%s: a put went through", op_name[op]);
  OK(weft_queue_task_done(p->qfull));
  OK(weft_queue_join(p->qfull, 0)); /* nothing unfinished: a failed put did not count */
  cr_assert_eq(weft_mutex_trylock(p->held), WEFT_EAGAIN, "%s: the held mutex came free", op_name[op]);
  OK(weft_mutex_unlock(p->held));
  OK(weft_mutex_trylock(p->held)); /* the failed lock left no one queued to hand it to */
  OK(weft_mutex_unlock(p->held));
  OK(weft_mutex_trylock(p->cond_mutex)); /* the condition's waiter unlocked it on its way out */
  OK(weft_mutex_unlock(p->cond_mutex));
  cr_assert_eq(weft_sem_try_acquire(p->sem), WEFT_EAGAIN, "%s: a permit appeared", op_name[op]);
  OK(weft_sem_release(p->sem));
  OK(weft_sem_try_acquire(p->sem)); /* a failed acquire took no permit from the release */
  cr_assert_eq(weft_event_is_set(p->event), 0);
  OK(weft_waitgroup_done(p->wg));
  weft_chan_destroy(p->full);
  weft_chan_destroy(p->rendezvous);
  weft_chan_destroy(p->empty);
  weft_queue_destroy(p->qfull);
  weft_queue_destroy(p->qempty);
  weft_mutex_destroy(p->held);
  weft_mutex_destroy(p->cond_mutex);
  weft_sem_destroy(p->sem);
  weft_event_destroy(p->event);
  weft_cond_destroy(p->cond);
  weft_waitgroup_destroy(p->wg);
}

typedef struct {
  prims_t *p;
  op_t op;
  uint64_t deadline_ns;
  int err;
  int cond_relocked; /* OP_COND: the mutex was held again when wait returned */
} cell_t;

static int blocking_op(cell_t *c) {
  prims_t *p = c->p;
  void *v = NULL;
  switch (c->op) {
  case OP_SEND_FULL: return weft_chan_send(p->full, IPTR(99), c->deadline_ns);
  case OP_SEND_RENDEZVOUS: return weft_chan_send(p->rendezvous, IPTR(99), c->deadline_ns);
  case OP_RECV: return weft_chan_recv(p->empty, &v, c->deadline_ns);
  case OP_SELECT: {
    weft_chan_op_t ops[2] = {{p->empty, WEFT_CHAN_RECV, NULL}, {p->full, WEFT_CHAN_SEND, IPTR(99)}};
    size_t index = 7;
    int err = weft_chan_select(ops, 2, c->deadline_ns, &index);
    if (err == WEFT_ECLOSED) /* only the receive case's channel is ever closed (close_for) */
      cr_assert_eq(index, 0, "select saw a close on case %zu", index);
    return err;
  }
  case OP_QUEUE_PUT: return weft_queue_put(p->qfull, IPTR(99), c->deadline_ns);
  case OP_QUEUE_GET: return weft_queue_get(p->qempty, &v, c->deadline_ns);
  case OP_QUEUE_JOIN: return weft_queue_join(p->qfull, c->deadline_ns);
  case OP_LOCK: return weft_mutex_lock(p->held, c->deadline_ns);
  case OP_SEM: return weft_sem_acquire(p->sem, c->deadline_ns);
  case OP_EVENT: return weft_event_wait(p->event, c->deadline_ns);
  case OP_COND: {
    OK(weft_mutex_lock(p->cond_mutex, UINT64_MAX));
    int err = weft_cond_wait(p->cond, p->cond_mutex, c->deadline_ns);
    c->cond_relocked = weft_mutex_trylock(p->cond_mutex) == WEFT_EAGAIN;
    OK(weft_mutex_unlock(p->cond_mutex));
    return err;
  }
  case OP_WAITGROUP: return weft_waitgroup_wait(p->wg, c->deadline_ns);
  default: cr_assert_fail("no such op");
  }
  return 0;
}

static void *blocker(void *arg) {
  cell_t *c = arg;
  weft_task_set_name(weft_current(), "blocker");
  c->err = blocking_op(c);
  return NULL;
}

static void *thread_blocker(void *arg) {
  cell_t *c = arg;
  c->err = blocking_op(c);
  return NULL;
}

static bool closes(op_t op) {
  return op <= OP_QUEUE_GET; /* the channel and queue operations */
}

static void close_for(prims_t *p, op_t op) {
  switch (op) {
  case OP_SEND_FULL: OK(weft_chan_close(p->full)); break;
  case OP_SEND_RENDEZVOUS: OK(weft_chan_close(p->rendezvous)); break;
  case OP_RECV: OK(weft_chan_close(p->empty)); break;
  case OP_SELECT: OK(weft_chan_close(p->empty)); break;
  case OP_QUEUE_PUT: OK(weft_queue_close(p->qfull)); break;
  case OP_QUEUE_GET: OK(weft_queue_close(p->qempty)); break;
  default: break;
  }
}

static const char *reason(op_t op) {
  return op <= OP_QUEUE_GET ? "waiting on a channel" : "waiting for a lock";
}

typedef enum { BY_DEADLINE, BY_CANCEL, BY_CLOSE, BY_THREAD_DEADLINE } how_t;

static void run_cell(weft_runtime_t *rt, op_t op, how_t how) {
  prims_t p;
  prims_create(&p);
  cell_t c = {&p, op, UINT64_MAX, 1, 0};
  if (how == BY_DEADLINE || how == BY_THREAD_DEADLINE) c.deadline_ns = weft_now_ns() + 20 * MS;
  if (how == BY_THREAD_DEADLINE) {
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, thread_blocker, &c), 0);
    pthread_join(th, NULL);
  } else {
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, blocker, &c));
    if (how != BY_DEADLINE) await_blocked(rt, "blocker", op == OP_COND ? "waiting for a lock" : reason(op));
    if (how == BY_CANCEL) OK(weft_cancel(t));
    if (how == BY_CLOSE) close_for(&p, op);
    weft_join(t, NULL);
  }
  int want = how == BY_CANCEL ? WEFT_ECANCELED : how == BY_CLOSE ? WEFT_ECLOSED : WEFT_ETIMEDOUT;
  cr_assert_eq(c.err, want, "%s, how %d: got %s, want %s", op_name[op], how, weft_strerror(c.err),
               weft_strerror(want));
  if (op == OP_COND) cr_assert(c.cond_relocked, "condition wait returned without its mutex");
  if (how == BY_CLOSE) { /* the channels are closed: check what still applies */
    void *v;
    if (op == OP_SEND_FULL) {
      cr_assert_eq(weft_chan_try_recv(p.full, &v), 0); /* receivers drain what is buffered */
      cr_assert_eq(PINT(v), 11);
      cr_assert_eq(weft_chan_try_recv(p.full, &v), WEFT_ECLOSED);
      OK(weft_chan_close(p.full) == WEFT_ECLOSED ? 0 : -1);
      /* reopen a fresh one for the common check */
      weft_chan_destroy(p.full);
      OK(weft_chan_create(&p.full, 1));
      OK(weft_chan_try_send(p.full, IPTR(11)));
    }
    if (op == OP_SEND_RENDEZVOUS) {
      cr_assert_eq(weft_chan_try_recv(p.rendezvous, &v), WEFT_ECLOSED); /* nothing delivered */
      weft_chan_destroy(p.rendezvous);
      OK(weft_chan_create(&p.rendezvous, 0));
    }
    if (op == OP_QUEUE_PUT) {
      weft_queue_destroy(p.qfull);
      OK(weft_queue_create(&p.qfull, 1));
      OK(weft_queue_try_put(p.qfull, IPTR(12)));
    }
  }
  prims_check_and_destroy(&p, op);
}

static void run_matrix(how_t how) {
  weft_runtime_t *rt = test_runtime(2);
  for (op_t op = 0; op < OPS; op++)
    if (how != BY_CLOSE || closes(op)) run_cell(rt, op, how);
  OK(weft_runtime_destroy(rt));
}

Test(matrix, every_wait_times_out_at_its_deadline_with_no_effect) { run_matrix(BY_DEADLINE); }
Test(matrix, every_wait_ends_cancelled_with_no_effect) { run_matrix(BY_CANCEL); }
Test(matrix, every_channel_wait_ends_closed_when_its_channel_closes) { run_matrix(BY_CLOSE); }
Test(matrix, every_wait_times_out_on_a_plain_thread) { run_matrix(BY_THREAD_DEADLINE); }

/* ---- Mutex ---- */

typedef struct {
  weft_mutex_t *m;
  long per;
  long counter; /* guarded by m */
  atomic_long inside;
  atomic_int overlap;
} counter_t;

static void count_with_lock(counter_t *c) {
  for (long i = 0; i < c->per; i++) {
    OK(weft_mutex_lock(c->m, UINT64_MAX));
    if (atomic_fetch_add(&c->inside, 1) != 0) atomic_store(&c->overlap, 1);
    c->counter++;
    atomic_fetch_sub(&c->inside, 1);
    OK(weft_mutex_unlock(c->m));
    if (i % 64 == 0 && weft_current()) weft_yield();
  }
}

static void *count_task(void *arg) {
  count_with_lock(arg);
  return NULL;
}

static void *count_thread(void *arg) {
  count_with_lock(arg);
  return NULL;
}

static void mutex_contended(int workers) {
  weft_runtime_t *rt = test_runtime(workers);
  counter_t c = {.per = SCALE(20000, 2000)};
  OK(weft_mutex_create(&c.m));
  enum { TASKS = 8, THREADS = 2 };
  weft_task_t *t[TASKS];
  pthread_t th[THREADS];
  for (int i = 0; i < TASKS; i++) OK(weft_runtime_spawn(rt, &t[i], count_task, &c));
  for (int i = 0; i < THREADS; i++) cr_assert_eq(pthread_create(&th[i], NULL, count_thread, &c), 0);
  for (int i = 0; i < TASKS; i++) OK(weft_join(t[i], NULL));
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  cr_assert_eq(c.counter, (TASKS + THREADS) * c.per, "lost increments at %d workers", workers);
  cr_assert_eq(atomic_load(&c.overlap), 0, "two holders at once");
  weft_mutex_destroy(c.m);
  OK(weft_runtime_destroy(rt));
}

Test(mutex, counts_exactly_under_contention_at_2_workers) { mutex_contended(2); }
Test(mutex, counts_exactly_under_contention_at_4_workers) { mutex_contended(4); }
Test(mutex, counts_exactly_under_contention_at_8_workers) { mutex_contended(8); }

Test(mutex, trylock_and_bad_arguments) {
  weft_mutex_t *m;
  cr_assert_eq(weft_mutex_create(NULL), WEFT_EINVAL);
  OK(weft_mutex_create(&m));
  OK(weft_mutex_trylock(m));
  cr_assert_eq(weft_mutex_trylock(m), WEFT_EAGAIN);
  cr_assert_eq(weft_mutex_lock(m, weft_now_ns()), WEFT_ETIMEDOUT); /* a thread, deadline passed */
  OK(weft_mutex_unlock(m));
  cr_assert_eq(weft_mutex_lock(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_mutex_unlock(NULL), WEFT_EINVAL);
  weft_mutex_destroy(m);
  weft_mutex_destroy(NULL);
}

Test(mutex, unlocking_an_unlocked_mutex_aborts, .signal = SIGABRT) {
  weft_mutex_t *m;
  OK(weft_mutex_create(&m));
  weft_mutex_unlock(m);
}

/* Queued waiters all get the lock in turn once it is released: no lost wake-up. */
typedef struct {
  weft_mutex_t *m;
  atomic_int got;
} waiters_t;

static void *lock_once(void *arg) {
  waiters_t *w = arg;
  weft_task_set_name(weft_current(), "locker");
  OK(weft_mutex_lock(w->m, UINT64_MAX));
  atomic_fetch_add(&w->got, 1);
  OK(weft_mutex_unlock(w->m));
  return NULL;
}

Test(mutex, every_queued_waiter_gets_the_lock_after_release) {
  weft_runtime_t *rt = test_runtime(2);
  waiters_t w = {0};
  OK(weft_mutex_create(&w.m));
  OK(weft_mutex_trylock(w.m));
  enum { N = 16 };
  weft_task_t *t[N];
  for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, &t[i], lock_once, &w));
  await_blocked(rt, "locker", "waiting for a lock");
  cr_assert_eq(atomic_load(&w.got), 0);
  OK(weft_mutex_unlock(w.m));
  for (int i = 0; i < N; i++) OK(weft_join(t[i], NULL));
  cr_assert_eq(atomic_load(&w.got), N);
  weft_mutex_destroy(w.m);
  OK(weft_runtime_destroy(rt));
}

/* The last waiters leave a mutex unlocked and unawaited, so that it can be destroyed: a woken
 * waiter (A, a task) that gives up after the waiter behind it (B, a plain thread) timed out of
 * the queue clears the awaited mark (review, session 19: it was left set, and destroy aborted
 * on a mutex nobody held or awaited). One worker, held by a gate task, keeps A from running
 * between the unlock that wakes it and the cancel that makes it give up. */
typedef struct {
  weft_mutex_t *m;
  atomic_int gate_running, gate_open;
  int a_result, b_result;
} give_up_t;

static void *lock_until_cancelled(void *arg) {
  give_up_t *g = arg;
  g->a_result = weft_mutex_lock(g->m, UINT64_MAX);
  if (g->a_result == 0) OK(weft_mutex_unlock(g->m));
  return NULL;
}

static void *gate(void *arg) {
  give_up_t *g = arg;
  atomic_store(&g->gate_running, 1);
  while (!atomic_load(&g->gate_open)) sched_yield(); /* the one worker stays here, not in weft */
  return NULL;
}

static void *lock_with_deadline(void *arg) {
  give_up_t *g = arg;
  g->b_result = weft_mutex_lock(g->m, weft_now_ns() + 1000 * MS);
  return NULL;
}

Test(mutex, a_mutex_whose_last_waiters_timed_out_and_gave_up_can_be_destroyed) {
  weft_runtime_t *rt = test_runtime(1);
  give_up_t g = {0};
  OK(weft_mutex_create(&g.m));
  OK(weft_mutex_trylock(g.m));
  long queued = weft__probe_count(WEFT__PROBE_MUTEX_QUEUED);
  weft_task_t *a, *gt;
  OK(weft_runtime_spawn(rt, &a, lock_until_cancelled, &g));
  await_probe(WEFT__PROBE_MUTEX_QUEUED, queued + 1); /* A queued */
  pthread_t b;
  cr_assert_eq(pthread_create(&b, NULL, lock_with_deadline, &g), 0);
  await_probe(WEFT__PROBE_MUTEX_QUEUED, queued + 2); /* B queued behind A */
  OK(weft_runtime_spawn(rt, &gt, gate, &g));
  while (!atomic_load(&g.gate_running)) sched_yield();
  OK(weft_mutex_unlock(g.m)); /* wakes A to compete; B stays queued, so the mark stays */
  cr_assert_eq(pthread_join(b, NULL), 0);
  cr_assert_eq(g.b_result, WEFT_ETIMEDOUT); /* B left the queue on its own: empty now */
  OK(weft_cancel(a));
  atomic_store(&g.gate_open, 1);
  cr_assert_eq(weft_join(a, NULL), WEFT_ECANCELED); /* a cancelled task ends cancelled */
  cr_assert_eq(g.a_result, WEFT_ECANCELED, "A did not give up: the path was not taken");
  OK(weft_join(gt, NULL));
  weft_mutex_destroy(g.m); /* aborted here before the fix (a lock and unlock first would have
                              repaired the mark: the unlock's slow path clears it) */
  OK(weft_runtime_destroy(rt));
}

/* Starvation: a task that waits while others hammer the lock still gets it, and the lock is
 * handed to a waiter that starved (WEFT_MUTEX_STARVE_NS) while the hammering goes on. The
 * victim locks until the first hand-off, with a bound on failure only (review A, session 36:
 * the test counted only the victim's 100 locks, which it got with the hand-off turned off). */
typedef struct {
  weft_mutex_t *m;
  atomic_int stop;
  atomic_int victim_done;
  long handed_before;
  long victim_locks;
} starve_t;

static void *hammer(void *arg) {
  starve_t *s = arg;
  while (!atomic_load(&s->stop)) {
    OK(weft_mutex_lock(s->m, UINT64_MAX));
    for (volatile int i = 0; i < 200; i++) {}
    OK(weft_mutex_unlock(s->m));
  }
  return NULL;
}

static void *victim(void *arg) {
  starve_t *s = arg;
  uint64_t until = weft_now_ns() + 30000000000ull; /* a bound on failure, not a wait */
  while (s->victim_locks < 100 ||
         weft__probe_count(WEFT__PROBE_MUTEX_HANDED) == s->handed_before) {
    if (weft_now_ns() > until) break;
    OK(weft_mutex_lock(s->m, UINT64_MAX));
    s->victim_locks++;
    OK(weft_mutex_unlock(s->m));
  }
  atomic_store(&s->victim_done, 1);
  atomic_store(&s->stop, 1); /* the hammers run until the victim is through */
  return NULL;
}

Test(mutex, a_waiter_is_not_starved_by_threads_hammering_the_lock) {
  weft_runtime_t *rt = test_runtime(1);
  starve_t s = {0};
  OK(weft_mutex_create(&s.m));
  s.handed_before = weft__probe_count(WEFT__PROBE_MUTEX_HANDED);
  pthread_t th[3];
  for (int i = 0; i < 3; i++) cr_assert_eq(pthread_create(&th[i], NULL, hammer, &s), 0);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, victim, &s));
  OK(weft_join(t, NULL));
  for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
  cr_assert_eq(atomic_load(&s.victim_done), 1);
  cr_assert_geq(s.victim_locks, 100);
  cr_assert_gt(weft__probe_count(WEFT__PROBE_MUTEX_HANDED), s.handed_before,
               "no starving waiter was handed the lock in 30 s of hammering");
  weft_mutex_destroy(s.m);
  OK(weft_runtime_destroy(rt));
}

/* ---- Semaphore ---- */

typedef struct {
  weft_sem_t *sem;
  atomic_int inside, most;
} bound_t;

static void *bounded_worker(void *arg) {
  bound_t *b = arg;
  for (int i = 0; i < 200; i++) {
    OK(weft_sem_acquire(b->sem, UINT64_MAX));
    int now = atomic_fetch_add(&b->inside, 1) + 1;
    int most = atomic_load(&b->most);
    while (now > most && !atomic_compare_exchange_weak(&b->most, &most, now)) {}
    weft_yield();
    atomic_fetch_sub(&b->inside, 1);
    OK(weft_sem_release(b->sem));
  }
  return NULL;
}

Test(sem, bounds_concurrency_to_its_permits) {
  weft_runtime_t *rt = test_runtime(4);
  bound_t b = {0};
  OK(weft_sem_create(&b.sem, 3, 3));
  enum { N = 12 };
  weft_task_t *t[N];
  for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, &t[i], bounded_worker, &b));
  for (int i = 0; i < N; i++) OK(weft_join(t[i], NULL));
  cr_assert(atomic_load(&b.most) <= 3 && atomic_load(&b.most) >= 1, "most %d", atomic_load(&b.most));
  size_t v;
  OK(weft_sem_value(b.sem, &v));
  cr_assert_eq(v, 3);
  weft_sem_destroy(b.sem);
  OK(weft_runtime_destroy(rt));
}

Test(sem, bounded_release_beyond_max_is_erange) {
  weft_sem_t *s;
  cr_assert_eq(weft_sem_create(&s, 2, 1), WEFT_EINVAL);
  OK(weft_sem_create(&s, 1, 1));
  cr_assert_eq(weft_sem_release(s), WEFT_ERANGE);
  OK(weft_sem_try_acquire(s));
  cr_assert_eq(weft_sem_try_acquire(s), WEFT_EAGAIN);
  OK(weft_sem_release(s));
  weft_sem_destroy(s);
  OK(weft_sem_create(&s, 0, 0)); /* unbounded */
  for (int i = 0; i < 5; i++) OK(weft_sem_release(s));
  size_t v;
  OK(weft_sem_value(s, &v));
  cr_assert_eq(v, 5);
  weft_sem_destroy(s);
}

/* ---- Event ---- */

typedef struct {
  weft_event_t *e;
  atomic_int woke;
} ev_t;

static void *ev_waiter(void *arg) {
  ev_t *e = arg;
  weft_task_set_name(weft_current(), "ev-waiter");
  OK(weft_event_wait(e->e, UINT64_MAX));
  atomic_fetch_add(&e->woke, 1);
  return NULL;
}

static void *ev_thread(void *arg) {
  ev_t *e = arg;
  OK(weft_event_wait(e->e, UINT64_MAX));
  atomic_fetch_add(&e->woke, 1);
  return NULL;
}

Test(event, set_wakes_every_waiter_task_and_thread_and_clear_rearms) {
  weft_runtime_t *rt = test_runtime(2);
  ev_t e = {0};
  OK(weft_event_create(&e.e));
  enum { N = 8 };
  weft_task_t *t[N];
  pthread_t th;
  for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, &t[i], ev_waiter, &e));
  cr_assert_eq(pthread_create(&th, NULL, ev_thread, &e), 0);
  await_blocked(rt, "ev-waiter", "waiting for a lock");
  cr_assert_eq(atomic_load(&e.woke), 0);
  OK(weft_event_set(e.e));
  for (int i = 0; i < N; i++) OK(weft_join(t[i], NULL));
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&e.woke), N + 1);
  cr_assert_eq(weft_event_is_set(e.e), 1);
  OK(weft_event_wait(e.e, 0)); /* set: no wait, even with a passed deadline */
  OK(weft_event_clear(e.e));
  cr_assert_eq(weft_event_is_set(e.e), 0);
  cr_assert_eq(weft_event_wait(e.e, weft_now_ns() + MS), WEFT_ETIMEDOUT);
  weft_event_destroy(e.e);
  OK(weft_runtime_destroy(rt));
}

/* ---- Condition ---- */

typedef struct {
  weft_mutex_t *m;
  weft_cond_t *c;
  int items; /* guarded by m */
  int consumed;
  int total;
} pc_t;

static void *cond_consumer(void *arg) {
  pc_t *p = arg;
  for (;;) {
    OK(weft_mutex_lock(p->m, UINT64_MAX));
    while (p->items == 0 && p->consumed < p->total) OK(weft_cond_wait(p->c, p->m, UINT64_MAX));
    if (p->consumed >= p->total) {
      OK(weft_mutex_unlock(p->m));
      return NULL;
    }
    p->items--;
    p->consumed++;
    if (p->consumed == p->total) OK(weft_cond_notify_all(p->c)); /* the others may finish */
    OK(weft_mutex_unlock(p->m));
  }
}

static void *cond_producer(void *arg) {
  pc_t *p = arg;
  for (int i = 0; i < p->total; i++) {
    OK(weft_mutex_lock(p->m, UINT64_MAX));
    p->items++;
    OK(weft_cond_notify(p->c, 1));
    OK(weft_mutex_unlock(p->m));
    if (i % 16 == 0) weft_yield();
  }
  return NULL;
}

Test(cond, producer_and_consumers_hand_over_every_item) {
  weft_runtime_t *rt = test_runtime(4);
  pc_t p = {.total = SCALE(20000, 2000)};
  OK(weft_mutex_create(&p.m));
  OK(weft_cond_create(&p.c));
  enum { C = 4 };
  weft_task_t *t[C + 1];
  for (int i = 0; i < C; i++) OK(weft_runtime_spawn(rt, &t[i], cond_consumer, &p));
  OK(weft_runtime_spawn(rt, &t[C], cond_producer, &p));
  for (int i = 0; i <= C; i++) OK(weft_join(t[i], NULL));
  cr_assert_eq(p.consumed, p.total);
  cr_assert_eq(p.items, 0);
  weft_cond_destroy(p.c);
  weft_mutex_destroy(p.m);
  OK(weft_runtime_destroy(rt));
}

Test(cond, waiting_without_the_mutex_aborts, .signal = SIGABRT) {
  weft_mutex_t *m;
  weft_cond_t *c;
  OK(weft_mutex_create(&m));
  OK(weft_cond_create(&c));
  weft_cond_wait(c, m, UINT64_MAX);
}

/* ---- Wait group ---- */

typedef struct {
  weft_waitgroup_t *wg;
  atomic_int done;
} wgarg_t;

static void *wg_child(void *arg) {
  wgarg_t *a = arg;
  weft_yield();
  atomic_fetch_add(&a->done, 1);
  OK(weft_waitgroup_done(a->wg));
  return NULL;
}

static void *wg_main(void *arg) {
  wgarg_t *a = arg;
  enum { N = 100 };
  OK(weft_waitgroup_add(a->wg, N));
  for (int i = 0; i < N; i++) OK(weft_spawn(NULL, wg_child, a));
  OK(weft_waitgroup_wait(a->wg, UINT64_MAX));
  cr_assert_eq(atomic_load(&a->done), N);
  return NULL;
}

Test(waitgroup, wait_returns_once_every_child_is_done) {
  wgarg_t a = {0};
  OK(weft_waitgroup_create(&a.wg));
  run_on(4, wg_main, &a);
  OK(weft_waitgroup_wait(a.wg, 0)); /* zero: no wait */
  weft_waitgroup_destroy(a.wg);
}

/* A group reused for many rounds, each of tasks that write a plain slot and call done from
 * every worker (more workers than cores), waited for by a task and, at once, by a plain
 * thread. Each waiter must return only after
 * every slot of its round is written — plain ints, so a missing happens-before edge is also a
 * ThreadSanitizer report — and no round may hang (a lost wake-up). */
enum { WG_ROUNDS = 200, WG_KIDS = 16 };

typedef struct {
  weft_waitgroup_t *wg;
  int slot[WG_KIDS];
  int round;
} wground_t;

typedef struct {
  wground_t *g;
  int i;
} wgkid_t;

static void *wg_writer(void *arg) {
  wgkid_t *k = arg;
  if (k->i % 3 == 0) weft_yield(); /* some finish after the waiter has queued */
  k->g->slot[k->i] = k->g->round;
  OK(weft_waitgroup_done(k->g->wg));
  return NULL;
}

static void *wg_thread_waiter(void *arg) {
  wground_t *g = arg;
  OK(weft_waitgroup_wait(g->wg, UINT64_MAX));
  for (int i = 0; i < WG_KIDS; i++) cr_assert_eq(g->slot[i], g->round);
  return NULL;
}

static void *wg_rounds(void *arg) {
  wground_t *g = arg;
  wgkid_t kids[WG_KIDS];
  for (g->round = 1; g->round <= WG_ROUNDS; g->round++) {
    OK(weft_waitgroup_add(g->wg, WG_KIDS));
    pthread_t th = 0;
    bool thread = g->round % 10 == 0; /* every tenth round, a plain thread waits too */
    if (thread) cr_assert_eq(pthread_create(&th, NULL, wg_thread_waiter, g), 0);
    for (int i = 0; i < WG_KIDS; i++) {
      kids[i] = (wgkid_t){g, i};
      OK(weft_spawn(NULL, wg_writer, &kids[i]));
    }
    OK(weft_waitgroup_wait(g->wg, UINT64_MAX));
    for (int i = 0; i < WG_KIDS; i++)
      cr_assert_eq(g->slot[i], g->round, "round %d: slot %d not written when wait returned",
                   g->round, i);
    if (thread) cr_assert_eq(pthread_join(th, NULL), 0);
  }
  return NULL;
}

Test(waitgroup, a_reused_group_waits_for_every_done_from_every_worker) {
  wground_t g = {0};
  OK(weft_waitgroup_create(&g.wg));
  run_on(4, wg_rounds, &g);
  weft_waitgroup_destroy(g.wg);
}

Test(waitgroup, below_zero_aborts, .signal = SIGABRT) {
  weft_waitgroup_t *g;
  OK(weft_waitgroup_create(&g));
  weft_waitgroup_done(g);
}

/* ---- Bad arguments ---- */

Test(args, null_handles_are_einval) {
  cr_assert_eq(weft_sem_create(NULL, 0, 0), WEFT_EINVAL);
  cr_assert_eq(weft_sem_acquire(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_sem_release(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_event_create(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_event_set(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_event_wait(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_cond_create(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_cond_wait(NULL, NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_cond_notify(NULL, 1), WEFT_EINVAL);
  cr_assert_eq(weft_waitgroup_create(NULL), WEFT_EINVAL);
  cr_assert_eq(weft_waitgroup_add(NULL, 1), WEFT_EINVAL);
  cr_assert_eq(weft_chan_create(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_chan_send(NULL, NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_chan_recv(NULL, NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_chan_select(NULL, 0, 0, NULL), WEFT_EINVAL);
  cr_assert_eq(weft_queue_create(NULL, 0), WEFT_EINVAL);
  cr_assert_eq(weft_queue_join(NULL, 0), WEFT_EINVAL);
  cr_assert_str_eq(weft_err_name(WEFT_ECLOSED), "WEFT_ECLOSED");
  cr_assert_str_eq(weft_strerror(WEFT_ECLOSED), "the channel is closed");
}

/* ---- limits (review, session 26) ---- */
Test(semaphore, an_unbounded_release_at_size_max_is_erange_and_keeps_every_permit) {
  weft_sem_t *s;
  OK(weft_sem_create(&s, SIZE_MAX, 0));
  cr_assert_eq(weft_sem_release(s), WEFT_ERANGE);
  size_t v = 0;
  OK(weft_sem_value(s, &v));
  cr_assert_eq(v, SIZE_MAX, "the count wrapped to %zu", v);
  OK(weft_sem_try_acquire(s));
  OK(weft_sem_release(s)); /* below the limit again */
  weft_sem_destroy(s);
}

Test(waitgroup, an_add_past_long_max_is_erange_and_leaves_the_counter) {
  weft_waitgroup_t *g;
  OK(weft_waitgroup_create(&g));
  OK(weft_waitgroup_add(g, LONG_MAX));
  cr_assert_eq(weft_waitgroup_add(g, 1), WEFT_ERANGE);
  OK(weft_waitgroup_add(g, -LONG_MAX)); /* back to zero: it was left at LONG_MAX */
  OK(weft_waitgroup_wait(g, 0));
  weft_waitgroup_destroy(g);
}

/* A cond wait at the API's full 254 shield levels relocks its mutex though a cancel is pending
 * and a deadline scope begun at that depth has passed (review, session 26: at the full depth
 * the relock's extra level carried out of the depth's byte, the lock failed and the call
 * aborted; the relock now takes the runtime's own 255th level). */
typedef struct {
  weft_mutex_t *m;
  weft_cond_t *c;
  atomic_int waiting;
  uint64_t scope_ends;
  int result, held_after;
} deep_cond_t;
static void *deep_cond_waiter(void *arg) {
  deep_cond_t *x = arg;
  int depth = 0;
  while (weft_shield_begin() == 0) depth++;
  cr_assert_eq(depth, 254);
  OK(weft_mutex_lock(x->m, UINT64_MAX));
  weft_deadline_t scope; /* begun at depth 254: it bounds the wait, not the relock */
  x->scope_ends = weft_now_ns() + 50 * MS;
  OK(weft_deadline_begin(&scope, x->scope_ends));
  atomic_store(&x->waiting, 1);
  x->result = weft_cond_wait(x->c, x->m, UINT64_MAX);
  x->held_after = weft_mutex_trylock(x->m) == WEFT_EAGAIN;
  weft_deadline_end(&scope);
  OK(weft_mutex_unlock(x->m));
  while (depth--) weft_shield_end();
  return NULL;
}
static void *deep_cond_notifier(void *arg) {
  deep_cond_t *x = arg;
  weft_task_t *t;
  OK(weft_spawn(&t, deep_cond_waiter, x));
  while (!atomic_load(&x->waiting)) OK(weft_yield());
  OK(weft_mutex_lock(x->m, UINT64_MAX)); /* the waiter is queued on the condition */
  OK(weft_cancel(t));                    /* shielded: only requested */
  OK(weft_cond_notify(x->c, 1));
  /* the waiter must queue for the mutex we hold: wait until it has */
  long queued = weft__probe_count(WEFT__PROBE_MUTEX_QUEUED);
  while (weft__probe_count(WEFT__PROBE_MUTEX_QUEUED) == queued) OK(weft_yield());
  while (weft_now_ns() <= x->scope_ends) weft_sleep_ms(1); /* its scope passes meanwhile */
  OK(weft_mutex_unlock(x->m));
  weft_join(t, NULL); /* its outcome: the cancel, delivered at its last shield's end */
  return NULL;
}
Test(condition, a_wait_at_the_full_shield_depth_relocks_its_mutex_despite_a_pending_cancel) {
  deep_cond_t x = {.result = 1};
  OK(weft_mutex_create(&x.m));
  OK(weft_cond_create(&x.c));
  run_on(1, deep_cond_notifier, &x);
  /* 0: notified within the scope (ETIMEDOUT only where this machine was slower than 50 ms) */
  cr_assert(x.result == 0 || x.result == WEFT_ETIMEDOUT, "the wait answered %s",
            weft_strerror(x.result));
  cr_assert_eq(x.held_after, 1, "the wait returned without the mutex");
  weft_mutex_destroy(x.m);
  weft_cond_destroy(x.c);
}

/* A failed create leaves its handle NULL, as weft_runtime_create does (review, session 31: it
 * was left as it was, so `if (create(&h)) ...; destroy(h)` freed whatever h held). */
Test(sync, a_failed_create_leaves_its_handle_null) {
  weft_sem_t *s = (weft_sem_t *)&s; /* not NULL: what an uninitialised local might hold */
  cr_assert_eq(weft_sem_create(&s, 5, 2), WEFT_EINVAL);
  cr_assert_null(s);
  weft_chan_t *c = (weft_chan_t *)&c;
  cr_assert_eq(weft_chan_create(&c, SIZE_MAX / sizeof(void *)), WEFT_ENOMEM); /* too large */
  cr_assert_null(c);
}
