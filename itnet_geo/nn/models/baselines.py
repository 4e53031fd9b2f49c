r"""Reference peers, trainable and checkpointable like the ITNet models.

PointNet++ (SSG) and DGCNN exactly as PyG builds them in
``examples/pointnet2_classification.py`` and ``examples/dgcnn_classification.py``,
with :mod:`itnet_geo.ops` neighbours (torch-cluster when installed, else the pure
path) so they run without pyg-lib. Farthest point sampling starts from a random
point, as in PyG's example, drawn from torch's generator (so seeded runs repeat),
on the batched pure path (faster on CPU than torch-cluster's kernel). They
carry a ``name`` and a ``config`` like
:class:`~itnet_geo.nn.models.ITNetClassifier`, so ``itnet-geo train --model
pointnet2_ssg`` trains them with the same loop, data and checkpoints, and
``benchmarks/models.py`` / ``benchmarks/budget.py`` compare against them.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import MLP, EdgeConv, PointNetConv, global_max_pool

from itnet_geo.nn.models._blocks import batch_info, check_sizes, farthest_point_sample
from itnet_geo.ops import knn, radius


def _points(data: Any) -> tuple[Tensor, Tensor, int, Optional[Tensor]]:
    batch, num_graphs = batch_info(data)
    return data.pos, batch, num_graphs, getattr(data, "x", None)


class _SetAbstraction(nn.Module):
    """PointNet++ set abstraction: FPS centres, radius ball, ``PointNetConv``."""

    def __init__(self, ratio: float, r: float, mlp: nn.Module):
        super().__init__()
        self.ratio = ratio
        self.r = r
        self.conv = PointNetConv(mlp, add_self_loops=False)

    def forward(
        self, x: Optional[Tensor], pos: Tensor, batch: Tensor, num_graphs: int
    ) -> tuple[Tensor, Tensor, Tensor]:
        idx = farthest_point_sample(pos, batch, num_graphs, self.ratio, True)
        row, col = radius(
            pos, pos[idx], self.r, batch, batch[idx], max_num_neighbors=64
        )
        edge_index = torch.stack([col, row], dim=0)
        x_dst = None if x is None else x[idx]
        x = self.conv((x, x_dst), (pos, pos[idx]), edge_index)
        return x, pos[idx], batch[idx]


class PointNet2SSG(nn.Module):
    r"""PointNet++ single-scale grouping, as in PyG's PointNet++ example.

    The architecture of PyG's ``examples/pointnet2_classification.py``:

    two set abstractions (ratios 0.5 / 0.25, radii 0.2 / 0.4, at most 64
    neighbours, MLPs ``[3+C, 64, 64, 128]`` and ``[128+3, 128, 128, 256]``), a
    global set abstraction ``[256+3, 256, 512, 1024]`` with max pooling and an
    MLP head ``[1024, 512, 256, K]`` with dropout 0.5 (1.46 M parameters for
    40 classes).

    Args:
        num_classes (int): Output classes :math:`K`.
        in_channels (int, optional): Point features :math:`C` besides ``pos``
            (e.g. 3 for normals); 0 for xyz only. (default: :obj:`0`)
        **kwargs: Ignored options of other point models (e.g. ``num_points``),
            so the training command can pass them uniformly.

    Shapes:
        - **input:** a PyG batch with ``pos`` :math:`(N, 3)`, ``batch``, and
          ``x`` :math:`(N, C)` when :obj:`in_channels` > 0
        - **output:** logits :math:`(B, K)`

    Example:
        >>> from torch_geometric.data import Batch, Data
        >>> model = PointNet2SSG(num_classes=4).eval()
        >>> data = Batch.from_data_list([Data(pos=torch.rand(64, 3))] * 2)
        >>> model(data).shape
        torch.Size([2, 4])
    """

    name = "pointnet2_ssg"

    def __init__(self, num_classes: int, in_channels: int = 0, **kwargs: Any):
        super().__init__()
        check_sizes(num_classes, in_channels)
        #: Constructor options; ``build_model(self.name, **self.config)``
        #: rebuilds the model.
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "in_channels": in_channels,
        }
        self.in_channels = in_channels
        self.sa1 = _SetAbstraction(0.5, 0.2, MLP([in_channels + 3, 64, 64, 128]))
        self.sa2 = _SetAbstraction(0.25, 0.4, MLP([128 + 3, 128, 128, 256]))
        self.sa3 = MLP([256 + 3, 256, 512, 1024])
        self.head = MLP([1024, 512, 256, num_classes], dropout=0.5, norm=None)

    def forward(self, data: Any) -> Tensor:
        pos, batch, num_graphs, x = _points(data)
        x = x if self.in_channels > 0 else None
        x, pos, batch = self.sa1(x, pos, batch, num_graphs)
        x, pos, batch = self.sa2(x, pos, batch, num_graphs)
        x = global_max_pool(self.sa3(torch.cat([x, pos], dim=1)), batch)
        return self.head(x)


class _DynamicEdgeConv(nn.Module):
    """PyG's ``DynamicEdgeConv``: k-NN in feature space (self included), max."""

    def __init__(self, mlp: nn.Module, k: int):
        super().__init__()
        self.conv = EdgeConv(mlp, aggr="max")
        self.k = k

    def forward(self, x: Tensor, batch: Tensor) -> Tensor:
        edge_index = knn(x, x, self.k, batch, batch).flip([0])
        return self.conv(x, edge_index)


class DGCNN(nn.Module):
    r"""DGCNN as in PyG's ``examples/dgcnn_classification.py``.

    Two dynamic ``EdgeConv`` layers (k-NN graphs rebuilt in feature space,
    MLPs ``[2·(3+C), 64, 64, 64]`` and ``[2·64, 128]``, max aggregation), a
    linear layer to 1024 channels, global max pooling and an MLP head
    ``[1024, 512, 256, K]`` with dropout 0.5.

    Args:
        num_classes (int): Output classes :math:`K`.
        in_channels (int, optional): Point features :math:`C` besides ``pos``.
            (default: :obj:`0`)
        k (int, optional): Neighbours per point. (default: :obj:`20`)
        **kwargs: Ignored options of other point models (e.g. ``num_points``).

    Shapes:
        - **input:** a PyG batch with ``pos`` :math:`(N, 3)` and ``batch``
        - **output:** logits :math:`(B, K)`

    Example:
        >>> from torch_geometric.data import Batch, Data
        >>> model = DGCNN(num_classes=4, k=8).eval()
        >>> data = Batch.from_data_list([Data(pos=torch.rand(32, 3))] * 2)
        >>> model(data).shape
        torch.Size([2, 4])
    """

    name = "dgcnn"

    def __init__(
        self, num_classes: int, in_channels: int = 0, k: int = 20, **kwargs: Any
    ):
        super().__init__()
        check_sizes(num_classes, in_channels)
        if k < 1:
            raise ValueError(f"k must be positive, got {k}")
        #: Constructor options; ``build_model(self.name, **self.config)``
        #: rebuilds the model.
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "k": k,
        }
        self.in_channels = in_channels
        self.conv1 = _DynamicEdgeConv(MLP([2 * (3 + in_channels), 64, 64, 64]), k)
        self.conv2 = _DynamicEdgeConv(MLP([2 * 64, 128]), k)
        self.lin1 = nn.Linear(128 + 64, 1024)
        self.head = MLP([1024, 512, 256, num_classes], dropout=0.5, norm=None)

    def forward(self, data: Any) -> Tensor:
        pos, batch, _, x = _points(data)
        h = torch.cat([pos, x], dim=1) if self.in_channels > 0 else pos
        x1 = self.conv1(h, batch)
        x2 = self.conv2(x1, batch)
        out = self.lin1(torch.cat([x1, x2], dim=1))
        return self.head(global_max_pool(out, batch))


__all__ = ["PointNet2SSG", "DGCNN"]
