"""Shared fixtures: study files written to tmp_path, SQLite and the real PostgreSQL storage."""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import yaml

#: Tests run several nodes and workers on one host of 2 cores, each process sizing its torch
#: threads to the whole host: OpenMP threads that spin while waiting then starve each other
#: (two processes of 2 threads: 10x the time of one; test_run's two-node study took 64 s instead
#: of 11). Waiting threads sleep instead, in every process the suite starts (set before torch).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

POSTGRES_URL = os.environ.get(
    "HPO_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
)

#: A study that trains in about a second: the small CNN on digits.
TINY_TRAIN = {"model": "cnn", "dataset": "digits", "epochs": 3, "batch_size": 64, "num_workers": 0}


def pythonpath(*dirs: str | Path) -> str:
    """``PYTHONPATH`` for a child process: ``dirs`` (an objective's module) ahead of this one's,
    so the child imports the same hpo as the tests (a checkout on PYTHONPATH, not only the
    installed package)."""
    paths = [str(d) for d in dirs] + [p for p in [os.environ.get("PYTHONPATH")] if p]
    return os.pathsep.join(paths)


def importable_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str
) -> Path:
    """``name`` (``source``) in ``tmp_path``, importable here (spec validation) and in worker
    processes (they inherit os.environ, with this checkout's hpo on their path too); the working
    directory is ``tmp_path`` and HPO_STORAGE unset."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", pythonpath(tmp_path))
    monkeypatch.delenv("HPO_STORAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_spec(name: str = "tiny", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "metric": {"name": "val_accuracy", "direction": "maximize"},
        "sampler": {"type": "random", "seed": 0},
        "pruner": {"type": "none"},
        "budget": {"n_trials": 4},
        "space": {"lr": {"type": "float", "low": 0.01, "high": 0.5, "log": True}},
        "train": dict(TINY_TRAIN),
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a spec dict (or raw YAML text) to a file and return its path."""

    def write(spec: dict[str, Any] | str, filename: str = "study.yaml") -> Path:
        path = tmp_path / filename
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The real PostgreSQL; skipped when absent unless HPO_REQUIRE_POSTGRES=1 (CI)."""
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        if os.environ.get("HPO_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required (HPO_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip("PostgreSQL not reachable")
    finally:
        engine.dispose()
    return POSTGRES_URL


@pytest.fixture(params=["postgres", "sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The real PostgreSQL, then a SQLite file: for storage code that must behave alike."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


@contextlib.contextmanager
def sql_statements() -> Iterator[list[str]]:
    """Collect every SQL statement any engine sends inside the block."""
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", count)


@pytest.fixture
def unique_name() -> str:
    """A study name no other test (or earlier run on the shared database) uses."""
    return f"t-{uuid.uuid4().hex[:12]}"


def pg_study_count(url: str) -> int:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sqlalchemy.inspect(conn).has_table("studies"):
                return 0
            return conn.execute(sqlalchemy.text("SELECT count(*) FROM studies")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def one_thread() -> Any:
    """One torch thread: tiny models run faster without intra-op threads on shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With HPO_FAST_PATHS=0 (CI's plain-paths run) the tests of the speed-ups themselves are
    skipped: the plain paths do not take them."""
    from hpo.study._optuna.fast_paths import off_reason

    reason = off_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"plain Optuna paths ({reason})")
    for item in items:
        if item.get_closest_marker("fast_paths"):
            item.add_marker(skip)


@pytest.fixture
def private_pg() -> Iterator[Any]:
    """A private PostgreSQL server (tests/pgserver.py) that a test may stop and restart."""
    from pgserver import PrivatePostgres

    if not PrivatePostgres.available():
        pytest.skip("PostgreSQL binaries not installed")
    pg = PrivatePostgres().init()
    pg.start()
    yield pg
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped by the test
        pg.stop()
    pg.remove()
