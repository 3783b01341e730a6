"""Whether hpo's speed-ups on Optuna's internals are on.

They are on for the Optuna releases CI tests (``TESTED_FROM`` up to, not including,
``TESTED_BELOW``), which is exactly the range ``pyproject.toml`` admits (a test checks it), so a
fresh install always gets them. With ``HPO_FAST_PATHS=0``, or under an Optuna release outside
that range (installed by hand past the pin), hpo
takes plain Optuna paths: Optuna's own ``RDBStorage`` and per-process cache, ``TPESampler``,
``SuccessiveHalvingPruner`` / ``HyperbandPruner``, and ``Study.ask`` (under the study lock) to
claim a trial from the budget pool. Results are the same; each trial costs more statements. The
process says so once, in one line.

``HPO_FAST_PATHS=force`` keeps them on under any release: the canary
(:mod:`hpo.study._optuna.canary`) uses it to run the contract tests on a release newer than the
range, which is how the range is raised.
"""

from __future__ import annotations

import functools
import logging
import os

import optuna
from packaging.version import Version

from hpo.keys import ENV_FAST_PATHS

log = logging.getLogger(__name__)

#: The Optuna releases CI runs the suite on (the lowest and the newest) bound this range; it is
#: the ``optuna>=...,<...`` of pyproject.toml. Raise both together (README: "Adopting a new
#: Optuna release").
TESTED_FROM = Version("5.0.0")
TESTED_BELOW = Version("5.2")

_OFF = {"0", "false", "no", "off"}
#: ``HPO_FAST_PATHS=force``: on under any Optuna release (the canary's trial of a new one).
FORCE = "force"


@functools.cache
def fast_paths() -> bool:
    """True where hpo may use its speed-ups on Optuna's internals (cached per process: call
    ``fast_paths.cache_clear()`` after changing ``HPO_FAST_PATHS`` in-process)."""
    reason = off_reason()
    if reason is None:
        return True
    log.warning("plain Optuna paths (%s); results are the same, trials cost more", reason)
    return False


def off_reason() -> str | None:
    """Why the fast paths are off, or None when they are on."""
    setting = os.environ.get(ENV_FAST_PATHS, "").strip().lower()
    if setting in _OFF:
        return f"{ENV_FAST_PATHS}={setting}"
    if setting == FORCE:
        return None
    version = Version(optuna.__version__)
    if not TESTED_FROM <= version < TESTED_BELOW:
        return (
            f"Optuna {version} is outside the range hpo is tested on, "
            f"{TESTED_FROM} to below {TESTED_BELOW}"
        )
    return None
