"""Database faults: a PostgreSQL restart mid-study loses no reported value; a lasting outage
ends the workers with one clear line."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import pythonpath
from optuna.trial import TrialState
from pgserver import PrivatePostgres
from test_run import _wait_for, finish, hpo, trials_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not PrivatePostgres.available(), reason="PostgreSQL binaries not installed"),
]

SLOW_OBJECTIVE = (
    "import time\n"
    "def objective(params, report):\n"
    "    for step in range(1, 9):\n"
    "        time.sleep(0.25)\n"
    "        report(params['x'] * step, step)\n"
    "    return params['x'] * 8\n"
)


def _spec(write_spec, tmp_path: Path, outage: float) -> Path:
    (tmp_path / "slowobj.py").write_text(SLOW_OBJECTIVE)
    return write_spec(
        {
            "name": "faults",
            "objective": "slowobj:objective",
            "metric": {"name": "score"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 6},
            "retry": {"heartbeat_interval": 1, "grace_period": 5, "storage_outage": outage},
            "space": {"x": {"type": "float", "low": 0, "high": 1}},
        }
    )


def test_postgres_restart_mid_study_loses_nothing(write_spec, tmp_path: Path, private_pg) -> None:
    spec = _spec(write_spec, tmp_path, outage=60)
    env = {"HPO_STORAGE": private_pg.url, "PYTHONPATH": pythonpath(tmp_path)}
    node = hpo("run", str(spec), "--workers", "2", cwd=tmp_path, env=env)
    _wait_for(lambda: _finished(private_pg.url) >= 1, timeout=90)

    private_pg.restart(down_seconds=3)
    out = finish(node)

    assert node.returncode == 0, out
    trials = trials_of(private_pg.url, "faults")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6, [(t.number, t.state, t.user_attrs) for t in trials]
    for t in complete:
        assert sorted(t.intermediate_values) == list(range(1, 9)), t.number


def _finished(url: str) -> int:
    try:
        return sum(t.state == TrialState.COMPLETE for t in trials_of(url, "faults"))
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_lasting_outage_exits_1_with_one_clear_line(write_spec, tmp_path: Path, private_pg) -> None:
    spec = _spec(write_spec, tmp_path, outage=4)
    env = {"HPO_STORAGE": private_pg.url, "PYTHONPATH": pythonpath(tmp_path)}
    node = hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env)
    _wait_for(lambda: _finished(private_pg.url) >= 1, timeout=90)
    stopper = threading.Thread(target=private_pg.stop)
    stopper.start()
    started = time.monotonic()
    out = finish(node, timeout=120)
    stopper.join()

    assert node.returncode == 1, out
    assert "storage unreachable" in out
    assert time.monotonic() - started < 90


@pytest.fixture
def small_pg():
    """A server with 8 connections (hpo connects as a superuser: none reserved)."""
    pg = PrivatePostgres().init()
    with open(pg.dir / "postgresql.conf", "a") as conf:
        conf.write("max_connections = 8\nsuperuser_reserved_connections = 0\n")
    pg.start()
    yield pg
    with contextlib.suppress(subprocess.CalledProcessError):
        pg.stop()
    pg.remove()


def test_too_many_clients_is_waited_for_not_fatal(write_spec, tmp_path: Path, small_pg) -> None:
    """Seven workers need 9 connections (1 each, 2 for hpo run) where 8 are free: hpo warns
    with the numbers up front, workers refused a connection wait for one, and every trial runs
    exactly once."""
    spec = _spec(write_spec, tmp_path, outage=120)
    env = {"HPO_STORAGE": small_pg.url, "PYTHONPATH": pythonpath(tmp_path)}
    node = hpo("run", str(spec), "--workers", "7", cwd=tmp_path, env=env)
    out = finish(node, timeout=240)

    assert node.returncode == 0, out
    assert "needs up to 9 database connections" in out and "max_connections 8" in out, out
    trials = trials_of(small_pg.url, "faults")
    assert sorted(t.state for t in trials) == [TrialState.COMPLETE] * 6, [
        (t.number, t.state, t.user_attrs) for t in trials
    ]
