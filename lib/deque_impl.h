/*
 * Private to weft: the Chase–Lev work-stealing deque, written once and instantiated twice —
 * with C11 <stdatomic.h> for the library (lib/deque.c) and with relacy's atomics for the model
 * checker (tests/model/). The includer defines the types and these macros:
 *
 *   WD_LOAD(obj, mo)  WD_STORE(obj, v, mo)  WD_CAS(obj, expected_lvalue, desired, mo)
 *   WD_RLX WD_ACQ WD_REL WD_SC            memory orders
 *   WD_SLOT(array, index)                 the atomic slot object
 *   WD_GROW(d, a, top, bottom)            returns a larger array holding [top, bottom)
 *   WD_FN(name)                           the name of each function
 * and may override the three orders and the switches that the negative controls plant bugs in:
 *   WD_PUSH_BOTTOM_ORDER (release), WD_EMPTY_PUSH_ORDER (seq_cst), WD_TAKE_ORDER (seq_cst),
 *   WD_LAST_CAS (1), WD_BATCH_CAS (1).
 *
 * Design (Lê, Pop, Cohen, Zappa Nardelli, PPoPP 2013), changed to suit ThreadSanitizer:
 * the paper orders take and steal with standalone seq_cst fences, which TSan does not model
 * (it reports the task payload as racing: 2–4 false reports per 200k-task run here). Here the
 * fences are replaced by seq_cst on the operations they ordered: take's store of bottom and
 * load of top, steal's loads of top and bottom, and the CAS on top. This variant was clean
 * under TSan in 10/10 runs and passes the relacy model with its negative controls.
 * Rejected: a seq_cst exchange on bottom followed by a relaxed load of top (right on x86
 * hardware, wrong under C11: relacy finds two takers of the last element); Lace's split deque
 * (no atomics on the owner's fast path, 1.7 ns spawn+sync, but a second protocol to prove, and
 * weft's inline-await CAS already costs what the split would save).
 *
 * Indices are signed 64-bit: an empty take computes bottom - 1, which must compare below top.
 * When full, push grows the array (2x); the old array stays readable while a thief may still
 * be reading a slot of it: thieves read arrays only inside an epoch read section (epoch_impl.h),
 * and the owner frees a grown-out array after its grace period (deque.c). Hence the seq_cst
 * loads of the array in steal and steal_batch: the load side of the section's store→load
 * pattern (its word's seq_cst store, then the array), a plain load on x86.
 */

#ifndef WD_PUSH_BOTTOM_ORDER
#define WD_PUSH_BOTTOM_ORDER WD_REL
#endif
#ifndef WD_EMPTY_PUSH_ORDER
#define WD_EMPTY_PUSH_ORDER WD_SC
#endif
#ifndef WD_TAKE_ORDER
#define WD_TAKE_ORDER WD_SC
#endif
#ifndef WD_LAST_CAS
#define WD_LAST_CAS 1
#endif

/* Owner only. Returns 1 if the deque was seen empty before this push, 0 if not, and 2 if it
 * was full (nothing pushed: push below grows it; a caller that keeps the growth call, and
 * the registers it saves, off its own fast path calls push then — #13, weft_spawn). On 1 the
 * caller checks for idle workers to wake (an empty→non-empty transition is the only one that
 * can leave work unseen; see worker.c). That push stores bottom seq_cst: the store side of the
 * wake check's store→load (Dekker) pattern; pushes onto a non-empty deque need only release. */
#define WD_FULL 2
/* announce: the caller has seen a worker idle (spinning or parked) and will run the wake check
 * after any push, so bottom is stored seq_cst even onto a non-empty deque, and the answer is 1.
 * The non-empty case needs it too while a thief may be emptying the deque: a spinner that
 * steals the last older entry without being the last spinner wakes no one, and a spinner
 * parking just then could miss this release store (review, session 20: the 3-thread model
 * below, "push onto a deque being emptied"). */
static inline int WD_FN(push_fit_as)(WD_DEQUE *d, uintptr_t x, bool announce) {
  int64_t b = WD_LOAD(d->bottom, WD_RLX); /* relaxed: only the owner writes bottom */
  /* acquire: pairs with a thief's CAS of top, so a slot is reused only after the thief that
   * took its old element has read it. */
  int64_t t = WD_LOAD(d->top, WD_ACQ);
  WD_ARRAY *a = WD_LOAD(d->array, WD_RLX); /* relaxed: only the owner replaces the array */
  if (b - t > (int64_t)a->mask) return WD_FULL;
  WD_STORE(WD_SLOT(a, b), x, WD_RLX); /* relaxed: published by the store of bottom below */
  if (b - t <= 0 || announce)
    WD_STORE(d->bottom, b + 1, WD_EMPTY_PUSH_ORDER); /* seq_cst: the wake check's store side */
  else
    WD_STORE(d->bottom, b + 1, WD_PUSH_BOTTOM_ORDER); /* release: the slot (and the task it
                                                         names) happen-before a thief's load */
  return b - t <= 0 || announce;
}

static inline int WD_FN(push_fit)(WD_DEQUE *d, uintptr_t x) { return WD_FN(push_fit_as)(d, x, false); }

/* Owner only: push_fit's answers, growing a full array (2x) first; -1 if it was full and could
 * not grow (nothing pushed; the caller spills elsewhere). */
static inline int WD_FN(push_as)(WD_DEQUE *d, uintptr_t x, bool announce) {
  int r = WD_FN(push_fit_as)(d, x, announce);
  if (r != WD_FULL) return r;
  int64_t b = WD_LOAD(d->bottom, WD_RLX); /* relaxed: only the owner writes bottom */
  int64_t t = WD_LOAD(d->top, WD_ACQ);    /* acquire: as push_fit's */
  /* relaxed: only the owner replaces the array */
  if (!WD_GROW(d, WD_LOAD(d->array, WD_RLX), t, b)) return -1;
  return WD_FN(push_fit_as)(d, x, announce); /* fits: the array doubled, and top only grows */
}

static inline int WD_FN(push)(WD_DEQUE *d, uintptr_t x) { return WD_FN(push_as)(d, x, false); }

/* Owner only: take's reservation of slot b, whose element x the caller read (only the owner
 * writes slots, so reading it before the reservation reads what a read after it would):
 * returns x, or 0 if a thief took it. */
static inline uintptr_t WD_FN(take_reserve)(WD_DEQUE *d, int64_t b, uintptr_t x) {
  /* seq_cst store then seq_cst load: a thief's seq_cst loads of top and bottom see either our
   * reservation of slot b or we see its increment of top — never neither (the paper's fence). */
  WD_STORE(d->bottom, b, WD_TAKE_ORDER);
  int64_t t = WD_LOAD(d->top, WD_TAKE_ORDER);
  if (t > b) { /* a thief emptied it meanwhile */
    WD_STORE(d->bottom, b + 1, WD_RLX); /* relaxed: restoring our own index */
    return 0;
  }
  if (t == b) {
    /* The last element: a thief may be taking it too; the CAS on top settles who wins.
     * seq_cst: it is in the same total order as the thieves' CAS and loads. */
#if WD_LAST_CAS
    if (!WD_CAS(d->top, t, t + 1, WD_SC)) x = 0;
#else
    WD_STORE(d->top, t + 1, WD_SC);
#endif
    WD_STORE(d->bottom, b + 1, WD_RLX); /* relaxed: owner's own index, empty either way */
  }
  return x;
}

/* Owner only: the newest element, or 0 if empty. */
static inline uintptr_t WD_FN(take)(WD_DEQUE *d) {
  int64_t b = WD_LOAD(d->bottom, WD_RLX) - 1; /* relaxed: only the owner writes bottom */
  /* relaxed pre-check: top only grows, so a stale top can only make us do the full take. */
  if (b < WD_LOAD(d->top, WD_RLX)) return 0;
  WD_ARRAY *a = WD_LOAD(d->array, WD_RLX); /* relaxed: only the owner replaces the array */
  /* relaxed: the owner's own write (push); thieves only read slots */
  return WD_FN(take_reserve)(d, b, WD_LOAD(WD_SLOT(a, b), WD_RLX));
}

/* Owner only: take, if the newest element is x; else 0 and nothing taken (#13, session 9: an
 * inline join's "is my child still here? then it is mine", lib/join.c). One pass instead of
 * peek_newest and take, which each loaded bottom, top, the array and the slot (~11 of fib's
 * ~209 instructions per spawn+join), and no seq_cst store when the child is not the newest. */
static inline uintptr_t WD_FN(take_if)(WD_DEQUE *d, uintptr_t x) {
  int64_t b = WD_LOAD(d->bottom, WD_RLX) - 1; /* relaxed: only the owner writes bottom */
  if (b < WD_LOAD(d->top, WD_RLX)) return 0; /* relaxed: as take's pre-check */
  WD_ARRAY *a = WD_LOAD(d->array, WD_RLX); /* relaxed: only the owner replaces the array */
  if (WD_LOAD(WD_SLOT(a, b), WD_RLX) != x) return 0; /* relaxed: as take's */
  return WD_FN(take_reserve)(d, b, x);
}

/* Any thread: the oldest element; 0 if empty; WD_ABORT if another thief or the owner won the
 * race for it (the caller may retry or move on). */
#define WD_ABORT ((uintptr_t)1)
static inline uintptr_t WD_FN(steal)(WD_DEQUE *d) {
  /* seq_cst on top is more than needed (acquire passes the model; the CAS below settles it) but
   * free on x86. seq_cst on bottom is needed: made acquire, the model consumes an element
   * twice (it must be ordered against take's seq_cst store of bottom); ⊇ acquire, it also
   * pairs with push's release. */
  int64_t t = WD_LOAD(d->top, WD_SC);
  int64_t b = WD_LOAD(d->bottom, WD_SC);
  if (t >= b) return 0;
  /* seq_cst ⊇ acquire: pairs with the store in grow (the copied slots), and comes after the
   * read section's seq_cst entry in the total order (epoch_impl.h: the array stays) */
  WD_ARRAY *a = WD_LOAD(d->array, WD_SC);
  uintptr_t x = WD_LOAD(WD_SLOT(a, t), WD_RLX); /* relaxed: validated by the CAS below */
  /* seq_cst: one total order with take's last-element CAS and with other thieves. */
  if (!WD_CAS(d->top, t, t + 1, WD_SC)) return WD_ABORT;
  return x;
}

/* Any thread, on a deque whose owner never takes (the yield queue: the owner pushes at the
 * bottom, everyone consumes at the top): up to `max` of the oldest elements — at most half of
 * them, rounded up, so that thieves still find some — into out[], oldest first, with one CAS;
 * returns how many (0: empty, or another consumer won the race). Not for a deque with takes:
 * take claims the bottom end without a CAS while it sees top below it, so a claim of several
 * elements at the top could overlap it (Go's runqsteal works because its owner pops with a
 * CAS too). Orders as in steal: the slots are validated by the CAS. */
#ifndef WD_BATCH_CAS
#define WD_BATCH_CAS 1
#endif
static inline int WD_FN(steal_batch)(WD_DEQUE *d, uintptr_t *out, int max) {
  int64_t t = WD_LOAD(d->top, WD_SC);
  int64_t b = WD_LOAD(d->bottom, WD_SC); /* seq_cst ⊇ acquire: pairs with push's release */
  int64_t n = (b - t + 1) / 2;
  if (n <= 0) return 0;
  if (n > max) n = max;
  WD_ARRAY *a = WD_LOAD(d->array, WD_SC); /* seq_cst: as in steal */
  for (int64_t i = 0; i < n; i++) out[i] = WD_LOAD(WD_SLOT(a, t + i), WD_RLX);
#if WD_BATCH_CAS
  /* seq_cst: one total order with the other consumers' CAS on top */
  if (!WD_CAS(d->top, t, t + n, WD_SC)) return 0;
#else
  WD_STORE(d->top, t + n, WD_SC);
#endif
  return (int)n;
}
/* Any thread: whether the deque held something, with seq_cst loads: the load side of the
 * wake check's store→load pattern (a parker that sees nothing here cannot miss a push that
 * the spawner followed with a check for idle workers). */
static inline int WD_FN(seen_nonempty)(WD_DEQUE *d) {
  int64_t t = WD_LOAD(d->top, WD_SC);
  return WD_LOAD(d->bottom, WD_SC) > t;
}

/* Owner only: whether the deque looks empty (a hint: relaxed loads of indices that only grow
 * or that the owner writes; a stale top can only make it look fuller). */
static inline int WD_FN(looks_empty)(WD_DEQUE *d) {
  return WD_LOAD(d->bottom, WD_RLX) <= WD_LOAD(d->top, WD_RLX);
}

/* Owner only: whether the deque holds at least k elements (a hint, as looks_empty's). */
static inline int WD_FN(looks_deeper_than)(WD_DEQUE *d, int64_t k) {
  return WD_LOAD(d->bottom, WD_RLX) - WD_LOAD(d->top, WD_RLX) >= k;
}

/* Owner only: the newest element without removing it (a hint; take() decides). */
static inline uintptr_t WD_FN(peek_newest)(WD_DEQUE *d) {
  int64_t b = WD_LOAD(d->bottom, WD_RLX); /* relaxed: only the owner writes bottom */
  if (b <= WD_LOAD(d->top, WD_RLX)) return 0; /* relaxed: a hint */
  WD_ARRAY *a = WD_LOAD(d->array, WD_RLX);
  return WD_LOAD(WD_SLOT(a, b - 1), WD_RLX);
}
