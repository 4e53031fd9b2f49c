"""Centre a shape and scale it into the unit sphere."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index


class NormalizeUnitSphere(BaseTransform):
    r"""Translate each shape to its centroid and scale it to unit radius.

    .. math::
        p_i \leftarrow \frac{p_i - \bar p}{\max_j \lVert p_j - \bar p \rVert_2},
        \qquad \bar p = \frac{1}{N} \sum_j p_j

    Like PyG's :class:`~torch_geometric.transforms.NormalizeScale`, but the farthest
    point lands on the unit sphere rather than the unit cube. Scaling is uniform,
    so normals, faces and every other attribute are unchanged. A shape whose
    points all coincide is only centred. On a batch each graph is normalised on
    its own. Statistics are taken in ``float64`` (raw ModelNet coordinates reach
    :math:`10^5`).

    Shapes:
        - **input / output:** ``pos`` :math:`(N, 3)` (any point dimension works)

    Example:
        >>> from torch_geometric.data import Data
        >>> data = NormalizeUnitSphere()(Data(pos=torch.tensor([[2.0, 0], [4, 0]])))
        >>> data.pos.tolist()
        [[-1.0, 0.0], [1.0, 0.0]]
    """

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise ValueError("NormalizeUnitSphere needs 'pos'")
        pos = data.pos
        if pos.numel() == 0:
            return data
        p = pos.to(torch.float64)
        batch, num_graphs = graph_index(data)
        if batch is None:
            centred = p - p.mean(dim=0, keepdim=True)
            radius = centred.norm(dim=1).max().reshape(1)
            radius = torch.where(radius > 0, radius, torch.ones_like(radius))
            data.pos = (centred / radius).to(pos.dtype)
            return data
        count = torch.zeros(num_graphs, dtype=p.dtype, device=p.device)
        count.index_add_(0, batch, torch.ones_like(p[:, 0]))
        total = torch.zeros(num_graphs, p.size(1), dtype=p.dtype, device=p.device)
        total.index_add_(0, batch, p)
        centre = total / count.clamp(min=1).unsqueeze(1)
        centred = p - centre[batch]
        radius = torch.zeros(num_graphs, dtype=p.dtype, device=p.device)
        radius = radius.scatter_reduce(
            0, batch, centred.norm(dim=1), reduce="amax", include_self=True
        )
        radius = torch.where(radius > 0, radius, torch.ones_like(radius))
        data.pos = (centred / radius[batch].unsqueeze(1)).to(pos.dtype)
        return data
