#!/usr/bin/env bash
# Usage: check_abi.sh path/to/liblinattn.so
# Compares the public ABI of the built library with the committed baseline tests/abi/liblinattn.abi and fails on
# any change abidiff reports as an ABI change (exit bit 4) or an incompatible one (bit 8). An intended change —
# entries appended to linattn_api with a minor version bump — is accepted by regenerating the baseline with
# tests/abi/update_baseline.sh and committing it. Exits 77 (skipped, for ctest) when it cannot check.
set -euo pipefail
lib=${1:?usage: check_abi.sh path/to/liblinattn.so}
source "$(dirname "${BASH_SOURCE[0]}")/abi_common.sh"

tool=$(missing_abi_tool)
if [[ -n $tool ]]; then
    echo "SKIP: $tool not found (install abigail-tools)"
    exit 77
fi
if ! has_debug_info "$lib"; then
    echo "SKIP: $lib has no debug info (build with CMAKE_BUILD_TYPE=RelWithDebInfo or Debug)"
    exit 77
fi
if [[ ! -f $baseline ]]; then
    echo "FAIL: no baseline at $baseline; create it with tests/abi/update_baseline.sh" >&2
    exit 1
fi

current=$(mktemp --suffix=.abi)
trap 'rm -f "$current"' EXIT
dump_abi "$lib" "$current"

status=0
abidiff "$baseline" "$current" || status=$?
if (( status & 3 )); then
    echo "FAIL: abidiff could not compare (exit $status)" >&2
    exit 1
fi
if (( status & 12 )); then
    echo "FAIL: the ABI of $lib differs from $baseline (abidiff exit $status)." >&2
    echo "If the change is intended (appended table entries, minor version bumped), run tests/abi/update_baseline.sh." >&2
    exit 1
fi
echo "ok: ABI matches $baseline"
