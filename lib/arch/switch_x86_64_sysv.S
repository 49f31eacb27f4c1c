/*
 * Context switch for x86-64, System V ABI, ELF, GNU assembler.
 *
 * A saved context is the stack pointer of a suspended stack; the registers live on that stack:
 *
 *   offset from saved sp | content
 *   ---------------------+------------------------------------------
 *                     0  | r15
 *                     8  | r14
 *                    16  | r13   (first entry: argument for entry)
 *                    24  | r12   (first entry: entry function)
 *                    32  | rbx
 *                    40  | rbp
 *                    48  | resume address
 *
 * Only callee-saved registers are kept: the switch is an ordinary call as far as the compiler
 * knows, so everything caller-saved is already dead. MXCSR and the x87 control word are
 * callee-saved too, but reloading them costs ~50 ns on this CPU (ldmxcsr then fldcw, measured
 * for the team's field notes): weft requires that tasks leave the FP control modes as they found
 * them, as every libc function does, and does not switch them. No signal mask is switched
 * (swapcontext spends 87 of its 161 ns in rt_sigprocmask).
 *
 * The switch ends in `pop; jmp` instead of `ret`: a `ret` into another stack always misses the
 * return-stack predictor (9 ns against 2.5 ns measured here).
 *
 * C prototypes (lib/internal.h, "Context switch"):
 *   void  weft__context_switch(void **save_sp, void *load_sp);
 *   void *weft__context_make(void *stack_top, void (*entry)(void *), void *arg);
 */
        .text

        .globl  weft__context_switch
        .hidden weft__context_switch
        .type   weft__context_switch,@function
        .p2align 4
weft__context_switch:
        .cfi_startproc
        /* CFI per push and pop, the saved registers' slots included, so that a debugger or
         * profiler stopped inside the switch finds a whole frame: the saved layout is the
         * same on both stacks, so after the rsp swap it reads the new context's registers
         * with its return address (review O, session 38: without the slots, rbp was the old
         * context's, and frame-pointer code unwound into the wrong stack). */
        pushq   %rbp
        .cfi_adjust_cfa_offset 8
        .cfi_offset rbp, -16
        pushq   %rbx
        .cfi_adjust_cfa_offset 8
        .cfi_offset rbx, -24
        pushq   %r12
        .cfi_adjust_cfa_offset 8
        .cfi_offset r12, -32
        pushq   %r13
        .cfi_adjust_cfa_offset 8
        .cfi_offset r13, -40
        pushq   %r14
        .cfi_adjust_cfa_offset 8
        .cfi_offset r14, -48
        pushq   %r15
        .cfi_adjust_cfa_offset 8
        .cfi_offset r15, -56
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        .cfi_adjust_cfa_offset -8
        .cfi_restore r15
        popq    %r14
        .cfi_adjust_cfa_offset -8
        .cfi_restore r14
        popq    %r13
        .cfi_adjust_cfa_offset -8
        .cfi_restore r13
        popq    %r12
        .cfi_adjust_cfa_offset -8
        .cfi_restore r12
        popq    %rbx
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbx
        popq    %rbp
        .cfi_adjust_cfa_offset -8
        .cfi_restore rbp
        popq    %rcx
        .cfi_adjust_cfa_offset -8
        .cfi_register rip, rcx
        jmpq    *%rcx
        .cfi_endproc
        .size   weft__context_switch,.-weft__context_switch

/* First frame of a new stack: 7 slots laid out as above, resume address = trampoline.
 * The new sp is chosen so that the trampoline starts with rsp % 16 == 0, which makes the
 * `call` below enter the task with the alignment the ABI promises. */
        .globl  weft__context_make
        .hidden weft__context_make
        .type   weft__context_make,@function
        .p2align 4
weft__context_make:
        .cfi_startproc
        andq    $-16, %rdi
        leaq    -72(%rdi), %rax
        movq    $0, 0(%rax)
        movq    $0, 8(%rax)
        movq    %rdx, 16(%rax)
        movq    %rsi, 24(%rax)
        movq    $0, 32(%rax)
        movq    $0, 40(%rax)
        leaq    weft__context_trampoline(%rip), %rcx
        movq    %rcx, 48(%rax)
        ret
        .cfi_endproc
        .size   weft__context_make,.-weft__context_make

/* entry(arg) never returns: a task's last act is a switch away from its stack. */
        .type   weft__context_trampoline,@function
        .p2align 4
weft__context_trampoline:
        .cfi_startproc
        .cfi_undefined rip
        movq    %r13, %rdi
        callq   *%r12
        ud2
        .cfi_endproc
        .size   weft__context_trampoline,.-weft__context_trampoline

        .section .note.GNU-stack,"",@progbits
