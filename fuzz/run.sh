#!/usr/bin/env bash
# Builds a fuzz target with libFuzzer's coverage instrumentation on the project's pinned stable
# toolchain — the flags cargo-fuzz passes, less its sanitizer, which needs nightly — and runs it
# for a number of seconds on its corpus. Crashes land in fuzz/artifacts/.
#
# Usage: fuzz/run.sh page_heap|api_shadow [SECONDS] [more libFuzzer flags...]
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh page_heap|api_shadow [SECONDS] [libFuzzer flags...]}
seconds=${2:-60}
shift $(($# >= 2 ? 2 : 1))
triple=$(rustc -vV | sed -n 's/^host: //p')
# Coverage counters, comparison tracing and `--cfg fuzzing` as cargo-fuzz sets them; debug
# assertions and overflow checks on, as cargo-fuzz's default. `--target` keeps the flags off
# the build scripts.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --target "$triple" --target-dir target/libfuzzer --bin "$target"
mkdir -p "corpus/$target" artifacts
exec "target/libfuzzer/$triple/release/$target" -max_total_time="$seconds" -rss_limit_mb=4096 \
    -max_len=4096 -artifact_prefix="artifacts/$target-" "$@" "corpus/$target"
