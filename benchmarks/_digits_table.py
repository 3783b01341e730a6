"""The digits CNN task's learning curves, trained once with hpo's trainer and kept as data.

One epoch of the digits CNN costs 0.1-0.4 s on a CPU core, so the ~100,000 epochs that
search_efficiency.py's methods, seeds and worker counts ask for cannot all be trained on a
2-core machine. The standard answer (HPOBench, LCBench, NAS-Bench) is a tabular benchmark:
learning curves of real training, looked up. This module trains ``POINTS`` configurations
per batch size (a scrambled Sobol sequence over log lr x momentum) for ``EPOCHS`` epochs each
with ``hpo.trainer.fit`` and writes their per-epoch validation accuracy and seconds to
``benchmarks/data/digits_cnn_curves.json``. A configuration is answered by the recorded
curve of its nearest neighbour (same batch size, nearest in log lr / momentum).

    python benchmarks/_digits_table.py [--shard 0/2]   # about 12 min per shard on one core
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

EPOCHS = 20
POINTS = 64
BATCH_SIZES = (16, 32, 64, 128)
LR = (1e-3, 1.0)
MOMENTUM = (0.5, 0.99)
TABLE = Path(__file__).parent / "data" / "digits_cnn_curves.json"


def grid() -> list[dict[str, float]]:
    """The tabulated configurations: ``POINTS`` Sobol points for every batch size."""
    from scipy.stats import qmc

    points = qmc.Sobol(2, scramble=True, seed=0).random(POINTS)
    lo, hi = math.log(LR[0]), math.log(LR[1])
    return [
        {
            "lr": math.exp(lo + u * (hi - lo)),
            "momentum": MOMENTUM[0] + v * (MOMENTUM[1] - MOMENTUM[0]),
            "batch_size": bs,
        }
        for bs in BATCH_SIZES
        for u, v in points
    ]


def train(params: dict[str, float]) -> dict[str, object]:
    """One configuration's real curve: hpo's trainer, digits, the small CNN, one thread."""
    from hpo.trainer import TrainConfig, fit

    config = TrainConfig(
        model="cnn",
        dataset="digits",
        epochs=EPOCHS,
        num_workers=0,
        lr=params["lr"],
        momentum=params["momentum"],
        batch_size=int(params["batch_size"]),
    )
    values: list[float] = []
    seconds: list[float] = []
    last = time.perf_counter()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        nonlocal last
        now = time.perf_counter()
        values.append(round(metrics["val_accuracy"], 5))
        seconds.append(round(now - last, 4))
        last = now

    fit(config, torch.device("cpu"), on_epoch)
    return {**params, "val_accuracy": values, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", default="0/1", help="i/n: train every n-th point from i")
    args = parser.parse_args()
    index, count = (int(x) for x in args.shard.split("/"))
    torch.set_num_threads(1)
    out = TABLE.with_suffix(f".{index}.json") if count > 1 else TABLE
    rows = [train(p) for p in grid()[index::count]]
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"epochs": EPOCHS, "rows": rows}))
    print(f"{len(rows)} curves -> {out}")


if __name__ == "__main__":
    main()
