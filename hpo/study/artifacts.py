"""Trial files in an Optuna artifact store: resume checkpoints and best-model artifacts.

One store serves both: a directory that every node sees (FileSystemArtifactStore) or an
S3-compatible bucket (``s3://bucket``, Boto3ArtifactStore). Checkpoints are written under a fixed
id per original trial, ``checkpoint-<study>-<n>``, overwritten each epoch and removed when the
trial ends, so a retry on any node finds its predecessor's last epoch. Best models are uploaded
with ``optuna.artifacts.upload_artifact``, which links them to the trial for the dashboard.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, get_all_artifact_meta
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from hpo.errors import SpecError, StorageError
from hpo.keys import ENV_ARTIFACTS
from hpo.study._optuna import FAILED_TRIAL, storage_of

BEST_MODEL = "best_model.pt"
#: The content type a best model is served with (a PyTorch pickle: bytes to download).
MODEL_MIMETYPE = "application/octet-stream"
#: How a ``torch.save`` file begins (a zip archive); a pickled checkpoint does not.
_ZIP = b"PK\x03\x04"


def resolve_artifacts(flag: str | None, spec_path: str) -> str:
    """``--artifacts`` flag > ``HPO_ARTIFACTS`` > the spec's ``artifacts.path``."""
    return flag or os.environ.get(ENV_ARTIFACTS) or spec_path


def open_store(location: str) -> Any:
    """The artifact store at ``location``: a directory (created) or ``s3://bucket``."""
    if location.startswith("s3://"):
        try:
            from optuna.artifacts import Boto3ArtifactStore
        except ImportError as exc:
            raise SpecError(f"artifacts.path: s3:// needs boto3 installed: {exc}") from None
        return Boto3ArtifactStore(location.removeprefix("s3://").strip("/"))
    Path(location).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(location)


def root_number(trial: FrozenTrial) -> int:
    """The number of the original trial a retry continues (its own number otherwise)."""
    return int(trial.system_attrs.get(FAILED_TRIAL, trial.number))


class TrialFiles:
    """Checkpoints and best-model uploads for the trials of one study."""

    def __init__(self, store: Any, study_name: str) -> None:
        self.store, self.study_name = store, study_name

    def _checkpoint_id(self, key: int) -> str:
        return f"checkpoint-{self.study_name}-{key}"

    def save_checkpoint(self, key: int, state: dict[str, Any]) -> None:
        """Overwrite trial ``key``'s checkpoint. ``torch.save`` when torch is loaded (the state
        may hold tensors); plain pickle otherwise, so a scikit-learn or pure-Python objective
        does not pay seconds to import torch."""
        buffer = io.BytesIO()
        if "torch" in sys.modules:
            import torch  # already loaded: free

            torch.save(state, buffer)
        else:
            pickle.dump(state, buffer, protocol=pickle.HIGHEST_PROTOCOL)
        buffer.seek(0)
        self.store.write(self._checkpoint_id(key), buffer)

    def load_checkpoint(self, key: int) -> dict[str, Any] | None:
        try:
            with self.store.open_reader(self._checkpoint_id(key)) as reader:
                data = reader.read()
        except ArtifactNotFound:
            return None
        if not data.startswith(_ZIP):
            state: dict[str, Any] = pickle.loads(data)
            return state
        import torch

        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        return state

    def drop_checkpoint(self, key: int) -> None:
        with contextlib.suppress(ArtifactNotFound):
            self.store.remove(self._checkpoint_id(key))

    def upload_best(self, trial: optuna.Trial, payload: dict[str, Any]) -> str:
        """Upload ``payload`` (weights, metrics, params) as the trial's ``best_model.pt``."""
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / BEST_MODEL
            torch.save(payload, path)
            # Named explicitly: guessed from ".pt", the type would be a SNES page table.
            return optuna.artifacts.upload_artifact(
                artifact_store=self.store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype=MODEL_MIMETYPE,
            )


def download_best(study: optuna.Study, trial: FrozenTrial, store: Any, target: Path) -> Path:
    """Download ``trial``'s best-model artifact into directory ``target``.

    Raises:
        StorageError: the trial has no best-model artifact, or the store does not hold it.
    """
    metas = [
        m
        for m in get_all_artifact_meta(trial, storage=storage_of(study))
        if m.filename == BEST_MODEL
    ]
    if not metas:
        raise StorageError(f"trial {trial.number} has no {BEST_MODEL} artifact")
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"trial-{trial.number}-{BEST_MODEL}"
    if path.exists():
        path.unlink()
    try:
        download_artifact(
            artifact_store=store, file_path=str(path), artifact_id=metas[-1].artifact_id
        )
    except ArtifactNotFound:
        raise StorageError(
            f"trial {trial.number}'s {BEST_MODEL} is not in this artifact store: name the one "
            "its trials uploaded to (--artifacts, HPO_ARTIFACTS or the spec's artifacts.path)"
        ) from None
    return path
