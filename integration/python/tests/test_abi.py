"""ABI negotiation, the ctypes mirror of linattn.h, and capabilities."""
import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import linattn
from linattn import _abi

HEADER = Path(__file__).resolve().parents[3] / "abi" / "linattn.h"


def test_negotiates_abi_1_0(lib):
    assert lib.abi_version[0] == 1 and lib.abi_version[1] >= 0
    assert lib.table_size >= ctypes.sizeof(_abi.ApiTable)
    assert lib.version.startswith("linattn ")


@pytest.mark.parametrize("version", [(2, 0), (0, 9), (1, 999)])
def test_refuses_other_majors_and_newer_minors(lib, version):
    with pytest.raises(linattn.LinattnError) as refused:
        linattn.Library(lib.path, abi_version=version)
    assert refused.value.name == "ERR_ABI_VERSION"
    assert refused.value.call == "linattn_get_api"
    assert "ABI" in refused.value.message


def test_library_path_comes_from_the_environment(lib, monkeypatch):
    monkeypatch.setenv("LINATTN_LIBRARY", str(lib.path))
    assert linattn.find_library() == Path(lib.path)
    monkeypatch.setenv("LINATTN_LIBRARY", "/nonexistent/liblinattn.so")
    with pytest.raises(FileNotFoundError):
        linattn.Library()


def _layout_program():
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "abi/linattn.h"', "int main(void) {"]
    for c_name, struct in _abi.STRUCTS.items():
        lines.append(f'printf("{c_name} %zu\\n", sizeof({c_name}));')
        for field, _ in struct._fields_:
            lines.append(f'printf("{c_name}.{field} %zu\\n", offsetof({c_name}, {field}));')
    return "\n".join(lines + ["return 0; }"])


def test_ctypes_structs_match_the_header(tmp_path):
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not compiler or not HEADER.is_file():
        pytest.skip("needs a C compiler and the repository's abi/linattn.h")
    source = tmp_path / "layout.c"
    source.write_text(_layout_program())
    subprocess.run([compiler, "-std=c11", "-I", str(HEADER.parents[1]), str(source), "-o", str(tmp_path / "layout")],
                   check=True)
    reported = dict(line.rsplit(" ", 1) for line in
                    subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True, text=True)
                    .stdout.splitlines())
    mirrored = {}
    for c_name, struct in _abi.STRUCTS.items():
        mirrored[c_name] = str(ctypes.sizeof(struct))
        for field, _ in struct._fields_:
            mirrored[f"{c_name}.{field}"] = str(getattr(struct, field).offset)
    assert mirrored == reported


def test_capabilities_of_the_cpu_backend(ctx):
    caps = ctx.capabilities()
    assert caps["backend"] == "cpu" and ctx.backend == "cpu"
    assert set(caps["layer_kinds"]) == {"gdn", "simple_gla"}
    assert set(caps["state_dtypes"]) == {"f32", "bf16"}
    assert caps["abi_version"] == (1, 0)
    assert caps["checkpoint_alignment"] >= 1
    assert caps["device_name"]


def test_cuda_backend_exists_or_reports_no_device(lib):
    try:
        context = linattn.Context(lib, backend="cuda")
    except linattn.LinattnError as error:
        assert error.name == "ERR_NO_DEVICE"
    else:
        with context:
            assert context.capabilities()["backend"] == "cuda"


def test_bf16_helpers_round_to_nearest_even():
    values = np.array([1.0, -2.5, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, np.finfo(np.float32).max, np.inf, np.nan], dtype=np.float32)
    bits = linattn.float_to_bf16_bits(values)
    assert bits.dtype == np.uint16 and bits.shape == values.shape
    # 1 + 2^-8 is a tie between 1 and 1 + 2^-7: even mantissa (1) wins; 1 + 3·2^-8 rounds up to 1 + 2^-6.
    assert list(bits[:4]) == [0x3F80, 0xC020, 0x3F80, 0x3F82]
    assert bits[4] == 0x7F80  # above bf16's largest finite value: rounds to infinity
    assert bits[5] == 0x7F80
    assert np.isnan(linattn.bf16_bits_to_float(bits[6:]))[0]
    back = linattn.bf16_bits_to_float(bits[:4])
    assert back.dtype == np.float32 and list(back) == [1.0, -2.5, 1.0, 1.0 + 2.0**-6]
