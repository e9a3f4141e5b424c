"""BatchPlan: the per-step batch metadata (one per model step, shared by every linear layer of the step)."""
import ctypes
from dataclasses import dataclass, fields

from . import _abi
from ._arrays import resolve_stream
from .context import Owned, choice


@dataclass
class Seq:
    """One sequence of a batch: rows token_offset .. token_offset+num_tokens-1 of the packed token stream.

    init: "zero" (new sequence, start_position 0), "continue" (from state_slot's state) or "from_slot" (from
    source_slot's state, e.g. a restored prefix-cache checkpoint). state_slot SLOT_NONE (-1) marks padding.
    """

    token_offset: int
    num_tokens: int
    state_slot: int
    start_position: int = 0
    init: object = "zero"
    source_slot: int = _abi.SLOT_NONE


@dataclass
class Checkpoint:
    """Write the state after the first `position` tokens of seqs[seq_index] into checkpoint_slot."""

    seq_index: int
    position: int
    checkpoint_slot: int


def _record(kind, item):
    """A Seq/Checkpoint from a dict, a Seq/Checkpoint, or any object with the same attribute names."""
    if isinstance(item, kind):
        return item
    names = [f.name for f in fields(kind)]
    if isinstance(item, dict):
        unknown = set(item) - set(names)
        if unknown:
            raise ValueError(f"unknown {kind.__name__} field(s) {sorted(unknown)}; known: {names}")
        return kind(**item)
    return kind(**{name: getattr(item, name) for name in names if hasattr(item, name)})


class BatchPlan(Owned):
    """BatchPlan(pool, max_seqs, max_tokens, max_checkpoints=0): bounds fix the plan's memory, so forwards
    captured in a CUDA graph replay with whatever batch set() installed last."""

    _destroy_entry = "plan_destroy"

    def __init__(self, pool, max_seqs, max_tokens, max_checkpoints=0):
        super().__init__(pool.context)
        self.pool = pool
        self.max_seqs, self.max_tokens, self.max_checkpoints = int(max_seqs), int(max_tokens), int(max_checkpoints)
        desc = _abi.sized(
            _abi.PlanDesc, max_seqs=self.max_seqs, max_checkpoints=self.max_checkpoints, max_tokens=self.max_tokens
        )
        handle = ctypes.c_void_p()
        self.context.lib.call("plan_create", pool.handle, ctypes.byref(desc), ctypes.byref(handle))
        self._handle = handle.value
        # Descriptor arrays reused every step (no per-step allocation for batches within the bounds).
        self._seq_array = (_abi.SeqDesc * max(self.max_seqs, 1))()
        self._checkpoint_array = (_abi.CheckpointDesc * max(self.max_checkpoints, 1))()
        self.num_tokens = None  # of the current batch; None until set() succeeds
        self.num_seqs = None

    def set(self, seqs, num_tokens, checkpoints=(), stream=None):
        """Validate a batch and make it current (once per model step, outside CUDA graph capture).

        seqs: Seq objects or dicts with its field names; num_tokens: rows of the packed stream; checkpoints:
        Checkpoint objects or dicts. On error (LinattnError) the plan keeps its previous batch.
        """
        seqs = [_record(Seq, s) for s in seqs]
        checkpoints = [_record(Checkpoint, c) for c in checkpoints]
        # Oversized batches get a temporary array so the library itself reports LINATTN_ERR_PLAN_CAPACITY.
        seq_array = self._seq_array if len(seqs) <= len(self._seq_array) else (_abi.SeqDesc * len(seqs))()
        checkpoint_array = (self._checkpoint_array if len(checkpoints) <= len(self._checkpoint_array)
                            else (_abi.CheckpointDesc * len(checkpoints))())
        for target, s in zip(seq_array, seqs):
            target.token_offset = int(s.token_offset)
            target.start_position = int(s.start_position)
            target.num_tokens = int(s.num_tokens)
            target.state_slot = _abi.SLOT_NONE if s.state_slot is None else int(s.state_slot)
            target.init = choice(_abi.INITS, s.init, "init")
            target.source_slot = _abi.SLOT_NONE if s.source_slot is None else int(s.source_slot)
        for target, c in zip(checkpoint_array, checkpoints):
            target.position = int(c.position)
            target.seq_index = int(c.seq_index)
            target.checkpoint_slot = int(c.checkpoint_slot)
        batch = _abi.sized(
            _abi.BatchDesc,
            seq_desc_size=ctypes.sizeof(_abi.SeqDesc),
            checkpoint_desc_size=ctypes.sizeof(_abi.CheckpointDesc),
            num_seqs=len(seqs),
            seqs=seq_array,
            num_tokens=int(num_tokens),
            num_checkpoints=len(checkpoints),
            checkpoints=checkpoint_array if checkpoints else None,
        )
        self.context.lib.call(
            "plan_set_batch", self.handle, ctypes.byref(batch), resolve_stream(stream, self.context.device_index)
        )
        self.num_tokens = int(num_tokens)
        self.num_seqs = len(seqs)

    def __repr__(self):
        return f"<linattn.BatchPlan max_seqs {self.max_seqs} max_tokens {self.max_tokens}>"
