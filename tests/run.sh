#!/usr/bin/env bash
# The whole test suite on a fresh Debian machine (with or without the CUDA toolkit and a GPU): installs what is
# missing, builds, and runs every test through ctest — unit tests (Criterion), ABI checks, the conformance suite,
# the demo and the Python binding's tests. GPU tests report "skipped" when no CUDA device exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(cmake gcc g++ make binutils libcriterion-dev abigail-tools pkg-config python3 python3-pip clang libclang-rt-14-dev)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} )); then
    sudo=()
    (( EUID == 0 )) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
python3 -c 'import numpy, pytest' 2>/dev/null ||
    python3 -m pip install --quiet numpy pytest 2>/dev/null ||
    python3 -m pip install --quiet --break-system-packages numpy pytest

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
ctest --test-dir build --output-on-failure
