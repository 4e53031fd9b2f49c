import itertools

import pytest
import torch

from itnet_geo.nn import ITConv
from itnet_geo.ops import fused
from itnet_geo.ops.fused import _tiles, csr_order, kernel_integral

KERNELS = ["channel", "heads", "lowrank", "full"]
MEASURES = ["sum", "mean", "softmax", "max"]


def graph(kind, num_src=14, num_dst=14, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if kind == "random":  # irregular degrees, some targets empty
        src = torch.randint(0, num_src, (45,), generator=gen)
        dst = torch.randint(0, num_dst, (45,), generator=gen)
    else:  # every target has 4 neighbours, as in a k-NN graph
        src = torch.randint(0, num_src, (num_dst * 4,), generator=gen)
        dst = torch.arange(num_dst).repeat_interleave(4)
    return torch.stack([src, dst])


def grads(out, tensors):
    g = torch.autograd.grad(out.square().sum(), tensors, allow_unused=True)
    pairs = zip(g, tensors, strict=True)
    return [torch.zeros_like(t) if gi is None else gi for gi, t in pairs]


def conv_case(kernel, measure, value_pos, kind):
    """A float64 ITConv (reference path) on 14 points, their weights and a graph."""
    torch.manual_seed(0)
    conv = ITConv(
        8,
        12,
        kernel=kernel,
        measure=measure,
        heads=3,
        rank=4,
        hidden=12 if value_pos is True else 16,
        value_pos=value_pos,
    ).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(14, 8, generator=gen, dtype=torch.double, requires_grad=True)
    pos = torch.randn(14, 3, generator=gen, dtype=torch.double, requires_grad=True)
    w = (torch.rand(14, generator=gen, dtype=torch.double) + 0.5).requires_grad_()
    return conv, x, pos, w, graph(kind)


CASES = [
    (k, m, vp, kind)
    for k, m, vp, kind in itertools.product(
        KERNELS, MEASURES, [False, True, "linear"], ["random", "regular"]
    )
    if not (vp and k in ("lowrank", "full"))
]


@pytest.mark.parametrize("kernel, measure, value_pos, kind", CASES)
def test_fused_equals_reference_outputs_and_gradients(kernel, measure, value_pos, kind):
    conv, x, pos, w, edge_index = conv_case(kernel, measure, value_pos, kind)
    tensors = [x, pos, w, *conv.parameters()]
    ref = conv(x, pos, edge_index, w)
    ref_grads = grads(ref, tensors)
    for tile_size in (1, 9, 10_000):
        conv.tile_size = tile_size
        out = conv(x, pos, edge_index, w)
        torch.testing.assert_close(out, ref)
        for a, b in zip(grads(out, tensors), ref_grads, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("kind", ["random", "regular"])
def test_gradcheck_fused(measure, kind):
    torch.manual_seed(0)
    conv = ITConv(3, 4, measure=measure, hidden=5, tile_size=6).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(7, 3, generator=gen, dtype=torch.double, requires_grad=True)
    pos = torch.randn(7, 3, generator=gen, dtype=torch.double, requires_grad=True)
    w = (torch.rand(7, generator=gen, dtype=torch.double) + 0.5).requires_grad_()
    edge_index = graph(kind, 7, 7)[:, :20]
    assert torch.autograd.gradcheck(
        lambda x, pos, w: conv(x, pos, edge_index, w), (x, pos, w)
    )


def test_gradcheck_kernel_integral_bipartite_with_params():
    # The op itself, on a bipartite graph, including gradients of parameters.
    gen = torch.Generator().manual_seed(3)

    def t(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.double).requires_grad_()

    lin = t(6, 4)

    def edge_fn(params, src_g, dst_g, rel):
        (w,) = params
        h = torch.tanh(src_g + dst_g + rel @ torch.ones(3, 6, dtype=rel.dtype))
        return h @ w, None

    edge_index = torch.stack(
        [
            torch.randint(0, 9, (25,), generator=gen),
            torch.randint(0, 5, (25,), generator=gen),
        ]
    )
    src, dst, ps, pd, val = t(9, 6), t(5, 6), t(9, 3), t(5, 3), t(9, 4, 2)
    weight = (torch.rand(25, generator=gen, dtype=torch.double) + 0.5).requires_grad_()
    for measure in MEASURES:
        assert torch.autograd.gradcheck(
            lambda *a, m=measure: kernel_integral(
                edge_fn, a[-1:], *a[:5], edge_index, a[5], measure=m, tile_size=4
            ),
            (src, dst, ps, pd, val, weight, lin),
        )


def test_tiles_hold_whole_neighbourhoods():
    rowptr = [0, 3, 3, 10, 12, 20, 21]
    tiles = _tiles(rowptr, tile_size=5)
    assert tiles[0][0] == 0 and tiles[-1][1] == 6
    for (t0, t1, e0, e1), nxt in zip(tiles, tiles[1:] + [None], strict=True):
        assert e0 == rowptr[t0] and e1 == rowptr[t1]
        assert t1 > t0
        assert e1 - e0 <= 5 or t1 - t0 == 1  # only a single huge neighbourhood exceeds
        if nxt is not None:
            assert nxt[0] == t1


def test_csr_order_is_stable_and_counts():
    edge_index = torch.tensor([[5, 1, 2, 3, 4], [2, 0, 2, 1, 0]])
    perm, col, row, rowptr = csr_order(edge_index, num_targets=4)
    assert row.tolist() == [0, 0, 1, 2, 2]
    assert col.tolist() == [1, 4, 3, 5, 2]
    assert rowptr.tolist() == [0, 2, 3, 5, 5]
    assert torch.equal(edge_index[:, perm][0], col)


def test_bad_measure_and_tile_size():
    args = [torch.zeros(1, 1)] * 5
    edge_index = torch.zeros(2, 1, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown measure"):
        kernel_integral(None, [], *args, edge_index, measure="median")
    with pytest.raises(ValueError, match="tile_size"):
        kernel_integral(None, [], *args, edge_index, tile_size=0)


def test_fused_memory_does_not_hold_edge_tensors():
    # Saved tensors of the fused op are node-sized: nothing of size E x hidden.
    torch.manual_seed(0)
    conv = ITConv(8, 8, hidden=32, tile_size=64)
    x = torch.randn(200, 8, requires_grad=True)
    pos = torch.randn(200, 3)
    edge_index = torch.stack(
        [torch.randint(0, 200, (3200,)), torch.arange(200).repeat_interleave(16)]
    )
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        conv(x, pos, edge_index).sum().backward()
    assert max(sizes) < 3200 * 32 / 4


#: What each compiled sum records when called.
PATHS = {"contract": "gathered", "gather": "gathers", "scatter": "scatter"}


@pytest.fixture
def compiled(monkeypatch, cxx):
    """The compiled sums switched on, their calls recorded; off afterwards.

    Past torch.compile's limit of variants per function the sums would run
    eagerly without a word; here that fails instead. (A run compiles a few
    variants: grad on and off, one value layout; the tests add float64 and
    every layout, hence the higher limit.)
    """
    assert fused.set_compile(True)
    calls = []

    def recorded(name, fn):
        def call(*args):
            calls.append(PATHS[name])
            return fn(*args)

        return call

    for name, fn in dict(fused._compiled).items():
        monkeypatch.setitem(fused._compiled, name, recorded(name, fn))
    with torch._dynamo.config.patch(
        fail_on_recompile_limit_hit=True, recompile_limit=32
    ):
        yield calls
    fused.set_compile(False)


def test_compiled_sums_have_no_graph_breaks():
    gen = torch.Generator().manual_seed(0)
    coef = torch.randn(5, 3, 2, generator=gen)
    args = {
        "contract": (coef, torch.randn(5, 3, 2, 7, generator=gen)),
        "gather": (coef, torch.randn(11, 1, 7), torch.randint(0, 11, (5, 3))),
        "scatter": (
            torch.randn(4, 2),
            torch.randn(4, 2, 7),
            torch.tensor([0, 2, 2, 1]),
            3,
        ),
    }
    for name, fn in fused._SUMS.items():
        explanation = torch._dynamo.explain(fn)(*args[name])
        assert explanation.graph_break_count == 0, (name, explanation.break_reasons)


def test_set_compile_builds_the_compiled_sums_once(compiled):
    built = dict(fused._compiled)
    assert fused.set_compile(False) is False and not fused.compile_enabled()
    assert fused.set_compile(True) is True and fused.compile_enabled()
    assert fused._compiled == built  # the same functions, their caches kept


@pytest.mark.parametrize(
    "kernel, value_pos, tile_size, kind, path",
    [
        ("channel", False, 24, "regular", "gathers"),  # the value table fits a tile
        ("heads", False, 24, "regular", "gathers"),
        ("lowrank", False, 24, "regular", "gathers"),
        ("heads", False, 8, "regular", "gathered"),  # 14 values, tiles of 8 edges
        ("heads", True, 24, "regular", "gathered"),  # values + positional term
        ("channel", False, 24, "random", "scatter"),  # irregular neighbourhoods
        ("heads", True, 9, "random", "scatter"),
        ("heads", "linear", 24, "regular", "gathers"),  # folded: values + P p_j
        ("channel", "linear", 9, "random", "scatter"),
    ],
)
def test_compiled_sums_equal_reference(
    compiled, kernel, value_pos, tile_size, kind, path
):
    conv, x, pos, w, edge_index = conv_case(kernel, "sum", value_pos, kind)
    tensors = [x, pos, w, *conv.parameters()]
    for measure in ("sum", "mean", "softmax"):
        conv.measure = measure
        conv.tile_size = None
        ref = conv(x, pos, edge_index, w)
        ref_grads = grads(ref, tensors)
        compiled.clear()
        conv.tile_size = tile_size
        out = conv(x, pos, edge_index, w)
        out_grads = grads(out, tensors)
        # every tile, in forward and in the backward's recomputation
        assert compiled and set(compiled) == {path}
        torch.testing.assert_close(out, ref)
        for a, b in zip(out_grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b)


def test_switching_compilation_off_between_forward_and_backward(compiled):
    torch.manual_seed(0)
    conv = ITConv(8, 12, kernel="heads", measure="softmax", heads=3).double()
    x = torch.randn(14, 8, dtype=torch.double, requires_grad=True)
    pos = torch.randn(14, 3, dtype=torch.double)
    edge_index = graph("regular")
    ref = conv(x, pos, edge_index)
    ref_grads = grads(ref, [x, *conv.parameters()])
    conv.tile_size = 24
    out = conv(x, pos, edge_index)  # compiled, gathering inside
    assert compiled == ["gathers"] * 3
    fused.set_compile(False)  # the backward's recomputation runs eagerly
    for a, b in zip(grads(out, [x, *conv.parameters()]), ref_grads, strict=True):
        torch.testing.assert_close(a, b)
    assert compiled == ["gathers"] * 3


def test_deterministic_algorithms_gather_before_the_compiled_sum(compiled):
    conv = ITConv(8, 12, kernel="heads", heads=3, tile_size=24)
    x, pos = torch.randn(14, 8, requires_grad=True), torch.randn(14, 3)
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        grads(conv(x, pos, graph("regular")), [x])
    finally:
        torch.use_deterministic_algorithms(before)
    assert compiled and set(compiled) == {"gathered"}


def test_compiled_contraction_in_eval_without_gradients(compiled):
    torch.manual_seed(0)
    conv = ITConv(8, 16, kernel="heads", measure="softmax", heads=4).eval()
    x, pos = torch.randn(30, 8), torch.randn(30, 3)
    edge_index = graph("regular", 30, 30)
    with torch.no_grad():
        conv.tile_size = None
        ref = conv(x, pos, edge_index)
        conv.tile_size = 40
        out = conv(x, pos, edge_index)
    assert compiled
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_set_compile_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no working C++ compiler found")

    fused.set_compile(False)
    monkeypatch.setattr(fused, "_compiled", {})  # built anew, with the broken compile
    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="no working C\\+\\+ compiler found"):
        assert fused.set_compile(True) is False
    assert not fused.compile_enabled()
    conv = ITConv(4, 6, tile_size=8)
    out = conv(torch.randn(10, 4), torch.randn(10, 3), graph("regular", 10, 10))
    assert out.shape == (10, 6) and torch.isfinite(out).all()


def test_set_compile_refuses_a_contraction_that_computes_otherwise(monkeypatch):
    fused.set_compile(False)
    monkeypatch.setattr(fused, "_compiled", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: lambda *a: 2 * fn(*a))
    with pytest.warns(RuntimeWarning, match="differs from eager"):
        assert fused.set_compile(True) is False
    assert not fused.compile_enabled()
