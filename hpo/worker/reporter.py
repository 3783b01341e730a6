"""The trial reporter: each epoch's value to the trial, the study's epoch budget and the display.

The trainer path (:mod:`hpo.worker.training`) and the objective path (:mod:`hpo.worker.trial`)
both report through one :class:`TrialReporter`, which also holds what the trial ends with: its
attributes, its values and the best epoch's weights.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from hpo.board import Board, open_board
from hpo.errors import EpochBudgetSpent, Interrupted, TrialError
from hpo.spec import StudySpec
from hpo.study import EPOCH_BUDGET_SPENT, EpochMeter
from hpo.worker.values import Value, as_values, pick_epoch

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["Emit", "Report", "TrialReporter"]

#: Where the reporter sends its events (``{"event": "epoch", ...}``) for display.
Emit = Callable[[dict[str, Any]], None]


class TrialReporter:
    """One trial's reports: every epoch's value goes to the trial, the epoch budget and the
    display through here, for the trainer path and the objective path alike.

    A multi-objective study reports nothing to the trial (Optuna cannot prune it and refuses
    ``trial.report``); its epochs' values are kept here and still shown as progress.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        spec: StudySpec,
        stop: threading.Event,
        emit: Emit,
        epochs: EpochMeter | None = None,
        board_path: str | None = None,
    ):
        self.trial, self.spec, self.stop, self.emit = trial, spec, stop, emit
        self.board_path = board_path  # TensorBoard: None when off
        self._board: Board | None = None  # opened at the first epoch (or writer) it needs
        self._written = 0  # the last step whose metrics on_epoch wrote (record skips it)
        self.epochs = epochs  # the study's epoch budget; None: the study has none
        self.counted: set[int] = set()  # steps counted against it (a step reported again is not)
        self._send = trial.report  # Optuna's own method, even once ``tap`` shadows it
        self.values: list[float] = []  # the first metric, each epoch
        self.vectors: list[list[float]] = []  # all metrics, each epoch (multi-objective)
        self.attrs: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.last_step = spec.train.epochs if spec.objective is None else None
        self.best_model: dict[str, Any] | None = None

    def replay(self, history: list[dict[str, float]]) -> None:
        """Report a resumed predecessor's epochs, so the trial's curve is continuous."""
        names = [m.name for m in self.spec.metrics]
        for step, metrics in enumerate(history, 1):
            vector = [float(metrics.get(n, float("nan"))) for n in names]
            self.values.append(vector[0])
            if self.spec.multi_objective:
                self.vectors.append(vector)
            else:
                self.trial.report(vector[0], step)

    @property
    def board(self) -> Board | None:
        """The trial's TensorBoard run, opened on first use; what an earlier attempt wrote after
        this attempt's first step (a retry resumes after its replayed epochs) is superseded."""
        if self._board is None and self.board_path is not None:
            self._board = open_board(self.board_path, first_step=len(self.values) + 1)
            if self._board is None:
                self.board_path = None  # could not open: do not try every epoch
        return self._board

    @property
    def writer(self) -> SummaryWriter | None:
        """The trial's ``SummaryWriter`` (None with TensorBoard off), for custom objectives."""
        board = self.board
        return None if board is None else board.writer

    def close_board(self, final: Value | None) -> None:
        """Write the trial's parameters and final value(s) as hparams and close its run."""
        if self._board is None:
            return
        values = final if isinstance(final, list) else [final] if final is not None else []
        names = [m.name for m in self.spec.metrics]
        metrics = {f"hparam/{n}": float(v) for n, v in zip(names, values, strict=False)}
        self._board.close(dict(self.trial.params), metrics)
        self._board = None

    def restart(self) -> None:
        """Training starts over (after an OOM): earlier epochs no longer count."""
        if self._board is not None:  # reopened from step 1: the restart's curve replaces it
            self._board.writer.close()
            self._board = None
        self.values.clear()
        self.vectors.clear()
        self.counted.clear()  # its epochs are trained again, and count again

    def record(self, value: Any, step: int, extra: dict[str, float] | None = None) -> None:
        """Record epoch ``step`` (one float, or for several metrics their values as a list or a
        dict by name, or just the first metric's float for progress) to the trial, the epoch
        budget and the display. The trial ends here when the epoch budget is spent (unless this
        was its last epoch) or the node is stopping (Ctrl-C, SIGTERM)."""
        if self.spec.multi_objective and not isinstance(value, int | float):
            vector = as_values(value, self.spec)
            self.vectors.append(vector)
            value = vector[0]
        value = float(value)
        self.values.append(value)
        if not self.spec.multi_objective:
            self._send(value, step)
        if self._written != step and self.board is not None:  # a custom objective's report
            vector = self.vectors[-1] if self.spec.multi_objective else [value]
            names = [m.name for m in self.spec.metrics]
            self.board.epoch(step, dict(zip(names, vector, strict=False)))
        count = None
        if self.epochs is not None and step not in self.counted:
            self.counted.add(step)
            count = self.epochs.add()
        self.emit(
            {
                "event": "epoch",
                "trial": self.trial.number,
                "epoch": step,
                "value": value,
                **(extra or {}),
            }
        )
        if count is not None and count.spent and not self.is_last(step):
            raise EpochBudgetSpent(
                f"{EPOCH_BUDGET_SPENT} ({count.used}/{count.budget} epochs), "
                f"stopped after epoch {step}"
            )
        if self.stop.is_set():
            raise Interrupted(f"stopped at epoch {step}")

    def is_last(self, step: int) -> bool:
        """Whether ``step`` is the trial's last epoch (known for the trainer only): stopping
        there would save nothing and lose the result."""
        return self.last_step is not None and step >= self.last_step

    def tap(self) -> None:
        """Send the user's own ``trial.report`` calls through :meth:`record`.

        Only this instance's ``report`` attribute is shadowed: the trial stays the real
        ``optuna.Trial`` (isinstance holds; suggest, should_prune, attrs untouched) and every
        value still goes through Optuna's ``Trial.report`` to hpo's storage. Wrapping the storage
        instead would cover only the database path (not a gRPC proxy); emitting events after
        the call would show no live progress and leave Ctrl-C waiting for the whole trial.
        """
        setattr(self.trial, "report", self.record)  # noqa: B010 - mypy refuses a method assign

    def report(self, value: Any, step: int, extra: dict[str, float] | None = None) -> None:
        """The ``report`` callback of the trainer and the ``(params, report)`` form: record,
        then prune (except at the last epoch; never with several metrics)."""
        self.record(value, step, extra)
        if self.spec.multi_objective:
            return
        if self.is_last(step):
            return  # the run is complete: pruning now would save nothing and lose the result
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at epoch {step}, {self.spec.metrics[0].name}={value:.4g}"
            )

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.board is not None:
            self.board.epoch(epoch, metrics)
            self._written = epoch
        self.attrs.update(
            {
                k: round(metrics[k], 3)
                for k in ("samples_per_second", "peak_memory_mb")
                if k in metrics
            }
        )
        names = [m.name for m in self.spec.metrics]
        self.report(
            [metrics.get(n, float("nan")) for n in names]
            if self.spec.multi_objective
            else metrics[names[0]],
            epoch,
            {"samples_per_second": metrics.get("samples_per_second", 0.0)},
        )

    def final_value(self, best_epoch: int | None = None) -> Value:
        """The trial's value(s) from its epochs: the best epoch's (by the first metric), or
        the last one's (``objective_value``).

        Args:
            best_epoch: the trainer's best epoch (1-based; 0: none was finite), which this
                follows rather than deciding again; None (a custom objective): picked here.
        """
        if self.spec.multi_objective and not self.vectors:
            names = ", ".join(m.name for m in self.spec.metrics)
            raise TrialError("error", f"no values for the metrics ({names}) were reported")
        if not self.values:
            raise TrialError("no_value", "the objective returned None and reported no value")
        if self.spec.objective_value == "last":
            index = len(self.values) - 1
        elif best_epoch is not None:
            index = max(0, best_epoch - 1)
        elif self.spec.multi_objective:
            index = pick_epoch([v[0] for v in self.vectors], self.spec)
        else:
            pick = max if self.spec.metrics[0].direction == "maximize" else min
            return pick(self.values)
        return self.vectors[index] if self.spec.multi_objective else self.values[index]

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        return {
            **self.attrs,
            "epochs_run": len(self.values),
            "seconds_per_epoch": round(seconds / max(1, len(self.values)), 3),
        }


class Report:
    """The ``report`` of the ``(params, report)`` form: ``report(value, step)`` records (and
    may prune, see :meth:`TrialReporter.report`); ``report.writer`` is the trial's TensorBoard
    ``SummaryWriter`` (None with ``logging: {tensorboard: false}``)."""

    def __init__(self, reporter: TrialReporter) -> None:
        self._reporter = reporter

    def __call__(self, value: Any, step: int, extra: dict[str, float] | None = None) -> None:
        self._reporter.report(value, step, extra)

    @property
    def writer(self) -> SummaryWriter | None:
        return self._reporter.writer
