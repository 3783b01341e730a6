"""One trial: suggest parameters, train (or call the user's objective), report, decide.

This is the one place where Optuna and the trainer meet. The trainer's ``on_epoch`` callback
reports the study metric to the trial and raises ``TrialPruned`` when the pruner says so.

A custom objective comes in two forms: hpo's ``fn(params, report)``, where ``report`` is that same
callback, and Optuna's ``fn(trial)``, called with the real ``optuna.Trial`` this worker claimed
(the spec's ``space`` already suggested), which reports and prunes as any Optuna objective does.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo.checkpoints import bind
from hpo.errors import EpochBudgetSpent, Interrupted, StorageError, TrialError
from hpo.spec import StudySpec, load_objective, objective_form
from hpo.study import EPOCH_BUDGET_SPENT, EpochMeter, suggest
from hpo.study.artifacts import TrialFiles
from hpo.worker.training import free_memory, train_trial
from hpo.worker.values import Value, as_told, as_values, pick_epoch

PRUNED = TrialState.PRUNED

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]


@dataclass
class TrialOutcome:
    """How a trial ended, as the worker will tell it to the study."""

    state: TrialState
    value: Value | None = None  # a list for a multi-objective study
    reason: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    best_model: dict[str, Any] | None = None  # the best epoch's weights and metrics


class _Progress:
    """The per-epoch bookkeeping shared by the trainer path and the objective path.

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
    ):
        self.trial, self.spec, self.stop, self.emit = trial, spec, stop, emit
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

    def restart(self) -> None:
        """Training starts over (after an OOM): earlier epochs no longer count."""
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
                f"pruned at epoch {step} ({self.spec.metrics[0].name}={value:.4g})"
            )

    def on_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
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

    def final_value(self) -> Value:
        """The trial's value(s) from its epochs: the best epoch's (by the first metric), or
        the last one's (``objective_value``)."""
        if self.spec.multi_objective:
            if not self.vectors:
                names = ", ".join(m.name for m in self.spec.metrics)
                raise TrialError("error", f"no values for the metrics ({names}) were reported")
            return self.vectors[pick_epoch([v[0] for v in self.vectors], self.spec)]
        if not self.values:
            raise TrialError("no_value", "the objective returned None and reported no value")
        if self.spec.objective_value == "last":
            return self.values[-1]
        pick = max if self.spec.metrics[0].direction == "maximize" else min
        return pick(self.values)

    def summary(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        return {
            **self.attrs,
            "epochs_run": len(self.values),
            "seconds_per_epoch": round(seconds / max(1, len(self.values)), 3),
        }


def _objective(
    params: dict[str, Any],
    spec: StudySpec,
    progress: _Progress,
    files: TrialFiles | None,
    key: int,
) -> Value:
    func = load_objective(spec.objective or "")
    checkpoints = files if spec.artifacts.checkpoints else None
    with bind(progress.trial.number, checkpoints, key):
        if objective_form(func) == "trial":
            progress.tap()
            result = func(progress.trial)
        else:
            result = func(params, progress.report)
    if result is None:
        return progress.final_value()
    return as_told(as_values(result, spec), spec)


def run_trial(
    trial: optuna.Trial,
    spec: StudySpec,
    device: str,
    stop: threading.Event,
    emit: Emit,
    files: TrialFiles | None = None,
    key: int | None = None,
    epochs: EpochMeter | None = None,
) -> TrialOutcome:
    """Run ``trial`` to an outcome; never raises for a trial-level failure.

    ``files`` holds checkpoints and best models; ``key`` is the original trial's number, under
    which a retry finds its predecessor's checkpoint; ``epochs`` counts each epoch trained
    against the study's epoch budget.
    """
    key = trial.number if key is None else key
    outcome = _attempt(trial, spec, device, stop, emit, files, key, epochs)
    if outcome.state == TrialState.FAIL:
        # The failure's traceback held the trial's tensors and is gone now that _attempt has
        # returned; collect them before the next trial. Only on failure: a gc pass costs
        # ~60 ms, and a trial that succeeds frees its memory by reference counting.
        free_memory(device)
    return outcome


def _attempt(
    trial: optuna.Trial,
    spec: StudySpec,
    device: str,
    stop: threading.Event,
    emit: Emit,
    files: TrialFiles | None,
    key: int,
    epochs: EpochMeter | None,
) -> TrialOutcome:
    progress = _Progress(trial, spec, stop, emit, epochs)
    try:
        params = suggest(trial, spec)
        emit({"event": "trial_start", "trial": trial.number, "params": params})
        if spec.objective is None:
            value = train_trial(params, spec, device, progress, files, key)
        else:
            value = _objective(params, spec, progress, files, key)
        return TrialOutcome(
            TrialState.COMPLETE, value, attrs=progress.summary(), best_model=progress.best_model
        )
    except optuna.TrialPruned as exc:
        last = progress.values[-1] if progress.values else None
        return TrialOutcome(
            PRUNED, last, str(exc), progress.summary(), best_model=progress.best_model
        )
    except EpochBudgetSpent as exc:
        # PRUNED, not COMPLETE: the sampler and the pruner read it as a run stopped at this
        # epoch (its curve still informs both), never as the value of a finished run.
        last = progress.values[-1] if progress.values else None
        attrs = {**progress.summary(), "stop_reason": EPOCH_BUDGET_SPENT}
        return TrialOutcome(PRUNED, last, str(exc), attrs, best_model=progress.best_model)
    except (Interrupted, KeyboardInterrupt) as exc:
        reason = f"interrupted: {exc}" if str(exc) else "interrupted"
        return TrialOutcome(TrialState.FAIL, None, reason, progress.summary(), interrupted=True)
    except TrialError as exc:
        reason = f"{exc.reason}: {exc}"
    except StorageError:
        raise  # the database is gone, not the trial's fault: the worker ends, the trial is retried
    except MemoryError:
        reason = "oom: out of host memory"
    except Exception as exc:  # noqa: BLE001 - one trial's crash never takes the worker down
        if type(exc).__name__ == "OutOfMemoryError":
            reason = f"oom: {str(exc).splitlines()[0] if str(exc) else 'out of GPU memory'}"
        else:
            log.error("trial %d failed:\n%s", trial.number, traceback.format_exc())
            reason = f"error: {type(exc).__name__}: {exc}"
    return TrialOutcome(TrialState.FAIL, None, reason, progress.summary())
