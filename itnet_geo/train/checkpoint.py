r"""Checkpoints: atomic writes, safe loads, RNG states, models rebuilt from config.

A checkpoint is a plain dictionary saved with :func:`torch.save` that holds only
tensors, dicts, lists, tuples, strings, numbers, booleans and :obj:`None`, so it
loads with ``torch.load(weights_only=True)``:

========================  ====================================================
key                       value
========================  ====================================================
``format``                ``"itnet_geo.checkpoint"``
``format_version``        ``1``
``version``               ``itnet_geo.__version__`` of the writer
``kind``                  ``"last"`` (full state) or, model only, ``"best"``,
                          ``"epoch"`` (``keep_epochs``), ``"average"``
                          (:func:`~itnet_geo.train.average_checkpoints`, with
                          an ``averaged`` entry: epochs, files, batch norms)
                          or ``"ensemble"`` (:func:`~itnet_geo.train.pack_ensemble`,
                          with an ``ensemble`` entry: member files, epochs; no
                          ``epoch``, ``step``, ``metrics`` or ``best``)
``model``                 ``{"name": str, "kwargs": dict}`` (rebuilds the model)
``state_dict``            the model's parameters and buffers
``classes``               class names; output ``i`` is ``classes[i]``
``data``                  dataset kind and options (``DataSpec``)
``train``                 training hyper-parameters (``TrainConfig``)
``epoch`` / ``step``      epochs and optimiser steps completed
``metrics``               validation metrics of that epoch
``best``                  ``{"epoch", "accuracy", "loss"}`` of the best epoch so far
``optimizer``             optimiser state (``last`` only)
``schedule``              learning-rate schedule state (``last`` only)
``budget``                time-budget plan and time used (``last`` only, or None)
``rng``                   per-rank torch / numpy / python / DataLoader RNG states
                          (``last`` only)
``average``               running mean of the weights over the averaged epochs,
                          ``{"state_dict", "epochs"}`` (``last`` only; None
                          unless ``average_epochs``)
========================  ====================================================
"""

from __future__ import annotations

import collections
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

import itnet_geo
from itnet_geo._atomic import atomic_open

FORMAT = "itnet_geo.checkpoint"
FORMAT_VERSION = 1
_PLAIN = (str, int, float, bool, type(None))


#: Entries only a ``last`` checkpoint has: the state of training, not of the model.
TRAINING_STATE = (
    "optimizer",
    "schedule",
    "total_steps",
    "steps_per_epoch",
    "budget",
    "world_size",
    "history",
    "elapsed",
    "rng",
    "average",
)


class CheckpointError(RuntimeError):
    r"""A checkpoint that cannot be read, is not an itnet_geo one, or does not fit."""


def some_names(names: Sequence[str], shown: int = 10) -> str:
    """The first :obj:`shown` names, and how many there are when that is not all.

    For error messages that name classes: a dataset may have hundreds.
    """
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _check_plain(obj: Any, where: str) -> None:
    # Exact types: subclasses (torch.__version__ is a str subclass) do not load.
    if type(obj) in _PLAIN or isinstance(obj, torch.Tensor):
        return
    if type(obj) in (dict, collections.OrderedDict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"checkpoint key {where}[{key!r}] is not str or int")
            _check_plain(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint entry {where} is a {type(obj).__module__}.{type(obj).__name__}; "
        "only tensors, dicts, lists, tuples, str, int, float, bool and None load "
        "with weights_only=True"
    )


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    r"""Write :obj:`payload` to :obj:`path` atomically.

    The dictionary is checked to hold only types ``torch.load(weights_only=True)``
    accepts, saved to a temporary file beside :obj:`path`, flushed to disk and
    renamed over it, so a reader — or a run killed mid-write — sees either the
    old file or the complete new one. ``format``,
    ``format_version`` and ``version`` are filled in.

    Returns:
        pathlib.Path: :obj:`path`.
    """
    path = Path(path)
    payload = dict(payload)
    payload.setdefault("format", FORMAT)
    payload.setdefault("format_version", FORMAT_VERSION)
    payload.setdefault("version", itnet_geo.__version__)
    _check_plain(payload, "checkpoint")
    with atomic_open(path, "wb", durable=True) as f:
        torch.save(payload, f)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    r"""Read an itnet_geo checkpoint with ``torch.load(weights_only=True)`` on CPU.

    Raises:
        CheckpointError: Missing file, unreadable or truncated file, or a file
            that is not an itnet_geo checkpoint — the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = [line for line in lines if line.startswith("WeightsUnpickler error")]
        reason = (detail or lines or [""])[0].split(". ")[0]
        raise CheckpointError(
            f"checkpoint {path} cannot be read (corrupt or truncated?): "
            f"{type(err).__name__}{': ' + reason if reason else ''}"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an itnet_geo checkpoint")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format_version']}, newer than this "
            f"itnet_geo ({itnet_geo.__version__}) reads ({FORMAT_VERSION})"
        )
    for key in ("model", "state_dict", "classes"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} lacks the {key!r} entry")
    return ckpt


def model_only(ckpt: dict[str, Any], kind: str) -> dict[str, Any]:
    r"""A copy of :obj:`ckpt` without its :data:`TRAINING_STATE`, of :obj:`kind`."""
    out = {key: value for key, value in ckpt.items() if key not in TRAINING_STATE}
    out["kind"] = kind
    return out


def unwrap(model: nn.Module) -> nn.Module:
    r"""The module inside a :class:`~torch.nn.parallel.DistributedDataParallel`."""
    return model.module if hasattr(model, "module") else model


def model_config(model: nn.Module) -> dict[str, Any]:
    r"""``{"name": ..., "kwargs": ...}`` from a model's ``name`` and ``config``.

    Models of :mod:`itnet_geo.nn.models` expose both; any other module may set
    them itself to be checkpointed.
    """
    model = unwrap(model)
    name = getattr(model, "name", None)
    config = getattr(model, "config", None)
    if not isinstance(name, str) or not isinstance(config, dict):
        raise TypeError(
            f"{type(model).__name__} needs a str 'name' and a dict 'config' "
            "(its constructor arguments) to be checkpointed"
        )
    return {"name": name, "kwargs": dict(config)}


def build_model(config: dict[str, Any]) -> nn.Module:
    r"""Rebuild a model of :mod:`itnet_geo.nn.models` from :func:`model_config`."""
    from itnet_geo.nn.models import build_model as _build

    try:
        return _build(config["name"], **dict(config.get("kwargs", {})))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(
            f"cannot rebuild model {config.get('name')!r} from the checkpoint: {err}"
        ) from err


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    r"""The checkpoint's model with its weights, in eval mode."""
    model = build_model(ckpt["model"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise CheckpointError(
            "checkpoint weights do not fit model "
            f"{ckpt['model'].get('name')!r}: {first[0] if first else err}"
        ) from err
    return model.eval()


# -- random number generators -------------------------------------------------------


def rng_state(loader_generator: Optional[torch.Generator] = None) -> dict[str, Any]:
    r"""The torch, CUDA, numpy, python and DataLoader RNG states, as plain data."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_state[0]),
            "state": [int(v) for v in py_state[1]],
            "gauss": None if py_state[2] is None else float(py_state[2]),
        },
        "loader": None if loader_generator is None else loader_generator.get_state(),
    }


def set_rng_state(
    state: dict[str, Any], loader_generator: Optional[torch.Generator] = None
) -> None:
    r"""Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if loader_generator is not None and state.get("loader") is not None:
        loader_generator.set_state(state["loader"])


def seed_everything(seed: int) -> None:
    r"""Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


__all__ = [
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "model_config",
    "build_model",
    "model_from_checkpoint",
    "rng_state",
    "set_rng_state",
    "seed_everything",
    "unwrap",
]
