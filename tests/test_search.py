"""Samplers, pruners and suggestion built from specs, driven by ask/tell with no training."""

from __future__ import annotations

import optuna
import pytest
from conftest import tiny_spec
from optuna.trial import TrialState

from hpo.spec import StudySpec
from hpo.study import build_pruner, build_sampler, suggest, worker_seed


def _spec(**overrides: object) -> StudySpec:
    return StudySpec.model_validate(tiny_spec(**overrides))


@pytest.mark.parametrize(
    ("sampler", "cls"),
    [
        ({"type": "tpe", "seed": 1}, optuna.samplers.TPESampler),
        ({"type": "random", "seed": 1}, optuna.samplers.RandomSampler),
        ({"type": "gp", "seed": 1}, optuna.samplers.GPSampler),
        ({"type": "qmc", "seed": 1}, optuna.samplers.QMCSampler),
        ({"type": "nsgaii", "seed": 1}, optuna.samplers.NSGAIISampler),
    ],
)
def test_sampler_built_from_spec(sampler: dict, cls: type) -> None:
    assert isinstance(build_sampler(_spec(sampler=sampler)), cls)


def test_cmaes_sampler_built_from_spec() -> None:
    pytest.importorskip("cmaes")
    assert isinstance(build_sampler(_spec(sampler={"type": "cmaes"})), optuna.samplers.CmaEsSampler)


def _first_draws(spec: StudySpec, workers: int) -> list[float]:
    """Each worker's sampler's first value of ``lr`` on one study, one trial per worker."""
    study = optuna.create_study()
    dist = optuna.distributions.FloatDistribution(0.01, 0.5, log=True)
    draws = []
    for i in range(workers):
        sampler = build_sampler(spec, i)
        trial = study.ask()
        draws.append(sampler.sample_independent(study, trial, "lr", dist))
    return draws


@pytest.mark.parametrize("kind", ["random", "gp", "nsgaii", "cmaes"])
def test_parallel_workers_of_every_seeded_sampler_draw_differently(kind: str) -> None:
    if kind == "cmaes":
        pytest.importorskip("cmaes")
    spec = _spec(sampler={"type": kind, "seed": 0})
    assert len(set(_first_draws(spec, 4))) == 4
    assert _first_draws(spec, 1) == _first_draws(spec, 1)  # the seed reproduces


def test_qmc_workers_share_one_sequence_through_the_storage() -> None:
    """Every worker scrambles alike (the spec's seed, not offset): four workers taking turns
    on one study draw the same points as one worker alone."""
    spec = _spec(sampler={"type": "qmc", "seed": 5})

    def points(workers: int) -> list[float]:
        study = optuna.create_study()
        samplers = [build_sampler(spec, i) for i in range(workers)]
        found = []
        for n in range(8):
            study.sampler = samplers[n % workers]
            trial = study.ask({"lr": optuna.distributions.FloatDistribution(0.01, 0.5, log=True)})
            study.tell(trial, 0.0)
            found.append(trial.params["lr"])
        return found

    alone = points(1)
    assert len(set(alone)) == 8 and points(4) == alone


def test_worker_seeds_are_distinct_per_registration_and_the_first_is_the_spec_seed() -> None:
    seeds = [worker_seed(7, i) for i in range(10_000)]
    assert len(set(seeds)) == len(seeds)
    assert seeds[0] == 7  # one worker reproduces a single-process run with the spec's seed
    assert worker_seed(None, 3) is None


def test_parallel_tpe_workers_propose_different_first_points() -> None:
    spec = _spec(sampler={"type": "tpe", "seed": 0})
    study = optuna.create_study()
    firsts = set()
    for i in range(4):
        sampler = build_sampler(spec, i)
        trial = study.ask()
        firsts.add(
            sampler.sample_independent(
                study, trial, "lr", optuna.distributions.FloatDistribution(0.01, 0.5, log=True)
            )
        )
    assert len(firsts) == 4


def test_hyperband_from_spec_uses_epochs_as_max_resource() -> None:
    pruner = build_pruner(
        _spec(pruner={"type": "hyperband", "min_resource": 1, "reduction_factor": 3})
    )
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._max_resource == 3  # train.epochs of the tiny spec


def _drive(pruner: optuna.pruners.BasePruner, n: int = 30, epochs: int = 9) -> list[TrialState]:
    """Trials whose curve is their index: later trials are worse, so a pruner should stop some."""
    study = optuna.create_study(
        direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0)
    )
    for i in range(n):
        trial = study.ask()
        pruned = False
        for epoch in range(1, epochs + 1):
            trial.report(1.0 - i / n + 0.01 * epoch, epoch)
            if trial.should_prune():
                pruned = True
                break
        study.tell(trial, state=TrialState.PRUNED) if pruned else study.tell(trial, 1.0 - i / n)
    return [t.state for t in study.trials]


def test_hyperband_prunes_worse_trials_without_training() -> None:
    spec = _spec(pruner={"type": "hyperband"}, train={**tiny_spec()["train"], "epochs": 9})
    states = _drive(build_pruner(spec))
    assert states.count(TrialState.PRUNED) >= 5
    assert states[0] == TrialState.COMPLETE


def test_median_prunes_and_none_never_prunes() -> None:
    median = _drive(build_pruner(_spec(pruner={"type": "median", "n_startup_trials": 3})))
    assert median.count(TrialState.PRUNED) >= 10
    never = _drive(build_pruner(_spec(pruner={"type": "none"})))
    assert never.count(TrialState.PRUNED) == 0


def test_median_warmup_protects_that_many_epochs() -> None:
    pruner = build_pruner(
        _spec(pruner={"type": "median", "n_startup_trials": 5, "n_warmup_steps": 1})
    )
    study = optuna.create_study(direction="maximize", pruner=pruner)
    for _ in range(5):
        trial = study.ask()
        for epoch in (1, 2):
            trial.report(1.0, epoch)
        study.tell(trial, 1.0)
    weak = study.ask()
    weak.report(0.0, 1)
    assert not weak.should_prune()  # epoch 1 is warm-up
    weak.report(0.0, 2)
    assert weak.should_prune()


def test_suggest_respects_conditions() -> None:
    spec = _spec(
        space={
            "optimizer": {"type": "categorical", "choices": ["sgd", "adam"]},
            "momentum": {"type": "float", "low": 0.5, "high": 0.99, "when": {"optimizer": "sgd"}},
            "batch_size": {"type": "int", "low": 16, "high": 128, "step": 16},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = []
    for _ in range(20):
        params = suggest(study.ask(), spec)
        seen.append(params)
        assert ("momentum" in params) == (params["optimizer"] == "sgd")
        assert params["batch_size"] % 16 == 0
    assert {p["optimizer"] for p in seen} == {"sgd", "adam"}
