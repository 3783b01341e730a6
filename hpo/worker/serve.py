"""The worker's trial loop: fail stale trials, claim one, run it with a heartbeat, tell."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hpo.keys import ATTR_FAIL_REASON
from hpo.spec import StudySpec, trial_config
from hpo.study import (
    EpochMeter,
    TrialFiles,
    between_trials,
    enqueue_retry,
    frozen_trial,
    heartbeat,
    load,
    next_trial,
    open_store,
    root_number,
    set_user_attrs,
)
from hpo.worker.group import Leader
from hpo.worker.trial import Emit, TrialOutcome, run_trial

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerContext:
    """Who this worker is and until when it may start trials."""

    spec: StudySpec
    storage_url: str
    index: int = 0
    node: str = "localhost"
    device: str = "cpu"
    deadline: float | None = None  # time.time() after which no new trial starts
    artifacts: str | None = None  # artifact store location; default: the spec's artifacts.path


def _record_start(
    trial: optuna.Trial, ctx: WorkerContext, device_name: str, group: Leader | None
) -> None:
    attrs = {"node": ctx.node, "worker": ctx.index, "pid": os.getpid(), "device": device_name}
    if group is not None:  # rank 0 first; its pid above is the one a dead worker is known by
        attrs["group_pids"] = group.pids
    set_user_attrs(trial, attrs)


def _finish_or_skip(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: TrialOutcome,
    ctx: WorkerContext,
    files: TrialFiles,
    key: int,
) -> None:
    try:
        _finish(study, trial, outcome, ctx, files, key)
    except UpdateFinishedTrialError:
        # Another worker failed this trial as stale (its heartbeat lapsed, e.g. during a
        # database outage) and enqueued its retry; the retry will run it again.
        log.warning("trial %d was already failed as stale; its retry will run", trial.number)


def _train_dict(trial: optuna.Trial, ctx: WorkerContext) -> dict[str, object]:
    """The trial's training config, as the trainer ran it (a parameter of the user's own model
    function is in ``model_args``), so that the stored model can be rebuilt from it."""
    if ctx.spec.objective is not None:
        return {**ctx.spec.train.model_dump(mode="json"), **trial.params}
    return trial_config(ctx.spec.train, trial.params).model_dump(mode="json")


def _finish(
    study: optuna.Study,
    trial: optuna.Trial,
    outcome: TrialOutcome,
    ctx: WorkerContext,
    files: TrialFiles,
    key: int,
) -> None:
    """Record the outcome; the checkpoint goes only once the result is committed, so a worker
    killed on the way leaves a retry that still resumes."""
    attrs = dict(outcome.attrs)
    if outcome.reason:
        attrs[ATTR_FAIL_REASON] = outcome.reason
    set_user_attrs(trial, attrs)
    keep = outcome.state == TrialState.COMPLETE or (
        outcome.state == TrialState.PRUNED and ctx.spec.artifacts.keep_pruned
    )
    if keep and outcome.best_model is not None:
        # Uploaded while the trial runs: Optuna links an artifact only to a running trial.
        payload = {**outcome.best_model, "params": trial.params, "train": _train_dict(trial, ctx)}
        files.upload_best(trial, payload)
    if outcome.state == TrialState.COMPLETE:
        study.tell(trial, outcome.value)
    else:
        study.tell(trial, state=outcome.state)
    retried = False
    if outcome.state == TrialState.FAIL:
        # At once, not after a heartbeat goes stale. An interruption (preemption, Ctrl-C) is
        # retried without limit and resumes; a failure of the trial's own counts.
        retried = enqueue_retry(
            study,
            frozen_trial(trial),
            counted=not outcome.interrupted,
            max_retries=ctx.spec.retry.max_retries,
        )
    if not retried:
        files.drop_checkpoint(key)


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return "cpu"


def _epochs_spent(meter: EpochMeter | None, emit: Emit) -> bool:
    """Whether the study's epoch budget is spent (one query; none without an epoch budget)."""
    if meter is None:
        return False
    count = meter.read()
    if count.spent:
        emit({"event": "epoch_budget_spent", "used": count.used, "budget": count.budget})
    return count.spent


def run_worker(ctx: WorkerContext, stop: threading.Event, emit: Emit) -> int:
    """Run trials until none is waiting, the epoch budget is spent, the deadline passes or
    ``stop`` is set.

    Returns the process exit code: 0 normally, 130 when interrupted by Ctrl-C. With
    ``resources.gpus_per_trial`` N > 1 this process is rank 0 of a group of N (see
    :mod:`hpo.worker.group`); a peer's death ends it with ``EXIT_RANK_DIED``.
    """
    world = ctx.spec.resources.gpus_per_trial if ctx.spec.objective is None else 1
    group = Leader(world, ctx.device, ctx.index).start() if world > 1 else None
    try:
        return _trials(ctx, stop, emit, group)
    finally:
        if group is not None:
            group.close()


def _trials(ctx: WorkerContext, stop: threading.Event, emit: Emit, group: Leader | None) -> int:
    handle = load(ctx.spec, ctx.storage_url)
    study, storage = handle.study, handle.storage
    # The study's epoch budget as stored, whatever this node's spec says (as for n_trials).
    meter = EpochMeter.open(storage, study)
    device_name = _device_name(ctx.device)
    artifacts = ctx.artifacts or ctx.spec.artifacts.path
    files = TrialFiles(open_store(artifacts), ctx.spec.name)
    parent = os.getppid()
    while not stop.is_set():
        if ctx.deadline is not None and time.time() >= ctx.deadline:
            emit({"event": "deadline"})
            break
        if os.getppid() != parent:
            log.warning("the node's supervisor is gone: stopping")
            break
        if _epochs_spent(meter, emit):
            break
        trial = next_trial(study, storage, ctx.spec)
        if trial is None:
            break
        # The heartbeat starts first: a RUNNING trial without any heartbeat is never judged
        # stale, so a worker killed right after claiming must already have written one.
        with heartbeat(trial, storage):
            _record_start(trial, ctx, device_name, group)
            key = root_number(frozen_trial(trial))
            outcome = run_trial(
                trial, ctx.spec, ctx.device, stop, emit, files, key, meter, artifacts, group
            )
            _finish_or_skip(study, trial, outcome, ctx, files, key)
        emit(
            {
                "event": "trial_end",
                "trial": trial.number,
                "root": key,  # the original trial a retry continues
                "state": outcome.state.name,
                "value": outcome.value,
                "reason": outcome.reason,
                "params": trial.params,
            }
        )
        if outcome.interrupted:
            return 130
        between_trials(storage, stop.wait)  # its connection back to the server, a turn if full
    return 0
