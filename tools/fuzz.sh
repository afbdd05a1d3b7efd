#!/usr/bin/env bash
# Runs every fuzz target of fundledger for a bounded time each (default
# 60 s), with cargo-fuzz (libFuzzer) on the stable toolchain.
#
#   tools/fuzz.sh [seconds-per-target] [target ...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). RUSTC_BOOTSTRAP=1
# lets stable rustc take the -Z flags of libFuzzer's instrumentation
# (sanitizer coverage, AddressSanitizer), so no nightly toolchain is needed.
# Each target reads the committed corpus (fuzz/corpus/<target>/, read-only
# here) and keeps what it finds new in fuzz/work/<target>/ (not committed).
# A crash leaves its input in fuzz/artifacts/<target>/: turn it into a
# regression (fuzz/regressions/<target>/, replayed by `cargo test --test
# fuzz_corpus`) after fixing it. Exits 1 when any target crashed.
# FUZZ_FLAGS adds flags to `cargo fuzz build` and `run`: CI uses
# `--dev --sanitizer none` (instrumented debug build, no AddressSanitizer:
# minutes less to build on a fresh machine; the code under test is safe
# Rust, so coverage guidance is what matters there).
# To refresh the committed corpus after a long run:
#   RUSTC_BOOTSTRAP=1 cargo fuzz cmin <target> fuzz/corpus/<target>
set -euo pipefail
seconds="${1:-60}"
shift || true
cd "$(dirname "$0")/.."
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(record_decode request_convert amount_parse command_path backup_decode)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "tools/fuzz.sh: cargo-fuzz is not installed: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
export RUSTC_BOOTSTRAP=1
read -r -a flags <<<"${FUZZ_FLAGS:-}"
cargo fuzz build "${flags[@]}"
failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/work/$target" "fuzz/corpus/$target"
  log="fuzz/work/$target.log"
  echo "== $target: ${seconds} s"
  if cargo fuzz run "${flags[@]}" "$target" "fuzz/work/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | tr '\n' ' '
    echo
  else
    echo "   CRASHED: see $log and fuzz/artifacts/$target/"
    grep -E 'panicked|ERROR|SUMMARY' "$log" | head -n 5 || true
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets that crashed: ${failed[*]}" >&2
  exit 1
fi
echo "every fuzz target ran ${seconds} s without a crash"
