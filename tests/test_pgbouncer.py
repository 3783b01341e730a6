"""Through PgBouncer in transaction-pooling mode (the README's path for large fleets): hpo's locks,
heartbeats, stale detection, claims and budgets, with PgBouncer started from Debian's package in
front of a private PostgreSQL. Skipped when ``pgbouncer`` is missing, unless
HPO_REQUIRE_PGBOUNCER=1 (CI)."""

from __future__ import annotations

import collections
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from pgbouncer import PgBouncer, require_pgbouncer
from pgserver import PrivatePostgres
from test_fleet import _env, _objective_spec
from test_run import _running, _wait_for, finish, hpo, trials_of

from hpo.spec import RetrySpec
from hpo.study.storage import connect

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    """A private server (max_connections 20) behind PgBouncer (pool_mode transaction, 8 server
    connections): a pool far smaller than the number of clients, as in a large fleet."""
    require_pgbouncer()
    if not PrivatePostgres.available():
        pytest.skip("initdb not installed")
    server = PrivatePostgres().init()
    server.start(max_connections=20)
    pooler = PgBouncer(server, default_pool_size=8).start()
    try:
        yield pooler
    finally:
        pooler.stop()
        server.stop()
        server.remove()


def _server_sessions(bouncer: PgBouncer) -> int:
    engine = sqlalchemy.create_engine(bouncer.server.url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            " AND pid <> pg_backend_pid()"
        )
        return int(conn.execute(sqlalchemy.text(query)).scalar_one())


def test_the_storage_opens_without_the_startup_options_pgbouncer_refuses(
    bouncer: PgBouncer,
) -> None:
    connect._NO_OPTIONS.discard(bouncer.url)
    storage = connect.open_storage(bouncer.url, RetrySpec())
    study = optuna.create_study(storage=storage, study_name="opens")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)

    assert len(study.trials) == 3
    assert bouncer.url in connect._NO_OPTIONS
    assert connect.behind_pooler(storage)
    assert "unsupported startup parameter" in bouncer.log()


def test_the_study_lock_excludes_across_transactions_behind_the_pooler(
    bouncer: PgBouncer,
) -> None:
    """Two holders of one key never overlap although the pooler hands every transaction any
    server connection; a waiter polls in transactions of its own, so 12 waiters on a pool of 8
    server connections leave the holder's own statements room to run."""
    connect.open_storage(bouncer.url)  # learns that the pooler refuses options
    inside: list[int] = []
    overlaps: list[int] = []
    lock = threading.Lock()

    def hold(i: int) -> None:
        with connect._pg_advisory(bouncer.url, 4242, 60.0):
            with lock:
                inside.append(i)
                if len(inside) > 1:
                    overlaps.append(i)
            engine = sqlalchemy.create_engine(bouncer.url, poolclass=sqlalchemy.pool.NullPool)
            with engine.connect() as conn:  # the holder's work, on another connection
                conn.execute(sqlalchemy.text("SELECT pg_sleep(0.05)"))
            with lock:
                inside.remove(i)

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(12)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert not any(t.is_alive() for t in threads)
    assert overlaps == []
    assert time.monotonic() - started < 20


def test_a_lock_is_released_when_its_holder_is_gone(bouncer: PgBouncer) -> None:
    """An exception under the lock ends its transaction: the next taker gets it at once."""
    with pytest.raises(RuntimeError), connect._pg_advisory(bouncer.url, 77, 60.0):
        raise RuntimeError("holder failed")
    started = time.monotonic()
    with connect._pg_advisory(bouncer.url, 77, 60.0):
        pass
    assert time.monotonic() - started < 1


def test_a_fleet_through_pgbouncer_runs_the_exact_budget_once(
    bouncer: PgBouncer, write_spec, tmp_path: Path
) -> None:
    """2 nodes x 6 workers (14 clients with the supervisors) through 8 server connections,
    1 s a trial: every node runs some."""
    name = "pgb_fleet"
    spec = _objective_spec(write_spec, name, steps=10, budget={"n_trials": 36})
    nodes = [
        hpo(
            "run",
            str(spec),
            "--workers",
            "6",
            cwd=tmp_path,
            env=_env(spec, HPO_STORAGE=bouncer.url, HPO_NODE_NAME=node),
        )
        for node in ("node-a", "node-b")
    ]
    outs = [finish(p) for p in nodes]

    assert [p.returncode for p in nodes] == [0, 0], outs
    warnings = [
        line
        for out in outs
        for line in out.splitlines()
        if line.startswith("warning:") and "plain Optuna paths" not in line  # HPO_FAST_PATHS=0
    ]
    assert not warnings and not any("Traceback" in out for out in outs), outs
    trials = trials_of(bouncer.url, name)
    points = collections.Counter(json.dumps(t.params, sort_keys=True) for t in trials)
    assert len(trials) == 36 and max(points.values()) == 1
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["node"] for t in trials}) == 2
    assert _server_sessions(bouncer) <= 8  # the pool's size, whatever the clients


def test_a_killed_node_behind_the_pooler_is_detected_stale_and_its_trials_retried(
    bouncer: PgBouncer, write_spec, tmp_path: Path
) -> None:
    """kill -9 of a whole node (supervisor and workers): its heartbeats, written through the
    pooler, stop; the other node's stale check fails its trials and runs their retries."""
    name = "pgb_deadnode"
    spec = _objective_spec(
        write_spec,
        name,
        steps=30,
        budget={"n_trials": 6},
        retry={"max_retries": 2, "heartbeat_interval": 1, "grace_period": 4},
    )
    env = _env(spec, HPO_STORAGE=bouncer.url, HPO_NODE_NAME="doomed")
    doomed = hpo("run", str(spec), "--workers", "2", cwd=tmp_path, env=env, start_new_session=True)
    _wait_for(lambda: len(_running(bouncer.url, name)) == 2)
    victims = _running(bouncer.url, name)
    os.killpg(doomed.pid, signal.SIGKILL)
    for victim in victims:  # each worker has a session of its own
        os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    doomed.wait()

    env["HPO_NODE_NAME"] = "survivor"
    survivor = hpo("run", str(spec), "--workers", "2", cwd=tmp_path, env=env)
    out = finish(survivor)

    assert survivor.returncode == 0, out
    trials = trials_of(bouncer.url, name)
    for victim in victims:
        dead = next(t for t in trials if t.number == victim.number)
        assert dead.state == TrialState.FAIL
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
        assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
        assert retry[0].params == dead.params
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
