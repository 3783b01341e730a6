"""Which spec, which storage, which study: hpo's precedence, in one place for the Python API and
the command line (whose messages name ``--storage`` where the API's name ``storage``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from hpo.errors import SpecError

if TYPE_CHECKING:
    from hpo.spec import StudySpec

#: A study file's path, a dict of its schema, or a validated StudySpec.
SpecLike: TypeAlias = "str | os.PathLike[str] | Mapping[str, Any] | StudySpec"
#: How an option is named in messages: ``n_trials`` here, ``--n-trials`` on the command line.
Naming: TypeAlias = Callable[[str], str]


def keyword(name: str) -> str:
    """An option as the Python API names it."""
    return name


def flag(name: str) -> str:
    """An option as the command line names it."""
    return "--" + name.replace("_", "-")


def resolve_spec(
    spec: SpecLike,
    study_name: str | None = None,
    naming: Naming = keyword,
    objective: str | None = None,
) -> tuple[StudySpec, str]:
    """The validated spec and what to call its source in messages (the file, or ``spec``);
    ``study_name`` and ``objective`` (a reference) replace the spec's."""
    from hpo.spec import StudySpec, load_spec, spec_from_dict

    if isinstance(spec, Mapping):
        found = spec_from_dict({**spec, **({"objective": objective} if objective else {})})
        return _renamed(found, study_name, naming), "spec"
    if isinstance(spec, StudySpec):
        found, source = spec, "spec"
    elif isinstance(spec, str | os.PathLike):
        found, source = load_spec(Path(spec)), str(spec)
    else:
        raise SpecError(
            f"spec: a {type(spec).__name__} is not a study file path, dict or StudySpec"
        )
    if objective:
        found = _replaced(found, "objective", objective, "objective")
    return _renamed(found, study_name, naming), source


def _renamed(found: StudySpec, study_name: str | None, naming: Naming) -> StudySpec:
    return _replaced(found, "name", study_name, naming("study_name")) if study_name else found


def _replaced(found: StudySpec, key: str, value: str, who: str) -> StudySpec:
    """``found`` with ``key`` set to ``value``, validated again; a SpecError names ``who``."""
    from pydantic import ValidationError

    from hpo.spec import StudySpec

    try:
        return StudySpec.model_validate({**found.model_dump(exclude_unset=True), key: value})
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise SpecError(f"{who}: {message}") from None


def storage_url(
    given: str | None, spec_storage: str | None, source: str | None, naming: Naming = keyword
) -> str:
    """The storage URL hpo's precedence picks (``given`` > HPO_STORAGE > the spec's > the
    embedded default), normalized; a bad one is a SpecError naming who supplied it."""
    from hpo.spec import normalize_storage_url
    from hpo.study import ENV_STORAGE, resolve_storage_url

    url = resolve_storage_url(given, spec_storage)
    if given:
        who = naming("storage")
    elif os.environ.get(ENV_STORAGE):
        who = ENV_STORAGE
    elif spec_storage:
        who = f"{source}: storage"
    else:
        who = "storage (the default)"
    return normalize_storage_url(url, who)


def locate(
    target: SpecLike | None,
    storage: str | None = None,
    study_name: str | None = None,
    naming: Naming = keyword,
) -> tuple[StudySpec | None, str, str | None]:
    """(spec, storage URL, study name) of a spec, or of a study name (``target`` a name or
    None; the spec None, the name None where none is given)."""
    if target is None or isinstance(target, str) and not _is_file(target):
        return None, storage_url(storage, None, None, naming), study_name or target
    spec, source = resolve_spec(target, study_name, naming)
    return spec, storage_url(storage, spec.storage, source, naming), spec.name


def _is_file(text: str) -> bool:
    return text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file()
