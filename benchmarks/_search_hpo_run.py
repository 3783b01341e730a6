"""hpo's default search through ``hpo run`` itself: real worker processes, embedded storage.

The spec names no sampler and no pruner (hpo's defaults), only the task's space, the epochs of
a full trial (``pruner.max_resource`` is not needed: the default pruner's is given by the task)
and the epoch cap as ``budget.max_epochs_total``. The objective (_search_objective.py) appends
every epoch to a ledger; the run is stopped (SIGTERM, a graceful stop) once a completed trial
reaches the target. Epochs to target: ledger lines up to that trial's last epoch; wall-clock
epochs: the most any one worker process had trained by then. With several workers each epoch
also sleeps ``EPOCH_SECONDS`` so that processes interleave like training, not like lookups.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _search_methods import hpo_space
from _search_sim import Outcome
from _search_tasks import Task

HERE = Path(__file__).parent
EPOCH_SECONDS = 0.05


def _reached(lines: list[list[str]], target: float, full: int) -> int | None:
    """Index of the ledger line where a trial's last epoch completes it at >= target."""
    best: dict[str, float] = {}
    for i, (_, _, trial, epoch, value, _) in enumerate(lines):
        best[trial] = max(best.get(trial, 0.0), float(value))
        if int(epoch) == full and best[trial] >= target:
            return i
    return None


def hpo_run(task: type[Task], seed: int, workers: int, cap: int, target: float) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        spec = {
            "name": f"bench-{task.name}-{seed}",
            "objective": "_search_objective:objective",
            "metric": {"name": "val_accuracy", "direction": "maximize"},
            "sampler": {"type": "tpe", "seed": seed},
            "budget": {"max_epochs_total": cap},
            "space": hpo_space(task),
            "artifacts": {"checkpoints": False},
        }
        from hpo.spec import StudySpec

        default = StudySpec.model_fields["pruner"].default.type
        spec["pruner"] = {"type": default, "max_resource": task.max_epochs}
        path = Path(tmp) / "study.yaml"
        path.write_text(yaml.safe_dump(spec))
        ledger = Path(tmp) / "ledger.txt"
        ledger.touch()
        env = {
            **os.environ,
            # The benchmark's modules ahead of any checkout the caller runs hpo from.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
            "HPO_BENCH_TASK": task.name,
            "HPO_BENCH_LEDGER": str(ledger),
            "HPO_BENCH_EPOCH_SECONDS": str(EPOCH_SECONDS if workers > 1 else 0),
            "HPO_ARTIFACTS": str(Path(tmp) / "artifacts"),
        }
        started = time.perf_counter()
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
            hit = _reached(lines, target, task.max_epochs)
            if hit is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
        lines = [line.split() for line in ledger.read_text().splitlines()]
        hit = _reached(lines, target, task.max_epochs)
        out = Outcome(epochs=len(lines), seconds=time.perf_counter() - started)
        out.jobs = len({line[2] for line in lines})
        if hit is not None:
            out.epochs_to_target = hit + 1
            per_worker: dict[str, int] = {}
            for line in lines[: hit + 1]:
                per_worker[line[1]] = per_worker.get(line[1], 0) + 1
            out.ticks_to_target = max(per_worker.values())
            out.seconds_to_target = sum(float(line[5]) for line in lines[: hit + 1])
        return out
