#!/usr/bin/env bash
# Runs the peer verifier NeuralSAT on one instance, on the CPU with one thread, and writes a
# VNN-COMP result file. Made to be a `verify bench` tool:
#
#   verify bench benchmarks/acasxu \
#       --tool neuralsat='bash benchmarks/peers/neuralsat.sh {onnx} {vnnlib} {timeout} {result}'
#
#   usage: neuralsat.sh MODEL.onnx PROPERTY.vnnlib TIMEOUT_SECONDS RESULT_FILE
#
# The result file's first line is sat, unsat, unknown, timeout or error; after sat comes
# NeuralSAT's counterexample as ((X_0 v) (X_1 v) ... (Y_0 v) ...), one pair a line (the Y values
# are onnxruntime's outputs at X, computed by NeuralSAT). NeuralSAT's other verdicts (restart,
# invalid_counterexample, early_stop) are written as unknown. No result file from NeuralSAT
# gives timeout when the hard limit below killed it, error otherwise.
#
# Timing: TIMEOUT counts from this script's start. NeuralSAT's own clock only starts after its
# imports (about 5 s of torch/onnx/gurobipy loading on a 2-core machine), so it is given the
# time left after those imports minus NEURALSAT_MARGIN seconds. It looks at its clock only
# between branching iterations, which on one thread can take 10 s and more on ACAS Xu, so it
# is also killed at TIMEOUT + NEURALSAT_HARD_EXTRA seconds (and timeout is written).
#
# Environment:
#   NEURALSAT_VENV        the venv made by benchmarks/peers/install_neuralsat.sh
#                         (default /work/neuralsat-venv)
#   NEURALSAT_THREADS     CPU threads (default 1: OMP/MKL/OpenBLAS and torch's intra- and
#                         inter-op pools); this overrides the OMP_NUM_THREADS `verify bench` sets
#   NEURALSAT_MARGIN      seconds kept back from NeuralSAT's own timeout (default 2)
#   NEURALSAT_HARD_EXTRA  seconds past TIMEOUT before NeuralSAT is killed (default 2: `verify
#                         bench` scores a verdict later than that as timeout anyway)
#   NEURALSAT_SEED        an integer: seeds Python's, NumPy's and torch's generators (default
#                         unset: NeuralSAT draws fresh attack seeds each run, so a sat instance
#                         that its random/PGD attack usually solves in seconds can time out)
#   NEURALSAT_EXTRA_ARGS  more options for NeuralSAT's main.py, split on spaces (no quoting),
#                         e.g. "--disable_restart" or "--setting_file /path/settings.json"
#
# torchvision: the PyPI torchvision wheels need the CUDA build of torch, so the venv has none;
# NeuralSAT imports it only for the ONNX NonMaxSuppression operator, so it runs here with a
# stand-in module that raises when used.
set -u

if [[ $# -ne 4 ]]; then
    echo "usage: $0 MODEL.onnx PROPERTY.vnnlib TIMEOUT_SECONDS RESULT_FILE" >&2
    exit 2
fi
START_NS=$(date +%s%N)
ONNX=$(realpath -- "$1")
VNNLIB=$(realpath -- "$2")
TIMEOUT=$3
RESULT=$(realpath -m -- "$4")

VENV="${NEURALSAT_VENV:-/work/neuralsat-venv}"
PY="$VENV/bin/python"
THREADS="${NEURALSAT_THREADS:-1}"
MARGIN="${NEURALSAT_MARGIN:-2}"
HARD_EXTRA="${NEURALSAT_HARD_EXTRA:-2}"

rm -f -- "$RESULT"
write_result() {  # atomically: the verdict line, then (optionally) a file with the witness
    local tmp="$RESULT.tmp.$$"
    {
        printf '%s\n' "$1"
        if [[ $# -ge 2 ]]; then cat -- "$2"; fi
    } >"$tmp" && mv -f -- "$tmp" "$RESULT"
}
fail() { echo "neuralsat.sh: $*" >&2; write_result error; exit 1; }

[[ -x "$PY" ]] || fail "no Python at $PY (set NEURALSAT_VENV, or run benchmarks/peers/install_neuralsat.sh)"
[[ -f "$ONNX" ]] || fail "no such model: $1"
[[ -f "$VNNLIB" ]] || fail "no such property: $2"
[[ "$TIMEOUT" =~ ^[0-9]+([.][0-9]+)?$ ]] || fail "timeout must be a number of seconds: $TIMEOUT"
SRC=$(ls -d "$VENV"/lib/python3.*/site-packages/src 2>/dev/null | head -n 1)
[[ -n "$SRC" && -f "$SRC/main.py" ]] || fail "NeuralSAT's src/main.py not found in $VENV"

export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS" OPENBLAS_NUM_THREADS="$THREADS" \
       NUMEXPR_NUM_THREADS="$THREADS" NEURALSAT_THREADS="$THREADS"
export CUDA_VISIBLE_DEVICES=""
# the deadline for NeuralSAT's verdict, in seconds since the epoch
export NEURALSAT_DEADLINE
NEURALSAT_DEADLINE=$(awk -v s="$START_NS" -v t="$TIMEOUT" -v m="$MARGIN" 'BEGIN { printf "%.3f", s / 1e9 + t - m }')
HARD=$(awk -v t="$TIMEOUT" -v e="$HARD_EXTRA" 'BEGIN { printf "%.3f", t + e }')

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/neuralsat.XXXXXX") || fail "cannot make a scratch folder"
trap 'rm -rf -- "$SCRATCH"' EXIT
RAW="$SCRATCH/neuralsat_result.txt"

# Launcher: stand-in torchvision, thread limits, NeuralSAT's imports, then its main.py with the
# time left. NeuralSAT's main.py starts its clock after its imports, which are loaded here first.
read -r -d '' LAUNCHER <<'PYEOF'
import importlib.machinery, os, runpy, sys, time, types

src, raw, onnx, vnnlib = sys.argv[1:5]
extra = sys.argv[5:]
tv = types.ModuleType("torchvision")
tv.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
def _no_torchvision(name):
    raise AttributeError(f"torchvision.{name}: torchvision is not installed (CPU torch); "
                         "NeuralSAT needs it only for ONNX NonMaxSuppression")
tv.__getattr__ = _no_torchvision
sys.modules["torchvision"] = tv
sys.path.insert(0, src)

import torch
threads = int(os.environ.get("NEURALSAT_THREADS", "1"))
torch.set_num_threads(threads)
try:
    torch.set_num_interop_threads(threads)
except RuntimeError:
    pass
# NeuralSAT's own imports (main.py's), so that its clock starts when they are done
import helper.network.read_onnx, helper.network.read_pth, helper.spec.objective  # noqa: E401,F401
import helper.misc.logger, helper.misc.export, helper.misc.result  # noqa: E401,F401
import verifier.verifier, setting  # noqa: E401,F401

seed = os.environ.get("NEURALSAT_SEED", "")
if seed:  # NeuralSAT draws its attack seeds from Python's global `random`
    import random, numpy
    random.seed(int(seed)); numpy.random.seed(int(seed)); torch.manual_seed(int(seed))
left = float(os.environ["NEURALSAT_DEADLINE"]) - time.time()
print(f"[neuralsat.sh] imports done; NeuralSAT gets --timeout {left:.2f}", file=sys.stderr, flush=True)
if left <= 0.5:
    with open(raw, "w") as fp:
        print("timeout", file=fp)
    sys.exit(0)
main = os.path.join(src, "main.py")
sys.argv = [main, "--net", onnx, "--spec", vnnlib, "--device", "cpu", "--timeout", f"{left:.3f}",
            "--result_file", raw, "--export_cex", "--verbosity", "1", *extra]
runpy.run_path(main, run_name="__main__")
PYEOF

# NEURALSAT_EXTRA_ARGS is split on spaces on purpose. PYTHONPATH is dropped: NeuralSAT has a
# package named `verifier` too, which ours would shadow (a run with PYTHONPATH set to a checkout
# of this repository failed on every instance with "No module named 'verifier.verifier'").
# shellcheck disable=SC2086
(cd "$SCRATCH" && timeout --foreground -k 5 "$HARD" \
    env -u PYTHONPATH "$PY" -c "$LAUNCHER" "$SRC" "$RAW" "$ONNX" "$VNNLIB" ${NEURALSAT_EXTRA_ARGS:-})
CODE=$?

if [[ ! -s "$RAW" ]]; then
    if [[ $CODE -eq 124 || $CODE -eq 137 ]]; then
        echo "neuralsat.sh: killed at the hard limit ($HARD s)" >&2
        write_result timeout
        exit 0
    fi
    fail "NeuralSAT wrote no result (exit code $CODE)"
fi

# NeuralSAT's file: "STATUS" (or "STATUS,RUNTIME"), then after sat the counterexample
VERDICT=$(head -n 1 -- "$RAW" | cut -d, -f1 | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')
case "$VERDICT" in
    sat)
        tail -n +2 -- "$RAW" >"$SCRATCH/witness"
        grep -q 'X_0' "$SCRATCH/witness" || echo "neuralsat.sh: sat without a counterexample" >&2
        write_result sat "$SCRATCH/witness" ;;
    unsat|unknown|timeout)
        write_result "$VERDICT" ;;
    restart|invalid_counterexample|early_stop)
        echo "neuralsat.sh: NeuralSAT said $VERDICT; written as unknown" >&2
        write_result unknown ;;
    *)
        fail "unreadable NeuralSAT verdict: $(head -c 80 -- "$RAW")" ;;
esac
exit 0
