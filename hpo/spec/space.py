"""Search-space parameters and the helpers that read a space: order, activity, grid points."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | float | bool | None


class _Param(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: dict[str, Scalar | list[Scalar]] | None = Field(
        None, description="active only when each named parameter takes one of these values"
    )

    def conditions(self) -> dict[str, list[Any]]:
        """``when`` with every value as a list."""
        return {k: v if isinstance(v, list) else [v] for k, v in (self.when or {}).items()}

    def grid_values(self) -> list[Any] | None:
        """The values a grid search visits, or None when the parameter gives none."""
        raise NotImplementedError

    def can_take(self, value: Any) -> bool:
        """Whether a sampler can ever give this parameter ``value`` (compared with ``==``)."""
        raise NotImplementedError


class _Numeric(_Param):
    log: bool = Field(False, description="sample on a log scale (low must be > 0)")
    values: list[float] | None = Field(None, description="the points a grid search visits")

    def grid_values(self) -> list[Any] | None:
        return list(self.values) if self.values is not None else None

    def can_take(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        low, high = getattr(self, "low", None), getattr(self, "high", None)
        in_range = low is not None and high is not None and low <= value <= high
        return in_range and self._on_step(value) or value in (self.values or [])

    def _on_step(self, value: float) -> bool:
        return True

    def _check_range(self, low: float | None, high: float | None) -> None:
        if self.values is not None:
            if not self.values:
                raise ValueError("values must not be empty")
            if low is not None and high is not None:
                bad = [v for v in self.values if not low <= v <= high]
                if bad:
                    raise ValueError(f"values {bad} lie outside [low, high] = [{low}, {high}]")
            return
        if low is None or high is None:
            raise ValueError("low and high are required (or values, for a grid)")
        if low > high:
            raise ValueError(f"low ({low}) is greater than high ({high})")
        if self.log and low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {low})")


class FloatParam(_Numeric):
    """A real number in [low, high], optionally on a log scale or a step grid."""

    type: Literal["float"]
    low: float | None = None
    high: float | None = None
    step: float | None = Field(None, gt=0, description="discretisation step")

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        self._check_range(self.low, self.high)
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self


class IntParam(_Numeric):
    """An integer in [low, high] with ``step``, optionally on a log scale."""

    type: Literal["int"]
    low: int | None = None
    high: int | None = None
    step: int = Field(1, ge=1, description="distance between candidate values")
    values: list[int] | None = Field(None, description="the points a grid search visits")  # type: ignore[assignment]

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        self._check_range(self.low, self.high)
        if self.log and self.step != 1:
            raise ValueError("log scale needs step 1")
        return self

    def _on_step(self, value: float) -> bool:
        return value == int(value) and (int(value) - (self.low or 0)) % self.step == 0


class CategoricalParam(_Param):
    """One of a list of choices (strings, numbers, booleans)."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1, description="the candidate values")

    @model_validator(mode="after")
    def _unique(self) -> CategoricalParam:
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError("choices must be unique")
        return self

    def grid_values(self) -> list[Any] | None:
        return list(self.choices)

    def can_take(self, value: Any) -> bool:
        return value in self.choices


Param = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


def ordered(space: Mapping[str, _Param]) -> list[str]:
    """Parameter names with every condition's parameter before the ones that depend on it.

    Raises:
        ValueError: a condition names an unknown parameter or the conditions form a cycle.
    """
    done: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise ValueError(f"conditions form a cycle through {name!r}")
        visiting.add(name)
        for parent in space[name].conditions():
            if parent not in space:
                raise ValueError(f"{name}.when names unknown parameter {parent!r}")
            visit(parent)
        visiting.discard(name)
        done.append(name)

    for name in space:
        visit(name)
    return done


def unreachable_conditions(space: Mapping[str, _Param]) -> list[tuple[str, str, Any]]:
    """(parameter, parent, value) for each ``when`` value its parent can never take: such a
    parameter would never be sampled (a typo like ``lbfgs`` for a parent offering sgd, adam)."""
    return [
        (name, parent, value)
        for name, param in space.items()
        for parent, allowed in param.conditions().items()
        if parent in space
        for value in allowed
        if not space[parent].can_take(value)
    ]


def is_active(param: _Param, chosen: Mapping[str, Any]) -> bool:
    """Whether ``param``'s conditions hold for the values ``chosen`` so far."""
    return all(
        parent in chosen and chosen[parent] in allowed
        for parent, allowed in param.conditions().items()
    )


def grid_points(space: Mapping[str, _Param]) -> list[dict[str, Any]]:
    """Every combination of grid values, inactive parameters left out, without duplicates."""
    points: list[dict[str, Any]] = [{}]
    for name in ordered(space):
        param = space[name]
        values = param.grid_values()
        if values is None:
            raise ValueError(f"{name} has no grid values")
        grown: list[dict[str, Any]] = []
        for point in points:
            if is_active(param, point):
                grown.extend({**point, name: v} for v in values)
            else:
                grown.append(point)
        points = grown
    unique = {tuple(sorted((k, repr(v)) for k, v in p.items())): p for p in points}
    return list(unique.values())
