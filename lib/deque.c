/*
 * Storage for the Chase–Lev deques: arrays, growth and retirement (the algorithm is in
 * deque_impl.h). Owns the arrays; a grown deque keeps its older arrays until it is destroyed,
 * because a thief may still read one (reclaiming them while running is an open issue).
 */
#include "deque.h"

#include <stdlib.h>

enum { DEQUE_ENOMEM = -12 }; /* WEFT_ENOMEM, without the public header */

static weft__deque_array_t *array_new(int64_t capacity) {
  weft__deque_array_t *a = malloc(sizeof *a + (size_t)capacity * sizeof(_Atomic uintptr_t));
  if (!a) return NULL;
  a->mask = capacity - 1;
  a->retired = NULL;
  for (int64_t i = 0; i < capacity; i++) atomic_init(&a->slot[i], 0);
  return a;
}

/* NULL when memory is exhausted: the push fails and the caller spills to the inject queue. */
weft__deque_array_t *weft__deque_grow(weft__deque_t *d, weft__deque_array_t *old, int64_t t,
                                       int64_t b) {
  weft__deque_array_t *a = array_new((old->mask + 1) * 2);
  if (!a) return NULL;
  /* relaxed: the owner copies its own slots; the release store of the array publishes them */
  for (int64_t i = t; i < b; i++)
    atomic_store_explicit(&WD_SLOT(a, i), atomic_load_explicit(&WD_SLOT(old, i), WD_RLX), WD_RLX);
  a->retired = old;
  /* release: a thief that loads the new array (acquire) sees the copied slots. */
  atomic_store_explicit(&d->array, a, memory_order_release);
  return a;
}

int weft__deque_init(weft__deque_t *d, size_t capacity_pow2) {
  atomic_init(&d->top, 0);
  atomic_init(&d->bottom, 0);
  weft__deque_array_t *a = array_new((int64_t)capacity_pow2);
  if (!a) return DEQUE_ENOMEM;
  atomic_init(&d->array, a);
  return 0;
}

void weft__deque_destroy(weft__deque_t *d) {
  /* relaxed (here and below): the workers are joined; nothing else touches the deque */
  weft__deque_array_t *a = atomic_load_explicit(&d->array, WD_RLX);
  while (a) {
    weft__deque_array_t *older = a->retired;
    free(a);
    a = older;
  }
  atomic_store_explicit(&d->array, NULL, WD_RLX);
}

