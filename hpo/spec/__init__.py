"""Study specs: YAML files turned into validated, immutable objects once, at the edge."""

from __future__ import annotations

from hpo.spec.load import load_spec
from hpo.spec.space import CategoricalParam, FloatParam, IntParam, grid_points, is_active, ordered
from hpo.spec.study import (
    ENV_OBJECTIVE_PATH,
    ArtifactSpec,
    BudgetSpec,
    GridSpec,
    HyperbandSpec,
    MedianSpec,
    MetricSpec,
    NoPrunerSpec,
    ObjectiveForm,
    RandomSpec,
    RetrySpec,
    StudySpec,
    TpeSpec,
    load_objective,
    objective_dirs,
    objective_form,
    objective_root,
)
from hpo.trainer.config import TrainConfig

__all__ = [
    "ENV_OBJECTIVE_PATH",
    "ObjectiveForm",
    "ArtifactSpec",
    "BudgetSpec",
    "CategoricalParam",
    "FloatParam",
    "GridSpec",
    "HyperbandSpec",
    "IntParam",
    "MedianSpec",
    "MetricSpec",
    "NoPrunerSpec",
    "RandomSpec",
    "RetrySpec",
    "StudySpec",
    "TpeSpec",
    "TrainConfig",
    "grid_points",
    "is_active",
    "load_objective",
    "load_spec",
    "objective_dirs",
    "objective_form",
    "objective_root",
    "ordered",
]
