r"""Ensembles of checkpoints: scored as one model, or packed into one file.

:class:`~itnet_geo.nn.models.Ensemble` (the mean of the members' class
probabilities, as log-probabilities) built from checkpoints: their classes
matched by name, their data options checked to agree.
:func:`ensemble_from_checkpoints` is what ``itnet-geo eval --checkpoint a.pt
b.pt`` scores; :func:`pack_ensemble` writes the same ensemble as one model-only
checkpoint (``itnet-geo ensemble a.pt b.pt --out ens.pt``) that ``eval`` reads
like any other.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from itnet_geo.nn.models import Ensemble
from itnet_geo.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_config,
    model_from_checkpoint,
    model_only,
    save_checkpoint,
    some_names,
)
from itnet_geo.train.data import DataSpec

#: Data options that may differ between the members of an ensemble: where the
#: data is read from, not what is read.
_LOCAL_DATA_KEYS = ("root", "cache_dir")
#: Entries of a member checkpoint about that member's own training.
_MEMBER_KEYS = ("epoch", "step", "metrics", "best", "averaged", "ensemble")


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
                f"{': it adds ' + some_names(extra) if extra else ''}"
                f"{': it lacks ' + some_names(missing) if missing else ''}"
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


def pack_ensemble(
    checkpoints: Sequence[str | os.PathLike],
    out: str | os.PathLike,
) -> dict[str, Any]:
    r"""Write the ensemble of :obj:`checkpoints` as one checkpoint at :obj:`out`.

    The members are checked and matched as for ``eval`` with several
    checkpoints (:func:`ensemble_from_checkpoints`); the result is a model-only
    checkpoint (``kind`` ``"ensemble"``) of model ``"ensemble"`` whose
    predictions are exactly those of scoring the files together. It takes the
    first member's classes, data options and training options (what ``eval
    --votes`` augments with); its ``ensemble`` entry lists the member files with
    their epochs and best validation records. It has no ``epoch`` or ``best``
    of its own: the ensemble was never trained or validated as a whole. It is
    written atomically.

    Returns:
        dict: The written checkpoint.

    Raises:
        CheckpointError: An unreadable checkpoint, members that differ in their
            classes or data, or a member whose model cannot be rebuilt.
    """
    paths = [Path(p) for p in checkpoints]
    if not paths:
        raise ValueError("nothing to pack: no checkpoints given")
    ckpts = [load_checkpoint(p) for p in paths]
    ensemble = ensemble_from_checkpoints(ckpts, paths)
    # What describes the first member's training, not the ensemble, goes.
    payload = {
        key: value
        for key, value in model_only(ckpts[0], "ensemble").items()
        if key not in _MEMBER_KEYS
    }
    payload.update(
        model=model_config(ensemble),
        state_dict=ensemble.state_dict(),
        ensemble={
            "files": [p.name for p in paths],
            "parameters": sum(int(t.numel()) for t in ensemble.parameters()),
            "members": [
                {"epoch": c.get("epoch"), "best": c.get("best"), "kind": c.get("kind")}
                for c in ckpts
            ],
        },
    )
    save_checkpoint(out, payload)
    return payload


__all__ = ["Ensemble", "ensemble_from_checkpoints", "pack_ensemble"]
