"""PgBouncer in transaction-pooling mode in front of a private PostgreSQL, started the way a user
would: Debian's ``pgbouncer`` binary with a config file of its own (it refuses to run as root, so
as the postgres user when root, like :mod:`pgserver`)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from pgserver import PrivatePostgres, _as_postgres, _free_port

BINARY = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)

#: The settings hpo's README recommends for a fleet (see "Large fleets"); tests may override.
DEFAULTS: dict[str, object] = {
    "pool_mode": "transaction",
    "max_client_conn": 1000,
    "default_pool_size": 20,
    "reserve_pool_size": 0,
    "query_timeout": 60,
    "idle_transaction_timeout": 60,
}


def require_pgbouncer() -> str:
    """The pgbouncer binary; skips the test when missing unless HPO_REQUIRE_PGBOUNCER=1 (CI)."""
    if BINARY:
        return BINARY
    if os.environ.get("HPO_REQUIRE_PGBOUNCER") == "1":
        pytest.fail("pgbouncer required (HPO_REQUIRE_PGBOUNCER=1) but not installed")
    pytest.skip("pgbouncer not installed (apt-get install pgbouncer)")


class PgBouncer:
    """A PgBouncer process in front of ``server``; ``url`` reaches the server's ``postgres``
    database through it."""

    def __init__(self, server: PrivatePostgres, listen: str = "127.0.0.1", **settings: object):
        self.server = server
        self.port = _free_port()
        self.listen = listen
        self.settings = DEFAULTS | settings
        self.dir = server.root / "pgbouncer"
        self.url = f"postgresql+psycopg2://postgres@{self._host()}:{self.port}/postgres"
        self.process: subprocess.Popen[bytes] | None = None

    def _host(self) -> str:
        return "127.0.0.1" if self.listen in ("127.0.0.1", "0.0.0.0", "*") else self.listen

    def _config(self) -> Path:
        self.dir.mkdir(exist_ok=True)
        auth = self.dir / "userlist.txt"
        auth.write_text('"postgres" ""\n')
        ini = self.dir / "pgbouncer.ini"
        lines = [
            "[databases]",
            f"postgres = host=127.0.0.1 port={self.server.port} dbname=postgres",
            "[pgbouncer]",
            f"listen_addr = {self.listen}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {auth}",
            f"logfile = {self.dir / 'pgbouncer.log'}",
            *(f"{key} = {value}" for key, value in self.settings.items()),
        ]
        ini.write_text("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            for path in (self.dir, auth, ini):
                shutil.chown(path, "postgres")
        return ini

    def start(self) -> PgBouncer:
        binary = require_pgbouncer()
        self.process = subprocess.Popen(
            _as_postgres([binary, str(self._config())]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited {self.process.returncode}: {self.log()}")
            with socket.socket() as s:
                if s.connect_ex((self._host(), self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.dir / "pgbouncer.log"
        return path.read_text()[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
