#!/bin/sh
# Usage: check_exports.sh path/to/liblinattn.so
# The plugin's dynamic symbol table must define exactly one symbol, linattn_get_api (backend/linattn.map).
set -eu
lib=${1:?usage: check_exports.sh path/to/liblinattn.so}

symbols=$(nm -D --defined-only "$lib" | awk '{ print $NF }')
if [ "$symbols" != "linattn_get_api" ]; then
    echo "expected exactly one exported symbol, linattn_get_api; $lib defines:" >&2
    nm -D --defined-only "$lib" >&2
    exit 1
fi
if ! nm -D --defined-only "$lib" | grep -Eq '^[0-9a-f]+ T linattn_get_api$'; then
    echo "linattn_get_api is not an exported function in $lib:" >&2
    nm -D --defined-only "$lib" >&2
    exit 1
fi
echo "ok: $lib exports only linattn_get_api"
