"""The independent check: transformers' torch_chunk_gated_delta_rule / torch_recurrent_gated_delta_rule against
linattn with conv_width 0, on random q, k, v, g, beta at Qwen3-Next's shape (16 q/k heads, 32 v heads, d=128).

linattn derives g and beta from bf16 inputs a and b: with A_log = 0 and no dt_bias, g = -softplus(a) and
beta = sigmoid(b), so the transformers functions get exactly those g and beta (computed from the same bf16 a, b).
"""
import pytest

torch = pytest.importorskip("torch")
modeling = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")

import linattn  # noqa: E402
from torch_support import BACKENDS, context_for, rel_error  # noqa: E402

HK, HV, DK, DV = 16, 32, 128, 128
TOLERANCE = 1e-2  # relative; outputs are bf16


def random_problem(batch, T, device, normalise_outside, seed):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, T, HK, DK, generator=generator)
    k = torch.randn(batch, T, HK, DK, generator=generator)
    if normalise_outside:  # pre-normalised inputs, as the functions expect with use_qk_l2norm_in_kernel=False
        q, k = (x / torch.sqrt((x * x).sum(-1, keepdim=True) + 1e-6) for x in (q, k))
    v = torch.randn(batch, T, HV, DV, generator=generator)
    a = torch.randn(batch, T, HV, generator=generator) + 1.0
    b = torch.randn(batch, T, HV, generator=generator)
    return {name: x.to(device=device, dtype=torch.bfloat16) for name, x in dict(q=q, k=k, v=v, a=a, b=b).items()}


def transformers_inputs(p, rows=slice(None)):
    """Float32 arguments for the transformers functions (grouped q/k heads repeated as the module does)."""
    group = HV // HK
    q = p["q"][:, rows].float().repeat_interleave(group, dim=2)
    k = p["k"][:, rows].float().repeat_interleave(group, dim=2)
    g = -torch.nn.functional.softplus(p["a"][:, rows].float())
    beta = torch.sigmoid(p["b"][:, rows].float())
    return q, k, p["v"][:, rows].float(), g, beta


def packed(p, rows=slice(None)):
    """linattn's packed stream: sequences one after another, each row q heads | k heads | v heads."""
    q, k, v = (p[name][:, rows] for name in "qkv")
    batch, T = q.shape[:2]
    qkv = torch.cat([q.reshape(batch, T, -1), k.reshape(batch, T, -1), v.reshape(batch, T, -1)], dim=-1)
    return (qkv.reshape(batch * T, -1).contiguous(), p["a"][:, rows].reshape(batch * T, HV).contiguous(),
            p["b"][:, rows].reshape(batch * T, HV).contiguous())


def make_layer(ctx, device, l2norm_in_kernel):
    return linattn.Layer(ctx, "gdn", HK, HV, DK, DV, conv_width=0, A_log=torch.zeros(HV), dt_bias=None,
                         qk_l2norm=l2norm_in_kernel)


def run_step(layer, plan, seqs, p, rows):
    qkv, a, b = packed(p, rows)
    out = torch.empty(qkv.shape[0], HV, DV, dtype=torch.bfloat16, device=qkv.device)
    plan.set(seqs, qkv.shape[0])
    layer.forward(plan, qkv, a, b, out)
    return out


def recurrent_state(pool, layer, slot, device):
    return torch.from_numpy(pool.read_state_arrays(layer, slot).recurrent).to(device)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("l2norm_in_kernel", [True, False])
def test_chunk_prefill_then_recurrent_decode(lib, backend, l2norm_in_kernel):
    ctx, device = context_for(lib, backend)
    with ctx:
        batch, T, decode_steps = 2, 150, 3
        p = random_problem(batch, T + decode_steps, device, not l2norm_in_kernel, seed=7)
        layer = make_layer(ctx, device, l2norm_in_kernel)
        pool = linattn.StatePool(ctx, [layer], capacity=batch)
        plan = linattn.BatchPlan(pool, max_seqs=batch, max_tokens=batch * T)
        slots = [pool.alloc() for _ in range(batch)]

        # Prefill: both sequences in one batch, against the chunked rule.
        seqs = [dict(token_offset=i * T, num_tokens=T, state_slot=s) for i, s in enumerate(slots)]
        out = run_step(layer, plan, seqs, p, slice(0, T))
        want, state = modeling.torch_chunk_gated_delta_rule(
            *transformers_inputs(p, slice(0, T)), chunk_size=64, initial_state=None, output_final_state=True,
            use_qk_l2norm_in_kernel=l2norm_in_kernel)
        assert rel_error(out.reshape(batch, T, HV, DV), want) <= TOLERANCE
        for i, slot in enumerate(slots):
            assert rel_error(recurrent_state(pool, layer, slot, device), state[i]) <= TOLERANCE

        # Decode, one token per step, against the recurrent rule continuing from its own state.
        for t in range(T, T + decode_steps):
            seqs = [dict(token_offset=i, num_tokens=1, state_slot=s, start_position=t, init="continue")
                    for i, s in enumerate(slots)]
            out = run_step(layer, plan, seqs, p, slice(t, t + 1))
            want, state = modeling.torch_recurrent_gated_delta_rule(
                *transformers_inputs(p, slice(t, t + 1)), initial_state=state, output_final_state=True,
                use_qk_l2norm_in_kernel=l2norm_in_kernel)
            assert rel_error(out.reshape(batch, 1, HV, DV), want) <= TOLERANCE
        for i, slot in enumerate(slots):
            assert rel_error(recurrent_state(pool, layer, slot, device), state[i]) <= TOLERANCE


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuation_from_a_checkpoint_matches_chunk_rule_from_its_state(lib, backend):
    ctx, device = context_for(lib, backend)
    with ctx:
        T, prefix = 200, 128
        p = random_problem(1, T, device, False, seed=8)
        layer = make_layer(ctx, device, True)
        pool = linattn.StatePool(ctx, [layer], capacity=3)
        plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=T, max_checkpoints=1)
        slot, checkpoint, resumed = pool.alloc(), pool.alloc(), pool.alloc()
        qkv, a, b = packed(p)
        out = torch.empty(T, HV, DV, dtype=torch.bfloat16, device=device)
        plan.set([dict(token_offset=0, num_tokens=T, state_slot=slot)], T,
                 [dict(seq_index=0, position=prefix, checkpoint_slot=checkpoint)])
        layer.forward(plan, qkv, a, b, out)

        _, prefix_state = modeling.torch_chunk_gated_delta_rule(
            *transformers_inputs(p, slice(0, prefix)), chunk_size=64, output_final_state=True,
            use_qk_l2norm_in_kernel=True)
        assert rel_error(recurrent_state(pool, layer, checkpoint, device), prefix_state[0]) <= TOLERANCE

        suffix = slice(prefix, T)
        out = run_step(layer, plan, [dict(token_offset=0, num_tokens=T - prefix, state_slot=resumed,
                                          start_position=prefix, init="from_slot", source_slot=checkpoint)], p, suffix)
        want, _ = modeling.torch_chunk_gated_delta_rule(
            *transformers_inputs(p, suffix), chunk_size=64, initial_state=prefix_state, output_final_state=True,
            use_qk_l2norm_in_kernel=True)
        assert rel_error(out.reshape(1, T - prefix, HV, DV), want) <= TOLERANCE


def test_cuda_graph_replays_whatever_batch_was_set_last(lib):
    """The vLLM pattern: capture Layer.forward once, then per step plan.set(...) outside the graph and replay."""
    ctx, device = context_for(lib, "cuda")
    with ctx:
        steps = 3
        p = random_problem(2, steps, device, False, seed=9)
        layer = make_layer(ctx, device, True)
        pool = linattn.StatePool(ctx, [layer], capacity=2)
        plan = linattn.BatchPlan(pool, max_seqs=2, max_tokens=2)
        slots = [pool.alloc(), pool.alloc()]
        qkv, a, b = (torch.zeros_like(x) for x in packed(p, slice(0, 1)))
        out = torch.zeros(2, HV, DV, dtype=torch.bfloat16, device=device)
        plan.set([dict(token_offset=i, num_tokens=1, state_slot=s) for i, s in enumerate(slots)], 2)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            layer.forward(plan, qkv, a, b, out)

        want, _ = modeling.torch_chunk_gated_delta_rule(
            *transformers_inputs(p), chunk_size=64, output_final_state=True, use_qk_l2norm_in_kernel=True)
        for t in range(steps):
            # Each step packs the two sequences in the opposite order, so only the new batch gives right rows.
            order = [0, 1] if t % 2 == 0 else [1, 0]
            step_inputs = packed(p, slice(t, t + 1))
            for static, fresh in zip((qkv, a, b), step_inputs):
                static.copy_(fresh[order])
            plan.set([dict(token_offset=row, num_tokens=1, state_slot=slots[seq], start_position=t,
                           init="zero" if t == 0 else "continue") for row, seq in enumerate(order)], 2)
            graph.replay()
            for row, seq in enumerate(order):
                assert rel_error(out[row], want[seq, t]) <= TOLERANCE
