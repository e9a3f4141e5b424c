#!/usr/bin/env bash
# Builds liblinattn and runs the demo host, a serving engine's step loop in small: it dlopens the library and serves
# multi-turn conversations on shared system prompts through the prefix cache, with chunked prefill under a token
# budget and decode. Uses the GPU when one exists (LINATTN_BACKEND=cpu forces the CPU); extra arguments go to the
# demo (--help lists them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/install_missing.sh cmake gcc g++ make

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build build -j2 --target linattn linattn_demo
./build/linattn_demo ./build/liblinattn.so "$@"
