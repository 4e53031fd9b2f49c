"""Random translation of each shape."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index, per_node


class RandomShift(BaseTransform):
    r"""Translate each shape by a random offset, uniform per axis.

    .. math::
        p_i \leftarrow p_i + t, \qquad t \sim \mathcal U[-s, s]^D

    The PointNet++ / DGCNN ModelNet augmentation (with :math:`s = 0.2`, after
    anisotropic scaling). Only ``pos`` changes; on a batch every graph gets its
    own offset. Uses the global torch generator.

    Args:
        shift (float, optional): Largest offset :math:`s` per axis.
            (default: :obj:`0.2`)

    Shapes:
        - **input / output:** ``pos`` :math:`(N, D)`

    Example:
        >>> from torch_geometric.data import Data
        >>> data = RandomShift(0.2)(Data(pos=torch.zeros(4, 3)))
        >>> bool((data.pos == data.pos[0]).all() and data.pos.abs().max() <= 0.2)
        True
    """

    def __init__(self, shift: float = 0.2):
        if shift < 0:
            raise ValueError(f"shift must be non-negative, got {shift}")
        self.shift = float(shift)

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise ValueError("RandomShift needs 'pos'")
        pos = data.pos
        batch, num_graphs = graph_index(data)
        offset = torch.rand(max(num_graphs, 1), pos.size(-1), dtype=torch.float64)
        offset = ((2 * offset - 1) * self.shift).to(pos.device, pos.dtype)
        data.pos = pos + per_node(offset, batch, pos.size(0))
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(shift={self.shift:g})"
