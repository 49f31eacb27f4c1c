/*
 * The bare epoll responder for bench/servers.py: what an HTTP "hello" costs with nothing but
 * the kernel. THREADS threads, each with its own SO_REUSEPORT listener and epoll instance
 * (edge-triggered), answering every request (anything up to "\r\n\r\n") with a fixed response.
 * No parser, no allocation, no scheduler: the ceiling, not a server.
 *
 *   epoll_http PORT [THREADS=2]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                               "Content-Length: 13\r\n\r\nhello, world\n";
static int port;

static int listener(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 4096)) {
    perror("epoll_http: bind/listen");
    exit(1);
  }
  return fd;
}

/* Answers every complete request in what is readable; closes on end of stream or error. */
static void serve(int fd) {
  char buf[4096], out[16 * sizeof RESPONSE];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) {
      if (n == 0 || (n < 0 && errno != EAGAIN)) close(fd);
      return;
    }
    size_t len = 0;
    for (char *p = buf; (p = memmem(p, (size_t)(buf + n - p), "\r\n\r\n", 4)); p += 4) {
      if (len + sizeof RESPONSE - 1 > sizeof out) break;
      memcpy(out + len, RESPONSE, sizeof RESPONSE - 1);
      len += sizeof RESPONSE - 1;
    }
    if (len && write(fd, out, len) < 0) {
      close(fd);
      return;
    }
  }
}

static void *loop(void *arg) {
  (void)arg;
  int lfd = listener(), ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.fd == lfd) {
        int c;
        while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          struct epoll_event cev = {.events = EPOLLIN | EPOLLET, .data.fd = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
      } else {
        serve(evs[i].data.fd);
      }
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  port = argc > 1 ? atoi(argv[1]) : 8080;
  int threads = argc > 2 ? atoi(argv[2]) : 2;
  pthread_t t;
  for (int i = 1; i < threads; i++) pthread_create(&t, NULL, loop, NULL);
  printf("epoll_http: listening\n");
  fflush(stdout);
  loop(NULL);
}
