/*
 * linattn_demo — a small serving-engine step loop on top of liblinattn, through the ABI only (dlopen). It serves
 * chat conversations on a hybrid model: the linear-attention layers run in the library, the attention layers are
 * simulated by the KV blocks the prefix cache hands out. Each step it admits arriving requests (looking their
 * prompts up in the prefix cache), schedules decode tokens and chunked prefill under a token budget, runs every
 * linear layer over one batch plan, and commits the step to the cache. Conversations share a few system prompts
 * and come back for follow-up turns, so the cache has something to hit.
 *
 *   linattn_demo [options] [path-to-liblinattn.so]      (--help lists the options)
 *
 * The backend is the library's choice (CUDA when a device exists; LINATTN_BACKEND=cpu forces the CPU). On CUDA the
 * default model is Qwen3-Next's (36 Gated DeltaNet layers, 16 q/k heads, 32 v heads, d 128); on the CPU a small one
 * so the run takes seconds. Inputs are random: a real engine passes its in-projection outputs.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, readlink, isatty */
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "abi/linattn.h"
#include "integration/common/devmem.h"
#include "integration/common/host_bf16.h"

typedef struct options {
    const char *library;
    int layers, qk_heads, v_heads, head_dim; /* 0: the backend's default model */
    int conversations, turns, system_prompts, system_tokens;
    int max_running, token_budget, max_checkpoints, kv_blocks, seed, no_cache;
} options;

enum { BLOCK_SIZE = 16, CONV_WIDTH = 4, THINK_STEPS = 3 };
enum { CONV_IDLE, CONV_WAITING, CONV_PREFILL, CONV_DECODE, CONV_DONE };

typedef struct conversation {
    int state, turn, arrival_step, system_prompt;
    int32_t *tokens; /* history, then the current request's prompt and generated tokens */
    int64_t length, capacity, prompt_length, computed;
    int32_t generated, to_generate, slot, scheduled;
} conversation;

typedef struct engine {
    options o;
    const linattn_api *api;
    linattn_context *context;
    linattn_layer **layers;
    linattn_pool *pool;
    linattn_plan *plan;
    linattn_prefix_cache *cache;
    uint64_t slot_bytes;
    int64_t channels, out_width;
    void *qkv, *a, *b, *out; /* "device" buffers of token_budget rows, shared by every layer and step */
    conversation *convs;
    int32_t **system_tokens;
    unsigned long long rng;
    /* what the summary reports */
    long long steps, prompt_tokens, prefill_computed, decode_tokens, turns_done, lookups;
    int peak_running, peak_kv_blocks;
    int64_t peak_checkpoints;
    double busy_seconds, decode_only_seconds;
    long long decode_only_tokens;
} engine;

static int failed(const engine *e, linattn_status status, const char *what)
{
    if (status == LINATTN_OK) return 0;
    fprintf(stderr, "%s failed: status %d: %s\n", what, (int)status, e->api->last_error_message());
    return 1;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint32_t next_random(engine *e)
{
    e->rng ^= e->rng << 13;
    e->rng ^= e->rng >> 7;
    e->rng ^= e->rng << 17;
    return (uint32_t)(e->rng >> 32);
}

static int random_between(engine *e, int lo, int hi) { return lo + (int)(next_random(e) % (uint32_t)(hi - lo + 1)); }
static float random_float(engine *e, float lo, float hi)
{
    return lo + (hi - lo) * (float)(next_random(e) >> 8) / (float)(1u << 24);
}

/* ---- options ---- */

static void usage(FILE *to)
{
    fprintf(to,
            "usage: linattn_demo [options] [path-to-liblinattn.so]   (default: liblinattn.so next to this program)\n"
            "Simulates a serving engine on a hybrid model through the linattn ABI and reports prefix-cache savings.\n"
            "  --layers N            linear-attention layers (default: 36 on CUDA, 4 on the CPU)\n"
            "  --qk-heads N --v-heads N --head-dim N   layer shape (default 16/32/128 on CUDA, 4/8/64 on the CPU)\n"
            "  --conversations N     chat conversations (default 12)\n"
            "  --turns N             turns per conversation (default 3)\n"
            "  --system-prompts N    distinct shared system prompts (default 3)\n"
            "  --system-tokens N     tokens of each system prompt (default 300)\n"
            "  --max-running N       sequences per step (default 8)\n"
            "  --token-budget N      tokens per step, decode first, then prefill chunks (default 256)\n"
            "  --max-checkpoints N   checkpoint budget in state slots (default 24)\n"
            "  --kv-blocks N         KV blocks of %d tokens for the attention layers (default 2048)\n"
            "  --no-cache            no checkpoints: every prompt is computed in full (for comparison)\n"
            "  --seed N              workload seed (default 1)\n"
            "  --help                this text\n",
            BLOCK_SIZE);
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){NULL, 0, 0, 0, 0, 12, 3, 3, 300, 8, 256, 24, 2048, 1, 0};
    struct { const char *name; int *value; int min; } numbers[] = {
        {"--layers", &o->layers, 1},           {"--qk-heads", &o->qk_heads, 1},
        {"--v-heads", &o->v_heads, 1},         {"--head-dim", &o->head_dim, 1},
        {"--conversations", &o->conversations, 1}, {"--turns", &o->turns, 1},
        {"--system-prompts", &o->system_prompts, 1}, {"--system-tokens", &o->system_tokens, 1},
        {"--max-running", &o->max_running, 1}, {"--token-budget", &o->token_budget, 1},
        {"--max-checkpoints", &o->max_checkpoints, 0}, {"--kv-blocks", &o->kv_blocks, 1},
        {"--seed", &o->seed, 0},
    };
    for (int i = 1; i < argc; ++i) {
        int matched = 0;
        for (size_t n = 0; n < sizeof numbers / sizeof numbers[0] && !matched; ++n) {
            if (strcmp(argv[i], numbers[n].name) != 0) continue;
            if (i + 1 >= argc || (*numbers[n].value = atoi(argv[++i])) < numbers[n].min) return 0;
            matched = 1;
        }
        if (matched) continue;
        if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(argv[i], "--no-cache") == 0) {
            o->no_cache = 1;
        } else if (argv[i][0] != '-' && !o->library) {
            o->library = argv[i];
        } else {
            return 0;
        }
    }
    if (o->token_budget < o->max_running) o->token_budget = o->max_running; /* room for every decode token */
    return 1;
}

/* ---- setup: load, context, layers, pool, plan, prefix cache, buffers ---- */

static const linattn_api *load(const char *path)
{
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    void *symbol = library ? dlsym(library, "linattn_get_api") : NULL;
    if (!symbol) {
        fprintf(stderr, "cannot load linattn_get_api from %s: %s\n", path, dlerror());
        return NULL;
    }
    linattn_get_api_fn get_api;
    memcpy(&get_api, &symbol, sizeof get_api);
    const linattn_api *api = NULL;
    if (get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &api) != LINATTN_OK) {
        fprintf(stderr, "%s refused ABI %d.%d\n", path, LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR);
        return NULL;
    }
    printf("loaded   %s: %s, ABI %u.%u\n", path, api->version_string(), api->abi_major, api->abi_minor);
    return api;
}

static int open_context(engine *e)
{
    linattn_context_desc desc = {sizeof desc, LINATTN_BACKEND_AUTO, 0};
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    if (failed(e, e->api->context_create(&desc, &e->context), "context_create") ||
        failed(e, e->api->query_capabilities(e->context, &caps), "query_capabilities"))
        return 0;
    int cuda = caps.backend == LINATTN_BACKEND_CUDA;
    options *o = &e->o;
    if (!o->layers) o->layers = cuda ? 36 : 4;
    if (!o->qk_heads) o->qk_heads = cuda ? 16 : 4;
    if (!o->v_heads) o->v_heads = cuda ? 32 : 8;
    if (!o->head_dim) o->head_dim = cuda ? 128 : 64;
    printf("device   %s backend on \"%s\"\n", cuda ? "cuda" : "cpu", caps.device_name);
    char why[256];
    if (devmem_setup(caps.backend, why, sizeof why) != 0) {
        fprintf(stderr, "%s\n", why);
        return 0;
    }
    return 1;
}

static int create_model(engine *e)
{
    const options *o = &e->o;
    e->channels = 2 * (int64_t)o->qk_heads * o->head_dim + (int64_t)o->v_heads * o->head_dim;
    e->out_width = (int64_t)o->v_heads * o->head_dim;
    size_t count = (size_t)e->channels * (CONV_WIDTH + 1) + 2 * (size_t)o->v_heads;
    float *weights = malloc(count * sizeof *weights); /* one set for every layer: copied by layer_create */
    e->layers = calloc((size_t)o->layers, sizeof *e->layers);
    if (!weights || !e->layers) {
        free(weights);
        return 0;
    }
    for (size_t i = 0; i < count; ++i) weights[i] = random_float(e, -0.5f, 0.5f);
    float *A_log = weights + (size_t)e->channels * (CONV_WIDTH + 1);
    for (int h = 0; h < o->v_heads; ++h) A_log[h] = logf(random_float(e, 0.01f, 0.5f));
    linattn_layer_desc desc = {sizeof desc, LINATTN_LAYER_GATED_DELTANET, o->qk_heads, o->v_heads, o->head_dim,
                               o->head_dim, CONV_WIDTH, 1, LINATTN_DTYPE_F32, 0.0f, weights,
                               weights + (size_t)e->channels * CONV_WIDTH, A_log, A_log + o->v_heads};
    int ok = 1;
    for (int l = 0; l < o->layers && ok; ++l)
        ok = !failed(e, e->api->layer_create(e->context, &desc, &e->layers[l], NULL), "layer_create");
    free(weights);
    if (!ok) return 0;
    /* Running sequences and checkpoints share the pool: one slot per running sequence plus the checkpoint budget. */
    int checkpoints = o->no_cache ? 0 : o->max_checkpoints;
    linattn_pool_desc pool = {sizeof pool, o->layers, e->layers, o->max_running + checkpoints, 0};
    linattn_plan_desc plan = {sizeof plan, o->max_running, 4 * o->max_running, o->token_budget};
    linattn_pool_info info = {sizeof info, 0, 0, 0};
    if (failed(e, e->api->pool_create(e->context, &pool, &e->pool), "pool_create") ||
        failed(e, e->api->pool_info(e->pool, &info), "pool_info") ||
        failed(e, e->api->plan_create(e->pool, &plan, &e->plan), "plan_create"))
        return 0;
    e->slot_bytes = info.slot_bytes;
    /* One attention group standing for the model's attention layers: 2 KiB of KV per token. */
    static const uint64_t kv_block_bytes[1] = {BLOCK_SIZE * 2048};
    linattn_prefix_cache_desc cache = {sizeof cache, BLOCK_SIZE, 1, kv_block_bytes, o->kv_blocks, 0, checkpoints, 0,
                                       0, {0, 0, 0}};
    if (o->no_cache) cache.policy = (linattn_checkpoint_policy){64, 0, 1}; /* never write checkpoints */
    if (failed(e, e->api->prefix_cache_create(e->pool, &cache, &e->cache), "prefix_cache_create")) return 0;
    printf("model    %d Gated DeltaNet layers (%d q/k heads, %d v heads, d %d) + attention simulated by KV blocks of "
           "%d tokens; %.2f MiB state per sequence\n",
           o->layers, o->qk_heads, o->v_heads, o->head_dim, BLOCK_SIZE, (double)e->slot_bytes / (1 << 20));
    return 1;
}

static int create_buffers(engine *e)
{
    size_t rows = (size_t)e->o.token_budget, gates = rows * (size_t)e->o.v_heads;
    size_t qkv = rows * (size_t)e->channels;
    uint16_t *host = malloc((qkv + 2 * gates) * sizeof *host);
    e->qkv = devmem_alloc(qkv * 2);
    e->a = devmem_alloc(gates * 2);
    e->b = devmem_alloc(gates * 2);
    e->out = devmem_alloc(rows * (size_t)e->out_width * 2);
    int ok = host && e->qkv && e->a && e->b && e->out;
    for (size_t i = 0; ok && i < qkv + 2 * gates; ++i) host[i] = host_float_to_bf16(random_float(e, -1.0f, 1.0f));
    ok = ok && devmem_upload(e->qkv, host, qkv * 2, NULL) == 0 && devmem_upload(e->a, host + qkv, gates * 2, NULL) == 0
         && devmem_upload(e->b, host + qkv + gates, gates * 2, NULL) == 0;
    free(host);
    if (!ok) fprintf(stderr, "out of memory for the step buffers\n");
    return ok;
}

/* ---- the workload: conversations over shared system prompts, follow-up turns after a short pause ---- */

static int append_tokens(conversation *c, engine *e, int64_t count, const int32_t *from)
{
    if (c->length + count > c->capacity) {
        int64_t capacity = 2 * (c->length + count);
        int32_t *grown = realloc(c->tokens, (size_t)capacity * sizeof *grown);
        if (!grown) return 0;
        c->tokens = grown;
        c->capacity = capacity;
    }
    for (int64_t i = 0; i < count; ++i) c->tokens[c->length + i] = from ? from[i] : random_between(e, 1, 150000);
    c->length += count;
    return 1;
}

static int create_workload(engine *e)
{
    const options *o = &e->o;
    e->convs = calloc((size_t)o->conversations, sizeof *e->convs);
    e->system_tokens = calloc((size_t)o->system_prompts, sizeof *e->system_tokens);
    if (!e->convs || !e->system_tokens) return 0;
    for (int s = 0; s < o->system_prompts; ++s) {
        if (!(e->system_tokens[s] = malloc((size_t)o->system_tokens * sizeof(int32_t)))) return 0;
        for (int t = 0; t < o->system_tokens; ++t) e->system_tokens[s][t] = random_between(e, 1, 150000);
    }
    for (int i = 0; i < o->conversations; ++i) {
        conversation *c = &e->convs[i];
        c->system_prompt = i % o->system_prompts;
        c->arrival_step = 2 * i; /* a new conversation every other step */
        c->slot = LINATTN_SLOT_NONE;
        if (!append_tokens(c, e, o->system_tokens, e->system_tokens[c->system_prompt]) ||
            !append_tokens(c, e, random_between(e, 16, 120), NULL)) /* the user's first message */
            return 0;
    }
    printf("workload %d conversations x %d turns over %d system prompts of %d tokens; %d sequences and %d tokens per "
           "step; %d checkpoint slots%s\n",
           o->conversations, o->turns, o->system_prompts, o->system_tokens, o->max_running, o->token_budget,
           o->no_cache ? 0 : o->max_checkpoints, o->no_cache ? " (--no-cache)" : "");
    return 1;
}

/* A turn arrives: the user's message goes after the history, the prompt is looked up and admitted. */
static int admit(engine *e, conversation *c, uint64_t id)
{
    c->prompt_length = c->length;
    c->to_generate = random_between(e, 8, 48);
    linattn_cache_request_desc desc = {sizeof desc, sizeof(linattn_cache_extra_key), id, c->tokens, c->length,
                                       NULL, 0, 0, -1};
    linattn_cache_hit hit = {sizeof hit, 0, 0, 0};
    if (failed(e, e->api->slot_alloc(e->pool, &c->slot), "slot_alloc") ||
        failed(e, e->api->cache_request_add(e->cache, &desc, &hit), "cache_request_add"))
        return 0;
    c->computed = hit.hit_tokens;
    c->generated = 0;
    c->state = CONV_PREFILL;
    e->prompt_tokens += c->prompt_length;
    e->lookups++;
    return 1;
}

static int finish_turn(engine *e, conversation *c, uint64_t id, int step)
{
    if (failed(e, e->api->cache_request_free(e->cache, id), "cache_request_free") ||
        failed(e, e->api->slot_free(e->pool, c->slot), "slot_free"))
        return 0;
    c->slot = LINATTN_SLOT_NONE;
    e->turns_done++;
    if (++c->turn == e->o.turns) {
        c->state = CONV_DONE;
        return 1;
    }
    c->state = CONV_IDLE;
    c->arrival_step = step + THINK_STEPS;
    return append_tokens(c, e, random_between(e, 16, 120), NULL); /* the user's next message */
}

/* ---- one engine step ---- */

typedef struct batch {
    int num_seqs, num_checkpoints, conv[64];
    int64_t num_tokens, decode_tokens;
    linattn_seq_desc seqs[64];
    linattn_checkpoint_desc checkpoints[256];
} batch;

/* Schedule n tokens of a conversation into the batch; 0 when the cache has no KV blocks for it now (it waits). */
static int schedule(engine *e, batch *b, int index, int64_t n, int *ok)
{
    conversation *c = &e->convs[index];
    linattn_cache_step step;
    memset(&step, 0, sizeof step);
    step.struct_size = sizeof step;
    linattn_status status = e->api->cache_request_schedule(e->cache, (uint64_t)index, n, &step);
    if (status == LINATTN_ERR_KV_EXHAUSTED) return 0;
    if (failed(e, status, "cache_request_schedule")) return *ok = 0;
    for (int k = 0; k < step.num_checkpoints; ++k)
        b->checkpoints[b->num_checkpoints++] =
            (linattn_checkpoint_desc){step.checkpoints[k].position, b->num_seqs, step.checkpoints[k].slot};
    b->seqs[b->num_seqs] = (linattn_seq_desc){b->num_tokens, step.start_position, step.num_tokens, c->slot,
                                              step.init, step.source_slot};
    b->conv[b->num_seqs++] = index;
    b->num_tokens += n;
    c->scheduled = (int32_t)n;
    return 1;
}

static int run_step(engine *e, int step, int *progressed)
{
    const options *o = &e->o;
    batch b;
    memset(&b, 0, sizeof b);
    int running = 0, ok = 1;
    for (int i = 0; i < o->conversations; ++i) {
        conversation *c = &e->convs[i];
        if (c->state == CONV_IDLE && c->arrival_step <= step) c->state = CONV_WAITING;
        running += c->state == CONV_PREFILL || c->state == CONV_DECODE;
    }
    for (int i = 0; i < o->conversations && running < o->max_running; ++i)
        if (e->convs[i].state == CONV_WAITING && (running++, !admit(e, &e->convs[i], (uint64_t)i))) return 0;
    if (running > e->peak_running) e->peak_running = running;
    for (int i = 0; i < o->conversations && ok; ++i) /* decode first: one token each */
        if (e->convs[i].state == CONV_DECODE && schedule(e, &b, i, 1, &ok)) b.decode_tokens++;
    for (int i = 0; i < o->conversations && ok && b.num_tokens < o->token_budget; ++i) {
        conversation *c = &e->convs[i];
        int64_t n = c->prompt_length - c->computed, room = o->token_budget - b.num_tokens;
        if (c->state == CONV_PREFILL && schedule(e, &b, i, n < room ? n : room, &ok))
            e->prefill_computed += n < room ? n : room;
    }
    if (!ok || b.num_seqs == 0) return ok; /* nothing to run yet */

    double start = now();
    linattn_batch_desc desc = {sizeof desc, sizeof(linattn_seq_desc), sizeof(linattn_checkpoint_desc),
                               b.num_seqs, b.seqs, b.num_tokens, b.num_checkpoints, b.checkpoints};
    linattn_forward_args args = {sizeof args, LINATTN_DTYPE_BF16, e->qkv, e->a, e->b, e->out, 0, 0, 0, 0};
    if (failed(e, e->api->plan_set_batch(e->plan, &desc, NULL), "plan_set_batch")) return 0;
    for (int l = 0; l < o->layers; ++l)
        if (failed(e, e->api->forward(e->layers[l], e->plan, &args, NULL), "forward")) return 0;
    uint16_t probe;
    if (devmem_download(&probe, e->out, sizeof probe, NULL) != 0) return 0; /* waits for the step (timing) */
    double seconds = now() - start;
    e->busy_seconds += seconds;
    if (b.decode_tokens == b.num_tokens) {
        e->decode_only_seconds += seconds;
        e->decode_only_tokens += b.num_tokens;
    }
    e->decode_tokens += b.decode_tokens;
    e->steps++;
    *progressed = 1;

    /* The forwards are enqueued: commit, then sample a token for each sequence that reached its end. */
    for (int s = 0; s < b.num_seqs; ++s) {
        int index = b.conv[s];
        conversation *c = &e->convs[index];
        if (failed(e, e->api->cache_request_commit(e->cache, (uint64_t)index), "cache_request_commit")) return 0;
        c->computed += c->scheduled;
        if (c->state == CONV_DECODE) c->generated++;
        if (c->computed < c->length) continue; /* prefill goes on next step */
        if (c->generated == c->to_generate) {
            if (!finish_turn(e, c, (uint64_t)index, step)) return 0;
            continue;
        }
        c->state = CONV_DECODE;
        if (!append_tokens(c, e, 1, NULL) ||
            failed(e, e->api->cache_request_append(e->cache, (uint64_t)index, c->tokens + c->length - 1, 1),
                   "cache_request_append"))
            return 0;
    }
    return 1;
}

/* ---- reporting ---- */

static int cache_stats(const engine *e, linattn_cache_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    stats->struct_size = sizeof *stats;
    return !failed(e, e->api->cache_get_stats(e->cache, stats), "cache_get_stats");
}

static void progress(engine *e, int step, int final)
{
    linattn_cache_stats s;
    if (!cache_stats(e, &s)) return;
    if (s.checkpoints_in_use > e->peak_checkpoints) e->peak_checkpoints = s.checkpoints_in_use;
    int kv_used = (int)(s.kv_blocks_total - s.kv_blocks_free);
    if (kv_used > e->peak_kv_blocks) e->peak_kv_blocks = kv_used;
    if (step % 20 && !final) return;
    long long total = (long long)e->o.conversations * e->o.turns;
    printf("%sstep %5d: %lld/%lld turns done, %lld prefill tokens computed, %llu saved, %lld decoded, %lld "
           "checkpoints held%s",
           isatty(STDOUT_FILENO) ? "\r" : "", step, e->turns_done, total, e->prefill_computed,
           (unsigned long long)s.hit_tokens, e->decode_tokens, (long long)s.checkpoints_in_use,
           isatty(STDOUT_FILENO) && !final ? "" : "\n");
    fflush(stdout);
}

static int summary(engine *e, double seconds)
{
    linattn_cache_stats s;
    linattn_pool_info pool = {sizeof pool, 0, 0, 0};
    if (!cache_stats(e, &s) || failed(e, e->api->pool_info(e->pool, &pool), "pool_info")) return 0;
    double mib = (double)e->slot_bytes / (1 << 20), saved = (double)s.hit_tokens;
    printf("summary  %lld turns in %lld steps, %.2f s (%.2f s in the library)\n", e->turns_done, e->steps, seconds,
           e->busy_seconds);
    printf("prefill  %lld prompt tokens: %lld computed, %.0f saved by the prefix cache (%.1f%%)\n", e->prompt_tokens,
           e->prefill_computed, saved, 100.0 * saved / (double)e->prompt_tokens);
    printf("hits     %llu of %lld lookups hit (%.0f%%); checkpoints %llu written, %llu restored, %llu evicted, "
           "%llu skipped\n",
           (unsigned long long)s.hits, e->lookups, 100.0 * (double)s.hits / (double)e->lookups,
           (unsigned long long)s.checkpoints_written, (unsigned long long)s.checkpoints_restored,
           (unsigned long long)s.checkpoints_evicted, (unsigned long long)s.checkpoints_skipped);
    printf("decode   %lld tokens; %.0f tokens/s in decode-only steps; all steps %.0f tokens/s\n", e->decode_tokens,
           e->decode_only_seconds > 0 ? (double)e->decode_only_tokens / e->decode_only_seconds : 0.0,
           (double)(e->prefill_computed + e->decode_tokens) / e->busy_seconds);
    printf("memory   state %.2f MiB x %d running at peak = %.1f MiB; checkpoints %.1f MiB at peak (%lld of %lld "
           "slots); KV %d of %lld blocks at peak\n",
           mib, e->peak_running, mib * e->peak_running, mib * (double)e->peak_checkpoints,
           (long long)e->peak_checkpoints, (long long)s.max_checkpoints, e->peak_kv_blocks,
           (long long)s.kv_blocks_total);
    /* Every request was freed: only the cache's checkpoints still hold slots. */
    if (s.live_requests != 0 || pool.slots_in_use != s.checkpoints_in_use) {
        fprintf(stderr, "inconsistent: %lld live requests, %d slots in use, %lld checkpoints\n",
                (long long)s.live_requests, pool.slots_in_use, (long long)s.checkpoints_in_use);
        return 0;
    }
    return 1;
}

/* The plugin next to this executable, as an engine would ship it. */
static void default_library_path(char *path, size_t size)
{
    char self[PATH_MAX];
    ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
    char *slash = length > 0 ? (self[length] = '\0', strrchr(self, '/')) : NULL;
    if (slash) *slash = '\0';
    snprintf(path, size, "%s/liblinattn.so", slash ? self : ".");
}

static int serve(engine *e)
{
    double start = now();
    int idle = 0;
    for (int step = 0; e->turns_done < (long long)e->o.conversations * e->o.turns; ++step) {
        int progressed = 0;
        if (!run_step(e, step, &progressed)) return 0;
        idle = progressed ? 0 : idle + 1;
        if (idle > THINK_STEPS + 2 * e->o.conversations) {
            fprintf(stderr, "no progress: the KV blocks cannot hold the running requests (raise --kv-blocks)\n");
            return 0;
        }
        progress(e, step, 0);
    }
    progress(e, (int)e->steps, 1);
    return summary(e, now() - start);
}

int main(int argc, char **argv)
{
    engine e;
    memset(&e, 0, sizeof e);
    if (!parse_options(argc, argv, &e.o) || e.o.max_running > 64) {
        usage(stderr);
        return 2;
    }
    e.rng = 0x2545F4914F6CDD1Dull ^ ((unsigned long long)e.o.seed * 0x9E3779B97F4A7C15ull);
    char path[PATH_MAX + 32];
    if (e.o.library) snprintf(path, sizeof path, "%s", e.o.library);
    else default_library_path(path, sizeof path);
    if (!(e.api = load(path))) return 1;
    int ok = open_context(&e) && create_model(&e) && create_buffers(&e) && create_workload(&e) && serve(&e);
    if (e.context) e.api->context_destroy(e.context); /* releases layers, pool, plan and cache */
    void *buffers[] = {e.qkv, e.a, e.b, e.out};
    for (int i = 0; i < 4; ++i) devmem_free(buffers[i]);
    for (int i = 0; e.convs && i < e.o.conversations; ++i) free(e.convs[i].tokens);
    for (int s = 0; e.system_tokens && s < e.o.system_prompts; ++s) free(e.system_tokens[s]);
    free(e.convs);
    free(e.system_tokens);
    free(e.layers);
    return ok ? 0 : 1;
}
