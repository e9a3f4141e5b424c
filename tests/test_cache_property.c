/*
 * Property tests of the prefix cache over random request streams, against a simulated device.
 *
 * The device holds, in every KV row and every state slot, a fingerprint of the exact prefix it was computed from
 * (a running hash over tokens and extra keys). Steps run batch by batch as a host would run them: restore or
 * continue the state, copy KV rows, read the KV of every earlier position, write new rows and checkpoints. Every
 * read is compared with the fingerprint the request's own tokens give, so any wrong reuse (a stale slot, a block
 * handed out while still shared, a hit past what was computed) fails. Steps of one batch must not write what
 * another reads or writes. After every operation the manager's invariants are recounted (la_cache_check), and at
 * the end every slot and every byte of host memory must be back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/block_manager.h"

/* ---- deterministic random numbers ------------------------------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state += UINT64_C(0x9e3779b97f4a7c15);
    uint64_t z = rng_state;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}
static int64_t below(int64_t n) { return n > 0 ? (int64_t)(rnd() % (uint64_t)n) : 0; }

static uint64_t fingerprint(uint64_t previous, int32_t token, uint64_t key)
{
    uint64_t x = previous ^ ((uint64_t)(uint32_t)token * UINT64_C(0xff51afd7ed558ccd)) ^ (key * 31);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    return x ^ (x >> 29);
}
#define EMPTY_PREFIX UINT64_C(0x5eed)

/* ---- counting host allocator and checking slot allocator ------------------------------------------------------- */

static int64_t host_outstanding;
static void *count_alloc(void *user, size_t bytes)
{
    (void)user;
    host_outstanding++;
    return malloc(bytes);
}
static void count_free(void *user, void *ptr)
{
    (void)user;
    host_outstanding--;
    free(ptr);
}

#define MAX_SLOTS 64
typedef struct slot_pool {
    uint8_t taken[MAX_SLOTS];
    int32_t out;
    int32_t capacity;
} slot_pool;

static int pool_alloc(void *user, int32_t *out_slot)
{
    slot_pool *pool = user;
    for (int32_t s = 0; s < pool->capacity; s++)
        if (!pool->taken[s]) {
            pool->taken[s] = 1;
            pool->out++;
            *out_slot = s;
            return 0;
        }
    return -1;
}
static void pool_free(void *user, int32_t slot)
{
    slot_pool *pool = user;
    cr_assert(slot >= 0 && slot < pool->capacity && pool->taken[slot], "slot %d freed but not taken", slot);
    pool->taken[slot] = 0;
    pool->out--;
}

/* ---- simulated requests and device ------------------------------------------------------------------------------ */

#define MAX_LIVE 12
#define MAX_DOCS 48

typedef struct sim_request {
    uint64_t id;
    int32_t *tokens;
    int64_t num_tokens, capacity, prompt, target;
    la_cache_extra_key keys[2];
    int32_t num_keys;
    uint64_t *expect; /* expect[i]: fingerprint after tokens 0..i */
    int64_t state_position;
    uint64_t state;
    int scheduled, executed;
    la_cache_step step;
    la_cache_checkpoint_write writes[256];
    int32_t table[1024];
} sim_request;

typedef struct sim {
    la_cache_manager *m;
    int32_t block_size, num_blocks, has_kv;
    uint64_t *kv;                         /* [num_blocks][block_size] */
    int64_t *kv_stamp, *kv_writer;        /* per row: batch that wrote it, and which request */
    uint64_t slot_state[MAX_SLOTS];
    int64_t slot_position[MAX_SLOTS];
    int64_t slot_stamp[MAX_SLOTS], slot_writer[MAX_SLOTS];
    int64_t batch;
    slot_pool slots;
    sim_request live[MAX_LIVE];
    int num_live;
    int32_t *docs[MAX_DOCS];
    int64_t doc_len[MAX_DOCS];
    int num_docs;
    uint64_t next_id;
    int64_t exhausted, aborted, finished;
} sim;

static uint64_t key_at(const sim_request *r, int64_t i)
{
    uint64_t k = 0;
    for (int32_t j = 0; j < r->num_keys; j++)
        if (r->keys[j].start <= i && i < r->keys[j].end) k ^= r->keys[j].key;
    return k;
}

static void ensure_tokens(sim_request *r, int64_t n)
{
    if (n <= r->capacity) return;
    r->capacity = n * 2;
    r->tokens = realloc(r->tokens, (size_t)r->capacity * sizeof *r->tokens);
    r->expect = realloc(r->expect, (size_t)r->capacity * sizeof *r->expect);
}

static void extend_expect(sim_request *r, int64_t from)
{
    for (int64_t i = from; i < r->num_tokens; i++)
        r->expect[i] = fingerprint(i ? r->expect[i - 1] : EMPTY_PREFIX, r->tokens[i], key_at(r, i));
}

static uint64_t expected_before(const sim_request *r, int64_t position)
{
    return position ? r->expect[position - 1] : EMPTY_PREFIX;
}

static la_cache_stats stats(sim *s)
{
    la_cache_stats st;
    cr_assert_eq(la_cache_get_stats(s->m, &st), LA_CACHE_OK);
    return st;
}

static void check(sim *s, const char *after)
{
    la_cache_status status = la_cache_check(s->m);
    cr_assert_eq(status, LA_CACHE_OK, "after %s: %s", after, la_cache_last_error(s->m));
}

/* ---- operations ------------------------------------------------------------------------------------------------ */

static void make_prompt(sim *s, sim_request *r)
{
    int64_t prefix_len = 0, suffix = 1 + below(200);
    const int32_t *prefix = NULL;
    int64_t kind = below(10);
    if (s->num_docs && kind < 7) {
        int d = (int)below(s->num_docs);
        prefix = s->docs[d];
        /* a whole earlier conversation (the next turn), or a part of one (a shared system prompt) */
        prefix_len = kind < 4 ? s->doc_len[d] : 1 + below(s->doc_len[d]);
        if (prefix_len > 1500) prefix_len = 1500; /* keeps requests within the simulated tables */
        if (kind < 4 && below(4) == 0) suffix = 0;
        if (suffix == 0 && prefix_len == 0) suffix = 1;
    }
    r->num_tokens = r->prompt = prefix_len + suffix;
    ensure_tokens(r, r->num_tokens + 128);
    if (prefix_len) memcpy(r->tokens, prefix, (size_t)prefix_len * sizeof *r->tokens);
    for (int64_t i = prefix_len; i < r->num_tokens; i++) r->tokens[i] = (int32_t)below(50);
    r->target = r->prompt + below(48);
}

static void op_add(sim *s)
{
    if (s->num_live == MAX_LIVE) return;
    sim_request *r = &s->live[s->num_live];
    memset(r, 0, sizeof *r);
    r->id = s->next_id++;
    make_prompt(s, r);
    /* extra keys: an adapter over everything, sometimes; a "multimodal" span, sometimes */
    if (below(4) == 0) r->keys[r->num_keys++] = (la_cache_extra_key){0, INT64_MAX, (uint64_t)(1 + below(2))};
    if (below(6) == 0) {
        int64_t a = below(r->prompt);
        r->keys[r->num_keys++] = (la_cache_extra_key){a, a + 1 + below(40), (uint64_t)(100 + below(2))};
    }
    extend_expect(r, 0);

    la_cache_request_desc d = {r->id, r->tokens, r->num_tokens, r->keys, r->num_keys, -1, 0};
    la_cache_hit probe, hit;
    cr_assert_eq(la_cache_find_longest_hit(s->m, &d, &probe), LA_CACHE_OK);
    cr_assert_eq(la_cache_request_add(s->m, &d, &hit), LA_CACHE_OK, "%s", la_cache_last_error(s->m));
    cr_assert_eq(hit.hit_tokens, probe.hit_tokens, "find_longest_hit and add disagree");
    cr_assert_lt(hit.hit_tokens, r->prompt, "hit reaches the end of the prompt");
    cr_assert_leq(hit.hit_tokens, hit.matched_tokens);
    cr_assert((hit.hit_tokens == 0) == (hit.checkpoint_slot == -1));
    if (hit.hit_tokens) {
        /* The slot must hold exactly this prefix's state now (it is pinned until our first step commits). */
        cr_assert_eq(s->slot_position[hit.checkpoint_slot], hit.hit_tokens);
        cr_assert_eq(s->slot_state[hit.checkpoint_slot], expected_before(r, hit.hit_tokens), "hit restores a wrong state");
    }
    r->state_position = -1;
    s->num_live++;
    check(s, "add");
}

static int64_t table_row(const sim *s, const sim_request *r, int64_t position)
{
    return (int64_t)r->table[position / s->block_size] * s->block_size + position % s->block_size;
}

static void op_schedule(sim *s, sim_request *r)
{
    la_cache_request_info info;
    cr_assert_eq(la_cache_get_request_info(s->m, r->id, &info), LA_CACHE_OK);
    int64_t remaining = r->num_tokens - info.computed_tokens;
    if (r->scheduled || remaining == 0) return;
    int64_t n = below(3) == 0 ? 1 + below(remaining) : remaining;
    la_cache_stats before = stats(s);
    la_cache_step step;
    la_cache_status status = la_cache_request_schedule(s->m, r->id, n, &step);
    if (status == LA_CACHE_ERR_KV_EXHAUSTED) {
        la_cache_stats after = stats(s);
        cr_assert_eq(memcmp(&before, &after, sizeof before), 0, "a refused schedule changed the statistics");
        s->exhausted++;
        check(s, "refused schedule");
        return;
    }
    cr_assert_eq(status, LA_CACHE_OK, "%s", la_cache_last_error(s->m));
    cr_assert_eq(step.start_position, info.computed_tokens);
    cr_assert_eq(step.num_tokens, n);
    cr_assert_leq(step.num_checkpoints, 256);
    cr_assert_leq(step.num_blocks, 1024);
    if (s->has_kv) cr_assert_eq(step.num_blocks, (step.start_position + n + s->block_size - 1) / s->block_size);
    /* New blocks are in no other live request's table. */
    for (int i = 0; i < s->num_live; i++) {
        if (&s->live[i] == r) continue;
        la_cache_request_info other;
        cr_assert_eq(la_cache_get_request_info(s->m, s->live[i].id, &other), LA_CACHE_OK);
        for (int32_t b = info.num_blocks; b < step.num_blocks; b++)
            for (int32_t ob = 0; ob < other.num_blocks; ob++)
                cr_assert_neq(other.block_table[ob], step.block_table[b], "block %d handed out while held",
                              step.block_table[b]);
    }
    r->step = step;
    if (step.num_checkpoints) memcpy(r->writes, step.checkpoints, (size_t)step.num_checkpoints * sizeof *r->writes);
    if (step.num_blocks) memcpy(r->table, step.block_table, (size_t)step.num_blocks * sizeof *r->table);
    r->step.checkpoints = r->writes;
    r->step.block_table = r->table;
    r->scheduled = 1;
    r->executed = 0;
    check(s, "schedule");
}

/* Mark a row or slot as written by request `who` in this batch; two writers, or a writer and a reader, conflict. */
static void claim_write(int64_t *stamp, int64_t *writer, int64_t index, int64_t batch, int64_t who, const char *what)
{
    cr_assert(!(stamp[index] == batch && writer[index] != who), "%s %lld written by two requests in one batch", what,
              (long long)index);
    stamp[index] = batch;
    writer[index] = who;
}
static void check_read(const int64_t *stamp, const int64_t *writer, int64_t index, int64_t batch, int64_t who,
                       const char *what)
{
    cr_assert(!(stamp[index] == batch && writer[index] != who), "%s %lld read while another request writes it",
              what, (long long)index);
}

static void mark_writes(sim *s, sim_request *r)
{
    const la_cache_step *st = &r->step;
    for (int32_t i = 0; i < st->num_checkpoints; i++)
        claim_write(s->slot_stamp, s->slot_writer, st->checkpoints[i].slot, s->batch, (int64_t)r->id, "slot");
    if (!s->has_kv) return;
    for (int64_t p = st->start_position; p < st->start_position + st->num_tokens; p++)
        claim_write(s->kv_stamp, s->kv_writer, table_row(s, r, p), s->batch, (int64_t)r->id, "KV row");
    if (st->num_kv_copies)
        for (int32_t o = 0; o < st->kv_copy.num_tokens; o++)
            claim_write(s->kv_stamp, s->kv_writer, (int64_t)st->kv_copy.dst_block * s->block_size + o, s->batch,
                        (int64_t)r->id, "KV row");
}

static void read_and_verify(sim *s, sim_request *r)
{
    const la_cache_step *st = &r->step;
    const int64_t start = st->start_position, who = (int64_t)r->id;
    if (st->init == LA_CACHE_INIT_ZERO) {
        cr_assert_eq(start, 0);
    } else if (st->init == LA_CACHE_INIT_FROM_SLOT) {
        check_read(s->slot_stamp, s->slot_writer, st->source_slot, s->batch, who, "slot");
        cr_assert_eq(s->slot_position[st->source_slot], start, "restored state is at another position");
        cr_assert_eq(s->slot_state[st->source_slot], expected_before(r, start), "restored state of another prefix");
    } else {
        cr_assert_eq(r->state_position, start, "continue from a state at another position");
    }
    if (!s->has_kv) return;
    if (st->num_kv_copies) {
        int64_t base = start / s->block_size * s->block_size;
        cr_assert_eq(st->kv_copy.num_tokens, start - base);
        for (int32_t o = 0; o < st->kv_copy.num_tokens; o++) {
            int64_t src = (int64_t)st->kv_copy.src_block * s->block_size + o;
            check_read(s->kv_stamp, s->kv_writer, src, s->batch, who, "KV row");
            cr_assert_eq(s->kv[src], r->expect[base + o], "copy source row of another prefix");
        }
    }
    for (int64_t q = 0; q < start; q++) check_read(s->kv_stamp, s->kv_writer, table_row(s, r, q), s->batch, who, "KV row");
}

static void write_results(sim *s, sim_request *r)
{
    const la_cache_step *st = &r->step;
    const int64_t start = st->start_position, end = start + st->num_tokens;
    uint64_t state;
    if (st->init == LA_CACHE_INIT_ZERO) state = EMPTY_PREFIX;
    else if (st->init == LA_CACHE_INIT_FROM_SLOT) state = s->slot_state[st->source_slot];
    else state = r->state;
    if (s->has_kv && st->num_kv_copies)
        for (int32_t o = 0; o < st->kv_copy.num_tokens; o++)
            s->kv[(int64_t)st->kv_copy.dst_block * s->block_size + o] =
                s->kv[(int64_t)st->kv_copy.src_block * s->block_size + o];
    if (s->has_kv)
        for (int64_t q = 0; q < start; q++)
            cr_assert_eq(s->kv[table_row(s, r, q)], r->expect[q], "KV of position %lld is of another prefix",
                         (long long)q);
    int32_t next_write = 0;
    for (int64_t p = start; p < end; p++) {
        state = fingerprint(state, r->tokens[p], key_at(r, p));
        if (s->has_kv) s->kv[table_row(s, r, p)] = state;
        while (next_write < st->num_checkpoints && st->checkpoints[next_write].position == p + 1) {
            int32_t slot = st->checkpoints[next_write++].slot;
            s->slot_state[slot] = state;
            s->slot_position[slot] = p + 1;
        }
    }
    cr_assert_eq(next_write, st->num_checkpoints, "a checkpoint position outside the step: %lld in [%lld, %lld)",
                 (long long)(next_write < st->num_checkpoints ? st->checkpoints[next_write].position : -1),
                 (long long)start, (long long)end);
    r->state = state;
    r->state_position = end;
    r->executed = 1;
}

/* Run every scheduled step as one batch: all reads see the device before any write of the batch. */
static void op_run_batch(sim *s)
{
    s->batch++;
    for (int i = 0; i < s->num_live; i++)
        if (s->live[i].scheduled && !s->live[i].executed) mark_writes(s, &s->live[i]);
    for (int i = 0; i < s->num_live; i++)
        if (s->live[i].scheduled && !s->live[i].executed) read_and_verify(s, &s->live[i]);
    for (int i = 0; i < s->num_live; i++)
        if (s->live[i].scheduled && !s->live[i].executed) write_results(s, &s->live[i]);
}

static void op_commit(sim *s, sim_request *r)
{
    if (!r->executed) return;
    cr_assert_eq(la_cache_request_commit(s->m, r->id), LA_CACHE_OK, "%s", la_cache_last_error(s->m));
    r->scheduled = r->executed = 0;
    check(s, "commit");
}

static void op_generate(sim *s, sim_request *r)
{
    la_cache_request_info info;
    cr_assert_eq(la_cache_get_request_info(s->m, r->id, &info), LA_CACHE_OK);
    if (r->scheduled || info.computed_tokens < r->num_tokens || r->num_tokens >= r->target) return;
    int64_t n = below(5) == 0 ? 1 + below(4) : 1; /* a few tokens at once: speculative decoding */
    if (n > r->target - r->num_tokens) n = r->target - r->num_tokens;
    ensure_tokens(r, r->num_tokens + n);
    for (int64_t i = 0; i < n; i++) r->tokens[r->num_tokens + i] = (int32_t)below(50);
    cr_assert_eq(la_cache_request_append(s->m, r->id, r->tokens + r->num_tokens, n), LA_CACHE_OK);
    r->num_tokens += n;
    extend_expect(r, r->num_tokens - n);
    check(s, "append");
}

static void remember(sim *s, const sim_request *r)
{
    int d;
    if (s->num_docs < MAX_DOCS) {
        d = s->num_docs++;
    } else {
        d = (int)below(MAX_DOCS);
        free(s->docs[d]);
    }
    s->docs[d] = malloc((size_t)r->num_tokens * sizeof *r->tokens);
    memcpy(s->docs[d], r->tokens, (size_t)r->num_tokens * sizeof *r->tokens);
    s->doc_len[d] = r->num_tokens;
}

static void op_free(sim *s, int index, int abort)
{
    sim_request *r = &s->live[index];
    cr_assert_eq(la_cache_request_free(s->m, r->id), LA_CACHE_OK);
    if (!abort) remember(s, r);
    if (abort)
        s->aborted++;
    else
        s->finished++;
    free(r->tokens);
    free(r->expect);
    s->live[index] = s->live[--s->num_live];
    s->live[index].step.checkpoints = s->live[index].writes; /* the step's arrays moved with it */
    s->live[index].step.block_table = s->live[index].table;
    check(s, "free");
}

/* ---- driver ---------------------------------------------------------------------------------------------------- */

static int request_done(sim *s, const sim_request *r)
{
    la_cache_request_info info;
    cr_assert_eq(la_cache_get_request_info(s->m, r->id, &info), LA_CACHE_OK);
    return !r->scheduled && info.computed_tokens == r->num_tokens && r->num_tokens >= r->target;
}

/* One engine iteration: arrivals, finished requests leave, every other request gets its next chunk or decode
 * token scheduled (some sit out), the batch runs, its steps commit; now and then a request is aborted at any
 * point of its life, and one is preempted when the KV pool refuses everybody. */
static void round_of_steps(sim *s)
{
    int arrivals = (int)below(3);
    for (int i = 0; i < arrivals; i++) op_add(s);
    for (int i = s->num_live - 1; i >= 0; i--)
        if (request_done(s, &s->live[i])) op_free(s, i, 0);
    int64_t refused_before = s->exhausted, scheduled = 0;
    for (int i = 0; i < s->num_live; i++) {
        sim_request *r = &s->live[i];
        if (below(5) == 0) continue;
        op_generate(s, r);
        op_schedule(s, r);
        scheduled += r->scheduled;
    }
    if (below(60) == 0 && s->num_live) op_free(s, (int)below(s->num_live), 1); /* abort before the batch runs */
    op_run_batch(s);
    for (int i = s->num_live - 1; i >= 0; i--) {
        if (below(150) == 0) op_free(s, i, 1); /* abort after the step ran, before its commit */
        else op_commit(s, &s->live[i]);
    }
    if (scheduled == 0 && s->exhausted > refused_before && s->num_live) op_free(s, (int)below(s->num_live), 1);
}


typedef struct scenario {
    int32_t block_size, num_blocks, max_checkpoints, match_unit, alignment, max_index_entries;
    int32_t attention; /* 0: linear-state group only */
    uint32_t places;
    int32_t every_n_blocks;
} scenario;

static la_cache_stats run(const scenario *sc, uint64_t seed, int rounds)
{
    static sim s; /* large; one test per process */
    memset(&s, 0, sizeof s);
    rng_state = seed;
    host_outstanding = 0;
    s.block_size = sc->block_size;
    s.num_blocks = sc->attention ? sc->num_blocks : 0;
    s.has_kv = sc->attention;
    s.slots.capacity = MAX_SLOTS;
    s.next_id = 1;
    size_t rows = (size_t)s.num_blocks * (size_t)s.block_size + 1;
    s.kv = calloc(rows, sizeof *s.kv);
    s.kv_stamp = calloc(rows, sizeof *s.kv_stamp);
    s.kv_writer = calloc(rows, sizeof *s.kv_writer);

    static const uint64_t group_bytes[2] = {1000, 3000};
    la_cache_config c;
    memset(&c, 0, sizeof c);
    c.block_size = sc->block_size;
    c.num_attn_groups = sc->attention ? 2 : 0;
    c.kv_block_bytes = group_bytes;
    c.num_kv_blocks = sc->num_blocks;
    c.checkpoint_bytes = 1 << 20;
    c.max_checkpoints = sc->max_checkpoints;
    c.checkpoint_alignment = sc->alignment;
    c.max_index_entries = sc->max_index_entries;
    c.policy.match_unit = sc->match_unit;
    c.policy.places = sc->places;
    c.policy.every_n_blocks = sc->every_n_blocks;
    c.slots = (la_cache_slot_allocator){&s.slots, pool_alloc, pool_free};
    c.host = (la_cache_host_allocator){NULL, count_alloc, count_free};
    char message[256];
    cr_assert_eq(la_cache_create(&c, &s.m, message, sizeof message), LA_CACHE_OK, "%s", message);

    for (int round = 0; round < rounds; round++) round_of_steps(&s);
    while (s.num_live) op_free(&s, 0, 1);
    la_cache_stats final = stats(&s);
    cr_expect_eq(final.kv_blocks_free + final.kv_blocks_cached_only, final.kv_blocks_total,
                 "every block is free or only cached once no request is live");
    cr_expect_leq(final.checkpoints_in_use, final.max_checkpoints);
    cr_expect_eq((int64_t)s.slots.out, final.checkpoints_in_use, "slots held = checkpoints kept");
    la_cache_destroy(s.m);
    cr_expect_eq(s.slots.out, 0, "slots leaked");
    cr_expect_eq(host_outstanding, 0, "host allocations leaked");
    for (int d = 0; d < s.num_docs; d++) free(s.docs[d]);
    free(s.kv), free(s.kv_stamp), free(s.kv_writer);
    return final;
}

#define ALL_PLACES (LA_CACHE_AT_PROMPT_END | LA_CACHE_AT_TURN_END | LA_CACHE_AT_BRANCH)
#define ROUNDS 500

Test(cache_property, small_blocks_finer_than_the_match_unit)
{
    scenario sc = {16, 400, 40, 64, 64, 0, 1, ALL_PLACES, 1};
    for (uint64_t seed = 1; seed <= 3; seed++) {
        la_cache_stats st = run(&sc, seed, ROUNDS);
        cr_expect_gt(st.hits, 0, "seed %llu: no hit at all", (unsigned long long)seed);
    }
}

Test(cache_property, blocks_larger_than_the_match_unit_copy_partial_blocks)
{
    scenario sc = {256, 40, 24, 64, 64, 0, 1, ALL_PLACES, 1};
    uint64_t copies = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) copies += run(&sc, seed, ROUNDS).kv_copies;
    cr_expect_gt(copies, 0, "no partial-block hit was exercised");
}

Test(cache_property, block_size_not_dividing_the_match_unit)
{
    scenario sc = {48, 120, 24, 128, 64, 0, 1, ALL_PLACES | LA_CACHE_AT_INTERVAL, 2};
    for (uint64_t seed = 1; seed <= 3; seed++) run(&sc, seed, ROUNDS);
}

Test(cache_property, tight_pools_evict_and_refuse_cleanly)
{
    scenario sc = {32, 30, 2, 64, 64, 0, 1, ALL_PLACES | LA_CACHE_AT_INTERVAL, 2};
    uint64_t evicted_entries = 0, evicted_checkpoints = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) {
        la_cache_stats st = run(&sc, seed, ROUNDS);
        evicted_entries += st.index_entries_evicted;
        evicted_checkpoints += st.checkpoints_evicted;
    }
    cr_expect_gt(evicted_entries, 0);
    cr_expect_gt(evicted_checkpoints, 0);
}

Test(cache_property, no_checkpoint_budget_never_hits)
{
    scenario sc = {64, 100, 0, 64, 64, 0, 1, ALL_PLACES, 1};
    la_cache_stats st = run(&sc, 7, ROUNDS);
    cr_expect_eq(st.hits, 0);
    cr_expect_eq(st.checkpoints_written, 0);
}

Test(cache_property, linear_state_group_only_with_a_small_index)
{
    scenario sc = {64, 0, 24, 64, 64, 40, 0, ALL_PLACES | LA_CACHE_AT_INTERVAL, 1};
    uint64_t hits = 0;
    for (uint64_t seed = 1; seed <= 3; seed++) hits += run(&sc, seed, ROUNDS).hits;
    cr_expect_gt(hits, 0);
}

Test(cache_property, vllm_align_mode_policy)
{
    scenario sc = {128, 60, 16, 128, 64, 0, 1, LA_CACHE_AT_ALIGNED_STEP_END, 1};
    for (uint64_t seed = 1; seed <= 2; seed++) run(&sc, seed, ROUNDS);
}
