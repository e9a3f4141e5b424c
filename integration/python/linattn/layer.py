"""Layer: one Gated DeltaNet or simple GLA layer registered with a context, and its forward call."""
import ctypes
from dataclasses import dataclass

import numpy as np

from . import _abi
from ._arrays import activation, is_torch_tensor, resolve_stream, torch_module
from .context import Owned, choice, name_of


@dataclass(frozen=True)
class LayerInfo:
    state_bytes: int  # recurrent + conv state of one sequence in this layer
    recurrent_bytes: int
    conv_bytes: int


def _host_float32(name, value, expected_size, shape_hint):
    """A weight as a contiguous host float32 vector of exactly expected_size elements (None stays None)."""
    if value is None:
        return None
    if is_torch_tensor(value):
        value = value.detach().to(device="cpu", dtype=torch_module().float32).contiguous().numpy()
    array = np.ascontiguousarray(np.asarray(value, dtype=np.float32)).reshape(-1)
    if array.size != expected_size:
        raise ValueError(f"{name} has {array.size} elements, the layer needs {expected_size} ({shape_hint})")
    return array


def _float_pointer(array):
    return None if array is None else array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class Layer(Owned):
    """Layer(ctx, kind="gdn"|"simple_gla", num_qk_heads, num_v_heads, head_dim_qk, head_dim_v, conv_width,
    conv_weight, conv_bias, A_log, dt_bias, scale=0, qk_l2norm=True, state_dtype="f32"|"bf16").

    Weights are numpy arrays or torch tensors (any device and float dtype; copied to host float32 here, then by the
    library into its own memory). conv_weight is [C][conv_width] (torch's Conv1d weight [C, 1, W] is accepted),
    C = 2*num_qk_heads*head_dim_qk + num_v_heads*head_dim_v; conv_bias [C] or None; A_log and dt_bias [num_v_heads]
    (dt_bias None = zeros). scale 0 means 1/sqrt(head_dim_qk).
    """

    _destroy_entry = "layer_destroy"

    def __init__(self, ctx, kind="gdn", num_qk_heads=1, num_v_heads=1, head_dim_qk=1, head_dim_v=1, conv_width=0,
                 conv_weight=None, conv_bias=None, A_log=None, dt_bias=None, scale=0.0, qk_l2norm=True,
                 state_dtype="f32"):
        super().__init__(ctx)
        self.kind = kind
        self.num_qk_heads, self.num_v_heads = int(num_qk_heads), int(num_v_heads)
        self.head_dim_qk, self.head_dim_v = int(head_dim_qk), int(head_dim_v)
        self.conv_width = int(conv_width)
        self.channels = 2 * self.num_qk_heads * self.head_dim_qk + self.num_v_heads * self.head_dim_v
        self.state_dtype = state_dtype
        kind_value = choice(_abi.LAYER_KINDS, kind, "kind")
        dtype_value = choice(_abi.DTYPES, state_dtype, "state_dtype")

        C, W, Hv = self.channels, self.conv_width, self.num_v_heads
        weights = {
            "conv_weight": _host_float32("conv_weight", conv_weight, C * W, f"[{C}][{W}]"),
            "conv_bias": _host_float32("conv_bias", conv_bias, C, f"[{C}]"),
            "A_log": _host_float32("A_log", A_log, Hv, f"[{Hv}]"),
            "dt_bias": _host_float32("dt_bias", dt_bias, Hv, f"[{Hv}]"),
        }
        desc = _abi.sized(
            _abi.LayerDesc,
            kind=kind_value,
            num_qk_heads=self.num_qk_heads,
            num_v_heads=self.num_v_heads,
            head_dim_qk=self.head_dim_qk,
            head_dim_v=self.head_dim_v,
            conv_width=self.conv_width,
            qk_l2norm=1 if qk_l2norm else 0,
            state_dtype=dtype_value,
            scale=float(scale),
            **{name: _float_pointer(array) for name, array in weights.items()},
        )
        handle = ctypes.c_void_p()
        info = _abi.sized(_abi.LayerInfoStruct)
        ctx.lib.call("layer_create", ctx.handle, ctypes.byref(desc), ctypes.byref(handle), ctypes.byref(info))
        self._handle = handle.value
        self.kind = name_of(_abi.LAYER_KINDS, kind_value)
        self.state_dtype = name_of(_abi.DTYPES, dtype_value)
        self.info = LayerInfo(info.state_bytes, info.recurrent_bytes, info.conv_bytes)

    def query_info(self):
        """LayerInfo as the library reports it now (equals .info)."""
        info = _abi.sized(_abi.LayerInfoStruct)
        self.context.lib.call("layer_info", self.handle, ctypes.byref(info))
        return LayerInfo(info.state_bytes, info.recurrent_bytes, info.conv_bytes)

    def forward(self, plan, qkv, a, b, out, stream=None):
        """Run this layer over the plan's current batch.

        qkv [tokens, C], a and b [tokens, num_v_heads], out [tokens, num_v_heads*head_dim_v] or
        [tokens, num_v_heads, head_dim_v]: bf16 torch tensors (CUDA for a CUDA context, CPU for a CPU context) or
        uint16 numpy arrays of bf16 bits (CPU context). Rows may be strided; each row must be dense. a may be None
        for simple GLA (constant decay); b is ignored by simple GLA. tokens >= the batch's num_tokens.
        stream: None = torch's current stream of the context's device (CUDA), else see resolve_stream.
        Returns out.
        """
        Hv, dv = self.num_v_heads, self.head_dim_v
        operands = {
            "qkv": activation("qkv", qkv, [(self.channels,)]) if qkv is not None else None,
            "a": activation("a", a, [(Hv,)]) if a is not None else None,
            "b": activation("b", b, [(Hv,)]) if b is not None and self.kind != "simple_gla" else None,
            "out": activation("out", out, [(Hv * dv,), (Hv, dv)], writable=True) if out is not None else None,
        }
        self._check_operands(plan, operands)
        args = _abi.sized(_abi.ForwardArgs, activation_dtype=_abi.DTYPES["bf16"])
        for name, operand in operands.items():
            if operand is not None:
                setattr(args, name, operand.pointer)
                setattr(args, f"{name}_row_stride", operand.row_stride)
        self.context.lib.call(
            "forward", self.handle, plan.handle, ctypes.byref(args),
            resolve_stream(stream, self.context.device_index),
        )
        return out

    def _check_operands(self, plan, operands):
        if plan.context is not self.context:
            raise ValueError("the plan belongs to another Context than the layer")
        wanted_device = self.context.backend
        for name, operand in operands.items():
            if operand is None:
                continue
            if operand.device != wanted_device:
                where = "CUDA device memory (torch CUDA tensors)" if wanted_device == "cuda" else "host memory"
                raise ValueError(f"{name} is in {operand.device} memory, but a {wanted_device} context needs {where}")
            if operand.device == "cuda" and operand.device_index != self.context.device:
                raise ValueError(f"{name} is on cuda:{operand.device_index}, the context on cuda:{self.context.device}")
            if plan.num_tokens is not None and operand.rows < plan.num_tokens:
                raise ValueError(f"{name} has {operand.rows} rows, the plan's batch has {plan.num_tokens} tokens")

    def __repr__(self):
        return (f"<linattn.Layer {self.kind} qk {self.num_qk_heads}x{self.head_dim_qk} v {self.num_v_heads}x"
                f"{self.head_dim_v} conv {self.conv_width} state {self.state_dtype}>")
