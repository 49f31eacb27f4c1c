/* Loopback sockets for the socket tests (test_io, test_io_gap): a listener of the runtime's on
 * an ephemeral port of 127.0.0.1, and a plain blocking client (for plain threads, forked
 * children and interposers). Include after support.h. */
#ifndef WEFT_TEST_LOOPBACK_H
#define WEFT_TEST_LOOPBACK_H

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

/* The process's open fds. */
static inline int open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  cr_assert(d);
  while (readdir(d)) n++;
  closedir(d);
  return n - 3; /* ".", ".." and the DIR's own fd */
}

static inline weft_sock_t *listen_loopback(weft_runtime_t *rt) {
  struct sockaddr_storage ss;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", 0, &ss, &len));
  weft_sock_t *l;
  OK(weft_sock_listen(rt, (struct sockaddr *)&ss, len, 0, 0, &l));
  cr_assert_gt(weft_sock_port(l), 0);
  return l;
}

/* A plain listener on 127.0.0.1 whose accept queue is full (FULL_QUEUED connects, never
 * accepted): a further SYN is dropped, so a connect to *to stays in progress until its
 * deadline or cancel. Returns the listener; close it and queued[] after. */
enum { FULL_QUEUED = 4 };
static inline int full_listener(struct sockaddr_in *to, int queued[FULL_QUEUED]) {
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  *to = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof *to;
  cr_assert_eq(bind(l, (struct sockaddr *)to, len), 0);
  cr_assert_eq(getsockname(l, (struct sockaddr *)to, &len), 0);
  cr_assert_eq(listen(l, 0), 0);
  for (int i = 0; i < FULL_QUEUED; i++) {
    queued[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    (void)connect(queued[i], (struct sockaddr *)to, sizeof *to);
  }
  return l;
}
static inline void full_listener_close(int l, int queued[FULL_QUEUED]) {
  for (int i = 0; i < FULL_QUEUED; i++) close(queued[i]);
  close(l);
}

/* A plain blocking client connected to 127.0.0.1:port, or -1. */
static inline int raw_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

#endif
