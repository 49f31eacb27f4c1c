/*
 * The echo benchmark's load generator (bench/servers.py): plain C and epoll, no weft, so that the
 * same lean client drives every server and the measurement is of the servers.
 *
 *   echo_load PORT [CONNS=1000] [SECONDS=5] [THREADS=1] [MAX_MESSAGES=0: no bound]
 *
 * CONNS connections to 127.0.0.1:PORT (loopback only: there is no host argument), split over
 * THREADS threads, each with its own epoll instance (level-triggered, EPOLLIN only: a connection
 * waits for one reply at a time, so no epoll_ctl per message). Every connection keeps exactly
 * one 64-byte message in flight: send, wait for all 64 bytes back, record the round trip, send
 * the next. The clock starts once every connection is up; after SECONDS (or MAX_MESSAGES replies
 * in all) no new message is sent, the threads stop, and it prints one line:
 *
 *   echo_load: 1000 connections, 64-byte messages, 1 threads, 5.00 s: 123456 msgs/s, p50 1234 us,
 *   p99 2345 us, max 3456 us
 *
 * Latency: a histogram with 1 µs buckets up to 100 ms and one overflow bucket (its p99 reads
 * ">= 100000 us" then). Exits 1 if a connection fails or closes before the end.
 * Per reply it costs one read, one clock read and one send, plus a share of an epoll_wait.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum {
  MSG = 64,                 /* the message size */
  HIST_US = 100000,         /* 1 µs buckets up to 100 ms, then one overflow bucket */
  EVENTS = 256,             /* events taken per epoll_wait */
  CONNECT_TIMEOUT_MS = 10000,
};

typedef struct conn {
  int fd;
  uint32_t got;             /* bytes of the reply received so far */
  uint64_t sent_ns;         /* when the message in flight was sent */
} conn_t;

typedef struct worker {
  pthread_t thread;
  conn_t *conns;
  int nconns;
  int epfd;
  uint64_t replies;
  uint64_t *hist;           /* HIST_US + 1 buckets */
  int failed;
} worker_t;

static int port;
static uint64_t start_ns, end_ns;
static uint64_t max_messages;           /* 0: no bound */
static atomic_ullong replies_total;     /* only counted when max_messages is set */
static pthread_barrier_t connected;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A blocking connect to 127.0.0.1:port (bounded by SO_SNDTIMEO). */
static int dial(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {.tv_sec = CONNECT_TIMEOUT_MS / 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv); /* bounds the connect */
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd; /* left blocking: every call on it passes MSG_DONTWAIT */
}

static int send_message(worker_t *w, conn_t *c) {
  static const char msg[MSG] = "ping pong ping pong ping pong ping pong ping pong ping pong pin";
  c->got = 0;
  c->sent_ns = now_ns();
  /* 64 bytes into an empty send buffer: all of it or an error (one message in flight) */
  ssize_t n = send(c->fd, msg, MSG, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n != MSG) {
    w->failed = 1;
    return -1;
  }
  return 0;
}

static void record(worker_t *w, uint64_t ns) {
  uint64_t us = ns / 1000u;
  w->hist[us < HIST_US ? us : HIST_US]++;
  w->replies++;
}

static bool over(void) {
  if (max_messages && atomic_load_explicit(&replies_total, memory_order_relaxed) >= max_messages)
    return true;
  return false;
}

/* Reads what the reply has; at its end records it and sends the next (unless time is up). */
static void on_readable(worker_t *w, conn_t *c, bool *stop) {
  char buf[MSG];
  for (;;) {
    ssize_t n = recv(c->fd, buf, MSG - c->got, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) { /* closed or failed before the end */
      w->failed = 1;
      *stop = true;
      return;
    }
    c->got += (uint32_t)n;
    if (c->got < MSG) continue;
    uint64_t t = now_ns();
    record(w, t - c->sent_ns);
    if (max_messages) atomic_fetch_add_explicit(&replies_total, 1, memory_order_relaxed);
    if (t >= end_ns || over()) {
      *stop = true;
      return;
    }
    if (send_message(w, c) != 0) *stop = true;
    return;
  }
}

static void *run(void *arg) {
  worker_t *w = arg;
  for (int i = 0; i < w->nconns; i++) {
    w->conns[i].fd = dial();
    if (w->conns[i].fd < 0) {
      perror("echo_load: connect");
      w->failed = 1;
      break;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->conns[i]};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->conns[i].fd, &ev) != 0) w->failed = 1;
  }
  pthread_barrier_wait(&connected); /* the main thread sets start_ns/end_ns meanwhile */
  pthread_barrier_wait(&connected);
  if (w->failed) return NULL;
  for (int i = 0; i < w->nconns; i++)
    if (send_message(w, &w->conns[i]) != 0) return NULL;
  struct epoll_event evs[EVENTS];
  bool stop = false;
  while (!stop) {
    uint64_t now = now_ns();
    if (now >= end_ns || over()) break;
    int ms = (int)((end_ns - now) / 1000000u) + 1;
    int n = epoll_wait(w->epfd, evs, EVENTS, ms);
    if (n < 0 && errno != EINTR) {
      w->failed = 1;
      break;
    }
    for (int i = 0; i < n && !stop; i++) on_readable(w, evs[i].data.ptr, &stop);
  }
  /* Replies in flight at the end are not counted. */
  return NULL;
}

static uint64_t percentile(const uint64_t *hist, uint64_t total, double q) {
  if (!total) return 0;
  uint64_t want = (uint64_t)(q * (double)total), seen = 0;
  for (int us = 0; us <= HIST_US; us++) {
    seen += hist[us];
    if (seen > want) return (uint64_t)us;
  }
  return HIST_US;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: echo_load PORT [CONNS=1000] [SECONDS=5] [THREADS=1] [MAX_MESSAGES=0]\n");
    return 2;
  }
  port = atoi(argv[1]);
  int conns = argc > 2 ? atoi(argv[2]) : 1000;
  int seconds = argc > 3 ? atoi(argv[3]) : 5;
  int threads = argc > 4 ? atoi(argv[4]) : 1;
  max_messages = argc > 5 ? strtoull(argv[5], NULL, 10) : 0;
  if (port <= 0 || port > 65535 || conns < 1 || conns > 100000 || seconds < 1 || seconds > 600 ||
      threads < 1 || threads > 64 || threads > conns) {
    fprintf(stderr, "echo_load: bad arguments\n");
    return 2;
  }
  worker_t *ws = calloc((size_t)threads, sizeof *ws);
  conn_t *cs = calloc((size_t)conns, sizeof *cs);
  if (!ws || !cs) return 1;
  pthread_barrier_init(&connected, NULL, (unsigned)threads + 1);
  for (int t = 0, first = 0; t < threads; t++) {
    worker_t *w = &ws[t];
    w->nconns = conns / threads + (t < conns % threads);
    w->conns = cs + first;
    first += w->nconns;
    for (int i = 0; i < w->nconns; i++) w->conns[i].fd = -1;
    w->hist = calloc(HIST_US + 1, sizeof *w->hist);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (!w->hist || w->epfd < 0 || pthread_create(&w->thread, NULL, run, w) != 0) {
      fprintf(stderr, "echo_load: cannot start thread %d\n", t);
      return 1;
    }
  }
  pthread_barrier_wait(&connected); /* every connection is up (or failed) */
  start_ns = now_ns();
  end_ns = start_ns + (uint64_t)seconds * 1000000000u;
  pthread_barrier_wait(&connected);
  uint64_t total = 0, *hist = calloc(HIST_US + 1, sizeof *hist);
  int failed = 0;
  for (int t = 0; t < threads; t++) {
    pthread_join(ws[t].thread, NULL);
    total += ws[t].replies;
    failed |= ws[t].failed;
    for (int us = 0; us <= HIST_US; us++) hist[us] += ws[t].hist[us];
  }
  double secs = (double)(now_ns() - start_ns) / 1e9;
  if (secs > seconds) secs = seconds; /* the window replies were counted in */
  if (secs <= 0) secs = 1e-9;
  uint64_t max = 0;
  for (int us = 0; us <= HIST_US; us++)
    if (hist[us]) max = (uint64_t)us;
  printf("echo_load: %d connections, %d-byte messages, %d threads, %.2f s: %.0f msgs/s, "
         "p50 %llu us, p99 %llu us, max %s%llu us%s\n",
         conns, MSG, threads, secs, (double)total / secs,
         (unsigned long long)percentile(hist, total, 0.50),
         (unsigned long long)percentile(hist, total, 0.99), max >= HIST_US ? ">= " : "",
         (unsigned long long)max, failed ? " (some connections failed)" : "");
  for (int i = 0; i < conns; i++)
    if (cs[i].fd >= 0) close(cs[i].fd);
  return failed ? 1 : 0;
}
