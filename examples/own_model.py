"""Your own model and data through hpo's trainer, run by ``hpo run examples/own_model.yaml``.

``digits`` is a map-style ``torch.utils.data.Dataset`` pair (scikit-learn's bundled 8x8 digits,
no download) and ``mlp`` an ``nn.Module`` of the user's own; hpo's trainer runs them with
everything it does for its registry models: the schedule, AMP on a GPU, auto batch, a
checkpoint every epoch (a retried trial resumes), micro-batches after an out-of-memory,
early stopping, and freezing all but the head the spec names (``train.head``).

``mlp`` declares ``width``, which is not a train key: the spec's ``space:`` tunes it and each
trial's value is passed here. It also declares ``dropout`` (a train key: passed when
``train.dropout`` is set or tuned, else its default here) and ``in_channels`` / ``image_size``
(told by the data).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset


class Digits(Dataset):
    """Digit images (1 x 8 x 8 floats in [0, 1]) and their labels."""

    classes = [str(d) for d in range(10)]  # how hpo tells the number of classes

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images = torch.from_numpy(images.astype(np.float32) / 16.0).view(-1, 1, 8, 8)
        self.labels = torch.from_numpy(labels).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def digits(val_fraction: float) -> tuple[Dataset, Dataset]:
    """(train, val): a fixed split, so that every trial is validated on the same images."""
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(1234).permutation(len(y))
    n_val = int(len(y) * val_fraction)
    val, train = order[:n_val], order[n_val:]
    return Digits(x[train], y[train]), Digits(x[val], y[val])


class MLP(nn.Module):
    def __init__(self, inputs: int, num_classes: int, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(inputs, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(dropout),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def mlp(
    num_classes: int, in_channels: int, image_size: int, width: int = 64, dropout: float = 0.1
) -> nn.Module:
    return MLP(in_channels * image_size * image_size, num_classes, width, dropout)
