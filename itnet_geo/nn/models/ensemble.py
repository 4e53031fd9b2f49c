r"""Ensembles: several trained classifiers scored as one.

The ensemble's prediction is the mean of its members' class probabilities,

.. math::
    p(y \mid x) = \frac{1}{M} \sum_{m=1}^{M} \operatorname{softmax}(z_m(x))_y,

returned as log-probabilities, so that a cross-entropy (which applies a
log-softmax, the identity on log-probabilities) is the ensemble's own negative
log-likelihood and its softmax is that mean. Members may list their classes in
any order (``class_maps`` puts each one's outputs in one order). It costs the
sum of the members' inference, and it is not a single model: compare it with
single models as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn


class Ensemble(nn.Module):
    r"""The mean class probability of several classifiers.

    Members given as models of :mod:`itnet_geo.nn.models` (or as their
    ``{"name", "kwargs"}`` configs, built here) make the ensemble a model like
    the others: it has a ``name`` and a ``config`` (the members' configs and the
    class maps), so :func:`~itnet_geo.nn.models.build_model` rebuilds it and a
    checkpoint holds it in one file.

    Args:
        members (sequence of torch.nn.Module or dict): Classifiers mapping the
            same batch to ``(B, K)`` logits, or model configs
            ``{"name": ..., "kwargs": {...}}`` to build them from.
        class_maps (sequence of torch.Tensor or list of int, optional): Per
            member, the index of each ensemble class among that member's outputs
            (``(K,)``); default the identity for every member.
            (default: :obj:`None`)

    Example:
        >>> a, b = nn.Linear(3, 4), nn.Linear(3, 4)
        >>> out = Ensemble([a, b])(torch.randn(2, 3))
        >>> bool(torch.allclose(out.exp().sum(-1), torch.ones(2)))  # probabilities
        True
    """

    name = "ensemble"

    def __init__(
        self,
        members: Sequence[nn.Module | dict[str, Any]],
        class_maps: Optional[Sequence[Tensor | Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if class_maps is not None and len(class_maps) != len(members):
            raise ValueError(f"{len(class_maps)} class maps for {len(members)} members")
        self.members = nn.ModuleList(
            _build(m) if isinstance(m, dict) else m for m in members
        )
        for m, index in enumerate(class_maps or ()):
            self.register_buffer(f"class_map_{m}", torch.as_tensor(index).long())

    @property
    def config(self) -> dict[str, Any]:
        r"""Constructor options; ``build_model(self.name, **self.config)``.

        Raises:
            AttributeError: A member without a ``name`` and a ``config``.
        """
        configs = []
        for member in self.members:
            name = getattr(member, "name", None)
            config = getattr(member, "config", None)
            if not isinstance(name, str) or not isinstance(config, dict):
                raise AttributeError(
                    f"ensemble member {type(member).__name__} has no name and config"
                )
            configs.append({"name": name, "kwargs": dict(config)})
        maps = [getattr(self, f"class_map_{m}", None) for m in range(len(self.members))]
        if any(index is None for index in maps):
            return {"members": configs, "class_maps": None}
        return {"members": configs, "class_maps": [index.tolist() for index in maps]}

    def forward(self, data: Any) -> Tensor:
        log_probs = []
        for m, member in enumerate(self.members):
            out = member(data).float().log_softmax(dim=-1)
            index = getattr(self, f"class_map_{m}", None)
            log_probs.append(out if index is None else out[:, index])
        return torch.stack(log_probs).logsumexp(dim=0) - math.log(len(log_probs))


def _build(config: dict[str, Any]) -> nn.Module:
    from itnet_geo.nn.models import build_model

    if "name" not in config:
        raise ValueError(f"an ensemble member config needs a 'name', got {config}")
    return build_model(config["name"], **dict(config.get("kwargs") or {}))


__all__ = ["Ensemble"]
