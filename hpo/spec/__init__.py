"""Study specs: YAML files turned into validated, immutable objects once, at the edge."""

from __future__ import annotations

from hpo.spec import by_value
from hpo.spec.load import load_spec, spec_from_dict
from hpo.spec.metric import MetricSpec, describe_metrics
from hpo.spec.objective import (
    ENV_OBJECTIVE_PATH,
    ObjectiveForm,
    load_objective,
    objective_dirs,
    objective_form,
    objective_root,
)
from hpo.spec.resources import ResourcesSpec
from hpo.spec.search import (
    SAMPLER_EXTRAS,
    AshaSpec,
    CmaEsSpec,
    GpSpec,
    GridSpec,
    HyperbandSpec,
    MedianSpec,
    NoPrunerSpec,
    NsgaIISpec,
    QmcSpec,
    RandomSpec,
    TpeSpec,
)
from hpo.spec.space import CategoricalParam, FloatParam, IntParam, grid_points, is_active, ordered
from hpo.spec.storage_url import normalize_storage_url
from hpo.spec.study import (
    ArtifactSpec,
    BudgetSpec,
    LoggingSpec,
    RetrySpec,
    StudySpec,
    WarmStartSpec,
)
from hpo.spec.usercode import trial_config
from hpo.trainer import TrainConfig

__all__ = [
    "by_value",
    "describe_metrics",
    "normalize_storage_url",
    "SAMPLER_EXTRAS",
    "ENV_OBJECTIVE_PATH",
    "ObjectiveForm",
    "ArtifactSpec",
    "BudgetSpec",
    "CategoricalParam",
    "CmaEsSpec",
    "FloatParam",
    "GpSpec",
    "GridSpec",
    "AshaSpec",
    "HyperbandSpec",
    "IntParam",
    "LoggingSpec",
    "MedianSpec",
    "MetricSpec",
    "NoPrunerSpec",
    "NsgaIISpec",
    "QmcSpec",
    "RandomSpec",
    "ResourcesSpec",
    "RetrySpec",
    "StudySpec",
    "TpeSpec",
    "TrainConfig",
    "WarmStartSpec",
    "grid_points",
    "is_active",
    "load_objective",
    "load_spec",
    "objective_dirs",
    "objective_form",
    "objective_root",
    "ordered",
    "spec_from_dict",
    "trial_config",
]
