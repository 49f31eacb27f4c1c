/* pthread peer for weft's benchmark driver: the contended-mutex row only (issue 11).
 *   usage: pthread-peer mutex <n> [-w workers]   (workers ignored: 8 threads, as weft's 8 tasks)
 *   prints: pthread mutex n=<N> r=<result> ms=<wall ms> rss_kb=<ru_maxrss>
 * 8 threads each lock a pthread_mutex_t, increment a counter and unlock n/8 times. Any other
 * workload exits 3 (compare.py leaves that cell empty). Timing includes creating the threads. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

enum { THREADS = 8 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter, per;

static void *worker(void *arg) {
  (void)arg;
  for (long i = 0; i < per; i++) {
    pthread_mutex_lock(&lock);
    counter++;
    pthread_mutex_unlock(&lock);
  }
  return NULL;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: pthread-peer mutex <n> [-w workers]\n");
    return 2;
  }
  if (strcmp(argv[1], "mutex") != 0) return 3; /* not a workload this peer does */
  long n = strtol(argv[2], NULL, 10);
  per = n / THREADS;
  double t0 = now_ms();
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, NULL);
  for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
  double ms = now_ms() - t0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("pthread mutex n=%ld r=%ld ms=%.1f rss_kb=%ld\n", n, counter, ms, ru.ru_maxrss);
  return 0;
}
