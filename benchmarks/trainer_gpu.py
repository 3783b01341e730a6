"""GPU precision modes through hpo's trainer: images/s and peak memory, TF32 vs bf16 vs fp16.

Cases: ResNet-18 at 32 px (CIFAR stem) and ResNet-50 at 224 px, on the `fake` dataset, whose
tensors the trainer moves to the GPU once (no DataLoader): the numbers measure the training
step, not input decoding. Each mode runs ``--epochs`` epochs; images/s is the last epoch's
(the first one pays for cuDNN autotuning), peak memory is ``torch.cuda.max_memory_allocated``.

- tf32: fp32 weights and activations, TF32 tensor-core matmuls and convolutions;
- bf16: autocast to bfloat16, no gradient scaler;
- fp16: autocast to float16 with a GradScaler.

TF32 stays on in the AMP modes too (for the ops autocast leaves in fp32), as in practice.
``peak_memory_mb`` includes the data set itself (``data_mb``), which lives on the GPU.

    python benchmarks/trainer_gpu.py [--epochs 3] [--cases resnet18_32,resnet50_224]
    python benchmarks/trainer_gpu.py --smoke      # tiny shapes on the CPU: checks the code only
    python benchmarks/trainer_gpu.py --auto-batch # also bf16 with ``batch_size: auto``

``--ddp`` adds ``ddp2``: the first case in bf16 as one data-parallel trial over 2 GPUs (NCCL,
the same global batch, each GPU half of it), ``images_per_s_per_gpu`` beside 1 GPU's bf16
figure (``scaling``: per-GPU rate over the 1-GPU rate); skipped with a message below 2 GPUs
(``--smoke``: 2 CPU processes on gloo).

``--auto-batch`` adds a mode ``bf16_auto``: bf16 with the largest micro-batch that fits
(``batch_size`` is the one chosen, ``setup_s`` the time from ``fit`` to the first epoch, which
holds the search).

Prints one JSON object, then a one-line summary. Exits with status 2 and a message without GPU.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

import torch

from hpo.trainer import Group, TrainConfig, fit


@dataclass(frozen=True)
class Case:
    model: str
    image_size: int
    batch_size: int
    samples: int  # fake set size; 80% train


CASES = {
    "resnet18_32": Case("resnet18", 32, 256, 12_800),
    "resnet50_224": Case("resnet50", 224, 128, 2_560),
}
SMOKE = {"resnet18_32": Case("resnet18", 16, 8, 40), "resnet50_224": Case("resnet50", 32, 4, 20)}
MODES = ("tf32", "bf16", "fp16")


def _enable_tf32() -> None:
    torch.backends.cuda.matmul.fp32_precision = "tf32"  # type: ignore[attr-defined]
    torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]


def _config(case: Case, mode: str, epochs: int) -> TrainConfig:
    auto = mode.endswith("_auto")
    mode = mode.removesuffix("_auto")
    return TrainConfig(
        model=case.model,
        dataset="fake",
        fake_samples=case.samples,
        image_size=case.image_size,
        num_classes=100,
        epochs=epochs,
        batch_size="auto" if auto else case.batch_size,
        lr=0.05,
        amp=mode != "tf32",
        amp_dtype="fp16" if mode == "fp16" else "bf16",
        cache="gpu",
        num_workers=0,
    )


def run_mode(
    case: Case, mode: str, epochs: int, device: torch.device, group: Group | None = None
) -> dict[str, float]:
    """Train ``case`` in ``mode``; the last epoch's images/s and the run's peak memory."""
    config = _config(case, mode, epochs)
    seen: list[dict[str, float]] = []
    started = time.perf_counter()
    result = fit(config, device, lambda epoch, metrics: seen.append(metrics), group=group)
    setup_s = time.perf_counter() - started - result.seconds
    if device.type == "cuda":
        torch.cuda.empty_cache()
    data_mb = case.samples * 3 * case.image_size**2 * 4 / 2**20
    return {
        "images_per_s": round(seen[-1]["samples_per_second"], 1),
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "data_mb": round(data_mb, 1),
        "train_loss": round(seen[-1]["train_loss"], 4),
        "batch_size": result.batch_size,
        "setup_s": round(setup_s, 2),
    }


def _ddp_rank(rank: int, port: int, case: Case, epochs: int, cuda: bool, out: mp.Queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        _enable_tf32()
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=2, timeout=timedelta(seconds=120))
    try:
        result = run_mode(case, "bf16", epochs, device, Group(rank, 2))
        if rank == 0:
            out.put(result)
    finally:
        dist.destroy_process_group()


def run_ddp(case: Case, epochs: int, cuda: bool, single: dict[str, float]) -> dict[str, float]:
    """``case`` in bf16 as one trial over 2 processes; images/s per GPU against one GPU's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    procs = [
        ctx.Process(target=_ddp_rank, args=(r, port, case, epochs, cuda, out)) for r in range(2)
    ]
    for p in procs:
        p.start()
    result = out.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    per_gpu = result["images_per_s"] / 2
    return {
        **result,
        "images_per_s_per_gpu": round(per_gpu, 1),
        "single_gpu_images_per_s": single["images_per_s"],
        "scaling": round(per_gpu / single["images_per_s"], 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument(
        "--auto-batch", action="store_true", help="also bf16 with batch_size: auto (bf16_auto)"
    )
    parser.add_argument("--ddp", action="store_true", help="also bf16 over 2 GPUs (ddp2)")
    args = parser.parse_args()
    if args.smoke:
        device, cases, epochs = torch.device("cpu"), SMOKE, 1
    elif not torch.cuda.is_available():
        print("trainer_gpu: no CUDA GPU visible; this benchmark needs one (--smoke: CPU check)")
        return 2
    else:
        device, cases, epochs = torch.device("cuda"), CASES, args.epochs
        _enable_tf32()
    modes = (*MODES, "bf16_auto") if args.auto_batch else MODES
    results = {
        name: {mode: run_mode(cases[name], mode, epochs, device) for mode in modes}
        for name in args.cases.split(",")
    }
    if args.ddp:
        first = args.cases.split(",")[0]
        gpus = torch.cuda.device_count() if device.type == "cuda" else 2
        if gpus < 2:
            print(f"trainer_gpu: ddp2 skipped: {gpus} GPU visible, 2 needed", file=sys.stderr)
        else:
            single = results[first]["bf16"]
            results[first]["ddp2"] = run_ddp(cases[first], epochs, device.type == "cuda", single)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke)"
    report = {"benchmark": "trainer_gpu", "device": gpu, "epochs": epochs, "results": results}
    print(json.dumps(report, indent=2))
    parts = []
    for name, modes in results.items():
        rates = ", ".join(
            f"{m} {v['images_per_s']:.0f} img/s {v['peak_memory_mb']:.0f} MB"
            f" (batch {v['batch_size']})"
            for m, v in modes.items()
        )
        parts.append(f"{name}: {rates}")
    print(f"trainer_gpu on {gpu}: " + "; ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
