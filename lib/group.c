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
 * Options (weft_group_create_opts, session 34): WEFT_GROUP_KEEP_GOING makes a task's error its
 * own (no cancel of the rest, no refused spawn; the wait returns 0): a server's connections,
 * where a fail-fast group let one unstartable connection take the server down. `unrun` gets
 * the arg of a task that ends without running, through lib/task.c's one-entry hook table
 * (this file's trampoline is its key): on the task's worker as it ends, or in its runtime's
 * destroy for one discarded unstarted. Rejected: calling it when the group lets go of the
 * task (a sweep, a wait: too late for a socket, whose runtime may have freed its table by then).
 *
 * Each task runs through a trampoline that calls the user's function and, on a failure, fails
 * the group; the record it needs (group, function, argument) sits beside the task's handle in
 * its slot, so a spawn allocates nothing but a chunk every 256 tasks, and a task cancelled
 * before it starts leaves nothing behind.
 *
 * Memory. A group lives as long as its owner wants (a server's connections group lives as long
 * as the server), so the slots of ended tasks are reclaimed as it goes, as asyncio's TaskGroup
 * forgets a task once it is done: once as many spawns have passed since the last sweep as the
 * group held tasks after it (at least a chunk's worth), the next spawn that finds no free slot
 * sweeps the group, releasing the handles of ended tasks and putting their slots on a free list
 * (amortised O(1) per spawn; slots stay within about twice the tasks alive at once, or a
 * chunk's worth). A sweep holds the group's lock for its walk (O(slots)): spawns and failing
 * tasks on other workers wait that long. Waiters walk the slots in order, copying out batches
 * of handles: a handle in a waiter's batch is pinned (no sweep releases it; the waiter releases
 * it after its gather, once no other waiter pins it), and a waiter that reaches the end walks
 * again if a slot was reused since its walk began (the reuse may lie behind it) — so a waiter
 * blocked on one long-lived task holds up no reclaiming.
 * Rejected: keeping every handle until destroy (a server's group grew by ~130 bytes per
 * connection for its whole life); no reuse or sweep while anyone waits (a TaskGroup whose owner
 * waits while an acceptor spawns into it grew as before); the task releasing its own handle at
 * the end of its trampoline (a task cancelled before it starts never runs it); a pointer from
 * the task descriptor to its group (the descriptor has no room left in its one cache line, and
 * only grouped tasks would use it); failing the group only when the wait sees the error (errgroup
 * cancels at the first error, not when someone looks).
 */
#include "internal.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

enum {
  GROUP_CHUNK = 256, /* picked: slots per chunk, 8 KiB */
  WAIT_BATCH = 64,   /* picked: handles a waiter gathers at once (1 KiB of its stack) */
};

typedef struct group_slot {
  weft_task_t *task; /* NULL: free (its task ended and its handle was released) */
  int pinned;        /* waiters holding this handle in their current batch */
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
  struct weft__rt_anchor *anchor; /* whether rt is gone: a group may outlive its runtime */
  group_chunk_t *head, *tail; /* in the order they were added */
  group_slot_t *free;         /* slots to reuse */
  uint64_t reuses;            /* slots taken from the free list, ever: see Memory above */
  size_t held;                /* slots holding a task */
  size_t since_sweep;         /* spawns since the last sweep */
  size_t sweep_at;            /* ... that the next one waits for */
  int error;                  /* the first error that was not a cancellation */
  bool cancelled;             /* no new spawns: the group is unwinding */
  bool keep_going;            /* WEFT_GROUP_KEEP_GOING: a task's error is its own */
  void (*unrun)(void *arg);   /* the options' (set at create, read-only after) */
  size_t waiters;             /* inside a wait (or a destroy's): a destroy then aborts */
};

/* Cancels every task spawned so far. Caller holds the lock. */
static void cancel_all_locked(weft_group_t *g) {
  g->cancelled = true;
  for (group_chunk_t *c = g->head; c; c = c->next)
    for (size_t i = 0; i < c->used; i++)
      if (c->slots[i].task) weft_cancel(c->slots[i].task);
}

/* The first error of the group; every task of it cancelled at that first one — one walk, not
 * one per failing task (review, session 34: N tasks that each turned their cancel into an error
 * of their own walked N slots N times under the lock). Caller holds the lock. */
static void fail_locked(weft_group_t *g, int err) {
  if (g->keep_going || g->error) return;
  g->error = err;
  if (!g->cancelled) cancel_all_locked(g);
}

static void group_fail(weft_group_t *g, int err) {
  pthread_mutex_lock(&g->lock);
  fail_locked(g, err);
  pthread_mutex_unlock(&g->lock);
}

static void *group_trampoline(void *arg) {
  group_slot_t *slot = arg;
  void *result = slot->fn(slot->arg);
  int err = weft__current_error();
  if (err && err != WEFT_ECANCELED && !slot->group->keep_going) group_fail(slot->group, err);
  return result;
}

/* lib/task.c's call for a task of ours that ends without running: on its worker before its
 * completion (cancelled before it started, or no stack when it was to start), or on the
 * destroying thread for one its runtime's destroy discards unstarted — there before the
 * destroy closes the runtime's sockets and frees their table, so that unrun may still close
 * one (review of this change, session 34: called later, from the group's wait or destroy, a
 * weft_sock_close read the freed table). A task ends once, so unrun runs once. */
static void group_task_unrun(void *arg) {
  group_slot_t *slot = arg;
  if (slot->group->unrun) slot->group->unrun(slot->arg);
}

int weft_group_create(weft_group_t **out, weft_runtime_t *rt) {
  return weft_group_create_opts(out, rt, NULL);
}

int weft_group_create_opts(weft_group_t **out, weft_runtime_t *rt, const weft_group_opts_t *opts) {
  if (!out) return WEFT_EINVAL;
  *out = NULL;
  if (opts && (opts->flags & ~WEFT_GROUP_KEEP_GOING)) return WEFT_EINVAL;
  if (!rt) { /* inside a task: its runtime */
    weft__worker_t *w = weft__worker_self();
    if (!w || !weft__current(w)) return WEFT_EINVAL;
    rt = w->rt;
  }
  weft_group_t *g = calloc(1, sizeof *g);
  struct weft__rt_anchor *anchor = g ? weft__runtime_anchor_hold(rt) : NULL;
  if (!anchor) {
    free(g);
    return WEFT_ENOMEM;
  }
  pthread_mutex_init(&g->lock, NULL);
  g->keep_going = opts && (opts->flags & WEFT_GROUP_KEEP_GOING);
  g->unrun = opts ? opts->unrun : NULL;
  if (g->unrun) weft__task_unrun_hook(group_trampoline, group_task_unrun);
  g->rt = rt;
  g->anchor = anchor;
  g->sweep_at = GROUP_CHUNK;
  *out = g;
  return 0;
}

/* Puts a slot that holds no task on the free list. Caller holds the lock. */
static void slot_free_locked(weft_group_t *g, group_slot_t *slot) {
  slot->task = NULL;
  slot->next_free = g->free;
  g->free = slot;
}

/* Releases an ended task's handle and frees its slot. Caller holds the lock; the slot is not
 * pinned (no waiter holds a copy of the handle). A task that ended without running its
 * trampoline (no stack at its start; discarded by a destroy) fails the group here if no wait
 * saw it first (review, session 19: a sweep let go of it silently). */
static void slot_release_locked(weft_group_t *g, group_slot_t *slot) {
  int err = slot->task->error; /* done: its completion acquire ordered it (weft_task_done) */
  if (err && err != WEFT_ECANCELED) fail_locked(g, err);
  weft_task_release(slot->task);
  weft__probe_hit(WEFT__PROBE_GROUP_RELEASED);
  slot_free_locked(g, slot);
  g->held--;
}

/* Releases every task that has ended and that no waiter pins. Caller holds the lock. */
static void sweep_locked(weft_group_t *g) {
  for (group_chunk_t *c = g->head; c; c = c->next)
    for (size_t i = 0; i < c->used; i++) {
      group_slot_t *slot = &c->slots[i];
      if (slot->task && !slot->pinned && weft_task_done(slot->task) == 1)
        slot_release_locked(g, slot);
    }
  g->since_sweep = 0;
  g->sweep_at = g->held > GROUP_CHUNK ? g->held : GROUP_CHUNK;
}

/* A slot for one more task. Caller holds the lock. */
static group_slot_t *slot_locked(weft_group_t *g) {
  if (++g->since_sweep >= g->sweep_at && !g->free) sweep_locked(g);
  if (g->free) {
    group_slot_t *slot = g->free;
    g->free = slot->next_free;
    g->reuses++;
    return slot;
  }
  if (!g->tail || g->tail->used == GROUP_CHUNK) {
    group_chunk_t *c = malloc(sizeof *c);
    /* out of memory: reclaim what ended before failing (unless this call just swept) */
    if (!c && g->since_sweep) {
      sweep_locked(g);
      if (g->free) return slot_locked(g);
    }
    if (!c) return NULL;
    weft__probe_hit(WEFT__PROBE_GROUP_CHUNK);
    c->next = NULL;
    c->used = 0;
    if (g->tail)
      g->tail->next = c;
    else
      g->head = c;
    g->tail = c;
  }
  group_slot_t *slot = &g->tail->slots[g->tail->used++];
  slot->pinned = 0;
  return slot;
}

int weft_group_spawn(weft_group_t *g, weft_fn fn, void *arg) {
  if (!g || !fn) return WEFT_EINVAL;
  pthread_mutex_lock(&g->lock);
  /* A runtime destroyed before this spawn: its memory is gone, not just closed (found by
   * review, session 31: the spawn read the freed runtime). */
  bool gone = weft__runtime_anchor_gone(g->anchor);
  /* From outside the runtime, counted in: a destroy that begins meanwhile waits for this spawn
   * to leave before it frees anything (review, session 32). A runtime's own task needs no
   * count: destroy stops its workers only once each task has switched out. */
  weft__worker_t *w = weft__worker_self();
  bool counted = !gone && (!w || w->rt != g->rt);
  if (counted && !weft__runtime_anchor_enter(g->anchor)) counted = false, gone = true;
  group_slot_t *slot = g->cancelled || gone ? NULL : slot_locked(g);
  int err = gone ? WEFT_ESHUTDOWN : g->cancelled ? WEFT_ECANCELED : !slot ? WEFT_ENOMEM : 0;
  if (!err) {
    slot->group = g;
    slot->fn = fn;
    slot->arg = arg;
    /* Under the lock, so that a failure that cancels the group cannot miss this task. */
    err = weft__runtime_spawn_at(g->rt, &slot->task, group_trampoline, slot,
                                 __builtin_return_address(0));
    if (err)
      slot_free_locked(g, slot);
    else
      g->held++;
  }
  if (counted) weft__runtime_anchor_leave(g->anchor); /* the spawn's last touch was before */
  pthread_mutex_unlock(&g->lock);
  return err;
}

/* A waiter's place in the slots: the next one it has not looked at, and the group's reuse
 * count when its walk began. */
typedef struct {
  group_chunk_t *chunk;
  size_t next;
  uint64_t reuses;
} wait_cursor_t;

/* Pins and copies out the handles of up to WAIT_BATCH held slots from the cursor on. 0: every
 * task has ended — the walk reached the end, under the lock, with no slot reused since it
 * began (a reused slot may lie behind the cursor: then the walk starts again). */
static size_t next_batch(weft_group_t *g, wait_cursor_t *at, group_slot_t **slots,
                         weft_task_t **tasks) {
  size_t n = 0;
  pthread_mutex_lock(&g->lock);
  for (;;) {
    if (!at->chunk) {
      at->chunk = g->head;
      at->next = 0;
      at->reuses = g->reuses;
    }
    while (at->chunk && n < WAIT_BATCH) {
      if (at->next == at->chunk->used) {
        if (!at->chunk->next) break;
        at->chunk = at->chunk->next;
        at->next = 0;
        continue;
      }
      group_slot_t *slot = &at->chunk->slots[at->next++];
      if (slot->task) {
        slot->pinned++;
        slots[n] = slot;
        tasks[n++] = slot->task;
      }
    }
    if (n || at->reuses == g->reuses) break;
    at->chunk = NULL; /* a slot was reused since the walk began: walk again */
  }
  pthread_mutex_unlock(&g->lock);
  return n;
}

/* Whether a waiter may release the handles of ended tasks now. A release from outside the
 * runtime (a plain thread, another runtime's task) must not overlap the runtime's destroy, whose
 * step 2 turns every held descriptor into an orphan: a release racing it put descriptors into
 * the thread's cache from a slab that an orphan's last release then unmapped (review, session
 * 34: a SEGV at that thread's exit under ASan, and a race on the orphan mark under TSan). The
 * user's own releases carry that rule in the docs; the group's are the group's to order. So a
 * waiter from outside counts itself in as spawn does, and while destroy runs up to that walk
 * (refused, the handles not yet orphans) it leaves the slots of ended tasks held: a later wait,
 * sweep or the group's destroy releases them. */
typedef enum { RELEASE_NOW, RELEASE_COUNTED, RELEASE_NOT_NOW } release_right_t;

static release_right_t release_right(weft_group_t *g) {
  /* orphans already: the walk that made them is over (destroy may still be running) */
  if (weft__runtime_anchor_gone(g->anchor) || weft__runtime_anchor_orphaned(g->anchor))
    return RELEASE_NOW;
  weft__worker_t *w = weft__worker_self();
  if (w && w->rt == g->rt) return RELEASE_NOW; /* its own task: the workers stop before step 2 */
  if (weft__runtime_anchor_enter(g->anchor)) return RELEASE_COUNTED;
  return weft__runtime_anchor_orphaned(g->anchor) ? RELEASE_NOW : RELEASE_NOT_NOW;
}

static void release_right_end(weft_group_t *g, release_right_t right) {
  if (right == RELEASE_COUNTED) weft__runtime_anchor_leave(g->anchor);
}

/* Unpins a gathered batch, releasing the tasks (they ended) that no other waiter pins. */
static void unpin_batch(weft_group_t *g, group_slot_t **slots, size_t n) {
  release_right_t right = release_right(g);
  pthread_mutex_lock(&g->lock);
  for (size_t i = 0; i < n; i++)
    if (--slots[i]->pinned == 0 && right != RELEASE_NOT_NOW) slot_release_locked(g, slots[i]);
  pthread_mutex_unlock(&g->lock);
  release_right_end(g, right);
}

/* A task that never ran its trampoline (no stack when it was to start: WEFT_ENOMEM; discarded
 * by a destroy: WEFT_ESHUTDOWN) failed the group only here, where its waiter sees it end
 * (review, session 19: such a task was invisible, and the wait returned 0); a sweep that
 * releases it first does the same (slot_release_locked). Errors of tasks that ran went through
 * group_fail already. */
static void fail_on_unrun(weft_group_t *g, weft_task_t *const *tasks, size_t n) {
  pthread_mutex_lock(&g->lock);
  for (size_t i = 0; i < n; i++) {
    int err = tasks[i]->error; /* the gather's completion acquire ordered it */
    if (err && err != WEFT_ECANCELED) fail_locked(g, err); /* one cancel walk, at the first */
  }
  pthread_mutex_unlock(&g->lock);
}

/* A waiter's record: the batch it holds pinned, and, in a task, its record for destroy
 * (weft__discard_hook_t). A task discarded inside a wait never returns to unpin its batch nor
 * leave the waiters' count, and the group's later destroy aborted as if it were still waited
 * for (review of this change, session 34); its record does both. */
typedef struct group_waiting {
  weft_group_t *g;
  struct weft_task *self; /* NULL: a plain thread (never discarded) */
  group_slot_t **slots;
  size_t n; /* pinned now */
  weft__discard_hook_t discarded;
} group_waiting_t;

static void waiter_discarded(void *ctx) {
  group_waiting_t *w = ctx;
  pthread_mutex_lock(&w->g->lock);
  for (size_t i = 0; i < w->n; i++) w->slots[i]->pinned--; /* released later, by a wait or
                                                               * the group's destroy */
  w->g->waiters--;
  pthread_mutex_unlock(&w->g->lock);
}

/* A task of the group waiting for the group waits for itself: never an end (review, session
 * 30: weft_group_wait and weft_group_destroy from a member hung, its deadline scope and the
 * owner's cancel too, where weft_join aborts). Every held slot is looked at before the wait
 * begins, not only the batch being gathered (review, session 34: a member behind 64 live
 * siblings waited for them first, for ever if one waited for the member). Also counts the
 * caller in as a waiter (see weft_group_destroy). */
static void waiter_enter(weft_group_t *g, group_waiting_t *w, const char *what) {
  *w = (group_waiting_t){.g = g, .self = weft_current()};
  pthread_mutex_lock(&g->lock);
  for (group_chunk_t *c = w->self ? g->head : NULL; c; c = c->next)
    for (size_t i = 0; i < c->used; i++)
      if (c->slots[i].task == w->self) {
        pthread_mutex_unlock(&g->lock);
        weft__die("weft: %s: a task of the group waited for its group, so for itself, which "
                  "can never finish.", what);
      }
  g->waiters++;
  pthread_mutex_unlock(&g->lock);
  if (w->self) weft__discard_hook_push(w->self, &w->discarded, waiter_discarded, w);
}

/* Caller holds the lock. */
static void waiter_leave_locked(weft_group_t *g, group_waiting_t *w) {
  if (w->self) weft__discard_hook_pop(w->self, &w->discarded);
  g->waiters--;
}

/* Waits for every task, new ones included; WEFT_ECANCELED if the caller was cancelled (the
 * rest are then cancelled and waited for with cancellation held back). */
static int wait_all_tasks(weft_group_t *g, group_waiting_t *w) {
  int result = 0;
  group_slot_t *slots[WAIT_BATCH];
  weft_task_t *tasks[WAIT_BATCH];
  w->slots = slots;
  wait_cursor_t at = {NULL, 0, 0};
  size_t n;
  bool shielded = false;
  weft__probe_hit(WEFT__PROBE_GROUP_WAIT);
  while ((n = next_batch(g, &at, slots, tasks)) != 0) {
    w->n = n;
    int err;
    while ((err = weft__gather_apart(tasks, n)) != 0) {
      if (shielded) continue; /* cannot happen shielded; never pass unfinished tasks */
      result = err;           /* cancelled, or the waiter's deadline scope passed */
      pthread_mutex_lock(&g->lock);
      cancel_all_locked(g);
      pthread_mutex_unlock(&g->lock);
      /* only a task gets here: a plain thread is never cancelled; the level is always there
       * (join.c's "Shield levels") */
      shielded = weft__shield_begin_cleanup() == 0;
    }
    fail_on_unrun(g, tasks, n);
    unpin_batch(g, slots, n);
    w->n = 0;
  }
  /* A cancel that came meanwhile is delivered by the shield's end: report it. */
  if (shielded && weft_shield_end() == WEFT_ECANCELED) result = WEFT_ECANCELED;
  return result;
}

int weft_group_wait(weft_group_t *g) {
  if (!g) return WEFT_EINVAL;
  group_waiting_t w;
  waiter_enter(g, &w, "weft_group_wait");
  int err = wait_all_tasks(g, &w);
  pthread_mutex_lock(&g->lock);
  if (!err) err = g->error ? g->error : g->cancelled ? WEFT_ECANCELED : 0;
  waiter_leave_locked(g, &w); /* the last touch of g */
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

/* Until the group may release what is left (release_right): a destroy of the group's runtime in
 * progress is waited out until it has made the handles orphans, 1 ms at a time — a task's
 * sleep, shielded, so that its worker runs the rest meanwhile (a spin could hold up the tasks
 * that runtime's destroy waits for). Not until the runtime is gone: its destroy joins the
 * blocking pool after the orphaning, and a pool call of that runtime that destroys a group
 * waited for a destroy that waited for it (review of this change, session 34: a hang). */
static release_right_t release_right_waited(weft_group_t *g) {
  release_right_t right;
  bool shielded = false;
  while ((right = release_right(g)) == RELEASE_NOT_NOW) {
    if (weft_current()) {
      if (!shielded) shielded = weft__shield_begin_cleanup() == 0;
      weft_sleep_ms(1);
    } else {
      nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
  }
  if (shielded) weft_shield_end(); /* a cancel stays pending for the caller's next point */
  return right;
}

/* Destroyed while another task or thread waits for it (weft_group_wait reads the group until it
 * returns): API misuse, as destroying any weft object that is waited on (review, session 34: a
 * use after free in the other waiter). */
static void refuse_while_waited(weft_group_t *g) {
  pthread_mutex_lock(&g->lock);
  size_t waiters = g->waiters;
  pthread_mutex_unlock(&g->lock);
  if (waiters)
    weft__die("weft: weft_group_destroy was called while another task or thread was inside "
              "weft_group_wait on the same group.");
}

void weft_group_destroy(weft_group_t *g) {
  if (!g) return;
  refuse_while_waited(g);
  weft_group_cancel(g); /* a group not waited for unwinds: no task outlives it */
  group_waiting_t w;
  waiter_enter(g, &w, "weft_group_destroy");
  wait_all_tasks(g, &w);
  pthread_mutex_lock(&g->lock);
  waiter_leave_locked(g, &w);
  pthread_mutex_unlock(&g->lock);
  release_right_t right = release_right_waited(g);
  for (group_chunk_t *c = g->head, *next; c; c = next) {
    next = c->next;
    for (size_t i = 0; i < c->used; i++)
      if (c->slots[i].task) weft_task_release(c->slots[i].task);
    free(c);
  }
  release_right_end(g, right);
  weft__runtime_anchor_release(g->anchor);
  pthread_mutex_destroy(&g->lock);
  free(g);
}
