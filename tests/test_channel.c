/* Channels, select and queues (issue 11): FIFO order, rendezvous, unbounded growth, close with
 * blocked senders and receivers, select (a waiting select, its timeout, closed cases, and its
 * fairness in counts), plain threads on both ends, the queue's join/task_done, and the
 * exactly-once stress: producers and consumers across 4 and 8 workers and foreign threads,
 * with deadlines and cancels racing the hand-offs, every value delivered exactly once; and the
 * next slot (lib/worker.c): a woken task leaves its waker's slot while the waker holds its
 * worker (a loop, a blocking system call), a ping-ponging pair does not starve a third task,
 * a cancelled direct wait leaves its queue. */
#include "support.h"
#include "waits.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <sched.h>
#include <stdatomic.h>

#define MS (1000000ull)

/* ---- FIFO, rendezvous, unbounded ---- */

static void *fifo_main(void *arg) {
  (void)arg;
  weft_chan_t *c;
  OK(weft_chan_create(&c, 8));
  for (long i = 1; i <= 8; i++) OK(weft_chan_send(c, IPTR(i), UINT64_MAX));
  cr_assert_eq(weft_chan_try_send(c, IPTR(9)), WEFT_EAGAIN);
  size_t len;
  OK(weft_chan_len(c, &len));
  cr_assert_eq(len, 8);
  for (long i = 1; i <= 8; i++) {
    void *v;
    OK(weft_chan_recv(c, &v, UINT64_MAX));
    cr_assert_eq(PINT(v), i, "out of order");
  }
  void *v;
  cr_assert_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
  weft_chan_destroy(c);
  return NULL;
}

Test(chan, buffered_values_come_out_in_order) { run_on(2, fifo_main, NULL); }

typedef struct {
  weft_chan_t *ping, *pong;
  long n;
} pp_t;

static void *ponger(void *arg) {
  pp_t *p = arg;
  for (long i = 0; i < p->n; i++) {
    void *v;
    OK(weft_chan_recv(p->ping, &v, UINT64_MAX));
    cr_assert_eq(PINT(v), i);
    OK(weft_chan_send(p->pong, IPTR(i + 1), UINT64_MAX));
  }
  return NULL;
}

static void *pinger(void *arg) {
  pp_t *p = arg;
  weft_task_t *t;
  OK(weft_spawn(&t, ponger, p));
  for (long i = 0; i < p->n; i++) {
    OK(weft_chan_send(p->ping, IPTR(i), UINT64_MAX));
    void *v;
    OK(weft_chan_recv(p->pong, &v, UINT64_MAX));
    cr_assert_eq(PINT(v), i + 1);
  }
  OK(weft_join(t, NULL));
  return NULL;
}

static void pingpong(int workers) {
  pp_t p = {.n = SCALE(20000, 2000)};
  OK(weft_chan_create(&p.ping, 0));
  OK(weft_chan_create(&p.pong, 0));
  run_on(workers, pinger, &p);
  weft_chan_destroy(p.ping);
  weft_chan_destroy(p.pong);
}

Test(chan, rendezvous_pingpong_at_1_worker) { pingpong(1); }
Test(chan, rendezvous_pingpong_at_4_workers) { pingpong(4); }

Test(chan, rendezvous_try_send_needs_a_waiting_receiver) {
  weft_chan_t *c;
  OK(weft_chan_create(&c, 0));
  cr_assert_eq(weft_chan_try_send(c, IPTR(1)), WEFT_EAGAIN);
  void *v;
  cr_assert_eq(weft_chan_try_recv(c, &v), WEFT_EAGAIN);
  cr_assert_eq(weft_chan_send(c, IPTR(1), weft_now_ns() + MS), WEFT_ETIMEDOUT); /* a thread */
  weft_chan_destroy(c);
}

Test(chan, unbounded_grows_and_keeps_order) {
  weft_chan_t *c;
  OK(weft_chan_create(&c, WEFT_CHAN_UNBOUNDED));
  enum { N = 10000 };
  for (long i = 0; i < N / 2; i++) OK(weft_chan_try_send(c, IPTR(i)));
  void *v;
  for (long i = 0; i < N / 4; i++) { /* wrap the ring before it grows again */
    OK(weft_chan_try_recv(c, &v));
    cr_assert_eq(PINT(v), i);
  }
  for (long i = N / 2; i < N; i++) OK(weft_chan_send(c, IPTR(i), UINT64_MAX));
  for (long i = N / 4; i < N; i++) {
    OK(weft_chan_try_recv(c, &v));
    cr_assert_eq(PINT(v), i);
  }
  weft_chan_destroy(c);
}

/* ---- Close with blocked senders and receivers ---- */

typedef struct {
  weft_chan_t *c;
  atomic_int closed, ok;
} closer_t;

static void *blocked_receiver(void *arg) {
  closer_t *k = arg;
  weft_task_set_name(weft_current(), "receiver");
  void *v;
  int err = weft_chan_recv(k->c, &v, UINT64_MAX);
  atomic_fetch_add(err == WEFT_ECLOSED ? &k->closed : &k->ok, 1);
  return NULL;
}

static void *blocked_sender(void *arg) {
  closer_t *k = arg;
  weft_task_set_name(weft_current(), "sender");
  int err = weft_chan_send(k->c, IPTR(5), UINT64_MAX);
  atomic_fetch_add(err == WEFT_ECLOSED ? &k->closed : &k->ok, 1);
  return NULL;
}

static void close_blocked(weft_fn fn, const char *name, size_t cap) {
  weft_runtime_t *rt = test_runtime(2);
  closer_t k = {0};
  OK(weft_chan_create(&k.c, cap));
  if (cap) OK(weft_chan_try_send(k.c, IPTR(4))); /* full, for the senders */
  enum { N = 6 };
  weft_task_t *t[N];
  for (int i = 0; i < N; i++) OK(weft_runtime_spawn(rt, &t[i], fn, &k));
  await_blocked(rt, name, "waiting on a channel");
  OK(weft_chan_close(k.c));
  for (int i = 0; i < N; i++) OK(weft_join(t[i], NULL));
  /* every blocked one ended with WEFT_ECLOSED (the dump showed one blocked; the rest either
   * blocked too or came after the close: WEFT_ECLOSED either way) */
  cr_assert_eq(atomic_load(&k.closed), N);
  cr_assert_eq(weft_chan_close(k.c), WEFT_ECLOSED);
  void *v;
  if (cap) { /* receivers drain the buffer, then see closed */
    OK(weft_chan_try_recv(k.c, &v));
    cr_assert_eq(PINT(v), 4);
  }
  cr_assert_eq(weft_chan_recv(k.c, &v, UINT64_MAX), WEFT_ECLOSED);
  cr_assert_eq(weft_chan_send(k.c, IPTR(1), UINT64_MAX), WEFT_ECLOSED);
  weft_chan_destroy(k.c);
  OK(weft_runtime_destroy(rt));
}

Test(close, wakes_blocked_receivers_with_eclosed) { close_blocked(blocked_receiver, "receiver", 0); }
Test(close, wakes_blocked_senders_with_eclosed_and_keeps_the_buffer) {
  close_blocked(blocked_sender, "sender", 1);
}

/* ---- The dump names what a task waits on ---- */

static void *dump_receiver(void *arg) {
  weft_task_set_name(weft_current(), "dump-receiver");
  void *v;
  return weft_chan_recv(arg, &v, UINT64_MAX) == WEFT_ECLOSED ? NULL : IPTR(1);
}

static void *dump_locker(void *arg) {
  weft_task_set_name(weft_current(), "dump-locker");
  if (weft_mutex_lock(arg, UINT64_MAX)) return IPTR(1);
  weft_mutex_unlock(arg);
  return NULL;
}

Test(dump, shows_the_channel_and_the_lock_a_task_waits_on) {
  weft_runtime_t *rt = test_runtime(2);
  weft_chan_t *c;
  weft_mutex_t *m;
  OK(weft_chan_create(&c, 0));
  OK(weft_mutex_create(&m));
  OK(weft_mutex_trylock(m));
  weft_task_t *r, *l;
  OK(weft_runtime_spawn(rt, &r, dump_receiver, c));
  OK(weft_runtime_spawn(rt, &l, dump_locker, m));
  char want[64];
  snprintf(want, sizeof want, "waiting on a channel (%#lx)", (unsigned long)(uintptr_t)c);
  await_blocked(rt, "dump-receiver", want);
  snprintf(want, sizeof want, "waiting for a lock (%#lx)", (unsigned long)(uintptr_t)m);
  await_blocked(rt, "dump-locker", want);
  OK(weft_chan_close(c));
  OK(weft_mutex_unlock(m));
  void *res;
  OK(weft_join(r, &res));
  cr_assert_null(res);
  OK(weft_join(l, &res));
  cr_assert_null(res);
  weft_chan_destroy(c);
  weft_mutex_destroy(m);
  OK(weft_runtime_destroy(rt));
}

/* ---- Plain threads ---- */

typedef struct {
  weft_chan_t *c;
  long n;
  long sum;
} thr_t;

static void *thread_sender(void *arg) {
  thr_t *t = arg;
  for (long i = 1; i <= t->n; i++) OK(weft_chan_send(t->c, IPTR(i), UINT64_MAX));
  OK(weft_chan_close(t->c));
  return NULL;
}

static void *task_receiver(void *arg) {
  thr_t *t = arg;
  void *v;
  long expect = 1;
  int err;
  while ((err = weft_chan_recv(t->c, &v, UINT64_MAX)) == 0) {
    cr_assert_eq(PINT(v), expect++);
    t->sum += PINT(v);
  }
  cr_assert_eq(err, WEFT_ECLOSED);
  return NULL;
}

Test(threads, a_thread_sends_and_a_task_receives) {
  thr_t t = {.n = SCALE(20000, 2000)};
  OK(weft_chan_create(&t.c, 0));
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, thread_sender, &t), 0);
  run_on(2, task_receiver, &t);
  pthread_join(th, NULL);
  cr_assert_eq(t.sum, t.n * (t.n + 1) / 2);
  weft_chan_destroy(t.c);
}

static void *thread_receiver(void *arg) {
  task_receiver(arg);
  return NULL;
}

Test(threads, two_plain_threads_rendezvous) {
  thr_t t = {.n = SCALE(20000, 2000)};
  OK(weft_chan_create(&t.c, 0));
  pthread_t a, b;
  cr_assert_eq(pthread_create(&a, NULL, thread_sender, &t), 0);
  cr_assert_eq(pthread_create(&b, NULL, thread_receiver, &t), 0);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  cr_assert_eq(t.sum, t.n * (t.n + 1) / 2);
  weft_chan_destroy(t.c);
}

/* ---- Select ---- */

typedef struct {
  weft_chan_t *a, *b;
} two_t;

static void *late_sender(void *arg) {
  two_t *t = arg;
  OK(weft_chan_send(t->b, IPTR(77), UINT64_MAX));
  return NULL;
}

static void *select_main(void *arg) {
  two_t *t = arg;
  weft_chan_op_t ops[2] = {{t->a, WEFT_CHAN_RECV, NULL}, {t->b, WEFT_CHAN_RECV, NULL}};
  size_t index = 9;
  /* nothing ready: poll, then time out, with nothing taken */
  cr_assert_eq(weft_chan_select(ops, 2, 0, &index), WEFT_EAGAIN);
  cr_assert_eq(weft_chan_select(ops, 2, weft_now_ns() + MS, &index), WEFT_ETIMEDOUT);
  weft_task_t *s;
  OK(weft_spawn(&s, late_sender, t));
  OK(weft_chan_select(ops, 2, UINT64_MAX, &index)); /* waits for the sender */
  cr_assert_eq(index, 1);
  cr_assert_eq(PINT(ops[1].value), 77);
  OK(weft_join(s, NULL));
  /* a send case and a NULL (never ready) case */
  weft_chan_op_t send[2] = {{NULL, WEFT_CHAN_RECV, NULL}, {t->a, WEFT_CHAN_SEND, IPTR(5)}};
  OK(weft_chan_select(send, 2, UINT64_MAX, &index));
  cr_assert_eq(index, 1);
  void *v;
  OK(weft_chan_try_recv(t->a, &v));
  cr_assert_eq(PINT(v), 5);
  /* a closed channel is a ready case that says so */
  OK(weft_chan_close(t->b));
  cr_assert_eq(weft_chan_select(ops, 2, UINT64_MAX, &index), WEFT_ECLOSED);
  cr_assert_eq(index, 1);
  return NULL;
}

Test(select, waits_times_out_sends_and_sees_closed) {
  two_t t;
  OK(weft_chan_create(&t.a, 1));
  OK(weft_chan_create(&t.b, 0));
  run_on(2, select_main, &t);
  weft_chan_destroy(t.a);
  weft_chan_destroy(t.b);
}

Test(select, chooses_fairly_among_ready_cases) {
  weft_chan_t *c[3];
  enum { N = 30000 };
  for (int i = 0; i < 3; i++) {
    OK(weft_chan_create(&c[i], WEFT_CHAN_UNBOUNDED));
    for (int k = 0; k < N; k++) OK(weft_chan_try_send(c[i], IPTR(i)));
  }
  long count[3] = {0};
  for (int k = 0; k < N; k++) {
    weft_chan_op_t ops[3] = {{c[0], WEFT_CHAN_RECV, NULL}, {c[1], WEFT_CHAN_RECV, NULL},
                             {c[2], WEFT_CHAN_RECV, NULL}};
    size_t index;
    OK(weft_chan_select(ops, 3, 0, &index));
    cr_assert_eq(PINT(ops[index].value), (long)index);
    count[index]++;
  }
  for (int i = 0; i < 3; i++) /* a third each, within generous bounds */
    cr_assert(count[i] > N / 4 && count[i] < N / 2, "case %d chosen %ld of %d", i, count[i], N);
  for (int i = 0; i < 3; i++) weft_chan_destroy(c[i]);
}

/* Ready cases separated by unready ones are still chosen about equally (a random start going
 * round would give the case after the unready run its whole share: 9 in 10 here). */
Test(select, chooses_fairly_among_ready_cases_between_unready_ones) {
  enum { N = 20000, K = 11 };
  weft_chan_t *c[K];
  for (int i = 0; i < K; i++) OK(weft_chan_create(&c[i], WEFT_CHAN_UNBOUNDED));
  for (int k = 0; k < N; k++) {
    OK(weft_chan_try_send(c[0], IPTR(0)));
    OK(weft_chan_try_send(c[K - 1], IPTR(K - 1)));
  }
  long count[K] = {0};
  for (int k = 0; k < N; k++) {
    weft_chan_op_t ops[K];
    for (int i = 0; i < K; i++) ops[i] = (weft_chan_op_t){c[i], WEFT_CHAN_RECV, NULL};
    size_t index;
    OK(weft_chan_select(ops, K, 0, &index));
    count[index]++;
  }
  cr_assert(count[0] > N * 2 / 5 && count[K - 1] > N * 2 / 5, "first %ld, last %ld of %d",
            count[0], count[K - 1], N);
  for (int i = 0; i < K; i++) weft_chan_destroy(c[i]);
}

Test(channel, a_capacity_too_large_for_memory_is_refused) {
  weft_chan_t *c = NULL;
  cr_assert_eq(weft_chan_create(&c, SIZE_MAX / sizeof(void *) + 2), WEFT_ENOMEM);
  cr_assert_null(c);
}

/* Two producers feed two channels; one selecting consumer must see both streams progress.
 * Over many selects: which cases are ready at a select depends on where the producers run,
 * and for a few milliseconds one producer can wait behind the other and the consumer on one
 * worker (CI, session 11: at 2·10^4 selects, ~10 ms, case 1 chosen 5 times in one run of 40
 * and under n/20 in 2 of 60 on main before #13's private spawns too); at 2·10^5 each stream
 * had over n/5 in 30 runs of 30. Why (session 12, a repro timing each producer's sends): the
 * long one-sided streaks (up to 19 584 of 20 000 selects) coincide with a gap of 4 or 8 ms in
 * one producer's sends during which its worker thread took one involuntary context switch and
 * no contended channel lock: the OS ran both worker threads on one vCPU for a time slice or
 * two, a task "running" on the preempted worker. Not the scheduler's or the lock's doing. */
typedef struct {
  weft_chan_t *c[2];
  long n;
  weft_waitgroup_t *started;
  long count[2];
} sf_t;

typedef struct {
  sf_t *s;
  int i;
} sf_arg_t;

static void *sf_producer(void *arg) {
  sf_arg_t *a = arg;
  weft_chan_t *c = a->s->c[a->i];
  OK(weft_waitgroup_done(a->s->started));
  for (;;)
    if (weft_chan_send(c, IPTR(1), UINT64_MAX)) return NULL; /* closed: done */
}

/* Selects only when both cases are ready (both buffers non-empty: only we receive, so they
 * stay so until the select), which is where the choice is the select's; otherwise it yields
 * until the producers refill. How often each producer runs is the OS's (session 20: the whole
 * count failed in CI and in 1 of 100 runs with the CPUs loaded, case 1 at 13 649 of 200 000);
 * counting only the selects that happened to find both ready failed in CI under ASan in
 * session 28 (27 of 20 000), so the consumer now waits for that state instead of hoping. */
static void *sf_main(void *arg) {
  sf_t *s = arg;
  weft_task_t *p[2];
  sf_arg_t args[2] = {{s, 0}, {s, 1}};
  OK(weft_waitgroup_create(&s->started));
  OK(weft_waitgroup_add(s->started, 2));
  for (int i = 0; i < 2; i++) OK(weft_spawn(&p[i], sf_producer, &args[i]));
  OK(weft_waitgroup_wait(s->started, UINT64_MAX)); /* both streams flow before we count */
  for (long k = 0; k < s->n;) {
    weft_chan_op_t ops[2] = {{s->c[0], WEFT_CHAN_RECV, NULL}, {s->c[1], WEFT_CHAN_RECV, NULL}};
    size_t len[2], index;
    OK(weft_chan_len(s->c[0], &len[0]));
    OK(weft_chan_len(s->c[1], &len[1]));
    if (len[0] && len[1]) {
      OK(weft_chan_select(ops, 2, UINT64_MAX, &index));
      s->count[index]++;
      k++;
    }
    weft_yield(); /* a task that never suspends holds its worker: let woken producers run */
  }
  for (int i = 0; i < 2; i++) OK(weft_chan_close(s->c[i]));
  for (int i = 0; i < 2; i++) OK(weft_join(p[i], NULL));
  weft_waitgroup_destroy(s->started);
  return NULL;
}

Test(select, is_fair_under_contention) {
  sf_t s = {.n = SCALE(200000, 20000)};
  for (int i = 0; i < 2; i++) OK(weft_chan_create(&s.c[i], 4));
  run_on(2, sf_main, &s);
  for (int i = 0; i < 2; i++) weft_chan_destroy(s.c[i]);
  /* Asserted here, off the task's stack (an assertion failing on a task stack confused ASan). */
  for (int i = 0; i < 2; i++)
    cr_assert(s.count[i] > s.n / 4, "case %d chosen %ld of %ld with both ready", i, s.count[i],
              s.n);
}

/* ---- Queue ---- */

typedef struct {
  weft_queue_t *q;
  atomic_long processed;
} qarg_t;

static void *q_worker(void *arg) {
  qarg_t *a = arg;
  void *v;
  while (weft_queue_get(a->q, &v, UINT64_MAX) == 0) {
    weft_yield();
    atomic_fetch_add(&a->processed, PINT(v));
    OK(weft_queue_task_done(a->q));
  }
  return NULL;
}

static void *q_main(void *arg) {
  qarg_t *a = arg;
  weft_task_t *w[3];
  for (int i = 0; i < 3; i++) OK(weft_spawn(&w[i], q_worker, a));
  for (long i = 1; i <= 1000; i++) OK(weft_queue_put(a->q, IPTR(i), UINT64_MAX));
  OK(weft_queue_join(a->q, UINT64_MAX)); /* every item processed, not just taken */
  cr_assert_eq(atomic_load(&a->processed), 1000 * 1001 / 2);
  OK(weft_queue_close(a->q));
  for (int i = 0; i < 3; i++) OK(weft_join(w[i], NULL));
  return NULL;
}

Test(queue, join_waits_until_every_item_is_marked_done) {
  qarg_t a = {0};
  OK(weft_queue_create(&a.q, 8));
  run_on(2, q_main, &a);
  cr_assert_eq(weft_queue_join(a.q, 0), 0);
  weft_queue_destroy(a.q);
}

/* A put still blocked on a full queue has put nothing: join does not wait for it (asyncio
 * counts an item when put_nowait stores it). Review, session 24: join timed out here. Each value
 * accepted counts — taken by a waiting getter, moved from a blocked put into the buffer, or
 * stored — so a getter's task_done never comes before its item's count. */
static void *blocked_put(void *arg) {
  weft_queue_t *q = arg;
  weft_task_set_name(weft_current(), "putter");
  return IPTR(weft_queue_put(q, IPTR(2), UINT64_MAX));
}

Test(queue, a_put_still_blocked_is_not_counted_by_join) {
  weft_runtime_t *rt = test_runtime(2);
  void *v, *put;
  weft_task_t *t;
  /* No buffer: the put waits for a getter, and counts only once one takes its value. */
  weft_queue_t *q;
  OK(weft_queue_create(&q, 0));
  OK(weft_runtime_spawn(rt, &t, blocked_put, q));
  await_blocked(rt, "putter", "waiting on a channel");
  cr_assert_eq(weft_queue_join(q, 0), 0, "a put still blocked has put nothing");
  OK(weft_queue_get(q, &v, UINT64_MAX)); /* the rendezvous: accepted, counted */
  cr_assert_eq(weft_queue_join(q, 0), WEFT_ETIMEDOUT, "the value taken is unfinished");
  OK(weft_queue_task_done(q));
  OK(weft_queue_join(q, 0));
  OK(weft_join(t, &put));
  OK((int)PINT(put));
  weft_queue_destroy(q);
  /* A full buffer: a get moves the blocked put's value in, which counts it then. */
  OK(weft_queue_create(&q, 1));
  OK(weft_queue_put(q, IPTR(1), UINT64_MAX));
  OK(weft_runtime_spawn(rt, &t, blocked_put, q));
  await_blocked(rt, "putter", "waiting on a channel");
  OK(weft_queue_try_get(q, &v));
  cr_assert_eq(PINT(v), 1);
  OK(weft_queue_task_done(q));
  cr_assert_eq(weft_queue_join(q, 0), WEFT_ETIMEDOUT, "2, moved into the buffer, is unfinished");
  OK(weft_queue_get(q, &v, UINT64_MAX));
  cr_assert_eq(PINT(v), 2);
  OK(weft_queue_task_done(q));
  OK(weft_queue_join(q, 0));
  OK(weft_join(t, &put));
  OK((int)PINT(put));
  /* A put that times out on a full buffer is not counted either. */
  OK(weft_queue_put(q, IPTR(3), UINT64_MAX));
  cr_assert_eq(weft_queue_put(q, IPTR(4), weft_now_ns() + 1000000), WEFT_ETIMEDOUT);
  OK(weft_queue_try_get(q, &v));
  OK(weft_queue_task_done(q));
  cr_assert_eq(weft_queue_join(q, 0), 0, "only accepted values count");
  weft_queue_destroy(q);
  OK(weft_runtime_destroy(rt));
}

Test(queue, task_done_beyond_the_items_aborts, .signal = SIGABRT) {
  weft_queue_t *q;
  OK(weft_queue_create(&q, 1));
  weft_queue_task_done(q);
}

/* ---- Exactly once: producers and consumers with racing deadlines and cancels ---- */

enum { PRODUCERS = 4, CONSUMERS = 4, THREADS = 2 };

typedef struct {
  weft_chan_t *c;
  long per;             /* values per producer */
  atomic_uchar *seen;   /* per value: received this many times */
  atomic_uchar *sent;   /* per value: its send reported success */
  atomic_int producers_left;
  atomic_long received, timeouts;
} eo_t;

typedef struct {
  eo_t *e;
  long base;
} eo_arg_t;

/* Each value is sent until a send succeeds; short deadlines make timeouts race the hand-off. */
static void eo_produce(eo_arg_t *a) {
  eo_t *e = a->e;
  for (long i = 0; i < e->per; i++) {
    long v = a->base + i;
    int err;
    while ((err = weft_chan_send(e->c, IPTR(v + 1), weft_now_ns() + 20000)) == WEFT_ETIMEDOUT)
      atomic_fetch_add(&e->timeouts, 1);
    cr_assert_eq(err, 0, "send: %s", weft_strerror(err));
    atomic_store(&e->sent[v], 1);
  }
  if (atomic_fetch_sub(&e->producers_left, 1) == 1) OK(weft_chan_close(e->c));
}

static void eo_consume(eo_t *e) {
  for (;;) {
    void *v;
    int err = weft_chan_recv(e->c, &v, weft_now_ns() + 30000);
    if (err == WEFT_ETIMEDOUT) continue;
    if (err == WEFT_ECLOSED) return;
    cr_assert_eq(err, 0, "recv: %s", weft_strerror(err));
    atomic_fetch_add(&e->seen[PINT(v) - 1], 1);
    atomic_fetch_add(&e->received, 1);
  }
}

static void *eo_producer_task(void *arg) {
  eo_produce(arg);
  return NULL;
}

static void *eo_consumer_task(void *arg) {
  eo_consume(arg);
  return NULL;
}

static void *eo_producer_thread(void *arg) {
  eo_produce(arg);
  return NULL;
}

static void *eo_consumer_thread(void *arg) {
  eo_consume(arg);
  return NULL;
}

/* A consumer that gets cancelled while it waits: whatever it received before counts. */
static void *eo_cancelled_consumer(void *arg) {
  eo_t *e = arg;
  for (;;) {
    void *v;
    int err = weft_chan_recv(e->c, &v, UINT64_MAX);
    if (err) return NULL; /* cancelled (or closed) */
    atomic_fetch_add(&e->seen[PINT(v) - 1], 1);
    atomic_fetch_add(&e->received, 1);
  }
}

static void exactly_once(int workers, size_t cap) {
  weft_runtime_t *rt = test_runtime(workers);
  eo_t e = {.per = SCALE(5000, 500)};
  long total = (PRODUCERS + THREADS) * e.per;
  e.seen = calloc((size_t)total, 1);
  e.sent = calloc((size_t)total, 1);
  atomic_store(&e.producers_left, PRODUCERS + THREADS);
  OK(weft_chan_create(&e.c, cap));
  eo_arg_t args[PRODUCERS + THREADS];
  weft_task_t *t[PRODUCERS + CONSUMERS + 2];
  pthread_t th[2 * THREADS];
  int nt = 0;
  for (int i = 0; i < PRODUCERS + THREADS; i++) args[i] = (eo_arg_t){&e, i * e.per};
  for (int i = 0; i < CONSUMERS; i++) OK(weft_runtime_spawn(rt, &t[nt++], eo_consumer_task, &e));
  weft_task_t *victims[2];
  for (int i = 0; i < 2; i++) OK(weft_runtime_spawn(rt, &victims[i], eo_cancelled_consumer, &e));
  for (int i = 0; i < PRODUCERS; i++) OK(weft_runtime_spawn(rt, &t[nt++], eo_producer_task, &args[i]));
  for (int i = 0; i < THREADS; i++) {
    cr_assert_eq(pthread_create(&th[i], NULL, eo_producer_thread, &args[PRODUCERS + i]), 0);
    cr_assert_eq(pthread_create(&th[THREADS + i], NULL, eo_consumer_thread, &e), 0);
  }
  while (atomic_load(&e.received) < total / 4) sched_yield();
  for (int i = 0; i < 2; i++) OK(weft_cancel(victims[i])); /* mid-stream, racing hand-offs */
  for (int i = 0; i < nt; i++) OK(weft_join(t[i], NULL));
  for (int i = 0; i < 2; i++) weft_join(victims[i], NULL);
  for (int i = 0; i < 2 * THREADS; i++) pthread_join(th[i], NULL);
  cr_assert_eq(atomic_load(&e.received), total, "received %ld of %ld", atomic_load(&e.received), total);
  for (long v = 0; v < total; v++) {
    cr_assert_eq(atomic_load(&e.sent[v]), 1, "value %ld: no successful send", v);
    cr_assert_eq(atomic_load(&e.seen[v]), 1, "value %ld received %d times", v, atomic_load(&e.seen[v]));
  }
  weft_chan_destroy(e.c);
  free(e.seen);
  free(e.sent);
  OK(weft_runtime_destroy(rt));
}

Test(exactly_once, rendezvous_at_4_workers) { exactly_once(4, 0); }
Test(exactly_once, rendezvous_at_8_workers) { exactly_once(8, 0); }
Test(exactly_once, buffered_at_4_workers) { exactly_once(4, 16); }
Test(exactly_once, buffered_at_8_workers) { exactly_once(8, 16); }

/* ---- The next slot and the direct hand-off (#11's pingpong work) ---- */

/* A task woken into its waker's next slot runs even though the waker never gives its worker
 * back: another worker takes it from the slot (a spinner after NEXT_STEAL_NS, or the parked
 * watcher within a millisecond, or a worker the put woke). Deterministic: a try_send on a
 * rendezvous channel succeeds only while the receiver waits, so the hand-off wakes it into the
 * waker's slot; the waker then busy-waits (no suspension point) until the receiver has run. */
typedef struct {
  weft_chan_t *c;
  atomic_int resumed;
  bool syscall; /* the waker blocks in read(2) on `pipe` instead of a loop */
  int pipe[2];
} hold_t;

static void *hold_receiver(void *arg) {
  hold_t *h = arg;
  void *v;
  OK(weft_chan_recv(h->c, &v, UINT64_MAX)); /* no deadline: the direct wait */
  cr_assert_eq(PINT(v), 7);
  atomic_store(&h->resumed, 1);
  if (h->syscall) cr_assert_eq(write(h->pipe[1], "x", 1), 1);
  return NULL;
}

static void *hold_waker(void *arg) {
  hold_t *h = arg;
  weft_task_t *r;
  OK(weft_spawn(&r, hold_receiver, h));
  while (weft_chan_try_send(h->c, IPTR(7)) == WEFT_EAGAIN) weft_yield(); /* until it waits */
  if (h->syscall) { /* the worker's thread blocks in the kernel until the woken task writes */
    struct pollfd p = {.fd = h->pipe[0], .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 10000), 1, "the woken task never left its waker's next slot");
    char b;
    cr_assert_eq(read(h->pipe[0], &b, 1), 1);
  }
  uint64_t until = weft_now_ns() + 10000 * MS; /* a failure detector, not a timing check */
  while (!atomic_load(&h->resumed))
    cr_assert(weft_now_ns() < until, "the woken task never left its waker's next slot");
  OK(weft_join(r, NULL));
  return NULL;
}

static void hold(int workers, bool syscall) {
  for (int round = 0; round < SCALE(20, 5); round++) {
    hold_t h = {.syscall = syscall};
    cr_assert_eq(pipe(h.pipe), 0);
    OK(weft_chan_create(&h.c, 0));
    run_on(workers, hold_waker, &h);
    weft_chan_destroy(h.c);
    close(h.pipe[0]);
    close(h.pipe[1]);
  }
}

Test(next_slot, a_woken_task_runs_while_its_waker_holds_the_worker_at_2_workers) { hold(2, false); }
Test(next_slot, a_woken_task_runs_while_its_waker_holds_the_worker_at_4_workers) { hold(4, false); }
Test(next_slot, a_woken_task_runs_while_its_waker_holds_the_worker_at_8_workers) { hold(8, false); }
Test(next_slot, a_woken_task_runs_while_its_waker_blocks_in_a_syscall_at_2_workers) { hold(2, true); }
Test(next_slot, a_woken_task_runs_while_its_waker_blocks_in_a_syscall_at_8_workers) { hold(8, true); }

/* Two tasks that wake each other through rendezvous channels (each hop a put into the next
 * slot and a direct switch) do not starve a third task: one spawned beside them, one that
 * keeps yielding, and one spawned from outside the runtime (the inject queue). Each third task
 * ends the ping-pong when it runs; at 1 worker it can only run on the pair's worker. The spawned
 * and the yielding one are spawned by the ponger after 1000 hops (onto the deque's LIFO end,
 * under the pair's slot); the yielding one then goes to the yield queue. */
typedef struct {
  weft_chan_t *ping, *pong;
  atomic_int stop;
  atomic_long hops;
  int kind; /* FAIR_SPAWNED, FAIR_YIELDING, FAIR_INJECTED */
} fair_t;

enum { FAIR_SPAWNED, FAIR_YIELDING, FAIR_INJECTED };

static void *fair_third(void *arg);

/* Spawns the third task (onto its worker's deque) once the pair is hopping. */
static void *fair_ponger(void *arg) {
  fair_t *f = arg;
  weft_task_t *third = NULL;
  for (long i = 0;; i++) {
    if (i == 1000 && f->kind != FAIR_INJECTED) OK(weft_spawn(&third, fair_third, f));
    void *v;
    OK(weft_chan_recv(f->ping, &v, UINT64_MAX));
    if (!v) break;
    OK(weft_chan_send(f->pong, v, UINT64_MAX));
  }
  if (third) OK(weft_join(third, NULL));
  return NULL;
}

static void *fair_third(void *arg) {
  fair_t *f = arg;
  if (f->kind == FAIR_YIELDING)
    for (int i = 0; i < 100; i++) OK(weft_yield());
  atomic_store(&f->stop, 1);
  return NULL;
}

static void *fair_pinger(void *arg) {
  fair_t *f = arg;
  weft_task_t *p;
  OK(weft_spawn(&p, fair_ponger, f));
  while (!atomic_load(&f->stop)) {
    void *v;
    OK(weft_chan_send(f->ping, IPTR(1), UINT64_MAX));
    OK(weft_chan_recv(f->pong, &v, UINT64_MAX));
    atomic_fetch_add(&f->hops, 1);
  }
  OK(weft_chan_send(f->ping, NULL, UINT64_MAX)); /* the ponger's end */
  OK(weft_join(p, NULL));
  return NULL;
}

static void fair(int workers, int kind) {
  weft_runtime_t *rt = test_runtime(workers);
  fair_t f = {.kind = kind};
  OK(weft_chan_create(&f.ping, 0));
  OK(weft_chan_create(&f.pong, 0));
  weft_task_t *pinger, *third = NULL;
  OK(weft_runtime_spawn(rt, &pinger, fair_pinger, &f));
  if (kind == FAIR_INJECTED) {
    while (atomic_load(&f.hops) < 1000) sched_yield(); /* the pair is hopping */
    OK(weft_runtime_spawn(rt, &third, fair_third, &f));
  }
  OK(weft_join(pinger, NULL)); /* returns only once the third task ran */
  if (third) OK(weft_join(third, NULL));
  cr_assert_eq(atomic_load(&f.stop), 1);
  weft_chan_destroy(f.ping);
  weft_chan_destroy(f.pong);
  OK(weft_runtime_destroy(rt));
}

#define FAIR_TESTS(workers)                                                                      \
  Test(next_slot, a_pair_does_not_starve_a_spawned_task_at_##workers##_workers) {                \
    fair(workers, FAIR_SPAWNED);                                                                 \
  }                                                                                              \
  Test(next_slot, a_pair_does_not_starve_a_yielding_task_at_##workers##_workers) {               \
    fair(workers, FAIR_YIELDING);                                                                \
  }                                                                                              \
  Test(next_slot, a_pair_does_not_starve_an_injected_task_at_##workers##_workers) {              \
    fair(workers, FAIR_INJECTED);                                                                \
  }
FAIR_TESTS(1)
FAIR_TESTS(2)
FAIR_TESTS(4)
FAIR_TESTS(8)

/* A task blocked in a direct wait (no deadline) is cancelled: it leaves the queue, and a later
 * send finds no stale waiter (the channel's queue is empty again: destroy would abort). */
static void *cancel_waiter(void *arg) {
  weft_task_set_name(weft_current(), "direct-waiter");
  void *v;
  return IPTR(weft_chan_recv(arg, &v, UINT64_MAX));
}

Test(next_slot, a_cancelled_direct_wait_leaves_its_queue) {
  weft_runtime_t *rt = test_runtime(2);
  weft_chan_t *c;
  OK(weft_chan_create(&c, 0));
  char want[64];
  snprintf(want, sizeof want, "waiting on a channel (%#lx)", (unsigned long)(uintptr_t)c);
  for (int i = 0; i < SCALE(20, 5); i++) {
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, cancel_waiter, c));
    await_blocked(rt, "direct-waiter", want);
    OK(weft_cancel(t));
    void *res;
    cr_assert_eq(weft_join(t, &res), WEFT_ECANCELED);
    cr_assert_eq(PINT(res), 0); /* a cancelled task's result is NULL */
    cr_assert_eq(weft_chan_try_send(c, IPTR(1)), WEFT_EAGAIN, "a cancelled waiter took a value");
  }
  weft_chan_destroy(c);
  OK(weft_runtime_destroy(rt));
}
