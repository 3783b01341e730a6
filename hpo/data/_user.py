"""The user's own dataset: ``train.dataset: module:function``, adapted to a :class:`DataBundle`.

The contract: the function takes any of the train config's keys by name (``data_dir``,
``image_size``, ``seed``, ``download``, ``val_fraction``, ...), ``train.dataset_args`` and the
trial's own parameters it declares, and returns the training and validation sets: a pair
``(train, val)`` of ``torch.utils.data.Dataset``, or an object with ``.train`` and ``.val``
(and optionally ``.num_classes``), such as hpo's own ``DataBundle``. Each sample is ``(x, y)``
with ``y`` a class index. Two ``TensorDataset``s are held on the training device and batched
there like the built-in in-memory sets; any other dataset goes through a DataLoader.

The number of classes: ``train.num_classes`` when set, else ``.num_classes`` of the result,
else the datasets' ``classes`` (torchvision's convention), else the largest label of a
``TensorDataset`` or of ``.targets``, plus one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from hpo.data._registry import DataBundle, DataOptions
from hpo.userfn import call_declared, import_ref


def _pair(result: Any, ref: str) -> tuple[Dataset, Dataset, int | None]:
    """(train, val, num_classes or None) from what the function returned."""
    if hasattr(result, "train") and hasattr(result, "val"):
        train, val, classes = result.train, result.val, getattr(result, "num_classes", None)
    elif isinstance(result, tuple | list) and len(result) == 2:
        (train, val), classes = result, None
    else:
        raise TypeError(
            f"{ref} returned {type(result).__name__}; expected (train, val) datasets or an "
            "object with .train and .val"
        )
    for split, ds in (("train", train), ("val", val)):
        if not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__"):
            raise TypeError(f"{ref}: its {split} set is a {type(ds).__name__}, not a Dataset")
        if len(ds) == 0:
            raise ValueError(f"{ref}: its {split} set is empty")
    return train, val, classes


def _labels_max(ds: Any) -> int | None:
    """The largest label of ``ds``, where it can be read without loading every sample."""
    while isinstance(ds, Subset):
        ds = ds.dataset
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        return int(ds.tensors[1].max())
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets):
        return int(torch.as_tensor(targets).max())
    return None


def _classes_of(ds: Any) -> int | None:
    while isinstance(ds, Subset):
        ds = ds.dataset
    classes = getattr(ds, "classes", None)
    return len(classes) if classes is not None and len(classes) else None


def num_classes_of(train: Dataset, val: Dataset, ref: str) -> int:
    """The number of classes told by the datasets themselves.

    Raises:
        ValueError: they tell nothing (the message says to set ``train.num_classes``).
    """
    told = _classes_of(train) or _classes_of(val)
    if told:
        return told
    tops = [m for m in (_labels_max(train), _labels_max(val)) if m is not None]
    if tops:
        return max(tops) + 1
    raise ValueError(
        f"cannot tell the number of classes of {ref}'s data (no .classes, .targets or "
        "TensorDataset labels): set train.num_classes"
    )


def user_data(ref: str, opts: DataOptions) -> DataBundle:
    """Call the user's dataset function and describe what it returned."""
    func = import_ref(ref)
    result = call_declared(func, opts.args, {**opts.options, "image_size": opts.image_size})
    train, val, told = _pair(result, ref)
    classes = opts.num_classes or told or num_classes_of(train, val, ref)
    x = train[0][0]
    shape = tuple(torch.as_tensor(x).shape)
    in_memory = isinstance(train, TensorDataset) and isinstance(val, TensorDataset)
    return DataBundle(
        train,
        val,
        num_classes=int(classes),
        in_channels=shape[0] if len(shape) == 3 else 1,
        image_size=shape[-1] if len(shape) >= 2 else 0,
        in_memory=in_memory,
        sample_shape=shape,
    )
