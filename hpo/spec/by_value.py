"""Objectives passed as functions (``hpo.run(spec, objective=fn)``), shipped to the workers.

Workers are separate processes: they import ``objective: module:function`` by name. A function
that lives in a module file on the path is passed on by that name. One defined in a notebook
cell or a script (``__main__``), a lambda or a closure has no name a worker could import: it is
pickled by value with cloudpickle (its code, and what it refers to from ``__main__``) into a
file beside the run, and each worker unpickles it before it reads the spec. Whether a worker
can unpickle it (modules it needs) is tried in a fresh interpreter before the study is created.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from hpo.errors import SpecError
from hpo.spec.objective import give_objective

#: The file a worker unpickles its objective from (set by ``hpo.run`` for a function).
ENV_OBJECTIVE_FILE = "HPO_OBJECTIVE_FILE"
#: Seconds a fresh interpreter gets to unpickle the function (it may import torch).
CHECK_TIMEOUT = 120


def reference(func: Callable[..., Any]) -> str:
    """``module:qualified.name`` of ``func``: how the spec, the dashboard and logs name it."""
    module = getattr(func, "__module__", None) or "__main__"
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", "objective")
    return f"{module}:{name}"


def importable(func: Callable[..., Any]) -> bool:
    """Whether a worker finds ``func`` by its name: a top-level function of a module file."""
    module_name, _, name = reference(func).partition(":")
    if module_name == "__main__" or "<" in name or "." in name:
        return False
    module = sys.modules.get(module_name)
    return bool(getattr(module, "__file__", None)) and getattr(module, name, None) is func


def write(func: Callable[..., Any], ref: str, directory: Path) -> Path:
    """Pickle ``(ref, func)`` by value into ``directory``; a SpecError if it cannot be."""
    import cloudpickle

    try:
        data = cloudpickle.dumps((ref, func))
    except Exception as exc:  # noqa: BLE001 - anything pickling raises is the user's to fix
        raise SpecError(f"objective: {ref} cannot be sent to worker processes: {exc}") from None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "objective.pkl"
    path.write_bytes(data)
    return path


def check(path: Path, ref: str, env: Mapping[str, str]) -> None:
    """Unpickle ``path`` in a fresh interpreter with the workers' environment, before the
    study is created: a module the function needs that a worker lacks is one line here."""
    code = f"from hpo.spec.by_value import load; load({str(path)!r})"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise SpecError(
            f"objective: {ref}: a worker process could not load it in {CHECK_TIMEOUT} s"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit {done.returncode}"
        raise SpecError(f"objective: {ref}: a worker process cannot load it: {why}")


def load(path: str | os.PathLike[str]) -> str:
    """Unpickle the objective at ``path`` and give it its name here (a worker's first step);
    returns the name."""
    ref, func = pickle.loads(Path(path).read_bytes())
    give_objective(ref, func)
    return str(ref)


@contextlib.contextmanager
def shipped(func: Callable[..., Any] | None) -> Iterator[tuple[str | None, dict[str, str]]]:
    """``(ref, worker env)`` for an objective given as a function (None: ``(None, {})``).

    A function a worker imports by name is passed on by that name; any other is given its
    name in this process (so the spec validates) and pickled into a temporary file, named in
    the workers' environment and removed afterwards.
    """
    if func is None:
        yield None, {}
        return
    if not callable(func):
        raise SpecError(f"objective: {func!r} is not a function")
    ref = reference(func)
    if importable(func):
        yield ref, {}
        return
    give_objective(ref, func)
    directory = Path(tempfile.mkdtemp(prefix="hpo-objective-"))
    try:
        yield ref, {ENV_OBJECTIVE_FILE: str(write(func, ref, directory))}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
