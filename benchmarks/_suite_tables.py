"""The suite's tabular tasks: real MLP training on scikit-learn's bundled or generated data,
recorded once as learning curves (``benchmarks/data/<task>_curves.json``) and looked up.

Each task here is a search space, a dataset, a metric and an epoch count. ``build(name)`` trains
``points`` configurations per combination of the space's categorical values (a scrambled Sobol
sequence over its numeric parameters) for every epoch and records each epoch's validation metric
and seconds, as ``_digits_table.py`` does for the digits CNN. Training is one torch thread,
seeded, so a table is reproducible up to floating point.

    nice -n 15 python benchmarks/_suite_tables.py cls_mlp     # or: all (about 10 min, one core)
    python benchmarks/_suite_tables.py all --stats            # how early epochs predict the end
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from _search_tasks import Param, Params
from torch import nn

DATA = Path(__file__).parent / "data"
Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TableSpec:
    """What one tabular task trains: data, metric, epochs, space, and how it is recorded."""

    name: str
    data: Callable[[], Split]
    epochs: int
    space: tuple[Param, ...]
    points: int  # Sobol points per combination of categorical values
    regression: bool = False  # MSE on a standardised target, else cross-entropy + accuracy
    metric: str = "val_accuracy"  # or "val_loss" (MSE or cross-entropy; minimised)
    cosine: bool = True  # cosine schedule to zero over ``epochs``; False: constant lr
    fixed: tuple[tuple[str, Any], ...] = ()  # settings that are not searched

    @property
    def path(self) -> Path:
        return DATA / f"{self.name}_curves.json"


def _split(x: Any, y: Any, n_train: int, regression: bool = False) -> Split:
    """Standardised features (train statistics), a fixed shuffle, train / validation."""
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32 if regression else torch.long)
    order = torch.randperm(len(xt), generator=torch.Generator().manual_seed(1234))
    xt, yt = xt[order], yt[order]
    mean, std = xt[:n_train].mean(0), xt[:n_train].std(0) + 1e-6
    xt = (xt - mean) / std
    if regression:
        yt = (yt - yt[:n_train].mean()) / yt[:n_train].std()
    return xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:]


def _classification() -> Split:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=3000, n_features=24, n_informative=8, n_redundant=4, n_classes=4,
        n_clusters_per_class=2, class_sep=1.0, flip_y=0.02, random_state=7,
    )  # fmt: skip
    return _split(x, y, 2000)


def _slow() -> Split:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=3700, n_features=20, n_informative=10, n_redundant=2, n_classes=3,
        n_clusters_per_class=3, class_sep=0.9, flip_y=0.0, random_state=3,
    )  # fmt: skip
    return _split(x, y, 1200)


def _cancer() -> Split:
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    return _split(raw.data, raw.target, 398)


def _diabetes() -> Split:
    from sklearn.datasets import load_diabetes

    raw = load_diabetes()
    return _split(raw.data, raw.target, 309, regression=True)


_LR = Param("lr", "float", 1e-4, 1.0, log=True)
_OPT = Param("optimizer", "cat", choices=("sgd", "adam"))
_MOM = Param("momentum", "float", 0.0, 0.99, when=("optimizer", "sgd"))
_WD = Param("weight_decay", "float", 1e-6, 1e-2, log=True)

SPECS: dict[str, TableSpec] = {
    s.name: s
    for s in (
        TableSpec(
            "cls_mlp", _classification, 27, points=160,
            space=(
                _OPT, _LR, _MOM, Param("width", "int", 8, 256, log=True),
                Param("layers", "int", 1, 3), Param("dropout", "float", 0.0, 0.5), _WD,
            ),
            fixed=(("batch_size", 64),),
        ),
        TableSpec(
            "slow_sgd", _slow, 40, points=64, cosine=False,
            space=(
                Param("lr", "float", 1e-4, 0.3, log=True), Param("momentum", "float", 0.0, 0.99),
                Param("batch_size", "cat", choices=("16", "64", "256")),
                Param("width", "int", 16, 128, log=True),
            ),
            fixed=(("optimizer", "sgd"), ("layers", 2)),
        ),
        TableSpec(
            "cancer_noisy", _cancer, 25, points=128, metric="val_loss",
            space=(
                _LR, Param("batch_size", "cat", choices=("8", "32")),
                Param("dropout", "float", 0.0, 0.7), Param("width", "int", 8, 256, log=True), _WD,
            ),
            fixed=(("optimizer", "sgd"), ("momentum", 0.9), ("layers", 2)),
        ),
        TableSpec(
            "diabetes_reg", _diabetes, 30, points=128, regression=True, metric="val_loss",
            space=(
                _OPT, _LR, _MOM, Param("width", "int", 8, 256, log=True),
                Param("weight_decay", "float", 1e-6, 1e-1, log=True),
            ),
            fixed=(("batch_size", 32), ("layers", 2)),
        ),
    )
}  # fmt: skip


def configurations(spec: TableSpec) -> list[Params]:
    """``spec.points`` Sobol points over the numeric parameters, per categorical combination."""
    from scipy.stats import qmc

    cats = [p for p in spec.space if p.kind == "cat"]
    out: list[Params] = []
    for values in itertools.product(*(p.choices for p in cats)):
        base = dict(zip((p.name for p in cats), values, strict=True))
        nums = [p for p in spec.space if p.kind != "cat" and p.active(base)]
        for u in qmc.Sobol(len(nums), scramble=True, seed=0).random(spec.points):
            params = dict(base)
            for p, v in zip(nums, u, strict=True):
                params[p.name] = from_unit(p, float(v))
            out.append(params)
    return out


def from_unit(p: Param, u: float) -> float | int:
    lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (p.low, p.high)
    x = lo + u * (hi - lo)
    x = math.exp(x) if p.log else x
    return int(round(x)) if p.kind == "int" else x


def to_unit(p: Param, x: float) -> float:
    lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (p.low, p.high)
    return ((math.log(x) if p.log else x) - lo) / (hi - lo)


def train(spec: TableSpec, split: Split, params: Params) -> tuple[list[float], list[float]]:
    """One configuration's real curve: per epoch, the validation metric and the seconds."""
    settings = {**dict(spec.fixed), **params}
    x, y, vx, vy = split
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    width, depth = int(settings["width"]), int(settings.get("layers", 2))
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(x.shape[1] if i == 0 else width, width), nn.ReLU()]
        layers.append(nn.Dropout(float(settings.get("dropout", 0.0))))
    outputs = 1 if spec.regression else int(y.max()) + 1
    model = nn.Sequential(*layers, nn.Linear(width, outputs))
    wd = float(settings.get("weight_decay", 0.0))
    if settings["optimizer"] == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=settings["lr"], momentum=settings["momentum"], weight_decay=wd
        )
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=settings["lr"], weight_decay=wd)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, spec.epochs) if spec.cosine else None
    batch = int(settings["batch_size"])
    values: list[float] = []
    seconds: list[float] = []
    for _ in range(spec.epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = order[i : i + batch]
            out = model(x[idx])
            loss = (
                nn.functional.mse_loss(out.squeeze(1), y[idx])
                if spec.regression
                else nn.functional.cross_entropy(out, y[idx])
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if schedule is not None:
            schedule.step()
        values.append(round(_validate(spec, model, vx, vy, spec.metric == "val_loss"), 5))
        seconds.append(round(time.perf_counter() - started, 4))
    return values, seconds


def _validate(
    spec: TableSpec, model: nn.Module, vx: torch.Tensor, vy: torch.Tensor, loss: bool
) -> float:
    """Validation accuracy, or loss (MSE or cross-entropy) capped at 10 (a diverged run)."""
    model.eval()
    with torch.no_grad():
        out = model(vx)
    if not torch.isfinite(out).all():
        return 10.0 if loss else 0.0
    if spec.regression:
        return min(10.0, float(nn.functional.mse_loss(out.squeeze(1), vy)))
    if loss:
        return min(10.0, float(nn.functional.cross_entropy(out, vy)))
    return float((out.argmax(1) == vy).float().mean())


def build(name: str) -> Path:
    spec = SPECS[name]
    split = spec.data()
    rows = []
    for params in configurations(spec):
        values, seconds = train(spec, split, params)
        rows.append({"params": params, "values": values, "seconds": seconds})
    spec.path.parent.mkdir(exist_ok=True)
    spec.path.write_text(json.dumps({"task": name, "epochs": spec.epochs, "rows": rows}))
    return spec.path


def stats(name: str) -> dict[str, float]:
    """How early epochs predict the end in a recorded table: Spearman rank correlation of the
    metric at epochs 1 and 4 with each curve's best, and the mean change from one epoch to the
    next over the first 5 and the last 5 epochs (noise)."""
    spec = SPECS[name]
    rows = json.loads(spec.path.read_text())["rows"]
    values = torch.tensor([row["values"] for row in rows])
    sign = -1.0 if spec.metric == "val_loss" else 1.0
    best = (sign * values).max(1).values

    def rank(x: torch.Tensor) -> torch.Tensor:
        return x.argsort().argsort().float()

    def spearman(x: torch.Tensor) -> float:
        return round(float(torch.corrcoef(torch.stack([rank(x), rank(best)]))[0, 1]), 3)

    steps = (values[:, 1:] - values[:, :-1]).abs()
    return {
        "spearman_epoch1_best": spearman(sign * values[:, 0]),
        "spearman_epoch4_best": spearman(sign * values[:, 3]),
        "mean_step_first5": round(float(steps[:, :5].mean()), 4),
        "mean_step_last5": round(float(steps[:, -5:].mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", help=f"one of {sorted(SPECS)} or 'all'")
    parser.add_argument("--stats", action="store_true", help="describe the recorded table(s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.stats:
        for name in sorted(SPECS) if args.task == "all" else [args.task]:
            print(name, json.dumps(stats(name)))
        return
    for name in sorted(SPECS) if args.task == "all" else [args.task]:
        started = time.perf_counter()
        path = build(name)
        print(f"{name}: {path} ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
