"""State pools: slot bookkeeping, copy/zero/read/write, statistics."""
import numpy as np

import linattn
import mathref


def two_layers(ctx):
    rng = np.random.default_rng(11)
    gdn = mathref.random_params(rng, "gdn")
    gla = mathref.random_params(rng, "simple_gla", W=0, state_dtype="bf16")
    return rng, gdn, gla, gdn.layer(ctx), gla.layer(ctx)


def test_layer_info_follows_the_state_layout(ctx):
    _, gdn, gla, gdn_layer, gla_layer = two_layers(ctx)
    assert gdn_layer.info.recurrent_bytes == gdn.num_v_heads * gdn.head_dim_qk * gdn.head_dim_v * 4
    assert gdn_layer.info.conv_bytes == (gdn.conv_width - 1) * gdn.channels * 2
    assert gdn_layer.info.state_bytes == gdn_layer.info.recurrent_bytes + gdn_layer.info.conv_bytes
    assert gla_layer.info.conv_bytes == 0
    assert gla_layer.query_info() == gla_layer.info


def test_slots_are_taken_lowest_first_and_counted(ctx):
    _, _, _, gdn_layer, gla_layer = two_layers(ctx)
    slot_bytes = gdn_layer.info.state_bytes + gla_layer.info.state_bytes
    pool = linattn.StatePool(ctx, [gdn_layer, gla_layer], byte_budget=3 * slot_bytes + slot_bytes // 2)
    assert pool.capacity == 3
    assert [pool.alloc(), pool.alloc(), pool.alloc()] == [0, 1, 2]
    pool.free(1)
    assert pool.info() == linattn.PoolInfo(capacity=3, slots_in_use=2, slot_bytes=slot_bytes)
    assert pool.alloc() == 1
    stats = ctx.stats()
    assert stats["state_bytes_reserved"] == 3 * slot_bytes
    assert stats["state_bytes_in_use"] == 3 * slot_bytes


def test_write_read_copy_zero(ctx):
    rng, gdn, _, gdn_layer, gla_layer = two_layers(ctx)
    pool = linattn.StatePool(ctx, [gdn_layer, gla_layer], capacity=2)
    first, second = pool.alloc(), pool.alloc()
    state = linattn.StateArrays(
        rng.normal(size=(gdn.num_v_heads, gdn.head_dim_qk, gdn.head_dim_v)).astype(np.float32),
        linattn.float_to_bf16_bits(rng.normal(size=(gdn.conv_width - 1, gdn.channels))),
    )
    pool.write_state(gdn_layer, first, state)
    read = pool.read_state_arrays(gdn_layer, first)
    assert np.array_equal(read.recurrent, state.recurrent) and np.array_equal(read.conv, state.conv)
    assert pool.read_state(gdn_layer, first) == state.to_bytes()

    pool.copy(second, first)
    assert pool.read_state(gdn_layer, second) == state.to_bytes()
    pool.zero(first)
    assert pool.read_state(gdn_layer, first) == bytes(gdn_layer.info.state_bytes)
    assert pool.read_state(gdn_layer, second) == state.to_bytes()


def test_forward_continues_from_a_written_state(ctx):
    rng = np.random.default_rng(12)
    params = mathref.random_params(rng, "gdn")
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=1)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=16)
    slot = pool.alloc()
    offloaded = linattn.StateArrays(
        (0.3 * rng.normal(size=(params.num_v_heads, params.head_dim_qk, params.head_dim_v))).astype(np.float32),
        linattn.float_to_bf16_bits(rng.normal(size=(params.conv_width - 1, params.channels))),
    )
    pool.write_state(layer, slot, offloaded)  # e.g. a state brought back from host offload
    qkv, a, b = mathref.random_inputs(rng, params, 16)
    out = np.zeros((16, params.num_v_heads * params.head_dim_v), dtype=np.uint16)

    plan.set([dict(token_offset=0, num_tokens=16, state_slot=slot, start_position=500, init="continue")], 16)
    layer.forward(plan, qkv, a, b, out)

    want, _ = mathref.forward(params, qkv, a, b, mathref.State.from_arrays(offloaded))
    got = linattn.bf16_bits_to_float(out).reshape(want.shape)
    assert mathref.rel_error(got, want) <= 5e-3
    stats = ctx.stats()
    assert stats["forward_calls"] == 1 and stats["tokens_processed"] == 16


def test_closing_the_context_closes_its_objects(lib):
    ctx = linattn.Context(lib, "cpu")
    params = mathref.random_params(np.random.default_rng(13), "gdn")
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=1)
    ctx.close()
    assert ctx.closed and layer.closed and pool.closed
    ctx.close()  # idempotent
