"""The report's plots: Optuna's own visualizations, as plotly figures and as matplotlib PNGs.

Each plot says up front whether the study has what it needs (completed trials, parameters,
intermediate values); one that cannot be drawn is skipped with a reason instead of drawn empty.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import optuna.visualization as pl
import optuna.visualization.matplotlib as mpl
from optuna.importance import FanovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

#: fANOVA on fewer completed trials than this says nothing useful about importance.
MIN_IMPORTANCE_TRIALS = 4


@dataclass(frozen=True)
class Plot:
    """One of Optuna's visualizations, in both backends."""

    name: str  # file stem and HTML anchor
    title: str
    caption: str
    plotly: Callable[..., Any]
    matplotlib: Callable[..., Any]
    target_name: bool = True  # whether the function takes ``target_name``


def _importances(module: Any) -> Callable[..., Any]:
    def draw(study: optuna.Study, **kw: Any) -> Any:
        # A fixed seed: the same study gives the same importances in the HTML and the PNG.
        return module.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0), **kw
        )

    return draw


PLOTS = (
    Plot(
        "optimization_history",
        "Optimization history",
        "Each completed trial's value and the best value so far.",
        pl.plot_optimization_history,
        mpl.plot_optimization_history,
    ),
    Plot(
        "intermediate_values",
        "Intermediate values",
        "The metric after every epoch of every trial (learning curves), pruned trials included.",
        pl.plot_intermediate_values,
        mpl.plot_intermediate_values,
        target_name=False,
    ),
    Plot(
        "parallel_coordinate",
        "Parallel coordinates",
        "Each completed trial as a line through its parameter values to its value.",
        pl.plot_parallel_coordinate,
        mpl.plot_parallel_coordinate,
    ),
    Plot(
        "param_importances",
        "Parameter importances",
        "How much of the value's variation each parameter explains (fANOVA).",
        _importances(pl),
        _importances(mpl),
    ),
    Plot(
        "slice",
        "Slice plots",
        "The value against each parameter, one panel per parameter.",
        pl.plot_slice,
        mpl.plot_slice,
    ),
)


#: Drawn first for a study of several metrics.
PARETO = Plot(
    "pareto_front",
    "Pareto front",
    "Each completed trial by its metrics; the Pareto-optimal ones (no trial beats them on "
    "every metric) highlighted.",
    pl.plot_pareto_front,
    mpl.plot_pareto_front,
    target_name=False,
)


def plots_for(study: optuna.Study) -> list[Plot]:
    """The plots that fit ``study``: with several metrics, the Pareto front first, and the
    others drawn for the first metric."""
    return [PARETO, *PLOTS] if len(study.directions) > 1 else list(PLOTS)


def skip_reason(plot: Plot, trials: list[FrozenTrial]) -> str | None:
    """Why ``plot`` cannot be drawn from ``trials``, or None when it can."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if plot is PARETO and complete and len(complete[0].values) > 3:
        return "a Pareto front is drawn for 2 or 3 metrics"
    if plot.name == "intermediate_values":
        return None if any(t.intermediate_values for t in trials) else "no trial reported epochs"
    if not complete:
        return "no completed trial yet"
    if plot.name == "optimization_history":
        return None
    if not any(t.params for t in complete):
        return "the study has no parameters"
    if plot.name == "param_importances":
        if len(complete) < MIN_IMPORTANCE_TRIALS:
            return (
                f"importances need at least {MIN_IMPORTANCE_TRIALS} completed trials "
                f"(the study has {len(complete)})"
            )
        if all(len({repr(t.params.get(k)) for t in complete}) < 2 for k in complete[0].params):
            return "no parameter varies between completed trials"
    return None


def _first_value(trial: FrozenTrial) -> float:
    return trial.values[0]


def _kwargs(plot: Plot, names: list[str]) -> dict[str, Any]:
    """The metric names; with several metrics, the single-value plots draw the first."""
    if plot is PARETO:
        return {"target_names": names}
    if not plot.target_name:
        return {}
    if len(names) > 1:
        return {"target": _first_value, "target_name": names[0]}
    return {"target_name": names[0]}


def plotly_figure(plot: Plot, study: optuna.Study, names: list[str]) -> Any:
    """The plotly figure of ``plot`` (check ``skip_reason`` first); ``names``: the metrics'."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return plot.plotly(study, **_kwargs(plot, names))


def save_png(plot: Plot, study: optuna.Study, names: list[str], path: Path) -> Path:
    """Draw ``plot`` with matplotlib and save it as a PNG at ``path``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        axes = plot.matplotlib(study, **_kwargs(plot, names))
    figure = np.ravel(axes)[0].figure
    try:
        figure.savefig(path, dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path
