/*
 * The prefix cache manager: configuration, request admission (lookup + reuse), steps (schedule, commit), freeing,
 * statistics. Every call validates and allocates first, then changes state only with steps that cannot fail, so a
 * failed call leaves the manager as it was.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_internal.h"
#include "prefix_hash.h"

#define DEFAULT_ALIGNMENT 64
#define DEFAULT_INDEX_ENTRIES_WITHOUT_KV 65536

/* ---- memory and errors ---------------------------------------------------------------------------------------- */

static void *default_alloc(void *user, size_t bytes)
{
    (void)user;
    return malloc(bytes);
}

static void default_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

void *lac_alloc(la_cache_manager *m, size_t bytes) { return m->host.alloc(m->host.user, bytes ? bytes : 1); }

void lac_release(la_cache_manager *m, void *ptr)
{
    if (ptr) m->host.free(m->host.user, ptr);
}

int lac_reserve(la_cache_manager *m, void **array, int64_t *capacity, int64_t needed, size_t element_size)
{
    if (needed <= *capacity) return 0;
    int64_t grown = *capacity > 0 ? *capacity : 4;
    while (grown < needed) grown *= 2;
    void *bigger = lac_alloc(m, (size_t)grown * element_size);
    if (!bigger) return -1;
    if (*capacity > 0) memcpy(bigger, *array, (size_t)*capacity * element_size);
    lac_release(m, *array);
    *array = bigger;
    *capacity = grown;
    return 0;
}

la_cache_status lac_fail(la_cache_manager *m, la_cache_status status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(m->error, sizeof m->error, format, args);
    va_end(args);
    return status;
}

const char *la_cache_last_error(const la_cache_manager *manager) { return manager ? manager->error : ""; }

/* ---- the manager's own slot numbering (when the host gives no slot allocator) --------------------------------- */

static int own_alloc_slot(void *user, int32_t *out_slot)
{
    la_cache_manager *m = user;
    if (m->num_own_slots == 0) return -1;
    *out_slot = m->own_slots[--m->num_own_slots];
    return 0;
}

static void own_free_slot(void *user, int32_t slot)
{
    la_cache_manager *m = user;
    m->own_slots[m->num_own_slots++] = slot;
}

/* ---- creation ------------------------------------------------------------------------------------------------- */

static int32_t gcd32(int32_t a, int32_t b)
{
    while (b) {
        int32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static la_cache_status config_error(char *message, size_t message_size, const char *why)
{
    if (message && message_size) snprintf(message, message_size, "%s", why);
    return LA_CACHE_ERR_INVALID_ARGUMENT;
}

/* Derived sizes of a configuration; a reason in *why when it is unusable. */
typedef struct sizes {
    int32_t alignment, unit, num_blocks, max_checkpoints, max_entries;
    uint64_t block_bytes;
} sizes;

static const char *derive_sizes(const la_cache_config *c, sizes *s)
{
    if (c->block_size < 1) return "block_size must be >= 1";
    if (c->num_attn_groups < 0) return "num_attn_groups must be >= 0";
    if (c->num_attn_groups > 0 && !c->kv_block_bytes) return "kv_block_bytes is NULL";
    if (c->num_kv_blocks < 0 || c->max_checkpoints < 0 || c->max_index_entries < 0 || c->checkpoint_alignment < 0)
        return "num_kv_blocks, max_checkpoints, max_index_entries and checkpoint_alignment must be >= 0";
    if (!c->slots.alloc_slot != !c->slots.free_slot) return "slots: give both alloc_slot and free_slot, or neither";
    if (!c->host.alloc != !c->host.free) return "host: give both alloc and free, or neither";

    s->block_bytes = 0;
    for (int32_t g = 0; g < c->num_attn_groups; g++) {
        if (c->kv_block_bytes[g] == 0) return "kv_block_bytes must be > 0 for every group";
        if (c->kv_block_bytes[g] > UINT64_MAX / 4 - s->block_bytes) return "kv_block_bytes too large";
        s->block_bytes += c->kv_block_bytes[g];
    }
    s->num_blocks = 0;
    if (c->num_attn_groups > 0) {
        uint64_t blocks = c->num_kv_blocks ? (uint64_t)c->num_kv_blocks : c->kv_byte_budget / s->block_bytes;
        if (blocks < 1) return "the KV budget holds no block (num_kv_blocks or kv_byte_budget too small)";
        if (blocks > INT32_MAX / 2) return "too many KV blocks";
        s->num_blocks = (int32_t)blocks;
    }

    uint64_t checkpoints = (uint64_t)c->max_checkpoints;
    if (checkpoints == 0 && c->checkpoint_byte_budget > 0) {
        if (c->checkpoint_bytes == 0) return "checkpoint_bytes must be > 0 with a checkpoint_byte_budget";
        checkpoints = c->checkpoint_byte_budget / c->checkpoint_bytes;
    }
    if (checkpoints > INT32_MAX / 2) return "too many checkpoints";
    s->max_checkpoints = (int32_t)checkpoints;

    s->alignment = c->checkpoint_alignment ? c->checkpoint_alignment : DEFAULT_ALIGNMENT;
    s->unit = gcd32(c->block_size, c->policy.match_unit > 0 ? c->policy.match_unit : 1);

    int64_t entries = c->max_index_entries;
    if (entries == 0)
        entries = c->num_attn_groups > 0 ? (int64_t)s->num_blocks * (c->block_size / s->unit)
                                         : DEFAULT_INDEX_ENTRIES_WITHOUT_KV;
    if (entries > INT32_MAX / 4 || entries * s->unit > INT32_MAX) return "prefix index too large";
    s->max_entries = (int32_t)entries;
    return NULL;
}

static int allocate_arrays(la_cache_manager *m)
{
    size_t blocks = (size_t)m->num_blocks, entries = (size_t)m->max_entries, cps = (size_t)m->max_checkpoints;
    size_t buckets = 1;
    while (buckets < entries) buckets *= 2;
    m->bucket_mask = buckets - 1;

    m->block_refs = lac_alloc(m, blocks * sizeof(int32_t));
    m->block_pins = lac_alloc(m, blocks * sizeof(int32_t));
    m->free_blocks = lac_alloc(m, blocks * sizeof(int32_t));
    m->entries = lac_alloc(m, entries * sizeof(lac_entry));
    m->entry_tokens = lac_alloc(m, entries * (size_t)m->unit * sizeof(int32_t));
    m->buckets = lac_alloc(m, buckets * sizeof(int32_t));
    int32_t *entry_heap_ids = lac_alloc(m, entries * sizeof(int32_t));
    uint64_t *entry_heap_keys = lac_alloc(m, entries * sizeof(uint64_t));
    int32_t *entry_heap_where = lac_alloc(m, entries * sizeof(int32_t));
    m->checkpoints = lac_alloc(m, cps * sizeof(lac_checkpoint));
    int32_t *cp_heap_ids = lac_alloc(m, cps * sizeof(int32_t));
    uint64_t *cp_heap_keys = lac_alloc(m, cps * sizeof(uint64_t));
    int32_t *cp_heap_where = lac_alloc(m, cps * sizeof(int32_t));
    if (!m->slots.alloc_slot) m->own_slots = lac_alloc(m, cps * sizeof(int32_t));

    lac_heap_init(&m->entry_lru, entry_heap_ids, entry_heap_keys, entry_heap_where, 0);
    lac_heap_init(&m->checkpoint_lru, cp_heap_ids, cp_heap_keys, cp_heap_where, 0);
    if (!m->block_refs || !m->block_pins || !m->free_blocks || !m->entries || !m->entry_tokens || !m->buckets ||
        !entry_heap_ids || !entry_heap_keys || !entry_heap_where || !m->checkpoints || !cp_heap_ids ||
        !cp_heap_keys || !cp_heap_where || (!m->slots.alloc_slot && !m->own_slots))
        return -1;

    for (int32_t b = 0; b < m->num_blocks; b++) {
        m->block_refs[b] = m->block_pins[b] = 0;
        m->free_blocks[b] = m->num_blocks - 1 - b; /* lowest id first */
    }
    m->num_free_blocks = m->num_blocks;
    for (size_t i = 0; i < buckets; i++) m->buckets[i] = LAC_NONE;
    for (int32_t e = 0; e < m->max_entries; e++) {
        m->entries[e].in_use = 0;
        m->entries[e].next = e + 1 < m->max_entries ? e + 1 : LAC_NONE;
    }
    m->free_entry = m->max_entries ? 0 : LAC_NONE;
    lac_heap_init(&m->entry_lru, entry_heap_ids, entry_heap_keys, entry_heap_where, m->max_entries);
    for (int32_t i = 0; i < m->max_checkpoints; i++) {
        m->checkpoints[i].state = LAC_CP_FREE;
        m->checkpoints[i].generation = 0;
        m->checkpoints[i].next_free = i + 1 < m->max_checkpoints ? i + 1 : LAC_NONE;
    }
    m->free_checkpoint = m->max_checkpoints ? 0 : LAC_NONE;
    lac_heap_init(&m->checkpoint_lru, cp_heap_ids, cp_heap_keys, cp_heap_where, m->max_checkpoints);
    if (!m->slots.alloc_slot) {
        for (int32_t i = 0; i < m->max_checkpoints; i++) m->own_slots[i] = m->max_checkpoints - 1 - i;
        m->num_own_slots = m->max_checkpoints;
        m->slots.user = m;
        m->slots.alloc_slot = own_alloc_slot;
        m->slots.free_slot = own_free_slot;
    }
    return 0;
}

static void free_arrays(la_cache_manager *m)
{
    void *arrays[] = {m->block_refs, m->block_pins, m->free_blocks, m->entries, m->entry_tokens, m->buckets,
                      m->entry_lru.ids, m->entry_lru.keys, m->entry_lru.where, m->checkpoints,
                      m->checkpoint_lru.ids, m->checkpoint_lru.keys, m->checkpoint_lru.where, m->own_slots,
                      m->requests.keys, m->requests.values, m->plan};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) lac_release(m, arrays[i]);
}

la_cache_status la_cache_create(const la_cache_config *config, la_cache_manager **out_manager, char *message,
                                size_t message_size)
{
    if (message && message_size) message[0] = '\0';
    if (!config || !out_manager) {
        if (message && message_size) snprintf(message, message_size, "config or out_manager is NULL");
        return LA_CACHE_ERR_NULL_ARGUMENT;
    }
    sizes s;
    const char *why = derive_sizes(config, &s);
    if (why) return config_error(message, message_size, why);
    char policy_message[128];
    if (la_cache_policy_check(&config->policy, s.alignment, config->block_size, policy_message,
                              sizeof policy_message) != 0)
        return config_error(message, message_size, policy_message);

    la_cache_host_allocator host = config->host;
    if (!host.alloc) {
        host.alloc = default_alloc;
        host.free = default_free;
        host.user = NULL;
    }
    la_cache_manager *m = host.alloc(host.user, sizeof *m);
    if (!m) {
        if (message && message_size) snprintf(message, message_size, "out of host memory for the manager");
        return LA_CACHE_ERR_OUT_OF_MEMORY;
    }
    memset(m, 0, sizeof *m);
    m->config = *config;
    m->config.kv_block_bytes = NULL; /* not kept: only their sum is used */
    m->host = host;
    m->slots = config->slots;
    m->policy = config->policy;
    m->unit = s.unit;
    m->block_size = config->block_size;
    m->has_kv = config->num_attn_groups > 0;
    m->block_bytes = s.block_bytes;
    m->num_blocks = s.num_blocks;
    m->max_entries = s.max_entries;
    m->max_checkpoints = s.max_checkpoints;
    m->config.checkpoint_alignment = s.alignment;
    if (allocate_arrays(m) != 0) {
        free_arrays(m);
        host.free(host.user, m);
        if (message && message_size) snprintf(message, message_size, "out of host memory for the manager's tables");
        return LA_CACHE_ERR_OUT_OF_MEMORY;
    }
    *out_manager = m;
    return LA_CACHE_OK;
}

static void free_request_memory(la_cache_manager *m, lac_request *r)
{
    lac_release(m, r->tokens);
    lac_release(m, r->extra_keys);
    lac_release(m, r->path);
    lac_release(m, r->blocks);
    lac_release(m, r->writes);
    lac_release(m, r);
}

void la_cache_destroy(la_cache_manager *manager)
{
    if (!manager) return;
    la_cache_manager *m = manager;
    for (uint64_t i = 0; i < m->requests.capacity; i++)
        if (m->requests.values[i]) free_request_memory(m, m->requests.values[i]);
    for (int32_t cp = 0; cp < m->max_checkpoints; cp++)
        if (m->checkpoints[cp].state != LAC_CP_FREE) m->slots.free_slot(m->slots.user, m->checkpoints[cp].slot);
    la_cache_host_allocator host = m->host;
    free_arrays(m);
    host.free(host.user, m);
}

/* ---- lookup --------------------------------------------------------------------------------------------------- */

static la_cache_status check_request_desc(la_cache_manager *m, const la_cache_request_desc *d)
{
    if (!d->tokens) return lac_fail(m, LA_CACHE_ERR_NULL_ARGUMENT, "request tokens is NULL");
    if (d->num_tokens < 1) return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "request num_tokens must be >= 1");
    if (d->num_tokens > (int64_t)INT32_MAX * m->unit)
        return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "request num_tokens %lld is too large",
                        (long long)d->num_tokens);
    if (d->num_extra_keys < 0 || (d->num_extra_keys > 0 && !d->extra_keys))
        return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "extra_keys is NULL or num_extra_keys < 0");
    for (int32_t i = 0; i < d->num_extra_keys; i++)
        if (d->extra_keys[i].start < 0 || d->extra_keys[i].end < d->extra_keys[i].start)
            return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "extra_keys[%d] has a bad token range", i);
    if (d->hit_alignment < 0) return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "hit_alignment must be >= 0");
    return LA_CACHE_OK;
}

typedef struct walk_result {
    int64_t matched_units;
    int64_t hit_units;
    int32_t hit_checkpoint;
} walk_result;

/* Follow the prompt's units through the index as far as they are cached; the hit is the deepest checkpoint not
 * past the limit. path (may be NULL) receives the matched entries. */
static void walk(const la_cache_manager *m, const la_cache_request_desc *d, int32_t *path, walk_result *out)
{
    int64_t limit = d->num_tokens - 1;
    if (d->max_hit_tokens >= 0 && d->max_hit_tokens < limit) limit = d->max_hit_tokens;
    int64_t alignment = d->hit_alignment > 1 ? d->hit_alignment : 1;
    int64_t units = d->num_tokens / m->unit;

    out->matched_units = out->hit_units = 0;
    out->hit_checkpoint = LAC_NONE;
    int32_t parent = LAC_NONE;
    uint64_t parent_hash = LAC_ROOT_HASH;
    for (int64_t j = 0; j < units; j++) {
        const int32_t *tokens = d->tokens + j * m->unit;
        uint64_t extra = lac_extra_digest(d->extra_keys, d->num_extra_keys, j * m->unit, (j + 1) * m->unit);
        uint64_t hash = lac_unit_hash(parent_hash, extra, tokens, m->unit);
        int32_t e = lac_index_find(m, parent, hash, extra, tokens);
        if (e == LAC_NONE) break;
        if (path) path[j] = e;
        out->matched_units = j + 1;
        int64_t end = (j + 1) * m->unit;
        if (m->entries[e].checkpoint != LAC_NONE && end <= limit && end % alignment == 0) {
            out->hit_units = j + 1;
            out->hit_checkpoint = m->entries[e].checkpoint;
        }
        parent = e;
        parent_hash = hash;
    }
}

static void fill_hit(const la_cache_manager *m, const walk_result *w, la_cache_hit *hit)
{
    hit->hit_tokens = w->hit_units * m->unit;
    hit->matched_tokens = w->matched_units * m->unit;
    hit->checkpoint_slot = w->hit_checkpoint == LAC_NONE ? -1 : m->checkpoints[w->hit_checkpoint].slot;
}

la_cache_status la_cache_find_longest_hit(la_cache_manager *manager, const la_cache_request_desc *request,
                                          la_cache_hit *out_hit)
{
    if (!manager) return LA_CACHE_ERR_NULL_ARGUMENT;
    if (!request || !out_hit) return lac_fail(manager, LA_CACHE_ERR_NULL_ARGUMENT, "request or out_hit is NULL");
    la_cache_status status = check_request_desc(manager, request);
    if (status != LA_CACHE_OK) return status;
    walk_result w;
    walk(manager, request, NULL, &w);
    fill_hit(manager, &w, out_hit);
    return LA_CACHE_OK;
}

/* ---- admission ------------------------------------------------------------------------------------------------ */

static int64_t blocks_for(const la_cache_manager *m, int64_t tokens)
{
    return m->has_kv ? (tokens + m->block_size - 1) / m->block_size : 0;
}

/* A request's memory, sized for its prompt; NULL when an allocation failed (nothing kept). */
static lac_request *new_request(la_cache_manager *m, const la_cache_request_desc *d)
{
    lac_request *r = lac_alloc(m, sizeof *r);
    if (!r) return NULL;
    memset(r, 0, sizeof *r);
    r->token_capacity = d->num_tokens;
    r->path_capacity = d->num_tokens / m->unit + 1;
    r->block_capacity = blocks_for(m, d->num_tokens) + 1;
    r->tokens = lac_alloc(m, (size_t)r->token_capacity * sizeof *r->tokens);
    r->extra_keys = lac_alloc(m, (size_t)d->num_extra_keys * sizeof *r->extra_keys);
    r->path = lac_alloc(m, (size_t)r->path_capacity * sizeof *r->path);
    r->blocks = lac_alloc(m, (size_t)r->block_capacity * sizeof *r->blocks);
    if (!r->tokens || !r->extra_keys || !r->path || !r->blocks) {
        free_request_memory(m, r);
        return NULL;
    }
    r->id = d->request_id;
    memcpy(r->tokens, d->tokens, (size_t)d->num_tokens * sizeof *r->tokens);
    r->num_tokens = r->prompt_tokens = d->num_tokens;
    if (d->num_extra_keys) memcpy(r->extra_keys, d->extra_keys, (size_t)d->num_extra_keys * sizeof *r->extra_keys);
    r->num_extra_keys = d->num_extra_keys;
    r->restore_cp = r->copy_src = r->frontier.cp = LAC_NONE;
    return r;
}

/* Take references on the hit: its chain of entries, its checkpoint, its full KV blocks, and the block a partial
 * last block is copied from. Also note where the prompt leaves the cached chain, for the policy. */
static void take_hit(la_cache_manager *m, lac_request *r, const walk_result *w)
{
    const int64_t unit = m->unit, match_unit = m->policy.match_unit;
    r->hit = r->computed = w->hit_units * unit;
    r->path_len = w->hit_units;
    for (int64_t j = 0; j < r->path_len; j++) lac_entry_lock(m, r->path[j]);
    if (w->hit_checkpoint != LAC_NONE) {
        r->restore_cp = w->hit_checkpoint;
        lac_checkpoint_pin(m, r->restore_cp);
        /* Restoring a private checkpoint continues that chain (the next turn of a conversation): this request's
         * own checkpoints supersede it. */
        if (lac_places_private(m->checkpoints[r->restore_cp].places)) r->frontier = lac_checkpoint_ref_to(m, r->restore_cp);
    }
    if (m->has_kv) {
        int64_t full_blocks = r->hit / m->block_size;
        for (int64_t b = 0; b < full_blocks; b++) {
            /* The entry of a block's last unit references a block holding all of that block's tokens. */
            int32_t block = m->entries[r->path[(b + 1) * m->block_size / unit - 1]].block;
            r->blocks[b] = block;
            lac_block_adjust(m, block, 1, 1);
        }
        r->num_blocks = full_blocks;
        if (r->hit % m->block_size) {
            r->copy_src = m->entries[r->path[r->path_len - 1]].block;
            r->copy_tokens = (int32_t)(r->hit % m->block_size);
            lac_block_adjust(m, r->copy_src, 1, 1);
        }
    }
    /* A branch point: the cached chain goes on past where this prompt leaves it, with other tokens (two requests
     * share the prefix and fork). A chain that simply ends there (an earlier turn whose checkpoint is gone) is no
     * fork: this request's own checkpoints further on serve whoever extends it. */
    const int64_t prompt_units = r->prompt_tokens / unit;
    const int fork = w->matched_units > 0 && w->matched_units < prompt_units &&
                     m->entries[r->path[w->matched_units - 1]].num_children > 0;
    int64_t branch = w->matched_units * unit / match_unit * match_unit;
    if (fork && branch > r->hit && m->entries[r->path[branch / unit - 1]].checkpoint == LAC_NONE)
        r->branch_position = branch;
    int64_t prompt_end = r->prompt_tokens / match_unit * match_unit;
    r->prompt_end_cached = prompt_end > 0 && prompt_end / unit <= w->matched_units &&
                           m->entries[r->path[prompt_end / unit - 1]].checkpoint != LAC_NONE;
}

la_cache_status la_cache_request_add(la_cache_manager *manager, const la_cache_request_desc *request,
                                     la_cache_hit *out_hit)
{
    la_cache_manager *m = manager;
    if (!m) return LA_CACHE_ERR_NULL_ARGUMENT;
    if (!request) return lac_fail(m, LA_CACHE_ERR_NULL_ARGUMENT, "request is NULL");
    la_cache_status status = check_request_desc(m, request);
    if (status != LA_CACHE_OK) return status;
    if (lac_map_find(&m->requests, request->request_id))
        return lac_fail(m, LA_CACHE_ERR_DUPLICATE_REQUEST, "request %llu is already live",
                        (unsigned long long)request->request_id);
    if (lac_map_reserve(m, &m->requests, m->requests.count + 1) != 0)
        return lac_fail(m, LA_CACHE_ERR_OUT_OF_MEMORY, "out of host memory for the request table");
    lac_request *r = new_request(m, request);
    if (!r) return lac_fail(m, LA_CACHE_ERR_OUT_OF_MEMORY, "out of host memory for request %llu",
                            (unsigned long long)request->request_id);

    walk_result w;
    walk(m, request, r->path, &w);
    m->clock++;
    take_hit(m, r, &w);
    lac_map_insert(&m->requests, r);

    m->stats.lookups++;
    m->stats.lookup_tokens += (uint64_t)request->num_tokens;
    m->stats.hits += r->hit > 0;
    m->stats.hit_tokens += (uint64_t)r->hit;
    if (out_hit) fill_hit(m, &w, out_hit);
    return LA_CACHE_OK;
}

static la_cache_status find_request(la_cache_manager *m, uint64_t id, lac_request **out)
{
    *out = lac_map_find(&m->requests, id);
    if (!*out) return lac_fail(m, LA_CACHE_ERR_UNKNOWN_REQUEST, "no live request %llu", (unsigned long long)id);
    return LA_CACHE_OK;
}

la_cache_status la_cache_request_append(la_cache_manager *manager, uint64_t request_id, const int32_t *tokens,
                                        int64_t num_tokens)
{
    la_cache_manager *m = manager;
    if (!m) return LA_CACHE_ERR_NULL_ARGUMENT;
    lac_request *r;
    la_cache_status status = find_request(m, request_id, &r);
    if (status != LA_CACHE_OK) return status;
    if (num_tokens < 0 || (num_tokens > 0 && !tokens))
        return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "append: tokens NULL or num_tokens < 0");
    if (num_tokens > (int64_t)INT32_MAX * m->unit - r->num_tokens)
        return lac_fail(m, LA_CACHE_ERR_INVALID_ARGUMENT, "append: request too long");
    if (lac_reserve(m, (void **)&r->tokens, &r->token_capacity, r->num_tokens + num_tokens, sizeof *r->tokens))
        return lac_fail(m, LA_CACHE_ERR_OUT_OF_MEMORY, "out of host memory for request %llu's tokens",
                        (unsigned long long)request_id);
    if (num_tokens) memcpy(r->tokens + r->num_tokens, tokens, (size_t)num_tokens * sizeof *tokens);
    r->num_tokens += num_tokens;
    return LA_CACHE_OK;
}

/* ---- steps ---------------------------------------------------------------------------------------------------- */

/* Grow the pending-checkpoint arrays (writes and their checkpoint entries share one allocation). */
static int reserve_pending(la_cache_manager *m, lac_request *r, int64_t needed)
{
    if (needed <= r->pending_capacity) return 0;
    int64_t capacity = r->pending_capacity ? r->pending_capacity : 4;
    while (capacity < needed) capacity *= 2;
    la_cache_checkpoint_write *writes =
        lac_alloc(m, (size_t)capacity * (sizeof *r->writes + sizeof *r->pending_cps));
    if (!writes) return -1;
    lac_release(m, r->writes);
    r->writes = writes;
    r->pending_cps = (int32_t *)(writes + capacity);
    r->pending_capacity = capacity;
    return 0;
}

static int64_t plan_checkpoints(la_cache_manager *m, const lac_request *r, int64_t end, int *failed)
{
    *failed = 0;
    if (m->max_checkpoints == 0) return 0;
    la_cache_step_window window = {r->computed, end, r->prompt_tokens, r->branch_position, r->prompt_end_cached,
                                   m->block_size};
    int64_t count = la_cache_policy_plan(&m->policy, &window, NULL, 0);
    if (lac_reserve(m, (void **)&m->plan, &m->plan_capacity, count, sizeof *m->plan) != 0) {
        *failed = 1;
        return 0;
    }
    return la_cache_policy_plan(&m->policy, &window, m->plan, count);
}

static void release_pending(la_cache_manager *m, lac_request *r, int64_t count)
{
    for (int64_t i = 0; i < count; i++) lac_checkpoint_release(m, r->pending_cps[i]);
}

static void describe_step(const la_cache_manager *m, const lac_request *r, la_cache_step *step)
{
    step->start_position = r->step_start;
    step->num_tokens = r->step_tokens;
    if (r->step_start == 0) {
        step->init = LA_CACHE_INIT_ZERO;
        step->source_slot = -1;
    } else if (r->restore_cp != LAC_NONE) {
        step->init = LA_CACHE_INIT_FROM_SLOT;
        step->source_slot = m->checkpoints[r->restore_cp].slot;
    } else {
        step->init = LA_CACHE_INIT_CONTINUE;
        step->source_slot = -1;
    }
    step->num_checkpoints = (int32_t)r->num_pending;
    step->checkpoints = r->writes;
    step->num_kv_copies = r->step_kv_copy;
    if (r->step_kv_copy) {
        step->kv_copy.src_block = r->copy_src;
        step->kv_copy.dst_block = r->blocks[r->hit / m->block_size];
        step->kv_copy.num_tokens = r->copy_tokens;
    } else {
        step->kv_copy.src_block = step->kv_copy.dst_block = -1;
        step->kv_copy.num_tokens = 0;
    }
    step->num_blocks = (int32_t)r->num_blocks;
    step->block_table = r->blocks;
}

la_cache_status la_cache_request_schedule(la_cache_manager *manager, uint64_t request_id, int64_t num_tokens,
                                          la_cache_step *out_step)
{
    la_cache_manager *m = manager;
    if (!m) return LA_CACHE_ERR_NULL_ARGUMENT;
    if (!out_step) return lac_fail(m, LA_CACHE_ERR_NULL_ARGUMENT, "out_step is NULL");
    lac_request *r;
    la_cache_status status = find_request(m, request_id, &r);
    if (status != LA_CACHE_OK) return status;
    if (r->step_pending)
        return lac_fail(m, LA_CACHE_ERR_STEP_PENDING, "request %llu has a step scheduled and not committed",
                        (unsigned long long)request_id);
    if (num_tokens < 1 || num_tokens > r->num_tokens - r->computed || num_tokens > INT32_MAX)
        return lac_fail(m, LA_CACHE_ERR_TOKEN_RANGE,
                        "request %llu: a step of %lld tokens after %lld computed of %lld known",
                        (unsigned long long)request_id, (long long)num_tokens, (long long)r->computed,
                        (long long)r->num_tokens);
    const int64_t end = r->computed + num_tokens;
    const int64_t blocks_needed = blocks_for(m, end);
    const int64_t new_blocks = blocks_needed > r->num_blocks ? blocks_needed - r->num_blocks : 0;

    int plan_failed;
    const int64_t wanted = plan_checkpoints(m, r, end, &plan_failed);
    if (plan_failed || lac_reserve(m, (void **)&r->blocks, &r->block_capacity, blocks_needed, sizeof *r->blocks) ||
        reserve_pending(m, r, wanted))
        return lac_fail(m, LA_CACHE_ERR_OUT_OF_MEMORY, "out of host memory scheduling request %llu",
                        (unsigned long long)request_id);
    if (new_blocks > lac_blocks_obtainable(m))
        return lac_fail(m, LA_CACHE_ERR_KV_EXHAUSTED,
                        "request %llu needs %lld KV blocks, %lld are free or evictable",
                        (unsigned long long)request_id, (long long)new_blocks, (long long)lac_blocks_obtainable(m));

    /* The deepest private checkpoint of the step is written over the request's frontier, when nobody is about
     * to restore from that: a conversation keeps one slot, moving forward. */
    int64_t reuse_at = -1;
    if (lac_checkpoint_ref_valid(m, r->frontier) && m->checkpoints[r->frontier.cp].pins == 0)
        for (int64_t i = 0; i < wanted; i++)
            if (lac_places_private(m->plan[i].places)) reuse_at = i;
    const int64_t fresh_wanted = wanted - (reuse_at >= 0);

    /* Slots within budget come from the slot allocator, the only step that can still fail: do it first. Fresh
     * checkpoints sit after the reused one's place, so ordering them below never overwrites one not yet read. */
    int32_t *fresh_cps = wanted ? r->pending_cps + (reuse_at >= 0) : NULL;
    int64_t from_allocator = m->max_checkpoints - m->checkpoints_in_use;
    if (from_allocator > fresh_wanted) from_allocator = fresh_wanted;
    int64_t fresh = 0;
    for (; fresh < from_allocator; fresh++) {
        fresh_cps[fresh] = lac_checkpoint_acquire_new(m);
        if (fresh_cps[fresh] == LAC_NONE) {
            for (int64_t i = 0; i < fresh; i++) lac_checkpoint_release(m, fresh_cps[i]);
            return lac_fail(m, LA_CACHE_ERR_SLOT_ALLOC, "the slot allocator gave no checkpoint slot (request %llu)",
                            (unsigned long long)request_id);
        }
    }

    m->clock++;
    if (reuse_at >= 0) lac_checkpoint_take_back(m, r->frontier.cp);
    for (int64_t b = r->num_blocks; b < blocks_needed; b++) r->blocks[b] = lac_block_take(m);
    r->num_blocks = blocks_needed > r->num_blocks ? blocks_needed : r->num_blocks;
    /* Beyond the budget, slots come from evicting checkpoints in eviction order (demoted, private, shared; least
     * recently used first within each), except that a private checkpoint not written over its chain's frontier
     * only takes a demoted slot or a private one presumed dead: a new chain never pushes out the chains that are
     * coming back, nor the shared prefixes, and decoding requests that lost their slot do not evict each other's
     * every match unit. */
    for (; fresh < fresh_wanted; fresh++) {
        const int64_t item = reuse_at >= 0 && fresh >= reuse_at ? fresh + 1 : fresh;
        fresh_cps[fresh] = lac_checkpoint_acquire_evicted(m, lac_places_private(m->plan[item].places));
    }
    /* Hand the checkpoints out in plan order; a position without room goes without. */
    int64_t acquired = 0, used_fresh = 0;
    for (int64_t i = 0; i < wanted; i++) {
        int32_t cp = i == reuse_at ? r->frontier.cp : fresh_cps[used_fresh++];
        if (cp == LAC_NONE) continue;
        lac_checkpoint *c = &m->checkpoints[cp];
        c->position = m->plan[i].position;
        c->places = m->plan[i].places;
        r->pending_cps[acquired] = cp;
        r->writes[acquired].position = c->position;
        r->writes[acquired].slot = c->slot;
        acquired++;
    }
    m->stats.checkpoints_skipped += (uint64_t)(wanted - acquired);
    r->num_pending = acquired;
    r->step_pending = 1;
    r->step_start = r->computed;
    r->step_tokens = (int32_t)num_tokens;
    r->step_kv_copy = r->copy_src != LAC_NONE && r->computed == r->hit;
    m->stats.kv_copies += (uint64_t)r->step_kv_copy;
    describe_step(m, r, out_step);
    return LA_CACHE_OK;
}

/* Index the units the step completed; stop (and stop for good) when the index has no room. */
static void extend_path(la_cache_manager *m, lac_request *r, int64_t target_units)
{
    const int64_t unit = m->unit;
    for (int64_t j = r->path_len; j < target_units; j++) {
        int32_t parent = j ? r->path[j - 1] : LAC_NONE;
        uint64_t parent_hash = j ? m->entries[parent].hash : LAC_ROOT_HASH;
        const int32_t *tokens = r->tokens + j * unit;
        uint64_t extra = lac_extra_digest(r->extra_keys, r->num_extra_keys, j * unit, (j + 1) * unit);
        uint64_t hash = lac_unit_hash(parent_hash, extra, tokens, m->unit);
        int32_t e = lac_index_find(m, parent, hash, extra, tokens);
        if (e != LAC_NONE) {
            lac_entry_lock(m, e);
        } else {
            int32_t block = m->has_kv ? r->blocks[j * unit / m->block_size] : LAC_NONE;
            e = lac_index_insert(m, parent, hash, extra, tokens, block);
            if (e == LAC_NONE) {
                r->path_broken = 1;
                return;
            }
        }
        r->path[j] = e;
        r->path_len = j + 1;
    }
}

static void demote_if_valid(la_cache_manager *m, lac_checkpoint_ref ref)
{
    if (lac_checkpoint_ref_valid(m, ref)) lac_checkpoint_demote(m, ref.cp);
}

static void publish_pending(la_cache_manager *m, lac_request *r)
{
    for (int64_t i = 0; i < r->num_pending; i++) {
        int32_t cp = r->pending_cps[i];
        int64_t units = m->checkpoints[cp].position / m->unit;
        int32_t entry = units <= r->path_len ? r->path[units - 1] : LAC_NONE;
        if (entry == LAC_NONE || m->entries[entry].checkpoint != LAC_NONE) {
            lac_checkpoint_release(m, cp);
            m->stats.checkpoints_discarded++;
            continue;
        }
        lac_checkpoint_publish(m, cp, entry);
        m->stats.checkpoints_written++;
        /* A deeper private checkpoint of the chain supersedes the frontier (when it was not written over it): that
         * one now only serves requests that leave the chain before here. */
        if (lac_places_private(m->checkpoints[cp].places)) {
            if (r->frontier.cp != cp) demote_if_valid(m, r->frontier);
            r->frontier = lac_checkpoint_ref_to(m, cp);
        }
    }
    r->num_pending = 0;
}

/* Drop the references the first step needed: the checkpoint it restored and the block it copied from. */
static void drop_first_step_pins(la_cache_manager *m, lac_request *r)
{
    if (r->restore_cp != LAC_NONE) {
        lac_checkpoint_unpin(m, r->restore_cp);
        r->restore_cp = LAC_NONE;
    }
    if (r->copy_src != LAC_NONE) {
        lac_block_adjust(m, r->copy_src, -1, -1);
        r->copy_src = LAC_NONE;
    }
}

la_cache_status la_cache_request_commit(la_cache_manager *manager, uint64_t request_id)
{
    la_cache_manager *m = manager;
    if (!m) return LA_CACHE_ERR_NULL_ARGUMENT;
    lac_request *r;
    la_cache_status status = find_request(m, request_id, &r);
    if (status != LA_CACHE_OK) return status;
    if (!r->step_pending)
        return lac_fail(m, LA_CACHE_ERR_NO_STEP, "request %llu has no scheduled step to commit",
                        (unsigned long long)request_id);
    const int64_t end = r->step_start + r->step_tokens;
    const int64_t target_units = r->path_broken ? r->path_len : end / m->unit;
    if (lac_reserve(m, (void **)&r->path, &r->path_capacity, target_units, sizeof *r->path) != 0)
        return lac_fail(m, LA_CACHE_ERR_OUT_OF_MEMORY, "out of host memory committing request %llu",
                        (unsigned long long)request_id);

    m->clock++;
    extend_path(m, r, target_units);
    publish_pending(m, r);
    if (r->restore_cp != LAC_NONE) m->stats.checkpoints_restored++;
    drop_first_step_pins(m, r);
    r->computed = end;
    r->step_pending = 0;
    r->step_kv_copy = 0;
    return LA_CACHE_OK;
}

la_cache_status la_cache_request_free(la_cache_manager *manager, uint64_t request_id)
{
    la_cache_manager *m = manager;
    if (!m) return LA_CACHE_ERR_NULL_ARGUMENT;
    lac_request *r;
    la_cache_status status = find_request(m, request_id, &r);
    if (status != LA_CACHE_OK) return status;

    m->clock++;
    if (r->step_pending) {
        release_pending(m, r, r->num_pending);
        m->stats.checkpoints_discarded += (uint64_t)r->num_pending;
    }
    for (int64_t j = r->path_len - 1; j >= 0; j--) lac_entry_unlock(m, r->path[j]);
    drop_first_step_pins(m, r);
    for (int64_t b = 0; b < r->num_blocks; b++) lac_block_adjust(m, r->blocks[b], -1, -1);
    lac_map_remove(&m->requests, request_id);
    free_request_memory(m, r);
    return LA_CACHE_OK;
}

/* ---- queries -------------------------------------------------------------------------------------------------- */

la_cache_status la_cache_get_request_info(const la_cache_manager *manager, uint64_t request_id,
                                          la_cache_request_info *out_info)
{
    if (!manager || !out_info) return LA_CACHE_ERR_NULL_ARGUMENT;
    const lac_request *r = lac_map_find(&manager->requests, request_id);
    if (!r) return LA_CACHE_ERR_UNKNOWN_REQUEST;
    out_info->num_tokens = r->num_tokens;
    out_info->prompt_tokens = r->prompt_tokens;
    out_info->computed_tokens = r->computed;
    out_info->hit_tokens = r->hit;
    out_info->step_pending = r->step_pending;
    out_info->num_blocks = (int32_t)r->num_blocks;
    out_info->block_table = r->blocks;
    return LA_CACHE_OK;
}

la_cache_status la_cache_get_stats(const la_cache_manager *manager, la_cache_stats *out_stats)
{
    if (!manager || !out_stats) return LA_CACHE_ERR_NULL_ARGUMENT;
    const la_cache_manager *m = manager;
    *out_stats = m->stats;
    out_stats->checkpoints_in_use = m->checkpoints_in_use;
    out_stats->max_checkpoints = m->max_checkpoints;
    out_stats->checkpoint_bytes_in_use = (uint64_t)m->checkpoints_in_use * m->config.checkpoint_bytes;
    out_stats->kv_blocks_total = m->num_blocks;
    out_stats->kv_blocks_free = m->num_free_blocks;
    out_stats->kv_blocks_cached_only = m->num_cached_only;
    out_stats->kv_bytes_in_use = (uint64_t)(m->num_blocks - m->num_free_blocks) * m->block_bytes;
    out_stats->index_entries = m->num_entries;
    out_stats->live_requests = (int64_t)m->requests.count;
    return LA_CACHE_OK;
}
