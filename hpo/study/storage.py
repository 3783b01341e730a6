"""Storage: which URL to use, how to open it, and how to print it without its password."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from sqlalchemy.engine import make_url

from hpo.errors import SpecError, StorageError
from hpo.spec import RetrySpec
from hpo.study.proxy import open_proxy
from hpo.study.resilient import ResilientRDBStorage

#: What hpo opens: a database with retries and heartbeats, or a gRPC storage proxy.
Storage = ResilientRDBStorage | BaseStorage

log = logging.getLogger(__name__)

ENV_STORAGE = "HPO_STORAGE"
#: The embedded default: a SQLite file in the working directory, safe for several local worker
#: processes (WAL, BEGIN IMMEDIATE) and readable by ``optuna-dashboard sqlite:///hpo.db``.
DEFAULT_DB = "hpo.db"


def resolve_storage_url(flag: str | None, spec_storage: str | None) -> str:
    """``--storage`` flag > ``HPO_STORAGE`` > the spec's ``storage:`` > ``sqlite:///./hpo.db``."""
    for candidate in (flag, os.environ.get(ENV_STORAGE), spec_storage):
        if candidate:
            return candidate
    return f"sqlite:///{Path(DEFAULT_DB).resolve()}"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print and log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: hide everything between '://' and '@'
        head, sep, tail = url.partition("://")
        return f"{head}{sep}***@{tail.split('@', 1)[1]}" if "@" in tail else url


def retry_callback(max_retries: int) -> RetryHeartbeatStaleTrialCallback:
    """Optuna's retry: a WAITING copy of a failed trial with the same params, at most
    ``max_retries`` times per original trial. The one retry policy for stale heartbeats,
    dead workers and interrupted trials alike."""
    return RetryHeartbeatStaleTrialCallback(max_retry=max_retries)


def _sqlite_engine_setup(engine: sqlalchemy.Engine) -> None:
    """WAL so readers (the dashboard) never block writers; BEGIN IMMEDIATE so that two
    processes cannot both read a WAITING trial and both claim it (SQLite ignores FOR UPDATE)."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed


def _engine_kwargs(url: str) -> dict[str, Any]:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return {"connect_args": {"timeout": 120}}
    # Two connections per worker at most: the trial loop and the heartbeat thread.
    return {"pool_size": 2, "max_overflow": 0, "pool_pre_ping": True, "pool_recycle": 3600}


def open_storage(url: str, retry: RetrySpec | None = None) -> Storage:
    """The storage at ``url``: a database (heartbeats and retries on with ``retry``) or a
    ``grpc://host:port`` storage proxy.

    Raises:
        SpecError: the URL is malformed or names an unknown database driver.
        StorageError: the database cannot be reached.
    """
    if url.startswith("grpc://"):
        return open_proxy(url)
    try:
        backend = make_url(url).get_backend_name()
    except sqlalchemy.exc.ArgumentError:
        raise SpecError(f"storage: {redact(url)!r} is not a database URL") from None
    if backend == "sqlite":
        Path(make_url(url).database or DEFAULT_DB).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"outage_seconds": retry.storage_outage if retry else 300.0}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if retry is not None:
        kwargs |= {
            "heartbeat_interval": retry.heartbeat_interval,
            "grace_period": retry.grace_period,
            "heartbeat_stale_trial_callback": retry_callback(retry.max_retries),
        }
    try:
        storage = ResilientRDBStorage(url, engine_kwargs=_engine_kwargs(url), **kwargs)
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.DBAPIError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StorageError(f"cannot open storage {redact(url)}: {reason}") from None
    except ImportError as exc:
        raise SpecError(f"storage: no driver for {redact(url)}: {exc}") from None
    if backend == "sqlite":
        _sqlite_engine_setup(storage.engine)
    return storage


@contextlib.contextmanager
def study_lock(storage: Storage, study_name: str) -> Iterator[bool]:
    """A lock held across processes and nodes while a study's budget is topped up.

    PostgreSQL: a session advisory lock. SQLite: an flock beside the database file. Yields
    False where no lock can be taken (a gRPC proxy, other databases).
    """
    if not isinstance(storage, RDBStorage):
        yield False
        return
    url = storage.engine.url
    key = zlib.crc32(f"hpo:{study_name}".encode())
    if url.get_backend_name() == "postgresql":
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield True
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
    elif url.get_backend_name() == "sqlite" and url.database:
        with open(f"{url.database}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield False


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; hpo prints its own summary instead."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
