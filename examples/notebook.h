/* Helpers shared by the walkthrough programs: the notebook's `time.strftime('%X')` and an
 * elapsed-time line the tests check. */
#ifndef WEFT_NOTEBOOK_H
#define WEFT_NOTEBOOK_H
#include "weft.h"

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static uint64_t notebook_t0;

static inline void print_clock(const char *what) {
  char buf[32];
  time_t now = time(NULL);
  strftime(buf, sizeof buf, "%X", localtime(&now));
  printf("%s at %s\n", what, buf);
  fflush(stdout);
}

static inline void notebook_start(const char *idea) {
  printf("# notebook idea: %s\n", idea);
  notebook_t0 = weft_now_ns();
}

static inline void notebook_end(void) {
  printf("elapsed: %.1f s\n", (double)(weft_now_ns() - notebook_t0) / 1e9);
}

/* asyncio.run(main()) with the default options. */
static inline int notebook_run(weft_fn main_fn) {
  void *r;
  int err = weft_run(NULL, main_fn, NULL, &r);
  if (err) fprintf(stderr, "weft_run: %s\n", weft_strerror(err));
  return err ? 1 : 0;
}
#endif
