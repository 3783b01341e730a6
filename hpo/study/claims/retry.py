"""Retries: which failures a trial is re-run after, and which of them count against it.

Two kinds of failure, told apart by who caused them:

- **Interruptions** are infrastructure events: preemption (SIGTERM), Ctrl-C, a node lost (its
  heartbeat went stale), a database that refused the worker. The trial did nothing wrong: its
  retry is queued without limit (the study's budget and timeout bound the run) and resumes
  from the trial's last checkpoint.
- **Failures** are the trial's own: its code raised, or its worker process was killed while
  running it (a segfault, the kernel's OOM killer). These count: after ``max_retries`` of them
  the trial stays FAIL.

A retry is a WAITING copy of the failed trial with the same parameters, linked to it the way
Optuna's ``RetryHeartbeatStaleTrialCallback`` links them (system attrs ``failed_trial``, the
original trial's number, and ``retry_history``), so Optuna's own helpers and the dashboard read
it. hpo adds ``hpo:failures``, the counted failures so far. The copy takes neither the failed
trial's artifacts (its best model belongs to it) nor its user attrs (``fail_reason``, timings),
which the retry writes anew.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from hpo.keys import ATTR_FAIL_REASON, ATTR_FAILURES
from hpo.study._optuna import (
    ARTIFACT_PREFIX,
    FAILED_TRIAL,
    RETRY_HISTORY,
    backend_of,
    heartbeat_thread,
    stale_trial_ids,
    storage_of,
    study_id_of,
    trial_id_of,
)
from hpo.study._optuna.fast_paths import fast_paths

log = logging.getLogger(__name__)


def retry_attrs(trial: FrozenTrial, counted: bool) -> dict[str, Any]:
    """The system attrs of ``trial``'s retry: linked to the original, artifacts left behind."""
    attrs = {k: v for k, v in trial.system_attrs.items() if not k.startswith(ARTIFACT_PREFIX)}
    attrs.setdefault(FAILED_TRIAL, trial.number)
    attrs[RETRY_HISTORY] = [*attrs.get(RETRY_HISTORY, []), trial.number]
    attrs[ATTR_FAILURES] = int(attrs.get(ATTR_FAILURES, 0)) + int(counted)
    return attrs


def enqueue_retry(
    study: optuna.Study, trial: FrozenTrial, *, counted: bool, max_retries: int
) -> bool:
    """Queue a WAITING copy of the failed ``trial``; False when its failures are used up.

    Args:
        counted: the trial caused the failure itself (an exception, its worker killed);
            False for an interruption, which is retried without limit.
        max_retries: counted failures a trial may be re-run after.
    """
    attrs = retry_attrs(trial, counted)
    if counted and attrs[ATTR_FAILURES] > max_retries:
        log.info("trial %d failed %d times: not retried", trial.number, attrs[ATTR_FAILURES])
        return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs=attrs,
        )
    )
    return True


def fail_and_retry(
    study: optuna.Study, trial_id: int, reason: str, *, counted: bool, max_retries: int
) -> bool:
    """Fail a RUNNING trial with ``reason`` and queue its retry; False when another process
    finished it first (then that process queued the retry)."""
    storage = storage_of(study)
    try:
        storage.set_trial_user_attr(trial_id, ATTR_FAIL_REASON, reason)
        if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    enqueue_retry(study, storage.get_trial(trial_id), counted=counted, max_retries=max_retries)
    return True


#: Whether a trial (by its user attrs: ``node``, ``pid``) is held by a worker known to be alive.
Spare = Callable[[dict[str, Any]], bool]


def fail_stale(
    study: optuna.Study, max_retries: int, spare_live: Spare = lambda attrs: False
) -> list[int]:
    """Fail the study's RUNNING trials whose heartbeat lapsed (their node is gone) and queue
    their retries, uncounted. Returns the numbers of the trials failed here.

    Which heartbeats lapsed is the storage's judgement (none during an outage or for a grace
    period after it: ``resilient``); ``spare_live`` spares the trials of live workers besides
    (a node's supervisor knows its own children), whatever their heartbeat says.

    Optuna's ``fail_stale_trials`` does the same but marks the trial FAIL before its callback
    runs, after which no ``fail_reason`` can be written; here the reason comes first.
    """
    if not fast_paths():
        optuna.storages.fail_stale_trials(study)  # retries queued by ``stale_callback``
        return []
    storage = storage_of(study)
    stale = stale_trial_ids(storage, study_id_of(study))
    if stale is None:
        return []  # a gRPC proxy, or heartbeats off
    failed = []
    for trial_id in stale:
        attrs = storage.get_trial_user_attrs(trial_id)
        if spare_live(attrs):
            number = storage.get_trial(trial_id).number
            log.debug("trial %d: heartbeat lapsed, but its worker is alive: not failed", number)
            continue
        node = attrs.get("node", "?")
        reason = f"heartbeat lost (node {node})"
        if fail_and_retry(study, trial_id, reason, counted=False, max_retries=max_retries):
            failed.append(storage.get_trial(trial_id).number)
    if failed:
        log.warning("failed trials %s: heartbeat lost; retries queued", failed)
    return failed


def heartbeat(trial: optuna.Trial, storage: Any) -> Any:
    """A heartbeat thread for ``trial`` while it runs, as a context manager (a no-op where
    heartbeats are off): Optuna's own on the fast paths, hpo's on the plain ones."""
    return _named(trial, storage, heartbeat_thread if fast_paths() else _beating)


@contextlib.contextmanager
def _named(trial: optuna.Trial, storage: Any, beat: Any) -> Iterator[None]:
    """``beat(trial, storage)``, with the trial's number known to the storage while it beats
    (its warnings name the trial users see, not its row id)."""
    numbers = getattr(backend_of(storage), "trial_numbers", {})
    trial_id = trial_id_of(trial)
    numbers[trial_id] = trial.number
    try:
        with beat(trial, storage):
            yield
    finally:
        numbers.pop(trial_id, None)


@contextlib.contextmanager
def _beating(trial: optuna.Trial, storage: Any) -> Iterator[None]:
    """What Optuna's heartbeat thread does, on its public storage methods."""
    interval = getattr(storage, "get_heartbeat_interval", lambda: None)()
    if interval is None:
        yield
        return
    done, trial_id = threading.Event(), trial_id_of(trial)

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if done.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"hpo-heartbeat-{trial.number}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def stale_callback(max_retries: int) -> Any:
    """Optuna's ``heartbeat_stale_trial_callback`` with hpo's policy, for any code path that
    still calls ``optuna.storages.fail_stale_trials``: an uncounted retry."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        enqueue_retry(study, trial, counted=False, max_retries=max_retries)

    return callback
