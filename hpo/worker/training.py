"""The trainer path of a trial: resume from a checkpoint, checkpoint every epoch, keep the best
epoch's weights for the artifact store, and split the batch into micro-batches after an OOM."""

from __future__ import annotations

import gc
import logging
from typing import Any

from hpo.errors import TrialError
from hpo.spec import StudySpec, TrainConfig, trial_config
from hpo.study import TrialFiles
from hpo.trainer import is_oom
from hpo.worker.group import Leader, never
from hpo.worker.reporter import TrialReporter
from hpo.worker.values import Value

log = logging.getLogger(__name__)


def free_memory(device: str) -> None:
    """Collect garbage (tensors held by a failure's traceback) and return cached GPU memory."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def split_batch(config: TrainConfig) -> TrainConfig | None:
    """The same effective batch in micro-batches half (or 1/smallest factor) the size."""
    size = config.batch_size
    if not isinstance(size, int) or size < 2:
        return None
    factor = next(f for f in range(2, size + 1) if size % f == 0)
    return config.model_copy(
        update={"batch_size": size // factor, "accumulate": config.accumulate * factor}
    )


class _Checkpoints:
    """Saves every epoch's state (for resume) and keeps the trainer's best epoch (artifact).

    The best epoch is the trainer's decision (``state["best"]``): nothing is compared here.
    """

    def __init__(self, files: TrialFiles | None, key: int, spec: StudySpec) -> None:
        self.files, self.key = files, key
        self.enabled = files is not None and spec.artifacts.checkpoints
        self.best: dict[str, Any] | None = None

    def __call__(self, epoch: int, state: dict[str, Any]) -> None:
        if self.files is not None and self.enabled:
            self.files.save_checkpoint(self.key, state)
        self.best = state.get("best")

    def resume_state(self) -> dict[str, Any] | None:
        """The last checkpoint of a crashed predecessor, if any and readable."""
        if self.files is None or not self.enabled:
            return None
        try:
            return self.files.load_checkpoint(self.key)
        except Exception as exc:  # noqa: BLE001 - a bad checkpoint means starting over
            log.warning(
                "checkpoint of trial %d unreadable (%s): starting from epoch 1", self.key, exc
            )
            return None


def _deciding(reporter: TrialReporter, group: Leader) -> Any:
    """Rank 0's ``on_epoch``: report (which may prune or stop), then tell every rank."""

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        try:
            reporter.on_epoch(epoch, metrics)
        except BaseException:
            group.decide(stop=True)
            raise
        group.decide(stop=False)

    return on_epoch


def train_trial(
    params: dict[str, Any],
    reporter: TrialReporter,
    device: str,
    files: TrialFiles | None,
    key: int,
    group: Leader | None = None,
) -> Value:
    """Train one trial to its value; resumes a crashed predecessor from its last checkpoint.

    ``group``: this process is rank 0 of a data-parallel group (``gpus_per_trial`` > 1); every
    training run (the first, and each after an out-of-memory split) is sent to the other ranks.

    Raises:
        TrialError: out of memory with ``retry.on_oom: fail``, or at micro-batch size 1.
    """
    spec = reporter.spec
    config = trial_config(spec.train, params)
    reporter.last_step = config.epochs  # this trial's own, where `epochs` is in the space
    checkpoints = _Checkpoints(files, key, spec)
    resume = checkpoints.resume_state()
    if resume is not None:
        reporter.replay(resume["history"])  # the retry's curve continues its predecessor's
        reporter.attrs["resumed_from_epoch"] = len(resume["history"])
        # Now, not with the trial's other attrs at its end: a retry killed again still says so.
        reporter.trial.set_user_attr("resumed_from_epoch", len(resume["history"]))
    while True:
        outcome = _fit_once(config, reporter, device, checkpoints, resume, group)
        if outcome is not None:
            return outcome
        smaller = split_batch(config) if spec.retry.on_oom == "accumulate" else None
        if smaller is None:
            raise TrialError("oom", f"out of memory at batch_size {config.batch_size}")
        free_memory(device)  # the OOM's traceback is gone now: its tensors can be collected
        config, resume = smaller, None
        reporter.restart()
        reporter.attrs.update(
            oom_restarts=reporter.attrs.get("oom_restarts", 0) + 1,
            batch_size=config.batch_size,
            accumulate=config.accumulate,
        )
        log.warning(
            "trial %d: out of memory; restarting with %d x %d micro-batches",
            reporter.trial.number,
            config.accumulate,
            config.batch_size,
        )


def _fit_once(
    config: TrainConfig,
    reporter: TrialReporter,
    device: str,
    checkpoints: _Checkpoints,
    resume: dict[str, Any] | None,
    group: Leader | None = None,
) -> Value | None:
    """One training run; None when it ran out of memory (the caller shrinks the batch)."""
    import torch

    from hpo.trainer import fit

    spec = reporter.spec
    checkpoints.best = resume.get("best") if resume else None
    monitor = (spec.metrics[0].name, spec.metrics[0].direction)
    on_epoch, should_stop = reporter.on_epoch, reporter.stop.is_set
    if group is not None:  # every rank runs the same job; rank 0's checkpoint is everyone's
        group.run({"config": config, "monitor": monitor, "resume": resume})
        on_epoch, should_stop = _deciding(reporter, group), never
    try:
        result = fit(
            config,
            torch.device(device),
            on_epoch,
            should_stop=should_stop,
            monitor=monitor,
            resume=resume,
            on_checkpoint=checkpoints,
            group=None if group is None else group.group,
        )
        if group is not None:
            group.finished()
    except Exception as exc:
        # Out of step: a dead peer ends this worker here; else the peers restart.
        peer_oom = group is not None and not group.synced and group.recover()
        if (is_oom(exc) or peer_oom) and spec.retry.on_oom == "accumulate":
            return None
        if peer_oom:
            raise TrialError("oom", "out of memory on another rank of the group") from exc
        raise
    finally:
        reporter.best_model = checkpoints.best
    # Early stopping (patience) ends a trial normally: it completes with its best/last value.
    reporter.attrs.update(early_stopped=result.stopped_early, best_epoch=result.best_epoch)
    if config.batch_size == "auto":
        reporter.attrs["batch_size"] = result.batch_size
    return reporter.final_value(best_epoch=result.best_epoch)
