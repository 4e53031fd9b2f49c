"""Random per-axis scaling of positions (normals follow the inverse transpose)."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index, per_node


class RandomAnisotropicScale(BaseTransform):
    r"""Scale each axis by its own random factor, drawn uniformly in ``[lo, hi]``.

    .. math::
        p_i \leftarrow S\,p_i, \qquad
        n_i \leftarrow \frac{S^{-1} n_i}{\lVert S^{-1} n_i \rVert_2}, \qquad
        S = \operatorname{diag}(s_x, s_y, s_z),\; s \sim \mathcal U[lo, hi]^3

    The standard ModelNet augmentation (PointNet++, DGCNN use ``[2/3, 3/2]``).
    Normals are mapped by the inverse transpose of :math:`S` so they stay
    perpendicular to the scaled surface. On a batch every graph gets its own
    factors. Uses the global torch generator.

    Args:
        lo (float, optional): Smallest factor. (default: :obj:`2/3`)
        hi (float, optional): Largest factor. (default: :obj:`3/2`)

    Shapes:
        - **input / output:** ``pos`` and ``normal`` :math:`(N, D)`

    Example:
        >>> from torch_geometric.data import Data
        >>> data = RandomAnisotropicScale(2.0, 2.0)(Data(pos=torch.ones(1, 3)))
        >>> data.pos.tolist()
        [[2.0, 2.0, 2.0]]
    """

    def __init__(self, lo: float = 2.0 / 3.0, hi: float = 3.0 / 2.0):
        if not 0 < lo <= hi:
            raise ValueError(f"need 0 < lo <= hi, got lo={lo}, hi={hi}")
        self.lo = float(lo)
        self.hi = float(hi)

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise ValueError("RandomAnisotropicScale needs 'pos'")
        pos = data.pos
        batch, num_graphs = graph_index(data)
        num_graphs = max(num_graphs, 1)
        scale = torch.rand(num_graphs, pos.size(-1), dtype=torch.float64)
        scale = self.lo + (self.hi - self.lo) * scale
        scale = scale.to(pos.device, pos.dtype)
        data.pos = pos * per_node(scale, batch, pos.size(0))
        normal = data.normal if "normal" in data else None
        if normal is not None:
            n = normal / per_node(scale.to(normal.dtype), batch, normal.size(0))
            data.normal = torch.nn.functional.normalize(n, dim=-1)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(lo={self.lo:g}, hi={self.hi:g})"
