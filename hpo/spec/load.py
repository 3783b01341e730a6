"""Reading a study file: YAML -> StudySpec, with errors that name the file, line and YAML path."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from hpo.errors import SpecError, plain_words
from hpo.spec.base import LocatedError
from hpo.spec.metric import METRIC_TAGS
from hpo.spec.search import Pruner, Sampler
from hpo.spec.space import Param
from hpo.spec.study import StudySpec

#: Validation problems printed one by one; the rest are counted (a file of typos stays readable).
SHOWN_ERRORS = 5


def load_spec(path: str | Path) -> StudySpec:
    """Load and validate the study file at ``path``.

    Raises:
        SpecError: the file is missing, is not YAML, or does not describe a valid study; the
            message names the file, the line and the YAML path of each problem.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(p.name for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        listed = f"study files there: {', '.join(found[:5])}" if found else "it holds no .yaml file"
        raise SpecError(f"{path}: a directory, not a study file ({listed})")
    if not path.is_file():
        raise SpecError(f"{path}: no such study file")
    root, data = _parse(path)
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a study file is a YAML mapping (name:, space:, train:, ...)")
    return _validate(data, str(path), root, path.parent)


def spec_from_dict(data: Mapping[str, Any], source: str = "spec") -> StudySpec:
    """Validate a study given as a dict of the study file's schema (the Python API's input).

    Raises:
        SpecError: as :func:`load_spec`, each problem named ``<source>: <yaml.path>: ...``.
    """
    if not isinstance(data, Mapping):
        raise SpecError(f"{source}: a study is a mapping (name:, space:, train:, ...)")
    return _validate(dict(data), source, None)


def _validate(
    data: dict[str, Any], source: str, root: yaml.Node | None, spec_dir: Path | None = None
) -> StudySpec:
    try:
        return StudySpec.model_validate(data, context={"spec_dir": spec_dir})
    except ValidationError as exc:
        errors = exc.errors()
        lines = [_describe(source, root, data, e) for e in errors[:SHOWN_ERRORS]]
        if len(errors) > SHOWN_ERRORS:
            lines.append(f"{source}: ... and {len(errors) - SHOWN_ERRORS} more problems")
        raise SpecError("\n".join(lines)) from None


def _parse(path: Path) -> tuple[yaml.Node | None, Any]:
    """The file's YAML node tree and its data, refusing duplicate keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file (a study file is YAML)") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        _refuse_duplicate_keys(path, root)
        loader = yaml.SafeLoader("")
        try:
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SpecError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply") from None
    return root, data


def _refuse_duplicate_keys(path: Path, root: yaml.Node | None) -> None:
    """PyYAML keeps the last of two equal keys; a study file with one is almost always a typo."""
    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())] if root is not None else []
    seen: set[int] = set()  # an alias is checked once, not once per use (no billion laughs)
    while stack:
        node, keys = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, (*keys, str(i))) for i, child in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name, line = str(key.value), key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and name in first:
                    dotted = ".".join((*keys, name))
                    raise SpecError(
                        f"{path}:{line}: {dotted}: duplicate key (first at line {first[name]})"
                    )
                first.setdefault(name, line)
                stack.append((value, (*keys, name)))


def _describe(path: str, root: yaml.Node | None, data: Any, err: Any) -> str:
    loc = tuple(err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, LocatedError):
        loc += cause.loc
    keys = _yaml_path(data, loc)
    msg = _plain(err, msg, keys)
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
        keys.append("type")  # the problem is the `type:` key (or its absence)
    line = _line(root, keys)
    where = f"{path}:{line}" if line else str(path)
    dotted = ".".join(str(k) for k in keys) or "(top level)"
    return f"{where}: {dotted}: {msg}"


def _plain(err: Any, msg: str, keys: list[Any]) -> str:
    """pydantic's message in hpo's words: a discriminated union's (``sampler``, ``pruner``,
    a parameter of ``space``) names the allowed types; ``Input should be X`` is ``must be X``
    and says what it got."""
    kind, given = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        noun = "parameter" if keys[:1] == ["space"] else str(keys[-1]) if keys else "value"
        tags = ", ".join(_union_tags(keys))
        if kind == "union_tag_not_found":
            return f"required: the {noun} type, one of {tags}"
        return f"{err['ctx']['tag']!r} is not a {noun} type; one of {tags}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a mapping (key: value, ...), not {given!r}"
    msg = plain_words(msg)
    if msg.startswith("must be") and isinstance(given, str | int | float | bool):
        msg += f" (got {given!r})"
    return msg


def _union_tags(keys: list[Any]) -> list[str]:
    """The ``type:`` values allowed where ``keys`` points (a sampler, a pruner, a parameter)."""
    union = {"sampler": Sampler, "pruner": Pruner}.get(keys[0]) if keys else None
    if keys[:1] == ["space"]:
        union = Param
    members = get_args(get_args(union)[0]) if union is not None else ()
    return [tag for m in members for tag in get_args(m.model_fields["type"].annotation)]


def _yaml_path(data: Any, loc: tuple[Any, ...]) -> list[Any]:
    """The part of pydantic's ``loc`` that exists in the YAML (drops union tags and the like)."""
    keys: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part not in node and node.get("type") == part:
            continue  # a discriminated union's tag, not a YAML key
        if part in METRIC_TAGS:
            continue  # the tag of metric:'s form (one metric or a list)
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
