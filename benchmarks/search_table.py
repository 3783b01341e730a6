"""Markdown tables from search_efficiency.py reports: one table per task and worker count, and a
summary of every method's ratio per task with the geometric mean over the suite.

    python benchmarks/search_table.py report.json [more.json ...] [--methods a,b] [--summary]
    python benchmarks/search_table.py report.json ... --bootstrap 2000 --versus hpo,ray

Reports are merged task by task: a later file's rows join an earlier one's of the same target
(its methods added or replaced), a task with another target replaces it. A median that
was never reached (more than half the seeds missed the target within the cap) counts as the
cap in the geometric mean, a bound in the method's favour, and is printed as ``>ratio``.

``--bootstrap N`` resamples the seeds (with replacement, the same seeds for every method of a
task: seed s gives random search and TPE the same start-up draws) N times and prints each
method's geometric mean as the median and 5-95% interval of the resampled ones; ``--versus A,B``
adds how often A's geometric mean is below B's (A ahead). Reports from before the per-seed
record (``clock_to_target_per_seed``) are left out of it.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path
from typing import Any


def load(paths: list[str]) -> dict[str, Any]:
    tasks: dict[str, Any] = {}
    for path in paths:
        text = Path(path).read_text()
        report = json.loads(text[text.index("{") : text.rindex("}") + 1])
        for name, task in report["tasks"].items():
            task["cap"] = 2 * report["budget_epochs"]
            if name in tasks and _target(tasks[name]) == _target(task):
                for workers, rows in task["workers"].items():  # same target: methods added
                    tasks[name]["workers"].setdefault(workers, {}).update(rows)
            else:
                tasks[name] = task
    return tasks


def _target(task: dict[str, Any]) -> float:
    return next(v for k, v in task.items() if k.startswith("target_"))


def ratio(row: dict[str, Any], task: dict[str, Any], workers: str) -> tuple[float, bool]:
    """The row's ratio vs random, or (cap / random's median, True) when never reached."""
    if row["ratio_vs_random"] is not None:
        return row["ratio_vs_random"], False
    rand = task["workers"][workers]["random"]
    key = (
        "epochs_to_target_q1_median_q3" if workers == "1" else "wall_epochs_to_target_q1_median_q3"
    )
    reference = rand[key][1] or task["cap"]
    cap = task["cap"] / (int(workers) if workers != "1" else 1)
    return round(cap / reference, 3), True


def _q(values: list[float | None]) -> str:
    return " / ".join("-" if v is None else f"{v:g}" for v in values)


def task_tables(tasks: dict[str, Any], methods: list[str] | None) -> list[str]:
    out = []
    for name, task in tasks.items():
        target = _target(task)
        out.append(f"\n**{name}** (target {task['metric']} {target}, {task['direction']}):\n")
        out.append(
            "| method | workers | reached | epochs to target q1 / median / q3 "
            "| wall-clock epochs q1 / median / q3 | ratio vs random |"
        )
        out.append("|---|---|---|---|---|---|")
        for workers, rows in task["workers"].items():
            for method, row in rows.items():
                if methods and method not in methods:
                    continue
                r, capped = ratio(row, task, workers)
                out.append(
                    f"| {method} | {workers} | {row['reached']} "
                    f"| {_q(row['epochs_to_target_q1_median_q3'])} "
                    f"| {_q(row['wall_epochs_to_target_q1_median_q3'])} "
                    f"| {'>' if capped else ''}{r:g} |"
                )
    return out


def summary(tasks: dict[str, Any], methods: list[str] | None) -> list[str]:
    out = []
    worker_counts = sorted({w for t in tasks.values() for w in t["workers"]}, key=int)
    for workers in worker_counts:
        names = [n for n, t in tasks.items() if workers in t["workers"]]
        found = [m for t in names for m in tasks[t]["workers"][workers]]
        order = [m for m in dict.fromkeys(found) if not methods or m in methods]
        out.append(f"\n{workers} worker(s): ratio of median epochs to target vs random\n")
        out.append("| method | " + " | ".join(names) + " | geometric mean | reached |")
        out.append("|---|" + "---|" * (len(names) + 2))
        for method in order:
            cells, logs, hits, seeds = [], [], 0, 0
            for t in names:
                row = tasks[t]["workers"][workers].get(method)
                if row is None:
                    cells.append("")
                    continue
                r, capped = ratio(row, tasks[t], workers)
                cells.append(f"{'>' if capped else ''}{r:g}")
                logs.append(math.log(r))
                got, of = (int(x) for x in row["reached"].split("/"))
                hits, seeds = hits + got, seeds + of
            gm = math.exp(sum(logs) / len(logs)) if len(logs) == len(names) else None
            gm_text = "" if gm is None else f"{gm:.3f}"
            out.append(f"| {method} | " + " | ".join(cells) + f" | {gm_text} | {hits}/{seeds} |")
    return out


def _resampled_median(values: list[float | None], picks: list[int], cap: float) -> float:
    return min(cap, statistics.median(math.inf if values[i] is None else values[i] for i in picks))


def bootstrap(
    tasks: dict[str, Any], methods: list[str] | None, draws: int, versus: list[str]
) -> list[str]:
    """Each method's geometric mean over resampled seeds: median and 5-95% interval."""
    rng = random.Random(0)
    out = []
    key = "clock_to_target_per_seed"
    worker_counts = sorted({w for t in tasks.values() for w in t["workers"]}, key=int)
    for workers in worker_counts:
        names = [n for n, t in tasks.items() if workers in t["workers"]]
        found = [m for t in names for m in tasks[t]["workers"][workers]]
        order = [
            m
            for m in dict.fromkeys(found)
            if (not methods or m in methods)
            and all(key in tasks[t]["workers"][workers].get(m, {}) for t in names)
        ]
        if "random" not in order:
            continue
        gms: dict[str, list[float]] = {m: [] for m in order}
        for _ in range(draws):
            logs = dict.fromkeys(order, 0.0)
            for t in names:
                rows = tasks[t]["workers"][workers]
                n = len(rows["random"][key])
                picks = [rng.randrange(n) for _ in range(n)]
                cap = tasks[t]["cap"] / int(workers)
                reference = _resampled_median(rows["random"][key], picks, cap)
                for m in order:
                    logs[m] += math.log(_resampled_median(rows[m][key], picks, cap) / reference)
            for m in order:
                gms[m].append(math.exp(logs[m] / len(names)))
        out.append(f"\n{workers} worker(s): geometric mean over {draws} resamples of the seeds\n")
        out.append("| method | median | 5% | 95% |")
        out.append("|---|---|---|---|")
        for m in order:
            q = statistics.quantiles(gms[m], n=20, method="inclusive")
            out.append(f"| {m} | {statistics.median(gms[m]):.3f} | {q[0]:.3f} | {q[-1]:.3f} |")
        if len(versus) == 2 and all(v in gms for v in versus):
            a, b = versus
            ahead = sum(x < y for x, y in zip(gms[a], gms[b], strict=True)) / draws
            out.append(f"\n{a} ahead of {b} (lower geometric mean) in {ahead:.0%} of resamples")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--methods", default="", help="only these (comma-separated)")
    parser.add_argument("--summary", action="store_true", help="the summary only")
    parser.add_argument("--bootstrap", type=int, default=0, help="resamples of the seeds")
    parser.add_argument("--versus", default="", help="A,B: how often A is ahead of B")
    args = parser.parse_args()
    tasks = load(args.reports)
    methods = args.methods.split(",") if args.methods else None
    lines = summary(tasks, methods)
    if args.bootstrap:
        lines += bootstrap(tasks, methods, args.bootstrap, args.versus.split(","))
    if not args.summary:
        lines += task_tables(tasks, methods)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
