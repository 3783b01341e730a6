"""Warnings speak like errors do: one line, ``warning: ...``, on the console of every command;
worker log files keep timestamps and module names."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import optuna
import pytest
from conftest import pythonpath
from pgserver import PrivatePostgres
from rich.console import Console
from test_fleet import _objective_spec
from test_run import finish, hpo

from hpo import console_log

PYTHON_LOGGING = ("WARNING:", "INFO:", "DEBUG:")


def _console() -> Console:
    return Console(record=True, width=40, color_system=None, file=open("/dev/null", "w"))


def test_records_print_as_one_line_in_hpos_voice() -> None:
    console = _console()
    handler = console_log.ConsoleHandler(console)
    logger = logging.getLogger("hpo.study.claims.budget")
    record = logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, "[bold]%s[/bold]\n  %s", ("a", "b" * 60), None
    )
    handler.handle(record)
    # one line, even past the console's width; rich markup in a message is text, not style
    assert console.export_text() == f"warning: [bold]a[/bold] {'b' * 60}\n"


def test_optunas_and_pythons_warnings_take_the_same_voice(capsys: pytest.CaptureFixture) -> None:
    console = _console()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, warnings.showwarning)
    try:
        console_log.install(console)
        optuna.logging.get_logger("optuna.storages").warning("optuna says\nthis")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = console_log._show_warning
            warnings.warn("beware", UserWarning, stacklevel=1)
        logging.getLogger("hpo.x").info("not shown without --verbose")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
        warnings.showwarning = saved[2]
        optuna.logging.enable_default_handler()
        optuna.logging.disable_propagation()
    assert console.export_text().splitlines() == [
        "warning: optuna says this",
        "warning: beware (UserWarning)",
    ]
    assert "[W " not in capsys.readouterr().err  # Optuna's own handler printed nothing


def _warnings(proc, needle: str) -> list[str]:
    """The lines of a finished ``hpo`` run that hold ``needle``; the run exited 0 and printed
    nothing in Python logging's own format."""
    out = finish(proc)
    assert proc.returncode == 0, out
    assert not any(line.startswith(PYTHON_LOGGING) for line in out.splitlines()), out
    return [line for line in out.splitlines() if needle in line]


@pytest.mark.slow
def test_plain_paths_and_budget_kept_notices_are_one_warning_line_each(
    write_spec, tmp_path: Path
) -> None:
    spec = _objective_spec(write_spec, "voice", budget={"n_trials": 2})
    env = {"PYTHONPATH": pythonpath(spec.parent), "HPO_FAST_PATHS": "0"}
    first = hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env)
    assert _warnings(first, "plain Optuna paths") == [
        "warning: plain Optuna paths (HPO_FAST_PATHS=0); results are the same, trials cost more"
    ]
    # the worker's log file keeps its timestamp, worker and module name
    (log,) = (tmp_path / "hpo-logs").glob("*-w0.log")
    logged = [ln for ln in log.read_text().splitlines() if "plain Optuna paths" in ln]
    assert logged and " w0 WARNING hpo.study._optuna.fast_paths: plain Optuna paths" in logged[0]

    again = hpo("run", str(spec), "--n-trials", "1", cwd=tmp_path, env=env)
    assert _warnings(again, "which is kept") == [
        "warning: --n-trials 1: study 'voice' already has a budget of 2 trials, which is kept "
        "(a budget only grows)"
    ]


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not PrivatePostgres.available(), reason="no initdb")
def test_connection_headroom_warning_is_one_line(write_spec, tmp_path: Path) -> None:
    server = PrivatePostgres().init()
    server.start(max_connections=8)  # 3 reserved for superusers: 5 for clients
    try:
        spec = _objective_spec(write_spec, "headroom", budget={"n_trials": 2})
        env = {"PYTHONPATH": pythonpath(spec.parent)}
        proc = hpo(
            "run", str(spec), "--storage", server.url, "--workers", "4", cwd=tmp_path, env=env
        )
        lines = _warnings(proc, "database connections")
    finally:
        server.stop()
        server.remove()
    assert len(lines) == 1, lines
    # 1 per worker and 2 for hpo run, as the README says
    assert lines[0].startswith("warning: this node needs up to 6 database connections (4 workers")
    assert "the server has 5 free (max_connections 8, 3 reserved, 0 used by others)" in lines[0]
