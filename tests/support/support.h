/* Shared by weft's tests: a seeded PRNG of our own, scale factors for sanitizer builds, and
 * helpers that make failures say what they were doing. */
#ifndef WEFT_TEST_SUPPORT_H
#define WEFT_TEST_SUPPORT_H

#include "weft.h"

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define TEST_TSAN 1
#else
#define TEST_TSAN 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define TEST_ASAN 1
#include <sanitizer/lsan_interface.h>
#else
#define TEST_ASAN 0
#endif

/* Sanitized builds run 10-50x slower, and gcc's TSan allows ~8k live threads+fibers: scale the
 * live-at-once counts down there (totals stay large where the notes allow). */
#define TEST_SANITIZED (TEST_TSAN || TEST_ASAN)
#define SCALE(release, sanitized) (TEST_SANITIZED ? (sanitized) : (release))

/* splitmix64: the project's own PRNG (rand_r is replaced in TSan builds). */
static inline uint64_t test_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline uint64_t test_seed(void) {
  const char *s = getenv("WEFT_TEST_SEED");
  return s ? strtoull(s, NULL, 0) : 0x5eed5eedull;
}

#define OK(expr)                                                                               \
  do {                                                                                         \
    int ok_err_ = (expr);                                                                      \
    cr_assert_eq(ok_err_, 0, "%s failed: %s", #expr, weft_strerror(ok_err_));                  \
  } while (0)

/* A runtime made with the given options (from WEFT_OPTIONS_INIT, a field or two set). */
static inline weft_runtime_t *runtime_with(const weft_options_t *o) {
  weft_runtime_t *rt = NULL;
  int err = weft_runtime_create(&rt, o);
  cr_assert_eq(err, 0, "weft_runtime_create(%d workers): %s", o->workers, weft_strerror(err));
  return rt;
}

static inline weft_runtime_t *test_runtime(int workers) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = workers;
  return runtime_with(&o);
}

/* Runs fn(arg) as a task on a fresh runtime of `workers` and returns its result. */
static inline void *run_on(int workers, weft_fn fn, void *arg) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = workers;
  void *r = NULL;
  int err = weft_run(&o, fn, arg, &r);
  cr_assert_eq(err, 0, "weft_run: %s", weft_strerror(err));
  return r;
}

/* Runs fn(rt) as a task on a fresh runtime of `workers`, for tests that read the runtime's
 * statistics from inside; destroys the runtime afterwards. */
static inline void run_given_runtime(int workers, weft_fn fn) {
  weft_runtime_t *rt = test_runtime(workers);
  weft_task_t *t;
  int err = weft_runtime_spawn(rt, &t, fn, rt);
  cr_assert_eq(err, 0, "weft_runtime_spawn: %s", weft_strerror(err));
  cr_assert_eq(weft_join(t, NULL), 0);
  cr_assert_eq(weft_runtime_destroy(rt), 0);
}

/* A child that, once its awaiter's cleanup cancels it, cancels that awaiter (*arg, a
 * weft_task_t **) and ends: a cancel that comes during a wait's own cleanup. Shielded until
 * then, so that the cancel which starts the cleanup does not end it first. */
static inline void *cancel_the_awaiter_once_cancelled(void *arg) {
  weft_shield_begin();
  while (!weft_cancelling()) weft_sleep_ms(1);
  int err = weft_cancel(*(weft_task_t **)arg);
  cr_assert_eq(err, 0, "weft_cancel: %s", weft_strerror(err));
  weft_shield_end();
  return NULL;
}

#define IPTR(x) ((void *)(intptr_t)(x))
#define PINT(p) ((long)(intptr_t)(p))

#endif
