#!/usr/bin/env bash
# The first command on any CUDA machine (at most 8 minutes): the tests that need CUDA (marked
# `cuda`), then the training throughput of the VAE, DCGAN and 32 px ResNet GAN recipes in fp32 and bf16 on one GPU,
# and one run on 2 processes (torchrun) where there are 2 GPUs. Writes benchmarks/results/*-cuda.json
# and the test report to benchmarks/results/gpu_check-cuda.txt. On a machine without CUDA it
# says so in one line and exits 0.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check"
    exit 0
fi
export GENMODELS_DATA="${GENMODELS_DATA:-$(cd .. && pwd)/shared/datasets}"
export PYTHONUNBUFFERED=1
out=benchmarks/results
status=0
"$PY" -c 'import torch; print(f"gpu_check: torch {torch.__version__}, {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}")'
timeout 180 "$PY" -m pytest -q -m cuda tests 2>&1 | tee "$out/gpu_check-cuda.txt" || status=1
timeout 240 "$PY" benchmarks/device_throughput.py --device cuda --images 20000 --rounds 2 || status=1
gpus=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "$gpus" -ge 2 ]; then
    start=$(date +%s.%N)
    timeout 90 "$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m genmodels train \
        experiments/vae_mnist.yaml --quiet --name gpu-check-ddp --runs-dir "$(mktemp -d)" \
        --set train.epochs=3 train.patience=null train.device=cuda || status=1
    echo "{\"vae_3_epochs_2_processes_seconds\": $(echo "$(date +%s.%N) - $start" | bc)}" > "$out/torchrun-cuda.json"
fi
exit $status
