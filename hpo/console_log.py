"""hpo's voice on the console: log records and Python warnings as one line each.

The CLI prints its errors as ``error: ...``; warnings that library code logs (the plain-paths
notice, the budget-kept notice, the connection-headroom warning, Optuna's own) print the same
way, ``warning: ...``, never as Python logging's ``WARNING:hpo.study.claims.budget:...``.
With ``--verbose`` the logger's name follows each line, and debug lines show too. Worker log
files keep their timestamps and module names (:mod:`hpo.worker.__main__`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

import optuna
from rich.console import Console
from rich.text import Text

from hpo.errors import plain_words

_STYLES = {"critical": "red", "error": "red", "warning": "yellow"}


def one_line(message: str) -> str:
    """``message`` with every run of whitespace (newlines too) as one space."""
    return " ".join(message.split())


def usage_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a click usage error (typer raises click's, or since typer 0.22 its
    own copy of click's: told apart by class name, so neither is imported privately)."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def usage_line(exc: Any) -> str:
    """A click/typer usage error (a bad option value, an unknown option or command, a missing
    argument) as the one line after ``error:``, naming the option: ``--n-trials: must be
    greater than or equal to 1; see hpo run --help``, never click's usage block or typer's box."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    param = getattr(exc, "param", None)
    if "BadParameter" in names and "MissingParameter" not in names:
        hint = exc.param_hint or (" / ".join(getattr(param, "opts", ())) or "value")
        shown = hint if isinstance(hint, str) else " / ".join(hint)
        message = f"{shown.replace(chr(39), '').replace(chr(34), '')}: {exc.message}"
    else:
        message = exc.format_message()
    message = plain_words(one_line(message)).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    if ctx is None:
        return message
    return f"{message}{' ' if message.endswith('?') else '; '}see {ctx.command_path} --help"


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


@contextlib.contextmanager
def installed(console: Console, verbose: bool = False) -> Iterator[None]:
    """:func:`install` for the time of a ``with`` block (``hpo.run`` in a notebook), then the
    caller's logging, Optuna's handler and verbosity and ``warnings.showwarning`` as they were.
    """
    root, optuna_log = logging.getLogger(), logging.getLogger("optuna")
    saved = (root.handlers[:], root.level, optuna_log.handlers[:], optuna_log.propagate)
    verbosity, show = optuna.logging.get_verbosity(), warnings.showwarning
    install(console, verbose)
    try:
        yield
    finally:
        root.handlers[:], optuna_log.handlers[:] = saved[0], saved[2]
        root.setLevel(saved[1])
        optuna_log.propagate = saved[3]
        optuna.logging.set_verbosity(verbosity)
        warnings.showwarning = show


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
