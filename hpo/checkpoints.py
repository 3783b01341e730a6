"""Trial-scoped checkpoints for custom objectives: save each epoch, load on a retry.

```python
ckpt = hpo.checkpoint(trial)
state = ckpt.load() or {"epoch": 0, "model": make_model()}
for epoch in range(state["epoch"] + 1, EPOCHS + 1):
    ...
    state["epoch"] = epoch
    ckpt.save(state)
```

The state goes to the study's artifact store (``artifacts.path``, ``--artifacts`` or
``HPO_ARTIFACTS``) under the id the trainer's own checkpoints use, keyed by the original trial's
number, so a retry (preempted, its worker killed, its code raised) loads what its predecessor
saved last, on whichever node runs it. The worker removes it once the trial's result is
committed, as it does the trainer's. This module imports nothing heavy: it is on ``hpo``'s front
door.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from hpo.study import TrialFiles

log = logging.getLogger(__name__)


class Checkpoint:
    """The resume state of one trial. Outside an hpo worker (or with ``artifacts.checkpoints:
    false``) it keeps nothing: ``load`` returns None, ``save`` does nothing."""

    def __init__(self, files: TrialFiles | None = None, key: int = 0) -> None:
        self._files, self._key = files, key

    def load(self) -> dict[str, Any] | None:
        """What this trial's predecessor saved last; None on a first attempt (or when the
        checkpoint cannot be read: the trial starts over, as the trainer's does)."""
        if self._files is None:
            return None
        try:
            return self._files.load_checkpoint(self._key)
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint means starting over
            log.warning("checkpoint of trial %d unreadable (%s): starting over", self._key, exc)
            return None

    def save(self, state: dict[str, Any]) -> None:
        """Replace the trial's checkpoint with ``state`` (picklable; tensors are saved with
        ``torch.save`` and load onto the CPU)."""
        if self._files is not None:
            self._files.save_checkpoint(self._key, state)


#: The trial this worker process runs (one at a time): its number and checkpoint.
_active: dict[str, tuple[int, Checkpoint]] = {}


def checkpoint(trial: optuna.Trial | None = None) -> Checkpoint:
    """The checkpoint of ``trial``, or of the trial this worker runs (the ``(params, report)``
    form has no trial object). Outside an hpo worker, one that keeps nothing, so the same
    objective still runs under plain ``study.optimize``."""
    number, ckpt = _active.get("trial", (None, Checkpoint()))
    if trial is None or trial.number == number:
        return ckpt
    return Checkpoint()


@contextlib.contextmanager
def bind(number: int, files: TrialFiles | None, key: int) -> Iterator[None]:
    """While the worker runs trial ``number``, ``checkpoint()`` answers with its checkpoint
    (stored under ``key``, the original trial's number; none when ``files`` is None)."""
    _active["trial"] = (number, Checkpoint(files, key))
    try:
        yield
    finally:
        _active.pop("trial", None)
