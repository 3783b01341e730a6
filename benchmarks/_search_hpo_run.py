"""hpo's default search through ``hpo run`` itself: real worker processes, embedded storage.

The spec names no sampler and no pruner (hpo's defaults), only the task's space, the epochs of
a full trial (``pruner.max_resource`` is not needed: the default pruner's is given by the task)
and the epoch cap as ``budget.max_epochs_total``. The objective (_search_objective.py) appends
every epoch to a ledger; the run is stopped (SIGTERM, a graceful stop) once a completed trial
reaches the target. Epochs to target: ledger lines up to that trial's last epoch; wall-clock
epochs: those epochs over the workers (the busiest worker's count is kept too). Each epoch
sleeps ``EPOCH_SECONDS`` (one worker too) so that processes interleave like training, not like
lookups, and wall-clock seconds to target (from launching ``hpo run``, start-up included) mean
something. The random variant (random search, no pruning) gives the wall-clock reference.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _search_methods import hpo_space, metric_spec
from _search_sim import Outcome
from _search_tasks import Task

HERE = Path(__file__).parent
EPOCH_SECONDS = 0.05


def _reached(lines: list[list[str]], target: float, task: type[Task]) -> int | None:
    """Index of the ledger line where a trial's last epoch completes it at the target."""
    values: dict[str, list[float]] = {}
    for i, (_, _, trial, epoch, value, _) in enumerate(lines):
        values.setdefault(trial, []).append(float(value))
        if int(epoch) == task.max_epochs and task.reaches(task.best(values[trial]), target):
            return i
    return None


def hpo_run(
    task: type[Task], seed: int, workers: int, cap: int, target: float, kind: str = "hpo"
) -> Outcome:
    """One ``hpo run`` of ``kind``: 'hpo' (the default search: the spec names no pruner, only
    its max_resource) or 'random' (random search without pruning)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = {
            "name": f"bench-{task.name}-{kind}-{seed}",
            "objective": "_search_objective:objective",
            "metric": metric_spec(task),
            "sampler": {"type": "tpe" if kind == "hpo" else "random", "seed": seed},
            "budget": {"max_epochs_total": cap},
            "space": hpo_space(task),
            "artifacts": {"checkpoints": False},
        }
        from hpo.spec import StudySpec

        default = StudySpec.model_fields["pruner"].default.type
        spec["pruner"] = {"type": default, "max_resource": task.max_epochs}
        if kind == "random":
            spec["pruner"] = {"type": "none"}
        path = Path(tmp) / "study.yaml"
        # In the task's order: hpo suggests parameters in the spec's order, and a sorted YAML
        # would give each seed another random stream than the simulation's.
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        ledger = Path(tmp) / "ledger.txt"
        ledger.touch()
        env = {
            **os.environ,
            # The benchmark's modules ahead of any checkout the caller runs hpo from.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "HPO_BENCH_TASK": task.name,
            "HPO_BENCH_LEDGER": str(ledger),
            "HPO_BENCH_EPOCH_SECONDS": str(EPOCH_SECONDS),
            "HPO_ARTIFACTS": str(Path(tmp) / "artifacts"),
        }
        started = time.time()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hpo",
                "run",
                str(path),
                "--workers",
                str(workers),
                "--storage",
                f"sqlite:///{tmp}/hpo.db",
                "--device",
                "cpu",
            ],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        hit = None
        while proc.poll() is None:
            time.sleep(0.2)
            lines = [line.split() for line in ledger.read_text().splitlines()]
            hit = _reached(lines, target, task)
            if hit is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        lines = [line.split() for line in ledger.read_text().splitlines()]
        hit = _reached(lines, target, task)
        out = Outcome(epochs=len(lines), seconds=time.time() - started)
        out.jobs = len({line[2] for line in lines})
        if hit is not None:
            out.epochs_to_target = hit + 1
            per_worker: dict[str, int] = {}
            for line in lines[: hit + 1]:
                per_worker[line[1]] = per_worker.get(line[1], 0) + 1
            # Wall-clock epochs as the simulation counts them, the fleet's epochs per worker.
            # The busiest worker's count is kept apart: it includes the start-up stagger (at
            # EPOCH_SECONDS per epoch the first worker trains 5-20 epochs alone while the others
            # import torch and register on 2 loaded cores), which a real epoch makes nothing.
            out.ticks_to_target = math.ceil(out.epochs_to_target / workers)
            out.busiest_worker_epochs = max(per_worker.values())
            out.seconds_to_target = float(lines[hit][0]) - started  # wall-clock, start-up included
        return out
