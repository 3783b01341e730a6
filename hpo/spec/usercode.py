"""The user's own model and dataset (``train.model`` / ``train.dataset: module:function``):
checked when the spec is loaded, and each trial's parameters routed to them.

Checked once, at the edge (``hpo validate``, and ``hpo run`` before anything is written): the
module imports (found like a custom objective's: beside the spec file, ``HPO_OBJECTIVE_PATH``,
the working directory, then ``sys.path``), the function exists, and every parameter it requires
can be given. A model function is called with ``num_classes`` and what else it declares; a
dataset function with what it declares. Both may declare a train key (``image_size``, ``seed``,
``data_dir``, ``dropout``, ...), a key of ``model_args`` / ``dataset_args``, or a parameter of
the search space that is not a train key (``width: {type: int, ...}``), which goes to whichever
of the two declares it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.spec.base import _at
from hpo.trainer import TrainConfig
from hpo.userfn import Declared, declared, import_ref, is_ref

#: What the trainer itself hands a model function, beyond the train keys.
MODEL_FACTS = frozenset({"num_classes", "in_channels", "image_size"})
#: The train keys that hold the user's functions' own arguments (never passed on by name).
ARG_KEYS = ("model_args", "dataset_args")


def _choices(key: str, train: TrainConfig, space: Mapping[str, Any]) -> list[str]:
    """``train.<key>`` and, where the space tunes it, each of its choices."""
    param = space.get(key)
    values = [*getattr(param, "choices", []), *(getattr(param, "values", None) or [])]
    return list(dict.fromkeys([getattr(train, key), *[v for v in values if isinstance(v, str)]]))


def user_refs(train: TrainConfig, space: Mapping[str, Any]) -> dict[str, list[str]]:
    """The user's functions a study may call, by train key (``model``, ``dataset``)."""
    found = {k: [r for r in _choices(k, train, space) if is_ref(r)] for k in ("model", "dataset")}
    return {k: v for k, v in found.items() if v}


def _loc(key: str, train: TrainConfig, ref: str) -> tuple[str, ...]:
    return ("train", key) if getattr(train, key) == ref else ("space", key)


def _load(key: str, ref: str, train: TrainConfig, dirs: list[str]) -> Declared:
    try:
        return declared(import_ref(ref, dirs))
    except ValueError as exc:
        raise _at(_loc(key, train, ref), f"{ref}: {exc}") from None


def check_user_code(
    train: TrainConfig, space: Mapping[str, Any], dirs: list[str]
) -> dict[str, Declared]:
    """Import and check every user function the study names; what each declares, by train key
    (the union over a tuned key's choices).

    Raises:
        LocatedError: at ``train.model`` / ``train.dataset`` (or ``space.model``...): a module
            that does not import, no such function, a required parameter nothing gives, a key of
            ``model_args`` it does not take; at ``space.<name>``: a parameter no one takes.
    """
    given = set(TrainConfig.model_fields) - set(ARG_KEYS) | set(space)
    found: dict[str, Declared] = {}
    for key, refs in user_refs(train, space).items():
        args = getattr(train, f"{key}_args")
        for ref in refs:
            sig = _load(key, ref, train, dirs)
            can_give = given | set(args) | (MODEL_FACTS if key == "model" else set())
            if key == "model" and not sig.takes("num_classes"):
                raise _at(
                    _loc(key, train, ref),
                    f"{ref} takes no `num_classes`; expected fn(num_classes, ...) -> nn.Module",
                )
            missing = sorted(sig.required - can_give)
            if missing:
                raise _at(
                    _loc(key, train, ref),
                    f"{ref} requires {missing[0]!r}, which is neither a train key, in "
                    f"train.{key}_args, nor in space",
                )
            unknown = sorted(k for k in args if not sig.takes(k))
            if unknown:
                raise _at(("train", f"{key}_args", unknown[0]), f"{ref} takes no {unknown[0]!r}")
            seen = found.get(key)
            found[key] = sig if seen is None else _union(seen, sig)
    return found


def _union(a: Declared, b: Declared) -> Declared:
    return Declared(a.names | b.names, a.required | b.required, a.var_keyword or b.var_keyword)


def check_own_parameters(space: Mapping[str, Any], takers: Mapping[str, Declared]) -> None:
    """Every space key that is not a train key must be taken by the user's model or dataset.

    Raises:
        LocatedError: at ``space.<name>``.
    """
    for name in space:
        if name in TrainConfig.model_fields:
            continue
        if not any(sig.takes(name) for sig in takers.values()):
            hint = " (nor a parameter of your model or dataset function)" if takers else ""
            raise _at(("space", name), f"{name!r} is not a train: key{hint}")


def trial_config(train: TrainConfig, params: Mapping[str, Any]) -> TrainConfig:
    """The trial's training config: ``train`` with the trial's ``params``, those that are no
    train key going to ``model_args`` / ``dataset_args`` of whichever function declares them
    (by name, or through ``**kwargs``)."""
    own = {k: v for k, v in params.items() if k in TrainConfig.model_fields}
    extra = {k: v for k, v in params.items() if k not in TrainConfig.model_fields}
    merged = {**train.model_dump(), **own}
    if extra:
        for key in ("model", "dataset"):
            ref = merged[key]
            if not is_ref(ref):
                continue
            sig = declared(import_ref(ref))
            taken = {k: v for k, v in extra.items() if sig.takes(k)}
            merged[f"{key}_args"] = {**merged[f"{key}_args"], **taken}
    return TrainConfig.model_validate(merged)
