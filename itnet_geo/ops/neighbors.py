r"""Neighbour search and sampling on point clouds: kNN, radius and farthest points.

The five functions have torch-cluster's signatures and return conventions, so that
they are drop-in replacements for ``torch_cluster.knn`` & co. Each also takes a
keyword ``backend``:

- ``"auto"`` (default): the compiled ``torch_cluster`` package when it is installed
  (:data:`itnet_geo.typing.WITH_TORCH_CLUSTER`) and supports the call, else the
  pure path;
- ``"cluster"``: require torch-cluster;
- ``"pure"``: torch and SciPy only.

The pure path computes exact neighbours. On the CPU, small problems are solved by
brute force (blocked ``torch.cdist`` + ``topk``, other batch elements masked out)
and large ones by one SciPy ``cKDTree`` query (``workers=-1``) in which the batch
elements are moved apart along an extra coordinate, so that no batch element can
see another. Tensors on an accelerator always take the brute-force path and stay
on their device. Up to ties between equal distances, both backends return the
same neighbour sets (for :func:`radius`, below its ``max_num_neighbors`` cap:
above it the pure path keeps the nearest neighbours, torch-cluster the first it
finds) and :func:`fps` with ``random_start=False`` the same samples.

Batch vectors are sorted, as in every PyG mini-batch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from itnet_geo.typing import WITH_TORCH_CLUSTER

_BACKENDS = ("auto", "cluster", "pure")
_FLOWS = ("source_to_target", "target_to_source")

#: CPU problems with more (query, candidate) pairs than this use the k-d tree.
_KDTREE_MIN_PAIRS = 1 << 16
#: The k-d tree is only used up to this many coordinates (brute force beyond).
_KDTREE_MAX_DIM = 16
#: Entries of one block of the brute-force distance matrix / one k-d tree query.
_BLOCK = 1 << 22


@functools.lru_cache(maxsize=1)
def _torch_cluster():
    import torch_cluster

    return torch_cluster


def _use_cluster(backend: str, x: Tensor, cosine: bool = False) -> bool:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if backend == "pure":
        return False
    if backend == "cluster":
        if not WITH_TORCH_CLUSTER:
            raise ImportError(
                "backend='cluster' needs the torch-cluster package "
                "(pip install 'itnet-geo[cluster]')"
            )
        if cosine and x.device.type == "cpu":
            raise ValueError("torch-cluster supports cosine=True on CUDA only")
        return True
    # auto: torch-cluster has no cosine kNN on the CPU.
    return WITH_TORCH_CLUSTER and not (cosine and x.device.type == "cpu")


def _points(name: str, t: Tensor) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() == 1:
        t = t.view(-1, 1)
    if t.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D] (or [N]), got {list(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be floating point, got {t.dtype}")
    return t


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    x, y = _points("x", x), _points("y", y)
    if x.size(1) != y.size(1):
        raise ValueError(
            f"x and y must have the same number of coordinates, got x of shape "
            f"{list(x.shape)} and y of shape {list(y.shape)}"
        )
    if x.device != y.device:
        raise ValueError(f"x is on {x.device} but y is on {y.device}")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype).contiguous(), y.to(dtype).contiguous()


def _batch(name: str, batch: Optional[Tensor], points: Tensor) -> Optional[Tensor]:
    if batch is None:
        return None
    n = points.size(0)
    if batch.dim() != 1 or batch.numel() != n:
        raise ValueError(
            f"{name} must have shape [{n}] for points of shape "
            f"{list(points.shape)}, got {list(batch.shape)}"
        )
    if batch.dtype != torch.long:
        raise ValueError(f"{name} must be a torch.long tensor, got {batch.dtype}")
    if batch.device != points.device:
        raise ValueError(
            f"{name} is on {batch.device} but the points on {points.device}"
        )
    if n > 0:
        if int(batch[0]) < 0:
            raise ValueError(f"{name} must be non-negative")
        if bool((batch[1:] < batch[:-1]).any()):
            raise ValueError(f"{name} must be sorted (as in a PyG mini-batch)")
    return batch


def _num_segments(batch_size: Optional[int], *batches: Optional[Tensor]) -> int:
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for b in batches:
            if b is not None and b.numel() > 0 and int(b[-1]) >= batch_size:
                raise ValueError(
                    f"batch_size={batch_size} but a batch vector holds {int(b[-1])}"
                )
        return batch_size
    size = 1
    for b in batches:
        if b is not None and b.numel() > 0:
            size = max(size, int(b[-1]) + 1)
    return size


def _pointers(batch: Optional[Tensor], n: int, size: int, device) -> Tensor:
    ptr = torch.zeros(size + 1, dtype=torch.long, device=device)
    if batch is None:
        ptr[1:] = n
    else:
        torch.cumsum(torch.bincount(batch, minlength=size), 0, out=ptr[1:])
    return ptr


def _check_k(name: str, k: int, minimum: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {k!r}")
    return int(k)


def _empty_edges(device) -> Tensor:
    return torch.empty(2, 0, dtype=torch.long, device=device)


# ----------------------------------------------------------------------------
# Pure path: nearest neighbours among candidates of the same batch element.
# ----------------------------------------------------------------------------


def _blocks(
    px: list[int], py: list[int], budget: int
) -> Iterator[tuple[int, int, int, int, bool]]:
    """Group consecutive batch elements into blocks of at most ``budget`` pairs."""
    size, b = len(px) - 1, 0
    while b < size:
        e = b + 1
        while e < size and (py[e + 1] - py[b]) * (px[e + 1] - px[b]) <= budget:
            e += 1
        yield py[b], py[e], px[b], px[e], e - b > 1
        b = e


def _nearest_brute(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor],
    batch_y: Optional[Tensor],
    ptr_x: Tensor,
    ptr_y: Tensor,
    k: int,
    r: Optional[float],
    exclude_self: bool,
) -> Tensor:
    if x.dtype in (torch.float16, torch.bfloat16):
        x, y = x.float(), y.float()
    # On the CPU the direct formula is as fast as the matmul one for few
    # coordinates and has no cancellation error.
    mode = (
        "donot_use_mm_for_euclid_dist"
        if x.device.type == "cpu" and x.size(1) <= _KDTREE_MAX_DIM
        else "use_mm_for_euclid_dist_if_necessary"
    )
    rows, cols = [], []
    for y0, y1, x0, x1, mixed in _blocks(ptr_x.tolist(), ptr_y.tolist(), _BLOCK):
        width = x1 - x0
        if width == 0 or y1 == y0:
            continue
        step = max(1, _BLOCK // width)
        cand = torch.arange(x0, x1, device=x.device)
        for c0 in range(y0, y1, step):
            c1 = min(c0 + step, y1)
            query = torch.arange(c0, c1, device=x.device)
            dist = torch.cdist(y[c0:c1], x[x0:x1], compute_mode=mode)
            invalid = torch.zeros_like(dist, dtype=torch.bool)
            if mixed:
                invalid |= batch_y[c0:c1, None] != batch_x[None, x0:x1]
            if r is not None:
                invalid |= ~(dist < r)
            if exclude_self:
                invalid |= query[:, None] == cand[None, :]
            dist = dist.masked_fill(invalid, math.inf)
            val, idx = torch.topk(dist, min(k, width), dim=1, largest=False)
            keep = val != math.inf
            rows.append(query[:, None].expand_as(idx)[keep])
            cols.append(idx[keep] + x0)
    if not rows:
        return _empty_edges(x.device)
    return torch.stack([torch.cat(rows), torch.cat(cols)])


def _nearest_kdtree(
    x: Tensor,
    y: Optional[Tensor],
    batch_x: Optional[Tensor],
    batch_y: Optional[Tensor],
    k: int,
    r: Optional[float],
    exclude_self: bool,
) -> Tensor:
    """k-d tree search; ``y=None`` queries the points of ``x`` themselves."""
    from scipy.spatial import cKDTree

    xn = x.detach().cpu().double().numpy()
    yn = xn if y is None else y.detach().cpu().double().numpy()
    bx = by = None
    if batch_x is not None and batch_y is not None:
        bx, by = batch_x.cpu(), batch_y.cpu()
        # Move batch element b to b * gap along a new axis: the gap exceeds the
        # diameter of the whole cloud, so every point of a batch element is
        # nearer to its own element than any point of another one.
        both = xn if y is None else np.concatenate([xn, yn])
        gap = float(np.linalg.norm(both.max(0) - both.min(0))) * 2.0 + 1.0
        xn = np.concatenate([xn, bx.numpy()[:, None] * gap], axis=1)
        if y is not None:
            yn = np.concatenate([yn, by.numpy()[:, None] * gap], axis=1)
        else:
            yn = xn
    n, m = xn.shape[0], yn.shape[0]
    tree = cKDTree(xn, balanced_tree=False, compact_nodes=False)
    # Queries in the order of the leaves of a tree are about twice as fast as
    # in random order (neighbouring queries walk the same nodes).
    if y is None:
        order = tree.indices
    else:
        order = cKDTree(yn, balanced_tree=False, compact_nodes=False).indices
    kq = min(k + 1 if exclude_self else k, n)
    bound = np.inf if r is None else float(r)
    step = max(1, _BLOCK // kq)
    idx = np.empty((m, kq), dtype=np.int64)
    for c0 in range(0, m, step):
        part = order[c0 : c0 + step]
        idx[part] = tree.query(
            yn[part], k=[*range(1, kq + 1)], distance_upper_bound=bound, workers=-1
        )[1]
    found, query = torch.from_numpy(idx), torch.arange(m)
    if bx is not None:
        # With at least kq points in every batch element that has queries, the
        # gap guarantees that all kq found points are of the query's element.
        size = int(max(bx.max(), by.max())) + 1
        small = torch.bincount(bx, minlength=size) < kq
        small &= torch.bincount(by, minlength=size) > 0
        if not bool(small.any()):
            bx = None
    if bx is None and r is None and kq == k + int(exclude_self):
        # Every query has kq neighbours, and without duplicate points a query
        # is its own nearest neighbour: no masking needed.
        if not exclude_self:
            return torch.stack([query.repeat_interleave(k), found.view(-1)]).to(
                x.device
            )
        if bool((found[:, 0] == query).all()):
            rows = query.repeat_interleave(k)
            return torch.stack([rows, found[:, 1:].reshape(-1)]).to(x.device)
    keep = found < n  # missing neighbours come back as index n
    found.masked_fill_(~keep, 0)
    if bx is not None:
        keep &= bx[found] == by[:, None]
    if exclude_self:
        keep &= found != query[:, None]
    keep &= keep.cumsum(1) <= k
    rows = torch.repeat_interleave(query, keep.sum(1))
    return torch.stack([rows, found[keep]]).to(x.device)


@torch.no_grad()
def _nearest(
    x: Tensor,
    y: Tensor,
    batch_x: Optional[Tensor],
    batch_y: Optional[Tensor],
    batch_size: Optional[int],
    k: int,
    r: Optional[float] = None,
    exclude_self: bool = False,
    cosine: bool = False,
) -> Tensor:
    """The ``k`` nearest points of ``x`` (within ``r``) of each point of ``y``."""
    if x.size(0) == 0 or y.size(0) == 0 or k == 0:
        return _empty_edges(x.device)
    same = x is y and batch_x is batch_y  # a graph: query the points themselves
    size = _num_segments(batch_size, batch_x, batch_y)
    if size > 1:  # a missing batch vector means "all in batch element 0"
        if batch_x is None:
            batch_x = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if batch_y is None:
            batch_y = batch_x if same else batch_x.new_zeros(y.size(0))
    else:
        batch_x = batch_y = None
    if cosine:  # Euclidean order on the unit sphere is cosine order
        x = F.normalize(x, dim=1)
        y = x if same else F.normalize(y, dim=1)
    ptr_x = _pointers(batch_x, x.size(0), size, x.device)
    ptr_y = _pointers(batch_y, y.size(0), size, y.device)
    if x.device.type == "cpu" and x.size(1) <= _KDTREE_MAX_DIM:
        pairs = int((ptr_x.diff() * ptr_y.diff()).sum())
        if pairs > _KDTREE_MIN_PAIRS:
            return _nearest_kdtree(
                x, None if same else y, batch_x, batch_y, k, r, exclude_self
            )
    return _nearest_brute(x, y, batch_x, batch_y, ptr_x, ptr_y, k, r, exclude_self)


def _orient(edge_index: Tensor, flow: str) -> Tensor:
    if flow == "source_to_target":
        return edge_index.flip(0)
    return edge_index


def _check_flow(flow: str) -> None:
    if flow not in _FLOWS:
        raise ValueError(f"flow must be one of {_FLOWS}, got {flow!r}")


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""For each point of ``y``, its ``k`` nearest points of ``x``.

    .. math::
        \mathcal{N}(y_i) = \operatorname{arg\,top-}k_{\,j \,:\, b^x_j = b^y_i}
        \; -\lVert x_j - y_i \rVert

    Only points of the same batch element are neighbours; a batch element with
    fewer than ``k`` points of ``x`` gives all of them.

    Args:
        x (Tensor): Candidate points.
        y (Tensor): Query points.
        k (int): Number of neighbours per query.
        batch_x (LongTensor, optional): Sorted batch vector of ``x``.
            (default: ``None``)
        batch_y (LongTensor, optional): Sorted batch vector of ``y``.
            (default: ``None``)
        cosine (bool, optional): Rank by cosine distance instead of Euclidean
            distance (torch-cluster has it on CUDA only; the pure path everywhere).
            (default: ``False``)
        num_workers (int, optional): CPU threads of torch-cluster (the pure path's
            k-d tree always uses every core). (default: ``1``)
        batch_size (int, optional): Number of batch elements, inferred from the
            batch vectors when ``None``. (default: ``None``)
        backend (str, optional): ``"auto"``, ``"cluster"`` or ``"pure"``.
            (default: ``"auto"``)

    Returns:
        LongTensor: ``[2, E]``: row 0 indexes ``y`` (the query), row 1 indexes
        ``x`` (its neighbour), grouped by query.

    Shapes:
        - **x:** :math:`(N, D)` or :math:`(N,)`; **y:** :math:`(M, D)` or
          :math:`(M,)`
        - **batch_x:** :math:`(N,)`; **batch_y:** :math:`(M,)`
        - **output:** :math:`(2, E)` with :math:`E \le kM`

    Example:
        >>> x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        >>> y = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
        >>> knn(x, y, 2).shape
        torch.Size([2, 4])
    """
    x, y = _pair(x, y)
    k = _check_k("k", k, 1)
    batch_x = _batch("batch_x", batch_x, x)
    batch_y = _batch("batch_y", batch_y, y)
    _num_segments(batch_size, batch_x, batch_y)  # validates batch_size
    if x.size(0) == 0 or y.size(0) == 0:
        return _empty_edges(x.device)
    if _use_cluster(backend, x, cosine):
        batch_x, batch_y = _fill_batches(batch_x, batch_y, x, y)
        return _torch_cluster().knn(
            x, y, k, batch_x, batch_y, cosine, num_workers, batch_size
        )
    return _nearest(x, y, batch_x, batch_y, batch_size, k, cosine=cosine)


def knn_graph(
    x: Tensor,
    k: int,
    batch: Optional[Tensor] = None,
    loop: bool = False,
    flow: str = "source_to_target",
    cosine: bool = False,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""The k-nearest-neighbour graph of a point cloud.

    Every point :math:`i` receives edges from its ``k`` nearest points :math:`j`
    of the same batch element (itself included only when ``loop=True``).

    Args:
        x (Tensor): Points.
        k (int): Number of neighbours per point.
        batch (LongTensor, optional): Sorted batch vector. (default: ``None``)
        loop (bool, optional): Count each point among its own neighbours.
            (default: ``False``)
        flow (str, optional): ``"source_to_target"`` (``edge_index[0]`` is the
            neighbour :math:`j`, ``edge_index[1]`` the centre :math:`i`) or
            ``"target_to_source"``. (default: ``"source_to_target"``)
        cosine (bool, optional): Rank by cosine distance. (default: ``False``)
        num_workers (int, optional): CPU threads of torch-cluster.
            (default: ``1``)
        batch_size (int, optional): Number of batch elements. (default: ``None``)
        backend (str, optional): ``"auto"``, ``"cluster"`` or ``"pure"``.
            (default: ``"auto"``)

    Without loops the pure path always gives ``k`` other points; torch-cluster
    takes ``k + 1`` nearest and drops the point itself, which gives ``k + 1``
    edges when more than ``k`` points coincide with it.

    Shapes:
        - **x:** :math:`(N, D)`; **batch:** :math:`(N,)`
        - **output:** :math:`(2, E)` with :math:`E \le kN`

    Example:
        >>> x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        >>> knn_graph(x, k=2).shape
        torch.Size([2, 8])
    """
    _check_flow(flow)
    x = _points("x", x).contiguous()
    k = _check_k("k", k, 1)
    batch = _batch("batch", batch, x)
    _num_segments(batch_size, batch)  # validates batch_size
    if x.size(0) == 0:
        return _empty_edges(x.device)
    if _use_cluster(backend, x, cosine):
        return _torch_cluster().knn_graph(
            x, k, batch, loop, flow, cosine, num_workers, batch_size
        )
    edge_index = _nearest(
        x, x, batch, batch, batch_size, k, exclude_self=not loop, cosine=cosine
    )
    return _orient(edge_index, flow)


def radius(
    x: Tensor,
    y: Tensor,
    r: float,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    max_num_neighbors: int = 32,
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    ignore_same_index: bool = False,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""For each point of ``y``, the points of ``x`` closer than ``r``.

    .. math::
        \mathcal{N}(y_i) = \{\, j : b^x_j = b^y_i,\ \lVert x_j - y_i \rVert < r \,\}

    capped at ``max_num_neighbors`` per query. When the cap is hit, the pure path
    keeps the ``max_num_neighbors`` *nearest* points; torch-cluster keeps the first
    ones its search happens to find (the k-d tree's traversal order on the CPU,
    the lowest indices on CUDA). Below the cap both give the same set.

    Args:
        x (Tensor): Candidate points.
        y (Tensor): Query points.
        r (float): Radius (strict: points at distance exactly ``r`` are out).
        batch_x (LongTensor, optional): Sorted batch vector of ``x``.
            (default: ``None``)
        batch_y (LongTensor, optional): Sorted batch vector of ``y``.
            (default: ``None``)
        max_num_neighbors (int, optional): Most neighbours per query.
            (default: ``32``)
        num_workers (int, optional): CPU threads of torch-cluster.
            (default: ``1``)
        batch_size (int, optional): Number of batch elements. (default: ``None``)
        ignore_same_index (bool, optional): Skip the pair ``(i, i)`` (for
            ``x`` and ``y`` the same cloud); on the pure path it does not count
            towards the cap. Newer torch-cluster has this argument; with
            torch-cluster 1.6 the cap is raised by one and the pair dropped, as
            its ``radius_graph`` does. (default: ``False``)
        backend (str, optional): ``"auto"``, ``"cluster"`` or ``"pure"``.
            (default: ``"auto"``)

    Returns:
        LongTensor: ``[2, E]``: row 0 indexes ``y``, row 1 indexes ``x``.

    Shapes:
        - **x:** :math:`(N, D)`; **y:** :math:`(M, D)`
        - **output:** :math:`(2, E)` with :math:`E \le M \cdot`
          ``max_num_neighbors``

    Example:
        >>> x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        >>> y = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
        >>> radius(x, y, 1.5).size(1)
        4
    """
    x, y = _pair(x, y)
    r = _check_radius(r)
    max_num_neighbors = _check_k("max_num_neighbors", max_num_neighbors, 0)
    batch_x = _batch("batch_x", batch_x, x)
    batch_y = _batch("batch_y", batch_y, y)
    _num_segments(batch_size, batch_x, batch_y)  # validates batch_size
    if x.size(0) == 0 or y.size(0) == 0:
        return _empty_edges(x.device)
    if _use_cluster(backend, x):
        batch_x, batch_y = _fill_batches(batch_x, batch_y, x, y)
        # torch-cluster 1.6 has no ignore_same_index: do what its radius_graph
        # does (one more neighbour, then drop the pair (i, i)).
        edge_index = _torch_cluster().radius(
            x,
            y,
            r,
            batch_x,
            batch_y,
            max_num_neighbors + int(ignore_same_index),
            num_workers,
            batch_size,
        )
        if ignore_same_index:
            edge_index = edge_index[:, edge_index[0] != edge_index[1]]
        return edge_index
    return _nearest(
        x,
        y,
        batch_x,
        batch_y,
        batch_size,
        max_num_neighbors,
        r=r,
        exclude_self=ignore_same_index,
    )


def radius_graph(
    x: Tensor,
    r: float,
    batch: Optional[Tensor] = None,
    loop: bool = False,
    max_num_neighbors: int = 32,
    flow: str = "source_to_target",
    num_workers: int = 1,
    batch_size: Optional[int] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""The radius graph of a point cloud: edges between points closer than ``r``.

    Every point :math:`i` receives edges from at most ``max_num_neighbors``
    points :math:`j` of its batch element with :math:`\lVert x_j - x_i \rVert <
    r` (the nearest ones on the pure path, see :func:`radius`).

    Args:
        x (Tensor): Points.
        r (float): Radius (strict).
        batch (LongTensor, optional): Sorted batch vector. (default: ``None``)
        loop (bool, optional): Add the self-loop of every point (it then counts
            towards the cap). (default: ``False``)
        max_num_neighbors (int, optional): Most neighbours per point.
            (default: ``32``)
        flow (str, optional): ``"source_to_target"`` (``edge_index[0]`` is the
            neighbour :math:`j`, ``edge_index[1]`` the centre :math:`i`) or
            ``"target_to_source"``. (default: ``"source_to_target"``)
        num_workers (int, optional): CPU threads of torch-cluster.
            (default: ``1``)
        batch_size (int, optional): Number of batch elements. (default: ``None``)
        backend (str, optional): ``"auto"``, ``"cluster"`` or ``"pure"``.
            (default: ``"auto"``)

    Shapes:
        - **x:** :math:`(N, D)`; **batch:** :math:`(N,)`
        - **output:** :math:`(2, E)`

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [0.5, 0.0], [3.0, 0.0]])
        >>> radius_graph(x, r=1.0).tolist()
        [[1, 0], [0, 1]]
    """
    _check_flow(flow)
    x = _points("x", x).contiguous()
    r = _check_radius(r)
    max_num_neighbors = _check_k("max_num_neighbors", max_num_neighbors, 0)
    batch = _batch("batch", batch, x)
    _num_segments(batch_size, batch)  # validates batch_size
    if x.size(0) == 0:
        return _empty_edges(x.device)
    if _use_cluster(backend, x):
        return _torch_cluster().radius_graph(
            x, r, batch, loop, max_num_neighbors, flow, num_workers, batch_size
        )
    edge_index = _nearest(
        x, x, batch, batch, batch_size, max_num_neighbors, r=r, exclude_self=not loop
    )
    return _orient(edge_index, flow)


def fps(
    src: Tensor,
    batch: Optional[Tensor] = None,
    ratio: Union[float, Tensor] = 0.5,
    random_start: bool = True,
    batch_size: Optional[int] = None,
    ptr: Optional[Union[Tensor, Sequence[int]]] = None,
    *,
    backend: str = "auto",
) -> Tensor:
    r"""Farthest point sampling, per batch element.

    Starting from one point (random, or the first one), repeatedly add the point
    farthest from those already taken:

    .. math::
        s_{t+1} = \operatorname{arg\,max}_i \, \min_{u \le t} \lVert x_i -
        x_{s_u} \rVert

    until :math:`\lceil \text{ratio} \cdot n_b \rceil` points of each batch
    element :math:`b` (of :math:`n_b` points) are taken. The pure path runs one
    step for all batch elements at once; the random start draws from torch's
    generator, so it follows :func:`torch.manual_seed`.

    Args:
        src (Tensor): Points.
        batch (LongTensor, optional): Sorted batch vector. (default: ``None``)
        ratio (float or Tensor, optional): Fraction of points to keep, in
            :math:`(0, 1]`. (default: ``0.5``)
        random_start (bool, optional): Start from a random point of each batch
            element instead of its first one. (default: ``True``)
        batch_size (int, optional): Number of batch elements. (default: ``None``)
        ptr (LongTensor or list of int, optional): CSR pointers of the batch
            elements, instead of ``batch``. (default: ``None``)
        backend (str, optional): ``"auto"`` (the pure path on the CPU, where it
            is the faster one; torch-cluster, when installed, on other
            devices), ``"cluster"`` or ``"pure"``. (default: ``"auto"``)

    Returns:
        LongTensor: indices into ``src``, batch element by batch element, each in
        the order they were sampled.

    Shapes:
        - **src:** :math:`(N, D)` or :math:`(N,)`; **batch:** :math:`(N,)`
        - **output:** :math:`(\sum_b \lceil \text{ratio} \cdot n_b \rceil,)`

    Example:
        >>> x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
        >>> fps(x, ratio=0.5, random_start=False).tolist()
        [0, 3]
    """
    src = _points("src", src).contiguous()
    ratio_value = float(ratio)
    if not 0.0 < ratio_value <= 1.0:
        raise ValueError(f"ratio must lie in (0, 1], got {ratio_value}")
    if ptr is not None:
        if batch is not None:
            raise ValueError("give either batch or ptr, not both")
        ptr = torch.as_tensor(ptr, dtype=torch.long, device=src.device)
        if ptr.dim() != 1 or ptr.numel() < 2:
            raise ValueError(f"ptr must have shape [B + 1], got {list(ptr.shape)}")
        if int(ptr[0]) != 0 or int(ptr[-1]) != src.size(0):
            raise ValueError(
                f"ptr must run from 0 to {src.size(0)} for src of shape "
                f"{list(src.shape)}, got {ptr.tolist()}"
            )
        if bool((ptr[1:] < ptr[:-1]).any()):
            raise ValueError("ptr must be non-decreasing")
    else:
        batch = _batch("batch", batch, src)
        size = _num_segments(batch_size, batch)
        ptr = _pointers(batch, src.size(0), size, src.device)
    if src.size(0) == 0:
        return torch.empty(0, dtype=torch.long, device=src.device)
    # On the CPU the pure path was faster than torch-cluster's kernel at every
    # size measured (1k and 10k points, a batch of 32 x 1024; see
    # benchmarks/neighbors.py), so "auto" takes torch-cluster on other devices only.
    if _use_cluster(backend, src) and (
        backend == "cluster" or src.device.type != "cpu"
    ):
        return _torch_cluster().fps(src, None, ratio_value, random_start, None, ptr)
    return _fps_pure(src, ptr, ratio_value, random_start)


@torch.no_grad()
def _fps_pure(src: Tensor, ptr: Tensor, ratio: float, random_start: bool) -> Tensor:
    device = src.device
    deg = ptr.diff()
    size = deg.numel()
    # As torch-cluster: ceil(deg * ratio) computed in float32.
    num = torch.ceil(
        deg.to(torch.float32) * torch.tensor(ratio, dtype=torch.float32, device=device)
    ).long()
    steps = int(num.max())
    if steps == 0:
        return torch.empty(0, dtype=torch.long, device=device)
    # Pad the batch elements to [D, B, P] (coordinate-major: the squared
    # distance is then a sum over the outer axis, which vectorises well); the
    # padding has distance -1 so that it is never the farthest point.
    width = int(deg.max())
    batch = torch.repeat_interleave(torch.arange(size, device=device), deg)
    local = torch.arange(src.size(0), device=device) - ptr[batch]
    pos = src.new_zeros(src.size(1), size, width)
    pos[:, batch, local] = src.t()
    pad = torch.ones(size, width, dtype=torch.bool, device=device)
    pad[batch, local] = False

    if random_start:
        draw = torch.randint(0, 1 << 62, (size,), device=device)
        start = draw % deg.clamp(min=1)
    else:
        start = torch.zeros(size, dtype=torch.long, device=device)
    rows = torch.arange(size, device=device)
    out = torch.empty(size, steps, dtype=torch.long, device=device)
    out[:, 0] = start
    dist = (pos - pos[:, rows, start].unsqueeze(-1)).square_().sum(0)
    dist.masked_fill_(pad, -1)
    for t in range(1, steps):
        far = dist.argmax(dim=1)
        out[:, t] = far
        step = (pos - pos[:, rows, far].unsqueeze(-1)).square_().sum(0)
        torch.minimum(dist, step, out=dist)
    taken = torch.arange(steps, device=device)[None, :] < num[:, None]
    return (out + ptr[:-1, None])[taken]


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def _check_radius(r: float) -> float:
    r = float(r)
    if math.isnan(r) or r < 0:
        raise ValueError(f"r must be a non-negative number, got {r}")
    return r


def _fill_batches(
    batch_x: Optional[Tensor], batch_y: Optional[Tensor], x: Tensor, y: Tensor
) -> tuple[Optional[Tensor], Optional[Tensor]]:
    """torch-cluster needs both batch vectors or neither."""
    if batch_x is None and batch_y is not None:
        batch_x = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
    if batch_y is None and batch_x is not None:
        batch_y = torch.zeros(y.size(0), dtype=torch.long, device=y.device)
    return batch_x, batch_y


__all__ = ["knn", "knn_graph", "radius", "radius_graph", "fps"]
