#!/usr/bin/env bash
# Runs tools/reflection_client.py, a Python client that knows the API only
# through server reflection, against a fresh fundledger server:
#
#   FUNDLEDGER_BIN=target/release/fundledger bash tools/reflection_client.sh
#
# It installs the pinned Python packages into a virtualenv under
# ${TMPDIR:-/tmp} (reused while the pins and the Python are the same),
# creates a ledger in a temporary data dir with `fundledger init` (the admin
# token is the last line it prints), starts `fundledger serve` on a free
# loopback port, waits until it accepts connections, runs the client with
# the admin token in FUNDLEDGER_TOKEN (the environment, not the command
# line, so that it never shows in a process list), stops the server with
# SIGTERM and checks that it exits 0. The exit code is the client's (or
# non-zero if the server failed). The server and the data dir are removed
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${FUNDLEDGER_BIN:-target/debug/fundledger}
python=${PYTHON:-python3.11}
requirements=tools/reflection_client.requirements.txt
tmp_root=${TMPDIR:-/tmp}

say() { echo "reflection_client.sh: $*"; }
die() { echo "reflection_client.sh: $*" >&2; exit 2; }

[[ -x $bin ]] || die "no server binary at $bin (cargo build, or set FUNDLEDGER_BIN)"
command -v "$python" >/dev/null || die "no $python (set PYTHON to a Python 3.11 interpreter)"

# ---- the virtualenv, keyed by the pins and the interpreter
key=$( { cat "$requirements"; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -c1-16)
venv="$tmp_root/fundledger-reflection-client-$key"
exec {venv_lock}>"$venv.lock"
flock "$venv_lock"   # one install at a time; later runs reuse it
if [[ ! -f $venv/.installed ]]; then
    say "installing $(grep -v '^#' "$requirements" | xargs) into $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: -r "$requirements"
    touch "$venv/.installed"
fi
exec {venv_lock}>&-

# ---- a server on a fresh data dir, cleaned up whatever happens
work=$(mktemp -d "$tmp_root/fundledger-reflection-client.XXXXXX")
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- a new ledger and its admin token, shown once
"$bin" init --data-dir "$work/data" >"$work/init.out" 2>"$work/init.err" \
    || { cat "$work/init.err" >&2; die "fundledger init failed"; }
admin_token=$(tail -n 1 "$work/init.out")
[[ $admin_token == flt_* ]] || die "the last line of fundledger init is not a token (flt_…)"
rm -f "$work/init.out"   # the token lives on only in this shell
say "initialised a ledger in $work/data; admin token taken from init's last line"

free_port() {
    "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
accepts() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

port=
for attempt in 1 2 3; do
    candidate=$(free_port)
    RUST_LOG=info "$bin" serve --data-dir "$work/data" --listen "127.0.0.1:$candidate" >"$work/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 200); do   # up to 20 s
        if accepts "$candidate"; then port=$candidate; break; fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    [[ -n $port ]] && break
    # The port was taken in between, or the server failed: say why, retry
    # (on the same ledger: it holds the admin).
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
    say "server did not come up on port $candidate (attempt $attempt):"
    tail -n 5 "$work/server.log" >&2 || true
done
[[ -n $port ]] || die "could not start $bin serve"
say "server $bin (pid $server_pid) on 127.0.0.1:$port, data in $work/data"

# ---- the client
client_rc=0
FUNDLEDGER_TOKEN=$admin_token timeout 300 "$venv/bin/python" tools/reflection_client.py --server "127.0.0.1:$port" \
    || client_rc=$?

# ---- stop the server: SIGTERM, and it must exit 0
kill -TERM "$server_pid"
server_rc=0
wait "$server_pid" || server_rc=$?
server_pid=
if [[ $server_rc -ne 0 ]]; then
    say "the server exited $server_rc after SIGTERM; its last log lines:" >&2
    tail -n 20 "$work/server.log" >&2 || true
    [[ $client_rc -ne 0 ]] || client_rc=1
elif [[ $client_rc -ne 0 ]]; then
    say "the client failed (exit $client_rc); the server's last log lines:" >&2
    tail -n 10 "$work/server.log" >&2 || true
else
    say "server stopped cleanly on SIGTERM"
fi
exit "$client_rc"
