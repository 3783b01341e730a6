#!/usr/bin/env bash
# The checks a session with a lent GPU runs, as one bounded script (device tool: `run` with
# `carry: [".whl"]` and `bash benchmarks/gpu_check.sh`). Results go to $OUT (default
# /tmp/hpo-gpu-check): env.txt, trainer_gpu.json/.err, hpo_run.log, status.txt.
#
# The device image has torch but not Optuna or pydantic: carry their wheels in .whl/ (see the
# device README) and they are installed under /tmp/site first.
#   1. benchmarks/trainer_gpu.py --auto-batch: TF32 / bf16 / fp16 / bf16 + auto batch, images/s
#      and peak memory, ResNet-18 at 32 px and ResNet-50 at 224 px;
#   2. `hpo run benchmarks/data/gpu_smoke.yaml`: the worker pinned to the GPU end to end;
#   3. with two GPUs or more, `hpo run benchmarks/data/gpu_smoke_ddp.yaml`: two GPUs per trial
#      (NCCL), to hpo_run_ddp.log.
set -u
OUT=${OUT:-/tmp/hpo-gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    python3 -c 'import torch, torchvision, optuna, pydantic, sqlalchemy
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("torchvision", torchvision.__version__, "optuna", optuna.__version__,
      "pydantic", pydantic.__version__, "sqlalchemy", sqlalchemy.__version__)
print("device", torch.cuda.get_device_name(), "bf16", torch.cuda.is_bf16_supported())'
    nproc
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== trainer_gpu"
start=$(date +%s)
timeout "${TRAINER_TIMEOUT:-270}" python3 benchmarks/trainer_gpu.py --epochs 3 --auto-batch \
    >"$OUT/trainer_gpu.json" 2>"$OUT/trainer_gpu.err"
echo "trainer_gpu rc=$? in $(($(date +%s) - start)) s"
tail -n 1 "$OUT/trainer_gpu.json"
tail -n 15 "$OUT/trainer_gpu.err"

echo "== hpo run on the GPU"
work=$(mktemp -d)
start=$(date +%s)
(cd "$work" && timeout "${RUN_TIMEOUT:-150}" python3 -m hpo run \
    "$OLDPWD/benchmarks/data/gpu_smoke.yaml" --device cuda) >"$OUT/hpo_run.log" 2>&1
echo "hpo run rc=$? in $(($(date +%s) - start)) s"
tail -n 25 "$OUT/hpo_run.log"
tail -n 30 "$work"/hpo-logs/*.log 2>/dev/null | tail -n 40
(cd "$work" && python3 -m hpo status "$OLDPWD/benchmarks/data/gpu_smoke.yaml") >"$OUT/status.txt" 2>&1
cat "$OUT/status.txt"
cp "$work"/hpo-logs/*-w0.log "$OUT/worker0.log" 2>/dev/null

echo "== hpo run, two GPUs per trial"
if (($(nvidia-smi -L | wc -l) >= 2)); then
    start=$(date +%s)
    (cd "$work" && timeout "${RUN_TIMEOUT:-150}" python3 -m hpo run \
        "$OLDPWD/benchmarks/data/gpu_smoke_ddp.yaml" --device cuda) >"$OUT/hpo_run_ddp.log" 2>&1
    echo "hpo run (ddp) rc=$? in $(($(date +%s) - start)) s"
    tail -n 15 "$OUT/hpo_run_ddp.log"
    tail -n 20 "$work"/hpo-logs/*.log 2>/dev/null | tail -n 30
else
    echo "skipped: one GPU (gpus_per_trial: 2 needs two)"
fi
exit 0
