/*
 * Sockets that suspend the task, not the worker: fd waits and the socket operations.
 *
 * Every operation tries its system call first (the fd is non-blocking); on EAGAIN it waits for
 * the direction's readiness and tries again — Go's netFD loop. The wait (dir_wait) is the fd
 * park (lib/fdpark_impl.h, issue 12): the task publishes itself in the direction's park word
 * and the poller's edge claims it and wakes it through its park state, so a fd wait has a
 * deadline, is cancellable, appears in dumps (WEFT__WAIT_FD) and is taken apart by destroy like
 * any other wait (lib/join.c's weft__park_published), at six locked instructions per message.
 * The protocol with the poller (lib/poll.c, weft__poll_dir_notify), per direction:
 *   poller: edges += 1 (seq_cst); a task in the park word: claim it, wake it, free the word.
 *   waiter: seen := edges, read before the call that said "not now" (EAGAIN, or a short read);
 *           publish itself in the park word (seq_cst CAS), then reread edges (seq_cst):
 *           if edges != seen: withdraw and retry the call now; else suspend.
 * No lost edge: what arrives after the call looked at the kernel's queue raises an edge whose
 * bump comes after the call (the kernel's socket lock orders the arrival after the look, the
 * epoll callback and epoll_wait's harvest order the bump after the arrival), and so after the
 * read of `seen` in the count's order. Either the waiter's reread comes after that bump in the
 * seq_cst order, and it sees edges != seen, or its publication comes before the poller's look at
 * the word, and the poller finds it (fdpark_impl.h). One waiter per direction: a second finds
 * the word taken and gets WEFT_EBUSY (libdill's EEXIST) rather than a queue — a connection has
 * one reader task and one writer task in every server this serves. Rejected: the completion
 * word every other wait uses (join_impl.h; what this was until issue 12): an owner flag, a
 * reset, a waiter node and a join counter per wait, ten locked instructions per message.
 *
 * Short reads (Tokio's PollEvented::poll_read does the same): on a TCP socket, a read that
 * returns less than it was asked for emptied the receive queue, so the next read would answer
 * EAGAIN. The socket remembers the `seen` of that read (rd_drained), and the next read goes
 * straight to the wait with it: the same argument holds, with the short read as the call that
 * looked. That saves one system call per message in a request/response exchange (the echo
 * benchmark's read → write → read-EAGAIN became read → write, measured in bench/README.md).
 * Only TCP (SOCK_STREAM with SO_PROTOCOL IPPROTO_TCP): a datagram read returns one datagram of
 * several, an SCTP stream read one message, a Unix stream read stops between messages with
 * different credentials or fds, a tty at a line. A short read that reached the peer's end of
 * stream leaves it behind (the next read answers 0 at once, and no edge will come): the poller
 * marks a hang-up in `edges` for good (WEFT__EDGE_HUP, Tokio's sticky READ_CLOSED), and a `seen`
 * with the mark is no witness. Any other short read's `seen` is a valid witness, so two readers
 * racing on the field cannot make it wrong; a full read, an EOF or an error clears it. A read with
 * a deadline that has passed does not use it (a deadline of "now" is a poll: it must ask the
 * kernel), and a hinted wait that times out (a deadline scope's, which the hint does not see) asks
 * once too. Known limit, as in Tokio: TCP urgent data (MSG_OOB) stops a read at its mark with data
 * behind it; weft does not support urgent data (that data waits for the next arrival).
 *
 * Closing a socket another task waits on (Photon#925, Go's fdMutex): `refs` counts the
 * operations in progress and holds CLOSING and FINAL (lib/sockref_impl.h, the protocol and its
 * relacy model). weft_sock_close sets CLOSING and notifies both directions: each waiter wakes,
 * sees CLOSING and returns WEFT_EBADF; the fd itself is closed by whoever drops the last
 * reference, so no operation ever uses an fd number that was closed and perhaps reused. A plain
 * thread blocked in poll(2) cannot be woken that way: it polls in slices of THREAD_SLICE_MS and
 * checks CLOSING between them. A call that comes after the close (an acceptor task looping back
 * into weft_sock_accept as another task closes its listener — the examples' way to stop a
 * server — or a second weft_sock_close) takes and drops a reference and returns WEFT_EBADF; the
 * FINAL bit keeps its drop from closing the fd and freeing the descriptor a second time (found
 * by the TSan soak, session 12). Such a late call is safe while the descriptor is not reused by
 * a later socket (the poller hands freed descriptors out again); after that the handle names
 * the new socket (docs/api.md: do not use a closed handle).
 * Rejected: closing at once and letting waiters fail on EBADF (the number may be reused by
 * then, and the waiter would operate on someone else's file); shutdown(2) to wake blocked
 * threads (it sends FIN behind the owner's back, and is not for pipes).
 */
#include "fdpark.h"
#include "poller.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum {
  THREAD_SLICE_MS = 50,    /* picked: how soon a blocked plain thread notices a close */
  IOV_MAX_WEFT = 64,       /* writev's copy lives on the stack */
  BACKOFF_FIRST_MS = 5,    /* Go's net/http server: 5 ms doubling to 1 s after EMFILE */
  BACKOFF_MAX_MS = 1000,
  DROP_MAX = 64,           /* picked: pending connections dropped per EMFILE answer */
};

/* ---- References and close ------------------------------------------------------------------- */

static void sock_final(weft__sock_t *s) {
  int spare = atomic_exchange_explicit(&s->spare_fd, -1, memory_order_relaxed); /* last user */
  if (spare >= 0) close(spare);
  weft__poll_unregister(s->poller, s, true);
}

/* The reference word's protocol (lib/sockref_impl.h, model-checked by tests/model). */
#define SR_WORD _Atomic uint32_t
#define SR_LOAD(obj, mo) atomic_load_explicit((obj), (mo))
#define SR_FETCH_ADD(obj, v, mo) atomic_fetch_add_explicit((obj), (v), (mo))
#define SR_FETCH_SUB(obj, v, mo) atomic_fetch_sub_explicit((obj), (v), (mo))
#define SR_FETCH_OR(obj, v, mo) atomic_fetch_or_explicit((obj), (v), (mo))
#define SR_CAS(obj, expected, desired, mos, mof) \
  atomic_compare_exchange_strong_explicit((obj), &(expected), (desired), (mos), (mof))
#define SR_RLX memory_order_relaxed
#define SR_ACQ memory_order_acquire
#define SR_ACQ_REL memory_order_acq_rel
#define SR_FINAL(ctx) sock_final(ctx)
#define SR_FN(name) sockref_##name
#include "sockref_impl.h"

static void sock_unref(weft__sock_t *s) { sockref_drop(&s->refs, s); }

static int sock_ref(weft__sock_t *s) { return sockref_take(&s->refs, s) ? 0 : WEFT_EBADF; }

static bool sock_closing(weft__sock_t *s) { return sockref_closing(&s->refs); }

/* An operation's hold on s, in its caller's frame: its reference and, for a caller outside s's
 * runtime (a plain thread, another runtime's task), its count in the poller, which destroy
 * waits out before it frees the socket table (review, session 24: a thread blocked in a read
 * when destroy ran read the freed descriptor). */
typedef struct sock_op {
  weft__sock_t *s;
  bool outside;
  struct weft_task *task;         /* an outside caller that is another runtime's task */
  weft__discard_hook_t discarded; /* its record (op_discarded) */
} sock_op_t;

_Static_assert(WEFT__SOCK_REFS_FREE == (SR_CLOSING | SR_FINAL_BIT),
               "poller.h's free descriptor reads as closed");

/* Another runtime's task discarded inside a call on s (that runtime's destroy runs the record,
 * after withdrawing the task's wait on s: dir_abandon) gives back its reference and its count,
 * which would otherwise hold s's runtime's destroy for its whole bound and then keep the table
 * (review, session 24). */
static void op_discarded(void *ctx) {
  sock_op_t *op = ctx;
  struct weft__poller *p = op->s->poller;
  sock_unref(op->s);
  weft__poll_outside_leave(p);
}

static int __attribute__((noinline)) op_begin_outside(sock_op_t *op, weft__worker_t *w) {
  weft__sock_t *s = op->s;
  if (!weft__poll_outside_enter(s->poller)) return WEFT_EBADF;
  int err = sock_ref(s);
  if (err) {
    weft__poll_outside_leave(s->poller);
    return err;
  }
  op->task = w ? weft__current(w) : NULL;
  if (op->task) weft__discard_hook_push(op->task, &op->discarded, op_discarded, op);
  weft__probe_hit(WEFT__PROBE_SOCK_OUTSIDE);
  return 0;
}

static void __attribute__((noinline)) op_end_outside(sock_op_t *op) {
  if (op->task) weft__discard_hook_pop(op->task, &op->discarded); /* the same stack, moved or not */
  struct weft__poller *p = op->s->poller; /* read first: the drop may hand s out again */
  sock_unref(op->s);
  weft__poll_outside_leave(p);
}

/* Inlined: a task of s's own runtime (the server's case) pays a thread-local read and a
 * compare over the reference itself (an out-of-line op_begin cost the echo server ~60
 * instructions a message: callgrind, bench/echo_instructions.sh). 0 or WEFT_EBADF. */
static inline __attribute__((always_inline)) int op_begin(weft__sock_t *s, sock_op_t *op) {
  weft__worker_t *w = weft__worker_self();
  op->s = s;
  op->outside = !w || w->rt != s->rt;
  return WEFT__UNLIKELY(op->outside) ? op_begin_outside(op, w) : sock_ref(s);
}

static inline __attribute__((always_inline)) void op_end(sock_op_t *op) {
  if (WEFT__UNLIKELY(op->outside))
    op_end_outside(op);
  else
    sock_unref(op->s);
}

/* weft_sock_close's steps, for a caller already counted (op_begin's outside count). */
static int sock_close(weft__sock_t *s) {
  if (!sockref_close_begin(&s->refs, s)) return WEFT_EBADF; /* closed before, or a second close */
  weft__poll_dir_notify(&s->rd, false);
  weft__poll_dir_notify(&s->wr, false);
  sock_unref(s);
  return 0;
}

int weft_sock_close(weft_sock_t *s) {
  if (!s) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  bool outside = !w || w->rt != s->rt;
  if (outside && !weft__poll_outside_enter(s->poller)) return WEFT_EBADF;
  struct weft__poller *p = s->poller; /* read first: the close may hand s out again */
  int err = sock_close(s);
  if (outside) weft__poll_outside_leave(p);
  return err;
}

/* Destroy (runtime.c): every socket still open is closed as by weft_sock_close, which wakes
 * whoever waits on it from outside the runtime (a plain thread or a blocking-pool thread within
 * its poll slice, another runtime's task once that runtime runs it); closed descriptors answer
 * EBADF and are left alone. The sockets of discarded tasks stay referenced: the poller closes
 * their fds. Before the blocking pool is joined (review, session 24: a pool thread inside a read
 * kept destroy waiting for ever). */
static void sock_close_at_destroy(weft__sock_t *s) { (void)sock_close(s); }

void weft__io_close_all(struct weft_runtime *rt) {
  weft__poll_each_open(rt, sock_close_at_destroy);
}

bool weft__io_callers_left(struct weft_runtime *rt, uint64_t bound_ns) {
  return weft__poll_outside_left(rt, bound_ns);
}

/* ---- Waiting for a direction ---------------------------------------------------------------- */

/* Destroy's way out of a discarded task's fd wait (through lib/join.c's weft__wait_abandon):
 * out of the park word, or, if a deliverer holds it, once that deliverer is done. */
static void dir_abandon(struct weft_task *t, void *ctx) {
  weft__poll_dir_t *d = ctx;
  fdpark_withdraw(&d->park, (uintptr_t)t);
}

/* A task's wait for an edge after `seen` (fdpark_impl.h's waiter): 0 (retry the call) or an
 * error. */
static int task_dir_wait(struct weft_task *self, weft__sock_t *s, weft__poll_dir_t *d,
                         uint64_t deadline_ns, uint32_t seen) {
  if (sock_closing(s)) return WEFT_EBADF;
  deadline_ns = weft__wait_deadline(self, deadline_ns);
  /* A deadline already passed (a poll, or a scope's): no wait, but an edge since the call is
   * worth another call. No clock read without a deadline. acquire: as edges_before. */
  if (deadline_ns != UINT64_MAX && deadline_ns <= weft_now_ns()) {
    if (atomic_load_explicit(&d->edges, memory_order_acquire) != seen) return 0;
    /* a cancel first, as lib/join.c's await_word: this is a suspension point */
    return weft__checkpoint(self) ? WEFT_ECANCELED : WEFT_ETIMEDOUT; /* the op's count is ours */
  }
  if (!wake_park_begin(&self->state, true)) return WEFT_ECANCELED; /* the op's count is ours */
  int r = fdpark_park(&d->park, &d->edges, (uintptr_t)self, seen);
  if (r != FP_PARKED) { /* busy, or an edge came: no suspension; a cancel may have come */
    uint32_t side = wake_park_abort(&self->state);
    return side == WK_BY_CANCEL ? WEFT_ECANCELED : r == FP_BUSY ? WEFT_EBUSY : 0;
  }
  /* After the publication: a dump (and test_io's wait for it) that sees the reason finds the
   * direction taken. */
  weft__wait_reason(self, WEFT__WAIT_FD, (uint64_t)s->fd);
  int err = weft__park_published(self, deadline_ns, dir_abandon, d);
  if (err) fdpark_withdraw(&d->park, (uintptr_t)self); /* a timer or a cancel woke us */
  else fdpark_settle(&d->park);                       /* the deliverer's end, before reuse */
  if (err) return err;
  return sock_closing(s) ? WEFT_EBADF : 0;
}

static int poll_timeout_ms(uint64_t deadline_ns) {
  if (deadline_ns == UINT64_MAX) return THREAD_SLICE_MS;
  uint64_t now = weft_now_ns();
  if (deadline_ns <= now) return 0;
  uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
  return ms < THREAD_SLICE_MS ? (int)ms : THREAD_SLICE_MS;
}

/* A plain thread blocks in poll(2), in slices, so that a close reaches it. */
static int thread_dir_wait(weft__sock_t *s, short events, uint64_t deadline_ns) {
  for (;;) {
    if (sock_closing(s)) return WEFT_EBADF;
    if (deadline_ns != UINT64_MAX && weft_now_ns() >= deadline_ns) return WEFT_ETIMEDOUT;
    struct pollfd pfd = {.fd = s->fd, .events = events};
    int n = poll(&pfd, 1, poll_timeout_ms(deadline_ns));
    if (n > 0) return sock_closing(s) ? WEFT_EBADF : 0;
    if (n < 0 && errno != EINTR) return -errno;
  }
}

/* The direction's edge count, read before a call whose "not now" a wait would trust. */
static uint32_t edges_before(weft__poll_dir_t *d) {
  /* acquire: keeps the read ahead of the call (free on x86); dir_wait's argument needs only
   * that it precede the call's look at the kernel's queue */
  return atomic_load_explicit(&d->edges, memory_order_acquire);
}

/* Waits until the direction may have become ready since edges read `seen` (edges_before, ahead
 * of the call that answered "not now"): 0 (retry the call), or an error. */
static int dir_wait(weft__sock_t *s, weft__poll_dir_t *d, uint64_t deadline_ns, uint32_t seen) {
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), "a weft_sock_ operation");
  if (!self) return thread_dir_wait(s, d == &s->rd ? POLLIN : POLLOUT, deadline_ns);
  return task_dir_wait(self, s, d, deadline_ns, seen);
}

int weft_sock_wait(weft_sock_t *s, unsigned events, uint64_t deadline_ns) {
  if (!s || (events != WEFT_IO_READABLE && events != WEFT_IO_WRITABLE)) return WEFT_EINVAL;
  sock_op_t op;
  int err = op_begin(s, &op);
  if (err) return err;
  weft__poll_dir_t *d = events == WEFT_IO_READABLE ? &s->rd : &s->wr;
  /* Asked of the kernel each time: an edge says "something came", which may be stale
   * (edge-triggered: a direction ready now may never see a new edge, so ask first). */
  struct pollfd pfd = {.fd = s->fd, .events = events == WEFT_IO_READABLE ? POLLIN : POLLOUT};
  for (;;) {
    uint32_t seen = edges_before(d);
    if (err) break;
    int ready = poll(&pfd, 1, 0);
    if (ready < 0 && errno == EINTR) continue; /* not an answer (review, session 24: was "ready") */
    if (ready < 0) err = -errno;
    if (ready != 0) break;
    err = dir_wait(s, d, deadline_ns, seen);
  }
  /* Readable now: a short read's hint is stale (the edge that made it so may be undispatched,
   * and a read that trusted the hint would wait for it). relaxed: as read_leaves. */
  if (!err && d == &s->rd && s->tcp) atomic_store_explicit(&s->rd_drained, 0, memory_order_relaxed);
  op_end(&op);
  return weft__answer(err); /* the count is given back: a cancel may park here */
}

/* ---- The retry loop ------------------------------------------------------------------------- */

typedef ssize_t (*io_call_fn)(weft__sock_t *s, void *ctx);

/* Calls call(s, ctx) until it does not answer EAGAIN, waiting on d between tries. With
 * drained (a TCP read whose predecessor came back short: rd_drained), waits first. */
static ssize_t io_loop(weft__sock_t *s, weft__poll_dir_t *d, io_call_fn call, void *ctx,
                       uint64_t deadline_ns, uint64_t drained, uint32_t *seen_out) {
  if (drained) {
    int err = dir_wait(s, d, deadline_ns, (uint32_t)drained);
    /* busy: another reader waits; ask the kernel. Timed out: a deadline (the call's, or a
     * scope's, which read_hint does not see) that has passed makes the read a poll, and a
     * poll asks the kernel once (review, session 19: an expired scope answered ETIMEDOUT
     * with data queued). */
    if (err && err != WEFT_EBUSY && err != WEFT_ETIMEDOUT) return err;
  }
  for (;;) {
    uint32_t seen = edges_before(d);
    ssize_t n = call(s, ctx);
    if (n >= 0) {
      if (seen_out) *seen_out = seen;
      return n;
    }
    int e = errno;
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) return -e;
    int err = dir_wait(s, d, deadline_ns, seen);
    if (err) return err;
  }
}

#define DRAINED (UINT64_C(1) << 32)

/* The hint a TCP read leaves for the next: its queue was empty after it (a short read), or
 * unknown. relaxed: a hint whose every value is a sound witness (design comment); it reaches
 * the next reader with the data it read, or is a stale witness that only costs a read. */
static void read_leaves(weft__sock_t *s, ssize_t n, size_t asked, uint32_t seen) {
  uint64_t want = n > 0 && (size_t)n < asked && !(seen & WEFT__EDGE_HUP) ? DRAINED | seen : 0;
  if (atomic_load_explicit(&s->rd_drained, memory_order_relaxed) != want)
    atomic_store_explicit(&s->rd_drained, want, memory_order_relaxed);
}

/* The hint for a read about to start: DRAINED | seen, or 0 (call first). */
static uint64_t read_hint(weft__sock_t *s, uint64_t deadline_ns) {
  if (!s->tcp) return 0;
  uint64_t h = atomic_load_explicit(&s->rd_drained, memory_order_relaxed); /* relaxed: above */
  if (h && deadline_ns != UINT64_MAX && weft_now_ns() >= deadline_ns) return 0; /* a poll */
  return h;
}

/* The bytes iov asks for, or SIZE_MAX past SSIZE_MAX (the kernel's EINVAL; a sum that wrapped
 * to 0 read as "nothing asked", an end of stream: review, session 32). */
static size_t iov_total(const struct iovec *iov, int iovcnt) {
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    if (iov[i].iov_len > (size_t)SSIZE_MAX - total) return SIZE_MAX;
    else total += iov[i].iov_len;
  return total;
}

typedef struct io_buf {
  void *buf;
  size_t len;
  const struct iovec *iov;
  int iovcnt;
} io_buf_t;

/* The socket calls without libc's cancellation wrapper. recv, send, recvmsg and sendmsg are
 * pthread cancellation points: glibc brackets each system call with
 * __pthread_enable_asynccancel / __pthread_disable_asynccancel, a locked CAS on the thread's
 * cancel word each, so four locked instructions and ~57 instructions per echo message
 * (callgrind of examples/echo_server: 7 % of its user instructions, more than the fd park's
 * whole protocol). weft's fds are non-blocking, so these calls never block and a cancellation
 * point there serves nobody: a task is cancelled with weft_cancel, and a plain thread that waits
 * blocks in poll(2), which stays one. So weft makes the system call itself (Go does the same).
 * Not when a sanitizer is in the process (weft__san_hooks): TSan's and ASan's interceptors of
 * these calls are how they check the buffers and see the happens-before a socket carries (a
 * thread sends, a task reads what it sent), so then the libc calls. Cost: a program that
 * interposes recv or send (LD_PRELOAD) does not see weft's calls. */
static ssize_t sys_recv(int fd, void *buf, size_t len) {
  if (WEFT__UNLIKELY(weft__san_hooks())) return recv(fd, buf, len, 0);
  return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

static ssize_t sys_send(int fd, const void *buf, size_t len) {
  /* MSG_NOSIGNAL: a closed peer is WEFT_EPIPE, never a SIGPIPE that kills the process */
  if (WEFT__UNLIKELY(weft__san_hooks())) return send(fd, buf, len, MSG_NOSIGNAL);
  return syscall(SYS_sendto, fd, buf, len, MSG_NOSIGNAL, NULL, 0);
}

static ssize_t sys_recvmsg(int fd, struct msghdr *m) {
  if (WEFT__UNLIKELY(weft__san_hooks())) return recvmsg(fd, m, 0);
  return syscall(SYS_recvmsg, fd, m, 0);
}

static ssize_t sys_sendmsg(int fd, const struct msghdr *m) {
  if (WEFT__UNLIKELY(weft__san_hooks())) return sendmsg(fd, m, MSG_NOSIGNAL); /* as sys_send */
  return syscall(SYS_sendmsg, fd, m, MSG_NOSIGNAL);
}

/* Sockets are read with recv/recvmsg: read(2) goes through the VFS first (the file position
 * lock check, fsnotify), measurably more per call in a profile of the echo server (Tokio's
 * mio calls recv too). */
static ssize_t call_read(weft__sock_t *s, void *ctx) {
  io_buf_t *b = ctx;
  return s->is_socket ? sys_recv(s->fd, b->buf, b->len) : read(s->fd, b->buf, b->len);
}

static ssize_t call_readv(weft__sock_t *s, void *ctx) {
  io_buf_t *b = ctx;
  if (!s->is_socket) return readv(s->fd, b->iov, b->iovcnt);
  struct msghdr m = {.msg_iov = (struct iovec *)b->iov, .msg_iovlen = (size_t)b->iovcnt};
  return sys_recvmsg(s->fd, &m);
}

/* A write to a pipe whose reader is gone must not raise SIGPIPE (weft.h promises WEFT_EPIPE):
 * lib/sys.h's hold, three more system calls per pipe write; sockets (MSG_NOSIGNAL) and other
 * files (only pipes and FIFOs answer EPIPE) pay nothing. */
static ssize_t pipe_write(weft__sock_t *s, io_buf_t *b) {
  weft__sigpipe_hold_t hold;
  weft__sigpipe_hold(&hold);
  ssize_t n = b->iov ? writev(s->fd, b->iov, b->iovcnt) : write(s->fd, b->buf, b->len);
  weft__sigpipe_release(&hold, n, errno);
  return n;
}

static ssize_t call_write(weft__sock_t *s, void *ctx) {
  io_buf_t *b = ctx;
  if (s->is_socket) return sys_send(s->fd, b->buf, b->len);
  return s->is_pipe ? pipe_write(s, b) : write(s->fd, b->buf, b->len);
}

static ssize_t call_writev(weft__sock_t *s, void *ctx) {
  io_buf_t *b = ctx;
  if (!s->is_socket) return s->is_pipe ? pipe_write(s, b) : writev(s->fd, b->iov, b->iovcnt);
  struct msghdr m = {.msg_iov = (struct iovec *)b->iov, .msg_iovlen = (size_t)b->iovcnt};
  return sys_sendmsg(s->fd, &m);
}

/* A read of nothing from a TCP socket answers 0 at once, as read(2) says (review, session 24: TCP
 * answers EAGAIN to one while its queue is empty, and the read waited for data it would not
 * take). Other fds keep the kernel's answer: a datagram socket's read of nothing waits for a
 * datagram and consumes it, as recv(2) does. */
ptrdiff_t weft_sock_read(weft_sock_t *s, void *buf, size_t len, uint64_t deadline_ns) {
  if (!s || (!buf && len)) return WEFT_EINVAL;
  sock_op_t op;
  int err = op_begin(s, &op);
  if (err) return err;
  ssize_t n = 0;
  if (len || !s->tcp) {
    io_buf_t b = {.buf = buf, .len = len};
    uint32_t seen = 0;
    n = io_loop(s, &s->rd, call_read, &b, deadline_ns, read_hint(s, deadline_ns), &seen);
    if (s->tcp) read_leaves(s, n, len, seen);
  }
  op_end(&op);
  return weft__answer(n);
}

ptrdiff_t weft_sock_readv(weft_sock_t *s, const struct iovec *iov, int iovcnt,
                          uint64_t deadline_ns) {
  if (!s || !iov || iovcnt <= 0 || iovcnt > IOV_MAX) return WEFT_EINVAL;
  size_t asked = iov_total(iov, iovcnt);
  if (asked == SIZE_MAX) return WEFT_EINVAL;
  sock_op_t op;
  int err = op_begin(s, &op);
  if (err) return err;
  ssize_t n = 0;
  if (asked || !s->tcp) { /* nothing asked of TCP: 0 at once, as weft_sock_read */
    io_buf_t b = {.iov = iov, .iovcnt = iovcnt};
    uint32_t seen = 0;
    n = io_loop(s, &s->rd, call_readv, &b, deadline_ns, read_hint(s, deadline_ns), &seen);
    if (s->tcp) read_leaves(s, n, asked, seen);
  }
  op_end(&op);
  return weft__answer(n);
}

int weft_sock_write(weft_sock_t *s, const void *buf, size_t len, size_t *written,
                    uint64_t deadline_ns) {
  if (written) *written = 0;
  if (!s || (!buf && len)) return WEFT_EINVAL;
  sock_op_t op;
  int err = op_begin(s, &op);
  if (err) return err;
  size_t done = 0;
  while (done < len) {
    io_buf_t b = {.buf = (char *)buf + done, .len = len - done};
    ssize_t n = io_loop(s, &s->wr, call_write, &b, deadline_ns, 0, NULL);
    if (n < 0) {
      err = (int)n;
      break;
    }
    done += (size_t)n;
  }
  if (written) *written = done;
  op_end(&op);
  return weft__answer(err);
}

/* Drops the first `bytes` of the iovec array (a copy the caller owns). */
static int iov_advance(struct iovec *iov, int iovcnt, size_t bytes) {
  int i = 0;
  while (i < iovcnt && bytes >= iov[i].iov_len) bytes -= iov[i++].iov_len;
  if (i < iovcnt) {
    iov[i].iov_base = (char *)iov[i].iov_base + bytes;
    iov[i].iov_len -= bytes;
  }
  memmove(iov, iov + i, sizeof *iov * (size_t)(iovcnt - i));
  return iovcnt - i;
}

int weft_sock_writev(weft_sock_t *s, const struct iovec *iov, int iovcnt, size_t *written,
                     uint64_t deadline_ns) {
  if (written) *written = 0;
  if (!s || !iov || iovcnt <= 0 || iovcnt > IOV_MAX_WEFT) return WEFT_EINVAL;
  struct iovec left[IOV_MAX_WEFT];
  memcpy(left, iov, sizeof *iov * (size_t)iovcnt);
  sock_op_t op;
  int err = op_begin(s, &op);
  if (err) return err;
  size_t done = 0;
  int n_left = iov_advance(left, iovcnt, 0); /* skips leading empty buffers */
  while (n_left > 0) {
    io_buf_t b = {.iov = left, .iovcnt = n_left};
    ssize_t n = io_loop(s, &s->wr, call_writev, &b, deadline_ns, 0, NULL);
    if (n < 0) {
      err = (int)n;
      break;
    }
    done += (size_t)n;
    n_left = iov_advance(left, n_left, (size_t)n);
  }
  if (written) *written = done;
  op_end(&op);
  return weft__answer(err);
}

int weft_sock_shutdown(weft_sock_t *s, int how) {
  if (!s) return WEFT_EINVAL;
  sock_op_t op;
  int err = op_begin(s, &op);
  if (err) return err;
  if (shutdown(s->fd, how) != 0) err = -errno;
  op_end(&op);
  return err;
}

/* ---- Opening -------------------------------------------------------------------------------- */

static struct weft_runtime *runtime_or_current(struct weft_runtime *rt) {
  if (rt) return rt;
  weft__worker_t *w = weft__worker_self();
  return w ? w->rt : NULL;
}

/* Registers fd. tcp: 1 or 0 where the caller knows (accept, connect), -1 to ask the kernel.
 * spare: a listener's reserve fd (-1: none could be had), NULL for any other socket. */
static int sock_adopt(struct weft_runtime *rt, int fd, int tcp, const int *spare,
                      weft__sock_t **out) {
  struct weft__poller *p;
  int err = weft__poller_get(rt, &p);
  if (err) return err;
  int type = 0, protocol = 0;
  socklen_t tlen = sizeof type;
  bool is_socket = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0;
  if (tcp < 0) {
    /* The protocol, not the domain: an SCTP one-to-one socket is an AF_INET SOCK_STREAM too,
     * and its reads stop at message boundaries (review, session 19). */
    tlen = sizeof protocol;
    tcp = is_socket && type == SOCK_STREAM &&
          getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &tlen) == 0 &&
          protocol == IPPROTO_TCP;
  }
  struct stat st;
  bool is_pipe = !is_socket && fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
  /* A caller from outside the runtime (a plain thread's open, listen or connect) counts itself
   * in while it registers: destroy then waits for it instead of freeing the table under it
   * (review, session 26). */
  weft__worker_t *w = weft__worker_self();
  bool outside = !w || w->rt != rt;
  if (outside && !weft__poll_outside_enter(p)) return WEFT_EBADF;
  weft__sock_t *s;
  if ((err = weft__poll_register(p, fd, &s)) == 0) {
    s->rt = rt;
    s->is_socket = is_socket;
    s->is_pipe = is_pipe;
    s->tcp = tcp > 0;
    /* A listener's fields before the publish: once published, destroy's close walk may close
     * and free it, and the table go with it (review, session 32: weft_sock_listen set them
     * after, uncounted, and wrote into the freed table) */
    if (spare) {
      s->listening = true;
      /* relaxed: the publish's lock orders it before the close walk's look */
      atomic_store_explicit(&s->spare_fd, *spare, memory_order_relaxed);
    }
    err = weft__poll_publish(p, s); /* WEFT_EBADF: destroy began meanwhile */
  }
  if (outside) weft__poll_outside_leave(p);
  if (err) return err;
  weft__pause(WEFT__PAUSE_ADOPTED); /* tests: destroy comes now (test_io_gap) */
  *out = s;
  return 0;
}

int weft_sock_open(weft_runtime_t *rt, int fd, weft_sock_t **out) {
  if (!out || fd < 0 || !(rt = runtime_or_current(rt))) return WEFT_EINVAL;
  int flags = fcntl(fd, F_GETFL);
  /* not an open fd: bad input, not WEFT_EBADF's "closed by another task" (review, session 24) */
  if (flags < 0) return errno == EBADF ? WEFT_EINVAL : -errno;
  bool made_nonblocking = !(flags & O_NONBLOCK);
  if (made_nonblocking && fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return -errno;
  int err = sock_adopt(rt, fd, -1, NULL, out);
  /* on failure fd stays the caller's as it was (review, session 24: it was left non-blocking) */
  if (err && made_nonblocking) (void)fcntl(fd, F_SETFL, flags);
  return err;
}

int weft_sock_fd(const weft_sock_t *s) { return s ? s->fd : WEFT_EINVAL; }

int weft_sock_port(const weft_sock_t *s) {
  if (!s) return WEFT_EINVAL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(s->fd, (struct sockaddr *)&ss, &len) != 0) return -errno;
  if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return WEFT_EINVAL;
}

int weft_sock_addr(const char *host, uint16_t port, struct sockaddr_storage *addr, socklen_t *len) {
  if (!host || !addr || !len) return WEFT_EINVAL;
  memset(addr, 0, sizeof *addr);
  struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof *v4;
    return 0;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof *v6;
    return 0;
  }
  return WEFT_EINVAL;
}

/* Closes fd keeping the call's errno-style answer. */
static int fail_close(int fd, int err) {
  close(fd);
  return err;
}

/* A listener's reserve fd (the EMFILE answer's); a test can make it fail. An eventfd, not
 * libuv's open of a path: it needs no filesystem (a chroot or a container without /dev/null
 * failed that open for good, and every accept then paid a failing open for its refill). */
static int reserve_open(void) {
  return weft__fault_hit(WEFT__FAULT_RESERVE) ? -1 : eventfd(0, EFD_CLOEXEC);
}

int weft_sock_listen(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t len, int backlog,
                     unsigned flags, weft_sock_t **out) {
  if (!addr || !out || (flags & ~WEFT_LISTEN_REUSEPORT) || !(rt = runtime_or_current(rt)))
    return WEFT_EINVAL;
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return fail_close(fd, -errno);
  if ((flags & WEFT_LISTEN_REUSEPORT) &&
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
    return fail_close(fd, -errno);
  if (bind(fd, addr, len) != 0 || listen(fd, backlog > 0 ? backlog : SOMAXCONN) != 0)
    return fail_close(fd, -errno);
  weft__sock_t *s;
  int spare = reserve_open();
  int err = sock_adopt(rt, fd, -1, &spare, &s);
  if (err) {
    if (spare >= 0) close(spare);
    return fail_close(fd, err);
  }
  *out = s;
  return 0;
}

/* ---- Accept and its EMFILE answer ----------------------------------------------------------- */

/* Takes a reserve fd for l if it has none: the open at listen may have failed, or another
 * thread of the process took the slot that emfile_drop freed before its reopen (review,
 * session 19: the reserve was then lost for good, and every later exhaustion left clients
 * hanging). Called where an fd may have come free: before each EMFILE answer and after each
 * accepted connection (one relaxed load when the reserve is there). */
static void reserve_refill(weft__sock_t *l) {
  /* relaxed: a hint; the CAS below decides */
  if (atomic_load_explicit(&l->spare_fd, memory_order_relaxed) >= 0) return;
  int fd = reserve_open();
  if (fd < 0) return;
  int none = -1;
  /* acq_rel: as emfile_drop's exchange (two acceptors refilling: one keeps its fd) */
  if (!atomic_compare_exchange_strong_explicit(&l->spare_fd, &none, fd, memory_order_acq_rel,
                                               memory_order_relaxed))
    close(fd);
}

/* Out of fds: frees the reserve, accepts and closes what is pending (at most DROP_MAX), takes
 * the reserve back (libuv's uv__emfile_trick; without it an edge-triggered accept loop either
 * spins or leaves clients hanging). Without a reserve (not yet refilled), nothing to drop. */
static void emfile_drop(weft__sock_t *l) {
  reserve_refill(l);
  /* acq_rel exchanges: two acceptors racing here must not both close the same reserve */
  int spare = atomic_exchange_explicit(&l->spare_fd, -1, memory_order_acq_rel);
  if (spare < 0) return;
  close(spare);
  for (int i = 0; i < DROP_MAX; i++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) break;
    close(fd);
  }
  reserve_refill(l);
}

/* The backoff's wait until `until` (self: the task, or NULL on a plain thread): 0 or
 * WEFT_ETIMEDOUT at its end, earlier 0 (a new connection: the next try drops it), WEFT_EBADF
 * (the listener was closed) or WEFT_ECANCELED. A task waits for the listener's next edge, which
 * a close raises too (while it does, another task's weft_sock_wait for the listener's
 * readability gets WEFT_EBUSY, the one-waiter rule). A plain thread, or a task that finds
 * another waiting there, sleeps in slices and checks for a close between them: a thread's
 * poll(2) would return at once while connections are pending, and spin. */
static int backoff_wait(struct weft_task *self, weft__sock_t *l, uint64_t until, uint32_t seen) {
  if (self) {
    int err = task_dir_wait(self, l, &l->rd, until, seen);
    if (err != WEFT_EBUSY) return err;
  }
  /* A plain thread, or a task whose listener another task waits on (review: that task's plain
   * sleep did not see a close either) */
  for (;;) {
    if (sock_closing(l)) return WEFT_EBADF;
    uint64_t now = weft_now_ns();
    if (now >= until) return WEFT_ETIMEDOUT;
    uint64_t slice = now + (uint64_t)THREAD_SLICE_MS * 1000000u;
    int err = weft_sleep_until(slice < until ? slice : until); /* a task's: cancellable */
    if (err) return err;
  }
}

/* Waits min(delay, until the deadline — the caller's or its scope's), ended early by a close or
 * a new connection: 0 (try again), WEFT_EBADF (closed), WEFT_ETIMEDOUT (the deadline) or
 * WEFT_ECANCELED. Until session 19 a plain sleep, which a close did not reach: the acceptor
 * lingered up to a second after its listener was closed (review). seen: the listener's edges
 * read before the pending connections were dropped, so that one arriving after the last drop
 * ends the wait (review, session 24: read here, after the drops, it waited out the delay). */
static int backoff(weft__sock_t *l, uint64_t *delay_ms, uint64_t deadline_ns, uint32_t seen) {
  struct weft_task *self = weft__awaiting_task(weft__worker_self(), "weft_sock_accept");
  if (self) deadline_ns = weft__wait_deadline(self, deadline_ns);
  uint64_t now = weft_now_ns();
  if (deadline_ns != UINT64_MAX && now >= deadline_ns) /* a cancel first, as task_dir_wait */
    return self && weft__checkpoint(self) ? WEFT_ECANCELED : WEFT_ETIMEDOUT;
  uint64_t until = now + *delay_ms * 1000000u;
  bool capped = until >= deadline_ns;
  if (capped) until = deadline_ns;
  *delay_ms = *delay_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *delay_ms * 2;
  weft__probe_hit(WEFT__PROBE_ACCEPT_BACKOFF);
  int err = backoff_wait(self, l, until, seen);
  return err == WEFT_ETIMEDOUT && !capped ? 0 : err; /* the backoff's own end: try again */
}

typedef struct accept_ctx {
  struct sockaddr *addr;
  socklen_t *len;
  socklen_t len_in;
} accept_ctx_t;

static ssize_t call_accept(weft__sock_t *s, void *ctx) {
  accept_ctx_t *a = ctx;
  if (a->len) *a->len = a->len_in; /* in/out: fresh for every try */
  if (weft__fault_hit(WEFT__FAULT_ACCEPT)) {
    errno = EMFILE;
    return -1;
  }
  if (weft__fault_hit(WEFT__FAULT_ACCEPT_NET)) {
    errno = EPROTO;
    return -1;
  }
  if (weft__fault_hit(WEFT__FAULT_ACCEPT_NOMEM)) {
    errno = ENOBUFS;
    return -1;
  }
  return accept4(s->fd, a->addr, a->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

/* An error accept(2) takes from the connection it dequeued, not from the listener: the next
 * try takes the next connection (or waits for one), so retrying cannot spin. Linux's accept(2)
 * says to treat the network errors it passes on from a pending connection as EAGAIN: for TCP,
 * those below; ECONNABORTED is the client that gave up while queued. Not EOPNOTSUPP, which the
 * page lists too: it also means "not a stream socket", which would repeat for ever. Review,
 * session 24: only ECONNABORTED was retried, so an acceptor loop that stops on an error (as
 * the examples' do) stopped serving on one client's EPROTO. */
static bool accept_error_is_the_connections(int err) {
  switch (-err) {
  case ECONNABORTED:
  case EPROTO:
  case ENOPROTOOPT:
  case ENETDOWN:
  case ENETUNREACH:
  case EHOSTDOWN:
  case EHOSTUNREACH:
  case ENONET:
    return true;
  default:
    return false;
  }
}

/* Errors that would repeat at once, answered with the back-off instead of returned: out of fds
 * (EMFILE, ENFILE: the reserve's drop first), or the kernel out of memory for the connection
 * (ENOMEM, ENOBUFS: accept4 allocates before it dequeues, so the connection stays queued and the
 * next try fails the same way; no drop, which needs memory too). Review, session 34: those two
 * were returned, and the examples' accept loops, which retry, spun at 100 % CPU. */
static bool accept_error_is_exhaustion(int err) {
  return err == -EMFILE || err == -ENFILE || err == -ENOMEM || err == -ENOBUFS;
}

int weft_sock_accept(weft_sock_t *l, weft_sock_t **conn, struct sockaddr *addr, socklen_t *len,
                     uint64_t deadline_ns) {
  if (!l || !conn || (addr && !len)) return WEFT_EINVAL;
  sock_op_t op;
  int err = op_begin(l, &op);
  if (err) return err;
  accept_ctx_t a = {.addr = addr, .len = addr ? len : NULL, .len_in = addr ? *len : 0};
  uint64_t delay_ms = BACKOFF_FIRST_MS;
  for (;;) {
    ssize_t fd = io_loop(l, &l->rd, call_accept, &a, deadline_ns, 0, NULL);
    if (fd >= 0) {
      reserve_refill(l);
      weft__sock_t *s;
      err = sock_adopt(l->rt, (int)fd, l->tcp, NULL, &s); /* a TCP listener's connections are TCP */
      if (err) close((int)fd);
      else *conn = s;
      break;
    }
    err = (int)fd;
    if (accept_error_is_the_connections(err)) continue; /* take the next */
    if (!accept_error_is_exhaustion(err)) break;
    uint32_t seen = edges_before(&l->rd); /* before the drops: see backoff */
    if (err == -EMFILE || err == -ENFILE) emfile_drop(l);
    if ((err = backoff(l, &delay_ms, deadline_ns, seen)) != 0) break;
  }
  op_end(&op);
  return weft__answer(err);
}

/* ---- Connect -------------------------------------------------------------------------------- */

static int connect_finish(weft__sock_t *s, uint64_t deadline_ns) {
  for (;;) {
    uint32_t seen = edges_before(&s->wr);
    int so_error = 0;
    socklen_t elen = sizeof so_error;
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &so_error, &elen) != 0) return -errno;
    if (so_error) return -so_error;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (getpeername(s->fd, (struct sockaddr *)&peer, &plen) == 0) return 0;
    if (errno != ENOTCONN) return -errno;
    int err = dir_wait(s, &s->wr, deadline_ns, seen); /* still in progress: wait for the edge */
    if (err) return err;
  }
}

static int sock_connect(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t len,
                        uint64_t deadline_ns, weft_sock_t **conn) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int r;
  while ((r = connect(fd, addr, len)) != 0 && errno == EINTR) {
  }
  if (r != 0 && errno != EINPROGRESS) return fail_close(fd, -errno);
  /* Registered after connect: a fresh socket reports writable+hangup, which is no answer. */
  weft__sock_t *s;
  int err = sock_adopt(rt, fd, addr->sa_family == AF_INET || addr->sa_family == AF_INET6, NULL, &s);
  if (err) return fail_close(fd, err);
  if (r == 0) {
    *conn = s;
    return 0;
  }
  /* A hold for the wait, as every call's (review, session 24: a plain thread's connect was not
   * counted, and destroy freed the socket under it). EBADF: destroy has begun, and its walk
   * closes the socket. */
  sock_op_t op;
  if ((err = op_begin(s, &op)) != 0) return err;
  err = connect_finish(s, deadline_ns);
  op_end(&op);
  if (err) {
    weft_sock_close(s);
    return err;
  }
  *conn = s;
  return 0;
}

/* Another runtime's task discarded inside weft_sock_connect gives back its outer count too. */
static void connect_discarded(void *p) { weft__poll_outside_leave(p); }

int weft_sock_connect(weft_runtime_t *rt, const struct sockaddr *addr, socklen_t len,
                      uint64_t deadline_ns, weft_sock_t **conn) {
  if (!addr || !conn || !(rt = runtime_or_current(rt))) return WEFT_EINVAL;
  weft__worker_t *w = weft__worker_self();
  /* weft__answer: the socket closed and every count given back, a cancel may park (review,
   * session 32: a loop of connects ignoring WEFT_ECANCELED kept destroy waiting for ever) */
  if (w && w->rt == rt) return (int)weft__answer(sock_connect(rt, addr, len, deadline_ns, conn));
  /* From outside: counted in from before the socket is registered until after the wait's own
   * count (op_begin) ends; between the two, destroy could otherwise free the table (review,
   * session 26). Another runtime's task gets a discard record for it, as op_begin's count has
   * one (review, session 32: discarded in the wait, it held this runtime's destroy for its
   * bound, and the table was kept). */
  struct weft__poller *p;
  int err = weft__poller_get(rt, &p);
  if (err) return err;
  if (!weft__poll_outside_enter(p)) return WEFT_EBADF;
  struct weft_task *task = w ? weft__current(w) : NULL;
  weft__discard_hook_t discarded;
  if (task) weft__discard_hook_push(task, &discarded, connect_discarded, p);
  err = sock_connect(rt, addr, len, deadline_ns, conn);
  if (task) weft__discard_hook_pop(task, &discarded);
  weft__poll_outside_leave(p);
  return (int)weft__answer(err);
}
