r"""Convolution, attention and recurrences as dense integral transforms.

Every ``from_*`` function takes a classic module and returns an ITNet module that
computes the same function and is called the same way, built on
:class:`~itnet_geo.nn.SequenceIT` / :class:`~itnet_geo.nn.ImageIT` (one tile,
measure and message code for all of them):

* :func:`from_conv1d`, :func:`from_conv2d`: a window grid whose kernel is a table
  over the integer offsets of the taps (:class:`~itnet_geo.nn.dense.OffsetOneHot`
  inside the same :class:`~itnet_geo.nn.KernelMLP`, ``kernel="lowrank"`` with the
  convolution weight as :math:`U`);
* :func:`from_multihead_attention`: a full (or causal) grid, the ``"qk"`` kernel
  input, ``kernel="heads"`` and the ``softmax`` measure;
* :func:`from_diagonal_ssm`: a causal grid with the kernel
  :math:`\kappa(t - s) = \operatorname{Re} C \bar A^{t-s} \bar B` (+ the skip
  :math:`D` at :math:`t = s`) as the :class:`~itnet_geo.nn.KernelMLP`'s
  positional term;
* :func:`from_selective_scan`, :func:`from_mingru`, :func:`from_minlstm` and
  :func:`from_gru` / :func:`from_lstm` *when their recurrent weights are zero*: a
  causal grid with the kernel :class:`ScanKernel`
  :math:`\kappa_d(t, s) = \sum_n q_t k_s e^{\Lambda_t - \Lambda_s}`, where
  :math:`\Lambda` is a cumulative sum of log-decays. :math:`\Lambda_t` is a
  function of the whole prefix :math:`x_{\le t}`, not of :math:`x_t` alone, so
  this kernel is *not* one of :class:`~itnet_geo.nn.KernelMLP`'s inputs: the
  adapter :class:`ScanIT` computes the node terms (the cumulative sums) itself
  and applies :class:`ScanKernel` through the same tile and measure code.

What is not a special case: an LSTM or GRU whose gates read the hidden state.
Their :math:`h_t` is a nonlinear function of :math:`h_{t-1}` (through
:math:`\sigma` and :math:`\tanh`), while an integral transform is linear in its
values once the kernel is fixed, and its kernel here reads the inputs only; so no
kernel of the inputs reproduces them. The nearest exact statements are tested:
with recurrent weights zero they are the scans above (:func:`from_gru`,
:func:`from_lstm`; :class:`MinGRU` / :class:`MinLSTM` are those models by design),
and a test shows that a GRU with recurrent weights is not even affine in its
initial state, whereas every transform here is.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from itnet_geo.nn.dense import ImageIT, OffsetOneHot, SequenceIT, _Grid


# ---------------------------------------------------------------- convolution
def _block_diagonal(weight: Tensor, groups: int) -> Tensor:
    """``(C_out, C_in / g, *k)`` -> ``(C_out, C_in, *k)`` with zeros across groups."""
    c_out, c_in_g = weight.shape[:2]
    full = weight.new_zeros((c_out, c_in_g * groups) + tuple(weight.shape[2:]))
    c_out_g = c_out // groups
    for g in range(groups):
        rows = slice(g * c_out_g, (g + 1) * c_out_g)
        full[rows, g * c_in_g : (g + 1) * c_in_g] = weight[rows]
    return full


def _check_conv(m: nn.Module) -> None:
    if m.padding_mode != "zeros":
        raise ValueError(
            f"padding_mode={m.padding_mode!r} reads reflected, replicated or wrapped "
            "pixels, which are not sources of the input grid; only 'zeros' padding "
            "(sources outside the input are absent) is a special case"
        )
    if getattr(m, "transposed", False):
        raise ValueError("transposed convolutions are not converted")


def _conv_transform(layer: Union[SequenceIT, ImageIT], m: nn.Module) -> None:
    """Load a convolution's weight and bias into a one-hot low-rank layer."""
    layer.to(device=m.weight.device, dtype=m.weight.dtype)  # before copying
    full = _block_diagonal(m.weight.detach(), m.groups)  # (C_out, C_in, *k)
    taps = full.flatten(2)  # (C_out, C_in, R), row-major over the window
    with torch.no_grad():
        layer.kernel_nn.bias.zero_()
        layer.lin_out.weight.copy_(taps.permute(0, 2, 1).reshape(full.size(0), -1))
        if m.bias is not None:
            layer.bias.copy_(m.bias)


def _conv_layer(cls, m: nn.Module, ndim: int, tile_size: int):
    _check_conv(m)
    window = tuple(m.kernel_size)
    padding = m.padding if isinstance(m.padding, str) else tuple(m.padding)
    layer = cls(
        m.in_channels,
        m.out_channels,
        grid="window",
        window=window[0] if ndim == 1 else window,
        stride=tuple(m.stride) if ndim > 1 else m.stride[0],
        padding=padding,
        dilation=tuple(m.dilation) if ndim > 1 else m.dilation[0],
        kernel_inputs=("rel_pos",),
        kernel="lowrank",
        rank=math.prod(window),
        num_layers=1,
        bias=m.bias is not None,
        tile_size=tile_size,
        kernel_pos_nn=OffsetOneHot.for_window(
            window[0] if ndim == 1 else window, m.dilation, padding
        ),
    )
    _conv_transform(layer, m)
    return layer


class Conv1dIT(nn.Module):
    r""":class:`torch.nn.Conv1d` as an integral transform, called like it.

    Wraps a :class:`~itnet_geo.nn.SequenceIT` on a window grid (its
    :attr:`transform`) and moves channels first, as a convolution does.

    Args:
        transform (SequenceIT): The window-grid transform.

    Shapes:
        - **input:** :math:`(B, C_{in}, L)` or :math:`(C_{in}, L)`
        - **output:** :math:`(B, C_{out}, L_{out})` or :math:`(C_{out}, L_{out})`

    Example:
        >>> conv = torch.nn.Conv1d(4, 6, 3, padding=1)
        >>> from_conv1d(conv)(torch.randn(2, 4, 10)).shape
        torch.Size([2, 6, 10])
    """

    def __init__(self, transform: SequenceIT):
        super().__init__()
        self.transform = transform

    def forward(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(0)
        out = self.transform(x.transpose(1, 2)).transpose(1, 2)
        return out.squeeze(0) if unbatched else out


def from_conv1d(m: nn.Conv1d, tile_size: int = 64) -> Conv1dIT:
    r"""Build the integral transform that equals a :class:`torch.nn.Conv1d`.

    .. math::
        y_o = b + \sum_{r} \kappa(p_{o,r} - p_o)\, x_{p_{o,r}}, \qquad
        \kappa(\delta) = \sum_r [\delta = \delta_r]\, W_{:, :, r}

    on the window grid of the convolution (stride, dilation, ``"same"`` /
    ``"valid"`` / integer padding), with :class:`~itnet_geo.nn.dense.OffsetOneHot`
    as the kernel's positional term and the weight as the low-rank factor
    :math:`U` (``kernel="lowrank"``, rank = kernel size). ``groups`` are exact:
    the weight is block-diagonal. Zero padding is exact because taps outside the
    input are left out of the sum, which is what a zero does to it. Other
    padding modes are not converted.

    Args:
        m (torch.nn.Conv1d): The convolution.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)

    Example:
        >>> conv = torch.nn.Conv1d(4, 6, 3, stride=2, dilation=2, groups=2)
        >>> x = torch.randn(2, 4, 20)
        >>> torch.allclose(from_conv1d(conv)(x), conv(x), atol=1e-6)
        True
    """
    return Conv1dIT(_conv_layer(SequenceIT, m, 1, tile_size))


def from_conv2d(m: nn.Conv2d, tile_size: int = 256) -> ImageIT:
    r"""Build the integral transform that equals a :class:`torch.nn.Conv2d`.

    As :func:`from_conv1d` on a 2-D window grid: the kernel is a one-hot table
    over the :math:`k_h k_w` tap offsets (row-major, as the weight is laid out),
    the weight is the low-rank factor, and stride, dilation, zero padding
    (integer, ``"same"``, ``"valid"``) and groups are exact. The returned
    :class:`~itnet_geo.nn.ImageIT` takes :math:`(B, C, H, W)` like the
    convolution.

    Args:
        m (torch.nn.Conv2d): The convolution.
        tile_size (int, optional): Targets (output pixels) per tile.
            (default: :obj:`256`)

    Example:
        >>> conv = torch.nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=1)
        >>> x = torch.randn(2, 3, 9, 8)
        >>> torch.allclose(from_conv2d(conv)(x), conv(x), atol=1e-6)
        True
    """
    return _conv_layer(ImageIT, m, 2, tile_size)


# ------------------------------------------------------------------ attention
class MultiheadAttentionIT(nn.Module):
    r""":class:`torch.nn.MultiheadAttention` as an integral transform.

    .. math::
        y_i = W_o \sum_{j} \frac{w_{ij}\, e^{\langle q_i, k_j \rangle /
        \sqrt{d}}}{\sum_l w_{il}\, e^{\langle q_i, k_l \rangle / \sqrt{d}}}\,
        v_j + b_o \quad \text{per head}

    Targets are the queries, sources the key/value pairs. The target features
    are :math:`[x^q_i, 1]` and the source features :math:`[x^k_j, x^v_j, 1]`:
    the constant channel carries the in-projection biases, so
    :math:`q = W_q x^q + b_q`, :math:`k = W_k x^k + b_k` and
    :math:`v = W_v x^v + b_v` are the kernel's :math:`Q`, :math:`K` and the
    layer's value map exactly. A bool mask restricts the support; a float
    (additive) mask :math:`m` is the quadrature weight :math:`w = e^{m}`, since
    ``softmax`` integrates :math:`\kappa + \log w`. With ``is_causal`` and no
    padding mask or weights requested, the causal grid is used, as torch does.

    Attention dropout is not reproduced: outputs equal the module's in
    ``eval()`` mode or with ``dropout=0``.

    Args:
        transform (SequenceIT): The full-grid, ``"qk"``, ``heads``, ``softmax``
            transform.
        out_proj (torch.nn.Linear): The output projection.
        batch_first (bool): As the original module.

    Shapes:
        - **input:** as :class:`torch.nn.MultiheadAttention`
        - **output:** ``(attn_output, attn_weights or None)``

    Example:
        >>> mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
        >>> x = torch.randn(2, 5, 8)
        >>> out, weights = from_multihead_attention(mha)(x, x, x)
        >>> out.shape, weights.shape
        (torch.Size([2, 5, 8]), torch.Size([2, 5, 5]))
    """

    def __init__(self, transform: SequenceIT, out_proj: nn.Linear, batch_first: bool):
        super().__init__()
        self.transform = transform
        self.out_proj = out_proj
        self.batch_first = batch_first
        self.num_heads = transform.heads

    def _masks(
        self,
        b: int,
        attn_mask: Optional[Tensor],
        key_padding_mask: Optional[Tensor],
        dtype: torch.dtype,
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Torch's masks as ``(mask, weight)`` of layout ``(B|1, L, S, H|1)``."""
        parts: list[Tensor] = []
        if attn_mask is not None:
            if attn_mask.dim() == 2:
                parts.append(attn_mask[None, :, :, None])
            elif attn_mask.dim() == 3:
                h = self.num_heads
                parts.append(
                    attn_mask.view(b, h, *attn_mask.shape[1:]).permute(0, 2, 3, 1)
                )
            else:
                raise ValueError(
                    f"attn_mask must be 2-D or 3-D, got {attn_mask.dim()}-D"
                )
        if key_padding_mask is not None:
            parts.append(key_padding_mask[:, None, :, None])
        if not parts:
            return None, None
        if all(p.dtype == torch.bool for p in parts):
            allowed = ~parts[0]
            for p in parts[1:]:
                allowed = allowed & ~p
            return allowed, None
        additive = None
        for p in parts:
            if p.dtype == torch.bool:
                p = torch.zeros(p.shape, dtype=dtype, device=p.device).masked_fill(
                    p, float("-inf")
                )
            additive = p.to(dtype) if additive is None else additive + p.to(dtype)
        assert additive is not None
        return None, additive.exp()

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Optional[Tensor] = None,
        need_weights: bool = True,
        attn_mask: Optional[Tensor] = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        # now (L, B, E) as torch's functional form; go to (B, L, E)
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        b, length = query.size(0), query.size(1)
        if is_causal and attn_mask is None:
            raise RuntimeError("Need attn_mask if specifying the is_causal hint")
        kind = "full"
        if is_causal and key_padding_mask is None and not need_weights:
            kind, attn_mask = "causal", None  # torch drops the mask for this hint
        mask, weight = self._masks(b, attn_mask, key_padding_mask, query.dtype)
        x_dst = torch.cat([query, query.new_ones(b, length, 1)], dim=-1)
        x_src = torch.cat([key, value, key.new_ones(b, key.size(1), 1)], dim=-1)
        out = self.transform._transform((x_src, x_dst), weight, mask, kind)
        out = self.out_proj(out).transpose(0, 1)  # (L, B, E)
        attn = None
        if need_weights:
            coef = self.transform.kernel_weights((x_src, x_dst), weight, mask, kind)
            attn = coef.permute(0, 3, 1, 2)  # (B, H, L, S)
            if average_attn_weights:
                attn = attn.mean(dim=1)
            if unbatched:
                attn = attn.squeeze(0)
        if unbatched:
            out = out.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, attn


def from_multihead_attention(
    m: nn.MultiheadAttention, tile_size: int = 64, source_tile: Optional[int] = None
) -> MultiheadAttentionIT:
    r"""Build the integral transform that equals a :class:`torch.nn.MultiheadAttention`.

    The kernel is :math:`\exp(\langle q_i, k_j\rangle / \sqrt{d})` per head: the
    ``"qk"`` input of :class:`~itnet_geo.nn.KernelMLP` (``qk_dim`` = head size)
    with the ``softmax`` measure and ``kernel="heads"``; the value map is the
    in-projection of the values, and the output projection follows. Exact for
    self- and cross-attention, ``batch_first`` either way, unbatched inputs,
    ``kdim`` / ``vdim``, bool or float ``attn_mask`` (2-D or per head 3-D),
    ``key_padding_mask``, ``is_causal``, ``need_weights`` (averaged or per head).
    Not converted: ``add_bias_kv`` and ``add_zero_attn`` (extra tokens), and the
    attention dropout (equal in ``eval()`` or with ``dropout=0``).

    Args:
        m (torch.nn.MultiheadAttention): The attention module.
        tile_size (int, optional): Queries per tile. (default: :obj:`64`)
        source_tile (int, optional): Keys per chunk of the online softmax;
            :obj:`None` takes whole rows. (default: :obj:`None`)

    Example:
        >>> mha = torch.nn.MultiheadAttention(8, 2).eval()
        >>> x = torch.randn(5, 3, 8)
        >>> ref, _ = mha(x, x, x)
        >>> out, _ = from_multihead_attention(mha)(x, x, x)
        >>> torch.allclose(out, ref, atol=1e-6)
        True
    """
    if m.bias_k is not None or m.add_zero_attn:
        raise ValueError(
            "add_bias_kv / add_zero_attn append tokens that are not in the input; "
            "they are not converted"
        )
    e, h = m.embed_dim, m.num_heads
    kdim, vdim = m.kdim, m.vdim
    if m._qkv_same_embed_dim:
        w_q, w_k, w_v = m.in_proj_weight.detach().chunk(3)
    else:
        w_q, w_k, w_v = (
            m.q_proj_weight.detach(),
            m.k_proj_weight.detach(),
            m.v_proj_weight.detach(),
        )
    if m.in_proj_bias is not None:
        b_q, b_k, b_v = m.in_proj_bias.detach().chunk(3)
    else:
        b_q = b_k = b_v = w_q.new_zeros(e)
    layer = SequenceIT(
        (kdim + vdim + 1, e + 1),
        e,
        grid="full",
        kernel_inputs=("qk",),
        kernel="heads",
        heads=h,
        measure="softmax",
        value="linear",
        bias=False,
        qk_dim=e // h,
        tile_size=tile_size,
        source_tile=source_tile,
    )
    layer.to(device=w_q.device, dtype=w_q.dtype)  # before copying the weights
    zeros_k, zeros_v = w_k.new_zeros(e, vdim), w_v.new_zeros(e, kdim)
    with torch.no_grad():
        layer.kernel_nn.lin_q.weight.copy_(torch.cat([w_q, b_q[:, None]], dim=1))
        layer.kernel_nn.lin_k.weight.copy_(torch.cat([w_k, zeros_k, b_k[:, None]], 1))
        layer.lin_value.weight.copy_(torch.cat([zeros_v, w_v, b_v[:, None]], dim=1))
    out_proj = nn.Linear(
        e, e, bias=m.out_proj.bias is not None, device=w_q.device, dtype=w_q.dtype
    )
    out_proj.load_state_dict(m.out_proj.state_dict())
    return MultiheadAttentionIT(layer, out_proj, m.batch_first)


# ------------------------------------------------------- linear state spaces
class DiagonalSSM(nn.Module):
    r"""A diagonal linear time-invariant state space layer (S4D-style), stepped.

    Each channel :math:`c` runs its own :math:`N`-state recurrence, discretised by
    zero-order hold with step :math:`\Delta_c`:

    .. math::
        h_t = \bar A \odot h_{t-1} + \bar B\, x_t, \qquad
        y_t = \operatorname{Re}\, \langle C, h_t \rangle + D\, x_t,

    :math:`\bar A = e^{\Delta A}`, :math:`\bar B = (\bar A - 1) A^{-1} B`,
    :math:`A = -e^{a} + i\,\theta` (complex) or :math:`-e^{a}` (real). The
    forward pass is the step-by-step loop: the reference for
    :func:`from_diagonal_ssm`.

    Args:
        channels (int): Channels :math:`H` (each its own SSM).
        state_size (int, optional): States :math:`N` per channel.
            (default: :obj:`16`)
        complex (bool, optional): Complex (S4D-Lin) or real (S4D-Real) diagonal.
            (default: :obj:`True`)
        dt_min (float, optional): Smallest initial step. (default: :obj:`1e-3`)
        dt_max (float, optional): Largest initial step. (default: :obj:`1e-1`)

    Shapes:
        - **input:** :math:`(B, L, H)`
        - **output:** :math:`(B, L, H)`

    Example:
        >>> ssm = DiagonalSSM(4, state_size=8)
        >>> ssm(torch.randn(2, 10, 4)).shape
        torch.Size([2, 10, 4])
    """

    def __init__(
        self,
        channels: int,
        state_size: int = 16,
        complex: bool = True,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        self.channels = channels
        self.state_size = state_size
        self.complex = complex
        self.dt_min = dt_min
        self.dt_max = dt_max
        shape = (channels, state_size) + ((2,) if complex else ())
        self.log_dt = nn.Parameter(torch.empty(channels))
        self.log_a_real = nn.Parameter(torch.empty(channels, state_size))
        self.a_imag = (
            nn.Parameter(torch.empty(channels, state_size)) if complex else None
        )
        self.b = nn.Parameter(torch.empty(shape))
        self.c = nn.Parameter(torch.empty(shape))
        self.d = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self):
        """S4D initialisation (Lin for complex, Real for real)."""
        with torch.no_grad():
            low, high = math.log(self.dt_min), math.log(self.dt_max)
            self.log_dt.uniform_(low, high)
            n = torch.arange(self.state_size, dtype=self.log_dt.dtype)
            if self.complex:
                self.log_a_real.fill_(math.log(0.5))
                self.a_imag.copy_((math.pi * n).expand_as(self.a_imag))
                self.b.zero_()
                self.b[..., 0] = 1.0
                self.c.normal_(0.0, math.sqrt(0.5))
            else:
                self.log_a_real.copy_(torch.log(n + 1).expand_as(self.log_a_real))
                self.b.fill_(1.0)
                self.c.normal_()
            self.d.normal_()

    def _as_complex(self, t: Tensor) -> Tensor:
        return torch.view_as_complex(t.contiguous()) if self.complex else t

    def discretize(self) -> tuple[Tensor, Tensor, Tensor]:
        r""":math:`\Delta A`, :math:`\bar B` and :math:`C`, each :math:`(H, N)`."""
        a = -self.log_a_real.exp()
        if self.complex:
            a = torch.complex(a, self.a_imag)
        dt_a = self.log_dt.exp().unsqueeze(-1) * a
        b_bar = (dt_a.exp() - 1) / a * self._as_complex(self.b)
        return dt_a, b_bar, self._as_complex(self.c)

    def forward(self, x: Tensor) -> Tensor:
        dt_a, b_bar, c = self.discretize()
        a_bar = dt_a.exp()
        h = b_bar.new_zeros(x.size(0), self.channels, self.state_size)
        outs = []
        for t in range(x.size(1)):
            h = a_bar * h + b_bar * x[:, t, :, None]
            y = (c * h).sum(-1)
            outs.append((y.real if self.complex else y) + self.d * x[:, t])
        if not outs:
            return x.new_zeros(x.shape)
        return torch.stack(outs, dim=1)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, "
            f"state_size={self.state_size}, complex={self.complex})"
        )


class DiagonalSSMKernel(nn.Module):
    r"""The convolution kernel of a :class:`DiagonalSSM`, as a positional term.

    .. math::
        \kappa_c(p_j - p_i) = \operatorname{Re} \sum_n C_{cn}\,
        e^{\tau \Delta_c A_{cn}}\, \bar B_{cn} + D_c [\tau = 0],
        \qquad \tau = p_i - p_j \ge 0

    Used as ``kernel_pos_nn`` of a one-layer :class:`~itnet_geo.nn.KernelMLP`
    on the causal grid. The lag is clamped at :math:`0` outside the causal
    support (masked there anyway) so that :math:`e^{\tau \Delta A}` never
    overflows.

    Args:
        ssm (DiagonalSSM): The layer whose parameters (copied) define the kernel.

    Shapes:
        - **input:** relative positions :math:`(\dots, 1)`
        - **output:** :math:`(\dots, H)`
    """

    def __init__(self, ssm: DiagonalSSM):
        super().__init__()
        self.ssm = copy.deepcopy(ssm)

    def forward(self, rel_pos: Tensor) -> Tensor:
        dt_a, b_bar, c = self.ssm.discretize()
        lag = (-rel_pos).clamp_min(0.0)  # (..., 1)
        power = (lag.unsqueeze(-1) * dt_a).exp()  # (..., H, N)
        kappa = (c * b_bar * power).sum(-1)
        if self.ssm.complex:
            kappa = kappa.real
        return kappa + self.ssm.d * (lag == 0).to(kappa.dtype)


def from_diagonal_ssm(m: DiagonalSSM, tile_size: int = 64) -> SequenceIT:
    r"""Build the integral transform that equals a :class:`DiagonalSSM`.

    Unrolling the recurrence gives :math:`y_t = \sum_{s \le t} \kappa(t - s)
    \odot x_s` with :math:`\kappa(\tau) = \operatorname{Re} C \bar A^{\tau} \bar B
    + D[\tau = 0]` per channel: a :class:`~itnet_geo.nn.SequenceIT` on the causal
    grid, ``kernel_inputs=("rel_pos",)``, ``kernel="channel"``,
    ``value="identity"``, ``measure="sum"``, whose kernel MLP has one layer and
    :class:`DiagonalSSMKernel` as its positional term. It costs
    :math:`O(L^2)` (the transform's view), where the recurrence costs
    :math:`O(L)`.

    Args:
        m (DiagonalSSM): The state space layer.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)

    Example:
        >>> ssm = DiagonalSSM(4, state_size=8)
        >>> x = torch.randn(2, 12, 4)
        >>> torch.allclose(from_diagonal_ssm(ssm)(x), ssm(x), atol=1e-5)
        True
    """
    layer = SequenceIT(
        m.channels,
        m.channels,
        grid="causal",
        kernel_inputs=("rel_pos",),
        kernel="channel",
        num_layers=1,
        value="identity",
        bias=False,
        tile_size=tile_size,
        kernel_pos_nn=DiagonalSSMKernel(m),
    )
    with torch.no_grad():
        layer.kernel_nn.bias.zero_()
    return layer.to(device=m.d.device, dtype=m.d.dtype)


# ------------------------------------------------------ input-dependent scans
class ScanTerms(NamedTuple):
    r"""Per-position terms of a diagonal scan :math:`h_t = a_t h_{t-1} + k_t v_t`.

    ``log_decay`` :math:`\log a_t`, ``query`` :math:`q_t` and ``key`` :math:`k_t`
    are :math:`(B, L, D, N)`, ``value`` :math:`v_t` is :math:`(B, L, D)` and
    ``skip`` :math:`(D)` (or :obj:`None`) adds :math:`D \odot x_t`; the output is
    :math:`y_t = \sum_n q_t h_t + \text{skip}\, x_t`.
    """

    log_decay: Tensor
    query: Tensor
    key: Tensor
    value: Tensor
    skip: Optional[Tensor] = None


class ScanKernel(nn.Module):
    r"""The kernel of a diagonal scan with input-dependent decay.

    .. math::
        \kappa_d(t, s) = \sum_{n} q_{t,dn}\, k_{s,dn}\,
        e^{\min(\Lambda_{t,dn} - \Lambda_{s,dn},\, 0)}
        + \text{skip}_d\, [t = s], \qquad
        \Lambda_t = \sum_{r \le t} \log a_r

    Node terms are :math:`[q_t, \Lambda_t, \text{skip}]` per target and
    :math:`[k_s, \Lambda_s]` per source. :math:`\Lambda` is a cumulative sum over
    the sequence, so the terms are built by :class:`ScanIT`, not by
    :meth:`~itnet_geo.nn.KernelMLP.node_terms`; :meth:`edge_forward` has the same
    signature and broadcasting as the MLP's. The decays satisfy :math:`a_r \le 1`,
    so :math:`\Lambda_t - \Lambda_s \le 0` on the causal support and the
    :math:`\min(\cdot, 0)` only keeps masked pairs from overflowing.

    Args:
        channels (int): :math:`D`.
        state_size (int): :math:`N`.
    """

    def __init__(self, channels: int, state_size: int):
        super().__init__()
        self.channels = channels
        self.state_size = state_size
        self.out_dim = channels

    def reset_parameters(self):
        """The kernel has no parameters of its own."""

    def edge_forward(
        self, src_terms: Tensor, dst_terms: Tensor, rel_pos: Tensor
    ) -> tuple[Tensor, None]:
        width = self.channels * self.state_size
        shape = (self.channels, self.state_size)
        q = dst_terms[..., :width].unflatten(-1, shape)
        lam_t = dst_terms[..., width : 2 * width].unflatten(-1, shape)
        skip = dst_terms[..., 2 * width :]
        k = src_terms[..., :width].unflatten(-1, shape)
        lam_s = src_terms[..., width:].unflatten(-1, shape)
        decay = (lam_t - lam_s).clamp_max(0.0).exp()
        kappa = (q * k * decay).sum(-1)
        if skip.size(-1) > 0:
            kappa = kappa + skip * (rel_pos == 0).to(kappa.dtype)
        return kappa, None

    def forward(self, src_terms, dst_terms, rel_pos):
        return self.edge_forward(src_terms, dst_terms, rel_pos)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, state_size={self.state_size})"
        )


class ScanIT(SequenceIT):
    r"""A diagonal scan with input-dependent gates as an integral transform.

    .. math::
        y_t = \sum_{s \le t} \kappa(t, s) \odot v_s
        \;+\; \sum_n q_t\, e^{\Lambda_t}\, h_{0}

    with :class:`ScanKernel` on the causal grid, ``measure="sum"``. The
    :obj:`gates` module maps the input to :class:`ScanTerms`; this layer forms the
    cumulative log-decays :math:`\Lambda`, the node terms, and integrates them with
    the tile code of :class:`~itnet_geo.nn.SequenceIT`. An initial state
    :math:`h_0` is :math:`N` more sources at position :math:`-1` (one per state,
    key the unit vector, :math:`\Lambda = 0`, value :math:`h_{0,n}`).

    Precision: :math:`\Lambda_t - \Lambda_s` is a difference of two cumulative
    sums, so its absolute error grows like :math:`\varepsilon |\Lambda_t|`; in
    float32, long sequences with strong decay lose digits that the step-by-step
    recurrence keeps (the tests compare in float64).

    Args:
        gates (torch.nn.Module): ``gates(x) -> ScanTerms``; has attributes
            ``channels`` and ``state_size``.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)
        source_tile (int, optional): Sources per chunk. (default: :obj:`None`)

    Shapes:
        - **input:** :math:`(B, L, C)`, initial state :math:`(B, D)` or
          :math:`(B, D, N)` *(optional)*
        - **output:** :math:`(B, L, D)`
    """

    def __init__(
        self, gates: nn.Module, tile_size: int = 64, source_tile: Optional[int] = None
    ):
        channels = gates.channels
        super().__init__(
            channels,
            channels,
            grid="causal",
            kernel_inputs=("rel_pos",),
            kernel="channel",
            num_layers=1,
            value="identity",
            bias=False,
            tile_size=tile_size,
            source_tile=source_tile,
        )
        self.kernel_nn = ScanKernel(channels, gates.state_size)
        self.gates = gates

    def forward(self, x: Tensor, h_0: Optional[Tensor] = None) -> Tensor:  # type: ignore[override]
        terms: ScanTerms = self.gates(x)
        b, length, d, n = terms.key.shape
        lam = terms.log_decay.cumsum(dim=1)
        skip = (
            terms.skip.expand(b, length, d)
            if terms.skip is not None
            else lam.new_zeros(b, length, 0)
        )
        dst_terms = torch.cat(
            [terms.query.expand(b, length, d, n).flatten(2), lam.flatten(2), skip], -1
        )
        src_terms = torch.cat([terms.key.flatten(2), lam.flatten(2)], dim=-1)
        value = terms.value
        pos = torch.arange(length, dtype=x.dtype, device=x.device).unsqueeze(-1)
        pos_src = pos
        if h_0 is not None:
            h_0 = h_0.reshape(b, d, n)
            unit = torch.eye(n, dtype=x.dtype, device=x.device)  # one source per state
            key0 = unit.view(1, n, 1, n).expand(b, n, d, n)
            src0 = torch.cat([key0.flatten(2), key0.new_zeros(b, n, d * n)], dim=-1)
            src_terms = torch.cat([src0, src_terms], dim=1)
            value = torch.cat([h_0.transpose(1, 2), value], dim=1)
            pos_src = torch.cat([pos.new_full((n, 1), -1.0), pos], dim=0)
        grid = _Grid("causal", (length,), (1,), x.device)
        out = self._integrate(
            grid, src_terms, dst_terms, value.unsqueeze(-1), pos_src, pos
        )
        return self._finish(out)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.gates.__class__.__name__}, "
            f"channels={self.kernel_nn.channels}, "
            f"state_size={self.kernel_nn.state_size})"
        )


class SelectiveScan(nn.Module):
    r"""The selective scan of Mamba (S6), stepped: the reference module.

    .. math::
        \Delta_t = \operatorname{softplus}(W_\Delta W_r x_t + b_\Delta),\quad
        B_t = W_B x_t,\quad C_t = W_C x_t,

        h_t = e^{\Delta_t A} \odot h_{t-1} + \Delta_t B_t\, x_t,\qquad
        y_t = \langle C_t, h_t \rangle + D \odot x_t

    per channel (:math:`h_t` is :math:`D \times N`, :math:`A = -e^{A_{\log}}`),
    as ``selective_scan_ref`` of the Mamba code with ``delta_softplus=True`` and
    no gate :math:`z`. The rest of a Mamba block (in/out projections, the short
    convolution, the SiLU gate) is pointwise or a :class:`torch.nn.Conv1d`.

    Args:
        channels (int): :math:`D`.
        state_size (int, optional): :math:`N`. (default: :obj:`16`)
        dt_rank (int, optional): Rank of the :math:`\Delta` projection;
            :obj:`None` uses :math:`\lceil D / 16 \rceil`. (default: :obj:`None`)
        dt_min (float, optional): Smallest initial step. (default: :obj:`1e-3`)
        dt_max (float, optional): Largest initial step. (default: :obj:`1e-1`)

    Shapes:
        - **input:** :math:`(B, L, D)`, initial state :math:`(B, D, N)`
          *(optional)*
        - **output:** :math:`(B, L, D)`

    Example:
        >>> scan = SelectiveScan(4, state_size=8)
        >>> scan(torch.randn(2, 10, 4)).shape
        torch.Size([2, 10, 4])
    """

    def __init__(
        self,
        channels: int,
        state_size: int = 16,
        dt_rank: Optional[int] = None,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
    ):
        super().__init__()
        self.channels = channels
        self.state_size = state_size
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(channels / 16)
        self.dt_min = dt_min
        self.dt_max = dt_max
        self.x_proj = nn.Linear(channels, self.dt_rank + 2 * state_size, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, channels, bias=True)
        self.a_log = nn.Parameter(torch.empty(channels, state_size))
        self.d = nn.Parameter(torch.empty(channels))
        self.reset_parameters()

    def reset_parameters(self):
        """Mamba's initialisation."""
        self.x_proj.reset_parameters()
        self.dt_proj.reset_parameters()
        with torch.no_grad():
            dt = torch.exp(
                torch.rand(self.channels)
                * (math.log(self.dt_max) - math.log(self.dt_min))
                + math.log(self.dt_min)
            )
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inv softplus
            n = torch.arange(1, self.state_size + 1, dtype=self.a_log.dtype)
            self.a_log.copy_(torch.log(n).expand_as(self.a_log))
            self.d.fill_(1.0)

    def selection(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        r"""The selection: :math:`\Delta` :math:`(B, L, D)`, :math:`B_t`, :math:`C_t`.

        :math:`B_t` and :math:`C_t` are :math:`(B, L, N)`.
        """
        dbc = self.x_proj(x)
        dt, b, c = dbc.split([self.dt_rank, self.state_size, self.state_size], -1)
        return F.softplus(self.dt_proj(dt)), b, c

    def forward(self, x: Tensor, h_0: Optional[Tensor] = None) -> Tensor:
        delta, b, c = self.selection(x)
        a = -self.a_log.exp()
        h = (
            x.new_zeros(x.size(0), self.channels, self.state_size)
            if h_0 is None
            else h_0
        )
        outs = []
        for t in range(x.size(1)):
            dt = delta[:, t, :, None]
            h = (dt * a).exp() * h + dt * b[:, t, None, :] * x[:, t, :, None]
            outs.append((h * c[:, t, None, :]).sum(-1) + self.d * x[:, t])
        if not outs:
            return x.new_zeros(x.shape)
        return torch.stack(outs, dim=1)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.channels}, "
            f"state_size={self.state_size}, dt_rank={self.dt_rank})"
        )


class _SelectiveGates(nn.Module):
    """:class:`ScanTerms` of a :class:`SelectiveScan` (a copy of its parameters)."""

    def __init__(self, m: SelectiveScan):
        super().__init__()
        self.scan = copy.deepcopy(m)
        self.channels = m.channels
        self.state_size = m.state_size

    def forward(self, x: Tensor) -> ScanTerms:
        delta, b, c = self.scan.selection(x)
        a = -self.scan.a_log.exp()
        return ScanTerms(
            log_decay=delta.unsqueeze(-1) * a,  # log e^{Delta A}
            query=c.unsqueeze(2),  # C_t, shared by the channels
            key=delta.unsqueeze(-1) * b.unsqueeze(2),  # Delta_s B_s
            value=x,
            skip=self.scan.d,
        )


def from_selective_scan(
    m: SelectiveScan, tile_size: int = 64, source_tile: Optional[int] = None
) -> ScanIT:
    r"""Build the integral transform that equals a :class:`SelectiveScan` (Mamba S6).

    Unrolled, :math:`y_{t,d} = \sum_{s \le t} \kappa_d(t, s)\, x_{s,d}` with

    .. math::
        \kappa_d(t, s) = \sum_n C_{t,n}\, e^{A_{dn} (\Lambda_{t,d} -
        \Lambda_{s,d})}\, \Delta_{s,d} B_{s,n} + D_d [t = s],
        \qquad \Lambda_{t,d} = \sum_{r \le t} \Delta_{r,d}

    — a kernel of the *features* of both ends (:math:`C_t`, :math:`\Delta_s`,
    :math:`B_s`) and of the cumulative log-decay, which is not a per-position
    input of :class:`~itnet_geo.nn.KernelMLP`: it is the documented
    :class:`ScanKernel`, evaluated by :class:`ScanIT` through the dense tile
    code. Exact, including an initial state :math:`h_0` (:math:`N` sources at
    :math:`t=-1`).

    Args:
        m (SelectiveScan): The reference module.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)
        source_tile (int, optional): Sources per chunk. (default: :obj:`None`)

    Example:
        >>> scan = SelectiveScan(4, state_size=8)
        >>> x = torch.randn(2, 10, 4)
        >>> torch.allclose(from_selective_scan(scan)(x), scan(x), atol=1e-5)
        True
    """
    return ScanIT(_SelectiveGates(m), tile_size, source_tile).to(
        device=m.d.device, dtype=m.d.dtype
    )


class MinGRU(nn.Module):
    r"""minGRU of Feng et al. (2024), "Were RNNs all we needed?", sequential mode.

    .. math::
        z_t = \sigma(W_z x_t + b_z),\quad \tilde h_t = W_h x_t + b_h,\quad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    The gate reads the input only, so the recurrence is linear in :math:`h`.

    Args:
        input_size (int): Input features.
        hidden_size (int): Hidden features.
        bias (bool, optional): Biases of the two linear maps.
            (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(B, L, C)`, :math:`h_0` :math:`(B, H)` *(optional)*
        - **output:** all hidden states :math:`(B, L, H)`

    Example:
        >>> MinGRU(4, 6)(torch.randn(2, 10, 4)).shape
        torch.Size([2, 10, 6])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.linear_z = nn.Linear(input_size, hidden_size, bias=bias)
        self.linear_h = nn.Linear(input_size, hidden_size, bias=bias)

    def forward(self, x: Tensor, h_0: Optional[Tensor] = None) -> Tensor:
        h = x.new_zeros(x.size(0), self.hidden_size) if h_0 is None else h_0
        outs = []
        for t in range(x.size(1)):
            z = torch.sigmoid(self.linear_z(x[:, t]))
            h = (1 - z) * h + z * self.linear_h(x[:, t])
            outs.append(h)
        if not outs:
            return x.new_zeros(x.size(0), 0, self.hidden_size)
        return torch.stack(outs, dim=1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.input_size}, {self.hidden_size})"


class MinLSTM(nn.Module):
    r"""minLSTM of Feng et al. (2024), sequential mode (length-normalised gates).

    .. math::
        f_t = \sigma(W_f x_t + b_f),\ i_t = \sigma(W_i x_t + b_i),\
        f'_t = \frac{f_t}{f_t + i_t},\ i'_t = \frac{i_t}{f_t + i_t},

        \tilde h_t = W_h x_t + b_h,\qquad
        h_t = f'_t \odot h_{t-1} + i'_t \odot \tilde h_t

    Args:
        input_size (int): Input features.
        hidden_size (int): Hidden features.
        bias (bool, optional): Biases of the linear maps. (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(B, L, C)`, :math:`h_0` :math:`(B, H)` *(optional)*
        - **output:** all hidden states :math:`(B, L, H)`

    Example:
        >>> MinLSTM(4, 6)(torch.randn(2, 10, 4)).shape
        torch.Size([2, 10, 6])
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.linear_f = nn.Linear(input_size, hidden_size, bias=bias)
        self.linear_i = nn.Linear(input_size, hidden_size, bias=bias)
        self.linear_h = nn.Linear(input_size, hidden_size, bias=bias)

    def forward(self, x: Tensor, h_0: Optional[Tensor] = None) -> Tensor:
        h = x.new_zeros(x.size(0), self.hidden_size) if h_0 is None else h_0
        outs = []
        for t in range(x.size(1)):
            f = torch.sigmoid(self.linear_f(x[:, t]))
            i = torch.sigmoid(self.linear_i(x[:, t]))
            h = f / (f + i) * h + i / (f + i) * self.linear_h(x[:, t])
            outs.append(h)
        if not outs:
            return x.new_zeros(x.size(0), 0, self.hidden_size)
        return torch.stack(outs, dim=1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.input_size}, {self.hidden_size})"


def _one_state(log_decay: Tensor, gain: Tensor, value: Tensor) -> ScanTerms:
    """Terms of a one-state scan :math:`h_t = a_t h_{t-1} + g_t v_t`."""
    return ScanTerms(
        log_decay=log_decay.unsqueeze(-1),
        query=log_decay.new_ones(()).expand(log_decay.shape).unsqueeze(-1),
        key=gain.unsqueeze(-1),
        value=value,
    )


class _MinGRUGates(nn.Module):
    def __init__(self, m: MinGRU):
        super().__init__()
        self.linear_z = copy.deepcopy(m.linear_z)
        self.linear_h = copy.deepcopy(m.linear_h)
        self.channels = m.hidden_size
        self.state_size = 1

    def forward(self, x: Tensor) -> ScanTerms:
        a = self.linear_z(x)
        # h_t = (1 - z_t) h_{t-1} + z_t h~_t; log(1 - sigmoid(a)) = logsigmoid(-a)
        return _one_state(F.logsigmoid(-a), torch.sigmoid(a), self.linear_h(x))


class _MinLSTMGates(nn.Module):
    def __init__(self, m: MinLSTM):
        super().__init__()
        self.linear_f = copy.deepcopy(m.linear_f)
        self.linear_i = copy.deepcopy(m.linear_i)
        self.linear_h = copy.deepcopy(m.linear_h)
        self.channels = m.hidden_size
        self.state_size = 1

    def forward(self, x: Tensor) -> ScanTerms:
        log_f = F.logsigmoid(self.linear_f(x))
        log_i = F.logsigmoid(self.linear_i(x))
        log_sum = torch.logaddexp(log_f, log_i)  # log(f + i)
        return _one_state(log_f - log_sum, (log_i - log_sum).exp(), self.linear_h(x))


def from_mingru(
    m: MinGRU, tile_size: int = 64, source_tile: Optional[int] = None
) -> ScanIT:
    r"""Build the integral transform that equals a :class:`MinGRU`.

    .. math::
        h_t = \sum_{s \le t} e^{\Lambda_t - \Lambda_s} z_s \odot \tilde h_s
        + e^{\Lambda_t} h_0, \qquad \Lambda_t = \sum_{r \le t} \log(1 - z_r)

    :class:`ScanKernel` with one state, key :math:`z_s`, value
    :math:`\tilde h_s`, on the causal grid (:class:`ScanIT`; the cumulative sum is
    why the kernel is not a :class:`~itnet_geo.nn.KernelMLP`). Called as the
    module: ``(x, h_0=None)``.

    Args:
        m (MinGRU): The reference module.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)
        source_tile (int, optional): Sources per chunk. (default: :obj:`None`)

    Example:
        >>> gru = MinGRU(4, 6)
        >>> x = torch.randn(2, 10, 4)
        >>> torch.allclose(from_mingru(gru)(x), gru(x), atol=1e-5)
        True
    """
    w = m.linear_z.weight
    return ScanIT(_MinGRUGates(m), tile_size, source_tile).to(
        device=w.device, dtype=w.dtype
    )


def from_minlstm(
    m: MinLSTM, tile_size: int = 64, source_tile: Optional[int] = None
) -> ScanIT:
    r"""Build the integral transform that equals a :class:`MinLSTM`.

    As :func:`from_mingru` with decay :math:`f'_t`, key :math:`i'_s` and value
    :math:`\tilde h_s`: :math:`h_t = \sum_{s \le t} e^{\Lambda_t - \Lambda_s}
    i'_s \odot \tilde h_s + e^{\Lambda_t} h_0`,
    :math:`\Lambda_t = \sum_{r \le t} \log f'_r`.

    Args:
        m (MinLSTM): The reference module.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)
        source_tile (int, optional): Sources per chunk. (default: :obj:`None`)

    Example:
        >>> lstm = MinLSTM(4, 6)
        >>> x = torch.randn(2, 10, 4)
        >>> torch.allclose(from_minlstm(lstm)(x), lstm(x), atol=1e-5)
        True
    """
    w = m.linear_f.weight
    return ScanIT(_MinLSTMGates(m), tile_size, source_tile).to(
        device=w.device, dtype=w.dtype
    )


# ----------------------------------------------- GRU / LSTM without recurrence
class _GRUGates(nn.Module):
    """One layer of :class:`torch.nn.GRU` with ``weight_hh = 0``."""

    def __init__(self, w_ih: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]):
        super().__init__()
        hidden = w_ih.size(0) // 3
        self.channels = hidden
        self.state_size = 1
        self.lin = nn.Linear(
            w_ih.size(1), 3 * hidden, device=w_ih.device, dtype=w_ih.dtype
        )
        self.b_hn = nn.Parameter(w_ih.new_zeros(hidden))
        with torch.no_grad():
            self.lin.weight.copy_(w_ih)
            bias = w_ih.new_zeros(3 * hidden)
            if b_ih is not None:
                bias += b_ih
            if b_hh is not None:
                bias[: 2 * hidden] += b_hh[: 2 * hidden]  # r and z read b_hh as is
                self.b_hn.copy_(b_hh[2 * hidden :])  # n reads r * b_hn
            self.lin.bias.copy_(bias)

    def forward(self, x: Tensor) -> ScanTerms:
        a_r, a_z, a_n = self.lin(x).chunk(3, dim=-1)
        n = torch.tanh(a_n + torch.sigmoid(a_r) * self.b_hn)
        # h_t = z_t h_{t-1} + (1 - z_t) n_t
        return _one_state(F.logsigmoid(a_z), torch.sigmoid(-a_z), n)


class _LSTMGates(nn.Module):
    """One layer of :class:`torch.nn.LSTM` with ``weight_hh = 0``: the cell scan."""

    def __init__(self, w_ih: Tensor, b_ih: Optional[Tensor], b_hh: Optional[Tensor]):
        super().__init__()
        hidden = w_ih.size(0) // 4
        self.channels = hidden
        self.state_size = 1
        self.lin = nn.Linear(
            w_ih.size(1), 4 * hidden, device=w_ih.device, dtype=w_ih.dtype
        )
        with torch.no_grad():
            self.lin.weight.copy_(w_ih)
            bias = w_ih.new_zeros(4 * hidden)
            for b in (b_ih, b_hh):
                if b is not None:
                    bias += b
            self.lin.bias.copy_(bias)

    def forward(self, x: Tensor) -> ScanTerms:
        a_i, a_f, a_g, _ = self.lin(x).chunk(4, dim=-1)
        # c_t = f_t c_{t-1} + i_t g_t
        return _one_state(F.logsigmoid(a_f), torch.sigmoid(a_i), torch.tanh(a_g))

    def output_gate(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.lin(x).chunk(4, dim=-1)[3])


class RecurrentIT(nn.Module):
    r"""A :class:`torch.nn.GRU` / :class:`torch.nn.LSTM` *without recurrent weights*.

    Each layer is a :class:`ScanIT` (for the LSTM it computes the cell state
    :math:`c_t`, and :math:`h_t = o_t \odot \tanh c_t` follows pointwise). Called
    as the original module, with the same output structure. Built by
    :func:`from_gru` / :func:`from_lstm`, which refuse modules whose recurrent
    weights are not zero.

    Args:
        layers (torch.nn.ModuleList): One :class:`ScanIT` per layer.
        mode (str): ``"GRU"`` or ``"LSTM"``.
        batch_first (bool): As the original module.

    Shapes:
        - **input:** as the original module
        - **output:** ``(output, h_n)`` (GRU) or ``(output, (h_n, c_n))`` (LSTM)
    """

    def __init__(self, layers: nn.ModuleList, mode: str, batch_first: bool):
        super().__init__()
        self.layers = layers
        self.mode = mode
        self.batch_first = batch_first

    def forward(self, input: Tensor, hx=None):
        unbatched = input.dim() == 2
        x = input.unsqueeze(0) if unbatched else input
        if not unbatched and not self.batch_first:
            x = x.transpose(0, 1)
        h_0 = c_0 = None
        if hx is not None:
            if self.mode == "LSTM":
                h_0, c_0 = hx  # h_0 feeds nothing without recurrent weights
            else:
                h_0 = hx
            if unbatched:
                h_0 = h_0.unsqueeze(1)
                c_0 = c_0.unsqueeze(1) if c_0 is not None else None
        last_h, last_c = [], []
        for layer_index, layer in enumerate(self.layers):
            if self.mode == "GRU":
                init = None if h_0 is None else h_0[layer_index]
                x = layer(x, init)
                last_h.append(x[:, -1])
            else:
                init = None if c_0 is None else c_0[layer_index]
                c = layer(x, init)
                x = layer.gates.output_gate(x) * torch.tanh(c)
                last_h.append(x[:, -1])
                last_c.append(c[:, -1])
        h_n = torch.stack(last_h)
        output = x
        if unbatched:
            output, h_n = output.squeeze(0), h_n.squeeze(1)
        elif not self.batch_first:
            output = output.transpose(0, 1)
        if self.mode == "GRU":
            return output, h_n
        c_n = torch.stack(last_c)
        return output, (h_n, c_n.squeeze(1) if unbatched else c_n)


def _recurrent(m: nn.RNNBase, mode: str, gates_cls, tile_size: int) -> RecurrentIT:
    if m.bidirectional:
        raise ValueError("bidirectional recurrences are not converted")
    if getattr(m, "proj_size", 0):
        raise ValueError("LSTM with proj_size is not converted")
    layers = nn.ModuleList()
    for k in range(m.num_layers):
        w_hh = getattr(m, f"weight_hh_l{k}")
        if bool((w_hh != 0).any()):
            raise ValueError(
                f"{mode} layer {k} has nonzero recurrent weights: its gates read the "
                "hidden state, so h_t is a nonlinear function of h_(t-1) and no "
                "integral transform with an input-only kernel equals it. Only the "
                "recurrence without recurrent weights (a diagonal scan, like "
                "MinGRU / MinLSTM) is a special case."
            )
        gates = gates_cls(
            getattr(m, f"weight_ih_l{k}").detach(),
            getattr(m, f"bias_ih_l{k}").detach() if m.bias else None,
            getattr(m, f"bias_hh_l{k}").detach() if m.bias else None,
        )
        layers.append(ScanIT(gates, tile_size))
    w = m.weight_ih_l0
    return RecurrentIT(layers, mode, m.batch_first).to(device=w.device, dtype=w.dtype)


def from_gru(m: nn.GRU, tile_size: int = 64) -> RecurrentIT:
    r"""The integral transform equal to a :class:`torch.nn.GRU` without recurrence.

    Only GRUs whose recurrent weights ``weight_hh_l*`` are all zero are converted.

    With :math:`W_{h\cdot} = 0` the gates read the input only and
    :math:`h_t = z_t h_{t-1} + (1 - z_t) n_t` with
    :math:`n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot b_{hn})`: a one-state
    scan (:class:`ScanIT`, decay :math:`z_t`, key :math:`1 - z_s`, value
    :math:`n_s`), exact for any number of stacked layers, ``batch_first`` either
    way, with or without :math:`h_0` (inter-layer dropout: in ``eval()``).

    A GRU with nonzero recurrent weights is **not** a special case and is
    refused: its gates and candidate read :math:`h_{t-1}` through
    :math:`\sigma` and :math:`\tanh`, so :math:`h_t` is not linear (not even
    affine) in :math:`h_{t-1}` or :math:`h_0`, while every transform here is
    affine in its values. :class:`MinGRU` is the model that drops that
    dependence by design.

    Args:
        m (torch.nn.GRU): A unidirectional GRU with ``weight_hh_l* == 0``.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)

    Example:
        >>> gru = torch.nn.GRU(4, 6, batch_first=True)
        >>> with torch.no_grad():
        ...     _ = gru.weight_hh_l0.zero_()
        >>> x = torch.randn(2, 10, 4)
        >>> torch.allclose(from_gru(gru)(x)[0], gru(x)[0], atol=1e-5)
        True
    """
    return _recurrent(m, "GRU", _GRUGates, tile_size)


def from_lstm(m: nn.LSTM, tile_size: int = 64) -> RecurrentIT:
    r"""The integral transform equal to a :class:`torch.nn.LSTM` without recurrence.

    Only LSTMs whose recurrent weights ``weight_hh_l*`` are all zero are converted.

    With :math:`W_{h\cdot} = 0` the cell state is the one-state scan
    :math:`c_t = f_t c_{t-1} + i_t g_t` (:class:`ScanIT`, decay :math:`f_t`, key
    :math:`i_s`, value :math:`g_s`) and :math:`h_t = o_t \odot \tanh c_t` is a
    pointwise map after it; :math:`h_0` feeds nothing, :math:`c_0` is the
    initial state. Nonzero recurrent weights are refused, for the reason given
    in :func:`from_gru`.

    Args:
        m (torch.nn.LSTM): A unidirectional LSTM with ``weight_hh_l* == 0`` and
            no projection.
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)

    Example:
        >>> lstm = torch.nn.LSTM(4, 6)
        >>> with torch.no_grad():
        ...     _ = lstm.weight_hh_l0.zero_()
        >>> x = torch.randn(10, 2, 4)
        >>> torch.allclose(from_lstm(lstm)(x)[0], lstm(x)[0], atol=1e-5)
        True
    """
    return _recurrent(m, "LSTM", _LSTMGates, tile_size)


__all__ = [
    "from_conv1d",
    "from_conv2d",
    "from_multihead_attention",
    "from_diagonal_ssm",
    "from_selective_scan",
    "from_mingru",
    "from_minlstm",
    "from_gru",
    "from_lstm",
    "Conv1dIT",
    "MultiheadAttentionIT",
    "DiagonalSSM",
    "DiagonalSSMKernel",
    "SelectiveScan",
    "MinGRU",
    "MinLSTM",
    "ScanTerms",
    "ScanKernel",
    "ScanIT",
    "RecurrentIT",
]
