/* scenarios.h — the conformance scenarios; each reports through its check_log (notes: measurements or why it
 * skipped). */
#ifndef LINATTN_CONFORMANCE_SCENARIOS_H
#define LINATTN_CONFORMANCE_SCENARIOS_H

#include "integration/conformance/harness.h"

typedef enum scenario_outcome { OUTCOME_PASS, OUTCOME_FAIL, OUTCOME_SKIP } scenario_outcome;
typedef scenario_outcome (*scenario_fn)(const harness *h, check_log *log);

/* scenarios_api.c */
scenario_outcome scenario_version(const harness *h, check_log *log);
scenario_outcome scenario_capabilities(const harness *h, check_log *log);
scenario_outcome scenario_bad_input(const harness *h, check_log *log);

/* scenarios_numeric.c */
scenario_outcome scenario_qwen3next_prefill_decode(const harness *h, check_log *log);
scenario_outcome scenario_chunked_prefill(const harness *h, check_log *log);
scenario_outcome scenario_prefill_then_decode_equals_decode(const harness *h, check_log *log);
scenario_outcome scenario_checkpoint_restore(const harness *h, check_log *log);
scenario_outcome scenario_two_threads(const harness *h, check_log *log);
scenario_outcome scenario_cuda_graph(const harness *h, check_log *log);

/* scenarios_cache.c */
scenario_outcome scenario_prefix_cache_hit(const harness *h, check_log *log);
scenario_outcome scenario_eviction_under_pressure(const harness *h, check_log *log);

#endif
