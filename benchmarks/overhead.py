"""Per-trial orchestration overhead: hpo's worker loop vs a plain Optuna script, on PostgreSQL.

Both sides run a no-op objective that reports 10 epochs (report + should_prune each) under a
Hyperband pruner with TPE, after the study already holds N finished trials (``_prefill``: a
sequential Hyperband history, most trials pruned at a rung, as a real study holds). The hpo
side runs the real worker loop (``hpo.worker.run_worker``: stale-trial check, claim from the
budget pool, heartbeat thread, per-trial records, tell); the Optuna side runs
``study.optimize`` on a freshly loaded study, as a worker process joining would. Both are timed
in steady state: from the end of the first measured trial to the end of the last (the first
trial pays the one-time load of the study into the trial cache). Each side runs ``--repeats``
times, alternating, and the median is reported; each benchmark study is deleted afterwards.

    python benchmarks/overhead.py --sizes 100,1000,10000 --measure 30 --repeats 3
    HPO_BENCH_POSTGRES=postgresql+psycopg2://postgres@127.0.0.1:5432/test (default)

Prints JSON, then one summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy

sys.path.insert(0, str(Path(__file__).parent))
import _noop_objective as noop  # noqa: E402
from _prefill import prefill  # noqa: E402

from hpo.spec import StudySpec  # noqa: E402
from hpo.study import prepare, quiet_optuna  # noqa: E402
from hpo.worker import WorkerContext, run_worker  # noqa: E402

URL = os.environ.get("HPO_BENCH_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
DIST = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}


def _spec(
    name: str, n_trials: int, sampler: str = "tpe", max_epochs: int | None = None
) -> StudySpec:
    epochs = {} if max_epochs is None else {"max_epochs_total": max_epochs}
    return StudySpec.model_validate(
        {
            "name": name,
            "objective": "_noop_objective:objective",
            "metric": {"name": "score", "direction": "maximize"},
            # "default": hpo's default search (TPE + ASHA), else TPE/random + Hyperband,
            # the pair plain Optuna runs on the other side
            "sampler": {"type": "tpe" if sampler == "default" else sampler, "seed": 0},
            "pruner": {
                "type": "asha" if sampler == "default" else "hyperband",
                "max_resource": noop.EPOCHS,
            },
            "budget": {"n_trials": n_trials, **epochs},
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        }
    )


class _Meter:
    """Per-trial wall time, CPU time (this process, all threads) and SQL statements, counted
    between the first and the last trial end. CPU time and statements do not depend on what
    else the machine is doing; wall time does."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float, int]] = []
        self.statements = 0
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", self._count)

    def _count(self, *args: object) -> None:
        self.statements += 1

    def mark(self) -> None:
        self.marks.append((time.perf_counter(), time.process_time(), self.statements))

    def result(self) -> dict[str, float]:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", self._count)
        (w0, c0, s0), (w1, c1, s1) = self.marks[0], self.marks[-1]
        n = len(self.marks) - 1
        return {
            "wall_ms": round(1000 * (w1 - w0) / n, 1),
            "cpu_ms": round(1000 * (c1 - c0) / n, 1),
            "statements": round((s1 - s0) / n, 1),
        }


def bench_hpo(
    size: int, measure: int, sampler: str, max_epochs: int | None = None
) -> dict[str, float]:
    name = f"bench-hpo-{uuid.uuid4().hex[:8]}"
    study = optuna.create_study(storage=URL, study_name=name, direction="maximize")
    prefill(study, size)
    spec = _spec(name, size + measure, sampler, max_epochs)
    prepare(spec, URL, n_trials=size + measure)  # finished trials fill all but `measure`
    ctx = WorkerContext(spec=spec, storage_url=URL, index=0, node="bench")
    meter = _Meter()
    run_worker(
        ctx,
        threading.Event(),
        lambda event: meter.mark() if event["event"] == "trial_end" else None,
    )
    result = meter.result()
    _drop(name)
    return result


def bench_optuna(size: int, measure: int, sampler: str) -> dict[str, float]:
    name = f"bench-optuna-{uuid.uuid4().hex[:8]}"
    prefill(optuna.create_study(storage=URL, study_name=name, direction="maximize"), size)
    study = optuna.load_study(
        storage=URL,
        study_name=name,
        sampler=(
            optuna.samplers.TPESampler(seed=0)
            if sampler in ("tpe", "default")
            else optuna.samplers.RandomSampler(seed=0)
        ),
        pruner=optuna.pruners.HyperbandPruner(1, noop.EPOCHS),
    )

    def objective(trial: optuna.Trial) -> float:
        params = {"x": trial.suggest_float("x", 0.0, 1.0)}

        def report(value: float, step: int) -> None:
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return noop.objective(params, report)

    meter = _Meter()
    study.optimize(objective, n_trials=measure, callbacks=[lambda s, t: meter.mark()])
    result = meter.result()
    _drop(name)
    return result


def _drop(name: str) -> None:
    """Delete the benchmark's study, so that runs do not grow the database."""
    optuna.delete_study(study_name=name, storage=URL)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="finished trials before measuring")
    parser.add_argument("--measure", type=int, default=30, help="trials timed at each size")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (median)")
    parser.add_argument(
        "--sampler",
        choices=["tpe", "random", "default"],
        default="tpe",
        help="random: orchestration alone, without TPE's own O(trials) Parzen estimator math; "
        "default: hpo's default search (TPE + ASHA) against Optuna's TPE + Hyperband",
    )
    parser.add_argument(
        "--max-epochs-total",
        type=int,
        default=None,
        help="give hpo's study an epoch budget (never reached): what counting epochs costs",
    )
    args = parser.parse_args()
    quiet_optuna()
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, object] = {
        "storage": "postgresql",
        "epochs_per_trial": noop.EPOCHS,
        "measured_trials": args.measure,
        "repeats": args.repeats,
        "sampler": args.sampler,
        "max_epochs_total": args.max_epochs_total,
    }
    table: dict[int, dict[str, dict[str, float]]] = {}
    for size in sizes:
        runs: dict[str, list[dict[str, float]]] = {"hpo": [], "optuna": []}
        for _ in range(args.repeats):  # alternating, so both sides see the same machine load
            runs["hpo"].append(bench_hpo(size, args.measure, args.sampler, args.max_epochs_total))
            runs["optuna"].append(bench_optuna(size, args.measure, args.sampler))
        table[size] = {side: _median(r) for side, r in runs.items()}
    result["per_trial"] = table
    print(json.dumps(result, indent=2))
    parts = [
        f"{s} trials: hpo {v['hpo']['wall_ms']} ms wall / {v['hpo']['cpu_ms']} ms cpu / "
        f"{v['hpo']['statements']} SQL vs optuna {v['optuna']['wall_ms']} / "
        f"{v['optuna']['cpu_ms']} / {v['optuna']['statements']}"
        for s, v in table.items()
    ]
    print(
        f"per trial ({args.sampler} + hyperband, ask + 10 x report/should_prune + tell): "
        + "; ".join(parts)
    )


if __name__ == "__main__":
    main()
