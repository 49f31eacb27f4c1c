/* Deterministic regression tests for two windows of lib/io.c that test_io reaches only by
 * chance: the accept gap (a connection that arrives after accept4 answered EAGAIN and before
 * the acceptor parks) in both of the fd park's branches, and weft_sock_wait's retry of a poll(2)
 * that answered EINTR. The windows are opened by interposing accept4 and poll: this binary
 * defines them (the library is linked statically, so its calls bind here) and forwards to the
 * next definition (libc's, or a sanitizer's interceptor) through dlsym(RTLD_NEXT). Each
 * interposer acts once, when armed, on the one fd the test names; otherwise it only forwards. */
#define _GNU_SOURCE
#include "support.h"
#include "loopback.h"
#include "../lib/internal.h"
#include "../lib/poller.h" /* weft__sock_t: the listener's read edges */

#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SEC_NS 1000000000ull
static uint64_t in_ns(uint64_t ns) { return weft_now_ns() + ns; }

/* ---- The interposers -------------------------------------------------------------------------- */

typedef int (*accept4_fn)(int, struct sockaddr *, socklen_t *, int);
typedef int (*poll_fn)(struct pollfd *, nfds_t, int);

enum { GAP_OFF, GAP_UNDISPATCHED, GAP_DISPATCHED };
static atomic_int gap_mode;        /* what the armed accept4 does in the gap */
static atomic_int gap_fd = -1;     /* the listener's fd */
static weft__sock_t *gap_listener; /* its descriptor: the read direction's edges */
static atomic_int gap_client = -1; /* the connection made in the gap (the test closes it) */
static atomic_int gap_done;        /* the gap was opened (1) */
static atomic_uint gap_edges_at;   /* the listener's edges when accept4 had answered EAGAIN */
static atomic_uint gap_edges_after; /* ... and when the gap ended */

int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
  static accept4_fn real;
  if (!real) real = (accept4_fn)dlsym(RTLD_NEXT, "accept4");
  int r = real(fd, addr, len, flags);
  int e = errno;
  if (r < 0 && (e == EAGAIN || e == EWOULDBLOCK) && fd == atomic_load(&gap_fd)) {
    int mode = atomic_exchange(&gap_mode, GAP_OFF);
    if (mode != GAP_OFF) {
      /* The gap: accept4 looked at an empty queue; a connection arrives now (loopback: the
       * handshake is done by the time connect returns, and the listener's epoll item is
       * queued), before the task reads the edges again and parks. */
      weft__poll_dir_t *d = &gap_listener->rd;
      atomic_store(&gap_edges_at, atomic_load(&d->edges));
      atomic_store(&gap_client, raw_connect(weft_sock_port(gap_listener)));
      if (mode == GAP_DISPATCHED) {
        /* Another worker (idle, blocked in epoll) dispatches the edge before the task goes
         * on: its recheck then finds the count moved (fdpark's FP_RETRY). */
        uint64_t until = in_ns(5 * SEC_NS);
        while (atomic_load(&d->edges) == atomic_load(&gap_edges_at) && weft_now_ns() < until)
          sched_yield();
      }
      atomic_store(&gap_edges_after, atomic_load(&d->edges));
      atomic_store(&gap_done, 1);
    }
  }
  errno = e;
  return r;
}

static atomic_int eintr_fd = -1; /* poll(2) with timeout 0 on this fd answers EINTR once */
static atomic_int eintr_hits;

int poll(struct pollfd *fds, nfds_t nfds, int timeout) {
  static poll_fn real;
  if (!real) real = (poll_fn)dlsym(RTLD_NEXT, "poll");
  if (nfds == 1 && timeout == 0 && fds[0].fd >= 0) {
    int want = fds[0].fd;
    if (atomic_compare_exchange_strong(&eintr_fd, &want, -1)) {
      atomic_fetch_add(&eintr_hits, 1);
      errno = EINTR;
      return -1;
    }
  }
  return real(fds, nfds, timeout);
}

/* ---- The accept gap ------------------------------------------------------------------------- */

static void *accept_within_5s(void *arg) {
  weft_sock_t *c = NULL;
  int err = weft_sock_accept(arg, &c, NULL, NULL, in_ns(5 * SEC_NS));
  if (!err) weft_sock_close(c);
  return IPTR(err);
}

static void accept_gap(int workers, int mode) {
  weft_runtime_t *rt = test_runtime(workers);
  weft_sock_t *l = listen_loopback(rt);
  gap_listener = l;
  atomic_store(&gap_done, 0);
  atomic_store(&gap_fd, weft_sock_fd(l));
  atomic_store(&gap_mode, mode);
  weft_task_t *t;
  OK(weft_runtime_spawn(rt, &t, accept_within_5s, l));
  void *r;
  OK(weft_join(t, &r));
  cr_assert_eq(atomic_load(&gap_done), 1, "the accept never answered EAGAIN: no gap was opened");
  cr_assert_geq(atomic_load(&gap_client), 0, "the gap's connect failed");
  unsigned at = atomic_load(&gap_edges_at), after = atomic_load(&gap_edges_after);
  if (mode == GAP_UNDISPATCHED)
    cr_assert_eq(at, after, "the edge was dispatched inside the gap (the one worker ran the task)");
  else
    cr_assert_neq(at, after, "no worker dispatched the gap's edge within 5 s");
  cr_assert_eq((int)(intptr_t)r, 0, "the connection that came in the gap was not accepted: %s",
               weft_strerror((int)(intptr_t)r));
  atomic_store(&gap_fd, -1);
  close(atomic_exchange(&gap_client, -1));
  OK(weft_sock_close(l));
  OK(weft_runtime_destroy(rt));
}

/* One worker runs the acceptor, so nothing dispatches the gap's edge before the task parks:
 * its publication precedes the poller's look at the park word, which finds and wakes it. */
Test(io_gap, a_connection_arriving_in_the_accept_gap_wakes_the_parked_acceptor) {
  accept_gap(1, GAP_UNDISPATCHED);
}

/* Two workers: the idle one dispatches the gap's edge before the task parks; the task's recheck
 * of the edge count after its publication sends it back to accept4. */
Test(io_gap, a_connection_dispatched_inside_the_accept_gap_sends_the_acceptor_back_to_accept) {
  accept_gap(2, GAP_DISPATCHED);
}

/* ---- weft_sock_wait's EINTR retry ------------------------------------------------------------ */

typedef struct eintr_case {
  weft_sock_t *s;
  int peer;
  int result;
  uint64_t took_ns;
} eintr_case_t;

static void *wait_readable_200ms(void *arg) {
  eintr_case_t *c = arg;
  uint64_t t0 = weft_now_ns();
  c->result = weft_sock_wait(c->s, WEFT_IO_READABLE, t0 + 200 * 1000000ull);
  c->took_ns = weft_now_ns() - t0;
  return NULL;
}

/* An interrupted poll(2) is no answer: with nothing to read, the wait must run to its deadline
 * (review, session 24: EINTR was taken for "ready"); with data, it must say ready. */
static void sock_wait_eintr(bool on_task, bool with_data) {
  weft_runtime_t *rt = test_runtime(1);
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  eintr_case_t c = {.peer = sv[1], .result = 1};
  OK(weft_sock_open(rt, sv[0], &c.s));
  if (with_data) cr_assert_eq(write(sv[1], "x", 1), 1);
  atomic_store(&eintr_hits, 0);
  atomic_store(&eintr_fd, sv[0]);
  if (on_task) {
    weft_task_t *t;
    OK(weft_runtime_spawn(rt, &t, wait_readable_200ms, &c));
    OK(weft_join(t, NULL));
  } else {
    wait_readable_200ms(&c);
  }
  cr_assert_eq(atomic_load(&eintr_hits), 1, "the poll was not interrupted");
  if (with_data) {
    cr_assert_eq(c.result, 0, "readable, yet %s", weft_strerror(c.result));
  } else {
    cr_assert_eq(c.result, WEFT_ETIMEDOUT, "nothing to read, yet %s after %llu ms",
                 weft_strerror(c.result), (unsigned long long)(c.took_ns / 1000000u));
    cr_assert_geq(c.took_ns, 190 * 1000000ull);
  }
  OK(weft_sock_close(c.s));
  close(sv[1]);
  OK(weft_runtime_destroy(rt));
}

Test(io_gap, sock_wait_on_a_task_retries_an_interrupted_poll_nothing_to_read) {
  sock_wait_eintr(true, false);
}
Test(io_gap, sock_wait_on_a_task_retries_an_interrupted_poll_data_queued) {
  sock_wait_eintr(true, true);
}
Test(io_gap, sock_wait_on_a_plain_thread_retries_an_interrupted_poll_nothing_to_read) {
  sock_wait_eintr(false, false);
}
Test(io_gap, sock_wait_on_a_plain_thread_retries_an_interrupted_poll_data_queued) {
  sock_wait_eintr(false, true);
}

/* ---- Destroy's close walk against a registration in progress ---------------------------------- */

#include "../lib/sys.h"
#include <sys/eventfd.h>
#include <fcntl.h>

static weft_sock_t *reg_listener;
static atomic_int reg_paused, reg_xfd = -1, reg_xfd_closed_by_walk = -1, reg_victim = -1;

/* The accepted socket's fd: a socket on the listener's port that is not listening. */
static int find_accepted_fd(int port) {
  for (int fd = 3; fd < 1024; fd++) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int listening = 0;
    socklen_t llen = sizeof listening;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || a.sin_family != AF_INET) continue;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &llen) != 0 || listening) continue;
    if (ntohs(a.sin_port) == port) return fd;
  }
  return -1;
}

/* On the accepting thread, inside weft__poll_register: its descriptor is taken (before destroy
 * marked the poller closing) and its fields are set; its epoll add is next. */
/* Until destroy's walk over the open sockets is done (bounded: the test then fails on it). */
static void await_the_close_walk(long walks_before) {
  uint64_t until = in_ns(5 * SEC_NS);
  while (weft__probe_count(WEFT__PROBE_CLOSE_WALKED) == walks_before && weft_now_ns() < until)
    sched_yield();
}

static long reg_walks_before;
static void hold_registration(void) {
  if (atomic_exchange(&reg_paused, 1)) return;
  weft__sock_t *l = reg_listener;
  int xfd = find_accepted_fd(weft_sock_port(l));
  atomic_store(&reg_xfd, xfd);
  await_the_close_walk(reg_walks_before);
  atomic_store(&reg_xfd_closed_by_walk, fcntl(xfd, F_GETFD) == -1);
  /* The application opens a file meanwhile: it gets the lowest free number. */
  atomic_store(&reg_victim, eventfd(0, EFD_CLOEXEC));
}

static int reg_accept_result = 1;
static void *accept_on_thread(void *arg) {
  weft_sock_t *c = NULL;
  reg_accept_result = weft_sock_accept(arg, &c, NULL, NULL, in_ns(10 * SEC_NS));
  return NULL;
}

Test(io_gap, destroys_close_walk_leaves_a_registration_in_progress_alone) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt);
  reg_listener = l;
  reg_walks_before = weft__probe_count(WEFT__PROBE_CLOSE_WALKED);
  weft__pause_set(WEFT__PAUSE_REGISTER, hold_registration);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, accept_on_thread, l), 0);
  int client = raw_connect(weft_sock_port(l));
  cr_assert_geq(client, 0);
  while (!atomic_load(&reg_paused)) sched_yield();
  OK(weft_runtime_destroy(rt)); /* runs while the thread is held in its registration */
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_REGISTER, NULL);
  int xfd = atomic_load(&reg_xfd), victim = atomic_load(&reg_victim);
  int victim_open = victim >= 0 && fcntl(victim, F_GETFD) != -1;
  cr_assert_geq(xfd, 0, "the accepted connection's fd was not found");
  cr_assert_neq(weft__probe_count(WEFT__PROBE_CLOSE_WALKED), reg_walks_before,
                "destroy's walk did not run while the registration was held");
  cr_expect_eq(atomic_load(&reg_xfd_closed_by_walk), 0,
               "destroy's walk closed fd %d, which a registration in progress held", xfd);
  cr_expect(victim_open, "destroy closed the application's own fd %d", victim);
  cr_expect_eq(reg_accept_result, WEFT_EBADF, "an accept that raced destroy answered %s",
               weft_strerror(reg_accept_result));
  cr_expect(xfd == victim || fcntl(xfd, F_GETFD) == -1, "the refused connection's fd %d leaked",
            xfd);
  close(client);
  if (victim_open) close(victim);
}

/* ---- a plain thread's weft_sock_listen racing destroy (review, session 32: it set the
 * listener's fields and opened its reserve fd after the registration was published and no
 * longer counted, so destroy could close and free it first: a write into the freed table, and
 * the reserve fd leaked) ---- */
static atomic_int listen_held, listen_let_go;
static void hold_listen_until_destroyed(void) {
  if (atomic_exchange(&listen_held, 1)) return;
  while (!atomic_load(&listen_let_go)) sched_yield();
}
typedef struct {
  weft_runtime_t *rt;
  int result;
} listen_case_t;
static void *listen_on_thread(void *arg) {
  listen_case_t *c = arg;
  struct sockaddr_storage ss;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", 0, &ss, &len));
  weft_sock_t *s = NULL;
  c->result = weft_sock_listen(c->rt, (struct sockaddr *)&ss, len, 16, 0, &s);
  return NULL; /* s, if any, was closed and freed by the destroy */
}

Test(io_gap, a_plain_threads_listen_racing_destroy_leaves_nothing_behind) {
  int fds_before = open_fds();
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt); /* the poller exists before the race */
  listen_case_t c = {.rt = rt, .result = 1};
  atomic_store(&listen_held, 0);
  atomic_store(&listen_let_go, 0);
  weft__pause_set(WEFT__PAUSE_ADOPTED, hold_listen_until_destroyed);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, listen_on_thread, &c), 0);
  while (!atomic_load(&listen_held)) sched_yield();
  OK(weft_runtime_destroy(rt)); /* closes the published listener and frees the table */
  atomic_store(&listen_let_go, 1);
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_ADOPTED, NULL);
  cr_assert_eq(c.result, 0, "the listen answered %s", weft_strerror(c.result));
  cr_assert_eq(open_fds(), fds_before, "fds were left open (the listener's reserve fd)");
  (void)l; /* closed by destroy */
}

/* ---- a plain thread's weft_sock_listen refused by destroy's walk (review, session 32: the
 * refused descriptor kept the listener's reserve fd, which the listen closed itself, and
 * destroy's free of the table closed that number again — by then one of the application's
 * files) ---- */
enum { VICTIMS = 8 };
static atomic_int refused_registering, refused_walked, refused_reopened;
static int refused_victims[VICTIMS], refused_result = 1;
static void await_flag(atomic_int *flag) {
  uint64_t until = in_ns(10 * SEC_NS);
  while (!atomic_load(flag) && weft_now_ns() < until) sched_yield();
}
static void hold_refused_registration(void) {
  if (atomic_exchange(&refused_registering, 1)) return;
  await_flag(&refused_walked);
}
static void hold_destroy_after_the_walk(void) {
  atomic_store(&refused_walked, 1);
  await_flag(&refused_reopened); /* the application opens files before destroy goes on */
}
static void *listen_refused_on_thread(void *arg) {
  struct sockaddr_storage ss;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", 0, &ss, &len));
  weft_sock_t *s = NULL;
  refused_result = weft_sock_listen(arg, (struct sockaddr *)&ss, len, 16, 0, &s);
  for (int i = 0; i < VICTIMS; i++) /* the lowest free numbers: the ones just closed */
    refused_victims[i] = eventfd(0, EFD_CLOEXEC);
  atomic_store(&refused_reopened, 1);
  return NULL;
}

Test(io_gap, a_listen_refused_by_destroy_leaves_the_applications_fds_alone) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt); /* the poller exists before the race */
  weft__pause_set(WEFT__PAUSE_REGISTER, hold_refused_registration);
  weft__pause_set(WEFT__PAUSE_CLOSE_WALKED, hold_destroy_after_the_walk);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, listen_refused_on_thread, rt), 0);
  while (!atomic_load(&refused_registering)) sched_yield();
  OK(weft_runtime_destroy(rt));
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_REGISTER, NULL);
  weft__pause_set(WEFT__PAUSE_CLOSE_WALKED, NULL);
  cr_assert_eq(refused_result, WEFT_EBADF, "the listen answered %s", weft_strerror(refused_result));
  for (int i = 0; i < VICTIMS; i++) {
    cr_assert_geq(refused_victims[i], 0);
    cr_expect_neq(fcntl(refused_victims[i], F_GETFD), -1, "destroy closed the application's fd %d",
                  refused_victims[i]);
    close(refused_victims[i]);
  }
  (void)l; /* closed by destroy */
}

/* ---- a plain thread's weft_sock_open racing destroy (review, session 26: registering, it was
 * not counted in, so destroy could free the socket table under it) ---- */
static atomic_int open_paused;
static long open_walks_before;
static void hold_open_until_the_walk(void) {
  if (atomic_exchange(&open_paused, 1)) return;
  await_the_close_walk(open_walks_before);
}
typedef struct {
  weft_runtime_t *rt;
  int fd, result;
} open_case_t;
static void *open_on_thread(void *arg) {
  open_case_t *c = arg;
  weft_sock_t *s = NULL;
  c->result = weft_sock_open(c->rt, c->fd, &s);
  return NULL;
}

Test(io_gap, a_plain_threads_open_racing_destroy_is_waited_for_and_refused) {
  weft_runtime_t *rt = test_runtime(1);
  weft_sock_t *l = listen_loopback(rt); /* the poller exists before the race */
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  open_case_t c = {.rt = rt, .fd = sv[0], .result = 1};
  open_walks_before = weft__probe_count(WEFT__PROBE_CLOSE_WALKED);
  atomic_store(&open_paused, 0);
  weft__pause_set(WEFT__PAUSE_REGISTER, hold_open_until_the_walk);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, open_on_thread, &c), 0);
  while (!atomic_load(&open_paused)) sched_yield();
  OK(weft_runtime_destroy(rt)); /* its walk runs while the thread is held in its registration */
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_REGISTER, NULL);
  cr_assert_neq(weft__probe_count(WEFT__PROBE_CLOSE_WALKED), open_walks_before,
                "destroy's walk did not run while the registration was held");
  cr_assert_eq(c.result, WEFT_EBADF, "an open that raced destroy answered %s",
               weft_strerror(c.result));
  cr_assert_neq(fcntl(sv[0], F_GETFD), -1, "the refused fd is no longer the caller's");
  (void)l; /* closed by destroy */
  close(sv[0]);
  close(sv[1]);
}

/* ---- a plain thread's first weft_sock_open racing destroy, the runtime with no poller yet
 * (session 29's note): the thread's poller, made before destroy's walk and published after it,
 * was neither counted in nor closed, and the socket registered on it was closed or freed by
 * destroy under the handle the call returned ---- */
static sem_t first_made, first_walked, first_returned;
static void hold_the_made_poller(void) {
  sem_post(&first_made);
  sem_wait(&first_walked);
}
static void let_the_made_poller_go(void) {
  sem_post(&first_walked);
  /* destroy goes on only once the call has returned: a published poller would be found
   * by destroy's later steps (bounded: a hung call fails the test on its result) */
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  sem_timedwait(&first_returned, &until);
}
static void *first_open_on_thread(void *arg) {
  open_case_t *c = arg;
  weft_sock_t *s = NULL;
  c->result = weft_sock_open(c->rt, c->fd, &s);
  sem_post(&first_returned);
  return NULL;
}

Test(io_gap, a_plain_threads_first_open_racing_destroy_makes_no_poller_after_the_walk) {
  weft_runtime_t *rt = test_runtime(1); /* no socket yet: no poller */
  int sv[2];
  cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  open_case_t c = {.rt = rt, .fd = sv[0], .result = 1};
  sem_init(&first_made, 0, 0);
  sem_init(&first_walked, 0, 0);
  sem_init(&first_returned, 0, 0);
  weft__pause_set(WEFT__PAUSE_POLLER_MADE, hold_the_made_poller);
  weft__pause_set(WEFT__PAUSE_CLOSE_WALKED, let_the_made_poller_go);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, first_open_on_thread, &c), 0);
  sem_wait(&first_made);
  OK(weft_runtime_destroy(rt)); /* its walk finds no poller while the thread holds a made one */
  pthread_join(th, NULL);
  weft__pause_set(WEFT__PAUSE_POLLER_MADE, NULL);
  weft__pause_set(WEFT__PAUSE_CLOSE_WALKED, NULL);
  cr_expect_eq(c.result, WEFT_EBADF, "a first open that raced destroy's walk answered %s",
               weft_strerror(c.result));
  cr_expect_neq(fcntl(sv[0], F_GETFD), -1, "the refused fd is no longer the caller's");
  close(sv[0]);
  close(sv[1]);
}
