/*
 * One hierarchical timing wheel for all workers (Varghese & Lauck).
 *
 * Geometry, derived from the constants below:
 *   tick                     = TICK_NS                      = 250 µs
 *   slots per level          = 1 << SLOT_BITS               = 64
 *   level L slot width       = 64^L ticks: 0.25 ms, 16 ms, 1.0 s, 65.5 s, 69.9 min, 3.1 days
 *   level L range            = 64^(L+1) ticks: 16 ms, 1.0 s, 65.5 s, 69.9 min, 3.1 days, 199 days
 *   LEVELS                   = 6: the wheel spans 64^6 ticks ≈ 199 days.
 * The tick is a quarter of a millisecond so that a sleep's lateness from rounding (< 1 tick)
 * stays well under the 1 ms p99 target; a 1 ms tick measured p99 1.12 ms idle.
 * A deadline past the range (or in the current top-level slot's next turn) is parked in the
 * top level's slot just before the current one and re-inserted when that slot comes due (so it
 * is late by nothing and early never: it simply goes round again).
 *
 * Trade-off: entries cascade (Tokio), not expire coarsely (Linux). When a higher-level slot
 * comes due, its entries are re-inserted at lower levels, so every sleep fires in the first
 * tick at or after its deadline: a sleep never returns early and is late by at most one tick
 * plus scheduling. Linux accepts up to 12.5% lateness to never cascade because its timeouts
 * are mostly cancelled; weft's sleeps mostly fire (asyncio's sleep is the common case), and
 * asyncio users expect sleep(1) to take 1 s, not 1.125 s. Each entry cascades at most once per
 * level (≤ 5 moves), and O(1) insert and cancel remain.
 * Rejected: a binary heap (O(log n) insert and cancel, and 10^6 sleepers make it 20 levels of
 * cache misses under the lock); per-worker wheels (Tokio tried sharding and reverted:
 * contention moved to parking, and a sleeper that wakes on another worker needs a cross-wheel
 * cancel queue). One wheel, one mutex: held by a poll, a cancel or a count.
 * Arming does not take the mutex: an armer pushes its entry onto a lock-free inbox and lowers
 * the published earliest deadline; the next holder of the mutex links the inbox into the wheel
 * (lib/timer_inbox_impl.h says how no deadline is lost between them). The mutex is left to the
 * poller, cancels and counts, so arms never sleep on it while a poll cascades (gather 10^4 × 10:
 * futex waits and wakes were a third of the profile). A holder drains the inbox before it polls
 * or cancels, and again after it publishes while armers keep pushing (each pass takes all
 * there is, so only armers outpacing the links could keep it there).
 *
 * Lanes: each slot is LANES lists, filled round robin and walked abreast when the slot comes
 * due, so a cascade has LANES cache misses in flight where one list had one (the entries live
 * on their waiting tasks' stacks, in their joins; the next of a list is known only once its
 * miss is served). Entries due in the same tick fire in no promised order (lane by lane).
 * sleep 10^6: the poll's share of samples 12 % → 6.6 %, for ~40 more instructions per entry
 * (bench/README.md, #13 "Sleep floor"). A cancel checks the slot's LANES heads to keep
 * `occupied` exact. Rejected for now: slots as arrays of (deadline, entry) pairs, which
 * cascade without touching entries at all but make a cancel move another entry into its place.
 *
 * Firing happens outside the lock: a poll unlinks at most FIRE_BATCH due entries under the lock
 * and runs their callbacks after releasing it; the rest wait in a "due" list for the next poll,
 * so a storm of timers cannot starve running tasks. The due list is FIFO: a poll that comes
 * late, with more than a batch due, fires the earliest batch first (deadline order to the tick
 * across batches too, except for entries armed while a poll ran whose tick it had passed:
 * they join the due list's end). The order the woken tasks then run in is the scheduler's:
 * their worker takes its newest work first, and another worker may steal any of them. A timer
 * and a cancel race on one atomic state word changed only under the lock: ARMED → FIRING
 * (poll) or ARMED → IDLE (cancel), so exactly one wins.
 * Parking: a worker about to park reads the earliest deadline (next_ns) and parks until then;
 * arming an earlier timer makes weft__timer_arm return true, and its caller (the worker that
 * armed it) wakes one parked worker; a poll or cancel whose publishing let a worker park too
 * long runs the wake check it was created with (lib/timer_inbox_impl.h). Due entries leave
 * the wheel one way only: their `fire` callback, run outside the lock.
 */
#include "internal.h"

#include <string.h>
#include <time.h>

enum {
  SLOT_BITS = 6,
  SLOTS = 1 << SLOT_BITS,
  SLOT_MASK = SLOTS - 1,
  LEVELS = 6,
  FIRE_BATCH = 256, /* picked: callbacks one poll runs before it looks for work again */
  FIRE_AHEAD = 4, /* picked: callbacks the fire loop prefetches ahead (prefetch_fire); not swept */
  LANES = 8, /* picked: lists per slot, walked abreast (see advance); not swept */
  DUE_LIST = LEVELS * SLOTS * LANES, /* level_slot value of an entry waiting in the due list */
  IN_INBOX = DUE_LIST + 1,           /* level_slot value of an entry not yet linked */
  DUE_OVERFLOW = DUE_LIST + 2,       /* level_slot value of an entry on the due overflow list */
  DUE_FIRST_CAP = 256,               /* picked: the due ring's first size (a batch) */
  DUE_KEEP = 4096,                   /* picked: a ring this big or smaller is kept when empty */
  DUE_PREFETCH = 8,                  /* picked: entries the pop prefetches ahead */
  INBOX_LANES = 4, /* picked: the inbox's stacks, drained abreast (timer_inbox_impl.h) */
};
#define TICK_NS UINT64_C(250000)
#define MAX_TICKS ((UINT64_C(1) << (SLOT_BITS * LEVELS)) - 1)
#define TOP_WIDTH (UINT64_C(1) << (SLOT_BITS * (LEVELS - 1))) /* a top-level slot, in ticks */

enum { TIMER_IDLE = 0, TIMER_ARMED = 1, TIMER_FIRING = 2 };

typedef struct list {
  weft__timer_entry_t *head;
} list_t;

/* Due entries in the order they came due (tick order: advance walks the ticks in order), so a
 * late poll with more than a batch due fires the earliest batch first.
 * A ring of pointers (#13, session 13), not a linked list: the entries live on their tasks'
 * stacks, cold by the time a poll pops them, and a list's next is known only once its entry's
 * miss is served — gather's pop loop was ~8 % of its samples, one miss at a time. The ring's
 * next pointers are at hand, and the pop prefetches DUE_PREFETCH entries ahead. An entry in the
 * ring keeps its position in `prev` (a cancel clears its slot: the pop skips empty slots).
 * When the ring cannot grow (no memory), entries queue on an overflow list behind it (FIFO
 * kept: while the list is not empty every append goes there). A ring of more than
 * DUE_KEEP slots is freed once empty. Rejected: lanes (order across lanes breaks with cancels). */
typedef struct due_queue {
  weft__timer_entry_t **ring; /* cap slots (a power of two, or 0) */
  size_t cap;
  size_t head, tail; /* positions ever popped and pushed: the ring holds [head, tail) */
  size_t live;       /* entries in the ring: [head, tail) less the slots cancels emptied */
  weft__timer_entry_t *over_head, *over_tail; /* the overflow list, doubly linked */
} due_list_t;

#define TI_ENTRY weft__timer_entry_t
#define TI_NEXT(e) ((e)->next)
#define TI_HEAD _Atomic(weft__timer_entry_t *)
#define TI_WORD _Atomic uint64_t
#define TI_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define TI_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define TI_XCHG(obj, v, mo) atomic_exchange_explicit(&(obj), (v), (mo))
#define TI_CAS(obj, expected, v, mos, mof) \
  atomic_compare_exchange_weak_explicit(&(obj), &(expected), (v), (mos), (mof))
#define TI_RLX memory_order_relaxed
#define TI_SC memory_order_seq_cst
#define TI_FN(name) inbox_##name
#define TI_LANES INBOX_LANES
#define TI_LANE(heads, i) ((heads)[i])
#define TI_DRAIN_NEXT(ctx) drain_and_next(ctx)
static uint64_t drain_and_next(void *timer);
#include "timer_inbox_impl.h"

struct weft__timer {
  /* Every arm reads next_ns (writes it when earlier); parkers read it; the lock holder
   * publishes it. A line of its own: the pushes' lines change far more often */
  _Alignas(64) _Atomic uint64_t next_ns; /* earliest time a poll has work; UINT64_MAX if none */
  /* The inbox's stacks: an arm pushes on one, the lock holder takes them all. Adjacent: the
   * holder's looks read them all (a line each would cost it a miss per lane per poll). */
  _Alignas(64) _Atomic(weft__timer_entry_t *) inbox[INBOX_LANES];
  _Alignas(64) pthread_mutex_t lock;
  uint64_t start_ns;    /* tick 0 */
  uint64_t elapsed;     /* ticks processed */
  uint64_t occupied[LEVELS];
  list_t slots[LEVELS][SLOTS][LANES];
  unsigned lane;        /* the lane the next link goes to (round robin) */
  due_list_t due;
  long count; /* entries in the wheel and the due list (not the inbox) */
  void (*wake)(void *ctx); /* the wake check (a parked worker may sleep past an entry) */
  void *wake_ctx;
};

static void list_push(list_t *l, weft__timer_entry_t *e) {
  e->prev = NULL;
  e->next = l->head;
  if (l->head) l->head->prev = e;
  l->head = e;
}

static void list_unlink(list_t *l, weft__timer_entry_t *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    l->head = e->next;
  if (e->next) e->next->prev = e->prev;
}

static void over_append(due_list_t *l, weft__timer_entry_t *e) {
  e->level_slot = DUE_OVERFLOW;
  e->next = NULL;
  e->prev = l->over_tail;
  if (l->over_tail)
    l->over_tail->next = e;
  else
    l->over_head = e;
  l->over_tail = e;
}

static void over_unlink(due_list_t *l, weft__timer_entry_t *e) {
  if (e->prev)
    e->prev->next = e->next;
  else
    l->over_head = e->next;
  if (e->next)
    e->next->prev = e->prev;
  else
    l->over_tail = e->prev;
}

/* Doubles the ring (positions stay: each entry's slot is its position masked). */
static bool due_grow(due_list_t *l) {
  size_t cap = l->cap ? 2 * l->cap : DUE_FIRST_CAP;
  if (weft__fault_hit(WEFT__FAULT_TIMER_RING)) return false;
  weft__timer_entry_t **ring = malloc(cap * sizeof *ring);
  if (!ring) return false;
  for (size_t p = l->head; p != l->tail; p++) ring[p & (cap - 1)] = l->ring[p & (l->cap - 1)];
  free(l->ring);
  l->ring = ring;
  l->cap = cap;
  return true;
}

static void due_append(due_list_t *l, weft__timer_entry_t *e) {
  if (l->over_head || (l->tail - l->head == l->cap && !due_grow(l))) {
    over_append(l, e);
    return;
  }
  e->level_slot = DUE_LIST;
  e->prev = (weft__timer_entry_t *)(uintptr_t)l->tail; /* its position, for a cancel */
  l->ring[l->tail++ & (l->cap - 1)] = e;
  l->live++;
}

static void due_unlink(due_list_t *l, weft__timer_entry_t *e) {
  if (e->level_slot == DUE_OVERFLOW) {
    over_unlink(l, e);
    return;
  }
  l->ring[(uintptr_t)e->prev & (l->cap - 1)] = NULL; /* the pop skips it */
  l->live--;
}

static bool due_empty(const due_list_t *l) {
  return !l->live && !l->over_head; /* slots a cancel emptied are no work (wheel_next) */
}

/* The oldest due entry, taken off the queue, or NULL. */
static weft__timer_entry_t *due_pop(due_list_t *l) {
  while (l->head != l->tail) {
    size_t mask = l->cap - 1;
    if (l->tail - l->head > DUE_PREFETCH) {
      weft__timer_entry_t *ahead = l->ring[(l->head + DUE_PREFETCH) & mask];
      if (ahead) __builtin_prefetch(ahead, 1); /* its state is written below, its fire read */
    }
    weft__timer_entry_t *e = l->ring[l->head++ & mask];
    if (e) {
      l->live--;
      return e;
    }
  }
  if (l->cap > DUE_KEEP) { /* empty: a burst's ring goes (regrown from DUE_FIRST_CAP: a few
                            * doublings per burst, under the lock) */
    free(l->ring);
    l->ring = NULL;
    l->cap = l->head = l->tail = 0;
  }
  weft__timer_entry_t *e = l->over_head;
  if (e) over_unlink(l, e);
  return e;
}

int weft__timer_create(struct weft__timer **out, void (*wake)(void *ctx), void *wake_ctx) {
  struct weft__timer *t = aligned_alloc(64, sizeof *t); /* sizeof: a multiple of 64 */
  if (!t) return WEFT_ENOMEM;
  memset(t, 0, sizeof *t);
  for (int i = 0; i < INBOX_LANES; i++) atomic_init(&t->inbox[i], NULL);
  t->wake = wake;
  t->wake_ctx = wake_ctx;
  pthread_mutex_init(&t->lock, NULL);
  t->start_ns = weft_now_ns();
  atomic_init(&t->next_ns, UINT64_MAX);
  *out = t;
  return 0;
}

void weft__timer_destroy(struct weft__timer *t) {
  free(t->due.ring);
  pthread_mutex_destroy(&t->lock);
  free(t);
}

/* The first tick at or after a deadline: a timer never fires early. */
static uint64_t deadline_tick(const struct weft__timer *t, uint64_t deadline_ns) {
  if (deadline_ns <= t->start_ns) return 0;
  return (deadline_ns - t->start_ns + TICK_NS - 1) / TICK_NS;
}

/* The last tick that has fully begun: entries due at or before it are due now. */
static uint64_t now_tick(const struct weft__timer *t, uint64_t now_ns) {
  return now_ns <= t->start_ns ? 0 : (now_ns - t->start_ns) / TICK_NS;
}

/* When a tick begins; saturated below UINT64_MAX ("none") for a deadline within a tick of it. */
static uint64_t tick_time(const struct weft__timer *t, uint64_t tick) {
  if (tick > (UINT64_MAX - 1 - t->start_ns) / TICK_NS) return UINT64_MAX - 1;
  return t->start_ns + tick * TICK_NS;
}

static int level_for(uint64_t elapsed, uint64_t when) {
  uint64_t masked = (elapsed ^ when) | SLOT_MASK;
  if (masked > MAX_TICKS) masked = MAX_TICKS;
  int significant = 63 - __builtin_clzll(masked);
  return significant / SLOT_BITS;
}

/* Links an entry due after `elapsed`. Caller holds the lock. */
static void wheel_link(struct weft__timer *t, weft__timer_entry_t *e) {
  uint64_t when = deadline_tick(t, e->deadline_ns);
  /* Past the range, or in the current top slot's next turn (which shares its index with the
   * current one, so next_expiration would date it in the past: a needless wake-up and poll,
   * review, session 29): the top level's last slot before the current one, to go round. */
  if (WEFT__UNLIKELY(when - t->elapsed > (SLOTS - 1) * TOP_WIDTH)) { /* else when <= last */
    uint64_t last = (t->elapsed | (TOP_WIDTH - 1)) + (SLOTS - 1) * TOP_WIDTH;
    if (when - t->elapsed > MAX_TICKS || when > last) when = last;
  }
  int level = level_for(t->elapsed, when);
  int slot = (int)((when >> (level * SLOT_BITS)) & SLOT_MASK);
  unsigned lane = t->lane++ % LANES;
  e->level_slot = (uint32_t)((level * SLOTS + slot) * LANES) + lane;
  list_push(&t->slots[level][slot][lane], e);
  t->occupied[level] |= UINT64_C(1) << slot;
}

static bool slot_empty(const list_t lanes[LANES]) {
  for (int i = 0; i < LANES; i++)
    if (lanes[i].head) return false;
  return true;
}

static void wheel_unlink(struct weft__timer *t, weft__timer_entry_t *e) {
  if (e->level_slot == IN_INBOX) /* callers drain the inbox first */
    weft__die("weft: internal error: a timer entry was unlinked while still in the inbox.");
  if (e->level_slot == DUE_LIST || e->level_slot == DUE_OVERFLOW) {
    due_unlink(&t->due, e);
    return;
  }
  int lane = (int)e->level_slot % LANES, level_slot = (int)e->level_slot / LANES;
  int level = level_slot / SLOTS, slot = level_slot % SLOTS;
  list_unlink(&t->slots[level][slot][lane], e);
  if (slot_empty(t->slots[level][slot])) t->occupied[level] &= ~(UINT64_C(1) << slot);
}

/* The tick of the earliest non-empty slot at or after `elapsed` (lower levels first: an entry
 * sits at level L only if it is due after the current cycle of level L-1). */
static bool next_expiration(const struct weft__timer *t, int *level_out, int *slot_out,
                            uint64_t *tick_out) {
  for (int level = 0; level < LEVELS; level++) {
    if (!t->occupied[level]) continue;
    uint64_t width = UINT64_C(1) << (level * SLOT_BITS);
    uint64_t range = width << SLOT_BITS;
    int now_slot = (int)((t->elapsed / width) & SLOT_MASK);
    uint64_t rotated = t->occupied[level] >> now_slot | (now_slot ? t->occupied[level] << (SLOTS - now_slot) : 0);
    int slot = (now_slot + __builtin_ctzll(rotated)) & SLOT_MASK;
    uint64_t level_start = t->elapsed - t->elapsed % range;
    uint64_t tick = level_start + (uint64_t)slot * width;
    if (slot < now_slot) tick += range;
    *level_out = level;
    *slot_out = slot;
    *tick_out = tick;
    return true;
  }
  return false;
}

/* The earliest time a poll has work, from the wheel alone. Caller holds the lock. */
static uint64_t wheel_next(const struct weft__timer *t) {
  int level, slot;
  uint64_t tick;
  if (!due_empty(&t->due)) return 0;
  if (next_expiration(t, &level, &slot, &tick)) return tick_time(t, tick);
  return UINT64_MAX;
}

/* A slot's entry comes due: into the due list, or down to a finer level. Caller holds the
 * lock. */
static void expire(struct weft__timer *t, weft__timer_entry_t *e, uint64_t tick) {
  if (deadline_tick(t, e->deadline_ns) <= tick) {
    due_append(&t->due, e);
  } else {
    wheel_link(t, e); /* cascade to a finer level */
  }
}

/* Links what the armers left in the inbox. Caller holds the lock. An entry whose tick the wheel
 * has passed meanwhile goes straight to the due list (expire at the wheel's own tick). */
static void drain_inbox(struct weft__timer *t) {
  weft__timer_entry_t *e[INBOX_LANES];
  for (int i = 0; i < INBOX_LANES; i++) e[i] = inbox_take_all(&t->inbox[i]);
  for (bool more = true; more;) { /* abreast: INBOX_LANES misses in flight */
    more = false;
    for (int i = 0; i < INBOX_LANES; i++) {
      if (!e[i]) continue;
      weft__timer_entry_t *next = e[i]->next; /* before the link overwrites it */
      t->count++;
      expire(t, e[i], t->elapsed);
      e[i] = next;
      more = true;
    }
  }
}

static uint64_t drain_and_next(void *timer) {
  drain_inbox(timer);
  return wheel_next(timer);
}

/* Publishes and returns the earliest time a poll has work, inbox included (see
 * lib/timer_inbox_impl.h). Caller holds the lock, and makes the wake check after unlocking if
 * *wake says so. */
static uint64_t publish_next(struct weft__timer *t, bool *wake) {
  return inbox_publish_next(&t->next_ns, t->inbox, t, wake);
}

static void wake_check(struct weft__timer *t, bool wake) {
  if (wake && t->wake) t->wake(t->wake_ctx);
}

/* Moves due entries into t->due, processing slots up to now's tick. Caller holds the lock.
 * A slot's entries are spread over LANES lists that are walked abreast, one entry of each in
 * turn: every entry is a cache miss (it lives in its task's descriptor), and the next one of a
 * list is known only once the miss is served, so one list allows one miss at a time; LANES
 * lists keep LANES in flight. sleep 10^6 cascades up to 16 000 entries a slot, and this walk
 * was 88 % of the poll's samples with one list (bench/README.md, #13 "Sleep floor"). */
static void advance(struct weft__timer *t, uint64_t now_tick) {
  int level, slot;
  uint64_t tick;
  while (next_expiration(t, &level, &slot, &tick) && tick <= now_tick) {
    weft__timer_entry_t *e[LANES];
    for (int i = 0; i < LANES; i++) {
      e[i] = t->slots[level][slot][i].head;
      t->slots[level][slot][i].head = NULL;
    }
    t->occupied[level] &= ~(UINT64_C(1) << slot);
    t->elapsed = tick;
    for (bool more = true; more;) {
      more = false;
      for (int i = 0; i < LANES; i++) {
        if (!e[i]) continue;
        weft__timer_entry_t *next = e[i]->next;
        expire(t, e[i], tick);
        e[i] = next;
        more = true;
      }
    }
  }
  if (now_tick > t->elapsed) t->elapsed = now_tick;
}

static void fire_now(weft__timer_entry_t *e) { e->fire(e); }

/* What a callback reads and writes first — its ctx (a join: the waiting task, `timer_done`)
 * and its `touch` (the task's descriptor, whose state the wake CASes) — fetched a few
 * callbacks ahead: each is a miss (the entries' tasks went cold while they slept), and on
 * x86-64 the wake's locked CAS waits for its miss and keeps the next callback's misses from
 * overlapping it (#13, session 14). The entry itself is in cache: the poll wrote its state. */
static void prefetch_fire(const weft__timer_entry_t *e) {
  __builtin_prefetch(e->ctx, 1);
  if (e->touch) __builtin_prefetch(e->touch, 1);
}

/* Adds n to a counter only its owner writes (weft__stat_bump's relaxed load + store). */
static void count_fired(_Atomic uint64_t *fired, int n) {
  if (fired && n)
    atomic_store_explicit(fired, atomic_load_explicit(fired, memory_order_relaxed) + (uint64_t)n,
                          memory_order_relaxed);
}

/* The lane an entry goes to: its address hashed (Fibonacci hashing; entries live on their
 * tasks' stacks, at the same offset in each, so the low bits alone would pick one lane). */
static unsigned inbox_lane(const weft__timer_entry_t *e) {
  _Static_assert((INBOX_LANES & (INBOX_LANES - 1)) == 0, "a power of two");
  return (unsigned)(((uintptr_t)e * UINT64_C(0x9E3779B97F4A7C15)) >> 32) % INBOX_LANES;
}

/* No clock read (#13, session 13: ~45 ns on this guest's kvm-clock, one of a sleep's two): a
 * sleep or timed wait read the clock for its deadline just before its switch, so an entry is
 * due by now only if it was nearly due then. Such an entry goes through the inbox like any
 * other and fires at the first poll in or after its tick (the tick rounds its deadline up: up
 * to TICK_NS later than an immediate fire; a busy worker polls at its fairness tick, an idle
 * one when the lowered deadline comes). Rejected: firing it here (the read it needs costs
 * every arm). */
bool weft__timer_arm(struct weft__timer *t, weft__timer_entry_t *e) {
  uint64_t due = tick_time(t, deadline_tick(t, e->deadline_ns)); /* before e is published */
  /* relaxed: the push's release publishes it with the entry */
  atomic_store_explicit(&e->state, TIMER_ARMED, memory_order_relaxed);
  e->level_slot = IN_INBOX;
  inbox_push(&t->inbox[inbox_lane(e)], e);
  /* true: the caller makes the wake check. Not for a deadline that saturates the clock (due
   * UINT64_MAX - 1: within a tick of UINT64_MAX, centuries away): it lowers "none" to that,
   * and woke a parked worker only for it to park again (review B, session 36). A deadline
   * beyond the wheel's levels but short of that (ten years) still wakes one, once. */
  return inbox_lower(&t->next_ns, due) && due != UINT64_MAX - 1;
}

bool weft__timer_cancel(struct weft__timer *t, weft__timer_entry_t *e) {
  /* acquire: pairs with the poller's release of FIRING. It does not order the callback: a
   * loser that must wait for the callback's end waits on its own flag (join.c's timer_done,
   * released by the callback) */
  if (atomic_load_explicit(&e->state, memory_order_acquire) != TIMER_ARMED) return false;
  pthread_mutex_lock(&t->lock);
  drain_inbox(t); /* e may be there: it was pushed before (its task armed it, then parked) */
  bool won = atomic_load_explicit(&e->state, memory_order_relaxed) == TIMER_ARMED; /* lock */
  bool wake = false;
  if (won) {
    wheel_unlink(t, e);
    t->count--;
    atomic_store_explicit(&e->state, TIMER_IDLE, memory_order_relaxed); /* relaxed: lock */
    publish_next(t, &wake);
  }
  pthread_mutex_unlock(&t->lock);
  wake_check(t, wake);
  return won;
}

uint64_t weft__timer_poll(struct weft__timer *t, uint64_t now_ns, _Atomic uint64_t *fired) {
  /* relaxed: a hint; a stale value only delays the poll to the next check */
  uint64_t hint = atomic_load_explicit(&t->next_ns, memory_order_relaxed);
  if (hint > now_ns) return hint;
  weft__timer_entry_t *batch[FIRE_BATCH];
  int n = 0;
  if (pthread_mutex_trylock(&t->lock) != 0) return now_ns; /* another worker is polling */
  drain_inbox(t);
  advance(t, now_tick(t, now_ns));
  for (weft__timer_entry_t *e; n < FIRE_BATCH && (e = due_pop(&t->due));) {
    t->count--;
    atomic_store_explicit(&e->state, TIMER_FIRING, memory_order_release); /* release: cancel */
    batch[n++] = e;
  }
  bool wake;
  uint64_t next = publish_next(t, &wake);
  pthread_mutex_unlock(&t->lock);
  wake_check(t, wake);
  count_fired(fired, n); /* before the callbacks: what they wake sees itself counted */
  for (int i = 0; i < n && i < FIRE_AHEAD; i++) prefetch_fire(batch[i]);
  for (int i = 0; i < n; i++) {
    if (i + FIRE_AHEAD < n) prefetch_fire(batch[i + FIRE_AHEAD]);
    fire_now(batch[i]);
  }
  return next;
}

uint64_t weft__timer_armed(struct weft__timer *t) {
  pthread_mutex_lock(&t->lock);
  drain_inbox(t);
  long n = t->count;
  pthread_mutex_unlock(&t->lock);
  return (uint64_t)n;
}

uint64_t weft__timer_poll_if_armed(struct weft__timer *t, _Atomic uint64_t *fired) {
  /* relaxed: as weft__timer_poll's hint. Every arm lowers it from UINT64_MAX (inbox_lower), so
   * MAX means nothing is armed and the clock read (~45 ns on this kvm-clock guest) can wait */
  uint64_t hint = atomic_load_explicit(&t->next_ns, memory_order_relaxed);
  return hint == UINT64_MAX ? hint : weft__timer_poll(t, weft_now_ns(), fired);
}

uint64_t weft__timer_next_deadline(struct weft__timer *t) {
  /* seq_cst: the load side of the park check (see weft__timer_arm). */
  return atomic_load_explicit(&t->next_ns, memory_order_seq_cst);
}

bool weft__timer_pending(struct weft__timer *t) {
  pthread_mutex_lock(&t->lock);
  drain_inbox(t);
  bool any = t->count > 0;
  pthread_mutex_unlock(&t->lock);
  return any;
}
