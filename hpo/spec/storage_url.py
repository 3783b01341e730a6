"""Storage URLs checked at the edge: the usual spellings accepted, a typo one clear line.

``postgres://`` (Heroku, psql, most tools) is PostgreSQL, which SQLAlchemy only knows as
``postgresql://``. A URL whose dialect, driver or port cannot work is refused here, before any
storage is opened, with the flag, variable or spec field that supplied it.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from hpo.errors import SpecError

#: Aliases other tools accept for a dialect, and the SQLAlchemy name hpo uses for each. A bare
#: ``postgresql://`` means psycopg2 too: hpo depends on it; SQLAlchemy 2.1 defaults to psycopg 3.
_ALIASES = {"postgres": "postgresql+psycopg2", "postgresql": "postgresql+psycopg2"}
#: The pip package that provides each driver hpo can name in an error.
_DRIVER_PACKAGES = {"pymysql": "pymysql", "mysqldb": "mysqlclient", "psycopg": "psycopg"}
_GRPC = re.compile(r"^grpc://[^/:@]+:(?P<port>[^/]*)/?$")


def normalize_storage_url(url: str, source: str) -> str:
    """``url`` as SQLAlchemy and Optuna take it, or a SpecError naming ``source``.

    Args:
        url: a database URL (``sqlite:///...``, ``postgres://...``) or ``grpc://host:port``.
        source: what supplied it, for the message: ``--storage``, ``HPO_STORAGE``, or
            ``study.yaml: storage``.

    Raises:
        SpecError: the URL cannot be parsed, names an unknown dialect or driver, a driver that
            is not installed, or a port that is not a number.
    """
    if url.startswith("grpc://"):
        match = _GRPC.match(url)
        if not match or not match["port"].isdigit():
            raise SpecError(f"{source}: {url!r} is not of the form grpc://host:port")
        return url
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SpecError(
            f"{source}: {_redacted(url)!r} is not a storage URL "
            "(sqlite:///path.db, postgresql://user@host/db or grpc://host:port)"
        ) from None
    except ValueError:  # int() of the port
        raise SpecError(f"{source}: {_redacted(url)!r}: the port is not a number") from None
    if parsed.drivername in _ALIASES:
        parsed = parsed.set(drivername=_ALIASES[parsed.drivername])
        url = parsed.render_as_string(hide_password=False)
    elif parsed.drivername.startswith("postgres+"):
        parsed = parsed.set(drivername=parsed.drivername.replace("postgres+", "postgresql+", 1))
        url = parsed.render_as_string(hide_password=False)
    _check_driver(parsed, source)
    return url


def _check_driver(parsed: URL, source: str) -> None:
    shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
    except ArgumentError:  # NoSuchModuleError: no such dialect or driver in SQLAlchemy
        raise SpecError(
            f"{source}: {shown!r}: unknown database or driver {parsed.drivername!r} "
            "(e.g. sqlite, postgresql+psycopg2, mysql+pymysql)"
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError:
        driver = parsed.get_driver_name()
        package = _DRIVER_PACKAGES.get(driver, driver)
        raise SpecError(
            f"{source}: {shown!r}: the driver {driver!r} is not installed (pip install {package})"
        ) from None


def _redacted(url: str) -> str:
    """``url`` with anything between ``://`` and ``@`` hidden (it may hold a password)."""
    return re.sub(r"(://)[^@/]*@", r"\1***@", url)
