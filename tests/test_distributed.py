"""Data-parallel trials on CPU (gloo): N processes train as one, with the same curve as one
process at the same effective batch."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

from hpo.trainer import Group, TrainConfig, fit

pytestmark = pytest.mark.slow

#: No batch norm, no dropout, no augmentation: the only differences between 1 and 2 processes
#: are the order of float additions. SGD: its step scales with the gradient (Adam's would not
#: show a gradient off by a constant factor).
MODULE = """
import torch
from torch import nn
from torch.utils.data import TensorDataset


def blobs(val_fraction):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(203) % 4  # 203: uneven shards and a short last batch
    x = torch.randn(4, 12, generator=g)[y] * 0.4 + torch.randn(203, 12, generator=g)
    return TensorDataset(x[40:], y[40:]), TensorDataset(x[:40], y[:40])


def mlp(num_classes):
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, num_classes))
"""


def _config(module: str, **train: Any) -> TrainConfig:
    base = {"model": f"{module}:mlp", "dataset": f"{module}:blobs", "epochs": 3}
    return TrainConfig.model_validate(
        {**base, "batch_size": 32, "lr": 0.2, "optimizer": "sgd", **train}
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, root: str, module: str, train: dict[str, Any]) -> None:
    import torch.distributed as dist

    sys.path.insert(0, root)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=timedelta(seconds=60))
    try:
        history: list[dict[str, float]] = []
        fit(
            _config(module, **train),
            torch.device("cpu"),
            lambda epoch, metrics: history.append(metrics),
            group=Group(rank, world),
        )
        torch.save(history, Path(root) / f"rank{rank}.pt")
        # Tear down together: a rank whose peer already left can abort in gloo's destructor
        # ("terminate called without an active exception", exit -6; once in .ci/run).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _run_group(tmp_path: Path, module: str, world: int, **train: Any) -> list[list[dict]]:
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [
        ctx.Process(target=_rank, args=(r, world, port, str(tmp_path), module, train))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=180)
    assert [p.exitcode for p in procs] == [0] * world
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"ddp_{os.getpid()}_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.parametrize("accumulate", [1, 2])
def test_two_processes_give_the_curve_of_one_at_the_same_effective_batch(
    tmp_path: Path, module: str, accumulate: int
) -> None:
    torch.set_num_threads(1)
    one: list[dict[str, float]] = []
    fit(
        _config(module, accumulate=accumulate),
        torch.device("cpu"),
        lambda epoch, metrics: one.append(metrics),
    )
    ranks = _run_group(tmp_path, module, 2, accumulate=accumulate)

    keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr")
    for a, b in zip(*ranks, strict=True):  # every rank reports the whole epoch's numbers
        assert [a[k] for k in keys] == [b[k] for k in keys]
    for single, double in zip(one, ranks[0], strict=True):
        for key in keys:
            assert double[key] == pytest.approx(single[key], rel=1e-4, abs=1e-6), key


def test_shares_cover_a_batch_once() -> None:
    for n in (1, 5, 32, 33):
        for world in (2, 3):
            got = [i for r in range(world) for i in range(n)[Group(r, world).share(n)]]
            assert got == list(range(n))
