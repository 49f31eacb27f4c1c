/*
 * Private to weft: the fd park — how a task waits for one direction of a registered fd and how
 * the poller's edge (or a close) wakes it — written once and instantiated twice: with C11
 * atomics in the library (lib/fdpark.h, for lib/io.c and lib/poll.c) and with relacy's in
 * tests/model/fdpark_model.cpp. The includer defines:
 *
 *   FP_WORD  FP_COUNT                the atomic uintptr_t (park word) and uint32_t (edges) types
 *   FP_LOAD(obj, mo)  FP_STORE(obj, v, mo)  FP_FETCH_ADD(obj, v, mo)
 *   FP_CAS(obj, expected_lvalue, desired, mos, mof)
 *   FP_RLX FP_ACQ FP_REL FP_SC       memory orders
 *   FP_SPIN()                        one round of a short wait (pause / sched_yield)
 *   FP_WAKE(task)                    the park state's event (wake_impl.h's wake, by COMPLETION):
 *                                    FP_LOST, FP_WON_PARKING or FP_WON_PARKED (defined too)
 *   FP_FN(name)                      the name of each function
 * and may plant the bugs the model must catch: FP_RECHECK_FIRST (the waiter reads the edge
 * count before it publishes itself: a lost wake-up from a wrong order), FP_PUBLISH_ORDER
 * (seq_cst; release lets the publication and the poller's bump miss each other: a lost wake-up),
 * FP_WAKE_BY_CLAIM (the deliverer takes its claim for the win and skips the park state's CAS: a
 * cancel or a timer schedules the task too — a double schedule), FP_NO_SETTLE (a waiter woken by
 * a cancel leaves while a deliverer still holds its claim: the deliverer's last touches race the
 * waiter's next use of the word).
 *
 * One direction (lib/poller.h's weft__poll_dir_t), two words:
 *   edges — a count the poller bumps on every edge (and a close on its notify); a waiter reads
 *           it before the call that answered "not now" (`seen`) and trusts that answer only
 *           while the count has not moved (lib/io.c's design comment: no lost edge);
 *   park  — EMPTY, a waiting task (its descriptor's address, 64-byte aligned) or CLAIMED (a
 *           deliverer took the task out and is waking it; it stores EMPTY as its last touch).
 * The waiter (a task, RUNNING → PARKING by wake_park_begin first, so that an event that comes
 * before its switch is left to its scheduler's commit):
 *   publish  — CAS EMPTY → task (seq_cst). Found another task (or its delivery): WEFT_EBUSY —
 *              one waiter per direction, as before;
 *   recheck  — edges (seq_cst) != seen: an edge came after the call looked; withdraw (CAS
 *              task → EMPTY) and retry the call. A failed withdraw means a deliverer claimed the
 *              task: its wake lands in the PARKING state (the task takes it with park_abort);
 *   suspend  — the scheduler commits the park (wake_impl.h), with the deadline's timer armed;
 *   resumed by a timer or a cancel: withdraw; a failed one means a deliverer holds CLAIMED,
 *              and the waiter waits it out (settle) before its frame and the word go on.
 * The deliverer (the poller on an edge, weft_sock_close on its notify):
 *   bump edges (seq_cst); load park (seq_cst): a task → claim it (CAS task → CLAIMED); wake it
 *   through its park state (FP_WAKE: only the first of edge, timer and cancel wins, and only a
 *   win over PARKED schedules it); store EMPTY.
 * No lost wake-up: the waiter's publish is before its recheck, the deliverer's bump before its
 * load, all four seq_cst: in their single total order either the recheck comes after the bump
 * (it sees the new count and retries) or the publish comes before the load (the deliverer sees
 * the task, or an EMPTY / CLAIMED that a withdraw or another deliverer left: the task was then
 * woken or retries). Exactly one schedule: the claim CAS lets one deliverer at a time reach the
 * task, and the park state's CAS (FP_WAKE) arbitrates between it, the timer and a cancel.
 * Locked instructions per message (an edge that finds the task parked): the waiter's
 * park_begin, publish and the scheduler's commit; the deliverer's bump, claim and wake — six,
 * where the completion word took ten (owner, reset, park_begin, add_waiter, commit; bump,
 * complete, count_release, wake, finish_waking). An edge that finds no waiter costs the bump
 * and one load (the completion word: the bump and a CAS).
 * Rejected: the park word alone as the task's state (Go's rg/wg: pdWait → g by the commit, g →
 * pdReady by the poller), which would give cancellation and deadlines a second arbiter beside
 * the park state every other wait uses; and a READY value left by an edge nobody waited for
 * (Go's pdReady): under edge triggering nearly every edge finds no waiter (the data it brings is
 * read before the next wait), so READY would be stale at the next wait and cost a call.
 */

#define FP_EMPTY ((uintptr_t)0)
#define FP_CLAIMED ((uintptr_t)1)

#ifndef FP_RECHECK_FIRST
#define FP_RECHECK_FIRST 0
#endif
#ifndef FP_PUBLISH_ORDER
#define FP_PUBLISH_ORDER FP_SC
#endif
#ifndef FP_WAKE_BY_CLAIM
#define FP_WAKE_BY_CLAIM 0
#endif
#ifndef FP_NO_SETTLE
#define FP_NO_SETTLE 0
#endif

/* The waiter, resumed (or a destroy taking its wait apart): waits out a deliverer that still
 * holds its claim — its last touch of the word, which the waiter's next wait reuses. One load
 * when none does (a deliverer of the task's runtime ends before it schedules the task). */
static inline void FP_FN(settle)(FP_WORD *park) {
#if !FP_NO_SETTLE
  while (FP_LOAD(*park, FP_ACQ) == FP_CLAIMED) FP_SPIN(); /* acquire: the deliverer's end */
#else
  (void)park; /* planted: leaves while a deliverer may still hold the word */
#endif
}

/* The waiter, resumed by a timer or a cancel (not by a deliverer): takes itself out of the
 * word, or, if a deliverer claimed it meanwhile (its wake lost to ours), waits it out. */
static inline void FP_FN(withdraw)(FP_WORD *park, uintptr_t task) {
  uintptr_t mine = task;
  /* relaxed: a won withdraw hands nothing over; a lost one is followed by settle's acquire */
  if (!FP_CAS(*park, mine, FP_EMPTY, FP_RLX, FP_RLX)) FP_FN(settle)(park);
}

/* What a park attempt came to. */
enum { FP_PARKED = 0, FP_BUSY = 1, FP_RETRY = 2, FP_RETRY_WOKEN = 3 };

/* The waiter, PARKING, after the call that answered "not now" (seen: edges before it):
 *   FP_PARKED — published and no edge since: suspend;
 *   FP_BUSY   — another waiter holds the direction (nothing published);
 *   FP_RETRY  — an edge came: withdrawn, retry the call (park_abort the state);
 *   FP_RETRY_WOKEN — an edge came and its deliverer claimed us first: its wake is (or will be)
 *              in our park state, and the word is settled: park_abort takes the wake. */
static inline int FP_FN(park)(FP_WORD *park, FP_COUNT *edges, uintptr_t task, uint32_t seen) {
#if FP_RECHECK_FIRST
  bool moved = FP_LOAD(*edges, FP_SC) != seen; /* planted: read before the publication */
#endif
  uintptr_t empty = FP_EMPTY;
  /* seq_cst: the publication's half of the store-buffering pair with a deliverer's bump and
   * load (the top); the failure needs nothing (a busy answer reads nothing of the holder) */
  if (!FP_CAS(*park, empty, task, FP_PUBLISH_ORDER, FP_RLX)) return FP_BUSY;
#if !FP_RECHECK_FIRST
  /* seq_cst: the recheck's load, after the publication in the single total order */
  bool moved = FP_LOAD(*edges, FP_SC) != seen;
#endif
  if (!moved) return FP_PARKED;
  uintptr_t mine = task;
  /* relaxed: a won withdraw hands nothing over; a lost one is followed by settle's acquire */
  if (FP_CAS(*park, mine, FP_EMPTY, FP_RLX, FP_RLX)) return FP_RETRY;
  FP_FN(settle)(park);
  return FP_RETRY_WOKEN;
}

/* The deliverer, on an edge or a close: bumps the count by `step` and claims the waiting task:
 * returns it (the caller wakes it with deliver_wake and frees the word with deliver_end), or
 * 0 if none waits (or another deliverer has it). */
static inline uintptr_t FP_FN(deliver_claim)(FP_WORD *park, FP_COUNT *edges, uint32_t step) {
  /* seq_cst (both): the deliverer's half of the store-buffering pair (the top) */
  FP_FETCH_ADD(*edges, step, FP_SC);
  uintptr_t s = FP_LOAD(*park, FP_SC);
  while (s != FP_EMPTY && s != FP_CLAIMED) {
    /* acquire: the publication's release (the task's descriptor); relaxed on failure: the
     * loop looks again at what replaced it */
    if (FP_CAS(*park, s, FP_CLAIMED, FP_ACQ, FP_RLX)) return s;
  }
  return 0;
}

/* The deliverer's wake of the task it claimed: FP_WON_PARKED (schedule it), FP_WON_PARKING (its
 * scheduler's commit will) or FP_LOST (a timer or a cancel was first; it withdraws and waits
 * for deliver_end). */
static inline int FP_FN(deliver_wake)(uintptr_t task) {
#if FP_WAKE_BY_CLAIM
  (void)task;
  return FP_WON_PARKED; /* planted: the claim taken for the win over the park state */
#else
  return FP_WAKE(task);
#endif
}

/* The deliverer's last touch of the word (release: a waiter's settle acquires it). */
static inline void FP_FN(deliver_end)(FP_WORD *park) { FP_STORE(*park, FP_EMPTY, FP_REL); }
