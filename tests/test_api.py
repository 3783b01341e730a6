"""The Python API: ``hpo.run`` runs a study as ``hpo run`` does, ``hpo.load`` reads it back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from conftest import importable_module, tiny_spec
from optuna.trial import TrialState

import hpo
from hpo.errors import SpecError, StorageError
from hpo.insight.export import trial_records

OBJECTIVE = (
    "def objective(params, report):\n"
    "    report(params['x'], 1)\n"
    "    return -(params['x'] - 2) ** 2\n"
)


def custom_spec(name: str = "api", n_trials: int = 3) -> dict[str, Any]:
    return {
        "name": name,
        "objective": "apiobj:objective",
        "metric": {"name": "score", "direction": "maximize"},
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": n_trials},
        "space": {"x": {"type": "float", "low": 0, "high": 4}},
    }


@pytest.fixture
def objective_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``apiobj`` importable here (spec validation) and in the workers (they inherit
    os.environ); the workers also need this checkout's hpo first on their path."""
    return importable_module(tmp_path, monkeypatch, "apiobj", OBJECTIVE)


def test_import_hpo_is_cheap() -> None:
    code = (
        "import sys, hpo\n"
        "assert callable(hpo.run) and callable(hpo.load), hpo.__all__\n"
        "heavy = [m for m in ('torch', 'optuna', 'optuna_dashboard', 'pydantic') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_run_a_study_file_then_load_it(objective_dir: Path, sqlite_url: str) -> None:
    path = objective_dir / "study.yaml"
    path.write_text(yaml.safe_dump(custom_spec()))
    marker = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    mine = lambda *_: None  # noqa: E731 - a handler of the caller's, to find again after
    signal.signal(signal.SIGTERM, mine)
    try:
        result = hpo.run(path, storage=sqlite_url, workers=1, logs_dir=objective_dir / "logs")
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, marker)

    assert result.exit_code == 0 and result.ok
    assert result.summary.counts["COMPLETE"] == 3
    assert isinstance(result.study, optuna.Study) and len(result.study.trials) == 3
    best = max(result.study.trials, key=lambda t: t.value)
    assert (result.summary.best_number, result.summary.best_value) == (best.number, best.value)

    view = hpo.load(path, storage=sqlite_url)
    status = view.status(last=2)
    assert (status.budget, status.finished, status.retries) == (3, 3, 0)
    assert status.slots == {"COMPLETE": 3} and [t.number for t in status.latest] == [1, 2]
    assert view.best().number == best.number and view.best().params == best.params
    assert view.metric == "score" and view.direction == "maximize"
    assert view.trials() == trial_records(view.study)
    json.dumps(view.trials(), allow_nan=False)  # what `hpo export --format json` writes

    by_name = hpo.load("api", storage=sqlite_url)
    assert by_name.best().value == best.value and by_name.metric == "score"


@pytest.mark.slow
def test_dict_input_with_overrides_and_plain_progress(
    objective_dir: Path, sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = hpo.run(
        custom_spec(n_trials=2),
        storage=sqlite_url,
        n_trials=3,
        study_name="renamed",
        workers=1,
        device="cpu",
        logs_dir=objective_dir / "logs",
        progress=True,
    )

    assert result.exit_code == 0
    trials = optuna.load_study(study_name="renamed", storage=sqlite_url).trials
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    printed = capsys.readouterr().out
    assert "study renamed" in printed and printed.count("complete value=") == 3


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"n_trials": 0}, "n_trials: "),
        ({"workers": 0}, "workers: "),
        ({"timeout": -1}, "timeout: "),
        ({"device": "tpu"}, "device: 'tpu' is not one of auto, cpu, cuda"),
        ({"study_name": "no spaces"}, "study_name: "),
        ({"storage": "mysql+nodriver://u:secret@db/hpo"}, "storage: "),
    ],
)
def test_a_bad_override_is_a_spec_error_and_writes_nothing(
    objective_dir: Path, override: dict[str, Any], words: str
) -> None:
    db = objective_dir / "never.db"
    with pytest.raises(SpecError) as caught:
        hpo.run(custom_spec(), **{"storage": f"sqlite:///{db}", **override})

    message = str(caught.value)
    assert message.startswith(words) and "\n" not in message and "secret" not in message
    assert not db.exists() and not (objective_dir / "hpo-logs").exists()


def test_a_bad_dict_names_the_field(objective_dir: Path) -> None:
    with pytest.raises(SpecError, match=r"^spec: budget\.n_trails: unknown key$"):
        hpo.run({**custom_spec(), "budget": {"n_trails": 3}})
    with pytest.raises(SpecError, match="not a study file"):
        hpo.run(42)  # type: ignore[arg-type]


def test_load_names_what_is_missing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    optuna.create_study(study_name="empty", storage=url)

    with pytest.raises(StorageError, match="no study 'other'.*studies there: empty"):
        hpo.load("other", storage=url)
    with pytest.raises(StorageError, match="no completed trial"):
        hpo.load("empty", storage=url).best()
    assert hpo.load("empty", storage=url).status().budget == 0


def test_best_model_downloads_the_best_trials_artifact(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = tmp_path / "artifacts"
    store.mkdir()
    study = optuna.create_study(study_name="weights", storage=url, direction="maximize")
    for value in (0.2, 0.9, 0.5):
        trial = study.ask()
        weights = tmp_path / "best_model.pt"
        weights.write_bytes(f"weights of {trial.number}".encode())
        optuna.artifacts.upload_artifact(
            artifact_store=optuna.artifacts.FileSystemArtifactStore(str(store)),
            file_path=str(weights),
            study_or_trial=trial,
        )
        study.tell(trial, value)

    path = hpo.load("weights", storage=url).best_model(tmp_path / "out", artifacts=str(store))

    assert path == tmp_path / "out" / "trial-1-best_model.pt"
    assert path.read_bytes() == b"weights of 1"


def test_tiny_spec_dict_is_accepted_as_is(tmp_path: Path) -> None:
    """A dict and the same YAML give the same StudySpec (no file needed)."""
    from hpo.api import resolve_spec
    from hpo.spec import load_spec

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(tiny_spec()))
    assert resolve_spec(tiny_spec())[0] == load_spec(path)
