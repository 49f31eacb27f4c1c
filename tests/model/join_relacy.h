/* The relacy instance of lib/join_impl.h's macros (the completion word and join counter), and
 * the model types they name, shared by the models that include join_impl.h: deque_model.cpp
 * (the word and the join) and abandon_model.cpp (destroy's hold on a word). Included inside
 * each one's anonymous namespace, after <relacy/relacy.hpp>. */
struct model_node;
struct model_join {
  rl::atomic<long> pending;
  rl::atomic<int> woken; /* the thread waiter's futex word */
};
struct model_node {
  rl::var<model_node *> next; /* plain fields, on the waiter's stack in the library */
  rl::var<model_join *> join;
};

/* A blocked thread's wake word, and the stack frame it lives in: FUTEX_WAKE reads the frame
 * (the kernel touches the word's page), the waiter's return ends it (a write). A wake after the
 * return is a data race on `frame`. */
struct model_signal {
  rl::atomic<unsigned> word;
  rl::var<int> frame;
};

#define JN_WORD rl::atomic<uintptr_t>
#define JN_COUNT rl::atomic<long>
#define JN_NODE model_node
#define JN_NEXT(node) ((node)->next(RL_INFO))
#define JN_RLX rl::mo_relaxed
#define JN_ACQ rl::mo_acquire
#define JN_REL rl::mo_release
#define JN_ACQ_REL rl::mo_acq_rel
#define JN_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define JN_FETCH_AND(obj, v, mo) ((obj)(RL_INFO).fetch_and((v), (mo)))
#define JN_YIELD() rl::yield(1, RL_INFO)
#define JN_SIGNAL model_signal
#define JN_SIGNAL_LOAD(obj, mo) ((obj).word(RL_INFO).load(mo))
#define JN_SIGNAL_STORE(obj, v, mo) ((obj).word(RL_INFO).store((v), (mo)))
#define JN_FUTEX_WAKE(sig) ((void)(int)(sig)->frame(RL_INFO))
#define JN_FETCH_OR(obj, v, mo) ((obj)(RL_INFO).fetch_or((v), (mo)))
#define JN_FETCH_SUB(obj, v, mo) ((obj)(RL_INFO).fetch_sub((v), (mo)))
#define JN_CAS_WEAK(obj, expected, desired, mos, mof) \
  ((obj)(RL_INFO).compare_exchange_weak((expected), (desired), (mos), (mof)))
#define JN_FN(name) name
