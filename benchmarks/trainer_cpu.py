"""hpo's trainer vs a bare hand-written PyTorch loop: training samples/s on the CPU.

Same model (the small CNN), same data (the `fake` set: 3x32x32 tensors in memory), same batch
size, optimizer (SGD, momentum 0.9) and per-step cosine schedule. Runs alternate between the two
so that load from other processes hits both alike; medians of the repeats are reported. Only
training is timed: hpo's ``train_one_epoch`` calls inside ``fit`` (what
``TrainResult.train_seconds`` counts) and the same epochs of the bare loop, each by the wall
clock and by the process's CPU time. On shared cores the wall clock swings by +-15% between
runs; with one thread, CPU time measures the work each loop does and is the steadier ratio.

    python benchmarks/trainer_cpu.py [--repeats 5] [--epochs 3] [--threads 1]

Prints one JSON object, then a one-line summary. The goal is a ratio of at least 0.97.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hpo.data import DataOptions, load_data
from hpo.models import build_model
from hpo.trainer import TrainConfig, fit
from hpo.trainer import loop as trainer_loop

CPU = torch.device("cpu")

Rates = tuple[float, float]  # samples/s by wall clock, samples per CPU-second


class _Clock:
    """Wall and CPU seconds spent in the wrapped function."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func, self.wall, self.cpu = func, 0.0, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu


def _config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        model="cnn",
        dataset="fake",
        fake_samples=args.samples,
        image_size=32,
        num_classes=10,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=0.01,
        optimizer="sgd",
        momentum=0.9,
        schedule="cosine",
        num_workers=0,
    )


def hpo_run(config: TrainConfig) -> Rates:
    """Training samples/s of ``fit`` (validation excluded)."""
    clock = _Clock(trainer_loop.train_one_epoch)
    trainer_loop.train_one_epoch = clock  # type: ignore[assignment]
    try:
        result = fit(config, CPU, lambda epoch, metrics: None)
    finally:
        trainer_loop.train_one_epoch = clock.func  # type: ignore[assignment]
    samples = result.train_samples * result.epochs_run
    return samples / clock.wall, samples / clock.cpu


def bare_run(config: TrainConfig) -> Rates:
    """Training samples/s of the loop a user would write by hand."""
    data = load_data(
        "fake", DataOptions(image_size=32, num_classes=10, samples=config.fake_samples)
    )
    x, y = data.train.tensors  # type: ignore[attr-defined]
    torch.manual_seed(config.seed)
    model = build_model("cnn", 10, 3, 32)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    assert isinstance(config.batch_size, int)
    steps = config.epochs * -(-len(x) // config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, config.lr * 0.01)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(config.seed)
    wall = cpu = 0.0
    for _ in range(config.epochs):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), config.batch_size):
            idx = order[i : i + config.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return len(x) * config.epochs / wall, len(x) * config.epochs / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=2560, help="fake set size (80%% train)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = _config(args)
    hpo_run(config)  # warm-up: imports, allocator, first-call overheads
    bare_run(config)
    hpo_rates, bare_rates = [], []
    for _ in range(args.repeats):
        hpo_rates.append(hpo_run(config))
        bare_rates.append(bare_run(config))
    report: dict[str, Any] = {
        "benchmark": "trainer_cpu",
        "model": "cnn",
        "data": f"fake 3x32x32, {int(args.samples * 0.8)} train samples",
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "threads": args.threads,
        "repeats": args.repeats,
    }
    for index, clock in enumerate(("wall", "cpu")):
        hpo = [r[index] for r in hpo_rates]
        bare = [r[index] for r in bare_rates]
        # Each pair ran back to back: the median of their ratios is robust to drifting load.
        paired = statistics.median(h / b for h, b in zip(hpo, bare, strict=True))
        report[clock] = {
            "hpo_samples_per_s": round(statistics.median(hpo), 1),
            "bare_samples_per_s": round(statistics.median(bare), 1),
            "ratio": round(paired, 3),
            "hpo_runs": [round(r, 1) for r in hpo],
            "bare_runs": [round(r, 1) for r in bare],
        }
    print(json.dumps(report, indent=2))
    wall, cpu = report["wall"], report["cpu"]
    print(
        f"trainer_cpu: hpo/bare = {cpu['ratio']:.3f}x by CPU time "
        f"({cpu['hpo_samples_per_s']:.0f} vs {cpu['bare_samples_per_s']:.0f} samples per CPU-s), "
        f"{wall['ratio']:.3f}x by wall clock ({wall['hpo_samples_per_s']:.0f} vs "
        f"{wall['bare_samples_per_s']:.0f} samples/s); goal >= 0.97x"
    )


if __name__ == "__main__":
    main()
