"""``hpo report``: one folder that says what a study found, readable offline.

``report.html`` (self-contained: plotly's JavaScript is inlined, no network needed), a PNG of
every plot, ``best_params.yaml`` (the best trial's parameters, ready to paste under a spec's
``train:``; for a study of several metrics ``pareto_front.yaml``, the Pareto-optimal trials'
values and parameters) and ``trials.csv``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from hpo.insight.export import write_trials
from hpo.insight.plots import plotly_figure, plots_for, save_png, skip_reason
from hpo.keys import ATTR_OBJECTIVE, ATTR_WARM
from hpo.study import (
    ATTR_DESCRIPTION,
    ATTR_NODES,
    is_warm,
    metric_names,
    own_best,
    own_front,
    system_attrs,
)
from hpo.trainer import TrainConfig


@dataclass
class Report:
    """What ``write_report`` wrote, and the plots it skipped with the reason."""

    directory: Path
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def write_report(study: optuna.Study, directory: Path, storage: str = "") -> Report:
    """Write the report of ``study`` into ``directory`` (created if needed).

    Args:
        study: the study to report on, any state (plots it cannot draw yet are skipped).
        directory: the output folder; existing report files in it are replaced.
        storage: the storage URL shown in the report, already redacted.
    """
    directory.mkdir(parents=True, exist_ok=True)
    report = Report(directory)
    trials = study.get_trials(deepcopy=False)
    attrs = system_attrs(study)
    names = metric_names(study)
    sections = []
    for plot in plots_for(study):
        reason = skip_reason(plot, trials)
        if reason:
            report.skipped[plot.name] = reason
            sections.append(
                _section(plot.title, plot.caption, f"<p class=skip>Skipped: {_e(reason)}.</p>")
            )
            continue
        figure = plotly_figure(plot, study, names)
        body = figure.to_html(full_html=False, include_plotlyjs=False, div_id=plot.name)
        sections.append(_section(plot.title, plot.caption, body))
        report.files.append(save_png(plot, study, names, directory / f"{plot.name}.png"))
    page = _page(study, trials, attrs, names, storage, sections)
    report.files.insert(0, _write(directory / "report.html", page))
    hint = _params_hint(attrs, trials)
    if len(names) > 1:
        if _front(study):
            front = pareto_yaml(study, names, hint)
            report.files.append(_write(directory / "pareto_front.yaml", front))
    elif (best := _best(study)) is not None:
        best_yaml = best_params_yaml(study, best, names[0], hint)
        report.files.append(_write(directory / "best_params.yaml", best_yaml))
    with open(directory / "trials.csv", "w", newline="") as stream:
        write_trials(study, stream, "csv")
    report.files.append(directory / "trials.csv")
    return report


#: Where a trainer study's best params go, and a custom objective's.
TRAIN_HINT = "these values go under the spec's `train:` (or replace the `space:` entries)"
OBJECTIVE_HINT = (
    "the params {objective} is called with (`params`, or `trial.params`); "
    "`warm_start: {{from: <this file>}}` runs them first in a new study"
)


def _params_hint(attrs: dict[str, Any], trials: list[FrozenTrial]) -> str:
    """What to do with the best params: the trainer's go under ``train:``, a custom
    objective's are its arguments. A study from before hpo recorded its objective is told by
    its params: all of them ``train:`` keys, or not."""
    objective = attrs.get(ATTR_OBJECTIVE)
    if objective is None:
        names = {name for t in trials for name in t.params}
        objective = "" if names <= set(TrainConfig.model_fields) else "your objective"
    return OBJECTIVE_HINT.format(objective=objective) if objective else TRAIN_HINT


def best_params_yaml(
    study: optuna.Study, best: FrozenTrial, metric: str, hint: str = TRAIN_HINT
) -> str:
    """The best trial's parameters as YAML, with a comment saying where they come from and
    where they go (``hint``)."""
    head = (
        f"# best trial of study {study.study_name}: trial {best.number}, "
        f"{metric} = {best.value:.6g} ({study.direction.name.lower()})\n"
        f"# {hint}\n"
    )
    return head + yaml.safe_dump(dict(best.params), sort_keys=False)


def pareto_yaml(study: optuna.Study, names: list[str], hint: str = TRAIN_HINT) -> str:
    """The Pareto-optimal trials (values by metric, parameters) as YAML, with a comment."""
    directions = ", ".join(
        f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True)
    )
    head = (
        f"# Pareto front of study {study.study_name}: {directions}\n"
        f"# no other trial is better on every metric; pick one: {hint}\n"
    )
    front = [
        {
            "trial": t.number,
            "values": dict(zip(names, t.values, strict=True)),
            "params": dict(t.params),
        }
        for t in _front(study)
    ]
    return head + yaml.safe_dump(front, sort_keys=False)


def _front(study: optuna.Study) -> list[FrozenTrial]:
    return own_front(study)  # the study's own trials: warm-start history is not its result


def _best(study: optuna.Study) -> FrozenTrial | None:
    return own_best(study)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _e(value: Any) -> str:
    return html.escape(str(value))


def _section(title: str, caption: str, body: str) -> str:
    return f"<section><h2>{_e(title)}</h2><p class=caption>{_e(caption)}</p>{body}</section>"


def _summary_rows(
    study: optuna.Study,
    trials: list[FrozenTrial],
    attrs: dict[str, Any],
    names: list[str],
    storage: str,
) -> list[tuple[str, str]]:
    own = [t for t in trials if not is_warm(t)]
    counts = {s.name.lower(): sum(t.state == s for t in own) for s in TrialState}
    metrics = ", ".join(
        f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions, strict=True)
    )
    rows = [
        ("metrics" if len(names) > 1 else "metric", metrics),
        ("trials", ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "none"),
    ]
    warm = attrs.get(ATTR_WARM)
    if isinstance(warm, dict) and len(own) < len(trials):
        rows.append(
            (
                "warm start",
                f"{len(trials) - len(own)} trials of {warm.get('source')} as history "
                "(in the plots, not in the counts or the best)",
            )
        )
    if storage:
        rows.append(("storage", storage))
    rows += _best_rows(study, names)
    for node in attrs.get(ATTR_NODES, []):
        rows.append(
            ("started", f"{node.get('started')} on {node.get('node')}: {node.get('command')}")
        )
    return rows


def _best_rows(study: optuna.Study, names: list[str]) -> list[tuple[str, str]]:
    """The best trial and its params; with several metrics, one row per Pareto-optimal trial."""
    if len(names) > 1:
        return [
            (
                f"Pareto trial {t.number}",
                ", ".join(f"{n}={v:.6g}" for n, v in zip(names, t.values, strict=True))
                + "; "
                + ", ".join(f"{k}={v!r}" for k, v in t.params.items()),
            )
            for t in _front(study)
        ]
    best = _best(study)
    if best is None:
        return []
    params = ", ".join(f"{k}={v!r}" for k, v in best.params.items())
    return [("best", f"{best.value:.6g} (trial {best.number})"), ("best params", params)]


def _page(
    study: optuna.Study,
    trials: list[FrozenTrial],
    attrs: dict[str, Any],
    names: list[str],
    storage: str,
    sections: list[str],
) -> str:
    from plotly.offline import get_plotlyjs

    rows = "".join(
        f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>"
        for k, v in _summary_rows(study, trials, attrs, names, storage)
    )
    description = attrs.get(ATTR_DESCRIPTION) or ""
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        f"<!doctype html><html><head><meta charset=utf-8>"
        f"<title>hpo report: {_e(study.study_name)}</title><style>{_CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>Study {_e(study.study_name)}</h1><p>{_e(description)}</p>"
        f"<table class=summary>{rows}</table>{''.join(sections)}"
        f"<footer>hpo report, {generated}</footer></body></html>\n"
    )


_CSS = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
    "table.summary th{text-align:left;padding-right:1em;vertical-align:top}"
    ".caption{color:#555}.skip{color:#a60}footer{color:#888;margin-top:3em}"
)
