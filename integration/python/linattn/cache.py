"""PrefixCache: the library's prefix cache (KV block tables for the attention layers, state checkpoints for the
linear layers), driven the way a serving engine's scheduler drives it.

    cache = linattn.PrefixCache(pool, block_size=16, num_attn_groups=1, kv_block_bytes=[kv_bytes_per_block],
                                num_kv_blocks=2048, max_checkpoints=24)
    hit = cache.add(request_id, prompt_tokens)          # admission: hit.hit_tokens need not be computed
    step = cache.schedule(request_id, chunk)            # per model step: what to run for this request
    plan.set([step.seq(token_offset, state_slot)], n, step.checkpoints_for(0))
    ...forwards...; cache.commit(request_id)            # once the step's forwards are enqueued
    cache.append(request_id, [sampled_token])           # before scheduling the decode step that computes it
    cache.free(request_id)                              # finished or aborted
"""
import ctypes
from dataclasses import dataclass, field

import numpy as np

from . import _abi
from .context import Owned, name_of
from .plan import Checkpoint, Seq

_INT32 = np.iinfo(np.int32)
_UINT64_LIMIT = 1 << 64
CHECKPOINT_PLACES = frozenset(_abi.CHECKPOINT_AT)  # the names a CheckpointPolicy's places are made of


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where the cache writes checkpoints. match_unit: tokens, a multiple of the context's checkpoint_alignment (the
    grain of reuse); places: names out of CHECKPOINT_PLACES (empty = never write checkpoints); every_n_blocks: for
    "interval". The defaults equal the library's default policy (PrefixCache(policy=None))."""

    match_unit: int = 64
    places: frozenset = frozenset({"prompt_end", "turn_end", "branch"})
    every_n_blocks: int = 1

    def to_struct(self):
        if isinstance(self.places, str):
            raise TypeError(f"places must be a set of names out of {sorted(CHECKPOINT_PLACES)}, not a string")
        unknown = set(self.places) - CHECKPOINT_PLACES
        if unknown:
            raise ValueError(f"unknown checkpoint place(s) {sorted(unknown)}; known: {sorted(CHECKPOINT_PLACES)}")
        bits = 0
        for place in self.places:
            bits |= _abi.CHECKPOINT_AT[place]
        return _abi.CheckpointPolicy(match_unit=int(self.match_unit), places=bits,
                                     every_n_blocks=int(self.every_n_blocks))


@dataclass(frozen=True)
class CacheHit:
    """hit_tokens: prefix the request need not compute (cached KV and a checkpoint exactly there); matched_tokens:
    prefix found cached (KV only), >= hit_tokens; checkpoint_slot: pool slot with the state after hit_tokens tokens,
    -1 when hit_tokens is 0."""

    hit_tokens: int
    matched_tokens: int
    checkpoint_slot: int


@dataclass(frozen=True)
class KvCopy:
    """Copy the first num_tokens token rows of KV block src_block into dst_block, in every attention group, before
    the step's attention runs (a hit that ends inside a block)."""

    src_block: int
    dst_block: int
    num_tokens: int


@dataclass(frozen=True)
class CacheStep:
    """One scheduled step of a request, copied out of the library (stays valid after later calls).

    start_position, num_tokens, init ("zero", "continue" or "from_slot") and source_slot go into the request's Seq
    (see seq()); checkpoints are (position, slot) pairs for Checkpoints of the request's sequence index (see
    checkpoints_for()); kv_copy is a KvCopy or None; block_table lists the KV blocks covering positions
    0 .. start_position + num_tokens - 1 (empty without attention groups).
    """

    start_position: int
    num_tokens: int
    init: str
    source_slot: int
    checkpoints: list = field(default_factory=list)
    kv_copy: object = None
    block_table: list = field(default_factory=list)

    def seq(self, token_offset, state_slot):
        """The linattn.Seq of this step: its tokens are rows token_offset.. of the batch, its state lives in
        state_slot (the request's own slot)."""
        return Seq(token_offset=int(token_offset), num_tokens=self.num_tokens, state_slot=int(state_slot),
                   start_position=self.start_position, init=self.init, source_slot=self.source_slot)

    def checkpoints_for(self, seq_index):
        """The step's checkpoints as linattn.Checkpoint objects for the batch's sequence seq_index."""
        return [Checkpoint(seq_index=int(seq_index), position=position, checkpoint_slot=slot)
                for position, slot in self.checkpoints]


def _request_id(value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"request_id must be an int, got {type(value).__name__}")
    value = int(value)
    if not 0 <= value < _UINT64_LIMIT:
        raise ValueError(f"request_id must be in [0, 2**64), got {value}")
    return value


def _tokens(tokens):
    """Token ids as a contiguous int32 numpy vector (from a list, tuple or integer numpy array)."""
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise ValueError(f"tokens must be one-dimensional, got shape {list(array.shape)}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int32)
    if array.dtype.kind not in "iu":
        raise TypeError(f"tokens must be integer token ids, got {array.dtype}")
    if array.dtype != np.int32 and (array.min() < _INT32.min or array.max() > _INT32.max):
        raise ValueError("tokens must fit in int32")
    return np.ascontiguousarray(array, dtype=np.int32)


def _int32_pointer(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))


def _extra_key_array(extra_keys):
    """A CacheExtraKey array from (start, end, key) tuples or dicts with those names; None when there are none."""
    keys = []
    for item in extra_keys:
        if isinstance(item, dict):
            unknown = set(item) - {"start", "end", "key"}
            if unknown:
                raise ValueError(f"unknown extra key field(s) {sorted(unknown)}; known: ['end', 'key', 'start']")
            start, end, key = item["start"], item["end"], item["key"]
        else:
            start, end, key = item
        keys.append(_abi.CacheExtraKey(start=int(start), end=int(end), key=int(key) % _UINT64_LIMIT))
    return (_abi.CacheExtraKey * len(keys))(*keys) if keys else None


class PrefixCache(Owned):
    """PrefixCache(pool, block_size, num_attn_groups=0, kv_block_bytes=(), num_kv_blocks=None, kv_byte_budget=None,
    max_checkpoints=None, checkpoint_byte_budget=None, max_index_entries=0, policy=None).

    Checkpoints take slots of `pool` (give it room for the running sequences plus max_checkpoints); the pool cannot
    be closed while the cache exists. kv_block_bytes has one entry per attention group (bytes of one KV block);
    num_kv_blocks or kv_byte_budget sizes the KV blocks, max_checkpoints or checkpoint_byte_budget the checkpoints
    (None = 0, the library's "derive from the other"). num_attn_groups 0 makes a linear-state-only cache (no block
    tables). policy: a CheckpointPolicy, or None for the library default. All calls are host bookkeeping: no device
    work, no stream. Library errors raise LinattnError (e.g. .name "ERR_UNKNOWN_REQUEST").
    """

    _destroy_entry = "prefix_cache_destroy"

    def __init__(self, pool, block_size, num_attn_groups=0, kv_block_bytes=(), num_kv_blocks=None,
                 kv_byte_budget=None, max_checkpoints=None, checkpoint_byte_budget=None, max_index_entries=0,
                 policy=None):
        super().__init__(pool.context)
        self.pool = pool
        self.block_size = int(block_size)
        self.num_attn_groups = int(num_attn_groups)
        block_bytes = [int(b) for b in kv_block_bytes]
        if len(block_bytes) != max(self.num_attn_groups, 0):
            raise ValueError(f"kv_block_bytes has {len(block_bytes)} entries, num_attn_groups is "
                             f"{self.num_attn_groups} (one entry per attention group)")
        if policy is not None and not isinstance(policy, CheckpointPolicy):
            raise TypeError(f"policy must be a CheckpointPolicy or None, got {type(policy).__name__}")
        self.policy = policy
        block_bytes_array = (ctypes.c_uint64 * len(block_bytes))(*block_bytes) if block_bytes else None
        desc = _abi.sized(
            _abi.PrefixCacheDesc,
            block_size=self.block_size,
            num_attn_groups=self.num_attn_groups,
            kv_block_bytes=block_bytes_array,
            num_kv_blocks=int(num_kv_blocks or 0),
            kv_byte_budget=int(kv_byte_budget or 0),
            max_checkpoints=int(max_checkpoints or 0),
            checkpoint_byte_budget=int(checkpoint_byte_budget or 0),
            max_index_entries=int(max_index_entries),
            policy=policy.to_struct() if policy is not None else _abi.CheckpointPolicy(),
        )
        handle = ctypes.c_void_p()
        self.context.lib.call("prefix_cache_create", pool.handle, ctypes.byref(desc), ctypes.byref(handle))
        self._handle = handle.value

    def _call(self, entry, *args):
        self.context.lib.call(entry, self.handle, *args)

    def _lookup(self, entry, request_id, tokens, max_hit_tokens, hit_alignment, extra_keys):
        token_array = _tokens(tokens)
        key_array = _extra_key_array(extra_keys)
        request = _abi.sized(
            _abi.CacheRequestDesc,
            extra_key_size=ctypes.sizeof(_abi.CacheExtraKey),
            request_id=_request_id(request_id),
            tokens=_int32_pointer(token_array),
            num_tokens=token_array.size,
            extra_keys=key_array,
            num_extra_keys=len(key_array) if key_array is not None else 0,
            hit_alignment=int(hit_alignment),
            max_hit_tokens=int(max_hit_tokens),
        )
        hit = _abi.sized(_abi.CacheHit)
        self._call(entry, ctypes.byref(request), ctypes.byref(hit))
        return CacheHit(hit_tokens=hit.hit_tokens, matched_tokens=hit.matched_tokens,
                        checkpoint_slot=hit.checkpoint_slot)

    def find_longest_hit(self, request_id, tokens, max_hit_tokens=-1, hit_alignment=0, extra_keys=()):
        """The CacheHit add() would give, without admitting anything or changing statistics.

        max_hit_tokens < 0: no limit; hit_alignment 0 or 1: any checkpoint, else the hit is a multiple of it;
        extra_keys: (start, end, key) tuples mixed into the hash of the tokens they cover (adapter id, multimodal
        hash, cache salt), so requests match only where their keys agree.
        """
        return self._lookup("cache_find_longest_hit", request_id, tokens, max_hit_tokens, hit_alignment, extra_keys)

    def add(self, request_id, tokens, max_hit_tokens=-1, hit_alignment=0, extra_keys=()):
        """Admit a request with its prompt (token ids, copied); returns its CacheHit. The hit's KV blocks and
        checkpoint stay referenced until its first step commits."""
        return self._lookup("cache_request_add", request_id, tokens, max_hit_tokens, hit_alignment, extra_keys)

    def append(self, request_id, tokens):
        """Append generated token ids (copied) before scheduling the step that computes them."""
        token_array = _tokens(tokens)
        self._call("cache_request_append", _request_id(request_id), _int32_pointer(token_array), token_array.size)

    def schedule(self, request_id, num_tokens):
        """Schedule the request's next num_tokens tokens (a prefill chunk or appended decode tokens); returns a
        CacheStep. One step at a time per request: commit (or free) before scheduling the next."""
        step = _abi.sized(_abi.CacheStep)
        self._call("cache_request_schedule", _request_id(request_id), int(num_tokens), ctypes.byref(step))
        # The library's arrays live only until the next call that changes this request: copy them now.
        checkpoints = [(step.checkpoints[i].position, step.checkpoints[i].slot) for i in range(step.num_checkpoints)]
        block_table = step.block_table[:step.num_blocks] if step.num_blocks and step.block_table else []
        kv_copy = None
        if step.num_kv_copies:
            kv_copy = KvCopy(step.kv_copy.src_block, step.kv_copy.dst_block, step.kv_copy.num_tokens)
        return CacheStep(start_position=step.start_position, num_tokens=step.num_tokens,
                         init=name_of(_abi.INITS, step.init), source_slot=step.source_slot,
                         checkpoints=checkpoints, kv_copy=kv_copy, block_table=list(block_table))

    def commit(self, request_id):
        """The scheduled step's forwards are enqueued: its tokens and checkpoints become visible to lookups."""
        self._call("cache_request_commit", _request_id(request_id))

    def free(self, request_id):
        """Finish or abort a request. An uncommitted step leaves nothing visible; what was committed stays cached."""
        self._call("cache_request_free", _request_id(request_id))

    def stats(self):
        """Counters and occupancy (linattn_cache_stats) as a dict."""
        stats = _abi.sized(_abi.CacheStats)
        self._call("cache_get_stats", ctypes.byref(stats))
        return {name: getattr(stats, name) for name, _ in _abi.CacheStats._fields_[1:]}

    def __repr__(self):
        state = "closed" if self.closed else f"block size {self.block_size}, {self.num_attn_groups} attention groups"
        return f"<linattn.PrefixCache {state}>"
