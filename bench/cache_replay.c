/*
 * cache_replay — replays two synthetic serving traces (fixed seed) through the prefix cache manager under two
 * checkpoint policies, on a simulated engine (continuous batching, chunked prefill, one decode token per step):
 *
 *   ours      KV blocks of 64 tokens (or --block), checkpoints on a 64-token match unit at prompt ends, turn ends
 *             and shared-prefix branch points, prefill chunks of any length.
 *   baseline  vLLM "align" mode: the attention block raised by the page-size rule until one block's KV is at least
 *             one layer's state page (1056 tokens for Qwen3-Next), prefill chunks trimmed to block multiples, and a
 *             checkpoint only where a step ends on a block boundary (a chunk end, or a block filled by decode).
 *
 * Both get the same KV bytes and the same checkpoint bytes. Reported per trace and policy: requests that hit,
 * prefill tokens saved, checkpoints written and held. Then the manager's own speed: the calls the replay made are
 * recorded and replayed alone on a fresh manager, timed on one core.
 *
 * Traces
 *   chat    multi-turn conversations: each starts with one of a few shared system prompts; every turn's prompt is
 *           the whole conversation so far plus a new user message; the next turn arrives after a think time.
 *   shared  many independent requests, each one of 8 shared system prompts (200 .. 6000 tokens, half of them
 *           shorter than the baseline's block) plus its own question.
 *
 * Usage: cache_replay [--ckpt-gib G] [--kv-gib G] [--block B] [--seed S] [--quick]
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/block_manager.h"

/* ---- the model whose memory the budgets are in: Qwen3-Next-80B-A3B (see NOTES §1) ------------------------------ */

#define LINEAR_LAYERS 36
#define STATE_BYTES_PER_LAYER (32ull * 128 * 128 * 4 + (2ull * 16 * 128 + 32 * 128) * 3 * 2) /* fp32 S + conv */
#define ATTENTION_LAYERS 12
#define KV_BYTES_PER_TOKEN_PER_LAYER (2ull * 256 * 2 * 2) /* 2 KV heads x 256 x (K,V) x bf16 */
#define GIB (1024.0 * 1024.0 * 1024.0)

/* vLLM's page-size rule: the attention block grows (in steps of 16) until a block's KV for one layer is at least
 * one layer's state page. */
static int32_t page_rule_block_size(void)
{
    uint64_t tokens = (STATE_BYTES_PER_LAYER + KV_BYTES_PER_TOKEN_PER_LAYER - 1) / KV_BYTES_PER_TOKEN_PER_LAYER;
    return (int32_t)((tokens + 15) / 16 * 16);
}

/* ---- deterministic random numbers -------------------------------------------------------------------------------- */

static uint64_t rng;
static uint64_t next_random(void)
{
    rng += 0x9e3779b97f4a7c15ull;
    uint64_t z = rng;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static int64_t uniform(int64_t lo, int64_t hi) { return lo + (int64_t)(next_random() % (uint64_t)(hi - lo + 1)); }
static int32_t random_token(void) { return (int32_t)(next_random() % 150000); }

/* ---- traces ------------------------------------------------------------------------------------------------------- */

typedef struct trace_request {
    int32_t *tokens;      /* prompt then the tokens it will generate */
    int64_t prompt;
    int64_t output;       /* tokens generated (the last one is sampled, never computed) */
    int64_t arrival;      /* step; for a later turn: steps after the previous turn ends */
    int32_t next_turn;    /* index of the conversation's next request, or -1 */
    int32_t first_turn;   /* arrives on its own (not after a previous turn) */
    int32_t group;        /* system prompt index, for per-prompt hit rates */
} trace_request;

typedef struct trace {
    const char *name;
    trace_request *requests;
    int32_t count;
    int64_t group_length[8];
    int32_t groups;
} trace;

static int32_t *random_tokens(int64_t n)
{
    int32_t *t = malloc((size_t)n * sizeof *t);
    for (int64_t i = 0; i < n; i++) t[i] = random_token();
    return t;
}

static trace make_chat_trace(int32_t conversations, uint64_t seed)
{
    rng = seed;
    static const int64_t system_lengths[4] = {180, 420, 750, 1300};
    int32_t *systems[4];
    for (int s = 0; s < 4; s++) systems[s] = random_tokens(system_lengths[s]);
    trace t = {"chat", NULL, 0, {0}, 4};
    memcpy(t.group_length, system_lengths, sizeof system_lengths);
    int32_t capacity = conversations * 12;
    t.requests = calloc((size_t)capacity, sizeof *t.requests);
    for (int32_t c = 0; c < conversations; c++) {
        int group = (int)uniform(0, 3);
        int turns = (int)uniform(2, 9);
        int64_t arrival = uniform(0, conversations * 3);
        const int32_t *history = systems[group];
        int64_t history_len = system_lengths[group];
        for (int k = 0; k < turns; k++) {
            trace_request *r = &t.requests[t.count];
            int64_t user = uniform(20, 400), output = uniform(40, 500);
            r->prompt = history_len + user;
            r->output = output;
            r->tokens = malloc((size_t)(r->prompt + output) * sizeof *r->tokens);
            memcpy(r->tokens, history, (size_t)history_len * sizeof *r->tokens);
            for (int64_t i = history_len; i < r->prompt + output; i++) r->tokens[i] = random_token();
            r->arrival = k == 0 ? arrival : uniform(5, 60);
            r->first_turn = k == 0;
            r->next_turn = k + 1 < turns ? t.count + 1 : -1;
            r->group = group;
            history = r->tokens;
            history_len = r->prompt + output;
            t.count++;
        }
    }
    for (int s = 0; s < 4; s++) free(systems[s]);
    return t;
}

static trace make_shared_trace(int32_t count, uint64_t seed)
{
    rng = seed;
    static const int64_t system_lengths[8] = {200, 450, 700, 950, 1500, 2500, 4000, 6000};
    int32_t *systems[8];
    for (int s = 0; s < 8; s++) systems[s] = random_tokens(system_lengths[s]);
    trace t = {"shared", calloc((size_t)count, sizeof(trace_request)), count, {0}, 8};
    memcpy(t.group_length, system_lengths, sizeof system_lengths);
    for (int32_t i = 0; i < count; i++) {
        trace_request *r = &t.requests[i];
        r->group = (int32_t)uniform(0, 7);
        int64_t question = uniform(30, 500);
        r->prompt = system_lengths[r->group] + question;
        r->output = uniform(20, 200);
        r->tokens = malloc((size_t)(r->prompt + r->output) * sizeof *r->tokens);
        memcpy(r->tokens, systems[r->group], (size_t)system_lengths[r->group] * sizeof *r->tokens);
        for (int64_t k = system_lengths[r->group]; k < r->prompt + r->output; k++) r->tokens[k] = random_token();
        r->arrival = i / 2;
        r->first_turn = 1;
        r->next_turn = -1;
    }
    for (int s = 0; s < 8; s++) free(systems[s]);
    return t;
}

/* ---- the manager calls a replay makes, kept for the timing run ---------------------------------------------------- */

enum { CALL_ADD, CALL_APPEND, CALL_SCHEDULE, CALL_COMMIT, CALL_FREE, CALL_KINDS };
static const char *call_names[CALL_KINDS] = {"add", "append", "schedule", "commit", "free"};

typedef struct call {
    uint8_t kind;
    uint64_t id;
    const int32_t *tokens;
    int64_t n;
} call;

typedef struct call_log {
    call *calls;
    int64_t count, capacity;
} call_log;

static void log_call(call_log *log, int kind, uint64_t id, const int32_t *tokens, int64_t n)
{
    if (!log) return;
    if (log->count == log->capacity) {
        log->capacity = log->capacity ? log->capacity * 2 : 1 << 16;
        log->calls = realloc(log->calls, (size_t)log->capacity * sizeof *log->calls);
    }
    log->calls[log->count++] = (call){(uint8_t)kind, id, tokens, n};
}

/* ---- policies and the simulated engine --------------------------------------------------------------------------- */

typedef struct policy_setup {
    const char *name;
    int32_t block_size;
    int32_t alignment;
    la_cache_policy policy;
    int trim_chunks_to_blocks;
} policy_setup;

typedef struct engine_limits {
    int32_t max_running;
    int64_t token_budget;
    uint64_t kv_bytes, checkpoint_bytes;
} engine_limits;

typedef struct result {
    int64_t requests, requests_hit, prompt_tokens, hit_tokens, steps, preemptions;
    int64_t group_requests[8], group_hits[8];
    la_cache_stats stats;
    int64_t peak_checkpoints;
} result;

typedef struct live {
    int32_t index; /* trace request */
    uint64_t id;
    int64_t computed, known, generated;
    int scheduled;
} live;

static la_cache_config manager_config(const policy_setup *p, const engine_limits *lim, uint64_t *group_bytes)
{
    la_cache_config c;
    memset(&c, 0, sizeof c);
    *group_bytes = (uint64_t)p->block_size * KV_BYTES_PER_TOKEN_PER_LAYER * ATTENTION_LAYERS;
    c.block_size = p->block_size;
    c.num_attn_groups = 1;
    c.kv_block_bytes = group_bytes;
    c.kv_byte_budget = lim->kv_bytes;
    c.checkpoint_bytes = STATE_BYTES_PER_LAYER * LINEAR_LAYERS;
    c.checkpoint_byte_budget = lim->checkpoint_bytes;
    c.checkpoint_alignment = p->alignment;
    c.policy = p->policy;
    return c;
}

static la_cache_manager *create_manager(const policy_setup *p, const engine_limits *lim, uint64_t *group_bytes)
{
    la_cache_config c = manager_config(p, lim, group_bytes);
    la_cache_manager *m = NULL;
    char message[256];
    if (la_cache_create(&c, &m, message, sizeof message) != LA_CACHE_OK) {
        fprintf(stderr, "cache_replay: %s: %s\n", p->name, message);
        exit(1);
    }
    return m;
}

static void must(la_cache_manager *m, la_cache_status status, const char *what)
{
    if (status == LA_CACHE_OK) return;
    fprintf(stderr, "cache_replay: %s failed (%d): %s\n", what, status, la_cache_last_error(m));
    exit(1);
}

/* Tokens of a prefill chunk: all that fits, trimmed to end on a block boundary for the align-mode baseline. */
static int64_t prefill_chunk(const policy_setup *p, const live *r, int64_t budget)
{
    int64_t remaining = r->known - r->computed;
    int64_t chunk = remaining < budget ? remaining : budget;
    if (p->trim_chunks_to_blocks) {
        int64_t aligned_end = (r->computed + chunk) / p->block_size * p->block_size;
        if (aligned_end > r->computed) chunk = aligned_end - r->computed;
    }
    return chunk;
}

static result replay(const trace *t, const policy_setup *p, const engine_limits *lim, call_log *log)
{
    uint64_t group_bytes;
    la_cache_manager *m = create_manager(p, lim, &group_bytes);
    result res;
    memset(&res, 0, sizeof res);

    int64_t *arrival = malloc((size_t)t->count * sizeof *arrival);
    int32_t *waiting = malloc((size_t)t->count * sizeof *waiting);
    int32_t num_waiting = 0, finished = 0, next_arrival = 0;
    int32_t *order = malloc((size_t)t->count * sizeof *order); /* first turns by arrival */
    int32_t num_order = 0;
    for (int32_t i = 0; i < t->count; i++) {
        arrival[i] = t->requests[i].first_turn ? t->requests[i].arrival : INT64_MAX;
        if (t->requests[i].first_turn) order[num_order++] = i;
    }
    /* first turns in arrival order (insertion sort: the traces are small) */
    for (int32_t i = 1; i < num_order; i++)
        for (int32_t j = i; j > 0 && arrival[order[j - 1]] > arrival[order[j]]; j--) {
            int32_t tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    live *running = calloc((size_t)lim->max_running, sizeof *running);
    int32_t num_running = 0;
    uint64_t next_id = 1;
    /* later turns become due at a step; kept in a small list */
    int32_t *due = malloc((size_t)t->count * sizeof *due);
    int32_t num_due = 0;
    uint8_t *counted = calloc((size_t)t->count, 1);

    for (int64_t step = 0; finished < t->count; step++) {
        while (next_arrival < num_order && arrival[order[next_arrival]] <= step) waiting[num_waiting++] = order[next_arrival++];
        for (int32_t i = 0; i < num_due;)
            if (arrival[due[i]] <= step) {
                waiting[num_waiting++] = due[i];
                due[i] = due[--num_due];
            } else {
                i++;
            }

        /* admit */
        int32_t admitted = 0;
        while (admitted < num_waiting && num_running < lim->max_running) {
            int32_t index = waiting[admitted++];
            const trace_request *tr = &t->requests[index];
            live *r = &running[num_running++];
            memset(r, 0, sizeof *r);
            r->index = index;
            r->id = next_id++;
            r->known = tr->prompt;
            la_cache_request_desc d = {r->id, tr->tokens, tr->prompt, NULL, 0, -1, 0};
            la_cache_hit hit;
            must(m, la_cache_request_add(m, &d, &hit), "add");
            log_call(log, CALL_ADD, r->id, tr->tokens, tr->prompt);
            r->computed = hit.hit_tokens;
            if (counted[index]++) continue; /* a preempted request coming back is not a new request */
            res.requests++;
            res.requests_hit += hit.hit_tokens > 0;
            res.prompt_tokens += tr->prompt;
            res.hit_tokens += hit.hit_tokens;
            res.group_requests[tr->group]++;
            res.group_hits[tr->group] += hit.hit_tokens > 0;
        }
        memmove(waiting, waiting + admitted, (size_t)(num_waiting - admitted) * sizeof *waiting);
        num_waiting -= admitted;

        /* schedule: decodes first, then prefill chunks in admission order */
        int64_t budget = lim->token_budget;
        int32_t scheduled = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int32_t i = 0; i < num_running && budget > 0; i++) {
                live *r = &running[i];
                const int decoding = r->computed >= t->requests[r->index].prompt;
                if (decoding != (pass == 0) || r->computed == r->known) continue;
                int64_t n = decoding ? r->known - r->computed : prefill_chunk(p, r, budget);
                if (n > budget) continue;
                la_cache_step st;
                la_cache_status s = la_cache_request_schedule(m, r->id, n, &st);
                if (s == LA_CACHE_ERR_KV_EXHAUSTED) continue;
                must(m, s, "schedule");
                log_call(log, CALL_SCHEDULE, r->id, NULL, n);
                r->scheduled = 1;
                budget -= n;
                scheduled++;
            }
        if (scheduled == 0 && num_running > 0) {
            /* nothing fits: preempt the newest request; it starts over later (and may hit its own prefix) */
            live *victim = &running[num_running - 1];
            must(m, la_cache_request_free(m, victim->id), "free");
            log_call(log, CALL_FREE, victim->id, NULL, 0);
            memmove(waiting + 1, waiting, (size_t)num_waiting * sizeof *waiting);
            waiting[0] = victim->index;
            num_waiting++;
            num_running--;
            res.preemptions++;
            continue;
        }

        /* the batch ran: commit, sample, finish */
        for (int32_t i = 0; i < num_running;) {
            live *r = &running[i];
            const trace_request *tr = &t->requests[r->index];
            if (r->scheduled) {
                must(m, la_cache_request_commit(m, r->id), "commit");
                log_call(log, CALL_COMMIT, r->id, NULL, 0);
                r->scheduled = 0;
                la_cache_request_info info;
                must(m, la_cache_get_request_info(m, r->id, &info), "info");
                r->computed = info.computed_tokens;
                if (r->computed == r->known) {
                    const int32_t *token = tr->tokens + tr->prompt + r->generated;
                    must(m, la_cache_request_append(m, r->id, token, 1), "append");
                    log_call(log, CALL_APPEND, r->id, token, 1);
                    r->generated++;
                    r->known++;
                }
            }
            if (r->generated == tr->output) {
                must(m, la_cache_request_free(m, r->id), "free");
                log_call(log, CALL_FREE, r->id, NULL, 0);
                finished++;
                if (tr->next_turn >= 0) {
                    arrival[tr->next_turn] = step + t->requests[tr->next_turn].arrival;
                    due[num_due++] = tr->next_turn;
                }
                running[i] = running[--num_running];
                continue;
            }
            i++;
        }
        la_cache_stats st;
        la_cache_get_stats(m, &st);
        if (st.checkpoints_in_use > res.peak_checkpoints) res.peak_checkpoints = st.checkpoints_in_use;
        res.steps = step + 1;
    }
    la_cache_get_stats(m, &res.stats);
    la_cache_destroy(m);
    free(arrival), free(waiting), free(order), free(running), free(due), free(counted);
    return res;
}

/* ---- manager speed ----------------------------------------------------------------------------------------------- */

static double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Replay the recorded calls alone on a fresh manager; returns seconds. Admissions (which hash the whole prompt)
 * are also timed one by one into *add_seconds, and their prompt tokens counted into *add_tokens. */
static double time_calls(const call_log *log, const policy_setup *p, const engine_limits *lim, int64_t counts[CALL_KINDS],
                         double *add_seconds, int64_t *add_tokens)
{
    uint64_t group_bytes;
    la_cache_manager *m = create_manager(p, lim, &group_bytes);
    memset(counts, 0, CALL_KINDS * sizeof *counts);
    *add_seconds = 0;
    *add_tokens = 0;
    la_cache_step step;
    double start = seconds_now();
    for (int64_t i = 0; i < log->count; i++) {
        const call *c = &log->calls[i];
        la_cache_status s = LA_CACHE_OK;
        switch (c->kind) {
        case CALL_ADD: {
            la_cache_request_desc d = {c->id, c->tokens, c->n, NULL, 0, -1, 0};
            double t0 = seconds_now();
            s = la_cache_request_add(m, &d, NULL);
            *add_seconds += seconds_now() - t0;
            *add_tokens += c->n;
            break;
        }
        case CALL_APPEND: s = la_cache_request_append(m, c->id, c->tokens, c->n); break;
        case CALL_SCHEDULE: s = la_cache_request_schedule(m, c->id, c->n, &step); break;
        case CALL_COMMIT: s = la_cache_request_commit(m, c->id); break;
        default: s = la_cache_request_free(m, c->id); break;
        }
        if (s != LA_CACHE_OK) must(m, s, call_names[c->kind]);
        counts[c->kind]++;
    }
    double elapsed = seconds_now() - start;
    la_cache_destroy(m);
    return elapsed;
}

/* ---- report ------------------------------------------------------------------------------------------------------ */

static void print_result(const trace *t, const policy_setup *p, const result *r, uint64_t checkpoint_bytes)
{
    printf("  %-9s block %4d  requests %6lld  hit %5.1f%%  prompt %9lld  saved %9lld (%4.1f%%)  ckpt written %6llu "
           "held peak %4lld (%.1f GiB)  evicted %6llu  KV copies %5llu  preempted %lld\n",
           p->name, p->block_size, (long long)r->requests, 100.0 * (double)r->requests_hit / (double)r->requests,
           (long long)r->prompt_tokens, (long long)r->hit_tokens,
           100.0 * (double)r->hit_tokens / (double)r->prompt_tokens, (unsigned long long)r->stats.checkpoints_written,
           (long long)r->peak_checkpoints, (double)r->peak_checkpoints * (double)checkpoint_bytes / GIB,
           (unsigned long long)r->stats.checkpoints_evicted, (unsigned long long)r->stats.kv_copies,
           (long long)r->preemptions);
    printf("            hit rate by system prompt length:");
    for (int g = 0; g < t->groups; g++)
        printf(" %lld:%.0f%%", (long long)t->group_length[g],
               r->group_requests[g] ? 100.0 * (double)r->group_hits[g] / (double)r->group_requests[g] : 0.0);
    printf("\n");
}

int main(int argc, char **argv)
{
    double checkpoint_gib = 8, kv_gib = 20;
    int32_t our_block = 64;
    uint64_t seed = 20261127;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ckpt-gib") && i + 1 < argc) checkpoint_gib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--kv-gib") && i + 1 < argc) kv_gib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--block") && i + 1 < argc) our_block = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: %s [--ckpt-gib G] [--kv-gib G] [--block B] [--seed S] [--quick]\n", argv[0]);
            return 2;
        }
    }
    const uint64_t checkpoint_bytes = STATE_BYTES_PER_LAYER * LINEAR_LAYERS;
    engine_limits lim = {64, 8192, (uint64_t)(kv_gib * GIB), (uint64_t)(checkpoint_gib * GIB)};

    policy_setup ours = {"ours", our_block, 64, la_cache_policy_default(), 0};
    policy_setup base = {"baseline", page_rule_block_size(), 16, {page_rule_block_size(), LA_CACHE_AT_ALIGNED_STEP_END, 1}, 1};

    printf("cache_replay: Qwen3-Next-80B-A3B memory (checkpoint %.1f MiB = %d linear layers, KV %llu KiB/token), "
           "KV %.0f GiB, checkpoints %.1f GiB (%llu), seed %llu\n",
           (double)checkpoint_bytes / (1024.0 * 1024.0), LINEAR_LAYERS,
           (unsigned long long)(KV_BYTES_PER_TOKEN_PER_LAYER * ATTENTION_LAYERS / 1024), kv_gib, checkpoint_gib,
           (unsigned long long)(lim.checkpoint_bytes / checkpoint_bytes), (unsigned long long)seed);
    printf("engine: %d running, %lld tokens per step; baseline block from the page-size rule: %d tokens\n\n",
           lim.max_running, (long long)lim.token_budget, base.block_size);

    trace traces[2] = {make_chat_trace(quick ? 48 : 256, seed), make_shared_trace(quick ? 400 : 3000, seed + 1)};
    call_log log = {0};
    double ratio[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        printf("trace %s: %d requests\n", traces[k].name, traces[k].count);
        result r_ours = replay(&traces[k], &ours, &lim, k == 0 ? &log : NULL);
        result r_base = replay(&traces[k], &base, &lim, NULL);
        print_result(&traces[k], &ours, &r_ours, checkpoint_bytes);
        print_result(&traces[k], &base, &r_base, checkpoint_bytes);
        ratio[k] = r_base.hit_tokens ? (double)r_ours.hit_tokens / (double)r_base.hit_tokens : 0;
        printf("  prefill tokens saved, ours / baseline: %.2fx\n\n", ratio[k]);
    }

    printf("checkpoint memory sweep, trace chat (prefill tokens saved, ours / baseline):\n");
    const double sweep[] = {1, 2, 4, 8, 16};
    for (size_t i = 0; i < sizeof sweep / sizeof sweep[0]; i++) {
        engine_limits l = lim;
        l.checkpoint_bytes = (uint64_t)(sweep[i] * GIB);
        result a = replay(&traces[0], &ours, &l, NULL), b = replay(&traces[0], &base, &l, NULL);
        printf("  %5.1f GiB (%3llu checkpoints): ours %9lld  baseline %9lld  -> %.2fx\n", sweep[i],
               (unsigned long long)(l.checkpoint_bytes / checkpoint_bytes), (long long)a.hit_tokens,
               (long long)b.hit_tokens, b.hit_tokens ? (double)a.hit_tokens / (double)b.hit_tokens : 0.0);
    }

    int64_t counts[CALL_KINDS], add_tokens = 0;
    double best = 1e30, add_seconds = 0;
    for (int rep = 0; rep < 3; rep++) {
        double adds, s = time_calls(&log, &ours, &lim, counts, &adds, &add_tokens);
        if (s < best) best = s, add_seconds = adds;
    }
    const int64_t step_calls = log.count - counts[CALL_ADD];
    printf("\nmanager speed, the chat trace's calls replayed alone on one core (best of 3):\n"
           "  all %lld calls in %.3f s: %.1f M calls/s\n"
           "  per-step calls (append, schedule, commit, free; %lld): %.1f M calls/s\n"
           "  admissions (%lld, %.0f prompt tokens each on average): %.2f us each, %.0f M prompt tokens/s looked up\n",
           (long long)log.count, best, (double)log.count / best / 1e6, (long long)step_calls,
           (double)step_calls / (best - add_seconds) / 1e6, (long long)counts[CALL_ADD],
           (double)add_tokens / (double)counts[CALL_ADD], 1e6 * add_seconds / (double)counts[CALL_ADD],
           (double)add_tokens / add_seconds / 1e6);
    free(log.calls);
    for (int k = 0; k < 2; k++) {
        for (int32_t i = 0; i < traces[k].count; i++) free(traces[k].requests[i].tokens);
        free(traces[k].requests);
    }
    return 0;
}
