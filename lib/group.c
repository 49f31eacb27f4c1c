/*
 * Task groups: asyncio.TaskGroup, Go's errgroup, Tokio's JoinSet. Owns the group object: the
 * handles of its tasks (chunks that never move, so a wait can gather over them while others
 * spawn), its first error, and whether it was cancelled.
 *
 * Semantics. weft_group_spawn starts a task in the group; weft_group_wait waits until every task
 * spawned so far — and any spawned while it waits — has ended. The first error of a task that is
 * not a cancellation cancels every other task of the group and is what the wait returns. If the
 * waiting task is itself cancelled, it cancels the group's tasks, waits for them to unwind
 * (shielded) and returns WEFT_ECANCELED: so cancelling the task that owns a group cancels its
 * children, and nested groups unwind inside out. weft_group_destroy does the same for a group
 * that was not waited: no task outlives its group.
 *
 * Each task runs through a trampoline that calls the user's function and, on a failure, fails
 * the group; the record it needs (group, function, argument) sits beside the task's handle in
 * the group's chunk, so a spawn allocates nothing but a chunk every 256 tasks, and a task
 * cancelled before it starts leaves nothing behind.
 * Rejected: a pointer from the task descriptor to its group (the descriptor has no room left
 * in its one cache line, and only grouped tasks would use it); failing the group only when the
 * wait sees the error (errgroup cancels at the first error, not when someone looks).
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

enum { GROUP_CHUNK = 256 }; /* picked: tasks per chunk, 8 KiB */

typedef struct {
  struct weft_group *group;
  weft_fn fn;
  void *arg;
} group_call_t;

typedef struct group_chunk {
  struct group_chunk *next;
  size_t used;
  weft_task_t *tasks[GROUP_CHUNK]; /* handles, for gather */
  group_call_t calls[GROUP_CHUNK]; /* each task's trampoline argument */
} group_chunk_t;

struct weft_group {
  pthread_mutex_t lock;
  weft_runtime_t *rt;
  group_chunk_t *head, *tail; /* in spawn order */
  group_chunk_t *waited;      /* the chunk the waiter is at, and ... */
  size_t waited_used;         /* ... how many of its handles it has waited for */
  int error;                  /* the first error that was not a cancellation */
  bool cancelled;             /* no new spawns: the group is unwinding */
};

/* Cancels every task spawned so far. Caller holds the lock. */
static void cancel_all_locked(weft_group_t *g) {
  g->cancelled = true;
  for (group_chunk_t *c = g->head; c; c = c->next)
    for (size_t i = 0; i < c->used; i++) weft_cancel(c->tasks[i]);
}

static void group_fail(weft_group_t *g, int err) {
  pthread_mutex_lock(&g->lock);
  if (!g->error) g->error = err;
  cancel_all_locked(g);
  pthread_mutex_unlock(&g->lock);
}

static void *group_trampoline(void *arg) {
  group_call_t *call = arg;
  void *result = call->fn(call->arg);
  int err = weft__current_error();
  if (err && err != WEFT_ECANCELED) group_fail(call->group, err);
  return result;
}

int weft_group_create(weft_group_t **out, weft_runtime_t *rt) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (!rt) { /* inside a task: its runtime */
    weft__worker_t *w = weft__worker_self();
    if (!w || !weft__current(w)) return WEFT_EINVAL;
    rt = w->rt;
  }
  weft_group_t *g = calloc(1, sizeof *g);
  if (!g) return WEFT_ENOMEM;
  pthread_mutex_init(&g->lock, NULL);
  g->rt = rt;
  *out = g;
  return 0;
}

/* Room for one more task in the last chunk. Caller holds the lock. */
static group_chunk_t *room_locked(weft_group_t *g) {
  if (g->tail && g->tail->used < GROUP_CHUNK) return g->tail;
  group_chunk_t *c = malloc(sizeof *c);
  if (!c) return NULL;
  c->next = NULL;
  c->used = 0;
  if (g->tail)
    g->tail->next = c;
  else
    g->head = g->waited = c;
  g->tail = c;
  return c;
}

int weft_group_spawn(weft_group_t *g, weft_fn fn, void *arg) {
  if (!g || !fn) return WEFT_EINVAL;
  pthread_mutex_lock(&g->lock);
  group_chunk_t *c = g->cancelled ? NULL : room_locked(g);
  int err = g->cancelled ? WEFT_ECANCELED : !c ? WEFT_ENOMEM : 0;
  if (!err) {
    group_call_t *call = &c->calls[c->used];
    *call = (group_call_t){g, fn, arg};
    /* Under the lock, so that a failure that cancels the group cannot miss this task. */
    err = weft__runtime_spawn_at(g->rt, &c->tasks[c->used], group_trampoline, call,
                                 __builtin_return_address(0));
    if (!err) c->used++;
  }
  pthread_mutex_unlock(&g->lock);
  return err;
}

/* The next handles not yet waited for, up to the end of one chunk; 0 when none. */
static size_t next_unwaited(weft_group_t *g, weft_task_t *const **tasks) {
  pthread_mutex_lock(&g->lock);
  while (g->waited && g->waited_used == g->waited->used && g->waited->next) {
    g->waited = g->waited->next;
    g->waited_used = 0;
  }
  size_t n = g->waited ? g->waited->used - g->waited_used : 0;
  if (n) *tasks = g->waited->tasks + g->waited_used;
  pthread_mutex_unlock(&g->lock);
  return n;
}

static void mark_waited(weft_group_t *g, size_t n) {
  pthread_mutex_lock(&g->lock);
  g->waited_used += n;
  pthread_mutex_unlock(&g->lock);
}

/* Waits for every task, new ones included; WEFT_ECANCELED if the caller was cancelled (the
 * rest are then cancelled and waited for with cancellation held back). */
static int wait_all_tasks(weft_group_t *g) {
  int result = 0;
  weft_task_t *const *tasks;
  size_t n;
  bool shielded = false;
  while ((n = next_unwaited(g, &tasks)) != 0) {
    int err = weft__gather_apart(tasks, n);
    if (err && shielded) continue; /* cannot happen shielded; never mark unfinished tasks */
    if (err && !shielded) { /* cancelled, or the waiter's deadline scope passed */
      result = err;
      pthread_mutex_lock(&g->lock);
      cancel_all_locked(g);
      pthread_mutex_unlock(&g->lock);
      weft_shield_begin(); /* only a task gets here: a plain thread is never cancelled */
      shielded = true;
      continue;
    }
    mark_waited(g, n);
  }
  if (shielded) weft_shield_end();
  return result;
}

int weft_group_wait(weft_group_t *g) {
  if (!g) return WEFT_EINVAL;
  int err = wait_all_tasks(g);
  pthread_mutex_lock(&g->lock);
  if (!err) err = g->error ? g->error : g->cancelled ? WEFT_ECANCELED : 0;
  pthread_mutex_unlock(&g->lock);
  return err;
}

int weft_group_cancel(weft_group_t *g) {
  if (!g) return WEFT_EINVAL;
  pthread_mutex_lock(&g->lock);
  cancel_all_locked(g);
  pthread_mutex_unlock(&g->lock);
  return 0;
}

void weft_group_destroy(weft_group_t *g) {
  if (!g) return;
  weft_group_cancel(g); /* a group not waited for unwinds: no task outlives it */
  wait_all_tasks(g);
  for (group_chunk_t *c = g->head, *next; c; c = next) {
    next = c->next;
    for (size_t i = 0; i < c->used; i++) weft_task_release(c->tasks[i]);
    free(c);
  }
  pthread_mutex_destroy(&g->lock);
  free(g);
}
