#!/usr/bin/env bash
# One prepared check for a CUDA machine (issue: scale). Prints the card, then:
#  1. the CUDA tests of the suite (AMP bf16/fp16/fp32 training, CPU-loadable checkpoints);
#  2. training throughput on CUDA (bf16, then fp32) against the CPU, same model/data/batch;
#  3. the distributed path: torchrun with NCCL on the GPUs there are (1 is enough to run it).
# Usage (from the repository root, with orthocli installed): bash benchmarks/gpu_check.sh
set -euo pipefail
export PYTHONUNBUFFERED=1 NO_COLOR=1
python - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "devices", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(" ", i, torch.cuda.get_device_name(i), "bf16" if torch.cuda.is_bf16_supported() else "no bf16")
PY
python -m pytest -q -p no:warnings tests/training/test_runtime.py tests/training/test_distributed.py
python benchmarks/train_speed.py --device-compare --epochs 5 --repeats 2
out=$(mktemp -d)
torchrun --nproc_per_node "$(python -c 'import torch; print(max(1, torch.cuda.device_count()))')" -m orthocli train \
  --arch resnet20 --width 16 --s1 2 --s2 1 --cycles 2 --max-epochs 8 --device cuda --json -o "$out/ddp.pt" \
  | python -c 'import json,sys; d=json.load(sys.stdin); print("torchrun/nccl:", d["runtime"], "test acc", d.get("test_accuracy"))'
