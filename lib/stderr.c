/*
 * Lines to a stderr nobody may read: the writes that the WEFT_TRACE monitor (lib/trace.c) and
 * destroy's own lines (lib/runtime.c, lib/task.c) share, and the one way a task's name is shown
 * in them. Each write works on a copy of fd 2 taken for it, looked at, written without waiting
 * in the write itself where the file allows, waited on in poll for room until a deadline, and
 * never raises SIGPIPE: the trade-offs, and the reviews each case came from, are at each
 * function (the file's whole design is in lib/trace.c's opening comment, "Every line is
 * written ..."). Split out of lib/trace.c in session 38 so that lib/task.c's lines need not
 * link the monitor (which walks the task store).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h> /* PIPE_BUF */
#include <poll.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h> /* makedev */
#include <sys/uio.h>       /* pwritev2 */
#include <unistd.h>

/* Whether fd takes a write by deadline (or has an error for the write to report). A signal's
 * EINTR polls again for the time left only (review I: a fresh 50 ms per signal never ended
 * under a 20 ms interval timer). */
static bool writable_by(int fd, uint64_t deadline) {
  for (;;) {
    uint64_t now = weft_now_ns();
    int left_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int r = poll(&p, 1, left_ms);
    if (r >= 0 || errno != EINTR) return r != 0;
    weft__probe_hit(WEFT__PROBE_OUTPUT_EINTR);
    if (weft_now_ns() >= deadline) return false;
  }
}

/* A non-blocking description of the terminal or pipe fd names (st: fd's), opened through
 * /proc/self/fd for one write and closed after it (fd 2's own flags are not touched): poll's
 * POLLOUT on a terminal means some room, and a longer write slept in the kernel for good when
 * nobody read it (review D, session 36); on a pipe, another writer may fill it between the
 * poll and the write (review I), where a non-blocking write of at most PIPE_BUF bytes is whole
 * or EAGAIN. Never for /dev/tty (it reaches whatever terminal controls the process now) or a
 * pty master (the reopen makes a new pty: review G, the lines went nowhere); checked to be
 * the same file. -1 if not (a terminal or pipe of another user after a privilege drop:
 * EACCES; no /proc; a named FIFO with no reader: ENXIO — an anonymous pipe's reopen succeeds,
 * and its write answers EPIPE). */
static int reopen_nonblocking(int fd, const struct stat *st) {
  unsigned ptn;
  bool terminal = S_ISCHR(st->st_mode);
  if (terminal && (st->st_rdev == makedev(5, 0) || ioctl(fd, TIOCGPTN, &ptn) == 0)) return -1;
  char path[32];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  int own = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  struct stat o;
  if (own >= 0 && (fstat(own, &o) != 0 ||
                   (terminal ? !S_ISCHR(o.st_mode) || o.st_rdev != st->st_rdev
                             : !S_ISFIFO(o.st_mode) || o.st_dev != st->st_dev ||
                                   o.st_ino != st->st_ino))) {
    close(own);
    own = -1;
  }
  return own;
}

/* A write to a pipe that never waits (RWF_NOWAIT, which pipes take since Linux 6.4): a
 * piece of at most PIPE_BUF bytes goes whole or not at all (EAGAIN), without a description of
 * our own — which another user's pipe refuses (review J: EACCES, and then a writer of the
 * program's own filling it between a poll and a write blocked destroy). A named FIFO does
 * not take it (opened by open(2)), and goes through a reopen, as a terminal. EPIPE, never
 * SIGPIPE (lib/sys.h). */
static ssize_t pipe_write_nowait(int fd, const char *p, size_t n) {
  struct iovec iov = {.iov_base = (void *)p, .iov_len = n};
  weft__sigpipe_hold_t hold;
  weft__sigpipe_hold(&hold);
  ssize_t k = pwritev2(fd, &iov, 1, -1, RWF_NOWAIT);
  weft__sigpipe_release(&hold, k, errno);
  return k;
}

/* pipe_write_nowait's answer, or NOWAIT_UNSUPPORTED where the pipe does not take RWF_NOWAIT:
 * any error but the pipe's own two (EAGAIN: full; EPIPE: no reader) — EOPNOTSUPP from a kernel
 * before 6.4 or a pipe opened by path (a named FIFO, /dev/stdout), EPERM from a seccomp filter
 * that refuses pwritev2 (review K: every line was dropped there), ENOSYS. */
enum { NOWAIT_UNSUPPORTED = -3 };
static ssize_t pipe_try_nowait(int fd, const char *p, size_t n) {
  ssize_t k = pipe_write_nowait(fd, p, n);
  return k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EPIPE ? NOWAIT_UNSUPPORTED
                                                                            : k;
}

/* A write that may reach a pipe with no reader: EPIPE, never SIGPIPE (lib/sys.h). */
static ssize_t write_no_sigpipe(int fd, const char *p, size_t n) {
  weft__sigpipe_hold_t hold;
  weft__sigpipe_hold(&hold);
  ssize_t k = write(fd, p, n);
  weft__sigpipe_release(&hold, k, errno);
  return k;
}

/* One try on fd, a copy of fd 2's description looked at now: what it wrote, -1 with errno
 * (EAGAIN: it has room again, try at once), or WEFT__STDERR_NO_ROOM at deadline without room.
 *   a pipe: pipe_write_nowait, waiting by poll for room after EAGAIN; a pipe that does not
 *     take RWF_NOWAIT (a named FIFO, one opened by path, a kernel before 6.4), as a terminal;
 *   a terminal: through reopen_nonblocking's description, as a pipe; if it cannot be had, a
 *     poll, then fd itself (left: a writer of the program's own that fills a pipe between
 *     the two blocks that write, as a terminal nobody reads can);
 *   a socket: send with MSG_DONTWAIT and MSG_NOSIGNAL; another device: a poll, then a write;
 *   a regular file, or fd 2 not open for writing: a plain write (EBADF for the last).
 * No SIGPIPE from a reader gone (review I: the process died of it). */
static ssize_t stderr_try_write(int fd, const char *p, size_t n, uint64_t deadline,
                                 bool may_block) {
  struct stat st;
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fstat(fd, &st) != 0) return -1;
  if ((flags & O_ACCMODE) == O_RDONLY || S_ISREG(st.st_mode)) return write(fd, p, n);
  ssize_t k;
  int own = -1;
  if (S_ISSOCK(st.st_mode)) {
    k = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
  } else if (S_ISFIFO(st.st_mode) && (k = pipe_try_nowait(fd, p, n)) != NOWAIT_UNSUPPORTED) {
    /* written, or EAGAIN or EPIPE: answered without waiting */
  } else if (((S_ISCHR(st.st_mode) && isatty(fd)) || S_ISFIFO(st.st_mode)) &&
             (own = reopen_nonblocking(fd, &st)) >= 0) {
    k = write_no_sigpipe(own, p, n);
  } else if (may_block || (S_ISFIFO(st.st_mode) && n <= PIPE_BUF)) {
    /* a pipe with no fd free: a piece it takes whole once poll says it has room (review P: a
     * kernel before 6.4 dropped every line; left, review I's race with a writer that fills it
     * between the two) */
    k = writable_by(fd, deadline) ? write_no_sigpipe(fd, p, n) : WEFT__STDERR_NO_ROOM;
  } else {
    errno = EMFILE; /* see weft__stderr_try */
    k = -1;
  }
  int e = errno;
  if (k == -1 && (e == EAGAIN || e == EWOULDBLOCK)) { /* no room: wait for some */
    k = writable_by(own >= 0 ? own : fd, deadline) ? -1 : WEFT__STDERR_NO_ROOM;
    e = EAGAIN; /* for -1: try again at once (not a poll's EINTR, which would drop the rest) */
  }
  if (own >= 0) close(own);
  errno = e;
  return k;
}

/* One try (stderr_try_write) on a copy of fd's description taken for it, so that the look at
 * what fd is, the poll and the write are about one file even if the program moves fd
 * meanwhile (review G: a look at /dev/null then a write to a full pipe blocked destroy),
 * closed after it (no copy kept: review F, a kept one held a pipe's end of stream off after a
 * redirect, a close or a fork). With no fd free for the copy (EMFILE, ENFILE; EINVAL under a
 * limit of 3 fds or fewer), on fd itself where that write cannot wait — a socket, a pipe that
 * takes RWF_NOWAIT, a regular file — or waits only in poll (a pipe without RWF_NOWAIT, a piece
 * it takes whole), and dropped (EMFILE) where it could block (a terminal, which has no reopen
 * with no fd free): a process out of fds is what this output must still describe (session
 * 38's review L: every line was dropped there, stderr working), and destroy must not wait on
 * it (review N). Left there: a program that moves fd 2 between the look and the write (review
 * G's race) gets the write the look chose. -1 with EBADF: fd is closed. */
ssize_t weft__stderr_try(int fd, const char *p, size_t n, uint64_t deadline) {
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0 && errno != EMFILE && errno != ENFILE && errno != EINVAL) return -1;
  ssize_t k = stderr_try_write(copy >= 0 ? copy : fd, p, n, deadline, copy >= 0);
  int e = errno;
  if (copy >= 0) close(copy);
  errno = e;
  return k;
}

#ifdef WEFT_FAULTS
static _Atomic unsigned line_budget_ms = WEFT__STDERR_LOOK_MS; /* weft__stderr_budget_set */
void weft__stderr_budget_set(unsigned ms) {
  atomic_store_explicit(&line_budget_ms, ms ? ms : WEFT__STDERR_LOOK_MS, memory_order_relaxed);
}
/* relaxed: a test sets it before the destroy whose line it times (nothing else rides on it) */
#define LINE_BUDGET_MS atomic_load_explicit(&line_budget_ms, memory_order_relaxed)
#else
#define LINE_BUDGET_MS WEFT__STDERR_LOOK_MS
#endif

bool weft__stderr_try_line(const char *p, size_t n) {
  uint64_t deadline = weft_now_ns() + LINE_BUDGET_MS * 1000000ull; /* for the whole line */
  while (n) {
    ssize_t k = weft__stderr_try(STDERR_FILENO, p, n, deadline);
    int e = errno;
    if (k > 0) {
      p += k;
      n -= (size_t)k;
    } else if (!(k == -1 && (e == EAGAIN || e == EWOULDBLOCK || e == EINTR) &&
                 weft_now_ns() < deadline)) {
      return false; /* no room by the deadline, or an error: the rest is dropped (EINTR: a
                     * blocking write's signal, tried again as EAGAIN is, review K) */
    }
  }
  return true;
}

/* A task's name as a line shows it: its first 64 bytes, a C0 control byte (a newline, ESC) or
 * DEL as '?', so that a name cannot split a line or forge another line (session 31 for the
 * dump; session 38's reviews L and N: destroy's, the watchdog's and the overflow's lines).
 * Bytes 0x80-0xff stay: they are UTF-8's. Async-signal-safe (lib/overflow.c's handler). */
void weft__name_shown(char shown[WEFT__SAMPLED_NAME_MAX], const char *name) {
  size_t n = 0;
  if (!name) name = "(unnamed)";
  for (; n < WEFT__SAMPLED_NAME_MAX - 1 && name[n]; n++) {
    unsigned char c = (unsigned char)name[n];
    shown[n] = c < 0x20 || c == 0x7f ? '?' : (char)c;
  }
  shown[n] = 0;
}
