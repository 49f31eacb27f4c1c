/* A user's fork-join program against the installed library: weft.h's inline weft_fork /
 * weft_sync read the library's thread-local frame deque (initial-exec TLS) from the user's own
 * executable, so this checks that the symbol resolves and the inline path agrees with the
 * library, under the user's sanitizer. Frames that sleep force the detach and steal paths.
 * Exit 0 if fib and the sleepy tree come out right at 1, 2 and 4 workers. */
#include <weft.h>

#include <stdint.h>
#include <stdio.h>

static void *fib(void *arg) {
  long n = (long)(intptr_t)arg;
  if (n < 2) return arg;
  weft_frame_t f;
  weft_fork(&f, fib, (void *)(intptr_t)(n - 1));
  long b = (long)(intptr_t)fib((void *)(intptr_t)(n - 2));
  return (void *)(intptr_t)((long)(intptr_t)weft_sync(&f) + b);
}

/* Memory handed to the frame through arg: the fork must order the owner's writes before a
 * thief's reads (TSan sees the edge only through weft's annotations: libweft is not
 * instrumented). */
typedef struct job {
  long n;
  long out;
} job_t;

static void *jfib(void *arg) {
  job_t *j = arg;
  if (j->n < 2) {
    j->out = j->n;
    return NULL;
  }
  job_t a = {j->n - 1, 0}, b = {j->n - 2, 0};
  weft_frame_t f;
  weft_fork(&f, jfib, &a);
  jfib(&b);
  weft_sync(&f);
  j->out = a.out + b.out;
  return NULL;
}

static void *sleepy(void *arg) {
  long depth = (long)(intptr_t)arg;
  if (depth == 0) return weft_sleep_ns(10000) == 0 ? (void *)1 : NULL;
  weft_frame_t a, b;
  weft_fork(&a, sleepy, (void *)(intptr_t)(depth - 1));
  weft_fork(&b, sleepy, (void *)(intptr_t)(depth - 1));
  long rb = (long)(intptr_t)weft_sync(&b);
  return (void *)(intptr_t)((long)(intptr_t)weft_sync(&a) + rb);
}

int main(void) {
  for (int workers = 1; workers <= 4; workers *= 2) {
    weft_options_t o = WEFT_OPTIONS_INIT;
    o.workers = workers;
    void *r = NULL;
    if (weft_run(&o, fib, (void *)(intptr_t)22, &r) || (intptr_t)r != 17711) {
      fprintf(stderr, "fib(22) at %d workers: %ld\n", workers, (long)(intptr_t)r);
      return 1;
    }
    job_t j = {20, 0};
    if (weft_run(&o, jfib, &j, NULL) || j.out != 6765) {
      fprintf(stderr, "fib(20) through memory at %d workers: %ld\n", workers, j.out);
      return 1;
    }
    if (weft_run(&o, sleepy, (void *)(intptr_t)6, &r) || (intptr_t)r != 64) {
      fprintf(stderr, "sleepy tree at %d workers: %ld\n", workers, (long)(intptr_t)r);
      return 1;
    }
  }
  puts("frames: fib(22) and a sleepy tree right at 1, 2, 4 workers");
  return 0;
}
