"""The base of every spec model (unknown keys refused, immutable once validated), and the
error that says which YAML path below a model a problem belongs to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocatedError(ValueError):
    """A ValueError that knows which YAML path below the model it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _at(loc: tuple[str | int, ...], message: str) -> LocatedError:
    return LocatedError(loc, message)
