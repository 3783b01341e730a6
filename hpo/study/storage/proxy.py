"""Optuna's gRPC storage proxy: one process holds the database connections for a large fleet.

``hpo proxy --storage postgresql+psycopg2://... --port 13000`` serves the study storage; workers
then use ``--storage grpc://proxy-host:13000``. The proxy speaks plain gRPC without TLS: bind it
to a private network. Workers behind it have no heartbeats (Optuna's proxy does not carry them),
so a node lost without its supervisor is not recovered automatically (``hpo run`` says so once,
:data:`NODE_LOSS_WARNING`); a crashed worker process still is, by its node's supervisor.
PgBouncer in transaction mode is the path for large fleets that keeps heartbeats.
"""

from __future__ import annotations

import logging

from optuna.storages import BaseStorage

from hpo.errors import SpecError, StorageError

log = logging.getLogger(__name__)


#: What ``hpo run`` says once when its storage is a proxy.
NODE_LOSS_WARNING = (
    "node loss is not detected through the gRPC proxy (no heartbeats): trials of a node lost "
    "without its supervisor stay RUNNING; for large fleets use PgBouncer (README: Large fleets)"
)


def parse_grpc_url(url: str) -> tuple[str, int]:
    """``grpc://host:port`` -> (host, port)."""
    rest = url.removeprefix("grpc://").rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise SpecError(f"storage: {url!r} is not of the form grpc://host:port")
    return host, int(port)


def open_proxy(url: str, timeout: float = 30.0) -> BaseStorage:
    """A client of the proxy at ``url``, once the proxy answers."""
    try:
        from optuna.storages import GrpcStorageProxy
    except ImportError as exc:  # grpcio / protobuf missing
        raise SpecError(f"storage: grpc:// needs `pip install hpo[proxy]`: {exc}") from None
    host, port = parse_grpc_url(url)
    proxy = GrpcStorageProxy(host=host, port=port)
    try:
        proxy.wait_server_ready(timeout=timeout)
    except ConnectionError:
        raise StorageError(f"no storage proxy answers at {url} within {timeout:.0f} s") from None
    return proxy


def serve(storage: BaseStorage, host: str, port: int) -> None:
    """Serve ``storage`` over gRPC until interrupted (Optuna caches finished trials in-process)."""
    from optuna.storages import get_storage, run_grpc_proxy_server

    run_grpc_proxy_server(get_storage(storage), host=host, port=port)
