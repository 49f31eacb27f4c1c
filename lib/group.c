/*
 * Task groups: asyncio.TaskGroup, Go's errgroup, Tokio's JoinSet. Owns the group object: a
 * slot per task it holds (the task's handle and its trampoline's record, in chunks that never
 * move), its first error, and whether it was cancelled.
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
 * its slot, so a spawn allocates nothing but a chunk every 256 tasks, and a task cancelled
 * before it starts leaves nothing behind.
 *
 * Memory. A group lives as long as its owner wants (a server's connections group lives as long
 * as the server), so the slots of ended tasks are reclaimed as it goes, as asyncio's TaskGroup
 * forgets a task once it is done: once as many spawns have found no free slot since the last
 * sweep as the group held tasks after it (at least a chunk's worth), the next such spawn sweeps
 * the group, releasing the handles of ended tasks and putting their slots on a free list
 * (amortised O(1) per spawn; slots stay within about twice the tasks alive at once). A lone waiter releases the tasks it has
 * waited for as it goes. Reuse and sweeps wait while anyone waits: a waiter walks the slots
 * in order with handles copied out of them, so no slot behind it may be refilled and no handle
 * it holds may be released; spawns meanwhile append.
 * Rejected: keeping every handle until destroy (a server's group grew by ~130 bytes per
 * connection for its whole life); the task releasing its own handle at the end of its
 * trampoline (a task cancelled before it starts never runs it); a pointer from the task
 * descriptor to its group (the descriptor has no room left in its one cache line, and only
 * grouped tasks would use it); failing the group only when the wait sees the error (errgroup
 * cancels at the first error, not when someone looks).
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

enum {
  GROUP_CHUNK = 256, /* picked: slots per chunk, 8 KiB */
  WAIT_BATCH = 64,   /* picked: handles a waiter gathers at once (1 KiB of its stack) */
};

typedef struct group_slot {
  weft_task_t *task; /* NULL: free (its task ended and its handle was released) */
  struct weft_group *group;
  weft_fn fn;
  union {
    void *arg;                    /* the task's argument, while the slot holds a task */
    struct group_slot *next_free; /* the free list's link, once it does not */
  };
} group_slot_t;

typedef struct group_chunk {
  struct group_chunk *next;
  size_t used; /* slots handed out at least once, in order */
  group_slot_t slots[GROUP_CHUNK];
} group_chunk_t;

struct weft_group {
  pthread_mutex_t lock;
  weft_runtime_t *rt;
  group_chunk_t *head, *tail; /* in the order they were added */
  group_slot_t *free;         /* slots to reuse (only while no one waits) */
  size_t held;                /* slots holding a task */
  size_t since_sweep;         /* spawns since the last sweep */
  size_t sweep_at;            /* ... that the next one waits for */
  int waiters;                /* tasks and threads inside wait_all_tasks */
  int error;                  /* the first error that was not a cancellation */
  bool cancelled;             /* no new spawns: the group is unwinding */
};

/* Cancels every task spawned so far. Caller holds the lock. */
static void cancel_all_locked(weft_group_t *g) {
  g->cancelled = true;
  for (group_chunk_t *c = g->head; c; c = c->next)
    for (size_t i = 0; i < c->used; i++)
      if (c->slots[i].task) weft_cancel(c->slots[i].task);
}

static void group_fail(weft_group_t *g, int err) {
  pthread_mutex_lock(&g->lock);
  if (!g->error) g->error = err;
  cancel_all_locked(g);
  pthread_mutex_unlock(&g->lock);
}

static void *group_trampoline(void *arg) {
  group_slot_t *slot = arg;
  void *result = slot->fn(slot->arg);
  int err = weft__current_error();
  if (err && err != WEFT_ECANCELED) group_fail(slot->group, err);
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
  g->sweep_at = GROUP_CHUNK;
  *out = g;
  return 0;
}

/* Releases an ended task's handle and frees its slot. Caller holds the lock, and no one holds
 * a copy of the handle (see Memory above). */
static void slot_release_locked(weft_group_t *g, group_slot_t *slot) {
  weft_task_release(slot->task);
  weft__probe_hit(WEFT__PROBE_GROUP_RELEASED);
  slot->task = NULL;
  slot->next_free = g->free;
  g->free = slot;
  g->held--;
}

/* Releases every task that has ended. Caller holds the lock; no one waits. */
static void sweep_locked(weft_group_t *g) {
  for (group_chunk_t *c = g->head; c; c = c->next)
    for (size_t i = 0; i < c->used; i++)
      if (c->slots[i].task && weft_task_done(c->slots[i].task) == 1)
        slot_release_locked(g, &c->slots[i]);
  g->since_sweep = 0;
  g->sweep_at = g->held > GROUP_CHUNK ? g->held : GROUP_CHUNK;
}

/* A slot for one more task. Caller holds the lock. */
static group_slot_t *slot_locked(weft_group_t *g) {
  if (!g->waiters) {
    if (!g->free && ++g->since_sweep >= g->sweep_at) sweep_locked(g);
    if (g->free) {
      group_slot_t *slot = g->free;
      g->free = slot->next_free;
      return slot;
    }
  }
  if (!g->tail || g->tail->used == GROUP_CHUNK) {
    group_chunk_t *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->next = NULL;
    c->used = 0;
    if (g->tail)
      g->tail->next = c;
    else
      g->head = c;
    g->tail = c;
  }
  return &g->tail->slots[g->tail->used++];
}

int weft_group_spawn(weft_group_t *g, weft_fn fn, void *arg) {
  if (!g || !fn) return WEFT_EINVAL;
  pthread_mutex_lock(&g->lock);
  group_slot_t *slot = g->cancelled ? NULL : slot_locked(g);
  int err = g->cancelled ? WEFT_ECANCELED : !slot ? WEFT_ENOMEM : 0;
  if (!err) {
    slot->group = g;
    slot->fn = fn;
    slot->arg = arg;
    /* Under the lock, so that a failure that cancels the group cannot miss this task. */
    err = weft__runtime_spawn_at(g->rt, &slot->task, group_trampoline, slot,
                                 __builtin_return_address(0));
    if (err) { /* the slot goes back: free, or the last of its chunk's */
      slot->task = NULL;
      slot->next_free = g->free;
      g->free = slot;
    } else {
      g->held++;
    }
  }
  pthread_mutex_unlock(&g->lock);
  return err;
}

/* A waiter's place in the slots: the next one it has not looked at. */
typedef struct {
  group_chunk_t *chunk;
  size_t next;
} wait_cursor_t;

/* Copies out the handles of up to WAIT_BATCH held slots from the cursor on; 0 at the end (every
 * slot looked at, under the lock: none was added since). */
static size_t next_batch(weft_group_t *g, wait_cursor_t *at, group_slot_t **slots,
                         weft_task_t **tasks) {
  size_t n = 0;
  pthread_mutex_lock(&g->lock);
  if (!at->chunk) at->chunk = g->head;
  while (at->chunk && n < WAIT_BATCH) {
    if (at->next == at->chunk->used) {
      if (!at->chunk->next) break;
      at->chunk = at->chunk->next;
      at->next = 0;
      continue;
    }
    group_slot_t *slot = &at->chunk->slots[at->next++];
    if (slot->task) {
      slots[n] = slot;
      tasks[n++] = slot->task;
    }
  }
  pthread_mutex_unlock(&g->lock);
  return n;
}

/* A lone waiter lets go of the tasks it has just waited for (they ended). */
static void release_waited(weft_group_t *g, group_slot_t **slots, size_t n) {
  pthread_mutex_lock(&g->lock);
  if (g->waiters == 1)
    for (size_t i = 0; i < n; i++) slot_release_locked(g, slots[i]);
  pthread_mutex_unlock(&g->lock);
}

/* Waits for every task, new ones included; WEFT_ECANCELED if the caller was cancelled (the
 * rest are then cancelled and waited for with cancellation held back). */
static int wait_all_tasks(weft_group_t *g) {
  int result = 0;
  group_slot_t *slots[WAIT_BATCH];
  weft_task_t *tasks[WAIT_BATCH];
  wait_cursor_t at = {NULL, 0};
  size_t n;
  bool shielded = false;
  pthread_mutex_lock(&g->lock);
  g->waiters++;
  pthread_mutex_unlock(&g->lock);
  while ((n = next_batch(g, &at, slots, tasks)) != 0) {
    int err;
    while ((err = weft__gather_apart(tasks, n)) != 0) {
      if (shielded) continue; /* cannot happen shielded; never pass unfinished tasks */
      result = err;           /* cancelled, or the waiter's deadline scope passed */
      pthread_mutex_lock(&g->lock);
      cancel_all_locked(g);
      pthread_mutex_unlock(&g->lock);
      weft_shield_begin(); /* only a task gets here: a plain thread is never cancelled */
      shielded = true;
    }
    release_waited(g, slots, n);
  }
  if (shielded) weft_shield_end();
  pthread_mutex_lock(&g->lock);
  g->waiters--;
  pthread_mutex_unlock(&g->lock);
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
    for (size_t i = 0; i < c->used; i++)
      if (c->slots[i].task) weft_task_release(c->slots[i].task);
    free(c);
  }
  pthread_mutex_destroy(&g->lock);
  free(g);
}
