#!/usr/bin/env bash
# Profiles of the hot paths (issue 5: measure first, then optimise).
#
#   tools/profile.sh instructions [COMMANDS]  instruction counts per phase
#       (valgrind --tool=callgrind on examples/instructions.rs, default
#       100,000 workload commands): the same build gives the same counts on
#       a busy machine, so two builds compare from one run each.
#   tools/profile.sh flame [LOADGEN ARGS...]  a flame graph of the load
#       generator (perf record --call-graph dwarf, folded with inferno):
#       target/profile/flame.svg; e.g. `tools/profile.sh flame --only writer`.
#
# Needs valgrind (instructions) or perf (flame); installs inferno with cargo
# if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
out=$target/profile
mkdir -p "$out"
mode=${1:-}
shift || true

case "$mode" in
instructions)
    command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
    commands=${1:-100000}
    cargo build --release --locked --quiet --example instructions
    rm -f "$out"/callgrind.out*
    # One dump after each phase (the functions by their exact names, so that
    # no closure inside one dumps too): each file holds what every thread
    # executed since the one before; the last, what followed.
    phases=(workload_steps decide_and_fold encode_and_hash checkpoint_encode checkpoint_decode)
    dumps=()
    for phase in "${phases[@]}"; do dumps+=("--dump-after=instructions::$phase"); done
    if ! units=$(valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" "${dumps[@]}" \
        "$target/release/examples/instructions" "$commands" 2>"$out/callgrind.log"); then
        cat "$out/callgrind.log" >&2
        echo "the instruction count run failed (its log is above)" >&2
        exit 1
    fi
    read -r _ cmds _ events _ apps _ bytes <<<"$units"
    for n in 1 2 3 4 5; do
        [ -s "$out/callgrind.out.$n" ] || { echo "callgrind wrote no dump after phase $n" >&2; exit 1; }
    done
    [ ! -e "$out/callgrind.out.6" ] || { echo "callgrind dumped more often than once per phase" >&2; exit 1; }
    [ "${apps:-0}" -gt 0 ] || { echo "unexpected output of the example: $units" >&2; exit 1; }
    total() { sed -n 's/^totals: //p' "$out/callgrind.out.$1"; }
    # Rounded to the nearest instruction.
    per() { echo $(( ($1 + $2 / 2) / $2 )); }
    echo "instructions per unit ($cmds commands, $events events, $apps applications, checkpoint $bytes bytes; callgrind, $(valgrind --version))"
    echo
    echo "| phase | instructions | per |"
    echo "|---|---:|---|"
    printf '| decide and fold | %s | %s per command |\n' "$(total 2)" "$(per "$(total 2)" "$cmds")"
    printf '| encode and hash (portable SHA-256) | %s | %s per event |\n' "$(total 3)" "$(per "$(total 3)" "$events")"
    printf '| checkpoint encode | %s | %s per application |\n' "$(total 4)" "$(per "$(total 4)" "$apps")"
    printf '| checkpoint decode | %s | %s per application |\n' "$(total 5)" "$(per "$(total 5)" "$apps")"
    echo
    echo "callgrind_annotate $out/callgrind.out.2 (and .3, .4, .5) shows where each phase's instructions go."
    ;;
flame)
    command -v perf >/dev/null || { echo "needs perf (linux-perf)" >&2; exit 1; }
    export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    command -v inferno-flamegraph >/dev/null || cargo install inferno --version 0.12.8 --locked --quiet
    cargo build --release --locked --quiet --example loadgen
    perf record -F 499 --call-graph dwarf,32768 -o "$out/perf.data" -- "$target/release/examples/loadgen" "$@" >"$out/loadgen.md"
    perf script -i "$out/perf.data" | inferno-collapse-perf >"$out/stacks.folded"
    inferno-flamegraph --title "loadgen $*" <"$out/stacks.folded" >"$out/flame.svg"
    echo "$out/flame.svg (the run's report: $out/loadgen.md)"
    ;;
*)
    sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
