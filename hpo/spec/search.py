"""Sampler and pruner specs: ``sampler:`` and ``pruner:`` in a study file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
)

from hpo.spec.base import _Frozen

#: Sampler type -> (the modules it imports, the extra that installs them).
SAMPLER_EXTRAS = {
    "cmaes": (("cmaes",), "cmaes"),
    "gp": (("scipy",), "gp"),  # and torch, a dependency of hpo already
    "qmc": (("scipy",), "qmc"),
}


class TpeSpec(_Frozen):
    """Bayesian optimisation with the tree-structured Parzen estimator."""

    type: Literal["tpe"]
    seed: int | None = Field(None, description="base seed; each worker adds its own offset")
    n_startup_trials: int = Field(10, ge=0, description="random trials before TPE takes over")
    n_ei_candidates: int = Field(24, ge=1, description="candidates scored per suggestion")
    multivariate: bool = Field(
        False, description="model parameters jointly (independently: safer on noisy tasks)"
    )
    constant_liar: bool = Field(True, description="treat running trials as bad to spread workers")
    multi_fidelity: bool = Field(
        False,
        description="BOHB-style: model the metric at the highest pruning rung with enough trials",
    )


class RandomSpec(_Frozen):
    """Independent uniform draws."""

    type: Literal["random"]
    seed: int | None = Field(None, description="base seed; each worker adds its own offset")


class GridSpec(_Frozen):
    """Every combination of the parameters' grid values, each run exactly once."""

    type: Literal["grid"]
    seed: int | None = Field(0, description="seed of the order in which grid points run")


class CmaEsSpec(_Frozen):
    """CMA-ES: a covariance-matrix evolution strategy for continuous parameters (single
    objective; categorical parameters are drawn at random). Needs the ``cmaes`` extra."""

    type: Literal["cmaes"]
    seed: int | None = Field(None, description="base seed; each worker adds its own offset")
    n_startup_trials: int = Field(1, ge=0, description="random trials before CMA-ES takes over")
    sigma0: float | None = Field(None, gt=0, description="initial step size (default: range/6)")
    popsize: int | None = Field(None, ge=1, description="population size (default: by dimension)")
    restart_strategy: Literal["ipop", "bipop"] | None = Field(
        None, description="restart with a larger population on convergence"
    )
    use_separable_cma: bool = Field(False, description="diagonal covariance (many parameters)")
    with_margin: bool = Field(False, description="CMA-ES with margin, for integer parameters")


class GpSpec(_Frozen):
    """Gaussian-process Bayesian optimisation (logEI; logEHVI for several metrics): strong on
    small budgets of continuous parameters. Needs the ``gp`` extra (scipy; torch is there)."""

    type: Literal["gp"]
    seed: int | None = Field(None, description="base seed; each worker adds its own offset")
    n_startup_trials: int = Field(10, ge=0, description="random trials before the GP takes over")
    deterministic_objective: bool = Field(False, description="the metric has no noise")


class QmcSpec(_Frozen):
    """Quasi-Monte Carlo: a low-discrepancy sequence that covers the space evenly, shared by all
    workers (its index lives in the storage). Needs the ``qmc`` extra (scipy)."""

    type: Literal["qmc"]
    seed: int | None = Field(0, description="scrambling seed, the same for every worker")
    qmc_type: Literal["sobol", "halton"] = Field("sobol", description="the sequence")
    scramble: bool = Field(True, description="randomise the sequence (by the seed)")


class NsgaIISpec(_Frozen):
    """NSGA-II, the genetic algorithm of choice for multi-objective studies with a budget of
    several populations."""

    type: Literal["nsgaii"]
    seed: int | None = Field(None, description="base seed; each worker adds its own offset")
    population_size: int = Field(50, ge=2, description="trials per generation")
    mutation_prob: float | None = Field(
        None, ge=0, le=1, description="per-parameter mutation (default: 1/parameters)"
    )
    crossover_prob: float = Field(0.9, ge=0, le=1, description="chance a child is a crossover")
    swapping_prob: float = Field(0.5, ge=0, le=1, description="per-parameter parent swap")


Sampler = Annotated[
    TpeSpec | RandomSpec | GridSpec | CmaEsSpec | GpSpec | QmcSpec | NsgaIISpec,
    Field(discriminator="type"),
]


class HyperbandSpec(_Frozen):
    """Hyperband over epochs: many short runs, the promising ones continued."""

    type: Literal["hyperband"]
    min_resource: int = Field(1, ge=1, description="epochs before the first pruning decision")
    max_resource: int | None = Field(
        None, ge=1, description="epochs of a full run (default: epochs)"
    )
    reduction_factor: int = Field(3, ge=2, description="1/factor of trials go on at each rung")


class AshaSpec(_Frozen):
    """Asynchronous successive halving (the default): a trial goes on past a rung when it is in
    the best 1/reduction_factor of the trials that reached that rung so far; nobody waits for a
    bracket to fill."""

    type: Literal["asha"]
    min_resource: int | None = Field(
        None,
        ge=1,
        description="epochs before the first pruning decision "
        "(default: max_resource / reduction_factor ** 2, at least 1: two halvings)",
    )
    max_resource: int | None = Field(
        None, ge=1, description="epochs of a full run (default: epochs)"
    )
    reduction_factor: int = Field(4, ge=2, description="1/factor of trials go on at each rung")
    min_early_stopping_rate: int = Field(
        0, ge=0, description="first rung at min_resource * reduction_factor ** rate"
    )


class MedianSpec(_Frozen):
    """Prune a trial whose metric is worse than the median of earlier trials at the same epoch."""

    type: Literal["median"]
    n_startup_trials: int = Field(5, ge=0, description="trials that finish before any pruning")
    n_warmup_steps: int = Field(0, ge=0, description="epochs of each trial never pruned")


class NoPrunerSpec(_Frozen):
    """Never prune."""

    type: Literal["none"]


Pruner = Annotated[
    HyperbandSpec | AshaSpec | MedianSpec | NoPrunerSpec, Field(discriminator="type")
]
