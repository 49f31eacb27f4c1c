/* Private to weft: the calling thread's worker on x86-64 System V (ELF TLS, initial-exec).
 *
 * A task may resume on another thread, and a compiler that computed a thread-local variable's
 * address before a context switch reuses it after (the field notes: seen with gcc 12), so the
 * worker used to be read through a noinline getter behind a compiler barrier: a call, ~7
 * instructions, five times per spawn+join. Here the read is one asm volatile with a memory
 * clobber — load the variable's offset from the GOT (initial-exec: fine for a library loaded
 * at start-up or linked statically; a dlopen'ed libweft.so depends on the C library's static
 * TLS reserve, which glibc keeps and musl may not), then read %fs:offset — so each
 * read happens where it is written and is never merged with one before a switch. Two loads, no
 * call. Rejected: __thread with a barrier in an inline function (the compiler may still keep
 * the %fs-relative address it computed before the barrier), the local-exec model (not valid in
 * a shared library). */
#ifndef WEFT_ARCH_TLS_X86_64_SYSV_H
#define WEFT_ARCH_TLS_X86_64_SYSV_H

#define WEFT__TLS_WORKER_INLINE 1

static inline struct weft__worker *weft__tls_worker_read(void) {
  struct weft__worker *w;
  __asm__ __volatile__("movq weft__tls_worker@gottpoff(%%rip), %0\n\t"
                       "movq %%fs:(%0), %0"
                       : "=r"(w)
                       :
                       : "memory");
  return w;
}

#endif /* WEFT_ARCH_TLS_X86_64_SYSV_H */
