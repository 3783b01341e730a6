"""scikit-learn's bundled digits, read without importing scikit-learn.

The one place hpo relies on scikit-learn's private layout: ``load_digits`` reads
``sklearn/datasets/data/digits.csv.gz`` (a row per image: 64 pixels, then the label). Importing
``sklearn.datasets`` costs about 2 s of CPU (scipy, joblib, ...) in every process that trains on
digits, every worker among them; reading the file takes milliseconds. Where the file is not
there or not in that shape (a scikit-learn that moved it), or with ``HPO_DIGITS_PUBLIC=1``, the
public ``load_digits`` is used. ``tests/test_trainer_data.py`` checks that both give the same
arrays, so a new scikit-learn that changes the file fails there, not silently in a study.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
from pathlib import Path

import numpy as np

from hpo.keys import ENV_DIGITS_PUBLIC

log = logging.getLogger(__name__)


def bundled_digits_file() -> Path | None:
    """Where scikit-learn keeps the digits CSV, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    path = root / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def _read(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    with gzip.open(path, mode="rt", encoding="utf-8") as rows:
        data = np.loadtxt(rows, delimiter=",")
    if data.ndim != 2 or data.shape[1] != 65:
        return None
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int, copy=False)


def load_digits_arrays(public: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Digits as scikit-learn's ``load_digits`` gives them: images (n, 8, 8), float64, and
    int labels. ``public`` forces the public path (default: ``HPO_DIGITS_PUBLIC``)."""
    if public is None:
        public = os.environ.get(ENV_DIGITS_PUBLIC) == "1"
    path = None if public else bundled_digits_file()
    if path is not None:
        arrays = _read(path)
        if arrays is not None:
            return arrays
        log.warning("%s is not 65 columns a row: loading digits through scikit-learn", path)
    from sklearn.datasets import load_digits

    raw = load_digits()
    return raw.images, raw.target
