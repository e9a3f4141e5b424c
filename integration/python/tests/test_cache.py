"""PrefixCache on the CPU backend: a prompt prefilled in chunks writes the checkpoints its schedule asks for; a
second request sharing the prefix restores one and its suffix equals a full recomputation bitwise; errors surface
as LinattnError with the right status and change nothing."""
import contextlib
import math

import numpy as np
import pytest

import linattn
import mathref

VOCAB = 256


@contextlib.contextmanager
def raises_status(name):
    with pytest.raises(linattn.LinattnError) as raised:
        yield raised
    assert raised.value.name == name, str(raised.value)
    assert raised.value.message, "the library gave no message"


class Model:
    """One Gated DeltaNet layer whose inputs are a function of the token ids (as an in-projection makes them), so
    two requests with the same tokens at the same positions see the same activations."""

    def __init__(self, ctx, seed):
        self.rng = np.random.default_rng(seed)
        self.params = mathref.random_params(self.rng, "gdn")
        self.layer = self.params.layer(ctx)
        self.embedding = mathref.random_inputs(self.rng, self.params, VOCAB)

    def tokens(self, count):
        return self.rng.integers(0, VOCAB, size=count).astype(np.int32)

    def run(self, plan, tokens, seq, checkpoints=()):
        """Forward the step `seq` (a Seq over rows 0..) on tokens[start_position:]; returns its outputs."""
        ids = np.asarray(tokens)[seq.start_position:seq.start_position + seq.num_tokens]
        qkv, a, b = (table[ids] for table in self.embedding)
        out = np.zeros((seq.num_tokens, self.params.num_v_heads * self.params.head_dim_v), dtype=np.uint16)
        plan.set([seq], seq.num_tokens, checkpoints)
        self.layer.forward(plan, qkv, a, b, out)
        return out

    def run_scheduled(self, cache, plan, request_id, tokens, num_tokens, slot):
        """Schedule, run and commit one step of a request, as an engine does; returns (step, outputs)."""
        step = cache.schedule(request_id, num_tokens)
        out = self.run(plan, tokens, step.seq(0, slot), step.checkpoints_for(0))
        cache.commit(request_id)
        return step, out


def kv_cache(pool, block_size=16, **options):
    return linattn.PrefixCache(pool, block_size, num_attn_groups=1, kv_block_bytes=[block_size * 64],
                               num_kv_blocks=64, max_checkpoints=4, **options)


@pytest.mark.parametrize("block_size", [16, 48])  # 48: the hit ends inside a KV block
def test_shared_prefix_hit_restores_a_checkpoint_and_equals_recomputation(ctx, block_size):
    model = Model(ctx, seed=31)
    pool = linattn.StatePool(ctx, [model.layer], capacity=2 + 4)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=256, max_checkpoints=4)
    cache = kv_cache(pool, block_size)
    kv_free_at_start = cache.stats()["kv_blocks_free"]

    # Request 1: a 150-token prompt prefilled in three chunks, writing the checkpoints each step asks for.
    prompt = model.tokens(150)
    assert cache.add(1, prompt) == linattn.CacheHit(hit_tokens=0, matched_tokens=0, checkpoint_slot=-1)
    slot = pool.alloc()
    written, computed = [], 0
    for chunk in (50, 64, 36):
        step, _ = model.run_scheduled(cache, plan, 1, prompt, chunk, slot)
        assert (step.start_position, step.num_tokens) == (computed, chunk)
        assert step.init == ("zero" if computed == 0 else "continue") and step.kv_copy is None
        assert len(step.block_table) == math.ceil((computed + chunk) / block_size)
        assert all(computed < position <= computed + chunk for position, _ in step.checkpoints)
        written += step.checkpoints
        computed += chunk
    prompt_blocks = step.block_table
    assert written and all(position % ctx.checkpoint_alignment == 0 for position, _ in written)
    stats = cache.stats()
    assert stats["checkpoints_written"] == len(written) and stats["live_requests"] == 1
    assert stats["kv_blocks_free"] == kv_free_at_start - len(prompt_blocks)
    with raises_status("ERR_IN_USE"):
        pool.free(written[0][1])  # checkpoint slots belong to the cache
    cache.free(1)
    pool.free(slot)

    # Request 2 shares the first 140 tokens, then diverges; given as a Python list.
    shared = 140
    suffix = model.tokens(60)
    suffix[0] = (prompt[shared] + 1) % VOCAB
    second = prompt[:shared].tolist() + suffix.tolist()
    expected_hit, expected_slot = max((p, s) for p, s in written if p <= shared)
    before = cache.stats()
    found = cache.find_longest_hit(2, second)
    assert cache.stats() == before  # a lookup without admission changes nothing
    hit = cache.add(2, second)
    assert hit == found
    assert (hit.hit_tokens, hit.checkpoint_slot) == (expected_hit, expected_slot)
    assert hit.hit_tokens <= hit.matched_tokens <= shared

    slot = pool.alloc()
    step, suffix_out = model.run_scheduled(cache, plan, 2, second, len(second) - hit.hit_tokens, slot)
    assert (step.init, step.source_slot, step.start_position) == ("from_slot", hit.checkpoint_slot, hit.hit_tokens)
    reused_blocks = hit.hit_tokens // block_size
    assert step.block_table[:reused_blocks] == prompt_blocks[:reused_blocks]  # the attention layers reuse KV
    assert len(step.block_table) == math.ceil(len(second) / block_size)
    if hit.hit_tokens % block_size:
        assert step.kv_copy == linattn.KvCopy(prompt_blocks[reused_blocks], step.block_table[reused_blocks],
                                              hit.hit_tokens % block_size)
    else:
        assert step.kv_copy is None

    # The same prompt computed from scratch in one pass, on a pool of its own.
    fresh_pool = linattn.StatePool(ctx, [model.layer], capacity=1)
    fresh_plan = linattn.BatchPlan(fresh_pool, max_seqs=1, max_tokens=len(second))
    fresh_slot = fresh_pool.alloc()
    full_out = model.run(fresh_plan, second, linattn.Seq(token_offset=0, num_tokens=len(second), state_slot=fresh_slot))
    assert np.array_equal(suffix_out, full_out[hit.hit_tokens:])
    assert pool.read_state(model.layer, slot) == fresh_pool.read_state(model.layer, fresh_slot)

    stats = cache.stats()
    assert (stats["lookups"], stats["lookup_tokens"]) == (2, len(prompt) + len(second))
    assert (stats["hits"], stats["hit_tokens"], stats["checkpoints_restored"]) == (1, hit.hit_tokens, 1)
    assert stats["kv_copies"] == (1 if step.kv_copy else 0)
    assert ctx.stats()["checkpoints_restored"] == 1
    cache.free(2)
    assert cache.stats()["live_requests"] == 0


def test_decode_steps_after_append(ctx):
    model = Model(ctx, seed=32)
    pool = linattn.StatePool(ctx, [model.layer], capacity=1 + 4)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=100, max_checkpoints=4)
    with kv_cache(pool) as cache:
        tokens = model.tokens(100)
        cache.add(5, tokens.astype(np.int64))  # any integer array
        slot = pool.alloc()
        model.run_scheduled(cache, plan, 5, tokens, 100, slot)
        with raises_status("ERR_TOKEN_RANGE"):
            cache.schedule(5, 1)  # nothing appended yet
        for _ in range(3):
            generated = model.tokens(1)
            cache.append(5, generated)
            tokens = np.concatenate([tokens, generated])
            step, _ = model.run_scheduled(cache, plan, 5, tokens, 1, slot)
            assert (step.init, step.start_position, step.num_tokens) == ("continue", len(tokens) - 1, 1)
        cache.free(5)
    assert cache.closed
    plan.close()
    pool.close()  # the cache no longer holds it


@pytest.mark.parametrize("places, chunks", [(set(), (64, 36)), ({"aligned_step_end"}, (64, 36)),
                                            ({"aligned_step_end"}, (50, 50))])
def test_policy_decides_the_checkpoints(ctx, places, chunks):
    model = Model(ctx, seed=33)
    pool = linattn.StatePool(ctx, [model.layer], capacity=1 + 4)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=100, max_checkpoints=4)
    policy = linattn.CheckpointPolicy(match_unit=ctx.checkpoint_alignment, places=places)
    cache = kv_cache(pool, policy=policy)
    tokens = model.tokens(sum(chunks))
    cache.add(1, tokens)
    slot, computed = pool.alloc(), 0
    for chunk in chunks:
        step, _ = model.run_scheduled(cache, plan, 1, tokens, chunk, slot)
        computed += chunk
        # "aligned_step_end": a checkpoint at the end of each step that ends on a match unit, and nowhere else.
        on_unit = computed % policy.match_unit == 0
        wanted = [computed] if "aligned_step_end" in places and on_unit else []
        assert [position for position, _ in step.checkpoints] == wanted


def test_linear_state_only_cache_and_request_errors(ctx):
    model = Model(ctx, seed=34)
    pool = linattn.StatePool(ctx, [model.layer], capacity=4)
    cache = linattn.PrefixCache(pool, block_size=16, max_checkpoints=2)
    tokens = model.tokens(100)
    cache.add(7, tokens)

    failing_calls = {
        "ERR_DUPLICATE_REQUEST": lambda: cache.add(7, tokens),
        "ERR_UNKNOWN_REQUEST": lambda: cache.schedule(8, 10),
        "ERR_NO_STEP": lambda: cache.commit(7),
        "ERR_TOKEN_RANGE": lambda: cache.schedule(7, 101),
    }
    unknown_request_calls = [lambda: cache.append(9, [1]), lambda: cache.commit(9), lambda: cache.free(9)]
    before = cache.stats()
    for name, call in failing_calls.items():
        with raises_status(name):
            call()
    for call in unknown_request_calls:
        with raises_status("ERR_UNKNOWN_REQUEST"):
            call()
    assert cache.stats() == before  # a refused call changes nothing

    step = cache.schedule(7, 100)
    assert step.block_table == [] and step.kv_copy is None  # no attention groups: no KV blocks
    with raises_status("ERR_STEP_PENDING"):
        cache.schedule(7, 1)
    cache.free(7)  # aborting the uncommitted step leaves nothing cached and returns its checkpoint slots
    stats = cache.stats()
    assert (stats["live_requests"], stats["checkpoints_in_use"], stats["checkpoints_written"]) == (0, 0, 0)
    assert stats["checkpoints_discarded"] == len(step.checkpoints)
    assert cache.find_longest_hit(7, tokens).hit_tokens == 0

    with raises_status("ERR_IN_USE"):
        pool.close()
    cache.close()
    with pytest.raises(ValueError, match="closed"):
        cache.stats()
    pool.close()


def test_python_side_validation(ctx):
    model = Model(ctx, seed=35)
    pool = linattn.StatePool(ctx, [model.layer], capacity=2)
    with pytest.raises(ValueError, match="kv_block_bytes"):
        linattn.PrefixCache(pool, 16, num_attn_groups=1)
    with pytest.raises(ValueError, match="checkpoint place"):
        linattn.PrefixCache(pool, 16, policy=linattn.CheckpointPolicy(places={"prompt_end", "everywhere"}))
    with pytest.raises(TypeError, match="CheckpointPolicy"):
        linattn.PrefixCache(pool, 16, policy={"match_unit": 64})
    with raises_status("ERR_INVALID_ARGUMENT"):
        linattn.PrefixCache(pool, 16, policy=linattn.CheckpointPolicy(match_unit=ctx.checkpoint_alignment + 1))
    cache = linattn.PrefixCache(pool, 16, max_checkpoints=1)
    with pytest.raises(ValueError, match="request_id"):
        cache.add(-1, [1, 2])
    with pytest.raises(TypeError, match="request_id"):
        cache.add(1.0, [1, 2])
    with pytest.raises(TypeError, match="integer"):
        cache.add(1, [0.5, 1.5])
    with pytest.raises(ValueError, match="one-dimensional"):
        cache.add(1, [[1, 2]])
    with pytest.raises(ValueError, match="int32"):
        cache.add(1, [2**40])
    assert cache.stats()["lookups"] == 0
