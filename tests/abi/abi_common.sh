# Sourced by check_abi.sh and update_baseline.sh: how the ABI of liblinattn.so is written down.

abi_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$abi_dir/../.." && pwd)
baseline="$abi_dir/liblinattn.abi"

missing_abi_tool() {
    local tool
    for tool in abidw abidiff; do
        command -v "$tool" >/dev/null || { echo "$tool"; return; }
    done
}

has_debug_info() {
    readelf -S --wide "$1" | grep -q '\.debug_info'
}

# Only types declared under abi/ count; paths, locations and DT_NEEDED entries are left out so the dump does not
# depend on where, or with which CUDA runtime, the library was built.
dump_abi() {
    abidw --headers-dir "$repo_root/abi" --drop-private-types --drop-undefined-syms \
          --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed --exported-interfaces-only \
          --out-file "$2" "$1"
}
