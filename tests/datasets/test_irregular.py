import math

import numpy as np
import pytest
import torch
from torch_geometric.data import Data

from itnet_geo.datasets import IrregularOperatorTask
from itnet_geo.datasets.irregular import (
    DOMAIN_KINDS,
    Domain,
    InputFunction,
    coverage,
    gaussian_smoothing,
    make_domain,
    poisson_solve,
)


def _circle(center, radius, num=128):
    t = np.linspace(0, 2 * math.pi, num, endpoint=False)
    return np.column_stack(
        [center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)]
    )


def _polygon_area_exact(num, radius):
    return 0.5 * num * radius**2 * math.sin(2 * math.pi / num)


class _Constant:
    """f = 1 (an InputFunction stand-in)."""

    def __call__(self, points):
        return np.ones(len(np.asarray(points).reshape(-1, 2)))


@pytest.fixture(scope="module")
def task():
    return IrregularOperatorTask(num_samples=3, num_points=256, seed=3)


# ------------------------------------------------------------------ domains
@pytest.mark.parametrize("kind", DOMAIN_KINDS)
def test_domains_are_seeded_inside_the_box_with_their_shoelace_area(kind):
    a = make_domain(kind, np.random.default_rng(7))
    b = make_domain(kind, np.random.default_rng(7))
    np.testing.assert_array_equal(a.outer, b.outer)
    assert a.kind == kind
    lo, hi = a.bounds
    assert lo.min() >= -0.96 and hi.max() <= 0.96
    # Monte Carlo area of the box agrees with the exact area (5 sigma).
    pts = np.random.default_rng(0).uniform(-1, 1, size=(40000, 2))
    frac = a.contains(pts).mean()
    sigma = math.sqrt(frac * (1 - frac) / len(pts))
    assert abs(4 * frac - a.area) < 4 * 5 * sigma
    if kind == "disc":
        assert 1 <= len(a.holes) <= 3


def test_unknown_domain_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown domain kind"):
        make_domain("torus", np.random.default_rng(0))


def test_holes_are_outside_the_domain():
    dom = Domain(_circle((0, 0), 0.9), (_circle((0.2, 0.1), 0.3)[::-1],), "disc")
    inside = dom.contains(np.array([[0.2, 0.1], [-0.5, -0.2], [0.95, 0.0]]))
    assert inside.tolist() == [False, True, False]
    expected = _polygon_area_exact(128, 0.9) - _polygon_area_exact(128, 0.3)
    assert dom.area == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("grid", [64, 128])
def test_coverage_sums_to_the_area_and_cut_cells_are_fractional(grid):
    # An axis-aligned L (edges off the grid lines): cut cells along whole edges.
    ring = np.array(
        [[-0.9, -0.9], [0.9, -0.9], [0.9, 0.13], [0.07, 0.13], [0.07, 0.9], [-0.9, 0.9]]
    )
    dom = Domain(ring, (), "lshape")
    cov = coverage(dom, grid)
    h = 2.0 / grid
    assert cov.sum() * h * h == pytest.approx(dom.area, rel=2e-4)
    assert ((cov > 0) & (cov < 1)).any() and cov.min() >= 0 and cov.max() <= 1


# --------------------------------------------------------- reference solvers
def test_smoothing_of_a_constant_on_the_plane_is_the_constant():
    # A domain much larger than sigma: away from the rim u = f = 1.
    dom = Domain(_circle((0, 0), 0.95), (), "disc")
    u = gaussian_smoothing(dom, _Constant(), sigma=0.05, grid=128)
    centres = -1 + (np.arange(128) + 0.5) / 64
    i = 64  # a cell centre next to the origin
    assert u[i, i] == pytest.approx(1.0, abs=1e-6)
    # at the rim (a nearly straight edge) about half of the mass is lost
    edge = int(np.argmin(np.abs(centres - 0.95)))
    assert 0.4 < u[edge, i] < 0.6


def test_smoothing_matches_a_direct_fine_quadrature():
    rng = np.random.default_rng(1)
    dom = make_domain("polygon", rng)
    f = InputFunction.random(rng)
    u = gaussian_smoothing(dom, f, sigma=0.1, grid=128)
    # direct midpoint sum on a 4x finer grid at a few cell centres
    fine = 512
    c = -1 + (np.arange(fine) + 0.5) * 2 / fine
    gx, gy = np.meshgrid(c, c, indexing="ij")
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    mask = dom.contains(pts)
    pts, vals = pts[mask], f(pts[mask])
    for ix, iy in [(64, 64), (70, 50), (40, 80)]:
        x = np.array([-1 + (ix + 0.5) / 64, -1 + (iy + 0.5) / 64])
        g = np.exp(-((pts - x) ** 2).sum(1) / (2 * 0.01)) / (2 * math.pi * 0.01)
        ref = (g * vals).sum() * (2 / fine) ** 2
        assert u[ix, iy] == pytest.approx(ref, abs=2e-3 * np.abs(vals).max())


@pytest.mark.parametrize("holes", [False, True])
def test_poisson_matches_the_exact_disc_and_annulus_solutions(holes):
    r1, r2 = 0.3, 0.9
    dom = Domain(
        _circle((0, 0), r2, 512),
        (_circle((0, 0), r1, 512)[::-1],) if holes else (),
        "disc",
    )
    u, inside = poisson_solve(dom, _Constant(), grid=96)
    c = -1 + (np.arange(96) + 0.5) * 2 / 96
    gx, gy = np.meshgrid(c, c, indexing="ij")
    r = np.sqrt(gx**2 + gy**2)[inside]
    if holes:
        a = (r2**2 - r1**2) / (4 * math.log(r2 / r1))
        exact = -(r**2) / 4 + a * np.log(r) + r1**2 / 4 - a * math.log(r1)
    else:
        exact = (r2**2 - r**2) / 4
    err = np.linalg.norm(u[inside] - exact) / np.linalg.norm(exact)
    assert err < 1e-3


def test_poisson_reference_is_converged_on_a_random_domain():
    coarse = IrregularOperatorTask(num_samples=3, operator="poisson", grid=64, seed=2)
    fine = IrregularOperatorTask(num_samples=3, operator="poisson", grid=128, seed=2)
    for i in range(3):
        pts, _ = coarse.resample(num_points=400).sample_points(i)
        a, b = coarse.solution(i, pts), fine.solution(i, pts)
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-2


def test_smoothing_reference_is_converged_on_a_random_domain():
    coarse = IrregularOperatorTask(num_samples=3, grid=128, seed=2)
    fine = IrregularOperatorTask(num_samples=3, grid=256, seed=2)
    for i in range(3):
        pts, _ = coarse.resample(num_points=400).sample_points(i)
        a, b = coarse.solution(i, pts), fine.solution(i, pts)
        assert np.linalg.norm(a - b) / np.linalg.norm(b) < 1e-3


# ------------------------------------------------------------------ dataset
def test_items_are_data_with_the_documented_fields(task):
    d = task[0]
    assert isinstance(d, Data)
    assert d.pos.shape == (256, 2) and d.x.shape == (256, 1) and d.y.shape == (256, 1)
    assert d.weight.shape == (256,) and d.area.shape == (1,)
    assert d.pos.dtype == torch.float32
    dom = task.problem(0).domain
    assert dom.contains(d.pos.double().numpy()).all()
    torch.testing.assert_close(
        d.x[:, 0].double(),
        torch.from_numpy(task.problem(0).f(d.pos.double().numpy())),
        rtol=1e-5,
        atol=1e-5,
    )
    # uniform sampling: every weight is |Omega| / N
    torch.testing.assert_close(d.weight, torch.full((256,), dom.area / 256))
    assert len(task) == 3 and "smoothing" in repr(task)


def test_generation_is_deterministic_and_seeds_differ(task):
    again = IrregularOperatorTask(num_samples=3, num_points=256, seed=3)
    other = IrregularOperatorTask(num_samples=3, num_points=256, seed=4)
    for a, b in zip(task, again, strict=True):
        torch.testing.assert_close(a.pos, b.pos)
        torch.testing.assert_close(a.y, b.y)
    assert not torch.equal(task[0].pos, other[0].pos)
    assert not torch.equal(task[0].pos, task.resample(point_seed=1)[0].pos)


def test_resample_keeps_the_problems_and_shares_the_solutions(task):
    fine = task.resample(num_points=1024)
    assert fine.problem(1) is task.problem(1)
    d = fine[1]
    assert d.num_nodes == 1024
    torch.testing.assert_close(d.area, task[1].area)
    torch.testing.assert_close(
        d.y[:, 0].double(),
        torch.from_numpy(task.solution(1, d.pos.double().numpy())),
        rtol=1e-5,
        atol=1e-5,
    )
    assert task.num_points == 256  # the original is unchanged
    with pytest.raises(ValueError, match="unknown sampling"):
        task.resample(sampling="poisson-disc")


def test_nonuniform_sampling_varies_tenfold_with_exact_weights(task):
    nu = task.resample(num_points=4000, sampling="nonuniform")
    for i in range(3):
        d = nu[i]
        w = d.weight.double()
        assert 7.0 < float(w.max() / w.min()) <= 10.0 + 1e-6
        # the weights integrate: sum w = |Omega| and sum w g ~ integral of g
        assert float(w.sum()) == pytest.approx(float(d.area), rel=0.05)
        # density: more points where the weight is small
        light = w < w.median()
        spread = d.pos[light].double().mean(0) - d.pos[~light].double().mean(0)
        assert float(spread.norm()) > 0.2


def test_the_weights_give_unbiased_integrals(task):
    # integral of f over Omega: exact from the fine grid, estimated from samples
    prob = task.problem(2)
    g = prob.cover.shape[0]
    c = -1 + (np.arange(g) + 0.5) * 2 / g
    gx, gy = np.meshgrid(c, c, indexing="ij")
    f_grid = prob.f(np.column_stack([gx.ravel(), gy.ravel()]))
    exact = float((prob.cover.ravel() * f_grid).sum() * (2 / g) ** 2)
    scale = float((prob.cover.ravel() * np.abs(f_grid)).sum() * (2 / g) ** 2)
    for sampling in ("uniform", "nonuniform"):
        est = [
            float((d.weight.double() * d.x[:, 0].double()).sum())
            for d in (
                task.resample(num_points=2000, sampling=sampling, point_seed=s)[2]
                for s in range(4)
            )
        ]
        assert abs(np.mean(est) - exact) < 0.05 * scale


def test_poisson_items():
    t = IrregularOperatorTask(num_samples=2, num_points=128, operator="poisson")
    d = t[1]
    assert d.y.shape == (128, 1) and torch.isfinite(d.y).all()
    assert t.grid == 128 and repr(t).startswith(
        "IrregularOperatorTask(2, operator=poisson"
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(operator="heat"), "unknown operator"),
        (dict(sampling="grid"), "unknown sampling"),
        (dict(domains=("disc", "sphere")), "domains"),
        (dict(sigma=0.0), "sigma"),
        (dict(grid=8), "grid"),
        (dict(num_points=0), "num_points"),
    ],
)
def test_invalid_arguments_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        IrregularOperatorTask(**kwargs)


def test_index_out_of_range(task):
    assert torch.equal(task[-1].pos, task[2].pos)
    with pytest.raises(IndexError):
        task[3]
