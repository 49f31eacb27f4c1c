/* The library unloaded (dlclose) while a thread that spawned through it is still alive: that
 * thread's exit must not run code of the unloaded library. Session 28's review: the threads'
 * descriptor caches (lib/task.c) came with a pthread key whose destructor lives in libweft,
 * and a thread exiting after the dlclose jumped to an unmapped address (SIGSEGV). Usage:
 * dlclose_check PATH-TO-libweft.so; exit status 0 when the thread exited cleanly and a fork
 * after the unload ran no handler of the library either. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../include/weft.h"

static int (*create)(weft_runtime_t **, const weft_options_t *);
static int (*spawn)(weft_runtime_t *, weft_task_t **, weft_fn, void *);
static int (*join)(weft_task_t *, void **);
static int (*destroy)(weft_runtime_t *);
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

#define LOOKUP(var, name)                                                        \
  do {                                                                           \
    *(void **)&var = dlsym(lib, name);                                           \
    if (!var) {                                                                  \
      fprintf(stderr, "dlclose_check: %s not found\n", name);                    \
      return 1;                                                                  \
    }                                                                            \
  } while (0)

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
  printf("dlclose_check: the spawning thread exited, and a fork ran, after the unload\n");
  return 0;
}
