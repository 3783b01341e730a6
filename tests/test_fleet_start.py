"""A fleet that starts at one instant: ``hpo run`` processes released together by one barrier,
each with its own host name (a UTS namespace where ``unshare`` works, ``HPO_NODE_NAME``
otherwise), against fresh PostgreSQL databases with no tables."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from conftest import POSTGRES_URL, pythonpath
from optuna.trial import TrialState
from sqlalchemy.engine import make_url
from test_run import _running, _wait_for, trials_of

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

OBJECTIVE = (
    "import time\n"
    "def objective(params, report):\n"
    "    time.sleep(0.05)\n"
    "    report(params['x'], 1)\n"
    "    return params['x']\n"
)

#: Imports what ``hpo run`` needs, says it is ready, then waits for the go file and runs.
LAUNCHER = """
import os, sys, time
import hpo.cli, hpo.dispatch, hpo.study, hpo.worker.serve
ready, go = sys.argv[1], sys.argv[2]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
sys.argv = ["hpo", *sys.argv[3:]]
hpo.cli.main()
"""


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    return probe.returncode == 0


UNSHARE = _can_unshare()


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database on the shared server, dropped afterwards."""
    name = f"hpo_fleet_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def release_together(
    specs: list[Path], url: str, cwd: Path, extra: list[list[str]] | None = None
) -> list[tuple[int, str]]:
    """Start one ``hpo run`` per spec, release them all at one instant, return (code, output)."""
    barrier = cwd / f"barrier-{uuid.uuid4().hex[:6]}"
    barrier.mkdir()
    procs = []
    for i, spec in enumerate(specs):
        node = f"node{i}"
        args = [str(barrier / f"ready{i}"), str(barrier / "go"), "run", str(spec)]
        args += ["--workers", "1", *((extra or [[]] * len(specs))[i])]
        cmd = [sys.executable, "-c", LAUNCHER, *args]
        env = {**os.environ, "HPO_STORAGE": url, "PYTHONPATH": pythonpath(cwd)}
        if UNSHARE:
            cmd = ["unshare", "--uts", "sh", "-c", f'hostname {node} && exec "$@"', "sh", *cmd]
        else:
            env["HPO_NODE_NAME"] = node
        procs.append(
            subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready*"))) < len(specs):
        assert time.monotonic() < deadline, "launchers never got ready"
        assert all(p.poll() is None for p in procs), [p.communicate()[0] for p in procs]
        time.sleep(0.05)
    (barrier / "go").touch()
    return [(p.wait(timeout=300), p.communicate()[0]) for p in procs]


def _spec(write_spec, name: str, n_trials: int, high: float = 1.0, filename: str = "s.yaml"):
    return write_spec(
        {
            "name": name,
            "objective": "fleetobj:objective",
            "metric": {"name": "score"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "budget": {"n_trials": n_trials},
            "space": {"x": {"type": "float", "low": 0, "high": high}},
        },
        filename,
    )


@pytest.fixture
def objective_dir(tmp_path: Path, postgres_url: str) -> Path:
    (tmp_path / "fleetobj.py").write_text(OBJECTIVE)
    return tmp_path


#: Rounds of the eight-node start: 2 in the suite (its 15-minute bound); a race hunt sets more,
#: e.g. HPO_FLEET_ROUNDS=20 pytest tests/test_fleet_start.py -k eight.
ROUNDS = int(os.environ.get("HPO_FLEET_ROUNDS", "2"))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_eight_nodes_started_at_one_instant_on_an_empty_database(
    write_spec, objective_dir: Path, round_: int
) -> None:
    spec = _spec(write_spec, "fleet", n_trials=12)
    with fresh_database() as url:
        results = release_together([spec] * 8, url, objective_dir)
        trials = trials_of(url, "fleet")

    assert [code for code, _ in results] == [0] * 8, [out for _, out in results]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 12
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    nodes = {t.user_attrs["node"] for t in trials}
    assert nodes <= {f"node{i}" for i in range(8)}


def test_two_specs_at_one_instant_exactly_one_wins(write_spec, objective_dir: Path) -> None:
    a = _spec(write_spec, "clash", n_trials=6, high=1.0, filename="a.yaml")
    b = _spec(write_spec, "clash", n_trials=6, high=5.0, filename="b.yaml")
    with fresh_database() as url:
        results = release_together([a, b] * 3, url, objective_dir)
        trials = trials_of(url, "clash")

    codes = [code for code, _ in results]
    a_codes, b_codes = codes[0::2], codes[1::2]
    assert sorted([a_codes, b_codes]) == [[0, 0, 0], [2, 2, 2]], [out for _, out in results]
    winner_high = 1.0 if a_codes == [0, 0, 0] else 5.0
    losers = [out for code, out in results if code == 2]
    assert all("space: differs from study 'clash'" in out for out in losers), losers
    assert all("Traceback" not in out for out in losers)
    assert {t.distributions["x"].high for t in trials} == {winner_high}
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6


def test_budgets_asked_at_one_instant_end_at_the_largest(write_spec, objective_dir: Path) -> None:
    spec = _spec(write_spec, "budgets", n_trials=3)
    with fresh_database() as url:
        asked = [["--n-trials", "5"]] * 4 + [["--n-trials", "20"]]
        results = release_together([spec] * 5, url, objective_dir, asked)
        trials = trials_of(url, "budgets")
        # Asking for less later keeps the budget (a budget only grows), with a warning.
        ((code, out),) = release_together([spec], url, objective_dir, [["--n-trials", "5"]])
        after = trials_of(url, "budgets")

    assert [c for c, _ in results] == [0] * 5, [o for _, o in results]
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 20
    assert code == 0 and "already has a budget of 20 trials" in out, out
    assert "is already complete" in out, out
    assert len(after) == len(trials)


def test_processes_on_one_host_and_a_restarted_worker_never_share_a_configuration(
    write_spec, objective_dir: Path
) -> None:
    """Same spec seed, four ``hpo run`` on one host name, one worker killed (its supervisor
    restarts it), then one more run: every trial but a retry has a configuration of its own."""
    (objective_dir / "fleetobj.py").write_text(OBJECTIVE.replace("0.05", "0.4"))
    spec = _spec(write_spec, "seeds", n_trials=16)
    with fresh_database() as url:
        env = {**os.environ, "HPO_STORAGE": url, "PYTHONPATH": pythonpath(objective_dir)}
        env["HPO_NODE_NAME"] = "samehost"
        cmd = [sys.executable, "-m", "hpo", "run", str(spec), "--workers", "1"]
        runs = [
            subprocess.Popen(
                cmd,
                cwd=objective_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(4)
        ]
        _wait_for(lambda: _running(url, "seeds"), timeout=120)
        os.kill(_running(url, "seeds")[0].user_attrs["pid"], signal.SIGKILL)
        outs = [p.communicate(timeout=300)[0] for p in runs]
        assert [p.returncode for p in runs] == [0] * 4, outs
        again = subprocess.run(
            [*cmd, "--n-trials", "20"],
            cwd=objective_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        trials = trials_of(url, "seeds")

    assert again.returncode == 0, again.stdout + again.stderr
    assert any("worker 0 exited with -9; restarting" in out for out in outs), outs
    originals = [t for t in trials if "failed_trial" not in t.system_attrs]
    configs = {json.dumps(t.params, sort_keys=True) for t in originals}
    assert len(originals) == 20 and len(configs) == 20
