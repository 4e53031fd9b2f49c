"""Clipped Gaussian jitter of point positions."""

from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform


class RandomJitter(BaseTransform):
    r"""Add clipped Gaussian noise to every coordinate.

    .. math::
        p_i \leftarrow p_i + \operatorname{clip}(\sigma\,\varepsilon_i, -c, c),
        \qquad \varepsilon_i \sim \mathcal N(0, I)

    The PointNet augmentation (:math:`\sigma = 0.01`, :math:`c = 0.05`). Only
    ``pos`` changes. Uses the global torch generator.

    Args:
        sigma (float, optional): Standard deviation :math:`\sigma`.
            (default: :obj:`0.01`)
        clip (float, optional): Bound :math:`c` on each offset; :obj:`None` for
            none. (default: :obj:`0.05`)

    Shapes:
        - **input / output:** ``pos`` :math:`(N, D)`

    Example:
        >>> from torch_geometric.data import Data
        >>> data = RandomJitter(sigma=1.0, clip=0.1)(Data(pos=torch.zeros(100, 3)))
        >>> bool(data.pos.abs().max() <= 0.1)
        True
    """

    def __init__(self, sigma: float = 0.01, clip: Optional[float] = 0.05):
        if sigma < 0:
            raise ValueError(f"sigma must be non-negative, got {sigma}")
        if clip is not None and clip < 0:
            raise ValueError(f"clip must be non-negative, got {clip}")
        self.sigma = float(sigma)
        self.clip = None if clip is None else float(clip)

    def forward(self, data: Data) -> Data:
        if data.pos is None:
            raise ValueError("RandomJitter needs 'pos'")
        noise = torch.randn_like(data.pos) * self.sigma
        if self.clip is not None:
            noise = noise.clamp(-self.clip, self.clip)
        data.pos = data.pos + noise
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(sigma={self.sigma:g}, clip={self.clip})"
