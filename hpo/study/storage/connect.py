"""Storage: which URL to use, how to open it, and how to print it without its password."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import random
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import optuna
import sqlalchemy
from optuna.storages import BaseStorage, RDBStorage
from sqlalchemy.engine import make_url

from hpo.errors import SpecError, StorageError
from hpo.keys import ENV_STORAGE
from hpo.spec import RetrySpec, normalize_storage_url
from hpo.study._optuna.fast_paths import fast_paths
from hpo.study._optuna.resilient import PlainResilientStorage, ResilientRDBStorage
from hpo.study.claims.retry import stale_callback
from hpo.study.storage.outage import is_busy_server, is_connection_error, ride_out
from hpo.study.storage.proxy import open_proxy

#: What hpo opens: a database with retries and heartbeats, or a gRPC storage proxy.
Storage = ResilientRDBStorage | BaseStorage

log = logging.getLogger(__name__)

T = TypeVar("T")

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


#: libpq settings that bound every call on a dead link (packets dropped, no reset): an idle
#: connection is probed after 5 s and given up after 3 unanswered probes 2 s apart; data sent
#: and not acknowledged for 5 s fails the call (the server's kernel acknowledges at once, however
#: busy the server is); a connect gives up after 5 s; the server cancels a statement after 60 s.
#: The URL's own query parameters win over these.
PG_CONNECT_ARGS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 5_000,
    "connect_timeout": 5,
    "options": "-c statement_timeout=60000",
}


#: Servers (by URL) that refused the libpq ``options`` startup parameter: PgBouncer does
#: ("unsupported startup parameter: options"). Their connections are opened without it, so the
#: statement timeout is then the pooler's ``query_timeout`` (README: "Large fleets").
_NO_OPTIONS: set[str] = set()


def _refuses_options(exc: BaseException) -> bool:
    """True for a connect refused because of the ``options`` startup parameter."""
    return any(
        "unsupported startup parameter" in str(e) for e in (exc, exc.__cause__) if e is not None
    )


def _without_refused_options(url: str, call: Callable[[], T]) -> T:
    """``call()``; when the server refuses the ``options`` startup parameter, once more with
    connections opened without it (``call`` reads :data:`_NO_OPTIONS` through
    :func:`_engine_kwargs`)."""
    try:
        return call()
    except (sqlalchemy.exc.DBAPIError, optuna.exceptions.StorageInternalError) as exc:
        # Optuna wraps a connect that fails inside its session in StorageInternalError.
        if url in _NO_OPTIONS or not _refuses_options(exc):
            raise
    _NO_OPTIONS.add(url)
    log.info(
        "%s refuses the startup parameter 'options' (a connection pooler): connecting without "
        "it, so the server's or pooler's statement timeout applies",
        redact(url),
    )
    return call()


def _engine_kwargs(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 120}}
    kwargs: dict[str, Any] = {
        # One connection kept per process, shared by the trial loop and the heartbeat thread
        # (each holds it for one statement), so a fleet needs one server slot per worker; a
        # second one opens only while both want it at once (and Optuna's start-up nests two),
        # and closes after. Locks take a short-lived connection of their own (_lock_engine).
        "pool_size": 1,
        "max_overflow": 1,
        "pool_pre_ping": True,
        "pool_recycle": 3600,
    }
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg2":
        skip = set(parsed.query) | ({"options"} if url in _NO_OPTIONS else set())
        kwargs["connect_args"] = {k: v for k, v in PG_CONNECT_ARGS.items() if k not in skip}
    return kwargs


#: Locks this process holds, by key, with their depth: taking one again is a no-op, so the
#: storage can be opened (which takes the schema lock) inside a held lock.
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def _reentrant(
    key: str, acquire: Callable[[], contextlib.AbstractContextManager[Any]]
) -> Iterator[None]:
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    with acquire():
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]


#: Between two tries of a taken advisory lock: from 5 ms, doubling, up to 200 ms.
_LOCK_POLL = (0.005, 0.2)


def _try_xact_lock(conn: sqlalchemy.Connection, key: int) -> bool:
    """One try in a transaction of its own: True leaves the transaction open, holding the
    lock; False ends it, so a waiter holds no server connection of a pooler between tries."""
    got = conn.execute(sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key})
    if got.scalar_one():
        return True
    conn.rollback()
    return False


@contextlib.contextmanager
def _pg_advisory(url: str, key: int, outage: float, opening: bool = False) -> Iterator[None]:
    """A transaction-scoped advisory lock on a connection of its own, polled, never waited
    for in a statement: safe behind a transaction-pooling PgBouncer (the lock lives as long
    as the transaction that pins one server connection, and no session state is set), and
    no statement timeout cuts a long wait. Released by the commit, or by the server when the
    connection is lost."""
    retryable = is_busy_server if opening else is_connection_error

    def connect() -> sqlalchemy.Connection:
        return _without_refused_options(
            url, lambda: _lock_engine(url, url in _NO_OPTIONS).connect()
        )

    try:
        conn = ride_out(connect, outage, retryable=retryable)
    except sqlalchemy.exc.DBAPIError as exc:
        raise _cannot_open(url, exc) from None

    def rollback() -> None:
        with contextlib.suppress(sqlalchemy.exc.DBAPIError):
            conn.rollback()

    try:
        delay = _LOCK_POLL[0]
        while not ride_out(lambda: _try_xact_lock(conn, key), outage, on_failure=rollback):
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _LOCK_POLL[1])
        yield
    finally:
        with contextlib.suppress(sqlalchemy.exc.DBAPIError):
            conn.commit()
        conn.close()


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.cache
def _lock_engine(url: str, plain: bool = False) -> sqlalchemy.Engine:
    """Connections for advisory locks, opened per lock and closed after it (``plain``: without
    the ``options`` startup parameter a pooler refuses).

    Never the storage's own pool: the work done under a lock needs that pool's connection,
    and a lock held on it would leave a process that may not open another (a server out of
    connection slots) waiting on itself while every other process waits on its lock.
    """
    connect_args = _engine_kwargs(url).get("connect_args", {})
    if plain:
        connect_args = {k: v for k, v in connect_args.items() if k != "options"}
    return sqlalchemy.create_engine(
        url, poolclass=sqlalchemy.pool.NullPool, connect_args=connect_args
    )


#: The advisory-lock key under which Optuna's tables and hpo's studies are created.
_SCHEMA_KEY = zlib.crc32(b"hpo:schema")


@contextlib.contextmanager
def schema_lock(url: str, outage: float = 300.0) -> Iterator[None]:
    """Held while Optuna's tables are created and a study is created or joined, across every
    process and node on the database, so that simultaneous starts never race.

    PostgreSQL: a transaction-scoped advisory lock on a connection of its own (safe behind a
    transaction-pooling PgBouncer). SQLite: an flock beside the
    database file (the same one as :func:`study_lock`: one host, one lock). Other databases:
    no lock.
    """
    url = normalize_storage_url(url, "storage")
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = f"{parsed.database}.lock"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with _reentrant(path, lambda: _file_lock(path)):
            yield
    elif backend == "postgresql":
        with _reentrant(
            f"{url}#{_SCHEMA_KEY}", lambda: _pg_advisory(url, _SCHEMA_KEY, outage, opening=True)
        ):
            yield
    else:
        yield


def _cannot_open(url: str, exc: sqlalchemy.exc.DBAPIError) -> StorageError:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    return StorageError(f"cannot open storage {redact(url)}: {reason}")


def open_storage(
    url: str, retry: RetrySpec | None = None, *, create_tables: bool = True
) -> Storage:
    """The storage at ``url``: a database (heartbeats and retries on with ``retry``) or a
    ``grpc://host:port`` storage proxy.

    Optuna creates its tables on first open; that happens under :func:`schema_lock`. Workers,
    started once ``hpo run`` has created the study, pass ``create_tables=False``: no lock, and
    one connection fewer while they start. A
    database that has too many clients, is starting up or does not answer is waited for
    (``retry.storage_outage``); a refused connection fails at once (most likely a wrong port).

    Raises:
        SpecError: the URL is malformed or names an unknown database driver.
        StorageError: the database cannot be reached.
    """
    url = normalize_storage_url(url, "storage")
    if url.startswith("grpc://"):
        return open_proxy(url)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        Path(make_url(url).database or DEFAULT_DB).parent.mkdir(parents=True, exist_ok=True)
    outage = retry.storage_outage if retry else 300.0
    kwargs: dict[str, Any] = {"outage_seconds": outage}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if retry is not None:
        kwargs |= {
            "heartbeat_interval": retry.heartbeat_interval,
            "grace_period": retry.grace_period,
            "heartbeat_stale_trial_callback": stale_callback(retry.max_retries),
        }

    kind = ResilientRDBStorage if fast_paths() else PlainResilientStorage

    def construct() -> RDBStorage:
        return kind(
            url,
            engine_kwargs=_engine_kwargs(url),
            skip_table_creation=not create_tables,
            **kwargs,
        )

    try:
        with schema_lock(url, outage) if create_tables else contextlib.nullcontext():
            storage = _without_refused_options(
                url, lambda: ride_out(construct, outage, retryable=is_busy_server)
            )
    except sqlalchemy.exc.DBAPIError as exc:
        raise _cannot_open(url, exc) from None
    except ImportError as exc:
        raise SpecError(f"storage: no driver for {redact(url)}: {exc}") from None
    if backend == "sqlite":
        _sqlite_engine_setup(storage.engine)
    return storage


@contextlib.contextmanager
def study_lock(storage: Storage, study_name: str) -> Iterator[bool]:
    """A lock held across processes and nodes while a study's budget is topped up.

    PostgreSQL: a transaction-scoped advisory lock, as :func:`schema_lock`. SQLite: an flock
    beside the database file. Yields False where no lock can be taken (a gRPC proxy, other
    databases).
    """
    if not isinstance(storage, RDBStorage):
        yield False
        return
    url = storage.engine.url
    key = zlib.crc32(f"hpo:{study_name}".encode())
    outage = getattr(storage, "outage_seconds", 300.0)
    if url.get_backend_name() == "postgresql":
        plain = url.render_as_string(hide_password=False)
        with _reentrant(f"{plain}#{key}", lambda: _pg_advisory(plain, key, outage)):
            yield True
    elif url.get_backend_name() == "sqlite" and url.database:
        path = f"{url.database}.lock"
        with _reentrant(path, lambda: _file_lock(path)):
            yield True
    else:
        yield False


def behind_pooler(storage: Storage) -> bool:
    """True for a database reached through a pooler that refused libpq ``options`` (PgBouncer):
    there the server's free connections say nothing about how many clients it takes."""
    if not isinstance(storage, RDBStorage):
        return False
    url = storage.engine.url.render_as_string(hide_password=False)
    return url in _NO_OPTIONS or any(
        make_url(u).render_as_string(hide_password=False) == url for u in _NO_OPTIONS
    )


#: Connections a node needs, as the README's "PostgreSQL connections" says: one per worker
#: (held while it runs a trial, given back between trials) and two for ``hpo run`` (the one it
#: keeps, and one for a moment while it holds a lock).
CONNECTIONS_PER_WORKER = 1
CONNECTIONS_PER_RUN = 2


def connections_needed(workers: int) -> int:
    """The connections a node of ``workers`` worker processes needs at most."""
    return CONNECTIONS_PER_WORKER * workers + CONNECTIONS_PER_RUN


def connection_headroom(storage: Storage, workers: int) -> str | None:
    """A warning when the PostgreSQL server has fewer free connections than a node of
    ``workers`` worker processes needs (:func:`connections_needed`; the one this process
    already holds counts as its own)."""
    if not isinstance(storage, RDBStorage) or storage.engine.url.get_backend_name() != "postgresql":
        return None
    with storage.engine.connect() as conn:
        limit = int(conn.execute(sqlalchemy.text("SHOW max_connections")).scalar_one())
        reserved = int(
            conn.execute(sqlalchemy.text("SHOW superuser_reserved_connections")).scalar_one()
        )
        used = int(
            conn.execute(
                sqlalchemy.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                )
            ).scalar_one()
        )
    needed = connections_needed(workers)
    free = limit - reserved - used + 1  # this process's own connection is part of ``needed``
    if needed <= free:
        return None
    return (
        f"this node needs up to {needed} database connections ({workers} workers, 1 each, "
        f"and 2 for hpo run), but the server has {free} free (max_connections {limit}, "
        f"{reserved} reserved, {used - 1} used by others): workers will take turns, each "
        "waiting for a connection another gives back between trials; raise max_connections "
        "or use `hpo proxy`"
    )


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO; hpo prints its own summary instead."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
