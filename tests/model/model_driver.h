/* The relacy models' driver, shared by deque_model.cpp and frame_model.cpp: included inside
 * each one's anonymous namespace, after <relacy/relacy.hpp>. */
#ifndef WEFT_MODEL_DRIVER_H
#define WEFT_MODEL_DRIVER_H

/* ---- Driver ----------------------------------------------------------------------------- */
/* Every variant is searched twice:
 *   random:  relacy's random scheduler, seeded by the iteration number (same schedules every
 *            run), for a fixed number of iterations;
 *   bounded: relacy's context-bound scheduler, which enumerates EVERY execution with at most
 *            `bound` preemptions (and every value a load may read) and stops when done.
 * A correct variant must pass both; a planted bug must be caught by both. */

struct search {
  const char *name;
  rl::scheduler_type_e type;
  unsigned long long iterations; /* random only */
  unsigned bound;                /* bounded only */
};

struct outcome {
  bool failed;
  std::string what; /* relacy's description of the failure */
  std::string log;  /* relacy's full report with the failing execution */
  double seconds;
  unsigned long long iterations;
};

template <class Test>
outcome run_model(const search &s) {
  /* relacy replaces the global operator new/delete and serves them from its own heap while a
   * model runs: whatever it writes to must allocate with its raw allocator. */
  rl::ostringstream out;
  rl::test_params p;
  p.search_type = s.type;
  p.iteration_count = s.iterations;
  p.context_bound = s.bound;
  p.output_stream = &out;
  p.progress_stream = &out;
  auto t0 = std::chrono::steady_clock::now();
  rl::simulate<Test>(p);
  auto t1 = std::chrono::steady_clock::now();
  outcome o;
  o.failed = p.test_result != rl::test_result_success;
  o.log = out.str().c_str();
  o.what = rl::test_result_str(p.test_result);
  if (o.failed) { /* the report's second line: the result with the failed assertion */
    size_t a = o.log.find('\n'), b = a == std::string::npos ? a : o.log.find('\n', a + 1);
    if (b != std::string::npos) o.what = o.log.substr(a + 1, b - a - 1);
  }
  o.seconds = std::chrono::duration<double>(t1 - t0).count();
  o.iterations = (unsigned long long)p.stop_iteration;
  return o;
}

int passed = 0, failed = 0;
bool verbose = false;
search searches[2] = {{"random", rl::sched_random, 200000, 0}, {"bounded", rl::sched_bound, 0, 3}};

/* The models' command line: -v, --random ITERATIONS (else default_iterations), --bound
 * PREEMPTIONS. False, after a usage line, for anything else. */
bool parse_args(int argc, char **argv, unsigned long long default_iterations) {
  bool random_given = false;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "-v")) {
      verbose = true;
    } else if (!std::strcmp(argv[i], "--random") && i + 1 < argc) {
      searches[0].iterations = std::strtoull(argv[++i], nullptr, 10);
      random_given = true;
    } else if (!std::strcmp(argv[i], "--bound") && i + 1 < argc) {
      searches[1].bound = (unsigned)std::strtoul(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [-v] [--random ITERATIONS] [--bound PREEMPTIONS]\n", argv[0]);
      return false;
    }
  }
  if (!random_given) searches[0].iterations = default_iterations;
  return true;
}

/* bounded_only: a planted bug whose window the random search does not meet in millions of
 * iterations (measured: frame_model's ABA, 3·10^6) is required of the bounded search alone,
 * which enumerates every execution within its preemption bound anyway. */
/* random_only: the converse, for a planted reordering that the bound the model can afford
 * does not reach (reclaim_model's enter-release: bound 1 misses it, bound 2 takes minutes). */
template <class Test>
void check(const char *name, bool expect_bug, bool bounded_only = false, bool random_only = false) {
  std::string detail, logs;
  bool ok = true;
  for (const search &s : searches) {
    if (bounded_only && s.type == rl::sched_random) continue;
    if (random_only && s.type == rl::sched_bound) continue;
    outcome o = run_model<Test>(s);
    char buf[512];
    if (o.failed)
      std::snprintf(buf, sizeof buf, "%s%s: %s at iteration %llu, %.2f s", detail.empty() ? "" : "; ",
                    s.name, o.what.c_str(), o.iterations, o.seconds);
    else
      std::snprintf(buf, sizeof buf, "%s%s: %llu iterations, %.2f s", detail.empty() ? "" : "; ",
                    s.name, o.iterations, o.seconds);
    detail += buf;
    if (o.failed != expect_bug) ok = false;
    if (o.failed && (verbose || !expect_bug)) logs += o.log;
  }
  const char *verdict = expect_bug ? (ok ? "bug caught (as required)" : "BUG NOT CAUGHT")
                                   : (ok ? "passed" : "FAILED");
  std::printf("model %s: %s (%s)\n", name, verdict, detail.c_str());
  if (!logs.empty()) std::printf("%s\n", logs.c_str());
  std::fflush(stdout);
  (ok ? passed : failed)++;
}

#endif /* WEFT_MODEL_DRIVER_H */
