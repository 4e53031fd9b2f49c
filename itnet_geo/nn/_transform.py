r"""What the integral-transform layers share around the mathematics of one edge.

:class:`~itnet_geo.nn.ITConv` (graphs) and the dense adapters
(:class:`~itnet_geo.nn.SequenceIT`, :class:`~itnet_geo.nn.ImageIT`) evaluate

.. math::
    y_i = \operatorname*{AGG}_j\; w_{ij}\,
    \kappa_\theta(p_j - p_i, f_i, f_j) \odot V f_j

with the same options, the same kernel MLP, the same value map :math:`V`, the
same low-rank output map and the same bias. :class:`_IntegralTransform` holds
those parts once; the layers differ only in how they find and sum the pairs
:math:`(i, j)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
from torch import Tensor, nn

from itnet_geo.nn.kernels import KernelMLP
from itnet_geo.ops.fused import MEASURES

#: Kernel modes of :class:`~itnet_geo.nn.ITConv`.
KERNELS = ("channel", "heads", "lowrank", "full")
#: Value maps :math:`V` of :class:`~itnet_geo.nn.ITConv`.
VALUES = ("linear", "identity", "ones")


class _IntegralTransform(nn.Module):
    r"""Options, kernel MLP, value map, output map and bias of the transform.

    A subclass stores its arguments (``in_channels`` as a (source, target) pair,
    ``out_channels``, ``pos_dim``, ``kernel_inputs``, ``kernel``, ``hidden``,
    ``heads``, ``rank``, ``measure``, ``num_layers``, ``act``, ``value``,
    ``qk_dim``), then calls :meth:`_build_maps`; it calls
    :meth:`_reset_maps` from ``reset_parameters``. Values are laid out as
    ``(..., K_v, C)`` over any leading sizes (nodes, or batch and sequence), so
    graph and dense layers share :meth:`_values` and :meth:`_finish`.
    """

    #: Kernel modes the layer evaluates, and how an error names them.
    _kernels: tuple[str, ...] = KERNELS
    _kernels_expected = "expected one of"

    in_channels: tuple[int, int]
    out_channels: int
    pos_dim: int
    kernel_inputs: tuple[str, ...]
    kernel: str
    hidden: int
    heads: int
    rank: int
    measure: str
    num_layers: int
    act: str
    value: str
    qk_dim: int
    lin_value: Optional[nn.Linear]
    lin_out: Optional[nn.Linear]

    @classmethod
    def _check_options(
        cls,
        measure: str,
        kernel: str,
        value: str,
        heads: int,
        c_src: int,
        out_channels: int,
    ) -> None:
        """Raise :class:`ValueError` on a measure, kernel or value map it lacks."""
        if measure not in MEASURES:
            raise ValueError(f"unknown measure {measure!r}; expected one of {MEASURES}")
        if kernel not in cls._kernels:
            raise ValueError(
                f"unknown kernel {kernel!r}; {cls._kernels_expected} {cls._kernels}"
            )
        if value not in VALUES:
            raise ValueError(f"unknown value {value!r}; expected one of {VALUES}")
        if kernel == "heads" and out_channels % heads != 0:
            raise ValueError(
                f"out_channels ({out_channels}) must be divisible by heads ({heads})"
            )
        if (
            value == "identity"
            and kernel in ("channel", "heads")
            and c_src != out_channels
        ):
            raise ValueError(
                f"value='identity' needs in_channels == out_channels, got "
                f"{c_src} and {out_channels}"
            )
        if kernel in ("lowrank", "full") and value != "linear":
            raise ValueError(
                f"kernel={kernel!r} has its own value map; use value='linear'"
            )

    def _build_maps(
        self,
        kernel_pos_nn: Optional[nn.Module],
        kernel_head: Optional[nn.Module],
        bias: bool,
    ) -> None:
        """Build ``kernel_nn``, ``lin_value``, ``lin_out`` and ``bias``, in order."""
        c_src, out_channels = self.in_channels[0], self.out_channels
        kernel_dim = {
            "channel": out_channels,
            "heads": self.heads,
            "lowrank": self.rank,
            "full": out_channels * c_src,
        }[self.kernel]
        self.kernel_nn = KernelMLP(
            self.in_channels,
            kernel_dim,
            pos_dim=self.pos_dim,
            inputs=self.kernel_inputs,
            hidden=self.hidden,
            num_layers=self.num_layers,
            act=self.act,
            qk_dim=self.qk_dim,
            pos_nn=kernel_pos_nn,
            head=kernel_head,
        )
        self.lin_value = None
        self.lin_out = None
        if self.kernel in ("channel", "heads") and self.value == "linear":
            self.lin_value = nn.Linear(c_src, out_channels, bias=False)
        elif self.kernel == "lowrank":
            self.lin_out = nn.Linear(self.rank * c_src, out_channels, bias=False)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter("bias", None)

    def _reset_maps(self) -> None:
        """Re-initialise what :meth:`_build_maps` built."""
        self.kernel_nn.reset_parameters()
        if self.lin_value is not None:
            self.lin_value.reset_parameters()
        if self.lin_out is not None:
            self.lin_out.reset_parameters()
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _values(self, x_src: Tensor) -> Tensor:
        """Values :math:`V f_j` of ``(..., C)`` sources as ``(..., K_v, C_v)``."""
        lead = x_src.shape[:-1]
        if self.kernel == "lowrank":
            return x_src.unsqueeze(-2)
        if self.kernel == "full":
            return x_src.unsqueeze(-1)
        if self.value == "ones":
            return x_src.new_ones(()).expand(*lead, self.out_channels, 1)
        v = self.lin_value(x_src) if self.lin_value is not None else x_src
        if self.kernel == "heads":
            return v.view(*lead, self.heads, self.out_channels // self.heads)
        return v.unsqueeze(-1)

    def _finish(self, out: Tensor) -> Tensor:
        """``(..., K, C)`` integrals -> ``(..., C_out)``: low-rank map and bias."""
        out = out.flatten(-2)
        if self.lin_out is not None:
            out = self.lin_out(out)
        if self.bias is not None:
            out = out + self.bias
        return out

    def _options_repr(self) -> Sequence[str]:
        """``name=value`` options of the repr before ``kernel`` and ``measure``."""
        return ()

    def __repr__(self) -> str:
        c_src, c_dst = self.in_channels
        c_in = c_src if c_src == c_dst else self.in_channels
        options = (*self._options_repr(), f"kernel={self.kernel}")
        return (
            f"{self.__class__.__name__}({c_in}, {self.out_channels}, "
            f"{', '.join(options)}, measure={self.measure})"
        )
