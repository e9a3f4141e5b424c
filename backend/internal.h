/*
 * internal.h — the objects behind the ABI's opaque handles, and the device interface every backend implements.
 *
 * Ownership: a context owns its layers, pools, plans and prefix caches (intrusive lists, destroyed with it). A pool
 * references its layers (layer.pool_refs), a plan its pool (pool.plan_refs) and a prefix cache its pool
 * (pool.cache_refs), so nothing in use can be destroyed.
 * Every call validates fully before it changes anything, so an error leaves all state as it was.
 */
#ifndef LINATTN_BACKEND_INTERNAL_H
#define LINATTN_BACKEND_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "abi/linattn.h"
#include "kernels/la_params.h"

/* Memory and compute of one backend. "Device" memory is host memory for the CPU backend. */
typedef struct device_ops {
    const char *name;
    linattn_status (*alloc)(const linattn_context *ctx, size_t bytes, void **out);
    void (*release)(const linattn_context *ctx, void *ptr);
    /* host -> device, stream-ordered; the host buffer may be reused when the call returns */
    linattn_status (*upload)(const linattn_context *ctx, void *dst, const void *src, size_t bytes, linattn_stream_t s);
    /* device -> host, synchronous */
    linattn_status (*download)(const linattn_context *ctx, void *dst, const void *src, size_t bytes,
                               linattn_stream_t s);
    linattn_status (*copy)(const linattn_context *ctx, void *dst, const void *src, size_t bytes, linattn_stream_t s);
    linattn_status (*zero)(const linattn_context *ctx, void *dst, size_t bytes, linattn_stream_t s);
    linattn_status (*synchronize)(const linattn_context *ctx);
    linattn_status (*forward)(const linattn_context *ctx, const la_layer *layer, const la_batch *batch,
                              const la_io *io, const la_state_view *state, linattn_stream_t s);
    /* bytes of scratch a plan with these capacities needs for this layer's forwards (NULL: none) */
    uint64_t (*workspace_bytes)(const la_layer *layer, int64_t max_tokens, int32_t max_seqs);
    /* true when plan metadata must live in device memory (la_batch arrays are read by the device) */
    bool device_batch;
} device_ops;

extern const device_ops cpu_device_ops;
#if LINATTN_WITH_CUDA
extern const device_ops cuda_device_ops;
/* Fills name (NUL-terminated) for a CUDA ordinal; LINATTN_ERR_NO_DEVICE when there is none. */
linattn_status cuda_device_probe(int32_t ordinal, char *name, size_t name_size);
#endif

struct linattn_context {
    const device_ops *ops;
    linattn_backend_kind backend;
    int32_t device_ordinal;
    char device_name[128];
    linattn_stats stats;
    linattn_layer *layers;
    linattn_pool *pools;
    linattn_plan *plans;
    linattn_prefix_cache *caches;
};

struct linattn_layer {
    linattn_context *ctx;
    linattn_layer *next;
    la_layer params;    /* weight pointers point into weights (backend memory) */
    void *weights;
    linattn_layer_info info;
    int32_t pool_refs;
};

typedef struct pool_layer {
    linattn_layer *layer;
    la_state_view view;
} pool_layer;

struct linattn_pool {
    linattn_context *ctx;
    linattn_pool *next;
    void *memory; /* every layer's recurrent and conv arrays, carved at fixed offsets */
    int32_t num_layers;
    pool_layer *layers;
    int32_t capacity;
    int32_t slots_in_use;
    int32_t lowest_free; /* every slot below it is taken: allocation scans from here */
    uint8_t *allocated; /* [capacity] slot_owner */
    uint64_t slot_bytes;
    int32_t plan_refs;
    int32_t cache_refs;
};

/* Who holds a pool slot: the host frees its own slots; a prefix cache's checkpoint slots only the cache frees. */
typedef enum { SLOT_FREE = 0, SLOT_HOST = 1, SLOT_CHECKPOINT = 2 } slot_owner;

struct la_cache_manager; /* cache/block_manager.h */

struct linattn_prefix_cache {
    linattn_context *ctx;
    linattn_prefix_cache *next;
    linattn_pool *pool; /* its checkpoint slots come from here */
    struct la_cache_manager *manager;
};

struct linattn_plan {
    linattn_context *ctx;
    linattn_plan *next;
    linattn_pool *pool;
    linattn_plan_desc limits;
    bool has_batch;
    int32_t num_seqs;
    int32_t num_checkpoints;
    int64_t num_tokens;
    int32_t max_seq_tokens;       /* the longest non-padding sequence of the batch, a kernel-choice hint */
    uint64_t tokens_per_layer;    /* tokens of non-padding sequences */
    uint64_t restores_per_layer;  /* non-padding sequences started FROM_SLOT */
    la_seq *seqs;                 /* host, [max_seqs] */
    la_checkpoint *checkpoints;   /* host, [max(max_checkpoints, 1)] */
    la_seq *device_seqs;          /* device copies when ops->device_batch, else the host arrays */
    la_checkpoint *device_checkpoints;
    void *workspace;              /* device scratch of the forwards (la_batch.workspace), NULL if none needs any */
    uint64_t workspace_bytes;
    uint8_t *slot_marks;          /* [pool capacity] validation scratch, all zero between calls */
};

/* handles.c — the registry of live handles, so a destroyed handle is refused instead of dereferenced. */
typedef enum { HANDLE_CONTEXT = 1, HANDLE_LAYER, HANDLE_POOL, HANDLE_PLAN, HANDLE_CACHE } handle_kind;
linattn_status handle_register(const void *handle, handle_kind kind);
void handle_unregister(const void *handle);
bool handle_is_live(const void *handle, handle_kind kind);

/* errors.c — thread-local message of the last failure. */
linattn_status fail(linattn_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *last_error(void);

/* Common argument checks; each returns LINATTN_OK or the failure it recorded. */
linattn_status check_struct_size(uint32_t struct_size, size_t known_size, const char *what);
linattn_status check_context(const linattn_context *ctx);
linattn_status check_layer(const linattn_layer *layer);
linattn_status check_pool(const linattn_pool *pool);
linattn_status check_plan(const linattn_plan *plan);
linattn_status check_cache(const linattn_prefix_cache *cache);
linattn_status check_slot(const linattn_pool *pool, int32_t slot, const char *what);

/* Writes min(struct_size, size) bytes of a result struct; the struct_size field keeps the host's value. */
void copy_result(void *host_struct, const void *full, size_t size);

/* The ABI hooks, one file per object. */
const char *api_version_string(void);
const char *api_last_error_message(void);
linattn_status api_context_create(const linattn_context_desc *desc, linattn_context **out);
linattn_status api_context_destroy(linattn_context *ctx);
linattn_status api_query_capabilities(const linattn_context *ctx, linattn_capabilities *caps);
linattn_status api_get_stats(const linattn_context *ctx, linattn_stats *stats);
linattn_status api_layer_create(linattn_context *ctx, const linattn_layer_desc *desc, linattn_layer **out,
                                linattn_layer_info *out_info);
linattn_status api_layer_destroy(linattn_layer *layer);
linattn_status api_layer_info(const linattn_layer *layer, linattn_layer_info *info);
linattn_status api_pool_create(linattn_context *ctx, const linattn_pool_desc *desc, linattn_pool **out);
linattn_status api_pool_destroy(linattn_pool *pool);
linattn_status api_pool_info(const linattn_pool *pool, linattn_pool_info *info);
linattn_status api_slot_alloc(linattn_pool *pool, int32_t *out_slot);
linattn_status api_slot_free(linattn_pool *pool, int32_t slot);
linattn_status api_slot_copy(linattn_pool *pool, int32_t dst, int32_t src, linattn_stream_t stream);
linattn_status api_slot_zero(linattn_pool *pool, int32_t slot, linattn_stream_t stream);
linattn_status api_slot_read(const linattn_pool *pool, const linattn_layer *layer, int32_t slot, void *dst,
                             uint64_t bytes, linattn_stream_t stream);
linattn_status api_slot_write(linattn_pool *pool, const linattn_layer *layer, int32_t slot, const void *src,
                              uint64_t bytes, linattn_stream_t stream);
linattn_status api_plan_create(linattn_pool *pool, const linattn_plan_desc *desc, linattn_plan **out);
linattn_status api_plan_destroy(linattn_plan *plan);
linattn_status api_plan_set_batch(linattn_plan *plan, const linattn_batch_desc *batch, linattn_stream_t stream);
linattn_status api_forward(linattn_layer *layer, const linattn_plan *plan, const linattn_forward_args *args,
                           linattn_stream_t stream);
linattn_status api_spec_verify(linattn_layer *layer, const linattn_plan *plan, const linattn_draft_desc *drafts,
                               const linattn_forward_args *args, linattn_stream_t stream);
linattn_status api_spec_commit(linattn_pool *pool, const linattn_plan *plan, const linattn_accept_desc *accepted,
                               linattn_stream_t stream);
linattn_status api_prefix_cache_create(linattn_pool *pool, const linattn_prefix_cache_desc *desc,
                                       linattn_prefix_cache **out);
linattn_status api_prefix_cache_destroy(linattn_prefix_cache *cache);
linattn_status api_cache_find_longest_hit(linattn_prefix_cache *cache, const linattn_cache_request_desc *request,
                                          linattn_cache_hit *out_hit);
linattn_status api_cache_request_add(linattn_prefix_cache *cache, const linattn_cache_request_desc *request,
                                     linattn_cache_hit *out_hit);
linattn_status api_cache_request_append(linattn_prefix_cache *cache, uint64_t request_id, const int32_t *tokens,
                                        int64_t num_tokens);
linattn_status api_cache_request_schedule(linattn_prefix_cache *cache, uint64_t request_id, int64_t num_tokens,
                                          linattn_cache_step *out_step);
linattn_status api_cache_request_commit(linattn_prefix_cache *cache, uint64_t request_id);
linattn_status api_cache_request_free(linattn_prefix_cache *cache, uint64_t request_id);
linattn_status api_cache_get_stats(const linattn_prefix_cache *cache, linattn_cache_stats *stats);

/* Destruction used by context_destroy (no checks, no device sync). */
void layer_release(linattn_layer *layer);
void pool_release(linattn_pool *pool);
void plan_release(linattn_plan *plan);
void prefix_cache_release(linattn_prefix_cache *cache); /* gives its checkpoint slots back to its pool */

/* pool.c helpers shared with forward/plan */
const pool_layer *pool_find_layer(const linattn_pool *pool, const linattn_layer *layer);
/* The lowest free slot, marked as owner's; -1 when the pool is full. */
int32_t pool_take_slot(linattn_pool *pool, slot_owner owner);
void pool_return_slot(linattn_pool *pool, int32_t slot);

#define CHECKPOINT_ALIGNMENT 64

#endif
