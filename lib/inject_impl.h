/*
 * Private to weft: the inject queue (spawns and wake-ups from threads that are not workers),
 * written once and instantiated twice — with C11 atomics in lib/worker.c and with relacy's
 * atomics in tests/model/, with planted bugs that the search must catch.
 *
 * Vyukov's intrusive MPSC queue (1024cores, "Intrusive MPSC node-based queue"), linked through
 * the nodes themselves (no allocation per push), with a stub node, and with consumers
 * serialised by a try-lock (any worker may drain it; a worker that finds it taken looks
 * elsewhere). A push is one exchange on the producer end `in` and one store into the previous
 * node's link: no lock, so eight spawning threads on two cores never sleep on each other (the
 * mutex version did: futex waits and wake-ups were a third of weft-bench inject's profile).
 * Entries are tagged pointers (the tag says start or resume); the tag rides in `in` and in the
 * links, the node is found by IQ_UNTAG. The stub is untagged.
 *
 * The price: a producer between its exchange and its link hides every later entry from the
 * consumers until it links ("blocking" in Vyukov's words). pop then answers 0 although the
 * queue is not empty, and the wake protocol must still see work there (IQ_FN(visible) below).
 *
 * Wake protocol (park_impl.h): the exchange is the producer's seq_cst store that makes the work
 * visible; the producer then checks for sleepers BEFORE it links, so that its link is its last
 * touch of the queue — and of the runtime: destroy waits until no link is missing
 * (IQ_FN(quiesce)), after which no producer is still reading the runtime (worker.c).
 * A parker's check (IQ_FN(visible)): `in` is not the stub, or `out` (the consumer's position)
 * is not the stub. `in` alone is not enough: a consumer that re-pushes the stub while a
 * producer has exchanged but not linked leaves `in` == stub with that producer's entry still
 * queued (the planted bug "visible-in-only" is exactly that lost wake-up).
 *
 * The includer defines:
 *   IQ_NODE                      the node type (it has the link)
 *   IQ_QUEUE                     a struct with IQ_PTR `in`, IQ_PTR `out`, IQ_FLAG `taking`
 *                                and IQ_NODE `stub`
 *   IQ_LOAD(obj, mo) IQ_STORE(obj, v, mo) IQ_XCHG(obj, v, mo) IQ_CAS(obj, expected, v, mo)
 *                                on IQ_PTR and IQ_FLAG objects
 *   IQ_LINK_LOAD(node, mo) IQ_LINK_STORE(node, v, mo)   the node's link (an entry, 0: none)
 *   IQ_UNTAG(entry)              the node of an entry
 *   IQ_RLX IQ_ACQ IQ_REL IQ_ACQ_REL IQ_SC   the memory orders
 *   IQ_FN(name)                  the name of each function
 * and may override, for the negative controls: IQ_PUSH_ORDER (the producer's exchange,
 * seq_cst), IQ_LINK_ORDER (the link store, release), IQ_VISIBLE_OUT (1: the parker also looks
 * at `out`), IQ_POP_CHECKS_GAP (1: pop does not re-push the stub over a producer's gap).
 */

#ifndef IQ_PUSH_ORDER
#define IQ_PUSH_ORDER IQ_SC
#endif
#ifndef IQ_LINK_ORDER
#define IQ_LINK_ORDER IQ_REL
#endif
#ifndef IQ_VISIBLE_OUT
#define IQ_VISIBLE_OUT 1
#endif
#ifndef IQ_POP_CHECKS_GAP
#define IQ_POP_CHECKS_GAP 1
#endif

static inline void IQ_FN(init)(IQ_QUEUE *q) {
  IQ_LINK_STORE(&q->stub, 0, IQ_RLX); /* relaxed: before the queue is shared */
  IQ_STORE(q->in, (uintptr_t)&q->stub, IQ_RLX);
  IQ_STORE(q->out, (uintptr_t)&q->stub, IQ_RLX);
  IQ_STORE(q->taking, 0, IQ_RLX);
}

/* Producer, first half: the entry becomes the queue's newest; returns the entry before it,
 * which the caller links with IQ_FN(push_link) after its wake check. seq_cst: the store side
 * of the wake check (park_impl.h); acquire in it: the previous node is ours to write. */
static inline uintptr_t IQ_FN(push_begin)(IQ_QUEUE *q, uintptr_t entry) {
  /* relaxed: the exchange below (release) publishes it */
  IQ_LINK_STORE(IQ_UNTAG(entry), 0, IQ_RLX);
  return IQ_XCHG(q->in, entry, IQ_PUSH_ORDER);
}

/* Producer, second half: the last touch. release: the entry's contents (the task, its
 * arguments) happen before the consumer that reads the link (acquire) runs it. */
static inline void IQ_FN(push_link)(uintptr_t prev, uintptr_t entry) {
  IQ_LINK_STORE(IQ_UNTAG(prev), entry, IQ_LINK_ORDER);
}

/* Consumer try-lock: true if we may pop. acquire: the previous consumer's `out` and pops
 * happen before ours. */
static inline bool IQ_FN(try_take)(IQ_QUEUE *q) {
  /* relaxed pre-check: a taken lock costs no cache-line steal */
  if (IQ_LOAD(q->taking, IQ_RLX)) return false;
  uintptr_t expected = 0;
  return IQ_CAS(q->taking, expected, 1, IQ_ACQ);
}

/* release: our pops happen before the next consumer's. */
static inline void IQ_FN(untake)(IQ_QUEUE *q) { IQ_STORE(q->taking, 0, IQ_REL); }

/* The consumer's position advances. release: pairs with a parker's acquire load of `out`
 * (IQ_FN(visible)), which must not see an older position once it saw our stub re-push. */
static inline void IQ_FN(set_out)(IQ_QUEUE *q, uintptr_t e) { IQ_STORE(q->out, e, IQ_REL); }

/* Consumer (holding the try-lock): the oldest entry, or 0 if the queue is empty or its oldest
 * entry's producer has not linked yet (try again later: visible() still says non-empty). */
static inline uintptr_t IQ_FN(pop)(IQ_QUEUE *q) {
  const uintptr_t stub = (uintptr_t)&q->stub;
  uintptr_t out = IQ_LOAD(q->out, IQ_RLX); /* relaxed: only consumers write it (try-lock) */
  /* acquire (every link load): pairs with push_link's release */
  uintptr_t next = IQ_LINK_LOAD(IQ_UNTAG(out), IQ_ACQ);
  if (out == stub) { /* skip the stub */
    if (!next) return 0;
    IQ_FN(set_out)(q, next);
    out = next;
    next = IQ_LINK_LOAD(IQ_UNTAG(out), IQ_ACQ);
  }
  if (next) { /* out has a successor: out is ours */
    IQ_FN(set_out)(q, next);
    return out;
  }
  /* out is the newest linked entry. acquire: the producer's link of out happened before */
  if (IQ_POP_CHECKS_GAP && IQ_LOAD(q->in, IQ_ACQ) != out) return 0; /* a push is half done */
  /* Push the stub behind out, so that out gets a successor and can be handed over. acq_rel:
   * a parker's check that sees the stub in `in` also sees our `out` (release); the previous
   * node is ours to link (acquire). */
  IQ_LINK_STORE(&q->stub, 0, IQ_RLX); /* relaxed: the exchange publishes it */
  uintptr_t prev = IQ_XCHG(q->in, stub, IQ_ACQ_REL);
  IQ_LINK_STORE(IQ_UNTAG(prev), stub, IQ_REL); /* release: as push_link */
  next = IQ_LINK_LOAD(IQ_UNTAG(out), IQ_ACQ);
  if (!next) return 0; /* a producer came between: its link will give out a successor */
  IQ_FN(set_out)(q, next);
  return out;
}

/* A parker's look (the load side of the wake check): is anything queued, linked or not?
 * seq_cst: after its announcement (park_impl.h). acquire on `out`: see set_out. */
static inline bool IQ_FN(visible)(IQ_QUEUE *q) {
  const uintptr_t stub = (uintptr_t)&q->stub;
  if (IQ_LOAD(q->in, IQ_SC) != stub) return true;
  return IQ_VISIBLE_OUT && IQ_LOAD(q->out, IQ_ACQ) != stub;
}

/* True when no producer is between its exchange and its link (holding the try-lock, with no
 * new pushes coming: destroy, once the workers have stopped). Walks the queue: O(length). */
static inline bool IQ_FN(quiescent)(IQ_QUEUE *q) {
  uintptr_t in = IQ_LOAD(q->in, IQ_ACQ); /* acquire: the last producer's exchange */
  uintptr_t e = IQ_LOAD(q->out, IQ_RLX);  /* relaxed: we are the consumer */
  while (e != in) {
    e = IQ_LINK_LOAD(IQ_UNTAG(e), IQ_ACQ); /* acquire: each producer's last touch */
    if (!e) return false;
  }
  return true;
}
