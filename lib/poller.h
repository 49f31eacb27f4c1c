/* Private to weft: the poller (lib/poll.c) and what lib/io.c needs of it. Nothing here is API.
 * Named poller.h, not poll.h: lib/ is on the include path, and poll.h would hide <poll.h>.
 * The worker loop's three hooks (weft__epoll_hooks: park, tick, woke) are
 * declared in internal.h, so that worker.c needs no more than it already includes. */
#ifndef WEFT_POLLER_H
#define WEFT_POLLER_H

#include "internal.h"

/* One direction of a registered fd (Go's pollDesc rg/wg, split in two words; the protocol is
 * lib/fdpark_impl.h's):
 *   edges — bumped (by WEFT__EDGE) by the poller on every edge and by a close, before it looks
 *           for a waiter; a waiter reads it before its call and parks only while it is
 *           unchanged (lib/io.c). Bit 0 (WEFT__EDGE_HUP), never cleared until the fd is
 *           registered again: the peer hung up or the socket failed (EPOLLRDHUP, HUP, ERR);
 *   park  — FP_EMPTY, the waiting task (one at a time: a second gets WEFT_EBUSY), or
 *           FP_CLAIMED while a deliverer wakes it. */
typedef struct weft__poll_dir {
  _Atomic uint32_t edges;
  _Atomic uintptr_t park;
} weft__poll_dir_t;
#define WEFT__EDGE 2u     /* one edge's step: bit 0 stays out of the count */
#define WEFT__EDGE_HUP 1u

/* A registered fd: type-stable (never freed before the poller), reused through a free list;
 * the sequence number, bumped at every reuse, travels in the epoll event's data beside the
 * descriptor's index, so that an event for an earlier registration is recognised and dropped. */
typedef struct weft_sock {
  int fd;
  uint32_t index;          /* in the poller's table */
  _Atomic uint32_t seq;    /* registration count (the tag) */
  _Atomic uint32_t refs;   /* lib/sockref_impl.h: a reference per operation | CLOSING | FINAL */
  bool is_socket;          /* send/sendmsg with MSG_NOSIGNAL; else write/writev */
  bool is_pipe;            /* a pipe or FIFO: writes hold SIGPIPE back (lib/io.c's pipe_write) */
  bool listening;
  bool tcp;                /* a TCP stream: a short read means its receive queue was empty */
  /* TCP only: DRAINED | the read direction's edges as read before a read that came back
   * short; 0 when unknown. The next read waits for a later edge instead of calling first. */
  _Atomic uint64_t rd_drained;
  _Atomic int spare_fd;    /* a listener's reserve fd for the EMFILE answer (lib/io.c), or -1 */
  struct weft_runtime *rt;
  struct weft__poller *poller;
  struct weft_sock *next_free;
  weft__poll_dir_t rd, wr;
} weft__sock_t;

/* The poller for rt, created on first use (0, or WEFT_ENOMEM / a system error). */
int weft__poller_get(struct weft_runtime *rt, struct weft__poller **out);
/* A fresh descriptor for fd, registered (edge-triggered, both directions); destroy's walk
 * leaves it alone until weft__poll_publish, called once its fields are set: 0, or WEFT_EBADF
 * (destroy began: unregistered again, the fd still the caller's). */
int weft__poll_register(struct weft__poller *p, int fd, weft__sock_t **out);
int weft__poll_publish(struct weft__poller *p, weft__sock_t *s);
/* Deregisters, closes the fd if close_fd, and returns the descriptor to the free list. */
void weft__poll_unregister(struct weft__poller *p, weft__sock_t *s, bool close_fd);
/* A socket operation by a caller outside the socket's runtime counts itself in (false: its
 * runtime's destroy has begun, nothing counted) and out again, its last touch of the table. */
bool weft__poll_outside_enter(struct weft__poller *p);
void weft__poll_outside_leave(struct weft__poller *p);
/* A descriptor's refs word (lib/sockref_impl.h) while it is not a socket: closed (CLOSING |
 * FINAL), as after its last close. lib/io.c checks that it matches. */
#define WEFT__SOCK_REFS_FREE 3u
/* Destroy: marks the poller closing (no socket is registered after it: WEFT_EBADF), then calls
 * fn on every descriptor handed out so far (closed ones too: fn must tell them by their refs). */
void weft__poll_each_open(struct weft_runtime *rt, void (*fn)(weft__sock_t *s));
/* Destroy: waits until no outside operation is in progress, at most bound_ns: false if some
 * still were (the table must then be kept, not freed). */
bool weft__poll_outside_left(struct weft_runtime *rt, uint64_t bound_ns);
/* An edge (or a close) on one direction: bumps edges (setting WEFT__EDGE_HUP first if hup)
 * and wakes its waiting task, if any; returns 1 if it scheduled that task, else 0. */
int weft__poll_dir_notify(weft__poll_dir_t *d, bool hup);
#ifdef WEFT_FAULTS
/* Test-only: hold the poller's try-lock as a busy worker's poll does (true), or release it. */
void weft__poll_test_hold(struct weft_runtime *rt, bool hold);
#endif
/* Runtime destroy's step: closes every fd still registered, frees the table and the poller. */
void weft__poller_destroy(struct weft_runtime *rt);

#endif /* WEFT_POLLER_H */
