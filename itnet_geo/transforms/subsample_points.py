"""Point subsampling: keep a fixed number of each shape's points, drawn at random."""

from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index, graph_sizes, set_ptr


class SubsamplePoints(BaseTransform):
    r"""Keep :obj:`num` of each shape's points, drawn uniformly without replacement.

    Read from a denser sample of the same surface (say 2048 points where the
    model sees 1024), a training set drawn through this transform shows every
    shape with different points each epoch (*point resampling*) while each draw
    is still a uniform sample of :obj:`num` points, as the test shapes are. With
    a :obj:`seed` the draw is fixed: the same positions for every shape of the
    same size (a uniform choice too, for a validation set); without, the global
    torch generator is used. The kept points stay in their stored order. Every
    node-level attribute (``pos``, ``normal``, ``x``, ``batch`` …) is subset
    together; shapes with :obj:`num` points or fewer are left whole; meshes
    (``face``) are refused. On a batch each graph draws its own subset and
    ``ptr`` is rebuilt. Unlike PyG's
    :class:`~torch_geometric.transforms.FixedPoints` it never duplicates points
    (duplicates bias the quadrature of an integral operator), can be seeded and
    works on batches.

    Args:
        num (int): Points to keep per shape.
        seed (int, optional): Seed of a private generator created per call.
            (default: :obj:`None`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`
        - **output:** ``pos`` :math:`(\min(N, num), 3)` per shape

    Example:
        >>> from torch_geometric.data import Data
        >>> data = Data(pos=torch.randn(2048, 3), normal=torch.randn(2048, 3))
        >>> out = SubsamplePoints(1024)(data)
        >>> out.pos.shape, out.normal.shape
        (torch.Size([1024, 3]), torch.Size([1024, 3]))
    """

    def __init__(self, num: int, seed: Optional[int] = None):
        if num < 1:
            raise ValueError(f"num must be positive, got {num}")
        self.num = int(num)
        self.seed = seed

    def forward(self, data: Data) -> Data:
        if "face" in data:
            raise ValueError("SubsamplePoints does not apply to meshes ('face')")
        num_nodes = data.num_nodes
        if not num_nodes:
            return data
        generator = None
        if self.seed is not None:
            generator = torch.Generator().manual_seed(self.seed)
        batch, _ = graph_index(data)
        counts = graph_sizes(data, "SubsamplePoints")
        if int(counts.max()) <= self.num:
            return data
        keep = torch.zeros(num_nodes, dtype=torch.bool)
        start = 0
        for count in counts.tolist():
            if count <= self.num:
                keep[start : start + count] = True
            else:
                chosen = torch.randperm(count, generator=generator)[: self.num]
                keep[start + chosen] = True
            start += count
        device = data.pos.device if data.pos is not None else keep.device
        data = data.subgraph(keep.to(device))
        if batch is not None:
            set_ptr(data, counts.clamp(max=self.num).to(batch.device))
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.num}, seed={self.seed})"
