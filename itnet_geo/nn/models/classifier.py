r"""ITNetClassifier: a hierarchical point-cloud classifier built from ITConv."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor, nn

from itnet_geo.nn.models._blocks import (
    NORMS,
    SAMPLERS,
    ConvUnit,
    ResidualBlock,
    ResidualMLP,
    batch_info,
    check_choice,
    check_pools,
    check_sizes,
    classifier_repr,
    constructor_config,
    extra_features,
    farthest_point_sample,
    global_pool,
    itconv_options,
    make_embed,
    make_head,
    per_stage,
    random_sample,
    reset_children,
)
from itnet_geo.nn.sampling import MonteCarlo
from itnet_geo.ops import knn, radius

#: Neighbourhoods of :class:`ITNetClassifier`.
NEIGHBORHOODS = ("knn", "radius")

#: Constructor options of :class:`ITNetClassifier` (besides ``num_classes`` and
#: ``in_channels``), by preset name. ``"cpu-1h"`` is tuned for accuracy per
#: CPU-second (one CPU-hour on ModelNet40 with two cores): 512 centres in the
#: first stage with no block there, grouped (``heads``) softmax kernels with a
#: small hidden width, the fused path, Monte Carlo subsampling of half of each
#: neighbourhood during training (exact sums in evaluation) and farthest point
#: sampling (a uniform random sampler trains faster per step but reached a
#: clearly lower accuracy for the same CPU time). ``"default"`` adds a block at
#: the first stage and a wider kernel and sums exactly; ``"large"`` trades speed
#: for accuracy. ``"smoke"`` is the smallest model that runs the whole path (two
#: narrow stages, no blocks), for smoke tests and ``--smoke`` runs of seconds.
# What the three accuracy presets share: grouped softmax kernels, the fused
# path, FPS, three stages keeping 1/2, 1/8 and 1/32 of the points.
_PRESET_COMMON: dict[str, Any] = {
    "ratios": [0.5, 0.25, 0.25],
    "kernel": "heads",
    "measure": "softmax",
    "expansion": 2,
    "down_mlp": True,
    "tile_size": 32768,
    "sampler": "fps",
    "dropout": 0.5,
}

PRESETS: dict[str, dict[str, Any]] = {
    "cpu-1h": {
        **_PRESET_COMMON,
        "embed_channels": 32,
        "channels": [64, 128, 256],
        "k": [16, 16, 16],
        "depth": [0, 1, 1],
        "heads": 8,
        "hidden": 16,
        "mc_ratio": 0.5,
        "head_channels": [256],
    },
    "default": {
        **_PRESET_COMMON,
        "embed_channels": 32,
        "channels": [64, 128, 256],
        "k": [16, 16, 16],
        "depth": [1, 1, 1],
        "heads": 8,
        "hidden": 32,
        "head_channels": [256],
    },
    "large": {
        **_PRESET_COMMON,
        "embed_channels": 64,
        "channels": [96, 192, 384],
        "k": [20, 16, 16],
        "depth": [1, 2, 1],
        "heads": 12,
        "hidden": 32,
        "head_channels": [512, 256],
    },
    "smoke": {
        "embed_channels": 8,
        "channels": [16, 32],
        "ratios": [0.5, 0.25],
        "k": 8,
        "depth": 0,
        "hidden": 8,
        "heads": 4,
        "head_channels": [32],
    },
}


class ITNetClassifier(nn.Module):
    r"""A hierarchical point-cloud classifier made of :class:`~itnet_geo.nn.ITConv`.

    Every stage :math:`s` keeps a subset of the points (farthest point sampling
    or a uniform random subset, :math:`\lceil r_s n \rceil` per cloud), gathers
    for each kept point (centre) its :math:`k_s` nearest points of the previous
    stage (or those within a radius) as a bipartite graph, and integrates over
    them,

    .. math::
        f^{(s)}_i = \sigma\Big(\mathrm{norm}\Big(\sum_{j \in \mathcal{N}_s(i)}
        w_{ij}\, \kappa_\theta\big(\lambda_s (p_j - p_i), f_i, f_j\big)
        \odot V f_j\Big) + S f_i\Big),

    followed by a residual point-wise MLP (:obj:`down_mlp`) and :math:`d_s`
    residual ITConv blocks on the centres' own :math:`k_s`-NN graph (each an
    ITConv and a point-wise inverted-bottleneck MLP). Positions are scaled per
    graph by :math:`\lambda = \text{pos\_scale} \cdot \sqrt{N_{src} / k}`
    (the inverse of the typical neighbourhood radius of a unit-size shape;
    :math:`1 / r` for radius neighbourhoods), so that the kernel sees relative
    positions of order one at every stage. The point features start as a
    point-wise embedding of the coordinates (and of ``x``); the last stage is
    pooled globally (max and mean) and classified by an MLP with dropout.

    For speed on CPUs use the fused path (:obj:`tile_size`, whole k-NN
    neighbourhoods evaluated as dense blocks), few points in the first stage
    and ``kernel="heads"`` with a small :obj:`hidden`; see :data:`PRESETS`.

    Args:
        num_classes (int): Number of classes.
        in_channels (int, optional): Size of the extra per-point features
            ``data.x`` (e.g. 3 for normals), 0 for coordinates only.
            (default: :obj:`0`)
        num_points (int, optional): Points per cloud the position scales are
            computed for. (default: :obj:`1024`)
        embed_channels (int, optional): Width of the point-wise embedding.
            (default: :obj:`32`)
        channels (list of int, optional): Width of each stage.
            (default: :obj:`[64, 128, 256]`)
        ratios (float or list, optional): Fraction of the points kept by each
            stage (1 keeps all). (default: :obj:`[0.5, 0.25, 0.25]`)
        k (int or list, optional): Neighbours per point and stage.
            (default: :obj:`16`)
        depth (int or list, optional): Residual blocks per stage after its
            down-sampling convolution. (default: :obj:`1`)
        neighborhood (str, optional): ``"knn"`` or ``"radius"``.
            (default: :obj:`"knn"`)
        radius (float or list, optional): Radius per stage for
            ``neighborhood="radius"`` (the blocks use twice the radius of
            their stage's sampling step). (default: :obj:`None`)
        max_neighbors (int, optional): At most this many neighbours with
            ``neighborhood="radius"``. (default: :obj:`32`)
        sampler (str, optional): ``"fps"`` (farthest points, random start in
            training, first point in evaluation) or ``"random"`` (a uniform
            subset in training, a fixed subset per cloud size in evaluation).
            (default: :obj:`"fps"`)
        kernel (str, optional): ITConv kernel mode. (default: :obj:`"heads"`)
        heads (int, optional): Heads of ``kernel="heads"``. (default: :obj:`8`)
        hidden (int or list, optional): Hidden width of the kernel MLP, per
            stage or for all. (default: :obj:`16`)
        measure (str, optional): ITConv measure. (default: :obj:`"softmax"`)
        kernel_inputs (list of str, optional): ITConv kernel inputs.
            (default: :obj:`["rel_pos", "x_i", "x_j"]`)
        value_pos (bool or str, optional): A positional term of every
            ITConv's value, :math:`V f_j + \pi(p_j - p_i)`, so that the integral
            carries the neighbourhood's shape and not only a weighting of its
            features: ``"linear"``, a linear map of each layer's own (no cost
            per edge on the fused path), or :obj:`True` / ``"kernel"``, the
            kernel's positional embedding as in Point Transformer (then
            :obj:`hidden` must equal :obj:`channels` stage by stage).
            (default: :obj:`False`)
        tile_size (int, optional): Edges per tile of ITConv's fused path,
            :obj:`None` for the reference path. (default: :obj:`32768`)
        mc_ratio (float, optional): Fraction of each neighbourhood kept by
            Monte Carlo subsampling during training
            (:class:`~itnet_geo.nn.MonteCarlo`); 1 for the exact sum.
            (default: :obj:`1.0`)
        expansion (int, optional): Width factor of the point-wise MLPs, 0 for
            none. (default: :obj:`2`)
        down_mlp (bool, optional): Follow each down-sampling convolution by a
            residual point-wise MLP. (default: :obj:`True`)
        pos_scale (float, optional): Multiplies the automatic position scales;
            :obj:`None` feeds raw coordinates. (default: :obj:`1.0`)
        norm (str, optional): ``"batch"``, ``"layer"`` or ``"none"``.
            (default: :obj:`"batch"`)
        act (str, optional): Activation. (default: :obj:`"relu"`)
        pools (list of str, optional): Global poolings, concatenated.
            (default: :obj:`["max", "mean"]`)
        head_channels (list of int, optional): Hidden widths of the
            classifier MLP. (default: :obj:`[256]`)
        dropout (float, optional): Dropout of the classifier MLP.
            (default: :obj:`0.5`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Batch` (or
          :class:`~torch_geometric.data.Data`) with ``pos`` :math:`(N, 3)`,
          ``batch`` :math:`(N,)` (sorted; optional for one cloud) and, when
          :obj:`in_channels` > 0, ``x`` :math:`(N, \text{in\_channels})`
        - **output:** logits :math:`(B, \text{num\_classes})`

    Example:
        >>> from torch_geometric.data import Batch, Data
        >>> data = Batch.from_data_list(
        ...     [Data(pos=torch.randn(64, 3)) for _ in range(2)])
        >>> model = ITNetClassifier(num_classes=5, channels=[16, 32],
        ...                         ratios=[0.5, 0.25], k=8, embed_channels=8,
        ...                         num_points=64)
        >>> model(data).shape
        torch.Size([2, 5])
    """

    name = "itnet_classifier"

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 0,
        num_points: int = 1024,
        embed_channels: int = 32,
        channels: Sequence[int] = (64, 128, 256),
        ratios: float | Sequence[float] = (0.5, 0.25, 0.25),
        k: int | Sequence[int] = 16,
        depth: int | Sequence[int] = 1,
        neighborhood: str = "knn",
        radius: Optional[float | Sequence[float]] = None,
        max_neighbors: int = 32,
        sampler: str = "fps",
        kernel: str = "heads",
        heads: int = 8,
        hidden: int | Sequence[int] = 16,
        measure: str = "softmax",
        kernel_inputs: Sequence[str] = ("rel_pos", "x_i", "x_j"),
        value_pos: bool | str = False,
        tile_size: Optional[int] = 32768,
        mc_ratio: float = 1.0,
        expansion: int = 2,
        down_mlp: bool = True,
        pos_scale: Optional[float] = 1.0,
        norm: str = "batch",
        act: str = "relu",
        pools: Sequence[str] = ("max", "mean"),
        head_channels: Sequence[int] = (256,),
        dropout: float = 0.5,
    ):
        args = dict(locals())
        super().__init__()
        #: Constructor options; ``build_model(self.name, **self.config)``
        #: rebuilds the model.
        self.config: dict[str, Any] = constructor_config(self, args)
        check_sizes(num_classes, in_channels)
        channels = [int(c) for c in channels]
        num_stages = len(channels)
        if num_stages == 0:
            raise ValueError("channels must name at least one stage")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.num_points = num_points
        self.channels = channels
        self.ratios = [float(r) for r in per_stage(ratios, num_stages, "ratios")]
        self.k = [int(v) for v in per_stage(k, num_stages, "k")]
        self.depth = [int(v) for v in per_stage(depth, num_stages, "depth")]
        self.hidden = [int(v) for v in per_stage(hidden, num_stages, "hidden")]
        if value_pos in (True, "kernel") and self.hidden != channels:
            raise ValueError(
                "value_pos adds the kernel's hidden layer to the value: hidden must "
                f"equal channels stage by stage, got hidden={self.hidden} and "
                f"channels={channels}"
            )
        self.neighborhood = check_choice(neighborhood, NEIGHBORHOODS, "neighborhood")
        self.sampler = check_choice(sampler, SAMPLERS, "sampler")
        check_choice(norm, NORMS, "norm")
        self.pools = check_pools(pools)
        for r in self.ratios:
            if not 0.0 < r <= 1.0:
                raise ValueError(f"ratios must lie in (0, 1], got {self.ratios}")
        if not 0.0 < mc_ratio <= 1.0:
            raise ValueError(f"mc_ratio must lie in (0, 1], got {mc_ratio}")
        if neighborhood == "radius":
            if radius is None:
                raise ValueError("neighborhood='radius' needs radius")
            self.radius = [float(r) for r in per_stage(radius, num_stages, "radius")]
        else:
            self.radius = None
        self.max_neighbors = max_neighbors

        # Position scale of each stage's down-sampling graph and block graph.
        sizes = [float(num_points)]
        for r in self.ratios:
            sizes.append(math.ceil(sizes[-1] * r))
        self.trans_scale: list[float] = []
        self.block_scale: list[float] = []
        for s in range(num_stages):
            if pos_scale is None:
                t, b = 1.0, 1.0
            elif self.radius is not None:
                t, b = 1.0 / self.radius[s], 0.5 / self.radius[s]
            else:
                t = math.sqrt(sizes[s] / self.k[s])
                b = math.sqrt(sizes[s + 1] / self.k[s])
            scale = 1.0 if pos_scale is None else float(pos_scale)
            self.trans_scale.append(t * scale)
            self.block_scale.append(b * scale)

        def options(stage: int) -> dict[str, Any]:
            opts = itconv_options(
                kernel, heads, self.hidden[stage], measure, kernel_inputs, tile_size
            )
            if value_pos:
                opts["value_pos"] = value_pos
            if mc_ratio < 1.0:
                opts["mc"] = MonteCarlo(ratio=mc_ratio)
            return opts

        self.embed = make_embed(3 + in_channels, embed_channels, norm, act)
        self.down = nn.ModuleList()
        self.down_mlp = nn.ModuleList()
        self.blocks = nn.ModuleList()
        width = embed_channels
        for s, c in enumerate(channels):
            self.down.append(ConvUnit(width, c, options(s), norm, act, shortcut=True))
            self.down_mlp.append(
                ResidualMLP(c, expansion, norm, act)
                if down_mlp and expansion > 0
                else nn.Identity()
            )
            self.blocks.append(
                nn.ModuleList(
                    ResidualBlock(c, options(s), norm, act, expansion)
                    for _ in range(self.depth[s])
                )
            )
            width = c
        self.head = make_head(
            width * len(self.pools), head_channels, num_classes, norm, act, dropout
        )
        self.reset_parameters()

    @classmethod
    def from_preset(
        cls, name: str, num_classes: int, in_channels: int = 0, **overrides: Any
    ) -> ITNetClassifier:
        """Build the model of preset :obj:`name` (see :data:`PRESETS`).

        Args:
            name (str): ``"cpu-1h"``, ``"default"``, ``"large"`` or ``"smoke"``.
            num_classes (int): Number of classes.
            in_channels (int, optional): Extra per-point features.
                (default: :obj:`0`)
            **overrides: Constructor options replacing the preset's.
        """
        if name not in PRESETS:
            raise ValueError(
                f"unknown preset {name!r}; expected one of {list(PRESETS)}"
            )
        options = {**PRESETS[name], **overrides}
        return cls(num_classes=num_classes, in_channels=in_channels, **options)

    def reset_parameters(self):
        """Re-initialise all learnable parameters."""
        reset_children(self)

    # ------------------------------------------------------------------ graph
    def _sample(self, pos: Tensor, batch: Tensor, batch_size: int, ratio: float):
        if ratio >= 1.0:
            return None
        if self.sampler == "fps":
            return farthest_point_sample(
                pos.detach(), batch, batch_size, ratio, random_start=self.training
            )
        return random_sample(batch, batch_size, ratio, deterministic=not self.training)

    def _graph(
        self,
        pos_src: Tensor,
        pos_dst: Tensor,
        batch_src: Tensor,
        batch_dst: Tensor,
        batch_size: int,
        stage: int,
        radius_factor: float,
    ) -> Tensor:
        """Edges source -> target (row 0 the source), grouped by target."""
        if self.radius is not None:
            pairs = radius(
                pos_src.detach(),
                pos_dst.detach(),
                self.radius[stage] * radius_factor,
                batch_src,
                batch_dst,
                max_num_neighbors=self.max_neighbors,
                batch_size=batch_size,
            )
        else:
            pairs = knn(
                pos_src.detach(),
                pos_dst.detach(),
                self.k[stage],
                batch_src,
                batch_dst,
                batch_size=batch_size,
            )
        return torch.stack([pairs[1], pairs[0]], dim=0)

    # ---------------------------------------------------------------- forward
    def forward(self, data: Any) -> Tensor:
        """Logits of each cloud of the mini-batch.

        Args:
            data: A :class:`~torch_geometric.data.Batch` (or one
                :class:`~torch_geometric.data.Data`) with ``pos``, ``batch`` and,
                when :obj:`in_channels` > 0, ``x``.
        """
        pos: Tensor = data.pos
        if pos.dim() != 2 or pos.size(-1) != 3:
            raise ValueError(f"pos must have shape (N, 3), got {tuple(pos.shape)}")
        batch, batch_size = batch_info(data)
        feats = [pos]
        if self.in_channels > 0:
            feats.append(extra_features(self, data, pos.dtype))
        x = self.embed(torch.cat(feats, dim=-1) if len(feats) > 1 else pos)

        for s in range(len(self.channels)):
            idx = self._sample(pos, batch, batch_size, self.ratios[s])
            if idx is None:
                pos_c, batch_c, x_c = pos, batch, x
            else:
                pos_c, batch_c, x_c = pos[idx], batch[idx], x[idx]
            edges = self._graph(pos, pos_c, batch, batch_c, batch_size, s, 1.0)
            t = self.trans_scale[s]
            x = self.down_mlp[s](self.down[s]((x, x_c), (pos * t, pos_c * t), edges))
            pos, batch = pos_c, batch_c
            if len(self.blocks[s]) > 0:
                edges = self._graph(pos, pos, batch, batch, batch_size, s, 2.0)
                pos_b = pos * self.block_scale[s]
                for block in self.blocks[s]:
                    x = block(x, pos_b, edges)

        pooled = global_pool(x, batch, batch_size, self.pools)
        return self.head(pooled)

    def __repr__(self) -> str:
        return classifier_repr(self, k=self.k)


__all__ = ["ITNetClassifier", "PRESETS", "NEIGHBORHOODS"]
