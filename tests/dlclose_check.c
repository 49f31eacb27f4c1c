/* The library unloaded (dlclose) while a thread that spawned through it is still alive: that
 * thread's exit must not run code of the unloaded library. Session 28's review: the threads'
 * descriptor caches (lib/task.c) came with a pthread key whose destructor lives in libweft,
 * and a thread exiting after the dlclose jumped to an unmapped address (SIGSEGV). Usage:
 * dlclose_check PATH-TO-libweft.so; exit status 0 when the thread exited cleanly and a fork
 * after the unload ran no handler of the library either. Then (review, session 30) cycles of
 * dlopen, a blocking-pool call, destroy and dlclose (a pool thread must not still be running
 * the library's code when destroy returns), and a runtime with `dump:USR1`: after the unload
 * the program's own SIGUSR1 handler is back (the library's went with its code). */
#include <signal.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../include/weft.h"

static int (*create)(weft_runtime_t **, const weft_options_t *);
static int (*spawn)(weft_runtime_t *, weft_task_t **, weft_fn, void *);
static int (*join)(weft_task_t *, void **);
static int (*destroy)(weft_runtime_t *);
static int (*offload)(weft_fn, void *, void **);
static weft_runtime_t *rt;
static atomic_int spawned, may_exit;

static void *one(void *arg) { return arg; }

static void *spawner(void *arg) {
  (void)arg;
  long sum = 0;
  for (long i = 1; i <= 100; i++) {
    weft_task_t *t;
    void *r;
    if (spawn(rt, &t, one, (void *)i) != 0 || join(t, &r) != 0) {
      fprintf(stderr, "dlclose_check: spawn or join failed\n");
      exit(1);
    }
    sum += (long)(intptr_t)r;
  }
  atomic_store(&spawned, sum == 5050 ? 1 : -1);
  while (!atomic_load(&may_exit)) sched_yield();
  return NULL; /* the thread's exit: after the library is gone */
}

static void *echo_arg(void *arg) { return arg; }

static void *offload_once(void *arg) {
  void *r = NULL;
  return offload(echo_arg, arg, &r) == 0 && r == arg ? arg : NULL;
}

static atomic_int usr1_seen;
static void on_usr1(int sig) {
  (void)sig;
  atomic_fetch_add(&usr1_seen, 1);
}

#define LOOKUP(var, name)                                                        \
  do {                                                                           \
    *(void **)&var = dlsym(lib, name);                                           \
    if (!var) {                                                                  \
      fprintf(stderr, "dlclose_check: %s not found\n", name);                    \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

static void *open_weft(const char *path) {
  void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!lib) fprintf(stderr, "dlclose_check: %s\n", dlerror());
  return lib;
}

/* Each cycle's pool thread has ended, not just counted itself out, when destroy returns. */
static int offload_cycles(const char *path) {
  for (int i = 0; i < 20; i++) {
    void *lib = open_weft(path);
    if (!lib) return 1;
    LOOKUP(create, "weft_runtime_create");
    LOOKUP(spawn, "weft_runtime_spawn");
    LOOKUP(join, "weft_join");
    LOOKUP(destroy, "weft_runtime_destroy");
    LOOKUP(offload, "weft_offload");
    weft_task_t *t;
    void *r = NULL;
    if (create(&rt, NULL) != 0 || spawn(rt, &t, offload_once, &r) != 0 || join(t, &r) != 0 ||
        r != &r || destroy(rt) != 0 || dlclose(lib) != 0) {
      fprintf(stderr, "dlclose_check: offload cycle %d failed\n", i);
      return 1;
    }
  }
  return 0;
}

/* The program's SIGUSR1 handler, replaced by a runtime's `dump:USR1`, is back after the unload. */
static int dump_signal_after_unload(const char *path) {
  struct sigaction mine;
  memset(&mine, 0, sizeof mine);
  mine.sa_handler = on_usr1;
  sigemptyset(&mine.sa_mask);
  if (sigaction(SIGUSR1, &mine, NULL) != 0) return 1;
  void *lib = open_weft(path);
  if (!lib) return 1;
  LOOKUP(create, "weft_runtime_create");
  LOOKUP(destroy, "weft_runtime_destroy");
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.trace = "dump:USR1";
  if (create(&rt, &o) != 0 || destroy(rt) != 0 || dlclose(lib) != 0) return 1;
  struct sigaction now;
  if (sigaction(SIGUSR1, NULL, &now) != 0 || now.sa_handler != on_usr1) {
    fprintf(stderr, "dlclose_check: SIGUSR1's handler after the unload is not the program's\n");
    return 1;
  }
  raise(SIGUSR1);
  return atomic_load(&usr1_seen) == 1 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "dlclose_check: %s\n", dlerror());
    return 1;
  }
  LOOKUP(create, "weft_runtime_create");
  LOOKUP(spawn, "weft_runtime_spawn");
  LOOKUP(join, "weft_join");
  LOOKUP(destroy, "weft_runtime_destroy");
  if (create(&rt, NULL) != 0) return 1;
  pthread_t th;
  if (pthread_create(&th, NULL, spawner, NULL) != 0) return 1;
  while (!atomic_load(&spawned)) sched_yield();
  if (atomic_load(&spawned) != 1) return 1;
  if (destroy(rt) != 0) return 1;
  if (dlclose(lib) != 0) return 1;
  atomic_store(&may_exit, 1);
  pthread_join(th, NULL);
  /* The library's fork handler (lib/task.c, live_after_fork_in_child) went with it too. */
  pid_t child = fork();
  if (child == 0) _exit(0);
  int status = 0;
  if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    fprintf(stderr, "dlclose_check: a fork after the unload failed (status %d)\n", status);
    return 1;
  }
  if (offload_cycles(argv[1]) || dump_signal_after_unload(argv[1])) return 1;
  printf("dlclose_check: the spawning thread exited, a fork ran, pool threads had ended and the "
         "program's signal handler was back, after the unload\n");
  return 0;
}
