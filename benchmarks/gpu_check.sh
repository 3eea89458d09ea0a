#!/usr/bin/env bash
# The CUDA path's check and GPU timings, as one short run on a machine with an NVIDIA GPU.
#
#   python benchmarks/gpu_subset.py                 # here: copies the instances into .gpu/bench
#   bash benchmarks/gpu_check.sh [SUBSET] [OUT]     # there, in the repository root
#
# SUBSET (default .gpu/bench) is the tree gpu_subset.py writes; OUT (default $OUT, else gpu-out)
# receives the log (parts.log) and tables. The machine's own python3 with a CUDA build of torch runs the
# repository in place (PYTHONPATH; nothing is installed); wheels in .gpu/wheels (pulp, highspy, for
# the exact engine's MILP leaves) are unpacked into .gpu/site when present. Parts, each under its
# own time limit so that one failure leaves the others' results:
#   1. the ops' CUDA-against-CPU tests (tests/ops/test_structural_ops.py -k cuda);
#   2. the 5-input generator's output bounds on the GPU (benchmarks/bench_generator_bounds.py --full);
#   3. `verify bench` over SUBSET with --device cuda, one fresh process per instance, answers
#      checked against expected.csv;
#   4. ReLU-split throughput on the GPU at two batch sizes (benchmarks/bench_relu_throughput.py).
set -u
SUBSET=${1:-.gpu/bench}
OUT=${2:-${OUT:-gpu-out}}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu tries the script's plumbing on a machine without a GPU
PARTS=${PARTS:-pytest_cuda generator_bounds verify_bench relu_throughput}  # a subset: PARTS='verify_bench'
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if compgen -G ".gpu/wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-deps --target .gpu/site .gpu/wheels/*.whl && export PYTHONPATH=$PYTHONPATH:$PWD/.gpu/site
fi
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import platform, torch; print("python", platform.python_version(), "torch", torch.__version__,
"cuda", torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "")'
    nproc
} 2>&1 | tee "$OUT/parts.log"
part() {  # part NAME SECONDS COMMAND...: runs COMMAND under a limit, its output appended to $OUT/parts.log
    local name=$1 limit=$2
    shift 2
    [[ " $PARTS " == *" $name "* ]] || return 0
    local start=$SECONDS
    echo "== $name" >> "$OUT/parts.log"
    timeout "$limit" "$@" >> "$OUT/parts.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s" | tee -a "$OUT/parts.log"
}
part pytest_cuda 120 python3 -m pytest -q -p no:cacheprovider tests/ops/test_structural_ops.py -k cuda
part generator_bounds 150 python3 benchmarks/bench_generator_bounds.py --device $DEVICE --full --budgets 2 \
    --out "$OUT/generator_bounds_gpu.md"
part verify_bench 420 python3 -m verifier.cli bench "$SUBSET" --cold --quiet --jobs 1 --threads 1 \
    --verifier-options "--device $DEVICE" --results "$OUT/gpu_subset_verifier.csv"
part relu_throughput 130 python3 benchmarks/bench_relu_throughput.py --root "$SUBSET" --device $DEVICE --timeout 12 \
    --batch 64 1024 --out "$OUT/relu_throughput_gpu.md"
