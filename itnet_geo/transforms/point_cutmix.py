"""PointCutMix: swap a random share of each cloud's points for another cloud's."""

from __future__ import annotations

import torch
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

from itnet_geo.transforms._batch import graph_index, graph_sizes

#: Point-level attributes that travel with the points they belong to.
_POINT_ATTRS = ("pos", "normal", "x")


class PointCutMix(BaseTransform):
    r"""Mix the clouds of a batch pairwise by replacing points (PointCutMix-R).

    Zhang et al. 2021, random-replacement variant: with probability
    :obj:`prob` the batch is mixed; then :math:`\lambda \sim
    \mathrm{Beta}(\beta, \beta)` is drawn once, each cloud :math:`a` gets a
    partner :math:`b` (a random permutation of the batch), and
    :math:`k = \mathrm{round}(\lambda N)` of :math:`a`'s :math:`N` points,
    chosen at random, are replaced by :math:`k` random points of :math:`b`
    (``pos`` with ``normal`` and ``x`` when present). The share actually taken,
    :math:`k / N`, is stored per graph in ``mix_lambda`` and the partner's
    index in ``mix_partner``; the training loss is then
    :math:`(1 - \lambda)\,\ell(y_a) + \lambda\,\ell(y_b)`
    (:func:`~itnet_geo.train.mixed_cross_entropy`). An unmixed batch carries
    neither attribute. Needs a batch of clouds of one size (ModelNet's 1024
    points, say) without edges; uses the global torch generator.

    Args:
        prob (float, optional): Probability that a batch is mixed.
            (default: :obj:`1.0`)
        beta (float, optional): Parameter :math:`\beta` of the Beta
            distribution of :math:`\lambda`. (default: :obj:`1.0`)

    Shapes:
        - **input / output:** ``pos`` :math:`(B \cdot N, D)`;
          ``mix_lambda``, ``mix_partner`` :math:`(B,)`

    Example:
        >>> from torch_geometric.data import Batch, Data
        >>> clouds = [Data(pos=torch.full((8, 3), float(i))) for i in range(4)]
        >>> out = PointCutMix()(Batch.from_data_list(clouds))
        >>> out.mix_lambda.shape, out.pos.shape
        (torch.Size([4]), torch.Size([32, 3]))
    """

    def __init__(self, prob: float = 1.0, beta: float = 1.0):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"prob must be in [0, 1], got {prob}")
        if not beta > 0:
            raise ValueError(f"beta must be positive, got {beta}")
        self.prob = float(prob)
        self.beta = float(beta)

    def forward(self, data: Data) -> Data:
        if "face" in data or "edge_index" in data:
            raise ValueError("PointCutMix mixes point clouds, not meshes or graphs")
        batch, num_graphs = graph_index(data)
        if batch is None or num_graphs < 2:
            return data
        counts = graph_sizes(data, "PointCutMix")
        size = int(counts[0])
        if not bool((counts == size).all()):
            raise ValueError(
                "PointCutMix needs clouds of one size, got sizes "
                f"{sorted(set(counts.tolist()))}"
            )
        if float(torch.rand(())) >= self.prob:
            return data
        lam = torch.distributions.Beta(self.beta, self.beta).sample()
        k = int(round(float(lam) * size))
        partner = torch.randperm(num_graphs)
        if k > 0:
            # k random slots of each cloud, filled with k random points of its partner
            slots = torch.rand(num_graphs, size).argsort(dim=1)[:, :k]
            taken = torch.rand(num_graphs, size).argsort(dim=1)[:, :k]
            rows = torch.arange(num_graphs).unsqueeze(1)
            for name in _POINT_ATTRS:
                value = data[name] if name in data else None
                if value is None or value.size(0) != batch.numel():
                    continue
                grid = value.view(num_graphs, size, *value.shape[1:])
                mixed = grid.clone()
                device = value.device
                mixed[rows.to(device), slots.to(device)] = grid[
                    partner.unsqueeze(1).to(device), taken.to(device)
                ]
                data[name] = mixed.view_as(value)
        device = batch.device
        data.mix_partner = partner.to(device)
        data.mix_lambda = torch.full((num_graphs,), k / size, device=device)
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(prob={self.prob:g}, beta={self.beta:g})"
