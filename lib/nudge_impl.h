/*
 * Private to weft: the descriptor pass's nudge flag (lib/task.c's `task_scavenge_nudged`),
 * written once and instantiated twice — with C11 atomics in lib/task.c and with relacy's
 * atomics in tests/model/nudge_model.cpp, beside park_impl.h's halves. The includer defines:
 *
 *   NG_FLAG                            the atomic bool object type
 *   NG_LOAD(obj, mo)  NG_STORE(obj, v, mo)  NG_XCHG(obj, v, mo)
 *   NG_SC                              seq_cst
 *   NG_FN(name)                        the name of each function
 * and may override NG_ASK_ORDER (the asker's exchange) and NG_LOOK_ORDER (the parker's load),
 * both seq_cst, for the negative controls.
 *
 * What it is for. The descriptor scavenger runs only as a worker parks; descriptors a plain
 * thread gives back after every worker parked would stay until some unrelated wake-up. The
 * flag is true while a pass is armed (a parked worker will wake for one) or asked for:
 *   scavenger (a parking worker, under task_lock): look at what came back since the last pass,
 *       then arm(flag, whether anything did);
 *   asker (a plain thread's spill or first free, under task_lock with its return): ask(flag);
 *       if it was the one to ask, the producer's wake check (park_impl.h's wake_needed), and
 *       a wake if that says so;
 *   parker (the same worker, after park_impl.h's announce_idle, if its own look armed
 *       nothing): if armed(flag), sleep no longer than until a pass is due.
 * No lost pass: the lock orders each ask wholly before or after a scavenger's look-and-arm
 * (before: the look counts the return; after: the ask reads the arm, and sets the flag if it
 * was clear). An ask that sets the flag and then finds a worker spinning woke no one; that
 * worker is a parker still to come: its announce and its look at the flag are "store, then
 * load what the other stored" against the ask's exchange and the wake check's loads, all
 * seq_cst, so one side sees the other (park_impl.h's argument). An ask that finds the flag set
 * wakes no one: a pass is already due (armed) or another asker made the same exchange first.
 * Rejected: a wake on every return (review, session 34: ~2 000 wake-ups in 10^6 joins, each
 * park clearing the flag); the arm after the lock is dropped (the model's planted bug: it
 * erases an ask made between the look and the store).
 */

#ifndef NG_ASK_ORDER
#define NG_ASK_ORDER NG_SC
#endif
#ifndef NG_LOOK_ORDER
#define NG_LOOK_ORDER NG_SC
#endif

/* Asker, under the lock with its return: true if it set the flag (then it makes the wake
 * check). seq_cst: the store before the wake check's loads (the argument above). */
static inline bool NG_FN(ask)(NG_FLAG *flag) { return !NG_XCHG(*flag, true, NG_ASK_ORDER); }

/* Scavenger, under the lock, after its look: whether a pass is armed from now on.
 * seq_cst: in the same order as the asks' exchanges and the parkers' loads. */
static inline void NG_FN(arm)(NG_FLAG *flag, bool armed) { NG_STORE(*flag, armed, NG_SC); }

/* Parker, after announcing itself idle: whether a pass is armed or asked for. seq_cst: the load
 * after the announcement's read-modify-writes (the argument above). */
static inline bool NG_FN(armed)(NG_FLAG *flag) { return NG_LOAD(*flag, NG_LOOK_ORDER); }

#undef NG_ASK_ORDER
#undef NG_LOOK_ORDER
