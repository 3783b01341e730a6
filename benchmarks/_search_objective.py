"""The benchmark tasks as an hpo custom objective, for ``hpo run`` (see _search_hpo_run.py).

``HPO_BENCH_TASK`` names the task, ``HPO_BENCH_LEDGER`` a file every epoch is appended to
(time, process, trial, epoch, value, seconds), ``HPO_BENCH_EPOCH_SECONDS`` an optional sleep
per epoch so that parallel workers interleave like real training rather than table lookups.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent))

from _search_tasks import Task  # noqa: E402
from _suite_tasks import TASKS  # noqa: E402

_task: Task | None = None


def objective(trial: optuna.Trial) -> float:
    global _task
    if _task is None:
        _task = TASKS[os.environ.get("HPO_BENCH_TASK", "digits_mlp")]()
    ledger = os.environ.get("HPO_BENCH_LEDGER")
    pause = float(os.environ.get("HPO_BENCH_EPOCH_SECONDS", "0"))
    curve = _task.curve(dict(trial.params))
    values: list[float] = []
    for epoch in range(1, _task.max_epochs + 1):
        value, seconds = curve.at(epoch)
        if pause:
            time.sleep(pause)
        values.append(value)
        if ledger:
            with open(ledger, "a") as f:
                line = (time.time(), os.getpid(), trial.number, epoch, value, seconds)
                f.write(" ".join(str(x) for x in line) + "\n")
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return _task.best(values)
