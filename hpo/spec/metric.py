"""What a study optimises: ``metric:`` (one or several), the ``direction:``/``directions:``
shorthand, and the defaults an Optuna user expects.

Without a direction a metric is minimised, as in Optuna (``create_study()`` minimises), except
the trainer's accuracies, which only make sense maximised. Without ``metric:`` a study of the
built-in trainer optimises ``val_accuracy``; a custom objective's study minimises ``value``
(Optuna's name for an objective's return value).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from hpo.spec.base import _at, _Frozen

Direction = Literal["maximize", "minimize"]
DIRECTIONS = ("maximize", "minimize")

#: Metrics maximised when the spec gives no direction; every other one is minimised.
MAXIMIZED = ("val_accuracy", "train_accuracy")
#: The metric of a study of the built-in trainer that names none.
TRAINER_METRIC = "val_accuracy"
#: The metric of a custom objective's study that names none: Optuna's "value".
OBJECTIVE_METRIC = "value"


def default_direction(name: str) -> Direction:
    """The direction of a metric the spec names without one."""
    return "maximize" if name in MAXIMIZED else "minimize"


class MetricSpec(_Frozen):
    """The value a trial reports each epoch and the study optimises."""

    name: str = Field(TRAINER_METRIC, description="a metric the trainer (or objective) reports")
    direction: Direction = Field(
        "maximize", description="default: maximize for accuracies, else minimize (as Optuna)"
    )

    @model_validator(mode="before")
    @classmethod
    def _direction_by_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "direction" not in data:
            return {**data, "direction": default_direction(str(data.get("name", TRAINER_METRIC)))}
        return data


def _metric_form(value: Any) -> str:
    """The tag of ``metric:``'s form: a list, or anything else (a mapping, or an error)."""
    return METRIC_TAGS[1] if isinstance(value, list | tuple) else METRIC_TAGS[0]


#: ``metric:`` is one metric (a mapping) or several (a list: a multi-objective study); the
#: union's tags appear in pydantic's error locations (hpo.spec.load leaves them out).
METRIC_TAGS = ("metric-one", "metric-list")
Metrics = Annotated[
    Annotated[MetricSpec, Tag(METRIC_TAGS[0])]
    | Annotated[tuple[MetricSpec, ...], Tag(METRIC_TAGS[1]), Field(min_length=1)],
    Discriminator(_metric_form),
]


def _check_direction(value: Any, loc: tuple[str | int, ...]) -> str:
    if value not in DIRECTIONS:
        raise _at(loc, f"{value!r} is not maximize or minimize")
    return str(value)


def _merged(metric: Any, direction: str, loc: tuple[str | int, ...]) -> Any:
    """``metric`` (a mapping, or absent) with ``direction`` from the shorthand at ``loc``."""
    if metric is None:
        return {"direction": direction}
    if not isinstance(metric, dict):
        return metric  # not a mapping: metric:'s own validation says so
    given = metric.get("direction")
    if given is not None and given != direction:
        raise _at(loc, f"{direction} here, but the metric says {given}: give it once")
    return {**metric, "direction": direction}


def metric_shorthand(data: Any) -> Any:
    """The study's raw data with ``direction:``/``directions:`` folded into ``metric:``, and the
    custom objective's default metric (``value``, minimised) where the spec names none."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    has_objective = data.get("objective") is not None
    if "direction" in data and "directions" in data:
        raise _at(("directions",), "give `direction` (one metric) or `directions`, not both")
    if "direction" in data:
        direction = _check_direction(data.pop("direction"), ("direction",))
        metric = _merged(data.get("metric"), direction, ("direction",))
        if isinstance(metric, dict) and "name" not in metric:
            metric["name"] = OBJECTIVE_METRIC if has_objective else TRAINER_METRIC
        data["metric"] = metric
    elif "directions" in data:
        data["metric"] = _metric_list(data.pop("directions"), data.get("metric"), has_objective)
    elif "metric" not in data and has_objective:
        data["metric"] = {"name": OBJECTIVE_METRIC, "direction": "minimize"}
    return data


def _metric_list(directions: Any, metric: Any, has_objective: bool) -> list[Any]:
    if not isinstance(directions, list | tuple) or not directions:
        raise _at(("directions",), "a list of maximize/minimize, one per metric")
    found = [_check_direction(d, ("directions", i)) for i, d in enumerate(directions)]
    if metric is None:
        if not has_objective:
            raise _at(
                ("directions",),
                "name the trainer's metrics: `metric: [{name: ..., direction: ...}, ...]`",
            )
        return [{"name": f"{OBJECTIVE_METRIC}_{i}", "direction": d} for i, d in enumerate(found)]
    if not isinstance(metric, list | tuple) or len(metric) != len(found):
        raise _at(("directions",), f"{len(found)} directions for metric: give one per metric")
    return [
        _merged(m, d, ("directions", i)) for i, (m, d) in enumerate(zip(metric, found, strict=True))
    ]


def describe_metrics(metrics: tuple[MetricSpec, ...]) -> str:
    """``metric value (minimize)``, or ``metrics a (maximize), b (minimize)``."""
    shown = ", ".join(f"{m.name} ({m.direction})" for m in metrics)
    return f"{'metrics' if len(metrics) > 1 else 'metric'} {shown}"
