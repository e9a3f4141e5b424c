/*
 * The prefix cache behind the ABI: a la_cache_manager (cache/block_manager.h) whose checkpoint slots are slots of
 * one pool, so checkpoints and running sequences share one pool and one slot numbering. These hooks only check
 * handles, translate structs and map statuses; what is cached, where checkpoints go and what is evicted is decided
 * in cache/. The manager changes nothing when it fails, so neither do the hooks: every out-parameter is filled
 * from a local copy after success.
 */
#include <stdlib.h>
#include <string.h>

#include "cache/block_manager.h"
#include "internal.h"

/* Public structs the manager's arrays are handed out as (or read from) without copying. */
#define SAME_FIELD(public, internal, a, b)                                                                         \
    _Static_assert(offsetof(public, a) == offsetof(internal, b) && sizeof(((public *)0)->a) == sizeof(((internal *)0)->b), \
                   #public "." #a " differs from " #internal "." #b)
SAME_FIELD(linattn_cache_extra_key, la_cache_extra_key, start, start);
SAME_FIELD(linattn_cache_extra_key, la_cache_extra_key, end, end);
SAME_FIELD(linattn_cache_extra_key, la_cache_extra_key, key, key);
_Static_assert(sizeof(linattn_cache_extra_key) == sizeof(la_cache_extra_key), "extra key size");
SAME_FIELD(linattn_cache_checkpoint, la_cache_checkpoint_write, position, position);
SAME_FIELD(linattn_cache_checkpoint, la_cache_checkpoint_write, slot, slot);
_Static_assert(sizeof(linattn_cache_checkpoint) == sizeof(la_cache_checkpoint_write), "checkpoint write size");
/* Enumerators of two enums compared as ints (they are the same numbers by design). */
#define SAME_VALUE(a, b) _Static_assert((int)(a) == (int)(b), #a " != " #b)
SAME_VALUE(LA_CACHE_INIT_ZERO, LINATTN_INIT_ZERO);
SAME_VALUE(LA_CACHE_INIT_CONTINUE, LINATTN_INIT_CONTINUE);
SAME_VALUE(LA_CACHE_INIT_FROM_SLOT, LINATTN_INIT_FROM_SLOT);
SAME_VALUE(LA_CACHE_AT_PROMPT_END, LINATTN_CHECKPOINT_AT_PROMPT_END);
SAME_VALUE(LA_CACHE_AT_TURN_END, LINATTN_CHECKPOINT_AT_TURN_END);
SAME_VALUE(LA_CACHE_AT_BRANCH, LINATTN_CHECKPOINT_AT_BRANCH);
SAME_VALUE(LA_CACHE_AT_INTERVAL, LINATTN_CHECKPOINT_AT_INTERVAL);
SAME_VALUE(LA_CACHE_AT_ALIGNED_STEP_END, LINATTN_CHECKPOINT_AT_ALIGNED_STEP_END);

static linattn_status status_of(la_cache_status status)
{
    switch (status) {
    case LA_CACHE_OK: return LINATTN_OK;
    case LA_CACHE_ERR_NULL_ARGUMENT: return LINATTN_ERR_NULL_ARGUMENT;
    case LA_CACHE_ERR_INVALID_ARGUMENT: return LINATTN_ERR_INVALID_ARGUMENT;
    case LA_CACHE_ERR_OUT_OF_MEMORY: return LINATTN_ERR_OUT_OF_MEMORY;
    case LA_CACHE_ERR_KV_EXHAUSTED: return LINATTN_ERR_KV_EXHAUSTED;
    case LA_CACHE_ERR_SLOT_ALLOC: return LINATTN_ERR_POOL_EXHAUSTED;
    case LA_CACHE_ERR_UNKNOWN_REQUEST: return LINATTN_ERR_UNKNOWN_REQUEST;
    case LA_CACHE_ERR_DUPLICATE_REQUEST: return LINATTN_ERR_DUPLICATE_REQUEST;
    case LA_CACHE_ERR_TOKEN_RANGE: return LINATTN_ERR_TOKEN_RANGE;
    case LA_CACHE_ERR_STEP_PENDING: return LINATTN_ERR_STEP_PENDING;
    case LA_CACHE_ERR_NO_STEP: return LINATTN_ERR_NO_STEP;
    default: return LINATTN_ERR_INTERNAL; /* LA_CACHE_ERR_INCONSISTENT, or a status this file does not know */
    }
}

/* A manager failure as the hook's status, with the manager's message as the thread's last error. */
static linattn_status cache_failed(const linattn_prefix_cache *cache, la_cache_status status, const char *hook)
{
    linattn_status mapped = status_of(status);
    const char *why = la_cache_last_error(cache->manager);
    if (mapped == LINATTN_ERR_POOL_EXHAUSTED)
        return fail(mapped, "%s: %s: all %d slots of the pool are in use (sequences and checkpoints); free a slot or "
                    "give the pool room for max_checkpoints more", hook, why, cache->pool->capacity);
    return fail(mapped, "%s: %s", hook, why);
}

/* ---- checkpoint slots: the manager's slot allocator, wired to the pool ---- */

static int take_checkpoint_slot(void *user, int32_t *out_slot)
{
    int32_t slot = pool_take_slot(user, SLOT_CHECKPOINT);
    if (slot < 0) return -1;
    *out_slot = slot;
    return 0;
}

static void return_checkpoint_slot(void *user, int32_t slot) { pool_return_slot(user, slot); }

/* ---- create / destroy ---- */

static la_cache_policy policy_of(const linattn_checkpoint_policy *p)
{
    if (p->match_unit == 0 && p->places == 0 && p->every_n_blocks == 0) return la_cache_policy_default();
    la_cache_policy policy = {p->match_unit, p->places, p->every_n_blocks};
    return policy;
}

static la_cache_config config_of(linattn_pool *pool, const linattn_prefix_cache_desc *d)
{
    la_cache_config config;
    memset(&config, 0, sizeof config);
    config.block_size = d->block_size;
    config.num_attn_groups = d->num_attn_groups;
    config.kv_block_bytes = d->kv_block_bytes;
    config.num_kv_blocks = d->num_kv_blocks;
    config.kv_byte_budget = d->kv_byte_budget;
    config.checkpoint_bytes = pool->slot_bytes;
    config.max_checkpoints = d->max_checkpoints;
    config.checkpoint_byte_budget = d->checkpoint_byte_budget;
    config.checkpoint_alignment = CHECKPOINT_ALIGNMENT;
    config.max_index_entries = d->max_index_entries;
    config.policy = policy_of(&d->policy);
    config.slots.user = pool;
    config.slots.alloc_slot = take_checkpoint_slot;
    config.slots.free_slot = return_checkpoint_slot;
    return config;
}

linattn_status api_prefix_cache_create(linattn_pool *pool, const linattn_prefix_cache_desc *desc,
                                       linattn_prefix_cache **out)
{
    linattn_status status = check_pool(pool);
    if (status) return status;
    if (!desc || !out) return fail(LINATTN_ERR_NULL_ARGUMENT, "prefix_cache_create needs desc and out_cache");
    if ((status = check_struct_size(desc->struct_size, sizeof *desc, "linattn_prefix_cache_desc"))) return status;

    linattn_prefix_cache *cache = calloc(1, sizeof *cache);
    if (!cache) return fail(LINATTN_ERR_OUT_OF_MEMORY, "out of host memory for a prefix cache");
    la_cache_config config = config_of(pool, desc);
    char message[256];
    la_cache_status created = la_cache_create(&config, &cache->manager, message, sizeof message);
    if (created != LA_CACHE_OK) {
        free(cache);
        return fail(status_of(created), "prefix_cache_create: %s", message);
    }
    if ((status = handle_register(cache, HANDLE_CACHE))) {
        la_cache_destroy(cache->manager);
        free(cache);
        return status;
    }
    cache->ctx = pool->ctx;
    cache->pool = pool;
    pool->cache_refs++;
    cache->next = pool->ctx->caches;
    pool->ctx->caches = cache;
    *out = cache;
    return LINATTN_OK;
}

void prefix_cache_release(linattn_prefix_cache *cache)
{
    for (linattn_prefix_cache **link = &cache->ctx->caches; *link; link = &(*link)->next) {
        if (*link == cache) {
            *link = cache->next;
            break;
        }
    }
    la_cache_destroy(cache->manager);
    cache->pool->cache_refs--;
    handle_unregister(cache);
    free(cache);
}

linattn_status api_prefix_cache_destroy(linattn_prefix_cache *cache)
{
    if (!cache) return LINATTN_OK;
    linattn_status status = check_cache(cache);
    if (status) return status;
    prefix_cache_release(cache);
    return LINATTN_OK;
}

/* ---- requests ---- */

static linattn_status request_of(const linattn_cache_request_desc *d, la_cache_request_desc *out)
{
    if (!d) return fail(LINATTN_ERR_NULL_ARGUMENT, "request is NULL");
    linattn_status status = check_struct_size(d->struct_size, sizeof *d, "linattn_cache_request_desc");
    if (!status) status = check_struct_size(d->extra_key_size, sizeof(linattn_cache_extra_key),
                                            "linattn_cache_request_desc.extra_key_size: linattn_cache_extra_key");
    if (status) return status;
    la_cache_request_desc request = {d->request_id,
                                     d->tokens,
                                     d->num_tokens,
                                     (const la_cache_extra_key *)(const void *)d->extra_keys,
                                     d->num_extra_keys,
                                     d->max_hit_tokens,
                                     d->hit_alignment};
    *out = request;
    return LINATTN_OK;
}

static void give_hit(const la_cache_hit *hit, linattn_cache_hit *out_hit)
{
    linattn_cache_hit full = {sizeof full, hit->checkpoint_slot, hit->hit_tokens, hit->matched_tokens};
    copy_result(out_hit, &full, sizeof full);
}

linattn_status api_cache_find_longest_hit(linattn_prefix_cache *cache, const linattn_cache_request_desc *request,
                                          linattn_cache_hit *out_hit)
{
    la_cache_request_desc d;
    linattn_status status = check_cache(cache);
    if (!status) status = request_of(request, &d);
    if (status) return status;
    if (!out_hit) return fail(LINATTN_ERR_NULL_ARGUMENT, "out_hit is NULL");
    if ((status = check_struct_size(out_hit->struct_size, sizeof *out_hit, "linattn_cache_hit"))) return status;
    la_cache_hit hit;
    la_cache_status found = la_cache_find_longest_hit(cache->manager, &d, &hit);
    if (found != LA_CACHE_OK) return cache_failed(cache, found, "cache_find_longest_hit");
    give_hit(&hit, out_hit);
    return LINATTN_OK;
}

linattn_status api_cache_request_add(linattn_prefix_cache *cache, const linattn_cache_request_desc *request,
                                     linattn_cache_hit *out_hit)
{
    la_cache_request_desc d;
    linattn_status status = check_cache(cache);
    if (!status) status = request_of(request, &d);
    if (!status && out_hit) status = check_struct_size(out_hit->struct_size, sizeof *out_hit, "linattn_cache_hit");
    if (status) return status;
    la_cache_hit hit;
    la_cache_status added = la_cache_request_add(cache->manager, &d, &hit);
    if (added != LA_CACHE_OK) return cache_failed(cache, added, "cache_request_add");
    if (out_hit) give_hit(&hit, out_hit);
    return LINATTN_OK;
}

linattn_status api_cache_request_append(linattn_prefix_cache *cache, uint64_t request_id, const int32_t *tokens,
                                        int64_t num_tokens)
{
    linattn_status status = check_cache(cache);
    if (status) return status;
    la_cache_status appended = la_cache_request_append(cache->manager, request_id, tokens, num_tokens);
    return appended == LA_CACHE_OK ? LINATTN_OK : cache_failed(cache, appended, "cache_request_append");
}

linattn_status api_cache_request_schedule(linattn_prefix_cache *cache, uint64_t request_id, int64_t num_tokens,
                                          linattn_cache_step *out_step)
{
    linattn_status status = check_cache(cache);
    if (status) return status;
    if (!out_step) return fail(LINATTN_ERR_NULL_ARGUMENT, "out_step is NULL");
    if ((status = check_struct_size(out_step->struct_size, sizeof *out_step, "linattn_cache_step"))) return status;
    la_cache_step step;
    la_cache_status scheduled = la_cache_request_schedule(cache->manager, request_id, num_tokens, &step);
    if (scheduled != LA_CACHE_OK) return cache_failed(cache, scheduled, "cache_request_schedule");
    linattn_cache_step full = {
        .struct_size = sizeof full,
        .num_tokens = step.num_tokens,
        .start_position = step.start_position,
        .init = step.init,
        .source_slot = step.source_slot,
        .num_checkpoints = step.num_checkpoints,
        .checkpoints = (const linattn_cache_checkpoint *)(const void *)step.checkpoints,
        .num_kv_copies = step.num_kv_copies,
        .kv_copy = {step.kv_copy.src_block, step.kv_copy.dst_block, step.kv_copy.num_tokens},
        .num_blocks = step.num_blocks,
        .block_table = step.num_blocks > 0 ? step.block_table : NULL,
    };
    copy_result(out_step, &full, sizeof full);
    return LINATTN_OK;
}

linattn_status api_cache_request_commit(linattn_prefix_cache *cache, uint64_t request_id)
{
    linattn_status status = check_cache(cache);
    if (status) return status;
    la_cache_status committed = la_cache_request_commit(cache->manager, request_id);
    return committed == LA_CACHE_OK ? LINATTN_OK : cache_failed(cache, committed, "cache_request_commit");
}

linattn_status api_cache_request_free(linattn_prefix_cache *cache, uint64_t request_id)
{
    linattn_status status = check_cache(cache);
    if (status) return status;
    la_cache_status freed = la_cache_request_free(cache->manager, request_id);
    return freed == LA_CACHE_OK ? LINATTN_OK : cache_failed(cache, freed, "cache_request_free");
}

linattn_status api_cache_get_stats(const linattn_prefix_cache *cache, linattn_cache_stats *stats)
{
    linattn_status status = check_cache(cache);
    if (status) return status;
    if (!stats) return fail(LINATTN_ERR_NULL_ARGUMENT, "stats is NULL");
    if ((status = check_struct_size(stats->struct_size, sizeof *stats, "linattn_cache_stats"))) return status;
    la_cache_stats s;
    la_cache_status got = la_cache_get_stats(cache->manager, &s);
    if (got != LA_CACHE_OK) return cache_failed(cache, got, "cache_get_stats");
    linattn_cache_stats full = {
        .struct_size = sizeof full,
        .lookups = s.lookups,
        .lookup_tokens = s.lookup_tokens,
        .hits = s.hits,
        .hit_tokens = s.hit_tokens,
        .checkpoints_written = s.checkpoints_written,
        .checkpoints_restored = s.checkpoints_restored,
        .checkpoints_evicted = s.checkpoints_evicted,
        .checkpoints_discarded = s.checkpoints_discarded,
        .checkpoints_skipped = s.checkpoints_skipped,
        .index_entries_evicted = s.index_entries_evicted,
        .kv_copies = s.kv_copies,
        .checkpoints_in_use = s.checkpoints_in_use,
        .max_checkpoints = s.max_checkpoints,
        .checkpoint_bytes_in_use = s.checkpoint_bytes_in_use,
        .kv_blocks_total = s.kv_blocks_total,
        .kv_blocks_free = s.kv_blocks_free,
        .kv_blocks_cached_only = s.kv_blocks_cached_only,
        .kv_bytes_in_use = s.kv_bytes_in_use,
        .index_entries = s.index_entries,
        .live_requests = s.live_requests,
    };
    copy_result(stats, &full, sizeof full);
    return LINATTN_OK;
}
