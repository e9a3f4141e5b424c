#!/usr/bin/env python3
"""Speed of liblinattn's forward on a GPU, against FLA in the same process on the same GPU.

Qwen3-Next's linear layer (Gated DeltaNet: 16 q/k heads, 32 v heads, d=128, conv width 4, fp32 state) and a
simple-GLA layer (32 heads, d=128, constant decay, no conv): prefill T = 8192, 32768, 4x8192, 64x1024 (with and
without a checkpoint every 512 tokens), decode B = 1, 8, 64, 256.

Method: every case is captured in a CUDA graph (ours and FLA's alike) and timed with CUDA events around batches of
replays; the figure is the median over samples. A decode graph holds at least 8 steps back to back, as an engine's
captured forward does, and the figure is per step: its time on the GPU, not the host's rate of graph replays.
Decode rotates among enough state slots (and FLA among enough state tensors) that the states touched exceed 3x the
L2 cache. Prefill inputs are >= 134 MB, larger than L2. FLA gets post-conv q/k/v, precomputed g and beta (its
cheapest path), so its time excludes the conv ours includes. An empty one-element kernel, timed the same way, is
what each launch of a step costs before any work; as a graph of its own it shows the host's replay rate.
Accuracy: ours (CUDA) and FLA against the CPU reference backend on a 1024-token Qwen3-Next prefill.

    PYTHONPATH=integration/python:.fla/site python3 bench/bench_forward.py --library build/liblinattn.so \
        --json bench/results/<gpu>-<date>.json
"""
import argparse
import datetime
import json
import math
import os
import statistics
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration", "python"))
import linattn  # noqa: E402

try:
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule, fused_recurrent_gated_delta_rule
    from fla.ops.simple_gla import chunk_simple_gla, fused_recurrent_simple_gla
    FLA_ERROR = None
except Exception as error:  # FLA is optional: without it the table has no baseline column
    FLA_ERROR = repr(error)

GDN = dict(kind="gdn", hk=16, hv=32, d=128, conv=4)
GLA = dict(kind="simple_gla", hk=32, hv=32, d=128, conv=0)
CHECKPOINT_EVERY = 512
STATE_BYTES = 32 * 128 * 128 * 4  # one sequence's fp32 recurrent state in one layer


def channels(shape):
    return 2 * shape["hk"] * shape["d"] + shape["hv"] * shape["d"]


def time_graphs(graphs, samples, per_sample):
    """Median microseconds per replay, rotating through `graphs`."""
    for graph in graphs:
        graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(samples):
        start.record()
        for i in range(per_sample):
            graphs[i % len(graphs)].replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / per_sample)
    return statistics.median(times)


def capture(fn):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()  # warm-up outside the graph (FLA's autotuning, first launches)
        fn()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def copy_bandwidth():
    """Device-to-device copy of 2 GiB (cudaMemcpyAsync under torch's copy_), bytes read + written per second."""
    src = torch.empty(1 << 29, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(5):
        dst.copy_(src)
    times = []
    for _ in range(20):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return 2 * src.numel() * src.element_size() / statistics.median(times)


def chained(fns, min_steps=8):
    """One graph that runs fns in turn, repeated until it holds at least min_steps steps, and how many it holds:
    decode steps back to back, as in an engine's captured forward of a whole model, so that a step's figure is its
    time on the GPU and not the rate at which the host replays graphs."""
    repeats = max(1, math.ceil(min_steps / len(fns)))
    return capture(lambda: [fn() for _ in range(repeats) for fn in fns]), repeats * len(fns)


def empty_kernel_cost(samples):
    """What a one-kernel step costs when it does nothing: a graph of 64 one-element kernels, per kernel, timed like
    the decode cases; and a graph holding just one such kernel, per replay (the host's replay rate)."""
    x = torch.zeros(1, device="cuda")
    graph, steps = chained([lambda: x.add_(1)], min_steps=64)
    single = [capture(lambda: x.add_(1)) for _ in range(8)]
    return {"kernel_in_graph_us": time_graphs([graph], samples, per_sample=4) / steps,
            "single_kernel_replay_us": time_graphs(single, samples, per_sample=64)}


def warm_up(seconds=0.3):
    """Busy the GPU before the first measurement, so that it is not timed while its clocks come up from idle."""
    a = torch.randn(4096, 4096, device="cuda")
    start = datetime.datetime.now()
    while (datetime.datetime.now() - start).total_seconds() < seconds:
        a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()


class Weights:
    """Random layer weights and the torch form of the conv + gates for FLA's inputs."""

    def __init__(self, shape, seed):
        g = torch.Generator().manual_seed(seed)
        c, hv = channels(shape), shape["hv"]
        self.shape = shape
        self.conv_weight = (torch.rand(c, shape["conv"], generator=g) - 0.5) if shape["conv"] else None
        self.conv_bias = (torch.rand(c, generator=g) - 0.5) * 0.2 if shape["conv"] else None
        self.A_log = torch.log(torch.rand(hv, generator=g) * 0.9 + 0.05)
        self.dt_bias = torch.rand(hv, generator=g) - 0.5

    def layer(self, ctx):
        s = self.shape
        return linattn.Layer(ctx, kind=s["kind"], num_qk_heads=s["hk"], num_v_heads=s["hv"], head_dim_qk=s["d"],
                             head_dim_v=s["d"], conv_width=s["conv"], conv_weight=self.conv_weight,
                             conv_bias=self.conv_bias, A_log=self.A_log, dt_bias=self.dt_bias, qk_l2norm=True)

    def fla_inputs(self, qkv, a, b, lengths):
        """Post-conv q, k, v (bf16, per-sequence causal conv), g (fp32 log decay), beta, as a model computes them."""
        s = self.shape
        x = qkv.float()
        if s["conv"]:
            pieces, offset = [], 0
            w = self.conv_weight.to(x.device)[:, None, :]
            for n in lengths:
                seq = x[offset:offset + n].T[None]
                y = F.conv1d(seq, w, self.conv_bias.to(x.device), padding=s["conv"] - 1, groups=seq.shape[1])
                pieces.append(F.silu(y[0, :, :n]).T)
                offset += n
            x = torch.cat(pieces)
        x = x.to(torch.bfloat16)
        hk, hv, d = s["hk"], s["hv"], s["d"]
        q = x[:, :hk * d].reshape(1, -1, hk, d)
        k = x[:, hk * d:2 * hk * d].reshape(1, -1, hk, d)
        v = x[:, 2 * hk * d:].reshape(1, -1, hv, d)
        A = torch.exp(self.A_log.to(x.device))
        if s["kind"] == "gdn":
            g = (-A * F.softplus(a.float() + self.dt_bias.to(x.device)))[None]
        else:
            g = (-A).expand(x.shape[0], hv)[None].contiguous()
        beta = torch.sigmoid(b.float()).to(torch.bfloat16)[None]
        return q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous(), beta.contiguous()


def random_inputs(shape, tokens, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    qkv = (torch.rand(tokens, channels(shape), device="cuda", generator=g) * 2 - 1).to(torch.bfloat16)
    a = torch.randn(tokens, shape["hv"], device="cuda", generator=g).to(torch.bfloat16)
    b = torch.randn(tokens, shape["hv"], device="cuda", generator=g).to(torch.bfloat16)
    return qkv, a, b


def prefill_case(lib_ctx, shape, lengths, checkpoints, samples):
    weights = Weights(shape, seed=1)
    tokens = sum(lengths)
    qkv, a, b = random_inputs(shape, tokens, seed=2)
    out = torch.empty(tokens, shape["hv"], shape["d"], dtype=torch.bfloat16, device="cuda")
    layer = weights.layer(lib_ctx)
    marks = [(i, p) for i, n in enumerate(lengths) for p in range(CHECKPOINT_EVERY, n + 1, CHECKPOINT_EVERY)]
    pool = linattn.StatePool(lib_ctx, [layer], capacity=len(lengths) + (len(marks) if checkpoints else 0))
    slots = [pool.alloc() for _ in range(len(lengths))]
    seqs, offset = [], 0
    for slot, n in zip(slots, lengths):
        seqs.append(linattn.Seq(token_offset=offset, num_tokens=n, state_slot=slot, init="zero"))
        offset += n
    marks_used = [linattn.Checkpoint(seq_index=i, position=p, checkpoint_slot=pool.alloc()) for i, p in marks] \
        if checkpoints else []
    plan = linattn.BatchPlan(pool, max_seqs=len(lengths), max_tokens=tokens, max_checkpoints=len(marks_used))
    plan.set(seqs, tokens, marks_used)
    gdn = shape["kind"] == "gdn"
    graph = capture(lambda: layer.forward(plan, qkv, a if gdn else None, b if gdn else None, out))
    ours = time_graphs([graph], samples, per_sample=3)
    result = {"ours_us": ours, "tokens": tokens, "ours_mtok_s": tokens / ours}
    if FLA_ERROR is None and not checkpoints:
        result.update(fla_prefill(shape, weights, qkv, a, b, lengths, samples, ours))
    return result


def fla_prefill(shape, weights, qkv, a, b, lengths, samples, ours):
    q, k, v, g, beta = weights.fla_inputs(qkv, a, b, lengths)
    bounds = [0]
    for n in lengths:
        bounds.append(bounds[-1] + n)
    varlen = {}
    if len(lengths) > 1:
        varlen = dict(cu_seqlens=torch.tensor(bounds, dtype=torch.long, device="cuda"),
                      cu_seqlens_cpu=torch.tensor(bounds, dtype=torch.long))
    h0 = torch.zeros(len(lengths), shape["hv"], shape["d"], shape["d"], device="cuda")
    if shape["kind"] == "gdn":
        fn = lambda: chunk_gated_delta_rule(q, k, v, g, beta, initial_state=h0, output_final_state=True,
                                            use_qk_l2norm_in_kernel=True, **varlen)
    else:
        qn, kn = F.normalize(q.float(), dim=-1).to(q.dtype), F.normalize(k.float(), dim=-1).to(k.dtype)
        fn = lambda: chunk_simple_gla(qn, kn, v, g=g, initial_state=h0, output_final_state=True, **varlen)
    try:
        fla = time_graphs([capture(fn)], samples, per_sample=3)
    except Exception as error:  # report, keep benchmarking the other cases
        return {"fla_error": repr(error)[:300]}
    tokens = sum(lengths)
    return {"fla_us": fla, "fla_mtok_s": tokens / fla, "speedup": fla / ours}


def decode_case(lib_ctx, shape, batch, l2_bytes, samples):
    weights = Weights(shape, seed=3)
    layer = weights.layer(lib_ctx)
    rotations = max(1, math.ceil(3 * l2_bytes / (batch * STATE_BYTES)))
    pool = linattn.StatePool(lib_ctx, [layer], capacity=batch * rotations)
    slots = [pool.alloc() for _ in range(batch * rotations)]
    qkv, a, b = random_inputs(shape, batch, seed=4)
    out = torch.empty(batch, shape["hv"], shape["d"], dtype=torch.bfloat16, device="cuda")
    gdn = shape["kind"] == "gdn"
    plans = []
    for r in range(rotations):
        plan = linattn.BatchPlan(pool, max_seqs=batch, max_tokens=batch)
        plan.set([linattn.Seq(token_offset=i, num_tokens=1, state_slot=slots[r * batch + i], start_position=100,
                              init="continue") for i in range(batch)], batch)
        plans.append(plan)
    step = lambda plan: layer.forward(plan, qkv, a if gdn else None, b if gdn else None, out)
    graph, steps = chained([lambda plan=plan: step(plan) for plan in plans])
    ours = time_graphs([graph], samples, per_sample=4) / steps
    moved = 2 * batch * shape["hv"] * shape["d"] * shape["d"] * 4
    result = {"ours_us": ours, "state_bytes_moved": moved, "ours_tb_s": moved / ours / 1e6}
    if FLA_ERROR is None:
        q, k, v, g, beta = weights.fla_inputs(qkv, a, b, [1] * batch)
        q, k, v = (t.reshape(batch, 1, t.shape[2], t.shape[3]) for t in (q, k, v))
        g, beta = g.reshape(batch, 1, -1), beta.reshape(batch, 1, -1)
        states = [torch.randn(batch, shape["hv"], shape["d"], shape["d"], device="cuda") * 0.01
                  for _ in range(rotations)]
        if gdn:
            fns = [lambda h=h: fused_recurrent_gated_delta_rule(q, k, v, g, beta=beta, initial_state=h,
                                                                output_final_state=True,
                                                                use_qk_l2norm_in_kernel=True) for h in states]
        else:
            fns = [lambda h=h: fused_recurrent_simple_gla(q, k, v, g=g, initial_state=h, output_final_state=True)
                   for h in states]
        try:
            fla_graph, fla_steps = chained(fns)
            fla = time_graphs([fla_graph], samples, per_sample=4) / fla_steps
            result.update(fla_us=fla, fla_tb_s=moved / fla / 1e6, speedup=fla / ours)
        except Exception as error:  # report, keep benchmarking the other cases
            result["fla_error"] = repr(error)[:300]
    return result


def restore_case(lib_ctx, shape, batch, samples):
    """A prefix-cache hit: a step that starts B sequences from checkpoints, reading each checkpoint directly as the
    initial state (FROM_SLOT) against copying it into the running slot first (slot_copy, then CONTINUE)."""
    weights = Weights(shape, seed=7)
    layer = weights.layer(lib_ctx)
    pool = linattn.StatePool(lib_ctx, [layer], capacity=2 * batch)
    running = [pool.alloc() for _ in range(batch)]
    checkpoints = [pool.alloc() for _ in range(batch)]
    qkv, a, b = random_inputs(shape, batch, seed=8)
    out = torch.empty(batch, shape["hv"], shape["d"], dtype=torch.bfloat16, device="cuda")

    def step(init):
        plan = linattn.BatchPlan(pool, max_seqs=batch, max_tokens=batch)
        plan.set([linattn.Seq(token_offset=i, num_tokens=1, state_slot=running[i], start_position=64, init=init,
                              source_slot=checkpoints[i]) for i in range(batch)], batch)
        return plan

    read_plan, continue_plan = step("from_slot"), step("continue")
    read = capture(lambda: layer.forward(read_plan, qkv, a, b, out))

    def copy_then_continue():
        for dst, src in zip(running, checkpoints):
            pool.copy(dst, src)
        layer.forward(continue_plan, qkv, a, b, out)

    copied = capture(copy_then_continue)
    read_us = time_graphs([read], samples, per_sample=8)
    copy_us = time_graphs([copied], samples, per_sample=8)
    return {"ours_us": read_us, "copy_then_continue_us": copy_us, "read_directly_speedup": copy_us / read_us}


def accuracy(ctx_gpu, lib):
    """Relative error of ours (CUDA) and FLA against the CPU reference on a 1024-token Qwen3-Next prefill."""
    weights = Weights(GDN, seed=5)
    n = 1024
    qkv, a, b = random_inputs(GDN, n, seed=6)
    outputs = {}
    for name, ctx in (("reference", linattn.Context(lib, backend="cpu")), ("ours", ctx_gpu)):
        layer = weights.layer(ctx)
        pool = linattn.StatePool(ctx, [layer], capacity=1)
        plan = linattn.BatchPlan(pool, max_seqs=1, max_tokens=n)
        plan.set([linattn.Seq(token_offset=0, num_tokens=n, state_slot=pool.alloc(), init="zero")], n)
        device = "cpu" if name == "reference" else "cuda"
        out = torch.full((n, GDN["hv"], GDN["d"]), float("nan"), dtype=torch.bfloat16, device=device)
        layer.forward(plan, qkv.to(device), a.to(device), b.to(device), out)
        torch.cuda.synchronize()
        outputs[name] = out.float().cpu()
    ref = outputs["reference"]
    errors = {"ours": float((outputs["ours"] - ref).norm() / ref.norm())}
    if FLA_ERROR is None:
        q, k, v, g, beta = weights.fla_inputs(qkv, a, b, [n])
        o, _ = chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True)
        errors["fla"] = float((o[0].float().cpu() - ref).norm() / ref.norm())
    return errors


def git_commit():
    """LINATTN_COMMIT when set (a copied tree's git metadata may be stale), else the checkout's HEAD."""
    if os.environ.get("LINATTN_COMMIT"):
        return os.environ["LINATTN_COMMIT"]
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True, stderr=subprocess.DEVNULL,
                                       cwd=os.path.dirname(os.path.abspath(__file__))).strip()
    except Exception:
        return "unknown"


def targets(results, bandwidth, empty):
    """The issue's targets as named entries: measured value, target, baseline."""
    def get(name, key):
        return results.get(name, {}).get(key)

    entries = {}
    for name in ("gdn_prefill_T8192", "gdn_prefill_T32768"):
        entries[f"{name}_speedup_vs_fla"] = {"measured": get(name, "speedup"), "target": ">= 3.0",
                                             "baseline_fla_mtok_s": get(name, "fla_mtok_s")}
    for batch in (64, 256):
        name = f"gdn_decode_B{batch}"
        tb = get(name, "ours_tb_s")
        entries[f"{name}_bandwidth_fraction"] = {
            "measured": tb * 1e12 / bandwidth if tb else None, "target": ">= 0.90",
            "baseline_fla_fraction": get(name, "fla_tb_s") * 1e12 / bandwidth if get(name, "fla_tb_s") else None}
    entries["gdn_decode_B1_us"] = {"measured": get("gdn_decode_B1", "ours_us"), "target": "<= 4.0",
                                   "baseline_fla_us": get("gdn_decode_B1", "fla_us"),
                                   "empty_kernel_in_graph_us": empty["kernel_in_graph_us"]}
    on, off = get("gdn_prefill_T8192_ckpt512", "ours_us"), get("gdn_prefill_T8192", "ours_us")
    entries["checkpoint_every_512_overhead"] = {"measured": (on / off - 1) if on and off else None,
                                                "target": "<= 0.03", "baseline": "same kernel without checkpoints"}
    entries["gla_prefill_T8192_speedup_vs_fla"] = {"measured": get("gla_prefill_T8192", "speedup"),
                                                   "target": ">= 2.0",
                                                   "baseline_fla_mtok_s": get("gla_prefill_T8192", "fla_mtok_s")}
    tb = get("gla_decode_B256", "ours_tb_s")
    entries["gla_decode_B256_bandwidth_fraction"] = {"measured": tb * 1e12 / bandwidth if tb else None,
                                                     "target": ">= 0.90"}
    return entries


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="skip the largest prefill shapes")
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this text")
    args = parser.parse_args()

    lib = linattn.Library(args.library)
    ctx = linattn.Context(lib, backend="cuda")
    props = torch.cuda.get_device_properties(0)
    warm_up()
    bandwidth = copy_bandwidth()
    l2_bytes = getattr(props, "L2_cache_size", 50 << 20)
    empty = empty_kernel_cost(args.samples)
    print(f"{props.name}: copy bandwidth {bandwidth / 1e12:.2f} TB/s (read+write), L2 {l2_bytes >> 20} MiB; "
          f"an empty kernel costs {empty['kernel_in_graph_us']:.1f} µs inside a graph, "
          f"{empty['single_kernel_replay_us']:.1f} µs as a graph of its own; "
          f"FLA {'loaded' if FLA_ERROR is None else 'not loaded: ' + FLA_ERROR}", flush=True)

    cases = {
        "gdn_prefill_T8192": lambda: prefill_case(ctx, GDN, [8192], False, args.samples),
        "gdn_prefill_T8192_ckpt512": lambda: prefill_case(ctx, GDN, [8192], True, args.samples),
        "gdn_prefill_4x8192": lambda: prefill_case(ctx, GDN, [8192] * 4, False, args.samples),
        "gdn_prefill_64x1024": lambda: prefill_case(ctx, GDN, [1024] * 64, False, args.samples),
        "gdn_prefill_64x1024_ckpt512": lambda: prefill_case(ctx, GDN, [1024] * 64, True, args.samples),
        "gdn_prefill_T32768": lambda: prefill_case(ctx, GDN, [32768], False, args.samples),
        "gla_prefill_T8192": lambda: prefill_case(ctx, GLA, [8192], False, args.samples),
    }
    if args.quick:
        for name in ("gdn_prefill_T32768", "gdn_prefill_4x8192"):
            del cases[name]
    for batch in (1, 8, 64, 256):
        cases[f"gdn_decode_B{batch}"] = lambda batch=batch: decode_case(ctx, GDN, batch, l2_bytes, args.samples)
    cases["gla_decode_B256"] = lambda: decode_case(ctx, GLA, 256, l2_bytes, args.samples)
    cases["gdn_restore_B64"] = lambda: restore_case(ctx, GDN, 64, args.samples)
    if args.only:
        cases = {name: run for name, run in cases.items() if args.only in name}

    results = {}
    print(f"{'case':30s} {'ours µs':>10s} {'FLA µs':>10s} {'speed-up':>9s}  ours figure", flush=True)
    for name, run in cases.items():
        r = run()
        results[name] = r
        if "ours_mtok_s" in r:
            figure = f"{r['ours_mtok_s']:.2f} M tok/s"
        elif "ours_tb_s" in r:
            figure = f"{r['ours_tb_s']:.2f} TB/s = {r['ours_tb_s'] * 1e12 / bandwidth:.0%} of copy"
        else:
            figure = f"slot_copy + continue {r['copy_then_continue_us']:.1f} µs: read directly " \
                     f"{r['read_directly_speedup']:.2f}x faster"
        fla = f"{r['fla_us']:10.1f}" if "fla_us" in r else f"{'-':>10s}"
        speedup = f"{r['speedup']:8.2f}x" if "speedup" in r else f"{'-':>9s}"
        print(f"{name:30s} {r['ours_us']:10.1f} {fla} {speedup}  {figure}", flush=True)
        torch.cuda.empty_cache()

    errors = accuracy(ctx, lib) if not args.only else {}
    print("accuracy vs CPU reference (1024-token Qwen3-Next prefill): " +
          ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    report = {
        "gpu": props.name, "date": datetime.date.today().isoformat(), "commit": git_commit(),
        "library": lib.version, "fla": "fla-core 0.6.0" if FLA_ERROR is None else None,
        "copy_bandwidth_tb_s": bandwidth / 1e12, "empty_kernel_us": empty,
        "method": "CUDA graphs, CUDA events, median per replay; decode: per step of a graph of >= 8 steps",
        "cases": results, "accuracy_rel_error_vs_cpu_reference": errors,
        "targets": targets(results, bandwidth, empty),
    }
    for name, entry in report["targets"].items():
        print(f"target {name}: measured {entry['measured']}, target {entry['target']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
