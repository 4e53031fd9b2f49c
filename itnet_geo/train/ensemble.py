r"""Ensembles: several trained models scored as one.

The ensemble's prediction is the mean of its members' class probabilities,

.. math::
    p(y \mid x) = \frac{1}{M} \sum_{m=1}^{M} \operatorname{softmax}(z_m(x))_y,

returned as log-probabilities, so that :func:`~itnet_geo.train.evaluate` (whose
cross-entropy applies a log-softmax, the identity on log-probabilities) reports
the ensemble's own negative log-likelihood and its softmax is that mean. Members
may list their classes in any order; each one's outputs are put in the first
member's order by name. It costs the sum of the members' inference, and it is
not a single model: compare it with single models as such.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from itnet_geo.train.checkpoint import CheckpointError, model_from_checkpoint
from itnet_geo.train.data import DataSpec

#: Data options that may differ between the members of an ensemble: where the
#: data is read from, not what is read.
_LOCAL_DATA_KEYS = ("root", "cache_dir")


class Ensemble(nn.Module):
    r"""The mean class probability of several classifiers.

    Args:
        members (sequence of torch.nn.Module): Classifiers mapping the same batch to
            ``(B, K)`` logits.
        class_maps (sequence of torch.Tensor, optional): Per member, the index of
            each ensemble class among that member's outputs (``(K,)``); default
            the identity for every member. (default: :obj:`None`)

    Example:
        >>> a, b = nn.Linear(3, 4), nn.Linear(3, 4)
        >>> out = Ensemble([a, b])(torch.randn(2, 3))
        >>> bool(torch.allclose(out.exp().sum(-1), torch.ones(2)))  # probabilities
        True
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        class_maps: Optional[Sequence[Tensor]] = None,
    ) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if class_maps is not None and len(class_maps) != len(members):
            raise ValueError(f"{len(class_maps)} class maps for {len(members)} members")
        self.members = nn.ModuleList(members)
        for m, index in enumerate(class_maps or ()):
            self.register_buffer(f"class_map_{m}", torch.as_tensor(index).long())

    def forward(self, data: Any) -> Tensor:
        log_probs = []
        for m, member in enumerate(self.members):
            out = member(data).float().log_softmax(dim=-1)
            index = getattr(self, f"class_map_{m}", None)
            log_probs.append(out if index is None else out[:, index])
        return torch.stack(log_probs).logsumexp(dim=0) - math.log(len(log_probs))


def ensemble_from_checkpoints(
    ckpts: Sequence[dict[str, Any]],
    paths: Sequence[str | os.PathLike],
) -> Ensemble:
    r"""An :class:`Ensemble` of loaded checkpoints, in the first one's class order.

    Args:
        ckpts (sequence of dict): Checkpoints (:func:`load_checkpoint`).
        paths (sequence of str or os.PathLike): Their files, for messages.

    Raises:
        CheckpointError: Members trained on other classes, or on data read
            differently (points per shape, normals, mesh features, the
            validation carving, ...): the message names both files and what
            differs.
    """
    first, first_path = ckpts[0], paths[0]
    classes = [str(c) for c in first["classes"]]
    data = _data_options(first)
    maps = []
    for ckpt, path in zip(ckpts, paths, strict=True):
        names = [str(c) for c in ckpt["classes"]]
        if sorted(names) != sorted(classes):
            extra = sorted(set(names) - set(classes))
            missing = sorted(set(classes) - set(names))
            raise CheckpointError(
                f"{path} was trained on other classes than {first_path}"
                f"{': it adds ' + ', '.join(extra) if extra else ''}"
                f"{': it lacks ' + ', '.join(missing) if missing else ''}"
            )
        other = _data_options(ckpt)
        differ = sorted(
            k for k in set(data) | set(other) if data.get(k) != other.get(k)
        )
        if differ:
            key = differ[0]
            raise CheckpointError(
                f"{path} reads its data differently from {first_path}: {key} is "
                f"{other.get(key)!r} there and {data.get(key)!r} in {first_path}"
            )
        index = {c: i for i, c in enumerate(names)}
        maps.append(torch.tensor([index[c] for c in classes], dtype=torch.long))
    return Ensemble([model_from_checkpoint(c) for c in ckpts], maps).eval()


def _data_options(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's data options, those it predates at their defaults."""
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(DataSpec)
        if f.default is not dataclasses.MISSING
    }
    data = {**defaults, **(ckpt.get("data") or {})}
    for key in _LOCAL_DATA_KEYS:
        data.pop(key, None)
    return data


__all__ = ["Ensemble", "ensemble_from_checkpoints"]
