/*
 * The entry point and the function table. The table of ABI 1.x is append-only: tests/abi's baseline and the
 * offset checks below catch an entry moved or removed. Every hook is wrapped in an NVTX range here, so the hook
 * implementations stay free of profiling code.
 */
#include <stddef.h>
#include <pthread.h>

#include "internal.h"
#include "nvtx.h"

#if LINATTN_HAVE_NVTX
static nvtxDomainHandle_t domain;
static pthread_once_t domain_once = PTHREAD_ONCE_INIT;
static void create_domain(void) { domain = nvtxDomainCreateA("linattn"); }
nvtxDomainHandle_t linattn_nvtx_domain(void)
{
    pthread_once(&domain_once, create_domain);
    return domain;
}
#endif

/* Defines ranged_<hook>: api_<hook> inside an NVTX range named "linattn/<hook>". */
#define RANGED(hook, params, args)                                                                                 \
    static linattn_status ranged_##hook params                                                                     \
    {                                                                                                              \
        range_push("linattn/" #hook);                                                                              \
        linattn_status status = api_##hook args;                                                                   \
        range_pop();                                                                                               \
        return status;                                                                                             \
    }

RANGED(context_create, (const linattn_context_desc *d, linattn_context **o), (d, o))
RANGED(context_destroy, (linattn_context *c), (c))
RANGED(query_capabilities, (const linattn_context *c, linattn_capabilities *o), (c, o))
RANGED(layer_create, (linattn_context *c, const linattn_layer_desc *d, linattn_layer **o, linattn_layer_info *i),
       (c, d, o, i))
RANGED(layer_destroy, (linattn_layer *l), (l))
RANGED(layer_info, (const linattn_layer *l, linattn_layer_info *i), (l, i))
RANGED(pool_create, (linattn_context *c, const linattn_pool_desc *d, linattn_pool **o), (c, d, o))
RANGED(pool_destroy, (linattn_pool *p), (p))
RANGED(pool_info, (const linattn_pool *p, linattn_pool_info *i), (p, i))
RANGED(slot_alloc, (linattn_pool *p, int32_t *o), (p, o))
RANGED(slot_free, (linattn_pool *p, int32_t s), (p, s))
RANGED(slot_copy, (linattn_pool *p, int32_t d, int32_t s, linattn_stream_t st), (p, d, s, st))
RANGED(slot_zero, (linattn_pool *p, int32_t s, linattn_stream_t st), (p, s, st))
RANGED(slot_read, (const linattn_pool *p, const linattn_layer *l, int32_t s, void *d, uint64_t n, linattn_stream_t st),
       (p, l, s, d, n, st))
RANGED(slot_write, (linattn_pool *p, const linattn_layer *l, int32_t s, const void *d, uint64_t n, linattn_stream_t st),
       (p, l, s, d, n, st))
RANGED(plan_create, (linattn_pool *p, const linattn_plan_desc *d, linattn_plan **o), (p, d, o))
RANGED(plan_destroy, (linattn_plan *p), (p))
RANGED(plan_set_batch, (linattn_plan *p, const linattn_batch_desc *b, linattn_stream_t st), (p, b, st))
RANGED(forward, (linattn_layer *l, const linattn_plan *p, const linattn_forward_args *a, linattn_stream_t st),
       (l, p, a, st))
RANGED(spec_verify,
       (linattn_layer *l, const linattn_plan *p, const linattn_draft_desc *d, const linattn_forward_args *a,
        linattn_stream_t st),
       (l, p, d, a, st))
RANGED(spec_commit, (linattn_pool *p, const linattn_plan *pl, const linattn_accept_desc *a, linattn_stream_t st),
       (p, pl, a, st))
RANGED(get_stats, (const linattn_context *c, linattn_stats *o), (c, o))
RANGED(prefix_cache_create, (linattn_pool *p, const linattn_prefix_cache_desc *d, linattn_prefix_cache **o), (p, d, o))
RANGED(prefix_cache_destroy, (linattn_prefix_cache *c), (c))
RANGED(cache_find_longest_hit, (linattn_prefix_cache *c, const linattn_cache_request_desc *r, linattn_cache_hit *h),
       (c, r, h))
RANGED(cache_request_add, (linattn_prefix_cache *c, const linattn_cache_request_desc *r, linattn_cache_hit *h),
       (c, r, h))
RANGED(cache_request_append, (linattn_prefix_cache *c, uint64_t id, const int32_t *t, int64_t n), (c, id, t, n))
RANGED(cache_request_schedule, (linattn_prefix_cache *c, uint64_t id, int64_t n, linattn_cache_step *s),
       (c, id, n, s))
RANGED(cache_request_commit, (linattn_prefix_cache *c, uint64_t id), (c, id))
RANGED(cache_request_free, (linattn_prefix_cache *c, uint64_t id), (c, id))
RANGED(cache_get_stats, (const linattn_prefix_cache *c, linattn_cache_stats *s), (c, s))

static const linattn_api api_table = {
    .struct_size = sizeof(linattn_api),
    .abi_major = LINATTN_ABI_VERSION_MAJOR,
    .abi_minor = LINATTN_ABI_VERSION_MINOR,
    .version_string = api_version_string,
    .last_error_message = api_last_error_message,
    .context_create = ranged_context_create,
    .context_destroy = ranged_context_destroy,
    .query_capabilities = ranged_query_capabilities,
    .layer_create = ranged_layer_create,
    .layer_destroy = ranged_layer_destroy,
    .layer_info = ranged_layer_info,
    .pool_create = ranged_pool_create,
    .pool_destroy = ranged_pool_destroy,
    .pool_info = ranged_pool_info,
    .slot_alloc = ranged_slot_alloc,
    .slot_free = ranged_slot_free,
    .slot_copy = ranged_slot_copy,
    .slot_zero = ranged_slot_zero,
    .slot_read = ranged_slot_read,
    .slot_write = ranged_slot_write,
    .plan_create = ranged_plan_create,
    .plan_destroy = ranged_plan_destroy,
    .plan_set_batch = ranged_plan_set_batch,
    .forward = ranged_forward,
    .spec_verify = ranged_spec_verify,
    .spec_commit = ranged_spec_commit,
    .get_stats = ranged_get_stats,
    .prefix_cache_create = ranged_prefix_cache_create,
    .prefix_cache_destroy = ranged_prefix_cache_destroy,
    .cache_find_longest_hit = ranged_cache_find_longest_hit,
    .cache_request_add = ranged_cache_request_add,
    .cache_request_append = ranged_cache_request_append,
    .cache_request_schedule = ranged_cache_request_schedule,
    .cache_request_commit = ranged_cache_request_commit,
    .cache_request_free = ranged_cache_request_free,
    .cache_get_stats = ranged_cache_get_stats,
};

/* ABI 1.0 layout, frozen: entries of later minors go after cache_get_stats. */
#define FROZEN_SLOT(member, index)                                                                                 \
    _Static_assert(offsetof(linattn_api, member) == offsetof(linattn_api, version_string) + (index) * sizeof(void *), \
                   "linattn_api 1.0 layout changed: " #member)
FROZEN_SLOT(version_string, 0);
FROZEN_SLOT(context_create, 2);
FROZEN_SLOT(forward, 20);
FROZEN_SLOT(get_stats, 23);
FROZEN_SLOT(prefix_cache_create, 24);
FROZEN_SLOT(prefix_cache_destroy, 25);
FROZEN_SLOT(cache_find_longest_hit, 26);
FROZEN_SLOT(cache_request_add, 27);
FROZEN_SLOT(cache_request_append, 28);
FROZEN_SLOT(cache_request_schedule, 29);
FROZEN_SLOT(cache_request_commit, 30);
FROZEN_SLOT(cache_request_free, 31);
FROZEN_SLOT(cache_get_stats, 32);
_Static_assert(sizeof(linattn_api) == offsetof(linattn_api, cache_get_stats) + sizeof(void *),
               "linattn_api has entries after cache_get_stats: add them to the table and freeze them here");

#define STRINGIFY(x) #x
#define VERSION_TEXT(major, minor, patch) STRINGIFY(major) "." STRINGIFY(minor) "." STRINGIFY(patch)
#if LINATTN_WITH_CUDA
#define BACKENDS "cpu, cuda"
#else
#define BACKENDS "cpu"
#endif

const char *api_version_string(void)
{
    return "linattn " VERSION_TEXT(LINATTN_VERSION_MAJOR, LINATTN_VERSION_MINOR, LINATTN_VERSION_PATCH) " (" BACKENDS ")";
}

const char *api_last_error_message(void) { return last_error(); }

LINATTN_EXPORT linattn_status linattn_get_api(uint32_t abi_major, uint32_t abi_minor, const linattn_api **out_api)
{
    if (!out_api) return fail(LINATTN_ERR_NULL_ARGUMENT, "out_api is NULL");
    if (abi_major != LINATTN_ABI_VERSION_MAJOR)
        return fail(LINATTN_ERR_ABI_VERSION, "host asks for ABI %u.%u; this library implements ABI %d.%d only",
                    abi_major, abi_minor, LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR);
    if (abi_minor > LINATTN_ABI_VERSION_MINOR)
        return fail(LINATTN_ERR_ABI_VERSION,
                    "host was built against ABI %u.%u, newer than this library's %d.%d: upgrade liblinattn",
                    abi_major, abi_minor, LINATTN_ABI_VERSION_MAJOR, LINATTN_ABI_VERSION_MINOR);
    *out_api = &api_table;
    return LINATTN_OK;
}
