r"""MeshITNet: ITConv on triangle-mesh graphs with area quadrature weights."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from itnet_geo.nn.models._blocks import (
    NORMS,
    ResidualBlock,
    batch_info,
    check_choice,
    check_pools,
    check_sizes,
    classifier_repr,
    constructor_config,
    extra_features,
    global_pool,
    itconv_options,
    make_embed,
    make_head,
    reset_children,
)


class MeshITNet(nn.Module):
    r"""Mesh classification with :class:`~itnet_geo.nn.ITConv` on the mesh graph.

    The vertices of a mesh are the quadrature points of the integral over its
    surface: with barycentric vertex areas :math:`a_j` as weights (from
    :class:`~itnet_geo.transforms.MeshToGraph`), each block evaluates

    .. math::
        f'_i = \sigma\Big(f_i + \mathrm{MLP}\Big(\sigma\Big(\mathrm{norm}
        \Big(\frac{\sum_{j \in \mathcal{N}(i)} a_j\,
        \kappa_\theta(f_i, f_j) \odot V f_j}{\sum_{j \in \mathcal{N}(i)} a_j}
        \Big)\Big)\Big)\Big)

    over the 1-ring :math:`\mathcal{N}(i)` (``measure="mean"``; other measures
    use the same weights). The vertex features start from intrinsic
    descriptors — the heat kernel signature in ``x`` — which do not change when
    a non-rigid shape changes its pose; coordinates are optional
    (:obj:`use_pos`, and ``"rel_pos"`` in :obj:`kernel_inputs`), centred and
    scaled by the square root of the surface area of each mesh. Vertex areas
    are divided by their mean per mesh, so the network does not depend on the
    mesh's size. After the blocks, the features are pooled over each mesh
    (max, and the area-weighted mean: the integral average over the surface)
    and classified by an MLP.

    Args:
        num_classes (int): Number of classes.
        in_channels (int, optional): Size of the per-vertex features ``data.x``
            (e.g. the number of HKS time scales); with 0 and no
            :obj:`use_pos`, every vertex starts from the constant 1.
            (default: :obj:`0`)
        channels (int, optional): Width of the blocks. (default: :obj:`64`)
        depth (int, optional): Number of residual ITConv blocks.
            (default: :obj:`4`)
        use_pos (bool, optional): Append the normalised coordinates to the
            vertex features (not pose-invariant). (default: :obj:`False`)
        kernel (str, optional): ITConv kernel mode. (default: :obj:`"channel"`)
        heads (int, optional): Heads of ``kernel="heads"``. (default: :obj:`4`)
        hidden (int, optional): Hidden width of the kernel MLP.
            (default: :obj:`32`)
        measure (str, optional): ITConv measure. (default: :obj:`"mean"`)
        kernel_inputs (list of str, optional): ITConv kernel inputs; add
            ``"rel_pos"`` for an extrinsic kernel.
            (default: :obj:`["x_i", "x_j"]`)
        tile_size (int, optional): Edges per tile of ITConv's fused path,
            :obj:`None` for the reference path. (default: :obj:`None`)
        expansion (int, optional): Width factor of the blocks' point-wise MLP,
            0 for none. (default: :obj:`2`)
        norm (str, optional): ``"batch"``, ``"layer"`` or ``"none"``.
            (default: :obj:`"batch"`)
        act (str, optional): Activation. (default: :obj:`"relu"`)
        pools (list of str, optional): Global poolings, concatenated.
            (default: :obj:`["max", "mean"]`)
        head_channels (list of int, optional): Hidden widths of the
            classifier MLP. (default: :obj:`[128]`)
        dropout (float, optional): Dropout of the classifier MLP.
            (default: :obj:`0.5`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` with ``pos``
          :math:`(N, 3)`, ``edge_index`` :math:`(2, E)` (mesh edges, both
          directions), ``weight`` :math:`(N,)` (vertex areas, optional), ``x``
          :math:`(N, \text{in\_channels})` and ``batch`` :math:`(N,)`
        - **output:** logits :math:`(B, \text{num\_classes})`

    Example:
        >>> from torch_geometric.data import Data
        >>> edge_index = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])
        >>> data = Data(pos=torch.randn(3, 3), edge_index=edge_index,
        ...             weight=torch.ones(3), x=torch.rand(3, 8))
        >>> model = MeshITNet(num_classes=4, in_channels=8, channels=16).eval()
        >>> model(data).shape
        torch.Size([1, 4])
    """

    name = "mesh_itnet"

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 0,
        channels: int = 64,
        depth: int = 4,
        use_pos: bool = False,
        kernel: str = "channel",
        heads: int = 4,
        hidden: int = 32,
        measure: str = "mean",
        kernel_inputs: Sequence[str] = ("x_i", "x_j"),
        tile_size: Optional[int] = None,
        expansion: int = 2,
        norm: str = "batch",
        act: str = "relu",
        pools: Sequence[str] = ("max", "mean"),
        head_channels: Sequence[int] = (128,),
        dropout: float = 0.5,
    ):
        args = dict(locals())
        super().__init__()
        #: Constructor options; ``build_model(self.name, **self.config)``
        #: rebuilds the model.
        self.config: dict[str, Any] = constructor_config(self, args)
        check_sizes(num_classes, in_channels)
        check_choice(norm, NORMS, "norm")
        self.pools = check_pools(pools)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.channels = channels
        self.use_pos = use_pos
        num_features = in_channels + (3 if use_pos else 0)
        self.constant_input = num_features == 0
        conv_options = itconv_options(
            kernel, heads, hidden, measure, kernel_inputs, tile_size
        )
        self.embed = make_embed(max(num_features, 1), channels, norm, act)
        self.blocks = nn.ModuleList(
            ResidualBlock(channels, dict(conv_options), norm, act, expansion)
            for _ in range(depth)
        )
        self.head = make_head(
            channels * len(self.pools), head_channels, num_classes, norm, act, dropout
        )
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise all learnable parameters."""
        reset_children(self)

    def forward(self, data: Any) -> Tensor:
        """Logits of each mesh of the mini-batch.

        Args:
            data: A :class:`~torch_geometric.data.Batch` (or one
                :class:`~torch_geometric.data.Data`) with ``pos``,
                ``edge_index``, ``weight`` (optional), ``x`` (when
                :obj:`in_channels` > 0) and ``batch``.
        """
        pos: Tensor = data.pos
        edge_index: Tensor = data.edge_index
        batch, batch_size = batch_info(data)
        weight: Optional[Tensor] = getattr(data, "weight", None)
        if weight is not None:
            weight = weight.view(-1).to(pos.dtype)
            if weight.numel() != pos.size(0):
                raise ValueError(
                    f"weight must hold one area per vertex ({pos.size(0)}), got "
                    f"{tuple(weight.shape)}"
                )
        count = pos.new_zeros(batch_size).index_add_(0, batch, pos.new_ones(len(pos)))
        count = count.clamp_min(1.0)
        area = (
            count
            if weight is None
            else pos.new_zeros(batch_size).index_add_(0, batch, weight)
        )
        tiny = torch.finfo(pos.dtype).tiny
        area = area.clamp_min(tiny)
        if weight is not None:  # mean 1 per mesh: independent of the mesh's size
            weight = weight * (count / area)[batch]
        # Coordinates centred and scaled per mesh by sqrt(surface area).
        centre = pos.new_zeros(batch_size, 3).index_add_(0, batch, pos)
        centre = centre / count.view(-1, 1)
        pos = (pos - centre[batch]) / area.sqrt()[batch].view(-1, 1)

        feats = []
        if self.in_channels > 0:
            feats.append(extra_features(self, data, pos.dtype))
        if self.use_pos:
            feats.append(pos)
        if self.constant_input:
            feats.append(pos.new_ones(pos.size(0), 1))
        x = self.embed(torch.cat(feats, dim=-1) if len(feats) > 1 else feats[0])
        for block in self.blocks:
            x = block(x, pos, edge_index, weight)
        pooled = global_pool(x, batch, batch_size, self.pools, weight=weight)
        return self.head(pooled)

    def __repr__(self) -> str:
        return classifier_repr(self, depth=len(self.blocks))


__all__ = ["MeshITNet"]
