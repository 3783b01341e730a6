"""The two digits tasks of search_efficiency.py (the suite's others: _suite_tasks.py), each a
search space and a per-epoch validation curve.

* ``digits_cnn``: hpo's small CNN on scikit-learn's digits, SGD, a 20-epoch cosine schedule;
  3 hyperparameters (lr, batch size, momentum). Curves are looked up in the table of real
  training that ``_digits_table.py`` recorded (the nearest tabulated configuration).
* ``digits_mlp``: a two-layer MLP on the same images flattened, trained for real in this
  process (~10 ms an epoch); 6 hyperparameters with a categorical (optimizer) and a
  conditional one (momentum, SGD only).

A task answers ``curve(params)``: the validation accuracy after each epoch and the seconds that
epoch took, trained (or looked up) lazily and kept, so a configuration evaluated again at a
larger budget costs nothing new to compute; the accounting still charges every epoch trained.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from _digits_table import TABLE
from torch import nn

Params = dict[str, Any]


@dataclass(frozen=True)
class Param:
    """One hyperparameter, in a form every method's own space is built from."""

    name: str
    kind: str  # "float" | "int" | "cat"
    low: float = 0.0
    high: float = 1.0
    log: bool = False
    choices: tuple[str, ...] = ()
    when: tuple[str, str] | None = None  # active only when params[when[0]] == when[1]

    def active(self, params: Params) -> bool:
        return self.when is None or params.get(self.when[0]) == self.when[1]


@dataclass
class Curve:
    """A configuration's epochs so far: validation accuracy and seconds, by epoch - 1."""

    values: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    steps: Iterator[tuple[float, float]] | None = None

    def at(self, epoch: int) -> tuple[float, float]:
        while len(self.values) < epoch:
            assert self.steps is not None
            value, seconds = next(self.steps)
            self.values.append(value)
            self.seconds.append(seconds)
        return self.values[epoch - 1], self.seconds[epoch - 1]


class Task:
    """A search space and, per configuration, a learning curve of ``max_epochs`` epochs."""

    name = ""
    max_epochs = 20
    space: tuple[Param, ...] = ()
    metric = "val_accuracy"
    maximize = True
    about = ""  # one line for --list-tasks --verbose and BENCHMARKS.md

    @classmethod
    def best(cls, values: list[float]) -> float:
        """The best of ``values`` in the task's direction."""
        return max(values) if cls.maximize else min(values)

    @classmethod
    def reaches(cls, value: float, target: float) -> bool:
        return value >= target if cls.maximize else value <= target

    def __init__(self) -> None:
        self._curves: dict[str, Curve] = {}

    def curve(self, params: Params) -> Curve:
        key = json.dumps(params, sort_keys=True)
        if key not in self._curves:
            self._curves[key] = self._new_curve(params)
        return self._curves[key]

    def _new_curve(self, params: Params) -> Curve:
        raise NotImplementedError


class DigitsCnn(Task):
    """Lookup in the recorded curves of hpo's trainer (see ``_digits_table.py``)."""

    name = "digits_cnn"
    about = "hpo's CNN on digits, SGD, cosine; lr, batch size, momentum (tabular, 256 curves)"
    space = (
        Param("lr", "float", 1e-3, 1.0, log=True),
        Param("batch_size", "cat", choices=("16", "32", "64", "128")),
        Param("momentum", "float", 0.5, 0.99),
    )

    def __init__(self) -> None:
        super().__init__()
        rows = json.loads(TABLE.read_text())["rows"]
        self._rows: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            self._rows.setdefault(int(row["batch_size"]), []).append(row)

    def _new_curve(self, params: Params) -> Curve:
        lr, mom = math.log(params["lr"]), params["momentum"]
        span = math.log(1.0) - math.log(1e-3), 0.99 - 0.5

        def distance(row: dict[str, Any]) -> float:
            return ((math.log(row["lr"]) - lr) / span[0]) ** 2 + (
                (row["momentum"] - mom) / span[1]
            ) ** 2

        row = min(self._rows[int(params["batch_size"])], key=distance)
        return Curve(list(row["val_accuracy"]), list(row["seconds"]))


class DigitsMlp(Task):
    """A real two-layer MLP on the 64 digit pixels, one torch thread, batch 128."""

    name = "digits_mlp"
    about = "two-layer MLP on digits, 6 hyperparameters, conditional momentum (trained live)"
    space = (
        Param("optimizer", "cat", choices=("sgd", "adam")),
        Param("lr", "float", 1e-4, 1.0, log=True),
        Param("momentum", "float", 0.0, 0.99, when=("optimizer", "sgd")),
        Param("hidden", "int", 8, 128, log=True),
        Param("dropout", "float", 0.0, 0.7),
        Param("weight_decay", "float", 1e-6, 1e-1, log=True),
    )

    def __init__(self) -> None:
        super().__init__()
        from sklearn.datasets import load_digits

        raw = load_digits()
        x = torch.tensor(raw.data, dtype=torch.float32)
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        y = torch.tensor(raw.target)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
        cut = int(len(x) * 0.8)
        self._train = x[order[:cut]], y[order[:cut]]
        self._val = x[order[cut:]], y[order[cut:]]

    def _new_curve(self, params: Params) -> Curve:
        return Curve(steps=self._epochs(params))

    def _epochs(self, params: Params) -> Iterator[tuple[float, float]]:
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        h = int(params["hidden"])
        model = nn.Sequential(
            nn.Linear(64, h),
            nn.ReLU(),
            nn.Dropout(params["dropout"]),
            nn.Linear(h, h),
            nn.ReLU(),
            nn.Dropout(params["dropout"]),
            nn.Linear(h, 10),
        )
        if params["optimizer"] == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                model.parameters(),
                lr=params["lr"],
                momentum=params["momentum"],
                weight_decay=params["weight_decay"],
            )
        else:
            opt = torch.optim.AdamW(
                model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"]
            )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.max_epochs)
        x, y = self._train
        vx, vy = self._val
        for _ in range(self.max_epochs):
            started = time.perf_counter()
            model.train()
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), 128):
                idx = order[i : i + 128]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            schedule.step()
            model.eval()
            with torch.no_grad():
                logits = model(vx)
            ok = torch.isfinite(logits).all()
            acc = float((logits.argmax(1) == vy).float().mean()) if ok else 0.0
            yield acc, time.perf_counter() - started
