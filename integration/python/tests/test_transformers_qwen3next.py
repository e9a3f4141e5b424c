"""transformers' Qwen3NextGatedDeltaNet, stock, against the same module with its conv and gated delta rule
delegated to linattn through the binding (its own in-projections, gated RMSNorm and out-projection kept).

Random init, no download. Compares a prefill, decode steps after it (the module's DynamicCache against our slot,
outputs and states), and a prefix-cache hit (a second request resuming from a checkpoint of the first, in the same
batch as a decode step of the first).
"""
import inspect

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from transformers import DynamicCache, Qwen3NextConfig  # noqa: E402
from transformers.models.qwen3_next.modeling_qwen3_next import Qwen3NextGatedDeltaNet  # noqa: E402

import linattn  # noqa: E402
from torch_support import BACKENDS, context_for, rel_error  # noqa: E402

TOLERANCE = 2e-2  # relative, on bf16 outputs after the gated RMSNorm and out-projection

SHAPES = {
    "small": dict(hidden_size=256, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=64,
                  linear_value_head_dim=64),
    "qwen3-next": dict(hidden_size=2048, linear_num_key_heads=16, linear_num_value_heads=32,
                       linear_key_head_dim=128, linear_value_head_dim=128),
}


def make_module(shape, device, seed):
    torch.manual_seed(seed)
    config = Qwen3NextConfig(num_hidden_layers=4, linear_conv_kernel_dim=4, **SHAPES[shape])
    assert config.layer_types[0] == "linear_attention"
    module = Qwen3NextGatedDeltaNet(config, layer_idx=0).to(device=device, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        # A in [0.05, 1] instead of up to 16: slower decay, so states carry over steps and checkpoints matter.
        module.A_log.copy_(torch.empty_like(module.A_log).uniform_(0.05, 1.0).log())
        module.norm.weight.copy_(torch.empty_like(module.norm.weight).uniform_(0.5, 1.5))
    return config, module


def linattn_layer(ctx, module):
    return linattn.Layer(
        ctx, "gdn", module.num_k_heads, module.num_v_heads, module.head_k_dim, module.head_v_dim,
        module.conv_kernel_size, conv_weight=module.conv1d.weight, conv_bias=module.conv1d.bias,
        A_log=module.A_log, dt_bias=module.dt_bias, qk_l2norm=True,
    )


def project(module, hidden):
    """The module's own in-projections and split: mixed_qkv [T, C], a and b [T, Hv], z [1, T, Hv, dv]."""
    q, k, v, z, b, a = module.fix_query_key_value_ordering(module.in_proj_qkvz(hidden), module.in_proj_ba(hidden))
    T = hidden.shape[1]
    mixed_qkv = torch.cat([x.reshape(T, -1) for x in (q, k, v)], dim=-1)
    return mixed_qkv, a.reshape(T, -1), b.reshape(T, -1), z


def finish(module, core, z):
    """What the module does after the gated delta rule: gated RMSNorm with z, then out_proj."""
    normed = module.norm(core.reshape(-1, module.head_v_dim), z.reshape(-1, module.head_v_dim))
    return module.out_proj(normed.reshape(1, z.shape[1], -1))


def run_delegated(module, layer, plan, requests, checkpoints=()):
    """One model step through linattn. requests: (hidden [1, T, H], seq fields but token_offset/num_tokens) per
    sequence, packed in that order; checkpoints as plan.set takes them. Returns the module output per request."""
    projected = [project(module, hidden) for hidden, _ in requests]
    mixed_qkv, a, b = (torch.cat([p[i] for p in projected]) for i in range(3))
    seqs, offset = [], 0
    for hidden, seq in requests:
        seqs.append(dict(seq, token_offset=offset, num_tokens=hidden.shape[1]))
        offset += hidden.shape[1]
    core = torch.empty(offset, module.num_v_heads, module.head_v_dim, dtype=torch.bfloat16, device=mixed_qkv.device)
    plan.set(seqs, offset, checkpoints)
    layer.forward(plan, mixed_qkv, a, b, core)
    return [finish(module, core[s["token_offset"]:s["token_offset"] + s["num_tokens"]], p[3])
            for s, p in zip(seqs, projected)]


def cached(module, hidden, cache):
    """The stock module with its cache; the keyword is cache_params up to transformers 5.17, cache later."""
    keyword = "cache" if "cache" in inspect.signature(module.forward).parameters else "cache_params"
    return module(hidden, **{keyword: cache})


def assert_states_match(module, cache, pool, layer, slot):
    cached = cache.layers[module.layer_idx]
    ours = pool.read_state_arrays(layer, slot)
    recurrent = torch.from_numpy(ours.recurrent)
    assert rel_error(recurrent, cached.recurrent_states[0][0].float()) <= TOLERANCE
    # The module caches the last W conv inputs as [C, W]; the slot holds the last W-1 as [W-1][C], bf16 bits.
    W = module.conv_kernel_size
    conv = cached.conv_states[0][0].to(torch.bfloat16).cpu().view(torch.int16)
    assert conv.shape[1] == W
    assert torch.equal(conv[:, 1:].t().contiguous(), torch.from_numpy(ours.conv.view("int16")))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", list(SHAPES))
@torch.no_grad()
def test_prefill_decode_and_prefix_hit(lib, backend, shape):
    ctx, device = context_for(lib, backend)
    with ctx:
        config, module = make_module(shape, device, seed=3)
        layer = linattn_layer(ctx, module)
        pool = linattn.StatePool(ctx, [layer], capacity=3)
        plan = linattn.BatchPlan(pool, max_seqs=2, max_tokens=256, max_checkpoints=1)
        prefill, prefix, decode_steps, suffix = 150, 128, 3, 30
        first = torch.randn(1, prefill + decode_steps, config.hidden_size, device=device, dtype=torch.bfloat16)
        second = torch.cat([first[:, :prefix],
                            torch.randn(1, suffix, config.hidden_size, device=device, dtype=torch.bfloat16)], dim=1)
        first_slot, checkpoint, second_slot = pool.alloc(), pool.alloc(), pool.alloc()

        # Step 1: prefill of the first request, with a checkpoint after its 128-token prefix.
        cache = DynamicCache(config=config)
        stock = cached(module, first[:, :prefill], cache)
        (ours,) = run_delegated(module, layer, plan, [(first[:, :prefill], dict(state_slot=first_slot))],
                                [dict(seq_index=0, position=prefix, checkpoint_slot=checkpoint)])
        assert rel_error(ours, stock) <= TOLERANCE
        assert_states_match(module, cache, pool, layer, first_slot)

        # Steps 2..: decode of the first request (module cache vs our slot); the first of them also carries the
        # second request, a prefix-cache hit resuming from the checkpoint.
        second_stock = module(second)[:, prefix:]
        for step, t in enumerate(range(prefill, prefill + decode_steps)):
            token = first[:, t:t + 1]
            stock = cached(module, token, cache)
            requests = [(token, dict(state_slot=first_slot, start_position=t, init="continue"))]
            if step == 0:
                requests.append((second[:, prefix:], dict(state_slot=second_slot, start_position=prefix,
                                                          init="from_slot", source_slot=checkpoint)))
            outputs = run_delegated(module, layer, plan, requests)
            assert rel_error(outputs[0], stock) <= TOLERANCE
            if step == 0:
                assert rel_error(outputs[1], second_stock) <= TOLERANCE
        assert_states_match(module, cache, pool, layer, first_slot)
        assert ctx.stats()["checkpoints_restored"] == 1
