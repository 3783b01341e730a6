"""Search efficiency on digits: epochs TPE + Hyperband needs to match random search's best.

1. Random search without pruning runs ``--trials`` (60) full trials; its best validation
   accuracy (each trial's best epoch, as hpo's ``objective_value: best``) is the target.
2. TPE + Hyperband (hpo's defaults: multivariate TPE, reduction factor 3, min 1 epoch) runs
   trials until a completed trial reaches the target, or ``--max-trials``.

Both count every epoch trained, pruned trials included. Repeated for each of ``--seeds``
(samplers seeded alike), since one search is a noisy sample. Runs in-process with Optuna and
``hpo.trainer.fit`` (the small CNN, one torch thread); about 40 s per seed on 2 cores.

    python benchmarks/search_efficiency.py [--trials 60] [--epochs 6] [--seeds 0,1,2]

Prints one JSON object, then a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from hpo.trainer import TrainConfig, fit

CPU = torch.device("cpu")


@dataclass
class Ledger:
    """Epochs spent and the best completed value after each trial."""

    epochs: int = 0
    best: float = 0.0
    trace: list[tuple[int, float]] = field(default_factory=list)  # (epochs so far, best so far)


def _params(trial: optuna.Trial) -> dict[str, Any]:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1.0, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64, 128]),
        "momentum": trial.suggest_float("momentum", 0.5, 0.99),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
    }


def _objective(ledger: Ledger, epochs: int, prune: bool) -> Any:
    def objective(trial: optuna.Trial) -> float:
        config = TrainConfig(
            model="cnn", dataset="digits", epochs=epochs, num_workers=0, **_params(trial)
        )
        values: list[float] = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            ledger.epochs += 1
            values.append(metrics["val_accuracy"])
            trial.report(metrics["val_accuracy"], epoch)
            if prune and epoch < epochs and trial.should_prune():
                raise optuna.TrialPruned()

        fit(config, CPU, on_epoch)
        return max(values)

    return objective


def _record(ledger: Ledger) -> Any:
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.value is not None:
            ledger.best = max(ledger.best, trial.value)
        ledger.trace.append((ledger.epochs, ledger.best))

    return callback


def random_search(trials: int, epochs: int, seed: int) -> Ledger:
    ledger = Ledger()
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=seed),
        pruner=optuna.pruners.NopPruner(),
    )
    study.optimize(_objective(ledger, epochs, False), n_trials=trials, callbacks=[_record(ledger)])
    return ledger


def tpe_hyperband(target: float, epochs: int, seed: int, max_trials: int) -> Ledger:
    ledger = Ledger()
    study = optuna.create_study(
        study_name=f"tpe-hyperband-{seed}",  # Hyperband's brackets hash the name: fix it
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=10, multivariate=True),
        pruner=optuna.pruners.HyperbandPruner(1, epochs, 3),
    )
    objective, record = _objective(ledger, epochs, True), _record(ledger)
    while len(study.trials) < max_trials and ledger.best < target:
        study.optimize(objective, n_trials=1, callbacks=[record])
    return ledger


def _epochs_to(ledger: Ledger, target: float) -> int | None:
    return next((epochs for epochs, best in ledger.trace if best >= target), None)


def compare(seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """One seed: random search's best, then the epochs TPE + Hyperband needs to match it."""
    rand = random_search(args.trials, args.epochs, seed)
    target = rand.best
    tpe = tpe_hyperband(target, args.epochs, seed, args.max_trials)
    needed = _epochs_to(tpe, target)
    return {
        "seed": seed,
        "target_val_accuracy": round(target, 4),
        "random_epochs_total": rand.epochs,
        "random_epochs_to_its_best": _epochs_to(rand, target),
        "tpe_hyperband_trials": len(tpe.trace),
        "tpe_hyperband_epochs_to_target": needed,
        "tpe_hyperband_best": round(tpe.best, 4),
        "ratio_vs_random_total": None if needed is None else round(needed / rand.epochs, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60, help="random search trials")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of a full trial")
    parser.add_argument("--max-trials", type=int, default=150, help="cap for TPE + Hyperband")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds")
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    runs = [compare(int(seed), args) for seed in args.seeds.split(",")]
    reached = [r for r in runs if r["tpe_hyperband_epochs_to_target"] is not None]
    ratios = [r["ratio_vs_random_total"] for r in reached]
    median_ratio = statistics.median(ratios) if ratios else None
    report = {
        "benchmark": "search_efficiency",
        "data": "digits (1438 train / 359 val), cnn; space: lr, batch_size, momentum, weight_decay",
        "epochs_per_full_trial": args.epochs,
        "random_trials": args.trials,
        "runs": runs,
        "reached": f"{len(reached)}/{len(runs)}",
        "median_ratio_vs_random_total": median_ratio,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    epochs = [r["tpe_hyperband_epochs_to_target"] for r in reached]
    random_total = runs[0]["random_epochs_total"]
    print(
        f"search_efficiency: TPE+Hyperband matched random search's best of {args.trials} trials "
        f"in {len(reached)}/{len(runs)} seeds, using {epochs} epochs vs {random_total} for random "
        f"(median {median_ratio}x)"
    )


if __name__ == "__main__":
    main()
