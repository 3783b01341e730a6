"""One voice: every message a user sees on the console is one line, ``error: ...`` or
``warning: ...``. This walks the error and warning paths the suite triggers (bad specs, bad
flags, bad storage URLs, usage errors, a directory as the spec, ``hpo.run``'s warnings) and
asserts the form: no Python logging prefix, no box, no pydantic wording, no traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_spec
from test_spec import BAD
from typer.testing import CliRunner

import hpo
from hpo.cli import app
from hpo.errors import SpecError

runner = CliRunner()

#: What no line a user sees may hold.
FOREIGN = ("WARNING:", "INFO:", "Traceback", "Input should", "╭", "│", "╰", "[I ", "[W ", "Usage:")


def assert_voice(output: str, *, lines: int | None = 1) -> list[str]:
    """Every line is ``error: ...`` or ``warning: ...`` and nothing foreign; returns them."""
    shown = output.splitlines()
    assert shown, "nothing printed"
    for line in shown:
        assert line.startswith(("error: ", "warning: ")), output
        assert not any(word in line for word in FOREIGN), output
    if lines is not None:
        assert len(shown) == lines, output
    return shown


def _spec_file(write_spec: Any, overrides: dict[str, Any]) -> Path:
    spec = {k: v for k, v in {**tiny_spec(), **overrides}.items() if v is not None}
    return write_spec(spec)


@pytest.mark.parametrize("case", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_every_bad_spec_of_the_suite_is_one_error_line(write_spec: Any, case: Any) -> None:
    overrides, path, words = case
    result = runner.invoke(app, ["validate", str(_spec_file(write_spec, overrides))])
    assert result.exit_code == 2
    (line,) = assert_voice(result.output)
    assert f": {path}: " in line and words in line


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run"], "error: Missing argument 'spec_path'; see"),
        (["run", "x.yaml", "--n-trials", "0"], "error: --n-trials: must be greater than or equal"),
        (["run", "x.yaml", "--workers", "many"], "error: --workers: must be a valid integer"),
        (["run", "x.yaml", "--timeout", "-1"], "error: --timeout: must be greater than or equal"),
        (["run", "x.yaml", "--n-trails", "3"], "error: No such option: --n-trails"),
        (["status", "x.yaml", "--last", "x"], "error: --last: must be a valid integer"),
        (["dashboard", "--port", "99999"], "error: --port: must be less than or equal to 65535"),
        (["rn"], "error: No such command 'rn'. Did you mean 'run'? see"),
        (["validate", "a.yaml", "b.yaml"], "error: Got unexpected extra argument"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], words: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    (line,) = assert_voice(result.output)
    assert line.startswith(words) and line.endswith("--help"), line


def test_help_is_still_help() -> None:
    result = runner.invoke(app, [])
    assert "Commands" in result.output and "run" in result.output  # `hpo` alone
    assert runner.invoke(app, ["run", "--help"]).exit_code == 0


def test_a_directory_as_the_spec_says_so(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\n")
    result = runner.invoke(app, ["validate", str(tmp_path)])
    assert result.exit_code == 2
    (line,) = assert_voice(result.output)
    assert line == f"error: {tmp_path}: a directory, not a study file (study files there: a.yaml)"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["run", str(empty)])
    assert assert_voice(result.output) == [
        f"error: {empty}: a directory, not a study file (it holds no .yaml file)"
    ]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["status", "SPEC", "--storage", "mysql+nodriver://u:secret@db/hpo"], None),
        (["best", "SPEC", "--storage", "postgresql://u:secret@db:port/hpo"], None),
        (["export", "SPEC", "--format", "xml"], None),
        (["run", "SPEC"], "[" * 20_000),
        (["run", "SPEC"], "name: dup\nname: dup\n"),
    ],
)
def test_other_input_errors_are_one_line(
    write_spec: Any, args: list[str], text: str | None
) -> None:
    spec = write_spec(text if text is not None else tiny_spec())
    result = runner.invoke(app, [str(spec) if a == "SPEC" else a for a in args])
    assert result.exit_code == 2
    assert_voice(result.output)


def test_a_pruned_line_has_no_nested_parentheses() -> None:
    import inspect

    from hpo.worker import reporter

    source = inspect.getsource(reporter)
    assert 'f"pruned at epoch {step}, {self.spec.metrics[0].name}=' in source


QUIET = "def objective(params, report):\n    return params['x']\n"


@pytest.mark.slow
def test_hpo_run_is_as_quiet_as_the_cli_and_warns_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "quietobj.py").write_text(QUIET)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.chdir(tmp_path)
    spec = {
        "name": "quiet",
        "objective": "quietobj:objective",
        "pruner": {"type": "none"},
        "budget": {"n_trials": 2},
        "space": {"x": {"type": "float", "low": 0, "high": 1}},
    }
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert hpo.run(spec, storage=url, workers=1).ok
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)  # Optuna's "[I ...] A new study created" is gone

    assert hpo.run(spec, storage=url, workers=1, n_trials=1).ok
    out, err = capfd.readouterr()
    assert out == ""
    assert assert_voice(err) == [
        "warning: --n-trials 1: study 'quiet' already has a budget of 2 trials, which is kept "
        "(a budget only grows)"
    ]
    with pytest.raises(SpecError):
        hpo.run({**spec, "sampler": {"type": "annealing"}})
