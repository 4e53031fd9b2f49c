r"""Models built from :class:`~itnet_geo.nn.ITConv`: point clouds and meshes.

Every model has a ``name`` and a JSON-able ``config`` (its constructor
options), so that :func:`build_model` rebuilds it, e.g. from a checkpoint:

.. code-block:: python

    model = ITNetClassifier.from_preset("cpu-1h", num_classes=40)
    same = build_model(model.name, **model.config)
"""

from __future__ import annotations

from typing import Any

from torch import nn

from itnet_geo.nn.models.baselines import DGCNN, PointNet2SSG
from itnet_geo.nn.models.classifier import NEIGHBORHOODS, PRESETS, ITNetClassifier
from itnet_geo.nn.models.ensemble import Ensemble
from itnet_geo.nn.models.mesh import MeshITNet

#: Model classes by their ``name``.
MODELS: dict[str, type[nn.Module]] = {
    ITNetClassifier.name: ITNetClassifier,
    MeshITNet.name: MeshITNet,
    PointNet2SSG.name: PointNet2SSG,
    DGCNN.name: DGCNN,
    Ensemble.name: Ensemble,
}


def build_model(name: str, **config: Any) -> nn.Module:
    r"""Build the model called :obj:`name` from its constructor options.

    Args:
        name (str): ``"itnet_classifier"``, ``"mesh_itnet"``, or a peer:
            ``"pointnet2_ssg"``, ``"dgcnn"`` (:mod:`~itnet_geo.nn.models.baselines`),
            or ``"ensemble"`` (:class:`Ensemble` of other models' configs).
        **config: Constructor options, e.g. a model's ``config``.

    Example:
        >>> model = build_model("mesh_itnet", num_classes=30, in_channels=16)
        >>> type(model).__name__
        'MeshITNet'
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODELS)}")
    return MODELS[name](**config)


__all__ = [
    "ITNetClassifier",
    "MeshITNet",
    "PointNet2SSG",
    "DGCNN",
    "Ensemble",
    "build_model",
    "MODELS",
    "PRESETS",
    "NEIGHBORHOODS",
]
