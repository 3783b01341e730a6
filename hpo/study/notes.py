"""What ran a study: each node's command line, kept on the study for whoever reads it later.

Two places, for two readers. The study system attr ``hpo:nodes`` holds one record per
``hpo run`` that created or joined the study (node, command line, working directory, start
time), for tools and ``hpo report``. The study's optuna-dashboard note shows the spec's
description and the same commands to a person browsing the dashboard; hpo rewrites that note
only while nobody has edited it, so a note written by hand is never overwritten.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna

from hpo.keys import ATTR_NODES
from hpo.spec import AshaSpec, HyperbandSpec, StudySpec, describe_metrics
from hpo.study._optuna import study_id_of
from hpo.study.handle import ATTR_DESCRIPTION, StudyHandle
from hpo.study.storage.connect import redact, study_lock

#: Records kept in ``hpo:nodes`` (the oldest are dropped), and shown in the note.
MAX_NODES = 100
NOTE_NODES = 20


def redact_command(argv: Sequence[str]) -> str:
    """``argv`` as one shell line, any URL's password replaced by ``***``.

    ``argv[0]`` is shortened to the program name (``python -m hpo`` for ``.../hpo/__main__.py``).
    """
    if not argv:
        return ""
    prog = Path(argv[0])
    head = [f"python -m {prog.parent.name}"] if prog.name == "__main__.py" else [prog.name]
    rest = [redact(arg) if "://" in arg else arg for arg in argv[1:]]
    return " ".join(head + [shlex.quote(arg) for arg in rest])


def describe_setup(spec: StudySpec, budget: int | None, max_epochs: int | None = None) -> str:
    """How the study runs, in one Markdown line: sampler, pruner, budget (trials, or None for
    no trial limit; epochs), metric."""
    sampler = f"`{spec.sampler.type}` sampler"
    seed = getattr(spec.sampler, "seed", None)
    if seed is not None:
        sampler += f" (seed {seed})"
    if spec.multi_fidelity:
        sampler += ", multi-fidelity"
    pruner = f"`{spec.pruner.type}` pruner"
    if spec.max_resource and isinstance(spec.pruner, AshaSpec | HyperbandSpec):
        rf = spec.pruner.reduction_factor
        pruner += f" (epochs {spec.min_resource}..{spec.max_resource}, reduction factor {rf})"
    limits = [] if budget is None else [f"{budget} trials"]
    if max_epochs is not None:
        limits.append(f"{max_epochs} epochs")
    if spec.budget.timeout:
        limits.append(f"{spec.budget.timeout:g} s")
    line = f"**Search:** {sampler}, {pruner}; budget {', '.join(limits)}; "
    line += describe_metrics(spec.metrics)
    warm = spec.warm_start
    if warm is not None:
        source = f"study `{warm.study}`" if warm.study else f"`{Path(str(warm.from_)).name}`"
        line += f"; warm start from {source} (history; its best {warm.top_k} run first)"
    return line


def record_node(
    handle: StudyHandle, node: str, argv: Sequence[str], setup: str = ""
) -> dict[str, Any]:
    """Append this node's start to the study's ``hpo:nodes`` and refresh the dashboard note.

    Done under the study's cross-node lock, since several nodes may join at the same moment.

    Args:
        handle: the study just prepared by ``hpo.study.prepare``.
        node: this node's name.
        argv: the command line that started this node (``sys.argv``); passwords are redacted.
        setup: how the study runs (:func:`describe_setup`), shown in the note.

    Returns:
        The record appended.
    """
    entry = {
        "node": node,
        "command": redact_command(argv),
        "cwd": os.getcwd(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    study, storage = handle.study, handle.storage
    with study_lock(storage, study.study_name):
        attrs = storage.get_study_system_attrs(study_id_of(study))
        before: list[dict[str, Any]] = list(attrs.get(ATTR_NODES, []))
        after = (before + [entry])[-MAX_NODES:]
        storage.set_study_system_attr(study_id_of(study), ATTR_NODES, after)
        description = str(attrs.get(ATTR_DESCRIPTION, ""))
        previous = note_body(study.study_name, description, before, setup)
        _refresh_note(study, previous, note_body(study.study_name, description, after, setup))
    return entry


def note_body(name: str, description: str, nodes: list[dict[str, Any]], setup: str = "") -> str:
    """The dashboard note (Markdown): the description, how the study runs and the latest
    node commands."""
    lines = [f"## {name}", "", description.strip() or "_no description in the spec_", ""]
    if setup:
        lines += [setup, ""]
    if nodes:
        lines += [f"**Nodes:** {len({n.get('node') for n in nodes})} ({len(nodes)} starts)", ""]
    if nodes:
        lines += ["**Started by** (newest last)", "", "| started (UTC) | node | command |"]
        lines.append("|---|---|---|")
        for n in nodes[-NOTE_NODES:]:
            command = str(n.get("command", "")).replace("`", "'").replace("|", "\\|")
            lines.append(f"| {n.get('started', '')} | {n.get('node', '')} | `{command}` |")
        if len(nodes) > NOTE_NODES:
            lines.append(f"\n{len(nodes) - NOTE_NODES} earlier starts are in `hpo:nodes`.")
    return "\n".join(lines) + "\n"


def _refresh_note(study: optuna.Study, previous: str, body: str) -> None:
    get_note, save_note = _note_functions()
    # Only while nobody edited hpo's note in the dashboard. A node whose setup line differs
    # (another hpo version) finds a note it did not write and leaves it.
    if get_note(study) in ("", previous):
        save_note(study, body)


@functools.cache
def _note_functions() -> tuple[Any, Any]:
    """optuna-dashboard's ``get_note`` and ``save_note``, from its ``_note`` module alone.

    Importing the ``optuna_dashboard`` package loads its web app, plotting and scikit-learn
    (seconds of CPU on every ``hpo run`` for two small functions); ``_note.py`` itself needs
    only Optuna. Where that file cannot be loaded on its own, the package is imported.
    """
    try:
        package = importlib.util.find_spec("optuna_dashboard")
        assert package is not None and package.submodule_search_locations
        path = Path(next(iter(package.submodule_search_locations))) / "_note.py"
        spec = importlib.util.spec_from_file_location("hpo._dashboard_note", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.get_note, module.save_note
    except Exception:  # noqa: BLE001 - a layout change upstream: the slow, public path
        from optuna_dashboard import get_note, save_note

        return get_note, save_note
