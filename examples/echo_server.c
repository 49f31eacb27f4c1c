/*
 * An echo server on weft: one task per connection, each a plain read-then-write loop.
 *
 *   echo_server 7000          (WEFT_WORKERS sets the workers; SIGINT/SIGTERM stops it)
 *
 * The shutdown closes the listener and cancels the connections: each task's pending read
 * returns WEFT_ECANCELED and the task closes its socket on the way out.
 */
#include <weft.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>

static void *echo(void *arg) {
  weft_sock_t *c = arg;
  char buf[4096];
  ptrdiff_t n;
  while ((n = weft_sock_read(c, buf, sizeof buf, UINT64_MAX)) > 0)
    if (weft_sock_write(c, buf, (size_t)n, NULL, UINT64_MAX) != 0) break;
  weft_sock_close(c);
  return NULL;
}

typedef struct server {
  weft_sock_t *listener;
  weft_group_t *conns;
} server_t;

/* One connection's failure is its own (KEEP_GOING), and a connection task that never ran (no
 * stack when it was to start, or cancelled by the shutdown first) closes its socket (unrun),
 * as examples/http_server.c's. */
static void close_unserved(void *sock) { weft_sock_close(sock); }

static void *accept_loop(void *arg) {
  server_t *s = arg;
  weft_sock_t *c;
  int err;
  while ((err = weft_sock_accept(s->listener, &c, NULL, NULL, UINT64_MAX)) != WEFT_EBADF &&
         err != WEFT_ECANCELED)
    if (!err && weft_group_spawn(s->conns, echo, c) != 0) weft_sock_close(c);
  return NULL;
}

static void *server_main(void *arg) {
  int *cfg = arg; /* port, signalfd */
  server_t s;
  struct sockaddr_storage addr;
  socklen_t len;
  weft_sock_addr("0.0.0.0", (uint16_t)cfg[0], &addr, &len);
  int err = weft_sock_listen(NULL, (struct sockaddr *)&addr, len, 0, 0, &s.listener);
  if (err) {
    fprintf(stderr, "echo_server: listen: %s\n", weft_strerror(err));
    return weft_fail(err);
  }
  printf("echo_server: listening on port %d\n", weft_sock_port(s.listener));
  fflush(stdout);
  weft_group_opts_t opts = {.flags = WEFT_GROUP_KEEP_GOING, .unrun = close_unserved};
  if ((err = weft_group_create_opts(&s.conns, NULL, &opts)) != 0) {
    fprintf(stderr, "echo_server: %s\n", weft_strerror(err));
    weft_sock_close(s.listener);
    return weft_fail(err);
  }
  weft_task_t *acceptor;
  weft_spawn(&acceptor, accept_loop, &s);
  weft_sock_t *sig;
  weft_sock_open(NULL, cfg[1], &sig);
  struct signalfd_siginfo si;
  while (weft_sock_read(sig, &si, sizeof si, UINT64_MAX) != (ptrdiff_t)sizeof si) {
  }
  weft_sock_close(s.listener); /* the acceptor wakes with WEFT_EBADF */
  weft_join(acceptor, NULL);
  weft_group_cancel(s.conns);
  weft_group_wait(s.conns);
  weft_group_destroy(s.conns);
  weft_sock_close(sig);
  return NULL;
}

int main(int argc, char **argv) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* before the workers start: they inherit it */
  int cfg[2] = {argc > 1 ? atoi(argv[1]) : 7000, signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC)};
  if (cfg[1] < 0) {
    perror("echo_server: signalfd");
    return 1;
  }
  return weft_run(NULL, server_main, cfg, NULL) ? 1 : 0;
}
