"""Retries: interruptions are re-queued without limit, a trial's own failures count, a retry
carries neither the failed trial's artifacts nor its fail reason, and the checkpoint outlives
the trial's result."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc
from conftest import tiny_spec
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from hpo.spec import StudySpec
from hpo.study import claim, enqueue_retry, fail_stale, heartbeat, prepare, snapshot
from hpo.study._optuna import resilient
from hpo.study.claims.retry import ATTR_FAILURES
from hpo.study.storage import outage
from hpo.study.storage.outage import OutageClock
from hpo.worker.serve import WorkerContext, _finish
from hpo.worker.trial import TrialOutcome


def _spec(**overrides: Any) -> StudySpec:
    return StudySpec.model_validate(tiny_spec(**overrides))


def _running_trial(study: optuna.Study) -> optuna.Trial:
    trial = claim(study)
    assert trial is not None
    trial.suggest_float("lr", 0.01, 0.5, log=True)
    return trial


def _fail(study: optuna.Study, trial_id: int) -> optuna.trial.FrozenTrial:
    study._storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return study._storage.get_trial(trial_id)


def test_interruptions_never_use_up_retries_and_failures_do(sqlite_url: str) -> None:
    study = prepare(_spec(budget={"n_trials": 1}), sqlite_url).study
    trial = _running_trial(study)
    frozen = _fail(study, trial._trial_id)
    for _ in range(5):  # preempted five times in a row, max_retries 1
        assert enqueue_retry(study, frozen, counted=False, max_retries=1)
        retry = claim(study)
        assert retry is not None
        frozen = _fail(study, retry._trial_id)
    assert frozen.system_attrs["failed_trial"] == trial.number
    assert frozen.system_attrs[ATTR_FAILURES] == 0
    assert enqueue_retry(study, frozen, counted=True, max_retries=1)  # first own failure
    retry = claim(study)
    assert retry is not None
    frozen = _fail(study, retry._trial_id)
    assert not enqueue_retry(study, frozen, counted=True, max_retries=1)  # second: no more
    assert frozen.params == trial.params
    assert len(frozen.system_attrs["retry_history"]) == 6
    snap = snapshot(study)  # 7 failed rows, 6 of them replaced by a retry: 1 slot finished
    assert (snap.finished, snap.retries, snap.finished_slots) == (7, 6, 1)


def test_a_retry_takes_neither_artifacts_nor_fail_reason(sqlite_url: str, tmp_path: Path) -> None:
    study = prepare(_spec(budget={"n_trials": 1}), sqlite_url).study
    trial = _running_trial(study)
    model = tmp_path / "best_model.pt"
    model.write_bytes(b"weights")
    upload_artifact(
        artifact_store=FileSystemArtifactStore(str(tmp_path)),
        file_path=str(model),
        study_or_trial=trial,
    )
    trial.set_user_attr("fail_reason", "error: boom")
    frozen = _fail(study, trial._trial_id)
    assert any(k.startswith("artifacts:") for k in frozen.system_attrs)

    assert enqueue_retry(study, frozen, counted=True, max_retries=2)
    retry = study.get_trials()[-1]
    assert retry.state == TrialState.WAITING
    assert not [k for k in retry.system_attrs if k.startswith("artifacts:")]
    assert "fail_reason" not in retry.user_attrs
    assert retry.system_attrs[ATTR_FAILURES] == 1


@pytest.mark.fast_paths
def test_stale_trial_gets_a_reason_and_an_uncounted_retry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    spec = _spec(budget={"n_trials": 1}, retry={"heartbeat_interval": 1, "grace_period": 2})
    study = prepare(spec, url).study
    trial = _running_trial(study)
    trial.set_user_attr("node", "gpu-17")
    study._storage.record_heartbeat(trial._trial_id)
    time.sleep(3)
    assert fail_stale(study, max_retries=0) == [trial.number]
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["fail_reason"] == "heartbeat lost (node gpu-17)"
    assert retry.state == TrialState.WAITING and retry.system_attrs[ATTR_FAILURES] == 0
    assert fail_stale(study, max_retries=0) == []  # once only


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> OutageClock:
    """A fresh outage clock for this test, the one storage calls and the stale check read."""
    fresh = OutageClock()
    monkeypatch.setattr(outage, "OUTAGE", fresh)
    monkeypatch.setattr(resilient, "OUTAGE", fresh)
    return fresh


@pytest.mark.fast_paths  # the plain paths call Optuna's fail_stale_trials: no live trial spared
def test_no_trial_is_judged_stale_within_a_grace_period_of_an_outage_nor_a_live_ones(
    tmp_path: Path, clock: OutageClock
) -> None:
    """After an outage every heartbeat is old: the node failed its own live trials (issue 19)."""
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    spec = _spec(budget={"n_trials": 2}, retry={"heartbeat_interval": 1, "grace_period": 2})
    study = prepare(spec, url).study
    live, dead = _running_trial(study), _running_trial(study)
    live.set_user_attr("pid", 41)
    dead.set_user_attr("pid", 42)
    for trial in (live, dead):
        study._storage.record_heartbeat(trial._trial_id)
    time.sleep(2.5)
    clock.failed(time.monotonic())  # the database was down, and is back
    clock.recovered()

    assert fail_stale(study, max_retries=0) == [], "judged within a grace period of an outage"
    time.sleep(2.1)
    assert fail_stale(study, 0, spare_live=lambda attrs: attrs.get("pid") == 41) == [dead.number]
    assert [t.state for t in study.get_trials()[:2]] == [TrialState.RUNNING, TrialState.FAIL]


def test_a_heartbeat_warning_names_the_trial_number(
    tmp_path: Path, clock: OutageClock, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    url = f"sqlite:///{tmp_path / 'beat.db'}"
    spec = _spec(budget={"n_trials": 2}, retry={"heartbeat_interval": 1, "storage_outage": 0.1})
    handle = prepare(spec, url)
    _running_trial(handle.study)  # trial 0, id 1: the numbers differ by one
    trial = _running_trial(handle.study)

    def down(self: Any, trial_id: int) -> None:
        raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("connection refused"))

    monkeypatch.setattr(optuna.storages.RDBStorage, "record_heartbeat", down)
    with caplog.at_level(logging.WARNING), heartbeat(trial, handle.storage):
        time.sleep(0.5)
    assert f"heartbeat of trial {trial.number} not recorded" in caplog.text, caplog.text
    assert "trial id" not in caplog.text


class _Files:
    """Records the trial's state in the storage when its checkpoint is dropped."""

    def __init__(self, study: optuna.Study, trial_id: int) -> None:
        self.study, self.trial_id, self.dropped_at = study, trial_id, None

    def upload_best(self, trial: optuna.Trial, payload: dict[str, Any]) -> None:
        pass

    def drop_checkpoint(self, key: int) -> None:
        self.dropped_at = self.study._storage.get_trial(self.trial_id).state


@pytest.mark.parametrize(
    ("outcome", "dropped"),
    [
        (TrialOutcome(TrialState.COMPLETE, 0.9), TrialState.COMPLETE),
        (TrialOutcome(TrialState.PRUNED, 0.1), TrialState.PRUNED),
        (TrialOutcome(TrialState.FAIL, reason="interrupted", interrupted=True), None),
        (TrialOutcome(TrialState.FAIL, reason="error: x"), None),  # its retry resumes
    ],
)
def test_checkpoint_is_dropped_only_after_the_result_is_committed(
    sqlite_url: str, outcome: TrialOutcome, dropped: TrialState | None
) -> None:
    spec = _spec(budget={"n_trials": 1})
    study = prepare(spec, sqlite_url).study
    trial = _running_trial(study)
    files = _Files(study, trial._trial_id)
    ctx = WorkerContext(spec=spec, storage_url=sqlite_url)
    _finish(study, trial, outcome, ctx, files, trial.number)  # type: ignore[arg-type]
    assert files.dropped_at == dropped
