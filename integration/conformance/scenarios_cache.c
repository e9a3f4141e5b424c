/*
 * scenarios_cache.c — the prefix cache as an engine drives it: a hit restores a checkpoint and must give what a
 * recomputation gives; many requests under a tight checkpoint budget must run without errors, keep the statistics
 * consistent and give every slot back.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "integration/conformance/scenarios.h"

enum { BLOCK_SIZE = 16 };
static const uint64_t kv_block_bytes[1] = {BLOCK_SIZE * 1024};

static int has_prefix_cache(const linattn_api *api)
{
    return api->struct_size >= offsetof(linattn_api, cache_get_stats) + sizeof api->cache_get_stats;
}

static linattn_prefix_cache *create_cache(fixture *f, int32_t kv_blocks, int32_t max_checkpoints, check_log *log)
{
    linattn_prefix_cache_desc desc;
    memset(&desc, 0, sizeof desc); /* all-zero policy: the library's default */
    desc.struct_size = sizeof desc;
    desc.block_size = BLOCK_SIZE;
    desc.num_attn_groups = 1;
    desc.kv_block_bytes = kv_block_bytes;
    desc.num_kv_blocks = kv_blocks;
    desc.max_checkpoints = max_checkpoints;
    linattn_prefix_cache *cache = NULL;
    return CHECK_OK(log, f->api, f->api->prefix_cache_create(f->pool, &desc, &cache)) ? cache : NULL;
}

static linattn_cache_request_desc request_of(uint64_t id, const int32_t *tokens, int64_t length)
{
    linattn_cache_request_desc desc = {sizeof desc, sizeof(linattn_cache_extra_key), id, tokens, length, NULL, 0, 0,
                                       -1};
    return desc;
}

static int schedule(fixture *f, linattn_prefix_cache *cache, uint64_t id, int64_t n, linattn_cache_step *step,
                    check_log *log)
{
    memset(step, 0, sizeof *step);
    step->struct_size = sizeof *step;
    return CHECK_OK(log, f->api, f->api->cache_request_schedule(cache, id, n, step)) &&
           CHECK(log, step->num_tokens == n, "step of %d tokens, asked for %lld", step->num_tokens, (long long)n);
}

static linattn_cache_stats stats_of(fixture *f, linattn_prefix_cache *cache, check_log *log)
{
    linattn_cache_stats stats;
    memset(&stats, 0, sizeof stats);
    stats.struct_size = sizeof stats;
    CHECK_OK(log, f->api, f->api->cache_get_stats(cache, &stats));
    return stats;
}

/* ---- prefix_cache_hit ---- */

/* Schedule n tokens of sequence `seq` through the cache, run them with the checkpoints the step asks for, commit. */
static int cached_step(fixture *f, linattn_prefix_cache *cache, uint64_t id, int seq, int64_t n, check_log *log)
{
    linattn_cache_step s;
    if (!schedule(f, cache, id, n, &s, log) ||
        !CHECK(log, s.num_checkpoints <= MAX_STEP_CHECKPOINTS, "%d checkpoints in one step", s.num_checkpoints))
        return 0;
    step_entry entry = {seq, s.start_position, s.num_tokens, f->seqs[seq].slot, s.init, s.source_slot};
    step_checkpoint checkpoints[MAX_STEP_CHECKPOINTS];
    for (int i = 0; i < s.num_checkpoints; ++i)
        checkpoints[i] = (step_checkpoint){0, s.checkpoints[i].position, s.checkpoints[i].slot};
    return run_step(f, &entry, 1, checkpoints, s.num_checkpoints, 0, log) &&
           CHECK_OK(log, f->api, f->api->cache_request_commit(cache, id));
}

/* Rows [0, rows) of every layer's inputs of `to` become those of `from`. */
static void copy_rows(fixture *f, int to, int from, int64_t rows)
{
    for (int l = 0; l < f->num_layers; ++l) {
        size_t channels = (size_t)f->layers[l].channels, heads = (size_t)f->layers[l].desc.num_v_heads;
        memcpy(f->seqs[to].qkv[l], f->seqs[from].qkv[l], (size_t)rows * channels * sizeof(uint16_t));
        memcpy(f->seqs[to].a[l], f->seqs[from].a[l], (size_t)rows * heads * sizeof(uint16_t));
        memcpy(f->seqs[to].b[l], f->seqs[from].b[l], (size_t)rows * heads * sizeof(uint16_t));
    }
}

static void run_hit(fixture *f, linattn_prefix_cache *cache, check_log *log)
{
    enum { FIRST = 200, FIRST_CHUNK = 120, SECOND = 257 };
    int32_t tokens[SECOND];
    for (int i = 0; i < SECOND; ++i) tokens[i] = 1000 + (i * 7919) % 50000;
    int first = fixture_add_seq(f, FIRST, 41, log), second = fixture_add_seq(f, SECOND, 42, log);
    int fresh = fixture_add_seq(f, SECOND, 43, log);
    if (first < 0 || second < 0 || fresh < 0) return;
    copy_rows(f, second, first, FIRST);
    copy_rows(f, fresh, second, SECOND);

    /* Turn 1, prefilled in two chunks; then turn 2 extends the whole first prompt. */
    linattn_cache_request_desc desc = request_of(1, tokens, FIRST);
    if (!CHECK_OK(log, f->api, f->api->cache_request_add(cache, &desc, NULL)) ||
        !cached_step(f, cache, 1, first, FIRST_CHUNK, log) || !cached_step(f, cache, 1, first, FIRST - FIRST_CHUNK, log) ||
        !CHECK_OK(log, f->api, f->api->cache_request_free(cache, 1)))
        return;
    desc = request_of(2, tokens, SECOND);
    linattn_cache_hit hit = {sizeof hit, 0, 0, 0};
    if (!CHECK_OK(log, f->api, f->api->cache_request_add(cache, &desc, &hit))) return;
    check_note(log, "hit %lld of %d tokens (matched %lld)", (long long)hit.hit_tokens, SECOND,
               (long long)hit.matched_tokens);
    if (!CHECK(log, hit.hit_tokens > 0 && hit.hit_tokens <= FIRST && hit.checkpoint_slot >= 0,
               "no usable hit after a %d-token prompt that the second one extends", FIRST))
        return;
    linattn_cache_step peek;
    if (!schedule(f, cache, 2, SECOND - hit.hit_tokens, &peek, log)) return;
    if (!CHECK(log, peek.init == LINATTN_INIT_FROM_SLOT && peek.source_slot == hit.checkpoint_slot &&
                        peek.start_position == hit.hit_tokens,
               "the step after a hit is init %d from slot %d at %lld", peek.init, peek.source_slot,
               (long long)peek.start_position))
        return;
    step_entry entry = {second, peek.start_position, peek.num_tokens, f->seqs[second].slot, peek.init, peek.source_slot};
    step_entry full = {fresh, 0, SECOND, f->seqs[fresh].slot, LINATTN_INIT_ZERO, 0};
    if (!run_step(f, &entry, 1, NULL, 0, 0, log) || !CHECK_OK(log, f->api, f->api->cache_request_commit(cache, 2)) ||
        !run_step(f, &full, 1, NULL, 0, 0, log))
        return;

    double worst_out = 0.0, worst_state = 0.0;
    for (int l = 0; l < f->num_layers; ++l) {
        size_t width = output_row_elements(&f->layers[l]), skip = (size_t)hit.hit_tokens * width;
        double measure = 0.0;
        agree_outputs(f, log, "outputs after the hit vs recomputation", f->seqs[second].out[l] + skip,
                      f->seqs[fresh].out[l] + skip, (size_t)(SECOND - hit.hit_tokens) * width, &measure);
        if (measure > worst_out) worst_out = measure;
        uint8_t *restored = fixture_read_state(f, l, f->seqs[second].slot, log);
        uint8_t *recomputed = fixture_read_state(f, l, f->seqs[fresh].slot, log);
        if (restored && recomputed)
            agree_states(f, log, "final state after the hit vs recomputation", l, restored, recomputed, &measure);
        if (measure > worst_state) worst_state = measure;
        free(restored);
        free(recomputed);
    }
    check_note(log, "%s outputs %.3g, state %.3g", f->exact ? "max abs diff" : "rel err", worst_out, worst_state);
    linattn_cache_stats stats = stats_of(f, cache, log);
    CHECK(log, stats.hits == 1 && stats.checkpoints_restored == 1 && stats.hit_tokens == (uint64_t)hit.hit_tokens,
          "stats: %llu hits, %llu restored, %llu hit tokens", (unsigned long long)stats.hits,
          (unsigned long long)stats.checkpoints_restored, (unsigned long long)stats.hit_tokens);
}

scenario_outcome scenario_prefix_cache_hit(const harness *h, check_log *log)
{
    if (!has_prefix_cache(h->api)) {
        check_note(log, "the library's table has no prefix cache entries");
        return OUTCOME_SKIP;
    }
    fixture f;
    if (fixture_create(&f, h, MODEL_TINY, 9, 8, log)) {
        linattn_prefix_cache *cache = create_cache(&f, 256, 4, log);
        if (cache) run_hit(&f, cache, log);
    }
    fixture_destroy(&f); /* destroys the cache with the context */
    return log->failed ? OUTCOME_FAIL : OUTCOME_PASS;
}

/* ---- eviction_under_pressure ---- */

enum { PRESSURE_REQUESTS = 40, PRESSURE_RUNNING = 4, PRESSURE_CHECKPOINTS = 3, PRESSURE_CHUNK = 96 };

typedef struct pressure_request {
    int32_t tokens[400];
    int64_t length, computed;
    int32_t slot, decoded;
} pressure_request;

/* Prompts share one of four prefixes (64 to 256 tokens) and go on with tokens of their own. */
static void make_prompt(pressure_request *r, int index)
{
    int shared = 64 * (1 + index % 4), own = 20 + (index * 37) % 100;
    for (int i = 0; i < shared; ++i) r->tokens[i] = 1 + (index % 4) * 100000 + i;
    for (int i = 0; i < own; ++i) r->tokens[shared + i] = 500000 + index * 1000 + i;
    r->length = shared + own;
    r->computed = r->decoded = 0;
}

/* What must hold between steps: the cache's checkpoints and the running sequences are exactly the pool's used
 * slots, within their budgets. */
static int consistent(fixture *f, linattn_prefix_cache *cache, int running, check_log *log)
{
    linattn_cache_stats s = stats_of(f, cache, log);
    linattn_pool_info pool = {sizeof pool, 0, 0, 0};
    return CHECK_OK(log, f->api, f->api->pool_info(f->pool, &pool)) &&
           CHECK(log, s.checkpoints_in_use <= s.max_checkpoints && s.kv_blocks_free <= s.kv_blocks_total &&
                          s.hit_tokens <= s.lookup_tokens && s.hits <= s.lookups &&
                          pool.slots_in_use == running + s.checkpoints_in_use,
                 "stats: %lld of %lld checkpoints, %d running, %d pool slots in use, %lld of %lld KV blocks free",
                 (long long)s.checkpoints_in_use, (long long)s.max_checkpoints, running, pool.slots_in_use,
                 (long long)s.kv_blocks_free, (long long)s.kv_blocks_total);
}

/* One engine step over the running requests: a prefill chunk or one decode token each, validated as a batch. */
static int pressure_step(fixture *f, linattn_prefix_cache *cache, pressure_request *reqs, const int *running,
                         int num_running, check_log *log)
{
    linattn_seq_desc seqs[PRESSURE_RUNNING];
    linattn_checkpoint_desc checkpoints[MAX_STEP_CHECKPOINTS];
    int64_t tokens = 0;
    int num_checkpoints = 0;
    for (int s = 0; s < num_running; ++s) {
        pressure_request *r = &reqs[running[s]];
        int64_t left = r->length - r->computed, n = left < PRESSURE_CHUNK ? left : PRESSURE_CHUNK;
        linattn_cache_step step;
        if (!schedule(f, cache, (uint64_t)running[s], n, &step, log) ||
            !CHECK(log, num_checkpoints + step.num_checkpoints <= MAX_STEP_CHECKPOINTS, "too many checkpoints"))
            return 0;
        for (int i = 0; i < step.num_checkpoints; ++i)
            checkpoints[num_checkpoints++] = (linattn_checkpoint_desc){step.checkpoints[i].position, s,
                                                                       step.checkpoints[i].slot};
        seqs[s] = (linattn_seq_desc){tokens, step.start_position, step.num_tokens, r->slot, step.init,
                                     step.source_slot};
        tokens += n;
    }
    linattn_batch_desc batch = {sizeof batch, sizeof(linattn_seq_desc), sizeof(linattn_checkpoint_desc),
                                num_running, seqs, tokens, num_checkpoints, checkpoints};
    if (!CHECK_OK(log, f->api, f->api->plan_set_batch(f->plan, &batch, f->stream))) return 0;
    for (int s = 0; s < num_running; ++s) {
        pressure_request *r = &reqs[running[s]];
        if (!CHECK_OK(log, f->api, f->api->cache_request_commit(cache, (uint64_t)running[s]))) return 0;
        r->computed += seqs[s].num_tokens;
        if (r->computed == r->length && r->decoded < 2) { /* two generated tokens per request */
            int32_t token = 900000 + running[s] * 10 + r->decoded++;
            r->tokens[r->length++] = token;
            if (!CHECK_OK(log, f->api, f->api->cache_request_append(cache, (uint64_t)running[s], &token, 1)))
                return 0;
        }
    }
    return 1;
}

static void run_pressure(fixture *f, linattn_prefix_cache *cache, pressure_request *reqs, check_log *log)
{
    int running[PRESSURE_RUNNING], num_running = 0, next = 0, steps = 0;
    while ((next < PRESSURE_REQUESTS || num_running > 0) && !log->failed) {
        while (num_running < PRESSURE_RUNNING && next < PRESSURE_REQUESTS) {
            pressure_request *r = &reqs[next];
            make_prompt(r, next);
            linattn_cache_request_desc desc = request_of((uint64_t)next, r->tokens, r->length);
            linattn_cache_hit hit = {sizeof hit, 0, 0, 0};
            if (!CHECK_OK(log, f->api, f->api->cache_request_add(cache, &desc, &hit)) ||
                !CHECK(log, hit.hit_tokens <= hit.matched_tokens && hit.hit_tokens < r->length &&
                                (hit.hit_tokens > 0) == (hit.checkpoint_slot >= 0),
                       "request %d: hit %lld, matched %lld, slot %d", next, (long long)hit.hit_tokens,
                       (long long)hit.matched_tokens, hit.checkpoint_slot) ||
                (r->slot = fixture_alloc_slot(f, log)) < 0)
                return;
            r->computed = hit.hit_tokens;
            running[num_running++] = next++;
        }
        if (!pressure_step(f, cache, reqs, running, num_running, log)) return;
        steps++;
        for (int s = 0; s < num_running; ++s) { /* finished: free the request and its slot */
            pressure_request *r = &reqs[running[s]];
            if (r->computed < r->length || r->decoded < 2) continue;
            if (!CHECK_OK(log, f->api, f->api->cache_request_free(cache, (uint64_t)running[s])) ||
                !CHECK_OK(log, f->api, f->api->slot_free(f->pool, r->slot)))
                return;
            running[s--] = running[--num_running];
        }
        if (!consistent(f, cache, num_running, log)) return;
    }
    linattn_cache_stats s = stats_of(f, cache, log);
    check_note(log, "%d requests in %d steps: %llu hits, %llu checkpoints written, %llu evicted, %llu skipped", next,
               steps, (unsigned long long)s.hits, (unsigned long long)s.checkpoints_written,
               (unsigned long long)s.checkpoints_evicted, (unsigned long long)s.checkpoints_skipped);
    CHECK(log, s.live_requests == 0 && s.hits > 0 && s.checkpoints_evicted > 0,
          "%lld live requests, %llu hits, %llu evictions: the scenario did not put the cache under pressure",
          (long long)s.live_requests, (unsigned long long)s.hits, (unsigned long long)s.checkpoints_evicted);
    CHECK_OK(log, f->api, f->api->prefix_cache_destroy(cache));
    linattn_pool_info pool = {sizeof pool, 0, 0, 0};
    if (CHECK_OK(log, f->api, f->api->pool_info(f->pool, &pool)))
        CHECK(log, pool.slots_in_use == 0, "%d slots still in use after every request and the cache were freed",
              pool.slots_in_use);
}

scenario_outcome scenario_eviction_under_pressure(const harness *h, check_log *log)
{
    if (!has_prefix_cache(h->api)) {
        check_note(log, "the library's table has no prefix cache entries");
        return OUTCOME_SKIP;
    }
    fixture f;
    memset(&f, 0, sizeof f);
    pressure_request *reqs = calloc(PRESSURE_REQUESTS, sizeof *reqs);
    if (CHECK(log, reqs != NULL, "out of host memory") &&
        fixture_create(&f, h, MODEL_TINY, 10, PRESSURE_RUNNING + PRESSURE_CHECKPOINTS, log)) {
        linattn_prefix_cache *cache = create_cache(&f, 128, PRESSURE_CHECKPOINTS, log);
        if (cache) run_pressure(&f, cache, reqs, log);
    }
    fixture_destroy(&f);
    free(reqs);
    return log->failed ? OUTCOME_FAIL : OUTCOME_PASS;
}
