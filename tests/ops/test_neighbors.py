import importlib

import pytest
import torch

from itnet_geo.ops import fps, knn, knn_graph, radius, radius_graph

neighbors = importlib.import_module("itnet_geo.ops.neighbors")


@pytest.fixture(params=["brute", "kdtree"])
def path(request, monkeypatch):
    """Force one of the two pure search paths on the CPU."""
    threshold = -1 if request.param == "kdtree" else 1 << 62
    monkeypatch.setattr(neighbors, "_KDTREE_MIN_PAIRS", threshold)
    return request.param


def _cloud(n, dim=3, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, dim, generator=gen, dtype=dtype)


def _batch(*sizes):
    return torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))


def _edges(edge_index):
    assert edge_index.dtype == torch.long and edge_index.dim() == 2
    assert edge_index.size(0) == 2
    pairs = set(map(tuple, edge_index.t().tolist()))
    assert len(pairs) == edge_index.size(1), "duplicate edges"
    return pairs


def _reference(x, y, k, bx=None, by=None, r=None, exclude_self=False, cosine=False):
    """Dense float64 loop: the k nearest x of each y (within r, same batch)."""
    x, y = x.double().view(x.size(0), -1), y.double().view(y.size(0), -1)
    if cosine:
        dist = 1 - torch.nn.functional.normalize(y, dim=1) @ (
            torch.nn.functional.normalize(x, dim=1).t()
        )
    else:
        dist = torch.cdist(y, x)
    bx = torch.zeros(x.size(0), dtype=torch.long) if bx is None else bx
    by = torch.zeros(y.size(0), dtype=torch.long) if by is None else by
    out = set()
    for i in range(y.size(0)):
        cand = [
            (float(dist[i, j]), j)
            for j in range(x.size(0))
            if bx[j] == by[i]
            and (r is None or dist[i, j] < r)
            and not (exclude_self and i == j)
        ]
        out |= {(i, j) for _, j in sorted(cand)[:k]}
    return out


def _flip(pairs):
    return {(j, i) for i, j in pairs}


def _fps_reference(x, batch, ratio, start=None):
    """One point at a time, one batch element at a time."""
    out = []
    for b in range(int(batch.max()) + 1 if batch.numel() else 0):
        idx = (batch == b).nonzero().view(-1)
        if idx.numel() == 0:
            continue
        pts = x[idx]
        # ceil(n * ratio) in float32, as torch-cluster computes it
        n = int(torch.ceil(torch.tensor(float(idx.numel())) * torch.tensor(ratio)))
        chosen = [0 if start is None else start[b]]
        dist = ((pts - pts[chosen[0]]) ** 2).sum(1)
        while len(chosen) < n:
            far = int(dist.argmax())
            chosen.append(far)
            dist = torch.minimum(dist, ((pts - pts[far]) ** 2).sum(1))
        out += idx[chosen].tolist()
    return out


# ---------------------------------------------------------------------------
# kNN
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 20])
def test_knn_batched_bipartite_matches_reference(path, k):
    x, y = _cloud(40, seed=1), _cloud(30, seed=2)
    # batch element 1 has no x (and no neighbours), element 3 has no y;
    # k=20 exceeds the 15 points of element 0.
    bx, by = _batch(15, 0, 20, 5), _batch(10, 8, 12)
    out = knn(x, y, k, bx, by, backend="pure")
    assert _edges(out) == _reference(x, y, k, bx, by)
    assert (bx[out[1]] == by[out[0]]).all()
    assert not (out[0] >= 10).logical_and(out[0] < 18).any()
    # grouped by query, nearest first
    assert (out[0].diff() >= 0).all()
    d = (x[out[1]] - y[out[0]]).norm(dim=1)
    same = out[0].diff() == 0
    assert (d.diff()[same] >= 0).all()


def test_knn_without_batch_and_one_dimensional_input(path):
    x, y = _cloud(25, dim=1, seed=3).view(-1), _cloud(7, dim=1, seed=4).view(-1)
    out = knn(x, y, 3, backend="pure")
    assert out.shape == (2, 21)
    assert _edges(out) == _reference(x, y, 3)


def test_knn_one_batch_vector_means_element_zero_for_the_other(path):
    x, y = _cloud(20, seed=5), _cloud(6, seed=6)
    bx = _batch(12, 8)
    out = knn(x, y, 3, bx, None, backend="pure")
    assert _edges(out) == _reference(x, y, 3, bx, torch.zeros(6, dtype=torch.long))


def test_knn_cosine(path):
    x, y = _cloud(30, seed=7) - 0.5, _cloud(9, seed=8) - 0.5
    out = knn(x, y, 4, cosine=True, backend="pure")
    assert _edges(out) == _reference(x, y, 4, cosine=True)
    assert _edges(out) != _reference(x, y, 4)
    graph = knn_graph(x, 4, cosine=True, backend="pure")
    assert _edges(graph) == _flip(_reference(x, x, 4, cosine=True, exclude_self=True))


def test_knn_float64_and_mixed_dtypes(path):
    x, y = _cloud(30, seed=9, dtype=torch.float64), _cloud(10, seed=10)
    out = knn(x, y, 5, backend="pure")
    assert _edges(out) == _reference(x, y, 5)
    assert _edges(knn(x.float(), y.double(), 5, backend="pure")) == _edges(out)
    # points that carry gradients are fine (the search itself is not differentiable)
    assert torch.equal(knn(x.requires_grad_(), y, 5, backend="pure"), out)


def test_knn_graph_loop_and_flow(path):
    x, batch = _cloud(30, seed=11), _batch(4, 0, 26)
    for loop in (False, True):
        out = knn_graph(x, 6, batch, loop=loop, backend="pure")
        src, dst = out
        assert _edges(out) == _flip(
            _reference(x, x, 6, batch, batch, exclude_self=not loop)
        )
        assert bool((src == dst).any()) == loop
        # element 0 has 4 points: 3 (or 4 with loops) neighbours each
        assert (dst < 4).sum() == (4 if loop else 3) * 4
        t2s = knn_graph(x, 6, batch, loop=loop, flow="target_to_source", backend="pure")
        assert torch.equal(t2s, out.flip(0))


def test_knn_graph_with_duplicate_points(path):
    # every point has a twin at distance 0, which may come before the point itself
    p = _cloud(20, seed=23)
    x = torch.cat([p, p])
    out = knn_graph(x, 3, backend="pure")
    src, dst = out
    assert out.size(1) == 3 * 40
    assert not (src == dst).any()
    assert ((src - dst).abs() == 20).sum() == 40  # the twin is always a neighbour
    assert _edges(out) == _flip(_reference(x, x, 3, exclude_self=True))


def test_brute_force_and_kdtree_paths_agree(monkeypatch):
    x, batch = _cloud(300, seed=12), _batch(100, 0, 150, 50)
    results = []
    for threshold in (-1, 1 << 62):
        monkeypatch.setattr(neighbors, "_KDTREE_MIN_PAIRS", threshold)
        results.append(
            (
                knn_graph(x, 8, batch, backend="pure"),
                radius_graph(x, 0.2, batch, max_num_neighbors=6, backend="pure"),
                knn(x, x[::7], 40, batch, batch[::7], backend="pure"),
            )
        )
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------
# Radius
# ---------------------------------------------------------------------------


def test_radius_matches_reference_below_cap(path):
    x, y = _cloud(40, seed=13), _cloud(25, seed=14)
    bx, by = _batch(20, 0, 20), _batch(5, 10, 10)
    out = radius(x, y, 0.4, bx, by, max_num_neighbors=64, backend="pure")
    ref = _reference(x, y, 64, bx, by, r=0.4)
    assert len(ref) > 30
    assert _edges(out) == ref
    assert (out[0].diff() >= 0).all()


def test_radius_cap_keeps_the_nearest(path):
    x, y = _cloud(60, seed=15), _cloud(20, seed=16)
    full = _reference(x, y, 1000, r=0.5)
    out = radius(x, y, 0.5, max_num_neighbors=4, backend="pure")
    assert _edges(out) == _reference(x, y, 4, r=0.5)
    counts = torch.bincount(out[0], minlength=20)
    full_counts = torch.bincount(torch.tensor([i for i, _ in full]), minlength=20)
    assert (counts == full_counts.clamp(max=4)).all()
    assert (full_counts > 4).any()


def test_radius_is_strict_and_ignore_same_index(path):
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.5]])
    out = radius(x, x, 1.0, backend="pure")
    assert _edges(out) == {(0, 0), (0, 2), (1, 1), (2, 0), (2, 2)}
    out = radius(x, x, 1.0, ignore_same_index=True, backend="pure")
    assert _edges(out) == {(0, 2), (2, 0)}
    # the point itself does not use up the cap
    out = radius(x, x, 2.0, max_num_neighbors=1, ignore_same_index=True, backend="pure")
    assert _edges(out) == {(0, 2), (1, 0), (2, 0)}
    assert radius(x, x, 2.0, max_num_neighbors=0, backend="pure").shape == (2, 0)


def test_radius_graph_loop_and_flow(path):
    x, batch = _cloud(50, seed=17), _batch(20, 30)
    for loop in (False, True):
        out = radius_graph(
            x, 0.25, batch, loop=loop, max_num_neighbors=50, backend="pure"
        )
        ref = _reference(x, x, 50, batch, batch, r=0.25, exclude_self=not loop)
        assert _edges(out) == _flip(ref)
        assert bool((out[0] == out[1]).any()) == loop
        t2s = radius_graph(
            x,
            0.25,
            batch,
            loop=loop,
            max_num_neighbors=50,
            flow="target_to_source",
            backend="pure",
        )
        assert torch.equal(t2s, out.flip(0))


def test_zero_points():
    empty, pts = torch.zeros(0, 3), _cloud(5)
    for out in (
        knn(empty, pts, 2, backend="pure"),
        knn(pts, empty, 2, backend="pure"),
        knn_graph(empty, 2, backend="pure"),
        radius(empty, pts, 0.5, backend="pure"),
        radius_graph(empty, 0.5, backend="pure"),
    ):
        assert out.shape == (2, 0) and out.dtype == torch.long
    assert fps(empty, backend="pure").shape == (0,)


# ---------------------------------------------------------------------------
# Farthest point sampling
# ---------------------------------------------------------------------------


def test_fps_matches_one_point_at_a_time_reference():
    x, batch = _cloud(70, seed=18), _batch(10, 0, 33, 27)
    out = fps(x, batch, ratio=0.3, random_start=False, backend="pure")
    assert out.tolist() == _fps_reference(x, batch, 0.3)
    # ceil(ratio * n) in float32 as torch-cluster: 10 * 0.3 -> 3, 33 -> 10, 27 -> 9
    assert torch.bincount(batch[out], minlength=4).tolist() == [3, 0, 10, 9]


def test_fps_ratio_one_is_a_permutation_and_float64():
    x = _cloud(16, dim=2, seed=19, dtype=torch.float64)
    out = fps(x, ratio=1.0, random_start=False, backend="pure")
    assert sorted(out.tolist()) == list(range(16))
    assert out.tolist() == _fps_reference(x, torch.zeros(16, dtype=torch.long), 1.0)


def test_fps_square_example():
    x = torch.tensor([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    assert fps(x, ratio=0.5, random_start=False, backend="pure").tolist() == [0, 3]


def test_fps_random_start_follows_torch_seed():
    x, batch = _cloud(60, seed=20), _batch(30, 30)
    torch.manual_seed(0)
    a = fps(x, batch, 0.25, backend="pure")
    torch.manual_seed(0)
    b = fps(x, batch, 0.25, backend="pure")
    assert torch.equal(a, b)
    starts = set()
    for seed in range(6):
        torch.manual_seed(seed)
        out = fps(x, batch, 0.25, backend="pure")
        starts.add((out[0].item(), out[8].item()))
        assert len(set(out.tolist())) == out.numel() == 16
        assert (batch[out[:8]] == 0).all() and (batch[out[8:]] == 1).all()
        start = [out[0].item(), out[8].item() - 30]
        assert out.tolist() == _fps_reference(x, batch, 0.25, start=start)
    assert len(starts) > 1


def test_fps_ptr_and_batch_size():
    x = _cloud(20, seed=21)
    by_batch = fps(x, _batch(5, 15), 0.5, random_start=False, backend="pure")
    by_ptr = fps(x, None, 0.5, False, ptr=[0, 5, 20], backend="pure")
    assert torch.equal(by_batch, by_ptr)
    padded = fps(x, _batch(5, 15), 0.5, False, batch_size=4, backend="pure")
    assert torch.equal(by_batch, padded)


# ---------------------------------------------------------------------------
# Validation and backend choice
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: knn(torch.rand(5, 3), torch.rand(4, 2), 2), r"\[5, 3\].*\[4, 2\]"),
        (lambda: knn(torch.rand(5, 3, 1), torch.rand(4, 3), 2), r"\[5, 3, 1\]"),
        (lambda: knn(torch.rand(5, 3), torch.rand(4, 3), 0), "k must"),
        (
            lambda: knn(torch.ones(5, 3, dtype=torch.long), torch.rand(4, 3), 1),
            "floating",
        ),
        (
            lambda: knn(
                torch.rand(5, 3), torch.rand(4, 3), 2, torch.zeros(4, dtype=torch.long)
            ),
            r"\[5\]",
        ),
        (lambda: knn_graph(torch.rand(3, 3), 2, torch.tensor([1, 0, 0])), "sorted"),
        (
            lambda: knn_graph(torch.rand(3, 3), 2, torch.tensor([0.0, 0, 0])),
            "torch.long",
        ),
        (lambda: knn_graph(torch.rand(3, 3), 2, flow="up"), "flow"),
        (lambda: knn_graph(torch.rand(3, 3), 2, batch_size=0), "batch_size"),
        (lambda: radius(torch.rand(5, 3), torch.rand(4, 3), -1.0), "r must"),
        (lambda: radius_graph(torch.rand(5, 3), 0.5, max_num_neighbors=-1), "max_num"),
        (lambda: fps(torch.rand(5, 3), ratio=0.0), "ratio"),
        (lambda: fps(torch.rand(5, 3), ratio=1.5), "ratio"),
        (lambda: fps(torch.rand(5, 3), ptr=[0, 4]), r"\[0, 4\]"),
        (lambda: knn(torch.rand(5, 3), torch.rand(4, 3), 2, backend="gpu"), "backend"),
    ],
)
def test_input_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cluster_backend_requires_torch_cluster(monkeypatch):
    monkeypatch.setattr(neighbors, "WITH_TORCH_CLUSTER", False)
    with pytest.raises(ImportError, match="torch-cluster"):
        knn_graph(_cloud(5), 2, backend="cluster")
    # "auto" falls back to the pure path
    assert knn_graph(_cloud(5), 2).shape == (2, 10)


def test_fps_auto_takes_the_pure_path_on_the_cpu(monkeypatch):
    def no_cluster():
        raise AssertionError("torch-cluster called for fps on the CPU")

    monkeypatch.setattr(neighbors, "WITH_TORCH_CLUSTER", True)
    monkeypatch.setattr(neighbors, "_torch_cluster", no_cluster)
    x, batch = _cloud(40, seed=3), _batch(15, 25)
    pure = fps(x, batch, 0.3, random_start=False, backend="pure")
    assert torch.equal(fps(x, batch, 0.3, random_start=False), pure)
    with pytest.raises(AssertionError, match="torch-cluster called"):
        fps(x, batch, 0.3, backend="cluster")  # asked for by name: still used


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_stays_on_device():
    x, batch = _cloud(200, seed=22), _batch(120, 80)
    for fn in (
        lambda p, b: knn_graph(p, 6, b, backend="pure"),
        lambda p, b: radius_graph(p, 0.2, b, backend="pure"),
        lambda p, b: fps(p, b, 0.3, random_start=False, backend="pure"),
    ):
        out = fn(x.cuda(), batch.cuda())
        assert out.is_cuda
        assert torch.equal(out.cpu(), fn(x, batch))


# ---------------------------------------------------------------------------
# Against torch-cluster
# ---------------------------------------------------------------------------


@pytest.mark.cluster
@pytest.mark.parametrize("k", [1, 5, 30])
def test_knn_matches_torch_cluster(path, k):
    pytest.importorskip("torch_cluster")
    x, y = _cloud(120, seed=30), _cloud(50, seed=31)
    bx, by = _batch(25, 0, 60, 35), _batch(10, 10, 20, 10)
    pure = knn(x, y, k, bx, by, backend="pure")
    cluster = knn(x, y, k, bx, by, backend="cluster")
    assert _edges(pure) == _edges(cluster)
    x64 = x.double()
    assert _edges(knn(x64, x64, k, bx, bx, backend="pure")) == _edges(
        knn(x64, x64, k, bx, bx, backend="cluster")
    )


@pytest.mark.cluster
@pytest.mark.parametrize("loop", [False, True])
def test_knn_graph_matches_torch_cluster(path, loop):
    pytest.importorskip("torch_cluster")
    x, batch = _cloud(150, seed=32), _batch(3, 0, 80, 67)
    for flow in ("source_to_target", "target_to_source"):
        pure = knn_graph(x, 6, batch, loop, flow, backend="pure")
        cluster = knn_graph(x, 6, batch, loop, flow, backend="cluster")
        assert _edges(pure) == _edges(cluster)


@pytest.mark.cluster
def test_radius_matches_torch_cluster(path):
    pytest.importorskip("torch_cluster")
    x, y = _cloud(120, seed=33), _cloud(50, seed=34)
    bx, by = _batch(25, 0, 60, 35), _batch(10, 10, 20, 10)
    # below the cap: the same sets
    pure = radius(x, y, 0.3, bx, by, max_num_neighbors=100, backend="pure")
    cluster = radius(x, y, 0.3, bx, by, max_num_neighbors=100, backend="cluster")
    assert _edges(pure) == _edges(cluster)
    # cap hit: the same number per query, and every kept one within r
    pure = radius(x, y, 0.5, bx, by, max_num_neighbors=5, backend="pure")
    cluster = radius(x, y, 0.5, bx, by, max_num_neighbors=5, backend="cluster")
    counts = torch.bincount(pure[0], minlength=50)
    assert torch.equal(counts, torch.bincount(cluster[0], minlength=50))
    assert (counts == 5).any()
    assert _edges(cluster) <= _reference(x, y, 1000, bx, by, r=0.5)


@pytest.mark.cluster
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_matches_torch_cluster(path, loop):
    pytest.importorskip("torch_cluster")
    x, batch = _cloud(150, seed=35), _batch(3, 0, 80, 67)
    for flow in ("source_to_target", "target_to_source"):
        pure = radius_graph(x, 0.3, batch, loop, 200, flow, backend="pure")
        cluster = radius_graph(x, 0.3, batch, loop, 200, flow, backend="cluster")
        assert _edges(pure) == _edges(cluster)


@pytest.mark.cluster
@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5, 1.0])
def test_fps_matches_torch_cluster(ratio):
    pytest.importorskip("torch_cluster")
    x, batch = _cloud(150, seed=36), _batch(10, 80, 3, 57)
    pure = fps(x, batch, ratio, random_start=False, backend="pure")
    cluster = fps(x, batch, ratio, random_start=False, backend="cluster")
    assert torch.equal(pure, cluster)
