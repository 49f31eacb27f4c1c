/*
 * Context switch for aarch64, AAPCS64, ELF, GNU assembler.
 *
 * A saved context is the stack pointer of a suspended stack; the registers live on that stack:
 *
 *   offset from saved sp | content
 *   ---------------------+------------------------------------------
 *                     0  | x19   (first entry: entry function)
 *                     8  | x20   (first entry: argument for entry)
 *                16..72  | x21 .. x28
 *                    80  | x29 (frame pointer)
 *                    88  | x30 (resume address)
 *               96..152  | d8 .. d15 (low halves of v8..v15, callee-saved per AAPCS64)
 *
 * Only callee-saved registers are kept; FPCR is left alone for the reason given in
 * switch_x86_64_sysv.S (tasks must leave FP modes as they found them).
 *
 * C prototypes (lib/internal.h, "Context switch"):
 *   void  weft__context_switch(void **save_sp, void *load_sp);
 *   void *weft__context_make(void *stack_top, void (*entry)(void *), void *arg);
 */
        .text

        .globl  weft__context_switch
        .hidden weft__context_switch
        .type   weft__context_switch,%function
        .p2align 4
weft__context_switch:
        .cfi_startproc
        sub     sp, sp, #160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8,  d9,  [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8,  d9,  [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        ret
        .cfi_endproc
        .size   weft__context_switch,.-weft__context_switch

/* First frame of a new stack: the 160-byte block above, x30 = trampoline, sp 16-aligned. */
        .globl  weft__context_make
        .hidden weft__context_make
        .type   weft__context_make,%function
        .p2align 4
weft__context_make:
        .cfi_startproc
        and     x0, x0, #~15
        sub     x0, x0, #160
        stp     x1, x2, [x0, #0]
        stp     xzr, xzr, [x0, #16]
        stp     xzr, xzr, [x0, #32]
        stp     xzr, xzr, [x0, #48]
        stp     xzr, xzr, [x0, #64]
        adrp    x9, weft__context_trampoline
        add     x9, x9, :lo12:weft__context_trampoline
        stp     xzr, x9, [x0, #80]
        stp     xzr, xzr, [x0, #96]
        stp     xzr, xzr, [x0, #112]
        stp     xzr, xzr, [x0, #128]
        stp     xzr, xzr, [x0, #144]
        ret
        .cfi_endproc
        .size   weft__context_make,.-weft__context_make

/* entry(arg) never returns: a task's last act is a switch away from its stack. */
        .type   weft__context_trampoline,%function
        .p2align 4
weft__context_trampoline:
        .cfi_startproc
        .cfi_undefined x30
        mov     x0, x20
        blr     x19
        brk     #0
        .cfi_endproc
        .size   weft__context_trampoline,.-weft__context_trampoline

        .section .note.GNU-stack,"",%progbits
