"""TensorBoard event files per trial: ``<artifacts>/tensorboard/<study>/trial-<n>/``, so that
``tensorboard --logdir <artifacts>/tensorboard/<study>`` shows a whole study.

The worker opens one :class:`Board` per trial (``logging.tensorboard``), writes each epoch's
metrics to it and, when the trial ends, its parameters and final value as TensorBoard hparams.
``n`` is the original trial's number: a retry that resumes from its predecessor's checkpoint
continues the same run (the epochs it trains again replace the ones written after that
checkpoint). A custom objective gets the same writer: ``report.writer`` in the
``(params, report)`` form, ``hpo.tensorboard(trial)`` in either. This module imports nothing
heavy (it is on ``hpo``'s front door); the ``tensorboard`` package loads when a board opens.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)

#: How to get the writer: ``pip install 'hpo[tensorboard]'``.
EXTRA = "tensorboard"


def installed() -> bool:
    """Whether the ``tensorboard`` package (which torch's SummaryWriter needs) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def logdir(artifacts: str, study: str, key: int) -> str:
    """Where trial ``key`` of ``study`` writes its event files (``/``-joined: s3:// too)."""
    return f"{artifacts.rstrip('/')}/tensorboard/{study}/trial-{key}"


def tag(name: str) -> str:
    """TensorBoard's tag of a metric: ``val_loss`` -> ``loss/val`` (train and validation of one
    quantity side by side in one section), anything else as it is."""
    for split in ("train", "val"):
        if name.startswith(split + "_"):
            return f"{name.removeprefix(split + '_')}/{split}"
    return name


def _hparam(value: Any) -> Any:
    """A value TensorBoard's hparams take: numbers, strings and booleans; the rest as text."""
    return value if isinstance(value, bool | int | float | str) else str(value)


class Board:
    """One trial's TensorBoard run. ``writer`` is torch's ``SummaryWriter``, for anything more
    a custom objective wants to log (images, histograms, text)."""

    def __init__(self, path: str, first_step: int = 1) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = path
        # purge_step: what an earlier attempt wrote from this step on is hidden by TensorBoard
        self.writer: SummaryWriter = SummaryWriter(path, purge_step=first_step)

    def epoch(self, step: int, metrics: dict[str, float]) -> None:
        """Write one epoch's metrics (those that are numbers) at ``step``."""
        for name, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(tag(name), value, step)

    def close(self, params: dict[str, Any], final: dict[str, float]) -> None:
        """Record the trial's parameters and final metric(s) as hparams, then close the file.
        Written into the trial's own run (not a sub-run, as ``add_hparams`` would), so the
        HPARAMS tab lists one row per trial beside its curves."""
        from torch.utils.tensorboard.summary import hparams

        try:
            if params and final:
                experiment, start, end = hparams({k: _hparam(v) for k, v in params.items()}, final)
                file_writer = self.writer.file_writer
                assert file_writer is not None  # open until the close below
                for summary in (experiment, start, end):
                    file_writer.add_summary(summary)
                for name, value in final.items():
                    self.writer.add_scalar(name, value)
        finally:
            self.writer.close()


def open_board(path: str, first_step: int = 1) -> Board | None:
    """A :class:`Board` at ``path``; None, with a warning, when it cannot be opened (a trial
    never fails for its logs)."""
    try:
        return Board(path, first_step)
    except Exception as exc:  # noqa: BLE001 - logging must not cost the trial
        log.warning("TensorBoard logs off for %s: %s", path, exc)
        return None


#: The trial this worker process runs (one at a time): its number and how to get its writer.
_active: dict[str, tuple[int, Callable[[], SummaryWriter | None]]] = {}


def tensorboard(trial: optuna.Trial | None = None) -> SummaryWriter | None:
    """The ``SummaryWriter`` of ``trial``, or of the trial this worker runs; None outside an
    hpo worker or with ``logging: {tensorboard: false}``, so log with ``if writer:``."""
    number, writer = _active.get("trial", (None, lambda: None))
    if trial is not None and trial.number != number:
        return None
    return writer()


@contextlib.contextmanager
def bind(number: int, writer: Callable[[], SummaryWriter | None]) -> Iterator[None]:
    """While the worker runs trial ``number``, :func:`tensorboard` answers with ``writer()``."""
    _active["trial"] = (number, writer)
    try:
        yield
    finally:
        _active.pop("trial", None)
