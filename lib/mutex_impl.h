/*
 * Private to weft: the mutex's state word — its lock-free part — written once and instantiated
 * twice: with C11 atomics in the library (lib/sync.c) and with relacy's in
 * tests/model/sync_model.cpp. The includer defines:
 *
 *   MX_WORD                          the atomic uint32_t object type
 *   MX_LOAD(obj, mo)  MX_STORE(obj, v, mo)  MX_FETCH_AND(obj, v, mo)
 *   MX_CAS(obj, expected_lvalue, desired, mo_success, mo_failure)   (strong)
 *   MX_RLX MX_ACQ MX_REL             memory orders
 *   MX_FN(name)                      the name of each function
 * and may plant the bugs the model must catch: MX_LOCK_ORDER (acquire) and MX_UNLOCK_ORDER
 * (release), MX_MARKS_WAITERS (1: a locker about to queue marks WAITERS), MX_UNLOCK_BY_STORE
 * (0: the fast unlock is a CAS that fails when WAITERS is set, not a plain store),
 * MX_GIVE_UP_CLEARS (1: a giving-up waiter that leaves the queue empty clears WAITERS).
 *
 * The word: LOCKED (someone holds it) and WAITERS (the queue may hold a waiter: the unlock must
 * take the slow path). The queue itself is under the mutex's spinlock (lib/sync.c). A locker
 * that is about to queue sets WAITERS under that lock with a CAS that also sees LOCKED: if the
 * holder's fast unlock came first, the CAS fails, the locker sees the mutex free and takes it;
 * if the CAS comes first, the holder's fast unlock (a CAS from exactly LOCKED) fails and it
 * takes the slow path, which finds the queued waiter under the lock. So no waiter is queued
 * unseen. The slow unlock clears bits with one fetch_and under the queue's lock: LOCKED (the
 * waiter it wakes competes: Go's normal mode) unless it hands the lock over (a starving waiter:
 * LOCKED stays, no one can barge), and WAITERS once the queue is empty.
 */

#define MX_LOCKED 1u
#define MX_WAITERS 2u

#ifndef MX_LOCK_ORDER
#define MX_LOCK_ORDER MX_ACQ
#endif
#ifndef MX_UNLOCK_ORDER
#define MX_UNLOCK_ORDER MX_REL
#endif
#ifndef MX_MARKS_WAITERS
#define MX_MARKS_WAITERS 1
#endif
#ifndef MX_UNLOCK_BY_STORE
#define MX_UNLOCK_BY_STORE 0
#endif
#ifndef MX_GIVE_UP_CLEARS
#define MX_GIVE_UP_CLEARS 1
#endif

/* The uncontended lock: 0 -> LOCKED. */
static inline bool MX_FN(lock_fast)(MX_WORD *m) {
  uint32_t s = 0;
  /* acquire: the previous holder's critical section (its unlock's release) */
  return MX_CAS(*m, s, MX_LOCKED, MX_LOCK_ORDER, MX_RLX);
}

/* Takes the lock if it is free, whatever WAITERS says (a running locker may barge). */
static inline bool MX_FN(try_lock)(MX_WORD *m) {
  uint32_t s = MX_LOAD(*m, MX_RLX); /* relaxed: the CAS validates it */
  /* acquire: as lock_fast */
  return !(s & MX_LOCKED) && MX_CAS(*m, s, s | MX_LOCKED, MX_LOCK_ORDER, MX_RLX);
}

/* Under the queue's lock, before queueing: takes the lock if it is free (true), else marks
 * WAITERS (false: the caller queues, and the holder's unlock will find it). */
static inline bool MX_FN(take_or_mark)(MX_WORD *m) {
  uint32_t s = MX_LOAD(*m, MX_RLX); /* relaxed: the CAS validates it */
  for (;;) {
    uint32_t mark = MX_MARKS_WAITERS ? MX_WAITERS : 0;
    uint32_t desired = s & MX_LOCKED ? s | mark : s | MX_LOCKED;
    /* acquire: as lock_fast, when we take it (marking needs none: the queue's lock orders the
     * node we then link before the unlocker's look at the queue) */
    if (MX_CAS(*m, s, desired, MX_LOCK_ORDER, MX_RLX)) return !(s & MX_LOCKED);
  }
}

/* The uncontended unlock: LOCKED -> 0. 1 done; 0 WAITERS is set (the caller takes the slow
 * path); -1 the mutex was not locked (misuse). */
static inline int MX_FN(unlock_fast)(MX_WORD *m) {
#if MX_UNLOCK_BY_STORE
  uint32_t s = MX_LOAD(*m, MX_RLX);
  if (!(s & MX_LOCKED)) return -1;
  MX_STORE(*m, 0, MX_UNLOCK_ORDER);
  return 1;
#else
  uint32_t s = MX_LOCKED;
  /* release: our critical section, to the next holder's acquire */
  if (MX_CAS(*m, s, 0, MX_UNLOCK_ORDER, MX_RLX)) return 1;
  return (s & MX_LOCKED) ? 0 : -1;
#endif
}

/* Under the queue's lock, once the next waiter (if any: popped) is taken off the queue: the
 * bits that the slow unlock (locked: we hold the lock) or a woken waiter giving up (!locked:
 * it passes its wake-up on) clears. LOCKED goes unless the lock is handed over (hand: LOCKED
 * stays, the waiter owns it); WAITERS once the queue is empty — a locker that queues marks it
 * again under the same lock. A waiter that timed out while queued left WAITERS behind it, so a
 * giving-up waiter with no one behind it must clear it too, or the word reads "awaited" to
 * weft_mutex_destroy for good (session 19's defect, planted as MX_GIVE_UP_CLEARS 0). */
static inline uint32_t MX_FN(wake_clear_bits)(bool locked, bool popped, bool hand,
                                              bool queue_empty) {
  if (!MX_GIVE_UP_CLEARS && !popped && !locked) return 0;
  uint32_t clear = queue_empty ? MX_WAITERS : 0;
  if (locked && !hand) clear |= MX_LOCKED;
  return clear;
}

/* Under the queue's lock: the slow unlock's (or a giving-up waiter's) change of the word. */
static inline void MX_FN(clear)(MX_WORD *m, uint32_t bits) {
  /* release: our critical section, to whoever takes the lock next (a barger or the woken) */
  if (bits) MX_FETCH_AND(*m, ~bits, MX_UNLOCK_ORDER);
}
