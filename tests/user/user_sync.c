/* A correct program whose tasks share plain data ordered only by weft's synchronisation
 * objects: a mutex, a semaphore, a condition, an event, a wait group, a channel (send, receive,
 * close, select; a receive ordering the send it takes; a channel as a lock) and a queue (put,
 * get, task_done, join). Built by a user with
 * -fsanitize=thread against the installed, uninstrumented weft (tests/user/user_check.sh), it
 * must run without a report: weft tells the user's TSan of each object's hand-offs
 * (lib/sanitize.h, weft__tsan_acquired). Review, session 33: before, every mode here but the
 * channel's blocking hand-offs drew false race reports (mutex, semaphore and condition in
 * every run).
 *
 * Each mode checks its own answer, so the program also fails (exit 1) if weft's objects lose or
 * reorder something. Usage: user_sync [MODE...]   (no mode: all of them, one runtime each). */
#include <weft.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TASKS = 4, ROUNDS = 2000, ITEMS = 2000 };

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "user_sync: %s:%d: %s failed\n", __FILE__, __LINE__, #cond);            \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

/* Work between two critical sections, so that the tasks interleave on every worker. */
static void pause_a_little(int i) {
  for (volatile int k = 0; k < 100; k++) {
  }
  if (i % 64 == 0) weft_yield();
}

/* Spawns TASKS tasks of fn(arg i) and joins them. */
static void run_tasks(weft_fn fn) {
  weft_task_t *t[TASKS];
  for (intptr_t i = 0; i < TASKS; i++) CHECK(weft_spawn(&t[i], fn, (void *)i) == 0);
  for (int i = 0; i < TASKS; i++) CHECK(weft_join(t[i], NULL) == 0);
}

/* ---- Mutex and semaphore: a plain counter ---- */
static long counter;
static weft_mutex_t *mutex;
static weft_sem_t *sem;

static bool use_sem; /* the semaphore (1 permit) in place of the mutex */

static void *count_under_lock(void *arg) {
  (void)arg;
  for (int i = 0; i < ROUNDS; i++) {
    if (i % 3) /* blocking, or polling: a fast path with no hand-off between the tasks */
      CHECK((use_sem ? weft_sem_acquire(sem, UINT64_MAX)
                     : weft_mutex_lock(mutex, UINT64_MAX)) == 0);
    else
      while ((use_sem ? weft_sem_try_acquire(sem) : weft_mutex_trylock(mutex)) != 0) weft_yield();
    counter++;
    CHECK((use_sem ? weft_sem_release(sem) : weft_mutex_unlock(mutex)) == 0);
    pause_a_little(i);
  }
  return NULL;
}

static void mode_mutex(void) {
  CHECK(weft_mutex_create(&mutex) == 0);
  counter = 0;
  use_sem = false;
  run_tasks(count_under_lock);
  CHECK(counter == (long)TASKS * ROUNDS);
  weft_mutex_destroy(mutex);
}

static void mode_sem(void) {
  CHECK(weft_sem_create(&sem, 1, 1) == 0);
  counter = 0;
  use_sem = true;
  run_tasks(count_under_lock);
  CHECK(counter == (long)TASKS * ROUNDS);
  weft_sem_destroy(sem);
}

/* ---- Condition: a value published under the mutex ---- */
static weft_cond_t *cond;
static int ready;
static long published;

static void *cond_waiter(void *arg) {
  (void)arg;
  CHECK(weft_mutex_lock(mutex, UINT64_MAX) == 0);
  while (!ready) CHECK(weft_cond_wait(cond, mutex, UINT64_MAX) == 0);
  long seen = published;
  CHECK(weft_mutex_unlock(mutex) == 0);
  return (void *)seen;
}

static void mode_cond(void) {
  CHECK(weft_mutex_create(&mutex) == 0 && weft_cond_create(&cond) == 0);
  ready = 0;
  weft_task_t *t[TASKS];
  for (int i = 0; i < TASKS; i++) CHECK(weft_spawn(&t[i], cond_waiter, NULL) == 0);
  weft_yield();
  CHECK(weft_mutex_lock(mutex, UINT64_MAX) == 0);
  published = 7;
  ready = 1;
  CHECK(weft_cond_notify_all(cond) == 0);
  CHECK(weft_mutex_unlock(mutex) == 0);
  for (int i = 0; i < TASKS; i++) {
    void *seen;
    CHECK(weft_join(t[i], &seen) == 0 && (long)seen == 7);
  }
  weft_cond_destroy(cond);
  weft_mutex_destroy(mutex);
}

/* ---- Event and wait group: results written before the signal ---- */
static weft_event_t *event;
static weft_waitgroup_t *group;
static long slots[TASKS];

static void *event_waiter(void *arg) {
  intptr_t i = (intptr_t)arg;
  if (i % 2)
    CHECK(weft_event_wait(event, UINT64_MAX) == 0);
  else
    while (weft_event_is_set(event) != 1) weft_yield();
  return (void *)published;
}

static void mode_event(void) {
  CHECK(weft_event_create(&event) == 0);
  weft_task_t *t[TASKS];
  for (intptr_t i = 0; i < TASKS; i++) CHECK(weft_spawn(&t[i], event_waiter, (void *)i) == 0);
  weft_yield();
  published = 42;
  CHECK(weft_event_set(event) == 0);
  for (int i = 0; i < TASKS; i++) {
    void *seen;
    CHECK(weft_join(t[i], &seen) == 0 && (long)seen == 42);
  }
  weft_event_destroy(event);
}

static void *fill_slot(void *arg) {
  intptr_t i = (intptr_t)arg;
  pause_a_little((int)i + 1);
  slots[i] = i + 1;
  CHECK(weft_waitgroup_done(group) == 0);
  return NULL;
}

static void mode_waitgroup(void) {
  memset(slots, 0, sizeof slots);
  CHECK(weft_waitgroup_create(&group) == 0);
  CHECK(weft_waitgroup_add(group, TASKS) == 0);
  for (intptr_t i = 0; i < TASKS; i++) CHECK(weft_spawn(NULL, fill_slot, (void *)i) == 0);
  int err; /* polled (a deadline already passed): the count read 0, no hand-off */
  while ((err = weft_waitgroup_wait(group, weft_now_ns())) == WEFT_ETIMEDOUT) weft_yield();
  CHECK(err == 0);
  long sum = 0;
  for (int i = 0; i < TASKS; i++) sum += slots[i];
  CHECK(sum == TASKS * (TASKS + 1) / 2);
  weft_waitgroup_destroy(group);
}

/* ---- Channel and queue: heap messages handed over, freed by the receiver ---- */
typedef struct {
  long a, b;
} message_t;
static weft_chan_t *chan;
static weft_queue_t *queue;
static long after_close;
static bool buffered; /* polls on both sides would never meet on a rendezvous channel */

static message_t *message(long i) {
  message_t *m = malloc(sizeof *m);
  CHECK(m != NULL);
  m->a = i;
  m->b = 2 * i;
  return m;
}

static void *produce(void *arg) {
  (void)arg;
  for (long i = 0; i < ITEMS; i++) {
    message_t *m = message(i);
    /* each way in turn: blocking, polling (no park, so no hand-off between the tasks but
     * the object's own), a select */
    if (queue && i % 2)
      CHECK(weft_queue_put(queue, m, UINT64_MAX) == 0);
    else if (queue)
      while (weft_queue_try_put(queue, m) != 0) weft_yield();
    else if (i % 3 == 1 || (i % 3 == 2 && !buffered))
      CHECK(weft_chan_send(chan, m, UINT64_MAX) == 0);
    else if (i % 3 == 2)
      while (weft_chan_try_send(chan, m) != 0) weft_yield();
    else {
      weft_chan_op_t op = {.chan = chan, .op = WEFT_CHAN_SEND, .value = m};
      CHECK(weft_chan_select(&op, 1, UINT64_MAX, NULL) == 0);
    }
  }
  after_close = 99;
  if (queue) return NULL;
  CHECK(weft_chan_close(chan) == 0);
  return NULL;
}

static long consume_one(long i) {
  void *v = NULL;
  if (queue && i % 2)
    CHECK(weft_queue_get(queue, &v, UINT64_MAX) == 0);
  else if (queue)
    while (weft_queue_try_get(queue, &v) != 0) weft_yield();
  else if (i % 3 == 1 || (i % 3 == 2 && !buffered))
    CHECK(weft_chan_recv(chan, &v, UINT64_MAX) == 0);
  else if (i % 3 == 2)
    while (weft_chan_try_recv(chan, &v) != 0) weft_yield();
  else { /* a select's receive */
    weft_chan_op_t op = {.chan = chan, .op = WEFT_CHAN_RECV};
    size_t index;
    CHECK(weft_chan_select(&op, 1, UINT64_MAX, &index) == 0 && index == 0);
    v = op.value;
  }
  message_t *m = v;
  CHECK(m->a == i && m->b == 2 * i); /* FIFO, one producer */
  long sum = m->a + m->b;
  free(m);
  if (queue) CHECK(weft_queue_task_done(queue) == 0);
  return sum;
}

static void mode_channel(size_t capacity, bool use_queue) {
  if (use_queue)
    CHECK(weft_queue_create(&queue, capacity) == 0);
  else
    CHECK(weft_chan_create(&chan, capacity) == 0);
  after_close = 0;
  buffered = capacity > 0;
  weft_task_t *producer;
  CHECK(weft_spawn(&producer, produce, NULL) == 0);
  long sum = 0;
  for (long i = 0; i < ITEMS; i++) sum += consume_one(i);
  CHECK(sum == 3L * ITEMS * (ITEMS - 1) / 2);
  if (use_queue) {
    CHECK(weft_queue_join(queue, UINT64_MAX) == 0);
  } else {
    void *v;
    CHECK(weft_chan_recv(chan, &v, UINT64_MAX) == WEFT_ECLOSED);
    CHECK(after_close == 99); /* written before the close that the receive saw */
  }
  CHECK(weft_join(producer, NULL) == 0);
  if (use_queue) weft_queue_destroy(queue);
  else weft_chan_destroy(chan);
  queue = NULL;
  chan = NULL;
}

static void mode_chan(void) {
  mode_channel(0, false);  /* rendezvous */
  mode_channel(16, false); /* buffered */
}

static void mode_queue(void) { mode_channel(16, true); }

/* Several senders on an unbounded channel: the ring one sender grew (malloc) another grows
 * again (free), and the receiver's destroy frees the last (review, session 33: a user's TSan
 * took the ring's hand-over between senders for a race). */
static void *send_many(void *arg) {
  intptr_t first = (intptr_t)arg * ITEMS;
  for (intptr_t i = first; i < first + ITEMS; i++) {
    if (i % 2)
      CHECK(weft_chan_send(chan, message(i), UINT64_MAX) == 0);
    else
      CHECK(weft_chan_try_send(chan, message(i)) == 0); /* unbounded: never full */
  }
  return NULL;
}

static void mode_unbounded(void) {
  CHECK(weft_chan_create(&chan, WEFT_CHAN_UNBOUNDED) == 0);
  run_tasks(send_many); /* all sent before the first receive: the ring grows under the senders */
  long sum = 0;
  for (long i = 0; i < (long)TASKS * ITEMS; i++) {
    void *v;
    CHECK(weft_chan_try_recv(chan, &v) == 0);
    message_t *m = v;
    sum += m->a;
    free(m);
  }
  long n = (long)TASKS * ITEMS;
  CHECK(sum == n * (n - 1) / 2);
  weft_chan_destroy(chan);
  chan = NULL;
}

/* The other direction, Go's memory model: a receive is ordered before the completion of the
 * send it takes (reply), and on a channel of capacity C the k-th receive before the (k+C)-th
 * send's completion (lock: a capacity-1 channel as a lock — a send takes it, a receive gives
 * it back). Review A, session 36: both drew false race reports, unless the send had a deadline. */
static long reply_slot[ITEMS];

static void *reply_receiver(void *arg) {
  (void)arg;
  for (long i = 0; i < ITEMS; i++) {
    reply_slot[i] = i; /* written before the receive: the sender reads it after its send */
    void *v = NULL;
    if (i % 2) {
      CHECK(weft_chan_recv(chan, &v, UINT64_MAX) == 0);
    } else {
      weft_chan_op_t op = {.chan = chan, .op = WEFT_CHAN_RECV};
      CHECK(weft_chan_select(&op, 1, UINT64_MAX, NULL) == 0);
      v = op.value;
    }
    CHECK((long)(intptr_t)v == i);
  }
  return NULL;
}

static void mode_reply(void) {
  CHECK(weft_chan_create(&chan, 0) == 0);
  weft_task_t *receiver;
  CHECK(weft_spawn(&receiver, reply_receiver, NULL) == 0);
  for (long i = 0; i < ITEMS; i++) {
    void *v = (void *)(intptr_t)i;
    if (i % 3 == 0) {
      CHECK(weft_chan_send(chan, v, UINT64_MAX) == 0);
    } else if (i % 3 == 1) {
      CHECK(weft_chan_send(chan, v, weft_now_ns() + 60000000000ull) == 0); /* a deadline */
    } else {
      weft_chan_op_t op = {.chan = chan, .op = WEFT_CHAN_SEND, .value = v};
      CHECK(weft_chan_select(&op, 1, UINT64_MAX, NULL) == 0);
    }
    CHECK(reply_slot[i] == i);
  }
  CHECK(weft_join(receiver, NULL) == 0);
  weft_chan_destroy(chan);
  chan = NULL;
}

static void *count_under_channel(void *arg) {
  for (int i = 0; i < ROUNDS; i++) {
    if ((i + (intptr_t)arg) % 2)
      CHECK(weft_chan_send(chan, &counter, UINT64_MAX) == 0); /* take the lock */
    else
      while (weft_chan_try_send(chan, &counter) != 0) weft_yield();
    counter++;
    pause_a_little(i);
    void *v;
    CHECK(weft_chan_try_recv(chan, &v) == 0); /* give it back: the holder's token is there */
  }
  return NULL;
}

static void mode_chan_lock(void) {
  CHECK(weft_chan_create(&chan, 1) == 0);
  counter = 0;
  run_tasks(count_under_channel);
  CHECK(counter == (long)TASKS * ROUNDS);
  weft_chan_destroy(chan);
  chan = NULL;
}

/* A receive that blocked and was handed its value by one sender still orders a later sender's
 * completion (review D, session 36: it released only on its node, which that one sender took,
 * and a second sender's read of what the receiver wrote was reported). Capacity 1, three plain
 * threads (a task switch on a shared worker would order them by itself): the receiver writes,
 * then blocks on the empty channel (most rounds: the first sender waits for its flag and
 * yields first); the first sender hands it a value; the second sender's send (the 2nd, after
 * the 1st receive) completes, and it reads what the receiver wrote. The flags are relaxed
 * atomics, which give a user's TSan no edge, so only weft's can order the read. */
enum { HANDED_ROUNDS = ITEMS / 4 };
static long handed_slot;
static weft_chan_t *ack;
static _Atomic long receiver_ready, first_sent;

static void *handed_receiver(void *arg) {
  (void)arg;
  for (long i = 0; i < HANDED_ROUNDS; i++) {
    handed_slot = i;
    atomic_store_explicit(&receiver_ready, i + 1, memory_order_relaxed);
    void *v;
    CHECK(weft_chan_recv(chan, &v, UINT64_MAX) == 0);
    CHECK(weft_chan_recv(chan, &v, UINT64_MAX) == 0);
    CHECK(weft_chan_recv(ack, &v, UINT64_MAX) == 0); /* the read is done: write the next */
  }
  return NULL;
}

static void *handed_first_sender(void *arg) {
  (void)arg;
  for (long i = 0; i < HANDED_ROUNDS; i++) {
    while (atomic_load_explicit(&receiver_ready, memory_order_relaxed) != i + 1) sched_yield();
    for (int k = 0; k < 3; k++) sched_yield(); /* let it block */
    CHECK(weft_chan_send(chan, (void *)1, UINT64_MAX) == 0);
    atomic_store_explicit(&first_sent, i + 1, memory_order_relaxed);
  }
  return NULL;
}

static void *handed_second_sender(void *arg) {
  (void)arg;
  for (long i = 0; i < HANDED_ROUNDS; i++) {
    while (atomic_load_explicit(&first_sent, memory_order_relaxed) != i + 1) sched_yield();
    CHECK(weft_chan_send(chan, (void *)2, UINT64_MAX) == 0);
    CHECK(handed_slot == i);
    CHECK(weft_chan_send(ack, NULL, UINT64_MAX) == 0);
  }
  return NULL;
}

static void mode_handed(void) {
  CHECK(weft_chan_create(&chan, 1) == 0);
  CHECK(weft_chan_create(&ack, 0) == 0);
  atomic_store(&receiver_ready, 0);
  atomic_store(&first_sent, 0);
  pthread_t th[3];
  void *(*fns[3])(void *) = {handed_receiver, handed_first_sender, handed_second_sender};
  for (int i = 0; i < 3; i++) CHECK(pthread_create(&th[i], NULL, fns[i], NULL) == 0);
  for (int i = 0; i < 3; i++) CHECK(pthread_join(th[i], NULL) == 0);
  weft_chan_destroy(ack);
  weft_chan_destroy(chan);
  ack = chan = NULL;
}

static const struct {
  const char *name;
  void (*run)(void);
} modes[] = {{"mutex", mode_mutex}, {"sem", mode_sem},           {"cond", mode_cond},
             {"event", mode_event}, {"waitgroup", mode_waitgroup}, {"chan", mode_chan},
             {"queue", mode_queue}, {"unbounded", mode_unbounded}, {"reply", mode_reply},
             {"chan_lock", mode_chan_lock}, {"handed", mode_handed}};
enum { NMODES = sizeof modes / sizeof modes[0] };

static void *run_mode(void *arg) {
  modes[(intptr_t)arg].run();
  return NULL;
}

static int run_one(const char *name) {
  for (intptr_t i = 0; i < NMODES; i++)
    if (!strcmp(name, modes[i].name)) {
      weft_options_t o = WEFT_OPTIONS_INIT;
      o.workers = 4; /* more workers than this machine's cores */
      int rc = weft_run(&o, run_mode, (void *)i, NULL);
      printf("%s: weft_run %d\n", name, rc);
      return rc == 0 ? 0 : 1;
    }
  fprintf(stderr, "user_sync: no mode %s\n", name);
  return 2;
}

int main(int argc, char **argv) {
  int failed = 0;
  if (argc < 2)
    for (int i = 0; i < NMODES; i++) failed |= run_one(modes[i].name);
  for (int i = 1; i < argc; i++) failed |= run_one(argv[i]);
  return failed;
}
