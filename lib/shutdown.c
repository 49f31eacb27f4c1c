/*
 * How weft_runtime_shutdown (lib/runtime.c) and a spawn that races it (lib/task.c) agree on who
 * cancels the new task: the protocol is lib/shutdown_impl.h's, which the relacy model
 * tests/model/shutdown_model.cpp instantiates too; this file instantiates it with C11 atomics,
 * once for both callers. Out of line on purpose: the fences stay in functions of their own,
 * where gcc's TSan build does not warn that it cannot model them (inlined into a caller, it
 * does), and both paths are rare (a spawn from outside the workers, a shutdown).
 */
#include "internal.h"

#define SD_FLAG _Atomic int
#define SD_LOAD(obj, mo) atomic_load_explicit(&(obj), (mo))
#define SD_STORE(obj, v, mo) atomic_store_explicit(&(obj), (v), (mo))
#define SD_COUNT _Atomic long
#define SD_FENCE(mo) atomic_thread_fence(mo)
#define SD_FETCH_ADD(obj, v, mo) atomic_fetch_add_explicit(&(obj), (v), (mo))
#define SD_RLX memory_order_relaxed
#define SD_ACQ memory_order_acquire
#define SD_REL memory_order_release
#define SD_SC memory_order_seq_cst
/* The header's functions are this file's exported ones (internal.h declares them): not inlined
 * into a caller of their own here, so the fences stay in functions of their own. */
#define SD_FN(name) weft__shutdown_##name
#define SD_LINKAGE
#include "shutdown_impl.h"
