"""Random point dropout: remove a random fraction of each shape's points."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index, per_node, set_ptr


class RandomPointDropout(BaseTransform):
    r"""Drop each point with a probability drawn per shape in ``[0, max_ratio]``.

    The PointNet++ augmentation, except that dropped points are *removed* instead
    of being overwritten by copies of the first point: duplicates would bias the
    quadrature of an integral operator, and PyG batches need no fixed size. Every
    node-level attribute (``pos``, ``normal``, ``x``, ``batch`` …) is subset
    together and edges are restricted to the kept points; at least one point of
    every shape is kept. Meshes (``face``) are refused, since dropping vertices
    would tear the surface. On a batch each graph draws its own ratio and
    ``ptr`` is rebuilt. Uses the global torch generator.

    Args:
        max_ratio (float, optional): Largest dropout probability, in
            :math:`[0, 1)`. (default: :obj:`0.875`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`
        - **output:** ``pos`` :math:`(N', 3)` with :math:`1 \le N' \le N`

    Example:
        >>> from torch_geometric.data import Data
        >>> data = RandomPointDropout(0.5)(Data(pos=torch.randn(1000, 3)))
        >>> 1 <= data.num_nodes <= 1000
        True
    """

    def __init__(self, max_ratio: float = 0.875):
        if not 0 <= max_ratio < 1:
            raise ValueError(f"max_ratio must be in [0, 1), got {max_ratio}")
        self.max_ratio = float(max_ratio)

    def forward(self, data: Data) -> Data:
        if "face" in data:
            raise ValueError("RandomPointDropout does not apply to meshes ('face')")
        num_nodes = data.num_nodes
        if not num_nodes:
            return data
        batch, num_graphs = graph_index(data)
        device = data.pos.device if data.pos is not None else None
        ratio = torch.rand(max(num_graphs, 1)) * self.max_ratio
        drop_prob = per_node(ratio, None if batch is None else batch.cpu(), num_nodes)
        keep = torch.rand(num_nodes) >= drop_prob
        if batch is None:
            keep[0] |= not bool(keep.any())
        else:
            b = batch.cpu()
            kept = torch.zeros(num_graphs, dtype=torch.long).index_add_(
                0, b, keep.long()
            )
            node_ids = torch.arange(num_nodes)
            first = torch.full((num_graphs,), num_nodes, dtype=torch.long)
            first = first.scatter_reduce(0, b, node_ids, reduce="amin")
            empty = (kept == 0) & (first < num_nodes)
            keep[first[empty]] = True
        data = data.subgraph(keep.to(device) if device is not None else keep)
        if batch is not None:
            counts = torch.zeros(num_graphs, dtype=torch.long, device=batch.device)
            counts.index_add_(0, data.batch, torch.ones_like(data.batch))
            set_ptr(data, counts)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(max_ratio={self.max_ratio:g})"
