r"""Quadrature weights and importance-weighted Monte Carlo for the integral.

ITNet's layer approximates an integral over the domain with a sum over sample
points,

.. math::
    \int \kappa(x_i, y)\, V f(y)\, d\mu(y) \;\approx\;
    \sum_{j \in \mathcal{N}(i)} w_j\, \kappa(x_i, y_j)\, V f(y_j),

where the *quadrature weight* :math:`w_j` is the share of the measure
:math:`\mu` that sample :math:`y_j` stands for. This module provides

* quadrature weights: :func:`uniform_weights` (every sample counts the same),
  :func:`density_weights` (inverse kernel-density estimate
  :math:`w_j \propto 1 / \hat p(y_j)`, so a non-uniformly sampled cloud
  integrates correctly; ``boundary=True`` corrects it next to the boundary
  of a domain) and :func:`area_weights` (barycentric vertex areas of a
  triangle mesh);
* :class:`MonteCarlo`: an unbiased random subsample of the sum (per
  neighbourhood, or of the source nodes) with Horvitz–Thompson or
  importance-sampling weights, used by :class:`~itnet_geo.nn.ITConv` during
  training to make each step cheaper.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Union

import torch
from torch import Tensor, nn

from itnet_geo.ops.neighbors import knn_graph
from itnet_geo.typing import PairTensor

#: Importance (sampling probability) rules of :class:`MonteCarlo` (``"given"`` is
#: another name for ``"weight"``: the given quadrature weights).
IMPORTANCES = ("uniform", "weight", "given", "density", "distance")
#: What :class:`MonteCarlo` subsamples: each neighbourhood, or the source nodes.
MODES = ("neighbor", "node")
#: Normalisations of :func:`density_weights`.
NORMALIZATIONS = ("mean", "measure")

# Adaptive bandwidth of density_weights: the neighbourhood radius spans this many
# bandwidths (a Gaussian truncated at 2.5 sigma keeps 96% of its mass in 2-D).
_SUPPORT = 2.5
# Boundary correction of density_weights: a Gaussian kernel beyond this many
# bandwidths carries no mass worth tabulating (exp(-32) of the peak), and the
# tables have this many offsets for a shared support (one per node: fewer).
_TAIL = 8.0
_TABLE_SIZE = 1025
_TABLE_SIZE_PER_NODE = 65
# ... and a neighbourhood's centroid offset counts as a boundary only beyond the
# noise level of this quantile (the share of interior points read as a
# boundary, with its weight lowered, is 1 - this).
_NOISE_QUANTILE = 0.95
# Largest exponent of the distance importance, so that no probability underflows
# to zero (which would bias the estimate).
_MAX_EXPONENT = 30.0


# --------------------------------------------------------------------- helpers
def _segment_sum(src: Tensor, index: Tensor, num: int) -> Tensor:
    return src.new_zeros(num).index_add_(0, index, src)


def _segment_cumsum(src: Tensor, ptr: Tensor) -> Tensor:
    """Inclusive cumulative sum restarting at every CSR segment (src sorted)."""
    total = torch.cumsum(src, 0)
    base = torch.cat([total.new_zeros(1), total])[ptr[:-1]]
    counts = ptr.diff()
    return total - base.repeat_interleave(counts)


def _csr(index: Tensor, num: int) -> tuple[Tensor, Tensor]:
    counts = torch.bincount(index, minlength=num)
    ptr = torch.zeros(num + 1, dtype=torch.long, device=index.device)
    torch.cumsum(counts, 0, out=ptr[1:])
    return counts, ptr


def _as_pair(pos: Union[Tensor, PairTensor]) -> tuple[Tensor, Tensor, bool]:
    if isinstance(pos, Tensor):
        return pos, pos, False
    if isinstance(pos, (tuple, list)) and len(pos) == 2:
        return pos[0], pos[1], True
    raise ValueError("pos must be a Tensor or a (source, target) pair")


def _check_points(name: str, pos: Tensor) -> Tensor:
    if not isinstance(pos, Tensor) or pos.dim() != 2:
        shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f"{name} must have shape (N, D), got {shape}")
    return pos


# ---------------------------------------------------------- quadrature weights
def uniform_weights(pos: Union[Tensor, PairTensor]) -> Tensor:
    r"""Equal quadrature weights :math:`w_j = 1` (the default of ITConv).

    Args:
        pos (Tensor or tuple): Positions :math:`(N, D)`, or a (source, target)
            pair (one weight per source).

    Returns:
        Tensor: :math:`(N,)` ones in the dtype of :obj:`pos`.
    """
    pos_src, _, _ = _as_pair(pos)
    pos_src = _check_points("pos", pos_src)
    return pos_src.new_ones(pos_src.size(0))


def area_weights(pos: Tensor, face: Tensor) -> Tensor:
    r"""Barycentric vertex areas of a triangle mesh as quadrature weights.

    .. math::
        w_v = \tfrac13 \sum_{f \ni v} |f|, \qquad
        \int_S g \, dA \approx \sum_v w_v\, g(p_v)

    The weights sum to the surface area; a vertex on no face gets :math:`0`.
    Same values as :func:`itnet_geo.transforms.mesh_to_graph.vertex_areas`
    (which :class:`~itnet_geo.transforms.MeshToGraph` stores as ``weight``),
    computed in torch on the device of :obj:`pos`.

    Args:
        pos (Tensor): Vertex positions :math:`(N, 3)` (or :math:`(N, 2)` for a
            planar mesh).
        face (LongTensor): Triangles :math:`(3, F)` (PyG's layout).

    Returns:
        Tensor: :math:`(N,)`.

    Example:
        >>> pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
        >>> face = torch.tensor([[0, 1], [1, 3], [2, 2]])
        >>> area_weights(pos, face)
        tensor([0.1667, 0.3333, 0.3333, 0.1667])
    """
    pos = _check_points("pos", pos)
    if pos.size(1) not in (2, 3):
        raise ValueError(
            f"area_weights needs 2-D or 3-D positions, got {pos.size(1)}-D"
        )
    if face.dim() != 2 or face.size(0) != 3:
        raise ValueError(f"face must have shape (3, F), got {tuple(face.shape)}")
    if pos.size(1) == 2:
        pos = torch.cat([pos, pos.new_zeros(pos.size(0), 1)], dim=1)
    v0, v1, v2 = (pos.index_select(0, face[k]) for k in range(3))
    area = 0.5 * torch.linalg.cross(v1 - v0, v2 - v0).norm(dim=-1)
    area = torch.nan_to_num(area, nan=0.0, posinf=0.0)
    out = pos.new_zeros(pos.size(0))
    return out.index_add_(0, face.reshape(-1), (area / 3.0).repeat(3))


def _unique_points(pos: Tensor, batch: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Inverse map to the distinct (batch, position) rows and their counts."""
    key = pos if batch is None else torch.cat([batch.view(-1, 1).to(pos), pos], 1)
    _, inverse, counts = torch.unique(
        key, dim=0, return_inverse=True, return_counts=True
    )
    return inverse, counts


def _intrinsic_dim(
    dist: Tensor, target: Tensor, radius: Tensor, degree: Tensor, ambient: int
) -> int:
    """Levina–Bickel maximum-likelihood intrinsic dimension, pooled over nodes."""
    log_ratio = (radius.index_select(0, target) / dist).log()
    total = _segment_sum(log_ratio, target, radius.numel())
    ok = (degree >= 3) & (total > 0)
    if not bool(ok.any()):
        return ambient
    # MacKay & Ghahramani: average the inverse of the per-node estimates.
    inverse = (total[ok] / (degree[ok] - 2).to(total)).mean()
    dim = int(torch.round(1.0 / inverse).clamp(1, ambient))
    return dim


def _inverse_bias(degree: Tensor, dim: int) -> Tensor:
    r"""First-order bias :math:`\mathbb{E}[N p\, w]` of the adaptive estimate.

    With :math:`h = R / c` and :math:`R` the distance of the farthest of
    :math:`k` neighbours, the :math:`k - 1` nearer ones are uniform in the ball
    and :math:`N p V R^d \sim \Gamma(k, 1)`, so the inverse estimate is biased
    by :math:`\frac{k}{k-1}(1 + \frac{\sigma^2}{k-1}) / (1 + \frac{\beta}{k-1})`
    (the Gamma moment, Jensen's term of the kernel sum with per-term squared
    coefficient of variation :math:`\sigma^2`, and the farthest point's
    share :math:`\beta`).
    """
    half = torch.tensor(dim / 2.0, dtype=torch.float64, device=degree.device)

    def moment(a: float) -> Tensor:  # E[exp(-a U^(2/d))], U ~ U(0, 1)
        a_t = torch.tensor(a, dtype=torch.float64, device=degree.device)
        log = torch.lgamma(half) + torch.special.gammainc(half, a_t).log()
        return half * torch.exp(log - half * a_t.log())

    mean = moment(_SUPPORT**2 / 2)
    cv2 = moment(_SUPPORT**2) / mean**2 - 1.0
    beta = math.exp(-(_SUPPORT**2) / 2) / mean
    k = degree.double().clamp_min(2.0)
    return k / (k - 1) * (1 + cv2 / (k - 1)) / (1 + beta / (k - 1))


def _half_space_tables(support: Tensor, dim: int, num: int) -> tuple[Tensor, Tensor]:
    r"""The kernel of :func:`density_weights` cut by a hyperplane, tabulated.

    The kernel :math:`e^{-\lVert z \rVert^2 / 2}` on the ball
    :math:`\lVert z \rVert \le s` of :math:`\mathbb{R}^d` (lengths in
    bandwidths) has the marginal
    :math:`m(x) \propto e^{-x^2/2}\, P(\chi^2_{d-1} \le s^2 - x^2)` along any
    axis. Cut by the hyperplane :math:`x = a`, the part left keeps the share
    :math:`\beta(a) = \int_{-s}^{a} m \,/ \int_{-s}^{s} m` of the mass and
    its centroid is at :math:`\rho(a) = -\int_{-s}^{a} x\, m \,/
    \int_{-s}^{a} m` from the centre.

    Args:
        support: :math:`s`, shape :math:`(S, 1)`.
        dim: :math:`d`.
        num: Offsets :math:`a` per table, from :math:`s` down to :math:`0`.

    Returns:
        :math:`\rho` (increasing) and :math:`\beta` at those offsets, each
        :math:`(S, \text{num})`.
    """
    span = support.clamp(max=_TAIL)
    x = span * torch.linspace(-1.0, 1.0, 2 * num - 1, dtype=span.dtype).to(span)
    m = torch.exp(-0.5 * x**2)
    if dim > 1:
        half = torch.tensor((dim - 1) / 2.0, dtype=x.dtype, device=x.device)
        m = m * torch.special.gammainc(half, (0.5 * (support**2 - x**2)).clamp_min(0))
    zero = x.new_zeros(x.size(0), 1)
    mass = torch.cat([zero, torch.cumulative_trapezoid(m, x, dim=-1)], dim=-1)
    moment = torch.cat([zero, torch.cumulative_trapezoid(x * m, x, dim=-1)], dim=-1)
    mass, moment = mass[:, num - 1 :].flip(-1), moment[:, num - 1 :].flip(-1)
    rho = -moment / mass
    rho[:, 0] = 0.0  # nothing cut: rounding aside, the centroid is the centre
    beta = mass / mass[:, :1]
    return rho, beta


@functools.lru_cache(maxsize=8)
def _chi2_quantile(dim: int, q: float) -> float:
    """Quantile of the chi-squared distribution with ``dim`` degrees (bisection)."""
    half = torch.tensor(dim / 2.0, dtype=torch.float64)
    lo, hi = 0.0, 10.0 * dim + 100.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        below = float(torch.special.gammainc(half, torch.tensor(mid / 2.0))) < q
        lo, hi = (mid, hi) if below else (lo, mid)
    return 0.5 * (lo + hi)


def _interpolate(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation, row by row when ``xp`` has one row per x."""
    if xp.size(0) == 1:
        index = torch.searchsorted(xp[0], x)
    else:
        index = torch.searchsorted(xp, x.unsqueeze(-1)).squeeze(-1)
    index = index.clamp(1, xp.size(1) - 1).unsqueeze(-1)
    if xp.size(0) == 1:
        xp, fp = xp.expand(x.numel(), -1), fp.expand(x.numel(), -1)
    x0, x1 = xp.gather(1, index - 1), xp.gather(1, index)
    f0, f1 = fp.gather(1, index - 1), fp.gather(1, index)
    frac = ((x.unsqueeze(-1) - x0) / (x1 - x0).clamp_min(1e-300)).clamp(0, 1)
    return (f0 + frac * (f1 - f0)).squeeze(-1)


def _kernel_share_inside(
    offset: Tensor, node: Tensor, h: Tensor, support: Tensor, dim: int
) -> Tensor:
    r"""Share of each node's truncated kernel inside the domain (flat boundary).

    The kernel-weighted centroid :math:`\bar z_n` of the neighbour offsets
    measures how far a boundary cuts into the neighbourhood;
    :func:`_half_space_tables` turns its length into the share of kernel mass
    left. Its noise variance :math:`v_n` (the weighted variance of the
    offsets over the effective number of neighbours) is subtracted beyond the
    :data:`_NOISE_QUANTILE` of :math:`v_n \chi^2_d / d`, the law of
    :math:`\lVert \bar z_n \rVert^2` away from any boundary, so that
    interior points are seldom mistaken for boundary points.

    Args:
        offset: :math:`y_m - y_n` per edge :math:`(E, D)`.
        node: :math:`n` per edge.
        h: Bandwidth per node.
        support: Neighbourhood radius in bandwidths: a number (shape
            :math:`(1,)`) or one per node.
        dim: Intrinsic dimension.
    """
    num = h.numel()
    h = h.clamp_min(torch.finfo(h.dtype).tiny)
    sq = offset.pow(2).sum(-1)
    g = torch.exp(-0.5 * sq / h.index_select(0, node) ** 2)
    total = _segment_sum(g, node, num).clamp_min(torch.finfo(h.dtype).tiny)
    mean = offset.new_zeros(num, offset.size(1)).index_add_(
        0, node, g.unsqueeze(-1) * offset
    ) / total.unsqueeze(-1)
    resid = (offset - mean.index_select(0, node)).pow(2).sum(-1)
    square = _segment_sum(g**2, node, num)
    # Variance of the weighted mean, with the reliability-weights correction.
    noise = _segment_sum(g**2 * resid, node, num) / (total**2 - square).clamp_min(
        torch.finfo(h.dtype).tiny
    )
    level = _chi2_quantile(dim, _NOISE_QUANTILE) / dim
    rho = ((mean.pow(2).sum(-1) - level * noise).clamp_min(0) / h**2).sqrt()
    size = _TABLE_SIZE if support.numel() == 1 else _TABLE_SIZE_PER_NODE
    rho_table, beta_table = _half_space_tables(support.view(-1, 1), dim, size)
    return _interpolate(rho, rho_table, beta_table)


def density_weights(
    pos: Union[Tensor, PairTensor],
    edge_index: Optional[Tensor] = None,
    bandwidth: Optional[Union[float, Tensor]] = None,
    dim: Optional[int] = None,
    normalize: str = "mean",
    batch: Optional[Tensor] = None,
    k: int = 16,
    boundary: bool = False,
) -> Tensor:
    r"""Quadrature weights from an inverse kernel-density estimate.

    A cloud sampled with density :math:`p` (per unit of the measure
    :math:`\mu`) integrates as :math:`\int g\,d\mu \approx \frac1N \sum_j
    g(y_j) / p(y_j)`, so the weight of a sample is :math:`1 / \hat p(y_j)`.
    The density is estimated on the neighbour graph with a leave-one-out
    Gaussian kernel, truncated to the neighbourhood and corrected for the
    truncation:

    .. math::
        \hat p(y_n) = \frac{1}{N\, F_d(R_n / h_n)}
        \sum_{m \in \mathcal{N}(n)} \frac{e^{-\lVert y_m - y_n \rVert^2 / 2h_n^2}}
        {(2\pi)^{d/2} h_n^d},
        \qquad w_n = \frac{1}{b(k_n, d)\, N \hat p(y_n)}

    where :math:`R_n` is the radius of :math:`n`'s neighbourhood,
    :math:`F_d(t) = P(\chi^2_d \le t^2)` the Gaussian mass inside it, :math:`d`
    the *intrinsic* dimension of the sampled set (2 for a surface in 3-D) and
    :math:`h_n = R_n / 2.5` (adaptive: a k-NN graph makes it follow the local
    spacing, which is what keeps the estimate sound where the density varies by
    an order of magnitude) or the given :obj:`bandwidth` (PointConv's fixed
    bandwidth). With the adaptive bandwidth the first-order bias of an inverse
    estimate from :math:`k_n` neighbours, :math:`b(k_n, d) \approx 1 + 1.7/k_n`,
    is divided out, so the weights of a closed surface sampled with k = 16
    sum to its area within about 1–2%; next to the boundary of a domain a
    neighbourhood is one-sided and the weights there come out too large
    (:obj:`boundary=True` corrects them, see below).
    Points given several times are merged before the estimate and share one
    weight, so duplicating a point changes no integral. Nodes with fewer than
    two distinct neighbours get the median weight.

    **Boundary correction.** Within a kernel width of the boundary of the
    sampled domain (the edge of a square, a hole, the rim of an open surface)
    part of a point's kernel lies outside the domain, where there are no
    neighbours: the estimate sees only the share :math:`\beta_n` of the
    kernel that is inside, and the weight comes out :math:`1 / \beta_n` too
    large (up to twice, on the boundary), in a band that narrows as points are
    added, so the total drifts with the resolution. :obj:`boundary=True`
    divides :math:`\hat p(y_n)` by :math:`\beta_n`, taking the boundary as a
    hyperplane at distance :math:`a_n` (lengths in bandwidths, :math:`s =
    R_n / h_n` the kernel's support, 2.5 for the adaptive bandwidth):

    .. math::
        \beta_n = \frac{\int_{-s}^{a_n} m}{\int_{-s}^{s} m},
        \qquad \rho(a_n) = -\frac{\int_{-s}^{a_n} x\, m(x)\, dx}
        {\int_{-s}^{a_n} m} = \hat\rho_n,
        \qquad m(x) = e^{-x^2/2}\, P(\chi^2_{d-1} \le s^2 - x^2)

    where :math:`m` is the kernel's marginal across the hyperplane (the
    :math:`\chi^2` factor is its truncation to the ball) and
    :math:`\rho(a)` the distance from the point to the centroid of the
    kernel mass left. The measured centroid distance is

    .. math::
        \hat\rho_n^2 = \frac{\bigl(\lVert \bar z_n \rVert^2
        - c_d\, v_n\bigr)_+}{h_n^2},
        \qquad \bar z_n = \frac{\sum_m g_{nm}\, (y_m - y_n)}
        {\sum_m g_{nm}},
        \qquad c_d = \frac{\chi^2_{d}(0.95)}{d},

    with :math:`g_{nm}` the kernel and :math:`v_n` the noise variance of
    :math:`\bar z_n` (the weighted variance of the offsets over the effective
    number of neighbours). Away from the boundary :math:`\bar z_n` is noise
    alone, :math:`\lVert \bar z_n \rVert^2 \approx v_n \chi^2_d / d`, and
    :math:`c_d` (3.0 in 2-D) keeps :math:`\beta_n = 1` for most interior
    points: about 92% of uniformly random ones (the model's 95%, less a tail
    a little heavier than :math:`\chi^2`); the others lower the interior
    weights by about 1.5% on average, on a closed surface as well. The
    threshold also leaves points next to the boundary under-corrected (on the
    edge of a square :math:`\beta_n` averages about 0.7 against the true
    0.5), and a corner is treated as one edge. Both this error and the one
    corrected live in a band a few spacings wide, and shrink as points are
    added; the 1.5% does not, so the correction pays off while that band
    holds more than a few percent of the points (in the unit square with
    k = 16 the error of the total falls from 5–6% to at most 2% at 2,000
    points, from 4% to at most 0.5% at 4,000). The noise model is that of
    random points: on a lattice the centroid is exact and the correction
    smaller than it could be (with k = 12 on a square lattice, none). A
    density that changes sharply across a neighbourhood also shifts
    :math:`\bar z_n` and is partly read as a boundary.

    For bipartite input (a ``(source, target)`` pair of positions) the
    integration points are the sources: the density of the source cloud is
    estimated on its own k-NN graph and one weight per source is returned.

    Args:
        pos (Tensor or tuple): Positions :math:`(N, D)`, or a (source, target)
            pair.
        edge_index (LongTensor, optional): Neighbour graph, row 0 the neighbour
            :math:`m`, row 1 the node :math:`n` (as :func:`~itnet_geo.ops.knn_graph`
            and :func:`~itnet_geo.ops.radius_graph` build it). :obj:`None` builds a
            k-NN graph with :obj:`k` neighbours. (default: :obj:`None`)
        bandwidth (float or Tensor, optional): Fixed kernel bandwidth (a number
            or one per node); :obj:`None` for the adaptive one. (default:
            :obj:`None`)
        dim (int, optional): Intrinsic dimension :math:`d`; :obj:`None`
            estimates it from the neighbour distances (Levina–Bickel maximum
            likelihood, rounded; meant for k-NN and radius graphs — pass it for
            other graphs). (default: :obj:`None`)
        normalize (str, optional): ``"mean"``: weights have mean 1 (per graph),
            the scale of :obj:`weight=None`; ``"measure"``: weights sum to the
            estimated measure of the domain (e.g. the area of a surface), so
            :math:`\sum_n w_n g(y_n)` estimates :math:`\int g \, d\mu`.
            (default: :obj:`"mean"`)
        batch (LongTensor, optional): Batch vector (of the sources for
            bipartite input); each graph is normalised on its own.
            (default: :obj:`None`)
        k (int, optional): Neighbours of the k-NN graph built when
            :obj:`edge_index` is :obj:`None` or the input is bipartite.
            (default: :obj:`16`)
        boundary (bool, optional): Correct the weights of points near the
            boundary of the sampled domain for the share of their kernel that
            lies outside it (see above). (default: :obj:`False`)

    Returns:
        Tensor: :math:`(N,)` (:math:`(N_s,)` for bipartite input), in the dtype
        of :obj:`pos`.

    Example:
        >>> from itnet_geo.ops import knn_graph
        >>> pos = torch.randn(500, 3)
        >>> pos = pos / pos.norm(dim=1, keepdim=True)  # points on a sphere
        >>> w = density_weights(pos, knn_graph(pos, k=16))
        >>> w.shape, round(float(w.mean()), 4)
        (torch.Size([500]), 1.0)

        With a boundary: points in the unit square, whose area is 1.

        >>> pos = torch.rand(2000, 2, generator=torch.Generator().manual_seed(0))
        >>> edge_index = knn_graph(pos, k=16)
        >>> w = density_weights(pos, edge_index, normalize="measure")
        >>> w_b = density_weights(pos, edge_index, normalize="measure", boundary=True)
        >>> round(float(w.sum()), 2), round(float(w_b.sum()), 2)
        (1.07, 1.02)
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"unknown normalize {normalize!r}; expected one of {NORMALIZATIONS}"
        )
    pos_src, _, bipartite = _as_pair(pos)
    pos_src = _check_points("pos", pos_src)
    num = pos_src.size(0)
    if batch is not None and batch.shape != (num,):
        raise ValueError(f"batch must have shape ({num},), got {tuple(batch.shape)}")
    if dim is not None and dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    if num == 0:
        return pos_src.new_zeros(0)
    if edge_index is None or bipartite:
        edge_index = knn_graph(pos_src.detach(), k=k, batch=batch)
    if edge_index.dim() != 2 or edge_index.size(0) != 2:
        raise ValueError(
            f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}"
        )
    if edge_index.numel() > 0 and int(edge_index.max()) >= num:
        raise ValueError(f"edge_index refers to nodes beyond the {num} points given")

    p = pos_src.detach().double()
    inverse, counts = _unique_points(p, batch)
    num_u = counts.numel()
    upos = torch.zeros(num_u, p.size(1), dtype=p.dtype, device=p.device)
    upos[inverse] = p
    # The graph on distinct points: merged endpoints, no self-loops, no repeats.
    nbr, node = inverse[edge_index[0]], inverse[edge_index[1]]
    keep = nbr != node
    key = torch.unique(node[keep] * num_u + nbr[keep])
    node, nbr = key // num_u, key % num_u

    dist = (upos[nbr] - upos[node]).norm(dim=-1)
    degree = torch.bincount(node, minlength=num_u)
    radius = p.new_zeros(num_u).scatter_reduce(0, node, dist, "amax")
    if dim is None:
        dim = _intrinsic_dim(dist, node, radius, degree, p.size(1))
    if bandwidth is None:
        h = radius / _SUPPORT
    else:
        h = torch.as_tensor(bandwidth, dtype=p.dtype, device=p.device)
        if h.dim() == 1:
            if h.numel() != num:
                raise ValueError(f"bandwidth must be a number or have shape ({num},)")
            h = p.new_zeros(num_u).index_copy_(0, inverse, h)
        h = h.expand(num_u)
        if bool((h <= 0).any()):
            raise ValueError("bandwidth must be positive")
    h_g = h.clamp_min(torch.finfo(p.dtype).tiny).index_select(0, node)
    log_kernel = -0.5 * (dist / h_g) ** 2 - dim * (
        h_g.log() + 0.5 * math.log(2 * math.pi)
    )
    kde = _segment_sum(log_kernel.exp(), node, num_u)
    inside = torch.special.gammainc(
        torch.tensor(dim / 2.0, dtype=p.dtype, device=p.device),
        0.5 * (radius / h.clamp_min(torch.finfo(p.dtype).tiny)) ** 2,
    )
    if boundary:
        if bandwidth is None:
            support = p.new_full((1,), _SUPPORT)
        else:
            support = (radius / h).clamp_min(1e-3)
        offset = upos.index_select(0, nbr) - upos.index_select(0, node)
        inside = inside * _kernel_share_inside(offset, node, h, support, dim)
    if batch is not None:
        graph_u = p.new_zeros(num_u, dtype=torch.long).scatter_(0, inverse, batch)
        num_graphs = int(batch.max()) + 1
        sizes = torch.bincount(graph_u, minlength=num_graphs).to(p)
        size_u = sizes.index_select(0, graph_u)
    else:
        size_u = p.new_full((num_u,), float(num_u))
    density = kde / (size_u * inside)
    valid = (degree > 1) & (density > 0) & torch.isfinite(density)
    if bandwidth is None:
        density = density * _inverse_bias(degree, dim)
    weight_u = torch.where(valid, 1.0 / (size_u * density).where(valid, 1.0), torch.nan)
    if not bool(valid.any()):
        if normalize == "measure":
            raise ValueError("cannot estimate the measure: no point has neighbours")
        weight_u = p.new_ones(num_u)
    elif not bool(valid.all()):
        weight_u = torch.where(valid, weight_u, weight_u[valid].median())

    weight = weight_u.index_select(0, inverse) / counts.index_select(0, inverse).to(p)
    if normalize == "mean":
        if batch is None:
            weight = weight / weight.mean()
        else:
            total = _segment_sum(weight, batch, num_graphs)
            nodes = torch.bincount(batch, minlength=num_graphs).to(p)
            mean = total / nodes.clamp_min(1)
            weight = weight / mean.index_select(0, batch)
    return weight.to(pos_src.dtype)


# ----------------------------------------------------------------- Monte Carlo
def _inclusion_probabilities(
    importance: Tensor, segment: Tensor, size: Tensor, num_segments: int
) -> tuple[Tensor, Tensor]:
    r"""Inclusion probabilities proportional to size, capped at one.

    :math:`\pi_e = \min(1, c_s a_e)` with :math:`c_s` such that the
    :math:`\pi` of each segment sum to its sample size (items whose share would
    exceed one are taken with certainty and the rest of the budget is spread
    over the others, repeated until no share exceeds one).

    Returns:
        The inclusion probabilities and the mask of certain items.
    """
    positive = importance > 0
    available = _segment_sum(positive.to(importance), segment, num_segments)
    size = torch.minimum(size.to(importance), available)
    certain = torch.zeros_like(positive)
    while True:
        free = torch.where(certain, 0.0, importance)
        free_mass = _segment_sum(free, segment, num_segments)
        budget = size - _segment_sum(certain.to(importance), segment, num_segments)
        scale = budget / free_mass.where(free_mass > 0, 1.0)
        share = free * scale.index_select(0, segment)
        newly = (~certain) & positive & (share >= 1.0 - 1e-9)
        if not bool(newly.any()):
            break
        certain = certain | newly
    return torch.where(certain, 1.0, share), certain


def _systematic(prob: Tensor, certain: Tensor, ptr: Tensor, uniform: Tensor) -> Tensor:
    r"""Systematic sampling with unequal probabilities (Madow), per segment.

    Items of a segment are laid end to end on :math:`[0, n_s)` with lengths
    :math:`\pi_e` (the certain ones aside); the points :math:`u_s + t`,
    :math:`t = 0, 1, \dots`, pick the items they fall in. Item :math:`e` is
    picked with probability exactly :math:`\pi_e \le 1` and exactly
    :math:`\sum_e \pi_e` items are picked.

    Args:
        prob: :math:`\pi` per item, items sorted by segment.
        certain: Items taken with certainty.
        ptr: CSR pointer of the segments.
        uniform: One :math:`U(0, 1)` per segment.

    Returns:
        Mask of the picked items.
    """
    length = torch.where(certain, 0.0, prob)
    end = _segment_cumsum(length, ptr)
    u = uniform.repeat_interleave(ptr.diff())
    hits = torch.ceil(end - u) - torch.ceil(end - length - u)
    return certain | (hits > 0)


def _restore_order(kept: Tensor, factor: Tensor, num: int) -> tuple[Tensor, Tensor]:
    """Kept edge ids in increasing order, with their factors, in O(E)."""
    full = torch.zeros(num, dtype=factor.dtype, device=factor.device)
    full[kept] = factor
    mask = torch.zeros(num, dtype=torch.bool, device=kept.device)
    mask[kept] = True
    index = mask.nonzero().view(-1)
    return index, full.index_select(0, index)


class MonteCarlo(nn.Module):
    r"""Unbiased Monte Carlo subsampling of the kernel integral's sum.

    For target :math:`i` the layer evaluates
    :math:`S_i = \sum_{j \in \mathcal{N}(i)} w_{ij}\, g_{ij}` with
    :math:`g_{ij} = \kappa_{ij} \odot V f_j`. This module keeps a random subset
    of the terms and reweights them so that the estimate stays unbiased,
    :math:`\mathbb{E}[\hat S_i] = S_i`:

    * without replacement (default), :math:`m_i` distinct neighbours with
      inclusion probabilities :math:`\pi_{ij} = \min(1, c_i q_{ij})`,
      :math:`\sum_j \pi_{ij} = m_i` (proportional to the importance, capped at
      one), drawn by systematic sampling in random order; each kept term gets the
      Horvitz–Thompson weight

      .. math::
          \hat S_i = \sum_{j \in \mathcal{S}_i} \frac{w_{ij}}{\pi_{ij}}\, g_{ij},
          \qquad
          \mathbb{E}[\hat S_i] = \sum_j \pi_{ij} \frac{w_{ij}}{\pi_{ij}} g_{ij}
          = S_i;

    * with replacement (:obj:`replace=True`), :math:`m_i` independent draws
      :math:`j_1, \dots, j_{m_i} \sim q_i`: the importance-sampling estimate
      :math:`\hat S_i = \frac{1}{m_i} \sum_t w_{ij_t} g_{ij_t} / q_{ij_t}`; an
      edge drawn :math:`c_{ij}` times is kept once with weight
      :math:`c_{ij} w_{ij} / (m_i q_{ij})`, and
      :math:`\mathbb{E}[c_{ij}] = m_i q_{ij}`.

    The sampling probabilities :math:`q_{ij} \propto a_{ij}` follow
    :obj:`importance`:

    * ``"uniform"``: :math:`a_{ij} = 1`;
    * ``"weight"`` (or ``"given"``): :math:`a_{ij} = |w_{ij}|`, the given
      quadrature weight. Where a cloud is sampled unevenly, density weights
      vary across a neighbourhood and uniform subsampling wastes draws on the
      many light samples of the dense side; with :math:`q \propto w` every
      draw carries the same share of the measure (the estimate is exact when
      :math:`g` is constant);
    * ``"density"``: :math:`a_{ij} = \omega_j`, the inverse-density weight of
      the source estimated from the source positions
      (:func:`density_weights` on their own k-NN graph), whatever weights the
      sum carries: samples from sparse regions, each standing for more of
      the domain, are drawn more often, so the kept samples spread by area
      rather than by count (in ``"node"`` mode the dense regions are thinned
      most). With density quadrature weights this is ``"weight"`` without
      handing the weights over; with other weights (or none) it is still
      unbiased, but lowers the variance only where the terms follow the
      measure. The k-NN graph does not know a batch's clouds apart: for a
      batch pass ``density_weights(..., batch=batch)`` as the layer's weight
      and use ``"weight"``. Needs positions;
    * ``"distance"``: :math:`a_{ij} = |w_{ij}|\,
      e^{-\lVert p_j - p_i \rVert^2 / 2h_i^2}`, with :math:`h_i` the given
      :obj:`bandwidth` or the root-mean-square neighbour distance of target
      :math:`i` — near neighbours, where smooth kernels are large, are drawn
      more often; with the default :math:`h_i` the probabilities within a
      neighbourhood differ by a bounded factor (about :math:`e` for a
      uniform 2-D ball), so the variance can never blow up. Needs positions.

    In ``"neighbor"`` mode every target keeps
    :math:`m_i = \lceil \text{ratio} \cdot \deg(i) \rceil` (or
    :math:`\min(\text{num}, \deg(i))`) of its edges. In ``"node"`` mode one
    random subset of :math:`m = \lceil \text{ratio} \cdot N_s \rceil` (or
    :obj:`num`) source nodes (of those with edges) is kept, with the same
    reweighting per source (importance ``"weight"`` uses the mean
    :math:`|w|` of a source's edges); every target sees the same subset.

    ``ratio=1.0`` (and no :obj:`num`) returns the inputs unchanged, so the
    layer is exactly the deterministic one. ``"mean"`` and ``"softmax"``
    measures divide by the (reweighted) mass, which gives a consistent ratio
    estimate; ``"max"`` ignores weights and simply takes the maximum over the
    kept neighbours.

    :class:`~itnet_geo.nn.ITConv` calls the module in training mode only, so
    ``model.eval()`` evaluates the exact sum. Called directly, the module
    passes its inputs through when not training unless
    :obj:`train_only=False`.

    Args:
        ratio (float, optional): Fraction of each neighbourhood (or of the
            source nodes) kept, in :math:`(0, 1]`. (default: :obj:`0.5`)
        importance (str, optional): ``"uniform"``, ``"weight"`` (or
            ``"given"``), ``"density"`` or ``"distance"``.
            (default: :obj:`"uniform"`)
        mode (str, optional): ``"neighbor"`` or ``"node"``.
            (default: :obj:`"neighbor"`)
        num (int, optional): Fixed number of neighbours per target (or of
            source nodes); overrides :obj:`ratio`. (default: :obj:`None`)
        generator (torch.Generator, optional): Source of randomness; a seeded
            generator makes draws reproducible. (default: :obj:`None`, the
            global generator)
        train_only (bool, optional): Pass inputs through in :meth:`eval` mode.
            (default: :obj:`True`)
        replace (bool, optional): Draw with replacement (importance sampling)
            instead of without (Horvitz–Thompson). (default: :obj:`False`)
        bandwidth (float, optional): :math:`h` of the ``"distance``
            importance. (default: :obj:`None`, per-target adaptive)

    Shapes:
        - **input:** edge indices :math:`(2, E)`, quadrature weights
          :math:`(E,)` or :obj:`None`, optional positions
          :math:`((N_s, D), (N_t, D))`
        - **output:** edge indices :math:`(2, E')` (a subset, in the input
          order), weights :math:`(E',)`

    Example:
        >>> from itnet_geo.nn import ITConv
        >>> from itnet_geo.ops import knn_graph
        >>> pos, x = torch.randn(100, 3), torch.randn(100, 16)
        >>> edge_index = knn_graph(pos, k=16)
        >>> mc = MonteCarlo(ratio=0.25, generator=torch.Generator().manual_seed(0))
        >>> sub_index, sub_weight = mc(edge_index, None, 100, 100)
        >>> sub_index.shape, float(sub_weight[0])
        (torch.Size([2, 400]), 4.0)
        >>> conv = ITConv(16, 32, mc=mc)
        >>> conv(x, pos, edge_index).shape  # training mode: a random subsample
        torch.Size([100, 32])
    """

    def __init__(
        self,
        ratio: float = 0.5,
        importance: str = "uniform",
        mode: str = "neighbor",
        num: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        train_only: bool = True,
        replace: bool = False,
        bandwidth: Optional[float] = None,
    ):
        super().__init__()
        if not 0.0 < float(ratio) <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if importance not in IMPORTANCES:
            raise ValueError(
                f"unknown importance {importance!r}; expected one of {IMPORTANCES}"
            )
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if num is not None and (int(num) != num or num < 1):
            raise ValueError(f"num must be a positive integer, got {num}")
        if importance == "distance" and mode == "node":
            raise ValueError(
                "importance='distance' depends on the target: use mode='neighbor'"
            )
        if bandwidth is not None and not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive, got {bandwidth}")
        self.ratio = float(ratio)
        self.importance = "weight" if importance == "given" else importance
        self.mode = mode
        self.num = None if num is None else int(num)
        self.generator = generator
        self.train_only = train_only
        self.replace = replace
        self.bandwidth = bandwidth

    # ------------------------------------------------------------- randomness
    def _rand(self, n: int, device: torch.device) -> Tensor:
        gen = self.generator
        if gen is None:
            return torch.rand(n, dtype=torch.float64, device=device)
        out = torch.rand(n, dtype=torch.float64, generator=gen, device=gen.device)
        return out.to(device)

    def _randint(self, n: int, high: int, device: torch.device) -> Tensor:
        gen = self.generator
        if gen is None:
            return torch.randint(high, (n,), device=device)
        out = torch.randint(high, (n,), generator=gen, device=gen.device)
        return out.to(device)

    def _sample_sizes(self, population: Tensor) -> Tensor:
        if self.num is not None:
            return population.clamp(max=self.num)
        size = torch.ceil(population.double() * self.ratio - 1e-9).long()
        return torch.minimum(size.clamp_min(1), population)

    # -------------------------------------------------------------- interface
    def forward(
        self,
        edge_index: Tensor,
        edge_weight: Optional[Tensor] = None,
        num_src: Optional[int] = None,
        num_dst: Optional[int] = None,
        pos: Optional[PairTensor] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Draw a subsample of the edges.

        Args:
            edge_index: :math:`(2, E)`, row 0 the source :math:`j`, row 1 the
                target :math:`i`.
            edge_weight: Quadrature weight per edge :math:`(E,)`, or :obj:`None`
                for weight one.
            num_src: Number of source nodes (inferred if :obj:`None`).
            num_dst: Number of target nodes (inferred if :obj:`None`).
            pos: (source, target) positions, needed by ``"distance"`` and
                ``"density"``.

        Returns:
            The kept edges and their weights (quadrature weight times the
            Monte Carlo factor); the inputs themselves when nothing is dropped.
        """
        if self.train_only and not self.training:
            return edge_index, edge_weight
        if self.num is None and self.ratio >= 1.0:
            return edge_index, edge_weight
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"edge_index must have shape (2, E), got {tuple(edge_index.shape)}"
            )
        num_edges = edge_index.size(1)
        if edge_weight is not None and edge_weight.shape != (num_edges,):
            raise ValueError(
                f"edge_weight must have shape ({num_edges},), got "
                f"{tuple(edge_weight.shape)}"
            )
        if num_edges == 0:
            return edge_index, edge_weight
        if num_src is None:
            num_src = int(edge_index[0].max()) + 1
        if num_dst is None:
            num_dst = int(edge_index[1].max()) + 1
        if self.importance in ("distance", "density") and pos is None:
            raise ValueError(
                f"importance={self.importance!r} needs positions: call with "
                "pos=(pos_src, pos_dst)"
            )
        if self.mode == "neighbor":
            kept, factor = self._neighbor(edge_index, edge_weight, num_dst, pos)
        else:
            kept, factor = self._node(edge_index, edge_weight, num_src, pos)
        if kept is None:
            return edge_index, edge_weight
        dtype = (
            edge_weight.dtype
            if edge_weight is not None
            else pos[0].dtype
            if pos is not None
            else torch.get_default_dtype()
        )
        weight = factor.to(dtype)
        if edge_weight is not None:
            weight = edge_weight.index_select(0, kept) * weight
        return edge_index.index_select(1, kept), weight

    # ----------------------------------------------------------- importances
    def _edge_importance(
        self,
        edge_index: Tensor,
        edge_weight: Optional[Tensor],
        pos: Optional[PairTensor],
    ) -> Tensor:
        device = edge_index.device
        num_edges = edge_index.size(1)
        if self.importance == "uniform" or (
            self.importance == "weight" and edge_weight is None
        ):
            return torch.ones(num_edges, dtype=torch.float64, device=device)
        base = (
            torch.ones(num_edges, dtype=torch.float64, device=device)
            if edge_weight is None
            else edge_weight.detach().double().abs()
        )
        if self.importance == "weight":
            return base
        assert pos is not None
        if self.importance == "density":
            return self._source_density(pos[0]).index_select(0, edge_index[0])
        pos_src, pos_dst = pos
        src, dst = edge_index
        sq = (
            (
                pos_src.detach().index_select(0, src)
                - pos_dst.detach().index_select(0, dst)
            )
            .double()
            .pow(2)
            .sum(-1)
        )
        if self.bandwidth is not None:
            h2 = torch.full_like(sq, self.bandwidth**2)
        else:
            num_dst = pos_dst.size(0)
            mean_sq = _segment_sum(sq, dst, num_dst) / torch.bincount(
                dst, minlength=num_dst
            ).clamp_min(1).to(sq)
            h2 = mean_sq.index_select(0, dst)
        exponent = (sq / (2 * h2.clamp_min(torch.finfo(sq.dtype).tiny))).clamp(
            max=_MAX_EXPONENT
        )
        return base * torch.exp(-exponent)

    @staticmethod
    def _source_density(pos_src: Tensor) -> Tensor:
        """Inverse-density weight of every source (positive, mean one)."""
        num = pos_src.size(0)
        if num < 3:  # too few points for a density: every source alike
            return torch.ones(num, dtype=torch.float64, device=pos_src.device)
        pos = pos_src.detach().double()
        return density_weights(pos, k=min(16, num - 1)).clamp_min(1e-12)

    # ---------------------------------------------------------------- drawing
    def _draw(
        self, importance: Tensor, segment: Tensor, ptr: Tensor, size: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Draw within sorted segments; returns picked positions and factors."""
        num_segments = ptr.numel() - 1
        equal = self.importance == "uniform" and self.mode == "neighbor"
        if not equal:
            # A segment without positive importance (all its weights are zero,
            # so are its terms) is sampled uniformly.
            total = _segment_sum(importance, segment, num_segments)
            empty = (total <= 0).index_select(0, segment)
            importance = torch.where(empty, 1.0, importance)
        total = _segment_sum(importance, segment, num_segments)
        if not self.replace:
            if equal:  # pi = m / deg, nothing to cap
                prob = (size / total.clamp_min(1)).index_select(0, segment)
                certain = prob >= 1
            else:
                prob, certain = _inclusion_probabilities(
                    importance, segment, size, num_segments
                )
            picked = _systematic(
                prob, certain, ptr, self._rand(num_segments, segment.device)
            )
            index = picked.nonzero().view(-1)
            return index, 1.0 / prob.index_select(0, index)
        q = importance / total.index_select(0, segment)
        cdf = _segment_cumsum(q, ptr)
        last = ptr[1:][ptr.diff() > 0] - 1
        cdf[last] = 1.0
        keys = segment.double() + cdf
        draw_segment = torch.repeat_interleave(
            torch.arange(num_segments, device=segment.device), size
        )
        u = self._rand(draw_segment.numel(), segment.device)
        hit = torch.searchsorted(keys, draw_segment.double() + u, right=True)
        hit = torch.minimum(
            torch.maximum(hit, ptr[draw_segment]), ptr[draw_segment + 1] - 1
        )
        count = torch.bincount(hit, minlength=importance.numel())
        index = count.nonzero().view(-1)
        m = size.index_select(0, segment.index_select(0, index)).double()
        return index, count.index_select(0, index).double() / (
            m * q.index_select(0, index)
        )

    def _neighbor(
        self,
        edge_index: Tensor,
        edge_weight: Optional[Tensor],
        num_dst: int,
        pos: Optional[PairTensor],
    ) -> tuple[Optional[Tensor], Tensor]:
        target = edge_index[1]
        degree, ptr = _csr(target, num_dst)
        size = self._sample_sizes(degree)
        importance = self._edge_importance(edge_index, edge_weight, pos)
        if bool((size == degree).all()) and (
            self.replace is False and bool((importance > 0).all())
        ):
            return None, importance  # every edge is kept: exact
        if self.replace:
            order = torch.argsort(target, stable=True)
        else:  # grouped by target, in random order inside each neighbourhood
            key = (target << 31) | self._randint(target.numel(), 2**31, target.device)
            order = torch.argsort(key)
        segment = target.index_select(0, order)
        picked, factor = self._draw(
            importance.index_select(0, order), segment, ptr, size
        )
        return _restore_order(order.index_select(0, picked), factor, target.numel())

    def _node(
        self,
        edge_index: Tensor,
        edge_weight: Optional[Tensor],
        num_src: int,
        pos: Optional[PairTensor],
    ) -> tuple[Optional[Tensor], Tensor]:
        source = edge_index[0]
        device = source.device
        out_degree = torch.bincount(source, minlength=num_src)
        active = out_degree > 0
        if self.importance == "weight" and edge_weight is not None:
            mass = _segment_sum(edge_weight.detach().double().abs(), source, num_src)
            importance = mass / out_degree.clamp_min(1).double()
        elif self.importance == "density":
            assert pos is not None
            importance = self._source_density(pos[0]) * active.double()
        else:
            importance = active.double()
        population = active.sum().view(1)
        size = self._sample_sizes(population)
        if (
            bool(size >= population)
            and not self.replace
            and bool((importance[active] > 0).all())
        ):
            return None, importance  # every source is kept: exact
        # One segment holding every source node, in random order.
        order = torch.argsort(self._randint(num_src, 2**62, device))
        segment = torch.zeros(num_src, dtype=torch.long, device=device)
        ptr = torch.tensor([0, num_src], device=device)
        picked, factor = self._draw(
            importance.index_select(0, order), segment, ptr, size
        )
        node_factor = torch.zeros(num_src, dtype=torch.float64, device=device)
        node_factor[order.index_select(0, picked)] = factor
        edge_factor = node_factor.index_select(0, source)
        kept = (edge_factor > 0).nonzero().view(-1)
        return kept, edge_factor.index_select(0, kept)

    def extra_repr(self) -> str:
        size = f"num={self.num}" if self.num is not None else f"ratio={self.ratio}"
        return (
            f"{size}, importance={self.importance}, mode={self.mode}, "
            f"replace={self.replace}"
        )


__all__ = [
    "MonteCarlo",
    "uniform_weights",
    "density_weights",
    "area_weights",
    "IMPORTANCES",
    "MODES",
    "NORMALIZATIONS",
]
