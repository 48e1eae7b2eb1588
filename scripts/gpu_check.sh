#!/usr/bin/env bash
# The GPU checks in one call, for a session that is lent a CUDA device (sized to finish in well under
# 8 minutes on an H200). Run from anywhere:  bash scripts/gpu_check.sh  [results folder, default $OUT
# or gpu_check]. It installs landbench without touching the CUDA build of torch already there, then:
#   1. the tests that need a GPU (they skip on a CPU machine), and the engine tests with CUDA visible;
#   2. landbench bench --device cuda --quick --json (and on the CPU of the same machine), and the
#      figure of BENCHMARKS.md from both;
#   3. the smoke suite on the CPU and on the GPU, and their records compared run by run.
# Every step writes its output to the results folder; a step that fails does not stop the others,
# and the script's exit status says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-${OUT:-gpu_check}}
mkdir -p "$OUT_DIR"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep its output, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "== $name" | tee -a "$OUT_DIR/summary.txt"
    local started=$SECONDS
    if timeout "$limit" "$@" > "$OUT_DIR/$name.txt" 2>&1; then
        echo "   ok in $((SECONDS - started)) s" | tee -a "$OUT_DIR/summary.txt"
    else
        echo "   FAILED (status $?) in $((SECONDS - started)) s: tail of $name.txt:" | tee -a "$OUT_DIR/summary.txt"
        tail -n 15 "$OUT_DIR/$name.txt" | tee -a "$OUT_DIR/summary.txt"
        status=1
    fi
}

python -m pip install --no-deps -q -e . > "$OUT_DIR/install.txt" 2>&1 || python -m pip install --no-deps -e .
nvidia-smi > "$OUT_DIR/nvidia-smi.txt" 2>&1
step device 60 python -c "import torch, landbench; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), landbench.__version__)"
step tests_cuda 180 python -m pytest -q -p no:cacheprovider -m "not slow" -k "cuda or gpu or device" tests
step tests_engine 150 python -m pytest -q -p no:cacheprovider tests/test_engine.py tests/test_independence.py tests/test_landscapes.py
step bench_cuda 150 bash -c "python -m landbench.cli bench --device cuda --quick --json > '$OUT_DIR/bench_cuda.json'"
step bench_cpu 90 bash -c "python -m landbench.cli bench --device cpu --quick --json > '$OUT_DIR/bench_cpu.json'"
step figure 30 python scripts/bench_figure.py "$OUT_DIR/bench_cpu.json" "$OUT_DIR/bench_cuda.json" -o "$OUT_DIR/bench_throughput.png"
step smoke_cpu 90 python -m landbench.cli run smoke --device cpu --out "$OUT_DIR/smoke_cpu" --no-progress
step smoke_cuda 90 python -m landbench.cli run smoke --device cuda --out "$OUT_DIR/smoke_cuda" --no-progress
step compare 120 python scripts/compare_devices.py "$OUT_DIR/smoke_cpu" "$OUT_DIR/smoke_cuda"
exit $status
