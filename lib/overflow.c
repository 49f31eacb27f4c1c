/*
 * Stack-overflow reports: a SIGSEGV handler, on a per-worker alternate signal stack, that
 * tells an overflow of the running task's stack from any other fault. If the faulting address
 * lies in the guard below the running task's stack, it writes one line naming the task, its
 * id and its stack size, then lets the default action kill the process; any other fault goes
 * to whoever handled SIGSEGV before weft. Above the stacks and the workers: it reads the
 * running task (worker.c) and the pool's guard size (stack.c); nothing below calls it.
 * Rejected: reporting from the guard page itself (a handler cannot run on the stack that
 * overflowed — hence the alternate stack), and longjmp-ing out of the fault to fail only the
 * task (its frames, locks and partners are in an unknown state: the process must end).
 */
#include "internal.h"

#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>


static struct sigaction previous_segv;
static pthread_mutex_t handler_lock = PTHREAD_MUTEX_INITIALIZER;
static int handler_users; /* worker threads with the handler installed, under handler_lock */

/* Async-signal-safe formatting: snprintf is not on the list. */
static size_t put_str(char *buf, size_t at, size_t cap, const char *s) {
  while (*s && at + 1 < cap) buf[at++] = *s++;
  return at;
}

static size_t put_u64(char *buf, size_t at, size_t cap, uint64_t v) {
  char digits[24];
  int n = 0;
  do {
    digits[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  while (n && at + 1 < cap) buf[at++] = digits[--n];
  return at;
}

static void on_segv(int sig, siginfo_t *info, void *uctx) {
  weft__worker_t *w = weft__worker_self();
  weft_task_t *t = w ? weft__current(w) : NULL;
  /* Until its start stores runs_on, those bytes are its fn (the descriptor's union): a fault
   * between weft__set_current and weft__task_started is no overflow of its stack. relaxed: the
   * faulting thread's own store, or the worker's that ran it here. */
  weft__stack_t *s =
      t && atomic_load_explicit(&t->started, memory_order_relaxed) ? t->runs_on : NULL;
  char *addr = info->si_addr;
  /* Every stack a task of this runtime runs on (an inlined task runs on its awaiter's) comes
   * from this runtime's pool, whose guard size was fixed at creation. */
  size_t guard = s ? weft__stack_pool_guard(weft__task_rt(t)->stacks) : 0;
  if (s && addr >= s->lo - guard && addr < s->lo) {
    char line[256], name[WEFT__SAMPLED_NAME_MAX];
    weft__name_shown(name, weft__task_name(t)); /* read once (a rename may clear it: review P) */
    size_t n = put_str(line, 0, sizeof line, "weft: task '");
    n = put_str(line, n, sizeof line, name);
    n = put_str(line, n, sizeof line, "' (id ");
    n = put_u64(line, n, sizeof line, t->id);
    n = put_str(line, n, sizeof line, ") overflowed its ");
    n = put_u64(line, n, sizeof line, s->bytes);
    n = put_str(line, n, sizeof line, "-byte stack\n");
    /* One write: lines from two workers cannot interleave (pipes keep writes ≤ PIPE_BUF whole). */
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
    signal(SIGSEGV, SIG_DFL);
    return; /* the faulting access repeats and the default action ends the process */
  }
  /* Not ours: hand the fault to whoever handled it before us. */
  if (previous_segv.sa_flags & SA_SIGINFO && previous_segv.sa_sigaction) {
    previous_segv.sa_sigaction(sig, info, uctx);
  } else if (previous_segv.sa_handler != SIG_DFL && previous_segv.sa_handler != SIG_IGN &&
             previous_segv.sa_handler) {
    previous_segv.sa_handler(sig);
  } else {
    signal(SIGSEGV, SIG_DFL);
  }
}

static bool is_ours(const struct sigaction *sa) {
  return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_segv;
}

static bool same_handler(const struct sigaction *a, const struct sigaction *b) {
  return a->sa_flags == b->sa_flags && (a->sa_flags & SA_SIGINFO
                                            ? a->sa_sigaction == b->sa_sigaction
                                            : a->sa_handler == b->sa_handler);
}

static bool segv_handler_is_ours(void) {
  struct sigaction now;
  return sigaction(SIGSEGV, NULL, &now) == 0 && is_ours(&now);
}

/* fork(): the child has none of the workers counted, and a lock that one of them may have
 * held; it starts with a fresh lock, a count of 0 and the handler from before weft (so that
 * its last runtime's destroy puts that one back, as in the parent). Not held across the fork
 * (tried in session 29: an application whose own prepare handler destroys a runtime waited
 * for good, its workers' exits waiting on the lock the forking thread held: review). A fork
 * in the middle of an install (its saved handler is set first) or a removal (the install's
 * check) is covered. Made anew by the first of weft's child handler and a
 * weft_runtime_create in the child, once (lib/sys.c's weft__forked_claim; review, session 30:
 * weft's handler, run after an application's child handler that made a runtime, put the
 * pre-weft handler back under that runtime's workers and zeroed their count). */
static void handler_after_fork_in_child(void) {
  if (!weft__forked_claim(WEFT__FORKED_HANDLER)) return;
  pthread_mutex_init(&handler_lock, NULL);
  if (handler_users && segv_handler_is_ours()) sigaction(SIGSEGV, &previous_segv, NULL);
  handler_users = 0;
  weft__forked_done(WEFT__FORKED_HANDLER);
}

static pthread_once_t handler_fork_once = PTHREAD_ONCE_INIT;
static void handler_fork_register(void) {
  (void)pthread_atfork(NULL, NULL, handler_after_fork_in_child);
}

/* Called by weft_runtime_create before it starts a worker (the workers install the handler):
 * registers the fork handler, and makes the state anew in a child whose handler has not run. */
void weft__overflow_fork_check(void) {
  pthread_once(&handler_fork_once, handler_fork_register);
  handler_after_fork_in_child();
}

static void handler_lock_take(void) {
  pthread_once(&handler_fork_once, handler_fork_register);
  pthread_mutex_lock(&handler_lock);
  weft__pause(WEFT__PAUSE_HANDLER_LOCKED); /* tests: a fork comes here */
}

int weft__overflow_reports_install(void **altstack) {
  size_t size = 64 * 1024; /* above SIGSTKSZ and MINSIGSTKSZ on both arches */
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return WEFT_ENOMEM;
  stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) {
    munmap(mem, size);
    return WEFT_ENOMEM;
  }
  *altstack = mem;
  handler_lock_take();
  if (handler_users++ == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    /* The handler before ours is saved before ours goes in: a fork between the two gave the
     * child weft's handler and a stale saved one, which its fork handler then put back (review,
     * session 30: the application's handler lost); a fault on a thread of no runtime there
     * went to the stale one too. Ours already (a fork child whose parent was between a
     * removal's count and its sigaction): keep the one from before weft, or a fault not ours
     * would come back to us. */
    struct sigaction before, replaced;
    if (sigaction(SIGSEGV, NULL, &before) == 0 && !is_ours(&before)) previous_segv = before;
    bool installed = sigaction(SIGSEGV, &sa, &replaced) == 0;
    weft__pause(WEFT__PAUSE_HANDLER_INSTALLED); /* tests: a fork with weft's handler just in */
    if (installed && !is_ours(&replaced) && !same_handler(&replaced, &before))
      previous_segv = replaced; /* the program changed it between our two calls */
  }
  pthread_mutex_unlock(&handler_lock);
  return 0;
}

void weft__overflow_reports_remove(void *altstack) {
  if (!altstack) return;
  stack_t ss = {.ss_flags = SS_DISABLE};
  sigaltstack(&ss, NULL);
  munmap(altstack, 64 * 1024);
  handler_lock_take();
  if (--handler_users == 0) {
    /* Only if the handler is still ours: one the program installed after us (a crash reporter)
     * stays (review, session 20: the destroy put back the one from before us over it). */
    if (segv_handler_is_ours()) sigaction(SIGSEGV, &previous_segv, NULL);
  }
  pthread_mutex_unlock(&handler_lock);
}
