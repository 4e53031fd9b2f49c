r"""Scatter and segment reductions: torch-scatter when installed, else torch's own.

Every function takes a keyword ``backend`` (``"auto"``, ``"scatter"`` or
``"pure"``). ``"auto"`` uses the compiled ``torch_scatter`` package when it is
installed (:data:`itnet_geo.typing.WITH_TORCH_SCATTER`) and torch's own
``scatter_add_`` / ``scatter_reduce_`` / ``segment_reduce`` otherwise. Both paths
give the same values and the same gradients, with one exception: where several
entries of a segment tie for its maximum (minimum), torch-scatter sends the whole
gradient to one of them while the pure path splits it evenly between them.

Empty segments reduce to ``0`` for every reduction (never ``-inf`` or ``nan``).
"""

from __future__ import annotations

import functools
from typing import Optional

import torch
from torch import Tensor

from itnet_geo.typing import WITH_TORCH_SCATTER

_REDUCTIONS = ("sum", "add", "mean", "max", "min")
_BACKENDS = ("auto", "scatter", "pure")


@functools.lru_cache(maxsize=1)
def _torch_scatter():
    import torch_scatter

    return torch_scatter


def _use_compiled(backend: str) -> bool:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "pure":
        return False
    if backend == "scatter":
        if not WITH_TORCH_SCATTER:
            raise ImportError(
                "backend='scatter' needs the torch-scatter package "
                "(pip install 'itnet-geo[cluster]')"
            )
        return True
    return WITH_TORCH_SCATTER


def _check_reduce(reduce: str) -> str:
    if reduce not in _REDUCTIONS:
        raise ValueError(f"reduce must be one of {_REDUCTIONS}, got {reduce!r}")
    return "sum" if reduce == "add" else reduce


def _check_index(src: Tensor, index: Tensor, dim: int) -> int:
    if src.dim() == 0:
        raise ValueError("src must have at least one dimension, got a scalar")
    if not -src.dim() <= dim < src.dim():
        raise ValueError(
            f"dim={dim} is out of range for src of shape {list(src.shape)}"
        )
    dim = dim % src.dim()
    if index.dim() != 1 or index.numel() != src.size(dim):
        raise ValueError(
            f"index must have shape [{src.size(dim)}] (src.size({dim})) for src of "
            f"shape {list(src.shape)}, got {list(index.shape)}"
        )
    if index.dtype != torch.long:
        raise ValueError(f"index must be a torch.long tensor, got {index.dtype}")
    if index.device != src.device:
        raise ValueError(
            f"index is on {index.device} but src is on {src.device}: put them on "
            "the same device"
        )
    return dim


def _broadcast(index: Tensor, src: Tensor, dim: int) -> Tensor:
    """Expand a 1-D ``index`` along ``dim`` to the shape of ``src``."""
    shape = [1] * src.dim()
    shape[dim] = -1
    return index.view(shape).expand_as(src)


def _scatter_pure(
    src: Tensor, index: Tensor, dim: int, dim_size: int, reduce: str
) -> Tensor:
    size = list(src.shape)
    size[dim] = dim_size
    out = src.new_zeros(size)
    if src.numel() == 0:
        return out
    full_index = _broadcast(index, src, dim)
    if reduce == "sum":
        return out.scatter_add(dim, full_index, src)
    if reduce == "mean":
        total = out.scatter_add(dim, full_index, src)
        count = src.new_zeros(dim_size).scatter_add_(
            0, index, src.new_ones(index.numel())
        )
        count = count.clamp_(min=1)
        view = [1] * src.dim()
        view[dim] = -1
        count = count.view(view)
        if src.is_floating_point() or src.is_complex():
            return total / count
        return torch.div(total, count, rounding_mode="floor")
    # max / min: include_self=False leaves empty segments at their initial 0.
    return out.scatter_reduce(
        dim, full_index, src, "amax" if reduce == "max" else "amin", include_self=False
    )


def scatter(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: Optional[int] = None,
    reduce: str = "sum",
    *,
    backend: str = "auto",
) -> Tensor:
    r"""Reduce the entries of ``src`` that share an ``index`` along ``dim``.

    .. math::
        \mathrm{out}_i = \bigoplus_{j \,:\, \mathrm{index}_j = i} \mathrm{src}_j

    with :math:`\bigoplus` one of sum, mean, max or min. Segments that no entry
    points to are ``0`` for every reduction.

    Args:
        src (Tensor): The values to reduce.
        index (LongTensor): One segment id per entry of ``src`` along ``dim``; need
            not be sorted.
        dim (int, optional): The dimension to reduce along. (default: ``0``)
        dim_size (int, optional): Number of segments in the output; ``index.max() +
            1`` when ``None``. (default: ``None``)
        reduce (str, optional): ``"sum"`` (alias ``"add"``), ``"mean"``, ``"max"``
            or ``"min"``. (default: ``"sum"``)
        backend (str, optional): ``"auto"`` (torch-scatter when installed),
            ``"scatter"`` (require torch-scatter) or ``"pure"`` (torch only).
            (default: ``"auto"``)

    Shapes:
        - **src:** :math:`(*, N, *)` with :math:`N` at position ``dim``
        - **index:** :math:`(N,)`
        - **output:** :math:`(*, \text{dim\_size}, *)`

    Example:
        >>> src = torch.tensor([1.0, 2.0, 4.0])
        >>> scatter(src, torch.tensor([0, 0, 2]), reduce="max")
        tensor([2., 0., 4.])
    """
    reduce = _check_reduce(reduce)
    dim = _check_index(src, index, dim)
    if dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
    elif dim_size < 0:
        raise ValueError(f"dim_size must be non-negative, got {dim_size}")
    if _use_compiled(backend):
        return _torch_scatter().scatter(
            src, index, dim=dim, dim_size=dim_size, reduce=reduce
        )
    return _scatter_pure(src, index, dim, dim_size, reduce)


def segment(
    src: Tensor, ptr: Tensor, reduce: str = "sum", *, backend: str = "auto"
) -> Tensor:
    r"""Reduce consecutive rows of ``src`` over CSR pointers ``ptr``.

    .. math::
        \mathrm{out}_i = \bigoplus_{j = \mathrm{ptr}_i}^{\mathrm{ptr}_{i+1} - 1}
        \mathrm{src}_j

    The same as :func:`scatter` with sorted ``index``, but faster: segment ``i``
    is the row range ``ptr[i]:ptr[i + 1]`` of ``src`` (dimension 0). Empty
    segments are ``0``.

    Args:
        src (Tensor): The values to reduce, segments along dimension 0.
        ptr (LongTensor): Non-decreasing pointers into dimension 0 of ``src``.
        reduce (str, optional): ``"sum"`` (alias ``"add"``), ``"mean"``, ``"max"``
            or ``"min"``. (default: ``"sum"``)
        backend (str, optional): ``"auto"``, ``"scatter"`` or ``"pure"``, as in
            :func:`scatter`. (default: ``"auto"``)

    Shapes:
        - **src:** :math:`(N, *)`
        - **ptr:** :math:`(S + 1,)`
        - **output:** :math:`(S, *)`

    Example:
        >>> src = torch.tensor([1.0, 2.0, 4.0])
        >>> segment(src, torch.tensor([0, 2, 2, 3]), reduce="mean")
        tensor([1.5000, 0.0000, 4.0000])
    """
    reduce = _check_reduce(reduce)
    if src.dim() == 0:
        raise ValueError("src must have at least one dimension, got a scalar")
    if ptr.dim() != 1 or ptr.numel() < 1:
        raise ValueError(
            f"ptr must be a 1-D tensor of S + 1 pointers, got shape {list(ptr.shape)}"
        )
    if ptr.dtype != torch.long:
        raise ValueError(f"ptr must be a torch.long tensor, got {ptr.dtype}")
    if ptr.device != src.device:
        raise ValueError(
            f"ptr is on {ptr.device} but src is on {src.device}: put them on the "
            "same device"
        )
    if ptr.numel() > 1 and bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError("ptr must be non-decreasing")
    if int(ptr[0]) < 0 or int(ptr[-1]) > src.size(0):
        raise ValueError(
            f"ptr must lie in [0, {src.size(0)}] for src of shape "
            f"{list(src.shape)}, got range [{int(ptr[0])}, {int(ptr[-1])}]"
        )
    if _use_compiled(backend):
        return _torch_scatter().segment_csr(src, ptr, reduce=reduce)

    num_segments = ptr.numel() - 1
    start = int(ptr[0])
    src = src.narrow(0, start, int(ptr[-1]) - start)
    offsets = ptr - start
    lengths = offsets.diff()
    if not src.is_floating_point() or src.numel() == 0:
        # segment_reduce has no integer kernels: fall back to scatter.
        index = torch.repeat_interleave(
            torch.arange(num_segments, device=src.device), lengths
        )
        return _scatter_pure(src, index, 0, num_segments, reduce)
    out = torch.segment_reduce(src, reduce, offsets=offsets, axis=0)
    empty = (lengths == 0).view([-1] + [1] * (src.dim() - 1))
    return torch.where(empty, out.new_zeros(()), out)


def scatter_softmax(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: Optional[int] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""Softmax of ``src`` within each group of entries that share an ``index``.

    .. math::
        \mathrm{out}_j = \frac{\exp(\mathrm{src}_j)}
        {\sum_{k \,:\, \mathrm{index}_k = \mathrm{index}_j} \exp(\mathrm{src}_k)}

    computed stably (each group shifted by its maximum).

    Args:
        src (Tensor): Floating-point scores.
        index (LongTensor): One group id per entry of ``src`` along ``dim``.
        dim (int, optional): The dimension to normalise along. (default: ``0``)
        dim_size (int, optional): Number of groups; ``index.max() + 1`` when
            ``None``. (default: ``None``)
        backend (str, optional): ``"auto"``, ``"scatter"`` or ``"pure"``, as in
            :func:`scatter`. (default: ``"auto"``)

    Shapes:
        - **src:** :math:`(*, N, *)` with :math:`N` at position ``dim``
        - **index:** :math:`(N,)`
        - **output:** same as ``src``

    Example:
        >>> src = torch.tensor([0.0, 0.0, 5.0])
        >>> scatter_softmax(src, torch.tensor([0, 0, 1]))
        tensor([0.5000, 0.5000, 1.0000])
    """
    if not src.is_floating_point():
        raise ValueError(f"scatter_softmax needs floating-point src, got {src.dtype}")
    dim = _check_index(src, index, dim)
    if dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() > 0 else 0
    if _use_compiled(backend):
        return _torch_scatter().composite.scatter_softmax(
            src, index, dim=dim, dim_size=dim_size
        )
    if src.numel() == 0:
        return src.clone()
    full_index = _broadcast(index, src, dim)
    # The shift cancels in exact arithmetic, so it carries no gradient.
    shift = _scatter_pure(src.detach(), index, dim, dim_size, "max")
    exp = (src - shift.gather(dim, full_index)).exp()
    total = _scatter_pure(exp, index, dim, dim_size, "sum")
    return exp / total.gather(dim, full_index)


__all__ = ["scatter", "segment", "scatter_softmax"]
