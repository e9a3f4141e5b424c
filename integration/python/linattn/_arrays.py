"""Turning torch tensors and numpy arrays into the (pointer, row stride) pairs of linattn_forward_args, after
checking dtype, shape, layout and device in Python, where the error can still name the argument."""
import ctypes
import sys
from dataclasses import dataclass

import numpy as np


def torch_module():
    """torch if the host has imported it; the binding never imports torch itself."""
    return sys.modules.get("torch")


def is_torch_tensor(value):
    torch = torch_module()
    return torch is not None and isinstance(value, torch.Tensor)


@dataclass(frozen=True)
class Operand:
    """One activation matrix as the library sees it: `rows` rows of bf16 elements, `row_stride` elements apart."""

    pointer: int
    rows: int
    row_stride: int  # 0 when there is at most one row (the ABI's "contiguous")
    device: str  # "cpu" or "cuda"
    device_index: int


def _row_shape_error(name, shape, row_shapes):
    wanted = " or ".join("[tokens, " + ", ".join(str(d) for d in s) + "]" for s in row_shapes)
    return ValueError(f"{name} has shape {list(shape)}, expected {wanted}")


def _match_row_shape(name, shape, row_shapes):
    if tuple(shape[1:]) not in row_shapes:
        raise _row_shape_error(name, shape, row_shapes)


def _row_stride(name, shape, strides):
    """Row stride in elements of an array whose rows (all axes but the first) must be dense."""
    expected = 1
    for axis in range(len(shape) - 1, 0, -1):
        if shape[axis] > 1 and strides[axis] != expected:
            raise ValueError(
                f"{name}: the elements of a row must be contiguous (shape {list(shape)}, strides "
                f"{list(strides)} in elements); use .contiguous() / np.ascontiguousarray or slice whole rows only"
            )
        expected *= shape[axis]
    width = expected
    rows = shape[0]
    if rows <= 1:
        return 0
    if strides[0] < width:
        raise ValueError(f"{name}: row stride {strides[0]} is smaller than a row ({width} elements): rows overlap")
    return strides[0]


def _from_torch(name, tensor, row_shapes, writable):
    torch = torch_module()
    if tensor.dtype != torch.bfloat16:
        raise TypeError(f"{name} must be a torch.bfloat16 tensor, got {tensor.dtype}")
    if tensor.dim() < 1:
        raise _row_shape_error(name, tuple(tensor.shape), row_shapes)
    _match_row_shape(name, tuple(tensor.shape), row_shapes)
    if tensor.device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name} is on {tensor.device}; only CPU and CUDA tensors are supported")
    if writable and tensor.requires_grad:
        raise ValueError(f"{name} requires grad; the library writes it in place (use a tensor without grad)")
    stride = _row_stride(name, tuple(tensor.shape), tuple(tensor.stride()))
    index = tensor.device.index if tensor.device.type == "cuda" else -1
    return Operand(tensor.data_ptr(), int(tensor.shape[0]), stride, tensor.device.type, index)


def _from_numpy(name, array, row_shapes, writable):
    if array.dtype.name == "bfloat16" and array.dtype.itemsize == 2:
        array = array.view(np.uint16)  # ml_dtypes.bfloat16: same bits
    if array.dtype != np.uint16:
        hint = " (convert with linattn.float_to_bf16_bits)" if array.dtype.kind == "f" else ""
        raise TypeError(f"{name} must hold bf16 bits as a uint16 numpy array, got {array.dtype}{hint}")
    if array.ndim < 1:
        raise _row_shape_error(name, array.shape, row_shapes)
    _match_row_shape(name, array.shape, row_shapes)
    if writable and not array.flags.writeable:
        raise ValueError(f"{name} is a read-only numpy array; the library writes it")
    if any(s % array.itemsize for s in array.strides):
        raise ValueError(f"{name}: strides {array.strides} are not whole elements")
    strides = tuple(s // array.itemsize for s in array.strides)
    stride = _row_stride(name, array.shape, strides)
    return Operand(array.ctypes.data, int(array.shape[0]), stride, "cpu", -1)


def activation(name, value, row_shapes, writable=False):
    """Operand for a forward argument; value is a torch tensor or numpy array; row_shapes lists accepted shapes
    of one row (e.g. [(C,)] or [(Hv*dv,), (Hv, dv)])."""
    if is_torch_tensor(value):
        return _from_torch(name, value, row_shapes, writable)
    if isinstance(value, np.ndarray):
        return _from_numpy(name, value, row_shapes, writable)
    raise TypeError(f"{name} must be a torch tensor or a numpy array, got {type(value).__name__}")


def resolve_stream(stream, device_index=None):
    """cudaStream_t value for a call: an int, a torch.cuda.Stream (or anything with .cuda_stream), a ctypes
    c_void_p, or None. None means torch's current stream on `device_index` when device_index is given and torch
    is loaded, else the NULL (default) stream."""
    if stream is None:
        torch = torch_module()
        if device_index is None or torch is None or not torch.cuda.is_available():
            return None
        return torch.cuda.current_stream(device_index).cuda_stream or None
    if isinstance(stream, bool):
        raise TypeError("stream must be a CUDA stream, not a bool")
    if isinstance(stream, int):
        return stream or None
    if isinstance(stream, ctypes.c_void_p):
        return stream.value
    if hasattr(stream, "cuda_stream"):
        return stream.cuda_stream or None
    raise TypeError(f"stream must be None, an int, a c_void_p or a torch.cuda.Stream, got {type(stream).__name__}")
