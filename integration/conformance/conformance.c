/*
 * linattn_conformance — checks a liblinattn build (or any library implementing abi/linattn.h) through its one
 * exported symbol. See README.md next to this file.
 *
 *   linattn_conformance <path-to-liblinattn.so> [--backend cpu|cuda|auto] [--scenario NAME]... [--list] [--verbose]
 *
 * Prints one line per scenario (PASS, FAIL or SKIP with details) and ends with "N passed, M failed, K skipped".
 * Exit status: 0 when nothing failed, 1 when a scenario failed, 2 on a usage or loading error.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integration/common/devmem.h"
#include "integration/conformance/scenarios.h"

typedef struct scenario {
    const char *name;
    scenario_fn run;
} scenario;

static const scenario scenarios[] = {
    {"version", scenario_version},
    {"capabilities", scenario_capabilities},
    {"qwen3next_prefill_decode", scenario_qwen3next_prefill_decode},
    {"chunked_prefill", scenario_chunked_prefill},
    {"prefill_then_decode_equals_decode", scenario_prefill_then_decode_equals_decode},
    {"checkpoint_restore", scenario_checkpoint_restore},
    {"bad_input", scenario_bad_input},
    {"two_threads", scenario_two_threads},
    {"cuda_graph", scenario_cuda_graph},
    {"prefix_cache_hit", scenario_prefix_cache_hit},
    {"eviction_under_pressure", scenario_eviction_under_pressure},
};
enum { NUM_SCENARIOS = sizeof scenarios / sizeof scenarios[0] };

typedef struct options {
    const char *library;
    linattn_backend_kind backend;
    int selected[NUM_SCENARIOS];
    int any_selected;
    int list;
} options;

static void usage(FILE *to)
{
    fprintf(to, "usage: linattn_conformance <path-to-liblinattn.so> [--backend cpu|cuda|auto] [--scenario NAME]...\n"
                "                           [--list] [--verbose]\n");
}

static int find_scenario(const char *name)
{
    for (int i = 0; i < NUM_SCENARIOS; ++i)
        if (strcmp(scenarios[i].name, name) == 0) return i;
    return -1;
}

static int parse_backend(const char *text, linattn_backend_kind *backend)
{
    if (strcmp(text, "cpu") == 0) *backend = LINATTN_BACKEND_CPU;
    else if (strcmp(text, "cuda") == 0) *backend = LINATTN_BACKEND_CUDA;
    else if (strcmp(text, "auto") == 0) *backend = LINATTN_BACKEND_AUTO;
    else return 0;
    return 1;
}

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->backend = LINATTN_BACKEND_AUTO;
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (strcmp(arg, "--list") == 0) {
            o->list = 1;
        } else if (strcmp(arg, "--verbose") == 0) {
            harness_verbose = 1;
        } else if (strcmp(arg, "--backend") == 0 && i + 1 < argc) {
            if (!parse_backend(argv[++i], &o->backend)) return 0;
        } else if (strcmp(arg, "--scenario") == 0 && i + 1 < argc) {
            int index = find_scenario(argv[++i]);
            if (index < 0) {
                fprintf(stderr, "unknown scenario '%s' (--list shows them)\n", argv[i]);
                return 0;
            }
            o->selected[index] = o->any_selected = 1;
        } else if (arg[0] != '-' && !o->library) {
            o->library = arg;
        } else {
            return 0;
        }
    }
    return o->list || o->library != NULL;
}

static int load_library(const char *path, harness *h)
{
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
        fprintf(stderr, "cannot load %s: %s\n", path, dlerror());
        return 0;
    }
    void *symbol = dlsym(library, "linattn_get_api");
    if (!symbol) {
        fprintf(stderr, "%s has no linattn_get_api\n", path);
        return 0;
    }
    memcpy(&h->get_api, &symbol, sizeof h->get_api); /* void * to function pointer, ISO C way */
    linattn_status status = h->get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &h->api);
    if (status != LINATTN_OK || !h->api) {
        fprintf(stderr, "linattn_get_api(%d, %d) returned %d\n", LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR,
                (int)status);
        return 0;
    }
    return 1;
}

/* Which backend a context of the requested kind lands on decides what "device" memory is. */
static int probe_backend(harness *h)
{
    linattn_context_desc desc = {sizeof desc, h->requested, 0};
    linattn_context *context = NULL;
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    linattn_status status = h->api->context_create(&desc, &context);
    if (status == LINATTN_OK) status = h->api->query_capabilities(context, &caps);
    if (status != LINATTN_OK) {
        printf("FAIL setup: a context for backend %d could not be made: status %d (%s)\n", h->requested,
               (int)status, h->api->last_error_message());
        if (context) h->api->context_destroy(context);
        return 0;
    }
    h->backend = caps.backend;
    h->api->context_destroy(context);
    char why[256] = "";
    if (devmem_setup(h->backend, why, sizeof why) != 0) {
        printf("FAIL setup: %s\n", why);
        return 0;
    }
    return 1;
}

static scenario_outcome run_scenario(const harness *h, const scenario *s)
{
    check_log log;
    memset(&log, 0, sizeof log);
    double start = seconds_now();
    scenario_outcome outcome = s->run(h, &log);
    if (log.failed) outcome = OUTCOME_FAIL;
    double seconds = seconds_now() - start;
    if (outcome == OUTCOME_PASS)
        printf("PASS %s (%.2f s): %s\n", s->name, seconds, log.notes);
    else if (outcome == OUTCOME_SKIP)
        printf("SKIP %s: %s\n", s->name, log.notes);
    else if (log.failed > 1)
        printf("FAIL %s (%.2f s): %s (and %d more failed checks; --verbose lists them) [%s]\n", s->name, seconds,
               log.failure, log.failed - 1, log.notes);
    else
        printf("FAIL %s (%.2f s): %s [%s]\n", s->name, seconds, log.failure, log.notes);
    fflush(stdout);
    return outcome;
}

int main(int argc, char **argv)
{
    options o;
    if (!parse_options(argc, argv, &o)) {
        usage(stderr);
        return 2;
    }
    if (o.list) {
        for (int i = 0; i < NUM_SCENARIOS; ++i) printf("%s\n", scenarios[i].name);
        return 0;
    }
    harness h;
    memset(&h, 0, sizeof h);
    h.requested = o.backend;
    if (!load_library(o.library, &h)) return 2;
    if (!probe_backend(&h)) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < NUM_SCENARIOS; ++i)
        if (!o.any_selected || o.selected[i]) counts[run_scenario(&h, &scenarios[i])]++;
    if (counts[OUTCOME_SKIP])
        printf("%d passed, %d failed, %d skipped\n", counts[OUTCOME_PASS], counts[OUTCOME_FAIL], counts[OUTCOME_SKIP]);
    else
        printf("%d passed, %d failed\n", counts[OUTCOME_PASS], counts[OUTCOME_FAIL]);
    return counts[OUTCOME_FAIL] ? 1 : 0;
}
