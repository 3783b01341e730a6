"""The error hierarchy: one root, and the kinds the CLI maps to exit codes."""

from __future__ import annotations

import re


class HpoError(Exception):
    """Root of every error hpo raises on purpose."""

    exit_code = 1


class SpecError(HpoError):
    """Bad input: a study file or a command-line value that cannot be used (exit code 2)."""

    exit_code = 2


class StudyConflictError(SpecError):
    """The spec disagrees with the study already in the storage (direction, metric, space)."""


class StorageError(HpoError):
    """The storage cannot be reached or used (exit code 1)."""


class TrialError(HpoError):
    """A trial-level failure: recorded on the trial, the worker goes on.

    ``reason`` is the short machine-readable tag stored in ``user_attrs['fail_reason']``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class NonFiniteLossError(TrialError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int) -> None:
        super().__init__(
            "non_finite_loss", f"training loss became NaN or infinite in epoch {epoch}"
        )
        self.epoch = epoch


class Interrupted(BaseException):  # noqa: N818 - a control-flow signal, like KeyboardInterrupt
    """The node is stopping (Ctrl-C, SIGTERM): end the trial at a safe point, hand it back.

    A BaseException so that no ``except Exception`` in user code or libraries swallows it.
    """


class EpochBudgetSpent(BaseException):  # noqa: N818 - a control-flow signal, like Interrupted
    """The study's epoch budget is spent: end the trial at this epoch boundary (it is recorded
    PRUNED, its epochs kept). A BaseException, as :class:`Interrupted`, so that no ``except
    Exception`` in user code swallows it."""


def plain_words(message: str) -> str:
    """A validator's message in hpo's words: pydantic's ``Input should be X`` (which typer
    passes on for an option's bounds too) as ``must be X``."""
    message = message.removeprefix("Value error, ")
    return re.sub(r"\bInput should be\b", "must be", message)
