"""Random search as ``hpo run`` draws it with several workers: one stream per worker.

Each worker's sampler has a seed of its own (``seed + 7919 * worker``, hpo.study.search.build
``worker_seed``), so with 4 workers seed s draws other configurations than the simulation's one
sampler of seed s (search_efficiency.py). This replays both orders offline: configurations drawn
(round robin over the workers' streams) until one whose full curve reaches ``--target``.

    python benchmarks/random_streams.py --task digits_cnn --target 0.98886 --seeds 10,50

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).parent))

from _search_methods import suggest  # noqa: E402
from _search_tasks import Task  # noqa: E402
from _suite_tasks import TASKS  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from hpo.study.search.build import worker_seed  # noqa: E402


def configs_to_target(task: Task, seed: int, workers: int, target: float, cap: int) -> int | None:
    """Configurations drawn until one reaches the target (None: not within ``cap``)."""
    studies = [
        optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=worker_seed(seed, w)))
        for w in range(workers)
    ]
    for n in range(cap):
        study = studies[n % workers]
        trial = study.ask()
        curve = task.curve(suggest(trial, task.space))
        study.tell(trial, 0.0)
        if task.reaches(task.best([curve.at(e)[0] for e in range(1, task.max_epochs + 1)]), target):
            return n + 1
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="digits_cnn", choices=sorted(TASKS))
    parser.add_argument("--target", type=float, required=True)
    parser.add_argument("--seeds", default="10,50", help="seed counts (seeds 0..N-1)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--cap", type=int, default=60, help="configurations at most")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    task = TASKS[args.task]()
    report: dict[str, dict[str, object]] = {}
    seed_counts = [int(x) for x in args.seeds.split(",")]
    for label, workers in (("one stream", 1), (f"{args.workers} streams", args.workers)):
        counts = [
            configs_to_target(task, s, workers, args.target, args.cap)
            for s in range(max(seed_counts))
        ]
        row: dict[str, object] = {"configs_to_target_per_seed": counts}
        for n in seed_counts:
            row[f"median_{n}_seeds"] = statistics.median(
                c if c is not None else float("inf") for c in counts[:n]
            )
        report[label] = row
    print(json.dumps({"task": args.task, "target": args.target, "streams": report}, indent=2))
    medians = "; ".join(
        f"{label}: "
        + ", ".join(f"{k.split('_')[1]} seeds {v}" for k, v in row.items() if "median" in k)
        for label, row in report.items()
    )
    print(f"random_streams {args.task} (median configurations to target): {medians}")


if __name__ == "__main__":
    main()
