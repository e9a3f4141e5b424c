/*
 * libFuzzer harness for the prefix cache manager (cache/). The input picks a configuration, then a stream of calls
 * with arguments valid or not (unknown ids, steps past the known tokens, steps while one is pending, ...), shared
 * prefixes from a small dictionary, extra keys, and injected failures of host allocations and state slots. After
 * every call the manager's invariants are recounted; an error status must be one of the documented ones and must
 * leave the statistics untouched; at the end every byte and every slot must be back.
 *
 * Build and run: tests/fuzz/run_cache_fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/block_manager.h"

#define FUZZ_SLOTS 32
#define MAX_PROMPT 600

typedef struct input {
    const uint8_t *data;
    size_t size, at;
} input;

static unsigned next_byte(input *in) { return in->at < in->size ? in->data[in->at++] : 0; }
static unsigned next_u16(input *in) { return next_byte(in) | next_byte(in) << 8; }

typedef struct environment {
    int64_t host_outstanding;
    int fail_next_host, fail_next_slot;
    uint8_t slot_taken[FUZZ_SLOTS];
    int32_t slots_out;
} environment;

static void *env_alloc(void *user, size_t bytes)
{
    environment *env = user;
    if (env->fail_next_host) {
        env->fail_next_host = 0;
        return NULL;
    }
    env->host_outstanding++;
    return malloc(bytes);
}

static void env_free(void *user, void *ptr)
{
    environment *env = user;
    env->host_outstanding--;
    free(ptr);
}

static int env_alloc_slot(void *user, int32_t *out_slot)
{
    environment *env = user;
    if (env->fail_next_slot) {
        env->fail_next_slot = 0;
        return -1;
    }
    for (int32_t s = 0; s < FUZZ_SLOTS; s++)
        if (!env->slot_taken[s]) {
            env->slot_taken[s] = 1;
            env->slots_out++;
            *out_slot = s;
            return 0;
        }
    return -1;
}

static void env_free_slot(void *user, int32_t slot)
{
    environment *env = user;
    if (slot < 0 || slot >= FUZZ_SLOTS || !env->slot_taken[slot]) abort(); /* the manager freed a slot it does not hold */
    env->slot_taken[slot] = 0;
    env->slots_out--;
}

static void require(int condition)
{
    if (!condition) abort();
}

static int32_t dictionary[4][MAX_PROMPT];

static void fill_dictionary(void)
{
    for (int d = 0; d < 4; d++)
        for (int i = 0; i < MAX_PROMPT; i++) dictionary[d][i] = (int32_t)((d * 7919 + i * 104729) % 5000);
}

/* A prompt: a prefix of a dictionary entry, then bytes of the input as tokens. */
static int64_t make_prompt(input *in, int32_t *tokens)
{
    const int d = (int)(next_byte(in) % 4);
    int64_t prefix = next_u16(in) % MAX_PROMPT, suffix = next_byte(in) % 64;
    if (prefix + suffix > MAX_PROMPT) suffix = MAX_PROMPT - prefix;
    memcpy(tokens, dictionary[d], (size_t)prefix * sizeof *tokens);
    for (int64_t i = 0; i < suffix; i++) tokens[prefix + i] = (int32_t)next_byte(in);
    return prefix + suffix;
}

static la_cache_config make_config(input *in, environment *env, uint64_t *group_bytes)
{
    static const int32_t block_sizes[] = {16, 32, 48, 64, 128, 256};
    la_cache_config c;
    memset(&c, 0, sizeof c);
    c.block_size = block_sizes[next_byte(in) % 6];
    c.num_attn_groups = next_byte(in) % 3 ? 1 : 0; /* 0: linear-state group only */
    *group_bytes = 1 + next_byte(in);
    c.kv_block_bytes = group_bytes;
    c.num_kv_blocks = 1 + (int32_t)(next_byte(in) % 64);
    c.checkpoint_bytes = 100;
    c.max_checkpoints = (int32_t)(next_byte(in) % (FUZZ_SLOTS + 1));
    c.max_index_entries = c.num_attn_groups ? 0 : 1 + (int32_t)(next_byte(in) % 64);
    c.policy.match_unit = 64 * (1 + (int32_t)(next_byte(in) % 3));
    c.policy.places = next_byte(in) & 31;
    c.policy.every_n_blocks = 1 + (int32_t)(next_byte(in) % 4);
    c.slots = (la_cache_slot_allocator){env, env_alloc_slot, env_free_slot};
    c.host = (la_cache_host_allocator){env, env_alloc, env_free};
    return c;
}

static int documented(la_cache_status s) { return s >= LA_CACHE_OK && s <= LA_CACHE_ERR_NO_STEP; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int32_t tokens[MAX_PROMPT + 64];
    if (!dictionary[1][1]) fill_dictionary();
    input in = {data, size, 0};
    environment env;
    memset(&env, 0, sizeof env);
    uint64_t group_bytes;
    la_cache_config config = make_config(&in, &env, &group_bytes);
    la_cache_manager *m = NULL;
    if (la_cache_create(&config, &m, NULL, 0) != LA_CACHE_OK) {
        require(env.host_outstanding == 0);
        return 0;
    }
    while (in.at < in.size) {
        const unsigned op = next_byte(&in) % 8;
        const uint64_t id = next_byte(&in) % 8;
        la_cache_stats before, after;
        require(la_cache_get_stats(m, &before) == LA_CACHE_OK);
        la_cache_status status = LA_CACHE_OK;
        la_cache_step step;
        switch (op) {
        case 0:
        case 1: {
            int64_t n = make_prompt(&in, tokens);
            la_cache_extra_key key = {next_byte(&in), 64 + next_byte(&in), next_byte(&in) % 3};
            la_cache_request_desc d = {id, tokens, n, &key, (int32_t)(next_byte(&in) % 2), -1, 0};
            if (op == 0) {
                la_cache_hit hit;
                status = la_cache_request_add(m, &d, &hit);
                if (status == LA_CACHE_OK) require(hit.hit_tokens < n && hit.hit_tokens <= hit.matched_tokens);
            } else {
                la_cache_hit hit;
                status = la_cache_find_longest_hit(m, &d, &hit);
            }
            break;
        }
        case 2: status = la_cache_request_schedule(m, id, (int64_t)next_u16(&in) % 700, &step); break;
        case 3: status = la_cache_request_commit(m, id); break;
        case 4: {
            int32_t generated[4] = {(int32_t)next_byte(&in), (int32_t)next_byte(&in), 7, 9};
            status = la_cache_request_append(m, id, generated, next_byte(&in) % 5);
            break;
        }
        case 5: status = la_cache_request_free(m, id); break;
        case 6: env.fail_next_host = 1; break;
        default: env.fail_next_slot = 1; break;
        }
        require(documented(status));
        require(la_cache_check(m) == LA_CACHE_OK);
        require(la_cache_get_stats(m, &after) == LA_CACHE_OK);
        if (status != LA_CACHE_OK) require(memcmp(&before, &after, sizeof before) == 0);
        require(after.checkpoints_in_use <= after.max_checkpoints);
        require((int64_t)env.slots_out == after.checkpoints_in_use);
    }
    la_cache_destroy(m);
    require(env.host_outstanding == 0);
    require(env.slots_out == 0);
    return 0;
}
