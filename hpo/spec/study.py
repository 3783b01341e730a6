"""The study spec: one YAML file, validated once into immutable pydantic models."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hpo import board
from hpo.errors import SpecError
from hpo.spec.base import _at, _Frozen
from hpo.spec.metric import Metrics, MetricSpec, metric_shorthand
from hpo.spec.objective import load_objective, objective_dirs, objective_form
from hpo.spec.resources import ResourcesSpec
from hpo.spec.search import (
    SAMPLER_EXTRAS,
    AshaSpec,
    CmaEsSpec,
    GridSpec,
    HyperbandSpec,
    NoPrunerSpec,
    Pruner,
    Sampler,
    TpeSpec,
)
from hpo.spec.space import Param, grid_points, ordered, unreachable_conditions
from hpo.spec.storage_url import normalize_storage_url
from hpo.spec.usercode import check_own_parameters, check_user_code, user_refs
from hpo.trainer import METRICS, TrainConfig


class BudgetSpec(_Frozen):
    """How much the study runs: counted in the storage, across all workers and nodes."""

    n_trials: int | None = Field(
        None, ge=1, description="total trials (grid: all points); with max_epochs_total: optional"
    )
    timeout: float | None = Field(None, gt=0, description="seconds after which no trial starts")
    max_epochs_total: int | None = Field(
        None, ge=1, description="total epochs trained (reported steps), all trials and nodes"
    )


class RetrySpec(_Frozen):
    """Crash recovery: heartbeats on running trials; stale ones are failed and retried."""

    max_retries: int = Field(
        2, ge=0, description="re-runs after failures of the trial's own; interruptions never count"
    )
    heartbeat_interval: int = Field(10, ge=1, description="seconds between heartbeats")
    grace_period: int = Field(60, ge=2, description="seconds without heartbeat before failing")
    on_oom: Literal["accumulate", "fail"] = Field(
        "accumulate",
        description="after out-of-memory: restart with the same effective batch in micro-batches",
    )
    storage_outage: float = Field(
        300, gt=0, description="seconds workers retry a lost database before exiting 1"
    )


class ArtifactSpec(_Frozen):
    """Where trial files go: resume checkpoints and each completed trial's best model."""

    path: str = Field(
        "./hpo-artifacts", description="a directory every node sees, or s3://bucket (boto3)"
    )
    keep_pruned: bool = Field(False, description="also keep the best model of pruned trials")
    checkpoints: bool = Field(True, description="checkpoint every epoch so retries resume")


class LoggingSpec(_Frozen):
    """What each trial logs besides the study's own records."""

    tensorboard: bool | Literal["auto"] = Field(
        "auto",
        description="event files per trial under <artifacts>/tensorboard/<study>/trial-<n>/; "
        "auto: when the tensorboard package is installed",
    )


#: What ``warm_start.from`` reads, by the file's suffix.
WARM_FILE_SUFFIXES = (".csv", ".json", ".yaml", ".yml")


def _valid_storage(url: str | None) -> str | None:
    """A storage URL normalised (``postgres://`` accepted), or pydantic's error for it."""
    try:
        return None if url is None else normalize_storage_url(url, "storage")
    except SpecError as exc:
        raise ValueError(str(exc).removeprefix("storage: ")) from None


class WarmStartSpec(_Frozen):
    """Start from an earlier study's results (``hpo.study.search.warm``): its complete trials
    that fit this space become the sampler's history, taking no budget slot, and its ``top_k``
    best configurations run first, as this study's own trials."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True
    )

    study: str | None = Field(None, description="an earlier study's name")
    storage: str | None = Field(None, description="its storage URL (default: this study's)")
    from_: str | None = Field(
        None,
        alias="from",
        description="instead of a study: `hpo export` CSV/JSON, or a params YAML (`hpo report`)",
    )
    top_k: int = Field(3, ge=0, description="its best N configurations run first (in the budget)")

    @field_validator("storage")
    @classmethod
    def _storage(cls, url: str | None) -> str | None:
        return _valid_storage(url)

    @field_validator("from_")
    @classmethod
    def _path(cls, path: str | None, info: ValidationInfo) -> str | None:
        """A relative path is relative to the spec file's directory (made absolute then)."""
        if path is None:
            return None
        if not path.lower().endswith(WARM_FILE_SUFFIXES):
            raise ValueError(
                f"{path!r}: expected a .csv or .json (`hpo export`) or a .yaml params file"
            )
        spec_dir = (info.context or {}).get("spec_dir")
        if spec_dir and not Path(path).is_absolute():
            return str((Path(spec_dir) / path).absolute())
        return path

    @model_validator(mode="after")
    def _one_source(self) -> WarmStartSpec:
        if (self.study is None) == (self.from_ is None):
            raise _at((), "give one of `study` (an earlier study) or `from` (a file)")
        if self.storage is not None and self.study is None:
            raise _at(("storage",), "goes with `study` (a file needs no storage)")
        return self


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class StudySpec(_Frozen):
    """A whole study: what to tune, how to search, how much to spend, where to store it."""

    name: str = Field(description="study name in the storage; nodes join by this name")
    description: str = ""
    metric: Metrics = Field(
        MetricSpec(), description="the metric to optimise, or a list of them (multi-objective)"
    )
    sampler: Sampler = TpeSpec(type="tpe")
    pruner: Pruner = AshaSpec(type="asha")
    budget: BudgetSpec = BudgetSpec()
    objective_value: Literal["best", "last"] = Field(
        "best", description="the trial's value: its best epoch's metric, or its last"
    )
    retry: RetrySpec = RetrySpec()
    artifacts: ArtifactSpec = ArtifactSpec()
    logging: LoggingSpec = Field(LoggingSpec(), description="TensorBoard event files per trial")
    resources: ResourcesSpec = Field(ResourcesSpec(), description="GPUs (processes) per trial")
    storage: str | None = Field(None, description="storage URL (flag and HPO_STORAGE win)")
    space: dict[str, Param] = Field(default_factory=dict, description="parameters to tune")
    train: TrainConfig = Field(default_factory=TrainConfig, description="fixed training config")
    objective: str | None = Field(None, description="'package.module:function' to tune instead")
    warm_start: WarmStartSpec | None = Field(
        None, description="begin from an earlier study's results (see hpo.study.search.warm)"
    )

    @field_validator("storage")
    @classmethod
    def _storage(cls, url: str | None) -> str | None:
        return _valid_storage(url)

    @model_validator(mode="before")
    @classmethod
    def _unpruned_by_default(cls, data: Any) -> Any:
        """``direction:``/``directions:`` become ``metric:`` (see hpo.spec.metric); Optuna
        prunes single-objective studies only: a list of metrics defaults to no pruner."""
        data = metric_shorthand(data)
        metric = data.get("metric") if isinstance(data, dict) else None
        if isinstance(metric, list | tuple) and len(metric) > 1 and "pruner" not in data:
            return {**data, "pruner": {"type": "none"}}
        return data

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        """The study's metrics in order: one, or several for a multi-objective study."""
        return self.metric if isinstance(self.metric, tuple) else (self.metric,)

    @property
    def multi_objective(self) -> bool:
        """Whether the study optimises several metrics (trials have a list of values)."""
        return len(self.metrics) > 1

    def _metric_loc(self, index: int) -> tuple[str | int, ...]:
        return ("metric", index) if isinstance(self.metric, tuple) else ("metric",)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> StudySpec:
        if not _NAME.match(self.name):
            raise _at(("name",), f"{self.name!r} is not a valid study name (letters, digits, _.-)")
        try:
            ordered(self.space)
        except ValueError as exc:
            raise _at(("space",), str(exc)) from None
        unreachable = unreachable_conditions(self.space)
        if unreachable:
            name, parent, value = unreachable[0]
            offers = _offers(self.space[parent])
            raise _at(("space", name, "when", parent), f"{parent} never takes {value!r} ({offers})")
        self._check_metrics()
        self._check_sampler()
        spec_dir = (info.context or {}).get("spec_dir")
        if self.objective is None:
            self._check_train_space(objective_dirs(spec_dir))
        else:
            if "train" in self.model_fields_set:
                raise _at(("train",), "a study with `objective` has no `train` block")
            if self.resources.gpus_per_trial > 1:
                raise _at(
                    ("resources", "gpus_per_trial"),
                    "several processes per trial need the built-in trainer, not `objective`",
                )
            try:
                objective_form(load_objective(self.objective, objective_dirs(spec_dir)))
            except ValueError as exc:
                raise _at(("objective",), str(exc)) from None
        self._check_budget()
        self._check_warm_start()
        if self.logging.tensorboard is True and not board.installed():
            raise _at(
                ("logging", "tensorboard"),
                f"needs the 'tensorboard' package, not installed: pip install 'hpo[{board.EXTRA}]'"
                " (or logging: {tensorboard: false})",
            )
        return self

    def _check_warm_start(self) -> None:
        warm = self.warm_start
        if warm is None:
            return
        if isinstance(self.sampler, GridSpec):
            raise _at(("warm_start",), "a grid runs every point once: it has no use for history")
        if warm.study == self.name and warm.storage is None:
            raise _at(("warm_start", "study"), f"{warm.study!r} is this study itself")

    def _check_metrics(self) -> None:
        seen: set[str] = set()
        for i, metric in enumerate(self.metrics):
            if metric.name in seen:
                raise _at((*self._metric_loc(i), "name"), f"{metric.name!r} is listed twice")
            seen.add(metric.name)
        if self.multi_objective and not isinstance(self.pruner, NoPrunerSpec):
            raise _at(
                ("pruner", "type"),
                f"{self.pruner.type}: Optuna cannot prune a study of several metrics; "
                "use `pruner: {type: none}`",
            )

    def _check_sampler(self) -> None:
        kind = self.sampler.type
        if self.multi_objective and isinstance(self.sampler, CmaEsSpec):
            raise _at(
                ("sampler", "type"),
                "cmaes optimises one metric; for several use nsgaii, tpe, gp or random",
            )
        modules, extra = SAMPLER_EXTRAS.get(kind, ((), ""))
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise _at(
                ("sampler", "type"),
                f"the {kind} sampler needs {missing[0]!r}, not installed: "
                f"pip install 'hpo[{extra}]'",
            )

    def _check_train_space(self, dirs: list[str]) -> None:
        for i, metric in enumerate(self.metrics):
            if metric.name not in METRICS:
                known = ", ".join(METRICS)
                raise _at(
                    (*self._metric_loc(i), "name"),
                    f"unknown metric {metric.name!r}; known: {known}",
                )
        check_own_parameters(self.space, check_user_code(self.train, self.space, dirs))
        fixed = self.train.model_dump(exclude_unset=True)
        for key, param in self.space.items():
            if key not in TrainConfig.model_fields:
                continue  # the user's model or dataset takes it (checked above)
            for field, value in _candidates(param):
                try:
                    TrainConfig.model_validate({**fixed, key: value})
                except ValidationError as exc:
                    msg = exc.errors()[0]["msg"].removeprefix("Value error, ")
                    raise _at(("space", key, field), f"{value!r}: {msg}") from None

    def _check_budget(self) -> None:
        if isinstance(self.sampler, GridSpec):
            missing = [k for k, p in self.space.items() if p.grid_values() is None]
            if missing:
                raise _at(("space", missing[0]), "the grid sampler needs `values` here")
            if not self.space:
                raise _at(("space",), "the grid sampler needs at least one parameter")
        elif self.budget.n_trials is None and self.budget.max_epochs_total is None:
            raise _at(
                ("budget", "n_trials"),
                "required (the study's total number of trials), unless budget.max_epochs_total "
                "bounds the study",
            )
        self._check_resource()

    def _check_resource(self) -> None:
        """Rung-based pruners and the multi-fidelity sampler need the epochs of a full trial:
        ``train.epochs``, or for a custom objective the pruner's ``max_resource``."""
        pruner, sampler = self.pruner, self.sampler
        rung_based = isinstance(pruner, HyperbandSpec | AshaSpec)
        if isinstance(sampler, TpeSpec) and sampler.multi_fidelity and not rung_based:
            raise _at(
                ("sampler", "multi_fidelity"),
                f"needs the rungs of an asha or hyperband pruner, not {pruner.type!r}",
            )
        if not isinstance(pruner, HyperbandSpec | AshaSpec):
            return
        if self.objective is not None and pruner.max_resource is None:
            raise _at(
                ("pruner", "max_resource"),
                "required with a custom objective: the epochs (steps) a full trial reports "
                f"({pruner.type} cannot place its rungs without it), or `pruner: {{type: none}}`",
            )
        top = self.max_resource
        assert top is not None
        if self.min_resource > top:
            raise _at(("pruner", "min_resource"), f"greater than max_resource/epochs ({top})")

    @property
    def tensorboard(self) -> bool:
        """Whether trials write TensorBoard event files (``auto``: the package is installed)."""
        on = self.logging.tensorboard
        return on is True or (on == "auto" and board.installed())

    @property
    def user_code(self) -> list[str]:
        """The user's functions the study calls (``module:function``): its objective, or its
        own model and dataset functions."""
        if self.objective is not None:
            return [self.objective]
        return [ref for refs in user_refs(self.train, self.space).values() for ref in refs]

    @property
    def max_resource(self) -> int | None:
        """Hyperband's full budget in epochs: explicit, else ``train.epochs``."""
        if isinstance(self.pruner, HyperbandSpec | AshaSpec):
            return self.pruner.max_resource or (
                self.train.epochs if self.objective is None else None
            )
        return None

    @property
    def min_resource(self) -> int:
        """The epochs before a rung pruner's first decision: explicit, else for ASHA
        ``max_resource / reduction_factor ** 2`` (two halvings, at least 1 epoch).

        Two, not three: a first rung after one epoch of 27 or 30 cut the configurations that
        end best on half the suite of ``benchmarks/search_efficiency.py`` (issue 22); placed
        by ``max_resource`` it stays at epoch 1 for 20 epochs, where that measured best."""
        p = self.pruner
        assert isinstance(p, HyperbandSpec | AshaSpec)
        if p.min_resource is not None:
            return p.min_resource
        return max(1, round((self.max_resource or 1) / p.reduction_factor**2))

    @property
    def multi_fidelity(self) -> bool:
        """Whether TPE models the highest populated rung (``sampler.multi_fidelity``)."""
        s = self.sampler
        return isinstance(s, TpeSpec) and s.multi_fidelity and not self.multi_objective

    def grid(self) -> list[dict[str, Any]]:
        """All grid points (grid sampler only)."""
        return grid_points(self.space)

    @property
    def n_trials(self) -> int | None:
        """The trial budget; for a grid, at most the number of grid points. None: no trial
        limit (only with ``budget.max_epochs_total``, which then bounds the study)."""
        if isinstance(self.sampler, GridSpec):
            size = len(self.grid())
            return min(self.budget.n_trials or size, size)
        return self.budget.n_trials


def _candidates(param: Any) -> list[tuple[str, Any]]:
    """(field, value) pairs worth checking against the train config: bounds, choices, values."""
    found = [(f, getattr(param, f)) for f in ("low", "high") if getattr(param, f, None) is not None]
    found += [("choices", c) for c in getattr(param, "choices", [])]
    found += [("values", v) for v in getattr(param, "values", None) or []]
    return found


def _offers(param: Any) -> str:
    if getattr(param, "choices", None) is not None:
        return "choices: " + ", ".join(repr(c) for c in param.choices)
    if getattr(param, "low", None) is not None:
        return f"range [{param.low}, {param.high}]" + (
            f" step {param.step}" if getattr(param, "step", None) not in (None, 1) else ""
        )
    return f"values: {param.values}"
