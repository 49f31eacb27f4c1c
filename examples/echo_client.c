/*
 * An echo client on weft, and the echo benchmark's load: CONNS connections, each a task that
 * sends SIZE bytes and waits for them back (ping-pong), for SECONDS; prints messages per second.
 *
 *   echo_client HOST PORT [CONNS=1000] [SECONDS=5] [SIZE=64, at most 4096]
 *
 * HOST may be a name: getaddrinfo blocks, so it runs on the blocking pool (weft_offload).
 */
#include <weft.h>

#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct config {
  const char *host, *port;
  int conns, seconds;
  size_t size;
  struct sockaddr_storage addr;
  socklen_t addr_len;
  uint64_t until;
  atomic_ullong messages;
  atomic_int failed;
} config_t;

static void *resolve(void *arg) { /* blocking: on the pool */
  config_t *c = arg;
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(c->host, c->port, &hints, &res) != 0) return NULL;
  memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
  c->addr_len = res->ai_addrlen;
  freeaddrinfo(res);
  return c;
}

static void *ping_pong(void *arg) {
  config_t *c = arg;
  weft_sock_t *s;
  int err = weft_sock_connect(NULL, (struct sockaddr *)&c->addr, c->addr_len,
                              weft_now_ns() + 10000000000ull, &s);
  if (err) {
    if (atomic_fetch_add(&c->failed, 1) == 0)
      fprintf(stderr, "echo_client: connect: %s\n", weft_strerror(err));
    return NULL;
  }
  char out[4096], in[4096]; /* task stacks are 64 KiB by default: keep frames small */
  memset(out, 'x', c->size);
  unsigned long long n = 0;
  while (weft_now_ns() < c->until) {
    if (weft_sock_write(s, out, c->size, NULL, c->until + 1000000000ull) != 0) break;
    size_t got = 0;
    while (got < c->size) {
      ptrdiff_t r = weft_sock_read(s, in + got, c->size - got, c->until + 1000000000ull);
      if (r <= 0) goto done;
      got += (size_t)r;
    }
    n++;
  }
done:
  atomic_fetch_add(&c->messages, n);
  weft_sock_close(s);
  return NULL;
}

static void *client_main(void *arg) {
  config_t *c = arg;
  void *ok = NULL;
  if (weft_offload(resolve, c, &ok) != 0 || !ok) {
    fprintf(stderr, "echo_client: cannot resolve %s\n", c->host);
    return weft_fail(WEFT_EINVAL);
  }
  c->until = weft_now_ns() + (uint64_t)c->seconds * 1000000000ull;
  weft_group_t *g;
  weft_group_create(&g, NULL);
  for (int i = 0; i < c->conns; i++) weft_group_spawn(g, ping_pong, c);
  weft_group_wait(g);
  weft_group_destroy(g);
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: echo_client HOST PORT [CONNS] [SECONDS] [SIZE]\n");
    return 2;
  }
  static config_t c;
  c.host = argv[1];
  c.port = argv[2];
  c.conns = argc > 3 ? atoi(argv[3]) : 1000;
  c.seconds = argc > 4 ? atoi(argv[4]) : 5;
  c.size = argc > 5 ? (size_t)atoi(argv[5]) : 64;
  if (c.size < 1 || c.size > 4096) c.size = 64;
  if (c.conns < 1 || c.seconds < 1) {
    fprintf(stderr, "echo_client: CONNS and SECONDS must be at least 1\n");
    return 2;
  }
  int err = weft_run(NULL, client_main, &c, NULL);
  if (err) return 1;
  printf("echo_client: %d connections, %zu-byte messages: %.0f msgs/s%s\n", c.conns, c.size,
         (double)atomic_load(&c.messages) / c.seconds,
         atomic_load(&c.failed) ? " (some connections failed)" : "");
  return atomic_load(&c.failed) ? 1 : 0;
}
