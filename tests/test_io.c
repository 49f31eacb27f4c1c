/* Sockets that suspend the task (issue 12), on real loopback sockets: many connections across
 * more workers than cores, a peer reset mid-read, a half-close, a slow client that hits a read
 * deadline, fd exhaustion (RLIMIT_NOFILE lowered: the server keeps serving what it has and
 * recovers), a close while another task (or thread) waits, cancel during accept/read/write,
 * destroy with connections open, plain threads that block, one waiter per direction; and the
 * blocking pool: its bound, its queue, a cancelled awaiter, a queued call never started, and
 * its idle threads leaving after the keep-alive. Also: the poller's try-lock held by a busy
 * worker's poll, and what a short TCP read leaves for the next read. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "support.h"
#include "loopback.h"
#include "probes.h"
#include "../lib/internal.h" /* a task's wait state: the tests wait for "waiting on fd" */
#include "../lib/poller.h"   /* weft__poll_test_hold (the weft_testing library) */

#include <errno.h>
#include <semaphore.h>
#include <fcntl.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SEC_NS 1000000000ull

static uint64_t in_ns(uint64_t ns) { return weft_now_ns() + ns; }

/* Waits (yielding, or spinning on a plain thread) until t is suspended on an fd: the event the
 * tests synchronise on instead of sleeping. */
static void wait_until_fd_wait(weft_task_t *t) {
  while (!weft__task_waiting(t) ||
         atomic_load(&t->wait_reason) != WEFT__WAIT_FD) {
    if (weft_current()) weft_yield();
    else sched_yield();
  }
}

static weft_sock_t *connect_port(int port) {
  struct sockaddr_storage ss;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", (uint16_t)port, &ss, &len));
  weft_sock_t *c;
  OK(weft_sock_connect(NULL, (struct sockaddr *)&ss, len, in_ns(10 * SEC_NS), &c));
  return c;
}

/* ---- An echo server: one task accepts, one task per connection ----------------------------- */

typedef struct server server_t;
/* A connection task's argument: slots in the server, not malloc'd, because a task that a
 * destroy cancels before it starts never runs (so it could never free its argument). */
typedef struct conn_arg {
  server_t *srv;
  weft_sock_t *c;
} conn_arg_t;

enum { CONN_SLOTS = 1024 };
struct server {
  weft_sock_t *listener;
  atomic_int accepted, finished;
  weft_group_t *conns;
  conn_arg_t slots[CONN_SLOTS];
};

static void *echo_conn(void *arg) {
  weft_sock_t *c = arg;
  char buf[4096];
  for (;;) {
    ptrdiff_t n = weft_sock_read(c, buf, sizeof buf, UINT64_MAX);
    if (n <= 0) break;
    if (weft_sock_write(c, buf, (size_t)n, NULL, UINT64_MAX) != 0) break;
  }
  weft_sock_close(c);
  return NULL;
}

static void *echo_conn_counted(void *arg) {
  conn_arg_t *a = arg;
  server_t *srv = a->srv;
  weft_sock_t *c = a->c;
  echo_conn(c);
  atomic_fetch_add(&srv->finished, 1);
  return NULL;
}

static void *accept_loop(void *arg) {
  server_t *srv = arg;
  for (;;) {
    weft_sock_t *c;
    int err = weft_sock_accept(srv->listener, &c, NULL, NULL, UINT64_MAX);
    if (err) return IPTR(err);
    int k = atomic_fetch_add(&srv->accepted, 1);
    cr_assert_lt(k, CONN_SLOTS, "more connections than the test's slots");
    conn_arg_t *a = &srv->slots[k];
    a->srv = srv;
    a->c = c;
    weft_task_t *t;
    if (weft_spawn(&t, echo_conn_counted, a) == 0) weft_task_release(t);
  }
}

/* Cancels the acceptor, closes the listener and destroys the runtime. */
static void server_stop(weft_runtime_t *rt, server_t *srv, weft_task_t *acceptor) {
  OK(weft_cancel(acceptor));
  cr_assert_eq(weft_join(acceptor, NULL), WEFT_ECANCELED);
  OK(weft_sock_close(srv->listener));
  OK(weft_runtime_destroy(rt));
}

/* ---- Many connections across workers ------------------------------------------------------- */

typedef struct client_job {
  int port;
  int id;
  atomic_int *ok;
} client_job_t;

static void *echo_client(void *arg) {
  client_job_t *j = arg;
  weft_sock_t *c = connect_port(j->port);
  char out[3000], in[3000];
  for (size_t i = 0; i < sizeof out; i++) out[i] = (char)(j->id * 7 + i);
  for (int round = 0; round < 3; round++) {
    OK(weft_sock_write(c, out, sizeof out, NULL, in_ns(30 * SEC_NS)));
    size_t got = 0;
    while (got < sizeof in) {
      ptrdiff_t n = weft_sock_read(c, in + got, sizeof in - got, in_ns(30 * SEC_NS));
      cr_assert_gt(n, 0, "read: %s", weft_strerror((int)n));
      got += (size_t)n;
    }
    cr_assert_eq(memcmp(in, out, sizeof in), 0, "client %d got someone else's bytes", j->id);
  }
  OK(weft_sock_close(c));
  atomic_fetch_add(j->ok, 1);
  return NULL;
}

Test(io, many_connections_echo_across_more_workers_than_cores) {
  weft_runtime_t *rt = test_runtime(4); /* the machine has 2 cores */
  server_t srv = {0};
  srv.listener = listen_loopback(rt);
  weft_task_t *acceptor;
  OK(weft_runtime_spawn(rt, &acceptor, accept_loop, &srv));
  enum { CLIENTS = SCALE(400, 60) };
  static client_job_t jobs[CLIENTS];
  atomic_int ok = 0;
  weft_task_t *clients[CLIENTS];
  for (int i = 0; i < CLIENTS; i++) {
    jobs[i] = (client_job_t){.port = weft_sock_port(srv.listener), .id = i, .ok = &ok};
    OK(weft_runtime_spawn(rt, &clients[i], echo_client, &jobs[i]));
  }
  for (int i = 0; i < CLIENTS; i++) OK(weft_join(clients[i], NULL));
  cr_assert_eq(atomic_load(&ok), CLIENTS);
  cr_assert_eq(atomic_load(&srv.accepted), CLIENTS);
  while (atomic_load(&srv.finished) < CLIENTS) sched_yield(); /* each saw its client's close */
  /* Which workers ran the connection tasks is the scheduler's choice (they are spawned on the
   * acceptor's worker and stolen by idle ones): not asserted — under ASan one CI run kept all
   * 60 on one worker. What is asserted above holds whatever the spread. */
  server_stop(rt, &srv, acceptor);
}

/* ---- Peer reset, half-close, slowloris ------------------------------------------------------ */

typedef struct pair {
  weft_sock_t *server_side;
  int port;
  atomic_int stage;
  int result;
} pair_t;

static void *read_then_expect_reset(void *arg) {
  pair_t *p = arg;
  weft_sock_t *c;
  OK(weft_sock_accept(p->server_side, &c, NULL, NULL, in_ns(10 * SEC_NS)));
  char buf[16];
  ptrdiff_t n = weft_sock_read(c, buf, sizeof buf, in_ns(10 * SEC_NS));
  cr_assert_eq(n, 2);
  atomic_store(&p->stage, 1); /* the client resets now */
  n = weft_sock_read(c, buf, sizeof buf, in_ns(10 * SEC_NS));
  p->result = (int)n;
  OK(weft_sock_close(c));
  return NULL;
}

Test(io, peer_reset_mid_read_is_econnreset) {
  weft_runtime_t *rt = test_runtime(2);
  pair_t p = {0};
  p.server_side = listen_loopback(rt);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, read_then_expect_reset, &p));
  int fd = raw_connect(weft_sock_port(p.server_side)); /* this thread is a plain client */
  cr_assert_geq(fd, 0);
  cr_assert_eq(write(fd, "hi", 2), 2);
  while (!atomic_load(&p.stage)) sched_yield();
  struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends RST */
  cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
  close(fd);
  OK(weft_join(t, NULL));
  cr_assert_eq(p.result, WEFT_ECONNRESET, "got %d (%s)", p.result, weft_strerror(p.result));
  OK(weft_sock_close(p.server_side));
  OK(weft_runtime_destroy(rt));
}

static void *half_close_server(void *arg) {
  pair_t *p = arg;
  weft_sock_t *c;
  OK(weft_sock_accept(p->server_side, &c, NULL, NULL, in_ns(10 * SEC_NS)));
  char buf[64];
  size_t got = 0;
  for (;;) { /* read the whole request: it ends where the client half-closes */
    ptrdiff_t n = weft_sock_read(c, buf + got, sizeof buf - got, in_ns(10 * SEC_NS));
    cr_assert_geq(n, 0);
    if (n == 0) break;
    got += (size_t)n;
  }
  cr_assert_eq(got, 7);
  cr_assert_eq(memcmp(buf, "request", 7), 0);
  /* Our direction is still open: the reply goes out after the peer's end of stream. */
  OK(weft_sock_write(c, "reply", 5, NULL, in_ns(10 * SEC_NS)));
  OK(weft_sock_close(c));
  return NULL;
}

static void *half_close_client(void *arg) {
  pair_t *p = arg;
  weft_sock_t *c = connect_port(p->port);
  OK(weft_sock_write(c, "request", 7, NULL, in_ns(10 * SEC_NS)));
  OK(weft_sock_shutdown(c, SHUT_WR));
  char buf[64];
  size_t got = 0;
  for (;;) {
    ptrdiff_t n = weft_sock_read(c, buf + got, sizeof buf - got, in_ns(10 * SEC_NS));
    cr_assert_geq(n, 0);
    if (n == 0) break;
    got += (size_t)n;
  }
  cr_assert_eq(got, 5);
  cr_assert_eq(memcmp(buf, "reply", 5), 0);
  OK(weft_sock_close(c));
  return NULL;
}

Test(io, half_close_lets_the_reply_through) {
  weft_runtime_t *rt = test_runtime(2);
  pair_t p = {0};
  p.server_side = listen_loopback(rt);
  p.port = weft_sock_port(p.server_side);
  weft_task_t *s, *c;
  OK(weft_runtime_spawn(rt, &s, half_close_server, &p));
  OK(weft_runtime_spawn(rt, &c, half_close_client, &p));
  OK(weft_join(c, NULL));
  OK(weft_join(s, NULL));
  OK(weft_sock_close(p.server_side));
  OK(weft_runtime_destroy(rt));
}

static void *slow_read(void *arg) {
  pair_t *p = arg;
  weft_sock_t *c;
  OK(weft_sock_accept(p->server_side, &c, NULL, NULL, in_ns(10 * SEC_NS)));
  char buf[64];
  uint64_t t0 = weft_now_ns();
  /* The header deadline: 100 ms for the whole request, one byte arrives, never the rest. */
  uint64_t deadline = t0 + 100000000u;
  size_t got = 0;
  ptrdiff_t n;
  while ((n = weft_sock_read(c, buf + got, sizeof buf - got, deadline)) > 0) got += (size_t)n;
  p->result = (int)n;
  cr_assert_geq(weft_now_ns(), deadline, "the deadline came early");
  cr_assert_eq(got, 1);
  /* A deadline scope bounds socket calls as it bounds every wait. */
  weft_deadline_t scope;
  OK(weft_deadline_begin(&scope, weft_now_ns() + 20000000u));
  n = weft_sock_read(c, buf, sizeof buf, UINT64_MAX);
  cr_assert_eq(n, WEFT_ETIMEDOUT);
  cr_assert_eq(weft_deadline_end(&scope), WEFT_ETIMEDOUT);
  atomic_store(&p->stage, 1);
  OK(weft_sock_close(c));
  return NULL;
}

Test(io, slowloris_client_hits_the_read_deadline) {
  weft_runtime_t *rt = test_runtime(2);
  pair_t p = {0};
  p.server_side = listen_loopback(rt);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, slow_read, &p));
  int fd = raw_connect(weft_sock_port(p.server_side));
  cr_assert_eq(write(fd, "G", 1), 1); /* and then nothing */
  OK(weft_join(t, NULL));
  cr_assert_eq(p.result, WEFT_ETIMEDOUT);
  close(fd);
  OK(weft_sock_close(p.server_side));
  OK(weft_runtime_destroy(rt));
}

/* ---- fd exhaustion -------------------------------------------------------------------------- */

/* The forked client: only system calls (the parent has threads). Exit codes name the step. */
static int read_echo(int fd, char ch, int timeout_ms) {
  struct pollfd pfd = {.fd = fd, .events = POLLIN};
  if (write(fd, &ch, 1) != 1) return -1;
  if (poll(&pfd, 1, timeout_ms) != 1) return 0; /* hanging */
  char back;
  ssize_t n = read(fd, &back, 1);
  return n == 1 && back == ch ? 1 : -1; /* 1 served; -1 dropped (end of stream or reset) */
}

static int exhaustion_child(int port) {
  alarm(120); /* its own bound (the test's watchdog timer is not inherited): SIGALRM ends it */
  struct rlimit lim;
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max; /* the child is not the one under test */
  setrlimit(RLIMIT_NOFILE, &lim);
  enum { K = 24 };
  int fds[K];
  for (int i = 0; i < K; i++)
    if ((fds[i] = raw_connect(port)) < 0) return 10;
  if (read_echo(fds[0], 'a', 10000) != 1) return 11; /* the first is served */
  int served = 0, dropped = 0;
  for (int i = 1; i < K; i++) {
    int r = read_echo(fds[i], 'b', 5000);
    if (r == 1) served++;
    else if (r == -1) dropped++;
    else return 12; /* a connection left hanging */
  }
  if (!dropped) return 13;        /* the limit was never reached */
  if (read_echo(fds[0], 'c', 10000) != 1) return 14; /* it keeps serving what it has */
  for (int i = 0; i < K; i++) close(fds[i]);
  /* Recovery: once the handlers saw their closes, new connections are served (backoff ≤ 1 s). */
  for (int tries = 0; tries < 100; tries++) {
    int fd = raw_connect(port);
    int r = fd >= 0 ? read_echo(fd, 'd', 3000) : -1;
    if (fd >= 0) close(fd);
    if (r == 1) return 0;
    struct timespec ts = {0, 50000000};
    nanosleep(&ts, NULL);
  }
  return 15;
}

/* lose_reserve: the listener's reserve fd fails to open at listen (a fault), as when another
 * thread takes the slot an EMFILE answer freed before its reopen: the first accepted
 * connection must take it again, or the exhaustion leaves clients hanging (review, session 19:
 * a lost reserve was never replaced). */
static void exhaustion_test(bool lose_reserve) {
  weft_runtime_t *rt = test_runtime(2);
  server_t srv = {0};
  if (lose_reserve) weft__fault_set(WEFT__FAULT_RESERVE, 1);
  srv.listener = listen_loopback(rt);
  weft__fault_set(WEFT__FAULT_RESERVE, 0);
  int port = weft_sock_port(srv.listener);
  weft_task_t *acceptor;
  OK(weft_runtime_spawn(rt, &acceptor, accept_loop, &srv));
  struct rlimit old, lim;
  cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
  lim = old;
  lim.rlim_cur = (rlim_t)open_fds() + 10; /* room for a few connections only */
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) _exit(exhaustion_child(port));
  int status;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
  cr_assert(WIFEXITED(status));
  cr_assert_eq(WEXITSTATUS(status), 0, "the client failed at step %d", WEXITSTATUS(status));
  server_stop(rt, &srv, acceptor);
}

Test(io, fd_exhaustion_keeps_serving_and_recovers, .timeout = 120) { exhaustion_test(false); }

/* An acceptor backing off after EMFILE, with no reserve to drop what is pending and the process
 * out of fds, returns WEFT_EBADF once its listener is closed. Before session 19 its backoff was
 * a plain sleep and its retries never looked at the close: it went on backing off for as long
 * as the process was out of fds (review). "Out of fds" is two faults held for the test's
 * length (every accept answers EMFILE, every reserve fails to open): until session 21 it was a
 * real RLIMIT_NOFILE at the lowest free fd, and a thread of the process closing an fd below it
 * (the runtime's workers start meanwhile) let the accept succeed (stop 31's CI, gcc TSan). The
 * kernel's own EMFILE is fd_exhaustion_keeps_serving_and_recovers's. */
static void *accept_once(void *arg) {
  weft_sock_t *c;
  return IPTR(weft_sock_accept(arg, &c, NULL, NULL, UINT64_MAX));
}

typedef struct {
  weft_sock_t *l;
  int result;
} thread_accept_t;

static void *thread_accept_once(void *arg) {
  thread_accept_t *a = arg;
  a->result = PINT(accept_once(a->l));
  return NULL;
}

/* from_thread: the acceptor is a plain thread (its backoff sleeps in slices, checking for a
 * close between them), else a task (it waits for the listener's edge, which a close raises). */
static void backoff_then_close(bool from_thread) {
  weft_runtime_t *rt = test_runtime(2);
  weft__fault_set(WEFT__FAULT_RESERVE, 1);
  weft_sock_t *l = listen_loopback(rt);
  weft__fault_set(WEFT__FAULT_RESERVE, WEFT__FAULT_ALWAYS); /* no reserve, now or later */
  weft__fault_set(WEFT__FAULT_ACCEPT, WEFT__FAULT_ALWAYS);
  long backoffs = weft__probe_count(WEFT__PROBE_ACCEPT_BACKOFF);
  int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  cr_assert_geq(client, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)weft_sock_port(l))};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int c = connect(client, (struct sockaddr *)&a, sizeof a); /* pending: every accept fails */
  cr_assert(c == 0 || errno == EINPROGRESS);
  weft_task_t *t = NULL;
  pthread_t th;
  thread_accept_t ta = {.l = l, .result = 1};
  if (from_thread) cr_assert_eq(pthread_create(&th, NULL, thread_accept_once, &ta), 0);
  else OK(weft_runtime_spawn(rt, &t, accept_once, l));
  await_probe(WEFT__PROBE_ACCEPT_BACKOFF, backoffs + 3); /* backing off, 5 ms and doubling */
  OK(weft_sock_close(l));
  int err;
  void *r = NULL;
  if (from_thread) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    err = pthread_timedjoin_np(th, NULL, &until);
  } else {
    err = weft_await_until(t, in_ns(10 * SEC_NS), &r);
  }
  weft__fault_set(WEFT__FAULT_ACCEPT, 0);
  weft__fault_set(WEFT__FAULT_RESERVE, 0);
  cr_assert_eq(err, 0, "the acceptor went on backing off after its listener was closed");
  cr_assert_eq(from_thread ? ta.result : PINT(r), WEFT_EBADF);
  if (t) weft_task_release(t);
  close(client);
  OK(weft_runtime_destroy(rt));
}

Test(io, an_acceptor_task_backing_off_out_of_fds_returns_once_its_listener_is_closed,
     .timeout = 60) {
  backoff_then_close(false);
}

Test(io, an_acceptor_thread_backing_off_out_of_fds_returns_once_its_listener_is_closed,
     .timeout = 60) {
  backoff_then_close(true);
}

Test(io, a_listener_whose_reserve_fd_was_lost_takes_it_again_for_the_next_exhaustion,
     .timeout = 120) {
  exhaustion_test(true);
}

/* ---- Close while another waits; cancel during accept/read/write ------------------------------ */

typedef struct waiter {
  weft_sock_t *s;
  int result;
  size_t written;
} waiter_t;

static void *blocked_read(void *arg) {
  waiter_t *w = arg;
  char buf[8];
  w->result = (int)weft_sock_read(w->s, buf, sizeof buf, UINT64_MAX);
  return NULL;
}

static void *blocked_accept(void *arg) {
  waiter_t *w = arg;
  weft_sock_t *c;
  w->result = weft_sock_accept(w->s, &c, NULL, NULL, UINT64_MAX);
  return NULL;
}

static void *blocked_write(void *arg) {
  waiter_t *w = arg;
  size_t big = 8u << 20; /* far more than the socket buffers hold */
  char *buf = calloc(1, big);
  w->result = weft_sock_write(w->s, buf, big, &w->written, UINT64_MAX);
  free(buf);
  return NULL;
}

static void socket_pair(weft_runtime_t *rt, weft_sock_t **a, int *b) {
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  OK(weft_sock_open(rt, sv[0], a));
  *b = sv[1];
}

Test(io, close_wakes_a_task_waiting_on_the_socket_with_ebadf) {
  weft_runtime_t *rt = test_runtime(2);
  waiter_t w = {0};
  int peer;
  socket_pair(rt, &w.s, &peer);
  int fd = weft_sock_fd(w.s);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, blocked_read, &w));
  wait_until_fd_wait(t);
  OK(weft_sock_close(w.s));
  OK(weft_join(t, NULL));
  cr_assert_eq(w.result, WEFT_EBADF);
  /* The last operation out closed the fd (nothing of ours reopened the number meanwhile). */
  cr_assert_eq(fcntl(fd, F_GETFD), -1);
  close(peer);
  OK(weft_runtime_destroy(rt));
}

static void *read_on_plain_thread(void *arg) {
  blocked_read(arg);
  return NULL;
}

static void *close_from_task(void *arg) { return IPTR(weft_sock_close(arg)); }

Test(io, close_wakes_a_plain_thread_blocked_in_read) {
  weft_runtime_t *rt = test_runtime(1);
  waiter_t w = {0};
  int peer;
  socket_pair(rt, &w.s, &peer);
  w.result = 1;
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, read_on_plain_thread, &w), 0);
  /* No event says the thread is inside poll(2); a close before it got there answers the same
   * (the read sees CLOSING or EBADF), so the outcome does not depend on the timing. */
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, close_from_task, w.s));
  OK(weft_join(t, NULL));
  pthread_join(th, NULL);
  cr_assert_eq(w.result, WEFT_EBADF);
  close(peer);
  OK(weft_runtime_destroy(rt));
}

/* A plain thread blocked in a read when the runtime is destroyed: destroy closes the socket as
 * weft_sock_close does, so the thread wakes within its poll slice with WEFT_EBADF, and destroy
 * waits for it to leave before it frees the socket table (review, session 24: the thread read
 * the freed descriptor, which ASan reported; a write would have used a reused fd number). The
 * probe says the thread is inside the call, counted, before destroy begins. */
Test(io, destroy_wakes_a_plain_thread_blocked_in_read_and_waits_for_it_to_leave, .timeout = 30) {
  weft_runtime_t *rt = test_runtime(2);
  waiter_t w = {0};
  int peer;
  socket_pair(rt, &w.s, &peer);
  w.result = 1;
  long inside = weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, read_on_plain_thread, &w), 0);
  while (weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE) == inside) sched_yield();
  OK(weft_runtime_destroy(rt));
  pthread_join(th, NULL);
  cr_assert_eq(w.result, WEFT_EBADF, "the blocked read got %s", weft_err_name(w.result));
  char byte = 0;
  cr_assert_eq(read(peer, &byte, 1), 0, "destroy closed the thread's socket: its peer sees EOF");
  close(peer);
}

/* The same for a plain thread's connect still in progress (review, session 24: the connect was
 * not counted, and its thread read the freed descriptor). A listener whose backlog is full
 * drops the SYN, so the connect waits; destroy closes its socket under it: WEFT_EBADF. */
typedef struct {
  struct sockaddr_in to;
  weft_runtime_t *rt;
  int err;
} thread_connect_t;

static void *connect_from_thread(void *arg) {
  thread_connect_t *c = arg;
  weft_sock_t *s = NULL;
  c->err = weft_sock_connect(c->rt, (struct sockaddr *)&c->to, sizeof c->to,
                             in_ns(10 * SEC_NS), &s);
  return NULL;
}

Test(io, destroy_wakes_a_plain_thread_in_a_connect_and_waits_for_it_to_leave, .timeout = 30) {
  thread_connect_t c;
  int queued[FULL_QUEUED], l = full_listener(&c.to, queued);
  c.rt = test_runtime(1);
  long inside = weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, connect_from_thread, &c), 0);
  while (weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE) == inside) sched_yield();
  OK(weft_runtime_destroy(c.rt));
  pthread_join(th, NULL);
  cr_assert_eq(c.err, WEFT_EBADF, "the connect got %s", weft_err_name(c.err));
  full_listener_close(l, queued);
}

/* A blocking-pool thread inside a read on the runtime's socket when destroy runs: destroy closes
 * the sockets before it joins the pool, so the read ends (WEFT_EBADF) and destroy returns (review,
 * session 24: it joined the pool first, and waited for ever). */
static atomic_int pool_read_result;
static void *read_on_pool_thread(void *s) {
  char buf[8];
  atomic_store(&pool_read_result, (int)weft_sock_read(s, buf, sizeof buf, UINT64_MAX));
  return NULL;
}

static void *offload_read(void *s) { return IPTR(weft_offload(read_on_pool_thread, s, NULL)); }

Test(io, destroy_ends_a_blocking_pool_calls_socket_read_before_joining_the_pool, .timeout = 60) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.shutdown_timeout_ms = 100; /* the awaiting task waits for the started call: discarded */
  weft_runtime_t *rt = runtime_with(&o);
  weft_sock_t *s;
  int peer;
  socket_pair(rt, &s, &peer);
  atomic_store(&pool_read_result, 1);
  long inside = weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE);
  OK(weft_runtime_spawn(rt, NULL, offload_read, s));
  while (weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE) == inside) sched_yield();
  OK(weft_runtime_destroy(rt)); /* returns: the test's timeout is the failure */
  cr_assert_eq(atomic_load(&pool_read_result), WEFT_EBADF);
  close(peer);
}

/* A task of runtime B discarded inside a read on runtime A's socket gives its hold back when B is
 * destroyed, so A's destroy frees its socket table at once (review, session 24: A waited its
 * whole bound, then kept the table, its fds and 100 KB). */
static atomic_int cross_reading;
static void *stubborn_cross_read(void *s) {
  weft_shield_begin();
  atomic_store(&cross_reading, 1);
  char buf[8];
  int err = (int)weft_sock_read(s, buf, sizeof buf, UINT64_MAX);
  weft_shield_end();
  return IPTR(err);
}

Test(io, a_task_of_another_runtime_discarded_in_a_read_lets_the_sockets_runtime_free_it, .timeout = 30) {
  weft_runtime_t *a = test_runtime(1);
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.shutdown_timeout_ms = 50;
  weft_runtime_t *b = runtime_with(&o);
  weft_sock_t *s;
  int peer;
  socket_pair(a, &s, &peer);
  long inside = weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE);
  long kept = weft__probe_count(WEFT__PROBE_POLLER_KEPT);
  weft_task_t *t;
  atomic_store(&cross_reading, 0);
  OK(weft_runtime_spawn(b, &t, stubborn_cross_read, s));
  while (weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE) == inside) sched_yield();
  OK(weft_runtime_destroy(b)); /* discards the reader: its record gives its hold back */
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
  OK(weft_runtime_destroy(a));
  cr_assert_eq(weft__probe_count(WEFT__PROBE_POLLER_KEPT), kept, "A kept its socket table");
  char byte;
  cr_assert_eq(read(peer, &byte, 1), 0, "A's destroy closed the socket");
  close(peer);
}

/* The same inside a connect through A (review, session 32: the connect's own count, taken
 * before its socket exists, had no record, so A waited its bound and kept the table). */
static struct sockaddr_in cross_connect_to;
static weft_runtime_t *cross_connect_rt;
static void *stubborn_cross_connect(void *arg) {
  (void)arg;
  weft_shield_begin();
  weft_sock_t *c = NULL;
  int err = weft_sock_connect(cross_connect_rt, (struct sockaddr *)&cross_connect_to,
                              sizeof cross_connect_to, UINT64_MAX, &c);
  weft_shield_end();
  return IPTR(err);
}

Test(io, a_task_of_another_runtime_discarded_in_a_connect_lets_the_sockets_runtime_free_it, .timeout = 30) {
  int queued[FULL_QUEUED], l = full_listener(&cross_connect_to, queued);
  weft_runtime_t *a = cross_connect_rt = test_runtime(1);
  weft_sock_t *s;
  int peer;
  socket_pair(a, &s, &peer); /* A's poller exists */
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.shutdown_timeout_ms = 50;
  weft_runtime_t *b = runtime_with(&o);
  long inside = weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE);
  long kept = weft__probe_count(WEFT__PROBE_POLLER_KEPT);
  weft_task_t *t;
  OK(weft_runtime_spawn(b, &t, stubborn_cross_connect, NULL));
  while (weft__probe_count(WEFT__PROBE_SOCK_OUTSIDE) == inside) sched_yield(); /* its wait's */
  OK(weft_runtime_destroy(b)); /* discards the connecting task: its records give back both */
  cr_assert_eq(weft_await(t, NULL), WEFT_ESHUTDOWN);
  weft_task_release(t);
  uint64_t began = weft_now_ns();
  OK(weft_runtime_destroy(a));
  cr_assert_eq(weft__probe_count(WEFT__PROBE_POLLER_KEPT), kept, "A kept its socket table");
  cr_assert_lt(weft_now_ns() - began, 1500 * 1000000ull, "A's destroy waited out its 2 s bound");
  close(peer);
  full_listener_close(l, queued);
}

Test(io, cancel_during_accept_read_and_write) {
  weft_runtime_t *rt = test_runtime(2);
  weft_sock_t *l = listen_loopback(rt);
  waiter_t wa = {.s = l}, wr = {0}, ww = {0};
  int peer_r, peer_w;
  socket_pair(rt, &wr.s, &peer_r);
  socket_pair(rt, &ww.s, &peer_w);
  weft_task_t *ta, *tr, *tw;
  OK(weft_runtime_spawn(rt, &ta, blocked_accept, &wa));
  OK(weft_runtime_spawn(rt, &tr, blocked_read, &wr));
  OK(weft_runtime_spawn(rt, &tw, blocked_write, &ww));
  wait_until_fd_wait(ta);
  wait_until_fd_wait(tr);
  wait_until_fd_wait(tw);
  OK(weft_cancel(ta));
  OK(weft_cancel(tr));
  OK(weft_cancel(tw));
  weft_join(ta, NULL);
  weft_join(tr, NULL);
  weft_join(tw, NULL);
  cr_assert_eq(wa.result, WEFT_ECANCELED);
  cr_assert_eq(wr.result, WEFT_ECANCELED);
  cr_assert_eq(ww.result, WEFT_ECANCELED);
  cr_assert_gt(ww.written, 0, "the partial progress is reported");
  cr_assert_lt(ww.written, 8u << 20);
  /* Each socket is still usable after its waiter was cancelled. */
  cr_assert_eq(write(peer_r, "x", 1), 1);
  char ch;
  cr_assert_eq(weft_sock_read(wr.s, &ch, 1, UINT64_MAX), 1); /* a plain thread: blocks */
  OK(weft_sock_close(l));
  OK(weft_sock_close(wr.s));
  OK(weft_sock_close(ww.s));
  close(peer_r);
  close(peer_w);
  OK(weft_runtime_destroy(rt));
}

/* ---- The poller's try-lock (#12's review): an idle worker that finds it held by a busy
 * worker's non-blocking poll must still come to wait in epoll ------------------------------- */

Test(io, an_idle_worker_that_finds_the_poller_held_by_a_busy_poll_still_waits_in_it) {
  weft_runtime_t *rt = test_runtime(1); /* its one worker is the only one that can poll */
  waiter_t w = {0};
  int peer;
  socket_pair(rt, &w.s, &peer);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, blocked_read, &w));
  wait_until_fd_wait(t);
  /* Held as a busy worker's poll holds it: the idle worker, broken out of its epoll wait,
   * finds the lock taken. Before the fix it then slept on its futex and nobody waited in
   * epoll. The pause only gives it time to get there (should it not, the test passes without
   * having tested: it cannot fail falsely). */
  weft__poll_test_hold(rt, true);
  struct timespec pause = {.tv_nsec = 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  cr_assert_eq(write(peer, "x", 1), 1);
  uint64_t released = weft_now_ns();
  weft__poll_test_hold(rt, false);
  /* Timing is the feature here: the worker blocks in epoll once the lock is free and finds
   * the byte at once; asleep on its futex it would wake at its next deadline only (none, or
   * the scavenger's, up to ~1 s). The bound is generous for sanitizers and a loaded machine. */
  int err = weft_await_until(t, released + 5 * SEC_NS, NULL);
  uint64_t took_ms = (weft_now_ns() - released) / 1000000u;
  cr_assert_eq(err, 0, "the byte was not read within 5 s: nobody waited in epoll");
  cr_assert_lt(took_ms, 400, "the byte waited %llu ms for a poller", (unsigned long long)took_ms);
  OK(weft_join(t, NULL));
  cr_assert_eq(w.result, 1);
  OK(weft_sock_close(w.s));
  close(peer);
  OK(weft_runtime_destroy(rt));
}

/* ---- Short reads (lib/io.c): the next read waits for an edge, unless its deadline has passed -- */

typedef struct short_read_case {
  weft_sock_t *listener;
  int fd; /* the accepted socket's, for the test's poll(2) */
  atomic_int stage;
  ptrdiff_t first, second, third;
  uint64_t second_ns; /* how long the second read took */
  bool scoped; /* the second read's deadline is a scope's that has passed, not its own */
} short_read_case_t;

/* The case's task accepts the test's connection and says so (stage 1: the test sends). */
static weft_sock_t *short_read_accept(short_read_case_t *h) {
  weft_sock_t *c;
  OK(weft_sock_accept(h->listener, &c, NULL, NULL, in_ns(10 * SEC_NS)));
  h->fd = weft_sock_fd(c);
  atomic_store(&h->stage, 1);
  return c;
}

static void *short_read_then_poll(void *arg) {
  short_read_case_t *h = arg;
  weft_sock_t *c = short_read_accept(h); /* the test sends "ab" */
  char buf[8];
  h->first = weft_sock_read(c, buf, sizeof buf, in_ns(10 * SEC_NS)); /* short: the hint is left */
  atomic_store(&h->stage, 2); /* the test sends "c" and sees it arrive */
  while (atomic_load(&h->stage) != 3) {
    /* spins without suspending: the one worker polls nothing, so no edge is dispatched */
  }
  if (h->scoped) { /* a scope whose deadline has passed makes the read a poll too */
    weft_deadline_t scope;
    OK(weft_deadline_begin(&scope, weft_now_ns()));
    h->second = weft_sock_read(c, buf, sizeof buf, UINT64_MAX);
    weft_deadline_end(&scope);
  } else {
    h->second = weft_sock_read(c, buf, sizeof buf, weft_now_ns()); /* a deadline of now: a poll */
  }
  OK(weft_sock_close(c));
  return NULL;
}

/* One worker, a listener and fn's task accepting on it; returns the test's client fd once the
 * task has accepted (stage 1). */
static int short_read_start(weft_runtime_t *rt, short_read_case_t *h, weft_fn fn, weft_task_t **t) {
  h->listener = listen_loopback(rt);
  OK(weft_runtime_spawn(rt, t, fn, h));
  int fd = raw_connect(weft_sock_port(h->listener));
  cr_assert_geq(fd, 0);
  while (atomic_load(&h->stage) != 1) sched_yield();
  cr_assert_eq(write(fd, "ab", 2), 2);
  return fd;
}

static void short_read_end(weft_runtime_t *rt, short_read_case_t *h, weft_task_t *t, int fd) {
  OK(weft_join(t, NULL));
  close(fd);
  OK(weft_sock_close(h->listener));
  OK(weft_runtime_destroy(rt));
}

static void deadline_passed_after_a_short_read(bool scoped) {
  weft_runtime_t *rt = test_runtime(1);
  short_read_case_t h = {.scoped = scoped};
  weft_task_t *t;
  int fd = short_read_start(rt, &h, short_read_then_poll, &t);
  while (atomic_load(&h.stage) != 2) sched_yield();
  cr_assert_eq(write(fd, "c", 1), 1);
  struct pollfd arrived = {.fd = h.fd, .events = POLLIN};
  cr_assert_eq(poll(&arrived, 1, 5000), 1); /* "c" is in the task's socket, its edge unseen */
  atomic_store(&h.stage, 3);
  short_read_end(rt, &h, t, fd);
  cr_assert_eq(h.first, 2);
  /* The hint alone would have waited for the undispatched edge and timed out. */
  cr_assert_eq(h.second, 1);
}

Test(io, a_read_whose_deadline_has_passed_asks_the_kernel_even_after_a_short_read) {
  deadline_passed_after_a_short_read(false);
}

/* The same with the deadline of a scope (review, session 19: the hint did not see it). */
Test(io, a_read_whose_scope_has_expired_asks_the_kernel_even_after_a_short_read) {
  deadline_passed_after_a_short_read(true);
}

/* A read of nothing answers 0 at once, as recv(2) does, even after a short read whose hint
 * would make a read wait for the next edge (review, session 24: it waited for one that never
 * came, here until its deadline). */
static void *short_read_then_read_nothing(void *arg) {
  short_read_case_t *h = arg;
  weft_sock_t *c = short_read_accept(h); /* the test sends "ab", and nothing after it */
  char buf[8];
  h->first = weft_sock_read(c, buf, sizeof buf, in_ns(10 * SEC_NS)); /* short: the hint is left */
  h->second = weft_sock_read(c, buf, 0, in_ns(10 * SEC_NS));
  struct iovec nothing[2] = {{buf, 0}, {buf + 1, 0}};
  h->third = weft_sock_readv(c, nothing, 2, in_ns(10 * SEC_NS));
  OK(weft_sock_close(c));
  return NULL;
}

Test(io, a_read_of_nothing_after_a_short_read_returns_0_at_once) {
  weft_runtime_t *rt = test_runtime(1);
  short_read_case_t h = {0};
  weft_task_t *t;
  int fd = short_read_start(rt, &h, short_read_then_read_nothing, &t);
  short_read_end(rt, &h, t, fd);
  cr_assert_eq(h.first, 2);
  cr_assert_eq(h.second, 0, "a read of nothing got %s", weft_err_name((int)h.second));
  cr_assert_eq(h.third, 0, "a readv of nothing got %s", weft_err_name((int)h.third));
}

static void *short_read_at_end_of_stream(void *arg) {
  short_read_case_t *h = arg;
  weft_sock_t *c = short_read_accept(h); /* the test sends "ab" and its end of stream */
  while (atomic_load(&h->stage) != 2) weft_yield();
  /* Asleep, the one worker parks in the poller, which dispatches the data's edge with its
   * hang-up before this task's reads look at the socket. */
  OK(weft_sleep_until(in_ns(20 * 1000000ull)));
  char buf[8];
  h->first = weft_sock_read(c, buf, sizeof buf, in_ns(2 * SEC_NS)); /* "ab": short */
  uint64_t t0 = weft_now_ns();
  h->second = weft_sock_read(c, buf, sizeof buf, in_ns(2 * SEC_NS)); /* 0 at once */
  h->second_ns = weft_now_ns() - t0;
  OK(weft_sock_close(c));
  return NULL;
}

Test(io, a_short_read_that_reached_the_end_of_stream_leaves_no_hint) {
  weft_runtime_t *rt = test_runtime(1);
  short_read_case_t h = {0};
  weft_task_t *t;
  int fd = short_read_start(rt, &h, short_read_at_end_of_stream, &t);
  cr_assert_eq(shutdown(fd, SHUT_WR), 0);
  struct pollfd arrived = {.fd = h.fd, .events = POLLRDHUP};
  cr_assert_eq(poll(&arrived, 1, 5000), 1); /* data and end of stream are in the task's socket */
  atomic_store(&h.stage, 2);
  short_read_end(rt, &h, t, fd);
  cr_assert_eq(h.first, 2);
  /* Had the short read left its hint, this read would wait for an edge that never comes, until
   * its deadline (then it asks the kernel once, and gets the 0 anyway: review C, session 36,
   * hence the time; timing is the feature here, the bound is generous). */
  cr_assert_eq(h.second, 0);
  cr_assert_lt(h.second_ns, SEC_NS, "the read at the end of stream waited %llu ms",
               (unsigned long long)(h.second_ns / 1000000));
}

static void *read_twice(void *arg) {
  waiter_t *w = arg;
  char buf[4];
  return IPTR(weft_sock_read(w->s, buf, sizeof buf, UINT64_MAX));
}

Test(io, a_second_reader_gets_ebusy) {
  weft_runtime_t *rt = test_runtime(2);
  waiter_t w = {0};
  int peer;
  socket_pair(rt, &w.s, &peer);
  weft_task_t *first, *second;
  OK(weft_runtime_spawn(rt, &first, blocked_read, &w));
  wait_until_fd_wait(first);
  OK(weft_runtime_spawn(rt, &second, read_twice, &w));
  void *r;
  OK(weft_join(second, &r));
  cr_assert_eq((int)(intptr_t)r, WEFT_EBUSY);
  cr_assert_eq(write(peer, "ok", 2), 2);
  OK(weft_join(first, NULL));
  cr_assert_eq(w.result, 2);
  OK(weft_sock_close(w.s));
  close(peer);
  OK(weft_runtime_destroy(rt));
}

/* ---- Destroy with connections open; plain threads; vectors; connect errors ------------------- */

Test(io, destroy_with_connections_open_closes_them) {
  int before = open_fds();
  weft_runtime_t *rt = test_runtime(2);
  server_t srv = {0};
  srv.listener = listen_loopback(rt);
  weft_task_t *acceptor;
  OK(weft_runtime_spawn(rt, &acceptor, accept_loop, &srv));
  weft_task_release(acceptor);
  enum { N = 8 };
  int fds[N];
  for (int i = 0; i < N; i++) {
    fds[i] = raw_connect(weft_sock_port(srv.listener));
    cr_assert_geq(fds[i], 0);
  }
  while (atomic_load(&srv.accepted) < N) sched_yield();
  /* Every connection task is blocked in a read now or soon; destroy cancels them. */
  OK(weft_runtime_destroy(rt));
  for (int i = 0; i < N; i++) { /* the server side went away: end of stream for each client */
    char ch;
    cr_assert_eq(read(fds[i], &ch, 1), 0);
    close(fds[i]);
  }
  cr_assert_eq(open_fds(), before, "destroy left fds open");
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked across destroy");
#endif
}

static void *write_later(void *arg) {
  int fd = (int)(intptr_t)arg;
  OK(weft_sleep_ms(20));
  cr_assert_eq(write(fd, "abcdef", 6), 6);
  return NULL;
}

Test(io, a_plain_thread_blocks_and_vectors_round_trip) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *s;
  int peer;
  socket_pair(rt, &s, &peer);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, write_later, IPTR(peer)));
  char a[2], b[4];
  struct iovec iov[2] = {{a, sizeof a}, {b, sizeof b}};
  size_t got = 0;
  while (got < 6) { /* this thread is no worker: readv blocks it */
    ptrdiff_t n = weft_sock_readv(s, iov, 2, weft_now_ns() + 10 * SEC_NS);
    cr_assert_gt(n, 0);
    got += (size_t)n;
    if (got < 6) { /* rare: split delivery; shift what is left */
      iov[0].iov_len = 0;
      iov[1].iov_base = b + (got - 2);
      iov[1].iov_len = 6 - got;
    }
  }
  cr_assert_eq(memcmp(a, "ab", 2), 0);
  cr_assert_eq(memcmp(b, "cdef", 4), 0);
  struct iovec out[3] = {{"x", 1}, {"", 0}, {"yz", 2}};
  size_t written;
  OK(weft_sock_writev(s, out, 3, &written, UINT64_MAX));
  cr_assert_eq(written, 3);
  char back[3];
  cr_assert_eq(read(peer, back, 3), 3);
  cr_assert_eq(memcmp(back, "xyz", 3), 0);
  cr_assert_eq(weft_sock_read(s, a, 1, weft_now_ns() + 10000000u), WEFT_ETIMEDOUT);
  OK(weft_join(t, NULL));
  OK(weft_sock_close(s));
  close(peer);
  OK(weft_runtime_destroy(rt));
}

static void *connect_refused(void *arg) {
  int port = (int)(intptr_t)arg;
  struct sockaddr_storage ss;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", (uint16_t)port, &ss, &len));
  weft_sock_t *c;
  return IPTR(weft_sock_connect(NULL, (struct sockaddr *)&ss, len, in_ns(10 * SEC_NS), &c));
}

Test(io, connect_to_a_closed_port_is_refused) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt);
  int port = weft_sock_port(l);
  OK(weft_sock_close(l)); /* nobody listens there now */
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, connect_refused, IPTR(port)));
  void *r;
  OK(weft_join(t, &r));
  cr_assert_eq((int)(intptr_t)r, WEFT_ECONNREFUSED);
  struct sockaddr_storage ss;
  socklen_t len;
  cr_assert_eq(weft_sock_addr("not-an-address", 1, &ss, &len), WEFT_EINVAL);
  cr_assert_eq(weft_sock_wait(NULL, WEFT_IO_READABLE, 0), WEFT_EINVAL);
  OK(weft_runtime_destroy(rt));
}

/* Bad input gets WEFT_EINVAL, and a failed open leaves the caller's fd as it was (review,
 * session 24: readv passed 2000 iovecs to the kernel, whose -EMSGSIZE weft_strerror did not
 * name; an open that failed left the fd non-blocking). */
Test(io, a_readv_beyond_iov_max_is_einval_and_a_failed_open_leaves_the_fd_as_it_was) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *s;
  int peer;
  socket_pair(rt, &s, &peer);
  static struct iovec many[IOV_MAX + 1];
  char byte;
  for (int i = 0; i <= IOV_MAX; i++) many[i] = (struct iovec){&byte, 1};
  cr_assert_eq(weft_sock_readv(s, many, IOV_MAX + 1, 0), WEFT_EINVAL);
  OK(weft_sock_close(s));
  close(peer);
  /* Lengths past SSIZE_MAX are the kernel's EINVAL, never "nothing asked" (review, session 32:
   * on TCP a sum that wrapped to 0 answered 0 at once, an end of stream) */
  weft_sock_t *l = listen_loopback(rt), *tcp;
  int client = raw_connect(weft_sock_port(l));
  cr_assert_geq(client, 0);
  OK(weft_sock_accept(l, &tcp, NULL, NULL, in_ns(10 * SEC_NS)));
  struct iovec wraps[2] = {{&byte, SIZE_MAX}, {&byte, 1}};
  cr_assert_eq(weft_sock_readv(tcp, wraps, 2, 0), WEFT_EINVAL);
  OK(weft_sock_close(tcp));
  OK(weft_sock_close(l));
  close(client);
  /* epoll refuses a regular file (EPERM): the open fails */
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  int fd = fileno(f);
  cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
  cr_assert_eq(weft_sock_open(rt, fd, &s), WEFT_EPERM, "a regular file is not pollable");
  cr_assert_eq(fcntl(fd, F_GETFL) & O_NONBLOCK, 0, "the failed open left the fd non-blocking");
  fclose(f);
  /* an fd that is not open (beyond any fd limit) is bad input, not WEFT_EBADF ("closed by
   * another party") */
  cr_assert_eq(weft_sock_open(rt, 1 << 30, &s), WEFT_EINVAL);
  OK(weft_runtime_destroy(rt));
}

/* An error accept(2) passes on from the connection it dequeued (here EPROTO, injected for the
 * first try) is that connection's: the accept takes the next one instead of returning it
 * (review, session 24: only ECONNABORTED was skipped, so an acceptor loop that stops on an
 * error stopped serving). A plain thread accepts; the client's connect completed before. */
Test(io, an_accept_skips_a_connections_pending_network_error) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt);
  int first = raw_connect(weft_sock_port(l)), second = raw_connect(weft_sock_port(l));
  weft__fault_set(WEFT__FAULT_ACCEPT_NET, 1); /* the first try answers EPROTO */
  weft_sock_t *c = NULL;
  int err = weft_sock_accept(l, &c, NULL, NULL, in_ns(10 * SEC_NS));
  weft__fault_set(WEFT__FAULT_ACCEPT_NET, 0);
  cr_assert_eq(err, 0, "the accept returned the connection's error (%d)", err);
  cr_assert_not_null(c);
  OK(weft_sock_close(c));
  OK(weft_sock_close(l));
  close(first);
  close(second);
  OK(weft_runtime_destroy(rt));
}

/* The kernel short of memory for a connection (ENOBUFS, injected until the accept has backed
 * off three times): accept4 fails before it dequeues, so the connection stays queued and an
 * immediate retry fails again. The accept backs off (5 ms, doubling) instead of returning the
 * error, and then takes the connection (review, session 34: it returned ENOBUFS, and the
 * examples' accept loops, which retry at once, spun at 100 % CPU). A task accepts; the
 * client's connect completed before. */
typedef struct {
  weft_sock_t *l, *conn;
} accept_into_t;

static void *accept_into(void *arg) {
  accept_into_t *a = arg;
  return IPTR(weft_sock_accept(a->l, &a->conn, NULL, NULL, in_ns(10 * SEC_NS)));
}

Test(io, an_accept_backs_off_while_the_kernel_is_out_of_memory_then_takes_the_connection,
     .timeout = 60) {
  weft_runtime_t *rt = test_runtime(2);
  accept_into_t a = {listen_loopback(rt), NULL};
  int client = raw_connect(weft_sock_port(a.l));
  long backoffs = weft__probe_count(WEFT__PROBE_ACCEPT_BACKOFF);
  weft__fault_set(WEFT__FAULT_ACCEPT_NOMEM, WEFT__FAULT_ALWAYS);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, accept_into, &a));
  await_probe(WEFT__PROBE_ACCEPT_BACKOFF, backoffs + 3); /* backing off, not returning */
  weft__fault_set(WEFT__FAULT_ACCEPT_NOMEM, 0);           /* memory again */
  void *r = NULL;
  OK(weft_await_until(t, in_ns(10 * SEC_NS), &r));
  weft_task_release(t);
  cr_assert_eq(PINT(r), 0, "the accept returned the kernel's shortage (%ld) for its caller to retry",
               PINT(r));
  cr_assert_not_null(a.conn);
  OK(weft_sock_close(a.conn));
  OK(weft_sock_close(a.l));
  close(client);
  OK(weft_runtime_destroy(rt));
}

/* An acceptor that loops back into weft_sock_accept just after another task closed its listener
 * (the examples stop their servers so) and a second close: both come after the close's final
 * step, and each must return WEFT_EBADF without running it again. Before SOCK_FINAL (lib/io.c)
 * each late call closed the socket a second time and put its descriptor on the poller's free
 * list again, so that two later sockets shared one descriptor (the TSan soak's report,
 * session 12). Checked here: the late calls' answers, and two sockets opened after them are
 * distinct and both work. */
Test(io, calls_after_a_close_return_ebadf_and_free_the_socket_once) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt);
  OK(weft_sock_close(l)); /* nothing in progress: the close is final at once */
  weft_sock_t *c = NULL;
  cr_assert_eq(weft_sock_accept(l, &c, NULL, NULL, 0), WEFT_EBADF);
  cr_assert_eq(weft_sock_close(l), WEFT_EBADF, "a second close");
  cr_assert_null(c);
  weft_sock_t *a = listen_loopback(rt), *b = listen_loopback(rt);
  cr_assert_neq(a, b, "two open sockets share one descriptor");
  cr_assert_neq(weft_sock_port(a), weft_sock_port(b));
  cr_assert_gt(weft_sock_port(a), 0);
  cr_assert_gt(weft_sock_port(b), 0);
  OK(weft_sock_close(a));
  OK(weft_sock_close(b));
  OK(weft_runtime_destroy(rt));
}

/* ---- The blocking pool ---------------------------------------------------------------------- */

typedef struct pool_probe {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int running, max_running, ran;
  bool gate_open;  /* opens for good once `running` reached the bound */
  int bound;
} pool_probe_t;

static void *gated_call(void *arg) {
  pool_probe_t *p = arg;
  pthread_mutex_lock(&p->lock);
  if (++p->running > p->max_running) p->max_running = p->running;
  if (p->running >= p->bound) p->gate_open = true;
  pthread_cond_broadcast(&p->cond);
  while (!p->gate_open) pthread_cond_wait(&p->cond, &p->lock);
  p->running--;
  p->ran++;
  pthread_mutex_unlock(&p->lock);
  return IPTR(42);
}

static void *offload_once(void *arg) {
  void *r = NULL;
  int err = weft_offload(gated_call, arg, &r);
  return err ? weft_fail(err) : r;
}

/* Up to blocking_threads calls run at once, also right after some threads went idle: N calls
 * that can only finish together (each waits, 2 s at most, for all N to arrive). */
enum { MEET_N = 6 };
static pthread_mutex_t meet_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t meet_cond = PTHREAD_COND_INITIALIZER;
static int meet_arrived;

static void *meet_warm(void *arg) { return arg; }

static void *meet_all(void *arg) {
  (void)arg;
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 2; /* a bound on a failure, not a timing of success */
  pthread_mutex_lock(&meet_lock);
  meet_arrived++;
  pthread_cond_broadcast(&meet_cond);
  int ok = 1;
  while (meet_arrived < MEET_N && ok) ok = pthread_cond_timedwait(&meet_cond, &meet_lock, &until) == 0;
  pthread_mutex_unlock(&meet_lock);
  return IPTR(meet_arrived >= MEET_N);
}

static void *offload_meet(void *arg) {
  void *r = NULL;
  OK(weft_offload(arg, NULL, &r));
  return r;
}

static void *meet_main(void *arg) {
  (void)arg;
  weft_task_t *t[MEET_N];
  for (int i = 0; i < 2; i++) OK(weft_spawn(&t[i], offload_meet, meet_warm));
  for (int i = 0; i < 2; i++) OK(weft_join(t[i], NULL));
  OK(weft_sleep_ms(5)); /* the warm-up's threads go idle */
  for (int i = 0; i < MEET_N; i++) OK(weft_spawn(&t[i], offload_meet, meet_all));
  long together = 0;
  for (int i = 0; i < MEET_N; i++) {
    void *r = NULL;
    OK(weft_join(t[i], &r));
    together += PINT(r);
  }
  return IPTR(together);
}

Test(io, offload_runs_as_many_calls_at_once_as_it_has_threads) {
  for (int round = 0; round < 5; round++) {
    meet_arrived = 0;
    weft_options_t o = WEFT_OPTIONS_INIT;
    o.workers = 2;
    o.blocking_threads = MEET_N;
    void *r = NULL;
    OK(weft_run(&o, meet_main, NULL, &r));
    cr_assert_eq(PINT(r), MEET_N, "round %d: a call waited behind a busy thread", round);
  }
}

Test(io, offload_is_bounded_and_queues_the_rest) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 2;
  o.blocking_threads = 2;
  weft_runtime_t *rt;
  OK(weft_runtime_create(&rt, &o));
  pool_probe_t p = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .bound = 2};
  enum { CALLS = 8 };
  weft_task_t *t[CALLS];
  for (int i = 0; i < CALLS; i++) OK(weft_runtime_spawn(rt, &t[i], offload_once, &p));
  for (int i = 0; i < CALLS; i++) {
    void *r;
    OK(weft_join(t[i], &r));
    cr_assert_eq(r, IPTR(42));
  }
  cr_assert_eq(p.ran, CALLS);
  cr_assert_eq(p.max_running, 2, "two calls ran at once, never more");
  OK(weft_runtime_destroy(rt));
  void *r;
  p.gate_open = true;
  OK(weft_offload(gated_call, &p, &r)); /* a plain thread: called right here */
  cr_assert_eq(r, IPTR(42));
}

typedef struct cancel_probe {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool started, release, finished;
  atomic_int second_ran;
  /* offload_held's view: its offload's answer, whether the call had finished by then, and what
   * its next suspension point answered */
  int offload_err, next_err;
  bool finished_at_return;
} cancel_probe_t;

static void *held_call(void *arg) {
  cancel_probe_t *c = arg;
  pthread_mutex_lock(&c->lock);
  c->started = true;
  pthread_cond_broadcast(&c->cond);
  while (!c->release) pthread_cond_wait(&c->cond, &c->lock);
  c->finished = true;
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

static void *mark_call(void *arg) {
  atomic_store(&((cancel_probe_t *)arg)->second_ran, 1);
  return NULL;
}

static void *offload_held(void *arg) {
  cancel_probe_t *c = arg;
  c->offload_err = weft_offload(held_call, arg, NULL);
  pthread_mutex_lock(&c->lock);
  c->finished_at_return = c->finished;
  pthread_mutex_unlock(&c->lock);
  c->next_err = weft_yield();
  return NULL;
}
static void *offload_mark(void *arg) { return IPTR(weft_offload(mark_call, arg, NULL)); }
static void *offload_nop(void *arg) {
  (void)arg;
  return IPTR(weft_offload(mark_call, &(cancel_probe_t){0}, NULL));
}

/* A runtime of `workers` with one blocking-pool thread, running fn(c) as a task whose offloaded
 * held_call has started (and is held until c->release). */
static weft_runtime_t *offload_started(int workers, weft_fn fn, cancel_probe_t *c,
                                       weft_task_t **t) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = workers;
  o.blocking_threads = 1;
  weft_runtime_t *rt;
  OK(weft_runtime_create(&rt, &o));
  OK(weft_runtime_spawn(rt, t, fn, c));
  pthread_mutex_lock(&c->lock);
  while (!c->started) pthread_cond_wait(&c->cond, &c->lock);
  pthread_mutex_unlock(&c->lock);
  return rt;
}

/* A cancel skips a call still queued (its awaiter returns at once) and waits for one already
 * running, whose result comes back with 0 and whose task sees the cancel at its next
 * suspension point. Until session 20 the running call's awaiter returned at once too, while
 * the call still used arg (review: it wrote into the next task's stack). */
Test(io, offload_cancel_skips_a_queued_call_and_waits_for_a_running_one) {
  cancel_probe_t c = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
  weft_task_t *held, *queued;
  weft_runtime_t *rt = offload_started(2, offload_held, &c, &held);
  /* The only pool thread is busy: this one queues. */
  OK(weft_runtime_spawn(rt, &queued, offload_mark, &c));
  while (!weft__task_waiting(queued)) sched_yield();
  OK(weft_cancel(held));
  OK(weft_cancel(queued));
  void *r;
  /* The queued one's offload answers WEFT_ECANCELED at once, while the call is still held. */
  cr_assert_eq(weft_join(queued, &r), WEFT_ECANCELED);
  cr_assert_eq((int)(intptr_t)r, 0);
  pthread_mutex_lock(&c.lock);
  cr_assert(!c.finished);
  cr_assert_eq(weft_task_done(held), 0, "the running call's awaiter left before the call ended");
  c.release = true;
  pthread_cond_broadcast(&c.cond);
  pthread_mutex_unlock(&c.lock);
  cr_assert_eq(weft_join(held, &r), WEFT_ECANCELED, "its cancel was not kept for later");
  cr_assert_eq(c.offload_err, 0, "the call ran to its end: %s", weft_strerror(c.offload_err));
  cr_assert(c.finished_at_return, "weft_offload returned before its call ended");
  cr_assert_eq(c.next_err, WEFT_ECANCELED, "the pending cancel was lost");
  /* FIFO: a call queued after the cancelled one has run, so that one was skipped, not late. */
  weft_task_t *after;
  OK(weft_runtime_spawn(rt, &after, offload_nop, NULL));
  OK(weft_join(after, &r));
  cr_assert_eq((int)(intptr_t)r, 0);
  cr_assert_eq(atomic_load(&c.second_ran), 0, "a queued call whose awaiter left was run");
  OK(weft_runtime_destroy(rt));
#if TEST_ASAN
  cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "a job leaked");
#endif
}

/* A cancel that comes while the offloaded call runs is left pending: the offload answers 0 and
 * does not deliver it, so a task that returns right after ends with its own result (review,
 * session 32: it ended WEFT_ECANCELED, its result lost, though no call had answered that). */
static void *offload_then_return(void *arg) {
  cancel_probe_t *c = arg;
  c->offload_err = weft_offload(held_call, arg, NULL);
  c->next_err = weft_cancelling(); /* requested, still */
  return IPTR(7);
}

Test(io, a_cancel_during_a_running_offload_stays_pending_and_undelivered) {
  cancel_probe_t c = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
  weft_task_t *t;
  weft_runtime_t *rt = offload_started(1, offload_then_return, &c, &t);
  while (!weft__task_waiting(t)) sched_yield(); /* in the offload's await */
  OK(weft_cancel(t));
  pthread_mutex_lock(&c.lock);
  c.release = true;
  pthread_cond_broadcast(&c.cond);
  pthread_mutex_unlock(&c.lock);
  void *r = NULL;
  cr_assert_eq(weft_join(t, &r), 0, "the task ended cancelled though no call answered that");
  cr_assert_eq(PINT(r), 7);
  cr_assert_eq(c.offload_err, 0);
  cr_assert_eq(c.next_err, 1, "the cancel is still requested");
  OK(weft_runtime_destroy(rt));
}

/* A destroy from a call the runtime's own pool runs would wait for its own thread to leave:
 * it aborts with a sentence (review, session 20: it hung for good). */
static void *destroy_from_the_pool(void *arg) {
  weft_runtime_destroy(arg);
  return NULL;
}
static void *offload_destroy(void *arg) { return IPTR(weft_offload(destroy_from_the_pool, arg, NULL)); }

Test(io, a_destroy_from_an_offload_call_of_its_runtime_aborts, .signal = SIGABRT, .timeout = 30) {
  weft_runtime_t *rt = test_runtime(1);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, offload_destroy, rt));
  weft_join(t, NULL); /* the abort ends the process first */
}

static int threads_now(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/task");
  cr_assert(d);
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void *count_threads_call(void *arg) { /* runs on the pool thread */
  *(int *)arg = threads_now();
  return NULL;
}

static void *offload_count_threads(void *arg) {
  return IPTR(weft_offload(count_threads_call, arg, NULL));
}

Test(io, offload_threads_leave_after_the_keepalive) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1;
  o.blocking_keepalive_ms = 50;
  weft_runtime_t *rt;
  OK(weft_runtime_create(&rt, &o));
  int base = threads_now(); /* the worker (and any monitor) */
  int during = 0;
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, offload_count_threads, &during));
  OK(weft_join(t, NULL));
  cr_assert_eq(during, base + 1, "the pool started one thread for the call");
  /* The event: the thread's exit, seen in /proc; bounded by a generous 10 s. */
  uint64_t give_up = weft_now_ns() + 10 * SEC_NS;
  while (threads_now() > base && weft_now_ns() < give_up) sched_yield();
  cr_assert_eq(threads_now(), base, "the idle pool thread did not leave");
  OK(weft_runtime_spawn(rt, &t, offload_count_threads, &during)); /* a new one on demand */
  OK(weft_join(t, NULL));
  cr_assert_eq(during, base + 1);
  OK(weft_runtime_destroy(rt));
}

/* A blocking pool thread's last steps (its return through the library's code) come before
 * weft_runtime_destroy returns, since a dlclose may unmap that code next (review, session 30:
 * the threads were detached and counted out just before those steps, and a loop of dlopen,
 * offload, destroy and dlclose crashed in them). The pause holds the leaving thread until we
 * let it go or 300 ms pass; destroy must not return before it is through. */
static sem_t pool_exit_may_go;
static atomic_bool pool_exit_done;
static void hold_the_leaving_pool_thread(void) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_nsec += 300 * 1000000L;
  if (until.tv_nsec >= 1000000000L) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000L;
  }
  while (sem_timedwait(&pool_exit_may_go, &until) != 0 && errno == EINTR) continue;
  atomic_store(&pool_exit_done, true);
}

Test(io, destroy_returns_after_every_blocking_pool_thread_has_ended) {
  sem_init(&pool_exit_may_go, 0, 0);
  weft__pause_set(WEFT__PAUSE_POOL_THREAD_LEFT, hold_the_leaving_pool_thread);
  weft_runtime_t *rt = test_runtime(1);
  int during = 0;
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, offload_count_threads, &during)); /* starts the pool's thread */
  OK(weft_join(t, NULL));
  OK(weft_runtime_destroy(rt));
  bool done = atomic_load(&pool_exit_done);
  sem_post(&pool_exit_may_go); /* a thread destroy did not wait for goes now */
  cr_assert(done, "weft_runtime_destroy returned while a pool thread still ran the library");
  cr_assert_gt(during, 0);
}

/* ---- Pipes and a second registration (review, session 19) ----------------------------------- */

/* A write to a pipe whose reader is gone answers WEFT_EPIPE, from a task and from a plain
 * thread, and the process lives on (SIGPIPE's default action would kill it: Criterion would
 * report a crash); the signal is not left pending, and the thread's mask is as it was. */
static void *write_to_broken_pipe(void *arg) {
  weft_sock_t *w = arg;
  size_t written = 7;
  cr_assert_eq(weft_sock_write(w, "x", 1, &written, in_ns(5 * SEC_NS)), WEFT_EPIPE);
  cr_assert_eq(written, 0);
  struct iovec iov[2] = {{"a", 1}, {"b", 1}};
  cr_assert_eq(weft_sock_writev(w, iov, 2, &written, in_ns(5 * SEC_NS)), WEFT_EPIPE);
  sigset_t pending, mask;
  cr_assert_eq(sigpending(&pending), 0);
  cr_assert_eq(sigismember(&pending, SIGPIPE), 0, "the write left SIGPIPE pending");
  cr_assert_eq(pthread_sigmask(SIG_SETMASK, NULL, &mask), 0);
  cr_assert_eq(sigismember(&mask, SIGPIPE), 0, "the write left SIGPIPE blocked");
  return NULL;
}

Test(io, a_write_to_a_pipe_without_a_reader_is_epipe_not_sigpipe) {
  weft_runtime_t *rt = test_runtime(2);
  int p[2];
  cr_assert_eq(pipe(p), 0);
  cr_assert_eq(close(p[0]), 0); /* the reader is gone */
  weft_sock_t *w;
  OK(weft_sock_open(rt, p[1], &w));
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, write_to_broken_pipe, w));
  OK(weft_join(t, NULL));
  write_to_broken_pipe(w); /* a plain thread */
  OK(weft_sock_close(w));
  OK(weft_runtime_destroy(rt));
}

/* Opening an fd that is already open as a socket fails with EEXIST and leaves the first
 * socket working: its reader still gets what the peer sends. Before session 19 the failed
 * registration's clean-up removed the first one's from epoll, and its reader waited forever. */
static void *read_five(void *arg) {
  weft_sock_t *c = arg;
  char buf[8];
  return IPTR(weft_sock_read(c, buf, sizeof buf, in_ns(10 * SEC_NS)));
}

Test(io, opening_an_open_fd_again_fails_and_leaves_the_first_socket_working) {
  weft_runtime_t *rt = test_runtime(2);
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  weft_sock_t *first, *second = NULL;
  OK(weft_sock_open(rt, sv[0], &first));
  cr_assert_eq(weft_sock_open(rt, sv[0], &second), -EEXIST);
  cr_assert_null(second);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, read_five, first));
  wait_until_fd_wait(t); /* the reader needs the edge from the registration that must survive */
  cr_assert_eq(write(sv[1], "hello", 5), 5);
  void *r;
  OK(weft_join(t, &r));
  cr_assert_eq(PINT(r), 5, "the first socket's reader got %ld", PINT(r));
  OK(weft_sock_close(first));
  close(sv[1]);
  OK(weft_runtime_destroy(rt));
}

/* A runtime's poller and blocking pool are made at their first use and published with a
 * compare-and-swap (no process-wide lock: fork, lib/poll.c): threads that race to a first use
 * all get the one winner's, and each loser closes what it made (no fd left open). */
typedef struct {
  weft_runtime_t *rt;
  pthread_barrier_t start;
  weft_sock_t *listener[4];
} first_use_t;

static void *listen_at_once(void *arg) {
  first_use_t *f = arg;
  static atomic_int next;
  int i = atomic_fetch_add(&next, 1) % 4;
  struct sockaddr_storage addr;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", 0, &addr, &len));
  pthread_barrier_wait(&f->start);
  OK(weft_sock_listen(f->rt, (struct sockaddr *)&addr, len, 0, 0, &f->listener[i]));
  return NULL;
}

static void *offload_identity(void *arg) { return arg; }

static void *offload_at_once(void *arg) {
  void *r = NULL;
  OK(weft_offload(offload_identity, arg, &r));
  cr_assert_eq(r, arg);
  return NULL;
}

Test(io, threads_racing_to_a_runtimes_first_poller_and_pool_share_one_and_leak_no_fd) {
  for (int round = 0; round < 20; round++) {
    int before = open_fds();
    first_use_t f = {.rt = test_runtime(4)};
    pthread_barrier_init(&f.start, NULL, 4);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) cr_assert_eq(pthread_create(&th[i], NULL, listen_at_once, &f), 0);
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    struct weft__poller *p = atomic_load(&f.rt->poller);
    cr_assert_not_null(p);
    for (int i = 0; i < 4; i++) {
      cr_assert_not_null(f.listener[i]);
      OK(weft_sock_close(f.listener[i]));
    }
    weft_task_t *t[8];
    for (int i = 0; i < 8; i++) OK(weft_runtime_spawn(f.rt, &t[i], offload_at_once, &t[i]));
    for (int i = 0; i < 8; i++) OK(weft_join(t[i], NULL));
    cr_assert_eq(atomic_load(&f.rt->poller), p, "a loser's poller was published");
    pthread_barrier_destroy(&f.start);
    OK(weft_runtime_destroy(f.rt));
    cr_assert_eq(open_fds(), before, "round %d: a first use left an fd open", round);
  }
}
