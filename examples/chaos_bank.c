/* An ordering bug planted for chaos mode to find (README, "Seeing inside a running runtime").
 *
 *   cc chaos_bank.c $(pkg-config --cflags --libs weft)
 *   ./a.out                        # balance 20: passes, every run, on one worker
 *   WEFT_CHAOS=3 ./a.out           # some seeds: balance -30, the invariant broken
 *
 * Two withdrawals check the balance, await an audit task, then subtract: check-then-act across
 * a suspension point. asyncio has the same bug when an `await` sits between the check and the
 *  act. weft's default order hides it on one worker: the gather runs the first withdrawal
 * inline, its audit runs inline too, and nothing else runs in between. Chaos mode (a random
 * yield at the spawn of the audit, a random pick among ready tasks) lets the other withdrawal
 * check the old balance in between. The fix: subtract before awaiting (or re-check after).
 * The program exits 1 when the balance goes negative; a seed replays its run exactly. */
#include <weft.h>

#include <stdint.h>
#include <stdio.h>

static long balance;

static void *audit(void *amount) { return amount; } /* stands for logging the withdrawal */

static void *withdraw(void *arg) {
  long amount = (long)(intptr_t)arg;
  if (balance >= amount) { /* check */
    weft_task_t *log;
    if (weft_spawn(&log, audit, arg) == 0) weft_join(log, NULL); /* await audit(amount) */
    balance -= amount; /* act: the planted bug, another withdrawal may have checked meanwhile */
  }
  return NULL;
}

static void *bank(void *arg) {
  (void)arg;
  balance = 100;
  weft_call_t calls[] = {{withdraw, (void *)(intptr_t)80}, {withdraw, (void *)(intptr_t)50}};
  weft_gather_calls(calls, 2, NULL);
  return (void *)(intptr_t)balance;
}

int main(void) {
  weft_options_t o = WEFT_OPTIONS_INIT;
  o.workers = 1; /* one worker: the run is a function of the seed alone */
  void *r;
  int err = weft_run(&o, bank, NULL, &r);
  if (err) {
    fprintf(stderr, "chaos_bank: %s\n", weft_strerror(err));
    return 2;
  }
  printf("balance %ld\n", (long)(intptr_t)r);
  return (long)(intptr_t)r < 0 ? 1 : 0;
}
