/* A program that carries TSan's annotation entry points but not its fiber API (what an old
 * TSan runtime offers): weft cannot switch stacks safely there, so weft_runtime_create must
 * stop with one sentence that says what to do, never run on into a SEGV. Defined here, not by
 * an old compiler, so that the path is tested on any machine (linked with -rdynamic). */
#include <weft.h>

void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
void __tsan_acquire(void *addr) { (void)addr; }
void __tsan_release(void *addr) { (void)addr; }

static void *nothing(void *arg) { return arg; }

int main(void) { return weft_run(NULL, nothing, NULL, NULL) == 0 ? 0 : 1; }
