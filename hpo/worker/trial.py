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
import traceback
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hpo import board
from hpo.checkpoints import bind
from hpo.errors import EpochBudgetSpent, Interrupted, StorageError, TrialError
from hpo.spec import StudySpec, load_objective, objective_form
from hpo.study import EPOCH_BUDGET_SPENT, EpochMeter, TrialFiles, suggest
from hpo.worker.group import Leader
from hpo.worker.reporter import Emit, Report, TrialReporter
from hpo.worker.training import free_memory, train_trial
from hpo.worker.values import Value, as_told, as_values

__all__ = ["Emit", "TrialOutcome", "run_trial"]

PRUNED = TrialState.PRUNED

log = logging.getLogger(__name__)


@dataclass
class TrialOutcome:
    """How a trial ended, as the worker will tell it to the study."""

    state: TrialState
    value: Value | None = None  # a list for a multi-objective study
    reason: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    best_model: dict[str, Any] | None = None  # the best epoch's weights and metrics


def _objective(
    params: dict[str, Any], reporter: TrialReporter, files: TrialFiles | None, key: int
) -> Value:
    spec = reporter.spec
    func = load_objective(spec.objective or "")
    checkpoints = files if spec.artifacts.checkpoints else None
    number = reporter.trial.number
    with bind(number, checkpoints, key), board.bind(number, lambda: reporter.writer):
        if objective_form(func) == "trial":
            reporter.tap()
            result = func(reporter.trial)
        else:
            result = func(params, Report(reporter))
    if result is None:
        return reporter.final_value()
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
    artifacts: str | None = None,
    group: Leader | None = None,
) -> TrialOutcome:
    """Run ``trial`` to an outcome; never raises for a trial-level failure.

    ``files`` holds checkpoints and best models; ``key`` is the original trial's number, under
    which a retry finds its predecessor's checkpoint; ``epochs`` counts each epoch trained
    against the study's epoch budget; ``artifacts`` is the artifact store's location, under
    which the trial writes its TensorBoard run (when the spec's ``logging`` says so);
    ``group``: this process is rank 0 of the trial's data-parallel group.
    """
    key = trial.number if key is None else key
    path = board.logdir(artifacts, spec.name, key) if artifacts and spec.tensorboard else None
    reporter = TrialReporter(trial, spec, stop, emit, epochs, board_path=path)
    try:
        outcome = _attempt(reporter, device, files, key, group)
    except BaseException:
        reporter.close_board(None)  # the worker's own error (the storage): close the file
        raise
    reporter.close_board(outcome.value)  # hparams: the params and the trial's value(s)
    if outcome.state == TrialState.FAIL:
        # The failure's traceback held the trial's tensors and is gone now that _attempt has
        # returned; collect them before the next trial. Only on failure: a gc pass costs
        # a whole heap walk, and a trial that succeeds frees its memory by reference counting.
        free_memory(device)
    return outcome


def _attempt(
    reporter: TrialReporter,
    device: str,
    files: TrialFiles | None,
    key: int,
    group: Leader | None = None,
) -> TrialOutcome:
    trial, spec = reporter.trial, reporter.spec
    try:
        params = suggest(trial, spec)
        reporter.emit({"event": "trial_start", "trial": trial.number, "params": params})
        if spec.objective is None:
            value = train_trial(params, reporter, device, files, key, group)
        else:
            value = _objective(params, reporter, files, key)
        return TrialOutcome(
            TrialState.COMPLETE, value, attrs=reporter.summary(), best_model=reporter.best_model
        )
    except optuna.TrialPruned as exc:
        last = reporter.values[-1] if reporter.values else None
        return TrialOutcome(
            PRUNED, last, str(exc), reporter.summary(), best_model=reporter.best_model
        )
    except EpochBudgetSpent as exc:
        # PRUNED, not COMPLETE: the sampler and the pruner read it as a run stopped at this
        # epoch (its curve still informs both), never as the value of a finished run.
        last = reporter.values[-1] if reporter.values else None
        attrs = {**reporter.summary(), "stop_reason": EPOCH_BUDGET_SPENT}
        return TrialOutcome(PRUNED, last, str(exc), attrs, best_model=reporter.best_model)
    except (Interrupted, KeyboardInterrupt) as exc:
        reason = f"interrupted: {exc}" if str(exc) else "interrupted"
        return TrialOutcome(TrialState.FAIL, None, reason, reporter.summary(), interrupted=True)
    except TrialError as exc:
        reason = f"{exc.reason}: {exc}"
    except StorageError:
        raise  # the database is gone, not the trial's fault: the worker ends, the trial is retried
    except UpdateFinishedTrialError:
        # Another node failed it as stale (this one was cut off for a grace period) and queued
        # its retry: not the trial's fault, no traceback; the worker says so once (_finish_or_skip).
        reason = "lost: failed as stale elsewhere"
    except MemoryError:
        reason = "oom: out of host memory"
    except Exception as exc:  # noqa: BLE001 - one trial's crash never takes the worker down
        if type(exc).__name__ == "OutOfMemoryError":
            reason = f"oom: {str(exc).splitlines()[0] if str(exc) else 'out of GPU memory'}"
        else:
            log.error("trial %d failed:\n%s", trial.number, traceback.format_exc())
            reason = f"error: {type(exc).__name__}: {exc}"
    return TrialOutcome(TrialState.FAIL, None, reason, reporter.summary())
