"""Showing a run: a live rich table on a terminal, one plain line per trial elsewhere."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpo.dispatch import WorkerPlan
from hpo.spec import StudySpec, describe_metrics
from hpo.study import STATES, Snapshot, slot_line

__all__ = ["STATES", "LiveProgress", "PlainProgress", "fmt_params", "fmt_values", "make_progress"]


def fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def fmt_values(value: Any, digits: int = 4) -> str:
    """A trial's value (a float) or values (a list, several metrics), or '-' for none."""
    if isinstance(value, int | float):
        return f"{value:.{digits}g}"
    if isinstance(value, list | tuple) and value:
        return ", ".join(f"{v:.{digits}g}" for v in value)
    return "-"


@dataclass
class _WorkerRow:
    device: str = ""
    trial: int | None = None
    epoch: int | None = None
    value: float | None = None
    speed: float | None = None
    status: str = "starting"


@dataclass
class _State:
    spec: StudySpec | None = None
    storage: str = ""
    budget: int | None = 0  # trials; None: no trial limit (an epoch budget bounds the study)
    snap: Snapshot = field(default_factory=Snapshot)
    workers: dict[int, _WorkerRow] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished_at_start: int | None = None  # the study's finished trials when this node started
    epochs_at_start: int | None = None  # the study's trained epochs when this node started
    epochs_spent_shown: bool = False


class PlainProgress:
    """Log lines for CI, nohup and Kubernetes logs: one per finished trial."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.state = _State()

    def started(
        self,
        spec: StudySpec,
        storage: str,
        plans: list[WorkerPlan],
        budget: int | None,
        max_epochs: int | None = None,
    ) -> None:
        self.state.spec, self.state.storage, self.state.budget = spec, storage, budget
        devices = ", ".join(
            f"w{p.index}:{p.device}{'' if p.gpu is None else ':' + p.gpu}"
            + (f" ({p.ranks} processes)" if p.ranks > 1 else "")
            for p in plans
        )
        limits = [] if budget is None else [f"{budget} trials"]
        if max_epochs is not None:
            limits.append(f"{max_epochs} epochs" + (" (no trial limit)" if budget is None else ""))
        self.console.print(
            f"study {spec.name} on {storage}: {describe_metrics(spec.metrics)}, "
            f"budget {', '.join(limits)}, workers {devices}",
            markup=False,
            highlight=False,
        )

    def event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "trial_end":
            value = event.get("value")
            shown = fmt_values(value)
            reason = f" ({event['reason']})" if event.get("reason") else ""
            self.console.print(
                f"trial {event['trial']} {event['state'].lower()} value={shown} "
                f"[{fmt_params(event.get('params') or {})}] w{event['worker']}{reason}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        elif kind == "worker_restart":
            self.console.print(f"worker {event['worker']} died (exit {event['code']}); restarted")
        elif kind == "stopping":
            self.console.print("stopping: running trials are handed back for retry")
        elif kind == "already_complete":
            if event.get("max_epochs") is not None and event["epochs"] >= event["max_epochs"]:
                said = (
                    f"its epoch budget is spent ({event['epochs']}/{event['max_epochs']} epochs "
                    "trained; a higher budget.max_epochs_total raises it)"
                )
            else:
                said = (
                    f"all {event['budget']} trials of its budget finished "
                    "(--n-trials N raises the budget)"
                )
            self.console.print(
                f"study {event['study']} is already complete: {said}",
                markup=False,
                highlight=False,
            )
        elif kind == "epoch_budget_spent" and not self.state.epochs_spent_shown:
            self.state.epochs_spent_shown = True  # every worker says so: once is enough
            self.console.print(
                f"epoch budget spent: {event['used']}/{event['budget']} epochs trained over "
                "the study; no new trial starts",
                markup=False,
                highlight=False,
            )
        elif kind == "warm_start":
            self.console.print(event["message"], markup=False, highlight=False)
        elif kind == "fatal":
            self.console.print(f"worker {event['worker']}: {event['message']}", markup=False)

    def snapshot(self, snap: Snapshot) -> None:
        self.state.snap = snap
        if self.state.finished_at_start is None:
            self.state.finished_at_start = snap.finished
        if self.state.epochs_at_start is None and snap.epochs is not None:
            self.state.epochs_at_start = snap.epochs.used

    def finished(self) -> int:
        """Finished budget slots (a failed trial that a retry replaced is not one), capped at
        the budget where the storage cannot count retries (a gRPC proxy)."""
        if self.state.budget is None:
            return self.state.snap.finished_slots
        return min(self.state.snap.finished_slots, self.state.budget)

    def eta(self) -> float | None:
        """Seconds until a budget is spent (trials or epochs, whichever comes first), at the
        rate of the whole study (all nodes)."""
        s = self.state
        elapsed = time.monotonic() - s.started
        left = []
        progressed = s.snap.finished - (s.finished_at_start or 0)
        if s.budget is not None and progressed > 0 and s.budget > self.finished():
            left.append((s.budget - self.finished()) * elapsed / progressed)
        epochs = s.snap.epochs
        if epochs is not None and not epochs.spent:
            trained = epochs.used - (s.epochs_at_start or 0)
            if trained > 0:
                left.append((epochs.budget - epochs.used) * elapsed / trained)
        return min(left) if left else None

    def head(self) -> str:
        """Budget progress for the header: finished trials (of the budget) and, with an epoch
        budget, epochs trained of it."""
        s = self.state
        shown = f"{self.finished()}" + ("" if s.budget is None else f"/{s.budget}") + " finished"
        if s.snap.epochs is not None:
            shown += f"  epochs {s.snap.epochs.used}/{s.snap.epochs.budget}"
        return shown

    def close(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """A table refreshed in place: trials by state, the best so far, what each worker runs."""

    def __init__(self, console: Console) -> None:
        super().__init__(console)
        self.live = Live(console=console, refresh_per_second=4, transient=False)

    def started(
        self,
        spec: StudySpec,
        storage: str,
        plans: list[WorkerPlan],
        budget: int | None,
        max_epochs: int | None = None,
    ) -> None:
        super().started(spec, storage, plans, budget, max_epochs)
        for p in plans:
            self.state.workers[p.index] = _WorkerRow(
                device=p.device if p.gpu is None else f"cuda:{p.gpu}"
            )
        self.live.start()
        self.live.update(self.render())

    def event(self, event: dict[str, Any]) -> None:
        row = self.state.workers.setdefault(event.get("worker", -1), _WorkerRow())
        kind = event.get("event")
        if kind == "trial_start":
            row.trial, row.epoch, row.value, row.status = event["trial"], 0, None, "training"
        elif kind == "epoch":
            row.epoch, row.value = event["epoch"], event["value"]
            row.speed = event.get("samples_per_second")
        elif kind == "trial_end":
            row.status = event["state"].lower()
        elif kind == "deadline":
            row.status = kind
        super().event(event)  # finished trials and notices also print above the table
        self.live.update(self.render())

    def snapshot(self, snap: Snapshot) -> None:
        super().snapshot(snap)
        self.live.update(self.render())

    def render(self) -> Group:
        """Text objects only, never markup strings: rich redraws the table with the options
        of whatever else is printed, and a line printed with ``markup=False`` would show it raw.
        """
        s = self.state
        counts = slot_line(s.snap.slots, s.budget, s.snap.retries, sep=" ")
        left = self.eta()
        eta = "" if left is None else f"  eta {left:.0f}s"
        head = Text.assemble(
            (s.spec.name if s.spec else "", "bold"),
            f" {self.head()}  {counts}{eta}",
        )
        best = Text("best: -")
        if s.snap.front:
            numbers = ", ".join(str(n) for n, _, _ in s.snap.front[:10])
            more = " ..." if len(s.snap.front) > 10 else ""
            best = Text(f"Pareto front: {len(s.snap.front)} trials ({numbers}{more})")
        elif s.snap.best_value is not None:
            params = fmt_params(s.snap.best_params)
            best = Text(f"best: {s.snap.best_value:.4g} (trial {s.snap.best_number}) {params}")
        table = Table(box=None, pad_edge=False)
        for col in ("worker", "device", "trial", "epoch", "value", "samples/s", "status"):
            table.add_column(col)
        for idx, row in sorted(s.workers.items()):
            if idx < 0:
                continue
            cells = (
                f"w{idx}",
                row.device,
                _s(row.trial),
                _s(row.epoch),
                f"{row.value:.4g}" if row.value is not None else "-",
                f"{row.speed:.0f}" if row.speed else "-",
                row.status,
            )
            table.add_row(*(Text(c) for c in cells))
        return Group(head, best, table)

    def close(self) -> None:
        self.live.stop()


def _s(value: object) -> str:
    return "-" if value is None else str(value)


def make_progress(console: Console) -> PlainProgress:
    """Live table on a terminal, plain lines otherwise."""
    return LiveProgress(console) if console.is_terminal else PlainProgress(console)
