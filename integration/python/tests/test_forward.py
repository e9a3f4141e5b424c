"""Forward on the CPU backend through the binding against tests/mathref.py (float64 numpy of MATH.md)."""
import numpy as np
import pytest

import linattn
import mathref

TOLERANCE = 5e-3  # relative, ‖out − ref‖ / ‖ref‖; covers the bf16 rounding of the outputs


def out_buffer(params, T):
    return np.zeros((T, params.num_v_heads * params.head_dim_v), dtype=np.uint16)


def as_heads(params, out_bits):
    return linattn.bf16_bits_to_float(out_bits).reshape(-1, params.num_v_heads, params.head_dim_v)


def run(layer, plan, params, seqs, qkv, a, b, checkpoints=()):
    out = out_buffer(params, qkv.shape[0])
    plan.set(seqs, qkv.shape[0], checkpoints)
    assert layer.forward(plan, qkv, a, b, out) is out
    return out


@pytest.mark.parametrize(
    "kind, options",
    [
        ("gdn", {}),
        ("gdn", dict(Hk=1, Hv=3, dk=12, dv=20, W=2, conv_bias=False, dt_bias=False)),
        ("simple_gla", dict(qk_l2norm=False, scale=0.25)),
        ("simple_gla", dict(W=0, dt_bias=False)),
    ],
)
def test_single_sequence_matches_reference(ctx, kind, options):
    rng = np.random.default_rng(1)
    params = mathref.random_params(rng, kind, **options)
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=2)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=100)
    qkv, a, b = mathref.random_inputs(rng, params, 100)
    slot = pool.alloc()

    out = run(layer, plan, params, [dict(token_offset=0, num_tokens=100, state_slot=slot)], qkv, a, b)

    want, final = mathref.forward(params, qkv, a, b)
    assert mathref.rel_error(as_heads(params, out), want) <= TOLERANCE
    state = pool.read_state_arrays(layer, slot)
    assert mathref.rel_error(state.recurrent, final.S) <= 1e-5
    W = params.conv_width
    assert np.array_equal(state.conv, qkv[100 - (W - 1):] if W > 1 else qkv[:0])


def test_simple_gla_constant_decay_without_a(ctx):
    rng = np.random.default_rng(2)
    params = mathref.random_params(rng, "simple_gla", dt_bias=False)
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=1)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=40)
    qkv, _, _ = mathref.random_inputs(rng, params, 40)

    out = run(layer, plan, params, [dict(token_offset=0, num_tokens=40, state_slot=pool.alloc())], qkv, None, None)

    want, _ = mathref.forward(params, qkv, None, None)
    assert mathref.rel_error(as_heads(params, out), want) <= TOLERANCE


def test_bf16_state_matches_reference_loosely(ctx):
    rng = np.random.default_rng(3)
    params = mathref.random_params(rng, "gdn", state_dtype="bf16")
    layer = params.layer(ctx)
    assert layer.info.recurrent_bytes == params.num_v_heads * params.head_dim_qk * params.head_dim_v * 2
    pool = linattn.StatePool(ctx, [layer], capacity=1)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=24)
    qkv, a, b = mathref.random_inputs(rng, params, 24)
    slot = pool.alloc()
    # Two steps, so the second starts from a state stored (rounded) as bf16.
    out1 = run(layer, plan, params, [dict(token_offset=0, num_tokens=12, state_slot=slot)], qkv[:12], a[:12], b[:12])
    out2 = run(layer, plan, params, [dict(token_offset=0, num_tokens=12, state_slot=slot, start_position=12,
                                          init="continue")], qkv[12:], a[12:], b[12:])

    want, _ = mathref.forward(params, qkv, a, b)
    assert mathref.rel_error(as_heads(params, np.concatenate([out1, out2])), want) <= 2e-2
    assert pool.read_state_arrays(layer, slot).recurrent.dtype == np.uint16


def test_batch_of_sequences_with_padding_and_every_init(ctx):
    rng = np.random.default_rng(4)
    params = mathref.random_params(rng, "gdn")
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=4)
    plan = linattn.BatchPlan(pool, max_seqs=4, max_tokens=64)
    history_qkv, history_a, history_b = mathref.random_inputs(rng, params, 30)
    continued, restored_source, restored, fresh = (pool.alloc() for _ in range(4))
    # Give two slots a history: `continued` and `restored_source` both hold the state after the 30 tokens.
    run(layer, plan, params, [dict(token_offset=0, num_tokens=30, state_slot=continued)],
        history_qkv, history_a, history_b)
    pool.copy(restored_source, continued)
    history = mathref.forward(params, history_qkv, history_a, history_b)[1]

    qkv, a, b = mathref.random_inputs(rng, params, 64)
    seqs = [
        linattn.Seq(token_offset=40, num_tokens=20, state_slot=fresh),
        linattn.Seq(token_offset=0, num_tokens=1, state_slot=continued, start_position=30, init="continue"),
        linattn.Seq(token_offset=60, num_tokens=4, state_slot=linattn.SLOT_NONE),  # padding: out rows untouched
        linattn.Seq(token_offset=5, num_tokens=30, state_slot=restored, start_position=30, init="from_slot",
                    source_slot=restored_source),
    ]
    out = out_buffer(params, 64)
    out[60:] = 0xABCD
    source_before = pool.read_state(layer, restored_source)
    plan.set(seqs, 64)
    layer.forward(plan, qkv, a, b, out)

    got = as_heads(params, out)
    expectations = [(40, 20, None), (0, 1, history), (5, 30, history)]
    for start, n, initial in expectations:
        rows = slice(start, start + n)
        want, _ = mathref.forward(params, qkv[rows], a[rows], b[rows], initial)
        assert mathref.rel_error(got[rows], want) <= TOLERANCE
    assert np.all(out[60:] == 0xABCD)
    assert pool.read_state(layer, restored_source) == source_before  # a FROM_SLOT source is only read


def prefill(ctx, params, qkv, a, b, steps, checkpoints=()):
    """Run one sequence through `steps` (token counts) on a fresh pool; returns outputs, pool, layer and slots."""
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=1 + len(checkpoints))
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=max(steps), max_checkpoints=len(checkpoints))
    slot = pool.alloc()
    checkpoint_slots = [pool.alloc() for _ in checkpoints]
    outs, start = [], 0
    for n in steps:
        rows = slice(start, start + n)
        marks = [dict(seq_index=0, position=p, checkpoint_slot=s)
                 for p, s in zip(checkpoints, checkpoint_slots) if start < p <= start + n]
        seq = dict(token_offset=0, num_tokens=n, state_slot=slot, start_position=start,
                   init="zero" if start == 0 else "continue")
        outs.append(run(layer, plan, params, [seq], qkv[rows], a[rows], b[rows], marks))
        start += n
    return np.concatenate(outs), pool, layer, slot, checkpoint_slots


def test_chunked_prefill_equals_one_pass(ctx):
    rng = np.random.default_rng(5)
    params = mathref.random_params(rng, "gdn")
    qkv, a, b = mathref.random_inputs(rng, params, 150)

    one_out, one_pool, one_layer, one_slot, _ = prefill(ctx, params, qkv, a, b, [150])
    split_out, split_pool, split_layer, split_slot, _ = prefill(ctx, params, qkv, a, b, [50, 64, 1, 35])

    # MATH.md §4: bitwise on the CPU backend with float32 state.
    assert np.array_equal(split_out, one_out)
    assert split_pool.read_state(split_layer, split_slot) == one_pool.read_state(one_layer, one_slot)
    want, _ = mathref.forward(params, qkv, a, b)
    assert mathref.rel_error(as_heads(params, one_out), want) <= TOLERANCE


def test_checkpoint_restore_continues_like_the_original(ctx):
    rng = np.random.default_rng(6)
    params = mathref.random_params(rng, "gdn")
    qkv, a, b = mathref.random_inputs(rng, params, 150)
    assert ctx.checkpoint_alignment == 64
    out, pool, layer, slot, (at64, at128, at150) = prefill(ctx, params, qkv, a, b, [150], checkpoints=[64, 128, 150])
    stats = ctx.stats()
    assert stats["checkpoints_written"] == 3 and stats["checkpoints_restored"] == 0

    # The checkpoint holds the state after 64 tokens, per the reference...
    _, after64 = mathref.forward(params, qkv[:64], a[:64], b[:64])
    saved = pool.read_state_arrays(layer, at64)
    assert mathref.rel_error(saved.recurrent, after64.S) <= 1e-5
    assert np.array_equal(saved.conv, qkv[64 - 3:64])
    assert pool.read_state(layer, at150) == pool.read_state(layer, slot)

    # ...and a new sequence sharing the 64-token prefix resumes from it: a prefix-cache hit.
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=86)
    pool.free(at150)
    resumed = pool.alloc()
    rows = slice(64, 150)
    resumed_out = run(layer, plan, params, [dict(token_offset=0, num_tokens=86, state_slot=resumed,
                                                 start_position=64, init="from_slot", source_slot=at64)],
                      qkv[rows], a[rows], b[rows])
    assert np.array_equal(resumed_out, out[rows])
    assert pool.read_state(layer, resumed) == pool.read_state(layer, slot)
    assert ctx.stats()["checkpoints_restored"] == 1


def test_strided_rows_and_3d_output(ctx):
    rng = np.random.default_rng(7)
    params = mathref.random_params(rng, "gdn")
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=2)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=20)
    qkv, a, b = mathref.random_inputs(rng, params, 20)
    Hv, dv = params.num_v_heads, params.head_dim_v
    # qkv inside a wider projection (as when q/k/v and other projections share one GEMM), a and b interleaved.
    wide = np.zeros((20, params.channels + 10), dtype=np.uint16)
    wide[:, 3:3 + params.channels] = qkv
    ba = np.stack([b, a], axis=1).reshape(20, 2 * Hv)
    out3 = np.zeros((20, Hv, dv), dtype=np.uint16)

    plan.set([dict(token_offset=0, num_tokens=20, state_slot=pool.alloc())], 20)
    layer.forward(plan, wide[:, 3:3 + params.channels], ba[:, Hv:], ba[:, :Hv], out3)
    plan.set([dict(token_offset=0, num_tokens=20, state_slot=pool.alloc())], 20)
    dense = out_buffer(params, 20)
    layer.forward(plan, qkv, a, b, dense)

    assert np.array_equal(out3.reshape(20, Hv * dv), dense)


def test_torch_cpu_tensors_match_numpy(ctx):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    params = mathref.random_params(rng, "gdn")
    as_torch = {name: torch.from_numpy(getattr(params, name)) for name in ("conv_weight", "conv_bias", "A_log")}
    layer = linattn.Layer(ctx, "gdn", params.num_qk_heads, params.num_v_heads, params.head_dim_qk, params.head_dim_v,
                          params.conv_width, as_torch["conv_weight"].unsqueeze(1), as_torch["conv_bias"],
                          as_torch["A_log"].double(), params.dt_bias)
    reference_layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer, reference_layer], capacity=1)
    plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=30)
    qkv, a, b = mathref.random_inputs(rng, params, 30)
    plan.set([dict(token_offset=0, num_tokens=30, state_slot=pool.alloc())], 30)

    def bf16_tensor(bits):
        return torch.from_numpy(bits.astype(np.int16)).view(torch.bfloat16)

    out = torch.zeros(30, params.num_v_heads, params.head_dim_v, dtype=torch.bfloat16)
    layer.forward(plan, bf16_tensor(qkv), bf16_tensor(a), bf16_tensor(b), out)
    expected = out_buffer(params, 30)
    reference_layer.forward(plan, qkv, a, b, expected)

    assert np.array_equal(out.view(torch.int16).numpy().astype(np.uint16).reshape(30, -1), expected)
