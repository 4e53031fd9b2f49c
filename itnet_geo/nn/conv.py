r"""The ITNet operator on graphs: a learnable integral transform."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import softmax

from itnet_geo.nn._transform import KERNELS, VALUES, _IntegralTransform
from itnet_geo.ops.fused import form_message, kernel_integral
from itnet_geo.typing import PairTensor

#: Positional terms of the value (``value_pos``); ``True`` means ``"kernel"``.
VALUE_POS = (False, True, "kernel", "linear")


def _pair(value: Union[Tensor, PairTensor], name: str) -> PairTensor:
    if isinstance(value, Tensor):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    raise ValueError(f"{name} must be a Tensor or a (source, target) pair")


class ITConv(_IntegralTransform, MessagePassing):
    r"""The learnable integral transform of ITNet on a neighbour graph.

    .. math::
        (T f)(x_i) = \sum_{j \in \mathcal{N}(i)} w_j \,
        \kappa_\theta(p_j - p_i, f_i, f_j) \odot V f_j

    with :math:`\kappa_\theta` a small MLP (:class:`KernelMLP`) whose first layer
    is split by linearity, so feature terms are computed once per node. The
    *measure* sets how the sum is normalised over each target's neighbourhood:

    * ``"sum"``: :math:`\sum_j w_j \kappa_{ij} \odot V f_j` (a quadrature rule);
    * ``"mean"``: the same divided by :math:`\sum_j w_j`;
    * ``"softmax"``: :math:`\sum_j \frac{w_j e^{\kappa_{ij}}}{\sum_k w_k
      e^{\kappa_{ik}}} \odot V f_j` (attention);
    * ``"max"``: :math:`\max_j \kappa_{ij} \odot V f_j` (weights only restrict
      the support).

    The *kernel* mode sets what :math:`\kappa` returns:

    * ``"channel"``: one weight per output channel;
    * ``"heads"``: one scalar per head, shared by that head's channels;
    * ``"lowrank"``: :math:`\kappa(\cdot) = \sum_{r} a_r(\cdot) U_r`, aggregated as
      :math:`\sum_r U_r \sum_j w_j a_r f_j` — never an
      :math:`E \times C_{in} \times C_{out}` tensor;
    * ``"full"``: a :math:`C_{out} \times C_{in}` matrix per edge (the reference
      for ``lowrank``; :class:`~torch_geometric.nn.conv.NNConv` on relative
      positions is this mode).

    Classic layers are special cases (see :mod:`itnet_geo.nn.special`):
    :class:`~torch_geometric.nn.conv.PointNetConv` (``kernel_inputs=("rel_pos",
    "x_j")``, ``value="ones"``, ``measure="max"``),
    :class:`~torch_geometric.nn.conv.EdgeConv` (``("x_i", "x_j - x_i")``,
    ``value="ones"``, ``"max"``), :class:`~torch_geometric.nn.conv.PointTransformerConv`
    (``("rel_pos", "x_i", "x_j")``, ``"softmax"``, ``value_pos=True``) and
    :class:`~torch_geometric.nn.conv.NNConv` (``("rel_pos",)``, ``kernel="full"``).

    Args:
        in_channels (int or tuple): Size of each input sample, or a (source,
            target) pair of sizes for bipartite graphs.
        out_channels (int): Size of each output sample.
        pos_dim (int, optional): Dimension of positions. (default: :obj:`3`)
        kernel_inputs (tuple of str, optional): Inputs of :math:`\kappa`, any of
            ``"rel_pos"``, ``"x_i"``, ``"x_j"``, ``"x_j - x_i"``, ``"qk"``.
            (default: :obj:`("rel_pos", "x_i", "x_j")`)
        kernel (str, optional): ``"channel"``, ``"heads"``, ``"lowrank"`` or
            ``"full"``. (default: :obj:`"channel"`)
        hidden (int, optional): Hidden width of the kernel MLP.
            (default: :obj:`64`)
        heads (int, optional): Number of heads for ``kernel="heads"``.
            (default: :obj:`1`)
        rank (int, optional): Rank for ``kernel="lowrank"``. (default: :obj:`8`)
        measure (str, optional): ``"sum"``, ``"mean"``, ``"softmax"`` or
            ``"max"``. (default: :obj:`"sum"`)
        tile_size (int, optional): Edges per tile of the fused path
            (:func:`itnet_geo.ops.fused.kernel_integral`); :obj:`None` uses the
            reference message-passing path. (default: :obj:`None`)
        mc (MonteCarlo, optional): Monte Carlo subsampling of the integral
            during training (:class:`itnet_geo.nn.MonteCarlo`).
            (default: :obj:`None`)
        num_layers (int, optional): Linear layers of the kernel MLP.
            (default: :obj:`2`)
        act (str, optional): Activation of the kernel MLP.
            (default: :obj:`"relu"`)
        value (str, optional): :math:`V`: ``"linear"``, ``"identity"`` or
            ``"ones"`` (the kernel alone is the message). (default:
            :obj:`"linear"`)
        value_pos (bool or str, optional): A positional term of the value,
            :math:`V f_j + \pi(p_j - p_i)`. :obj:`True` (or ``"kernel"``) adds
            the kernel's positional embedding, as Point Transformer does (the
            kernel's hidden width must equal :obj:`out_channels`);
            ``"linear"`` adds a linear map of its own,
            :math:`\pi(p_j - p_i) = P (p_j - p_i)`, whatever the kernel's
            width: by linearity, :math:`\sum_j c_{ij} P (p_j - p_i) = P \sum_j
            c_{ij} p_j - P p_i \sum_j c_{ij}`, the fused path adds it to the
            values and subtracts it per target at no cost per edge (per edge
            only with ``measure="max"``). Without it, a softmax integral of
            equal features is the same for every neighbourhood shape.
            (default: :obj:`False`)
        bias (bool, optional): Add a learnable output bias. (default: :obj:`True`)
        qk_dim (int, optional): Query/key size of the ``"qk"`` kernel input.
            (default: :obj:`16`)
        kernel_pos_nn (torch.nn.Module, optional): Replaces the kernel's linear
            positional term. (default: :obj:`None`)
        kernel_head (torch.nn.Module, optional): Replaces the layers of the
            kernel MLP after its first. (default: :obj:`None`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})` or
          :math:`((|\mathcal{V_s}|, F_{s}), (|\mathcal{V_t}|, F_{t}))`,
          positions :math:`(|\mathcal{V}|, D)` or
          :math:`((|\mathcal{V_s}|, D), (|\mathcal{V_t}|, D))`,
          edge indices :math:`(2, |\mathcal{E}|)`,
          quadrature weights :math:`(|\mathcal{E}|)` or :math:`(|\mathcal{V_s}|)`
          *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})` or
          :math:`(|\mathcal{V}_t|, F_{out})`

    Example:
        >>> from itnet_geo.ops import knn_graph
        >>> pos = torch.randn(100, 3)
        >>> x = torch.randn(100, 16)
        >>> edge_index = knn_graph(pos, k=8)
        >>> conv = ITConv(16, 32)
        >>> conv(x, pos, edge_index).shape
        torch.Size([100, 32])
    """

    def __init__(
        self,
        in_channels: Union[int, tuple[int, int]],
        out_channels: int,
        pos_dim: int = 3,
        kernel_inputs: Sequence[str] = ("rel_pos", "x_i", "x_j"),
        kernel: str = "channel",
        hidden: int = 64,
        heads: int = 1,
        rank: int = 8,
        measure: str = "sum",
        tile_size: Optional[int] = None,
        mc: Optional[Any] = None,
        num_layers: int = 2,
        act: str = "relu",
        value: str = "linear",
        value_pos: Union[bool, str] = False,
        bias: bool = True,
        qk_dim: int = 16,
        kernel_pos_nn: Optional[nn.Module] = None,
        kernel_head: Optional[nn.Module] = None,
        **kwargs,
    ):
        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)
        self._check_options(measure, kernel, value, heads, in_channels[0], out_channels)
        if value_pos not in VALUE_POS:
            raise ValueError(
                f"unknown value_pos {value_pos!r}; expected one of {VALUE_POS}"
            )
        value_pos = "kernel" if value_pos is True else value_pos
        if value_pos and kernel not in ("channel", "heads"):
            raise ValueError("value_pos needs kernel='channel' or 'heads'")
        kwargs.setdefault("aggr", "max" if measure == "max" else "sum")
        super().__init__(node_dim=0, **kwargs)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pos_dim = pos_dim
        self.kernel_inputs = tuple(kernel_inputs)
        self.kernel = kernel
        self.hidden = hidden
        self.heads = heads
        self.rank = rank
        self.measure = measure
        self.tile_size = tile_size
        self.mc = mc
        self.num_layers = num_layers
        self.act = act
        self.value = value
        self.value_pos = value_pos
        self.qk_dim = qk_dim

        self._build_maps(kernel_pos_nn, kernel_head, bias)
        #: The value's own positional map (``value_pos="linear"``).
        self.lin_value_pos: Optional[nn.Linear] = None
        if value_pos == "linear":
            self.lin_value_pos = nn.Linear(pos_dim, out_channels, bias=False)
        if value_pos == "kernel":
            self.kernel_nn.fold_pos = False  # the value needs pi(p_j - p_i) per edge
        if value_pos == "kernel" and self.kernel_nn.hidden != out_channels:
            raise ValueError(
                "value_pos adds the positional embedding (width "
                f"{self.kernel_nn.hidden}) to the value (width {out_channels}): "
                "they must match"
            )
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise all learnable parameters."""
        super().reset_parameters()
        self._reset_maps()
        if self.lin_value_pos is not None:
            self.lin_value_pos.reset_parameters()

    # ------------------------------------------------------------------ checks
    def _check(self, x: PairTensor, pos: PairTensor, edge_index: Tensor) -> None:
        for side, xs, ps, c in (
            ("source", x[0], pos[0], self.in_channels[0]),
            ("target", x[1], pos[1], self.in_channels[1]),
        ):
            if xs.dim() != 2 or xs.size(-1) != c:
                raise ValueError(
                    f"ITConv expects {side} features of shape (N, {c}), got "
                    f"{tuple(xs.shape)}"
                )
            if ps.dim() != 2 or ps.size(-1) != self.pos_dim:
                raise ValueError(
                    f"ITConv expects {side} positions of shape (N, {self.pos_dim}), "
                    f"got {tuple(ps.shape)}"
                )
            if ps.size(0) != xs.size(0):
                raise ValueError(
                    f"{side} features {tuple(xs.shape)} and positions "
                    f"{tuple(ps.shape)} disagree on the number of nodes"
                )
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}"
            )
        if edge_index.dtype not in (torch.long, torch.int):
            raise ValueError(f"edge_index must be integer, got {edge_index.dtype}")

    def _edge_weight(
        self, weight: Optional[Tensor], edge_index: Tensor, num_src: int
    ) -> Optional[Tensor]:
        if weight is None:
            return None
        num_edges = edge_index.size(1)
        weight = (
            weight.view(-1) if weight.dim() == 2 and weight.size(-1) == 1 else weight
        )
        if weight.dim() != 1 or weight.numel() not in (num_edges, num_src):
            raise ValueError(
                f"weight must have shape ({num_src},) (per source node) or "
                f"({num_edges},) (per edge), got {tuple(weight.shape)}"
            )
        if weight.numel() == num_src:  # per source node (preferred if ambiguous)
            return weight.index_select(0, edge_index[0])
        return weight

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        x: Union[Tensor, PairTensor],
        pos: Union[Tensor, PairTensor],
        edge_index: Tensor,
        weight: Optional[Tensor] = None,
    ) -> Tensor:
        """Apply the integral transform.

        Args:
            x: Node features, or a (source, target) pair.
            pos: Node positions, or a (source, target) pair.
            edge_index: :math:`(2, E)`; row 0 the source :math:`j`, row 1 the
                target :math:`i`.
            weight: Quadrature weight per source node or per edge (a length
                equal to both is read per source node).
        """
        x_pair = _pair(x, "x")
        pos_pair = _pair(pos, "pos")
        self._check(x_pair, pos_pair, edge_index)
        x_src, x_dst = x_pair
        pos_src, pos_dst = pos_pair
        num_src, num_dst = x_src.size(0), x_dst.size(0)
        edge_weight = self._edge_weight(weight, edge_index, num_src)
        if self.mc is not None and (
            self.training or not getattr(self.mc, "train_only", True)
        ):
            edge_index, edge_weight = self.mc(
                edge_index, edge_weight, num_src, num_dst, pos=(pos_src, pos_dst)
            )

        src_terms, dst_terms = self.kernel_nn.node_terms(x_src, x_dst, pos_src, pos_dst)
        value = self._values(x_src)
        vpos = self._value_pos_terms(pos_src, pos_dst, value)
        contract = self.kernel == "full"
        if self.tile_size is None:
            out = self.propagate(
                edge_index,
                kt=(src_terms, dst_terms),
                pos=(pos_src, pos_dst),
                value=(value, None),
                vpos=vpos,
                edge_weight=edge_weight,
                size=(num_src, num_dst),
            )
            if self.measure == "mean":
                mass = (
                    edge_weight
                    if edge_weight is not None
                    else x_dst.new_ones(edge_index.size(1))
                )
                total = x_dst.new_zeros(num_dst).index_add(0, edge_index[1], mass)
                tiny = torch.finfo(out.dtype).tiny
                out = out / total.clamp_min(tiny).view(-1, 1, 1)
        else:
            out = self._fused(
                src_terms,
                dst_terms,
                pos_src,
                pos_dst,
                value,
                vpos,
                edge_index,
                edge_weight,
                contract,
            )
        return self._finish(out)

    def _value_pos_terms(
        self, pos_src: Tensor, pos_dst: Tensor, value: Tensor
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        r""":math:`P p_j` and :math:`P p_i` in the value layout (``"linear"``).

        Positions are centred on the targets' mean first, so that far-from-origin
        clouds lose no precision in :math:`P p_j - P p_i`.
        """
        if self.lin_value_pos is None:
            return None, None
        centre = pos_dst.detach().mean(dim=0, keepdim=True)
        shape = value.shape[1:]
        return (
            self.lin_value_pos(pos_src - centre).view(-1, *shape),
            self.lin_value_pos(pos_dst - centre).view(-1, *shape),
        )

    def _fused(
        self,
        src_terms: Tensor,
        dst_terms: Tensor,
        pos_src: Tensor,
        pos_dst: Tensor,
        value: Tensor,
        vpos: tuple[Optional[Tensor], Optional[Tensor]],
        edge_index: Tensor,
        edge_weight: Optional[Tensor],
        contract: bool,
    ) -> Tensor:
        names, params = self._kernel_params()
        kernel_nn = self.kernel_nn
        per_edge_pos = kernel_nn.pos_term is not None and not kernel_nn.folds_pos
        edge_fn = self._edge_fn(names)
        value_pos = self.value_pos == "kernel"
        vpos_src, vpos_dst = vpos
        mass = None
        if vpos_src is not None and self.measure == "max":
            # max_j is not linear: the edge function adds P (p_j - p_i) per edge.
            per_edge_pos = value_pos = True
            edge_fn = self._edge_fn(names, self.lin_value_pos)
            params = [*params, self.lin_value_pos.weight]
        elif vpos_src is not None:
            value = value + vpos_src
            if self.measure != "softmax":
                # sum_j c_ij per target and group: a column of ones integrated
                value = torch.cat([value, value.new_ones(value.shape[:-1] + (1,))], -1)
        out = kernel_integral(
            edge_fn,
            params,
            src_terms,
            dst_terms,
            pos_src if per_edge_pos else None,
            pos_dst if per_edge_pos else None,
            value,
            edge_index,
            weight=edge_weight,
            measure=self.measure,
            tile_size=self.tile_size,
            contract=contract,
            value_pos=value_pos,
        )
        if vpos_dst is None or self.measure == "max":
            return out
        if self.measure == "softmax":
            # the softmax sums to one over every neighbourhood that is not empty
            degree = torch.bincount(edge_index[1], minlength=out.size(0))
            mass = (degree > 0).to(out.dtype).view(-1, 1, 1)
        else:
            out, mass = out[..., :-1], out[..., -1:]
        return out - mass * vpos_dst

    def message(
        self,
        kt_j: Tensor,
        kt_i: Tensor,
        pos_j: Tensor,
        pos_i: Tensor,
        value_j: Tensor,
        vpos_j: Optional[Tensor],
        vpos_i: Optional[Tensor],
        edge_weight: Optional[Tensor],
        index: Tensor,
        ptr: Optional[Tensor],
        size_i: Optional[int],
    ) -> Tensor:
        kappa, pos_emb = self.kernel_nn.edge_forward(kt_j, kt_i, pos_j - pos_i)
        if self.value_pos == "kernel":
            assert pos_emb is not None
            value_j = value_j + pos_emb.view(value_j.shape)
        elif vpos_j is not None and vpos_i is not None:
            value_j = value_j + (vpos_j - vpos_i)
        contract = self.kernel == "full"
        if self.measure == "softmax":
            score = kappa
            if edge_weight is not None:
                tiny = torch.finfo(edge_weight.dtype).tiny
                score = score + edge_weight.clamp_min(tiny).log().unsqueeze(-1)
            return form_message(softmax(score, index, ptr, size_i), value_j, contract)
        if self.measure == "max" or edge_weight is None:
            return form_message(kappa, value_j, contract)
        return form_message(kappa * edge_weight.unsqueeze(-1), value_j, contract)

    # ------------------------------------------------------------ fused path
    def _kernel_params(self) -> tuple[list[str], list[Tensor]]:
        named = list(self.kernel_nn.named_parameters())
        return [n for n, _ in named], [p for _, p in named]

    def _edge_fn(self, names: list[str], lin_value_pos: Optional[nn.Linear] = None):
        kernel_nn = self.kernel_nn

        def edge_fn(params, src_g, dst_g, rel_pos):
            return torch.func.functional_call(
                kernel_nn,
                dict(zip(names, params, strict=True)),
                (src_g, dst_g, rel_pos),
            )

        if lin_value_pos is None:
            return edge_fn

        def edge_fn_value_pos(params, src_g, dst_g, rel_pos):
            # the last parameter is P: the positional term P (p_j - p_i) of the value
            kappa, _ = edge_fn(params[:-1], src_g, dst_g, rel_pos)
            return kappa, torch.nn.functional.linear(rel_pos, params[-1])

        return edge_fn_value_pos


__all__ = ["ITConv", "KERNELS", "VALUES", "VALUE_POS"]
