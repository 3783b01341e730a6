"""Samplers, pruners and parameter suggestion built from the spec."""

from __future__ import annotations

from typing import Any

import optuna

from hpo.spec import (
    AshaSpec,
    CategoricalParam,
    CmaEsSpec,
    FloatParam,
    GpSpec,
    GridSpec,
    HyperbandSpec,
    MedianSpec,
    NsgaIISpec,
    QmcSpec,
    RandomSpec,
    StudySpec,
    TpeSpec,
    is_active,
    ordered,
)
from hpo.study._optuna.fast_paths import fast_paths
from hpo.study._optuna.hyperband import FastAshaPruner, FastHyperbandPruner
from hpo.study._optuna.mftpe import MultiFidelityTPESampler, rungs
from hpo.study._optuna.tpe import FastTPESampler


def worker_seed(base: int | None, worker: int) -> int | None:
    """The seed of the study's ``worker``-th registered worker: the spec's seed for the first,
    distinct for every other, so parallel samplers never replay each other's draws."""
    if base is None:
        return None
    return (base + 7919 * worker) % 2**32


def build_sampler(spec: StudySpec, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler named by ``spec.sampler``, seeded for the study's ``worker``-th worker."""
    s = spec.sampler
    seed = worker_seed(s.seed, worker)
    if isinstance(s, TpeSpec):
        options = _tpe_options(spec, s, seed)
        if not fast_paths():  # plain Optuna: multi-fidelity TPE is hpo's own, so plain TPE
            return optuna.samplers.TPESampler(**options)
        if spec.multi_fidelity:
            return MultiFidelityTPESampler(rungs=pruning_rungs(spec), **options)
        return FastTPESampler(**options)
    if isinstance(s, RandomSpec | GridSpec):
        # Grid points are enqueued in the storage once (hpo.study.claims.budget), each trial arrives
        # with all its parameters fixed, so a grid study's sampler is never asked for a value.
        return optuna.samplers.RandomSampler(seed=seed)
    return _optuna_sampler(s, seed)


def _tpe_options(spec: StudySpec, s: TpeSpec, seed: int | None) -> dict[str, Any]:
    return {
        "seed": seed,
        "n_startup_trials": s.n_startup_trials,
        "n_ei_candidates": s.n_ei_candidates,
        "multivariate": s.multivariate,
        "group": s.multivariate and any(p.when for p in spec.space.values()),
        "constant_liar": s.constant_liar,
    }


def _optuna_sampler(
    s: CmaEsSpec | GpSpec | QmcSpec | NsgaIISpec, seed: int | None
) -> optuna.samplers.BaseSampler:
    """Optuna's own samplers, their options straight from the spec. Parameters they cannot
    model (categoricals for CMA-ES, conditional ones) are drawn by a random sampler of the
    worker's seed, without Optuna's warning on every trial."""
    fallback = optuna.samplers.RandomSampler(seed=seed)
    if isinstance(s, CmaEsSpec):
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=s.n_startup_trials,
            sigma0=s.sigma0,
            popsize=s.popsize,
            restart_strategy=s.restart_strategy,
            use_separable_cma=s.use_separable_cma,
            with_margin=s.with_margin,
            independent_sampler=fallback,
            warn_independent_sampling=False,
        )
    if isinstance(s, GpSpec):
        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=s.n_startup_trials,
            deterministic_objective=s.deterministic_objective,
            independent_sampler=fallback,
            warn_independent_sampling=False,
        )
    if isinstance(s, QmcSpec):
        # One sequence for the whole study: its index is in the storage and every worker must
        # scramble it alike, so the spec's seed is not offset per worker (Optuna's advice).
        return optuna.samplers.QMCSampler(
            seed=s.seed,
            qmc_type=s.qmc_type,
            scramble=s.scramble,
            independent_sampler=fallback,
            warn_independent_sampling=False,
        )
    return optuna.samplers.NSGAIISampler(
        seed=seed,
        population_size=s.population_size,
        mutation_prob=s.mutation_prob,
        crossover_prob=s.crossover_prob,
        swapping_prob=s.swapping_prob,
    )


def pruning_rungs(spec: StudySpec) -> list[int]:
    """The epochs at which the spec's pruner compares trials (ASHA: its rungs; Hyperband: the
    rungs of its most aggressive bracket, which every other bracket's rungs are among)."""
    p = spec.pruner
    top = spec.max_resource
    assert isinstance(p, AshaSpec | HyperbandSpec) and top is not None
    rate = p.min_early_stopping_rate if isinstance(p, AshaSpec) else 0
    return rungs(spec.min_resource, p.reduction_factor, top, rate)


def build_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner named by ``spec.pruner``; max_resource defaults to ``epochs``."""
    p = spec.pruner
    if isinstance(p, AshaSpec):
        assert spec.max_resource is not None  # the spec refuses ASHA without one
        if not fast_paths():
            return optuna.pruners.SuccessiveHalvingPruner(
                spec.min_resource, p.reduction_factor, p.min_early_stopping_rate
            )
        return FastAshaPruner(
            spec.min_resource, spec.max_resource, p.reduction_factor, p.min_early_stopping_rate
        )
    if isinstance(p, HyperbandSpec):
        kind = FastHyperbandPruner if fast_paths() else optuna.pruners.HyperbandPruner
        return kind(
            min_resource=p.min_resource,
            max_resource=spec.max_resource or "auto",
            reduction_factor=p.reduction_factor,
        )
    if isinstance(p, MedianSpec):
        # Epochs are reported as steps 1, 2, ...; Optuna prunes from step == n_warmup_steps
        # on, so epochs 1..N are protected by N + 1.
        return optuna.pruners.MedianPruner(
            n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps + 1
        )
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Draw the active parameters of ``spec.space`` for ``trial``, conditions respected.

    A grid study suggests each parameter as a categorical of its grid values (the values are
    already fixed on the enqueued trial).
    """
    chosen: dict[str, Any] = {}
    grid = isinstance(spec.sampler, GridSpec)
    for name in ordered(spec.space):
        p = spec.space[name]
        if not is_active(p, chosen):
            continue
        if grid or isinstance(p, CategoricalParam):
            chosen[name] = trial.suggest_categorical(name, p.grid_values())  # type: ignore[arg-type]
        elif isinstance(p, FloatParam):
            chosen[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)  # type: ignore[arg-type]
        else:
            chosen[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)  # type: ignore[arg-type]
    return chosen
