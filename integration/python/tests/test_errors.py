"""Bad input: library statuses surface as LinattnError with the right name; Python-side checks raise before any
call; and a refused call changes nothing."""
import contextlib
import ctypes

import numpy as np
import pytest

import linattn
import mathref
from linattn import _abi


@contextlib.contextmanager
def raises_status(name):
    with pytest.raises(linattn.LinattnError) as raised:
        yield raised
    assert raised.value.name == name, str(raised.value)
    assert raised.value.message, "the library gave no message"


@pytest.fixture
def setup(ctx):
    rng = np.random.default_rng(21)
    params = mathref.random_params(rng, "gdn")
    layer = params.layer(ctx)
    pool = linattn.StatePool(ctx, [layer], capacity=3)
    plan = linattn.BatchPlan(pool, max_seqs=2, max_tokens=80, max_checkpoints=1)
    return rng, params, layer, pool, plan


def layer_args(params, **changes):
    args = dict(params.__dict__)
    args.update(changes)
    return args


def test_layer_descriptor_errors(ctx, setup):
    _, params, _, _, _ = setup
    with raises_status("ERR_INVALID_SHAPE"):
        # 3 v heads over 2 q/k heads (weights sized consistently, so only the shape rule is broken)
        linattn.Layer(ctx, **layer_args(params, num_v_heads=3, A_log=params.A_log[:3], dt_bias=params.dt_bias[:3],
                                        conv_weight=params.conv_weight[:params.channels - 8],
                                        conv_bias=params.conv_bias[:params.channels - 8]))
    with raises_status("ERR_UNKNOWN_LAYER_KIND"):
        linattn.Layer(ctx, **layer_args(params, kind=7))
    with raises_status("ERR_UNSUPPORTED_DTYPE"):
        linattn.Layer(ctx, **layer_args(params, state_dtype=5))
    with raises_status("ERR_NULL_ARGUMENT"):
        linattn.Layer(ctx, **layer_args(params, conv_weight=None))
    with raises_status("ERR_INVALID_ARGUMENT"):
        linattn.Layer(ctx, **layer_args(params, A_log=np.full_like(params.A_log, np.nan)))


def test_slot_errors(setup):
    _, _, _, pool, _ = setup
    slot = pool.alloc()
    pool.free(slot)
    with raises_status("ERR_SLOT_NOT_ALLOCATED"):
        pool.free(slot)
    with raises_status("ERR_SLOT_OUT_OF_RANGE"):
        pool.zero(3)
    for _ in range(3):
        pool.alloc()
    with raises_status("ERR_POOL_EXHAUSTED"):
        pool.alloc()
    assert pool.info().slots_in_use == 3


def test_batch_errors_keep_the_previous_batch(setup):
    rng, params, layer, pool, plan = setup
    a_slot, b_slot, c_slot = pool.alloc(), pool.alloc(), pool.alloc()
    qkv, a, b = mathref.random_inputs(rng, params, 80)
    plan.set([dict(token_offset=0, num_tokens=80, state_slot=a_slot)], 80)

    bad_batches = {
        "ERR_PLAN_CAPACITY": ([dict(token_offset=i, num_tokens=1, state_slot=s)
                               for i, s in enumerate((a_slot, b_slot, c_slot))], 3, ()),
        "ERR_TOKEN_RANGE": ([dict(token_offset=0, num_tokens=10, state_slot=a_slot),
                             dict(token_offset=5, num_tokens=10, state_slot=b_slot)], 20, ()),
        "ERR_SLOT_CONFLICT": ([dict(token_offset=0, num_tokens=10, state_slot=a_slot),
                               dict(token_offset=10, num_tokens=10, state_slot=a_slot)], 20, ()),
        "ERR_CHECKPOINT_POSITION": ([dict(token_offset=0, num_tokens=80, state_slot=a_slot)], 80,
                                    [dict(seq_index=0, position=50, checkpoint_slot=b_slot)]),
        "ERR_SLOT_OUT_OF_RANGE": ([dict(token_offset=0, num_tokens=1, state_slot=9)], 1, ()),
        "ERR_INVALID_ARGUMENT": ([dict(token_offset=0, num_tokens=4, state_slot=a_slot, start_position=4)], 4, ()),
    }
    for name, (seqs, num_tokens, checkpoints) in bad_batches.items():
        with raises_status(name):
            plan.set(seqs, num_tokens, checkpoints)
        assert plan.num_tokens == 80

    # The plan still holds the 80-token batch: forward runs it and matches the reference.
    out = np.zeros((80, params.num_v_heads * params.head_dim_v), dtype=np.uint16)
    layer.forward(plan, qkv, a, b, out)
    want, _ = mathref.forward(params, qkv, a, b)
    assert mathref.rel_error(linattn.bf16_bits_to_float(out).reshape(want.shape), want) <= 5e-3


def test_forward_and_ownership_errors(ctx, setup):
    rng, params, layer, pool, plan = setup
    qkv, a, b = mathref.random_inputs(rng, params, 4)
    out = np.zeros((4, params.num_v_heads * params.head_dim_v), dtype=np.uint16)
    with raises_status("ERR_INVALID_ARGUMENT"):
        layer.forward(plan, qkv, a, b, out)  # no batch set yet
    plan.set([dict(token_offset=0, num_tokens=4, state_slot=pool.alloc())], 4)
    with raises_status("ERR_NULL_ARGUMENT"):
        layer.forward(plan, qkv, None, b, out)  # Gated DeltaNet needs a
    stranger = params.layer(ctx)
    with raises_status("ERR_LAYER_NOT_IN_POOL"):
        stranger.forward(plan, qkv, a, b, out)
    with raises_status("ERR_LAYER_NOT_IN_POOL"):
        pool.read_state(stranger, 0)
    with raises_status("ERR_IN_USE"):
        layer.close()
    with raises_status("ERR_IN_USE"):
        pool.close()
    assert not layer.closed and not pool.closed
    plan.close()
    pool.close()
    layer.close()
    assert layer.closed


def test_raw_calls_report_handle_and_buffer_errors(lib, setup):
    _, _, layer, pool, _ = setup
    info = _abi.sized(_abi.LayerInfoStruct)
    bogus = ctypes.c_void_p(id(info))  # an address that is no live handle: the registry refuses it unread
    with raises_status("ERR_INVALID_HANDLE"):
        lib.call("layer_info", bogus, ctypes.byref(info))
    slot = pool.alloc()
    small = ctypes.create_string_buffer(8)
    with raises_status("ERR_BUFFER_TOO_SMALL"):
        lib.call("slot_read", pool.handle, layer.handle, slot, small, 8, None)
    with raises_status("ERR_STRUCT_SIZE"):
        lib.call("layer_info", layer.handle, ctypes.byref(_abi.LayerInfoStruct(struct_size=3)))


def test_python_side_validation(ctx, setup):
    rng, params, layer, pool, plan = setup
    qkv, a, b = mathref.random_inputs(rng, params, 8)
    plan.set([dict(token_offset=0, num_tokens=8, state_slot=pool.alloc())], 8)
    Hv, dv = params.num_v_heads, params.head_dim_v
    out = np.zeros((8, Hv * dv), dtype=np.uint16)

    with pytest.raises(TypeError, match="float_to_bf16_bits"):
        layer.forward(plan, qkv.astype(np.float32), a, b, out)
    with pytest.raises(ValueError, match="shape"):
        layer.forward(plan, qkv[:, :-1], a, b, out)
    with pytest.raises(ValueError, match="contiguous"):
        layer.forward(plan, qkv, a, b, np.zeros((8, Hv * dv * 2), dtype=np.uint16)[:, ::2])
    with pytest.raises(ValueError, match="rows"):
        layer.forward(plan, qkv[:7], a[:7], b[:7], out[:7])
    read_only = out.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        layer.forward(plan, qkv, a, b, read_only)
    with pytest.raises(ValueError, match="elements"):
        linattn.Layer(ctx, **layer_args(params, A_log=params.A_log[:1]))
    with pytest.raises(ValueError, match="kind"):
        linattn.Layer(ctx, **layer_args(params, kind="mamba"))
    with pytest.raises(ValueError, match="unknown Seq field"):
        plan.set([dict(token_offset=0, num_tokens=8, slot=0)], 8)
    assert ctx.stats()["forward_calls"] == 0
