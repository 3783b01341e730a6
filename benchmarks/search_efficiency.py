"""Search efficiency: the epochs each method needs to reach random search's median best.

The tasks (``--list-tasks``; _suite_tasks.py) are the suite of issue 22: the two digits tasks,
four recorded MLP tasks and BOHB's counting ones. For each task, random search without pruning
runs ``--budget`` epochs (e.g. 30 trials of 20 epochs) for every seed; the target is the median
of its best values (validation accuracy, or loss for the tasks that minimise). Every method,
random search included, then runs for every seed until a fully trained configuration (a
completed trial, or a peer's job at the maximum budget) reaches the target, or ``--cap``
epochs (2 x budget) are spent; unreached counts as never (infinite) in the medians and
quartiles. The ratio is a method's median epochs to target over random search's (with 4
workers: wall-clock epochs, the ticks of a 4-worker fleet).

Methods (``--methods``, comma-separated; default all):
  random            Optuna RandomSampler, no pruning (the reference)
  tpe               Optuna TPESampler, no pruning
  tpe+hyperband     Optuna TPESampler + HyperbandPruner(1, the task's epochs)
  tpe+sha           Optuna TPESampler + SuccessiveHalvingPruner(): Optuna's defaults
  hpo               hpo's default search (no sampler or pruner named in the spec)
  hpo:VARIANT       hpo variants (see VARIANTS) measured while choosing the default
  smac              SMAC3 MultiFidelityFacade (random forest + Hyperband, eta 3)   [bench extra]
  dehb              DEHB (differential evolution + Hyperband, eta 3)               [bench extra]

Epochs are the headline: the same whatever the machine's load. Seconds alongside: the training
seconds of the epochs charged (measured when the curve was trained) plus the method's own
ask/tell time. ``--workers 1,4`` runs every method sequentially and as a 4-worker fleet
(lock-step ticks, see _search_sim.py). ``--hpo-run hpo[,random]`` adds hpo's default (and
random search) through ``hpo run`` itself (real worker processes, embedded storage), on the
first ``--hpo-run-seeds`` seeds: see _search_hpo_run.py.

    pip install -e '.[bench]'
    python benchmarks/search_efficiency.py --list-tasks     # one task name a line
    python benchmarks/search_efficiency.py                  # 7 tasks x 10 seeds x 1,4 workers
    python benchmarks/search_efficiency.py --tasks digits_mlp --seeds 3 --methods random,hpo

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _search_hpo_run import hpo_run  # noqa: E402
from _search_methods import (  # noqa: E402
    DehbMethod,
    Method,
    RayMethod,
    SmacMethod,
    hpo_method,
    optuna_method,
)
from _search_sim import Outcome, simulate  # noqa: E402
from _search_tasks import Task  # noqa: E402
from _suite_tasks import TASKS  # noqa: E402

#: hpo variants measured while choosing the default (BENCHMARKS.md records them all).
# (multivariate named: the variants below were measured with it, the default until issue 22's
# second session)
_TPE = {"type": "tpe", "multi_fidelity": False, "multivariate": True}
_MF = {"type": "tpe", "multi_fidelity": True, "multivariate": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "tpe+hyperband": {"sampler": _TPE, "pruner": {"type": "hyperband"}},  # hpo's default before
    "tpe+asha3": {"sampler": _TPE, "pruner": {"type": "asha", "reduction_factor": 3}},
    "tpe+asha4": {"sampler": _TPE, "pruner": {"type": "asha", "reduction_factor": 4}},
    "mftpe+asha3": {"sampler": _MF, "pruner": {"type": "asha", "reduction_factor": 3}},
    "mftpe+asha4": {"sampler": _MF, "pruner": {"type": "asha", "reduction_factor": 4}},
    "mftpe+hyperband": {"sampler": _MF, "pruner": {"type": "hyperband"}},
    "random+asha3": {
        "sampler": {"type": "random"},
        "pruner": {"type": "asha", "reduction_factor": 3},
    },
    # issue 22: rungs that judge later (the first rung at max_resource / grace epochs)
    "tpe+asha4r1": {"sampler": _TPE, "pruner": {"type": "asha", "min_early_stopping_rate": 1}},
    "tpe+asha3g9": {"sampler": _TPE, "pruner": {"type": "asha", "reduction_factor": 3, "grace": 9}},
    "tpe+asha4g16": {"sampler": _TPE, "pruner": {"type": "asha", "grace": 16}},
    "tpe+hyperband4": {"sampler": _TPE, "pruner": {"type": "hyperband", "reduction_factor": 4}},
    # issue 22, second session: hedges for cancer_noisy, where random search beat the default;
    # tpe-univariate (Optuna's own TPE default) became the default, tpe-multivariate is the
    # default before it (both with the default ASHA)
    "tpe-multivariate": {"sampler": _TPE},
    "tpe-univariate": {"sampler": {**_TPE, "multivariate": False}},
    "tpe20": {"sampler": {**_TPE, "n_startup_trials": 20}},
    "tpe30": {"sampler": {**_TPE, "n_startup_trials": 30}},
    "mftpe": {"sampler": _MF},
    # against Ray Tune's ASHA + TPE (first rung 1, reduction factor 4): univariate TPE with
    # Ray's rungs, and with reduction factor 3 at max_resource / 9
    "tpe-univariate-nolie": {"sampler": {**_TPE, "multivariate": False, "constant_liar": False}},
    "tpe-univariate-r1": {
        "sampler": {**_TPE, "multivariate": False},
        "pruner": {"type": "asha", "min_resource": 1},
    },
    # hpo run's structure: one sampler per worker (seed + 7919 * worker) on one storage
    "per-worker": {"_per_worker": True},
    "random-per-worker": {
        "sampler": {"type": "random"},
        "pruner": {"type": "none"},
        "_per_worker": True,
    },
    "tpe-univariate-lastvalue": {"sampler": {**_TPE, "multivariate": False}, "_lastvalue": True},
    "tpe-univariate-lastvalue-r1": {
        "sampler": {**_TPE, "multivariate": False},
        "pruner": {"type": "asha", "min_resource": 1},
        "_lastvalue": True,
    },
    "tpe-univariate-asha3g9": {
        "sampler": {**_TPE, "multivariate": False},
        "pruner": {"type": "asha", "reduction_factor": 3, "grace": 9},
    },
}

Factory = Callable[[Task, int, int], Method]


def factories(names: list[str]) -> dict[str, Factory]:
    known: dict[str, Factory] = {
        "random": optuna_method("random+"),
        "tpe": optuna_method("tpe+"),
        "tpe+hyperband": optuna_method("tpe+hyperband"),
        "tpe+sha": optuna_method("tpe+sha"),
        "hpo": hpo_method({}),
        "smac": SmacMethod,
        "dehb": DehbMethod,
        "ray": RayMethod,
    }
    known.update({f"hpo:{k}": hpo_method(v) for k, v in VARIANTS.items()})
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {sorted(known)}")
    return {n: known[n] for n in names}


def _quartiles(values: list[float]) -> list[float | None]:
    """Q1, median, Q3 (inclusive method); infinity (never reached) printed as null."""
    never = 1e18  # stands for infinity: quantiles interpolate, and inf * 0 is nan
    finite = [min(v, never) for v in values]
    if len(values) == 1:
        q = [finite[0]] * 3
    else:
        q = statistics.quantiles(finite, n=4, method="inclusive")
    return [None if v >= never / 10 else round(v, 1) for v in q]


def _ratio(outcomes: list[Outcome], reference: float, workers: int) -> float | None:
    inf = float("inf")
    clock = [(o.ticks_to_target if workers > 1 else o.epochs_to_target) or inf for o in outcomes]
    median = statistics.median(clock)
    return None if median == inf else round(median / reference, 3)


def reference_clock(outcomes: list[Outcome], workers: int, cap: int) -> float:
    """Random search's median epochs to target (with several workers: wall-clock epochs); a seed
    that never reached it counts as the cap, ``cap`` epochs or ``cap / workers`` ticks."""
    clock = [o.ticks_to_target if workers > 1 else o.epochs_to_target for o in outcomes]
    return statistics.median([c or cap / workers for c in clock])


def summarize(outcomes: list[Outcome], reference: float, workers: int) -> dict[str, Any]:
    inf = float("inf")
    epochs = [o.epochs_to_target if o.epochs_to_target else inf for o in outcomes]
    ticks = [o.ticks_to_target if o.ticks_to_target else inf for o in outcomes]
    seconds = [o.seconds_to_target if o.seconds_to_target else inf for o in outcomes]
    busiest = [o.busiest_worker_epochs or inf for o in outcomes]
    clock = ticks if workers > 1 else epochs
    median = statistics.median(clock)
    return {
        "reached": f"{sum(o.epochs_to_target is not None for o in outcomes)}/{len(outcomes)}",
        "epochs_to_target_q1_median_q3": _quartiles(epochs),
        "wall_epochs_to_target_q1_median_q3": _quartiles(ticks),
        "seconds_to_target_q1_median_q3": _quartiles(seconds),
        "ratio_vs_random": None if median == inf else round(median / reference, 3),
        **(
            {"busiest_worker_epochs_q1_median_q3": _quartiles(busiest)}
            if any(o.busiest_worker_epochs for o in outcomes)
            else {}
        ),
        # per seed (null: not reached), for a bootstrap of the medians (search_table.py --bootstrap)
        "clock_to_target_per_seed": [None if c == inf else c for c in clock],
        "method_seconds_per_job": round(
            sum(o.overhead for o in outcomes) / max(1, sum(o.jobs for o in outcomes)), 4
        ),
    }


_TASKS: dict[str, Task] = {}


def _unit(unit: tuple[str, str, int, int, int, float | None]) -> Outcome:
    """One search (task, method, seed, workers), in a pool process with its own curve cache."""
    task_name, method, seed, workers, budget, target = unit
    task = _TASKS.get(task_name) or _TASKS.setdefault(task_name, TASKS[task_name]())
    make = factories([method])[method]
    return simulate(task, make(task, seed, workers), workers, budget, target)


def run_task(
    task: type[Task], args: argparse.Namespace, methods: dict[str, Factory], pool: Executor
) -> dict[str, Any]:
    seeds = list(range(args.seeds))
    # The target's seeds: the searched ones (the default), or as many held out from them
    held_out = [args.target_offset + s for s in seeds]
    units = [(task.name, "random", s, 1, args.budget, None) for s in held_out]
    bests = [o.best for o in pool.map(_unit, units)]
    target = statistics.median(bests)
    cap = args.cap or 2 * args.budget
    result: dict[str, Any] = {
        "metric": task.metric,
        "direction": "maximize" if task.maximize else "minimize",
        "max_epochs": task.max_epochs,
        f"target_{task.metric}": round(target, 5),
        "random_best_per_seed": [round(b, 4) for b in bests],
        "workers": {},
    }
    for workers in args.workers:
        rows: dict[str, Any] = {}
        reference = None
        for name in ["random", *(m for m in methods if m != "random")]:
            started = time.perf_counter()
            units = [(task.name, name, s, workers, cap, target) for s in seeds]
            outcomes = list(pool.map(_unit, units))
            if reference is None:  # random search's own median epochs (wall-clock) to target
                reference = reference_clock(outcomes, workers, cap)
            rows[name] = summarize(outcomes, reference, workers)  # type: ignore[arg-type]
            rows[name]["run_seconds"] = round(time.perf_counter() - started, 1)
            print(
                f"  {task.name} w={workers} {name}: {rows[name]['ratio_vs_random']}",
                file=sys.stderr,
                flush=True,
            )
        kinds = sorted(filter(None, args.hpo_run.split(",")), key=lambda k: k != "random")
        run_reference: float | None = None
        for kind in kinds:
            started = time.perf_counter()
            runs = seeds[: args.hpo_run_seeds or None]
            outcomes = [hpo_run(task, s, workers, cap, target, kind) for s in runs]
            name = f"hpo run: {kind}"
            if kind == "random":  # random search through hpo run: the wall-clock reference
                run_reference = reference_clock(outcomes, workers, cap)
            rows[name] = summarize(outcomes, reference, workers)  # type: ignore[arg-type]
            if run_reference is not None:
                rows[name]["ratio_vs_random_hpo_run"] = _ratio(outcomes, run_reference, workers)
            rows[name]["run_seconds"] = round(time.perf_counter() - started, 1)
            print(
                f"  {task.name} w={workers} {name}: {rows[name]['ratio_vs_random']}",
                file=sys.stderr,
                flush=True,
            )
        result["workers"][str(workers)] = rows
    # Each task's result as soon as it is done: a long run stopped early keeps what it measured.
    print(json.dumps({"task": task.name, **result}), file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument(
        "--list-tasks", action="store_true", help="print the suite's task names, one a line"
    )
    parser.add_argument("--methods", default="random,tpe,tpe+hyperband,tpe+sha,hpo,smac,dehb")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (sampler seeds)")
    parser.add_argument("--workers", default="1,4", help="comma-separated worker counts")
    parser.add_argument(
        "--budget", type=int, default=600, help="random search's epochs that set the target"
    )
    parser.add_argument(
        "--cap", type=int, default=0, help="epochs a method may spend to reach it (2 x budget)"
    )
    parser.add_argument(
        "--target-offset",
        type=int,
        default=0,
        help="set the target on random search's seeds K..K+N-1 instead of the searched 0..N-1 "
        "(held out: the searched seeds' random search no longer finds its own target's draws)",
    )
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="in parallel")
    parser.add_argument(
        "--hpo-run",
        default="",
        help="also through `hpo run` itself: 'hpo' (the default search), 'random' (random "
        "search, no pruning: the reference for wall-clock), comma-separated; random first",
    )
    parser.add_argument(
        "--hpo-run-seeds", type=int, default=0, help="seeds for --hpo-run (default: --seeds)"
    )
    args = parser.parse_args()
    if args.list_tasks:
        print("\n".join(TASKS))
        return
    args.workers = [int(w) for w in args.workers.split(",")]
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    logging.getLogger("hpo").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    methods = factories(args.methods.split(","))
    started = time.perf_counter()
    with ProcessPoolExecutor(
        args.processes, mp_context=multiprocessing.get_context("fork")
    ) as pool:
        tasks = {name: run_task(TASKS[name], args, methods, pool) for name in args.tasks.split(",")}
    report = {
        "benchmark": "search_efficiency",
        "budget_epochs": args.budget,
        "seeds": args.seeds,
        "target_seeds_offset": args.target_offset,
        "tasks": tasks,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    parts = []
    for name, t in tasks.items():
        for w, rows in t["workers"].items():
            ratios = {m: r["ratio_vs_random"] for m, r in rows.items()}
            parts.append(f"{name} w={w}: " + ", ".join(f"{m} {v}" for m, v in ratios.items()))
    print("search_efficiency (epochs to random's median best, x random): " + "; ".join(parts))


if __name__ == "__main__":
    main()
