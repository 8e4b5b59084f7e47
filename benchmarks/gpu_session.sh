#!/usr/bin/env bash
# The one prepared GPU run (issues 4 and 9): CUDA tests, the engine check, and `vsr bench` for AdcSR
# at full width with synthetic weights, official-style baseline in the same run. About 10 minutes on
# an H100/H200 (compile is most of it); pass --no-compile to gpu_check.py to save time.
# Usage on the device machine: bash benchmarks/gpu_session.sh "$OUT"
set -uo pipefail
out="${1:-gpu_results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -m pytest -m cuda tests/test_engine.py -q 2>&1 | tee "$out/cuda_tests.txt"
timeout 420 python benchmarks/gpu_check.py --json "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.txt"
timeout 300 python -m vsr bench --model adcsr --device cuda --precision fp16 --batch 32 2>&1 | tee "$out/bench_adcsr.txt"
