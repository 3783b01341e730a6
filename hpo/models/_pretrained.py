"""Pretrained weights: from a local file or the torch hub cache, fitted onto a resized model.

Nothing downloads unless the caller allows it (``download: true``); offline, a missing file is a
clear error that names the path where the weights were expected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from hpo.models.parts import head_name

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]

#: Prefixes that wrappers add to parameter names (DataParallel, torch.compile).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def hub_file(tv_name: str) -> tuple[Path, str]:
    """Where torch hub keeps torchvision's default weights for ``tv_name``, and their URL."""
    import torchvision

    url = torchvision.models.get_model_weights(tv_name).DEFAULT.url
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name, url


def fetch_weights(name: str, tv_name: str, download: bool) -> Path:
    """Make sure the hub cache holds ``tv_name``'s default weights (downloading once if allowed),
    so that parallel workers find the file instead of downloading it each.

    Raises:
        FileNotFoundError: absent and ``download`` is false.
    """
    path, url = hub_file(tv_name)
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"pretrained weights for {name} not found: expected {path} "
                "(copy the file there, give pretrained: <path>, or allow download: true)"
            )
        log.info("downloading %s weights from %s", name, url)
        path.parent.mkdir(parents=True, exist_ok=True)
        match = torch.hub.HASH_REGEX.search(path.name)  # torchvision names carry a hash prefix
        prefix = match.group(1) if match else None
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)
    return path


def _hub_state(name: str, tv_name: str, download: bool) -> StateDict:
    path = fetch_weights(name, tv_name, download)
    return torch.load(path, map_location="cpu", weights_only=True)


def _file_state(path_text: str) -> StateDict:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    out: StateDict = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        out[key] = value
    return out


def _adapt(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """An RGB stem for a greyscale input: sum the kernels over the colour channels."""
    fits_grey = (
        value.dim() == 4
        and target.shape[1] == 1
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
    )
    return value.sum(1, keepdim=True) if fits_grey else value


def _interpolate_vit(model: nn.Module, state: StateDict) -> StateDict:
    pos = state.get("encoder.pos_embedding")
    own = getattr(getattr(model, "encoder", None), "pos_embedding", None)
    if pos is None or own is None or pos.shape == own.shape:
        return state
    from torchvision.models.vision_transformer import interpolate_embeddings

    return interpolate_embeddings(model.image_size, model.patch_size, state)


def load_pretrained(
    model: nn.Module,
    name: str,
    tv_name: str | None,
    pretrained: bool | str,
    download: bool,
    head: str | None = None,
) -> None:
    """Load weights into ``model`` where shapes fit; the head (and a resized stem) stay new.

    ``pretrained=True`` reads torchvision's weights for ``tv_name`` from the hub cache, and their
    head is always replaced; a path may hold any state dict of the same architecture.

    Raises:
        FileNotFoundError: the weights are not on disk (and may not be downloaded).
        ValueError: the weights belong to another architecture.
    """
    if pretrained is True:
        if tv_name is None:
            raise ValueError(f"model {name} has no published weights")
        state = _hub_state(name, tv_name, download)
        top = head_name(model, head)
        state = {k: v for k, v in state.items() if not k.startswith(top + ".")}
    else:
        state = _file_state(str(pretrained))
    state = _interpolate_vit(model, state)
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise ValueError(f"weights do not fit model {name}: unexpected keys {unexpected[:3]}")
    fitted = {k: _adapt(v, own[k]) for k, v in state.items()}
    fitted = {k: v for k, v in fitted.items() if v.shape == own[k].shape}
    if len(fitted) < len(own) // 2:
        raise ValueError(f"weights do not fit model {name}: {len(fitted)}/{len(own)} tensors fit")
    fresh = sorted(set(own) - set(fitted))
    model.load_state_dict(fitted, strict=False)
    log.info("%s: loaded %d tensors, kept %d new: %s", name, len(fitted), len(fresh), fresh[:6])
