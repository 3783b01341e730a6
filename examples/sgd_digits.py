"""A custom objective in Optuna's own form, run by ``hpo run examples/sgd_digits.yaml``.

scikit-learn's SGDClassifier on its bundled digits (no download, CPU, a second per trial),
trained one epoch at a time: ``alpha`` comes from the spec's ``space:`` (already suggested, in
``trial.params``), ``loss`` is suggested here in code. Each epoch is reported to the pruner and
checkpointed with ``hpo.checkpoint``, so a trial retried after a preemption or a crash
continues where its predecessor stopped instead of starting over.
"""

from __future__ import annotations

import optuna
from sklearn.datasets import load_digits
from sklearn.linear_model import SGDClassifier
from sklearn.model_selection import train_test_split

import hpo

EPOCHS = 10


def objective(trial: optuna.Trial) -> float:
    alpha = trial.params["alpha"]  # from the spec's space:
    loss = trial.suggest_categorical("loss", ["hinge", "log_loss", "modified_huber"])
    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.25, random_state=0)

    ckpt = hpo.checkpoint(trial)
    state = ckpt.load() or {
        "model": SGDClassifier(alpha=alpha, loss=loss, random_state=0),
        "scores": [],
    }
    for epoch, score in enumerate(state["scores"], 1):
        trial.report(score, epoch)  # a resumed trial's curve continues its predecessor's
    model = state["model"]
    for epoch in range(len(state["scores"]) + 1, EPOCHS + 1):
        model.partial_fit(x_train, y_train, classes=list(range(10)))
        score = float(model.score(x_val, y_val))
        state["scores"].append(score)
        ckpt.save(state)
        trial.report(score, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return state["scores"][-1]
