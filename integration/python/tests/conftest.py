import os
import sys
from pathlib import Path

import pytest

# Import the package from this source tree without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import linattn  # noqa: E402


@pytest.fixture(scope="session")
def lib():
    path = os.environ.get("LINATTN_LIBRARY")
    if not path:
        pytest.skip("LINATTN_LIBRARY is not set (point it at build/liblinattn.so)")
    if not os.path.isfile(path):
        pytest.skip(f"LINATTN_LIBRARY={path} does not exist (build the library first)")
    return linattn.Library(path)


@pytest.fixture
def ctx(lib):
    with linattn.Context(lib, backend="cpu") as context:
        yield context
