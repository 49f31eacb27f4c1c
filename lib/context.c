/*
 * The context switch as the rest of weft sees it: the assembly of lib/arch/ plus the
 * annotations that ThreadSanitizer and AddressSanitizer need on every switch.
 *
 * TSan: each stack that runs a task is a TSan fiber; switching without telling TSan leaks its
 * shadow call stacks (gcc's runtime runs out of memory near 10^5 coroutines). Flag 0 keeps the
 * happens-before edge of the switch itself: the no-sync flag brings false reports on every
 * field a task shares with its worker.
 * ASan: start/finish_switch_fiber around the switch, or ASan's fake-stack and noreturn
 * handling would believe the thread's stack changed under it.
 */
#include "internal.h"

void weft__ctx_switch(weft__ctx_t *from, weft__ctx_t *to, bool from_ends) {
#if WEFT_TSAN
  __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
#if WEFT_ASAN
  __sanitizer_start_switch_fiber(from_ends ? NULL : &from->asan_fake_stack, to->stack_lo,
                                 to->stack_bytes);
#else
  (void)from_ends;
#endif
  weft__context_switch(&from->sp, to->sp);
#if WEFT_ASAN
  /* We are `from` again, resumed by someone. */
  __sanitizer_finish_switch_fiber(from->asan_fake_stack, NULL, NULL);
#endif
}

void weft__ctx_entered(weft__ctx_t *self) {
#if WEFT_ASAN
  __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
  (void)self;
}
