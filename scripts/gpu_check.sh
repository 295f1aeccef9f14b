#!/usr/bin/env bash
# GPU figures for results/bench_gpu.md, in under 10 minutes on one CUDA GPU: every method's step
# at the papers' size (RRDBNet 64x23, LR 32 px, batch 16) in fp32, bf16, bf16+channels_last and
# bf16+channels_last+compile; step ratios, TFLOP/s, MFU against the GPU's bf16 peak, peak memory,
# the BasicSR peer ratio and a 1-GPU NCCL data-parallel run. Extra arguments go to the Python
# entry (python -m robustsr_bench.gpu_check --help), e.g. --peak-tflops 989 or --dry-run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to torch; run it on a GPU machine" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 590 python -m robustsr_bench.gpu_check --device cuda --out results "$@"
