/* Private to weft: the hooks that keep ThreadSanitizer, AddressSanitizer and valgrind informed
 * of stack switches and of weft's own hand-offs.
 *
 * Two ways in, one code path:
 *   - weft's own sanitizer builds (-DWEFT_SANITIZE=thread|address) compile the library with the
 *     sanitizer: the hooks are on by construction (weft__san_hooks() is a constant).
 *   - the ordinary build, installed and linked into a user's program compiled with
 *     -fsanitize=thread or -fsanitize=address: the sanitizer entry points are weak references
 *     that resolve only when that runtime is in the process. context.c tests them once, before
 *     main (a constructor), and weft__san_hooks() reads the result: one global load and one
 *     well-predicted branch per switch when no sanitizer is there (measured in bench/README.md).
 * Valgrind's stack registration is a client request (a no-op outside valgrind), compiled in
 * whenever <valgrind/valgrind.h> was present at build time.
 */
#ifndef WEFT_SANITIZE_H
#define WEFT_SANITIZE_H

#include <stdbool.h>
#include <stddef.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif

#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define WEFT_TSAN 1 /* this library itself is compiled with TSan */
#else
#define WEFT_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define WEFT_ASAN 1 /* this library itself is compiled with ASan */
#else
#define WEFT_ASAN 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT_VALGRIND 1
#endif
#endif
#ifndef WEFT_VALGRIND
#define WEFT_VALGRIND 0
#endif

/* Which runtime's hooks to call (bits). */
#define WEFT__SAN_TSAN 1u
#define WEFT__SAN_ASAN 2u

/* The sanitizers' public entry points (sanitizer/tsan_interface.h and
 * sanitizer/common_interface_defs.h), declared here as weak references so that no sanitizer
 * header is needed: each resolves to the runtime in the process, or to NULL without it. */
#define WEFT__WEAK __attribute__((weak))
WEFT__WEAK void *__tsan_get_current_fiber(void);
WEFT__WEAK void *__tsan_create_fiber(unsigned flags);
WEFT__WEAK void __tsan_destroy_fiber(void *fiber);
WEFT__WEAK void __tsan_switch_to_fiber(void *fiber, unsigned flags);
WEFT__WEAK void __tsan_acquire(void *addr);
WEFT__WEAK void __tsan_release(void *addr);
WEFT__WEAK void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                               size_t size);
WEFT__WEAK void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                                size_t *size_old);
WEFT__WEAK void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#undef WEFT__WEAK

#if WEFT_TSAN || WEFT_ASAN
/* Compiled with the sanitizer: its runtime is there, the hooks are a constant. */
#define weft__san_hooks() ((WEFT_TSAN ? WEFT__SAN_TSAN : 0u) | (WEFT_ASAN ? WEFT__SAN_ASAN : 0u))
#else
/* Set once before main by context.c; read-only afterwards (hence a plain variable). */
extern unsigned weft__san_present __attribute__((visibility("hidden")));
#define weft__san_hooks() weft__san_present
#endif

/* Called by weft_runtime_create: if the process carries a sanitizer runtime whose hooks weft
 * cannot use (a TSan without the fiber API), one sentence saying what to do, then abort. */
void weft__san_check(void);

/* Happens-before edges that TSan cannot see when weft itself is not instrumented (its atomics
 * and the deque are invisible to a user's TSan): release before publishing, acquire after
 * observing. In weft's own TSan build they duplicate edges TSan already sees: harmless. */
static inline void weft__tsan_release(void *addr) {
  if (__builtin_expect((weft__san_hooks() & WEFT__SAN_TSAN) != 0, 0)) __tsan_release(addr);
}
static inline void weft__tsan_acquire(void *addr) {
  if (__builtin_expect((weft__san_hooks() & WEFT__SAN_TSAN) != 0, 0)) __tsan_acquire(addr);
}

/* The edges of weft's synchronisation objects (mutex, semaphore, event, condition, wait group,
 * channel, queue), keyed on the object: each call that hands something on (an unlock, a
 * release, a set, a notify, a done, a send, a close) releases as it hands it over — under the
 * object's lock where it has one, so that a call that fails releases nothing; a blocked sender
 * on its own wait node, which only the receiver that takes it acquires (lib/channel.c) — and
 * each that receives (a lock, an acquire, a wait, a receive) acquires once it has succeeded,
 * on its fast path as on its slow one (review, session 33: a user's TSan reported races on
 * data a weft mutex guarded, since only the queues' hand-off carried an edge). One key per
 * object merges every releaser's history: a race between two senders may go unreported, never
 * a false one reported. weft__tsan_acquired returns err, so that a call can end with it. */
int weft__tsan_acquired_slow(void *obj, int err); /* lib/context.c */
/* Not in weft's own TSan build: there TSan sees the objects' atomics, and an edge keyed on the
 * object would hide a memory order that is too weak (review, session 33: a relaxed event set
 * planted in that build went unreported). Only the uninstrumented library needs them. */
#define WEFT__OBJECT_EDGES (!WEFT_TSAN)
/* Whether the release edges are wanted (a call that releases before it acts may branch once to
 * an out-of-line copy of itself, for the reason weft__tsan_acquired gives). */
static inline bool weft__tsan_on(void) {
  return WEFT__OBJECT_EDGES && __builtin_expect((weft__san_hooks() & WEFT__SAN_TSAN) != 0, 0);
}
static inline int weft__tsan_acquired(void *obj, int err) {
  /* the edge out of line and reached by a tail call: a fast path keeps no frame of its own
   * for it (an inline call cost weft_mutex_lock a frame and 4 instructions: callgrind) */
  if (weft__tsan_on()) return weft__tsan_acquired_slow(obj, err);
  return err;
}
static inline void weft__tsan_object_release(void *obj) {
  if (weft__tsan_on()) __tsan_release(obj);
}
static inline void weft__tsan_object_acquire(void *obj) {
  if (weft__tsan_on()) __tsan_acquire(obj);
}

/* A pooled stack keeps the poison of its last task's frames: clear it before reuse. */
static inline void weft__unpoison(void *addr, size_t size) {
  if (__builtin_expect((weft__san_hooks() & WEFT__SAN_ASAN) != 0, 0))
    __asan_unpoison_memory_region(addr, size);
}
#define WEFT_UNPOISON(addr, size) weft__unpoison((addr), (size))

#endif /* WEFT_SANITIZE_H */
