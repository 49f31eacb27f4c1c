/* The relacy instance of lib/wake_impl.h's macros (a task's park state), shared by the models
 * that include wake_impl.h: deque_model.cpp (the park state) and next_model.cpp (the direct
 * commit). */
#define WK_STATE rl::atomic<uint32_t>
#define WK_LOAD(obj, mo) ((obj)(RL_INFO).load(mo))
#define WK_STORE(obj, v, mo) ((obj)(RL_INFO).store((v), (mo)))
#define WK_CAS(obj, expected, desired, mos, mof) \
  ((obj)(RL_INFO).compare_exchange_weak((expected), (desired), (mos), (mof)))
#define WK_RLX rl::mo_relaxed
#define WK_ACQ rl::mo_acquire
#define WK_REL rl::mo_release
#define WK_ACQ_REL rl::mo_acq_rel
#define WK_FN(name) name
