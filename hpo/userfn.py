"""The user's own functions named in a study (``package.module:function``): importing them and
calling them with the parameters they declare.

Shared by the spec (which checks them once, at the edge) and by the model and dataset registries
(which call them in the worker); it imports nothing of hpo's, so every layer may use it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def is_ref(name: str) -> bool:
    """Whether ``name`` names the user's function (``module:function``), not a registry entry."""
    return ":" in name


def import_ref(ref: str, dirs: Sequence[str] = ()) -> Callable[..., Any]:
    """Import ``package.module:function`` and return the callable.

    ``dirs`` go to the front of ``sys.path`` first, in order (as ``python script.py`` puts the
    script's directory there), so a module beside the spec file needs no ``PYTHONPATH``.

    Raises:
        ValueError: a malformed reference, an import that fails, no such callable (one line).
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{ref!r} is not of the form 'package.module:function'")
    for directory in reversed(dirs):
        if directory not in sys.path:
            sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module raised while importing
        raise ValueError(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from None
    func = getattr(module, attr, None)
    if not callable(func):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return func


@dataclass(frozen=True)
class Declared:
    """The parameters a function declares: all by name, the required ones, and ``**kwargs``."""

    names: frozenset[str]
    required: frozenset[str]
    var_keyword: bool

    def takes(self, name: str) -> bool:
        return name in self.names or self.var_keyword


def declared(func: Callable[..., Any]) -> Declared:
    """What ``func`` declares (``*args`` and positional-only parameters cannot be passed by
    name, so they are left out; a required one of them makes the function unusable).

    Raises:
        ValueError: the signature cannot be read, or has a required positional-only parameter.
    """
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        raise ValueError("cannot read its signature") from None
    kind = inspect.Parameter
    positional_only = [p for p in parameters if p.kind == kind.POSITIONAL_ONLY]
    blocked = [p.name for p in positional_only if p.default is p.empty]
    if blocked:
        raise ValueError(f"its parameter {blocked[0]!r} is positional-only (hpo passes by name)")
    named = [p for p in parameters if p.kind in (kind.POSITIONAL_OR_KEYWORD, kind.KEYWORD_ONLY)]
    return Declared(
        names=frozenset(p.name for p in named),
        required=frozenset(p.name for p in named if p.default is p.empty),
        var_keyword=any(p.kind == kind.VAR_KEYWORD for p in parameters),
    )


def call_declared(
    func: Callable[..., Any], given: Mapping[str, Any], defaults: Mapping[str, Any] = {}
) -> Any:
    """Call ``func`` with the values it declares: from ``given`` (all of them with ``**kwargs``),
    then from ``defaults`` (only by name; a None there is passed only to a required parameter,
    so that an unset option keeps the function's own default)."""
    sig = declared(func)
    kwargs = {k: v for k, v in given.items() if sig.takes(k)}
    for name in sig.names - set(kwargs):
        if name in defaults and (defaults[name] is not None or name in sig.required):
            kwargs[name] = defaults[name]
    return func(**kwargs)
