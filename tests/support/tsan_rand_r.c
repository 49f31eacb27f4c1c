/*
 * Linked into ThreadSanitizer test binaries only. Criterion maps its shared arena at
 * 0x200000000000 + ((rand_r() & 0x3fffff) << 24), which lies in TSan's shadow memory, so every
 * TSan test binary dies with "Could not initialize inheritable arena" (Criterion issue #274).
 * This rand_r keeps the arena inside [0x5600_0000_0000, 0x5680_0000_0000), application memory
 * in both gcc's and clang's TSan layouts. weft's tests use their own PRNG (support.h).
 */
#include <stdlib.h>

__attribute__((visibility("default"))) int rand_r(unsigned int *seed) {
  *seed = *seed * 1103515245u + 12345u;
  /* (0x560000000000 - 0x200000000000) >> 24 = 0x360000; 0x8000 slots of 16 MiB above it. */
  return (int)(0x360000u + ((*seed >> 8) & 0x7fffu));
}
