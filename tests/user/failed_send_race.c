/* A real race that a failed send must not hide from a user's TSan: a plain thread writes x and
 * then fails to send on a full channel; the main thread takes the channel's own buffered value
 * and writes x. Nothing orders the two writes (the hand-off below is a relaxed flag, which TSan
 * does not take for synchronisation), so TSan must report them, both in adder. Review, session
 * 33: a blocking send or a select's send case released the channel when it queued, so its
 * history reached the receiver even though the send timed out, and the race went unreported.
 * Usage: failed_send_race block|select|try */
#include <weft.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static weft_chan_t *chan;
static long x;
static atomic_int sent_failed;
static const char *how;

static __attribute__((noinline)) void adder(void) { x++; }

static int failing_send(void) {
  uint64_t soon = weft_now_ns() + 2000000; /* the channel stays full: the deadline passes */
  if (!strcmp(how, "try")) return weft_chan_try_send(chan, &x);
  if (!strcmp(how, "block")) return weft_chan_send(chan, &x, soon);
  weft_chan_op_t op = {.chan = chan, .op = WEFT_CHAN_SEND, .value = &x};
  return weft_chan_select(&op, 1, soon, NULL);
}

static void *sender(void *arg) {
  (void)arg;
  adder();
  int err = failing_send();
  if (err != WEFT_EAGAIN && err != WEFT_ETIMEDOUT) {
    fprintf(stderr, "failed_send_race: the send answered %d\n", err);
    exit(2);
  }
  atomic_store_explicit(&sent_failed, 1, memory_order_relaxed); /* no edge for TSan */
  return NULL;
}

int main(int argc, char **argv) {
  how = argc > 1 ? argv[1] : "block";
  if (weft_chan_create(&chan, 1) || weft_chan_send(chan, &x, UINT64_MAX)) return 2; /* full */
  pthread_t t;
  pthread_create(&t, NULL, sender, NULL);
  while (!atomic_load_explicit(&sent_failed, memory_order_relaxed)) {
  }
  void *v;
  if (weft_chan_recv(chan, &v, UINT64_MAX)) return 2;
  adder(); /* races with the sender's: TSan must say so */
  pthread_join(t, NULL);
  weft_chan_destroy(chan);
  printf("x = %ld\n", x);
  return 0;
}
