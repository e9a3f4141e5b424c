/* harness.c — see harness.h. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "integration/conformance/harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "integration/common/host_bf16.h"
#include "integration/common/devmem.h"

#define POISON 0xFFFFu

/* ---- failure recording ---- */

int harness_verbose;

void check_fail(check_log *log, int line, const char *format, ...)
{
    char text[sizeof log->failure];
    int used = snprintf(text, sizeof text, "line %d: ", line);
    va_list args;
    va_start(args, format);
    vsnprintf(text + used, sizeof text - (size_t)used, format, args);
    va_end(args);
    if (harness_verbose) fprintf(stderr, "  failed check: %s\n", text);
    if (log->failed++ == 0) memcpy(log->failure, text, sizeof text);
}

void check_note(check_log *log, const char *format, ...)
{
    size_t used = strlen(log->notes);
    if (used + 2 >= sizeof log->notes) return;
    if (used) {
        strcpy(log->notes + used, ", ");
        used += 2;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(log->notes + used, sizeof log->notes - used, format, args);
    va_end(args);
}

int check_ok(check_log *log, const linattn_api *api, linattn_status status, const char *call, int line)
{
    if (status == LINATTN_OK) return 1;
    check_fail(log, line, "%s returned %d (%s)", call, (int)status, api->last_error_message());
    return 0;
}

double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/* ---- random numbers (splitmix64: reproducible, independent streams per seed) ---- */

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state, double lo, double hi)
{
    return lo + (hi - lo) * (double)(next_random(state) >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t mix_seed(uint64_t seed, uint64_t salt)
{
    uint64_t state = seed * 0x100000001b3ull + salt;
    return next_random(&state);
}

/* ---- test models ---- */

typedef struct layer_spec {
    const char *name;
    linattn_layer_kind kind;
    int qk_heads, v_heads, dim_qk, dim_v, conv_width, qk_l2norm;
    float scale;
    int has_conv_bias, has_dt_bias, pass_a;
    double decay_lo, decay_hi; /* exp(A_log) drawn uniformly from this range */
} layer_spec;

/* Decay rates mix heads that forget within a few tokens with heads that remember across hundreds. */
static const layer_spec hybrid_model[] = {
    {"gdn_qwen3next", LINATTN_LAYER_GATED_DELTANET, 16, 32, 128, 128, 4, 1, 0.0f, 1, 1, 1, 0.01, 0.5},
    {"gla_const_decay", LINATTN_LAYER_SIMPLE_GLA, 8, 8, 64, 64, 0, 0, 0.0f, 0, 0, 0, 0.005, 0.1},
    {"gla_gated_conv", LINATTN_LAYER_SIMPLE_GLA, 2, 4, 32, 48, 2, 1, 0.3f, 1, 1, 1, 0.01, 0.3},
    {"gdn_small", LINATTN_LAYER_GATED_DELTANET, 4, 4, 64, 32, 3, 1, 0.25f, 0, 0, 1, 0.01, 0.3},
};
static const layer_spec tiny_model[] = {
    {"gdn_tiny", LINATTN_LAYER_GATED_DELTANET, 2, 4, 16, 16, 4, 1, 0.0f, 1, 1, 1, 0.01, 0.3},
    {"gla_tiny", LINATTN_LAYER_SIMPLE_GLA, 2, 2, 8, 8, 0, 0, 0.0f, 0, 0, 1, 0.01, 0.3},
    {"gla_tiny_outsider", LINATTN_LAYER_SIMPLE_GLA, 1, 1, 8, 8, 0, 0, 0.0f, 0, 0, 0, 0.01, 0.3},
};

static int model_size(model_kind model)
{
    /* The tiny model's last layer is not part of its pool: bad_input uses it as a layer outside the pool. */
    return model == MODEL_HYBRID ? (int)(sizeof hybrid_model / sizeof hybrid_model[0])
                                 : (int)(sizeof tiny_model / sizeof tiny_model[0]) - 1;
}

static const layer_spec *model_spec(model_kind model, int index)
{
    return model == MODEL_HYBRID ? &hybrid_model[index] : &tiny_model[index];
}

static void fill_layer_desc(test_layer *layer, const layer_spec *spec)
{
    linattn_layer_desc *d = &layer->desc;
    memset(d, 0, sizeof *d);
    d->struct_size = sizeof *d;
    d->kind = spec->kind;
    d->num_qk_heads = spec->qk_heads;
    d->num_v_heads = spec->v_heads;
    d->head_dim_qk = spec->dim_qk;
    d->head_dim_v = spec->dim_v;
    d->conv_width = spec->conv_width;
    d->qk_l2norm = spec->qk_l2norm;
    d->state_dtype = LINATTN_DTYPE_F32;
    d->scale = spec->scale;
    layer->name = spec->name;
    layer->pass_a = spec->pass_a;
    layer->channels = naive_channels(d);
}

static int random_weights(test_layer *layer, const layer_spec *spec, uint64_t seed)
{
    linattn_layer_desc *d = &layer->desc;
    size_t conv = (size_t)layer->channels * (size_t)spec->conv_width;
    size_t total = conv + (size_t)layer->channels + 2u * (size_t)spec->v_heads;
    layer->weights = malloc(total * sizeof(float));
    if (!layer->weights) return 0;
    uint64_t rng = seed;
    float *cursor = layer->weights;
    for (size_t i = 0; i < total; ++i) cursor[i] = (float)uniform(&rng, -0.6, 0.6);
    d->conv_weight = spec->conv_width > 0 ? cursor : NULL;
    cursor += conv;
    for (int64_t c = 0; c < layer->channels; ++c) cursor[c] *= 0.2f;
    d->conv_bias = spec->has_conv_bias && spec->conv_width > 0 ? cursor : NULL;
    cursor += layer->channels;
    for (int h = 0; h < spec->v_heads; ++h) cursor[h] = (float)log(uniform(&rng, spec->decay_lo, spec->decay_hi));
    d->A_log = cursor;
    cursor += spec->v_heads;
    d->dt_bias = spec->has_dt_bias ? cursor : NULL;
    return 1;
}

int fixture_make_layer(fixture *f, test_layer *layer, model_kind model, int index, uint64_t seed, check_log *log)
{
    const layer_spec *spec = model_spec(model, index);
    memset(layer, 0, sizeof *layer);
    fill_layer_desc(layer, spec);
    if (!CHECK(log, random_weights(layer, spec, mix_seed(seed, (uint64_t)index)), "out of host memory")) return 0;
    layer->info.struct_size = sizeof layer->info;
    if (!CHECK_OK(log, f->api, f->api->layer_create(f->context, &layer->desc, &layer->handle, &layer->info)))
        return 0;
    const linattn_layer_info *info = &layer->info;
    uint64_t recurrent = (uint64_t)naive_recurrent_elements(&layer->desc) * 4u;
    uint64_t conv = (uint64_t)naive_conv_elements(&layer->desc) * 2u;
    return CHECK(log, info->state_bytes == recurrent + conv && info->recurrent_bytes == recurrent &&
                          info->conv_bytes == conv,
                 "layer %s: layer_info says %llu + %llu = %llu state bytes, MATH.md layout gives %llu + %llu",
                 layer->name, (unsigned long long)info->recurrent_bytes, (unsigned long long)info->conv_bytes,
                 (unsigned long long)info->state_bytes, (unsigned long long)recurrent, (unsigned long long)conv);
}

void test_layer_release(test_layer *layer)
{
    free(layer->weights);
    layer->weights = NULL;
}

static int create_pool_and_plan(fixture *f, check_log *log)
{
    linattn_layer *handles[MAX_LAYERS];
    for (int l = 0; l < f->num_layers; ++l) handles[l] = f->layers[l].handle;
    linattn_pool_desc pool = {sizeof pool, f->num_layers, handles, f->capacity, 0};
    if (!CHECK_OK(log, f->api, f->api->pool_create(f->context, &pool, &f->pool))) return 0;
    linattn_pool_info info = {sizeof info, 0, 0, 0};
    uint64_t slot_bytes = 0;
    for (int l = 0; l < f->num_layers; ++l) slot_bytes += f->layers[l].info.state_bytes;
    if (!CHECK_OK(log, f->api, f->api->pool_info(f->pool, &info)) ||
        !CHECK(log, info.capacity == f->capacity && info.slots_in_use == 0 && info.slot_bytes == slot_bytes,
               "pool_info: capacity %d, %d in use, %llu slot bytes; expected %d, 0, %llu", info.capacity,
               info.slots_in_use, (unsigned long long)info.slot_bytes, f->capacity, (unsigned long long)slot_bytes))
        return 0;
    linattn_plan_desc plan = {sizeof plan, MAX_STEP_ENTRIES, MAX_STEP_CHECKPOINTS, 4096};
    return CHECK_OK(log, f->api, f->api->plan_create(f->pool, &plan, &f->plan));
}

int fixture_create(fixture *f, const harness *h, model_kind model, uint64_t seed, int32_t capacity, check_log *log)
{
    memset(f, 0, sizeof *f);
    f->h = h;
    f->api = h->api;
    f->capacity = capacity;
    if (!CHECK(log, devmem_stream_create(&f->stream) == 0, "could not create a stream")) return 0;
    linattn_context_desc desc = {sizeof desc, h->requested, 0};
    if (!CHECK_OK(log, f->api, f->api->context_create(&desc, &f->context))) return 0;
    f->caps.struct_size = sizeof f->caps;
    if (!CHECK_OK(log, f->api, f->api->query_capabilities(f->context, &f->caps))) return 0;
    f->exact = f->caps.backend == LINATTN_BACKEND_CPU;
    for (int l = 0; l < model_size(model); ++l) {
        if (!fixture_make_layer(f, &f->layers[l], model, l, seed, log)) return 0;
        f->num_layers = l + 1;
    }
    return create_pool_and_plan(f, log);
}

static void test_seq_release(test_seq *seq)
{
    for (int l = 0; l < MAX_LAYERS; ++l) {
        free(seq->qkv[l]);
        free(seq->a[l]);
        free(seq->b[l]);
        free(seq->out[l]);
    }
}

void fixture_destroy(fixture *f)
{
    /* Destroying the context releases its layers, pools and plans. */
    if (f->context) f->api->context_destroy(f->context);
    for (int l = 0; l < MAX_LAYERS; ++l) test_layer_release(&f->layers[l]);
    for (int s = 0; s < f->num_seqs; ++s) test_seq_release(&f->seqs[s]);
    devmem_stream_destroy(f->stream);
    memset(f, 0, sizeof *f);
}

int32_t fixture_alloc_slot(fixture *f, check_log *log)
{
    int32_t slot = -1;
    if (!CHECK_OK(log, f->api, f->api->slot_alloc(f->pool, &slot))) return -1;
    return slot;
}

static uint16_t *random_bf16(size_t n, uint64_t *rng, double lo, double hi)
{
    uint16_t *values = malloc(n * sizeof *values);
    for (size_t i = 0; values && i < n; ++i) values[i] = host_float_to_bf16((float)uniform(rng, lo, hi));
    return values;
}

static int fill_seq_tokens(const fixture *f, test_seq *seq, uint64_t seed)
{
    size_t rows = (size_t)seq->length;
    for (int l = 0; l < f->num_layers; ++l) {
        const test_layer *layer = &f->layers[l];
        uint64_t rng = mix_seed(seed, 1000u + (uint64_t)l);
        size_t heads = (size_t)layer->desc.num_v_heads;
        seq->qkv[l] = random_bf16(rows * (size_t)layer->channels, &rng, -1.0, 1.0);
        seq->a[l] = random_bf16(rows * heads, &rng, -2.0, 2.0);
        seq->b[l] = random_bf16(rows * heads, &rng, -2.0, 2.0);
        seq->out[l] = malloc(rows * output_row_elements(layer) * sizeof(uint16_t));
        if (!seq->qkv[l] || !seq->a[l] || !seq->b[l] || !seq->out[l]) return 0;
        memset(seq->out[l], 0xFF, rows * output_row_elements(layer) * sizeof(uint16_t));
    }
    return 1;
}

int fixture_add_seq(fixture *f, int64_t length, uint64_t seed, check_log *log)
{
    if (!CHECK(log, f->num_seqs < MAX_SEQS, "too many sequences")) return -1;
    test_seq *seq = &f->seqs[f->num_seqs];
    memset(seq, 0, sizeof *seq);
    seq->length = length;
    f->num_seqs++; /* counted before filling so fixture_destroy frees a partly filled sequence */
    if (!CHECK(log, fill_seq_tokens(f, seq, seed), "out of host memory")) return -1;
    seq->slot = fixture_alloc_slot(f, log);
    return seq->slot < 0 ? -1 : f->num_seqs - 1;
}

uint8_t *fixture_read_state(fixture *f, int layer, int32_t slot, check_log *log)
{
    uint64_t bytes = f->layers[layer].info.state_bytes;
    uint8_t *state = malloc(bytes ? bytes : 1);
    if (!CHECK(log, state != NULL, "out of host memory")) return NULL;
    if (!CHECK_OK(log, f->api,
                  f->api->slot_read(f->pool, f->layers[layer].handle, slot, state, bytes, f->stream))) {
        free(state);
        return NULL;
    }
    return state;
}

/* ---- steps ---- */

size_t output_row_elements(const test_layer *layer)
{
    return (size_t)layer->desc.num_v_heads * (size_t)layer->desc.head_dim_v;
}

/* Row `row` of `width` elements of a packed buffer with `pad` extra elements per row. */
static uint16_t *row_at(uint16_t *buffer, int64_t row, int64_t width, int64_t pad)
{
    return buffer + row * (width + pad);
}

typedef struct host_stream {
    uint16_t *qkv, *a, *b;
} host_stream;

/* Packed host rows of one layer: each entry's tokens at its offset, padding entries get a constant input. */
static int pack_layer(const fixture *f, const prepared_step *step, int l, host_stream *host)
{
    const test_layer *layer = &f->layers[l];
    int64_t rows = step->batch.num_tokens, pad = step->row_pad;
    int64_t channels = layer->channels, heads = layer->desc.num_v_heads;
    host->qkv = malloc((size_t)(rows * (channels + pad)) * sizeof(uint16_t) + 1);
    host->a = malloc((size_t)(rows * (heads + pad)) * sizeof(uint16_t) + 1);
    host->b = malloc((size_t)(rows * (heads + pad)) * sizeof(uint16_t) + 1);
    if (!host->qkv || !host->a || !host->b) return 0;
    memset(host->qkv, 0, (size_t)(rows * (channels + pad)) * sizeof(uint16_t));
    memset(host->a, 0, (size_t)(rows * (heads + pad)) * sizeof(uint16_t));
    memset(host->b, 0, (size_t)(rows * (heads + pad)) * sizeof(uint16_t));
    for (int e = 0; e < step->num_entries; ++e) {
        const step_entry *entry = &step->entries[e];
        for (int32_t t = 0; t < entry->count; ++t) {
            int64_t row = step->seqs[e].token_offset + t;
            uint16_t *qkv = row_at(host->qkv, row, channels, pad);
            uint16_t *a = row_at(host->a, row, heads, pad), *b = row_at(host->b, row, heads, pad);
            if (entry->seq < 0) {
                for (int64_t c = 0; c < channels; ++c) qkv[c] = host_float_to_bf16(0.5f);
                continue;
            }
            const test_seq *seq = &f->seqs[entry->seq];
            int64_t position = entry->start + t;
            memcpy(qkv, seq->qkv[l] + position * channels, (size_t)channels * sizeof(uint16_t));
            memcpy(a, seq->a[l] + position * heads, (size_t)heads * sizeof(uint16_t));
            memcpy(b, seq->b[l] + position * heads, (size_t)heads * sizeof(uint16_t));
        }
    }
    return 1;
}

/* Device buffers of one layer for `rows` rows; the step keeps them until step_release. */
static int alloc_layer_buffers(fixture *f, prepared_step *step, int l, int64_t rows, check_log *log)
{
    const test_layer *layer = &f->layers[l];
    size_t n = (size_t)rows, pad = (size_t)step->row_pad, heads = (size_t)layer->desc.num_v_heads;
    step->qkv[l] = devmem_alloc(n * ((size_t)layer->channels + pad) * 2);
    step->a[l] = devmem_alloc(n * (heads + pad) * 2);
    step->b[l] = devmem_alloc(n * (heads + pad) * 2);
    step->out[l] = devmem_alloc(n * (output_row_elements(layer) + pad) * 2);
    return CHECK(log, step->qkv[l] && step->a[l] && step->b[l] && step->out[l], "device buffers failed: %s",
                 devmem_last_error());
}

/* Packs the step's rows of layer l and uploads them into the step's buffers (allocated first if it has none). */
static int upload_layer(fixture *f, prepared_step *step, int l, check_log *log)
{
    const test_layer *layer = &f->layers[l];
    size_t rows = (size_t)step->batch.num_tokens, pad = (size_t)step->row_pad;
    size_t heads = (size_t)layer->desc.num_v_heads;
    host_stream host = {0};
    int ok = CHECK(log, pack_layer(f, step, l, &host), "out of host memory") &&
             (step->out[l] || alloc_layer_buffers(f, step, l, step->capacity_rows, log));
    if (ok)
        ok = CHECK(log,
                   devmem_upload(step->qkv[l], host.qkv, rows * ((size_t)layer->channels + pad) * 2, f->stream) == 0 &&
                       devmem_upload(step->a[l], host.a, rows * (heads + pad) * 2, f->stream) == 0 &&
                       devmem_upload(step->b[l], host.b, rows * (heads + pad) * 2, f->stream) == 0,
                   "input upload failed: %s", devmem_last_error());
    free(host.qkv);
    free(host.a);
    free(host.b);
    if (!ok) return 0;
    linattn_forward_args *args = &step->args[l];
    memset(args, 0, sizeof *args);
    args->struct_size = sizeof *args;
    args->activation_dtype = LINATTN_DTYPE_BF16;
    args->qkv = step->qkv[l];
    args->a = layer->pass_a ? step->a[l] : NULL;
    args->b = layer->desc.kind == LINATTN_LAYER_GATED_DELTANET ? step->b[l] : NULL;
    args->out = step->out[l];
    if (pad) {
        args->qkv_row_stride = layer->channels + (int64_t)pad;
        args->a_row_stride = (int64_t)(heads + pad);
        args->b_row_stride = (int64_t)(heads + pad);
        args->out_row_stride = (int64_t)(output_row_elements(layer) + pad);
    }
    return 1;
}

static void describe_batch(prepared_step *step, const step_checkpoint *checkpoints, int num_checkpoints)
{
    int64_t offset = 0;
    for (int e = 0; e < step->num_entries; ++e) {
        const step_entry *entry = &step->entries[e];
        linattn_seq_desc *seq = &step->seqs[e];
        memset(seq, 0, sizeof *seq);
        seq->token_offset = offset;
        seq->start_position = entry->start;
        seq->num_tokens = entry->count;
        seq->state_slot = entry->seq < 0 ? LINATTN_SLOT_NONE : entry->slot;
        seq->init = entry->init;
        seq->source_slot = entry->source_slot;
        offset += entry->count;
    }
    for (int c = 0; c < num_checkpoints; ++c) {
        step->checkpoints[c].position = checkpoints[c].position;
        step->checkpoints[c].seq_index = checkpoints[c].entry;
        step->checkpoints[c].checkpoint_slot = checkpoints[c].slot;
    }
    linattn_batch_desc *batch = &step->batch;
    batch->struct_size = sizeof *batch;
    batch->seq_desc_size = sizeof(linattn_seq_desc);
    batch->checkpoint_desc_size = sizeof(linattn_checkpoint_desc);
    batch->num_seqs = step->num_entries;
    batch->seqs = step->seqs;
    batch->num_tokens = offset;
    batch->num_checkpoints = num_checkpoints;
    batch->checkpoints = num_checkpoints ? step->checkpoints : NULL;
}

int step_prepare(fixture *f, prepared_step *step, const step_entry *entries, int num_entries,
                 const step_checkpoint *checkpoints, int num_checkpoints, int64_t row_pad, check_log *log)
{
    memset(step, 0, sizeof *step);
    if (!CHECK(log, num_entries <= MAX_STEP_ENTRIES && num_checkpoints <= MAX_STEP_CHECKPOINTS, "step too big"))
        return 0;
    step->num_entries = num_entries;
    memcpy(step->entries, entries, (size_t)num_entries * sizeof *entries);
    step->row_pad = row_pad;
    step->plan = f->plan;
    describe_batch(step, checkpoints, num_checkpoints);
    step->capacity_rows = step->batch.num_tokens;
    for (int l = 0; l < f->num_layers; ++l)
        if (!upload_layer(f, step, l, log)) return 0;
    return 1;
}

int step_refill(fixture *f, prepared_step *step, const step_entry *entries, int num_entries, check_log *log)
{
    if (!CHECK(log, num_entries <= MAX_STEP_ENTRIES, "step too big")) return 0;
    step->num_entries = num_entries;
    memcpy(step->entries, entries, (size_t)num_entries * sizeof *entries);
    describe_batch(step, NULL, 0);
    if (!CHECK(log, step->batch.num_tokens <= step->capacity_rows, "refilled step has %lld rows, its buffers %lld",
               (long long)step->batch.num_tokens, (long long)step->capacity_rows))
        return 0;
    for (int l = 0; l < f->num_layers; ++l)
        if (!upload_layer(f, step, l, log)) return 0;
    return 1;
}

int step_set_batch(fixture *f, prepared_step *step, check_log *log)
{
    return CHECK_OK(log, f->api, f->api->plan_set_batch(step->plan, &step->batch, f->stream));
}

/* Rows of real sequences must be fully written (no poison left); padding rows and row gaps must be untouched. */
static int collect_layer(fixture *f, const prepared_step *step, int l, const uint16_t *host, check_log *log)
{
    const test_layer *layer = &f->layers[l];
    int64_t width = (int64_t)output_row_elements(layer), pad = step->row_pad;
    for (int e = 0; e < step->num_entries; ++e) {
        const step_entry *entry = &step->entries[e];
        for (int32_t t = 0; t < entry->count; ++t) {
            const uint16_t *row = host + (step->seqs[e].token_offset + t) * (width + pad);
            int64_t written = 0;
            for (int64_t i = 0; i < width; ++i) written += row[i] != POISON;
            for (int64_t i = width; i < width + pad; ++i)
                if (!CHECK(log, row[i] == POISON, "layer %s: forward wrote into the gap between output rows",
                           layer->name))
                    return 0;
            if (entry->seq < 0) {
                if (!CHECK(log, written == 0, "layer %s: output of a padding sequence was written", layer->name))
                    return 0;
                continue;
            }
            if (!CHECK(log, written == width, "layer %s: seq entry %d token %d: %lld of %lld outputs not written",
                       layer->name, e, t, (long long)(width - written), (long long)width))
                return 0;
            uint16_t *dst = f->seqs[entry->seq].out[l] + (entry->start + t) * width;
            memcpy(dst, row, (size_t)width * sizeof(uint16_t));
        }
    }
    return 1;
}

/* Output elements of one layer's buffer: every row the buffer has, with its gap. */
static size_t output_elements(const fixture *f, const prepared_step *step, int l)
{
    return (size_t)step->capacity_rows * (output_row_elements(&f->layers[l]) + (size_t)step->row_pad);
}

static int poison_outputs(fixture *f, prepared_step *step, uint16_t *host, check_log *log)
{
    for (int l = 0; l < f->num_layers; ++l) {
        size_t elements = output_elements(f, step, l);
        memset(host, 0xFF, elements * sizeof(uint16_t));
        if (!CHECK(log, devmem_upload(step->out[l], host, elements * 2, f->stream) == 0, "poison upload failed: %s",
                   devmem_last_error()))
            return 0;
    }
    return 1;
}

/* Rows of the buffer past the batch's rows must be untouched too. */
static int check_rows_past_batch(const fixture *f, const prepared_step *step, int l, const uint16_t *host,
                                 check_log *log)
{
    size_t row = output_row_elements(&f->layers[l]) + (size_t)step->row_pad;
    for (size_t i = (size_t)step->batch.num_tokens * row; i < output_elements(f, step, l); ++i)
        if (!CHECK(log, host[i] == POISON, "layer %s: forward wrote past the batch's %lld rows", f->layers[l].name,
                   (long long)step->batch.num_tokens))
            return 0;
    return 1;
}

static int collect_outputs(fixture *f, prepared_step *step, uint16_t *host, check_log *log)
{
    for (int l = 0; l < f->num_layers; ++l)
        if (!CHECK(log, devmem_download(host, step->out[l], output_elements(f, step, l) * 2, f->stream) == 0,
                   "download failed: %s", devmem_last_error()) ||
            !check_rows_past_batch(f, step, l, host, log) || !collect_layer(f, step, l, host, log))
            return 0;
    return 1;
}

int step_forward_by(fixture *f, prepared_step *step, step_runner run, void *context, check_log *log)
{
    size_t largest = 0;
    for (int l = 0; l < f->num_layers; ++l)
        if (output_elements(f, step, l) > largest) largest = output_elements(f, step, l);
    uint16_t *host = malloc(largest * sizeof(uint16_t) + 1);
    if (!CHECK(log, host != NULL, "out of host memory")) return 0;
    int ok = poison_outputs(f, step, host, log) && run(f, step, context, log) && collect_outputs(f, step, host, log);
    free(host);
    return ok;
}

static int forward_every_layer(fixture *f, prepared_step *step, void *context, check_log *log)
{
    (void)context;
    for (int l = 0; l < f->num_layers; ++l)
        if (!CHECK_OK(log, f->api, f->api->forward(f->layers[l].handle, step->plan, &step->args[l], f->stream)))
            return 0;
    return 1;
}

int step_forward(fixture *f, prepared_step *step, check_log *log)
{
    return step_forward_by(f, step, forward_every_layer, NULL, log);
}

void step_release(prepared_step *step)
{
    for (int l = 0; l < MAX_LAYERS; ++l) {
        devmem_free(step->qkv[l]);
        devmem_free(step->a[l]);
        devmem_free(step->b[l]);
        devmem_free(step->out[l]);
    }
    memset(step, 0, sizeof *step);
}

int run_step(fixture *f, const step_entry *entries, int num_entries, const step_checkpoint *checkpoints,
             int num_checkpoints, int64_t row_pad, check_log *log)
{
    prepared_step *step = malloc(sizeof *step);
    if (!CHECK(log, step != NULL, "out of host memory")) return 0;
    int ok = step_prepare(f, step, entries, num_entries, checkpoints, num_checkpoints, row_pad, log) &&
             step_set_batch(f, step, log) && step_forward(f, step, log);
    step_release(step);
    free(step);
    return ok;
}

/* ---- comparisons ---- */

int naive_for_seq(const test_layer *layer, int l, const test_seq *seq, int64_t from, int64_t tokens,
                  const naive_state *initial, float *out, naive_state *final)
{
    int64_t heads = layer->desc.num_v_heads;
    const uint16_t *a = layer->pass_a ? seq->a[l] + from * heads : NULL;
    return naive_forward(&layer->desc, tokens, seq->qkv[l] + from * layer->channels, a, seq->b[l] + from * heads,
                         initial, out, final);
}

double rel_err_vs_float(const uint16_t *out, const float *ref, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double d = (double)host_bf16_to_float(out[i]) - (double)ref[i];
        diff += d * d;
        norm += (double)ref[i] * (double)ref[i];
    }
    if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
    return isnan(diff) ? INFINITY : sqrt(diff / norm);
}

double rel_err_bf16(const uint16_t *x, const uint16_t *ref, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double r = host_bf16_to_float(ref[i]), d = (double)host_bf16_to_float(x[i]) - r;
        diff += d * d;
        norm += r * r;
    }
    if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
    return isnan(diff) ? INFINITY : sqrt(diff / norm);
}

double max_abs_diff_bf16(const uint16_t *x, const uint16_t *y, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; ++i) {
        double d = fabs((double)host_bf16_to_float(x[i]) - (double)host_bf16_to_float(y[i]));
        if (isnan(d) || d > worst) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

static double recurrent_value(const test_layer *layer, const uint8_t *bytes, int64_t i)
{
    if (layer->desc.state_dtype == LINATTN_DTYPE_BF16) {
        uint16_t bits;
        memcpy(&bits, bytes + 2 * i, 2);
        return host_bf16_to_float(bits);
    }
    float value;
    memcpy(&value, bytes + 4 * i, 4);
    return value;
}

static size_t recurrent_bytes(const test_layer *layer)
{
    size_t element = layer->desc.state_dtype == LINATTN_DTYPE_BF16 ? 2u : 4u;
    return (size_t)naive_recurrent_elements(&layer->desc) * element;
}

double state_rel_err_vs_naive(const test_layer *layer, const uint8_t *bytes, const naive_state *ref,
                              int *conv_equal)
{
    double diff = 0.0, norm = 0.0;
    int64_t n = naive_recurrent_elements(&layer->desc);
    for (int64_t i = 0; i < n; ++i) {
        double d = recurrent_value(layer, bytes, i) - ref->recurrent[i];
        diff += d * d;
        norm += ref->recurrent[i] * ref->recurrent[i];
    }
    const uint8_t *conv = bytes + recurrent_bytes(layer);
    *conv_equal = 1;
    for (int64_t i = 0; i < naive_conv_elements(&layer->desc); ++i) {
        uint16_t bits;
        memcpy(&bits, conv + 2 * i, 2);
        if ((double)host_bf16_to_float(bits) != ref->conv[i]) *conv_equal = 0;
    }
    if (norm == 0.0) return diff == 0.0 ? 0.0 : INFINITY;
    return isnan(diff) ? INFINITY : sqrt(diff / norm);
}

int agree_outputs(const fixture *f, check_log *log, const char *what, const uint16_t *x, const uint16_t *y, size_t n,
                  double *measure)
{
    if (f->exact) {
        *measure = max_abs_diff_bf16(x, y, n);
        return CHECK(log, memcmp(x, y, n * sizeof *x) == 0,
                     "%s: outputs differ (max abs diff %.3g), CPU must be bitwise", what, *measure);
    }
    *measure = rel_err_bf16(x, y, n);
    return CHECK(log, *measure <= REL_TOLERANCE, "%s: outputs rel err %.3g > %g", what, *measure, REL_TOLERANCE);
}

int agree_states(const fixture *f, check_log *log, const char *what, int layer, const uint8_t *x, const uint8_t *y,
                 double *measure)
{
    const test_layer *tl = &f->layers[layer];
    size_t recurrent = recurrent_bytes(tl), total = (size_t)tl->info.state_bytes;
    double diff = 0.0, norm = 0.0, worst = 0.0;
    for (int64_t i = 0; i < naive_recurrent_elements(&tl->desc); ++i) {
        double a = recurrent_value(tl, x, i), b = recurrent_value(tl, y, i), d = fabs(a - b);
        diff += d * d;
        norm += b * b;
        if (isnan(d) || d > worst) worst = isnan(d) ? INFINITY : d;
    }
    if (!CHECK(log, memcmp(x + recurrent, y + recurrent, total - recurrent) == 0,
               "%s: layer %s conv state differs", what, tl->name))
        return 0;
    if (f->exact) {
        *measure = worst;
        return CHECK(log, memcmp(x, y, recurrent) == 0,
                     "%s: layer %s state bytes differ (max abs diff %.3g), CPU must be bitwise", what, tl->name,
                     worst);
    }
    *measure = norm == 0.0 ? (diff == 0.0 ? 0.0 : INFINITY) : sqrt(diff / norm);
    return CHECK(log, *measure <= REL_TOLERANCE, "%s: layer %s state rel err %.3g > %g", what, tl->name, *measure,
                 REL_TOLERANCE);
}
