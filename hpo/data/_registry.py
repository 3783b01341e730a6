"""The explicit name -> builder table, and the two entry points."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.data.augment import Augment
from hpo.userfn import is_ref

if TYPE_CHECKING:
    from torch.utils.data import Dataset


@dataclass(frozen=True)
class DataOptions:
    """What a dataset builder needs to know; filled from the training config."""

    data_dir: str = "./data"
    download: bool = True
    image_size: int | None = None
    val_fraction: float = 0.2
    num_classes: int | None = None
    samples: int = 512
    augment: Augment | None = None  # file datasets: augment the train split while decoding
    raw: bool = False  # file datasets: uint8 samples, normalised later (by the trainer)
    flowers102_split: str = "large_train"  # or "official"; see hpo.data._files.flowers102
    # A user's dataset function (module:function) gets what it declares from these:
    args: Mapping[str, Any] = field(default_factory=dict, hash=False)  # dataset_args, trial's
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # train config by name


@dataclass(frozen=True)
class DataBundle:
    """A train/validation pair and the shape facts a model needs.

    ``in_memory`` datasets are ``TensorDataset``s of ready tensors: the trainer may move them to
    the device whole and slice batches there, with no DataLoader per batch. ``mean``/``std`` are
    set when the samples are raw uint8 (``DataOptions.raw``): the consumer normalises with them.
    """

    train: Dataset
    val: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    in_memory: bool
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    sample_shape: tuple[int, ...] | None = None  # one sample's shape, if not (C, size, size)


def _digits(opts: DataOptions) -> DataBundle:
    from hpo.data import _builtin

    return _builtin.digits(opts)


def _fake(opts: DataOptions) -> DataBundle:
    from hpo.data import _builtin

    return _builtin.fake(opts)


def _imagefolder(opts: DataOptions) -> DataBundle:
    from hpo.data import _files

    return _files.imagefolder(opts)


def _flowers102(opts: DataOptions) -> DataBundle:
    from hpo.data import _files

    return _files.flowers102(opts)


def _torchvision(name: str) -> Callable[[DataOptions], DataBundle]:
    def build(opts: DataOptions) -> DataBundle:
        from hpo.data import _files

        return _files.torchvision_set(name, opts)

    return build


DATASETS: dict[str, Callable[[DataOptions], DataBundle]] = {
    "digits": _digits,
    "fake": _fake,
    "imagefolder": _imagefolder,
    "mnist": _torchvision("MNIST"),
    "fashion_mnist": _torchvision("FashionMNIST"),
    "cifar10": _torchvision("CIFAR10"),
    "flowers102": _flowers102,
}


def load_data(name: str, opts: DataOptions) -> DataBundle:
    """Build dataset ``name`` (or call the user's ``module:function``); raises
    ``FileNotFoundError`` with a hint when data is absent."""
    if is_ref(name):
        from hpo.data import _user

        return _user.user_data(name, opts)
    return DATASETS[name](opts)


def prepare_data(name: str, opts: DataOptions) -> None:
    """Download or check dataset ``name`` once, before worker processes start in parallel."""
    load_data(name, opts)
