/*
 * Channels (Go's chan, Tokio's mpsc, asyncio.Queue) and select, on the waiter queue of
 * lib/waitq.h; and weft_queue_t, asyncio.Queue's join/task_done on top of a channel.
 *
 * A channel is a ring of `void *` values (capacity fixed, 0 for a rendezvous, or growing for
 * an unbounded one), a queue of blocked senders and one of blocked receivers, a closed flag,
 * all under one short spinlock (Go locks each chan the same way). Values and waiters are FIFO.
 * A send that finds a blocked receiver hands it the value directly (no ring slot, one
 * wake-up); a recv that takes from a full ring refills the slot from the oldest blocked
 * sender, so senders' values keep their order. Invariant: receivers wait only while the ring
 * is empty, senders only while it is full (or, with capacity 0, while no receiver waits).
 *
 * Close: later sends fail with WEFT_ECLOSED at once, and so do blocked senders (their values
 * stay theirs); receivers take what is buffered and then get WEFT_ECLOSED.
 *
 * Select: lock every case's channel in address order (Go's sellock: no two selects can
 * deadlock), poll the cases in a random order (a fresh permutation per call, Go's pollorder:
 * each ready case equally likely, fair under contention), and if none is ready queue one node
 * per case sharing one claim word (see waitq.h), unlock, wait, relock and unlink what is left.
 */
#include "internal.h"
#include "join.h"
#include "waitq.h"

#include <stdlib.h>
#include <string.h>

struct weft_chan {
  weft__spin_t lock; /* guards everything below */
  bool closed;
  size_t cap;   /* values the ring may hold; WEFT_CHAN_UNBOUNDED: no limit */
  size_t ring;  /* slots allocated */
  size_t head;  /* oldest value */
  size_t len;   /* values held */
  void **buf;
  weft__wq_t sendq, recvq;
};

enum { CHAN_RING_MIN = 16 }; /* picked: an unbounded channel's first ring */

int weft_chan_create(weft_chan_t **out, size_t capacity) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_chan_t *c = calloc(1, sizeof *c);
  if (!c) return WEFT_ENOMEM;
  /* a ring that large cannot exist, and its byte count would wrap (a heap overflow later) */
  if (capacity != WEFT_CHAN_UNBOUNDED && capacity > SIZE_MAX / sizeof(void *) / 2) {
    free(c);
    return WEFT_ENOMEM;
  }
  c->cap = capacity;
  c->ring = capacity == WEFT_CHAN_UNBOUNDED ? CHAN_RING_MIN : capacity;
  if (c->ring && !(c->buf = malloc(c->ring * sizeof *c->buf))) {
    free(c);
    return WEFT_ENOMEM;
  }
  *out = c;
  return 0;
}

static bool chan_awaited(const weft_chan_t *c) {
  return !wq_empty(&c->sendq) || !wq_empty(&c->recvq);
}

void weft_chan_destroy(weft_chan_t *c) {
  if (!c) return;
  if (chan_awaited(c))
    weft__die("weft: weft_chan_destroy was called on a channel that tasks or threads still "
              "send to or receive from.");
  weft__tsan_object_acquire(&c->buf); /* the ring a sender grew (ring_grow) */
  free(c->buf);
  free(c);
}

/* ---- The ring (under the lock) ------------------------------------------------------------------- */

static void **ring_slot(weft_chan_t *c, size_t i) { return &c->buf[(c->head + i) % c->ring]; }

static bool ring_full(const weft_chan_t *c) {
  return c->cap != WEFT_CHAN_UNBOUNDED && c->len >= c->cap;
}

/* An unbounded channel's ring doubles when full; false if memory ran out. */
static bool ring_grow(weft_chan_t *c) {
  if (c->len < c->ring) return true;
  if (c->ring > SIZE_MAX / 2 / sizeof *c->buf) return false;
  void **bigger = malloc(2 * c->ring * sizeof *bigger);
  if (!bigger) return false;
  for (size_t i = 0; i < c->len; i++) bigger[i] = *ring_slot(c, i);
  /* The ring passes between senders under our spinlock, which a user's TSan cannot see: it
   * saw one sender's malloc and another's free (review, session 33). Its own key: a sender
   * acquires no other sender's history. */
  weft__tsan_object_acquire(&c->buf);
  free(c->buf);
  c->buf = bigger;
  weft__tsan_object_release(&c->buf);
  c->head = 0;
  c->ring *= 2;
  return true;
}

static void ring_put(weft_chan_t *c, void *v) {
  *ring_slot(c, c->len) = v;
  c->len++;
}

static void *ring_take(weft_chan_t *c) {
  void *v = *ring_slot(c, 0);
  c->head = (c->head + 1) % c->ring;
  c->len--;
  return v;
}

/* ---- One operation, under the lock ----------------------------------------------------------------- */

/* A value was accepted (into the ring, or by a receiver): a queue counts it as unfinished now,
 * under the lock, so before any receiver can take it and mark it done — and a put still
 * blocked is not counted (asyncio's Queue; review, session 24: join waited for a put that
 * never happened). `counts` is the queue's wait group, NULL for a plain channel: every accept
 * point is reached from a queue's own put or get (its channel is not exposed, so no select or
 * plain send reaches it), and the plain channel's calls pass a constant NULL into these always
 * inlined paths, so they pay nothing (a field in the channel, tested on every operation, cost
 * `weft-bench chan` 5 instructions an item: callgrind, session 24). */
static void __attribute__((noinline)) count_accepted(weft_waitgroup_t *counts) {
  weft_waitgroup_add(counts, 1); /* its lock inside ours: it never takes a channel's */
}

static inline __attribute__((always_inline)) void accepted(weft_waitgroup_t *counts) {
  if (counts) count_accepted(counts);
}

/* try_send_locked and try_recv_locked are always inlined (into send, receive and select's
 * poll): as calls returning this pair they cost 46 instructions more per pingpong hop and 25 %
 * more on `weft-bench chan` (callgrind, #11). */
/* The outcome of trying one operation without waiting. `wake`: a peer dequeued to complete
 * after unlocking (with status 0). */
typedef struct {
  int err; /* 0 done; WEFT_ECLOSED; WEFT_EAGAIN would block; WEFT_ENOMEM */
  weft__wq_node_t *wake;
} chan_try_t;

/* A user's TSan edge for a value sent (sanitize.h): made as the value is published, under the
 * lock, so that a send that fails (closed, full, no memory) releases nothing (review, session
 * 33: a failed send's history reached the next receiver). */
static inline void chan_publishes(weft_chan_t *c) {
  weft__tsan_object_release(c);
}

/* A blocked sender's edge, keyed on its node, not the channel: only the receiver that takes the
 * node acquires it (try_recv_locked), so a send that times out, is cancelled or sees the close
 * while queued, or a select's case nobody took, passes nothing on (review, session 33) — unless
 * a later sender's node lands at the same stack address: TSan keeps a sync object per address
 * and never clears one on a stack, so that receiver acquires both histories (a plain thread
 * reusing a finished thread's stack; a task's reuse is ordered anyway by its worker's switches
 * or the stack pool's mutex). A missed race, never a false one; a heap token per blocked send
 * would close it. */
static inline void sender_queues(weft__wq_node_t *n) { weft__tsan_object_release(n); }

/* The other direction (Go's memory model): a receive is ordered before the completion of the
 * send it takes, and on a channel of capacity C the k-th receive before the completion of the
 * (k+C)-th send — the buffered channel used as a semaphore. A receive that takes a value
 * releases on the receive queue's address (chan_receives), which every send that succeeds
 * acquires (chan_observed_slow): more than Go promises (a send also acquires receives it did
 * not pair with), so a race may go unseen, never a false one reported. A receiver that blocks
 * releases on its own node (receiver_queues), acquired by the sender that takes the node
 * (try_send_locked), as a blocked sender's; that sender then releases on the receive queue's
 * address for the receiver, whose receive completes without a call of its own under the lock
 * (review D, session 36: a later sender's read was reported; user_sync's mode handed).
 * Review A, session 36: only a blocked sender's completion word gave an edge this way, so a
 * user's TSan reported a race for a send with no deadline and none for the same send with one.
 * Left (review D): a precise key, the ring slot a receive frees and a send fills (and none on
 * an unbounded channel, where Go orders nothing this way), would hide fewer races. */
static inline void chan_receives(weft_chan_t *c) { weft__tsan_object_release(&c->recvq); }
static inline void receiver_queues(weft__wq_node_t *n) { weft__tsan_object_release(n); }

static inline __attribute__((always_inline)) chan_try_t try_send_locked(weft_chan_t *c, void *v,
                                                                        weft_waitgroup_t *counts) {
  chan_try_t t = {0, NULL};
  if (c->closed) {
    t.err = WEFT_ECLOSED;
  } else if ((t.wake = wq_pop(&c->recvq))) {
    weft__tsan_object_acquire(t.wake); /* the blocked receiver's history (receiver_queues)... */
    chan_receives(c); /* ...for later sends too, as a receive's own (review D, session 36) */
    chan_publishes(c);
    t.wake->value = v; /* the ring is empty (receivers wait only then): hand it over */
    accepted(counts);
  } else if (ring_full(c)) {
    t.err = WEFT_EAGAIN;
  } else if (c->cap == WEFT_CHAN_UNBOUNDED && !ring_grow(c)) {
    t.err = WEFT_ENOMEM;
  } else {
    chan_publishes(c);
    ring_put(c, v);
    accepted(counts);
  }
  return t;
}

static inline __attribute__((always_inline)) chan_try_t try_recv_locked(weft_chan_t *c, void **v,
                                                                        weft_waitgroup_t *counts) {
  chan_try_t t = {0, NULL};
  if (c->len) {
    *v = ring_take(c);
    chan_receives(c);
    if ((t.wake = wq_pop(&c->sendq))) { /* refill: keeps FIFO */
      weft__tsan_object_acquire(t.wake); /* the blocked sender's history (sender_queues)... */
      chan_publishes(c);                 /* ...goes on with its value, into the ring */
      ring_put(c, t.wake->value);
      accepted(counts);
    }
  } else if ((t.wake = wq_pop(&c->sendq))) {
    weft__tsan_object_acquire(t.wake); /* as a refill's */
    chan_receives(c);
    *v = t.wake->value; /* a rendezvous */
    accepted(counts);
  } else {
    t.err = c->closed ? WEFT_ECLOSED : WEFT_EAGAIN;
  }
  return t;
}

/* ---- Send and receive ------------------------------------------------------------------------------- */

/* Always inlined, as it was by the compiler's choice until its sender/receiver edge made it
 * bigger: out of line it cost pingpong 20 instructions a send (callgrind, session 36). */
static inline __attribute__((always_inline)) int chan_block(weft_chan_t *c, weft__wq_t *q,
                                                            weft__wq_node_t *n,
                                                            uint64_t deadline_ns,
                                                            const char *what) {
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), what);
  weft__wait_reason(self, WEFT__WAIT_CHANNEL, (uintptr_t)c);
  if (q == &c->sendq)
    sender_queues(n);
  else
    receiver_queues(n);
  wq_push(q, n, false);
  return weft__wq_wait(self, &c->lock, q, n, deadline_ns);
}

/* What a receive (or a send) answered, with TSan's edge from c's senders and closer when a
 * receive took a value or either saw the close, and from c's receivers when a send succeeded
 * (chan_receives; sanitize.h's weft__tsan_acquired). Out of line and tested once, as
 * weft__tsan_acquired is: the plain paths pay one test and branch. */
static __attribute__((noinline, cold)) int chan_observed_slow(weft_chan_t *c, int err,
                                                              bool receive) {
  if ((receive && !err) || err == WEFT_ECLOSED) weft__tsan_object_acquire(c);
  if (!receive && !err) weft__tsan_object_acquire(&c->recvq);
  return err;
}

static inline int chan_observed(weft_chan_t *c, int err, bool receive) {
  return weft__tsan_on() ? chan_observed_slow(c, err, receive) : err;
}

/* counts: a queue's (accepted's), or NULL. Always inlined, so that a constant NULL folds. */
static inline __attribute__((always_inline)) int chan_send(weft_chan_t *c, void *v,
                                                           uint64_t deadline_ns, bool wait,
                                                           weft_waitgroup_t *counts) {
  if (!c) return WEFT_EINVAL;
  wq_lock(&c->lock);
  chan_try_t t = try_send_locked(c, v, counts);
  if (t.err != WEFT_EAGAIN || !wait) {
    wq_unlock(&c->lock);
    if (t.wake) wq_wake(t.wake->wait, 0);
    return chan_observed(c, t.err, false);
  }
  weft__wq_wait_t w;
  weft__wq_node_t n;
  wq_wait_init(&w, false);
  wq_node_init(&n, &w, v, 0);
  return chan_observed(c, chan_block(c, &c->sendq, &n, deadline_ns, "weft_chan_send"), false);
}

static inline __attribute__((always_inline)) int chan_recv(weft_chan_t *c, void **v,
                                                           uint64_t deadline_ns, bool wait,
                                                           weft_waitgroup_t *counts) {
  if (!c) return WEFT_EINVAL;
  void *got = NULL;
  wq_lock(&c->lock);
  chan_try_t t = try_recv_locked(c, &got, counts);
  if (t.err != WEFT_EAGAIN || !wait) {
    wq_unlock(&c->lock);
    if (t.wake) wq_wake(t.wake->wait, 0);
    if (!t.err && v) *v = got;
    return chan_observed(c, t.err, true);
  }
  weft__wq_wait_t w;
  weft__wq_node_t n;
  wq_wait_init(&w, false);
  wq_node_init(&n, &w, NULL, 0);
  int err = chan_block(c, &c->recvq, &n, deadline_ns, "weft_chan_recv");
  if (!err && v) *v = n.value;
  return chan_observed(c, err, true);
}

int weft_chan_send(weft_chan_t *c, void *value, uint64_t deadline_ns) {
  return chan_send(c, value, deadline_ns, true, NULL);
}

int weft_chan_try_send(weft_chan_t *c, void *value) { return chan_send(c, value, 0, false, NULL); }

int weft_chan_recv(weft_chan_t *c, void **value, uint64_t deadline_ns) {
  return chan_recv(c, value, deadline_ns, true, NULL);
}

int weft_chan_try_recv(weft_chan_t *c, void **value) { return chan_recv(c, value, 0, false, NULL); }

int weft_chan_close(weft_chan_t *c) {
  if (!c) return WEFT_EINVAL;
  wq_lock(&c->lock);
  if (c->closed) {
    wq_unlock(&c->lock);
    return WEFT_ECLOSED;
  }
  weft__tsan_object_release(c); /* what the closer wrote, to whoever sees the close */
  c->closed = true;
  weft__wq_node_t *list = NULL, *n;
  /* Receivers wait only on an empty ring: they all get "closed". Senders' values stay theirs. */
  while ((n = wq_pop(&c->recvq)) || (n = wq_pop(&c->sendq))) {
    n->next = list; /* dequeued: its links are ours */
    list = n;
  }
  wq_unlock(&c->lock);
  wq_wake_list(list, WEFT_ECLOSED);
  return 0;
}

int weft_chan_len(weft_chan_t *c, size_t *len) {
  if (!c || !len) return WEFT_EINVAL;
  wq_lock(&c->lock);
  *len = c->len;
  wq_unlock(&c->lock);
  return 0;
}

/* ---- Select ----------------------------------------------------------------------------------------- */

enum { SELECT_MAX = 64 }; /* cases per select: nodes live on the caller's stack */

/* xorshift32 per thread: the polling order's start (a task may move threads: any state will do). */
static _Thread_local uint32_t select_rng = 0x9e3779b9u;

static uint32_t select_random(void) {
  uint32_t x = select_rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return select_rng = x;
}

/* The cases' distinct channels in address order (Go's lockorder): every select locks them in
 * the same order. Insertion sort: n is small. Returns how many. */
static size_t lock_order(const weft_chan_op_t *ops, size_t n, weft_chan_t **order) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    weft_chan_t *c = ops[i].chan;
    if (!c) continue;
    size_t j = k;
    while (j > 0 && (uintptr_t)order[j - 1] > (uintptr_t)c) j--;
    if (j > 0 && order[j - 1] == c) continue; /* the same channel twice */
    memmove(&order[j + 1], &order[j], (k - j) * sizeof *order);
    order[j] = c;
    k++;
  }
  return k;
}

static void lock_all(weft_chan_t **order, size_t k) {
  for (size_t i = 0; i < k; i++) wq_lock(&order[i]->lock);
}

static void unlock_all(weft_chan_t **order, size_t k) {
  for (size_t i = k; i > 0; i--) wq_unlock(&order[i - 1]->lock);
}

static int select_checked(const weft_chan_op_t *ops, size_t n) {
  if (!ops || n == 0 || n > SELECT_MAX) return WEFT_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (ops[i].op != WEFT_CHAN_SEND && ops[i].op != WEFT_CHAN_RECV) return WEFT_EINVAL;
  return 0;
}

/* Under every lock: tries the cases in a random order (a Fisher-Yates permutation, Go's
 * pollorder: a random start going round would favour a ready case that follows a run of
 * unready ones); the first that does not block is done (its peer, if any, in *wake) and its
 * index returned; -1 if all would block. */
static int select_poll(weft_chan_op_t *ops, size_t n, chan_try_t *t) {
  uint8_t order[SELECT_MAX];
  for (size_t k = 0; k < n; k++) order[k] = (uint8_t)k;
  for (size_t k = n - 1; k > 0; k--) {
    size_t r = select_random() % (k + 1);
    uint8_t tmp = order[k];
    order[k] = order[r];
    order[r] = tmp;
  }
  for (size_t k = 0; k < n; k++) {
    size_t i = order[k];
    if (!ops[i].chan) continue; /* a NULL channel never becomes ready (Go's nil chan) */
    *t = ops[i].op == WEFT_CHAN_SEND ? try_send_locked(ops[i].chan, ops[i].value, NULL)
                                     : try_recv_locked(ops[i].chan, &ops[i].value, NULL);
    if (t->err != WEFT_EAGAIN) return (int)i;
  }
  return -1;
}

/* A waiting select's cases, for destroy (select_abandoned). */
typedef struct {
  weft_chan_op_t *ops;
  weft__wq_node_t *nodes;
  size_t n;
  weft_chan_t **order;
  size_t k;
  weft__wq_wait_t *w;
} select_waiting_t;

/* Takes back, under every case's lock, the nodes no peer took (the select's own way out). */
static void select_unlink(weft_chan_op_t *ops, weft__wq_node_t *nodes, size_t n,
                          weft_chan_t **order, size_t k) {
  lock_all(order, k);
  for (size_t i = 0; i < n; i++)
    if (nodes[i].queued)
      wq_unlink(ops[i].op == WEFT_CHAN_SEND ? &ops[i].chan->sendq : &ops[i].chan->recvq,
                &nodes[i]);
  unlock_all(order, k);
}

/* Destroy's way out for a select discarded while it waits: its nodes leave their queues, and a
 * peer that claimed one is waited out (its completion of the word). Review, session 24: the
 * nodes stayed queued on the unmapped stack. It takes every case's lock even after a claim, as a
 * woken select does (select_wait): a select's channels must outlive the call anyway, and the
 * losing cases' nodes may still be queued. */
static void select_abandoned(struct weft_task *t, void *ctx) {
  (void)t;
  select_waiting_t *s = ctx;
  select_unlink(s->ops, s->nodes, s->n, s->order, s->k);
  /* relaxed: claims are made under the cases' locks, which we took after them */
  if (atomic_load_explicit(&s->w->claim, memory_order_relaxed) != WQ_UNCLAIMED)
    weft__wq_settle(s->w);
}

/* Queues one node per case, waits, and takes back the nodes no peer took. */
static int select_wait(struct weft_task *self, weft_chan_op_t *ops, size_t n,
                       weft_chan_t **order, size_t k, uint64_t deadline_ns, size_t *index) {
  weft__wq_wait_t w;
  weft__wq_node_t nodes[SELECT_MAX];
  wq_wait_init(&w, true);
  for (size_t i = 0; i < n; i++) {
    wq_node_init(&nodes[i], &w, ops[i].value, (int)i);
    if (!ops[i].chan) continue;
    if (ops[i].op == WEFT_CHAN_SEND)
      sender_queues(&nodes[i]);
    else
      receiver_queues(&nodes[i]);
    wq_push(ops[i].op == WEFT_CHAN_SEND ? &ops[i].chan->sendq : &ops[i].chan->recvq, &nodes[i],
            false);
  }
  uint32_t before = weft__wq_state(self);
  unlock_all(order, k);
  select_waiting_t waiting = {ops, nodes, n, order, k, &w};
  int err = weft__wq_block(self, &w, deadline_ns, select_abandoned, &waiting);
  select_unlink(ops, nodes, n, order, k);
  /* relaxed: claims are made under the cases' locks, which we took after them */
  int won = atomic_load_explicit(&w.claim, memory_order_relaxed);
  if (won == WQ_UNCLAIMED) /* no peer took a node, and none can now: they are all out */
    return (int)weft__answer(err);
  if (err) weft__wq_undeliver(self, before); /* the hand-off won the race */
  weft__wq_settle(&w);
  *index = (size_t)won;
  if (ops[won].op == WEFT_CHAN_RECV) ops[won].value = nodes[won].value;
  return w.status;
}

static int select_ops(weft_chan_op_t *ops, size_t n, uint64_t deadline_ns, size_t *index);

int weft_chan_select(weft_chan_op_t *ops, size_t n, uint64_t deadline_ns, size_t *index) {
  int err = select_checked(ops, n);
  if (err) return err;
  size_t done = SIZE_MAX; /* set only when a case was done (or saw its channel closed) */
  err = select_ops(ops, n, deadline_ns, &done);
  if (done >= n) return err;
  if (index) *index = done;
  return chan_observed(ops[done].chan, err, ops[done].op == WEFT_CHAN_RECV);
}

static int select_ops(weft_chan_op_t *ops, size_t n, uint64_t deadline_ns, size_t *index) {
  weft_chan_t *order[SELECT_MAX];
  size_t k = lock_order(ops, n, order);
  lock_all(order, k);
  chan_try_t t;
  int ready = select_poll(ops, n, &t);
  if (ready >= 0 || deadline_ns == 0) {
    unlock_all(order, k);
    if (ready < 0) return WEFT_EAGAIN;
    if (t.wake) wq_wake(t.wake->wait, 0);
    *index = (size_t)ready;
    return t.err;
  }
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), "weft_chan_select");
  weft__wait_reason(self, WEFT__WAIT_CHANNEL, k ? (uintptr_t)order[0] : 0);
  return select_wait(self, ops, n, order, k, deadline_ns, index);
}

/* ---- Queue: asyncio.Queue's join and task_done ------------------------------------------------------- */

struct weft_queue {
  weft_chan_t *chan;
  weft_waitgroup_t *unfinished; /* items put and not yet marked done */
};

int weft_queue_create(weft_queue_t **out, size_t capacity) {
  if (!out) return WEFT_EINVAL;
  *out = NULL; /* as weft_runtime_create: a failed create leaves no stale handle */
  weft_queue_t *q = calloc(1, sizeof *q);
  if (!q) return WEFT_ENOMEM;
  int err = weft_chan_create(&q->chan, capacity);
  if (!err) err = weft_waitgroup_create(&q->unfinished);
  if (err) {
    weft_chan_destroy(q->chan);
    free(q);
    return err;
  }
  *out = q;
  return 0;
}

void weft_queue_destroy(weft_queue_t *q) {
  if (!q) return;
  /* checked here, before anything is freed, so that the sentence names the caller's call (the
   * wait group's own check named weft_waitgroup_destroy, after the channel was gone) */
  if (chan_awaited(q->chan) || weft__waitgroup_awaited(q->unfinished))
    weft__die("weft: weft_queue_destroy was called on a queue that tasks or threads still put "
              "to, get from or join.");
  weft_chan_destroy(q->chan);
  weft_waitgroup_destroy(q->unfinished);
  free(q);
}

static int queue_put(weft_queue_t *q, void *v, uint64_t deadline_ns, bool wait) {
  /* counted as accepted (accepted's comment) */
  return q ? chan_send(q->chan, v, deadline_ns, wait, q->unfinished) : WEFT_EINVAL;
}

int weft_queue_put(weft_queue_t *q, void *value, uint64_t deadline_ns) {
  return queue_put(q, value, deadline_ns, true);
}

int weft_queue_try_put(weft_queue_t *q, void *value) { return queue_put(q, value, 0, false); }

int weft_queue_get(weft_queue_t *q, void **value, uint64_t deadline_ns) {
  return q ? chan_recv(q->chan, value, deadline_ns, true, q->unfinished) : WEFT_EINVAL;
}

int weft_queue_try_get(weft_queue_t *q, void **value) {
  return q ? chan_recv(q->chan, value, 0, false, q->unfinished) : WEFT_EINVAL;
}

int weft_queue_task_done(weft_queue_t *q) {
  return q ? weft__waitgroup_add_as(q->unfinished, -1,
                                    "weft: weft_queue_task_done was called more times than "
                                    "items were put.")
           : WEFT_EINVAL;
}

int weft_queue_join(weft_queue_t *q, uint64_t deadline_ns) {
  return q ? weft_waitgroup_wait(q->unfinished, deadline_ns) : WEFT_EINVAL;
}

int weft_queue_close(weft_queue_t *q) { return q ? weft_chan_close(q->chan) : WEFT_EINVAL; }
