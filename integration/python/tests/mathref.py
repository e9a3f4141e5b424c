"""An independent float64 numpy implementation of abi/MATH.md, token by token, for checking the library.

Written from MATH.md alone: conv over the sequence's window, SiLU, head split, L2 norm, scale, gates, then the
recurrence per v-head with the state kept in float64.
"""
from dataclasses import dataclass

import numpy as np

import linattn


@dataclass
class Params:
    kind: str  # "gdn" | "simple_gla"
    num_qk_heads: int
    num_v_heads: int
    head_dim_qk: int
    head_dim_v: int
    conv_width: int
    conv_weight: np.ndarray  # [C][W] or None
    conv_bias: np.ndarray  # [C] or None
    A_log: np.ndarray  # [Hv]
    dt_bias: np.ndarray  # [Hv] or None
    scale: float = 0.0
    qk_l2norm: bool = True
    state_dtype: str = "f32"

    @property
    def channels(self):
        return 2 * self.num_qk_heads * self.head_dim_qk + self.num_v_heads * self.head_dim_v

    def layer(self, ctx):
        return linattn.Layer(ctx, **self.__dict__)


def random_params(rng, kind="gdn", Hk=2, Hv=4, dk=16, dv=8, W=4, conv_bias=True, dt_bias=True, scale=0.0,
                  qk_l2norm=True, state_dtype="f32", decay=(0.02, 0.2)):
    C = 2 * Hk * dk + Hv * dv
    return Params(
        kind=kind, num_qk_heads=Hk, num_v_heads=Hv, head_dim_qk=dk, head_dim_v=dv, conv_width=W,
        conv_weight=rng.normal(0.0, 0.5, size=(C, W)).astype(np.float32) if W else None,
        conv_bias=rng.normal(0.0, 0.1, size=C).astype(np.float32) if W and conv_bias else None,
        A_log=np.log(rng.uniform(*decay, size=Hv)).astype(np.float32),
        dt_bias=rng.normal(0.0, 0.5, size=Hv).astype(np.float32) if dt_bias else None,
        scale=scale, qk_l2norm=qk_l2norm, state_dtype=state_dtype,
    )


def random_inputs(rng, params, T):
    """bf16 bits of qkv [T][C], a [T][Hv], b [T][Hv]."""
    bits = linattn.float_to_bf16_bits
    return (bits(rng.normal(size=(T, params.channels))), bits(rng.normal(size=(T, params.num_v_heads))),
            bits(rng.normal(size=(T, params.num_v_heads))))


@dataclass
class State:
    S: np.ndarray  # [Hv][dk][dv] float64
    conv: np.ndarray  # [W-1][C] float64 (the last W-1 conv inputs, oldest first)

    @staticmethod
    def zero(params):
        return State(np.zeros((params.num_v_heads, params.head_dim_qk, params.head_dim_v)),
                     np.zeros((max(params.conv_width - 1, 0), params.channels)))

    @staticmethod
    def from_arrays(arrays):
        S = arrays.recurrent
        S = linattn.bf16_bits_to_float(S) if S.dtype == np.uint16 else S
        return State(S.astype(np.float64), linattn.bf16_bits_to_float(arrays.conv).astype(np.float64))


def _silu(z):
    return z / (1.0 + np.exp(-z))


def _softplus(z):
    return np.logaddexp(0.0, z)


def _conv(params, x, state):
    W = params.conv_width
    if W == 0:
        return x, state.conv
    window = np.concatenate([state.conv, x], axis=0)  # rows: x_{-(W-1)} .. x_{T-1}
    w = params.conv_weight.astype(np.float64)
    y = np.zeros_like(x)
    for j in range(W):
        y += w[:, j] * window[j:j + x.shape[0]]
    if params.conv_bias is not None:
        y += params.conv_bias.astype(np.float64)
    return _silu(y), window[window.shape[0] - (W - 1):]


def forward(params, qkv_bits, a_bits, b_bits, state=None):
    """Outputs [T][Hv][dv] (float64) and the final State. a_bits None = constant decay (simple GLA)."""
    f = lambda bits: linattn.bf16_bits_to_float(bits).astype(np.float64)  # noqa: E731
    state = state or State.zero(params)
    Hk, Hv, dk, dv = params.num_qk_heads, params.num_v_heads, params.head_dim_qk, params.head_dim_v
    y, conv_state = _conv(params, f(qkv_bits), state)
    T = y.shape[0]
    q = y[:, :Hk * dk].reshape(T, Hk, dk)
    k = y[:, Hk * dk:2 * Hk * dk].reshape(T, Hk, dk)
    v = y[:, 2 * Hk * dk:].reshape(T, Hv, dv)
    if params.qk_l2norm:
        q = q / np.sqrt((q * q).sum(-1, keepdims=True) + 1e-6)
        k = k / np.sqrt((k * k).sum(-1, keepdims=True) + 1e-6)
    q = q * (params.scale if params.scale else 1.0 / np.sqrt(dk))
    group = Hv // Hk
    q, k = np.repeat(q, group, axis=1), np.repeat(k, group, axis=1)  # v head h uses q/k head h // group
    A = np.exp(params.A_log.astype(np.float64))
    if a_bits is None:
        g = np.broadcast_to(-A, (T, Hv))
    else:
        dt = params.dt_bias.astype(np.float64) if params.dt_bias is not None else 0.0
        g = -A * _softplus(f(a_bits) + dt)
    S = state.S.copy()
    out = np.zeros((T, Hv, dv))
    for t in range(T):
        S *= np.exp(g[t])[:, None, None]
        if params.kind == "gdn":
            beta = 1.0 / (1.0 + np.exp(-f(b_bits[t])))
            u = beta[:, None] * (v[t] - np.einsum("hij,hi->hj", S, k[t]))
        else:
            u = v[t]
        S += k[t][:, :, None] * u[:, None, :]
        out[t] = np.einsum("hij,hi->hj", S, q[t])
    return out, State(S, conv_state)


def rel_error(got, want):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))
