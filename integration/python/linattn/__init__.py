"""linattn: a pure-Python (ctypes) binding of liblinattn's C ABI for vLLM-style attention backends.

    lib = linattn.Library()                      # path, $LINATTN_LIBRARY, or <repo>/build/liblinattn.so
    ctx = linattn.Context(lib, backend="cuda")
    layer = linattn.Layer(ctx, "gdn", 16, 32, 128, 128, 4, conv_weight, None, A_log, dt_bias)
    pool = linattn.StatePool(ctx, [layer, ...], capacity=256)
    plan = linattn.BatchPlan(pool, max_seqs=256, max_tokens=8192)
    plan.set([linattn.Seq(token_offset=0, num_tokens=n, state_slot=pool.alloc())], num_tokens=n)   # per step
    layer.forward(plan, qkv, a, b, out)                                                                # per layer
    cache = linattn.PrefixCache(pool, block_size=16, max_checkpoints=32)   # prefix caching: see linattn.cache
"""
from ._abi import ABI_VERSION_MAJOR, ABI_VERSION_MINOR, SLOT_NONE, STATUS_NAMES
from ._library import Library, LinattnError, default_library, find_library
from .cache import CHECKPOINT_PLACES, CacheHit, CacheStep, CheckpointPolicy, KvCopy, PrefixCache
from .bf16 import bf16_bits_to_float, float_to_bf16_bits, round_to_bf16
from .context import Context
from .layer import Layer, LayerInfo
from .plan import BatchPlan, Checkpoint, Seq
from .pool import PoolInfo, StateArrays, StatePool

__all__ = [
    "ABI_VERSION_MAJOR", "ABI_VERSION_MINOR", "SLOT_NONE", "STATUS_NAMES",
    "Library", "LinattnError", "default_library", "find_library",
    "bf16_bits_to_float", "float_to_bf16_bits", "round_to_bf16",
    "Context", "Layer", "LayerInfo", "StatePool", "PoolInfo", "StateArrays",
    "BatchPlan", "Seq", "Checkpoint",
    "PrefixCache", "CheckpointPolicy", "CHECKPOINT_PLACES", "CacheHit", "CacheStep", "KvCopy",
]
