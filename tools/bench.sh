#!/usr/bin/env bash
# Reproduces every figure of docs/BENCHMARKS.md on this machine, in one run:
#
#   tools/bench.sh [DIR]
#
# 1. the load generator's full run (about 2 minutes): the in-process writer,
#    raw sled (the storage limit), scan and replay, restart, disk, the gRPC
#    curve against a trivial call, the batch call, and PostgreSQL 15 (a
#    throw-away cluster the program starts and removes);
# 2. the 10-million-event ledger: built in DIR (default
#    /var/tmp/fundledger-10m; about 13 GB of disk and up to 13 GB of
#    memory, 15 to 20 minutes; reused when it is already there), then a
#    restart to serving measured from its checkpoint and by full replay;
# 3. the criterion benches of the hot paths (`cargo bench --bench ledger`);
# 4. the hot paths' instruction counts (`tools/profile.sh instructions`,
#    when valgrind is installed).
#
# Reports go to target/bench/. Close other work first: the machine's cores
# are part of what is measured, and only ratios within one run compare.
set -euo pipefail
cd "$(dirname "$0")/.."
big="${1:-/var/tmp/fundledger-10m}"
target=${CARGO_TARGET_DIR:-target}
out=$target/bench
mkdir -p "$out"
cargo build --release --locked --example loadgen
"$target/release/examples/loadgen" --out "$out/loadgen.md"
"$target/release/examples/loadgen" --restart-events 10000000 --data-dir "$big" --out "$out/restart-10m.md"
cargo bench --locked --bench ledger 2>&1 | tee "$out/criterion.txt"
if command -v valgrind >/dev/null; then
    tools/profile.sh instructions | tee "$out/instructions.md"
else
    echo "no valgrind: instruction counts skipped" | tee "$out/instructions.md"
fi
echo "reports: $out/loadgen.md $out/restart-10m.md $out/criterion.txt $out/instructions.md"
