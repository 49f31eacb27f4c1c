/*
 * Standalone test of the assembly context switch in lib/arch/ (no Criterion, no Concurrency Kit).
 * Built natively against the host's .S and, where a cross compiler and qemu-user exist, for
 * aarch64 under qemu (tests/arch/CMakeLists.txt).
 *
 * What it checks:
 *   - weft__context_make places the first frame inside the stack, whatever the alignment of
 *     the stack top it is given;
 *   - a task is entered with its argument and with the stack alignment the ABI promises;
 *   - ping-pong between the main context and 3 coroutines, values passed through globals;
 *   - direct coroutine-to-coroutine switches (a chain main -> 0 -> 1 -> 2 -> main);
 *   - every callee-saved register survives a switch: inline asm loads known values into
 *     rbx/rbp/r12-r15 (x86-64) or x19-x28 and d8-d15 (aarch64), switches, and compares after
 *     being resumed; the other side loads different values into the same registers meanwhile;
 *   - doubles kept live across switches in C (the compiler's choice of d8-d15 or spills);
 *   - a deep recursion on a coroutine stack that suspends at many depths;
 *   - a coroutine started on a fresh (garbage-filled) stack, suspended and resumed many times,
 *     then restarted on the same stack, repeatedly.
 * It also prints ns per switch (informational, not asserted).
 *
 * Prints "N passed, M failed" as its last line; exits 0 only if M == 0. A fatal signal (a bad
 * switch usually jumps somewhere wild) is caught on an alternate stack and reported.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "switch_test.c knows x86-64 and aarch64 only"
#endif

/* The symbols are .hidden: the .S is linked into this executable. */
void weft__context_switch(void **save_sp, void *load_sp);
void *weft__context_make(void *stack_top, void (*entry)(void *), void *arg);

/* ---------------------------------------------------------------------------------------- */
/* checks and fatal signals                                                                   */

static int n_pass, n_fail;
static const char *volatile g_phase = "startup";

#define CHECK(cond, ...)                                                                       \
  do {                                                                                         \
    if (cond) {                                                                                \
      n_pass++;                                                                                \
    } else {                                                                                   \
      n_fail++;                                                                                \
      fprintf(stderr, "FAIL [%s] %s:%d: ", g_phase, __FILE__, __LINE__);                       \
      fprintf(stderr, __VA_ARGS__);                                                            \
      fputc('\n', stderr);                                                                     \
    }                                                                                          \
  } while (0)

static void write_str(const char *s) {
  ssize_t r = write(2, s, strlen(s));
  (void)r;
}

static void on_fatal(int sig) {
  char num[16];
  int n = 0, s = sig;
  do {
    num[n++] = (char)('0' + s % 10);
    s /= 10;
  } while (s && n < 15);
  write_str("FAIL: fatal signal ");
  while (n) {
    char c = num[--n];
    ssize_t r = write(2, &c, 1);
    (void)r;
  }
  write_str(" during phase: ");
  write_str(g_phase);
  write_str("\n");
  _exit(2);
}

static void install_fatal_handlers(void) {
  static char altstack[64 * 1024];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fatal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* stacks: mmap with a PROT_NONE guard page at the low end                                  */

struct stack {
  unsigned char *lo; /* first usable byte */
  size_t size;       /* usable bytes */
};

static struct stack stack_new(size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  size = (size + page - 1) / page * page;
  unsigned char *p =
      mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(3);
  }
  if (mprotect(p, page, PROT_NONE) != 0) {
    perror("mprotect");
    exit(3);
  }
  return (struct stack){.lo = p + page, .size = size};
}

static unsigned char *stack_top(struct stack s) { return s.lo + s.size; }

/* ---------------------------------------------------------------------------------------- */
/* a switch that proves the callee-saved registers survive it                                */

/*
 * Loads values derived from `seed` into every callee-saved register, switches, and once
 * resumed compares each register with the value it must still hold. Returns a bitmask of the
 * registers that changed; *kept receives the register that held the seed itself (r15 / x28),
 * which the caller compares with `seed`.
 *   x86-64:  bit 0 rbx, 1 rbp, 2 r12, 3 r13, 4 r14
 *   aarch64: bits 0-8 x19-x27, bits 9-16 d8-d15
 */
#define INT_REG_MASK_X86 0x1fUL
#define INT_REG_MASK_A64 0x1ffUL
#define FP_REG_MASK_A64 (0xffUL << 9)

#if defined(__x86_64__)

#define X86_CMP(reg, off, bit)                                                                 \
  "lea " #off "(%%r15), %%rcx\n\t"                                                             \
  "cmp %%rcx, %%" #reg "\n\t"                                                                  \
  "setne %%cl\n\t"                                                                             \
  "movzbl %%cl, %%ecx\n\t"                                                                     \
  "shl $" #bit ", %%ecx\n\t"                                                                   \
  "or %%ecx, %%eax\n\t"

__attribute__((noinline)) static unsigned long checked_switch(void **save, void *load,
                                                              uint64_t seed, uint64_t *kept) {
  unsigned long bad;
  /* rbp is saved by hand (it may be the frame pointer, which cannot be a clobber). The
   * 128 bytes skip the red zone: the compiler does not know this asm calls a function. */
  __asm__ volatile("sub $128, %%rsp\n\t"
                   "push %%rbp\n\t"
                   "mov %%rdx, %%r15\n\t"
                   "lea 1(%%r15), %%rbx\n\t"
                   "lea 2(%%r15), %%rbp\n\t"
                   "lea 3(%%r15), %%r12\n\t"
                   "lea 4(%%r15), %%r13\n\t"
                   "lea 5(%%r15), %%r14\n\t"
                   "call weft__context_switch\n\t"
                   "xor %%eax, %%eax\n\t"
                   X86_CMP(rbx, 1, 0)
                   X86_CMP(rbp, 2, 1)
                   X86_CMP(r12, 3, 2)
                   X86_CMP(r13, 4, 3)
                   X86_CMP(r14, 5, 4)
                   "pop %%rbp\n\t"
                   "add $128, %%rsp\n\t"
                   "mov %%r15, %%rdx\n\t"
                   : "+D"(save), "+S"(load), "+d"(seed), "=a"(bad)
                   :
                   : "rbx", "rcx", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
                     "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                     "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "memory",
                     "cc");
  *kept = seed;
  return bad;
}

#else /* __aarch64__ */

#define A64_SETX(r, off) "add x" #r ", x28, #" #off "\n\t"
#define A64_SETD(r, off) "add x9, x28, #" #off "\n\tfmov d" #r ", x9\n\t"
#define A64_CMPX(r, off, bit)                                                                  \
  "add x9, x28, #" #off "\n\t"                                                                 \
  "cmp x" #r ", x9\n\t"                                                                        \
  "cset x10, ne\n\t"                                                                           \
  "orr x0, x0, x10, lsl #" #bit "\n\t"
#define A64_CMPD(r, off, bit)                                                                  \
  "add x9, x28, #" #off "\n\t"                                                                 \
  "fmov x11, d" #r "\n\t"                                                                      \
  "cmp x11, x9\n\t"                                                                            \
  "cset x10, ne\n\t"                                                                           \
  "orr x0, x0, x10, lsl #" #bit "\n\t"

__attribute__((noinline)) static unsigned long checked_switch(void **save, void *load,
                                                              uint64_t seed, uint64_t *kept) {
  register uintptr_t r0 __asm__("x0") = (uintptr_t)save;
  register uintptr_t r1 __asm__("x1") = (uintptr_t)load;
  register uintptr_t r2 __asm__("x2") = seed;
  __asm__ volatile("mov x28, x2\n\t"
                   A64_SETX(19, 1) A64_SETX(20, 2) A64_SETX(21, 3) A64_SETX(22, 4)
                   A64_SETX(23, 5) A64_SETX(24, 6) A64_SETX(25, 7) A64_SETX(26, 8)
                   A64_SETX(27, 9)
                   A64_SETD(8, 0x108) A64_SETD(9, 0x109) A64_SETD(10, 0x10a)
                   A64_SETD(11, 0x10b) A64_SETD(12, 0x10c) A64_SETD(13, 0x10d)
                   A64_SETD(14, 0x10e) A64_SETD(15, 0x10f)
                   "bl weft__context_switch\n\t"
                   "mov x0, #0\n\t"
                   A64_CMPX(19, 1, 0) A64_CMPX(20, 2, 1) A64_CMPX(21, 3, 2)
                   A64_CMPX(22, 4, 3) A64_CMPX(23, 5, 4) A64_CMPX(24, 6, 5)
                   A64_CMPX(25, 7, 6) A64_CMPX(26, 8, 7) A64_CMPX(27, 9, 8)
                   A64_CMPD(8, 0x108, 9) A64_CMPD(9, 0x109, 10) A64_CMPD(10, 0x10a, 11)
                   A64_CMPD(11, 0x10b, 12) A64_CMPD(12, 0x10c, 13) A64_CMPD(13, 0x10d, 14)
                   A64_CMPD(14, 0x10e, 15) A64_CMPD(15, 0x10f, 16)
                   "mov x1, x28\n\t"
                   : "+r"(r0), "+r"(r1), "+r"(r2)
                   :
                   : "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13",
                     "x14", "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23",
                     "x24", "x25", "x26", "x27", "x28", "x30", "v0", "v1", "v2", "v3", "v4",
                     "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15",
                     "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25",
                     "v26", "v27", "v28", "v29", "v30", "v31", "memory", "cc");
  *kept = r1;
  return r0;
}

#endif

/*
 * Globals that another context touches while this one sits in checked_switch are volatile:
 * gcc's ipa-reference does not count an asm "memory" clobber as a use of a static variable
 * whose address is never taken, so without volatile it caches them across the asm (seen with
 * gcc 12 at -O1 and above).
 */

/* Tallies of register damage seen anywhere (main or coroutine side). */
static volatile unsigned long g_int_reg_bad, g_fp_reg_bad, g_seed_reg_bad, g_reg_switches;

static void tally_switch(void **save, void *load, uint64_t seed) {
  uint64_t kept;
  unsigned long bad = checked_switch(save, load, seed, &kept);
  g_reg_switches++;
#if defined(__x86_64__)
  if (bad & INT_REG_MASK_X86) g_int_reg_bad++;
  (void)g_fp_reg_bad;
#else
  if (bad & INT_REG_MASK_A64) g_int_reg_bad++;
  if (bad & FP_REG_MASK_A64) g_fp_reg_bad++;
#endif
  if (kept != seed) g_seed_reg_bad++;
}

/* ---------------------------------------------------------------------------------------- */
/* stack alignment at task entry                                                              */

/*
 * Called at the top of every task entry function. `frame` is the entry's
 * __builtin_frame_address(0): on x86-64 that is rsp-at-entry - 8 (after push rbp), on aarch64
 * x29 = sp after the prologue; both are 16-aligned exactly when the task was entered with the
 * alignment the ABI promises. The helper also does a 16-byte aligned store to its own frame
 * (movaps faults on misalignment); on aarch64 the helper reads sp itself and checks it.
 */
static volatile unsigned long g_entry_count, g_entry_misaligned;

__attribute__((noinline)) static void note_entry(uintptr_t frame) {
  _Alignas(16) unsigned char buf[16];
  uintptr_t sp;
#if defined(__x86_64__)
  __asm__ volatile("pxor %%xmm0, %%xmm0\n\tmovaps %%xmm0, %0" : "=m"(buf) : : "xmm0");
  __asm__ volatile("lea %1, %0" : "=r"(sp) : "m"(buf));
#else
  __asm__ volatile("mov %0, sp" : "=r"(sp));
  (void)buf;
#endif
  __asm__ volatile("" : "+r"(frame), "+r"(sp));
  g_entry_count++;
  if ((frame & 15) != 0 || (sp & 15) != 0) g_entry_misaligned++;
}

#define NOTE_ENTRY() note_entry((uintptr_t)__builtin_frame_address(0))

/* ---------------------------------------------------------------------------------------- */
/* phase 1 and 2: three workers, ping-pong and chain                                        */

#define NWORKERS 3
#define PINGPONG_ROUNDS 20000
#define CHAIN_ROUNDS 5000

enum { MODE_PINGPONG, MODE_CHAIN };

struct worker {
  void *sp;
  struct stack stack;
  int id;
  void *arg_seen;
  unsigned long resumes;
  unsigned long local_errors; /* a coroutine's own locals changed across a switch */
  unsigned long fp_errors;    /* C doubles kept live across a switch changed */
};

static void *main_sp;
static struct worker workers[NWORKERS];
static volatile int g_mode = MODE_PINGPONG;
static volatile uint64_t g_in, g_out;
static volatile int g_trace[NWORKERS * 2];
static volatile int g_ntrace;
static volatile double g_dseed = 1.0;

static void worker_entry(void *arg) {
  NOTE_ENTRY();
  struct worker *self = arg;
  self->arg_seen = arg;
  int id = self->id;
  uint64_t local = 0x5a5a0000u + (uint64_t)id; /* kept in a register or spill slot */
  volatile uint64_t local_mirror = local;      /* the reference, in this stack frame */
  uint64_t n = 0;
  for (;;) {
    /* Suspend: back to main, or in chain mode to the next worker. */
    void *target = (g_mode == MODE_CHAIN && id < NWORKERS - 1) ? workers[id + 1].sp : main_sp;

    /* Doubles that must stay live across the switch (d8-d15 or spill slots). The reference
     * is recomputed afterwards from a volatile copy, so the compiler cannot fold the
     * comparison away. */
    double base = g_dseed + (double)id;
    volatile double vbase = base;
    double f0 = base + 0.5, f1 = base * 2.0, f2 = base * 3.0, f3 = base + 4.25;
    double f4 = base * 5.0, f5 = base + 6.125, f6 = base * 7.0, f7 = base + 8.5;

    tally_switch(&self->sp, target, ((uint64_t)(id + 2) << 44) | (++n << 12));

    double b = vbase;
    if (f0 != b + 0.5 || f1 != b * 2.0 || f2 != b * 3.0 || f3 != b + 4.25 || f4 != b * 5.0 ||
        f5 != b + 6.125 || f6 != b * 7.0 || f7 != b + 8.5)
      self->fp_errors++;
    g_dseed = g_dseed + 1.0; /* the next context computes different doubles */

    if (local != local_mirror) self->local_errors++;
    local_mirror = ++local;
    self->resumes++;
    g_out = g_in * 3 + (uint64_t)id;
    if (g_ntrace < (int)(sizeof g_trace / sizeof g_trace[0])) g_trace[g_ntrace++] = id;
  }
}

/* ---------------------------------------------------------------------------------------- */
/* phase 3: deep recursion on a coroutine stack, suspending on the way down                   */

#define DEEP_DEPTH 20000
#define DEEP_SWITCH_EVERY 250

static struct {
  void *sp;
  struct stack stack;
  unsigned long suspends;
  unsigned long buf_errors;
  uintptr_t lowest;
  unsigned long result;
  int done;
} deep;

__attribute__((noinline)) static unsigned long deep_recurse(unsigned depth) {
  volatile unsigned char buf[48];
  for (unsigned i = 0; i < sizeof buf; i++) buf[i] = (unsigned char)(depth * 7u + i);
  if ((uintptr_t)buf < deep.lowest) deep.lowest = (uintptr_t)buf;
  if (depth % DEEP_SWITCH_EVERY == 0) {
    deep.suspends++;
    weft__context_switch(&deep.sp, main_sp);
  }
  unsigned long sum = depth ? deep_recurse(depth - 1) : 0;
  for (unsigned i = 0; i < sizeof buf; i++)
    if (buf[i] != (unsigned char)(depth * 7u + i)) deep.buf_errors++;
  return sum + depth;
}

static void deep_entry(void *arg) {
  NOTE_ENTRY();
  (void)arg;
  deep.lowest = UINTPTR_MAX;
  deep.result = deep_recurse(DEEP_DEPTH);
  deep.done = 1;
  for (;;) weft__context_switch(&deep.sp, main_sp); /* never resumed again */
}

/* ---------------------------------------------------------------------------------------- */
/* phase 4: fresh stacks, many suspends, restarted on the same stack                         */

#define RESTARTS 300
#define SUSPENDS_PER_RUN 40

static struct {
  void *sp;
  struct stack stack;
  uintptr_t arg_seen;
  uint64_t value;
  int done;
} fresh;

static void fresh_entry(void *arg) {
  NOTE_ENTRY();
  fresh.arg_seen = (uintptr_t)arg;
  for (uint64_t k = 0; k < SUSPENDS_PER_RUN; k++) {
    fresh.value = (uint64_t)(uintptr_t)arg * 1000 + k;
    tally_switch(&fresh.sp, main_sp, 0x7700000000000ULL | (k << 12));
  }
  fresh.done = 1;
  for (;;) weft__context_switch(&fresh.sp, main_sp);
}

/* ---------------------------------------------------------------------------------------- */
/* phase 5: timing                                                                            */

static struct {
  void *sp;
  struct stack stack;
} bench;

static void bench_entry(void *arg) {
  (void)arg;
  for (;;) weft__context_switch(&bench.sp, main_sp);
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------------- */

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  install_fatal_handlers();
#if defined(__x86_64__)
  printf("arch: x86-64 (lib/arch/switch_x86_64_sysv.S)\n");
#else
  printf("arch: aarch64 (lib/arch/switch_aarch64_aapcs.S)\n");
#endif

  /* ---- weft__context_make ---- */
  g_phase = "context_make";
  {
    struct stack s = stack_new(16 * 1024);
    for (uintptr_t off = 0; off < 16; off++) {
      unsigned char *top = stack_top(s) - off;
      memset(s.lo, 0xa5, s.size);
      unsigned char *sp = weft__context_make(top, worker_entry, NULL);
      CHECK(sp >= s.lo && sp < top && top - sp <= 256,
            "context_make(top - %u) returned %p, outside [%p, %p) or more than 256 bytes down",
            (unsigned)off, (void *)sp, (void *)s.lo, (void *)top);
      /* Nothing may be written above the (aligned-down) top. */
      int above_ok = 1;
      for (unsigned char *p = (unsigned char *)((uintptr_t)top & ~(uintptr_t)15);
           p < stack_top(s); p++)
        if (*p != 0xa5) above_ok = 0;
      CHECK(above_ok, "context_make(top - %u) wrote above the 16-aligned top", (unsigned)off);
    }
  }

  /* ---- start the workers; tops deliberately misaligned in different ways ---- */
  g_phase = "worker start";
  static const unsigned top_offsets[NWORKERS] = {0, 8, 13};
  for (int i = 0; i < NWORKERS; i++) {
    workers[i].id = i;
    workers[i].stack = stack_new(64 * 1024);
    memset(workers[i].stack.lo, 0xcc, workers[i].stack.size);
    workers[i].sp =
        weft__context_make(stack_top(workers[i].stack) - top_offsets[i], worker_entry, &workers[i]);
  }
  g_mode = MODE_PINGPONG;
  g_ntrace = 0;
  for (int i = 0; i < NWORKERS; i++) {
    g_in = 0;
    g_out = ~0ULL;
    tally_switch(&main_sp, workers[i].sp, 0x100000000000ULL);
    /* First entry runs up to the first suspend: no g_out yet. */
    CHECK(workers[i].arg_seen == &workers[i], "worker %d got argument %p, expected %p", i,
          workers[i].arg_seen, (void *)&workers[i]);
    CHECK(g_out == ~0ULL, "worker %d touched g_out before its first resume", i);
  }
  CHECK(g_entry_count == NWORKERS && g_entry_misaligned == 0,
        "workers: %lu entries, %lu entered with a misaligned stack", g_entry_count,
        g_entry_misaligned);

  /* ---- ping-pong ---- */
  g_phase = "ping-pong";
  {
    unsigned long value_errors = 0, trace_errors = 0;
    for (uint64_t r = 1; r <= PINGPONG_ROUNDS; r++) {
      for (int i = 0; i < NWORKERS; i++) {
        g_in = r * 17 + (uint64_t)i;
        g_out = 0;
        g_ntrace = 0;
        tally_switch(&main_sp, workers[i].sp, 0x100000000000ULL | (r << 12));
        if (g_out != g_in * 3 + (uint64_t)i) value_errors++;
        if (g_ntrace != 1 || g_trace[0] != i) trace_errors++;
      }
    }
    CHECK(value_errors == 0, "%lu of %d ping-pong round trips returned a wrong value",
          value_errors, PINGPONG_ROUNDS * NWORKERS);
    CHECK(trace_errors == 0, "%lu ping-pong round trips ran the wrong coroutine", trace_errors);
    int resumes_ok = 1;
    for (int i = 0; i < NWORKERS; i++)
      if (workers[i].resumes != PINGPONG_ROUNDS) resumes_ok = 0;
    CHECK(resumes_ok, "resume counts %lu/%lu/%lu, expected %d each", workers[0].resumes,
          workers[1].resumes, workers[2].resumes, PINGPONG_ROUNDS);
  }

  /* ---- chain: main -> w0 -> w1 -> w2 -> main, coroutine-to-coroutine switches ---- */
  g_phase = "chain";
  {
    unsigned long trace_errors = 0;
    for (uint64_t r = 1; r <= CHAIN_ROUNDS; r++) {
      /* Suspended workers pick their next target after they are resumed and have done
       * their step, so switching the mode here takes effect in this very round. */
      g_mode = MODE_CHAIN;
      g_ntrace = 0;
      g_in = r;
      tally_switch(&main_sp, workers[0].sp, 0x200000000000ULL | (r << 12));
      if (g_ntrace != 3 || g_trace[0] != 0 || g_trace[1] != 1 || g_trace[2] != 2)
        trace_errors++;
      if (g_out != r * 3 + 2) trace_errors++;
    }
    CHECK(trace_errors == 0, "%lu chain rounds did not visit workers 0,1,2 in order",
          trace_errors);
    unsigned long local_errors = 0, fp_errors = 0;
    for (int i = 0; i < NWORKERS; i++) {
      local_errors += workers[i].local_errors;
      fp_errors += workers[i].fp_errors;
    }
    CHECK(local_errors == 0, "%lu times a coroutine's local variable changed across a switch",
          local_errors);
    CHECK(fp_errors == 0, "%lu times doubles kept live in C changed across a switch",
          fp_errors);
  }

  /* ---- deep recursion ---- */
  g_phase = "deep recursion";
  {
    deep.stack = stack_new(4u << 20);
    unsigned long entries_before = g_entry_count;
    deep.sp = weft__context_make(stack_top(deep.stack), deep_entry, NULL);
    unsigned long resumes = 0;
    while (!deep.done && resumes < 10 * DEEP_DEPTH) {
      weft__context_switch(&main_sp, deep.sp);
      resumes++;
    }
    unsigned long expect_sum = (unsigned long)DEEP_DEPTH * (DEEP_DEPTH + 1) / 2;
    CHECK(deep.done, "deep recursion did not finish after %lu resumes", resumes);
    CHECK(deep.result == expect_sum, "deep recursion sum %lu, expected %lu", deep.result,
          expect_sum);
    CHECK(deep.buf_errors == 0, "%lu bytes of deep frames changed across switches",
          deep.buf_errors);
    CHECK(deep.suspends == DEEP_DEPTH / DEEP_SWITCH_EVERY + 1,
          "deep recursion suspended %lu times, expected %d", deep.suspends,
          DEEP_DEPTH / DEEP_SWITCH_EVERY + 1);
    size_t used = (size_t)(stack_top(deep.stack) - (unsigned char *)deep.lowest);
    CHECK(used >= (size_t)DEEP_DEPTH * 48 && used < deep.stack.size,
          "deep recursion used %zu bytes of its stack (expected >= %zu)", used,
          (size_t)DEEP_DEPTH * 48);
    CHECK(g_entry_count == entries_before + 1 && g_entry_misaligned == 0,
          "deep coroutine entered misaligned");
    printf("deep recursion: depth %d, %zu KiB of coroutine stack, %lu suspends\n", DEEP_DEPTH,
           used / 1024, deep.suspends);
  }

  /* ---- fresh stacks: start, suspend/resume many times, restart on the same memory ---- */
  g_phase = "fresh stack restarts";
  {
    fresh.stack = stack_new(32 * 1024);
    unsigned long entries_before = g_entry_count, misaligned_before = g_entry_misaligned;
    unsigned long seq_errors = 0, arg_errors = 0, done_errors = 0;
    for (uintptr_t run = 1; run <= RESTARTS; run++) {
      memset(fresh.stack.lo, (int)(run * 37), fresh.stack.size); /* garbage, not zeros */
      fresh.done = 0;
      fresh.sp = weft__context_make(stack_top(fresh.stack) - run % 16, fresh_entry, (void *)run);
      for (uint64_t k = 0; k < SUSPENDS_PER_RUN; k++) {
        tally_switch(&main_sp, fresh.sp, 0x300000000000ULL | (k << 12));
        if (fresh.value != run * 1000 + k) seq_errors++;
        if (fresh.done) done_errors++;
      }
      if (fresh.arg_seen != run) arg_errors++;
      tally_switch(&main_sp, fresh.sp, 0x300000000000ULL);
      if (!fresh.done) done_errors++;
    }
    CHECK(seq_errors == 0, "%lu wrong values from restarted coroutines", seq_errors);
    CHECK(arg_errors == 0, "%lu restarted coroutines got the wrong argument", arg_errors);
    CHECK(done_errors == 0, "%lu restarted coroutines finished early or late", done_errors);
    CHECK(g_entry_count == entries_before + RESTARTS &&
              g_entry_misaligned == misaligned_before,
          "fresh coroutines: %lu entries (expected %d), %lu misaligned",
          g_entry_count - entries_before, RESTARTS, g_entry_misaligned - misaligned_before);
  }

  /* ---- register totals over every checked switch above, both directions ---- */
  g_phase = "register totals";
  CHECK(g_int_reg_bad == 0, "callee-saved integer registers damaged on %lu of %lu switches",
        g_int_reg_bad, g_reg_switches);
  CHECK(g_seed_reg_bad == 0, "%s damaged on %lu of %lu switches",
#if defined(__x86_64__)
        "r15",
#else
        "x28",
#endif
        g_seed_reg_bad, g_reg_switches);
#if defined(__aarch64__)
  CHECK(g_fp_reg_bad == 0, "callee-saved d8-d15 damaged on %lu of %lu switches", g_fp_reg_bad,
        g_reg_switches);
#endif
  CHECK(g_reg_switches > 2UL * PINGPONG_ROUNDS * NWORKERS,
        "only %lu register-checked switches ran", g_reg_switches);

  /* ---- timing (informational) ---- */
  g_phase = "timing";
  {
    bench.stack = stack_new(16 * 1024);
    bench.sp = weft__context_make(stack_top(bench.stack), bench_entry, NULL);
    const long iters = 2000000;
    for (long i = 0; i < 10000; i++) weft__context_switch(&main_sp, bench.sp);
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
      double t0 = now_ns();
      for (long i = 0; i < iters; i++) weft__context_switch(&main_sp, bench.sp);
      double ns = (now_ns() - t0) / (2.0 * (double)iters);
      if (ns < best) best = ns;
    }
    printf("switch: %.2f ns per switch (best of 3 x %ld round trips; informational)\n", best,
           iters);
  }

  printf("%d passed, %d failed\n", n_pass, n_fail);
  return n_fail == 0 ? 0 : 1;
}
