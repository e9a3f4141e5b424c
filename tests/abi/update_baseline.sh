#!/usr/bin/env bash
# Usage: update_baseline.sh [path/to/liblinattn.so]   (default: build/liblinattn.so)
# Rewrites tests/abi/liblinattn.abi from a library built with debug info. Commit the result together with the
# header change it records.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/abi_common.sh"
lib=${1:-$repo_root/build/liblinattn.so}

tool=$(missing_abi_tool)
[[ -z $tool ]] || { echo "$tool not found (install abigail-tools)" >&2; exit 1; }
[[ -f $lib ]] || { echo "no library at $lib; build it first" >&2; exit 1; }
has_debug_info "$lib" || { echo "$lib has no debug info; build with CMAKE_BUILD_TYPE=RelWithDebInfo" >&2; exit 1; }

dump_abi "$lib" "$baseline"
echo "wrote $baseline from $lib"
