"""Custom objectives: finding ``objective: module:function`` and telling its form."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from hpo.keys import ENV_OBJECTIVE_PATH
from hpo.spec.base import _at
from hpo.userfn import import_ref

#: ``trial``: Optuna's ``fn(trial)``; ``params``: hpo's ``fn(params, report)``.
ObjectiveForm = Literal["trial", "params"]

#: Objectives handed over as functions (``hpo.run(spec, objective=fn)``), by reference: found
#: here before any import (in ``hpo.run``'s process, and in a worker once it unpickled them).
_GIVEN: dict[str, Callable[..., Any]] = {}


def give_objective(ref: str, func: Callable[..., Any]) -> None:
    """Make ``ref`` name ``func`` in this process, whatever module it came from."""
    _GIVEN[ref] = func


def objective_dirs(spec_dir: str | Path | None = None) -> list[str]:
    """Where ``objective:`` modules are found before ``sys.path``: the spec file's directory,
    the directories in ``HPO_OBJECTIVE_PATH``, then the working directory."""
    found = [str(spec_dir)] if spec_dir else []
    found += [d for d in os.environ.get(ENV_OBJECTIVE_PATH, "").split(os.pathsep) if d]
    found.append(os.getcwd())
    return list(dict.fromkeys(str(Path(d).absolute()) for d in found))


def load_objective(ref: str, dirs: Sequence[str] = ()) -> Any:
    """Import ``package.module:function`` and return the callable.

    ``dirs`` go to the front of ``sys.path`` first, in order (as ``python script.py`` puts the
    script's directory there), so a module beside the spec file needs no ``PYTHONPATH``.

    A function given to ``hpo.run`` (:func:`give_objective`) is returned as it is.

    Raises:
        LocatedError: at ``objective``: a malformed reference, an import that fails, no such
            callable, a module that raises while importing, a module that worker processes
            cannot import (``__main__``, no file).
    """
    if ref in _GIVEN:
        return _GIVEN[ref]
    module_name, _, attr = ref.partition(":")
    if module_name == "__main__":
        raise _at(
            ("objective",),
            f"{ref!r} is defined in a notebook or script, which worker processes cannot "
            f"import: pass the function itself, hpo.run(spec, objective={attr}), or move it "
            "to a .py file",
        )
    try:
        func = import_ref(ref, dirs)
    except ValueError as exc:
        raise _at(("objective",), str(exc)) from None
    if not getattr(sys.modules.get(module_name), "__file__", None):
        raise _at(
            ("objective",),
            f"module {module_name!r} has no file, so worker processes cannot import it: pass "
            f"the function itself, hpo.run(spec, objective={attr})",
        )
    return func


def objective_root(ref: str) -> str | None:
    """The directory that must be on ``sys.path`` to import ``ref``'s module, as imported in
    this process (None if it was not, or has no file)."""
    module_name = ref.partition(":")[0]
    file = getattr(sys.modules.get(module_name), "__file__", None)
    if not file:
        return None
    path = Path(file).absolute()
    root = path.parent
    for _ in range(module_name.count(".") + (path.name == "__init__.py")):
        root = root.parent
    return str(root)


def objective_form(func: Callable[..., Any]) -> ObjectiveForm:
    """Tell the two objective forms apart by signature: one parameter named ``trial`` or
    annotated ``optuna.Trial`` is Optuna's ``fn(trial)``; two are ``fn(params, report)``.

    Raises:
        ValueError: any other signature (the message names the parameters it has).
    """
    try:
        parameters = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        raise ValueError("cannot read the objective's signature") from None
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    required = [p for p in parameters if p.default is p.empty and p.kind not in variadic]
    positional = all(p.kind != inspect.Parameter.KEYWORD_ONLY for p in required)
    if positional and len(required) == 2:
        return "params"
    if positional and len(required) == 1 and _is_trial(required[0]):
        return "trial"
    names = ", ".join(p.name for p in required)
    count = f"{len(required)} parameter{'' if len(required) == 1 else 's'}"
    raise ValueError(
        f"the objective takes {count} ({names}); expected fn(trial) (Optuna's form: named "
        "`trial` or annotated optuna.Trial) or fn(params, report)"
    )


def _is_trial(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return parameter.name == "trial" or name.rsplit(".", 1)[-1] in ("Trial", "BaseTrial")
