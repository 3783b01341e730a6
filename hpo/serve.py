"""The two long-running servers of the Python API: optuna-dashboard on a study's storage, and
Optuna's gRPC storage proxy. Each is bound first (errors raise before anything is served), then
``serve()`` runs until Ctrl-C."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.errors import SpecError
from hpo.resolve import Naming, SpecLike, keyword, locate, storage_url

if TYPE_CHECKING:
    from hpo.insight import Dashboard


def dashboard(
    target: SpecLike | None = None,
    storage: str | None = None,
    *,
    study_name: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    artifacts: str | None = None,
    naming: Naming = keyword,
) -> Dashboard:
    """Bind optuna-dashboard to ``host:port`` on a study's storage, as ``hpo dashboard`` does;
    ``.how_to_reach()`` says how to open it, ``.serve()`` serves until Ctrl-C.

    Args:
        target: a spec (its storage, study and artifact store), a study name, or None: the
            storage alone (``storage``, else HPO_STORAGE, else ``./hpo.db``), every study.
        artifacts: the artifact store whose best models it shows (else HPO_ARTIFACTS, else
            the spec's ``artifacts.path``, else ``./hpo-artifacts``, where it exists).

    Raises:
        SpecError: a bad spec or storage URL. HpoError: the port cannot be bound.
    """
    from hpo.insight import start_dashboard
    from hpo.spec import ArtifactSpec
    from hpo.study import resolve_artifacts

    spec, url, name = locate(target, storage, study_name, naming)
    store = resolve_artifacts(artifacts, (spec.artifacts if spec else ArtifactSpec()).path)
    return start_dashboard(url, host, port, name, store)


@dataclass(frozen=True)
class Proxy:
    """Optuna's gRPC storage proxy, its storage open; workers use ``grpc://HOST:PORT``."""

    storage: str  # the URL it serves, password hidden
    host: str
    port: int
    backend: Any = field(repr=False)  # the opened storage

    def serve(self) -> None:
        """Serve until interrupted (no TLS: keep it on a private network)."""
        from hpo.study import serve_proxy

        serve_proxy(self.backend, self.host, self.port)


def proxy(
    storage: str | None = None,
    host: str = "127.0.0.1",
    port: int = 13000,
    naming: Naming = keyword,
) -> Proxy:
    """Open a database storage (``storage``, else HPO_STORAGE, else ``./hpo.db``) for Optuna's
    gRPC proxy, as ``hpo proxy`` does; ``.serve()`` serves it. Needs ``pip install
    'hpo[proxy]'``.

    Raises:
        SpecError: a bad URL, or a ``grpc://`` one (a proxy serves a database, not a proxy).
    """
    from hpo.study import open_storage, redact

    url = storage_url(storage, None, None, naming)
    if url.startswith("grpc://"):
        raise SpecError(f"{naming('storage')}: the proxy serves a database URL, not another proxy")
    return Proxy(redact(url), host, port, open_storage(url))
