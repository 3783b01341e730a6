"""The ``hpo`` command line: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand

from hpo.errors import HpoError, SpecError, StorageError
from hpo.keys import ATTR_FAIL_REASON
from hpo.progress import STATES, fmt_params, fmt_values, make_progress
from hpo.study import quiet_optuna

app = typer.Typer(
    name="hpo",
    help="Hyperparameter optimization for GPU training (Optuna + PyTorch).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


class _Command(TyperCommand):
    """Typer's command, minus the ``<bool>`` it prints beside flags (``--help``, ``-v``) that
    take no value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


def _extra(module: str, extra: str, what: str) -> None:
    """Refuse ``what`` in one line naming the pip extra when ``module`` is not installed."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise SpecError(f"{what} needs the {extra!r} extra: pip install 'hpo[{extra}]'") from None


SpecArg = Annotated[Path, typer.Argument(help="study YAML file", show_default=False)]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage", help="storage URL (overrides HPO_STORAGE and the spec)", show_default=False
    ),
]
NameOpt = Annotated[str | None, typer.Option("--study-name", help="override the spec's study name")]
OptSpecArg = Annotated[
    Path | None, typer.Argument(help="study YAML file (or --study NAME)", show_default=False)
]
StudyOpt = Annotated[
    str | None,
    typer.Option("--study", "--study-name", help="study name (overrides the spec's)"),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="tracebacks and debug logs")]


def _errors(func: F) -> F:
    """Map hpo's errors to one red line and an exit code (2 bad input, 1 runtime)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose"))
        logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
        quiet_optuna()
        try:
            return func(*args, **kwargs)
        except HpoError as exc:
            if verbose:
                err.print_exception()
            for line in str(exc).splitlines():  # a Text: `[proxy]` in a message is no markup
                err.print(Text.assemble(("error:", "red"), " ", line), highlight=False)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.command(cls=_Command)
@_errors
def validate(spec_path: SpecArg, verbose: VerboseOpt = False) -> None:
    """Check a study file without running it (exit 2 on the first problem)."""
    from hpo.spec import load_objective, load_spec, objective_form
    from hpo.study import check_warm_start

    spec = load_spec(spec_path)
    mode = (
        f"objective {spec.objective} ({objective_form(load_objective(spec.objective))})"
        if spec.objective
        else f"{spec.train.model} on {spec.train.dataset}"
    )
    # A warm start's file is read and fitted here; a study is read when the run creates it.
    warm = check_warm_start(spec, str(spec_path)) if spec.warm_start else None
    out.print(
        f"{spec_path}: ok: study {spec.name!r}, {spec.sampler.type} sampler, "
        f"{spec.pruner.type} pruner, {_budget_text(spec)}, {len(spec.space)} parameters, "
        f"{mode}",
        highlight=False,
    )
    if warm:
        out.print(warm, highlight=False, markup=False)


def _budget_text(spec: Any) -> str:
    """The spec's budget in words: trials and/or epochs."""
    limits = [] if spec.n_trials is None else [f"{spec.n_trials} trials"]
    if spec.budget.max_epochs_total is not None:
        limits.append(f"{spec.budget.max_epochs_total} epochs")
    return " or ".join(limits)


@app.command(cls=_Command)
@_errors
def run(
    spec_path: SpecArg,
    storage: StorageOpt = None,
    study_name: NameOpt = None,
    n_trials: Annotated[
        int | None, typer.Option("--n-trials", min=1, help="total trial budget")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=0, help="seconds; no trial starts after")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="worker processes on this node")
    ] = None,
    gpus: Annotated[str | None, typer.Option("--gpus", help="'all' or ids like 0,1")] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    logs_dir: Annotated[Path, typer.Option("--logs-dir", help="worker logs")] = Path("hpo-logs"),
    artifacts: Annotated[
        str | None,
        typer.Option("--artifacts", help="checkpoint/artifact store: a shared path or s3://bucket"),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Create (or join) the study and run trials until its budget or timeout is spent."""
    from hpo.api import Overrides, flag, start

    overrides = Overrides(
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        workers=workers,
        gpus=gpus,
        device=device,
        logs_dir=logs_dir,
        artifacts=artifacts,
    )
    progress = make_progress(out)
    try:
        outcome = start(spec_path, overrides, progress, flag)
    finally:
        progress.close()
    _print_summary(outcome.summary, outcome.metric)
    if outcome.error:
        err.print(Text.assemble(("error:", "red"), " ", outcome.error), highlight=False)
    for path in outcome.failed_logs:
        err.print(f"a worker failed; its log: {path}", highlight=False)
    raise typer.Exit(outcome.exit_code)


def _storage_url(given: str | None) -> str:
    """The storage URL from ``--storage``, HPO_STORAGE or the embedded default."""
    from hpo.api import flag, storage_url

    return storage_url(given, None, None, flag)


def _target(spec_path: Path | None, storage: str | None, study: str | None) -> tuple[str, str]:
    """(storage URL, study name) from a spec file, or from ``--study`` and the storage alone."""
    from hpo.api import flag, resolve_spec, storage_url

    if spec_path is not None:
        spec, source = resolve_spec(spec_path, study, flag)
        return storage_url(storage, spec.storage, source, flag), spec.name
    if not study:
        raise SpecError("name the study: a study file, or --study NAME (with --storage URL)")
    return _storage_url(storage), study


def _print_summary(snap: Any, metric: str) -> None:
    table = Table(title="trials", box=None)
    for state in STATES:
        table.add_column(state.lower(), justify="right")
    table.add_row(*(str(snap.counts.get(s, 0)) for s in STATES))
    out.print(table)
    if snap.epochs is not None:
        spent = " (epoch budget spent)" if snap.epochs.spent else ""
        shown = f"epochs trained: {snap.epochs.used}/{snap.epochs.budget}{spent}"
        out.print(shown, highlight=False)
    _print_best(snap, metric)


def _metric_label(spec: Any) -> str:
    """The study's metric name, or its metrics' names joined (a multi-objective study)."""
    return ", ".join(m.name for m in spec.metrics)


def _print_best(snap: Any, metric: str) -> None:
    if snap.front:
        out.print(f"Pareto front ({metric}): {len(snap.front)} trials", highlight=False)
        for number, values, params in snap.front:
            shown = f"  trial {number}: {fmt_values(values, 6)}  [{fmt_params(params)}]"
            out.print(shown, highlight=False, markup=False)
    elif snap.best_value is None:
        out.print("no completed trial yet")
    else:
        out.print(
            f"best {metric}: {snap.best_value:.6g} (trial {snap.best_number})", highlight=False
        )
        out.print(f"best params: {fmt_params(snap.best_params)}", highlight=False)


@app.command(cls=_Command)
@_errors
def status(
    spec_path: SpecArg,
    storage: StorageOpt = None,
    study_name: NameOpt = None,
    last: Annotated[int, typer.Option("--last", help="show the last N trials")] = 20,
    verbose: VerboseOpt = False,
) -> None:
    """Trials by state, the best value and params, and the latest trials."""
    from hpo.api import flag, open_view
    from hpo.study import snapshot

    view = open_view(spec_path, storage, study_name, flag)
    now = view.status(last)
    out.print(f"study {view.name}  storage: {view.storage}", highlight=False, markup=False)
    out.print(_trials_table(now.latest, view.metric))
    of = "" if now.budget is None else f"/{now.budget}"
    out.print(f"{now.finished}{of} budget slots finished", highlight=False)
    if now.max_epochs is not None:
        out.print(f"{now.epochs}/{now.max_epochs} epochs trained", highlight=False)
    shown = "  ".join(f"{s.lower()} {now.slots.get(s, 0)}" for s in STATES)
    if now.retries:
        shown += f"  ({now.retries} {'retry' if now.retries == 1 else 'retries'})"
    out.print(shown, highlight=False, markup=False)
    if now.warm:
        out.print(
            f"warm start: {now.warm} earlier trials as history (not counted, never the best)",
            highlight=False,
        )
    _print_best(snapshot(view.study), view.metric)


def _trials_table(trials: list[Any], metric: str) -> Table:
    """One row per trial; the failure reason only on a failed trial (a retry that completed
    carries its predecessor's user attrs, ``fail_reason`` among them)."""
    table = Table(box=None)
    for col in ("#", "state", metric, "epochs", "seconds", "node/worker", "params", "reason"):
        table.add_column(col)
    for t in trials:
        secs = t.duration.total_seconds() if t.duration else None
        where = f"{t.user_attrs.get('node', '-')}/w{t.user_attrs.get('worker', '-')}"
        failed = t.state.name == "FAIL"
        cells = (
            str(t.number),
            t.state.name.lower(),
            fmt_values(t.values),
            str(t.user_attrs.get("epochs_run", "-")),
            f"{secs:.1f}" if secs else "-",
            where,
            fmt_params(t.params),
            str(t.user_attrs.get(ATTR_FAIL_REASON, "")) if failed else "",
        )
        table.add_row(*(Text(c) for c in cells))
    return table


@app.command(cls=_Command)
@_errors
def best(
    spec_path: SpecArg,
    storage: StorageOpt = None,
    study_name: NameOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    download: Annotated[
        Path | None, typer.Option("--download", help="fetch the best trial's weights into DIR")
    ] = None,
    artifacts: Annotated[
        str | None, typer.Option("--artifacts", help="artifact store (default: the spec's)")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """The best trial's value and parameters (and, with --download, its model weights).

    A study of several metrics has no single best trial: this shows its Pareto front, the
    trials no other trial beats on every metric. Only the study's own trials count, never
    the history a warm start copied in.
    """
    from hpo.api import flag, open_view
    from hpo.study import own_best, own_front

    view = open_view(spec_path, storage, study_name, flag)
    spec, study = view.spec, view.study
    assert spec is not None  # a study file was given
    # The study's own trials: warm-start history is an earlier study's result.
    best_one = None if spec.multi_objective else own_best(study)
    front = own_front(study) if spec.multi_objective else [best_one] if best_one else []
    if not front:
        raise StorageError(f"study {spec.name!r} has no completed trial yet")
    entries = [_best_record(t, spec) for t in front]
    if download is not None:
        from hpo.study import download_best, open_store, resolve_artifacts

        store = open_store(resolve_artifacts(artifacts, spec.artifacts.path))
        for trial, entry in zip(front, entries, strict=True):
            entry["weights"] = str(download_best(study, trial, store, download))
            err.print(
                f"best model of trial {trial.number} written to {entry['weights']}",
                highlight=False,
            )
    record: dict[str, Any] = {"study": spec.name, "storage": view.storage}
    if spec.multi_objective:
        record["metrics"] = [m.name for m in spec.metrics]
        record["directions"] = [m.direction for m in spec.metrics]
        record["pareto_front"] = entries
    else:
        record.update(metric=spec.metrics[0].name, direction=spec.metrics[0].direction)
        record.update(entries[0])
    if as_json:
        sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
        return
    out.print(f"study {spec.name}  storage: {record['storage']}", highlight=False, markup=False)
    if spec.multi_objective:
        label = _metric_label(spec)
        out.print(f"Pareto front ({label}): {len(front)} trials", highlight=False, markup=False)
    for t in front:
        out.print(f"trial {t.number}: {_named_values(t, spec)}", highlight=False, markup=False)
        out.print(f"params: {fmt_params(t.params)}", highlight=False, markup=False)


def _best_record(trial: Any, spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = (
        {"values": trial.values} if spec.multi_objective else {"value": trial.value}
    )
    return {
        "trial": trial.number,
        **values,
        "params": trial.params,
        # a completed retry carries its predecessor's fail_reason: not a reason for a best trial
        "user_attrs": {k: v for k, v in trial.user_attrs.items() if k != ATTR_FAIL_REASON},
    }


def _named_values(trial: Any, spec: Any) -> str:
    """``name = value`` for each of the study's metrics."""
    return ", ".join(f"{m.name} = {v:.6g}" for m, v in zip(spec.metrics, trial.values, strict=True))


@app.command(cls=_Command)
@_errors
def proxy(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option("--host", help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 13000,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the storage through Optuna's gRPC proxy (workers: --storage grpc://HOST:PORT)."""
    _extra("grpc", "proxy", "hpo proxy")
    _extra("google.protobuf", "proxy", "hpo proxy")
    from hpo.study import open_storage, redact, serve_proxy

    url = _storage_url(storage)
    if url.startswith("grpc://"):
        raise SpecError("--storage: the proxy serves a database URL, not another proxy")
    backend = open_storage(url)
    err.print(
        f"serving {redact(url)} on grpc://{host}:{port} (no TLS: keep it on a private network)",
        highlight=False,
    )
    serve_proxy(backend, host, port)


@app.command(cls=_Command)
@_errors
def dashboard(
    spec_path: OptSpecArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    host: Annotated[str, typer.Option("--host", help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="port")] = 8080,
    artifacts: Annotated[
        str | None,
        typer.Option("--artifacts", help="artifact store to serve (default: the spec's)"),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve optuna-dashboard on the study's storage (the embedded default too), until Ctrl-C."""
    from hpo.insight import start_dashboard
    from hpo.spec import ArtifactSpec, load_spec
    from hpo.study import resolve_artifacts

    if spec_path is None and not study:
        url, name = _storage_url(storage), None
    else:
        url, name = _target(spec_path, storage, study)
    spec_store = load_spec(spec_path).artifacts.path if spec_path else ArtifactSpec().path
    store = resolve_artifacts(artifacts, spec_store)
    board = start_dashboard(url, host, port, name, store)
    for line in board.how_to_reach():
        out.print(line, highlight=False, markup=False)
    out.print("Ctrl-C stops it", highlight=False)
    board.serve()


@app.command(cls=_Command)
@_errors
def report(
    spec_path: OptSpecArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="report folder")] = Path(
        "hpo-report"
    ),
    verbose: VerboseOpt = False,
) -> None:
    """Write report.html (plots, offline), PNGs, best_params.yaml and trials.csv."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # PNGs only, never a window
    from hpo.insight import write_report
    from hpo.study import find, redact

    url, name = _target(spec_path, storage, study)
    result = write_report(find(name, url), output, redact(url))
    for path in result.files:
        out.print(f"wrote {path}", highlight=False, markup=False)
    for plot, reason in result.skipped.items():
        out.print(f"skipped {plot}: {reason}", highlight=False, markup=False)


@app.command(cls=_Command)
@_errors
def export(
    spec_path: OptSpecArg = None,
    storage: StorageOpt = None,
    study: StudyOpt = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv | json (default: from -o, else csv)")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="file (default: standard output)")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Every trial with its params, value, state, duration and user attrs, as CSV or JSON."""
    from hpo.insight import Format, write_trials
    from hpo.study import find

    fmt = fmt or (output.suffix.lstrip(".") if output and output.suffix else "csv")
    if fmt not in ("csv", "json"):
        raise SpecError(f"--format: {fmt!r} is not csv or json")
    kind: Format = "json" if fmt == "json" else "csv"
    url, name = _target(spec_path, storage, study)
    found = find(name, url)
    if output is None:
        try:
            write_trials(found, sys.stdout, kind)
            sys.stdout.flush()
        except BrokenPipeError:  # `hpo export | head`: the reader has all it wants
            # Python would flush stdout again at exit and fail: point it at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    with open(output, "w", newline="") as stream:
        count = write_trials(found, stream, kind)
    err.print(f"wrote {count} trials to {output}", highlight=False, markup=False)


def main() -> None:
    """Console-script entry point."""
    app()
