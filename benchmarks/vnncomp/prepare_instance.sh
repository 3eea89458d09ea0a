#!/bin/bash
# VNN-COMP: prepare_instance.sh v1 CATEGORY ONNX_FILE VNNLIB_FILE
# Ends any verifier process left from an earlier instance and checks that the files exist.
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
exit 0
