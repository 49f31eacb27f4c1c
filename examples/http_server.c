/*
 * An HTTP/1.1 keep-alive server on weft: one task per connection, code that reads top to
 * bottom like a Go handler, parsing by Debian's libhttp-parser (nodejs/http-parser 2.9).
 *
 *   http_server 8080 [FILE]     serves  GET /        -> "hello, world\n"
 *                                       GET /file    -> FILE's contents (read via weft_offload;
 *                                                       a regular file of at most 64 MiB)
 *                                       anything else -> 404
 *
 * Pipelined requests are answered in order, their responses written together (OUT_FLUSH bytes
 * at most are held: a long pipeline is answered as it goes); HEAD gets GET's
 * head without its body. A malformed request gets 400 and the connection closes; a body over
 * BODY_LIMIT gets 413 and the connection closes (after a bounded "lingering close": the unread
 * request is drained for up to LINGER_MS, so that the client reads the answer instead of a
 * reset). After a request that says Connection: close (or HTTP/1.0 without keep-alive, or
 * CONNECT, or any request answered during the drain) nothing more is answered; if the client
 * had sent more, the close lingers the same way. A request whose version is not 1.x gets 505. A client that sends nothing for IDLE_TIMEOUT_S is dropped, and one
 * that takes longer than REQUEST_TIMEOUT_S to send a whole request (slowloris: a byte at a
 * time) too; a response gets WRITE_TIMEOUT_S of its own.
 * SIGINT/SIGTERM: stop accepting, close idle connections (a half-received request is in flight,
 * not idle), let requests in flight finish for up to DRAIN_TIMEOUT_S, then cancel what is left
 * (Go's Server.Shutdown). Expect: 100-continue gets its interim answer at once (curl waits a
 * second for it otherwise); an HTTP/1.1 request without Host gets 400 (RFC 9112 3.2), and so
 * does one with whitespace between a header's name and its colon (RFC 9112 5.1: the parser
 * refuses it as a bad token; tests/http_check.py holds it to that). Routing looks
 * at the path only: a query string is ignored, and an absolute-form target ("GET http://h/ ...",
 * which a server must accept: RFC 9112 3.2.2) routes by its path.
 * Workers: WEFT_WORKERS (default: every CPU). HTTP_REQUEST_TIMEOUT_S replaces REQUEST_TIMEOUT_S
 * (tests/http_check.py shortens it to time a slow client in seconds).
 */
#include <weft.h>

#include <errno.h>
#include <fcntl.h>
#include <http_parser.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
  /* Kept small: an idle connection costs the stack pages its deepest call touched. */
  READ_BUF = 1024,         /* on the connection task's stack */
  OUT_INLINE = 768,        /* responses up to this size need no allocation */
  OUT_FLUSH = 64 * 1024,   /* pipelined responses held before they are written */
  URL_MAX = 256,
  BODY_LIMIT = 64 * 1024,  /* larger bodies get 413 */
  IDLE_TIMEOUT_S = 60,     /* between requests */
  REQUEST_TIMEOUT_S = 30,  /* from a request's first byte to its last (HTTP_REQUEST_TIMEOUT_S) */
  WRITE_TIMEOUT_S = 60,    /* a response's write */
  LINGER_MS = 1000,        /* draining what a client sends after its last answer (linger) */
  DRAIN_TIMEOUT_S = 5,
};
#define SEC_NS 1000000000ull

/* ---- What a handler sees ------------------------------------------------------------------- */

typedef struct request {
  const char *method; /* "GET", ... */
  const char *path;   /* the target's path and query ("/", "/file?x=1"; "/" for "http://h") */
  const char *body;
  size_t body_len;
} request_t;

typedef struct response {
  int status;
  const char *content_type;
  char *body;
  size_t len, cap;
  bool failed; /* out of memory: an empty 500 */
  char inline_body[256];
} response_t;

/* Appends to the body. Out of memory, the answer becomes an empty 500 (nothing more is appended):
 * never a crash, nor a 200 cut short. */
static void respond(response_t *w, const void *data, size_t len) {
  if (w->failed) return;
  if (w->len + len > w->cap) {
    size_t cap = (w->len + len) * 2;
    char *b = malloc(cap);
    if (!b) {
      w->failed = true;
      w->status = 500;
      w->content_type = "text/plain; charset=utf-8";
      w->len = 0;
      return;
    }
    memcpy(b, w->body, w->len);
    if (w->body != w->inline_body) free(w->body);
    w->body = b;
    w->cap = cap;
  }
  memcpy(w->body + w->len, data, len);
  w->len += len;
}

static void respond_str(response_t *w, const char *s) { respond(w, s, strlen(s)); }

/* ---- The handlers ---------------------------------------------------------------------------- */

static const char *file_path; /* argv[2], served at /file */

static void hello(const request_t *r, response_t *w) {
  (void)r;
  respond_str(w, "hello, world\n");
}

enum { FILE_MAX = 64 << 20 }; /* picked: the largest file /file serves (it is read whole) */

typedef struct file_read {
  const char *path;
  char *data;
  size_t len;
  int status; /* 200, 404 (no such file), 503 (its open out of fds or memory), 500 (not a
               * regular file, too large, no memory to read it, any other error) */
} file_read_t;

/* Why an open failed, as a status: only a file that is not there is a 404 (review, session 34:
 * out of fds, an existing file answered 404, which a cache may keep); running out of fds or
 * memory passes (503), anything else is the server's (500). */
static int open_failure_status(int err) {
  if (err == ENOENT || err == ENOTDIR) return 404;
  if (err == EMFILE || err == ENFILE || err == ENOMEM) return 503;
  return 500;
}

static void *read_file(void *arg) { /* blocking: runs on the pool */
  file_read_t *f = arg;
  /* O_NONBLOCK: a FIFO put at the path would block the open until a writer came, and the
   * drain waits for offloaded calls, which no cancel stops (review, session 34: the server
   * outlived its drain deadline by as long as the FIFO had no writer). Regular files ignore
   * the flag; anything else is refused below. */
  int fd = open(f->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    f->status = open_failure_status(errno);
    return f;
  }
  f->status = 500;
  struct stat st;
  FILE *fp = NULL;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= FILE_MAX &&
      (fp = fdopen(fd, "rb")) && (f->data = malloc(st.st_size ? (size_t)st.st_size : 1))) {
    f->len = fread(f->data, 1, (size_t)st.st_size, fp);
    if (f->len == (size_t)st.st_size && !ferror(fp)) f->status = 200; /* else cut short: 500 */
  }
  if (fp)
    fclose(fp);
  else
    close(fd);
  return f;
}

static void file(const request_t *r, response_t *w) {
  (void)r;
  file_read_t f = {.path = file_path, .status = 404};
  void *done = NULL;
  if (file_path && weft_offload(read_file, &f, &done) != 0) f.status = 500; /* not run */
  if (f.status == 200) {
    w->content_type = "application/octet-stream";
    respond(w, f.data, f.len);
  } else {
    w->status = f.status;
    respond_str(w, f.status == 404   ? "no file\n"
                   : f.status == 503 ? "busy: try again\n"
                                     : "cannot serve the file\n");
  }
  free(f.data);
}

/* Whether the request's path (the URL up to its query) is `path`. */
static bool path_is(const request_t *r, const char *path) {
  size_t n = strcspn(r->path, "?");
  return n == strlen(path) && !strncmp(r->path, path, n);
}

static void route(const request_t *r, response_t *w) {
  bool get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD"); /* HEAD: GET's head */
  if (get && path_is(r, "/")) return hello(r, w);
  if (get && path_is(r, "/file")) return file(r, w);
  w->status = 404;
  respond_str(w, "not found\n");
}

/* ---- A connection ----------------------------------------------------------------------------- */

typedef enum { CONN_IDLE, CONN_BUSY, CONN_CLOSING } conn_state_t;

typedef struct conn {
  weft_sock_t *sock;
  weft_task_t *task;
  _Atomic int state; /* conn_state_t: the shutdown closes only IDLE connections */
  struct conn *prev, *next;
  http_parser parser;
  char url[URL_MAX];
  size_t url_len;
  char *body;
  size_t body_len;
  int fail_status; /* 0, or the status the connection ends with (400, 413, 414) */
  bool keep_alive; /* false once a request said close: nothing after it is answered */
  bool in_request; /* between a request's first byte and its end: in flight, not idle */
  bool bytes_since_request; /* read something since the last request ended (blank lines) */
  bool out_failed; /* out of memory for a response, or a write failed: the connection closes */
  /* The headers this server reads (Host, Expect), matched as they arrive in pieces. */
  char field[8];       /* the current header's name, lower-cased, while it fits */
  size_t field_len;    /* its length (past sizeof field: some other header) */
  bool in_value;       /* the parser is in a value: the next name is a new header */
  bool has_host;
  bool host_twice; /* a second Host line: 400 (RFC 9112 3.2) */
  char expect[16];     /* the Expect value, lower-cased, while it fits */
  size_t expect_len;
  size_t expect_ws; /* whitespace read after the value so far: kept only if more follows */
  bool in_expect;
  uint64_t request_deadline; /* REQUEST_TIMEOUT_S after the first byte of the current one */
  /* Responses to the requests parsed from one read: written together. */
  char *out;
  size_t out_len, out_cap;
  char out_inline[OUT_INLINE];
} conn_t;

static uint64_t request_timeout_ns = REQUEST_TIMEOUT_S * SEC_NS; /* main may shorten it */

static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static conn_t *conns;
static atomic_int draining;

/* Out of memory, the connection is closed (out_failed) and the others go on: never a crash. */
static void out_append(conn_t *c, const char *data, size_t len) {
  if (c->out_failed) return;
  if (c->out_len + len > c->out_cap) {
    size_t cap = (c->out_len + len) * 2;
    char *b = malloc(cap);
    if (!b) {
      c->out_failed = true;
      return;
    }
    memcpy(b, c->out, c->out_len);
    if (c->out != c->out_inline) free(c->out);
    c->out = b;
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
}

/* Appends s and returns the end (the response head is built by hand: snprintf was 5 % of the
 * server's CPU under wrk). */
static char *put(char *p, const char *s) {
  size_t n = strlen(s);
  memcpy(p, s, n);
  return p + n;
}

static char *put_uint(char *p, size_t v) {
  char digits[24];
  int n = 0;
  do digits[n++] = (char)('0' + v % 10);
  while ((v /= 10));
  while (n) *p++ = digits[--n];
  return p;
}

/* The head, and the body unless the request was HEAD (its Content-Length is still GET's).
 * http10_kept: an HTTP/1.0 request that asked to keep the connection, which the answer must
 * confirm, or its client reads until the close (review C, session 36: ab -k waited out the
 * idle timeout). */
static void out_response(conn_t *c, int status, const char *type, const char *body, size_t len,
                         bool keep_alive, bool head_only, bool http10_kept) {
  char head[256], *p = head;
  p = put(p, "HTTP/1.1 ");
  p = put_uint(p, (size_t)status);
  p = put(p, " ");
  p = put(p, http_status_str((enum http_status)status)); /* at most 31 bytes */
  p = put(p, "\r\nContent-Type: ");
  p = put(p, type); /* the handlers' own short constants */
  p = put(p, "\r\nContent-Length: ");
  p = put_uint(p, len);
  p = put(p, !keep_alive   ? "\r\nConnection: close\r\n\r\n"
             : http10_kept ? "\r\nConnection: keep-alive\r\n\r\n"
                           : "\r\n\r\n");
  out_append(c, head, (size_t)(p - head));
  if (!head_only) out_append(c, body, len);
}

static int on_message_begin(http_parser *p) {
  conn_t *c = p->data;
  c->url_len = 0;
  c->body_len = 0;
  c->in_request = true;
  /* Its own time from its first byte, also when it comes in the read that ended the last;
   * blank lines read before it (which the parser skips) started the clock already */
  if (!c->bytes_since_request) c->request_deadline = weft_now_ns() + request_timeout_ns;
  c->field_len = 0;
  c->in_value = c->has_host = c->host_twice = c->in_expect = false;
  c->expect_len = c->expect_ws = 0;
  return 0;
}

/* Appends a lower-cased piece to buf while it fits; *len counts on past it (then no match). */
static void lower_append(char *buf, size_t cap, size_t *len, const char *at, size_t n) {
  for (size_t i = 0; i < n; i++, (*len)++)
    if (*len < cap) buf[*len] = (char)(at[i] >= 'A' && at[i] <= 'Z' ? at[i] + 32 : at[i]);
}

static bool piece_is(const char *buf, size_t cap, size_t len, const char *s) {
  return len <= cap && len == strlen(s) && !memcmp(buf, s, len);
}

/* Expect's value, lower-cased, with the whitespace that http_parser leaves at its end held back
 * (expect_ws) until more of the value follows: trailing whitespace is not part of it, however
 * long (review C and E, session 36: "100-continue " got no interim answer, and its client
 * waited for its own timeout before sending the body). */
static void expect_append(conn_t *c, const char *at, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (at[i] == ' ' || at[i] == '\t') {
      c->expect_ws++;
      continue;
    }
    for (; c->expect_ws; c->expect_ws--)
      lower_append(c->expect, sizeof c->expect, &c->expect_len, " ", 1);
    lower_append(c->expect, sizeof c->expect, &c->expect_len, &at[i], 1);
  }
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->in_value) { /* a new header */
    c->in_value = c->in_expect = false;
    c->field_len = 0;
  }
  lower_append(c->field, sizeof c->field, &c->field_len, at, len);
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (!c->in_value) { /* the value's first piece: whose is it? */
    c->in_value = true;
    if (piece_is(c->field, sizeof c->field, c->field_len, "host")) {
      c->host_twice = c->has_host;
      c->has_host = true;
    }
    c->in_expect = piece_is(c->field, sizeof c->field, c->field_len, "expect");
    if (c->in_expect) c->expect_len = c->expect_ws = 0;
  }
  if (c->in_expect) expect_append(c, at, len);
  return 0;
}

/* Writes what is in c->out now (the interim 100 Continue goes out before the body comes). */
static bool out_flush(conn_t *c) {
  uint64_t deadline = weft_now_ns() + WRITE_TIMEOUT_S * SEC_NS;
  bool ok = weft_sock_write(c->sock, c->out, c->out_len, NULL, deadline) == 0;
  c->out_len = 0;
  return ok;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->url_len + len >= URL_MAX) {
    c->fail_status = 414;
    return -1;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return 0;
}

static int on_headers_complete(http_parser *p) {
  conn_t *c = p->data;
  /* First: a request of another version is not judged by this one's rules (review F: a large
   * HTTP/2.0 body got 413). RFC 9110 15.6.6 (review E, session 36: "HTTP/2.0" was served). */
  if (p->http_major != 1) {
    c->fail_status = 505;
    return -1;
  }
  /* A declared length over the limit is refused before a byte of it is read. */
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > BODY_LIMIT) {
    c->fail_status = 413;
    return -1;
  }
  bool http11 = p->http_minor >= 1;
  /* 400: RFC 9112 3.2 requires it for a missing Host in HTTP/1.1 and a second Host line in any
   * version (review C, session 36: two were answered 200) */
  if ((http11 && !c->has_host) || c->host_twice) return -1;
  /* The client waits for this before it sends the body (RFC 9110 10.1.1); the answers to any
   * requests pipelined ahead of it go first. A task may write from inside the parser: the
   * write suspends the task, not the worker. */
  if (http11 && piece_is(c->expect, sizeof c->expect, c->expect_len, "100-continue")) {
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    out_append(c, cont, sizeof cont - 1);
    if (!out_flush(c)) { /* the connection is gone: close it, with nothing more written */
      c->out_failed = true;
      return -1;
    }
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  conn_t *c = p->data;
  if (c->body_len + len > BODY_LIMIT) { /* chunked bodies have no declared length */
    c->fail_status = 413;
    return -1;
  }
  char *b = realloc(c->body, c->body_len + len);
  if (!b) { /* out of memory: close, as for a response (not a 400: the request was fine) */
    c->out_failed = true;
    return -1;
  }
  memcpy(b + c->body_len, at, len);
  c->body = b;
  c->body_len += len;
  return 0;
}

/* The target's path (and query) within url: origin-form as it is, absolute-form from its path
 * on ("/" when it has none); anything else (asterisk-form "*", authority-form) as sent. */
static const char *target_path(const char *url, size_t len) {
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (url[0] == '/' || http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)))
    return url;
  return u.field_set & (1 << UF_PATH) ? url + u.field_data[UF_PATH].off : "/";
}

static int on_message_complete(http_parser *p) {
  conn_t *c = p->data;
  c->url[c->url_len] = '\0';
  request_t r = {.method = http_method_str((enum http_method)p->method),
                 .path = target_path(c->url, c->url_len),
                 .body = c->body, .body_len = c->body_len};
  response_t w = {.status = 200, .content_type = "text/plain; charset=utf-8"};
  w.body = w.inline_body;
  w.cap = sizeof w.inline_body;
  route(&r, &w);
  /* The body goes now: a connection that stays idle must not keep up to BODY_LIMIT of it
   * (review C, session 36: 72 KiB an idle connection after a 64 KiB POST). */
  free(c->body);
  c->body = NULL;
  /* CONNECT's rest would be a tunnel's, never parsed (parse_read): its answer is the last, so
   * that what follows ends the same way however the reads split it (review C, session 36). */
  c->keep_alive = http_should_keep_alive(p) && !atomic_load(&draining) &&
                  p->method != HTTP_CONNECT;
  out_response(c, w.status, w.content_type, w.body, w.len, c->keep_alive, p->method == HTTP_HEAD,
               c->keep_alive && p->http_major == 1 && p->http_minor == 0);
  if (w.body != w.inline_body) free(w.body);
  c->in_request = c->bytes_since_request = false;
  /* A long pipeline's answers go out as they pass OUT_FLUSH, not all held until the read's
   * end (review, session 30: 33 pipelined GET /file in one read held 1.4 GB, and a failed
   * allocation aborted the whole server). A failure parses nothing more: serve_once closes. */
  if (!c->out_failed && c->out_len >= OUT_FLUSH && !out_flush(c)) c->out_failed = true;
  if (c->out_failed) {
    http_parser_pause(p, 1);
    return 0;
  }
  /* The last request of the connection: parse nothing after it (RFC 9112 9.6; the parser
   * itself would go on, and answer a pipelined request behind a close). */
  if (!c->keep_alive) http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void conn_link(conn_t *c) {
  pthread_mutex_lock(&conns_lock);
  c->next = conns;
  if (conns) conns->prev = c;
  conns = c;
  pthread_mutex_unlock(&conns_lock);
}

static void conn_unlink(conn_t *c) {
  pthread_mutex_lock(&conns_lock);
  if (c->prev) c->prev->next = c->next;
  else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  pthread_mutex_unlock(&conns_lock);
}

/* A lingering close, after a refused request or the connection's last answer: no more writes
 * (the answer is out), then what the client still sends is read and dropped until it stops or
 * LINGER_MS pass, so that closing with unread input (a request pipelined behind the last)
 * does not reset the connection before the client has read the answer (Go's
 * closeWriteAndWait). A client that closes when it has the answer ends it at once. */
static void linger(conn_t *c) {
  char sink[READ_BUF];
  uint64_t until = weft_now_ns() + LINGER_MS * 1000000ull;
  weft_sock_shutdown(c->sock, SHUT_WR);
  /* the clock too: a read past its deadline still takes what is queued (a poll), so a client
   * that keeps sending kept it going (review E, session 36) */
  while (weft_now_ns() < until && weft_sock_read(c->sock, sink, sizeof sink, until) > 0) {
  }
}

/* Whether the client has sent more than we read (a read with a deadline of now is a poll; what
 * it takes goes, as a lingering close's reads would drop it). */
static bool unread_input(conn_t *c) {
  char sink[64];
  return weft_sock_read(c->sock, sink, sizeof sink, weft_now_ns()) > 0;
}

/* The next read's deadline: the idle timeout between requests, and within a request the
 * earlier of that and the request's own (one byte a minute must not keep it open). poll_only:
 * a connection the shutdown found before it was linked answers only what is already there. */
static uint64_t read_deadline(const conn_t *c, bool poll_only) {
  uint64_t now = weft_now_ns();
  if (poll_only) return now;
  uint64_t idle = now + IDLE_TIMEOUT_S * SEC_NS;
  bool timed = c->in_request || c->bytes_since_request;
  return timed && c->request_deadline < idle ? c->request_deadline : idle;
}

/* Parses the read whole. A request that asks to upgrade ends the parser's run at its end (the
 * rest would be the new protocol's), but this server never switches (it sends no 101), so what
 * follows is the next request (review, session 30: one pipelined behind an Upgrade got 400).
 * CONNECT's rest would be a tunnel's: left unparsed, so it is refused. */
static size_t parse_read(conn_t *c, const char *buf, size_t n) {
  size_t used = 0, step;
  do {
    step = http_parser_execute(&c->parser, &settings, buf + used, n - used);
    used += step;
  } while (step && used < n && HTTP_PARSER_ERRNO(&c->parser) == HPE_OK && c->parser.upgrade &&
           c->parser.method != HTTP_CONNECT);
  return used;
}

/* Reads, parses, answers; true while the connection stays open. */
static bool serve_once(conn_t *c, bool poll_only) {
  char buf[READ_BUF];
  ptrdiff_t n = weft_sock_read(c->sock, buf, sizeof buf, read_deadline(c, poll_only));
  if (n <= 0) return false;
  /* Between requests we are IDLE, and the shutdown may have claimed us while we waited: then
   * stop without answering. Within one we stayed BUSY: a request in flight is finished. */
  int idle = CONN_IDLE;
  if (!c->in_request && !atomic_compare_exchange_strong(&c->state, &idle, CONN_BUSY)) return false;
  c->out = c->out_inline;
  c->out_cap = sizeof c->out_inline;
  c->out_len = 0;
  c->out_failed = false;
  /* The request's clock starts at the first byte after the last request, blank lines
   * included: the parser skips CRLFs before a request without a callback, so a client sending
   * one every few seconds was never timed (review, session 34: open after 40 s, where
   * REQUEST_TIMEOUT_S is 30). */
  if (!c->in_request && !c->bytes_since_request) {
    c->bytes_since_request = true;
    c->request_deadline = weft_now_ns() + request_timeout_ns;
  }
  size_t used = parse_read(c, buf, (size_t)n);
  bool open = true, refused = false, last = false;
  if (c->out_failed) { /* out of memory, or a write failed: close with nothing more written */
    open = false;
  } else if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) { /* a request said close: the last */
    open = false;
    last = true; /* lingers: review C, session 36 (pipelined input behind it, in the drain) */
  } else if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || used != (size_t)n) {
    int status = c->fail_status ? c->fail_status : 400;
    const char *text = status == 413   ? "body too large\n"
                       : status == 505 ? "HTTP version not supported\n"
                                       : "bad request\n";
    out_response(c, status, "text/plain; charset=utf-8", text, strlen(text), false, false, false);
    open = false;
    refused = true;
  }
  uint64_t write_deadline = weft_now_ns() + WRITE_TIMEOUT_S * SEC_NS;
  if (!c->out_failed && c->out_len &&
      weft_sock_write(c->sock, c->out, c->out_len, NULL, write_deadline) != 0)
    open = refused = last = false;
  if (c->out != c->out_inline) free(c->out);
  /* The last answer's close lingers only over input the client already sent (in this read, or
   * queued now): one that sent nothing more gets no reset, and the drain no wait (review E). */
  if (refused || (last && (used < (size_t)n || unread_input(c)))) linger(c);
  if (!open || c->in_request) return open; /* mid-request: read on (the drain deadline bounds it) */
  /* Idle first, then the look at the drain: the shutdown sets `draining` before its walk over
   * the idle connections, so either the walk sees us idle (and cancels us) or we see the flag.
   * Looked at first, a connection between the look and going idle was skipped by the walk as
   * busy and then waited idle until the drain's deadline (review, session 34). */
  int busy = CONN_BUSY;
  if (!atomic_compare_exchange_strong(&c->state, &busy, CONN_IDLE)) return false;
  if (atomic_load(&draining)) return false; /* shutting down: this request is answered, close */
  return true;
}

static void *serve(void *arg) {
  conn_t c = {.sock = arg, .task = weft_current(), .keep_alive = true};
  atomic_init(&c.state, CONN_IDLE);
  http_parser_init(&c.parser, HTTP_REQUEST);
  c.parser.data = &c;
  conn_link(&c);
  /* Linked after the shutdown's walk over the idle connections (accepted just before the
   * listener closed): answer what the client has already sent, without waiting for more. */
  bool poll_only = atomic_load(&draining);
  while (serve_once(&c, poll_only)) {
  }
  conn_unlink(&c);
  free(c.body);
  weft_sock_close(c.sock);
  return NULL;
}

/* ---- Accepting and shutting down ------------------------------------------------------------- */

typedef struct server {
  weft_sock_t *listener;
  weft_group_t *conns;
} server_t;

/* The connections' group: one connection's failure is its own (KEEP_GOING), and a connection
 * task that never ran — no stack when it was to start, or cancelled by the drain first —
 * closes its socket through unrun, so that its client sees the close (review, session 34: in a
 * fail-fast group one such task cancelled every connection and refused every later one, and
 * its client waited for ever). */
static void close_unserved(void *sock) { weft_sock_close(sock); }

static int connections_group(weft_group_t **conns) {
  weft_group_opts_t opts = {.flags = WEFT_GROUP_KEEP_GOING, .unrun = close_unserved};
  return weft_group_create_opts(conns, NULL, &opts);
}

static void *accept_loop(void *arg) {
  server_t *s = arg;
  for (;;) {
    weft_sock_t *c;
    int err = weft_sock_accept(s->listener, &c, NULL, NULL, UINT64_MAX);
    if (err == WEFT_EBADF || err == WEFT_ECANCELED) return NULL; /* shutting down */
    if (err) {
      fprintf(stderr, "http_server: accept: %s\n", weft_strerror(err));
      continue;
    }
    if (weft_group_spawn(s->conns, serve, c) != 0) weft_sock_close(c);
  }
}

/* Closes the connections waiting for their next request; busy ones close after answering. */
static void close_idle(void) {
  pthread_mutex_lock(&conns_lock);
  for (conn_t *c = conns; c; c = c->next) {
    int idle = CONN_IDLE;
    if (atomic_compare_exchange_strong(&c->state, &idle, CONN_CLOSING)) weft_cancel(c->task);
  }
  pthread_mutex_unlock(&conns_lock);
}

typedef struct config {
  int port;
  int signal_fd;
} config_t;

static void *server_main(void *arg) {
  config_t *cfg = arg;
  server_t s;
  struct sockaddr_storage addr;
  socklen_t len;
  weft_sock_addr("0.0.0.0", (uint16_t)cfg->port, &addr, &len);
  int err = weft_sock_listen(NULL, (struct sockaddr *)&addr, len, 0, 0, &s.listener);
  if (err) {
    fprintf(stderr, "http_server: listen on port %d: %s\n", cfg->port, weft_strerror(err));
    return weft_fail(err);
  }
  printf("http_server: listening on port %d\n", weft_sock_port(s.listener));
  fflush(stdout);
  if ((err = connections_group(&s.conns)) != 0) {
    fprintf(stderr, "http_server: %s\n", weft_strerror(err));
    weft_sock_close(s.listener);
    return weft_fail(err);
  }
  weft_task_t *acceptor;
  if ((err = weft_spawn(&acceptor, accept_loop, &s)) != 0) { /* review C, session 36 */
    fprintf(stderr, "http_server: the acceptor: %s\n", weft_strerror(err));
    weft_sock_close(s.listener);
    weft_group_destroy(s.conns);
    return weft_fail(err);
  }

  /* Wait for SIGINT or SIGTERM (a signalfd is a socket-like fd: the task suspends on it). A
   * signal fd that cannot be had (no memory) stops the server at once, the same way. */
  weft_sock_t *sig = NULL;
  int sig_err = weft_sock_open(NULL, cfg->signal_fd, &sig);
  if (sig_err) close(cfg->signal_fd); /* still ours: weft_sock_open failed */
  struct signalfd_siginfo si;
  while (!sig_err && weft_sock_read(sig, &si, sizeof si, UINT64_MAX) != (ptrdiff_t)sizeof si) {
  }
  atomic_store(&draining, 1);
  /* After the store: a client that sees this line knows the drain has begun (http_check.py) */
  if (sig_err)
    fprintf(stderr, "http_server: the signal fd: %s: draining\n", weft_strerror(sig_err));
  else
    fprintf(stderr, "http_server: %s: draining\n", strsignal((int)si.ssi_signo));
  weft_sock_close(s.listener); /* stop accepting: the acceptor wakes with WEFT_EBADF */
  weft_join(acceptor, NULL);
  close_idle();
  weft_deadline_t drain;
  /* WEFT_ENOMEM: no scope to hold the deadline, so cancel at once rather than wait unbounded */
  bool scoped = weft_deadline_begin(&drain, weft_now_ns() + DRAIN_TIMEOUT_S * SEC_NS) == 0;
  err = scoped ? weft_group_wait(s.conns) : WEFT_ETIMEDOUT;
  if (scoped) weft_deadline_end(&drain);
  if (err == WEFT_ETIMEDOUT) { /* requests still running: cancel them */
    fprintf(stderr, "http_server: drain deadline passed: cancelling\n");
    weft_group_cancel(s.conns);
    weft_group_wait(s.conns);
  }
  weft_group_destroy(s.conns);
  if (sig) weft_sock_close(sig);
  fprintf(stderr, "http_server: stopped\n");
  return sig_err ? weft_fail(sig_err) : NULL;
}

int main(int argc, char **argv) {
  config_t cfg = {.port = 8080};
  if (argc > 1) { /* a port, whole: "abc" or 70000 was taken as 0 or 4464 (review C) */
    char *end;
    long port = strtol(argv[1], &end, 10);
    if (!*argv[1] || *end || port < 0 || port > 65535) {
      fprintf(stderr, "http_server: the port must be 0-65535, not '%s'\n", argv[1]);
      return 2;
    }
    cfg.port = (int)port;
  }
  const char *timeout_s = getenv("HTTP_REQUEST_TIMEOUT_S");
  if (timeout_s && atoi(timeout_s) > 0) request_timeout_ns = (uint64_t)atoi(timeout_s) * SEC_NS;
  file_path = argc > 2 ? argv[2] : NULL;
  /* Blocked before the workers start, so that they inherit the mask and only the signalfd
   * sees the signals. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  cfg.signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (cfg.signal_fd < 0) {
    perror("http_server: signalfd");
    return 1;
  }
  int err = weft_run(NULL, server_main, &cfg, NULL);
  if (err) fprintf(stderr, "http_server: %s\n", weft_strerror(err));
  return err ? 1 : 0;
}
