/* scenarios_api.c — the contract of abi/linattn.h around the math: version negotiation, capabilities, and refusal
 * of bad input with a distinct status, a message, untouched out-parameters and unchanged state. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "integration/conformance/scenarios.h"

static scenario_outcome outcome_of(const check_log *log)
{
    return log->failed ? OUTCOME_FAIL : OUTCOME_PASS;
}

/* ---- version ---- */

static const linattn_api untouched_marker; /* its address stands in for "out pointer not written" */

static void expect_refused_version(const harness *h, const linattn_api *api, uint32_t major, uint32_t minor,
                                   check_log *log)
{
    const linattn_api *out = &untouched_marker;
    linattn_status status = h->get_api(major, minor, &out);
    const char *message = api->last_error_message();
    CHECK(log, status == LINATTN_ERR_ABI_VERSION, "get_api(%u, %u) returned %d, expected LINATTN_ERR_ABI_VERSION",
          major, minor, (int)status);
    CHECK(log, message && message[0], "get_api(%u, %u): empty last_error_message", major, minor);
    CHECK(log, out == &untouched_marker, "get_api(%u, %u) wrote *out_api although it failed", major, minor);
}

/* Every entry of the 1.0 table is present. */
static int table_complete(const linattn_api *api)
{
    return api->version_string && api->last_error_message && api->context_create && api->context_destroy &&
           api->query_capabilities && api->layer_create && api->layer_destroy && api->layer_info &&
           api->pool_create && api->pool_destroy && api->pool_info && api->slot_alloc && api->slot_free &&
           api->slot_copy && api->slot_zero && api->slot_read && api->slot_write && api->plan_create &&
           api->plan_destroy && api->plan_set_batch && api->forward && api->spec_verify && api->spec_commit &&
           api->get_stats;
}

scenario_outcome scenario_version(const harness *h, check_log *log)
{
    const linattn_api *api = NULL, *older = NULL;
    linattn_status status = h->get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, &api);
    if (!CHECK(log, status == LINATTN_OK && api, "get_api(%d, %d) returned %d", LINATTN_ABI_VERSION_MAJOR,
               LINATTN_ABI_VERSION_MINOR, (int)status))
        return OUTCOME_FAIL;
    CHECK(log, api->abi_major == LINATTN_ABI_VERSION_MAJOR && (int64_t)api->abi_minor >= LINATTN_ABI_VERSION_MINOR,
          "table says ABI %u.%u", api->abi_major, api->abi_minor);
    CHECK(log, api->struct_size >= sizeof(linattn_api), "table struct_size %u < %zu", api->struct_size,
          sizeof(linattn_api));
    CHECK(log, table_complete(api), "the function table has NULL entries");
    const char *version = api->version_string ? api->version_string() : NULL;
    CHECK(log, version && version[0], "empty version string");
    status = h->get_api(LINATTN_ABI_VERSION_MAJOR, 0, &older);
    CHECK(log, status == LINATTN_OK && older && older->abi_major == LINATTN_ABI_VERSION_MAJOR,
          "get_api(1, 0) (a host built against an older minor) returned %d", (int)status);
    expect_refused_version(h, api, LINATTN_ABI_VERSION_MAJOR + 1, 0, log);
    expect_refused_version(h, api, LINATTN_ABI_VERSION_MAJOR - 1, 0, log);
    expect_refused_version(h, api, LINATTN_ABI_VERSION_MAJOR, api->abi_minor + 1, log);
    status = h->get_api(LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR, NULL);
    CHECK(log, status == LINATTN_ERR_NULL_ARGUMENT, "get_api(.., NULL) returned %d, expected NULL_ARGUMENT",
          (int)status);
    check_note(log, "\"%s\", ABI %u.%u", version ? version : "", api->abi_major, api->abi_minor);
    return outcome_of(log);
}

/* ---- capabilities ---- */

scenario_outcome scenario_capabilities(const harness *h, check_log *log)
{
    const linattn_api *api = h->api;
    linattn_context_desc desc = {sizeof desc, h->requested, 0};
    linattn_context *context = NULL;
    if (!CHECK_OK(log, api, api->context_create(&desc, &context))) return OUTCOME_FAIL;
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    if (CHECK_OK(log, api, api->query_capabilities(context, &caps))) {
        uint32_t both = (1u << LINATTN_LAYER_GATED_DELTANET) | (1u << LINATTN_LAYER_SIMPLE_GLA);
        CHECK(log, (caps.layer_kinds & both) == both, "layer_kinds 0x%x lacks GDN or simple GLA", caps.layer_kinds);
        CHECK(log, caps.state_dtypes & (1u << LINATTN_DTYPE_F32), "state_dtypes 0x%x lacks F32", caps.state_dtypes);
        CHECK(log, caps.checkpoint_alignment > 0, "checkpoint_alignment %d", caps.checkpoint_alignment);
        CHECK(log, memchr(caps.device_name, 0, sizeof caps.device_name) && caps.device_name[0],
              "device_name empty or not NUL-terminated");
        CHECK(log, caps.abi_major == (int32_t)api->abi_major && caps.abi_minor == (int32_t)api->abi_minor,
              "capabilities say ABI %d.%d, the table %u.%u", caps.abi_major, caps.abi_minor, api->abi_major,
              api->abi_minor);
        CHECK(log, caps.backend == LINATTN_BACKEND_CPU || caps.backend == LINATTN_BACKEND_CUDA, "backend %d",
              caps.backend);
        CHECK(log, h->requested == LINATTN_BACKEND_AUTO || caps.backend == h->requested,
              "asked for backend %d, got %d", h->requested, caps.backend);
        CHECK(log, caps.max_draft_tokens >= 0, "max_draft_tokens %d", caps.max_draft_tokens);
        check_note(log, "%s, \"%s\", alignment %d, state dtypes 0x%x, version %d.%d.%d",
                   caps.backend == LINATTN_BACKEND_CUDA ? "cuda" : "cpu", caps.device_name,
                   caps.checkpoint_alignment, caps.state_dtypes, caps.version_major, caps.version_minor,
                   caps.version_patch);
    }
    CHECK_OK(log, api, api->context_destroy(context));
    return outcome_of(log);
}

/* ---- bad input ---- */

/*
 * The tiny model in a pool of 4 slots: slots 0 and 1 hold two sequences (20 and 30 tokens, batch B0, with a
 * checkpoint of the first into slot 2), slot 3 was allocated and freed. B0 is the current batch of the plan and of
 * a second, small plan (4 sequences, 2 checkpoints, 64 tokens) used for capacity checks.
 */
typedef struct bad_env {
    const harness *h;
    const linattn_api *api;
    fixture *f;
    prepared_step *b0;
    linattn_plan *small_plan;
    test_layer outsider; /* a layer of f's context that is not in the pool */
    int32_t checkpoint_slot, freed_slot;
    float *big_weights;  /* zeros, long enough for any layer shape a case tries */
    uint16_t *b0_out[2][MAX_LAYERS]; /* B0's outputs per sequence and layer */
    char message[256];   /* last_error_message right after the refused call */
    int out_touched;     /* an out-parameter of the refused call changed */
} bad_env;

/* What a case returns instead of a status: it does not apply to this library, or its own setup failed. */
enum { NOT_APPLICABLE = -1, SETUP_FAILED = -2 };
enum { SLOTS = 4, SMALL_PLAN_SEQS = 4, SMALL_PLAN_TOKENS = 64 };

/* Records the message of the call just made (the library keeps it only until the thread's next call). */
static linattn_status refused(bad_env *e, linattn_status status)
{
    const char *message = e->api->last_error_message();
    snprintf(e->message, sizeof e->message, "%s", message ? message : "");
    return status;
}

typedef linattn_status (*bad_case_fn)(bad_env *e, int variant);

/* -- context_create -- */
enum { CTX_NULL_DESC, CTX_NULL_OUT, CTX_SIZE_SMALL, CTX_SIZE_LARGE, CTX_BACKEND };
static linattn_status bad_context_create(bad_env *e, int variant)
{
    linattn_context_desc desc = {sizeof desc, e->h->requested, 0};
    linattn_context *marker = (linattn_context *)&desc, *out = marker;
    if (variant == CTX_SIZE_SMALL) desc.struct_size = 4;
    if (variant == CTX_SIZE_LARGE) desc.struct_size = sizeof desc + 8;
    if (variant == CTX_BACKEND) desc.backend = 99;
    linattn_status status = refused(e, e->api->context_create(variant == CTX_NULL_DESC ? NULL : &desc,
                                                              variant == CTX_NULL_OUT ? NULL : &out));
    e->out_touched = out != marker;
    if (status == LINATTN_OK && out != marker) e->api->context_destroy(out);
    return status;
}

/* -- layer_create -- */
enum {
    LAYER_NULL_DESC, LAYER_NULL_CONV, LAYER_NULL_A_LOG, LAYER_SIZE, LAYER_KIND_99, LAYER_KIND_0, LAYER_V_HEADS,
    LAYER_HEAD_DIM, LAYER_NO_HEADS, LAYER_DTYPE, LAYER_NULL_OUT
};
static linattn_status bad_layer_create(bad_env *e, int variant)
{
    linattn_layer_desc desc = e->f->layers[0].desc; /* the tiny GDN layer, weights swapped for zeros below */
    desc.conv_weight = desc.conv_bias = desc.A_log = desc.dt_bias = e->big_weights;
    switch (variant) {
    case LAYER_NULL_CONV: desc.conv_weight = NULL; break;
    case LAYER_NULL_A_LOG: desc.A_log = NULL; break;
    case LAYER_SIZE: desc.struct_size = sizeof desc - 4; break;
    case LAYER_KIND_99: desc.kind = 99; break;
    case LAYER_KIND_0: desc.kind = 0; break;
    case LAYER_V_HEADS: desc.num_qk_heads = 3; desc.num_v_heads = 4; break;
    case LAYER_HEAD_DIM: desc.head_dim_qk = 257; break;
    case LAYER_NO_HEADS: desc.num_qk_heads = 0; break;
    case LAYER_DTYPE: desc.state_dtype = 99; break;
    default: break;
    }
    linattn_layer *marker = (linattn_layer *)&desc, *out = marker;
    linattn_layer_info info, info_before;
    memset(&info, 0xA5, sizeof info);
    info.struct_size = sizeof info;
    info_before = info;
    linattn_status status = refused(e, e->api->layer_create(e->f->context, variant == LAYER_NULL_DESC ? NULL : &desc,
                                                            variant == LAYER_NULL_OUT ? NULL : &out, &info));
    e->out_touched = out != marker || memcmp(&info, &info_before, sizeof info) != 0;
    if (status == LINATTN_OK && out != marker) e->api->layer_destroy(out);
    return status;
}

/* -- pool_create / plan_create -- */
enum { POOL_NULL_DESC, POOL_SIZE, PLAN_SIZE, PLAN_NEGATIVE };
static linattn_status bad_pool_or_plan_create(bad_env *e, int variant)
{
    linattn_layer *layers[] = {e->outsider.handle};
    linattn_pool_desc pool = {variant == POOL_SIZE ? 0u : (uint32_t)sizeof pool, 1, layers, 1, 0};
    linattn_plan_desc plan = {sizeof plan, variant == PLAN_NEGATIVE ? -1 : 4, 1, 64};
    if (variant == PLAN_SIZE) plan.struct_size = sizeof plan + 8;
    linattn_status status;
    if (variant == POOL_NULL_DESC || variant == POOL_SIZE) {
        linattn_pool *marker = (linattn_pool *)&pool, *out = marker;
        status = refused(e, e->api->pool_create(e->f->context, variant == POOL_NULL_DESC ? NULL : &pool, &out));
        e->out_touched = out != marker;
        if (status == LINATTN_OK && out != marker) e->api->pool_destroy(out);
    } else {
        linattn_plan *marker = (linattn_plan *)&plan, *out = marker;
        status = refused(e, e->api->plan_create(e->f->pool, &plan, &out));
        e->out_touched = out != marker;
        if (status == LINATTN_OK && out != marker) e->api->plan_destroy(out);
    }
    return status;
}

/* -- plan_set_batch: B0 with one thing wrong -- */
enum {
    BATCH_NULL, BATCH_NULL_SEQS, BATCH_SIZE, BATCH_SEQ_SIZE, BATCH_CHECKPOINT_SIZE, BATCH_SLOT_RANGE,
    BATCH_SOURCE_RANGE, BATCH_CHECKPOINT_SLOT_RANGE, BATCH_FREED_SLOT, BATCH_SAME_SLOT, BATCH_CHECKPOINT_ON_STATE,
    BATCH_SOURCE_WRITTEN, BATCH_OVERLAP, BATCH_BEYOND_STREAM, BATCH_NEGATIVE_OFFSET, BATCH_CHECKPOINT_AT_START,
    BATCH_CHECKPOINT_PAST_END, BATCH_CHECKPOINT_MISALIGNED, BATCH_TOO_MANY_SEQS, BATCH_TOO_MANY_TOKENS,
    BATCH_UNKNOWN_INIT, BATCH_ZERO_INIT_LATE_START
};
static linattn_status bad_batch(bad_env *e, int variant)
{
    linattn_seq_desc seqs[SMALL_PLAN_SEQS + 1];
    linattn_checkpoint_desc checkpoint = e->b0->checkpoints[0];
    linattn_batch_desc batch = e->b0->batch;
    memcpy(seqs, e->b0->seqs, 2 * sizeof seqs[0]);
    batch.seqs = seqs;
    batch.checkpoints = &checkpoint;
    linattn_plan *plan = e->f->plan;
    switch (variant) {
    case BATCH_NULL_SEQS: batch.seqs = NULL; break;
    case BATCH_SIZE: batch.struct_size = sizeof batch - 4; break;
    case BATCH_SEQ_SIZE: batch.seq_desc_size = sizeof seqs[0] - 8; break;
    case BATCH_CHECKPOINT_SIZE: batch.checkpoint_desc_size = sizeof checkpoint + 4; break;
    case BATCH_SLOT_RANGE: seqs[1].state_slot = SLOTS; break;
    case BATCH_SOURCE_RANGE: seqs[1].init = LINATTN_INIT_FROM_SLOT; seqs[1].source_slot = -5; break;
    case BATCH_CHECKPOINT_SLOT_RANGE: checkpoint.checkpoint_slot = SLOTS + 3; break;
    case BATCH_FREED_SLOT: seqs[1].state_slot = e->freed_slot; seqs[1].init = LINATTN_INIT_CONTINUE; break;
    case BATCH_SAME_SLOT: seqs[1].state_slot = seqs[0].state_slot; break;
    case BATCH_CHECKPOINT_ON_STATE: checkpoint.checkpoint_slot = seqs[1].state_slot; break;
    case BATCH_SOURCE_WRITTEN: seqs[1].init = LINATTN_INIT_FROM_SLOT; seqs[1].source_slot = seqs[0].state_slot; break;
    case BATCH_OVERLAP: seqs[1].token_offset = 10; break;
    case BATCH_BEYOND_STREAM: batch.num_tokens -= 1; break;
    case BATCH_NEGATIVE_OFFSET: seqs[0].token_offset = -1; break;
    case BATCH_CHECKPOINT_AT_START: checkpoint.position = seqs[0].start_position; break;
    case BATCH_CHECKPOINT_PAST_END: checkpoint.position = seqs[0].start_position + seqs[0].num_tokens + 1; break;
    case BATCH_CHECKPOINT_MISALIGNED:
        /* Position 5 of the 30-token sequence is neither its end nor, unless the alignment divides 5, aligned. */
        if (5 % e->f->caps.checkpoint_alignment == 0) return NOT_APPLICABLE;
        checkpoint.seq_index = 1;
        checkpoint.position = 5;
        break;
    case BATCH_TOO_MANY_SEQS:
        plan = e->small_plan;
        batch.num_seqs = SMALL_PLAN_SEQS + 1;
        for (int s = 2; s < batch.num_seqs; ++s) {
            memset(&seqs[s], 0, sizeof seqs[s]);
            seqs[s].token_offset = batch.num_tokens;
            seqs[s].state_slot = LINATTN_SLOT_NONE;
        }
        break;
    case BATCH_TOO_MANY_TOKENS: plan = e->small_plan; batch.num_tokens = SMALL_PLAN_TOKENS + 1; break;
    case BATCH_UNKNOWN_INIT: seqs[1].init = 7; break;
    case BATCH_ZERO_INIT_LATE_START: seqs[1].start_position = 5; break;
    default: break;
    }
    return refused(e, e->api->plan_set_batch(plan, variant == BATCH_NULL ? NULL : &batch, e->f->stream));
}

/* -- forward: B0's arguments for the GDN layer with one thing wrong -- */
enum {
    FWD_NULL_ARGS, FWD_NULL_QKV, FWD_NULL_OUT, FWD_NULL_A, FWD_NULL_B, FWD_SIZE, FWD_DTYPE, FWD_STRIDE,
    FWD_LAYER_NOT_IN_POOL
};
static linattn_status bad_forward(bad_env *e, int variant)
{
    linattn_forward_args args = e->b0->args[0];
    linattn_layer *layer = e->f->layers[0].handle;
    switch (variant) {
    case FWD_NULL_QKV: args.qkv = NULL; break;
    case FWD_NULL_OUT: args.out = NULL; break;
    case FWD_NULL_A: args.a = NULL; break;
    case FWD_NULL_B: args.b = NULL; break;
    case FWD_SIZE: args.struct_size = sizeof args + 16; break;
    case FWD_DTYPE: args.activation_dtype = LINATTN_DTYPE_F32; break;
    case FWD_STRIDE: args.qkv_row_stride = e->f->layers[0].channels - 1; break;
    case FWD_LAYER_NOT_IN_POOL: layer = e->outsider.handle; args = e->b0->args[1]; break;
    default: break;
    }
    return refused(e, e->api->forward(layer, e->f->plan, variant == FWD_NULL_ARGS ? NULL : &args, e->f->stream));
}

/* -- slots -- */
enum {
    SLOT_FREE_RANGE, SLOT_FREE_NEGATIVE, SLOT_FREE_TWICE, SLOT_READ_RANGE, SLOT_READ_FREED, SLOT_READ_NULL,
    SLOT_READ_SMALL, SLOT_WRITE_SMALL, SLOT_READ_OUTSIDER, SLOT_COPY_RANGE, SLOT_COPY_FREED, SLOT_ZERO_RANGE,
    SLOT_ZERO_FREED, SLOT_ALLOC_NULL, SLOT_ALLOC_EXHAUSTED
};
static linattn_status exhaust_pool(bad_env *e)
{
    int32_t taken[SLOTS], count = 0, out = 0;
    while (count < SLOTS && e->api->slot_alloc(e->f->pool, &out) == LINATTN_OK) taken[count++] = out;
    out = -77;
    linattn_status status = refused(e, e->api->slot_alloc(e->f->pool, &out));
    e->out_touched = out != -77;
    for (int32_t i = 0; i < count; ++i) e->api->slot_free(e->f->pool, taken[i]);
    return status;
}

static linattn_status bad_slot(bad_env *e, int variant)
{
    const linattn_api *api = e->api;
    linattn_pool *pool = e->f->pool;
    const test_layer *layer = &e->f->layers[0];
    uint64_t bytes = layer->info.state_bytes;
    uint8_t *buffer = malloc(bytes + 1);
    if (!buffer) return SETUP_FAILED;
    memset(buffer, 0x11, bytes + 1);
    linattn_stream_t stream = e->f->stream;
    linattn_status status = NOT_APPLICABLE;
    switch (variant) {
    case SLOT_FREE_RANGE: status = refused(e, api->slot_free(pool, SLOTS)); break;
    case SLOT_FREE_NEGATIVE: status = refused(e, api->slot_free(pool, -1)); break;
    case SLOT_FREE_TWICE: status = refused(e, api->slot_free(pool, e->freed_slot)); break;
    case SLOT_READ_RANGE: status = refused(e, api->slot_read(pool, layer->handle, -2, buffer, bytes, stream)); break;
    case SLOT_READ_FREED:
        status = refused(e, api->slot_read(pool, layer->handle, e->freed_slot, buffer, bytes, stream));
        break;
    case SLOT_READ_NULL: status = refused(e, api->slot_read(pool, layer->handle, 0, NULL, bytes, stream)); break;
    case SLOT_READ_SMALL: status = refused(e, api->slot_read(pool, layer->handle, 0, buffer, bytes - 1, stream)); break;
    case SLOT_WRITE_SMALL:
        status = refused(e, api->slot_write(pool, layer->handle, 0, buffer, bytes - 1, stream));
        break;
    case SLOT_READ_OUTSIDER:
        status = refused(e, api->slot_read(pool, e->outsider.handle, 0, buffer, e->outsider.info.state_bytes, stream));
        break;
    case SLOT_COPY_RANGE: status = refused(e, api->slot_copy(pool, SLOTS, 0, stream)); break;
    case SLOT_COPY_FREED: status = refused(e, api->slot_copy(pool, e->freed_slot, 0, stream)); break;
    case SLOT_ZERO_RANGE: status = refused(e, api->slot_zero(pool, SLOTS + 1, stream)); break;
    case SLOT_ZERO_FREED: status = refused(e, api->slot_zero(pool, e->freed_slot, stream)); break;
    case SLOT_ALLOC_NULL: status = refused(e, api->slot_alloc(pool, NULL)); break;
    case SLOT_ALLOC_EXHAUSTED: status = exhaust_pool(e); break;
    default: break;
    }
    free(buffer);
    return status;
}

/* -- objects still referenced, handles that are dead or were never handles -- */
enum { IN_USE_LAYER, IN_USE_POOL, HANDLE_NEVER_CREATED, HANDLE_POOL_AS_LAYER, HANDLE_PLAN_AS_POOL };
static linattn_status bad_reference(bad_env *e, int variant)
{
    int not_a_handle = 0;
    linattn_layer_info layer_info = {sizeof layer_info, 0, 0, 0};
    linattn_pool_info pool_info = {sizeof pool_info, 0, 0, 0};
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    switch (variant) {
    case IN_USE_LAYER: return refused(e, e->api->layer_destroy(e->f->layers[0].handle));
    case IN_USE_POOL: return refused(e, e->api->pool_destroy(e->f->pool));
    case HANDLE_NEVER_CREATED:
        return refused(e, e->api->query_capabilities((const linattn_context *)&not_a_handle, &caps));
    case HANDLE_POOL_AS_LAYER:
        return refused(e, e->api->layer_info((const linattn_layer *)e->f->pool, &layer_info));
    case HANDLE_PLAN_AS_POOL: return refused(e, e->api->pool_info((const linattn_pool *)e->f->plan, &pool_info));
    default: return NOT_APPLICABLE;
    }
}

/* A second context with one layer, a pool and a plan, for use-after-destroy. */
typedef struct side_objects {
    linattn_context *context;
    linattn_layer *layer;
    linattn_pool *pool;
    linattn_plan *plan;
} side_objects;

static int make_side_objects(bad_env *e, side_objects *side)
{
    const linattn_api *api = e->api;
    linattn_context_desc desc = {sizeof desc, e->h->requested, 0};
    memset(side, 0, sizeof *side);
    if (api->context_create(&desc, &side->context) != LINATTN_OK) return 0;
    if (api->layer_create(side->context, &e->outsider.desc, &side->layer, NULL) != LINATTN_OK) return 0;
    linattn_pool_desc pool = {sizeof pool, 1, &side->layer, 1, 0};
    if (api->pool_create(side->context, &pool, &side->pool) != LINATTN_OK) return 0;
    linattn_plan_desc plan = {sizeof plan, 2, 1, 16};
    return api->plan_create(side->pool, &plan, &side->plan) == LINATTN_OK;
}

enum {
    DEAD_PLAN, DEAD_POOL, DEAD_LAYER, DEAD_CONTEXT, DEAD_CONTEXT_TWICE, DEAD_CONTEXTS_LAYER, DEAD_CONTEXTS_POOL,
    DEAD_CONTEXTS_PLAN
};
static linattn_status bad_after_destroy(bad_env *e, int variant)
{
    const linattn_api *api = e->api;
    side_objects side;
    linattn_status status = NOT_APPLICABLE;
    if (!make_side_objects(e, &side)) {
        snprintf(e->message, sizeof e->message, "%s", api->last_error_message());
        if (side.context) api->context_destroy(side.context);
        return SETUP_FAILED;
    }
    linattn_layer_info layer_info = {sizeof layer_info, 0, 0, 0};
    linattn_pool_info pool_info = {sizeof pool_info, 0, 0, 0};
    linattn_capabilities caps;
    memset(&caps, 0, sizeof caps);
    caps.struct_size = sizeof caps;
    int context_alive = 1;
    switch (variant) {
    case DEAD_PLAN:
        api->plan_destroy(side.plan);
        status = refused(e, api->plan_set_batch(side.plan, &e->b0->batch, NULL));
        break;
    case DEAD_POOL:
        api->plan_destroy(side.plan);
        api->pool_destroy(side.pool);
        status = refused(e, api->pool_info(side.pool, &pool_info));
        break;
    case DEAD_LAYER:
        api->plan_destroy(side.plan);
        api->pool_destroy(side.pool);
        api->layer_destroy(side.layer);
        status = refused(e, api->layer_info(side.layer, &layer_info));
        break;
    default:
        api->context_destroy(side.context);
        context_alive = 0;
        if (variant == DEAD_CONTEXT) status = refused(e, api->query_capabilities(side.context, &caps));
        if (variant == DEAD_CONTEXT_TWICE) status = refused(e, api->context_destroy(side.context));
        if (variant == DEAD_CONTEXTS_LAYER) status = refused(e, api->layer_info(side.layer, &layer_info));
        if (variant == DEAD_CONTEXTS_POOL) status = refused(e, api->pool_info(side.pool, &pool_info));
        if (variant == DEAD_CONTEXTS_PLAN) status = refused(e, api->plan_destroy(side.plan));
        break;
    }
    if (context_alive) api->context_destroy(side.context);
    return status;
}

/* -- version negotiation and unimplemented hooks -- */
enum { API_MAJOR, API_MINOR, API_NULL_OUT, SPEC_COMMIT };
static linattn_status bad_api(bad_env *e, int variant)
{
    const linattn_api *out = &untouched_marker;
    linattn_status status;
    if (variant == SPEC_COMMIT) {
        if (e->f->caps.max_draft_tokens != 0) return NOT_APPLICABLE;
        linattn_accept_desc accepted = {sizeof accepted, 0, NULL, NULL};
        return refused(e, e->api->spec_commit(e->f->pool, e->f->plan, &accepted, e->f->stream));
    }
    if (variant == API_NULL_OUT) return refused(e, e->h->get_api(LINATTN_ABI_VERSION_MAJOR, 0, NULL));
    uint32_t minor = variant == API_MINOR ? e->api->abi_minor + 1 : 0;
    status = refused(e, e->h->get_api(variant == API_MAJOR ? LINATTN_ABI_VERSION_MAJOR + 1 : 1, minor, &out));
    e->out_touched = out != &untouched_marker;
    return status;
}

typedef struct bad_case {
    const char *name;
    linattn_status expected;
    bad_case_fn call;
    int variant;
} bad_case;

static const bad_case bad_cases[] = {
    {"context_create(NULL desc)", LINATTN_ERR_NULL_ARGUMENT, bad_context_create, CTX_NULL_DESC},
    {"context_create(NULL out)", LINATTN_ERR_NULL_ARGUMENT, bad_context_create, CTX_NULL_OUT},
    {"layer_create(NULL desc)", LINATTN_ERR_NULL_ARGUMENT, bad_layer_create, LAYER_NULL_DESC},
    {"layer_create(NULL out)", LINATTN_ERR_NULL_ARGUMENT, bad_layer_create, LAYER_NULL_OUT},
    {"layer_create(conv_weight NULL, conv_width 4)", LINATTN_ERR_NULL_ARGUMENT, bad_layer_create, LAYER_NULL_CONV},
    {"layer_create(A_log NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_layer_create, LAYER_NULL_A_LOG},
    {"pool_create(NULL desc)", LINATTN_ERR_NULL_ARGUMENT, bad_pool_or_plan_create, POOL_NULL_DESC},
    {"plan_set_batch(NULL batch)", LINATTN_ERR_NULL_ARGUMENT, bad_batch, BATCH_NULL},
    {"plan_set_batch(seqs NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_batch, BATCH_NULL_SEQS},
    {"forward(NULL args)", LINATTN_ERR_NULL_ARGUMENT, bad_forward, FWD_NULL_ARGS},
    {"forward(qkv NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_forward, FWD_NULL_QKV},
    {"forward(out NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_forward, FWD_NULL_OUT},
    {"forward(GDN, a NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_forward, FWD_NULL_A},
    {"forward(GDN, b NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_forward, FWD_NULL_B},
    {"slot_read(NULL dst)", LINATTN_ERR_NULL_ARGUMENT, bad_slot, SLOT_READ_NULL},
    {"slot_alloc(NULL out)", LINATTN_ERR_NULL_ARGUMENT, bad_slot, SLOT_ALLOC_NULL},
    {"get_api(1, 0, NULL)", LINATTN_ERR_NULL_ARGUMENT, bad_api, API_NULL_OUT},
    {"context_desc.struct_size 4", LINATTN_ERR_STRUCT_SIZE, bad_context_create, CTX_SIZE_SMALL},
    {"context_desc.struct_size too large", LINATTN_ERR_STRUCT_SIZE, bad_context_create, CTX_SIZE_LARGE},
    {"layer_desc.struct_size short", LINATTN_ERR_STRUCT_SIZE, bad_layer_create, LAYER_SIZE},
    {"pool_desc.struct_size 0", LINATTN_ERR_STRUCT_SIZE, bad_pool_or_plan_create, POOL_SIZE},
    {"plan_desc.struct_size too large", LINATTN_ERR_STRUCT_SIZE, bad_pool_or_plan_create, PLAN_SIZE},
    {"batch_desc.struct_size short", LINATTN_ERR_STRUCT_SIZE, bad_batch, BATCH_SIZE},
    {"batch_desc.seq_desc_size wrong", LINATTN_ERR_STRUCT_SIZE, bad_batch, BATCH_SEQ_SIZE},
    {"batch_desc.checkpoint_desc_size wrong", LINATTN_ERR_STRUCT_SIZE, bad_batch, BATCH_CHECKPOINT_SIZE},
    {"forward_args.struct_size too large", LINATTN_ERR_STRUCT_SIZE, bad_forward, FWD_SIZE},
    {"get_api(2, 0)", LINATTN_ERR_ABI_VERSION, bad_api, API_MAJOR},
    {"get_api(1, library minor + 1)", LINATTN_ERR_ABI_VERSION, bad_api, API_MINOR},
    {"layer in use destroyed", LINATTN_ERR_IN_USE, bad_reference, IN_USE_LAYER},
    {"pool in use destroyed", LINATTN_ERR_IN_USE, bad_reference, IN_USE_POOL},
    {"context never created", LINATTN_ERR_INVALID_HANDLE, bad_reference, HANDLE_NEVER_CREATED},
    {"pool passed as a layer", LINATTN_ERR_INVALID_HANDLE, bad_reference, HANDLE_POOL_AS_LAYER},
    {"plan passed as a pool", LINATTN_ERR_INVALID_HANDLE, bad_reference, HANDLE_PLAN_AS_POOL},
    {"plan used after plan_destroy", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_PLAN},
    {"pool used after pool_destroy", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_POOL},
    {"layer used after layer_destroy", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_LAYER},
    {"context used after context_destroy", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_CONTEXT},
    {"context destroyed twice", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_CONTEXT_TWICE},
    {"layer used after its context was destroyed", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy,
     DEAD_CONTEXTS_LAYER},
    {"pool used after its context was destroyed", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_CONTEXTS_POOL},
    {"plan used after its context was destroyed", LINATTN_ERR_INVALID_HANDLE, bad_after_destroy, DEAD_CONTEXTS_PLAN},
    {"layer kind 99", LINATTN_ERR_UNKNOWN_LAYER_KIND, bad_layer_create, LAYER_KIND_99},
    {"layer kind 0", LINATTN_ERR_UNKNOWN_LAYER_KIND, bad_layer_create, LAYER_KIND_0},
    {"v heads not a multiple of q/k heads", LINATTN_ERR_INVALID_SHAPE, bad_layer_create, LAYER_V_HEADS},
    {"head_dim_qk 257", LINATTN_ERR_INVALID_SHAPE, bad_layer_create, LAYER_HEAD_DIM},
    {"num_qk_heads 0", LINATTN_ERR_INVALID_SHAPE, bad_layer_create, LAYER_NO_HEADS},
    {"state_dtype 99", LINATTN_ERR_UNSUPPORTED_DTYPE, bad_layer_create, LAYER_DTYPE},
    {"activation_dtype F32", LINATTN_ERR_UNSUPPORTED_DTYPE, bad_forward, FWD_DTYPE},
    {"slot_free(capacity)", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_slot, SLOT_FREE_RANGE},
    {"slot_free(-1)", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_slot, SLOT_FREE_NEGATIVE},
    {"slot_read(slot -2)", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_slot, SLOT_READ_RANGE},
    {"slot_copy(dst = capacity)", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_slot, SLOT_COPY_RANGE},
    {"slot_zero(capacity + 1)", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_slot, SLOT_ZERO_RANGE},
    {"batch state_slot = capacity", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_batch, BATCH_SLOT_RANGE},
    {"batch FROM_SLOT source_slot -5", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_batch, BATCH_SOURCE_RANGE},
    {"checkpoint_slot out of range", LINATTN_ERR_SLOT_OUT_OF_RANGE, bad_batch, BATCH_CHECKPOINT_SLOT_RANGE},
    {"slot freed twice", LINATTN_ERR_SLOT_NOT_ALLOCATED, bad_slot, SLOT_FREE_TWICE},
    {"slot_read(freed slot)", LINATTN_ERR_SLOT_NOT_ALLOCATED, bad_slot, SLOT_READ_FREED},
    {"slot_copy(dst freed)", LINATTN_ERR_SLOT_NOT_ALLOCATED, bad_slot, SLOT_COPY_FREED},
    {"slot_zero(freed slot)", LINATTN_ERR_SLOT_NOT_ALLOCATED, bad_slot, SLOT_ZERO_FREED},
    {"batch CONTINUE on a freed slot", LINATTN_ERR_SLOT_NOT_ALLOCATED, bad_batch, BATCH_FREED_SLOT},
    {"two sequences write one slot", LINATTN_ERR_SLOT_CONFLICT, bad_batch, BATCH_SAME_SLOT},
    {"checkpoint into a sequence's state slot", LINATTN_ERR_SLOT_CONFLICT, bad_batch, BATCH_CHECKPOINT_ON_STATE},
    {"FROM_SLOT source written by another sequence", LINATTN_ERR_SLOT_CONFLICT, bad_batch, BATCH_SOURCE_WRITTEN},
    {"slot_alloc on a full pool", LINATTN_ERR_POOL_EXHAUSTED, bad_slot, SLOT_ALLOC_EXHAUSTED},
    {"token ranges overlap", LINATTN_ERR_TOKEN_RANGE, bad_batch, BATCH_OVERLAP},
    {"token range exceeds the stream", LINATTN_ERR_TOKEN_RANGE, bad_batch, BATCH_BEYOND_STREAM},
    {"negative token_offset", LINATTN_ERR_TOKEN_RANGE, bad_batch, BATCH_NEGATIVE_OFFSET},
    {"checkpoint at start_position", LINATTN_ERR_CHECKPOINT_POSITION, bad_batch, BATCH_CHECKPOINT_AT_START},
    {"checkpoint past the sequence end", LINATTN_ERR_CHECKPOINT_POSITION, bad_batch, BATCH_CHECKPOINT_PAST_END},
    {"checkpoint misaligned", LINATTN_ERR_CHECKPOINT_POSITION, bad_batch, BATCH_CHECKPOINT_MISALIGNED},
    {"more sequences than the plan's max_seqs", LINATTN_ERR_PLAN_CAPACITY, bad_batch, BATCH_TOO_MANY_SEQS},
    {"more tokens than the plan's max_tokens", LINATTN_ERR_PLAN_CAPACITY, bad_batch, BATCH_TOO_MANY_TOKENS},
    {"forward with a layer outside the pool", LINATTN_ERR_LAYER_NOT_IN_POOL, bad_forward, FWD_LAYER_NOT_IN_POOL},
    {"slot_read with a layer outside the pool", LINATTN_ERR_LAYER_NOT_IN_POOL, bad_slot, SLOT_READ_OUTSIDER},
    {"context backend 99", LINATTN_ERR_INVALID_ARGUMENT, bad_context_create, CTX_BACKEND},
    {"plan_desc.max_seqs -1", LINATTN_ERR_INVALID_ARGUMENT, bad_pool_or_plan_create, PLAN_NEGATIVE},
    {"batch init 7", LINATTN_ERR_INVALID_ARGUMENT, bad_batch, BATCH_UNKNOWN_INIT},
    {"INIT_ZERO with start_position 5", LINATTN_ERR_INVALID_ARGUMENT, bad_batch, BATCH_ZERO_INIT_LATE_START},
    {"qkv_row_stride < channels", LINATTN_ERR_INVALID_ARGUMENT, bad_forward, FWD_STRIDE},
    {"slot_read(dst_bytes one short)", LINATTN_ERR_BUFFER_TOO_SMALL, bad_slot, SLOT_READ_SMALL},
    {"slot_write(src_bytes one short)", LINATTN_ERR_BUFFER_TOO_SMALL, bad_slot, SLOT_WRITE_SMALL},
    {"spec_commit while not implemented", LINATTN_ERR_NOT_IMPLEMENTED, bad_api, SPEC_COMMIT},
};

/* Everything a refused call must leave alone: every allocated slot's bytes in every layer, stats, pool info. */
typedef struct observed {
    uint8_t *slots[3][MAX_LAYERS];
    linattn_stats stats;
    linattn_pool_info pool;
} observed;

static int observe(bad_env *e, observed *o, check_log *log)
{
    int32_t slots[3] = {e->f->seqs[0].slot, e->f->seqs[1].slot, e->checkpoint_slot};
    memset(o, 0, sizeof *o);
    for (int s = 0; s < 3; ++s)
        for (int l = 0; l < e->f->num_layers; ++l)
            if (!(o->slots[s][l] = fixture_read_state(e->f, l, slots[s], log))) return 0;
    o->stats.struct_size = sizeof o->stats;
    o->pool.struct_size = sizeof o->pool;
    return CHECK_OK(log, e->api, e->api->get_stats(e->f->context, &o->stats)) &&
           CHECK_OK(log, e->api, e->api->pool_info(e->f->pool, &o->pool));
}

static void release_observed(observed *o)
{
    for (int s = 0; s < 3; ++s)
        for (int l = 0; l < MAX_LAYERS; ++l) free(o->slots[s][l]);
}

static void expect_unchanged(bad_env *e, const observed *before, const char *name, check_log *log)
{
    observed after;
    if (observe(e, &after, log)) {
        for (int s = 0; s < 3; ++s)
            for (int l = 0; l < e->f->num_layers; ++l)
                CHECK(log, memcmp(before->slots[s][l], after.slots[s][l], e->f->layers[l].info.state_bytes) == 0,
                      "%s: state of slot %d, layer %s changed", name, s, e->f->layers[l].name);
        CHECK(log, memcmp(&before->stats, &after.stats, sizeof after.stats) == 0, "%s: stats changed", name);
        CHECK(log, memcmp(&before->pool, &after.pool, sizeof after.pool) == 0, "%s: pool_info changed", name);
    }
    release_observed(&after);
}

/* Runs B0 again on `plan` (a refused plan_set_batch must leave the plan's batch as it was): B0 starts its sequences
 * from zero, so it must reproduce B0's outputs and rewrite the same states. */
static void expect_plan_kept_batch(bad_env *e, linattn_plan *plan, const observed *before, const char *name,
                                   check_log *log)
{
    fixture *f = e->f;
    linattn_plan *main_plan = f->plan;
    char what[160];
    snprintf(what, sizeof what, "%s: B0 run again%s", name, plan == e->small_plan ? " on the small plan" : "");
    check_log run_log;
    memset(&run_log, 0, sizeof run_log);
    f->plan = plan;
    int ran = step_forward(f, e->b0, &run_log);
    f->plan = main_plan;
    if (!CHECK(log, ran, "%s: %s", what, run_log.failure)) return;
    for (int s = 0; s < 2; ++s)
        for (int l = 0; l < f->num_layers; ++l) {
            double measure = 0.0;
            agree_outputs(f, log, what, f->seqs[s].out[l], e->b0_out[s][l],
                          (size_t)f->seqs[s].length * output_row_elements(&f->layers[l]), &measure);
        }
    observed after;
    if (observe(e, &after, log))
        for (int s = 0; s < 3; ++s)
            for (int l = 0; l < f->num_layers; ++l) {
                double measure = 0.0;
                agree_states(f, log, what, l, after.slots[s][l], before->slots[s][l], &measure);
            }
    release_observed(&after);
}

static void run_bad_case(bad_env *e, const bad_case *c, observed *before, int *run, check_log *log)
{
    e->message[0] = '\0';
    e->out_touched = 0;
    linattn_status status = c->call(e, c->variant);
    if (status == NOT_APPLICABLE) return;
    ++*run;
    if (!CHECK(log, status != SETUP_FAILED, "%s: could not set the case up (%s)", c->name, e->message)) return;
    if (!CHECK(log, status == c->expected, "%s: returned %d (%s), expected %d", c->name, (int)status,
               status == LINATTN_OK ? "accepted" : e->message, (int)c->expected))
        return;
    CHECK(log, e->message[0] != '\0', "%s: empty last_error_message", c->name);
    CHECK(log, !e->out_touched, "%s: an out-parameter was written although the call failed", c->name);
    expect_unchanged(e, before, c->name, log);
    expect_plan_kept_batch(e, e->f->plan, before, c->name, log);
    expect_plan_kept_batch(e, e->small_plan, before, c->name, log);
    /* Those forwards counted in the stats: what later cases must leave unchanged is the state from here on. */
    release_observed(before);
    observe(e, before, log);
}

static int keep_b0_outputs(bad_env *e, check_log *log)
{
    for (int s = 0; s < 2; ++s)
        for (int l = 0; l < e->f->num_layers; ++l) {
            size_t bytes = (size_t)e->f->seqs[s].length * output_row_elements(&e->f->layers[l]) * sizeof(uint16_t);
            if (!CHECK(log, (e->b0_out[s][l] = malloc(bytes)) != NULL, "out of host memory")) return 0;
            memcpy(e->b0_out[s][l], e->f->seqs[s].out[l], bytes);
        }
    return 1;
}

static int setup_bad_env(bad_env *e, check_log *log)
{
    fixture *f = e->f;
    int seq0 = fixture_add_seq(f, 20, 1, log), seq1 = fixture_add_seq(f, 30, 2, log);
    e->checkpoint_slot = fixture_alloc_slot(f, log);
    e->freed_slot = fixture_alloc_slot(f, log);
    if (log->failed || !CHECK_OK(log, e->api, e->api->slot_free(f->pool, e->freed_slot))) return 0;
    if (!fixture_make_layer(f, &e->outsider, MODEL_TINY, 2, 77, log)) return 0;
    e->big_weights = calloc(1u << 16, sizeof(float));
    if (!CHECK(log, e->big_weights != NULL, "out of host memory")) return 0;
    step_entry entries[] = {{seq0, 0, 20, f->seqs[seq0].slot, LINATTN_INIT_ZERO, 0},
                            {seq1, 0, 30, f->seqs[seq1].slot, LINATTN_INIT_ZERO, 0}};
    step_checkpoint checkpoint = {0, 20, e->checkpoint_slot};
    linattn_plan_desc small = {sizeof small, SMALL_PLAN_SEQS, 2, SMALL_PLAN_TOKENS};
    return step_prepare(f, e->b0, entries, 2, &checkpoint, 1, 0, log) && step_set_batch(f, e->b0, log) &&
           step_forward(f, e->b0, log) && keep_b0_outputs(e, log) &&
           CHECK_OK(log, e->api, e->api->plan_create(f->pool, &small, &e->small_plan)) &&
           CHECK_OK(log, e->api, e->api->plan_set_batch(e->small_plan, &e->b0->batch, f->stream));
}

scenario_outcome scenario_bad_input(const harness *h, check_log *log)
{
    fixture f;
    prepared_step b0;
    bad_env e;
    memset(&e, 0, sizeof e);
    memset(&b0, 0, sizeof b0);
    e.h = h;
    e.api = h->api;
    e.f = &f;
    e.b0 = &b0;
    observed before;
    memset(&before, 0, sizeof before);
    int run = 0, total = (int)(sizeof bad_cases / sizeof bad_cases[0]);
    if (fixture_create(&f, h, MODEL_TINY, 8, SLOTS, log) && setup_bad_env(&e, log) && observe(&e, &before, log)) {
        for (int i = 0; i < total; ++i) run_bad_case(&e, &bad_cases[i], &before, &run, log);
    }
    check_note(log, "%d of %d cases apply to this library", run, total);
    release_observed(&before);
    step_release(&b0);
    fixture_destroy(&f);
    test_layer_release(&e.outsider);
    free(e.big_weights);
    for (int s = 0; s < 2; ++s)
        for (int l = 0; l < MAX_LAYERS; ++l) free(e.b0_out[s][l]);
    return outcome_of(log);
}
