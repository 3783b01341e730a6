"""Progress output: plain lines for logs, a live table on a terminal. Driven by worker events."""

from __future__ import annotations

import io
import re

from conftest import tiny_spec
from rich.console import Console

from hpo.dispatch import WorkerPlan
from hpo.progress import LiveProgress, PlainProgress, make_progress
from hpo.spec import StudySpec
from hpo.study import Snapshot

PLANS = [WorkerPlan(0, "cpu", None, 1), WorkerPlan(1, "cpu", None, 1)]
SPEC = StudySpec.model_validate(tiny_spec("progress"))


def _events() -> list[dict]:
    """What two workers report while running three trials (one pruned, one failed)."""
    return [
        {"event": "worker_start", "worker": 0, "pid": 11, "device": "cpu", "gpu": None},
        {"event": "trial_start", "worker": 0, "trial": 0, "params": {"lr": 0.1}},
        {"event": "trial_start", "worker": 1, "trial": 1, "params": {"lr": 0.02}},
        {"event": "epoch", "worker": 0, "epoch": 1, "value": 0.5, "samples_per_second": 900.0},
        {"event": "epoch", "worker": 1, "epoch": 1, "value": 0.2, "samples_per_second": 800.0},
        {
            "event": "trial_end",
            "worker": 0,
            "trial": 0,
            "state": "COMPLETE",
            "value": 0.9,
            "reason": None,
            "params": {"lr": 0.1},
        },
        {
            "event": "trial_end",
            "worker": 1,
            "trial": 1,
            "state": "PRUNED",
            "value": 0.2,
            "reason": "pruned at epoch 1",
            "params": {"lr": 0.02},
        },
        {"event": "worker_restart", "worker": 1, "code": -9},
        {"event": "trial_start", "worker": 0, "trial": 2, "params": {"lr": 0.3}},
        {
            "event": "trial_end",
            "worker": 0,
            "trial": 2,
            "state": "FAIL",
            "value": None,
            "reason": "non_finite_loss: loss became NaN",
            "params": {"lr": 0.3},
        },
    ]


def test_not_a_terminal_prints_one_line_per_finished_trial() -> None:
    buffer = io.StringIO()
    progress = make_progress(Console(file=buffer, width=200))
    assert type(progress) is PlainProgress

    progress.started(SPEC, "sqlite:///x.db", PLANS, budget=4)
    for event in _events():
        progress.event(event)
    progress.close()

    lines = buffer.getvalue().splitlines()
    trial_lines = [line for line in lines if re.match(r"trial \d+ ", line)]
    assert trial_lines == [
        "trial 0 complete value=0.9 [lr=0.1] w0",
        "trial 1 pruned value=0.2 [lr=0.02] w1 (pruned at epoch 1)",
        "trial 2 fail value=- [lr=0.3] w0 (non_finite_loss: loss became NaN)",
    ]
    assert lines[0].startswith(
        "study progress on sqlite:///x.db: metric val_accuracy (maximize), budget 4 trials"
    )
    assert "worker 1 died (exit -9); restarted" in lines
    assert len(lines) == 5  # no line per epoch or per trial start


def test_terminal_table_shows_budget_best_workers_and_eta() -> None:
    progress = LiveProgress(Console(file=io.StringIO(), force_terminal=True, width=160))
    progress.started(SPEC, "sqlite:///x.db", PLANS, budget=4)
    progress.snapshot(Snapshot({"WAITING": 4}))
    for event in _events()[:5]:
        progress.event(event)
    progress.snapshot(Snapshot({"COMPLETE": 1, "PRUNED": 1, "WAITING": 2}, 0.9, {"lr": 0.1}, 0))
    shown = Console(file=io.StringIO(), width=160, record=True)
    shown.print(progress.render())
    progress.close()

    text = shown.export_text()
    assert "2/4 finished" in text and "complete 1 pruned 1 fail 0 running 0 waiting 2" in text
    assert re.search(r"eta \d+s", text)
    assert "best: 0.9 (trial 0) lr=0.1" in text
    assert re.search(r"w0\s+cpu\s+0\s+1\s+0.5\s+900\s+training", text)
    assert re.search(r"w1\s+cpu\s+1\s+1\s+0.2\s+800\s+training", text)


def test_live_table_never_prints_raw_markup() -> None:
    """A trial line is printed with markup off while the table is live; rich redraws the
    table with the same options, so a markup string in it would show as `[bold]...[/]`."""
    buffer = io.StringIO()
    progress = LiveProgress(
        Console(file=buffer, force_terminal=True, force_interactive=True, width=160)
    )
    progress.started(SPEC, "sqlite:///x.db", PLANS, budget=4)
    progress.snapshot(Snapshot({"WAITING": 4}, 0.9, {"opt": "[adam]"}, 0))
    progress.live.refresh()  # as rich's refresh thread does 4 times a second
    for event in _events():
        progress.event(event)
    progress.close()

    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buffer.getvalue())  # terminal codes
    assert "progress" in shown and "[bold]" not in shown and "[/]" not in shown
    assert "opt=[adam]" in shown  # a value with brackets is shown as it is


def test_header_counts_budget_slots_never_more_than_the_budget() -> None:
    """Two interrupted trials were retried: 26 finished rows, 24 slots."""
    progress = LiveProgress(Console(file=io.StringIO(), force_terminal=True, width=160))
    progress.started(SPEC, "sqlite:///x.db", PLANS, budget=24)
    progress.snapshot(Snapshot({"COMPLETE": 24, "FAIL": 2}))
    shown = Console(file=io.StringIO(), width=160, record=True)
    shown.print(progress.render())
    progress.close()
    assert "24/24 finished" in shown.export_text()


def test_header_counts_slots_when_retries_are_known() -> None:
    """20 slots finished; 6 of the 26 finished rows are failed trials that retries replaced
    (4 of those retries finished, 2 wait): the header says 20, not the capped 24."""
    progress = PlainProgress(Console(file=io.StringIO()))
    progress.started(SPEC, "sqlite:///x.db", PLANS, budget=24)
    progress.snapshot(Snapshot({"COMPLETE": 20, "FAIL": 6, "WAITING": 2}, retries=6))
    assert progress.finished() == 20
