#!/usr/bin/env bash
# Builds liblinattn and runs the demo host: it dlopens the library, registers a Qwen3-Next-shaped Gated DeltaNet
# layer, prefills a few sequences and decodes. Uses the GPU when one exists (LINATTN_BACKEND=cpu forces the CPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

packages=(cmake gcc g++ make)
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

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j2 --target linattn linattn_demo
./build/linattn_demo ./build/liblinattn.so
