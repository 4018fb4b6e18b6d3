#!/usr/bin/env bash
# The GPU checks, in one run for a machine with a CUDA device (the device tool's `run`:
# command "bash benchmarks/gpu_check.sh", timeout_s 540): every CUDA test and the graphed
# engine's tests, then `bench speed` of the graphed engine and torch's kernels on CUDA.
# Writes to $OUT (default benchmarks/results): cuda-tests.log, speed-cuda.json, speed-cuda.log.
set -uo pipefail
OUT=${OUT:-benchmarks/results}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" || exit 1
timeout 200 python3 -m pytest -q -p no:cacheprovider -k "cuda or graphed" \
    tests/test_fused.py tests/test_engines.py tests/test_graphed.py tests/test_precision.py tests/test_device.py \
    2>&1 | tee "$OUT/cuda-tests.log"
timeout 300 python3 -m unrolled bench speed --device cuda --repeats 5 \
    --size 64,100,512,512 --size 256,200,1024,1024 --size 1,200,128,128 \
    --only /graphed /native --json "$OUT/speed-cuda.json" 2>&1 | tee "$OUT/speed-cuda.log"
