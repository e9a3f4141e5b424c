/*
 * Fault injection: a scripted serving scenario is run once per allocation the manager makes, with exactly that
 * allocation failing (host memory, then state slots). The failing call must say so with its status, leave the
 * manager exactly as it was (statistics, requests, block tables, invariants), and work when retried; no run may
 * leak memory or slots.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "cache/block_manager.h"

/* ---- allocators that fail on request ----------------------------------------------------------------------------- */

typedef struct faults {
    int64_t host_calls, host_fail_at, host_outstanding;
    int64_t slot_calls, slot_fail_at;
    int injected;
    uint8_t slot_taken[64];
    int32_t slots_out;
} faults;

static void *faulty_alloc(void *user, size_t bytes)
{
    faults *f = user;
    if (++f->host_calls == f->host_fail_at) {
        f->injected = 1;
        return NULL;
    }
    f->host_outstanding++;
    return malloc(bytes);
}

static void counted_free(void *user, void *ptr)
{
    faults *f = user;
    f->host_outstanding--;
    free(ptr);
}

static int faulty_slot_alloc(void *user, int32_t *out_slot)
{
    faults *f = user;
    if (++f->slot_calls == f->slot_fail_at) {
        f->injected = 1;
        return -1;
    }
    for (int32_t s = 0; s < 64; s++)
        if (!f->slot_taken[s]) {
            f->slot_taken[s] = 1;
            f->slots_out++;
            *out_slot = s;
            return 0;
        }
    return -1;
}

static void checked_slot_free(void *user, int32_t slot)
{
    faults *f = user;
    cr_assert(slot >= 0 && slot < 64 && f->slot_taken[slot], "slot %d freed but not taken", slot);
    f->slot_taken[slot] = 0;
    f->slots_out--;
}

/* ---- the scenario ------------------------------------------------------------------------------------------------ */

enum { OP_ADD, OP_SCHEDULE, OP_COMMIT, OP_APPEND, OP_FREE };

typedef struct op {
    int kind;
    uint64_t id;
    const int32_t *tokens;
    int64_t n;
    const la_cache_extra_key *keys;
    int32_t num_keys;
} op;

#define MAX_OPS 1024
typedef struct script {
    op ops[MAX_OPS];
    int count;
    int32_t tokens[8][1200];
} script;

static void push(script *s, op o)
{
    cr_assert_lt(s->count, MAX_OPS);
    s->ops[s->count++] = o;
}

static void push_request(script *s, uint64_t id, const int32_t *tokens, int64_t prompt, int64_t chunk, int64_t decode,
                         int finish)
{
    push(s, (op){OP_ADD, id, tokens, prompt, NULL, 0});
    for (int64_t done = 0; done < prompt; done += chunk) {
        push(s, (op){OP_SCHEDULE, id, NULL, prompt - done < chunk ? prompt - done : chunk, NULL, 0});
        push(s, (op){OP_COMMIT, id, NULL, 0, NULL, 0});
    }
    for (int64_t i = 0; i < decode; i++) {
        push(s, (op){OP_APPEND, id, tokens + prompt + i, 1, NULL, 0});
        push(s, (op){OP_SCHEDULE, id, NULL, 1, NULL, 0});
        push(s, (op){OP_COMMIT, id, NULL, 0, NULL, 0});
    }
    if (finish) push(s, (op){OP_FREE, id, NULL, 0, NULL, 0});
}

/* Shared prefixes, a next turn, a branch, chunked prefill, decode with turn-end checkpoints, an abort mid-step,
 * extra keys, enough live requests to grow the request table, and eviction under a small pool. */
static void build_script(script *s)
{
    memset(s, 0, sizeof *s);
    for (int d = 0; d < 8; d++)
        for (int i = 0; i < 1200; i++) s->tokens[d][i] = d < 2 ? i : d * 100000 + i;
    static const la_cache_extra_key adapter = {0, INT64_MAX, 42};
    push_request(s, 1, s->tokens[0], 300, 128, 140, 0);           /* live through the script */
    push_request(s, 2, s->tokens[0], 600, 600, 4, 1);             /* the next turn of request 1's prompt */
    push_request(s, 3, s->tokens[2], 200, 200, 0, 0);
    push(s, (op){OP_ADD, 4, s->tokens[1], 500, NULL, 0});         /* same start as 1 and 2: hit, branch later */
    push(s, (op){OP_SCHEDULE, 4, NULL, 100, NULL, 0});
    push(s, (op){OP_FREE, 4, NULL, 0, NULL, 0});                  /* aborted before its step commits */
    push(s, (op){OP_ADD, 5, s->tokens[3], 260, &adapter, 1});
    push(s, (op){OP_SCHEDULE, 5, NULL, 260, NULL, 0});
    push(s, (op){OP_COMMIT, 5, NULL, 0, NULL, 0});
    for (uint64_t id = 10; id < 30; id++) push(s, (op){OP_ADD, id, s->tokens[4 + id % 4], 64 + (int64_t)id, NULL, 0});
    for (uint64_t id = 10; id < 30; id++) {
        push(s, (op){OP_SCHEDULE, id, NULL, 64 + (int64_t)id, NULL, 0});
        push(s, (op){OP_COMMIT, id, NULL, 0, NULL, 0});
        push(s, (op){OP_FREE, id, NULL, 0, NULL, 0});
    }
    push_request(s, 6, s->tokens[5], 1000, 512, 0, 1); /* evicts cached blocks */
    push(s, (op){OP_FREE, 3, NULL, 0, NULL, 0});
    push(s, (op){OP_FREE, 5, NULL, 0, NULL, 0});
    push(s, (op){OP_FREE, 1, NULL, 0, NULL, 0});
}

static la_cache_status run_op(la_cache_manager *m, const op *o)
{
    la_cache_step step;
    switch (o->kind) {
    case OP_ADD: {
        la_cache_request_desc d = {o->id, o->tokens, o->n, o->keys, o->num_keys, -1, 0};
        return la_cache_request_add(m, &d, NULL);
    }
    case OP_SCHEDULE: { /* up to n tokens: a hit may have left fewer to compute */
        la_cache_request_info info;
        cr_assert_eq(la_cache_get_request_info(m, o->id, &info), LA_CACHE_OK);
        int64_t n = info.num_tokens - info.computed_tokens < o->n ? info.num_tokens - info.computed_tokens : o->n;
        return n ? la_cache_request_schedule(m, o->id, n, &step) : LA_CACHE_OK;
    }
    case OP_COMMIT: {
        la_cache_request_info info;
        cr_assert_eq(la_cache_get_request_info(m, o->id, &info), LA_CACHE_OK);
        return info.step_pending ? la_cache_request_commit(m, o->id) : LA_CACHE_OK;
    }
    case OP_APPEND: return la_cache_request_append(m, o->id, o->tokens, o->n);
    default: return la_cache_request_free(m, o->id);
    }
}

/* ---- snapshots --------------------------------------------------------------------------------------------------- */

typedef struct snapshot {
    la_cache_stats stats;
    int present[64];
    la_cache_request_info info[64];
    int32_t tables[64][128];
} snapshot;

static void take(la_cache_manager *m, snapshot *s)
{
    memset(s, 0, sizeof *s);
    cr_assert_eq(la_cache_get_stats(m, &s->stats), LA_CACHE_OK);
    for (uint64_t id = 0; id < 64; id++) {
        if (la_cache_get_request_info(m, id, &s->info[id]) != LA_CACHE_OK) continue;
        s->present[id] = 1;
        cr_assert_leq(s->info[id].num_blocks, 128);
        memcpy(s->tables[id], s->info[id].block_table, (size_t)s->info[id].num_blocks * sizeof(int32_t));
        s->info[id].block_table = NULL; /* compared by content */
    }
}

static void expect_same(const snapshot *a, const snapshot *b, int op_index)
{
    cr_assert_eq(memcmp(&a->stats, &b->stats, sizeof a->stats), 0, "op %d: statistics changed", op_index);
    for (int id = 0; id < 64; id++) {
        cr_assert_eq(a->present[id], b->present[id], "op %d: request %d appeared or vanished", op_index, id);
        if (!a->present[id]) continue;
        cr_assert_eq(memcmp(&a->info[id], &b->info[id], sizeof a->info[id]), 0, "op %d: request %d changed", op_index, id);
        cr_assert_eq(memcmp(a->tables[id], b->tables[id], (size_t)a->info[id].num_blocks * sizeof(int32_t)), 0,
                     "op %d: request %d's block table changed", op_index, id);
    }
}

static la_cache_config config_for(faults *f, int with_kv)
{
    static const uint64_t bytes[2] = {512, 1536};
    la_cache_config c;
    memset(&c, 0, sizeof c);
    c.block_size = 64;
    c.num_attn_groups = with_kv ? 2 : 0;
    c.kv_block_bytes = bytes;
    c.num_kv_blocks = 40;
    c.max_index_entries = with_kv ? 0 : 48;
    c.checkpoint_bytes = 1000;
    c.max_checkpoints = 6;
    c.policy = la_cache_policy_default();
    c.policy.places |= LA_CACHE_AT_INTERVAL;
    c.policy.every_n_blocks = 4;
    c.slots = (la_cache_slot_allocator){f, faulty_slot_alloc, checked_slot_free};
    c.host = (la_cache_host_allocator){f, faulty_alloc, counted_free};
    return c;
}

/* Run the script failing the fail_at-th host allocation (or slot allocation). Returns whether a fault fired. */
static int run_with_fault(const script *s, int with_kv, int64_t host_fail_at, int64_t slot_fail_at,
                          la_cache_status expected_error)
{
    faults f;
    memset(&f, 0, sizeof f);
    f.host_fail_at = host_fail_at;
    f.slot_fail_at = slot_fail_at;
    la_cache_config c = config_for(&f, with_kv);
    la_cache_manager *m = NULL;
    char message[256];
    la_cache_status status = la_cache_create(&c, &m, message, sizeof message);
    if (status != LA_CACHE_OK) {
        cr_assert(f.injected, "create failed without a fault: %s", message);
        cr_assert_eq(status, LA_CACHE_ERR_OUT_OF_MEMORY);
        cr_assert_null(m);
        cr_assert_eq(f.host_outstanding, 0, "a failed create leaked");
        return 1;
    }
    int fired = 0;
    for (int i = 0; i < s->count; i++) {
        snapshot before, after;
        take(m, &before);
        f.injected = 0;
        status = run_op(m, &s->ops[i]);
        if (f.injected) {
            cr_assert_neq(status, LA_CACHE_OK, "op %d swallowed a failed allocation", i);
            fired = 1;
            cr_assert_eq(status, expected_error, "op %d: status %d (%s)", i, status, la_cache_last_error(m));
            cr_assert_neq(la_cache_last_error(m)[0], '\0');
            cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "op %d: %s", i, la_cache_last_error(m));
            take(m, &after);
            expect_same(&before, &after, i);
            f.host_fail_at = f.slot_fail_at = -1;
            status = run_op(m, &s->ops[i]); /* the retry works */
        }
        cr_assert_eq(status, LA_CACHE_OK, "op %d (kind %d, request %llu): %s", i, s->ops[i].kind,
                     (unsigned long long)s->ops[i].id, la_cache_last_error(m));
        cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "op %d: %s", i, la_cache_last_error(m));
    }
    la_cache_destroy(m);
    cr_assert_eq(f.host_outstanding, 0, "host memory leaked (fault at %lld)", (long long)host_fail_at);
    cr_assert_eq(f.slots_out, 0, "slots leaked (fault at %lld)", (long long)slot_fail_at);
    return fired;
}

static void every_host_allocation(int with_kv)
{
    static script s;
    build_script(&s);
    int64_t faults_seen = 0, k = 1;
    while (run_with_fault(&s, with_kv, k, -1, LA_CACHE_ERR_OUT_OF_MEMORY)) {
        faults_seen++;
        k++;
    }
    cr_expect_gt(faults_seen, 20, "the scenario made only %lld allocations", (long long)faults_seen);
}

static void every_slot_allocation(int with_kv)
{
    static script s;
    build_script(&s);
    int64_t faults_seen = 0, k = 1;
    while (run_with_fault(&s, with_kv, -1, k, LA_CACHE_ERR_SLOT_ALLOC)) {
        faults_seen++;
        k++;
    }
    cr_expect_gt(faults_seen, 5, "the scenario took only %lld slots", (long long)faults_seen);
}

Test(cache_faults, every_host_allocation_fails_cleanly) { every_host_allocation(1); }
Test(cache_faults, every_slot_allocation_fails_cleanly) { every_slot_allocation(1); }
Test(cache_faults, every_host_allocation_fails_cleanly_without_kv) { every_host_allocation(0); }
Test(cache_faults, every_slot_allocation_fails_cleanly_without_kv) { every_slot_allocation(0); }

Test(cache_faults, exhausted_kv_pool_refuses_and_recovers)
{
    faults f;
    memset(&f, 0, sizeof f);
    f.host_fail_at = f.slot_fail_at = -1;
    la_cache_config c = config_for(&f, 1);
    c.num_kv_blocks = 4; /* 256 tokens */
    la_cache_manager *m = NULL;
    cr_assert_eq(la_cache_create(&c, &m, NULL, 0), LA_CACHE_OK);
    static int32_t a[400], b[400];
    for (int i = 0; i < 400; i++) a[i] = i, b[i] = 7000 + i;
    la_cache_request_desc da = {1, a, 200, NULL, 0, -1, 0}, db = {2, b, 200, NULL, 0, -1, 0};
    la_cache_step step;
    cr_assert_eq(la_cache_request_add(m, &da, NULL), LA_CACHE_OK);
    cr_assert_eq(la_cache_request_schedule(m, 1, 150, &step), LA_CACHE_OK); /* 3 of the 4 blocks */
    cr_assert_eq(la_cache_request_add(m, &db, NULL), LA_CACHE_OK);
    snapshot before, after;
    take(m, &before);
    cr_expect_eq(la_cache_request_schedule(m, 2, 200, &step), LA_CACHE_ERR_KV_EXHAUSTED);
    take(m, &after);
    expect_same(&before, &after, 0);
    cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
    cr_assert_eq(la_cache_request_schedule(m, 2, 64, &step), LA_CACHE_OK, "one block is still free");
    cr_assert_eq(la_cache_request_commit(m, 2), LA_CACHE_OK);
    cr_assert_eq(la_cache_request_free(m, 1), LA_CACHE_OK); /* aborted mid-step: its blocks come back */
    cr_assert_eq(la_cache_request_schedule(m, 2, 136, &step), LA_CACHE_OK);
    cr_assert_eq(la_cache_request_commit(m, 2), LA_CACHE_OK);
    cr_assert_eq(la_cache_check(m), LA_CACHE_OK, "%s", la_cache_last_error(m));
    la_cache_destroy(m);
    cr_expect_eq(f.host_outstanding, 0);
    cr_expect_eq(f.slots_out, 0);
}
