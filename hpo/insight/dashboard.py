"""``hpo dashboard``: the real optuna-dashboard, served from this process on the study's storage.

The dashboard gets an open storage object, never the URL on a command line, so a database
password does not show up in ``ps`` on a shared node. Opening the storage first also creates
Optuna's tables, which optuna-dashboard needs and does not create itself.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpo.errors import HpoError
from hpo.study import open_storage, redact

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _ThreadedServer(ThreadingMixIn, WSGIServer):
    """One thread per request, as optuna-dashboard's own command runs it."""

    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """Requests go to the debug log, not one line each on the console."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("%s " + format, self.address_string(), *args)


@dataclass
class Dashboard:
    """A dashboard bound to its port, ready to ``serve()``."""

    server: WSGIServer
    host: str
    port: int
    storage: str  # redacted
    study_name: str | None = None  # the study to open first
    study_id: int | None = None  # its id, when the storage holds it already
    artifacts: str | None = None  # the artifact store served, if any

    @property
    def path(self) -> str:
        """The page to open: the study's own page, else the list of studies."""
        return "/dashboard" if self.study_id is None else f"/dashboard/studies/{self.study_id}"

    def how_to_reach(self, node: str | None = None) -> list[str]:
        """Lines telling a person how to open the dashboard, from here and from a laptop."""
        node = node or socket.gethostname()
        target = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        store = f", artifacts in {self.artifacts}" if self.artifacts else ", no artifact store"
        lines = [
            f"optuna-dashboard on {self.storage}{store}",
            f"open http://{target}:{self.port}{self.path}",
            f"from a laptop: ssh -L {self.port}:{target}:{self.port} {node}"
            f"  then open http://127.0.0.1:{self.port}{self.path}",
        ]
        if self.study_name and self.study_id is None:
            lines.append(f"study {self.study_name} is not in the storage yet: reload once it runs")
        if self.host not in LOOPBACK:
            lines.append(
                f"warning: listening on {self.host or 'all interfaces'}: anyone who can reach "
                f"{node}:{self.port} can read and change the study (no authentication)"
            )
        return lines

    def serve(self) -> None:
        """Serve until Ctrl-C, then release the port."""
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server.server_close()


def _artifact_store(location: str | None) -> Any:
    """The study's artifact store, or None where there is none to read (no such directory)."""
    if not location or (not location.startswith("s3://") and not Path(location).is_dir()):
        return None
    from hpo.study import open_store

    return open_store(location)


def start_dashboard(
    url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    study_name: str | None = None,
    artifacts: str | None = None,
) -> Dashboard:
    """Open the storage (creating Optuna's tables) and bind optuna-dashboard to ``host:port``.

    ``artifacts`` is the study's artifact store (a directory or ``s3://bucket``): with it, each
    trial's ``best_model.pt`` shows on its page and downloads.

    Raises:
        SpecError, StorageError: the URL is bad or the database unreachable.
        HpoError: the port cannot be bound (in use, or a host that is not this machine's).
    """
    import optuna_dashboard

    storage = open_storage(url)
    study_id = None
    if study_name:
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError:
            log.info("study %s is not in the storage yet", study_name)
    store = _artifact_store(artifacts)
    app = optuna_dashboard.wsgi(storage, artifact_store=store)
    try:
        server = make_server(
            host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise HpoError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = server.server_address[1]  # the port chosen when asked for port 0
    shown = artifacts if store is not None else None
    return Dashboard(server, host, bound, redact(url), study_name, study_id, shown)
