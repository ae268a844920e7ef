#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and no network (the lent H100): unpack TVM carried in build/sf_cuda_gpu, then run
# the GPU tests, compile+verify the examples for CUDA on the GPU, and the CUDA kernel benchmark.
# Results go to $OUT (or ./build/gpu-results).
set -uo pipefail
OUT=${OUT:-build/gpu-results}
mkdir -p "$OUT"
bash build/sf_cuda_gpu/setup.sh
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 SPARSEFORGE_CACHE=/tmp/sfcache
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/codegen/test_cuda_gpu.py tests/codegen/test_cuda_build.py \
    "tests/driver/test_cross_targets.py::test_cuda_artifacts_hold_code_for_the_requested_arch" \
    "tests/driver/test_cross_targets.py::test_cuda_decisions_depend_on_batch" 2>&1 | tee "$OUT/pytest.log"
python3 -m sparseforge.codegen.cuda.bench --json > "$OUT/cuda_bench.json" 2> "$OUT/cuda_bench.err"
echo "bench exit $?"
