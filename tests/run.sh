#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine (with or without the CUDA toolkit and a GPU): installs what is
# missing, builds, and runs every test through ctest — unit tests (Criterion), ABI checks, the conformance suite,
# the demo and the Python binding's tests. GPU tests report "skipped" when no CUDA device exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/install_missing.sh cmake gcc g++ make binutils libcriterion-dev abigail-tools pkg-config python3 python3-pip clang libclang-rt-14-dev
python3 -c 'import numpy, pytest' 2>/dev/null ||
    python3 -m pip install --quiet numpy pytest 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages numpy pytest

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON
cmake --build build -j2
ctest --test-dir build --output-on-failure
