"""ASHA, the multi-fidelity TPE and the declared maximum resource, with no training at all."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
from conftest import tiny_spec
from optuna.trial import TrialState
from test_hyperband import EPOCHS, _drive

from hpo.errors import SpecError
from hpo.spec import StudySpec, spec_from_dict
from hpo.study import build_pruner, build_sampler
from hpo.study._optuna.hyperband import FastAshaPruner
from hpo.study._optuna.mftpe import MultiFidelityTPESampler, rungs
from hpo.study._optuna.sql_writes import UpsertWrites
from hpo.study._optuna.tpe import FastTPESampler
from hpo.study._optuna.trial_cache import TrialCache


def _spec(**overrides: object) -> StudySpec:
    return StudySpec.model_validate(tiny_spec(**overrides))


def test_rungs_are_successive_halving_steps_then_the_full_run() -> None:
    assert rungs(1, 3, 20) == [1, 3, 9, 20]
    assert rungs(1, 4, 20) == [1, 4, 16, 20]
    assert rungs(2, 3, 18) == [2, 6, 18]
    assert rungs(1, 3, 20, rate=1) == [3, 9, 20]


@pytest.mark.fast_paths
def test_asha_from_spec_is_one_bracket_from_min_resource() -> None:
    asha = {"type": "asha", "max_resource": 20}
    pruner = build_pruner(_spec(pruner={**asha, "min_resource": 2, "reduction_factor": 4}))
    assert isinstance(pruner, FastAshaPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (2, 20, 4)
    rate = {"reduction_factor": 3, "min_early_stopping_rate": 1}
    later = build_pruner(_spec(pruner={**asha, **rate, "min_resource": 1}))
    assert isinstance(later, FastAshaPruner)
    assert later._min_resource == 3  # the first rung at 1 * 3 ** 1
    derived = build_pruner(_spec(pruner={**asha, **rate}))
    assert isinstance(derived, FastAshaPruner)
    assert derived._min_resource == 6  # min_resource round(20 / 3 ** 2) = 2, then 2 * 3 ** 1


@pytest.mark.fast_paths
def test_the_default_search_is_tpe_with_asha_by_four() -> None:
    spec = _spec(train={**tiny_spec()["train"], "epochs": 20}).model_dump()
    del spec["pruner"], spec["sampler"]
    default = StudySpec.model_validate({**spec, "sampler": {"type": "tpe", "seed": 0}})
    pruner = build_pruner(default)
    assert isinstance(pruner, FastAshaPruner)
    assert (pruner._min_resource, pruner._reduction_factor) == (1, 4)
    assert isinstance(build_sampler(default), FastTPESampler)  # Optuna's TPE, on the fast path
    mf = StudySpec.model_validate(
        {**spec, "sampler": {"type": "tpe", "seed": 0, "multi_fidelity": True}}
    )
    sampler = build_sampler(mf)
    assert isinstance(sampler, MultiFidelityTPESampler) and sampler._rungs == [1, 4, 16, 20]


def test_trials_stopped_below_the_rung_are_in_the_bad_set() -> None:
    """One trial reached epoch 3; five reached it and twenty were stopped at epoch 1 with
    x < 0.3. Were the stopped ones left out, the bad set would hold only x > 0.5 and the
    sampler would be drawn to x < 0.3, the region the pruner already ruled out."""
    sampler = MultiFidelityTPESampler(rungs=[1, 3, 9], seed=0, n_startup_trials=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    for i in range(20):
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": 0.3 * i / 19},
                distributions={"x": dist},
                intermediate_values={1: 0.1},
                state=TrialState.PRUNED,
            )
        )
    for i in range(5):
        x = 0.5 + 0.1 * i
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions={"x": dist},
                intermediate_values={1: 0.5, 2: 0.6, 3: 1.0 - abs(x - 0.7)},
                state=TrialState.PRUNED,
            )
        )
    xs = [study.ask({"x": dist}).params["x"] for _ in range(20)]
    assert sum(x < 0.3 for x in xs) <= 3, xs


@pytest.mark.parametrize(
    ("epochs", "factor", "first"),
    [(20, 4, 1), (27, 4, 2), (30, 4, 2), (40, 4, 2), (100, 4, 6), (300, 4, 19), (100, 3, 11)],
)
def test_asha_min_resource_defaults_to_two_halvings_below_the_full_run(
    epochs: int, factor: int, first: int
) -> None:
    spec = _spec(
        pruner={"type": "asha", "reduction_factor": factor},
        train={**tiny_spec()["train"], "epochs": epochs},
    )
    assert spec.min_resource == first


@pytest.mark.parametrize(("direction", "factor"), [("maximize", 3), ("minimize", 4)])
def test_fast_asha_decides_as_optunas_successive_halving(
    tmp_path: Path, direction: str, factor: int
) -> None:
    plain = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'plain.db'}",
        direction=direction,
        pruner=optuna.pruners.SuccessiveHalvingPruner(1, factor, 0),
    )
    fast_pruner = FastAshaPruner(1, EPOCHS, factor)
    fast = optuna.create_study(
        storage=TrialCache(UpsertWrites(f"sqlite:///{tmp_path / 'fast.db'}")),
        direction=direction,
        pruner=fast_pruner,
    )
    decisions = _drive(plain, fast, n_trials=40, in_flight=4, seed=factor)
    assert any(decisions) and not all(decisions)
    assert fast_pruner._rungs is not None  # hpo's fast path decided, not Optuna's fallback


def test_asha_promotes_as_soon_as_a_rung_allows() -> None:
    """Nobody waits for a bracket: with three trials at rung 1, the best one goes on at once,
    while the two worse ones are stopped, one by one, as they arrive."""
    study = optuna.create_study(
        direction="maximize",
        pruner=build_pruner(
            _spec(pruner={"type": "asha", "reduction_factor": 3, "max_resource": 9})
        ),
    )
    decisions = []
    for value in (0.9, 0.5, 0.4, 0.95):
        trial = study.ask()
        trial.report(value, 1)
        decisions.append(trial.should_prune())
        study.tell(trial, state=TrialState.PRUNED) if decisions[-1] else study.tell(trial, value)
    assert decisions == [False, True, True, False]


def _study_with_rungs(sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """20 trials that reached epoch 3: the closer x is to 0.8, the better there. Their epoch-1
    values say the opposite (a misleading first rung), and only one trial completed."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    for i in range(20):
        x = i / 19
        at3 = 1.0 - abs(x - 0.8)
        study.add_trial(
            optuna.trial.create_trial(
                params={"x": x},
                distributions={"x": dist},
                intermediate_values={1: 0.5 * (1.0 - x), 2: 0.3, 3: at3},
                state=TrialState.PRUNED,
            )
        )
    return study


def test_multi_fidelity_tpe_models_the_highest_rung_with_enough_trials() -> None:
    sampler = MultiFidelityTPESampler(rungs=[1, 3, 9], seed=0, n_startup_trials=5)
    study = _study_with_rungs(sampler)
    xs = [
        study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)}).params["x"]
        for _ in range(30)
    ]
    near = sum(abs(x - 0.8) < 0.2 for x in xs)
    assert near >= 20, xs  # it follows rung 3 (x near 0.8), not rung 1 (x near 0)


def test_multi_fidelity_tpe_is_tpe_until_a_rung_has_enough_trials() -> None:
    mf = MultiFidelityTPESampler(rungs=[1, 3, 9], min_points=1000, seed=3, n_startup_trials=5)
    plain = optuna.samplers.TPESampler(seed=3, n_startup_trials=5)
    one, two = _study_with_rungs(mf), _study_with_rungs(plain)
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    assert [one.ask(dist).params["x"] for _ in range(5)] == [
        two.ask(dist).params["x"] for _ in range(5)
    ]


@pytest.mark.fast_paths
def test_multi_fidelity_sampler_from_spec_takes_the_pruners_rungs_and_pickles() -> None:
    spec = _spec(
        sampler={"type": "tpe", "seed": 0, "multi_fidelity": True},
        pruner={"type": "asha", "reduction_factor": 3, "min_resource": 1},
        train={**tiny_spec()["train"], "epochs": 20},
    )
    sampler = build_sampler(spec)
    assert isinstance(sampler, MultiFidelityTPESampler)
    assert sampler._rungs == [1, 3, 9, 20]
    assert pickle.loads(pickle.dumps(sampler))._rungs == [1, 3, 9, 20]


@pytest.mark.parametrize(
    ("overrides", "path", "words"),
    [
        (
            {"sampler": {"type": "tpe", "multi_fidelity": True}, "pruner": {"type": "median"}},
            "sampler.multi_fidelity",
            "needs the rungs of an asha or hyperband pruner",
        ),
        (
            {"objective": "mfobj:objective", "train": None, "pruner": {"type": "hyperband"}},
            "pruner.max_resource",
            "required with a custom objective",
        ),
        (
            {"objective": "mfobj:objective", "train": None, "pruner": {"type": "asha"}},
            "pruner.max_resource",
            "required with a custom objective",
        ),
    ],
)
def test_pruning_without_a_maximum_resource_is_refused(
    tmp_path, monkeypatch, overrides: dict, path: str, words: str
) -> None:
    (tmp_path / "mfobj.py").write_text("def objective(trial):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {k: v for k, v in {**tiny_spec(), **overrides}.items() if v is not None}
    with pytest.raises(SpecError, match=rf"{path}: .*{words}"):
        spec_from_dict(spec, str(tmp_path / "study.yaml"))


def test_a_custom_objective_with_a_declared_maximum_prunes_from_the_first_trial(
    tmp_path, monkeypatch
) -> None:
    (tmp_path / "mfobj2.py").write_text("def objective(trial):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {
        **tiny_spec(),
        "objective": "mfobj2:objective",
        "pruner": {"type": "hyperband", "max_resource": 9},
    }
    del spec["train"]
    pruner = build_pruner(spec_from_dict(spec, str(tmp_path / "study.yaml")))
    assert pruner._max_resource == 9  # not "auto": rungs are placed before any trial completes
