r"""Operator learning on irregular 2-D domains, with reference solutions.

Each problem is a random domain :math:`\Omega \subset [-1, 1]^2` (a disc with
holes, an L-shape or a star-shaped polygon), a random input function :math:`f`
(a sum of Gaussian bumps and a low Fourier mode) and the output :math:`u = T f`
of a known operator, computed once on a fine grid:

* ``"smoothing"``: :math:`u(x) = \int_\Omega G_\sigma(x - y) f(y)\, dy`, a
  Gaussian integral operator restricted to the domain (it loses mass near the
  boundary), by the midpoint rule on a fine grid with the cut cells' covered
  fractions (an error of order :math:`h^2`) and a cubic interpolation;
* ``"poisson"``: :math:`-\Delta u = f` in :math:`\Omega`, :math:`u = 0` on
  :math:`\partial\Omega`, by the Shortley–Weller finite-difference scheme (the
  boundary cuts each grid line where it really does, second order) and a
  sparse direct solve.

The same problems can be sampled with any number of points, uniformly or with
a density that varies ten-fold across the domain, which is what a
resolution-invariant operator must not care about.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from matplotlib.path import Path as _MplPath
from scipy.ndimage import map_coordinates
from scipy.signal import fftconvolve
from scipy.sparse.linalg import spsolve
from torch.utils.data import Dataset
from torch_geometric.data import Data

#: Domain families of :func:`make_domain`.
DOMAIN_KINDS = ("disc", "lshape", "polygon")
#: Operators of :class:`IrregularOperatorTask`.
OPERATORS = ("smoothing", "poisson")
#: Point samplings of :class:`IrregularOperatorTask`.
SAMPLINGS = ("uniform", "nonuniform")

_SUPERSAMPLE = 8  # sub-points per side of a cut cell for its covered fraction
_BISECTIONS = 40  # steps locating the boundary on a grid line
_MIN_CUT = 1e-3  # smallest Shortley-Weller arm, as a fraction of h
_SAMPLING_CODE = {s: i for i, s in enumerate(SAMPLINGS)}


def _circle(center: tuple[float, float], radius: float, num: int = 128) -> np.ndarray:
    angle = np.linspace(0.0, 2 * math.pi, num, endpoint=False)
    return np.column_stack(
        [center[0] + radius * np.cos(angle), center[1] + radius * np.sin(angle)]
    )


def _ring_area(ring: np.ndarray) -> float:
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _in_ring(
    ring: np.ndarray, points: np.ndarray, candidates: np.ndarray
) -> np.ndarray:
    """Which candidate points lie inside the ring (others are False)."""
    lo, hi = ring.min(axis=0), ring.max(axis=0)
    test = candidates & np.all((points >= lo) & (points <= hi), axis=1)
    out = np.zeros(len(points), dtype=bool)
    if test.any():
        out[test] = _MplPath(ring).contains_points(points[test])
    return out


@dataclass(frozen=True)
class Domain:
    r"""A polygonal domain with polygonal holes (circles are 256-gons).

    Args:
        outer (numpy.ndarray): Outer ring :math:`(V, 2)`, counter-clockwise,
            not closed (the last vertex is not the first repeated).
        holes (tuple of numpy.ndarray): Hole rings, each :math:`(V_h, 2)`,
            inside :obj:`outer` and disjoint.
        kind (str): Family name (one of :data:`DOMAIN_KINDS`, or any label).
    """

    outer: np.ndarray
    holes: tuple[np.ndarray, ...] = ()
    kind: str = "polygon"

    @property
    def area(self) -> float:
        """Exact area (shoelace formula), holes subtracted."""
        return abs(_ring_area(self.outer)) - sum(abs(_ring_area(h)) for h in self.holes)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper corner of the bounding box."""
        return self.outer.min(axis=0), self.outer.max(axis=0)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which of the points :math:`(N, 2)` lie inside (a boolean :math:`(N,)`)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        inside = _in_ring(self.outer, points, np.ones(len(points), dtype=bool))
        for hole in self.holes:
            inside &= ~_in_ring(hole, points, inside)
        return inside


def make_domain(kind: str, rng: np.random.Generator) -> Domain:
    r"""One random domain of family :obj:`kind`, inside :math:`[-0.95, 0.95]^2`.

    * ``"disc"``: a disc of radius in :math:`[0.8, 0.95]` with one to three
      circular holes (radii in :math:`[0.12, 0.3]`, kept apart and away from
      the rim);
    * ``"lshape"``: a square minus a corner rectangle, turned by a random
      multiple of 90°;
    * ``"polygon"``: a star-shaped polygon with 5 to 11 vertices at radii in
      :math:`[0.45, 0.95]`.

    Args:
        kind (str): One of :data:`DOMAIN_KINDS`.
        rng (numpy.random.Generator): Source of randomness.

    Example:
        >>> dom = make_domain("lshape", np.random.default_rng(0))
        >>> dom.kind, 1.5 < dom.area < 3.5, bool(dom.contains([[2.0, 0.0]])[0])
        ('lshape', True, False)
    """
    if kind == "disc":
        radius = rng.uniform(0.8, 0.95)
        holes: list[tuple[np.ndarray, float]] = []
        for _ in range(int(rng.integers(1, 4))):
            for _attempt in range(100):
                r = rng.uniform(0.12, 0.3)
                c = rng.uniform(-1.0, 1.0, size=2) * (radius - r - 0.08)
                if np.linalg.norm(c) + r > radius - 0.08:
                    continue
                if all(np.linalg.norm(c - c2) > r + r2 + 0.08 for c2, r2 in holes):
                    holes.append((c, r))
                    break
        return Domain(
            _circle((0.0, 0.0), radius),
            tuple(_circle(tuple(c), r)[::-1] for c, r in holes),
            "disc",
        )
    if kind == "lshape":
        s = rng.uniform(0.85, 0.95)
        cx, cy = rng.uniform(-0.25, 0.35, size=2)
        ring = np.array([[-s, -s], [s, -s], [s, cy], [cx, cy], [cx, s], [-s, s]])
        turn = int(rng.integers(4)) * math.pi / 2
        rot = np.array(
            [[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]]
        )
        return Domain(ring @ rot.T, (), "lshape")
    if kind == "polygon":
        n = int(rng.integers(5, 12))
        angle = 2 * math.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, size=n)) / n
        angle = np.sort(angle + rng.uniform(0, 2 * math.pi))
        radius = rng.uniform(0.45, 0.95, size=n)
        ring = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)])
        return Domain(ring, (), "polygon")
    raise ValueError(f"unknown domain kind {kind!r}; expected one of {DOMAIN_KINDS}")


@dataclass(frozen=True)
class InputFunction:
    r"""A smooth random input function: Gaussian bumps and a Fourier mode.

    .. math::
        f(x) = \sum_k a_k e^{-\lVert x - c_k \rVert^2 / 2 s_k^2}
        + b \cos(\pi\, \omega \cdot x + \phi)

    Args:
        centers (numpy.ndarray): :math:`c_k`, :math:`(K, 2)`.
        widths (numpy.ndarray): :math:`s_k`, :math:`(K,)`.
        amplitudes (numpy.ndarray): :math:`a_k`, :math:`(K,)`.
        mode (numpy.ndarray): :math:`\omega`, :math:`(2,)`.
        mode_amplitude (float): :math:`b`.
        phase (float): :math:`\phi`.
    """

    centers: np.ndarray
    widths: np.ndarray
    amplitudes: np.ndarray
    mode: np.ndarray
    mode_amplitude: float
    phase: float

    @classmethod
    def random(
        cls, rng: np.random.Generator, width_range: tuple[float, float] = (0.08, 0.25)
    ) -> InputFunction:
        """Four to eight bumps in :math:`[-1, 1]^2` and one low Fourier mode."""
        num = int(rng.integers(4, 9))
        return cls(
            centers=rng.uniform(-1.0, 1.0, size=(num, 2)),
            widths=rng.uniform(*width_range, size=num),
            amplitudes=rng.normal(0.0, 1.0, size=num),
            mode=rng.integers(0, 3, size=2).astype(np.float64),
            mode_amplitude=float(rng.normal(0.0, 0.3)),
            phase=float(rng.uniform(0, 2 * math.pi)),
        )

    def __call__(self, points: np.ndarray) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        sq = ((points[:, None, :] - self.centers[None]) ** 2).sum(-1)
        out = (self.amplitudes * np.exp(-sq / (2 * self.widths**2))).sum(-1)
        return out + self.mode_amplitude * np.cos(
            math.pi * points @ self.mode + self.phase
        )


# ------------------------------------------------------------------ the grid
def _grid_axis(grid: int) -> np.ndarray:
    """Cell centres of a uniform grid of :math:`[-1, 1]` with :obj:`grid` cells."""
    return -1.0 + (np.arange(grid) + 0.5) * (2.0 / grid)


def coverage(domain: Domain, grid: int) -> np.ndarray:
    r"""Covered fraction of each cell of a :math:`G \times G` grid of the box.

    The grid divides :math:`[-1, 1]^2`; the result is :math:`(G, G)`, indexed
    ``[ix, iy]``. Cells whose corners agree and that hold no vertex of the
    boundary are taken as wholly in or out; the others (the cut cells) are
    supersampled with :math:`8 \times 8` jittered points (one per stratum).
    """
    h = 2.0 / grid
    centres = _grid_axis(grid)
    corners = np.linspace(-1.0, 1.0, grid + 1)
    kx, ky = np.meshgrid(corners, corners, indexing="ij")
    inside_k = domain.contains(np.column_stack([kx.ravel(), ky.ravel()]))
    inside_k = inside_k.reshape(grid + 1, grid + 1).astype(np.int8)
    votes = (
        inside_k[:-1, :-1] + inside_k[1:, :-1] + inside_k[:-1, 1:] + inside_k[1:, 1:]
    )
    # A cell whose corners agree is whole, unless a vertex of the boundary
    # pokes into it.
    mixed = (votes > 0) & (votes < 4)
    for ring in (domain.outer, *domain.holes):
        cell = np.clip(((ring + 1.0) / h).astype(np.int64), 0, grid - 1)
        mixed[cell[:, 0], cell[:, 1]] = True
    out = (votes == 4).astype(np.float64)
    cut = np.argwhere(mixed)
    if len(cut):
        # Jittered (stratified) sub-points: a regular lattice would make the
        # errors of all cells along an axis-aligned edge add up.
        s = _SUPERSAMPLE
        ox, oy = np.meshgrid(np.arange(s), np.arange(s), indexing="ij")
        strata = np.stack([ox.ravel(), oy.ravel()], 1)  # (s*s, 2)
        jitter = np.random.default_rng(0).uniform(size=(len(cut), s * s, 2))
        sub = ((strata[None] + jitter) / s - 0.5) * h
        base = np.column_stack([centres[cut[:, 0]], centres[cut[:, 1]]])
        pts = (base[:, None, :] + sub).reshape(-1, 2)
        frac = domain.contains(pts).reshape(len(cut), s * s).mean(1)
        out[cut[:, 0], cut[:, 1]] = frac
    return out


def gaussian_smoothing(
    domain: Domain,
    f: InputFunction,
    sigma: float,
    grid: int = 256,
    cover: Optional[np.ndarray] = None,
) -> np.ndarray:
    r"""The restricted Gaussian smoothing on the grid's cell centres.

    .. math::
        u(x) = \int_\Omega \frac{e^{-\lVert x - y \rVert^2 / 2\sigma^2}}
        {2 \pi \sigma^2} f(y)\, dy
        \approx \sum_{c} h^2 \,\mathrm{cov}_c\, G_\sigma(x - y_c) f(y_c)

    (the kernel is truncated at :math:`6\sigma`, where it is below
    :math:`10^{-7}` of its peak).

    Returns:
        numpy.ndarray: :math:`(G, G)`, indexed ``[ix, iy]``.
    """
    h = 2.0 / grid
    if cover is None:
        cover = coverage(domain, grid)
    centres = _grid_axis(grid)
    cx, cy = np.meshgrid(centres, centres, indexing="ij")
    values = f(np.column_stack([cx.ravel(), cy.ravel()])).reshape(grid, grid)
    half = int(math.ceil(6 * sigma / h))
    offs = np.arange(-half, half + 1) * h
    ox, oy = np.meshgrid(offs, offs, indexing="ij")
    kernel = (
        np.exp(-(ox**2 + oy**2) / (2 * sigma**2)) * h * h / (2 * math.pi * sigma**2)
    )
    return fftconvolve(values * cover, kernel, mode="same")


def _boundary_cut(domain: Domain, start: np.ndarray, step: np.ndarray) -> np.ndarray:
    """Fraction t in (0, 1] of each segment start -> start + step where it leaves."""
    lo = np.zeros(len(start))
    hi = np.ones(len(start))
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        inside = domain.contains(start + mid[:, None] * step)
        lo = np.where(inside, mid, lo)
        hi = np.where(inside, hi, mid)
    return np.clip(0.5 * (lo + hi), _MIN_CUT, 1.0)


def poisson_solve(
    domain: Domain, f: InputFunction, grid: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    r"""Solve :math:`-\Delta u = f` in :math:`\Omega`, :math:`u = 0` on the boundary.

    Shortley–Weller finite differences on the :math:`G \times G` grid of cell
    centres of :math:`[-1, 1]^2`: at a node next to the boundary, the arm that
    crosses it is shortened to the crossing (found by bisection), where
    :math:`u = 0`,

    .. math::
        -\partial_{xx} u \approx -\frac{2}{h_E + h_W}
        \Bigl(\frac{u_E - u_P}{h_E} - \frac{u_P - u_W}{h_W}\Bigr),

    which is second-order accurate on curved and polygonal boundaries. Nodes
    outside get the linear extrapolation through the boundary (so that
    interpolation near the boundary stays second order), or zero.

    Returns:
        tuple: :math:`u` on the nodes :math:`(G, G)` (indexed ``[ix, iy]``) and
        the mask of interior nodes.
    """
    h = 2.0 / grid
    centres = _grid_axis(grid)
    cx, cy = np.meshgrid(centres, centres, indexing="ij")
    nodes = np.column_stack([cx.ravel(), cy.ravel()])
    inside = domain.contains(nodes).reshape(grid, grid)
    index = -np.ones((grid, grid), dtype=np.int64)
    num = int(inside.sum())
    index[inside] = np.arange(num)
    ii, jj = np.nonzero(inside)
    rows = index[ii, jj]
    # arms: +x, -x, +y, -y
    dirs = ((1, 0), (-1, 0), (0, 1), (0, -1))
    arm = np.ones((num, 4))
    nbr = -np.ones((num, 4), dtype=np.int64)
    for d, (di, dj) in enumerate(dirs):
        ni, nj = ii + di, jj + dj
        valid = (ni >= 0) & (ni < grid) & (nj >= 0) & (nj < grid)
        ok = np.zeros(num, dtype=bool)
        ok[valid] = inside[ni[valid], nj[valid]]
        nbr[ok, d] = index[ni[ok], nj[ok]]
        cut = ~ok
        if cut.any():
            start = np.column_stack([centres[ii[cut]], centres[jj[cut]]])
            step = np.tile(
                np.array([di, dj], dtype=np.float64) * h, (int(cut.sum()), 1)
            )
            arm[cut, d] = _boundary_cut(domain, start, step)
    ha = arm * h
    coef = np.empty((num, 4))
    for axis in (0, 1):
        p, m = 2 * axis, 2 * axis + 1
        total = ha[:, p] + ha[:, m]
        coef[:, p] = 2.0 / (total * ha[:, p])
        coef[:, m] = 2.0 / (total * ha[:, m])
    diag = coef.sum(1)
    has = nbr >= 0
    r = np.concatenate([rows, np.repeat(rows, 4)[has.ravel()]])
    c = np.concatenate([rows, nbr[has]])
    v = np.concatenate([diag, -coef[has]])
    matrix = sp.csc_matrix((v, (r, c)), shape=(num, num))
    solution = spsolve(matrix, f(nodes[inside.ravel()]))

    u = np.zeros((grid, grid))
    u[inside] = solution
    # Linear extrapolation through the boundary to the outside neighbours.
    total = np.zeros((grid, grid))
    count = np.zeros((grid, grid))
    for d, (di, dj) in enumerate(dirs):
        cut = nbr[:, d] < 0
        ni, nj = ii[cut] + di, jj[cut] + dj
        valid = (ni >= 0) & (ni < grid) & (nj >= 0) & (nj < grid)
        t = arm[cut, d][valid]
        up = solution[cut][valid]
        np.add.at(total, (ni[valid], nj[valid]), up * (1.0 - 1.0 / t))
        np.add.at(count, (ni[valid], nj[valid]), 1.0)
    outside = (~inside) & (count > 0)
    u[outside] = total[outside] / count[outside]
    return u, inside


def _interpolate(values: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    """Spline interpolation of cell-centre values of :math:`[-1, 1]^2` at points."""
    grid = values.shape[0]
    coords = (points.T + 1.0) * (grid / 2.0) - 0.5
    return map_coordinates(values, coords, order=order, mode="nearest")


# ---------------------------------------------------------------- the dataset
@dataclass
class _Problem:
    domain: Domain
    f: InputFunction
    u_grid: np.ndarray  # (G, G), cell centres of [-1, 1]^2
    order: int  # interpolation order of u_grid
    cover: np.ndarray  # (Gc, Gc) covered fractions, for sampling densities


class IrregularOperatorTask(Dataset):
    r"""Seeded operator-learning problems on random irregular 2-D domains.

    Problem :math:`i` is a random domain (:func:`make_domain`, the families
    taken in turn), a random input :math:`f` (:class:`InputFunction`) and
    :math:`u = T f` for the chosen operator, solved once on a fine grid:

    .. math::
        \text{smoothing: } u(x) = \int_\Omega G_\sigma(x - y) f(y)\, dy,
        \qquad
        \text{poisson: } -\Delta u = f \text{ in } \Omega,\; u|_{\partial\Omega} = 0

    Item :math:`i` samples :obj:`num_points` points of problem :math:`i` —
    uniformly, or (``"nonuniform"``) with density
    :math:`q(x) \propto 10^{(d \cdot x - t_0) / (t_1 - t_0)}` along a random
    direction :math:`d`, so the density varies ten-fold across the domain — and
    returns :class:`~torch_geometric.data.Data` with

    * ``pos`` :math:`(N, 2)`, ``x`` :math:`= f` :math:`(N, 1)`, ``y`` :math:`= u`
      :math:`(N, 1)`;
    * ``weight`` :math:`(N,)`: the exact quadrature (importance) weight of the
      sampling, :math:`w_j = 1 / (N\, q(x_j))` with :math:`\int_\Omega q = 1`,
      so :math:`\sum_j w_j\, g(x_j)` is an unbiased estimate of
      :math:`\int_\Omega g` (:math:`|\Omega| / N` when uniform) — for the
      metric; a model should estimate its own weights from the points;
    * ``area`` :math:`(1,)`: :math:`|\Omega|`.

    Everything is deterministic in :obj:`seed`; the points also in
    (:obj:`num_points`, :obj:`sampling`, :obj:`point_seed`), so
    :meth:`resample` gives the *same* problems at another resolution or
    sampling. Reference solutions are computed on first access and shared by
    resampled views.

    The reference is accurate to about :math:`10^{-4}` (smoothing, midpoint
    rule with cut-cell fractions) and :math:`10^{-3}` (Poisson,
    Shortley–Weller) relative :math:`L^2` at the default grids; the tests
    check both against exact solutions and finer grids.

    Args:
        num_samples (int, optional): Number of problems. (default: :obj:`64`)
        num_points (int, optional): Points per sample. (default: :obj:`1024`)
        operator (str, optional): ``"smoothing"`` or ``"poisson"``.
            (default: :obj:`"smoothing"`)
        sampling (str, optional): ``"uniform"`` or ``"nonuniform"``.
            (default: :obj:`"uniform"`)
        domains (tuple of str, optional): Domain families, used in turn.
            (default: :obj:`("disc", "lshape", "polygon")`)
        sigma (float, optional): Width of the smoothing kernel.
            (default: :obj:`0.1`)
        density_ratio (float, optional): Largest over smallest sampling density
            of ``"nonuniform"``. (default: :obj:`10.0`)
        grid (int, optional): Cells per side of the reference grid of
            :math:`[-1, 1]^2`; :obj:`None` for 256 (smoothing) or 128
            (Poisson). (default: :obj:`None`)
        seed (int, optional): Seed of the problems. (default: :obj:`0`)
        point_seed (int, optional): Seed of the sample points.
            (default: :obj:`0`)

    Shapes:
        - **output:** ``pos`` :math:`(N, 2)`, ``x`` :math:`(N, 1)`, ``y``
          :math:`(N, 1)`, ``weight`` :math:`(N,)`, ``area`` :math:`(1,)`, with
          :math:`N` = :obj:`num_points`

    Example:
        >>> task = IrregularOperatorTask(num_samples=3, num_points=256)
        >>> data = task[0]
        >>> data.pos.shape, data.y.shape, data.weight.shape
        (torch.Size([256, 2]), torch.Size([256, 1]), torch.Size([256]))
        >>> fine = task.resample(num_points=1024)  # the same problems, 4x the points
        >>> bool(torch.isclose(fine[0].weight.sum(), data.area[0]))
        True
    """

    def __init__(
        self,
        num_samples: int = 64,
        num_points: int = 1024,
        operator: str = "smoothing",
        sampling: str = "uniform",
        domains: tuple[str, ...] = DOMAIN_KINDS,
        sigma: float = 0.1,
        density_ratio: float = 10.0,
        grid: Optional[int] = None,
        seed: int = 0,
        point_seed: int = 0,
    ):
        super().__init__()
        if operator not in OPERATORS:
            raise ValueError(
                f"unknown operator {operator!r}; expected one of {OPERATORS}"
            )
        if sampling not in SAMPLINGS:
            raise ValueError(
                f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}"
            )
        domains = tuple(domains)
        if not domains or any(d not in DOMAIN_KINDS for d in domains):
            raise ValueError(f"domains must be a non-empty subset of {DOMAIN_KINDS}")
        if num_samples < 0 or num_points < 1:
            raise ValueError("num_samples must be >= 0 and num_points >= 1")
        if not sigma > 0 or not density_ratio >= 1:
            raise ValueError("sigma must be positive and density_ratio >= 1")
        if grid is None:
            grid = 256 if operator == "smoothing" else 128
        if grid < 16:
            raise ValueError(f"grid must be at least 16, got {grid}")
        self.num_samples = int(num_samples)
        self.num_points = int(num_points)
        self.operator = operator
        self.sampling = sampling
        self.domains = domains
        self.sigma = float(sigma)
        self.density_ratio = float(density_ratio)
        self.grid = int(grid)
        self.seed = int(seed)
        self.point_seed = int(point_seed)
        self._problems: dict[int, _Problem] = {}

    # ------------------------------------------------------------ problems
    def problem(self, index: int) -> _Problem:
        """The domain, input and reference solution of problem :obj:`index`."""
        index = self._check_index(index)
        if index not in self._problems:
            rng = np.random.default_rng([self.seed, index])
            kind = self.domains[index % len(self.domains)]
            domain = make_domain(kind, rng)
            f = InputFunction.random(rng)
            if self.operator == "smoothing":
                cover = coverage(domain, self.grid)
                u = gaussian_smoothing(domain, f, self.sigma, self.grid, cover)
                order = 3
            else:
                u, _ = poisson_solve(domain, f, self.grid)
                cover = coverage(domain, 128)
                order = 1
            self._problems[index] = _Problem(domain, f, u, order, cover)
        return self._problems[index]

    def solution(self, index: int, points: np.ndarray) -> np.ndarray:
        """The reference :math:`u` of problem :obj:`index` at points :math:`(N, 2)`."""
        prob = self.problem(index)
        return _interpolate(prob.u_grid, np.asarray(points, np.float64), prob.order)

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.num_samples
        if not 0 <= index < self.num_samples:
            raise IndexError(
                f"index {index} out of range for {self.num_samples} samples"
            )
        return index

    # ------------------------------------------------------------ sampling
    def _density(
        self, domain: Domain, rng: np.random.Generator
    ) -> Optional[tuple[np.ndarray, float, float]]:
        """Direction d and the range (t0, t1) of d . x over the domain."""
        if self.sampling == "uniform" or self.density_ratio == 1.0:
            return None
        angle = rng.uniform(0, 2 * math.pi)
        d = np.array([math.cos(angle), math.sin(angle)])
        t = domain.outer @ d
        return d, float(t.min()), float(t.max())

    def _relative_density(self, points: np.ndarray, spec) -> np.ndarray:
        d, t0, t1 = spec
        s = np.clip((points @ d - t0) / (t1 - t0), 0.0, 1.0)
        return self.density_ratio ** (s - 1.0)  # in [1 / ratio, 1]

    def sample_points(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The sample points of item :obj:`index` and their exact weights."""
        prob = self.problem(index)
        code = _SAMPLING_CODE[self.sampling]
        rng = np.random.default_rng(
            [self.seed, index, self.num_points, code, self.point_seed, 1]
        )
        spec = self._density(prob.domain, rng)
        lo, hi = prob.domain.bounds
        chunks, have = [], 0
        while have < self.num_points:
            cand = rng.uniform(lo, hi, size=(2 * self.num_points + 64, 2))
            cand = cand[prob.domain.contains(cand)]
            if spec is not None:
                keep = rng.uniform(size=len(cand)) < self._relative_density(cand, spec)
                cand = cand[keep]
            chunks.append(cand)
            have += len(cand)
        points = np.concatenate(chunks)[: self.num_points]
        if spec is None:
            weight = np.full(self.num_points, prob.domain.area / self.num_points)
        else:
            # normaliser of q: the grid integral of the relative density
            g = prob.cover.shape[0]
            c = _grid_axis(g)
            cx, cy = np.meshgrid(c, c, indexing="ij")
            centres = np.column_stack([cx.ravel(), cy.ravel()])
            mass = (
                float(
                    (prob.cover.ravel() * self._relative_density(centres, spec)).sum()
                )
                * (2.0 / g) ** 2
            )
            mass *= prob.domain.area / (float(prob.cover.sum()) * (2.0 / g) ** 2)
            weight = mass / (self.num_points * self._relative_density(points, spec))
        return points, weight

    def resample(
        self,
        num_points: Optional[int] = None,
        sampling: Optional[str] = None,
        point_seed: Optional[int] = None,
    ) -> IrregularOperatorTask:
        """The same problems with other sample points (reference solutions shared).

        Args:
            num_points (int, optional): Points per sample (unchanged if
                :obj:`None`).
            sampling (str, optional): ``"uniform"`` or ``"nonuniform"``.
            point_seed (int, optional): Seed of the sample points.
        """
        other = copy.copy(self)  # shallow: shares the problem cache
        if num_points is not None:
            if num_points < 1:
                raise ValueError(f"num_points must be positive, got {num_points}")
            other.num_points = int(num_points)
        if sampling is not None:
            if sampling not in SAMPLINGS:
                raise ValueError(
                    f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}"
                )
            other.sampling = sampling
        if point_seed is not None:
            other.point_seed = int(point_seed)
        return other

    # ------------------------------------------------------------- Dataset
    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> Data:
        index = self._check_index(index)
        prob = self.problem(index)
        points, weight = self.sample_points(index)
        u = _interpolate(prob.u_grid, points, prob.order)
        return Data(
            pos=torch.from_numpy(points).float(),
            x=torch.from_numpy(prob.f(points)).float().unsqueeze(1),
            y=torch.from_numpy(u).float().unsqueeze(1),
            weight=torch.from_numpy(weight).float(),
            area=torch.tensor([prob.domain.area], dtype=torch.float32),
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.num_samples}, operator={self.operator}, "
            f"num_points={self.num_points}, sampling={self.sampling})"
        )


__all__ = [
    "IrregularOperatorTask",
    "Domain",
    "InputFunction",
    "make_domain",
    "coverage",
    "gaussian_smoothing",
    "poisson_solve",
    "DOMAIN_KINDS",
    "OPERATORS",
    "SAMPLINGS",
]
