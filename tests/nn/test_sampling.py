import itertools
import math

import numpy as np
import pytest
import torch

from itnet_geo.nn import ITConv, MonteCarlo
from itnet_geo.nn.sampling import (
    _SUPPORT,
    _TAIL,
    _half_space_tables,
    _inclusion_probabilities,
    _systematic,
    area_weights,
    density_weights,
    uniform_weights,
)
from itnet_geo.ops import knn_graph, radius_graph

MEASURES = ["sum", "mean", "softmax", "max"]


# ----------------------------------------------------------------- fixtures
def nonuniform_sphere(num, seed=0, dtype=torch.float64):
    """Unit sphere sampled with density proportional to 5.5 + 4.5 z (1 to 10)."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(num, generator=gen, dtype=dtype)
    z = (-5.5 + torch.sqrt(1 + 99 * u)) / 4.5  # inverse CDF of (5.5 + 4.5 z) / 11
    phi = 2 * math.pi * torch.rand(num, generator=gen, dtype=dtype)
    r = (1 - z * z).clamp_min(0).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=1)


def uniform_sphere(num, seed=0, dim=3, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(num, dim, generator=gen, dtype=dtype)
    return pos / pos.norm(dim=1, keepdim=True)


def graph(num=24, k=6, seed=0, channels=8):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(num, 3, generator=gen, dtype=torch.double)
    x = torch.randn(num, channels, generator=gen, dtype=torch.double)
    weight = 0.5 + torch.rand(num, generator=gen, dtype=torch.double)
    return x, pos, knn_graph(pos, k=k), weight


def irregular_graph(num=30, num_edges=150, seed=0):
    """Distinct random edges, so degrees differ between targets."""
    gen = torch.Generator().manual_seed(seed)
    key = torch.randperm(num * num, generator=gen)[:num_edges]
    return torch.stack([key % num, key // num])


def make_conv(measure="sum", mc=None, tile_size=None, channels=8):
    torch.manual_seed(0)
    return ITConv(
        channels, channels, hidden=16, measure=measure, mc=mc, tile_size=tile_size
    ).double()


def replicated_neighbourhood(weight, copies, offsets=None):
    """``copies`` disjoint copies of one target with len(weight) neighbours, each
    copy at its own place."""
    deg = weight.numel()
    src = torch.arange(copies * deg)
    dst = torch.arange(copies).repeat_interleave(deg)
    pos = None
    if offsets is not None:
        place = offsets.new_zeros(copies, offsets.size(1))
        place[:, 0] = 100 * torch.arange(copies)
        pos = (offsets.repeat(copies, 1) + place.repeat_interleave(deg, 0), place)
    return torch.stack([src, dst]), weight.repeat(copies), pos


def seeded(seed=0, **kwargs):
    return MonteCarlo(generator=torch.Generator().manual_seed(seed), **kwargs)


# --------------------------------------------------------------- MonteCarlo
def test_repr():
    assert repr(MonteCarlo()) == (
        "MonteCarlo(ratio=0.5, importance=uniform, mode=neighbor, replace=False)"
    )
    mc = MonteCarlo(num=4, importance="weight", mode="node", replace=True)
    assert repr(mc) == "MonteCarlo(num=4, importance=weight, mode=node, replace=True)"
    assert repr(ITConv(4, 4, mc=mc)) == "ITConv(4, 4, kernel=channel, measure=sum)"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"ratio": 0.0}, "ratio"),
        ({"ratio": 1.5}, "ratio"),
        ({"importance": "volume"}, "importance"),
        ({"mode": "edge"}, "mode"),
        ({"num": 0}, "num"),
        ({"num": 2.5}, "num"),
        ({"importance": "distance", "mode": "node"}, "distance"),
        ({"bandwidth": -1.0}, "bandwidth"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MonteCarlo(**kwargs)


def test_invalid_inputs():
    edge_index = irregular_graph()
    with pytest.raises(ValueError, match="edge_weight"):
        MonteCarlo()(edge_index, torch.ones(3))
    for importance in ["distance", "density"]:
        with pytest.raises(ValueError, match="pos"):
            MonteCarlo(importance=importance)(edge_index, None, 30, 30)


@pytest.mark.parametrize("mode", ["neighbor", "node"])
def test_ratio_one_returns_the_inputs(mode):
    edge_index = irregular_graph()
    weight = torch.rand(edge_index.size(1))
    out_index, out_weight = MonteCarlo(ratio=1.0, mode=mode)(edge_index, weight)
    assert out_index is edge_index and out_weight is weight
    # a num larger than every neighbourhood keeps everything, too
    out_index, out_weight = MonteCarlo(num=10**6, mode=mode)(edge_index, None)
    assert out_index is edge_index and out_weight is None


@pytest.mark.parametrize("tile_size", [None, 16])
@pytest.mark.parametrize("measure", MEASURES)
def test_ratio_one_is_the_exact_layer_bit_for_bit(measure, tile_size):
    x, pos, edge_index, weight = graph()
    conv = make_conv(measure, tile_size=tile_size)
    exact = conv(x, pos, edge_index, weight=weight)
    conv.mc = MonteCarlo(ratio=1.0, importance="weight")
    assert conv.training
    assert torch.equal(conv(x, pos, edge_index, weight=weight), exact)


@pytest.mark.parametrize("tile_size", [None, 16])
def test_eval_is_exact_and_train_is_not(tile_size):
    x, pos, edge_index, weight = graph()
    conv = make_conv(tile_size=tile_size)
    exact = conv(x, pos, edge_index, weight=weight)
    conv.mc = seeded(ratio=0.5)
    sampled = conv(x, pos, edge_index, weight=weight)
    assert not torch.allclose(sampled, exact)
    conv.eval()
    assert not conv.mc.training
    assert torch.equal(conv(x, pos, edge_index, weight=weight), exact)


def test_train_only_false_samples_in_eval_mode():
    edge_index = irregular_graph()
    mc = seeded(ratio=0.5, train_only=False).eval()
    assert mc(edge_index, None, 30, 30)[0].size(1) < edge_index.size(1)
    mc = seeded(ratio=0.5).eval()
    assert mc(edge_index, None, 30, 30)[0] is edge_index


CONFIGS = list(
    itertools.product(
        ["uniform", "weight", "density", "distance"],
        ["neighbor", "node"],
        [False, True],
    )
)
CONFIGS = [c for c in CONFIGS if not (c[0] == "distance" and c[1] == "node")]


@pytest.mark.parametrize("importance, mode, replace", CONFIGS)
def test_same_generator_same_draw(importance, mode, replace):
    _, pos, _, _ = graph(num=30)
    edge_index = irregular_graph()
    weight = torch.rand(edge_index.size(1), dtype=torch.double)
    args = (edge_index, weight, 30, 30, (pos, pos))
    kwargs = dict(ratio=0.4, importance=importance, mode=mode, replace=replace)
    first = seeded(7, **kwargs)(*args)
    second = seeded(7, **kwargs)(*args)
    other = seeded(8, **kwargs)(*args)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert first[0].shape != other[0].shape or not torch.equal(first[0], other[0])


def test_global_generator_is_used_when_none_is_given():
    edge_index = irregular_graph()
    torch.manual_seed(3)
    first = MonteCarlo(ratio=0.3)(edge_index, None, 30, 30)
    torch.manual_seed(3)
    second = MonteCarlo(ratio=0.3)(edge_index, None, 30, 30)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("measure", MEASURES)
def test_reference_and_fused_paths_agree_on_a_draw(measure):
    x, pos, edge_index, weight = graph()
    conv = make_conv(measure)
    conv.mc = seeded(5, ratio=0.5, importance="distance")
    pos_ref = pos.clone().requires_grad_()
    ref = conv(x, pos_ref, edge_index, weight=weight)
    ref.square().sum().backward()
    grads_ref = [p.grad.clone() for p in conv.parameters()]
    conv.zero_grad()
    conv.tile_size, conv.mc = 16, seeded(5, ratio=0.5, importance="distance")
    pos_fused = pos.clone().requires_grad_()
    fused = conv(x, pos_fused, edge_index, weight=weight)
    fused.square().sum().backward()
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(pos_fused.grad, pos_ref.grad)
    for p, g in zip(conv.parameters(), grads_ref, strict=True):
        torch.testing.assert_close(p.grad, g)
    assert torch.isfinite(pos_fused.grad).all()


def test_bipartite_layer():
    gen = torch.Generator().manual_seed(0)
    pos_src = torch.randn(40, 3, generator=gen, dtype=torch.double)
    pos_dst = pos_src[:10]
    x_src = torch.randn(40, 8, generator=gen, dtype=torch.double)
    edge_index = knn_graph(pos_src, k=8)
    edge_index = edge_index[:, edge_index[1] < 10]
    weight = density_weights((pos_src, pos_dst), edge_index)
    assert weight.shape == (40,)
    for mode in ["neighbor", "node"]:
        conv = make_conv(mc=seeded(ratio=0.5, importance="weight", mode=mode))
        out = conv((x_src, x_src[:10]), (pos_src, pos_dst), edge_index, weight=weight)
        assert out.shape == (10, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("ratio", [0.2, 0.5, 0.75])
def test_each_target_keeps_ceil_ratio_deg_distinct_edges(ratio):
    edge_index = irregular_graph()
    n = edge_index.size(1)
    out, _ = seeded(ratio=ratio)(edge_index, None, 30, 30)
    deg = torch.bincount(edge_index[1], minlength=30)
    kept = torch.bincount(out[1], minlength=30)
    expected = torch.minimum(torch.ceil(deg * ratio - 1e-9).clamp_min(1), deg)
    assert torch.equal(kept, expected.long())
    # a subset of the edges, without repeats, in the input order
    position = {int(k): i for i, k in enumerate(edge_index[1] * 30 + edge_index[0])}
    places = [position[int(k)] for k in out[1] * 30 + out[0]]
    assert places == sorted(set(places)) and len(places) <= n
    out, _ = seeded(num=3)(edge_index, None, 30, 30)
    assert torch.equal(torch.bincount(out[1], minlength=30), deg.clamp(max=3))


def test_horvitz_thompson_weights_uniform():
    edge_index = irregular_graph()
    weight = torch.rand(edge_index.size(1), dtype=torch.double)
    out, out_weight = seeded(ratio=0.4)(edge_index, weight, 30, 30)
    deg = torch.bincount(edge_index[1], minlength=30).double()
    m = torch.ceil(deg * 0.4 - 1e-9)
    keys = (edge_index[1] * 30 + edge_index[0]).tolist()
    lookup = dict(zip(keys, weight.tolist(), strict=True))
    w = torch.tensor([lookup[k] for k in (out[1] * 30 + out[0]).tolist()]).double()
    torch.testing.assert_close(out_weight, w * deg[out[1]] / m[out[1]])


def test_inclusion_probabilities_take_heavy_items_with_certainty():
    # one neighbourhood, m = 2: the heavy item's share 2 * 10/14 exceeds one
    importance = torch.tensor([10.0, 1, 1, 1, 1], dtype=torch.double)
    segment = torch.zeros(5, dtype=torch.long)
    prob, certain = _inclusion_probabilities(importance, segment, torch.tensor([2]), 1)
    torch.testing.assert_close(
        prob, torch.tensor([1.0, 0.25, 0.25, 0.25, 0.25]).double()
    )
    assert certain.tolist() == [True, False, False, False, False]
    mc = seeded(num=2, importance="weight")
    for _ in range(20):
        out, out_weight = mc(torch.stack([torch.arange(5), segment]), importance)
        assert out.size(1) == 2 and 0 in out[0].tolist()
        torch.testing.assert_close(out_weight, importance[out[0]] / prob[out[0]])


@pytest.mark.parametrize(
    "probs",
    [
        [0.5, 0.5, 0.5, 0.5],
        [0.1, 0.7, 0.2, 0.3, 0.45, 0.25],
        [1.0, 0.3, 0.3, 0.4, 0.9, 0.1],
        [0.05, 0.95],
    ],
)
def test_systematic_sampling_inclusion_is_exact(probs):
    """Exact enumeration of the draw: E[1{e picked}] = pi_e, hence unbiasedness.

    Picks change only where u + t crosses a cumulative sum, so integrating over
    u in [0, 1) is a finite sum over the intervals between those breakpoints.
    E[sum_S w g / pi] = sum_e pi_e w_e g_e / pi_e = sum_e w_e g_e.
    """
    prob = torch.tensor(probs, dtype=torch.double)
    certain = prob >= 1
    size = round(float(prob.sum()))
    cuts = torch.cumsum(torch.where(certain, 0.0, prob), 0).frac()
    cuts = torch.unique(torch.cat([cuts, torch.tensor([0.0, 1.0]).double()]))
    ptr = torch.tensor([0, prob.numel()])
    inclusion = torch.zeros_like(prob)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        picked = _systematic(prob, certain, ptr, ((lo + hi) / 2).view(1))
        assert int(picked.sum()) == size
        inclusion += (hi - lo) * picked
    torch.testing.assert_close(inclusion, prob, rtol=0, atol=1e-12)


@pytest.mark.parametrize("importance", ["uniform", "weight", "density", "distance"])
@pytest.mark.parametrize("replace", [False, True])
def test_neighbor_estimate_is_unbiased_over_many_draws(importance, replace):
    """10000 independent copies of one neighbourhood in a single call."""
    gen = torch.Generator().manual_seed(0)
    weight = torch.tensor([0.2, 3.0, 1.0, 0.5, 2.0, 0.1, 1.5], dtype=torch.double)
    g = 1 + 0.5 * torch.randn(7, generator=gen, dtype=torch.double)
    offsets = torch.randn(7, 3, generator=gen, dtype=torch.double)
    copies = 10000
    edge_index, w, pos = replicated_neighbourhood(weight, copies, offsets)
    mc = seeded(ratio=0.43, importance=importance, replace=replace)
    out, out_weight = mc(edge_index, w, 7 * copies, copies, pos)
    term = out_weight * g[out[0] % 7]
    estimate = torch.zeros(copies, dtype=torch.double).index_add_(0, out[1], term)
    exact = float((weight * g).sum())
    se = float(estimate.std()) / math.sqrt(copies)
    assert abs(float(estimate.mean()) - exact) < 5 * se
    assert float(estimate.std()) > 0  # really random
    if not replace:
        kept = torch.bincount(out[1], minlength=copies)
        assert torch.equal(kept, torch.full((copies,), math.ceil(0.43 * 7)))
    # Inclusion frequencies match the Horvitz-Thompson pi (one pi per neighbour:
    # the density weights differ a little between copies, at the row's ends).
    if not replace and importance != "density":
        freq = torch.bincount(out[0] % 7, minlength=7).double() / copies
        pi = weight[out[0] % 7] / out_weight  # w / (w / pi)
        pi_e = torch.zeros(7, dtype=torch.double).scatter_(0, out[0] % 7, pi)
        se_freq = (pi_e * (1 - pi_e) / copies).sqrt().clamp_min(1e-3)
        assert ((freq - pi_e).abs() < 5 * se_freq).all()
        torch.testing.assert_close(pi_e.sum(), torch.tensor(4.0).double())


@pytest.mark.parametrize("importance", ["uniform", "weight", "density"])
@pytest.mark.parametrize("replace", [False, True])
def test_node_estimate_is_unbiased_over_many_draws(importance, replace):
    """10000 disjoint copies of a graph in a single call.

    The copies share one draw of source nodes, which correlates their estimates
    negatively (a fixed number of sources is kept overall), so the independent
    standard error below is conservative.
    """
    edge_index = irregular_graph(num=12, num_edges=50)
    gen = torch.Generator().manual_seed(1)
    source_weight = 0.2 + 2 * torch.rand(12, generator=gen, dtype=torch.double)
    w = source_weight[edge_index[0]]
    g = torch.zeros(12, 12, dtype=torch.double)  # g[target, source]
    g[edge_index[1], edge_index[0]] = 1 + 0.5 * torch.randn(
        50, generator=gen, dtype=torch.double
    )
    exact = torch.zeros(12, dtype=torch.double).index_add_(
        0, edge_index[1], w * g[edge_index[1], edge_index[0]]
    )
    copies = 10000
    shift = 12 * torch.arange(copies).repeat_interleave(50)
    replicated = edge_index.repeat(1, copies) + shift
    # Each copy's nodes at their own place (density importance reads positions).
    pos = torch.randn(12, 3, generator=gen, dtype=torch.double).repeat(copies, 1)
    pos[:, 0] += 10 * torch.arange(copies).repeat_interleave(12)
    mc = seeded(ratio=0.4, importance=importance, mode="node", replace=replace)
    out, out_weight = mc(
        replicated, w.repeat(copies), 12 * copies, 12 * copies, (pos, pos)
    )
    term = out_weight * g[out[1] % 12, out[0] % 12]
    draws = torch.zeros(12 * copies, dtype=torch.double).index_add_(0, out[1], term)
    draws = draws.view(copies, 12)
    se = draws.std(0) / math.sqrt(copies)
    assert ((draws.mean(0) - exact).abs() <= 5 * se + 1e-12).all()
    assert (draws.std(0)[exact != 0] > 0).all()


def test_node_mode_keeps_all_edges_of_the_kept_sources():
    edge_index = irregular_graph()
    active = int(torch.unique(edge_index[0]).numel())
    out, out_weight = seeded(ratio=0.3, mode="node")(edge_index, None, 30, 30)
    kept = torch.unique(out[0])
    assert kept.numel() == math.ceil(0.3 * active)
    assert out.size(1) == int(torch.isin(edge_index[0], kept).sum())
    torch.testing.assert_close(
        out_weight, torch.full_like(out_weight, active / kept.numel())
    )


@pytest.mark.parametrize("replace", [False, True])
def test_weight_importance_is_exact_for_a_constant_integrand(replace):
    """q proportional to w: every draw carries the same mass, zero variance."""
    edge_index = irregular_graph()
    w = 1 + torch.rand(edge_index.size(1), dtype=torch.double)
    mass = torch.zeros(30, dtype=torch.double).index_add_(0, edge_index[1], w)
    spread = {}
    for importance in ["weight", "uniform"]:
        mc = seeded(ratio=0.25, importance=importance, replace=replace)
        estimates = []
        for _ in range(5):
            out, out_weight = mc(edge_index, w, 30, 30)
            estimates.append(
                torch.zeros(30, dtype=torch.double).index_add_(0, out[1], out_weight)
            )
        spread[importance] = (torch.stack(estimates) - mass).abs().max()
    assert spread["weight"] < 1e-12
    assert spread["uniform"] > 1e-3


@pytest.mark.parametrize("mode", ["neighbor", "node"])
def test_density_importance_draws_by_inverse_density(mode):
    """q proportional to the sources' density weights: sparse samples are drawn
    more often, and a sum carrying those weights is estimated exactly."""
    pos = nonuniform_sphere(400)  # ten times denser at the north pole
    edge_index = knn_graph(pos, k=12)
    w = density_weights(pos, k=16).index_select(0, edge_index[0])
    mass = torch.zeros(400, dtype=torch.double).index_add_(0, edge_index[1], w)
    mc = seeded(ratio=0.25, importance="density", mode=mode)
    inclusion = torch.zeros(400, dtype=torch.double)
    for _ in range(20):
        out, out_weight = mc(edge_index, w, 400, 400, (pos, pos))
        estimate = torch.zeros(400, dtype=torch.double)
        estimate.index_add_(0, out[1], out_weight)
        if mode == "neighbor":  # per target: the neighbourhood's mass, exactly
            torch.testing.assert_close(estimate, mass, rtol=1e-9, atol=0)
        inclusion.index_add_(0, out[0], torch.ones(out.size(1), dtype=torch.double))
    if mode == "node":  # one draw of sources over the cloud: by their density
        south, north = pos[:, 2] < -0.5, pos[:, 2] > 0.5
        assert float(inclusion[south].mean()) > 2 * float(inclusion[north].mean())


def test_given_is_the_weight_importance():
    edge_index = irregular_graph()
    w = torch.rand(edge_index.size(1), dtype=torch.double)
    a = seeded(3, ratio=0.4, importance="given")(edge_index, w, 30, 30)
    b = seeded(3, ratio=0.4, importance="weight")(edge_index, w, 30, 30)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_distance_importance_prefers_near_neighbours():
    offsets = torch.tensor(
        [[0.1, 0, 0], [0.5, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]
    ).double()
    edge_index, w, pos = replicated_neighbourhood(torch.ones(4).double(), 1, offsets)
    mc = seeded(num=2, importance="distance")
    pi = {}
    for _ in range(100):  # P(the far one never drawn) ~ 0.85^100
        out, out_weight = mc(edge_index, w, 4, 1, pos)
        pi.update(dict(zip(out[0].tolist(), (1 / out_weight).tolist(), strict=True)))
    assert sorted(pi) == [0, 1, 2, 3]
    assert pi[0] > pi[1] > pi[2] > pi[3] > 0
    assert abs(sum(pi.values()) - 2) < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize(
    "importance, mode",
    [
        ("uniform", "neighbor"),
        ("weight", "neighbor"),
        ("density", "neighbor"),
        ("distance", "neighbor"),
        ("uniform", "node"),
        ("weight", "node"),
        ("density", "node"),
    ],
)
@pytest.mark.parametrize("tile_size", [None, 32])
def test_layer_mean_over_many_draws_matches_exact(importance, mode, tile_size):
    x, pos, edge_index, _ = graph(num=30, k=8)
    weight = density_weights(pos, edge_index)
    conv = make_conv(tile_size=tile_size)
    exact = conv(x, pos, edge_index, weight=weight).detach()
    conv.mc = seeded(ratio=0.5, importance=importance, mode=mode)
    with torch.no_grad():
        draws = torch.stack(
            [conv(x, pos, edge_index, weight=weight) for _ in range(1000)]
        )
    se = draws.std(0) / math.sqrt(draws.size(0))
    z = (draws.mean(0) - exact).abs() / se.clamp_min(1e-12)
    assert (z < 5).all(), float(z.max())


# -------------------------------------------------------- quadrature weights
def test_uniform_weights():
    pos = torch.randn(7, 3)
    assert torch.equal(uniform_weights(pos), torch.ones(7))
    assert uniform_weights((pos, pos[:2])).shape == (7,)


def test_density_weights_integrate_a_nonuniform_sphere():
    pos = nonuniform_sphere(1500)
    edge_index = knn_graph(pos, k=16)
    f = (1 + pos[:, 2]) ** 2  # integral 16 pi / 3 over the sphere
    exact = 16 * math.pi / 3
    area = 4 * math.pi
    density = density_weights(pos, edge_index)
    error_density = abs(float(area * (density * f).mean()) / exact - 1)
    error_uniform = abs(float(area * f.mean()) / exact - 1)
    measure = density_weights(pos, edge_index, normalize="measure")
    error_measure = abs(float((measure * f).sum()) / exact - 1)
    assert error_uniform > 0.25
    assert error_density < 0.03 and error_measure < 0.03
    assert error_density < error_uniform / 10


@pytest.mark.parametrize(
    "num, dim, measure", [(2000, 3, 4 * math.pi), (600, 2, 2 * math.pi)]
)
def test_density_weights_sum_to_the_measure(num, dim, measure):
    pos = uniform_sphere(num, dim=dim)
    weight = density_weights(pos, knn_graph(pos, k=16), normalize="measure")
    assert abs(float(weight.sum()) / measure - 1) < 0.03
    mean = density_weights(pos, knn_graph(pos, k=16))
    torch.testing.assert_close(mean.mean(), torch.tensor(1.0).double())
    assert float(mean.std()) < 0.4  # k-NN estimate: relative noise ~ 1/sqrt(k)


@pytest.mark.parametrize(
    "pos, dim",
    [
        (uniform_sphere(800, dim=2), 1),  # circle
        (uniform_sphere(800), 2),  # sphere surface
        (torch.rand(800, 3, dtype=torch.double), 3),  # solid cube
    ],
)
def test_density_weights_estimate_the_intrinsic_dimension(pos, dim):
    edge_index = knn_graph(pos, k=16)
    auto = density_weights(pos, edge_index)
    torch.testing.assert_close(auto, density_weights(pos, edge_index, dim=dim))
    other = dim % 3 + 1
    assert not torch.allclose(auto, density_weights(pos, edge_index, dim=other))


def test_density_weights_ignore_duplicates():
    pos = nonuniform_sphere(300)
    dup = torch.cat([pos, pos[:20], pos[:5]])  # 5 points three times, 15 twice
    r = 0.35
    base = density_weights(
        pos, radius_graph(pos, r, max_num_neighbors=300), normalize="measure"
    )
    edges = radius_graph(dup, r, max_num_neighbors=300)
    weight = density_weights(dup, edges, normalize="measure")
    copies = weight[:300].clone()
    copies[:20] += weight[300:320]
    copies[:5] += weight[320:]
    torch.testing.assert_close(copies, base)
    torch.testing.assert_close(weight[300:305], weight[320:])
    # repeated edges and edge order change nothing either
    perm = torch.randperm(edges.size(1), generator=torch.Generator().manual_seed(0))
    again = torch.cat([edges, edges[:, :50]], dim=1)[:, :]
    torch.testing.assert_close(
        density_weights(dup, edges[:, perm], normalize="measure"), weight
    )
    torch.testing.assert_close(density_weights(dup, again, normalize="measure"), weight)


def test_density_weights_bipartite_use_the_source_cloud():
    pos = nonuniform_sphere(400)
    centres = pos[::8]
    edge_index = knn_graph(pos, k=16)
    edge_index = edge_index[:, edge_index[1] % 8 == 0]
    edge_index[1] //= 8
    weight = density_weights((pos, centres), edge_index)
    torch.testing.assert_close(weight, density_weights(pos, knn_graph(pos, k=16)))


def test_density_weights_batch_normalises_each_graph():
    pos_a, pos_b = nonuniform_sphere(200, seed=1), 3 * uniform_sphere(300, seed=2)
    pos = torch.cat([pos_a, pos_b])
    batch = torch.cat([torch.zeros(200), torch.ones(300)]).long()
    edge_index = knn_graph(pos, k=12, batch=batch)
    for normalize in ["mean", "measure"]:
        weight = density_weights(pos, edge_index, batch=batch, normalize=normalize)
        a = density_weights(pos_a, knn_graph(pos_a, k=12), normalize=normalize)
        b = density_weights(pos_b, knn_graph(pos_b, k=12), normalize=normalize)
        torch.testing.assert_close(weight, torch.cat([a, b]))


def test_density_weights_fixed_bandwidth_and_edge_cases():
    pos = nonuniform_sphere(600)
    edge_index = knn_graph(pos, k=16)
    fixed = density_weights(pos, edge_index, bandwidth=0.1)
    assert fixed.shape == (600,) and (fixed > 0).all()
    f = (1 + pos[:, 2]) ** 2
    error = abs(float(4 * math.pi * (fixed * f).mean()) / (16 * math.pi / 3) - 1)
    assert error < 0.2  # uniform weights: 0.4; PointConv's fixed bandwidth is cruder
    # an isolated node gets the median weight
    cut = edge_index[:, edge_index[1] != 0]
    cut = cut[:, cut[0] != 0]
    weight = density_weights(pos, cut, normalize="measure", dim=2)
    assert torch.isfinite(weight).all()
    torch.testing.assert_close(weight[0], weight[1:].median())
    assert density_weights(pos[:0], edge_index[:, :0]).shape == (0,)
    assert density_weights(pos.float(), edge_index).dtype == torch.float32
    with pytest.raises(ValueError, match="normalize"):
        density_weights(pos, edge_index, normalize="sum")
    with pytest.raises(ValueError, match="bandwidth"):
        density_weights(pos, edge_index, bandwidth=0.0)


def test_density_weights_in_the_layer():
    x, pos, edge_index, _ = graph(num=50, k=8)
    conv = make_conv(mc=seeded(ratio=0.5, importance="weight"))
    out = conv(x, pos, edge_index, weight=density_weights(pos, edge_index))
    assert out.shape == (50, 8) and torch.isfinite(out).all()


# ------------------------------------------------------- boundary correction
def square_lattice(num):
    """Cell centres of a num x num grid of the unit square (exact weights 1/num^2)."""
    u = (torch.arange(num, dtype=torch.float64) + 0.5) / num
    return torch.cartesian_prod(u, u)


def boundary_share(pos, edge_index, **kwargs):
    """beta_n: the factor boundary=True puts on each weight."""
    kwargs.setdefault("normalize", "measure")
    base = density_weights(pos, edge_index, **kwargs)
    return density_weights(pos, edge_index, boundary=True, **kwargs) / base


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_half_space_tables_are_the_cut_gaussian(dim):
    # At a support of _TAIL bandwidths the truncation is nil (exp(-32)), and
    # a Gaussian cut at a keeps Phi(a) of its mass, centroid phi(a) / Phi(a).
    num = 1025
    rho, beta = _half_space_tables(torch.tensor([[_TAIL]]).double(), dim, num)
    a = torch.linspace(_TAIL, 0.0, num, dtype=torch.float64)
    cdf = torch.special.ndtr(a)
    pdf = torch.exp(-0.5 * a**2) / math.sqrt(2 * math.pi)
    # Trapezoid rule with step 2 * _TAIL / (2 num - 2): error at most
    # length * step^2 / 12 * max|f''| (<= 2 for m and x m), over a mass
    # of at least half the total sqrt(2 pi).
    step = _TAIL / (num - 1)
    tol = 2 * _TAIL * step**2 / 12 * 2 / (math.sqrt(2 * math.pi) / 2)
    torch.testing.assert_close(beta[0], cdf, rtol=0, atol=tol)
    torch.testing.assert_close(rho[0], pdf / cdf, rtol=0, atol=2 * tol)
    # Cut through the centre, any support keeps half the mass (symmetry).
    _, beta = _half_space_tables(torch.tensor([[_SUPPORT], [1.0]]).double(), dim, 65)
    torch.testing.assert_close(beta[:, -1], torch.full((2,), 0.5).double())


def test_half_space_tables_match_a_cut_disc():
    # d = 2, support 2.5: the marginal with its chi^2 factor against the
    # Gaussian on a fine grid of the disc, cut by the line x = a.
    rho, beta = _half_space_tables(torch.tensor([[_SUPPORT]]).double(), 2, 1001)
    rho, beta = rho[:, ::100], beta[:, ::100]  # a = 2.5, 2.25, ..., 0
    cells = 1000
    g = (torch.arange(cells, dtype=torch.float64) + 0.5) / cells * 2 - 1
    x, y = torch.meshgrid(_SUPPORT * g, _SUPPORT * g, indexing="ij")
    mass = torch.exp(-(x**2 + y**2) / 2) * (x**2 + y**2 <= _SUPPORT**2)
    a = torch.linspace(_SUPPORT, 0.0, 11, dtype=torch.float64)
    kept = [mass * (x < ai) for ai in a]
    grid_beta = torch.stack([m.sum() / mass.sum() for m in kept])
    grid_rho = torch.stack([-(m * x).sum() / m.sum() for m in kept])
    # The cut falls on cell edges; the cells on the circle are counted whole:
    # 2 pi s / step of them, each off by up to step^2 / 2 times the kernel on
    # the rim, exp(-s^2 / 2), over the mass, about 2 pi.
    step = 2 * _SUPPORT / cells
    tol = _SUPPORT * step * math.exp(-(_SUPPORT**2) / 2)
    torch.testing.assert_close(beta[0], grid_beta, rtol=0, atol=tol)
    torch.testing.assert_close(rho[0], grid_rho, rtol=0, atol=tol)


def test_density_weights_boundary_on_a_lattice():
    # Exact quadrature weights of cell centres are uniform. k = 20 takes whole
    # rings of the lattice, so an interior neighbourhood is symmetric.
    num = 32
    pos = square_lattice(num)
    edge_index = knn_graph(pos, k=20)
    plain = density_weights(pos, edge_index)
    fixed = density_weights(pos, edge_index, boundary=True)
    steps = torch.minimum(pos, 1 - pos) * num - 0.5  # lattice steps to the edges
    interior = steps.min(dim=1).values >= 3
    edge = (steps.min(dim=1).values == 0) & (steps.max(dim=1).values >= 3)
    # Interior: identical neighbourhoods, centroid zero, share exactly one.
    for w in (plain, fixed):
        torch.testing.assert_close(w[interior], w[interior][0].expand(676))
    plain, fixed = plain / plain[interior][0], fixed / fixed[interior][0]
    # Edge points are overweighted; the threshold only shrinks the measured
    # centroid, so the correction lowers them, never below their exact weight.
    assert bool((plain[edge] > 1).all())
    assert bool((fixed[edge] < plain[edge]).all())
    assert bool((fixed <= plain * (1 + 1e-12)).all())
    assert bool((fixed >= 1 - 1e-12).all())
    assert float((fixed - 1).abs().max()) < float((plain - 1).abs().max())
    f = torch.exp(pos.sum(dim=1))  # integral (e - 1)^2
    exact = (math.e - 1) ** 2
    error = {
        k: abs(float((w * f).mean()) / exact - 1)
        for k, w in (("plain", plain), ("fixed", fixed))
    }
    assert error["fixed"] < error["plain"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_density_weights_boundary_integrate_the_unit_square(seed):
    num = 2000
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(num, 2, generator=gen, dtype=torch.float64)
    edge_index = knn_graph(pos, k=16)
    f = torch.exp(pos.sum(dim=1))  # integral (e - 1)^2; area 1
    exact = (math.e - 1) ** 2
    error = {}
    for boundary in (False, True):
        w = density_weights(pos, edge_index, normalize="measure", boundary=boundary)
        error[boundary] = (
            abs(float(w.sum()) - 1),
            abs(float((w * f).sum()) / exact - 1),
        )
    assert error[False][0] > 0.04  # the boundary band: 1/sqrt(N) of the points
    for plain, fixed in zip(error[False], error[True], strict=True):
        assert fixed < plain
        assert fixed < 0.025  # the documented residual, about 2% at N = 2000


def test_density_weights_boundary_share_inside_and_on_an_edge():
    num = 4000
    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(num, 2, generator=gen, dtype=torch.float64) * 2 - 1
    beta = boundary_share(pos, knn_graph(pos, k=16))
    spacing = 2 / math.sqrt(num)
    dist = (1 - pos.abs()).min(dim=1).values  # to the square's edge
    corner = (1 - pos.abs()).max(dim=1).values < 3 * spacing
    assert bool((beta >= 0.5 - 1e-12).all()) and bool((beta <= 1 + 1e-12).all())
    interior = beta[dist > 4 * spacing]
    # The chi^2 model of the noise flags 5% of interior points (8% measured,
    # its tail is a little heavier); each keeps at least half its weight.
    assert float((interior == 1).double().mean()) > 0.9
    assert float(interior.mean()) > 1 - 0.05 * 0.5
    # On the edge the truth is 1/2; the threshold under-corrects to about 0.7.
    on_edge = beta[(dist < 0.3 * spacing) & ~corner]
    assert 0.5 < float(on_edge.mean()) < 0.75


def test_density_weights_boundary_on_a_closed_surface():
    # No boundary: every point is interior, and only the threshold's false
    # alarms (as on the square's interior) change anything.
    pos = uniform_sphere(2000)
    beta = boundary_share(pos, knn_graph(pos, k=16))
    assert float((beta == 1).double().mean()) > 0.9
    assert 1 - 0.05 * 0.5 < float(beta.mean()) < 1


def test_density_weights_boundary_options():
    gen = torch.Generator().manual_seed(3)
    cube = torch.rand(1000, 3, generator=gen, dtype=torch.float64)
    edge_index = knn_graph(cube, k=16)
    volume = {
        b: float(
            density_weights(cube, edge_index, normalize="measure", boundary=b).sum()
        )
        for b in (False, True)
    }
    assert abs(volume[True] - 1) < abs(volume[False] - 1)  # 3-D: +30% -> +16%
    # a fixed bandwidth: one table per node, shares between 1/2 and 1
    square = torch.rand(500, 2, generator=gen, dtype=torch.float64)
    beta = boundary_share(square, knn_graph(square, k=16), bandwidth=0.03)
    assert bool((beta >= 0.5 - 1e-12).all()) and bool((beta <= 1 + 1e-12).all())
    assert float(beta.min()) < 0.8  # some edge point is corrected
    # batches: each graph on its own; bipartite: the source cloud
    batch = torch.cat([torch.zeros(500), torch.ones(1000)]).long()
    both = torch.cat([square, cube[:, :2]])
    edge_index = knn_graph(both, k=12, batch=batch)
    for normalize in ("mean", "measure"):
        weight = density_weights(
            both, edge_index, batch=batch, normalize=normalize, boundary=True
        )
        parts = [
            density_weights(p, knn_graph(p, k=12), normalize=normalize, boundary=True)
            for p in (square, cube[:, :2])
        ]
        torch.testing.assert_close(weight, torch.cat(parts))
    torch.testing.assert_close(
        density_weights((square, square[:10]), boundary=True),
        density_weights(square, knn_graph(square, k=16), boundary=True),
    )
    assert density_weights(square.float(), boundary=True).dtype == torch.float32


def test_area_weights_match_the_mesh_transform():
    trimesh = pytest.importorskip("trimesh")
    from itnet_geo.transforms.mesh_to_graph import vertex_areas

    mesh = trimesh.creation.icosphere(subdivisions=2)
    pos = torch.as_tensor(np.asarray(mesh.vertices))
    face = torch.as_tensor(np.asarray(mesh.faces)).t().contiguous()
    weight = area_weights(pos, face)
    expected = vertex_areas(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    torch.testing.assert_close(weight, torch.as_tensor(expected))
    assert abs(float(weight.sum()) / (4 * math.pi) - 1) < 0.03
    box = trimesh.creation.box()
    weight = area_weights(
        torch.as_tensor(np.asarray(box.vertices)).float(),
        torch.as_tensor(np.asarray(box.faces)).t(),
    )
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight.sum(), torch.tensor(6.0))


def test_area_weights_planar_and_unused_vertices():
    pos = torch.tensor([[0.0, 0], [1, 0], [0, 1], [5, 5]])
    face = torch.tensor([[0], [1], [2]])
    torch.testing.assert_close(
        area_weights(pos, face), torch.tensor([1 / 6, 1 / 6, 1 / 6, 0])
    )
    with pytest.raises(ValueError, match="face"):
        area_weights(pos, face.t().repeat(1, 2))
