"""hpo's voice on the console: log records and Python warnings as one line each.

The CLI prints its errors as ``error: ...``; warnings that library code logs (the plain-paths
notice, the budget-kept notice, the connection-headroom warning, Optuna's own) print the same
way, ``warning: ...``, never as Python logging's ``WARNING:hpo.study.claims.budget:...``.
With ``--verbose`` the logger's name follows each line, and debug lines show too. Worker log
files keep their timestamps and module names (:mod:`hpo.worker.__main__`).
"""

from __future__ import annotations

import logging
import warnings
from typing import TextIO

import optuna
from rich.console import Console
from rich.text import Text

_STYLES = {"critical": "red", "error": "red", "warning": "yellow"}


def one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines too) as one space."""
    return " ".join(message.split())


class ConsoleHandler(logging.Handler):
    """Prints each record as ``<level>: <message>`` on one line of ``console``."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        super().__init__(logging.DEBUG if verbose else logging.WARNING)
        self.console = console
        self.verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = record.levelname.lower()
            text = Text.assemble(
                (f"{level}:", _STYLES.get(level, "dim")), " ", one_line(record.getMessage())
            )
            if self.verbose:
                text.append(f"  ({record.name})", "dim")
            self.console.print(text, highlight=False, soft_wrap=True)
            if self.verbose and record.exc_info:
                self.console.print_exception()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    logging.getLogger("py.warnings").warning("%s (%s)", message, category.__name__)


def install(console: Console, verbose: bool = False) -> None:
    """Route hpo's, Optuna's and Python's warnings to ``console`` in hpo's voice (idempotent:
    an in-process caller that runs several commands keeps one handler)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, ConsoleHandler)]:
        root.removeHandler(handler)
    root.addHandler(ConsoleHandler(console, verbose))
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    # Optuna prints through a handler of its own ("[W 2026-...] ..."): send its records here.
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    # hpo prints its own per-trial lines: Optuna's INFO line per trial would repeat them.
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose else optuna.logging.WARNING)
    warnings.showwarning = _show_warning
