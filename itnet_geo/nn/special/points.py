r"""Point-cloud layers of PyG as exact :class:`~itnet_geo.nn.ITConv` special cases.

Each ``from_*`` function takes a constructed PyG layer and returns a small module
that holds an :class:`~itnet_geo.nn.ITConv` (as ``.conv``), is called exactly like
the PyG layer and computes the same function, gradients included. The weights are
*copied* (after the ITConv is constructed, since its ``__init__`` resets them): the
result shares no parameter with the PyG layer.

The PyG layers' first linear layer acts on a concatenation of per-edge blocks
(:math:`[x_j, p_j - p_i]`, :math:`[x_i, x_j - x_i]`, …), so it splits by
linearity into the ITConv kernel's per-node terms (``kernel_nn.lin_i``,
``lin_j``, ``lin_d``, ``pos_term``, ``bias``); the rest of the network becomes
the kernel head. A network that does not begin with a linear layer (or no network
at all) is still exact: the converter inserts an identity first layer and the
whole network becomes the head.

Exactness of the kernel head:

* The reference path (``conv.tile_size = None``) hands the head all edges at once
  in PyG's edge order, so it is exact for any head, also in training mode
  (BatchNorm batch statistics over the edges, running statistics included).
  Dropout in training mode draws its own masks (same distribution, not the same
  numbers as the PyG layer).
* The fused path (``conv.tile_size = int``) evaluates the head tile by tile and
  recomputes it in backward, so the head must act on each edge independently and
  deterministically: BatchNorm in eval mode with running statistics (an affine
  map), LayerNorm per node, activations, linear layers. The wrappers refuse the
  fused path (``ValueError``) when the head holds BatchNorm in training mode (or
  without running statistics), dropout in training mode, or a PyG norm that
  normalises across edges (``GraphNorm``, ``InstanceNorm``, ``LayerNorm(mode=
  "graph")``, …). Calling ``.conv`` directly bypasses that check.

Only ``torch.Tensor`` edge indices are accepted (no ``SparseTensor``), and only
``flow="source_to_target"``: a ``"target_to_source"`` layer equals the
default-flow layer on ``edge_index.flip(0)``.
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MLP, EdgeConv, NNConv, PointNetConv, PointTransformerConv
from torch_geometric.nn import norm as pyg_norm
from torch_geometric.nn.aggr import MaxAggregation, MeanAggregation, SumAggregation
from torch_geometric.nn.dense.linear import Linear as PyGLinear
from torch_geometric.utils import add_self_loops, remove_self_loops

from itnet_geo.nn.conv import ITConv

PairOptTensor = tuple[Optional[Tensor], Optional[Tensor]]

_LINEAR = (nn.Linear, PyGLinear)
#: PyG norms whose statistics span several rows (edges): never per-edge.
_CROSS_ROW_NORMS = (
    pyg_norm.GraphNorm,
    pyg_norm.InstanceNorm,
    pyg_norm.PairNorm,
    pyg_norm.MeanSubtractionNorm,
    pyg_norm.DiffGroupNorm,
    pyg_norm.GraphSizeNorm,
)


# ---------------------------------------------------------------- small modules
class _Rows(nn.Module):
    """Apply a module made for ``(E, F)`` inputs to ``(..., F)`` inputs.

    The fused path evaluates regular neighbourhoods as ``(n, k, F)`` blocks;
    flattening the leading dimensions keeps e.g. ``BatchNorm1d`` row-wise.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        out = self.module(x.reshape(math.prod(lead), x.size(-1)))
        return out.reshape(*lead, out.size(-1))


class _NegatedInput(nn.Module):
    """``module(-r)``: PyG's Point Transformer embeds :math:`p_i - p_j`."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, rel_pos: Tensor) -> Tensor:
        return self.module(-rel_pos)


class _SwapMatrix(nn.Module):
    """Reorder per-edge matrices from NNConv's (C_in, C_out) to (C_out, C_in)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, w: Tensor) -> Tensor:
        w = w.unflatten(-1, (self.in_channels, self.out_channels))
        return w.transpose(-1, -2).flatten(-2)


class _MLPTail(nn.Module):
    """PyG's :class:`~torch_geometric.nn.MLP` forward after its first linear layer.

    Holds deep copies of the MLP's modules; the arithmetic mirrors
    ``MLP.forward`` (act first or not, norms, dropout, ``plain_last``).
    """

    def __init__(self, mlp: MLP):
        super().__init__()
        self.lins = nn.ModuleList(copy.deepcopy(lin) for lin in mlp.lins[1:])
        self.norms = copy.deepcopy(mlp.norms)
        self.act = copy.deepcopy(mlp.act)
        self.act_first = mlp.act_first
        self.plain_last = mlp.plain_last
        self.dropout = list(mlp.dropout)
        self.supports_norm_batch = mlp.supports_norm_batch
        self.num_lins = len(mlp.lins)

    @property
    def is_identity(self) -> bool:
        return self.num_lins == 1 and self.plain_last and self.dropout[-1] == 0.0

    def forward(self, x: Tensor) -> Tensor:
        for i, norm in enumerate(self.norms):
            if i > 0:
                x = self.lins[i - 1](x)
            if self.act is not None and self.act_first:
                x = self.act(x)
            x = norm(x, None, None) if self.supports_norm_batch else norm(x)
            if self.act is not None and not self.act_first:
                x = self.act(x)
            x = F.dropout(x, p=self.dropout[i], training=self.training)
        if self.plain_last:
            if self.num_lins > 1:
                x = self.lins[-1](x)
            x = F.dropout(x, p=self.dropout[-1], training=self.training)
        return x


# --------------------------------------------------------------------- helpers
def _weight(lin: nn.Module) -> tuple[Tensor, Optional[Tensor]]:
    weight = lin.weight
    if isinstance(weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"{lin} is lazily initialised; run the PyG layer once before converting"
        )
    return weight, lin.bias


def _split_first_linear(
    module: nn.Module,
) -> Optional[tuple[nn.Module, Optional[nn.Module]]]:
    """The first linear layer of :obj:`module` and a deep copy of the rest.

    Returns :obj:`None` when :obj:`module` does not begin with a linear layer; the
    rest is :obj:`None` when nothing follows it.
    """
    if isinstance(module, _LINEAR):
        return module, None
    if isinstance(module, MLP):
        tail = _MLPTail(module)
        return module.lins[0], (None if tail.is_identity else tail)
    if isinstance(module, nn.Sequential) and len(module) > 0:
        split = _split_first_linear(module[0])
        if split is None:
            return None
        first, rest0 = split
        rest = [] if rest0 is None else [rest0]
        rest += [copy.deepcopy(mod) for mod in list(module)[1:]]
        return first, (nn.Sequential(*rest) if rest else None)
    return None


def _reference(module: nn.Module) -> dict:
    """``dtype``/``device`` of the PyG layer's parameters."""
    for p in module.parameters():
        if not isinstance(p, nn.parameter.UninitializedParameter):
            return {"dtype": p.dtype, "device": p.device}
    return {"dtype": torch.get_default_dtype(), "device": torch.device("cpu")}


def _width(module: nn.Module, in_width: int, like: dict) -> int:
    """Output width of a row-wise module, probed on a throwaway copy."""
    probe = copy.deepcopy(module).eval()
    with torch.no_grad():
        return int(probe(torch.zeros(2, in_width, **like)).size(-1))


class _FirstLayer:
    """A network split into its first (linear) layer and the kernel head."""

    def __init__(
        self,
        module: Optional[nn.Module],
        in_width: Optional[int],
        like: dict,
        what: str,
    ):
        split = None if module is None else _split_first_linear(module)
        if split is not None:
            first, rest = split
            weight, bias = _weight(first)
            if in_width is not None and weight.size(1) != in_width:
                raise ValueError(
                    f"the first linear layer of {what} takes {weight.size(1)} "
                    f"inputs, expected {in_width}"
                )
            self.weight = weight.detach()
            self.bias = None if bias is None else bias.detach()
        else:
            if in_width is None:
                raise ValueError(
                    f"{what} does not begin with a linear layer; pass in_channels "
                    "so that an identity first layer can be inserted"
                )
            # h = I [blocks] + 0, and the whole network is the kernel head.
            self.weight = torch.eye(in_width, **like)
            self.bias = None
            rest = None if module is None else copy.deepcopy(module)
        self.in_width = self.weight.size(1)
        self.hidden = self.weight.size(0)
        self.head = None if rest is None else _Rows(rest)
        self.out_width = (
            self.hidden if rest is None else _width(rest, self.hidden, like)
        )
        # Snapshot of the head's state: ITConv's reset_parameters() re-initialises
        # the head, the snapshot is loaded back after construction.
        self.head_state = (
            None
            if self.head is None
            else {k: v.clone() for k, v in self.head.state_dict().items()}
        )

    def copy_into(self, conv: ITConv, blocks: dict[str, slice]) -> None:
        """Copy the split first layer and the head into :obj:`conv` (no grad)."""
        kernel = conv.kernel_nn
        with torch.no_grad():
            for name, cols in blocks.items():
                target = getattr(kernel, name)
                target.weight.copy_(self.weight[:, cols])
            if self.bias is None:
                kernel.bias.zero_()
            else:
                kernel.bias.copy_(self.bias)
        if self.head_state is not None:
            kernel.head.load_state_dict(self.head_state)


def _measure(m: nn.Module, layer: str, allowed: tuple[str, ...], hint: str = "") -> str:
    """The ITConv measure of a PyG layer's aggregation."""
    if m.flow != "source_to_target":
        raise ValueError(
            f"{layer} with flow={m.flow!r}: convert the default-flow layer and call "
            "it on edge_index.flip(0)"
        )
    kinds = {
        SumAggregation: "sum",
        MeanAggregation: "mean",
        MaxAggregation: "max",
    }
    measure = kinds.get(type(m.aggr_module))
    if measure is None or measure not in allowed:
        raise ValueError(
            f"{layer} with aggr={m.aggr!r} is not exactly reachable: ITConv "
            f"aggregates by {allowed} here{hint}"
        )
    return measure


_MIN_HINT = (
    " (min_j m = -max_j(-m): negate the network's output and the output of the "
    "aggr='max' layer)"
)


def _fused_hazard(module: nn.Module) -> Optional[str]:
    """Why a kernel head is not exact on the tiled path, or :obj:`None`."""
    for mod in module.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and (
            mod.training or not mod.track_running_stats
        ):
            return (
                "BatchNorm in training mode (or without running statistics) "
                "would use per-tile statistics"
            )
        if (
            isinstance(mod, nn.modules.dropout._DropoutNd)
            and mod.training
            and mod.p > 0
        ) or (
            isinstance(mod, _MLPTail)
            and mod.training
            and any(p > 0 for p in mod.dropout)
        ):
            return "dropout in training mode would draw new masks in backward"
        if isinstance(mod, _CROSS_ROW_NORMS) or (
            isinstance(mod, pyg_norm.LayerNorm) and mod.mode != "node"
        ):
            return f"{mod.__class__.__name__} normalises across edges"
    return None


def _check_fused(conv: ITConv) -> None:
    if conv.tile_size is None:
        return
    reason = _fused_hazard(conv.kernel_nn)
    if reason is not None:
        raise ValueError(
            f"the fused path (tile_size={conv.tile_size}) is not exact here: "
            f"{reason}; use eval mode or conv.tile_size = None"
        )


def _pair(value, name: str) -> tuple:
    if isinstance(value, Tensor) or value is None:
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    raise ValueError(f"{name} must be a Tensor or a (source, target) pair")


def _edge_tensor(edge_index) -> Tensor:
    if not isinstance(edge_index, Tensor) or edge_index.is_sparse:
        raise TypeError(
            "only a dense (2, E) edge_index Tensor is supported, got "
            f"{type(edge_index).__name__}"
        )
    return edge_index


def _with_self_loops(edge_index: Tensor, num_src: int, num_dst: int) -> Tensor:
    """As PyG's point layers: drop self loops, add one per node of the smaller side."""
    edge_index, _ = remove_self_loops(edge_index)
    edge_index, _ = add_self_loops(edge_index, num_nodes=min(num_src, num_dst))
    return edge_index


# --------------------------------------------------------------------- PointNet
class PointNetConvIT(nn.Module):
    r"""PointNet's set layer as an :class:`~itnet_geo.nn.ITConv` with ``value="ones"``.

    .. math::
        x'_i = \gamma\Big(\max_{j \in \mathcal{N}(i) \cup \{i\}}
        \kappa(x_j, p_j - p_i)\Big)

    Called like :class:`~torch_geometric.nn.conv.PointNetConv`; built by
    :func:`from_point_net_conv`.

    Args:
        conv (ITConv): The integral transform, with ``in_channels=(C, 0)``
            (only source features enter the kernel).
        global_nn (torch.nn.Module, optional): :math:`\gamma`, applied to the
            aggregated features. (default: :obj:`None`)
        add_self_loops (bool, optional): Replace self loops by one per node of
            the smaller side, as PyG does. (default: :obj:`True`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, C)`, :obj:`None`, or a
          (source, target) pair whose target entry is ignored; positions
          :math:`(|\mathcal{V}|, D)` or a pair; edge indices :math:`(2,
          |\mathcal{E}|)`
        - **output:** :math:`(|\mathcal{V}_t|, F_{out})`

    Example:
        >>> from torch_geometric.nn import PointNetConv
        >>> local_nn = torch.nn.Sequential(
        ...     torch.nn.Linear(4 + 3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
        >>> layer = from_point_net_conv(PointNetConv(local_nn))
        >>> x, pos = torch.randn(10, 4), torch.randn(10, 3)
        >>> edge_index = torch.randint(10, (2, 30))
        >>> layer(x, pos, edge_index).shape
        torch.Size([10, 8])
    """

    def __init__(
        self,
        conv: ITConv,
        global_nn: Optional[nn.Module] = None,
        add_self_loops: bool = True,
    ):
        super().__init__()
        self.conv = conv
        self.global_nn = global_nn
        self.add_self_loops = add_self_loops

    def forward(
        self,
        x: Union[Optional[Tensor], PairOptTensor],
        pos: Union[Tensor, tuple[Tensor, Tensor]],
        edge_index: Tensor,
    ) -> Tensor:
        """Same arguments as :meth:`PointNetConv.forward`."""
        _check_fused(self.conv)
        x_src = x[0] if isinstance(x, (tuple, list)) else x
        pos_src, pos_dst = _pair(pos, "pos")
        edge_index = _edge_tensor(edge_index)
        num_src, num_dst = pos_src.size(0), pos_dst.size(0)
        if self.add_self_loops:
            edge_index = _with_self_loops(edge_index, num_src, num_dst)
        if x_src is None:
            x_src = pos_src.new_zeros(num_src, 0)
        x_dst = pos_dst.new_zeros(num_dst, 0)
        out = self.conv((x_src, x_dst), (pos_src, pos_dst), edge_index)
        if self.global_nn is not None:
            out = self.global_nn(out)
        return out


def from_point_net_conv(
    m: PointNetConv, pos_dim: int = 3, in_channels: Optional[int] = None
) -> PointNetConvIT:
    r"""Rebuild :class:`~torch_geometric.nn.conv.PointNetConv` as an ITConv.

    PyG: :math:`x'_i = \gamma(\max_{j \in \mathcal{N}(i) \cup \{i\}} h([x_j,
    p_j - p_i]))`. With :math:`h = g \circ (W [x_j, p_j - p_i] + b)` and
    :math:`W = [W_x \; W_p]`, this is the ITConv

    .. math::
        x'_i = \gamma\Big(\max_j g(W_x x_j + W_p (p_j - p_i) + b) \cdot 1\Big)

    Exact settings: ``kernel_inputs=("x_j", "rel_pos")`` (``("rel_pos",)``
    when the layer is used with ``x=None``), ``kernel="channel"``,
    ``value="ones"``, ``measure="max"`` (``"sum"``/``"mean"`` for
    ``aggr="add"``/``"mean"``), ``bias=False``, ``in_channels=(C, 0)``;
    ``kernel_nn.lin_j`` :math:`= W_x`, ``kernel_nn.pos_term`` :math:`= W_p`,
    ``kernel_nn.bias`` :math:`= b`, ``kernel_head`` :math:`= g` (the rest of a
    ``torch.nn.Sequential``, or of a PyG :class:`~torch_geometric.nn.MLP`:
    its norms, activation, dropout and ``plain_last`` are reproduced);
    ``num_layers=1`` when nothing follows the first linear layer. Self loops
    and :math:`\gamma` (a copy of ``global_nn``) are applied by the wrapper.
    A ``local_nn`` that does not begin with a linear layer, or ``None``,
    gets an identity first layer (:math:`W = I`, width ``C + D``) and is the
    whole head. BatchNorm is exact in eval mode everywhere and in training
    mode on the reference path only (see the module docstring).

    Not reachable: aggregations other than add/mean/max (``"min"`` is the
    negated ``"max"`` layer of the negated ``local_nn``), since an ITConv
    measure is a sum, a normalised sum or a maximum.

    Args:
        m (PointNetConv): The PyG layer (its weights are copied).
        pos_dim (int, optional): :math:`D`, the dimension of positions; the
            first linear layer takes ``C + D`` inputs. (default: :obj:`3`)
        in_channels (int, optional): :math:`C`; needed only when ``local_nn``
            does not begin with a linear layer. (default: :obj:`None`)

    Returns:
        PointNetConvIT: called as ``layer(x, pos, edge_index)``.
    """
    measure = _measure(m, "PointNetConv", ("sum", "mean", "max"), _MIN_HINT)
    like = _reference(m)
    in_width = None if in_channels is None else in_channels + pos_dim
    first = _FirstLayer(m.local_nn, in_width, like, "local_nn")
    c_in = first.in_width - pos_dim
    if c_in < 0:
        raise ValueError(
            f"local_nn takes {first.in_width} inputs, fewer than pos_dim={pos_dim}"
        )
    conv = ITConv(
        (c_in, 0),
        first.out_width,
        pos_dim=pos_dim,
        kernel_inputs=("x_j", "rel_pos") if c_in > 0 else ("rel_pos",),
        kernel="channel",
        hidden=first.hidden,
        measure=measure,
        num_layers=1 if first.head is None else 2,
        value="ones",
        bias=False,
        kernel_head=first.head,
    )
    global_nn = None if m.global_nn is None else copy.deepcopy(m.global_nn)
    layer = PointNetConvIT(conv, global_nn, m.add_self_loops).to(**like)
    blocks = {"pos_term": slice(c_in, None)}
    if c_in > 0:
        blocks["lin_j"] = slice(0, c_in)
    first.copy_into(conv, blocks)
    return layer.train(m.training)


# --------------------------------------------------------------------- EdgeConv
class EdgeConvIT(nn.Module):
    r"""DGCNN's edge convolution as an ITConv with ``value="ones"``.

    .. math::
        x'_i = \mathop{\mathrm{AGG}}_{j \in \mathcal{N}(i)} \kappa(x_i, x_j - x_i)

    Called like :class:`~torch_geometric.nn.conv.EdgeConv` (no positions: the
    ITConv gets zero-width ones); built by :func:`from_edge_conv`.

    Args:
        conv (ITConv): The integral transform (``pos_dim=0``).

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, C)` or a (source,
          target) pair; edge indices :math:`(2, |\mathcal{E}|)`
        - **output:** :math:`(|\mathcal{V}_t|, F_{out})`

    Example:
        >>> from torch_geometric.nn import EdgeConv
        >>> mlp = torch.nn.Sequential(
        ...     torch.nn.Linear(2 * 4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
        >>> layer = from_edge_conv(EdgeConv(mlp))
        >>> layer(torch.randn(10, 4), torch.randint(10, (2, 30))).shape
        torch.Size([10, 8])
    """

    def __init__(self, conv: ITConv):
        super().__init__()
        self.conv = conv

    def forward(
        self, x: Union[Tensor, tuple[Tensor, Tensor]], edge_index: Tensor
    ) -> Tensor:
        """Same arguments as :meth:`EdgeConv.forward`."""
        _check_fused(self.conv)
        x_src, x_dst = _pair(x, "x")
        edge_index = _edge_tensor(edge_index)
        pos = (x_src.new_zeros(x_src.size(0), 0), x_dst.new_zeros(x_dst.size(0), 0))
        return self.conv((x_src, x_dst), pos, edge_index)


def from_edge_conv(m: EdgeConv, in_channels: Optional[int] = None) -> EdgeConvIT:
    r"""Rebuild :class:`~torch_geometric.nn.conv.EdgeConv` as an ITConv.

    PyG: :math:`x'_i = \mathrm{AGG}_j\, h([x_i, x_j - x_i])`. With
    :math:`h = g \circ (W_i x_i + W_\Delta (x_j - x_i) + b)` this is the ITConv
    kernel on ``("x_i", "x_j - x_i")`` with the value :math:`1`.

    Exact settings: ``kernel_inputs=("x_i", "x_j - x_i")``,
    ``kernel="channel"``, ``value="ones"``, ``measure`` = ``"max"``,
    ``"sum"`` or ``"mean"`` (``aggr="max"``/``"add"``/``"mean"``),
    ``bias=False``, ``pos_dim=0``; ``kernel_nn.lin_i`` :math:`= W_i`,
    ``kernel_nn.lin_d`` :math:`= W_\Delta`, ``kernel_nn.bias`` :math:`= b`,
    ``kernel_head`` :math:`= g` (``torch.nn.Sequential`` or PyG ``MLP``, as in
    :func:`from_point_net_conv`; an ``nn`` not beginning with a linear layer
    gets an identity first layer of width ``2 C``).

    Not reachable: aggregations other than add/mean/max (``"min"`` is the
    negated ``"max"`` layer of the negated ``nn``).

    Args:
        m (EdgeConv): The PyG layer (its weights are copied).
        in_channels (int, optional): :math:`C`; needed only when ``nn`` does
            not begin with a linear layer. (default: :obj:`None`)

    Returns:
        EdgeConvIT: called as ``layer(x, edge_index)``.
    """
    measure = _measure(m, "EdgeConv", ("sum", "mean", "max"), _MIN_HINT)
    like = _reference(m)
    in_width = None if in_channels is None else 2 * in_channels
    first = _FirstLayer(m.nn, in_width, like, "nn")
    if first.in_width % 2:
        raise ValueError(f"EdgeConv's nn takes {first.in_width} inputs, not 2 * C")
    c_in = first.in_width // 2
    conv = ITConv(
        c_in,
        first.out_width,
        pos_dim=0,
        kernel_inputs=("x_i", "x_j - x_i"),
        kernel="channel",
        hidden=first.hidden,
        measure=measure,
        num_layers=1 if first.head is None else 2,
        value="ones",
        bias=False,
        kernel_head=first.head,
    )
    layer = EdgeConvIT(conv).to(**like)
    first.copy_into(conv, {"lin_i": slice(0, c_in), "lin_d": slice(c_in, None)})
    return layer.train(m.training)


# ------------------------------------------------------------ PointTransformer
class PointTransformerConvIT(nn.Module):
    r"""Point Transformer attention as an :class:`~itnet_geo.nn.ITConv` softmax measure.

    .. math::
        x'_i = \sum_{j \in \mathcal{N}(i) \cup \{i\}}
        \mathrm{softmax}_j\big(a(W_i x_i + W_j x_j + \delta_{ij})\big)
        \odot (V x_j + \delta_{ij}), \qquad \delta_{ij} = \pi(p_j - p_i)

    Called like :class:`~torch_geometric.nn.conv.PointTransformerConv`; built by
    :func:`from_point_transformer_conv`.

    Args:
        conv (ITConv): The integral transform (``measure="softmax"``,
            ``value_pos=True``).
        add_self_loops (bool, optional): As PyG. (default: :obj:`True`)
        mean (bool, optional): Divide by the number of neighbours
            (``aggr="mean"``). (default: :obj:`False`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, C)` or a pair;
          positions :math:`(|\mathcal{V}|, 3)` or a pair; edge indices
          :math:`(2, |\mathcal{E}|)`
        - **output:** :math:`(|\mathcal{V}_t|, F_{out})`

    Example:
        >>> from torch_geometric.nn import PointTransformerConv
        >>> layer = from_point_transformer_conv(PointTransformerConv(4, 8))
        >>> x, pos = torch.randn(10, 4), torch.randn(10, 3)
        >>> layer(x, pos, torch.randint(10, (2, 30))).shape
        torch.Size([10, 8])
    """

    def __init__(self, conv: ITConv, add_self_loops: bool = True, mean: bool = False):
        super().__init__()
        self.conv = conv
        self.add_self_loops = add_self_loops
        self.mean = mean

    def forward(
        self,
        x: Union[Tensor, tuple[Tensor, Tensor]],
        pos: Union[Tensor, tuple[Tensor, Tensor]],
        edge_index: Tensor,
    ) -> Tensor:
        """Same arguments as :meth:`PointTransformerConv.forward`."""
        _check_fused(self.conv)
        x_src, x_dst = _pair(x, "x")
        pos_src, pos_dst = _pair(pos, "pos")
        edge_index = _edge_tensor(edge_index)
        if self.add_self_loops:
            edge_index = _with_self_loops(edge_index, pos_src.size(0), pos_dst.size(0))
        out = self.conv((x_src, x_dst), (pos_src, pos_dst), edge_index)
        if self.mean:
            count = torch.bincount(edge_index[1], minlength=out.size(0))
            out = out / count.clamp_min(1).to(out.dtype).unsqueeze(-1)
        return out


def from_point_transformer_conv(
    m: PointTransformerConv, pos_dim: Optional[int] = None
) -> PointTransformerConvIT:
    r"""Rebuild :class:`~torch_geometric.nn.conv.PointTransformerConv` as an ITConv.

    PyG: :math:`\alpha_{ij} = a(W_{dst} x_i - W_{src} x_j + \delta_{ij})`,
    :math:`\delta_{ij} = \pi(p_i - p_j)`, softmax over :math:`j` per channel,
    message :math:`\alpha_{ij} \odot (W x_j + \delta_{ij})`, with self loops.
    Our relative position is :math:`p_j - p_i`, hence the negation below.

    Exact settings: ``kernel_inputs=("rel_pos", "x_i", "x_j")``,
    ``measure="softmax"``, ``value="linear"`` (``lin_value`` :math:`= W`,
    ``m.lin``), ``value_pos=True``, ``bias=False``, ``hidden=out_channels``;
    ``kernel_pos_nn`` :math:`= \pi \circ (-\mathrm{id})` (a copy of
    ``pos_nn``), ``kernel_nn.lin_i`` :math:`= W_{dst}`, ``kernel_nn.lin_j``
    :math:`= -W_{src}`, ``kernel_nn.bias`` :math:`= 0`, ``kernel_head``
    :math:`= a` (``attn_nn``; identity with ``num_layers=1`` when it is
    ``None``). ``kernel="channel"``, or ``kernel="heads"`` with ``heads=1``
    when ``attn_nn`` returns one attention score per edge (PyG broadcasts it
    over the channels). ``aggr="mean"``: the wrapper divides by the number of
    neighbours. Self loops are added by the wrapper.

    Not reachable: ``aggr="max"``/``"min"`` (or any other): the maximum of
    softmax-normalised messages is no ITConv measure (``"max"`` does not
    normalise the kernel, ``"softmax"`` sums).

    Args:
        m (PointTransformerConv): The PyG layer (its weights are copied).
        pos_dim (int, optional): Dimension of positions; read from ``pos_nn``
            when it begins with a linear layer, else :obj:`3`.
            (default: :obj:`None`)

    Returns:
        PointTransformerConvIT: called as ``layer(x, pos, edge_index)``.
    """
    measure = _measure(
        m,
        "PointTransformerConv",
        ("sum", "mean"),
        " (the maximum of softmax-normalised messages is no ITConv measure)",
    )
    like = _reference(m)
    in_channels = m.in_channels
    if isinstance(in_channels, int):
        in_channels = (in_channels, in_channels)
    if min(in_channels) < 0:
        raise ValueError("lazy in_channels: run the PyG layer once before converting")
    out_channels = m.out_channels
    if pos_dim is None:
        split = _split_first_linear(m.pos_nn)
        pos_dim = 3 if split is None else _weight(split[0])[0].size(1)
    pos_nn = _Rows(_NegatedInput(copy.deepcopy(m.pos_nn)))
    kernel, heads, head = "channel", 1, None
    if m.attn_nn is not None:
        head = _Rows(copy.deepcopy(m.attn_nn))
        width = _width(m.attn_nn, out_channels, like)
        if width == 1:
            kernel = "heads"
        elif width != out_channels:
            raise ValueError(
                f"attn_nn returns {width} scores per edge; PyG needs 1 or "
                f"out_channels={out_channels}"
            )
    conv = ITConv(
        in_channels,
        out_channels,
        pos_dim=pos_dim,
        kernel_inputs=("rel_pos", "x_i", "x_j"),
        kernel=kernel,
        heads=heads,
        hidden=out_channels,
        measure="softmax",
        num_layers=1 if head is None else 2,
        value="linear",
        value_pos=True,
        bias=False,
        kernel_pos_nn=pos_nn,
        kernel_head=head,
    )
    layer = PointTransformerConvIT(conv, m.add_self_loops, mean=measure == "mean")
    layer = layer.to(**like)
    kernel_nn = conv.kernel_nn
    pos_state = {k: v.clone() for k, v in m.pos_nn.state_dict().items()}
    kernel_nn.pos_term.module.module.load_state_dict(pos_state)
    if head is not None:
        head.module.load_state_dict(m.attn_nn.state_dict())
    with torch.no_grad():
        kernel_nn.lin_i.weight.copy_(m.lin_dst.weight)
        kernel_nn.lin_j.weight.copy_(-m.lin_src.weight)
        kernel_nn.bias.zero_()
        conv.lin_value.weight.copy_(m.lin.weight)
    return layer.train(m.training)


# ----------------------------------------------------------------------- NNConv
class NNConvIT(nn.Module):
    r"""The edge-conditioned convolution as an ITConv with ``kernel="full"``.

    .. math::
        x'_i = W_r x_i + \mathop{\mathrm{AGG}}_{j \in \mathcal{N}(i)}
        \kappa(e_{ij}) \, x_j + b

    Called like :class:`~torch_geometric.nn.conv.NNConv`,
    ``layer(x, edge_index, edge_attr)``, for *any* edge attributes: each edge
    becomes its own source node at position :math:`e_{ij}` and the targets sit
    at the origin, so the ITConv's relative position is :math:`e_{ij}` exactly
    (memory :math:`O(E \cdot C)`, as PyG's messages). With
    ``layer(x, edge_index, pos=pos)`` instead, :math:`e_{ij} = p_j - p_i` and
    the ITConv runs on the graph itself (the native form). Built by
    :func:`from_nn_conv`.

    Args:
        conv (ITConv): The integral transform (``kernel="full"``, holds the
            bias :math:`b`).
        root (torch.nn.Module, optional): :math:`W_r`. (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, C)` or a (source,
          target) pair (target may be :obj:`None`); edge indices :math:`(2,
          |\mathcal{E}|)`; edge attributes :math:`(|\mathcal{E}|, D)` or
          positions :math:`(|\mathcal{V}|, D)` (or a pair)
        - **output:** :math:`(|\mathcal{V}_t|, F_{out})`

    Example:
        >>> from torch_geometric.nn import NNConv
        >>> mlp = torch.nn.Sequential(
        ...     torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4 * 8))
        >>> layer = from_nn_conv(NNConv(4, 8, mlp))
        >>> x, pos = torch.randn(10, 4), torch.randn(10, 3)
        >>> edge_index = torch.randint(10, (2, 30))
        >>> edge_attr = pos[edge_index[0]] - pos[edge_index[1]]
        >>> out = layer(x, edge_index, edge_attr)
        >>> torch.allclose(out, layer(x, edge_index, pos=pos), atol=1e-5)
        True
    """

    def __init__(self, conv: ITConv, root: Optional[nn.Module] = None):
        super().__init__()
        self.conv = conv
        self.root = root

    def forward(
        self,
        x: Union[Tensor, PairOptTensor],
        edge_index: Tensor,
        edge_attr: Optional[Tensor] = None,
        size: Optional[tuple[int, int]] = None,
        pos: Optional[Union[Tensor, tuple[Tensor, Tensor]]] = None,
    ) -> Tensor:
        """Same arguments as :meth:`NNConv.forward`, or positions as :obj:`pos`."""
        _check_fused(self.conv)
        if (edge_attr is None) == (pos is None):
            raise ValueError("give exactly one of edge_attr and pos")
        x_src, x_dst = _pair(x, "x")
        edge_index = _edge_tensor(edge_index)
        if x_dst is not None:
            num_dst = x_dst.size(0)
        elif size is not None and size[1] is not None:
            num_dst = int(size[1])
        else:  # as PyG: the largest target index
            num_dst = int(edge_index[1].max()) + 1 if edge_index.numel() else 0
        feat_dst = (
            x_dst
            if x_dst is not None
            else x_src.new_zeros(num_dst, self.conv.in_channels[1])
        )
        if edge_attr is not None:
            num_edges = edge_index.size(1)
            x_edge = x_src.index_select(0, edge_index[0])
            pos_dst = edge_attr.new_zeros(num_dst, edge_attr.size(-1))
            per_edge = torch.stack(
                [torch.arange(num_edges, device=edge_index.device), edge_index[1]]
            )
            out = self.conv((x_edge, feat_dst), (edge_attr, pos_dst), per_edge)
        else:
            out = self.conv((x_src, feat_dst), pos, edge_index)
        if x_dst is not None and self.root is not None:
            # ITConv added the bias already; addition order does not matter.
            out = out + self.root(x_dst)
        return out


def from_nn_conv(m: NNConv, pos_dim: Optional[int] = None) -> NNConvIT:
    r"""Rebuild :class:`~torch_geometric.nn.conv.NNConv` as an ITConv.

    PyG: :math:`x'_i = W_r x_i + \mathrm{AGG}_j\, x_j^\top \Theta(e_{ij}) + b`
    with :math:`\Theta(e)` the network's output viewed as a ``(C_in, C_out)``
    matrix. On :math:`e_{ij} = p_j - p_i` this is the ITConv with a ``full``
    kernel: :math:`\kappa(p_j - p_i) = \Theta(p_j - p_i)^\top`.

    Exact settings: ``kernel_inputs=("rel_pos",)``, ``kernel="full"``,
    ``measure`` = ``"sum"``, ``"mean"`` or ``"max"`` (``aggr="add"``/
    ``"mean"``/``"max"``), ``bias`` = ``m.bias``; ``kernel_nn.pos_term``
    :math:`= W` and ``kernel_nn.bias`` :math:`= b_1` of the network's first
    linear layer, ``kernel_head`` = the rest of the network followed by a
    reordering of its output from ``(C_in, C_out)`` to ``(C_out, C_in)``. A
    network not beginning with a linear layer is the ``kernel_pos_nn`` whole
    (``hidden = C_in C_out``, ``kernel_nn.bias`` :math:`= 0`, head = the
    reordering). The root term :math:`W_r x_i` (a copy of ``m.lin``) is added
    by the wrapper; it is skipped, as in PyG, when the target features are
    :obj:`None`. See :class:`NNConvIT` for how any ``edge_attr`` is reproduced.

    Not reachable: aggregations other than add/mean/max (``"min"`` is the
    negated ``"max"`` layer of the negated network and root).

    Args:
        m (NNConv): The PyG layer (its weights are copied).
        pos_dim (int, optional): Width of the edge attributes; read from the
            network's first linear layer when there is one. (default:
            :obj:`None`)

    Returns:
        NNConvIT: called as ``layer(x, edge_index, edge_attr)`` or
        ``layer(x, edge_index, pos=pos)``.
    """
    measure = _measure(m, "NNConv", ("sum", "mean", "max"), _MIN_HINT)
    like = _reference(m)
    in_channels = m.in_channels
    if isinstance(in_channels, int):
        in_channels = (in_channels, in_channels)
    if min(in_channels) < 0:
        raise ValueError("lazy in_channels: run the PyG layer once before converting")
    c_in, out_channels = in_channels[0], m.out_channels
    swap = _SwapMatrix(c_in, out_channels)
    split = _split_first_linear(m.nn)
    weight = bias = pos_nn = None
    if split is not None:
        first, rest = split
        weight, bias = _weight(first)
        if pos_dim is not None and pos_dim != weight.size(1):
            raise ValueError(
                f"NNConv's nn takes {weight.size(1)} edge attributes, not {pos_dim}"
            )
        hidden, pos_dim = weight.shape
        head = swap if rest is None else nn.Sequential(_Rows(rest), swap)
    else:
        if pos_dim is None:
            raise ValueError(
                "NNConv's nn does not begin with a linear layer: pass pos_dim"
            )
        hidden = c_in * out_channels
        pos_nn = _Rows(copy.deepcopy(m.nn))
        head = swap
    head_state = {k: v.clone() for k, v in head.state_dict().items()}
    pos_state = None
    if pos_nn is not None:
        pos_state = {k: v.clone() for k, v in pos_nn.state_dict().items()}
    conv = ITConv(
        in_channels,
        out_channels,
        pos_dim=pos_dim,
        kernel_inputs=("rel_pos",),
        kernel="full",
        hidden=hidden,
        measure=measure,
        num_layers=2,
        value="linear",
        bias=m.bias is not None,
        kernel_pos_nn=pos_nn,
        kernel_head=head,
    )
    root = copy.deepcopy(m.lin) if m.root_weight else None
    layer = NNConvIT(conv, root).to(**like)
    kernel_nn = conv.kernel_nn
    kernel_nn.head.load_state_dict(head_state)
    if pos_state is not None:
        kernel_nn.pos_term.load_state_dict(pos_state)
    with torch.no_grad():
        if weight is not None:
            kernel_nn.pos_term.weight.copy_(weight)
        if bias is None:
            kernel_nn.bias.zero_()
        else:
            kernel_nn.bias.copy_(bias)
        if m.bias is not None:
            conv.bias.copy_(m.bias)
    return layer.train(m.training)


#: The name DESIGN.md gives the Point Transformer conversion.
from_point_transformer = from_point_transformer_conv

__all__ = [
    "from_point_net_conv",
    "from_point_transformer",
    "from_edge_conv",
    "from_point_transformer_conv",
    "from_nn_conv",
    "PointNetConvIT",
    "EdgeConvIT",
    "PointTransformerConvIT",
    "NNConvIT",
]
