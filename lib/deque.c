/*
 * Storage for the Chase–Lev deques: arrays, growth, and the reclamation of grown-out arrays
 * while the runtime runs (the algorithm is in deque_impl.h).
 *
 * The problem. When push finds the array full, the owner copies it into one twice as large and
 * publishes that; a thief that loaded the old array pointer just before may still read a slot
 * of it (its CAS on top then decides whether what it read counts). The old array can be freed
 * only once no thief can be reading it. Until #13 every old array was kept until the runtime
 * was destroyed.
 *
 * The scheme: epochs (epoch_impl.h; ck_epoch's protocol, Fraser's EBR), with read sections only
 * around stealing. A worker's steal round (worker.c's steal_one: its tries at several victims)
 * is one read section: enter stores the global epoch into the worker's word (seq_cst, an
 * `xchg` on x86), leave stores 0 (release, a plain `mov`). Grow unpublishes the old array
 * (seq_cst store of the array pointer), tags it with the epoch read after that and puts it on
 * the deque's retired list; weft__deque_reclaim advances the epoch (at most twice: a scan of
 * one word per worker and a CAS) and frees what is two epochs old. The owner reclaims at each
 * grow, when it parks (with the stack and task caches: "memory first"), and at its fairness
 * tick (every 61st look for work) while it holds retired arrays — a load of the list head on
 * that tick, nothing on push or take.
 *   Who reads arrays: the owner (push, take, take_if, peek_newest, and steal/steal_batch on
 * its own queues: the owner never frees an array under itself) and thieves in steal_one.
 * Threads that are not workers never touch a deque (their spawns and wakes go to the inject queue), and the
 * metrics read only top and bottom, so the workers are the domain's only readers. A parked
 * worker is outside any section (its word is 0) and never delays a free.
 *
 * Cost. Owner push/take: none (the seq_cst loads of the array in steal are plain loads on x86;
 * grow's store becomes an `xchg`, once per doubling). Steals: one `xchg` and one store per steal
 * round, which a worker makes only when it has no local work (bench/README.md, "Deque arrays").
 *
 * Memory bound. Each grow doubles, so a deque's retired arrays add up to less than its live one:
 * at most 2x the live array in all (what keeping them until destroy also bounded). Beyond that,
 * every retired array is freed at the owner's next grow, park or fairness tick after every
 * worker has ended (or restarted) the steal round that was under way when it was retired — a
 * round is a bounded number of tries, never a wait; a thread descheduled inside one (workers
 * outnumbering cores) only delays frees, never unbounds them. tests/test_reclaim.c checks both.
 *
 * Rejected:
 * - ck_epoch itself: the same protocol, but its stores and fences are inline assembly that
 *   ThreadSanitizer cannot see (field notes: ck_epoch is reported in every mode unless
 *   annotated): every free would need __tsan_acquire per record and every section end a
 *   __tsan_release, and relacy cannot check it (the model must run the library's own code).
 *   Its begin/end costs the same as enter/leave here (one full barrier each: a median
 *   17.8 against 17.0 ns a pair on this VM, bench/README.md), so it would buy nothing.
 * - A quiescent-state scheme (a quiescent point per scheduler-loop pass): the store would be on
 *   the busy worker's path for every task run, and parked workers need an offline state; the
 *   read sections here cost only the idle, stealing worker.
 * - A per-deque count of steals in progress: two locked RMWs per steal attempt on a line that
 *   every thief of that victim shares, and a busy victim might never see it at zero.
 * - Freeing on the next grow only: a deque that stops growing would keep its arrays forever.
 * Not done: shrinking an array after a burst (the live array stays at its high-water size).
 */
#include "deque.h"

#include <stdlib.h>

enum { DEQUE_ENOMEM = -12 }; /* WEFT_ENOMEM, without the public header */

static size_t array_bytes(int64_t capacity) {
  return sizeof(weft__deque_array_t) + (size_t)capacity * sizeof(_Atomic uintptr_t);
}

/* calloc, not malloc and a loop of zero stores: a large array comes zeroed from fresh pages,
 * so a grow writes only the slots it copies (#13: spawn 10^6's last grows wrote 12 MB of
 * zeros that pushes overwrote anyway). */
static weft__deque_array_t *array_new(int64_t capacity) {
  weft__deque_array_t *a = calloc(1, array_bytes(capacity));
  if (!a) return NULL;
  a->mask = capacity - 1;
  return a;
}

/* The owner's counters: relaxed load + store (only it writes them; the metrics read them). */
static void count(_Atomic uint64_t *c, int64_t delta) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)delta,
                        memory_order_relaxed);
}

/* NULL when memory is exhausted: the push fails and the caller spills to the inject queue. */
weft__deque_array_t *weft__deque_grow(weft__deque_t *d, weft__deque_array_t *old, int64_t t,
                                       int64_t b) {
  weft__deque_array_t *a = array_new((old->mask + 1) * 2);
  if (!a) return NULL;
  /* relaxed: the owner copies its own slots; the store of the array publishes them */
  for (int64_t i = t; i < b; i++)
    atomic_store_explicit(&WD_SLOT(a, i), atomic_load_explicit(&WD_SLOT(old, i), WD_RLX), WD_RLX);
  /* seq_cst ⊇ release: a thief that loads the new array sees the copied slots; and the
   * unpublishing store comes before the tag's load of the epoch (epoch_impl.h) */
  atomic_store_explicit(&d->array, a, memory_order_seq_cst);
  old->retired_at = weft__epoch_now(&d->epoch->now);
  old->retired = d->retired;
  d->retired = old;
  size_t old_bytes = array_bytes(old->mask + 1);
  count(&d->n_retired, 1);
  count(&d->bytes_live, (int64_t)(array_bytes(a->mask + 1) - old_bytes));
  /* release: a reader that sees these retired bytes sees the live bytes that outgrew them
   * (metrics.c reads retired, acquire, then live: retired < live in every snapshot) */
  atomic_store_explicit(&d->bytes_retired,
                        atomic_load_explicit(&d->bytes_retired, WD_RLX) + old_bytes,
                        memory_order_release);
  weft__deque_reclaim(d); /* the older ones, most likely past their grace by now */
  return a;
}

/* Frees `a` and every older array after it; returns how many. */
static int free_from(weft__deque_t *d, weft__deque_array_t *a) {
  int n = 0;
  while (a) {
    weft__deque_array_t *older = a->retired;
    count(&d->bytes_retired, -(int64_t)array_bytes(a->mask + 1));
    free(a);
    a = older;
    n++;
  }
  count(&d->n_freed, n);
  return n;
}

int weft__deque_reclaim(weft__deque_t *d) {
  if (!d->retired) return 0;
  /* Advanced for the newest: when its grace is over, every older array's is. */
  weft__epoch_t *ep = d->epoch;
  uint64_t now = weft__epoch_poll(&ep->now, ep->readers, ep->nreaders, d->retired->retired_at);
  /* Tags do not decrease with age: from the first array past its grace, all older ones are. */
  weft__deque_array_t **link = &d->retired;
  while (*link && !weft__epoch_grace_over((*link)->retired_at, now)) link = &(*link)->retired;
  weft__deque_array_t *first = *link;
  *link = NULL;
  return free_from(d, first);
}

int weft__deque_init(weft__deque_t *d, size_t capacity_pow2, weft__epoch_t *epoch) {
  atomic_init(&d->top, 0);
  atomic_init(&d->bottom, 0);
  d->epoch = epoch;
  d->retired = NULL;
  atomic_init(&d->n_retired, 0);
  atomic_init(&d->n_freed, 0);
  atomic_init(&d->bytes_retired, 0);
  atomic_init(&d->bytes_live, array_bytes((int64_t)capacity_pow2));
  weft__deque_array_t *a = array_new((int64_t)capacity_pow2);
  if (!a) return DEQUE_ENOMEM;
  atomic_init(&d->array, a);
  return 0;
}

void weft__deque_destroy(weft__deque_t *d) {
  /* relaxed: the workers are joined; nothing else touches the deque */
  free(atomic_load_explicit(&d->array, WD_RLX));
  atomic_store_explicit(&d->array, NULL, WD_RLX);
  free_from(d, d->retired);
  d->retired = NULL;
}

/* ---- The epoch domain --------------------------------------------------------------------- */

int weft__epoch_init(weft__epoch_t *dom, int nreaders) {
  atomic_init(&dom->now, 1); /* 0 is a reader's "outside any section" */
  dom->nreaders = nreaders;
  size_t bytes = (size_t)nreaders * sizeof(weft__epoch_reader_t);
  dom->readers = aligned_alloc(CK_MD_CACHELINE, bytes ? bytes : CK_MD_CACHELINE);
  if (!dom->readers) return DEQUE_ENOMEM;
  for (int i = 0; i < nreaders; i++) atomic_init(&dom->readers[i].word, 0);
  return 0;
}

void weft__epoch_fini(weft__epoch_t *dom) {
  free(dom->readers);
  dom->readers = NULL;
}
