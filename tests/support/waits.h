/* For tests that read the task dump (test_diag.c) and tests of blocking primitives
 * (test_sync.c, test_channel.c): the dump's text, and waiting until a named task is
 * suspended on a channel or a lock, by polling the task dump for its line (the state under
 * test is the event: no sleep-and-hope). */
#ifndef WEFT_TEST_WAITS_H
#define WEFT_TEST_WAITS_H

#include "support.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The dump's text, read back from a temporary file. */
static inline void waits_dump_text(weft_runtime_t *rt, char *buf, size_t cap) {
  FILE *f = tmpfile();
  cr_assert(f);
  OK(weft_runtime_dump(rt, fileno(f)));
  ssize_t n = pread(fileno(f), buf, cap - 1, 0);
  buf[n > 0 ? n : 0] = 0;
  fclose(f);
}

/* Polls the dump (10 s at most) until the task named `name` shows `what` ("waiting on a
 * channel", "waiting for a lock"). */
static inline void await_blocked(weft_runtime_t *rt, const char *name, const char *what) {
  static char buf[1 << 16];
  char needle[128];
  snprintf(needle, sizeof needle, "\"%s\": %s", name, what);
  uint64_t until = weft_now_ns() + 10000000000ull;
  for (;;) {
    waits_dump_text(rt, buf, sizeof buf);
    if (strstr(buf, needle)) return;
    if (weft_now_ns() > until) break;
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  cr_assert_fail("no task line with '%s' in:\n%s", needle, buf);
}

#endif
