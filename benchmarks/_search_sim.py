"""Run a method on a task with W workers, epoch by epoch, and account for every epoch.

Workers advance in lock step, one epoch each per tick (epochs are the clock, so the result
does not depend on machine load): an idle worker asks the method for a job, trains its next
epoch, reports it, and tells the method once the job is pruned or has trained its budget.
With one worker this is a sequential search; with four it is an asynchronous fleet, where
methods are asked for new work while other jobs are still running.

What a search has found is its best fully trained configuration (a trial that ran all its
epochs, or a fixed-budget job at the maximum budget): its best epoch's validation accuracy,
the value hpo records for a completed trial. Epochs of pruned or shorter jobs are charged but
never count as reaching the target: a spike at epoch 2 of a stopped trial is not a model a
user can take away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from _search_methods import Job, Method
from _search_tasks import Curve, Task


@dataclass
class Outcome:
    best: float | None = None  # best metric of a fully trained configuration
    epochs: int = 0  # epochs trained, all workers
    jobs: int = 0
    seconds: float = 0.0  # training seconds charged + the method's own ask/tell time
    overhead: float = 0.0  # the method's ask/tell seconds
    epochs_to_target: int | None = None  # epochs trained when the target was first reached
    ticks_to_target: int | None = None  # wall-clock epochs (ticks) at that point
    seconds_to_target: float | None = None
    busiest_worker_epochs: int | None = None  # hpo run: the most one worker trained by then


def simulate(
    task: Task, method: Method, workers: int, budget: int, target: float | None = None
) -> Outcome:
    """Search until ``budget`` epochs are spent, or (with ``target``) the target is reached."""
    out = Outcome()
    running: list[tuple[Job, Curve] | None] = [None] * workers
    tick = 0
    while out.epochs < budget and out.epochs_to_target is None:
        tick += 1
        for w in range(workers):
            if out.epochs >= budget:
                break
            if running[w] is None:
                started = time.perf_counter()
                job = method.ask_for(w)  # hpo:per-worker: the worker's own sampler
                out.overhead += time.perf_counter() - started
                out.jobs += 1
                running[w] = job, task.curve(job.params)
            job, curve = running[w]  # type: ignore[misc]
            epoch = len(job.values) + 1
            value, seconds = curve.at(epoch)
            out.epochs += 1
            out.seconds += seconds
            full = epoch == task.max_epochs  # a fully trained configuration: its result counts
            if full:
                done = task.best(job.values + [value])
                out.best = done if out.best is None else task.best([out.best, done])
                reached = target is not None and task.reaches(done, target)
                if reached and out.epochs_to_target is None:
                    out.epochs_to_target = out.epochs
                    out.ticks_to_target = tick
                    out.seconds_to_target = out.seconds + out.overhead
            started = time.perf_counter()
            if job.report(epoch, value) or epoch >= job.budget:
                method.tell(job)
                running[w] = None
            out.overhead += time.perf_counter() - started
    out.seconds += out.overhead
    return out
