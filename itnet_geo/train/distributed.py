r"""torch.distributed (DDP) helpers: start-up from ``torchrun``, ranks, reductions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    r"""Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    r"""Join the process group described by ``torchrun``'s environment, if any.

    Reads ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` (set by ``torchrun``); with a
    world size above one it initialises the default group: ``gloo`` on CPU,
    ``nccl`` when CUDA is available, unless :obj:`backend` says otherwise. Without
    those variables it returns a single-process :class:`DistInfo`.
    """
    if dist.is_available() and dist.is_initialized():
        return dist_info()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    return dist_info()


def dist_info() -> DistInfo:
    r"""The current rank and world size (a single process when not initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )


def barrier() -> None:
    r"""Wait for every rank (a no-op in a single process)."""
    if dist_info().enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    r"""Sum of :obj:`tensor` over ranks (in place; returned for chaining)."""
    if dist_info().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_tensor(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    r"""Rank :obj:`src`'s :obj:`tensor` on every rank (in place)."""
    if dist_info().enabled:
        dist.broadcast(tensor, src=src)
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    r"""Rank :obj:`src`'s :obj:`obj` on every rank."""
    if not dist_info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    r"""Every rank's :obj:`obj`, in rank order, on every rank."""
    info = dist_info()
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def cleanup_distributed() -> None:
    r"""Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


__all__ = [
    "DistInfo",
    "init_distributed",
    "dist_info",
    "barrier",
    "all_reduce_sum",
    "broadcast_tensor",
    "broadcast_object",
    "gather_objects",
    "cleanup_distributed",
]
