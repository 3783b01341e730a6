"""Reading a study file: YAML -> StudySpec, with errors that name the file, line and YAML path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hpo.errors import SpecError
from hpo.spec.study import LocatedError, StudySpec


def load_spec(path: str | Path) -> StudySpec:
    """Load and validate the study file at ``path``.

    Raises:
        SpecError: the file is missing, is not YAML, or does not describe a valid study; the
            message names the file, the line and the YAML path of each problem.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such study file")
    text = path.read_text()
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a study file is a YAML mapping (name:, space:, train:, ...)")
    try:
        return StudySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("\n".join(_describe(path, root, data, e) for e in exc.errors())) from None


def _describe(path: Path, root: yaml.Node | None, data: Any, err: Any) -> str:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedError):
        loc += cause.loc
    keys = _yaml_path(data, loc)
    line = _line(root, keys)
    where = f"{path}:{line}" if line else str(path)
    dotted = ".".join(str(k) for k in keys) or "(top level)"
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{where}: {dotted}: {msg}"


def _yaml_path(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The part of pydantic's ``loc`` that exists in the YAML (drops union tags and the like)."""
    keys: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # a discriminated union's tag, not a YAML key
        if (
            isinstance(node, dict)
            and part in node
            or isinstance(node, list)
            and isinstance(part, int)
            and part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict | list) or node is None:
            if not keys or keys[-1] != part:
                keys.append(part)
            node = None
            continue
        else:
            continue
        keys.append(part)
    return keys


def _line(node: yaml.Node | None, keys: list[Any]) -> int | None:
    """1-based line of the deepest YAML node on ``keys``."""
    best = node.start_mark.line + 1 if node is not None else None
    for key in keys:
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == str(key)]
            if not match:
                return best
            best = match[0][0].start_mark.line + 1
            node = match[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            best = node.start_mark.line + 1
        else:
            return best
    return best
