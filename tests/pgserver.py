"""A private PostgreSQL server for fault tests: started with initdb on a free port, so a test
can stop and restart it without touching the shared server on 5432."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1:] or [""]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: drop to the postgres user when root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivatePostgres:
    """initdb + pg_ctl in a temporary directory; ``url`` reaches it with trust auth."""

    def __init__(self, listen: str = "127.0.0.1") -> None:
        # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
        root = Path(tempfile.mkdtemp(prefix="hpo-pg-"))
        root.chmod(0o755)
        self.root = root
        self.dir = root / "pgdata"
        self.port = _free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"
        self.log = root / "pg.log"
        self.listen = listen  # comma-separated addresses the server listens on

    @staticmethod
    def available() -> bool:
        return bool(BIN[0]) and Path(BIN[0], "initdb").exists()

    def _ctl(self, *args: str) -> None:
        cmd = [f"{BIN[0]}/pg_ctl", "-D", str(self.dir), "-l", str(self.log), "-w", *args]
        subprocess.run(_as_postgres(cmd), check=True, capture_output=True, timeout=120)

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir.parent, "postgres")
            self.log.touch()
            shutil.chown(self.log, "postgres")
        subprocess.run(
            _as_postgres(
                [
                    f"{BIN[0]}/initdb",
                    "-D",
                    str(self.dir),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "--no-sync",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        return self

    def trust(self, network: str) -> None:
        """Accept connections from ``network`` (CIDR) without a password."""
        with open(self.dir / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {network} trust\n")

    def start(self, **settings: object) -> None:
        """Start it; ``settings`` are server settings (``max_connections=8``)."""
        opts = f"-p {self.port} -c listen_addresses={self.listen} -c unix_socket_directories=''"
        opts += " -c fsync=off"
        opts += "".join(f" -c {key}={value}" for key, value in settings.items())
        self._ctl("-o", opts, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()
