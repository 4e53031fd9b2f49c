r"""The kernel :math:`\kappa_\theta` of the integral transform, as a small MLP.

The first layer of the MLP acts on the concatenation
:math:`[p_j - p_i,\ f_i,\ f_j,\ f_j - f_i]` and is therefore *linear* in each
block. :class:`KernelMLP` splits it along those blocks, so the feature terms
:math:`W_i f_i` and :math:`W_j f_j` are computed once per node
(:meth:`KernelMLP.node_terms`) and only the positional term and the rest of the MLP
are evaluated per edge (:meth:`KernelMLP.edge_forward`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

#: Kernel inputs understood by :class:`KernelMLP`.
KERNEL_INPUTS = ("rel_pos", "x_i", "x_j", "x_j - x_i", "qk")

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def _check_inputs(inputs: Sequence[str]) -> tuple[str, ...]:
    inputs = tuple(inputs)
    if len(inputs) == 0:
        raise ValueError("kernel_inputs must name at least one input")
    for name in inputs:
        if name not in KERNEL_INPUTS:
            raise ValueError(
                f"unknown kernel input {name!r}; expected any of {KERNEL_INPUTS}"
            )
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"kernel_inputs has duplicates: {inputs}")
    return inputs


class KernelMLP(nn.Module):
    r"""An MLP kernel :math:`\kappa_\theta(p_j - p_i, f_i, f_j)` split by linearity.

    .. math::
        h_{ij} = W_i f_i + W_j f_j + W_\Delta (f_j - f_i) + \pi(p_j - p_i) + b,
        \qquad
        \kappa_{ij} = g(h_{ij}) + \frac{\langle Q f_i, K f_j \rangle}{\sqrt{d}}

    where :math:`\pi` is a linear map of the relative position (or any module
    given as :obj:`pos_nn`), :math:`g` is the rest of the MLP (activation and
    linear layers, or any module given as :obj:`head`), and the optional
    bilinear ``"qk"`` term is the scaled dot-product of attention. The node terms
    :math:`W_i f_i`, :math:`W_j f_j`, :math:`Q f_i`, :math:`K f_j` are computed once
    per node, not once per edge.

    Args:
        in_channels (int or tuple): Feature size of the nodes (source, target).
        out_dim (int): Number of kernel outputs per edge.
        pos_dim (int, optional): Dimension of positions. (default: :obj:`3`)
        inputs (tuple of str, optional): Any of ``"rel_pos"``, ``"x_i"``,
            ``"x_j"``, ``"x_j - x_i"``, ``"qk"``.
            (default: :obj:`("rel_pos", "x_i", "x_j")`)
        hidden (int, optional): Width of the first layer. (default: :obj:`64`)
        num_layers (int, optional): Number of linear layers; :obj:`1` makes the
            kernel linear in its inputs (then :obj:`hidden` is :obj:`out_dim`).
            (default: :obj:`2`)
        act (str, optional): Activation between layers. (default: :obj:`"relu"`)
        qk_dim (int, optional): Size of the query/key vectors per output of the
            ``"qk"`` term. (default: :obj:`16`)
        pos_nn (torch.nn.Module, optional): Replaces the linear positional term
            :math:`\pi`; must map ``[E, pos_dim]`` to ``[E, hidden]``.
        head (torch.nn.Module, optional): Replaces :math:`g`; must map
            ``[E, hidden]`` to ``[E, out_dim]``.

    Shapes:
        - **node_terms:** source features :math:`(N_s, F_s)`, target features
          :math:`(N_t, F_t)` :math:`\rightarrow` :math:`(N_s, S)`, :math:`(N_t, T)`
        - **edge_forward:** gathered terms :math:`(E, S)`, :math:`(E, T)`,
          relative positions :math:`(E, D)` :math:`\rightarrow` :math:`(E,
          \text{out\_dim})` and the positional embedding :math:`(E, \text{hidden})`
          (or :obj:`None`)

    Example:
        >>> kernel = KernelMLP(16, 32, hidden=64)
        >>> x, pos = torch.randn(10, 16), torch.randn(10, 3)
        >>> src, dst = kernel.node_terms(x, x, pos, pos)
        >>> kappa, _ = kernel.edge_forward(src[:4], dst[4:8], pos[:4] - pos[4:8])
        >>> kappa.shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_dim: int,
        pos_dim: int = 3,
        inputs: Sequence[str] = ("rel_pos", "x_i", "x_j"),
        hidden: int = 64,
        num_layers: int = 2,
        act: str = "relu",
        qk_dim: int = 16,
        pos_nn: Optional[nn.Module] = None,
        head: Optional[nn.Module] = None,
    ):
        super().__init__()
        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if act not in _ACTIVATIONS:
            raise ValueError(
                f"unknown act {act!r}; expected one of {list(_ACTIVATIONS)}"
            )
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.pos_dim = pos_dim
        self.inputs = _check_inputs(inputs)
        self.num_layers = num_layers
        self.act = act
        self.qk_dim = qk_dim
        #: Fold a linear positional term into the node terms (see folds_pos).
        self.fold_pos = True
        if num_layers == 1 and head is None:
            hidden = out_dim
        self.hidden = hidden

        names = set(self.inputs)
        self.has_mlp = bool(names - {"qk"})
        self.has_qk = "qk" in names
        self.lin_i = self.lin_j = self.lin_d = None
        self.pos_term = None
        self.bias = None
        self.head = None
        self.lin_q = self.lin_k = None
        if self.has_mlp:
            if "x_i" in names:
                self.lin_i = nn.Linear(in_channels[1], hidden, bias=False)
            if "x_j" in names:
                self.lin_j = nn.Linear(in_channels[0], hidden, bias=False)
            if "x_j - x_i" in names:
                if in_channels[0] != in_channels[1]:
                    raise ValueError(
                        "'x_j - x_i' needs equal source and target feature sizes, "
                        f"got {in_channels}"
                    )
                self.lin_d = nn.Linear(in_channels[0], hidden, bias=False)
            if "rel_pos" in names:
                self.pos_term = (
                    pos_nn
                    if pos_nn is not None
                    else nn.Linear(pos_dim, hidden, bias=False)
                )
            self.bias = nn.Parameter(torch.empty(hidden))
            if head is not None:
                self.head = head
            elif num_layers == 1:
                self.head = nn.Identity()
            else:
                layers: list[nn.Module] = []
                for _ in range(num_layers - 2):
                    layers += [_ACTIVATIONS[act](), nn.Linear(hidden, hidden)]
                layers += [_ACTIVATIONS[act](), nn.Linear(hidden, out_dim)]
                self.head = nn.Sequential(*layers)
        if self.has_qk:
            self.lin_q = nn.Linear(in_channels[1], out_dim * qk_dim, bias=False)
            self.lin_k = nn.Linear(in_channels[0], out_dim * qk_dim, bias=False)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise all learnable parameters."""
        for lin in (self.lin_i, self.lin_j, self.lin_d, self.lin_q, self.lin_k):
            if lin is not None:
                lin.reset_parameters()
        if self.pos_term is not None and hasattr(self.pos_term, "reset_parameters"):
            self.pos_term.reset_parameters()
        if self.bias is not None:
            fan_in = sum(
                m.in_features
                for m in (self.lin_i, self.lin_j, self.lin_d)
                if m is not None
            ) + (self.pos_dim if self.pos_term is not None else 0)
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            nn.init.uniform_(self.bias, -bound, bound)
        if self.head is not None:
            for module in self.head.modules():
                if module is not self.head and hasattr(module, "reset_parameters"):
                    module.reset_parameters()

    @property
    def src_dim(self) -> int:
        """Width of the per-source node terms."""
        width = self.hidden if self.has_mlp and self.has_src_mlp_terms else 0
        return width + (self.out_dim * self.qk_dim if self.has_qk else 0)

    @property
    def dst_dim(self) -> int:
        """Width of the per-target node terms."""
        width = self.hidden if self.has_mlp else 0
        return width + (self.out_dim * self.qk_dim if self.has_qk else 0)

    @property
    def folds_pos(self) -> bool:
        r"""Whether the linear positional term is folded into the node terms.

        :math:`W_\Delta (p_j - p_i) = W_\Delta p_j - W_\Delta p_i`, so a linear
        positional term costs nothing per edge. A :obj:`pos_nn` module, or a
        layer that needs the positional embedding itself (``value_pos``), keeps
        it per edge.
        """
        return (
            self.pos_term is not None
            and self.fold_pos
            and isinstance(self.pos_term, nn.Linear)
        )

    def node_terms(
        self,
        x_src: Tensor,
        x_dst: Tensor,
        pos_src: Optional[Tensor] = None,
        pos_dst: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        r"""Per-node parts of the kernel, computed once per node.

        Returns the source terms (:math:`W_j f_j + W_\Delta f_j [+ W_p p_j]`, then
        :math:`K f_j`) and the target terms (:math:`W_i f_i - W_\Delta f_i [- W_p
        p_i] + b`, then :math:`Q f_i`), each concatenated along the last dimension.
        Positions are needed when :attr:`folds_pos` is set.
        """
        src_parts: list[Tensor] = []
        dst_parts: list[Tensor] = []
        if self.has_mlp:
            src: Optional[Tensor] = None
            if self.lin_j is not None:
                src = self.lin_j(x_src)
            if self.lin_d is not None:
                d = self.lin_d(x_src)
                src = d if src is None else src + d
            dst = self.bias.expand(x_dst.size(0), -1)
            if self.lin_i is not None:
                dst = dst + self.lin_i(x_dst)
            if self.lin_d is not None:
                dst = dst - self.lin_d(x_dst)
            if self.folds_pos:
                if pos_src is None or pos_dst is None:
                    raise ValueError("node_terms needs positions to fold rel_pos")
                # Centre before the split so that far-from-origin clouds lose
                # no precision in W p_j - W p_i.
                centre = pos_dst.detach().mean(dim=0, keepdim=True)
                p = self.pos_term(pos_src - centre)
                src = p if src is None else src + p
                dst = dst - self.pos_term(pos_dst - centre)
            if src is not None:
                src_parts.append(src)
            dst_parts.append(dst)
        if self.has_qk:
            src_parts.append(self.lin_k(x_src))
            dst_parts.append(self.lin_q(x_dst))
        src_terms = (
            torch.cat(src_parts, dim=-1)
            if src_parts
            else x_src.new_zeros(x_src.size(0), 0)
        )
        dst_terms = (
            torch.cat(dst_parts, dim=-1)
            if dst_parts
            else x_dst.new_zeros(x_dst.size(0), 0)
        )
        return src_terms, dst_terms

    @property
    def has_src_mlp_terms(self) -> bool:
        return self.lin_j is not None or self.lin_d is not None or self.folds_pos

    def forward(
        self, src_terms: Tensor, dst_terms: Tensor, rel_pos: Tensor
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Kernel values of a set of edges; see :meth:`edge_forward`."""
        return self.edge_forward(src_terms, dst_terms, rel_pos)

    def edge_forward(
        self, src_terms: Tensor, dst_terms: Tensor, rel_pos: Tensor
    ) -> tuple[Tensor, Optional[Tensor]]:
        r"""Kernel values of a set of edges from their gathered node terms.

        Leading dimensions broadcast, so a regular neighbourhood layout
        ``(n, k, S)`` with targets ``(n, 1, T)`` works as well as ``(E, S)``.

        Args:
            src_terms (torch.Tensor): Source node terms gathered per edge.
            dst_terms (torch.Tensor): Target node terms gathered per edge.
            rel_pos (torch.Tensor): :math:`p_j - p_i` per edge.

        Returns:
            The kernel :math:`(\dots, \text{out\_dim})` and the positional
            embedding :math:`\pi(p_j - p_i)` (:obj:`None` where it is folded or
            absent).
        """
        kappa: Optional[Tensor] = None
        pos_emb: Optional[Tensor] = None
        qk_width = self.out_dim * self.qk_dim if self.has_qk else 0
        if self.has_mlp:
            hidden = self.hidden
            h = dst_terms[..., :hidden]
            if self.has_src_mlp_terms:
                h = h + src_terms[..., :hidden]
            if self.pos_term is not None and not self.folds_pos:
                pos_emb = self.pos_term(rel_pos)
                h = h + pos_emb
            kappa = self.head(h)
        if self.has_qk:
            q = dst_terms[..., dst_terms.size(-1) - qk_width :]
            k = src_terms[..., src_terms.size(-1) - qk_width :]
            q = q.unflatten(-1, (self.out_dim, self.qk_dim))
            k = k.unflatten(-1, (self.out_dim, self.qk_dim))
            qk = (q * k).sum(dim=-1) * (1.0 / math.sqrt(self.qk_dim))
            kappa = qk if kappa is None else kappa + qk
        assert kappa is not None
        return kappa, pos_emb

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_dim}, "
            f"inputs={list(self.inputs)}, hidden={self.hidden}, "
            f"num_layers={self.num_layers})"
        )


__all__ = ["KernelMLP", "KERNEL_INPUTS"]
