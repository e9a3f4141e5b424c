#!/usr/bin/env bash
# Everything that needs a GPU, in one go, for the device machine: the CUDA kernel tests, the conformance suite and
# the demo on the CUDA backend, the Python binding's torch/transformers tests, compute-sanitizer on small cases,
# and (with --bench) the benchmark against FLA. Binaries come prebuilt (this machine may lack Criterion):
#   bench/gpu_check.sh BIN_DIR LIB_DIR [--bench OUT_JSON] [--no-tests]
# BIN_DIR holds liblinattn.so, test_kernel_*, linattn_conformance, linattn_demo; LIB_DIR the Criterion runtime.
set -uo pipefail
bin=$(realpath "$1"); libs=$(realpath "$2"); shift 2
bench_json=""; tests=1
while (( $# )); do
    case $1 in
        --bench) bench_json=$2; shift 2 ;;
        --no-tests) tests=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LD_LIBRARY_PATH="$libs:${LD_LIBRARY_PATH:-}" LINATTN_LIBRARY="$bin/liblinattn.so"
export PYTHONUNBUFFERED=1
binding="$PWD/integration/python"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
failed=()
step() { echo "=== $*"; "$@" || failed+=("$1 ${2:-}"); }

if (( tests )); then
    for t in "$bin"/test_kernel_*; do step "$t" -j1 --short-filename; done
    step "$bin/linattn_conformance" "$bin/liblinattn.so" --backend cuda
    step "$bin/linattn_demo" "$bin/liblinattn.so"
    # Without FLA on the path: transformers would route its torch reference through FLA's kernels otherwise.
    step env PYTHONPATH="$binding" python3 -m pytest -q -p no:cacheprovider integration/python/tests ${PYTEST_ARGS:-}
    step compute-sanitizer --tool memcheck --error-exitcode 1 "$bin/linattn_conformance" "$bin/liblinattn.so" \
        --backend cuda --scenario chunked_prefill --scenario checkpoint_restore
    step compute-sanitizer --tool racecheck --error-exitcode 1 "$bin/linattn_conformance" "$bin/liblinattn.so" \
        --backend cuda --scenario chunked_prefill
fi
if [[ -n $bench_json ]]; then
    step env PYTHONPATH="$binding:$PWD/.fla/site" python3 bench/bench_forward.py --library "$bin/liblinattn.so" \
        --json "$bench_json"
fi
echo "=== failed: ${#failed[@]} ${failed[*]:-}"
(( ${#failed[@]} == 0 ))
