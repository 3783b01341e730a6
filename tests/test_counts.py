"""One count everywhere: the live header, ``hpo run``'s summary and ``hpo status`` count
budget slots the same way (a retried failure once, as its retry; slots not started yet as
waiting), and the header changes with the trial lines printed above it."""

from __future__ import annotations

import io
import re
import signal
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import pythonpath, tiny_spec
from rich.console import Console
from test_fleet import _objective_spec
from test_run import _running, _wait_for, finish, hpo
from typer.testing import CliRunner

from hpo.cli import app
from hpo.dispatch import WorkerPlan
from hpo.dispatch.watch import Ticker
from hpo.progress import LiveProgress
from hpo.spec import StudySpec, load_spec
from hpo.study import Snapshot, get_budget, prepare, slot_line, snapshot

SLOTS = re.compile(
    r"complete \d+\s+pruned \d+\s+fail \d+\s+running \d+\s+waiting \d+(\s+\(\d+ retr(y|ies)\))?"
)


def _slots(text: str) -> str:
    found = SLOTS.search(text)
    assert found, text
    return " ".join(found.group(0).split())


def test_slot_line_adds_up_to_the_budget() -> None:
    snap = Snapshot({"COMPLETE": 2, "FAIL": 3, "RUNNING": 1, "WAITING": 1}, retries=2)
    assert slot_line(snap.slots, 8, snap.retries) == (
        "complete 2  pruned 0  fail 1  running 1  waiting 4  (2 retries)"
    )
    assert slot_line(snap.slots, None, 0, sep=" ") == (
        "complete 2 pruned 0 fail 1 running 1 waiting 1"
    )


class _Seen:
    """An observer that keeps what it was shown, in order."""

    def __init__(self) -> None:
        self.shown: list[Any] = []

    def started(self, *args: Any, **kwargs: Any) -> None:
        pass

    def event(self, event: dict[str, Any]) -> None:
        self.shown.append(event["event"])

    def snapshot(self, snap: Snapshot) -> None:
        self.shown.append(snap.slots.get("COMPLETE", 0))


def test_the_header_is_refreshed_with_the_lines_it_sits_under(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(tiny_spec("lines"))
    handle = prepare(spec, f"sqlite:///{tmp_path / 'l.db'}")
    seen = _Seen()
    ticker = Ticker(handle, spec, seen)
    ticker()  # the first tick reads the counts
    trial = handle.study.ask()
    handle.study.tell(trial, 0.5)  # a worker commits, then says so
    ticker.put({"event": "trial_end", "trial": trial.number, "state": "COMPLETE"})
    ticker()  # within the 2 s refresh period: the line forces a read

    assert seen.shown == [0, "trial_end", 1]


@pytest.mark.slow
def test_header_summary_and_status_agree_after_ctrl_c_and_resume(
    write_spec: Any, tmp_path: Path
) -> None:
    """The issue's case: after Ctrl-C and resume `hpo run` said "fail 4" where `hpo status`
    said "fail 0 (4 retries)"."""
    spec_file = _objective_spec(write_spec, "agree", steps=30, budget={"n_trials": 4})
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    env = {"PYTHONPATH": pythonpath(spec_file.parent)}
    first = hpo("run", str(spec_file), "--workers", "2", cwd=tmp_path, env=env)
    _wait_for(lambda: len(_running(url, "agree")) == 2)
    first.send_signal(signal.SIGINT)
    assert finish(first, timeout=60) is not None and first.returncode == 130

    again = hpo("run", str(spec_file), "--workers", "2", cwd=tmp_path, env=env)
    out = finish(again)
    assert again.returncode == 0, out
    status = CliRunner().invoke(app, ["status", str(spec_file), "--storage", url])
    assert status.exit_code == 0, status.output

    study = optuna.load_study(study_name="agree", storage=url)
    live = LiveProgress(Console(file=io.StringIO(), width=200))
    live.started(load_spec(spec_file), url, [WorkerPlan(0, "cpu", None, 1)], get_budget(study))
    live.snapshot(snapshot(study))
    header = Console(file=io.StringIO(), width=200, record=True)
    header.print(live.render())

    summary = _slots(out)
    assert summary == _slots(status.output) == _slots(header.export_text())
    assert summary.startswith("complete 4 pruned 0 fail 0 running 0 waiting 0 (")
