"""The ``hpo`` command line: parses arguments, calls the library, prints. No logic of its own."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from hpo import console_log
from hpo.errors import HpoError, SpecError, StorageError
from hpo.keys import ATTR_FAIL_REASON
from hpo.progress import fmt_params, fmt_values, make_progress
from hpo.study import slot_line
from hpo.view import Best, ParetoTrial


class _Group(TyperGroup):
    """Typer's group, with usage errors (a bad option value, an unknown option or command)
    printed as one line ``error: ...`` (exit 2), as every other error, not click's usage
    block or typer's box."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        given = (args, prog_name, complete_var)
        if not standalone_mode:
            return super().main(*given, False, windows_expand_args, **extra)
        try:
            code = super().main(*given, False, windows_expand_args, **extra)
        except Exception as exc:
            if not console_log.usage_error(exc):
                raise
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]  # `hpo` alone: the help was asked for
            else:
                line = console_log.usage_line(exc)
                err.print(Text.assemble(("error:", "red"), " ", line), highlight=False)
            sys.exit(getattr(exc, "exit_code", 2))
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="hpo",
    cls=_Group,
    help="Hyperparameter optimization for GPU training (Optuna + PyTorch).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup: what is printed holds user values (params, names, paths, messages), which rich
# would read as markup (a choice "[bold]a[/bold]" would print as "a"); styles come from Text.
out = Console(soft_wrap=True, markup=False)
err = Console(stderr=True, soft_wrap=True, markup=False)

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
        console_log.install(err, verbose)  # warnings print as `warning: ...`, like errors
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
    from hpo.api import validate as check

    out.print(check(spec_path), highlight=False, markup=False)


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


def _print_summary(snap: Any, metric: str) -> None:
    # The same slot count as the live header and `hpo status`.
    out.print(slot_line(snap.slots, snap.budget, snap.retries), highlight=False)
    if snap.epochs is not None:
        spent = " (epoch budget spent)" if snap.epochs.spent else ""
        shown = f"epochs trained: {snap.epochs.used}/{snap.epochs.budget}{spent}"
        out.print(shown, highlight=False)
    found = snap.best_value is not None
    _print_best(
        snap.front, (snap.best_value, snap.best_number, snap.best_params) if found else None, metric
    )


def _print_best(front: Any, best: tuple[float, Any, dict[str, Any]] | None, metric: str) -> None:
    """The Pareto front, ``(number, values, params)`` each; else the best, (value, number,
    params); else none yet."""
    if front:
        out.print(f"Pareto front ({metric}): {len(front)} trials", highlight=False)
        for number, values, trial_params in front:
            shown = f"  trial {number}: {fmt_values(values, 6)}  [{fmt_params(trial_params)}]"
            out.print(shown, highlight=False, markup=False)
    elif best is None:
        out.print("no completed trial yet")
    else:
        value, number, params = best
        out.print(f"best {metric}: {value:.6g} (trial {number})", highlight=False)
        out.print(f"best params: {fmt_params(params)}", highlight=False)


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

    view = open_view(spec_path, storage, study_name, flag)
    now = view.status(last)
    out.print(f"study {view.name}  storage: {view.storage}", highlight=False, markup=False)
    out.print(_trials_table(now.latest, view.metric))
    of = "" if now.budget is None else f"/{now.budget}"
    out.print(f"{now.finished}{of} budget slots finished", highlight=False)
    if now.max_epochs is not None:
        out.print(f"{now.epochs}/{now.max_epochs} epochs trained", highlight=False)
    out.print(slot_line(now.slots, now.budget, now.retries), highlight=False)
    if now.warm:
        out.print(
            f"warm start: {now.warm} earlier trials as history (not counted, never the best)",
            highlight=False,
        )
    front = [(p.number, p.values, p.params) for p in now.front]
    best = (now.best.value, now.best.number, now.best.params) if now.best else None
    _print_best(front, best, view.metric)


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

    view = open_view(spec_path, storage, study_name, flag)
    spec = view.spec
    assert spec is not None  # a study file was given
    # The study's own trials: warm-start history is an earlier study's result.
    front: list[Best | ParetoTrial] = [*view.front()] if spec.multi_objective else [view.best()]
    if not front:
        raise StorageError(f"study {spec.name!r} has no completed trial yet")
    entries = [_best_record(t) for t in front]
    if download is not None:
        for trial, entry in zip(front, entries, strict=True):
            entry["weights"] = str(view.best_model(download, artifacts, trial.number))
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
        label = view.metric
        out.print(f"Pareto front ({label}): {len(front)} trials", highlight=False, markup=False)
    for t in front:
        values = t.values if isinstance(t, ParetoTrial) else (t.value,)
        named = ", ".join(f"{m.name} = {v:.6g}" for m, v in zip(spec.metrics, values, strict=True))
        out.print(f"trial {t.number}: {named}", highlight=False, markup=False)
        out.print(f"params: {fmt_params(t.params)}", highlight=False, markup=False)


def _best_record(best: Best | ParetoTrial) -> dict[str, Any]:
    value: dict[str, Any] = (
        {"values": list(best.values)} if isinstance(best, ParetoTrial) else {"value": best.value}
    )
    return {"trial": best.number, **value, "params": best.params, "user_attrs": best.user_attrs}


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
    from hpo.api import flag
    from hpo.api import proxy as open_proxy

    served = open_proxy(storage, host, port, flag)
    err.print(
        f"serving {served.storage} on grpc://{host}:{port} (no TLS: keep it on a private network)",
        highlight=False,
    )
    served.serve()


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
    from hpo.api import dashboard as start
    from hpo.api import flag

    board = start(
        spec_path, storage, study_name=study, host=host, port=port, artifacts=artifacts, naming=flag
    )
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
    from hpo.api import flag, open_view

    result = open_view(spec_path, storage, study, flag).report(output)
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
    from hpo.api import flag, open_view

    fmt = fmt or (output.suffix.lstrip(".") if output and output.suffix else "csv")
    if fmt not in ("csv", "json"):
        raise SpecError(f"--format: {fmt!r} is not csv or json")
    view = open_view(spec_path, storage, study, flag)
    if output is None:
        try:
            view.export(sys.stdout, fmt)
            sys.stdout.flush()
        except BrokenPipeError:  # `hpo export | head`: the reader has all it wants
            # Python would flush stdout again at exit and fail: point it at /dev/null first.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    with open(output, "w", newline="") as stream:
        count = view.export(stream, fmt)
    err.print(f"wrote {count} trials to {output}", highlight=False, markup=False)


def main() -> None:
    """Console-script entry point."""
    app()
