#!/usr/bin/env bash
# Local Elasticsearch-compatible test server for tests/store_elastic.rs.
#
#   bash .ci/es-server.sh start DIR    # install (once) and start; prints the export line(s) to eval
#   bash .ci/es-server.sh stop DIR     # stop the server started with DIR
#
# Typical use:
#   eval "$(bash .ci/es-server.sh start target/es-test)"     # sets IMGVEC_TEST_ES_URL
#   cargo test --test store_elastic
#   bash .ci/es-server.sh stop target/es-test
#
# `start` prints only `export IMGVEC_TEST_ES_URL=http://127.0.0.1:PORT` on stdout (progress goes to
# stderr) and writes the same line to DIR/env, so `. DIR/env` works too. It is idempotent: if the
# server for DIR is already up it just prints the line again.
#
# The server is noida-db 0.2.3 (PyPI), which answers the Elasticsearch REST API as 8.15.3. It is
# installed into a virtualenv in DIR/venv (needs python3 with venv and pip, and PyPI), listens on
# 127.0.0.1 only, on a free port, keeps its data in DIR/data and logs to DIR/server.log.
# The tests are written to Elastic's documented API: point IMGVEC_TEST_ES_URL at a real
# Elasticsearch 8.12+/9.x instead and they run unchanged.
set -euo pipefail

NOIDA_VERSION="0.2.3"
WAIT_SECONDS="${ES_SERVER_WAIT_SECONDS:-90}"

die() {
    echo "es-server: $*" >&2
    exit 1
}

usage() {
    die "usage: $0 start DIR | stop DIR"
}

[ $# -eq 2 ] || usage
cmd="$1"
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
venv="$dir/venv"
pidfile="$dir/server.pid"
portfile="$dir/server.port"
log="$dir/server.log"
envfile="$dir/env"

# Is $1 a live process? (A zombie, left when nothing reaps it, counts as gone.)
alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null &&
        ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null
}

# Does the server at port $1 answer GET / like Elasticsearch? (python: curl may be missing)
answers() {
    "$venv/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2) as r:
    body = json.load(r)
assert r.status == 200 and "version" in body
PY
}

install() {
    if [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("noida-db"))' 2>/dev/null || true)" = "$NOIDA_VERSION" ]; then
        return
    fi
    echo "es-server: installing noida-db==$NOIDA_VERSION into $venv" >&2
    python3 -m venv "$venv" || die "python3 -m venv failed (is python3-venv installed?)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "noida-db==$NOIDA_VERSION" >&2 ||
        die "pip install noida-db==$NOIDA_VERSION failed"
}

# The server binary inside the package (the console script runs it as a child process, which a
# kill of the script would leave behind; running the binary itself keeps the pid file truthful).
server_binary() {
    "$venv/bin/python" -c '
import os
from importlib.resources import files
p = files("noida_db").joinpath("noida-db")
os.chmod(str(p), 0o755)
print(p)'
}

free_port() {
    "$venv/bin/python" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

print_env() {
    local line="export IMGVEC_TEST_ES_URL=http://127.0.0.1:$1"
    echo "$line" >"$envfile"
    echo "$line"
}

start() {
    if [ -f "$pidfile" ] && [ -f "$portfile" ] && alive "$(cat "$pidfile")" && answers "$(cat "$portfile")" 2>/dev/null; then
        echo "es-server: already running (pid $(cat "$pidfile"))" >&2
        print_env "$(cat "$portfile")"
        return
    fi
    install
    local bin
    bin="$(server_binary)" || die "noida-db binary not found in $venv"
    mkdir -p "$dir/data"

    # A port can be taken between picking and binding: try a few.
    local try port pid waited
    for try in 1 2 3; do
        port="$(free_port)"
        echo "es-server: starting on 127.0.0.1:$port (log: $log)" >&2
        : >"$log"
        nohup "$bin" start --only elasticsearch --host 127.0.0.1 \
            --elasticsearch-port "$port" --data-dir "$dir/data" >"$log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$pidfile"
        echo "$port" >"$portfile"
        waited=0
        while [ "$waited" -lt "$((WAIT_SECONDS * 2))" ]; do
            if ! alive "$pid"; then
                break
            fi
            if answers "$port"; then
                echo "es-server: up (pid $pid) after ~$((waited / 2)) s" >&2
                print_env "$port"
                return
            fi
            sleep 0.5
            waited=$((waited + 1))
        done
        if alive "$pid"; then
            kill "$pid" 2>/dev/null || true
            echo "es-server: no answer on 127.0.0.1:$port within ${WAIT_SECONDS}s; its log:" >&2
            tail -n 50 "$log" >&2 || true
            rm -f "$pidfile" "$portfile"
            die "server did not come up"
        fi
        echo "es-server: server exited (try $try); its log:" >&2
        tail -n 20 "$log" >&2 || true
    done
    rm -f "$pidfile" "$portfile"
    die "could not start the server; see $log"
}

stop() {
    if [ ! -f "$pidfile" ]; then
        echo "es-server: nothing to stop in $dir" >&2
        return
    fi
    local pid i
    pid="$(cat "$pidfile")"
    if alive "$pid"; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 40); do
            alive "$pid" || break
            sleep 0.25
        done
        if alive "$pid"; then
            echo "es-server: pid $pid ignored SIGTERM; killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
        fi
        echo "es-server: stopped (pid $pid)" >&2
    else
        echo "es-server: pid $pid was not running" >&2
    fi
    rm -f "$pidfile" "$portfile" "$envfile"
}

case "$cmd" in
start) start ;;
stop) stop ;;
*) usage ;;
esac
