"""Many workers and nodes on one study: no duplicates, exact budgets, recovery after crashes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from conftest import pythonpath
from optuna.trial import TrialState
from pgserver import PrivatePostgres
from test_run import _running, _wait_for, finish, hpo, trials_of

pytestmark = [pytest.mark.slow]

#: What these tests check is claiming, heartbeats, retries and preemption, which the worker does
#: the same for any objective: this one needs no torch (seconds of start-up per worker) and
#: sleeps STEPS x 0.1 s, reporting each step, so a test can catch a trial while it runs.
STEPS = (
    "import time\n"
    "def objective(params, report):\n"
    "    for step in range(1, {steps} + 1):\n"
    "        time.sleep(0.1)\n"
    "        report(params['lr'], step)\n"
    "    return params['lr']\n"
)


def _objective_spec(write_spec, name: str, steps: int = 1, **overrides):
    """A study of the ``STEPS`` objective (``lr`` in [0.01, 0.5]), written beside the spec."""
    spec = write_spec(
        {
            "name": name,
            "objective": "fleetsteps:objective",
            "metric": {"name": "score", "direction": "maximize"},
            "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"},
            "budget": {"n_trials": 4},
            "space": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
            **overrides,
        }
    )
    (spec.parent / "fleetsteps.py").write_text(STEPS.format(steps=steps))
    return spec


def _env(spec: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": pythonpath(spec.parent), **extra}


@contextlib.contextmanager
def _proxy(storage_url: str) -> Iterator[int]:
    """``hpo proxy`` in front of ``storage_url`` on a free port of 127.0.0.1, for the block."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "hpo", "proxy", "--storage", storage_url, "--port", str(port)]
    proxy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield port
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)


@pytest.mark.postgres
def test_two_nodes_two_workers_run_every_grid_point_once(
    write_spec, tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    spec = _objective_spec(
        write_spec,
        unique_name,
        sampler={"type": "grid", "seed": 0},
        budget={},
        space={
            "lr": {"type": "float", "values": [0.01, 0.03, 0.1, 0.3]},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        },
    )
    env = _env(spec, HPO_STORAGE=postgres_url)
    nodes = [hpo("run", str(spec), "--workers", "2", cwd=tmp_path, env=env) for _ in range(2)]
    outs = [finish(p) for p in nodes]

    assert [p.returncode for p in nodes] == [0, 0], outs
    trials = trials_of(postgres_url, unique_name)
    points = [json.dumps(t.params, sort_keys=True) for t in trials]
    assert len(trials) == 12 and len(set(points)) == 12
    assert all(t.state == TrialState.COMPLETE for t in trials)


def test_a_dead_nodes_trial_is_retried_by_another_node_after_its_heartbeat_stops(
    write_spec, tmp_path: Path
) -> None:
    """kill -9 of a whole node (supervisor and worker): the heartbeat goes stale, the
    other node fails the trial and runs its retry with the same parameters."""
    spec = _objective_spec(
        write_spec,
        "deadnode",
        steps=20,
        budget={"n_trials": 3},
        retry={"max_retries": 2, "heartbeat_interval": 1, "grace_period": 3},
    )
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    env = _env(spec)
    doomed = hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env, start_new_session=True)
    _wait_for(lambda: _running(url, "deadnode"))
    victim = _running(url, "deadnode")[0]
    os.killpg(doomed.pid, signal.SIGKILL)
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)  # the worker has a session of its own
    doomed.wait()
    time.sleep(1)

    survivor = hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env)
    out = finish(survivor)

    assert survivor.returncode == 0, out
    trials = trials_of(url, "deadnode")
    dead = next(t for t in trials if t.number == victim.number)
    assert dead.state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == dead.params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


def test_sigterm_preempts_the_node_and_another_finishes_the_trial(
    write_spec, tmp_path: Path
) -> None:
    spec = _objective_spec(write_spec, "preempt", steps=20, budget={"n_trials": 2})
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    env = _env(spec)
    node = hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env)
    _wait_for(lambda: _running(url, "preempt"))
    started = time.monotonic()
    node.send_signal(signal.SIGTERM)
    out = finish(node, timeout=60)

    assert node.returncode == 0, out  # preempted nodes exit 0 (see README: requeue)
    assert time.monotonic() - started < 30
    trials = trials_of(url, "preempt")
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert len(interrupted) == 1
    assert interrupted[0].user_attrs["fail_reason"].startswith("interrupted")

    other = hpo("run", str(spec), "--workers", "1", cwd=tmp_path, env=env)
    assert finish(other) and other.returncode == 0
    trials = trials_of(url, "preempt")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


@pytest.mark.postgres
def test_workers_share_postgres_through_the_grpc_proxy(
    write_spec, tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    with _proxy(postgres_url) as port:
        # 1 s a trial: both workers are up before one could take all five.
        spec = _objective_spec(write_spec, unique_name, steps=10, budget={"n_trials": 5})
        node = hpo(
            "run",
            str(spec),
            "--workers",
            "2",
            "--storage",
            f"grpc://127.0.0.1:{port}",
            cwd=tmp_path,
            env=_env(spec),
        )
        out = finish(node)

    assert node.returncode == 0, out
    assert out.count("warning: node loss is not detected through the gRPC proxy") == 1, out
    trials = trials_of(postgres_url, unique_name)
    assert len(trials) == 5 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}


@pytest.mark.postgres
def test_nodes_started_at_once_through_the_grpc_proxy_run_the_budget_once(
    write_spec, tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    """A smoke run of simultaneous starts through the proxy (the race itself is forced in
    test_two_nodes_that_both_find_the_study_new_behind_the_proxy_fill_the_budget_once)."""
    with _proxy(postgres_url) as port:
        spec = _objective_spec(write_spec, unique_name, steps=3, budget={"n_trials": 8})
        storage = ["--storage", f"grpc://127.0.0.1:{port}"]
        nodes = [
            hpo("run", str(spec), "--workers", "2", *storage, cwd=tmp_path, env=_env(spec))
            for _ in range(3)
        ]
        outs = [finish(p) for p in nodes]

    assert [p.returncode for p in nodes] == [0, 0, 0], outs
    trials = trials_of(postgres_url, unique_name)
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)


@pytest.mark.postgres
@pytest.mark.parametrize("first", ["creator", "joiner"])
def test_two_nodes_that_both_find_the_study_new_behind_the_proxy_fill_the_budget_once(
    postgres_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch, first: str
) -> None:
    """No lock is shared through the proxy. Two nodes that both find the study new and both
    set its budget (forced here: each waits for the other, then ``first`` sets it first): only
    the one whose create won fills the pool. Before, both did: 8 trials for a budget of 4 (768
    for a 384-point grid with 4 nodes in benchmarks/scale.py --fleet); and then, when the node
    that lost the create set the budget first, neither did: 0 trials, every node exit 0 (CI,
    test_nodes_started_at_once_through_the_grpc_proxy_run_the_budget_once)."""
    import threading

    from conftest import tiny_spec
    from optuna.storages import run_grpc_proxy_server

    from hpo.spec import StudySpec
    from hpo.study import handle as handle_module
    from hpo.study import prepare
    from hpo.study.claims import budget

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = threading.Thread(
        target=run_grpc_proxy_server,
        args=(optuna.storages.RDBStorage(postgres_url),),
        kwargs={"host": "127.0.0.1", "port": port},
        daemon=True,
    )
    server.start()
    both = threading.Barrier(2, timeout=60)
    real, real_create = budget.raise_budget, handle_module._create
    creator: list[threading.Thread] = []
    went_first = threading.Event()

    def create(*args, **kwargs):
        won = real_create(*args, **kwargs)
        if won:
            creator.append(threading.current_thread())
        return won

    def raise_together(*args, **kwargs):
        both.wait()
        is_first = (threading.current_thread() in creator) == (first == "creator")
        if not is_first:
            assert went_first.wait(timeout=60)
        try:
            return real(*args, **kwargs)
        finally:
            went_first.set()

    monkeypatch.setattr(handle_module, "_create", create)
    monkeypatch.setattr(budget, "raise_budget", raise_together)
    spec = StudySpec.model_validate(tiny_spec(unique_name, budget={"n_trials": 4}))
    handles = []
    nodes = [
        threading.Thread(target=lambda: handles.append(prepare(spec, f"grpc://127.0.0.1:{port}")))
        for _ in range(2)
    ]
    for node in nodes:
        node.start()
    for node in nodes:
        node.join(timeout=120)

    assert len(handles) == 2
    trials = trials_of(postgres_url, unique_name)
    assert len(trials) == 4, [t.state for t in trials]


@pytest.mark.skipif(not PrivatePostgres.available(), reason="PostgreSQL binaries not installed")
def test_scarce_connections_are_shared_by_every_node(write_spec, tmp_path: Path) -> None:
    """max_connections 20 for 3 nodes of 8 workers (27 processes): the node that came last got
    0 trials, its workers waiting for a connection while the others ran trial after trial."""
    server = PrivatePostgres().init()
    server.start(max_connections=20)
    try:
        spec = _objective_spec(write_spec, "scarce", steps=20, budget={"n_trials": 120})

        def node(i: int):
            return hpo(
                "run",
                str(spec),
                "--workers",
                "8",
                "--storage",
                server.url,
                cwd=tmp_path,
                env=_env(spec, HPO_NODE_NAME=f"n{i}"),
            )

        # The test's own connection, taken first: 19 left for hpo.
        watcher = sqlalchemy.create_engine(server.url, poolclass=sqlalchemy.pool.NullPool)
        with watcher.connect() as conn:
            nodes = [node(0), node(1)]
            # The third comes once the first two hold the server's connections and run trials.
            _wait_for(lambda: _complete(conn) >= 1, timeout=240)
            nodes.append(node(2))
            outs = [finish(p, timeout=400) for p in nodes]
        trials = trials_of(server.url, "scarce")
    finally:
        server.stop()
        server.remove()

    assert [p.returncode for p in nodes] == [0, 0, 0], outs
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == len(trials) == 120, [(t.number, t.state) for t in trials]
    per_node = {f"n{i}": 0 for i in range(3)}
    for t in complete:
        per_node[t.user_attrs["node"]] += 1
    print("trials per node:", per_node)
    assert min(per_node.values()) >= 1, per_node


def _complete(conn: sqlalchemy.Connection) -> int:
    """COMPLETE trials in the database (0 before Optuna's tables exist)."""
    try:
        query = sqlalchemy.text("SELECT count(*) FROM trials WHERE state = 'COMPLETE'")
        return int(conn.execute(query).scalar_one())
    except sqlalchemy.exc.ProgrammingError:
        conn.rollback()
        return 0
