#!/bin/bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE
# Ends any verifier run left from an earlier instance, checks that the files exist, and makes
# sure a warm worker serves run_instance.sh (started here when none answers: it imports the
# verifier once and forks each instance from it, so that run_instance.sh's time is the
# instance's and not the interpreter's start-up). VERIFIER_WORKER=off runs every instance cold.
set -uo pipefail
VERSION="${1:-}"; CATEGORY="${2:-}"; ONNX="${3:-}"; VNNLIB="${4:-}"
if [ "$VERSION" != "v1" ] || [ -z "$CATEGORY" ] || [ -z "$ONNX" ] || [ -z "$VNNLIB" ]; then
    echo "usage: prepare_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE" >&2
    exit 1
fi
pkill -KILL -u "$(id -u)" -f "[v]erifier.cli .*--out" 2>/dev/null || true
for f in "$ONNX" "$VNNLIB"; do
    if [ ! -f "$f" ] && [ ! -f "$f.gz" ]; then
        echo "prepare_instance.sh: missing file $f" >&2
        exit 1
    fi
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=worker.sh
source "$ROOT/benchmarks/vnncomp/worker.sh"
ensure_worker || echo "prepare_instance.sh: no warm worker; run_instance.sh will run cold" >&2
exit 0
