/*
 * The context switch as the rest of weft sees it: the assembly of lib/arch/ plus the
 * annotations that ThreadSanitizer and AddressSanitizer need on every switch.
 *
 * TSan: each stack that runs a task is a TSan fiber; switching without telling TSan leaks its
 * shadow call stacks (gcc's runtime runs out of memory near 10^5 coroutines) and, in a
 * program whose TSan runtime does not know weft switched, ends in "SEGV on unknown address".
 * Flag 0 keeps the happens-before edge of the switch itself: the no-sync flag brings false
 * reports on every field a task shares with its worker.
 * ASan: start/finish_switch_fiber around the switch, or ASan's fake-stack and noreturn
 * handling would believe the thread's stack changed under it.
 *
 * One library for every program: the hooks are called only when the runtime is in the process
 * (sanitize.h). weft's own sanitizer builds know it at compile time; the ordinary build finds
 * out once, before main, from its weak references, and pays one load and one predictable
 * branch per switch (measured: within noise on weft-bench fib and yield, bench/README.md).
 * Rejected: a function pointer per switch chosen at start (an indirect call on the hottest
 * path) and a separately installed libweft-tsan (two libraries to install and pick between,
 * and the ordinary one would still SEGV in a sanitized program).
 */
#include "internal.h"

#if !(WEFT_TSAN || WEFT_ASAN)
unsigned weft__san_present;

static void san_detect(void) {
  unsigned on = 0;
  if (__tsan_get_current_fiber && __tsan_create_fiber && __tsan_destroy_fiber &&
      __tsan_switch_to_fiber && __tsan_acquire && __tsan_release)
    on |= WEFT__SAN_TSAN;
  if (__sanitizer_start_switch_fiber && __sanitizer_finish_switch_fiber &&
      __asan_unpoison_memory_region)
    on |= WEFT__SAN_ASAN;
  weft__san_present = on;
}

/* Before main, so that futures and tasks see one answer from the start; the weak references
 * are bound by the dynamic linker before any constructor runs. */
__attribute__((constructor)) static void san_detect_at_load(void) { san_detect(); }
#endif

void weft__san_check(void) {
#if !(WEFT_TSAN || WEFT_ASAN)
  san_detect(); /* again: a user's constructor may create a runtime before ours ran */
  if (!(weft__san_present & WEFT__SAN_TSAN) &&
      (__tsan_acquire || __tsan_release || __tsan_switch_to_fiber))
    weft__die("weft: this program's ThreadSanitizer runtime lacks the fiber API weft needs "
              "(__tsan_create_fiber/__tsan_switch_to_fiber: gcc >= 10, clang >= 10); build the "
              "program with a newer compiler.");
  if (!(weft__san_present & WEFT__SAN_ASAN) && __asan_unpoison_memory_region)
    weft__die("weft: this program's AddressSanitizer runtime lacks the fiber API weft needs "
              "(__sanitizer_start_switch_fiber: gcc >= 7, clang >= 4); build the program with a "
              "newer compiler.");
#endif
}

int weft__tsan_acquired_slow(void *obj, int err) {
  if (!err) weft__tsan_acquire(obj);
  return err;
}

/* Out of line: the plain switch below stays a leaf-like call without the hooks' registers. */
static __attribute__((noinline)) void ctx_switch_hooked(weft__ctx_t *from, weft__ctx_t *to,
                                                        bool from_ends) {
  unsigned on = weft__san_hooks();
  if (on & WEFT__SAN_TSAN) __tsan_switch_to_fiber(to->tsan_fiber, 0);
  if (on & WEFT__SAN_ASAN)
    __sanitizer_start_switch_fiber(from_ends ? NULL : &from->asan_fake_stack, to->stack_lo,
                                   to->stack_bytes);
  weft__context_switch(&from->sp, to->sp);
  /* We are `from` again, resumed by someone. */
  if (on & WEFT__SAN_ASAN) __sanitizer_finish_switch_fiber(from->asan_fake_stack, NULL, NULL);
}

void weft__ctx_switch(weft__ctx_t *from, weft__ctx_t *to, bool from_ends) {
  /* The one branch an unsanitized program pays per switch: predicted not taken. */
  if (WEFT__UNLIKELY(weft__san_hooks() != 0)) {
    ctx_switch_hooked(from, to, from_ends);
    return;
  }
  weft__context_switch(&from->sp, to->sp);
}

void weft__ctx_entered(weft__ctx_t *self) {
  if (weft__san_hooks() & WEFT__SAN_ASAN) __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
  (void)self;
}
