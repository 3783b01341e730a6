"""The methods search_efficiency.py compares, each behind one ask/tell interface.

A method hands out ``Job``s: a configuration and the most epochs it may train. Pruned methods
(Optuna's and hpo's) decide after every epoch through ``Job.report``; fixed-budget ones (SMAC,
DEHB) train the job's budget and are told the result. Every method sees the same task, the
same epochs and the same value: the best validation metric of the epochs trained (a cost for
SMAC and DEHB, which minimise: the metric, negated when the task maximises it).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
from _search_tasks import Param, Params, Task


@dataclass
class Job:
    params: Params
    budget: int
    handle: Any = None
    values: list[float] = field(default_factory=list)

    def report(self, epoch: int, value: float) -> bool:
        """Record an epoch; True to stop here (pruned)."""
        self.values.append(value)
        return False


class Method:
    """ask() -> Job; tell(job) once the job stopped (pruned or its budget trained)."""

    def ask(self) -> Job:
        raise NotImplementedError

    def ask_for(self, worker: int) -> Job:
        """ask() on behalf of fleet worker ``worker`` (one method object serves every worker)."""
        return self.ask()

    def tell(self, job: Job) -> None:
        raise NotImplementedError


def suggest(trial: optuna.Trial, space: tuple[Param, ...]) -> Params:
    params: Params = {}
    for p in space:
        if not p.active(params):
            continue
        if p.kind == "cat":
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)
        else:
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log)
    return params


class _OptunaJob(Job):
    def report(self, epoch: int, value: float) -> bool:
        super().report(epoch, value)
        self.handle.report(value, epoch)
        return epoch < self.budget and self.handle.should_prune()


class OptunaMethod(Method):
    """Any Optuna sampler + pruner, asked and told like ``hpo run``'s workers do."""

    def __init__(
        self,
        task: Task,
        sampler: optuna.samplers.BaseSampler,
        pruner: optuna.pruners.BasePruner,
        name: str,
    ) -> None:
        self.task = task
        direction = "maximize" if task.maximize else "minimize"
        self.storage = optuna.storages.InMemoryStorage()
        self.study = optuna.create_study(
            study_name=name,
            storage=self.storage,
            direction=direction,
            sampler=sampler,
            pruner=pruner,
        )
        self.per_worker: list[optuna.Study] = []  # hpo run's way: a sampler per worker

    def ask_for(self, worker: int) -> Job:
        """``ask`` from worker ``worker``'s own study object (its own sampler), if it has one."""
        if not self.per_worker:
            return self.ask()
        trial = self.per_worker[worker].ask()
        return _OptunaJob(suggest(trial, self.task.space), self.task.max_epochs, trial)

    def ask(self) -> Job:
        trial = self.study.ask()
        return _OptunaJob(suggest(trial, self.task.space), self.task.max_epochs, trial)

    def tell(self, job: Job) -> None:
        if len(job.values) < job.budget:
            self.study.tell(job.handle, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(job.handle, self.task.best(job.values))


def hpo_method(spec_fields: dict[str, Any]) -> Callable[[Task, int, int], Method]:
    """hpo's sampler and pruner, built by ``hpo.study`` from a spec like a user's."""

    def make(task: Task, seed: int, workers: int) -> Method:
        from hpo.spec import StudySpec
        from hpo.study.search.build import build_pruner, build_sampler

        fields = {**spec_fields}
        lastvalue = fields.pop("_lastvalue", False)
        per_worker = fields.pop("_per_worker", False)
        default = StudySpec.model_fields["pruner"].default.type
        pruner = {"type": default, **fields.pop("pruner", {})}
        if pruner["type"] not in ("median", "none"):
            pruner["max_resource"] = task.max_epochs
        if "grace" in pruner:  # first rung at max_resource / grace epochs (variants only)
            pruner["min_resource"] = max(1, round(task.max_epochs / pruner.pop("grace")))
        spec = StudySpec.model_validate(
            {
                "name": f"bench-{seed}",
                "objective": "_search_objective:objective",
                "metric": metric_spec(task),
                "sampler": {"seed": seed, **fields.pop("sampler", {"type": "tpe"})},
                "space": hpo_space(task),
                "pruner": pruner,
                "budget": {"n_trials": 10_000},
                **fields,
            }
        )
        sampler = build_sampler(spec)
        if lastvalue:
            from _lastvalue import LastValueTPE

            from hpo.study.search.build import _tpe_options

            sampler = LastValueTPE(**_tpe_options(spec, spec.sampler, seed))
        method = OptunaMethod(task, sampler, build_pruner(spec), spec.name)
        if per_worker:  # as hpo run: each worker's sampler has a seed of its own, one storage
            method.per_worker = [
                optuna.load_study(
                    study_name=spec.name,
                    storage=method.storage,
                    sampler=build_sampler(spec, worker=w),
                    pruner=build_pruner(spec),
                )
                for w in range(workers)
            ]
        return method

    return make


def metric_spec(task: Task) -> dict[str, str]:
    return {"name": task.metric, "direction": "maximize" if task.maximize else "minimize"}


def cost(task: Task, values: list[float]) -> float:
    """What SMAC and DEHB minimise: the job's best value, negated if the task maximises."""
    best = task.best(values)
    return -best if task.maximize else best


def hpo_space(task: Task) -> dict[str, Any]:
    space: dict[str, Any] = {}
    for p in task.space:
        entry: dict[str, Any]
        if p.kind == "cat":
            entry = {"type": "categorical", "choices": list(p.choices)}
        else:
            entry = {"type": p.kind, "low": p.low, "high": p.high, "log": p.log}
            if p.kind == "int":
                entry.update(low=int(p.low), high=int(p.high))
        if p.when:
            entry["when"] = {p.when[0]: p.when[1]}
        space[p.name] = entry
    return space


def optuna_method(kind: str) -> Callable[[Task, int, int], Method]:
    """Plain Optuna, its defaults: random / TPE without pruning, TPE + Hyperband or + SHA."""

    def make(task: Task, seed: int, workers: int) -> Method:
        samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
        sampler_name, _, pruner_name = kind.partition("+")
        pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
            "": optuna.pruners.NopPruner,
            "hyperband": lambda: optuna.pruners.HyperbandPruner(1, task.max_epochs),
            "sha": optuna.pruners.SuccessiveHalvingPruner,
        }
        return OptunaMethod(
            task, samplers[sampler_name](seed=seed), pruners[pruner_name](), f"{kind}-{seed}"
        )

    return make


# --- external peers -------------------------------------------------------------------------


def _configspace(task: Task, seed: int) -> Any:
    from ConfigSpace import Categorical, ConfigurationSpace, EqualsCondition, Float, Integer

    cs = ConfigurationSpace(seed=seed)
    made = {}
    for p in task.space:
        if p.kind == "cat":
            made[p.name] = Categorical(p.name, list(p.choices))
        elif p.kind == "int":
            made[p.name] = Integer(p.name, (int(p.low), int(p.high)), log=p.log)
        else:
            made[p.name] = Float(p.name, (p.low, p.high), log=p.log)
    cs.add(list(made.values()))
    for p in task.space:
        if p.when:
            cs.add(EqualsCondition(made[p.name], made[p.when[0]], p.when[1]))
    return cs


def _clean(config: Any) -> Params:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(config).items()}


class SmacMethod(Method):
    """SMAC3's MultiFidelityFacade (random forest + Hyperband), ask/tell, cost()."""

    def __init__(self, task: Task, seed: int, workers: int) -> None:
        from smac import MultiFidelityFacade, Scenario

        self._dir = tempfile.TemporaryDirectory()
        scenario = Scenario(
            _configspace(task, seed),
            deterministic=True,
            n_trials=100_000,
            seed=seed,
            min_budget=1,
            max_budget=task.max_epochs,
            output_directory=self._dir.name,
        )
        self.task = task
        self.smac = MultiFidelityFacade(
            scenario,
            lambda config, seed=0, budget=1: 0.0,
            overwrite=True,
            logging_level=40,
            intensifier=MultiFidelityFacade.get_intensifier(scenario, eta=3),
        )

    def ask(self) -> Job:
        info = self.smac.ask()
        return Job(_clean(info.config), int(round(info.budget)), info)

    def tell(self, job: Job) -> None:
        from smac.runhistory.dataclasses import TrialValue

        self.smac.tell(job.handle, TrialValue(cost=cost(self.task, job.values)))


class DehbMethod(Method):
    """DEHB (differential evolution + Hyperband), ask/tell, fitness = cost()."""

    def __init__(self, task: Task, seed: int, workers: int) -> None:
        from dehb import DEHB
        from loguru import logger

        self.task = task
        logger.remove()  # DEHB logs every save to stdout, which carries the report
        self._dir = tempfile.TemporaryDirectory()
        cs = _configspace(task, seed)
        self.dehb = DEHB(
            cs=cs,
            dimensions=len(list(cs.values())),
            min_fidelity=1,
            max_fidelity=task.max_epochs,
            eta=3,
            n_workers=1,
            seed=seed,
            output_path=self._dir.name,
            log_level="ERROR",
        )

    def ask(self) -> Job:
        info = self.dehb.ask()
        return Job(_clean(info["config"]), int(round(info["fidelity"])), info)

    def tell(self, job: Job) -> None:
        result = {"fitness": cost(self.task, job.values), "cost": len(job.values)}
        self.dehb.tell(job.handle, result)


def rounded(budget: float) -> int:
    return max(1, int(math.floor(budget + 1e-9)))


class _RayTrial:
    """What Ray Tune's schedulers read of a trial: its id."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id = trial_id


class _RayJob(Job):
    def report(self, epoch: int, value: float) -> bool:
        super().report(epoch, value)
        method, trial = self.handle
        result = {"training_iteration": epoch, method.task.metric: value}
        # Tune's controller: the scheduler decides; on CONTINUE the searcher sees the result,
        # on STOP the trial ends (tell() below, with this result as its last).
        if method.scheduler.on_trial_result(None, trial, result) == "STOP":
            return True
        method.searcher.on_trial_result(trial.trial_id, result)
        return False


class RayMethod(Method):
    """Ray Tune's ASHA (``AsyncHyperBandScheduler``: grace period 1, reduction factor 4,
    ``max_t`` = the task's epochs, one bracket — Tune's defaults) with ``OptunaSearch`` (Optuna's
    TPE, its defaults), called in the order Tune's controller calls them: the scheduler on each
    result, the searcher on each result it lets through, and both on the trial's end with its
    last result (Tune tells Optuna that value as COMPLETE, also for a stopped trial). Tune's
    actors and processes are left out: only the search is compared, as for every method here."""

    def __init__(self, task: Task, seed: int, workers: int) -> None:
        import numpy as np
        from ray.tune.schedulers import AsyncHyperBandScheduler
        from ray.tune.search.optuna import OptunaSearch

        np.random.seed(seed)  # the scheduler draws each trial's bracket from numpy's global RNG
        mode = "max" if task.maximize else "min"
        self.task = task
        self.scheduler = AsyncHyperBandScheduler(
            time_attr="training_iteration",
            metric=task.metric,
            mode=mode,
            max_t=task.max_epochs,
        )

        def space(trial: optuna.Trial) -> None:
            suggest(trial, task.space)

        self.searcher = OptunaSearch(
            space=space,
            metric=task.metric,
            mode=mode,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        self._made = 0

    def ask(self) -> Job:
        trial = _RayTrial(str(self._made))
        self._made += 1
        config = self.searcher.suggest(trial.trial_id)
        self.scheduler.on_trial_add(None, trial)
        return _RayJob(dict(config), self.task.max_epochs, (self, trial))

    def tell(self, job: Job) -> None:
        _, trial = job.handle
        last = {"training_iteration": len(job.values), self.task.metric: job.values[-1]}
        self.scheduler.on_trial_complete(None, trial, last)
        self.searcher.on_trial_complete(trial.trial_id, result=last)
