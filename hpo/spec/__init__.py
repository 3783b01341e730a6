"""Study specs: YAML files turned into validated, immutable objects once, at the edge."""

from __future__ import annotations

from hpo.spec.load import load_spec, spec_from_dict
from hpo.spec.space import CategoricalParam, FloatParam, IntParam, grid_points, is_active, ordered
from hpo.spec.study import (
    SAMPLER_EXTRAS,
    ArtifactSpec,
    BudgetSpec,
    CmaEsSpec,
    GpSpec,
    GridSpec,
    HyperbandSpec,
    MedianSpec,
    MetricSpec,
    NoPrunerSpec,
    NsgaIISpec,
    QmcSpec,
    RandomSpec,
    RetrySpec,
    StudySpec,
    TpeSpec,
    load_objective,
)
from hpo.trainer.config import TrainConfig

__all__ = [
    "SAMPLER_EXTRAS",
    "ArtifactSpec",
    "BudgetSpec",
    "CategoricalParam",
    "CmaEsSpec",
    "FloatParam",
    "GpSpec",
    "GridSpec",
    "HyperbandSpec",
    "IntParam",
    "MedianSpec",
    "MetricSpec",
    "NoPrunerSpec",
    "NsgaIISpec",
    "QmcSpec",
    "RandomSpec",
    "RetrySpec",
    "StudySpec",
    "TpeSpec",
    "TrainConfig",
    "grid_points",
    "is_active",
    "load_objective",
    "load_spec",
    "ordered",
    "spec_from_dict",
]
