"""ctypes mirror of abi/linattn.h (ABI 1.0): constants, descriptor/result structs and the function table.

Field order and types follow the header exactly; tests/test_abi.py compiles the header and compares every size and
offset, so a drift between the two fails CI instead of corrupting memory.
"""
import ctypes
from ctypes import POINTER, c_char, c_char_p, c_float, c_int32, c_int64, c_uint32, c_uint64, c_void_p

ABI_VERSION_MAJOR = 1
ABI_VERSION_MINOR = 0

STATUS_NAMES = {
    0: "OK",
    1: "ERR_NULL_ARGUMENT",
    2: "ERR_STRUCT_SIZE",
    3: "ERR_ABI_VERSION",
    4: "ERR_INVALID_HANDLE",
    5: "ERR_UNKNOWN_LAYER_KIND",
    6: "ERR_INVALID_SHAPE",
    7: "ERR_UNSUPPORTED_DTYPE",
    8: "ERR_SLOT_OUT_OF_RANGE",
    9: "ERR_SLOT_NOT_ALLOCATED",
    10: "ERR_SLOT_CONFLICT",
    11: "ERR_POOL_EXHAUSTED",
    12: "ERR_TOKEN_RANGE",
    13: "ERR_CHECKPOINT_POSITION",
    14: "ERR_PLAN_CAPACITY",
    15: "ERR_LAYER_NOT_IN_POOL",
    16: "ERR_IN_USE",
    17: "ERR_INVALID_ARGUMENT",
    18: "ERR_OUT_OF_MEMORY",
    19: "ERR_NO_DEVICE",
    20: "ERR_DEVICE",
    21: "ERR_NOT_IMPLEMENTED",
    22: "ERR_BUFFER_TOO_SMALL",
    23: "ERR_KV_EXHAUSTED",
    24: "ERR_UNKNOWN_REQUEST",
    25: "ERR_DUPLICATE_REQUEST",
    26: "ERR_STEP_PENDING",
    27: "ERR_NO_STEP",
    28: "ERR_INTERNAL",
}

LAYER_KINDS = {"gdn": 1, "simple_gla": 2}
DTYPES = {"f32": 1, "bf16": 2}
BACKENDS = {"auto": 0, "cpu": 1, "cuda": 2}
INITS = {"zero": 0, "continue": 1, "from_slot": 2}
SLOT_NONE = -1

status_t = c_int32
handle_t = c_void_p  # every linattn_* handle is opaque
stream_t = c_void_p  # cudaStream_t


class ContextDesc(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("backend", c_int32), ("device_ordinal", c_int32)]


class LayerDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("kind", c_int32),
        ("num_qk_heads", c_int32),
        ("num_v_heads", c_int32),
        ("head_dim_qk", c_int32),
        ("head_dim_v", c_int32),
        ("conv_width", c_int32),
        ("qk_l2norm", c_int32),
        ("state_dtype", c_int32),
        ("scale", c_float),
        ("conv_weight", POINTER(c_float)),
        ("conv_bias", POINTER(c_float)),
        ("A_log", POINTER(c_float)),
        ("dt_bias", POINTER(c_float)),
    ]


class PoolDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("num_layers", c_int32),
        ("layers", POINTER(handle_t)),
        ("capacity", c_int32),
        ("byte_budget", c_uint64),
    ]


class PlanDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("max_seqs", c_int32),
        ("max_checkpoints", c_int32),
        ("max_tokens", c_int64),
    ]


class SeqDesc(ctypes.Structure):
    _fields_ = [
        ("token_offset", c_int64),
        ("start_position", c_int64),
        ("num_tokens", c_int32),
        ("state_slot", c_int32),
        ("init", c_int32),
        ("source_slot", c_int32),
    ]


class CheckpointDesc(ctypes.Structure):
    _fields_ = [("position", c_int64), ("seq_index", c_int32), ("checkpoint_slot", c_int32)]


class BatchDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("seq_desc_size", c_uint32),
        ("checkpoint_desc_size", c_uint32),
        ("num_seqs", c_int32),
        ("seqs", POINTER(SeqDesc)),
        ("num_tokens", c_int64),
        ("num_checkpoints", c_int32),
        ("checkpoints", POINTER(CheckpointDesc)),
    ]


class ForwardArgs(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("activation_dtype", c_int32),
        ("qkv", c_void_p),
        ("a", c_void_p),
        ("b", c_void_p),
        ("out", c_void_p),
        ("qkv_row_stride", c_int64),
        ("a_row_stride", c_int64),
        ("b_row_stride", c_int64),
        ("out_row_stride", c_int64),
    ]


class DraftDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("num_seqs", c_int32),
        ("num_nodes", POINTER(c_int32)),
        ("parents", POINTER(c_int32)),
    ]


class AcceptDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("num_seqs", c_int32),
        ("num_accepted", POINTER(c_int32)),
        ("accepted_nodes", POINTER(c_int32)),
    ]


class Capabilities(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("backend", c_int32),
        ("layer_kinds", c_uint32),
        ("state_dtypes", c_uint32),
        ("max_draft_tokens", c_int32),
        ("checkpoint_alignment", c_int32),
        ("abi_major", c_int32),
        ("abi_minor", c_int32),
        ("version_major", c_int32),
        ("version_minor", c_int32),
        ("version_patch", c_int32),
        ("device_name", c_char * 128),
    ]


class LayerInfoStruct(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("state_bytes", c_uint64),
        ("recurrent_bytes", c_uint64),
        ("conv_bytes", c_uint64),
    ]


class PoolInfoStruct(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("capacity", c_int32),
        ("slots_in_use", c_int32),
        ("slot_bytes", c_uint64),
    ]


class Stats(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("state_bytes_reserved", c_uint64),
        ("state_bytes_in_use", c_uint64),
        ("forward_calls", c_uint64),
        ("tokens_processed", c_uint64),
        ("checkpoints_written", c_uint64),
        ("checkpoints_restored", c_uint64),
    ]


CHECKPOINT_AT = {"prompt_end": 1 << 0, "turn_end": 1 << 1, "branch": 1 << 2, "interval": 1 << 3,
                 "aligned_step_end": 1 << 4}


class CheckpointPolicy(ctypes.Structure):
    _fields_ = [("match_unit", c_int32), ("places", c_uint32), ("every_n_blocks", c_int32)]


class PrefixCacheDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("block_size", c_int32),
        ("num_attn_groups", c_int32),
        ("kv_block_bytes", POINTER(c_uint64)),
        ("num_kv_blocks", c_int32),
        ("kv_byte_budget", c_uint64),
        ("max_checkpoints", c_int32),
        ("checkpoint_byte_budget", c_uint64),
        ("max_index_entries", c_int32),
        ("policy", CheckpointPolicy),
    ]


class CacheExtraKey(ctypes.Structure):
    _fields_ = [("start", c_int64), ("end", c_int64), ("key", c_uint64)]


class CacheRequestDesc(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("extra_key_size", c_uint32),
        ("request_id", c_uint64),
        ("tokens", POINTER(c_int32)),
        ("num_tokens", c_int64),
        ("extra_keys", POINTER(CacheExtraKey)),
        ("num_extra_keys", c_int32),
        ("hit_alignment", c_int32),
        ("max_hit_tokens", c_int64),
    ]


class CacheHit(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("checkpoint_slot", c_int32),
        ("hit_tokens", c_int64),
        ("matched_tokens", c_int64),
    ]


class CacheCheckpoint(ctypes.Structure):
    _fields_ = [("position", c_int64), ("slot", c_int32)]


class CacheKvCopy(ctypes.Structure):
    _fields_ = [("src_block", c_int32), ("dst_block", c_int32), ("num_tokens", c_int32)]


class CacheStep(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("num_tokens", c_int32),
        ("start_position", c_int64),
        ("init", c_int32),
        ("source_slot", c_int32),
        ("num_checkpoints", c_int32),
        ("checkpoints", POINTER(CacheCheckpoint)),
        ("num_kv_copies", c_int32),
        ("kv_copy", CacheKvCopy),
        ("num_blocks", c_int32),
        ("block_table", POINTER(c_int32)),
    ]


class CacheStats(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32)] + [
        (name, c_int64 if signed else c_uint64)
        for name, signed in [
            ("lookups", False), ("lookup_tokens", False), ("hits", False), ("hit_tokens", False),
            ("checkpoints_written", False), ("checkpoints_restored", False), ("checkpoints_evicted", False),
            ("checkpoints_discarded", False), ("checkpoints_skipped", False), ("index_entries_evicted", False),
            ("kv_copies", False), ("checkpoints_in_use", True), ("max_checkpoints", True),
            ("checkpoint_bytes_in_use", False), ("kv_blocks_total", True), ("kv_blocks_free", True),
            ("kv_blocks_cached_only", True), ("kv_bytes_in_use", False), ("index_entries", True),
            ("live_requests", True),
        ]
    ]


def sized(struct_type, **fields):
    """An instance of a descriptor/result struct with struct_size set, as the ABI requires of every host struct."""
    return struct_type(struct_size=ctypes.sizeof(struct_type), **fields)


def _fn(*argtypes, restype=status_t):
    return ctypes.CFUNCTYPE(restype, *argtypes)


# The function table of ABI 1.0, entries in header order (the table is append-only within a major; the prefix cache
# entries were appended before 1.0 was released).
class ApiTable(ctypes.Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("abi_major", c_uint32),
        ("abi_minor", c_uint32),
        ("version_string", _fn(restype=c_char_p)),
        ("last_error_message", _fn(restype=c_char_p)),
        ("context_create", _fn(POINTER(ContextDesc), POINTER(handle_t))),
        ("context_destroy", _fn(handle_t)),
        ("query_capabilities", _fn(handle_t, POINTER(Capabilities))),
        ("layer_create", _fn(handle_t, POINTER(LayerDesc), POINTER(handle_t), POINTER(LayerInfoStruct))),
        ("layer_destroy", _fn(handle_t)),
        ("layer_info", _fn(handle_t, POINTER(LayerInfoStruct))),
        ("pool_create", _fn(handle_t, POINTER(PoolDesc), POINTER(handle_t))),
        ("pool_destroy", _fn(handle_t)),
        ("pool_info", _fn(handle_t, POINTER(PoolInfoStruct))),
        ("slot_alloc", _fn(handle_t, POINTER(c_int32))),
        ("slot_free", _fn(handle_t, c_int32)),
        ("slot_copy", _fn(handle_t, c_int32, c_int32, stream_t)),
        ("slot_zero", _fn(handle_t, c_int32, stream_t)),
        ("slot_read", _fn(handle_t, handle_t, c_int32, c_void_p, c_uint64, stream_t)),
        ("slot_write", _fn(handle_t, handle_t, c_int32, c_void_p, c_uint64, stream_t)),
        ("plan_create", _fn(handle_t, POINTER(PlanDesc), POINTER(handle_t))),
        ("plan_destroy", _fn(handle_t)),
        ("plan_set_batch", _fn(handle_t, POINTER(BatchDesc), stream_t)),
        ("forward", _fn(handle_t, handle_t, POINTER(ForwardArgs), stream_t)),
        ("spec_verify", _fn(handle_t, handle_t, POINTER(DraftDesc), POINTER(ForwardArgs), stream_t)),
        ("spec_commit", _fn(handle_t, handle_t, POINTER(AcceptDesc), stream_t)),
        ("get_stats", _fn(handle_t, POINTER(Stats))),
        ("prefix_cache_create", _fn(handle_t, POINTER(PrefixCacheDesc), POINTER(handle_t))),
        ("prefix_cache_destroy", _fn(handle_t)),
        ("cache_find_longest_hit", _fn(handle_t, POINTER(CacheRequestDesc), POINTER(CacheHit))),
        ("cache_request_add", _fn(handle_t, POINTER(CacheRequestDesc), POINTER(CacheHit))),
        ("cache_request_append", _fn(handle_t, c_uint64, POINTER(c_int32), c_int64)),
        ("cache_request_schedule", _fn(handle_t, c_uint64, c_int64, POINTER(CacheStep))),
        ("cache_request_commit", _fn(handle_t, c_uint64)),
        ("cache_request_free", _fn(handle_t, c_uint64)),
        ("cache_get_stats", _fn(handle_t, POINTER(CacheStats))),
    ]


GET_API = ctypes.CFUNCTYPE(status_t, c_uint32, c_uint32, POINTER(POINTER(ApiTable)))

# Every struct of the header with its C name, for the layout test.
STRUCTS = {
    "linattn_context_desc": ContextDesc,
    "linattn_layer_desc": LayerDesc,
    "linattn_pool_desc": PoolDesc,
    "linattn_plan_desc": PlanDesc,
    "linattn_seq_desc": SeqDesc,
    "linattn_checkpoint_desc": CheckpointDesc,
    "linattn_batch_desc": BatchDesc,
    "linattn_forward_args": ForwardArgs,
    "linattn_draft_desc": DraftDesc,
    "linattn_accept_desc": AcceptDesc,
    "linattn_capabilities": Capabilities,
    "linattn_layer_info": LayerInfoStruct,
    "linattn_pool_info": PoolInfoStruct,
    "linattn_stats": Stats,
    "linattn_checkpoint_policy": CheckpointPolicy,
    "linattn_prefix_cache_desc": PrefixCacheDesc,
    "linattn_cache_extra_key": CacheExtraKey,
    "linattn_cache_request_desc": CacheRequestDesc,
    "linattn_cache_hit": CacheHit,
    "linattn_cache_checkpoint": CacheCheckpoint,
    "linattn_cache_kv_copy": CacheKvCopy,
    "linattn_cache_step": CacheStep,
    "linattn_cache_stats": CacheStats,
    "linattn_api": ApiTable,
}
