/*
 * Private to weft: how weft_runtime_shutdown and a spawn that races it agree on who cancels
 * the new task — written once and instantiated twice: with C11 atomics in lib/shutdown.c (for
 * lib/runtime.c and lib/task.c) and with relacy's in tests/model/shutdown_model.cpp (session
 * 22: session 19 introduced the protocol without a model). The includer defines:
 *
 *   SD_FLAG                      the atomic int type of `closing`
 *   SD_COUNT                     the atomic long type of a count of callers inside
 *   SD_LOAD(obj, mo)  SD_STORE(obj, v, mo)  SD_FENCE(mo)  SD_FETCH_ADD(obj, v, mo)
 *   SD_RLX SD_ACQ SD_REL SD_SC   memory orders
 *   SD_FN(name)                  the name of each function
 *   SD_LINKAGE                   (optional) their linkage: static inline unless defined
 * and may plant the bugs the model must catch: SD_SPAWN_FENCE (1: a spawn from outside the
 * runtime fences between its descriptor's fill and its look at `closing`), SD_CLOSE_FENCE (1:
 * the shutdown fences between its store of `closing` and its walk), SD_CLEAN_PASSES (2: the
 * clean walks in a row that end the shutdown), SD_LEAVE_ORDER (release: a counted caller's
 * way out), SD_EMPTY_ORDER (acquire: the shutdown's look at the count), SD_COUNT_FIRST (1: a
 * shutdown counts itself running before it closes), SD_BEGUN_ORDER (acquire: destroy's look at
 * `closing`), SD_LAST_WALK (1: destroy walks once more after a shutdown its bound ended).
 *
 * The shutdown stores `closing`, then walks every descriptor and cancels each one not DONE,
 * until it has walked SD_CLEAN_PASSES times in a row finding none (or its bound passes).
 *   - A spawn from outside the runtime (a plain thread, another runtime's task) fills its
 *     descriptor and then looks at `closing`: a store-load pair against the shutdown's store
 *     and walk, so a seq_cst fence on each side. Either the spawner sees `closing` and cancels
 *     its task before anyone can run it, or the walk sees the descriptor live and cancels it.
 *     Without the fences each may read the other's old value (store buffers): the task starts
 *     after weft_runtime_shutdown returned 0 (review, session 19).
 *   - A spawn by one of the runtime's own tasks needs no fence: its spawner is live until it
 *     ends, which is after it filled its child. But a walk goes by address: it can read the
 *     child's slot before the fill and the spawner's after its end, and call itself clean. The
 *     next walk comes after it saw the spawner DONE (an acquire load of its word), so it sees
 *     the child: two clean walks in a row are needed.
 *
 * The same store-load pair counts callers from outside into a structure the shutdown frees
 * (session 24: the socket table, lib/poll.c, against plain threads and other runtimes' tasks
 * in a socket call; modelled in session 25). A caller adds itself to the count, then looks at
 * `closing` (the fence between): closing, it counts itself out and touches nothing more; else
 * it goes on and counts itself out (release) after its last touch. The shutdown stores
 * `closing` (close), then waits (acquire) until the count reads 0, then frees: either the
 * caller saw `closing`, or the shutdown's look sees it counted, and waits for its way out.
 *
 * The same count, once more, for destroy against a weft_runtime_shutdown still running on
 * another thread (session 32; modelled in session 33). A shutdown counts itself running, then
 * closes: destroy's acquire look that reads `closing` set reads the count too, and waits until
 * it is 0 (each shutdown's way out a release) before it frees what the walks touch. A shutdown
 * that begins after destroy looked is the caller's race (docs/api.md). A shutdown that its
 * bound ended may have walked before a stubborn task spawned a child: destroy, its workers
 * stopped (every spawn published), walks once more when the last walk left tasks unfinished,
 * so that every task left has its cancel requested.
 */

#ifndef SD_LINKAGE
#define SD_LINKAGE static inline
#endif
#ifndef SD_SPAWN_FENCE
#define SD_SPAWN_FENCE 1
#endif
#ifndef SD_CLOSE_FENCE
#define SD_CLOSE_FENCE 1
#endif
#ifndef SD_CLEAN_PASSES
#define SD_CLEAN_PASSES 2
#endif
#ifndef SD_LEAVE_ORDER
#define SD_LEAVE_ORDER SD_REL
#endif
#ifndef SD_EMPTY_ORDER
#define SD_EMPTY_ORDER SD_ACQ
#endif
#ifndef SD_COUNT_FIRST
#define SD_COUNT_FIRST 1
#endif
#ifndef SD_BEGUN_ORDER
#define SD_BEGUN_ORDER SD_ACQ
#endif
#ifndef SD_LAST_WALK
#define SD_LAST_WALK 1
#endif

/* The shutdown's first step, before its first walk. */
SD_LINKAGE void SD_FN(close)(SD_FLAG *closing) {
  SD_STORE(*closing, 1, SD_SC); /* seq_cst: the store side of the store-load pair (top) */
  /* and closing before the walk's looks at the descriptors: a seq_cst store alone does not
   * keep later (acquire) loads of other objects behind it */
#if SD_CLOSE_FENCE
  SD_FENCE(SD_SC);
#endif
}

/* After each walk, given what it found unfinished: true once the shutdown is done. *clean_run
 * counts the clean walks in a row (0 before the first). */
SD_LINKAGE bool SD_FN(walked)(int *clean_run, size_t unfinished) {
  *clean_run = unfinished ? 0 : *clean_run + 1;
  return *clean_run >= SD_CLEAN_PASSES;
}

/* A spawn from outside the runtime, its descriptor filled and not yet published: true if the
 * runtime is closing (the caller cancels its task before publishing it). */
SD_LINKAGE bool SD_FN(spawn_sees_closing)(SD_FLAG *closing) {
#if SD_SPAWN_FENCE
  SD_FENCE(SD_SC); /* the fill before the look at closing (top) */
#endif
  return SD_LOAD(*closing, SD_RLX);    /* relaxed: the fences order it */
}

/* A counted caller's way out, after its last touch of what the shutdown frees. */
SD_LINKAGE void SD_FN(leave)(SD_COUNT *inside) {
  /* release: our touches happen before the free of the shutdown that reads the count 0 */
  SD_FETCH_ADD(*inside, -1, SD_LEAVE_ORDER);
}

/* A caller from outside, before its first touch: true if it may go on (and leaves later),
 * false if the shutdown has begun (it is counted out again and touches nothing more). */
SD_LINKAGE bool SD_FN(enter)(SD_COUNT *inside, SD_FLAG *closing) {
  SD_FETCH_ADD(*inside, 1, SD_RLX); /* relaxed: spawn_sees_closing's fence orders it */
  if (!SD_FN(spawn_sees_closing)(closing)) return true;
  SD_FN(leave)(inside);
  return false;
}

/* The shutdown, after close: whether no caller is inside (then it may free). */
SD_LINKAGE bool SD_FN(none_inside)(SD_COUNT *inside) {
  /* acquire: pairs with each leave's release; close's fence orders this look after closing */
  return SD_LOAD(*inside, SD_EMPTY_ORDER) == 0;
}

/* A shutdown's first step: counted running (destroy waits for it), then closed. */
SD_LINKAGE void SD_FN(begin)(SD_COUNT *running, SD_FLAG *closing) {
#if SD_COUNT_FIRST
  SD_FETCH_ADD(*running, 1, SD_RLX); /* relaxed: close's seq_cst store releases it */
#endif
  SD_FN(close)(closing);
#if !SD_COUNT_FIRST
  SD_FETCH_ADD(*running, 1, SD_RLX);
#endif
}

/* Destroy's look: whether a shutdown has begun (then destroy waits for every shutdown running
 * with none_inside, and runs none of its own). */
SD_LINKAGE bool SD_FN(begun)(SD_FLAG *closing) {
  /* acquire: the seq_cst store releases the count taken before it (begin) */
  return SD_LOAD(*closing, SD_BEGUN_ORDER);
}

/* Destroy, its workers stopped and every shutdown returned, given the last walk's unfinished
 * count: whether to walk once more. */
SD_LINKAGE bool SD_FN(walk_again)(size_t unfinished) { return SD_LAST_WALK && unfinished != 0; }
