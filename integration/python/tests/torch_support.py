"""Shared pieces of the torch tests: contexts per backend and error measures. Imported only after
pytest.importorskip("torch") has succeeded."""
import pytest
import torch

import linattn

BACKENDS = ["cpu", "cuda"]


def context_for(lib, backend):
    """A linattn Context on `backend` and the torch device its tensors live on; skips when unavailable."""
    if backend == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device visible to torch")
        try:
            return linattn.Context(lib, backend="cuda", device=torch.cuda.current_device()), torch.device("cuda")
        except linattn.LinattnError as error:
            pytest.skip(f"liblinattn has no usable CUDA backend here: {error}")
    return linattn.Context(lib, backend="cpu"), torch.device("cpu")


def rel_error(got, want):
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return float((got - want).norm() / want.norm())
