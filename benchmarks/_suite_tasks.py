"""The benchmark suite: every task search_efficiency.py knows, by name.

* ``digits_cnn``, ``digits_mlp``: see _search_tasks.py.
* ``cls_mlp``, ``slow_sgd``, ``cancer_noisy``, ``diabetes_reg``: MLPs trained for real on
  scikit-learn data, recorded by _suite_tables.py and looked up: a configuration gets the curve of
  the nearest recorded one (same categorical values, nearest in the numeric parameters scaled to
  [0, 1], log where the parameter is log).
* ``counting_ones``: the BOHB paper's multi-fidelity benchmark (Falkner et al., ICML 2018, 5.1),
  computed, not trained.
"""

from __future__ import annotations

import json
import zlib

import numpy as np
from _search_tasks import Curve, DigitsCnn, DigitsMlp, Param, Params, Task
from _suite_tables import SPECS, TableSpec, to_unit


class TableTask(Task):
    """A task of _suite_tables.py, its curves looked up in the recorded table."""

    spec: TableSpec

    def __init__(self) -> None:
        super().__init__()
        rows = json.loads(self.spec.path.read_text())["rows"]
        self._groups: dict[tuple[str, ...], tuple[list[Param], np.ndarray, list[Curve]]] = {}
        for row in rows:
            key, nums = self._key(row["params"])
            group = self._groups.setdefault(key, (nums, np.empty((0, len(nums))), []))
            unit = [to_unit(p, row["params"][p.name]) for p in nums]
            self._groups[key] = (nums, np.vstack([group[1], unit]), group[2])
            group[2].append(Curve(row["values"], row["seconds"]))

    def _key(self, params: Params) -> tuple[tuple[str, ...], list[Param]]:
        cats = tuple(str(params[p.name]) for p in self.space if p.kind == "cat")
        nums = [p for p in self.space if p.kind != "cat" and p.active(params)]
        return cats, nums

    def _new_curve(self, params: Params) -> Curve:
        key, _ = self._key(params)
        nums, points, curves = self._groups[key]
        unit = np.array([to_unit(p, params[p.name]) for p in nums])
        nearest = int(np.argmin(((points - unit) ** 2).sum(axis=1)))
        return Curve(list(curves[nearest].values), list(curves[nearest].seconds))


def _table_task(name: str, about: str) -> type[Task]:
    spec = SPECS[name]
    attrs = {
        "name": name,
        "spec": spec,
        "space": spec.space,
        "max_epochs": spec.epochs,
        "metric": spec.metric,
        "maximize": spec.metric != "val_loss",
        "about": about,
    }
    return type(name, (TableTask,), attrs)


class CountingOnes(Task):
    """Counting ones (BOHB paper): 8 binary categorical and 8 continuous parameters in [0, 1];
    the value is the mean of the categoricals and of, per continuous x, the mean of b Bernoulli(x)
    draws. Fidelity b = 27 draws per epoch, so 27 epochs are BOHB's largest budget, 729 draws.
    Draws are nested (epoch e uses the first 27e of a stream seeded by the configuration), so a
    configuration's curve is fixed and converges to its true value; the optimum is 1."""

    name = "counting_ones"
    max_epochs = 27
    space = tuple(Param(f"c{i}", "cat", choices=("0", "1")) for i in range(8)) + tuple(
        Param(f"x{i}", "float", 0.0, 1.0) for i in range(8)
    )
    metric = "ones"
    about = "BOHB's counting ones, 8 binary + 8 continuous, 27 draws per epoch (computed)"
    DRAWS = 27

    def _new_curve(self, params: Params) -> Curve:
        seed = zlib.crc32(json.dumps(params, sort_keys=True).encode())
        rng = np.random.default_rng(seed)
        x = np.array([params[f"x{i}"] for i in range(8)])
        hits = rng.random((self.max_epochs * self.DRAWS, 8)) < x  # draws x parameters
        means = np.cumsum(hits, axis=0)[self.DRAWS - 1 :: self.DRAWS] / (
            self.DRAWS * np.arange(1, self.max_epochs + 1)[:, None]
        )
        ones = sum(int(params[f"c{i}"]) for i in range(8))
        values = [round(float((ones + m.sum()) / 16), 6) for m in means]
        return Curve(values, [0.05] * self.max_epochs)


TASKS: dict[str, type[Task]] = {
    "digits_cnn": DigitsCnn,
    "digits_mlp": DigitsMlp,
    "cls_mlp": _table_task(
        "cls_mlp",
        "MLP on make_classification (4 classes), 7 hyperparameters, conditional momentum",
    ),
    "slow_sgd": _table_task(
        "slow_sgd", "plain SGD at a constant lr, 40 epochs: epoch 1 predicts the end least"
    ),
    "cancer_noisy": _table_task(
        "cancer_noisy",
        "MLP on breast cancer, minimise val cross-entropy, high lr and dropout: noisy early epochs",
    ),
    "diabetes_reg": _table_task(
        "diabetes_reg", "MLP regression on diabetes, minimise val_loss (MSE, standardised y)"
    ),
    "counting_ones": CountingOnes,
}
