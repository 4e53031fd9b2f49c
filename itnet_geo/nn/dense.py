r"""Full-grid adapters: the integral transform on sequences and images.

A sequence of length :math:`L` is a point set with positions :math:`0, \dots,
L-1`; an image is a point set on the integer grid. :class:`SequenceIT` and
:class:`ImageIT` evaluate the same integral transform as
:class:`~itnet_geo.nn.ITConv` on such inputs, on a *grid* that says which sources
each target sees:

* ``"full"``: every source (attention over the whole input);
* ``"causal"``: sources at positions :math:`p_j \le p_i` (autoregressive);
* ``"window"``: the taps of a convolution window, with stride, padding and
  dilation exactly as :class:`torch.nn.Conv1d` / :class:`torch.nn.Conv2d` place
  them (sources outside the input are not in the support).

Dense inputs are evaluated as dense *tiles*: a tile of targets against all of its
admissible sources (optionally cut into source chunks, combined with a running
maximum for ``softmax``). The kernel is the same :class:`~itnet_geo.nn.KernelMLP`
the graph layer uses (its :meth:`~itnet_geo.nn.KernelMLP.edge_forward` broadcasts
``(B, n, 1, T)`` targets against ``(B, 1, k, S)`` sources), messages are formed by
:func:`itnet_geo.ops.fused.form_message`, and the measures (``sum``, ``mean``,
``softmax``, ``max``) follow :class:`~itnet_geo.nn.ITConv`. Nothing of size
:math:`L \times L \times \text{hidden}` is ever held at once: each tile is run
under :func:`torch.utils.checkpoint.checkpoint`, so the backward pass recomputes
one tile at a time and memory grows linearly in :math:`L` at a fixed tile size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from itnet_geo.nn._transform import VALUES, _IntegralTransform
from itnet_geo.ops.fused import form_message

#: Kernel modes of the dense adapters (``"full"`` matrices are graph-only).
DENSE_KERNELS = ("channel", "heads", "lowrank")
#: Value maps of the dense adapters (as :class:`~itnet_geo.nn.ITConv`).
DENSE_VALUES = VALUES

_WINDOW_RE = re.compile(r"^window\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)$")


# ---------------------------------------------------------------------- grids
def _ntuple(value: Union[int, Sequence[int]], n: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"{name} must be an int or {n} ints, got {value}")
    return value


def _parse_grid(
    grid: str, window: Optional[Union[int, Sequence[int]]], ndim: int
) -> tuple[str, Optional[tuple[int, ...]]]:
    """``"full"``, ``"causal"``, ``"window"`` (+ window) or ``"window(k[, k])"``."""
    match = _WINDOW_RE.match(grid.replace(" ", "")) if isinstance(grid, str) else None
    if match is not None:
        sizes = [int(g) for g in match.groups() if g is not None]
        if window is not None and _ntuple(window, ndim, "window") != _ntuple(
            sizes if len(sizes) > 1 else sizes[0], ndim, "window"
        ):
            raise ValueError(f"grid={grid!r} disagrees with window={window}")
        window = sizes if len(sizes) > 1 else sizes[0]
        grid = "window"
    allowed = ("full", "causal", "window") if ndim == 1 else ("full", "window")
    if grid not in allowed:
        raise ValueError(f"unknown grid {grid!r}; expected one of {allowed}")
    if grid == "window":
        if window is None:
            raise ValueError("grid='window' needs a window size")
        size = _ntuple(window, ndim, "window")
        if min(size) < 1:
            raise ValueError(f"window sizes must be positive, got {size}")
        return grid, size
    if window is not None:
        raise ValueError(f"window={window} only applies to grid='window'")
    return grid, None


def _parse_padding(
    padding: Union[str, int, Sequence], window: tuple[int, ...], dilation, ndim: int
) -> tuple[tuple[int, int], ...]:
    """Padding ``(before, after)`` per axis, as torch's convolutions place it."""
    if padding == "valid":
        return ((0, 0),) * ndim
    if padding == "same":
        out = []
        for k, d in zip(window, dilation, strict=True):
            total = d * (k - 1)
            out.append((total // 2, total - total // 2))  # torch's 'same'
        return tuple(out)
    if isinstance(padding, str):
        raise ValueError(
            f"padding must be an int, a tuple, 'same' or 'valid': {padding}"
        )
    if isinstance(padding, int):
        return ((padding, padding),) * ndim
    padding = tuple(padding)
    if ndim == 1 and len(padding) == 2:  # (before, after) of a sequence
        return ((int(padding[0]), int(padding[1])),)
    if len(padding) == ndim:
        return tuple((int(p), int(p)) for p in padding)
    raise ValueError(f"cannot read padding {padding} for {ndim} axes")


def _raveled(coords: Tensor, shape: Sequence[int]) -> Tensor:
    flat = torch.zeros_like(coords[..., 0])
    for axis, size in enumerate(shape):
        flat = flat * size + coords[..., axis]
    return flat


def _mesh(axes: Sequence[Tensor]) -> Tensor:
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=-1)


class _Grid:
    """Targets of a regular grid and the sources each of them sees.

    ``anchors`` are the targets' integer positions :math:`(T, D)`; for a window
    grid ``index`` :math:`(T, w)` holds each target's taps in raveled source order
    (``valid`` marks those inside the input) and ``offsets`` :math:`(w, D)` the
    relative positions :math:`p_j - p_i` of the taps.
    """

    def __init__(
        self,
        kind: str,
        in_shape: Sequence[int],
        stride: Sequence[int],
        device: torch.device,
        window: Optional[Sequence[int]] = None,
        dilation: Optional[Sequence[int]] = None,
        padding: Optional[Sequence[tuple[int, int]]] = None,
    ):
        self.kind = kind
        self.in_shape = tuple(in_shape)
        if kind == "window":
            assert window is not None and dilation is not None and padding is not None
            out_shape = []
            for n, k, s, d, (pb, pa) in zip(
                in_shape, window, stride, dilation, padding, strict=True
            ):
                size = (n + pb + pa - d * (k - 1) - 1) // s + 1
                if size < 1:
                    raise ValueError(
                        f"input of size {tuple(in_shape)} is smaller than the "
                        f"window {tuple(window)} (dilation {tuple(dilation)}, "
                        f"padding {tuple(padding)})"
                    )
                out_shape.append(size)
            self.out_shape = tuple(out_shape)
            self.anchors = _mesh(
                [
                    torch.arange(o, device=device) * s
                    for o, s in zip(out_shape, stride, strict=True)
                ]
            )
            self.offsets = _mesh(
                [
                    torch.arange(k, device=device) * d - pb
                    for k, d, (pb, _) in zip(window, dilation, padding, strict=True)
                ]
            )
            coords = self.anchors[:, None, :] + self.offsets[None, :, :]
            limits = torch.tensor(in_shape, device=device)
            self.valid = ((coords >= 0) & (coords < limits)).all(dim=-1)
            self.index = torch.where(self.valid, _raveled(coords, in_shape), 0)
        else:
            self.out_shape = tuple(
                -(-n // s) for n, s in zip(in_shape, stride, strict=True)
            )
            self.anchors = _mesh(
                [
                    torch.arange(0, n, s, device=device)
                    for n, s in zip(in_shape, stride, strict=True)
                ]
            )
            self.offsets = self.valid = self.index = None

    @property
    def num_targets(self) -> int:
        return self.anchors.size(0)

    def target_index(self) -> Optional[Tensor]:
        """Raveled source index of each target, or ``None`` if one lies outside."""
        limits = torch.tensor(self.in_shape, device=self.anchors.device)
        if not bool((self.anchors < limits).all()):
            return None
        return _raveled(self.anchors, self.in_shape)


def _positions(shape: Sequence[int], dtype: torch.dtype, device) -> Tensor:
    return _mesh([torch.arange(n, device=device, dtype=dtype) for n in shape])


# ---------------------------------------------------------------------- tiles
def _log_weight(weight: Tensor) -> Tensor:
    return weight.clamp_min(torch.finfo(weight.dtype).tiny).log()


def _and(a: Optional[Tensor], b: Optional[Tensor]) -> Optional[Tensor]:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _messages(coef: Tensor, value: Tensor) -> Tensor:
    """:func:`form_message` summed over sources: ``(B, n, K, C)``."""
    return form_message(coef, value).sum(dim=2)


class _Chunk:
    """A tile's targets against one block of admissible sources.

    Shapes: ``kappa`` :math:`(B, n, k, K)`, ``value`` :math:`(B, 1|n, k, K_v, C)`,
    ``weight`` and ``support`` broadcastable to :math:`(B, n, k, K)` or
    :obj:`None`.
    """

    __slots__ = ("kappa", "value", "weight", "support")

    def __init__(self, kappa, value, weight, support):
        self.kappa = kappa
        self.value = value
        self.weight = weight
        self.support = support if weight is None else _and(support, weight > 0)


def _scores(chunk: _Chunk) -> Tensor:
    r"""Softmax scores :math:`\kappa + \log w`, :math:`-\infty` off the support."""
    score = chunk.kappa
    if chunk.weight is not None:
        score = score + _log_weight(chunk.weight)
    if chunk.support is not None:
        score = score.masked_fill(~chunk.support, float("-inf"))
    return score


def _weighted(chunk: _Chunk) -> Tensor:
    r"""Sum/mean coefficients :math:`w \kappa`, zero off the support."""
    coef = chunk.kappa if chunk.weight is None else chunk.kappa * chunk.weight
    if chunk.support is not None:
        coef = coef.masked_fill(~chunk.support, 0.0)
    return coef


def _mass(chunk: _Chunk) -> Tensor:
    r""":math:`\sum_j w_{ij}` over the chunk's support, :math:`(B, n, K)`."""
    kappa = chunk.kappa
    mass = kappa.new_ones(()) if chunk.weight is None else chunk.weight
    mass = mass.expand_as(kappa)
    if chunk.support is not None:
        mass = mass.masked_fill(~chunk.support, 0.0)
    return mass.sum(dim=2)


def _online_max(run_max: Optional[Tensor], score: Tensor) -> tuple[Tensor, Tensor]:
    """New running maximum over sources and a finite shift for the exponent."""
    chunk_max = score.detach().amax(dim=2)
    new_max = chunk_max if run_max is None else torch.maximum(run_max, chunk_max)
    return new_max, torch.where(torch.isfinite(new_max), new_max, 0.0)


def _integrate_chunks(chunks, measure: str) -> Tensor:
    """Combine the chunks of one tile into :math:`(B, n, K, C)` per the measure.

    ``softmax`` keeps a running maximum, normaliser and accumulator (the online
    softmax), so a tile's sources may arrive in any number of chunks.
    """
    acc: Optional[Tensor] = None
    aux: Optional[Tensor] = None  # mass (mean) or normaliser (softmax)
    run_max: Optional[Tensor] = None
    for chunk in chunks:
        if measure == "softmax":
            score = _scores(chunk)
            new_max, shift = _online_max(run_max, score)
            expo = (score - shift.unsqueeze(2)).exp()
            msg, norm = _messages(expo, chunk.value), expo.sum(dim=2)
            if acc is None or aux is None or run_max is None:
                acc, aux = msg, norm
            else:
                scale = (run_max - shift).exp()
                acc = acc * scale.unsqueeze(-1) + msg
                aux = aux * scale + norm
            run_max = new_max
        elif measure == "max":
            msg = form_message(chunk.kappa, chunk.value)
            if chunk.support is not None:
                msg = msg.masked_fill(~chunk.support.unsqueeze(-1), float("-inf"))
            msg = msg.amax(dim=2)
            acc = msg if acc is None else torch.maximum(acc, msg)
        else:
            msg = _messages(_weighted(chunk), chunk.value)
            acc = msg if acc is None else acc + msg
            if measure == "mean":
                mass = _mass(chunk)
                aux = mass if aux is None else aux + mass
    assert acc is not None
    tiny = torch.finfo(acc.dtype).tiny
    if measure in ("softmax", "mean"):
        assert aux is not None
        return acc / aux.clamp_min(tiny).unsqueeze(-1)
    if measure == "max":
        return acc.masked_fill(acc == float("-inf"), 0.0)  # empty support -> 0
    return acc


def _coefficients(chunk: _Chunk, measure: str) -> Tensor:
    """Normalised coefficients :math:`(B, n, k, K)` of a chunk that is a whole row."""
    if measure == "softmax":
        score = _scores(chunk)
        _, shift = _online_max(None, score)
        expo = (score - shift.unsqueeze(2)).exp()
        return expo / expo.sum(dim=2, keepdim=True).clamp_min(
            torch.finfo(expo.dtype).tiny
        )
    coef = _weighted(chunk)
    if measure == "mean":
        tiny = torch.finfo(coef.dtype).tiny
        coef = coef / _mass(chunk).clamp_min(tiny).unsqueeze(2)
    return coef


# --------------------------------------------------------------------- layers
class _DenseIT(_IntegralTransform):
    """Shared parts of the dense adapters: grids, inputs, measure and tiles."""

    _ndim = 1
    _kernels = DENSE_KERNELS
    _kernels_expected = "the dense adapters support"

    def __init__(
        self,
        in_channels: Union[int, tuple[int, int]],
        out_channels: int,
        grid: str,
        window,
        stride,
        padding,
        dilation,
        kernel_inputs: Sequence[str],
        kernel: str,
        hidden: int,
        heads: int,
        rank: int,
        measure: str,
        tile_size: int,
        source_tile: Optional[int],
        num_layers: int,
        act: str,
        value: str,
        bias: bool,
        qk_dim: int,
        kernel_pos_nn: Optional[nn.Module],
        kernel_head: Optional[nn.Module],
        checkpoint: bool,
    ):
        super().__init__()
        ndim = self._ndim
        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)
        self._check_options(measure, kernel, value, heads, in_channels[0], out_channels)
        if value == "ones" and kernel != "channel":
            raise ValueError("value='ones' needs kernel='channel'")
        if tile_size < 1:
            raise ValueError(f"tile_size must be positive, got {tile_size}")
        if source_tile is not None and source_tile < 1:
            raise ValueError(f"source_tile must be positive, got {source_tile}")
        self.grid, self.window = _parse_grid(grid, window, ndim)
        self.stride = _ntuple(stride, ndim, "stride")
        self.dilation = _ntuple(dilation, ndim, "dilation")
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise ValueError("stride and dilation must be positive")
        self.padding = padding
        self._pad = (
            _parse_padding(padding, self.window, self.dilation, ndim)
            if self.window is not None
            else None
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pos_dim = ndim
        self.kernel_inputs = tuple(kernel_inputs)
        self.kernel = kernel
        self.hidden = hidden
        self.heads = heads
        self.rank = rank
        self.measure = measure
        self.tile_size = tile_size
        self.source_tile = source_tile
        self.num_layers = num_layers
        self.act = act
        self.value = value
        self.qk_dim = qk_dim
        self.checkpoint = checkpoint
        self._build_maps(kernel_pos_nn, kernel_head, bias)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-initialise all learnable parameters."""
        self._reset_maps()

    # ------------------------------------------------------------ node parts
    @property
    def _uses_targets(self) -> bool:
        """Whether the kernel reads target features (``x_i``, ``x_j - x_i``, ``qk``)."""
        return bool({"x_i", "x_j - x_i", "qk"} & set(self.kernel_inputs))

    def _make_grid(self, kind: str, in_shape: Sequence[int], device) -> _Grid:
        """The layer's grid of :obj:`kind` on an input of :obj:`in_shape`."""
        return _Grid(
            kind, in_shape, self.stride, device, self.window, self.dilation, self._pad
        )

    def _grid_targets(self, x_src: Tensor, grid: _Grid) -> Optional[Tensor]:
        """Target features ``(B, T, C)`` when only the sources are given.

        The sources at the targets' positions if the kernel reads target
        features, zeros if it does not; :obj:`None` if it reads them but the
        targets are not sources (one lies outside the input, or the layer's
        source and target sizes differ).
        """
        if not self._uses_targets:
            return x_src.new_zeros(x_src.size(0), grid.num_targets, self.in_channels[1])
        index = grid.target_index()
        if self.in_channels[0] != self.in_channels[1] or index is None:
            return None
        return x_src[:, index]

    def _node_terms(
        self, x_src: Tensor, x_dst: Tensor, grid: _Grid
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""Positions and :meth:`KernelMLP.node_terms` of ``(B, S|T, C)`` inputs.

        Returns ``pos_src`` :math:`(S, D)`, ``pos_dst`` :math:`(T, D)` and the
        source and target terms :math:`(B, S|T, \cdot)`.
        """
        pos_src = _positions(grid.in_shape, x_src.dtype, x_src.device)
        pos_dst = grid.anchors.to(x_src.dtype)
        b, s, t = x_src.size(0), x_src.size(1), x_dst.size(1)
        src, dst = self.kernel_nn.node_terms(
            x_src.reshape(b * s, -1),
            x_dst.reshape(b * t, -1),
            pos_src.repeat(b, 1),
            pos_dst.repeat(b, 1),
        )
        return pos_src, pos_dst, src.view(b, s, -1), dst.view(b, t, -1)

    def _evaluate(
        self,
        x_src: Tensor,
        x_dst: Tensor,
        grid: _Grid,
        weight: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """The transform :math:`(B, T, C_{out})` of sources and targets on a grid."""
        pos_src, pos_dst, src_terms, dst_terms = self._node_terms(x_src, x_dst, grid)
        out = self._integrate(
            grid,
            src_terms,
            dst_terms,
            self._values(x_src),
            pos_src,
            pos_dst,
            weight,
            mask,
        )
        return self._finish(out)

    # ------------------------------------------------------------ the integral
    def _chunks(
        self,
        grid: _Grid,
        t0: int,
        t1: int,
        src_terms: Tensor,
        dst_terms: Tensor,
        value: Tensor,
        pos_src: Tensor,
        pos_dst: Tensor,
        w_src: Optional[Tensor],
        w_pair: Optional[Tensor],
        m_src: Optional[Tensor],
        m_pair: Optional[Tensor],
        source_tile: Optional[int],
    ):
        """Yield the :class:`_Chunk` s of targets ``t0:t1``."""
        kernel_nn = self.kernel_nn
        b, n = src_terms.size(0), t1 - t0
        dst = dst_terms[:, t0:t1].unsqueeze(2)
        if grid.kind == "window":
            index = grid.index[t0:t1]
            rel = grid.offsets.to(pos_src.dtype).unsqueeze(0)
            kappa, _ = kernel_nn.edge_forward(src_terms[:, index], dst, rel)
            kappa = kappa.expand(b, n, index.size(1), -1)
            support = grid.valid[t0:t1].view(1, n, -1, 1)
            weight = None
            if w_src is not None:
                weight = w_src[:, index].unsqueeze(-1)
            if w_pair is not None:
                rows = torch.arange(t0, t1, device=index.device).unsqueeze(1)
                weight = w_pair[:, rows, index]
            if m_src is not None:
                support = support & m_src[:, index].unsqueeze(-1)
            if m_pair is not None:
                rows = torch.arange(t0, t1, device=index.device).unsqueeze(1)
                support = support & m_pair[:, rows, index]
            yield _Chunk(kappa, value[:, index], weight, support)
            return
        num_src = src_terms.size(1)
        step = num_src if source_tile is None else source_tile
        last = num_src
        if grid.kind == "causal":  # sources after the tile's last target are out
            last = int(
                torch.searchsorted(
                    pos_src[:, 0].contiguous(), pos_dst[t1 - 1, 0], right=True
                )
            )
            last = max(last, 1)
        for s0 in range(0, last, max(step, 1)):
            s1 = min(s0 + step, last)
            rel = pos_src[s0:s1].unsqueeze(0) - pos_dst[t0:t1].unsqueeze(1)
            kappa, _ = kernel_nn.edge_forward(
                src_terms[:, s0:s1].unsqueeze(1), dst, rel
            )
            kappa = kappa.expand(b, n, s1 - s0, -1)
            support = None
            if grid.kind == "causal":
                support = (rel[..., 0] <= 0).view(1, n, s1 - s0, 1)
            weight = None
            if w_src is not None:
                weight = w_src[:, s0:s1].view(w_src.size(0), 1, s1 - s0, 1)
            if w_pair is not None:
                weight = w_pair[:, t0:t1, s0:s1]
            if m_src is not None:
                support = _and(support, m_src[:, s0:s1].view(-1, 1, s1 - s0, 1))
            if m_pair is not None:
                support = _and(support, m_pair[:, t0:t1, s0:s1])
            yield _Chunk(kappa, value[:, s0:s1].unsqueeze(1), weight, support)

    def _integrate(
        self,
        grid: _Grid,
        src_terms: Tensor,
        dst_terms: Tensor,
        value: Tensor,
        pos_src: Tensor,
        pos_dst: Tensor,
        weight: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """The integral per target, tile by tile: :math:`(B, T, K, C)`."""
        b, num_src = src_terms.size(0), src_terms.size(1)
        num_dst = dst_terms.size(1)
        w_src, w_pair = self._split(weight, b, num_src, num_dst, "weight")
        m_src, m_pair = self._split(mask, b, num_src, num_dst, "mask")
        for name, m in (("mask", m_src), ("mask", m_pair)):
            if m is not None and m.dtype != torch.bool:
                raise ValueError(f"{name} must be a bool tensor, got {m.dtype}")
        measure, source_tile = self.measure, self.source_tile

        def tile(t0: int, t1: int, *tensors: Optional[Tensor]) -> Tensor:
            return _integrate_chunks(
                self._chunks(grid, t0, t1, *tensors, source_tile), measure
            )

        tensors = (
            src_terms,
            dst_terms,
            value,
            pos_src,
            pos_dst,
            w_src,
            w_pair,
            m_src,
            m_pair,
        )
        use_ckpt = (
            self.checkpoint
            and torch.is_grad_enabled()
            and (
                any(t is not None and t.requires_grad for t in tensors)
                or any(p.requires_grad for p in self.kernel_nn.parameters())
            )
        )
        if num_dst == 0 or num_src == 0:
            k = self.kernel_nn.out_dim
            kv, c = value.shape[-2:]
            shape = (b, num_dst, k if kv == 1 else kv, c)
            return value.new_zeros(shape)
        outs = []
        for t0 in range(0, num_dst, self.tile_size):
            t1 = min(t0 + self.tile_size, num_dst)
            if use_ckpt:
                outs.append(_checkpoint(tile, t0, t1, *tensors, use_reentrant=False))
            else:
                outs.append(tile(t0, t1, *tensors))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]

    @staticmethod
    def _split(
        tensor: Optional[Tensor], b: int, num_src: int, num_dst: int, name: str
    ) -> tuple[Optional[Tensor], Optional[Tensor]]:
        """Per-source ``(B|1, S)`` or per-pair ``(B|1, T, S, 1|K)`` layout."""
        if tensor is None:
            return None, None
        if tensor.dim() == 1:
            tensor = tensor.unsqueeze(0)
        if tensor.dim() == 2:
            if tensor.size(1) != num_src or tensor.size(0) not in (1, b):
                raise ValueError(
                    f"a per-source {name} must have shape ({num_src},) or "
                    f"({b}, {num_src}), got {tuple(tensor.shape)}"
                )
            return tensor, None
        if tensor.dim() == 3:
            tensor = tensor.unsqueeze(-1)
        if (
            tensor.dim() != 4
            or tensor.size(0) not in (1, b)
            or tensor.size(1) not in (1, num_dst)
            or tensor.size(2) != num_src
        ):
            raise ValueError(
                f"a per-pair {name} must have shape (B, {num_dst}, {num_src}) or "
                f"(B, {num_dst}, {num_src}, K), got {tuple(tensor.shape)}"
            )
        return None, tensor.expand(-1, num_dst, -1, -1)

    def _options_repr(self) -> tuple[str, ...]:
        if self.grid == "window":
            assert self.window is not None
            size = ", ".join(str(k) for k in self.window)
            return (f"grid=window({size})",)
        return (f"grid={self.grid}",)


class SequenceIT(_DenseIT):
    r"""The ITNet integral transform on sequences :math:`(B, L, C)`.

    Positions are :math:`p_t = t`. A target at position :math:`p_i` sees the
    sources of its grid :math:`G(i)`:

    .. math::
        y_i = \operatorname*{AGG}_{j \in G(i)}\; w_{ij}\,
        \kappa_\theta(p_j - p_i, f_i, f_j) \odot V f_j

    with :math:`G(i)` all sources (``grid="full"``), the sources with
    :math:`p_j \le p_i` (``"causal"``) or the taps :math:`p_i - \text{pad} + k
    \cdot \text{dilation}`, :math:`k < w`, of a window (``"window(w)"``, targets
    at :math:`p_i = o \cdot \text{stride}`). Kernel, values and measures are those
    of :class:`~itnet_geo.nn.ITConv`.

    Reduces to :class:`torch.nn.Conv1d` (``grid="window(k)"``, ``kernel_inputs=
    ("rel_pos",)``, a one-hot kernel over the taps with ``kernel="lowrank"``:
    :func:`itnet_geo.nn.special.from_conv1d`) and to
    :class:`torch.nn.MultiheadAttention` (``grid="full"`` or ``"causal"``,
    ``kernel_inputs=("qk",)``, ``kernel="heads"``, ``measure="softmax"``:
    :func:`itnet_geo.nn.special.from_multihead_attention`).

    Args:
        in_channels (int or tuple): Size of each input sample, or a (source,
            target) pair of sizes for cross-attention-like inputs.
        out_channels (int): Size of each output sample.
        grid (str, optional): ``"full"``, ``"causal"``, ``"window"`` (with
            :obj:`window`) or ``"window(w)"``. (default: :obj:`"full"`)
        window (int, optional): Window size :math:`w` of ``grid="window"``.
            (default: :obj:`None`)
        stride (int, optional): Targets at every :obj:`stride`-th position.
            (default: :obj:`1`)
        padding (int, tuple or str, optional): Window padding: an int, a
            ``(before, after)`` pair, ``"same"`` or ``"valid"``, placed as
            :class:`torch.nn.Conv1d` places it; sources outside the input are not
            in the support. (default: :obj:`"same"`)
        dilation (int, optional): Spacing of the window taps. (default: :obj:`1`)
        kernel_inputs (tuple of str, optional): Inputs of :math:`\kappa`, as in
            :class:`~itnet_geo.nn.ITConv`. (default: :obj:`("rel_pos", "x_i",
            "x_j")`)
        kernel (str, optional): ``"channel"``, ``"heads"`` or ``"lowrank"``.
            (default: :obj:`"channel"`)
        hidden (int, optional): Hidden width of the kernel MLP.
            (default: :obj:`64`)
        heads (int, optional): Heads of ``kernel="heads"``. (default: :obj:`1`)
        rank (int, optional): Rank of ``kernel="lowrank"``. (default: :obj:`8`)
        measure (str, optional): ``"sum"``, ``"mean"``, ``"softmax"`` or
            ``"max"``. (default: :obj:`"sum"`)
        tile_size (int, optional): Targets per tile. (default: :obj:`64`)
        source_tile (int, optional): Sources per chunk of a full or causal tile
            (combined with an online softmax); :obj:`None` takes whole rows.
            (default: :obj:`None`)
        num_layers (int, optional): Linear layers of the kernel MLP.
            (default: :obj:`2`)
        act (str, optional): Activation of the kernel MLP.
            (default: :obj:`"relu"`)
        value (str, optional): ``"linear"``, ``"identity"`` or ``"ones"``.
            (default: :obj:`"linear"`)
        bias (bool, optional): Add a learnable output bias. (default: :obj:`True`)
        qk_dim (int, optional): Query/key size of the ``"qk"`` input.
            (default: :obj:`16`)
        kernel_pos_nn (torch.nn.Module, optional): Replaces the kernel's linear
            positional term. (default: :obj:`None`)
        kernel_head (torch.nn.Module, optional): Replaces the kernel MLP after its
            first layer. (default: :obj:`None`)
        checkpoint (bool, optional): Recompute each tile in backward
            (:func:`torch.utils.checkpoint.checkpoint`), keeping gradient memory
            linear in :math:`L`. (default: :obj:`True`)

    Shapes:
        - **input:** :math:`(B, L, C_{in})`, or a pair :math:`((B, S, C_s), (B,
          T, C_t))` of sources and targets; quadrature weight *(optional)*
          per source :math:`(S)`, :math:`(B, S)` or per pair :math:`(B, T, S)`,
          :math:`(B, T, S, K)`; bool mask *(optional)*, same layouts, ``True``
          where the pair is in the support
        - **output:** :math:`(B, T, C_{out})` with :math:`T = \lceil L /
          \text{stride} \rceil` (full, causal), :math:`\lfloor (L + \text{pad} -
          \text{dilation}(w-1) - 1) / \text{stride} \rfloor + 1` (window)

    Example:
        >>> layer = SequenceIT(16, 32, grid="causal", measure="softmax")
        >>> layer(torch.randn(2, 50, 16)).shape
        torch.Size([2, 50, 32])
        >>> SequenceIT(16, 32, grid="window(5)", stride=2)(torch.randn(2, 50, 16)).shape
        torch.Size([2, 25, 32])
    """

    _ndim = 1

    def __init__(
        self,
        in_channels: Union[int, tuple[int, int]],
        out_channels: int,
        grid: str = "full",
        window: Optional[int] = None,
        stride: int = 1,
        padding: Union[int, tuple[int, int], str] = "same",
        dilation: int = 1,
        kernel_inputs: Sequence[str] = ("rel_pos", "x_i", "x_j"),
        kernel: str = "channel",
        hidden: int = 64,
        heads: int = 1,
        rank: int = 8,
        measure: str = "sum",
        tile_size: int = 64,
        source_tile: Optional[int] = None,
        num_layers: int = 2,
        act: str = "relu",
        value: str = "linear",
        bias: bool = True,
        qk_dim: int = 16,
        kernel_pos_nn: Optional[nn.Module] = None,
        kernel_head: Optional[nn.Module] = None,
        checkpoint: bool = True,
    ):
        super().__init__(
            in_channels,
            out_channels,
            grid,
            window,
            stride,
            padding,
            dilation,
            kernel_inputs,
            kernel,
            hidden,
            heads,
            rank,
            measure,
            tile_size,
            source_tile,
            num_layers,
            act,
            value,
            bias,
            qk_dim,
            kernel_pos_nn,
            kernel_head,
            checkpoint,
        )

    def _inputs(
        self, x: Union[Tensor, tuple[Tensor, Tensor]], kind: Optional[str] = None
    ) -> tuple[Tensor, Tensor, _Grid]:
        """Source and target features ``(B, S, C)``, ``(B, T, C)`` and the grid.

        :obj:`kind` overrides a full or causal grid (``"full"`` / ``"causal"``).
        """
        if isinstance(x, (tuple, list)):
            if len(x) != 2:
                raise ValueError("x must be a Tensor or a (source, target) pair")
            x_src, x_dst = x
        else:
            x_src, x_dst = x, None
        if x_src.dim() != 3 or x_src.size(-1) != self.in_channels[0]:
            raise ValueError(
                f"{self.__class__.__name__} expects sources of shape (B, L, "
                f"{self.in_channels[0]}), got {tuple(x_src.shape)}"
            )
        kind = self.grid if kind is None else kind
        if (kind == "window") != (self.grid == "window"):
            raise ValueError(f"cannot evaluate a {self.grid} layer on a {kind} grid")
        grid = self._make_grid(kind, (x_src.size(1),), x_src.device)
        num_dst = grid.num_targets
        if x_dst is None:
            x_dst = self._grid_targets(x_src, grid)
            if x_dst is None:
                raise ValueError(
                    "the kernel reads target features: pass x as a (source, "
                    "target) pair, or use a grid whose targets lie in the input"
                )
        elif kind == "window" or self.stride != (1,):
            if x_dst.size(1) != num_dst:
                raise ValueError(
                    f"this grid has {num_dst} targets, got target features of "
                    f"shape {tuple(x_dst.shape)}"
                )
        else:  # full / causal: targets 0..T-1
            grid.anchors = torch.arange(x_dst.size(1), device=x_dst.device)[:, None]
            grid.out_shape = (x_dst.size(1),)
        if (
            x_dst.dim() != 3
            or x_dst.size(-1) != self.in_channels[1]
            or x_dst.size(0) != x_src.size(0)
        ):
            raise ValueError(
                f"{self.__class__.__name__} expects targets of shape "
                f"({x_src.size(0)}, T, {self.in_channels[1]}), got "
                f"{tuple(x_dst.shape)}"
            )
        return x_src, x_dst, grid

    def forward(
        self,
        x: Union[Tensor, tuple[Tensor, Tensor]],
        weight: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Apply the integral transform on the grid.

        Args:
            x: Features :math:`(B, L, C)`, or a (source, target) pair.
            weight: Quadrature weight per source or per (target, source) pair.
            mask: Bool, ``True`` where a (target, source) pair is in the support;
                per source or per pair.
        """
        return self._transform(x, weight, mask)

    def _transform(
        self,
        x: Union[Tensor, tuple[Tensor, Tensor]],
        weight: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
        kind: Optional[str] = None,
    ) -> Tensor:
        x_src, x_dst, grid = self._inputs(x, kind)
        return self._evaluate(x_src, x_dst, grid, weight, mask)

    def kernel_weights(
        self,
        x: Union[Tensor, tuple[Tensor, Tensor]],
        weight: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
        kind: Optional[str] = None,
    ) -> Tensor:
        r"""The normalised kernel coefficients :math:`(B, T, S, K)` of a full grid.

        For ``softmax`` these are the attention weights; for ``sum``
        :math:`w_{ij} \kappa_{ij}`, for ``mean`` the same divided by
        :math:`\sum_j w_{ij}`; zero outside the support. This is a dense
        :math:`T \times S` tensor, computed one tile of targets at a time.

        Args:
            x: As :meth:`forward`.
            weight: As :meth:`forward`.
            mask: As :meth:`forward`.
            kind: ``"full"`` or ``"causal"`` to override the layer's grid.
        """
        if self.grid == "window" or self.measure == "max":
            raise ValueError("kernel_weights needs a full or causal grid, not max")
        x_src, x_dst, grid = self._inputs(x, kind)
        pos_src, pos_dst, src_terms, dst_terms = self._node_terms(x_src, x_dst, grid)
        b, num_src, num_dst = x_src.size(0), x_src.size(1), dst_terms.size(1)
        w_src, w_pair = self._split(weight, b, num_src, num_dst, "weight")
        m_src, m_pair = self._split(mask, b, num_src, num_dst, "mask")
        value = self._values(x_src)
        outs = []
        for t0 in range(0, num_dst, self.tile_size):
            t1 = min(t0 + self.tile_size, num_dst)
            (chunk,) = self._chunks(
                grid,
                t0,
                t1,
                src_terms,
                dst_terms,
                value,
                pos_src,
                pos_dst,
                w_src,
                w_pair,
                m_src,
                m_pair,
                None,
            )
            coef = _coefficients(chunk, self.measure)
            # a causal tile stops at its last target: later sources are zero
            outs.append(F.pad(coef, (0, 0, 0, num_src - coef.size(2))))
        return torch.cat(outs, dim=1)


class ImageIT(_DenseIT):
    r"""The ITNet integral transform on images :math:`(B, C, H, W)`.

    Pixels sit at integer positions :math:`p = (y, x)`. With ``grid="window"``
    and a window :math:`(k_h, k_w)` a target at :math:`p_i = (o_y s_h, o_x s_w)`
    sees the taps :math:`p_i - \text{pad} + (a\,d_h, b\,d_w)`, exactly where
    :class:`torch.nn.Conv2d` reads them; ``grid="full"`` lets every target see
    every pixel:

    .. math::
        y_i = \operatorname*{AGG}_{j \in G(i)}\; w_{ij}\,
        \kappa_\theta(p_j - p_i, f_i, f_j) \odot V f_j

    Kernel, values and measures are those of :class:`~itnet_geo.nn.ITConv`.
    Reduces to :class:`torch.nn.Conv2d` with a one-hot kernel over the taps and
    ``kernel="lowrank"`` (:func:`itnet_geo.nn.special.from_conv2d`).

    Args:
        in_channels (int): Input channels :math:`C_{in}`.
        out_channels (int): Output channels :math:`C_{out}`.
        grid (str, optional): ``"full"``, ``"window"`` (with :obj:`window`) or
            ``"window(kh, kw)"``. (default: :obj:`"window(3, 3)"`)
        window (int or tuple, optional): Window :math:`(k_h, k_w)` of
            ``grid="window"``. (default: :obj:`None`)
        stride (int or tuple, optional): Target spacing. (default: :obj:`1`)
        padding (int, tuple or str, optional): ``(p_h, p_w)``, an int,
            ``"same"`` or ``"valid"``, as :class:`torch.nn.Conv2d`; pixels outside
            the image are not in the support. (default: :obj:`"same"`)
        dilation (int or tuple, optional): Spacing of the window taps.
            (default: :obj:`1`)
        **other: As :class:`SequenceIT` (``kernel_inputs``, ``kernel``,
            ``hidden``, ``heads``, ``rank``, ``measure``, ``tile_size``,
            ``source_tile``, ``num_layers``, ``act``, ``value``, ``bias``,
            ``qk_dim``, ``kernel_pos_nn``, ``kernel_head``, ``checkpoint``).

    Shapes:
        - **input:** :math:`(B, C_{in}, H, W)` or :math:`(C_{in}, H, W)`
        - **output:** :math:`(B, C_{out}, H_{out}, W_{out})` (or without
          :math:`B`), :math:`H_{out}` as :class:`torch.nn.Conv2d` for a window,
          :math:`\lceil H / s_h \rceil` for the full grid

    Example:
        >>> layer = ImageIT(3, 8, grid="window(3, 3)", stride=2, padding=1)
        >>> layer(torch.randn(2, 3, 16, 16)).shape
        torch.Size([2, 8, 8, 8])
    """

    _ndim = 2

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        grid: str = "window(3, 3)",
        window: Optional[Union[int, tuple[int, int]]] = None,
        stride: Union[int, tuple[int, int]] = 1,
        padding: Union[int, tuple[int, int], str] = "same",
        dilation: Union[int, tuple[int, int]] = 1,
        kernel_inputs: Sequence[str] = ("rel_pos", "x_i", "x_j"),
        kernel: str = "channel",
        hidden: int = 64,
        heads: int = 1,
        rank: int = 8,
        measure: str = "sum",
        tile_size: int = 256,
        source_tile: Optional[int] = None,
        num_layers: int = 2,
        act: str = "relu",
        value: str = "linear",
        bias: bool = True,
        qk_dim: int = 16,
        kernel_pos_nn: Optional[nn.Module] = None,
        kernel_head: Optional[nn.Module] = None,
        checkpoint: bool = True,
    ):
        super().__init__(
            in_channels,
            out_channels,
            grid,
            window,
            stride,
            padding,
            dilation,
            kernel_inputs,
            kernel,
            hidden,
            heads,
            rank,
            measure,
            tile_size,
            source_tile,
            num_layers,
            act,
            value,
            bias,
            qk_dim,
            kernel_pos_nn,
            kernel_head,
            checkpoint,
        )

    def forward(self, x: Tensor) -> Tensor:
        """Apply the integral transform to an image batch."""
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.size(1) != self.in_channels[0]:
            raise ValueError(
                f"ImageIT expects input of shape (B, {self.in_channels[0]}, H, W), "
                f"got {tuple(x.shape)}"
            )
        b, _, h, w = x.shape
        grid = self._make_grid(self.grid, (h, w), x.device)
        x_src = x.flatten(2).transpose(1, 2)  # (B, H*W, C)
        x_dst = self._grid_targets(x_src, grid)
        if x_dst is None:
            raise ValueError(
                "the kernel reads target features, but some targets of this "
                "padding lie outside the image"
            )
        out = self._evaluate(x_src, x_dst, grid).transpose(1, 2)
        out = out.reshape(b, -1, *grid.out_shape)
        return out.squeeze(0) if unbatched else out


class OffsetOneHot(nn.Module):
    r"""A kernel positional term that is a one-hot table over integer offsets.

    :math:`\pi(\delta)_r = [\delta = \delta_r]` for a fixed list of offsets
    :math:`\delta_r` (the taps of a convolution window). Used as
    ``kernel_pos_nn`` with ``num_layers=1`` and ``kernel="lowrank"``, the kernel
    is :math:`\kappa(\delta) = \sum_r [\delta = \delta_r]\, U_r`: a table of
    :math:`C_{out} \times C_{in}` matrices indexed by the offset, i.e. a
    convolution weight.

    Args:
        offsets (torch.Tensor): Integer offsets :math:`(R, D)`.

    Shapes:
        - **input:** relative positions :math:`(\dots, D)`
        - **output:** :math:`(\dots, R)`

    Example:
        >>> table = OffsetOneHot(torch.tensor([[-1], [0], [1]]))
        >>> table(torch.tensor([[0.0], [1.0], [5.0]]))
        tensor([[0., 1., 0.],
                [0., 0., 1.],
                [0., 0., 0.]])
    """

    def __init__(self, offsets: Tensor):
        super().__init__()
        if offsets.dim() == 1:
            offsets = offsets.unsqueeze(-1)
        self.register_buffer("offsets", offsets.long())

    @classmethod
    def for_window(
        cls,
        window: Union[int, Sequence[int]],
        dilation: Union[int, Sequence[int]] = 1,
        padding: Union[int, Sequence, str] = "same",
    ) -> OffsetOneHot:
        """The taps of a window grid, in the order the grid lists them.

        The order is row-major over the window, as a convolution weight
        ``[..., k_h, k_w]`` is laid out. :obj:`window` an int means a sequence.
        """
        ndim = 1 if isinstance(window, int) else len(tuple(window))
        window = _ntuple(window, ndim, "window")
        dilation = _ntuple(dilation, ndim, "dilation")
        pad = _parse_padding(padding, window, dilation, ndim)
        return cls(
            _mesh(
                [
                    torch.arange(k) * d - pb
                    for k, d, (pb, _) in zip(window, dilation, pad, strict=True)
                ]
            )
        )

    def forward(self, rel_pos: Tensor) -> Tensor:
        target = self.offsets.to(rel_pos.dtype)
        hit = (rel_pos.unsqueeze(-2) == target).all(dim=-1)
        return hit.to(rel_pos.dtype)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.offsets.size(0)} offsets)"


__all__ = ["SequenceIT", "ImageIT", "OffsetOneHot", "DENSE_KERNELS", "DENSE_VALUES"]
