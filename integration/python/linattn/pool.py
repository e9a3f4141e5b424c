"""StatePool: slots of per-sequence state for a set of layers (a vLLM "KV cache group" of linear layers)."""
import ctypes
from dataclasses import dataclass

import numpy as np

from . import _abi
from ._arrays import resolve_stream
from .context import Owned


@dataclass(frozen=True)
class PoolInfo:
    capacity: int
    slots_in_use: int
    slot_bytes: int  # state bytes of one slot across all the pool's layers


@dataclass(frozen=True)
class StateArrays:
    """One layer's state of one slot (MATH.md §State layout): recurrent [Hv][dk][dv] as float32, or as uint16 bf16
    bits for a bf16-state layer; conv [W-1][C] as uint16 bf16 bits, oldest input first ([0][C] when W < 2)."""

    recurrent: np.ndarray
    conv: np.ndarray

    def to_bytes(self):
        return np.ascontiguousarray(self.recurrent).tobytes() + np.ascontiguousarray(self.conv).tobytes()


def state_arrays(layer, raw):
    """Split slot_read bytes of `layer` into StateArrays (copies)."""
    dtype = np.float32 if layer.state_dtype == "f32" else np.uint16
    split = layer.info.recurrent_bytes
    recurrent = np.frombuffer(raw, dtype=dtype, count=split // np.dtype(dtype).itemsize).copy()
    conv = np.frombuffer(raw, dtype=np.uint16, offset=split).copy()
    rows = max(layer.conv_width - 1, 0)
    return StateArrays(
        recurrent.reshape(layer.num_v_heads, layer.head_dim_qk, layer.head_dim_v),
        conv.reshape(rows, layer.channels),
    )


class StatePool(Owned):
    """StatePool(ctx, layers, capacity=None, byte_budget=None): give capacity (slots), or byte_budget to get as
    many slots as fit. Slot s holds one sequence's state in every layer of the pool.

    Stream arguments: None means torch's current stream on a CUDA context (when torch is loaded), else the default
    stream; the CPU backend ignores streams.
    """

    _destroy_entry = "pool_destroy"

    def __init__(self, ctx, layers, capacity=None, byte_budget=None):
        super().__init__(ctx)
        self.layers = tuple(layers)
        if capacity is None and byte_budget is None:
            raise ValueError("StatePool needs capacity or byte_budget")
        if capacity is not None and byte_budget is not None:
            raise ValueError("StatePool takes capacity or byte_budget, not both")
        handles = (_abi.handle_t * max(len(self.layers), 1))(*[layer.handle for layer in self.layers])
        desc = _abi.sized(
            _abi.PoolDesc,
            num_layers=len(self.layers),
            layers=handles,
            capacity=int(capacity) if capacity is not None else 0,
            byte_budget=int(byte_budget) if byte_budget is not None else 0,
        )
        handle = ctypes.c_void_p()
        ctx.lib.call("pool_create", ctx.handle, ctypes.byref(desc), ctypes.byref(handle))
        self._handle = handle.value
        self.capacity = self.info().capacity

    def _stream(self, stream):
        return resolve_stream(stream, self.context.device_index)

    def info(self):
        info = _abi.sized(_abi.PoolInfoStruct)
        self.context.lib.call("pool_info", self.handle, ctypes.byref(info))
        return PoolInfo(info.capacity, info.slots_in_use, info.slot_bytes)

    def alloc(self):
        """Take the lowest free slot. Its bytes are stale: start the sequence with init="zero" or zero() it."""
        slot = ctypes.c_int32()
        self.context.lib.call("slot_alloc", self.handle, ctypes.byref(slot))
        return slot.value

    def free(self, slot):
        self.context.lib.call("slot_free", self.handle, int(slot))

    def copy(self, dst_slot, src_slot, stream=None):
        """Copy every layer's state of src_slot into dst_slot (enqueued on the stream)."""
        self.context.lib.call("slot_copy", self.handle, int(dst_slot), int(src_slot), self._stream(stream))

    def zero(self, slot, stream=None):
        self.context.lib.call("slot_zero", self.handle, int(slot), self._stream(stream))

    def read_state(self, layer, slot, stream=None):
        """One layer's state of a slot as bytes (MATH.md §State layout). Synchronous."""
        size = layer.info.state_bytes
        buffer = (ctypes.c_char * max(size, 1))()
        self.context.lib.call("slot_read", self.handle, layer.handle, int(slot), buffer, size, self._stream(stream))
        return bytes(buffer[:size])

    def read_state_arrays(self, layer, slot, stream=None):
        """read_state split into StateArrays (numpy)."""
        return state_arrays(layer, self.read_state(layer, slot, stream))

    def write_state(self, layer, slot, data, stream=None):
        """Overwrite one layer's state of a slot from bytes-like data, a numpy array (its raw bytes) or
        StateArrays. Synchronous."""
        if isinstance(data, StateArrays):
            data = data.to_bytes()
        elif isinstance(data, np.ndarray):
            data = np.ascontiguousarray(data).tobytes()
        raw = bytes(data)
        self.context.lib.call("slot_write", self.handle, layer.handle, int(slot), raw, len(raw), self._stream(stream))

    def __repr__(self):
        return f"<linattn.StatePool {len(self.layers)} layers, capacity {getattr(self, 'capacity', '?')}>"
