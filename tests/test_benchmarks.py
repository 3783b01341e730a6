"""The search-efficiency benchmark keeps running: a tiny run of its harness, no peers needed."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parent.parent


def _bench(script: str, *args: str, timeout: int = 120) -> str:
    """Run ``benchmarks/script`` with ``args`` from the repository root; its stdout."""
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_search_efficiency_runs_and_reports_every_method() -> None:
    out = _bench(
        "search_efficiency.py",
        *("--tasks", "digits_cnn", "--seeds", "2", "--budget", "100", "--workers", "1,2"),
        *("--processes", "1", "--methods", "random,tpe+hyperband,hpo,hpo:random-per-worker"),
        timeout=300,
    )
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])
    task = report["tasks"]["digits_cnn"]
    assert 0.5 < task["target_val_accuracy"] <= 1.0
    for workers in ("1", "2"):
        rows = task["workers"][workers]
        assert set(rows) == {"random", "tpe+hyperband", "hpo", "hpo:random-per-worker"}
        assert rows["random"]["ratio_vs_random"] in (1.0, None)
        assert len(rows["hpo"]["clock_to_target_per_seed"]) == 2
    # hpo run's structure (a sampler per worker, seed + 7919 * worker): with one worker it is
    # random search's own stream
    key = "clock_to_target_per_seed"
    one = task["workers"]["1"]
    assert one["hpo:random-per-worker"][key] == one["random"][key]
    assert out.strip().splitlines()[-1].startswith("search_efficiency")


def test_the_bootstrap_resamples_seeds_alike_for_every_method(tmp_path: Path) -> None:
    """Method a needs half random search's epochs on every seed, b twice them or never: every
    resample gives a 0.5 and b at least 2 (a never-reached median counts as the cap, 200)."""

    def row(per_seed: list[float | None], ratio: float) -> dict[str, Any]:
        return {"clock_to_target_per_seed": per_seed, "ratio_vs_random": ratio, "reached": "4/4"}

    rows = {
        "random": row([10, 12, 8, 10], 1.0),
        "a": row([5, 6, 4, 5], 0.5),
        "b": row([20, None, 16, 20], 2.0),
    }
    task = {"metric": "m", "direction": "maximize", "target_m": 1.0, "workers": {"1": rows}}
    report = {"budget_epochs": 100, "tasks": {"t": task}}
    (tmp_path / "r.json").write_text(json.dumps(report))
    out = _bench(
        "search_table.py",
        str(tmp_path / "r.json"),
        "--summary",
        "--bootstrap",
        "300",
        "--versus",
        "a,b",
    )
    assert "| a | 0.500 | 0.500 | 0.500 |" in out, out
    b = [line for line in out.splitlines() if line.startswith("| b | ")][-1]  # bootstrap
    assert all(float(x) >= 2.0 for x in b.strip("| ").split(" | ")[1:]), b
    assert "a ahead of b (lower geometric mean) in 100% of resamples" in out


def _suite() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _suite_tasks import TASKS

    return TASKS


def test_list_tasks_prints_the_suite_one_name_a_line() -> None:
    names = _bench("search_efficiency.py", "--list-tasks").split()
    assert names == list(_suite())
    assert len(names) >= 6 and {"digits_cnn", "digits_mlp"} <= set(names)


def _random_params(space: Any, rng: random.Random) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in space:
        if not p.active(params):
            continue
        if p.kind == "cat":
            params[p.name] = rng.choice(p.choices)
        else:
            lo, hi = (math.log(p.low), math.log(p.high)) if p.log else (p.low, p.high)
            x = lo + rng.random() * (hi - lo)
            x = math.exp(x) if p.log else x
            params[p.name] = int(round(x)) if p.kind == "int" else x
    return params


@pytest.mark.parametrize("name", [n for n in _suite() if n != "digits_mlp"])
def test_every_task_loads_and_its_curves_are_sane(name: str) -> None:
    """Each task answers any configuration of its space with a full curve of finite values in the
    metric's range; configurations differ (a search has something to find), and the same
    configuration gets the same curve. digits_mlp trains live: test_search_efficiency covers it."""
    task = _suite()[name]()
    assert task.space and task.max_epochs >= 10 and task.about
    rng = random.Random(0)
    finals = []
    for _ in range(12):
        params = _random_params(task.space, rng)
        curve = task.curve(params)
        points = [curve.at(e) for e in range(1, task.max_epochs + 1)]
        values = [v for v, _ in points]
        assert all(math.isfinite(v) for v in values)
        assert all(s >= 0 for _, s in points)
        if task.maximize:
            assert all(0.0 <= v <= 1.0 for v in values)
        else:
            assert all(0.0 <= v <= 10.0 for v in values)
        assert task.curve(dict(params)).at(task.max_epochs)[0] == values[-1]
        finals.append(task.best(values))
    assert max(finals) - min(finals) > 0.01


def test_a_recorded_configuration_gets_its_own_curve_and_minimised_targets_count() -> None:
    """The nearest recorded configuration of a recorded one is itself; ``hpo run``'s ledger
    reader finds where a minimised task's completed trial first reaches its target."""
    tasks = _suite()
    from _search_hpo_run import _reached

    task = tasks["diabetes_reg"]()
    row = json.loads(task.spec.path.read_text())["rows"][7]
    assert task.curve(row["params"]).values == row["values"]
    assert task.best([0.5, 0.3, 0.4]) == 0.3 and task.reaches(0.3, 0.35)
    full = task.max_epochs
    ledger = [["0", "pid", "0", str(e), "0.5", "0"] for e in range(1, full + 1)]
    ledger += [["0", "pid", "1", str(e), "0.3" if e == 3 else "0.9", "0"] for e in range(1, full)]
    assert _reached(ledger, 0.35, tasks["diabetes_reg"]) is None  # trial 1 not complete
    ledger.append(["0", "pid", "1", str(full), "0.9", "0"])
    assert _reached(ledger, 0.35, tasks["diabetes_reg"]) == len(ledger) - 1


def test_random_streams_replays_one_stream_per_worker() -> None:
    """With one worker the replay is the simulation's random search: seed s's stream alone."""
    out = _bench(
        "random_streams.py",
        *("--task", "digits_cnn", "--target", "0.98886", "--seeds", "3", "--workers", "4"),
        *("--cap", "40"),
    )
    report = json.loads(out[out.index("{") : out.rindex("}") + 1])["streams"]
    one, four = report["one stream"], report["4 streams"]
    assert len(one["configs_to_target_per_seed"]) == 3
    assert one["configs_to_target_per_seed"] != four["configs_to_target_per_seed"]
    assert out.strip().splitlines()[-1].startswith("random_streams digits_cnn")


def test_an_unreached_seed_counts_as_the_cap_in_wall_clock_epochs() -> None:
    """With 4 workers the cap is 1,200 epochs = 300 ticks: the reference of a random search that
    missed in most seeds is 300 ticks, not 1,200 (digits_mlp through hpo run read 0.046x)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _search_sim import Outcome
    from search_efficiency import reference_clock

    missed = [Outcome() for _ in range(3)]
    hit = Outcome(epochs_to_target=400, ticks_to_target=100)
    assert reference_clock([*missed, hit], 4, 1200) == 300
    assert reference_clock([*missed, hit], 1, 1200) == 1200
    assert reference_clock([hit, hit, Outcome()], 4, 1200) == 100
