"""Markdown tables from search_efficiency.py reports: one table per task and worker count, and a
summary of every method's ratio per task with the geometric mean over the suite.

    python benchmarks/search_table.py report.json [more.json ...] [--methods a,b] [--summary]

Reports are merged task by task: a later file's rows join an earlier one's of the same target
(its methods added or replaced), a task with another target replaces it. A median that
was never reached (more than half the seeds missed the target within the cap) counts as the
cap in the geometric mean, a bound in the method's favour, and is printed as ``>ratio``.
"""

from __future__ import annotations

import argparse
import json
import math
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--methods", default="", help="only these (comma-separated)")
    parser.add_argument("--summary", action="store_true", help="the summary only")
    args = parser.parse_args()
    tasks = load(args.reports)
    methods = args.methods.split(",") if args.methods else None
    lines = summary(tasks, methods)
    if not args.summary:
        lines += task_tables(tasks, methods)
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
