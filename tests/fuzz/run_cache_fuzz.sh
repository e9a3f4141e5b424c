#!/bin/sh
# Build the prefix cache fuzz harness with libFuzzer + ASan + UBSan and run it for a bounded time.
#   tests/fuzz/run_cache_fuzz.sh [seconds] [build dir]      (defaults: 60, build-fuzz)
# Exit status: 0 when no crash was found, libFuzzer's nonzero status otherwise (the crashing input is left in the
# build dir as crash-*). Needs clang with libFuzzer.
set -eu
seconds=${1:-60}
build=${2:-build-fuzz}
root=$(cd "$(dirname "$0")/../.." && pwd)
cc=${CC_FUZZ:-clang}
mkdir -p "$build/corpus"
"$cc" -std=c11 -g -O1 -Wall -Wextra -Werror -pedantic -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$root" "$root"/cache/*.c "$root/tests/fuzz/fuzz_cache.c" -o "$build/fuzz_cache"
cd "$build"
exec ./fuzz_cache -max_total_time="$seconds" -max_len=4096 -timeout=10 -print_final_stats=1 corpus
