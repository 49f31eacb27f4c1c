/* Helpers shared by the walkthrough programs: CHECK for weft's return codes, the notebook's
 * `time.strftime('%X')` and an elapsed-time line the tests check. */
#ifndef WEFT_NOTEBOOK_H
#define WEFT_NOTEBOOK_H
#include "weft.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* CHECK(weft_call(...)): a walkthrough has no error path of its own, so a weft call that fails
 * (returns a negative WEFT_E* code) aborts with the call and the error's text. */
#define CHECK(call) notebook_check((call), #call)
static inline void notebook_check(int err, const char *call) {
  if (err) {
    fprintf(stderr, "%s failed: %s\n", call, weft_strerror(err));
    abort();
  }
}

static inline void print_clock(const char *what) {
  char buf[32];
  time_t now = time(NULL);
  strftime(buf, sizeof buf, "%X", localtime(&now));
  printf("%s at %s\n", what, buf);
  fflush(stdout);
}

/* Prints the idea, runs main_fn as asyncio.run(main()) with the default options, then the
 * elapsed-time line the tests check. Returns main()'s exit status. */
static inline int notebook_main(const char *idea, weft_fn main_fn) {
  printf("# notebook idea: %s\n", idea);
  uint64_t t0 = weft_now_ns();
  void *r;
  int err = weft_run(NULL, main_fn, NULL, &r);
  if (err) fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
  printf("elapsed: %.1f s\n", (double)(weft_now_ns() - t0) / 1e9);
  return err ? 1 : 0;
}
#endif
