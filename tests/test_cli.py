"""The command line: bad flags are one line naming the flag, exit 2, no traceback; what
``status`` shows is true of the budget and of each trial."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import pg_study_count, tiny_spec
from typer.testing import CliRunner

from hpo.cli import app

runner = CliRunner()


def _one_line_exit_2(result) -> str:  # noqa: ANN001 - typer's Result
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.output.count("\n") == 1, result.output
    return result.output


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql+nodriver://u:secret@db/hpo", "unknown database or driver 'mysql+nodriver'"),
        ("postgresql://u:secret@db:fivefourthree/hpo", "the port is not a number"),
    ],
)
def test_bad_storage_flag_is_one_line_naming_the_flag(write_spec, url: str, words: str) -> None:
    spec = write_spec(tiny_spec())
    output = _one_line_exit_2(runner.invoke(app, ["status", str(spec), "--storage", url]))
    assert output.startswith("error: --storage: ") and words in output
    assert "secret" not in output


def test_bad_storage_names_the_variable_or_the_spec_field(write_spec, monkeypatch) -> None:
    spec = write_spec(tiny_spec())
    monkeypatch.setenv("HPO_STORAGE", "mysql+nodriver://db/hpo")
    output = _one_line_exit_2(runner.invoke(app, ["export", str(spec)]))
    assert output.startswith("error: HPO_STORAGE: ")

    monkeypatch.delenv("HPO_STORAGE")
    bad = write_spec(tiny_spec(storage="mysql+nodriver://db/hpo"))
    output = _one_line_exit_2(runner.invoke(app, ["validate", str(bad)]))
    assert f"error: {bad}:" in output and ": storage: " in output and "nodriver" in output


@pytest.mark.postgres
def test_postgres_scheme_is_postgresql(postgres_url: str, unique_name: str) -> None:
    optuna.create_study(study_name=unique_name, storage=postgres_url).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2
    )
    short = postgres_url.replace("postgresql+psycopg2://", "postgres://")
    before = pg_study_count(postgres_url)

    result = runner.invoke(app, ["export", "--study", unique_name, "--storage", short])

    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 3  # header and two trials
    assert pg_study_count(postgres_url) == before


def test_bad_storage_in_run_writes_nothing(write_spec, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = write_spec(tiny_spec())
    output = _one_line_exit_2(
        runner.invoke(app, ["run", str(spec), "--storage", "mysql+nodriver://db/hpo"])
    )
    assert "--storage" in output
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "hpo-logs").exists()


def test_help_shows_no_type_for_flags() -> None:
    result = runner.invoke(app, ["status", "--help"])
    assert result.exit_code == 0
    assert "--help" in result.output and "--verbose" in result.output
    assert "<bool>" not in result.output
    assert "<int>" in result.output  # options that take a value still say which


def test_proxy_without_the_extra_says_which_to_install(tmp_path: Path, monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    db = tmp_path / "proxy.db"
    result = runner.invoke(app, ["proxy", "--storage", f"sqlite:///{db}"])
    output = _one_line_exit_2(result)
    assert "pip install 'hpo[proxy]'" in output
    assert not db.exists()


def test_export_into_a_closed_pipe_exits_0(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'big.db'}"
    study = optuna.create_study(study_name="big", storage=url)
    for i in range(20):  # ~200 KB of CSV: more than a pipe holds, so `head` closes it early
        trial = study.ask()
        trial.set_user_attr("note", "x" * 10_000)
        study.tell(trial, float(i))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpo", "export", "--study", "big", "--storage", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().startswith(b"number")
    proc.stdout.close()  # what `| head -1` does
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr


def _study_with_a_retry(url: str) -> None:
    """Trial 0 was interrupted and failed; trial 1 is its retry, which completed (Optuna's
    retry copies user attrs, `fail_reason` too); trials 2-4 completed: 4 slots, 5 rows."""
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(study_name="tiny", storage=url, direction="maximize")
    dist = {"lr": FloatDistribution(0.01, 0.5, log=True)}
    reason = {"fail_reason": "interrupted (node stopping)"}
    study.add_trial(
        create_trial(
            state=TrialState.FAIL, params={"lr": 0.1}, distributions=dist, user_attrs=reason
        )
    )
    retry = {"failed_trial": 0, "retry_history": [0]}
    study.add_trial(
        create_trial(
            value=0.9, params={"lr": 0.1}, distributions=dist, user_attrs=reason, system_attrs=retry
        )
    )
    for lr in (0.02, 0.03, 0.04):
        study.add_trial(create_trial(value=0.5, params={"lr": lr}, distributions=dist))


def test_status_counts_slots_reasons_only_on_failed_trials_and_names_the_storage(
    write_spec, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'status.db'}"
    _study_with_a_retry(url)

    result = runner.invoke(app, ["status", str(write_spec(tiny_spec())), "--storage", url])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = {line.split()[0]: line for line in lines if line.strip()[:1].isdigit()}
    assert "interrupted" in rows["0"] and "fail" in rows["0"]
    assert "interrupted" not in rows["1"] and "complete" in rows["1"]
    assert "4/4 budget slots finished" in result.output
    assert "complete 4  pruned 0  fail 0  running 0  waiting 0  (1 retry)" in result.output
    assert f"storage: {url}" in result.output


def test_best_names_the_storage(write_spec, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'best.db'}"
    _study_with_a_retry(url)
    spec = str(write_spec(tiny_spec()))

    text = runner.invoke(app, ["best", spec, "--storage", url])
    as_json = runner.invoke(app, ["best", spec, "--storage", url, "--json"])

    assert text.exit_code == 0 and f"storage: {url}" in text.output
    assert '"storage": "' + url + '"' in as_json.output


def test_status_of_a_study_of_two_metrics_shows_its_pareto_front(write_spec, tmp_path) -> None:
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    url = f"sqlite:///{tmp_path / 'two.db'}"
    two = [
        {"name": "val_accuracy", "direction": "maximize"},
        {"name": "params_m", "direction": "minimize"},
    ]
    study = optuna.create_study(study_name="two", storage=url, directions=["maximize", "minimize"])
    dist = {"lr": FloatDistribution(0.01, 0.5, log=True)}
    for values in ([0.9, 3.0], [0.8, 1.0], [0.7, 2.0]):  # trial 2 is beaten by trial 1
        study.add_trial(create_trial(values=values, params={"lr": 0.1}, distributions=dist))
    spec = str(write_spec(tiny_spec("two", metric=two)))

    result = runner.invoke(app, ["status", spec, "--storage", url])

    assert result.exit_code == 0, result.output
    assert "Pareto front (val_accuracy, params_m): 2 trials" in result.output
    assert "  trial 0: 0.9, 3  [lr=0.1]" in result.output and "trial 2:" not in result.output
