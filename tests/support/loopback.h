/* Loopback sockets for the socket tests (test_io, test_io_gap): a listener of the runtime's on
 * an ephemeral port of 127.0.0.1, and a plain blocking client (for plain threads, forked
 * children and interposers). Include after support.h. */
#ifndef WEFT_TEST_LOOPBACK_H
#define WEFT_TEST_LOOPBACK_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static inline weft_sock_t *listen_loopback(weft_runtime_t *rt) {
  struct sockaddr_storage ss;
  socklen_t len;
  OK(weft_sock_addr("127.0.0.1", 0, &ss, &len));
  weft_sock_t *l;
  OK(weft_sock_listen(rt, (struct sockaddr *)&ss, len, 0, 0, &l));
  cr_assert_gt(weft_sock_port(l), 0);
  return l;
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
