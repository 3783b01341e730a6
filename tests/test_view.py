"""StudyView (``hpo.load``): the Pareto front, downloads of any trial's model, report, export.

Real SQLite storage, studies written with Optuna's public API; no training."""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import hpo
from hpo.errors import HpoError, SpecError, StorageError

DIST = {"lr": FloatDistribution(0.01, 0.5, log=True)}
#: (val_accuracy up, params_m down): trials 0, 1 and 3 are the front; 2 is beaten by 0.
VALUES = [(0.9, 3.0), (0.8, 1.0), (0.7, 4.0), (0.95, 5.0)]


def _two_metrics(url: str, store: Path | None = None) -> optuna.Study:
    """A study of two metrics; with ``store``, trials 0 and 1 upload a best_model.pt."""
    study = optuna.create_study(study_name="two", storage=url, directions=["maximize", "minimize"])
    study.set_metric_names(["val_accuracy", "params_m"])
    for number, values in enumerate(VALUES):
        trial = study.ask(DIST)
        trial.set_user_attr("fail_reason", "a retry's inheritance")
        if store is not None and number < 2:
            weights = store.parent / "best_model.pt"
            weights.write_bytes(f"weights of {number}".encode())
            optuna.artifacts.upload_artifact(
                artifact_store=optuna.artifacts.FileSystemArtifactStore(str(store)),
                file_path=str(weights),
                study_or_trial=trial,
            )
        study.tell(trial, list(values))
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 0.1}, distributions=DIST))
    return study


def test_front_is_the_pareto_front_by_number_and_status_shows_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    _two_metrics(url)
    view = hpo.load("two", storage=url)

    front = view.front()

    assert view.multi_objective
    assert [p.number for p in front] == [0, 1, 3]
    assert [p.values for p in front] == [VALUES[0], VALUES[1], VALUES[3]]
    assert all(p.user_attrs == {} and "lr" in p.params for p in front)  # no fail_reason
    status = view.status()
    assert status.best is None and [p.number for p in status.front] == [0, 1, 3]
    assert status.counts == {"COMPLETE": 4, "FAIL": 1}
    with pytest.raises(HpoError, match="several metrics"):
        view.best()


def test_front_before_any_trial_completes_is_empty(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(study_name="new", storage=url, directions=["maximize", "minimize"])

    assert hpo.load("new", storage=url).front() == []
    assert hpo.load("new", storage=url).status().front == []


def test_best_model_of_a_front_trial_by_number(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = tmp_path / "artifacts"
    store.mkdir()
    _two_metrics(url, store)
    view = hpo.load("two", storage=url)

    path = view.best_model(tmp_path / "out", artifacts=str(store), trial=1)

    assert path == tmp_path / "out" / "trial-1-best_model.pt"
    assert path.read_bytes() == b"weights of 1"
    with pytest.raises(StorageError, match="trial 3 has no best_model.pt"):
        view.best_model(tmp_path / "out", artifacts=str(store), trial=3)
    with pytest.raises(StorageError, match="no trial 9"):
        view.best_model(tmp_path / "out", artifacts=str(store), trial=9)
    elsewhere = tmp_path / "empty-store"
    with pytest.raises(StorageError, match="trial 1's best_model.pt is not in this artifact store"):
        view.best_model(tmp_path / "out", artifacts=str(elsewhere), trial=1)


def test_report_writes_the_pareto_front_and_the_trials(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    _two_metrics(url)

    report = hpo.load("two", storage=url).report(tmp_path / "rep")

    names = {p.name for p in report.files}
    assert {"report.html", "pareto_front.yaml", "trials.csv"} <= names
    assert all(p.parent == tmp_path / "rep" and p.is_file() for p in report.files)
    assert url in (tmp_path / "rep" / "report.html").read_text()  # the storage it came from


def test_export_writes_csv_or_json_and_refuses_other_formats(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    _two_metrics(url)
    view = hpo.load("two", storage=url)
    as_csv, as_json = io.StringIO(), io.StringIO()

    assert view.export(as_csv) == 5
    assert view.export(as_json, "json") == 5

    assert as_csv.getvalue().splitlines()[0].startswith("number,state,value")
    doc = json.loads(as_json.getvalue())
    assert doc["metric"] == ["val_accuracy", "params_m"] and doc["trials"] == view.trials()
    with pytest.raises(SpecError, match="fmt: 'xml' is not csv or json"):
        view.export(io.StringIO(), "xml")
