"""Worker planning: one process per GPU with CUDA_VISIBLE_DEVICES pinned, else N CPU workers."""

from __future__ import annotations

import pytest

from hpo.dispatch import detect_gpus, plan_workers
from hpo.errors import SpecError


def test_one_worker_per_gpu_pinned() -> None:
    plans = plan_workers("auto", None, None, ["0", "1", "2", "3"], cpu_count=16)
    assert [p.env()["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "1", "2", "3"]
    assert all(p.device == "cuda" and p.threads == 4 for p in plans)


def test_gpu_subset_and_workers_spread_over_gpus() -> None:
    plans = plan_workers("auto", "1,3", 4, ["0", "1", "2", "3"], cpu_count=8)
    assert [p.gpu for p in plans] == ["1", "3", "1", "3"]


def test_cpu_workers_hide_gpus() -> None:
    plans = plan_workers("cpu", None, 3, ["0"], cpu_count=6)
    assert len(plans) == 3 and all(p.device == "cpu" for p in plans)
    assert all(p.env()["CUDA_VISIBLE_DEVICES"] == "" and p.threads == 2 for p in plans)


def test_no_gpu_falls_back_to_cpu_workers() -> None:
    plans = plan_workers("auto", None, None, [], cpu_count=2)
    assert [p.device for p in plans] == ["cpu", "cpu"]


@pytest.mark.parametrize(
    ("device", "gpus", "workers", "detected", "message"),
    [
        ("cuda", None, None, [], "no GPU found"),
        ("auto", "5", None, ["0", "1"], "--gpus: 5 not among"),
        ("tpu", None, None, [], "--device"),
        ("cpu", None, 0, [], "--workers"),
    ],
)
def test_bad_plans_are_usage_errors(device, gpus, workers, detected, message) -> None:
    with pytest.raises(SpecError, match=message):
        plan_workers(device, gpus, workers, detected, cpu_count=4)


def test_detect_gpus_honours_cuda_visible_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert detect_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus() == []


def _end(trial: int, state: str = "FAIL", reason: str | None = None, root: int | None = None):
    return {
        "event": "trial_end",
        "trial": trial,
        "root": trial if root is None else root,
        "state": state,
        "reason": reason,
    }


BOOM = "error: RuntimeError: boom"


def test_first_failures_stop_after_three_trials_failed_alike_retries_counting_once() -> None:
    from hpo.dispatch.watch import FirstFailures

    watch = FirstFailures(3)
    events = [
        _end(0, reason=BOOM),
        _end(3, reason=BOOM, root=0),  # a retry: the same trial, not a second one
        _end(4, reason="interrupted: stopped at epoch 2"),  # not the trial's own failure
        _end(1, reason=BOOM),
        _end(5, reason=BOOM, root=0),
    ]
    assert [watch.see(e) for e in events] == [None] * 5
    assert watch.see(_end(2, reason=BOOM)) == "RuntimeError: boom"
    assert watch.see(_end(6, reason=BOOM)) is None  # said once


@pytest.mark.parametrize(
    "second",
    [
        _end(1, "COMPLETE"),
        _end(1, "PRUNED"),
        _end(1, reason="error: RuntimeError: boom at x=0.7"),  # another message
        _end(1, reason="oom: CUDA out of memory"),  # the parameters' doing, not the code's
    ],
)
def test_first_failures_never_stop_once_a_trial_went_otherwise(second: dict) -> None:
    from hpo.dispatch.watch import FirstFailures

    watch = FirstFailures(3)
    assert watch.see(_end(0, reason=BOOM)) is None
    assert watch.see(second) is None
    assert all(watch.see(_end(n, reason=BOOM)) is None for n in range(2, 8))


def test_gpus_per_trial_pins_each_group_to_its_own_gpus() -> None:
    plans = plan_workers("auto", None, None, ["0", "1", "2", "3", "4"], cpu_count=16, per_trial=2)
    assert [p.env()["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0,1", "2,3"]  # GPU 4 idles
    assert all(p.ranks == 2 and p.threads == 4 for p in plans)  # 16 cores over 4 processes


def test_fewer_gpus_than_one_trial_takes_is_a_usage_error() -> None:
    with pytest.raises(SpecError, match=r"gpus_per_trial: 4 GPUs per trial, but this node has 2"):
        plan_workers("auto", None, None, ["0", "1"], cpu_count=4, per_trial=4)


def test_cpu_groups_split_the_default_workers_and_the_threads() -> None:
    plans = plan_workers("cpu", None, None, [], cpu_count=4, per_trial=2)
    assert [(p.device, p.ranks, p.threads) for p in plans] == [("cpu", 2, 1)] * 2
    one = plan_workers("cpu", None, 1, [], cpu_count=4, per_trial=2)
    assert [(p.ranks, p.threads) for p in one] == [(2, 2)]  # --workers counts groups
