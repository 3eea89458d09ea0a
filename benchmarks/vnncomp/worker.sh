#!/bin/bash
# Sourced by prepare_instance.sh and run_instance.sh: the warm worker's socket and starter.
# WORKER_SOCKET: one per user and checkout; VERIFIER_WORKER=off disables the worker.
ROOT="${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
PY="${VERIFIER_PYTHON:-$ROOT/.vnncomp-venv/bin/python}"
WORKER_DIR="${TMPDIR:-/tmp}/verifier-worker-$(id -u)-$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)"
WORKER_SOCKET="$WORKER_DIR/worker.sock"

worker_answers() {  # true when a worker accepts connections on the socket
    [ -S "$WORKER_SOCKET" ] && "$PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])' "$WORKER_SOCKET" 2>/dev/null
}

ensure_worker() {  # starts a worker unless one answers (verify worker --detach waits until it is ready)
    [ "${VERIFIER_WORKER:-on}" = "off" ] && return 1
    worker_answers && return 0
    [ -x "$PY" ] || return 1
    mkdir -p "$WORKER_DIR" && chmod 700 "$WORKER_DIR" || return 1
    (cd "$ROOT" && "$PY" -m verifier.cli worker "$WORKER_SOCKET" --detach > /dev/null)
}
