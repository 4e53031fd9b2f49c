"""Per-graph bookkeeping shared by the transforms (single graphs and batches)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Data


def graph_index(data: Data) -> tuple[Optional[Tensor], int]:
    r"""The node-to-graph vector of :obj:`data` (or :obj:`None`) and the graph count.

    A plain :class:`~torch_geometric.data.Data` is one graph; a batch carries a
    ``batch`` vector.
    """
    batch = data.batch
    if batch is None:
        return None, 1
    if batch.numel() == 0:
        return batch, 0
    num_graphs = getattr(data, "num_graphs", None)
    if not isinstance(num_graphs, int):
        num_graphs = int(batch.max()) + 1
    return batch, num_graphs


def graph_sizes(data: Data, name: str) -> Tensor:
    r"""Nodes per graph of :obj:`data` (one entry for a plain graph), on the CPU.

    Raises:
        ValueError: A batch whose graphs' nodes are not contiguous and in
            order (the message names the transform :obj:`name`).
    """
    batch, num_graphs = graph_index(data)
    if batch is None:
        return torch.tensor([data.num_nodes])
    if not bool((batch[1:] >= batch[:-1]).all()):
        raise ValueError(f"{name} needs the nodes of a batch in order")
    return torch.bincount(batch.cpu(), minlength=num_graphs)


def per_node(value: Tensor, batch: Optional[Tensor], num_nodes: int) -> Tensor:
    r"""Broadcast one row per graph (:obj:`value` of shape ``(B, ...)``) to nodes."""
    if batch is None:
        return value[0].expand(num_nodes, *value.shape[1:])
    return value[batch]


def set_ptr(data: Data, counts: Tensor) -> None:
    r"""Rewrite ``data.ptr`` (when present) from per-graph node counts."""
    if "ptr" in data:
        ptr = torch.zeros(counts.numel() + 1, dtype=torch.long, device=counts.device)
        ptr[1:] = torch.cumsum(counts, 0)
        data.ptr = ptr
