"""What one trial takes of a node: ``resources: {gpus_per_trial: N}``."""

from __future__ import annotations

from pydantic import Field

from hpo.spec.base import _Frozen


class ResourcesSpec(_Frozen):
    """A trial's share of the node. With ``gpus_per_trial`` N above 1 each worker is a
    data-parallel group of N processes, one per GPU (N CPU processes on gloo with
    ``--device cpu``), and a node with G GPUs runs G // N of them."""

    gpus_per_trial: int = Field(
        1, ge=1, description="GPUs (processes) that train one trial together, data-parallel"
    )
