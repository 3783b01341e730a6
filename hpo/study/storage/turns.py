"""Taking turns for scarce database connections.

A PostgreSQL server refuses clients past ``max_connections`` ("too many clients"). Workers that
kept their connection from one trial to the next held every slot for the whole run, and the
workers that came last (a whole node) waited until the budget was spent. So a worker holds its
connection only while it runs a trial and gives it back after each one (:func:`between_trials`).
When the server has at most one slot to spare then, it also waits a turn (:data:`TURN`, longer
than the 1-s poll of a refused worker in ``outage.ride_out``) before its next claim, so that a
waiting worker gets the slot it gave back: the waiting workers of every node get slots in turn.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy
from optuna.storages import RDBStorage

log = logging.getLogger(__name__)

#: Seconds a worker that gave back its connection on a full server waits before its next claim:
#: longer than a refused worker's poll (at most 1 s), jittered so that workers do not return
#: together.
TURN = (1.0, 2.0)

#: The server's client slots, those in use, and whether this role may use the reserved ones.
_SLOTS = sqlalchemy.text(
    "SELECT current_setting('max_connections')::int, "
    "current_setting('superuser_reserved_connections')::int, "
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
    "current_setting('is_superuser') = 'on'"
)


def free_slots(conn: sqlalchemy.Connection) -> int:
    """Connections the server would still accept from this role (its own not counted as
    free)."""
    limit, reserved, used, superuser = conn.execute(_SLOTS).one()
    return int(limit) - (0 if superuser else int(reserved)) - int(used)


def between_trials(storage: Any, sleep: Callable[[float], object] = time.sleep) -> bool:
    """Give back this worker's connection after a trial; on a server with at most one slot to
    spare, also wait a turn before the next claim. Returns whether it waited.

    A no-op on anything but PostgreSQL (SQLite has no connection limit; a gRPC proxy pools its
    own). Errors are the next claim's business: it rides out an outage.
    """
    if not isinstance(storage, RDBStorage) or storage.engine.url.get_backend_name() != "postgresql":
        return False
    full = False
    try:
        with storage.engine.connect() as conn:
            full = free_slots(conn) <= 1
    except sqlalchemy.exc.DBAPIError as exc:
        log.debug("free connection slots unknown: %s", exc)
    storage.remove_session()
    storage.engine.dispose()  # the pooled connection closes: its slot is free for others
    if full:
        sleep(random.uniform(*TURN))
    return full
